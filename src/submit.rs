//! `dataforest-operator submit`: submit one AiApp's spec straight to the API, for
//! debugging keys and specs without a cluster; `--dry-run` prints the signed request.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_yaml_ng::Value;

use crate::crd::AiAppSpec;
use crate::dataforest::sign::now_millis;
use crate::dataforest::validate::{InvalidSpec, validate_spec};
use crate::dataforest::{
    ApiError, ClientBuildError, ClientConfig, Credentials, DEFAULT_ENDPOINT, DataForestClient,
    Operation, RetryPolicy, SubmitRequest, name_prefix,
};

/// Environment variable holding the access key id.
pub const ACCESS_KEY_ENV: &str = "NCP_ACCESS_KEY";
/// Environment variable holding the secret key.
pub const SECRET_KEY_ENV: &str = "NCP_SECRET_KEY";

/// Flags of the `submit` subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct SubmitArgs {
    /// AiApp manifest (the whole resource) or a bare spec, in YAML or JSON.
    #[arg(long, short)]
    pub file: PathBuf,
    /// API base URL [default: https://df.apigw.ntruss.com].
    #[arg(long, env = "DATAFOREST_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Print the exact signed request and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Bound on the call, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

/// Why `submit` failed; [`SubmitError::exit_code`] tells bad input (2) from API errors (1).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Manifest { path: PathBuf, problem: String },
    #[error("{0}")]
    InvalidSpec(#[from] InvalidSpec),
    #[error("{0} is not set: export the NCP API key pair as {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}")]
    MissingCredential(&'static str),
    #[error("{0}")]
    Endpoint(#[from] ClientBuildError),
    #[error("{error}{}", api_hint(.error))]
    Api { error: ApiError },
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

fn api_hint(error: &ApiError) -> String {
    let mut hint = String::new();
    if error.outcome_unknown() {
        hint.push_str(
            " (the app may have been created: look for it with getList before submitting again)",
        );
    }
    if let Some(trace_id) = error.trace_id() {
        hint.push_str(&format!(" [x-ncp-trace-id {trace_id}]"));
    }
    hint
}

impl SubmitError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SubmitError::Api { .. } | SubmitError::Output(_) | SubmitError::Runtime(_) => 1,
            _ => 2,
        }
    }
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
        return Ok(prefix.clone());
    }
    match &manifest.name {
        Some(name) => Ok(name_prefix::derive(name, manifest.uid.as_deref())),
        None => Err(InvalidSpec {
            field: "spec.namePrefix".to_owned(),
            problem: "required when the file has no metadata.name to derive it from".to_owned(),
        }),
    }
}

/// Credentials from the environment; empty counts as unset.
pub fn credentials_from_env(
    env: impl Fn(&str) -> Option<String>,
) -> Result<Credentials, SubmitError> {
    let get = |name: &'static str| {
        env(name)
            .filter(|v| !v.is_empty())
            .ok_or(SubmitError::MissingCredential(name))
    };
    Ok(Credentials::new(get(ACCESS_KEY_ENV)?, get(SECRET_KEY_ENV)?))
}

/// Reads, validates and submits (or prints, with `--dry-run`), writing the result to `out`.
pub async fn execute(
    args: &SubmitArgs,
    env: impl Fn(&str) -> Option<String>,
    out: &mut impl Write,
) -> Result<(), SubmitError> {
    let request = load_request(&args.file)?;
    let credentials = credentials_from_env(env)?;
    let config = ClientConfig {
        endpoint: args
            .endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
        retry: RetryPolicy::no_retries(),
        ..ClientConfig::default()
    };
    let client = DataForestClient::new(config, credentials)?;
    if args.dry_run {
        let prepared = client.prepare(Operation::Submit, &request, now_millis());
        return write!(out, "{prepared}").map_err(SubmitError::Output);
    }
    let response = client
        .submit(&request)
        .await
        .map_err(|error| SubmitError::Api { error })?;
    let json = serde_json::to_string_pretty(&response).expect("a parsed answer always serializes");
    writeln!(out, "{json}").map_err(SubmitError::Output)
}

fn load_request(path: &Path) -> Result<SubmitRequest, SubmitError> {
    let text = std::fs::read_to_string(path).map_err(|source| SubmitError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let manifest = parse_manifest(&text).map_err(|problem| SubmitError::Manifest {
        path: path.to_owned(),
        problem,
    })?;
    validate_spec(&manifest.spec)?;
    let prefix = resolve_name_prefix(&manifest)?;
    Ok(SubmitRequest::from_spec(&manifest.spec, &prefix))
}

/// Runs the subcommand: 0 on success, 1 on an API error, 2 on bad input.
pub fn run(args: &SubmitArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(execute(
            args,
            |name| std::env::var(name).ok(),
            &mut std::io::stdout().lock(),
        )),
        Err(e) => Err(SubmitError::Runtime(e)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dataforest-operator submit: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn missing_or_empty_credentials_name_the_variable() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let e = credentials_from_env(env(&[])).unwrap_err();
        assert!(
            e.to_string().starts_with("NCP_ACCESS_KEY is not set"),
            "{e}"
        );
        let e = credentials_from_env(env(&[("NCP_ACCESS_KEY", "ak"), ("NCP_SECRET_KEY", "")]))
            .unwrap_err();
        assert!(
            e.to_string().starts_with("NCP_SECRET_KEY is not set"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 2);
        let ok = credentials_from_env(env(&[("NCP_ACCESS_KEY", "ak"), ("NCP_SECRET_KEY", "sk")]))
            .unwrap();
        assert_eq!(ok.access_key, "ak");
    }

    #[test]
    fn an_api_error_exits_1_and_says_when_the_app_may_exist() {
        let error = ApiError::Timeout {
            after: Duration::from_secs(1),
        };
        let e = SubmitError::Api { error };
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("may have been created"), "{e}");
    }
}
