//! The AiApp controller: Context, `run`, `reconcile` through the finalizer helper, and
//! `error_policy`. What to do is decided by pure code (`plan`, `transition`); the steps
//! that call Data Forest live in `apply` (submit, adopt), `recover` and `poll`; deletion in
//! `cleanup`; and `effect` is the one place that writes status and Events.

mod apply;
mod cleanup;
mod default_secret;
mod effect;
mod env_secrets;
mod events;
mod keys;
mod listing;
pub use listing::POLLS_FOR_LISTING;
mod memory;
mod poll;
mod recover;
pub mod scope;
mod secrets_seen;
mod slots;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::crd::{AiApp, AiAppStatus, FIELD_MANAGER, FINALIZER};
use crate::credentials::{CredentialsPolicy, ResolvedCredentials};
use crate::dataforest::budget::{Budget, Budgets};
use crate::dataforest::{ClientConfig, DataForestApi, DataForestClient, RetryPolicy};
use crate::leader::Leadership;
use crate::metrics::{InstrumentedApi, Metrics};
use secrets_seen::SecretsSeen;

use keys::Refusals;
use listing::Listings;
use memory::Memory;
use scope::Scope;

/// How much longer than one API call the lease must stay valid before a submit.
pub const SUBMIT_MARGIN: Duration = Duration::from_secs(1);

/// Bound on every Kubernetes call a reconcile makes (watches aside): a hung apiserver
/// must not hold a reconcile, or a leader's submit, for ever.
pub const KUBE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping controller waits for its queued Events to be sent.
const EVENTS_AT_SHUTDOWN: Duration = Duration::from_secs(3);

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
    /// How many times recovery submits again on its own after finding nothing; past that,
    /// phase Unknown and a person decides.
    pub max_automatic_resubmits: usize,
    /// How long getDetail may answer "not found" for a known id before phase Unknown.
    pub not_found_grace: Duration,
    /// How long deletion waits for a killed app to end before releasing the finalizer.
    pub deletion_bound: Duration,
    /// Timeout and retries of each API call.
    pub api_timeout: Duration,
    pub api_retry: RetryPolicy,
    /// Calls per second per access key.
    pub api_budget: Budget,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Polls a second of one account's apps from which they share one getList a second
    /// instead of a getDetail each while they stay as recorded; 0 (the default) never.
    pub polls_for_listing: u32,
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
            max_automatic_resubmits: 1,
            not_found_grace: Duration::from_secs(60),
            deletion_bound: Duration::from_secs(600),
            api_timeout: Duration::from_secs(10),
            api_retry: RetryPolicy::default(),
            api_budget: Budget::default(),
            concurrency: 32,
            polls_for_listing: listing::POLLS_FOR_LISTING,
            instance: "dataforest-operator".to_owned(),
        }
    }
}

/// Errors of one reconcile. Permanent API answers are not errors: they park the AiApp on
/// a condition (see `effect`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the Kubernetes API did not answer within {KUBE_CALL_TIMEOUT:?}")]
    KubeTimeout,
    /// A status write found the AiApp changed since it was read: re-read and re-plan.
    #[error("the AiApp changed since it was read")]
    Conflict,
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
            Error::KubeTimeout => "KubernetesTimeout",
            Error::Conflict => "Conflict",
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

/// Runs one Kubernetes call within [`KUBE_CALL_TIMEOUT`].
pub(crate) async fn bounded<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T> {
    match tokio::time::timeout(KUBE_CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(kube::Error::Api(response))) if response.code == 409 => Err(Error::Conflict),
        Ok(Err(error)) => Err(Error::Kube(error)),
        Err(_) => Err(Error::KubeTimeout),
    }
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
    events: events::EventSink,
    store: Store<AiApp>,
    memory: Memory,
    budgets: Arc<Budgets>,
    refusals: Refusals,
    listings: Listings,
    /// Credentials resolved from Secrets the watch shows unchanged since.
    secrets_seen: SecretsSeen,
    /// Which of polls and submits may take a reconcile slot.
    slots: slots::Slots,
}

