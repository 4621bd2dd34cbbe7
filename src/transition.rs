//! Transitions as data, pure: given an AiApp's status, what was observed and the outcome of
//! a call, the status to write, the Event to publish and what to do next. The controller
//! has one effectful place that carries a [`Transition`] out (`controller::effect`), so
//! every branch here is a table test and none repeats read/clone/condition/write.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::attempts;
use crate::crd::{AiAppStatus, AttemptOutcome, Phase};
use crate::dataforest::{ApiError, AppDetail, SubmitResponse};
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
        .map(|c| (c.status.clone(), c.reason.clone()))
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
    status.id = Some(id.to_owned());
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
            .cloned()
            .collect();
    }
    let token = attempts::resubmit_token(uid, &current);
    let message = format!(
        "cannot tell which app attempt {} created: {why}. Set the annotation {ADOPT_ID_ANNOTATION}=<app id> to \
         adopt one, or {RESUBMIT_ANNOTATION}={token} to submit again",
        current.attempt
    );
    status.phase = Some(Phase::Unknown);
    status.resubmit_token = Some(token);
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
    Transition::new(status, note, Next::Park)
}

/// getDetail answered: the status follows the app. A terminal state with no real final
/// status yet (`UNDEFINED`) is read once more before it counts (`confirmed_undefined`).
pub fn polled(
    before: &AiAppStatus,
    id: &str,
    detail: &AppDetail,
    confirmed_undefined: bool,
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
    status.message = Some(phase_message(&status));
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
    let said = |s: &Option<String>| s.clone().unwrap_or_else(|| "unknown".to_owned());
    format!(
        "state {}, final status {}",
        said(&status.state),
        said(&status.final_status)
    )
}
