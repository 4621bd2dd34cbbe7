//! Deletion end to end, for what docs/lifecycle.md#deletion promises beyond a kill that
//! takes effect at once: a kill Data Forest accepts while the app stays live holds the
//! AiApp until the app ends, is sent again 30 s later, and is given up past the deletion
//! bound; no credentials at all release with `KillSkipped`; an AiApp deleted while its
//! submit is in flight, or while paused, still has its app killed; deleting the whole
//! namespace kills its running app.

use std::time::Duration;

use anyhow::{Context, Result};
use dataforest_emulator::{Fault, Faults};
use dataforest_operator::controller::ControllerConfig;
use dataforest_operator::crd::{AiApp, FINALIZER, Phase};
use dataforest_operator::dataforest::Operation;
use dataforest_operator::plan::PAUSED_ANNOTATION;
use dataforest_testenv::{ControllerManager, locate_kube_controller_manager};
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::{Api, ResourceExt};
use libtest_mimic::Failed;
use tokio::time::Instant;

use crate::fixture::{self, TestContext, ensure};
use crate::world::{
    PATIENCE, SECRET_NAME, World, app_state, condition, phase, spec, with_world, with_world_mut,
};

/// An hour: the app runs until it is killed.
const LONG_MS: u64 = 3_600_000;

/// Whether Data Forest shows the app as not ended.
fn is_live(state: Option<&str>) -> bool {
    matches!(state, Some("ACCEPTED" | "RUNNING"))
}

/// Emulator (with `faults`), Secret, and an operator with `tweak` applied to its settings.
async fn world_with(
    ctx: &TestContext,
    faults: Faults,
    tweak: impl FnOnce(&mut ControllerConfig),
) -> Result<World> {
    World::start_with(ctx.client.clone(), &ctx.namespace, faults, tweak).await
}

/// Creates an AiApp whose app runs for an hour, waits for Running; returns the app id.
async fn create_running(world: &World, name: &str) -> Result<String> {
    world.create(name, spec(0, LONG_MS, "SUCCEEDED")).await?;
    let app = world
        .wait_for(name, "Running", |a| phase(a) == Some(Phase::Running))
        .await?;
    app.status
        .and_then(|s| s.id)
        .map(String::from)
        .context("Running without an id")
}

/// Deletes the AiApp `name` (the call returns once deletionTimestamp is set).
async fn delete(world: &World, name: &str) -> Result<Instant> {
    world
        .aiapps()
        .delete(name, &DeleteParams::default())
        .await?;
    Ok(Instant::now())
}

/// The Events recorded for the AiApp `name`.
async fn events_of(world: &World, name: &str) -> Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(world.client.clone(), &world.namespace);
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect())
}

fn reasons(events: &[Event]) -> Vec<String> {
    events.iter().filter_map(|e| e.reason.clone()).collect()
}

/// Waits until an Event with `reason` was recorded for the AiApp `name`, and returns it.
async fn wait_for_event(world: &World, name: &str, reason: &str) -> Result<Event> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let events = events_of(world, name).await?;
        let seen = reasons(&events);
        if let Some(event) = events
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))
        {
            return Ok(event);
        }
        ensure(Instant::now() < deadline, || {
            format!("no {reason} Event for {name} within {PATIENCE:?}; seen {seen:?}")
        })?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that `event` is a Warning whose message holds every one of `needles`.
fn ensure_warning_says(event: &Event, needles: &[&str]) -> Result<()> {
    let reason = event.reason.as_deref().unwrap_or_default();
    ensure(event.type_.as_deref() == Some("Warning"), || {
        format!("the {reason} Event is {:?}, not a Warning", event.type_)
    })?;
    let message = event.message.as_deref().unwrap_or_default();
    for needle in needles {
        ensure(message.contains(needle), || {
            format!("the {reason} Warning does not say {needle:?}: {message}")
        })?;
    }
    Ok(())
}

/// What was seen while a deleted AiApp went.
struct Followed {
    /// One entry per kill the emulator counted: when it was seen (from the deletion) and
    /// the app's state read just after, so a live state there was live at the kill.
    kills: Vec<(Duration, Option<String>)>,
    /// Samples in which a kill had been counted, the app showed live, and the AiApp was
    /// still there, deleted and holding the finalizer.
    held_while_live: usize,
    /// When the AiApp was seen gone, from the deletion.
    gone_after: Duration,
}

