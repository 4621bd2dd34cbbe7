//! The one error type of the Data Forest client, classified once here: retryable or
//! permanent, and for submit whether the app may exist anyway.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;

/// Bodies of error answers are kept up to this many bytes, for the user's message.
pub const BODY_KEEP_BYTES: usize = 512;

/// A failed call to the Data Forest API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API gateway refused the request: `{"error":{"errorCode","message","details"}}`.
    #[error("API gateway answered HTTP {status} (errorCode {code}): {message}{}", details_suffix(.details))]
    Gateway {
        status: u16,
        /// Sent as a string or a number; kept as text.
        code: String,
        message: String,
        details: Option<String>,
        trace_id: Option<String>,
    },
    /// Data Forest answered `{"success":false,"message"}`, whatever the HTTP status.
    #[error("Data Forest answered HTTP {status}: {message}")]
    Service {
        status: u16,
        message: String,
        trace_id: Option<String>,
    },
    /// The request failed below HTTP.
    #[error("could not reach the Data Forest API ({kind}): {message}")]
    Transport {
        kind: TransportKind,
        message: String,
    },
    /// No answer within the client's timeout; the request may have been processed.
    #[error("the Data Forest API did not answer within {after:?}")]
    Timeout { after: Duration },
    /// An answer that is neither a success nor a known error shape (an HTML page from a
    /// proxy, truncated JSON, ...).
    #[error("unreadable answer from the Data Forest API (HTTP {status}): {reason}; body: {body:?}")]
    Undecodable {
        status: u16,
        reason: String,
        /// The start of the body, at most [`BODY_KEEP_BYTES`].
        body: String,
        trace_id: Option<String>,
    },
}

/// What went wrong below HTTP, and so whether the request can have reached the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// The host name did not resolve: nothing was sent.
    Dns,
    /// The connection was refused or could not be opened: nothing was sent.
    Connect,
    /// The connection broke after the request may have been written.
    ConnectionLost,
    /// The request could not be built or sent for another reason.
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Dns => "DNS failure",
            TransportKind::Connect => "connection failed",
            TransportKind::ConnectionLost => "connection lost",
            TransportKind::Other => "request failed",
        })
    }
}

fn details_suffix(details: &Option<String>) -> String {
    details
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// What a Data Forest error means. The overview's table pairs each message with a status;
/// the message decides, since an error can also come with HTTP 200.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServiceKind {
    Quota,
    Invalid,
    Forbidden,
    NotFound,
    Unexpected,
    Other,
}

fn service_kind(status: u16, message: &str) -> ServiceKind {
    let is = |text: &str| message.trim().eq_ignore_ascii_case(text);
    match status {
        _ if is("exceeded limit on resource quota") => ServiceKind::Quota,
        _ if is("invalid request parameters") => ServiceKind::Invalid,
        _ if is("not allowed to access") => ServiceKind::Forbidden,
        _ if is("no such element") => ServiceKind::NotFound,
        _ if is("unexpected error") => ServiceKind::Unexpected,
        400 => ServiceKind::Invalid,
        401 | 403 => ServiceKind::Forbidden,
        404 => ServiceKind::NotFound,
        500.. => ServiceKind::Unexpected,
        _ => ServiceKind::Other,
    }
}

