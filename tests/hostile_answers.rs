//! Hostile answers from the Data Forest API: property tests of `decode_response` and the
//! lenient response types, and a hand-written TCP server for what only the wire can do.
//!
//! What this proves: decoding never panics, whatever the bytes, status and headers; every
//! answer is classified as the error module's rules say (only a documented error shape can
//! be permanent, an HTML page, a truncated body or an unknown shape is always retried);
//! success objects with fields of the wrong types still parse, keeping unknown states as
//! sent; and over HTTP an HTML page, an endless body, a silent server, a trickling body and
//! a body that breaks off all end in a retryable error within the client's bounds.

mod support;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dataforest_operator::dataforest::client::MAX_ANSWER_BYTES;
use dataforest_operator::dataforest::error::{
    BODY_KEEP_BYTES, GATEWAY_MAX_CLOCK_SKEW, ResponseMeta, decode_response,
};
use dataforest_operator::dataforest::types::TERMINAL_STATES;
use dataforest_operator::dataforest::{
    ApiError, AppDetail, Credentials, DataForestClient, KillResponse, ListResponse, RetryPolicy,
    SubmitResponse, TransportKind,
};
use k8s_openapi::jiff::tz::{self, TimeZone};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Modest case counts keep the file at a few seconds; nothing is written on failure, so a
/// failing run leaves no regression file behind (the failing input is in the panic message).
fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

/// Field names of the answers, so that generated objects often hit them.
const KEYS: &[&str] = &[
    "success",
    "message",
    "error",
    "errorCode",
    "details",
    "id",
    "appId",
    "accountName",
    "name",
    "queueName",
    "startedAt",
    "finishedAt",
    "elapsedMillis",
    "state",
    "finalStatus",
    "containers",
    "contents",
    "cpuCount",
    "memoryMb",
    "status",
    "disabled",
    "modifiedAt",
    "workspaceName",
];

/// YARN's states and final statuses, near misses, and words no page lists.
const STATES: &[&str] = &[
    "NEW",
    "NEW_SAVING",
    "SUBMITTED",
    "ACCEPTED",
    "RUNNING",
    "FINISHED",
    "FAILED",
    "KILLED",
    "UNDEFINED",
    "SUCCEEDED",
    "finished",
    "Killed",
    " FINISHED",
    "FAILED ",
    "",
    "SOMETHING_NEW",
    "ENDED",
];

/// Data Forest's documented error messages, as sent and slightly off, and others.
const MESSAGES: &[&str] = &[
    "exceeded limit on resource quota",
    "invalid request parameters",
    "not allowed to access",
    "no such element",
    "unexpected error",
    "  No Such Element ",
    "INVALID REQUEST PARAMETERS",
    "something new",
    "Authentication Failed",
    "Throttle Limited",
    "",
];

const INTERESTING_STATUSES: &[u16] = &[
    100, 200, 201, 204, 299, 301, 302, 307, 399, 400, 401, 403, 404, 409, 413, 429, 500, 502, 503,
    504, 599,
];

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
    .boxed()
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        prop::sample::select(STATES).prop_map(str::to_owned),
        prop::sample::select(MESSAGES).prop_map(str::to_owned),
        Just("2023-05-17T01:44:47.805Z".to_owned()),
        Just("1970-01-01T09:00:00+09:00".to_owned()),
        " ?-?[0-9]{1,20} ?",
        ".{0,24}",
    ]
    .boxed()
}

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ]
    .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                object_of(inner),
            ]
        })
        .boxed()
}

fn object_of(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), values, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// The two documented error shapes, with messages documented or not and codes as strings
/// or numbers.
fn documented_error() -> BoxedStrategy<Value> {
    let message = prop_oneof![
        3 => prop::sample::select(MESSAGES).prop_map(Value::from),
        1 => json_leaf(),
    ];
    let code = prop_oneof![
        "[0-9]{3}".prop_map(Value::from),
        (0i64..1000).prop_map(Value::from),
        json_leaf(),
    ];
    prop_oneof![
        (code, message.clone(), prop::option::of(json_leaf())).prop_map(
            |(code, message, details)| {
                let mut error = json!({"errorCode": code, "message": message});
                if let Some(details) = details {
                    error["details"] = details;
                }
                json!({ "error": error })
            }
        ),
        message.prop_map(|message| json!({"success": false, "message": message})),
    ]
    .boxed()
}

