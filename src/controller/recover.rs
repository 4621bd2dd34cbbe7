//! Recovery: after a submit whose outcome is unknown, look for its app in getList (one
//! answer shared by the account's AiApps), adopt one match, wait out the grace, submit
//! again a bounded number of times, or stop in Unknown naming every candidate.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;

use super::Result;
use super::apply::StepRun;
use super::listing::{Listing, ListingKey};
use crate::attempts;
use crate::crd::AttemptRecord;
use crate::plan::{self, Recovery, RecoveryContext};
use crate::transition::{self, Next};

impl StepRun<'_> {
    /// Recovery looks more often than polls, so that it decides soon after the grace.
    fn recovery_backoff_cap(&self) -> Duration {
        self.ctx.config.recovery_grace / 4
    }

    /// The account's latest listing, shared with its other AiApps.
    pub(super) async fn listing(&self, account_id: &str) -> Listing {
        let key = self.listing_key(account_id);
        self.ctx.listings.list(key, self.dataforest.as_ref()).await
    }

    /// Which listing serves this AiApp's account.
    pub(super) fn listing_key(&self, account_id: &str) -> ListingKey {
        ListingKey {
            endpoint: self.resolved.endpoint.clone(),
            access_key: self.resolved.credentials.access_key.clone(),
            account_id: account_id.to_owned(),
        }
    }

    /// What recovery knows besides the listing.
    fn recovery_context<'s>(
        &'s self,
        claimed: &'s HashSet<String>,
        listing: &Listing,
    ) -> RecoveryContext<'s> {
        let prefixes: HashSet<&str> = self
            .before
            .attempts
            .iter()
            .filter(|a| a.outcome.may_have_unknown_app())
            .map(|a| a.name_prefix.as_str())
            .collect();
        RecoveryContext {
            attempts: &self.before.attempts,
            claimed,
            rivals: self.ctx.rivals(&self.effects.uid, &prefixes),
            listed_at: listing.listed_at,
            grace: self.ctx.config.recovery_grace,
            max_automatic_resubmits: self.ctx.config.max_automatic_resubmits,
        }
    }

    pub async fn recover(&self, record: &AttemptRecord) -> Result<Action> {
        let now = Timestamp::now();
        let uid = self.effects.uid.as_str();
        let Some(account_id) = self.resolved.account_id.clone() else {
            let why =
                "the credentials Secret has no accountId, so the operator cannot look for the app";
            let t = transition::ambiguous(&self.before, uid, &[], why, now);
            return self.effects.carry_out(self.app, t, Duration::MAX).await;
        };
        let listing = self.listing(&account_id).await;
        let apps = match &listing.apps {
            Ok(apps) => apps.clone(),
            Err(error) => {
                self.note_refusal(error);
                let mut t = transition::call_failed(&self.before, error, now);
                t.next = self.keep_following(t.next);
                return self
                    .effects
                    .carry_out(self.app, t, self.recovery_backoff_cap())
                    .await;
            }
        };
        let claimed = self.ctx.claimed_ids(uid);
        let context = self.recovery_context(&claimed, &listing);
        let grace = dataforest_common::duration::display(self.ctx.config.recovery_grace);
        match plan::recover(&context, &apps) {
            Recovery::Adopt(id) => {
                let note = format!(
                    "found app {id} of attempt {}, whose submit answer was lost",
                    record.attempt
                );
                self.adopt(&id, "Recovered", &note).await
            }
            Recovery::Wait => {
                let t = transition::keep_looking(&self.before);
                self.effects
                    .carry_out(self.app, t, self.recovery_backoff_cap())
                    .await
            }
            Recovery::Resubmit => {
                let base = transition::given_up(&self.before, record.attempt);
                self.submit(attempts::next_number(&base), base).await
            }
            Recovery::Exhausted => {
                let why = format!(
                    "no app was listed within {grace} of attempt {}'s submit, and the operator already submitted \
                     again on its own {} time(s) (--max-automatic-resubmits)",
                    record.attempt,
                    attempts::automatic_resubmits(&self.before.attempts)
                );
                let t = transition::ambiguous(&self.before, uid, &[], &why, now);
                self.effects.carry_out(self.app, t, Duration::MAX).await
            }
            Recovery::Ambiguous(ids) => {
                let why = format!("apps {} may each be this AiApp's", ids.join(", "));
                let t = transition::ambiguous(&self.before, uid, &ids, &why, now);
                self.effects.carry_out(self.app, t, Duration::MAX).await
            }
        }
    }

    /// In Unknown, waiting for a person: keep the candidate apps in status current (an
    /// app listed late shows up there), at the poll ceiling; never adopt or submit.
    pub async fn refresh_candidates(&self, record: &AttemptRecord) -> Result<Action> {
        let Some(account_id) = self.resolved.account_id.clone() else {
            return Ok(self.effects.park());
        };
        let listing = self.listing(&account_id).await;
        let Ok(apps) = &listing.apps else {
            return Ok(self.effects.hold(self.ctx.config.poll_ceiling, None));
        };
        let claimed = self.ctx.claimed_ids(&self.effects.uid);
        let found = plan::candidates(&self.recovery_context(&claimed, &listing), apps);
        let mut status = self.before.clone();
        let known = &record.candidates;
        let new: Vec<String> = found
            .into_iter()
            .filter(|id| !known.iter().any(|k| k == id))
            .collect();
        if new.is_empty() {
            return Ok(self.effects.hold(self.ctx.config.poll_ceiling, None));
        }
        if let Some(current) = attempts::record_mut(&mut status, record.attempt) {
            current
                .candidates
                .extend(new.iter().map(|id| id.as_str().into()));
            current
                .candidates
                .truncate(crate::crd::limits::CANDIDATES_MAX as usize);
            current.outcome = crate::crd::AttemptOutcome::Ambiguous;
        }
        let text = format!(
            "app(s) {} listed since; they may be this AiApp's (attempt {}). A person decides: see status.message",
            new.join(", "),
            record.attempt
        );
        let t = transition::Transition {
            status,
            note: Some(transition::Note::warning("CandidateFound", text)),
            next: Next::After(self.ctx.config.poll_ceiling),
        };
        self.effects.carry_out(self.app, t, Duration::MAX).await
    }
}
