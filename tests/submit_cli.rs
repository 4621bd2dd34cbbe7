//! `dataforest-operator submit` as a user runs it: the built binary, its output and exit
//! status, against an emulator started here.

mod support;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use dataforest_emulator::{Fault, Faults};
use dataforest_operator::dataforest::Operation;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::*;

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

/// Runs `submit --file FILE ARGS...` with exactly the given environment (see `run_cli`).
async fn submit(args: &[&str], file: &Path, env: &[(&str, &str)]) -> CliRun {
    let mut argv = vec!["submit", "--file", file.to_str().unwrap()];
    argv.extend_from_slice(args);
    run_cli(&argv, env, None).await
}

fn keys(access: &'static str, secret: &'static str) -> [(&'static str, &'static str); 2] {
    [("NCP_ACCESS_KEY", access), ("NCP_SECRET_KEY", secret)]
}

#[tokio::test]
async fn a_dry_run_prints_a_request_whose_signature_verifies_independently_and_sends_nothing() {
    let emu = emulator(FOREVER).await;
    let dir = TempDir::new("dry");
    let file = dir.file("app.yaml", MANIFEST);
    let run = submit(
        &["--dry-run", "--endpoint", &emu.url()],
        &file,
        &keys(AK1, SK1),
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");

    let (head, body) = run
        .stdout
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
    let run = submit(&[], &file, &env).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let apps = emu.apps();
    assert_eq!(apps.len(), 1);
    assert_eq!(answer["id"], apps[0].id.as_str());
    assert_eq!(answer["state"], "ACCEPTED");
}

#[tokio::test]
async fn a_manifest_on_stdin_is_submitted_and_its_problems_name_stdin() {
    let emu = emulator(FOREVER).await;
    let url = emu.url();
    let env = [
        ("NCP_ACCESS_KEY", AK1),
        ("NCP_SECRET_KEY", SK1),
        ("DATAFOREST_ENDPOINT", url.as_str()),
    ];
    let run = run_cli(&["submit", "--file", "-"], &env, Some(MANIFEST)).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["id"], emu.apps()[0].id.as_str());
    assert!(emu.apps()[0].name.starts_with("resnettr-"));

    let bad = run_cli(&["submit", "-f", "-"], &env, Some("spec: [unclosed")).await;
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(
        bad.stderr
            .starts_with("dataforest-operator submit: stdin: invalid YAML"),
        "{bad:?}"
    );
    assert_eq!(emu.apps().len(), 1);
}

#[tokio::test]
async fn keys_given_as_flags_submit_like_keys_in_the_environment() {
    let emu = emulator(FOREVER).await;
    let dir = TempDir::new("flags");
    let file = dir.file("app.yaml", MANIFEST);
    let key_file = dir.file("secret-key", &format!("  {SK1}\n"));
    let url = emu.url();
    let run = submit(
        &[
            "--access-key",
            AK1,
            "--secret-key-file",
            key_file.to_str().unwrap(),
            "--endpoint",
            &url,
            "--timeout",
            "5s",
        ],
        &file,
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(emu.apps().len(), 1);
}

#[tokio::test]
async fn refused_keys_exit_2_naming_the_access_key_and_the_variables() {
    let emu = emulator(FOREVER).await;
    let dir = TempDir::new("refused");
    let file = dir.file("app.yaml", MANIFEST);
    let env = [
        ("NCP_ACCESS_KEY", AK1),
        ("NCP_SECRET_KEY", WRONG_SK),
        ("RUST_LOG", "trace"),
    ];
    let run = submit(&["--endpoint", &emu.url()], &file, &env).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    let line = run.error_line();
    assert!(
        line.starts_with(&format!(
            "dataforest-operator submit: Data Forest refused the credentials (access key {AK1})"
        )),
        "{line}"
    );
    assert!(line.contains("Authentication Failed"), "{line}");
    assert!(line.contains("NCP_ACCESS_KEY / NCP_SECRET_KEY"), "{line}");
    assert!(emu.apps().is_empty());
}

#[tokio::test]
async fn an_api_error_exits_1_with_the_apis_message_on_one_line() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        quota: Fault::next(1),
        ..Faults::default()
    })
    .unwrap();
    let dir = TempDir::new("apierr");
    let file = dir.file("app.yaml", MANIFEST);
    let run = submit(&["--endpoint", &emu.url()], &file, &keys(AK1, SK1)).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.starts_with(
            "dataforest-operator submit: Data Forest answered HTTP 400: exceeded limit on resource quota"
        ),
        "{run:?}"
    );
    assert!(run.stderr.contains("[x-ncp-trace-id "), "{run:?}");
    assert!(!run.stderr.contains("may have been created"), "{run:?}");
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{run:?}");
    assert!(emu.apps().is_empty());
}

