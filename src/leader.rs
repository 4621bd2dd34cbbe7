//! Lease-based leader election on a `coordination.k8s.io/v1` Lease, so that of the pods a
//! rolling update runs side by side only one reconciles and submits GPU jobs.
//!
//! Every write carries the Lease's `resourceVersion`, so of two candidates that read the
//! same expired Lease only one write lands; the other gets 409 Conflict and re-reads.
//! A leader counts its lease's validity on the monotonic clock from the instant before its
//! last successful write, which can only err short of what the other candidates see; a
//! candidate counts another's lease from the moment it saw that lease change, never from
//! the holder's wall-clock `renewTime`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tracing::{debug, info, warn};

/// Re-reads after a 409 before a round counts as failed; more means a writer storm.
const CONFLICT_RETRIES: u32 = 3;
/// Bound on clearing the holder at shutdown: a pod being stopped has little time.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which Lease to hold, as whom, and how often to write it.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per pod (the pod name), written as `holderIdentity`.
    pub identity: String,
    /// How long a lease stays valid without a renew; written rounded up to whole seconds.
    pub lease_duration: Duration,
    /// Interval between renews while leading; well under `lease_duration`.
    pub renew_every: Duration,
    /// Interval between attempts while another candidate holds the lease, or after an error.
    pub retry_every: Duration,
    /// The namespaces this instance claims, written on the Lease with every acquire and
    /// renew (see `shard`); `None` writes no claim.
    pub claim: Option<crate::shard::Claim>,
}

impl LeaseConfig {
    /// client-go's defaults: a 15 s lease, renewed and retried every 2 s.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
            retry_every: Duration::from_secs(2),
            claim: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Candidate,
    Leading {
        renewed_at: Instant,
    },
    /// Another holder took the lease, or it ran out; final, the operator exits.
    Lost,
    /// We gave the lease up (release or drop); not a loss, so `lost()` stays pending.
    Released,
}

/// What the controller asks: are we leader, for how long, and tell me when that changes.
#[derive(Clone)]
pub struct Leadership {
    state: watch::Sender<State>,
    lease_duration: Duration,
}

impl Leadership {
    /// False as soon as the validity runs out, even before the renew task notices.
    pub fn is_leader(&self) -> bool {
        !self.valid_for().is_zero()
    }

    /// How long the lease we hold stays valid from now if no renew succeeds (ZERO when not
    /// leader): last successful acquire/renew instant + lease_duration - now.
    pub fn valid_for(&self) -> Duration {
        match *self.state.borrow() {
            State::Leading { renewed_at } => {
                (renewed_at + self.lease_duration).saturating_duration_since(Instant::now())
            }
            _ => Duration::ZERO,
        }
    }

    /// Resolves once we are leader (or were: it does not wait again after a loss).
    pub async fn acquired(&self) {
        let mut state = self.state.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = state.wait_for(|s| *s != State::Candidate).await;
    }

