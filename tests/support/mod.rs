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
        ai_workspace_id: WORKSPACE.to_owned(),
        name_prefix: None,
        queue_name: "gpu".to_owned(),
        data: Default::default(),
        docker: AiAppDocker {
            image: "nvcr.io/nvidia/pytorch:24.01-py3".to_owned(),
            command: "python train.py".to_owned(),
            ..Default::default()
        },
        resource: AiAppResource {
            gpu_count: Some(1),
            gpu_model: Some("T4".to_owned()),
            ..Default::default()
        },
        credentials: None,
        deletion_policy: Default::default(),
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
