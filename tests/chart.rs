//! The Helm chart, the manifests rendered from it and the Argo CD health check:
//! `helm lint`, what the templates render (with every `run` flag wired and parsed by the
//! operator's own flag parser), the kubeVersion gate, the committed files being up to
//! date, the health script on every phase, and the chart's RBAC on a real kube-apiserver,
//! where the real binary runs an AiApp as the chart's ServiceAccount.
//!
//! helm comes from `hack/helm.sh` (built once from the Go module proxy, then cached).

mod kube_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use clap::{Args as _, FromArgMatches as _};
use dataforest_operator::run::RunArgs;
use kube_support::wait_for;
use serde::Deserialize as _;
use serde_json::{Value, json};

const CHART: &str = "charts/dataforest-operator";
const RELEASE: &str = "dataforest-operator";
const NAMESPACE: &str = "dataforest-system";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("hack/helm.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("bash runs hack/helm.sh");
        assert!(out.status.success(), "hack/helm.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
    })
}

fn run(command: &mut Command) -> Output {
    command
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `helm template` of the chart; Err carries helm's stderr.
fn template(release: &str, namespace: &str, args: &[&str]) -> Result<String, String> {
    let out = run(Command::new(helm())
        .args(["template", release, CHART, "--namespace", namespace])
        .args(args));
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// The objects of a multi-document YAML stream (comment-only documents skipped).
fn objects(yaml: &str) -> Vec<Value> {
    objects_of(yaml)
}

fn objects_of(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("the render is valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for object in objects {
        *kinds
            .entry(object["kind"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    kinds
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the render"))
}

fn env_of(deployment: &Value) -> BTreeMap<String, Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("the container has env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

fn rules_of(role: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut rules = Vec::new();
    for rule in role["rules"].as_array().expect("rules") {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                let mut verbs: Vec<String> = rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
                verbs.sort();
                rules.push((
                    group.as_str().unwrap().to_owned(),
                    resource.as_str().unwrap().to_owned(),
                    verbs,
                ));
            }
        }
    }
    rules.sort();
    rules
}

/// What the controller does to AiApps, Secrets and Events, and nothing more.
fn controller_rules() -> Vec<(String, String, Vec<String>)> {
    let rule = |g: &str, r: &str, v: &[&str]| {
        let mut verbs: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        verbs.sort();
        (g.to_owned(), r.to_owned(), verbs)
    };
    let mut rules = vec![
        rule(
            "dataforest.dev",
            "aiapps",
            &["get", "list", "watch", "patch"],
        ),
        rule("dataforest.dev", "aiapps/status", &["patch"]),
        rule("", "secrets", &["get", "list", "watch"]),
        rule("events.k8s.io", "events", &["create"]),
    ];
    rules.sort();
    rules
}

#[test]
fn helm_lint_is_clean() {
    for args in [
        &[][..],
        &["--set", "watchNamespace=team-a"][..],
        &["--set", "watchNamespaces={team-a,team-b}"][..],
    ] {
        let out = run(Command::new(helm())
            .args(["lint", "--strict", CHART])
            .args(args));
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "helm lint {args:?} failed:\n{all}");
        assert!(
            all.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{all}"
        );
        assert!(!all.contains("[WARNING]"), "helm lint warns:\n{all}");
    }
}

#[test]
fn the_default_render_is_a_leader_elected_restricted_deployment_with_cluster_rbac() {
    let yaml = template(RELEASE, NAMESPACE, &[]).unwrap();
    let objects = objects(&yaml);
    let want: BTreeMap<String, usize> = [
        ("ServiceAccount", 1),
        ("CustomResourceDefinition", 1),
        // The operator's, and the two that aggregate into admin/edit and view.
        ("ClusterRole", 3),
        ("ClusterRoleBinding", 1),
        ("Role", 1),
        ("RoleBinding", 1),
        ("Deployment", 1),
        ("Service", 1),
        ("PodDisruptionBudget", 1),
        ("ValidatingAdmissionPolicy", 1),
        ("ValidatingAdmissionPolicyBinding", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(kinds(&objects), want);

    for object in &objects {
        let labels = &object["metadata"]["labels"];
        for label in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(labels[label].is_string(), "{label} missing on {object}");
        }
        let cluster_scoped = matches!(
            object["kind"].as_str(),
            Some(
                "CustomResourceDefinition"
                    | "ClusterRole"
                    | "ClusterRoleBinding"
                    | "ValidatingAdmissionPolicy"
                    | "ValidatingAdmissionPolicyBinding"
            )
        );
        assert_eq!(
            object["metadata"]["namespace"].as_str(),
            (!cluster_scoped).then_some(NAMESPACE),
            "namespace of {} {}",
            object["kind"],
            object["metadata"]["name"]
        );
    }

    let role = find(&objects, "ClusterRole", RELEASE);
    assert_eq!(rules_of(role), controller_rules());
    let lease_role = find(&objects, "Role", "dataforest-operator-leader-election");
    assert_eq!(
        lease_role["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": [RELEASE], "verbs": ["get", "update"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "list"]},
        ])
    );

    let deployment = find(&objects, "Deployment", RELEASE);
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= 35);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["args"], json!(["run"]));
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    let env = env_of(deployment);
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert!(!env.contains_key("WATCH_NAMESPACE"));
    assert!(!env.contains_key("DEFAULT_CREDENTIALS_SECRET"));
    assert!(!env.contains_key("DEFAULT_CREDENTIALS_NAMESPACES"));
    assert_eq!(env["LOG_FORMAT"]["value"], "json");

    let service = find(&objects, "Service", "dataforest-operator-metrics");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        service["spec"]["selector"], spec["selector"]["matchLabels"],
        "the Service selects the operator's pods"
    );
}

