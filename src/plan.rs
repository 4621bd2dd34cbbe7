//! Pure decisions: given an AiApp and what Data Forest said, what the reconciler does
//! next. No I/O here, so every branch is a table test.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::attempts;
use crate::crd::{AiApp, AttemptOutcome, AttemptRecord, Phase};
use crate::dataforest::AppSummary;
use crate::job;

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
    /// `spec.suspend` holds an AiApp with no live app: no API call.
    Suspend,
    /// The active deadline passed while no app runs: Failed, nothing more is submitted.
    Expire(job::Fired),
    /// A failed app's retry is due at this time: no API call until then.
    Wait(Timestamp),
}

/// The next step for `app`, whose status is already normalized (see
/// [`crate::attempts::normalize`]), at `now`.
pub fn next_step(app: &AiApp, now: Timestamp) -> Step {
    let status = app.status.clone().unwrap_or_default();
    if status.phase.is_some_and(Phase::is_terminal) {
        return Step::Done;
    }
    if annotation(app, PAUSED_ANNOTATION) == Some("true") {
        return Step::Paused;
    }
    // The app in status is live until its attempt ended (then a retry or a resume is due).
    let current_ended = attempts::current(&status).is_some_and(|a| a.ended.is_some());
    if let Some(id) = status.id.as_deref().filter(|_| !current_ended) {
        return Step::Poll(id.to_owned());
    }
    let own = |id: &str| status.attempts.iter().any(|a| a.id.as_deref() == Some(id));
    match annotation(app, ADOPT_ID_ANNOTATION) {
        // An adopt-id left on the AiApp after its app ended names that app again: not new.
        Some(id) if own(id) => {}
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
        // Nothing submitted, nothing came of the last submit, or its app ended.
        None => {}
        Some(record) if record.outcome == AttemptOutcome::NotCreated || record.ended.is_some() => {}
        Some(record) if status.phase == Some(Phase::Unknown) => {
            let uid = app.metadata.uid.as_deref().unwrap_or_default();
            let token = attempts::resubmit_token(uid, record);
            return if annotation(app, RESUBMIT_ANNOTATION) == Some(token.as_str()) {
                Step::Submit { attempt: next }
            } else {
                Step::AwaitPerson(record.clone())
            };
        }
        // The outcome of the current attempt is unknown: its app is found first (a
        // suspend or a deadline then kills it).
        Some(record) => return Step::Recover(record.clone()),
    }
    if app.spec.suspend {
        return Step::Suspend;
    }
    if let Some(fired) = job::active_deadline(&app.spec, &status).filter(|d| d.at <= now) {
        return Step::Expire(fired);
    }
    match status.next_attempt_at {
        Some(at) if at.0 > now => Step::Wait(at.0),
        _ => Step::Submit { attempt: next },
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

/// Whether an app named `name` was submitted with `prefix` (Data Forest names apps
/// `<prefix>-xxxx-xxxx`).
pub fn carries_prefix(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('-'))
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
    let named_by_an_attempt =
        |name: &str| open.iter().any(|a| carries_prefix(name, &a.name_prefix));
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
    // When an earlier attempt may also have made an app under the same prefix, a match
    // may be that one while this attempt's own is not listed yet, or still to come: no
    // guessing then. Under a prefix no other open attempt used (each derived attempt has
    // its own), the name says which attempt made the app.
    let earlier_open = &context.attempts[..context.attempts.len() - 1];
    let shares_prefix = earlier_open
        .iter()
        .any(|a| a.outcome.may_have_unknown_app() && a.name_prefix == current.name_prefix);
    let others_open = earlier_open
        .iter()
        .any(|a| a.outcome.may_have_unknown_app());
    let found = candidates(context, listed);
    let current_made = |id: &String| {
        listed.iter().any(|app| {
            app.id.as_ref() == Some(id)
                && app
                    .name
                    .as_deref()
                    .is_some_and(|name| carries_prefix(name, &current.name_prefix))
        })
    };
    let mine: Vec<&String> = found.iter().filter(|id| current_made(id)).collect();
    if let [one] = mine.as_slice()
        && !shares_prefix
        && context.rivals == 0
    {
        // An earlier attempt's app listed too is a second app: once this AiApp follows
        // its own, the poll records that one and kills it (see the controller's poll).
        return Recovery::Adopt((*one).clone());
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AiAppSpec, AiAppStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const UID: &str = "0f1e2d3c-aaaa-bbbb-cccc-111122223333";

    fn app(status: Option<AiAppStatus>, annotations: &[(&str, &str)]) -> AiApp {
        let spec: AiAppSpec = serde_json::from_value(serde_json::json!({
            "aiWorkspaceId": "ws", "docker": {"image": "i", "command": "c"},
        }))
        .unwrap();
        let mut app = AiApp::new("train", spec);
        app.metadata.uid = Some(UID.to_owned());
        app.status = status.map(|mut s| {
            attempts::normalize(&mut s);
            s
        });
        app.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        app
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn record(attempt: i32, started: i64, outcome: AttemptOutcome) -> AttemptRecord {
        AttemptRecord {
            attempt,
            started_at: Time(at(started)),
            name_prefix: "tra1x2y3".into(),
            id: None,
            candidates: Vec::new(),
            outcome,
            killed_by: None,
            killed_at: None,
            ended: None,
        }
    }

    fn status(phase: Phase, id: Option<&str>, attempts: Vec<AttemptRecord>) -> AiAppStatus {
        AiAppStatus {
            phase: Some(phase),
            id: id.map(Into::into),
            attempts,
            ..Default::default()
        }
    }

    fn token(attempt: &AttemptRecord) -> String {
        attempts::resubmit_token(UID, attempt)
    }

    #[test]
    fn the_next_step_follows_the_reconcile_order() {
        let pending = record(1, 0, AttemptOutcome::Pending);
        let refused = record(3, 0, AttemptOutcome::NotCreated);
        let unknown = |annotations: &[(&str, &str)]| {
            app(
                Some(status(Phase::Unknown, None, vec![pending.clone()])),
                annotations,
            )
        };
        let table = [
            (app(None, &[]), Step::Submit { attempt: 1 }),
            (app(None, &[(PAUSED_ANNOTATION, "true")]), Step::Paused),
            (app(None, &[(PAUSED_ANNOTATION, "false")]), Step::Submit { attempt: 1 }),
            (
                app(Some(status(Phase::Submitting, None, vec![pending.clone()])), &[]),
                Step::Recover(pending.clone()),
            ),
            // A refused attempt is followed by a new one, numbered above it.
            (
                app(Some(status(Phase::Pending, None, vec![refused])), &[]),
                Step::Submit { attempt: 4 },
            ),
            (
                app(Some(status(Phase::Running, Some("abc"), vec![pending.clone()])), &[]),
                Step::Poll("abc".into()),
            ),
            (
                app(
                    Some(status(Phase::Succeeded, Some("abc"), vec![])),
                    &[(PAUSED_ANNOTATION, "true")],
                ),
                Step::Done,
            ),
            (app(Some(status(Phase::Killed, Some("abc"), vec![])), &[]), Step::Done),
            (
                app(None, &[(ADOPT_ID_ANNOTATION, "dN2vdAwrCMZdUzGKKiFy6Z")]),
                Step::Adopt("dN2vdAwrCMZdUzGKKiFy6Z".into()),
            ),
            (
                app(None, &[(ADOPT_ID_ANNOTATION, "not an id!")]),
                Step::Refused {
                    reason: "InvalidAnnotation",
                    message: "dataforest.dev/adopt-id \"not an id!\" is not a Data Forest app id (Base62, at \
                              most 22 characters); nothing is submitted until it is fixed or removed"
                        .into(),
                },
            ),
            (unknown(&[]), Step::AwaitPerson(pending.clone())),
            (
                unknown(&[(RESUBMIT_ANNOTATION, &token(&pending))]),
                Step::Submit { attempt: 2 },
            ),
            // The old bare attempt number, or another attempt's token, confirms nothing.
            (unknown(&[(RESUBMIT_ANNOTATION, "1")]), Step::AwaitPerson(pending.clone())),
            (
                unknown(&[(RESUBMIT_ANNOTATION, &token(&record(1, 99, AttemptOutcome::Pending)))]),
                Step::AwaitPerson(pending.clone()),
            ),
        ];
        for (app, step) in table {
            assert_eq!(
                next_step(&app, at(0)),
                step,
                "{:?} {:?}",
                app.status,
                app.metadata.annotations
            );
        }
    }

    #[test]
    fn a_confirmation_left_on_a_re_created_aiapp_confirms_nothing() {
        let pending = record(1, 0, AttemptOutcome::Pending);
        let mut recreated = app(
            Some(status(Phase::Unknown, None, vec![pending.clone()])),
            &[(RESUBMIT_ANNOTATION, &token(&pending))],
        );
        recreated.metadata.uid = Some("another-uid".into());
        assert_eq!(next_step(&recreated, at(0)), Step::AwaitPerson(pending));
    }

    fn listed(id: &str, name: &str, started: Option<i64>) -> AppSummary {
        AppSummary {
            id: Some(id.into()),
            name: Some(name.into()),
            started_at: started.map(at),
            state: Some("RUNNING".into()),
            ..Default::default()
        }
    }

    fn ended(id: &str, started: i64, finished: i64, state: &str) -> AppSummary {
        AppSummary {
            state: Some(state.into()),
            finished_at: Some(at(finished)),
            ..listed(id, "tra1x2y3-zzzz-zzzz", Some(started))
        }
    }

    fn context<'a>(
        attempts: &'a [AttemptRecord],
        claimed: &'a HashSet<String>,
        rivals: usize,
        listed_at: i64,
    ) -> RecoveryContext<'a> {
        RecoveryContext {
            attempts,
            claimed,
            rivals,
            listed_at: at(listed_at),
            grace: Duration::from_secs(30),
            max_automatic_resubmits: 1,
        }
    }

    #[test]
    fn only_apps_that_can_be_this_aiapps_are_candidates() {
        let attempts = [record(1, 100, AttemptOutcome::Pending)];
        let claimed: HashSet<String> = ["taken".to_owned()].into();
        let cases = [
            (
                listed("a", "tra1x2y3-abcd-efgh", Some(101)),
                true,
                "its prefix, started after",
            ),
            (
                listed("a", "tra1x2y3-abcd-efgh", Some(95)),
                true,
                "started within the clock slack",
            ),
            (
                listed("a", "tra1x2y3-abcd-efgh", Some(50)),
                false,
                "started long before the marker",
            ),
            (
                listed("a", "tra1x2y3-abcd-efgh", None),
                false,
                "no startedAt",
            ),
            (
                listed("a", "tra1x2y4-abcd-efgh", Some(101)),
                false,
                "another prefix",
            ),
            (
                listed("a", "tra1x2y3x-abcd-efgh", Some(101)),
                false,
                "a longer prefix",
            ),
            (
                listed("taken", "tra1x2y3-abcd-efgh", Some(101)),
                false,
                "held by another AiApp",
            ),
            (
                ended("a", 95, 98, "FINISHED"),
                true,
                "ended after the marker less the slack",
            ),
            (
                ended("a", 40, 60, "FINISHED"),
                false,
                "ended before the marker",
            ),
            (
                ended("a", 101, 102, "KILLED"),
                false,
                "killed: never adopted",
            ),
        ];
        for (app, expected, why) in cases {
            let found = candidates(&context(&attempts, &claimed, 0, 110), &[app]);
            assert_eq!(!found.is_empty(), expected, "{why}");
        }
    }

    #[test]
    fn apps_of_every_open_attempt_count_and_known_ones_do_not() {
        let mut created = record(1, 0, AttemptOutcome::Created);
        created.id = Some("first".into());
        let attempts = [
            created,
            record(2, 50, AttemptOutcome::NotListed),
            record(3, 100, AttemptOutcome::Pending),
        ];
        let none: HashSet<String> = HashSet::new();
        let apps = [
            listed("first", "tra1x2y3-aaaa-aaaa", Some(60)),
            listed("second", "tra1x2y3-bbbb-bbbb", Some(51)),
            listed("third", "tra1x2y3-cccc-cccc", Some(101)),
        ];
        assert_eq!(
            candidates(&context(&attempts, &none, 0, 110), &apps),
            ["second", "third"]
        );
    }

    #[test]
    fn recovery_adopts_one_match_waits_resubmits_once_then_stops() {
        let none: HashSet<String> = HashSet::new();
        let one = [record(1, 0, AttemptOutcome::Pending)];
        let mine = [listed("a1", "tra1x2y3-abcd-efgh", Some(1))];
        let twins = [
            listed("a1", "tra1x2y3-abcd-efgh", Some(1)),
            listed("d1", "tra1x2y3-wxyz-wxyz", Some(2)),
        ];
        assert_eq!(
            recover(&context(&one, &none, 0, 5), &mine),
            Recovery::Adopt("a1".into())
        );
        assert_eq!(recover(&context(&one, &none, 0, 5), &[]), Recovery::Wait);
        assert_eq!(
            recover(&context(&one, &none, 0, 31), &[]),
            Recovery::Resubmit
        );
        assert_eq!(
            recover(&context(&one, &none, 0, 5), &twins),
            Recovery::Ambiguous(vec!["a1".into(), "d1".into()])
        );
        // Another AiApp with the same prefix still looks for its app: one match may be its.
        assert_eq!(
            recover(&context(&one, &none, 1, 5), &mine),
            Recovery::Ambiguous(vec!["a1".into()])
        );
        // The one automatic resubmit is used up: a person decides.
        let second = [
            record(1, 0, AttemptOutcome::NotListed),
            record(2, 31, AttemptOutcome::Pending),
        ];
        assert_eq!(
            recover(&context(&second, &none, 0, 70), &[]),
            Recovery::Exhausted
        );
    }

    #[test]
    fn under_a_prefix_of_its_own_each_attempts_app_is_told_apart() {
        let none: HashSet<String> = HashSet::new();
        let with_prefix = |attempt, started, outcome, prefix: &str| AttemptRecord {
            name_prefix: prefix.into(),
            ..record(attempt, started, outcome)
        };
        let attempts = [
            with_prefix(1, 0, AttemptOutcome::NotListed, "tra1x2y3"),
            with_prefix(2, 31, AttemptOutcome::Pending, "trab7c8d"),
        ];
        let second = [listed("a2", "trab7c8d-abcd-efgh", Some(32))];
        assert_eq!(
            recover(&context(&attempts, &none, 0, 40), &second),
            Recovery::Adopt("a2".into())
        );
        // The first attempt's app, listed late: it is not the current attempt's.
        let first = [listed("a1", "tra1x2y3-abcd-efgh", Some(1))];
        assert_eq!(
            recover(&context(&attempts, &none, 0, 40), &first),
            Recovery::Wait
        );
        // Both: the current attempt's is followed; the poll deals with the other.
        let both = [first[0].clone(), second[0].clone()];
        assert_eq!(
            recover(&context(&attempts, &none, 0, 40), &both),
            Recovery::Adopt("a2".into())
        );
        // Another AiApp looking under the same prefix: still no guessing.
        assert_eq!(
            recover(&context(&attempts, &none, 1, 62), &second),
            Recovery::Ambiguous(vec!["a2".into()])
        );
    }

    #[test]
    fn with_an_earlier_attempt_open_a_single_match_is_never_guessed() {
        let none: HashSet<String> = HashSet::new();
        let attempts = [
            record(1, 0, AttemptOutcome::NotListed),
            record(2, 31, AttemptOutcome::Pending),
        ];
        let late = [listed("a1", "tra1x2y3-abcd-efgh", Some(1))];
        assert_eq!(
            recover(&context(&attempts, &none, 0, 40), &late),
            Recovery::Wait
        );
        assert_eq!(
            recover(&context(&attempts, &none, 0, 62), &late),
            Recovery::Ambiguous(vec!["a1".into()])
        );
    }

    #[test]
    fn polls_back_off_from_the_minimum_to_the_ceiling() {
        let (min, ceiling) = (Duration::from_secs(1), Duration::from_secs(5));
        let mut seen = vec![];
        let mut interval = None;
        for _ in 0..5 {
            let next = next_poll_interval(interval, min, ceiling);
            seen.push(next.as_secs());
            interval = Some(next);
        }
        assert_eq!(seen, [1, 2, 4, 5, 5]);
    }

    #[test]
    fn suspend_retries_and_the_active_deadline_choose_the_step_once_no_app_is_live() {
        let mut ended = record(1, 0, AttemptOutcome::Created);
        ended.id = Some("abc".into());
        ended.ended = Some(Phase::Failed);
        let waiting = |next_at: i64, annotations: &[(&str, &str)]| {
            let mut s = status(Phase::Pending, Some("abc"), vec![ended.clone()]);
            s.next_attempt_at = Some(Time(at(next_at)));
            app(Some(s), annotations)
        };
        assert_eq!(next_step(&waiting(20, &[]), at(10)), Step::Wait(at(20)));
        assert_eq!(
            next_step(&waiting(20, &[]), at(20)),
            Step::Submit { attempt: 2 }
        );
        // An adopt-id still on the AiApp names its own ended app: no adoption again.
        assert_eq!(
            next_step(&waiting(5, &[(ADOPT_ID_ANNOTATION, "abc")]), at(10)),
            Step::Submit { attempt: 2 }
        );
        let mut suspended = app(None, &[]);
        suspended.spec.suspend = true;
        assert_eq!(next_step(&suspended, at(0)), Step::Suspend);
        // A live app is polled; the poll kills it.
        let mut live = app(
            Some(status(
                Phase::Running,
                Some("abc"),
                vec![record(1, 0, AttemptOutcome::Created)],
            )),
            &[],
        );
        live.spec.suspend = true;
        assert_eq!(next_step(&live, at(0)), Step::Poll("abc".into()));
        // Paused wins over suspend.
        suspended
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(PAUSED_ANNOTATION.into(), "true".into());
        assert_eq!(next_step(&suspended, at(0)), Step::Paused);
        // Resumed: a new attempt.
        let mut was_suspended = ended.clone();
        was_suspended.ended = Some(Phase::Suspended);
        was_suspended.killed_by = Some(crate::crd::KillCause::Suspend);
        let resumed = app(
            Some(status(Phase::Suspended, Some("abc"), vec![was_suspended])),
            &[],
        );
        assert_eq!(next_step(&resumed, at(0)), Step::Submit { attempt: 2 });
        // The active deadline passed while a retry waited: no more submits.
        let mut bounded = waiting(500, &[]);
        bounded.spec.active_deadline_seconds = Some(100);
        assert!(matches!(next_step(&bounded, at(101)), Step::Expire(fired) if fired.at == at(100)));
    }
}