impl ApiError {
    /// HTTP status of the answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Gateway { status, .. }
            | ApiError::Service { status, .. }
            | ApiError::Undecodable { status, .. } => Some(*status),
            ApiError::Transport { .. } | ApiError::Timeout { .. } => None,
        }
    }

    /// The `x-ncp-trace-id` of the answer, for support tickets.
    pub fn trace_id(&self) -> Option<&str> {
        match self {
            ApiError::Gateway { trace_id, .. }
            | ApiError::Service { trace_id, .. }
            | ApiError::Undecodable { trace_id, .. } => trace_id.as_deref(),
            ApiError::Transport { .. } | ApiError::Timeout { .. } => None,
        }
    }

    /// The service's own words, for a condition message.
    pub fn api_message(&self) -> Option<&str> {
        match self {
            ApiError::Gateway { message, .. } | ApiError::Service { message, .. } => Some(message),
            _ => None,
        }
    }

    fn service_kind(&self) -> Option<ServiceKind> {
        match self {
            ApiError::Service {
                status, message, ..
            } => Some(service_kind(*status, message)),
            _ => None,
        }
    }

    /// Whether the same call may succeed later without a change by a person. Reads and
    /// kill retry on this; for submit, ask [`ApiError::outcome_unknown`] first.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Transport { kind, .. } => *kind != TransportKind::Other,
            ApiError::Timeout { .. } => true,
            ApiError::Gateway { status, .. } | ApiError::Undecodable { status, .. } => {
                *status == 429 || *status >= 500
            }
            ApiError::Service { status, .. } => {
                *status == 429
                    || matches!(
                        self.service_kind(),
                        Some(ServiceKind::Quota | ServiceKind::Unexpected)
                    )
            }
        }
    }

    /// Data Forest does not know the app (404 `no such element`).
    pub fn is_not_found(&self) -> bool {
        self.service_kind() == Some(ServiceKind::NotFound)
    }

    /// For submit: the request may have reached the service and created the app, so the
    /// caller must look for it before submitting again.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ApiError::Timeout { .. } => true,
            ApiError::Transport { kind, .. } => *kind == TransportKind::ConnectionLost,
            ApiError::Gateway { status, .. } => *status >= 500,
            ApiError::Service { .. } => self.service_kind() == Some(ServiceKind::Unexpected),
            // A success status with an unreadable body: the service may well have acted.
            ApiError::Undecodable { status, .. } => *status >= 500 || (200..300).contains(status),
        }
    }

    /// A short CamelCase reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        if let Some(kind) = self.service_kind() {
            return match kind {
                ServiceKind::Quota => "QuotaExceeded",
                ServiceKind::Invalid => "InvalidSpec",
                ServiceKind::Forbidden => "Unauthorized",
                ServiceKind::NotFound => "NotFound",
                ServiceKind::Unexpected => "ApiUnavailable",
                ServiceKind::Other if self.status() == Some(429) => "Throttled",
                ServiceKind::Other => "ApiError",
            };
        }
        match self {
            ApiError::Gateway {
                status: 401 | 403, ..
            } => "Unauthorized",
            ApiError::Gateway { status: 429, .. } => "Throttled",
            ApiError::Gateway {
                status: 400 | 413, ..
            } => "InvalidSpec",
            ApiError::Gateway { status: 404, .. } => "EndpointNotFound",
            _ if self.is_retryable() => "ApiUnavailable",
            _ => "ApiError",
        }
    }
}

/// Reads an answer: a success body as `T`, any error shape as an [`ApiError`]. The shape
/// of the body decides, not the status: Data Forest can say `success:false` with HTTP 200.
pub fn decode_response<T: DeserializeOwned>(
    status: u16,
    body: &[u8],
    trace_id: Option<String>,
) -> Result<T, ApiError> {
    let undecodable = |reason: String| ApiError::Undecodable {
        status,
        reason,
        body: truncate_body(body),
        trace_id: trace_id.clone(),
    };
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) if body.iter().all(u8::is_ascii_whitespace) => {
            return Err(undecodable(format!("empty body ({e})")));
        }
        Err(e) => return Err(undecodable(format!("not JSON: {e}"))),
    };
    if let Some(error) = value.get("error").filter(|e| e.is_object()) {
        return Err(ApiError::Gateway {
            status,
            code: text_of(error.get("errorCode")).unwrap_or_default(),
            message: text_of(error.get("message")).unwrap_or_default(),
            details: text_of(error.get("details")),
            trace_id,
        });
    }
    if value.get("success").and_then(serde_json::Value::as_bool) == Some(false) {
        return Err(ApiError::Service {
            status,
            message: text_of(value.get("message")).unwrap_or_default(),
            trace_id,
        });
    }
    if !(200..300).contains(&status) {
        return Err(undecodable(format!(
            "HTTP {status} without a known error shape"
        )));
    }
    if !value.is_object() {
        return Err(undecodable("not a JSON object".to_owned()));
    }
    serde_json::from_value(value).map_err(|e| undecodable(format!("unexpected shape: {e}")))
}