impl Context {
    /// A Data Forest client for these credentials, sharing the connection pool and the
    /// key's budget.
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
        )?
        .with_budget(self.budgets.for_key(&resolved.credentials.access_key));
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

    /// App ids that other AiApps hold or recorded; recovery never adopts one of them.
    fn claimed_ids(&self, except_uid: &str) -> HashSet<String> {
        self.others(except_uid)
            .flat_map(|status| {
                let recorded = status.attempts.iter().filter_map(|a| a.id.as_deref());
                status
                    .id
                    .as_deref()
                    .into_iter()
                    .chain(recorded)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Other AiApps that still look for an app under one of `prefixes`.
    fn rivals(&self, except_uid: &str, prefixes: &HashSet<&str>) -> usize {
        self.others(except_uid)
            .filter(|status| status.id.is_none())
            .filter(|status| {
                let looking = status
                    .attempts
                    .iter()
                    .filter(|a| a.outcome.may_have_unknown_app())
                    .map(|a| a.name_prefix.as_str());
                let marker = status.submission.as_ref().map(|m| m.name_prefix.as_str());
                looking.chain(marker).any(|p| prefixes.contains(p))
            })
            .count()
    }

    fn others(&self, except_uid: &str) -> impl Iterator<Item = AiAppStatus> {
        let except = except_uid.to_owned();
        self.store
            .state()
            .into_iter()
            .filter(move |app| app.metadata.uid.as_deref() != Some(except.as_str()))
            .filter_map(|app| app.status.clone())
    }
}

/// Writes the whole status by server-side apply under the operator's field manager;
/// what it leaves out, the operator no longer owns and the apiserver removes. The write
/// carries the resourceVersion `app` was read at, so a status computed from a stale copy
/// fails with [`Error::Conflict`] instead of dropping what a newer one holds.
pub async fn write_status(api: &Api<AiApp>, app: &AiApp, status: &AiAppStatus) -> Result<AiApp> {
    let mut metadata = serde_json::json!({"name": app.name_any()});
    if let Some(version) = app.metadata.resource_version.as_deref() {
        metadata["resourceVersion"] = version.into();
    }
    let body = serde_json::json!({
        "apiVersion": AiApp::api_version(&()),
        "kind": AiApp::kind(&()),
        "metadata": metadata,
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    bounded(api.patch_status(&app.name_any(), &params, &Patch::Apply(&body))).await
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
        // A quiet wait, with jitter so that many deletions do not poll in step.
        Error::AwaitingKill { .. } => Action::requeue(jittered(Duration::from_secs(2))),
        _ => {
            ctx.metrics.reconcile_failed(error.kind());
            warn!(aiapp = %ObjectRef::from_obj(app.as_ref()), %error, "reconcile failed; retrying");
            Action::requeue(jittered(Duration::from_secs(5)))
        }
    }
}

/// `base` plus up to a quarter more, at random.
pub fn jittered(base: Duration) -> Duration {
    base + base.mul_f64(fastrand::f64() / 4.0)
}

/// Runs the controller until `shutdown` resolves. Before it returns, it tries once to
/// write every app id a submit answered that is not yet in status.
pub async fn run(
    runtime: Runtime,
    config: ControllerConfig,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let Runtime {
        client,
        metrics,
        leadership,
    } = runtime;
    let scope = Scope::of(&config.namespaces);
    let http = DataForestClient::http_client(&ClientConfig {
        timeout: config.api_timeout,
        ..ClientConfig::default()
    })?;
    let events = events::EventSink::start(
        client.clone(),
        events::Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: config.instance.clone(),
        },
        metrics.clone(),
    );
    // The cache holds AiApps trimmed of what the operator never reads (see `trim`); the
    // stream API that allows it is kube's `unstable-runtime-stream-control`.
    let (store, writer) = reflector::store();
    let aiapp_config = watcher::Config::default().any_semantic();
    let aiapp_events = match &scope {
        // One watch per namespace into one cache (see `scope`).
        Scope::Namespaces(namespaces) if namespaces.len() > 1 => scope::merge(
            namespaces.clone(),
            scope.apis(&client),
            aiapp_config,
            store.clone(),
        )
        .boxed(),
        _ => {
            let mut apis = scope.apis::<AiApp>(&client);
            watcher(apis.remove(0), aiapp_config)
                .default_backoff()
                .boxed()
        }
    };
    let trimmed = aiapp_events.modify(trim).reflect(writer).applied_objects();
    let controller = Controller::for_stream(trimmed, store.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency));
    let mapping_store = store.clone();
    // Secrets are watched by metadata only: no Secret's data is ever read by the watch,
    // one watch per namespace when the operator is given a list. The watch also tells
    // `secrets_seen` which version of each Secret its resolved credentials are of.
    let secret_events = futures::stream::select_all(
        scope
            .apis::<PartialObjectMeta<Secret>>(&client)
            .into_iter()
            .map(|api| {
                watcher(api, watcher::Config::default())
                    .default_backoff()
                    .touched_objects()
                    .boxed()
            }),
    );
    let concurrency = config.concurrency;
    let budgets = Budgets::new(config.api_budget);
    let ctx = Arc::new(Context {
        client,
        config,
        metrics: metrics.clone(),
        leadership,
        http,
        events,
        store,
        memory: Memory::default(),
        budgets,
        refusals: Refusals::default(),
        listings: Listings::default(),
        secrets_seen: SecretsSeen::default(),
        slots: slots::Slots::new(concurrency),
    });
    let seen_by_watch = ctx.clone();
    let default_secret =
        default_secret::watch(&ctx.client, ctx.config.credentials.default_secret());
    let seen_by_default_watch = ctx.clone();
    info!(concurrency, "starting the AiApp controller");
    let gauge = tokio::spawn(report_phases(ctx.store.clone(), metrics));
    controller
        .watches_stream(secret_events, move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            seen_by_watch.secrets_seen.saw(
                namespace.as_deref().unwrap_or_default(),
                &name,
                secret.resource_version(),
            );
            mapping_store
                .state()
                .into_iter()
                .filter(|app| app.namespace() == namespace)
                .filter(|app| {
                    app.spec
                        .credentials
                        .as_ref()
                        .is_some_and(|c| c.secret_name == name)
                        || crate::env_from::names_secret(&app.spec, &name)
                })
                .map(|app| ObjectRef::from_obj(app.as_ref()))
                .collect::<Vec<_>>()
        })
        // The operator's default credentials Secret, on a watch of its own.
        .watches_stream(default_secret, move |secret| {
            default_secret::wakes(&seen_by_default_watch, &secret)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()))
        .await;
    gauge.abort();
    apply::write_unwritten_ids(&ctx).await;
    ctx.events.close(EVENTS_AT_SHUTDOWN).await;
    info!("the AiApp controller stopped");
    Ok(())
}