/// Every flag of `run` (by its environment variable) is set by the chart, and the values
/// the chart renders are what the operator's own parser accepts.
#[test]
fn the_deployment_sets_every_run_flag_and_the_operator_parses_them() {
    let yaml = template(
        RELEASE,
        NAMESPACE,
        &[
            "--set",
            "watchNamespaces={team-a,team-b}",
            "--set",
            "dataforest.allowedEndpoints={https://df.apigw.ntruss.com,http://127.0.0.1:9000/}",
            "--set",
            "controller.pollMin=500ms",
            "--set",
            "defaultCredentials.secretName=platform-ncp",
            "--set",
            "defaultCredentials.namespaces={team-a,team-b}",
        ],
    )
    .unwrap();
    let objects = objects(&yaml);
    let env = env_of(find(&objects, "Deployment", RELEASE));

    let command = RunArgs::augment_args(clap::Command::new("run"));
    let mut flags = BTreeMap::new();
    for arg in command.get_arguments() {
        if let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) {
            flags.insert(var.to_string_lossy().into_owned(), long.to_owned());
        }
    }
    let chart_vars: BTreeSet<&str> = env
        .keys()
        .map(String::as_str)
        .filter(|v| !matches!(*v, "LOG_FORMAT" | "RUST_LOG"))
        .collect();
    let run_vars: BTreeSet<&str> = flags.keys().map(String::as_str).collect();
    assert_eq!(
        chart_vars, run_vars,
        "the chart's env and `run`'s flags differ: wire new flags into templates/deployment.yaml"
    );

    let mut argv = vec!["run".to_owned()];
    for (var, long) in &flags {
        let entry = &env[var];
        let value = match entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => "dataforest-operator-5d9c-abcde".to_owned(),
            Some("metadata.namespace") => NAMESPACE.to_owned(),
            Some(other) => panic!("{var} from an unexpected field {other}"),
            None => entry["value"].as_str().expect("a string value").to_owned(),
        };
        argv.push(format!("--{long}={value}"));
    }
    let parse = |argv: &[String]| {
        let matches = RunArgs::augment_args(clap::Command::new("run"))
            .try_get_matches_from(argv)
            .unwrap_or_else(|e| panic!("run refuses {argv:?}: {e}"));
        RunArgs::from_arg_matches(&matches).unwrap()
    };
    let args = parse(&argv);
    assert_eq!(
        args.validate(),
        Ok(()),
        "the operator would refuse to start"
    );
    assert_eq!(args.endpoint, "https://df.apigw.ntruss.com");
    assert_eq!(
        args.allowed_endpoints,
        ["https://df.apigw.ntruss.com", "http://127.0.0.1:9000/"]
    );
    assert_eq!(args.namespaces, ["team-a", "team-b"]);
    assert_eq!(
        args.default_secret(),
        Ok(Some(dataforest_operator::credentials::DefaultSecret {
            namespace: NAMESPACE.to_owned(),
            name: "platform-ncp".to_owned(),
            serves: vec!["team-a".to_owned(), "team-b".to_owned()],
        })),
        "the default Secret is read from the release namespace"
    );
    assert_eq!(args.poll_min, Duration::from_millis(500));
    assert_eq!(args.metrics_address.to_string(), "0.0.0.0:8080");
    assert_eq!(args.lease_namespace, NAMESPACE);
    assert_eq!(args.lease_name, RELEASE);
    assert_eq!(
        args.identity.as_deref(),
        Some("dataforest-operator-5d9c-abcde")
    );

    // Where values.yaml states a setting, it is the operator's own default: a default
    // changed in src/run.rs must be changed in values.yaml too.
    let defaults = parse(&["run".to_owned()]);
    let default_objects = objects_of(&template(RELEASE, NAMESPACE, &[]).unwrap());
    let env = env_of(find(&default_objects, "Deployment", RELEASE));
    let mut argv = vec!["run".to_owned()];
    for (var, long) in &flags {
        if let Some(value) = env.get(var).and_then(|e| e["value"].as_str()) {
            argv.push(format!("--{long}={value}"));
        }
    }
    let chart = parse(&argv);
    assert_eq!(
        chart.validate(),
        Ok(()),
        "the chart's defaults are inconsistent"
    );
    let pairs = [
        (
            "dataforest.endpoint",
            format!("{:?}", chart.endpoint),
            format!("{:?}", defaults.endpoint),
        ),
        (
            "dataforest.allowedEndpoints",
            format!("{:?}", chart.allowed_endpoints),
            format!("{:?}", defaults.allowed_endpoints),
        ),
        (
            "controller.pollMin",
            format!("{:?}", chart.poll_min),
            format!("{:?}", defaults.poll_min),
        ),
        (
            "controller.pollCeiling",
            format!("{:?}", chart.poll_ceiling),
            format!("{:?}", defaults.poll_ceiling),
        ),
        (
            "controller.recoveryGrace",
            format!("{:?}", chart.recovery_grace),
            format!("{:?}", defaults.recovery_grace),
        ),
        (
            "controller.notFoundGrace",
            format!("{:?}", chart.not_found_grace),
            format!("{:?}", defaults.not_found_grace),
        ),
        (
            "controller.deletionTimeout",
            format!("{:?}", chart.deletion_timeout),
            format!("{:?}", defaults.deletion_timeout),
        ),
        (
            "controller.apiTimeout",
            format!("{:?}", chart.api_timeout),
            format!("{:?}", defaults.api_timeout),
        ),
        (
            "controller.concurrency",
            format!("{:?}", chart.concurrency),
            format!("{:?}", defaults.concurrency),
        ),
        (
            "metrics.port",
            format!("{:?}", chart.metrics_address),
            format!("{:?}", defaults.metrics_address),
        ),
        (
            "leaderElection.leaseDuration",
            format!("{:?}", chart.lease_duration),
            format!("{:?}", defaults.lease_duration),
        ),
    ];
    for (value, chart, operator) in pairs {
        assert_eq!(
            chart, operator,
            "values.yaml {value} differs from the operator's default"
        );
    }
}

/// The object of `kind` named `name` in `namespace`.
fn find_in<'a>(objects: &'a [Value], kind: &str, name: &str, namespace: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == name
                && o["metadata"]["namespace"] == namespace
        })
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} in the render"))
}

