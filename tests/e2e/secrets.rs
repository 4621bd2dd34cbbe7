//! No value read from a Secret reaches a message, a log line, a status field or an Event,
//! except the access key id and an endpoint that passed the allow-list; messages name the
//! Secret and the key instead.
//!
//! Each case puts recognisable values (`LEAKCANARY-…`, unique per value) in a Secret, runs
//! the real `dataforest-operator` binary at `RUST_LOG=trace` on it, waits until the
//! operator has said what is wrong (condition and Warning Event), stops it, and then looks
//! for each value in the whole log, every AiApp of the namespace (whole objects) and every
//! Event of the namespace (whole objects, in both Event APIs) — as text, as base64 (how a
//! serialized Secret carries it) and as a list of byte values (how `Debug` shows bytes).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use base64::Engine;
use dataforest_emulator::{
    Emulator, EmulatorAccount, EmulatorConfig, EmulatorHandle, Faults, Timeline,
};
use dataforest_operator::crd::{AiApp, AiAppSpec, CredentialKeys, CredentialsRef, Phase};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use libtest_mimic::Failed;

use crate::fixture::{self, TestContext};
use crate::world::{ACCESS_KEY, OperatorProcess, PATIENCE, World, phase, spec};

/// Every recognisable value starts with this; nothing else in a test does.
const CANARY: &str = "LEAKCANARY";

/// Where an endpoint was refused: the Secret's `customEndpoint` holds a well-formed URL
/// that is not on the allow-list; the Secret's own `endpoint` key is the allowed one.
pub fn an_endpoint_off_the_allow_list_or_malformed_names_the_secret_and_key_and_shows_no_value()
-> Result<(), Failed> {
    fixture::run("secrets-endpoint", |ctx| async move {
        run_cases(ctx, None, |emulator| {
            vec![
                Case::refused(
                    "off-list",
                    "EndpointNotAllowed",
                    "customEndpoint",
                    "is not on the operator's allow-list",
                )
                .keys(|k| k.endpoint = "customEndpoint".into())
                .value("accessKey", ACCESS_KEY)
                .value("secretKey", "LEAKCANARY-sk-offlist-Q1w8Zr4Tn6")
                .value("endpoint", emulator)
                .value(
                    "customEndpoint",
                    "https://LEAKCANARY-offlist-host-V3k9Pq2Lx7.example.com",
                ),
                // The realistic leak: `keys.endpoint` pointed at any key of a shared Secret.
                Case::refused(
                    "db-password",
                    "EndpointNotAllowed",
                    "db-password",
                    "is not an endpoint",
                )
                .keys(|k| k.endpoint = "db-password".into())
                .value("accessKey", ACCESS_KEY)
                .value("secretKey", "LEAKCANARY-sk-dbpassword-H5m2Xc8Rb1")
                .value("db-password", "LEAKCANARY-dbpassword-hunter2-J7d4Ws9Fe3")
                .value("endpoint", emulator),
                // Looks like a URL to a URL parser (scheme `leakcanary-…`), is not an endpoint.
                Case::refused(
                    "scheme-like",
                    "EndpointNotAllowed",
                    "db-password",
                    "is not an endpoint",
                )
                .keys(|k| k.endpoint = "db-password".into())
                .value("accessKey", ACCESS_KEY)
                .value("secretKey", "LEAKCANARY-sk-schemelike-T6g1Nv3Ky8")
                .value("db-password", "LEAKCANARY-schemelike-pw-B2z7Qm5Ud4:s3cr3t"),
                Case::refused(
                    "malformed",
                    "EndpointNotAllowed",
                    "endpoint",
                    "is not an endpoint",
                )
                .value("accessKey", ACCESS_KEY)
                .value("secretKey", "LEAKCANARY-sk-malformed-P9c4Lh2Ea6")
                .value("accountId", "LEAKCANARY-acct-malformed-R8y3Gt5Md1")
                .value("endpoint", "LEAKCANARY-notaurl-W4f6Jb1Sx9"),
                // A password in the URL's user information: the URL must not be shown.
                Case::refused(
                    "userinfo",
                    "EndpointNotAllowed",
                    "endpoint",
                    "is not an endpoint",
                )
                .value("accessKey", ACCESS_KEY)
                .value("secretKey", "LEAKCANARY-sk-userinfo-K2n8Vd6Yq3")
                .value(
                    "endpoint",
                    &emulator.replacen("://", "://admin:LEAKCANARY-userinfo-pw-C5x1Hr7Ti2@", 1),
                ),
            ]
        })
        .await
    })
}

