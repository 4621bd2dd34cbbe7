//! One repeat of one operator: a fresh control plane and emulator, the operator started as
//! a process, the AiApps created, and everything measured until they have ended and the
//! operator rests.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use dataforest_emulator::{Emulator, EmulatorConfig, EmulatorHandle, Faults, Timeline};
use dataforest_operator::crd::AiApp;
use dataforest_operator::dataforest::Operation;
use dataforest_testenv::{Assets, ControlPlane, ControlPlanePids};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use tokio::time::{Instant, sleep};

use crate::figures::{Figures, Restart, secs};
use crate::operators::{Kind, Readiness};
use crate::{Args, Arrival};

const NAMESPACE: &str = "bench";
const ACCESS_KEY: &str = "BENCHACCESSKEY000001";
const SECRET_KEY: &str = "bench-secret-key";
const ACCOUNT_ID: &str = "benchAccount00000001";
const IDENTITY: &str = "bench-operator";
/// Bound on every wait of a repeat.
const PATIENCE: Duration = Duration::from_secs(1800);
/// Bound on an operator's start, until it leads or says it is ready.
const START_PATIENCE: Duration = Duration::from_secs(120);
/// How long a restart of an operator that counts no reconciles is watched.
const RESTART_WINDOW: Duration = Duration::from_secs(5);

/// The operator process, killed when dropped; `ready` is set once it printed its ready
/// line, for an operator that says so on stdout.
struct Operator(Child, Arc<AtomicBool>);

impl Operator {
    /// Stops the operator as Kubernetes does: SIGTERM, then SIGKILL after a grace period.
    fn stop(mut self) {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let until = std::time::Instant::now() + Duration::from_secs(15);
        while terminated && std::time::Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What starting an operator process needs.
struct Launch<'a> {
    args: &'a Args,
    plane: &'a ControlPlane,
    endpoint: String,
    kind: Kind,
    binary: &'a Path,
}

impl Launch<'_> {
    /// Starts the operator as `identity` with its default flags and the process contract
    /// every operator of the bench shares (KUBECONFIG, WATCH_NAMESPACE, POD_NAME,
    /// POD_NAMESPACE, METRICS_ADDRESS); returns it and the address of its metrics.
    fn operator(&self, identity: &str, log: &str) -> Result<(Operator, String)> {
        let metrics = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.to_string()
        };
        let log = std::fs::File::create(self.plane.dir().join(log))?;
        // Through `setpriv --pdeathsig KILL`, as testenv starts the control plane: a bench
        // that is killed takes the operator with it instead of leaving it running.
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(self.binary)
            .args(self.kind.args())
            .env("KUBECONFIG", self.plane.kubeconfig_path())
            .env("WATCH_NAMESPACE", NAMESPACE)
            .env("POD_NAMESPACE", NAMESPACE)
            .env("POD_NAME", identity)
            .env("METRICS_ADDRESS", &metrics)
            .stderr(log);
        if self.kind == Kind::Dataforest {
            command
                .env("DATAFOREST_ALLOWED_ENDPOINTS", &self.endpoint)
                .env("RUST_LOG", "warn")
                .envs(self.args.operator_env.iter().map(|(k, v)| (k, v)));
        }
        let ready = Arc::new(AtomicBool::new(false));
        let Readiness::Line(prefix) = self.kind.readiness() else {
            command.stdout(Stdio::null());
            return Ok((Operator(command.spawn()?, ready), metrics));
        };
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let seen = ready.clone();
        // Read to the end, so that the operator never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line.starts_with(prefix) {
                    seen.store(true, Ordering::Relaxed);
                }
            }
        });
        Ok((Operator(child, ready), metrics))
    }
}

