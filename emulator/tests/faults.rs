//! The emulator's fault injection over HTTP: slow kills, proxy HTML pages, truncated
//! bodies, redirects and a skewed gateway clock, each set through the admin endpoint as a
//! test would, and each counted in `/_emulator/stats` under its own outcome.

mod support;

use std::time::{Duration, Instant};

use dataforest_common::Operation;
use dataforest_common::sign::now_millis;
use dataforest_emulator::Timeline;
use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

/// Apps that go RUNNING at once and stay so for the whole test.
const RUNNING: Timeline = Timeline {
    accepted: Duration::ZERO,
    running: Duration::from_secs(3600),
};

const STALE: &str = "The request timestamp is invalid or too far from the server time.";

/// Replaces the faults through the admin endpoint, as a test outside Rust would.
async fn set_faults(raw: &Raw, faults: Value) {
    let (status, answer) = raw.admin(Method::POST, "faults", Some(faults)).await;
    assert_eq!(status, 200, "faults refused: {answer}");
}

/// The admin endpoint's refusal message for these faults.
async fn refusal(raw: &Raw, faults: Value) -> String {
    let (status, answer) = raw.admin(Method::POST, "faults", Some(faults)).await;
    assert_eq!(status, 400, "faults accepted: {answer}");
    answer["error"].as_str().unwrap_or_default().to_owned()
}

/// The stats as `/_emulator/stats` serves them: outcome counts of one operation.
async fn outcomes(raw: &Raw, operation: Operation) -> Value {
    let (status, stats) = raw.admin(Method::GET, "stats", None).await;
    assert_eq!(status, 200);
    stats["requests"][operation.as_str()].clone()
}

/// A request signed now with the first account, sent; the answer as it came.
async fn send(raw: &Raw, path: &str, body: &Value) -> reqwest::Response {
    raw.signed(path, body, now_millis(), AK1, SK1)
        .send()
        .await
        .expect("an answer")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", response.headers()))
        .to_str()
        .expect("a text header")
}

/// Polls getDetail until `done` holds for the app, or fails at the deadline.
async fn detail_until(raw: &Raw, id: &Value, within: Duration, done: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let (status, detail) = raw.post(DETAIL, &json!({ "id": id })).await;
        assert_eq!(status, 200, "{detail}");
        if done(&detail) {
            return;
        }
        assert!(Instant::now() < deadline, "still not there: {detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn listed_state(list: &Value, id: &Value) -> Option<Value> {
    list["contents"]
        .as_array()?
        .iter()
        .find(|app| &app["id"] == id)
        .map(|app| app["state"].clone())
}

#[tokio::test]
async fn a_slow_kill_answers_success_at_once_and_the_app_ends_killed_only_after_its_delay() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    let (_, created) = raw.post(SUBMIT, &submit_body()).await;
    let id = created["id"].clone();
    let delay = Duration::from_millis(1500);
    set_faults(
        &raw,
        json!({"slowKill": {"next": 1, "delayMs": delay.as_millis() as u64}}),
    )
    .await;

    let (status, answer) = raw.post(KILL, &json!({ "id": id })).await;
    assert_eq!(
        (status, answer),
        (
            200,
            json!({"success": true, "message": "success", "id": id})
        )
    );
    let (_, detail) = raw.post(DETAIL, &json!({ "id": id })).await;
    assert_eq!(
        (detail["state"].as_str(), detail["finalStatus"].as_str()),
        (Some("RUNNING"), Some("UNDEFINED")),
        "still live right after the kill: {detail}"
    );
    let (_, list) = raw
        .post(LIST, &json!({"search": {"accountId": ACCOUNT1}}))
        .await;
    assert_eq!(listed_state(&list, &id), Some(json!("RUNNING")), "{list}");
    assert!(emu.apps()[0].killed);

    // A repeated kill, with a much slower one armed: accepted, it neither spends the fault
    // nor moves the end the first kill set.
    set_faults(&raw, json!({"slowKill": {"next": 1, "delayMs": 600_000}})).await;
    let (status, answer) = raw.post(KILL, &json!({ "id": id })).await;
    assert_eq!((status, answer["success"].clone()), (200, json!(true)));
    assert_eq!(emu.faults().slow_kill.next, 1, "the repeat spent the fault");

    detail_until(&raw, &id, Duration::from_secs(10), |d| {
        d["state"] == json!("KILLED")
    })
    .await;
    let (_, detail) = raw.post(DETAIL, &json!({ "id": id })).await;
    assert_eq!(detail["finalStatus"], json!("KILLED"));
    assert!(
        detail["elapsedMillis"].as_u64().unwrap() >= delay.as_millis() as u64,
        "ended before the delay: {detail}"
    );
    assert_ne!(detail["finishedAt"], json!("1970-01-01T09:00:00+09:00"));
    let (_, list) = raw
        .post(LIST, &json!({"search": {"accountId": ACCOUNT1}}))
        .await;
    assert_eq!(listed_state(&list, &id), Some(json!("KILLED")), "{list}");
    let kills = outcomes(&raw, Operation::Kill).await;
    assert_eq!(
        (kills["slowKill"].clone(), kills["ok"].clone()),
        (json!(1), json!(1))
    );
}

