//! What users of a batch CRD expect of an AiApp, on the real apiserver and the emulator:
//! `spec.suspend` before and after the submit and on resume, both deadlines (also across an
//! operator restart and with a kill the emulator takes late), and retries of failed apps
//! up to `spec.backoffLimit`, one remote app per attempt; a killed app is never retried.

use std::time::Duration;

use anyhow::{Context, Result};
use dataforest_emulator::{Fault, Faults};
use dataforest_operator::crd::{AiApp, KillCause, Phase};
use dataforest_operator::dataforest::{
    ClientConfig, Credentials, DataForestClient, Operation, RetryPolicy,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams};
use libtest_mimic::Failed;

use crate::fixture::{self, ensure};
use crate::world::{
    ACCESS_KEY, SECRET_KEY, World, condition, phase, spec, with_world, with_world_mut,
};

/// An hour: longer than any test, so only the operator's or a person's kill ends the app.
const FOREVER_MS: u64 = 3_600_000;

async fn set_spec(world: &World, name: &str, patch: serde_json::Value) -> Result<()> {
    world
        .aiapps()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": patch })),
        )
        .await?;
    Ok(())
}

fn attempts(app: &AiApp) -> Vec<dataforest_operator::crd::AttemptRecord> {
    app.status
        .as_ref()
        .map(|s| s.attempts.clone())
        .unwrap_or_default()
}

fn message(app: &AiApp) -> String {
    app.status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

fn condition_message(app: &AiApp, type_: &str) -> String {
    app.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

pub fn suspended_before_submit_nothing_is_submitted_and_resuming_submits_once() -> Result<(), Failed>
{
    fixture::run("suspend-before", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut held = spec(0, 200, "SUCCEEDED");
                held.suspend = true;
                world.create("held", held).await?;
                let app = world
                    .wait_for("held", "Suspended", |a| phase(a) == Some(Phase::Suspended))
                    .await?;
                ensure(
                    condition(&app, "Suspended") == Some(("True", "Suspended")),
                    || format!("conditions {:?}", app.status),
                )?;
                ensure(world.emulator.apps().is_empty(), || {
                    format!(
                        "a suspended AiApp was submitted: {:?}",
                        world.emulator.apps()
                    )
                })?;
                set_spec(world, "held", serde_json::json!({"suspend": false})).await?;
                let app = world
                    .wait_for("held", "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                    .await?;
                let apps = world.emulator.apps();
                ensure(apps.len() == 1, || format!("apps {apps:?}"))?;
                ensure(
                    app.status.as_ref().and_then(|s| s.attempt) == Some(1),
                    || format!("status {:?}", app.status),
                )
            })
        })
        .await
    })
}

pub fn suspending_a_running_app_kills_it_and_resuming_submits_a_new_attempt() -> Result<(), Failed>
{
    fixture::run("suspend-running", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                world
                    .create("train", spec(0, FOREVER_MS, "SUCCEEDED"))
                    .await?;
                let running = world
                    .wait_for("train", "Running", |a| phase(a) == Some(Phase::Running))
                    .await?;
                let first = running.status.and_then(|s| s.id).context("no id")?;
                set_spec(world, "train", serde_json::json!({"suspend": true})).await?;
                let suspended = world
                    .wait_for("train", "Suspended", |a| phase(a) == Some(Phase::Suspended))
                    .await?;
                let records = attempts(&suspended);
                ensure(
                    records.len() == 1
                        && records[0].killed_by == Some(KillCause::Suspend)
                        && records[0].ended == Some(Phase::Suspended),
                    || format!("attempts {records:?}"),
                )?;
                let apps = world.emulator.apps();
                ensure(
                    apps.len() == 1 && apps[0].id == first && apps[0].state == "KILLED",
                    || format!("apps {apps:?}"),
                )?;
                set_spec(world, "train", serde_json::json!({"suspend": false})).await?;
                let resumed = world
                    .wait_for("train", "Running as attempt 2", |a| {
                        phase(a) == Some(Phase::Running)
                            && a.status.as_ref().and_then(|s| s.attempt) == Some(2)
                    })
                    .await?;
                let second = resumed.status.as_ref().and_then(|s| s.id.clone());
                let apps = world.emulator.apps();
                let live: Vec<_> = apps.iter().filter(|a| a.state == "RUNNING").collect();
                ensure(
                    apps.len() == 2
                        && live.len() == 1
                        && Some(live[0].id.as_str()) == second.as_deref(),
                    || format!("apps {apps:?}"),
                )?;
                ensure(
                    condition(&resumed, "Suspended") == Some(("False", "Resumed")),
                    || format!("conditions {:?}", resumed.status),
                )
            })
        })
        .await
    })
}

