//! Hostile requests to the emulator, as property tests: the request parsers never panic on
//! arbitrary bytes or JSON, a submit body they accept always meets the documented limits
//! (and one that meets them is accepted), and over HTTP every body, signing header or
//! per-app override sent to the four API paths gets an answer in a documented shape
//! (a success, `{"success":false,"message"}` or `{"error":{...}}`), after which the
//! emulator still serves a normal request.

mod support;

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use dataforest_common::sign::now_millis;
use dataforest_emulator::OUTCOME_ENV;
use dataforest_emulator::apps::{ACCEPTED_MS_ENV, RUNNING_MS_ENV};
use dataforest_emulator::request::{
    GPU_COUNT, ID_MAX, NAME_PREFIX, parse_id, parse_list, parse_submit,
};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Value, json};
use support::*;

/// Modest case counts keep the file at a few seconds; nothing is written on failure, so a
/// failing run leaves no regression file behind (the failing input is in the panic message).
fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Field names the parsers look for, so that generated objects often hit them.
const KEYS: &[&str] = &[
    "aiWorkspaceId",
    "namePrefix",
    "queueName",
    "data",
    "docker",
    "resource",
    "input",
    "output",
    "image",
    "command",
    "args",
    "env",
    "exposeTcpPorts",
    "workdir",
    "cpuCount",
    "gpuCount",
    "gpuModel",
    "memoryMb",
    "id",
    "search",
    "accountId",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => ".{0,10}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,30}",
        "[A-Za-z0-9]{0,25}",
        Just(ACCOUNT1.to_owned()),
        Just("x".repeat(5000)),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![-1i64, 0, 1, 8, 9, i64::MIN, i64::MAX]).prop_map(Value::from),
        text().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid_submit() -> Value {
    submit_body()
}

/// JSON pointers into a submit body, where mutations land.
const SUBMIT_POINTERS: &[&str] = &[
    "/aiWorkspaceId",
    "/namePrefix",
    "/queueName",
    "/data",
    "/data/input",
    "/data/output",
    "/docker",
    "/docker/image",
    "/docker/command",
    "/docker/env",
    "/resource",
    "/resource/gpuCount",
    "/resource/gpuModel",
    "/resource/cpuCount",
    "/resource/memoryMb",
];

/// A documented submit body with a few fields replaced by anything, or removed.
fn mutated_submit() -> impl Strategy<Value = Value> {
    let mutation = (
        prop::sample::select(SUBMIT_POINTERS),
        prop::option::weighted(0.9, json_value()),
    );
    prop::collection::vec(mutation, 1..4).prop_map(|mutations| {
        let mut body = valid_submit();
        for (pointer, replacement) in mutations {
            let (parent, field) = pointer.rsplit_once('/').expect("pointers have a slash");
            if let Some(Value::Object(parent)) = body.pointer_mut(parent) {
                match replacement {
                    Some(value) => parent.insert(field.to_owned(), value),
                    None => parent.remove(field),
                };
            }
        }
        body
    })
}

/// Bodies of every kind: raw bytes, any JSON, and near misses of each documented body.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let id_body = prop_oneof![
        json_value().prop_map(|id| json!({ "id": id })),
        text().prop_map(|id| json!({ "id": id })),
    ];
    let list_body = prop_oneof![
        json_value().prop_map(|id| json!({"search": {"accountId": id}})),
        json_value().prop_map(|search| json!({ "search": search })),
        Just(json!({"search": {"accountId": ACCOUNT1}})),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        mutated_submit().prop_map(|v| v.to_string().into_bytes()),
        id_body.prop_map(|v| v.to_string().into_bytes()),
        list_body.prop_map(|v| v.to_string().into_bytes()),
        Just(valid_submit().to_string().into_bytes()),
    ]
}

