//! The reconcile of a live AiApp: credentials first, then one of submit, recover, adopt
//! or poll, as `plan::next_step` decides. Permanent API answers park the AiApp on a
//! condition until a person changes the AiApp or its Secret.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

mod poll;

use super::{Context, Fingerprint, Gate, Result, write_status};
use crate::crd::{AiApp, AiAppStatus, Phase, SubmissionMarker};
use crate::credentials::{self, CredentialsError, ResolvedCredentials};
use crate::dataforest::{ApiError, DataForestApi, SubmitRequest, name_prefix};
use crate::plan::{self, ADOPT_ID_ANNOTATION, RESUBMIT_ANNOTATION, Recovery, Step};
use crate::status::{self, condition, set_condition};

pub(super) async fn apply(app: Arc<AiApp>, ctx: &Context, api: &Api<AiApp>) -> Result<Action> {
    let key = ObjectRef::from_obj(app.as_ref());
    let step = plan::next_step(&app);
    match step {
        Step::Done => {
            ctx.forget(&key);
            return Ok(Action::await_change());
        }
        Step::AwaitPerson => return Ok(Action::await_change()),
        Step::Paused => {
            let message = "paused by the dataforest.dev/paused annotation: no API calls";
            return stop_for_person(&app, ctx, api, "Paused", message, false).await;
        }
        Step::Refused { reason, message } => {
            return stop_for_person(&app, ctx, api, reason, &message, true).await;
        }
        Step::Adopt(ref id) if ctx.claimed_ids(&key).contains(id) => {
            let message = format!(
                "{ADOPT_ID_ANNOTATION} names app {id}, which another AiApp already follows; nothing is submitted \
                 until the annotation is fixed or removed"
            );
            return stop_for_person(&app, ctx, api, "AdoptIdClaimed", &message, true).await;
        }
        _ => {}
    }
    let resolved = match resolve_credentials(&app, ctx).await {
        Ok(resolved) => resolved,
        Err(error) => return waiting_for_credentials(&app, ctx, api, error).await,
    };
    let fingerprint = Fingerprint {
        generation: app.metadata.generation,
        annotations: app.annotations().clone(),
        secret_version: resolved.secret_version.clone(),
    };
    // The operator's own status writes wake this AiApp too; the gate keeps them from
    // costing API calls before the due time, and keeps a parked AiApp parked.
    let gate = ctx.gate(&key);
    if let Some(gate) = gate.as_ref().filter(|gate| gate.fingerprint == fingerprint) {
        if gate.parked {
            return Ok(Action::await_change());
        }
        let now = Instant::now();
        if gate.not_before > now {
            return Ok(Action::requeue(gate.not_before - now));
        }
    }
    ctx.remember_credentials(key.clone(), resolved.clone());
    let step_run = StepRun {
        dataforest: ctx.dataforest(&resolved)?,
        app: &app,
        ctx,
        api,
        key,
        fingerprint,
        resolved,
        poll_interval: gate.and_then(|gate| gate.poll_interval),
    };
    match step {
        Step::Poll(id) => step_run.poll(&id).await,
        Step::Adopt(id) => {
            let note = format!("adopted app {id}, named by the {ADOPT_ID_ANNOTATION} annotation");
            step_run.adopt(&id, "Adopted", note).await
        }
        Step::Submit { attempt } => step_run.submit(attempt).await,
        Step::Recover(marker) => step_run.recover(&marker).await,
        Step::Done | Step::AwaitPerson | Step::Paused | Step::Refused { .. } => {
            unreachable!("handled above")
        }
    }
}

pub(super) async fn resolve_credentials(
    app: &AiApp,
    ctx: &Context,
) -> Result<ResolvedCredentials, CredentialsError> {
    let reference = credentials::secret_ref(app).ok_or(CredentialsError::NotConfigured)?;
    let namespace = app.namespace().unwrap_or_default();
    let secrets = Api::namespaced(ctx.client.clone(), &namespace);
    credentials::resolve(&secrets, &namespace, reference, &ctx.config.credentials).await
}

