//! Routing of every request, and the unsigned admin endpoints under `/_emulator/`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use dataforest_common::Operation;

use crate::api::{self, Reply, gateway_error};
use crate::faults::Faults;
use crate::{Shared, stats};

/// The gateway's request size limit as the emulator applies it.
const MAX_BODY: usize = 1024 * 1024;

/// Returned to hyper to close the connection without writing an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
pub(crate) struct Dropped;

/// Serves until the handle asks to stop (or is gone), then closes every connection at
/// once: a test that stops the emulator wants it gone, not polite.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let handler = move |request| {
        let shared = shared.clone();
        async move { route(&shared, request).await }
    };
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    dataforest_common::serve::serve(listener, handler, stopped, Duration::ZERO).await;
}

async fn route(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let path = request.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/_emulator/") {
        let method = request.method().clone();
        let body = read_body(request.into_body()).await?.unwrap_or_default();
        let (reply, outcome) = admin(shared, &method, rest, &body);
        shared.counters.count("admin", outcome);
        return respond(reply);
    }
    let operation = Operation::from_path(&path).filter(|_| request.method() == Method::POST);
    let Some(operation) = operation else {
        shared.counters.count("unknown", "notFound");
        return respond(gateway_error(404, "300", "Not Found Exception", None));
    };
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or(path, |pq| pq.as_str().to_owned());
    let (parts, body) = request.into_parts();
    let Some(body) = read_body(body).await? else {
        shared.counters.count(operation.as_str(), "tooLarge");
        return respond(gateway_error(413, "430", "Request Entity Too Large", None));
    };
    let (reply, outcome) =
        api::handle(shared, operation, &path_and_query, &parts.headers, &body).await;
    shared.counters.count(operation.as_str(), outcome);
    respond(reply)
}

/// `Ok(None)` when the body is over the limit; `Err` when the client went away.
async fn read_body(body: Incoming) -> Result<Option<Bytes>, Dropped> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes())),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Ok(None)
        }
        Err(_) => Err(Dropped),
    }
}

fn respond(reply: Reply) -> Result<Response<Full<Bytes>>, Dropped> {
    let (status, content_type, body) = match reply {
        Reply::Drop => return Err(Dropped),
        Reply::Json(status, value) => (
            status,
            "application/json;charset=UTF-8",
            Bytes::from(value.to_string()),
        ),
        Reply::Text(status, text) => (status, "text/plain;charset=UTF-8", Bytes::from(text)),
    };
    let trace_id = format!("emu-{:016x}", fastrand::u64(..));
    let response = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .header("x-ncp-trace-id", trace_id)
        .body(Full::new(body))
        .expect("status and headers are valid");
    Ok(response)
}

/// The admin API: a loopback test tool, unsigned on purpose.
fn admin(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> (Reply, &'static str) {
    let not_found = || {
        (
            Reply::Json(
                404,
                json!({"error": format!("no admin endpoint {method} /_emulator/{path}")}),
            ),
            "notFound",
        )
    };
    match (method, path) {
        (&Method::GET, "health") => (Reply::Text(200, "ok\n".to_owned()), "ok"),
        (&Method::GET, "apps") => (
            Reply::Json(200, json!(shared.apps().snapshots(Instant::now()))),
            "ok",
        ),
        (&Method::GET, "stats") => (Reply::Json(200, json!(stats::snapshot(shared))), "ok"),
        (&Method::GET, "faults") => (Reply::Json(200, json!(*shared.faults())), "ok"),
        (&Method::POST | &Method::PUT, "faults") => {
            let parsed = serde_json::from_slice::<Faults>(body)
                .map_err(|e| format!("invalid faults: {e}"))
                .and_then(|f| f.validate().map(|()| f).map_err(|e| e.to_string()));
            match parsed {
                Ok(faults) => {
                    tracing::info!(?faults, "faults set");
                    let answer = json!(faults);
                    *shared.faults() = faults;
                    (Reply::Json(200, answer), "ok")
                }
                Err(message) => (Reply::Json(400, json!({"error": message})), "invalid"),
            }
        }
        (&Method::GET, _) if path.starts_with("logs/") => {
            let apps = shared.apps();
            match apps.get(&path["logs/".len()..]) {
                Some(app) => (Reply::Text(200, app.log_text(Instant::now())), "ok"),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}
