//! Credentials from Kubernetes Secrets: which Secret an AiApp uses, reading its keys, and
//! choosing an endpoint the operator's allow-list permits.
//!
//! No value read from a Secret ever reaches a message: errors name the Secret and the key.
//! The access key id and an endpoint that passed the allow-list are the only values that
//! go further (into the client, and the access key id into logs as an identifier).

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use reqwest::Url;

use crate::crd::{AiApp, CredentialKeys, CredentialsRef};
use crate::dataforest::client::parse_endpoint;
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
    /// No `spec.credentials`, and the operator's default Secret (if any) does not serve
    /// this namespace.
    #[error(
        "no credentials: spec.credentials is not set, and no default credentials Secret of the operator \
         serves namespace {namespace}; set spec.credentials.secretName to a Secret in {namespace}"
    )]
    NotConfigured { namespace: String },
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
    #[error(
        "the endpoint in key {key:?} of Secret {namespace}/{name} is not on the operator's allow-list \
         (--allowed-endpoints)"
    )]
    EndpointNotAllowed {
        namespace: String,
        name: String,
        key: String,
    },
    #[error(
        "key {key:?} of Secret {namespace}/{name} is not an endpoint: an http(s) base URL with a host, \
         without user, query or fragment"
    )]
    EndpointInvalid {
        namespace: String,
        name: String,
        key: String,
    },
    /// The operator's own `--endpoint` (not a Secret's value, so it may be named).
    #[error("the operator's --endpoint {endpoint} is not on its --allowed-endpoints")]
    DefaultEndpointNotAllowed { endpoint: String },
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

impl CredentialsError {
    /// The condition reason for an AiApp waiting on this.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialsError::EndpointNotAllowed { .. }
            | CredentialsError::EndpointInvalid { .. }
            | CredentialsError::DefaultEndpointNotAllowed { .. } => "EndpointNotAllowed",
            CredentialsError::Kube { .. } | CredentialsError::Timeout { .. } => "SecretUnreadable",
            _ => "CredentialsNotFound",
        }
    }
}

/// The operator's own settings for credentials and endpoints, parsed once at start.
#[derive(Clone, Debug)]
pub struct CredentialsPolicy {
    /// `--endpoint` / `DATAFOREST_ENDPOINT`: used when the Secret names none.
    default_endpoint: Url,
    /// `--allowed-endpoints`: the base URLs the operator may call.
    allowed: Vec<Url>,
    /// `--default-credentials-secret` and `--default-credentials-namespaces`.
    default_secret: Option<DefaultSecret>,
}

/// The operator's default credentials Secret: in the operator's own namespace, used by
/// AiApps without `spec.credentials` in the namespaces the operator's settings list, and
/// nowhere else. The list comes only from the operator's flags, never from anything a
/// namespace owner can set (a label, an annotation): the Secret lets any AiApp author in
/// a listed namespace spend its account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultSecret {
    /// The operator's namespace (`POD_NAMESPACE`), where the Secret lives.
    pub namespace: String,
    /// The Secret's name; its keys have the default names (`accessKey`, `secretKey`,
    /// `accountId`, `endpoint`).
    pub name: String,
    /// Namespaces whose AiApps without `spec.credentials` use it.
    pub serves: Vec<String>,
}

impl DefaultSecret {
    /// Whether AiApps in `namespace` may use it.
    pub fn serves(&self, namespace: &str) -> bool {
        self.serves.iter().any(|served| served == namespace)
    }
}

/// The Secret one AiApp's credentials come from, and where it lives.
#[derive(Clone, Debug, PartialEq)]
pub struct ChosenSecret {
    pub namespace: String,
    pub reference: CredentialsRef,
}

/// Pure: which Secret an AiApp in `namespace` reads. Its own `spec.credentials` (in its
/// namespace) always wins; without one, the operator's default Secret if it serves the
/// namespace; otherwise none, and the error says so, naming the namespace.
pub fn choose_secret(
    namespace: &str,
    own: Option<&CredentialsRef>,
    default: Option<&DefaultSecret>,
) -> Result<ChosenSecret, CredentialsError> {
    if let Some(reference) = own {
        return Ok(ChosenSecret {
            namespace: namespace.to_owned(),
            reference: reference.clone(),
        });
    }
    match default {
        Some(default) if default.serves(namespace) => Ok(ChosenSecret {
            namespace: default.namespace.clone(),
            reference: CredentialsRef {
                secret_name: default.name.as_str().into(),
                keys: CredentialKeys::default(),
            },
        }),
        _ => Err(CredentialsError::NotConfigured {
            namespace: namespace.to_owned(),
        }),
    }
}

impl Default for CredentialsPolicy {
    /// The public gateway, and only it.
    fn default() -> Self {
        Self::new(DEFAULT_ENDPOINT, &[DEFAULT_ENDPOINT.to_owned()])
            .expect("the public gateway is a valid endpoint")
    }
}

