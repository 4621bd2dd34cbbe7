//! Following a submitted app: getDetail on the back-off schedule, the phase and Events
//! that follow from its state, and "not found" within its grace period.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::{StepRun, current, write_if_changed};
use crate::controller::Result;
use crate::crd::{AiApp, AiAppStatus, Phase};
use crate::status::{self, condition, set_condition};

impl StepRun<'_> {
    pub(super) async fn poll(&self, id: &str) -> Result<Action> {
        let detail = match self.dataforest.get_detail(id).await {
            Ok(detail) => detail,
            Err(error) if error.is_not_found() => return self.not_found(id).await,
            Err(error) => return self.api_failed(error).await,
        };
        self.ctx.found(&self.key);
        let before = current(self.app);
        let mut status = before.clone();
        status::record_detail(&mut status, &detail);
        status::settle_phase(&mut status, Timestamp::now());
        let phase = status.phase.unwrap_or(Phase::Accepted);
        status.message = Some(phase_message(&status));
        write_if_changed(self.api, self.app, &mut status).await?;
        let changed = before.phase != status.phase;
        if changed {
            self.observe_transition(self.app, before.phase, &status);
            let type_ = if matches!(phase, Phase::Failed | Phase::Killed) {
                EventType::Warning
            } else {
                EventType::Normal
            };
            let note = format!("app {id}: {}", phase_message(&status));
            self.ctx
                .event(self.app, type_, &format!("{phase:?}"), note)
                .await;
        }
        if phase.is_terminal() {
            self.ctx.forget_gate(&self.key);
            return Ok(Action::await_change());
        }
        let interval = if changed {
            self.ctx.config.poll_min
        } else {
            self.backoff()
        };
        Ok(self.hold(interval, Some(interval)))
    }

    /// Feeds the create-to-Accepted and Accepted-to-Running histograms.
    pub(super) fn observe_transition(
        &self,
        app: &AiApp,
        before: Option<Phase>,
        status: &AiAppStatus,
    ) {
        let seconds_since =
            |t: Timestamp| Timestamp::now().duration_since(t).as_secs_f64().max(0.0);
        let entered = |phase| before != Some(phase) && status.phase == Some(phase);
        let accepted_now = entered(Phase::Accepted)
            || (entered(Phase::Running) && before != Some(Phase::Accepted));
        if let (true, Some(created)) = (accepted_now, &app.metadata.creation_timestamp) {
            self.ctx
                .metrics
                .observe_create_to_accepted(seconds_since(created.0));
        }
        if entered(Phase::Running) {
            let accepted = status
                .conditions
                .iter()
                .find(|c| c.type_ == condition::SUBMITTED && c.status == "True");
            if let Some(accepted) = accepted {
                self.ctx
                    .metrics
                    .observe_accepted_to_running(seconds_since(accepted.last_transition_time.0));
            }
        }
    }

    async fn not_found(&self, id: &str) -> Result<Action> {
        let before = current(self.app);
        let mut status = before.clone();
        let now = Timestamp::now();
        // The grace runs from the first "not found" in a row.
        let since = self.ctx.not_found_since(&self.key, now);
        let grace = SignedDuration::try_from(self.ctx.config.not_found_grace)
            .unwrap_or(SignedDuration::MAX);
        let message = format!("Data Forest does not know app {id}");
        set_condition(
            &mut status,
            condition::SYNCED,
            "False",
            "AppNotFound",
            &message,
            now,
        );
        status.message = Some(message.clone());
        if now.duration_since(since) < grace {
            write_if_changed(self.api, self.app, &mut status).await?;
            return Ok(self.hold(self.ctx.config.poll_min, None));
        }
        status.phase = Some(Phase::Unknown);
        if before.phase != status.phase {
            self.ctx
                .event(self.app, EventType::Warning, "AppNotFound", message)
                .await;
        }
        write_if_changed(self.api, self.app, &mut status).await?;
        Ok(self.park())
    }
}

/// A short line for `status.message` and Events.
fn phase_message(status: &AiAppStatus) -> String {
    let said = |s: &Option<String>| s.clone().unwrap_or_else(|| "unknown".to_owned());
    format!(
        "state {}, final status {}",
        said(&status.state),
        said(&status.final_status)
    )
}
