//! The leader's report of AiApps by phase: what it counts from its cache, and the guard
//! that removes the per-phase series when the leader stops reporting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::{Metrics, phase_name};
use crate::crd::{AiApp, Phase};

/// What the leader reports from its cache: AiApps by phase (an AiApp without a phase
/// counts as Pending), and how long the AiApp longest in Submitting has been there.
#[derive(Debug, Default, PartialEq)]
pub struct PhaseCounts {
    pub by_phase: BTreeMap<&'static str, i64>,
    pub longest_submitting: Duration,
}

impl PhaseCounts {
    /// Counts `apps` at `now`. Submitting counts from the submission marker's time; a
    /// marker in the future (another clock) counts as just written.
    pub fn of<'a>(apps: impl IntoIterator<Item = &'a AiApp>, now: Timestamp) -> PhaseCounts {
        let mut counts = PhaseCounts::default();
        for app in apps {
            let status = app.status.as_ref();
            let phase = status.and_then(|s| s.phase).unwrap_or(Phase::Pending);
            *counts.by_phase.entry(phase_name(phase)).or_default() += 1;
            if phase != Phase::Submitting {
                continue;
            }
            let since = status
                .and_then(|s| s.submission.as_ref())
                .map(|m| m.started_at.0);
            let waited = since
                .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
                .unwrap_or_default();
            counts.longest_submitting = counts.longest_submitting.max(waited);
        }
        counts
    }
}

/// The per-phase series while the leader reports them; dropped (the task that reports
/// ends, or is aborted), it removes them.
#[must_use = "dropping the report at once removes the series it set"]
#[derive(Debug)]
pub struct PhaseReport {
    pub(super) metrics: Arc<Metrics>,
}

impl PhaseReport {
    /// Sets the counts by phase and how long the AiApp longest in Submitting has been there.
    pub fn set(&self, counts: &PhaseCounts) {
        let by_phase: Vec<(&str, i64)> = counts.by_phase.iter().map(|(p, n)| (*p, *n)).collect();
        self.metrics.set_aiapps_by_phase(&by_phase);
        self.metrics.set_longest_in_phase(
            phase_name(Phase::Submitting),
            counts.longest_submitting.as_secs_f64(),
        );
    }
}

impl Drop for PhaseReport {
    fn drop(&mut self) {
        self.metrics.clear_aiapps();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_counted_and_submitting_is_timed_from_its_marker() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let app = |phase: Option<&str>, marker_age: Option<i64>| -> AiApp {
            let mut status = serde_json::json!({});
            if let Some(phase) = phase {
                status["phase"] = phase.into();
            }
            if let Some(age) = marker_age {
                let at = now - k8s_openapi::jiff::SignedDuration::from_secs(age);
                status["submission"] =
                    serde_json::json!({"attempt": 1, "startedAt": at, "namePrefix": "p"});
            }
            serde_json::from_value(serde_json::json!({
                "apiVersion": "dataforest.dev/v1alpha1", "kind": "AiApp",
                "metadata": {"name": "a", "namespace": "ml"},
                "spec": {"aiWorkspaceId": "ws", "docker": {"image": "i", "command": "c"}},
                "status": status,
            }))
            .unwrap()
        };
        let apps = [
            app(None, None),
            app(Some("Pending"), None),
            app(Some("Submitting"), Some(30)),
            app(Some("Submitting"), Some(600)),
            // A marker ahead of our clock, and one missing: as if just written.
            app(Some("Submitting"), Some(-60)),
            app(Some("Submitting"), None),
            app(Some("Running"), Some(9_999)),
        ];
        let counts = PhaseCounts::of(&apps, now);
        assert_eq!(
            counts.by_phase,
            [("Pending", 2), ("Submitting", 4), ("Running", 1)].into()
        );
        assert_eq!(counts.longest_submitting, Duration::from_secs(600));
        assert_eq!(PhaseCounts::of(&[], now), PhaseCounts::default());
    }
}
