//! Leader election against the real apiserver: two candidates, handover on release,
//! a lease taken from under a leader, renewals refused, and a dead holder's lease.

use std::time::Duration;

use anyhow::{Context, Result};
use dataforest_operator::leader::{LeaderElector, Leadership, LeaseConfig};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use libtest_mimic::Failed;
use tokio::time::{Instant, sleep, timeout};

use crate::fixture::{self, ensure};

const LEASE: &str = "dataforest-operator";
const LEASE_DURATION: Duration = Duration::from_secs(3);
/// For tests that tell an early handover from one at expiry: long enough that a loaded
/// machine's delays cannot blur the two.
const LONG_LEASE: Duration = Duration::from_secs(12);
/// Slack for what a busy 2-core machine may add to an expected event.
const SLACK: Duration = Duration::from_secs(5);

fn config(namespace: &str, identity: &str) -> LeaseConfig {
    config_lasting(namespace, identity, LEASE_DURATION)
}

fn config_lasting(namespace: &str, identity: &str, lease_duration: Duration) -> LeaseConfig {
    LeaseConfig {
        lease_duration,
        renew_every: Duration::from_millis(500),
        retry_every: Duration::from_millis(250),
        ..LeaseConfig::new(namespace, LEASE, identity)
    }
}

/// Starts a candidate and waits until it leads.
async fn leading(
    client: &kube::Client,
    namespace: &str,
    identity: &str,
    lease_duration: Duration,
) -> Result<(LeaderElector, Leadership)> {
    let config = config_lasting(namespace, identity, lease_duration);
    let elector = LeaderElector::start(client.clone(), config);
    let leadership = elector.leadership();
    timeout(SLACK, leadership.acquired())
        .await
        .with_context(|| format!("{identity} never led"))?;
    Ok((elector, leadership))
}

async fn lease(api: &Api<Lease>) -> Result<(Option<String>, i32)> {
    let spec = api.get(LEASE).await?.spec.unwrap_or_default();
    Ok((spec.holder_identity, spec.lease_transitions.unwrap_or(0)))
}

pub fn only_one_of_two_candidates_leads() -> Result<(), Failed> {
    fixture::run("only_one_of_two_candidates_leads", |ctx| async move {
        let a = LeaderElector::start(ctx.client.clone(), config(&ctx.namespace, "pod-a"));
        let b = LeaderElector::start(ctx.client.clone(), config(&ctx.namespace, "pod-b"));
        let (la, lb) = (a.leadership(), b.leadership());
        timeout(SLACK, async {
            tokio::select! { _ = la.acquired() => {}, _ = lb.acquired() => {} }
        })
        .await
        .context("neither candidate became leader")?;
        let (leader, follower, name) = if la.is_leader() {
            (&la, &lb, "pod-a")
        } else {
            (&lb, &la, "pod-b")
        };
        // Watch past two lease durations: the leader must keep renewing and the
        // follower must never take over while it does.
        let watch_until = Instant::now() + 2 * LEASE_DURATION;
        while Instant::now() < watch_until {
            ensure(!(la.is_leader() && lb.is_leader()), || {
                "both candidates lead at once".into()
            })?;
            ensure(leader.is_leader(), || format!("{name} stopped leading"))?;
            sleep(Duration::from_millis(50)).await;
        }
        ensure(follower.valid_for().is_zero(), || {
            "the follower has a lease".into()
        })?;
        let (holder, _) = lease(&Api::namespaced(ctx.client.clone(), &ctx.namespace)).await?;
        ensure(holder.as_deref() == Some(name), || {
            format!("the Lease names {holder:?}, not {name}")
        })?;
        b.release().await;
        a.release().await;
        Ok(())
    })
}

