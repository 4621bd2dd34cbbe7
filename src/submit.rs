//! `dataforest-operator submit`: submit one AiApp's spec straight to the API, for
//! debugging keys and specs without a cluster; `--dry-run` prints the signed request.

use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};

use clap::ValueHint;
use serde_yaml_ng::Value;

use crate::cli::api_args::ApiArgs;
use crate::cli::apps::ACCOUNT_ID_ENV;
use crate::cli::{BINARY, CliError};
use crate::crd::AiAppSpec;
use crate::dataforest::sign::now_millis;
use crate::dataforest::validate::{InvalidSpec, validate_spec};
use crate::dataforest::{DEFAULT_ENDPOINT, Operation, RetryPolicy, SubmitRequest, name_prefix};

/// Flags of the `submit` subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct SubmitArgs {
    /// AiApp manifest (the whole resource) or a bare spec, in YAML or JSON; `-` reads stdin.
    #[arg(long, short, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// Print the exact signed request and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// The command that finds an app whose submit answer was lost: getList by the account
/// and the prefix that was sent. The account id is `NCP_ACCOUNT_ID`'s when known.
pub fn lookup_command(prefix: &str, account_id: Option<&str>, endpoint: &str) -> String {
    let account_id = account_id
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .unwrap_or("<ACCOUNT_ID>");
    let mut command = format!("{BINARY} apps list --account-id {account_id} --prefix {prefix}");
    if endpoint.trim_end_matches('/') != DEFAULT_ENDPOINT {
        command.push_str(&format!(" --endpoint {endpoint}"));
    }
    command
}

/// What to do when the submit's outcome is unknown: look before submitting again.
fn lost_answer_hint(lookup_command: &str) -> String {
    format!(
        "the app may have been created: look for it with `{lookup_command}` before submitting again"
    )
}

/// What a manifest file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub spec: AiAppSpec,
    pub name: Option<String>,
    pub uid: Option<String>,
}

/// Reads a whole AiApp (`apiVersion`/`kind`/`metadata`/`spec`) or a bare spec.
pub fn parse_manifest(text: &str) -> Result<Manifest, String> {
    let one_line = |e: &dyn std::fmt::Display| e.to_string().replace('\n', " ");
    let value: Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("invalid YAML: {}", one_line(&e)))?;
    let Some(mapping) = value.as_mapping() else {
        return Err("expected a mapping: an AiApp manifest or its spec".to_owned());
    };
    let Some(spec) = mapping.get("spec") else {
        let spec = serde_yaml_ng::from_value(value.clone())
            .map_err(|e| format!("invalid spec: {}", one_line(&e)))?;
        return Ok(Manifest {
            spec,
            name: None,
            uid: None,
        });
    };
    if let Some(kind) = mapping
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| *k != "AiApp")
    {
        return Err(format!("kind is {kind}, expected AiApp"));
    }
    let metadata = |field: &str| {
        mapping
            .get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let spec = serde_yaml_ng::from_value(spec.clone())
        .map_err(|e| format!("invalid spec: {}", one_line(&e)))?;
    Ok(Manifest {
        spec,
        name: metadata("name"),
        uid: metadata("uid"),
    })
}

/// The spec's own prefix, else one derived from the resource's name and UID.
pub fn resolve_name_prefix(manifest: &Manifest) -> Result<String, InvalidSpec> {
    if let Some(prefix) = &manifest.spec.name_prefix {
        return Ok(prefix.to_string());
    }
    match &manifest.name {
        Some(name) => Ok(name_prefix::derive(name, manifest.uid.as_deref())),
        None => Err(InvalidSpec {
            field: "spec.namePrefix".to_owned(),
            problem: "required when the file has no metadata.name to derive it from".to_owned(),
        }),
    }
}

/// Reads, validates and submits (or prints, with `--dry-run`), writing the result to `out`.
pub async fn execute(args: &SubmitArgs, out: &mut impl Write) -> Result<(), CliError> {
    let request = load_request(&args.file)?;
    let api = args.api.connect(RetryPolicy::no_retries())?;
    if args.dry_run {
        let prepared = api
            .client
            .prepare(Operation::Submit, &request, now_millis());
        return write!(out, "{prepared}").map_err(CliError::Output);
    }
    let response = api.client.submit(&request).await.map_err(|error| {
        api.failure(error, None, |error| {
            error.outcome_unknown().then(|| {
                let account_id = std::env::var(ACCOUNT_ID_ENV).ok();
                let lookup = lookup_command(
                    &request.name_prefix,
                    account_id.as_deref(),
                    args.api.endpoint(),
                );
                lost_answer_hint(&lookup)
            })
        })
    })?;
    let json = serde_json::to_string_pretty(&response).expect("a parsed answer always serializes");
    writeln!(out, "{json}").map_err(CliError::Output)
}

/// The manifest's text and the name messages give its source: the path, or `stdin`.
fn read_manifest(file: &Path) -> Result<(String, String), CliError> {
    if file == Path::new("-") {
        let source_name = "stdin".to_owned();
        let mut text = String::new();
        return match std::io::stdin().lock().read_to_string(&mut text) {
            Ok(_) => Ok((source_name, text)),
            Err(source) => Err(CliError::ReadManifest {
                source_name,
                source,
            }),
        };
    }
    let source_name = file.display().to_string();
    match std::fs::read_to_string(file) {
        Ok(text) => Ok((source_name, text)),
        Err(source) => Err(CliError::ReadManifest {
            source_name,
            source,
        }),
    }
}

