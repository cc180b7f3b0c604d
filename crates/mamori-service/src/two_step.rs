//! Two-step verification with TOTP (ACC-6): enrolment, confirmation, the second step of a
//! log-in, recovery codes and switching it off.
//!
//! The shared secret is personal data, sealed under the account's data key. Recovery codes are
//! stored as HMAC-SHA-256 under a key derived from the account's data key, so they die with
//! the account. A TOTP step, a recovery code and a log-in challenge are each used by one
//! conditional write, so none is accepted twice, even by two nodes at once.

use crate::accounts::view_of;
use crate::audit::{AuditDraft, RequestContext};
use crate::error::Refusal;
use crate::notices;
use crate::sessions::{AccountSession, Credential, NewSession, USER_AGENT_MAX_CHARS};
use crate::tokens::{self, CHALLENGE_PREFIX, SESSION_PREFIX, id_random, secret_hash};
use crate::totp::{self, SECRET_BYTES, TotpKey};
use crate::{ServiceError, Services};
use hmac::{Hmac, KeyInit, Mac};
use mamori_core::audit::{ActorKind, Outcome, action};
use mamori_core::{AccountId, SessionId, Timestamp};
use mamori_keyring::DataKey;
use mamori_store::{AccountStatus, LoginChallengeRow, SessionRow, TwoStepRow};
use serde_json::json;
use sha2::Sha256;

/// How long the second step of a log-in may take.
pub const CHALLENGE_LIFETIME_MS: i64 = 5 * 60_000;
/// Wrong codes one challenge takes before it dies; the next try needs the password again.
pub const CHALLENGE_MAX_FAILURES: i64 = 5;
pub const RECOVERY_CODE_COUNT: usize = 10;
const SECRET_FIELD: &str = "totp_secret";
/// Ten base32 characters in two groups of five: 50 random bits each.
const RECOVERY_CODE_CHARS: usize = 10;

/// What the holder needs to add the account to an authenticator app. Shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// The holder's two-step state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoStepStatus {
    pub enabled: bool,
    pub enabled_at: Option<Timestamp>,
    pub recovery_codes_left: u64,
}

/// Which second factor finished a log-in or proved the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Factor {
    Totp(i64),
    RecoveryCode,
}

impl Factor {
    fn as_str(self) -> &'static str {
        match self {
            Factor::Totp(_) => "totp",
            Factor::RecoveryCode => "recovery_code",
        }
    }
}

fn invalid_code() -> ServiceError {
    ServiceError::field("code", "is not a valid code")
}

fn two_step_not_enabled() -> ServiceError {
    ServiceError::refused(
        Refusal::Conflict,
        "two_step_not_enabled",
        "two-step verification is not on for this account",
    )
}

fn two_step_already_enabled() -> ServiceError {
    ServiceError::refused(
        Refusal::Conflict,
        "two_step_already_enabled",
        "two-step verification is already on; switch it off first to enrol again",
    )
}

pub(crate) fn invalid_challenge() -> ServiceError {
    ServiceError::refused(
        Refusal::Unauthenticated,
        "invalid_challenge",
        "the challenge is unknown, used or expired; log in again",
    )
}

/// A new recovery code, `xxxxx-xxxxx` in lowercase base32.
fn new_recovery_code() -> Result<String, ServiceError> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let random = tokens::random_bytes::<RECOVERY_CODE_CHARS>()?;
    let mut code = String::with_capacity(RECOVERY_CODE_CHARS + 1);
    for (index, byte) in random.iter().enumerate() {
        if index == RECOVERY_CODE_CHARS / 2 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[usize::from(byte & 31)]));
    }
    Ok(code)
}

/// The code as typed, without spaces and dashes, in lowercase; `None` when it cannot be one.
fn normalize_recovery_code(code: &str) -> Option<String> {
    let normalized: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (normalized.len() == RECOVERY_CODE_CHARS
        && normalized
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)))
    .then_some(normalized)
}

/// The stored form of a recovery code: HMAC-SHA-256 under a key of the account's own.
fn recovery_code_hash(key: &DataKey, normalized: &str) -> Result<String, ServiceError> {
    let secret = key.derive_secret("recovery_code");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_slice())
        .map_err(|_| ServiceError::Unexpected(anyhow::anyhow!("hmac key")))?;
    mac.update(normalized.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Ten new codes and their stored forms.
fn new_recovery_codes(key: &DataKey) -> Result<(Vec<String>, Vec<String>), ServiceError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    let mut hashes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    while codes.len() < RECOVERY_CODE_COUNT {
        let code = new_recovery_code()?;
        let normalized = normalize_recovery_code(&code)
            .ok_or_else(|| ServiceError::Unexpected(anyhow::anyhow!("recovery code shape")))?;
        let hash = recovery_code_hash(key, &normalized)?;
        if !hashes.contains(&hash) {
            codes.push(code);
            hashes.push(hash);
        }
    }
    Ok((codes, hashes))
}

