//! The Argo CD health check's and actions' test objects are the status the operator really
//! writes: each test drives the operator and the emulator into a situation, captures the
//! AiApp, scrubs what changes from run to run (uid, resourceVersion, times, app ids and
//! names, the namespace, the emulator's URL) and compares it with the committed file under
//! `deploy/argocd/resource_customizations/dataforest.dev/AiApp/` (`testdata/` for
//! health_test.yaml, `actions/testdata/` for action_test.yaml, which
//! `hack/test-argocd-health.sh` runs on gopher-lua and Lua 5.1).
//! `UPDATE_ARGOCD_TESTDATA=1 cargo test --test e2e -- argocd::` rewrites the files instead.
//!
//! The actions are applied as Argo CD applies them: the action's Lua runs on the live
//! object on gopher-lua (the runner `hack/argocd-lua.sh` builds, with `-patch`), and the
//! merge patch of its result is sent to the apiserver; the operator must then do what the
//! action promises.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dataforest_emulator::{Fault, Faults};
use dataforest_operator::crd::{AiApp, Phase};
use dataforest_operator::dataforest::{
    ClientConfig, Credentials, DataForestClient, Operation, RetryPolicy,
};
use dataforest_operator::plan::PAUSED_ANNOTATION;
use kube::api::{Patch, PatchParams, PostParams};
use libtest_mimic::Failed;
use serde_json::{Value, json};

use crate::fixture::{self, ensure};
use crate::world::{
    ACCESS_KEY, SECRET_KEY, SECRET_NAME, World, condition, phase, spec, with_world,
};

/// An hour: longer than any test, so only the operator's or a person's kill ends the app.
const FOREVER_MS: u64 = 3_600_000;
/// The namespace the committed objects show.
const NAMESPACE: &str = "ml-team";
/// The endpoint the committed objects show instead of the emulator's URL.
const ENDPOINT: &str = "https://dataforest.example";
const UPDATE_VAR: &str = "UPDATE_ARGOCD_TESTDATA";

fn customization() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/argocd/resource_customizations/dataforest.dev/AiApp")
}

/// The committed test objects of one test: compared with what the operator wrote, or
/// rewritten when `UPDATE_ARGOCD_TESTDATA=1`.
struct Testdata {
    update: bool,
    stale: Vec<String>,
}

impl Testdata {
    fn new() -> Testdata {
        Testdata {
            update: std::env::var(UPDATE_VAR).is_ok_and(|v| v == "1"),
            stale: Vec::new(),
        }
    }

    /// Records `object` as the committed file `path` (below the AiApp's folder).
    fn record(&mut self, path: &str, object: &Value) -> Result<()> {
        let text = format!(
            "# Written by tests/e2e/argocd.rs from what the operator wrote; \
             {UPDATE_VAR}=1 rewrites it.\n{}",
            serde_yaml_ng::to_string(object)?
        );
        let file = customization().join(path);
        if self.update {
            std::fs::create_dir_all(file.parent().context("no parent")?)?;
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
            return Ok(());
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        if committed != text {
            let first = committed
                .lines()
                .zip(text.lines())
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("committed {a:?}, now {b:?}"))
                .unwrap_or_else(|| "one is longer".to_owned());
            self.stale.push(format!("{path} ({first})"));
        }
        Ok(())
    }

    /// Records the AiApp `name` as the operator wrote it, scrubbed; returns what it wrote.
    async fn capture(&mut self, world: &World, name: &str, paths: &[&str]) -> Result<Value> {
        let app = world.aiapps().get(name).await?;
        let object = scrub(world, &app)?;
        for path in paths {
            self.record(path, &object)?;
        }
        Ok(object)
    }

    fn finish(self) -> Result<()> {
        if self.stale.is_empty() {
            return Ok(());
        }
        bail!(
            "the committed Argo CD test objects differ from what the operator writes now: {}. \
             If the change is meant, run {UPDATE_VAR}=1 cargo test --test e2e -- argocd:: \
             and check health_test.yaml and action_test.yaml against the new objects",
            self.stale.join("; ")
        )
    }
}

