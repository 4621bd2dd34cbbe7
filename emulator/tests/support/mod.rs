//! What the emulator's tests share: an emulator with two accounts, and requests made by
//! hand and signed by an HMAC computed here, independently of any crate's signing code.
#![allow(dead_code)]

use std::time::Duration;

use base64::Engine as _;
use dataforest_common::sign::now_millis;
use dataforest_emulator::{Emulator, EmulatorConfig, EmulatorHandle, Timeline};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const AK1: &str = "AKEMULATOR0000000001";
pub const SK1: &str = "emulator-secret-one-0123456789abcdefghij";
pub const ACCOUNT1: &str = "acct1QDeb59ZeUJwKNqssE";
pub const AK2: &str = "AKEMULATOR0000000002";
pub const SK2: &str = "emulator-secret-two-0123456789abcdefghij";
pub const ACCOUNT2: &str = "acct2QDeb59ZeUJwKNqssE";

pub const SUBMIT: &str = "/api/v2/aiapps/submit";
pub const DETAIL: &str = "/api/v2/aiapps/getDetail";
pub const LIST: &str = "/api/v2/aiapps/getList";
pub const KILL: &str = "/api/v2/aiapps/kill";

/// A timeline long enough that an app stays ACCEPTED for the whole test.
pub const FOREVER: Timeline = Timeline {
    accepted: Duration::from_secs(3600),
    running: Duration::from_secs(3600),
};

pub fn config(timeline: Timeline) -> EmulatorConfig {
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

/// Signs with an HMAC computed here, independently of the crates' signing code.
pub fn signature(path: &str, timestamp: &str, access_key: &str, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("POST {path}\n{timestamp}\n{access_key}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A submit body as the documentation shows it, with name prefix `prefix`.
pub fn submit_body_with_prefix(prefix: &str) -> Value {
    json!({
        "aiWorkspaceId": "6ZKSGoSJMMwctK257nxgiL",
        "namePrefix": prefix,
        "queueName": "gpu",
        "data": {"input": [], "output": []},
        "docker": {"image": "nvcr.io/nvidia/pytorch:24.01-py3", "command": "python train.py"},
        "resource": {"gpuCount": 1, "gpuModel": "T4"},
    })
}

pub fn submit_body() -> Value {
    submit_body_with_prefix("hand")
}

pub fn auth_failed(details: &str) -> Value {
    json!({"error": {"errorCode": "200", "message": "Authentication Failed", "details": details}})
}

/// Hand-made requests to one emulator. Redirects are never followed, so a test sees
/// exactly what the emulator answered.
pub struct Raw {
    pub http: reqwest::Client,
    pub base: String,
}

impl Raw {
    pub fn new(emu: &EmulatorHandle) -> Self {
        Self::at(&emu.url())
    }

    pub fn at(base: &str) -> Self {
        // The workspace builds reqwest on rustls without a default crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
        }
    }

    /// A request to `path` signed at `timestamp` with the given key pair, not yet sent.
    pub fn signed(
        &self,
        path: &str,
        body: &Value,
        timestamp: u64,
        access_key: &str,
        secret: &str,
    ) -> reqwest::RequestBuilder {
        let ts = timestamp.to_string();
        self.http
            .post(format!("{}{path}", self.base))
            .header("x-ncp-apigw-timestamp", &ts)
            .header("x-ncp-iam-access-key", access_key)
            .header(
                "x-ncp-apigw-signature-v2",
                signature(path, &ts, access_key, secret),
            )
            .json(body)
    }

    /// POSTs `body` to `path`, signed at `timestamp` with the given key pair.
    pub async fn post_signed(
        &self,
        path: &str,
        body: &Value,
        timestamp: u64,
        access_key: &str,
        secret: &str,
    ) -> (u16, Value) {
        read(self.signed(path, body, timestamp, access_key, secret)).await
    }

    /// POSTs `body` to `path`, signed now with the first account's keys.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_signed(path, body, now_millis(), AK1, SK1).await
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/_emulator/{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request).await
    }
}

/// Sends and reads an answer: its status, and its body as JSON (or as a JSON string
/// when it is not JSON).
pub async fn read(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The `dataforest-emulator` binary, killed when dropped (also when a test fails).
pub struct EmulatorProcess(tokio::process::Child);

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Starts the binary on a free port with account 1 and `args`; returns it and the URL it
/// printed.
pub async fn spawn_binary(args: &[&str]) -> (EmulatorProcess, String) {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dataforest-emulator"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .args(["--credential", &format!("{AK1}:{SK1}:{ACCOUNT1}")])
        .env_remove("DATAFOREST_EMULATOR_CREDENTIALS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let process = EmulatorProcess(child);
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line
        .strip_prefix("dataforest emulator listening on ")
        .expect(&line)
        .to_owned();
    (process, url)
}
