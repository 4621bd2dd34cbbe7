//! The controller end to end: AiApps on a real apiserver become apps in the emulator,
//! with status that stays true, deletion that kills, and never a duplicate app.

use std::time::Duration;

use anyhow::{Context, Result};
use dataforest_emulator::{Fault, Faults};
use dataforest_operator::crd::{AiApp, DeletionPolicy, FINALIZER, Phase};
use dataforest_operator::dataforest::Operation;
use k8s_openapi::api::core::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use libtest_mimic::Failed;

use crate::fixture::{self, ensure};
use crate::world::{
    OPERATOR_LEASE, SECRET_KEY, SECRET_NAME, World, app_state, condition, phase, spec,
    wait_for_leader, with_world,
};

async fn event_reasons(world: &World, name: &str) -> Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(world.client.clone(), &world.namespace);
    let list = events.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| e.reason)
        .collect())
}

/// Waits until an Event with `reason` was recorded for the AiApp `name`.
pub async fn wait_for_event(world: &World, name: &str, reason: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + crate::world::PATIENCE;
    loop {
        let reasons = event_reasons(world, name).await?;
        if reasons.iter().any(|r| r == reason) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("no {reason} Event for {name}; seen {reasons:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn an_aiapp_runs_to_succeeded_with_its_status_filled_in() -> Result<(), Failed> {
    fixture::run("happy-path", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                world.create("train", spec(200, 300, "SUCCEEDED")).await?;
                let app = world
                    .wait_for("train", "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                    .await?;
                let status = app.status.clone().context("no status")?;
                ensure(status.state.as_deref() == Some("FINISHED"), || {
                    format!("state {:?}", status.state)
                })?;
                ensure(status.final_status.as_deref() == Some("SUCCEEDED"), || {
                    format!("{:?}", status.final_status)
                })?;
                ensure(
                    status.started_at.is_some() && status.finished_at.is_some(),
                    || "times missing".into(),
                )?;
                ensure(status.id.as_ref().is_some_and(|id| id.len() == 22), || {
                    format!("id {:?}", status.id)
                })?;
                ensure(
                    status.containers.iter().any(|c| c.log_url.is_some()),
                    || format!("no container log URL: {:?}", status.containers),
                )?;
                ensure(
                    condition(&app, "Succeeded") == Some(("True", "Succeeded")),
                    || format!("conditions {:?}", status.conditions),
                )?;
                ensure(
                    status.observed_generation == app.metadata.generation,
                    || "observedGeneration".into(),
                )?;
                ensure(app.finalizers().iter().any(|f| f == FINALIZER), || {
                    "no finalizer".into()
                })?;
                let prefix = status
                    .submission
                    .as_ref()
                    .context("no marker")?
                    .name_prefix
                    .clone();
                ensure(world.apps_with_prefix(&prefix).len() == 1, || {
                    "not exactly one app".into()
                })?;
                // Events are published just after the status write that they describe.
                for reason in ["Submitted", "Running", "Succeeded"] {
                    wait_for_event(world, "train", reason).await?;
                }
                // Finished: neither a change of the AiApp nor time brings an API call,
                // over three times the longest poll interval (1 s).
                let calls = |world: &World| {
                    let stats = world.emulator.stats();
                    Operation::ALL.map(|op| stats.total(op))
                };
                let before = calls(world);
                let patch = serde_json::json!({"metadata": {"labels": {"looked-at": "yes"}}});
                world
                    .aiapps()
                    .patch("train", &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                let after = calls(world);
                ensure(before == after, || {
                    format!("a finished AiApp made API calls: {before:?} -> {after:?}")
                })
            })
        })
        .await
    })
}