/// The AiApp as a test object: the fields Argo CD and the scripts see, with every value
/// that differs from run to run replaced by a fixed one.
fn scrub(world: &World, app: &AiApp) -> Result<Value> {
    let mut object = serde_json::to_value(app)?;
    let metadata = object["metadata"].as_object_mut().context("no metadata")?;
    metadata.retain(|key, _| {
        matches!(
            key.as_str(),
            "name" | "namespace" | "annotations" | "labels" | "finalizers" | "generation"
        )
    });
    let mut values = Volatile::default();
    values.add(&world.namespace, NAMESPACE.to_owned());
    values.add(&world.emulator.url(), ENDPOINT.to_owned());
    let status = app.status.clone().unwrap_or_default();
    let mut prefixes = 0;
    let mut prefix = |values: &mut Volatile, p: &str| {
        if !values.has(p) {
            prefixes += 1;
            values.add(p, format!("pfx{prefixes}"));
        }
    };
    for record in &status.attempts {
        prefix(&mut values, &record.name_prefix);
    }
    if let Some(submission) = &status.submission {
        prefix(&mut values, &submission.name_prefix);
    }
    // Apps in the order the attempts name them, then any other app of this AiApp.
    let mut ids: Vec<String> = Vec::new();
    for record in &status.attempts {
        ids.extend(record.id.iter().map(|id| id.to_string()));
        ids.extend(record.candidates.iter().map(|id| id.to_string()));
    }
    ids.extend(status.id.iter().map(|id| id.to_string()));
    let mut apps = world.emulator.apps();
    apps.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    for remote in &apps {
        if values.has(&remote.name_prefix) {
            ids.push(remote.id.clone());
        }
    }
    for id in ids {
        if values.has(&id) {
            continue;
        }
        let n = values.apps + 1;
        values.apps = n;
        values.add(&id, format!("app{n:0>19}"));
        if let Some(remote) = apps.iter().find(|a| a.id == id) {
            prefix(&mut values, &remote.name_prefix);
            let short = values.get(&remote.name_prefix);
            values.add(&remote.name, format!("{short}-0000-{n:0>4}"));
        }
    }
    if let Some(name) = &status.name {
        let n = values.apps + 1;
        values.add(name, format!("app-name-{n}"));
    }
    if let Some(yarn) = &status.app_id {
        values.add(yarn, "application_1700000000000_0001".to_owned());
    }
    for (n, container) in status.containers.iter().enumerate() {
        values.add(&container.name, format!("container_{}", n + 1));
    }
    if let Some(token) = &status.resubmit_token {
        let attempt = token.split('-').next().unwrap_or("0");
        values.add(token, format!("{attempt}-00000000"));
    }
    if let Some(elapsed) = object.pointer_mut("/status/elapsedMillis") {
        *elapsed = json!(60_000);
    }
    values.apply(&mut object);
    Ok(object)
}

/// Strings that change from run to run, and what the committed objects show instead.
#[derive(Default)]
struct Volatile {
    pairs: Vec<(String, String)>,
    apps: usize,
}

impl Volatile {
    fn add(&mut self, from: &str, to: String) {
        if !from.is_empty() && !self.has(from) {
            self.pairs.push((from.to_owned(), to));
        }
    }

    fn has(&self, from: &str) -> bool {
        self.pairs.iter().any(|(f, _)| f == from)
    }

    fn get(&self, from: &str) -> String {
        self.pairs
            .iter()
            .find(|(f, _)| f == from)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    }

    fn apply(&self, value: &mut Value) {
        let mut pairs = self.pairs.clone();
        // Longest first: an app's name holds its prefix.
        pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        walk_strings(value, &|s: &str| {
            let mut out = s.to_owned();
            for (from, to) in &pairs {
                out = out.replace(from, to);
            }
            fixed_times(&out)
        });
    }
}

fn walk_strings(value: &mut Value, f: &dyn Fn(&str) -> String) {
    match value {
        Value::String(s) => *s = f(s),
        Value::Array(items) => items.iter_mut().for_each(|v| walk_strings(v, f)),
        Value::Object(map) => {
            let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            for (key, mut item) in entries {
                walk_strings(&mut item, f);
                map.insert(f(&key), item);
            }
        }
        _ => {}
    }
}

