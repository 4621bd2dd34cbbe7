//! `dataforest-operator run`: flags, the health and metrics server, waiting for the CRD,
//! leader election, and the controller, until SIGTERM or the lease is lost.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ListParams;
use kube::{Api, Client};
use tracing::{error, info, warn};

use crate::cli::{BINARY, COMMIT};
use crate::controller::{self, ControllerConfig, Runtime};
use crate::crd::AiApp;
use crate::credentials::{CredentialsPolicy, DefaultSecret};
use crate::dataforest::budget::Budget;
use crate::dataforest::{DEFAULT_ENDPOINT, RetryPolicy};
use crate::health::{self, Health};
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::Metrics;
use crate::shard::{self, Claim};
use dataforest_common::duration::parse_duration;
use dataforest_common::signal::stop_requested;

/// How long an instance whose namespaces another live instance claims waits before it
/// looks again.
const CLAIM_RETRY: Duration = Duration::from_secs(15);

/// Flags of `run`; each can also come from the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// API base URL for AiApps whose Secret names none.
    #[arg(long, env = "DATAFOREST_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Base URLs the operator may call (comma-separated); a Secret's endpoint must be one.
    #[arg(long, env = "DATAFOREST_ALLOWED_ENDPOINTS", value_delimiter = ',', default_value = DEFAULT_ENDPOINT)]
    pub allowed_endpoints: Vec<String>,
    /// Watch only these namespaces, comma-separated, one watch each: the operator then
    /// needs a Role in each and no cluster-wide right (default: all namespaces).
    #[arg(long = "namespace", env = "WATCH_NAMESPACE", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// A credentials Secret in the operator's own namespace (--lease-namespace) for
    /// AiApps without spec.credentials in the namespaces of
    /// --default-credentials-namespaces; its keys have the default names.
    #[arg(long, env = "DEFAULT_CREDENTIALS_SECRET")]
    pub default_credentials_secret: Option<String>,
    /// Namespaces whose AiApps without spec.credentials use --default-credentials-secret,
    /// comma-separated. Anyone who may create AiApps there spends that Secret's account.
    #[arg(
        long = "default-credentials-namespaces",
        env = "DEFAULT_CREDENTIALS_NAMESPACES",
        value_delimiter = ','
    )]
    pub default_credentials_namespaces: Vec<String>,
    /// First poll interval after a change, e.g. `2s`.
    #[arg(long, env = "POLL_MIN", value_parser = parse_duration, default_value = "2s")]
    pub poll_min: Duration,
    /// Longest interval between two polls of a running app.
    #[arg(long, env = "POLL_CEILING", value_parser = parse_duration, default_value = "60s")]
    pub poll_ceiling: Duration,
    /// Polls a second of one account's apps from which they share one getList a second
    /// instead of a getDetail each, while the list shows them as last recorded (needs the
    /// account id in the Secret); 0 (the default) never. 10 suits an account whose many
    /// long-running apps press on the per-key budget.
    #[arg(long, env = "POLLS_FOR_LISTING", default_value_t = crate::controller::POLLS_FOR_LISTING)]
    pub polls_for_listing: u32,
    /// How long an app may take to show in getList after a submit whose answer was lost.
    #[arg(long, env = "RECOVERY_GRACE", value_parser = parse_duration, default_value = "2m")]
    pub recovery_grace: Duration,
    /// How many times recovery submits again on its own after no app was listed within the
    /// grace; past that the AiApp goes to phase Unknown and a person decides.
    #[arg(long, env = "MAX_AUTOMATIC_RESUBMITS", default_value_t = 1)]
    pub max_automatic_resubmits: usize,
    /// Data Forest calls per second per access key (also the burst); a 429 slows the key.
    #[arg(long, env = "API_RATE_LIMIT", default_value_t = 200.0)]
    pub api_rate_limit: f64,
    /// How long getDetail may answer "not found" for a known app before phase Unknown.
    #[arg(long, env = "NOT_FOUND_GRACE", value_parser = parse_duration, default_value = "1m")]
    pub not_found_grace: Duration,
    /// How long a deletion waits for a killed app to end.
    #[arg(long, env = "DELETION_TIMEOUT", value_parser = parse_duration, default_value = "10m")]
    pub deletion_timeout: Duration,
    /// Timeout of one Data Forest API call.
    #[arg(long, env = "API_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub api_timeout: Duration,
    /// AiApps reconciled at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "dataforest-operator")]
    pub lease_name: String,
    /// This instance's identity in the Lease and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long the lease lasts without a renew; it is renewed every third of it, and
    /// must outlast a submit call (two thirds of it above --api-timeout plus 1s).
    #[arg(long, env = "LEASE_DURATION", value_parser = parse_duration, default_value = "30s")]
    pub lease_duration: Duration,
}