/// Waits until the emulator answered `more` calls of `operation` beyond `since`.
async fn wait_for_calls(world: &World, operation: Operation, since: u64, more: u64) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + crate::world::PATIENCE;
    loop {
        let seen = world.emulator.stats().total(operation);
        if seen >= since + more {
            return Ok(seen);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {} of {more} {} calls after {since}",
            seen - since,
            operation.as_str()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn polls_of_a_running_app_that_did_not_change_write_nothing() -> Result<(), Failed> {
    fixture::run("steady-running", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                world.create("long", spec(0, 120_000, "SUCCEEDED")).await?;
                world
                    .wait_for("long", "Running", |a| phase(a) == Some(Phase::Running))
                    .await?;
                // One poll after Running settles what the first one may still have to add.
                let polled = world.emulator.stats().total(Operation::GetDetail);
                let polled = wait_for_calls(world, Operation::GetDetail, polled, 1).await?;
                let before = world.aiapps().get("long").await?;
                // The app runs on and only its run time grows: nothing a person or Argo CD
                // should see as a change of the AiApp.
                wait_for_calls(world, Operation::GetDetail, polled, 4).await?;
                let after = world.aiapps().get("long").await?;
                ensure(
                    after.resource_version() == before.resource_version(),
                    || {
                        let json =
                            |app: &AiApp| serde_json::to_string(&app.status).unwrap_or_default();
                        format!(
                            "status rewritten by polls that found nothing new: {} became {}",
                            json(&before),
                            json(&after)
                        )
                    },
                )?;
                ensure(phase(&after) == Some(Phase::Running), || {
                    format!("phase {:?}", phase(&after))
                })
            })
        })
        .await
    })
}

pub fn running_apps_of_one_account_polled_often_share_one_listing_a_second() -> Result<(), Failed> {
    const APPS: usize = 20;
    fixture::run("listed-polls", |ctx| async move {
        // From one poll a second on, so that the shared listing serves every poll here.
        let world = World::start_with(ctx.client, &ctx.namespace, Faults::default(), |config| {
            config.polls_for_listing = 1
        })
        .await?;
        with_world(world, |world| {
            Box::pin(async move {
                for n in 0..APPS {
                    world
                        .create(&format!("run-{n}"), spec(0, 10_000, "SUCCEEDED"))
                        .await?;
                }
                world
                    .wait_for_count(APPS, "Running", |a| phase(a) == Some(Phase::Running))
                    .await?;
                let stats = world.emulator.stats();
                let (details, lists) = (
                    stats.total(Operation::GetDetail),
                    stats.total(Operation::GetList),
                );
                let ended = world
                    .wait_for_count(APPS, "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                    .await?;
                let stats = world.emulator.stats();
                let details = stats.total(Operation::GetDetail) - details;
                let lists = stats.total(Operation::GetList) - lists;
                // Polled one by one, 20 apps running 10 s on a 1 s ceiling took 184 getDetail
                // calls in one run; listed, 38: a few each, the polls before the listing
                // takes over and one to read how each app ended.
                ensure(details <= 4 * APPS as u64 && lists >= 1, || {
                    format!("{details} getDetail and {lists} getList calls while {APPS} apps ran")
                })?;
                for app in &ended {
                    let status = app.status.clone().context("no status")?;
                    ensure(
                        status.state.as_deref() == Some("FINISHED")
                            && status.elapsed_millis.is_some_and(|ms| ms >= 10_000)
                            && !status.containers.is_empty(),
                        || format!("{}: status {status:?}", app.name_any()),
                    )?;
                }
                Ok(())
            })
        })
        .await
    })
}

pub fn while_the_listing_serves_polls_a_deadline_and_a_suspend_still_kill_their_apps()
-> Result<(), Failed> {
    const APPS: usize = 10;
    fixture::run("listed-kills", |ctx| async move {
        let world = World::start_with(ctx.client, &ctx.namespace, Faults::default(), |config| {
            config.polls_for_listing = 1
        })
        .await?;
        with_world(world, |world| {
            Box::pin(async move {
                let forever = || spec(0, 3_600_000, "SUCCEEDED");
                for n in 0..APPS {
                    world.create(&format!("run-{n}"), forever()).await?;
                }
                let mut timed = forever();
                timed.active_deadline_seconds = Some(8);
                world.create("timed", timed).await?;
                world.create("held", forever()).await?;
                world
                    .wait_for_count(APPS + 2, "Running", |a| phase(a) == Some(Phase::Running))
                    .await?;
                // The listing serves the polls before the suspend and the deadline come.
                let lists = world.emulator.stats().total(Operation::GetList);
                wait_for_calls(world, Operation::GetList, lists, 2).await?;
                world
                    .aiapps()
                    .patch(
                        "held",
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({"spec": {"suspend": true}})),
                    )
                    .await?;
                let suspended = world
                    .wait_for("held", "Suspended", |a| phase(a) == Some(Phase::Suspended))
                    .await?;
                let failed = world
                    .wait_for("timed", "Failed", |a| phase(a) == Some(Phase::Failed))
                    .await?;
                ensure(
                    condition(&failed, "Failed") == Some(("True", "DeadlineExceeded")),
                    || format!("timed: {:?}", failed.status),
                )?;
                for app in [&suspended, &failed] {
                    let id = app.status.as_ref().and_then(|s| s.id.as_deref());
                    let id = id.context("no id")?;
                    ensure(app_state(world, id).as_deref() == Some("KILLED"), || {
                        format!("{}: app {id} is {:?}", app.name_any(), app_state(world, id))
                    })?;
                }
                let live = world
                    .emulator
                    .apps()
                    .iter()
                    .filter(|a| a.state == "RUNNING")
                    .count();
                ensure(live == APPS, || {
                    format!("{live} apps running, {APPS} expected")
                })
            })
        })
        .await
    })
}

