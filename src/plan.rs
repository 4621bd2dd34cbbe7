//! Pure decisions: given an AiApp and what Data Forest said, what the reconciler does
//! next. No I/O here, so every branch is a table test.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::attempts;
use crate::crd::{AiApp, AttemptOutcome, AttemptRecord, Phase};
use crate::dataforest::AppSummary;

/// `"true"` stops every API call for the AiApp.
pub const PAUSED_ANNOTATION: &str = "dataforest.dev/paused";
/// Names the Data Forest app id that belongs to this AiApp.
pub const ADOPT_ID_ANNOTATION: &str = "dataforest.dev/adopt-id";
/// Set to `status.resubmitToken` to confirm one more submit after an ambiguous recovery.
pub const RESUBMIT_ANNOTATION: &str = "dataforest.dev/resubmit";

/// What to do with an AiApp that is not being deleted.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The app ended: no API call, ever again.
    Done,
    /// Paused by annotation: no API call until the annotation goes.
    Paused,
    /// Follow the app with this id.
    Poll(String),
    /// Take the app id a person named.
    Adopt(String),
    /// Submit, as attempt number `attempt`.
    Submit { attempt: i32 },
    /// The current attempt's outcome is unknown: look for its app.
    Recover(AttemptRecord),
    /// Recovery could not decide; only a person can go on (adopt-id or resubmit). Until
    /// then the operator only keeps the attempt's candidate apps in status up to date.
    AwaitPerson(AttemptRecord),
    /// An annotation a person set cannot be acted on; nothing happens until it is fixed.
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// The next step for `app`, whose status is already normalized (see
/// [`crate::attempts::normalize`]).
pub fn next_step(app: &AiApp) -> Step {
    let status = app.status.clone().unwrap_or_default();
    if status.phase.is_some_and(Phase::is_terminal) {
        return Step::Done;
    }
    if annotation(app, PAUSED_ANNOTATION) == Some("true") {
        return Step::Paused;
    }
    if let Some(id) = status.id {
        return Step::Poll(id);
    }
    match annotation(app, ADOPT_ID_ANNOTATION) {
        Some(id) if is_app_id(id) => return Step::Adopt(id.to_owned()),
        // Ignoring it would submit a new GPU job where the person meant to adopt one.
        Some(id) => {
            return Step::Refused {
                reason: "InvalidAnnotation",
                message: format!(
                    "{ADOPT_ID_ANNOTATION} {id:?} is not a Data Forest app id (Base62, at most 22 characters); \
                     nothing is submitted until it is fixed or removed"
                ),
            };
        }
        None => {}
    }
    let next = attempts::next_number(&status);
    match attempts::current(&status) {
        None => Step::Submit { attempt: next },
        Some(record) if record.outcome == AttemptOutcome::NotCreated => {
            Step::Submit { attempt: next }
        }
        Some(record) if status.phase == Some(Phase::Unknown) => {
            let uid = app.metadata.uid.as_deref().unwrap_or_default();
            let token = attempts::resubmit_token(uid, record);
            if annotation(app, RESUBMIT_ANNOTATION) == Some(token.as_str()) {
                Step::Submit { attempt: next }
            } else {
                Step::AwaitPerson(record.clone())
            }
        }
        Some(record) => Step::Recover(record.clone()),
    }
}

fn annotation<'a>(app: &'a AiApp, key: &str) -> Option<&'a str> {
    app.metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(key))
        .map(String::as_str)
}

/// A Data Forest app id: Base62, at most 22 characters.
pub fn is_app_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 22 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Outcome of looking for the app of a submit whose answer was lost.
#[derive(Clone, Debug, PartialEq)]
pub enum Recovery {
    /// Exactly one app matches: it is this AiApp's.
    Adopt(String),
    /// Nothing to decide yet: a new app can take a while to be listed.
    Wait,
    /// None after the grace period: the submit did not create an app; submit again.
    Resubmit,
    /// None after the grace period, and the automatic resubmits are used up.
    Exhausted,
    /// More than one matches: a person decides.
    Ambiguous(Vec<String>),
}

