//! `spec.docker.envFrom`: environment variables from Secrets in the AiApp's namespace,
//! read right before a submit and merged into the env sent to Data Forest.
//!
//! The merge is pure ([`merge`]); [`resolve`] reads the Secrets it names, one GET each.
//! Entries apply in order, a later one winning over an earlier one for the same name, and
//! `spec.docker.env` wins over all of them, as in a Pod. The merged env meets the same
//! bounds as `spec.docker.env` (entries, value length). Errors name the entry, the Secret
//! and the key, never a value; the values only travel in a [`SubmitEnv`], whose `Debug`
//! shows names only.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::crd::limits::{ENV_MAX, ENV_NAME_MAX, ENV_VALUE_MAX};
use crate::crd::{AiAppDocker, AiAppSpec, EnvFromSource};
use crate::dataforest::SubmitEnv;

/// Why the env could not be built. Messages name the Secret, the key and the field of the
/// entry, never a value.
#[derive(Debug, thiserror::Error)]
pub enum EnvFromError {
    #[error("Secret {namespace}/{name}, named by {field}, not found")]
    SecretNotFound {
        namespace: String,
        name: String,
        field: String,
    },
    #[error("Secret {namespace}/{name} has no key {key:?} (named by {field})")]
    KeyNotFound {
        namespace: String,
        name: String,
        key: String,
        field: String,
    },
    #[error(
        "key {key:?} of Secret {namespace}/{name} (read by {field}) makes the variable name \
         {variable:?}, which is not one: letters, digits and '_', not starting with a digit, \
         at most {ENV_NAME_MAX} characters; name it with secretKeyRef instead"
    )]
    NotAVariableName {
        namespace: String,
        name: String,
        key: String,
        variable: String,
        field: String,
    },
    #[error("key {key:?} of Secret {namespace}/{name} (read by {field}) is not UTF-8 text")]
    NotText {
        namespace: String,
        name: String,
        key: String,
        field: String,
    },
    #[error(
        "the value of key {key:?} of Secret {namespace}/{name} (read by {field}) is longer than \
         {ENV_VALUE_MAX} characters, the most an env value may have"
    )]
    ValueTooLong {
        namespace: String,
        name: String,
        key: String,
        field: String,
    },
    #[error(
        "spec.docker.env with what spec.docker.envFrom reads makes {count} variables; at most \
         {ENV_MAX} may be sent"
    )]
    TooManyVariables { count: usize },
    /// An entry the CRD's rules refuse, met where they were not applied (an older CRD).
    #[error("{field}: {problem}")]
    Malformed { field: String, problem: String },
    #[error("reading Secret {namespace}/{name} took too long (the Kubernetes API did not answer)")]
    Timeout { namespace: String, name: String },
    #[error("reading Secret {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl EnvFromError {
    /// The condition reason for an AiApp waiting on this.
    pub fn reason(&self) -> &'static str {
        match self {
            EnvFromError::SecretNotFound { .. } => "EnvSecretNotFound",
            EnvFromError::KeyNotFound { .. } => "EnvSecretKeyNotFound",
            EnvFromError::NotAVariableName { .. } | EnvFromError::NotText { .. } => {
                "EnvSecretKeyInvalid"
            }
            EnvFromError::ValueTooLong { .. } | EnvFromError::TooManyVariables { .. } => {
                "EnvTooLarge"
            }
            EnvFromError::Malformed { .. } => "InvalidSpec",
            EnvFromError::Timeout { .. } | EnvFromError::Kube { .. } => "SecretUnreadable",
        }
    }

    /// Whether it may pass without anyone changing anything (the API did not answer).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EnvFromError::Timeout { .. } | EnvFromError::Kube { .. }
        )
    }
}

/// Whether `text` can name an environment variable (`crd::ENV_NAME_PATTERN`).
pub fn is_variable_name(text: &str) -> bool {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && text.len() <= ENV_NAME_MAX as usize
}

/// The Secrets `spec.docker.envFrom` names, in order, each once.
pub fn secret_names(docker: &AiAppDocker) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for entry in &docker.env_from {
        let name = entry_secret(entry);
        if let Some(name) = name.filter(|n| !names.contains(n)) {
            names.push(name);
        }
    }
    names
}

/// Whether the spec's `envFrom` names the Secret `name` (of the AiApp's namespace).
pub fn names_secret(spec: &AiAppSpec, name: &str) -> bool {
    spec.docker
        .env_from
        .iter()
        .any(|entry| entry_secret(entry) == Some(name))
}

fn entry_secret(entry: &EnvFromSource) -> Option<&str> {
    let whole = entry.secret_ref.as_ref().map(|r| r.name.as_str());
    whole.or(entry.secret_key_ref.as_ref().map(|r| r.name.as_str()))
}

