//! Organizations, their members and invitations (ACC-1, ACC-2, ORG-1, ORG-2, ORG-3, ORG-6).
//!
//! Tenant isolation lives here: every organization-scoped use case takes an [`OrgAccess`],
//! which only [`Services::org_access`] makes, and which exists only for a current member of
//! an active organization. A non-member gets `NotFound`, never a hint that the organization
//! exists.

use crate::accounts::view_of;
use crate::audit::{AuditDraft, RequestContext};
use crate::error::Refusal;
use crate::mail::{Mail, enqueue};
use crate::sessions::AccountSession;
use crate::tokens::{self, id_random, secret_hash};
use crate::{ServiceError, Services};
use mamori_core::account::Email;
use mamori_core::audit::{ActorKind, action};
use mamori_core::org::{self, Membership, OrgRole};
use mamori_core::{AccountId, FieldError, InvitationId, OrgId, Timestamp};
use mamori_keyring::DataKey;
use mamori_store::{
    AccountRow, AccountStatus, InvitationRow, InvitationStatus, MembershipRow, OrgRow, StoreError,
    StoreTx,
};
use serde_json::json;

pub const ORG_NAME_MAX_CHARS: usize = 200;
const INVITATION_LIFETIME_MS: i64 = 7 * 86_400_000;
pub(crate) const INVITATION_PREFIX: &str = "mmi_";
pub(crate) const ORG_ACTIVE: &str = "active";

