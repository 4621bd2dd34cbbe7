//! `dataforest-operator submit` as a user runs it: the built binary, its output and exit
//! status, against an emulator started here.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use dataforest_operator::dataforest::Operation;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::*;

/// A temporary folder for manifests, removed when the test ends however it ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("df-submit-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const MANIFEST: &str = r#"apiVersion: dataforest.dev/v1alpha1
kind: AiApp
metadata:
  name: resnet-train
  namespace: ml
spec:
  aiWorkspaceId: 6ZKSGoSJMMwctK257nxgiL
  docker:
    image: nvcr.io/nvidia/pytorch:24.01-py3
    command: python train.py
  resource:
    gpuCount: 1
    gpuModel: T4
"#;

/// Runs `submit` with exactly the given environment (nothing inherited that matters).
async fn submit(args: &[&str], file: &Path, env: &[(&str, &str)]) -> (Output, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dataforest-operator"))
        .arg("submit")
        .arg("--file")
        .arg(file)
        .args(args)
        .env_remove("NCP_ACCESS_KEY")
        .env_remove("NCP_SECRET_KEY")
        .env_remove("DATAFOREST_ENDPOINT")
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

fn keys(access: &'static str, secret: &'static str) -> [(&'static str, &'static str); 2] {
    [("NCP_ACCESS_KEY", access), ("NCP_SECRET_KEY", secret)]
}

#[tokio::test]
async fn a_dry_run_prints_a_request_whose_signature_verifies_independently_and_sends_nothing() {
    let emu = emulator(FOREVER).await;
    let dir = TempDir::new("dry");
    let file = dir.file("app.yaml", MANIFEST);
    let (output, stdout, stderr) = submit(
        &["--dry-run", "--endpoint", &emu.url()],
        &file,
        &keys(AK1, SK1),
    )
    .await;
    assert!(output.status.success(), "{stderr}");

    let (head, body) = stdout
        .split_once("\n\n")
        .expect("headers, a blank line, the body");
    let mut lines = head.lines();
    let request_line = lines.next().unwrap();
    assert_eq!(
        request_line,
        format!("POST {}/api/v2/aiapps/submit", emu.url())
    );
    let headers: Vec<(&str, &str)> = lines.map(|l| l.split_once(": ").expect(l)).collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .expect(name)
    };
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("x-ncp-iam-access-key"), AK1);
    let body = body.trim_end_matches('\n');
    assert_eq!(header("content-length"), body.len().to_string());

    let timestamp = header("x-ncp-apigw-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(SK1.as_bytes()).unwrap();
    mac.update(format!("POST /api/v2/aiapps/submit\n{timestamp}\n{AK1}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(header("x-ncp-apigw-signature-v2"), expected);

    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["aiWorkspaceId"], "6ZKSGoSJMMwctK257nxgiL");
    assert!(
        json["namePrefix"].as_str().unwrap().starts_with("resnettr"),
        "derived from metadata.name: {json}"
    );
    assert!(
        !stdout.contains(SK1) && !stderr.contains(SK1),
        "the secret never shows"
    );
    assert_eq!(
        emu.stats().total(Operation::Submit),
        0,
        "a dry run sends nothing"
    );
}

#[tokio::test]
async fn a_real_submit_prints_the_created_app_as_json() {
    let emu = emulator(FOREVER).await;
    let dir = TempDir::new("real");
    let file = dir.file("app.yaml", MANIFEST);
    let url = emu.url();
    let env = [
        ("NCP_ACCESS_KEY", AK1),
        ("NCP_SECRET_KEY", SK1),
        ("DATAFOREST_ENDPOINT", url.as_str()),
    ];
    let (output, stdout, stderr) = submit(&[], &file, &env).await;
    assert!(output.status.success(), "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let apps = emu.apps();
    assert_eq!(apps.len(), 1);
    assert_eq!(answer["id"], apps[0].id.as_str());
    assert_eq!(answer["state"], "ACCEPTED");
    assert!(!stdout.contains(SK1) && !stderr.contains(SK1));
}

#[tokio::test]
async fn an_api_error_exits_1_with_the_apis_message() {
    let emu = emulator(FOREVER).await;
    let dir = TempDir::new("apierr");
    let file = dir.file("app.yaml", MANIFEST);
    let (output, _, stderr) = submit(
        &["--endpoint", &emu.url()],
        &file,
        &keys(AK1, "wrong-secret"),
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Authentication Failed"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("wrong-secret"));
    assert!(emu.apps().is_empty());
}

#[tokio::test]
async fn each_kind_of_bad_input_exits_2_naming_the_problem() {
    let dir = TempDir::new("bad");
    let good = dir.file("good.yaml", MANIFEST);
    type Env = Vec<(&'static str, &'static str)>;
    let cases: Vec<(PathBuf, Vec<&str>, Env, &str)> = vec![
        (
            dir.0.join("missing.yaml"),
            vec![],
            keys(AK1, SK1).to_vec(),
            "cannot read",
        ),
        (
            dir.file("bad.yaml", "spec: [unclosed"),
            vec![],
            keys(AK1, SK1).to_vec(),
            "invalid YAML",
        ),
        (
            dir.file("gpus.yaml", &MANIFEST.replace("gpuCount: 1", "gpuCount: 9")),
            vec![],
            keys(AK1, SK1).to_vec(),
            "spec.resource.gpuCount: must be 1 to 8, got 9",
        ),
        (
            dir.file(
                "bare.yaml",
                "aiWorkspaceId: ws\ndocker: {image: i, command: c}\n",
            ),
            vec![],
            keys(AK1, SK1).to_vec(),
            "spec.namePrefix",
        ),
        (
            good.clone(),
            vec![],
            vec![("NCP_ACCESS_KEY", AK1)],
            "NCP_SECRET_KEY is not set",
        ),
        (good.clone(), vec![], vec![], "NCP_ACCESS_KEY is not set"),
        (
            good.clone(),
            vec!["--endpoint", "ftp://example.com"],
            keys(AK1, SK1).to_vec(),
            "invalid endpoint",
        ),
        (
            good.clone(),
            vec!["--endpoint", "not a url"],
            keys(AK1, SK1).to_vec(),
            "invalid endpoint",
        ),
    ];
    for (file, args, env, problem) in cases {
        let (output, stdout, stderr) = submit(&args, &file, &env).await;
        assert_eq!(output.status.code(), Some(2), "{problem}: {stderr}");
        assert!(
            stderr.contains(problem),
            "expected {problem:?} in {stderr:?}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stdout.is_empty());
        assert!(!stderr.contains(SK1));
    }
}

#[tokio::test]
async fn a_bare_spec_with_its_own_prefix_is_submitted_with_that_prefix() {
    let emu = emulator(FOREVER).await;
    let dir = TempDir::new("bare");
    let spec = "aiWorkspaceId: 6ZKSGoSJMMwctK257nxgiL\nnamePrefix: mine\ndocker:\n  image: i\n  command: c\n";
    let file = dir.file("spec.yaml", spec);
    let (output, _, stderr) = submit(&["--endpoint", &emu.url()], &file, &keys(AK1, SK1)).await;
    assert!(output.status.success(), "{stderr}");
    assert!(emu.apps()[0].name.starts_with("mine-"));
}
