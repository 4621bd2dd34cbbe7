//! Self-tests of the test infrastructure on the real control plane: an exclusive test
//! stopping and restarting kube-apiserver, the apiserver proxy holding answers, refused
//! status writes, and the operator process paused, resumed and found leading.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use dataforest_emulator::Faults;
use dataforest_operator::crd::{AiApp, Phase};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use libtest_mimic::Failed;
use tokio::time::{Instant, timeout};

use crate::fixture::{self, ensure, refuse_status_writes};
use crate::proxy::ApiProxy;
use crate::world::{
    OPERATOR_LEASE, OperatorProcess, PATIENCE, SECRET_KEY, SECRET_NAME, World, spec,
    wait_for_leader,
};

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "data": {"written": "before"},
    }))
    .expect("a valid ConfigMap")
}

/// Whether the apiserver answers `client` within a few seconds.
async fn answers(client: &Client) -> bool {
    let namespaces = Api::<Namespace>::all(client.clone());
    let get = namespaces.get("default");
    matches!(timeout(Duration::from_secs(10), get).await, Ok(Ok(_)))
}

pub fn an_exclusive_test_stops_and_restarts_the_apiserver_and_keeps_its_data() -> Result<(), Failed>
{
    fixture::run_exclusive("exclusive-restart", |ctx| async move {
        let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        maps.create(&PostParams::default(), &config_map("kept"))
            .await?;

        ctx.apiserver().stop().await?;
        ensure(!ctx.apiserver().is_running(), || {
            "kube-apiserver still runs after stop".into()
        })?;
        ensure(!answers(&ctx.client).await, || {
            "the apiserver answered while stopped".into()
        })?;

        ctx.apiserver().start().await?;
        ensure(ctx.apiserver().is_running(), || {
            "kube-apiserver does not run after start".into()
        })?;
        // The same client works again, the data is there, and AiApps are still served.
        let kept = maps
            .get("kept")
            .await
            .context("reading back after the restart")?;
        ensure(
            kept.data
                .unwrap_or_default()
                .get("written")
                .map(String::as_str)
                == Some("before"),
            || "the ConfigMap lost its data".into(),
        )?;
        let aiapps: Api<AiApp> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        aiapps
            .create(
                &PostParams::default(),
                &AiApp::new("after-restart", spec(0, 0, "SUCCEEDED")),
            )
            .await
            .context("creating an AiApp after the restart")?;
        Ok(())
    })
}

pub fn an_exclusive_test_that_fails_or_panics_with_the_apiserver_stopped_leaves_it_running()
-> Result<(), Failed> {
    let failed = fixture::run_exclusive("exclusive-fails", |ctx| async move {
        ctx.apiserver().stop().await?;
        Err(anyhow!("a deliberate failure with kube-apiserver stopped"))
    });
    if failed.is_ok() {
        return Err("a failing exclusive body passed".into());
    }
    fixture::run("after-exclusive-failure", |ctx| async move {
        ensure(answers(&ctx.client).await, || {
            "kube-apiserver is not running after a failed exclusive test".into()
        })
    })?;

    eprintln!("the next panic is deliberate (infra self-test):");
    let panicked = std::panic::catch_unwind(|| {
        fixture::run_exclusive("exclusive-panics", |ctx| async move {
            ctx.apiserver().stop().await?;
            panic!("a deliberate panic with kube-apiserver stopped");
        })
    });
    if panicked.is_ok() {
        return Err("a panicking exclusive body did not panic".into());
    }
    fixture::run("after-exclusive-panic", |ctx| async move {
        ensure(answers(&ctx.client).await, || {
            "kube-apiserver is not running after a panicking exclusive test".into()
        })
    })
}

