//! The metrics of the real binary on a real apiserver: only the leader exports AiApp
//! counts, the leader gauge moves with a handover, and every metric that the alert rules
//! and the Grafana dashboard in `deploy/` name is one the binary exports; its writes
//! carry its name in managed fields, and every Event it sends is also a log line.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use dataforest_emulator::Faults;
use dataforest_operator::crd::Phase;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::ListParams;
use libtest_mimic::Failed;

use crate::fixture::{self, ensure};
use crate::world::{
    OPERATOR_LEASE, OperatorProcess, PATIENCE, SECRET_KEY, SECRET_NAME, World, phase, spec,
    wait_for_leader, with_world,
};

/// The name the operator's Kubernetes requests carry (their User-Agent), which the
/// apiserver records as the field manager of every write without an explicit one.
const OPERATOR: &str = "dataforest-operator";

/// The files whose metric names must all be exported.
const USERS_OF_METRICS: [&str; 3] = [
    "deploy/prometheus/rules.yaml",
    "deploy/prometheus/rules.test.yaml",
    "deploy/grafana/dataforest-operator.json",
];

/// A loopback address for one operator's /metrics.
fn metrics_address() -> Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(format!("127.0.0.1:{port}"))
}

/// Scrapes `address` until `ready` holds for the text (or fails after [`PATIENCE`]).
async fn scrape_until(address: &str, what: &str, ready: impl Fn(&str) -> bool) -> Result<String> {
    let http = reqwest::Client::new();
    let url = format!("http://{address}/metrics");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = match http.get(&url).send().await {
            Ok(answer) => answer.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if ready(&text) {
            return Ok(text);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{url} never showed {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

fn leader_gauge(text: &str) -> Option<f64> {
    sample(
        text,
        &format!(r#"dataforest_operator_leader{{lease="{OPERATOR_LEASE}"}}"#),
    )
}

fn running_count(text: &str) -> Option<f64> {
    sample(text, r#"dataforest_operator_aiapps{phase="Running"}"#)
}

/// Whether the text carries any per-phase series.
fn has_phase_series(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("dataforest_operator_aiapps"))
}

pub fn only_the_leader_exports_aiapp_counts_and_the_leader_gauge_follows_a_handover()
-> Result<(), Failed> {
    fixture::run("metrics-handover", |ctx| async move {
        let world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        world.create_secret(SECRET_NAME, SECRET_KEY).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let (at_a, at_b) = (metrics_address()?, metrics_address()?);
                let mut a = OperatorProcess::start_with(
                    world,
                    ctx.kubeconfig(),
                    "pod-a",
                    &[("METRICS_ADDRESS", &at_a)],
                )?;
                wait_for_leader(&ctx.client, &ctx.namespace, OPERATOR_LEASE, "pod-a").await?;
                // Running for an hour: the count stays 1 through the handover.
                world
                    .create("counted", spec(0, 3_600_000, "SUCCEEDED"))
                    .await?;
                world
                    .wait_for("counted", "Running", |a| phase(a) == Some(Phase::Running))
                    .await?;
                let _b = OperatorProcess::start_with(
                    world,
                    ctx.kubeconfig(),
                    "pod-b",
                    &[("METRICS_ADDRESS", &at_b)],
                )?;
                scrape_until(&at_a, "pod-a leading and counting 1 Running", |t| {
                    leader_gauge(t) == Some(1.0) && running_count(t) == Some(1.0)
                })
                .await?;
                let follower =
                    scrape_until(&at_b, "pod-b's leader gauge", |t| leader_gauge(t).is_some())
                        .await?;
                ensure(leader_gauge(&follower) == Some(0.0), || {
                    format!("the standby says it leads:\n{follower}")
                })?;
                ensure(!has_phase_series(&follower), || {
                    format!("the standby exports AiApp counts:\n{follower}")
                })?;
                ensure(
                    follower.contains("\ndataforest_operator_build_info{")
                        && follower.contains("\nprocess_resident_memory_bytes "),
                    || format!("the standby lacks build_info or process metrics:\n{follower}"),
                )?;

                let clean = a.terminate().await?;
                ensure(clean, || {
                    format!("pod-a did not exit cleanly; see {}", a.log.display())
                })?;
                scrape_until(&at_b, "pod-b leading and counting 1 Running", |t| {
                    leader_gauge(t) == Some(1.0) && running_count(t) == Some(1.0)
                })
                .await?;
                Ok(())
            })
        })
        .await
    })
}

/// The metric names a text uses: identifiers starting `dataforest_operator_` or `process_`.
fn names_used(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("dataforest_operator_") || word.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// The series names an OpenMetrics text exports: every sample's name, and for every
/// declared family the names a query can use, samples or not yet (a counter family
/// without a label set so far still exports `<name>_total` once it counts).
fn names_exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split(' ');
            let (Some(family), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

pub fn every_metric_the_alerts_and_the_dashboard_use_is_exported_by_the_operator()
-> Result<(), Failed> {
    fixture::run("metrics-names", |ctx| async move {
        let world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        world.create_secret(SECRET_NAME, SECRET_KEY).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let address = metrics_address()?;
                let _operator = OperatorProcess::start_with(
                    world,
                    ctx.kubeconfig(),
                    "op-names",
                    &[("METRICS_ADDRESS", &address)],
                )?;
                world.create("named", spec(0, 0, "SUCCEEDED")).await?;
                world
                    .wait_for("named", "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                    .await?;
                let text = scrape_until(&address, "the leader's counts", |t| {
                    leader_gauge(t) == Some(1.0)
                        && sample(t, r#"dataforest_operator_aiapps{phase="Succeeded"}"#)
                            == Some(1.0)
                })
                .await?;
                let exported = names_exported(&text);
                let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
                let mut used = BTreeSet::new();
                for file in USERS_OF_METRICS {
                    let content = std::fs::read_to_string(repo.join(file))
                        .with_context(|| format!("reading {file}"))?;
                    let names = names_used(&content);
                    ensure(!names.is_empty(), || format!("{file} names no metric"))?;
                    let missing: Vec<&String> = names.difference(&exported).collect();
                    ensure(missing.is_empty(), || {
                        format!("{file} uses metrics the operator does not export: {missing:?}\nexported: {exported:?}")
                    })?;
                    used.extend(names);
                }
                // The check above is only as good as what it found to check.
                for name in [
                    "dataforest_operator_leader",
                    "dataforest_operator_aiapps",
                    "dataforest_operator_aiapps_longest_in_phase_seconds",
                    "dataforest_operator_api_calls_total",
                    "dataforest_operator_reconcile_errors_total",
                    "dataforest_operator_api_call_duration_seconds_bucket",
                    "dataforest_operator_build_info",
                    "process_cpu_seconds_total",
                    "process_resident_memory_bytes",
                    "process_start_time_seconds",
                ] {
                    ensure(used.contains(name), || {
                        format!("no file of {USERS_OF_METRICS:?} uses {name}: {used:?}")
                    })?;
                }
                // A counter is queried by its samples' name, never its family's.
                ensure(
                    exported.contains("dataforest_operator_reconciles_total")
                        && !exported.contains("dataforest_operator_reconciles"),
                    || format!("counter names read wrongly: {exported:?}"),
                )?;
                Ok(())
            })
        })
        .await
    })
}

/// The managers named in `meta`'s managed fields, each with what it owns, as
/// `kubectl get --show-managed-fields` shows them.
fn managers(meta: &ObjectMeta) -> Vec<(String, String)> {
    meta.managed_fields
        .iter()
        .flatten()
        .map(|entry| {
            let owns = entry
                .fields_v1
                .as_ref()
                .map(|fields| fields.0.to_string())
                .unwrap_or_default();
            (entry.manager.clone().unwrap_or_default(), owns)
        })
        .collect()
}

pub fn the_operators_writes_carry_its_name_in_managed_fields() -> Result<(), Failed> {
    fixture::run("field-manager", |ctx| async move {
        let world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        world.create_secret(SECRET_NAME, SECRET_KEY).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let _operator = OperatorProcess::start(world, ctx.kubeconfig(), "op-named")?;
                world.create("named", spec(0, 0, "SUCCEEDED")).await?;
                world
                    .wait_for("named", "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                    .await?;
                let app = world.aiapps().get("named").await?;
                let written = managers(&app.metadata);
                for (field, what) in [
                    ("\"f:finalizers\"", "the finalizer"),
                    ("\"f:status\"", "the status"),
                ] {
                    let owners: Vec<&str> = written
                        .iter()
                        .filter(|(_, owns)| owns.contains(field))
                        .map(|(manager, _)| manager.as_str())
                        .collect();
                    ensure(owners == [OPERATOR], || {
                        format!("{what} is managed by {owners:?}, not {OPERATOR}: {written:?}")
                    })?;
                }
                let leases: Api<Lease> = Api::namespaced(world.client.clone(), &world.namespace);
                let lease = leases.get(OPERATOR_LEASE).await?;
                let lease_managers = managers(&lease.metadata);
                ensure(
                    !lease_managers.is_empty()
                        && lease_managers
                            .iter()
                            .all(|(manager, _)| manager == OPERATOR),
                    || format!("the Lease's managers: {lease_managers:?}"),
                )?;
                let events: Api<Event> = Api::namespaced(world.client.clone(), &world.namespace);
                let about_named: Vec<Event> = events
                    .list(&ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .filter(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("named")
                    })
                    .collect();
                ensure(!about_named.is_empty(), || {
                    "no Event about the AiApp".to_owned()
                })?;
                for event in &about_named {
                    let event_managers = managers(&event.metadata);
                    ensure(
                        event_managers
                            .iter()
                            .all(|(manager, _)| manager == OPERATOR),
                        || format!("an Event's managers: {event_managers:?}"),
                    )?;
                }
                Ok(())
            })
        })
        .await
    })
}

