//! Following a submitted app: getDetail on the back-off schedule (or, with
//! `--polls-for-listing` and an account whose apps are polled often, one shared getList a
//! second while the app stays as recorded), the phase and Events that follow from its
//! state, "not found" within its grace period, and a look for late apps of earlier attempts
//! whose outcome stayed unknown (a second live app is killed).

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::Result;
use super::apply::StepRun;
use tracing::warn;

use crate::attempts;
use crate::crd::{AiApp, AiAppStatus, AttemptOutcome, KillCause, Phase};
use crate::dataforest::{AppDetail, name_prefix};
use crate::job;
use crate::plan::{self, RecoveryContext};
use crate::status::{self, condition};
use crate::transition::{self, Next, Note, Retry, Transition};

impl StepRun<'_> {
    pub async fn poll(&self, id: &str) -> Result<Action> {
        if let Some(action) = self.unchanged_in_listing(id).await {
            return Ok(action);
        }
        let ctx = self.ctx;
        let uid = self.effects.uid.as_str();
        let now = Timestamp::now();
        let detail = match self.dataforest.get_detail(id).await {
            Ok(detail) => detail,
            Err(error) if error.is_not_found() => {
                let since = ctx
                    .memory
                    .update(uid, |m| *m.not_found_since.get_or_insert(now));
                let t =
                    transition::not_found(&self.before, id, since, ctx.config.not_found_grace, now);
                return self.effects.carry_out(self.app, t, Duration::MAX).await;
            }
            Err(error) => {
                self.note_refusal(&error);
                let mut t = transition::call_failed(&self.before, &error, now);
                t.next = self.keep_following(t.next);
                return self.effects.carry_out(self.app, t, Duration::MAX).await;
            }
        };
        ctx.refusals.accepted(&self.key);
        let confirmed = ctx.memory.update(uid, |m| {
            m.not_found_since = None;
            m.undefined_seen.as_deref() == Some(id)
        });
        let spec = &self.app.spec;
        let killed_by = attempts::current(&self.before).and_then(|a| a.killed_by);
        if !detail.is_terminal() {
            if killed_by.is_some() {
                // Decided earlier (maybe by an operator since restarted): sent again until
                // the app shows ended.
                self.kill_for_job(id).await;
            } else if let Some(t) = self.kill_decision(id, &detail, now) {
                let written = self.effects.write(self.app, &t.status).await?;
                if let Some(note) = &t.note {
                    self.effects.publish(&written, note);
                }
                self.kill_for_job(id).await;
                return Ok(self.effects.next(&Next::Soon, Duration::MAX));
            }
        }
        let retry = job::retry(spec, job::failures(&self.before) + 1, &self.before, now).map(
            |(number, at)| Retry {
                number,
                limit: spec.backoff_limit,
                at,
            },
        );
        let mut t = transition::polled(&self.before, id, &detail, confirmed, retry, now);
        let unchanged = !detail.is_terminal()
            && t.status.state == self.before.state
            && t.status.final_status == self.before.final_status;
        let listing_on = ctx.config.polls_for_listing > 0;
        if let (true, true, Some(account_id)) =
            (listing_on, unchanged, self.resolved.account_id.as_deref())
        {
            self.ctx
                .listings
                .found_unchanged(&self.listing_key(account_id));
        }
        if t.next == Next::ReadAgain {
            ctx.memory
                .update(uid, |m| m.undefined_seen = Some(id.to_owned()));
        }
        let late = self.late_apps(&mut t.status).await;
        let phase_before = self.before.phase;
        let written = self.effects.write(self.app, &t.status).await?;
        if let Some(note) = &t.note {
            self.effects.publish(&written, note);
        }
        for note in late {
            self.effects.publish(&written, &note);
        }
        self.observe_transition(self.app, phase_before, &t.status);
        Ok(self.follow_up(&t.next, &t.status, killed_by))
    }

    /// When to poll again after a poll that left `status`: a deadline ahead shortens the
    /// wait, so that it fires on time, and never lengthens it.
    fn follow_up(&self, next: &Next, status: &AiAppStatus, killed_by: Option<KillCause>) -> Action {
        let until_deadline = match killed_by {
            None if !status.phase.is_some_and(Phase::is_terminal) => {
                job::until_next(&self.app.spec, status, Timestamp::now())
            }
            _ => None,
        };
        let Some(until_deadline) = until_deadline else {
            return self.effects.next(next, Duration::MAX);
        };
        // A deadline due now is looked at again shortly, not in a busy loop.
        let cap = until_deadline.max(Duration::from_millis(200));
        let poll_min = self.ctx.config.poll_min;
        match next {
            Next::Soon => self.effects.hold(poll_min.min(cap), Some(poll_min)),
            Next::After(wait) => self.effects.hold((*wait).min(cap), None),
            _ => self.effects.next(next, cap),
        }
    }

    /// With an account's apps polled often (`--polls-for-listing`) and mostly finding
    /// nothing new, one shared getList a second stands in for their getDetail calls: when
    /// it shows app `id` live, in the state and final status that status last recorded,
    /// there is nothing to write, and the app is polled again on its back-off. Anything
    /// else (a change, an app not listed, a kill to send, a deadline that fired, an earlier
    /// attempt that may have a late app, a recent "not found") returns `None`, and
    /// getDetail decides as before.
    async fn unchanged_in_listing(&self, id: &str) -> Option<Action> {
        if self.ctx.config.polls_for_listing == 0 {
            return None;
        }
        let account_id = self.resolved.account_id.as_deref()?;
        let key = self.listing_key(account_id);
        if !self
            .ctx
            .listings
            .polled_often(&key, self.ctx.config.polls_for_listing)
        {
            return None;
        }
        let before = &self.before;
        let spec = &self.app.spec;
        let killing = attempts::current(before).is_some_and(|a| a.killed_by.is_some());
        let late_app_possible = before
            .attempts
            .iter()
            .any(|a| a.id.is_none() && a.outcome.may_have_unknown_app());
        let memory = self.ctx.memory.get(&self.effects.uid);
        if spec.suspend || killing || late_app_possible || memory.not_found_since.is_some() {
            return None;
        }
        let listing = self.ctx.listings.list(key, self.dataforest.as_ref()).await;
        let listed = listing
            .apps
            .as_ref()
            .ok()?
            .iter()
            .find(|app| app.id.as_deref() == Some(id))?;
        let (state, final_status) = (listed.state.as_deref(), listed.final_status.as_deref());
        let as_recorded = state.is_some()
            && state == before.state.as_deref()
            && final_status == before.final_status.as_deref();
        let seen = status::phase_of(state, final_status);
        if !as_recorded || seen.is_terminal() || before.phase != Some(seen) {
            return None;
        }
        if job::fired(spec, before, seen, Timestamp::now()).is_some() {
            return None;
        }
        self.ctx.refusals.accepted(&self.key);
        self.ctx
            .listings
            .found_unchanged(&self.listing_key(account_id));
        Some(self.follow_up(&Next::Backoff, before, None))
    }

    /// Whether `spec.suspend` or a deadline ends the live app `id` now (getDetail just said
    /// `detail`): the status that records the decision before the kill is sent.
    fn kill_decision(&self, id: &str, detail: &AppDetail, now: Timestamp) -> Option<Transition> {
        let spec = &self.app.spec;
        if spec.suspend {
            return Some(transition::kill_decided(
                &self.before,
                id,
                KillCause::Suspend,
                None,
                now,
            ));
        }
        let seen = status::phase_of(detail.state.as_deref(), detail.final_status.as_deref());
        let fired = job::fired(spec, &self.before, seen, now)?;
        Some(transition::kill_decided(
            &self.before,
            id,
            fired.cause,
            Some(&fired),
            now,
        ))
    }

    /// Sends kill for the app a suspend or a deadline ends: at once, then again every
    /// [`super::cleanup::KILL_AGAIN_AFTER`] while it shows live. A failed kill is sent again
    /// on the next poll.
    async fn kill_for_job(&self, id: &str) {
        let uid = self.effects.uid.as_str();
        let last = self.ctx.memory.get(uid).kills_sent.get(id).copied();
        if last.is_some_and(|at| at.elapsed() < super::cleanup::KILL_AGAIN_AFTER) {
            return;
        }
        match self.dataforest.kill(id).await {
            Ok(_) => self.ctx.memory.update(uid, |m| {
                m.kills_sent
                    .insert(id.to_owned(), tokio::time::Instant::now());
            }),
            Err(error) => {
                warn!(aiapp = %self.app.name_any(), app_id = %id, %error, "kill failed; sent again on the next poll")
            }
        }
    }

    /// Earlier attempts whose outcome stayed unknown may have made an app that is listed
    /// only now, while this AiApp follows another: a second live app. It is recorded on its
    /// attempt and killed when its name prefix is certainly this AiApp's (derived from its
    /// uid, and no other AiApp looks for it); otherwise a Warning names it.
    async fn late_apps(&self, status: &mut AiAppStatus) -> Vec<Note> {
        let open: Vec<i32> = status
            .attempts
            .iter()
            .filter(|a| a.id.is_none() && a.outcome.may_have_unknown_app())
            .map(|a| a.attempt)
            .collect();
        let Some(account_id) = self
            .resolved
            .account_id
            .clone()
            .filter(|_| !open.is_empty())
        else {
            return Vec::new();
        };
        let listing = self.listing(&account_id).await;
        let Ok(apps) = &listing.apps else {
            return Vec::new();
        };
        let claimed = self.ctx.claimed_ids(&self.effects.uid);
        let prefixes: HashSet<&str> = status
            .attempts
            .iter()
            .filter(|a| open.contains(&a.attempt))
            .map(|a| a.name_prefix.as_str())
            .collect();
        let rivals = self.ctx.rivals(&self.effects.uid, &prefixes);
        let context = RecoveryContext {
            attempts: &status.attempts,
            claimed: &claimed,
            rivals,
            listed_at: listing.listed_at,
            grace: self.ctx.config.recovery_grace,
            max_automatic_resubmits: 0,
        };
        let found = plan::candidates(&context, apps);
        let (name, uid) = (self.app.name_any(), self.app.metadata.uid.clone());
        let newest = status.attempts.iter().map(|a| a.attempt).max().unwrap_or(1);
        let mut notes = Vec::new();
        for id in found {
            // The attempt whose prefix names the app; with a prefix the user set, every
            // attempt carries it and the oldest open one takes the app.
            let app_name = apps
                .iter()
                .find(|a| a.id.as_deref() == Some(id.as_str()))
                .and_then(|a| a.name.clone())
                .unwrap_or_default();
            let named = |a: &&mut crate::crd::AttemptRecord| {
                plan::carries_prefix(&app_name, &a.name_prefix)
            };
            let Some(record) = status
                .attempts
                .iter_mut()
                .filter(|a| open.contains(&a.attempt) && a.id.is_none())
                .find(named)
            else {
                continue;
            };
            record.id = Some(id.as_str().into());
            record.outcome = AttemptOutcome::Duplicate;
            let attempt = record.attempt;
            let derived =
                name_prefix::is_derived(&name, uid.as_deref(), newest, &record.name_prefix);
            let certain = derived && rivals == 0;
            notes.push(if certain && self.dataforest.kill(&id).await.is_ok() {
                Note::warning(
                    "DuplicateKilled",
                    format!(
                        "killed app {id}: a second app of this AiApp, made by attempt {attempt} and listed only \
                         after a later attempt started"
                    ),
                )
            } else {
                Note::warning(
                    "DuplicateFound",
                    format!(
                        "app {id} may be a second app of this AiApp (attempt {attempt}, listed late); it was not \
                         killed: check it with `dataforest-operator apps get {id}` and kill it with \
                         `dataforest-operator apps kill {id} --yes` if it is"
                    ),
                )
            });
        }
        notes
    }

    /// Feeds the create-to-Accepted and Accepted-to-Running histograms.
    pub(super) fn observe_transition(
        &self,
        app: &AiApp,
        before: Option<Phase>,
        status: &AiAppStatus,
    ) {
        let seconds_since = |t: Timestamp| {
            Timestamp::now()
                .duration_since(t)
                .max(SignedDuration::ZERO)
                .as_secs_f64()
        };
        let entered = |phase| before != Some(phase) && status.phase == Some(phase);
        let accepted_now = entered(Phase::Accepted)
            || (entered(Phase::Running) && before != Some(Phase::Accepted));
        if let (true, Some(created)) = (accepted_now, &app.meta().creation_timestamp) {
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
}
