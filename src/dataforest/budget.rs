//! A client-side call budget per access key: a token bucket, which a 429 from the gateway
//! pauses for the whole key (every AiApp using it), longer each time in a row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Calls per second per access key, and the burst a quiet key may spend at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for Budget {
    /// High enough that a burst of a thousand AiApps is not held back by it, low enough
    /// that a bug cannot flood the API.
    fn default() -> Self {
        Self {
            per_second: 200.0,
            burst: 200.0,
        }
    }
}

/// The longest a 429 pauses a key.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// The first pause after a 429.
const FIRST_PAUSE: Duration = Duration::from_millis(500);

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// No call before this instant: the key was throttled.
    paused_until: Instant,
    /// The next pause if throttled again; it doubles, and resets on a success.
    next_pause: Duration,
}

/// Token buckets of every access key in use.
pub struct Budgets {
    budget: Budget,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Budgets {
    pub fn new(budget: Budget) -> Arc<Self> {
        Arc::new(Self {
            budget,
            buckets: Mutex::default(),
        })
    }

    /// A handle for one access key, for the client to call before each request.
    pub fn for_key(self: &Arc<Self>, access_key: &str) -> KeyBudget {
        KeyBudget {
            budgets: self.clone(),
            access_key: access_key.to_owned(),
        }
    }

    fn with_bucket<R>(&self, access_key: &str, f: impl FnOnce(&mut Bucket, Instant) -> R) -> R {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(access_key.to_owned()).or_insert(Bucket {
            tokens: self.budget.burst,
            refilled: now,
            paused_until: now,
            next_pause: FIRST_PAUSE,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.budget.per_second).min(self.budget.burst);
        bucket.refilled = now;
        f(bucket, now)
    }
}

/// One access key's budget.
#[derive(Clone)]
pub struct KeyBudget {
    budgets: Arc<Budgets>,
    access_key: String,
}

impl KeyBudget {
    /// Waits until the key may make one more call, and takes it.
    pub async fn acquire(&self) {
        loop {
            let wait = self.budgets.with_bucket(&self.access_key, |bucket, now| {
                if bucket.paused_until > now {
                    return bucket.paused_until - now;
                }
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    return Duration::ZERO;
                }
                let missing = 1.0 - bucket.tokens;
                Duration::from_secs_f64(missing / self.budgets.budget.per_second)
            });
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The gateway throttled this key: every AiApp using it pauses, longer each time in a
    /// row, with jitter so that they do not all come back at once.
    pub fn throttled(&self) {
        self.budgets.with_bucket(&self.access_key, |bucket, now| {
            let pause = bucket.next_pause.mul_f64(1.0 + fastrand::f64() / 2.0);
            bucket.paused_until = bucket.paused_until.max(now + pause);
            bucket.next_pause = (bucket.next_pause * 2).min(MAX_PAUSE);
            bucket.tokens = 0.0;
        });
    }

    /// A call went through: the next throttle starts from the first pause again.
    pub fn succeeded(&self) {
        self.budgets.with_bucket(&self.access_key, |bucket, _| {
            bucket.next_pause = FIRST_PAUSE;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_spends_its_burst_then_calls_at_its_rate() {
        let budgets = Budgets::new(Budget {
            per_second: 10.0,
            burst: 5.0,
        });
        let key = budgets.for_key("AK");
        let start = Instant::now();
        for _ in 0..25 {
            key.acquire().await;
        }
        // Five at once, then twenty at ten a second.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1_950) && took <= Duration::from_millis(2_100),
            "{took:?}"
        );
        // Another key has its own bucket.
        let other = budgets.for_key("AK2");
        let before = Instant::now();
        other.acquire().await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_pauses_the_whole_key_longer_each_time_until_a_success() {
        let budgets = Budgets::new(Budget::default());
        let key = budgets.for_key("AK");
        key.throttled();
        let start = Instant::now();
        budgets.for_key("AK").acquire().await;
        let first = start.elapsed();
        assert!(first >= FIRST_PAUSE && first < FIRST_PAUSE * 2, "{first:?}");
        key.throttled();
        let start = Instant::now();
        key.acquire().await;
        let second = start.elapsed();
        assert!(second >= FIRST_PAUSE * 2, "{second:?}");
        key.succeeded();
        key.throttled();
        let start = Instant::now();
        key.acquire().await;
        assert!(start.elapsed() < FIRST_PAUSE * 2);
    }
}
