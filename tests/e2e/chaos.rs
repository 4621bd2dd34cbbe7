//! Many AiApps under everything that can go wrong at once, with the promise checked at
//! the end: each AiApp has exactly one app unless its status says otherwise, no app is
//! left that no AiApp names, none is lost, none is left in Submitting, and no secret
//! value shows anywhere. `make test` runs small versions (`CHAOS_AIAPPS`, default 20 and
//! 25); `make chaos` large ones. `CHAOS_SEED` repeats a run's schedule and fault draws.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use dataforest_emulator::{AppSnapshot, Fault, Faults};
use dataforest_operator::crd::{AiApp, AiAppStatus, Phase};
use dataforest_operator::dataforest::Operation;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use libtest_mimic::Failed;
use tokio::time::{Instant, sleep};

use crate::fixture::{self, TestContext, ensure, refuse_status_writes};
use crate::world::{OPERATOR_LEASE, OperatorProcess, SECRET_KEY, World, phase, spec, with_world};

fn aiapp_count(default: usize) -> usize {
    std::env::var("CHAOS_AIAPPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// `CHAOS_SEED`, or a fresh one; printed so a failing run can be repeated.
fn chaos_seed() -> u64 {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("chaos seed {seed} (CHAOS_SEED={seed} repeats it)");
    seed
}

/// The faults of the API that every chaos run keeps up all along. Each fires on the
/// first request it can, then at random, so even a small run meets every kind.
fn api_faults(seed: u64) -> Faults {
    let fault = |p| Fault {
        next: 1,
        ..Fault::probability(p)
    };
    Faults {
        seed: Some(seed),
        throttle: fault(0.05),
        lost_response: fault(0.1).on(&[Operation::Submit]),
        error_after: fault(0.05).on(&[Operation::Submit]),
        error_before: fault(0.05).on(&[Operation::Submit, Operation::GetDetail]),
        html_page: fault(0.03).on(&[Operation::GetDetail]),
        truncated_body: fault(0.03).on(&[Operation::GetDetail]),
        listing_lag_ms: 500,
        ..Faults::default()
    }
}

/// The outcomes the emulator counts for the faults above, reported and checked fired.
const FAULT_OUTCOMES: [&str; 6] = [
    "throttled",
    "lostResponse",
    "errorAfter",
    "errorBefore",
    "htmlPage",
    "truncatedBody",
];

/// In-process operator, API faults only: the quick run, and the one that stays
/// meaningful when `CHAOS_AIAPPS` is large.
pub fn every_aiapp_gets_exactly_one_app_under_random_faults() -> Result<(), Failed> {
    fixture::run("chaos", |ctx| async move {
        let seed = chaos_seed();
        let world = World::start(ctx.client.clone(), &ctx.namespace, api_faults(seed)).await?;
        with_world(world, |world| {
            Box::pin(async move {
                let count = aiapp_count(20);
                let started = Instant::now();
                for n in 0..count {
                    world
                        .create(&format!("chaos-{n:03}"), spec(100, 200, "SUCCEEDED"))
                        .await?;
                }
                let aiapps = converged(world, count, &mut || Ok(())).await?;
                let outcome = Outcome::judge(&aiapps, &world.emulator.apps());
                println!(
                    "{}",
                    outcome.table(&Disruptions::default(), world, started.elapsed())
                );
                outcome.holds()
            })
        })
        .await
    })
}

/// What the test did to the operator and the apiserver, for the figures.
#[derive(Default)]
struct Disruptions {
    sigkills: usize,
    restarts_of_exited: usize,
    apiserver_restarts: usize,
    leader_pauses: usize,
    refused_write_windows: usize,
    lag_windows: usize,
}

/// The real binary, two replicas with leader election, under everything at once, in
/// waves: each wave of AiApps is created and then, with submits and polls in flight, one
/// disruption strikes: the leader SIGKILLed, the listing lag past the grace, AiApp status
/// writes refused, kube-apiserver stopped and restarted, the leader SIGSTOPped past its
/// lease and resumed. Throughout, the API throttles, loses answers, fails before and
/// after create, and answers reads with HTML or cut bodies. A replica that exits (as one
/// that lost its lease does) is started again, as the kubelet would.
pub fn the_promise_holds_through_crashes_restarts_pauses_and_faults() -> Result<(), Failed> {
    fixture::run_exclusive("chaos-real", |ctx| async move {
        let seed = chaos_seed();
        let world =
            World::without_operator(ctx.client.clone(), &ctx.namespace, api_faults(seed)).await?;
        world
            .create_secret(crate::world::SECRET_NAME, SECRET_KEY)
            .await?;
        with_world(world, move |world| {
            Box::pin(async move { run_waves(&ctx, world, seed).await })
        })
        .await
    })
}

async fn run_waves(ctx: &TestContext, world: &World, seed: u64) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let count = aiapp_count(25);
    let mut fleet = Fleet::start(ctx, world)?;
    let mut done = Disruptions::default();
    let started = Instant::now();
    let waves = [
        "sigkill",
        "listing lag",
        "refused writes",
        "apiserver",
        "leader pause",
    ];
    let per_wave = count.div_ceil(waves.len());
    let mut created = 0;
    for (wave, disruption) in waves.iter().enumerate() {
        let this_wave = per_wave.min(count - created);
        for n in 0..this_wave {
            let name = format!("wave{wave}-{n:03}");
            world.create(&name, spec(100, 1_500, "SUCCEEDED")).await?;
        }
        created += this_wave;
        // Strike while this wave's submits are under way.
        sleep(Duration::from_millis(rng.u64(0..400))).await;
        println!("chaos: wave {wave}, {disruption}");
        match *disruption {
            "sigkill" => {
                let leader = fleet.leader(ctx).await?;
                fleet.sigkill(&leader)?;
                done.sigkills += 1;
            }
            "listing lag" => {
                // Past the 3 s recovery grace of the operator processes.
                let mut lagging = world.emulator.faults();
                lagging.listing_lag_ms = 5_000;
                world.emulator.set_faults(lagging)?;
                sleep(Duration::from_secs(6)).await;
                let mut back = world.emulator.faults();
                back.listing_lag_ms = api_faults(seed).listing_lag_ms;
                world.emulator.set_faults(back)?;
                done.lag_windows += 1;
            }
            "refused writes" => {
                let refusal = refuse_status_writes(ctx).await?;
                sleep(Duration::from_secs(rng.u64(2..5))).await;
                refusal.allow().await?;
                done.refused_write_windows += 1;
            }
            "apiserver" => {
                let apiserver = ctx.apiserver();
                apiserver.stop().await?;
                sleep(Duration::from_secs(rng.u64(1..4))).await;
                apiserver.start().await?;
                done.apiserver_restarts += 1;
            }
            "leader pause" => {
                let leader = fleet.leader(ctx).await?;
                // Past the 6 s lease: the other replica takes over meanwhile.
                fleet.pause(&leader, Duration::from_secs(9)).await?;
                done.leader_pauses += 1;
                let next = fleet.leader_other_than(ctx, &leader).await?;
                println!("chaos: {next} leads after {leader} was paused");
            }
            other => unreachable!("{other}"),
        }
        fleet.restart_exited()?;
    }
    let aiapps = converged(world, count, &mut || fleet.restart_exited()).await?;
    done.restarts_of_exited = fleet.restarted;
    let outcome = Outcome::judge(&aiapps, &world.emulator.apps());
    println!("{}", outcome.table(&done, world, started.elapsed()));
    outcome.holds()?;
    for kind in FAULT_OUTCOMES {
        let fired: u64 = Operation::ALL
            .into_iter()
            .map(|op| world.emulator.stats().count(op, kind))
            .sum();
        ensure(fired > 0, || {
            format!("fault {kind} never fired: the run proved less")
        })?;
    }
    fleet.stop_all().await;
    no_secret_anywhere(world, &fleet.logs).await
}

/// Waits until every AiApp has ended or waits for a person, calling `tend` meanwhile;
/// fails naming the ones that did not, with their phase and message.
async fn converged(
    world: &World,
    count: usize,
    tend: &mut (dyn FnMut() -> Result<()> + Send),
) -> Result<Vec<AiApp>> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        tend()?;
        let aiapps = match world.aiapps().list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(error) => {
                anyhow::ensure!(Instant::now() < deadline, "listing AiApps: {error}");
                sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let settled = |a: &AiApp| phase(a).is_some_and(|p| p.is_terminal() || p == Phase::Unknown);
        let mine: Vec<AiApp> = aiapps
            .into_iter()
            .filter(|a| {
                !a.metadata
                    .name
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("status-write-probe")
            })
            .collect();
        if mine.len() >= count && mine.iter().all(settled) {
            return Ok(mine);
        }
        if Instant::now() > deadline {
            let stuck: Vec<String> = mine
                .iter()
                .filter(|a| !settled(a))
                .map(|a| {
                    let status = a.status.clone().unwrap_or_default();
                    format!(
                        "{} {:?}: {}",
                        a.metadata.name.as_deref().unwrap_or_default(),
                        status.phase,
                        status.message.unwrap_or_default()
                    )
                })
                .collect();
            anyhow::bail!("{} AiApps never settled: {stuck:#?}", stuck.len());
        }
        sleep(Duration::from_millis(250)).await;
    }
}

