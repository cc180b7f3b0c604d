//! The access log as the operator reads it (`GET /api/v1/operator/access-logs`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One HTTP request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AccessLog {
    pub id: String,
    /// When the request arrived; RFC 3339, UTC.
    pub logged_at: String,
    pub method: String,
    pub path: String,
    /// The query string with secret values replaced by `REDACTED`.
    pub query: Option<String>,
    pub status: u16,
    /// Microseconds from the request's arrival to its answer.
    pub latency_us: i64,
    /// The client's address, behind trusted proxies the address they report.
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// `account`, `operator` or `app`, when the request authenticated.
    pub principal_type: Option<String>,
    /// `acc_...`, `opt_...` or `app_...`.
    pub principal_id: Option<String>,
    /// The organization named in the path, `org_...`.
    pub org_id: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AccessLogPage {
    /// Newest first.
    pub items: Vec<AccessLog>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