/// Drops from a cached AiApp what no reconcile reads and what can outweigh the rest:
/// the managed fields (one entry per writer) and kubectl's copy of the whole last-applied
/// object. Every AiApp stays in the cache for its life, so this is most of its memory.
fn trim(app: &mut AiApp) {
    app.metadata.managed_fields = None;
    if let Some(annotations) = app.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// The annotation `kubectl apply` (client-side) keeps the whole applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Keeps the AiApps-by-phase gauges current from the controller's cache, once the cache
/// is filled: a count from an empty cache would read as "no AiApp". It runs while the
/// controller does, that is while leading; when it is aborted (the controller stopped:
/// released or lost the lease) its report drops and the series go, so that a follower
/// exports none rather than zeros.
///
/// The cache shows the whole first list at once (the reflector swaps it in), so a cache
/// with an AiApp is filled. An empty one may be an empty cluster: it is counted after
/// `CACHE_FILL_BOUND`. Not `Store::wait_until_ready`: kube's readiness wakes only the
/// last task that polled it, which would leave either this task or the controller asleep.
async fn report_phases(store: Store<AiApp>, metrics: Arc<Metrics>) {
    const CACHE_FILL_BOUND: Duration = Duration::from_secs(30);
    const CACHE_CHECK: Duration = Duration::from_millis(250);
    let started = tokio::time::Instant::now();
    while store.is_empty() && started.elapsed() < CACHE_FILL_BOUND {
        tokio::time::sleep(CACHE_CHECK).await;
    }
    let report = metrics.phase_report();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let apps = store.state();
        let counts = crate::metrics::PhaseCounts::of(
            apps.iter().map(AsRef::as_ref),
            k8s_openapi::jiff::Timestamp::now(),
        );
        report.set(&counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_no_managed_fields_nor_last_applied_copy() {
        let mut app: AiApp = serde_json::from_value(serde_json::json!({
            "apiVersion": "dataforest.dev/v1alpha1", "kind": "AiApp",
            "metadata": {
                "name": "train", "namespace": "ml",
                "annotations": {LAST_APPLIED: "{\"spec\":{}}", "dataforest.dev/paused": "true"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {"aiWorkspaceId": "ws", "docker": {"image": "i", "command": "c"}},
        }))
        .unwrap();
        trim(&mut app);
        assert_eq!(app.metadata.managed_fields, None);
        let annotations = app.metadata.annotations.unwrap();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(
            annotations.get("dataforest.dev/paused").map(String::as_str),
            Some("true"),
            "annotations the operator reads are kept"
        );
    }
}
