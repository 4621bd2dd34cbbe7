//! A faithful Data Forest emulator: the gateway's signature checks, the service's
//! validation, answers and app lifecycle, plus fault injection. Run it in-process with
//! [`Emulator::start`] or as the `dataforest-emulator` binary.

#![forbid(unsafe_code)]

mod api;
pub mod apps;
pub mod cli;
pub mod faults;
pub mod request;
mod server;
mod stats;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use apps::{AppSnapshot, OUTCOME_ENV, Outcome, Timeline};
pub use faults::{Fault, Faults, InvalidFaults};
pub use stats::Stats;

use dataforest_common::sign::{SecretKey, now_millis};
use faults::FaultState;
use stats::Counters;
use store::AppStore;

/// One access key the emulator accepts, bound to one account.
#[derive(Clone, Debug, PartialEq)]
pub struct EmulatorAccount {
    pub access_key: String,
    pub secret_key: SecretKey,
    pub account_id: String,
    pub account_name: String,
}

impl EmulatorAccount {
    pub fn new(access_key: &str, secret_key: &str, account_id: &str) -> Self {
        Self {
            access_key: access_key.to_owned(),
            secret_key: SecretKey::from(secret_key),
            account_id: account_id.to_owned(),
            account_name: format!("emulator-{}", account_id.to_ascii_lowercase()),
        }
    }
}

/// `ACCESS_KEY:SECRET_KEY:ACCOUNT_ID[:ACCOUNT_NAME]`.
impl FromStr for EmulatorAccount {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        if !(3..=4).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            // The text holds a secret: never echo it.
            return Err("expected ACCESS_KEY:SECRET_KEY:ACCOUNT_ID[:ACCOUNT_NAME]".to_owned());
        }
        let mut account = EmulatorAccount::new(parts[0], parts[1], parts[2]);
        if let Some(name) = parts.get(3) {
            account.account_name = (*name).to_owned();
        }
        Ok(account)
    }
}

/// How the emulator starts.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Where to listen; port 0 picks a free one (see [`EmulatorHandle::url`]).
    pub listen: SocketAddr,
    pub accounts: Vec<EmulatorAccount>,
    /// Default timeline of an app (an app's docker env may override it).
    pub timeline: Timeline,
    /// Default outcome of an app (an app's docker env may override it).
    pub outcome: Outcome,
    pub faults: Faults,
    /// Ended apps kept beyond this count are forgotten, oldest first (then getDetail
    /// answers 404, as for an app past Data Forest's retention).
    pub retain_apps: usize,
    /// The gateway refuses timestamps further than this from its clock.
    pub max_clock_skew: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            accounts: Vec::new(),
            timeline: Timeline::default(),
            outcome: Outcome::Succeeded,
            faults: Faults::default(),
            retain_apps: 10_000,
            max_clock_skew: Duration::from_secs(5 * 60),
        }
    }
}

impl EmulatorConfig {
    pub fn with_account(mut self, access_key: &str, secret_key: &str, account_id: &str) -> Self {
        self.accounts
            .push(EmulatorAccount::new(access_key, secret_key, account_id));
        self
    }

    pub fn with_timeline(mut self, timeline: Timeline) -> Self {
        self.timeline = timeline;
        self
    }

    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
}

/// Starting the emulator failed.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Faults(#[from] InvalidFaults),
    #[error("no credentials: give at least one ACCESS_KEY:SECRET_KEY:ACCOUNT_ID")]
    NoAccounts,
}

/// State shared by every connection.
pub(crate) struct Shared {
    accounts: HashMap<String, EmulatorAccount>,
    timeline: Timeline,
    outcome: Outcome,
    max_clock_skew: Duration,
    base_url: String,
    /// YARN cluster timestamp, part of every `appId`.
    cluster: u64,
    apps: Mutex<AppStore>,
    faults: Mutex<FaultState>,
    counters: Counters,
}

impl Shared {
    fn apps(&self) -> MutexGuard<'_, AppStore> {
        // A panic while holding the lock cannot leave the store half-written in a way
        // that matters to a test tool; keep serving.
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, FaultState> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Entry point of the in-process emulator.
pub struct Emulator;

impl Emulator {
    /// Binds, then serves in a background task until [`EmulatorHandle::shutdown`] or drop.
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        if config.accounts.is_empty() {
            return Err(EmulatorError::NoAccounts);
        }
        config.faults.validate()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: config.listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            accounts: config
                .accounts
                .into_iter()
                .map(|a| (a.access_key.clone(), a))
                .collect(),
            timeline: config.timeline,
            outcome: config.outcome,
            max_clock_skew: config.max_clock_skew,
            base_url: format!("http://{addr}"),
            cluster: now_millis(),
            apps: Mutex::new(AppStore::new(config.retain_apps)),
            faults: Mutex::new(FaultState::new(config.faults)),
            counters: Counters::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, shared.clone(), stopped));
        Ok(EmulatorHandle {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }
}

/// A running emulator. Dropping it stops the server too, so a failing test leaves nothing behind.
pub struct EmulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// Base URL to give the client, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every app held, in creation order.
    pub fn apps(&self) -> Vec<AppSnapshot> {
        self.shared.apps().snapshots(Instant::now())
    }

    pub fn stats(&self) -> Stats {
        stats::snapshot(&self.shared)
    }

    pub fn faults(&self) -> Faults {
        (**self.shared.faults()).clone()
    }

    /// Replaces every fault setting at once.
    pub fn set_faults(&self, faults: Faults) -> Result<(), InvalidFaults> {
        faults.validate()?;
        self.shared.faults().replace(faults);
        Ok(())
    }

    /// Stops accepting, closes every connection, and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
