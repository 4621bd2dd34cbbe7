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
    /// 429 gateway throttle (`errorCode` "410", "Throttle Limited"); nothing happens.
    pub throttle: Fault,
    /// An error answer before anything happens: 500 `unexpected error` (default status),
    /// 503 gateway Endpoint Error or 504 gateway Endpoint Timeout.
    pub error_before: Fault,
    /// The connection is closed without an answer before anything happens.
    pub drop_connection: Fault,
    /// submit: 400 `exceeded limit on resource quota`; nothing is created.
    pub quota: Fault,
    /// submit and kill: the change is made, then an error answer (status as `errorBefore`).
    pub error_after: Fault,
    /// submit and kill: the change is made, then the connection is closed without an
    /// answer: the case that makes duplicate jobs.
    pub lost_response: Fault,
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
    /// HTTP status for `errorBefore`/`errorAfter`: 500, 503 or 504.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// The kinds of [`Faults`], for matching and for stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    Throttle,
    ErrorBefore,
    DropConnection,
    Quota,
    ErrorAfter,
    LostResponse,
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
}

impl Faults {
    pub fn validate(&self) -> Result<(), InvalidFaults> {
        for (name, fault) in self.named() {
            if !(0.0..=1.0).contains(&fault.probability) {
                return Err(InvalidFaults(format!(
                    "{name}.probability must be 0.0 to 1.0, got {}",
                    fault.probability
                )));
            }
            if let Some(status) = fault.status {
                let with_status = matches!(name, "errorBefore" | "errorAfter");
                if !with_status || !matches!(status, 500 | 503 | 504) {
                    return Err(InvalidFaults(format!(
                        "{name}.status must be 500, 503 or 504 (errors only), got {status}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn named(&self) -> [(&'static str, &Fault); 6] {
        [
            ("throttle", &self.throttle),
            ("errorBefore", &self.error_before),
            ("dropConnection", &self.drop_connection),
            ("quota", &self.quota),
            ("errorAfter", &self.error_after),
            ("lostResponse", &self.lost_response),
        ]
    }

    fn get_mut(&mut self, kind: FaultKind) -> &mut Fault {
        match kind {
            FaultKind::Throttle => &mut self.throttle,
            FaultKind::ErrorBefore => &mut self.error_before,
            FaultKind::DropConnection => &mut self.drop_connection,
            FaultKind::Quota => &mut self.quota,
            FaultKind::ErrorAfter => &mut self.error_after,
            FaultKind::LostResponse => &mut self.lost_response,
        }
    }

    /// Whether `kind` fires on this request of `operation` (and counts it down if so).
    pub fn fire(&mut self, kind: FaultKind, operation: Operation) -> bool {
        let fault = self.get_mut(kind);
        // No random draw when nothing can fire: the common case under load.
        if fault.next == 0 && fault.probability <= 0.0 {
            return false;
        }
        fault.fire(operation, fastrand::f64())
    }

    /// Status of an error fault of `kind`.
    pub fn status_of(&mut self, kind: FaultKind) -> u16 {
        self.get_mut(kind).status.unwrap_or(500)
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
        assert_eq!(Faults::default().validate(), Ok(()));
    }
}
