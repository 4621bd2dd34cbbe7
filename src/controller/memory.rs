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