#[test]
fn watch_namespaces_give_a_role_in_each_namespace_and_nothing_cluster_wide() {
    let cases: [(&[&str], &[&str]); 2] = [
        (
            &["--set", "watchNamespaces={team-a,team-b}"],
            &["team-a", "team-b"],
        ),
        // The one namespace of chart 0.1 still works.
        (&["--set", "watchNamespace=team-a"], &["team-a"]),
    ];
    for (args, namespaces) in cases {
        let objects = objects(&template("team", "ops", args).unwrap());
        let env = env_of(find(&objects, "Deployment", "team-dataforest-operator"));
        assert_eq!(env["WATCH_NAMESPACE"]["value"], namespaces.join(","));

        let kinds = kinds(&objects);
        assert_eq!(
            kinds["Role"],
            namespaces.len() + 1,
            "one per namespace and the lease's"
        );
        assert_eq!(kinds["RoleBinding"], namespaces.len() + 1);
        for namespace in namespaces {
            let role = find_in(&objects, "Role", "team-dataforest-operator", namespace);
            assert_eq!(rules_of(role), controller_rules(), "{namespace}");
            let binding = find_in(
                &objects,
                "RoleBinding",
                "team-dataforest-operator",
                namespace,
            );
            assert_eq!(
                binding["roleRef"],
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "team-dataforest-operator"})
            );
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": "team-dataforest-operator", "namespace": "ops"}])
            );
        }
        let lease_role = find(&objects, "Role", "team-dataforest-operator-leader-election");
        assert_eq!(lease_role["metadata"]["namespace"], "ops");
        assert_eq!(kinds.get("ClusterRole"), None, "nothing cluster-wide");
        assert_eq!(
            kinds.get("ClusterRoleBinding"),
            None,
            "nothing cluster-wide"
        );
        // No Secret right outside the watched namespaces (the default Secret's Role aside).
        for object in &objects {
            if matches!(object["kind"].as_str(), Some("Role" | "ClusterRole"))
                && rules_of(object).iter().any(|(_, r, _)| r == "secrets")
            {
                let namespace = object["metadata"]["namespace"].as_str().unwrap_or("");
                assert!(
                    namespaces.contains(&namespace),
                    "Secrets readable in {namespace:?}"
                );
            }
        }
        let binding = &find(
            &objects,
            "ValidatingAdmissionPolicyBinding",
            "team-dataforest-operator-credentials",
        )["spec"];
        assert_eq!(
            binding["matchResources"]["namespaceSelector"]["matchExpressions"],
            json!([{"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}]),
            "the admission policy applies where this release watches"
        );
    }
    let error = template(
        "team",
        "ops",
        &[
            "--set",
            "watchNamespace=team-a",
            "--set",
            "watchNamespaces={team-b}",
        ],
    )
    .unwrap_err();
    assert!(error.contains("not both"), "{error}");
}

#[test]
fn optional_objects_follow_their_values() {
    let yaml = template(
        RELEASE,
        NAMESPACE,
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "replicas=1",
            "--set",
            "topologySpreadConstraints[0].maxSkew=1",
            "--set",
            "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
            "--set",
            "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        ],
    )
    .unwrap();
    let objects = objects(&yaml);
    let kinds = kinds(&objects);
    assert_eq!(kinds.get("ServiceMonitor"), Some(&1));
    assert_eq!(
        kinds.get("PodDisruptionBudget"),
        None,
        "no PDB for one replica"
    );
    let monitor = find(&objects, "ServiceMonitor", RELEASE);
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let deployment = find(&objects, "Deployment", RELEASE);
    let spread = &deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0];
    assert_eq!(
        spread["labelSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn bad_values_fail_the_render_with_a_reason() {
    let cases: [(&[&str], &str); 7] = [
        (&["--set", "controller.pollMin=5minutes"], "pollMin"),
        (
            &["--set", "defaultCredentials.secretName=platform-ncp"],
            "defaultCredentials.secretName needs defaultCredentials.namespaces",
        ),
        (
            &["--set", "defaultCredentials.namespaces={team-a}"],
            "defaultCredentials.namespaces needs defaultCredentials.secretName",
        ),
        (
            &[
                "--set",
                "defaultCredentials.secretName=Platform_NCP",
                "--set",
                "defaultCredentials.namespaces={team-a}",
            ],
            "secretName",
        ),
        (&["--set", "logFormat=xml"], "logFormat"),
        (&["--set", "replicaCount=3"], "replicaCount"),
        (
            &["--set", "dataforest.endpoint=http://10.0.0.1:9000"],
            "must be one of dataforest.allowedEndpoints",
        ),
    ];
    for (args, reason) in cases {
        let error = template(RELEASE, NAMESPACE, args).expect_err(&format!("{args:?} renders"));
        assert!(error.contains(reason), "{args:?}: {error}");
    }
    // A trailing slash is the same endpoint, as the operator compares them.
    template(
        RELEASE,
        NAMESPACE,
        &["--set", "dataforest.endpoint=https://df.apigw.ntruss.com/"],
    )
    .unwrap();
}

/// The default credentials Secret gets a Role of its own, for that one Secret in the
/// release namespace, only when it is set; the admission policy refuses to create an
/// AiApp without credentials outside the served namespaces (everywhere without a default
/// Secret), on CREATE only, bound to watchNamespace when set.
#[test]
fn default_credentials_get_their_own_role_and_the_admission_policy_follows_them() {
    let objects = objects(&template(RELEASE, NAMESPACE, &[]).unwrap());
    assert!(
        !objects
            .iter()
            .any(|o| o["metadata"]["name"] == "dataforest-operator-default-credentials"),
        "no Role for a default Secret that is not set"
    );
    let name = "dataforest-operator-credentials";
    let policy = &find(&objects, "ValidatingAdmissionPolicy", name)["spec"];
    assert_eq!(policy["failurePolicy"], "Fail");
    assert_eq!(
        policy["matchConstraints"]["resourceRules"],
        json!([{"apiGroups": ["dataforest.dev"], "apiVersions": ["*"],
                "operations": ["CREATE"], "resources": ["aiapps"]}]),
        "CREATE only: status and finalizer writes are never checked"
    );
    let variable = |policy: &Value, name: &str| -> String {
        policy["variables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))["expression"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        variable(policy, "defaultServes"),
        "request.namespace in []",
        "without a default Secret no namespace is served"
    );
    assert_eq!(
        policy["validations"][0]["expression"],
        "variables.hasCredentials || variables.defaultServes"
    );
    let says = policy["validations"][0]["messageExpression"]
        .as_str()
        .unwrap();
    assert!(
        says.contains("request.namespace") && says.contains("spec.credentials"),
        "{says}"
    );
    let binding = &find(&objects, "ValidatingAdmissionPolicyBinding", name)["spec"];
    assert_eq!(binding["policyName"], name);
    assert_eq!(binding["validationActions"], json!(["Deny"]));
    assert!(
        binding["matchResources"].is_null(),
        "all namespaces: {binding}"
    );

    let objects = objects_of(
        &template(
            "team",
            "team-ops",
            &[
                "--set",
                "watchNamespace=team-a",
                "--set",
                "defaultCredentials.secretName=platform-ncp",
                "--set",
                "defaultCredentials.namespaces={team-a,team-b}",
            ],
        )
        .unwrap(),
    );
    let role = find(
        &objects,
        "Role",
        "team-dataforest-operator-default-credentials",
    );
    assert_eq!(role["metadata"]["namespace"], "team-ops");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"],
                "resourceNames": ["platform-ncp"], "verbs": ["get", "list", "watch"]}])
    );
    let role_binding = find(
        &objects,
        "RoleBinding",
        "team-dataforest-operator-default-credentials",
    );
    assert_eq!(role_binding["metadata"]["namespace"], "team-ops");
    assert_eq!(
        role_binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "team-dataforest-operator", "namespace": "team-ops"}])
    );
    let name = "team-dataforest-operator-credentials";
    let policy = &find(&objects, "ValidatingAdmissionPolicy", name)["spec"];
    assert_eq!(
        variable(policy, "defaultServes"),
        r#"request.namespace in ["team-a","team-b"]"#
    );
    let binding = &find(&objects, "ValidatingAdmissionPolicyBinding", name)["spec"];
    assert_eq!(
        binding["matchResources"],
        json!({"namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}
        ]}}),
        "only the namespace this release watches"
    );

    let objects = objects_of(
        &template(
            RELEASE,
            NAMESPACE,
            &[
                "--set",
                "rbac.create=false",
                "--set",
                "admissionPolicy.enabled=false",
                "--set",
                "defaultCredentials.secretName=platform-ncp",
                "--set",
                "defaultCredentials.namespaces={team-a}",
            ],
        )
        .unwrap(),
    );
    let kinds = kinds(&objects);
    for kind in [
        "Role",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert_eq!(kinds.get(kind), None, "{kind}");
    }
}

