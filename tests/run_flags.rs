//! `dataforest-operator run` refuses bad flags at start, naming them, before it touches
//! Kubernetes: an entry of `--allowed-endpoints` that is not an endpoint would otherwise
//! surface later as a client error retried for ever.

use std::process::Output;

fn run(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dataforest-operator"))
        .arg("run")
        .args(args)
        // Nothing here may reach a cluster: flags are checked first.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("DATAFOREST_ALLOWED_ENDPOINTS")
        .env_remove("DATAFOREST_ENDPOINT")
        .env_remove("DEFAULT_CREDENTIALS_SECRET")
        .env_remove("DEFAULT_CREDENTIALS_NAMESPACES")
        .output()
        .expect("the binary runs")
}

#[test]
fn a_malformed_allowed_endpoint_exits_2_naming_the_entry() {
    for (entry, problem) in [
        ("df.apigw.ntruss.com", "relative URL"),
        ("ftp://df.apigw.ntruss.com", "scheme"),
        ("https://user:pw@df.apigw.ntruss.com", "user information"),
        ("https://df.apigw.ntruss.com/?x=1", "query"),
    ] {
        let list = format!("https://df.apigw.ntruss.com,{entry}");
        let output = run(&["--allowed-endpoints", &list]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{entry}: {stderr}");
        assert!(stderr.contains("--allowed-endpoints"), "{stderr}");
        assert!(
            stderr.contains(entry) && stderr.contains(problem),
            "{entry}: {stderr}"
        );
    }
}

#[test]
fn a_malformed_default_endpoint_exits_2_naming_the_flag() {
    let output = run(&["--endpoint", "not a url"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--endpoint"), "{stderr}");
}

#[test]
fn a_default_credentials_secret_without_its_namespaces_exits_2_naming_both_flags() {
    for (args, first) in [
        (
            ["--default-credentials-secret", "platform-ncp"],
            "--default-credentials-secret",
        ),
        (
            ["--default-credentials-namespaces", "team-a"],
            "--default-credentials-namespaces",
        ),
    ] {
        let output = run(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{first} is set but")),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("--default-credentials-secret")
                && stderr.contains("--default-credentials-namespaces"),
            "{stderr}"
        );
    }
}
