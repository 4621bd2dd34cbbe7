//! Deletion of an AiApp: with `deletionPolicy: Kill`, kill a live app and wait until
//! Data Forest shows it ended, within a bound; then release the finalizer.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::warn;

use super::{Context, Error, Result};
use crate::crd::{AiApp, DeletionPolicy};
use crate::plan::{self, Recovery};

pub(super) async fn cleanup(app: Arc<AiApp>, ctx: &Context, _api: &Api<AiApp>) -> Result<Action> {
    let key = ObjectRef::from_obj(app.as_ref());
    let status = app.status.clone().unwrap_or_default();
    let released = || {
        ctx.forget(&key);
        Ok(Action::await_change())
    };
    let live = !status.phase.is_some_and(|phase| phase.is_terminal());
    if app.spec.deletion_policy == DeletionPolicy::Orphan {
        if let (Some(id), true) = (&status.id, live) {
            let note = format!("left app {id} running on Data Forest (deletionPolicy Orphan)");
            ctx.event(&app, EventType::Normal, "Orphaned", note).await;
        }
        return released();
    }
    if !live || (status.id.is_none() && status.submission.is_none()) {
        return released();
    }
    let what = status
        .id
        .clone()
        .or_else(|| {
            status
                .submission
                .as_ref()
                .map(|m| format!("with name prefix {}", m.name_prefix))
        })
        .unwrap_or_default();

    // The Secret may be gone already (a namespace deletion removes both): fall back to
    // the last credentials that worked for this AiApp.
    let resolved = match super::apply::resolve_credentials(&app, ctx).await {
        Ok(resolved) => Some(resolved),
        Err(_) => ctx.remembered_credentials(&key),
    };
    let Some(resolved) = resolved else {
        let note =
            format!("released without killing app {what}: no credentials to call Data Forest with");
        ctx.event(&app, EventType::Warning, "KillSkipped", note)
            .await;
        return released();
    };
    // The bound is checked only after a kill was tried (below), so an operator that
    // was down for longer than the bound still kills before it gives up.
    let timed_out = past_bound(&app, ctx.config.deletion_bound);
    let dataforest = ctx.dataforest(&resolved)?;

    let id = match status.id.clone() {
        Some(id) => id,
        // Deleted while Submitting: find the app first, or it would run on unowned.
        None => {
            let marker = status
                .submission
                .clone()
                .unwrap_or_else(|| unreachable!("checked above"));
            let Some(account_id) = resolved.account_id.as_deref() else {
                let note = format!(
                    "released without killing app {what}: the Secret has no accountId to look it up"
                );
                ctx.event(&app, EventType::Warning, "KillSkipped", note)
                    .await;
                return released();
            };
            let listed = match dataforest.list(account_id).await {
                Ok(listed) => listed,
                Err(error) if timed_out => {
                    warn!(aiapp = %key, %error, "listing apps to find the one to kill");
                    return give_up(&app, ctx, &key, &what).await;
                }
                Err(error) => {
                    warn!(aiapp = %key, %error, "listing apps to find the one to kill");
                    return Err(Error::AwaitingKill { id: what });
                }
            };
            let claimed = ctx.claimed_ids(&key);
            let rivals = ctx.rivals(&key, &marker.name_prefix);
            match plan::recover(
                &marker,
                &listed,
                &claimed,
                rivals,
                Timestamp::now(),
                ctx.config.recovery_grace,
            ) {
                Recovery::Adopt(id) => id,
                Recovery::Wait if timed_out => return give_up(&app, ctx, &key, &what).await,
                Recovery::Wait => return Err(Error::AwaitingKill { id: what }),
                Recovery::Resubmit => return released(),
                Recovery::Ambiguous(ids) => {
                    let note = format!(
                        "released without killing: apps {} all match {what}",
                        ids.join(", ")
                    );
                    ctx.event(&app, EventType::Warning, "KillSkipped", note)
                        .await;
                    return released();
                }
            }
        }
    };

    match dataforest.get_detail(&id).await {
        Err(error) if error.is_not_found() => released(),
        Ok(detail) if detail.is_terminal() => released(),
        Ok(_live) => {
            // The app is live (terminal states released above). Kill it, and again only
            // now and then: Data Forest may take a while to show a killed app ended.
            if ctx.kill_due(&key) {
                match dataforest.kill(&id).await {
                    Ok(_) => {
                        let note = format!("killing app {id} before the AiApp goes");
                        ctx.event(&app, EventType::Normal, "Killing", note).await;
                    }
                    Err(error) if error.is_not_found() => return released(),
                    Err(error) => {
                        warn!(aiapp = %key, %error, app_id = %id, "kill failed; retrying")
                    }
                }
            }
            if timed_out {
                return give_up(&app, ctx, &key, &id).await;
            }
            Err(Error::AwaitingKill { id })
        }
        Err(error) if timed_out => {
            warn!(aiapp = %key, %error, app_id = %id, "reading the app before killing it");
            give_up(&app, ctx, &key, &id).await
        }
        Err(error) => {
            warn!(aiapp = %key, %error, app_id = %id, "reading the app before killing it");
            Err(Error::AwaitingKill { id })
        }
    }
}

/// Releases the AiApp past the deletion bound, with a Warning naming the app.
async fn give_up(app: &AiApp, ctx: &Context, key: &ObjectRef<AiApp>, id: &str) -> Result<Action> {
    let note = format!(
        "released after waiting {:?} for app {id} to end; it may still run on Data Forest",
        ctx.config.deletion_bound
    );
    ctx.event(app, EventType::Warning, "KillTimedOut", note)
        .await;
    ctx.forget(key);
    Ok(Action::await_change())
}

fn past_bound(app: &AiApp, bound: Duration) -> bool {
    let Some(deleted) = app.metadata.deletion_timestamp.as_ref() else {
        return false;
    };
    let bound = SignedDuration::try_from(bound).unwrap_or(SignedDuration::MAX);
    Timestamp::now().duration_since(deleted.0) > bound
}
