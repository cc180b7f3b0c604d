//! The request and response bodies of the HTTP API, shared by the server, the command line and
//! the tests. Only the edge knows JSON: these types are converted by hand to and from the
//! service layer's types, which are never serialized.

mod access_logs;
mod authz;
mod credentials;
mod lifecycle;
mod purge;

pub use access_logs::{AccessLog, AccessLogPage};
pub use authz::{
    AuthzType, CheckBulkItem, CheckBulkItemResult, CheckBulkRequest, CheckBulkResult,
    CheckExplanation, CheckRequest, CheckResult, ConsistencyToken, DeleteContainerRequest,
    LookupPage, LookupResourcesRequest, LookupSubjectsRequest, PutAuthzTypeRequest, Relationship,
    WriteRelationshipsRequest,
};
pub use credentials::{
    ConfirmTotpRequest, CreatePersonalTokenRequest, DisableTotpRequest, PersonalToken,
    PersonalTokenCreated, PersonalTokenPage, RecoveryCodes, RegenerateRecoveryCodesRequest,
    SecondFactorRequest, SessionsRevoked, TotpEnrolment, TwoStepStatus,
};
pub use lifecycle::{
    ContractEvent, ContractEventRequest, Deadline, DeleteOrgRequest, Lifecycle, LifecycleReport,
    LifecycleReportItem, NextTransition, OperatorLifecycle,
};
pub use purge::{
    Purge, PurgeApp, PurgeConfirmation, PurgeConfirmationRequest, PurgeRequest, PurgeStep,
    SetWebhookRequest, WebhookSettings,
};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An RFC 9457 problem: every error the API returns has this shape.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable snake_case code, e.g. `invalid_credentials`, `validation_failed`.
    pub code: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// With `second_factor_required`: the challenge to send with the code to
    /// `POST /api/v1/sessions/second-factor`; with `password_change_required`: the challenge
    /// to send with a new password to `POST /api/v1/sessions/password-change`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    pub email: String,
    /// 10 to 1024 characters; common or guessable passwords are refused.
    pub password: String,
    pub display_name: String,
    /// Also create an organization; the new account becomes its administrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<CreateOrgRequest>,
    /// Join the organization of this invitation; the email must be the invited one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_token: Option<String>,
}

/// The new account, and the organization it created or joined.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SignedUp {
    #[serde(flatten)]
    pub account: Account,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Account {
    /// `acc_...`
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub email_verified: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogInRequest {
    /// The account's email address; or, for an organization-local account, `org_id` and
    /// `login_id` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// An organization-local account's organization (`org_...`), with `login_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// An organization-local account's login ID, with `org_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_id: Option<String>,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SessionCreated {
    /// The bearer token; shown once, also set as the `mamori_session` cookie.
    pub token: String,
    pub expires_at: String,
    pub account_id: String,
    pub session_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// A new email address: a confirmation link goes to it and a notice to the current one;
    /// the address changes only once the link is opened. Needs `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The current password, required with `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// `PUT /api/v1/operator/orgs/{org}/max-members` (ACC-7): the plan's member limit; `null`
/// (or absent) for none.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMaxMembersRequest {
    #[serde(default)]
    pub max_members: Option<u32>,
}

/// `POST /api/v1/password-resets`: answered 202 whether or not the address has an account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    pub email: String,
}

/// `POST /api/v1/password-resets/complete`, with the token from the mailed link.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetCompleteRequest {
    pub token: String,
    pub new_password: String,
}

