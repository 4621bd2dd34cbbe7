//! Several watched namespaces with namespaced RBAC only: the real binary, authenticated as
//! the chart's ServiceAccount with a bound token and given nothing but the RBAC the chart
//! renders for `watchNamespaces: [a, b]` (a Role and RoleBinding in each, the Lease's Role
//! in the release namespace, nothing cluster-wide), runs the AiApps of both namespaces and
//! leaves a third namespace's AiApp untouched.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, ensure};
use dataforest_operator::crd::{AiApp, Phase};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use libtest_mimic::Failed;
use serde::Deserialize as _;
use serde_json::{Value, json};

use crate::fixture::{self, TestContext};
use crate::world::{
    OperatorProcess, SECRET_KEY, SECRET_NAME, World, phase, spec, wait_for_leader, with_world,
};
use dataforest_emulator::Faults;

const CHART: &str = "charts/dataforest-operator";
/// The release's name: its full name (ServiceAccount, Roles, Lease) is the same.
const RELEASE: &str = "dataforest-operator";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `helm template` of the chart for a release in `namespace` with `args`.
fn render(namespace: &str, args: &[&str]) -> Result<Vec<Value>> {
    let helm = Command::new("bash")
        .arg(repo().join("hack/helm.sh"))
        .stderr(Stdio::inherit())
        .output()?;
    ensure!(helm.status.success(), "hack/helm.sh failed");
    let helm = String::from_utf8(helm.stdout)?.trim().to_owned();
    let out = Command::new(helm)
        .current_dir(repo())
        .args(["template", RELEASE, CHART, "--namespace", namespace])
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout)?;
    let mut objects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&yaml) {
        let object = Value::deserialize(document)?;
        if !object.is_null() {
            objects.push(object);
        }
    }
    Ok(objects)
}

/// `kubectl apply --server-side` of `objects`, as the admin.
fn apply(ctx: &TestContext, objects: &[&Value]) -> Result<()> {
    let mut yaml = String::new();
    for object in objects {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml_ng::to_string(object)?);
    }
    let mut child = ctx
        .kubectl()
        .args(["apply", "--server-side", "--field-manager=e2e", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "kubectl apply: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A kubeconfig for the control plane that authenticates as the ServiceAccount
/// `namespace/name` with a bound token (as a pod's projected token does); removed when
/// dropped.
struct ServiceAccountKubeconfig(PathBuf);

impl ServiceAccountKubeconfig {
    async fn create(ctx: &TestContext, namespace: &str, name: &str) -> Result<Self> {
        let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = accounts
            .create_token_request(name, &Default::default(), &request)
            .await?
            .status
            .context("no token in the TokenRequest")?
            .token;
        let mut config: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(ctx.kubeconfig())?)?;
        for user in config["users"].as_array_mut().context("kubeconfig users")? {
            user["user"] = json!({ "token": token });
        }
        let path = std::env::temp_dir().join(format!("{namespace}-{name}.kubeconfig"));
        std::fs::write(&path, serde_yaml_ng::to_string(&config)?)?;
        Ok(ServiceAccountKubeconfig(path))
    }
}

impl Drop for ServiceAccountKubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn create_namespace(ctx: &TestContext, name: &str) -> Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"dataforest.dev/test": "e2e"}}
    }))?;
    Api::<Namespace>::all(ctx.client.clone())
        .create(&Default::default(), &namespace)
        .await?;
    Ok(())
}

