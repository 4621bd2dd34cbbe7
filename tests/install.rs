//! Installing and upgrading on a real kube-apiserver, as users do it: the Helm chart
//! (`helm install`, `helm upgrade` with a changed CRD, `helm uninstall`, the upgrade from
//! chart 0.1.0, whose CRD Helm did not own) and the kustomize
//! base in `deploy/` (`kubectl apply -k deploy/`, then the documented server-side upgrade).
//! Each test starts a control plane of its own: they install the cluster-wide CRD and
//! admission policy, which the shared e2e control plane must not get.
//!
//! helm comes from `hack/helm.sh`; kubectl from the control-plane assets.

mod kube_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use dataforest_testenv::{Assets, ControlPlane};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::DynamicObject;
use kube_support::wait_for;

const CHART: &str = "charts/dataforest-operator";
const CRD: &str = "aiapps.dataforest.dev";
const NAMESPACE: &str = "dataforest-system";
/// The printer column the changed chart adds to the CRD.
const NEW_COLUMN: &str = "Upgrade Check";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command`; Err carries its output when it fails.
fn run(command: &mut Command) -> Result<String> {
    let out: Output = command
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    ensure!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    Ok(text(&out.stdout))
}

fn helm_binary() -> Result<PathBuf> {
    let path = run(Command::new("bash")
        .arg("hack/helm.sh")
        .stderr(Stdio::inherit()))?;
    Ok(PathBuf::from(path.trim()))
}

/// A folder of our own under the system's temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!(
            "dataforest-install-test-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// helm against the control plane, with its configuration and cache in `home` (nothing
/// of the user's is read or written).
fn helm(helm: &Path, plane: &ControlPlane, home: &Path) -> Command {
    let mut command = Command::new(helm);
    command
        .env("KUBECONFIG", plane.kubeconfig_path())
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    command
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A copy of the chart whose CRD template has one more printer column, as the next
/// version of the CRD might.
fn chart_with_a_changed_crd(dir: &Path) -> Result<PathBuf> {
    let chart = dir.join("dataforest-operator");
    copy_dir(&repo().join(CHART), &chart)?;
    let template = chart.join("templates/crds/aiapps.dataforest.dev.yaml");
    let crd = std::fs::read_to_string(&template)?;
    let marker = "  - additionalPrinterColumns:\n";
    ensure!(
        crd.contains(marker),
        "the CRD template has no `{}` line to add a column after",
        marker.trim_end()
    );
    let column = format!(
        "    - jsonPath: .metadata.uid\n      name: {NEW_COLUMN}\n      priority: 0\n      type: string\n"
    );
    std::fs::write(
        &template,
        crd.replacen(marker, &format!("{marker}{column}"), 1),
    )?;
    Ok(chart)
}

/// The names of the printer columns the served CRD has.
fn columns(crd: &CustomResourceDefinition) -> Vec<String> {
    crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect()
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Runs `body` on a control plane of its own, stopped afterwards whatever happened.
fn on_a_control_plane(body: impl AsyncFnOnce(&ControlPlane) -> Result<()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let plane = ControlPlane::start(Assets::locate().expect("control-plane assets"))
        .expect("the control plane starts");
    let result = runtime.block_on(async {
        dataforest_operator::install_crypto_provider();
        body(&plane).await
    });
    plane.stop();
    result.unwrap();
}

/// `helm install` creates the CRD (with the keep annotation); `helm upgrade` with a chart
/// whose CRD changed puts the change in force; `kubectl apply --server-side` of a CRD
/// that Helm manages conflicts unless `--force-conflicts` (what the docs say); `helm
/// uninstall` removes the operator and keeps the CRD and the AiApps.
#[test]
fn helm_upgrade_upgrades_the_crd_and_helm_uninstall_keeps_it_and_the_aiapps() {
    on_a_control_plane(async |plane| {
        let helm_bin = helm_binary()?;
        let home = TempDir::new("helm")?;
        let helm = |args: &[&str]| run(helm(&helm_bin, plane, &home.0).args(args));
        let release = ["dataforest-operator", "--namespace", NAMESPACE];
        let client = plane.client().await?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());

        helm(&[&["install"][..], &release, &[CHART, "--create-namespace"]].concat())?;
        let crd = wait_for("the CRD Established", Duration::from_secs(30), async || {
            Ok(crds.get_opt(CRD).await?.filter(is_established))
        })
        .await?;
        let meta = &crd.metadata;
        let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
        ensure!(
            label("app.kubernetes.io/managed-by").as_deref() == Some("Helm"),
            "{meta:?}"
        );
        ensure!(
            meta.annotations
                .as_ref()
                .and_then(|a| a.get("helm.sh/resource-policy"))
                .map(String::as_str)
                == Some("keep"),
            "the CRD lacks helm.sh/resource-policy: keep: {meta:?}"
        );
        ensure!(!columns(&crd).contains(&NEW_COLUMN.to_owned()));

        // An AiApp of a user, in a namespace of its own.
        plane_apply(
            plane,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n",
        )?;
        plane_apply(plane, AIAPP)?;

        // The next version of the chart changes the CRD; `helm upgrade` brings it.
        let dir = TempDir::new("chart")?;
        let changed = chart_with_a_changed_crd(&dir.0)?;
        let changed = changed.to_str().context("a UTF-8 path")?;
        helm(&[&["upgrade"][..], &release, &[changed]].concat())?;
        let crd = crds.get(CRD).await?;
        ensure!(
            columns(&crd).contains(&NEW_COLUMN.to_owned()),
            "helm upgrade did not upgrade the CRD: columns {:?}",
            columns(&crd)
        );
        // In force: kubectl prints the new column.
        wait_for(
            "kubectl to show the new column",
            Duration::from_secs(30),
            async || {
                let table = run(plane.kubectl().args(["get", "aiapps", "-n", "team-a"]))?;
                Ok(table.contains(&NEW_COLUMN.to_uppercase()).then_some(table))
            },
        )
        .await?;

        // A CRD that Helm manages, applied with kubectl: --server-side alone conflicts
        // with Helm's field manager, --force-conflicts takes the fields over.
        let generated = repo().join("crds/aiapps.dataforest.dev.yaml");
        let generated = generated.to_str().context("a UTF-8 path")?;
        let out = plane
            .kubectl()
            .args(["apply", "--server-side", "-f", generated])
            .output()?;
        ensure!(
            !out.status.success() && text(&out.stderr).contains("conflict"),
            "kubectl apply --server-side without --force-conflicts: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        run(plane.kubectl().args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            generated,
        ]))?;
        let crd = crds.get(CRD).await?;
        ensure!(
            !columns(&crd).contains(&NEW_COLUMN.to_owned()),
            "kubectl apply --server-side --force-conflicts left the old column: {:?}",
            columns(&crd)
        );

        helm(&[&["uninstall"][..], &release].concat())?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
        ensure!(
            deployments.get_opt("dataforest-operator").await?.is_none(),
            "helm uninstall left the Deployment"
        );
        ensure!(
            crds.get_opt(CRD).await?.is_some(),
            "helm uninstall deleted the CRD"
        );
        let aiapps: Api<DynamicObject> = Api::namespaced_with(client, "team-a", &aiapp_resource());
        ensure!(
            aiapps.get_opt("kept").await?.is_some(),
            "helm uninstall deleted the AiApp"
        );
        Ok(())
    });
}

