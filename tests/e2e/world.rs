//! A test's world: the Data Forest emulator, a credentials Secret pointing at it, and
//! the operator running in-process on the test's namespace. Dropped or `stop`ped, it
//! stops both.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use dataforest_emulator::{
    AppSnapshot, Emulator, EmulatorConfig, EmulatorHandle, Faults, Timeline,
};
use dataforest_operator::controller::{self, ControllerConfig, Runtime};
use dataforest_operator::crd::{AiApp, AiAppSpec, Phase};
use dataforest_operator::credentials::CredentialsPolicy;
use dataforest_operator::dataforest::RetryPolicy;
use dataforest_operator::metrics::Metrics;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ACCESS_KEY: &str = "E2EACCESSKEY00000001";
pub const SECRET_KEY: &str = "e2e-secret-key-never-logged";
pub const ACCOUNT_ID: &str = "e2eAccount000000000001";
pub const SECRET_NAME: &str = "ncp-credentials";

/// How long any one wait in these tests may take before it fails the test.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct World {
    pub client: Client,
    pub namespace: String,
    pub emulator: EmulatorHandle,
    operator: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// Operator settings that make the tests take seconds, not minutes.
pub fn fast_config(namespace: &str, endpoint: &str) -> ControllerConfig {
    ControllerConfig {
        credentials: CredentialsPolicy::new(endpoint, &[endpoint.to_owned()])
            .expect("the emulator's URL is an endpoint"),
        namespaces: vec![namespace.to_owned()],
        poll_min: Duration::from_millis(200),
        poll_ceiling: Duration::from_secs(1),
        recovery_grace: Duration::from_secs(3),
        not_found_grace: Duration::from_secs(2),
        deletion_bound: Duration::from_secs(30),
        api_timeout: Duration::from_secs(5),
        api_retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        },
        concurrency: 8,
        instance: "e2e".to_owned(),
        ..ControllerConfig::default()
    }
}

impl World {
    /// Emulator (with `faults`), Secret, and a running operator.
    pub async fn start(client: Client, namespace: &str, faults: Faults) -> Result<World> {
        World::start_with(client, namespace, faults, |_| {}).await
    }

    /// Emulator (with `faults`), Secret, and an operator with `tweak` applied to its
    /// settings.
    pub async fn start_with(
        client: Client,
        namespace: &str,
        faults: Faults,
        tweak: impl FnOnce(&mut ControllerConfig),
    ) -> Result<World> {
        let mut world = World::without_operator(client, namespace, faults).await?;
        world.create_secret(SECRET_NAME, SECRET_KEY).await?;
        world.start_operator(tweak);
        Ok(world)
    }

    /// The emulator only: the test creates the Secret and starts the operator itself.
    pub async fn without_operator(
        client: Client,
        namespace: &str,
        faults: Faults,
    ) -> Result<World> {
        let config = EmulatorConfig::default()
            .with_account(ACCESS_KEY, SECRET_KEY, ACCOUNT_ID)
            .with_timeline(Timeline {
                accepted: Duration::from_millis(300),
                running: Duration::from_millis(500),
            })
            .with_faults(faults);
        let emulator = Emulator::start(config).await?;
        Ok(World {
            client,
            namespace: namespace.to_owned(),
            emulator,
            operator: None,
        })
    }

    /// An emulator started from `config` (its own accounts), without Secret or operator.
    pub async fn on_emulator(
        client: Client,
        namespace: &str,
        config: EmulatorConfig,
    ) -> Result<World> {
        Ok(World {
            client,
            namespace: namespace.to_owned(),
            emulator: Emulator::start(config).await?,
            operator: None,
        })
    }