/// The AiApp's status as last read, or empty.
/// The AiApp's status as last read (or empty), for the generation it now has, so that
/// conditions set on it carry the right observedGeneration.
fn current(app: &AiApp) -> AiAppStatus {
    let mut status = app.status.clone().unwrap_or_default();
    status.observed_generation = app.metadata.generation;
    status
}

/// Stops at a condition a person must change: no API call until the AiApp changes.
/// `warn` publishes a Warning Event when the reason is new.
async fn stop_for_person(
    app: &AiApp,
    ctx: &Context,
    api: &Api<AiApp>,
    reason: &str,
    message: &str,
    warn: bool,
) -> Result<Action> {
    let before = current(app);
    let mut status = before.clone();
    let now = Timestamp::now();
    if status.id.is_none() && status.submission.is_none() {
        status.phase = Some(Phase::Pending);
        set_condition(
            &mut status,
            condition::SUBMITTED,
            "False",
            reason,
            message,
            now,
        );
    }
    set_condition(
        &mut status,
        condition::SYNCED,
        "False",
        reason,
        message,
        now,
    );
    status.message = Some(message.to_owned());
    if warn && reason_changed(&before, &status, condition::SYNCED) {
        ctx.event(app, EventType::Warning, reason, message.to_owned())
            .await;
    }
    write_if_changed(api, app, &mut status).await?;
    Ok(Action::await_change())
}

async fn waiting_for_credentials(
    app: &AiApp,
    ctx: &Context,
    api: &Api<AiApp>,
    error: CredentialsError,
) -> Result<Action> {
    stop_for_person(app, ctx, api, error.reason(), &error.to_string(), true).await?;
    // A Secret event wakes the AiApp when the Secret appears or changes; the requeue is
    // a safety net for a watch that missed it.
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn reason_changed(before: &AiAppStatus, after: &AiAppStatus, type_: &str) -> bool {
    let reason = |s: &AiAppStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    reason(before) != reason(after)
}

/// Writes the status when it differs from what was read; an unchanged status is not
/// written, so a steady AiApp causes no watch events.
async fn write_if_changed(api: &Api<AiApp>, app: &AiApp, status: &mut AiAppStatus) -> Result<()> {
    status.observed_generation = app.meta().generation;
    if app.status.as_ref() != Some(status) {
        write_status(api, app, status, None).await?;
    }
    Ok(())
}

/// One step of one AiApp, with what it needs.
struct StepRun<'a> {
    app: &'a AiApp,
    ctx: &'a Context,
    api: &'a Api<AiApp>,
    key: ObjectRef<AiApp>,
    fingerprint: Fingerprint,
    resolved: ResolvedCredentials,
    dataforest: Arc<dyn DataForestApi>,
    poll_interval: Option<Duration>,
}

