//! Platform credentials: the operator's default Secret (`--default-credentials-secret`, in
//! its own namespace) serves the AiApps without `spec.credentials` in the namespaces its
//! settings list (`--default-credentials-namespaces`), and no other; a change of that
//! Secret wakes the AiApps that use it; and the chart's ValidatingAdmissionPolicy refuses
//! to create an AiApp without credentials where no default Secret serves it, on CREATE
//! only.
//!
//! The operator is the real binary (`OperatorProcess`), with the flags as environment
//! variables, as the chart sets them. The test's own namespace is the operator's
//! (`POD_NAMESPACE`); the AiApps live in namespaces made for the test.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail, ensure};
use dataforest_emulator::{EmulatorAccount, EmulatorConfig, Timeline};
use dataforest_operator::crd::{AiApp, AiAppSpec, FIELD_MANAGER, FINALIZER, Phase};
use k8s_openapi::api::core::v1::{Event, Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use libtest_mimic::Failed;
use serde_json::json;

use crate::fixture::{self, TestContext};
use crate::world::{ACCESS_KEY, ACCOUNT_ID, OperatorProcess, PATIENCE, SECRET_KEY, World, spec};

/// The default Secret's name, in the operator's namespace.
const DEFAULT_SECRET: &str = "platform-ncp";
/// The platform's account: what the default Secret holds. The world's own account
/// (`ACCESS_KEY`, `ACCOUNT_ID`) is a team's.
const PLATFORM_ACCESS_KEY: &str = "PLATFORMACCESSKEY001";
const PLATFORM_SECRET_KEY: &str = "platform-secret-key-never-shown-9Xq2";
const PLATFORM_ACCOUNT_ID: &str = "platformAccount0000001";

/// (1) In a listed namespace an AiApp without credentials runs on the platform's account
/// (and one that names its own Secret keeps its own account); in another namespace it
/// waits with `CredentialsNotFound`, naming that namespace, and nothing reaches Data Forest.
pub fn the_default_secret_runs_aiapps_of_listed_namespaces_only_on_the_platform_account()
-> Result<(), Failed> {
    fixture::run("platform-creds", |ctx| async move {
        let world = platform_world(&ctx).await?;
        let outcome = served_and_refused(&ctx, &world).await;
        world.stop().await?;
        outcome
    })
}

async fn served_and_refused(ctx: &TestContext, world: &World) -> Result<()> {
    let team = create_namespace(&ctx.client, &format!("{}-team", ctx.namespace)).await?;
    let other = create_namespace(&ctx.client, &format!("{}-other", ctx.namespace)).await?;
    let url = world.emulator.url();
    create_secret(
        &ctx.client,
        &ctx.namespace,
        DEFAULT_SECRET,
        platform_keys(&url),
    )
    .await?;
    // The team's own Secret, for the AiApp that names it.
    let team_keys = keys(ACCESS_KEY, SECRET_KEY, ACCOUNT_ID, &url);
    create_secret(&ctx.client, &team, "team-ncp", team_keys).await?;
    let operator = start_operator(ctx, world, &[&team, &other], &team)?;
    let log = operator.log.display().to_string();

    let outcome = async {
        let teams: Api<AiApp> = Api::namespaced(ctx.client.clone(), &team);
        teams
            .create(
                &PostParams::default(),
                &AiApp::new("shared", no_credentials()),
            )
            .await?;
        let mut own = spec(100, 200, "SUCCEEDED");
        own.credentials = Some(serde_json::from_value(json!({"secretName": "team-ncp"}))?);
        teams
            .create(&PostParams::default(), &AiApp::new("own", own))
            .await?;
        let others: Api<AiApp> = Api::namespaced(ctx.client.clone(), &other);
        others
            .create(
                &PostParams::default(),
                &AiApp::new("stray", no_credentials()),
            )
            .await?;

        let stray = wait_for(&others, "stray", "CredentialsNotFound", |app| {
            condition(app, "Submitted")
                .is_some_and(|c| c.0 == "False" && c.1 == "CredentialsNotFound")
        })
        .await?;
        ensure!(
            phase(&stray) == Some(Phase::Pending),
            "stray: {:?}",
            stray.status
        );
        let (_, synced, message) = condition(&stray, "Synced").context("no Synced condition")?;
        ensure!(synced == "CredentialsNotFound", "Synced: {synced}");
        for needed in [
            "spec.credentials is not set".to_owned(),
            format!("no default credentials Secret of the operator serves namespace {other}"),
        ] {
            ensure!(
                message.contains(&needed),
                "the message does not say {needed:?}: {message}"
            );
        }
        ensure!(
            !message.contains(DEFAULT_SECRET),
            "the message names the default Secret to a namespace it does not serve: {message}"
        );
        let event = wait_for_event(&ctx.client, &other, "stray", "CredentialsNotFound").await?;
        ensure!(event.type_.as_deref() == Some("Warning"), "{event:?}");

        let shared = wait_for(&teams, "shared", "Succeeded", |a| {
            phase(a) == Some(Phase::Succeeded)
        })
        .await?;
        let own = wait_for(&teams, "own", "Succeeded", |a| {
            phase(a) == Some(Phase::Succeeded)
        })
        .await?;
        let account_of = |app: &AiApp| -> Result<String> {
            let id = app
                .status
                .as_ref()
                .and_then(|s| s.id.clone())
                .context("no status.id")?;
            world
                .emulator
                .apps()
                .into_iter()
                .find(|a| a.id == id)
                .map(|a| a.account_id)
                .ok_or_else(|| anyhow!("the emulator has no app {id}"))
        };
        ensure!(
            account_of(&shared)? == PLATFORM_ACCOUNT_ID,
            "shared ran on account {}, not the platform's",
            account_of(&shared)?
        );
        ensure!(
            account_of(&own)? == ACCOUNT_ID,
            "own ran on account {}",
            account_of(&own)?
        );
        let apps = world.emulator.apps();
        ensure!(
            apps.len() == 2,
            "want the apps of shared and own only; the emulator has {apps:?}"
        );
        // stray is still parked, with nothing submitted.
        let stray = others.get("stray").await?;
        ensure!(
            phase(&stray) == Some(Phase::Pending),
            "stray: {:?}",
            stray.status
        );
        Ok(())
    }
    .await;
    finish(operator, outcome, &log).await
}

/// (2) The default Secret holds a wrong secret key: the AiApp that uses it is refused
/// (`Unauthorized`) and parked. Fixing the Secret, and nothing else, wakes it: it runs.
pub fn fixing_the_default_secret_wakes_the_aiapps_that_use_it() -> Result<(), Failed> {
    fixture::run("platform-creds-wake", |ctx| async move {
        let world = platform_world(&ctx).await?;
        let outcome = woken_by_the_secret(&ctx, &world).await;
        world.stop().await?;
        outcome
    })
}

async fn woken_by_the_secret(ctx: &TestContext, world: &World) -> Result<()> {
    let team = create_namespace(&ctx.client, &format!("{}-team", ctx.namespace)).await?;
    let url = world.emulator.url();
    let mut wrong = platform_keys(&url);
    wrong.insert(
        "secretKey".to_owned(),
        "not-the-platform-secret-key".to_owned(),
    );
    create_secret(&ctx.client, &ctx.namespace, DEFAULT_SECRET, wrong).await?;
    let operator = start_operator(ctx, world, &[&team], &team)?;
    let log = operator.log.display().to_string();

    let outcome = async {
        let aiapps: Api<AiApp> = Api::namespaced(ctx.client.clone(), &team);
        aiapps
            .create(
                &PostParams::default(),
                &AiApp::new("parked", no_credentials()),
            )
            .await?;
        let parked = wait_for(&aiapps, "parked", "Unauthorized", |app| {
            condition(app, "Submitted").is_some_and(|c| c.0 == "False" && c.1 == "Unauthorized")
        })
        .await?;
        let version = parked.metadata.resource_version.clone();
        ensure!(
            world.emulator.apps().is_empty(),
            "an app was created with the wrong key"
        );

        let fixed = json!({"stringData": platform_keys(&url)});
        Api::<Secret>::namespaced(ctx.client.clone(), &ctx.namespace)
            .patch(
                DEFAULT_SECRET,
                &PatchParams::default(),
                &Patch::Merge(&fixed),
            )
            .await?;
        let done = wait_for(&aiapps, "parked", "Succeeded", |a| {
            phase(a) == Some(Phase::Succeeded)
        })
        .await?;
        // Only the operator wrote to the AiApp meanwhile: its status.
        ensure!(
            done.metadata.generation == parked.metadata.generation
                && done.metadata.annotations == parked.metadata.annotations,
            "the AiApp itself changed: {version:?} → {:?}",
            done.metadata
        );
        let apps = world.emulator.apps();
        ensure!(
            apps.len() == 1 && apps[0].account_id == PLATFORM_ACCOUNT_ID,
            "want one app on the platform's account; the emulator has {apps:?}"
        );
        Ok(())
    }
    .await;
    finish(operator, outcome, &log).await
}

/// (3) The chart's policy, rendered with helm and applied with kubectl, scoped to the
/// test's namespace (`watchNamespace`): without a default Secret it refuses `kubectl
/// apply` of an AiApp without credentials there, naming the namespace, and accepts one
/// with credentials and one in a namespace outside its scope; with the namespace listed
/// it accepts it; once the namespace leaves the list, creating is refused again but the
/// operator's writes to the AiApp that exists (finalizer, status) and its deletion pass.
pub fn the_charts_policy_refuses_creating_aiapps_without_credentials_where_no_default_serves()
-> Result<(), Failed> {
    fixture::run("platform-creds-vap", |ctx| async move {
        let elsewhere =
            create_namespace(&ctx.client, &format!("{}-elsewhere", ctx.namespace)).await?;
        let policy = ChartPolicy {
            ctx: &ctx,
            release: format!("pc{}", ctx.namespace.rsplit('-').next().unwrap_or_default()),
        };
        let outcome = policy_checks(&ctx, &policy, &elsewhere).await;
        let removed = policy.remove();
        outcome?;
        removed
    })
}

async fn policy_checks(ctx: &TestContext, policy: &ChartPolicy<'_>, elsewhere: &str) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let name = policy.name();
    // No default Secret: refused everywhere in scope.
    policy.apply(&[])?;
    let refusal = policy.until_create(ns, false).await?;
    for needed in [
        name.as_str(),
        "spec.credentials is not set",
        &format!("serves namespace {ns}"),
    ] {
        ensure!(
            refusal.contains(needed),
            "the refusal does not say {needed:?}: {refusal}"
        );
    }
    let mut with_credentials = spec(0, 0, "SUCCEEDED");
    with_credentials.credentials = Some(serde_json::from_value(json!({"secretName": "ncp"}))?);
    kubectl_apply_aiapp(ctx, ns, "has-credentials", &with_credentials)
        .map_err(|e| anyhow!("an AiApp with credentials was refused: {e}"))?;
    kubectl_apply_aiapp(ctx, elsewhere, "other-shard", &no_credentials())
        .map_err(|e| anyhow!("refused outside the release's namespace: {e}"))?;

    // The namespace listed: accepted. This one stays, as the operator would follow it.
    policy.apply(&[ns])?;
    let kept = policy.until_create(ns, true).await?;

    // The namespace leaves the list: creating is refused again...
    policy.apply(&["some-other-namespace"])?;
    policy.until_create(ns, false).await?;
    // ... while the writes an operator makes to an AiApp that exists still land.
    let aiapps: Api<AiApp> = Api::namespaced(ctx.client.clone(), ns);
    let finalizer = json!({"metadata": {"finalizers": [FINALIZER]}});
    aiapps
        .patch(&kept, &PatchParams::default(), &Patch::Merge(&finalizer))
        .await
        .context("adding the finalizer")?;
    let status = json!({
        "apiVersion": "dataforest.dev/v1alpha1", "kind": "AiApp",
        "metadata": {"name": kept},
        "status": {"phase": "Pending", "message": "waiting for credentials"},
    });
    aiapps
        .patch_status(
            &kept,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await
        .context("writing the status")?;
    aiapps.delete(&kept, &Default::default()).await?;
    let release = json!({"metadata": {"finalizers": null}});
    aiapps
        .patch(&kept, &PatchParams::default(), &Patch::Merge(&release))
        .await
        .context("removing the finalizer")?;
    let gone = await_condition(aiapps.clone(), &kept, |app: Option<&AiApp>| app.is_none());
    tokio::time::timeout(PATIENCE, gone)
        .await
        .map_err(|_| anyhow!("{kept} was not deleted within {PATIENCE:?}"))??;
    Ok(())
}

/// The chart's admission policy and binding of one release, applied with kubectl.
struct ChartPolicy<'a> {
    ctx: &'a TestContext,
    release: String,
}

impl ChartPolicy<'_> {
    /// The policy's (and binding's) name: `<release>-dataforest-operator-credentials`.
    fn name(&self) -> String {
        format!("{}-dataforest-operator-credentials", self.release)
    }

    /// Renders the chart's policy for this release, watching the test's namespace, with
    /// a default Secret serving `serves` (none when empty), and applies it.
    fn apply(&self, serves: &[&str]) -> Result<()> {
        let mut args = vec![
            "template".to_owned(),
            self.release.clone(),
            repo()
                .join("charts/dataforest-operator")
                .display()
                .to_string(),
            "--namespace".to_owned(),
            self.ctx.namespace.clone(),
            "--show-only".to_owned(),
            "templates/admission-policy.yaml".to_owned(),
            "--set".to_owned(),
            format!("watchNamespace={}", self.ctx.namespace),
        ];
        if !serves.is_empty() {
            args.extend([
                "--set".to_owned(),
                format!("defaultCredentials.secretName={DEFAULT_SECRET}"),
                "--set".to_owned(),
                format!("defaultCredentials.namespaces={{{}}}", serves.join(",")),
            ]);
        }
        let out = Command::new(helm()?).args(&args).output()?;
        ensure!(
            out.status.success(),
            "helm template failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        kubectl_stdin(self.ctx.kubectl().args(["apply", "-f", "-"]), &out.stdout)
            .map(drop)
            .map_err(|e| anyhow!("applying the policy: {e}"))
    }

    /// Creates AiApps without credentials in `namespace` with `kubectl apply`, a new name
    /// each time, until one is accepted (`accepted`: returns its name) or refused by this
    /// policy (returns what kubectl said): a policy change takes a moment to reach
    /// admission.
    async fn until_create(&self, namespace: &str, accepted: bool) -> Result<String> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut tries = 0;
        loop {
            tries += 1;
            let name = format!(
                "probe-{}-{tries}",
                if accepted { "accept" } else { "refuse" }
            );
            let last = match kubectl_apply_aiapp(self.ctx, namespace, &name, &no_credentials()) {
                Ok(_) if accepted => return Ok(name),
                Ok(_) => "accepted".to_owned(),
                Err(said) if said.contains(&self.name()) => {
                    if !accepted {
                        return Ok(said);
                    }
                    said
                }
                Err(said) => bail!("kubectl apply failed otherwise: {said}"),
            };
            if tokio::time::Instant::now() > deadline {
                let want = if accepted { "accepted" } else { "refused" };
                bail!(
                    "creating an AiApp in {namespace} was not {want} within {PATIENCE:?}; last: {last}"
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Deletes the policy and its binding (cluster-scoped: other tests share the apiserver).
    fn remove(&self) -> Result<()> {
        let name = self.name();
        let out = self
            .ctx
            .kubectl()
            .args([
                "delete",
                "--ignore-not-found",
                "validatingadmissionpolicybinding",
                &name,
            ])
            .output()?;
        let out2 = self
            .ctx
            .kubectl()
            .args([
                "delete",
                "--ignore-not-found",
                "validatingadmissionpolicy",
                &name,
            ])
            .output()?;
        ensure!(
            out.status.success() && out2.status.success(),
            "removing the policy {name}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out2.stderr)
        );
        Ok(())
    }
}

impl Drop for ChartPolicy<'_> {
    /// Also on a panic: a policy left behind would refuse AiApps of no other test (it is
    /// bound to this test's namespace), but it is the test's to remove.
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// `kubectl apply` of an AiApp from YAML on stdin; Err carries kubectl's stderr.
fn kubectl_apply_aiapp(
    ctx: &TestContext,
    namespace: &str,
    name: &str,
    spec: &AiAppSpec,
) -> Result<(), String> {
    let mut app = AiApp::new(name, spec.clone());
    app.metadata.namespace = Some(namespace.to_owned());
    let yaml = serde_yaml_ng::to_string(&app).map_err(|e| e.to_string())?;
    kubectl_stdin(ctx.kubectl().args(["apply", "-f", "-"]), yaml.as_bytes()).map(drop)
}

fn kubectl_stdin(command: &mut Command, input: &[u8]) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run kubectl: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(input).map_err(|e| e.to_string())?;
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// helm from `hack/helm.sh` (built once from the Go module proxy, then cached).
fn helm() -> Result<String> {
    let out = Command::new("bash")
        .arg(repo().join("hack/helm.sh"))
        .stderr(Stdio::inherit())
        .output()?;
    ensure!(out.status.success(), "hack/helm.sh failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// An emulator with two accounts: the team's (the world's keys) and the platform's.
async fn platform_world(ctx: &TestContext) -> Result<World> {
    let config = EmulatorConfig {
        accounts: vec![
            EmulatorAccount::new(ACCESS_KEY, SECRET_KEY, ACCOUNT_ID),
            EmulatorAccount::new(
                PLATFORM_ACCESS_KEY,
                PLATFORM_SECRET_KEY,
                PLATFORM_ACCOUNT_ID,
            ),
        ],
        ..EmulatorConfig::default()
    }
    .with_timeline(Timeline {
        accepted: std::time::Duration::from_millis(100),
        running: std::time::Duration::from_millis(200),
    });
    World::on_emulator(ctx.client.clone(), &ctx.namespace, config).await
}

/// The real binary, watching `watch`, with the default Secret in its own namespace (the
/// test's) serving `serves`.
fn start_operator(
    ctx: &TestContext,
    world: &World,
    watch: &[&str],
    serves: &str,
) -> Result<OperatorProcess> {
    let url = world.emulator.url();
    let watched = watch.join(",");
    OperatorProcess::start_with(
        world,
        ctx.kubeconfig(),
        "platform-credentials",
        &[
            ("WATCH_NAMESPACE", &watched),
            ("DEFAULT_CREDENTIALS_SECRET", DEFAULT_SECRET),
            ("DEFAULT_CREDENTIALS_NAMESPACES", serves),
            ("DATAFOREST_ENDPOINT", &url),
            ("RUST_LOG", "debug"),
        ],
    )
}

/// Stops the operator (SIGTERM), checks its log shows no value of the default Secret,
/// and returns the body's outcome first.
async fn finish(mut operator: OperatorProcess, outcome: Result<()>, log: &str) -> Result<()> {
    let stopped = operator.terminate().await;
    let text = operator.read_log()?;
    let outcome = outcome.with_context(|| format!("the operator's log is {log}"));
    outcome?;
    ensure!(
        stopped?,
        "the operator did not stop cleanly; its log is {log}"
    );
    ensure!(
        !text.contains(PLATFORM_SECRET_KEY) && !text.contains(SECRET_KEY),
        "a secret key is in the operator's log {log}"
    );
    Ok(())
}

fn keys(
    access_key: &str,
    secret_key: &str,
    account_id: &str,
    endpoint: &str,
) -> BTreeMap<String, String> {
    [
        ("accessKey", access_key),
        ("secretKey", secret_key),
        ("accountId", account_id),
        ("endpoint", endpoint),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn platform_keys(endpoint: &str) -> BTreeMap<String, String> {
    keys(
        PLATFORM_ACCESS_KEY,
        PLATFORM_SECRET_KEY,
        PLATFORM_ACCOUNT_ID,
        endpoint,
    )
}

async fn create_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    data: BTreeMap<String, String>,
) -> Result<()> {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        string_data: Some(data),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .with_context(|| format!("creating Secret {namespace}/{name}"))?;
    Ok(())
}

async fn create_namespace(client: &Client, name: &str) -> Result<String> {
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"dataforest.dev/test": "e2e"}}
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(name.to_owned())
}

/// A spec for the emulator without `spec.credentials`.
fn no_credentials() -> AiAppSpec {
    let mut spec = spec(100, 200, "SUCCEEDED");
    spec.credentials = None;
    spec
}

fn phase(app: &AiApp) -> Option<Phase> {
    app.status.as_ref().and_then(|s| s.phase)
}

/// (status, reason, message) of the condition `type_`.
fn condition(app: &AiApp, type_: &str) -> Option<(String, String, String)> {
    app.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| {
            (
                c.status.to_string(),
                c.reason.to_string(),
                c.message.clone(),
            )
        })
}

async fn wait_for(
    api: &Api<AiApp>,
    name: &str,
    what: &str,
    check: impl Fn(&AiApp) -> bool + Send + 'static,
) -> Result<AiApp> {
    let seen = await_condition(api.clone(), name, move |app: Option<&AiApp>| {
        app.is_some_and(&check)
    });
    let app = tokio::time::timeout(PATIENCE, seen)
        .await
        .map_err(|_| anyhow!("{name} did not become {what} within {PATIENCE:?}"))??;
    app.context("the AiApp went away")
}

/// Waits until an Event with `reason` was recorded for the AiApp `name`.
async fn wait_for_event(
    client: &Client,
    namespace: &str,
    name: &str,
    reason: &str,
) -> Result<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let list = events.list(&ListParams::default()).await?.items;
        if let Some(event) = list.into_iter().find(|e| {
            e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason)
        }) {
            return Ok(event);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no {reason} Event for {namespace}/{name} within {PATIENCE:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
