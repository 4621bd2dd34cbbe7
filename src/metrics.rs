//! Prometheus metrics of the operator, and a decorator that measures every Data Forest call.
//!
//! Besides the operator's own `dataforest_operator_*` metrics: `build_info`, the leader
//! gauge, the AiApp counts that only the leader exports, and the standard `process_*`
//! metrics (`process`).

mod phases;
mod process;

pub use phases::{PhaseCounts, PhaseReport};

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::crd::Phase;
use crate::dataforest::{
    ApiError, AppDetail, AppSummary, DataForestApi, KillResponse, Operation, SubmitRequest,
    SubmitResponse,
};

/// Every metric name starts with this, followed by `_`.
pub const PREFIX: &str = "dataforest_operator";

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The outcome label of a call that succeeded; failures carry [`ApiError::reason`].
pub const SUCCESS: &str = "Success";

/// Every phase, so that once counted the gauge shows 0 for a phase no AiApp is in.
const PHASES: [Phase; 9] = [
    Phase::Pending,
    Phase::Submitting,
    Phase::Accepted,
    Phase::Running,
    Phase::Succeeded,
    Phase::Failed,
    Phase::Killed,
    Phase::Unknown,
    Phase::Suspended,
];

/// Every kind a failed reconcile is counted under (`controller::Error::kind`), shown at 0
/// from the start: a counter that appears only at its first increment hides that one
/// from `rate()`, and an alert on it would have no series to name.
pub const RECONCILE_ERROR_KINDS: [&str; 5] = [
    "Kubernetes",
    "KubernetesTimeout",
    "Conflict",
    "ClientBuild",
    "Finalizer",
];

