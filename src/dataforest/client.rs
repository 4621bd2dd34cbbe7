//! The HTTP client: signed `POST`s over a pooled reqwest client, a timeout on every call,
//! bounded retries with jittered backoff (backon) for reads and kill, and never a retry
//! of submit.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};

use futures::future::BoxFuture;
use reqwest::Url;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument as _;

use super::budget::KeyBudget;
use super::error::{ApiError, ResponseMeta, decode_response, from_transport, parse_http_date};
use super::sign::{self, Credentials, now_millis};
use super::types::{
    AppDetail, AppSummary, IdRequest, KillResponse, ListRequest, ListResponse, SubmitRequest,
    SubmitResponse,
};
use super::{DEFAULT_ENDPOINT, Operation};

/// Response header that identifies a request in NCP support tickets.
pub const TRACE_ID_HEADER: &str = "x-ncp-trace-id";

/// The most of an answer the client reads; more is refused as unreadable rather than
/// held in memory (a getList of 10,000 apps is about 4 MB).
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// The Data Forest API as the controller sees it; [`DataForestClient`] implements it, and
/// tests may put anything else behind an `Arc<dyn DataForestApi>`.
pub trait DataForestApi: Send + Sync {
    /// One attempt, never retried: on [`ApiError::outcome_unknown`] the app may exist.
    fn submit<'a>(
        &'a self,
        request: &'a SubmitRequest,
    ) -> BoxFuture<'a, Result<SubmitResponse, ApiError>>;
    fn get_detail<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<AppDetail, ApiError>>;
    /// Every app of the account; the account must be the access key's own.
    fn list<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Vec<AppSummary>, ApiError>>;
    fn kill<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<KillResponse, ApiError>>;
}

/// How reads and kill retry retryable failures.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    pub fn no_retries() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delays between attempts: exponential from `initial_backoff`, capped at
    /// `max_backoff`, each with up to as much again of random jitter, so that many
    /// clients throttled together spread out instead of retrying in step.
    pub fn backoff(&self) -> ExponentialBuilder {
        let retries = self.max_attempts.saturating_sub(1);
        ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff)
            .with_max_times(usize::try_from(retries).unwrap_or(usize::MAX))
            .with_jitter()
    }
}

/// Everything the client needs besides credentials.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URL, e.g. `https://df.apigw.ntruss.com` or an emulator's `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Bound on one attempt, from connecting to the last byte of the answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }
}

/// Building a client failed; nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("could not build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// Checks an endpoint: http(s), a host, no credentials, query or fragment.
pub fn parse_endpoint(endpoint: &str) -> Result<Url, ClientBuildError> {
    let invalid = |reason: &str| ClientBuildError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("user information is not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    Ok(url)
}

/// A request exactly as it goes on the wire; `submit --dry-run` prints it (`Display`).
/// The body may hold env values read from Secrets, so `Debug` shows only its length.
#[derive(Clone, PartialEq)]
pub struct PreparedRequest {
    pub method: &'static str,
    pub url: String,
    /// What was signed: the path (and query, if any) after the host.
    pub path_and_query: String,
    /// Every header, in sending order, including `Host` and `Content-Length`.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl fmt::Debug for PreparedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("path_and_query", &self.path_and_query)
            .field("headers", &self.headers)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

impl fmt::Display for PreparedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", self.method, self.url)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        writeln!(f)?;
        writeln!(f, "{}", self.body)
    }
}

/// The Data Forest client for one set of credentials. Cloning shares the connection pool.
#[derive(Clone)]
pub struct DataForestClient {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    config: ClientConfig,
    budget: Option<KeyBudget>,
}

impl fmt::Debug for DataForestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataForestClient")
            .field("endpoint", &self.base.as_str())
            .field("access_key", &self.credentials.access_key)
            .finish_non_exhaustive()
    }
}

impl DataForestClient {
    pub fn new(config: ClientConfig, credentials: Credentials) -> Result<Self, ClientBuildError> {
        let http = Self::http_client(&config)?;
        Self::with_http_client(http, config, credentials)
    }