    /// Calls `report` with whether we lead, at once and at every change (acquired, lost,
    /// released), from a task that ends with the election: for the leader gauge.
    pub fn report_to(&self, report: impl Fn(bool) + Send + 'static) {
        let mut state = self.state.subscribe();
        tokio::spawn(async move {
            let mut reported = None;
            loop {
                let leading = matches!(*state.borrow_and_update(), State::Leading { .. });
                if reported != Some(leading) {
                    report(leading);
                    reported = Some(leading);
                }
                // Renewals change the state too; only a change of leading is reported.
                if state.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Resolves when a lease we held is lost: another holder took it, or renewing failed
    /// until it ran out. Never before we were leader, and not on a release.
    pub async fn lost(&self) {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|s| *s == State::Lost).await;
    }
}

/// Runs the acquire/renew loop in a task; dropping it stops renewing (see `release`).
#[must_use = "dropping the elector stops the election"]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    leadership: Leadership,
    task: Option<JoinHandle<()>>,
}

impl LeaderElector {
    /// Spawns the acquire/renew task on the current tokio runtime.
    pub fn start(client: kube::Client, config: LeaseConfig) -> LeaderElector {
        if config.renew_every >= config.lease_duration {
            warn!(renew_every = ?config.renew_every, lease_duration = ?config.lease_duration,
                "renewing no more often than the lease lasts: leadership will flap");
        }
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let leadership = Leadership {
            state: watch::Sender::new(State::Candidate),
            lease_duration: config.lease_duration,
        };
        let task = tokio::spawn(elect(api.clone(), config.clone(), leadership.state.clone()));
        LeaderElector {
            api,
            config,
            leadership,
            task: Some(task),
        }
    }

    /// A handle for the controller; it outlives the elector and then reads not leader.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Graceful shutdown: stops renewing and, if the Lease still names us, clears its
    /// holder so the next candidate takes over at its next attempt instead of waiting
    /// for the lease to run out. `is_leader()` is false from the moment this is called.
    pub async fn release(mut self) {
        self.stop();
        let config = &self.config;
        match timeout(RELEASE_TIMEOUT, clear_holder(&self.api, config)).await {
            Ok(Ok(true)) => {
                info!(identity = %config.identity, lease = %config.name, "released the lease")
            }
            Ok(Ok(false)) => {
                debug!(identity = %config.identity, "the lease was not ours to release")
            }
            Ok(Err(error)) => warn!(%error, "could not release the lease; it will run out"),
            Err(_) => warn!("releasing the lease timed out; it will run out"),
        }
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        // A write the aborted task had in flight may still land: `clear_holder` re-reads.
        self.leadership.state.send_if_modified(|state| {
            let leading = matches!(state, State::Leading { .. });
            if leading {
                *state = State::Released;
            }
            leading
        });
    }
}

impl Drop for LeaderElector {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, thiserror::Error)]
enum LeaseError {
    #[error("Lease API call failed: {0}")]
    Api(#[from] kube::Error),
    #[error("the Lease changed under us {CONFLICT_RETRIES} times in a row")]
    Contended,
}

/// Who holds the Lease, from where `identity` stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claim {
    /// Absent, no holder, or run out: anyone may take it.
    Free,
    Ours,
    HeldBy(String),
}

/// The other holder's record as this process last saw it, and when it saw it change.
///
/// client-go's rule: a lease held by another runs out a lease duration after this process
/// *observed* its record change, on our monotonic clock. The holder's `renewTime` is
/// another machine's wall clock; trusting it would let a clock running ahead take over
/// a live leader's lease early, and one running behind hold on to a dead one for ever.
#[derive(Debug, Default)]
struct Observation {
    record: Option<LeaseSpec>,
    changed_at: Option<Instant>,
}

impl Observation {
    /// Who holds the Lease at `now`; `own_duration` is our configured lease duration,
    /// waited at least, so a holder that wrote a shorter one is not cut short.
    fn claim(
        &mut self,
        spec: Option<&LeaseSpec>,
        identity: &str,
        own_duration: Duration,
        now: Instant,
    ) -> Claim {
        let Some(spec) = spec else { return Claim::Free };
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        if holder.is_empty() {
            return Claim::Free;
        }
        if holder == identity {
            return Claim::Ours;
        }
        if self.record.as_ref() != Some(spec) {
            self.record = Some(spec.clone());
            self.changed_at = Some(now);
        }
        let written = u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0);
        let duration = Duration::from_secs(written).max(own_duration);
        let changed_at = self.changed_at.unwrap_or(now);
        if now < changed_at + duration {
            Claim::HeldBy(holder.to_owned())
        } else {
            Claim::Free
        }
    }
}

