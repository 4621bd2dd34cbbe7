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
        // The admin API is the test tool, not the gateway: hyper's true date stands.
        return respond(reply, None);
    }
    let operation = Operation::from_path(&path).filter(|_| request.method() == Method::POST);
    let Some(operation) = operation else {
        shared.counters.count("unknown", "notFound");
        return respond_as_gateway(
            shared,
            gateway_error(404, "300", "Not Found Exception", None),
        );
    };
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or(path, |pq| pq.as_str().to_owned());
    let (parts, body) = request.into_parts();
    let Some(body) = read_body(body).await? else {
        shared.counters.count(operation.as_str(), "tooLarge");
        return respond_as_gateway(
            shared,
            gateway_error(413, "430", "Request Entity Too Large", None),
        );
    };
    let (reply, outcome) =
        api::handle(shared, operation, &path_and_query, &parts.headers, &body).await;
    shared.counters.count(operation.as_str(), outcome);
    respond_as_gateway(shared, reply)
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

/// An answer dated by the gateway's clock, which the `clockOffsetMs` fault may skew.
fn respond_as_gateway(shared: &Shared, reply: Reply) -> Result<Response<Full<Bytes>>, Dropped> {
    respond(reply, api::gateway_date(shared))
}

const JSON: &str = "application/json;charset=UTF-8";

/// `date` replaces the `Date` header hyper would write from the true clock.
fn respond(reply: Reply, date: Option<String>) -> Result<Response<Full<Bytes>>, Dropped> {
    let mut location = None;
    let (status, content_type, body) = match reply {
        Reply::Drop => return Err(Dropped),
        Reply::Json(status, value) => (status, Some(JSON), Bytes::from(value.to_string())),
        Reply::Text(status, text) => (status, Some("text/plain;charset=UTF-8"), Bytes::from(text)),
        Reply::Html(status, page) => (status, Some("text/html;charset=UTF-8"), Bytes::from(page)),
        Reply::TruncatedJson(status, value) => (status, Some(JSON), first_half(value.to_string())),
        Reply::Redirect(status, to) => {
            location = Some(to);
            (status, None, Bytes::new())
        }
    };
    let trace_id = format!("emu-{:016x}", fastrand::u64(..));
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("x-ncp-trace-id", trace_id);
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    if let Some(location) = location {
        builder = builder.header("location", location);
    }
    if let Some(date) = date {
        builder = builder.header("date", date);
    }
    match builder.body(Full::new(body)) {
        Ok(response) => Ok(response),
        // Only a header value validation missed gets here (a location set in Rust
        // without `validate`): say so rather than panic in the connection's task.
        Err(error) => {
            tracing::warn!(%error, "cannot build the answer");
            let mut response = Response::new(Full::new(Bytes::from_static(
                b"emulator: cannot build the answer (invalid fault settings?)\n",
            )));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            Ok(response)
        }
    }
}

/// The first half of a JSON text, cut on a character boundary. A JSON object or array
/// ends with its closing bracket, so any shorter prefix of one never parses.
fn first_half(text: String) -> Bytes {
    let mut cut = text.len() / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut bytes = Bytes::from(text);
    bytes.truncate(cut);
    bytes
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
        (&Method::GET, "faults") => (Reply::Json(200, json!(**shared.faults())), "ok"),
        (&Method::POST | &Method::PUT, "faults") => {
            let parsed = serde_json::from_slice::<Faults>(body)
                .map_err(|e| format!("invalid faults: {e}"))
                .and_then(|f| f.validate().map(|()| f).map_err(|e| e.to_string()));
            match parsed {
                Ok(faults) => {
                    tracing::info!(?faults, "faults set");
                    let answer = json!(faults);
                    shared.faults().replace(faults);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_body_is_half_the_json_cut_on_a_character_boundary_and_never_parses() {
        let json = json!({"message": "한국어 메시지", "id": "abc"}).to_string();
        let half = first_half(json.clone());
        let text = std::str::from_utf8(&half).expect("cut on a character boundary");
        assert!(json.starts_with(text));
        assert!((json.len() / 2 - 3..=json.len() / 2).contains(&text.len()));
        assert!(serde_json::from_str::<serde_json::Value>(text).is_err());
        assert_eq!(first_half("{}".to_owned()), Bytes::from_static(b"{"));
    }

    #[test]
    fn a_redirect_has_its_location_and_no_body() {
        let response = respond(
            Reply::Redirect(307, "http://elsewhere.example/".to_owned()),
            Some("Thu, 01 Jan 1970 00:00:01 GMT".to_owned()),
        )
        .unwrap();
        assert_eq!(response.status(), 307);
        assert_eq!(response.headers()["location"], "http://elsewhere.example/");
        assert_eq!(response.headers()["date"], "Thu, 01 Jan 1970 00:00:01 GMT");
        assert!(response.headers().get("content-type").is_none());
    }

    #[test]
    fn an_invalid_location_set_without_validation_gives_a_500_not_a_panic() {
        let response = respond(Reply::Redirect(302, "bad\nvalue".to_owned()), None).unwrap();
        assert_eq!(response.status(), 500);
    }
}