pub fn an_operator_with_the_charts_rbac_for_two_namespaces_runs_aiapps_there_and_leaves_a_third_alone()
-> Result<(), Failed> {
    fixture::run("namespaced-rbac", |ctx| async move {
        let release_namespace = ctx.namespace.clone();
        let [a, b, c] = ["a", "b", "c"].map(|s| format!("{release_namespace}-{s}"));
        for namespace in [&a, &b, &c] {
            create_namespace(&ctx, namespace).await?;
        }

        let objects = render(
            &release_namespace,
            &[
                "--set",
                &format!("watchNamespaces={{{a},{b}}}"),
                "--set",
                "crds.enabled=false",
                "--set",
                "admissionPolicy.enabled=false",
            ],
        )?;
        let kind = |o: &Value| o["kind"].as_str().unwrap_or_default().to_owned();
        let cluster_wide: Vec<String> = objects
            .iter()
            .filter(|o| kind(o).starts_with("Cluster"))
            .map(|o| format!("{} {}", kind(o), o["metadata"]["name"]))
            .collect();
        ensure!(
            cluster_wide.is_empty(),
            "cluster-wide RBAC: {cluster_wide:?}"
        );
        let rbac: Vec<&Value> = objects
            .iter()
            .filter(|o| matches!(kind(o).as_str(), "ServiceAccount" | "Role" | "RoleBinding"))
            .collect();
        let roles_in: Vec<&str> = rbac
            .iter()
            .filter(|o| o["kind"] == "Role")
            .filter_map(|o| o["metadata"]["namespace"].as_str())
            .collect();
        ensure!(
            roles_in.contains(&a.as_str()) && roles_in.contains(&b.as_str()),
            "Roles in {roles_in:?}"
        );
        apply(&ctx, &rbac)?;

        // The Deployment's environment, with a loopback emulator and faster timing.
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .context("no Deployment in the render")?;
        let mut env = BTreeMap::new();
        for entry in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .context("env")?
        {
            if let (Some(name), Some(value)) = (entry["name"].as_str(), entry["value"].as_str()) {
                env.insert(name.to_owned(), value.to_owned());
            }
        }
        ensure!(
            env.get("WATCH_NAMESPACE") == Some(&format!("{a},{b}")),
            "WATCH_NAMESPACE {:?}",
            env.get("WATCH_NAMESPACE")
        );

        let world =
            World::without_operator(ctx.client.clone(), &release_namespace, Faults::default())
                .await?;
        let metrics_address = format!(
            "127.0.0.1:{}",
            std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port()
        );
        let readyz = format!("http://{metrics_address}/readyz");
        let allowed = format!(
            "{},{}",
            env["DATAFOREST_ALLOWED_ENDPOINTS"],
            world.emulator.url()
        );
        for (name, value) in [
            ("DATAFOREST_ALLOWED_ENDPOINTS", allowed.as_str()),
            ("METRICS_ADDRESS", metrics_address.as_str()),
            ("LEASE_DURATION", "6s"),
            ("POLL_MIN", "200ms"),
            ("POLL_CEILING", "1s"),
            ("API_TIMEOUT", "2s"),
        ] {
            env.insert(name.to_owned(), value.to_owned());
        }
        let kubeconfig =
            ServiceAccountKubeconfig::create(&ctx, &release_namespace, RELEASE).await?;
        let identity = format!("{RELEASE}-7f9-rbac");

        with_world(world, |world| {
            Box::pin(async move {
                for namespace in [&a, &b, &c] {
                    world
                        .create_secret_in(namespace, SECRET_NAME, SECRET_KEY)
                        .await?;
                }
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let operator = OperatorProcess::start_with(world, &kubeconfig.0, &identity, &env)?;
                let outcome = async {
                    wait_for_leader(&world.client, &release_namespace, RELEASE, &identity).await?;
                    // Ready as a kubelet asks: /readyz finds the CRD served with these
                    // rights only.
                    let http = reqwest::Client::new();
                    let deadline = tokio::time::Instant::now() + crate::world::PATIENCE;
                    loop {
                        let answer = http.get(&readyz).send().await;
                        if answer.as_ref().is_ok_and(|a| a.status().is_success()) {
                            break;
                        }
                        ensure!(
                            tokio::time::Instant::now() < deadline,
                            "{readyz} never answered 200: {answer:?}"
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                    // The third namespace's AiApp first: by the time the others are done,
                    // the operator had every chance to touch it.
                    let aiapps = |namespace: &str| -> Api<AiApp> {
                        Api::namespaced(world.client.clone(), namespace)
                    };
                    for namespace in [&c, &a, &b] {
                        aiapps(namespace)
                            .create(
                                &Default::default(),
                                &AiApp::new("train", spec(100, 200, "SUCCEEDED")),
                            )
                            .await?;
                    }
                    for namespace in [&a, &b] {
                        let succeeded = kube::runtime::wait::await_condition(
                            aiapps(namespace),
                            "train",
                            |app: Option<&AiApp>| {
                                app.is_some_and(|a| phase(a) == Some(Phase::Succeeded))
                            },
                        );
                        tokio::time::timeout(crate::world::PATIENCE, succeeded)
                            .await
                            .with_context(|| format!("{namespace}/train did not succeed"))??;
                    }
                    let untouched = aiapps(&c).get("train").await?;
                    ensure!(
                        untouched.status.is_none() && untouched.metadata.finalizers.is_none(),
                        "the operator touched {c}/train: {:?} {:?}",
                        untouched.metadata.finalizers,
                        untouched.status
                    );
                    let apps = world.emulator.apps();
                    ensure!(
                        apps.len() == 2,
                        "want one app per watched namespace: {apps:?}"
                    );

                    let log = operator.read_log()?;
                    for line in log.lines() {
                        let lower = line.to_lowercase();
                        ensure!(
                            !lower.contains("forbidden") && !lower.contains("could not publish"),
                            "the operator met a permission problem: {line}"
                        );
                    }
                    ensure!(!log.contains(SECRET_KEY), "the secret key was logged");
                    Ok(())
                }
                .await;
                let mut operator = operator;
                let stopped = operator.terminate().await;
                if outcome.is_err() {
                    eprintln!("--- operator log ---\n{}", operator.read_log()?);
                }
                outcome?;
                ensure!(stopped?, "the operator did not exit cleanly on SIGTERM");
                Ok(())
            })
        })
        .await
    })
}
