//! The release automation, which cannot run here (no container engine, no registry):
//! `.github/workflows/release.yml` passes actionlint (hack/actionlint.sh, with shellcheck on
//! its scripts); the workflow, the Dockerfile and `make release-binary` build the binary
//! with one cargo command; and the workflow builds both architectures from the Dockerfile
//! and pushes the image and the chart to ghcr.io, with pinned actions and the least
//! permissions.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const WORKFLOW: &str = ".github/workflows/release.yml";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn workflow() -> Value {
    serde_yaml_ng::from_str(&read(WORKFLOW)).expect("the workflow is YAML")
}

/// The `cargo build` commands in a piece of shell (or a Dockerfile's RUN): continuation
/// lines joined, split at `&&` and `;`, from `cargo build` on, whitespace normalised,
/// `$(CARGO)` read as `cargo`.
fn cargo_builds(shell: &str) -> Vec<String> {
    shell
        .replace("\\\n", " ")
        .replace("$(CARGO)", "cargo")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split("&&").flat_map(|part| part.split(';')))
        .filter_map(|command| command.find("cargo build").map(|at| &command[at..]))
        .map(|command| command.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Every step of every job of the workflow, with its job's name.
fn steps(workflow: &Value) -> Vec<(String, Value)> {
    let mut steps = Vec::new();
    for (job, body) in workflow["jobs"].as_object().expect("jobs") {
        for step in body["steps"].as_array().expect("steps") {
            steps.push((job.clone(), step.clone()));
        }
    }
    steps
}

#[test]
fn the_release_workflow_passes_actionlint() {
    let out = Command::new("bash")
        .arg(repo().join("hack/actionlint.sh"))
        .current_dir(repo())
        .output()
        .expect("bash runs hack/actionlint.sh");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "actionlint finds:\n{all}");
    assert!(all.contains("is clean"), "{all}");
}

#[test]
fn the_workflow_the_dockerfile_and_the_makefile_build_the_binary_with_one_cargo_command() {
    let dockerfile = cargo_builds(&read("Dockerfile"));

    let makefile = read("Makefile");
    let recipe: String = makefile
        .lines()
        .skip_while(|line| !line.starts_with("release-binary:"))
        .skip(1)
        .take_while(|line| line.starts_with('\t'))
        .collect::<Vec<_>>()
        .join("\n");
    let make = cargo_builds(&recipe);

    let workflow = workflow();
    let released: Vec<String> = steps(&workflow)
        .iter()
        .filter_map(|(_, step)| step["run"].as_str())
        .flat_map(cargo_builds)
        .collect();

    assert_eq!(dockerfile.len(), 1, "the Dockerfile: {dockerfile:?}");
    assert_eq!(make.len(), 1, "make release-binary: {make:?}");
    assert_eq!(released.len(), 1, "{WORKFLOW}: {released:?}");
    assert_eq!(
        dockerfile, make,
        "the Dockerfile and make release-binary differ"
    );
    assert_eq!(dockerfile, released, "the Dockerfile and {WORKFLOW} differ");
    assert!(
        dockerfile[0].contains("--release") && dockerfile[0].contains("--locked"),
        "{dockerfile:?}"
    );
}

#[test]
fn the_release_workflow_builds_both_architectures_and_pushes_the_image_and_chart_to_ghcr() {
    let workflow = workflow();
    assert_eq!(
        workflow["on"],
        serde_json::json!({"push": {"tags": ["v*"]}}),
        "runs on a version tag, and only then"
    );
    assert_eq!(workflow["env"]["REGISTRY"], "ghcr.io");
    assert_eq!(
        workflow["permissions"],
        serde_json::json!({"contents": "read"}),
        "read-only unless a job asks for more"
    );

    let steps = steps(&workflow);
    let mut pushers = std::collections::BTreeSet::new();
    for (job, step) in &steps {
        if let Some(uses) = step["uses"].as_str() {
            let (_, version) = uses.split_once('@').expect("action@version");
            assert!(
                version.len() == 40 && version.chars().all(|c| c.is_ascii_hexdigit()),
                "{job}: {uses} is not pinned to a commit"
            );
        }
        let run = step["run"].as_str().unwrap_or_default();
        let pushes_image = step["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("docker/build-push-action@"));
        if pushes_image || run.contains("helm push") {
            pushers.insert(job.clone());
        }
    }
    for (job, body) in workflow["jobs"].as_object().unwrap() {
        let writes = body["permissions"]["packages"] == "write";
        assert_eq!(
            writes,
            pushers.contains(job),
            "{job}: packages: write exactly where something is pushed"
        );
    }

    let uses = |prefix: &str| -> Vec<(String, Value)> {
        steps
            .iter()
            .filter(|(_, s)| s["uses"].as_str().is_some_and(|u| u.starts_with(prefix)))
            .cloned()
            .collect()
    };
    let build = uses("docker/build-push-action@");
    assert_eq!(build.len(), 1, "one image build");
    let (job, build) = &build[0];
    let with = &build["with"];
    assert_eq!(with["file"], "Dockerfile");
    assert_eq!(with["push"], true);
    let platforms: Vec<&str> = with["platforms"].as_str().unwrap().split(',').collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert!(
        uses("docker/setup-qemu-action@")
            .iter()
            .any(|(j, _)| j == job)
            && uses("docker/setup-buildx-action@")
                .iter()
                .any(|(j, _)| j == job),
        "arm64 is built under QEMU with buildx"
    );
    assert!(
        with["build-args"]
            .as_str()
            .unwrap()
            .contains("DATAFOREST_BUILD_COMMIT="),
        "the image's --version names its commit"
    );

    // The image goes where the chart's default points.
    let values: Value =
        serde_yaml_ng::from_str(&read("charts/dataforest-operator/values.yaml")).unwrap();
    let repository = values["image"]["repository"].as_str().unwrap();
    let image_name = repository.rsplit('/').next().unwrap();
    assert!(repository.starts_with("ghcr.io/"), "{repository}");
    let meta = uses("docker/metadata-action@");
    let images = meta[0].1["with"]["images"].as_str().unwrap();
    assert!(
        images.starts_with("${{ env.REGISTRY }}/") && images.ends_with(&format!("/{image_name}")),
        "{images} is not {repository}"
    );

    let chart_script: String = steps
        .iter()
        .filter_map(|(_, s)| s["run"].as_str())
        .filter(|run| run.contains("helm push"))
        .collect();
    assert!(
        chart_script.contains("helm package charts/dataforest-operator")
            && chart_script.contains("oci://$REGISTRY/"),
        "the chart is packaged and pushed as an OCI artifact:\n{chart_script}"
    );
}
