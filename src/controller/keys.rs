//! Keys Data Forest refused, shared by every AiApp that uses them: one documented 401/403
//! parks every AiApp of that key, instead of each finding out with a call of its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::credentials::ResolvedCredentials;

/// One key pair at one endpoint, without holding the secret: a hash of it, so that a
/// rotated secret key is a different key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyIdentity {
    pub endpoint: String,
    pub access_key: String,
    secret_hash: [u8; 16],
}

impl KeyIdentity {
    pub fn of(resolved: &ResolvedCredentials) -> Self {
        let digest = Sha256::digest(resolved.credentials.secret_key.expose().as_bytes());
        Self {
            endpoint: resolved.endpoint.clone(),
            access_key: resolved.credentials.access_key.clone(),
            secret_hash: digest[..16]
                .try_into()
                .expect("a SHA-256 digest has 32 bytes"),
        }
    }
}

/// A key Data Forest refused, and when an AiApp that follows an app may probe it again.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
    pub probe_after: Instant,
}

/// Keys Data Forest refused with a documented 401/403.
#[derive(Default)]
pub struct Refusals(Mutex<HashMap<KeyIdentity, Refusal>>);

impl Refusals {
    pub fn refuse(
        &self,
        key: KeyIdentity,
        reason: &'static str,
        message: String,
        probe_every: Duration,
    ) {
        let refusal = Refusal {
            reason,
            message,
            probe_after: Instant::now() + probe_every,
        };
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, refusal);
    }

    pub fn accepted(&self, key: &KeyIdentity) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    pub fn get(&self, key: &KeyIdentity) -> Option<Refusal> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Whether the caller may probe the refused key now; if so, the next probe is due
    /// `probe_every` later, so that of many AiApps one probes at a time.
    pub fn take_probe(&self, key: &KeyIdentity, probe_every: Duration) -> Result<(), Instant> {
        let mut refusals = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(refusal) = refusals.get_mut(key) else {
            return Ok(());
        };
        let now = Instant::now();
        if refusal.probe_after > now {
            return Err(refusal.probe_after);
        }
        refusal.probe_after = now + probe_every;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn of_many_aiapps_one_probes_a_refused_key_at_a_time() {
        let refusals = Refusals::default();
        let key = KeyIdentity {
            endpoint: "e".into(),
            access_key: "AK".into(),
            secret_hash: [0; 16],
        };
        let every = Duration::from_secs(60);
        assert!(
            refusals.take_probe(&key, every).is_ok(),
            "an unrefused key is free"
        );
        refusals.refuse(key.clone(), "Unauthorized", "no".into(), every);
        assert!(refusals.take_probe(&key, every).is_err());
        tokio::time::advance(every).await;
        assert!(refusals.take_probe(&key, every).is_ok());
        assert!(
            refusals.take_probe(&key, every).is_err(),
            "the next waits again"
        );
        refusals.accepted(&key);
        assert!(refusals.get(&key).is_none());
    }
}
