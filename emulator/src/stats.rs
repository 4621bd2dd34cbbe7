//! What the emulator received, per operation and outcome, so tests can assert on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;

use dataforest_common::Operation;

use crate::Shared;

/// Request counts, keyed by operation (`submit`, ..., `admin`, `unknown`) then outcome.
#[derive(Default)]
pub(crate) struct Counters(Mutex<HashMap<(&'static str, &'static str), u64>>);

impl Counters {
    pub fn count(&self, operation: &'static str, outcome: &'static str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((operation, outcome)).or_default() += 1;
    }

    fn snapshot(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((op, outcome), n) in map.iter() {
            out.entry((*op).to_owned())
                .or_default()
                .insert((*outcome).to_owned(), *n);
        }
        out
    }
}

/// A snapshot of the emulator's counters (`GET /_emulator/stats`).
///
/// Outcomes: `ok`, `unauthorized`, `invalid`, `forbidden`, `notFound`, `tooLarge`,
/// and for injected faults `throttled`, `errorBefore`, `dropped`, `htmlPage`, `redirect`,
/// `clockSkew`, `quota`, `slowKill`, `errorAfter`, `lostResponse`, `truncatedBody`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// Apps created since start, evicted ones included.
    pub apps_created: u64,
    /// Apps held now.
    pub apps_held: usize,
    /// Ended apps forgotten to keep memory bounded.
    pub apps_evicted: u64,
}

impl Stats {
    /// Requests of `operation` that ended with `outcome`.
    pub fn count(&self, operation: Operation, outcome: &str) -> u64 {
        self.requests
            .get(operation.as_str())
            .and_then(|m| m.get(outcome))
            .copied()
            .unwrap_or(0)
    }

    /// Requests of `operation`, whatever their outcome.
    pub fn total(&self, operation: Operation) -> u64 {
        self.requests
            .get(operation.as_str())
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }
}

pub(crate) fn snapshot(shared: &Shared) -> Stats {
    let (apps_created, apps_held, apps_evicted) = {
        let apps = shared.apps();
        (apps.created(), apps.len(), apps.evicted())
    };
    Stats {
        requests: shared.counters.snapshot(),
        apps_created,
        apps_held,
        apps_evicted,
    }
}
