//! Fault injection: what can go wrong, when it fires ("next N requests" or a probability),
//! and on which operations. Set at start and replaced at run time through the admin API.

use serde::{Deserialize, Serialize};

use dataforest_common::Operation;

/// Every fault the emulator can inject; the JSON of `POST /_emulator/faults`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Added before every API answer, in milliseconds.
    pub latency_ms: u64,
    /// A new app shows in getList only this many milliseconds after its creation.
    pub listing_lag_ms: u64,
    /// The gateway's clock runs this many milliseconds ahead of the true time (behind when
    /// negative): the timestamp check and every API answer's `Date` header use it.
    pub clock_offset_ms: i64,
    /// Seeds the draws of the probabilistic faults, so a chaos run can be told apart
    /// from another (the order in which concurrent requests draw still varies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// 429 gateway throttle (`errorCode` "410", "Throttle Limited"); nothing happens.
    pub throttle: Fault,
    /// An error answer before anything happens: 500 `unexpected error` (default status),
    /// 503 gateway Endpoint Error or 504 gateway Endpoint Timeout.
    pub error_before: Fault,
    /// The connection is closed without an answer before anything happens.
    pub drop_connection: Fault,
    /// A proxy's HTML page (status 200 by default, or 502, 503, 504) before anything
    /// happens, the signature check included.
    pub html_page: Fault,
    /// A redirect (status 307 by default, or 301, 302, 303, 308) to `location` before
    /// anything happens, the signature check included.
    pub redirect: Fault,
    /// submit: 400 `exceeded limit on resource quota`; nothing is created.
    pub quota: Fault,
    /// kill of a live app: answered success, but the app stays live `delayMs` longer
    /// before it ends KILLED.
    pub slow_kill: Fault,
    /// submit and kill: the change is made, then an error answer (status as `errorBefore`).
    pub error_after: Fault,
    /// submit and kill: the change is made, then the connection is closed without an
    /// answer: the case that makes duplicate jobs.
    pub lost_response: Fault,
    /// A 200 whose JSON body is cut in half (with a content-length that matches the cut
    /// body); submit and kill make their change first.
    pub truncated_body: Fault,
}

/// When one fault fires.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Fires on the next N matching requests (counted down), before `probability` applies.
    pub next: u32,
    /// Share of matching requests it fires on, 0.0 to 1.0.
    pub probability: f64,
    /// Operations it applies to; empty means all it can apply to.
    pub operations: Vec<Operation>,
    /// HTTP status for `errorBefore`/`errorAfter` (500, 503, 504), `htmlPage` (200,
    /// 502, 503, 504) and `redirect` (301, 302, 303, 307, 308).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `slowKill` only: how long the app stays live after the kill, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// `redirect` only: the absolute http(s) URL of the `Location` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// The kinds of [`Faults`], for matching and for stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    Throttle,
    ErrorBefore,
    DropConnection,
    HtmlPage,
    Redirect,
    Quota,
    SlowKill,
    ErrorAfter,
    LostResponse,
    TruncatedBody,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Throttle,
        FaultKind::ErrorBefore,
        FaultKind::DropConnection,
        FaultKind::HtmlPage,
        FaultKind::Redirect,
        FaultKind::Quota,
        FaultKind::SlowKill,
        FaultKind::ErrorAfter,
        FaultKind::LostResponse,
        FaultKind::TruncatedBody,
    ];

    /// The name in the faults JSON.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Throttle => "throttle",
            FaultKind::ErrorBefore => "errorBefore",
            FaultKind::DropConnection => "dropConnection",
            FaultKind::HtmlPage => "htmlPage",
            FaultKind::Redirect => "redirect",
            FaultKind::Quota => "quota",
            FaultKind::SlowKill => "slowKill",
            FaultKind::ErrorAfter => "errorAfter",
            FaultKind::LostResponse => "lostResponse",
            FaultKind::TruncatedBody => "truncatedBody",
        }
    }

    /// The outcome a request it fired on is counted under in the stats. Two names predate
    /// the rule "outcome = fault name" and stay, since tests and dashboards read them.
    pub fn outcome(self) -> &'static str {
        match self {
            FaultKind::Throttle => "throttled",
            FaultKind::DropConnection => "dropped",
            other => other.name(),
        }
    }

    /// Statuses a fault of this kind may answer with, the default first; empty when its
    /// answer has a fixed status.
    fn statuses(self) -> &'static [u16] {
        match self {
            FaultKind::ErrorBefore | FaultKind::ErrorAfter => &[500, 503, 504],
            FaultKind::HtmlPage => &[200, 502, 503, 504],
            FaultKind::Redirect => &[307, 301, 302, 303, 308],
            _ => &[],
        }
    }
}

