//! A real Kubernetes control plane on loopback for tests and local use: etcd and
//! kube-apiserver with throw-away certificates, no kubelet and no containers (the way
//! controller-runtime's envtest does it).
//!
//! Binaries come from `KUBEBUILDER_ASSETS` when it is set, otherwise from
//! `hack/control-plane-assets.sh`, which builds them once into the user's cache.
//! A test that needs one of kube-controller-manager's controllers (ClusterRole
//! aggregation, say) starts it with [`ControllerManager`].

#![forbid(unsafe_code)]

mod controller_manager;
mod pki;
mod supervisor;

pub use controller_manager::{ControllerManager, locate_kube_controller_manager};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::pki::Pki;
use crate::supervisor::Supervisor;

const ETCD: &str = "etcd";
const APISERVER: &str = "kube-apiserver";
/// How long a start may take before it counts as failed; a cold start takes seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the control-plane programs are.
#[derive(Clone, Debug)]
pub struct Assets {
    pub kube_apiserver: PathBuf,
    pub kubectl: PathBuf,
    pub etcd: PathBuf,
}

impl Assets {
    /// Finds the programs, building kube-apiserver and kubectl first if they are not
    /// cached yet (the build prints its progress on stderr).
    pub fn locate() -> Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/control-plane-assets.sh");
        let output = Command::new("bash")
            .arg(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !output.status.success() {
            bail!("{} failed ({})", script.display(), output.status);
        }
        let dir = PathBuf::from(String::from_utf8(output.stdout)?.trim());
        let etcd = if std::env::var_os("KUBEBUILDER_ASSETS").is_some() {
            dir.join("etcd")
        } else {
            let Ok(path) = etcd_bin_vendored_linux_amd64::etcd_bin_path();
            path.to_owned()
        };
        Ok(Self {
            kube_apiserver: dir.join("kube-apiserver"),
            kubectl: dir.join("kubectl"),
            etcd,
        })
    }
}

/// The process ids of a control plane; see [`ControlPlane::pids`].
#[derive(Clone, Copy, Debug)]
pub struct ControlPlanePids {
    pub kube_apiserver: Option<u32>,
    pub etcd: Option<u32>,
}

/// A running etcd and kube-apiserver. Dropping it stops both and deletes their files.
pub struct ControlPlane {
    // Declared first so the processes stop before their folder is deleted.
    supervisor: Supervisor,
    dir: tempfile::TempDir,
    assets: Assets,
    apiserver_args: Vec<String>,
    kubeconfig_path: PathBuf,
    server_url: String,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports and waits until the
    /// apiserver is ready and the `default` namespace exists.
    pub fn start(assets: Assets) -> Result<Self> {
        Self::start_on(assets, &mut free_port)
    }

    /// Like [`ControlPlane::start`], with the ports taken from `ports`. A port that was
    /// free when picked can be taken by another process (often as the local port of an
    /// outgoing connection) before etcd or kube-apiserver binds it; the start is then
    /// tried again on new ports, up to [`START_ATTEMPTS`] times.
    pub fn start_on(assets: Assets, ports: &mut dyn FnMut() -> Result<u16>) -> Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_once(assets.clone(), ports) {
                Err(error) if attempt < START_ATTEMPTS && port_was_taken(&error) => {
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    fn start_once(assets: Assets, ports: &mut dyn FnMut() -> Result<u16>) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("dataforest-testenv-")
            .tempdir()
            .context("creating the control plane's folder")?;
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs)?;
        let pki = Pki::create(&certs)?;

        let supervisor = Supervisor::start()?;
        let etcd_url = format!("http://127.0.0.1:{}", ports()?);
        let peer_url = format!("http://127.0.0.1:{}", ports()?);
        let etcd_args = [
            "--name=testenv".to_owned(),
            format!("--data-dir={}", dir.path().join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=testenv={peer_url}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        supervisor.spawn(ETCD, &assets.etcd, &etcd_args, &dir.path().join("etcd.log"))?;

        let port = ports()?;
        let server_url = format!("https://127.0.0.1:{port}");
        let cert = |name: &str| certs.join(name).display().to_string();
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--cert-dir={}", certs.display()),
            format!("--tls-cert-file={}", cert("apiserver.crt")),
            format!("--tls-private-key-file={}", cert("apiserver.key")),
            format!("--client-ca-file={}", cert("client-ca.crt")),
            format!("--service-account-key-file={}", cert("sa.pub")),
            format!("--service-account-signing-key-file={}", cert("sa.key")),
            format!("--service-account-issuer={server_url}/"),
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            // 1.37 refuses a loopback advertise address for the endpoint reconciler, and
            // with no nodes there is nothing for it to reconcile.
            "--endpoint-reconciler-type=none".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--allow-privileged=true".to_owned(),
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            // TESTENV_PROFILING=1 serves /debug/pprof, to see where the apiserver's
            // time goes in a benchmark (docs/benchmarks.md).
            format!(
                "--profiling={}",
                std::env::var_os("TESTENV_PROFILING").is_some_and(|v| v == "1")
            ),
        ];

        let kubeconfig_path = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig_path, kubeconfig_yaml(&server_url, &pki)?)?;

        let plane = Self {
            supervisor,
            dir,
            assets,
            apiserver_args,
            kubeconfig_path,
            server_url,
        };
        plane.start_apiserver()?;
        Ok(plane)
    }