/// Waits until `operator` leads (holds its Lease as `identity`) or, for one without a
/// Lease, has said it is ready.
async fn wait_ready(
    client: &kube::Client,
    kind: Kind,
    identity: &str,
    operator: &mut Operator,
) -> Result<()> {
    let until = Instant::now() + START_PATIENCE;
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    loop {
        let ready = match kind.readiness() {
            Readiness::Lease(name) => leases
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|lease| lease.spec?.holder_identity)
                .is_some_and(|holder| holder == identity),
            Readiness::Line(_) => operator.1.load(Ordering::Relaxed),
        };
        if ready {
            return Ok(());
        }
        if let Ok(Some(status)) = operator.0.try_wait() {
            anyhow::bail!(
                "the {} operator exited before it was ready: {status}",
                kind.name()
            );
        }
        anyhow::ensure!(
            Instant::now() < until,
            "the {} operator was not ready after {START_PATIENCE:?}",
            kind.name()
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// A restart over `n` ended AiApps: a new process (a new pod name) until it leads, and
/// until it has reconciled every AiApp once; the API calls and writes it made meanwhile.
async fn restart_over_ended(
    launch: &Launch<'_>,
    client: &kube::Client,
    emulator: &EmulatorHandle,
    n: usize,
) -> Result<Restart> {
    let calls_before = api_calls(emulator);
    let writes_before = writes(&apiserver_requests(client).await?);
    let started = Instant::now();
    let identity = "bench-operator-restarted";
    let (mut operator, metrics) = launch.operator(identity, "restarted.log")?;
    wait_ready(client, launch.kind, identity, &mut operator).await?;
    let leading_s = secs(started.elapsed());
    // Finished reconciles; the first of every AiApp after the cache synced. An operator
    // that counts none is given a fixed window for its calls and writes.
    let reconciled_s = match launch.kind.reconciles_metric() {
        Some(metric) => {
            wait_for_sample(&metrics, metric, |done| done >= n as f64)
                .await
                .context("after the restart, not every AiApp was reconciled")?;
            Some(secs(started.elapsed()))
        }
        None => {
            sleep(RESTART_WINDOW).await;
            None
        }
    };
    let restart = Restart {
        leading_s,
        reconciled_s,
        api_calls: api_calls(emulator) - calls_before,
        kube_writes: (writes(&apiserver_requests(client).await?) - writes_before).max(0.0) as u64,
    };
    operator.stop();
    Ok(restart)
}

/// Every API call the emulator has answered.
fn api_calls(emulator: &EmulatorHandle) -> u64 {
    let stats = emulator.stats();
    Operation::ALL.into_iter().map(|op| stats.total(op)).sum()
}

/// Polls the operator's `/metrics` until `sample` satisfies `done`, within [`PATIENCE`];
/// returns its last value. An unreadable `/metrics` counts as not done yet.
async fn wait_for_sample(address: &str, sample: &str, done: impl Fn(f64) -> bool) -> Result<f64> {
    let until = Instant::now() + PATIENCE;
    loop {
        let value = scrape(address, sample).await;
        if let Some(value) = value.filter(|v| done(*v)) {
            return Ok(value);
        }
        anyhow::ensure!(
            Instant::now() < until,
            "{sample} was {value:?} after {PATIENCE:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// A metric's value from the operator's `/metrics`, summed over its labels (plain
/// HTTP/1.0, no client needed).
async fn scrape(address: &str, sample: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    sample_sum(&text, sample)
}

/// The sum of every sample of `metric` in Prometheus' text format, whatever its labels
/// (`controller_runtime_reconcile_total` has one per result); `None` when there is none.
fn sample_sum(text: &str, metric: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.rsplit_once('}')?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One repeat of the operator `kind`, whose executable is `binary`.
pub async fn once(args: &Args, kind: Kind, binary: &Path, assets: Assets) -> Result<Figures> {
    let plane = tokio::task::spawn_blocking(move || ControlPlane::start(assets)).await??;
    let client = plane.client().await?;
    let crd = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/aiapps.dataforest.dev.yaml"
    );
    let applied = plane
        .kubectl()
        .args(["apply", "--server-side", "-f", crd])
        .output()?;
    anyhow::ensure!(
        applied.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    let aiapps: Api<AiApp> = Api::namespaced(client.clone(), NAMESPACE);
    let until = Instant::now() + Duration::from_secs(60);
    while aiapps.list(&Default::default()).await.is_err() {
        anyhow::ensure!(Instant::now() < until, "the AiApp CRD was never served");
        sleep(Duration::from_millis(200)).await;
    }

    let emulator = Emulator::start(
        EmulatorConfig::default()
            .with_account(ACCESS_KEY, SECRET_KEY, ACCOUNT_ID)
            .with_timeline(Timeline {
                accepted: Duration::from_millis(200),
                running: args.running,
            })
            .with_faults(Faults {
                latency_ms: args.api_latency.as_millis() as u64,
                ..Faults::default()
            }),
    )
    .await?;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ncp-credentials"},
        "stringData": {
            "accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "accountId": ACCOUNT_ID,
            "endpoint": emulator.url(),
        },
    }))?;
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await?;

    let kube_before = apiserver_requests(&client).await?;
    let started = Launch {
        args,
        plane: &plane,
        endpoint: emulator.url(),
        kind,
        binary,
    };
    let (mut operator, metrics) = started.operator(IDENTITY, "operator.log")?;
    let pid = operator.0.id();
    wait_ready(&client, kind, IDENTITY, &mut operator).await?;
    let cpu_start = cpu_seconds(pid)?;
    let plane_pids = plane.pids();
    let plane_cpu_start = ControlPlaneCpu::of(plane_pids)?;

    // The operator's memory, sampled until the end of the repeat.
    let peak_rss = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kb) = rss_kb(pid) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // When each AiApp first showed an id, and when it ended.
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let watching = {
        let seen = seen.clone();
        let aiapps = aiapps.clone();
        tokio::spawn(async move {
            let mut events = watcher(aiapps, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                let (Ok(watcher::Event::Apply(app)) | Ok(watcher::Event::InitApply(app))) = event
                else {
                    continue;
                };
                seen.lock().expect("not poisoned").saw(&app, Instant::now());
            }
        })
    };

    let created = create_all(&aiapps, args).await?;
    let first_create = created.values().min().copied().context("nothing created")?;
    let last_create = created.values().max().copied().context("nothing created")?;
    let n = args.aiapps;
    let until = Instant::now() + PATIENCE;
    loop {
        let (ids, ended) = {
            let seen = seen.lock().expect("not poisoned");
            (seen.id_at.len(), seen.ended_at.len())
        };
        if ids >= n && ended >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "after {PATIENCE:?}: {ids} of {n} AiApps have an id, {ended} ended"
        );
        sleep(Duration::from_millis(100)).await;
    }
    let cpu_end = cpu_seconds(pid)?;
    let plane_cpu = ControlPlaneCpu::of(plane_pids)?.since(&plane_cpu_start);
    let events_dropped = if kind.has_event_queue() {
        let dropped = scrape(&metrics, "dataforest_operator_events_dropped_total").await;
        Some(dropped.context("the operator's metrics could not be read")?)
    } else {
        None
    };
    let (mut create_to_id, mut id_at_s, last_id, last_end) = {
        let seen = seen.lock().expect("not poisoned");
        let id_at_s: Vec<f64> = seen
            .id_at
            .values()
            .map(|at| secs(at.saturating_duration_since(first_create)))
            .collect();
        let latencies: Vec<f64> = created
            .iter()
            .filter_map(|(name, at)| seen.id_at.get(name).map(|id| secs(*id - *at)))
            .collect();
        let last_id = seen.id_at.values().max().copied().unwrap_or(first_create);
        let last_end = seen
            .ended_at
            .values()
            .max()
            .copied()
            .unwrap_or(first_create);
        (latencies, id_at_s, last_id, last_end)
    };
    create_to_id.sort_by(f64::total_cmp);
    id_at_s.sort_by(f64::total_cmp);
    let stats = emulator.stats();
    let api_calls_per_aiapp = Operation::ALL
        .into_iter()
        .map(|op| (op.as_str().to_owned(), stats.total(op) as f64 / n as f64))
        .collect();
    // Events still queued are work, not rest: wait until the operator has sent them,
    // and count them with the rest of the Kubernetes requests. An operator without a
    // queue to read is given until its Event writes stop.
    let events_sent_s = if kind.has_event_queue() {
        wait_for_sample(&metrics, "dataforest_operator_events_queued", |queued| {
            queued == 0.0
        })
        .await
        .context("the operator's Events were never all sent")?;
        Some(secs(first_create.elapsed()))
    } else {
        wait_events_settled(&client).await?;
        None
    };

    let kube_after = apiserver_requests(&client).await?;
    let kube_per_aiapp = kube_after
        .iter()
        .map(|(what, count)| {
            let before = kube_before.get(what).copied().unwrap_or(0.0);
            (what.clone(), (count - before) / n as f64)
        })
        .filter(|(_, per)| *per > 0.0)
        .collect();

    // At rest: every AiApp has ended and its Events are sent; nothing should happen.
    let rest_calls_before = api_calls(&emulator);
    let rest_writes_before = writes(&apiserver_requests(&client).await?);
    let rest_cpu_before = cpu_seconds(pid)?;
    sleep(args.rest).await;
    let rest_calls_after = api_calls(&emulator);
    let rest_writes_after = writes(&apiserver_requests(&client).await?);
    let rest_cpu_after = cpu_seconds(pid)?;

    sampler.abort();
    watching.abort();
    operator.stop();

    let restart = restart_over_ended(&started, &client, &emulator, n).await?;
    let capacity = status_patch_capacity(&aiapps, &created).await?;
    emulator.shutdown().await;
    drop(plane);

    Ok(Figures {
        operator: kind.name().to_owned(),
        aiapps: n,
        create_rate: n as f64 / secs(last_create - first_create).max(1e-3),
        submitted_rate: n as f64 / secs(last_id - first_create).max(1e-3),
        create_to_id,
        id_at_s,
        all_terminal_s: secs(last_end - first_create),
        events_sent_s,
        api_calls_per_aiapp,
        kube_per_aiapp,
        peak_rss_mb: peak_rss.load(Ordering::Relaxed) as f64 / 1024.0,
        cpu_s: cpu_end - cpu_start,
        apiserver_cpu_ms_per_aiapp: plane_cpu.kube_apiserver * 1000.0 / n as f64,
        etcd_cpu_ms_per_aiapp: plane_cpu.etcd * 1000.0 / n as f64,
        rest_api_calls: rest_calls_after - rest_calls_before,
        rest_kube_writes: (rest_writes_after - rest_writes_before).max(0.0) as u64,
        rest_cpu_s: rest_cpu_after - rest_cpu_before,
        events_dropped,
        apiserver_status_patches_per_s: capacity,
        restart,
    })
}

/// First sightings per AiApp name.
#[derive(Default)]
struct Seen {
    id_at: HashMap<String, Instant>,
    ended_at: HashMap<String, Instant>,
}

impl Seen {
    fn saw(&mut self, app: &AiApp, at: Instant) {
        let name = app.metadata.name.clone().unwrap_or_default();
        let Some(status) = app.status.as_ref() else {
            return;
        };
        if status.id.is_some() {
            self.id_at.entry(name.clone()).or_insert(at);
        }
        if status.phase.is_some_and(|p| p.is_terminal()) {
            self.ended_at.entry(name).or_insert(at);
        }
    }
}

/// Creates the AiApps as `args.arrival` says; returns when each create was answered.
async fn create_all(aiapps: &Api<AiApp>, args: &Args) -> Result<HashMap<String, Instant>> {
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let n = args.aiapps;
    let make = |i: usize| {
        let aiapps = aiapps.clone();
        let created = created.clone();
        async move {
            let name = format!("bench-{i:05}");
            let app = AiApp::new(&name, spec());
            aiapps.create(&PostParams::default(), &app).await?;
            created
                .lock()
                .expect("not poisoned")
                .insert(name, Instant::now());
            anyhow::Ok(())
        }
    };
    match args.arrival {
        Arrival::Burst => {
            let workers = (0..16).map(|_| {
                let next = next.clone();
                async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return anyhow::Ok(());
                        }
                        make(i).await?;
                    }
                }
            });
            for outcome in futures::future::join_all(workers).await {
                outcome?;
            }
        }
        Arrival::Rate(per_second) => {
            let mut ticks =
                tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_second)));
            let mut pending = Vec::with_capacity(n);
            for i in 0..n {
                ticks.tick().await;
                pending.push(tokio::spawn(make(i)));
            }
            for task in pending {
                task.await??;
            }
        }
    }
    let created = std::mem::take(&mut *created.lock().expect("not poisoned"));
    Ok(created)
}