fn text_of(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The start of a body as text, cut on a character boundary.
pub fn truncate_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_KEEP_BYTES)]);
    let text = text.trim_end_matches('\u{FFFD}');
    if body.len() > BODY_KEEP_BYTES {
        format!("{text}…")
    } else {
        text.to_owned()
    }
}

/// Classifies a reqwest failure by whether the request can have left this process.
pub(crate) fn from_transport(error: &reqwest::Error, timeout: Duration) -> ApiError {
    let chain = error_chain(error);
    let kind = if chain.contains("dns error") || chain.contains("failed to lookup address") {
        TransportKind::Dns
    } else if error.is_connect() {
        TransportKind::Connect
    } else if error.is_timeout() {
        return ApiError::Timeout { after: timeout };
    } else if error.is_builder() {
        TransportKind::Other
    } else {
        TransportKind::ConnectionLost
    };
    ApiError::Transport {
        kind,
        message: chain,
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataforest::types::KillResponse;

    fn decode(status: u16, body: &str) -> Result<KillResponse, ApiError> {
        decode_response(status, body.as_bytes(), Some("trace-1".to_owned()))
    }

    fn err(status: u16, body: &str) -> ApiError {
        decode(status, body).expect_err(body)
    }

    const AUTH: &str = r#"{"error":{"errorCode":"200","message":"Authentication Failed","details":"Invalid authentication information."}}"#;

    #[test]
    fn errors_are_classified_as_the_design_says() {
        // (status, body, retryable, outcome unknown, not found, reason)
        #[rustfmt::skip]
        let table: &[(u16, &str, bool, bool, bool, &str)] = &[
            (401, AUTH, false, false, false, "Unauthorized"),
            (401, r#"{"error":{"errorCode":210,"message":"Permission Denied"}}"#, false, false, false, "Unauthorized"),
            (403, r#"{"success":false,"message":"not allowed to access"}"#, false, false, false, "Unauthorized"),
            (400, r#"{"success":false,"message":"invalid request parameters"}"#, false, false, false, "InvalidSpec"),
            (400, r#"{"success":false,"message":"exceeded limit on resource quota"}"#, true, false, false, "QuotaExceeded"),
            (404, r#"{"success":false,"message":"no such element"}"#, false, false, true, "NotFound"),
            (404, r#"{"error":{"errorCode":"300","message":"Not Found Exception"}}"#, false, false, false, "EndpointNotFound"),
            (429, r#"{"error":{"errorCode":"410","message":"Throttle Limited"}}"#, true, false, false, "Throttled"),
            (429, r#"{"error":{"errorCode":400,"message":"Quota Exceeded"}}"#, true, false, false, "Throttled"),
            (413, r#"{"error":{"errorCode":"430","message":"Request Entity Too Large"}}"#, false, false, false, "InvalidSpec"),
            (500, r#"{"success":false,"message":"unexpected error"}"#, true, true, false, "ApiUnavailable"),
            (503, r#"{"error":{"errorCode":"500","message":"Endpoint Error"}}"#, true, true, false, "ApiUnavailable"),
            (504, r#"{"error":{"errorCode":"510","message":"Endpoint Timeout"}}"#, true, true, false, "ApiUnavailable"),
            (502, "<html><body>Bad Gateway</body></html>", true, true, false, "ApiUnavailable"),
            (200, r#"{"success":false,"message":"invalid request parameters"}"#, false, false, false, "InvalidSpec"),
            (200, "<html>maintenance</html>", false, true, false, "ApiError"),
            (404, "<html>not here</html>", false, false, false, "ApiError"),
            (200, r#"{"success":false,"message":"unexpected error"}"#, true, true, false, "ApiUnavailable"),
            (200, r#"{"success":false,"message":"no such element"}"#, false, false, true, "NotFound"),
            (409, r#"{"success":false,"message":"something new"}"#, false, false, false, "ApiError"),
        ];
        for &(status, body, retryable, unknown, not_found, reason) in table {
            let e = err(status, body);
            assert_eq!(e.is_retryable(), retryable, "retryable {status} {body}");
            assert_eq!(e.outcome_unknown(), unknown, "unknown {status} {body}");
            assert_eq!(e.is_not_found(), not_found, "not found {status} {body}");
            assert_eq!(e.reason(), reason, "reason {status} {body}");
        }
    }

    #[test]
    fn transport_failures_are_classified_by_whether_anything_was_sent() {
        let table = [
            (TransportKind::Dns, true, false),
            (TransportKind::Connect, true, false),
            (TransportKind::ConnectionLost, true, true),
            (TransportKind::Other, false, false),
        ];
        for (kind, retryable, unknown) in table {
            let e = ApiError::Transport {
                kind,
                message: String::new(),
            };
            assert_eq!(e.is_retryable(), retryable, "{kind}");
            assert_eq!(e.outcome_unknown(), unknown, "{kind}");
        }
        let timeout = ApiError::Timeout {
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_retryable() && timeout.outcome_unknown());
        assert_eq!(timeout.reason(), "ApiUnavailable");
    }

    #[test]
    fn a_numeric_error_code_is_kept_as_text_with_details_and_trace_id() {
        match err(
            401,
            r#"{"error":{"errorCode":200,"message":"Authentication Failed","details":"missing"}}"#,
        ) {
            e @ ApiError::Gateway { .. } => {
                assert_eq!(e.trace_id(), Some("trace-1"));
                assert_eq!(
                    e.to_string(),
                    "API gateway answered HTTP 401 (errorCode 200): Authentication Failed (missing)"
                );
                let ApiError::Gateway { code, .. } = e else {
                    unreachable!()
                };
                assert_eq!(code, "200");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn success_false_on_http_200_is_a_service_error_with_its_message() {
        let e = err(
            200,
            r#"{"success":false,"message":"exceeded limit on resource quota"}"#,
        );
        assert!(matches!(e, ApiError::Service { status: 200, .. }));
        assert_eq!(e.api_message(), Some("exceeded limit on resource quota"));
        assert_eq!(e.reason(), "QuotaExceeded");
    }

    #[test]
    fn an_html_page_gives_a_clear_error_quoting_a_truncated_body() {
        let page = format!("<html><body>{}</body></html>", "x".repeat(2000));
        let e = err(502, &page);
        let ApiError::Undecodable { body, reason, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(reason.starts_with("not JSON"), "{reason}");
        assert!(body.starts_with("<html><body>xxx"));
        assert!(body.len() <= BODY_KEEP_BYTES + '…'.len_utf8());
        assert!(e.to_string().contains("HTTP 502"));
    }

    #[test]
    fn truncation_never_splits_a_character() {
        let body = "가".repeat(400);
        let kept = truncate_body(body.as_bytes());
        assert!(kept.ends_with('…'));
        assert!(kept.trim_end_matches('…').chars().all(|c| c == '가'));
    }

    #[test]
    fn an_empty_or_shapeless_body_is_undecodable_not_a_panic() {
        for (status, body) in [
            (200, ""),
            (200, "[]"),
            (500, "{}"),
            (200, "{\"success\":"),
            (404, "null"),
        ] {
            let e = err(status, body);
            assert!(
                matches!(e, ApiError::Undecodable { .. }),
                "{status} {body:?}: {e:?}"
            );
        }
    }

    #[test]
    fn a_success_body_decodes_leniently() {
        let ok = decode(
            200,
            r#"{"success":true,"message":"success","id":"abc","new":1}"#,
        )
        .unwrap();
        assert_eq!(ok.id.as_deref(), Some("abc"));
    }
}
