//! What the operator remembers about each AiApp between reconciles, in memory only, in one
//! struct per AiApp keyed by its uid: a re-created AiApp of the same name is another
//! AiApp and inherits nothing. A restart loses it all; what must survive is in status.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use crate::credentials::ResolvedCredentials;
use crate::dataforest::SubmitResponse;

/// What a person can change to wake a parked AiApp.
#[derive(Clone, Debug, PartialEq)]
pub struct Fingerprint {
    pub generation: Option<i64>,
    pub annotations: BTreeMap<String, String>,
    pub secret_version: Option<String>,
}

/// When the next API call for the AiApp may happen.
#[derive(Clone, Debug)]
pub struct Gate {
    /// No API call before this instant...
    pub not_before: Instant,
    /// ...or at all, while parked on a permanent error or a question for a person...
    pub parked: bool,
    /// ...unless the AiApp or its Secret changed since.
    pub fingerprint: Fingerprint,
    /// The last back-off interval, for the next one.
    pub interval: Option<Duration>,
}

/// A submit's answer not yet in status: written before any other step for the AiApp.
#[derive(Clone, Debug)]
pub struct UnwrittenId {
    pub attempt: i32,
    pub response: SubmitResponse,
}

/// Everything remembered about one AiApp.
#[derive(Clone, Debug, Default)]
pub struct AppMemory {
    pub gate: Option<Gate>,
    /// The last credentials that worked, so that deletion can kill after the Secret went.
    pub credentials: Option<Arc<ResolvedCredentials>>,
    /// When getDetail began answering "not found" in a row, for the grace period.
    pub not_found_since: Option<Timestamp>,
    /// When deletion last sent kill, per app id.
    pub kills_sent: HashMap<String, Instant>,
    pub unwritten: Option<UnwrittenId>,
    /// The app whose terminal state with an undefined final status was seen once.
    pub undefined_seen: Option<String>,
    /// resourceVersions this operator's own status writes replaced, the latest last (a
    /// few at most): a cached copy at one of them is older than what the operator wrote.
    pub superseded: Vec<String>,
}

/// How many replaced resourceVersions an AiApp remembers: a reconcile writes at most
/// three in a row (marker, id, and what the first poll found).
const SUPERSEDED_KEPT: usize = 4;

impl AppMemory {
    /// Remembers that a write replaced the AiApp at `read` with the one at `written`.
    /// A write that changed nothing (the same version back) replaced nothing.
    pub fn wrote_over(&mut self, read: &str, written: &str) {
        if read == written || self.superseded.iter().any(|v| v == read) {
            return;
        }
        if self.superseded.len() == SUPERSEDED_KEPT {
            self.superseded.remove(0);
        }
        self.superseded.push(read.to_owned());
    }

    /// Whether a copy at `version` is known to be older than a write of this operator.
    pub fn is_superseded(&self, version: &str) -> bool {
        self.superseded.iter().any(|v| v == version)
    }
}

/// Every AiApp's memory.
#[derive(Default)]
pub struct Memory(Mutex<HashMap<String, AppMemory>>);

impl Memory {
    /// A copy of what is remembered about `uid`.
    pub fn get(&self, uid: &str) -> AppMemory {
        self.lock().get(uid).cloned().unwrap_or_default()
    }

    /// Changes what is remembered about `uid`.
    pub fn update<R>(&self, uid: &str, change: impl FnOnce(&mut AppMemory) -> R) -> R {
        change(self.lock().entry(uid.to_owned()).or_default())
    }

    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Ids answered by submit and not yet in status, with their AiApp's uid: what a
    /// stopping operator tries to write before it goes.
    pub fn unwritten(&self) -> Vec<(String, UnwrittenId)> {
        self.lock()
            .iter()
            .filter_map(|(uid, m)| m.unwritten.clone().map(|u| (uid.clone(), u)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AppMemory>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_at_a_version_the_operator_wrote_over_is_stale() {
        let mut memory = AppMemory::default();
        memory.wrote_over("10", "11");
        memory.wrote_over("11", "12");
        assert!(memory.is_superseded("10"));
        assert!(memory.is_superseded("11"));
        assert!(!memory.is_superseded("12"), "the latest write is not stale");
        assert!(
            !memory.is_superseded("13"),
            "nor a version someone else wrote"
        );
    }

    #[test]
    fn a_write_that_changed_nothing_supersedes_nothing() {
        let mut memory = AppMemory::default();
        memory.wrote_over("10", "10");
        assert!(
            !memory.is_superseded("10"),
            "else a cache already current would be waited on for ever"
        );
    }

    #[test]
    fn only_the_last_few_versions_are_kept() {
        let mut memory = AppMemory::default();
        for v in 0..10 {
            memory.wrote_over(&v.to_string(), &(v + 1).to_string());
        }
        assert_eq!(memory.superseded, ["6", "7", "8", "9"]);
    }
}
