package main

// The AiApp reconciler, as a plain controller-runtime operator writes it: finalizer,
// submit when there is no id yet, poll getDetail until the app ends, kill on deletion.
// There is no marker before the submit: a lost answer or a stale cache can submit twice.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

const finalizer = "dataforest.dev/cleanup"

// The same schedule as dataforest-operator's defaults (--poll-min 2s, --poll-ceiling 60s):
// 2 s after a change, then doubling with up to a quarter of jitter, so that the bench
// compares the operators and not their polling rates.
const (
	pollMin     = 2 * time.Second
	pollCeiling = 60 * time.Second
)

var aiAppGVK = schema.GroupVersionKind{Group: "dataforest.dev", Version: "v1alpha1", Kind: "AiApp"}

func newAiApp() *unstructured.Unstructured {
	app := &unstructured.Unstructured{}
	app.SetGroupVersionKind(aiAppGVK)
	return app
}

type reconciler struct {
	client.Client
	api      *apiClient
	recorder recorder.EventRecorder
	// The last poll interval of each live AiApp, by uid, to back off while nothing changes.
	intervals sync.Map
}

func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	app := newAiApp()
	if err := r.Get(ctx, req.NamespacedName, app); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !app.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, r.finalize(ctx, app)
	}
	if !controllerutil.ContainsFinalizer(app, finalizer) {
		controllerutil.AddFinalizer(app, finalizer)
		if err := r.Update(ctx, app); err != nil {
			return ctrl.Result{}, err
		}
	}
	phase := str(app, "status", "phase")
	if isTerminal(phase) {
		r.intervals.Delete(app.GetUID())
		return ctrl.Result{}, nil
	}
	creds, err := r.credentials(ctx, app)
	if err != nil {
		return ctrl.Result{}, err
	}
	if str(app, "status", "id") == "" {
		return r.submit(ctx, app, creds)
	}
	return r.poll(ctx, app, creds)
}

func (r *reconciler) submit(ctx context.Context, app *unstructured.Unstructured, creds credentials) (ctrl.Result, error) {
	answer, err := r.api.submit(ctx, creds, submitBody(app))
	if err != nil {
		return ctrl.Result{}, err
	}
	before := app.DeepCopy()
	setStatus(app, "Accepted", answer)
	if err := r.Status().Patch(ctx, app, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, err
	}
	r.recorder.Eventf(app, nil, corev1.EventTypeNormal, "Submitted", "Submit", "submitted as app %s", answer.ID)
	r.intervals.Store(app.GetUID(), pollMin)
	return ctrl.Result{RequeueAfter: pollMin}, nil
}

func (r *reconciler) poll(ctx context.Context, app *unstructured.Unstructured, creds credentials) (ctrl.Result, error) {
	id := str(app, "status", "id")
	answer, err := r.api.getDetail(ctx, creds, id)
	if err != nil {
		return ctrl.Result{}, err
	}
	phase := phaseOf(answer.State, answer.FinalStatus)
	before := app.DeepCopy()
	oldPhase := str(app, "status", "phase")
	changed := phase != oldPhase ||
		answer.State != str(app, "status", "state") ||
		answer.FinalStatus != str(app, "status", "finalStatus")
	if changed {
		setStatus(app, phase, answer)
		if err := r.Status().Patch(ctx, app, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, err
		}
	}
	if phase != oldPhase {
		kind := corev1.EventTypeNormal
		if phase == "Failed" || phase == "Killed" {
			kind = corev1.EventTypeWarning
		}
		r.recorder.Eventf(app, nil, kind, phase, "Poll", "app %s: state %s, final status %s", id, answer.State, answer.FinalStatus)
	}
	if isTerminal(phase) {
		r.intervals.Delete(app.GetUID())
		return ctrl.Result{}, nil
	}
	interval := pollMin
	if previous, ok := r.intervals.Load(app.GetUID()); ok && !changed {
		interval = min(2*previous.(time.Duration), pollCeiling)
	}
	r.intervals.Store(app.GetUID(), interval)
	jitter := time.Duration(rand.Float64() / 4 * float64(interval))
	if changed {
		jitter = 0
	}
	return ctrl.Result{RequeueAfter: interval + jitter}, nil
}

