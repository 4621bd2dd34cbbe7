//! Transitions as data, pure: given an AiApp's status, what was observed and the outcome of
//! a call, the status to write, the Event to publish and what to do next. The controller
//! has one effectful place that carries a [`Transition`] out (`controller::effect`), so
//! every branch here is a table test and none repeats read/clone/condition/write.

use std::time::Duration;

use compact_str::CompactString;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::attempts;

use crate::crd::{AiAppStatus, AttemptOutcome, KillCause, Phase};
use crate::dataforest::{ApiError, AppDetail, SubmitResponse};
use crate::job;
use crate::plan::{ADOPT_ID_ANNOTATION, RESUBMIT_ANNOTATION};
use crate::status::{self, condition, set_condition};

/// An Event to publish on the AiApp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub text: String,
}

impl Note {
    pub fn normal(reason: &str, text: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason: reason.to_owned(),
            text: text.into(),
        }
    }

    pub fn warning(reason: &str, text: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason: reason.to_owned(),
            text: text.into(),
        }
    }
}

/// What to do after a transition is written.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// No API call for this AiApp before this much time (unless it or its Secret changes).
    After(Duration),
    /// Try again on the back-off schedule: a retryable failure, or a poll that saw no change.
    Backoff,
    /// No API call until the AiApp or its Secret changes: a person must act.
    Park,
    /// Poll after the first poll interval: something just changed.
    Soon,
    /// Go on at once (after an adopt: poll the app).
    Now,
    /// The answer needs a second read before it counts: read again shortly, then pass
    /// `confirmed` to [`polled`].
    ReadAgain,
    /// The app ended: forget the AiApp, no API call ever again.
    Done,
}

/// A status to write (only if it differs from what was read), an Event, and what next.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub status: AiAppStatus,
    pub note: Option<Note>,
    pub next: Next,
}

impl Transition {
    fn new(status: AiAppStatus, note: Option<Note>, next: Next) -> Self {
        Self { status, note, next }
    }
}

/// The reason of a condition type, with its status.
fn reason_of(status: &AiAppStatus, type_: &str) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.to_string(), c.reason.to_string()))
}

/// A Warning for `reason` when Synced did not already say it: one per new reason, not one
/// per retry.
fn warn_if_new(
    before: &AiAppStatus,
    after: &AiAppStatus,
    reason: &str,
    text: &str,
) -> Option<Note> {
    (reason_of(before, condition::SYNCED) != reason_of(after, condition::SYNCED))
        .then(|| Note::warning(reason, text))
}

/// What retrying or not means after a failed call.
fn retry_or_park(error: &ApiError) -> Next {
    if error.is_retryable() {
        Next::Backoff
    } else {
        Next::Park
    }
}

/// Stops at a condition a person must change (or waits for a Secret): Synced=False, and
/// Submitted=False with phase Pending when nothing was submitted yet.
pub fn waiting(
    before: &AiAppStatus,
    reason: &str,
    message: &str,
    warn: bool,
    now: Timestamp,
) -> Transition {
    let mut status = before.clone();
    if status.id.is_none() && status.submission.is_none() {
        status.phase = Some(Phase::Pending);
        set_condition(
            &mut status,
            condition::SUBMITTED,
            "False",
            reason,
            message,
            now,
        );
    }
    set_condition(
        &mut status,
        condition::SYNCED,
        "False",
        reason,
        message,
        now,
    );
    status.message = Some(message.to_owned());
    let note = if warn {
        warn_if_new(before, &status, reason, message)
    } else {
        None
    };
    Transition::new(status, note, Next::Park)
}

/// The marker of attempt `attempt`, written before the submit call.
pub fn marker(
    before: &AiAppStatus,
    attempt: i32,
    name_prefix: &str,
    now: Timestamp,
) -> AiAppStatus {
    let mut status = before.clone();
    if attempts::current(&status).is_some_and(|a| a.ended.is_some()) {
        // A retry or a resume: the fields of the app that ended describe an old attempt.
        status::clear_app(&mut status);
        status::remove_condition(&mut status, condition::FAILED);
        status::remove_condition(&mut status, condition::SUCCEEDED);
    }
    if status::condition_status(&status, condition::SUSPENDED) == Some("True") {
        set_condition(
            &mut status,
            condition::SUSPENDED,
            "False",
            "Resumed",
            "spec.suspend was unset: a new attempt is submitted",
            now,
        );
    }
    status.next_attempt_at = None;
    attempts::begin(&mut status, attempt, name_prefix, now);
    status.phase = Some(Phase::Submitting);
    status.resubmit_token = None;
    status.message = Some(format!("submitting to Data Forest (attempt {attempt})"));
    set_condition(
        &mut status,
        condition::SUBMITTED,
        "Unknown",
        "Submitting",
        "submit sent; waiting for the app id",
        now,
    );
    status
}

/// Submit answered with an id: it goes into status at once.
pub fn submitted(
    before: &AiAppStatus,
    attempt: i32,
    response: &SubmitResponse,
    now: Timestamp,
) -> Transition {
    let mut status = before.clone();
    status::record_submitted(&mut status, response);
    let id = response.id.as_deref().unwrap_or_default();
    attempts::settle(&mut status, attempt, AttemptOutcome::Created, Some(id));
    status::settle_phase(&mut status, now);
    status.message = Some(format!(
        "submitted as {}",
        response.name.as_deref().unwrap_or("an app")
    ));
    let note = Note::normal(
        "Submitted",
        format!("submitted app {id} (attempt {attempt})"),
    );
    Transition::new(status, Some(note), Next::Soon)
}

