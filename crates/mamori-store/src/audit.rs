//! The audit part of the store: hash-chained events, chain heads with their retention anchor,
//! signed checkpoints, and the audit-log viewer right.
//!
//! The store does not compute hashes or check signatures; the service does. It keeps the
//! order: appends to one chain are serialized by the `UPDATE` of the chain's head row.

use crate::StoreError;
use crate::records::*;
use async_trait::async_trait;
use mamori_core::{AccountId, OrgId, Timestamp};

/// What a reader of an organization's trail asked for; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events at or after this time.
    pub from: Option<Timestamp>,
    /// Events before this time.
    pub to: Option<Timestamp>,
    /// Events whose action starts with this text.
    pub action_prefix: Option<String>,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    pub outcome: Option<String>,
}

/// Bounds on `seq`, both exclusive.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqRange {
    pub after: Option<i64>,
    pub before: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOrder {
    NewestFirst,
    OldestFirst,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Every chain's head, by chain name, after `after`.
    async fn audit_chains(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ChainHeadRow>, StoreError>;
    async fn audit_chain(&self, chain: &str) -> Result<Option<ChainHeadRow>, StoreError>;

    /// Events of one chain in `seq` order, from `from_seq` on.
    async fn audit_events(
        &self,
        chain: &str,
        from_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditEventRow>, StoreError>;

    /// Events of one chain in `seq` order, from `from_seq` on, as a page read in place: for
    /// verifying whole chains. Through the engine's own driver where it can (decoding rows
    /// through `Any` costs more than hashing them), and without copying the text of each
    /// column.
    async fn audit_scan_page(
        &self,
        chain: &str,
        from_seq: i64,
        limit: u32,
    ) -> Result<AuditScanPage, StoreError>;

    /// Events of one chain matching `filter` with `seq` inside `seqs`, newest first or oldest
    /// first.
    async fn audit_events_page(
        &self,
        chain: &str,
        filter: &AuditFilter,
        seqs: SeqRange,
        order: SeqOrder,
        limit: u32,
    ) -> Result<Vec<AuditEventRow>, StoreError>;

    /// Checkpoints of one chain in `seq` order, from `from_seq` on.
    async fn audit_checkpoints(
        &self,
        chain: &str,
        from_seq: i64,
        limit: u32,
    ) -> Result<Vec<CheckpointRow>, StoreError>;

    /// Chains whose head moved past their last checkpoint by at least `min_events` events, or
    /// by any number if that checkpoint is older than `stale_before`.
    async fn chains_due_for_checkpoint(
        &self,
        min_events: i64,
        stale_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<ChainHeadRow>, StoreError>;

    /// Chains holding events stored before `cutoff`.
    async fn chains_with_events_before(
        &self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;

    /// Whether `account` holds the viewer right in `org`, itself or through one of its teams.
    async fn is_audit_viewer(&self, org: &OrgId, account: &AccountId) -> Result<bool, StoreError>;
    async fn audit_viewers(&self, org: &OrgId) -> Result<Vec<AuditViewerRow>, StoreError>;
}

#[async_trait]
pub trait AuditStoreTx: Send {
    /// Moves the chain's head `count` steps (creating the chain when it is new) and returns
    /// the first new event's `seq` and `prev_hash`.
    async fn advance_audit_chain(
        &mut self,
        chain: &str,
        count: u32,
    ) -> Result<ChainPosition, StoreError>;
    /// Stores events of one chain at the positions [`AuditStoreTx::advance_audit_chain`] gave,
    /// in `seq` order, and makes the last one's hash the chain's head.
    async fn insert_audit_events(&mut self, events: &[AuditEventRow]) -> Result<(), StoreError>;

    /// The name of an actor as it is stored now: an account's display name (sealed under the
    /// account's key), or an operator token's or an app's name.
    async fn actor_name_as_stored(
        &mut self,
        actor_type: &str,
        actor_id: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Stores a checkpoint and marks the chain's head as checkpointed; a checkpoint already
    /// there for the same `(chain, seq)` is left as it is.
    async fn insert_audit_checkpoint(
        &mut self,
        checkpoint: &CheckpointRow,
    ) -> Result<(), StoreError>;

    /// Deletes the chain's events up to `up_to_seq` and the checkpoints up to it, moves the
    /// chain's anchor there, and stores `sign(anchor hash)`, the signature of the purge, as the
    /// checkpoint at `up_to_seq` (replacing one already there). Returns how many events were
    /// deleted. Locks the head first.
    async fn purge_audit_prefix(
        &mut self,
        chain: &str,
        up_to_seq: i64,
        sign: &(dyn for<'h> Fn(&'h str) -> CheckpointRow + Send + Sync),
    ) -> Result<u64, StoreError>;
    /// The first `seq` above the anchor whose event was stored at or after `cutoff` (or the
    /// last `seq` plus one when none was), under the head's lock.
    async fn first_audit_seq_at_or_after(
        &mut self,
        chain: &str,
        cutoff: Timestamp,
    ) -> Result<i64, StoreError>;

    /// Whether `app` may write to the trail of organization `org`: the organization is active
    /// and enabled the app.
    async fn app_may_write(&mut self, org: &str, app: &str) -> Result<bool, StoreError>;

    /// Grants the viewer right; false when it was already held.
    async fn grant_audit_viewer(&mut self, viewer: &AuditViewerRow) -> Result<bool, StoreError>;
    /// Revokes it; false when it was not held.
    async fn revoke_audit_viewer(
        &mut self,
        org: &OrgId,
        subject_type: &str,
        subject_id: &str,
    ) -> Result<bool, StoreError>;
}

/// A page of a chain's events read for verification: the driver's rows as they came, read in
/// place by [`AuditScanPage::event`]. It can be moved to another thread, so one page is
/// checked while the next is read.
pub struct AuditScanPage {
    pub(crate) rows: ScanRows,
}

pub(crate) enum ScanRows {
    Sqlite(Vec<sqlx::sqlite::SqliteRow>),
    Postgres(Vec<sqlx::postgres::PgRow>),
}

/// One event of an [`AuditScanPage`], borrowed from it: every stored column.
#[derive(Debug, Clone, Copy)]
pub struct AuditEventRef<'a> {
    pub id: &'a str,
    pub chain: &'a str,
    pub seq: i64,
    pub org_id: Option<&'a str>,
    pub actor_type: &'a str,
    pub actor_id: Option<&'a str>,
    pub actor_name_sealed: Option<&'a str>,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub outcome: &'a str,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub occurred_at: Timestamp,
    pub details: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

/// Reads the columns in the order of the scan's `SELECT` (the same for every driver).
macro_rules! event_ref {
    ($row:expr) => {{
        let row = $row;
        AuditEventRef {
            id: row.try_get(0)?,
            chain: row.try_get(1)?,
            seq: row.try_get(2)?,
            org_id: row.try_get(3)?,
            actor_type: row.try_get(4)?,
            actor_id: row.try_get(5)?,
            actor_name_sealed: row.try_get(6)?,
            action: row.try_get(7)?,
            target_type: row.try_get(8)?,
            target_id: row.try_get(9)?,
            outcome: row.try_get(10)?,
            ip: row.try_get(11)?,
            user_agent: row.try_get(12)?,
            request_id: row.try_get(13)?,
            occurred_at: Timestamp::from_millis(row.try_get(14)?),
            details: row.try_get(15)?,
            prev_hash: row.try_get(16)?,
            hash: row.try_get(17)?,
        }
    }};
}

impl AuditScanPage {
    pub fn len(&self) -> usize {
        match &self.rows {
            ScanRows::Sqlite(rows) => rows.len(),
            ScanRows::Postgres(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `index`th event of the page.
    pub fn event(&self, index: usize) -> Result<AuditEventRef<'_>, StoreError> {
        use sqlx::Row as _;
        let missing = || StoreError::Corrupt(format!("scan page has no row {index}"));
        Ok(match &self.rows {
            ScanRows::Sqlite(rows) => event_ref!(rows.get(index).ok_or_else(missing)?),
            ScanRows::Postgres(rows) => event_ref!(rows.get(index).ok_or_else(missing)?),
        })
    }
}
