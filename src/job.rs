//! Job semantics, pure: when a deadline fires, when the active clock runs, and whether and
//! when a failed app is retried. Everything is counted from times in status, so an
//! operator restart resets nothing.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::crd::{AiAppSpec, AiAppStatus, AttemptRecord, KillCause, Phase};

/// The first retry waits this long; each later one twice as long as the one before.
pub const RETRY_BASE: Duration = Duration::from_secs(10);
/// No retry waits longer than this.
pub const RETRY_CAP: Duration = Duration::from_secs(600);

/// A deadline that passed: which limit, its value, and when it passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    pub cause: KillCause,
    pub limit_seconds: i64,
    pub at: Timestamp,
}

impl Fired {
    /// Names the limit and when it passed, for the condition, status and Event.
    pub fn describe(&self) -> String {
        let field = match self.cause {
            KillCause::StartDeadline => "spec.startDeadlineSeconds",
            KillCause::ActiveDeadline => "spec.activeDeadlineSeconds",
            KillCause::Suspend => "spec.suspend",
        };
        let what = match self.cause {
            KillCause::StartDeadline => "before the app was running",
            _ => "before the app ended",
        };
        format!(
            "{field} ({} s) passed at {} {what}",
            self.limit_seconds, self.at
        )
    }
}

/// When the active clock started: the first attempt since the AiApp was created or last
/// resumed from a suspend (as a Job's deadline restarts on resume). `None` while no
/// attempt counts: nothing submitted yet, or the latest attempt was suspended.
pub fn active_since(status: &AiAppStatus) -> Option<Timestamp> {
    let mut since = None;
    for attempt in &status.attempts {
        if since.is_none() {
            since = Some(attempt.started_at.0);
        }
        if suspended(attempt) {
            since = None;
        }
    }
    since
}

fn suspended(attempt: &AttemptRecord) -> bool {
    attempt.killed_by == Some(KillCause::Suspend) || attempt.ended == Some(Phase::Suspended)
}

fn after(start: Timestamp, seconds: i64) -> Timestamp {
    start
        .checked_add(SignedDuration::from_secs(seconds))
        .unwrap_or(Timestamp::MAX)
}

/// The active deadline, when one is set and its clock runs.
pub fn active_deadline(spec: &AiAppSpec, status: &AiAppStatus) -> Option<Fired> {
    let limit = spec.active_deadline_seconds?;
    let since = active_since(status)?;
    Some(Fired {
        cause: KillCause::ActiveDeadline,
        limit_seconds: limit,
        at: after(since, limit),
    })
}

/// The start deadline of the current attempt, while its app is not known to have run.
pub fn start_deadline(spec: &AiAppSpec, status: &AiAppStatus) -> Option<Fired> {
    let limit = spec.start_deadline_seconds?;
    let current = status.attempts.last()?;
    if status.phase == Some(Phase::Running) || current.ended.is_some() {
        return None;
    }
    Some(Fired {
        cause: KillCause::StartDeadline,
        limit_seconds: limit,
        at: after(current.started_at.0, limit),
    })
}

/// The deadline that has passed by `now` for a live app in phase `seen` (as the latest
/// getDetail says), the earlier one first; `None` when none did.
pub fn fired(spec: &AiAppSpec, status: &AiAppStatus, seen: Phase, now: Timestamp) -> Option<Fired> {
    let start = start_deadline(spec, status).filter(|_| seen == Phase::Accepted);
    let mut passed: Vec<Fired> = [start, active_deadline(spec, status)]
        .into_iter()
        .flatten()
        .filter(|deadline| deadline.at <= now)
        .collect();
    passed.sort_by_key(|deadline| deadline.at);
    passed.into_iter().next()
}

/// How long until the next deadline of a live app, if one is set and still ahead.
pub fn until_next(spec: &AiAppSpec, status: &AiAppStatus, now: Timestamp) -> Option<Duration> {
    [start_deadline(spec, status), active_deadline(spec, status)]
        .into_iter()
        .flatten()
        .map(|deadline| deadline.at)
        .filter(|at| *at > now)
        .min()
        .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default())
}

/// Apps of this AiApp that ended failed on their own (not killed by anyone): what
/// `spec.backoffLimit` counts.
pub fn failures(status: &AiAppStatus) -> usize {
    status
        .attempts
        .iter()
        .filter(|a| a.ended == Some(Phase::Failed) && a.killed_by.is_none())
        .count()
}

