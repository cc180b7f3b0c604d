//! Getting and keeping control of an account (issue 4, items 3, 4 and 5): brute-force
//! protection of log-in, password reset by email, email verification (ACC-8) and email
//! changes confirmed at the new address.
//!
//! Nothing here tells whether an email address has an account: a reset request answers the
//! same and does one write transaction either way, and the lock-out is kept per login name
//! (the email's keyed blind index) whether or not an account has it, so an unknown address is
//! counted and locked exactly like a known one.
//!
//! Mailed tokens are 256 random bits, stored only as SHA-256, single-use and short-lived; the
//! link carries them in the URL fragment, which browsers never send to a server, so they do
//! not reach access logs or `Referer` headers.

use crate::accounts::{email_index, view_of};
use crate::audit::{AuditDraft, RequestContext};
use crate::error::Refusal;
use crate::mail::{Mail, enqueue};
use crate::notices;
use crate::orgs::org_event;
use crate::sessions::AccountSession;
use crate::tokens::{self, id_random, secret_hash};
use crate::{OrgAccess, ServiceError, Services};
use mamori_core::account::{DisplayName, Email, NewPassword, personal_words};
use mamori_core::audit::{ActorKind, Outcome, action};
use mamori_core::{AccountId, Timestamp};
use mamori_keyring::DataKey;
use mamori_store::{
    AccountRow, AccountStatus, AccountTokenRow, LoginAttempt, StoreError, StoreTx, TokenPurpose,
};
use serde_json::json;

/// Password reset tokens.
pub const RESET_PREFIX: &str = "mmr_";
/// Email verification and email change tokens.
pub const VERIFY_PREFIX: &str = "mmv_";
const RESET_LIFETIME_MS: i64 = 30 * 60_000;
const VERIFICATION_LIFETIME_MS: i64 = 24 * 3_600_000;
/// At most one reset or verification mail per account this often; more requests answer the
/// same but send nothing, so nobody can flood a mailbox through us.
const RESEND_INTERVAL_MS: i64 = 60_000;
const PENDING_EMAIL_FIELD: &str = "pending_email";

fn token_invalid() -> ServiceError {
    ServiceError::refused(
        Refusal::Gone,
        "token_invalid",
        "this link is not valid; ask for a new one",
    )
}