/// A fault configuration the emulator cannot honour.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid faults: {0}")]
pub struct InvalidFaults(pub String);

impl Fault {
    /// Fires on the next `n` requests of any operation.
    pub fn next(n: u32) -> Self {
        Self {
            next: n,
            ..Self::default()
        }
    }

    /// Fires on a share of requests.
    pub fn probability(p: f64) -> Self {
        Self {
            probability: p,
            ..Self::default()
        }
    }

    pub fn on(mut self, operations: &[Operation]) -> Self {
        self.operations = operations.to_vec();
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// For `slowKill`: how long a killed app stays live.
    pub fn with_delay_ms(mut self, delay_ms: u64) -> Self {
        self.delay_ms = Some(delay_ms);
        self
    }

    /// For `redirect`: where the `Location` header points.
    pub fn with_location(mut self, location: &str) -> Self {
        self.location = Some(location.to_owned());
        self
    }

    /// Whether it can fire at all; settings of a fault that cannot are not required.
    fn armed(&self) -> bool {
        self.next > 0 || self.probability > 0.0
    }

    fn applies_to(&self, operation: Operation) -> bool {
        self.operations.is_empty() || self.operations.contains(&operation)
    }

    /// Decides and counts down; `roll` is a random number in `[0, 1)`.
    fn fire(&mut self, operation: Operation, roll: f64) -> bool {
        if !self.applies_to(operation) {
            return false;
        }
        if self.next > 0 {
            self.next -= 1;
            return true;
        }
        roll < self.probability
    }

    fn validate(&self, kind: FaultKind) -> Result<(), InvalidFaults> {
        let name = kind.name();
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(InvalidFaults(format!(
                "{name}.probability must be 0.0 to 1.0, got {}",
                self.probability
            )));
        }
        if let Some(status) = self.status {
            let allowed = kind.statuses();
            if allowed.is_empty() {
                return Err(InvalidFaults(format!(
                    "{name}.status is not allowed (only errorBefore, errorAfter, htmlPage and redirect take one), got {status}"
                )));
            }
            if !allowed.contains(&status) {
                let mut sorted = allowed.to_vec();
                sorted.sort_unstable();
                return Err(InvalidFaults(format!(
                    "{name}.status must be {}, got {status}",
                    one_of(&sorted)
                )));
            }
        }
        match (kind, self.delay_ms) {
            (FaultKind::SlowKill, None) if self.armed() => {
                return Err(InvalidFaults(
                    "slowKill.delayMs is required when slowKill can fire".to_owned(),
                ));
            }
            (FaultKind::SlowKill, _) | (_, None) => {}
            (_, Some(_)) => {
                return Err(InvalidFaults(format!(
                    "{name}.delayMs is not allowed (only slowKill takes one)"
                )));
            }
        }
        match (kind, &self.location) {
            (FaultKind::Redirect, None) if self.armed() => Err(InvalidFaults(
                "redirect.location is required when redirect can fire".to_owned(),
            )),
            (FaultKind::Redirect, Some(location)) if !is_absolute_http_url(location) => {
                Err(InvalidFaults(format!(
                    "redirect.location must be an absolute http:// or https:// URL, got {location:?}"
                )))
            }
            (FaultKind::Redirect, _) | (_, None) => Ok(()),
            (_, Some(_)) => Err(InvalidFaults(format!(
                "{name}.location is not allowed (only redirect takes one)"
            ))),
        }
    }
}

/// "500, 503 or 504".
fn one_of(statuses: &[u16]) -> String {
    let texts: Vec<String> = statuses.iter().map(u16::to_string).collect();
    match texts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => texts.concat(),
    }
}

/// An http(s) URL with a host that can also stand as a header value, so that answering
/// with it never fails.
fn is_absolute_http_url(text: &str) -> bool {
    let Ok(uri) = text.parse::<hyper::Uri>() else {
        return false;
    };
    let http = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    http && uri.host().is_some_and(|h| !h.is_empty())
        && hyper::header::HeaderValue::from_str(text).is_ok()
}