pub fn a_failing_app_ends_failed() -> Result<(), Failed> {
    fixture::run("failing-app", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                world.create("broken", spec(100, 100, "FAILED")).await?;
                let app = world
                    .wait_for("broken", "Failed", |a| phase(a) == Some(Phase::Failed))
                    .await?;
                ensure(
                    condition(&app, "Failed") == Some(("True", "AppFailed")),
                    || format!("conditions {:?}", app.status),
                )
            })
        })
        .await
    })
}

/// Creates a long-running AiApp, waits for Running, deletes it, and returns the app id.
async fn delete_running(world: &World, name: &str, policy: DeletionPolicy) -> Result<String> {
    let mut spec = spec(0, 3_600_000, "SUCCEEDED");
    spec.deletion_policy = policy;
    world.create(name, spec).await?;
    let app = world
        .wait_for(name, "Running", |a| phase(a) == Some(Phase::Running))
        .await?;
    let id = app.status.and_then(|s| s.id).context("no id")?.to_string();
    world
        .aiapps()
        .delete(name, &DeleteParams::default())
        .await?;
    world.wait_gone(name).await?;
    Ok(id)
}

pub fn deleting_an_aiapp_with_kill_kills_its_running_app() -> Result<(), Failed> {
    fixture::run("delete-kill", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let id = delete_running(world, "doomed", DeletionPolicy::Kill).await?;
                let state = app_state(world, &id);
                ensure(state.as_deref() == Some("KILLED"), || {
                    format!("app {id} is {state:?}")
                })
            })
        })
        .await
    })
}

pub fn deleting_an_aiapp_with_orphan_leaves_its_app_running() -> Result<(), Failed> {
    fixture::run("delete-orphan", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let id = delete_running(world, "kept", DeletionPolicy::Orphan).await?;
                let state = app_state(world, &id);
                ensure(state.as_deref() == Some("RUNNING"), || {
                    format!("app {id} is {state:?}")
                })
            })
        })
        .await
    })
}

pub fn deleting_an_aiapp_after_its_secret_is_gone_still_kills_the_app() -> Result<(), Failed> {
    fixture::run("delete-no-secret", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                world
                    .create("late", spec(0, 3_600_000, "SUCCEEDED"))
                    .await?;
                let app = world
                    .wait_for("late", "Running", |a| phase(a) == Some(Phase::Running))
                    .await?;
                let id = app.status.and_then(|s| s.id).context("no id")?.to_string();
                world.delete_secret(SECRET_NAME).await?;
                world
                    .aiapps()
                    .delete("late", &DeleteParams::default())
                    .await?;
                world.wait_gone("late").await?;
                let state = app_state(world, &id);
                ensure(state.as_deref() == Some("KILLED"), || {
                    format!("app {id} is {state:?}")
                })
            })
        })
        .await
    })
}