/// Required keys missing or not UTF-8, with recognisable values in every other key.
pub fn a_missing_or_non_utf8_key_names_the_secret_and_key_and_shows_no_value() -> Result<(), Failed>
{
    fixture::run("secrets-keys", |ctx| async move {
        run_cases(ctx, None, |emulator| {
            vec![
                Case::refused("missing", "CredentialsNotFound", "secretKey", "has no key")
                    .value("accessKey", ACCESS_KEY)
                    // A typo of the key's name: its value must not be shown either.
                    .value("secretkey", "LEAKCANARY-sk-typo-F3b9Mw1Zc5")
                    .value("accountId", "LEAKCANARY-acct-missing-N6t2Dq8Jv4")
                    .value(
                        "endpoint",
                        "https://LEAKCANARY-missing-host-L1r5Yk7Pg9.example.com",
                    )
                    .value("db-password", "LEAKCANARY-dbpassword-missing-S8h4Xe2Wa6"),
                Case::refused("empty", "CredentialsNotFound", "accessKey", "has no key")
                    .value("accessKey", "  \n")
                    .value("secretKey", "LEAKCANARY-sk-empty-G7u3Ac9Hn1")
                    .value("endpoint", emulator),
                Case::refused(
                    "not-utf8",
                    "CredentialsNotFound",
                    "secretKey",
                    "is not UTF-8",
                )
                .value("accessKey", ACCESS_KEY)
                .bytes(
                    "secretKey",
                    b"LEAKCANARY-bytes-sk-E9q2Ub6Mr4\xff\xfe\x80tail",
                )
                .value("accountId", "LEAKCANARY-acct-notutf8-Y4w8Kf1Cs7")
                .value("endpoint", emulator),
                Case::refused(
                    "endpoint-not-utf8",
                    "CredentialsNotFound",
                    "endpoint",
                    "is not UTF-8",
                )
                .value("accessKey", ACCESS_KEY)
                .value("secretKey", "LEAKCANARY-sk-epnotutf8-D1m7Rz3Vb8")
                .bytes(
                    "endpoint",
                    b"https://LEAKCANARY-bytes-endpoint-Z6c2Ng9Tq5.example.com\xc3\x28",
                ),
            ]
        })
        .await
    })
}

/// The access key of the emulator account the successful case uses (it may be shown).
const OK_ACCESS_KEY: &str = "SECRETSE2EACCESSKEY1";
const OK_SECRET_KEY: &str = "LEAKCANARY-sk-running-A8v3Hp6Qx2";
const OK_ACCOUNT_ID: &str = "LEAKCANARY-acct-running-U5j9Wc4Lf7";

/// A valid Secret: the app runs to Succeeded, and at trace level neither its secret key,
/// its account id, an unrelated key of the Secret nor an annotation holding the values (as
/// `kubectl apply` leaves) is shown anywhere. The access key id and the endpoint may be.
pub fn a_running_app_shows_no_secret_value_but_the_access_key_id_at_trace_level()
-> Result<(), Failed> {
    fixture::run("secrets-running", |ctx| async move {
        let account = (OK_ACCESS_KEY, OK_SECRET_KEY, OK_ACCOUNT_ID);
        run_cases(ctx, Some(account), |emulator| {
            let applied = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "stringData": {"secretKey": "LEAKCANARY-lastapplied-sk-M3e7Tb2Rk9"},
            });
            vec![
                Case::succeeds("running")
                    .value("accessKey", OK_ACCESS_KEY)
                    .value("secretKey", OK_SECRET_KEY)
                    .value("accountId", OK_ACCOUNT_ID)
                    .value("endpoint", emulator)
                    .value("db-password", "LEAKCANARY-dbpassword-running-I6o1Gy8Bd3")
                    .annotation(
                        "kubectl.kubernetes.io/last-applied-configuration",
                        &applied.to_string(),
                    ),
            ]
        })
        .await
    })
}