#[tokio::test]
async fn a_slow_kill_that_can_fire_needs_its_delay() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    let e = refusal(&raw, json!({"slowKill": {"next": 1}})).await;
    assert!(e.contains("slowKill.delayMs is required"), "{e}");
    let e = refusal(&raw, json!({"throttle": {"next": 1, "delayMs": 5}})).await;
    assert!(e.contains("throttle.delayMs is not allowed"), "{e}");
}

#[tokio::test]
async fn an_html_page_comes_with_each_allowed_status_before_anything_is_checked_or_created() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    for (status, expected) in [
        (None, 200),
        (Some(502), 502),
        (Some(503), 503),
        (Some(504), 504),
    ] {
        let mut fault = json!({"next": 1});
        if let Some(status) = status {
            fault["status"] = json!(status);
        }
        set_faults(&raw, json!({ "htmlPage": fault })).await;
        let response = send(&raw, SUBMIT, &submit_body()).await;
        assert_eq!(response.status().as_u16(), expected);
        assert!(
            header(&response, "content-type").starts_with("text/html"),
            "{:?}",
            response.headers()
        );
        let page = response.text().await.unwrap();
        assert!(page.starts_with("<html>"), "{page}");
        assert!(page.trim_end().ends_with("</html>"), "{page}");
        if expected != 200 {
            assert!(page.contains(&expected.to_string()), "{page}");
        }
    }
    // A proxy answers before the gateway: an unsigned request gets the page too.
    set_faults(&raw, json!({"htmlPage": {"next": 1, "status": 502}})).await;
    let response = raw
        .http
        .post(format!("{}{LIST}", raw.base))
        .json(&json!({"search": {"accountId": ACCOUNT1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 502);
    assert!(emu.apps().is_empty(), "nothing was created");
    assert_eq!(
        outcomes(&raw, Operation::Submit).await["htmlPage"],
        json!(4)
    );
    assert_eq!(
        outcomes(&raw, Operation::GetList).await["htmlPage"],
        json!(1)
    );
    assert_eq!(raw.post(SUBMIT, &submit_body()).await.0, 200, "spent");
}

#[tokio::test]
async fn fault_statuses_are_checked_per_fault_with_the_field_named() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    let e = refusal(&raw, json!({"htmlPage": {"next": 1, "status": 500}})).await;
    assert!(
        e.contains("htmlPage.status must be 200, 502, 503 or 504, got 500"),
        "{e}"
    );
    let e = refusal(&raw, json!({"errorBefore": {"next": 1, "status": 502}})).await;
    assert!(
        e.contains("errorBefore.status must be 500, 503 or 504, got 502"),
        "{e}"
    );
    let e = refusal(&raw, json!({"truncatedBody": {"next": 1, "status": 200}})).await;
    assert!(e.contains("truncatedBody.status is not allowed"), "{e}");
    let location = "http://127.0.0.1:1/";
    let e = refusal(
        &raw,
        json!({"redirect": {"next": 1, "status": 304, "location": location}}),
    )
    .await;
    assert!(
        e.contains("redirect.status must be 301, 302, 303, 307 or 308, got 304"),
        "{e}"
    );
}

#[tokio::test]
async fn a_submit_under_a_truncated_body_creates_the_app_but_its_answer_is_half_a_json() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    set_faults(
        &raw,
        json!({"truncatedBody": {"next": 1, "operations": ["submit"]}}),
    )
    .await;
    let response = send(&raw, SUBMIT, &submit_body()).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(header(&response, "content-type").starts_with("application/json"));
    let length: usize = header(&response, "content-length").parse().unwrap();
    let body = response.bytes().await.expect("the whole (cut) body");
    assert_eq!(body.len(), length, "content-length matches the cut body");
    assert!(body.starts_with(b"{\""), "{body:?}");
    assert!(serde_json::from_slice::<Value>(&body).is_err(), "{body:?}");

    let (status, list) = raw
        .post(LIST, &json!({"search": {"accountId": ACCOUNT1}}))
        .await;
    assert_eq!(status, 200, "only submits were cut: {list}");
    let contents = list["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 1, "the app was created: {list}");
    assert_eq!(
        outcomes(&raw, Operation::Submit).await["truncatedBody"],
        json!(1)
    );
}

#[tokio::test]
async fn reads_and_kills_under_a_truncated_body_are_cut_and_the_kill_is_made() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    let (_, created) = raw.post(SUBMIT, &submit_body()).await;
    let id = json!({"id": created["id"]});
    set_faults(&raw, json!({"truncatedBody": {"next": 3}})).await;
    for (path, body) in [
        (DETAIL, id.clone()),
        (LIST, json!({"search": {"accountId": ACCOUNT1}})),
        (KILL, id.clone()),
    ] {
        let response = send(&raw, path, &body).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let text = response.text().await.unwrap();
        assert!(text.starts_with('{'), "{path}: {text}");
        assert!(
            serde_json::from_str::<Value>(&text).is_err(),
            "{path}: {text}"
        );
    }
    assert_eq!(emu.apps()[0].state, "KILLED", "the kill was made");
    // Errors are never cut: only a real 200 answer is.
    set_faults(&raw, json!({"truncatedBody": {"next": 1}})).await;
    let (status, body) = raw.post(DETAIL, &json!({"id": "nope"})).await;
    assert_eq!(
        (status, body["message"].clone()),
        (404, json!("no such element"))
    );
    for operation in [Operation::GetDetail, Operation::GetList, Operation::Kill] {
        assert_eq!(
            outcomes(&raw, operation).await["truncatedBody"],
            json!(1),
            "{operation}"
        );
    }
}