/// `POST /api/v1/email-verifications/complete`, with the token from the mailed link.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailVerificationCompleteRequest {
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteMeRequest {
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Session {
    /// `ses_...`
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SessionPage {
    pub items: Vec<Session>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAppRequest {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AppCreated {
    /// `app_...`
    pub id: String,
    pub name: String,
    /// The app's bearer secret; shown once, stored only as a hash.
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgRequest {
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrgRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ACC-8: admit only accounts whose email address is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_verified_email: Option<bool>,
    /// Members must use two-step verification to reach the organization (ACC-6, ORG-6);
    /// the administrator setting it must use it already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_two_step: Option<bool>,
}

/// An organization as one of its members sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Organization {
    /// `org_...`
    pub id: String,
    pub name: String,
    /// The caller's role: `admin`, `member` or `guest`.
    pub role: String,
    pub can_invite: bool,
    /// Members without two-step verification get `403 two_step_required`.
    #[serde(default)]
    pub require_two_step: bool,
    pub created_at: String,
    pub updated_at: String,
    /// ACC-8: only accounts with a verified email address may join.
    #[serde(default)]
    pub require_verified_email: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct OrganizationPage {
    pub items: Vec<Organization>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Member {
    pub account_id: String,
    pub email: String,
    pub display_name: String,
    /// `admin`, `member` or `guest`.
    pub role: String,
    pub can_invite: bool,
    pub joined_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MemberPage {
    pub items: Vec<Member>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_invite: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitationRequest {
    pub email: String,
    /// `admin`, `member` or `guest`.
    pub role: String,
    #[serde(default)]
    pub can_invite: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Invitation {
    /// `inv_...`
    pub id: String,
    pub org_id: String,
    pub email: String,
    pub role: String,
    pub can_invite: bool,
    pub invited_by: String,
    /// `pending` until accepted, revoked or replaced.
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct InvitationPage {
    pub items: Vec<Invitation>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitationRequest {
    /// The token from the invitation email.
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamRequest {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Team {
    /// `team_...`
    pub id: String,
    pub name: String,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    /// Whether the caller may rename, delete and change the members of this team.
    pub can_manage: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TeamPage {
    pub items: Vec<Team>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TeamMember {
    pub account_id: String,
    pub added_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TeamMemberPage {
    pub items: Vec<TeamMember>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableAppRequest {
    /// `all`: every member uses the app; `selected`: only the members an administrator selects.
    pub mode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct OrgApp {
    pub app_id: String,
    pub app_name: String,
    pub mode: String,
    pub enabled_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct OrgAppList {
    pub items: Vec<OrgApp>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AppMemberPage {
    /// Account IDs of the app's selected active members.
    pub items: Vec<String>,
    pub next_cursor: Option<String>,
}

/// What an app learns about one account in one organization.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AppMembership {
    pub org_id: String,
    pub account_id: String,
    pub role: String,
    pub can_invite: bool,
    /// Whether the account may use this app in this organization now.
    pub active: bool,
}

/// Who acted, with the name they had when the event happened (when known).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditActor {
    /// `account`, `operator`, `app`, `system` or `anonymous`.
    #[serde(rename = "type")]
    pub actor_type: String,
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditTarget {
    #[serde(rename = "type")]
    pub target_type: Option<String>,
    pub id: Option<String>,
}

/// One audit event: exactly the fields that are hashed, plus `hash`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AuditEvent {
    pub id: String,
    pub chain: String,
    pub seq: i64,
    pub org_id: Option<String>,
    pub actor: AuditActor,
    pub action: String,
    pub target: AuditTarget,
    /// `success` or `failure`.
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub time: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AuditEventPage {
    pub items: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

/// A signed statement that a chain had `hash` at `seq` at `time`: an Ed25519 signature over
/// the JCS form of `{chain, hash, seq, time}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
    pub time: String,
    pub key_id: String,
    /// Base64url without padding.
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditCheckpointPage {
    pub items: Vec<AuditCheckpoint>,
    pub next_cursor: Option<String>,
}

/// The key that signs audit checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditPublicKey {
    /// Always `Ed25519`.
    pub algorithm: String,
    pub key_id: String,
    /// Base64url (no padding) of the raw 32-byte public key.
    pub public_key: String,
    /// The same key as PEM (SubjectPublicKeyInfo).
    pub public_key_pem: String,
}

/// An account or team holding the audit-log viewer right.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditViewer {
    /// `account` or `team`.
    pub subject_type: String,
    pub subject_id: String,
    pub granted_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditViewerList {
    pub items: Vec<AuditViewer>,
}

/// What an app records in an organization's trail. The action is the app's own, such as
/// `issue.deleted` (2 to 8 dot-separated segments of a-z, 0-9 and `_`); Mamori's own
/// namespaces (`account`, `session`, `org`, `app`, ...) are refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewAuditEventRequest {
    pub org_id: String,
    pub action: String,
    #[serde(default)]
    pub target: Option<AuditTargetRequest>,
    /// `success` (default) or `failure`.
    #[serde(default)]
    pub outcome: Option<String>,
    /// An object of at most 8 KiB as canonical JSON, 8 levels deep; numbers must be integers
    /// of at most 2^53 - 1 in magnitude (send decimals as strings).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditTargetRequest {
    #[serde(rename = "type")]
    pub target_type: String,
    pub id: String,
}

/// ACC-7: register an organization-local account. Its initial password is mailed to `email`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLocalAccountRequest {
    /// 1 to 64 ASCII letters, digits, `.`, `_` or `-`, starting with a letter or digit;
    /// unique in the organization, compared without regard to case.
    pub login_id: String,
    pub display_name: String,
    pub email: String,
}

/// An organization-local account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LocalAccount {
    /// `acc_...`
    pub account_id: String,
    pub org_id: String,
    /// In lowercase.
    pub login_id: String,
    pub email: String,
    pub display_name: String,
    /// The password is still the initial one the holder must change at the next log-in.
    pub must_change_password: bool,
    /// Until when the initial password works (with `must_change_password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_password_expires_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LocalAccountPage {
    pub items: Vec<LocalAccount>,
    pub next_cursor: Option<String>,
}

/// Sets an organization-local account's own password after a log-in with its initial one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeRequest {
    /// The `challenge` of the `password_change_required` problem.
    pub challenge: String,
    pub new_password: String,
}
