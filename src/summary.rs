//! What a person (and a tool) reads first: `status.reason`, the reason that explains the
//! phase, and the conditions `Finished`, `Reconciling` and `Stalled`, all derived from the
//! rest of the status on every write so that they can never disagree with it.
//!
//! `Reconciling` and `Stalled` follow kstatus (the convention Flux, Config Sync and
//! `kstatus` read): each is present only while it is True, so an AiApp that neither works
//! nor waits for a person is Current. `Finished` is always present, so
//! `kubectl wait --for=condition=Finished` ends once the app ended, whatever the outcome.

use k8s_openapi::jiff::Timestamp;

use crate::crd::{AiAppStatus, Phase};
use crate::reasons::needs_a_person;
use crate::status::{condition, remove_condition, set_condition};

/// Condition types this module owns.
pub mod types {
    /// True once the app ended, whatever the outcome (Succeeded, Failed, Killed).
    pub const FINISHED: &str = "Finished";
    /// kstatus: present (True) while the operator works towards an end.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: present (True) while nothing changes until a person acts.
    pub const STALLED: &str = "Stalled";
}

/// Sets `reason`, `Finished`, `Reconciling` and `Stalled` from the rest of `status`.
/// Idempotent: summarizing a summarized status changes nothing.
pub fn summarize(status: &mut AiAppStatus, now: Timestamp) {
    let Some(phase) = status.phase else {
        status.reason = None;
        return;
    };
    let explained = explaining_reason(status, phase);
    status.reason = explained.as_ref().map(|(reason, _)| reason.as_str().into());
    let message = explained
        .as_ref()
        .map(|(_, message)| message.clone())
        .unwrap_or_default();
    let reason = status
        .reason
        .as_deref()
        .map_or_else(|| phase_name(phase).to_owned(), str::to_owned);

    if phase.is_terminal() {
        set_condition(status, types::FINISHED, "True", &reason, &message, now);
    } else {
        let waiting = match phase {
            Phase::Unknown => {
                "Unknown is not an end: the operator lost track of the app and a person must resolve it"
            }
            Phase::Suspended => "suspended: nothing runs until spec.suspend is unset",
            _ => "the app has not ended",
        };
        set_condition(
            status,
            types::FINISHED,
            "False",
            phase_name(phase),
            waiting,
            now,
        );
    }

    let stalled = matches!(phase, Phase::Failed | Phase::Killed | Phase::Unknown)
        || (!phase.is_terminal() && needs_a_person(&reason));
    let at_rest = phase.is_terminal() || phase == Phase::Suspended || reason == "Paused";
    if stalled {
        set_condition(status, types::STALLED, "True", &reason, &message, now);
    } else {
        remove_condition(status, types::STALLED);
    }
    if !stalled && !at_rest {
        set_condition(status, types::RECONCILING, "True", &reason, &message, now);
    } else {
        remove_condition(status, types::RECONCILING);
    }
}

/// The reason (and its message) that explains why the AiApp is in `phase`: the outcome
/// of an ended app, else what holds it up (a failed call, a deadline, a suspend, what
/// keeps it from being submitted); `None` for an app that simply runs or waits in the queue.
fn explaining_reason(status: &AiAppStatus, phase: Phase) -> Option<(String, String)> {
    let find = |type_: &str, wanted: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == wanted && !c.reason.is_empty())
            .map(|c| (c.reason.to_string(), c.message.clone()))
    };
    match phase {
        Phase::Succeeded => find(condition::SUCCEEDED, "True"),
        Phase::Failed | Phase::Killed => find(condition::FAILED, "True"),
        Phase::Suspended => {
            find(condition::SUSPENDED, "True").or_else(|| find(condition::SUBMITTED, "False"))
        }
        Phase::Unknown => find(condition::SYNCED, "False"),
        Phase::Pending | Phase::Submitting | Phase::Accepted | Phase::Running => {
            find(condition::SYNCED, "False")
                .or_else(|| find(condition::FAILURE_TARGET, "True"))
                .or_else(|| find(condition::SUSPENDED, "False").filter(|(r, _)| r == "Suspending"))
                .or_else(|| find(condition::SUBMITTED, "False"))
                .or_else(|| find(condition::SUBMITTED, "Unknown"))
        }
    }
}

