//! Deletion of an AiApp: with `deletionPolicy: Kill`, kill every live app that is this
//! AiApp's and wait until Data Forest shows each ended, within a bound; then release the
//! finalizer. An AiApp deleted before its app id was known first finds its app; one in
//! Unknown kills the candidates that are certainly its own and names the others.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tokio::time::Instant;
use tracing::warn;

use super::effect::{Effects, current};
use super::listing::ListingKey;
use super::{Context, Error, Result};
use crate::crd::{AiApp, AiAppStatus, DeletionPolicy, Phase};
use crate::dataforest::{DataForestApi, name_prefix};
use crate::plan::{self, RecoveryContext};
use crate::transition::Note;

/// Kill is sent again this long after the last one while the app still shows live.
pub(super) const KILL_AGAIN_AFTER: Duration = Duration::from_secs(30);

pub(super) async fn cleanup(app: Arc<AiApp>, ctx: &Context, api: &Api<AiApp>) -> Result<Action> {
    let uid = app.metadata.uid.clone().unwrap_or_default();
    let effects = Effects {
        ctx,
        api,
        uid: uid.clone(),
        fingerprint: None,
    };
    let status = current(&app);
    let answered = ctx.memory.get(&uid).unwritten.and_then(|u| u.response.id);
    // An app that ended (before a retry, or for a suspend) needs no kill.
    let ended = crate::attempts::current(&status).is_some_and(|a| a.ended.is_some());
    let id = status
        .id
        .as_deref()
        .map(str::to_owned)
        .filter(|_| !ended)
        .or(answered);
    let open = status
        .attempts
        .iter()
        .any(|a| a.id.is_none() && a.outcome.may_have_unknown_app());
    let live = !status.phase.is_some_and(Phase::is_terminal);
    let released = || {
        ctx.memory.forget(&uid);
        Ok(Action::await_change())
    };
    if !live || (id.is_none() && !open) {
        return released();
    }
    if app.spec.deletion_policy == DeletionPolicy::Orphan {
        let what = id
            .clone()
            .unwrap_or_else(|| "of this AiApp (its id was never known)".to_owned());
        let note = Note::normal(
            "Orphaned",
            format!("left app {what} running on Data Forest (deletionPolicy Orphan)"),
        );
        effects.publish(&app, &note);
        return released();
    }
    let what = id.clone().unwrap_or_else(|| prefixes_of(&status));
    // The Secret may be gone already (a namespace deletion removes both): fall back to
    // the last credentials that worked for this AiApp.
    let resolved = match super::apply::resolve_credentials(&app, ctx).await {
        Ok(resolved) => Some(resolved),
        Err(_) => ctx.memory.get(&uid).credentials,
    };
    let Some(resolved) = resolved else {
        let note = format!(
            "released without killing app {what}: no credentials to call Data Forest with; {}",
            kill_hint(id.as_deref(), &status)
        );
        effects.publish(&app, &Note::warning("KillSkipped", note));
        return released();
    };
    // The bound is checked only after a kill was tried, so an operator that was down for
    // longer than the bound still kills before it gives up.
    let timed_out = past_bound(&app, ctx.config.deletion_bound);
    let dataforest = ctx.dataforest(&resolved)?;
    let (to_end, left) = match id {
        Some(id) => (vec![id], Vec::new()),
        None => {
            let Some(account_id) = resolved.account_id.clone() else {
                let note = format!(
                    "released without killing app {what}: the Secret has no accountId to look it up; {}",
                    kill_hint(None, &status)
                );
                effects.publish(&app, &Note::warning("KillSkipped", note));
                return released();
            };
            let key = ListingKey {
                endpoint: resolved.endpoint.clone(),
                access_key: resolved.credentials.access_key.clone(),
                account_id,
            };
            match find_apps(&app, &status, ctx, dataforest.as_ref(), key).await {
                Found::Apps { to_end, left } => (to_end, left),
                Found::NotYet if timed_out => return give_up(&app, &effects, &what).await,
                Found::NotYet => return Err(Error::AwaitingKill { id: what }),
                Found::Nothing => return released(),
            }
        }
    };
    let pending = end_each(&app, &effects, dataforest.as_ref(), &to_end).await;
    if !pending.is_empty() {
        if timed_out {
            return give_up(&app, &effects, &pending.join(", ")).await;
        }
        return Err(Error::AwaitingKill {
            id: pending.join(", "),
        });
    }
    if status.phase == Some(Phase::Unknown) || !left.is_empty() {
        say_what_was_done(&app, &effects, &status, &to_end, &left).await?;
    }
    released()
}

