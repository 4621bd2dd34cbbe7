//! The emulator's own behaviour, with hand-made requests: the gateway's checks, the
//! service's validation and answers, account isolation, admin endpoints and bounds.

mod support;

use dataforest_common::Operation;
use dataforest_common::sign::now_millis;
use dataforest_emulator::{Emulator, Fault, Faults, Stats, Timeline};
use futures::StreamExt as _;
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_request_signed_by_an_independent_hmac_is_accepted() {
    let emu = emulator(FOREVER).await;
    let (status, body) = Raw::new(&emu).post(SUBMIT, &submit_body()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["finishedAt"], json!("1970-01-01T09:00:00+09:00"));
}

#[tokio::test]
async fn a_request_without_the_signature_headers_gets_the_gateway_401() {
    let emu = emulator(FOREVER).await;
    // Through Raw's client: it installs the crypto provider the workspace's reqwest needs.
    let (status, body) = read(
        Raw::new(&emu)
            .http
            .post(format!("{}{SUBMIT}", emu.url()))
            .json(&submit_body()),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body, auth_failed("Authentication information are missing."));
    assert_eq!(emu.stats().count(Operation::Submit, "unauthorized"), 1);
}

#[tokio::test]
async fn an_unknown_key_a_wrong_secret_or_another_path_signed_is_refused() {
    let emu = emulator(FOREVER).await;
    let raw = Raw::new(&emu);
    let now = now_millis();
    let (status, body) = raw
        .post_signed(DETAIL, &json!({"id": "x"}), now, "AKUNKNOWN", SK1)
        .await;
    assert_eq!(
        (status, body),
        (401, auth_failed("Invalid authentication information."))
    );
    let (status, _) = raw
        .post_signed(DETAIL, &json!({"id": "x"}), now, AK1, SK2)
        .await;
    assert_eq!(status, 401);
    // A signature over getList presented on getDetail.
    let ts = now.to_string();
    let request = raw
        .http
        .post(format!("{}{DETAIL}", raw.base))
        .header("x-ncp-apigw-timestamp", &ts)
        .header("x-ncp-iam-access-key", AK1)
        .header("x-ncp-apigw-signature-v2", signature(LIST, &ts, AK1, SK1))
        .json(&json!({"id": "x"}));
    assert_eq!(read(request).await.0, 401);
}

#[tokio::test]
async fn timestamps_more_than_five_minutes_off_are_refused_and_within_are_accepted() {
    let emu = emulator(FOREVER).await;
    let raw = Raw::new(&emu);
    let minute = 60_000;
    let now = now_millis();
    for (timestamp, expected) in [
        (now - 6 * minute, 401),
        (now + 6 * minute, 401),
        (now - 4 * minute, 404),
        (now + 4 * minute, 404),
    ] {
        let (status, _) = raw
            .post_signed(DETAIL, &json!({"id": "nope"}), timestamp, AK1, SK1)
            .await;
        assert_eq!(
            status,
            expected,
            "offset {} ms",
            timestamp as i64 - now as i64
        );
    }
}

#[tokio::test]
async fn each_missing_required_field_gets_400_invalid_request_parameters() {
    let emu = emulator(FOREVER).await;
    let raw = Raw::new(&emu);
    for field in [
        "aiWorkspaceId",
        "namePrefix",
        "queueName",
        "data",
        "docker",
        "resource",
    ] {
        let mut body = submit_body();
        body.as_object_mut().unwrap().remove(field);
        let (status, answer) = raw.post(SUBMIT, &body).await;
        assert_eq!(
            (status, answer),
            (
                400,
                json!({"success": false, "message": "invalid request parameters"})
            ),
            "{field}"
        );
    }
    assert!(emu.apps().is_empty());
    assert_eq!(emu.stats().count(Operation::Submit, "invalid"), 6);
}

#[tokio::test]
async fn documented_limits_are_enforced_at_their_bounds() {
    let emu = emulator(FOREVER).await;
    let raw = Raw::new(&emu);
    let cases = [
        ("/namePrefix", json!("a"), 400),
        ("/namePrefix", json!("ab"), 200),
        ("/namePrefix", json!("abcdefgh"), 200),
        ("/namePrefix", json!("abcdefghi"), 400),
        ("/aiWorkspaceId", json!("x".repeat(22)), 200),
        ("/aiWorkspaceId", json!("x".repeat(23)), 400),
        ("/resource/gpuCount", json!(0), 400),
        ("/resource/gpuCount", json!(8), 200),
        ("/resource/gpuCount", json!(9), 400),
        ("/docker/command", json!(""), 400),
    ];
    for (pointer, value, expected) in cases {
        let mut body = submit_body();
        *body.pointer_mut(pointer).unwrap() = value.clone();
        assert_eq!(
            raw.post(SUBMIT, &body).await.0,
            expected,
            "{pointer} = {value}"
        );
    }
    let (status, _) = raw.post(DETAIL, &json!({"id": "x".repeat(23)})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_unknown_api_path_gets_the_gateway_404() {
    let emu = emulator(FOREVER).await;
    let (status, body) = Raw::new(&emu)
        .post("/api/v2/aiapps/delete", &json!({}))
        .await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"error": {"errorCode": "300", "message": "Not Found Exception"}})
        )
    );
}