#[tokio::test]
async fn a_redirect_names_its_location_and_nothing_is_created_or_followed() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let location = format!(
        "http://{}/api/v2/aiapps/submit",
        elsewhere.local_addr().unwrap()
    );
    set_faults(&raw, json!({"redirect": {"next": 1, "location": location}})).await;
    let response = send(&raw, SUBMIT, &submit_body()).await;
    assert_eq!(response.status().as_u16(), 307);
    assert_eq!(header(&response, "location"), location);
    assert!(response.bytes().await.unwrap().is_empty());

    set_faults(
        &raw,
        json!({"redirect": {"next": 1, "status": 308, "location": location}}),
    )
    .await;
    let response = send(&raw, DETAIL, &json!({"id": "x"})).await;
    assert_eq!(response.status().as_u16(), 308);
    assert_eq!(header(&response, "location"), location);

    assert!(emu.apps().is_empty(), "nothing was created");
    let followed = tokio::time::timeout(Duration::from_millis(200), elsewhere.accept()).await;
    assert!(followed.is_err(), "nobody connected to the location");
    assert_eq!(
        outcomes(&raw, Operation::Submit).await["redirect"],
        json!(1)
    );
    assert_eq!(
        outcomes(&raw, Operation::GetDetail).await["redirect"],
        json!(1)
    );
}

#[tokio::test]
async fn a_redirect_that_can_fire_needs_an_absolute_http_location() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    let e = refusal(&raw, json!({"redirect": {"next": 1}})).await;
    assert!(e.contains("redirect.location is required"), "{e}");
    for bad in [
        "/api/v2/aiapps/submit",
        "ftp://host.example/",
        "host.example:80",
    ] {
        let e = refusal(&raw, json!({"redirect": {"next": 1, "location": bad}})).await;
        assert!(
            e.contains("redirect.location must be an absolute"),
            "{bad}: {e}"
        );
    }
    let e = refusal(&raw, json!({"quota": {"next": 1, "location": "http://h/"}})).await;
    assert!(e.contains("quota.location is not allowed"), "{e}");
}