// finalize kills a live app, then lets the AiApp go.
func (r *reconciler) finalize(ctx context.Context, app *unstructured.Unstructured) error {
	if !controllerutil.ContainsFinalizer(app, finalizer) {
		return nil
	}
	id := str(app, "status", "id")
	if id != "" && !isTerminal(str(app, "status", "phase")) {
		creds, err := r.credentials(ctx, app)
		if err != nil {
			return err
		}
		if err := r.api.kill(ctx, creds, id); err != nil {
			return err
		}
		r.recorder.Eventf(app, nil, corev1.EventTypeNormal, "Killed", "Kill", "killed app %s on deletion", id)
	}
	r.intervals.Delete(app.GetUID())
	controllerutil.RemoveFinalizer(app, finalizer)
	return r.Update(ctx, app)
}

// credentials reads the AiApp's Secret (through the manager's cache, as controller-runtime's
// client does by default), with the key names of spec.credentials.keys or their defaults.
func (r *reconciler) credentials(ctx context.Context, app *unstructured.Unstructured) (credentials, error) {
	name := str(app, "spec", "credentials", "secretName")
	if name == "" {
		return credentials{}, fmt.Errorf("spec.credentials.secretName is not set")
	}
	key := func(field, fallback string) string {
		if k := str(app, "spec", "credentials", "keys", field); k != "" {
			return k
		}
		return fallback
	}
	secret := &corev1.Secret{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: app.GetNamespace(), Name: name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return credentials{}, fmt.Errorf("credentials Secret %s not found", name)
		}
		return credentials{}, err
	}
	creds := credentials{
		accessKey: string(secret.Data[key("accessKey", "accessKey")]),
		secretKey: string(secret.Data[key("secretKey", "secretKey")]),
		endpoint:  string(secret.Data[key("endpoint", "endpoint")]),
	}
	if creds.accessKey == "" || creds.secretKey == "" {
		return credentials{}, fmt.Errorf("credentials Secret %s lacks the access key or the secret key", name)
	}
	if creds.endpoint == "" {
		creds.endpoint = defaultEndpoint
	}
	return creds, nil
}

// submitBody is the submit request from the spec: the six documented fields.
func submitBody(app *unstructured.Unstructured) map[string]any {
	spec, _, _ := unstructured.NestedMap(app.Object, "spec")
	docker, _, _ := unstructured.NestedMap(spec, "docker")
	// envFrom is the operator's own field, not the API's.
	delete(docker, "envFrom")
	prefix, _, _ := unstructured.NestedString(spec, "namePrefix")
	if prefix == "" {
		prefix = prefixOf(app.GetName())
	}
	queue, _, _ := unstructured.NestedString(spec, "queueName")
	if queue == "" {
		queue = "gpu"
	}
	data, _, _ := unstructured.NestedMap(spec, "data")
	if data == nil {
		data = map[string]any{}
	}
	resource, _, _ := unstructured.NestedMap(spec, "resource")
	if resource == nil {
		resource = map[string]any{}
	}
	return map[string]any{
		"aiWorkspaceId": spec["aiWorkspaceId"],
		"namePrefix":    prefix,
		"queueName":     queue,
		"data":          data,
		"docker":        docker,
		"resource":      resource,
	}
}

// prefixOf makes the API's 2 to 8 character name prefix from the AiApp's name.
func prefixOf(name string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(name) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			b.WriteRune(c)
		}
		if b.Len() == 8 {
			break
		}
	}
	for b.Len() < 2 {
		b.WriteByte('x')
	}
	return b.String()
}

// phaseOf maps YARN's state and final status to the AiApp's phase.
func phaseOf(state, finalStatus string) string {
	switch state {
	case "RUNNING":
		return "Running"
	case "FINISHED", "FAILED", "KILLED":
		switch {
		case finalStatus == "SUCCEEDED" && state == "FINISHED":
			return "Succeeded"
		case finalStatus == "KILLED" || state == "KILLED":
			return "Killed"
		default:
			return "Failed"
		}
	default:
		return "Accepted"
	}
}

func isTerminal(phase string) bool {
	return phase == "Succeeded" || phase == "Failed" || phase == "Killed"
}

func setStatus(app *unstructured.Unstructured, phase string, answer *appAnswer) {
	set := func(value string, field string) {
		if value != "" {
			_ = unstructured.SetNestedField(app.Object, value, "status", field)
		}
	}
	set(phase, "phase")
	set(answer.ID, "id")
	set(answer.Name, "name")
	set(answer.AppID, "appId")
	set(answer.State, "state")
	set(answer.FinalStatus, "finalStatus")
}

func str(app *unstructured.Unstructured, fields ...string) string {
	value, _, _ := unstructured.NestedString(app.Object, fields...)
	return value
}