// Buckets in seconds. A reconcile is mostly apiserver round trips; a Data Forest call
// includes the client's own retries (backoff up to 5 s, 30 s timeout per attempt).
const RECONCILE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const API_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
// Acceptance takes one submit plus a poll; waiting for GPUs can take hours.
const ACCEPT_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];
const RUN_BUCKETS: [f64; 11] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabel {
    lease: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    git_sha: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The operator's metrics. Cheap to update from many tasks at once; share it as an `Arc`.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    reconcile_duration: Histogram,
    reconcile_errors: Family<KindLabel, Counter>,
    api_calls: Family<CallLabels, Counter>,
    api_duration: HistogramFamily<OperationLabel>,
    aiapps: Family<PhaseLabel, Gauge>,
    // Phases the gauge shows; the lock also keeps two updates (and a clear) from interleaving.
    phases_seen: Mutex<BTreeSet<String>>,
    longest_in_phase: Family<PhaseLabel, Gauge<f64, AtomicU64>>,
    leader: Family<LeaseLabel, Gauge>,
    create_to_accepted: Histogram,
    accepted_to_running: Histogram,
    events_dropped: Counter,
    events_failed: Counter,
    events_queued: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut root = Registry::default();
        // `process_*` keep their standard names, without the operator's prefix.
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix(PREFIX);
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the labels say which build of the operator runs",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                git_sha: crate::cli::COMMIT.to_owned(),
            })
            .set(1);
        let leader = Family::<LeaseLabel, Gauge>::default();
        registry.register(
            "leader",
            "1 while this instance holds the leader Lease named by the label, 0 while it does not",
            leader.clone(),
        );
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles started, of every AiApp",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(RECONCILE_BUCKETS);
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile took, failed ones included",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error, by error kind",
            reconcile_errors.clone(),
        );
        for kind in RECONCILE_ERROR_KINDS {
            // Creating the series is the point; the counter handle is not needed.
            drop(reconcile_errors.get_or_create_owned(&KindLabel {
                kind: kind.to_owned(),
            }));
        }
        let api_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "api_calls",
            "Data Forest API calls by operation and outcome (Success or the error reason); a call includes the client's retries",
            api_calls.clone(),
        );
        let api_duration: HistogramFamily<OperationLabel> =
            Family::new_with_constructor(|| Histogram::new(API_BUCKETS));
        registry.register_with_unit(
            "api_call_duration",
            "Time one Data Forest API call took, retries included, by operation",
            Unit::Seconds,
            api_duration.clone(),
        );
        let aiapps = Family::<PhaseLabel, Gauge>::default();
        registry.register(
            "aiapps",
            "AiApps by phase as the leader last counted them; exported by the leader only",
            aiapps.clone(),
        );
        let longest_in_phase = Family::<PhaseLabel, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "aiapps_longest_in_phase",
            "How long the AiApp longest in the phase has been in it (Submitting: since its submission marker), 0 when none is; exported by the leader only",
            Unit::Seconds,
            longest_in_phase.clone(),
        );
        let create_to_accepted = Histogram::new(ACCEPT_BUCKETS);
        registry.register_with_unit(
            "create_to_accepted",
            "Time from an AiApp's creation to Data Forest accepting its app",
            Unit::Seconds,
            create_to_accepted.clone(),
        );
        let accepted_to_running = Histogram::new(RUN_BUCKETS);
        registry.register_with_unit(
            "accepted_to_running",
            "Time from Data Forest accepting an app to the app running",
            Unit::Seconds,
            accepted_to_running.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Kubernetes Events dropped because the queue of Events to send was full",
            events_dropped.clone(),
        );
        let events_failed = Counter::default();
        registry.register(
            "events_failed",
            "Kubernetes Events the apiserver refused or did not answer in time",
            events_failed.clone(),
        );
        let events_queued = Gauge::default();
        registry.register(
            "events_queued",
            "Kubernetes Events waiting to be sent",
            events_queued.clone(),
        );
        let metrics = Metrics {
            registry: root,
            reconciles,
            reconcile_duration,
            reconcile_errors,
            api_calls,
            api_duration,
            aiapps,
            phases_seen: Mutex::new(BTreeSet::new()),
            longest_in_phase,
            leader,
            create_to_accepted,
            accepted_to_running,
            events_dropped,
            events_failed,
            events_queued,
        };
        Arc::new(metrics)
    }

    /// Counts a reconcile; the timer records its duration when finished or dropped, so an
    /// early return with `?` is measured too.
    pub fn reconcile_started(&self) -> ReconcileTimer {
        self.reconciles.inc();
        ReconcileTimer {
            histogram: self.reconcile_duration.clone(),
            started: Instant::now(),
        }
    }

    /// Counts an Event dropped because its queue was full.
    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// Sets how many Events wait to be sent.
    pub fn set_events_queued(&self, queued: usize) {
        self.events_queued
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    /// Counts an Event the apiserver refused or did not answer.
    pub fn event_failed(&self) {
        self.events_failed.inc();
    }

    /// Counts a failed reconcile under `kind`, a short CamelCase name such as a condition reason.
    pub fn reconcile_failed(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Records one API call; [`InstrumentedApi`] calls it for every call it forwards.
    pub fn api_call(&self, operation: &str, outcome: &str, elapsed: Duration) {
        self.api_calls
            .get_or_create(&CallLabels {
                operation: operation.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.api_duration
            .get_or_create(&OperationLabel {
                operation: operation.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the count of AiApps per phase. Every phase of [`PHASES`] is shown (0 when
    /// left out), and so is a phase shown before and left out now, so that a phase that
    /// emptied reads 0 rather than its last count. Only the leader calls it, through a
    /// [`PhaseReport`]: a follower's empty cache would read as "no AiApp anywhere".
    pub fn set_aiapps_by_phase(&self, counts: &[(&str, i64)]) {
        let mut seen = self
            .phases_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.extend(PHASES.iter().map(|p| phase_name(*p).to_owned()));
        for phase in seen.iter() {
            if !counts.iter().any(|(p, _)| p == phase) {
                self.phase_gauge(phase).set(0);
            }
        }
        for &(phase, count) in counts {
            self.phase_gauge(phase).set(count);
            if !seen.contains(phase) {
                seen.insert(phase.to_owned());
            }
        }
    }

    /// Sets how long the AiApp longest in `phase` has been in it, 0 when none is.
    pub fn set_longest_in_phase(&self, phase: &str, seconds: f64) {
        let _serial = self
            .phases_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.longest_in_phase
            .get_or_create(&PhaseLabel {
                phase: phase.to_owned(),
            })
            .set(seconds);
    }

    /// Removes every per-phase series: an instance that stops leading exports none, so
    /// that a sum over all pods counts each AiApp once and an old count cannot linger.
    pub fn clear_aiapps(&self) {
        let mut seen = self
            .phases_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.clear();
        self.aiapps.clear();
        self.longest_in_phase.clear();
    }

    /// Starts the leader's per-phase report; dropping it clears the series.
    pub fn phase_report(self: &Arc<Self>) -> PhaseReport {
        PhaseReport {
            metrics: self.clone(),
        }
    }

    /// Sets the leader gauge of the Lease `lease`: 1 while this instance holds it.
    pub fn set_leader(&self, lease: &str, leading: bool) {
        self.leader
            .get_or_create(&LeaseLabel {
                lease: lease.to_owned(),
            })
            .set(i64::from(leading));
    }

    pub fn observe_create_to_accepted(&self, seconds: f64) {
        self.create_to_accepted.observe(seconds);
    }

    pub fn observe_accepted_to_running(&self, seconds: f64) {
        self.accepted_to_running.observe(seconds);
    }

    /// Every metric in the OpenMetrics text format, served as [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    fn phase_gauge(&self, phase: &str) -> Gauge {
        self.aiapps.get_or_create_owned(&PhaseLabel {
            phase: phase.to_owned(),
        })
    }
}

/// The label value of a phase: its name as in status, e.g. `Running`.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::Submitting => "Submitting",
        Phase::Accepted => "Accepted",
        Phase::Running => "Running",
        Phase::Succeeded => "Succeeded",
        Phase::Failed => "Failed",
        Phase::Killed => "Killed",
        Phase::Unknown => "Unknown",
        Phase::Suspended => "Suspended",
    }
}

/// Measures one reconcile from [`Metrics::reconcile_started`] until finished or dropped.
#[must_use = "dropping the timer at once records a reconcile of no duration"]
#[derive(Debug)]
pub struct ReconcileTimer {
    histogram: Histogram,
    started: Instant,
}

impl ReconcileTimer {
    /// Records the duration now; the same as dropping, but says so at the call site.
    pub fn finish(self) {}
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// A [`DataForestApi`] that records every call's operation, outcome and latency, so that
/// the controller cannot forget one.
pub struct InstrumentedApi {
    inner: Arc<dyn DataForestApi>,
    metrics: Arc<Metrics>,
}

impl InstrumentedApi {
    pub fn new(inner: Arc<dyn DataForestApi>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn measure<T>(
        &self,
        operation: Operation,
        call: BoxFuture<'_, Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let result = call.await;
        let outcome = match &result {
            Ok(_) => SUCCESS,
            Err(e) => e.reason(),
        };
        self.metrics
            .api_call(operation.as_str(), outcome, started.elapsed());
        result
    }
}

impl DataForestApi for InstrumentedApi {
    fn submit<'a>(
        &'a self,
        request: &'a SubmitRequest,
    ) -> BoxFuture<'a, Result<SubmitResponse, ApiError>> {
        Box::pin(self.measure(Operation::Submit, self.inner.submit(request)))
    }

    fn get_detail<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<AppDetail, ApiError>> {
        Box::pin(self.measure(Operation::GetDetail, self.inner.get_detail(id)))
    }

    fn list<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Vec<AppSummary>, ApiError>> {
        Box::pin(self.measure(Operation::GetList, self.inner.list(account_id)))
    }

    fn kill<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<KillResponse, ApiError>> {
        Box::pin(self.measure(Operation::Kill, self.inner.kill(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample line of `name` whose labels are exactly `labels`, if any.
    fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
        let prefix = format!("{PREFIX}_{name}{labels} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|value| value.parse().expect("a sample value is a number"))
    }

    #[test]
    fn an_api_call_is_counted_by_operation_and_outcome_and_timed_by_operation() {
        let metrics = Metrics::new();
        metrics.api_call("getDetail", "Success", Duration::from_millis(30));
        metrics.api_call("getDetail", "Success", Duration::from_millis(40));
        metrics.api_call("getDetail", "Throttled", Duration::from_millis(5));
        let text = metrics.encode();
        let calls = |labels| sample(&text, "api_calls_total", labels);
        assert_eq!(
            calls(r#"{operation="getDetail",outcome="Success"}"#),
            Some(2.0)
        );
        assert_eq!(
            calls(r#"{operation="getDetail",outcome="Throttled"}"#),
            Some(1.0)
        );
        let duration = |suffix, labels| {
            sample(
                &text,
                &format!("api_call_duration_seconds_{suffix}"),
                labels,
            )
        };
        assert_eq!(duration("count", r#"{operation="getDetail"}"#), Some(3.0));
        assert_eq!(
            duration("bucket", r#"{le="0.025",operation="getDetail"}"#),
            Some(1.0)
        );
    }

    #[test]
    fn a_reconcile_is_counted_and_timed_when_its_timer_ends() {
        let metrics = Metrics::new();
        let timer = metrics.reconcile_started();
        let text = metrics.encode();
        assert_eq!(sample(&text, "reconciles_total", ""), Some(1.0));
        assert_eq!(
            sample(&text, "reconcile_duration_seconds_count", ""),
            Some(0.0)
        );
        timer.finish();
        drop(metrics.reconcile_started());
        let text = metrics.encode();
        assert_eq!(sample(&text, "reconciles_total", ""), Some(2.0));
        assert_eq!(
            sample(&text, "reconcile_duration_seconds_count", ""),
            Some(2.0)
        );
    }

    #[test]
    fn every_reconcile_error_kind_reads_zero_from_the_start() {
        use crate::controller::Error;
        let client_build = crate::dataforest::ClientBuildError::InvalidEndpoint {
            endpoint: "ftp://x".to_owned(),
            reason: "not http".to_owned(),
        };
        let errors = [
            Error::KubeTimeout,
            Error::Conflict,
            Error::Client(client_build),
            Error::Kube(kube::Error::LinesCodecMaxLineLengthExceeded),
        ];
        let text = Metrics::new().encode();
        for error in errors {
            let kind = error.kind();
            assert!(
                RECONCILE_ERROR_KINDS.contains(&kind),
                "{kind} is not listed"
            );
            let labels = format!(r#"{{kind="{kind}"}}"#);
            assert_eq!(
                sample(&text, "reconcile_errors_total", &labels),
                Some(0.0),
                "{kind}"
            );
        }
        let labels = r#"{kind="Finalizer"}"#;
        assert_eq!(sample(&text, "reconcile_errors_total", labels), Some(0.0));
    }

    #[test]
    fn reconcile_errors_are_counted_by_kind() {
        let metrics = Metrics::new();
        metrics.reconcile_failed("CredentialsNotFound");
        metrics.reconcile_failed("CredentialsNotFound");
        metrics.reconcile_failed("Kube");
        let text = metrics.encode();
        let errors = |labels| sample(&text, "reconcile_errors_total", labels);
        assert_eq!(errors(r#"{kind="CredentialsNotFound"}"#), Some(2.0));
        assert_eq!(errors(r#"{kind="Kube"}"#), Some(1.0));
    }

    #[test]
    fn no_phase_is_exported_until_counted_then_every_phase_is() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("dataforest_operator_aiapps")),
            "a follower exports no count: {text}"
        );
        metrics.set_aiapps_by_phase(&[("Running", 2)]);
        let text = metrics.encode();
        for phase in PHASES {
            let labels = format!(r#"{{phase="{}"}}"#, phase_name(phase));
            let want = if phase == Phase::Running { 2.0 } else { 0.0 };
            assert_eq!(sample(&text, "aiapps", &labels), Some(want), "{phase:?}");
        }
    }

    #[test]
    fn a_phase_report_sets_counts_and_the_longest_submitting_and_clears_them_when_dropped() {
        let metrics = Metrics::new();
        let report = metrics.phase_report();
        report.set(&PhaseCounts {
            by_phase: [("Submitting", 1), ("Unknown", 2)].into(),
            longest_submitting: Duration::from_secs(90),
        });
        let text = metrics.encode();
        assert_eq!(sample(&text, "aiapps", r#"{phase="Unknown"}"#), Some(2.0));
        assert_eq!(
            sample(
                &text,
                "aiapps_longest_in_phase_seconds",
                r#"{phase="Submitting"}"#
            ),
            Some(90.0)
        );
        drop(report);
        let text = metrics.encode();
        let left: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("dataforest_operator_aiapps"))
            .collect();
        assert!(
            left.is_empty(),
            "series left after the report ended: {left:?}"
        );
        // A new leader term starts from every phase again, not from what was cleared.
        let next_term = metrics.phase_report();
        next_term.set(&PhaseCounts::default());
        let text = metrics.encode();
        assert_eq!(sample(&text, "aiapps", r#"{phase="Unknown"}"#), Some(0.0));
    }

    #[test]
    fn the_leader_gauge_follows_the_lease_and_build_info_names_the_build() {
        let metrics = Metrics::new();
        assert_eq!(
            sample(&metrics.encode(), "leader", r#"{lease="ops"}"#),
            None
        );
        metrics.set_leader("ops", false);
        assert_eq!(
            sample(&metrics.encode(), "leader", r#"{lease="ops"}"#),
            Some(0.0)
        );
        metrics.set_leader("ops", true);
        assert_eq!(
            sample(&metrics.encode(), "leader", r#"{lease="ops"}"#),
            Some(1.0)
        );
        metrics.set_leader("ops", false);
        assert_eq!(
            sample(&metrics.encode(), "leader", r#"{lease="ops"}"#),
            Some(0.0)
        );
        let labels = format!(
            r#"{{version="{}",git_sha="{}"}}"#,
            env!("CARGO_PKG_VERSION"),
            crate::cli::COMMIT
        );
        assert_eq!(sample(&metrics.encode(), "build_info", &labels), Some(1.0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_standard_process_metrics_are_exported_unprefixed() {
        let text = Metrics::new().encode();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"));
            let value: f64 = value.parse().expect("a number");
            assert!(value >= 0.0, "{name} {value}");
        }
    }

    #[test]
    fn a_phase_left_out_of_a_count_reads_zero_not_its_last_value() {
        let metrics = Metrics::new();
        metrics.set_aiapps_by_phase(&[("Running", 3), ("Accepted", 2), ("Odd", 1)]);
        metrics.set_aiapps_by_phase(&[("Succeeded", 5)]);
        let text = metrics.encode();
        let aiapps = |phase: &str| sample(&text, "aiapps", &format!(r#"{{phase="{phase}"}}"#));
        assert_eq!(aiapps("Succeeded"), Some(5.0));
        assert_eq!(aiapps("Running"), Some(0.0));
        assert_eq!(aiapps("Accepted"), Some(0.0));
        assert_eq!(aiapps("Odd"), Some(0.0));
    }

    #[test]
    fn lifecycle_times_land_in_their_histograms() {
        let metrics = Metrics::new();
        metrics.observe_create_to_accepted(3.0);
        metrics.observe_accepted_to_running(90.0);
        metrics.observe_accepted_to_running(4000.0);
        let text = metrics.encode();
        assert_eq!(
            sample(&text, "create_to_accepted_seconds_count", ""),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "create_to_accepted_seconds_bucket", r#"{le="5.0"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "accepted_to_running_seconds_count", ""),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "accepted_to_running_seconds_sum", ""),
            Some(4090.0)
        );
    }

    #[test]
    fn the_output_is_openmetrics_with_every_name_prefixed_but_the_process_ones() {
        let metrics = Metrics::new();
        metrics.set_aiapps_by_phase(&[]);
        let text = metrics.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(
                line.starts_with("dataforest_operator_") || line.starts_with("process_"),
                "{line}"
            );
        }
    }
}
