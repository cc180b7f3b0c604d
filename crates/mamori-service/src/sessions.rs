//! Logging in and out, and turning a bearer secret into a capability.

use crate::audit::{AuditDraft, RequestContext};
use crate::error::Refusal;
use crate::orgs::parse_cursor;
use crate::passwords::Verification;
use crate::personal_tokens::TokenScope;
use crate::tokens::{
    self, APP_PREFIX, OPERATOR_PREFIX, PERSONAL_TOKEN_PREFIX, SESSION_PREFIX, id_random,
    secret_hash,
};
use crate::{ServiceError, Services};
use mamori_core::account::{Email, PASSWORD_MAX_CHARS, normalize_password};
use mamori_core::audit::{ActorKind, Outcome, action};
use mamori_core::session::SessionState;
use mamori_core::{AccountId, AppId, OperatorTokenId, PersonalTokenId, SessionId, Timestamp};
use mamori_store::{AccountRow, SessionRow};
use serde_json::json;

/// Proof that the caller holds a valid session, or a personal access token, of this account.
/// Only [`Services::authenticate`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSession {
    pub account_id: AccountId,
    pub credential: Credential,
    pub expires_at: Timestamp,
}

/// What the caller authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Session(SessionId),
    /// A personal access token: it acts for the account within its scope, and never manages
    /// credentials or the account itself (see [`AccountSession::require_session`]).
    PersonalToken {
        id: PersonalTokenId,
        scope: TokenScope,
    },
}

impl AccountSession {
    /// The session making the request; `None` for a personal access token.
    pub fn session_id(&self) -> Option<&SessionId> {
        match &self.credential {
            Credential::Session(id) => Some(id),
            Credential::PersonalToken { .. } => None,
        }
    }

    /// The scope the credential is limited to (`Full` for a session).
    pub fn scope(&self) -> TokenScope {
        match &self.credential {
            Credential::Session(_) => TokenScope::Full,
            Credential::PersonalToken { scope, .. } => *scope,
        }
    }

    /// Refuses personal access tokens: the password, two-step verification, sessions,
    /// personal access tokens and deleting the account are managed only from a session, so a
    /// leaked token cannot take the account over or hide itself.
    pub fn require_session(&self) -> Result<&SessionId, ServiceError> {
        self.session_id().ok_or_else(|| {
            ServiceError::refused(
                Refusal::Forbidden,
                "session_required",
                "a personal access token cannot do this; log in and use a session",
            )
        })
    }
}

/// Proof that the caller holds a live operator token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPrincipal {
    pub token_id: OperatorTokenId,
}

/// Proof that the caller holds an app's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPrincipal {
    pub app_id: AppId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authenticated {
    Account(AccountSession),
    Operator(OperatorPrincipal),
    App(AppPrincipal),
}

/// A new session; `token` is shown to the client once and never stored.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub session: AccountSession,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub id: SessionId,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsPage {
    pub items: Vec<SessionView>,
    pub next_cursor: Option<String>,
}

/// Reads a session-list cursor: `<created_at millis>.<session ID>`.
fn parse_session_cursor(cursor: &str) -> Option<(Timestamp, SessionId)> {
    let (time, id) = cursor.split_once('.')?;
    Some((
        Timestamp::from_millis(time.parse().ok()?),
        SessionId::parse(id)?,
    ))
}

/// User agents are kept for the holder's session list; a longer one is cut.
pub(crate) const USER_AGENT_MAX_CHARS: usize = 512;

impl Services {
    /// Logs in with email and password. Wrong email and wrong password are one error, and an
    /// unknown email costs the same hashing work as a known one.
    pub async fn log_in(
        &self,
        context: &RequestContext,
        email: &str,
        password: &str,
        now: Timestamp,
    ) -> Result<NewSession, ServiceError> {
        // Counted after normalization, exactly as the policy counted it at sign-up.
        let password = normalize_password(password);
        if password.chars().count() > PASSWORD_MAX_CHARS {
            return Err(ServiceError::field(
                "password",
                "must be at most 1024 characters",
            ));
        }
        let email = Email::parse("email", email)?;
        let account = self.account_by_email(&email).await?;
        let login_name = crate::accounts::email_index(self, &email);
        let (account, rehash) = self
            .check_login_password(context, &login_name, account, &password, now)
            .await?;
        self.finish_log_in(context, &account, &login_name, rehash.as_deref(), now)
            .await
    }

    /// The password check every log-in shares, the same for an unknown login name:
    /// brute-force protection (issue 4, item 3) counts the attempt before the password is
    /// checked (a locked name stops here), the hash is verified (the same work without an
    /// account), and a failure is recorded and answered `InvalidCredentials`. On a match, the
    /// account and its new hash when the hashing parameters changed.
    pub(crate) async fn check_login_password(
        &self,
        context: &RequestContext,
        login_name: &str,
        account: Option<AccountRow>,
        password: &str,
        now: Timestamp,
    ) -> Result<(AccountRow, Option<String>), ServiceError> {
        self.count_login_attempt(
            context,
            login_name,
            account.as_ref().map(|row| &row.id),
            now,
        )
        .await?;
        let verification = self
            .passwords
            .verify(
                password,
                account
                    .as_ref()
                    .and_then(|row| row.password_hash.as_deref()),
            )
            .await?;
        match (account, verification) {
            (Some(account), Verification::Match { needs_rehash }) => {
                let rehash = if needs_rehash {
                    Some(self.passwords.hash(password).await?)
                } else {
                    None
                };
                Ok((account, rehash))
            }
            (account, _) => {
                self.record_login_failure(
                    context,
                    account.as_ref().map(|row| &row.id),
                    "invalid_credentials",
                    now,
                )
                .await?;
                Err(ServiceError::InvalidCredentials)
            }
        }
    }

