//! The access-log part of the store (LOG-1, LOG-2): one row per HTTP request, in a table of
//! its own, apart from the audit trail and never joined with it.
//!
//! These are plain writes on the pool, outside any [`crate::StoreTx`]: a request's log row is
//! not part of the request's change, and the server writes rows in batches after the fact.

use crate::StoreError;
use async_trait::async_trait;
use mamori_core::Timestamp;

/// One HTTP request as logged. Organization and principal IDs are stored as text: they name
/// what the request named, which may not exist (any more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogRow {
    /// The zero-padded time and random characters, so IDs sort by time.
    pub id: String,
    pub logged_at: Timestamp,
    pub method: String,
    pub path: String,
    /// The query string with secret values replaced; `None` when there was none.
    pub query: Option<String>,
    pub status: u16,
    pub latency_us: i64,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// `account`, `operator` or `app`.
    pub principal_type: Option<String>,
    pub principal_id: Option<String>,
    pub org_id: Option<String>,
    pub request_id: Option<String>,
}

/// What to select; every field that is set must match. `from` is inclusive, `to` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLogFilter {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub method: Option<String>,
    pub status: Option<u16>,
    /// Paths that start with this, compared exactly (case matters).
    pub path_prefix: Option<String>,
    pub principal_id: Option<String>,
    pub org_id: Option<String>,
}

#[async_trait]
pub trait AccessLogStore: Send + Sync {
    /// Stores the rows in one transaction, as few multi-row `INSERT`s as the engines' limits on
    /// bound parameters allow.
    async fn insert_access_logs(&self, rows: &[AccessLogRow]) -> Result<(), StoreError>;

    /// Rows matching `filter`, newest first (time, then ID, both descending), strictly before
    /// the position `after` (time, ID) when given.
    async fn access_logs(
        &self,
        filter: &AccessLogFilter,
        after: Option<(Timestamp, &str)>,
        limit: u32,
    ) -> Result<Vec<AccessLogRow>, StoreError>;

    /// Deletes at most `limit` of the oldest rows logged before `cutoff`; returns how many.
    /// Bounded, so one call never holds the database for long; call again until it returns
    /// less than `limit`.
    async fn delete_access_logs_before(
        &self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError>;
}
