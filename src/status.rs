//! Pure status building: the phase from what Data Forest said, and conditions in the
//! Kubernetes shape, carrying `lastTransitionTime` over when a condition did not change.

use compact_str::CompactString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{AiAppStatus, Condition, ContainerStatus, Phase};
use crate::dataforest::{AppDetail, SubmitResponse};

/// Condition types the operator writes.
pub mod condition {
    /// Whether the app was submitted (Unknown while a submit's outcome is unknown).
    pub const SUBMITTED: &str = "Submitted";
    /// Whether the last exchange with the API worked; never the job's outcome.
    pub const SYNCED: &str = "Synced";
    /// The app ended with final status SUCCEEDED.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The app ended without success.
    pub const FAILED: &str = "Failed";
    /// `spec.suspend` holds the AiApp: True once nothing runs (as a Job's).
    pub const SUSPENDED: &str = "Suspended";
    /// The AiApp is bound to fail: a deadline passed and its app is being killed (as a
    /// Job's `FailureTarget`); `Failed` follows once Data Forest shows the app ended.
    pub const FAILURE_TARGET: &str = "FailureTarget";
}

/// The phase that a `state` and `finalStatus` from Data Forest mean. Unknown states are
/// read as not yet running: they are kept in status as they came, and the next poll looks again.
pub fn phase_of(state: Option<&str>, final_status: Option<&str>) -> Phase {
    match state {
        Some("FINISHED" | "FAILED" | "KILLED") => match final_status {
            Some("SUCCEEDED") => Phase::Succeeded,
            Some("KILLED") => Phase::Killed,
            // FAILED, ENDED, UNDEFINED or a value YARN may add: not a success.
            _ => Phase::Failed,
        },
        Some("RUNNING") => Phase::Running,
        _ => Phase::Accepted,
    }
}

/// The `reason` of the Failed condition of an app that ended without success.
/// Judged by the final status alone, as the phase is, so the two always agree.
pub fn failure_reason(final_status: Option<&str>) -> &'static str {
    match final_status {
        Some("KILLED") => "Killed",
        Some("ENDED") => "AppEnded",
        _ => "AppFailed",
    }
}

/// `at` as status stores it. metav1.Time keeps whole seconds, while Data Forest answers
/// and the clock have finer ones: a finer time would never equal the copy read back from
/// Kubernetes, and a status that did not change would be applied again on every poll.
pub fn status_time(at: Timestamp) -> Time {
    Time(Timestamp::from_second(at.as_second()).unwrap_or(at))
}

/// An answer's string as status keeps it: inline when short (status is cached for every
/// AiApp, and most of these are ids and state words).
fn short(answered: &Option<String>) -> Option<CompactString> {
    answered.as_deref().map(CompactString::from)
}

/// Copies what submit returned into status; the phase follows its state.
pub fn record_submitted(status: &mut AiAppStatus, response: &SubmitResponse) {
    status.id = short(&response.id);
    status.name = short(&response.name);
    status.account_name = short(&response.account_name);
    status.queue_name = short(&response.queue_name);
    status.state = short(&response.state);
    status.final_status = short(&response.final_status);
    status.started_at = response.started_at.map(status_time);
    status.finished_at = response.finished_at.map(status_time);
    status.elapsed_millis = response.elapsed_millis;
}

/// Copies what getDetail returned into status, containers included.
pub fn record_detail(status: &mut AiAppStatus, detail: &AppDetail) {
    // getDetail may leave out what submit said; keep the earlier value then.
    fn keep<T: Clone>(slot: &mut Option<T>, new: &Option<T>) {
        if new.is_some() {
            slot.clone_from(new);
        }
    }
    // The run time grows on every poll of a live app. Recorded with each change of state
    // and at the end, not on a poll that found the app as it was: such a poll then
    // writes nothing, instead of a new resourceVersion for every watcher of the AiApp.
    let changed = status.state.as_deref() != detail.state.as_deref()
        || status.final_status.as_deref() != detail.final_status.as_deref();
    if changed || detail.is_terminal() {
        keep(&mut status.elapsed_millis, &detail.elapsed_millis);
    }
    keep(&mut status.name, &short(&detail.name));
    keep(&mut status.app_id, &short(&detail.app_id));
    keep(&mut status.account_name, &short(&detail.account_name));
    keep(&mut status.queue_name, &short(&detail.queue_name));
    keep(&mut status.state, &short(&detail.state));
    keep(&mut status.final_status, &short(&detail.final_status));
    keep(&mut status.started_at, &detail.started_at.map(status_time));
    keep(
        &mut status.finished_at,
        &detail.finished_at.map(status_time),
    );
    if !detail.containers.is_empty() {
        status.containers = detail
            .containers
            .iter()
            .map(|(name, container)| ContainerStatus {
                name: name.as_str().into(),
                status: short(&container.status),
                log_url: container.log_url.clone(),
            })
            .collect();
    }
}