    /// Records a failed log-in in a transaction of its own.
    pub(crate) async fn record_login_failure(
        &self,
        context: &RequestContext,
        account: Option<&AccountId>,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let tx = self.store.begin().await?;
        let mut draft = AuditDraft::new(ActorKind::Anonymous, None, action::SESSION_LOGIN_FAILED)
            .outcome(Outcome::Failure)
            .details(json!({ "reason": reason }));
        if let Some(target) = account {
            draft = draft.target("account", target.as_str());
        }
        self.record_and_commit(tx, context, draft, now).await
    }

    /// After a right password: a challenge for the second factor when two-step verification
    /// is on, otherwise a session. `login_name` is the throttle key, cleared on success.
    pub(crate) async fn finish_log_in(
        &self,
        context: &RequestContext,
        account_row: &AccountRow,
        login_name: &str,
        rehash: Option<&str>,
        now: Timestamp,
    ) -> Result<NewSession, ServiceError> {
        let account = &account_row.id;
        // Two-step verification (ACC-6): with it on, the password earns a challenge, not a
        // session; `complete_second_factor` finishes the log-in (see `two_step`).
        if self.store.two_step_enabled(account).await? {
            let challenge = self
                .start_second_factor(context, account, rehash, now)
                .await?;
            return Err(ServiceError::SecondFactorRequired { challenge });
        }
        let mut tx = self.store.begin().await?;
        if let Some(hash) = rehash {
            tx.update_password_hash(account, hash, now).await?;
        }
        // Brute-force protection: a success starts the count again.
        self.clear_login_attempts(tx.as_mut(), login_name).await?;
        let (token, session) = self
            .open_session_in_tx(
                tx,
                context,
                account_row,
                json!({ "password_rehashed": rehash.is_some() }),
                now,
            )
            .await?;
        Ok(NewSession { token, session })
    }

