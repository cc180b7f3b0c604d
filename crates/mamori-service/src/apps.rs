//! The operator's apps within an organization (ORG-5): an administrator enables an app for
//! everyone or for selected members; an app asks whether an account is an active member.
//! An app sees only organizations that enabled it.

use crate::audit::RequestContext;
use crate::orgs::{ORG_ACTIVE, OrgAccess, Page, org_event, parse_cursor};
use crate::sessions::AppPrincipal;
use crate::{ServiceError, Services};
use mamori_core::audit::action;
use mamori_core::org::{self, AppMode, OrgRole};
use mamori_core::{AccountId, AppId, OrgId, Timestamp};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAppView {
    pub app_id: AppId,
    pub app_name: String,
    pub mode: AppMode,
    pub enabled_at: Timestamp,
}

/// What an app learns about one account in one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMembershipView {
    pub org_id: OrgId,
    pub account_id: AccountId,
    pub role: OrgRole,
    pub can_invite: bool,
    /// Whether the account may use this app in this organization.
    pub active: bool,
}

fn require_admin(access: &OrgAccess) -> Result<(), ServiceError> {
    if access.membership.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::forbidden(
            "only administrators manage the organization's apps",
        ))
    }
}

impl Services {
    async fn app_id(&self, app: &str) -> Result<AppId, ServiceError> {
        let id = AppId::parse(app).ok_or(ServiceError::NotFound)?;
        self.store.app(&id).await?.ok_or(ServiceError::NotFound)?;
        Ok(id)
    }

    /// Enables an app for the organization, or changes its mode.
    pub async fn enable_app(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        app: &str,
        mode: &str,
        now: Timestamp,
    ) -> Result<OrgAppView, ServiceError> {
        let mode = AppMode::parse(mode)
            .ok_or_else(|| ServiceError::field("mode", "must be all or selected"))?;
        let app_id = self.app_id(app).await?;
        let (mut tx, actor) = self.begin_in_org(access).await?;
        require_admin(&actor)?;
        let was_enabled = tx.upsert_org_app(&actor.org_id, &app_id, mode, now).await?;
        self.record_and_commit(
            tx,
            context,
            org_event(&actor, action::ORG_APP_ENABLED)
                .target("app", app_id.as_str())
                .details(json!({ "mode": mode.as_str(), "was_enabled": was_enabled })),
            now,
        )
        .await?;
        self.org_app(&actor, app_id.as_str()).await
    }

    /// Disables an app; its selected members are forgotten.
    pub async fn disable_app(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        app: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let app_id = AppId::parse(app).ok_or(ServiceError::NotFound)?;
        let (mut tx, actor) = self.begin_in_org(access).await?;
        require_admin(&actor)?;
        if !tx.delete_org_app(&actor.org_id, &app_id).await? {
            return Err(ServiceError::NotFound);
        }
        self.record_and_commit(
            tx,
            context,
            org_event(&actor, action::ORG_APP_DISABLED).target("app", app_id.as_str()),
            now,
        )
        .await
    }