/// A release of chart 0.1.0 got its CRD from the chart's `crds/` folder, with no Helm
/// ownership: `helm upgrade` to this chart refuses to take it over until it carries the
/// label and annotations the chart README gives, and then owns and upgrades it.
#[test]
fn a_crd_from_chart_0_1_is_taken_over_by_helm_upgrade_after_the_documented_label_and_annotations() {
    on_a_control_plane(async |plane| {
        let helm_bin = helm_binary()?;
        let home = TempDir::new("helm-0-1")?;
        let helm = |args: &[&str]| helm(&helm_bin, plane, &home.0).args(args).output();
        let release = ["dataforest-operator", "--namespace", NAMESPACE];
        // What chart 0.1.0 left: the CRD created as it is, a release without it.
        let generated = repo().join("crds/aiapps.dataforest.dev.yaml");
        run(plane.kubectl().arg("create").arg("-f").arg(&generated))?;
        let install = helm(
            &[
                &["install"][..],
                &release,
                &[CHART, "--create-namespace", "--set", "crds.enabled=false"],
            ]
            .concat(),
        )?;
        ensure!(install.status.success(), "{}", text(&install.stderr));

        // crds.enabled=false stood for chart 0.1.0, which had no such value: set it back,
        // as the chart's default is for a release of 0.1.0 (helm upgrade reuses the
        // values of the last release when given none).
        let enabled = ["--set", "crds.enabled=true"];
        let upgrade = helm(&[&["upgrade"][..], &release, &[CHART], &enabled].concat())?;
        ensure!(
            !upgrade.status.success()
                && text(&upgrade.stderr).contains("invalid ownership metadata"),
            "helm upgrade over a CRD it does not own: {}{}",
            text(&upgrade.stdout),
            text(&upgrade.stderr)
        );

        // The chart README's two commands.
        run(plane
            .kubectl()
            .args(["label", "crd", CRD, "app.kubernetes.io/managed-by=Helm"]))?;
        run(plane.kubectl().args([
            "annotate",
            "crd",
            CRD,
            "meta.helm.sh/release-name=dataforest-operator",
            &format!("meta.helm.sh/release-namespace={NAMESPACE}"),
        ]))?;
        let dir = TempDir::new("chart-0-1")?;
        let changed = chart_with_a_changed_crd(&dir.0)?;
        let changed = changed.to_str().context("a UTF-8 path")?;
        let upgrade = helm(&[&["upgrade"][..], &release, &[changed], &enabled].concat())?;
        ensure!(upgrade.status.success(), "{}", text(&upgrade.stderr));
        let crds: Api<CustomResourceDefinition> = Api::all(plane.client().await?);
        let crd = crds.get(CRD).await?;
        ensure!(
            columns(&crd).contains(&NEW_COLUMN.to_owned()),
            "the CRD taken over was not upgraded: columns {:?}",
            columns(&crd)
        );
        ensure!(
            crd.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("helm.sh/resource-policy"))
                .map(String::as_str)
                == Some("keep"),
            "{:?}",
            crd.metadata
        );
        Ok(())
    });
}

