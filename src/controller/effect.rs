//! The one place that carries a [`Transition`] out: writes the status (only when it
//! changed, always with the resourceVersion it was computed from), publishes the Event,
//! and sets when the AiApp may call Data Forest again.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::Action;
use tokio::time::Instant;

use super::memory::{Fingerprint, Gate};
use super::{Context, Result, jittered, write_status};
use crate::attempts;
use crate::crd::{AiApp, AiAppStatus};
use crate::plan;
use crate::summary;
use crate::transition::{Next, Note, Transition};

/// The AiApp's status as read (or empty), in the current shape and for the generation it
/// now has, so that conditions set on it carry the right observedGeneration.
pub(super) fn current(app: &AiApp) -> AiAppStatus {
    let mut status = app.status.clone().unwrap_or_default();
    attempts::normalize(&mut status);
    status.observed_generation = app.metadata.generation;
    status
}

/// Effects for one AiApp in one reconcile.
pub(super) struct Effects<'a> {
    pub ctx: &'a Context,
    pub api: &'a Api<AiApp>,
    pub uid: String,
    /// What wakes the AiApp from a hold or a park; `None` before credentials were read.
    pub fingerprint: Option<Fingerprint>,
}

impl Effects<'_> {
    /// Writes `status`, summarized (see [`summary`]), when it differs from `app`'s, with
    /// `app`'s resourceVersion as the precondition; returns the AiApp as it now stands.
    pub async fn write(&self, app: &AiApp, status: &AiAppStatus) -> Result<AiApp> {
        let mut status = status.clone();
        status.observed_generation = app.meta().generation;
        summary::summarize(&mut status, Timestamp::now());
        if app.status.as_ref() == Some(&status) {
            return Ok(app.clone());
        }
        let written = write_status(self.api, app, &status).await?;
        if let (Some(read), Some(now)) = (
            app.metadata.resource_version.as_deref(),
            written.metadata.resource_version.as_deref(),
        ) {
            self.ctx
                .memory
                .update(&self.uid, |m| m.wrote_over(read, now));
        }
        Ok(written)
    }

    /// Queues an Event; the reconcile never waits for it (see `events`).
    pub fn publish(&self, app: &AiApp, note: &Note) {
        self.ctx.events.publish(app, note);
    }

    /// Writes the transition computed from `app`, publishes its Event, and decides when
    /// to come back. `backoff_cap` bounds a back-off (recovery looks more often than polls).
    pub async fn carry_out(
        &self,
        app: &AiApp,
        transition: Transition,
        backoff_cap: Duration,
    ) -> Result<Action> {
        self.write(app, &transition.status).await?;
        if let Some(note) = &transition.note {
            self.publish(app, note);
        }
        Ok(self.next(&transition.next, backoff_cap))
    }

    /// The action for `next`, remembering the hold in the AiApp's gate.
    pub fn next(&self, next: &Next, backoff_cap: Duration) -> Action {
        let config = &self.ctx.config;
        match next {
            Next::After(delay) => self.hold(*delay, None),
            Next::Soon => self.hold(config.poll_min, Some(config.poll_min)),
            Next::Backoff => {
                let previous = self.ctx.memory.get(&self.uid).gate.and_then(|g| g.interval);
                let ceiling = config.poll_ceiling.min(backoff_cap).max(config.poll_min);
                let interval = plan::next_poll_interval(previous, config.poll_min, ceiling);
                self.hold(jittered(interval), Some(interval))
            }
            Next::ReadAgain => self.hold(Duration::from_secs(1), None),
            Next::Park => self.park(),
            Next::Now => {
                self.ctx.memory.update(&self.uid, |m| m.gate = None);
                Action::requeue(Duration::from_millis(100))
            }
            Next::Done => {
                self.ctx.memory.forget(&self.uid);
                Action::await_change()
            }
        }
    }

    /// No API call for this AiApp for `after` (unless it or its Secret changes).
    pub fn hold(&self, after: Duration, interval: Option<Duration>) -> Action {
        self.set_gate(Instant::now() + after, false, interval);
        Action::requeue(after)
    }

    /// No API call for this AiApp until it or its Secret changes.
    pub fn park(&self) -> Action {
        self.set_gate(Instant::now(), true, None);
        Action::await_change()
    }

    fn set_gate(&self, not_before: Instant, parked: bool, interval: Option<Duration>) {
        let Some(fingerprint) = self.fingerprint.clone() else {
            return;
        };
        self.ctx.memory.update(&self.uid, |m| {
            m.gate = Some(Gate {
                not_before,
                parked,
                fingerprint,
                interval,
            })
        });
    }
}
