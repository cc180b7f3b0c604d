//! Personal access tokens (issue 4, item 8): named, scoped, expiring bearer secrets that act
//! for their account. Shown once with the `mmp_` prefix, stored as SHA-256; the name is sealed
//! under the account's data key.
//!
//! A token is made, listed and revoked only from a session, and it can never change the
//! password, two-step verification, sessions or tokens, or delete the account
//! ([`AccountSession::require_session`]): a leaked token must not be able to take the account
//! over or keep itself alive. A `read` token may use only safe methods (checked at the edge,
//! where the method is known).

use crate::audit::{AuditDraft, RequestContext};
use crate::orgs::{Page, parse_cursor};
use crate::sessions::{AccountSession, Credential};
use crate::tokens::{self, PERSONAL_TOKEN_PREFIX, id_random, secret_hash};
use crate::{ServiceError, Services};
use mamori_core::audit::{ActorKind, action};
use mamori_core::{FieldError, PersonalTokenId, Timestamp};
use mamori_store::PersonalTokenRow;
use serde_json::json;

pub const TOKEN_NAME_MAX_CHARS: usize = 100;
/// A token lives 90 days unless asked otherwise, and at most a year.
pub const DEFAULT_LIFETIME_MS: i64 = 90 * 86_400_000;
pub const MAX_LIFETIME_MS: i64 = 366 * 86_400_000;
/// Last use is written at most once a minute per token.
const TOUCH_INTERVAL_MS: i64 = 60_000;
const NAME_FIELD: &str = "token_name";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    /// Safe methods only (GET, HEAD, OPTIONS).
    Read,
    /// Everything the account may do, except managing its credentials or deleting it.
    Full,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Full => "full",
        }
    }

    pub fn parse(text: &str) -> Option<TokenScope> {
        match text {
            "read" => Some(TokenScope::Read),
            "full" => Some(TokenScope::Full),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalTokenView {
    pub id: PersonalTokenId,
    pub name: String,
    pub scope: TokenScope,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A new token; `token` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct NewPersonalToken {
    pub token: String,
    pub view: PersonalTokenView,
}

fn parse_name(name: &str) -> Result<String, FieldError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(FieldError::new("name", "is required"));
    }
    if name.chars().count() > TOKEN_NAME_MAX_CHARS {
        return Err(FieldError::new("name", "must be at most 100 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

fn parse_token_cursor(cursor: &str) -> Option<(Timestamp, PersonalTokenId)> {
    let (time, id) = cursor.split_once('.')?;
    Some((
        Timestamp::from_millis(time.parse().ok()?),
        PersonalTokenId::parse(id)?,
    ))
}

impl Services {
    /// Makes a personal access token; `expires_at` defaults to 90 days from now.
    pub async fn create_personal_token(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        name: &str,
        scope: &str,
        expires_at: Option<&str>,
        now: Timestamp,
    ) -> Result<NewPersonalToken, ServiceError> {
        session.require_session()?;
        let mut errors = Vec::new();
        let name = parse_name(name).map_err(|error| errors.push(error)).ok();
        let scope = TokenScope::parse(scope);
        if scope.is_none() {
            errors.push(FieldError::new("scope", "must be read or full"));
        }
        let expires_at = match expires_at {
            None => Some(now.plus_millis(DEFAULT_LIFETIME_MS)),
            Some(text) => match Timestamp::parse_rfc3339(text) {
                None => {
                    errors.push(FieldError::new("expires_at", "must be an RFC 3339 time"));
                    None
                }
                Some(at) if at <= now => {
                    errors.push(FieldError::new("expires_at", "must be in the future"));
                    None
                }
                Some(at) if at > now.plus_millis(MAX_LIFETIME_MS) => {
                    errors.push(FieldError::new(
                        "expires_at",
                        "must be at most 366 days from now",
                    ));
                    None
                }
                Some(at) => Some(at),
            },
        };
        let (Some(name), Some(scope), Some(expires_at)) = (name, scope, expires_at) else {
            return Err(ServiceError::Validation(errors));
        };
        let key = self.keyring.key(session.account_id.as_str()).await?;
        let token = tokens::new_secret(PERSONAL_TOKEN_PREFIX)?;
        let row = PersonalTokenRow {
            id: PersonalTokenId::from_random(&id_random()?),
            account_id: session.account_id.clone(),
            name_sealed: key.seal(NAME_FIELD, name.as_bytes())?,
            scope: scope.as_str().to_owned(),
            token_hash: secret_hash(&token),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        let mut tx = self.store.begin().await?;
        tx.insert_personal_token(&row).await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(session.account_id.as_str()),
                action::PERSONAL_TOKEN_CREATED,
            )
            .target("personal_token", row.id.as_str())
            .details(json!({ "scope": scope.as_str(), "expires_at": expires_at.to_rfc3339() })),
            now,
        )
        .await?;
        Ok(NewPersonalToken {
            token,
            view: PersonalTokenView {
                id: row.id,
                name,
                scope,
                created_at: now,
                expires_at,
                last_used_at: None,
            },
        })
    }

    /// The holder's tokens, oldest first (expired ones too, until revoked).
    pub async fn list_personal_tokens(
        &self,
        session: &AccountSession,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<PersonalTokenView>, ServiceError> {
        session.require_session()?;
        let after = parse_cursor(cursor, parse_token_cursor)?;
        let rows = self
            .store
            .personal_tokens_of(
                &session.account_id,
                after.as_ref().map(|(time, id)| (*time, id)),
                limit + 1,
            )
            .await?;
        let key = self.keyring.key(session.account_id.as_str()).await?;
        Page::from_rows(
            rows,
            limit,
            |row| format!("{}.{}", row.created_at.as_millis(), row.id),
            |row| {
                Ok(PersonalTokenView {
                    name: key.open_string(NAME_FIELD, &row.name_sealed)?,
                    scope: TokenScope::parse(&row.scope).ok_or_else(|| {
                        ServiceError::Unexpected(anyhow::anyhow!("token scope {}", row.scope))
                    })?,
                    id: row.id,
                    created_at: row.created_at,
                    expires_at: row.expires_at,
                    last_used_at: row.last_used_at,
                })
            },
        )
    }

    /// Revokes one of the holder's tokens; another account's token is `NotFound`.
    pub async fn revoke_personal_token(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        id: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        session.require_session()?;
        let id = PersonalTokenId::parse(id).ok_or(ServiceError::NotFound)?;
        let mut tx = self.store.begin().await?;
        if !tx.delete_personal_token(&session.account_id, &id).await? {
            return Err(ServiceError::NotFound);
        }
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(session.account_id.as_str()),
                action::PERSONAL_TOKEN_REVOKED,
            )
            .target("personal_token", id.as_str()),
            now,
        )
        .await?;
        Ok(())
    }

    /// A live personal access token as the account's capability, limited to its scope.
    pub(crate) async fn authenticate_personal_token(
        &self,
        secret: &str,
        now: Timestamp,
    ) -> Result<AccountSession, ServiceError> {
        let hash = secret_hash(secret);
        let row = self
            .store
            .cached_personal_token_by_hash(&hash)
            .await?
            .filter(|row| tokens::hashes_equal(&row.token_hash, &hash) && row.expires_at > now)
            .ok_or(ServiceError::Unauthenticated)?;
        let scope = TokenScope::parse(&row.scope).ok_or(ServiceError::Unauthenticated)?;
        let stale = row
            .last_used_at
            .is_none_or(|at| now.millis_since(at) >= TOUCH_INTERVAL_MS);
        if stale {
            self.store.touch_personal_token(&row.id, now).await?;
        }
        Ok(AccountSession {
            account_id: row.account_id,
            credential: Credential::PersonalToken { id: row.id, scope },
            expires_at: row.expires_at,
        })
    }
}