pub fn an_aiapp_waits_for_its_missing_secret_and_submits_once_it_exists() -> Result<(), Failed> {
    fixture::run("secret-later", |ctx| async move {
        let mut world =
            World::without_operator(ctx.client, &ctx.namespace, Faults::default()).await?;
        world.start_operator(|_| {});
        with_world(world, |world| {
            Box::pin(async move {
                world.create("patient", spec(100, 100, "SUCCEEDED")).await?;
                let app = world
                    .wait_for("patient", "Pending", |a| {
                        condition(a, "Submitted").is_some_and(|c| c.1 == "CredentialsNotFound")
                    })
                    .await?;
                let message = app.status.and_then(|s| s.message).unwrap_or_default();
                ensure(message.contains(SECRET_NAME), || {
                    format!("the message names no Secret: {message}")
                })?;
                ensure(world.emulator.apps().is_empty(), || {
                    "submitted without credentials".into()
                })?;
                world.create_secret(SECRET_NAME, SECRET_KEY).await?;
                world
                    .wait_for("patient", "Succeeded", |a| {
                        phase(a) == Some(Phase::Succeeded)
                    })
                    .await?;
                Ok(())
            })
        })
        .await
    })
}

pub fn wrong_credentials_park_the_aiapp_until_its_secret_is_fixed() -> Result<(), Failed> {
    fixture::run("wrong-credentials", |ctx| async move {
        let mut world =
            World::without_operator(ctx.client, &ctx.namespace, Faults::default()).await?;
        world
            .create_secret(SECRET_NAME, "not-the-secret-key")
            .await?;
        world.start_operator(|_| {});
        with_world(world, |world| {
            Box::pin(async move {
                world.create("denied", spec(100, 100, "SUCCEEDED")).await?;
                let app = world
                    .wait_for("denied", "Unauthorized", |a| {
                        condition(a, "Submitted").is_some_and(|c| c.1 == "Unauthorized")
                    })
                    .await?;
                ensure(phase(&app) == Some(Phase::Pending), || {
                    format!("phase {:?}", phase(&app))
                })?;
                // Touch the AiApp without changing what matters; a parked AiApp stays quiet.
                for n in 0..5 {
                    let patch =
                        serde_json::json!({"metadata": {"labels": {"touched": n.to_string()}}});
                    world
                        .aiapps()
                        .patch("denied", &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // Quiet for three times the longest back-off (poll ceiling 1 s).
                tokio::time::sleep(Duration::from_secs(3)).await;
                let submits = world.emulator.stats().total(Operation::Submit);
                ensure(submits == 1, || {
                    format!("{submits} submit calls for one parked AiApp")
                })?;
                // The Secret fixed: the parked AiApp goes on by itself, once.
                world.delete_secret(SECRET_NAME).await?;
                world.create_secret(SECRET_NAME, SECRET_KEY).await?;
                world
                    .wait_for("denied", "Succeeded", |a| {
                        phase(a) == Some(Phase::Succeeded)
                    })
                    .await?;
                let apps = world.emulator.apps();
                ensure(apps.len() == 1, || format!("{} apps: {apps:?}", apps.len()))
            })
        })
        .await
    })
}

pub fn throttling_and_server_errors_are_retried_and_the_app_still_succeeds() -> Result<(), Failed> {
    fixture::run("retries", |ctx| async move {
        let faults = Faults {
            throttle: Fault::next(3).on(&[Operation::GetDetail]),
            error_before: Fault::next(1).on(&[Operation::Submit]),
            ..Faults::default()
        };
        let world = World::start(ctx.client, &ctx.namespace, faults).await?;
        with_world(world, |world| {
            Box::pin(async move {
                world.create("sturdy", spec(100, 100, "SUCCEEDED")).await?;
                let app = world
                    .wait_for("sturdy", "Succeeded", |a| {
                        phase(a) == Some(Phase::Succeeded)
                    })
                    .await?;
                let prefix = app
                    .status
                    .and_then(|s| s.submission)
                    .context("no marker")?
                    .name_prefix;
                let apps = world.apps_with_prefix(&prefix);
                ensure(apps.len() == 1, || {
                    format!("{} apps for one AiApp: {apps:?}", apps.len())
                })
            })
        })
        .await
    })
}

async fn assert_one_app_after(
    faults: Faults,
    test: &str,
    ctx: crate::fixture::TestContext,
) -> Result<()> {
    let world = World::start(ctx.client, &ctx.namespace, faults).await?;
    let test = test.to_owned();
    with_world(world, |world| {
        Box::pin(async move {
            world.create(&test, spec(100, 100, "SUCCEEDED")).await?;
            let app = world
                .wait_for(&test, "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                .await?;
            let status = app.status.context("no status")?;
            let prefix = status.submission.context("no marker")?.name_prefix;
            let apps = world.apps_with_prefix(&prefix);
            ensure(apps.len() == 1, || {
                format!("{} apps for one AiApp: {apps:?}", apps.len())
            })?;
            ensure(status.id.as_deref() == Some(apps[0].id.as_str()), || {
                "status names another app".into()
            })
        })
    })
    .await
}

pub fn a_lost_submit_response_never_produces_a_second_app() -> Result<(), Failed> {
    fixture::run("lost-response", |ctx| async move {
        let faults = Faults {
            lost_response: Fault::next(1).on(&[Operation::Submit]),
            ..Faults::default()
        };
        assert_one_app_after(faults, "lost", ctx).await
    })
}

pub fn a_server_error_after_the_app_was_created_never_produces_a_second_app() -> Result<(), Failed>
{
    fixture::run("error-after-create", |ctx| async move {
        let faults = Faults {
            error_after: Fault::next(1).on(&[Operation::Submit]),
            ..Faults::default()
        };
        assert_one_app_after(faults, "after", ctx).await
    })
}

pub fn with_a_listing_lag_the_grace_period_prevents_a_duplicate() -> Result<(), Failed> {
    fixture::run("listing-lag", |ctx| async move {
        let faults = Faults {
            lost_response: Fault::next(1).on(&[Operation::Submit]),
            listing_lag_ms: 1_500,
            ..Faults::default()
        };
        assert_one_app_after(faults, "lagged", ctx).await
    })
}

pub fn a_paused_aiapp_makes_no_api_calls() -> Result<(), Failed> {
    fixture::run("paused", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
 Box::pin(async move {
            let mut app = AiApp::new("held", spec(100, 100, "SUCCEEDED"));
            app.metadata.annotations =
                Some([("dataforest.dev/paused".to_owned(), "true".to_owned())].into());
            world.aiapps().create(&Default::default(), &app).await?;
            world
                .wait_for("held", "Paused", |a| {
                    condition(a, "Submitted") == Some(("False", "Paused"))
                })
                .await?;
            let calls: u64 = [
                Operation::Submit,
                Operation::GetDetail,
                Operation::GetList,
                Operation::Kill,
            ]
            .into_iter()
            .map(|op| world.emulator.stats().total(op))
            .sum();
            ensure(calls == 0, || {
                format!("{calls} API calls for a paused AiApp")
            })?;
            let unpause =
                serde_json::json!({"metadata": {"annotations": {"dataforest.dev/paused": null}}});
            world
                .aiapps()
                .patch("held", &PatchParams::default(), &Patch::Merge(&unpause))
                .await?;
            world
                .wait_for("held", "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                .await?;
            Ok(())
})
})
.await
    })
}

pub fn two_aiapps_sharing_a_prefix_whose_answers_are_lost_wait_for_a_person_and_adopt_id_resolves_them()
-> Result<(), Failed> {
    fixture::run("ambiguous", |ctx| async move {
        // Both answers are lost, and a listing lag keeps recovery from seeing either app
        // until both exist: then each AiApp matches two apps and must not guess.
        let faults = Faults {
            lost_response: Fault::next(2).on(&[Operation::Submit]),
            listing_lag_ms: 2_000,
            ..Faults::default()
        };
        let world = World::start(ctx.client, &ctx.namespace, faults).await?;
        with_world(world, |world| {
 Box::pin(async move {
            for name in ["twin-a", "twin-b"] {
                let mut spec = spec(100, 100, "SUCCEEDED");
                spec.name_prefix = Some("shared".into());
                world.create(name, spec).await?;
            }
            for name in ["twin-a", "twin-b"] {
                let app = world.wait_for(name, "Unknown", |a| phase(a) == Some(Phase::Unknown)).await?;
                ensure(condition(&app, "Synced") == Some(("False", "SubmissionAmbiguous")), || {
                    format!("{name}: {:?}", app.status)
                })?;
            }
            let apps = world.apps_with_prefix("shared");
            ensure(apps.len() == 2, || format!("{} apps, expected the two lost ones", apps.len()))?;
            // A person decides which app is whose.
            for (name, app) in ["twin-a", "twin-b"].into_iter().zip(&apps) {
                let patch = serde_json::json!({"metadata": {"annotations": {"dataforest.dev/adopt-id": app.id}}});
                world.aiapps().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
            for (name, app) in ["twin-a", "twin-b"].into_iter().zip(&apps) {
                let done = world.wait_for(name, "Succeeded", |a| phase(a) == Some(Phase::Succeeded)).await?;
                let id = done.status.and_then(|s| s.id);
                ensure(id.as_deref() == Some(app.id.as_str()), || format!("{name} holds {id:?}"))?;
            }
            let after = world.apps_with_prefix("shared").len();
            ensure(after == 2, || format!("{after} apps after resolving; nothing may be submitted again"))
})
})
.await
    })
}

fn has_id(app: &AiApp) -> bool {
    app.status.as_ref().is_some_and(|s| s.id.is_some())
}

/// Every AiApp holds a distinct id, and the emulator holds exactly those apps.
pub fn assert_one_app_each(world: &World, aiapps: &[AiApp], expected: usize) -> Result<()> {
    let mut ids: Vec<String> = aiapps
        .iter()
        .filter_map(|a| Some(a.status.as_ref()?.id.as_deref()?.to_owned()))
        .collect();
    ids.sort();
    ids.dedup();
    let mut held: Vec<String> = world.emulator.apps().into_iter().map(|a| a.id).collect();
    held.sort();
    ensure(ids.len() == expected, || {
        format!("{} distinct ids in status, expected {expected}", ids.len())
    })?;
    ensure(held == ids, || {
        format!(
            "the emulator holds {} apps, status names {}",
            held.len(),
            ids.len()
        )
    })
}

pub fn an_operator_killed_in_the_middle_of_50_submissions_and_restarted_leaves_exactly_50_apps()
-> Result<(), Failed> {
    fixture::run("crash-restart", |ctx| async move {
        let world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        world.create_secret(SECRET_NAME, SECRET_KEY).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut first =
                    crate::world::OperatorProcess::start(world, ctx.kubeconfig(), "op-1")?;
                for n in 0..50 {
                    world
                        .create(&format!("job-{n:02}"), spec(0, 3_600_000, "SUCCEEDED"))
                        .await?;
                }
                world.wait_for_count(10, "submitted", has_id).await?;
                first.crash()?;
                let _second =
                    crate::world::OperatorProcess::start(world, ctx.kubeconfig(), "op-2")?;
                let running = |a: &AiApp| phase(a) == Some(Phase::Running);
                let aiapps = world.wait_for_count(50, "Running", running).await?;
                assert_one_app_each(world, &aiapps, 50)
            })
        })
        .await
    })
}

