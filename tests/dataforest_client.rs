//! The Data Forest client against the in-process emulator over real HTTP: every documented
//! success and error case, and the faults that make submits ambiguous.

mod support;

use std::sync::Arc;
use std::time::Duration;

use dataforest_emulator::apps::{ACCEPTED_MS_ENV, RUNNING_MS_ENV};
use dataforest_emulator::{Fault, Faults, OUTCOME_ENV, Timeline};
use dataforest_operator::dataforest::error::{ResponseMeta, decode_response};
use dataforest_operator::dataforest::sign::now_millis;
use dataforest_operator::dataforest::types::IdRequest;
use dataforest_operator::dataforest::{
    ApiError, AppDetail, ClientConfig, Credentials, DataForestApi, DataForestClient, Operation,
    RetryPolicy, TransportKind,
};
use support::*;

/// Env of an app that is RUNNING at once and for an hour.
const RUNNING_NOW: [(&str, &str); 2] = [(ACCEPTED_MS_ENV, "0"), (RUNNING_MS_ENV, "3600000")];

#[tokio::test]
async fn a_submit_answers_an_accepted_app_with_a_22_character_id_and_a_name_from_the_prefix() {
    let emu = emulator(FOREVER).await;
    let app = client(&emu).submit(&request("trainer")).await.unwrap();
    let id = app.id.clone().unwrap();
    assert_eq!(id.len(), 22);
    assert!(app.name.as_deref().unwrap().starts_with("trainer-"));
    assert_eq!(app.state.as_deref(), Some("ACCEPTED"));
    assert_eq!(app.final_status.as_deref(), Some("UNDEFINED"));
    assert_eq!(
        app.finished_at, None,
        "an epoch finishedAt means not finished"
    );
    assert!(app.started_at.is_some());
    assert_eq!(emu.apps().len(), 1);
    assert_eq!(emu.apps()[0].id, id);
}

#[tokio::test]
async fn get_detail_follows_an_app_from_accepted_through_running_to_finished() {
    let timeline = Timeline {
        accepted: Duration::from_millis(150),
        running: Duration::from_millis(150),
    };
    let emu = emulator(timeline).await;
    let c = client(&emu);
    let id = c.submit(&request("life")).await.unwrap().id.unwrap();
    let order = ["ACCEPTED", "RUNNING", "FINISHED"];
    let mut seen = vec!["ACCEPTED"];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let detail: AppDetail = loop {
        let d = c.get_detail(&id).await.unwrap();
        let state = *order
            .iter()
            .find(|s| Some(**s) == d.state.as_deref())
            .expect("a known state");
        if seen.last() != Some(&state) {
            seen.push(state);
        }
        if d.is_terminal() {
            break d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished in time: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let positions: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "states went backwards: {seen:?}"
    );
    assert_eq!(detail.final_status.as_deref(), Some("SUCCEEDED"));
    assert!(detail.finished_at.unwrap() > detail.started_at.unwrap());
    assert!(detail.elapsed_millis.unwrap() >= 300);
    assert!(detail.app_id.unwrap().starts_with("application_"));
    let container = detail
        .containers
        .values()
        .next()
        .expect("a container once running");
    assert_eq!(container.status.as_deref(), Some("COMPLETE"));
    assert!(
        container
            .log_url
            .as_deref()
            .unwrap()
            .starts_with(&emu.url())
    );
}

#[tokio::test]
async fn a_running_app_reports_running_with_a_running_container() {
    let emu = emulator(FOREVER).await;
    let c = client(&emu);
    let id = c
        .submit(&request_with_env("run", &RUNNING_NOW))
        .await
        .unwrap()
        .id
        .unwrap();
    let d = c.get_detail(&id).await.unwrap();
    assert_eq!(
        (d.state.as_deref(), d.final_status.as_deref()),
        (Some("RUNNING"), Some("UNDEFINED"))
    );
    assert_eq!(d.finished_at, None);
    assert_eq!(
        d.containers.values().next().unwrap().status.as_deref(),
        Some("RUNNING")
    );
}

#[tokio::test]
async fn an_app_whose_env_asks_for_failure_ends_failed() {
    let emu = emulator(Timeline::ZERO).await;
    let c = client(&emu);
    let id = c
        .submit(&request_with_env("fail", &[(OUTCOME_ENV, "FAILED")]))
        .await
        .unwrap()
        .id
        .unwrap();
    let d = c.get_detail(&id).await.unwrap();
    assert!(d.is_terminal());
    assert_eq!(d.final_status.as_deref(), Some("FAILED"));
}

#[tokio::test]
async fn get_list_shows_only_the_callers_account_and_refuses_another_account() {
    let emu = emulator(FOREVER).await;
    let (one, two) = (client(&emu), client_for(&emu, AK2, SK2));
    let mine = [
        one.submit(&request("aa")).await.unwrap().id,
        one.submit(&request("ab")).await.unwrap().id,
    ];
    let theirs = two.submit(&request("ba")).await.unwrap().id;
    let listed: Vec<_> = one
        .list(ACCOUNT1)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(listed, mine);
    assert!(!listed.contains(&theirs));
    assert_eq!(two.list(ACCOUNT2).await.unwrap().len(), 1);
    let refused = one.list(ACCOUNT2).await.unwrap_err();
    assert_eq!(refused.status(), Some(403));
    assert_eq!(refused.reason(), "Unauthorized");
    assert!(!refused.is_retryable());
}

#[tokio::test]
async fn kill_moves_a_live_app_to_killed() {
    let emu = emulator(FOREVER).await;
    let c = client(&emu);
    let id = c
        .submit(&request_with_env("kill", &RUNNING_NOW))
        .await
        .unwrap()
        .id
        .unwrap();
    let killed = c.kill(&id).await.unwrap();
    assert_eq!(
        (killed.success, killed.id.as_deref()),
        (Some(true), Some(id.as_str()))
    );
    let d = c.get_detail(&id).await.unwrap();
    assert_eq!(
        (d.state.as_deref(), d.final_status.as_deref()),
        (Some("KILLED"), Some("KILLED"))
    );
    assert!(d.finished_at.is_some());
    assert!(emu.apps()[0].killed);
}

#[tokio::test]
async fn a_wrong_secret_is_unauthorized_permanent_and_keeps_the_trace_id() {
    let emu = emulator(FOREVER).await;
    let e = client_for(&emu, AK1, "not-the-secret")
        .get_detail("abc")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ApiError::Gateway { status: 401, code, .. } if code == "200"),
        "{e:?}"
    );
    assert_eq!(e.reason(), "Unauthorized");
    assert!(!e.is_retryable() && !e.outcome_unknown());
    assert!(e.trace_id().unwrap().starts_with("emu-"));
    assert!(!e.to_string().contains("not-the-secret"));
    assert_eq!(
        emu.stats().count(Operation::GetDetail, "unauthorized"),
        1,
        "a 401 is not retried"
    );
}