/// Samples every 100 ms until the deleted AiApp `name` is gone: fails if it is ever gone
/// while app `id` still shows live. The AiApp is read before the app, so "gone, then
/// live" means it went while the app was live; "there, then live" that it was there while
/// the app was live.
async fn follow_until_gone(
    world: &World,
    name: &str,
    id: &str,
    deleted: Instant,
    patience: Duration,
) -> Result<Followed> {
    let deadline = Instant::now() + patience;
    let mut kills = Vec::new();
    let mut held_while_live = 0;
    loop {
        let aiapp = world.aiapps().get_opt(name).await?;
        let total = world.emulator.stats().total(Operation::Kill);
        let state = app_state(world, id);
        while (kills.len() as u64) < total {
            kills.push((deleted.elapsed(), state.clone()));
        }
        match aiapp {
            None => {
                ensure(!is_live(state.as_deref()), || {
                    format!(
                        "{name} was released while app {id} still shows {state:?}, {:?} after the deletion",
                        deleted.elapsed()
                    )
                })?;
                return Ok(Followed {
                    kills,
                    held_while_live,
                    gone_after: deleted.elapsed(),
                });
            }
            Some(aiapp) => {
                let held = aiapp.metadata.deletion_timestamp.is_some()
                    && aiapp.finalizers().iter().any(|f| f == FINALIZER);
                if total >= 1 && held && is_live(state.as_deref()) {
                    held_while_live += 1;
                }
            }
        }
        ensure(Instant::now() < deadline, || {
            format!(
                "{name} was not gone within {patience:?} of its deletion; app {id} shows {state:?}, {total} kill(s) sent"
            )
        })?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A kill accepted while the app stays live for 4 s more: the AiApp stays (deleted,
/// finalizer held, `Killing` Event) while the app shows live, goes once the app shows
/// KILLED, and kill was sent once.
pub fn a_kill_accepted_while_the_app_stays_live_holds_the_aiapp_until_the_app_ends()
-> Result<(), Failed> {
    fixture::run("slow-kill", |ctx| async move {
        let faults = Faults {
            slow_kill: Fault::next(1).with_delay_ms(4_000),
            ..Faults::default()
        };
        let world = world_with(&ctx, faults, |_| {}).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let id = create_running(world, "lingering").await?;
                let deleted = delete(world, "lingering").await?;
                wait_for_event(world, "lingering", "Killing").await?;
                // The kill was accepted; the app is still live, and so is the AiApp.
                let aiapp = world.aiapps().get_opt("lingering").await?;
                let state = app_state(world, &id);
                ensure(is_live(state.as_deref()), || {
                    format!("app {id} shows {state:?} right after its slow kill was accepted")
                })?;
                let aiapp = aiapp.context("the AiApp went as soon as the kill was accepted")?;
                ensure(aiapp.finalizers().iter().any(|f| f == FINALIZER), || {
                    format!("the finalizer is gone: {:?}", aiapp.finalizers())
                })?;
                let slow = world.emulator.stats().count(Operation::Kill, "slowKill");
                ensure(slow == 1, || format!("{slow} slow kills, expected 1"))?;
                let followed =
                    follow_until_gone(world, "lingering", &id, deleted, PATIENCE).await?;
                ensure(followed.held_while_live >= 5, || {
                    format!(
                        "the AiApp was seen held while the killed app was live only {} times",
                        followed.held_while_live
                    )
                })?;
                ensure(followed.gone_after >= Duration::from_secs(3), || {
                    format!(
                        "gone {:?} after the deletion, before a 4 s slow kill could end",
                        followed.gone_after
                    )
                })?;
                let state = app_state(world, &id);
                ensure(state.as_deref() == Some("KILLED"), || {
                    format!("app {id} is {state:?} once the AiApp went")
                })?;
                let kills = world.emulator.stats().total(Operation::Kill);
                ensure(kills == 1, || {
                    format!("{kills} kill calls; one is due until 30 s have passed")
                })
            })
        })
        .await
    })
}