    pub fn start_operator(&mut self, tweak: impl FnOnce(&mut ControllerConfig)) {
        let mut config = fast_config(&self.namespace, &self.emulator.url());
        tweak(&mut config);
        let runtime = Runtime {
            client: self.client.clone(),
            metrics: Metrics::new(),
            leadership: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = controller::run(runtime, config, shutdown).await {
                panic!("the operator failed: {error:#}");
            }
        });
        self.operator = Some((stop, task));
    }

    /// Stops the operator gracefully (reconciles in flight finish).
    pub async fn stop_operator(&mut self) -> Result<()> {
        if let Some((stop, task)) = self.operator.take() {
            let _ = stop.send(());
            task.await
                .map_err(|e| anyhow!("the operator task failed: {e}"))?;
        }
        Ok(())
    }

    pub async fn create_secret(&self, name: &str, secret_key: &str) -> Result<()> {
        self.create_secret_in(&self.namespace, name, secret_key)
            .await
    }

    /// Like [`World::create_secret`], in another namespace.
    pub async fn create_secret_in(
        &self,
        namespace: &str,
        name: &str,
        secret_key: &str,
    ) -> Result<()> {
        let data: BTreeMap<String, String> = [
            ("accessKey", ACCESS_KEY),
            ("secretKey", secret_key),
            ("accountId", ACCOUNT_ID),
            ("endpoint", &self.emulator.url()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            string_data: Some(data),
            ..Default::default()
        };
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &secret)
            .await?;
        Ok(())
    }

    pub async fn delete_secret(&self, name: &str) -> Result<()> {
        self.secrets()
            .delete(name, &DeleteParams::default())
            .await?;
        Ok(())
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn aiapps(&self) -> Api<AiApp> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn create(&self, name: &str, spec: AiAppSpec) -> Result<AiApp> {
        Ok(self
            .aiapps()
            .create(&PostParams::default(), &AiApp::new(name, spec))
            .await?)
    }

    /// Waits until the AiApp `name` satisfies `check`, and returns it.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&AiApp) -> bool + Send + 'static,
    ) -> Result<AiApp> {
        let seen = await_condition(self.aiapps(), name, move |app: Option<&AiApp>| {
            app.is_some_and(&check)
        });
        let app = tokio::time::timeout(PATIENCE, seen)
            .await
            .map_err(|_| anyhow!("{name} did not become {what} within {PATIENCE:?}"))??;
        app.context("the AiApp went away")
    }

    /// Waits until the AiApp `name` no longer exists.
    pub async fn wait_gone(&self, name: &str) -> Result<()> {
        let gone = await_condition(self.aiapps(), name, |app: Option<&AiApp>| app.is_none());
        tokio::time::timeout(PATIENCE, gone)
            .await
            .map_err(|_| anyhow!("{name} was not deleted within {PATIENCE:?}"))??;
        Ok(())
    }

    /// The emulator's apps whose name starts with `prefix-`.
    pub fn apps_with_prefix(&self, prefix: &str) -> Vec<AppSnapshot> {
        self.emulator
            .apps()
            .into_iter()
            .filter(|app| app.name_prefix == prefix)
            .collect()
    }

    pub async fn stop(mut self) -> Result<()> {
        self.stop_operator().await?;
        let World { emulator, .. } = self;
        emulator.shutdown().await;
        Ok(())
    }
}

/// A spec for the emulator: `accepted_ms` queued, then `running_ms` running, then the outcome.
pub fn spec(accepted_ms: u64, running_ms: u64, outcome: &str) -> AiAppSpec {
    serde_json::from_value(serde_json::json!({
        "aiWorkspaceId": "6ZKSGoSJMMwctK257nxgiL",
        "docker": {
            "image": "nvcr.io/nvidia/pytorch:24.01-py3",
            "command": "python train.py",
            "env": {
                "DATAFOREST_EMULATOR_ACCEPTED_MS": accepted_ms.to_string(),
                "DATAFOREST_EMULATOR_RUNNING_MS": running_ms.to_string(),
                "DATAFOREST_EMULATOR_OUTCOME": outcome,
            },
        },
        "resource": {"gpuCount": 1, "gpuModel": "T4"},
        "credentials": {"secretName": SECRET_NAME},
    }))
    .expect("a valid spec")
}

/// A `dataforest-operator run` process, killed when dropped (also when a test fails).
pub struct OperatorProcess {
    child: std::process::Child,
    pub identity: String,
    pub log: std::path::PathBuf,
}

impl OperatorProcess {
    /// Starts the real binary against the test's namespace, leader election included.
    pub fn start(
        world: &World,
        kubeconfig: &std::path::Path,
        identity: &str,
    ) -> Result<OperatorProcess> {
        OperatorProcess::start_with(world, kubeconfig, identity, &[])
    }

    /// Like [`OperatorProcess::start`], with `env` added to (or replacing) its settings,
    /// e.g. `[("RUST_LOG", "trace"), ("RECOVERY_GRACE", "10s")]`. Pass a proxy's
    /// kubeconfig to put it behind an [`crate::proxy::ApiProxy`].
    pub fn start_with(
        world: &World,
        kubeconfig: &std::path::Path,
        identity: &str,
        env: &[(&str, &str)],
    ) -> Result<OperatorProcess> {
        let log = std::env::temp_dir().join(format!("{}-{identity}.log", world.namespace));
        let out = std::fs::File::create(&log)?;
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_dataforest-operator"))
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("WATCH_NAMESPACE", &world.namespace)
            .env("POD_NAMESPACE", &world.namespace)
            .env("POD_NAME", identity)
            .env("DATAFOREST_ALLOWED_ENDPOINTS", world.emulator.url())
            .env("METRICS_ADDRESS", "127.0.0.1:0")
            .env("LEASE_DURATION", "6s")
            .env("POLL_MIN", "200ms")
            .env("POLL_CEILING", "1s")
            .env("RECOVERY_GRACE", "3s")
            .env("API_TIMEOUT", "2s")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(OperatorProcess {
            child,
            identity: identity.to_owned(),
            log,
        })
    }

