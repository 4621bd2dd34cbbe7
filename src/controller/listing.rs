//! getList answers shared per account: AiApps of one account that look for their apps at
//! the same moment share one call, and a second call for the account waits until the
//! first answers, so that a burst of lost answers costs about one getList a second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use crate::dataforest::{ApiError, AppSummary, DataForestApi};

/// How long one answer serves every AiApp of the account.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

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

/// The latest listing of each account.
#[derive(Default)]
pub struct Listings(Mutex<HashMap<ListingKey, Slot>>);

impl Listings {
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
        let listing = Listing {
            apps,
            listed_at,
            fetched: Instant::now(),
        };
        *latest = Some(listing.clone());
        listing
    }

    fn slot(&self, key: &ListingKey) -> Slot {
        let mut slots = self.0.lock().unwrap_or_else(|p| p.into_inner());
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