/// How far the service's clock may lag ours when comparing its times with a marker.
pub const CLOCK_SLACK: SignedDuration = SignedDuration::from_secs(10);

/// What recovery knows besides the listing.
#[derive(Clone, Debug)]
pub struct RecoveryContext<'a> {
    /// Every attempt of this AiApp, the current one last.
    pub attempts: &'a [AttemptRecord],
    /// App ids other AiApps hold: never adopted.
    pub claimed: &'a HashSet<String>,
    /// Other AiApps that recorded one of the same prefixes and still look for their app:
    /// then even a single match may be theirs, and guessing could swap two jobs.
    pub rivals: usize,
    /// When the listing was read (not when it is judged).
    pub listed_at: Timestamp,
    pub grace: Duration,
    /// How many times recovery may submit again on its own after finding nothing.
    pub max_automatic_resubmits: usize,
}

/// The apps in `listed` that may be this AiApp's: named after the prefix of one of its
/// attempts that may have an unknown app, started after the earliest of their markers
/// (less the clock slack), not killed, not ended before that marker, not held by another
/// AiApp and not already recorded by another attempt.
pub fn candidates(context: &RecoveryContext<'_>, listed: &[AppSummary]) -> Vec<String> {
    let open: Vec<&AttemptRecord> = context
        .attempts
        .iter()
        .filter(|a| a.outcome.may_have_unknown_app())
        .collect();
    let Some(earliest) = open.iter().map(|a| a.started_at.0).min() else {
        return Vec::new();
    };
    let not_before = earliest - CLOCK_SLACK;
    let known: HashSet<&str> = context
        .attempts
        .iter()
        .filter_map(|a| a.id.as_deref())
        .collect();
    let named_by_an_attempt = |name: &str| {
        open.iter().any(|a| {
            name.strip_prefix(a.name_prefix.as_str())
                .is_some_and(|rest| rest.starts_with('-'))
        })
    };
    listed
        .iter()
        .filter(|app| app.name.as_deref().is_some_and(named_by_an_attempt))
        .filter(|app| app.started_at.is_some_and(|started| started >= not_before))
        // A killed app is never this AiApp's to adopt: the operator kills only apps it
        // knows, and a person's kill ended it for good.
        .filter(|app| app.state.as_deref() != Some("KILLED"))
        .filter(|app| {
            !(app.is_terminal() && app.finished_at.is_some_and(|ended| ended < not_before))
        })
        .filter_map(|app| app.id.clone())
        .filter(|id| !context.claimed.contains(id) && !known.contains(id.as_str()))
        .collect()
}

/// Looks for the current attempt's app in `listed` (see [`candidates`]).
pub fn recover(context: &RecoveryContext<'_>, listed: &[AppSummary]) -> Recovery {
    let Some(current) = context.attempts.last() else {
        return Recovery::Wait;
    };
    let grace = SignedDuration::try_from(context.grace).unwrap_or(SignedDuration::MAX);
    let grace_over = context.listed_at.duration_since(current.started_at.0) >= grace;
    // When an earlier attempt may also have made an app, a match may be that one while
    // this attempt's own is not listed yet, or still to come: no guessing then.
    let others_open = context.attempts[..context.attempts.len() - 1]
        .iter()
        .any(|a| a.outcome.may_have_unknown_app());
    let found = candidates(context, listed);
    match found.as_slice() {
        [one] if context.rivals == 0 && !others_open => Recovery::Adopt(one.clone()),
        [_] if context.rivals == 0 && !grace_over => Recovery::Wait,
        [] if !grace_over => Recovery::Wait,
        [] if attempts::automatic_resubmits(context.attempts) < context.max_automatic_resubmits => {
            Recovery::Resubmit
        }
        [] => Recovery::Exhausted,
        _ => Recovery::Ambiguous(found),
    }
}

/// The next poll interval: doubling from `min` up to `ceiling`.
pub fn next_poll_interval(
    previous: Option<Duration>,
    min: Duration,
    ceiling: Duration,
) -> Duration {
    match previous {
        None => min,
        Some(previous) => previous.saturating_mul(2).clamp(min, ceiling.max(min)),
    }
}
