//! Tenant access: the chart's aggregate ClusterRoles (`templates/aggregate-roles.yaml`)
//! put AiApp rights into the built-in `admin`, `edit` and `view` ClusterRoles, so a user
//! bound to `edit` or `view` in a namespace gets them there with no custom RBAC.
//!
//! The built-in roles get their rules only from kube-controller-manager's
//! clusterrole-aggregation controller, which the shared control plane does not run: the
//! test runs kube-controller-manager with that one controller (built from the same
//! Kubernetes module as kube-apiserver) for its own duration, and asks the apiserver with
//! `kubectl auth can-i --as <user>`, then with real requests as those users.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail, ensure};
use dataforest_operator::crd::AiApp;
use dataforest_testenv::{ControllerManager, locate_kube_controller_manager};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::wait::await_condition;
use libtest_mimic::Failed;
use serde_json::json;

use crate::fixture::{self, TestContext};
use crate::world::{PATIENCE, spec};

const AIAPPS: &str = "aiapps.dataforest.dev";
const EDIT_VERBS: [&str; 8] = [
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "get",
    "list",
    "watch",
];
const VIEW_VERBS: [&str; 3] = ["get", "list", "watch"];

/// A user bound to `edit` in the test's namespace may create, change and delete AiApps
/// there, not elsewhere, and never write their status; one bound to `view` may read them
/// and nothing more. The rights come from the chart's roles: absent before they are
/// installed, gone once they are deleted.
pub fn users_bound_to_edit_or_view_get_aiapp_rights_from_the_charts_aggregated_roles()
-> Result<(), Failed> {
    fixture::run("tenant-rbac", |ctx| async move {
        // Built on first use (minutes, with progress on stderr), then cached.
        let program = tokio::task::spawn_blocking(locate_kube_controller_manager).await??;
        let manager =
            ControllerManager::start(&program, ctx.kubeconfig(), &["clusterrole-aggregation"])?;
        let roles = ChartRoles {
            ctx: &ctx,
            release: format!("tr{}", ctx.namespace.rsplit('-').next().unwrap_or_default()),
        };
        let outcome = tenant_checks(&ctx, &roles, &manager).await;
        let removed = roles.remove();
        manager.stop_after(outcome)?;
        removed
    })
}