pub fn a_released_lease_is_taken_over_by_the_other_candidate() -> Result<(), Failed> {
    fixture::run("a_released_lease_is_taken_over", |ctx| async move {
        let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let (a, la) = leading(&ctx.client, &ctx.namespace, "pod-a", LONG_LEASE).await?;
        let b = LeaderElector::start(
            ctx.client.clone(),
            config_lasting(&ctx.namespace, "pod-b", LONG_LEASE),
        );
        let lb = b.leadership();
        ensure(
            timeout(Duration::from_secs(1), lb.acquired())
                .await
                .is_err(),
            || "pod-b led while pod-a held the lease".into(),
        )?;
        let (_, transitions) = lease(&api).await?;

        let released = Instant::now();
        a.release().await;
        ensure(!la.is_leader(), || {
            "pod-a still leads after releasing".into()
        })?;
        // Well before the lease pod-a last renewed could have run out on its own.
        let bound = LONG_LEASE - SLACK;
        timeout(bound, lb.acquired())
            .await
            .with_context(|| format!("pod-b did not take over within {bound:?} of the release"))?;
        let took = released.elapsed();
        ensure(took < bound, || format!("the takeover took {took:?}"))?;
        let (holder, now) = lease(&api).await?;
        ensure(holder.as_deref() == Some("pod-b"), || {
            format!("the Lease names {holder:?}")
        })?;
        ensure(now == transitions + 1, || {
            format!("leaseTransitions went {transitions} -> {now}")
        })?;
        ensure(
            timeout(Duration::from_millis(100), la.lost())
                .await
                .is_err(),
            || "a release was reported as a loss".into(),
        )?;
        b.release().await;
        Ok(())
    })
}

pub fn a_leader_whose_lease_is_taken_learns_it_lost() -> Result<(), Failed> {
    fixture::run(
        "a_leader_whose_lease_is_taken_learns_it_lost",
        |ctx| async move {
            let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
            let (a, la) = leading(&ctx.client, &ctx.namespace, "pod-a", LONG_LEASE).await?;
            // What the leader gauge is fed: leading now, then not once the lease is taken.
            let (report, mut reported) = tokio::sync::mpsc::unbounded_channel();
            la.report_to(move |leading| {
                let _ = report.send(leading);
            });
            let first = timeout(SLACK, reported.recv()).await?;
            ensure(first == Some(true), || {
                format!("the gauge was first fed {first:?}, not leading")
            })?;
            // No resourceVersion: the intruder wins whatever pod-a wrote last. MicroTime, as
            // the apiserver refuses a renewTime with more than six fractional digits.
            let intruder = serde_json::json!({"spec": {
                "holderIdentity": "intruder",
                "renewTime": MicroTime(Timestamp::now()),
                "leaseDurationSeconds": 60,
            }});
            api.patch(LEASE, &PatchParams::default(), &Patch::Merge(&intruder))
                .await?;
            // pod-a notices at its next renew, long before its own validity could run out.
            timeout(LONG_LEASE - SLACK, la.lost())
                .await
                .context("pod-a never learned it lost the lease")?;
            ensure(la.valid_for().is_zero(), || {
                format!("valid_for is {:?}", la.valid_for())
            })?;
            ensure(!la.is_leader(), || "pod-a still leads".into())?;
            // Renewals in between were not reported: the next report is the loss.
            let next = timeout(SLACK, reported.recv()).await?;
            ensure(next == Some(false), || {
                format!("after the loss the gauge was fed {next:?}, not 0")
            })?;
            a.release().await;
            let (holder, _) = lease(&api).await?;
            ensure(holder.as_deref() == Some("intruder"), || {
                format!("releasing cleared a lease that was not ours: {holder:?}")
            })?;
            Ok(())
        },
    )
}

