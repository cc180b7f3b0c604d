//! The organization purge (DEL-3, DEL-7): the operator's request and view, apps' webhook URL
//! and their confirmations.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/operator/orgs/{org}/purge`: `confirm` repeats the organization's ID.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    pub confirm: String,
}

/// A purge: when it was asked for, its deadline, the steps done and the apps' answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Purge {
    pub org_id: String,
    /// RFC 3339.
    pub requested_at: String,
    pub due_by: String,
    pub finished_at: Option<String>,
    /// The contract administrator kept despite the purge (DEL-5).
    pub contact_account_id: Option<String>,
    pub steps: Vec<PurgeStep>,
    pub apps: Vec<PurgeApp>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PurgeStep {
    pub name: String,
    /// Null while the step is under way.
    pub done_at: Option<String>,
    pub rows: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PurgeApp {
    pub app_id: String,
    pub webhook_delivered_at: Option<String>,
    pub attempts: i64,
    pub webhook_gave_up_at: Option<String>,
    pub confirmed_at: Option<String>,
    /// Not confirmed by the purge's deadline.
    pub overdue: bool,
}

/// `PUT /api/v1/operator/apps/{app}/webhook`: an `http` or `https` URL; `null` clears it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetWebhookRequest {
    pub url: Option<String>,
}

/// `PUT /api/v1/operator/apps/{app}/webhook`: the URL set, and the secret the app verifies
/// each webhook's signature with (`Mamori-Webhook-Signature: v1=<hex HMAC-SHA256 keyed with the
/// secret's bytes, over timestamp + "." + body>`); both `null` when cleared.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct WebhookSettings {
    pub url: Option<String>,
    /// `mmw_...`; give it to the app, keep it out of logs.
    pub signing_secret: Option<String>,
}

/// `POST /api/v1/app/purge-confirmations`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeConfirmationRequest {
    pub org_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PurgeConfirmation {
    pub org_id: String,
    pub confirmed_at: String,
}
