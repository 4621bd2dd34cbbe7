//! The reconcile of a live AiApp: an app id a submit answered is written before anything
//! else; then credentials, and one of submit, adopt, recover or poll as `plan::next_step`
//! decides. A status write that finds the AiApp changed re-reads it and plans again, so a
//! deletion, pause or adopt-id that arrived meanwhile is honoured.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tokio::time::Instant;

use super::effect::{Effects, current};
use super::keys::KeyIdentity;
use super::memory::{Fingerprint, UnwrittenId};
use super::{Context, Error, Result, bounded};
use crate::crd::{AiApp, AiAppStatus};
use crate::credentials::{self, CredentialsError, ResolvedCredentials};
use crate::dataforest::{DataForestApi, SubmitRequest, name_prefix};
use crate::plan::{self, ADOPT_ID_ANNOTATION, Step};
use crate::transition::{self, Next};

/// How long a poll waits when submits are in flight and polls hold their share of slots.
const POLL_SLOT_WAIT: Duration = Duration::from_millis(500);

/// When a reconcile that found the cache behind the operator's own write looks again, if
/// no watch event woke it first.
const STALE_COPY_RECHECK: Duration = Duration::from_secs(1);

/// Re-reads after a conflicting write before the reconcile gives up and comes back.
const CONFLICT_REPLANS: usize = 3;

pub(super) async fn apply(app: Arc<AiApp>, ctx: &Context, api: &Api<AiApp>) -> Result<Action> {
    let mut app = app;
    for _ in 0..CONFLICT_REPLANS {
        match apply_once(&app, ctx, api).await {
            Err(Error::Conflict) => {
                let fresh = bounded(api.get(&app.name_any())).await?;
                if fresh.metadata.deletion_timestamp.is_some() {
                    // The finalizer's cleanup takes it from here, on the next reconcile.
                    return Ok(Action::requeue(Duration::ZERO));
                }
                app = Arc::new(fresh);
            }
            other => return other,
        }
    }
    Ok(Action::requeue(super::jittered(Duration::from_millis(200))))
}

