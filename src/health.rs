//! Liveness, readiness and metrics over HTTP on one port, for the kubelet and Prometheus.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::metrics::{self, Metrics};

const TEXT: &str = "text/plain; charset=utf-8";

/// How long shutdown waits for requests in flight before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Whether the operator can do its work, and if not, why; `/readyz` serves it.
#[derive(Debug)]
pub struct Health {
    state: RwLock<Readiness>,
}

#[derive(Debug)]
struct Readiness {
    ready: bool,
    reason: String,
}

impl Health {
    /// Not ready until told otherwise: nothing has been checked yet.
    pub fn new() -> Arc<Health> {
        Arc::new(Health {
            state: RwLock::new(Readiness {
                ready: false,
                reason: "starting".to_owned(),
            }),
        })
    }

    /// Sets readiness; `reason` says why not ready (ignored when ready). Logs changes only,
    /// so a retry loop that keeps finding the same problem does not flood the log.
    pub fn set_ready(&self, ready: bool, reason: impl Into<String>) {
        let reason = if ready { String::new() } else { reason.into() };
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.ready == ready && state.reason == reason {
            return;
        }
        if ready {
            tracing::info!("ready");
        } else {
            tracing::warn!(reason = %reason, "not ready");
        }
        *state = Readiness { ready, reason };
    }

    pub fn is_ready(&self) -> bool {
        self.state.read().unwrap_or_else(|e| e.into_inner()).ready
    }

    /// Why not ready, or `None` when ready; one read, so the answer never mixes two states.
    pub fn not_ready_reason(&self) -> Option<String> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        (!state.ready).then(|| state.reason.clone())
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until `shutdown` resolves,
/// then lets requests in flight finish (for [`SHUTDOWN_GRACE`] at most) and returns.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let handler = move |request: Request<Incoming>| {
        let response = route(&metrics, &health, &request);
        async move { Ok::<_, Infallible>(response) }
    };
    dataforest_common::serve::serve(listener, handler, shutdown, SHUTDOWN_GRACE).await;
}

fn route(metrics: &Metrics, health: &Health, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let known = matches!(path, "/healthz" | "/readyz" | "/metrics");
    if !known {
        return respond(StatusCode::NOT_FOUND, TEXT, "not found".to_owned());
    }
    // hyper leaves out the body of an answer to HEAD.
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "method not allowed".to_owned(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/healthz" => respond(StatusCode::OK, TEXT, "ok".to_owned()),
        "/readyz" => match health.not_ready_reason() {
            None => respond(StatusCode::OK, TEXT, "ok".to_owned()),
            Some(reason) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready: {reason}"),
            ),
        },
        _ => respond(StatusCode::OK, metrics::CONTENT_TYPE, metrics.encode()),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
