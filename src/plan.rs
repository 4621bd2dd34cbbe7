//! Pure decisions: given an AiApp and what Data Forest said, what the reconciler does
//! next. No I/O here, so every branch is a table test.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::crd::{AiApp, Phase, SubmissionMarker};
use crate::dataforest::AppSummary;

/// `"true"` stops every API call for the AiApp.
pub const PAUSED_ANNOTATION: &str = "dataforest.dev/paused";
/// Names the Data Forest app id that belongs to this AiApp.
pub const ADOPT_ID_ANNOTATION: &str = "dataforest.dev/adopt-id";
/// Set to the marker's attempt number to confirm a resubmit after an ambiguous recovery.
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
    /// A submit was started but its id is unknown: look for the app.
    Recover(SubmissionMarker),
    /// Recovery was ambiguous; only a person can go on (adopt-id or resubmit).
    AwaitPerson,
    /// An annotation a person set cannot be acted on; nothing happens until it is fixed.
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// The next step for `app`.
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
    match status.submission {
        None => Step::Submit { attempt: 1 },
        Some(marker) if status.phase == Some(Phase::Unknown) => {
            let confirmed =
                annotation(app, RESUBMIT_ANNOTATION) == Some(marker.attempt.to_string().as_str());
            if confirmed {
                Step::Submit {
                    attempt: marker.attempt + 1,
                }
            } else {
                Step::AwaitPerson
            }
        }
        Some(marker) => Step::Recover(marker),
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
    /// None yet, inside the grace period: a new app can take a while to be listed.
    Wait,
    /// None after the grace period: the submit did not create an app.
    Resubmit,
    /// More than one matches: a person decides.
    Ambiguous(Vec<String>),
}

/// How far the service's clock may lag ours when comparing `startedAt` with the marker.
pub const CLOCK_SLACK: SignedDuration = SignedDuration::from_secs(60);

/// Looks among `listed` for apps named `<prefix>-...`, started after the marker (less the
/// clock slack), and not claimed by another AiApp. `rivals` counts the other AiApps
/// that recorded the same prefix and still look for their app: then even a single match
/// may be theirs, and guessing could swap two jobs.
pub fn recover(
    marker: &SubmissionMarker,
    listed: &[AppSummary],
    claimed: &HashSet<String>,
    rivals: usize,
    now: Timestamp,
    grace: Duration,
) -> Recovery {
    let name_start = format!("{}-", marker.name_prefix);
    let not_before = marker.started_at.0 - CLOCK_SLACK;
    let matches: Vec<String> = listed
        .iter()
        .filter(|app| {
            app.name
                .as_deref()
                .is_some_and(|name| name.starts_with(&name_start))
        })
        .filter(|app| app.started_at.is_none_or(|started| started >= not_before))
        .filter_map(|app| app.id.clone())
        .filter(|id| !claimed.contains(id))
        .collect();
    match matches.as_slice() {
        [one] if rivals == 0 => Recovery::Adopt(one.clone()),
        [] => {
            let waited = now.duration_since(marker.started_at.0);
            if waited >= SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX) {
                Recovery::Resubmit
            } else {
                Recovery::Wait
            }
        }
        _ => Recovery::Ambiguous(matches),
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

    fn app(status: Option<AiAppStatus>, annotations: &[(&str, &str)]) -> AiApp {
        let spec: AiAppSpec = serde_json::from_value(serde_json::json!({
            "aiWorkspaceId": "ws", "docker": {"image": "i", "command": "c"},
        }))
        .unwrap();
        let mut app = AiApp::new("train", spec);
        app.status = status;
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

    fn marker(attempt: i32) -> SubmissionMarker {
        SubmissionMarker {
            attempt,
            started_at: Time(at(0)),
            name_prefix: "tra1x2y3".into(),
        }
    }

    fn status(phase: Phase, id: Option<&str>, submission: Option<SubmissionMarker>) -> AiAppStatus {
        AiAppStatus {
            phase: Some(phase),
            id: id.map(str::to_owned),
            submission,
            ..Default::default()
        }
    }

    #[test]
    fn the_next_step_follows_the_reconcile_order() {
        let table = [
            (app(None, &[]), Step::Submit { attempt: 1 }),
            (app(None, &[(PAUSED_ANNOTATION, "true")]), Step::Paused),
            (
                app(None, &[(PAUSED_ANNOTATION, "false")]),
                Step::Submit { attempt: 1 },
            ),
            (
                app(Some(status(Phase::Submitting, None, Some(marker(1)))), &[]),
                Step::Recover(marker(1)),
            ),
            (
                app(
                    Some(status(Phase::Running, Some("abc"), Some(marker(1)))),
                    &[],
                ),
                Step::Poll("abc".into()),
            ),
            (
                app(
                    Some(status(Phase::Succeeded, Some("abc"), None)),
                    &[(PAUSED_ANNOTATION, "true")],
                ),
                Step::Done,
            ),
            (
                app(Some(status(Phase::Killed, Some("abc"), None)), &[]),
                Step::Done,
            ),
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
            (
                app(Some(status(Phase::Unknown, None, Some(marker(1)))), &[]),
                Step::AwaitPerson,
            ),
            (
                app(
                    Some(status(Phase::Unknown, None, Some(marker(1)))),
                    &[(RESUBMIT_ANNOTATION, "1")],
                ),
                Step::Submit { attempt: 2 },
            ),
            (
                app(
                    Some(status(Phase::Unknown, None, Some(marker(2)))),
                    &[(RESUBMIT_ANNOTATION, "1")],
                ),
                Step::AwaitPerson,
            ),
        ];
        for (app, step) in table {
            assert_eq!(
                next_step(&app),
                step,
                "{:?} {:?}",
                app.status,
                app.metadata.annotations
            );
        }
    }

    fn listed(id: &str, name: &str, started: i64) -> AppSummary {
        AppSummary {
            id: Some(id.into()),
            name: Some(name.into()),
            started_at: Some(at(started)),
            ..Default::default()
        }
    }

    #[test]
    fn recovery_adopts_one_match_waits_then_resubmits_on_none_and_stops_on_two() {
        let grace = Duration::from_secs(30);
        let none = HashSet::new();
        let mine = listed("a1", "tra1x2y3-abcd-efgh", 1);
        let other_prefix = listed("b1", "tra1x2y4-abcd-efgh", 1);
        let too_old = listed("c1", "tra1x2y3-zzzz-zzzz", -3600);
        let twin = listed("d1", "tra1x2y3-wxyz-wxyz", 2);

        let recover_now = |listed: &[AppSummary], claimed: &HashSet<String>, rivals: usize| {
            recover(&marker(1), listed, claimed, rivals, at(5), grace)
        };
        let all = [mine.clone(), other_prefix.clone(), too_old.clone()];
        assert_eq!(recover_now(&all, &none, 0), Recovery::Adopt("a1".into()));
        let others = [other_prefix.clone()];
        assert_eq!(recover_now(&others, &none, 0), Recovery::Wait);
        assert_eq!(
            recover(&marker(1), &others, &none, 0, at(31), grace),
            Recovery::Resubmit
        );
        let both = [mine.clone(), twin.clone()];
        assert_eq!(
            recover_now(&both, &none, 0),
            Recovery::Ambiguous(vec!["a1".into(), "d1".into()])
        );
        let claimed: HashSet<String> = ["d1".to_owned()].into();
        assert_eq!(
            recover_now(&both, &claimed, 0),
            Recovery::Adopt("a1".into())
        );
        // Another AiApp with the same prefix still looks for its app: one match may be its.
        assert_eq!(
            recover_now(&[mine], &none, 1),
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
}