fn spec() -> dataforest_operator::crd::AiAppSpec {
    serde_json::from_value(serde_json::json!({
        "aiWorkspaceId": "6ZKSGoSJMMwctK257nxgiL",
        "docker": {"image": "nvcr.io/nvidia/pytorch:24.01-py3", "command": "python train.py"},
        "resource": {"gpuCount": 1, "gpuModel": "T4"},
        "credentials": {"secretName": "ncp-credentials"},
    }))
    .expect("a valid spec")
}

/// Waits until the apiserver has taken no Event write for a second (within a minute).
async fn wait_events_settled(client: &kube::Client) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    let events = |totals: &BTreeMap<String, f64>| totals.get("events writes").copied();
    let mut last = events(&apiserver_requests(client).await?);
    loop {
        sleep(Duration::from_secs(1)).await;
        let now = events(&apiserver_requests(client).await?);
        if now == last || Instant::now() > until {
            return Ok(());
        }
        last = now;
    }
}

/// `apiserver_request_total` summed by `<resource>[/<subresource>] <writes|reads>`.
async fn apiserver_requests(client: &kube::Client) -> Result<BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut totals = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| {
            let key = format!("{name}=\"");
            labels
                .split_once(&key)
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(value, _)| value.to_owned())
                .unwrap_or_default()
        };
        let resource = label("resource");
        if !matches!(
            resource.as_str(),
            "aiapps" | "events" | "leases" | "secrets"
        ) {
            continue;
        }
        let subresource = label("subresource");
        let kind = match label("verb").as_str() {
            "POST" | "PUT" | "PATCH" | "DELETE" | "APPLY" => "writes",
            _ => "reads",
        };
        let what = if subresource.is_empty() {
            format!("{resource} {kind}")
        } else {
            format!("{resource}/{subresource} {kind}")
        };
        *totals.entry(what).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    Ok(totals)
}

