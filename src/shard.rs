//! Shards: operator instances that split the AiApps by disjoint namespace sets. Each
//! instance's leader-election Lease records the namespaces it claims; an instance that
//! leads first checks the other live Leases of its namespace and does not reconcile while
//! one of them claims a namespace it claims too, so no AiApp is ever handled by two.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams};

/// Label on every Lease that claims namespaces, so instances find each other's claims.
pub const CLAIM_LABEL: &str = "dataforest.dev/namespace-claim";
/// Annotation holding the claimed namespaces, comma-separated, or `*` for all.
pub const NAMESPACES_ANNOTATION: &str = "dataforest.dev/namespaces";

/// The namespaces one instance reconciles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    All,
    Namespaces(BTreeSet<String>),
}

impl Claim {
    /// The claim of an instance watching `namespaces` (all when empty).
    pub fn of(namespaces: &[String]) -> Claim {
        if namespaces.is_empty() {
            Claim::All
        } else {
            Claim::Namespaces(namespaces.iter().cloned().collect())
        }
    }

    /// Reads an annotation's value; `None` when it holds no namespace.
    fn parse(value: &str) -> Option<Claim> {
        if value.trim() == "*" {
            return Some(Claim::All);
        }
        let namespaces: BTreeSet<String> = value
            .split(',')
            .map(str::trim)
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned)
            .collect();
        (!namespaces.is_empty()).then_some(Claim::Namespaces(namespaces))
    }

    /// What both claims cover, or `None` when they are disjoint.
    fn overlap(&self, other: &Claim) -> Option<Claim> {
        match (self, other) {
            (Claim::All, Claim::All) => Some(Claim::All),
            (Claim::All, Claim::Namespaces(ns)) | (Claim::Namespaces(ns), Claim::All) => {
                Some(Claim::Namespaces(ns.clone()))
            }
            (Claim::Namespaces(a), Claim::Namespaces(b)) => {
                let both: BTreeSet<String> = a.intersection(b).cloned().collect();
                (!both.is_empty()).then_some(Claim::Namespaces(both))
            }
        }
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Claim::All => f.write_str("*"),
            Claim::Namespaces(ns) => {
                f.write_str(&ns.iter().map(String::as_str).collect::<Vec<_>>().join(","))
            }
        }
    }
}

/// Another live instance claims some of our namespaces.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the Lease {lease} (held by {holder}) claims {}, which this instance claims too: shards must watch \
     disjoint namespaces; waiting until it no longer does",
    describe(overlap)
)]
pub struct Overlap {
    pub lease: String,
    pub holder: String,
    pub overlap: Claim,
}

fn describe(claim: &Claim) -> String {
    match claim {
        Claim::All => "all namespaces".to_owned(),
        Claim::Namespaces(ns) => format!(
            "namespace{} {}",
            if ns.len() == 1 { "" } else { "s" },
            claim_list(ns)
        ),
    }
}

fn claim_list(namespaces: &BTreeSet<String>) -> String {
    namespaces
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first live Lease other than `own` whose claim overlaps `claim`. A Lease is live
/// while it has a holder and its last renew plus its duration is still ahead of `now`: a
/// shard that stopped (released) or died (expired) claims nothing.
pub fn first_overlap(
    own: &str,
    claim: &Claim,
    leases: &[Lease],
    now: Timestamp,
) -> Option<Overlap> {
    leases.iter().find_map(|lease| {
        let name = lease.metadata.name.as_deref()?;
        if name == own {
            return None;
        }
        let spec = lease.spec.as_ref()?;
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
        let renewed = spec.renew_time.as_ref()?.0;
        let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds?));
        if renewed.checked_add(duration).ok()? <= now {
            return None;
        }
        let theirs = Claim::parse(
            lease
                .metadata
                .annotations
                .as_ref()?
                .get(NAMESPACES_ANNOTATION)?,
        )?;
        let overlap = claim.overlap(&theirs)?;
        Some(Overlap {
            lease: name.to_owned(),
            holder: holder.to_owned(),
            overlap,
        })
    })
}

/// Lists the claiming Leases of the operator's namespace and checks `claim` against them.
pub async fn check(api: &Api<Lease>, own: &str, claim: &Claim) -> Result<(), CheckError> {
    let leases = api
        .list(&ListParams::default().labels(CLAIM_LABEL))
        .await
        .map_err(CheckError::List)?;
    match first_overlap(own, claim, &leases.items, Timestamp::now()) {
        Some(overlap) => Err(CheckError::Overlap(overlap)),
        None => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Overlap(Overlap),
    #[error("could not list the Leases to check namespace claims: {0}")]
    List(kube::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    fn lease(name: &str, holder: &str, renewed_ago_s: i64, claim: &str) -> Lease {
        let now = Timestamp::now();
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some([(NAMESPACES_ANNOTATION.to_owned(), claim.to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_ago_s))),
                lease_duration_seconds: Some(30),
                ..LeaseSpec::default()
            }),
        }
    }

    fn namespaces(list: &[&str]) -> Claim {
        Claim::of(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn disjoint_namespace_sets_do_not_overlap() {
        let leases = [lease("shard-b", "pod-b", 1, "team-c,team-d")];
        let mine = namespaces(&["team-a", "team-b"]);
        assert_eq!(
            first_overlap("shard-a", &mine, &leases, Timestamp::now()),
            None
        );
    }

    #[test]
    fn a_shared_namespace_is_named_with_the_lease_and_its_holder() {
        let leases = [lease("shard-b", "pod-b", 1, "team-b, team-c")];
        let overlap = first_overlap(
            "shard-a",
            &namespaces(&["team-a", "team-b"]),
            &leases,
            Timestamp::now(),
        )
        .unwrap();
        assert_eq!(overlap.overlap, namespaces(&["team-b"]));
        let message = overlap.to_string();
        assert!(
            message.contains("shard-b")
                && message.contains("pod-b")
                && message.contains("namespace team-b"),
            "{message}"
        );
    }

    #[test]
    fn an_instance_of_every_namespace_overlaps_any_shard_both_ways() {
        let all = Claim::All;
        let leases = [lease("shard-b", "pod-b", 1, "team-b")];
        assert!(first_overlap("everything", &all, &leases, Timestamp::now()).is_some());
        let leases = [lease("everything", "pod-x", 1, "*")];
        let overlap = first_overlap(
            "shard-a",
            &namespaces(&["team-a"]),
            &leases,
            Timestamp::now(),
        )
        .unwrap();
        assert_eq!(overlap.overlap, namespaces(&["team-a"]));
    }

    #[test]
    fn released_expired_and_own_leases_claim_nothing() {
        let mine = namespaces(&["team-a"]);
        let released = lease("shard-b", "", 1, "team-a");
        let expired = lease("shard-c", "pod-c", 31, "team-a");
        let own = lease("shard-a", "pod-a2", 1, "team-a");
        let leases = [released, expired, own];
        assert_eq!(
            first_overlap("shard-a", &mine, &leases, Timestamp::now()),
            None
        );
    }

    #[test]
    fn a_claim_reads_back_as_written() {
        for claim in [Claim::All, namespaces(&["b", "a"])] {
            assert_eq!(Claim::parse(&claim.to_string()), Some(claim));
        }
        assert_eq!(Claim::parse(" , "), None);
    }
}
