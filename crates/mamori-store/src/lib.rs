//! Storage for Mamori: the [`Store`] trait the service layer talks to, its records and
//! errors, one implementation in portable SQL for SQLite and PostgreSQL, and a conformance
//! suite every engine must pass against a real database.
//!
//! This crate holds no business rules: it does not decide who may do what. It never sees an
//! email address, a person's name or an organization's content in plaintext: the service seals
//! them before they get here. (Request metadata such as client IPs is stored as given.)

mod access_logs;
mod audit;
mod authz;
mod cache;
pub mod conformance;
mod credentials;
pub mod db;
mod error;
mod lifecycle;
mod local_accounts;
mod orgs;
mod purge;
mod records;
mod recovery;
mod sql;

pub use access_logs::{AccessLogFilter, AccessLogRow, AccessLogStore};
pub use audit::{
    AuditEventRef, AuditFilter, AuditScan, AuditScanPage, AuditStore, AuditStoreTx, SeqOrder,
    SeqRange,
};
pub use authz::{
    AuthzChange, AuthzObjectRow, AuthzStore, AuthzStoreTx, AuthzTypeRow, ChangePage, DirectoryRows,
    RelationshipRow,
};
pub use credentials::{
    CredentialStore, CredentialStoreTx, LoginChallengeRow, PersonalTokenRow, TwoStepRow,
};
pub use db::{Engine, connect, data_migrator};
pub use error::StoreError;
pub use lifecycle::{ContractEventRow, LifecycleStore, LifecycleStoreTx, OrgLifecycleRow};
pub use local_accounts::{LocalAccountRow, LocalAccountStore, LocalAccountStoreTx};
pub use orgs::{OrgStore, OrgStoreTx};
pub use purge::{
    OrgPurgeRow, PurgeStepRow, PurgeStore, PurgeStoreTx, PurgeWebhookRow, WebhookAttempt,
};
pub use records::*;
pub use recovery::{AccountTokenRow, LoginAttempt, RecoveryStore, RecoveryStoreTx, TokenPurpose};
pub use sql::SqlStore;

use async_trait::async_trait;
use mamori_core::{AccountId, MailId, SessionId, Timestamp};

