//! The emulated gateway and service: signature checks, faults, then the four operations.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::HeaderMap;
use serde_json::{Value, json};

use dataforest_common::Operation;
use dataforest_common::sign::{
    self, HEADER_ACCESS_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, now_millis,
};

use crate::apps::Owner;
use crate::faults::FaultKind;
use crate::request::{parse_id, parse_list, parse_submit};
use crate::store::KillOutcome;
use crate::{EmulatorAccount, Shared};

/// What a handler wants sent.
pub(crate) enum Reply {
    Json(u16, Value),
    Text(u16, String),
    /// Close the connection without an answer.
    Drop,
}

/// A reply and the outcome it is counted under.
type Answer = (Reply, &'static str);

const INVALID: &str = "invalid request parameters";
const QUOTA: &str = "exceeded limit on resource quota";

pub(crate) fn gateway_error(
    status: u16,
    code: &str,
    message: &str,
    details: Option<&str>,
) -> Reply {
    let mut error = json!({"errorCode": code, "message": message});
    if let Some(details) = details {
        error["details"] = json!(details);
    }
    Reply::Json(status, json!({ "error": error }))
}

fn service_error(status: u16, message: &str) -> Reply {
    Reply::Json(status, json!({"success": false, "message": message}))
}

fn auth_failed(details: &str) -> Reply {
    gateway_error(401, "200", "Authentication Failed", Some(details))
}

/// The error answer of an `errorBefore`/`errorAfter` fault with this status.
fn fault_error(status: u16) -> Reply {
    match status {
        503 => gateway_error(503, "500", "Endpoint Error", None),
        504 => gateway_error(504, "510", "Endpoint Timeout", None),
        _ => service_error(500, "unexpected error"),
    }
}

pub(crate) async fn handle(
    shared: &Shared,
    operation: Operation,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Answer {
    let latency = shared.faults().latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if shared.faults().fire(FaultKind::DropConnection, operation) {
        return (Reply::Drop, "dropped");
    }
    let account = match authenticate(shared, path_and_query, headers) {
        Ok(account) => account,
        Err(reply) => return (reply, "unauthorized"),
    };
    {
        let mut faults = shared.faults();
        if faults.fire(FaultKind::Throttle, operation) {
            return (
                gateway_error(429, "410", "Throttle Limited", None),
                "throttled",
            );
        }
        if faults.fire(FaultKind::ErrorBefore, operation) {
            return (
                fault_error(faults.status_of(FaultKind::ErrorBefore)),
                "errorBefore",
            );
        }
    }
    match operation {
        Operation::Submit => submit(shared, account, body),
        Operation::GetDetail => get_detail(shared, account, body),
        Operation::GetList => get_list(shared, account, body),
        Operation::Kill => kill(shared, account, body),
    }
}

/// As the gateway: every header present, a known key, a timestamp within the allowed
/// skew, and a signature over exactly the path and query received.
fn authenticate<'a>(
    shared: &'a Shared,
    path_and_query: &str,
    headers: &HeaderMap,
) -> Result<&'a EmulatorAccount, Reply> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(access_key), Some(signature)) = (
        header(HEADER_TIMESTAMP),
        header(HEADER_ACCESS_KEY),
        header(HEADER_SIGNATURE),
    ) else {
        return Err(auth_failed("Authentication information are missing."));
    };
    let Some(account) = shared.accounts.get(access_key) else {
        return Err(auth_failed("Invalid authentication information."));
    };
    let skew_ok = timestamp.parse::<i128>().is_ok_and(|ts| {
        (now_millis() as i128 - ts).unsigned_abs() <= shared.max_clock_skew.as_millis()
    });
    if !skew_ok {
        return Err(auth_failed(
            "The request timestamp is invalid or too far from the server time.",
        ));
    }
    if !sign::verify(
        "POST",
        path_and_query,
        timestamp,
        access_key,
        &account.secret_key,
        signature,
    ) {
        return Err(auth_failed("Invalid authentication information."));
    }
    Ok(account)
}

fn submit(shared: &Shared, account: &EmulatorAccount, body: &[u8]) -> Answer {
    let request = match parse_submit(body) {
        Ok(request) => request,
        Err(reason) => {
            tracing::info!(%reason, "submit refused");
            return (service_error(400, INVALID), "invalid");
        }
    };
    let listing_lag = {
        let mut faults = shared.faults();
        if faults.fire(FaultKind::Quota, Operation::Submit) {
            return (service_error(400, QUOTA), "quota");
        }
        Duration::from_millis(faults.listing_lag_ms)
    };
    let owner = Owner {
        account_id: account.account_id.clone(),
        account_name: account.account_name.clone(),
    };
    let answer = {
        let mut apps = shared.apps();
        let app = apps.create(
            owner,
            request,
            (shared.timeline, shared.outcome),
            listing_lag,
        );
        tracing::debug!(id = %app.id, name = %app.name, "app created");
        app.submit_json()
    };
    after_change(shared, Operation::Submit, answer)
}

/// Faults that strike once the change is made: the caller cannot tell it happened.
fn after_change(shared: &Shared, operation: Operation, answer: Value) -> Answer {
    let mut faults = shared.faults();
    if faults.fire(FaultKind::LostResponse, operation) {
        return (Reply::Drop, "lostResponse");
    }
    if faults.fire(FaultKind::ErrorAfter, operation) {
        return (
            fault_error(faults.status_of(FaultKind::ErrorAfter)),
            "errorAfter",
        );
    }
    (Reply::Json(200, answer), "ok")
}

fn get_detail(shared: &Shared, account: &EmulatorAccount, body: &[u8]) -> Answer {
    let Some(id) = parse_id(body) else {
        return (service_error(400, INVALID), "invalid");
    };
    let apps = shared.apps();
    // Another account's app is as unknown as a missing one: ids must not leak.
    match apps
        .get(&id)
        .filter(|a| a.owner.account_id == account.account_id)
    {
        Some(app) => (
            Reply::Json(
                200,
                app.detail_json(Instant::now(), shared.cluster, &shared.base_url),
            ),
            "ok",
        ),
        None => (service_error(404, "no such element"), "notFound"),
    }
}

fn get_list(shared: &Shared, account: &EmulatorAccount, body: &[u8]) -> Answer {
    let Some(account_id) = parse_list(body) else {
        return (service_error(400, INVALID), "invalid");
    };
    if account_id != account.account_id {
        return (service_error(403, "not allowed to access"), "forbidden");
    }
    let now = Instant::now();
    let contents: Vec<Value> = {
        let apps = shared.apps();
        apps.listed(&account.account_id, now)
            .map(|a| a.list_item_json(now, shared.cluster))
            .collect()
    };
    (
        Reply::Json(
            200,
            json!({"success": true, "message": "success", "contents": contents}),
        ),
        "ok",
    )
}

/// Killing an app that already ended answers success and changes nothing.
fn kill(shared: &Shared, account: &EmulatorAccount, body: &[u8]) -> Answer {
    let Some(id) = parse_id(body) else {
        return (service_error(400, INVALID), "invalid");
    };
    let outcome = shared.apps().kill(&id, &account.account_id);
    let answer = json!({"success": true, "message": "success", "id": id});
    match outcome {
        KillOutcome::Killed => after_change(shared, Operation::Kill, answer),
        KillOutcome::AlreadyEnded => (Reply::Json(200, answer), "ok"),
        KillOutcome::NotFound => (service_error(404, "no such element"), "notFound"),
    }
}