    /// Shares one pooled HTTP client between many credentials (one per AiApp Secret).
    pub fn with_http_client(
        http: reqwest::Client,
        config: ClientConfig,
        credentials: Credentials,
    ) -> Result<Self, ClientBuildError> {
        let base = parse_endpoint(&config.endpoint)?;
        Ok(Self {
            http,
            base,
            credentials,
            config,
            budget: None,
        })
    }

    /// Spends `budget` on every request but submit's (whose caller takes its token before
    /// it writes the marker, so that waiting for one never eats into a leader's lease),
    /// and tells it of every 429.
    pub fn with_budget(mut self, budget: KeyBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// A pooled client with webpki roots (works in a minimal image) and the config's timeouts.
    pub fn http_client(config: &ClientConfig) -> Result<reqwest::Client, ClientBuildError> {
        crate::install_crypto_provider();
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_webpki_certs(true)
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            // Never follow a redirect: it would carry the signed headers and the body (which
            // the signature does not cover) to whatever host the answer names.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dataforest-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientBuildError::Http)
    }

    pub fn endpoint(&self) -> &str {
        self.base.as_str()
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Signs `body` for `operation` at `timestamp_ms`. The same function feeds the wire
    /// and `--dry-run`, so what is printed is what would be sent.
    pub fn prepare(
        &self,
        operation: Operation,
        body: &impl Serialize,
        timestamp_ms: u64,
    ) -> PreparedRequest {
        let body = serde_json::to_string(body).expect("request bodies always serialize");
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{}", operation.path()));
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let signed = sign::sign(&self.credentials, "POST", &path_and_query, timestamp_ms);
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let mut headers = vec![
            ("host".to_owned(), host),
            ("content-type".to_owned(), "application/json".to_owned()),
            ("accept".to_owned(), "application/json".to_owned()),
            ("content-length".to_owned(), body.len().to_string()),
        ];
        headers.extend(signed.pairs().map(|(n, v)| (n.to_owned(), v.to_owned())));
        PreparedRequest {
            method: "POST",
            url: url.into(),
            path_and_query,
            headers,
            body,
        }
    }

    /// Submits once. Never retried here: see [`DataForestApi::submit`].
    pub async fn submit(&self, request: &SubmitRequest) -> Result<SubmitResponse, ApiError> {
        let response: SubmitResponse = self
            .call(Operation::Submit, request, RetryPolicy::no_retries())
            .await?;
        require_id(response)
    }

    pub async fn get_detail(&self, id: &str) -> Result<AppDetail, ApiError> {
        let body = IdRequest { id: id.to_owned() };
        self.call(Operation::GetDetail, &body, self.config.retry.clone())
            .await
    }

    pub async fn list(&self, account_id: &str) -> Result<Vec<AppSummary>, ApiError> {
        let body = ListRequest::for_account(account_id);
        let list: ListResponse = self
            .call(Operation::GetList, &body, self.config.retry.clone())
            .await?;
        Ok(list.contents)
    }

    /// Kill retries too: killing twice ends the app once.
    pub async fn kill(&self, id: &str) -> Result<KillResponse, ApiError> {
        let body = IdRequest { id: id.to_owned() };
        self.call(Operation::Kill, &body, self.config.retry.clone())
            .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        operation: Operation,
        body: &impl Serialize,
        retry: RetryPolicy,
    ) -> Result<T, ApiError> {
        let span = tracing::info_span!(
            "dataforest",
            operation = operation.as_str(),
            outcome = tracing::field::Empty,
            attempts = tracing::field::Empty,
        );
        async {
            let attempts = AtomicU32::new(0);
            let attempt = || async {
                attempts.fetch_add(1, Ordering::Relaxed);
                if let Some(budget) = self.budget.as_ref().filter(|_| operation != Operation::Submit) {
                    budget.acquire().await;
                }
                // A fresh timestamp and signature per attempt: a retry may come late.
                let request = self.prepare(operation, body, now_millis());
                let result = self.send(request).await;
                if let Some(budget) = &self.budget {
                    match &result {
                        Err(e) if e.status() == Some(429) => budget.throttled(),
                        Err(_) => {}
                        Ok(_) => budget.succeeded(),
                    }
                }
                result
            };
            let result = attempt
                .retry(retry.backoff())
                .sleep(tokio::time::sleep)
                .when(ApiError::is_retryable)
                .notify(|e: &ApiError, delay: Duration| {
                    tracing::debug!(reason = e.reason(), error = %e, ?delay, "retrying");
                })
                .await;
            let span = tracing::Span::current();
            span.record("attempts", attempts.load(Ordering::Relaxed));
            match &result {
                Ok(_) => span.record("outcome", "ok"),
                Err(e) => {
                    tracing::debug!(reason = e.reason(), trace_id = e.trace_id(), error = %e, "call failed");
                    span.record("outcome", e.reason())
                }
            };
            result
        }
        .instrument(span)
        .await
    }

    async fn send<T: DeserializeOwned>(&self, request: PreparedRequest) -> Result<T, ApiError> {
        let timeout = self.config.timeout;
        let mut builder = self.http.post(&request.url).timeout(timeout);
        for (name, value) in &request.headers {
            // reqwest sets these two from the URL and the body.
            if name != "host" && name != "content-length" {
                builder = builder.header(name, value);
            }
        }
        let mut response = builder
            .body(request.body)
            .send()
            .await
            .map_err(|e| from_transport(e, timeout))?;
        let meta = response_meta(&response);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| from_transport(e, timeout))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ApiError::Undecodable {
                    status: meta.status,
                    reason: format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
                    body: super::error::truncate_body(&body),
                    trace_id: meta.trace_id,
                });
            }
            body.extend_from_slice(&chunk);
        }
        decode_response(meta, &body)
    }
}