#[test]
fn tenant_roles_aggregate_aiapp_rights_into_admin_edit_and_view_and_can_be_switched_off() {
    let objects = objects(&template(RELEASE, NAMESPACE, &[]).unwrap());
    let aggregates_to = |role: &Value| -> BTreeSet<String> {
        let labels = role["metadata"]["labels"].as_object().expect("labels");
        labels
            .iter()
            .filter_map(|(key, value)| {
                let target = key.strip_prefix("rbac.authorization.k8s.io/aggregate-to-")?;
                assert_eq!(value, "true", "{key} on {}", role["metadata"]["name"]);
                Some(target.to_owned())
            })
            .collect()
    };
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    let verbs = |verbs: &[&str]| {
        let mut verbs: Vec<String> = verbs.iter().map(|v| v.to_string()).collect();
        verbs.sort();
        verbs
    };

    // edit and admin: every verb on AiApps, nothing on their status (the operator's).
    let edit = find(&objects, "ClusterRole", "dataforest-operator-edit");
    assert_eq!(
        aggregates_to(edit),
        set(&["admin", "edit"]),
        "never into view"
    );
    assert_eq!(
        rules_of(edit),
        [(
            "dataforest.dev".to_owned(),
            "aiapps".to_owned(),
            verbs(&[
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
                "get",
                "list",
                "watch",
            ]),
        )]
    );
    // view (and through its labels admin and edit too): reading only.
    let view = find(&objects, "ClusterRole", "dataforest-operator-view");
    assert_eq!(aggregates_to(view), set(&["admin", "edit", "view"]));
    let read = verbs(&["get", "list", "watch"]);
    assert_eq!(
        rules_of(view),
        [
            (
                "dataforest.dev".to_owned(),
                "aiapps".to_owned(),
                read.clone()
            ),
            (
                "dataforest.dev".to_owned(),
                "aiapps/status".to_owned(),
                read
            ),
        ]
    );
    // No other object of the chart aggregates anywhere.
    let aggregating = |objects: &[Value]| -> Vec<String> {
        objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRole" && !aggregates_to(o).is_empty())
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        aggregating(&objects),
        ["dataforest-operator-edit", "dataforest-operator-view"]
    );

    // Switched off, with the operator's own RBAC off, or watching listed namespaces
    // (nothing cluster-wide then): none.
    for args in [
        &["--set", "rbac.aggregateToDefaultRoles=false"][..],
        &["--set", "rbac.create=false"][..],
        &["--set", "watchNamespace=team-a"][..],
    ] {
        let rendered = objects_of(&template(RELEASE, NAMESPACE, args).unwrap());
        assert_eq!(aggregating(&rendered), Vec::<String>::new(), "{args:?}");
        assert!(!rendered.is_empty(), "{args:?} renders the rest");
    }
    let refused = template(
        RELEASE,
        NAMESPACE,
        &["--set", "rbac.aggregateToDefaultRoles=yes"],
    )
    .unwrap_err();
    assert!(refused.contains("aggregateToDefaultRoles"), "{refused}");
}

/// What `helm install` prints (templates/NOTES.txt), rendered offline: a copy of the
/// chart whose one extra template holds the notes as a string.
fn notes(args: &[&str]) -> String {
    let dir = TempDir::new().unwrap();
    let chart = dir.path().join("dataforest-operator");
    let copy = run(Command::new("cp").args(["-r", CHART]).arg(&chart));
    assert!(copy.status.success(), "{}", text(&copy.stderr));
    std::fs::copy(chart.join("templates/NOTES.txt"), chart.join("notes.txt")).unwrap();
    std::fs::write(
        chart.join("templates/zz-notes.yaml"),
        r#"notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}"#,
    )
    .unwrap();
    let out = run(Command::new(helm())
        .args(["template", RELEASE])
        .arg(&chart)
        .args([
            "--namespace",
            NAMESPACE,
            "--show-only",
            "templates/zz-notes.yaml",
        ])
        .args(args));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rendered: Value = serde_yaml_ng::from_str(&text(&out.stdout)).unwrap();
    rendered["notes"].as_str().unwrap().to_owned()
}

/// The default image is not published until a release exists: the notes say so and
/// what to set; they say how the CRD is upgraded, with the kubectl flags that work.
#[test]
fn the_notes_say_which_image_to_use_until_a_release_exists_and_how_the_crd_upgrades() {
    let default = notes(&[]);
    for says in [
        "No release of dataforest-operator has been published yet",
        "ImagePullBackOff",
        "Dockerfile",
        "--set image.repository=<registry>/dataforest-operator --set image.tag=<tag>",
        "`helm upgrade` upgrades it",
        "helm.sh/resource-policy: keep",
    ] {
        assert!(
            default.contains(says),
            "the notes do not say {says:?}:\n{default}"
        );
    }
    let own_image = notes(&[
        "--set",
        "image.repository=registry.example.com/dataforest-operator",
        "--set",
        "crds.enabled=false",
        "--set",
        "watchNamespaces={team-a,team-b}",
    ]);
    assert!(!own_image.contains("ImagePullBackOff"), "{own_image}");
    assert!(
        own_image.contains("Image: registry.example.com/dataforest-operator:"),
        "{own_image}"
    );
    assert!(
        own_image.contains(
            "kubectl apply --server-side --force-conflicts -f crds/aiapps.dataforest.dev.yaml"
        ),
        "{own_image}"
    );
    assert!(
        own_image.contains("namespace(s) team-a, team-b"),
        "{own_image}"
    );
}