/// A kill accepted while the app stays live for 35 s: kill is sent again about 30 s
/// after the first, while the app still shows live, and not before; the AiApp goes once
/// the app ends.
pub fn a_kill_that_has_not_taken_effect_is_sent_again_after_30_seconds() -> Result<(), Failed> {
    fixture::run("re-kill", |ctx| async move {
        let faults = Faults {
            slow_kill: Fault::next(1).with_delay_ms(35_000),
            ..Faults::default()
        };
        // Past the 35 s, so the bound does not release the AiApp first.
        let world = world_with(&ctx, faults, |config| {
            config.deletion_bound = Duration::from_secs(120);
        })
        .await?;
        with_world(world, |world| {
            Box::pin(async move {
                let id = create_running(world, "stubborn").await?;
                let deleted = delete(world, "stubborn").await?;
                let followed =
                    follow_until_gone(world, "stubborn", &id, deleted, Duration::from_secs(90))
                        .await?;
                let kills = &followed.kills;
                ensure(kills.len() == 2, || {
                    format!("{} kill calls while the app stayed live 35 s: {kills:?}", kills.len())
                })?;
                let (first, _) = &kills[0];
                let (second, state) = &kills[1];
                let gap = second.saturating_sub(*first);
                ensure(gap >= Duration::from_secs(29), || {
                    format!("kill was sent again {gap:?} after the first, before 30 s")
                })?;
                ensure(is_live(state.as_deref()), || {
                    format!("the second kill came after the app ended ({state:?}), {gap:?} after the first")
                })?;
                ensure(followed.held_while_live >= 20, || {
                    format!(
                        "the AiApp was seen held while the app was live only {} times",
                        followed.held_while_live
                    )
                })?;
                let state = app_state(world, &id);
                ensure(state.as_deref() == Some("KILLED"), || {
                    format!("app {id} is {state:?} once the AiApp went")
                })?;
                let stats = world.emulator.stats();
                let (slow, repeat) = (
                    stats.count(Operation::Kill, "slowKill"),
                    stats.count(Operation::Kill, "ok"),
                );
                ensure(slow == 1 && repeat == 1, || {
                    format!("kill outcomes: {slow} slowKill, {repeat} ok; expected one of each")
                })
            })
        })
        .await
    })
}

/// A kill that does not take effect within the deletion bound (4 s here): the AiApp
/// is released after the bound with a `KillTimedOut` Warning that names the app, which
/// still runs.
pub fn past_the_deletion_bound_the_aiapp_is_released_with_kill_timed_out_naming_the_live_app()
-> Result<(), Failed> {
    fixture::run("deletion-bound", |ctx| async move {
        let faults = Faults {
            slow_kill: Fault::next(1).with_delay_ms(600_000),
            ..Faults::default()
        };
        let bound = Duration::from_secs(4);
        let world = world_with(&ctx, faults, |config| config.deletion_bound = bound).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let id = create_running(world, "bounded").await?;
                let deleted = delete(world, "bounded").await?;
                world.wait_gone("bounded").await?;
                let gone_after = deleted.elapsed();
                // deletionTimestamp has whole seconds: it may be up to 1 s before the call.
                ensure(gone_after >= bound - Duration::from_secs(1), || {
                    format!(
                        "released {gone_after:?} after the deletion, before the {bound:?} bound"
                    )
                })?;
                let event = wait_for_event(world, "bounded", "KillTimedOut").await?;
                ensure_warning_says(&event, &[&id, "dataforest-operator apps get"])?;
                let reasons = reasons(&events_of(world, "bounded").await?);
                ensure(reasons.iter().any(|r| r == "Killing"), || {
                    format!("no Killing Event before the time-out: {reasons:?}")
                })?;
                let state = app_state(world, &id);
                ensure(is_live(state.as_deref()), || {
                    format!("app {id} is {state:?}; its kill should still be on its way")
                })?;
                let kills = world.emulator.stats().total(Operation::Kill);
                ensure(kills == 1, || {
                    format!("{kills} kill calls within the bound")
                })
            })
        })
        .await
    })
}

/// No credentials at all (the Secret gone, and an operator restart forgot the last
/// good ones): the AiApp is released with a `KillSkipped` Warning naming the app and how
/// to find and kill it; the app still runs and no kill was sent.
pub fn an_operator_restarted_after_the_secret_went_releases_with_kill_skipped_and_leaves_the_app_running()
-> Result<(), Failed> {
    fixture::run("kill-skipped", |ctx| async move {
        let world = world_with(&ctx, Faults::default(), |_| {}).await?;
        with_world_mut(world, |world| {
            Box::pin(async move {
                let id = create_running(world, "forgotten").await?;
                world.stop_operator().await?;
                world.delete_secret(SECRET_NAME).await?;
                world.start_operator(|_| {});
                // The new operator saw the AiApp without its Secret.
                world
                    .wait_for("forgotten", "CredentialsNotFound", |a| {
                        condition(a, "Synced") == Some(("False", "CredentialsNotFound"))
                    })
                    .await?;
                delete(world, "forgotten").await?;
                world.wait_gone("forgotten").await?;
                let event = wait_for_event(world, "forgotten", "KillSkipped").await?;
                ensure_warning_says(
                    &event,
                    &[&format!("dataforest-operator apps kill {id} --yes")],
                )?;
                let state = app_state(world, &id);
                ensure(state.as_deref() == Some("RUNNING"), || {
                    format!("app {id} is {state:?}; nothing could kill it")
                })?;
                let kills = world.emulator.stats().total(Operation::Kill);
                ensure(kills == 0, || {
                    format!("{kills} kill calls without credentials")
                })
            })
        })
        .await
    })
}