impl DataForestApi for DataForestClient {
    fn submit<'a>(
        &'a self,
        request: &'a SubmitRequest,
    ) -> BoxFuture<'a, Result<SubmitResponse, ApiError>> {
        Box::pin(DataForestClient::submit(self, request))
    }
    fn get_detail<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<AppDetail, ApiError>> {
        Box::pin(DataForestClient::get_detail(self, id))
    }
    fn list<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Vec<AppSummary>, ApiError>> {
        Box::pin(DataForestClient::list(self, account_id))
    }
    fn kill<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<KillResponse, ApiError>> {
        Box::pin(DataForestClient::kill(self, id))
    }
}

/// What the client keeps of an answer's status line and headers.
fn response_meta(response: &reqwest::Response) -> ResponseMeta {
    let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok());
    ResponseMeta {
        status: response.status().as_u16(),
        trace_id: header(TRACE_ID_HEADER).map(str::to_owned),
        date: header(reqwest::header::DATE.as_str()).and_then(parse_http_date),
        location_host: header(reqwest::header::LOCATION.as_str())
            .and_then(|location| Url::parse(location).ok())
            .and_then(|url| {
                // The port too: on a shared host it tells which service took the request.
                let host = url.host_str()?;
                Some(match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                })
            }),
    }
}