/// Proof that an account is a current member of an active organization, with its standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccess {
    pub org_id: OrgId,
    pub account_id: AccountId,
    pub membership: Membership,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says there is more.
    pub(crate) fn from_rows<R>(
        mut rows: Vec<R>,
        limit: u32,
        cursor_of: impl Fn(&R) -> String,
        view: impl FnMut(R) -> Result<T, ServiceError>,
    ) -> Result<Page<T>, ServiceError> {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last().map(&cursor_of)
        } else {
            None
        };
        let items = rows.into_iter().map(view).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next_cursor })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgView {
    pub id: OrgId,
    pub name: String,
    pub role: OrgRole,
    pub can_invite: bool,
    pub require_two_step: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// ACC-8: only accounts with a verified email address may join.
    pub require_verified_email: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub account_id: AccountId,
    pub email: String,
    pub display_name: String,
    pub role: OrgRole,
    pub can_invite: bool,
    pub joined_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationView {
    pub id: InvitationId,
    pub org_id: OrgId,
    pub email: String,
    pub role: OrgRole,
    pub can_invite: bool,
    pub invited_by: AccountId,
    pub status: &'static str,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

pub struct NewInvitation {
    pub email: String,
    pub role: String,
    pub can_invite: bool,
}

/// A change of role or invite permission; `None` keeps the current value.
pub struct RoleChange {
    pub role: Option<String>,
    pub can_invite: Option<bool>,
}

/// Reads a list cursor with the parser of the ID it holds.
pub(crate) fn parse_cursor<T>(
    cursor: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ServiceError> {
    cursor
        .map(|text| {
            parse(text).ok_or_else(|| ServiceError::field("cursor", "is not a valid cursor"))
        })
        .transpose()
}

pub(crate) fn parse_org_name(field: &str, name: &str) -> Result<String, FieldError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if name.chars().count() > ORG_NAME_MAX_CHARS {
        return Err(FieldError::new(field, "must be at most 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

fn two_step_required() -> ServiceError {
    ServiceError::refused(
        Refusal::Forbidden,
        "two_step_required",
        "this organization requires two-step verification; switch it on under /api/v1/me/two-step",
    )
}

fn parse_account_id(text: &str) -> Result<AccountId, ServiceError> {
    AccountId::parse(text).ok_or(ServiceError::NotFound)
}

impl Services {
    /// A new organization and its first administrator, written inside `tx`.
    pub(crate) async fn insert_org_with_admin(
        &self,
        tx: &mut dyn StoreTx,
        context: &RequestContext,
        (org_id, org_key, name): (&OrgId, &DataKey, &str),
        admin: &AccountId,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        tx.insert_org(&OrgRow {
            id: org_id.clone(),
            name_sealed: org_key.seal("name", name.as_bytes())?,
            status: String::from(ORG_ACTIVE),
            require_two_step: false,
            created_at: now,
            updated_at: now,
            require_verified_email: false,
        })
        .await?;
        self.insert_lifecycle_in_tx(tx, org_id, now).await?;
        tx.insert_membership(&MembershipRow {
            org_id: org_id.clone(),
            account_id: admin.clone(),
            role: OrgRole::Admin,
            can_invite: true,
            created_at: now,
            updated_at: now,
        })
        .await?;
        let mut draft = AuditDraft::new(
            ActorKind::Account,
            Some(admin.as_str()),
            action::ORG_CREATED,
        )
        .target("org", org_id.as_str());
        draft.org = Some(org_id);
        self.record(tx, context, draft, now).await?;
        Ok(())
    }
}

/// An audit draft in the organization's own chain.
pub(crate) fn org_event<'a>(access: &'a OrgAccess, action: &'a str) -> AuditDraft<'a> {
    let mut draft = AuditDraft::new(ActorKind::Account, Some(access.account_id.as_str()), action);
    draft.org = Some(&access.org_id);
    draft
}

impl Services {
    /// The one door into an organization: the caller's membership, or `NotFound`.
    pub async fn org_access(
        &self,
        session: &AccountSession,
        org: &str,
    ) -> Result<OrgAccess, ServiceError> {
        let org_id = OrgId::parse(org).ok_or(ServiceError::NotFound)?;
        let membership = self
            .store
            .membership(&org_id, &session.account_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let org = self
            .store
            .org(&org_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if org.status != ORG_ACTIVE {
            return Err(ServiceError::NotFound);
        }
        // ORG-6: an organization that requires two-step verification is closed to members
        // without it, whatever they hold (enrolling is under /me, outside the organization).
        if org.require_two_step && !self.store.two_step_enabled(&session.account_id).await? {
            return Err(two_step_required());
        }
        Ok(OrgAccess {
            org_id,
            account_id: session.account_id.clone(),
            membership: membership.membership(),
        })
    }

    /// Re-reads the actor's membership inside a transaction that locked the organization, so
    /// a decision never rests on a role changed a moment ago.
    async fn actor_in_tx(
        &self,
        tx: &mut dyn StoreTx,
        access: &OrgAccess,
    ) -> Result<Membership, ServiceError> {
        tx.lock_org(&access.org_id)
            .await
            .map_err(|error| match error {
                StoreError::NotFound => ServiceError::NotFound,
                other => other.into(),
            })?;
        Ok(tx
            .membership_in_tx(&access.org_id, &access.account_id)
            .await?
            .ok_or(ServiceError::NotFound)?
            .membership())
    }

    /// Begins a write transaction on the organization: takes its lock and returns the caller's
    /// access as it is now, so every decision in the transaction rests on current roles.
    pub(crate) async fn begin_in_org(
        &self,
        access: &OrgAccess,
    ) -> Result<(Box<dyn StoreTx>, OrgAccess), ServiceError> {
        let mut tx = self.store.begin().await?;
        let membership = self.actor_in_tx(tx.as_mut(), access).await?;
        let actor = OrgAccess {
            org_id: access.org_id.clone(),
            account_id: access.account_id.clone(),
            membership,
        };
        Ok((tx, actor))
    }

    pub(crate) async fn org_key(&self, org: &OrgId) -> Result<DataKey, ServiceError> {
        Ok(self.keyring.key(org.as_str()).await?)
    }

    /// Creates an organization; the creator becomes its administrator.
    pub async fn create_org(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        name: &str,
        now: Timestamp,
    ) -> Result<OrgView, ServiceError> {
        let name = parse_org_name("name", name)?;
        self.refuse_local_account(&session.account_id, "create an organization")
            .await?;
        let org_id = OrgId::from_random(&id_random()?);
        let key = self
            .keyring
            .create_key(org_id.as_str(), now.as_millis())
            .await?;
        let result = async {
            let mut tx = self.store.begin().await?;
            self.insert_org_with_admin(
                tx.as_mut(),
                context,
                (&org_id, &key, &name),
                &session.account_id,
                now,
            )
            .await?;
            tx.commit().await?;
            Ok::<(), ServiceError>(())
        }
        .await;
        if let Err(error) = result {
            // The key was made first; with no organization committed it must not linger.
            let _ = self.keyring.destroy(org_id.as_str(), now.as_millis()).await;
            return Err(error);
        }
        Ok(OrgView {
            id: org_id,
            name,
            role: OrgRole::Admin,
            can_invite: true,
            require_two_step: false,
            created_at: now,
            updated_at: now,
            require_verified_email: false,
        })
    }

    fn org_view(
        &self,
        row: &OrgRow,
        key: &DataKey,
        membership: Membership,
    ) -> Result<OrgView, ServiceError> {
        Ok(OrgView {
            id: row.id.clone(),
            name: key.open_string("name", &row.name_sealed)?,
            role: membership.role,
            can_invite: membership.can_invite,
            require_two_step: row.require_two_step,
            created_at: row.created_at,
            updated_at: row.updated_at,
            require_verified_email: row.require_verified_email,
        })
    }

    /// The caller's organizations, by ID.
    pub async fn list_orgs(
        &self,
        session: &AccountSession,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<OrgView>, ServiceError> {
        let after = parse_cursor(cursor, OrgId::parse)?;
        let rows = self
            .store
            .orgs_of(&session.account_id, after.as_ref(), limit + 1)
            .await?;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|(org, _)| org.status == ORG_ACTIVE)
            .collect();
        let mut views = Vec::with_capacity(rows.len());
        for (org, membership) in &rows {
            let key = self.org_key(&org.id).await?;
            views.push(self.org_view(org, &key, membership.membership())?);
        }
        Page::from_rows(views, limit, |view| view.id.to_string(), Ok)
    }

    /// The organization as `account` sees it, for answers right after it joined.
    pub async fn org_view_of(
        &self,
        account: &AccountId,
        org: &OrgId,
    ) -> Result<OrgView, ServiceError> {
        let membership = self
            .store
            .membership(org, account)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let row = self.store.org(org).await?.ok_or(ServiceError::NotFound)?;
        let key = self.org_key(org).await?;
        self.org_view(&row, &key, membership.membership())
    }

    pub async fn get_org(&self, access: &OrgAccess) -> Result<OrgView, ServiceError> {
        let row = self
            .store
            .org(&access.org_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let key = self.org_key(&access.org_id).await?;
        self.org_view(&row, &key, access.membership)
    }

    /// Changes the organization's settings (administrators).
    pub async fn update_org(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        name: Option<String>,
        require_two_step: Option<bool>,
        now: Timestamp,
    ) -> Result<OrgView, ServiceError> {
        let name = name.map(|name| parse_org_name("name", &name)).transpose()?;
        // An administrator who requires two-step verification must have it, or would be shut
        // out by their own change.
        if require_two_step == Some(true)
            && !self.store.two_step_enabled(&access.account_id).await?
        {
            return Err(ServiceError::refused(
                Refusal::Conflict,
                "two_step_required",
                "switch two-step verification on for yourself before requiring it",
            ));
        }
        let key = self.org_key(&access.org_id).await?;
        let mut tx = self.store.begin().await?;
        if !self.actor_in_tx(tx.as_mut(), access).await?.is_admin() {
            return Err(ServiceError::forbidden(
                "only administrators change the organization's settings",
            ));
        }
        if let Some(name) = &name {
            tx.update_org_name(&access.org_id, &key.seal("name", name.as_bytes())?, now)
                .await?;
            self.record(
                tx.as_mut(),
                context,
                org_event(access, action::ORG_UPDATED)
                    .target("org", access.org_id.as_str())
                    .details(json!({ "fields": ["name"] })),
                now,
            )
            .await?;
        }
        if let Some(require_two_step) = require_two_step {
            tx.update_org_require_two_step(&access.org_id, require_two_step, now)
                .await?;
            self.record(
                tx.as_mut(),
                context,
                org_event(access, action::ORG_UPDATED)
                    .target("org", access.org_id.as_str())
                    .details(json!({
                        "fields": ["require_two_step"],
                        "require_two_step": require_two_step,
                    })),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        self.get_org(access).await
    }

    async fn member_view(
        &self,
        row: &MembershipRow,
        account: &AccountRow,
    ) -> Result<MemberView, ServiceError> {
        if account.status != AccountStatus::Active {
            return Err(ServiceError::NotFound);
        }
        let key = self.keyring.key(account.id.as_str()).await?;
        let view = view_of(account, &key)?;
        let membership = row.membership();
        Ok(MemberView {
            account_id: row.account_id.clone(),
            email: view.email,
            display_name: view.display_name,
            role: membership.role,
            can_invite: membership.can_invite,
            joined_at: row.created_at,
        })
    }

    /// The member list: administrators and members; guests see only themselves.
    pub async fn list_members(
        &self,
        access: &OrgAccess,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<MemberView>, ServiceError> {
        if !access.membership.may_see_members() {
            return Err(ServiceError::forbidden("guests do not see the member list"));
        }
        let after = parse_cursor(cursor, AccountId::parse)?;
        let rows = self
            .store
            .members(&access.org_id, after.as_ref(), limit + 1)
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for (membership, account) in &rows {
            views.push(self.member_view(membership, account).await?);
        }
        Page::from_rows(views, limit, |view| view.account_id.to_string(), Ok)
    }

    pub async fn get_member(
        &self,
        access: &OrgAccess,
        account: &str,
    ) -> Result<MemberView, ServiceError> {
        let account = parse_account_id(account)?;
        if account != access.account_id && !access.membership.may_see_members() {
            return Err(ServiceError::NotFound);
        }
        let row = self
            .store
            .membership(&access.org_id, &account)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let account_row = self
            .store
            .account(&account)
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.member_view(&row, &account_row).await
    }

    /// Changes a member's role or invite permission (administrators; never the last one).
    pub async fn change_member(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        account: &str,
        change: RoleChange,
        now: Timestamp,
    ) -> Result<MemberView, ServiceError> {
        let account = parse_account_id(account)?;
        let role = change
            .role
            .as_deref()
            .map(|text| OrgRole::parse_field("role", text))
            .transpose()?;
        let mut tx = self.store.begin().await?;
        let actor = self.actor_in_tx(tx.as_mut(), access).await?;
        if !actor.is_admin() {
            return Err(ServiceError::forbidden(
                "only administrators may change roles",
            ));
        }
        let current = tx
            .membership_in_tx(&access.org_id, &account)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let before = current.membership();
        let next = Membership::new(
            role.unwrap_or(before.role),
            change.can_invite.unwrap_or(before.can_invite),
        );
        if change.can_invite == Some(true) && next.role == OrgRole::Guest {
            return Err(ServiceError::field(
                "can_invite",
                "guests cannot hold the invite permission",
            ));
        }
        let n_admins = tx.count_admins(&access.org_id).await?;
        org::check_role_change(actor, before, next, n_admins).map_err(|denied| {
            if actor.is_admin() {
                ServiceError::refused(Refusal::Conflict, "last_admin", denied.0)
            } else {
                denied.into()
            }
        })?;
        if next == before {
            // Nothing changes, so nothing is written or recorded.
            drop(tx);
            return self.get_member(access, account.as_str()).await;
        }
        tx.update_membership(&access.org_id, &account, next.role, next.can_invite, now)
            .await?;
        self.record_and_commit(
            tx,
            context,
            org_event(access, action::ORG_MEMBER_UPDATED)
                .target("account", account.as_str())
                .details(json!({
                    "role": { "from": before.role.as_str(), "to": next.role.as_str() },
                    "can_invite": { "from": before.can_invite, "to": next.can_invite },
                })),
            now,
        )
        .await?;
        self.get_member(access, account.as_str()).await
    }

    /// ORG-3: an administrator removes a member, who at once loses every access in this
    /// organization (membership, teams, app seats); or a member leaves.
    pub async fn remove_member(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        account: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let account = parse_account_id(account)?;
        let mut tx = self.store.begin().await?;
        let actor = self.actor_in_tx(tx.as_mut(), access).await?;
        let leaving = account == access.account_id;
        if !actor.is_admin() && !leaving {
            // Refused before the target is looked up, so the answer says nothing of it.
            return Err(ServiceError::forbidden(
                "only administrators may remove other members",
            ));
        }
        let Some(target) = tx.membership_in_tx(&access.org_id, &account).await? else {
            return Err(ServiceError::NotFound);
        };
        // ACC-7: a local account belongs to this organization; it goes only with its
        // deletion, through the local-accounts endpoint.
        if tx
            .local_account_in_tx(&access.org_id, &account)
            .await?
            .is_some()
        {
            return Err(ServiceError::refused(
                Refusal::Conflict,
                "local_account",
                "this is an organization-local account: delete it under /local-accounts instead",
            ));
        }
        let n_admins = tx.count_admins(&access.org_id).await?;
        org::check_removal(actor, leaving, target.membership(), n_admins).map_err(|denied| {
            if actor.is_admin() || leaving {
                ServiceError::refused(Refusal::Conflict, "last_admin", denied.0)
            } else {
                denied.into()
            }
        })?;
        tx.delete_membership(&access.org_id, &account).await?;
        let action = if leaving {
            action::ORG_MEMBER_LEFT
        } else {
            action::ORG_MEMBER_REMOVED
        };
        self.record_and_commit(
            tx,
            context,
            org_event(access, action)
                .target("account", account.as_str())
                .details(json!({ "role": target.role.as_str() })),
            now,
        )
        .await?;
        Ok(())
    }

    /// ORG-2: anyone holding invite permission invites an address with a role. The token is
    /// emailed (through the outbox), stored only hashed, valid 7 days. Inviting a pending
    /// address again replaces its invitation; inviting a member is a conflict.
    pub async fn invite(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        input: NewInvitation,
        now: Timestamp,
    ) -> Result<InvitationView, ServiceError> {
        let email = Email::parse("email", &input.email);
        let role = OrgRole::parse_field("role", &input.role);
        let (email, role) = match (email, role) {
            (Ok(email), Ok(role)) => (email, role),
            (email, role) => {
                return Err(ServiceError::Validation(
                    [email.err(), role.err()].into_iter().flatten().collect(),
                ));
            }
        };
        if input.can_invite && role == OrgRole::Guest {
            return Err(ServiceError::field(
                "can_invite",
                "guests cannot hold the invite permission",
            ));
        }
        let email_index = self.keyring.blind_index("email", &email.canonical());
        let org_key = self.org_key(&access.org_id).await?;
        let org_row = self
            .store
            .org(&access.org_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let org_name = org_key.open_string("name", &org_row.name_sealed)?;
        let token = tokens::new_secret(INVITATION_PREFIX)?;
        let row = InvitationRow {
            id: InvitationId::from_random(&id_random()?),
            org_id: access.org_id.clone(),
            email_index: email_index.clone(),
            email_sealed: org_key.seal("invitation_email", email.as_str().as_bytes())?,
            role,
            // As the membership will hold it: administrators always may invite.
            can_invite: Membership::new(role, input.can_invite).can_invite,
            token_hash: secret_hash(&token),
            invited_by: access.account_id.clone(),
            status: InvitationStatus::Pending,
            created_at: now,
            expires_at: now.plus_millis(INVITATION_LIFETIME_MS),
            decided_at: None,
            accepted_by: None,
        };
        // Reads through the pool come before the transaction: a transaction must never wait
        // for a second pooled connection while it holds the organization's lock.
        let existing = self.store.account_by_email_index(&email_index).await?;
        let mut tx = self.store.begin().await?;
        let actor = self.actor_in_tx(tx.as_mut(), access).await?;
        org::check_invitation(actor, role, row.can_invite)?;
        if let Some(existing) = existing
            && tx
                .membership_in_tx(&access.org_id, &existing.id)
                .await?
                .is_some()
        {
            return Err(ServiceError::Conflict(String::from(
                "that address belongs to a member of this organization already",
            )));
        }
        let replaced = tx
            .replace_pending_invitations(&access.org_id, &email_index, now)
            .await?;
        tx.insert_invitation(&row).await?;
        let link = format!(
            "{}/invitations/accept#token={token}",
            self.mail_settings.public_url.trim_end_matches('/')
        );
        let mail = Mail {
            to: email.as_str().to_owned(),
            subject: format!("You are invited to join {org_name}"),
            body: format!(
                "You have been invited to join {org_name} as {role}.\n\n\
                 To accept, open this link within 7 days:\n{link}\n\n\
                 If you do not have an account yet, you can create one with the same link.\n\
                 If you did not expect this invitation, you can ignore this message.\n\n\
                 Invitation token (if your app asks for it): {token}\n",
                role = role.as_str(),
            ),
        };
        enqueue(
            tx.as_mut(),
            &org_key,
            access.org_id.as_str(),
            "invitation",
            &mail,
            now,
        )
        .await?;
        self.record_and_commit(
            tx,
            context,
            org_event(access, action::ORG_INVITATION_CREATED)
                .target("invitation", row.id.as_str())
                .details(json!({
                    "role": role.as_str(),
                    "can_invite": row.can_invite,
                    "replaced": replaced,
                })),
            now,
        )
        .await?;
        Ok(InvitationView {
            id: row.id,
            org_id: row.org_id,
            email: email.as_str().to_owned(),
            role,
            can_invite: row.can_invite,
            invited_by: row.invited_by,
            status: InvitationStatus::Pending.as_str(),
            created_at: now,
            expires_at: row.expires_at,
        })
    }

    fn invitation_view(
        &self,
        row: InvitationRow,
        key: &DataKey,
    ) -> Result<InvitationView, ServiceError> {
        Ok(InvitationView {
            email: key.open_string("invitation_email", &row.email_sealed)?,
            id: row.id,
            org_id: row.org_id,
            role: row.role,
            can_invite: row.can_invite,
            invited_by: row.invited_by,
            status: row.status.as_str(),
            created_at: row.created_at,
            expires_at: row.expires_at,
        })
    }

    /// Pending invitations, for those who may invite.
    pub async fn list_invitations(
        &self,
        access: &OrgAccess,
        cursor: Option<&str>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page<InvitationView>, ServiceError> {
        if !access.membership.may_invite() {
            return Err(ServiceError::forbidden(
                "only those who may invite see invitations",
            ));
        }
        let after = parse_cursor(cursor, InvitationId::parse)?;
        let rows = self
            .store
            .pending_invitations(&access.org_id, now, after.as_ref(), limit + 1)
            .await?;
        let key = self.org_key(&access.org_id).await?;
        Page::from_rows(
            rows,
            limit,
            |row| row.id.to_string(),
            |row| self.invitation_view(row, &key),
        )
    }

    /// Revokes a pending invitation: administrators, or whoever sent it.
    pub async fn revoke_invitation(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        invitation: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let id = InvitationId::parse(invitation).ok_or(ServiceError::NotFound)?;
        if !access.membership.may_invite() {
            return Err(ServiceError::NotFound);
        }
        let row = self
            .store
            .invitation(&access.org_id, &id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let mut tx = self.store.begin().await?;
        let actor = self.actor_in_tx(tx.as_mut(), access).await?;
        if !actor.is_admin() && row.invited_by != access.account_id {
            return Err(ServiceError::forbidden(
                "only administrators or the inviter revoke an invitation",
            ));
        }
        if !tx
            .decide_invitation(&id, InvitationStatus::Revoked, None, now)
            .await?
        {
            return Err(ServiceError::refused(
                Refusal::Conflict,
                "invitation_not_pending",
                "the invitation was already accepted, revoked or replaced",
            ));
        }
        self.record_and_commit(
            tx,
            context,
            org_event(access, action::ORG_INVITATION_REVOKED).target("invitation", id.as_str()),
            now,
        )
        .await?;
        Ok(())
    }

    /// Looks up a pending, unexpired invitation by its token and checks it is for `email_index`.
    pub(crate) async fn usable_invitation(
        &self,
        token: &str,
        email_index: &str,
        now: Timestamp,
    ) -> Result<InvitationRow, ServiceError> {
        let invalid = || {
            ServiceError::refused(
                Refusal::Gone,
                "invitation_invalid",
                "this invitation link is not valid",
            )
        };
        if !tokens::looks_like(token, INVITATION_PREFIX) {
            return Err(invalid());
        }
        let hash = secret_hash(token);
        let row = self
            .store
            .invitation_by_token_hash(&hash)
            .await?
            .filter(|row| tokens::hashes_equal(&row.token_hash, &hash))
            .ok_or_else(invalid)?;
        // Checked first, so that an account the invitation is not for learns nothing of its state.
        if !tokens::hashes_equal(&row.email_index, email_index) {
            return Err(ServiceError::refused(
                Refusal::Forbidden,
                "invitation_email_mismatch",
                "this invitation was sent to another email address",
            ));
        }
        match row.status {
            InvitationStatus::Pending => {}
            InvitationStatus::Accepted => {
                return Err(ServiceError::refused(
                    Refusal::Gone,
                    "invitation_used",
                    "this invitation was already accepted",
                ));
            }
            InvitationStatus::Revoked | InvitationStatus::Replaced => {
                return Err(ServiceError::refused(
                    Refusal::Gone,
                    "invitation_revoked",
                    "this invitation was withdrawn; ask for a new one",
                ));
            }
        }
        if now >= row.expires_at {
            return Err(ServiceError::refused(
                Refusal::Gone,
                "invitation_expired",
                "this invitation has expired; ask for a new one",
            ));
        }
        let org = self.store.org(&row.org_id).await?.ok_or_else(invalid)?;
        if org.status != ORG_ACTIVE {
            return Err(invalid());
        }
        Ok(row)
    }

    /// Inside `tx`: makes `account` a member as the invitation says and marks it accepted.
    pub(crate) async fn accept_in_tx(
        &self,
        tx: &mut dyn StoreTx,
        context: &RequestContext,
        invitation: &InvitationRow,
        account: &AccountId,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        tx.lock_org(&invitation.org_id).await?;
        if tx
            .membership_in_tx(&invitation.org_id, account)
            .await?
            .is_some()
        {
            return Err(ServiceError::Conflict(String::from(
                "you are a member of this organization already",
            )));
        }
        // ACC-7: the plan's member limit, counted under the organization's lock.
        self.check_room_for_member(tx, &invitation.org_id).await?;
        if !tx
            .decide_invitation(
                &invitation.id,
                InvitationStatus::Accepted,
                Some(account),
                now,
            )
            .await?
        {
            return Err(ServiceError::refused(
                Refusal::Gone,
                "invitation_used",
                "this invitation was already accepted",
            ));
        }
        tx.insert_membership(&MembershipRow {
            org_id: invitation.org_id.clone(),
            account_id: account.clone(),
            role: invitation.role,
            can_invite: invitation.can_invite,
            created_at: now,
            updated_at: now,
        })
        .await?;
        // The token reached the invited address, which is this account's: it is proven.
        tx.mark_email_verified(account, now).await?;
        let mut draft = AuditDraft::new(ActorKind::Account, Some(account.as_str()), action::ORG_INVITATION_ACCEPTED)
            .target("invitation", invitation.id.as_str())
            .details(json!({ "role": invitation.role.as_str(), "invited_by": invitation.invited_by.as_str() }));
        draft.org = Some(&invitation.org_id);
        self.record(tx, context, draft, now).await?;
        Ok(())
    }

    /// ACC-2: the logged-in account whose email the invitation was sent to joins.
    pub async fn accept_invitation(
        &self,
        session: &AccountSession,
        context: &RequestContext,
        token: &str,
        now: Timestamp,
    ) -> Result<OrgView, ServiceError> {
        let account = self
            .store
            .account(&session.account_id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        self.refuse_local_account(&account.id, "join another organization")
            .await?;
        let email_index = account
            .email_index
            .clone()
            .ok_or(ServiceError::Unauthenticated)?;
        let invitation = self.usable_invitation(token, &email_index, now).await?;
        // ACC-8: the account must have proven its address before; see recovery.rs.
        self.check_may_join(&account, &invitation.org_id).await?;
        let mut tx = self.store.begin().await?;
        self.accept_in_tx(tx.as_mut(), context, &invitation, &account.id, now)
            .await?;
        tx.commit().await?;
        let access = self.org_access(session, invitation.org_id.as_str()).await?;
        self.get_org(&access).await
    }
}
