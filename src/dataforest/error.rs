//! The one error type of the Data Forest client, classified once here: retryable or
//! permanent, and for submit whether the app may exist anyway.
//!
//! The rule: only a documented error in its documented JSON shape is permanent. Anything
//! else (an HTML page, a truncated body, a redirect, an error message no page lists, a
//! 401 that the gateway's own clock explains) is retried with back-off, so that a proxy
//! having a bad minute never parks an AiApp for good.

use std::fmt;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;

/// Bodies of error answers are kept up to this many bytes, for the user's message.
pub const BODY_KEEP_BYTES: usize = 512;

/// The gateway refuses request timestamps further than this from its clock.
pub const GATEWAY_MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// What the client read of an answer besides its body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResponseMeta {
    pub status: u16,
    /// `x-ncp-trace-id`, for support tickets.
    pub trace_id: Option<String>,
    /// The `Date` header: the gateway's clock, which explains a 401 for a stale timestamp.
    pub date: Option<Timestamp>,
    /// The host of a redirect's `Location` (never the whole URL, which may carry anything).
    pub location_host: Option<String>,
}

impl ResponseMeta {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }
}

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
    /// A 3xx: the client follows no redirect, since the signed headers and the body must
    /// go to the configured endpoint or nowhere.
    #[error(
        "the Data Forest API answered HTTP {status}, a redirect to {}; no redirect is followed, so signed requests \
         only go to the configured endpoint",
        .location_host.as_deref().unwrap_or("an unnamed host")
    )]
    Redirect {
        status: u16,
        location_host: Option<String>,
        trace_id: Option<String>,
    },
    /// A gateway 401 whose `Date` header shows that this host's clock, not the keys, is
    /// wrong: the request's timestamp was too far from the gateway's clock.
    #[error(
        "the API gateway refused the request's timestamp: its clock is {} {} this host's clock, and it \
         allows 5 minutes; fix this host's time (NTP)",
        dataforest_common::duration::display(.skew.unsigned_abs()),
        if .skew.is_negative() { "behind" } else { "ahead of" }
    )]
    ClockSkew {
        /// The gateway's clock minus ours.
        skew: SignedDuration,
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
            | ApiError::Undecodable { status, .. }
            | ApiError::Redirect { status, .. } => Some(*status),
            ApiError::ClockSkew { .. } => Some(401),
            ApiError::Transport { .. } | ApiError::Timeout { .. } => None,
        }
    }

    /// The `x-ncp-trace-id` of the answer, for support tickets.
    pub fn trace_id(&self) -> Option<&str> {
        match self {
            ApiError::Gateway { trace_id, .. }
            | ApiError::Service { trace_id, .. }
            | ApiError::Undecodable { trace_id, .. }
            | ApiError::Redirect { trace_id, .. }
            | ApiError::ClockSkew { trace_id, .. } => trace_id.as_deref(),
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
            ApiError::Timeout { .. }
            | ApiError::Undecodable { .. }
            | ApiError::Redirect { .. }
            | ApiError::ClockSkew { .. } => true,
            ApiError::Gateway { status, .. } => *status == 429 || *status >= 500,
            ApiError::Service { status, .. } => {
                *status == 429
                    || matches!(
                        self.service_kind(),
                        Some(ServiceKind::Quota | ServiceKind::Unexpected | ServiceKind::Other)
                    )
            }
        }
    }

    /// The keys were refused (a documented 401/403): the same keys will be refused again,
    /// for every AiApp that uses them.
    pub fn is_unauthorized(&self) -> bool {
        self.reason() == "Unauthorized"
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
            // Refused in front of the service: nothing was done.
            ApiError::Redirect { .. } | ApiError::ClockSkew { .. } => false,
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
            ApiError::Undecodable { .. } => "UnreadableAnswer",
            ApiError::Redirect { .. } => "Redirected",
            ApiError::ClockSkew { .. } => "ClockSkew",
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
    meta: ResponseMeta,
    body: &[u8],
) -> Result<T, ApiError> {
    let ResponseMeta {
        status,
        trace_id,
        date,
        location_host,
    } = meta;
    if (300..400).contains(&status) {
        return Err(ApiError::Redirect {
            status,
            location_host,
            trace_id,
        });
    }
    let undecodable = |reason: String| ApiError::Undecodable {
        status,
        reason,
        body: truncate_body(body),
        trace_id: trace_id.clone(),
    };
    // Checked as JSON without building it: a getList answer can hold thousands of apps,
    // and each is read once, straight into its type, at the end.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        return Err(if body.iter().all(u8::is_ascii_whitespace) {
            undecodable(format!("empty body ({e})"))
        } else {
            undecodable(format!("not JSON: {e}"))
        });
    }
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let envelope = if is_object {
        Envelope::of(body)
    } else {
        Envelope::default()
    };
    if let Some(error) = envelope.error.filter(|e| e.is_object()) {
        if let Some(skew) = clock_skew(status, date, Timestamp::now()) {
            return Err(ApiError::ClockSkew { skew, trace_id });
        }
        return Err(ApiError::Gateway {
            status,
            code: text_of(error.get("errorCode")).unwrap_or_default(),
            message: text_of(error.get("message")).unwrap_or_default(),
            details: text_of(error.get("details")),
            trace_id,
        });
    }
    if envelope
        .success
        .as_ref()
        .and_then(serde_json::Value::as_bool)
        == Some(false)
    {
        return Err(ApiError::Service {
            status,
            message: text_of(envelope.message.as_ref()).unwrap_or_default(),
            trace_id,
        });
    }
    if !(200..300).contains(&status) {
        return Err(undecodable(format!(
            "HTTP {status} without a known error shape"
        )));
    }
    if !is_object {
        return Err(undecodable("not a JSON object".to_owned()));
    }
    serde_json::from_slice(body).map_err(|e| undecodable(format!("unexpected shape: {e}")))
}