/// A success without an id cannot be followed: treat it as unreadable, with an unknown
/// outcome, so that the caller recovers by name instead of submitting again.
fn require_id(response: SubmitResponse) -> Result<SubmitResponse, ApiError> {
    if response.id.as_deref().is_some_and(|id| !id.is_empty()) {
        return Ok(response);
    }
    let body = serde_json::to_vec(&response).unwrap_or_default();
    Err(ApiError::Undecodable {
        status: 200,
        reason: "the submit answer has no app id".to_owned(),
        body: super::error::truncate_body(&body),
        trace_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataforest::sign::{SecretKey, signature};

    fn client(endpoint: &str) -> DataForestClient {
        let config = ClientConfig {
            endpoint: endpoint.to_owned(),
            ..ClientConfig::default()
        };
        DataForestClient::new(config, Credentials::new("AK", SecretKey::from("sk"))).unwrap()
    }

    #[test]
    fn a_prepared_request_is_signed_over_the_path_it_is_sent_to() {
        let c = client("http://127.0.0.1:8080/prefix/");
        let r = c.prepare(
            Operation::GetDetail,
            &IdRequest { id: "x".into() },
            1700000000000,
        );
        assert_eq!(
            r.url,
            "http://127.0.0.1:8080/prefix/api/v2/aiapps/getDetail"
        );
        assert_eq!(r.path_and_query, "/prefix/api/v2/aiapps/getDetail");
        let header = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("host"), Some("127.0.0.1:8080"));
        assert_eq!(header("x-ncp-apigw-timestamp"), Some("1700000000000"));
        assert_eq!(header("x-ncp-iam-access-key"), Some("AK"));
        let expected = signature(
            "POST",
            &r.path_and_query,
            "1700000000000",
            "AK",
            &SecretKey::from("sk"),
        );
        assert_eq!(header("x-ncp-apigw-signature-v2"), Some(expected.as_str()));
        assert_eq!(r.body, r#"{"id":"x"}"#);
        assert_eq!(header("content-length"), Some("10"));
    }

    #[test]
    fn a_prepared_requests_debug_shows_no_body() {
        let r = client(DEFAULT_ENDPOINT).prepare(
            Operation::Submit,
            &IdRequest {
                id: "LEAKCANARY".into(),
            },
            1,
        );
        let debug = format!("{r:?}");
        assert!(!debug.contains("LEAKCANARY"), "{debug}");
        assert!(debug.contains("body: <19 bytes>"), "{debug}");
        assert!(
            r.to_string().contains("LEAKCANARY"),
            "Display is the dry run's body"
        );
    }

    #[test]
    fn the_default_endpoint_needs_no_port_and_no_prefix() {
        let r =
            client(DEFAULT_ENDPOINT).prepare(Operation::Submit, &IdRequest { id: "x".into() }, 1);
        assert_eq!(r.url, "https://df.apigw.ntruss.com/api/v2/aiapps/submit");
        assert_eq!(r.path_and_query, "/api/v2/aiapps/submit");
        assert_eq!(
            r.headers[0],
            ("host".to_owned(), "df.apigw.ntruss.com".to_owned())
        );
    }

    #[test]
    fn bad_endpoints_are_refused_with_the_reason() {
        for (endpoint, reason) in [
            ("df.apigw.ntruss.com", "relative URL"),
            ("ftp://host", "scheme"),
            ("https://user:pw@host", "user information"),
            ("https://host/?a=1", "query"),
        ] {
            let e = parse_endpoint(endpoint).unwrap_err().to_string();
            assert!(e.contains(reason), "{endpoint}: {e}");
        }
    }

    #[test]
    fn backoff_grows_exponentially_to_the_cap_with_bounded_jitter_and_stops() {
        use backon::BackoffBuilder as _;
        let policy = RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
        };
        let delays: Vec<Duration> = policy.backoff().build().collect();
        // Five retries after the first attempt; each delay lies in [base, 2 * base).
        assert_eq!(delays.len(), 5);
        for (delay, base_ms) in delays.iter().zip([100, 200, 400, 400, 400]) {
            let base = Duration::from_millis(base_ms);
            assert!(
                *delay >= base && *delay < base * 2,
                "{delay:?} for {base:?}"
            );
        }
        assert_eq!(RetryPolicy::no_retries().backoff().build().count(), 0);
    }

    #[test]
    fn a_submit_answer_without_an_id_is_an_unknown_outcome() {
        let ok = SubmitResponse {
            id: Some("abc".into()),
            ..Default::default()
        };
        assert!(require_id(ok).is_ok());
        for id in [None, Some(String::new())] {
            let e = require_id(SubmitResponse {
                success: Some(true),
                id,
                ..Default::default()
            })
            .unwrap_err();
            assert!(e.outcome_unknown(), "{e:?}");
        }
    }

    #[test]
    fn the_client_debug_output_shows_no_secret() {
        let debug = format!("{:?}", client("http://localhost:1"));
        assert!(debug.contains("AK") && !debug.contains("sk\""), "{debug}");
    }
}
