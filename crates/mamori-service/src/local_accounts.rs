//! Organization-local accounts (ACC-7, the "classic plan" mode).
//!
//! An administrator, or a member with invite permission, registers an account that belongs to
//! the organization only: a member of it, counted against its plan limit, logging in with the
//! organization's ID and a login ID. A random initial password is mailed to the account's
//! address (through the outbox, sealed under the account's data key) and shown nowhere else;
//! a log-in with it earns only an `mmf_` challenge, with which the holder sets a password of
//! their own. The initial password works for [`INITIAL_PASSWORD_LIFETIME_MS`]; the
//! administrator can mail a new one, which also ends every session and token of the account.
//! Such accounts never join another organization, create one or change their address, and
//! they disappear with their organization (`purge_org_local_accounts`).
//!
//! See `docs/design/local-accounts.md`.

use crate::accounts::view_of;
use crate::audit::{AuditDraft, RequestContext};
use crate::error::Refusal;
use crate::mail::{Mail, enqueue};
use crate::orgs::{OrgAccess, Page, org_event, parse_cursor};
use crate::passwords::Verification;
use crate::sessions::NewSession;
use crate::tokens::{self, PASSWORD_CHANGE_PREFIX, id_random, secret_hash};
use crate::two_step::invalid_challenge;
use crate::{ServiceError, Services};
use mamori_core::account::{
    DisplayName, Email, LoginId, NewPassword, PASSWORD_MAX_CHARS, normalize_password,
    personal_words,
};
use mamori_core::audit::{ActorKind, action};
use mamori_core::org::{Membership, OrgRole};
use mamori_core::{AccountId, FieldError, OrgId, Timestamp};
use mamori_keyring::DataKey;
use mamori_store::{
    AccountRow, AccountStatus, LocalAccountRow, LoginChallengeRow, MembershipRow, StoreError,
    StoreTx,
};
use serde_json::json;

/// How long an initial password works before the administrator must mail a new one.
pub const INITIAL_PASSWORD_LIFETIME_MS: i64 = 7 * 86_400_000;
/// How long the holder has, after logging in with the initial password, to set a new one.
pub const PASSWORD_CHANGE_CHALLENGE_LIFETIME_MS: i64 = 10 * 60_000;
/// Initial passwords: 20 characters from an alphabet without look-alikes (about 116 bits).
const INITIAL_PASSWORD_CHARS: usize = 20;
const INITIAL_PASSWORD_ALPHABET: &[u8] =
    b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const LOGIN_ID_FIELD: &str = "login_id";

/// What an administrator types to register a local account.
pub struct NewLocalAccount {
    pub login_id: String,
    pub display_name: String,
    pub email: String,
}

/// A local account as its organization's administrators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAccountView {
    pub account_id: AccountId,
    pub org_id: OrgId,
    pub login_id: String,
    pub email: String,
    pub display_name: String,
    /// The password is still the initial one.
    pub must_change_password: bool,
    pub initial_password_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

fn local_account_refusal(what: &str) -> ServiceError {
    ServiceError::refused(
        Refusal::Forbidden,
        "local_account",
        format!("an organization-local account cannot {what}"),
    )
}

fn login_id_taken() -> ServiceError {
    ServiceError::refused(
        Refusal::Conflict,
        "login_id_taken",
        "this organization has an account with this login ID already",
    )
}

fn may_manage(actor: Membership) -> Result<(), ServiceError> {
    if actor.may_invite() {
        Ok(())
    } else {
        Err(ServiceError::forbidden(
            "only administrators and members who may invite manage local accounts",
        ))
    }
}

/// A new random initial password.
fn new_initial_password() -> Result<String, ServiceError> {
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - 256 % INITIAL_PASSWORD_ALPHABET.len();
    let mut password = String::with_capacity(INITIAL_PASSWORD_CHARS);
    while password.len() < INITIAL_PASSWORD_CHARS {
        for byte in tokens::random_bytes::<32>()? {
            if usize::from(byte) < limit && password.len() < INITIAL_PASSWORD_CHARS {
                let index = usize::from(byte) % INITIAL_PASSWORD_ALPHABET.len();
                password.push(char::from(INITIAL_PASSWORD_ALPHABET[index]));
            }
        }
    }
    Ok(password)
}

