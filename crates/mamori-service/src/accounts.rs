//! Accounts: sign up, read and change one's own account, change the password, delete it.

use crate::audit::{AuditDraft, RequestContext};
use crate::error::Refusal;
use crate::orgs::parse_org_name;
use crate::passwords::Verification;
use crate::sessions::AccountSession;
use crate::tokens::id_random;
use crate::{ServiceError, Services};
use mamori_core::account::{DisplayName, Email, NewPassword, normalize_password, personal_words};
use mamori_core::audit::{ActorKind, Outcome, action};
use mamori_core::org::OrgRole;
use mamori_core::{AccountId, FieldError, OrgId, Timestamp};
use mamori_keyring::DataKey;
use mamori_store::{AccountRow, AccountStatus, StoreError};
use serde_json::json;

const EMAIL_FIELD: &str = "email";
const NAME_FIELD: &str = "display_name";

/// What a person types to sign up.
pub struct SignUp {
    pub email: String,
    pub password: String,
    pub display_name: String,
    /// ACC-1: also create an organization with this name, the new account its administrator.
    pub organization_name: Option<String>,
    /// ACC-2: join the organization of this invitation (sent to this email) at once.
    pub invitation_token: Option<String>,
}

/// An account as its holder sees it, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub id: AccountId,
    pub email: String,
    pub display_name: String,
    pub email_verified: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub(crate) fn email_index(services: &Services, email: &Email) -> String {
    services.keyring.blind_index("email", &email.canonical())
}