fn html() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        Just(b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec()),
        Just(b"<!DOCTYPE html>\n<html><head><title>Maintenance</title></head></html>".to_vec()),
        ".{0,60}".prop_map(|t| format!("<html><body>{t}</body></html>").into_bytes()),
    ]
    .boxed()
}

/// Bodies of every kind a proxy, a gateway or the service could send.
fn body() -> BoxedStrategy<Vec<u8>> {
    let json_text = prop_oneof![json_value(), documented_error(), object_of(json_value())]
        .prop_map(|v| v.to_string().into_bytes());
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        json_text.clone(),
        json_text.clone(),
        (json_text, prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(mut body, junk)| {
            body.extend(junk);
            body
        }),
        html(),
        "[ \t\r\n]{0,8}".prop_map(String::into_bytes),
    ]
    .boxed()
}

fn status() -> BoxedStrategy<u16> {
    prop_oneof![100u16..600, prop::sample::select(INTERESTING_STATUSES)].boxed()
}

/// A `Date` header: near this host's clock (but not within a second of the 5-minute
/// limit, which the time between generating and decoding could cross), or any time.
fn date() -> BoxedStrategy<Timestamp> {
    let limit = GATEWAY_MAX_CLOCK_SKEW.as_secs();
    prop_oneof![
        (-3 * limit..3 * limit)
            .prop_filter("not at the limit", move |s| (s.abs() - limit).abs() > 1)
            .prop_map(|s| Timestamp::now() + SignedDuration::from_secs(s)),
        (Timestamp::MIN.as_second()..=Timestamp::MAX.as_second())
            .prop_map(|s| Timestamp::from_second(s).expect("in range")),
    ]
    .boxed()
}

fn meta() -> BoxedStrategy<ResponseMeta> {
    (
        status(),
        prop::option::of(".{0,40}"),
        prop::option::of(date()),
        prop::option::of("[a-z0-9.-]{1,30}"),
    )
        .prop_map(|(status, trace_id, date, location_host)| ResponseMeta {
            status,
            trace_id,
            date,
            location_host,
        })
        .boxed()
}

/// `meta()` with the status drawn from `statuses`.
fn meta_with(statuses: impl Strategy<Value = u16> + 'static) -> BoxedStrategy<ResponseMeta> {
    (meta(), statuses)
        .prop_map(|(meta, status)| ResponseMeta { status, ..meta })
        .boxed()
}