/// The message that carries an initial password; only ever in the sealed outbox.
fn initial_password_mail(
    to: &str,
    org_name: &str,
    org: &OrgId,
    login_id: &str,
    password: &str,
    first: bool,
) -> Mail {
    let opening = if first {
        format!("An account was created for you in {org_name}.")
    } else {
        format!("An administrator of {org_name} set a new initial password for your account.")
    };
    Mail {
        to: to.to_owned(),
        subject: format!("Your account in {org_name}"),
        body: format!(
            "{opening}\n\n\
             Organization ID: {org}\n\
             Login ID: {login_id}\n\
             Initial password: {password}\n\n\
             Log in within 7 days with these; you will then choose a password of your own.\n\
             If you did not expect this message, tell the organization's administrator.\n"
        ),
    }
}

impl Services {
    /// The blind index of a login name: the organization's ID and the canonical login ID.
    fn login_index(&self, org: &str, login_id: &LoginId) -> String {
        self.keyring
            .blind_index("local_login", &format!("{org}:{}", login_id.as_str()))
    }

    /// Refuses what an organization-local account may not do (join another organization,
    /// create one, change its address).
    pub(crate) async fn refuse_local_account(
        &self,
        account: &AccountId,
        what: &str,
    ) -> Result<(), ServiceError> {
        if self.store.local_account(account).await?.is_some() {
            return Err(local_account_refusal(what));
        }
        Ok(())
    }

    fn local_view(
        &self,
        local: &LocalAccountRow,
        account: &AccountRow,
        key: &DataKey,
    ) -> Result<LocalAccountView, ServiceError> {
        let view = view_of(account, key)?;
        Ok(LocalAccountView {
            account_id: local.account_id.clone(),
            org_id: local.org_id.clone(),
            login_id: key.open_string(LOGIN_ID_FIELD, &local.login_id_sealed)?,
            email: view.email,
            display_name: view.display_name,
            must_change_password: local.must_change_password,
            initial_password_expires_at: local
                .initial_password_expires_at
                .filter(|_| local.must_change_password),
            created_at: local.created_at,
        })
    }

    async fn org_name(&self, org: &OrgId) -> Result<String, ServiceError> {
        let key = self.org_key(org).await?;
        let row = self.store.org(org).await?.ok_or(ServiceError::NotFound)?;
        Ok(key.open_string("name", &row.name_sealed)?)
    }