impl Services {
    /// Brute-force protection, before the password is checked: counts this attempt for the
    /// login name and locks the name from the policy's threshold on (a success clears it,
    /// see [`Services::clear_login_attempts`]). A locked name is refused with `Locked` and the
    /// refusal is audited; `account` is only for the audit trail, never for the answer.
    pub(crate) async fn count_login_attempt(
        &self,
        context: &RequestContext,
        login_name: &str,
        account: Option<&AccountId>,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let policy = self.lockout;
        let forget_before = now.plus_millis(-policy.forget_after_ms);
        // Below the threshold the count alone decides: one statement, no transaction. The
        // attempt that reaches it, and any on a locked name, go through the transaction below,
        // which counts and locks together, so parallel guesses cannot slip past the lock.
        if self
            .store
            .count_login_attempt_below(login_name, now, forget_before, i64::from(policy.threshold))
            .await?
            .is_some()
        {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        match tx
            .count_login_attempt(login_name, now, forget_before)
            .await?
        {
            LoginAttempt::Counted { attempts } => {
                if let Some(lock_ms) = policy.lock_ms(attempts) {
                    tx.lock_login(login_name, now.plus_millis(lock_ms)).await?;
                }
                tx.commit().await?;
                Ok(())
            }
            LoginAttempt::Locked { until } => {
                let retry_after_seconds = u64::try_from((until.millis_since(now) + 999) / 1000)
                    .unwrap_or(1)
                    .max(1);
                let target = account.map(AccountId::as_str);
                let mut draft =
                    AuditDraft::new(ActorKind::Anonymous, None, action::SESSION_LOGIN_FAILED)
                        .outcome(Outcome::Failure)
                        .details(json!({ "reason": "locked", "locked_until": until.to_rfc3339() }));
                if let Some(target) = target {
                    draft = draft.target("account", target);
                }
                self.record_and_commit(tx, context, draft, now).await?;
                Err(ServiceError::Locked {
                    retry_after_seconds,
                })
            }
        }
    }

    /// After a successful log-in, inside its transaction: the count starts again.
    pub(crate) async fn clear_login_attempts(
        &self,
        tx: &mut dyn StoreTx,
        login_name: &str,
    ) -> Result<(), ServiceError> {
        tx.clear_login_throttle(login_name).await?;
        Ok(())
    }

    /// A token of one of `purposes` found by its secret, usable at `now`; otherwise the
    /// refusal that fits (invalid, used or expired). Wrong shapes, unknown and tampered tokens
    /// are all `token_invalid`.
    async fn usable_token(
        &self,
        token: &str,
        prefix: &str,
        purposes: &[TokenPurpose],
        now: Timestamp,
    ) -> Result<(AccountTokenRow, AccountRow), ServiceError> {
        if !tokens::looks_like(token, prefix) {
            return Err(token_invalid());
        }
        let hash = secret_hash(token);
        let row = self
            .store
            .account_token_by_hash(&hash)
            .await?
            .filter(|row| tokens::hashes_equal(&row.token_hash, &hash))
            .filter(|row| purposes.contains(&row.purpose))
            .ok_or_else(token_invalid)?;
        if row.used_at.is_some() {
            return Err(ServiceError::refused(
                Refusal::Gone,
                "token_used",
                "this link was used already; ask for a new one",
            ));
        }
        if now >= row.expires_at {
            return Err(ServiceError::refused(
                Refusal::Gone,
                "token_expired",
                "this link has expired; ask for a new one",
            ));
        }
        let account = self
            .store
            .account(&row.account_id)
            .await?
            .filter(|account| account.status == AccountStatus::Active)
            .ok_or_else(token_invalid)?;
        Ok((row, account))
    }

    fn link(&self, path: &str, token: &str) -> String {
        format!(
            "{}/{path}#token={token}",
            self.mail_settings.public_url.trim_end_matches('/')
        )
    }

    /// Whether a mail of `purpose` went to the account less than a minute ago.
    async fn mailed_recently(
        &self,
        account: &AccountId,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<bool, ServiceError> {
        Ok(self
            .store
            .newest_unused_token_at(account, purpose)
            .await?
            .is_some_and(|at| now.millis_since(at) < RESEND_INTERVAL_MS))
    }

    /// Item 5: asks for a password reset link. The answer, and the work done, are the same
    /// whether or not the address has an account: one read, one write transaction with one
    /// audit event; only for an account does that transaction also hold the token and its mail.
    pub async fn request_password_reset(
        &self,
        context: &RequestContext,
        email: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let email = Email::parse("email", email)?;
        let account = self.account_by_email(&email).await?;
        // The same read for an unknown address as for a known one.
        let probe = account
            .as_ref()
            .map(|row| row.id.clone())
            .unwrap_or_else(|| AccountId::from_stored(String::from("acc_none")));
        let recently = self
            .mailed_recently(&probe, TokenPurpose::PasswordReset, now)
            .await?;
        let mut tx = self.store.begin().await?;
        let Some(account) = account else {
            let draft = AuditDraft::new(
                ActorKind::Anonymous,
                None,
                action::ACCOUNT_PASSWORD_RESET_REQUESTED,
            )
            .details(json!({ "mailed": false }));
            return self.record_and_commit(tx, context, draft, now).await;
        };
        if !recently {
            let key = self.keyring.key(account.id.as_str()).await?;
            let to = view_of(&account, &key)?.email;
            let token = tokens::new_secret(RESET_PREFIX)?;
            tx.insert_account_token(&AccountTokenRow {
                id: hex::encode(id_random()?),
                purpose: TokenPurpose::PasswordReset,
                account_id: account.id.clone(),
                token_hash: secret_hash(&token),
                email_index: account.email_index.clone().unwrap_or_default(),
                email_sealed: None,
                created_at: now,
                expires_at: now.plus_millis(RESET_LIFETIME_MS),
                used_at: None,
            })
            .await?;
            let link = self.link("password-reset", &token);
            let mail = Mail {
                to,
                subject: String::from("Reset your password"),
                body: format!(
                    "Someone asked to reset the password of your account.\n\n\
                     To choose a new password, open this link within 30 minutes:\n{link}\n\n\
                     The link works once. If you did not ask for it, ignore this message: your \
                     password stays as it is.\n\n\
                     Reset token (if your app asks for it): {token}\n"
                ),
            };
            enqueue(
                tx.as_mut(),
                &key,
                account.id.as_str(),
                "password_reset",
                &mail,
                now,
            )
            .await?;
        }
        let draft = AuditDraft::new(
            ActorKind::Anonymous,
            None,
            action::ACCOUNT_PASSWORD_RESET_REQUESTED,
        )
        .target("account", account.id.as_str())
        .details(json!({ "mailed": !recently }));
        self.record_and_commit(tx, context, draft, now).await
    }

    /// Item 5: sets a new password with a reset token. Every session ends, the lock-out is
    /// cleared, every other reset link dies and a notice goes to the account's address.
    pub async fn complete_password_reset(
        &self,
        context: &RequestContext,
        token: &str,
        new_password: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let (token_row, account) = self
            .usable_token(token, RESET_PREFIX, &[TokenPurpose::PasswordReset], now)
            .await?;
        let login_name = account.email_index.clone().unwrap_or_default();
        // A link mailed to an address the account no longer has is dead.
        if !tokens::hashes_equal(&token_row.email_index, &login_name) {
            return Err(token_invalid());
        }
        let key = self.keyring.key(account.id.as_str()).await?;
        let view = view_of(&account, &key)?;
        let email = Email::from_stored(view.email.clone());
        let name = DisplayName::from_stored(view.display_name);
        let words = personal_words(&email, Some(&name));
        let word_refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let password = NewPassword::parse("new_password", new_password, &word_refs)?;
        let hash = self.passwords.hash(password.as_str()).await?;
        let mut tx = self.store.begin().await?;
        if !tx.use_account_token(&token_row.id, now).await? {
            return Err(ServiceError::refused(
                Refusal::Gone,
                "token_used",
                "this link was used already; ask for a new one",
            ));
        }
        tx.update_password_hash(&account.id, &hash, now).await?;
        let ended = tx.delete_sessions_of(&account.id, None).await?;
        tx.retire_account_tokens(&account.id, TokenPurpose::PasswordReset, now)
            .await?;
        tx.clear_login_throttle(&login_name).await?;
        self.send_notice_to(
            tx.as_mut(),
            context,
            (&account, &key),
            &view.email,
            notices::password_reset(),
            now,
        )
        .await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account.id.as_str()),
                action::ACCOUNT_PASSWORD_RESET,
            )
            .target("account", account.id.as_str())
            .details(json!({ "sessions_ended": ended })),
            now,
        )
        .await
    }

    /// ACC-8: puts a verification link for the account's address in the outbox, inside `tx`
    /// (at sign-up, in the sign-up's own transaction).
    pub(crate) async fn mail_verification_in_tx(
        &self,
        tx: &mut dyn StoreTx,
        (account, key): (&AccountId, &DataKey),
        (email, email_index): (&str, &str),
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let token = tokens::new_secret(VERIFY_PREFIX)?;
        tx.insert_account_token(&AccountTokenRow {
            id: hex::encode(id_random()?),
            purpose: TokenPurpose::EmailVerification,
            account_id: account.clone(),
            token_hash: secret_hash(&token),
            email_index: email_index.to_owned(),
            email_sealed: None,
            created_at: now,
            expires_at: now.plus_millis(VERIFICATION_LIFETIME_MS),
            used_at: None,
        })
        .await?;
        let link = self.link("verify-email", &token);
        let mail = Mail {
            to: email.to_owned(),
            subject: String::from("Confirm your email address"),
            body: format!(
                "Please confirm that this address belongs to your account by opening this link \
                 within 24 hours:\n{link}\n\n\
                 If you did not create an account, ignore this message.\n\n\
                 Confirmation token (if your app asks for it): {token}\n"
            ),
        };
        enqueue(tx, key, account.as_str(), "email_verification", &mail, now).await
    }

    /// ACC-8: mails a new verification link to the holder's address (at most one a minute;
    /// more requests answer the same and send nothing).
    pub async fn resend_email_verification(
        &self,
        session: &AccountSession,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let account = self
            .store
            .account(&session.account_id)
            .await?
            .filter(|row| row.status == AccountStatus::Active)
            .ok_or(ServiceError::Unauthenticated)?;
        if account.email_verified {
            return Err(ServiceError::refused(
                Refusal::Conflict,
                "email_already_verified",
                "the email address of this account is verified already",
            ));
        }
        if self
            .mailed_recently(&account.id, TokenPurpose::EmailVerification, now)
            .await?
        {
            return Ok(());
        }
        let key = self.keyring.key(account.id.as_str()).await?;
        let view = view_of(&account, &key)?;
        let index = account.email_index.clone().unwrap_or_default();
        let mut tx = self.store.begin().await?;
        tx.retire_account_tokens(&account.id, TokenPurpose::EmailVerification, now)
            .await?;
        self.mail_verification_in_tx(tx.as_mut(), (&account.id, &key), (&view.email, &index), now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// ACC-8: asks to change the holder's email address (with the password). A link goes to
    /// the new address and a notice to the current one; nothing changes until the link is
    /// opened. The answer does not say whether the new address has an account: that is
    /// checked when the change is confirmed.
    pub async fn request_email_change(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        new_email: &str,
        password: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let new_email = Email::parse("email", new_email)?;
        self.refuse_local_account(&session.account_id, "change its email address")
            .await?;
        let account = self
            .verified_account(session, context, password, "password", now)
            .await?;
        let key = self.keyring.key(account.id.as_str()).await?;
        let view = view_of(&account, &key)?;
        if Email::from_stored(view.email.clone()).canonical() == new_email.canonical() {
            return Err(ServiceError::field(
                "email",
                "is the account's address already",
            ));
        }
        let token = tokens::new_secret(VERIFY_PREFIX)?;
        let row = AccountTokenRow {
            id: hex::encode(id_random()?),
            purpose: TokenPurpose::EmailChange,
            account_id: account.id.clone(),
            token_hash: secret_hash(&token),
            email_index: email_index(self, &new_email),
            email_sealed: Some(key.seal(PENDING_EMAIL_FIELD, new_email.as_str().as_bytes())?),
            created_at: now,
            expires_at: now.plus_millis(VERIFICATION_LIFETIME_MS),
            used_at: None,
        };
        let mut tx = self.store.begin().await?;
        // Only the newest request counts.
        tx.retire_account_tokens(&account.id, TokenPurpose::EmailChange, now)
            .await?;
        tx.insert_account_token(&row).await?;
        let link = self.link("verify-email", &token);
        let mail = Mail {
            to: new_email.as_str().to_owned(),
            subject: String::from("Confirm your new email address"),
            body: format!(
                "Someone asked to use this address for their account.\n\n\
                 To confirm, open this link within 24 hours:\n{link}\n\n\
                 If you did not ask for this, ignore this message: nothing changes.\n\n\
                 Confirmation token (if your app asks for it): {token}\n"
            ),
        };
        enqueue(
            tx.as_mut(),
            &key,
            account.id.as_str(),
            "email_change",
            &mail,
            now,
        )
        .await?;
        self.send_notice_to(
            tx.as_mut(),
            context,
            (&account, &key),
            &view.email,
            notices::email_change_requested(new_email.as_str()),
            now,
        )
        .await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account.id.as_str()),
                action::ACCOUNT_EMAIL_CHANGE_REQUESTED,
            )
            .target("account", account.id.as_str()),
            now,
        )
        .await
    }

    /// ACC-8: confirms an address with a mailed token: either the account's own address
    /// (verification) or a new one (a change, done only now and only if no other account has
    /// taken the address meanwhile; the former address gets a notice).
    pub async fn complete_email_verification(
        &self,
        context: &RequestContext,
        token: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let (token_row, account) = self
            .usable_token(
                token,
                VERIFY_PREFIX,
                &[TokenPurpose::EmailVerification, TokenPurpose::EmailChange],
                now,
            )
            .await?;
        let current_index = account.email_index.clone().unwrap_or_default();
        let used = || {
            ServiceError::refused(
                Refusal::Gone,
                "token_used",
                "this link was used already; ask for a new one",
            )
        };
        if token_row.purpose == TokenPurpose::EmailVerification {
            // A link to an address the account no longer has proves nothing about it.
            if !tokens::hashes_equal(&token_row.email_index, &current_index) {
                return Err(token_invalid());
            }
            let mut tx = self.store.begin().await?;
            if !tx.use_account_token(&token_row.id, now).await? {
                return Err(used());
            }
            tx.mark_email_verified(&account.id, now).await?;
            return self
                .record_and_commit(
                    tx,
                    context,
                    AuditDraft::new(
                        ActorKind::Account,
                        Some(account.id.as_str()),
                        action::ACCOUNT_EMAIL_VERIFIED,
                    )
                    .target("account", account.id.as_str()),
                    now,
                )
                .await;
        }
        let key = self.keyring.key(account.id.as_str()).await?;
        let old_email = view_of(&account, &key)?.email;
        let sealed = token_row.email_sealed.clone().ok_or_else(token_invalid)?;
        let new_email = key.open_string(PENDING_EMAIL_FIELD, &sealed)?;
        let taken = || {
            ServiceError::refused(
                Refusal::Conflict,
                "email_taken",
                "another account uses this address now; the change cannot be made",
            )
        };
        if self
            .store
            .account_by_email_index(&token_row.email_index)
            .await?
            .is_some()
        {
            return Err(taken());
        }
        let new_sealed = key.seal("email", new_email.as_bytes())?;
        let mut tx = self.store.begin().await?;
        if !tx.use_account_token(&token_row.id, now).await? {
            return Err(used());
        }
        match tx
            .update_email(&account.id, &token_row.email_index, &new_sealed, now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => return Err(taken()),
            Err(other) => return Err(other.into()),
        }
        // Links mailed to the former address die with it.
        tx.retire_account_tokens(&account.id, TokenPurpose::EmailVerification, now)
            .await?;
        tx.retire_account_tokens(&account.id, TokenPurpose::PasswordReset, now)
            .await?;
        self.send_notice_to(
            tx.as_mut(),
            context,
            (&account, &key),
            &old_email,
            notices::email_changed(&new_email),
            now,
        )
        .await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account.id.as_str()),
                action::ACCOUNT_EMAIL_CHANGED,
            )
            .target("account", account.id.as_str()),
            now,
        )
        .await
    }

    /// ACC-8: an administrator decides whether only accounts with a verified email address
    /// may join the organization.
    pub async fn set_require_verified_email(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        required: bool,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let (mut tx, actor) = self.begin_in_org(access).await?;
        if !actor.membership.is_admin() {
            return Err(ServiceError::forbidden(
                "only administrators change the organization's settings",
            ));
        }
        tx.set_org_require_verified_email(&access.org_id, required, now)
            .await?;
        self.record_and_commit(
            tx,
            context,
            org_event(access, action::ORG_UPDATED)
                .target("org", access.org_id.as_str())
                .details(json!({ "fields": ["require_verified_email"], "require_verified_email": required })),
            now,
        )
        .await
    }

    /// ACC-8: refuses an unverified account joining an organization that requires verified
    /// addresses.
    pub(crate) async fn check_may_join(
        &self,
        account: &AccountRow,
        org: &mamori_core::OrgId,
    ) -> Result<(), ServiceError> {
        let requires = self
            .store
            .org(org)
            .await?
            .is_some_and(|row| row.require_verified_email);
        if requires && !account.email_verified {
            return Err(ServiceError::refused(
                Refusal::Forbidden,
                "email_unverified",
                "this organization admits only verified email addresses; confirm yours with the \
                 link we mailed (POST /api/v1/me/email-verification sends a new one)",
            ));
        }
        Ok(())
    }
}

