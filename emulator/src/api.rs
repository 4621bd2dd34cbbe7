//! The emulated gateway and service: signature checks, faults, then the four operations.
//! A proxy in front of the gateway is emulated too, for the faults it causes (HTML pages,
//! redirects).

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::HeaderMap;
use serde_json::{Value, json};

use dataforest_common::Operation;
use dataforest_common::sign::{
    self, HEADER_ACCESS_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, now_millis,
};

use crate::apps::Owner;
use crate::faults::{FaultKind, FaultState};
use crate::request::{parse_id, parse_list, parse_submit};
use crate::store::KillOutcome;
use crate::{EmulatorAccount, Shared};

/// What a handler wants sent.
pub(crate) enum Reply {
    Json(u16, Value),
    Text(u16, String),
    Html(u16, String),
    /// An empty answer pointing elsewhere with `Location`.
    Redirect(u16, String),
    /// The first half of this JSON, as if the answer had been cut on its way.
    TruncatedJson(u16, Value),
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

/// A proxy's page as nginx writes its errors; 200 is a maintenance page as a captive
/// portal or a misrouted load balancer serves it.
fn html_page(status: u16) -> Reply {
    let title = match status {
        502 => "502 Bad Gateway",
        503 => "503 Service Temporarily Unavailable",
        504 => "504 Gateway Time-out",
        _ => {
            return Reply::Html(
                status,
                "<html>\r\n<head><title>Service Maintenance</title></head>\r\n<body>\r\n\
                 <h1>Service Maintenance</h1>\r\n\
                 <p>The service is temporarily unavailable. Please try again later.</p>\r\n\
                 </body>\r\n</html>\r\n"
                    .to_owned(),
            );
        }
    };
    Reply::Html(
        status,
        format!(
            "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n\
             <center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n\
             </body>\r\n</html>\r\n"
        ),
    )
}

/// The gateway's clock, in milliseconds since the epoch: the true time plus the
/// `clockOffsetMs` fault. i128 holds any u64 plus any i64, so this cannot overflow.
fn gateway_now_millis(offset_ms: i64) -> i128 {
    i128::from(now_millis()) + i128::from(offset_ms)
}

/// The `Date` header the gateway sends now (IMF-fixdate), from its possibly offset clock;
/// `None` only for an offset beyond what a date can show, which validation refuses.
pub(crate) fn gateway_date(shared: &Shared) -> Option<String> {
    let offset = jiff::SignedDuration::from_millis(shared.faults().clock_offset_ms);
    let now = jiff::Timestamp::now().checked_add(offset).ok()?;
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&now)
        .ok()
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
    if let Some(answer) = before_the_gateway(&mut shared.faults(), operation) {
        return answer;
    }
    let account = match authenticate(shared, path_and_query, headers) {
        Ok(account) => account,
        Err(answer) => return answer,
    };
    {
        let mut faults = shared.faults();
        if faults.fire(FaultKind::Throttle, operation) {
            return (
                gateway_error(429, "410", "Throttle Limited", None),
                FaultKind::Throttle.outcome(),
            );
        }
        if faults.fire(FaultKind::ErrorBefore, operation) {
            return (
                fault_error(faults.status_of(FaultKind::ErrorBefore)),
                FaultKind::ErrorBefore.outcome(),
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

/// Faults of the network and of a proxy in front of the gateway: they strike whatever
/// the request, signed or not.
fn before_the_gateway(faults: &mut FaultState, operation: Operation) -> Option<Answer> {
    if faults.fire(FaultKind::DropConnection, operation) {
        return Some((Reply::Drop, FaultKind::DropConnection.outcome()));
    }
    if faults.fire(FaultKind::HtmlPage, operation) {
        let page = html_page(faults.status_of(FaultKind::HtmlPage));
        return Some((page, FaultKind::HtmlPage.outcome()));
    }
    if faults.fire(FaultKind::Redirect, operation) {
        let status = faults.status_of(FaultKind::Redirect);
        // Validation requires a location whenever the redirect can fire; without one
        // (set by hand in Rust, unvalidated) the request goes on as if it had not fired.
        if let Some(location) = faults.redirect.location.clone() {
            return Some((
                Reply::Redirect(status, location),
                FaultKind::Redirect.outcome(),
            ));
        }
    }
    None
}

/// As the gateway: every header present, a known key, a timestamp within the allowed
/// skew, and a signature over exactly the path and query received. A refusal comes with
/// its outcome: `clockSkew` when only the injected clock offset refused the timestamp.
fn authenticate<'a>(
    shared: &'a Shared,
    path_and_query: &str,
    headers: &HeaderMap,
) -> Result<&'a EmulatorAccount, Answer> {
    const UNAUTHORIZED: &str = "unauthorized";
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(access_key), Some(signature)) = (
        header(HEADER_TIMESTAMP),
        header(HEADER_ACCESS_KEY),
        header(HEADER_SIGNATURE),
    ) else {
        return Err((
            auth_failed("Authentication information are missing."),
            UNAUTHORIZED,
        ));
    };
    let Some(account) = shared.accounts.get(access_key) else {
        return Err((
            auth_failed("Invalid authentication information."),
            UNAUTHORIZED,
        ));
    };
    let offset = shared.faults().clock_offset_ms;
    let allowed = shared.max_clock_skew.as_millis();
    // Any i128 may come in (i128::MIN included): a distance that overflows is too far.
    let ts = timestamp.parse::<i128>().ok();
    let within = |now: i128| {
        ts.and_then(|ts| now.checked_sub(ts))
            .is_some_and(|distance| distance.unsigned_abs() <= allowed)
    };
    if !within(gateway_now_millis(offset)) {
        let outcome = if offset != 0 && within(gateway_now_millis(0)) {
            "clockSkew"
        } else {
            UNAUTHORIZED
        };
        return Err((
            auth_failed("The request timestamp is invalid or too far from the server time."),
            outcome,
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
        return Err((
            auth_failed("Invalid authentication information."),
            UNAUTHORIZED,
        ));
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
            return (service_error(400, QUOTA), FaultKind::Quota.outcome());
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
        return (Reply::Drop, FaultKind::LostResponse.outcome());
    }
    if faults.fire(FaultKind::ErrorAfter, operation) {
        return (
            fault_error(faults.status_of(FaultKind::ErrorAfter)),
            FaultKind::ErrorAfter.outcome(),
        );
    }
    drop(faults);
    success(shared, operation, answer)
}

/// A 200 answer, unless `truncatedBody` cuts it.
fn success(shared: &Shared, operation: Operation, answer: Value) -> Answer {
    if shared.faults().fire(FaultKind::TruncatedBody, operation) {
        return (
            Reply::TruncatedJson(200, answer),
            FaultKind::TruncatedBody.outcome(),
        );
    }
    (Reply::Json(200, answer), "ok")
}

fn get_detail(shared: &Shared, account: &EmulatorAccount, body: &[u8]) -> Answer {
    let Some(id) = parse_id(body) else {
        return (service_error(400, INVALID), "invalid");
    };
    // Another account's app is as unknown as a missing one: ids must not leak.
    let detail = shared
        .apps()
        .get(&id)
        .filter(|a| a.owner.account_id == account.account_id)
        .map(|app| app.detail_json(Instant::now(), shared.cluster, &shared.base_url));
    match detail {
        Some(detail) => success(shared, Operation::GetDetail, detail),
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
    success(
        shared,
        Operation::GetList,
        json!({"success": true, "message": "success", "contents": contents}),
    )
}

/// Killing an app that already ended, or whose slow kill is still on its way, answers
/// success and changes nothing.
fn kill(shared: &Shared, account: &EmulatorAccount, body: &[u8]) -> Answer {
    let Some(id) = parse_id(body) else {
        return (service_error(400, INVALID), "invalid");
    };
    let mut slow = false;
    // Takes the faults lock inside the apps lock; nothing takes them the other way round.
    let outcome = shared.apps().kill(&id, &account.account_id, || {
        let mut faults = shared.faults();
        if !faults.fire(FaultKind::SlowKill, Operation::Kill) {
            return Duration::ZERO;
        }
        slow = true;
        Duration::from_millis(faults.slow_kill.delay_ms.unwrap_or_default())
    });
    let answer = json!({"success": true, "message": "success", "id": id});
    match outcome {
        KillOutcome::Killed => match after_change(shared, Operation::Kill, answer) {
            // A fault after the change is what the caller sees, so it names the outcome.
            (reply, "ok") if slow => (reply, FaultKind::SlowKill.outcome()),
            answer => answer,
        },
        KillOutcome::AlreadyKilling | KillOutcome::AlreadyEnded => (Reply::Json(200, answer), "ok"),
        KillOutcome::NotFound => (service_error(404, "no such element"), "notFound"),
    }
}
