//! [`OrgStore`] and [`OrgStoreTx`] in portable SQL.

use super::{SqlStore, SqlTx, expect_one, optional_time_at, sql, time_at};
use crate::records::*;
use crate::{AuthzStoreTx, OrgStore, OrgStoreTx, StoreError};
use async_trait::async_trait;
use mamori_core::org::{AppMode, OrgRole};
use mamori_core::{AccountId, AppId, InvitationId, OrgId, TeamId, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

const ORG_COLUMNS: &str =
    "id, name_sealed, status, require_two_step, created_at, updated_at, require_verified_email";
const MEMBERSHIP_COLUMNS: &str = "org_id, account_id, role, can_invite, created_at, updated_at";
const INVITATION_COLUMNS: &str = "id, org_id, email_index, email_sealed, role, can_invite, \
    token_hash, invited_by, status, created_at, expires_at, decided_at, accepted_by";
const TEAM_COLUMNS: &str = "id, org_id, name_sealed, created_by, created_at, updated_at";
const ORG_APP_COLUMNS: &str = "org_id, app_id, mode, created_at, updated_at";

fn role_at(row: &AnyRow) -> Result<OrgRole, StoreError> {
    let text: String = row.try_get("role")?;
    OrgRole::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("role {text}")))
}

fn org_from(row: &AnyRow) -> Result<OrgRow, StoreError> {
    Ok(OrgRow {
        id: OrgId::from_stored(row.try_get("id")?),
        name_sealed: row.try_get("name_sealed")?,
        status: row.try_get("status")?,
        require_two_step: row.try_get::<i64, _>("require_two_step")? != 0,
        created_at: time_at(row, "created_at")?,
        updated_at: time_at(row, "updated_at")?,
        require_verified_email: row.try_get::<i64, _>("require_verified_email")? != 0,
    })
}

fn membership_from(row: &AnyRow) -> Result<MembershipRow, StoreError> {
    Ok(MembershipRow {
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        role: role_at(row)?,
        can_invite: row.try_get::<i64, _>("can_invite")? != 0,
        created_at: time_at(row, "created_at")?,
        updated_at: time_at(row, "updated_at")?,
    })
}

fn invitation_from(row: &AnyRow) -> Result<InvitationRow, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(InvitationRow {
        id: InvitationId::from_stored(row.try_get("id")?),
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        email_index: row.try_get("email_index")?,
        email_sealed: row.try_get("email_sealed")?,
        role: role_at(row)?,
        can_invite: row.try_get::<i64, _>("can_invite")? != 0,
        token_hash: row.try_get("token_hash")?,
        invited_by: AccountId::from_stored(row.try_get("invited_by")?),
        status: InvitationStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("invitation status {status}")))?,
        created_at: time_at(row, "created_at")?,
        expires_at: time_at(row, "expires_at")?,
        decided_at: optional_time_at(row, "decided_at")?,
        accepted_by: row
            .try_get::<Option<String>, _>("accepted_by")?
            .map(AccountId::from_stored),
    })
}

fn team_from(row: &AnyRow) -> Result<TeamRow, StoreError> {
    Ok(TeamRow {
        id: TeamId::from_stored(row.try_get("id")?),
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        name_sealed: row.try_get("name_sealed")?,
        created_by: AccountId::from_stored(row.try_get("created_by")?),
        created_at: time_at(row, "created_at")?,
        updated_at: time_at(row, "updated_at")?,
    })
}

fn org_app_from(row: &AnyRow) -> Result<OrgAppRow, StoreError> {
    let mode: String = row.try_get("mode")?;
    Ok(OrgAppRow {
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        app_id: AppId::from_stored(row.try_get("app_id")?),
        mode: AppMode::parse(&mode)
            .ok_or_else(|| StoreError::Corrupt(format!("app mode {mode}")))?,
        created_at: time_at(row, "created_at")?,
        updated_at: time_at(row, "updated_at")?,
    })
}