#[tokio::test]
async fn an_unknown_access_key_is_unauthorized() {
    let emu = emulator(FOREVER).await;
    let e = client_for(&emu, "AKUNKNOWN", SK1)
        .submit(&request("x1"))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "Unauthorized");
    assert!(emu.apps().is_empty());
}

#[tokio::test]
async fn a_request_signed_six_minutes_ago_is_refused() {
    let emu = emulator(FOREVER).await;
    let c = client(&emu);
    let stale = now_millis() - 6 * 60 * 1000;
    let prepared = c.prepare(Operation::GetDetail, &IdRequest { id: "abc".into() }, stale);
    let mut builder = reqwest::Client::new().post(&prepared.url);
    for (name, value) in prepared
        .headers
        .iter()
        .filter(|(n, _)| n != "host" && n != "content-length")
    {
        builder = builder.header(name, value);
    }
    let response = builder.body(prepared.body).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    let e = decode_response::<AppDetail>(ResponseMeta::new(status), &body).unwrap_err();
    assert_eq!(e.reason(), "Unauthorized");
    assert_eq!(e.api_message(), Some("Authentication Failed"));
}

#[tokio::test]
async fn an_unknown_id_is_not_found_and_not_retried() {
    let emu = emulator(FOREVER).await;
    let e = client(&emu)
        .get_detail("AAAAAAAAAAAAAAAAAAAAAA")
        .await
        .unwrap_err();
    assert!(e.is_not_found());
    assert_eq!(e.reason(), "NotFound");
    assert_eq!(e.api_message(), Some("no such element"));
    assert_eq!(emu.stats().total(Operation::GetDetail), 1);
}

#[tokio::test]
async fn a_spec_breaking_a_documented_limit_is_an_invalid_spec() {
    let emu = emulator(FOREVER).await;
    let mut bad = request("ok");
    bad.resource.gpu_count = Some(9);
    let e = client(&emu).submit(&bad).await.unwrap_err();
    assert_eq!(e.reason(), "InvalidSpec");
    assert_eq!(e.api_message(), Some("invalid request parameters"));
    assert!(!e.is_retryable() && !e.outcome_unknown());
    assert!(emu.apps().is_empty());
}

