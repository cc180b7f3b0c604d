//! When a session stops being valid: idle timeout and absolute lifetime.

use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle_timeout_ms: i64,
    pub absolute_lifetime_ms: i64,
    /// `last_seen_at` is written at most this often, so that reading is not a write per request.
    pub touch_interval_ms: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_timeout_ms: 12 * 3_600_000,
            absolute_lifetime_ms: 30 * 86_400_000,
            touch_interval_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Valid { touch: bool },
    IdleExpired,
    LifetimeExpired,
}

impl SessionPolicy {
    pub fn state(
        &self,
        created_at: Timestamp,
        last_seen_at: Timestamp,
        now: Timestamp,
    ) -> SessionState {
        if now.millis_since(created_at) >= self.absolute_lifetime_ms {
            SessionState::LifetimeExpired
        } else if now.millis_since(last_seen_at) >= self.idle_timeout_ms {
            SessionState::IdleExpired
        } else {
            SessionState::Valid {
                touch: now.millis_since(last_seen_at) >= self.touch_interval_ms,
            }
        }
    }

    /// The moment the session would expire if it stayed idle from `last_seen_at`.
    pub fn expires_at(&self, created_at: Timestamp, last_seen_at: Timestamp) -> Timestamp {
        let idle_end = last_seen_at.plus_millis(self.idle_timeout_ms);
        let absolute_end = created_at.plus_millis(self.absolute_lifetime_ms);
        idle_end.min(absolute_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_absolute_expiry() {
        let policy = SessionPolicy::default();
        let start = Timestamp::from_millis(1_000_000);
        assert_eq!(
            policy.state(start, start, start),
            SessionState::Valid { touch: false }
        );
        let hour = 3_600_000;
        assert_eq!(
            policy.state(start, start, start.plus_millis(12 * hour - 1)),
            SessionState::Valid { touch: true }
        );
        assert_eq!(
            policy.state(start, start, start.plus_millis(12 * hour)),
            SessionState::IdleExpired
        );
        let late = start.plus_days(30);
        assert_eq!(
            policy.state(start, late, late),
            SessionState::LifetimeExpired
        );
        assert_eq!(
            policy.expires_at(start, start),
            start.plus_millis(12 * hour)
        );
    }
}
