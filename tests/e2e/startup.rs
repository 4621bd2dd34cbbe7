//! Start-up order under Argo CD: the operator can arrive before its CRD. It must stay
//! up, say why it is not ready, and become ready once the CRD is there.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use dataforest_testenv::{Assets, ControlPlane};
use libtest_mimic::Failed;

use crate::fixture::CRD_NAME;

/// Kills the operator process when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `url` until its status and body satisfy `check`; returns the last body.
async fn until(url: &str, what: &str, check: impl Fn(u16, &str) -> bool) -> Result<String> {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer");
    while tokio::time::Instant::now() < deadline {
        if let Ok(response) = client.get(url).send().await {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if check(status, &body) {
                return Ok(body);
            }
            last = format!("{status} {body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!("{url} never became {what}; last answer: {last}"))
}

pub fn an_operator_started_before_its_crd_is_alive_not_ready_and_then_ready() -> Result<(), Failed>
{
    let test = || -> Result<()> {
        // Its own control plane: the shared one has the CRD already.
        let plane = ControlPlane::start(Assets::locate()?)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let operator = Command::new(env!("CARGO_BIN_EXE_dataforest-operator"))
            .arg("run")
            .env("KUBECONFIG", plane.kubeconfig_path())
            .env("METRICS_ADDRESS", format!("127.0.0.1:{port}"))
            .env("POD_NAMESPACE", "default")
            .env("POD_NAME", "early-bird")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let _operator = Killed(operator);
        let base = format!("http://127.0.0.1:{port}");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let reason = until(
                &format!("{base}/readyz"),
                "503 naming the CRD",
                |status, body| status == 503 && body.contains(CRD_NAME),
            )
            .await?;
            until(&format!("{base}/healthz"), "200", |status, _| status == 200).await?;
            let applied = plane
                .kubectl()
                .args([
                    "apply",
                    "--server-side",
                    "-f",
                    concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/crds/aiapps.dataforest.dev.yaml"
                    ),
                ])
                .output()?;
            anyhow::ensure!(
                applied.status.success(),
                "kubectl apply failed: {}",
                String::from_utf8_lossy(&applied.stderr)
            );
            until(
                &format!("{base}/readyz"),
                "200 once the CRD exists",
                |status, _| status == 200,
            )
            .await
            .with_context(|| format!("while not ready it said: {reason}"))?;
            Ok(())
        })
    };
    test().map_err(|error| format!("{error:#}").into())
}