/// `kubectl apply -k deploy/` installs every object of the kustomize base, none of them
/// claiming Helm manages it; the documented upgrade, `kubectl apply --server-side
/// --force-conflicts -k deploy/`, applies over it.
#[test]
fn kubectl_apply_k_deploy_installs_the_operator_and_the_server_side_upgrade_applies_over_it() {
    on_a_control_plane(async |plane| {
        run(plane.kubectl().args(["apply", "-k", "deploy/"]))?;
        let client = plane.client().await?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        wait_for("the CRD Established", Duration::from_secs(30), async || {
            Ok(crds.get_opt(CRD).await?.filter(is_established))
        })
        .await?;

        // Every object the base renders exists on the apiserver.
        let rendered = run(plane.kubectl().args(["kustomize", "deploy/"]))?;
        let want: Vec<String> = serde_yaml_ng::Deserializer::from_str(&rendered)
            .map(|doc| {
                let object = <serde_json::Value as serde::Deserialize>::deserialize(doc)?;
                Ok(format!(
                    "{}/{}",
                    object["kind"].as_str().unwrap_or_default(),
                    object["metadata"]["name"].as_str().unwrap_or_default()
                ))
            })
            .collect::<Result<_, serde_yaml_ng::Error>>()?;
        ensure!(want.len() >= 10, "the base renders only {want:?}");
        let listed = run(plane.kubectl().args(["get", "-k", "deploy/", "-o", "json"]))?;
        let listed: serde_json::Value = serde_json::from_str(&listed)?;
        let items = listed["items"].as_array().context("a List")?;
        let mut have: Vec<String> = items
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or_default(),
                    o["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        let mut want = want;
        want.sort();
        have.sort();
        ensure!(
            have == want,
            "on the apiserver: {have:?}, rendered: {want:?}"
        );
        for object in items {
            let labels = &object["metadata"]["labels"];
            ensure!(
                labels.get("app.kubernetes.io/managed-by").is_none(),
                "{} {} claims a manager: {labels}",
                object["kind"],
                object["metadata"]["name"]
            );
        }
        let deployment = Api::<Deployment>::namespaced(client, NAMESPACE)
            .get("dataforest-operator")
            .await?;
        ensure!(
            deployment.spec.replicas == Some(2),
            "the Deployment is not the chart's"
        );

        run(plane.kubectl().args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            "deploy/",
        ]))?;
        Ok(())
    });
}

/// A user's AiApp (with credentials, as the chart's admission policy wants).
const AIAPP: &str = r#"
apiVersion: dataforest.dev/v1alpha1
kind: AiApp
metadata: {name: kept, namespace: team-a}
spec:
  aiWorkspaceId: 6ZKSGoSJMMwctK257nxgiL
  docker: {image: "nvcr.io/nvidia/pytorch:24.01-py3", command: python train.py}
  resource: {gpuCount: 1, gpuModel: T4}
  credentials: {secretName: ncp-credentials}
"#;

fn aiapp_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "dataforest.dev",
        "v1alpha1",
        "AiApp",
    ))
}

/// `kubectl apply --server-side` of `yaml` as the test's own field manager.
fn plane_apply(plane: &ControlPlane, yaml: &str) -> Result<()> {
    kube_support::apply_server_side(plane.kubectl(), "install-test", yaml)
}