pub fn two_operators_during_a_rolling_update_submit_each_aiapp_once() -> Result<(), Failed> {
    fixture::run("rolling-update", |ctx| async move {
        let world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        world.create_secret(SECRET_NAME, SECRET_KEY).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut old =
                    crate::world::OperatorProcess::start(world, ctx.kubeconfig(), "old-pod")?;
                // As in a rolling update: the old pod leads when the new one starts.
                wait_for_leader(&ctx.client, &ctx.namespace, OPERATOR_LEASE, "old-pod").await?;
                let _new =
                    crate::world::OperatorProcess::start(world, ctx.kubeconfig(), "new-pod")?;
                for n in 0..20 {
                    world
                        .create(&format!("job-{n:02}"), spec(0, 3_600_000, "SUCCEEDED"))
                        .await?;
                }
                world.wait_for_count(5, "submitted", has_id).await?;
                // The one stopped is the one that led through the first submits.
                wait_for_leader(&ctx.client, &ctx.namespace, OPERATOR_LEASE, "old-pod").await?;
                let clean = old.terminate().await?;
                ensure(clean, || {
                    format!(
                        "the old pod did not exit cleanly; see {}",
                        old.log.display()
                    )
                })?;
                let running = |a: &AiApp| phase(a) == Some(Phase::Running);
                let aiapps = world.wait_for_count(20, "Running", running).await?;
                wait_for_leader(&ctx.client, &ctx.namespace, OPERATOR_LEASE, "new-pod").await?;
                assert_one_app_each(world, &aiapps, 20)
            })
        })
        .await
    })
}

