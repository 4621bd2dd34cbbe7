//! What a misbehaving API or apiserver must never do to an AiApp, on real components:
//! an HTML page or a gateway clock far off never parks it, a redirect is never followed
//! (its target receives nothing), and an id whose status write is refused is kept and
//! written later, never replaced by a second job.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use dataforest_emulator::{Fault, Faults};
use dataforest_operator::crd::{AiApp, Phase};
use dataforest_operator::dataforest::Operation;
use dataforest_operator::status::condition;
use libtest_mimic::Failed;

use crate::fixture::{self, ensure, refuse_status_writes};
use crate::world::{PATIENCE, World, phase, spec, with_world};

/// The reason and message of condition `type_`, when it is False.
fn failing(app: &AiApp, type_: &str) -> Option<(String, String)> {
    let status = app.status.as_ref()?;
    let found = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "False")?;
    Some((found.reason.to_string(), found.message.clone()))
}

/// Waits until the emulator has counted more than `above` `operation` calls answered
/// with `outcome`: the operator kept calling.
async fn counted_above(
    world: &World,
    operation: Operation,
    outcome: &str,
    above: u64,
) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let count = world.emulator.stats().count(operation, outcome);
        if count > above {
            return Ok(count);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{operation} answered {outcome} only {count} times"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every getDetail answered by a proxy's HTML page with status 200: the AiApp says the
/// answer was unreadable and keeps reading (it was once parked for good at Accepted);
/// once the pages stop, it runs to Succeeded with its one app.
pub fn an_html_page_on_a_read_is_retried_and_never_parks_the_aiapp() -> Result<(), Failed> {
    fixture::run("html-read", |ctx| async move {
        let faults = Faults {
            html_page: Fault::probability(1.0).on(&[Operation::GetDetail]),
            ..Faults::default()
        };
        let world = World::start(ctx.client, &ctx.namespace, faults).await?;
        with_world(world, |world| {
            Box::pin(async move {
                world.create("html", spec(0, 0, "SUCCEEDED")).await?;
                let app = world
                    .wait_for("html", "Synced False", |a| {
                        failing(a, condition::SYNCED).is_some()
                    })
                    .await?;
                let (reason, message) = failing(&app, condition::SYNCED).context("no Synced")?;
                ensure(reason == "UnreadableAnswer", || {
                    format!("Synced says {reason}: {message}")
                })?;
                let seen = world
                    .emulator
                    .stats()
                    .count(Operation::GetDetail, "htmlPage");
                counted_above(world, Operation::GetDetail, "htmlPage", seen).await?;
                world.emulator.set_faults(Faults::default())?;
                world
                    .wait_for("html", "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                    .await?;
                let apps = world.emulator.apps();
                ensure(apps.len() == 1, || format!("{} apps: {apps:?}", apps.len()))
            })
        })
        .await
    })
}

/// The gateway's clock runs ten minutes ahead: every signed request gets a 401 whose
/// `Date` shows it. That is clock skew, not a wrong key: the AiApp names it, nothing is
/// created, the submit is retried, and once the clocks agree the app is made once.
pub fn a_gateway_clock_far_off_is_named_clock_skew_and_retried() -> Result<(), Failed> {
    fixture::run("clock-skew", |ctx| async move {
        let faults = Faults {
            clock_offset_ms: 600_000,
            ..Faults::default()
        };
        let world = World::start(ctx.client, &ctx.namespace, faults).await?;
        with_world(world, |world| {
            Box::pin(async move {
                world.create("skewed", spec(0, 0, "SUCCEEDED")).await?;
                let app = world
                    .wait_for("skewed", "Submitted False", |a| {
                        failing(a, condition::SUBMITTED).is_some()
                    })
                    .await?;
                let (reason, message) =
                    failing(&app, condition::SUBMITTED).context("no Submitted")?;
                ensure(reason == "ClockSkew", || {
                    format!("Submitted says {reason}: {message}")
                })?;
                let seen = world.emulator.stats().count(Operation::Submit, "clockSkew");
                // Retried, not parked as a refused key.
                counted_above(world, Operation::Submit, "clockSkew", seen).await?;
                ensure(world.emulator.apps().is_empty(), || {
                    "an app was made through a refused request".into()
                })?;
                world.emulator.set_faults(Faults::default())?;
                world
                    .wait_for("skewed", "Succeeded", |a| {
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

/// A listener that counts the connections made to it; it never answers.
struct Bystander {
    url: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Bystander {
    async fn start() -> Result<Bystander> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/elsewhere", listener.local_addr()?);
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Ok(Bystander {
            url,
            connections,
            task,
        })
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every answer is a 307 to another host. Following it would hand that host the access
/// key, a valid signature and the submit body; the operator follows nothing: the AiApp
/// names the redirect and its target host, the target receives no connection at all,
/// and once the redirects stop the app is made once.
pub fn a_redirect_is_never_followed_and_its_target_receives_nothing() -> Result<(), Failed> {
    fixture::run("redirect", |ctx| async move {
        let bystander = Bystander::start().await?;
        let faults = Faults {
            redirect: Fault::probability(1.0).with_location(&bystander.url),
            ..Faults::default()
        };
        let world = World::start(ctx.client, &ctx.namespace, faults).await?;
        with_world(world, move |world| {
            Box::pin(async move {
                world.create("moved", spec(0, 0, "SUCCEEDED")).await?;
                let app = world
                    .wait_for("moved", "Submitted False", |a| {
                        failing(a, condition::SUBMITTED).is_some()
                    })
                    .await?;
                let (reason, message) =
                    failing(&app, condition::SUBMITTED).context("no Submitted")?;
                ensure(reason == "Redirected", || {
                    format!("Submitted says {reason}: {message}")
                })?;
                let host = bystander.url.trim_start_matches("http://");
                let host = host.split('/').next().unwrap_or_default();
                ensure(message.contains("307") && message.contains(host), || {
                    format!("the message names neither the status nor {host}: {message}")
                })?;
                let seen = world.emulator.stats().count(Operation::Submit, "redirect");
                counted_above(world, Operation::Submit, "redirect", seen).await?;
                world.emulator.set_faults(Faults::default())?;
                world
                    .wait_for("moved", "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                    .await?;
                let apps = world.emulator.apps();
                ensure(apps.len() == 1, || format!("{} apps: {apps:?}", apps.len()))?;
                ensure(bystander.connections() == 0, || {
                    format!(
                        "the redirect target received {} connections",
                        bystander.connections()
                    )
                })
            })
        })
        .await
    })
}

/// The submit is answered while kube-apiserver refuses every AiApp status write, so the
/// id cannot be written. New apps show in getList only after two minutes, far past the
/// recovery grace: an operator that dropped the id would find nothing and submit again.
/// It keeps the id instead and writes it once writes are allowed: one app, and the AiApp
/// names it.
pub fn an_id_whose_status_write_is_refused_is_kept_and_written_later() -> Result<(), Failed> {
    fixture::run("id-write-refused", |ctx| async move {
        let slow = Faults {
            // Room to put the refusal in place between the marker and the answer.
            latency_ms: 8_000,
            listing_lag_ms: 120_000,
            ..Faults::default()
        };
        // The call outlasts the latency: a timed-out submit would be a different story.
        let world = World::start_with(ctx.client.clone(), &ctx.namespace, slow, |config| {
            config.api_timeout = Duration::from_secs(20)
        })
        .await?;
        with_world(world, move |world| {
            Box::pin(async move {
                let ctx = &ctx;
                world
                    .create("kept", spec(0, 3_600_000, "SUCCEEDED"))
                    .await?;
                world
                    .wait_for("kept", "marked", |a| {
                        a.status.as_ref().is_some_and(|s| s.submission.is_some())
                    })
                    .await?;
                let refusal = refuse_status_writes(ctx).await?;
                let before = world.aiapps().get("kept").await?;
                ensure(
                    before.status.as_ref().is_some_and(|s| s.id.is_none()),
                    || "the id was written before the refusal was in place".into(),
                )?;
                let deadline = tokio::time::Instant::now() + PATIENCE;
                while world.emulator.stats().count(Operation::Submit, "ok") == 0 {
                    anyhow::ensure!(
                        tokio::time::Instant::now() < deadline,
                        "the submit was never answered"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                world.emulator.set_faults(Faults {
                    listing_lag_ms: 120_000,
                    ..Faults::default()
                })?;
                // Refused for longer than the recovery grace (3 s).
                tokio::time::sleep(Duration::from_secs(5)).await;
                let during = world.aiapps().get("kept").await?;
                ensure(
                    during.status.as_ref().is_some_and(|s| s.id.is_none()),
                    || "a status write went through the refusal".into(),
                )?;
                refusal.allow().await?;
                let app = world
                    .wait_for("kept", "Running", |a| phase(a) == Some(Phase::Running))
                    .await?;
                let id = app.status.as_ref().and_then(|s| s.id.clone());
                // Past another grace: no second submit follows the id's write.
                tokio::time::sleep(Duration::from_secs(4)).await;
                let apps = world.emulator.apps();
                ensure(apps.len() == 1, || format!("{} apps: {apps:?}", apps.len()))?;
                ensure(id.as_deref() == Some(apps[0].id.as_str()), || {
                    format!("status names {id:?}, the app is {}", apps[0].id)
                })?;
                ensure(world.emulator.stats().total(Operation::Submit) == 1, || {
                    "submit was called more than once".into()
                })
            })
        })
        .await
    })
}