#[tokio::test]
async fn a_lost_answer_exits_1_naming_the_apps_list_command_that_finds_the_app() {
    let emu = emulator(FOREVER).await;
    emu.set_faults(Faults {
        lost_response: Fault::next(1).on(&[Operation::Submit]),
        ..Faults::default()
    })
    .unwrap();
    let dir = TempDir::new("lost");
    let file = dir.file("app.yaml", MANIFEST);
    let url = emu.url();
    let env = [
        ("NCP_ACCESS_KEY", AK1),
        ("NCP_SECRET_KEY", SK1),
        ("NCP_ACCOUNT_ID", ACCOUNT1),
        ("RUST_LOG", "trace"),
    ];
    let run = submit(&["--endpoint", &url], &file, &env).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let created = emu.apps();
    assert_eq!(created.len(), 1, "the app was created all the same");
    let prefix = &created[0].name_prefix;
    let line = run.error_line();
    let expected = format!(
        "dataforest-operator apps list --account-id {ACCOUNT1} --prefix {prefix} --endpoint {url}"
    );
    assert!(
        line.contains(&format!("`{expected}` before submitting again")),
        "{line}"
    );
    assert!(!line.contains("getList"), "{line}");

    // The command from the hint, run as written, finds the app.
    let words: Vec<&str> = expected.split(' ').skip(1).collect();
    let found = run_cli(&words, &keys(AK1, SK1), None).await;
    assert_eq!(found.code, Some(0), "{found:?}");
    assert!(found.stdout.contains(&created[0].id), "{found:?}");

    // Without the account id at hand, the hint leaves a placeholder for it.
    emu.set_faults(Faults {
        lost_response: Fault::next(1).on(&[Operation::Submit]),
        ..Faults::default()
    })
    .unwrap();
    let run = submit(&["--endpoint", &url], &file, &keys(AK1, SK1)).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "apps list --account-id <ACCOUNT_ID> --prefix {prefix} "
        )),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_timeout_without_a_unit_exits_2_naming_the_format() {
    let dir = TempDir::new("timeout");
    let file = dir.file("app.yaml", MANIFEST);
    for bare in ["30", "0s"] {
        let run = submit(&["--timeout", bare, "--dry-run"], &file, &keys(AK1, SK1)).await;
        assert_eq!(run.code, Some(2), "{run:?}");
        assert!(run.stderr.contains("--timeout"), "{run:?}");
    }
    let run = submit(&["--timeout", "30"], &file, &keys(AK1, SK1)).await;
    assert!(run.stderr.contains("like 500ms, 30s or 2m"), "{run:?}");
    let old = submit(&["--timeout-secs", "30"], &file, &keys(AK1, SK1)).await;
    assert_eq!(old.code, Some(2), "the old flag is gone: {old:?}");
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
            "no secret key: set NCP_SECRET_KEY or pass --secret-key-file",
        ),
        (
            good.clone(),
            vec![],
            vec![("NCP_ACCESS_KEY", AK1), ("NCP_SECRET_KEY", "")],
            "no secret key: set NCP_SECRET_KEY",
        ),
        (
            good.clone(),
            vec![],
            vec![],
            "no access key: set NCP_ACCESS_KEY or pass --access-key",
        ),
        (
            good.clone(),
            vec!["--secret-key-file", "/nonexistent/secret-key"],
            vec![("NCP_ACCESS_KEY", AK1)],
            "cannot read the secret key file /nonexistent/secret-key",
        ),
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
        let run = submit(&args, &file, &env).await;
        assert_eq!(run.code, Some(2), "{problem}: {run:?}");
        assert!(
            run.stderr.starts_with("dataforest-operator submit: ") && run.stderr.contains(problem),
            "expected {problem:?} in {run:?}"
        );
        assert_eq!(
            run.stderr.trim_end().lines().count(),
            1,
            "one line: {run:?}"
        );
        assert!(run.stdout.is_empty());
    }
}

#[tokio::test]
async fn a_bare_spec_with_its_own_prefix_is_submitted_with_that_prefix() {
    let emu = emulator(FOREVER).await;
    let dir = TempDir::new("bare");
    let spec = "aiWorkspaceId: 6ZKSGoSJMMwctK257nxgiL\nnamePrefix: mine\ndocker:\n  image: i\n  command: c\n";
    let file = dir.file("spec.yaml", spec);
    let run = submit(&["--endpoint", &emu.url()], &file, &keys(AK1, SK1)).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(emu.apps()[0].name.starts_with("mine-"));
}

#[tokio::test]
async fn an_env_from_in_the_file_exits_2_saying_only_the_operator_reads_secrets_and_sends_nothing()
{
    let emu = emulator(FOREVER).await;
    let dir = TempDir::new("envfrom");
    let manifest = MANIFEST.replace(
        "    command: python train.py\n",
        "    command: python train.py\n    envFrom:\n      - name: TOKEN\n        secretKeyRef: {name: api, key: token}\n",
    );
    let file = dir.file("app.yaml", &manifest);
    for args in [
        vec!["--endpoint", &emu.url()],
        vec!["--dry-run", "--endpoint", &emu.url()],
    ] {
        let run = submit(&args, &file, &keys(AK1, SK1)).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(
            run.stderr
                .contains("spec.docker.envFrom: not supported by `submit`")
                && run.stderr.contains("only the operator"),
            "{args:?}: {run:?}"
        );
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
    assert_eq!(emu.stats().total(Operation::Submit), 0, "nothing is sent");
}
