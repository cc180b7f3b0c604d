//! Teams (ORG-4): groups of an organization's members that can be given access like one
//! account. Administrators and members create them; the creator and administrators manage
//! them; only the organization's members can be in them.

use crate::audit::RequestContext;
use crate::orgs::{OrgAccess, Page, org_event, parse_cursor, parse_org_name};
use crate::tokens::id_random;
use crate::{ServiceError, Services};
use mamori_core::audit::action;
use mamori_core::org;
use mamori_core::{AccountId, TeamId, Timestamp};
use mamori_keyring::DataKey;
use mamori_store::{TeamMemberRow, TeamRow};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamView {
    pub id: TeamId,
    pub name: String,
    pub created_by: AccountId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Whether the caller may rename, delete and change the members of this team.
    pub can_manage: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamMemberView {
    pub account_id: AccountId,
    pub added_at: Timestamp,
}

impl Services {
    fn team_view(
        &self,
        access: &OrgAccess,
        row: TeamRow,
        key: &DataKey,
    ) -> Result<TeamView, ServiceError> {
        Ok(TeamView {
            name: key.open_string("team_name", &row.name_sealed)?,
            can_manage: org::may_manage_team(
                access.membership,
                row.created_by == access.account_id,
            ),
            id: row.id,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    /// A team the caller may see: any team for administrators and members; for guests only
    /// the teams they are in. Anything else is `NotFound`.
    async fn visible_team(&self, access: &OrgAccess, team: &str) -> Result<TeamRow, ServiceError> {
        let id = TeamId::parse(team).ok_or(ServiceError::NotFound)?;
        let row = self
            .store
            .team(&access.org_id, &id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if !access.membership.may_see_members()
            && !self.store.is_team_member(&id, &access.account_id).await?
        {
            return Err(ServiceError::NotFound);
        }
        Ok(row)
    }

    /// Refuses unless `actor` (as it stands inside the transaction) may manage the team.
    fn check_manage(actor: &OrgAccess, row: &TeamRow) -> Result<(), ServiceError> {
        if !org::may_manage_team(actor.membership, row.created_by == actor.account_id) {
            return Err(ServiceError::forbidden(
                "only the team's creator or an administrator manages it",
            ));
        }
        Ok(())
    }

    pub async fn create_team(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        name: &str,
        now: Timestamp,
    ) -> Result<TeamView, ServiceError> {
        let name = parse_org_name("name", name)?;
        let key = self.org_key(&access.org_id).await?;
        let (mut tx, actor) = self.begin_in_org(access).await?;
        if !actor.membership.may_create_teams() {
            return Err(ServiceError::forbidden("guests do not create teams"));
        }
        let row = TeamRow {
            id: TeamId::from_random(&id_random()?),
            org_id: actor.org_id.clone(),
            name_sealed: key.seal("team_name", name.as_bytes())?,
            created_by: actor.account_id.clone(),
            created_at: now,
            updated_at: now,
        };
        tx.insert_team(&row).await?;
        self.record_and_commit(
            tx,
            context,
            org_event(&actor, action::ORG_TEAM_CREATED).target("team", row.id.as_str()),
            now,
        )
        .await?;
        self.team_view(&actor, row, &key)
    }

    pub async fn list_teams(
        &self,
        access: &OrgAccess,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<TeamView>, ServiceError> {
        let after = parse_cursor(cursor, TeamId::parse)?;
        let only_own = (!access.membership.may_see_members()).then_some(&access.account_id);
        let rows = self
            .store
            .teams(&access.org_id, only_own, after.as_ref(), limit + 1)
            .await?;
        let key = self.org_key(&access.org_id).await?;
        Page::from_rows(
            rows,
            limit,
            |row| row.id.to_string(),
            |row| self.team_view(access, row, &key),
        )
    }

    pub async fn get_team(&self, access: &OrgAccess, team: &str) -> Result<TeamView, ServiceError> {
        let row = self.visible_team(access, team).await?;
        let key = self.org_key(&access.org_id).await?;
        self.team_view(access, row, &key)
    }

    pub async fn rename_team(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        team: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<TeamView, ServiceError> {
        let name = parse_org_name("name", name)?;
        let key = self.org_key(&access.org_id).await?;
        // The team is read before the transaction (never a second pooled connection while the
        // organization is locked); the decision uses the caller's role inside it.
        let row = self.visible_team(access, team).await?;
        let (mut tx, actor) = self.begin_in_org(access).await?;
        Self::check_manage(&actor, &row)?;
        tx.update_team_name(&row.id, &key.seal("team_name", name.as_bytes())?, now)
            .await?;
        self.record_and_commit(
            tx,
            context,
            org_event(&actor, action::ORG_TEAM_UPDATED).target("team", row.id.as_str()),
            now,
        )
        .await?;
        self.get_team(&actor, row.id.as_str()).await
    }

    pub async fn delete_team(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        team: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        // The team is read before the transaction (never a second pooled connection while the
        // organization is locked); the decision uses the caller's role inside it.
        let row = self.visible_team(access, team).await?;
        let (mut tx, actor) = self.begin_in_org(access).await?;
        Self::check_manage(&actor, &row)?;
        tx.delete_team(&row.id).await?;
        self.record_and_commit(
            tx,
            context,
            org_event(&actor, action::ORG_TEAM_DELETED).target("team", row.id.as_str()),
            now,
        )
        .await
    }

    pub async fn list_team_members(
        &self,
        access: &OrgAccess,
        team: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<TeamMemberView>, ServiceError> {
        let row = self.visible_team(access, team).await?;
        let after = parse_cursor(cursor, AccountId::parse)?;
        let rows = self
            .store
            .team_members(&row.id, after.as_ref(), limit + 1)
            .await?;
        Page::from_rows(
            rows,
            limit,
            |member| member.account_id.to_string(),
            |member| {
                Ok(TeamMemberView {
                    account_id: member.account_id,
                    added_at: member.created_at,
                })
            },
        )
    }

    /// Adds one of the organization's members to a team (its manager only).
    pub async fn add_team_member(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        team: &str,
        account: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let not_member = || ServiceError::field("account", "is not a member of this organization");
        // The team is read before the transaction (never a second pooled connection while the
        // organization is locked); the decision uses the caller's role inside it.
        let row = self.visible_team(access, team).await?;
        let (mut tx, actor) = self.begin_in_org(access).await?;
        Self::check_manage(&actor, &row)?;
        let account = AccountId::parse(account).ok_or_else(not_member)?;
        if tx
            .membership_in_tx(&actor.org_id, &account)
            .await?
            .is_none()
        {
            return Err(not_member());
        }
        let added = tx
            .insert_team_member(&TeamMemberRow {
                team_id: row.id.clone(),
                org_id: actor.org_id.clone(),
                account_id: account.clone(),
                created_at: now,
            })
            .await?;
        if !added {
            // Already a member: nothing changed, nothing to record.
            return Ok(());
        }
        self.record_and_commit(
            tx,
            context,
            org_event(&actor, action::ORG_TEAM_MEMBER_ADDED)
                .target("team", row.id.as_str())
                .details(serde_json::json!({ "account_id": account.as_str() })),
            now,
        )
        .await
    }

    /// Removes a member from a team: its manager, or the member itself leaving.
    pub async fn remove_team_member(
        &self,
        access: &OrgAccess,
        context: &RequestContext,
        team: &str,
        account: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let account = AccountId::parse(account).ok_or(ServiceError::NotFound)?;
        let row = self.visible_team(access, team).await?;
        let (mut tx, actor) = self.begin_in_org(access).await?;
        if account != actor.account_id {
            Self::check_manage(&actor, &row)?;
        }
        if !tx.delete_team_member(&row.id, &account).await? {
            return Err(ServiceError::NotFound);
        }
        self.record_and_commit(
            tx,
            context,
            org_event(&actor, action::ORG_TEAM_MEMBER_REMOVED)
                .target("team", row.id.as_str())
                .details(serde_json::json!({ "account_id": account.as_str() })),
            now,
        )
        .await
    }
}