/// The submit failed. When the app may exist anyway, the marker stays and recovery looks
/// for it; otherwise the attempt created nothing and the AiApp retries or waits.
pub fn submit_failed(
    before: &AiAppStatus,
    attempt: i32,
    error: &ApiError,
    now: Timestamp,
) -> Transition {
    if error.outcome_unknown() {
        return outcome_unknown(before, &error.to_string(), now);
    }
    let mut status = before.clone();
    attempts::settle(&mut status, attempt, AttemptOutcome::NotCreated, None);
    status.submission = None;
    status.phase = Some(Phase::Pending);
    let message = error.to_string();
    set_condition(
        &mut status,
        condition::SUBMITTED,
        "False",
        error.reason(),
        &message,
        now,
    );
    set_condition(
        &mut status,
        condition::SYNCED,
        "False",
        error.reason(),
        &message,
        now,
    );
    status.message = Some(message.clone());
    let note = warn_if_new(before, &status, error.reason(), &message);
    Transition::new(status, note, retry_or_park(error))
}

/// The submit may have created an app: keep the marker and look for the app first.
pub fn outcome_unknown(before: &AiAppStatus, why: &str, now: Timestamp) -> Transition {
    let mut status = before.clone();
    let message =
        format!("submit outcome unknown ({why}); looking for the app before submitting again");
    set_condition(
        &mut status,
        condition::SYNCED,
        "False",
        "SubmitOutcomeUnknown",
        &message,
        now,
    );
    status.message = Some(message.clone());
    let note = Note::warning("SubmitOutcomeUnknown", message);
    Transition::new(status, Some(note), Next::After(Duration::from_secs(1)))
}

/// The marker was written but the submit was not sent: this instance stopped leading.
pub fn not_sent(before: &AiAppStatus, attempt: i32, now: Timestamp) -> Transition {
    let mut status = before.clone();
    attempts::settle(&mut status, attempt, AttemptOutcome::NotCreated, None);
    status.submission = None;
    status.phase = Some(Phase::Pending);
    let message = format!(
        "attempt {attempt} was not sent: this operator's leader lease ran short before the submit call; \
         the leader submits"
    );
    set_condition(
        &mut status,
        condition::SUBMITTED,
        "False",
        "LeaseLost",
        &message,
        now,
    );
    status.message = Some(message);
    Transition::new(status, None, Next::After(Duration::from_secs(1)))
}

/// Recovery (or a person) found the current attempt's app.
pub fn adopted(
    before: &AiAppStatus,
    id: &str,
    reason: &str,
    note: &str,
    name_prefix: &str,
    now: Timestamp,
) -> Transition {
    let mut status = before.clone();
    status.id = Some(id.into());
    status.phase = Some(Phase::Accepted);
    status.resubmit_token = None;
    let outcome = if reason == "Adopted" {
        AttemptOutcome::Adopted
    } else {
        AttemptOutcome::Recovered
    };
    match attempts::current(&status).map(|a| a.attempt) {
        Some(attempt) if attempts::current(&status).is_some_and(|a| a.id.is_none()) => {
            attempts::settle(&mut status, attempt, outcome, Some(id))
        }
        // Adopted with no attempt in flight: the app becomes an attempt of its own.
        _ => {
            let attempt = attempts::next_number(&status);
            attempts::begin(&mut status, attempt, name_prefix, now);
            attempts::settle(&mut status, attempt, outcome, Some(id));
        }
    }
    set_condition(&mut status, condition::SUBMITTED, "True", reason, note, now);
    set_condition(&mut status, condition::SYNCED, "True", reason, note, now);
    status.message = Some(note.to_owned());
    Transition::new(status, Some(Note::normal(reason, note)), Next::Now)
}

/// Nothing listed yet for the current attempt, within its grace.
pub fn keep_looking(before: &AiAppStatus) -> Transition {
    Transition::new(before.clone(), None, Next::Backoff)
}

/// Nothing was listed within the grace: the current attempt made no app (as far as can be
/// told); it is recorded as such, and the caller submits the next attempt.
pub fn given_up(before: &AiAppStatus, attempt: i32) -> AiAppStatus {
    let mut status = before.clone();
    attempts::settle(&mut status, attempt, AttemptOutcome::NotListed, None);
    status
}