impl StepRun<'_> {
    /// No API call for this AiApp for `after` (unless it or its Secret changes).
    fn hold(&self, after: Duration, poll_interval: Option<Duration>) -> Action {
        self.ctx.set_gate(
            self.key.clone(),
            Gate {
                not_before: Instant::now() + after,
                parked: false,
                fingerprint: self.fingerprint.clone(),
                poll_interval,
            },
        );
        Action::requeue(after)
    }

    /// No API call for this AiApp until it or its Secret changes.
    fn park(&self) -> Action {
        self.ctx.set_gate(
            self.key.clone(),
            Gate {
                not_before: Instant::now(),
                parked: true,
                fingerprint: self.fingerprint.clone(),
                poll_interval: None,
            },
        );
        Action::await_change()
    }

    fn backoff(&self) -> Duration {
        let config = &self.ctx.config;
        plan::next_poll_interval(self.poll_interval, config.poll_min, config.poll_ceiling)
    }

    async fn submit(&self, attempt: i32) -> Result<Action> {
        // Read fresh, not from the cache: a marker this or another operator wrote moments
        // ago may not be in the cache yet, and submitting past it would start a twin.
        let name = self.app.name_any();
        let fresh = self.api.get(&name).await?;
        let status_now = current(&fresh);
        if status_now.id.is_some() || status_now.submission != current(self.app).submission {
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
        if !self.ctx.may_submit() {
            // Not leading, or the lease could run out mid-call: a successor could then
            // submit this AiApp too. Wait for a renewed lease.
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        let prefix = fresh
            .spec
            .name_prefix
            .clone()
            .unwrap_or_else(|| name_prefix::derive(&name, fresh.metadata.uid.as_deref()));
        let now = Timestamp::now();
        let before_submit = status_now.clone();
        let mut status = status_now;
        status.observed_generation = fresh.metadata.generation;
        status.submission = Some(SubmissionMarker {
            attempt,
            started_at: Time(now),
            name_prefix: prefix.clone(),
        });
        status.phase = Some(Phase::Submitting);
        status.message = Some(format!("submitting to Data Forest (attempt {attempt})"));
        set_condition(
            &mut status,
            condition::SUBMITTED,
            "Unknown",
            "Submitting",
            "submit sent; waiting for the app id",
            now,
        );
        // The precondition makes a stale copy (another operator got here first) fail
        // with a conflict instead of submitting a second app.
        match write_status(
            self.api,
            &fresh,
            &status,
            fresh.metadata.resource_version.as_deref(),
        )
        .await
        {
            Err(kube::Error::Api(response)) if response.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            written => written?,
        };

        let request = SubmitRequest::from_spec(&fresh.spec, &prefix);
        let answer = self.dataforest.submit(&request).await;
        let now = Timestamp::now();
        match answer {
            Ok(response) if response.id.is_some() => {
                status::record_submitted(&mut status, &response);
                status::settle_phase(&mut status, now);
                status.message = Some(format!(
                    "submitted as {}",
                    response.name.as_deref().unwrap_or("an app")
                ));
                write_status(self.api, &fresh, &status, None).await?;
                self.observe_transition(&fresh, Some(Phase::Submitting), &status);
                let id = response.id.unwrap_or_default();
                self.ctx
                    .event(
                        &fresh,
                        EventType::Normal,
                        "Submitted",
                        format!("submitted app {id} (attempt {attempt})"),
                    )
                    .await;
                Ok(self.hold(self.ctx.config.poll_min, None))
            }
            Ok(_) => {
                self.outcome_unknown(&fresh, status, "the answer had no app id".to_owned())
                    .await
            }
            Err(error) if error.outcome_unknown() => {
                self.outcome_unknown(&fresh, status, error.to_string())
                    .await
            }
            Err(error) => {
                // The request cannot have created an app: the marker goes.
                status.submission = None;
                status.phase = Some(Phase::Pending);
                let message = error.to_string();
                set_condition(
                    &mut status,
                    condition::SUBMITTED,
                    "False",
                    error.reason(),
                    &message,
                    now,
                );
                set_condition(
                    &mut status,
                    condition::SYNCED,
                    "False",
                    error.reason(),
                    &message,
                    now,
                );
                status.message = Some(message.clone());
                write_status(self.api, &fresh, &status, None).await?;
                // One Warning per new reason, not one per retry.
                if reason_changed(&before_submit, &status, condition::SYNCED) {
                    self.ctx
                        .event(&fresh, EventType::Warning, error.reason(), message)
                        .await;
                }
                Ok(self.retry_or_park(&error))
            }
        }
    }

    /// The submit may have created an app: keep the marker, and look for the app before
    /// anything else.
    async fn outcome_unknown(
        &self,
        app: &AiApp,
        mut status: AiAppStatus,
        why: String,
    ) -> Result<Action> {
        let message =
            format!("submit outcome unknown ({why}); looking for the app before submitting again");
        set_condition(
            &mut status,
            condition::SYNCED,
            "False",
            "SubmitOutcomeUnknown",
            &message,
            Timestamp::now(),
        );
        status.message = Some(message.clone());
        write_status(self.api, app, &status, None).await?;
        self.ctx
            .event(app, EventType::Warning, "SubmitOutcomeUnknown", message)
            .await;
        Ok(self.hold(Duration::from_secs(1), None))
    }

    async fn recover(&self, marker: &SubmissionMarker) -> Result<Action> {
        let Some(account_id) = self.resolved.account_id.as_deref() else {
            let why =
                "the credentials Secret has no accountId, so the operator cannot look for the app"
                    .to_owned();
            return self.ambiguous(marker, why).await;
        };
        let listed = match self.dataforest.list(account_id).await {
            Ok(listed) => listed,
            Err(error) => return self.api_failed(error).await,
        };
        let claimed = self.ctx.claimed_ids(&self.key);
        let rivals = self.ctx.rivals(&self.key, &marker.name_prefix);
        let now = Timestamp::now();
        match plan::recover(
            marker,
            &listed,
            &claimed,
            rivals,
            now,
            self.ctx.config.recovery_grace,
        ) {
            Recovery::Adopt(id) => {
                let note = format!("found app {id} of the submit whose answer was lost");
                self.adopt(&id, "Recovered", note).await
            }
            Recovery::Wait => Ok(self.hold(Duration::from_secs(1), None)),
            Recovery::Resubmit => self.submit(marker.attempt + 1).await,
            Recovery::Ambiguous(ids) => {
                let why = format!(
                    "apps {} all carry name prefix {}",
                    ids.join(", "),
                    marker.name_prefix
                );
                self.ambiguous(marker, why).await
            }
        }
    }

    async fn ambiguous(&self, marker: &SubmissionMarker, why: String) -> Result<Action> {
        let before = current(self.app);
        let mut status = before.clone();
        let message = format!(
            "cannot tell which app the submit created: {why}. Set the annotation {ADOPT_ID_ANNOTATION}=<app id> \
             to adopt one, or {RESUBMIT_ANNOTATION}=\"{}\" to submit again",
            marker.attempt
        );
        status.phase = Some(Phase::Unknown);
        set_condition(
            &mut status,
            condition::SYNCED,
            "False",
            "SubmissionAmbiguous",
            &message,
            Timestamp::now(),
        );
        status.message = Some(message.clone());
        if before.phase != status.phase {
            self.ctx
                .event(self.app, EventType::Warning, "SubmissionAmbiguous", message)
                .await;
        }
        write_if_changed(self.api, self.app, &mut status).await?;
        Ok(self.park())
    }

    async fn adopt(&self, id: &str, reason: &str, note: String) -> Result<Action> {
        let before = current(self.app);
        let mut status = before.clone();
        let now = Timestamp::now();
        status.id = Some(id.to_owned());
        status.phase = Some(Phase::Accepted);
        set_condition(
            &mut status,
            condition::SUBMITTED,
            "True",
            reason,
            &note,
            now,
        );
        set_condition(&mut status, condition::SYNCED, "True", reason, &note, now);
        status.message = Some(note.clone());
        write_if_changed(self.api, self.app, &mut status).await?;
        self.ctx
            .event(self.app, EventType::Normal, reason, note)
            .await;
        // Poll at once: the app may have moved on while its id was unknown.
        self.ctx.forget_gate(&self.key);
        Ok(Action::requeue(Duration::from_millis(100)))
    }

    /// An API call failed: say so in Synced, and retry later or wait for a change.
    async fn api_failed(&self, error: ApiError) -> Result<Action> {
        let before = current(self.app);
        let mut status = before.clone();
        let message = error.to_string();
        set_condition(
            &mut status,
            condition::SYNCED,
            "False",
            error.reason(),
            &message,
            Timestamp::now(),
        );
        status.message = Some(message.clone());
        if reason_changed(&before, &status, condition::SYNCED) {
            self.ctx
                .event(self.app, EventType::Warning, error.reason(), message)
                .await;
        }
        write_if_changed(self.api, self.app, &mut status).await?;
        Ok(self.retry_or_park(&error))
    }

    /// After a failed call: back off and try again, or wait for a person's change.
    fn retry_or_park(&self, error: &ApiError) -> Action {
        if error.is_retryable() {
            let delay = self.backoff();
            self.hold(delay, Some(delay))
        } else {
            self.park()
        }
    }
}
