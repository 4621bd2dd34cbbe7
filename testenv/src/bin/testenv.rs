//! `testenv`: starts the local control plane for people (`make cluster`, `make demo`),
//! prints how to reach it, and stops it on Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::sync::mpsc;

use anyhow::{Context, Result, bail};
use dataforest_testenv::{Assets, ControlPlane};

const USAGE: &str = "usage: testenv [--kubeconfig-out FILE] [--apply FILE_OR_DIR]...

Starts etcd and kube-apiserver on loopback, applies the given manifests, prints the
export line for KUBECONFIG and runs until interrupted. With --kubeconfig-out the
kubeconfig is also copied to FILE once the control plane is ready (scripts wait for it).";

fn main() -> Result<()> {
    let mut kubeconfig_out: Option<PathBuf> = None;
    let mut manifests: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kubeconfig-out" => kubeconfig_out = Some(args.next().context(USAGE)?.into()),
            "--apply" => manifests.push(args.next().context(USAGE)?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }

    // Install the handler first, so an early Ctrl-C still stops what was started.
    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })?;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let assets = Assets::locate()?;
    eprintln!("starting etcd and kube-apiserver...");
    let plane = ControlPlane::start(assets)?;
    for manifest in &manifests {
        let status = plane
            .kubectl()
            .args(["apply", "--server-side", "--field-manager=testenv", "-f"])
            .arg(manifest)
            .status()?;
        if !status.success() {
            bail!("kubectl apply -f {} failed", manifest.display());
        }
    }
    let kubeconfig = match &kubeconfig_out {
        Some(out) => {
            // Written through a temporary name so a waiting script never reads half a file.
            let partial = out.with_extension("partial");
            std::fs::copy(plane.kubeconfig_path(), &partial)?;
            std::fs::rename(&partial, out)?;
            out.clone()
        }
        None => plane.kubeconfig_path().to_owned(),
    };
    println!("control plane ready at {}", plane.server_url());
    println!("export KUBECONFIG={}", kubeconfig.display());
    println!("kubectl: {}", plane.assets().kubectl.display());
    println!("press Ctrl-C to stop it");

    let _ = stop_rx.recv();
    eprintln!("stopping the control plane...");
    if let Some(out) = kubeconfig_out {
        let _ = std::fs::remove_file(out);
    }
    plane.stop();
    Ok(())
}