impl CredentialsPolicy {
    /// Parses the flags; the error names the entry that is not an endpoint.
    pub fn new(default_endpoint: &str, allowed: &[String]) -> Result<Self, String> {
        let parse = |flag: &str, text: &str| {
            parse_endpoint(text.trim()).map_err(|e| format!("{flag}: {e}"))
        };
        let allowed = allowed
            .iter()
            .filter(|entry| !entry.trim().is_empty())
            .map(|entry| parse("--allowed-endpoints", entry))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            default_endpoint: parse("--endpoint", default_endpoint)?,
            allowed,
            default_secret: None,
        })
    }

    /// With the operator's default credentials Secret.
    pub fn with_default_secret(mut self, default_secret: Option<DefaultSecret>) -> Self {
        self.default_secret = default_secret;
        self
    }

    /// The operator's default credentials Secret, if it has one.
    pub fn default_secret(&self) -> Option<&DefaultSecret> {
        self.default_secret.as_ref()
    }

    /// The Secret `app` reads its credentials from (see [`choose_secret`]).
    pub fn secret_for(&self, app: &AiApp) -> Result<ChosenSecret, CredentialsError> {
        let namespace = app.metadata.namespace.as_deref().unwrap_or_default();
        choose_secret(namespace, secret_ref(app), self.default_secret())
    }

    /// Whether `--endpoint` is allowed; the operator refuses to start otherwise.
    pub fn default_endpoint_allowed(&self) -> bool {
        self.allowed_form(&self.default_endpoint).is_some()
    }

    /// The allowed endpoint that `url` is, as the client should call it.
    fn allowed_form(&self, url: &Url) -> Option<String> {
        let key = |u: &Url| {
            (
                u.scheme().to_owned(),
                u.host_str().map(str::to_ascii_lowercase),
                u.port_or_known_default(),
                u.path().trim_end_matches('/').to_owned(),
            )
        };
        let wanted = key(url);
        self.allowed
            .iter()
            .find(|allowed| key(allowed) == wanted)
            .map(|allowed| allowed.as_str().trim_end_matches('/').to_owned())
    }

    /// The endpoint for a Secret's optional `endpoint` value: the Secret's, else the
    /// flag's; refused unless allowed. `place` names where a value came from, for errors.
    fn choose_endpoint(
        &self,
        from_secret: Option<&str>,
        place: &SecretPlace<'_>,
    ) -> Result<String, CredentialsError> {
        let Some(text) = from_secret else {
            return self.allowed_form(&self.default_endpoint).ok_or_else(|| {
                CredentialsError::DefaultEndpointNotAllowed {
                    endpoint: self.default_endpoint.to_string(),
                }
            });
        };
        let url = parse_endpoint(text).map_err(|_| CredentialsError::EndpointInvalid {
            namespace: place.namespace.to_owned(),
            name: place.name.to_owned(),
            key: place.key.to_owned(),
        })?;
        self.allowed_form(&url)
            .ok_or_else(|| CredentialsError::EndpointNotAllowed {
                namespace: place.namespace.to_owned(),
                name: place.name.to_owned(),
                key: place.key.to_owned(),
            })
    }
}