fn writes(totals: &BTreeMap<String, f64>) -> f64 {
    totals
        .iter()
        .filter(|(what, _)| what.ends_with(" writes") && !what.starts_with("leases"))
        .map(|(_, n)| n)
        .sum()
}

/// The apiserver's capacity for this CRD: status merge patches per second from 16 at
/// once, for 5 s, with no operator running.
async fn status_patch_capacity(
    aiapps: &Api<AiApp>,
    created: &HashMap<String, Instant>,
) -> Result<f64> {
    let names: Arc<Vec<String>> = Arc::new(created.keys().cloned().collect());
    let done = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(5);
    let started = Instant::now();
    let workers = (0..16).map(|worker| {
        let (aiapps, names, done) = (aiapps.clone(), names.clone(), done.clone());
        async move {
            let mut i = worker;
            while Instant::now() < until {
                let name = &names[i % names.len()];
                let patch =
                    serde_json::json!({"status": {"message": format!("capacity probe {i}")}});
                aiapps
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 16;
            }
            anyhow::Ok(())
        }
    });
    for outcome in futures::future::join_all(workers).await {
        outcome?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / secs(started.elapsed()))
}

/// Resident memory of `pid` in KiB, from `/proc`.
fn rss_kb(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU seconds of the control plane's processes, read together.
struct ControlPlaneCpu {
    kube_apiserver: f64,
    etcd: f64,
}

impl ControlPlaneCpu {
    fn of(pids: ControlPlanePids) -> Result<Self> {
        let of = |pid: Option<u32>, name: &str| {
            cpu_seconds(pid.with_context(|| format!("{name} is not running"))?)
        };
        Ok(Self {
            kube_apiserver: of(pids.kube_apiserver, "kube-apiserver")?,
            etcd: of(pids.etcd, "etcd")?,
        })
    }

    fn since(&self, start: &Self) -> Self {
        Self {
            kube_apiserver: self.kube_apiserver - start.kube_apiserver,
            etcd: self.etcd - start.etcd,
        }
    }
}

/// User plus system CPU seconds of `pid`, from `/proc/<pid>/stat` (clock ticks of 1/100 s,
/// the kernel's USER_HZ on Linux).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat: the process exited"))?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((ticks(11) + ticks(12)) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_summed_over_its_labels() {
        let text = "# HELP controller_runtime_reconcile_total Total reconciliations\n\
            controller_runtime_reconcile_total{controller=\"aiapp\",result=\"error\"} 2\n\
            controller_runtime_reconcile_total{controller=\"aiapp\",result=\"success\"} 298\n\
            controller_runtime_reconcile_total_other 7\n\
            dataforest_operator_events_queued 0\n\
            dataforest_operator_reconcile_duration_seconds_count 300 1700000000000\n";
        assert_eq!(
            sample_sum(text, "controller_runtime_reconcile_total"),
            Some(300.0)
        );
        assert_eq!(
            sample_sum(text, "dataforest_operator_events_queued"),
            Some(0.0)
        );
        assert_eq!(
            sample_sum(text, "dataforest_operator_reconcile_duration_seconds_count"),
            Some(300.0)
        );
        assert_eq!(
            sample_sum(text, "dataforest_operator_events_dropped_total"),
            None
        );
    }
}
