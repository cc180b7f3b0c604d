//! Access control for apps' containers (`/api/v1/authz/...`, app token; and the operator's
//! `/api/v1/operator/apps/{app}/authz-types/{name}`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One relationship: `resource#relation@subject`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Relationship {
    /// `type:id`, e.g. `project:p1`.
    pub resource: String,
    /// A relation of the type, e.g. `member`.
    pub relation: String,
    /// `account:ID`, `team:ID#member`, `org:ID#member`, `org:ID#admin` or `type:id#name`.
    pub subject: String,
}

/// Writes and deletes for one organization, all or nothing (deletes first).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteRelationshipsRequest {
    pub org_id: String,
    #[serde(default)]
    pub writes: Vec<Relationship>,
    #[serde(default)]
    pub deletes: Vec<Relationship>,
}

/// The revision a change or an answer reflects; pass it back to read at least that fresh.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ConsistencyToken {
    pub consistency_token: String,
}

/// Deletes a container and every relationship on it or naming it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteContainerRequest {
    pub resource: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub resource: String,
    pub permission: String,
    /// `account:ID`.
    pub subject: String,
    pub consistency_token: Option<String>,
    /// Also say which path granted access, or why none did.
    #[serde(default)]
    pub explain: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CheckExplanation {
    pub reason: String,
    /// From the container to the account, e.g. `["folder:f1#view", "folder:f1#viewer",
    /// "team:T#member"]`; empty when denied.
    pub path: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CheckResult {
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<CheckExplanation>,
    pub consistency_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBulkItem {
    pub resource: String,
    pub permission: String,
    pub subject: String,
    #[serde(default)]
    pub explain: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBulkRequest {
    pub items: Vec<CheckBulkItem>,
    pub consistency_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CheckBulkItemResult {
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<CheckExplanation>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CheckBulkResult {
    pub items: Vec<CheckBulkItemResult>,
    pub consistency_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupResourcesRequest {
    /// `account:ID`.
    pub subject: String,
    pub resource_type: String,
    pub permission: String,
    pub consistency_token: Option<String>,
    /// 1 to 500; default 50.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupSubjectsRequest {
    pub resource: String,
    pub permission: String,
    pub consistency_token: Option<String>,
    /// 1 to 500; default 50.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A page of objects (`type:id`) or subjects (`account:ID`), sorted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LookupPage {
    pub items: Vec<String>,
    pub next_cursor: Option<String>,
    pub consistency_token: String,
}

/// A container type in the text form of `docs/authz-schema.md`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutAuthzTypeRequest {
    pub definition: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuthzType {
    pub app_id: String,
    pub name: String,
    /// The definition as stored (normalized).
    pub definition: String,
}