fn load_request(file: &Path) -> Result<SubmitRequest, CliError> {
    let (source_name, text) = read_manifest(file)?;
    let manifest = parse_manifest(&text).map_err(|problem| CliError::Manifest {
        source_name,
        problem,
    })?;
    refuse_env_from(&manifest.spec)?;
    validate_spec(&manifest.spec)?;
    let prefix = resolve_name_prefix(&manifest)?;
    Ok(SubmitRequest::from_spec(&manifest.spec, &prefix))
}

/// `envFrom` reads Secrets in a cluster, which only the operator does: refused, never
/// dropped (the app would run without those variables).
fn refuse_env_from(spec: &AiAppSpec) -> Result<(), InvalidSpec> {
    if spec.docker.env_from.is_empty() {
        return Ok(());
    }
    Err(InvalidSpec {
        field: "spec.docker.envFrom".to_owned(),
        problem:
            "not supported by `submit`: it reads Secrets in a cluster, which only the operator \
                  does; apply the AiApp to a cluster, or for a test remove envFrom and put the \
                  variables in spec.docker.env"
                .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataforest::ApiError;
    use std::time::Duration;

    const MANIFEST: &str = r#"
apiVersion: dataforest.dev/v1alpha1
kind: AiApp
metadata:
  name: train-resnet
  uid: 5b8c0f4e-1111-2222-3333-444455556666
spec:
  aiWorkspaceId: 6ZKSGoSJMMwctK257nxgiL
  docker:
    image: pytorch:24.01
    command: python train.py
  resource:
    gpuCount: 1
"#;

    #[test]
    fn a_whole_manifest_gives_its_spec_name_and_uid() {
        let m = parse_manifest(MANIFEST).unwrap();
        assert_eq!(m.spec.ai_workspace_id, "6ZKSGoSJMMwctK257nxgiL");
        assert_eq!(m.name.as_deref(), Some("train-resnet"));
        let prefix = resolve_name_prefix(&m).unwrap();
        assert_eq!(
            prefix,
            name_prefix::derive("train-resnet", Some("5b8c0f4e-1111-2222-3333-444455556666"))
        );
    }

    #[test]
    fn a_bare_spec_needs_its_own_name_prefix() {
        let bare = "aiWorkspaceId: ws\ndocker: {image: i, command: c}\n";
        let m = parse_manifest(bare).unwrap();
        assert_eq!(
            resolve_name_prefix(&m).unwrap_err().field,
            "spec.namePrefix"
        );
        let m = parse_manifest(&format!("{bare}namePrefix: mine\n")).unwrap();
        assert_eq!(resolve_name_prefix(&m).unwrap(), "mine");
    }

    #[test]
    fn problems_in_the_file_are_named_on_one_line() {
        for (text, expected) in [
            ("a: [", "invalid YAML"),
            ("- a\n- b\n", "expected a mapping"),
            ("kind: Pod\nspec: {}\n", "kind is Pod, expected AiApp"),
            (
                "kind: AiApp\nspec:\n  docker: {image: i, command: c}\n",
                "invalid spec: missing field `aiWorkspaceId`",
            ),
        ] {
            let e = parse_manifest(text).unwrap_err();
            assert!(e.starts_with(expected), "{text:?}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn an_env_from_in_the_file_is_refused_naming_the_field_never_dropped() {
        let text = MANIFEST.replace(
            "    command: python train.py\n",
            "    command: python train.py\n    envFrom:\n      - secretRef: {name: db}\n",
        );
        let m = parse_manifest(&text).unwrap();
        assert_eq!(m.spec.docker.env_from.len(), 1, "{text}");
        let error = refuse_env_from(&m.spec).unwrap_err().to_string();
        assert!(
            error.starts_with("spec.docker.envFrom: not supported by `submit`")
                && error.contains("only the operator"),
            "{error}"
        );
        assert!(refuse_env_from(&parse_manifest(MANIFEST).unwrap().spec).is_ok());
    }

    #[test]
    fn a_lost_answer_names_the_exact_command_that_finds_the_app() {
        let error = ApiError::Timeout {
            after: Duration::from_secs(1),
        };
        let e = CliError::from_api(error, "AK1", None, |e| {
            e.outcome_unknown().then(|| {
                lost_answer_hint(&lookup_command("resnettr", Some("acct1"), DEFAULT_ENDPOINT))
            })
        });
        assert_eq!(e.exit_code(), 1);
        let message = e.to_string();
        assert!(message.contains("may have been created"), "{message}");
        assert!(
            message.contains(
                "`dataforest-operator apps list --account-id acct1 --prefix resnettr` before submitting again"
            ),
            "{message}"
        );
        assert!(!message.contains("getList"), "{message}");
    }

    #[test]
    fn the_lookup_command_names_a_placeholder_account_and_any_other_endpoint() {
        assert_eq!(
            lookup_command("abc", None, "http://127.0.0.1:9"),
            "dataforest-operator apps list --account-id <ACCOUNT_ID> --prefix abc --endpoint http://127.0.0.1:9"
        );
        assert_eq!(
            lookup_command("abc", Some(" "), "https://df.apigw.ntruss.com/"),
            "dataforest-operator apps list --account-id <ACCOUNT_ID> --prefix abc"
        );
    }
}
