//! Rows as the store reads and writes them. Sealed fields are ciphertext made by the service.

use mamori_core::org::{AppMode, Membership, OrgRole};
use mamori_core::{
    AccountId, AppId, AuditEventId, InvitationId, MailId, OperatorTokenId, OrgId, SessionId,
    TeamId, Timestamp,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Deleted,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(AccountStatus::Active),
            "deleted" => Some(AccountStatus::Deleted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: AccountId,
    pub status: AccountStatus,
    pub email_index: Option<String>,
    pub email_sealed: Option<String>,
    pub display_name_sealed: Option<String>,
    pub password_hash: Option<String>,
    pub email_verified: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: SessionId,
    pub token_hash: String,
    pub account_id: AccountId,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorTokenRow {
    pub id: OperatorTokenId,
    pub name: String,
    pub token_hash: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRow {
    pub id: AppId,
    pub name: String,
    pub secret_hash: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPosition {
    pub seq: i64,
    pub prev_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEventRow {
    pub id: AuditEventId,
    pub chain: String,
    pub seq: i64,
    pub org_id: Option<String>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    /// The actor's name when the event happened, sealed under the chain's data key.
    pub actor_name_sealed: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub occurred_at: Timestamp,
    /// Canonical JSON text.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRow {
    pub id: OrgId,
    pub name_sealed: String,
    pub status: String,
    /// Members must use two-step verification to reach the organization's resources.
    pub require_two_step: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Only accounts with a verified email address may join (ACC-8).
    pub require_verified_email: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRow {
    pub org_id: OrgId,
    pub account_id: AccountId,
    pub role: OrgRole,
    pub can_invite: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl MembershipRow {
    pub fn membership(&self) -> Membership {
        Membership::new(self.role, self.can_invite)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Replaced,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Revoked => "revoked",
            InvitationStatus::Replaced => "replaced",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(InvitationStatus::Pending),
            "accepted" => Some(InvitationStatus::Accepted),
            "revoked" => Some(InvitationStatus::Revoked),
            "replaced" => Some(InvitationStatus::Replaced),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRow {
    pub id: InvitationId,
    pub org_id: OrgId,
    pub email_index: String,
    pub email_sealed: String,
    pub role: OrgRole,
    pub can_invite: bool,
    pub token_hash: String,
    pub invited_by: AccountId,
    pub status: InvitationStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub decided_at: Option<Timestamp>,
    pub accepted_by: Option<AccountId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRow {
    pub id: TeamId,
    pub org_id: OrgId,
    pub name_sealed: String,
    pub created_by: AccountId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamMemberRow {
    pub team_id: TeamId,
    pub org_id: OrgId,
    pub account_id: AccountId,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAppRow {
    pub org_id: OrgId,
    pub app_id: AppId,
    pub mode: AppMode,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailStatus {
    Pending,
    Sent,
    Failed,
}

impl MailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MailStatus::Pending => "pending",
            MailStatus::Sent => "sent",
            MailStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(MailStatus::Pending),
            "sent" => Some(MailStatus::Sent),
            "failed" => Some(MailStatus::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRow {
    pub id: MailId,
    pub key_owner: String,
    pub kind: String,
    pub message_sealed: String,
    pub status: MailStatus,
    pub attempts: i64,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// The head of one audit chain: where it ends, where retention cut it, and its last
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHeadRow {
    pub chain: String,
    pub last_seq: i64,
    pub last_hash: String,
    /// Events up to here were deleted by retention; 0 when none were.
    pub anchor_seq: i64,
    /// The hash of the event at `anchor_seq` (the genesis hash when it is 0).
    pub anchor_hash: String,
    pub checkpoint_seq: i64,
    pub checkpoint_at: Timestamp,
}

/// A signed statement that a chain had `hash` at `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
    pub signed_at: Timestamp,
    pub key_id: String,
    /// Base64url (no padding) of the Ed25519 signature.
    pub signature: String,
}

/// Who holds the audit-log viewer right in an organization: an account or a team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditViewerRow {
    pub org_id: OrgId,
    pub subject_type: String,
    pub subject_id: String,
    pub granted_at: Timestamp,
}
