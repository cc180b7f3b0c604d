//! Per-key rate limits on this node, on the app's clock (so tests step them). Each key has a
//! token bucket; the table is bounded: when it reaches its size it forgets the buckets that
//! hold nothing (refilled), then, if it must, the least recently used ones.
//!
//! [`PerIp`] is the per-client-IP limit of the credential endpoints (log-in, second factor,
//! sign-up, password reset): add `_limit: PerIp<Login>` (or `SecondFactor`, `SignUp`,
//! `PasswordReset`) as the first argument of a handler and the request is refused with
//! `429 rate_limited` and `Retry-After` before its body is read. The client is the address
//! found behind trusted proxies; an IPv6 client is its /64, which one host usually holds whole.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{client_ip, peer_of};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mamori_core::Timestamp;
use mamori_core::rate::{RateLimit, TokenBucket};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Mutex;

/// Keys kept by default before buckets are forgotten.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    limit: RateLimit,
    max_keys: usize,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    /// `rate` a second, bursts up to `burst`.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter::with_limit(RateLimit::per_second(rate, burst), DEFAULT_MAX_KEYS)
    }

    /// `limit` per key, for at most `max_keys` keys at once.
    pub fn with_limit(limit: RateLimit, max_keys: usize) -> RateLimiter {
        RateLimiter {
            limit,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// How many keys the table holds now.
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .map(|buckets| buckets.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One request under `key` at `now`, or `RateLimited` with the seconds to wait.
    pub fn check(&self, key: &str, now: Timestamp) -> Result<(), ApiError> {
        let now_ms = now.as_millis();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            self.make_room(&mut buckets, now_ms);
        }
        let limit = self.limit;
        let bucket = buckets
            .entry(key.to_owned())
            .or_insert_with(|| TokenBucket::full_for(limit, now_ms));
        bucket
            .take_for(limit, now_ms)
            .map_err(|wait_ms| ApiError::RateLimited {
                retry_after_seconds: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1),
            })
    }

    fn make_room(&self, buckets: &mut HashMap<String, TokenBucket>, now_ms: i64) {
        // A full bucket holds nothing a fresh one would not.
        let limit = self.limit;
        buckets.retain(|_, bucket| !bucket.is_full_for(limit, now_ms));
        if buckets.len() < self.max_keys {
            return;
        }
        // Still full of clients that are using their allowance: the least recently used
        // eighth goes. Clients sending now are the most recent, so they keep their state.
        let mut ages: Vec<(i64, String)> = buckets
            .iter()
            .map(|(key, bucket)| (bucket.updated_ms(), key.clone()))
            .collect();
        let n_evict = (self.max_keys / 8).max(1).min(ages.len());
        ages.select_nth_unstable_by_key(n_evict - 1, |(updated, _)| *updated);
        for (_, key) in ages.into_iter().take(n_evict) {
            buckets.remove(&key);
        }
    }
}

/// The key of a client: its IPv4 address, or the /64 of its IPv6 address.
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The per-client limits of the credential endpoints, one table each.
pub struct RateLimits {
    pub login: RateLimiter,
    pub second_factor: RateLimiter,
    pub sign_up: RateLimiter,
    pub password_reset: RateLimiter,
}

/// An endpoint family with its own per-client limit.
pub trait LimitedAction: Send + Sync + 'static {
    fn limiter(limits: &RateLimits) -> &RateLimiter;
}

/// `POST /api/v1/sessions`.
pub struct Login;
/// `POST /api/v1/sessions/second-factor`.
// Attached by the second-factor route (issue 4, item 1), built in parallel.
#[allow(dead_code)]
pub struct SecondFactor;
/// `POST /api/v1/accounts`.
pub struct SignUp;
/// `POST /api/v1/password-resets` and `.../complete`, and email confirmations.
pub struct PasswordReset;

impl LimitedAction for Login {
    fn limiter(limits: &RateLimits) -> &RateLimiter {
        &limits.login
    }
}

impl LimitedAction for SecondFactor {
    fn limiter(limits: &RateLimits) -> &RateLimiter {
        &limits.second_factor
    }
}

impl LimitedAction for SignUp {
    fn limiter(limits: &RateLimits) -> &RateLimiter {
        &limits.sign_up
    }
}

impl LimitedAction for PasswordReset {
    fn limiter(limits: &RateLimits) -> &RateLimiter {
        &limits.password_reset
    }
}

/// A handler argument that spends one request of the client's allowance for `A`, or refuses
/// the request with `429 rate_limited` and `Retry-After`. Put it first, so a refused request's
/// body is never read.
pub struct PerIp<A>(PhantomData<A>);

impl<A: LimitedAction> FromRequestParts<AppState> for PerIp<A> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(peer) = peer_of(parts) {
            let ip = client_ip(peer, &parts.headers, &state.trusted_proxies);
            A::limiter(&state.rate_limits).check(&client_key(ip), state.clock.now())?;
        }
        Ok(PerIp(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_stays_bounded_and_keeps_the_busiest_clients() {
        let limiter = RateLimiter::with_limit(RateLimit::per_minute(1, 1), 16);
        let now = Timestamp::from_millis(0);
        limiter.check("busy", now).unwrap();
        assert!(limiter.check("busy", now).is_err());
        for n in 0..1000 {
            let at = Timestamp::from_millis(n + 1);
            let _ = limiter.check(&format!("client-{n}"), at);
            // The busy client keeps coming back and stays limited.
            assert!(limiter.check("busy", at).is_err(), "after {n} others");
            assert!(limiter.len() <= 16);
        }
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.4".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.4");
    }
}