/// What a string must satisfy: a length in characters within `range`.
fn chars_within(text: &str, range: RangeInclusive<usize>) -> bool {
    range.contains(&text.chars().count())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn the_parsers_never_panic_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = parse_submit(&body);
        let _ = parse_id(&body);
        let _ = parse_list(&body);
    }

    #[test]
    fn the_parsers_never_panic_on_arbitrary_json(value in json_value()) {
        let body = value.to_string().into_bytes();
        let _ = parse_submit(&body);
        let _ = parse_id(&body);
        let _ = parse_list(&body);
    }

    #[test]
    fn an_accepted_submit_body_always_meets_the_documented_limits(
        value in prop_oneof![mutated_submit(), json_value()]
    ) {
        let Ok(body) = parse_submit(value.to_string().as_bytes()) else {
            return Ok(());
        };
        prop_assert!(chars_within(&body.ai_workspace_id, 1..=ID_MAX), "{value}");
        prop_assert!(chars_within(&body.name_prefix, NAME_PREFIX), "{value}");
        prop_assert!(body.resource.gpu_count.is_none_or(|n| GPU_COUNT.contains(&n)), "{value}");
        prop_assert!(!body.docker.image.is_empty(), "{value}");
        prop_assert!(!body.docker.command.is_empty(), "{value}");
        prop_assert!(!body.queue_name.is_empty(), "{value}");
    }

    #[test]
    fn a_submit_body_within_the_documented_limits_is_accepted_as_sent(
        workspace in ".{1,22}",
        prefix in ".{2,8}",
        queue in ".{1,20}",
        image in ".{1,40}",
        command in ".{1,40}",
        gpus in prop::option::of(GPU_COUNT),
        env in prop::collection::btree_map(".{0,10}", ".{0,10}", 0..4),
    ) {
        let mut value = valid_submit();
        value["aiWorkspaceId"] = json!(workspace);
        value["namePrefix"] = json!(prefix);
        value["queueName"] = json!(queue);
        value["docker"]["image"] = json!(image);
        value["docker"]["command"] = json!(command);
        value["docker"]["env"] = json!(env);
        value["resource"]["gpuCount"] = json!(gpus);
        let body = parse_submit(value.to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}: {value}")))?;
        prop_assert_eq!(body.ai_workspace_id, workspace);
        prop_assert_eq!(body.name_prefix, prefix);
        prop_assert_eq!(body.queue_name, queue);
        prop_assert_eq!(body.docker.image, image);
        prop_assert_eq!(body.docker.command, command);
        prop_assert_eq!(body.docker.env, env);
        prop_assert_eq!(body.resource.gpu_count, gpus);
    }

    #[test]
    fn an_id_is_read_only_when_it_is_a_non_empty_string_of_at_most_22_bytes(
        id in prop_oneof![json_value(), text().prop_map(Value::String)],
        extra in prop::collection::btree_map(key(), json_value(), 0..3),
    ) {
        let mut body: serde_json::Map<String, Value> = extra.into_iter().collect();
        body.insert("id".to_owned(), id.clone());
        let parsed = parse_id(Value::Object(body).to_string().as_bytes());
        let expected = id
            .as_str()
            .filter(|id| (1..=ID_MAX).contains(&id.len()))
            .map(str::to_owned);
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn a_list_body_yields_the_account_id_it_names(
        account in ".{0,40}",
        extra in prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..3),
    ) {
        let mut search: serde_json::Map<String, Value> = extra.into_iter().collect();
        search.insert("accountId".to_owned(), json!(account));
        let body = json!({ "search": search }).to_string();
        prop_assert_eq!(parse_list(body.as_bytes()), Some(account));
    }
}

/// Sends one request and reads the whole answer, or says why there was none.
async fn answer(request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("no answer: {e:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("answer broke off: {e:?}"))?;
    Ok((status, body.to_vec()))
}

/// A 200 with a success object, or a 4xx/5xx with one of the two documented error shapes.
fn is_documented(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    let shown = String::from_utf8_lossy(body);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| TestCaseError::fail(format!("HTTP {status}, not JSON ({e}): {shown}")))?;
    match status {
        200 => prop_assert_eq!(&value["success"], &json!(true), "HTTP 200: {}", shown),
        400..=599 => {
            let service = value["success"] == json!(false) && value["message"].is_string();
            let gateway = value["error"].is_object() && value["error"]["message"].is_string();
            prop_assert!(
                service || gateway,
                "HTTP {status}, no documented shape: {shown}"
            );
        }
        _ => prop_assert!(false, "HTTP {status} is not a documented status: {shown}"),
    }
    Ok(())
}

const PATHS: [&str; 4] = [SUBMIT, DETAIL, LIST, KILL];

/// Runs `strategy` against one emulator, then checks that a normal submit still succeeds.
fn against_the_emulator<S: Strategy>(
    count: u32,
    strategy: S,
    check: impl Fn(&Raw, S::Value) -> futures::future::BoxFuture<'_, Result<(), TestCaseError>>,
) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let emu = runtime.block_on(emulator(FOREVER));
    let raw = Raw::new(&emu);
    let mut runner = TestRunner::new(cases(count));
    let result = runner.run(&strategy, |input| runtime.block_on(check(&raw, input)));
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let (status, body) = runtime.block_on(raw.post(SUBMIT, &submit_body_with_prefix("after")));
    assert_eq!(status, 200, "the emulator still serves: {body}");
    assert_eq!(body["success"], json!(true), "{body}");
    drop(emu);
}

