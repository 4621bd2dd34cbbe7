//! The shared set-up of the end-to-end tests: one control plane for the whole run,
//! started on first use with the project's CRD installed, and a namespace per test.
//!
//! Tests share the control plane ([`run`]) unless one needs it to itself ([`run_exclusive`]):
//! only such a test may stop and restart kube-apiserver. [`refuse_status_writes`] makes the
//! apiserver refuse AiApp status writes in a test's namespace for as long as it is kept.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use dataforest_operator::crd::AiApp;
use dataforest_operator::plan::PAUSED_ANNOTATION;
use dataforest_testenv::{Assets, ControlPlane};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Config};

use crate::world::PATIENCE;

/// The committed CRD, exactly what users install.
pub const CRD_YAML: &str = include_str!("../../crds/aiapps.dataforest.dev.yaml");
pub const CRD_NAME: &str = "aiapps.dataforest.dev";

/// The shared control plane, or why it could not start (then no test tries again).
static PLANE: Mutex<Option<Result<Arc<Shared>, String>>> = Mutex::new(None);
static NAMESPACES: AtomicUsize = AtomicUsize::new(0);
/// Numbers the throw-away AiApps that probe a status-write refusal.
static PROBES: AtomicUsize = AtomicUsize::new(0);

/// The control plane and who may use it: any number of tests at once (read lock), or a
/// single test that may stop kube-apiserver (write lock).
struct Shared {
    plane: ControlPlane,
    tests: RwLock<()>,
}

/// Stops the control plane if a test started it; `main` calls it after the last test.
pub fn shutdown() {
    let plane = PLANE
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .take();
    drop(plane);
}

fn shared_plane() -> Result<Arc<Shared>> {
    let mut slot = PLANE.lock().unwrap_or_else(|poison| poison.into_inner());
    let plane = slot.get_or_insert_with(|| {
        let start = || -> Result<ControlPlane> {
            let plane = ControlPlane::start(Assets::locate()?)?;
            install_crd(&plane)?;
            Ok(plane)
        };
        start()
            .map(|plane| {
                Arc::new(Shared {
                    plane,
                    tests: RwLock::new(()),
                })
            })
            .map_err(|error| format!("the control plane did not start: {error:#}"))
    });
    plane.clone().map_err(anyhow::Error::msg)
}