pub fn an_operator_watching_a_list_of_namespaces_leaves_other_namespaces_alone()
-> Result<(), Failed> {
    fixture::run("namespace-list", |ctx| async move {
        let mut world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        world.create_secret(SECRET_NAME, SECRET_KEY).await?;
        let outside = format!("{}-outside", ctx.namespace);
        let namespace: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": outside}}))?;
        Api::all(ctx.client.clone())
            .create(&Default::default(), &namespace)
            .await?;
        let (mine, theirs) = (world.namespace.clone(), outside.clone());
        world.start_operator(move |config| config.namespaces = vec![mine, "absent".to_owned()]);
        with_world(world, |world| {
            Box::pin(async move {
                let foreign: Api<AiApp> = Api::namespaced(ctx.client.clone(), &theirs);
                foreign
                    .create(
                        &Default::default(),
                        &AiApp::new("foreign", spec(100, 100, "SUCCEEDED")),
                    )
                    .await?;
                world.create("local", spec(100, 100, "SUCCEEDED")).await?;
                world
                    .wait_for("local", "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                    .await?;
                let foreign = foreign.get("foreign").await?;
                ensure(
                    foreign.status.is_none() && foreign.finalizers().is_empty(),
                    || {
                        format!(
                            "the operator touched an AiApp outside its namespaces: {:?}",
                            foreign.status
                        )
                    },
                )?;
                ensure(world.emulator.apps().len() == 1, || {
                    "an app was submitted for the foreign AiApp".into()
                })
            })
        })
        .await
    })
}

pub fn a_malformed_adopt_id_is_refused_and_nothing_is_submitted() -> Result<(), Failed> {
    fixture::run("bad-adopt-id", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut app = AiApp::new("typo", spec(100, 100, "SUCCEEDED"));
                app.metadata.annotations = Some(
                    [(
                        "dataforest.dev/adopt-id".to_owned(),
                        "not-an-id!".to_owned(),
                    )]
                    .into(),
                );
                world.aiapps().create(&Default::default(), &app).await?;
                let app = world
                    .wait_for("typo", "refused", |a| {
                        condition(a, "Synced") == Some(("False", "InvalidAnnotation"))
                    })
                    .await?;
                ensure(phase(&app) == Some(Phase::Pending), || {
                    format!("phase {:?}", phase(&app))
                })?;
                let submits = world.emulator.stats().total(Operation::Submit);
                ensure(submits == 0, || {
                    format!("{submits} submits despite a malformed adopt-id")
                })
            })
        })
        .await
    })
}

