//! The attempt model, pure: every submit is an attempt with a number that only goes up, a
//! marker time and a name prefix, recorded in `status.attempts[]` with what came of it.
//! The top-level `submission`, `id` and the API's fields describe the current attempt.

use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::crd::limits::ATTEMPTS_MAX;
use crate::crd::{AiAppStatus, AttemptOutcome, AttemptRecord, SubmissionMarker};

/// Brings a status written by an operator without `attempts[]` to the current shape: its
/// marker becomes attempt record, so an AiApp left in Submitting or Unknown by an older
/// version carries on where it stood.
pub fn normalize(status: &mut AiAppStatus) {
    if !status.attempts.is_empty() {
        status.attempt = status.attempts.last().map(|a| a.attempt);
        return;
    }
    let Some(marker) = status.submission.clone() else {
        return;
    };
    let outcome = if status.id.is_some() {
        AttemptOutcome::Created
    } else {
        AttemptOutcome::Pending
    };
    status.attempts.push(AttemptRecord {
        attempt: marker.attempt,
        started_at: marker.started_at,
        name_prefix: marker.name_prefix,
        id: status.id.clone(),
        candidates: Vec::new(),
        outcome,
        killed_by: None,
        killed_at: None,
        ended: None,
    });
    status.attempt = Some(marker.attempt);
}

/// The latest attempt, if any.
pub fn current(status: &AiAppStatus) -> Option<&AttemptRecord> {
    status.attempts.last()
}

/// The number the next attempt gets: one above every number used so far.
pub fn next_number(status: &AiAppStatus) -> i32 {
    let recorded = status.attempts.iter().map(|a| a.attempt).max();
    let marked = status.submission.as_ref().map(|m| m.attempt);
    recorded.max(marked).unwrap_or(0).saturating_add(1)
}

/// Starts attempt `attempt`: its marker and a Pending record. Earlier records that can
/// have no app are dropped, oldest first, once the list is full.
pub fn begin(status: &mut AiAppStatus, attempt: i32, name_prefix: &str, now: Timestamp) {
    status.submission = Some(SubmissionMarker {
        attempt,
        started_at: crate::status::status_time(now),
        name_prefix: name_prefix.into(),
    });
    status.attempt = Some(attempt);
    status.attempts.push(AttemptRecord {
        attempt,
        started_at: crate::status::status_time(now),
        name_prefix: name_prefix.into(),
        id: None,
        candidates: Vec::new(),
        outcome: AttemptOutcome::Pending,
        killed_by: None,
        killed_at: None,
        ended: None,
    });
    prune(status);
}

/// Keeps the list within its bound by dropping the oldest attempts that created nothing;
/// an attempt that named or may have made an app is never dropped.
fn prune(status: &mut AiAppStatus) {
    while status.attempts.len() > ATTEMPTS_MAX as usize {
        let Some(index) = status
            .attempts
            .iter()
            .position(|a| a.outcome == AttemptOutcome::NotCreated)
        else {
            return;
        };
        status.attempts.remove(index);
    }
}

/// The record of attempt `attempt`, to update it.
pub fn record_mut(status: &mut AiAppStatus, attempt: i32) -> Option<&mut AttemptRecord> {
    status.attempts.iter_mut().find(|a| a.attempt == attempt)
}

/// Sets what came of attempt `attempt`, and its app id when one is known.
pub fn settle(status: &mut AiAppStatus, attempt: i32, outcome: AttemptOutcome, id: Option<&str>) {
    if let Some(record) = record_mut(status, attempt) {
        record.outcome = outcome;
        if let Some(id) = id {
            record.id = Some(id.into());
            record.candidates.clear();
        }
    }
}

/// Automatic resubmits made so far: attempts given up after nothing was listed.
pub fn automatic_resubmits(attempts: &[AttemptRecord]) -> usize {
    attempts
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::NotListed)
        .count()
}

/// The value of `dataforest.dev/resubmit` that confirms a resubmit after `record`: its
/// number, then a short hash of the AiApp's uid and the attempt's marker time, so that a
/// confirmation left in Git or on a re-created AiApp confirms nothing else.
pub fn resubmit_token(uid: &str, record: &AttemptRecord) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(format!("{uid}/{}", record.started_at.0).as_bytes());
    let hash: String = digest[..8]
        .iter()
        .map(|byte| ALPHABET[usize::from(*byte) % 36] as char)
        .collect();
    format!("{}-{hash}", record.attempt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn numbers_only_go_up_even_when_records_are_dropped_or_the_marker_cleared() {
        let mut status = AiAppStatus::default();
        assert_eq!(next_number(&status), 1);
        for n in 1..=3 {
            let next = next_number(&status);
            begin(&mut status, next, "ab", at(n));
        }
        assert_eq!(next_number(&status), 4);
        status.submission = None;
        assert_eq!(next_number(&status), 4);
        status.attempts.clear();
        status.submission = Some(SubmissionMarker {
            attempt: 9,
            started_at: Time(at(0)),
            name_prefix: "ab".into(),
        });
        assert_eq!(next_number(&status), 10);
    }

    #[test]
    fn a_full_list_drops_only_attempts_that_created_nothing() {
        let mut status = AiAppStatus::default();
        begin(&mut status, 1, "ab", at(0));
        settle(&mut status, 1, AttemptOutcome::NotListed, None);
        for n in 2..=(ATTEMPTS_MAX as i32 + 5) {
            begin(&mut status, n, "ab", at(i64::from(n)));
            settle(&mut status, n, AttemptOutcome::NotCreated, None);
        }
        assert_eq!(status.attempts.len(), ATTEMPTS_MAX as usize);
        assert_eq!(status.attempts[0].outcome, AttemptOutcome::NotListed);
        assert_eq!(
            status.attempts.last().unwrap().attempt,
            ATTEMPTS_MAX as i32 + 5
        );
    }

    #[test]
    fn an_old_marker_becomes_the_first_record() {
        let marker = SubmissionMarker {
            attempt: 2,
            started_at: Time(at(0)),
            name_prefix: "ab".into(),
        };
        let mut pending = AiAppStatus {
            submission: Some(marker.clone()),
            ..Default::default()
        };
        normalize(&mut pending);
        assert_eq!(pending.attempts.len(), 1);
        assert_eq!(pending.attempts[0].outcome, AttemptOutcome::Pending);
        assert_eq!(pending.attempts[0].attempt, 2);
        let mut created = AiAppStatus {
            submission: Some(marker),
            id: Some("abc".into()),
            ..Default::default()
        };
        normalize(&mut created);
        assert_eq!(created.attempts[0].outcome, AttemptOutcome::Created);
        assert_eq!(created.attempts[0].id.as_deref(), Some("abc"));
        let again = created.clone();
        normalize(&mut created);
        assert_eq!(created, again, "normalizing twice changes nothing");
    }

    #[test]
    fn a_resubmit_token_is_bound_to_the_aiapp_and_the_attempt() {
        let mut status = AiAppStatus::default();
        begin(&mut status, 1, "ab", at(0));
        begin(&mut status, 2, "ab", at(5));
        let first = resubmit_token("uid-1", &status.attempts[0]);
        assert!(first.starts_with("1-"), "{first}");
        assert_eq!(first, resubmit_token("uid-1", &status.attempts[0]));
        assert_ne!(first, resubmit_token("uid-2", &status.attempts[0]));
        let second = resubmit_token("uid-1", &status.attempts[1]);
        assert!(second.starts_with("2-") && second[2..] != first[2..]);
    }
}