fn install_crd(plane: &ControlPlane) -> Result<()> {
    runtime()?.block_on(async {
        let client = plane.client().await?;
        let crds: Api<CustomResourceDefinition> = Api::all(client);
        let crd: CustomResourceDefinition = serde_yaml_ng::from_str(CRD_YAML)?;
        crds.patch(
            CRD_NAME,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        let established = await_condition(crds, CRD_NAME, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .context("the CRD was not Established within 30s")??;
        Ok(())
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// What a test gets: a client, its own namespace, and kubectl for the control plane.
pub struct TestContext {
    pub client: Client,
    pub namespace: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    server_url: String,
    apiserver: Option<ApiServer>,
}

impl TestContext {
    /// The admin kubeconfig, for processes the test starts.
    #[allow(dead_code)]
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>` (what a proxy forwards to).
    #[allow(dead_code)]
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// `kubectl` pointed at the control plane.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(&self.kubectl);
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// Stops and starts kube-apiserver. Only a test run by [`run_exclusive`] has it: the
    /// others share the apiserver, so asking for it elsewhere is a bug in the test.
    #[allow(dead_code)]
    pub fn apiserver(&self) -> &ApiServer {
        self.apiserver
            .as_ref()
            .expect("only a test run with fixture::run_exclusive may stop kube-apiserver")
    }
}

/// Runs an async test body against the shared control plane, in a new namespace.
pub fn run<F, Fut>(test_name: &str, body: F) -> Result<(), libtest_mimic::Failed>
where
    F: FnOnce(TestContext) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let shared = shared_plane().map_err(failed)?;
    let _sharing = shared
        .tests
        .read()
        .unwrap_or_else(|poison| poison.into_inner());
    runtime()
        .map_err(failed)?
        .block_on(async {
            let ctx = context(&shared, test_name, None).await?;
            body(ctx).await
        })
        .map_err(failed)
}

/// Like [`run`], but no other e2e test runs meanwhile, and `ctx.apiserver()` may stop and
/// start kube-apiserver. However the body ends (error or panic included), kube-apiserver
/// is running again afterwards.
#[allow(dead_code)]
pub fn run_exclusive<F, Fut>(test_name: &str, body: F) -> Result<(), libtest_mimic::Failed>
where
    F: FnOnce(TestContext) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let shared = shared_plane().map_err(failed)?;
    let _alone = shared
        .tests
        .write()
        .unwrap_or_else(|poison| poison.into_inner());
    // Declared before the runtime, so dropped after it: by then no `start` of the body
    // is still under way in a blocking task.
    let _restart = RestartIfStopped(shared.clone());
    let apiserver = ApiServer {
        shared: shared.clone(),
    };
    runtime()
        .map_err(failed)?
        .block_on(async {
            let ctx = context(&shared, test_name, Some(apiserver)).await?;
            body(ctx).await
        })
        .map_err(failed)
}

async fn context(
    shared: &Shared,
    test_name: &str,
    apiserver: Option<ApiServer>,
) -> Result<TestContext> {
    let plane = &shared.plane;
    let client = plane.client().await?;
    let namespace = create_namespace(&client, test_name).await?;
    Ok(TestContext {
        client,
        namespace,
        kubectl: plane.assets().kubectl.clone(),
        kubeconfig: plane.kubeconfig_path().to_owned(),
        server_url: plane.server_url().to_owned(),
        apiserver,
    })
}

/// Stops and starts the shared kube-apiserver (same etcd, same port, same certificates:
/// the data and every kubeconfig stay valid). Clients keep working once it is back.
#[derive(Clone)]
pub struct ApiServer {
    shared: Arc<Shared>,
}

#[allow(dead_code)]
impl ApiServer {
    /// Kills kube-apiserver (SIGKILL, as a crash) and returns once it has exited: from
    /// then on connections to it are refused.
    pub async fn stop(&self) -> Result<()> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.plane.stop_apiserver()).await?
    }

    /// Starts kube-apiserver again and returns once it is ready (`/readyz`, and the CRD
    /// served). Called while it runs, it restarts it.
    pub async fn start(&self) -> Result<()> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.plane.start_apiserver()).await?
    }

    /// Whether kube-apiserver (and etcd) run.
    pub fn is_running(&self) -> bool {
        self.shared.plane.is_running()
    }

    /// `https://127.0.0.1:<port>`, the same before and after a restart.
    pub fn url(&self) -> &str {
        self.shared.plane.server_url()
    }
}

/// Starts kube-apiserver again if an exclusive test left it stopped, so the tests after
/// it find it running.
struct RestartIfStopped(Arc<Shared>);

impl Drop for RestartIfStopped {
    fn drop(&mut self) {
        if self.0.plane.is_running() {
            return;
        }
        if let Err(error) = self.0.plane.start_apiserver() {
            eprintln!("kube-apiserver did not start again after an exclusive test: {error:#}");
        }
    }
}

async fn create_namespace(client: &Client, test_name: &str) -> Result<String> {
    let serial = NAMESPACES.fetch_add(1, Ordering::Relaxed);
    let slug: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(50)
        .collect();
    let name = format!("{}-{serial}", slug.trim_matches('-'));
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"dataforest.dev/test": "e2e"}}
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(name)
}

fn failed(error: anyhow::Error) -> libtest_mimic::Failed {
    format!("{error:#}").into()
}

/// Fails with `message` unless `check` holds.
#[allow(dead_code)]
pub fn ensure(check: bool, message: impl FnOnce() -> String) -> Result<()> {
    if !check {
        bail!(message());
    }
    Ok(())
}

/// A kube client from a kubeconfig file, e.g. one pointing at an [`crate::proxy::ApiProxy`].
#[allow(dead_code)]
pub async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Makes kube-apiserver refuse every status write (update, patch, apply) of the AiApps
/// in `ctx`'s namespace, with a ValidatingAdmissionPolicy and its binding, and returns
/// once a probe write has actually been refused. Writes of the AiApps themselves still
/// land. Dropping the guard, or [`StatusWriteRefusal::allow`], removes both objects.
///
/// The probe is a throw-away AiApp (`status-write-probe-<n>`) annotated as paused, so an
/// operator running in the namespace never submits it; it is deleted once the refusal is
/// confirmed (an operator running there removes its finalizer a moment later).
#[allow(dead_code)]
pub async fn refuse_status_writes(ctx: &TestContext) -> Result<StatusWriteRefusal> {
    let name = format!("refuse-aiapp-status-{}", ctx.namespace);
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"dataforest.dev/test": "e2e"}},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [dataforest_operator::crd::GROUP],
                "apiVersions": ["*"],
                // A patch or an apply is an UPDATE to admission.
                "operations": ["UPDATE"],
                "resources": ["aiapps/status"],
            }]},
            "validations": [{
                "expression": "false",
                "message": format!("AiApp status writes in {} are refused by the test", ctx.namespace),
                "reason": "Forbidden",
            }],
        },
    }))?;
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"dataforest.dev/test": "e2e"}},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": ctx.namespace},
            }},
        },
    }))?;
    let refusal = StatusWriteRefusal {
        client: ctx.client.clone(),
        namespace: ctx.namespace.clone(),
        name,
        kubeconfig: ctx.kubeconfig.clone(),
        removed: false,
    };
    let params = PostParams::default();
    Api::<ValidatingAdmissionPolicy>::all(ctx.client.clone())
        .create(&params, &policy)
        .await
        .context("creating the ValidatingAdmissionPolicy")?;
    Api::<ValidatingAdmissionPolicyBinding>::all(ctx.client.clone())
        .create(&params, &binding)
        .await
        .context("creating the ValidatingAdmissionPolicyBinding")?;
    refusal.until_probe(true).await?;
    Ok(refusal)
}