pub fn an_adopted_id_that_data_forest_does_not_know_ends_unknown_after_the_grace_period()
-> Result<(), Failed> {
    fixture::run("adopt-unknown-id", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut app = AiApp::new("ghost", spec(100, 100, "SUCCEEDED"));
                let id = "AAAAAAAAAAAAAAAAAAAAAA";
                app.metadata.annotations =
                    Some([("dataforest.dev/adopt-id".to_owned(), id.to_owned())].into());
                world.aiapps().create(&Default::default(), &app).await?;
                let app = world
                    .wait_for("ghost", "Unknown", |a| phase(a) == Some(Phase::Unknown))
                    .await?;
                ensure(
                    condition(&app, "Synced") == Some(("False", "AppNotFound")),
                    || format!("{:?}", app.status),
                )?;
                // Parked: the polls stop once it is Unknown.
                let polls = world.emulator.stats().total(Operation::GetDetail);
                for n in 0..5 {
                    let patch =
                        serde_json::json!({"metadata": {"labels": {"touched": n.to_string()}}});
                    world
                        .aiapps()
                        .patch("ghost", &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let later = world.emulator.stats().total(Operation::GetDetail);
                ensure(later == polls, || {
                    format!("{} more getDetail calls after Unknown", later - polls)
                })?;
                ensure(world.emulator.stats().total(Operation::Submit) == 0, || {
                    "submitted".into()
                })
            })
        })
        .await
    })
}