/// The largest clock offset accepted: ten years, far past any skew worth testing and well
/// within the years a `Date` header can show.
pub const MAX_CLOCK_OFFSET_MS: i64 = 10 * 365 * 24 * 3600 * 1000;

impl Faults {
    pub fn validate(&self) -> Result<(), InvalidFaults> {
        if self.clock_offset_ms.unsigned_abs() > MAX_CLOCK_OFFSET_MS.unsigned_abs() {
            return Err(InvalidFaults(format!(
                "clockOffsetMs must be within ±{MAX_CLOCK_OFFSET_MS} (ten years), got {}",
                self.clock_offset_ms
            )));
        }
        FaultKind::ALL
            .into_iter()
            .try_for_each(|kind| self.get(kind).validate(kind))
    }

    fn get(&self, kind: FaultKind) -> &Fault {
        match kind {
            FaultKind::Throttle => &self.throttle,
            FaultKind::ErrorBefore => &self.error_before,
            FaultKind::DropConnection => &self.drop_connection,
            FaultKind::HtmlPage => &self.html_page,
            FaultKind::Redirect => &self.redirect,
            FaultKind::Quota => &self.quota,
            FaultKind::SlowKill => &self.slow_kill,
            FaultKind::ErrorAfter => &self.error_after,
            FaultKind::LostResponse => &self.lost_response,
            FaultKind::TruncatedBody => &self.truncated_body,
        }
    }

    fn get_mut(&mut self, kind: FaultKind) -> &mut Fault {
        match kind {
            FaultKind::Throttle => &mut self.throttle,
            FaultKind::ErrorBefore => &mut self.error_before,
            FaultKind::DropConnection => &mut self.drop_connection,
            FaultKind::HtmlPage => &mut self.html_page,
            FaultKind::Redirect => &mut self.redirect,
            FaultKind::Quota => &mut self.quota,
            FaultKind::SlowKill => &mut self.slow_kill,
            FaultKind::ErrorAfter => &mut self.error_after,
            FaultKind::LostResponse => &mut self.lost_response,
            FaultKind::TruncatedBody => &mut self.truncated_body,
        }
    }

    /// Whether `kind` fires on this request of `operation` (and counts it down if so).
    pub fn fire(&mut self, kind: FaultKind, operation: Operation) -> bool {
        let fault = self.get_mut(kind);
        // No random draw when nothing can fire: the common case under load.
        if !fault.armed() {
            return false;
        }
        fault.fire(operation, fastrand::f64())
    }

    /// Status of a fault of `kind` that answers with one of several.
    pub fn status_of(&self, kind: FaultKind) -> u16 {
        let default = kind.statuses().first().copied().unwrap_or(500);
        self.get(kind).status.unwrap_or(default)
    }
}

/// The faults in force and the generator their probabilities draw from: seeded from
/// `seed` at the first draw, and kept when settings with the same seed replace these, so
/// a run goes on with one sequence.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    settings: Faults,
    draws: Option<fastrand::Rng>,
}

impl FaultState {
    pub(crate) fn new(settings: Faults) -> Self {
        Self {
            settings,
            draws: None,
        }
    }

    pub(crate) fn replace(&mut self, settings: Faults) {
        if settings.seed.is_none() || settings.seed != self.settings.seed {
            self.draws = None;
        }
        self.settings = settings;
    }

    /// Whether `kind` fires on this request of `operation` (and counts it down if so).
    pub(crate) fn fire(&mut self, kind: FaultKind, operation: Operation) -> bool {
        let Some(seed) = self.settings.seed else {
            return self.settings.fire(kind, operation);
        };
        let fault = self.settings.get_mut(kind);
        if !fault.armed() {
            return false;
        }
        let roll = self
            .draws
            .get_or_insert_with(|| fastrand::Rng::with_seed(seed))
            .f64();
        fault.fire(operation, roll)
    }
}

impl std::ops::Deref for FaultState {
    type Target = Faults;