impl Services {
    /// ACC-7: refuses a new member beyond the organization's plan limit (`max_members`).
    /// Called inside a transaction that holds the organization's lock.
    pub(crate) async fn check_room_for_member(
        &self,
        tx: &mut dyn StoreTx,
        org: &mamori_core::OrgId,
    ) -> Result<(), ServiceError> {
        if let Some(max_members) = tx.org_max_members(org).await? {
            let members = tx.count_members(org).await?;
            if i64::try_from(members).unwrap_or(i64::MAX) >= max_members {
                return Err(ServiceError::refused(
                    Refusal::Conflict,
                    "plan_limit_reached",
                    format!(
                        "the organization's plan allows {max_members} members and has them all"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// ACC-7: the operator sets an organization's member limit (`None`: no limit). Members
    /// beyond a lowered limit stay; only new ones are refused.
    pub async fn set_max_members(
        &self,
        operator: &crate::OperatorPrincipal,
        context: &RequestContext,
        org: &str,
        max_members: Option<u32>,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let org_id = mamori_core::OrgId::parse(org).ok_or(ServiceError::NotFound)?;
        if max_members == Some(0) {
            return Err(ServiceError::field("max_members", "must be at least 1"));
        }
        let mut tx = self.store.begin().await?;
        tx.lock_org(&org_id).await.map_err(|error| match error {
            StoreError::NotFound => ServiceError::NotFound,
            other => other.into(),
        })?;
        tx.set_org_max_members(&org_id, max_members.map(i64::from), now)
            .await?;
        let mut draft = AuditDraft::new(
            ActorKind::Operator,
            Some(operator.token_id.as_str()),
            action::ORG_PLAN_LIMIT_CHANGED,
        )
        .target("org", org_id.as_str())
        .details(json!({ "max_members": max_members }));
        draft.org = Some(&org_id);
        self.record_and_commit(tx, context, draft, now).await
    }
}