async fn tenant_checks(
    ctx: &TestContext,
    roles: &ChartRoles<'_>,
    manager: &ControllerManager,
) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let other = format!("{ns}-other");
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": other}}))?;
    Api::<Namespace>::all(ctx.client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {other}"))?;
    let editor = format!("{ns}-editor");
    let viewer = format!("{ns}-viewer");
    bind(ctx, &editor, "edit").await?;
    bind(ctx, &viewer, "view").await?;

    // The controller runs (it has filled `edit` with the built-in rules), and without the
    // chart's roles `edit` carries no AiApp right.
    wait_for_role(
        ctx,
        manager,
        "edit",
        "filled by the aggregation controller",
        |role| !rules(role).is_empty(),
    )
    .await?;
    ensure!(
        !can_i(ctx, &editor, "create", ns, None)?,
        "{editor} may create AiApps before the chart's roles exist: the test proves nothing"
    );

    roles.apply()?;
    for (role, verbs) in [
        ("admin", &EDIT_VERBS[..]),
        ("edit", &EDIT_VERBS[..]),
        ("view", &VIEW_VERBS[..]),
    ] {
        wait_for_role(
            ctx,
            manager,
            role,
            "given the AiApp rules",
            |cluster_role| {
                verbs
                    .iter()
                    .all(|verb| grants(cluster_role, "aiapps", verb))
            },
        )
        .await?;
    }
    let view_role = Api::<ClusterRole>::all(ctx.client.clone())
        .get("view")
        .await?;
    for verb in ["create", "update", "patch", "delete", "deletecollection"] {
        ensure!(
            !grants(&view_role, "aiapps", verb),
            "view grants {verb} on aiapps"
        );
    }

    // What `kubectl auth can-i` says for each user, verb and namespace.
    let expect = |user: &str, verb: &str, namespace: &str, sub: Option<&str>, want: bool| {
        let got = can_i(ctx, user, verb, namespace, sub)?;
        let what = format!(
            "{verb} {AIAPPS}{} in {namespace}",
            sub.map(|s| format!("/{s}")).unwrap_or_default()
        );
        ensure!(
            got == want,
            "{user} {} {what}",
            if got { "may" } else { "may not" }
        );
        Ok::<_, anyhow::Error>(())
    };
    for verb in EDIT_VERBS {
        expect(&editor, verb, ns, None, true)?;
    }
    for verb in ["create", "get", "delete"] {
        expect(&editor, verb, &other, None, false)?;
    }
    for verb in ["patch", "update"] {
        expect(&editor, verb, ns, Some("status"), false)?;
        expect(&viewer, verb, ns, Some("status"), false)?;
    }
    for verb in VIEW_VERBS {
        expect(&viewer, verb, ns, None, true)?;
        expect(&viewer, verb, &other, None, false)?;
    }
    expect(&viewer, "get", ns, Some("status"), true)?;
    for verb in ["create", "update", "patch", "delete", "deletecollection"] {
        expect(&viewer, verb, ns, None, false)?;
    }

    // The same through real requests, as the users.
    let mut app = AiApp::new("tenant-app", spec(100, 200, "SUCCEEDED"));
    app.metadata.namespace = Some(ns.to_owned());
    let yaml = serde_yaml_ng::to_string(&app)?;
    kubectl_as(ctx, &editor, &["create", "-f", "-"], Some(yaml.as_bytes()))
        .map_err(|said| anyhow!("{editor} could not create an AiApp in {ns}: {said}"))?;
    let listed = kubectl_as(ctx, &viewer, &["get", AIAPPS, "-n", ns, "-o", "name"], None)
        .map_err(|said| anyhow!("{viewer} could not list AiApps in {ns}: {said}"))?;
    ensure!(
        listed.contains("tenant-app"),
        "{viewer} lists {listed:?} in {ns}"
    );
    let refused = kubectl_as(
        ctx,
        &viewer,
        &["delete", AIAPPS, "tenant-app", "-n", ns],
        None,
    );
    ensure!(
        matches!(&refused, Err(said) if said.contains("forbidden")),
        "{viewer} deleting an AiApp was not forbidden: {refused:?}"
    );
    kubectl_as(
        ctx,
        &editor,
        &["delete", AIAPPS, "tenant-app", "-n", ns],
        None,
    )
    .map_err(|said| anyhow!("{editor} could not delete the AiApp: {said}"))?;

    // Switched off: without the chart's roles the aggregated rules go away again.
    roles.remove()?;
    for role in ["admin", "edit", "view"] {
        wait_for_role(
            ctx,
            manager,
            role,
            "rid of the AiApp rules",
            |cluster_role| !grants(cluster_role, "aiapps", "get"),
        )
        .await?;
    }
    ensure!(
        !can_i(ctx, &editor, "create", ns, None)?,
        "{editor} may still create AiApps once the chart's roles are gone"
    );
    Ok(())
}