/// The wait before retry number `retry` (1 for the first): 10 s, doubling, at most 10
/// minutes.
pub fn retry_delay(retry: usize) -> Duration {
    let doublings = u32::try_from(retry.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(16);
    RETRY_BASE.saturating_mul(1 << doublings).min(RETRY_CAP)
}

/// A retry to schedule after the current attempt's app ended failed on its own: its
/// number (1 for the first) and when to submit it. `None` when the limit is used up or
/// the active deadline passed (or will have by then).
pub fn retry(
    spec: &AiAppSpec,
    failures_with_this_one: usize,
    status: &AiAppStatus,
    now: Timestamp,
) -> Option<(usize, Timestamp)> {
    let limit = usize::try_from(spec.backoff_limit.max(0)).unwrap_or(0);
    if failures_with_this_one == 0 || failures_with_this_one > limit {
        return None;
    }
    let delay = SignedDuration::try_from(retry_delay(failures_with_this_one))
        .unwrap_or(SignedDuration::MAX);
    let at = now.checked_add(delay).unwrap_or(Timestamp::MAX);
    if active_deadline(spec, status).is_some_and(|deadline| deadline.at <= at) {
        return None;
    }
    Some((failures_with_this_one, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AttemptOutcome;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn spec(start: Option<i64>, active: Option<i64>, backoff_limit: i32) -> AiAppSpec {
        let mut spec: AiAppSpec = serde_json::from_value(serde_json::json!({
            "aiWorkspaceId": "ws", "docker": {"image": "i", "command": "c"},
        }))
        .unwrap();
        spec.start_deadline_seconds = start;
        spec.active_deadline_seconds = active;
        spec.backoff_limit = backoff_limit;
        spec
    }

    fn attempt(number: i32, started: i64) -> AttemptRecord {
        AttemptRecord {
            attempt: number,
            started_at: Time(at(started)),
            name_prefix: "ab".into(),
            id: Some(compact_str::format_compact!("app{number}")),
            candidates: Vec::new(),
            outcome: AttemptOutcome::Created,
            killed_by: None,
            killed_at: None,
            ended: None,
        }
    }

    fn status(phase: Phase, attempts: Vec<AttemptRecord>) -> AiAppStatus {
        AiAppStatus {
            phase: Some(phase),
            attempts,
            ..Default::default()
        }
    }

    #[test]
    fn the_active_clock_spans_retries_and_starts_again_after_a_suspend() {
        let mut failed = attempt(1, 0);
        failed.ended = Some(Phase::Failed);
        let retried = status(Phase::Running, vec![failed.clone(), attempt(2, 40)]);
        assert_eq!(active_since(&retried), Some(at(0)));
        let mut suspended = attempt(2, 40);
        suspended.killed_by = Some(KillCause::Suspend);
        suspended.ended = Some(Phase::Suspended);
        let while_suspended = status(Phase::Suspended, vec![failed.clone(), suspended.clone()]);
        assert_eq!(active_since(&while_suspended), None);
        let resumed = status(Phase::Accepted, vec![failed, suspended, attempt(3, 500)]);
        assert_eq!(active_since(&resumed), Some(at(500)));
        assert_eq!(active_since(&AiAppStatus::default()), None);
    }

    #[test]
    fn a_deadline_fires_once_passed_the_earlier_first_and_start_only_before_running() {
        let spec = spec(Some(30), Some(20), 0);
        let accepted = status(Phase::Accepted, vec![attempt(1, 0)]);
        assert_eq!(fired(&spec, &accepted, Phase::Accepted, at(19)), None);
        let active = fired(&spec, &accepted, Phase::Accepted, at(35)).unwrap();
        assert_eq!(
            (active.cause, active.at),
            (KillCause::ActiveDeadline, at(20))
        );
        assert!(
            active
                .describe()
                .contains("spec.activeDeadlineSeconds (20 s) passed at")
        );
        let start_only = self::spec(Some(30), None, 0);
        let start = fired(&start_only, &accepted, Phase::Accepted, at(30)).unwrap();
        assert_eq!((start.cause, start.at), (KillCause::StartDeadline, at(30)));
        // Running, by the latest read or by status: the start deadline no longer applies.
        assert_eq!(fired(&start_only, &accepted, Phase::Running, at(99)), None);
        let running = status(Phase::Running, vec![attempt(1, 0)]);
        assert_eq!(fired(&start_only, &running, Phase::Accepted, at(99)), None);
        assert_eq!(
            until_next(&spec, &accepted, at(5)),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            until_next(&self::spec(None, None, 0), &accepted, at(5)),
            None
        );
    }

    #[test]
    fn retries_back_off_from_10_seconds_to_10_minutes_up_to_the_limit() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 600, 600, 600]);
        let running = status(Phase::Running, vec![attempt(1, 0)]);
        let two = spec(None, None, 2);
        assert_eq!(retry(&two, 1, &running, at(100)), Some((1, at(110))));
        assert_eq!(retry(&two, 2, &running, at(100)), Some((2, at(120))));
        assert_eq!(retry(&two, 3, &running, at(100)), None, "limit used up");
        assert_eq!(retry(&spec(None, None, 0), 1, &running, at(100)), None);
        // The active deadline would pass before the retry: none.
        let bounded = spec(None, Some(105), 2);
        assert_eq!(retry(&bounded, 1, &running, at(100)), None);
    }

    #[test]
    fn only_apps_that_failed_on_their_own_count_as_failures() {
        let mut failed = attempt(1, 0);
        failed.ended = Some(Phase::Failed);
        let mut timed_out = attempt(2, 10);
        timed_out.ended = Some(Phase::Failed);
        timed_out.killed_by = Some(KillCause::StartDeadline);
        let mut killed = attempt(3, 20);
        killed.ended = Some(Phase::Killed);
        assert_eq!(
            failures(&status(Phase::Failed, vec![failed, timed_out, killed])),
            1
        );
    }
}