impl Services {
    /// ACC-1: anyone signs up with an email, a password of their own and a name; optionally
    /// creating an organization, or joining one by invitation (ACC-2), in the same
    /// transaction.
    pub async fn sign_up(
        &self,
        context: &RequestContext,
        input: SignUp,
        now: Timestamp,
    ) -> Result<(AccountView, Option<OrgId>), ServiceError> {
        if input.organization_name.is_some() && input.invitation_token.is_some() {
            return Err(ServiceError::field(
                "organization",
                "cannot be combined with invitation_token: sign up, then create the organization",
            ));
        }
        let org_name = input
            .organization_name
            .as_deref()
            .map(|name| parse_org_name("organization.name", name))
            .transpose()?;
        let email = Email::parse(EMAIL_FIELD, &input.email);
        let name = DisplayName::parse(NAME_FIELD, &input.display_name);
        let words = match (&email, &name) {
            (Ok(email), name) => personal_words(email, name.as_ref().ok()),
            _ => Vec::new(),
        };
        let word_refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let password = NewPassword::parse("password", &input.password, &word_refs);
        let (email, name, password) = match (email, name, password) {
            (Ok(email), Ok(name), Ok(password)) => (email, name, password),
            (email, name, password) => {
                let errors: Vec<FieldError> = [email.err(), name.err(), password.err()]
                    .into_iter()
                    .flatten()
                    .collect();
                return Err(ServiceError::Validation(errors));
            }
        };
        let index = email_index(self, &email);
        if self.store.account_by_email_index(&index).await?.is_some() {
            return Err(email_taken());
        }
        let invitation = match input.invitation_token.as_deref() {
            Some(token) => Some(self.usable_invitation(token, &index, now).await?),
            None => None,
        };
        let password_hash = self.passwords.hash(password.as_str()).await?;
        let id = AccountId::from_random(&id_random()?);
        // Keys are made first: if the rows never commit, an unused key is harmless.
        let key = self
            .keyring
            .create_key(id.as_str(), now.as_millis())
            .await?;
        let new_org = match &org_name {
            Some(org_name) => {
                let org_id = OrgId::from_random(&id_random()?);
                let org_key = self
                    .keyring
                    .create_key(org_id.as_str(), now.as_millis())
                    .await?;
                Some((org_id, org_key, org_name.clone()))
            }
            None => None,
        };
        let row = AccountRow {
            id: id.clone(),
            status: AccountStatus::Active,
            email_index: Some(index),
            email_sealed: Some(key.seal(EMAIL_FIELD, email.as_str().as_bytes())?),
            display_name_sealed: Some(key.seal(NAME_FIELD, name.as_str().as_bytes())?),
            password_hash: Some(password_hash),
            // Accepting an invitation proves the holder reads mail at this address.
            email_verified: invitation.is_some(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let result = async {
            let mut tx = self.store.begin().await?;
            tx.insert_account(&row).await?;
            self.record(
                tx.as_mut(),
                context,
                AuditDraft::new(
                    ActorKind::Account,
                    Some(id.as_str()),
                    action::ACCOUNT_CREATED,
                )
                .target("account", id.as_str()),
                now,
            )
            .await?;
            if let Some((org_id, org_key, org_name)) = &new_org {
                self.insert_org_with_admin(
                    tx.as_mut(),
                    context,
                    (org_id, org_key, org_name.as_str()),
                    &id,
                    now,
                )
                .await?;
            }
            if let Some(invitation) = &invitation {
                self.accept_in_tx(tx.as_mut(), context, invitation, &id, now)
                    .await?;
            }
            // ACC-8: an address not proven by an invitation gets a verification link.
            if !row.email_verified {
                let index = row.email_index.as_deref().unwrap_or_default();
                self.mail_verification_in_tx(
                    tx.as_mut(),
                    (&id, &key),
                    (email.as_str(), index),
                    now,
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<(), ServiceError>(())
        }
        .await;
        if let Err(error) = result {
            let _ = self.keyring.destroy(id.as_str(), now.as_millis()).await;
            if let Some((org_id, _, _)) = &new_org {
                let _ = self.keyring.destroy(org_id.as_str(), now.as_millis()).await;
            }
            return Err(match error {
                ServiceError::Unexpected(inner)
                    if matches!(
                        inner.downcast_ref::<StoreError>(),
                        Some(StoreError::Conflict { .. })
                    ) =>
                {
                    email_taken()
                }
                other => other,
            });
        }
        let view = AccountView {
            id,
            email: email.as_str().to_owned(),
            display_name: name.as_str().to_owned(),
            email_verified: row.email_verified,
            created_at: now,
            updated_at: now,
        };
        let org = new_org
            .map(|(org_id, _, _)| org_id)
            .or_else(|| invitation.map(|invitation| invitation.org_id));
        Ok((view, org))
    }

    /// Finds an active account by email (canonical, case-insensitive).
    pub(crate) async fn account_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<AccountRow>, ServiceError> {
        let row = self
            .store
            .account_by_email_index(&email_index(self, email))
            .await?;
        Ok(row.filter(|row| row.status == AccountStatus::Active))
    }

    /// The holder's own account.
    pub async fn me(&self, session: &AccountSession) -> Result<AccountView, ServiceError> {
        let row = match self.store.cached_account(&session.account_id).await? {
            Some(row) if row.status == AccountStatus::Active => row,
            // Refuse only on what the database says now.
            _ => self
                .store
                .account(&session.account_id)
                .await?
                .filter(|row| row.status == AccountStatus::Active)
                .ok_or(ServiceError::Unauthenticated)?,
        };
        let key = self.keyring.key(row.id.as_str()).await?;
        view_of(&row, &key)
    }

    /// Changes what the holder may change directly: the display name.
    pub async fn update_me(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        display_name: Option<String>,
        now: Timestamp,
    ) -> Result<AccountView, ServiceError> {
        let Some(display_name) = display_name else {
            return self.me(session).await;
        };
        let name = DisplayName::parse(NAME_FIELD, &display_name)?;
        let key = self.keyring.key(session.account_id.as_str()).await?;
        let sealed = key.seal(NAME_FIELD, name.as_str().as_bytes())?;
        let mut tx = self.store.begin().await?;
        tx.update_display_name(&session.account_id, &sealed, now)
            .await
            .map_err(not_found_is_unauthenticated)?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(session.account_id.as_str()),
                action::ACCOUNT_UPDATED,
            )
            .target("account", session.account_id.as_str())
            .details(json!({ "fields": ["display_name"] })),
            now,
        )
        .await?;
        self.me(session).await
    }

    /// ACC-5: the holder changes the password; every other session of the account ends.
    pub async fn change_password(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        current_password: &str,
        new_password: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let current = session.require_session()?;
        let row = self
            .verified_account(session, context, current_password, "current_password", now)
            .await?;
        let key = self.keyring.key(row.id.as_str()).await?;
        let view = view_of(&row, &key)?;
        let email = Email::from_stored(view.email);
        let name = DisplayName::from_stored(view.display_name);
        let words = personal_words(&email, Some(&name));
        let word_refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let password = NewPassword::parse("new_password", new_password, &word_refs)?;
        let hash = self.passwords.hash(password.as_str()).await?;
        let mut tx = self.store.begin().await?;
        tx.update_password_hash(&row.id, &hash, now)
            .await
            .map_err(not_found_is_unauthenticated)?;
        let ended = tx.delete_sessions_of(&row.id, Some(current)).await?;
        self.send_notice(
            tx.as_mut(),
            context,
            &row,
            crate::notices::password_changed(),
            now,
        )
        .await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(row.id.as_str()),
                action::ACCOUNT_PASSWORD_CHANGED,
            )
            .target("account", row.id.as_str())
            .details(json!({ "sessions_ended": ended })),
            now,
        )
        .await?;
        Ok(())
    }