/// Sets the phase from the recorded state, with the conditions that go with it.
pub fn settle_phase(status: &mut AiAppStatus, now: Timestamp) {
    let (state, final_status) = (status.state.clone(), status.final_status.clone());
    let (state, final_status) = (state.as_deref(), final_status.as_deref());
    let phase = phase_of(state, final_status);
    status.phase = Some(phase);
    let said = |s: Option<&str>| s.unwrap_or("unknown").to_owned();
    let detail = format!("state {}, final status {}", said(state), said(final_status));
    set_condition(
        status,
        condition::SUBMITTED,
        "True",
        "Submitted",
        "Data Forest accepted the app",
        now,
    );
    set_condition(
        status,
        condition::SYNCED,
        "True",
        "Synced",
        "the last API call worked",
        now,
    );
    match phase {
        Phase::Succeeded => {
            set_condition(
                status,
                condition::SUCCEEDED,
                "True",
                "Succeeded",
                &detail,
                now,
            );
            set_condition(
                status,
                condition::FAILED,
                "False",
                "Succeeded",
                &detail,
                now,
            );
        }
        Phase::Failed | Phase::Killed => {
            let reason = failure_reason(final_status);
            set_condition(status, condition::FAILED, "True", reason, &detail, now);
            set_condition(status, condition::SUCCEEDED, "False", reason, &detail, now);
        }
        _ => {}
    }
}

/// Sets one condition, keyed by type. `lastTransitionTime` moves only when the
/// condition's status changes, as the Kubernetes API conventions ask.
pub fn set_condition(
    status: &mut AiAppStatus,
    type_: &str,
    condition_status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let generation = status.observed_generation;
    let existing = status.conditions.iter_mut().find(|c| c.type_ == type_);
    match existing {
        Some(condition) => {
            if condition.status != condition_status {
                condition.last_transition_time = status_time(now);
            }
            condition.status = condition_status.into();
            condition.reason = reason.into();
            condition.message = message.to_owned();
            condition.observed_generation = generation;
        }
        None => status.conditions.push(Condition {
            type_: type_.into(),
            status: condition_status.into(),
            reason: reason.into(),
            message: message.to_owned(),
            last_transition_time: status_time(now),
            observed_generation: generation,
        }),
    }
}

/// Removes a condition type.
pub fn remove_condition(status: &mut AiAppStatus, type_: &str) {
    status.conditions.retain(|c| c.type_ != type_);
}

/// Forgets what Data Forest said about the previous attempt's app, as a new attempt starts.
pub fn clear_app(status: &mut AiAppStatus) {
    status.id = None;
    status.name = None;
    status.app_id = None;
    status.account_name = None;
    status.queue_name = None;
    status.state = None;
    status.final_status = None;
    status.started_at = None;
    status.finished_at = None;
    status.elapsed_millis = None;
    status.containers.clear();
    status.next_attempt_at = None;
}