/// Replaces every RFC 3339 time (`2026-12-04T10:03:02`, a fraction, `Z` or an offset) by
/// one fixed time.
fn fixed_times(s: &str) -> String {
    const FIXED: &str = "2026-01-01T00:00:00Z";
    let bytes = s.as_bytes();
    let digits = |at: usize, n: usize| {
        bytes
            .get(at..at + n)
            .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
    };
    let is = |at: usize, c: u8| bytes.get(at) == Some(&c);
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let time = digits(i, 4)
            && is(i + 4, b'-')
            && digits(i + 5, 2)
            && is(i + 7, b'-')
            && digits(i + 8, 2)
            && is(i + 10, b'T')
            && digits(i + 11, 2)
            && is(i + 13, b':')
            && digits(i + 14, 2)
            && is(i + 16, b':')
            && digits(i + 17, 2);
        if !time {
            let c = s[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        let mut end = i + 19;
        if is(end, b'.') {
            end += 1;
            while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        if is(end, b'Z') {
            end += 1;
        } else if (is(end, b'+') || is(end, b'-')) && digits(end + 1, 2) && is(end + 3, b':') {
            end += 6;
        }
        out.push_str(FIXED);
        i = end;
    }
    out
}

/// The Argo CD Lua runner (built once by `hack/argocd-lua.sh`).
fn runner() -> Result<PathBuf> {
    static RUNNER: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let mut slot = RUNNER
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    if let Some(path) = slot.as_ref() {
        return Ok(path.clone());
    }
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/argocd-lua.sh"))
        .stderr(Stdio::inherit())
        .output()?;
    ensure(out.status.success(), || {
        "hack/argocd-lua.sh could not build the Argo CD Lua runner".to_owned()
    })?;
    let path = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    *slot = Some(path.clone());
    Ok(path)
}

/// Runs the action `action` on the live AiApp as Argo CD does, and sends its merge patch.
async fn run_action(world: &World, name: &str, action: &str) -> Result<Value> {
    let live = serde_json::to_vec(&world.aiapps().get(name).await?)?;
    let script = customization()
        .join("actions")
        .join(action)
        .join("action.lua");
    let mut child = Command::new(runner()?)
        .arg("-patch")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("no stdin")?.write_all(&live)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "the {action} action failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let patch: Value = serde_json::from_slice(&out.stdout)?;
    world
        .aiapps()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(patch)
}

/// `object` with `change` merged in (what an action's result must be).
fn merged(object: &Value, change: &Value) -> Value {
    let mut out = object.clone();
    merge(&mut out, change);
    out
}

fn merge(target: &mut Value, change: &Value) {
    match (target, change) {
        (Value::Object(target), Value::Object(change)) => {
            for (key, value) in change {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, change) => *target = change.clone(),
    }
}

async fn annotate(world: &World, name: &str, key: &str, value: &str) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    world
        .aiapps()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn create_with(world: &World, name: &str, app: Value) -> Result<()> {
    let mut object = json!({
        "apiVersion": "dataforest.dev/v1alpha1",
        "kind": "AiApp",
        "metadata": {"name": name},
    });
    merge(&mut object, &app);
    let app: AiApp = serde_json::from_value(object)?;
    world.aiapps().create(&PostParams::default(), &app).await?;
    Ok(())
}

fn spec_json(accepted_ms: u64, running_ms: u64, outcome: &str) -> Result<Value> {
    Ok(serde_json::to_value(spec(
        accepted_ms,
        running_ms,
        outcome,
    ))?)
}

fn has_reason(app: &AiApp, type_: &str, status: &str, reason: &str) -> bool {
    condition(app, type_) == Some((status, reason))
}

fn person(world: &World) -> Result<DataForestClient> {
    Ok(DataForestClient::new(
        ClientConfig {
            endpoint: world.emulator.url(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            retry: RetryPolicy::default(),
        },
        Credentials::new(ACCESS_KEY, SECRET_KEY),
    )?)
}

fn attempt(app: &AiApp) -> Option<i32> {
    app.status.as_ref().and_then(|s| s.attempt)
}

fn running_with_containers(app: &AiApp) -> bool {
    phase(app) == Some(Phase::Running)
        && app
            .status
            .as_ref()
            .is_some_and(|s| !s.containers.is_empty())
}

/// One AiApp for each situation of the phases test, all at once.
async fn create_every_situation(world: &World) -> Result<()> {
    let forever = spec_json(0, FOREVER_MS, "SUCCEEDED")?;
    let quick =
        |outcome: &str| -> Result<Value> { Ok(json!({"spec": spec_json(0, 200, outcome)?})) };
    create_with(world, "succeeded", quick("SUCCEEDED")?).await?;
    create_with(world, "failed", quick("FAILED")?).await?;
    for name in ["killed", "running", "paused-running"] {
        create_with(world, name, json!({"spec": forever})).await?;
    }
    let absent = merged(&forever, &json!({"credentials": {"secretName": "absent"}}));
    create_with(world, "no-credentials", json!({"spec": absent})).await?;
    let paused = json!({"annotations": {PAUSED_ANNOTATION: "true"}});
    create_with(
        world,
        "paused",
        json!({"metadata": paused, "spec": forever}),
    )
    .await?;
    let held = merged(&forever, &json!({"suspend": true}));
    create_with(world, "suspended", json!({"spec": held})).await?;
    let retried = merged(&spec_json(0, 100, "FAILED")?, &json!({"backoffLimit": 1}));
    create_with(world, "retry-pending", json!({"spec": retried})).await?;
    let queued = merged(
        &spec_json(FOREVER_MS, 0, "SUCCEEDED")?,
        &json!({"startDeadlineSeconds": 1}),
    );
    create_with(world, "deadline-exceeded", json!({"spec": queued})).await
}

/// Waits for each AiApp of [`create_every_situation`] to reach its situation, and records it.
async fn capture_every_situation(world: &World, data: &mut Testdata) -> Result<()> {
    let ended = |p: Phase| move |a: &AiApp| phase(a) == Some(p);
    world
        .wait_for("succeeded", "Succeeded", ended(Phase::Succeeded))
        .await?;
    let both = ["testdata/succeeded.yaml", "actions/testdata/succeeded.yaml"];
    data.capture(world, "succeeded", &both).await?;
    world
        .wait_for("failed", "Failed", ended(Phase::Failed))
        .await?;
    data.capture(world, "failed", &["testdata/failed.yaml"])
        .await?;

    let running = world
        .wait_for("killed", "Running", running_with_containers)
        .await?;
    let id = running.status.and_then(|s| s.id).context("no id")?;
    person(world)?.kill(&id).await?;
    world
        .wait_for("killed", "Killed", ended(Phase::Killed))
        .await?;
    data.capture(world, "killed", &["testdata/killed.yaml"])
        .await?;

    let waiting =
        |reason: &'static str| move |a: &AiApp| has_reason(a, "Submitted", "False", reason);
    world
        .wait_for(
            "no-credentials",
            "CredentialsNotFound",
            waiting("CredentialsNotFound"),
        )
        .await?;
    let path = "testdata/pending-no-credentials.yaml";
    data.capture(world, "no-credentials", &[path]).await?;
    world
        .wait_for("paused", "Paused", waiting("Paused"))
        .await?;
    data.capture(world, "paused", &["testdata/pending-paused.yaml"])
        .await?;

    world
        .wait_for("paused-running", "Running", running_with_containers)
        .await?;
    annotate(world, "paused-running", PAUSED_ANNOTATION, "true").await?;
    let paused = |a: &AiApp| has_reason(a, "Synced", "False", "Paused");
    world.wait_for("paused-running", "Paused", paused).await?;
    let paused = data
        .capture(world, "paused-running", &["testdata/running-paused.yaml"])
        .await?;
    let older = "testdata/running-paused-older-operator.yaml";
    data.record(older, &without_reason(&paused))?;

    world
        .wait_for("retry-pending", "waiting to retry", waiting("Retrying"))
        .await?;
    data.capture(world, "retry-pending", &["testdata/pending-retry.yaml"])
        .await?;
    world
        .wait_for("deadline-exceeded", "Failed", ended(Phase::Failed))
        .await?;
    let path = "testdata/failed-deadline.yaml";
    data.capture(world, "deadline-exceeded", &[path]).await?;
    Ok(())
}

/// Suspend on the running AiApp, resume on the one suspended before its submit, each as
/// Argo CD applies an action; the operator kills the app, then submits the other.
async fn suspend_and_resume(world: &World, data: &mut Testdata) -> Result<()> {
    let live = world
        .wait_for("running", "Running", running_with_containers)
        .await?;
    let id = live.status.and_then(|s| s.id).context("no id")?;
    // As applied, before the operator saw it; and as an operator newer than the health
    // check might write it, with a phase the check does not know.
    let now = scrub(world, &world.aiapps().get("running").await?)?;
    let mut fresh = now.clone();
    fresh
        .as_object_mut()
        .context("not an object")?
        .remove("status");
    fresh["metadata"]
        .as_object_mut()
        .context("no metadata")?
        .remove("finalizers");
    data.record("testdata/new.yaml", &fresh)?;
    let newer = merged(&now, &json!({"status": {"phase": "Archived"}}));
    data.record("testdata/newer-operator-phase.yaml", &newer)?;

    let both = ["testdata/running.yaml", "actions/testdata/running.yaml"];
    let before = data.capture(world, "running", &both).await?;
    let suspend = merged(&before, &json!({"spec": {"suspend": true}}));
    data.record("actions/testdata/running-suspend.yaml", &suspend)?;
    run_action(world, "running", "suspend").await?;
    let suspended = |a: &AiApp| phase(a) == Some(Phase::Suspended);
    let after = world.wait_for("running", "Suspended", suspended).await?;
    let apps = world.emulator.apps();
    ensure(
        apps.iter()
            .any(|a| a.id == id && a.killed && a.state == "KILLED"),
        || format!("the suspend did not kill {id}: {apps:?}"),
    )?;
    ensure(attempt(&after) == Some(1), || {
        format!("status {:?}", after.status)
    })?;
    let path = "testdata/suspended-after-kill.yaml";
    data.capture(world, "running", &[path]).await?;

    world.wait_for("suspended", "Suspended", suspended).await?;
    let both = ["testdata/suspended.yaml", "actions/testdata/suspended.yaml"];
    let before = data.capture(world, "suspended", &both).await?;
    let resume = merged(&before, &json!({"spec": {"suspend": false}}));
    data.record("actions/testdata/suspended-resume.yaml", &resume)?;
    run_action(world, "suspended", "resume").await?;
    let resumed = |a: &AiApp| phase(a) == Some(Phase::Running) && attempt(a) == Some(1);
    world.wait_for("suspended", "Running", resumed).await?;
    Ok(())
}

/// Every phase a person meets, as the operator writes it, and the suspend and resume
/// actions applied to the real apiserver: suspend kills the running app and the AiApp
/// ends up Suspended, resume submits it.
pub fn the_health_testdata_is_the_status_the_operator_writes_and_suspend_and_resume_work()
-> Result<(), Failed> {
    fixture::run("argocd-phases", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut data = Testdata::new();
                create_every_situation(world).await?;
                capture_every_situation(world, &mut data).await?;
                suspend_and_resume(world, &mut data).await?;
                data.finish()
            })
        })
        .await
    })
}