    /// One app the organization enabled (administrators and members; guests do not see the
    /// organization's apps).
    pub async fn org_app(&self, access: &OrgAccess, app: &str) -> Result<OrgAppView, ServiceError> {
        if !access.membership.may_see_members() {
            return Err(ServiceError::forbidden(
                "guests do not see the organization's apps",
            ));
        }
        let app_id = AppId::parse(app).ok_or(ServiceError::NotFound)?;
        let row = self
            .store
            .org_app(&access.org_id, &app_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let app = self
            .store
            .app(&app_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        Ok(OrgAppView {
            app_id,
            app_name: app.name,
            mode: row.mode,
            enabled_at: row.created_at,
        })
    }

    /// The apps the organization enabled (administrators and members).
    pub async fn list_org_apps(&self, access: &OrgAccess) -> Result<Vec<OrgAppView>, ServiceError> {
        if !access.membership.may_see_members() {
            return Err(ServiceError::forbidden(
                "guests do not see the organization's apps",
            ));
        }
        let mut views = Vec::new();
        for row in self.store.org_apps(&access.org_id).await? {
            if let Some(app) = self.store.app(&row.app_id).await? {
                views.push(OrgAppView {
                    app_id: row.app_id,
                    app_name: app.name,
                    mode: row.mode,
                    enabled_at: row.created_at,
                });
            }
        }
        Ok(views)
    }

    /// The selected active members of an app (administrators).
    pub async fn list_app_members(
        &self,
        access: &OrgAccess,
        app: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<AccountId>, ServiceError> {
        require_admin(access)?;
        let app_id = AppId::parse(app).ok_or(ServiceError::NotFound)?;
        self.store
            .org_app(&access.org_id, &app_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let after = parse_cursor(cursor, AccountId::parse)?;
        let rows = self
            .store
            .org_app_members(&access.org_id, &app_id, after.as_ref(), limit + 1)
            .await?;
        Page::from_rows(rows, limit, ToString::to_string, Ok)
    }

    /// Selects (`selected = true`) or unselects a member as an active member of an app.
    pub async fn set_app_member(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        app: &str,
        account: &str,
        selected: bool,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let app_id = AppId::parse(app).ok_or(ServiceError::NotFound)?;
        let not_member = || ServiceError::field("account", "is not a member of this organization");
        // Read before the transaction: no second pooled connection while the org is locked.
        let enabled = self.store.org_app(&access.org_id, &app_id).await?.is_some();
        let (mut tx, actor) = self.begin_in_org(access).await?;
        require_admin(&actor)?;
        if !enabled {
            return Err(ServiceError::NotFound);
        }
        let changed = if selected {
            let account = AccountId::parse(account).ok_or_else(not_member)?;
            if tx
                .membership_in_tx(&actor.org_id, &account)
                .await?
                .is_none()
            {
                return Err(not_member());
            }
            tx.insert_org_app_member(&actor.org_id, &app_id, &account, now)
                .await?
        } else {
            let account = AccountId::parse(account).ok_or(ServiceError::NotFound)?;
            if !tx
                .delete_org_app_member(&actor.org_id, &app_id, &account)
                .await?
            {
                return Err(ServiceError::NotFound);
            }
            true
        };
        if !changed {
            // Selected already: nothing changed, nothing to record.
            return Ok(());
        }
        let action = if selected {
            action::ORG_APP_MEMBER_ADDED
        } else {
            action::ORG_APP_MEMBER_REMOVED
        };
        self.record_and_commit(
            tx,
            context,
            org_event(&actor, action)
                .target("app", app_id.as_str())
                .details(json!({ "account_id": account })),
            now,
        )
        .await
    }

    /// For an app: the role of `account` in `org` and whether it is an active member of the
    /// app. `NotFound` unless the organization enabled this app and the account is a member.
    pub async fn app_membership(
        &self,
        app: &AppPrincipal,
        org: &str,
        account: &str,
    ) -> Result<AppMembershipView, ServiceError> {
        let org_id = OrgId::parse(org).ok_or(ServiceError::NotFound)?;
        let account_id = AccountId::parse(account).ok_or(ServiceError::NotFound)?;
        let org_app = self
            .store
            .org_app(&org_id, &app.app_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let org_row = self
            .store
            .org(&org_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if org_row.status != ORG_ACTIVE {
            return Err(ServiceError::NotFound);
        }
        let membership = self
            .store
            .membership(&org_id, &account_id)
            .await?
            .ok_or(ServiceError::NotFound)?
            .membership();
        let selected = match org_app.mode {
            AppMode::All => false,
            AppMode::Selected => {
                self.store
                    .is_org_app_member(&org_id, &app.app_id, &account_id)
                    .await?
            }
        };
        Ok(AppMembershipView {
            org_id,
            account_id,
            role: membership.role,
            can_invite: membership.can_invite,
            active: org::is_active_app_member(org_app.mode, selected),
        })
    }
}