#[test]
fn arbitrary_bodies_to_each_api_path_get_a_documented_answer_and_the_emulator_keeps_serving() {
    against_the_emulator(
        256,
        (prop::sample::select(&PATHS[..]), body()),
        |raw, (path, body)| {
            Box::pin(async move {
                let request = raw
                    .signed(path, &Value::Null, now_millis(), AK1, SK1)
                    .body(body.clone());
                let (status, answer) = answer(request).await.map_err(TestCaseError::fail)?;
                is_documented(status, &answer).map_err(|e| {
                    TestCaseError::fail(format!(
                        "{e}; request {path} {:?}",
                        String::from_utf8_lossy(&body)
                    ))
                })
            })
        },
    );
}

/// Timestamp header values: numbers of every size (the emulator reads them as i128),
/// times near now, and text.
fn timestamp_header() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<i128>().prop_map(|n| n.to_string()),
        3 => prop::sample::select(vec![i128::MIN, i128::MIN + 1, i128::MAX, 0, -1])
            .prop_map(|n| n.to_string()),
        1 => (i128::MIN..i128::MIN + 10_000_000_000_000).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        2 => (-600_000i64..600_000).prop_map(|offset| (now_millis() as i64 + offset).to_string()),
        1 => "[ -~]{0,30}",
    ]
}

// Found a bug once: a timestamp such as i128::MIN made the skew check's subtraction
// overflow, so the handler panicked and the connection closed without an answer where the
// gateway answers 401 "Authentication Failed". The check now counts an overflowing
// distance as too far; tests/faults.rs pins the extreme values down one by one.
#[test]
fn signed_requests_with_any_timestamp_header_get_a_documented_answer() {
    against_the_emulator(
        128,
        (prop::sample::select(&PATHS[..]), timestamp_header()),
        |raw, (path, timestamp)| {
            Box::pin(async move {
                let body = match path {
                    SUBMIT => submit_body_with_prefix("stamp"),
                    LIST => json!({"search": {"accountId": ACCOUNT1}}),
                    _ => json!({"id": "x"}),
                };
                let request = raw
                    .http
                    .post(format!("{}{path}", raw.base))
                    .header("x-ncp-apigw-timestamp", &timestamp)
                    .header("x-ncp-iam-access-key", AK1)
                    .header(
                        "x-ncp-apigw-signature-v2",
                        signature(path, &timestamp, AK1, SK1),
                    )
                    .json(&body);
                let (status, answer) = answer(request)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("timestamp {timestamp:?}: {e}")))?;
                is_documented(status, &answer)
                    .map_err(|e| TestCaseError::fail(format!("{e}; timestamp {timestamp:?}")))
            })
        },
    );
}

/// Values of the per-app docker env overrides: good, out of range and not numbers.
fn override_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        (0u64..50).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        Just("-1".to_owned()),
        Just("SUCCEEDED".to_owned()),
        Just("FAILED".to_owned()),
        Just("FINISHED_FAILED".to_owned()),
        ".{0,12}",
    ]
}

#[test]
fn apps_submitted_with_any_per_app_overrides_answer_every_operation_in_documented_shapes() {
    let overrides = (
        prop::option::of(override_value()),
        prop::option::of(override_value()),
        prop::option::of(override_value()),
    );
    against_the_emulator(64, overrides, |raw, (accepted, running, outcome)| {
        Box::pin(async move {
            let env: BTreeMap<&str, String> = [
                (ACCEPTED_MS_ENV, accepted),
                (RUNNING_MS_ENV, running),
                (OUTCOME_ENV, outcome),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
            let mut submit = submit_body_with_prefix("env");
            submit["docker"]["env"] = json!(env);
            let context = |e: TestCaseError| TestCaseError::fail(format!("{e}; env {env:?}"));
            let send = |path: &'static str, body: Value| {
                answer(raw.signed(path, &body, now_millis(), AK1, SK1))
            };
            let (status, submitted) = send(SUBMIT, submit).await.map_err(TestCaseError::fail)?;
            is_documented(status, &submitted).map_err(context)?;
            let submitted: Value = serde_json::from_slice(&submitted).expect("checked above");
            let id = json!({"id": submitted["id"]});
            for (path, body) in [
                (DETAIL, id.clone()),
                (LIST, json!({"search": {"accountId": ACCOUNT1}})),
                (KILL, id.clone()),
                (DETAIL, id.clone()),
                (KILL, id),
            ] {
                let (status, answer) = send(path, body).await.map_err(TestCaseError::fail)?;
                is_documented(status, &answer).map_err(context)?;
            }
            Ok(())
        })
    });
}