impl RunArgs {
    /// Checks the flags against each other; the error names them.
    pub fn validate(&self) -> Result<(), String> {
        // Just before a renew, a third of the lease has gone by; what is left must still
        // cover a whole submit, or the leader would never submit.
        let left_before_renew = self.lease_duration - self.renew_every();
        if left_before_renew <= self.api_timeout + controller::SUBMIT_MARGIN {
            return Err(format!(
                "--lease-duration {:?} is too short for --api-timeout {:?}: two thirds of the lease must exceed \
                 the API timeout plus {:?}",
                self.lease_duration,
                self.api_timeout,
                controller::SUBMIT_MARGIN
            ));
        }
        if self.poll_min > self.poll_ceiling {
            return Err(format!(
                "--poll-min {:?} is longer than --poll-ceiling {:?}",
                self.poll_min, self.poll_ceiling
            ));
        }
        if !(self.api_rate_limit.is_finite() && self.api_rate_limit > 0.0) {
            return Err(format!(
                "--api-rate-limit must be a positive number of calls per second, got {}",
                self.api_rate_limit
            ));
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".to_owned());
        }
        self.credentials_policy().map(drop)
    }

    /// `--endpoint` and `--allowed-endpoints`, parsed once: a Secret's endpoint is then
    /// checked against parsed URLs in one place.
    pub fn credentials_policy(&self) -> Result<CredentialsPolicy, String> {
        Ok(
            CredentialsPolicy::new(&self.endpoint, &self.allowed_endpoints)?
                .with_default_secret(self.default_secret()?),
        )
    }

    /// `--default-credentials-secret` with its `--default-credentials-namespaces`: both or
    /// neither, so a default Secret never serves namespaces nobody listed.
    pub fn default_secret(&self) -> Result<Option<DefaultSecret>, String> {
        let name = self
            .default_credentials_secret
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty());
        let serves: Vec<String> = self
            .default_credentials_namespaces
            .iter()
            .map(|ns| ns.trim())
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned)
            .collect();
        let name = match (name, serves.is_empty()) {
            (None, true) => return Ok(None),
            (Some(name), false) => name,
            (Some(_), true) => {
                return Err(
                    "--default-credentials-secret is set but --default-credentials-namespaces is \
                     not: list the namespaces whose AiApps may use the default Secret \
                     (DEFAULT_CREDENTIALS_NAMESPACES)"
                        .to_owned(),
                );
            }
            (None, false) => {
                return Err(
                    "--default-credentials-namespaces is set but --default-credentials-secret is \
                     not: name the Secret in the operator's namespace (DEFAULT_CREDENTIALS_SECRET)"
                        .to_owned(),
                );
            }
        };
        if !is_dns_subdomain(name) {
            return Err(format!(
                "--default-credentials-secret {name:?} is not a Secret name (lower-case letters, digits, \
                 '-' and '.', at most 253 characters)"
            ));
        }
        if let Some(bad) = serves.iter().find(|ns| !is_dns_label(ns)) {
            return Err(format!(
                "--default-credentials-namespaces: {bad:?} is not a namespace name (lower-case letters, \
                 digits and '-', at most 63 characters)"
            ));
        }
        Ok(Some(DefaultSecret {
            namespace: self.lease_namespace.clone(),
            name: name.to_owned(),
            serves,
        }))
    }

    /// The namespaces to watch, as written but without blanks; empty means all.
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|ns| ns.trim())
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn renew_every(&self) -> Duration {
        self.lease_duration / 3
    }

    fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
    }

    /// The controller's settings from the flags, once [`RunArgs::validate`] passed.
    pub fn controller_config(&self) -> Result<ControllerConfig, String> {
        Ok(ControllerConfig {
            credentials: self.credentials_policy()?,
            namespaces: self.watched_namespaces(),
            poll_min: self.poll_min,
            poll_ceiling: self.poll_ceiling,
            recovery_grace: self.recovery_grace,
            max_automatic_resubmits: self.max_automatic_resubmits,
            api_budget: Budget {
                per_second: self.api_rate_limit,
                burst: self.api_rate_limit.max(1.0),
            },
            not_found_grace: self.not_found_grace,
            deletion_bound: self.deletion_timeout,
            api_timeout: self.api_timeout,
            api_retry: RetryPolicy::default(),
            concurrency: self.concurrency,
            polls_for_listing: self.polls_for_listing,
            instance: self.identity(),
        })
    }
}