/// The replicas of the operator, real processes, as a Deployment with two would run.
struct Fleet<'a> {
    world: &'a World,
    kubeconfig: std::path::PathBuf,
    processes: Vec<OperatorProcess>,
    /// Every log file any replica wrote, for the secret check.
    logs: Vec<std::path::PathBuf>,
    started: usize,
    /// Replicas started again after they exited on their own.
    restarted: usize,
}

impl<'a> Fleet<'a> {
    fn start(ctx: &TestContext, world: &'a World) -> Result<Fleet<'a>> {
        let mut fleet = Fleet {
            world,
            kubeconfig: ctx.kubeconfig().to_owned(),
            processes: Vec::new(),
            logs: Vec::new(),
            started: 0,
            restarted: 0,
        };
        fleet.start_one()?;
        fleet.start_one()?;
        Ok(fleet)
    }

    /// A new replica under a new name, as a new pod gets.
    fn start_one(&mut self) -> Result<()> {
        self.started += 1;
        let identity = format!("chaos-op-{}", self.started);
        // Debug logs, so the secret check reads what a person turning logs up would see.
        let env = [("RUST_LOG", "debug")];
        let process = OperatorProcess::start_with(self.world, &self.kubeconfig, &identity, &env)?;
        self.logs.push(process.log.clone());
        self.processes.push(process);
        Ok(())
    }

    /// The replica holding the lease now.
    async fn leader(&self, ctx: &TestContext) -> Result<String> {
        let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(lease)) = leases.get_opt(OPERATOR_LEASE).await {
                let holder = lease.spec.and_then(|s| s.holder_identity);
                if let Some(holder) =
                    holder.filter(|h| self.processes.iter().any(|p| &p.identity == h))
                {
                    return Ok(holder);
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no replica leads");
            sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until a replica other than `former` leads, restarting any that exited (the
    /// paused one exits once it finds its lease gone).
    async fn leader_other_than(&mut self, ctx: &TestContext, former: &str) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.restart_exited()?;
            let leader = self.leader(ctx).await?;
            if leader != former {
                return Ok(leader);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{former} still leads after its pause"
            );
            sleep(Duration::from_millis(200)).await;
        }
    }

    fn sigkill(&mut self, identity: &str) -> Result<()> {
        let index = self
            .processes
            .iter()
            .position(|p| p.identity == identity)
            .context("no such replica")?;
        let mut process = self.processes.remove(index);
        process.crash()?;
        self.start_one()
    }

    async fn pause(&mut self, identity: &str, for_: Duration) -> Result<()> {
        let process = self
            .processes
            .iter()
            .find(|p| p.identity == identity)
            .context("no such replica")?;
        process.pause()?;
        sleep(for_).await;
        process.resume()
    }

    /// Starts a new replica for each that exited.
    fn restart_exited(&mut self) -> Result<()> {
        let mut exited = 0;
        let mut index = 0;
        while index < self.processes.len() {
            if self.processes[index].has_exited()? {
                self.processes.remove(index);
                exited += 1;
            } else {
                index += 1;
            }
        }
        for _ in 0..exited {
            self.start_one()?;
        }
        self.restarted += exited;
        Ok(())
    }

    async fn stop_all(&mut self) {
        for process in &mut self.processes {
            let _ = process.terminate().await;
        }
    }
}

/// What the end state says of the promise.
struct Outcome {
    aiapps: usize,
    /// AiApps with more than one app, each named in their status.
    duplicates: usize,
    /// Second apps that ended on their own, before the AiApp's recovery could list them
    /// (listing lag past the grace): recorded as Duplicate, not killed.
    duplicates_ran: usize,
    /// AiApps ended or in flight with no app, outside Unknown.
    lost: Vec<String>,
    /// AiApps waiting for a person, with what their status says.
    unknown: Vec<String>,
    /// Apps no AiApp names in its status.
    orphans: Vec<String>,
    /// AiApps with an app their status does not name.
    unnamed: Vec<String>,
    /// AiApps with more than one app still live at the end, or a Succeeded AiApp whose
    /// id is not its one app left unkilled.
    broken: Vec<String>,
}

impl Outcome {
    fn judge(aiapps: &[AiApp], apps: &[AppSnapshot]) -> Outcome {
        let mut outcome = Outcome {
            aiapps: aiapps.len(),
            duplicates: 0,
            duplicates_ran: 0,
            lost: Vec::new(),
            unknown: Vec::new(),
            orphans: Vec::new(),
            unnamed: Vec::new(),
            broken: Vec::new(),
        };
        let mut named_anywhere = BTreeSet::new();
        for aiapp in aiapps {
            let name = aiapp.metadata.name.clone().unwrap_or_default();
            let status = aiapp.status.clone().unwrap_or_default();
            let mut prefixes: BTreeSet<String> = status
                .attempts
                .iter()
                .map(|a| a.name_prefix.to_string())
                .collect();
            prefixes.extend(status.submission.iter().map(|s| s.name_prefix.to_string()));
            let mut named: BTreeSet<String> = status.id.iter().map(|id| id.to_string()).collect();
            for attempt in &status.attempts {
                named.extend(attempt.id.iter().map(|id| id.to_string()));
                named.extend(attempt.candidates.iter().map(|id| id.to_string()));
            }
            named_anywhere.extend(named.iter().cloned());
            let own: Vec<&AppSnapshot> = apps
                .iter()
                .filter(|a| prefixes.contains(&a.name_prefix))
                .collect();
            if own.len() > 1 {
                outcome.duplicates += 1;
            }
            if own.iter().any(|a| !named.contains(&a.id)) {
                outcome.unnamed.push(name.clone());
            }
            if status.phase == Some(Phase::Unknown) {
                let attempts = attempts_of(&status);
                outcome.unknown.push(format!(
                    "{name}: {} (attempts {attempts:?}; apps {:?})",
                    status.message.unwrap_or_default(),
                    own.iter()
                        .map(|a| format!("{} {}", a.id, a.name))
                        .collect::<Vec<_>>()
                ));
                continue;
            }
            if own.is_empty() {
                outcome.lost.push(name.clone());
                continue;
            }
            // One app followed, at most one live; any other is killed, or (when it ended
            // before recovery could list it) named on its attempt in status. The words: exactly one app per AiApp
            // unless the AiApp says otherwise in status.
            let live = own.iter().filter(|a| !is_ended(a)).count();
            let followed = status.id.as_deref();
            // Named on an attempt: as its app (a Duplicate) or as a candidate.
            let on_attempts: BTreeSet<&str> = status
                .attempts
                .iter()
                .flat_map(|a| a.id.iter().chain(a.candidates.iter()))
                .map(|id| id.as_str())
                .collect();
            let others: Vec<&&AppSnapshot> = own
                .iter()
                .filter(|a| Some(a.id.as_str()) != followed)
                .collect();
            let accounted = others
                .iter()
                .all(|a| a.killed || on_attempts.contains(a.id.as_str()));
            let ran_unkilled = others.iter().filter(|a| !a.killed).count();
            outcome.duplicates_ran += ran_unkilled;
            let follows_own = own.iter().any(|a| Some(a.id.as_str()) == followed);
            if !(live <= 1 && follows_own && accounted) {
                let attempts = attempts_of(&status);
                outcome.broken.push(format!(
                    "{name}: follows {followed:?}; attempts {attempts:?}; apps {:?}",
                    own.iter()
                        .map(|a| format!("{} {} {} killed={}", a.id, a.name, a.state, a.killed))
                        .collect::<Vec<_>>()
                ));
            }
        }
        outcome.orphans = apps
            .iter()
            .filter(|a| !named_anywhere.contains(&a.id))
            .map(|a| format!("{} {} {}", a.id, a.name, a.state))
            .collect();
        outcome
    }

    fn holds(&self) -> Result<()> {
        ensure(self.lost.is_empty(), || format!("lost: {:?}", self.lost))?;
        ensure(self.orphans.is_empty(), || {
            format!("apps no AiApp names: {:?}", self.orphans)
        })?;
        ensure(self.unnamed.is_empty(), || {
            format!(
                "AiApps with an app their status does not name: {:?}",
                self.unnamed
            )
        })?;
        ensure(self.broken.is_empty(), || format!("{:#?}", self.broken))
    }

    fn table(&self, done: &Disruptions, world: &World, took: Duration) -> String {
        let stats = world.emulator.stats();
        let mut faults = BTreeMap::new();
        for kind in FAULT_OUTCOMES {
            let fired: u64 = Operation::ALL
                .into_iter()
                .map(|op| stats.count(op, kind))
                .sum();
            faults.insert(kind, fired);
        }
        let per_aiapp = |op| stats.total(op) as f64 / self.aiapps.max(1) as f64;
        let mut out = String::new();
        let _ = writeln!(out, "| figure | value |\n| --- | --- |");
        let rows: Vec<(String, String)> = vec![
            ("AiApps".into(), self.aiapps.to_string()),
            ("operator SIGKILLs".into(), done.sigkills.to_string()),
            (
                "replicas restarted after exiting".into(),
                done.restarts_of_exited.to_string(),
            ),
            (
                "kube-apiserver restarts".into(),
                done.apiserver_restarts.to_string(),
            ),
            (
                "leader SIGSTOPs past the lease".into(),
                done.leader_pauses.to_string(),
            ),
            (
                "windows of refused status writes".into(),
                done.refused_write_windows.to_string(),
            ),
            (
                "windows of listing lag past the grace".into(),
                done.lag_windows.to_string(),
            ),
            ("faults injected by kind".into(), format!("{faults:?}")),
            (
                "AiApps with more than one app (all named in status)".into(),
                self.duplicates.to_string(),
            ),
            (
                "of which ran to their end unkilled (listed after they ended)".into(),
                self.duplicates_ran.to_string(),
            ),
            ("lost".into(), self.lost.len().to_string()),
            ("Unknown".into(), self.unknown.len().to_string()),
            (
                "API calls per AiApp (submit, getDetail, getList, kill)".into(),
                format!(
                    "{:.2}, {:.2}, {:.2}, {:.2}",
                    per_aiapp(Operation::Submit),
                    per_aiapp(Operation::GetDetail),
                    per_aiapp(Operation::GetList),
                    per_aiapp(Operation::Kill)
                ),
            ),
            (
                "time to converge".into(),
                format!("{:.1} s", took.as_secs_f64()),
            ),
        ];
        for (figure, value) in rows {
            let _ = writeln!(out, "| {figure} | {value} |");
        }
        for unknown in &self.unknown {
            let _ = writeln!(out, "Unknown: {unknown}");
        }
        out
    }
}

/// Each attempt as `number outcome prefix id`, for messages.
fn attempts_of(status: &AiAppStatus) -> Vec<String> {
    status
        .attempts
        .iter()
        .map(|a| format!("{} {:?} {} {:?}", a.attempt, a.outcome, a.name_prefix, a.id))
        .collect()
}

fn is_ended(app: &AppSnapshot) -> bool {
    matches!(app.state.as_str(), "FINISHED" | "FAILED" | "KILLED")
}

/// The secret key shows in no replica's log, no AiApp and no Event.
async fn no_secret_anywhere(world: &World, logs: &[std::path::PathBuf]) -> Result<()> {
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        ensure(!text.contains(SECRET_KEY), || {
            format!("the secret key is in {}", log.display())
        })?;
    }
    let aiapps = serde_json::to_string(&world.aiapps().list(&ListParams::default()).await?)?;
    ensure(!aiapps.contains(SECRET_KEY), || {
        "the secret key is in an AiApp".into()
    })?;
    let events: Api<Event> = Api::namespaced(world.client.clone(), &world.namespace);
    let events = serde_json::to_string(&events.list(&ListParams::default()).await?)?;
    ensure(!events.contains(SECRET_KEY), || {
        "the secret key is in an Event".into()
    })
}
