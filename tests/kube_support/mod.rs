//! Helpers shared by the tests that drive a real apiserver with kubectl and helm outside
//! the e2e harness (`chart`, `install`).
#![allow(dead_code)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

/// Polls `probe` every 200 ms until it yields a value; after `limit`, fails naming `what`
/// and the probe's last error.
pub async fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kubectl apply --server-side` of `yaml` (on stdin) as `field_manager`, with `kubectl`
/// already pointed at the control plane.
pub fn apply_server_side(mut kubectl: Command, field_manager: &str, yaml: &str) -> Result<()> {
    let mut child = kubectl
        .args(["apply", "--server-side"])
        .arg(format!("--field-manager={field_manager}"))
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("kubectl's stdin")?
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "kubectl apply failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