/// The status of a condition type, if set.
pub fn condition_status<'a>(status: &'a AiAppStatus, type_: &str) -> Option<&'a str> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn states_and_final_statuses_map_to_the_documented_phases() {
        let table = [
            (Some("NEW"), Some("UNDEFINED"), Phase::Accepted),
            (Some("NEW_SAVING"), None, Phase::Accepted),
            (Some("SUBMITTED"), None, Phase::Accepted),
            (Some("ACCEPTED"), Some("UNDEFINED"), Phase::Accepted),
            (Some("RUNNING"), Some("UNDEFINED"), Phase::Running),
            (Some("FINISHED"), Some("SUCCEEDED"), Phase::Succeeded),
            (Some("FINISHED"), Some("FAILED"), Phase::Failed),
            (Some("FAILED"), Some("FAILED"), Phase::Failed),
            (Some("FINISHED"), Some("ENDED"), Phase::Failed),
            (Some("FINISHED"), Some("UNDEFINED"), Phase::Failed),
            (Some("FINISHED"), Some("SOMETHING_NEW"), Phase::Failed),
            (Some("KILLED"), Some("KILLED"), Phase::Killed),
            (Some("A_STATE_YARN_ADDS_LATER"), None, Phase::Accepted),
            (None, None, Phase::Accepted),
        ];
        for (state, final_status, phase) in table {
            assert_eq!(
                phase_of(state, final_status),
                phase,
                "{state:?}/{final_status:?}"
            );
        }
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_stays() {
        let mut status = AiAppStatus::default();
        set_condition(&mut status, "Synced", "True", "Synced", "ok", at(0));
        set_condition(&mut status, "Synced", "True", "Synced", "still ok", at(10));
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].last_transition_time, Time(at(0)));
        assert_eq!(status.conditions[0].message, "still ok");

        set_condition(
            &mut status,
            "Synced",
            "False",
            "ApiUnavailable",
            "down",
            at(20),
        );
        assert_eq!(status.conditions[0].last_transition_time, Time(at(20)));
        assert_eq!(status.conditions[0].reason, "ApiUnavailable");
    }

    #[test]
    fn a_finished_app_gets_succeeded_true_and_failed_false() {
        let mut status = AiAppStatus {
            state: Some("FINISHED".into()),
            final_status: Some("SUCCEEDED".into()),
            ..Default::default()
        };
        settle_phase(&mut status, at(0));
        assert_eq!(status.phase, Some(Phase::Succeeded));
        assert_eq!(
            condition_status(&status, condition::SUCCEEDED),
            Some("True")
        );
        assert_eq!(condition_status(&status, condition::FAILED), Some("False"));
        assert_eq!(
            condition_status(&status, condition::SUBMITTED),
            Some("True")
        );
    }

    #[test]
    fn a_killed_app_fails_with_reason_killed() {
        let mut status = AiAppStatus {
            state: Some("KILLED".into()),
            final_status: Some("KILLED".into()),
            ..Default::default()
        };
        settle_phase(&mut status, at(0));
        assert_eq!(status.phase, Some(Phase::Killed));
        let failed = status
            .conditions
            .iter()
            .find(|c| c.type_ == condition::FAILED)
            .unwrap();
        assert_eq!(
            (failed.status.as_str(), failed.reason.as_str()),
            ("True", "Killed")
        );
    }

    #[test]
    fn detail_fills_containers_and_keeps_what_it_leaves_out() {
        let mut status = AiAppStatus {
            name: Some("mni1a2b-abcd-efgh".into()),
            ..Default::default()
        };
        let detail: AppDetail = serde_json::from_value(serde_json::json!({
            "state": "RUNNING", "finalStatus": "UNDEFINED", "appId": "application_1_0001",
            "containers": {"worker": {"status": "RUNNING", "logUrl": "http://logs/worker"}},
        }))
        .unwrap();
        record_detail(&mut status, &detail);
        assert_eq!(status.name.as_deref(), Some("mni1a2b-abcd-efgh"));
        assert_eq!(status.app_id.as_deref(), Some("application_1_0001"));
        assert_eq!(status.containers.len(), 1);
        assert_eq!(
            status.containers[0].log_url.as_deref(),
            Some("http://logs/worker")
        );
    }

    fn detail(state: &str, final_status: &str, elapsed: i64) -> AppDetail {
        serde_json::from_value(serde_json::json!({
            "state": state, "finalStatus": final_status, "elapsedMillis": elapsed,
        }))
        .unwrap()
    }

    #[test]
    fn a_poll_that_found_nothing_new_matches_the_status_read_back_from_kubernetes() {
        // Data Forest answers in milliseconds; Kubernetes keeps whole seconds.
        let answer = || -> AppDetail {
            serde_json::from_value(serde_json::json!({
                "state": "RUNNING", "finalStatus": "UNDEFINED", "elapsedMillis": 1_500,
                "startedAt": "2026-12-04T17:21:18.123+09:00",
            }))
            .unwrap()
        };
        let mut status = AiAppStatus::default();
        record_detail(&mut status, &answer());
        settle_phase(&mut status, "2026-12-04T08:21:19.987Z".parse().unwrap());
        let stored = serde_json::to_value(&status).unwrap();
        let read_back: AiAppStatus = serde_json::from_value(stored).unwrap();

        let mut polled = read_back.clone();
        record_detail(&mut polled, &answer());
        settle_phase(&mut polled, "2026-12-04T08:21:25.456Z".parse().unwrap());
        assert_eq!(polled, read_back, "an unchanged app would be applied again");
    }

    #[test]
    fn the_run_time_is_recorded_when_the_state_changes_and_at_the_end_only() {
        let mut status = AiAppStatus {
            state: Some("ACCEPTED".into()),
            final_status: Some("UNDEFINED".into()),
            elapsed_millis: Some(0),
            ..Default::default()
        };
        record_detail(&mut status, &detail("RUNNING", "UNDEFINED", 1_500));
        assert_eq!(status.elapsed_millis, Some(1_500));

        let running = status.clone();
        record_detail(&mut status, &detail("RUNNING", "UNDEFINED", 61_500));
        assert_eq!(
            status, running,
            "a poll that found nothing new changed status"
        );

        record_detail(&mut status, &detail("FINISHED", "SUCCEEDED", 90_000));
        assert_eq!(status.elapsed_millis, Some(90_000));
        record_detail(&mut status, &detail("FINISHED", "SUCCEEDED", 90_250));
        assert_eq!(
            status.elapsed_millis,
            Some(90_250),
            "an ended app's own figure wins"
        );
    }
}
