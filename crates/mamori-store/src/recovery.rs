//! The credential-protection part of the store: login throttles (brute-force lock-out kept
//! in the database, so it holds across nodes), one-time account tokens (password resets,
//! email verification, email changes) and the organization's verified-email rule.

use crate::StoreError;
use async_trait::async_trait;
use mamori_core::{AccountId, OrgId, Timestamp};

/// What a purpose-bound, one-time account token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    PasswordReset,
    EmailVerification,
    EmailChange,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::PasswordReset => "password_reset",
            TokenPurpose::EmailVerification => "email_verification",
            TokenPurpose::EmailChange => "email_change",
        }
    }

    pub fn parse(text: &str) -> Option<TokenPurpose> {
        match text {
            "password_reset" => Some(TokenPurpose::PasswordReset),
            "email_verification" => Some(TokenPurpose::EmailVerification),
            "email_change" => Some(TokenPurpose::EmailChange),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTokenRow {
    pub id: String,
    pub purpose: TokenPurpose,
    pub account_id: AccountId,
    pub token_hash: String,
    /// The blind index of the address the token was mailed to.
    pub email_index: String,
    /// For an email change: the new address, sealed under the account's data key.
    pub email_sealed: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

/// The outcome of counting one login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Counted: this is the `attempts`-th attempt since the last success.
    Counted { attempts: i64 },
    /// Not counted: the name is locked until then.
    Locked { until: Timestamp },
}

#[async_trait]
pub trait RecoveryStore: Send + Sync {
    async fn account_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<AccountTokenRow>, StoreError>;
    /// When the account's newest token of `purpose` was made, if it has one not yet used.
    async fn newest_unused_token_at(
        &self,
        account: &AccountId,
        purpose: TokenPurpose,
    ) -> Result<Option<Timestamp>, StoreError>;
    /// Counts one attempt for the login name `email_index` at `now` in one statement of its
    /// own, only when the name is not locked and the count stays below `threshold` (a count
    /// whose last attempt was before `forget_before` starts again at 1). Returns the count, or
    /// `None` with nothing changed: the name is locked or this attempt reaches the threshold,
    /// and the caller counts it in a transaction with the lock (see
    /// [`RecoveryStoreTx::count_login_attempt`]).
    async fn count_login_attempt_below(
        &self,
        email_index: &str,
        now: Timestamp,
        forget_before: Timestamp,
        threshold: i64,
    ) -> Result<Option<i64>, StoreError>;
    /// Deletes throttles whose last attempt is before `before` and whose lock is over; returns
    /// how many.
    async fn delete_stale_login_throttles(&self, before: Timestamp) -> Result<u64, StoreError>;
    /// Deletes account tokens that expired before `before`; returns how many.
    async fn delete_expired_account_tokens(&self, before: Timestamp) -> Result<u64, StoreError>;
}

#[async_trait]
pub trait RecoveryStoreTx: Send {
    /// Counts one attempt for the login name `email_index` at `now`, unless it is locked. A
    /// count whose last attempt was before `forget_before` starts again at 1.
    async fn count_login_attempt(
        &mut self,
        email_index: &str,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<LoginAttempt, StoreError>;
    /// Locks the login name until `until` (never shortens a lock).
    async fn lock_login(&mut self, email_index: &str, until: Timestamp) -> Result<(), StoreError>;
    /// Forgets the login name's attempts and lock: after a success or a password reset.
    async fn clear_login_throttle(&mut self, email_index: &str) -> Result<(), StoreError>;

    async fn insert_account_token(&mut self, token: &AccountTokenRow) -> Result<(), StoreError>;
    /// Marks one token used at `now`; false when it was used already.
    async fn use_account_token(&mut self, id: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Marks every unused token of the account with `purpose` used; returns how many.
    async fn retire_account_tokens(
        &mut self,
        account: &AccountId,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Deletes every token of the account (when it is deleted).
    async fn delete_account_tokens(&mut self, account: &AccountId) -> Result<u64, StoreError>;
    /// Sets a new, verified email address. `Conflict` when another account has it.
    async fn update_email(
        &mut self,
        account: &AccountId,
        email_index: &str,
        email_sealed: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// The organization's member limit (ACC-7), read inside the transaction; `None`: none.
    async fn org_max_members(&mut self, org: &OrgId) -> Result<Option<i64>, StoreError>;
    async fn set_org_max_members(
        &mut self,
        org: &OrgId,
        max_members: Option<i64>,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    async fn set_org_require_verified_email(
        &mut self,
        org: &OrgId,
        required: bool,
        now: Timestamp,
    ) -> Result<(), StoreError>;
}