/// A DNS-1123 label, as namespace names are.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A DNS-1123 subdomain, as Secret names are.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// Runs the operator; exit status 1 when it lost its lease or could not start.
pub fn run(args: &RunArgs) -> ExitCode {
    let config = match args.validate().and_then(|()| args.controller_config()) {
        Ok(config) => {
            if let Some(default) = config.credentials.default_secret() {
                info!(secret = %format!("{}/{}", default.namespace, default.name),
                    namespaces = ?default.serves,
                    "AiApps without spec.credentials in these namespaces use the default credentials Secret");
                let watched = &config.namespaces;
                let unwatched: Vec<&String> = default
                    .serves
                    .iter()
                    .filter(|ns| !watched.is_empty() && !watched.contains(ns))
                    .collect();
                if !unwatched.is_empty() {
                    warn!(namespaces = ?unwatched,
                        "--default-credentials-namespaces lists namespaces outside --namespace; their AiApps are not reconciled");
                }
            }
            if !config.credentials.default_endpoint_allowed() {
                // Not fatal: AiApps whose Secret names an allowed endpoint still run.
                warn!(endpoint = %args.endpoint,
                    "--endpoint is not on --allowed-endpoints: AiApps whose Secret names no endpoint will wait");
            }
            config
        }
        Err(problem) => {
            eprintln!("dataforest-operator run: {problem}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dataforest-operator: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(operate(args.clone(), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The User-Agent of the operator's Kubernetes requests, as client-go writes one. The
/// apiserver takes the part before the first `/` as the field manager of every write that
/// names none (the finalizer patch, Event creates, Lease writes), so `kubectl get
/// --show-managed-fields` and audit logs name the operator instead of `unknown`.
fn user_agent() -> String {
    format!(
        "{BINARY}/{} ({}/{}) {BINARY}/{COMMIT}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

/// A client from the kubeconfig or the in-cluster config, whose requests carry
/// [`user_agent`].
async fn kubernetes_client() -> anyhow::Result<Client> {
    let config = kube::Config::infer().await?;
    let agent = http::HeaderValue::from_str(&user_agent())?;
    let name_requests =
        tower::util::MapRequestLayer::new(move |mut request: http::Request<kube::client::Body>| {
            request
                .headers_mut()
                .insert(http::header::USER_AGENT, agent.clone());
            request
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&name_requests)
        .build())
}

async fn operate(args: RunArgs, config: ControllerConfig) -> anyhow::Result<()> {
    let client = kubernetes_client()
        .await
        .context("connecting to Kubernetes")?;
    let metrics = Metrics::new();
    let health = Health::new();
    health.set_ready(false, "starting");
    let listener = tokio::net::TcpListener::bind(args.metrics_address)
        .await
        .with_context(|| format!("listening on {}", args.metrics_address))?;
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(health::serve(
        listener,
        metrics.clone(),
        health.clone(),
        async {
            let _ = server_stopped.await;
        },
    ));

    let outcome = lead_and_reconcile(&args, config, client, metrics, health).await;
    let _ = stop_server.send(());
    let _ = server.await;
    outcome
}

async fn lead_and_reconcile(
    args: &RunArgs,
    config: ControllerConfig,
    client: Client,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> anyhow::Result<()> {
    let signal = stop_requested();
    tokio::pin!(signal);
    metrics.set_leader(&args.lease_name, false);
    let namespaces = args.watched_namespaces();
    tokio::select! {
        () = wait_for_crd(&client, &namespaces, &health) => {}
        () = &mut signal => return Ok(()),
    }
    // Followers are ready too: they serve probes and metrics, and take over at once.
    health.set_ready(true, "ok");
    let identity = args.identity();
    let claim = Claim::of(&namespaces);
    let lease = LeaseConfig {
        lease_duration: args.lease_duration,
        renew_every: args.renew_every(),
        retry_every: args.lease_duration / 5,
        claim: Some(claim.clone()),
        ..LeaseConfig::new(&args.lease_namespace, &args.lease_name, &identity)
    };
    let claims: Api<Lease> = Api::namespaced(client.clone(), &args.lease_namespace);
    let (elector, leadership) = loop {
        let elector = LeaderElector::start(client.clone(), lease.clone());
        let leadership = elector.leadership();
        let (gauge, lease_name) = (metrics.clone(), args.lease_name.clone());
        leadership.report_to(move |leading| gauge.set_leader(&lease_name, leading));
        info!(%identity, lease = %args.lease_name, "waiting to lead");
        tokio::select! {
            () = leadership.acquired() => {}
            () = &mut signal => {
                elector.release().await;
                return Ok(());
            }
        }
        // Checked while holding our Lease, which carries our claim: of two instances that
        // start at once, at least one sees the other.
        match shard::check(&claims, &args.lease_name, &claim).await {
            Ok(()) => break (elector, leadership),
            Err(problem) => {
                warn!("{problem}");
                health.set_ready(false, problem.to_string());
                elector.release().await;
                tokio::select! {
                    () = tokio::time::sleep(controller::jittered(CLAIM_RETRY)) => {}
                    () = &mut signal => return Ok(()),
                }
                health.set_ready(true, "ok");
            }
        }
    };
    info!(%identity, "leading: reconciling AiApps");
    let lost = leadership.clone();
    let runtime = Runtime {
        client,
        metrics,
        leadership: Some(leadership.clone()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reconciling = controller::run(runtime, config, async {
        let _ = stopped.await;
    });
    tokio::pin!(reconciling);
    tokio::select! {
        result = &mut reconciling => {
            elector.release().await;
            result
        }
        () = &mut signal => {
            info!("stopping on a signal: finishing reconciles in flight, then releasing the lease");
            let _ = stop.send(());
            let result = reconciling.await;
            elector.release().await;
            result
        }
        () = lost.lost() => {
            // Reconciles in flight may finish, but none submits any more (each checks the
            // lease right before its call); one already answered writes its id. Bounded,
            // so a hung call cannot keep a former leader alive.
            let _ = stop.send(());
            let bound = args.api_timeout + controller::KUBE_CALL_TIMEOUT * 2;
            if tokio::time::timeout(bound, reconciling).await.is_err() {
                warn!(?bound, "reconciles still running after losing the lease; exiting anyway");
            }
            anyhow::bail!("lost the leader lease; exiting so that only the new leader reconciles")
        }
    }
}

/// Waits until the AiApp CRD is served; under Argo CD sync order it can arrive after
/// the operator. Meanwhile the operator is alive but not ready, and says why.
async fn wait_for_crd(client: &Client, namespaces: &[String], health: &Health) {
    // Ask where the operator may list: an operator given namespaces has no cluster-wide right.
    let scope = crate::controller::scope::Scope::of(namespaces);
    loop {
        let mut refused = None;
        for aiapps in scope.apis::<AiApp>(client) {
            if let Err(error) = aiapps.list(&ListParams::default().limit(1)).await {
                refused = Some(error);
                break;
            }
        }
        let Some(error) = refused else {
            return;
        };
        let reason = format!("the CRD aiapps.dataforest.dev is not served yet: {error}");
        warn!("{reason}; retrying in 5s");
        health.set_ready(false, reason);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let argv = std::iter::once("run").chain(extra.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv)
            .expect("flags parse")
            .run
    }

    #[test]
    fn a_namespace_list_is_read_without_blanks() {
        let args = args(&["--namespace", "team-a, team-b,,"]);
        assert_eq!(args.watched_namespaces(), ["team-a", "team-b"]);
        assert!(super::RunArgs::watched_namespaces(&self::args(&[])).is_empty());
    }

    #[test]
    fn the_default_flags_are_consistent() {
        assert_eq!(args(&[]).validate(), Ok(()));
    }

    #[test]
    fn a_default_secret_needs_its_namespaces_and_lives_in_the_operators_namespace() {
        let problem = args(&["--default-credentials-secret", "platform-ncp"])
            .validate()
            .unwrap_err();
        assert!(
            problem.starts_with(
                "--default-credentials-secret is set but --default-credentials-namespaces is not"
            ),
            "{problem}"
        );
        let problem = args(&["--default-credentials-namespaces", "team-a"])
            .validate()
            .unwrap_err();
        assert!(
            problem.starts_with(
                "--default-credentials-namespaces is set but --default-credentials-secret is not"
            ),
            "{problem}"
        );
        let problem = args(&[
            "--default-credentials-secret=Platform_NCP",
            "--default-credentials-namespaces=team-a",
        ])
        .validate()
        .unwrap_err();
        assert!(
            problem.contains("--default-credentials-secret \"Platform_NCP\""),
            "{problem}"
        );
        let problem = args(&[
            "--default-credentials-secret=platform-ncp",
            "--default-credentials-namespaces=team-a,Team_B",
        ])
        .validate()
        .unwrap_err();
        assert!(problem.contains("\"Team_B\""), "{problem}");

        let both = args(&[
            "--lease-namespace=dataforest-system",
            "--default-credentials-secret=platform-ncp",
            "--default-credentials-namespaces=team-a, team-b,,",
        ]);
        assert_eq!(both.validate(), Ok(()));
        assert_eq!(
            both.default_secret().unwrap(),
            Some(DefaultSecret {
                namespace: "dataforest-system".to_owned(),
                name: "platform-ncp".to_owned(),
                serves: vec!["team-a".to_owned(), "team-b".to_owned()],
            })
        );
        // Blank values, as an unset Helm value may render, are no setting at all.
        let blank = args(&[
            "--default-credentials-secret=",
            "--default-credentials-namespaces=",
        ]);
        assert_eq!(blank.default_secret(), Ok(None));
    }

    #[test]
    fn a_lease_too_short_for_the_api_timeout_is_refused_naming_both_flags() {
        let problem = args(&["--lease-duration", "3s", "--api-timeout", "5s"])
            .validate()
            .unwrap_err();
        assert!(
            problem.contains("--lease-duration") && problem.contains("--api-timeout"),
            "{problem}"
        );
        let problem = args(&["--poll-min", "10s", "--poll-ceiling", "5s"])
            .validate()
            .unwrap_err();
        assert!(problem.contains("--poll-min"), "{problem}");
    }
}