fn phase_name(phase: Phase) -> &'static str {
    crate::metrics::phase_name(phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn with(phase: Phase, conditions: &[(&str, &str, &str)]) -> AiAppStatus {
        let mut status = AiAppStatus {
            phase: Some(phase),
            ..Default::default()
        };
        for (type_, value, reason) in conditions {
            set_condition(&mut status, type_, value, reason, "why", at(0));
        }
        status
    }

    fn get<'a>(status: &'a AiAppStatus, type_: &str) -> Option<(&'a str, &'a str)> {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
    }

    #[test]
    fn every_end_is_finished_and_only_success_is_not_stalled() {
        for (phase, type_, reason) in [
            (Phase::Succeeded, condition::SUCCEEDED, "Succeeded"),
            (Phase::Failed, condition::FAILED, "AppFailed"),
            (Phase::Failed, condition::FAILED, "DeadlineExceeded"),
            (Phase::Killed, condition::FAILED, "Killed"),
        ] {
            let mut status = with(phase, &[(type_, "True", reason)]);
            summarize(&mut status, at(1));
            assert_eq!(status.reason.as_deref(), Some(reason));
            assert_eq!(get(&status, types::FINISHED), Some(("True", reason)));
            assert_eq!(get(&status, types::RECONCILING), None);
            let stalled = get(&status, types::STALLED).is_some();
            assert_eq!(stalled, phase != Phase::Succeeded, "{phase:?}");
        }
    }

    #[test]
    fn unknown_is_not_an_end_and_waits_for_a_person() {
        let mut status = with(
            Phase::Unknown,
            &[(condition::SYNCED, "False", "SubmissionAmbiguous")],
        );
        summarize(&mut status, at(1));
        assert_eq!(get(&status, types::FINISHED), Some(("False", "Unknown")));
        assert_eq!(
            get(&status, types::STALLED),
            Some(("True", "SubmissionAmbiguous"))
        );
        assert_eq!(get(&status, types::RECONCILING), None);
    }

    #[test]
    fn a_running_app_whose_keys_were_refused_is_stalled_and_says_why() {
        let mut status = with(
            Phase::Running,
            &[
                (condition::SUBMITTED, "True", "Submitted"),
                (condition::SYNCED, "False", "Unauthorized"),
            ],
        );
        summarize(&mut status, at(1));
        assert_eq!(status.reason.as_deref(), Some("Unauthorized"));
        assert_eq!(get(&status, types::STALLED), Some(("True", "Unauthorized")));
        assert_eq!(get(&status, types::RECONCILING), None);
    }

    #[test]
    fn work_in_flight_is_reconciling_with_the_reason_that_holds_it_up() {
        for (phase, conditions, reason) in [
            (
                Phase::Pending,
                vec![(condition::SUBMITTED, "False", "Throttled")],
                Some("Throttled"),
            ),
            (
                Phase::Pending,
                vec![(condition::SUBMITTED, "False", "Retrying")],
                Some("Retrying"),
            ),
            (
                Phase::Submitting,
                vec![(condition::SUBMITTED, "Unknown", "Submitting")],
                Some("Submitting"),
            ),
            (
                Phase::Running,
                vec![
                    (condition::SYNCED, "True", "Synced"),
                    (condition::FAILURE_TARGET, "True", "DeadlineExceeded"),
                ],
                Some("DeadlineExceeded"),
            ),
            (
                Phase::Running,
                vec![(condition::SYNCED, "True", "Synced")],
                None,
            ),
        ] {
            let mut status = with(phase, &conditions);
            summarize(&mut status, at(1));
            assert_eq!(status.reason.as_deref(), reason, "{phase:?}");
            assert_eq!(get(&status, types::RECONCILING).map(|c| c.0), Some("True"));
            assert_eq!(get(&status, types::STALLED), None);
            assert_eq!(get(&status, types::FINISHED).map(|c| c.0), Some("False"));
        }
    }

    #[test]
    fn paused_and_suspended_are_at_rest_without_being_stalled() {
        let mut paused = with(Phase::Running, &[(condition::SYNCED, "False", "Paused")]);
        let mut suspended = with(
            Phase::Suspended,
            &[(condition::SUSPENDED, "True", "Suspended")],
        );
        for status in [&mut paused, &mut suspended] {
            summarize(status, at(1));
            assert_eq!(get(status, types::RECONCILING), None);
            assert_eq!(get(status, types::STALLED), None);
        }
        assert_eq!(paused.reason.as_deref(), Some("Paused"));
        assert_eq!(suspended.reason.as_deref(), Some("Suspended"));
    }

    #[test]
    fn a_reason_that_needs_a_person_stalls_a_pending_app() {
        let mut status = with(
            Phase::Pending,
            &[(condition::SUBMITTED, "False", "CredentialsNotFound")],
        );
        summarize(&mut status, at(1));
        assert_eq!(
            get(&status, types::STALLED),
            Some(("True", "CredentialsNotFound"))
        );
        assert_eq!(get(&status, types::RECONCILING), None);
    }

    #[test]
    fn summarizing_twice_changes_nothing_and_keeps_transition_times() {
        let mut status = with(
            Phase::Pending,
            &[(condition::SUBMITTED, "False", "Throttled")],
        );
        summarize(&mut status, at(1));
        let once = status.clone();
        summarize(&mut status, at(50));
        assert_eq!(status, once);
    }
}