    /// ACC-7: registers a local account in the organization, a member there; its initial
    /// password goes by mail only.
    pub async fn register_local_account(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        input: NewLocalAccount,
        now: Timestamp,
    ) -> Result<LocalAccountView, ServiceError> {
        may_manage(access.membership)?;
        let login_id = LoginId::parse(LOGIN_ID_FIELD, &input.login_id);
        let name = DisplayName::parse("display_name", &input.display_name);
        let email = Email::parse("email", &input.email);
        let (login_id, name, email) = match (login_id, name, email) {
            (Ok(login_id), Ok(name), Ok(email)) => (login_id, name, email),
            (login_id, name, email) => {
                let errors: Vec<FieldError> = [login_id.err(), name.err(), email.err()]
                    .into_iter()
                    .flatten()
                    .collect();
                return Err(ServiceError::Validation(errors));
            }
        };
        let login_index = self.login_index(access.org_id.as_str(), &login_id);
        if self
            .store
            .local_account_by_login(&login_index)
            .await?
            .is_some()
        {
            return Err(login_id_taken());
        }
        let org_name = self.org_name(&access.org_id).await?;
        let password = new_initial_password()?;
        let password_hash = self.passwords.hash(&password).await?;
        let id = AccountId::from_random(&id_random()?);
        // The key is made first: if the rows never commit, an unused key is harmless.
        let key = self
            .keyring
            .create_key(id.as_str(), now.as_millis())
            .await?;
        let account = AccountRow {
            id: id.clone(),
            status: AccountStatus::Active,
            // No email index: a local account logs in by organization and login ID only, and
            // its address may be shared with other accounts.
            email_index: None,
            email_sealed: Some(key.seal("email", email.as_str().as_bytes())?),
            display_name_sealed: Some(key.seal("display_name", name.as_str().as_bytes())?),
            password_hash: Some(password_hash),
            email_verified: false,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let local = LocalAccountRow {
            account_id: id.clone(),
            org_id: access.org_id.clone(),
            login_index,
            login_id_sealed: key.seal(LOGIN_ID_FIELD, login_id.as_str().as_bytes())?,
            must_change_password: true,
            initial_password_expires_at: Some(now.plus_millis(INITIAL_PASSWORD_LIFETIME_MS)),
            created_by: Some(access.account_id.clone()),
            created_at: now,
            updated_at: now,
        };
        let result = async {
            let (mut tx, actor) = self.begin_in_org(access).await?;
            may_manage(actor.membership)?;
            // ACC-7: the plan's member limit, counted under the organization's lock.
            self.check_room_for_member(tx.as_mut(), &access.org_id)
                .await?;
            tx.insert_account(&account).await?;
            match tx.insert_local_account(&local).await {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => return Err(login_id_taken()),
                Err(other) => return Err(other.into()),
            }
            tx.insert_membership(&MembershipRow {
                org_id: access.org_id.clone(),
                account_id: id.clone(),
                role: OrgRole::Member,
                can_invite: false,
                created_at: now,
                updated_at: now,
            })
            .await?;
            let mail = initial_password_mail(
                email.as_str(),
                &org_name,
                &access.org_id,
                login_id.as_str(),
                &password,
                true,
            );
            enqueue(
                tx.as_mut(),
                &key,
                id.as_str(),
                "initial_password",
                &mail,
                now,
            )
            .await?;
            self.record(
                tx.as_mut(),
                context,
                AuditDraft::new(
                    ActorKind::Account,
                    Some(access.account_id.as_str()),
                    action::ACCOUNT_CREATED,
                )
                .target("account", id.as_str())
                .details(json!({ "local_to": access.org_id.as_str() })),
                now,
            )
            .await?;
            self.record_and_commit(
                tx,
                context,
                org_event(access, action::ORG_LOCAL_ACCOUNT_CREATED)
                    .target("account", id.as_str())
                    .details(json!({ "role": OrgRole::Member.as_str() })),
                now,
            )
            .await
        }
        .await;
        if let Err(error) = result {
            let _ = self.keyring.destroy(id.as_str(), now.as_millis()).await;
            return Err(error);
        }
        self.local_view(&local, &account, &key)
    }

    /// ACC-7: the organization's local accounts, for those who manage them.
    pub async fn list_local_accounts(
        &self,
        access: &OrgAccess,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<LocalAccountView>, ServiceError> {
        may_manage(access.membership)?;
        let after = parse_cursor(cursor, AccountId::parse)?;
        let rows = self
            .store
            .local_accounts_of_org(&access.org_id, after.as_ref(), limit + 1)
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for (local, account) in &rows {
            let key = self.keyring.key(account.id.as_str()).await?;
            views.push(self.local_view(local, account, &key)?);
        }
        Page::from_rows(views, limit, |view| view.account_id.to_string(), Ok)
    }

    /// Inside the organization's lock: the local account `account` of this organization,
    /// which `actor` may manage. Administrators among local accounts are managed only by
    /// administrators, and the last administrator stays.
    async fn managed_local_account(
        &self,
        tx: &mut dyn StoreTx,
        actor: Membership,
        org: &OrgId,
        account: &AccountId,
        deleting: bool,
    ) -> Result<(LocalAccountRow, Option<MembershipRow>), ServiceError> {
        may_manage(actor)?;
        let local = tx
            .local_account_in_tx(org, account)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let membership = tx.membership_in_tx(org, account).await?;
        if let Some(membership) = &membership
            && membership.role == OrgRole::Admin
        {
            if !actor.is_admin() {
                return Err(ServiceError::forbidden(
                    "only administrators manage a local account that is an administrator",
                ));
            }
            if deleting && tx.count_admins(org).await? <= 1 {
                return Err(ServiceError::refused(
                    Refusal::Conflict,
                    "last_admin",
                    "this local account is the last administrator; make someone else administrator first",
                ));
            }
        }
        Ok((local, membership))
    }

    /// ACC-7 and ACC-4: deletes a local account as account deletion does: its personal data
    /// goes at once, every session and token ends, its data key is destroyed, and its login ID
    /// is free again.
    pub async fn delete_local_account(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        account: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        may_manage(access.membership)?;
        let account = AccountId::parse(account).ok_or(ServiceError::NotFound)?;
        let (mut tx, actor) = self.begin_in_org(access).await?;
        let (_, membership) = self
            .managed_local_account(
                tx.as_mut(),
                actor.membership,
                &access.org_id,
                &account,
                true,
            )
            .await?;
        tx.tombstone_account(&account, now).await?;
        let ended = tx.delete_sessions_of(&account, None).await?;
        tx.delete_credentials_of(&account).await?;
        if membership.is_some() {
            tx.delete_membership(&access.org_id, &account).await?;
        }
        tx.scrub_invitations_of(&account).await?;
        tx.delete_account_tokens(&account).await?;
        tx.delete_local_account(&account).await?;
        tx.request_key_destruction(account.as_str(), now).await?;
        self.record(
            tx.as_mut(),
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(access.account_id.as_str()),
                action::ACCOUNT_DELETED,
            )
            .target("account", account.as_str())
            .details(json!({ "sessions_ended": ended, "local_to": access.org_id.as_str() })),
            now,
        )
        .await?;
        self.record_and_commit(
            tx,
            context,
            org_event(access, action::ORG_LOCAL_ACCOUNT_DELETED)
                .target("account", account.as_str())
                .details(json!({ "sessions_ended": ended })),
            now,
        )
        .await?;
        // The destruction request is already durable; if this fails the job finishes it.
        if let Err(error) = self.destroy_key(account.as_str(), now).await {
            tracing::warn!(account = %account, error = %error, "key destruction deferred to the job");
        }
        Ok(())
    }

    /// ACC-7: mails a new initial password to a local account; every session, token and
    /// pending log-in of it ends, its lock-out is cleared, and the next log-in must set a new
    /// password.
    pub async fn reset_local_account_password(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        account: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        may_manage(access.membership)?;
        let account = AccountId::parse(account).ok_or(ServiceError::NotFound)?;
        // Reads through the pool come before the transaction.
        let (local, row) = match self.store.local_account(&account).await? {
            Some(local) if local.org_id == access.org_id => {
                let row = self
                    .store
                    .account(&account)
                    .await?
                    .filter(|row| row.status == AccountStatus::Active)
                    .ok_or(ServiceError::NotFound)?;
                (local, row)
            }
            _ => return Err(ServiceError::NotFound),
        };
        let key = self.keyring.key(account.as_str()).await?;
        let view = self.local_view(&local, &row, &key)?;
        let org_name = self.org_name(&access.org_id).await?;
        let password = new_initial_password()?;
        let password_hash = self.passwords.hash(&password).await?;
        let (mut tx, actor) = self.begin_in_org(access).await?;
        let (local, _) = self
            .managed_local_account(
                tx.as_mut(),
                actor.membership,
                &access.org_id,
                &account,
                false,
            )
            .await?;
        let ended = tx
            .set_initial_password(
                &account,
                &password_hash,
                now.plus_millis(INITIAL_PASSWORD_LIFETIME_MS),
                now,
            )
            .await
            .map_err(|error| match error {
                StoreError::NotFound => ServiceError::NotFound,
                other => other.into(),
            })?;
        tx.clear_login_throttle(&local.login_index).await?;
        let mail = initial_password_mail(
            &view.email,
            &org_name,
            &access.org_id,
            &view.login_id,
            &password,
            false,
        );
        enqueue(
            tx.as_mut(),
            &key,
            account.as_str(),
            "initial_password",
            &mail,
            now,
        )
        .await?;
        self.record_and_commit(
            tx,
            context,
            org_event(access, action::ORG_LOCAL_ACCOUNT_PASSWORD_RESET)
                .target("account", account.as_str())
                .details(json!({ "credentials_ended": ended })),
            now,
        )
        .await
    }

    /// ACC-7: logs a local account in with the organization's ID, its login ID and its
    /// password. Answers exactly as an email log-in does (lock-out per login name, the same
    /// hashing work and the same error for an unknown login ID as for a wrong password); a
    /// right initial password earns a `PasswordChangeRequired` challenge instead of a session.
    pub async fn log_in_local(
        &self,
        context: &RequestContext,
        org: &str,
        login_id: &str,
        password: &str,
        now: Timestamp,
    ) -> Result<NewSession, ServiceError> {
        let password = normalize_password(password);
        if password.chars().count() > PASSWORD_MAX_CHARS {
            return Err(ServiceError::field(
                "password",
                "must be at most 1024 characters",
            ));
        }
        let login_id = LoginId::parse(LOGIN_ID_FIELD, login_id)?;
        // An organization ID of the wrong shape is just an unknown login name.
        let login_name = self.login_index(org.trim(), &login_id);
        let (local, account) = self
            .store
            .local_account_by_login(&login_name)
            .await?
            .unzip();
        let (account, rehash) = self
            .check_login_password(context, &login_name, account, &password, now)
            .await?;
        // A match means the account, and with it its local row, was found.
        let local = local.ok_or(ServiceError::InvalidCredentials)?;
        // The organization must still be active (the account goes with it).
        let org_active = self
            .store
            .org(&local.org_id)
            .await?
            .is_some_and(|row| row.status == crate::orgs::ORG_ACTIVE);
        if !org_active {
            self.record_login_failure(context, Some(&local.account_id), "org_inactive", now)
                .await?;
            return Err(ServiceError::InvalidCredentials);
        }
        if local.must_change_password {
            let expired = local
                .initial_password_expires_at
                .is_none_or(|until| now >= until);
            if expired {
                self.record_login_failure(
                    context,
                    Some(&local.account_id),
                    "initial_password_expired",
                    now,
                )
                .await?;
                return Err(ServiceError::refused(
                    Refusal::Unauthenticated,
                    "initial_password_expired",
                    "the initial password has expired; ask the organization's administrator for a new one",
                ));
            }
            let challenge = tokens::new_secret(PASSWORD_CHANGE_PREFIX)?;
            let mut tx = self.store.begin().await?;
            tx.insert_login_challenge(&LoginChallengeRow {
                challenge_hash: secret_hash(&challenge),
                account_id: local.account_id.clone(),
                created_at: now,
                expires_at: now.plus_millis(PASSWORD_CHANGE_CHALLENGE_LIFETIME_MS),
                failures: 0,
            })
            .await?;
            self.clear_login_attempts(tx.as_mut(), &login_name).await?;
            self.record_and_commit(
                tx,
                context,
                AuditDraft::new(
                    ActorKind::Account,
                    Some(local.account_id.as_str()),
                    action::SESSION_PASSWORD_CHANGE_REQUIRED,
                )
                .target("account", local.account_id.as_str()),
                now,
            )
            .await?;
            return Err(ServiceError::PasswordChangeRequired { challenge });
        }
        self.finish_log_in(context, &account, &login_name, rehash.as_deref(), now)
            .await
    }

    /// ACC-7: with the challenge of a log-in with the initial password, sets the holder's own
    /// password (the sign-up rules apply) and answers with a session, or with the second
    /// step when two-step verification is on. A refused password leaves the challenge usable.
    pub async fn complete_password_change(
        &self,
        context: &RequestContext,
        challenge: &str,
        new_password: &str,
        now: Timestamp,
    ) -> Result<NewSession, ServiceError> {
        let pending = self
            .pending_login_challenge(challenge, PASSWORD_CHANGE_PREFIX, now)
            .await?;
        let challenge_hash = pending.challenge_hash;
        let account_id = pending.account_id;
        let local = self
            .store
            .local_account(&account_id)
            .await?
            .filter(|local| local.must_change_password)
            .ok_or_else(invalid_challenge)?;
        let row = self
            .store
            .account(&account_id)
            .await?
            .filter(|row| row.status == AccountStatus::Active)
            .ok_or_else(invalid_challenge)?;
        let key = self.keyring.key(account_id.as_str()).await?;
        let view = self.local_view(&local, &row, &key)?;
        let email = Email::from_stored(view.email.clone());
        let name = DisplayName::from_stored(view.display_name.clone());
        let mut words = personal_words(&email, Some(&name));
        words.push(view.login_id.clone());
        let word_refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let password = NewPassword::parse("new_password", new_password, &word_refs)?;
        if let Verification::Match { .. } = self
            .passwords
            .verify(password.as_str(), row.password_hash.as_deref())
            .await?
        {
            return Err(ServiceError::field(
                "new_password",
                "must not be the initial password",
            ));
        }
        let hash = self.passwords.hash(password.as_str()).await?;
        let two_step = self.store.two_step_enabled(&account_id).await?;
        let mut tx = self.store.begin().await?;
        match tx.take_login_challenge(&challenge_hash, now).await? {
            Some(taken) if taken == account_id => {}
            _ => return Err(invalid_challenge()),
        }
        if !tx.set_own_password(&account_id, &hash, now).await? {
            return Err(invalid_challenge());
        }
        // The initial password reached the holder at this address: it is proven.
        tx.mark_email_verified(&account_id, now).await?;
        self.record(
            tx.as_mut(),
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(account_id.as_str()),
                action::ACCOUNT_PASSWORD_CHANGED,
            )
            .target("account", account_id.as_str())
            .details(json!({ "initial": true })),
            now,
        )
        .await?;
        if two_step {
            tx.commit().await?;
            let challenge = self
                .start_second_factor(context, &account_id, None, now)
                .await?;
            return Err(ServiceError::SecondFactorRequired { challenge });
        }
        let (token, session) = self
            .open_session_in_tx(tx, context, &row, json!({ "password_changed": true }), now)
            .await?;
        Ok(NewSession { token, session })
    }

