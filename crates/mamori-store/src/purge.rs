//! The organization purge's part of the store (DEL-3, DEL-5, DEL-7): the purge request and
//! its lease, the steps done, and the `org.purge_started` webhooks owed to apps with their
//! attempts. Each `purge_org_*` method deletes one kind of the organization's data and is
//! harmless to run again; the ones that may meet many rows take a `limit` and delete one
//! batch. Every method that changes what a check depends on notes it for the change log.

use crate::StoreError;
use async_trait::async_trait;
use mamori_core::{AccountId, AppId, OrgId, Timestamp};

/// One purge: requested, perhaps leased by a node, perhaps finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPurgeRow {
    pub org_id: OrgId,
    pub requested_at: Timestamp,
    pub due_by: Timestamp,
    /// The contract administrator kept despite the purge (DEL-5).
    pub contact_account_id: Option<AccountId>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

/// One step of a purge: `done_at` is `None` while a batched step is under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeStepRow {
    pub step: String,
    pub done_at: Option<Timestamp>,
    pub row_count: i64,
}

/// The webhook owed to one app about one purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeWebhookRow {
    pub org_id: OrgId,
    pub app_id: AppId,
    /// The purge's deadline, from `org_purges`.
    pub due_by: Timestamp,
    pub created_at: Timestamp,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub gave_up_at: Option<Timestamp>,
    pub confirmed_at: Option<Timestamp>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt<'a> {
    pub org_id: &'a OrgId,
    pub app_id: &'a AppId,
    /// 1 for the first attempt.
    pub attempt: i64,
    pub at: Timestamp,
    /// `delivered`, or why not (`http 500`, `connect error`, `no webhook url`, ...).
    pub outcome: &'a str,
    pub delivered: bool,
    /// When to try again; `None` with `delivered` false means giving up.
    pub next_attempt_at: Option<Timestamp>,
}

#[async_trait]
pub trait PurgeStore: Send + Sync {
    async fn org_purge(&self, org: &OrgId) -> Result<Option<OrgPurgeRow>, StoreError>;
    /// Purges not finished, oldest request first.
    async fn open_org_purges(&self, limit: u32) -> Result<Vec<OrgPurgeRow>, StoreError>;
    /// Takes the purge's lease for `owner` when it is free or expired at `now`, or already
    /// `owner`'s; false when another node holds it or the purge is finished.
    async fn claim_org_purge(
        &self,
        org: &OrgId,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Gives the lease up (after a failed step, so another round may retry at once).
    async fn release_org_purge(&self, org: &OrgId, owner: &str) -> Result<(), StoreError>;
    async fn purge_steps(&self, org: &OrgId) -> Result<Vec<PurgeStepRow>, StoreError>;
    async fn purge_webhooks(&self, org: &OrgId) -> Result<Vec<PurgeWebhookRow>, StoreError>;
    /// Webhooks neither delivered nor given up, due at `now` and not leased.
    async fn due_purge_webhooks(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<PurgeWebhookRow>, StoreError>;
    /// Leases one webhook so that one node sends it; false when another holds it.
    async fn claim_purge_webhook(
        &self,
        org: &OrgId,
        app: &AppId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn app_webhook_url(&self, app: &AppId) -> Result<Option<String>, StoreError>;
}

#[async_trait]
pub trait PurgeStoreTx: Send {
    /// Records the purge request unless one exists: queues the webhook for every app enabled
    /// for the organization, notes the contract administrator (its oldest administrator) and
    /// sets the organization's status to `purging`. False when it was requested before.
    async fn begin_org_purge(
        &mut self,
        org: &OrgId,
        requested_at: Timestamp,
        due_by: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Extends the lease while `owner` still holds it; false when it lost it.
    async fn renew_org_purge_lease(
        &mut self,
        org: &OrgId,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Adds `rows` to a step's count, and marks it done at `done_at` when given.
    async fn record_purge_step(
        &mut self,
        org: &OrgId,
        step: &str,
        rows: u64,
        done_at: Option<Timestamp>,
    ) -> Result<(), StoreError>;
    /// Memberships with the team memberships, app selections and audit-viewer grants.
    async fn purge_org_memberships(&mut self, org: &OrgId) -> Result<u64, StoreError>;
    async fn purge_org_teams(&mut self, org: &OrgId) -> Result<u64, StoreError>;
    async fn purge_org_invitations(&mut self, org: &OrgId) -> Result<u64, StoreError>;
    /// The enabled apps and their selected members.
    async fn purge_org_apps(&mut self, org: &OrgId) -> Result<u64, StoreError>;
    /// Up to `limit` relationships, or when none is left up to `limit` containers, each in
    /// the change log; returns how many rows went (0: nothing left).
    async fn purge_org_authz_batch(&mut self, org: &OrgId, limit: u32) -> Result<u64, StoreError>;
    /// Mail sealed under the organization's key, sent or not.
    async fn purge_org_mail(&mut self, org: &OrgId) -> Result<u64, StoreError>;
    /// The organization's own sealed content (its name); the row and its ID stay.
    async fn purge_org_content(&mut self, org: &OrgId) -> Result<u64, StoreError>;
    /// Marks the purge finished and the organization `purged`.
    async fn finish_org_purge(&mut self, org: &OrgId, now: Timestamp) -> Result<(), StoreError>;
    async fn record_webhook_attempt(
        &mut self,
        attempt: &WebhookAttempt<'_>,
    ) -> Result<(), StoreError>;
    /// Records the app's confirmation (the first one counts); `None` when no webhook about
    /// this organization is owed to this app.
    async fn confirm_purge(
        &mut self,
        org: &OrgId,
        app: &AppId,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError>;
    /// Sets or clears an app's webhook URL; false when there is no such app.
    async fn set_app_webhook_url(
        &mut self,
        app: &AppId,
        url: Option<&str>,
    ) -> Result<bool, StoreError>;
}