/// Where a value was read: a key of a Secret.
struct SecretPlace<'a> {
    namespace: &'a str,
    name: &'a str,
    key: &'a str,
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
            name: name.to_string(),
            source,
        })?
        .ok_or_else(|| CredentialsError::SecretNotFound {
            namespace: namespace.to_owned(),
            name: name.to_string(),
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
    let place = SecretPlace {
        namespace,
        name,
        key: &keys.endpoint,
    };
    let endpoint = policy.choose_endpoint(value(&keys.endpoint)?.as_deref(), &place)?;
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
        CredentialsPolicy::new(
            DEFAULT_ENDPOINT,
            &[
                DEFAULT_ENDPOINT.to_owned(),
                "http://127.0.0.1:9000/".to_owned(),
            ],
        )
        .unwrap()
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
    fn no_error_path_carries_a_value_read_from_the_secret() {
        // A recognisable value in the key each path reads: it must appear nowhere.
        const VALUE: &str = "hunter2-database-password-7f3a";
        let not_utf8 = |key: &str| {
            let mut s = secret(&[("accessKey", VALUE), ("secretKey", VALUE)]);
            s.data.as_mut().unwrap().insert(
                key.to_owned(),
                ByteString([VALUE.as_bytes(), &[0xff, 0xfe]].concat()),
            );
            s
        };
        let cases = [
            (
                secret(&[
                    ("accessKey", "AK"),
                    ("secretKey", VALUE),
                    ("endpoint", VALUE),
                ]),
                "EndpointNotAllowed",
                "is not an endpoint",
            ),
            (
                secret(&[
                    ("accessKey", "AK"),
                    ("secretKey", VALUE),
                    ("endpoint", &format!("https://{VALUE}.example")),
                ]),
                "EndpointNotAllowed",
                "is not on the operator's allow-list",
            ),
            (
                secret(&[("accessKey", VALUE)]),
                "CredentialsNotFound",
                "has no key \"secretKey\"",
            ),
            (not_utf8("secretKey"), "CredentialsNotFound", "is not UTF-8"),
            (not_utf8("endpoint"), "CredentialsNotFound", "is not UTF-8"),
        ];
        for (s, reason, says) in cases {
            let error =
                read_secret(&s, "ns", "creds", &CredentialKeys::default(), &policy()).unwrap_err();
            let shown = format!("{error} {error:?}");
            assert_eq!(error.reason(), reason, "{shown}");
            assert!(shown.contains(says), "{shown}");
            assert!(shown.contains("ns/creds"), "names the Secret: {shown}");
            assert!(
                !shown.contains(VALUE) && !shown.contains("hunter2"),
                "{shown}"
            );
        }
    }

    #[test]
    fn allowed_endpoints_compare_as_urls_not_as_text() {
        let policy = CredentialsPolicy::new(
            DEFAULT_ENDPOINT,
            &["https://DF.apigw.ntruss.com:443/".to_owned()],
        )
        .unwrap();
        assert!(policy.default_endpoint_allowed());
        let place = SecretPlace {
            namespace: "ns",
            name: "creds",
            key: "endpoint",
        };
        for same in [
            "https://df.apigw.ntruss.com",
            "https://df.apigw.ntruss.com/",
            "HTTPS://df.APIGW.ntruss.com:443",
        ] {
            assert_eq!(
                policy.choose_endpoint(Some(same), &place).unwrap(),
                "https://df.apigw.ntruss.com",
                "{same}"
            );
        }
        for other in [
            "http://df.apigw.ntruss.com",
            "https://df.apigw.ntruss.com:8443",
            "https://df.apigw.ntruss.com/other",
            "https://df.apigw.ntruss.com.evil.example",
        ] {
            assert!(
                policy.choose_endpoint(Some(other), &place).is_err(),
                "{other}"
            );
        }
    }

    #[test]
    fn the_own_secret_wins_the_default_serves_only_listed_namespaces_and_else_none() {
        let own: CredentialsRef = serde_json::from_value(serde_json::json!({
            "secretName": "team-keys", "keys": {"secretKey": "sk"}
        }))
        .unwrap();
        let default = DefaultSecret {
            namespace: "dataforest-system".to_owned(),
            name: "platform-ncp".to_owned(),
            serves: vec!["team-a".to_owned(), "team-b".to_owned()],
        };
        let platform = ChosenSecret {
            namespace: "dataforest-system".to_owned(),
            reference: CredentialsRef {
                secret_name: "platform-ncp".into(),
                keys: CredentialKeys::default(),
            },
        };
        let team_a_own = ChosenSecret {
            namespace: "team-a".to_owned(),
            reference: own.clone(),
        };
        let none = |ns: &str| {
            format!("no default credentials Secret of the operator serves namespace {ns}")
        };
        // (namespace, spec.credentials, default Secret, what is chosen or what the error says)
        #[allow(clippy::type_complexity)]
        let cases: [(
            &str,
            Option<&CredentialsRef>,
            Option<&DefaultSecret>,
            Result<ChosenSecret, String>,
        ); 6] = [
            ("team-a", Some(&own), Some(&default), Ok(team_a_own.clone())),
            ("team-a", Some(&own), None, Ok(team_a_own)),
            ("team-a", None, Some(&default), Ok(platform.clone())),
            ("team-b", None, Some(&default), Ok(platform)),
            ("team-c", None, Some(&default), Err(none("team-c"))),
            ("team-a", None, None, Err(none("team-a"))),
        ];
        for (namespace, reference, default, want) in cases {
            let got = choose_secret(namespace, reference, default);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{namespace}"),
                (Err(error), Err(says)) => {
                    assert_eq!(error.reason(), "CredentialsNotFound");
                    let message = error.to_string();
                    assert!(message.contains("spec.credentials is not set"), "{message}");
                    assert!(message.contains(&says), "{message}");
                    assert!(!message.contains("platform-ncp"), "{message}");
                }
                (got, want) => panic!("{namespace}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_malformed_allowed_endpoint_is_refused_at_start_naming_it() {
        let e = CredentialsPolicy::new(DEFAULT_ENDPOINT, &["df.apigw.ntruss.com".to_owned()])
            .unwrap_err();
        assert!(
            e.starts_with("--allowed-endpoints: invalid endpoint \"df.apigw.ntruss.com\""),
            "{e}"
        );
        let e = CredentialsPolicy::new("ftp://x", &[]).unwrap_err();
        assert!(e.starts_with("--endpoint:"), "{e}");
        let policy =
            CredentialsPolicy::new("http://127.0.0.1:1", &[DEFAULT_ENDPOINT.to_owned()]).unwrap();
        assert!(!policy.default_endpoint_allowed());
    }
}