#[test]
fn kube_version_gate_refuses_1_29_and_accepts_1_30() {
    let error = template(RELEASE, NAMESPACE, &["--kube-version", "1.29.0"]).unwrap_err();
    assert!(
        error.contains("incompatible with Kubernetes v1.29.0"),
        "{error}"
    );
    for version in ["1.30.0", "v1.30.0-gke.1", "1.37.2"] {
        template(RELEASE, NAMESPACE, &["--kube-version", version])
            .unwrap_or_else(|e| panic!("{version}: {e}"));
    }
}

/// The generated CRD (crds/), as one object.
fn generated_crd() -> Value {
    let generated =
        std::fs::read_to_string(repo().join("crds/aiapps.dataforest.dev.yaml")).unwrap();
    assert_eq!(
        generated,
        dataforest_operator::crd::crd_yaml(),
        "the CRD is stale: run make generate"
    );
    let mut crds = objects_of(&generated);
    assert_eq!(crds.len(), 1);
    crds.remove(0)
}

/// The CRD without the labels and annotations a render adds.
fn without_labels_and_annotations(crd: &Value) -> Value {
    let mut crd = crd.clone();
    let metadata = crd["metadata"].as_object_mut().expect("metadata");
    metadata.remove("labels");
    metadata.remove("annotations");
    crd
}

/// The chart ships the CRD as a template (so `helm upgrade` upgrades it): exactly the
/// generated CRD plus the release's labels and, with crds.keep, the keep annotation.
#[test]
fn the_chart_crd_is_the_generated_crd_with_the_release_labels_and_kept() {
    const CRD: &str = "aiapps.dataforest.dev";
    assert!(
        !repo().join(CHART).join("crds").exists(),
        "a crds/ folder in the chart would install a second copy that Helm never upgrades"
    );
    let generated = generated_crd();

    let objects = objects(&template(RELEASE, NAMESPACE, &[]).unwrap());
    let crd = find(&objects, "CustomResourceDefinition", CRD);
    assert_eq!(
        without_labels_and_annotations(crd),
        generated,
        "the chart's CRD template is not the generated CRD: run hack/render.sh (make render)"
    );
    let labels = &crd["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(labels["app.kubernetes.io/instance"], RELEASE);
    assert_eq!(
        crd["metadata"]["annotations"],
        json!({"helm.sh/resource-policy": "keep"}),
        "helm uninstall keeps the CRD, and with it the AiApps"
    );

    let objects = objects_of(&template(RELEASE, NAMESPACE, &["--set", "crds.keep=false"]).unwrap());
    let crd = find(&objects, "CustomResourceDefinition", CRD);
    assert!(
        crd["metadata"]["annotations"].is_null(),
        "{}",
        crd["metadata"]
    );
    assert_eq!(without_labels_and_annotations(crd), generated);

    let objects =
        objects_of(&template(RELEASE, NAMESPACE, &["--set", "crds.enabled=false"]).unwrap());
    assert_eq!(kinds(&objects).get("CustomResourceDefinition"), None);
}

/// deploy/ is the chart rendered by hack/render.sh and a kustomize base over it; its
/// objects do not claim Helm manages them.
#[test]
fn deploy_operator_yaml_is_up_to_date() {
    let out = run(Command::new("bash").args(["hack/render.sh", "--check"]));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let yaml = std::fs::read_to_string(repo().join("deploy/operator.yaml")).unwrap();
    let objects = objects(&yaml);
    assert_eq!(objects[0]["kind"], "Namespace");
    assert_eq!(objects[0]["metadata"]["name"], NAMESPACE);
    let crd = find(
        &objects,
        "CustomResourceDefinition",
        "aiapps.dataforest.dev",
    );
    assert_eq!(without_labels_and_annotations(crd), generated_crd());
    assert!(
        crd["metadata"]["annotations"].is_null(),
        "no Helm annotation"
    );
    for object in &objects {
        let mut labels = vec![&object["metadata"]["labels"]];
        labels.push(&object["spec"]["template"]["metadata"]["labels"]);
        for labels in labels {
            assert!(
                labels.get("app.kubernetes.io/managed-by").is_none(),
                "{} {} claims a manager: {labels}",
                object["kind"],
                object["metadata"]["name"]
            );
        }
    }
    let claims = yaml
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && l.contains("app.kubernetes.io/managed-by"));
    assert_eq!(claims, None, "deploy/operator.yaml names a manager");
    let kustomization: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("deploy/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(kustomization["resources"], json!(["operator.yaml"]));
}

/// image.digest pins the image by digest (the tag then names nothing but the version
/// label); the version label stays a valid label value whatever the tag holds.
#[test]
fn an_image_digest_replaces_the_tag_and_the_version_label_stays_valid() {
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let image_and_version = |args: &[&str]| -> (String, String) {
        let objects = objects_of(&template(RELEASE, NAMESPACE, args).unwrap());
        let deployment = find(&objects, "Deployment", RELEASE);
        let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned();
        let label = |labels: &Value| {
            labels["app.kubernetes.io/version"]
                .as_str()
                .unwrap_or_else(|| panic!("no version label in {labels}"))
                .to_owned()
        };
        let mut versions: BTreeSet<String> = objects
            .iter()
            .map(|o| label(&o["metadata"]["labels"]))
            .collect();
        versions.insert(label(&deployment["spec"]["template"]["metadata"]["labels"]));
        assert_eq!(
            versions.len(),
            1,
            "every object has the same version label: {versions:?}"
        );
        let version = versions.pop_first().unwrap();
        (image, version)
    };
    let repository = "ghcr.io/dataforest-operator/dataforest-operator";
    let app_version = {
        let chart: Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(repo().join(CHART).join("Chart.yaml")).unwrap(),
        )
        .unwrap();
        chart["appVersion"].as_str().unwrap().to_owned()
    };
    let digest_set = format!("image.digest={digest}");
    let tag_with_digest = format!("image.tag=1.2.3@{digest}");
    let long_tag = format!("image.tag={}", "v1.2.3-rc.1_build".repeat(5));
    #[rustfmt::skip]
    let cases: Vec<(Vec<&str>, String, String)> = vec![
        (vec![], format!("{repository}:{app_version}"), app_version.clone()),
        (vec!["--set", "image.tag=1.2.3"], format!("{repository}:1.2.3"), "1.2.3".to_owned()),
        (vec!["--set", &digest_set], format!("{repository}@{digest}"), app_version.clone()),
        (
            vec!["--set", &digest_set, "--set", "image.tag=1.2.3"],
            format!("{repository}@{digest}"),
            "1.2.3".to_owned(),
        ),
        (
            vec!["--set", &tag_with_digest],
            format!("{repository}:1.2.3@{digest}"),
            format!("1.2.3_sha256_{}", &digest["sha256:".len()..])[..63].to_owned(),
        ),
    ];
    for (args, image, version) in cases {
        assert_eq!(image_and_version(&args), (image, version), "{args:?}");
    }
    // Long, and cut where a separator would end it: still a valid label value.
    let (_, version) = image_and_version(&["--set", &long_tag]);
    assert!(
        is_label_value(&version) && version.len() == 62,
        "{version:?} is not a valid label value"
    );

    let error = template(RELEASE, NAMESPACE, &["--set", "image.digest=latest"]).unwrap_err();
    assert!(error.contains("digest"), "{error}");
}