/// An answer: anything at all, and, so that every verdict is reached often, documented
/// errors with the statuses they come with, gateway 401s with a `Date` near or far from
/// this host's clock, and 2xx objects.
fn answer() -> BoxedStrategy<(ResponseMeta, Vec<u8>)> {
    let error_bytes = documented_error().prop_map(|v| v.to_string().into_bytes());
    let statuses = prop::sample::select(INTERESTING_STATUSES);
    let unauthorized = (meta(), date()).prop_map(|(meta, date)| ResponseMeta {
        status: 401,
        date: Some(date),
        ..meta
    });
    prop_oneof![
        4 => (meta(), body()),
        2 => (meta_with(statuses), error_bytes.clone()),
        1 => (unauthorized, error_bytes),
        1 => (
            meta_with(200u16..300),
            object_of(json_value()).prop_map(|v| v.to_string().into_bytes())
        ),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// The classification rules, written from the error module's documentation
// ---------------------------------------------------------------------------------------

/// What an answer must decode to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict {
    Redirect,
    Undecodable,
    Gateway,
    ClockSkew,
    Service,
    Success,
}

/// A 3xx is a redirect whatever it says; then the body's shape decides (the gateway's
/// `error` object, then the service's `success:false`); anything else that is not a 2xx
/// JSON object is unreadable.
/// `list` says the answer is getList's, whose `contents` must be whole to be read at all.
fn expected_verdict(meta: &ResponseMeta, body: &[u8], list: bool) -> Verdict {
    if (300..400).contains(&meta.status) {
        return Verdict::Redirect;
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Verdict::Undecodable;
    };
    if value.get("error").is_some_and(Value::is_object) {
        let skewed = meta.status == 401
            && meta.date.is_some_and(|date| {
                date.duration_since(Timestamp::now()).abs() > GATEWAY_MAX_CLOCK_SKEW
            });
        return if skewed {
            Verdict::ClockSkew
        } else {
            Verdict::Gateway
        };
    }
    if value.get("success") == Some(&Value::Bool(false)) {
        return Verdict::Service;
    }
    if !(200..300).contains(&meta.status) || !value.is_object() {
        return Verdict::Undecodable;
    }
    if list && !list_contents_are_whole(&value) {
        return Verdict::Undecodable;
    }
    Verdict::Success
}

/// getList's `contents` can be read only absent, null or as an array of objects: reading
/// part of a list would hide apps from recovery.
fn list_contents_are_whole(answer: &Value) -> bool {
    match answer.get("contents") {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.iter().all(Value::is_object),
        Some(_) => false,
    }
}

fn verdict_of<T>(result: &Result<T, ApiError>) -> Verdict {
    match result {
        Ok(_) => Verdict::Success,
        Err(ApiError::Redirect { .. }) => Verdict::Redirect,
        Err(ApiError::Undecodable { .. }) => Verdict::Undecodable,
        Err(ApiError::Gateway { .. }) => Verdict::Gateway,
        Err(ApiError::ClockSkew { .. }) => Verdict::ClockSkew,
        Err(ApiError::Service { .. }) => Verdict::Service,
        Err(e @ (ApiError::Transport { .. } | ApiError::Timeout { .. })) => {
            panic!("decoding cannot fail below HTTP: {e:?}")
        }
    }
}

/// The overview's table: a documented message decides, else a 400/401/403/404 status;
/// the verdicts that can be permanent are "invalid", "forbidden" and "not found", and a
/// 429 never is.
fn service_error_is_permanent(status: u16, message: &str) -> bool {
    if status == 429 {
        return false;
    }
    match message.trim().to_ascii_lowercase().as_str() {
        "invalid request parameters" | "not allowed to access" | "no such element" => true,
        "exceeded limit on resource quota" | "unexpected error" => false,
        _ => matches!(status, 400 | 401 | 403 | 404),
    }
}

/// Decodes `body` as `T` and checks the result against the rules.
fn decodes_by_the_rules<T: DeserializeOwned + Debug + 'static>(
    meta: &ResponseMeta,
    body: &[u8],
) -> Result<(), TestCaseError> {
    let list = std::any::TypeId::of::<T>() == std::any::TypeId::of::<ListResponse>();
    let expected = expected_verdict(meta, body, list);
    let result = decode_response::<T>(meta.clone(), body);
    let shown = String::from_utf8_lossy(body);
    prop_assert_eq!(verdict_of(&result), expected, "{:?} {}", result, shown);
    let Err(error) = result else {
        return Ok(());
    };
    prop_assert!(!error.reason().is_empty(), "{error:?}");
    prop_assert!(!error.to_string().is_empty(), "{error:?}");
    prop_assert_eq!(error.status(), Some(meta.status), "{:?}", error);
    prop_assert_eq!(error.trace_id(), meta.trace_id.as_deref(), "{:?}", error);
    match &error {
        ApiError::Redirect { .. } => {
            prop_assert!(error.is_retryable() && !error.outcome_unknown());
            prop_assert_eq!(error.reason(), "Redirected");
        }
        ApiError::Undecodable { body: kept, .. } => {
            prop_assert!(error.is_retryable(), "{error:?}");
            prop_assert_eq!(error.reason(), "UnreadableAnswer");
            let acted = (200..300).contains(&meta.status) || meta.status >= 500;
            prop_assert_eq!(error.outcome_unknown(), acted, "{:?}", error);
            prop_assert!(kept.chars().count() <= BODY_KEEP_BYTES + 1, "{kept:?}");
        }
        ApiError::ClockSkew { .. } => {
            prop_assert!(error.is_retryable() && !error.outcome_unknown());
        }
        ApiError::Gateway { status, .. } => {
            let transient = *status == 429 || *status >= 500;
            prop_assert_eq!(error.is_retryable(), transient, "{:?}", error);
        }
        ApiError::Service {
            status, message, ..
        } => {
            let permanent = service_error_is_permanent(*status, message);
            prop_assert_eq!(error.is_retryable(), !permanent, "{:?}", error);
        }
        ApiError::Transport { .. } | ApiError::Timeout { .. } => unreachable!("checked above"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn decoding_any_answer_never_panics_and_classifies_it_by_the_rules(
        (meta, body) in answer(),
    ) {
        decodes_by_the_rules::<SubmitResponse>(&meta, &body)?;
        decodes_by_the_rules::<AppDetail>(&meta, &body)?;
        decodes_by_the_rules::<ListResponse>(&meta, &body)?;
        decodes_by_the_rules::<KillResponse>(&meta, &body)?;
    }

    #[test]
    fn an_answer_without_a_documented_error_shape_is_never_permanent(
        meta in meta(),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            html(),
            json_value()
                .prop_filter("not an error shape", |v| {
                    !v.get("error").is_some_and(Value::is_object)
                        && v.get("success") != Some(&Value::Bool(false))
                })
                .prop_map(|v| v.to_string().into_bytes()),
        ],
    ) {
        for result in [
            decode_response::<SubmitResponse>(meta.clone(), &body).map(drop),
            decode_response::<AppDetail>(meta.clone(), &body).map(drop),
            decode_response::<ListResponse>(meta.clone(), &body).map(drop),
            decode_response::<KillResponse>(meta.clone(), &body).map(drop),
        ] {
            if let Err(error) = result {
                prop_assert!(error.is_retryable(), "{error:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lenient success answers
// ---------------------------------------------------------------------------------------

/// A field of a success answer, with what the lenient types must read from it.
#[derive(Clone, Debug)]
struct Field<T> {
    json: Option<Value>,
    read: Option<T>,
}

/// A number field: an integer, an integer written as a string (with spaces), or junk.
fn int_field() -> BoxedStrategy<Field<i64>> {
    let junk = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        Just(json!(1.5)),
        Just(json!(u64::MAX)),
        Just(json!("integer")),
        Just(json!("")),
        Just(json!("12 34")),
        Just(json!([1])),
        Just(json!({"value": 1})),
    ];
    prop_oneof![
        Just(Field {
            json: None,
            read: None
        }),
        any::<i64>().prop_map(|n| Field {
            json: Some(json!(n)),
            read: Some(n)
        }),
        (any::<i64>(), "[ ]{0,2}", "[ ]{0,2}").prop_map(|(n, before, after)| Field {
            json: Some(json!(format!("{before}{n}{after}"))),
            read: Some(n),
        }),
        junk.prop_map(|v| Field {
            json: Some(v),
            read: None
        }),
    ]
    .boxed()
}

/// A text field: a string (kept as sent), or another type (read as absent).
fn text_field() -> BoxedStrategy<Field<String>> {
    prop_oneof![
        Just(Field {
            json: None,
            read: None
        }),
        text().prop_map(|t| Field {
            json: Some(json!(t)),
            read: Some(t)
        }),
        json_value()
            .prop_filter("not a string", |v| !v.is_string())
            .prop_map(|v| Field {
                json: Some(v),
                read: None
            }),
    ]
    .boxed()
}

/// A state or final status: YARN's words, words no page lists, or another type.
fn state_field() -> BoxedStrategy<Field<String>> {
    prop_oneof![
        3 => prop::sample::select(STATES)
            .prop_map(|s| Field { json: Some(json!(s)), read: Some(s.to_owned()) }),
        1 => text_field(),
    ]
    .boxed()
}

/// A timestamp: RFC 3339 in UTC or an offset, Data Forest's epoch "not finished", or junk.
fn time_field() -> BoxedStrategy<Field<Timestamp>> {
    prop_oneof![
        Just(Field {
            json: None,
            read: None
        }),
        (1i64..4_000_000_000, -12i64..=14).prop_map(|(s, hours)| {
            let ts = Timestamp::from_second(s).expect("in range");
            let zone = TimeZone::fixed(tz::offset(hours as i8));
            let text = ts
                .to_zoned(zone)
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string();
            Field {
                json: Some(json!(text)),
                read: Some(ts),
            }
        }),
        Just(Field {
            json: Some(json!("1970-01-01T09:00:00+09:00")),
            read: None
        }),
        json_value()
            .prop_filter("not a string", |v| !v.is_string())
            .prop_map(|v| Field {
                json: Some(v),
                read: None
            }),
        Just(Field {
            json: Some(json!("yesterday")),
            read: None
        }),
    ]
    .boxed()
}

/// `success` of a success answer: anything but `false` itself.
fn success_field() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(Some(json!(true))),
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(json!("true"))),
        Just(Some(json!(1))),
    ]
}

/// One app as a success answer writes it, every field possibly of the wrong type.
#[derive(Clone, Debug)]
struct App {
    id: Field<String>,
    name: Field<String>,
    state: Field<String>,
    final_status: Field<String>,
    elapsed: Field<i64>,
    started: Field<Timestamp>,
    junk: Value,
}

fn app() -> BoxedStrategy<App> {
    (
        text_field(),
        text_field(),
        state_field(),
        state_field(),
        int_field(),
        time_field(),
        object_of(json_value()),
    )
        .prop_map(
            |(id, name, state, final_status, elapsed, started, junk)| App {
                id,
                name,
                state,
                final_status,
                elapsed,
                started,
                junk,
            },
        )
        .boxed()
}

impl App {
    fn json(&self) -> Value {
        // Unknown fields first, so the documented ones below win over a same-named one.
        let mut object = self.junk.as_object().cloned().unwrap_or_default();
        for (key, field) in [
            ("id", &self.id.json),
            ("name", &self.name.json),
            ("state", &self.state.json),
            ("finalStatus", &self.final_status.json),
            ("elapsedMillis", &self.elapsed.json),
            ("startedAt", &self.started.json),
        ] {
            object.remove(key);
            if let Some(value) = field {
                object.insert(key.to_owned(), value.clone());
            }
        }
        for key in ["success", "error", "containers", "contents"] {
            object.remove(key);
        }
        Value::Object(object)
    }
}

fn is_terminal(state: Option<&str>) -> bool {
    state.is_some_and(|s| ["FINISHED", "FAILED", "KILLED"].contains(&s))
}

fn decode_ok<T: DeserializeOwned + Debug>(body: &Value) -> Result<T, TestCaseError> {
    decode_response::<T>(ResponseMeta::new(200), body.to_string().as_bytes())
        .map_err(|e| TestCaseError::fail(format!("{e:?} for {body}")))
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn a_success_answer_with_fields_of_wrong_types_parses_keeping_unknown_states(
        app in app(),
        success in success_field(),
        containers in prop::collection::btree_map(".{0,10}", object_of(json_value()), 0..3),
        items in prop::collection::vec(app(), 0..4),
    ) {
        let mut body = app.json();
        if let Some(success) = &success {
            body["success"] = success.clone();
        }
        body["containers"] = json!(containers);
        body["contents"] = Value::Array(items.iter().map(App::json).collect());

        let submitted: SubmitResponse = decode_ok(&body)?;
        let detail: AppDetail = decode_ok(&body)?;
        let list: ListResponse = decode_ok(&body)?;
        let killed: KillResponse = decode_ok(&body)?;

        prop_assert_eq!(&detail.id, &app.id.read);
        prop_assert_eq!(&detail.name, &app.name.read);
        prop_assert_eq!(&detail.state, &app.state.read);
        prop_assert_eq!(&detail.final_status, &app.final_status.read);
        prop_assert_eq!(detail.elapsed_millis, app.elapsed.read);
        prop_assert_eq!(detail.started_at, app.started.read);
        prop_assert_eq!(detail.is_terminal(), is_terminal(app.state.read.as_deref()));
        prop_assert_eq!(
            detail.containers.keys().collect::<Vec<_>>(),
            containers.keys().collect::<Vec<_>>()
        );

        prop_assert_eq!(&submitted.id, &app.id.read);
        prop_assert_eq!(&submitted.state, &app.state.read);
        prop_assert_eq!(&submitted.final_status, &app.final_status.read);
        prop_assert_eq!(submitted.elapsed_millis, app.elapsed.read);
        prop_assert_eq!(&killed.id, &app.id.read);

        prop_assert_eq!(list.contents.len(), items.len());
        for (summary, item) in list.contents.iter().zip(&items) {
            prop_assert_eq!(&summary.id, &item.id.read);
            prop_assert_eq!(&summary.state, &item.state.read);
            prop_assert_eq!(&summary.final_status, &item.final_status.read);
            prop_assert_eq!(summary.started_at, item.started.read);
            prop_assert_eq!(summary.is_terminal(), is_terminal(item.state.read.as_deref()));
        }
    }

    #[test]
    fn only_finished_failed_and_killed_are_terminal(state in text()) {
        let body = json!({"success": true, "state": state, "contents": [{"state": state}]});
        let detail: AppDetail = decode_ok(&body)?;
        let list: ListResponse = decode_ok(&body)?;
        let terminal = TERMINAL_STATES.contains(&state.as_str());
        prop_assert_eq!(terminal, is_terminal(Some(&state)));
        prop_assert_eq!(detail.is_terminal(), terminal);
        prop_assert_eq!(list.contents[0].is_terminal(), terminal);
        prop_assert_eq!(detail.state.as_deref(), Some(state.as_str()));
    }

    // An odd item once made the whole list read as empty, so recovery took "no app
    // listed" for "not created" and could submit a second job; now the answer is
    // unreadable and retried.
    #[test]
    fn one_odd_item_in_a_list_never_hides_the_other_apps(
        ids in prop::collection::vec("[A-Za-z0-9]{22}", 1..4),
        odd in prop::collection::vec(json_leaf(), 1..3),
        shuffle in any::<prop::sample::Index>(),
    ) {
        let mut contents: Vec<Value> = ids.iter().map(|id| json!({"id": id, "state": "RUNNING"})).collect();
        for value in odd {
            contents.insert(shuffle.index(contents.len() + 1), value);
        }
        let body = json!({"success": true, "message": "success", "contents": contents});
        match decode_response::<ListResponse>(ResponseMeta::new(200), body.to_string().as_bytes()) {
            Err(error) => prop_assert!(error.is_retryable(), "{error:?}"),
            Ok(list) => {
                let listed: Vec<_> = list.contents.iter().filter_map(|a| a.id.as_deref()).collect();
                for id in &ids {
                    prop_assert!(listed.contains(&id.as_str()), "{id} is hidden by {body}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Truncated answers
// ---------------------------------------------------------------------------------------

/// A whole answer as the service could send it, with a status that fits it.
fn whole_answer() -> BoxedStrategy<(u16, Vec<u8>)> {
    let success = (app(), prop::collection::vec(app(), 0..3)).prop_map(|(app, items)| {
        let mut body = app.json();
        body["success"] = json!(true);
        body["contents"] = Value::Array(items.iter().map(App::json).collect());
        body
    });
    let answer = prop_oneof![
        success.prop_map(|body| (200u16, body)),
        (
            prop::sample::select(vec![200u16, 400, 401, 403, 404, 429, 500, 503]),
            documented_error()
        ),
        json_leaf().prop_map(|leaf| (200u16, leaf)),
    ];
    (answer, any::<bool>(), prop::option::of("[ \r\n\t]{1,3}"))
        .prop_map(|((status, value), pretty, trailing)| {
            let mut text = if pretty {
                serde_json::to_string_pretty(&value).expect("a value serializes")
            } else {
                value.to_string()
            };
            text.push_str(&trailing.unwrap_or_default());
            (status, text.into_bytes())
        })
        .boxed()
}

fn decodes_a_prefix_honestly<T: DeserializeOwned + Debug>(
    status: u16,
    whole: &[u8],
    prefix: &[u8],
) -> Result<(), TestCaseError> {
    let result = decode_response::<T>(ResponseMeta::new(status), prefix);
    let prefix_json = serde_json::from_slice::<Value>(prefix).ok();
    let shown = String::from_utf8_lossy(prefix);
    match (&result, &prefix_json) {
        // A success from a cut answer: only when the cut took nothing but trailing space.
        (Ok(_), _) => {
            let whole_json = serde_json::from_slice::<Value>(whole).ok();
            prop_assert!(
                prefix_json.is_some() && prefix_json == whole_json,
                "a cut answer decoded as a success: {shown}"
            );
        }
        // A cut that is not JSON: unreadable, so retried, never a verdict.
        (Err(error), None) => {
            prop_assert!(
                matches!(error, ApiError::Undecodable { .. }) && error.is_retryable(),
                "{error:?} for {shown}"
            );
        }
        (Err(_), Some(_)) => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn a_cut_answer_is_unreadable_and_retried_unless_the_cut_left_whole_json(
        (status, whole) in whole_answer(),
        cut in any::<prop::sample::Index>(),
    ) {
        let prefix = &whole[..cut.index(whole.len())];
        decodes_a_prefix_honestly::<SubmitResponse>(status, &whole, prefix)?;
        decodes_a_prefix_honestly::<AppDetail>(status, &whole, prefix)?;
        decodes_a_prefix_honestly::<ListResponse>(status, &whole, prefix)?;
        decodes_a_prefix_honestly::<KillResponse>(status, &whole, prefix)?;
    }
}

// ---------------------------------------------------------------------------------------
// Over real HTTP, against a hand-written server
// ---------------------------------------------------------------------------------------

/// A server on a loopback port that reads each request and then does `behave` with the
/// connection; it counts the requests it read.
struct Hostile {
    url: String,
    requests: Arc<AtomicUsize>,
}

impl Hostile {
    async fn start<F, Fut>(behave: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                if read_request(&mut stream).await {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(behave(stream));
                }
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads a request's head and its `Content-Length` body; false if the client went away.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    true
}

fn client(url: &str, timeout: Duration, retry: RetryPolicy) -> DataForestClient {
    dataforest_operator::install_crypto_provider();
    let mut config = support::client_config(url);
    config.timeout = timeout;
    config.retry = retry;
    DataForestClient::new(config, Credentials::new("AKHOSTILE", "hostile-secret"))
        .expect("client builds")
}

/// Bounds a call that must end on its own, so that a hang fails the test instead of
/// stalling it; the bound is generous and measures nothing.
async fn within_bound<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call ended on its own")
}

#[tokio::test]
async fn an_html_page_with_status_200_is_an_unreadable_answer_that_reads_retry() {
    let page = "<html><body><h1>Service temporarily unavailable</h1></body></html>";
    let server = Hostile::start(move |mut stream| async move {
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
            page.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
    })
    .await;
    let config = support::client_config(&server.url);
    let c = client(&server.url, config.timeout, config.retry.clone());
    let error = within_bound(c.get_detail("dN2vdAwrCMZdUzGKKiFy6Z"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ApiError::Undecodable { status: 200, body, .. } if body.contains("temporarily unavailable")),
        "{error:?}"
    );
    assert_eq!(error.reason(), "UnreadableAnswer");
    assert!(error.is_retryable());
    assert_eq!(
        server.requests(),
        config.retry.max_attempts as usize,
        "every attempt was spent on the page"
    );
}

#[tokio::test]
async fn an_answer_larger_than_the_cap_is_refused_without_reading_it_all() {
    static CHUNK: [u8; 64 * 1024] = [b' '; 64 * 1024];
    let (written_tx, mut written_rx) = mpsc::unbounded_channel();
    let server = Hostile::start(move |mut stream| {
        let written_tx = written_tx.clone();
        async move {
            // A close-delimited body that never ends: only the client can stop it.
            let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"success\":true,\"contents\":[";
            let mut written = 0usize;
            if stream.write_all(head).await.is_ok() {
                while stream.write_all(&CHUNK).await.is_ok() {
                    written += CHUNK.len();
                }
            }
            let _ = written_tx.send(written);
        }
    })
    .await;
    let c = client(
        &server.url,
        Duration::from_secs(10),
        RetryPolicy::no_retries(),
    );
    let error = within_bound(c.list(support::ACCOUNT1)).await.unwrap_err();
    match &error {
        ApiError::Undecodable {
            status: 200,
            reason,
            body,
            ..
        } => {
            assert!(reason.contains(&MAX_ANSWER_BYTES.to_string()), "{reason}");
            assert!(body.chars().count() <= BODY_KEEP_BYTES + 1, "{body:?}");
        }
        other => panic!("expected an unreadable answer, got {other:?}"),
    }
    assert_eq!(error.reason(), "UnreadableAnswer");
    assert!(error.is_retryable());
    // The client hung up: the server's endless write failed, after about the cap.
    let written = within_bound(written_rx.recv())
        .await
        .expect("the server reports");
    assert!(
        written >= MAX_ANSWER_BYTES - CHUNK.len() && written <= 2 * MAX_ANSWER_BYTES,
        "{written} bytes written for a cap of {MAX_ANSWER_BYTES}"
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_server_that_never_answers_fails_the_call_with_a_timeout() {
    let server = Hostile::start(|stream| async move {
        // Hold the connection open and say nothing, for ever.
        std::future::pending::<()>().await;
        drop(stream);
    })
    .await;
    let timeout = Duration::from_millis(300);
    let c = client(&server.url, timeout, RetryPolicy::no_retries());
    let started = Instant::now();
    let error = within_bound(c.get_detail("dN2vdAwrCMZdUzGKKiFy6Z"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApiError::Timeout { after } if after == timeout),
        "{error:?}"
    );
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    assert!(error.is_retryable() && error.outcome_unknown());
    assert_eq!(error.reason(), "ApiUnavailable");
}

#[tokio::test]
async fn an_answer_that_trickles_for_ever_fails_the_call_with_a_timeout() {
    let server = Hostile::start(|mut stream| async move {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{";
        if stream.write_all(head).await.is_err() {
            return;
        }
        // One byte now and then keeps a per-read timeout happy; only a total one fires.
        while stream.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let timeout = Duration::from_millis(300);
    let c = client(&server.url, timeout, RetryPolicy::no_retries());
    let error = within_bound(c.get_detail("dN2vdAwrCMZdUzGKKiFy6Z"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApiError::Timeout { after } if after == timeout),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn an_answer_that_breaks_off_mid_body_is_a_lost_connection_retried_and_for_submit_unknown() {
    let server = Hostile::start(|mut stream| async move {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n{\"success\":true,\"id\":\"dN2vdAwr";
        let _ = stream.write_all(answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
    let c = client(
        &server.url,
        Duration::from_secs(10),
        RetryPolicy::no_retries(),
    );

    let error = within_bound(c.get_detail("dN2vdAwrCMZdUzGKKiFy6Z"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ApiError::Transport {
                kind: TransportKind::ConnectionLost,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());

    let request = support::request("cut");
    let error = within_bound(c.submit(&request)).await.unwrap_err();
    assert!(error.is_retryable() && error.outcome_unknown(), "{error:?}");
    assert_eq!(server.requests(), 2);
}