/// Waits for `name` to show Submitting (with its marker), deletes it, and checks its app
/// does not exist yet: the submit is still on its way. Returns the name prefix.
async fn delete_while_submitting(world: &World, name: &str) -> Result<String> {
    world.create(name, spec(0, LONG_MS, "SUCCEEDED")).await?;
    let app = world
        .wait_for(name, "Submitting", |a| phase(a) == Some(Phase::Submitting))
        .await?;
    let prefix = app
        .status
        .and_then(|s| s.submission)
        .context("Submitting without a marker")?
        .name_prefix
        .to_string();
    delete(world, name).await?;
    let made = world.apps_with_prefix(&prefix);
    ensure(made.is_empty(), || {
        format!("the submit was answered before the deletion; the test cannot tell: {made:?}")
    })?;
    Ok(prefix)
}

/// After the deleted AiApp went: its one app ended KILLED and one submit was made.
fn ensure_one_killed_app(world: &World, prefix: &str) -> Result<()> {
    let apps = world.apps_with_prefix(prefix);
    let live: Vec<_> = apps
        .iter()
        .filter(|a| is_live(Some(a.state.as_str())))
        .collect();
    ensure(live.is_empty(), || {
        format!(
            "{} live app(s) left after the AiApp went: {live:?}",
            live.len()
        )
    })?;
    ensure(apps.len() == 1 && apps[0].state == "KILLED", || {
        format!("expected the one app the submit made, killed: {apps:?}")
    })?;
    let submits = world.emulator.stats().total(Operation::Submit);
    ensure(submits == 1, || format!("{submits} submit calls"))
}

/// Deleted while its submit waits 3 s for an answer: once the answer comes, the app
/// it made is killed and the AiApp goes.
pub fn deleting_an_aiapp_while_its_submit_is_in_flight_kills_the_app_the_submit_made()
-> Result<(), Failed> {
    fixture::run("delete-in-flight", |ctx| async move {
        let faults = Faults {
            latency_ms: 3_000,
            ..Faults::default()
        };
        let world = world_with(&ctx, faults, |_| {}).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let prefix = delete_while_submitting(world, "hasty").await?;
                // The submit under way keeps its latency; the calls after it need none.
                world.emulator.set_faults(Faults::default())?;
                world.wait_gone("hasty").await?;
                ensure_one_killed_app(world, &prefix)?;
                let reasons = reasons(&events_of(world, "hasty").await?);
                ensure(reasons.iter().any(|r| r == "Killing"), || {
                    format!("no Killing Event: {reasons:?}")
                })
            })
        })
        .await
    })
}

/// Deleted while its submit is on its way, and the submit's answer is lost: the
/// operator finds the app by listing, kills it, and the AiApp goes.
pub fn deleting_an_aiapp_whose_submit_answer_is_lost_finds_and_kills_its_app() -> Result<(), Failed>
{
    fixture::run("delete-lost-answer", |ctx| async move {
        let lost = Fault::next(1).on(&[Operation::Submit]);
        let faults = Faults {
            latency_ms: 3_000,
            lost_response: lost.clone(),
            ..Faults::default()
        };
        let world = world_with(&ctx, faults, |_| {}).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let prefix = delete_while_submitting(world, "unanswered").await?;
                world.emulator.set_faults(Faults {
                    lost_response: lost,
                    ..Faults::default()
                })?;
                world.wait_gone("unanswered").await?;
                let stats = world.emulator.stats();
                let dropped = stats.count(Operation::Submit, "lostResponse");
                ensure(dropped == 1, || {
                    format!("{dropped} lost submit answers; the test meant one: {stats:?}")
                })?;
                ensure_one_killed_app(world, &prefix)
            })
        })
        .await
    })
}