/// Recovery cannot decide: phase Unknown, every candidate named, and the token that
/// confirms a resubmit.
pub fn ambiguous(
    before: &AiAppStatus,
    uid: &str,
    candidates: &[String],
    why: &str,
    now: Timestamp,
) -> Transition {
    let mut status = before.clone();
    let Some(current) = attempts::current(&status).cloned() else {
        return Transition::new(status, None, Next::Park);
    };
    let outcome = if candidates.is_empty() {
        current.outcome
    } else {
        AttemptOutcome::Ambiguous
    };
    if let Some(record) = attempts::record_mut(&mut status, current.attempt) {
        record.outcome = outcome;
        record.candidates = candidates
            .iter()
            .take(crate::crd::limits::CANDIDATES_MAX as usize)
            .map(|id| id.as_str().into())
            .collect();
    }
    let token = attempts::resubmit_token(uid, &current);
    let message = format!(
        "cannot tell which app attempt {} created: {why}. Set the annotation {ADOPT_ID_ANNOTATION}=<app id> to \
         adopt one, or {RESUBMIT_ANNOTATION}={token} to submit again",
        current.attempt
    );
    status.phase = Some(Phase::Unknown);
    status.resubmit_token = Some(token.into());
    set_condition(
        &mut status,
        condition::SYNCED,
        "False",
        "SubmissionAmbiguous",
        &message,
        now,
    );
    status.message = Some(message.clone());
    let note = (before.phase != Some(Phase::Unknown))
        .then(|| Note::warning("SubmissionAmbiguous", message));
    // Nothing is submitted until a person acts; meanwhile the candidates in status are
    // kept current (an app listed late shows up there).
    Transition::new(status, note, Next::Backoff)
}

/// getDetail answered: the status follows the app. A terminal state with no real final
/// status yet (`UNDEFINED`) is read once more before it counts (`confirmed_undefined`).
pub fn polled(
    before: &AiAppStatus,
    id: &str,
    detail: &AppDetail,
    confirmed_undefined: bool,
    retry: Option<Retry>,
    now: Timestamp,
) -> Transition {
    let undefined = |s: Option<&str>| s.is_none_or(|s| s == "UNDEFINED");
    if detail.is_terminal() && undefined(detail.final_status.as_deref()) && !confirmed_undefined {
        // YARN may set the state before the final status: look once more shortly.
        return Transition::new(before.clone(), None, Next::ReadAgain);
    }
    let mut status = before.clone();
    status::record_detail(&mut status, detail);
    status::settle_phase(&mut status, now);
    let phase = status.phase.unwrap_or(Phase::Accepted);
    let current = attempts::current(&status).cloned();
    let killed_by = current.as_ref().and_then(|a| a.killed_by);
    if phase.is_terminal()
        && let Some(current) = &current
    {
        return ended(status, before, id, current.attempt, killed_by, retry, now);
    }
    status.message = if killed_by.is_some() {
        // The kill's message stays until the app shows ended.
        before.message.clone()
    } else {
        Some(phase_message(&status))
    };
    if phase.is_terminal() {
        status.resubmit_token = None;
    }
    let note = (before.phase != status.phase).then(|| {
        let text = format!("app {id}: {}", phase_message(&status));
        let reason = format!("{phase:?}");
        if matches!(phase, Phase::Failed | Phase::Killed) {
            Note::warning(&reason, text)
        } else {
            Note::normal(&reason, text)
        }
    });
    let next = if phase.is_terminal() {
        Next::Done
    } else if note.is_some() {
        Next::Soon
    } else {
        Next::Backoff
    };
    Transition::new(status, note, next)
}

/// A retry to schedule if the app ended failed on its own: its number (1 for the first),
/// the limit, and when it is submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub number: usize,
    pub limit: i32,
    pub at: Timestamp,
}

/// The current attempt's app ended (`status` holds what getDetail said and the phase it
/// means): the phase the AiApp takes, by why it ended. A kill for `suspend` makes it
/// Suspended; a kill for a deadline, Failed with reason DeadlineExceeded; a failure of its
/// own, a retry when one is left; anything else, the phase the app's state means.
fn ended(
    mut status: AiAppStatus,
    before: &AiAppStatus,
    id: &str,
    attempt: i32,
    killed_by: Option<KillCause>,
    retry: Option<Retry>,
    now: Timestamp,
) -> Transition {
    status.resubmit_token = None;
    let phase = status.phase.unwrap_or(Phase::Failed);
    let said = phase_message(&status);
    let (phase, note, next) = match (phase, killed_by) {
        (Phase::Killed, Some(KillCause::Suspend)) => {
            let message = format!(
                "app {id} was killed for spec.suspend and ended ({said}); unset spec.suspend to submit a new attempt"
            );
            status::remove_condition(&mut status, condition::FAILED);
            status::remove_condition(&mut status, condition::SUCCEEDED);
            set_condition(
                &mut status,
                condition::SUSPENDED,
                "True",
                "Suspended",
                &message,
                now,
            );
            set_condition(
                &mut status,
                condition::SYNCED,
                "True",
                "Suspended",
                &message,
                now,
            );
            status.message = Some(message.clone());
            (
                Phase::Suspended,
                Note::normal("Suspended", message),
                Next::Park,
            )
        }
        (Phase::Killed, Some(KillCause::StartDeadline | KillCause::ActiveDeadline)) => {
            // FailureTarget's message names the deadline and what was then to come; the
            // end keeps the deadline only.
            let fired = status
                .conditions
                .iter()
                .find(|c| c.type_ == condition::FAILURE_TARGET)
                .map(|c| {
                    let message = c.message.as_str();
                    message
                        .strip_suffix(&deadline_kill_pending(id))
                        .unwrap_or(message)
                        .to_owned()
                })
                .unwrap_or_else(|| "a deadline passed".to_owned());
            let message = format!("app {id} was killed and ended ({said}): {fired}");
            set_condition(
                &mut status,
                condition::FAILED,
                "True",
                "DeadlineExceeded",
                &message,
                now,
            );
            set_condition(
                &mut status,
                condition::SUCCEEDED,
                "False",
                "DeadlineExceeded",
                &message,
                now,
            );
            status.message = Some(message.clone());
            (
                Phase::Failed,
                Note::warning("DeadlineExceeded", message),
                Next::Done,
            )
        }
        (Phase::Failed, None) if retry.is_some() => {
            let Retry { number, limit, at } = retry.expect("matched Some");
            let message = format!(
                "app {id} (attempt {attempt}) failed ({said}); retry {number} of {limit} is submitted at {at}"
            );
            status::remove_condition(&mut status, condition::FAILED);
            status::remove_condition(&mut status, condition::SUCCEEDED);
            set_condition(
                &mut status,
                condition::SUBMITTED,
                "False",
                "Retrying",
                &message,
                now,
            );
            status.next_attempt_at = Some(status::status_time(at));
            status.message = Some(message.clone());
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
            (
                Phase::Pending,
                Note::warning("Retrying", message),
                Next::After(wait),
            )
        }
        (phase, _) => {
            status.message = Some(said.clone());
            let reason = format!("{phase:?}");
            let text = format!("app {id}: {said}");
            let note = if matches!(phase, Phase::Failed | Phase::Killed) {
                Note::warning(&reason, text)
            } else {
                Note::normal(&reason, text)
            };
            (phase, note, Next::Done)
        }
    };
    status.phase = Some(phase);
    // How the app ended: a retry waits in Pending after an app that failed.
    let app_ended = if phase == Phase::Pending {
        Phase::Failed
    } else {
        phase
    };
    if let Some(record) = attempts::record_mut(&mut status, attempt) {
        record.ended = Some(app_ended);
    }
    let note = (before.phase != status.phase).then_some(note);
    Transition::new(status, note, next)
}