    /// Path of a kubeconfig for the admin user (`system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The programs this control plane runs.
    pub fn assets(&self) -> &Assets {
        &self.assets
    }

    /// The process ids of kube-apiserver and etcd while they run, for the benchmark's
    /// figures of the control plane's own CPU. (setpriv execs the program, so its pid
    /// is the program's.)
    pub fn pids(&self) -> ControlPlanePids {
        ControlPlanePids {
            kube_apiserver: self.supervisor.pid(APISERVER),
            etcd: self.supervisor.pid(ETCD),
        }
    }

    /// Folder holding the certificates, the kubeconfig and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kube client for the admin user. Build one per tokio runtime: a client keeps a
    /// task on the runtime that created it.
    pub async fn client(&self) -> Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig_path)?;
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// `kubectl` with `KUBECONFIG` set to this control plane.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(&self.assets.kubectl);
        command.env("KUBECONFIG", &self.kubeconfig_path);
        command
    }

    /// Kills kube-apiserver (etcd keeps the data), as a crash or an upgrade would.
    pub fn stop_apiserver(&self) -> Result<()> {
        self.supervisor.kill(APISERVER)
    }

    /// Starts kube-apiserver on the same port with the same certificates, and waits
    /// until it is ready.
    pub fn start_apiserver(&self) -> Result<()> {
        let log = self.dir.path().join("kube-apiserver.log");
        self.supervisor.spawn(
            APISERVER,
            &self.assets.kube_apiserver,
            &self.apiserver_args,
            &log,
        )?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.wait_ready()).map_err(|error| {
            let tail = log_tail(&log, 30);
            error.context(format!(
                "kube-apiserver did not become ready; the end of its log:\n{tail}"
            ))
        })
    }

    /// Whether etcd and kube-apiserver are both running.
    pub fn is_running(&self) -> bool {
        self.supervisor.is_running(ETCD) && self.supervisor.is_running(APISERVER)
    }

    /// Stops both processes and deletes the folder; the same as dropping it.
    pub fn stop(self) {}

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_error = String::from("no answer yet");
        while Instant::now() < deadline {
            if !self.supervisor.is_running(APISERVER) {
                bail!("kube-apiserver exited");
            }
            if !self.supervisor.is_running(ETCD) {
                let tail = log_tail(&self.dir.path().join("etcd.log"), 30);
                bail!("etcd exited; the end of its log:\n{tail}");
            }
            match self.probe().await {
                Ok(()) => return Ok(()),
                Err(error) => last_error = format!("{error:#}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("not ready after {READY_TIMEOUT:?}: {last_error}")
    }

    /// Ready means `/readyz` answers ok and the `default` namespace exists.
    async fn probe(&self) -> Result<()> {
        let client = self.client().await?;
        let request = http::Request::get("/readyz").body(Vec::new())?;
        let body = client.request_text(request).await?;
        if body.trim() != "ok" {
            bail!("/readyz says {body}");
        }
        Api::<Namespace>::all(client).get("default").await?;
        Ok(())
    }
}

/// Starts tried before a port taken in the gap between picking and binding fails the start.
pub const START_ATTEMPTS: usize = 3;

/// A loopback port free when this returns; see [`ControlPlane::start_on`] for the gap
/// before the server binds it.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether a start failed because etcd or kube-apiserver found its port taken.
fn port_was_taken(error: &anyhow::Error) -> bool {
    format!("{error:#}").contains("address already in use")
}

fn kubeconfig_yaml(server_url: &str, pki: &Pki) -> Result<String> {
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": {
            "server": server_url,
            "certificate-authority-data": b64(&pki.serving_ca_pem),
        }}],
        "users": [{"name": "admin", "user": {
            "client-certificate-data": b64(&pki.admin_cert_pem),
            "client-key-data": b64(&pki.admin_key_pem),
        }}],
        "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": "admin", "namespace": "default"}}],
        "current-context": "testenv",
    });
    Ok(serde_yaml_ng::to_string(&config)?)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
