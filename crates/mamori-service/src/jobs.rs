//! Background work, steppable: [`Services::run_jobs_once`] does one round at the given `now`
//! and reports what it did. `serve` calls it every minute; tests call it with a chosen clock.
//! Every step is idempotent, so several nodes may run it at once.

use crate::{ServiceError, Services};
use mamori_core::Timestamp;

const KEY_BATCH: u32 = 100;
/// Sent and failed mail is kept this long for `mamori outbox list`, then deleted: a message
/// holds an address and perhaps a one-time link.
const FINISHED_MAIL_KEPT_MS: i64 = 7 * 86_400_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobReport {
    pub sessions_expired: u64,
    pub keys_destroyed: u64,
    pub mail_purged: u64,
    /// Login throttles and account tokens no longer needed (issue 4).
    pub recovery_purged: u64,
    /// Expired log-in challenges: the second step's `mmc_` and the password change's `mmf_`.
    pub challenges_expired: u64,
}

impl JobReport {
    pub fn is_idle(&self) -> bool {
        *self == JobReport::default()
    }
}

impl Services {
    pub async fn run_jobs_once(&self, now: Timestamp) -> Result<JobReport, ServiceError> {
        let policy = self.session_policy;
        let sessions_expired = self
            .store
            .delete_expired_sessions(
                now.plus_millis(-policy.absolute_lifetime_ms),
                now.plus_millis(-policy.idle_timeout_ms),
            )
            .await?;
        let mut keys_destroyed = 0;
        for owner in self.store.pending_key_destructions(KEY_BATCH).await? {
            // One stuck destruction must not hold up the others; it is tried again next round.
            match self.destroy_key(&owner, now).await {
                Ok(()) => keys_destroyed += 1,
                Err(error) => tracing::error!(%owner, %error, "key destruction failed; will retry"),
            }
        }
        let mail_purged = self
            .store
            .delete_finished_mail(now.plus_millis(-FINISHED_MAIL_KEPT_MS))
            .await?;
        // A throttle is kept while its count could still matter; a token a day past expiry.
        let recovery_purged = self
            .store
            .delete_stale_login_throttles(now.plus_millis(-self.lockout.forget_after_ms))
            .await?
            + self
                .store
                .delete_expired_account_tokens(now.plus_millis(-86_400_000))
                .await?;
        let challenges_expired = self.store.delete_expired_login_challenges(now).await?;
        Ok(JobReport {
            challenges_expired,
            sessions_expired,
            keys_destroyed,
            mail_purged,
            recovery_purged,
        })
    }
}