/// The answer's `Date` header, read as the RFC 9110 IMF-fixdate it must be.
fn date_of(response: &reqwest::Response) -> Timestamp {
    let dates = response.headers().get_all("date").iter().count();
    assert_eq!(dates, 1, "one Date header: {:?}", response.headers());
    let date = header(response, "date");
    // "Sun, 06 Nov 1994 08:49:37 GMT": always 29 characters, always GMT.
    assert_eq!(date.len(), 29, "{date}");
    assert!(date.ends_with(" GMT"), "{date}");
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(date)
        .unwrap_or_else(|e| panic!("{date}: {e}"))
}

/// Whether `date` is `offset` away from the local clock now, within a few seconds (the
/// header has whole seconds, and the answer took some time).
fn is_offset_by(date: Timestamp, offset: SignedDuration) -> bool {
    let distance = date.duration_since(Timestamp::now()) - offset;
    distance.abs() <= SignedDuration::from_secs(5)
}

#[tokio::test]
async fn a_gateway_clock_ahead_refuses_a_true_timestamp_and_dates_its_answers_ahead() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    let ahead = SignedDuration::from_mins(10);
    set_faults(&raw, json!({"clockOffsetMs": ahead.as_millis() as i64})).await;
    let response = send(&raw, DETAIL, &json!({"id": "x"})).await;
    assert_eq!(response.status().as_u16(), 401);
    let date = date_of(&response);
    assert!(
        is_offset_by(date, ahead),
        "Date {date}, now {}",
        Timestamp::now()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, auth_failed(STALE));
    let details = outcomes(&raw, Operation::GetDetail).await;
    assert_eq!(details["clockSkew"], json!(1), "{details}");
    assert!(details["unauthorized"].is_null(), "{details}");

    // A client that follows the gateway's clock gets in.
    let ts = now_millis() + ahead.as_millis() as u64;
    let response = raw
        .signed(DETAIL, &json!({"id": "x"}), ts, AK1, SK1)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert!(is_offset_by(date_of(&response), ahead));

    // A timestamp stale by the true clock too is plain unauthorized, not the fault.
    let (status, _) = raw
        .post_signed(DETAIL, &json!({"id": "x"}), 0, AK1, SK1)
        .await;
    assert_eq!(status, 401);
    let details = outcomes(&raw, Operation::GetDetail).await;
    assert_eq!(
        (
            details["clockSkew"].clone(),
            details["unauthorized"].clone()
        ),
        (json!(1), json!(1))
    );
}

