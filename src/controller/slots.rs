//! Reconcile slots between submits and polls. While AiApps are being submitted (one is
//! in flight, or one was within the last second), polls of running apps may hold only a
//! quarter of the slots, so a burst of new AiApps never waits behind them; otherwise polls
//! may use every slot, so 10,000 running apps are still polled at their ceiling. One
//! cache and one queue serve both.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// How long after the last submit polls still keep to their share: a burst has gaps
/// (an AiApp between its finalizer and its submit) that must not let polls flood in.
const BURST_GAP: Duration = Duration::from_secs(1);

/// The share of slots polls keep while submits are in flight.
pub struct Slots {
    submitting: AtomicUsize,
    /// When a submit last ended, in milliseconds after `started`.
    last_submit_ms: AtomicU64,
    started: Instant,
    polls_while_submitting: Semaphore,
}

/// A submit (or a recovery, which may submit) in flight; counted until dropped.
pub struct Submitting<'a>(&'a Slots);

impl Drop for Submitting<'_> {
    fn drop(&mut self) {
        self.0
            .last_submit_ms
            .store(self.0.now_ms(), Ordering::Relaxed);
        self.0.submitting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A poll let through; holds its share of the slots, if it needed one, until dropped.
pub struct Polling<'a> {
    _share: Option<SemaphorePermit<'a>>,
}

impl Slots {
    pub fn new(concurrency: u16) -> Self {
        Self {
            submitting: AtomicUsize::new(0),
            last_submit_ms: AtomicU64::new(0),
            started: Instant::now(),
            polls_while_submitting: Semaphore::new(poll_share(concurrency)),
        }
    }

    pub fn submitting(&self) -> Submitting<'_> {
        self.submitting.fetch_add(1, Ordering::Relaxed);
        Submitting(self)
    }

    fn now_ms(&self) -> u64 {
        // Never 0, so that "no submit yet" stays apart from a submit at the start.
        u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn bursting(&self) -> bool {
        if self.submitting.load(Ordering::Relaxed) > 0 {
            return true;
        }
        let last = self.last_submit_ms.load(Ordering::Relaxed);
        last > 0 && self.now_ms().saturating_sub(last) < BURST_GAP.as_millis() as u64
    }

    /// Lets a poll through, or `None` when submits are in flight and polls already hold
    /// their share: the poll then comes back shortly instead of holding a slot.
    pub fn poll(&self) -> Option<Polling<'_>> {
        if !self.bursting() {
            return Some(Polling { _share: None });
        }
        let share = self.polls_while_submitting.try_acquire().ok()?;
        Some(Polling {
            _share: Some(share),
        })
    }
}

/// A quarter of the slots, at least one. Measured on a 1,000-AiApp burst: half gave
/// about 52 submitted/s, a quarter about 86/s, as polls that wait find more apps ended
/// and write `Running` less often.
fn poll_share(concurrency: u16) -> usize {
    usize::from(concurrency / 4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn while_a_submit_is_in_flight_polls_get_a_quarter_of_the_slots() {
        let slots = Slots::new(32);
        let submit = slots.submitting();
        let polls: Vec<_> = (0..32).map_while(|_| slots.poll()).collect();
        assert_eq!(polls.len(), 8);
        drop(polls);
        assert!(
            slots.poll().is_some(),
            "a finished poll gives its slot back"
        );
        drop(submit);
    }

    #[test]
    fn with_no_submit_in_flight_polls_may_use_every_slot() {
        let slots = Slots::new(32);
        let polls: Vec<_> = (0..32).map_while(|_| slots.poll()).collect();
        assert_eq!(polls.len(), 32);
    }

    #[tokio::test(start_paused = true)]
    async fn polls_keep_to_their_share_for_a_second_after_the_last_submit() {
        let slots = Slots::new(32);
        drop(slots.submitting());
        let polls: Vec<_> = (0..32).map_while(|_| slots.poll()).collect();
        assert_eq!(polls.len(), 8, "a gap in a burst is still the burst");
        tokio::time::advance(BURST_GAP + Duration::from_millis(10)).await;
        assert!(slots.poll().is_some(), "the burst is over");
        let more: Vec<_> = (0..32).map_while(|_| slots.poll()).collect();
        assert_eq!(more.len(), 32);
    }

    #[test]
    fn a_single_slot_still_polls() {
        assert_eq!(poll_share(1), 1);
        assert_eq!(poll_share(3), 1);
    }
}
