//! The env of a submit, read from the Secrets `spec.docker.envFrom` names right before the
//! marker is written. When one is missing or wrong, nothing is marked or submitted: the
//! AiApp waits on a condition naming the Secret and the key, and the Secret watch wakes it
//! when that Secret appears or changes (see `run`).

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::apply::StepRun;
use super::{KUBE_CALL_TIMEOUT, Result, jittered};
use crate::crd::AiAppStatus;
use crate::dataforest::SubmitEnv;
use crate::env_from;
use crate::transition;

/// Safety net for a Secret event the watch missed.
const WAIT_FOR_SECRET: Duration = Duration::from_secs(300);
/// When the Secret could not be read at all (the Kubernetes API did not answer).
const RETRY_UNREADABLE: Duration = Duration::from_secs(30);

impl StepRun<'_> {
    /// The env to submit with (`Ok(Ok(env))`), or what to do instead of submitting
    /// (`Ok(Err(action))`) once the reason is in status, built on `base`.
    pub(super) async fn env_for_submit(
        &self,
        base: &AiAppStatus,
    ) -> Result<std::result::Result<SubmitEnv, Action>> {
        let docker = &self.app.spec.docker;
        if docker.env_from.is_empty() {
            return Ok(Ok(SubmitEnv(docker.env.clone())));
        }
        let namespace = self.app.namespace().unwrap_or_default();
        let secrets = Api::namespaced(self.ctx.client.clone(), &namespace);
        let error = match env_from::resolve(&secrets, &namespace, docker, KUBE_CALL_TIMEOUT).await {
            Ok(env) => return Ok(Ok(env)),
            Err(error) => error,
        };
        let message = error.to_string();
        let t = transition::waiting(base, error.reason(), &message, true, Timestamp::now());
        self.effects.write(self.app, &t.status).await?;
        if let Some(note) = &t.note {
            self.effects.publish(self.app, note);
        }
        // No gate: the gate's fingerprint knows only the credentials Secret, so a parked
        // gate would keep out the very Secret event this waits for. The operator's own
        // status write wakes the AiApp once more, which reads the Secrets and finds the
        // same (no write, no Event).
        self.ctx.memory.update(&self.effects.uid, |m| m.gate = None);
        let wait = if error.is_transient() {
            RETRY_UNREADABLE
        } else {
            WAIT_FOR_SECRET
        };
        Ok(Err(Action::requeue(jittered(wait))))
    }
}