/// An AiApp in Unknown after a lost submit answer, as the operator writes it, and the
/// resubmit action applied to the real apiserver: the operator submits attempt 2, once.
pub fn an_unknown_aiapp_is_captured_and_the_resubmit_action_submits_once() -> Result<(), Failed> {
    fixture::run("argocd-unknown", |ctx| async move {
        let faults = Faults {
            error_after: Fault::next(1).on(&[Operation::Submit]).with_status(504),
            listing_lag_ms: 60_000,
            ..Faults::default()
        };
        let world = World::start_with(ctx.client, &ctx.namespace, faults, |config| {
            config.recovery_grace = Duration::from_secs(1);
            config.max_automatic_resubmits = 0;
        })
        .await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut data = Testdata::new();
                world
                    .create("ambiguous", spec(0, FOREVER_MS, "SUCCEEDED"))
                    .await?;
                world
                    .wait_for("ambiguous", "Unknown", |a| phase(a) == Some(Phase::Unknown))
                    .await?;
                let before = data
                    .capture(
                        world,
                        "ambiguous",
                        &["testdata/unknown.yaml", "actions/testdata/unknown.yaml"],
                    )
                    .await?;
                let token = before["status"]["resubmitToken"]
                    .as_str()
                    .context("no resubmitToken")?
                    .to_owned();
                data.record(
                    "actions/testdata/unknown-resubmit.yaml",
                    &merged(
                        &before,
                        &json!({"metadata": {"annotations": {"dataforest.dev/resubmit": token}}}),
                    ),
                )?;
                // The app attempt 1 made stays unlisted; attempt 2's shows at once.
                world.emulator.set_faults(Faults::default())?;
                let patch = run_action(world, "ambiguous", "resubmit").await?;
                let sent = patch.pointer("/metadata/annotations/dataforest.dev~1resubmit");
                ensure(
                    sent.and_then(Value::as_str)
                        .is_some_and(|t| t.starts_with("1-")),
                    || format!("the action sent {patch}"),
                )?;
                let resubmitted = world
                    .wait_for("ambiguous", "Running as attempt 2", |a| {
                        phase(a) == Some(Phase::Running) && attempt(a) == Some(2)
                    })
                    .await?;
                let apps = world.emulator.apps();
                ensure(apps.len() == 2, || format!("apps {apps:?}"))?;
                ensure(world.emulator.stats().total(Operation::Submit) == 2, || {
                    "the confirmation submitted more than once".to_owned()
                })?;
                ensure(
                    resubmitted
                        .status
                        .as_ref()
                        .and_then(|s| s.resubmit_token.clone())
                        .is_none(),
                    || format!("status {:?}", resubmitted.status),
                )?;
                data.finish()
            })
        })
        .await
    })
}