    /// Inside `tx`: a new session for `account_row`'s account, its `session.login` event
    /// (with the actor's name as read in `account_row`), and the commit.
    pub(crate) async fn open_session_in_tx(
        &self,
        mut tx: Box<dyn mamori_store::StoreTx>,
        context: &RequestContext,
        account_row: &AccountRow,
        details: serde_json::Value,
        now: Timestamp,
    ) -> Result<(String, AccountSession), ServiceError> {
        let account = &account_row.id;
        let token = tokens::new_secret(SESSION_PREFIX)?;
        let session = SessionRow {
            id: SessionId::from_random(&id_random()?),
            token_hash: secret_hash(&token),
            account_id: account.clone(),
            created_at: now,
            last_seen_at: now,
            ip: context.ip.clone(),
            user_agent: context
                .user_agent
                .as_ref()
                .map(|agent| agent.chars().take(USER_AGENT_MAX_CHARS).collect()),
        };
        tx.insert_session(&session).await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account.as_str()),
                action::SESSION_LOGIN,
            )
            .actor_name_as_stored(account_row.display_name_sealed.as_deref())
            .target("session", session.id.as_str())
            .details(details),
            now,
        )
        .await?;
        Ok((
            token,
            AccountSession {
                account_id: account.clone(),
                credential: Credential::Session(session.id),
                expires_at: self.session_policy.expires_at(now, now),
            },
        ))
    }

    /// Turns a bearer secret into a capability, or `Unauthenticated`.
    pub async fn authenticate(
        &self,
        secret: &str,
        now: Timestamp,
    ) -> Result<Authenticated, ServiceError> {
        if tokens::looks_like(secret, SESSION_PREFIX) {
            return self
                .authenticate_session(secret, now)
                .await
                .map(Authenticated::Account);
        }
        if tokens::looks_like(secret, PERSONAL_TOKEN_PREFIX) {
            return self
                .authenticate_personal_token(secret, now)
                .await
                .map(Authenticated::Account);
        }
        if tokens::looks_like(secret, OPERATOR_PREFIX) {
            let hash = secret_hash(secret);
            let token = self
                .store
                .cached_operator_token_by_hash(&hash)
                .await?
                .filter(|token| {
                    token.revoked_at.is_none() && tokens::hashes_equal(&token.token_hash, &hash)
                })
                .ok_or(ServiceError::Unauthenticated)?;
            return Ok(Authenticated::Operator(OperatorPrincipal {
                token_id: token.id,
            }));
        }
        if tokens::looks_like(secret, APP_PREFIX) {
            let hash = secret_hash(secret);
            let app = self
                .store
                .cached_app_by_secret_hash(&hash)
                .await?
                .filter(|app| tokens::hashes_equal(&app.secret_hash, &hash))
                .ok_or(ServiceError::Unauthenticated)?;
            return Ok(Authenticated::App(AppPrincipal { app_id: app.id }));
        }
        Err(ServiceError::Unauthenticated)
    }

    /// Keeps the in-memory credential cache in step with other nodes' and processes'
    /// revocations; `serve` calls it every 250 ms, and while it does not the cache is not
    /// used (see the store's `cache` module).
    pub async fn sync_credential_cache(&self) -> Result<(), ServiceError> {
        Ok(self.store.sync_credential_cache().await?)
    }

    pub async fn authenticate_session(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<AccountSession, ServiceError> {
        if !tokens::looks_like(token, SESSION_PREFIX) {
            return Err(ServiceError::Unauthenticated);
        }
        let hash = secret_hash(token);
        let cached = self
            .store
            .cached_session_by_token_hash(&hash)
            .await?
            .filter(|session| tokens::hashes_equal(&session.token_hash, &hash))
            .ok_or(ServiceError::Unauthenticated)?;
        let session = match self
            .session_policy
            .state(cached.created_at, cached.last_seen_at, now)
        {
            SessionState::Valid { .. } => cached,
            // Another node may have seen the session since this one cached it: ask the
            // database before refusing.
            SessionState::IdleExpired | SessionState::LifetimeExpired => self
                .store
                .session_by_token_hash(&hash)
                .await?
                .filter(|session| tokens::hashes_equal(&session.token_hash, &hash))
                .ok_or(ServiceError::Unauthenticated)?,
        };
        match self
            .session_policy
            .state(session.created_at, session.last_seen_at, now)
        {
            SessionState::Valid { touch } => {
                let last_seen_at = if touch {
                    self.store.touch_session(&session.id, now).await?;
                    now
                } else {
                    session.last_seen_at
                };
                Ok(AccountSession {
                    expires_at: self
                        .session_policy
                        .expires_at(session.created_at, last_seen_at),
                    account_id: session.account_id,
                    credential: Credential::Session(session.id),
                })
            }
            SessionState::IdleExpired | SessionState::LifetimeExpired => {
                Err(ServiceError::Unauthenticated)
            }
        }
    }

    /// Ends the current session.
    pub async fn log_out(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let session_id = session.require_session()?;
        let mut tx = self.store.begin().await?;
        tx.delete_session(&session.account_id, session_id).await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(session.account_id.as_str()),
                action::SESSION_LOGOUT,
            )
            .target("session", session_id.as_str()),
            now,
        )
        .await?;
        Ok(())
    }

    /// The holder's live sessions, oldest first. The cursor is the position (creation time and
    /// ID) of the last session of the previous page.
    pub async fn list_sessions(
        &self,
        session: &AccountSession,
        cursor: Option<&str>,
        limit: u32,
        now: Timestamp,
    ) -> Result<SessionsPage, ServiceError> {
        let current = session.require_session()?;
        let after = parse_cursor(cursor, parse_session_cursor)?;
        let policy = self.session_policy;
        let mut rows = self
            .store
            .sessions_of(
                &session.account_id,
                now.plus_millis(-policy.absolute_lifetime_ms),
                now.plus_millis(-policy.idle_timeout_ms),
                after.as_ref().map(|(time, id)| (*time, id)),
                limit + 1,
            )
            .await?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last()
                .map(|row| format!("{}.{}", row.created_at.as_millis(), row.id))
        } else {
            None
        };
        let items = rows
            .into_iter()
            .map(|row| SessionView {
                current: row.id == *current,
                expires_at: policy.expires_at(row.created_at, row.last_seen_at),
                id: row.id,
                created_at: row.created_at,
                last_seen_at: row.last_seen_at,
                ip: row.ip,
                user_agent: row.user_agent,
            })
            .collect();
        Ok(SessionsPage { items, next_cursor })
    }

    /// Revokes one of the holder's own sessions; another account's session is `NotFound`.
    pub async fn revoke_session(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        target: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        session.require_session()?;
        let target = SessionId::parse(target).ok_or(ServiceError::NotFound)?;
        let mut tx = self.store.begin().await?;
        if !tx.delete_session(&session.account_id, &target).await? {
            return Err(ServiceError::NotFound);
        }
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(session.account_id.as_str()),
                action::SESSION_REVOKED,
            )
            .target("session", target.as_str()),
            now,
        )
        .await?;
        Ok(())
    }

    /// Revokes every session of the holder but the one making the request; returns how many.
    pub async fn revoke_other_sessions(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        now: Timestamp,
    ) -> Result<u64, ServiceError> {
        let current = session.require_session()?;
        let mut tx = self.store.begin().await?;
        let ended = tx
            .delete_sessions_of(&session.account_id, Some(current))
            .await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(session.account_id.as_str()),
                action::SESSION_REVOKED_OTHERS,
            )
            .target("account", session.account_id.as_str())
            .details(json!({ "sessions_ended": ended })),
            now,
        )
        .await?;
        Ok(ended)
    }
}
