//! Credentials from Kubernetes Secrets: which Secret an AiApp uses, reading its keys, and
//! choosing an endpoint the operator's allow-list permits.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::crd::{AiApp, CredentialKeys, CredentialsRef};
use crate::dataforest::{Credentials, DEFAULT_ENDPOINT};

/// What one Secret gives the operator for one AiApp.
#[derive(Clone, Debug)]
pub struct ResolvedCredentials {
    pub credentials: Credentials,
    /// Needed by getList, hence by automatic recovery.
    pub account_id: Option<String>,
    /// The API base URL to call, already checked against the allow-list.
    pub endpoint: String,
    /// The Secret's resourceVersion: a rotated Secret un-parks an AiApp.
    pub secret_version: Option<String>,
}

/// Why credentials could not be had. Messages name the Secret and the key, never a value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no credentials: spec.credentials.secretName is not set")]
    NotConfigured,
    #[error("Secret {namespace}/{name} not found")]
    SecretNotFound { namespace: String, name: String },
    #[error("Secret {namespace}/{name} has no key {key:?}, or it is empty")]
    KeyMissing {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("key {key:?} of Secret {namespace}/{name} is not UTF-8 text")]
    KeyUnreadable {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("endpoint {endpoint:?} is not on the operator's allow-list (--allowed-endpoints)")]
    EndpointNotAllowed { endpoint: String },
    #[error("reading Secret {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl CredentialsError {
    /// The condition reason for an AiApp waiting on this.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialsError::EndpointNotAllowed { .. } => "EndpointNotAllowed",
            CredentialsError::Kube { .. } => "SecretUnreadable",
            _ => "CredentialsNotFound",
        }
    }
}

/// The operator's own settings for credentials and endpoints.
#[derive(Clone, Debug, Default)]
pub struct CredentialsPolicy {
    /// `--endpoint` / `DATAFOREST_ENDPOINT`: used when the Secret names none.
    pub endpoint: Option<String>,
    /// Base URLs the operator may call; compared without a trailing slash.
    pub allowed_endpoints: Vec<String>,
}

impl CredentialsPolicy {
    /// The endpoint for a Secret's optional `endpoint` value: the Secret's, the flag's,
    /// then the public gateway; refused unless allowed.
    pub fn choose_endpoint(&self, from_secret: Option<&str>) -> Result<String, CredentialsError> {
        let endpoint = from_secret
            .or(self.endpoint.as_deref())
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/')
            .to_owned();
        let allowed = self
            .allowed_endpoints
            .iter()
            .any(|allowed| allowed.trim_end_matches('/') == endpoint);
        if allowed {
            Ok(endpoint)
        } else {
            Err(CredentialsError::EndpointNotAllowed { endpoint })
        }
    }
}

/// The Secret an AiApp names (`spec.credentials`), if any.
pub fn secret_ref(app: &AiApp) -> Option<&CredentialsRef> {
    app.spec.credentials.as_ref()
}

/// Reads the AiApp's Secret from its namespace and checks the endpoint.
pub async fn resolve(
    secrets: &Api<Secret>,
    namespace: &str,
    reference: &CredentialsRef,
    policy: &CredentialsPolicy,
) -> Result<ResolvedCredentials, CredentialsError> {
    let name = &reference.secret_name;
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|source| CredentialsError::Kube {
            namespace: namespace.to_owned(),
            name: name.clone(),
            source,
        })?
        .ok_or_else(|| CredentialsError::SecretNotFound {
            namespace: namespace.to_owned(),
            name: name.clone(),
        })?;
    let mut resolved = read_secret(&secret, namespace, name, &reference.keys, policy)?;
    resolved.secret_version = secret.metadata.resource_version.clone();
    Ok(resolved)
}