/// The top-level fields of an answer that say it failed; the rest is skipped unread.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Envelope {
    error: Option<serde_json::Value>,
    success: Option<serde_json::Value>,
    message: Option<serde_json::Value>,
}

impl Envelope {
    /// Of a body known to be a JSON object. One the derived reading refuses (a key given
    /// twice) is read whole instead, the last of a key winning, as before.
    fn of(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_else(|_| {
            let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let field = |name: &str| value.get(name).cloned();
            Envelope {
                error: field("error"),
                success: field("success"),
                message: field("message"),
            }
        })
    }
}

/// The gateway's clock minus ours, when a 401 comes with a `Date` that is further from
/// `now` than the gateway allows: then the timestamp, not the keys, was refused.
fn clock_skew(status: u16, date: Option<Timestamp>, now: Timestamp) -> Option<SignedDuration> {
    let skew = date?.duration_since(now);
    (status == 401 && skew.abs() > GATEWAY_MAX_CLOCK_SKEW).then_some(skew)
}

/// Parses an HTTP `Date` header (IMF-fixdate, an RFC 2822 date).
pub fn parse_http_date(text: &str) -> Option<Timestamp> {
    k8s_openapi::jiff::fmt::rfc2822::parse(text.trim())
        .ok()
        .map(|zoned| zoned.timestamp())
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

/// Classifies a reqwest failure by whether the request can have left this process. The
/// URL is left out of the message: it is the endpoint, which may come from a Secret.
pub(crate) fn from_transport(error: reqwest::Error, timeout: Duration) -> ApiError {
    let error = error.without_url();
    let chain = error_chain(&error);
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
        let meta = ResponseMeta {
            trace_id: Some("trace-1".to_owned()),
            ..ResponseMeta::new(status)
        };
        decode_response(meta, body.as_bytes())
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
            (502, "<html><body>Bad Gateway</body></html>", true, true, false, "UnreadableAnswer"),
            (200, r#"{"success":false,"message":"invalid request parameters"}"#, false, false, false, "InvalidSpec"),
            (200, "<html>maintenance</html>", true, true, false, "UnreadableAnswer"),
            (200, r#"{"success":true,"id":"#, true, true, false, "UnreadableAnswer"),
            (404, "<html>not here</html>", true, false, false, "UnreadableAnswer"),
            (200, r#"{"success":false,"message":"unexpected error"}"#, true, true, false, "ApiUnavailable"),
            (200, r#"{"success":false,"message":"no such element"}"#, false, false, true, "NotFound"),
            // Not in any page's table: retried, never a permanent verdict.
            (409, r#"{"success":false,"message":"something new"}"#, true, false, false, "ApiError"),
            (307, "", true, false, false, "Redirected"),
            (302, "<html>moved</html>", true, false, false, "Redirected"),
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

    #[test]
    fn a_key_given_twice_is_read_as_before_the_last_one_winning() {
        let refused = decode(
            200,
            r#"{"success":true,"success":false,"message":"no quota"}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&refused, ApiError::Service { message, .. } if message == "no quota"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_list_with_an_odd_item_is_unreadable_and_names_the_item() {
        let body = r#"{"success":true,"contents":[{"id":"a"},7,{"id":"c"}]}"#;
        let refused = decode_response::<crate::dataforest::ListResponse>(
            ResponseMeta::new(200),
            body.as_bytes(),
        )
        .unwrap_err();
        match &refused {
            ApiError::Undecodable { reason, .. } => {
                assert!(reason.contains("getList item 1"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(refused.is_retryable(), "an unreadable list is read again");
    }

    #[test]
    fn a_401_whose_date_is_far_from_our_clock_is_a_retryable_clock_skew() {
        let now = Timestamp::now();
        let refused = |date: Option<Timestamp>| {
            let meta = ResponseMeta {
                date,
                ..ResponseMeta::new(401)
            };
            decode_response::<KillResponse>(meta, AUTH.as_bytes()).unwrap_err()
        };
        let ahead = refused(Some(now + SignedDuration::from_mins(7)));
        assert!(matches!(ahead, ApiError::ClockSkew { .. }), "{ahead:?}");
        assert!(ahead.is_retryable() && !ahead.outcome_unknown());
        assert_eq!(ahead.reason(), "ClockSkew");
        assert!(
            ahead.to_string().contains("ahead of this host's clock"),
            "{ahead}"
        );
        let behind = refused(Some(now - SignedDuration::from_mins(30)));
        assert!(
            behind.to_string().contains("behind this host's clock"),
            "{behind}"
        );
        // Within the allowed skew, or without a Date, the keys were refused.
        for date in [Some(now + SignedDuration::from_mins(2)), None] {
            let e = refused(date);
            assert_eq!(e.reason(), "Unauthorized", "{date:?}");
            assert!(!e.is_retryable() && e.is_unauthorized());
        }
    }

    #[test]
    fn http_dates_parse_as_the_gateway_writes_them() {
        assert_eq!(
            parse_http_date("Tue, 01 Dec 2026 10:00:00 GMT"),
            Some("2026-12-01T10:00:00Z".parse().unwrap())
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn a_redirect_names_its_target_host_and_is_never_an_unknown_outcome() {
        let meta = ResponseMeta {
            location_host: Some("elsewhere.example".to_owned()),
            ..ResponseMeta::new(307)
        };
        let e = decode_response::<KillResponse>(meta, b"").unwrap_err();
        assert!(
            e.to_string()
                .contains("HTTP 307, a redirect to elsewhere.example"),
            "{e}"
        );
        assert!(!e.outcome_unknown());
    }
}
