//! The AiApp controller: Context, `run`, `reconcile` through the finalizer helper, and
//! `error_policy`. The steps themselves live in `apply` (submit, recover, poll) and
//! `cleanup` (deletion).

mod apply;
mod cleanup;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::crd::{AiApp, AiAppStatus, FIELD_MANAGER, FINALIZER};
use crate::credentials::{CredentialsPolicy, ResolvedCredentials};
use crate::dataforest::{ClientConfig, DataForestApi, DataForestClient, RetryPolicy};
use crate::leader::Leadership;
use crate::metrics::{InstrumentedApi, Metrics};

/// How much longer than one API call the lease must stay valid before a submit.
pub const SUBMIT_MARGIN: Duration = Duration::from_secs(1);

/// Settings of the controller; `run`'s flags fill them.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub credentials: CredentialsPolicy,
    /// Namespaces to watch; all when empty. One is watched by a namespaced watch (and
    /// needs only namespaced RBAC); several by a cluster-wide watch that ignores the rest.
    pub namespaces: Vec<String>,
    /// First poll interval after a submit or a phase change.
    pub poll_min: Duration,
    /// Polls back off up to this interval.
    pub poll_ceiling: Duration,
    /// After a submit whose answer was lost, how long a missing app may take to be listed
    /// before the operator concludes none was created.
    pub recovery_grace: Duration,
    /// How long getDetail may answer "not found" for a known id before phase Unknown.
    pub not_found_grace: Duration,
    /// How long deletion waits for a killed app to end before releasing the finalizer.
    pub deletion_bound: Duration,
    /// Timeout and retries of each API call.
    pub api_timeout: Duration,
    pub api_retry: RetryPolicy,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Name of this instance in Events (the pod name).
    pub instance: String,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            credentials: CredentialsPolicy::default(),
            namespaces: Vec::new(),
            poll_min: Duration::from_secs(2),
            poll_ceiling: Duration::from_secs(60),
            recovery_grace: Duration::from_secs(120),
            not_found_grace: Duration::from_secs(60),
            deletion_bound: Duration::from_secs(600),
            api_timeout: Duration::from_secs(10),
            api_retry: RetryPolicy::default(),
            concurrency: 8,
            instance: "dataforest-operator".to_owned(),
        }
    }
}