impl Services {
    /// The holder's two-step state.
    pub async fn two_step_status(
        &self,
        session: &AccountSession,
    ) -> Result<TwoStepStatus, ServiceError> {
        session.require_session()?;
        let row = self.store.two_step(&session.account_id).await?;
        let enabled_at = row.and_then(|row| row.enabled_at);
        let recovery_codes_left = if enabled_at.is_some() {
            self.store
                .unused_recovery_codes(&session.account_id)
                .await?
        } else {
            0
        };
        Ok(TwoStepStatus {
            enabled: enabled_at.is_some(),
            enabled_at,
            recovery_codes_left,
        })
    }

    /// Starts TOTP enrolment: a new secret, shown once; it is used only after
    /// [`Services::confirm_totp`]. Starting again replaces an unconfirmed secret.
    pub async fn enrol_totp(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        now: Timestamp,
    ) -> Result<TotpEnrolment, ServiceError> {
        session.require_session()?;
        let account = self
            .store
            .account(&session.account_id)
            .await?
            .filter(|row| row.status == AccountStatus::Active)
            .ok_or(ServiceError::Unauthenticated)?;
        let key = self.keyring.key(account.id.as_str()).await?;
        let view = view_of(&account, &key)?;
        let secret = tokens::random_bytes::<SECRET_BYTES>()?;
        let row = TwoStepRow {
            account_id: account.id.clone(),
            secret_sealed: key.seal(SECRET_FIELD, &secret)?,
            enabled_at: None,
            last_used_step: -1,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.begin().await?;
        if !tx.put_pending_two_step(&row).await? {
            return Err(two_step_already_enabled());
        }
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account.id.as_str()),
                action::TWO_STEP_ENROLMENT_STARTED,
            )
            .target("account", account.id.as_str()),
            now,
        )
        .await?;
        // An address with a colon cannot be an otpauth label; the account ID always can.
        let otpauth_uri = TotpKey::otpauth_uri(&secret, &view.email)
            .or_else(|_| TotpKey::otpauth_uri(&secret, account.id.as_str()))?;
        Ok(TotpEnrolment {
            secret: totp::secret_base32(&secret),
            qr_svg: totp::qr_svg(&otpauth_uri)?,
            otpauth_uri,
        })
    }

    /// Switches two-step verification on with a code from the app; answers the recovery
    /// codes, shown this once.
    pub async fn confirm_totp(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        code: &str,
        now: Timestamp,
    ) -> Result<Vec<String>, ServiceError> {
        session.require_session()?;
        let account_id = &session.account_id;
        let row = self.store.two_step(account_id).await?.ok_or_else(|| {
            ServiceError::refused(
                Refusal::Conflict,
                "no_pending_enrolment",
                "start enrolment first (POST /api/v1/me/two-step/totp)",
            )
        })?;
        if row.enabled_at.is_some() {
            return Err(two_step_already_enabled());
        }
        let key = self.keyring.key(account_id.as_str()).await?;
        let totp_key = TotpKey::new(&key.open(SECRET_FIELD, &row.secret_sealed)?)?;
        let Some(step) = totp_key.verify(code, now, row.last_used_step) else {
            self.record_two_step_failure(context, account_id, "confirm", now)
                .await?;
            return Err(invalid_code());
        };
        let view = self.account_view_of(account_id, &key).await?;
        let (codes, hashes) = new_recovery_codes(&key)?;
        let mut tx = self.store.begin().await?;
        if !tx.enable_two_step(account_id, step, now).await? {
            return Err(invalid_code());
        }
        tx.replace_recovery_codes(account_id, &hashes, now).await?;
        self.send_notice_keyed(
            tx.as_mut(),
            context,
            (account_id, &key),
            &view.email,
            notices::two_step_enabled(),
            now,
        )
        .await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account_id.as_str()),
                action::TWO_STEP_ENABLED,
            )
            .target("account", account_id.as_str())
            .details(json!({ "method": "totp" })),
            now,
        )
        .await?;
        Ok(codes)
    }

    /// Switches two-step verification off: the password and a current code (or a recovery
    /// code, for a lost device) are both needed.
    pub async fn disable_totp(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        password: &str,
        code: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        session.require_session()?;
        let account = self
            .verified_account(session, context, password, "password", now)
            .await?;
        let row = self
            .store
            .two_step(&account.id)
            .await?
            .filter(|row| row.enabled_at.is_some())
            .ok_or_else(two_step_not_enabled)?;
        let key = self.keyring.key(account.id.as_str()).await?;
        let view = view_of(&account, &key)?;
        let factor = self.check_second_factor(&key, &row, code, now)?;
        let mut tx = self.store.begin().await?;
        if !self
            .use_factor(tx.as_mut(), &account.id, &key, factor, code, now)
            .await?
        {
            drop(tx);
            self.record_two_step_failure(context, &account.id, "disable", now)
                .await?;
            return Err(invalid_code());
        }
        tx.delete_two_step(&account.id).await?;
        self.send_notice_keyed(
            tx.as_mut(),
            context,
            (&account.id, &key),
            &view.email,
            notices::two_step_disabled(),
            now,
        )
        .await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account.id.as_str()),
                action::TWO_STEP_DISABLED,
            )
            .target("account", account.id.as_str())
            .details(json!({ "factor": factor.map_or("none", Factor::as_str) })),
            now,
        )
        .await?;
        Ok(())
    }

    /// A new set of recovery codes; every earlier code stops working.
    pub async fn regenerate_recovery_codes(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        password: &str,
        now: Timestamp,
    ) -> Result<Vec<String>, ServiceError> {
        session.require_session()?;
        let account = self
            .verified_account(session, context, password, "password", now)
            .await?;
        if !self.store.two_step_enabled(&account.id).await? {
            return Err(two_step_not_enabled());
        }
        let key = self.keyring.key(account.id.as_str()).await?;
        let view = view_of(&account, &key)?;
        let (codes, hashes) = new_recovery_codes(&key)?;
        let mut tx = self.store.begin().await?;
        tx.replace_recovery_codes(&account.id, &hashes, now).await?;
        self.send_notice_keyed(
            tx.as_mut(),
            context,
            (&account.id, &key),
            &view.email,
            notices::recovery_codes_regenerated(),
            now,
        )
        .await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account.id.as_str()),
                action::TWO_STEP_RECOVERY_CODES_REGENERATED,
            )
            .target("account", account.id.as_str()),
            now,
        )
        .await?;
        Ok(codes)
    }

    /// The first step of a log-in with two-step verification on: a challenge bound to the
    /// account, stored as its hash, usable once within [`CHALLENGE_LIFETIME_MS`].
    pub(crate) async fn start_second_factor(
        &self,
        context: &RequestContext,
        account: &AccountId,
        rehash: Option<&str>,
        now: Timestamp,
    ) -> Result<String, ServiceError> {
        let challenge = tokens::new_secret(CHALLENGE_PREFIX)?;
        let mut tx = self.store.begin().await?;
        if let Some(hash) = rehash {
            tx.update_password_hash(account, hash, now).await?;
        }
        tx.insert_login_challenge(&LoginChallengeRow {
            challenge_hash: secret_hash(&challenge),
            account_id: account.clone(),
            created_at: now,
            expires_at: now.plus_millis(CHALLENGE_LIFETIME_MS),
            failures: 0,
        })
        .await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account.as_str()),
                action::SESSION_SECOND_FACTOR_REQUIRED,
            )
            .target("account", account.as_str()),
            now,
        )
        .await?;
        Ok(challenge)
    }

    /// The pending log-in challenge behind `challenge` (of the kind `prefix` names), unless it
    /// is malformed, unknown, used or expired: then `401 invalid_challenge`, the same answer
    /// for each. The stored hash is compared in constant time.
    pub(crate) async fn pending_login_challenge(
        &self,
        challenge: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<LoginChallengeRow, ServiceError> {
        if !tokens::looks_like(challenge, prefix) {
            return Err(invalid_challenge());
        }
        let challenge_hash = secret_hash(challenge);
        self.store
            .login_challenge(&challenge_hash)
            .await?
            .filter(|row| {
                row.expires_at > now && tokens::hashes_equal(&row.challenge_hash, &challenge_hash)
            })
            .ok_or_else(invalid_challenge)
    }

    /// Finishes a log-in with the challenge and a TOTP or recovery code: a session, as a
    /// log-in without two-step verification gives.
    pub async fn complete_second_factor(
        &self,
        context: &RequestContext,
        challenge: &str,
        code: &str,
        now: Timestamp,
    ) -> Result<NewSession, ServiceError> {
        let pending = self
            .pending_login_challenge(challenge, CHALLENGE_PREFIX, now)
            .await?;
        let challenge_hash = pending.challenge_hash;
        let account_id = pending.account_id;
        let row = self
            .store
            .two_step(&account_id)
            .await?
            .filter(|row| row.enabled_at.is_some())
            .ok_or_else(invalid_challenge)?;
        let key = self.keyring.key(account_id.as_str()).await?;
        let factor = self.check_second_factor(&key, &row, code, now)?;
        let mut tx = self.store.begin().await?;
        let used = self
            .use_factor(tx.as_mut(), &account_id, &key, factor, code, now)
            .await?;
        if !used {
            let usable = tx
                .fail_login_challenge(&challenge_hash, CHALLENGE_MAX_FAILURES)
                .await?;
            self.record_and_commit(
                tx,
                context,
                AuditDraft::new(
                    ActorKind::Anonymous,
                    None,
                    action::SESSION_SECOND_FACTOR_FAILED,
                )
                .target("account", account_id.as_str())
                .outcome(Outcome::Failure)
                .details(json!({ "reason": "invalid_code", "challenge_ended": !usable })),
                now,
            )
            .await?;
            return Err(ServiceError::refused(
                Refusal::Unauthenticated,
                "invalid_code",
                "the code is wrong, expired or already used",
            ));
        }
        let Some(taken) = tx.take_login_challenge(&challenge_hash, now).await? else {
            return Err(invalid_challenge());
        };
        if taken != account_id {
            return Err(invalid_challenge());
        }
        let token = tokens::new_secret(SESSION_PREFIX)?;
        let session = SessionRow {
            id: SessionId::from_random(&id_random()?),
            token_hash: secret_hash(&token),
            account_id: account_id.clone(),
            created_at: now,
            last_seen_at: now,
            ip: context.ip.clone(),
            user_agent: context
                .user_agent
                .as_ref()
                .map(|agent| agent.chars().take(USER_AGENT_MAX_CHARS).collect()),
        };
        tx.insert_session(&session).await?;
        let factor_name = factor.map_or("none", Factor::as_str);
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account_id.as_str()),
                action::SESSION_LOGIN,
            )
            .target("session", session.id.as_str())
            .details(json!({ "second_factor": factor_name })),
            now,
        )
        .await?;
        Ok(NewSession {
            token,
            session: AccountSession {
                account_id,
                credential: Credential::Session(session.id),
                expires_at: self.session_policy.expires_at(now, now),
            },
        })
    }

    /// What `code` is: a TOTP code of an allowed step (`Some(Totp)`), something shaped like a
    /// recovery code (`Some(RecoveryCode)`, checked when used), or nothing valid (`None`).
    /// Malformed input is a validation error, so it is told apart from a wrong code.
    fn check_second_factor(
        &self,
        key: &DataKey,
        row: &TwoStepRow,
        code: &str,
        now: Timestamp,
    ) -> Result<Option<Factor>, ServiceError> {
        let trimmed = code.trim();
        if trimmed.len() == totp::DIGITS && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            let totp_key = TotpKey::new(&key.open(SECRET_FIELD, &row.secret_sealed)?)?;
            return Ok(totp_key
                .verify(trimmed, now, row.last_used_step)
                .map(Factor::Totp));
        }
        if normalize_recovery_code(code).is_some() {
            return Ok(Some(Factor::RecoveryCode));
        }
        Err(ServiceError::field(
            "code",
            "must be a 6-digit code from the app or a recovery code",
        ))
    }

    /// Uses the factor inside `tx`; false when it was not valid or was used already.
    async fn use_factor(
        &self,
        tx: &mut dyn mamori_store::StoreTx,
        account: &AccountId,
        key: &DataKey,
        factor: Option<Factor>,
        code: &str,
        now: Timestamp,
    ) -> Result<bool, ServiceError> {
        match factor {
            None => Ok(false),
            Some(Factor::Totp(step)) => Ok(tx.use_totp_step(account, step, now).await?),
            Some(Factor::RecoveryCode) => {
                let Some(normalized) = normalize_recovery_code(code) else {
                    return Ok(false);
                };
                let hash = recovery_code_hash(key, &normalized)?;
                Ok(tx.use_recovery_code(account, &hash, now).await?)
            }
        }
    }

    async fn record_two_step_failure(
        &self,
        context: &RequestContext,
        account: &AccountId,
        during: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let tx = self.store.begin().await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account.as_str()),
                action::TWO_STEP_CHECK_FAILED,
            )
            .target("account", account.as_str())
            .outcome(Outcome::Failure)
            .details(json!({ "during": during })),
            now,
        )
        .await
    }

    async fn account_view_of(
        &self,
        account: &AccountId,
        key: &DataKey,
    ) -> Result<crate::AccountView, ServiceError> {
        let row = self
            .store
            .account(account)
            .await?
            .filter(|row| row.status == AccountStatus::Active)
            .ok_or(ServiceError::Unauthenticated)?;
        view_of(&row, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_normalize() {
        let code = new_recovery_code().unwrap();
        assert_eq!(code.len(), 11);
        let normalized = normalize_recovery_code(&code).unwrap();
        assert_eq!(
            normalize_recovery_code(&format!(" {} ", code.to_uppercase())),
            Some(normalized)
        );
        assert_eq!(normalize_recovery_code("123456"), None);
        assert_eq!(normalize_recovery_code("abcde-fghi1"), None);
    }
}
