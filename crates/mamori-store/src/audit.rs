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

    /// Reads one chain's events with `seq` in `seqs`, in `seq` order, for verifying it: one
    /// query (one snapshot) through the engine's own driver (rusqlite on SQLite, a binary
    /// `COPY` on PostgreSQL), on a task of its own that hands over pages while the caller
    /// checks the one before. Dropping the [`AuditScan`] stops the reading. The verifier
    /// bounds it by the head it read, so events appended meanwhile are not taken for a head
    /// that names another hash.
    async fn audit_scan(
        &self,
        chain: &str,
        seqs: std::ops::RangeInclusive<i64>,
    ) -> Result<AuditScan, StoreError>;

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

/// Events a page holds at most, and text bytes: a page is handed over at whichever comes first.
pub(crate) const SCAN_PAGE_ROWS: usize = 8192;
const SCAN_PAGE_BYTES: usize = 16 << 20;
/// Pages read ahead of the one being checked.
pub(crate) const SCAN_PAGES_AHEAD: usize = 2;

/// The columns of a scan, in the order of its `SELECT`: `seq` and `occurred_at`, then the
/// text columns in the order of [`ScanText`].
pub(crate) const SCAN_COLUMNS: &str = "seq, occurred_at, id, chain, org_id, actor_type, actor_id, \
    actor_name_sealed, action, target_type, target_id, outcome, ip, user_agent, request_id, \
    details, prev_hash, hash";

/// The text columns of a scanned event, by their place in [`SCAN_COLUMNS`] after the two
/// numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ScanText {
    Id,
    Chain,
    OrgId,
    ActorType,
    ActorId,
    ActorNameSealed,
    Action,
    TargetType,
    TargetId,
    Outcome,
    Ip,
    UserAgent,
    RequestId,
    Details,
    PrevHash,
    Hash,
}

pub(crate) const SCAN_TEXT_COLUMNS: usize = 16;
/// Text columns that are `NOT NULL` in the schema: a NULL read there is a corrupt row.
const SCAN_REQUIRED: [ScanText; 8] = [
    ScanText::Id,
    ScanText::Chain,
    ScanText::ActorType,
    ScanText::Action,
    ScanText::Outcome,
    ScanText::Details,
    ScanText::PrevHash,
    ScanText::Hash,
];

/// A chain being read for verification (see [`AuditStore::audit_scan`]).
pub struct AuditScan {
    pub(crate) pages: tokio::sync::mpsc::Receiver<Result<AuditScanPage, StoreError>>,
}

impl AuditScan {
    /// The next page, or `None` when the chain has been read to its end.
    pub async fn next_page(&mut self) -> Option<Result<AuditScanPage, StoreError>> {
        self.pages.recv().await
    }
}

/// A page of a chain's events: every row's text in one buffer, each column a span of it, so a
/// page is a few allocations whatever its rows, and can be checked on other threads.
#[derive(Default)]
pub struct AuditScanPage {
    text: String,
    rows: Vec<ScanRow>,
}

/// A text column's place in the page's buffer; `NULL_SPAN` when the column is NULL.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

const NULL_SPAN: Span = Span {
    start: u32::MAX,
    end: u32::MAX,
};

struct ScanRow {
    seq: i64,
    occurred_at: i64,
    text: [Span; SCAN_TEXT_COLUMNS],
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

impl AuditScanPage {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Hands the page over, leaving an empty one in its place with room for as much: pages
    /// of one chain are much alike, and growing a buffer row by row copies it again and again.
    pub(crate) fn take(&mut self) -> AuditScanPage {
        let next = AuditScanPage {
            text: String::with_capacity(self.text.len().min(SCAN_PAGE_BYTES) + 4096),
            rows: Vec::with_capacity(self.rows.len().min(SCAN_PAGE_ROWS) + 1),
        };
        std::mem::replace(self, next)
    }

    /// Whether the page should be handed over before another row is added.
    pub(crate) fn is_full(&self) -> bool {
        self.rows.len() >= SCAN_PAGE_ROWS || self.text.len() >= SCAN_PAGE_BYTES
    }

    /// Adds a row read by a driver; `text` has the text columns in [`ScanText`] order. A NULL
    /// where the schema forbids one is refused as a corrupt row.
    pub(crate) fn push(
        &mut self,
        seq: i64,
        occurred_at: i64,
        text: [Option<&str>; SCAN_TEXT_COLUMNS],
    ) -> Result<(), StoreError> {
        if let Some(column) = SCAN_REQUIRED
            .iter()
            .find(|column| text[**column as usize].is_none())
        {
            return Err(StoreError::Corrupt(format!(
                "audit event seq {seq} has no {column:?}"
            )));
        }
        let mut spans = [NULL_SPAN; SCAN_TEXT_COLUMNS];
        for (span, value) in spans.iter_mut().zip(text) {
            if let Some(value) = value {
                let start = self.text.len();
                self.text.push_str(value);
                let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(self.text.len()))
                else {
                    return Err(StoreError::Corrupt(format!(
                        "audit event seq {seq} does not fit a scan page"
                    )));
                };
                *span = Span { start, end };
            }
        }
        self.rows.push(ScanRow {
            seq,
            occurred_at,
            text: spans,
        });
        Ok(())
    }

    /// The `index`th event of the page.
    pub fn event(&self, index: usize) -> Result<AuditEventRef<'_>, StoreError> {
        let row = self
            .rows
            .get(index)
            .ok_or_else(|| StoreError::Corrupt(format!("scan page has no row {index}")))?;
        let text = |column: ScanText| -> Option<&str> {
            let span = row.text[column as usize];
            (span.start != u32::MAX).then(|| &self.text[span.start as usize..span.end as usize])
        };
        // `push` refused rows without the required columns.
        let required = |column: ScanText| text(column).unwrap_or_default();
        Ok(AuditEventRef {
            id: required(ScanText::Id),
            chain: required(ScanText::Chain),
            seq: row.seq,
            org_id: text(ScanText::OrgId),
            actor_type: required(ScanText::ActorType),
            actor_id: text(ScanText::ActorId),
            actor_name_sealed: text(ScanText::ActorNameSealed),
            action: required(ScanText::Action),
            target_type: text(ScanText::TargetType),
            target_id: text(ScanText::TargetId),
            outcome: required(ScanText::Outcome),
            ip: text(ScanText::Ip),
            user_agent: text(ScanText::UserAgent),
            request_id: text(ScanText::RequestId),
            occurred_at: Timestamp::from_millis(row.occurred_at),
            details: required(ScanText::Details),
            prev_hash: required(ScanText::PrevHash),
            hash: required(ScanText::Hash),
        })
    }
}