/// A label value: at most 63 characters, [A-Za-z0-9._-], alphanumeric at both ends.
fn is_label_value(value: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && (value.is_empty() || (alnum(value.chars().next()) && alnum(value.chars().last())))
}

#[test]
fn argocd_health_check_maps_every_phase() {
    let out = run(Command::new("bash").arg("hack/test-argocd-health.sh"));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(all.contains("cases pass"), "{all}");
}

// ---------------------------------------------------------------------------------------
// On a real kube-apiserver.

const OPERATOR_SA: &str = "system:serviceaccount:dataforest-system:dataforest-operator";
const TEAM_SA: &str = "system:serviceaccount:team-ops:team-dataforest-operator";

fn kubectl_apply(plane: &dataforest_testenv::ControlPlane, yaml: &str) -> Result<()> {
    kube_support::apply_server_side(plane.kubectl(), "chart-test", yaml)
}

/// Asks the apiserver whether `user` may do `verb` (a SubjectAccessReview, as
/// `kubectl auth can-i --as` does).
async fn can(
    client: &kube::Client,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<bool> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    let sa_namespace = user.split(':').nth(2).unwrap_or_default();
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{sa_namespace}"),
                "system:authenticated".to_owned(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                namespace: namespace.map(str::to_owned),
                name: name.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: kube::Api<SubjectAccessReview> = kube::Api::all(client.clone());
    let answer = api.create(&Default::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// (verb, group, resource, namespace, name, allowed)
type Check<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    bool,
);

async fn expect_access(client: &kube::Client, user: &str, checks: &[Check<'_>]) -> Result<()> {
    let mut wrong = Vec::new();
    for &(verb, group, resource, namespace, name, want) in checks {
        let got = can(client, user, verb, group, resource, namespace, name).await?;
        if got != want {
            wrong.push(format!(
                "{verb} {resource}.{group} in {namespace:?} name {name:?}: allowed={got}, want {want}"
            ));
        }
    }
    ensure!(wrong.is_empty(), "{user}:\n  {}", wrong.join("\n  "));
    Ok(())
}

/// The log file opened for appending, so that stdout and stderr never overwrite each other.
fn append(path: &Path) -> Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The operator binary, stopped with SIGTERM (or killed) when dropped.
struct Operator {
    child: std::process::Child,
    log: PathBuf,
}

impl Operator {
    fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("the operator did not stop within 20s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A folder of our own under the system's temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("dataforest-chart-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A kubeconfig that authenticates as the chart's ServiceAccount with a bound token.
async fn service_account_kubeconfig(
    plane: &dataforest_testenv::ControlPlane,
    admin: &kube::Client,
    release: &Release<'_>,
    dir: &Path,
) -> Result<PathBuf> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: kube::Api<ServiceAccount> =
        kube::Api::namespaced(admin.clone(), release.namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = accounts
        .create_token_request(release.fullname, &Default::default(), &request)
        .await?
        .status
        .context("no token in the TokenRequest")?
        .token;
    let mut config: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(plane.kubeconfig_path())?)?;
    let users = config["users"].as_array_mut().context("kubeconfig users")?;
    for user in users {
        user["user"] = json!({ "token": token });
    }
    let path = dir.join("operator.kubeconfig");
    std::fs::write(&path, serde_yaml_ng::to_string(&config)?)?;
    Ok(path)
}

/// The rendered RBAC on a real apiserver grants each verb the operator uses and nothing
/// it does not; then the real binary, as the chart's ServiceAccount, elects itself,
/// submits an AiApp to the emulator, records Events and kills the app on deletion.
#[test]
fn the_chart_rbac_is_enough_and_no_more_on_a_real_apiserver() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let plane = dataforest_testenv::ControlPlane::start(
        dataforest_testenv::Assets::locate().expect("control-plane assets"),
    )
    .expect("the control plane starts");
    let result = runtime.block_on(rbac_and_operator(&plane));
    plane.stop();
    result.unwrap();
}

async fn rbac_and_operator(plane: &dataforest_testenv::ControlPlane) -> Result<()> {
    dataforest_operator::install_crypto_provider();
    // The committed manifests as users apply them: strict server-side field validation
    // also checks every field of the Deployment, Service and PDB against 1.37's schema.
    let manifests = std::fs::read_to_string(repo().join("deploy/operator.yaml"))?;
    kubectl_apply(plane, &manifests)?;
    // A second release that watches one namespace.
    let team = template(
        "team",
        "team-ops",
        &[
            "--set",
            "watchNamespace=team-a",
            "--set",
            "crds.enabled=false",
            "--set",
            &format!("defaultCredentials.secretName={DEFAULT_SECRET}"),
            "--set",
            "defaultCredentials.namespaces={team-a}",
        ],
    )
    .map_err(anyhow::Error::msg)?;
    let namespaces = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-ops}\n---\n\
                      apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n---\n\
                      apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b}\n";
    kubectl_apply(plane, namespaces)?;
    kubectl_apply(plane, &team)?;

    let admin = plane.client().await?;
    let (g, ev, co) = ("dataforest.dev", "events.k8s.io", "coordination.k8s.io");
    let (a, b, sys) = (Some("team-a"), Some("team-b"), Some(NAMESPACE));
    let lease = Some(RELEASE);
    #[rustfmt::skip]
    let cluster_wide: &[Check] = &[
        ("list", g, "aiapps", None, None, true),
        ("watch", g, "aiapps", None, None, true),
        ("get", g, "aiapps", a, None, true),
        ("patch", g, "aiapps", a, None, true),
        ("patch", g, "aiapps/status", b, None, true),
        ("get", "", "secrets", a, None, true),
        ("list", "", "secrets", None, None, true),
        ("watch", "", "secrets", None, None, true),
        ("create", ev, "events", a, None, true),
        ("create", ev, "events", b, None, true),
        ("get", co, "leases", sys, lease, true),
        ("update", co, "leases", sys, lease, true),
        ("create", co, "leases", sys, None, true),
        ("list", co, "leases", sys, None, true),
        // Nothing more.
        ("create", g, "aiapps", a, None, false),
        ("update", g, "aiapps", a, None, false),
        ("delete", g, "aiapps", a, None, false),
        ("update", g, "aiapps/status", a, None, false),
        ("create", "", "secrets", a, None, false),
        ("update", "", "secrets", a, None, false),
        ("patch", "", "secrets", a, None, false),
        ("delete", "", "secrets", a, None, false),
        ("delete", ev, "events", a, None, false),
        ("patch", ev, "events", a, None, false),
        ("create", "", "events", a, None, false),
        ("get", co, "leases", sys, Some("someone-elses-lease"), false),
        ("update", co, "leases", sys, Some("someone-elses-lease"), false),
        ("delete", co, "leases", sys, lease, false),
        ("create", co, "leases", a, None, false),
        ("list", "", "pods", None, None, false),
        ("get", "", "configmaps", sys, None, false),
        ("create", "apiextensions.k8s.io", "customresourcedefinitions", None, None, false),
    ];
    expect_access(&admin, OPERATOR_SA, cluster_wide).await?;
    let ops = Some("team-ops");
    let team_lease = Some("team-dataforest-operator");
    #[rustfmt::skip]
    let one_namespace: &[Check] = &[
        ("watch", g, "aiapps", a, None, true),
        ("patch", g, "aiapps", a, None, true),
        ("patch", g, "aiapps/status", a, None, true),
        ("get", "", "secrets", a, None, true),
        ("watch", "", "secrets", a, None, true),
        ("create", ev, "events", a, None, true),
        ("get", co, "leases", ops, team_lease, true),
        ("create", co, "leases", ops, None, true),
        ("list", co, "leases", ops, None, true),
        // Nothing outside team-a.
        ("list", g, "aiapps", None, None, false),
        ("watch", g, "aiapps", None, None, false),
        ("get", g, "aiapps", b, None, false),
        ("patch", g, "aiapps", b, None, false),
        ("get", "", "secrets", b, None, false),
        ("list", "", "secrets", None, None, false),
        ("create", ev, "events", b, None, false),
        ("get", co, "leases", sys, lease, false),
        ("delete", "", "secrets", a, None, false),
        // The default Secret, and no other Secret of the release namespace. A list or
        // watch with the field selector metadata.name=<name> is asked for with the name.
        ("get", "", "secrets", ops, Some(DEFAULT_SECRET), true),
        ("list", "", "secrets", ops, Some(DEFAULT_SECRET), true),
        ("watch", "", "secrets", ops, Some(DEFAULT_SECRET), true),
        ("get", "", "secrets", ops, Some("another-secret"), false),
        ("list", "", "secrets", ops, None, false),
        ("watch", "", "secrets", ops, None, false),
        ("update", "", "secrets", ops, Some(DEFAULT_SECRET), false),
    ];
    expect_access(&admin, TEAM_SA, one_namespace).await?;

    // The binary itself, as each release's ServiceAccount: all namespaces, then one.
    let all = Release {
        namespace: NAMESPACE,
        fullname: RELEASE,
        manifests: std::fs::read_to_string(repo().join("deploy/operator.yaml"))?,
        apps_in: "team-b",
        default_secret: None,
    };
    run_operator_as_service_account(plane, &admin, &all).await?;
    let one = Release {
        namespace: "team-ops",
        fullname: "team-dataforest-operator",
        manifests: team,
        apps_in: "team-a",
        default_secret: Some(DEFAULT_SECRET),
    };
    // The release of all namespaces is done; its admission policy (no default Secret:
    // refuse AiApps without credentials everywhere) would overlap the team's.
    let all_policy = format!("{RELEASE}-credentials");
    kube::Api::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding>::all(
        admin.clone(),
    )
    .delete(&all_policy, &Default::default())
    .await?;
    run_operator_as_service_account(plane, &admin, &one).await
}

/// A rendered release: where it runs, its full name (ServiceAccount, Lease, Deployment),
/// its manifests, and the namespace to put a test AiApp in.
struct Release<'a> {
    namespace: &'a str,
    fullname: &'a str,
    manifests: String,
    apps_in: &'a str,
    /// The release's default credentials Secret, if it has one.
    default_secret: Option<&'a str>,
}