pub fn a_suspend_while_submitting_finds_the_app_first_then_kills_it() -> Result<(), Failed> {
    fixture::run("suspend-submitting", |ctx| async move {
        // The submit's answer is lost and the app shows in the listing only later: the
        // AiApp stays in Submitting while the suspend arrives.
        let faults = Faults {
            lost_response: Fault::next(1).on(&[Operation::Submit]),
            listing_lag_ms: 2_000,
            ..Faults::default()
        };
        let world = World::start(ctx.client, &ctx.namespace, faults).await?;
        with_world(world, |world| {
            Box::pin(async move {
                world
                    .create("lost", spec(0, FOREVER_MS, "SUCCEEDED"))
                    .await?;
                world
                    .wait_for("lost", "Submitting", |a| {
                        phase(a) == Some(Phase::Submitting)
                    })
                    .await?;
                set_spec(world, "lost", serde_json::json!({"suspend": true})).await?;
                let app = world
                    .wait_for("lost", "Suspended", |a| phase(a) == Some(Phase::Suspended))
                    .await?;
                let apps = world.emulator.apps();
                ensure(apps.len() == 1 && apps[0].state == "KILLED", || {
                    format!("apps {apps:?}")
                })?;
                ensure(
                    app.status.as_ref().and_then(|s| s.id.as_deref()) == Some(apps[0].id.as_str()),
                    || format!("status {:?}", app.status),
                )
            })
        })
        .await
    })
}

pub fn a_start_deadline_says_deadline_exceeded_at_once_and_fails_once_a_late_kill_took()
-> Result<(), Failed> {
    fixture::run("start-deadline", |ctx| async move {
        // The kill is accepted, but the app ends only 4 s later.
        let faults = Faults {
            slow_kill: Fault::next(1).with_delay_ms(4_000),
            ..Faults::default()
        };
        let world = World::start(ctx.client, &ctx.namespace, faults).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut queued = spec(FOREVER_MS, 0, "SUCCEEDED");
                queued.start_deadline_seconds = Some(2);
                world.create("queued", queued).await?;
                let exceeded = world
                    .wait_for("queued", "DeadlineExceeded", |a| {
                        condition(a, "FailureTarget") == Some(("True", "DeadlineExceeded"))
                    })
                    .await?;
                ensure(!phase(&exceeded).is_some_and(Phase::is_terminal), || {
                    format!("failed before the app ended: {:?}", exceeded.status)
                })?;
                let said = message(&exceeded);
                ensure(
                    said.contains("spec.startDeadlineSeconds (2 s) passed at"),
                    || format!("message {said:?}"),
                )?;
                let failed = world
                    .wait_for("queued", "Failed", |a| phase(a) == Some(Phase::Failed))
                    .await?;
                ensure(
                    condition(&failed, "Failed") == Some(("True", "DeadlineExceeded")),
                    || format!("conditions {:?}", failed.status),
                )?;
                let apps = world.emulator.apps();
                ensure(
                    apps.len() == 1 && apps[0].killed && apps[0].state == "KILLED",
                    || format!("apps {apps:?}"),
                )?;
                let records = attempts(&failed);
                ensure(
                    records.len() == 1 && records[0].killed_by == Some(KillCause::StartDeadline),
                    || format!("attempts {records:?}"),
                )
            })
        })
        .await
    })
}

pub fn an_active_deadline_counts_from_status_across_an_operator_restart() -> Result<(), Failed> {
    fixture::run("active-deadline", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world_mut(world, |world| {
            Box::pin(async move {
                let mut long = spec(0, FOREVER_MS, "SUCCEEDED");
                long.active_deadline_seconds = Some(4);
                world.create("long", long).await?;
                let running = world
                    .wait_for("long", "Running", |a| phase(a) == Some(Phase::Running))
                    .await?;
                let started = attempts(&running)
                    .first()
                    .map(|a| a.started_at.0)
                    .context("no attempt")?;
                world.stop_operator().await?;
                // The operator is down when the deadline passes: what counts is the time
                // in status, not when an operator started.
                let deadline = started + SignedDuration::from_secs(4);
                let until = Duration::try_from(deadline.duration_since(Timestamp::now()))
                    .unwrap_or_default();
                tokio::time::sleep(until + Duration::from_secs(1)).await;
                let still = world.aiapps().get("long").await?;
                ensure(phase(&still) == Some(Phase::Running), || {
                    format!("changed with no operator: {:?}", still.status)
                })?;
                world.start_operator(|_| {});
                let failed = world
                    .wait_for("long", "Failed", |a| phase(a) == Some(Phase::Failed))
                    .await?;
                let fired = condition_message(&failed, "FailureTarget");
                ensure(
                    fired.contains(&format!(
                        "spec.activeDeadlineSeconds (4 s) passed at {deadline}"
                    )),
                    || format!("FailureTarget says {fired:?}; the deadline was {deadline}"),
                )?;
                let apps = world.emulator.apps();
                ensure(apps.len() == 1 && apps[0].state == "KILLED", || {
                    format!("apps {apps:?}")
                })
            })
        })
        .await
    })
}

