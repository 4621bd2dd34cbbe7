//! The shared set-up of the end-to-end tests: one control plane for the whole run,
//! started on first use with the project's CRD installed, and a namespace per test.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dataforest_testenv::{Assets, ControlPlane};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};

/// The committed CRD, exactly what users install.
pub const CRD_YAML: &str = include_str!("../../crds/aiapps.dataforest.dev.yaml");
pub const CRD_NAME: &str = "aiapps.dataforest.dev";

/// The shared control plane, or why it could not start (then no test tries again).
static PLANE: Mutex<Option<Result<Arc<RwLock<ControlPlane>>, String>>> = Mutex::new(None);
static NAMESPACES: AtomicUsize = AtomicUsize::new(0);

/// Stops the control plane if a test started it; `main` calls it after the last test.
pub fn shutdown() {
    let plane = PLANE
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .take();
    drop(plane);
}

fn shared_plane() -> Result<Arc<RwLock<ControlPlane>>> {
    let mut slot = PLANE.lock().unwrap_or_else(|poison| poison.into_inner());
    let plane = slot.get_or_insert_with(|| {
        let start = || -> Result<ControlPlane> {
            let plane = ControlPlane::start(Assets::locate()?)?;
            install_crd(&plane)?;
            Ok(plane)
        };
        start()
            .map(|plane| Arc::new(RwLock::new(plane)))
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
}

impl TestContext {
    /// The admin kubeconfig, for processes the test starts.
    #[allow(dead_code)]
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// `kubectl` pointed at the control plane.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(&self.kubectl);
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }
}

/// Runs an async test body against the shared control plane, in a new namespace.
pub fn run<F, Fut>(test_name: &str, body: F) -> Result<(), libtest_mimic::Failed>
where
    F: FnOnce(TestContext) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let plane = shared_plane().map_err(failed)?;
    let plane = plane.read().unwrap_or_else(|poison| poison.into_inner());
    runtime()
        .map_err(failed)?
        .block_on(async {
            let client = plane.client().await?;
            let namespace = create_namespace(&client, test_name).await?;
            body(TestContext {
                client,
                namespace,
                kubectl: plane.assets().kubectl.clone(),
                kubeconfig: plane.kubeconfig_path().to_owned(),
            })
            .await
        })
        .map_err(failed)
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
