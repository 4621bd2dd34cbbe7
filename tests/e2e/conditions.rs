//! What a person or a tool waits on, on the real apiserver and the emulator: `status.reason`,
//! `kubectl wait --for=condition=Finished` whichever way the app ends, and kstatus's
//! `Reconciling` and `Stalled`.

use anyhow::Result;
use dataforest_emulator::Faults;
use dataforest_operator::crd::{AiApp, Phase};
use libtest_mimic::Failed;

use crate::fixture::{self, TestContext, ensure};
use crate::world::{World, condition, phase, spec, with_world};

/// An hour: longer than any test.
const FOREVER_MS: u64 = 3_600_000;

fn reason(app: &AiApp) -> Option<String> {
    app.status
        .as_ref()
        .and_then(|s| s.reason.as_deref().map(str::to_owned))
}

/// Runs kubectl off the async runtime and returns its stdout, or its stderr as the error.
async fn kubectl(ctx: &TestContext, args: &[&str]) -> Result<String> {
    let mut command = ctx.kubectl();
    command.args(args);
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    anyhow::ensure!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn kubectl_wait_for_finished_ends_whichever_way_the_app_ends() -> Result<(), Failed> {
    fixture::run("wait-finished", |ctx| async move {
        let world = World::start(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        let namespace = ctx.namespace.clone();
        with_world(world, move |world| {
            Box::pin(async move {
                world.create("good", spec(0, 300, "SUCCEEDED")).await?;
                world.create("bad", spec(0, 300, "FAILED")).await?;
                // What a person types: one wait for both, whatever the outcome.
                kubectl(
                    &ctx,
                    &[
                        "wait",
                        "--for=condition=Finished",
                        "aiapp/good",
                        "aiapp/bad",
                        "-n",
                        &namespace,
                        "--timeout=60s",
                    ],
                )
                .await?;
                let good = world.aiapps().get("good").await?;
                let bad = world.aiapps().get("bad").await?;
                ensure(phase(&good) == Some(Phase::Succeeded), || {
                    format!("good: {:?}", good.status)
                })?;
                ensure(phase(&bad) == Some(Phase::Failed), || {
                    format!("bad: {:?}", bad.status)
                })?;
                ensure(
                    condition(&good, "Finished") == Some(("True", "Succeeded")),
                    || format!("good: {:?}", good.status),
                )?;
                ensure(
                    condition(&bad, "Finished") == Some(("True", "AppFailed")),
                    || format!("bad: {:?}", bad.status),
                )?;
                ensure(reason(&bad).as_deref() == Some("AppFailed"), || {
                    format!("bad: {:?}", bad.status)
                })?;
                // kstatus: a success is Current (neither condition), a failure Stalled.
                ensure(
                    condition(&good, "Stalled").is_none()
                        && condition(&good, "Reconciling").is_none(),
                    || format!("good: {:?}", good.status),
                )?;
                ensure(
                    condition(&bad, "Stalled") == Some(("True", "AppFailed"))
                        && condition(&bad, "Reconciling").is_none(),
                    || format!("bad: {:?}", bad.status),
                )?;
                // The jsonpath form, for one outcome.
                kubectl(
                    &ctx,
                    &[
                        "wait",
                        "--for=jsonpath={.status.phase}=Succeeded",
                        "aiapp/good",
                        "-n",
                        &namespace,
                        "--timeout=10s",
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    })
}

pub fn a_running_app_is_reconciling_and_one_without_credentials_is_stalled() -> Result<(), Failed> {
    fixture::run("kstatus", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                world
                    .create("long", spec(0, FOREVER_MS, "SUCCEEDED"))
                    .await?;
                let mut orphan = spec(0, 300, "SUCCEEDED");
                if let Some(credentials) = orphan.credentials.as_mut() {
                    credentials.secret_name = "no-such-secret".into();
                }
                world.create("orphan", orphan).await?;
                let running = world
                    .wait_for("long", "Running", |a| phase(a) == Some(Phase::Running))
                    .await?;
                ensure(
                    condition(&running, "Reconciling").map(|c| c.0) == Some("True")
                        && condition(&running, "Stalled").is_none()
                        && condition(&running, "Finished") == Some(("False", "Running"))
                        && reason(&running).is_none(),
                    || format!("running: {:?}", running.status),
                )?;
                let stuck = world
                    .wait_for("orphan", "stalled", |a| condition(a, "Stalled").is_some())
                    .await?;
                ensure(
                    condition(&stuck, "Stalled") == Some(("True", "CredentialsNotFound"))
                        && condition(&stuck, "Reconciling").is_none()
                        && condition(&stuck, "Finished") == Some(("False", "Pending"))
                        && reason(&stuck).as_deref() == Some("CredentialsNotFound"),
                    || format!("without credentials: {:?}", stuck.status),
                )
            })
        })
        .await
    })
}