/// Where a variable of the merged env came from, for messages.
struct Origin<'a> {
    name: &'a str,
    key: &'a str,
    field: String,
}

/// The env to submit: `envFrom` read from `secrets` (the Secrets of `namespace` that
/// exist, by name), in order, then `env` over it. Pure.
pub fn merge(
    namespace: &str,
    docker: &AiAppDocker,
    secrets: &BTreeMap<String, Secret>,
) -> Result<SubmitEnv, EnvFromError> {
    let mut merged: BTreeMap<String, (String, Option<Origin<'_>>)> = BTreeMap::new();
    for (index, entry) in docker.env_from.iter().enumerate() {
        let field = format!("spec.docker.envFrom[{index}]");
        let malformed = |problem: &str| EnvFromError::Malformed {
            field: field.clone(),
            problem: problem.to_owned(),
        };
        let read = |name: &str, sub: &str| {
            let field = format!("{field}.{sub}");
            let secret = secrets
                .get(name)
                .ok_or_else(|| EnvFromError::SecretNotFound {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    field: field.clone(),
                })?;
            Ok::<_, EnvFromError>((secret, field))
        };
        match (&entry.secret_ref, &entry.secret_key_ref) {
            (Some(whole), None) => {
                if entry.name.is_some() {
                    return Err(malformed("name goes with secretKeyRef only"));
                }
                let prefix = entry.prefix.as_deref().unwrap_or_default();
                let (secret, field) = read(&whole.name, "secretRef")?;
                for (key, bytes) in secret.data.iter().flatten() {
                    let variable = format!("{prefix}{key}");
                    let from = Origin {
                        name: &whole.name,
                        key,
                        field: field.clone(),
                    };
                    if !is_variable_name(&variable) {
                        return Err(EnvFromError::NotAVariableName {
                            namespace: namespace.to_owned(),
                            name: whole.name.clone(),
                            key: key.clone(),
                            variable,
                            field,
                        });
                    }
                    let value = text(namespace, &from, &bytes.0)?;
                    merged.insert(variable, (value, Some(from)));
                }
            }
            (None, Some(one)) => {
                if entry.prefix.is_some() {
                    return Err(malformed("prefix goes with secretRef only"));
                }
                let Some(variable) = entry.name.as_deref() else {
                    return Err(malformed("name is required with secretKeyRef"));
                };
                if !is_variable_name(variable) {
                    return Err(malformed(
                        "name must be letters, digits and '_', not starting with a digit",
                    ));
                }
                let (secret, field) = read(&one.name, "secretKeyRef")?;
                let from = Origin {
                    name: &one.name,
                    key: &one.key,
                    field,
                };
                let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(&one.key)) else {
                    return Err(EnvFromError::KeyNotFound {
                        namespace: namespace.to_owned(),
                        name: one.name.clone(),
                        key: one.key.clone(),
                        field: from.field,
                    });
                };
                let value = text(namespace, &from, &bytes.0)?;
                merged.insert(variable.to_owned(), (value, Some(from)));
            }
            _ => {
                return Err(malformed(
                    "set exactly one of secretRef (every key of a Secret) or secretKeyRef (one key, with name)",
                ));
            }
        }
    }
    for (name, value) in &docker.env {
        merged.insert(name.clone(), (value.clone(), None));
    }
    if merged.len() > ENV_MAX as usize {
        return Err(EnvFromError::TooManyVariables {
            count: merged.len(),
        });
    }
    let mut env = BTreeMap::new();
    for (variable, (value, from)) in merged {
        // `spec.docker.env` is bounded by the schema; only values from Secrets are checked.
        if let Some(from) = from.filter(|_| value.chars().count() > ENV_VALUE_MAX as usize) {
            return Err(EnvFromError::ValueTooLong {
                namespace: namespace.to_owned(),
                name: from.name.to_owned(),
                key: from.key.to_owned(),
                field: from.field,
            });
        }
        env.insert(variable, value);
    }
    Ok(SubmitEnv(env))
}

/// A Secret's value as env text: exactly as stored (an empty value is a value).
fn text(namespace: &str, from: &Origin<'_>, bytes: &[u8]) -> Result<String, EnvFromError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| EnvFromError::NotText {
        namespace: namespace.to_owned(),
        name: from.name.to_owned(),
        key: from.key.to_owned(),
        field: from.field.clone(),
    })
}

