//! The organization part of the store: organizations, memberships, invitations, teams and
//! the apps an organization enabled. Every method takes the organization explicitly.

use crate::StoreError;
use crate::records::*;
use async_trait::async_trait;
use mamori_core::org::{AppMode, OrgRole};
use mamori_core::{AccountId, AppId, InvitationId, OrgId, TeamId, Timestamp};

#[async_trait]
pub trait OrgStore: Send + Sync {
    async fn org(&self, id: &OrgId) -> Result<Option<OrgRow>, StoreError>;
    async fn membership(
        &self,
        org: &OrgId,
        account: &AccountId,
    ) -> Result<Option<MembershipRow>, StoreError>;
    /// The organizations `account` belongs to, by organization ID, after `after`.
    async fn orgs_of(
        &self,
        account: &AccountId,
        after: Option<&OrgId>,
        limit: u32,
    ) -> Result<Vec<(OrgRow, MembershipRow)>, StoreError>;
    /// Members with their accounts, by account ID, after `after`: one query for a page.
    async fn members(
        &self,
        org: &OrgId,
        after: Option<&AccountId>,
        limit: u32,
    ) -> Result<Vec<(MembershipRow, AccountRow)>, StoreError>;
    /// Organizations where `account` is the only administrator.
    async fn orgs_where_last_admin(&self, account: &AccountId) -> Result<Vec<OrgId>, StoreError>;

    async fn invitation(
        &self,
        org: &OrgId,
        id: &InvitationId,
    ) -> Result<Option<InvitationRow>, StoreError>;
    async fn invitation_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<InvitationRow>, StoreError>;
    /// Pending invitations not expired at `now`, by ID, after the invitation `after`.
    async fn pending_invitations(
        &self,
        org: &OrgId,
        now: Timestamp,
        after: Option<&InvitationId>,
        limit: u32,
    ) -> Result<Vec<InvitationRow>, StoreError>;

    async fn team(&self, org: &OrgId, id: &TeamId) -> Result<Option<TeamRow>, StoreError>;
    /// Teams by ID after `after`; with `member`, only the teams that account is in.
    async fn teams(
        &self,
        org: &OrgId,
        member: Option<&AccountId>,
        after: Option<&TeamId>,
        limit: u32,
    ) -> Result<Vec<TeamRow>, StoreError>;
    async fn team_members(
        &self,
        team: &TeamId,
        after: Option<&AccountId>,
        limit: u32,
    ) -> Result<Vec<TeamMemberRow>, StoreError>;
    async fn is_team_member(&self, team: &TeamId, account: &AccountId) -> Result<bool, StoreError>;

    async fn app(&self, id: &AppId) -> Result<Option<AppRow>, StoreError>;
    async fn org_app(&self, org: &OrgId, app: &AppId) -> Result<Option<OrgAppRow>, StoreError>;
    async fn org_apps(&self, org: &OrgId) -> Result<Vec<OrgAppRow>, StoreError>;
    async fn is_org_app_member(
        &self,
        org: &OrgId,
        app: &AppId,
        account: &AccountId,
    ) -> Result<bool, StoreError>;
    /// The selected active members of an app, by account ID after `after`.
    async fn org_app_members(
        &self,
        org: &OrgId,
        app: &AppId,
        after: Option<&AccountId>,
        limit: u32,
    ) -> Result<Vec<AccountId>, StoreError>;
}

#[async_trait]
pub trait OrgStoreTx: Send {
    async fn insert_org(&mut self, org: &OrgRow) -> Result<(), StoreError>;
    /// Serializes changes to one organization's membership: on PostgreSQL it takes the
    /// organization row's lock until the transaction ends. `NotFound` when there is no such
    /// organization.
    async fn lock_org(&mut self, org: &OrgId) -> Result<(), StoreError>;
    async fn update_org_name(
        &mut self,
        org: &OrgId,
        name_sealed: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Sets whether members must use two-step verification (ACC-6, ORG-6).
    async fn update_org_require_two_step(
        &mut self,
        org: &OrgId,
        require_two_step: bool,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    async fn membership_in_tx(
        &mut self,
        org: &OrgId,
        account: &AccountId,
    ) -> Result<Option<MembershipRow>, StoreError>;
    async fn insert_membership(&mut self, membership: &MembershipRow) -> Result<(), StoreError>;
    async fn update_membership(
        &mut self,
        org: &OrgId,
        account: &AccountId,
        role: OrgRole,
        can_invite: bool,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Removes the membership and everything it gave in the organization: team memberships
    /// and app selections.
    async fn delete_membership(
        &mut self,
        org: &OrgId,
        account: &AccountId,
    ) -> Result<(), StoreError>;
    async fn count_admins(&mut self, org: &OrgId) -> Result<u64, StoreError>;
    async fn count_members(&mut self, org: &OrgId) -> Result<u64, StoreError>;
    /// Every organization the account belongs to, for removal cascades.
    async fn orgs_of_account_in_tx(
        &mut self,
        account: &AccountId,
    ) -> Result<Vec<OrgId>, StoreError>;

    /// Marks pending invitations of this address to this organization as replaced.
    async fn replace_pending_invitations(
        &mut self,
        org: &OrgId,
        email_index: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    async fn insert_invitation(&mut self, invitation: &InvitationRow) -> Result<(), StoreError>;
    /// Removes the invitee's address from the invitations `account` accepted: once the account
    /// is deleted, nothing of its email is kept (ACC-4).
    async fn scrub_invitations_of(&mut self, account: &AccountId) -> Result<u64, StoreError>;
    /// Moves a pending invitation to `status`; false when it was no longer pending.
    async fn decide_invitation(
        &mut self,
        id: &InvitationId,
        status: InvitationStatus,
        accepted_by: Option<&AccountId>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    async fn insert_team(&mut self, team: &TeamRow) -> Result<(), StoreError>;
    async fn update_team_name(
        &mut self,
        team: &TeamId,
        name_sealed: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    async fn delete_team(&mut self, team: &TeamId) -> Result<(), StoreError>;
    /// Adds a team member; false when it was one already.
    async fn insert_team_member(&mut self, member: &TeamMemberRow) -> Result<bool, StoreError>;
    async fn delete_team_member(
        &mut self,
        team: &TeamId,
        account: &AccountId,
    ) -> Result<bool, StoreError>;

    /// Enables an app or changes its mode; returns whether it was enabled before.
    async fn upsert_org_app(
        &mut self,
        org: &OrgId,
        app: &AppId,
        mode: AppMode,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Disables an app and forgets its selected members; false when it was not enabled.
    async fn delete_org_app(&mut self, org: &OrgId, app: &AppId) -> Result<bool, StoreError>;
    async fn insert_org_app_member(
        &mut self,
        org: &OrgId,
        app: &AppId,
        account: &AccountId,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn delete_org_app_member(
        &mut self,
        org: &OrgId,
        app: &AppId,
        account: &AccountId,
    ) -> Result<bool, StoreError>;
}
