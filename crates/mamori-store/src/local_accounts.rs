//! Organization-local accounts (ACC-7): the tie between an account and the one organization
//! it belongs to, its login name there, and whether its password is still the initial one.
//! The login ID arrives as a blind index and sealed; this module never sees it in plaintext.

use crate::{AccountRow, StoreError};
use async_trait::async_trait;
use mamori_core::{AccountId, OrgId, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAccountRow {
    pub account_id: AccountId,
    pub org_id: OrgId,
    /// The keyed blind index of the organization's ID and the canonical login ID.
    pub login_index: String,
    /// The login ID, sealed under the account's data key.
    pub login_id_sealed: String,
    /// The password is an initial one: a log-in with it must set a new one first.
    pub must_change_password: bool,
    /// Until when the initial password works (with `must_change_password`).
    pub initial_password_expires_at: Option<Timestamp>,
    pub created_by: Option<AccountId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Reads on the pool.
#[async_trait]
pub trait LocalAccountStore: Send + Sync {
    /// The local-account row of this account, if it is one.
    async fn local_account(
        &self,
        account: &AccountId,
    ) -> Result<Option<LocalAccountRow>, StoreError>;
    /// The local account with this login name, with its (active) account row.
    async fn local_account_by_login(
        &self,
        login_index: &str,
    ) -> Result<Option<(LocalAccountRow, AccountRow)>, StoreError>;
    /// The organization's local accounts with their account rows, by account ID, after
    /// `after` when given.
    async fn local_accounts_of_org(
        &self,
        org: &OrgId,
        after: Option<&AccountId>,
        limit: u32,
    ) -> Result<Vec<(LocalAccountRow, AccountRow)>, StoreError>;
}

/// Writes inside one transaction. Every method that changes an account row or deletes
/// sessions or tokens notes the account for the credential cache.
#[async_trait]
pub trait LocalAccountStoreTx: Send {
    /// `Conflict` when the organization has this login ID already.
    async fn insert_local_account(&mut self, row: &LocalAccountRow) -> Result<(), StoreError>;
    /// The local-account row of `account` in `org`, read inside the transaction.
    async fn local_account_in_tx(
        &mut self,
        org: &OrgId,
        account: &AccountId,
    ) -> Result<Option<LocalAccountRow>, StoreError>;
    /// Gives the account a new initial password, valid until `expires_at`, and revokes every
    /// session, personal access token and pending log-in challenge of it. Returns how many
    /// sessions and tokens ended; `NotFound` when the account is not active.
    async fn set_initial_password(
        &mut self,
        account: &AccountId,
        password_hash: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Replaces an initial password with the holder's own; false when the password was not
    /// an initial one any more (another request changed it first).
    async fn set_own_password(
        &mut self,
        account: &AccountId,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Deletes the local-account row (its login ID becomes free); false when there was none.
    async fn delete_local_account(&mut self, account: &AccountId) -> Result<bool, StoreError>;
    /// Deletes every local account of the organization, for its purge: each account row is
    /// reduced to its ID tombstone, its sessions, personal access tokens, log-in challenges,
    /// two-step enrolment, recovery codes and account tokens are deleted, its data key's
    /// destruction is requested, and its local-account row goes. Memberships are left to the
    /// caller. Returns the accounts deleted now (none on a second call).
    async fn delete_org_local_accounts(
        &mut self,
        org: &OrgId,
        now: Timestamp,
    ) -> Result<Vec<AccountId>, StoreError>;
}
