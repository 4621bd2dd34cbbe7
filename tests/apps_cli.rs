//! `dataforest-operator apps list|get|kill`, `completions` and `--version` as a user runs
//! them: the built binary over real HTTP against an emulator started here. Every run
//! checks that no secret key shows on stdout or stderr (see `support::run_cli`).

mod support;

use dataforest_operator::dataforest::Operation;
use support::*;

/// The variables a user exports: keys, endpoint and account, all from the environment.
fn exported(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NCP_ACCESS_KEY", AK1.to_owned()),
        ("NCP_SECRET_KEY", SK1.to_owned()),
        ("DATAFOREST_ENDPOINT", url.to_owned()),
        ("NCP_ACCOUNT_ID", ACCOUNT1.to_owned()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `exported` with `changes` applied: a value replaces, `None` removes.
fn exported_but(
    url: &str,
    changes: &[(&'static str, Option<&str>)],
) -> Vec<(&'static str, String)> {
    let mut env = exported(url);
    for (name, value) in changes {
        env.retain(|(k, _)| k != name);
        if let Some(value) = value {
            env.push((name, value.to_string()));
        }
    }
    env
}

async fn apps(args: &[&str], env: &[(&'static str, String)]) -> CliRun {
    let mut argv = vec!["apps"];
    argv.extend_from_slice(args);
    run_cli(&argv, &borrowed(env), None).await
}

/// Ends at once: a zero timeline chosen from the spec (docs/emulator.md).
const ENDS_AT_ONCE: [(&str, &str); 2] = [
    ("DATAFOREST_EMULATOR_ACCEPTED_MS", "0"),
    ("DATAFOREST_EMULATOR_RUNNING_MS", "0"),
];
/// Running at once, for the rest of the test.
const RUNS_AT_ONCE: [(&str, &str); 1] = [("DATAFOREST_EMULATOR_ACCEPTED_MS", "0")];

fn emulator_state(emu: &dataforest_emulator::EmulatorHandle, id: &str) -> String {
    let apps = emu.apps();
    let app = apps
        .iter()
        .find(|a| a.id == id)
        .expect("the emulator holds the app");
    app.state.clone()
}

fn json_ids(stdout: &str) -> Vec<String> {
    let items: Vec<serde_json::Value> = serde_json::from_str(stdout).expect(stdout);
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_shows_an_app_submitted_by_the_binary_as_a_table_row() {
    let emu = emulator(FOREVER).await;
    let env = exported(&emu.url());
    let dir = TempDir::new("list-table");
    let spec = format!(
        "aiWorkspaceId: {WORKSPACE}\nnamePrefix: table\ndocker: {{image: i, command: c}}\n"
    );
    let file = dir.file("spec.yaml", &spec);
    let submitted = run_cli(
        &["submit", "--file", file.to_str().unwrap()],
        &borrowed(&env),
        None,
    )
    .await;
    assert_eq!(submitted.code, Some(0), "{submitted:?}");
    let app = &emu.apps()[0];

    let run = apps(&["list"], &env).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let mut lines = run.stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        ["ID", "NAME", "STATE", "FINAL STATUS", "STARTED", "FINISHED"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row[..4],
        [app.id.as_str(), app.name.as_str(), "ACCEPTED", "UNDEFINED"]
    );
    let shown: k8s_openapi::jiff::Timestamp = row[4].parse().expect("the start time, in UTC");
    assert!(
        (shown.as_millisecond() - app.started_at.as_millisecond()).abs() <= 1,
        "{shown} for {}",
        app.started_at
    );
    assert_eq!(row[5], "-", "not finished");
    assert_eq!(lines.next(), None);
}

#[tokio::test]
async fn list_with_a_prefix_leaves_out_apps_of_other_prefixes() {
    let emu = emulator(FOREVER).await;
    let client = client(&emu);
    let kept = client.submit(&request("keep")).await.unwrap().id.unwrap();
    client.submit(&request("keepx")).await.unwrap();
    client.submit(&request("other")).await.unwrap();

    let run = apps(
        &["list", "--prefix", "keep", "-o", "json"],
        &exported(&emu.url()),
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(json_ids(&run.stdout), vec![kept.clone()]);

    let table = apps(&["list", "--prefix", "keep"], &exported(&emu.url())).await;
    assert_eq!(table.stdout.lines().count(), 2, "{table:?}");
    assert!(table.stdout.contains(&kept), "{table:?}");
}

#[tokio::test]
async fn list_live_hides_an_app_that_ended() {
    let emu = emulator(FOREVER).await;
    let client = client(&emu);
    let ended = client
        .submit(&request_with_env("ended", &ENDS_AT_ONCE))
        .await
        .unwrap()
        .id
        .unwrap();
    let live = client.submit(&request("live")).await.unwrap().id.unwrap();
    assert_eq!(emulator_state(&emu, &ended), "FINISHED");

    let env = exported(&emu.url());
    let all = apps(&["list", "-o", "json"], &env).await;
    let mut all_ids = json_ids(&all.stdout);
    all_ids.sort();
    let mut expected = vec![ended.clone(), live.clone()];
    expected.sort();
    assert_eq!(all_ids, expected);

    let run = apps(&["list", "--live", "-o", "json"], &env).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(json_ids(&run.stdout), [live]);
}

#[tokio::test]
async fn list_as_json_is_an_array_of_the_items_sorted_by_start_time() {
    let emu = emulator(FOREVER).await;
    let client = client(&emu);
    for prefix in ["one", "two", "three"] {
        client.submit(&request(prefix)).await.unwrap();
    }
    let run = apps(
        &["list", "--account-id", ACCOUNT1, "-o", "json"],
        &exported_but(&emu.url(), &[("NCP_ACCOUNT_ID", None)]),
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let items: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(items.len(), 3);
    // Compared as times: as text, "…55.711Z" sorts before "…55.71Z".
    let starts: Vec<k8s_openapi::jiff::Timestamp> = items
        .iter()
        .map(|i| i["startedAt"].as_str().unwrap().parse().unwrap())
        .collect();
    let mut sorted = starts.clone();
    sorted.sort();
    assert_eq!(starts, sorted);
    assert!(
        items
            .iter()
            .all(|i| i["state"] == "ACCEPTED" && i["name"].is_string())
    );
}

#[tokio::test]
async fn get_shows_the_state_and_the_containers_log_url() {
    let emu = emulator(FOREVER).await;
    let id = client(&emu)
        .submit(&request_with_env("getme", &RUNS_AT_ONCE))
        .await
        .unwrap()
        .id
        .unwrap();
    let env = exported(&emu.url());
    let log_url = format!("{}/_emulator/logs/{id}", emu.url());

    let text = apps(&["get", &id], &env).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    assert!(
        text.stdout.starts_with(&format!("id:          {id}\n")),
        "{text:?}"
    );
    assert!(text.stdout.contains("state:       RUNNING\n"), "{text:?}");
    assert!(
        text.stdout.contains("    status:      RUNNING\n"),
        "{text:?}"
    );
    assert!(
        text.stdout
            .contains(&format!("    logUrl:      {log_url}\n")),
        "{text:?}"
    );

    let json = apps(&["get", &id, "-o", "json"], &env).await;
    assert_eq!(json.code, Some(0), "{json:?}");
    let detail: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(detail["id"], id.as_str());
    assert_eq!(detail["state"], "RUNNING");
    let containers = detail["containers"].as_object().unwrap();
    assert_eq!(containers.len(), 1);
    assert!(containers.values().all(|c| c["logUrl"] == log_url.as_str()));
}

#[tokio::test]
async fn kill_without_yes_sends_nothing_and_exits_2_saying_how_to_confirm() {
    let emu = emulator(FOREVER).await;
    let id = client(&emu)
        .submit(&request("keepme"))
        .await
        .unwrap()
        .id
        .unwrap();
    let env = exported_but(&emu.url(), &[("RUST_LOG", Some("trace"))]);

    let run = apps(&["kill", &id], &env).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    let line = run.error_line();
    assert!(
        line.starts_with("dataforest-operator apps kill: "),
        "{line}"
    );
    for words in [
        "cannot be undone",
        &format!("dataforest-operator apps get {id}"),
        &format!("dataforest-operator apps kill {id} --yes"),
    ] {
        assert!(line.contains(words), "{words:?} in {line}");
    }
    assert_eq!(emu.stats().total(Operation::Kill), 0, "nothing was sent");
    assert_eq!(emulator_state(&emu, &id), "ACCEPTED", "the app still runs");
}

#[tokio::test]
async fn kill_with_yes_and_keys_given_as_flags_ends_the_app() {
    let emu = emulator(FOREVER).await;
    let id = client(&emu)
        .submit(&request("killme"))
        .await
        .unwrap()
        .id
        .unwrap();
    let dir = TempDir::new("kill-flags");
    let key_file = dir.file("secret-key", &format!("{SK1}\n"));
    let url = emu.url();

    let run = run_cli(
        &[
            "apps",
            "kill",
            &id,
            "--yes",
            "--access-key",
            AK1,
            "--secret-key-file",
            key_file.to_str().unwrap(),
            "--endpoint",
            &url,
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains(&format!("kill sent for app {id}")),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains(&format!("`dataforest-operator apps get {id}`")),
        "{run:?}"
    );
    assert_eq!(emu.stats().total(Operation::Kill), 1);
    assert_eq!(emulator_state(&emu, &id), "KILLED");

    let get = apps(&["get", &id], &exported(&url)).await;
    assert!(get.stdout.contains("state:       KILLED\n"), "{get:?}");
}

#[tokio::test]
async fn a_secret_key_file_takes_precedence_over_the_environment() {
    let emu = emulator(FOREVER).await;
    let dir = TempDir::new("file-wins");
    let key_file = dir.file("secret-key", SK1);
    let env = exported_but(&emu.url(), &[("NCP_SECRET_KEY", Some(WRONG_SK))]);
    let run = apps(
        &["list", "--secret-key-file", key_file.to_str().unwrap()],
        &env,
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
}

#[tokio::test]
async fn a_wrong_secret_key_exits_2_naming_the_credentials_problem() {
    let emu = emulator(FOREVER).await;
    let id = client(&emu)
        .submit(&request("safe"))
        .await
        .unwrap()
        .id
        .unwrap();
    let env = exported_but(
        &emu.url(),
        &[
            ("NCP_SECRET_KEY", Some(WRONG_SK)),
            ("RUST_LOG", Some("trace")),
        ],
    );
    for args in [
        vec!["list"],
        vec!["get", id.as_str()],
        vec!["kill", id.as_str(), "--yes"],
    ] {
        let run = apps(&args, &env).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        let line = run.error_line();
        let command = format!("dataforest-operator apps {}: ", args[0]);
        assert!(line.starts_with(&command), "{line}");
        for words in [
            "Data Forest refused the credentials (access key AKEMULATOR0000000001",
            "Authentication Failed",
            "NCP_ACCESS_KEY / NCP_SECRET_KEY",
        ] {
            assert!(line.contains(words), "{words:?} in {line}");
        }
    }
    // The same through the flag, which a person might try next.
    let run = apps(
        &["list", "--secret-key", WRONG_SK],
        &exported_but(&emu.url(), &[("NCP_SECRET_KEY", None)]),
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(
        emulator_state(&emu, &id),
        "ACCEPTED",
        "a refused kill ends nothing"
    );
}

#[tokio::test]
async fn another_accounts_id_is_refused_with_exit_2_naming_the_account() {
    let emu = emulator(FOREVER).await;
    let run = apps(
        &["list", "--account-id", ACCOUNT2],
        &exported_but(&emu.url(), &[("RUST_LOG", Some("trace"))]),
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    let line = run.error_line();
    assert!(line.contains(&format!("account id {ACCOUNT2}")), "{line}");
    assert!(line.contains("not allowed to access"), "{line}");
}

#[tokio::test]
async fn missing_keys_exit_2_naming_the_variable_and_the_flag_and_send_nothing() {
    let emu = emulator(FOREVER).await;
    let id = "dN2vdAwrCMZdUzGKKiFy6Z";
    type EnvChanges = &'static [(&'static str, Option<&'static str>)];
    let cases: [(EnvChanges, &str, &str); 4] = [
        (
            &[("NCP_ACCESS_KEY", None)],
            "NCP_ACCESS_KEY",
            "--access-key",
        ),
        (
            &[("NCP_ACCESS_KEY", Some(""))],
            "NCP_ACCESS_KEY",
            "--access-key",
        ),
        (
            &[("NCP_SECRET_KEY", None)],
            "NCP_SECRET_KEY",
            "--secret-key-file",
        ),
        (
            &[("NCP_SECRET_KEY", Some(""))],
            "NCP_SECRET_KEY",
            "--secret-key-file",
        ),
    ];
    for (changes, variable, flag) in cases {
        let mut changes = changes.to_vec();
        changes.push(("RUST_LOG", Some("trace")));
        let env = exported_but(&emu.url(), &changes);
        for args in [vec!["list"], vec!["get", id], vec!["kill", id, "--yes"]] {
            let run = apps(&args, &env).await;
            assert_eq!(run.code, Some(2), "{args:?} {changes:?}: {run:?}");
            let line = run.error_line();
            assert!(line.contains(variable) && line.contains(flag), "{line}");
        }
    }
    let nothing_at_all = apps(&["list"], &[]).await;
    assert_eq!(nothing_at_all.code, Some(2), "{nothing_at_all:?}");
    let requests: u64 = [Operation::GetList, Operation::GetDetail, Operation::Kill]
        .into_iter()
        .map(|op| emu.stats().total(op))
        .sum();
    assert_eq!(requests, 0);
}

#[tokio::test]
async fn list_without_an_account_id_exits_2_saying_getlist_needs_it() {
    let emu = emulator(FOREVER).await;
    for account in [None, Some("")] {
        let env = exported_but(&emu.url(), &[("NCP_ACCOUNT_ID", account)]);
        let run = apps(&["list"], &env).await;
        assert_eq!(run.code, Some(2), "{run:?}");
        let line = run.error_line();
        for words in [
            "getList needs the account id",
            "NCP_ACCOUNT_ID",
            "--account-id",
        ] {
            assert!(line.contains(words), "{words:?} in {line}");
        }
    }
    assert_eq!(emu.stats().total(Operation::GetList), 0);
}

#[tokio::test]
async fn an_unreachable_endpoint_exits_1() {
    // A port that was free a moment ago: connecting is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let env = exported_but(&url, &[("RUST_LOG", Some("trace"))]);
    for args in [vec!["list"], vec!["get", "dN2vdAwrCMZdUzGKKiFy6Z"]] {
        let run = apps(&args, &env).await;
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert!(
            run.error_line()
                .contains("could not reach the Data Forest API"),
            "{run:?}"
        );
    }
}

#[tokio::test]
async fn an_unknown_id_exits_1_and_a_malformed_one_exits_2_unsent() {
    let emu = emulator(FOREVER).await;
    let env = exported(&emu.url());
    let unknown = apps(&["get", "AAAAAAAAAAAAAAAAAAAAAA"], &env).await;
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert!(
        unknown.error_line().contains("no such element"),
        "{unknown:?}"
    );
    assert!(
        unknown.error_line().contains("x-ncp-trace-id"),
        "{unknown:?}"
    );

    let requests_before = emu.stats().total(Operation::GetDetail);
    for args in [vec!["get", "not-an-id"], vec!["kill", "../x", "--yes"]] {
        let run = apps(&args, &env).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(
            run.error_line().contains("is not a Data Forest app id"),
            "{run:?}"
        );
    }
    assert_eq!(emu.stats().total(Operation::GetDetail), requests_before);
    assert_eq!(emu.stats().total(Operation::Kill), 0);
}

#[tokio::test]
async fn a_timeout_without_a_unit_exits_2_naming_the_format() {
    let emu = emulator(FOREVER).await;
    let run = apps(&["list", "--timeout", "30"], &exported(&emu.url())).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("like 500ms, 30s or 2m"), "{run:?}");
    let ok = apps(&["list", "--timeout", "5s"], &exported(&emu.url())).await;
    assert_eq!(ok.code, Some(0), "{ok:?}");
}

#[tokio::test]
async fn completions_for_bash_zsh_and_fish_cover_every_subcommand() {
    let dir = TempDir::new("completions");
    for shell in ["bash", "zsh", "fish"] {
        let run = run_cli(&["completions", shell], &[], None).await;
        assert_eq!(run.code, Some(0), "{shell}: {run:?}");
        for word in ["apps", "submit", "completions"] {
            assert!(run.stdout.contains(word), "{shell}: no {word}");
        }
        if shell == "bash" {
            let script = dir.file("dataforest-operator.bash", &run.stdout);
            let check = std::process::Command::new("bash")
                .arg("-n")
                .arg(&script)
                .output()
                .expect("bash runs");
            assert!(
                check.status.success(),
                "bash -n: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
}

#[tokio::test]
async fn version_names_the_commit_the_binary_was_built_from() {
    let expected = option_env!("DATAFOREST_BUILD_COMMIT")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            let git = std::process::Command::new("git")
                .args([
                    "-C",
                    env!("CARGO_MANIFEST_DIR"),
                    "rev-parse",
                    "--short=12",
                    "HEAD",
                ])
                .output()
                .ok()?;
            let commit = String::from_utf8(git.stdout).ok()?.trim().to_owned();
            (git.status.success() && !commit.is_empty()).then_some(commit)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let run = run_cli(&["--version"], &[], None).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "dataforest-operator {} (commit {expected})\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[tokio::test]
async fn a_list_of_nothing_prints_no_table_and_says_so_on_stderr() {
    let emu = emulator(FOREVER).await;
    let run = apps(&["list", "--prefix", "none"], &exported(&emu.url())).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("no apps in account"), "{run:?}");
    let json = apps(
        &["list", "--prefix", "none", "-o", "json"],
        &exported(&emu.url()),
    )
    .await;
    assert_eq!(json_ids(&json.stdout), Vec::<String>::new());
}