/// `spec.suspend` or a deadline decided that the current attempt's app `id` must end: the
/// cause is recorded on the attempt before the kill is sent, so the kill is sent again
/// until the app shows ended, across restarts; a deadline says DeadlineExceeded at once.
pub fn kill_decided(
    before: &AiAppStatus,
    id: &str,
    cause: KillCause,
    fired: Option<&job::Fired>,
    now: Timestamp,
) -> Transition {
    let mut status = before.clone();
    if let Some(attempt) = attempts::current(&status).map(|a| a.attempt)
        && let Some(record) = attempts::record_mut(&mut status, attempt)
    {
        record.killed_by = Some(cause);
        record.killed_at = Some(status::status_time(now));
    }
    let note = match (cause, fired) {
        (KillCause::Suspend, _) | (_, None) => {
            let message = format!(
                "spec.suspend is set: killing app {id}; the AiApp is Suspended once Data Forest shows it ended"
            );
            set_condition(
                &mut status,
                condition::SUSPENDED,
                "False",
                "Suspending",
                &message,
                now,
            );
            status.message = Some(message.clone());
            Note::normal("Suspending", message)
        }
        (_, Some(fired)) => {
            let message = format!("{}{}", fired.describe(), deadline_kill_pending(id));
            set_condition(
                &mut status,
                condition::FAILURE_TARGET,
                "True",
                "DeadlineExceeded",
                &message,
                now,
            );
            status.message = Some(message.clone());
            Note::warning("DeadlineExceeded", message)
        }
    };
    Transition::new(status, Some(note), Next::Soon)
}

/// What follows a fired deadline's description while the kill of app `id` is pending.
fn deadline_kill_pending(id: &str) -> String {
    format!(": killing app {id}; the AiApp fails once Data Forest shows it ended")
}

/// `spec.suspend` holds an AiApp with no live app: nothing is submitted, no API call.
pub fn suspended(before: &AiAppStatus, now: Timestamp) -> Transition {
    let mut status = before.clone();
    let message = "spec.suspend is set: nothing is submitted until it is unset";
    if status.phase != Some(Phase::Suspended) {
        status.message = Some(message.to_owned());
        set_condition(
            &mut status,
            condition::SUSPENDED,
            "True",
            "Suspended",
            message,
            now,
        );
        set_condition(
            &mut status,
            condition::SYNCED,
            "True",
            "Suspended",
            message,
            now,
        );
        if status.id.is_none() {
            set_condition(
                &mut status,
                condition::SUBMITTED,
                "False",
                "Suspended",
                message,
                now,
            );
        }
    }
    status.next_attempt_at = None;
    let note = (before.phase != Some(Phase::Suspended)).then(|| Note::normal("Suspended", message));
    status.phase = Some(Phase::Suspended);
    Transition::new(status, note, Next::Park)
}

/// The active deadline passed while no app of this AiApp runs (a retry was waiting, or
/// submits kept failing): Failed at once, nothing more is submitted.
pub fn expired(before: &AiAppStatus, fired: &job::Fired, now: Timestamp) -> Transition {
    let mut status = before.clone();
    let message = format!(
        "{}: no app runs and none is submitted any more",
        fired.describe()
    );
    status.phase = Some(Phase::Failed);
    status.next_attempt_at = None;
    status.resubmit_token = None;
    set_condition(
        &mut status,
        condition::FAILURE_TARGET,
        "True",
        "DeadlineExceeded",
        &message,
        now,
    );
    set_condition(
        &mut status,
        condition::FAILED,
        "True",
        "DeadlineExceeded",
        &message,
        now,
    );
    set_condition(
        &mut status,
        condition::SUCCEEDED,
        "False",
        "DeadlineExceeded",
        &message,
        now,
    );
    status.message = Some(message.clone());
    Transition::new(
        status,
        Some(Note::warning("DeadlineExceeded", message)),
        Next::Done,
    )
}