/// Paused does not cover deletion (docs/operations.md, `dataforest.dev/paused`: "not
/// affected ... Deletion"): a Running AiApp paused and then deleted still has its app
/// killed before it goes.
pub fn deleting_a_paused_running_aiapp_still_kills_its_app() -> Result<(), Failed> {
    fixture::run("delete-paused", |ctx| async move {
        let world = world_with(&ctx, Faults::default(), |_| {}).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let id = create_running(world, "frozen").await?;
                let pause =
                    serde_json::json!({"metadata": {"annotations": {PAUSED_ANNOTATION: "true"}}});
                world
                    .aiapps()
                    .patch("frozen", &PatchParams::default(), &Patch::Merge(&pause))
                    .await?;
                world
                    .wait_for("frozen", "Paused", |a| {
                        condition(a, "Synced") == Some(("False", "Paused"))
                    })
                    .await?;
                ensure(world.emulator.stats().total(Operation::Kill) == 0, || {
                    "killed before the deletion".into()
                })?;
                delete(world, "frozen").await?;
                world.wait_gone("frozen").await?;
                let state = app_state(world, &id);
                ensure(state.as_deref() == Some("KILLED"), || {
                    format!("app {id} of the paused AiApp is {state:?} after its deletion")
                })?;
                let reasons = reasons(&events_of(world, "frozen").await?);
                ensure(reasons.iter().any(|r| r == "Killing"), || {
                    format!("no Killing Event: {reasons:?}")
                })?;
                let kills = world.emulator.stats().total(Operation::Kill);
                ensure(kills == 1, || format!("{kills} kill calls"))
            })
        })
        .await
    })
}

/// A paused AiApp that was never submitted goes at once on deletion, without any
/// API call (nothing to kill: lifecycle.md, "never submitted ... No API call").
pub fn deleting_a_paused_never_submitted_aiapp_releases_it_without_an_api_call()
-> Result<(), Failed> {
    fixture::run("delete-paused-new", |ctx| async move {
        let world = world_with(&ctx, Faults::default(), |_| {}).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut app = AiApp::new("unborn", spec(0, LONG_MS, "SUCCEEDED"));
                app.metadata.annotations =
                    Some([(PAUSED_ANNOTATION.to_owned(), "true".to_owned())].into());
                world.aiapps().create(&Default::default(), &app).await?;
                world
                    .wait_for("unborn", "Paused", |a| {
                        condition(a, "Submitted") == Some(("False", "Paused"))
                    })
                    .await?;
                delete(world, "unborn").await?;
                world.wait_gone("unborn").await?;
                let stats = world.emulator.stats();
                let calls: u64 = [
                    Operation::Submit,
                    Operation::GetDetail,
                    Operation::GetList,
                    Operation::Kill,
                ]
                .into_iter()
                .map(|op| stats.total(op))
                .sum();
                ensure(calls == 0, || format!("{calls} API calls: {stats:?}"))?;
                let apps = world.emulator.apps();
                ensure(apps.is_empty(), || format!("apps were made: {apps:?}"))
            })
        })
        .await
    })
}

/// Deleting a whole namespace, as a team tearing down a project does: kube-controller-
/// manager's namespace controller (run for this test alone) deletes what the namespace
/// holds, its Secret included, in its own order; the running app is killed and the
/// namespace goes away.
pub fn deleting_the_namespace_kills_its_running_app_and_the_namespace_goes() -> Result<(), Failed> {
    fixture::run("delete-namespace", |ctx| async move {
        let program = tokio::task::spawn_blocking(locate_kube_controller_manager).await??;
        let manager = ControllerManager::start(&program, ctx.kubeconfig(), &["namespace"])?;
        let world = world_with(&ctx, Faults::default(), |_| {}).await?;
        let outcome = with_world(world, |world| {
            Box::pin(async move {
                world
                    .create("project", spec(0, LONG_MS, "SUCCEEDED"))
                    .await?;
                let running = world
                    .wait_for("project", "Running", |a| phase(a) == Some(Phase::Running))
                    .await?;
                let id = running.status.and_then(|s| s.id).context("no id")?;
                let namespaces: Api<Namespace> = Api::all(world.client.clone());
                namespaces
                    .delete(&world.namespace, &DeleteParams::default())
                    .await?;
                let gone =
                    await_condition(namespaces, &world.namespace, |ns: Option<&Namespace>| {
                        ns.is_none()
                    });
                tokio::time::timeout(PATIENCE, gone).await.map_err(|_| {
                    anyhow::anyhow!(
                        "namespace {} was not gone within {PATIENCE:?}",
                        world.namespace
                    )
                })??;
                let apps = world.emulator.apps();
                ensure(
                    apps.len() == 1 && apps[0].id == id.as_str() && apps[0].killed,
                    || format!("app {id} was not killed, or not alone: {apps:?}"),
                )?;
                ensure(!is_live(app_state(world, &id).as_deref()), || {
                    format!("app {id} still runs: {apps:?}")
                })
            })
        })
        .await;
        manager.stop_after(outcome)
    })
}
