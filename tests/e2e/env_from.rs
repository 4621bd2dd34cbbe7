//! `spec.docker.envFrom` on the real apiserver and the emulator: values from Secrets reach
//! the app Data Forest stores and nothing else; a missing Secret or key waits on a
//! condition naming them and submits once when fixed; a malformed entry never gets past
//! `kubectl apply`.

use std::collections::BTreeMap;
use std::process::Stdio;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use dataforest_operator::crd::{AiApp, AiAppSpec, Phase};
use dataforest_operator::dataforest::Operation;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use libtest_mimic::Failed;
use serde_json::{Value, json};

use crate::fixture::{self, TestContext, ensure};
use crate::secrets::{aiapps_json, events_json, find, wait_for_event};
use crate::world::{OperatorProcess, World, condition, phase, spec};

/// Values only a leak would put anywhere but the emulator's stored app.
const USER: &str = "LEAKCANARY-envfrom-user-R4t8Wq1Zm6";
const PASSWORD: &str = "LEAKCANARY-envfrom-password-K9c2Xv5Jh3";
const TOKEN: &str = "LEAKCANARY-envfrom-token-B7n3Pd6Sg1";
/// In a Secret, but overridden by `env`: sent nowhere at all.
const SHADOWED: &str = "LEAKCANARY-envfrom-shadowed-T2y6Lk9Fa4";
/// A key of a Secret that `secretKeyRef` does not name: sent nowhere at all.
const UNNAMED: &str = "LEAKCANARY-envfrom-unnamed-M5e1Hr8Qc7";