#[tokio::test]
async fn another_accounts_app_is_invisible_to_detail_kill_and_list() {
    let emu = emulator(FOREVER).await;
    let raw = Raw::new(&emu);
    let (_, created) = raw.post(SUBMIT, &submit_body()).await;
    let id = created["id"].clone();
    let now = now_millis();
    let (status, body) = raw
        .post_signed(DETAIL, &json!({"id": id}), now, AK2, SK2)
        .await;
    assert_eq!(
        (status, body["message"].clone()),
        (404, json!("no such element"))
    );
    assert_eq!(
        raw.post_signed(KILL, &json!({"id": id}), now, AK2, SK2)
            .await
            .0,
        404
    );
    let (status, body) = raw
        .post_signed(
            LIST,
            &json!({"search": {"accountId": ACCOUNT2}}),
            now,
            AK2,
            SK2,
        )
        .await;
    assert_eq!((status, body["contents"].clone()), (200, json!([])));
    let (status, body) = raw
        .post_signed(
            LIST,
            &json!({"search": {"accountId": ACCOUNT1}}),
            now,
            AK2,
            SK2,
        )
        .await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"success": false, "message": "not allowed to access"})
        )
    );
    assert_eq!(
        emu.apps()[0].state,
        "ACCEPTED",
        "the other account's kill changed nothing"
    );
}