    fn deref(&self) -> &Faults {
        &self.settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_next_n_fault_fires_exactly_n_times_on_matching_operations() {
        let mut faults = Faults {
            throttle: Fault::next(2).on(&[Operation::GetDetail]),
            ..Faults::default()
        };
        assert!(!faults.fire(FaultKind::Throttle, Operation::Submit));
        assert!(faults.fire(FaultKind::Throttle, Operation::GetDetail));
        assert!(faults.fire(FaultKind::Throttle, Operation::GetDetail));
        assert!(!faults.fire(FaultKind::Throttle, Operation::GetDetail));
    }

    #[test]
    fn the_same_seed_fires_on_the_same_requests_and_a_replacement_goes_on() {
        let seeded = |seed| Faults {
            seed: Some(seed),
            throttle: Fault::probability(0.5),
            ..Faults::default()
        };
        let fired = |state: &mut FaultState, n| -> Vec<bool> {
            (0..n)
                .map(|_| state.fire(FaultKind::Throttle, Operation::Submit))
                .collect()
        };
        let whole = fired(&mut FaultState::new(seeded(7)), 64);
        assert_eq!(whole, fired(&mut FaultState::new(seeded(7)), 64));
        assert_ne!(whole, fired(&mut FaultState::new(seeded(8)), 64));
        let mut replaced = FaultState::new(seeded(7));
        let mut halves = fired(&mut replaced, 32);
        replaced.replace(seeded(7));
        halves.extend(fired(&mut replaced, 32));
        assert_eq!(halves, whole);
    }

    #[test]
    fn a_probability_of_one_always_fires_and_zero_never() {
        let mut faults = Faults {
            quota: Fault::probability(1.0),
            ..Faults::default()
        };
        assert!((0..100).all(|_| faults.fire(FaultKind::Quota, Operation::Submit)));
        assert!((0..100).all(|_| !faults.fire(FaultKind::Throttle, Operation::Submit)));
    }

    #[test]
    fn the_json_form_uses_camel_case_names_and_rejects_unknown_ones() {
        let faults: Faults = serde_json::from_str(
            r#"{"latencyMs": 5, "lostResponse": {"next": 1, "operations": ["submit"]}, "errorBefore": {"probability": 0.5, "status": 503}}"#,
        )
        .unwrap();
        assert_eq!(faults.latency_ms, 5);
        assert_eq!(
            faults.lost_response,
            Fault::next(1).on(&[Operation::Submit])
        );
        assert_eq!(faults.error_before.status, Some(503));
        assert!(serde_json::from_str::<Faults>(r#"{"lostResponses": {}}"#).is_err());
    }

    #[test]
    fn impossible_settings_are_refused_with_the_field_named() {
        let bad_probability = Faults {
            throttle: Fault::probability(1.5),
            ..Faults::default()
        };
        assert!(
            bad_probability
                .validate()
                .unwrap_err()
                .0
                .starts_with("throttle.probability")
        );
        let bad_status = Faults {
            error_after: Fault::next(1).with_status(418),
            ..Faults::default()
        };
        assert!(
            bad_status
                .validate()
                .unwrap_err()
                .0
                .starts_with("errorAfter.status")
        );
        let status_on_quota = Faults {
            quota: Fault::next(1).with_status(500),
            ..Faults::default()
        };
        assert!(status_on_quota.validate().is_err());
        let far_clock = Faults {
            clock_offset_ms: i64::MIN,
            ..Faults::default()
        };
        assert!(
            far_clock
                .validate()
                .unwrap_err()
                .0
                .starts_with("clockOffsetMs must be within")
        );
        assert_eq!(Faults::default().validate(), Ok(()));
    }
    #[test]
    fn each_kind_takes_only_its_own_statuses_and_the_messages_name_the_field() {
        let with = |kind: FaultKind, status: u16| {
            let mut faults = Faults::default();
            *faults.get_mut(kind) = Fault::next(1)
                .with_status(status)
                .with_location("http://example.test/")
                .with_delay_ms(1);
            // Only the status is under test here: drop the extras the kind refuses.
            let fault = faults.get_mut(kind);
            if kind != FaultKind::Redirect {
                fault.location = None;
            }
            if kind != FaultKind::SlowKill {
                fault.delay_ms = None;
            }
            faults.validate()
        };
        for status in [200, 502, 503, 504] {
            assert_eq!(with(FaultKind::HtmlPage, status), Ok(()), "{status}");
        }
        for status in [301, 302, 303, 307, 308] {
            assert_eq!(with(FaultKind::Redirect, status), Ok(()), "{status}");
        }
        assert_eq!(
            with(FaultKind::HtmlPage, 500).unwrap_err().0,
            "htmlPage.status must be 200, 502, 503 or 504, got 500"
        );
        assert_eq!(
            with(FaultKind::Redirect, 304).unwrap_err().0,
            "redirect.status must be 301, 302, 303, 307 or 308, got 304"
        );
        assert_eq!(
            with(FaultKind::ErrorBefore, 502).unwrap_err().0,
            "errorBefore.status must be 500, 503 or 504, got 502"
        );
        for kind in [
            FaultKind::Throttle,
            FaultKind::SlowKill,
            FaultKind::TruncatedBody,
            FaultKind::LostResponse,
        ] {
            let e = with(kind, 503).unwrap_err().0;
            assert!(
                e.starts_with(&format!("{}.status is not allowed", kind.name())),
                "{e}"
            );
        }
    }

    #[test]
    fn the_default_status_is_the_first_allowed_one() {
        let faults = Faults::default();
        assert_eq!(faults.status_of(FaultKind::ErrorBefore), 500);
        assert_eq!(faults.status_of(FaultKind::HtmlPage), 200);
        assert_eq!(faults.status_of(FaultKind::Redirect), 307);
    }

    #[test]
    fn a_redirect_that_can_fire_needs_an_absolute_http_location() {
        let redirect = |fault: Fault| {
            Faults {
                redirect: fault,
                ..Faults::default()
            }
            .validate()
        };
        assert_eq!(
            redirect(Fault::next(1)).unwrap_err().0,
            "redirect.location is required when redirect can fire"
        );
        assert_eq!(redirect(Fault::default()), Ok(()), "an unarmed redirect");
        for good in [
            "http://127.0.0.1:8081",
            "https://elsewhere.example/api/v2/aiapps/submit?x=1",
            "HTTP://host.example/",
        ] {
            assert_eq!(
                redirect(Fault::next(1).with_location(good)),
                Ok(()),
                "{good}"
            );
        }
        for bad in [
            "",
            "/relative/path",
            "elsewhere.example",
            "ftp://elsewhere.example/",
            "http://",
            "http://host example/",
            "http://host/\r\nx-injected: 1",
        ] {
            let e = redirect(Fault::next(1).with_location(bad)).unwrap_err().0;
            assert!(e.starts_with("redirect.location must be"), "{bad:?}: {e}");
        }
        let e = Faults {
            throttle: Fault::next(1).with_location("http://h/"),
            ..Faults::default()
        }
        .validate()
        .unwrap_err()
        .0;
        assert!(e.starts_with("throttle.location is not allowed"), "{e}");
    }

    #[test]
    fn a_slow_kill_that_can_fire_needs_a_delay_and_no_other_fault_takes_one() {
        let e = Faults {
            slow_kill: Fault::probability(0.5),
            ..Faults::default()
        }
        .validate()
        .unwrap_err()
        .0;
        assert_eq!(e, "slowKill.delayMs is required when slowKill can fire");
        let e = Faults {
            quota: Fault::next(1).with_delay_ms(5),
            ..Faults::default()
        }
        .validate()
        .unwrap_err()
        .0;
        assert!(e.starts_with("quota.delayMs is not allowed"), "{e}");
        let faults: Faults = serde_json::from_str(
            r#"{"slowKill": {"next": 1, "delayMs": 5000}, "clockOffsetMs": -600000,
                "htmlPage": {"probability": 0.1, "status": 502},
                "redirect": {"next": 2, "location": "https://elsewhere.example/"},
                "truncatedBody": {"next": 1, "operations": ["getList"]}}"#,
        )
        .unwrap();
        assert_eq!(faults.validate(), Ok(()));
        assert_eq!(faults.slow_kill, Fault::next(1).with_delay_ms(5000));
        assert_eq!(faults.clock_offset_ms, -600_000);
        let round_trip: Faults =
            serde_json::from_value(serde_json::to_value(&faults).unwrap()).unwrap();
        assert_eq!(round_trip, faults);
    }

    #[test]
    fn outcomes_are_the_fault_names_except_the_two_older_ones() {
        let outcomes: Vec<_> = FaultKind::ALL.iter().map(|k| k.outcome()).collect();
        assert_eq!(
            outcomes,
            [
                "throttled",
                "errorBefore",
                "dropped",
                "htmlPage",
                "redirect",
                "quota",
                "slowKill",
                "errorAfter",
                "lostResponse",
                "truncatedBody",
            ]
        );
    }
}
