//! The data lifecycle (issue 6): an organization's lifecycle with its dates, contract events,
//! the deletion request and the operator's evidence report.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `DELETE /api/v1/orgs/{org}`: the contract administrator's password, checked again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteOrgRequest {
    pub password: String,
}

/// `POST /api/v1/operator/orgs/{org}/contract`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractEventRequest {
    /// `trial_started`, `trial_ended`, `subscribed`, `renewed`, `suspended`, `reinstated`,
    /// `cancelled` or `plan_changed`.
    pub event: String,
    /// When it happened; RFC 3339, not in the future.
    pub at: String,
    /// The trial end (`trial_started`) or the contract period end (`subscribed`, `renewed`).
    #[serde(default)]
    pub period_end: Option<String>,
    /// The plan kind for `trial_started` (`trial`, `classic_trial`), `subscribed` (`paid`,
    /// `classic_paid`) and `plan_changed` (`free`, `classic_free`).
    #[serde(default)]
    pub plan: Option<String>,
}

/// The next scheduled transition.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NextTransition {
    /// The state (or `asked_to_continue`) it leads to.
    pub to: String,
    pub at: String,
}

/// An organization's lifecycle: its state, plan and the concrete dates the policy gives.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Lifecycle {
    pub org_id: String,
    /// `active`, `trial_expired`, `suspended`, `deleted`, `purging` or `purged`.
    pub state: String,
    /// `free`, `trial`, `paid`, `classic_paid`, `classic_trial` or `classic_free`.
    pub plan: String,
    /// The deletion policy in force.
    pub policy: String,
    pub trial_started_at: Option<String>,
    pub trial_ends_at: Option<String>,
    pub period_ends_at: Option<String>,
    pub suspended_at: Option<String>,
    /// When the organization is (or was) deleted automatically.
    pub deletion_due_at: Option<String>,
    /// `admin`, `cancelled`, `trial_expired`, `suspended` or `unused`.
    pub deletion_reason: Option<String>,
    pub deleted_at: Option<String>,
    /// The purge starts on this date ...
    pub purge_starts_at: Option<String>,
    /// ... and completes by this one.
    pub purge_due_by: Option<String>,
    /// When the purge of its audit logs starts (AUD-3).
    pub audit_purge_starts_at: Option<String>,
    pub purge_started_at: Option<String>,
    pub purged_at: Option<String>,
    /// terms-v3: when the organization was asked whether it wants to continue.
    pub continue_asked_at: Option<String>,
    pub next_transition: Option<NextTransition>,
}

/// One deadline and whether it was met.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Deadline {
    /// `automatic_deletion`, `purge_start`, `purge_complete` or `app_confirmed` (an app's
    /// confirmation that it deleted the organization's data, DEL-7).
    pub name: String,
    /// For `app_confirmed`: the app, `app_...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Not before this.
    pub due_at: String,
    /// Not after this.
    pub deadline: String,
    pub done_at: Option<String>,
    /// `met`, `pending`, `missed` or `early`.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LifecycleReportItem {
    pub lifecycle: Lifecycle,
    pub deadlines: Vec<Deadline>,
    /// The purge, once requested: its steps (with rows removed) and each app's webhook and
    /// confirmation.
    pub purge: Option<crate::Purge>,
}

/// `GET /api/v1/operator/lifecycle/report`: the evidence of the deletion promises.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LifecycleReport {
    pub generated_at: String,
    pub policy: String,
    /// Every deadline with a verdict was met.
    pub all_met: bool,
    pub items: Vec<LifecycleReportItem>,
}

/// One recorded contract event (kept as history, exempt from deletion).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ContractEvent {
    pub event: String,
    pub at: String,
    pub period_end: Option<String>,
    pub recorded_at: String,
    /// The operator token's ID, or `command_line`.
    pub recorded_by: String,
}

/// `GET /api/v1/operator/orgs/{org}/lifecycle`: the lifecycle in any state, with the contract
/// history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct OperatorLifecycle {
    pub lifecycle: Lifecycle,
    /// Oldest first.
    pub contract_events: Vec<ContractEvent>,
}
