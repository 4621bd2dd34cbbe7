//! getList answers shared per account: AiApps of one account that look for their apps at
//! the same moment share one call, and a second call for the account waits until the
//! first answers, so that a burst of lost answers costs about one getList a second. With
//! `--polls-for-listing`, polls use the same answers once an account's apps are polled
//! often enough (see [`Listings::polled_often`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use crate::dataforest::{ApiError, AppSummary, DataForestApi};

/// How long one answer serves every AiApp of the account.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// The default of `--polls-for-listing`: 0, off. A listing halves the getDetail calls of
/// many long-running apps but costs memory and shows a change up to a second later
/// (2,000 apps running 120 s: getDetail per AiApp 7.00 → 3.40, peak RSS 31 → 41 MB;
/// docs/benchmarks.md). 10,000 running apps on the 60 s poll ceiling make about 167
/// polls a second.
pub const POLLS_FOR_LISTING: u32 = 0;

/// Listed apps one poll a second is worth: a getList item costs the operator about a
/// hundredth of a getDetail call (one signed request and answer). An account that lists
/// far more apps than it has polled (old apps Data Forest still lists, a burst of short
/// ones) keeps getDetail, and the operator's memory stays clear of large listings.
const LISTED_APPS_PER_POLL: usize = 100;

/// Which listing: the same account seen through the same endpoint and key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListingKey {
    pub endpoint: String,
    pub access_key: String,
    pub account_id: String,
}

/// One getList answer (or its failure), and when it was asked for.
#[derive(Clone, Debug)]
pub struct Listing {
    pub apps: Result<Arc<Vec<AppSummary>>, Arc<ApiError>>,
    /// When the request was sent: nothing created after it can be in it.
    pub listed_at: Timestamp,
    fetched: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Listing>>>;

/// Polls of one account counted per second (all, and those that found nothing new), and
/// how many apps it listed last.
#[derive(Clone, Copy, Debug)]
struct PollRate {
    window_start: Instant,
    this_second: Polls,
    last_second: Polls,
    listed: Option<usize>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Polls {
    all: u32,
    unchanged: u32,
}

impl PollRate {
    fn new(now: Instant) -> Self {
        PollRate {
            window_start: now,
            this_second: Polls::default(),
            last_second: Polls::default(),
            listed: None,
        }
    }

    /// Starts a new second when this one is over.
    fn roll(&mut self, now: Instant) {
        let age = now.duration_since(self.window_start);
        if age >= FRESH_FOR {
            self.last_second = if age < FRESH_FOR * 2 {
                self.this_second
            } else {
                Polls::default()
            };
            self.this_second = Polls::default();
            self.window_start = now;
        }
    }

    /// The last full second's polls, or this one's while it has more.
    fn recent(&self) -> Polls {
        if self.this_second.all > self.last_second.all {
            self.this_second
        } else {
            self.last_second
        }
    }
}

/// The latest listing of each account, and how often each account's apps are polled.
#[derive(Default)]
pub struct Listings {
    slots: Mutex<HashMap<ListingKey, Slot>>,
    polls: Mutex<HashMap<ListingKey, PollRate>>,
}

impl Listings {
    /// Counts one poll of an app of the account; whether a listing should stand in for
    /// its apps' getDetail calls: they are polled at least `from` times a second (the last
    /// second, or this one once it has more), at least three in four of those polls found
    /// nothing new (a listing saves nothing while apps change, as in a burst of short
    /// apps), and often enough for the size of its last listing. `from` 0 never.
    pub fn polled_often(&self, key: &ListingKey, from: u32) -> bool {
        if from == 0 {
            return false;
        }
        let now = Instant::now();
        let mut rates = self.polls.lock().unwrap_or_else(|p| p.into_inner());
        if rates.len() > 64 {
            rates.retain(|_, rate| now.duration_since(rate.window_start) < FRESH_FOR * 60);
        }
        let rate = rates
            .entry(key.clone())
            .or_insert_with(|| PollRate::new(now));
        rate.roll(now);
        rate.this_second.all += 1;
        let recent = rate.recent();
        recent.all >= from
            && recent.unchanged * 4 >= recent.all * 3
            && rate
                .listed
                .is_none_or(|listed| listed <= recent.all as usize * LISTED_APPS_PER_POLL)
    }

