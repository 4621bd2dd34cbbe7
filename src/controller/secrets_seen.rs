//! Credentials read from a Secret, reused while the Secret watch shows that Secret
//! unchanged, so a reconcile does not GET the same Secret again and again (the benchmark
//! counted five GETs per AiApp).
//!
//! Only values the operator resolved for an AiApp are held (as the deletion fallback
//! already holds them per AiApp), never whole Secrets; the watch itself is metadata only.
//! An entry is used only while its Secret's resourceVersion equals the last one the
//! watch delivered: any change, a rotation or a deletion, makes the next reconcile read
//! the Secret afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::crd::CredentialsRef;

use crate::credentials::ResolvedCredentials;

/// A Secret, and the key names an AiApp reads from it (two AiApps may read different keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretUse {
    namespace: String,
    name: String,
    keys: String,
}

impl SecretUse {
    pub fn new(namespace: &str, reference: &CredentialsRef) -> SecretUse {
        SecretUse {
            namespace: namespace.to_owned(),
            name: reference.secret_name.to_string(),
            keys: serde_json::to_string(&reference.keys).unwrap_or_default(),
        }
    }
}

#[derive(Default)]
pub struct SecretsSeen {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The last resourceVersion the watch delivered, by namespace and name.
    versions: HashMap<(String, String), String>,
    resolved: HashMap<SecretUse, Arc<ResolvedCredentials>>,
}

impl SecretsSeen {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The watch delivered this Secret (changed, new or deleted) at `version`.
    pub fn saw(&self, namespace: &str, name: &str, version: Option<String>) {
        let mut inner = self.lock();
        let at = (namespace.to_owned(), name.to_owned());
        match version {
            Some(version) => inner.versions.insert(at, version),
            None => inner.versions.remove(&at),
        };
        // What was resolved from an older version goes now, not at its next lookup.
        let Inner { versions, resolved } = &mut *inner;
        resolved.retain(|used, credentials| {
            versions.get(&(used.namespace.clone(), used.name.clone()))
                == credentials.secret_version.as_ref()
        });
    }

    /// Credentials resolved from the version of the Secret the watch last delivered.
    pub fn current(&self, used: &SecretUse) -> Option<Arc<ResolvedCredentials>> {
        let inner = self.lock();
        let credentials = inner.resolved.get(used)?;
        let seen = inner
            .versions
            .get(&(used.namespace.clone(), used.name.clone()))?;
        (credentials.secret_version.as_ref() == Some(seen)).then(|| credentials.clone())
    }

    /// Keeps what was just resolved, if it was read from the version the watch shows.
    pub fn keep(&self, used: SecretUse, credentials: &Arc<ResolvedCredentials>) {
        let mut inner = self.lock();
        let seen = inner
            .versions
            .get(&(used.namespace.clone(), used.name.clone()));
        if seen.is_some() && seen == credentials.secret_version.as_ref() {
            inner.resolved.insert(used, credentials.clone());
        }
    }

    /// How many resolved credentials are held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().resolved.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataforest::Credentials;

    fn reference(name: &str) -> CredentialsRef {
        serde_json::from_value(serde_json::json!({"secretName": name})).unwrap()
    }

    fn resolved(version: &str) -> Arc<ResolvedCredentials> {
        Arc::new(ResolvedCredentials {
            credentials: Credentials::new("AK", "SK"),
            account_id: None,
            endpoint: "https://df.apigw.ntruss.com".to_owned(),
            secret_version: Some(version.to_owned()),
        })
    }

    #[test]
    fn credentials_are_reused_only_while_the_watch_shows_their_version() {
        let seen = SecretsSeen::default();
        let used = SecretUse::new("team-a", &reference("ncp"));
        // Read before the watch delivered the Secret: not kept, nothing to compare with.
        seen.keep(used.clone(), &resolved("7"));
        assert!(seen.current(&used).is_none());
        seen.saw("team-a", "ncp", Some("7".into()));
        seen.keep(used.clone(), &resolved("7"));
        assert_eq!(
            seen.current(&used).unwrap().secret_version.as_deref(),
            Some("7")
        );
        // Rotated: the next reconcile reads it again.
        seen.saw("team-a", "ncp", Some("8".into()));
        assert!(seen.current(&used).is_none());
        assert_eq!(seen.held(), 0);
        // A read that raced the rotation and got the old version is not kept.
        seen.keep(used.clone(), &resolved("7"));
        assert!(seen.current(&used).is_none());
        seen.keep(used.clone(), &resolved("8"));
        assert!(seen.current(&used).is_some());
        // Deleted: gone.
        seen.saw("team-a", "ncp", None);
        assert!(seen.current(&used).is_none());
    }

    #[test]
    fn other_key_names_or_secrets_never_share_an_entry() {
        let seen = SecretsSeen::default();
        seen.saw("team-a", "ncp", Some("1".into()));
        let plain = SecretUse::new("team-a", &reference("ncp"));
        let renamed: CredentialsRef = serde_json::from_value(serde_json::json!({
            "secretName": "ncp", "keys": {"secretKey": "sk2"}
        }))
        .unwrap();
        seen.keep(plain.clone(), &resolved("1"));
        assert!(seen.current(&SecretUse::new("team-a", &renamed)).is_none());
        assert!(
            seen.current(&SecretUse::new("team-b", &reference("ncp")))
                .is_none()
        );
        assert!(seen.current(&plain).is_some());
    }
}
