//! The alert rules and the Grafana dashboard: `promtool check rules` and the rules' unit
//! tests (`promtool test rules`), every dashboard query parsed by promtool, and the
//! chart's PrometheusRule and dashboard ConfigMap carrying exactly the files in
//! `deploy/prometheus/` and `deploy/grafana/`. That every metric they name is one the
//! operator exports is checked against the running binary in `tests/e2e/observability.rs`.
//!
//! promtool comes from `hack/promtool.sh` and helm from `hack/helm.sh`, each built once
//! from the Go module proxy, then cached.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde::Deserialize as _;
use serde_json::Value;

const CHART: &str = "charts/dataforest-operator";
const RULES: &str = "deploy/prometheus/rules.yaml";
const RULES_TEST: &str = "deploy/prometheus/rules.test.yaml";
const DASHBOARD: &str = "deploy/grafana/dataforest-operator.json";
const CHART_RULES: &str = "charts/dataforest-operator/files/prometheus-rules.yaml";
const CHART_DASHBOARD: &str = "charts/dataforest-operator/files/grafana-dashboard.json";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The path a `hack/<script>` prints after building (once) and caching its tool.
fn tool(script: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("hack").join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("bash runs hack/{script}: {e}"));
    assert!(out.status.success(), "hack/{script} failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
}

fn promtool() -> &'static Path {
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    PROMTOOL.get_or_init(|| tool("promtool.sh"))
}

fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| tool("helm.sh"))
}

fn run(command: &mut Command) -> Output {
    run_in(repo(), command)
}

fn run_in(dir: &Path, command: &mut Command) -> Output {
    command
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("valid YAML")
}

/// The objects `helm template` renders with `args`.
fn render(args: &[&str]) -> Vec<Value> {
    let out = run(Command::new(helm())
        .args(["template", "dataforest-operator", CHART])
        .args(["--namespace", "dataforest-system"])
        .args(args));
    assert!(
        out.status.success(),
        "helm template failed:\n{}",
        output(&out)
    );
    serde_yaml_ng::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
        .map(|doc| Value::deserialize(doc).expect("the render is valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let check = run(Command::new(promtool()).args(["check", "rules", RULES]));
    let said = output(&check);
    assert!(check.status.success(), "promtool check rules:\n{said}");
    assert!(said.contains("SUCCESS: 5 rules found"), "{said}");

    // Relative to the test file, as its rule_files entry is.
    let test = run_in(
        &repo().join("deploy/prometheus"),
        Command::new(promtool()).args(["test", "rules", "rules.test.yaml"]),
    );
    let said = output(&test);
    assert!(test.status.success(), "promtool test rules:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn every_alert_has_a_unit_test_and_a_severity_and_a_summary() {
    let rules = yaml(&read(RULES));
    let tests = read(RULES_TEST);
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["alert"]
                .as_str()
                .expect("only alerts, no recording rules");
            assert!(
                ["critical", "warning"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                "{alert} has no severity critical or warning"
            );
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{alert}: summary"
            );
            assert!(
                rule["annotations"]["description"].is_string(),
                "{alert}: description"
            );
            alerts.insert(alert.to_owned());
        }
    }
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    for alert in &alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - "
            )),
            "{RULES_TEST} has no case where {alert} fires"
        );
    }
}

#[test]
fn the_charts_prometheus_rule_carries_the_groups_of_deploy_prometheus_rules_yaml() {
    assert!(
        read(CHART_RULES) == read(RULES),
        "{CHART_RULES} differs from {RULES}: cp {RULES} {CHART_RULES}"
    );
    assert!(
        of_kind(&render(&[]), "PrometheusRule").is_empty(),
        "no PrometheusRule by default"
    );
    let objects = render(&[
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=kube-prometheus-stack",
    ]);
    let rules = of_kind(&objects, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let rule = rules[0];
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], "dataforest-system");
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        rule["spec"]["groups"],
        yaml(&read(RULES))["groups"],
        "the chart's PrometheusRule has other groups than {RULES}"
    );
    // The alerts' own templates reach Prometheus unexpanded.
    let rendered = serde_json::to_string(&rule["spec"]).unwrap();
    assert!(rendered.contains("{{ $labels.namespace }}"), "{rendered}");
}

#[test]
fn the_charts_dashboard_config_map_carries_deploy_grafana_dashboard() {
    assert!(
        read(CHART_DASHBOARD) == read(DASHBOARD),
        "{CHART_DASHBOARD} differs from {DASHBOARD}: cp {DASHBOARD} {CHART_DASHBOARD}"
    );
    assert!(
        of_kind(&render(&[]), "ConfigMap").is_empty(),
        "no dashboard ConfigMap by default"
    );
    let objects = render(&[
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "grafanaDashboard.namespace=monitoring",
        "--set",
        "grafanaDashboard.annotations.grafana_folder=Operators",
    ]);
    let maps = of_kind(&objects, "ConfigMap");
    assert_eq!(maps.len(), 1);
    let map = maps[0];
    assert_eq!(map["metadata"]["namespace"], "monitoring");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        map["metadata"]["annotations"]["grafana_folder"],
        "Operators"
    );
    let json = map["data"]["dataforest-operator.json"]
        .as_str()
        .expect("the dashboard as a string");
    let shipped: Value = serde_json::from_str(json).expect("the ConfigMap holds JSON");
    let file: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    assert_eq!(shipped, file);
}

/// Every query of the dashboard, Grafana's interval variables replaced by a duration.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a Prometheus query");
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__interval", "1m");
            queries.push((panel["title"].as_str().unwrap_or("").to_owned(), expr));
        }
    }
    queries
}

#[test]
fn every_dashboard_query_parses_and_every_panel_uses_the_datasource_variable() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("valid JSON");
    assert_eq!(dashboard["uid"], "dataforest-operator");
    let variables: BTreeSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(
        variables,
        BTreeSet::from(["datasource", "namespace", "job"])
    );
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("");
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "{title}: id taken"
        );
        let grid = &panel["gridPos"];
        let right = grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap();
        assert!(right <= 24, "{title} is wider than the dashboard");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or("");
            assert!(
                expr.contains(r#"namespace=~"$namespace", job=~"$job""#),
                "{title}: {expr} ignores the namespace and job variables"
            );
        }
    }
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    for (title, expr) in queries {
        let out = run(Command::new(promtool()).args(["--experimental", "promql", "format", &expr]));
        assert!(
            out.status.success(),
            "{title}: promtool cannot parse {expr}:\n{}",
            output(&out)
        );
    }
}

#[test]
fn promtool_refuses_a_broken_query_and_a_failing_rule_test() {
    // The checks above would pass on anything if promtool accepted everything.
    let out = run(Command::new(promtool()).args([
        "--experimental",
        "promql",
        "format",
        "sum(rate(x[5m])",
    ]));
    assert!(!out.status.success(), "{}", output(&out));
    let dir = std::env::temp_dir().join(format!("rules-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(repo().join(RULES), dir.join("rules.yaml")).unwrap();
    // Pod a leads throughout: the alert the real test expects at 17m must not fire.
    let leading = read(RULES_TEST).replace("values: '1x10 0x20'", "values: '1x30'");
    std::fs::write(dir.join("rules.test.yaml"), leading).unwrap();
    let out = run_in(
        &dir,
        Command::new(promtool()).args(["test", "rules", "rules.test.yaml"]),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let said = output(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("DataForestOperatorNoLeader"), "{said}");
}