    /// Counts a poll of the account (already counted by [`Listings::polled_often`]) that
    /// found its app as status recorded it.
    pub fn found_unchanged(&self, key: &ListingKey) {
        let now = Instant::now();
        let mut rates = self.polls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rate) = rates.get_mut(key) {
            rate.roll(now);
            rate.this_second.unchanged += 1;
        }
    }

    fn note_listed(&self, key: &ListingKey, listed: usize) {
        let mut polls = self.polls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rate) = polls.get_mut(key) {
            rate.listed = Some(listed);
        }
    }

    /// A listing of the account no older than [`FRESH_FOR`], asking `api` when there is none.
    pub async fn list(&self, key: ListingKey, api: &dyn DataForestApi) -> Listing {
        let slot = self.slot(&key);
        let mut latest = slot.lock().await;
        if let Some(listing) = latest.as_ref().filter(|l| l.fetched.elapsed() < FRESH_FOR) {
            return listing.clone();
        }
        let listed_at = Timestamp::now();
        let apps = api
            .list(&key.account_id)
            .await
            .map(Arc::new)
            .map_err(Arc::new);
        if let Ok(apps) = &apps {
            self.note_listed(&key, apps.len());
        }
        let listing = Listing {
            apps,
            listed_at,
            fetched: Instant::now(),
        };
        *latest = Some(listing.clone());
        listing
    }

    fn slot(&self, key: &ListingKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Listings go stale in a second; drop the slots nobody asked for in a while.
        if slots.len() > 64 {
            slots.retain(|_, slot| {
                slot.try_lock().map_or(true, |l| {
                    l.as_ref()
                        .is_some_and(|l| l.fetched.elapsed() < FRESH_FOR * 60)
                })
            });
        }
        slots.entry(key.clone()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(account_id: &str) -> ListingKey {
        ListingKey {
            endpoint: "http://127.0.0.1:1".to_owned(),
            access_key: "AK".to_owned(),
            account_id: account_id.to_owned(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_account_counts_as_polled_often_from_the_threshold_on_for_the_next_second() {
        let listings = Listings::default();
        let busy = key("busy");
        let answers: Vec<bool> = (0..3)
            .map(|_| {
                let often = listings.polled_often(&busy, 3);
                listings.found_unchanged(&busy);
                often
            })
            .collect();
        assert_eq!(answers, [false, false, false]);
        assert!(listings.polled_often(&busy, 3));
        listings.found_unchanged(&busy);
        // Another account has its own count.
        assert!(!listings.polled_often(&key("quiet"), 3));

        // The last second's count carries over into the next one ...
        tokio::time::advance(Duration::from_millis(1_100)).await;
        assert!(listings.polled_often(&busy, 3));
        listings.found_unchanged(&busy);
        // ... but not past a second without polls, nor with 0 as the threshold.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!listings.polled_often(&busy, 3));
        assert!(!listings.polled_often(&busy, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_account_that_lists_far_more_apps_than_it_polls_keeps_get_detail() {
        let listings = Listings::default();
        let busy = key("busy");
        let poll_unchanged = |times: usize| {
            for _ in 0..times {
                listings.polled_often(&busy, 1);
                listings.found_unchanged(&busy);
            }
        };
        poll_unchanged(10);
        tokio::time::advance(Duration::from_millis(1_100)).await;
        listings.note_listed(&busy, 10 * LISTED_APPS_PER_POLL + 1);
        // Ten polls a second are not worth listing 1,001 apps; twelve are.
        assert!(!listings.polled_often(&busy, 1));
        listings.found_unchanged(&busy);
        poll_unchanged(10);
        assert!(listings.polled_often(&busy, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_account_whose_apps_keep_changing_keeps_get_detail() {
        let listings = Listings::default();
        let busy = key("busy");
        // A burst of short apps: most polls find a new state.
        for n in 0..20 {
            listings.polled_often(&busy, 10);
            if n % 2 == 0 {
                listings.found_unchanged(&busy);
            }
        }
        tokio::time::advance(Duration::from_millis(1_100)).await;
        assert!(!listings.polled_often(&busy, 10));
        // Once three in four find nothing new, the listing serves them.
        for _ in 0..5 {
            listings.found_unchanged(&busy);
        }
        for _ in 0..20 {
            listings.polled_often(&busy, 10);
            listings.found_unchanged(&busy);
        }
        assert!(listings.polled_often(&busy, 10));
    }
}