#[tokio::test]
async fn throttling_on_reads_is_retried_until_an_answer_comes() {
    let emu = emulator(FOREVER).await;
    let c = client(&emu);
    let id = c.submit(&request("thr")).await.unwrap().id.unwrap();
    emu.set_faults(Faults {
        throttle: Fault::next(2).on(&[Operation::GetDetail]),
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(c.get_detail(&id).await.unwrap().id, Some(id));
    let stats = emu.stats();
    assert_eq!(stats.count(Operation::GetDetail, "throttled"), 2);
    assert_eq!(stats.count(Operation::GetDetail, "ok"), 1);
}

#[tokio::test]
async fn throttling_past_the_retry_budget_surfaces_as_throttled() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        throttle: Fault::probability(1.0),
        ..Faults::default()
    })
    .unwrap();
    let e = client(&emu).list(ACCOUNT1).await.unwrap_err();
    assert_eq!(e.reason(), "Throttled");
    assert!(e.is_retryable() && !e.outcome_unknown());
    assert_eq!(
        emu.stats().count(Operation::GetList, "throttled"),
        4,
        "max_attempts bounds the retries"
    );
}

#[tokio::test]
async fn submit_is_never_retried_even_when_throttled() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        throttle: Fault::next(1),
        ..Faults::default()
    })
    .unwrap();
    let e = client(&emu).submit(&request("once")).await.unwrap_err();
    assert_eq!(e.reason(), "Throttled");
    assert!(
        !e.outcome_unknown(),
        "a throttled submit never reached the service"
    );
    assert_eq!(emu.stats().total(Operation::Submit), 1);
    assert!(emu.apps().is_empty());
}

#[tokio::test]
async fn a_500_before_creation_on_submit_is_outcome_unknown_and_creates_nothing() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        error_before: Fault::next(1),
        ..Faults::default()
    })
    .unwrap();
    let e = client(&emu).submit(&request("e500")).await.unwrap_err();
    assert!(e.outcome_unknown(), "{e:?}");
    assert_eq!(e.status(), Some(500));
    assert!(emu.apps().is_empty());
    assert_eq!(emu.stats().total(Operation::Submit), 1);
}

#[tokio::test]
async fn a_500_after_creation_is_outcome_unknown_and_leaves_one_app() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        error_after: Fault::next(1),
        ..Faults::default()
    })
    .unwrap();
    let e = client(&emu).submit(&request("after")).await.unwrap_err();
    assert!(e.outcome_unknown());
    assert_eq!(e.reason(), "ApiUnavailable");
    assert_eq!(emu.apps().len(), 1);
}

#[tokio::test]
async fn a_gateway_timeout_after_creation_is_outcome_unknown_and_leaves_one_app() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        error_after: Fault::next(1).with_status(504),
        ..Faults::default()
    })
    .unwrap();
    let e = client(&emu).submit(&request("gw504")).await.unwrap_err();
    assert!(
        matches!(&e, ApiError::Gateway { status: 504, code, .. } if code == "510"),
        "{e:?}"
    );
    assert!(e.outcome_unknown());
    assert_eq!(emu.apps().len(), 1);
}

#[tokio::test]
async fn a_lost_response_leaves_exactly_one_app_and_an_unknown_outcome() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        lost_response: Fault::next(1).on(&[Operation::Submit]),
        ..Faults::default()
    })
    .unwrap();
    let e = client(&emu).submit(&request("lost")).await.unwrap_err();
    assert!(
        matches!(
            e,
            ApiError::Transport {
                kind: TransportKind::ConnectionLost,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.outcome_unknown());
    let apps = emu.apps();
    assert_eq!(
        apps.len(),
        1,
        "exactly one app, and the client did not submit again"
    );
    assert!(apps[0].name.starts_with("lost-"));
    assert_eq!(emu.stats().total(Operation::Submit), 1);
}

#[tokio::test]
async fn quota_exceeded_is_retryable_known_and_creates_nothing() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        quota: Fault::next(1),
        ..Faults::default()
    })
    .unwrap();
    let c = client(&emu);
    let e = c.submit(&request("quota")).await.unwrap_err();
    assert_eq!(e.reason(), "QuotaExceeded");
    assert!(e.is_retryable() && !e.outcome_unknown());
    assert!(emu.apps().is_empty());
    c.submit(&request("quota")).await.unwrap();
    assert_eq!(emu.apps().len(), 1);
}

#[tokio::test]
async fn a_dropped_connection_is_retried_on_reads_and_outcome_unknown_on_submit() {
    let emu = emulator(FOREVER).await;
    let c = client(&emu);
    let id = c.submit(&request("drop")).await.unwrap().id.unwrap();
    emu.set_faults(Faults {
        drop_connection: Fault::next(1),
        ..Faults::default()
    })
    .unwrap();
    assert!(c.get_detail(&id).await.is_ok());
    assert_eq!(emu.stats().count(Operation::GetDetail, "dropped"), 1);

    emu.set_faults(Faults {
        drop_connection: Fault::next(1),
        ..Faults::default()
    })
    .unwrap();
    let e = c.submit(&request("drop")).await.unwrap_err();
    assert!(e.outcome_unknown() && e.is_retryable(), "{e:?}");
    assert_eq!(emu.apps().len(), 1, "the dropped submit created nothing");
}

