//! Brute-force protection for one login name: how long it stays locked after a run of
//! attempts that did not succeed. Pure, so the schedule is tested at chosen counts.
//!
//! Attempts are counted *before* the password is checked (a success clears the count), so
//! requests in flight at the same time cannot slip past the threshold together.

/// The lock-out schedule. With the defaults: the 5th attempt without success locks the name
/// for 1 minute, each later one (made after the lock ended) doubles it, up to 1 hour; a count
/// not touched for a day starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// The attempt that first locks.
    pub threshold: u32,
    pub first_lock_ms: i64,
    pub max_lock_ms: i64,
    /// A count whose last attempt is older than this starts again from zero.
    pub forget_after_ms: i64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            threshold: 5,
            first_lock_ms: 60_000,
            max_lock_ms: 3_600_000,
            forget_after_ms: 86_400_000,
        }
    }
}

impl LockoutPolicy {
    /// How long the name is locked once `attempts` attempts (this one included) have not
    /// been followed by a success; `None` below the threshold.
    pub fn lock_ms(&self, attempts: i64) -> Option<i64> {
        let threshold = i64::from(self.threshold.max(1));
        if attempts < threshold {
            return None;
        }
        let doublings = u32::try_from((attempts - threshold).min(40)).unwrap_or(40);
        let lock = self
            .first_lock_ms
            .max(1)
            .saturating_mul(1i64 << doublings.min(40));
        Some(lock.min(self.max_lock_ms.max(self.first_lock_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_from_the_fifth_attempt_doubling_up_to_an_hour() {
        let policy = LockoutPolicy::default();
        for attempts in 0..5 {
            assert_eq!(policy.lock_ms(attempts), None);
        }
        assert_eq!(policy.lock_ms(5), Some(60_000));
        assert_eq!(policy.lock_ms(6), Some(120_000));
        assert_eq!(policy.lock_ms(7), Some(240_000));
        assert_eq!(policy.lock_ms(10), Some(1_920_000));
        assert_eq!(policy.lock_ms(11), Some(3_600_000));
        assert_eq!(policy.lock_ms(1_000_000), Some(3_600_000));
    }
}