#[tokio::test]
async fn with_a_zero_timeline_an_app_has_finished_by_its_first_read_with_a_readable_log() {
    let emu = emulator(Timeline::ZERO).await;
    let raw = Raw::new(&emu);
    let (_, created) = raw.post(SUBMIT, &submit_body()).await;
    assert_eq!(
        created["state"],
        json!("ACCEPTED"),
        "submit always answers ACCEPTED"
    );
    let (status, detail) = raw.post(DETAIL, &json!({"id": created["id"]})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (detail["state"].as_str(), detail["finalStatus"].as_str()),
        (Some("FINISHED"), Some("SUCCEEDED"))
    );
    assert_ne!(detail["finishedAt"], json!("1970-01-01T09:00:00+09:00"));
    let container = detail["containers"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    for field in [
        "component",
        "containerId",
        "cpuCount",
        "createdAt",
        "dockerImage",
        "logUrl",
        "memoryMb",
        "status",
    ] {
        assert!(
            !container[field].is_null(),
            "container.{field} missing: {container}"
        );
    }
    let log = reqwest::get(container["logUrl"].as_str().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(log.contains("python train.py"), "{log}");
}

#[tokio::test]
async fn killing_an_ended_app_succeeds_and_leaves_it_as_it_ended() {
    let emu = emulator(Timeline::ZERO).await;
    let raw = Raw::new(&emu);
    let (_, created) = raw.post(SUBMIT, &submit_body()).await;
    let (status, body) = raw.post(KILL, &json!({"id": created["id"]})).await;
    assert_eq!((status, body["success"].clone()), (200, json!(true)));
    let apps = emu.apps();
    assert_eq!(
        (apps[0].state.as_str(), apps[0].killed),
        ("FINISHED", false)
    );
}

#[tokio::test]
async fn stats_count_every_request_by_operation_and_outcome() {
    let emu = emulator(FOREVER).await;
    let raw = Raw::new(&emu);
    raw.post(SUBMIT, &submit_body()).await;
    raw.post(SUBMIT, &json!({})).await;
    raw.post(DETAIL, &json!({"id": "none"})).await;
    raw.post_signed(
        LIST,
        &json!({"search": {"accountId": ACCOUNT1}}),
        0,
        AK1,
        SK1,
    )
    .await;
    let stats = emu.stats();
    assert_eq!(stats.count(Operation::Submit, "ok"), 1);
    assert_eq!(stats.count(Operation::Submit, "invalid"), 1);
    assert_eq!(stats.count(Operation::GetDetail, "notFound"), 1);
    assert_eq!(stats.count(Operation::GetList, "unauthorized"), 1);
    assert_eq!((stats.apps_created, stats.apps_held), (1, 1));
    let (_, over_http) = raw.admin(reqwest::Method::GET, "stats", None).await;
    assert_eq!(over_http["requests"]["submit"]["invalid"], json!(1));
}

#[tokio::test]
async fn faults_can_be_read_and_replaced_through_the_admin_endpoint() {
    let emu = emulator(FOREVER).await;
    let raw = Raw::new(&emu);
    let set = json!({"lostResponse": {"next": 1, "operations": ["submit"]}, "latencyMs": 1});
    let (status, answer) = raw.admin(reqwest::Method::POST, "faults", Some(set)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        emu.faults().lost_response,
        Fault::next(1).on(&[Operation::Submit])
    );
    let (_, read_back) = raw.admin(reqwest::Method::GET, "faults", None).await;
    assert_eq!(read_back, answer);

    let refused = raw
        .admin(
            reqwest::Method::POST,
            "faults",
            Some(json!({"throttle": {"probability": 3}})),
        )
        .await;
    assert_eq!(refused.0, 400);
    assert!(
        refused.1["error"]
            .as_str()
            .unwrap()
            .contains("throttle.probability")
    );
    let refused = raw
        .admin(reqwest::Method::POST, "faults", Some(json!({"typo": {}})))
        .await;
    assert_eq!(refused.0, 400);
    assert_eq!(
        emu.faults().latency_ms,
        1,
        "a refused update changes nothing"
    );

    // The armed lost response: the connection closes without a byte of answer.
    let sent = raw.http.post(format!("{}{SUBMIT}", raw.base));
    let ts = now_millis().to_string();
    let outcome = sent
        .header("x-ncp-apigw-timestamp", &ts)
        .header("x-ncp-iam-access-key", AK1)
        .header("x-ncp-apigw-signature-v2", signature(SUBMIT, &ts, AK1, SK1))
        .json(&submit_body())
        .send()
        .await;
    assert!(outcome.is_err(), "{outcome:?}");
    let (_, apps) = raw.admin(reqwest::Method::GET, "apps", None).await;
    assert_eq!(apps.as_array().unwrap().len(), 1);
    assert_eq!(raw.admin(reqwest::Method::GET, "health", None).await.0, 200);
    assert_eq!(
        raw.admin(reqwest::Method::GET, "nothing-here", None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn memory_is_bounded_by_the_count_of_kept_apps() {
    let mut config = config(Timeline::ZERO);
    config.retain_apps = 50;
    let emu = Emulator::start(config).await.unwrap();
    let raw = Raw::new(&emu);
    for _ in 0..200 {
        assert_eq!(raw.post(SUBMIT, &submit_body()).await.0, 200);
    }
    let stats = emu.stats();
    assert_eq!(
        (stats.apps_created, stats.apps_held, stats.apps_evicted),
        (200, 50, 150)
    );
    assert_eq!(emu.apps().len(), 50);
}

#[tokio::test]
async fn live_apps_are_never_evicted_to_make_room() {
    let mut config = config(FOREVER);
    config.retain_apps = 5;
    let emu = Emulator::start(config).await.unwrap();
    let raw = Raw::new(&emu);
    for _ in 0..20 {
        assert_eq!(raw.post(SUBMIT, &submit_body()).await.0, 200);
    }
    assert_eq!(emu.stats().apps_held, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_submits_all_succeed_and_are_all_counted() {
    let emu = emulator(Timeline::ZERO).await;
    let raw = Raw::new(&emu);
    let body = submit_body();
    let total = futures::stream::iter(0..2_000)
        .map(|_| async { usize::from(raw.post(SUBMIT, &body).await.0 == 200) })
        .buffer_unordered(32)
        .fold(0, |sum, ok| async move { sum + ok })
        .await;
    assert_eq!(total, 2_000);
    let stats: Stats = emu.stats();
    assert_eq!(stats.count(Operation::Submit, "ok"), 2_000);
    assert_eq!(stats.total(Operation::Submit), 2_000);
    assert_eq!(stats.apps_created, 2_000);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let emu = emulator(FOREVER).await;
    let addr = emu.addr();
    emu.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn the_emulator_refuses_to_start_without_credentials() {
    let e = Emulator::start(Default::default()).await.err().unwrap();
    assert!(e.to_string().starts_with("no credentials"));
}

/// The `dataforest-emulator` binary, killed when the test ends however it ends.
#[tokio::test]
async fn the_emulator_binary_serves_on_the_port_it_prints() {
    let (guard, url) = spawn_binary(&["--accepted-ms", "0", "--running-ms", "0"]).await;
    let raw = Raw::at(&url);
    let (status, created) = raw.post(SUBMIT, &submit_body()).await;
    assert_eq!(status, 200, "{created}");
    let (_, detail) = raw.post(DETAIL, &json!({"id": created["id"]})).await;
    assert_eq!(detail["state"], json!("FINISHED"), "{detail}");
    drop(guard);
}

#[tokio::test]
async fn the_emulator_binary_exits_2_without_credentials() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dataforest-emulator"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("DATAFOREST_EMULATOR_CREDENTIALS")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no credentials"));
}

#[tokio::test]
async fn a_throttle_answer_has_the_gateway_shape() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        throttle: Fault::next(1),
        ..Faults::default()
    })
    .unwrap();
    let (status, body) = Raw::new(&emu).post(DETAIL, &json!({"id": "x"})).await;
    assert_eq!(
        (status, body),
        (
            429,
            json!({"error": {"errorCode": "410", "message": "Throttle Limited"}})
        )
    );
}