#[tokio::test]
async fn a_503_endpoint_error_on_kill_is_retried() {
    let emu = emulator(FOREVER).await;
    let c = client(&emu);
    let id = c.submit(&request("k503")).await.unwrap().id.unwrap();
    emu.set_faults(Faults {
        error_before: Fault::next(2).with_status(503),
        ..Faults::default()
    })
    .unwrap();
    c.kill(&id).await.unwrap();
    assert_eq!(emu.stats().count(Operation::Kill, "errorBefore"), 2);
    assert_eq!(emu.apps()[0].state, "KILLED");
}

#[tokio::test]
async fn a_kill_whose_answer_is_lost_is_retried_and_ends_the_app_once() {
    let emu = emulator(FOREVER).await;
    let c = client(&emu);
    let id = c.submit(&request("klost")).await.unwrap().id.unwrap();
    let lost = Fault::next(1).on(&[Operation::Kill]);
    emu.set_faults(Faults {
        lost_response: lost,
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(c.kill(&id).await.unwrap().success, Some(true));
    let stats = emu.stats();
    assert_eq!(
        (
            stats.count(Operation::Kill, "lostResponse"),
            stats.count(Operation::Kill, "ok")
        ),
        (1, 1)
    );
    assert_eq!(emu.apps()[0].state, "KILLED");
}

#[tokio::test]
async fn a_new_app_shows_in_get_list_only_after_the_listing_lag() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        listing_lag_ms: 2_000,
        ..Faults::default()
    })
    .unwrap();
    let c = client(&emu);
    let id = c.submit(&request("lag")).await.unwrap().id;
    assert!(
        c.list(ACCOUNT1).await.unwrap().is_empty(),
        "not listed straight away"
    );
    assert!(
        c.get_detail(id.as_deref().unwrap()).await.is_ok(),
        "but getDetail knows it"
    );
    eventually(Duration::from_secs(5), || async {
        c.list(ACCOUNT1)
            .await
            .unwrap()
            .iter()
            .any(|a| a.id == id)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn no_answer_within_the_timeout_is_an_unknown_outcome() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        latency_ms: 2_000,
        ..Faults::default()
    })
    .unwrap();
    let config = ClientConfig {
        timeout: Duration::from_millis(100),
        ..client_config(&emu.url())
    };
    let c = DataForestClient::new(config, Credentials::new(AK1, SK1)).unwrap();
    let e = c.submit(&request("slow")).await.unwrap_err();
    assert!(matches!(e, ApiError::Timeout { .. }), "{e:?}");
    assert!(e.outcome_unknown());
}

#[tokio::test]
async fn a_refused_connection_is_retryable_and_cannot_have_created_anything() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = ClientConfig {
        retry: RetryPolicy::no_retries(),
        ..client_config(&format!("http://127.0.0.1:{port}"))
    };
    let c = DataForestClient::new(config, Credentials::new(AK1, SK1)).unwrap();
    let e = c.submit(&request("nobody")).await.unwrap_err();
    assert!(
        matches!(
            e,
            ApiError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retryable() && !e.outcome_unknown());
}

#[tokio::test]
async fn an_unresolvable_host_is_retryable_and_cannot_have_created_anything() {
    let config = ClientConfig {
        retry: RetryPolicy::no_retries(),
        ..client_config("http://dataforest.invalid")
    };
    let c = DataForestClient::new(config, Credentials::new(AK1, SK1)).unwrap();
    let e = c.submit(&request("nodns")).await.unwrap_err();
    assert!(
        matches!(
            e,
            ApiError::Transport {
                kind: TransportKind::Dns | TransportKind::Connect,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retryable() && !e.outcome_unknown());
}

#[tokio::test]
async fn the_controller_can_hold_the_client_as_a_trait_object() {
    let emu = emulator(Timeline::ZERO).await;
    let api: Arc<dyn DataForestApi> = Arc::new(client(&emu));
    let id = api.submit(&request("dyn")).await.unwrap().id.unwrap();
    assert!(api.get_detail(&id).await.unwrap().is_terminal());
    assert_eq!(api.list(ACCOUNT1).await.unwrap().len(), 1);
    assert_eq!(
        api.kill(&id).await.unwrap().success,
        Some(true),
        "killing an ended app is a no-op success"
    );
    emu.shutdown().await;
}