#[tokio::test]
async fn every_gateway_answer_carries_a_date_from_the_true_clock_without_an_offset() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    let no_offset = SignedDuration::ZERO;
    let ok = send(&raw, SUBMIT, &submit_body()).await;
    assert_eq!(ok.status().as_u16(), 200);
    assert!(is_offset_by(date_of(&ok), no_offset));
    let invalid = send(&raw, SUBMIT, &json!({})).await;
    assert_eq!(invalid.status().as_u16(), 400);
    assert!(is_offset_by(date_of(&invalid), no_offset));
    let unsigned = raw
        .http
        .post(format!("{}{SUBMIT}", raw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    assert!(is_offset_by(date_of(&unsigned), no_offset));
    let unknown = send(&raw, "/api/v2/aiapps/delete", &json!({})).await;
    assert_eq!(unknown.status().as_u16(), 404);
    assert!(is_offset_by(date_of(&unknown), no_offset));

    // Behind, the gateway dates its errors behind as well.
    let behind = SignedDuration::from_mins(-7);
    set_faults(
        &raw,
        json!({"clockOffsetMs": behind.as_millis() as i64, "errorBefore": {"next": 1, "status": 503}}),
    )
    .await;
    let ts = (now_millis() as i64 + behind.as_millis() as i64) as u64;
    let error = raw
        .signed(
            LIST,
            &json!({"search": {"accountId": ACCOUNT1}}),
            ts,
            AK1,
            SK1,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(error.status().as_u16(), 503);
    assert!(is_offset_by(date_of(&error), behind));
}

#[tokio::test]
async fn extreme_or_unreadable_timestamps_get_a_plain_401_with_or_without_an_offset() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    let timestamps = [
        i128::MIN.to_string(),
        (i128::MIN + 1).to_string(),
        i128::MAX.to_string(),
        "9".repeat(60),
        format!("-{}", "9".repeat(60)),
        "1.5e12".to_owned(),
        String::new(),
    ];
    for offset in [0i64, 600_000, -600_000] {
        set_faults(&raw, json!({ "clockOffsetMs": offset })).await;
        for ts in &timestamps {
            let request = raw
                .http
                .post(format!("{}{DETAIL}", raw.base))
                .header("x-ncp-apigw-timestamp", ts)
                .header("x-ncp-iam-access-key", AK1)
                .header("x-ncp-apigw-signature-v2", signature(DETAIL, ts, AK1, SK1))
                .json(&json!({"id": "x"}));
            let (status, body) = read(request).await;
            assert_eq!(
                (status, body),
                (401, auth_failed(STALE)),
                "{ts:?}, offset {offset}"
            );
        }
    }
    let details = outcomes(&raw, Operation::GetDetail).await;
    assert_eq!(
        details["unauthorized"],
        json!(3 * timestamps.len()),
        "{details}"
    );
    assert!(details["clockSkew"].is_null(), "{details}");
}

#[tokio::test]
async fn an_offset_beyond_ten_years_is_refused() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    let e = refusal(&raw, json!({ "clockOffsetMs": i64::MIN })).await;
    assert!(e.contains("clockOffsetMs must be within"), "{e}");
}

/// The `dataforest-emulator` binary, killed when the test ends however it ends.
#[tokio::test]
async fn the_binary_takes_the_gateway_clock_offset_as_a_flag() {
    let (guard, url) = spawn_binary(&["--clock-offset-ms", "-600000"]).await;
    let raw = Raw::at(&url);
    let response = send(&raw, LIST, &json!({"search": {"accountId": ACCOUNT1}})).await;
    assert_eq!(response.status().as_u16(), 401);
    assert!(is_offset_by(
        date_of(&response),
        SignedDuration::from_mins(-10)
    ));
    assert_eq!(
        outcomes(&raw, Operation::GetList).await["clockSkew"],
        json!(1)
    );
    drop(guard);
}

#[tokio::test]
async fn the_stats_endpoint_serves_every_new_outcome_by_name() {
    let emu = emulator(RUNNING).await;
    let raw = Raw::new(&emu);
    let (_, created) = raw.post(SUBMIT, &submit_body()).await;
    let elsewhere = "http://127.0.0.1:9/";
    set_faults(
        &raw,
        json!({
            "htmlPage": {"next": 1, "operations": ["getList"]},
            "redirect": {"next": 1, "operations": ["getDetail"], "location": elsewhere},
            "truncatedBody": {"next": 1, "operations": ["submit"]},
            "slowKill": {"next": 1, "delayMs": 60_000},
        }),
    )
    .await;
    send(&raw, LIST, &json!({"search": {"accountId": ACCOUNT1}})).await;
    send(&raw, DETAIL, &json!({"id": created["id"]})).await;
    send(&raw, SUBMIT, &submit_body()).await;
    send(&raw, KILL, &json!({"id": created["id"]})).await;
    set_faults(&raw, json!({"clockOffsetMs": 3_600_000})).await;
    send(&raw, KILL, &json!({"id": created["id"]})).await;
    let (_, stats) = raw.admin(Method::GET, "stats", None).await;
    assert_eq!(
        stats["requests"],
        json!({
            "submit": {"ok": 1, "truncatedBody": 1},
            "getList": {"htmlPage": 1},
            "getDetail": {"redirect": 1},
            "kill": {"slowKill": 1, "clockSkew": 1},
            "admin": {"ok": 2},
        }),
        "{stats}"
    );
    assert_eq!(emu.stats().count(Operation::Kill, "slowKill"), 1);
}