/// `/metrics` of the real binary, scraped as Prometheus would while it works: the one
/// submit and the reconciles it made are counted, in the OpenMetrics text format.
pub fn a_running_operator_counts_its_work_on_metrics() -> Result<(), Failed> {
    fixture::run("metrics", |ctx| async move {
        let world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        world.create_secret(SECRET_NAME, SECRET_KEY).await?;
        with_world(world, move |world| {
            Box::pin(async move {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                let address = format!("127.0.0.1:{port}");
                let _operator = crate::world::OperatorProcess::start_with(
                    world,
                    ctx.kubeconfig(),
                    "op-metrics",
                    &[("METRICS_ADDRESS", &address)],
                )?;
                world.create("counted", spec(0, 0, "SUCCEEDED")).await?;
                world
                    .wait_for("counted", "Succeeded", |a| {
                        phase(a) == Some(Phase::Succeeded)
                    })
                    .await?;
                let submitted = |line: &&str| {
                    line.starts_with("dataforest_operator_api_calls_total{")
                        && line.contains(r#"operation="submit""#)
                        && line.contains(r#"outcome="Success""#)
                };
                let http = reqwest::Client::new();
                let url = format!("http://{address}/metrics");
                let deadline = tokio::time::Instant::now() + crate::world::PATIENCE;
                let text = loop {
                    let text = match http.get(&url).send().await {
                        Ok(answer) => answer.text().await.unwrap_or_default(),
                        Err(_) => String::new(),
                    };
                    if text.lines().any(|l| submitted(&l)) {
                        break text;
                    }
                    anyhow::ensure!(
                        tokio::time::Instant::now() < deadline,
                        "{url} never counted the submit: {text}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                };
                let submit_line = text.lines().find(submitted).unwrap_or_default();
                ensure(submit_line.ends_with(" 1"), || {
                    format!("one submit, counted as: {submit_line}")
                })?;
                ensure(text.ends_with("# EOF\n"), || "not OpenMetrics text".into())?;
                let reconciles = text
                    .lines()
                    .find(|l| l.starts_with("dataforest_operator_reconciles_total "))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|n| n.parse::<f64>().ok())
                    .unwrap_or(0.0);
                ensure(reconciles >= 1.0, || {
                    format!("reconciles counted: {reconciles}")
                })
            })
        })
        .await
    })
}