async fn apply_once(app: &AiApp, ctx: &Context, api: &Api<AiApp>) -> Result<Action> {
    let uid = app.metadata.uid.clone().unwrap_or_default();
    let mut effects = Effects {
        ctx,
        api,
        uid: uid.clone(),
        fingerprint: None,
    };
    let remembered = ctx.memory.get(&uid);
    if let Some(unwritten) = remembered.unwritten {
        return write_answered_id(app, &effects, unwritten).await;
    }
    if let Some(version) = app.metadata.resource_version.as_deref()
        && remembered.is_superseded(version)
    {
        // The cache has not caught up with this operator's own last write (its watch
        // event is on the way, and wakes the AiApp): planning from this copy would only
        // meet a conflict, a re-read, and for a marker without its id a needless
        // recovery. The requeue is a safety net for a watch that missed the event.
        return Ok(Action::requeue(STALE_COPY_RECHECK));
    }
    let now = Timestamp::now();
    let before = current(app);
    let normalized = {
        let mut normalized = app.clone();
        normalized.status = Some(before.clone());
        normalized
    };
    let step = plan::next_step(&normalized, now);
    let park_for_person = |reason: &str, message: &str, warn: bool| {
        transition::waiting(&before, reason, message, warn, now)
    };
    match &step {
        Step::Done => {
            ctx.memory.forget(&uid);
            // An AiApp that ended under an older operator gets its summary (status.reason,
            // Finished, Stalled) once; after that this writes nothing.
            effects.write(app, &before).await?;
            return Ok(Action::await_change());
        }
        Step::Paused => {
            let message = "paused by the dataforest.dev/paused annotation: no API calls";
            let t = park_for_person("Paused", message, false);
            return effects.carry_out(app, t, Duration::MAX).await;
        }
        Step::Refused { reason, message } => {
            let t = park_for_person(reason, message, true);
            return effects.carry_out(app, t, Duration::MAX).await;
        }
        // No live app: no credentials needed, no API call.
        Step::Suspend => {
            let t = transition::suspended(&before, now);
            return effects.carry_out(app, t, Duration::MAX).await;
        }
        Step::Expire(fired) => {
            let t = transition::expired(&before, fired, now);
            return effects.carry_out(app, t, Duration::MAX).await;
        }
        Step::Wait(at) => {
            let wait = std::time::Duration::try_from(at.duration_since(now)).unwrap_or_default();
            return Ok(Action::requeue(wait.max(Duration::from_millis(100))));
        }
        Step::Adopt(id) if ctx.claimed_ids(&uid).contains(id) => {
            let message = format!(
                "{ADOPT_ID_ANNOTATION} names app {id}, which another AiApp already follows; nothing is \
                 submitted until the annotation is fixed or removed"
            );
            let t = park_for_person("AdoptIdClaimed", &message, true);
            return effects.carry_out(app, t, Duration::MAX).await;
        }
        _ => {}
    }
    let resolved = match resolve_credentials(app, ctx).await {
        Ok(resolved) => resolved,
        Err(error) => {
            let t = park_for_person(error.reason(), &error.to_string(), true);
            effects.carry_out(app, t, Duration::MAX).await?;
            // A Secret event wakes the AiApp when the Secret appears or changes; the
            // requeue is a safety net for a watch that missed it.
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    };
    let fingerprint = Fingerprint {
        generation: app.metadata.generation,
        annotations: app.annotations().clone(),
        secret_version: resolved.secret_version.clone(),
    };
    // The operator's own status writes wake this AiApp too; the gate keeps them from
    // costing API calls before the due time, and keeps a parked AiApp parked.
    if let Some(gate) = ctx
        .memory
        .get(&uid)
        .gate
        .filter(|g| g.fingerprint == fingerprint)
    {
        if gate.parked {
            return Ok(Action::await_change());
        }
        let now = Instant::now();
        if gate.not_before > now {
            return Ok(Action::requeue(gate.not_before - now));
        }
    }
    effects.fingerprint = Some(fingerprint);
    ctx.memory
        .update(&uid, |m| m.credentials = Some(resolved.clone()));
    let key = KeyIdentity::of(&resolved);
    if let Some(refusal) = ctx.refusals.get(&key) {
        // One refusal decides for every AiApp of the key. An app already running is still
        // followed: one AiApp at a time probes the key at the poll ceiling.
        let probe = ctx.refusals.take_probe(&key, ctx.config.poll_ceiling);
        match (&step, probe) {
            (Step::Poll(_), Ok(())) => {}
            (Step::Poll(_), Err(at)) => {
                return Ok(effects.hold(at.saturating_duration_since(Instant::now()), None));
            }
            _ => {
                let t = park_for_person(refusal.reason, &refusal.message, true);
                return effects.carry_out(app, t, Duration::MAX).await;
            }
        }
    }
    let run = StepRun {
        app,
        before,
        ctx,
        effects,
        dataforest: ctx.dataforest(&resolved)?,
        resolved,
        key,
    };
    match step {
        Step::Poll(id) => {
            // A poll that finds its share of slots taken comes back shortly, without
            // holding a slot a submit could use.
            let Some(_slot) = ctx.slots.poll() else {
                return Ok(Action::requeue(super::jittered(POLL_SLOT_WAIT)));
            };
            run.poll(&id).await
        }
        Step::Adopt(id) => {
            let note = format!("adopted app {id}, named by the {ADOPT_ID_ANNOTATION} annotation");
            run.adopt(&id, "Adopted", &note).await
        }
        Step::Submit { attempt } => {
            let _submitting = ctx.slots.submitting();
            run.submit(attempt, run.before.clone()).await
        }
        Step::Recover(record) => {
            let _submitting = ctx.slots.submitting();
            run.recover(&record).await
        }
        Step::AwaitPerson(record) => run.refresh_candidates(&record).await,
        Step::Done
        | Step::Paused
        | Step::Refused { .. }
        | Step::Suspend
        | Step::Expire(_)
        | Step::Wait(_) => {
            unreachable!("handled above")
        }
    }
}

pub(super) async fn resolve_credentials(
    app: &AiApp,
    ctx: &Context,
) -> Result<Arc<ResolvedCredentials>, CredentialsError> {
    // The AiApp's own Secret, or the operator's default in the operator's namespace:
    // cached and read under the namespace the Secret really lives in.
    let credentials::ChosenSecret {
        namespace,
        reference,
    } = ctx.config.credentials.secret_for(app)?;
    let reference = &reference;
    let used = super::secrets_seen::SecretUse::new(&namespace, reference);
    if let Some(unchanged) = ctx.secrets_seen.current(&used) {
        return Ok(unchanged);
    }
    let secrets = Api::namespaced(ctx.client.clone(), &namespace);
    let resolving = credentials::resolve(&secrets, &namespace, reference, &ctx.config.credentials);
    let resolved = match tokio::time::timeout(super::KUBE_CALL_TIMEOUT, resolving).await {
        // One copy per Secret version, shared by every AiApp that uses it.
        Ok(result) => result.map(Arc::new),
        Err(_) => Err(CredentialsError::Timeout {
            namespace,
            name: reference.secret_name.to_string(),
        }),
    };
    if let Ok(resolved) = &resolved {
        ctx.secrets_seen.keep(used, resolved);
    }
    resolved
}

/// Writes an id that a submit answered and an earlier write could not store: before any
/// other step, from the AiApp as it now stands.
async fn write_answered_id(
    app: &AiApp,
    effects: &Effects<'_>,
    unwritten: UnwrittenId,
) -> Result<Action> {
    let before = current(app);
    let id = unwritten.response.id.as_deref().unwrap_or_default();
    let already = before.id.as_deref() == Some(id)
        || before.attempts.iter().any(|a| a.id.as_deref() == Some(id));
    if !already {
        let t = transition::submitted(
            &before,
            unwritten.attempt,
            &unwritten.response,
            Timestamp::now(),
        );
        effects.write(app, &t.status).await?;
        if let Some(note) = &t.note {
            effects.publish(app, note);
        }
    }
    effects
        .ctx
        .memory
        .update(&effects.uid, |m| m.unwritten = None);
    Ok(Action::requeue(Duration::ZERO))
}

/// Tries once to write every id a submit answered that is not yet in status, as the
/// controller stops: otherwise the next leader would have to find the app by listing.
pub(super) async fn write_unwritten_ids(ctx: &Context) {
    for (uid, unwritten) in ctx.memory.unwritten() {
        let Some(app) = ctx
            .store
            .state()
            .into_iter()
            .find(|app| app.metadata.uid.as_deref() == Some(uid.as_str()))
        else {
            continue;
        };
        let api: Api<AiApp> =
            Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
        let effects = Effects {
            ctx,
            api: &api,
            uid: uid.clone(),
            fingerprint: None,
        };
        // The cached copy may be stale: on a conflict, read it fresh once.
        let mut written = write_answered_id(&app, &effects, unwritten.clone()).await;
        if matches!(written, Err(Error::Conflict))
            && let Ok(fresh) = bounded(api.get(&app.name_any())).await
        {
            written = write_answered_id(&fresh, &effects, unwritten.clone()).await;
        }
        if let Err(error) = written {
            let id = unwritten.response.id.unwrap_or_default();
            tracing::error!(aiapp = %app.name_any(), app_id = %id, %error,
                "stopping with an app id not written to status; the next leader finds the app by listing");
        }
    }
}

/// One step of one AiApp, with what it needs.
pub(super) struct StepRun<'a> {
    pub app: &'a AiApp,
    /// Its status as read, normalized.
    pub before: AiAppStatus,
    pub ctx: &'a Context,
    pub effects: Effects<'a>,
    pub dataforest: Arc<dyn DataForestApi>,
    pub resolved: Arc<ResolvedCredentials>,
    pub key: KeyIdentity,
}