/// The team release's default credentials Secret, in its namespace.
const DEFAULT_SECRET: &str = "platform-ncp";

async fn run_operator_as_service_account(
    plane: &dataforest_testenv::ControlPlane,
    admin: &kube::Client,
    release: &Release<'_>,
) -> Result<()> {
    use dataforest_emulator::{Emulator, EmulatorConfig, Timeline};
    use dataforest_operator::crd::{AiApp, Phase};
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::api::events::v1::Event;
    use kube::Api;

    const ACCESS_KEY: &str = "CHARTACCESSKEY000001";
    const SECRET_KEY: &str = "chart-test-secret-key-never-logged";
    const ACCOUNT_ID: &str = "chartAccount0000000001";
    let emulator = Emulator::start(
        EmulatorConfig::default()
            .with_account(ACCESS_KEY, SECRET_KEY, ACCOUNT_ID)
            .with_timeline(Timeline {
                accepted: Duration::from_millis(300),
                running: Duration::from_secs(3600),
            }),
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), release.apps_in);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "ncp-credentials"},
        "stringData": {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY,
                       "accountId": ACCOUNT_ID, "endpoint": emulator.url()},
    }))?;
    secrets.create(&Default::default(), &secret).await?;

    // The Deployment's environment, with what a kubelet would fill in and a loopback
    // endpoint and port instead of the cluster's.
    let objects = objects(&release.manifests);
    let env = env_of(find(&objects, "Deployment", release.fullname));
    let pod_name = format!("{}-7f9-chart", release.fullname);
    let dir = TempDir::new()?;
    let kubeconfig = service_account_kubeconfig(plane, admin, release, dir.path()).await?;
    let port = free_port()?;
    let log = dir.path().join("operator.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_dataforest-operator"));
    command.env_clear().env("KUBECONFIG", &kubeconfig);
    for (name, entry) in &env {
        let value = match entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => pod_name.clone(),
            Some("metadata.namespace") => release.namespace.to_owned(),
            _ => entry["value"].as_str().context("env value")?.to_owned(),
        };
        command.env(name, value);
    }
    let allowed = format!(
        "{},{}",
        env["DATAFOREST_ALLOWED_ENDPOINTS"]["value"]
            .as_str()
            .unwrap(),
        emulator.url()
    );
    command
        .env("DATAFOREST_ALLOWED_ENDPOINTS", allowed)
        .env("METRICS_ADDRESS", format!("127.0.0.1:{port}"))
        .env("POLL_MIN", "200ms")
        .env("POLL_CEILING", "1s")
        .arg("run")
        .stdin(Stdio::null())
        .stdout(append(&log)?)
        .stderr(append(&log)?);
    let mut operator = Operator {
        child: command.spawn()?,
        log,
    };

    let outcome = async {
        let http = reqwest::Client::new();
        let readyz = format!("http://127.0.0.1:{port}/readyz");
        wait_for("/readyz", Duration::from_secs(30), async || {
            let response = http.get(&readyz).send().await?;
            Ok(response.status().is_success().then_some(()))
        })
        .await?;
        let leases: Api<Lease> = Api::namespaced(admin.clone(), release.namespace);
        wait_for("the lease", Duration::from_secs(30), async || {
            let lease = leases.get_opt(release.fullname).await?;
            let holder = lease.and_then(|l| l.spec).and_then(|s| s.holder_identity);
            Ok((holder.as_deref() == Some(pod_name.as_str())).then_some(()))
        })
        .await?;

        let aiapps: Api<AiApp> = Api::namespaced(admin.clone(), release.apps_in);
        let app: AiApp = serde_json::from_value(json!({
            "apiVersion": "dataforest.dev/v1alpha1",
            "kind": "AiApp",
            "metadata": {"name": "rbac-check"},
            "spec": {
                "aiWorkspaceId": "6ZKSGoSJMMwctK257nxgiL",
                "docker": {"image": "nvcr.io/nvidia/pytorch:24.01-py3", "command": "python train.py"},
                "resource": {"gpuCount": 1, "gpuModel": "T4"},
                "credentials": {"secretName": "ncp-credentials"},
            },
        }))?;
        aiapps.create(&Default::default(), &app).await?;
        wait_for("phase Running", Duration::from_secs(60), async || {
            let app = aiapps.get("rbac-check").await?;
            Ok((app.status.and_then(|s| s.phase) == Some(Phase::Running)).then_some(()))
        })
        .await?;
        let events: Api<Event> = Api::namespaced(admin.clone(), release.apps_in);
        wait_for("an Event from the operator", Duration::from_secs(30), async || {
            let list = events.list(&Default::default()).await?;
            Ok(list
                .items
                .iter()
                .any(|e| {
                    e.reporting_controller.as_deref() == Some("dataforest-operator")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("rbac-check")
                })
                .then_some(()))
        })
        .await?;

        aiapps.delete("rbac-check", &Default::default()).await?;
        wait_for("the AiApp to be gone", Duration::from_secs(60), async || {
            Ok(aiapps.get_opt("rbac-check").await?.is_none().then_some(()))
        })
        .await?;
        let apps = emulator.apps();
        ensure!(
            apps.len() == 1 && apps[0].killed,
            "want one app, killed by the deletion; the emulator has {apps:?}"
        );
        if let Some(name) = release.default_secret {
            let keys = (ACCESS_KEY, SECRET_KEY, ACCOUNT_ID, emulator.url());
            default_secret_serves_an_aiapp(admin, release, name, keys).await?;
            let apps = emulator.apps();
            ensure!(
                apps.len() == 2 && apps.iter().all(|a| a.killed),
                "want two apps, both killed by their deletion; the emulator has {apps:?}"
            );
        }

        let status = operator.terminate()?;
        ensure!(status.success(), "the operator exited with {status} on SIGTERM");
        let log = operator.log();
        ensure!(
            log.contains("leading: reconciling AiApps"),
            "the operator's log does not show it leading:\n{log}"
        );
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
    if outcome.is_err() {
        eprintln!("--- operator log ---\n{}", operator.log());
    }
    outcome
}