/// The log lines (JSON, one object per line) whose field `reason` is `reason` and whose
/// `aiapp` names `name`.
fn logged<'a>(
    lines: &'a [serde_json::Value],
    name: &str,
    reason: &str,
) -> Vec<&'a serde_json::Value> {
    lines
        .iter()
        .filter(|line| {
            let fields = &line["fields"];
            // `aiapp` reads `AiApp.<version>.<group>/<name>.<namespace>`.
            fields["reason"] == reason
                && fields["aiapp"]
                    .as_str()
                    .is_some_and(|aiapp| aiapp.contains(&format!("/{name}.")))
        })
        .collect()
}

pub fn every_event_is_also_a_log_line_at_its_level() -> Result<(), Failed> {
    fixture::run("events-logged", |ctx| async move {
        let world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        world.create_secret(SECRET_NAME, SECRET_KEY).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut operator = OperatorProcess::start(world, ctx.kubeconfig(), "op-logs")?;
                world.create("fine", spec(0, 0, "SUCCEEDED")).await?;
                world.create("broken", spec(0, 0, "FAILED")).await?;
                let fine = world
                    .wait_for("fine", "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
                    .await?;
                world
                    .wait_for("broken", "Failed", |a| phase(a) == Some(Phase::Failed))
                    .await?;
                ensure(operator.terminate().await?, || {
                    "the operator did not stop cleanly".to_owned()
                })?;
                let text = operator.read_log()?;
                let lines: Vec<serde_json::Value> = text
                    .lines()
                    .filter_map(|line| serde_json::from_str(line).ok())
                    .collect();
                let id = fine.status.and_then(|s| s.id).context("no id")?;
                let expected = [
                    ("fine", "Submitted", "INFO", id.to_string()),
                    ("fine", "Succeeded", "INFO", id.to_string()),
                    ("broken", "Failed", "WARN", "final status FAILED".to_owned()),
                ];
                for (name, reason, level, says) in expected {
                    let found = logged(&lines, name, reason);
                    ensure(
                        found.len() == 1
                            && found[0]["level"] == level
                            && found[0]["fields"]["message"]
                                .as_str()
                                .is_some_and(|m| m.contains(&says)),
                        || {
                            format!(
                                "expected one {level} line for {name}'s {reason} Event saying {says:?}, found {found:?} in {}",
                                operator.log.display()
                            )
                        },
                    )?;
                }
                Ok(())
            })
        })
        .await
    })
}
