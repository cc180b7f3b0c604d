//! A token bucket, stepped by the caller's clock: `tokens` tokens every `period_ms`, at most
//! `burst` held. Pure, so a limit can be tested at chosen times. A token is counted as
//! `period_ms` units and refills by `tokens` units a millisecond, so there is no rounding
//! drift, whatever the period.

/// A rate: `tokens` every `period_ms`, with bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub tokens: u32,
    pub period_ms: i64,
    pub burst: u32,
}

impl RateLimit {
    pub fn per_second(tokens: u32, burst: u32) -> RateLimit {
        RateLimit {
            tokens,
            period_ms: 1000,
            burst,
        }
    }

    pub fn per_minute(tokens: u32, burst: u32) -> RateLimit {
        RateLimit {
            tokens,
            period_ms: 60_000,
            burst,
        }
    }

    fn unit(&self) -> i64 {
        self.period_ms.max(1)
    }

    fn capacity(&self) -> i64 {
        i64::from(self.burst.max(1)).saturating_mul(self.unit())
    }

    fn refill(&self) -> i64 {
        i64::from(self.tokens.max(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    units: i64,
    updated_ms: i64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`, for a per-second rate.
    pub fn full(burst: u32, now_ms: i64) -> TokenBucket {
        TokenBucket::full_for(RateLimit::per_second(1, burst), now_ms)
    }

    /// A full bucket at `now_ms` for `limit`.
    pub fn full_for(limit: RateLimit, now_ms: i64) -> TokenBucket {
        TokenBucket {
            units: limit.capacity(),
            updated_ms: now_ms,
        }
    }

    /// When the bucket last took a token (or was made).
    pub fn updated_ms(&self) -> i64 {
        self.updated_ms
    }

    /// Whether the bucket will have refilled to `burst` by `now_ms`: then it holds nothing a
    /// fresh bucket would not.
    pub fn is_full_at(&self, rate: u32, burst: u32, now_ms: i64) -> bool {
        self.is_full_for(RateLimit::per_second(rate, burst), now_ms)
    }

    pub fn is_full_for(&self, limit: RateLimit, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.updated_ms).max(0);
        self.units
            .saturating_add(elapsed.saturating_mul(limit.refill()))
            >= limit.capacity()
    }

    /// Takes one token at `now_ms` at `rate` a second: `Ok` when there was one, otherwise
    /// `Err` with the milliseconds until there will be.
    pub fn take(&mut self, rate: u32, burst: u32, now_ms: i64) -> Result<(), i64> {
        self.take_for(RateLimit::per_second(rate, burst), now_ms)
    }

    /// Takes one token at `now_ms` under `limit`, or says how many milliseconds to wait.
    pub fn take_for(&mut self, limit: RateLimit, now_ms: i64) -> Result<(), i64> {
        let refill = limit.refill();
        let elapsed = (now_ms - self.updated_ms).max(0);
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(refill))
            .min(limit.capacity());
        self.updated_ms = self.updated_ms.max(now_ms);
        if self.units >= limit.unit() {
            self.units -= limit.unit();
            Ok(())
        } else {
            let missing = limit.unit() - self.units;
            Err((missing + refill - 1) / refill)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refills_at_the_rate() {
        let mut bucket = TokenBucket::full(3, 0);
        for _ in 0..3 {
            assert_eq!(bucket.take(10, 3, 0), Ok(()));
        }
        assert_eq!(bucket.take(10, 3, 0), Err(100));
        assert_eq!(bucket.take(10, 3, 99), Err(1));
        assert_eq!(bucket.take(10, 3, 100), Ok(()));
        // A long pause refills only up to the burst.
        for _ in 0..3 {
            assert_eq!(bucket.take(10, 3, 100_000), Ok(()));
        }
        assert!(bucket.take(10, 3, 100_000).is_err());
    }

    #[test]
    fn a_per_minute_rate_refills_one_token_per_period_share() {
        let limit = RateLimit::per_minute(6, 2);
        let mut bucket = TokenBucket::full_for(limit, 0);
        assert_eq!(bucket.take_for(limit, 0), Ok(()));
        assert_eq!(bucket.take_for(limit, 0), Ok(()));
        // Six a minute: one every 10 s.
        assert_eq!(bucket.take_for(limit, 0), Err(10_000));
        assert_eq!(bucket.take_for(limit, 9_999), Err(1));
        assert_eq!(bucket.take_for(limit, 10_000), Ok(()));
        assert!(!bucket.is_full_for(limit, 10_000));
        assert!(bucket.is_full_for(limit, 30_000));
    }
}