/// With the release's RBAC only: an AiApp without credentials waits, naming the default
/// Secret it could not find (read in the release namespace: a 404, not a 403); creating
/// that Secret wakes it through the watch of that one Secret (by name, as the Role
/// allows), and it runs and is killed on deletion.
async fn default_secret_serves_an_aiapp(
    admin: &kube::Client,
    release: &Release<'_>,
    name: &str,
    (access_key, secret_key, account_id, endpoint): (&str, &str, &str, String),
) -> Result<()> {
    use dataforest_operator::crd::{AiApp, Phase};
    use k8s_openapi::api::core::v1::Secret;
    use kube::Api;

    let aiapps: Api<AiApp> = Api::namespaced(admin.clone(), release.apps_in);
    let app: AiApp = serde_json::from_value(json!({
        "apiVersion": "dataforest.dev/v1alpha1",
        "kind": "AiApp",
        "metadata": {"name": "default-check"},
        "spec": {
            "aiWorkspaceId": "6ZKSGoSJMMwctK257nxgiL",
            "docker": {"image": "nvcr.io/nvidia/pytorch:24.01-py3", "command": "python train.py"},
            "resource": {"gpuCount": 1, "gpuModel": "T4"},
        },
    }))?;
    // Until the removal of the other release's policy binding has reached admission.
    wait_for(
        "the AiApp to be admitted",
        Duration::from_secs(30),
        async || {
            Ok(aiapps
                .create(&Default::default(), &app)
                .await
                .ok()
                .map(drop))
        },
    )
    .await?;
    let missing = format!("Secret {}/{name} not found", release.namespace);
    wait_for(
        "CredentialsNotFound naming the default Secret",
        Duration::from_secs(60),
        async || {
            let app = aiapps.get("default-check").await?;
            let status = app.status.unwrap_or_default();
            Ok(status
                .conditions
                .iter()
                .any(|c| {
                    c.type_ == "Submitted"
                        && c.reason == "CredentialsNotFound"
                        && c.message == missing
                })
                .then_some(()))
        },
    )
    .await?;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"accessKey": access_key, "secretKey": secret_key,
                       "accountId": account_id, "endpoint": endpoint},
    }))?;
    Api::<Secret>::namespaced(admin.clone(), release.namespace)
        .create(&Default::default(), &secret)
        .await?;
    // Well within the 5-minute safety requeue: the watch woke it.
    wait_for(
        "phase Running with the default Secret",
        Duration::from_secs(60),
        async || {
            let app = aiapps.get("default-check").await?;
            Ok((app.status.and_then(|s| s.phase) == Some(Phase::Running)).then_some(()))
        },
    )
    .await?;
    aiapps.delete("default-check", &Default::default()).await?;
    wait_for(
        "the AiApp to be gone",
        Duration::from_secs(60),
        async || {
            Ok(aiapps
                .get_opt("default-check")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await
}
