//! Audit event vocabulary. Every state change records one event in the same transaction as
//! the change; a later layer chains and signs them.

use crate::id::OrgId;

/// Who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Account,
    Operator,
    App,
    System,
    /// Somebody not (yet) authenticated, e.g. a failed login.
    Anonymous,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Account => "account",
            ActorKind::Operator => "operator",
            ActorKind::App => "app",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// The chain an event belongs to: its organization's, or the platform chain for account and
/// operator events.
pub fn chain_name(org: Option<&OrgId>) -> String {
    match org {
        Some(org) => org.as_str().to_owned(),
        None => String::from("platform"),
    }
}

/// The `prev_hash` of the first event of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Actions recorded in this version. The list in `docs/audit-events.md` mirrors it.
pub mod action {
    pub const ACCOUNT_CREATED: &str = "account.created";
    pub const ACCOUNT_UPDATED: &str = "account.updated";
    pub const ACCOUNT_DELETED: &str = "account.deleted";
    pub const ACCOUNT_PASSWORD_CHANGED: &str = "account.password.changed";
    pub const ACCOUNT_PASSWORD_CHECK_FAILED: &str = "account.password.check_failed";
    pub const ACCOUNT_PASSWORD_RESET_REQUESTED: &str = "account.password.reset_requested";
    pub const ACCOUNT_PASSWORD_RESET: &str = "account.password.reset";
    pub const ACCOUNT_EMAIL_VERIFIED: &str = "account.email.verified";
    pub const ACCOUNT_EMAIL_CHANGE_REQUESTED: &str = "account.email.change_requested";
    pub const ACCOUNT_EMAIL_CHANGED: &str = "account.email.changed";
    pub const SESSION_LOGIN: &str = "session.login";
    pub const SESSION_LOGIN_FAILED: &str = "session.login_failed";
    pub const SESSION_LOGOUT: &str = "session.logout";
    pub const SESSION_REVOKED: &str = "session.revoked";
    pub const SESSION_REVOKED_OTHERS: &str = "session.revoked_others";
    pub const SESSION_SECOND_FACTOR_REQUIRED: &str = "session.second_factor_required";
    pub const SESSION_SECOND_FACTOR_FAILED: &str = "session.second_factor_failed";
    pub const TWO_STEP_ENROLMENT_STARTED: &str = "account.two_step.enrolment_started";
    pub const TWO_STEP_ENABLED: &str = "account.two_step.enabled";
    pub const TWO_STEP_DISABLED: &str = "account.two_step.disabled";
    pub const TWO_STEP_CHECK_FAILED: &str = "account.two_step.check_failed";
    pub const TWO_STEP_RECOVERY_CODES_REGENERATED: &str =
        "account.two_step.recovery_codes_regenerated";
    pub const PERSONAL_TOKEN_CREATED: &str = "account.token.created";
    pub const PERSONAL_TOKEN_REVOKED: &str = "account.token.revoked";
    pub const OPERATOR_TOKEN_CREATED: &str = "operator.token.created";
    pub const APP_CREATED: &str = "app.created";
    /// The operator set or cleared an app's webhook URL (platform chain).
    pub const APP_WEBHOOK_SET: &str = "app.webhook.set";
    /// A purge of an organization was requested on demand (platform chain: the
    /// organization's own chain is purged).
    pub const ORG_PURGE_REQUESTED: &str = "org.purge.requested";
    /// An app confirmed that it deleted its data of a purged organization (platform chain).
    pub const ORG_PURGE_CONFIRMED: &str = "org.purge.app_confirmed";
    pub const ORG_CREATED: &str = "org.created";
    pub const ORG_UPDATED: &str = "org.updated";
    pub const ORG_DELETED: &str = "org.deleted";
    pub const ORG_RESTORED: &str = "org.restored";
    pub const ORG_CONTRACT_EVENT: &str = "org.contract.event";
    pub const ORG_LIFECYCLE_CHANGED: &str = "org.lifecycle.changed";
    /// The organization's own audit trail was cut to its signed anchor on the date the
    /// policy gives (AUD-3; platform chain).
    pub const ORG_AUDIT_TRAIL_PURGED: &str = "org.audit_trail.purged";
    pub const ORG_LIFECYCLE_CONTINUED: &str = "org.lifecycle.continued";
    pub const ORG_PLAN_LIMIT_CHANGED: &str = "org.plan_limit.changed";
    pub const ORG_MEMBER_ADDED: &str = "org.member.added";
    pub const ORG_MEMBER_UPDATED: &str = "org.member.updated";
    pub const ORG_MEMBER_REMOVED: &str = "org.member.removed";
    pub const ORG_MEMBER_LEFT: &str = "org.member.left";
    pub const ORG_INVITATION_CREATED: &str = "org.invitation.created";
    pub const ORG_INVITATION_REVOKED: &str = "org.invitation.revoked";
    pub const ORG_INVITATION_ACCEPTED: &str = "org.invitation.accepted";
    pub const ORG_TEAM_CREATED: &str = "org.team.created";
    pub const ORG_TEAM_UPDATED: &str = "org.team.updated";
    pub const ORG_TEAM_DELETED: &str = "org.team.deleted";
    pub const ORG_TEAM_MEMBER_ADDED: &str = "org.team.member.added";
    pub const ORG_TEAM_MEMBER_REMOVED: &str = "org.team.member.removed";
    pub const ORG_APP_ENABLED: &str = "org.app.enabled";
    pub const ORG_APP_DISABLED: &str = "org.app.disabled";
    pub const ORG_APP_MEMBER_ADDED: &str = "org.app.member.added";
    pub const ORG_APP_MEMBER_REMOVED: &str = "org.app.member.removed";
    pub const ORG_AUDIT_EXPORTED: &str = "org.audit_log.exported";
    pub const ORG_AUDIT_VIEWER_GRANTED: &str = "org.audit_log.viewer_granted";
    pub const ORG_AUDIT_VIEWER_REVOKED: &str = "org.audit_log.viewer_revoked";
    pub const AUTHZ_RELATIONSHIPS_CHANGED: &str = "authz.relationships.changed";
    pub const AUTHZ_CONTAINER_DELETED: &str = "authz.container.deleted";
    pub const AUTHZ_TYPE_PUT: &str = "authz.type.put";
    pub const MAIL_SENT: &str = "mail.sent";
    pub const MAIL_FAILED: &str = "mail.failed";
    /// Organization-local accounts (ACC-7).
    pub const ORG_LOCAL_ACCOUNT_CREATED: &str = "org.local_account.created";
    pub const ORG_LOCAL_ACCOUNT_DELETED: &str = "org.local_account.deleted";
    pub const ORG_LOCAL_ACCOUNT_PASSWORD_RESET: &str = "org.local_account.password_reset";
    pub const ORG_LOCAL_ACCOUNTS_PURGED: &str = "org.local_accounts.purged";
    pub const SESSION_PASSWORD_CHANGE_REQUIRED: &str = "session.password_change_required";
}
