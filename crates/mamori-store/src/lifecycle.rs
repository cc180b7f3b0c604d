//! The data lifecycle's part of the store (issue 6): each organization's contract and
//! lifecycle state with its dates, and the history of contract events, which no purge
//! deletes (DEL-5).

use crate::StoreError;
use async_trait::async_trait;
use mamori_core::{OrgId, Timestamp};

/// One organization's contract and lifecycle state. The service decides every field; the
/// store only keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgLifecycleRow {
    pub org_id: OrgId,
    pub state: String,
    pub plan: String,
    pub trial_started_at: Option<Timestamp>,
    pub trial_ends_at: Option<Timestamp>,
    pub period_ends_at: Option<Timestamp>,
    pub suspended_at: Option<Timestamp>,
    pub deletion_due_at: Option<Timestamp>,
    pub deletion_reason: Option<String>,
    pub deleted_at: Option<Timestamp>,
    pub purge_starts_at: Option<Timestamp>,
    pub purge_due_by: Option<Timestamp>,
    pub audit_purge_starts_at: Option<Timestamp>,
    pub purge_started_at: Option<Timestamp>,
    pub purged_at: Option<Timestamp>,
    /// When the organization's own audit trail was purged (AUD-3).
    pub audit_purged_at: Option<Timestamp>,
    pub notice_sent_for: Option<String>,
    pub continue_asked_at: Option<Timestamp>,
    pub last_confirmed_at: Option<Timestamp>,
    pub version: i64,
    pub updated_at: Timestamp,
}

/// One contract event as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractEventRow {
    pub id: String,
    pub org_id: OrgId,
    pub event: String,
    pub at: Timestamp,
    pub period_end: Option<Timestamp>,
    pub recorded_at: Timestamp,
    pub recorded_by: String,
}

#[async_trait]
pub trait LifecycleStore: Send + Sync {
    async fn org_lifecycle(&self, org: &OrgId) -> Result<Option<OrgLifecycleRow>, StoreError>;
    /// Lifecycle rows by organization ID after `after`, `limit` of them; `purged` ones only
    /// when `include_purged`.
    async fn org_lifecycles(
        &self,
        after: Option<&OrgId>,
        limit: u32,
        include_purged: bool,
    ) -> Result<Vec<OrgLifecycleRow>, StoreError>;
    /// The organization's contract events, oldest first.
    async fn contract_events(&self, org: &OrgId) -> Result<Vec<ContractEventRow>, StoreError>;
}

#[async_trait]
pub trait LifecycleStoreTx: Send {
    async fn org_lifecycle_in_tx(
        &mut self,
        org: &OrgId,
    ) -> Result<Option<OrgLifecycleRow>, StoreError>;
    /// Writes `row` if the stored version is still `expected` (`None`: no row yet); false
    /// when someone else wrote first, and then nothing changed.
    async fn save_org_lifecycle(
        &mut self,
        row: &OrgLifecycleRow,
        expected: Option<i64>,
    ) -> Result<bool, StoreError>;
    async fn insert_contract_event(&mut self, event: &ContractEventRow) -> Result<(), StoreError>;
    /// Sets `organizations.status`, which closes or opens the organization to its members
    /// and apps, and tells the access-control index.
    async fn set_org_status(
        &mut self,
        org: &OrgId,
        status: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
}