/// Pure part of [`resolve`]: the values of a Secret already read.
pub fn read_secret(
    secret: &Secret,
    namespace: &str,
    name: &str,
    keys: &CredentialKeys,
    policy: &CredentialsPolicy,
) -> Result<ResolvedCredentials, CredentialsError> {
    // An empty value counts as absent: for optional keys that is what a person meant.
    let value = |key: &str| -> Result<Option<String>, CredentialsError> {
        let Some(bytes) = secret.data.as_ref().and_then(|data| data.get(key)) else {
            return Ok(None);
        };
        match std::str::from_utf8(&bytes.0).map(str::trim) {
            Ok("") => Ok(None),
            Ok(text) => Ok(Some(text.to_owned())),
            Err(_) => Err(CredentialsError::KeyUnreadable {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                key: key.to_owned(),
            }),
        }
    };
    let required = |key: &str| {
        value(key)?.ok_or_else(|| CredentialsError::KeyMissing {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
        })
    };
    let access_key = required(&keys.access_key)?;
    let secret_key = required(&keys.secret_key)?;
    let account_id = value(&keys.account_id)?;
    let endpoint = policy.choose_endpoint(value(&keys.endpoint)?.as_deref())?;
    Ok(ResolvedCredentials {
        credentials: Credentials::new(access_key, secret_key),
        account_id,
        endpoint,
        secret_version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn policy() -> CredentialsPolicy {
        CredentialsPolicy {
            endpoint: None,
            allowed_endpoints: vec![
                DEFAULT_ENDPOINT.to_owned(),
                "http://127.0.0.1:9000/".to_owned(),
            ],
        }
    }

    #[test]
    fn a_complete_secret_gives_keys_account_and_the_default_endpoint() {
        let s = secret(&[
            ("accessKey", "AK"),
            ("secretKey", "SK"),
            ("accountId", "acct"),
        ]);
        let resolved =
            read_secret(&s, "ns", "creds", &CredentialKeys::default(), &policy()).unwrap();
        assert_eq!(resolved.credentials.access_key, "AK");
        assert_eq!(resolved.account_id.as_deref(), Some("acct"));
        assert_eq!(resolved.endpoint, DEFAULT_ENDPOINT);
    }

    #[test]
    fn a_missing_key_is_named_with_the_secret() {
        let s = secret(&[("accessKey", "AK")]);
        let error =
            read_secret(&s, "ns", "creds", &CredentialKeys::default(), &policy()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Secret ns/creds has no key \"secretKey\", or it is empty"
        );
        assert_eq!(error.reason(), "CredentialsNotFound");
    }

    #[test]
    fn an_endpoint_off_the_allow_list_is_refused_and_an_allowed_one_taken() {
        let s = secret(&[
            ("accessKey", "AK"),
            ("secretKey", "SK"),
            ("endpoint", "http://evil.example"),
        ]);
        let error =
            read_secret(&s, "ns", "creds", &CredentialKeys::default(), &policy()).unwrap_err();
        assert_eq!(error.reason(), "EndpointNotAllowed");

        let s = secret(&[
            ("accessKey", "AK"),
            ("secretKey", "SK"),
            ("endpoint", "http://127.0.0.1:9000"),
        ]);
        let resolved =
            read_secret(&s, "ns", "creds", &CredentialKeys::default(), &policy()).unwrap();
        assert_eq!(resolved.endpoint, "http://127.0.0.1:9000");
    }

    #[test]
    fn empty_optional_keys_count_as_absent() {
        let s = secret(&[
            ("accessKey", "AK"),
            ("secretKey", "SK"),
            ("accountId", ""),
            ("endpoint", " "),
        ]);
        let resolved =
            read_secret(&s, "ns", "creds", &CredentialKeys::default(), &policy()).unwrap();
        assert_eq!(resolved.account_id, None);
        assert_eq!(resolved.endpoint, DEFAULT_ENDPOINT);
    }

    #[test]
    fn errors_never_carry_the_secret_value() {
        let s = secret(&[("accessKey", "AK"), ("secretKey", "")]);
        let error =
            read_secret(&s, "ns", "creds", &CredentialKeys::default(), &policy()).unwrap_err();
        assert!(!format!("{error} {error:?}").contains("AK"));
    }
}