impl StepRun<'_> {
    /// The prefix attempt `attempt` carries: the spec's (the same for every attempt),
    /// else one derived from the uid and the attempt number.
    pub fn name_prefix(&self, attempt: i32) -> String {
        self.app
            .spec
            .name_prefix
            .as_deref()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let uid = self.app.metadata.uid.as_deref();
                name_prefix::derive_for_attempt(&self.app.name_any(), uid, attempt)
            })
    }

    /// Submits attempt `attempt` from `base` (the status to build the marker on): marker
    /// first, with the resourceVersion as precondition; then the lease, right before the
    /// call; then the one submit; then the id, kept in memory until it is in status.
    pub async fn submit(&self, attempt: i32, base: AiAppStatus) -> Result<Action> {
        // The env first: with a Secret of envFrom missing, no marker and no submit.
        let env = match self.env_for_submit(&base).await? {
            Ok(env) => env,
            Err(waiting) => return Ok(waiting),
        };
        let ctx = self.ctx;
        // Taken before the marker: waiting for the budget must not eat into the lease.
        ctx.budgets
            .for_key(&self.resolved.credentials.access_key)
            .acquire()
            .await;
        let prefix = self.name_prefix(attempt);
        let marker = transition::marker(&base, attempt, &prefix, Timestamp::now());
        let marked = self.effects.write(self.app, &marker).await?;
        let before = current(&marked);
        if !ctx.may_submit() {
            let t = transition::not_sent(&before, attempt, Timestamp::now());
            return self.effects.carry_out(&marked, t, Duration::MAX).await;
        }
        let request = SubmitRequest::with_env(&marked.spec, &prefix, env);
        let answer = self.dataforest.submit(&request).await;
        let now = Timestamp::now();
        let t = match &answer {
            Ok(response) => {
                ctx.memory.update(&self.effects.uid, |m| {
                    m.unwritten = Some(UnwrittenId {
                        attempt,
                        response: response.clone(),
                    })
                });
                ctx.refusals.accepted(&self.key);
                transition::submitted(&before, attempt, response, now)
            }
            Err(error) => {
                self.note_refusal(error);
                transition::submit_failed(&before, attempt, error, now)
            }
        };
        let status = t.status.clone();
        let action = self.effects.carry_out(&marked, t, Duration::MAX).await;
        if action.is_ok() {
            ctx.memory.update(&self.effects.uid, |m| m.unwritten = None);
            self.observe_transition(&marked, before.phase, &status);
        }
        action
    }

    /// Takes `id` as the current attempt's app.
    pub async fn adopt(&self, id: &str, reason: &str, note: &str) -> Result<Action> {
        let t = transition::adopted(
            &self.before,
            id,
            reason,
            note,
            &self.name_prefix(crate::attempts::next_number(&self.before)),
            Timestamp::now(),
        );
        self.effects.carry_out(self.app, t, Duration::MAX).await
    }

    /// A documented 401/403 refuses the key for every AiApp that uses it.
    pub fn note_refusal(&self, error: &crate::dataforest::ApiError) {
        if error.is_unauthorized() {
            self.ctx.refusals.refuse(
                self.key.clone(),
                error.reason(),
                error.to_string(),
                self.ctx.config.poll_ceiling,
            );
        }
    }

    /// What a failed read leads to: reads of a submitted app are retried at the poll
    /// ceiling even when the answer looked permanent, never parked for good.
    pub fn keep_following(&self, next: Next) -> Next {
        match next {
            Next::Park => Next::After(self.ctx.config.poll_ceiling),
            other => other,
        }
    }
}