    /// The organization purge's part for local accounts: each is deleted as account deletion
    /// does (tombstone, sessions, tokens, challenges and two-step gone, membership and its
    /// seats removed, data key destroyed). Idempotent; returns how many were deleted now.
    pub async fn purge_org_local_accounts(
        &self,
        org: &OrgId,
        now: Timestamp,
    ) -> Result<u64, ServiceError> {
        let mut tx = self.store.begin().await?;
        let deleted = tx.delete_org_local_accounts(org, now).await?;
        if deleted.is_empty() {
            return Ok(0);
        }
        for account in &deleted {
            if tx.membership_in_tx(org, account).await?.is_some() {
                tx.delete_membership(org, account).await?;
            }
            tx.scrub_invitations_of(account).await?;
        }
        let count = u64::try_from(deleted.len()).unwrap_or(u64::MAX);
        self.record_and_commit(
            tx,
            &RequestContext::default(),
            AuditDraft::new(ActorKind::System, None, action::ORG_LOCAL_ACCOUNTS_PURGED)
                .target("org", org.as_str())
                .details(json!({ "accounts": count })),
            now,
        )
        .await?;
        for account in &deleted {
            if let Err(error) = self.destroy_key(account.as_str(), now).await {
                tracing::warn!(account = %account, error = %error, "key destruction deferred to the job");
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_passwords_are_long_and_from_the_alphabet() {
        let a = new_initial_password().unwrap();
        let b = new_initial_password().unwrap();
        assert_eq!(a.len(), INITIAL_PASSWORD_CHARS);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| INITIAL_PASSWORD_ALPHABET.contains(&c)));
    }
}