pub fn an_app_with_deadlines_far_ahead_is_followed_to_its_end_on_the_poll_schedule()
-> Result<(), Failed> {
    fixture::run("far-deadlines", |ctx| async move {
        // A ceiling longer than the test's patience: a poll or a retry put off to the
        // ceiling (or to a deadline far away) instead of when due never comes in time.
        let world = World::start_with(ctx.client, &ctx.namespace, Faults::default(), |c| {
            c.poll_ceiling = Duration::from_secs(600);
        })
        .await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut train = spec(300, 500, "SUCCEEDED");
                train.start_deadline_seconds = Some(3_600);
                train.active_deadline_seconds = Some(86_400);
                world.create("train", train).await?;
                // A retry is due 10 s after the failure, not at the ceiling either.
                let mut flaky = spec(0, 300, "FAILED");
                flaky.active_deadline_seconds = Some(86_400);
                flaky.backoff_limit = 1;
                world.create("flaky", flaky).await?;
                let done = world
                    .wait_for("train", "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                    .await?;
                ensure(
                    condition(&done, "Succeeded") == Some(("True", "Succeeded")),
                    || format!("conditions {:?}", done.status),
                )?;
                let failed = world
                    .wait_for("flaky", "Failed after its retry", |a| {
                        phase(a) == Some(Phase::Failed) && attempts(a).len() == 2
                    })
                    .await?;
                ensure(
                    condition(&failed, "Failed") == Some(("True", "AppFailed")),
                    || format!("conditions {:?}", failed.status),
                )?;
                let apps = world.emulator.apps();
                ensure(apps.len() == 3 && apps.iter().all(|a| !a.killed), || {
                    format!("apps {apps:?}")
                })
            })
        })
        .await
    })
}

pub fn a_failing_app_is_retried_up_to_the_limit_with_one_app_per_attempt() -> Result<(), Failed> {
    fixture::run("retries", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut flaky = spec(0, 100, "FAILED");
                flaky.backoff_limit = 1;
                world.create("flaky", flaky).await?;
                let waiting = world
                    .wait_for("flaky", "waiting to retry", |a| {
                        a.status
                            .as_ref()
                            .is_some_and(|s| s.next_attempt_at.is_some())
                    })
                    .await?;
                ensure(
                    phase(&waiting) == Some(Phase::Pending)
                        && condition(&waiting, "Submitted") == Some(("False", "Retrying")),
                    || format!("status {:?}", waiting.status),
                )?;
                let status = waiting.status.clone().context("no status")?;
                let retrying = status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Submitted")
                    .context("no Submitted")?;
                let at = status.next_attempt_at.context("no nextAttemptAt")?;
                ensure(
                    at.0.duration_since(retrying.last_transition_time.0)
                        == SignedDuration::from_secs(10),
                    || format!("the first retry waits 10 s: {at:?} after {retrying:?}"),
                )?;
                let failed = world
                    .wait_for("flaky", "Failed", |a| phase(a) == Some(Phase::Failed))
                    .await?;
                let records = attempts(&failed);
                let apps = world.emulator.apps();
                ensure(apps.len() == 2, || format!("one app per attempt: {apps:?}"))?;
                ensure(
                    records.len() == 2
                        && records.iter().all(|r| r.ended == Some(Phase::Failed))
                        && records[0].name_prefix != records[1].name_prefix,
                    || format!("attempts {records:?}"),
                )?;
                for record in &records {
                    let id = record.id.clone().context("an attempt without id")?;
                    let remote = apps.iter().find(|a| a.id == id);
                    ensure(
                        remote.is_some_and(|a| a.name_prefix == record.name_prefix),
                        || format!("attempt {record:?} has no app of its own: {apps:?}"),
                    )?;
                }
                ensure(
                    condition(&failed, "Failed") == Some(("True", "AppFailed"))
                        && failed.status.as_ref().and_then(|s| s.attempt) == Some(2),
                    || format!("status {:?}", failed.status),
                )
            })
        })
        .await
    })
}

pub fn an_app_killed_by_a_person_is_not_retried() -> Result<(), Failed> {
    fixture::run("killed-not-retried", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut train = spec(0, FOREVER_MS, "SUCCEEDED");
                train.backoff_limit = 3;
                world.create("train", train).await?;
                let running = world
                    .wait_for("train", "Running", |a| phase(a) == Some(Phase::Running))
                    .await?;
                let id = running.status.and_then(|s| s.id).context("no id")?;
                let person = DataForestClient::new(
                    ClientConfig {
                        endpoint: world.emulator.url(),
                        timeout: Duration::from_secs(10),
                        connect_timeout: Duration::from_secs(2),
                        retry: RetryPolicy::default(),
                    },
                    Credentials::new(ACCESS_KEY, SECRET_KEY),
                )?;
                person.kill(&id).await?;
                let killed = world
                    .wait_for("train", "Killed", |a| phase(a) == Some(Phase::Killed))
                    .await?;
                let apps = world.emulator.apps();
                ensure(apps.len() == 1, || {
                    format!("retried after a kill: {apps:?}")
                })?;
                ensure(
                    condition(&killed, "Failed") == Some(("True", "Killed")),
                    || format!("status {:?}", killed.status),
                )
            })
        })
        .await
    })
}