/// The spec that makes `identity` the holder as of `now`, keeping fields we do not own.
fn next_spec(
    current: Option<&LeaseSpec>,
    identity: &str,
    lease_duration: Duration,
    now: Timestamp,
) -> LeaseSpec {
    let mut spec = current.cloned().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(identity) {
        spec.acquire_time = Some(MicroTime(now));
        // client-go counts a take from an empty holder as a transition too; a new Lease starts at 0.
        spec.lease_transitions =
            Some(current.map_or(0, |c| c.lease_transitions.unwrap_or(0).saturating_add(1)));
        spec.holder_identity = Some(identity.to_owned());
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(whole_seconds(lease_duration));
    spec
}

/// Rounded up, so other candidates never wait less than we count on.
fn whole_seconds(duration: Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds).unwrap_or(i32::MAX).max(1)
}

/// Our lease as we hand it over: no holder, so the next candidate need not wait.
fn released_spec(current: &LeaseSpec) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        ..current.clone()
    }
}

/// What one acquire or renew round found.
enum Round {
    /// We hold the lease; its validity counts from `at`, taken before the write.
    Held {
        at: Instant,
    },
    HeldBy(String),
}

/// Reads the Lease and, if we may, writes ourselves in as holder.
async fn hold(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observation: &mut Observation,
) -> Result<Round, LeaseError> {
    for _ in 0..CONFLICT_RETRIES {
        let current = api.get_opt(&config.name).await?;
        let (at, now) = (Instant::now(), Timestamp::now());
        let spec = current.as_ref().and_then(|lease| lease.spec.as_ref());
        let claim = observation.claim(spec, &config.identity, config.lease_duration, at);
        if let Claim::HeldBy(holder) = claim {
            return Ok(Round::HeldBy(holder));
        }
        let next = next_spec(spec, &config.identity, config.lease_duration, now);
        let written = match current {
            None => {
                let mut lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(config.name.clone()),
                        namespace: Some(config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(next),
                };
                write_claim(&mut lease.metadata, config.claim.as_ref());
                api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // The read's resourceVersion stays in metadata: a stale write gets 409.
                lease.spec = Some(next);
                write_claim(&mut lease.metadata, config.claim.as_ref());
                api.replace(&config.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => return Ok(Round::Held { at }),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(LeaseError::Contended)
}

/// Puts the namespace claim on the Lease, so that other instances see it.
fn write_claim(metadata: &mut ObjectMeta, claim: Option<&crate::shard::Claim>) {
    let Some(claim) = claim else {
        return;
    };
    metadata
        .labels
        .get_or_insert_default()
        .insert(crate::shard::CLAIM_LABEL.to_owned(), "true".to_owned());
    metadata.annotations.get_or_insert_default().insert(
        crate::shard::NAMESPACES_ANNOTATION.to_owned(),
        claim.to_string(),
    );
}

/// Clears the holder if it is still us; true when it was.
async fn clear_holder(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, LeaseError> {
    for _ in 0..CONFLICT_RETRIES {
        let Some(mut lease) = api.get_opt(&config.name).await? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_ref() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
            return Ok(false);
        }
        lease.spec = Some(released_spec(spec));
        match api
            .replace(&config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(LeaseError::Contended)
}

/// The election task: campaign until we hold the lease, then keep it until we cannot.
async fn elect(api: Api<Lease>, config: LeaseConfig, state: watch::Sender<State>) {
    let renewed_at = campaign(&api, &config).await;
    state.send_replace(State::Leading { renewed_at });
    info!(identity = %config.identity, lease = %config.name, "acquired the lease: leading");
    let reason = keep(&api, &config, &state, renewed_at).await;
    state.send_replace(State::Lost);
    info!(identity = %config.identity, lease = %config.name, %reason, "lost the lease");
}

async fn campaign(api: &Api<Lease>, config: &LeaseConfig) -> Instant {
    let mut observation = Observation::default();
    loop {
        // A hung call must not stall the campaign past what a lease lasts.
        match timeout(config.lease_duration, hold(api, config, &mut observation)).await {
            Ok(Ok(Round::Held { at })) => return at,
            Ok(Ok(Round::HeldBy(holder))) => {
                debug!(%holder, "the lease is held by another candidate")
            }
            Ok(Err(error)) => warn!(%error, "could not acquire the lease"),
            Err(_) => warn!("acquiring the lease timed out"),
        }
        sleep(config.retry_every).await;
    }
}

/// Renews until the lease is lost; returns why.
async fn keep(
    api: &Api<Lease>,
    config: &LeaseConfig,
    state: &watch::Sender<State>,
    mut renewed_at: Instant,
) -> String {
    let mut next = renewed_at + config.renew_every;
    let mut observation = Observation::default();
    loop {
        let expires = renewed_at + config.lease_duration;
        sleep_until(next.min(expires)).await;
        // Bounded by the validity, so `lost()` fires when the lease runs out even if the
        // apiserver hangs.
        match timeout_at(expires, hold(api, config, &mut observation)).await {
            Ok(Ok(Round::Held { at })) => {
                renewed_at = at;
                state.send_replace(State::Leading { renewed_at });
                next = at + config.renew_every;
            }
            Ok(Ok(Round::HeldBy(holder))) => return format!("{holder} holds it now"),
            Ok(Err(error)) => {
                warn!(%error, valid_for = ?expires.saturating_duration_since(Instant::now()),
                    "renewing the lease failed");
                next = Instant::now() + config.retry_every;
            }
            Err(_) => return "it ran out before a renew succeeded".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "pod-a";

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn held(holder: &str, renewed: i64, duration: i32, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            acquire_time: Some(MicroTime(at(0))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    const FIFTEEN: Duration = Duration::from_secs(15);

    /// Claims `spec` as ME, `seconds` after `start` on our monotonic clock.
    fn claim_at(
        observation: &mut Observation,
        spec: Option<&LeaseSpec>,
        start: Instant,
        seconds: u64,
    ) -> Claim {
        observation.claim(spec, ME, FIFTEEN, start + Duration::from_secs(seconds))
    }

    fn other() -> Claim {
        Claim::HeldBy("pod-b".to_owned())
    }

    #[test]
    fn who_may_take_a_lease_at_first_sight() {
        let start = Instant::now();
        let no_times = LeaseSpec {
            holder_identity: Some("pod-b".to_owned()),
            ..LeaseSpec::default()
        };
        let cases: Vec<(&str, Option<LeaseSpec>, Claim)> = vec![
            ("absent", None, Claim::Free),
            ("no holder", Some(LeaseSpec::default()), Claim::Free),
            ("empty holder", Some(held("", 0, 15, 1)), Claim::Free),
            ("held by other", Some(held("pod-b", 10, 15, 1)), other()),
            // First seen now: its renewTime says nothing about our clock.
            (
                "held by other, renewed long ago",
                Some(held("pod-b", -9_999, 15, 1)),
                other(),
            ),
            ("held by other, no times", Some(no_times), other()),
            ("held by us", Some(held(ME, 10, 15, 1)), Claim::Ours),
            (
                "held by us, renewed long ago",
                Some(held(ME, -9_999, 15, 1)),
                Claim::Ours,
            ),
        ];
        for (name, spec, expected) in cases {
            let mut observation = Observation::default();
            let claim = claim_at(&mut observation, spec.as_ref(), start, 0);
            assert_eq!(claim, expected, "{name}");
        }
    }

    #[test]
    fn a_lease_runs_out_a_duration_after_we_saw_it_change_whatever_the_clocks_say() {
        let start = Instant::now();
        // The holder's clock an hour ahead of ours, an hour behind, or equal: only how long
        // its record stayed unchanged in our sight decides.
        for skew in [3_600, -3_600, 0] {
            let mut observation = Observation::default();
            let spec = held("pod-b", skew, 15, 1);
            let mut claim = |seconds| claim_at(&mut observation, Some(&spec), start, seconds);
            assert_eq!(claim(0), other(), "{skew}");
            assert_eq!(claim(14), other(), "{skew}");
            assert_eq!(claim(15), Claim::Free, "{skew}");
        }
    }

    #[test]
    fn a_renew_seen_restarts_the_count() {
        let start = Instant::now();
        let mut observation = Observation::default();
        let first = held("pod-b", 0, 15, 1);
        let renewed = held("pod-b", 5, 15, 1);
        assert_eq!(claim_at(&mut observation, Some(&first), start, 0), other());
        assert_eq!(
            claim_at(&mut observation, Some(&renewed), start, 10),
            other()
        );
        assert_eq!(
            claim_at(&mut observation, Some(&renewed), start, 24),
            other()
        );
        assert_eq!(
            claim_at(&mut observation, Some(&renewed), start, 25),
            Claim::Free
        );
    }

    #[test]
    fn a_shorter_written_duration_never_cuts_our_own_wait() {
        let start = Instant::now();
        let mut observation = Observation::default();
        let short = held("pod-b", 0, 1, 1);
        assert_eq!(claim_at(&mut observation, Some(&short), start, 0), other());
        assert_eq!(claim_at(&mut observation, Some(&short), start, 14), other());
        assert_eq!(
            claim_at(&mut observation, Some(&short), start, 15),
            Claim::Free
        );
        let long = held("pod-b", 0, 40, 2);
        assert_eq!(claim_at(&mut observation, Some(&long), start, 50), other());
        assert_eq!(claim_at(&mut observation, Some(&long), start, 89), other());
        assert_eq!(
            claim_at(&mut observation, Some(&long), start, 90),
            Claim::Free
        );
    }

    #[test]
    fn the_next_spec_counts_transitions_only_on_a_holder_change() {
        let fifteen = Duration::from_secs(15);
        // (case, current, expected transitions, acquire time kept?)
        let cases: Vec<(&str, Option<LeaseSpec>, i32, bool)> = vec![
            ("new lease", None, 0, false),
            (
                "taken from another",
                Some(held("pod-b", 5, 15, 3)),
                4,
                false,
            ),
            (
                "taken after a release",
                Some(released_spec(&held("pod-b", 5, 15, 3))),
                4,
                false,
            ),
            ("renewed", Some(held(ME, 5, 15, 3)), 3, true),
            ("no count yet", Some(LeaseSpec::default()), 1, false),
        ];
        for (name, current, transitions, kept) in cases {
            let next = next_spec(current.as_ref(), ME, fifteen, at(100));
            assert_eq!(next.holder_identity.as_deref(), Some(ME), "{name}");
            assert_eq!(next.lease_transitions, Some(transitions), "{name}");
            assert_eq!(next.renew_time, Some(MicroTime(at(100))), "{name}");
            assert_eq!(next.lease_duration_seconds, Some(15), "{name}");
            let acquired = if kept { at(0) } else { at(100) };
            assert_eq!(next.acquire_time, Some(MicroTime(acquired)), "{name}");
        }
    }

    #[test]
    fn the_next_spec_keeps_fields_it_does_not_own() {
        let current = LeaseSpec {
            strategy: Some("OldestEmulationVersion".to_owned()),
            ..held("pod-b", 0, 15, 0)
        };
        let next = next_spec(Some(&current), ME, Duration::from_secs(15), at(100));
        assert_eq!(next.strategy, current.strategy);
    }

    #[test]
    fn lease_seconds_round_up_and_are_at_least_one() {
        for (duration, seconds) in [
            (Duration::from_secs(15), 15),
            (Duration::from_millis(2_500), 3),
            (Duration::from_millis(10), 1),
            (Duration::ZERO, 1),
            (Duration::from_secs(u64::MAX), i32::MAX),
        ] {
            assert_eq!(whole_seconds(duration), seconds, "{duration:?}");
        }
    }

    #[test]
    fn a_released_lease_is_free_for_anyone() {
        let released = released_spec(&held(ME, 5, 15, 2));
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_transitions, Some(2));
        let mut observation = Observation::default();
        let claim = observation.claim(Some(&released), "pod-b", FIFTEEN, Instant::now());
        assert_eq!(claim, Claim::Free);
    }
}