/// AiApp status writes refused in one namespace; see [`refuse_status_writes`].
pub struct StatusWriteRefusal {
    client: Client,
    namespace: String,
    /// The policy's and the binding's name.
    name: String,
    kubeconfig: PathBuf,
    removed: bool,
}

#[allow(dead_code)]
impl StatusWriteRefusal {
    /// Name of the ValidatingAdmissionPolicy (and of its binding); refusals name it.
    pub fn policy_name(&self) -> &str {
        &self.name
    }

    /// Removes the policy and its binding, and returns once a probe status write has
    /// been accepted again.
    pub async fn allow(mut self) -> Result<()> {
        self.removed = true;
        remove_policy(&self.client, &self.name).await?;
        self.until_probe(false).await
    }

    /// Writes the status of a new probe AiApp until the write is refused by this policy
    /// (`refused`) or accepted (`!refused`), then deletes the probe.
    async fn until_probe(&self, refused: bool) -> Result<()> {
        let api: Api<AiApp> = Api::namespaced(self.client.clone(), &self.namespace);
        let probe = format!(
            "status-write-probe-{}",
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        let mut app = AiApp::new(&probe, crate::world::spec(0, 0, "SUCCEEDED"));
        app.metadata.annotations = Some([(PAUSED_ANNOTATION.to_owned(), "true".to_owned())].into());
        api.create(&PostParams::default(), &app)
            .await
            .with_context(|| format!("creating the probe AiApp {probe}"))?;
        let outcome = self.probe(&api, &probe, refused).await;
        let _ = api.delete(&probe, &DeleteParams::default()).await;
        outcome
    }

    async fn probe(&self, api: &Api<AiApp>, probe: &str, refused: bool) -> Result<()> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut write = 0;
        loop {
            write += 1;
            let patch = serde_json::json!({"status": {"message": format!("probe write {write}")}});
            let last = match api
                .patch_status(probe, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) if !refused => return Ok(()),
                Ok(_) => "accepted".to_owned(),
                Err(kube::Error::Api(status)) if status.message.contains(&self.name) => {
                    if refused {
                        return Ok(());
                    }
                    format!("refused: {}", status.message)
                }
                Err(error) => format!("failed: {error}"),
            };
            if tokio::time::Instant::now() >= deadline {
                let want = if refused { "refused" } else { "accepted" };
                bail!(
                    "a status write of {probe} was not {want} within {PATIENCE:?} of changing \
                     the policy {}; the last write was {last}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for StatusWriteRefusal {
    /// Removes the policy and binding on a thread of its own (its own runtime and client),
    /// so that it works from async code and while a runtime shuts down.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let (kubeconfig, name) = (self.kubeconfig.clone(), self.name.clone());
        let removal = std::thread::spawn(move || -> Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let client = client_for(&kubeconfig).await?;
                    remove_policy(&client, &name).await
                })
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow!("the removal thread panicked")));
        if let Err(error) = removal {
            eprintln!(
                "the status-write refusal {} was not removed: {error:#}",
                self.name
            );
        }
    }
}

/// Deletes the binding and the policy `name`; either being gone already is fine.
async fn remove_policy(client: &Client, name: &str) -> Result<()> {
    let params = DeleteParams::default();
    let gone = |result: kube::Result<_>| match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    };
    gone(
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .delete(name, &params)
            .await
            .map(drop),
    )
    .context("deleting the ValidatingAdmissionPolicyBinding")?;
    gone(
        Api::<ValidatingAdmissionPolicy>::all(client.clone())
            .delete(name, &params)
            .await
            .map(drop),
    )
    .context("deleting the ValidatingAdmissionPolicy")?;
    Ok(())
}
