//! The use cases of Mamori. Only this layer changes state, and every use case runs the same
//! steps: decide with the domain core (authorization returns a capability, not a bool), read
//! or write through the store, and record the audit event in the same transaction.
//!
//! Personal data is sealed with the owner's data key here, before it reaches the store. This
//! layer knows nothing of HTTP; the current time always comes in as `now`.

mod access_logs;
mod accounts;
mod apps;
mod audit;
mod audit_ingest;
mod audit_trail;
mod audit_verify;
mod authz;
mod error;
pub mod jcs;
pub mod jobs;
pub mod lifecycle;
pub mod local_accounts;
pub mod mail;
pub mod notices;
mod operator;
mod orgs;
pub mod passwords;
mod personal_tokens;
pub mod purge;
pub mod recovery;
pub mod retention;
mod sessions;
mod teams;
pub mod tokens;
pub mod totp;
mod two_step;

pub use access_logs::{AccessLogEntry, AccessLogQuery, AccessLogView, LoggedPrincipal};
pub use accounts::{AccountView, SignUp};
pub use apps::{AppMembershipView, OrgAppView};
pub use audit::{
    EventFields, PLATFORM_KEY_OWNER, RequestContext, event_hash, hash_of, write_event,
};
pub use audit_ingest::{MAX_BATCH, MAX_DETAILS_BYTES, NewAppEvent};
pub use audit_trail::{
    AuditEventView, AuditExport, AuditQuery, AuditSigner, AuditViewerView, CSV_HEADER,
    ExportFormat, PublicKeyView, SIGNING_KEY_OWNER, anchor_message, checkpoint_message, key_id_of,
    parse_public_key,
};
pub use audit_verify::{Break, ChainVerdict, ExportVerdict, verify_export};
pub use authz::{
    AuthzTypeView, CheckInput, CheckView, MAX_BULK_CHECKS, MAX_RELATIONSHIP_CHANGES, ReadAt,
    RelationshipInput, consistency_token,
};
pub use error::{Refusal, ServiceError};
pub use local_accounts::{LocalAccountView, NewLocalAccount};
pub use mail::{
    DeliveryReport, Mail, MailSettings, MailTransport, OutboxEntry, SendError, SmtpMailer,
};
pub use operator::{NewApp, NewOperatorToken};
pub use orgs::{InvitationView, MemberView, NewInvitation, OrgAccess, OrgView, Page, RoleChange};
pub use passwords::{PasswordHashing, PasswordParams};
pub use personal_tokens::{NewPersonalToken, PersonalTokenView, TokenScope};
pub use purge::{PurgeAppStatus, PurgeRunReport, PurgeStatus, PurgeStepStatus, WebhookReport};
pub use sessions::{
    AccountSession, AppPrincipal, Authenticated, Credential, NewSession, OperatorPrincipal,
    SessionView, SessionsPage,
};
pub use teams::{TeamMemberView, TeamView};
pub use two_step::{TotpEnrolment, TwoStepStatus};

use mamori_core::lockout::LockoutPolicy;
use mamori_core::session::SessionPolicy;
use mamori_keyring::Keyring;
use mamori_store::Store;
use std::sync::Arc;

/// Everything a use case needs, shared by every request.
pub struct Services {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    passwords: PasswordHashing,
    session_policy: SessionPolicy,
    mail_settings: MailSettings,
    mail_transport: Option<Arc<dyn MailTransport>>,
    audit_signer: tokio::sync::OnceCell<AuditSigner>,
    ingest: audit_ingest::GroupCommit,
    retention: retention::RetentionSettings,
    /// Brute-force protection of log-in (issue 4, item 3).
    lockout: LockoutPolicy,
    /// The access-control index, kept in step with the store (see `authz`).
    authz: authz::LiveIndex,
    /// This process's name as the holder of purge leases (see `purge`).
    purge_node: std::sync::OnceLock<String>,
    /// The HTTP client that delivers apps' webhooks, made on first use.
    webhook_client: tokio::sync::OnceCell<reqwest::Client>,
    /// The data lifecycle's deletion policy (issue 6).
    lifecycle_policy: Arc<lifecycle::policy::Policy>,
}

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        passwords: PasswordHashing,
        session_policy: SessionPolicy,
    ) -> Services {
        Services {
            store,
            keyring,
            passwords,
            session_policy,
            mail_settings: MailSettings::default(),
            mail_transport: None,
            audit_signer: tokio::sync::OnceCell::new(),
            ingest: audit_ingest::GroupCommit::default(),
            retention: retention::RetentionSettings::default(),
            lockout: LockoutPolicy::default(),
            authz: authz::LiveIndex::default(),
            purge_node: std::sync::OnceLock::new(),
            webhook_client: tokio::sync::OnceCell::new(),
            lifecycle_policy: Arc::new(default_lifecycle_policy()),
        }
    }

    /// How mail is composed, and the transport that delivers it (`None`: mail stays in the
    /// outbox).
    pub fn with_mail(
        mut self,
        settings: MailSettings,
        transport: Option<Arc<dyn MailTransport>>,
    ) -> Services {
        self.mail_settings = settings;
        self.mail_transport = transport;
        self
    }

    /// How long audit events and access logs are kept.
    pub fn with_retention(mut self, retention: retention::RetentionSettings) -> Services {
        self.retention = retention;
        self
    }

    /// The deletion policy the lifecycle scheduler follows.
    pub fn with_lifecycle_policy(mut self, policy: lifecycle::policy::Policy) -> Services {
        self.lifecycle_policy = Arc::new(policy);
        self
    }

    /// When repeated log-in attempts lock a login name.
    pub fn with_lockout(mut self, lockout: LockoutPolicy) -> Services {
        self.lockout = lockout;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    pub fn passwords(&self) -> &PasswordHashing {
        &self.passwords
    }

    pub fn session_policy(&self) -> SessionPolicy {
        self.session_policy
    }
}

/// The default policy (a unit test makes sure it parses; failing that, a policy without rules,
/// under which nothing is deleted automatically).
fn default_lifecycle_policy() -> lifecycle::policy::Policy {
    lifecycle::policy::Policy::built_in(lifecycle::DEFAULT_POLICY).unwrap_or_else(|| {
        lifecycle::policy::Policy {
            name: String::from(lifecycle::DEFAULT_POLICY),
            title: String::new(),
            backup_retention_days: 0,
            exempt: Vec::new(),
            rules: Vec::new(),
            source: String::new(),
        }
    })
}