/// Binds `user` to the built-in ClusterRole `role` in the test's namespace.
async fn bind(ctx: &TestContext, user: &str, role: &str) -> Result<()> {
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("tenant-{role}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))?;
    Api::<RoleBinding>::namespaced(ctx.client.clone(), &ctx.namespace)
        .create(&PostParams::default(), &binding)
        .await
        .with_context(|| format!("binding {user} to {role}"))?;
    Ok(())
}

/// Waits, on a watch, until the ClusterRole `name` satisfies `check`.
async fn wait_for_role(
    ctx: &TestContext,
    manager: &ControllerManager,
    name: &str,
    what: &str,
    check: impl Fn(&ClusterRole) -> bool,
) -> Result<()> {
    let roles: Api<ClusterRole> = Api::all(ctx.client.clone());
    let done = await_condition(roles.clone(), name, |role: Option<&ClusterRole>| {
        role.is_some_and(&check)
    });
    match tokio::time::timeout(PATIENCE, done).await {
        Ok(seen) => seen.map(drop).map_err(Into::into),
        Err(_) => {
            let rules = roles.get(name).await.map(|role| rules(&role).len());
            bail!(
                "ClusterRole {name} was not {what} within {PATIENCE:?} (kube-controller-manager \
                 running: {}; {rules:?} rules)",
                manager.is_running()
            )
        }
    }
}

fn rules(role: &ClusterRole) -> &[k8s_openapi::api::rbac::v1::PolicyRule] {
    role.rules.as_deref().unwrap_or_default()
}

/// Whether a rule of `role` grants `verb` on `resource` of dataforest.dev.
fn grants(role: &ClusterRole, resource: &str, verb: &str) -> bool {
    rules(role).iter().any(|rule| {
        let has = |list: &Option<Vec<String>>, want: &str| {
            list.as_ref()
                .is_some_and(|items| items.iter().any(|item| item == want || item == "*"))
        };
        has(&rule.api_groups, "dataforest.dev")
            && has(&rule.resources, resource)
            && rule.verbs.iter().any(|v| v == verb || v == "*")
    })
}

/// `kubectl auth can-i <verb> aiapps.dataforest.dev [--subresource] --as <user> -n <ns>`.
fn can_i(
    ctx: &TestContext,
    user: &str,
    verb: &str,
    namespace: &str,
    subresource: Option<&str>,
) -> Result<bool> {
    let mut command = ctx.kubectl();
    command.args(["auth", "can-i", verb, AIAPPS, "--as", user, "-n", namespace]);
    if let Some(sub) = subresource {
        command.arg(format!("--subresource={sub}"));
    }
    let out = command.output().context("running kubectl auth can-i")?;
    // Exit 0 with "yes", exit 1 with "no"; anything else is an error.
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" if out.status.success() => Ok(true),
        "no" if out.status.code() == Some(1) => Ok(false),
        said => bail!(
            "kubectl auth can-i {verb} as {user} in {namespace}: {said:?} ({}) {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// kubectl as `user` (impersonated by the admin); Err carries its stderr.
fn kubectl_as(
    ctx: &TestContext,
    user: &str,
    args: &[&str],
    input: Option<&[u8]>,
) -> Result<String, String> {
    let mut child = ctx
        .kubectl()
        .args(args)
        .args(["--as", user])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run kubectl: {e}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The chart's aggregate ClusterRoles of one release, rendered with helm and applied with
/// kubectl; deleted again by [`ChartRoles::remove`] or, on a failure, when dropped.
struct ChartRoles<'a> {
    ctx: &'a TestContext,
    release: String,
}

impl ChartRoles<'_> {
    fn names(&self) -> [String; 2] {
        ["edit", "view"].map(|role| format!("{}-dataforest-operator-{role}", self.release))
    }

    fn apply(&self) -> Result<()> {
        let chart = repo().join("charts/dataforest-operator");
        let out = Command::new(helm()?)
            .args(["template", &self.release])
            .arg(&chart)
            .args(["--namespace", &self.ctx.namespace])
            .args(["--show-only", "templates/aggregate-roles.yaml"])
            .output()?;
        ensure!(
            out.status.success(),
            "helm template failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = String::from_utf8(out.stdout)?;
        for name in self.names() {
            ensure!(
                rendered.contains(&format!("name: {name}")),
                "the render has no ClusterRole {name}:\n{rendered}"
            );
        }
        let mut child = self
            .ctx
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("kubectl's stdin")?
            .write_all(rendered.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "kubectl apply of the chart's roles failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Deletes both roles (cluster-scoped: other tests share the apiserver).
    fn remove(&self) -> Result<()> {
        let out = self
            .ctx
            .kubectl()
            .args(["delete", "--ignore-not-found", "clusterrole"])
            .args(self.names())
            .output()?;
        ensure!(
            out.status.success(),
            "deleting the chart's roles: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for ChartRoles<'_> {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// helm from `hack/helm.sh` (built once from the Go module proxy, then cached).
fn helm() -> Result<String> {
    let out = Command::new("bash")
        .arg(repo().join("hack/helm.sh"))
        .stderr(Stdio::inherit())
        .output()?;
    ensure!(out.status.success(), "hack/helm.sh failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}