/// Reads that need no transaction, and the way into one.
#[async_trait]
pub trait Store:
    OrgStore
    + AuditStore
    + AccessLogStore
    + RecoveryStore
    + AuthzStore
    + CredentialStore
    + LocalAccountStore
    + PurgeStore
    + LifecycleStore
    + Send
    + Sync
{
    fn engine(&self) -> Engine;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Begins a write transaction. Nothing is visible to others before [`StoreTx::commit`];
    /// dropping the transaction rolls it back.
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError>;

    async fn account(&self, id: &AccountId) -> Result<Option<AccountRow>, StoreError>;
    async fn account_by_email_index(
        &self,
        email_index: &str,
    ) -> Result<Option<AccountRow>, StoreError>;

    async fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<SessionRow>, StoreError>;
    /// Records that a session was used; a plain update outside any transaction.
    async fn touch_session(&self, id: &SessionId, now: Timestamp) -> Result<(), StoreError>;

    /// [`Store::session_by_token_hash`], answered from memory when the credential cache may
    /// (see `cache`): the row may be up to one sync behind another node's writes, so a caller
    /// that would refuse on what it returns asks [`Store::session_by_token_hash`] first.
    async fn cached_session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<SessionRow>, StoreError>;

    /// [`Store::account`] through the credential cache.
    async fn cached_account(&self, id: &AccountId) -> Result<Option<AccountRow>, StoreError>;

    /// [`Store::operator_token_by_hash`] through the credential cache.
    async fn cached_operator_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<OperatorTokenRow>, StoreError>;

    /// [`Store::app_by_secret_hash`] through the credential cache.
    async fn cached_app_by_secret_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<AppRow>, StoreError>;

    /// Brings the credential cache in step with other processes' changes, and lets it answer
    /// for a while; without calls to this (the command line) it never answers. `serve` calls
    /// it every 250 ms.
    async fn sync_credential_cache(&self) -> Result<(), StoreError>;
    /// The account's live sessions (created after `created_after` and seen after
    /// `seen_after`), oldest first, after the position `after` (creation time, ID) when given.
    /// The position is the cursor itself, so a page works even once that session is gone.
    async fn sessions_of(
        &self,
        account: &AccountId,
        created_after: Timestamp,
        seen_after: Timestamp,
        after: Option<(Timestamp, &SessionId)>,
        limit: u32,
    ) -> Result<Vec<SessionRow>, StoreError>;
    /// Deletes sessions past their lifetime or idle timeout; returns how many.
    async fn delete_expired_sessions(
        &self,
        created_before: Timestamp,
        seen_before: Timestamp,
    ) -> Result<u64, StoreError>;

    async fn operator_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<OperatorTokenRow>, StoreError>;
    async fn app_by_secret_hash(&self, secret_hash: &str) -> Result<Option<AppRow>, StoreError>;

    async fn pending_key_destructions(&self, limit: u32) -> Result<Vec<String>, StoreError>;
    async fn complete_key_destruction(&self, owner: &str) -> Result<(), StoreError>;

    /// Pending mail due at `now`, oldest first.
    async fn due_mail(&self, now: Timestamp, limit: u32) -> Result<Vec<MailRow>, StoreError>;
    /// Takes a lease on one message so that only one node sends it; false when another holds it.
    async fn claim_mail(
        &self,
        id: &MailId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn mark_mail_sent(&self, id: &MailId, now: Timestamp) -> Result<(), StoreError>;
    async fn mark_mail_retry(
        &self,
        id: &MailId,
        attempts: i64,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> Result<(), StoreError>;
    async fn mark_mail_failed(
        &self,
        id: &MailId,
        attempts: i64,
        error: &str,
    ) -> Result<(), StoreError>;
    /// The outbox, newest first.
    async fn mail(&self, limit: u32) -> Result<Vec<MailRow>, StoreError>;
    /// Deletes sent and failed messages created before `before`; returns how many.
    async fn delete_finished_mail(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// Writes, inside one transaction. Every use case writes its audit event through the same
/// transaction as its change.
#[async_trait]
pub trait StoreTx:
    OrgStoreTx
    + AuditStoreTx
    + RecoveryStoreTx
    + AuthzStoreTx
    + CredentialStoreTx
    + LocalAccountStoreTx
    + PurgeStoreTx
    + LifecycleStoreTx
    + Send
{
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
    /// Commits, returning the access-control revision this transaction wrote, if it changed
    /// anything a check depends on (see [`AuthzStore`]).
    async fn commit_with_revision(self: Box<Self>) -> Result<Option<i64>, StoreError>;

    async fn insert_account(&mut self, account: &AccountRow) -> Result<(), StoreError>;
    async fn update_display_name(
        &mut self,
        id: &AccountId,
        display_name_sealed: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    async fn update_password_hash(
        &mut self,
        id: &AccountId,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Leaves only an ID tombstone: every personal column is cleared.
    async fn tombstone_account(&mut self, id: &AccountId, now: Timestamp)
    -> Result<(), StoreError>;

    async fn insert_session(&mut self, session: &SessionRow) -> Result<(), StoreError>;
    /// Deletes one session of this account; false when there was none.
    async fn delete_session(
        &mut self,
        account: &AccountId,
        id: &SessionId,
    ) -> Result<bool, StoreError>;
    /// Deletes every session of the account but `keep`; returns how many.
    async fn delete_sessions_of(
        &mut self,
        account: &AccountId,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError>;

    async fn insert_operator_token(&mut self, token: &OperatorTokenRow) -> Result<(), StoreError>;
    async fn insert_app(&mut self, app: &AppRow) -> Result<(), StoreError>;

    async fn request_key_destruction(
        &mut self,
        owner: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Marks the account's email address as proven to reach its holder.
    async fn mark_email_verified(
        &mut self,
        id: &AccountId,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Puts a message in the outbox; it is sent only if this transaction commits.
    async fn insert_mail(&mut self, mail: &MailRow) -> Result<(), StoreError>;
}
