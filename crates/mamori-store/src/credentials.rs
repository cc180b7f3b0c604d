//! The credential part of the store (ACC-6, sessions and tokens of issue 4): TOTP two-step
//! verification with its recovery codes, the pending second step of a log-in, and personal
//! access tokens. Secrets arrive sealed or hashed; this module never sees them in plaintext.

use crate::StoreError;
use async_trait::async_trait;
use mamori_core::{AccountId, PersonalTokenId, Timestamp};

/// An account's TOTP enrolment; `enabled_at` is `None` until a code confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoStepRow {
    pub account_id: AccountId,
    /// The shared secret, sealed under the account's data key.
    pub secret_sealed: String,
    pub enabled_at: Option<Timestamp>,
    /// The last time step whose code was accepted (`-1` when none was).
    pub last_used_step: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The pending second step of a log-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginChallengeRow {
    pub challenge_hash: String,
    pub account_id: AccountId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub failures: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalTokenRow {
    pub id: PersonalTokenId,
    pub account_id: AccountId,
    /// The holder's name for the token, sealed under the account's data key.
    pub name_sealed: String,
    /// `read` or `full`.
    pub scope: String,
    pub token_hash: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// Reads on the pool.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    async fn two_step(&self, account: &AccountId) -> Result<Option<TwoStepRow>, StoreError>;
    /// Whether the account has confirmed two-step verification.
    async fn two_step_enabled(&self, account: &AccountId) -> Result<bool, StoreError>;

    /// How many unused recovery codes the account has.
    async fn unused_recovery_codes(&self, account: &AccountId) -> Result<u64, StoreError>;

    async fn login_challenge(
        &self,
        challenge_hash: &str,
    ) -> Result<Option<LoginChallengeRow>, StoreError>;
    /// Deletes challenges that expired before `now`; returns how many.
    async fn delete_expired_login_challenges(&self, now: Timestamp) -> Result<u64, StoreError>;

    async fn personal_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<PersonalTokenRow>, StoreError>;
    /// [`CredentialStore::personal_token_by_hash`] through the credential cache (see
    /// `Store::cached_session_by_token_hash`).
    async fn cached_personal_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<PersonalTokenRow>, StoreError>;
    /// The account's tokens, oldest first, after `after` (creation time, ID) when given.
    async fn personal_tokens_of(
        &self,
        account: &AccountId,
        after: Option<(Timestamp, &PersonalTokenId)>,
        limit: u32,
    ) -> Result<Vec<PersonalTokenRow>, StoreError>;
    /// Records that a token was used; a plain update outside any transaction.
    async fn touch_personal_token(
        &self,
        id: &PersonalTokenId,
        now: Timestamp,
    ) -> Result<(), StoreError>;
}

/// Writes inside one transaction. Using a TOTP step, a recovery code or a challenge is a
/// conditional update or delete, so exactly one request wins it, also across nodes.
#[async_trait]
pub trait CredentialStoreTx: Send {
    /// Starts (or restarts) enrolment: the row is replaced unless two-step is already on, in
    /// which case nothing changes and false is returned.
    async fn put_pending_two_step(&mut self, row: &TwoStepRow) -> Result<bool, StoreError>;
    /// Switches a pending enrolment on and records `step` as used; false when there was no
    /// pending enrolment or the step was not later than the last used one.
    async fn enable_two_step(
        &mut self,
        account: &AccountId,
        step: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Records `step` as used if it is later than the last used one; false when it is not
    /// (a replayed code, or another request that used it first).
    async fn use_totp_step(
        &mut self,
        account: &AccountId,
        step: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Marks an unused recovery code used; false when there is no such unused code.
    async fn use_recovery_code(
        &mut self,
        account: &AccountId,
        code_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Removes the enrolment and every recovery code; false when there was none.
    async fn delete_two_step(&mut self, account: &AccountId) -> Result<bool, StoreError>;
    /// Replaces the account's recovery codes with these.
    async fn replace_recovery_codes(
        &mut self,
        account: &AccountId,
        code_hashes: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError>;

    async fn insert_login_challenge(
        &mut self,
        challenge: &LoginChallengeRow,
    ) -> Result<(), StoreError>;
    /// Deletes the challenge if it is still unexpired at `now`, returning its account: the one
    /// way a challenge is used, so it is used at most once.
    async fn take_login_challenge(
        &mut self,
        challenge_hash: &str,
        now: Timestamp,
    ) -> Result<Option<AccountId>, StoreError>;

    /// Counts a wrong code against a challenge; at `max_failures` the challenge is deleted.
    /// Returns whether the challenge is still usable.
    async fn fail_login_challenge(
        &mut self,
        challenge_hash: &str,
        max_failures: i64,
    ) -> Result<bool, StoreError>;

    async fn insert_personal_token(&mut self, token: &PersonalTokenRow) -> Result<(), StoreError>;
    /// Deletes one token of this account; false when there was none.
    async fn delete_personal_token(
        &mut self,
        account: &AccountId,
        id: &PersonalTokenId,
    ) -> Result<bool, StoreError>;

    /// Deletes every credential of the account but its password and sessions: two-step,
    /// recovery codes, challenges and tokens (account deletion).
    async fn delete_credentials_of(&mut self, account: &AccountId) -> Result<(), StoreError>;
}
