//! A token bucket, stepped by the caller's clock: `rate` tokens a second, at most `burst`
//! held. Pure, so a limit can be tested at chosen times. Counts in thousandths of a token,
//! so there is no rounding drift.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    milli_tokens: i64,
    updated_ms: i64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn full(burst: u32, now_ms: i64) -> TokenBucket {
        TokenBucket {
            milli_tokens: i64::from(burst) * 1000,
            updated_ms: now_ms,
        }
    }

    /// Whether the bucket will have refilled to `burst` by `now_ms`: then it holds nothing a
    /// fresh bucket would not.
    pub fn is_full_at(&self, rate: u32, burst: u32, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.updated_ms).max(0);
        self.milli_tokens
            .saturating_add(elapsed.saturating_mul(i64::from(rate.max(1))))
            >= i64::from(burst) * 1000
    }

    /// Takes one token at `now_ms`: `Ok` when there was one, otherwise `Err` with the
    /// milliseconds until there will be.
    pub fn take(&mut self, rate: u32, burst: u32, now_ms: i64) -> Result<(), i64> {
        let rate = i64::from(rate.max(1));
        let elapsed = (now_ms - self.updated_ms).max(0);
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(i64::from(burst) * 1000);
        self.updated_ms = self.updated_ms.max(now_ms);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            Ok(())
        } else {
            let missing = 1000 - self.milli_tokens;
            Err((missing + rate - 1) / rate)
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
}