/// What the operator must do with one AiApp.
enum Expect {
    /// Park it: `reason` on `Submitted` and a Warning Event, the message naming the
    /// Secret, the `key` and saying `says`.
    Refused {
        reason: &'static str,
        key: &'static str,
        says: &'static str,
    },
    /// Run it to `Succeeded`.
    Succeeds,
}

/// One AiApp `name` and its own Secret `creds-<name>`.
struct Case {
    name: &'static str,
    expect: Expect,
    keys: CredentialKeys,
    data: BTreeMap<String, Vec<u8>>,
    annotations: BTreeMap<String, String>,
}

impl Case {
    fn refused(
        name: &'static str,
        reason: &'static str,
        key: &'static str,
        says: &'static str,
    ) -> Case {
        Case::new(name, Expect::Refused { reason, key, says })
    }

    fn succeeds(name: &'static str) -> Case {
        Case::new(name, Expect::Succeeds)
    }

    fn new(name: &'static str, expect: Expect) -> Case {
        Case {
            name,
            expect,
            keys: CredentialKeys::default(),
            data: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    fn keys(mut self, change: impl FnOnce(&mut CredentialKeys)) -> Case {
        change(&mut self.keys);
        self
    }

    fn value(self, key: &str, value: &str) -> Case {
        self.bytes(key, value.as_bytes())
    }

    fn bytes(mut self, key: &str, value: &[u8]) -> Case {
        self.data.insert(key.to_owned(), value.to_vec());
        self
    }

    fn annotation(mut self, key: &str, value: &str) -> Case {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    fn secret_name(&self) -> String {
        format!("creds-{}", self.name)
    }

    fn spec(&self) -> AiAppSpec {
        let mut spec = spec(100, 200, "SUCCEEDED");
        spec.credentials = Some(CredentialsRef {
            secret_name: self.secret_name().into(),
            keys: self.keys.clone(),
        });
        spec
    }

    fn secret(&self) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.secret_name()),
                annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
                ..Default::default()
            },
            data: Some(
                self.data
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// Every recognisable value of the Secret: (where it is, its token, its whole value).
    fn canaries(&self) -> Vec<Canary> {
        let data = self
            .data
            .iter()
            .map(|(k, v)| (format!("key {k:?}"), v.clone()));
        let annotations = self
            .annotations
            .iter()
            .map(|(k, v)| (format!("annotation {k:?}"), v.as_bytes().to_vec()));
        data.chain(annotations)
            .filter_map(|(place, value)| {
                let token = token_in(&value)?;
                Some(Canary {
                    place: format!("{place} of Secret {}", self.secret_name()),
                    token,
                    value,
                })
            })
            .collect()
    }
}

/// A recognisable value put in a Secret.
struct Canary {
    place: String,
    /// The `LEAKCANARY-…` run of letters, digits and dashes inside the value.
    token: String,
    value: Vec<u8>,
}

impl Canary {
    /// The forms in which the value would show if it leaked: (name of the form, text,
    /// whether to compare ignoring case — a URL parser lowercases a host).
    fn forms(&self) -> Vec<(&'static str, String, bool)> {
        let engine = base64::engine::general_purpose::STANDARD;
        let byte_list = format!("{:?}", self.token.as_bytes());
        vec![
            ("text", self.token.clone(), true),
            ("base64", engine.encode(&self.value), false),
            (
                "byte list",
                byte_list.trim_matches(['[', ']']).to_owned(),
                false,
            ),
        ]
    }
}

fn token_in(value: &[u8]) -> Option<String> {
    let start = value
        .windows(CANARY.len())
        .position(|w| w == CANARY.as_bytes())?;
    let token: String = value[start..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
        .map(|b| char::from(*b))
        .collect();
    Some(token)
}

/// Creates the Secrets, starts the operator binary at trace level, creates the AiApps,
/// waits for each outcome, stops the operator and searches everything for the values.
/// `account`: start an emulator that accepts these keys (access key, secret key, account
/// id) and allow only it; otherwise the world's emulator is the allowed endpoint.
async fn run_cases(
    ctx: TestContext,
    account: Option<(&str, &str, &str)>,
    cases: impl FnOnce(&str) -> Vec<Case>,
) -> Result<()> {
    let world =
        World::without_operator(ctx.client.clone(), &ctx.namespace, Faults::default()).await?;
    let own = match account {
        Some((access_key, secret_key, account_id)) => {
            let mut account = EmulatorAccount::new(access_key, secret_key, account_id);
            // The emulator derives the name from the id otherwise, and answers with it.
            account.account_name = "secrets-e2e-account".to_owned();
            let config = EmulatorConfig {
                accounts: vec![account],
                ..EmulatorConfig::default()
            }
            .with_timeline(Timeline {
                accepted: std::time::Duration::from_millis(100),
                running: std::time::Duration::from_millis(200),
            });
            Some(Emulator::start(config).await?)
        }
        None => None,
    };
    let emulator: &EmulatorHandle = own.as_ref().unwrap_or(&world.emulator);
    let cases = cases(&emulator.url());
    let outcome = check_cases(&ctx, &world, emulator, &cases).await;
    if let Some(own) = own {
        own.shutdown().await;
    }
    world.stop().await?;
    outcome
}

async fn check_cases(
    ctx: &TestContext,
    world: &World,
    emulator: &EmulatorHandle,
    cases: &[Case],
) -> Result<()> {
    let canaries: Vec<Canary> = cases.iter().flat_map(Case::canaries).collect();
    distinct(&canaries)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    for case in cases {
        secrets
            .create(&PostParams::default(), &case.secret())
            .await
            .with_context(|| format!("creating Secret {}", case.secret_name()))?;
    }
    let url = emulator.url();
    let mut operator = OperatorProcess::start_with(
        world,
        ctx.kubeconfig(),
        "leak-watch",
        &[
            ("RUST_LOG", "trace"),
            ("DATAFOREST_ENDPOINT", &url),
            ("DATAFOREST_ALLOWED_ENDPOINTS", &url),
        ],
    )?;
    let log_path = operator.log.display().to_string();
    for case in cases {
        world.create(case.name, case.spec()).await?;
    }

    let mut problems = Vec::new();
    for case in cases {
        outcome_of(world, case, &ctx.namespace, &mut problems)
            .await
            .with_context(|| format!("{}: the operator's log is {log_path}", case.name))?;
    }
    let refused: Vec<&str> = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::Refused { .. }))
        .map(|c| c.name)
        .collect();
    let submitted: Vec<String> = emulator.apps().into_iter().map(|a| a.name).collect();
    let ran = cases.len() - refused.len();
    if submitted.len() != ran {
        problems.push(format!(
            "{} apps reached Data Forest for {ran} valid Secrets ({refused:?} were refused): \
             {submitted:?}",
            submitted.len()
        ));
    }

    // Stopped cleanly, so the log is complete, shutdown included.
    operator.terminate().await?;
    let log = operator.read_log()?;
    if !log.contains("\"level\":\"TRACE\"") {
        problems.push(format!(
            "no TRACE line in the operator's log ({log_path}): RUST_LOG=trace did not take"
        ));
    }
    // The control: the log does show each Secret being read (its request), so the
    // search below looks at a log that covers the reads.
    for case in cases {
        let read = format!("/secrets/{}\"", case.secret_name());
        if find(&log, &read, false).is_none() {
            problems.push(format!(
                "{}: the operator's log ({log_path}) shows no read of its Secret ({read})",
                case.name
            ));
        }
    }
    let places = [
        (format!("the operator's log {log_path}"), log),
        (
            "the namespace's AiApps".to_owned(),
            aiapps_json(world).await?,
        ),
        (
            "the namespace's Events (core/v1)".to_owned(),
            events_json::<Event>(world).await?,
        ),
        (
            "the namespace's Events (events.k8s.io/v1)".to_owned(),
            events_json::<k8s_openapi::api::events::v1::Event>(world).await?,
        ),
    ];
    for canary in &canaries {
        for (place, text) in &places {
            for (form, needle, any_case) in canary.forms() {
                if let Some(excerpt) = find(text, &needle, any_case) {
                    problems.push(format!(
                        "LEAK: the value of {} ({}, as {form}) is in {place}: …{excerpt}…",
                        canary.place, canary.token
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("\n"))
    }
}

/// No value's token may be part of another's: a find must say which value leaked.
fn distinct(canaries: &[Canary]) -> Result<()> {
    for (i, a) in canaries.iter().enumerate() {
        for (j, b) in canaries.iter().enumerate() {
            if i != j && b.token.to_lowercase().contains(&a.token.to_lowercase()) {
                bail!("test bug: {} is part of {}", a.token, b.token);
            }
        }
    }
    Ok(())
}

/// Waits until the operator has dealt with `case`, and checks what it said.
async fn outcome_of(
    world: &World,
    case: &Case,
    namespace: &str,
    problems: &mut Vec<String>,
) -> Result<()> {
    let Expect::Refused { reason, key, says } = case.expect else {
        world
            .wait_for(case.name, "Succeeded", |a| {
                phase(a) == Some(Phase::Succeeded)
            })
            .await?;
        wait_for_event(world, case.name, "Succeeded").await?;
        return Ok(());
    };
    let app = world
        .wait_for(case.name, reason, move |a| {
            condition(a, "Submitted").is_some_and(|(status, r, _)| status == "False" && r == reason)
        })
        .await?;
    let event = wait_for_event(world, case.name, reason).await?;
    let secret = format!("{namespace}/{}", case.secret_name());
    let quoted_key = format!("{key:?}");
    let status = app.status.clone().unwrap_or_default();
    let messages = [
        ("status.message", status.message.clone().unwrap_or_default()),
        (
            "the Submitted condition",
            condition(&app, "Submitted")
                .map(|c| c.2)
                .unwrap_or_default(),
        ),
        (
            "the Synced condition",
            condition(&app, "Synced").map(|c| c.2).unwrap_or_default(),
        ),
        (
            "the Warning Event",
            event.message.clone().unwrap_or_default(),
        ),
    ];
    for (place, message) in messages {
        for needed in [secret.as_str(), quoted_key.as_str(), says] {
            if !message.contains(needed) {
                problems.push(format!(
                    "{}: {place} does not say {needed:?}: {message:?}",
                    case.name
                ));
            }
        }
    }
    if event.type_.as_deref() != Some("Warning") {
        problems.push(format!(
            "{}: the {reason} Event is {:?}, not a Warning",
            case.name, event.type_
        ));
    }
    if phase(&app) != Some(Phase::Pending) {
        problems.push(format!(
            "{}: phase {:?}, not Pending",
            case.name,
            phase(&app)
        ));
    }
    Ok(())
}

/// (status, reason, message) of the condition `type_`.
fn condition(app: &AiApp, type_: &str) -> Option<(String, String, String)> {
    app.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| {
            (
                c.status.to_string(),
                c.reason.to_string(),
                c.message.clone(),
            )
        })
}

/// Waits until an Event with `reason` was recorded for the AiApp `name`, and returns it.
pub async fn wait_for_event(world: &World, name: &str, reason: &str) -> Result<Event> {
    let events: Api<Event> = Api::namespaced(world.client.clone(), &world.namespace);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let list = events.list(&ListParams::default()).await?.items;
        let mut seen = Vec::new();
        for event in list {
            if event.involved_object.name.as_deref() != Some(name) {
                continue;
            }
            if event.reason.as_deref() == Some(reason) {
                return Ok(event);
            }
            seen.push(event.reason.unwrap_or_default());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no {reason} Event for {name} within {PATIENCE:?}; seen {seen:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub async fn aiapps_json(world: &World) -> Result<String> {
    let list = world.aiapps().list(&ListParams::default()).await?;
    Ok(serde_json::to_string_pretty(&list.items)?)
}

pub async fn events_json<K>(world: &World) -> Result<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let events: Api<K> = Api::namespaced(world.client.clone(), &world.namespace);
    let list = events.list(&ListParams::default()).await?;
    Ok(serde_json::to_string_pretty(&list.items)?)
}

/// An excerpt of `text` around `needle`, if it is there.
pub fn find(text: &str, needle: &str, any_case: bool) -> Option<String> {
    let at = if any_case {
        text.to_ascii_lowercase()
            .find(&needle.to_ascii_lowercase())?
    } else {
        text.find(needle)?
    };
    let start = floor_char(text, at.saturating_sub(200));
    let end = floor_char(text, (at + needle.len() + 200).min(text.len()));
    Some(text[start..end].replace('\n', "⏎"))
}

fn floor_char(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}