/// Keys Data Forest refuses, before the submit (Pending) and on an app that already runs
/// (Running, its polls parked): both need a person, as the operator writes them.
pub fn refused_keys_are_captured_before_and_after_the_submit() -> Result<(), Failed> {
    fixture::run("argocd-refused", |ctx| async move {
        let world = World::start(ctx.client, &ctx.namespace, Faults::default()).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let mut data = Testdata::new();
                world
                    .create("running", spec(0, FOREVER_MS, "SUCCEEDED"))
                    .await?;
                world
                    .wait_for("running", "Running", running_with_containers)
                    .await?;
                // The key is rotated at Data Forest and the Secret holds the old one.
                world.delete_secret(SECRET_NAME).await?;
                world
                    .create_secret(SECRET_NAME, "a-revoked-secret-key")
                    .await?;
                world
                    .wait_for("running", "Unauthorized", |a| {
                        has_reason(a, "Synced", "False", "Unauthorized")
                    })
                    .await?;
                let running = data
                    .capture(world, "running", &["testdata/running-unauthorized.yaml"])
                    .await?;
                data.record(
                    "testdata/running-unauthorized-older-operator.yaml",
                    &without_reason(&running),
                )?;
                world
                    .create("pending", spec(0, FOREVER_MS, "SUCCEEDED"))
                    .await?;
                world
                    .wait_for("pending", "Unauthorized", |a| {
                        has_reason(a, "Submitted", "False", "Unauthorized")
                    })
                    .await?;
                data.capture(world, "pending", &["testdata/pending-unauthorized.yaml"])
                    .await?;
                data.finish()
            })
        })
        .await
    })
}

/// The object as an operator older than `status.reason` wrote it: the health check then
/// reads the reason from the conditions.
fn without_reason(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(status) = out.get_mut("status").and_then(Value::as_object_mut) {
        status.remove("reason");
    }
    out
}
