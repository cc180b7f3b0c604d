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
    pub const SESSION_LOGIN: &str = "session.login";
    pub const SESSION_LOGIN_FAILED: &str = "session.login_failed";
    pub const SESSION_LOGOUT: &str = "session.logout";
    pub const SESSION_REVOKED: &str = "session.revoked";
    pub const OPERATOR_TOKEN_CREATED: &str = "operator.token.created";
    pub const APP_CREATED: &str = "app.created";
}