    /// The process id.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGSTOP: the process freezes mid-step (no renew, no write, sockets left open)
    /// until [`OperatorProcess::resume`]; dropping it still kills it.
    pub fn pause(&self) -> Result<()> {
        self.signal("STOP")
    }

    /// SIGCONT: a paused process goes on where it stopped.
    pub fn resume(&self) -> Result<()> {
        self.signal("CONT")
    }

    /// What the process wrote to stdout and stderr so far.
    pub fn read_log(&self) -> Result<String> {
        let bytes =
            std::fs::read(&self.log).with_context(|| format!("reading {}", self.log.display()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()?;
        anyhow::ensure!(
            status.success(),
            "kill -{signal} {} failed ({status})",
            self.identity
        );
        Ok(())
    }

    /// Whether the process has ended (as a pod's container that exited); reaps it.
    pub fn has_exited(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_some())
    }

    /// SIGKILL: a crash, no clean-up of any kind.
    pub fn crash(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, as a rolling update stops the old pod; returns whether it exited cleanly.
    pub async fn terminate(&mut self) -> Result<bool> {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()?;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} ignored SIGTERM",
                self.identity
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl World {
    /// Waits until at least `count` AiApps satisfy `check`; returns them all.
    pub async fn wait_for_count(
        &self,
        count: usize,
        what: &str,
        check: impl Fn(&AiApp) -> bool,
    ) -> Result<Vec<AiApp>> {
        let deadline = tokio::time::Instant::now() + PATIENCE * 2;
        loop {
            let apps = self.aiapps().list(&Default::default()).await?.items;
            let matching = apps.iter().filter(|app| check(app)).count();
            if matching >= count {
                return Ok(apps);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "only {matching} of {count} AiApps became {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs `body` on `world`, then stops the world, also when the body failed.
pub async fn with_world<F>(world: World, body: F) -> Result<()>
where
    F: for<'w> FnOnce(&'w World) -> futures::future::BoxFuture<'w, Result<()>>,
{
    let outcome = body(&world).await;
    world.stop().await?;
    outcome
}

/// Like [`with_world`], for a body that stops and starts the operator. The body's error
/// wins over one from stopping.
pub async fn with_world_mut<F>(mut world: World, body: F) -> Result<()>
where
    F: for<'w> FnOnce(&'w mut World) -> futures::future::BoxFuture<'w, Result<()>>,
{
    let outcome = body(&mut world).await;
    let stopped = world.stop().await;
    outcome?;
    stopped
}

/// The operator's leader-election Lease when `LEASE_NAME` is not set.
pub const OPERATOR_LEASE: &str = "dataforest-operator";

/// Waits until `identity` (an operator's `POD_NAME`) holds the Lease `lease_name` in
/// `namespace` (its `POD_NAMESPACE`): named as holder, and renewed within the lease's
/// duration. Returns the Lease as last read.
pub async fn wait_for_leader(
    client: &Client,
    namespace: &str,
    lease_name: &str,
    identity: &str,
) -> Result<Lease> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let last = match leases.get_opt(lease_name).await {
            Ok(Some(lease)) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let renewed = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
                let lasts =
                    SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
                let current = renewed
                    .and_then(|t| t.checked_add(lasts).ok())
                    .is_some_and(|expires| Timestamp::now() < expires);
                if holder == identity && current {
                    return Ok(lease);
                }
                format!("held by {holder:?}, renewed at {renewed:?} for {lasts}")
            }
            Ok(None) => "absent".to_owned(),
            Err(error) => format!("unreadable: {error}"),
        };
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{identity} did not hold the Lease {namespace}/{lease_name} within {PATIENCE:?}; it is {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The AiApp's phase, if it has a status.
pub fn phase(app: &AiApp) -> Option<Phase> {
    app.status.as_ref().and_then(|s| s.phase)
}

/// (status, reason) of the AiApp's condition `type_`.
pub fn condition<'a>(app: &'a AiApp, type_: &str) -> Option<(&'a str, &'a str)> {
    app.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

/// The state the emulator shows for app `id`, if it holds it.
pub fn app_state(world: &World, id: &str) -> Option<String> {
    world
        .emulator
        .apps()
        .into_iter()
        .find(|a| a.id == id)
        .map(|a| a.state)
}
