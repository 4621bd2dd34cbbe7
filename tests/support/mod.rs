//! Fixtures shared by the API tests: an in-process emulator with two accounts, and
//! clients for it with small, fast retries.
#![allow(dead_code)]

use std::time::Duration;

use dataforest_emulator::{Emulator, EmulatorConfig, EmulatorHandle, Timeline};
use dataforest_operator::crd::{AiAppDocker, AiAppResource, AiAppSpec};
use dataforest_operator::dataforest::{
    ClientConfig, Credentials, DataForestClient, RetryPolicy, SubmitRequest,
};

pub const AK1: &str = "AKEMULATOR0000000001";
pub const SK1: &str = "emulator-secret-one-0123456789abcdefghij";
pub const ACCOUNT1: &str = "acct1QDeb59ZeUJwKNqssE";
pub const AK2: &str = "AKEMULATOR0000000002";
pub const SK2: &str = "emulator-secret-two-0123456789abcdefghij";
pub const ACCOUNT2: &str = "acct2QDeb59ZeUJwKNqssE";
pub const WORKSPACE: &str = "6ZKSGoSJMMwctK257nxgiL";

/// A timeline long enough that an app stays ACCEPTED for the whole test.
pub const FOREVER: Timeline = Timeline {
    accepted: Duration::from_secs(3600),
    running: Duration::from_secs(3600),
};

pub fn config(timeline: Timeline) -> EmulatorConfig {
    dataforest_operator::install_crypto_provider();
    EmulatorConfig::default()
        .with_account(AK1, SK1, ACCOUNT1)
        .with_account(AK2, SK2, ACCOUNT2)
        .with_timeline(timeline)
}

pub async fn emulator(timeline: Timeline) -> EmulatorHandle {
    Emulator::start(config(timeline))
        .await
        .expect("the emulator starts")
}

pub fn client_config(endpoint: &str) -> ClientConfig {
    ClientConfig {
        endpoint: endpoint.to_owned(),
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        },
    }
}

pub fn client_for(
    emulator: &EmulatorHandle,
    access_key: &str,
    secret_key: &str,
) -> DataForestClient {
    DataForestClient::new(
        client_config(&emulator.url()),
        Credentials::new(access_key, secret_key),
    )
    .expect("client builds")
}

pub fn client(emulator: &EmulatorHandle) -> DataForestClient {
    client_for(emulator, AK1, SK1)
}

pub fn spec() -> AiAppSpec {
    AiAppSpec {
        ai_workspace_id: WORKSPACE.into(),
        name_prefix: None,
        queue_name: "gpu".into(),
        data: Default::default(),
        docker: AiAppDocker {
            image: "nvcr.io/nvidia/pytorch:24.01-py3".to_owned(),
            command: "python train.py".to_owned(),
            ..Default::default()
        },
        resource: AiAppResource {
            gpu_count: Some(1),
            gpu_model: Some("T4".into()),
            ..Default::default()
        },
        credentials: None,
        deletion_policy: Default::default(),
        suspend: false,
        start_deadline_seconds: None,
        active_deadline_seconds: None,
        backoff_limit: 0,
    }
}

pub fn request(prefix: &str) -> SubmitRequest {
    SubmitRequest::from_spec(&spec(), prefix)
}

/// A request whose app ends or stays as the docker env says.
pub fn request_with_env(prefix: &str, env: &[(&str, &str)]) -> SubmitRequest {
    let mut spec = spec();
    spec.docker.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    SubmitRequest::from_spec(&spec, prefix)
}

/// Polls `check` until it yields a value, failing the test after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A secret key no account holds: the emulator refuses it. Like the real ones, it must
/// never show in what the binary prints.
pub const WRONG_SK: &str = "wrong-secret-never-printed-0123456789xyz";

/// How long one run of the binary may take before the test fails (it is killed then).
pub const CLI_LIMIT: Duration = Duration::from_secs(60);

/// What one run of the built `dataforest-operator` gave.
#[derive(Debug)]
pub struct CliRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// The last line of stderr: the error line, after any log lines RUST_LOG asked for.
    pub fn error_line(&self) -> &str {
        self.stderr.lines().last().unwrap_or_default()
    }
}

/// Runs the built binary with `args`, `stdin` on its standard input, and of the variables
/// that steer it only those in `env` (the test's own NCP_*, DATAFOREST_ENDPOINT, RUST_LOG
/// and LOG_FORMAT are removed). Fails the test when a secret key (the emulator's, the
/// wrong one, or one given in `env`) shows on stdout or stderr.
pub async fn run_cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> CliRun {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt as _;

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dataforest-operator"));
    command.args(args);
    for name in [
        "NCP_ACCESS_KEY",
        "NCP_SECRET_KEY",
        "NCP_ACCOUNT_ID",
        "DATAFOREST_ENDPOINT",
        "RUST_LOG",
        "LOG_FORMAT",
    ] {
        command.env_remove(name);
    }
    command
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("the binary starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A binary that stops before reading closes the pipe; its output tells why.
        let _ = pipe.write_all(text.as_bytes()).await;
        // Dropping the pipe closes it: the binary reads to its end.
    }
    let output = tokio::time::timeout(CLI_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not end within {CLI_LIMIT:?}"))
        .unwrap();
    let run = CliRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    let given = env
        .iter()
        .filter(|(name, _)| *name == "NCP_SECRET_KEY")
        .map(|(_, value)| *value);
    for secret in [SK1, SK2, WRONG_SK].into_iter().chain(given) {
        if secret.trim().is_empty() {
            continue;
        }
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{args:?} printed a secret key: {run:?}"
        );
    }
    run
}

/// A temporary folder, removed when the test ends however it ends.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("df-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn file(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
