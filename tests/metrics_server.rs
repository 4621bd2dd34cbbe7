//! The health and metrics server over real HTTP: probes, readiness with its reason, the
//! metrics of calls made through `InstrumentedApi`, and a clean stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dataforest_operator::dataforest::{
    ApiError, AppDetail, AppSummary, DataForestApi, KillResponse, SubmitRequest, SubmitResponse,
};
use dataforest_operator::health::{self, Health};
use dataforest_operator::metrics::{InstrumentedApi, Metrics};
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Answers getDetail and refuses everything else as throttled: enough to give two outcomes.
struct FakeApi;

fn throttled() -> ApiError {
    ApiError::Gateway {
        status: 429,
        code: "410".to_owned(),
        message: "Throttle Limited".to_owned(),
        details: None,
        trace_id: None,
    }
}

impl DataForestApi for FakeApi {
    fn submit<'a>(
        &'a self,
        _: &'a SubmitRequest,
    ) -> BoxFuture<'a, Result<SubmitResponse, ApiError>> {
        Box::pin(async { Err(throttled()) })
    }
    fn get_detail<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<AppDetail, ApiError>> {
        Box::pin(async { Ok(AppDetail::default()) })
    }
    fn list<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<AppSummary>, ApiError>> {
        Box::pin(async { Err(throttled()) })
    }
    fn kill<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<KillResponse, ApiError>> {
        Box::pin(async { Err(throttled()) })
    }
}

/// A running server and what it serves.
struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    http: reqwest::Client,
}

impl Server {
    async fn start() -> Server {
        dataforest_operator::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        let health = Health::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(health::serve(
            listener,
            metrics.clone(),
            health.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            metrics,
            health,
            stop,
            task,
            http: reqwest::Client::new(),
        }
    }

    /// Status, content type and body of `GET path`.
    async fn get(&self, path: &str) -> (u16, String, String) {
        let response = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    /// Stops the server and waits for `serve` to return, failing rather than hanging.
    async fn stop(self) -> SocketAddr {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3), self.task)
            .await
            .expect("serve returns promptly once told to stop, idle connections included")
            .unwrap();
        self.addr
    }
}

#[tokio::test]
async fn healthz_answers_ok_while_the_process_serves_even_when_not_ready() {
    let server = Server::start().await;
    let (status, content_type, body) = server.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    server.stop().await;
}

#[tokio::test]
async fn readyz_is_503_with_the_reason_until_ready_then_200() {
    let server = Server::start().await;
    server
        .health
        .set_ready(false, "CRD aiapps.dataforest.dev not installed");
    let (status, _, body) = server.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("CRD aiapps.dataforest.dev not installed"),
        "{body}"
    );

    server.health.set_ready(true, "");
    let (status, _, body) = server.get("/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    server.health.set_ready(false, "lost the apiserver");
    let (status, _, body) = server.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("lost the apiserver"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn metrics_show_calls_made_through_the_instrumented_api_by_operation_and_outcome() {
    let server = Server::start().await;
    let api: Arc<dyn DataForestApi> = Arc::new(InstrumentedApi::new(
        Arc::new(FakeApi),
        server.metrics.clone(),
    ));
    api.get_detail("app-1").await.unwrap();
    api.get_detail("app-1").await.unwrap();
    api.kill("app-1").await.unwrap_err();

    let (status, content_type, body) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    for line in [
        r#"dataforest_operator_api_calls_total{operation="getDetail",outcome="Success"} 2"#,
        r#"dataforest_operator_api_calls_total{operation="kill",outcome="Throttled"} 1"#,
        r#"dataforest_operator_api_call_duration_seconds_count{operation="getDetail"} 2"#,
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line} in\n{body}");
    }
    // No leader reports here: no per-phase count, rather than zeros that read as "none".
    assert!(
        !body
            .lines()
            .any(|l| l.starts_with("dataforest_operator_aiapps")),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"));
    server.stop().await;
}

#[tokio::test]
async fn metrics_carry_build_info_the_leader_gauge_and_the_process_metrics() {
    let server = Server::start().await;
    server.metrics.set_leader("dataforest-operator", true);
    let (_, _, body) = server.get("/metrics").await;
    let build_info = format!(
        r#"dataforest_operator_build_info{{version="{}",git_sha="{}"}} 1"#,
        env!("CARGO_PKG_VERSION"),
        dataforest_operator::cli::COMMIT
    );
    assert!(
        body.lines().any(|l| l == build_info),
        "{build_info} in\n{body}"
    );
    assert!(
        body.lines()
            .any(|l| l == r#"dataforest_operator_leader{lease="dataforest-operator"} 1"#),
        "{body}"
    );
    let start_time = body
        .lines()
        .find_map(|l| l.strip_prefix("process_start_time_seconds "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no process_start_time_seconds in\n{body}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start_time <= now + 1.0 && start_time > now - 86_400.0,
        "{start_time}"
    );
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(name)),
            "{name} in\n{body}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn any_other_path_is_404_and_another_method_is_405() {
    let server = Server::start().await;
    assert_eq!(server.get("/").await.0, 404);
    assert_eq!(server.get("/metrics/extra").await.0, 404);
    let response = server
        .http
        .post(format!("http://{}/metrics", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    server.stop().await;
}

#[tokio::test]
async fn the_server_stops_on_shutdown_and_refuses_new_connections() {
    let server = Server::start().await;
    // A keep-alive connection stays open in the client's pool across the stop.
    assert_eq!(server.get("/healthz").await.0, 200);
    let addr = server.stop().await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "still accepting after shutdown");
}
