//! Per-key rate limits on this node, on the app's clock (so tests step them). Each key has a
//! token bucket; the table forgets idle keys when it grows large.

use crate::error::ApiError;
use mamori_core::Timestamp;
use mamori_core::rate::TokenBucket;
use std::collections::HashMap;
use std::sync::Mutex;

/// Keys kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

pub struct RateLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// One request under `key` at `now`, or `RateLimited` with the seconds to wait.
    pub fn check(&self, key: &str, now: Timestamp) -> Result<(), ApiError> {
        let now_ms = now.as_millis();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= SWEEP_AT {
            // A full bucket holds nothing worth keeping.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, bucket| !bucket.is_full_at(rate, burst, now_ms));
        }
        let bucket = buckets
            .entry(key.to_owned())
            .or_insert_with(|| TokenBucket::full(self.burst, now_ms));
        bucket
            .take(self.rate, self.burst, now_ms)
            .map_err(|wait_ms| ApiError::RateLimited {
                retry_after_seconds: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1),
            })
    }
}