/// A spec for the emulator (see `world::spec`) with `env_from` and `env` added.
fn spec_with(env_from: Value, env: &[(&str, &str)]) -> Result<AiAppSpec> {
    let mut spec = spec(100, 200, "SUCCEEDED");
    spec.docker.env_from = serde_json::from_value(env_from)?;
    for (name, value) in env {
        spec.docker
            .env
            .insert((*name).to_owned(), (*value).to_owned());
    }
    Ok(spec)
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

async fn create_secret(world: &World, secret: &Secret) -> Result<()> {
    Api::<Secret>::namespaced(world.client.clone(), &world.namespace)
        .create(&PostParams::default(), secret)
        .await
        .with_context(|| format!("creating Secret {:?}", secret.metadata.name))?;
    Ok(())
}

/// Both shapes and a prefix, at trace level, with the real binary: the stored app's env
/// is `env` over the Secrets' values, and no value shows in the operator's log, the
/// AiApp (status included) or the Events of either API.
pub fn env_from_a_secret_reaches_the_stored_app_and_its_values_nowhere_else() -> Result<(), Failed>
{
    fixture::run("envfrom-reaches", |ctx| async move {
        let world = World::without_operator(
            ctx.client.clone(),
            &ctx.namespace,
            dataforest_emulator::Faults::default(),
        )
        .await?;
        let outcome = reaches_the_stored_app(&ctx, &world).await;
        world.stop().await?;
        outcome
    })
}

async fn reaches_the_stored_app(ctx: &TestContext, world: &World) -> Result<()> {
    world
        .create_secret(crate::world::SECRET_NAME, crate::world::SECRET_KEY)
        .await?;
    create_secret(
        world,
        &secret(
            "db",
            &[("USER", USER), ("PASSWORD", PASSWORD), ("HOST", SHADOWED)],
        ),
    )
    .await?;
    create_secret(
        world,
        &secret("api", &[("token", TOKEN), ("other", UNNAMED)]),
    )
    .await?;
    let spec = spec_with(
        json!([
            {"secretRef": {"name": "db"}, "prefix": "DB_"},
            {"name": "API_TOKEN", "secretKeyRef": {"name": "api", "key": "token"}},
        ]),
        &[("DB_HOST", "from-spec")],
    )?;
    let mut operator =
        OperatorProcess::start_with(world, ctx.kubeconfig(), "envfrom", &[("RUST_LOG", "trace")])?;
    let log_path = operator.log.display().to_string();
    world.create("train", spec.clone()).await?;
    world
        .wait_for("train", "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
        .await
        .with_context(|| format!("the operator's log is {log_path}"))?;
    wait_for_event(world, "train", "Succeeded").await?;

    let mut problems = Vec::new();
    let apps = world.emulator.apps();
    let mut expected = spec.docker.env.clone();
    for (name, value) in [
        ("DB_USER", USER),
        ("DB_PASSWORD", PASSWORD),
        ("API_TOKEN", TOKEN),
    ] {
        expected.insert(name.to_owned(), value.to_owned());
    }
    match apps.as_slice() {
        [app] if app.env == expected => {}
        [app] => problems.push(format!(
            "the stored app's env is {:?}, expected {expected:?}",
            app.env
        )),
        _ => problems.push(format!("{} apps on the emulator, expected 1", apps.len())),
    }

    operator.terminate().await?;
    let log = operator.read_log()?;
    if !log.contains("\"level\":\"TRACE\"") {
        problems.push(format!(
            "no TRACE line in {log_path}: RUST_LOG=trace did not take"
        ));
    }
    // The control: the log covers the reads of both Secrets.
    for name in ["db", "api"] {
        let read = format!("/secrets/{name}\"");
        if find(&log, &read, false).is_none() {
            problems.push(format!(
                "{log_path} shows no read of Secret {name} ({read})"
            ));
        }
    }
    let places = [
        (format!("the operator's log {log_path}"), log),
        (
            "the namespace's AiApps".to_owned(),
            aiapps_json(world).await?,
        ),
        (
            "the namespace's Events (core/v1)".to_owned(),
            events_json::<Event>(world).await?,
        ),
        (
            "the namespace's Events (events.k8s.io/v1)".to_owned(),
            events_json::<k8s_openapi::api::events::v1::Event>(world).await?,
        ),
    ];
    let base64 = base64::engine::general_purpose::STANDARD;
    for value in [USER, PASSWORD, TOKEN, SHADOWED, UNNAMED] {
        for (place, text) in &places {
            for needle in [value.to_owned(), base64.encode(value)] {
                if let Some(excerpt) = find(text, &needle, false) {
                    problems.push(format!("LEAK: {value} is in {place}: …{excerpt}…"));
                }
            }
        }
    }
    let stored = serde_json::to_string(&apps)?;
    for value in [SHADOWED, UNNAMED] {
        if stored.contains(value) {
            problems.push(format!(
                "{value} reached Data Forest, though nothing sends it"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("\n"))
    }
}

/// (status, reason, message) of the condition `type_`.
fn condition_text(app: &AiApp, type_: &str) -> Option<(String, String, String)> {
    let c = app
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        c.status.to_string(),
        c.reason.to_string(),
        c.message.clone(),
    ))
}

/// A missing Secret and a missing key each keep their AiApp Pending with a condition and
/// one Warning Event naming the Secret and the key, with nothing marked or submitted;
/// creating the Secret and adding the key (no edit of the AiApps) wakes them, and each
/// is submitted once.
pub fn a_missing_secret_or_key_waits_naming_them_and_submits_once_when_fixed() -> Result<(), Failed>
{
    fixture::run("envfrom-missing", |ctx| async move {
        let world = World::start(
            ctx.client.clone(),
            &ctx.namespace,
            dataforest_emulator::Faults::default(),
        )
        .await?;
        let outcome = waits_then_submits_once(&world).await;
        world.stop().await?;
        outcome
    })
}

async fn waits_then_submits_once(world: &World) -> Result<()> {
    let ns = &world.namespace;
    create_secret(world, &secret("partial", &[("other", "x")])).await?;
    let cases = [
        (
            "no-secret",
            json!([{"secretRef": {"name": "later"}}]),
            "EnvSecretNotFound",
            vec![
                format!("Secret {ns}/later"),
                "spec.docker.envFrom[0].secretRef".to_owned(),
            ],
        ),
        (
            "no-key",
            json!([
                {"secretRef": {"name": "partial"}, "prefix": "P_"},
                {"name": "TOKEN", "secretKeyRef": {"name": "partial", "key": "token"}},
            ]),
            "EnvSecretKeyNotFound",
            vec![
                format!("Secret {ns}/partial"),
                "\"token\"".to_owned(),
                "spec.docker.envFrom[1].secretKeyRef".to_owned(),
            ],
        ),
    ];
    for (name, env_from, _, _) in &cases {
        world
            .create(name, spec_with(env_from.clone(), &[])?)
            .await?;
    }
    for (name, _, reason, says) in &cases {
        let reason = *reason;
        let app = world
            .wait_for(name, reason, move |a| {
                condition(a, "Submitted") == Some(("False", reason))
            })
            .await?;
        ensure(condition(&app, "Synced") == Some(("False", reason)), || {
            format!("{name}: Synced is {:?}", condition(&app, "Synced"))
        })?;
        ensure(phase(&app) == Some(Phase::Pending), || {
            format!("{name}: phase {:?}", phase(&app))
        })?;
        let status = app.status.clone().unwrap_or_default();
        ensure(
            status.submission.is_none() && status.attempts.is_empty(),
            || format!("{name}: a marker was written without a submit: {status:?}"),
        )?;
        let event = wait_for_event(world, name, reason).await?;
        let (_, _, message) = condition_text(&app, "Submitted").unwrap_or_default();
        for text in [message, event.message.clone().unwrap_or_default()] {
            for needed in says {
                ensure(text.contains(needed.as_str()), || {
                    format!("{name}: {text:?} does not say {needed:?}")
                })?;
            }
        }
        ensure(event.type_.as_deref() == Some("Warning"), || {
            format!("{name}: the {reason} Event is {:?}", event.type_)
        })?;
    }
    ensure(world.emulator.apps().is_empty(), || {
        format!("apps were submitted: {:?}", world.emulator.apps())
    })?;

    // The fixes touch Secrets only.
    create_secret(world, &secret("later", &[("LATER", "now")])).await?;
    Api::<Secret>::namespaced(world.client.clone(), ns)
        .patch(
            "partial",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": "t0ken"}})),
        )
        .await?;
    for (name, ..) in &cases {
        world
            .wait_for(name, "Succeeded", |a| phase(a) == Some(Phase::Succeeded))
            .await?;
    }
    let submits = world.emulator.stats().total(Operation::Submit);
    let apps = world.emulator.apps();
    ensure(submits == 2 && apps.len() == 2, || {
        format!("{submits} submits and apps {apps:?}, expected one per AiApp")
    })?;
    let envs: Vec<&BTreeMap<String, String>> = apps.iter().map(|a| &a.env).collect();
    ensure(
        envs.iter()
            .any(|e| e.get("LATER").map(String::as_str) == Some("now"))
            && envs.iter().any(|e| {
                e.get("TOKEN").map(String::as_str) == Some("t0ken")
                    && e.get("P_other").map(String::as_str) == Some("x")
            }),
        || format!("the stored envs lack the fixed values: {envs:?}"),
    )?;
    for (name, _, reason, _) in &cases {
        let app = world.aiapps().get(name).await?;
        ensure(app.metadata.generation == Some(1), || {
            format!(
                "{name} was edited: generation {:?}",
                app.metadata.generation
            )
        })?;
        let events: Api<Event> = Api::namespaced(world.client.clone(), ns);
        let warnings = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .filter(|e| e.reason.as_deref() == Some(reason))
            .count();
        ensure(warnings == 1, || {
            format!("{name}: {warnings} {reason} Events, expected 1")
        })?;
    }
    Ok(())
}

/// `kubectl apply` of an AiApp whose `envFrom` breaks one rule: refused, naming the field.
/// A valid one is accepted, and changing its `envFrom` afterwards is refused as any change
/// of `docker` is.
pub fn a_malformed_env_from_entry_is_refused_by_kubectl_apply_naming_the_field()
-> Result<(), Failed> {
    fixture::run("envfrom-admission", |ctx| async move {
        let valid = json!([
            {"secretRef": {"name": "db"}, "prefix": "DB_"},
            {"name": "API_TOKEN", "secretKeyRef": {"name": "api", "key": "token"}},
        ]);
        kubectl_apply(&ctx, "valid", &valid)
            .map_err(|said| anyhow!("a valid envFrom was refused: {said}"))?;

        let one = |entry: Value| json!([{"secretRef": {"name": "db"}}, entry]);
        let many: Vec<Value> = (0..17)
            .map(|_| json!({"secretRef": {"name": "db"}}))
            .collect();
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            (
                "both secretRef and secretKeyRef",
                one(
                    json!({"name": "A", "secretRef": {"name": "db"}, "secretKeyRef": {"name": "db", "key": "k"}}),
                ),
                "spec.docker.envFrom[1]",
                "exactly one of secretRef",
            ),
            (
                "neither",
                one(json!({"prefix": "A_"})),
                "spec.docker.envFrom[1]",
                "exactly one of secretRef",
            ),
            (
                "secretKeyRef without name",
                one(json!({"secretKeyRef": {"name": "db", "key": "k"}})),
                "spec.docker.envFrom[1].name",
                "required with secretKeyRef",
            ),
            (
                "name with secretRef",
                one(json!({"name": "A", "secretRef": {"name": "db"}})),
                "spec.docker.envFrom[1].name",
                "name goes with secretKeyRef only",
            ),
            (
                "prefix with secretKeyRef",
                one(
                    json!({"name": "A", "prefix": "P_", "secretKeyRef": {"name": "db", "key": "k"}}),
                ),
                "spec.docker.envFrom[1].prefix",
                "prefix goes with secretRef only",
            ),
            (
                "a variable name starting with a digit",
                one(json!({"name": "1A", "secretKeyRef": {"name": "db", "key": "k"}})),
                "spec.docker.envFrom[1].name",
                "should match",
            ),
            (
                "a prefix with a dash",
                one(json!({"prefix": "DB-", "secretRef": {"name": "db"}})),
                "spec.docker.envFrom[1].prefix",
                "should match",
            ),
            (
                "a Secret name that is not a DNS name",
                one(json!({"secretRef": {"name": "DB_Secret"}})),
                "spec.docker.envFrom[1].secretRef.name",
                "should match",
            ),
            (
                "a key with a slash",
                one(json!({"name": "A", "secretKeyRef": {"name": "db", "key": "a/b"}})),
                "spec.docker.envFrom[1].secretKeyRef.key",
                "should match",
            ),
            (
                "17 entries",
                Value::Array(many),
                "spec.docker.envFrom",
                "must have at most 16 items",
            ),
        ];
        let mut failures = Vec::new();
        for (index, (case, env_from, field, says)) in cases.into_iter().enumerate() {
            match kubectl_apply(&ctx, &format!("invalid-{index}"), &env_from) {
                Ok(out) => failures.push(format!("{case}: accepted: {out}")),
                Err(said) if said.contains(field) && said.contains(says) => {}
                Err(said) => {
                    failures.push(format!("{case}: does not name {field} / {says:?}: {said}"))
                }
            }
        }
        let changed = json!([{"secretRef": {"name": "other"}}]);
        match kubectl_apply(&ctx, "valid", &changed) {
            Ok(out) => failures.push(format!("changing envFrom: accepted: {out}")),
            Err(said) if said.contains("spec.docker") && said.contains("delete and recreate") => {}
            Err(said) => failures.push(format!("changing envFrom: {said}")),
        }
        ensure(failures.is_empty(), || {
            format!(
                "{} case(s) not as expected:\n  {}",
                failures.len(),
                failures.join("\n  ")
            )
        })
    })
}

/// `kubectl apply -f -` of the AiApp `name` with `env_from`: its output, or what it said
/// when it failed (or why it could not run).
fn kubectl_apply(ctx: &TestContext, name: &str, env_from: &Value) -> Result<String, String> {
    let run = || -> Result<(bool, String, String)> {
        let mut spec = serde_json::to_value(spec(100, 200, "SUCCEEDED"))?;
        spec["docker"]["envFrom"] = env_from.clone();
        let manifest = json!({
            "apiVersion": "dataforest.dev/v1alpha1",
            "kind": "AiApp",
            "metadata": {"name": name, "namespace": ctx.namespace},
            "spec": spec,
        });
        let mut child = ctx
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        write_stdin(&mut child, manifest.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        Ok((out.status.success(), stdout, stderr))
    };
    match run() {
        Ok((true, stdout, _)) => Ok(stdout),
        Ok((false, stdout, stderr)) => Err(format!("{stderr}{stdout}")),
        Err(error) => Err(format!("kubectl could not run: {error:#}")),
    }
}

fn write_stdin(child: &mut std::process::Child, input: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut stdin = child.stdin.take().context("kubectl's stdin")?;
    stdin.write_all(input)?;
    Ok(())
}