/// Apps found for an AiApp deleted before its app id was known.
enum Found {
    Apps {
        to_end: Vec<String>,
        left: Vec<String>,
    },
    /// Nothing listed yet, within the grace: a new app can take a while to show.
    NotYet,
    /// Nothing listed after the grace: no app was made.
    Nothing,
}

async fn find_apps(
    app: &AiApp,
    status: &AiAppStatus,
    ctx: &Context,
    api: &dyn DataForestApi,
    key: ListingKey,
) -> Found {
    let listing = ctx.listings.list(key, api).await;
    let Ok(apps) = &listing.apps else {
        return Found::NotYet;
    };
    let uid = app.metadata.uid.as_deref().unwrap_or_default();
    let claimed = ctx.claimed_ids(uid);
    let prefixes: HashSet<&str> = status
        .attempts
        .iter()
        .map(|a| a.name_prefix.as_str())
        .collect();
    let rivals = ctx.rivals(uid, &prefixes);
    let context = RecoveryContext {
        attempts: &status.attempts,
        claimed: &claimed,
        rivals,
        listed_at: listing.listed_at,
        grace: ctx.config.recovery_grace,
        max_automatic_resubmits: 0,
    };
    // Apps recorded as candidates stay candidates once killed, which the listing alone
    // would no longer show.
    let mut found: Vec<String> = status
        .attempts
        .iter()
        .flat_map(|a| a.candidates.iter().map(|id| id.to_string()))
        .collect();
    for id in plan::candidates(&context, apps) {
        if !found.contains(&id) {
            found.push(id);
        }
    }
    if found.is_empty() {
        let grace =
            SignedDuration::try_from(ctx.config.recovery_grace).unwrap_or(SignedDuration::MAX);
        let latest = status.attempts.last().map(|a| a.started_at.0);
        let grace_over = latest.is_none_or(|at| listing.listed_at.duration_since(at) >= grace);
        return if grace_over {
            Found::Nothing
        } else {
            Found::NotYet
        };
    }
    // Certainly this AiApp's: every prefix it used is derived from its uid, and no other
    // AiApp looks for an app under it.
    let newest = status.attempts.iter().map(|a| a.attempt).max().unwrap_or(1);
    let derived =
        |prefix: &str| name_prefix::is_derived(&app.name_any(), Some(uid), newest, prefix);
    let certain = rivals == 0 && status.attempts.iter().all(|a| derived(&a.name_prefix));
    let single = found.len() == 1 && rivals == 0;
    if certain || single {
        Found::Apps {
            to_end: found,
            left: Vec::new(),
        }
    } else {
        Found::Apps {
            to_end: Vec::new(),
            left: found,
        }
    }
}

/// Kills each live app (again every [`KILL_AGAIN_AFTER`] while it shows live); returns
/// the ids that have not ended yet. "Not found" and "already ended" count as ended.
async fn end_each(
    app: &AiApp,
    effects: &Effects<'_>,
    api: &dyn DataForestApi,
    ids: &[String],
) -> Vec<String> {
    let mut pending = Vec::new();
    for id in ids {
        match api.get_detail(id).await {
            Err(error) if error.is_not_found() => {}
            Ok(detail) if detail.is_terminal() => {}
            Ok(_live) => {
                if kill_due(effects, id) {
                    match api.kill(id).await {
                        Ok(_) => {
                            let note = Note::normal(
                                "Killing",
                                format!("killing app {id} before the AiApp goes"),
                            );
                            effects.publish(app, &note);
                            pending.push(id.clone());
                        }
                        Err(error) if error.is_not_found() => {}
                        Err(error) => {
                            warn!(aiapp = %app.name_any(), %error, app_id = %id, "kill failed; retrying");
                            pending.push(id.clone());
                        }
                    }
                } else {
                    pending.push(id.clone());
                }
            }
            Err(error) => {
                warn!(aiapp = %app.name_any(), %error, app_id = %id, "reading the app before killing it");
                pending.push(id.clone());
            }
        }
    }
    pending
}

/// Whether kill should be sent for `id` now: the first time, or again after a while.
fn kill_due(effects: &Effects<'_>, id: &str) -> bool {
    let now = Instant::now();
    effects
        .ctx
        .memory
        .update(&effects.uid, |m| match m.kills_sent.get(id) {
            Some(last) if now.duration_since(*last) < KILL_AGAIN_AFTER => false,
            _ => {
                m.kills_sent.insert(id.to_owned(), now);
                true
            }
        })
}