    /// ACC-3 and ACC-4: only the holder deletes the account, with the password. The personal
    /// data goes at once: the row keeps only its ID, every session ends, and the account's
    /// data key is destroyed so the sealed fields are unreadable in every copy of the store.
    pub async fn delete_me(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        password: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        session.require_session()?;
        let row = self
            .verified_account(session, context, password, "password", now)
            .await?;
        let last_admin_of = self.store.orgs_where_last_admin(&row.id).await?;
        if !last_admin_of.is_empty() {
            return Err(last_admin_error(&last_admin_of));
        }
        let mut tx = self.store.begin().await?;
        tx.tombstone_account(&row.id, now)
            .await
            .map_err(not_found_is_unauthenticated)?;
        let ended = tx.delete_sessions_of(&row.id, None).await?;
        tx.delete_credentials_of(&row.id).await?;
        // Leaving every organization, each recorded in that organization's own trail. The
        // last-administrator rule is checked again under each organization's lock.
        for org_id in tx.orgs_of_account_in_tx(&row.id).await? {
            tx.lock_org(&org_id).await?;
            let Some(membership) = tx.membership_in_tx(&org_id, &row.id).await? else {
                continue;
            };
            if membership.role == OrgRole::Admin && tx.count_admins(&org_id).await? <= 1 {
                return Err(last_admin_error(std::slice::from_ref(&org_id)));
            }
            tx.delete_membership(&org_id, &row.id).await?;
            let mut draft = AuditDraft::new(
                ActorKind::Account,
                Some(row.id.as_str()),
                action::ORG_MEMBER_LEFT,
            )
            .target("account", row.id.as_str())
            .details(json!({ "role": membership.role.as_str(), "reason": "account_deleted" }));
            draft.org = Some(&org_id);
            self.record(tx.as_mut(), context, draft, now).await?;
        }
        tx.scrub_invitations_of(&row.id).await?;
        tx.delete_account_tokens(&row.id).await?;
        // An organization-local account's login ID is free again (ACC-7).
        tx.delete_local_account(&row.id).await?;
        tx.request_key_destruction(row.id.as_str(), now).await?;
        self.record_and_commit(
            tx,
            context,
            AuditDraft::new(
                ActorKind::Account,
                Some(row.id.as_str()),
                action::ACCOUNT_DELETED,
            )
            .target("account", row.id.as_str())
            .details(json!({ "sessions_ended": ended })),
            now,
        )
        .await?;
        // The destruction request is already durable; if this fails the job finishes it.
        if let Err(error) = self.destroy_key(row.id.as_str(), now).await {
            tracing::warn!(account = %row.id, error = %error, "key destruction deferred to the job");
        }
        Ok(())
    }

    /// Checks the holder's password for a sensitive change; a wrong one is audited.
    pub(crate) async fn verified_account(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        password: &str,
        field: &str,
        now: Timestamp,
    ) -> Result<AccountRow, ServiceError> {
        let row = self
            .store
            .account(&session.account_id)
            .await?
            .filter(|row| row.status == AccountStatus::Active)
            .ok_or(ServiceError::Unauthenticated)?;
        let verification = self
            .passwords
            .verify(&normalize_password(password), row.password_hash.as_deref())
            .await?;
        if verification == Verification::Mismatch {
            let tx = self.store.begin().await?;
            self.record_and_commit(
                tx,
                context,
                AuditDraft::new(
                    ActorKind::Account,
                    Some(row.id.as_str()),
                    action::ACCOUNT_PASSWORD_CHECK_FAILED,
                )
                .target("account", row.id.as_str())
                .outcome(Outcome::Failure),
                now,
            )
            .await?;
            return Err(ServiceError::Validation(vec![FieldError::new(
                field,
                "is not the account's password",
            )]));
        }
        Ok(row)
    }

    pub(crate) async fn destroy_key(
        &self,
        owner: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        self.keyring.destroy(owner, now.as_millis()).await?;
        self.store.complete_key_destruction(owner).await?;
        Ok(())
    }
}

pub(crate) fn view_of(row: &AccountRow, key: &DataKey) -> Result<AccountView, ServiceError> {
    let open = |field: &str, sealed: &Option<String>| -> Result<String, ServiceError> {
        let sealed = sealed
            .as_deref()
            .ok_or_else(|| ServiceError::Unexpected(anyhow::anyhow!("account {field} missing")))?;
        Ok(key.open_string(field, sealed)?)
    };
    Ok(AccountView {
        id: row.id.clone(),
        email: open(EMAIL_FIELD, &row.email_sealed)?,
        display_name: open(NAME_FIELD, &row.display_name_sealed)?,
        email_verified: row.email_verified,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn last_admin_error(orgs: &[OrgId]) -> ServiceError {
    let names: Vec<&str> = orgs.iter().map(OrgId::as_str).collect();
    ServiceError::refused(
        Refusal::Conflict,
        "last_admin",
        format!(
            "you are the last administrator of {}; make someone else administrator first",
            names.join(", ")
        ),
    )
}

fn email_taken() -> ServiceError {
    ServiceError::Conflict(String::from("an account with this email already exists"))
}

fn not_found_is_unauthenticated(error: StoreError) -> ServiceError {
    match error {
        StoreError::NotFound => ServiceError::Unauthenticated,
        other => other.into(),
    }
}
