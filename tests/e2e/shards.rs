//! Shards: two real operator processes split the AiApps by namespace, each with its own
//! Lease; a third whose namespaces overlap one of theirs waits instead of reconciling, and
//! takes over once that shard has stopped.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use dataforest_emulator::Faults;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use libtest_mimic::Failed;

use crate::controller::assert_one_app_each;
use crate::fixture::{self, ensure};
use crate::world::{
    OperatorProcess, PATIENCE, SECRET_KEY, SECRET_NAME, World, phase, spec, wait_for_leader,
    with_world,
};
use dataforest_operator::crd::{AiApp, Phase};

const PER_NAMESPACE: usize = 8;

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(())
}

async fn create_aiapps(client: &Client, namespace: &str, count: usize) -> Result<()> {
    let aiapps: Api<AiApp> = Api::namespaced(client.clone(), namespace);
    for n in 0..count {
        let app = AiApp::new(&format!("job-{n}"), spec(0, 0, "SUCCEEDED"));
        aiapps.create(&PostParams::default(), &app).await?;
    }
    Ok(())
}

/// Waits until every AiApp of `namespace` has succeeded and its Succeeded Event is
/// recorded; returns the AiApps and, per AiApp, the instances that reported its Events.
async fn succeeded_and_reported(
    client: &Client,
    namespace: &str,
    count: usize,
) -> Result<(Vec<AiApp>, Vec<(String, BTreeSet<String>)>)> {
    let aiapps: Api<AiApp> = Api::namespaced(client.clone(), namespace);
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    loop {
        let apps = aiapps.list(&ListParams::default()).await?.items;
        let listed = events.list(&ListParams::default()).await?.items;
        let about = |name: String| {
            listed.iter().filter(move |e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
            })
        };
        let done = apps
            .iter()
            .filter(|a| phase(a) == Some(Phase::Succeeded))
            .filter(|a| about(a.name_any()).any(|e| e.reason.as_deref() == Some("Succeeded")))
            .count();
        if done == count {
            let reporters = apps
                .iter()
                .map(|a| {
                    let who = about(a.name_any())
                        .filter_map(|e| e.reporting_instance.clone())
                        .collect();
                    (a.name_any(), who)
                })
                .collect();
            return Ok((apps, reporters));
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "in {namespace}, {done} of {count} AiApps succeeded with their Event recorded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn handled_only_by(reporters: &[(String, BTreeSet<String>)], instance: &str) -> Result<()> {
    for (name, who) in reporters {
        ensure(who.len() == 1 && who.contains(instance), || {
            format!("AiApp {name}: Events reported by {who:?}, expected only {instance}")
        })?;
    }
    Ok(())
}

pub fn two_shards_split_the_namespaces_and_each_aiapp_is_handled_by_one() -> Result<(), Failed> {
    fixture::run("shards", |ctx| async move {
        let world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        // Shard a: the test namespace; shard b: its sibling. The Leases live in the test
        // namespace (both instances' POD_NAMESPACE), where they see each other's claims.
        let (ns_a, ns_b, ns_c) = (
            ctx.namespace.clone(),
            format!("{}-b", ctx.namespace),
            format!("{}-c", ctx.namespace),
        );
        for namespace in [&ns_b, &ns_c] {
            create_namespace(&ctx.client, namespace).await?;
        }
        for namespace in [&ns_a, &ns_b, &ns_c] {
            world
                .create_secret_in(namespace, SECRET_NAME, SECRET_KEY)
                .await?;
        }
        with_world(world, |world| {
            Box::pin(async move {
                let client = &ctx.client;
                let _a = OperatorProcess::start_with(
                    world,
                    ctx.kubeconfig(),
                    "shard-a-0",
                    &[("WATCH_NAMESPACE", &ns_a), ("LEASE_NAME", "shard-a")],
                )?;
                let mut b = OperatorProcess::start_with(
                    world,
                    ctx.kubeconfig(),
                    "shard-b-0",
                    &[("WATCH_NAMESPACE", &ns_b), ("LEASE_NAME", "shard-b")],
                )?;
                wait_for_leader(client, &ns_a, "shard-a", "shard-a-0").await?;
                wait_for_leader(client, &ns_a, "shard-b", "shard-b-0").await?;
                // Claims b's namespace and one no shard has: it must wait for b.
                let overlapping = format!("{ns_b},{ns_c}");
                let c = OperatorProcess::start_with(
                    world,
                    ctx.kubeconfig(),
                    "shard-c-0",
                    &[("WATCH_NAMESPACE", &overlapping), ("LEASE_NAME", "shard-c")],
                )?;
                let log_deadline = tokio::time::Instant::now() + PATIENCE;
                loop {
                    let log = c.read_log()?;
                    if log.contains("the Lease shard-b (held by shard-b-0) claims namespace") {
                        break;
                    }
                    anyhow::ensure!(
                        tokio::time::Instant::now() < log_deadline,
                        "the overlapping instance never said it waits for shard-b: {log}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }

                create_aiapps(client, &ns_a, PER_NAMESPACE).await?;
                create_aiapps(client, &ns_b, PER_NAMESPACE).await?;
                create_aiapps(client, &ns_c, 1).await?;
                let (apps_a, reporters_a) =
                    succeeded_and_reported(client, &ns_a, PER_NAMESPACE).await?;
                let (apps_b, reporters_b) =
                    succeeded_and_reported(client, &ns_b, PER_NAMESPACE).await?;
                handled_only_by(&reporters_a, "shard-a-0")?;
                handled_only_by(&reporters_b, "shard-b-0")?;
                // While b lived, c reconciled nothing: its namespace's AiApp, created
                // with the others, was not even given a finalizer.
                let waiting: Api<AiApp> = Api::namespaced(client.clone(), &ns_c);
                let untouched = waiting.get("job-0").await?;
                ensure(
                    untouched.status.is_none() && untouched.finalizers().is_empty(),
                    || {
                        format!(
                            "shard-c reconciled while shard-b led: {:?}",
                            untouched.status
                        )
                    },
                )?;

                // b stops (its Lease released): c takes its namespaces over.
                ensure(b.terminate().await?, || {
                    "shard-b did not exit cleanly".into()
                })?;
                wait_for_leader(client, &ns_a, "shard-c", "shard-c-0").await?;
                let (_, reporters_c) = succeeded_and_reported(client, &ns_c, 1).await?;
                handled_only_by(&reporters_c, "shard-c-0")?;

                let all: Vec<AiApp> = apps_a.into_iter().chain(apps_b).collect();
                let mut all = all;
                all.extend(waiting.list(&ListParams::default()).await?.items);
                assert_one_app_each(world, &all, 2 * PER_NAMESPACE + 1)
            })
        })
        .await
    })
}