/// A dead holder's lease, renewed last by a clock an hour behind or an hour ahead of ours:
/// either way it is taken once it stayed unchanged for a lease duration in our sight,
/// never earlier (client-go's rule; the holder's wall clock decides nothing).
pub fn a_dead_holders_lease_is_taken_a_lease_duration_after_it_was_first_seen() -> Result<(), Failed>
{
    fixture::run("a_dead_holders_lease_is_taken", |ctx| async move {
        let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        for skew in [
            SignedDuration::from_hours(-1),
            SignedDuration::from_hours(1),
        ] {
            let renewed = Timestamp::now() + skew;
            let dead: Lease = serde_json::from_value(serde_json::json!({
                "metadata": {"name": LEASE},
                "spec": {
                    "holderIdentity": "dead-pod",
                    "acquireTime": renewed,
                    "renewTime": renewed,
                    "leaseDurationSeconds": 3,
                    "leaseTransitions": 5,
                },
            }))?;
            api.create(&PostParams::default(), &dead).await?;
            let started = Instant::now();
            let a = LeaderElector::start(ctx.client.clone(), config(&ctx.namespace, "pod-a"));
            let la = a.leadership();
            timeout(LEASE_DURATION + Duration::from_secs(15), la.acquired())
                .await
                .with_context(|| format!("pod-a never took the lease renewed at {renewed}"))?;
            let waited = started.elapsed();
            ensure(waited >= LEASE_DURATION, || {
                format!(
                    "pod-a took a lease renewed at {renewed} after {waited:?}, before a lease duration"
                )
            })?;
            let spec = api.get(LEASE).await?.spec.unwrap_or_default();
            ensure(spec.holder_identity.as_deref() == Some("pod-a"), || {
                format!("the Lease names {:?}", spec.holder_identity)
            })?;
            ensure(spec.lease_transitions == Some(6), || {
                format!("leaseTransitions is {:?}, not 6", spec.lease_transitions)
            })?;
            a.release().await;
            api.delete(LEASE, &DeleteParams::default()).await?;
        }
        Ok(())
    })
}

pub fn a_leader_that_cannot_renew_loses_when_its_lease_runs_out() -> Result<(), Failed> {
    fixture::run("a_leader_that_cannot_renew_loses", |ctx| async move {
        let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let (a, la) = leading(&ctx.client, &ctx.namespace, "pod-a", LEASE_DURATION).await?;
        let refusal = RefuseLeaseUpdates::install(&ctx.client, &ctx.namespace).await?;
        let refused = Instant::now();
        // The policy takes effect within about a second; then no renew lands and the
        // lease runs out one duration after the last that did.
        let outcome = timeout(LEASE_DURATION + Duration::from_secs(3), la.lost()).await;
        let took = refused.elapsed();
        refusal.remove().await?;
        outcome.with_context(|| format!("pod-a still led {took:?} after renewals were refused"))?;
        ensure(!la.is_leader(), || "pod-a still leads".into())?;
        let (holder, _) = lease(&api).await?;
        ensure(holder.as_deref() == Some("pod-a"), || {
            format!("the loss came from elsewhere: the Lease names {holder:?}")
        })?;
        a.release().await;
        Ok(())
    })
}

/// A ValidatingAdmissionPolicy that refuses every Lease update in one namespace, so
/// renewals fail the way they would with the apiserver out of reach.
struct RefuseLeaseUpdates {
    client: kube::Client,
    name: String,
}

impl RefuseLeaseUpdates {
    async fn install(client: &kube::Client, namespace: &str) -> Result<Self> {
        let name = format!("refuse-lease-updates-{namespace}");
        let policy: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": ["coordination.k8s.io"], "apiVersions": ["v1"],
                    "operations": ["UPDATE"], "resources": ["leases"],
                }]},
                "validations": [{"expression": "false", "message": "renewals refused by the test"}],
            },
        }))?;
        let binding: ValidatingAdmissionPolicyBinding =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {
                    "policyName": name,
                    "validationActions": ["Deny"],
                    "matchResources": {"namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace},
                    }},
                },
            }))?;
        let pp = PostParams::default();
        Api::<ValidatingAdmissionPolicy>::all(client.clone())
            .create(&pp, &policy)
            .await?;
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .create(&pp, &binding)
            .await?;
        Ok(RefuseLeaseUpdates {
            client: client.clone(),
            name,
        })
    }

    async fn remove(self) -> Result<()> {
        let dp = DeleteParams::default();
        Api::<ValidatingAdmissionPolicyBinding>::all(self.client.clone())
            .delete(&self.name, &dp)
            .await?;
        Api::<ValidatingAdmissionPolicy>::all(self.client)
            .delete(&self.name, &dp)
            .await?;
        Ok(())
    }
}