pub fn a_write_through_the_proxy_lands_while_its_answer_is_held_until_release() -> Result<(), Failed>
{
    fixture::run("proxy-hold", |ctx| async move {
        let proxy = ApiProxy::start(ctx.server_url()).await?;
        let proxied = proxy.client(ctx.kubeconfig()).await?;
        // Opens the connection the held write will reuse (one made while holding could
        // not finish its TLS handshake).
        ensure(answers(&proxied).await, || {
            "the apiserver does not answer through the proxy".into()
        })?;

        proxy.hold_responses();
        let maps: Api<ConfigMap> = Api::namespaced(proxied, &ctx.namespace);
        let mut write = tokio::spawn(async move {
            maps.create(&PostParams::default(), &config_map("held"))
                .await
        });

        // The write lands: a direct client sees it, and its answer reaches the proxy.
        let direct: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let deadline = Instant::now() + PATIENCE;
        let landed = loop {
            if let (Some(map), true) = (direct.get_opt("held").await?, proxy.held_bytes() > 0) {
                break map;
            }
            ensure(Instant::now() < deadline, || {
                format!(
                    "the held write did not land within {PATIENCE:?} ({} bytes held)",
                    proxy.held_bytes()
                )
            })?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // An absence can only be checked over a window.
        ensure(
            timeout(Duration::from_millis(500), &mut write)
                .await
                .is_err(),
            || "the proxied write completed while its answer was held".into(),
        )?;

        proxy.release();
        let created = timeout(PATIENCE, write)
            .await
            .context("the proxied write did not complete after release")???;
        ensure(created.metadata.uid == landed.metadata.uid, || {
            "the proxied write answered with another object".into()
        })?;
        // Other connections the client opened meanwhile release theirs moments later.
        let deadline = Instant::now() + PATIENCE;
        while proxy.held_bytes() > 0 {
            ensure(Instant::now() < deadline, || {
                format!("{} bytes still held after release", proxy.held_bytes())
            })?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    })
}

pub fn status_writes_are_refused_naming_the_policy_until_allowed_or_dropped() -> Result<(), Failed>
{
    fixture::run("status-refused", |ctx| async move {
        let aiapps: Api<AiApp> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        aiapps
            .create(
                &PostParams::default(),
                &AiApp::new("subject", spec(0, 0, "SUCCEEDED")),
            )
            .await?;
        let status = |message: &str| {
            let patch = serde_json::json!({"status": {"message": message}});
            let aiapps = aiapps.clone();
            async move {
                aiapps
                    .patch_status("subject", &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
        };

        let refusal = refuse_status_writes(&ctx).await?;
        let policy = refusal.policy_name().to_owned();
        match status("refused").await {
            Err(kube::Error::Api(refused)) if refused.message.contains(&policy) => {}
            other => {
                return Err(anyhow!(
                    "the status write was not refused by {policy}: {other:?}"
                ));
            }
        }
        // Only status is refused: the AiApp itself can still be written.
        let label = serde_json::json!({"metadata": {"labels": {"still": "writable"}}});
        aiapps
            .patch("subject", &PatchParams::default(), &Patch::Merge(&label))
            .await
            .context("a metadata write was refused too")?;

        refusal.allow().await?;
        let written = status("accepted")
            .await
            .context("a status write was refused after allow")?;
        ensure(
            written.status.and_then(|s| s.message).as_deref() == Some("accepted"),
            || "the accepted status write did not stick".into(),
        )?;
        policy_gone(&ctx.client, &policy).await?;

        // Dropped instead of allowed: the policy and binding go as well.
        let dropped = refuse_status_writes(&ctx).await?;
        drop(dropped);
        policy_gone(&ctx.client, &policy).await?;
        Ok(())
    })
}

async fn policy_gone(client: &Client, name: &str) -> Result<()> {
    let policy = Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .get_opt(name)
        .await?;
    let binding = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .get_opt(name)
        .await?;
    ensure(policy.is_none() && binding.is_none(), || {
        format!(
            "{name} is left: policy {}, binding {}",
            policy.is_some(),
            binding.is_some()
        )
    })
}

pub fn an_operator_process_behind_the_proxy_leads_runs_an_aiapp_and_logs_as_asked()
-> Result<(), Failed> {
    fixture::run("operator-behind-proxy", |ctx| async move {
        let world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        world.create_secret(SECRET_NAME, SECRET_KEY).await?;
        let proxy = ApiProxy::start(ctx.server_url()).await?;
        let kubeconfig = proxy.kubeconfig(ctx.kubeconfig())?;
        let operator = OperatorProcess::start_with(
            &world,
            &kubeconfig,
            "op-proxied",
            &[("RUST_LOG", "debug"), ("LEASE_NAME", "infra-lease")],
        )?;

        wait_for_leader(&ctx.client, &ctx.namespace, "infra-lease", "op-proxied").await?;
        world.create("via-proxy", spec(0, 0, "SUCCEEDED")).await?;
        world
            .wait_for("via-proxy", "Succeeded", |app| {
                app.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded)
            })
            .await?;
        ensure(proxy.connections() > 0, || {
            "the operator did not go through the proxy".into()
        })?;
        let log = operator.read_log()?;
        ensure(log.contains("\"level\":\"DEBUG\""), || {
            format!("RUST_LOG=debug did not reach the operator; its log:\n{log}")
        })?;
        drop(operator);
        world.stop().await
    })
}

/// The process state letter in /proc/<pid>/stat: `T` when stopped by a signal.
fn process_state(pid: u32) -> Result<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The name in parentheses may hold spaces; the state follows the last `)`.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .with_context(|| format!("unreadable /proc/{pid}/stat: {stat}"))
}

async fn wait_for_state(pid: u32, what: &str, check: impl Fn(char) -> bool) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let state = process_state(pid)?;
        if check(state) {
            return Ok(());
        }
        ensure(Instant::now() < deadline, || {
            format!("process {pid} did not become {what}; its state is {state}")
        })?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn a_paused_operator_loses_its_lease_to_a_running_one_and_resumes() -> Result<(), Failed> {
    fixture::run("operator-paused", |ctx| async move {
        let world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
        world.create_secret(SECRET_NAME, SECRET_KEY).await?;
        let first = OperatorProcess::start(&world, ctx.kubeconfig(), "op-first")?;
        wait_for_leader(&ctx.client, &ctx.namespace, OPERATOR_LEASE, "op-first").await?;

        first.pause()?;
        wait_for_state(first.pid(), "stopped", |state| state == 'T').await?;
        // A paused leader cannot renew: once its lease runs out the other one leads.
        let second = OperatorProcess::start(&world, ctx.kubeconfig(), "op-second")?;
        wait_for_leader(&ctx.client, &ctx.namespace, OPERATOR_LEASE, "op-second").await?;

        first.resume()?;
        wait_for_state(first.pid(), "running again", |state| state != 'T').await?;
        drop((first, second));
        world.stop().await
    })
}