/// A call failed: Synced says so; retried on the back-off, or parked when a person must
/// act. Reads of a submitted app are never parked for good (see the caller).
pub fn call_failed(before: &AiAppStatus, error: &ApiError, now: Timestamp) -> Transition {
    let mut status = before.clone();
    let message = error.to_string();
    set_condition(
        &mut status,
        condition::SYNCED,
        "False",
        error.reason(),
        &message,
        now,
    );
    status.message = Some(message.clone());
    let note = warn_if_new(before, &status, error.reason(), &message);
    Transition::new(status, note, retry_or_park(error))
}

/// getDetail answered "not found": within the grace, look again; past it, Unknown.
pub fn not_found(
    before: &AiAppStatus,
    id: &str,
    since: Timestamp,
    grace: Duration,
    now: Timestamp,
) -> Transition {
    let mut status = before.clone();
    let message = format!("Data Forest does not know app {id}");
    set_condition(
        &mut status,
        condition::SYNCED,
        "False",
        "AppNotFound",
        &message,
        now,
    );
    status.message = Some(message.clone());
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    if now.duration_since(since) < grace {
        return Transition::new(status, None, Next::Backoff);
    }
    status.phase = Some(Phase::Unknown);
    let note =
        (before.phase != Some(Phase::Unknown)).then(|| Note::warning("AppNotFound", message));
    Transition::new(status, note, Next::Park)
}