/// `after` as a keyset bound: the empty string sorts before every ID.
fn after_key(after: Option<&impl std::fmt::Display>) -> String {
    after.map(ToString::to_string).unwrap_or_default()
}

#[async_trait]
impl OrgStore for SqlStore {
    async fn org(&self, id: &OrgId) -> Result<Option<OrgRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(org_from).transpose()
    }

    async fn membership(
        &self,
        org: &OrgId,
        account: &AccountId,
    ) -> Result<Option<MembershipRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {MEMBERSHIP_COLUMNS} FROM memberships WHERE org_id = $1 AND account_id = $2"
        )))
        .bind(org.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(membership_from).transpose()
    }

    async fn orgs_of(
        &self,
        account: &AccountId,
        after: Option<&OrgId>,
        limit: u32,
    ) -> Result<Vec<(OrgRow, MembershipRow)>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, o.name_sealed, o.status, o.require_two_step, o.created_at, o.updated_at, \
             o.require_verified_email, m.org_id, \
             m.account_id, m.role, m.can_invite, m.created_at AS m_created_at, \
             m.updated_at AS m_updated_at FROM memberships m JOIN organizations o ON o.id = m.org_id \
             WHERE m.account_id = $1 AND m.org_id > $2 ORDER BY m.org_id LIMIT $3",
        )
        .bind(account.as_str())
        .bind(after_key(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let org = org_from(row)?;
                let membership = MembershipRow {
                    org_id: org.id.clone(),
                    account_id: AccountId::from_stored(row.try_get("account_id")?),
                    role: role_at(row)?,
                    can_invite: row.try_get::<i64, _>("can_invite")? != 0,
                    created_at: time_at(row, "m_created_at")?,
                    updated_at: time_at(row, "m_updated_at")?,
                };
                Ok((org, membership))
            })
            .collect()
    }

    async fn members(
        &self,
        org: &OrgId,
        after: Option<&AccountId>,
        limit: u32,
    ) -> Result<Vec<(MembershipRow, AccountRow)>, StoreError> {
        let rows = sqlx::query(sql(format!(
            // The page is cut from memberships before the join: joined first, PostgreSQL's
            // planner (with statistics) merge-joins along accounts from the first one, so a page
            // cost grew with its position in the list. This way it is one index range plus one
            // primary-key look-up per row, wherever the cursor is.
            "SELECT m.org_id, m.account_id, m.role, m.can_invite, m.created_at AS m_created_at, \
             m.updated_at AS m_updated_at, {} FROM \
             (SELECT org_id, account_id, role, can_invite, created_at, updated_at FROM memberships \
              WHERE org_id = $1 AND account_id > $2 ORDER BY account_id LIMIT $3) m \
             JOIN accounts a ON a.id = m.account_id ORDER BY m.account_id",
            super::ACCOUNT_COLUMNS
                .split(", ")
                .map(|column| format!("a.{column}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(org.as_str())
        .bind(after_key(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let membership = MembershipRow {
                    org_id: OrgId::from_stored(row.try_get("org_id")?),
                    account_id: AccountId::from_stored(row.try_get("account_id")?),
                    role: role_at(row)?,
                    can_invite: row.try_get::<i64, _>("can_invite")? != 0,
                    created_at: time_at(row, "m_created_at")?,
                    updated_at: time_at(row, "m_updated_at")?,
                };
                Ok((membership, super::account_from(row)?))
            })
            .collect()
    }

    async fn orgs_where_last_admin(&self, account: &AccountId) -> Result<Vec<OrgId>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.org_id FROM memberships m WHERE m.account_id = $1 AND m.role = 'admin' \
             AND (SELECT COUNT(*) FROM memberships a WHERE a.org_id = m.org_id AND a.role = 'admin') = 1 \
             ORDER BY m.org_id",
        )
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(OrgId::from_stored(row.try_get("org_id")?)))
            .collect()
    }

    async fn invitation(
        &self,
        org: &OrgId,
        id: &InvitationId,
    ) -> Result<Option<InvitationRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {INVITATION_COLUMNS} FROM invitations WHERE org_id = $1 AND id = $2"
        )))
        .bind(org.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(invitation_from).transpose()
    }

    async fn invitation_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<InvitationRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_hash = $1"
        )))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(invitation_from).transpose()
    }

    async fn pending_invitations(
        &self,
        org: &OrgId,
        now: Timestamp,
        after: Option<&InvitationId>,
        limit: u32,
    ) -> Result<Vec<InvitationRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {INVITATION_COLUMNS} FROM invitations WHERE org_id = $1 AND status = 'pending' \
             AND expires_at > $4 AND id > $2 ORDER BY id LIMIT $3"
        )))
        .bind(org.as_str())
        .bind(after_key(after))
        .bind(i64::from(limit))
        .bind(now.as_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invitation_from).collect()
    }

    async fn team(&self, org: &OrgId, id: &TeamId) -> Result<Option<TeamRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = $1 AND id = $2"
        )))
        .bind(org.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(team_from).transpose()
    }

    async fn teams(
        &self,
        org: &OrgId,
        member: Option<&AccountId>,
        after: Option<&TeamId>,
        limit: u32,
    ) -> Result<Vec<TeamRow>, StoreError> {
        let rows = match member {
            None => {
                sqlx::query(sql(format!(
                    "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                )))
                .bind(org.as_str())
                .bind(after_key(after))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            Some(account) => {
                sqlx::query(sql(format!(
                    "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = $1 AND id > $2 AND id IN \
                     (SELECT team_id FROM team_members WHERE org_id = $1 AND account_id = $3) \
                     ORDER BY id LIMIT $4"
                )))
                .bind(org.as_str())
                .bind(after_key(after))
                .bind(account.as_str())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(team_from).collect()
    }

    async fn team_members(
        &self,
        team: &TeamId,
        after: Option<&AccountId>,
        limit: u32,
    ) -> Result<Vec<TeamMemberRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT team_id, org_id, account_id, created_at FROM team_members \
             WHERE team_id = $1 AND account_id > $2 ORDER BY account_id LIMIT $3",
        )
        .bind(team.as_str())
        .bind(after_key(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TeamMemberRow {
                    team_id: TeamId::from_stored(row.try_get("team_id")?),
                    org_id: OrgId::from_stored(row.try_get("org_id")?),
                    account_id: AccountId::from_stored(row.try_get("account_id")?),
                    created_at: time_at(row, "created_at")?,
                })
            })
            .collect()
    }

    async fn is_team_member(&self, team: &TeamId, account: &AccountId) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS present FROM team_members WHERE team_id = $1 AND account_id = $2",
        )
        .bind(team.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn app(&self, id: &AppId) -> Result<Option<AppRow>, StoreError> {
        let row = sqlx::query("SELECT id, name, secret_hash, created_at FROM apps WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(super::app_from).transpose()
    }

    async fn org_app(&self, org: &OrgId, app: &AppId) -> Result<Option<OrgAppRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {ORG_APP_COLUMNS} FROM org_apps WHERE org_id = $1 AND app_id = $2"
        )))
        .bind(org.as_str())
        .bind(app.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(org_app_from).transpose()
    }

    async fn org_apps(&self, org: &OrgId) -> Result<Vec<OrgAppRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {ORG_APP_COLUMNS} FROM org_apps WHERE org_id = $1 ORDER BY app_id"
        )))
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(org_app_from).collect()
    }

    async fn is_org_app_member(
        &self,
        org: &OrgId,
        app: &AppId,
        account: &AccountId,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS present FROM org_app_members WHERE org_id = $1 AND app_id = $2 AND account_id = $3",
        )
        .bind(org.as_str())
        .bind(app.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn org_app_members(
        &self,
        org: &OrgId,
        app: &AppId,
        after: Option<&AccountId>,
        limit: u32,
    ) -> Result<Vec<AccountId>, StoreError> {
        let rows = sqlx::query(
            "SELECT account_id FROM org_app_members WHERE org_id = $1 AND app_id = $2 \
             AND account_id > $3 ORDER BY account_id LIMIT $4",
        )
        .bind(org.as_str())
        .bind(app.as_str())
        .bind(after_key(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(AccountId::from_stored(row.try_get("account_id")?)))
            .collect()
    }
}

#[async_trait]
impl OrgStoreTx for SqlTx {
    async fn insert_org(&mut self, org: &OrgRow) -> Result<(), StoreError> {
        sqlx::query(sql(format!(
            "INSERT INTO organizations ({ORG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(org.id.as_str())
        .bind(org.name_sealed.as_str())
        .bind(org.status.as_str())
        .bind(i64::from(org.require_two_step))
        .bind(org.created_at.as_millis())
        .bind(org.updated_at.as_millis())
        .bind(i64::from(org.require_verified_email))
        .execute(&mut *self.tx)
        .await?;
        self.note_directory(&org.id);
        Ok(())
    }

    async fn update_org_require_two_step(
        &mut self,
        org: &OrgId,
        require_two_step: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE organizations SET require_two_step = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(i64::from(require_two_step))
        .bind(now.as_millis())
        .bind(org.as_str())
        .execute(&mut *self.tx)
        .await?;
        expect_one(result.rows_affected())
    }

    async fn lock_org(&mut self, org: &OrgId) -> Result<(), StoreError> {
        // An UPDATE that changes nothing still takes the row lock on PostgreSQL; SQLite's
        // write transaction holds the whole database already.
        let result = sqlx::query("UPDATE organizations SET updated_at = updated_at WHERE id = $1")
            .bind(org.as_str())
            .execute(&mut *self.tx)
            .await?;
        expect_one(result.rows_affected())
    }

    async fn update_org_name(
        &mut self,
        org: &OrgId,
        name_sealed: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let result =
            sqlx::query("UPDATE organizations SET name_sealed = $1, updated_at = $2 WHERE id = $3")
                .bind(name_sealed)
                .bind(now.as_millis())
                .bind(org.as_str())
                .execute(&mut *self.tx)
                .await?;
        expect_one(result.rows_affected())
    }

    async fn membership_in_tx(
        &mut self,
        org: &OrgId,
        account: &AccountId,
    ) -> Result<Option<MembershipRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {MEMBERSHIP_COLUMNS} FROM memberships WHERE org_id = $1 AND account_id = $2"
        )))
        .bind(org.as_str())
        .bind(account.as_str())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(membership_from).transpose()
    }

    async fn insert_membership(&mut self, membership: &MembershipRow) -> Result<(), StoreError> {
        sqlx::query(sql(format!(
            "INSERT INTO memberships ({MEMBERSHIP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        )))
        .bind(membership.org_id.as_str())
        .bind(membership.account_id.as_str())
        .bind(membership.role.as_str())
        .bind(i64::from(membership.can_invite))
        .bind(membership.created_at.as_millis())
        .bind(membership.updated_at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        self.note_directory(&membership.org_id);
        Ok(())
    }

    async fn update_membership(
        &mut self,
        org: &OrgId,
        account: &AccountId,
        role: OrgRole,
        can_invite: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE memberships SET role = $1, can_invite = $2, updated_at = $3 \
             WHERE org_id = $4 AND account_id = $5",
        )
        .bind(role.as_str())
        .bind(i64::from(can_invite))
        .bind(now.as_millis())
        .bind(org.as_str())
        .bind(account.as_str())
        .execute(&mut *self.tx)
        .await?;
        self.note_directory(org);
        expect_one(result.rows_affected())
    }

    async fn delete_membership(
        &mut self,
        org: &OrgId,
        account: &AccountId,
    ) -> Result<(), StoreError> {
        for statement in [
            "DELETE FROM team_members WHERE org_id = $1 AND account_id = $2",
            "DELETE FROM org_app_members WHERE org_id = $1 AND account_id = $2",
            "DELETE FROM audit_viewers WHERE org_id = $1 AND subject_type = 'account' \
             AND subject_id = $2",
        ] {
            sqlx::query(statement)
                .bind(org.as_str())
                .bind(account.as_str())
                .execute(&mut *self.tx)
                .await?;
        }
        // The relationships that name the account in this organization go with it (no orphan).
        self.delete_relationships_where(
            "org_id = $1 AND subject_type = 'account' AND subject_id = $2",
            org.as_str(),
            account.as_str(),
        )
        .await?;
        let result = sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND account_id = $2")
            .bind(org.as_str())
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
        self.note_directory(org);
        expect_one(result.rows_affected())
    }

    async fn count_admins(&mut self, org: &OrgId) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM memberships WHERE org_id = $1 AND role = 'admin'",
        )
        .bind(org.as_str())
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    async fn count_members(&mut self, org: &OrgId) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM memberships WHERE org_id = $1")
            .bind(org.as_str())
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    async fn orgs_of_account_in_tx(
        &mut self,
        account: &AccountId,
    ) -> Result<Vec<OrgId>, StoreError> {
        let rows =
            sqlx::query("SELECT org_id FROM memberships WHERE account_id = $1 ORDER BY org_id")
                .bind(account.as_str())
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter()
            .map(|row| Ok(OrgId::from_stored(row.try_get("org_id")?)))
            .collect()
    }

    async fn replace_pending_invitations(
        &mut self,
        org: &OrgId,
        email_index: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE invitations SET status = 'replaced', decided_at = $1 \
             WHERE org_id = $2 AND email_index = $3 AND status = 'pending'",
        )
        .bind(now.as_millis())
        .bind(org.as_str())
        .bind(email_index)
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected())
    }

    async fn insert_invitation(&mut self, invitation: &InvitationRow) -> Result<(), StoreError> {
        sqlx::query(sql(format!(
            "INSERT INTO invitations ({INVITATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             $8, $9, $10, $11, $12, $13)"
        )))
        .bind(invitation.id.as_str())
        .bind(invitation.org_id.as_str())
        .bind(invitation.email_index.as_str())
        .bind(invitation.email_sealed.as_str())
        .bind(invitation.role.as_str())
        .bind(i64::from(invitation.can_invite))
        .bind(invitation.token_hash.as_str())
        .bind(invitation.invited_by.as_str())
        .bind(invitation.status.as_str())
        .bind(invitation.created_at.as_millis())
        .bind(invitation.expires_at.as_millis())
        .bind(invitation.decided_at.map(Timestamp::as_millis))
        .bind(invitation.accepted_by.as_ref().map(AccountId::as_str))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn scrub_invitations_of(&mut self, account: &AccountId) -> Result<u64, StoreError> {
        // The blind index must stay unique among pending invitations only, and these are
        // accepted, so a fixed marker per row is enough.
        let result = sqlx::query(
            "UPDATE invitations SET email_index = 'scrubbed:' || id, email_sealed = '' \
             WHERE accepted_by = $1",
        )
        .bind(account.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected())
    }

    async fn decide_invitation(
        &mut self,
        id: &InvitationId,
        status: InvitationStatus,
        accepted_by: Option<&AccountId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE invitations SET status = $1, accepted_by = $2, decided_at = $3 \
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(accepted_by.map(AccountId::as_str))
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn insert_team(&mut self, team: &TeamRow) -> Result<(), StoreError> {
        sqlx::query(sql(format!(
            "INSERT INTO teams ({TEAM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        )))
        .bind(team.id.as_str())
        .bind(team.org_id.as_str())
        .bind(team.name_sealed.as_str())
        .bind(team.created_by.as_str())
        .bind(team.created_at.as_millis())
        .bind(team.updated_at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn update_team_name(
        &mut self,
        team: &TeamId,
        name_sealed: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let result =
            sqlx::query("UPDATE teams SET name_sealed = $1, updated_at = $2 WHERE id = $3")
                .bind(name_sealed)
                .bind(now.as_millis())
                .bind(team.as_str())
                .execute(&mut *self.tx)
                .await?;
        expect_one(result.rows_affected())
    }

    async fn delete_team(&mut self, team: &TeamId) -> Result<(), StoreError> {
        if let Some(org) = self.team_org_in_tx(team).await? {
            // Relationships granted to the team go with it (no orphan).
            self.delete_relationships_where(
                "org_id = $1 AND subject_type = 'team' AND subject_id = $2",
                org.as_str(),
                team.as_str(),
            )
            .await?;
            self.note_directory(&org);
        }
        for statement in [
            "DELETE FROM team_members WHERE team_id = $1",
            "DELETE FROM audit_viewers WHERE subject_type = 'team' AND subject_id = $1",
        ] {
            sqlx::query(statement)
                .bind(team.as_str())
                .execute(&mut *self.tx)
                .await?;
        }
        let result = sqlx::query("DELETE FROM teams WHERE id = $1")
            .bind(team.as_str())
            .execute(&mut *self.tx)
            .await?;
        expect_one(result.rows_affected())
    }

    async fn insert_team_member(&mut self, member: &TeamMemberRow) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO team_members (team_id, org_id, account_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (team_id, account_id) DO NOTHING",
        )
        .bind(member.team_id.as_str())
        .bind(member.org_id.as_str())
        .bind(member.account_id.as_str())
        .bind(member.created_at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        self.note_directory(&member.org_id);
        Ok(result.rows_affected() == 1)
    }

    async fn delete_team_member(
        &mut self,
        team: &TeamId,
        account: &AccountId,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND account_id = $2")
            .bind(team.as_str())
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
        if let Some(org) = self.team_org_in_tx(team).await? {
            self.note_directory(&org);
        }
        Ok(result.rows_affected() == 1)
    }

    async fn upsert_org_app(
        &mut self,
        org: &OrgId,
        app: &AppId,
        mode: AppMode,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE org_apps SET mode = $1, updated_at = $2 WHERE org_id = $3 AND app_id = $4",
        )
        .bind(mode.as_str())
        .bind(now.as_millis())
        .bind(org.as_str())
        .bind(app.as_str())
        .execute(&mut *self.tx)
        .await?;
        self.note_directory(org);
        if updated.rows_affected() == 1 {
            return Ok(true);
        }
        sqlx::query(sql(format!(
            "INSERT INTO org_apps ({ORG_APP_COLUMNS}) VALUES ($1, $2, $3, $4, $4)"
        )))
        .bind(org.as_str())
        .bind(app.as_str())
        .bind(mode.as_str())
        .bind(now.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(false)
    }

    async fn delete_org_app(&mut self, org: &OrgId, app: &AppId) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM org_app_members WHERE org_id = $1 AND app_id = $2")
            .bind(org.as_str())
            .bind(app.as_str())
            .execute(&mut *self.tx)
            .await?;
        let result = sqlx::query("DELETE FROM org_apps WHERE org_id = $1 AND app_id = $2")
            .bind(org.as_str())
            .bind(app.as_str())
            .execute(&mut *self.tx)
            .await?;
        // The app's relationships stay but are neutralised: the rule above all tuples denies
        // every check in an organization that has not enabled the app.
        self.note_directory(org);
        Ok(result.rows_affected() == 1)
    }

    async fn insert_org_app_member(
        &mut self,
        org: &OrgId,
        app: &AppId,
        account: &AccountId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO org_app_members (org_id, app_id, account_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org_id, app_id, account_id) DO NOTHING",
        )
        .bind(org.as_str())
        .bind(app.as_str())
        .bind(account.as_str())
        .bind(now.as_millis())
        .execute(&mut *self.tx)
        .await?;
        self.note_directory(org);
        Ok(result.rows_affected() == 1)
    }

    async fn delete_org_app_member(
        &mut self,
        org: &OrgId,
        app: &AppId,
        account: &AccountId,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "DELETE FROM org_app_members WHERE org_id = $1 AND app_id = $2 AND account_id = $3",
        )
        .bind(org.as_str())
        .bind(app.as_str())
        .bind(account.as_str())
        .execute(&mut *self.tx)
        .await?;
        self.note_directory(org);
        Ok(result.rows_affected() == 1)
    }
}
