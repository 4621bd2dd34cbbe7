//! kube-controller-manager against a [`ControlPlane`](crate::ControlPlane), running only the controllers a
//! test names (for example `clusterrole-aggregation`, which fills the built-in `admin`,
//! `edit` and `view` ClusterRoles from the ClusterRoles labelled to aggregate into them).
//!
//! The control plane itself runs no controller manager (envtest does not either): most
//! controllers need nodes and kubelets this environment does not have, and a test that
//! needs one controller starts it for its own duration. It runs under its own
//! [`Supervisor`], so it is stopped when the handle is dropped (a panic included) and
//! killed by the kernel when the test process dies.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::log_tail;
use crate::supervisor::Supervisor;

const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// Finds kube-controller-manager, building it first if it is not cached yet: from
/// `KUBEBUILDER_ASSETS` when that folder has one (setup-envtest's do not), otherwise from
/// `hack/control-plane-assets.sh`'s cache, of the Kubernetes version hack/k8s/go.mod pins.
pub fn locate_kube_controller_manager() -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/control-plane-assets.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(CONTROLLER_MANAGER)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {CONTROLLER_MANAGER}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} {CONTROLLER_MANAGER} failed ({})",
            script.display(),
            output.status
        );
    }
    let dir = PathBuf::from(String::from_utf8(output.stdout)?.trim());
    Ok(dir.join(CONTROLLER_MANAGER))
}

/// A running kube-controller-manager. Dropping it stops the process and deletes its
/// folder (its kubeconfig and log).
pub struct ControllerManager {
    // Declared first so the process stops before its folder is deleted.
    supervisor: Supervisor,
    dir: tempfile::TempDir,
}

impl ControllerManager {
    /// Starts `program` (see [`locate_kube_controller_manager`]) against the apiserver of
    /// `kubeconfig` (the control plane's admin one:
    /// [`ControlPlane::kubeconfig_path`](crate::ControlPlane::kubeconfig_path)), with only
    /// `controllers` enabled, no leader election (it is alone) and
    /// no serving port (nothing probes it, and two test runs could not share a fixed
    /// port). It returns once the process is started: a test waits for the effect it
    /// needs (an aggregated rule, say), and [`ControllerManager::log_tail`] tells why
    /// that effect did not come.
    pub fn start(program: &Path, kubeconfig: &Path, controllers: &[&str]) -> Result<Self> {
        if controllers.is_empty() {
            bail!("name the controllers to run: kube-controller-manager's default is most of them");
        }
        // Its own folder, named like the control plane's, so hack/no-leftovers.sh sees it.
        let dir = tempfile::Builder::new()
            .prefix("dataforest-testenv-kcm-")
            .tempdir()
            .context("creating kube-controller-manager's folder")?;
        // A copy: the process reads it at start, and it outlives no one's folder.
        let own_kubeconfig = dir.path().join("kubeconfig");
        std::fs::copy(kubeconfig, &own_kubeconfig)
            .with_context(|| format!("copying {}", kubeconfig.display()))?;
        let args = vec![
            format!("--kubeconfig={}", own_kubeconfig.display()),
            format!("--controllers={}", controllers.join(",")),
            "--leader-elect=false".to_owned(),
            "--secure-port=0".to_owned(),
            "--v=2".to_owned(),
        ];
        let supervisor = Supervisor::start()?;
        let log = dir.path().join("kube-controller-manager.log");
        supervisor.spawn(CONTROLLER_MANAGER, program, &args, &log)?;
        Ok(Self { supervisor, dir })
    }

    /// Whether the process has not exited.
    pub fn is_running(&self) -> bool {
        self.supervisor.is_running(CONTROLLER_MANAGER)
    }

    /// The last `lines` lines of its log, for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    /// Its log file (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("kube-controller-manager.log")
    }

    /// Its folder; its command line names it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the process and deletes its folder; the same as dropping it.
    pub fn stop(self) {}

    /// Stops it after a test's `outcome`; a failure then also says whether the process
    /// was still running and how its log ended, which is usually why the effect the test
    /// waited for never came.
    pub fn stop_after<T>(self, outcome: Result<T>) -> Result<T> {
        let running = self.is_running();
        let tail = self.log_tail(15);
        self.stop();
        outcome.map_err(|error| {
            anyhow::anyhow!(
                "{error:#}\nkube-controller-manager {}; the end of its log:\n{tail}",
                if running { "was running" } else { "had exited" }
            )
        })
    }
}