/// A short line for `status.message` and Events.
pub fn phase_message(status: &AiAppStatus) -> String {
    let said = |s: &Option<CompactString>| s.as_deref().unwrap_or("unknown").to_owned();
    format!(
        "state {}, final status {}",
        said(&status.state),
        said(&status.final_status)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataforest::error::{ResponseMeta, decode_response};
    use crate::dataforest::{KillResponse, TransportKind};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn api_error(status: u16, body: &str) -> ApiError {
        decode_response::<KillResponse>(ResponseMeta::new(status), body.as_bytes()).unwrap_err()
    }

    fn condition<'a>(status: &'a AiAppStatus, type_: &str) -> (&'a str, &'a str) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect(type_);
        (c.status.as_str(), c.reason.as_str())
    }

    fn marked(attempt: i32) -> AiAppStatus {
        marker(&AiAppStatus::default(), attempt, "ab", at(0))
    }

    fn response(id: &str) -> SubmitResponse {
        SubmitResponse {
            id: Some(id.into()),
            name: Some("ab-cdef-ghij".into()),
            state: Some("ACCEPTED".into()),
            final_status: Some("UNDEFINED".into()),
            ..Default::default()
        }
    }

    #[test]
    fn waiting_stops_at_a_condition_and_warns_once_per_reason() {
        let fresh = AiAppStatus::default();
        let t = waiting(
            &fresh,
            "CredentialsNotFound",
            "Secret ns/x not found",
            true,
            at(0),
        );
        assert_eq!(t.status.phase, Some(Phase::Pending));
        assert_eq!(
            condition(&t.status, condition::SUBMITTED),
            ("False", "CredentialsNotFound")
        );
        assert_eq!(
            condition(&t.status, condition::SYNCED),
            ("False", "CredentialsNotFound")
        );
        assert_eq!(t.next, Next::Park);
        assert!(t.note.as_ref().is_some_and(|n| n.warning));
        let again = waiting(
            &t.status,
            "CredentialsNotFound",
            "Secret ns/x not found",
            true,
            at(1),
        );
        assert_eq!(again.note, None, "the same reason warns once");
        let paused = waiting(&fresh, "Paused", "paused", false, at(0));
        assert_eq!(paused.note, None);
        // Once submitted, waiting keeps the phase and says so only in Synced.
        let submitted = submitted(&marked(1), 1, &response("x"), at(1)).status;
        let t = waiting(&submitted, "Paused", "paused", false, at(2));
        assert_eq!(t.status.phase, Some(Phase::Accepted));
        assert_eq!(condition(&t.status, condition::SUBMITTED).0, "True");
    }

    #[test]
    fn a_marker_records_a_pending_attempt_and_clears_an_old_confirmation() {
        let before = AiAppStatus {
            resubmit_token: Some("1-abc".into()),
            ..Default::default()
        };
        let status = marker(&before, 2, "ab", at(0));
        assert_eq!(status.phase, Some(Phase::Submitting));
        assert_eq!(status.submission.as_ref().map(|m| m.attempt), Some(2));
        assert_eq!(status.attempts[0].outcome, AttemptOutcome::Pending);
        assert_eq!(
            condition(&status, condition::SUBMITTED),
            ("Unknown", "Submitting")
        );
        assert_eq!(status.resubmit_token, None);
    }

    #[test]
    fn a_submit_answer_records_the_id_on_its_attempt() {
        let t = submitted(&marked(1), 1, &response("abc"), at(1));
        assert_eq!(t.status.id.as_deref(), Some("abc"));
        assert_eq!(t.status.attempts[0].id.as_deref(), Some("abc"));
        assert_eq!(t.status.attempts[0].outcome, AttemptOutcome::Created);
        assert_eq!(t.status.phase, Some(Phase::Accepted));
        assert_eq!(condition(&t.status, condition::SYNCED), ("True", "Synced"));
        assert_eq!(t.note.map(|n| n.reason), Some("Submitted".into()));
        assert_eq!(t.next, Next::Soon);
    }

    #[test]
    fn a_failed_submit_keeps_the_marker_only_when_the_app_may_exist() {
        let timeout = ApiError::Timeout {
            after: Duration::from_secs(1),
        };
        let lost = ApiError::Transport {
            kind: TransportKind::ConnectionLost,
            message: String::new(),
        };
        for error in [
            timeout,
            lost,
            api_error(
                504,
                r#"{"error":{"errorCode":"510","message":"Endpoint Timeout"}}"#,
            ),
        ] {
            let t = submit_failed(&marked(1), 1, &error, at(1));
            assert!(t.status.submission.is_some(), "{error}");
            assert_eq!(t.status.attempts[0].outcome, AttemptOutcome::Pending);
            assert_eq!(
                condition(&t.status, condition::SYNCED),
                ("False", "SubmitOutcomeUnknown")
            );
            assert_eq!(t.status.phase, Some(Phase::Submitting));
        }
        // (error, reason, next) when nothing can have been created.
        let table = [
            (
                api_error(
                    400,
                    r#"{"success":false,"message":"invalid request parameters"}"#,
                ),
                "InvalidSpec",
                Next::Park,
            ),
            (
                api_error(
                    401,
                    r#"{"error":{"errorCode":"200","message":"Authentication Failed"}}"#,
                ),
                "Unauthorized",
                Next::Park,
            ),
            (
                api_error(
                    400,
                    r#"{"success":false,"message":"exceeded limit on resource quota"}"#,
                ),
                "QuotaExceeded",
                Next::Backoff,
            ),
            (
                api_error(
                    429,
                    r#"{"error":{"errorCode":"410","message":"Throttle Limited"}}"#,
                ),
                "Throttled",
                Next::Backoff,
            ),
            (api_error(307, ""), "Redirected", Next::Backoff),
        ];
        for (error, reason, next) in table {
            let t = submit_failed(&marked(1), 1, &error, at(1));
            assert_eq!(t.status.submission, None, "{reason}");
            assert_eq!(
                t.status.attempts[0].outcome,
                AttemptOutcome::NotCreated,
                "{reason}"
            );
            assert_eq!(t.status.phase, Some(Phase::Pending));
            assert_eq!(
                condition(&t.status, condition::SUBMITTED),
                ("False", reason)
            );
            assert_eq!(t.next, next, "{reason}");
            assert!(t.note.is_some_and(|n| n.warning && n.reason == reason));
        }
    }

    #[test]
    fn an_attempt_not_sent_after_a_lost_lease_created_nothing() {
        let t = not_sent(&marked(3), 3, at(1));
        assert_eq!(t.status.attempts[0].outcome, AttemptOutcome::NotCreated);
        assert_eq!(
            condition(&t.status, condition::SUBMITTED),
            ("False", "LeaseLost")
        );
        assert_eq!(t.status.submission, None);
    }

    #[test]
    fn recovery_and_a_person_adopt_onto_the_current_attempt() {
        let t = adopted(&marked(1), "abc", "Recovered", "found app abc", "ab", at(1));
        assert_eq!(t.status.attempts[0].outcome, AttemptOutcome::Recovered);
        assert_eq!(t.status.attempts[0].id.as_deref(), Some("abc"));
        assert_eq!(
            condition(&t.status, condition::SUBMITTED),
            ("True", "Recovered")
        );
        assert_eq!(t.next, Next::Now);
        // Adopting before any submit makes the app an attempt of its own.
        let t = adopted(
            &AiAppStatus::default(),
            "abc",
            "Adopted",
            "adopted abc",
            "ab",
            at(1),
        );
        assert_eq!(t.status.attempts.len(), 1);
        assert_eq!(t.status.attempts[0].outcome, AttemptOutcome::Adopted);
        assert_eq!(t.status.phase, Some(Phase::Accepted));
    }

    #[test]
    fn an_ambiguous_recovery_names_every_candidate_and_the_bound_token() {
        let t = ambiguous(
            &marked(1),
            "uid-1",
            &["a".into(), "b".into()],
            "two match",
            at(1),
        );
        assert_eq!(t.status.phase, Some(Phase::Unknown));
        assert_eq!(t.status.attempts[0].outcome, AttemptOutcome::Ambiguous);
        assert_eq!(t.status.attempts[0].candidates, ["a", "b"]);
        let token = attempts::resubmit_token("uid-1", &t.status.attempts[0]);
        assert_eq!(t.status.resubmit_token.as_deref(), Some(token.as_str()));
        assert!(t.status.message.as_deref().unwrap().contains(&token));
        assert_eq!(
            condition(&t.status, condition::SYNCED),
            ("False", "SubmissionAmbiguous")
        );
        assert_eq!(
            t.next,
            Next::Backoff,
            "candidates are refreshed, nothing submitted"
        );
        assert!(t.note.is_some());
        let again = ambiguous(
            &t.status,
            "uid-1",
            &["a".into(), "b".into()],
            "two match",
            at(2),
        );
        assert_eq!(again.note, None, "one Warning when Unknown begins");
    }

    fn detail(state: &str, final_status: &str) -> AppDetail {
        AppDetail {
            state: Some(state.into()),
            final_status: Some(final_status.into()),
            ..Default::default()
        }
    }

    #[test]
    fn polls_follow_the_phase_with_one_event_per_change() {
        let accepted = submitted(&marked(1), 1, &response("abc"), at(1)).status;
        let same = polled(
            &accepted,
            "abc",
            &detail("ACCEPTED", "UNDEFINED"),
            false,
            None,
            at(2),
        );
        assert_eq!((same.note, same.next), (None, Next::Backoff));
        let running = polled(
            &accepted,
            "abc",
            &detail("RUNNING", "UNDEFINED"),
            false,
            None,
            at(2),
        );
        assert_eq!(running.status.phase, Some(Phase::Running));
        assert_eq!(running.next, Next::Soon);
        assert_eq!(
            running
                .note
                .as_ref()
                .map(|n| (n.reason.as_str(), n.warning)),
            Some(("Running", false))
        );
        let table = [
            (
                detail("FINISHED", "SUCCEEDED"),
                Phase::Succeeded,
                false,
                "Succeeded",
            ),
            (
                detail("FINISHED", "FAILED"),
                Phase::Failed,
                true,
                "AppFailed",
            ),
            (detail("FINISHED", "ENDED"), Phase::Failed, true, "AppEnded"),
            (detail("KILLED", "KILLED"), Phase::Killed, true, "Killed"),
        ];
        for (detail, phase, warning, reason) in table {
            let t = polled(&running.status, "abc", &detail, false, None, at(3));
            assert_eq!(t.status.phase, Some(phase));
            assert_eq!(t.next, Next::Done);
            assert_eq!(t.note.map(|n| n.warning), Some(warning));
            let type_ = if phase == Phase::Succeeded {
                condition::SUCCEEDED
            } else {
                condition::FAILED
            };
            assert_eq!(condition(&t.status, type_), ("True", reason));
        }
    }

    #[test]
    fn an_ended_app_with_an_undefined_final_status_is_read_once_more() {
        let running = submitted(&marked(1), 1, &response("abc"), at(1)).status;
        let first = polled(
            &running,
            "abc",
            &detail("FINISHED", "UNDEFINED"),
            false,
            None,
            at(2),
        );
        assert_eq!(first.next, Next::ReadAgain);
        assert_eq!(first.status, running, "nothing is written yet");
        let second = polled(
            &running,
            "abc",
            &detail("FINISHED", "UNDEFINED"),
            true,
            None,
            at(3),
        );
        assert_eq!(second.status.phase, Some(Phase::Failed));
        assert_eq!(second.next, Next::Done);
    }

    #[test]
    fn failed_reads_retry_or_park_and_not_found_turns_unknown_after_its_grace() {
        let running = submitted(&marked(1), 1, &response("abc"), at(1)).status;
        let throttled = api_error(
            429,
            r#"{"error":{"errorCode":"410","message":"Throttle Limited"}}"#,
        );
        let t = call_failed(&running, &throttled, at(2));
        assert_eq!(
            condition(&t.status, condition::SYNCED),
            ("False", "Throttled")
        );
        assert_eq!(t.next, Next::Backoff);
        let html = api_error(200, "<html>maintenance</html>");
        assert_eq!(call_failed(&running, &html, at(2)).next, Next::Backoff);
        let unauthorized = api_error(
            401,
            r#"{"error":{"errorCode":"200","message":"Authentication Failed"}}"#,
        );
        assert_eq!(call_failed(&running, &unauthorized, at(2)).next, Next::Park);
        let grace = Duration::from_secs(60);
        let within = not_found(&running, "abc", at(0), grace, at(30));
        assert_eq!(
            (within.status.phase, within.next),
            (Some(Phase::Accepted), Next::Backoff)
        );
        assert_eq!(
            condition(&within.status, condition::SYNCED),
            ("False", "AppNotFound")
        );
        let past = not_found(&running, "abc", at(0), grace, at(61));
        assert_eq!(
            (past.status.phase, past.next),
            (Some(Phase::Unknown), Next::Park)
        );
        assert!(past.note.is_some_and(|n| n.reason == "AppNotFound"));
    }

    fn running(id: &str) -> AiAppStatus {
        let accepted = submitted(&marked(1), 1, &response(id), at(1)).status;
        polled(
            &accepted,
            id,
            &detail("RUNNING", "UNDEFINED"),
            false,
            None,
            at(2),
        )
        .status
    }

    #[test]
    fn a_suspend_kill_is_recorded_first_and_ends_in_suspended_not_killed() {
        let decided = kill_decided(&running("abc"), "abc", KillCause::Suspend, None, at(3));
        assert_eq!(
            decided.status.attempts[0].killed_by,
            Some(KillCause::Suspend)
        );
        assert_eq!(decided.status.attempts[0].killed_at, Some(Time(at(3))));
        assert_eq!(
            decided.status.phase,
            Some(Phase::Running),
            "live until it shows ended"
        );
        assert_eq!(
            condition(&decided.status, condition::SUSPENDED),
            ("False", "Suspending")
        );
        // Still live: the kill's message stays.
        let live = polled(
            &decided.status,
            "abc",
            &detail("RUNNING", "UNDEFINED"),
            false,
            None,
            at(4),
        );
        assert_eq!(live.status.message, decided.status.message);
        let ended = polled(
            &decided.status,
            "abc",
            &detail("KILLED", "KILLED"),
            false,
            None,
            at(5),
        );
        assert_eq!(ended.status.phase, Some(Phase::Suspended));
        assert_eq!(ended.status.attempts[0].ended, Some(Phase::Suspended));
        assert_eq!(ended.next, Next::Park);
        assert_eq!(
            condition(&ended.status, condition::SUSPENDED),
            ("True", "Suspended")
        );
        assert!(
            !ended
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == condition::FAILED),
            "a suspend is no failure"
        );
        // Resuming starts a new attempt with none of the old app's fields.
        let resumed = marker(&ended.status, 2, "cd", at(9));
        assert_eq!((resumed.id.clone(), resumed.state.clone()), (None, None));
        assert_eq!(resumed.attempt, Some(2));
        assert_eq!(
            condition(&resumed, condition::SUSPENDED),
            ("False", "Resumed")
        );
    }

    #[test]
    fn a_deadline_says_so_at_once_and_fails_only_once_the_app_ended() {
        let fired = job::Fired {
            cause: KillCause::StartDeadline,
            limit_seconds: 30,
            at: at(30),
        };
        let decided = kill_decided(&running("abc"), "abc", fired.cause, Some(&fired), at(31));
        assert_eq!(
            condition(&decided.status, condition::FAILURE_TARGET),
            ("True", "DeadlineExceeded")
        );
        let message = decided.status.message.clone().unwrap();
        assert!(
            message.contains("spec.startDeadlineSeconds (30 s) passed at"),
            "{message}"
        );
        assert!(
            decided
                .note
                .as_ref()
                .is_some_and(|n| n.warning && n.reason == "DeadlineExceeded")
        );
        assert!(!decided.status.phase.unwrap().is_terminal());
        let ended = polled(
            &decided.status,
            "abc",
            &detail("KILLED", "KILLED"),
            false,
            None,
            at(40),
        );
        assert_eq!(ended.status.phase, Some(Phase::Failed));
        assert_eq!(
            condition(&ended.status, condition::FAILED),
            ("True", "DeadlineExceeded")
        );
        assert_eq!(ended.next, Next::Done);
        // The end says what happened, not what was still to come when the kill was sent.
        let said = ended.status.message.clone().unwrap();
        assert_eq!(
            said,
            format!(
                "app abc was killed and ended (state KILLED, final status KILLED): {}",
                fired.describe()
            )
        );
    }

    #[test]
    fn a_failed_app_is_retried_while_retries_are_left_and_a_killed_one_never() {
        let retry = Retry {
            number: 1,
            limit: 2,
            at: at(20),
        };
        let failed = polled(
            &running("abc"),
            "abc",
            &detail("FINISHED", "FAILED"),
            false,
            Some(retry),
            at(10),
        );
        assert_eq!(failed.status.phase, Some(Phase::Pending));
        assert_eq!(failed.status.next_attempt_at, Some(Time(at(20))));
        assert_eq!(failed.status.attempts[0].ended, Some(Phase::Failed));
        assert_eq!(
            condition(&failed.status, condition::SUBMITTED),
            ("False", "Retrying")
        );
        assert_eq!(failed.next, Next::After(Duration::from_secs(10)));
        assert!(
            failed
                .status
                .message
                .as_deref()
                .unwrap()
                .contains("retry 1 of 2")
        );
        let killed = polled(
            &running("abc"),
            "abc",
            &detail("KILLED", "KILLED"),
            false,
            Some(retry),
            at(10),
        );
        assert_eq!(
            killed.status.phase,
            Some(Phase::Killed),
            "a person's kill is final"
        );
        let out_of_retries = polled(
            &running("abc"),
            "abc",
            &detail("FAILED", "FAILED"),
            false,
            None,
            at(10),
        );
        assert_eq!(out_of_retries.status.phase, Some(Phase::Failed));
        assert_eq!(out_of_retries.status.attempts[0].ended, Some(Phase::Failed));
    }

    #[test]
    fn an_active_deadline_with_no_app_running_fails_at_once() {
        let fired = job::Fired {
            cause: KillCause::ActiveDeadline,
            limit_seconds: 60,
            at: at(60),
        };
        let t = expired(&running("abc"), &fired, at(61));
        assert_eq!(t.status.phase, Some(Phase::Failed));
        assert_eq!(
            condition(&t.status, condition::FAILED),
            ("True", "DeadlineExceeded")
        );
        assert_eq!(t.next, Next::Done);
        let idle = suspended(&AiAppStatus::default(), at(0));
        assert_eq!(idle.status.phase, Some(Phase::Suspended));
        assert_eq!(
            condition(&idle.status, condition::SUBMITTED),
            ("False", "Suspended")
        );
        assert_eq!(
            suspended(&idle.status, at(1)).note,
            None,
            "one Event when it begins"
        );
    }
}
