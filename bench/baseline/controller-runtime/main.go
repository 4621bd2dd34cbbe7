// Command baseline-controller-runtime is a plain controller-runtime operator for AiApps
// (dataforest.dev/v1alpha1), the Go baseline of dataforest-bench: what a competent
// operator author writes for the job, with no exactly-once marker protocol.
//
// Process contract, shared by every baseline of the bench (started with no arguments):
// KUBECONFIG, WATCH_NAMESPACE (the one namespace handled), POD_NAME (its identity in
// the Lease), POD_NAMESPACE (the Lease's namespace), METRICS_ADDRESS (host:port of
// controller-runtime's /metrics), WORKERS (MaxConcurrentReconciles, 16 by default),
// LEASE_NAME (dataforest-baseline-controller-runtime by default).
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "baseline-controller-runtime:", err)
		os.Exit(1)
	}
}

func run() error {
	ctrl.SetLogger(zap.New())
	namespace := os.Getenv("WATCH_NAMESPACE")
	podName := os.Getenv("POD_NAME")
	podNamespace := os.Getenv("POD_NAMESPACE")
	if namespace == "" || podName == "" || podNamespace == "" {
		return fmt.Errorf("WATCH_NAMESPACE, POD_NAME and POD_NAMESPACE must be set")
	}
	workers := 16
	if text := os.Getenv("WORKERS"); text != "" {
		n, err := strconv.Atoi(text)
		if err != nil || n < 1 {
			return fmt.Errorf("WORKERS=%q is not a positive number", text)
		}
		workers = n
	}
	metrics := os.Getenv("METRICS_ADDRESS")
	if metrics == "" {
		metrics = ":8080"
	}
	leaseName := os.Getenv("LEASE_NAME")
	if leaseName == "" {
		leaseName = "dataforest-baseline-controller-runtime"
	}

	config := ctrl.GetConfigOrDie()
	lock, err := leaseLock(config, podNamespace, leaseName, podName)
	if err != nil {
		return err
	}
	manager, err := ctrl.NewManager(config, ctrl.Options{
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{namespace: {}}},
		// AiApps are unstructured here (no codegen); read them from the cache as a typed
		// operator would, not from the apiserver on every reconcile (the client's default
		// for unstructured objects).
		Client:  client.Options{Cache: &client.CacheOptions{Unstructured: true}},
		Metrics: metricsserver.Options{BindAddress: metrics},
		// Disabled: the bench reads readiness from the Lease and the metrics.
		HealthProbeBindAddress: "0",
		LeaderElection:         true,
		// Handing the Lease back on SIGTERM lets a new instance lead at once instead of
		// after the lease runs out; safe because the process exits right after.
		LeaderElectionReleaseOnCancel:       true,
		LeaderElectionResourceLockInterface: lock,
	})
	if err != nil {
		return err
	}
	r := &reconciler{
		Client:   manager.GetClient(),
		api:      newAPIClient(workers),
		recorder: manager.GetEventRecorder("dataforest-baseline-controller-runtime"),
	}
	// Our own status writes change no generation and need no reconcile: the poll is
	// scheduled with RequeueAfter. A deletion sets deletionTimestamp, which must.
	deleting := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
	err = ctrl.NewControllerManagedBy(manager).
		For(newAiApp(), builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, deleting))).
		Named("aiapp").
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
	if err != nil {
		return err
	}
	return manager.Start(ctrl.SetupSignalHandler())
}

// leaseLock is a Lease whose holder is POD_NAME, so that whoever watches can tell which
// instance leads (controller-runtime's own lock names a random identity).
func leaseLock(config *rest.Config, namespace, name, identity string) (resourcelock.Interface, error) {
	leaderConfig := rest.AddUserAgent(rest.CopyConfig(config), "leader-election")
	// As controller-runtime does: one hung request must not outlast the renew deadline.
	leaderConfig.Timeout = 5 * time.Second
	core, err := corev1client.NewForConfig(leaderConfig)
	if err != nil {
		return nil, err
	}
	coordination, err := coordinationv1.NewForConfig(leaderConfig)
	if err != nil {
		return nil, err
	}
	return resourcelock.New(resourcelock.LeasesResourceLock, namespace, name, core, coordination,
		resourcelock.ResourceLockConfig{Identity: identity})
}