/// Errors of one reconcile. Permanent API answers are not errors: they park the AiApp on
/// a condition (see `apply`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not build the Data Forest client: {0}")]
    Client(#[from] crate::dataforest::ClientBuildError),
    /// Deletion waits for Data Forest to show the killed app ended; not a failure.
    #[error("waiting for app {id} to end before releasing the AiApp")]
    AwaitingKill { id: String },
    #[error(transparent)]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Label for the errors-by-kind metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "Kubernetes",
            Error::Client(_) => "ClientBuild",
            Error::AwaitingKill { .. } => "AwaitingKill",
            Error::Finalizer(error) => match error.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.kind(),
                _ => "Finalizer",
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the operator remembers about one AiApp between reconciles, in memory only: a
/// restart loses it and costs at most one extra API call per AiApp.
#[derive(Clone, Debug)]
struct Gate {
    /// No API call for this AiApp before this instant...
    not_before: Instant,
    /// ...or at all, while parked on a permanent error or a question for a person...
    parked: bool,
    /// ...unless the AiApp or its Secret changed since.
    fingerprint: Fingerprint,
    /// The last poll interval, for the back-off.
    poll_interval: Option<Duration>,
}

/// What a person can change to wake a parked AiApp.
#[derive(Clone, Debug, PartialEq)]
struct Fingerprint {
    generation: Option<i64>,
    annotations: BTreeMap<String, String>,
    secret_version: Option<String>,
}

/// What `run` needs besides the configuration.
pub struct Runtime {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    /// The lease this instance holds; every submit first checks it outlives the call.
    /// `None` only where one process is guaranteed (tests of a single operator).
    pub leadership: Option<Leadership>,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub config: ControllerConfig,
    metrics: Arc<Metrics>,
    leadership: Option<Leadership>,
    http: reqwest::Client,
    recorder: Recorder,
    store: Store<AiApp>,
    gates: Mutex<HashMap<ObjectRef<AiApp>, Gate>>,
    /// Last credentials that worked per AiApp, so deletion can kill an app after its
    /// Secret is gone (a namespace deletion removes both at once).
    last_credentials: Mutex<HashMap<ObjectRef<AiApp>, ResolvedCredentials>>,
    /// When getDetail began answering "not found" for an AiApp's app, for the grace
    /// period; a restart starts the grace again, which errs on the side of waiting.
    not_found_since: Mutex<HashMap<ObjectRef<AiApp>, Timestamp>>,
    /// When deletion last sent kill for an AiApp's app.
    kills_sent: Mutex<HashMap<ObjectRef<AiApp>, Instant>>,
}

impl Context {
    /// A Data Forest client for these credentials, sharing the connection pool.
    fn dataforest(&self, resolved: &ResolvedCredentials) -> Result<Arc<dyn DataForestApi>> {
        let config = ClientConfig {
            endpoint: resolved.endpoint.clone(),
            timeout: self.config.api_timeout,
            retry: self.config.api_retry.clone(),
            ..ClientConfig::default()
        };
        let client = DataForestClient::with_http_client(
            self.http.clone(),
            config,
            resolved.credentials.clone(),
        )?;
        Ok(Arc::new(InstrumentedApi::new(
            Arc::new(client),
            self.metrics.clone(),
        )))
    }

    /// Whether this instance may submit now: it leads, and its lease outlives the call
    /// (its timeout plus a margin), so a successor cannot submit the same AiApp meanwhile.
    fn may_submit(&self) -> bool {
        self.leadership.as_ref().is_none_or(|leadership| {
            leadership.valid_for() > self.config.api_timeout + SUBMIT_MARGIN
        })
    }

    fn gate(&self, key: &ObjectRef<AiApp>) -> Option<Gate> {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn set_gate(&self, key: ObjectRef<AiApp>, gate: Gate) {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, gate);
    }

    fn forget_gate(&self, key: &ObjectRef<AiApp>) {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// When "not found" began for this AiApp's app (now, if this is the first).
    fn not_found_since(&self, key: &ObjectRef<AiApp>, now: Timestamp) -> Timestamp {
        *self
            .not_found_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_insert(now)
    }

    fn found(&self, key: &ObjectRef<AiApp>) {
        self.not_found_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Whether deletion should send kill now: first time, or again after a while.
    fn kill_due(&self, key: &ObjectRef<AiApp>) -> bool {
        const KILL_AGAIN_AFTER: Duration = Duration::from_secs(30);
        let mut sent = self.kills_sent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match sent.get(key) {
            Some(last) if now.duration_since(*last) < KILL_AGAIN_AFTER => false,
            _ => {
                sent.insert(key.clone(), now);
                true
            }
        }
    }

    fn forget(&self, key: &ObjectRef<AiApp>) {
        self.found(key);
        self.kills_sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.last_credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    fn remember_credentials(&self, key: ObjectRef<AiApp>, resolved: ResolvedCredentials) {
        self.last_credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, resolved);
    }

    fn remembered_credentials(&self, key: &ObjectRef<AiApp>) -> Option<ResolvedCredentials> {
        self.last_credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// App ids that other AiApps already hold; recovery never adopts one of them.
    fn claimed_ids(&self, except: &ObjectRef<AiApp>) -> std::collections::HashSet<String> {
        self.store
            .state()
            .iter()
            .filter(|app| &ObjectRef::from_obj(app.as_ref()) != except)
            .filter_map(|app| app.status.as_ref().and_then(|s| s.id.clone()))
            .collect()
    }

    /// Other AiApps that recorded `prefix` in their marker and have no app id yet.
    fn rivals(&self, except: &ObjectRef<AiApp>, prefix: &str) -> usize {
        self.store
            .state()
            .iter()
            .filter(|app| &ObjectRef::from_obj(app.as_ref()) != except)
            .filter_map(|app| app.status.as_ref())
            .filter(|status| status.id.is_none())
            .filter(|status| {
                status
                    .submission
                    .as_ref()
                    .is_some_and(|m| m.name_prefix == prefix)
            })
            .count()
    }

    /// Publishes an Event; a failure to do so is logged, never fatal.
    async fn event(&self, app: &AiApp, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &app.object_ref(&())).await {
            warn!(%error, "could not publish an Event");
        }
    }
}

/// Writes the whole status by server-side apply under the operator's field manager;
/// what it leaves out, the operator no longer owns and the apiserver removes. With
/// `resource_version`, the write fails with a conflict if the AiApp changed since it was read.
async fn write_status(
    api: &Api<AiApp>,
    app: &AiApp,
    status: &AiAppStatus,
    resource_version: Option<&str>,
) -> Result<AiApp, kube::Error> {
    let mut metadata = serde_json::json!({"name": app.name_any()});
    if let Some(version) = resource_version {
        metadata["resourceVersion"] = version.into();
    }
    let body = serde_json::json!({
        "apiVersion": AiApp::api_version(&()),
        "kind": AiApp::kind(&()),
        "metadata": metadata,
        "status": status,
    });
    api.patch_status(
        &app.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
}

async fn reconcile(app: Arc<AiApp>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = app.namespace().unwrap_or_default();
    if !ctx.config.namespaces.is_empty() && !ctx.config.namespaces.contains(&namespace) {
        // Not ours: no finalizer, no status, no API call.
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.reconcile_started();
    let api: Api<AiApp> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, app, |event| async {
        match event {
            FinalizerEvent::Apply(app) => apply::apply(app, &ctx, &api).await,
            FinalizerEvent::Cleanup(app) => cleanup::cleanup(app, &ctx, &api).await,
        }
    })
    .await
    .map_err(|error| match error {
        // Unwrap the quiet wait so error_policy can tell it apart.
        kube::runtime::finalizer::Error::CleanupFailed(Error::AwaitingKill { id }) => {
            Error::AwaitingKill { id }
        }
        other => Error::Finalizer(Box::new(other)),
    })
}

fn error_policy(app: Arc<AiApp>, error: &Error, ctx: Arc<Context>) -> Action {
    match error {
        Error::AwaitingKill { .. } => Action::requeue(Duration::from_secs(2)),
        _ => {
            ctx.metrics.reconcile_failed(error.kind());
            warn!(aiapp = %ObjectRef::from_obj(app.as_ref()), %error, "reconcile failed; retrying");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    runtime: Runtime,
    config: ControllerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let Runtime {
        client,
        metrics,
        leadership,
    } = runtime;
    let (aiapps, secrets) = match config.namespaces.as_slice() {
        [one] => (
            Api::<AiApp>::namespaced(client.clone(), one),
            Api::namespaced(client.clone(), one),
        ),
        _ => (Api::<AiApp>::all(client.clone()), Api::all(client.clone())),
    };
    let http = DataForestClient::http_client(&ClientConfig {
        timeout: config.api_timeout,
        ..ClientConfig::default()
    })?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(config.instance.clone()),
        },
    );
    let controller = Controller::new(aiapps, watcher::Config::default().any_semantic())
        .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency));
    let store = controller.store();
    let mapping_store = store.clone();
    // Secrets are watched by metadata only: the operator never caches their values.
    let secrets: Api<PartialObjectMeta<Secret>> = secrets;
    let concurrency = config.concurrency;
    let ctx = Arc::new(Context {
        client,
        config,
        metrics: metrics.clone(),
        leadership,
        http,
        recorder,
        store,
        gates: Mutex::default(),
        last_credentials: Mutex::default(),
        not_found_since: Mutex::default(),
        kills_sent: Mutex::default(),
    });
    info!(concurrency, "starting the AiApp controller");
    let gauge = tokio::spawn(report_phases(ctx.store.clone(), metrics));
    controller
        .watches(secrets, watcher::Config::default(), move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            mapping_store
                .state()
                .into_iter()
                .filter(|app| app.namespace() == namespace)
                .filter(|app| {
                    app.spec
                        .credentials
                        .as_ref()
                        .is_some_and(|c| c.secret_name == name)
                })
                .map(|app| ObjectRef::from_obj(app.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    gauge.abort();
    info!("the AiApp controller stopped");
    Ok(())
}

/// Keeps the AiApps-by-phase gauge current from the controller's cache.
async fn report_phases(store: Store<AiApp>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
        for app in store.state() {
            let phase = app
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or(crate::crd::Phase::Pending);
            *counts.entry(crate::metrics::phase_name(phase)).or_default() += 1;
        }
        let counts: Vec<(&str, i64)> = counts.into_iter().collect();
        metrics.set_aiapps_by_phase(&counts);
    }
}