/// Reads the Secrets `docker.envFrom` names from `namespace` (one GET each, each within
/// `timeout`) and merges them; without `envFrom`, the spec's `env` as it is.
pub async fn resolve(
    secrets: &Api<Secret>,
    namespace: &str,
    docker: &AiAppDocker,
    timeout: Duration,
) -> Result<SubmitEnv, EnvFromError> {
    let mut found = BTreeMap::new();
    for name in secret_names(docker) {
        let read = tokio::time::timeout(timeout, secrets.get_opt(name)).await;
        let secret = match read {
            Ok(Ok(secret)) => secret,
            Ok(Err(source)) => {
                return Err(EnvFromError::Kube {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    source,
                });
            }
            Err(_) => {
                return Err(EnvFromError::Timeout {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                });
            }
        };
        if let Some(secret) = secret {
            found.insert(name.to_owned(), secret);
        }
    }
    merge(namespace, docker, &found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn docker(value: serde_json::Value) -> AiAppDocker {
        let mut base = json!({"image": "i", "command": "c"});
        base.as_object_mut()
            .unwrap()
            .extend(value.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    /// A Secret's name and its data.
    type Fixture<'a> = (&'a str, &'a [(&'a str, &'a [u8])]);

    fn secrets(list: &[Fixture<'_>]) -> BTreeMap<String, Secret> {
        list.iter()
            .map(|(name, pairs)| {
                let data = pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect();
                let secret = Secret {
                    data: Some(data),
                    ..Default::default()
                };
                (name.to_string(), secret)
            })
            .collect()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn both_shapes_merge_in_order_a_later_entry_wins_and_env_wins_over_all() {
        let d = docker(json!({
            "env": {"MODE": "spec", "EPOCHS": "3"},
            "envFrom": [
                {"secretRef": {"name": "db"}, "prefix": "DB_"},
                {"secretRef": {"name": "plain"}},
                {"name": "DB_USER", "secretKeyRef": {"name": "other", "key": "user"}},
                {"name": "MODE", "secretKeyRef": {"name": "other", "key": "mode"}},
            ],
        }));
        let s = secrets(&[
            ("db", &[("USER", b"alice"), ("PASSWORD", b"p w\n")]),
            ("plain", &[("TOKEN", b""), ("DB_PASSWORD", b"plain-wins")]),
            ("other", &[("user", b"bob"), ("mode", b"secret")]),
        ]);
        let merged = merge("ml", &d, &s).unwrap();
        assert_eq!(
            merged.0,
            env(&[
                ("DB_USER", "bob"),
                ("DB_PASSWORD", "plain-wins"),
                ("TOKEN", ""),
                ("MODE", "spec"),
                ("EPOCHS", "3"),
            ])
        );
    }

    #[test]
    fn values_are_kept_exactly_as_stored() {
        let d =
            docker(json!({"envFrom": [{"name": "K", "secretKeyRef": {"name": "s", "key": "k"}}]}));
        let s = secrets(&[("s", &[("k", b"  padded\n")])]);
        assert_eq!(merge("ml", &d, &s).unwrap().0, env(&[("K", "  padded\n")]));
    }

    #[test]
    fn without_env_from_the_env_is_the_specs() {
        let d = docker(json!({"env": {"A": "1"}}));
        assert_eq!(
            merge("ml", &d, &BTreeMap::new()).unwrap().0,
            env(&[("A", "1")])
        );
        assert!(secret_names(&d).is_empty());
    }

    #[test]
    fn each_problem_names_the_secret_the_key_and_the_entry_with_its_reason() {
        let s = secrets(&[
            ("s", &[("k", b"v")]),
            (
                "shared",
                &[("API_KEY", b"LEAK1"), ("db-password", b"LEAK2")],
            ),
            ("b", &[("bin", b"LEAK3\xff\xfe")]),
        ]);
        let cases = [
            (
                json!([{"secretRef": {"name": "gone"}}]),
                "EnvSecretNotFound",
                "Secret ml/gone, named by spec.docker.envFrom[0].secretRef, not found",
            ),
            (
                json!([{"secretRef": {"name": "shared"}, "prefix": "P_"}]),
                "EnvSecretKeyInvalid",
                "key \"db-password\" of Secret ml/shared (read by spec.docker.envFrom[0].secretRef) makes the variable name \"P_db-password\"",
            ),
            (
                json!([{"name": "X", "secretKeyRef": {"name": "s", "key": "nokey"}}]),
                "EnvSecretKeyNotFound",
                "Secret ml/s has no key \"nokey\" (named by spec.docker.envFrom[0].secretKeyRef)",
            ),
            (
                json!([{"name": "X", "secretKeyRef": {"name": "s", "key": "k"}}, {"name": "B", "secretKeyRef": {"name": "b", "key": "bin"}}]),
                "EnvSecretKeyInvalid",
                "key \"bin\" of Secret ml/b (read by spec.docker.envFrom[1].secretKeyRef) is not UTF-8 text",
            ),
            (
                json!([{"secretRef": {"name": "s"}, "secretKeyRef": {"name": "s", "key": "k"}}]),
                "InvalidSpec",
                "spec.docker.envFrom[0]: set exactly one of secretRef",
            ),
            (
                json!([{"secretKeyRef": {"name": "s", "key": "k"}}]),
                "InvalidSpec",
                "spec.docker.envFrom[0]: name is required with secretKeyRef",
            ),
        ];
        for (entries, reason, message) in cases {
            let d = docker(json!({"envFrom": entries}));
            let error = merge("ml", &d, &s).unwrap_err();
            assert_eq!(error.reason(), reason, "{entries}");
            let text = error.to_string();
            assert!(text.starts_with(message), "{entries}: {text}");
            assert!(
                !text.contains("LEAK") && !text.contains('\u{fffd}'),
                "{text}"
            );
            assert!(!error.is_transient());
        }
    }

    #[test]
    fn the_merged_env_keeps_the_bounds_of_spec_docker_env() {
        let many: Vec<(String, Vec<u8>)> =
            (0..60).map(|i| (format!("V{i}"), b"x".to_vec())).collect();
        let many: Vec<(&str, &[u8])> = many
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let s = secrets(&[("many", &many)]);
        let spec_env: serde_json::Map<String, serde_json::Value> =
            (0..5).map(|i| (format!("S{i}"), json!("y"))).collect();
        let d = docker(json!({"env": spec_env, "envFrom": [{"secretRef": {"name": "many"}}]}));
        let error = merge("ml", &d, &s).unwrap_err();
        assert_eq!(error.reason(), "EnvTooLarge");
        assert!(
            error.to_string().contains("65 variables; at most 64"),
            "{error}"
        );

        let long = "x".repeat(ENV_VALUE_MAX as usize + 1);
        let s = secrets(&[("s", &[("cert", long.as_bytes())])]);
        let d = docker(
            json!({"envFrom": [{"name": "CERT", "secretKeyRef": {"name": "s", "key": "cert"}}]}),
        );
        let error = merge("ml", &d, &s).unwrap_err();
        assert_eq!(error.reason(), "EnvTooLarge");
        assert!(
            error.to_string().contains("key \"cert\" of Secret ml/s"),
            "{error}"
        );
        // A long value that `env` overrides is never sent, so it is no problem.
        let d = docker(
            json!({"env": {"CERT": "short"}, "envFrom": [{"name": "CERT", "secretKeyRef": {"name": "s", "key": "cert"}}]}),
        );
        assert_eq!(merge("ml", &d, &s).unwrap().0, env(&[("CERT", "short")]));
    }

    #[test]
    fn variable_names_are_letters_digits_and_underscores_not_starting_with_a_digit() {
        for (name, ok) in [
            ("A", true),
            ("_a1", true),
            ("DB_PASSWORD", true),
            ("", false),
            ("1A", false),
            ("A-B", false),
            ("A.B", false),
            ("Ä", false),
        ] {
            assert_eq!(is_variable_name(name), ok, "{name:?}");
        }
        assert!(!is_variable_name(&"A".repeat(ENV_NAME_MAX as usize + 1)));
    }

    #[test]
    fn the_secrets_named_are_listed_once_in_order_and_matched_by_name() {
        let spec: AiAppSpec = serde_json::from_value(json!({
            "aiWorkspaceId": "ws",
            "docker": {"image": "i", "command": "c", "envFrom": [
                {"secretRef": {"name": "b"}},
                {"name": "X", "secretKeyRef": {"name": "a", "key": "k"}},
                {"name": "Y", "secretKeyRef": {"name": "b", "key": "k"}},
            ]},
        }))
        .unwrap();
        assert_eq!(secret_names(&spec.docker), ["b", "a"]);
        assert!(names_secret(&spec, "a") && names_secret(&spec, "b"));
        assert!(!names_secret(&spec, "c"));
    }

    #[test]
    fn a_debug_of_the_merged_env_shows_names_and_no_value() {
        let d = docker(
            json!({"envFrom": [{"name": "TOKEN", "secretKeyRef": {"name": "s", "key": "k"}}]}),
        );
        let s = secrets(&[("s", &[("k", b"LEAKCANARY-debug")])]);
        let merged = merge("ml", &d, &s).unwrap();
        let shown = format!("{merged:?} {merged:#?}");
        assert!(shown.contains("TOKEN"), "{shown}");
        assert!(!shown.contains("LEAKCANARY"), "{shown}");
    }
}