/// An AiApp in Unknown, or one whose apps could not all be told apart: its status and a
/// Warning say what deletion killed and what it left running, before it goes.
async fn say_what_was_done(
    app: &AiApp,
    effects: &Effects<'_>,
    status: &AiAppStatus,
    killed: &[String],
    left: &[String],
) -> Result<()> {
    let mut said = Vec::new();
    if !killed.is_empty() {
        said.push(format!("killed app(s) {}", killed.join(", ")));
    }
    if !left.is_empty() {
        said.push(format!(
            "left app(s) {} running: their name prefix may be another AiApp's; kill each with \
             `dataforest-operator apps kill <id> --yes` if it is this one's",
            left.join(", ")
        ));
    }
    if said.is_empty() {
        said.push("no app of this AiApp was found on Data Forest".to_owned());
    }
    let message = format!("deleted: {}", said.join("; "));
    let mut written = status.clone();
    written.message = Some(message.clone());
    effects.write(app, &written).await?;
    let note = if left.is_empty() {
        Note::normal("Deleted", message)
    } else {
        Note::warning("LeftRunning", message)
    };
    effects.publish(app, &note);
    Ok(())
}

/// Releases the AiApp past the deletion bound, with a Warning naming the app(s).
async fn give_up(app: &AiApp, effects: &Effects<'_>, what: &str) -> Result<Action> {
    let note = format!(
        "released after waiting {} for app {what} to end; it may still run on Data Forest (see it with \
         `dataforest-operator apps get <id>`)",
        dataforest_common::duration::display(effects.ctx.config.deletion_bound)
    );
    effects.publish(app, &Note::warning("KillTimedOut", note));
    effects.ctx.memory.forget(&effects.uid);
    Ok(Action::await_change())
}

/// How a person kills what deletion could not, with the real id or name prefixes: once
/// the AiApp is gone, nobody can look them up in its status any more.
fn kill_hint(id: Option<&str>, status: &AiAppStatus) -> String {
    match id {
        Some(id) => format!("kill it with `dataforest-operator apps kill {id} --yes`"),
        None => {
            let finds: Vec<String> = status
                .attempts
                .iter()
                .filter(|a| a.outcome.may_have_unknown_app())
                .map(|a| format!("`dataforest-operator apps list --prefix {}`", a.name_prefix))
                .collect();
            format!(
                "find it with {} and kill it with `dataforest-operator apps kill <id> --yes`",
                finds.join(" or ")
            )
        }
    }
}

/// The name prefixes of the attempts that may have an app nobody knows the id of.
fn prefixes_of(status: &AiAppStatus) -> String {
    let prefixes: Vec<&str> = status
        .attempts
        .iter()
        .filter(|a| a.outcome.may_have_unknown_app())
        .map(|a| a.name_prefix.as_str())
        .collect();
    format!("with name prefix {}", prefixes.join(" or "))
}

fn past_bound(app: &AiApp, bound: Duration) -> bool {
    let Some(deleted) = app.metadata.deletion_timestamp.as_ref() else {
        return false;
    };
    let bound = SignedDuration::try_from(bound).unwrap_or(SignedDuration::MAX);
    Timestamp::now().duration_since(deleted.0) > bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AttemptOutcome, AttemptRecord};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn attempt(number: i32, prefix: &str, outcome: AttemptOutcome) -> AttemptRecord {
        AttemptRecord {
            attempt: number,
            started_at: Time(Timestamp::from_second(1_700_000_000).unwrap()),
            name_prefix: prefix.into(),
            id: None,
            candidates: Vec::new(),
            outcome,
            killed_by: None,
            killed_at: None,
            ended: None,
        }
    }

    #[test]
    fn a_kill_hint_names_the_id_or_every_prefix_that_may_hide_an_app() {
        let status = AiAppStatus {
            attempts: vec![
                attempt(1, "first01", AttemptOutcome::NotCreated),
                attempt(2, "second02", AttemptOutcome::NotListed),
                attempt(3, "third003", AttemptOutcome::Pending),
            ],
            ..AiAppStatus::default()
        };
        assert_eq!(
            kill_hint(Some("abc"), &status),
            "kill it with `dataforest-operator apps kill abc --yes`"
        );
        let hint = kill_hint(None, &status);
        assert!(hint.contains("apps list --prefix second02`"), "{hint}");
        assert!(hint.contains("apps list --prefix third003`"), "{hint}");
        assert!(!hint.contains("first01"), "{hint}");
    }
}
