//! The access-control part of the store: apps' own container types, containers, relationships,
//! and the change log every node's in-memory index follows.
//!
//! **The change log.** A transaction that changes a relationship, a container, a type, or the
//! directory facts a check depends on (organizations, memberships, teams and their members,
//! enabled apps and their selected members) collects [`AuthzChange`]s as it goes. At commit,
//! and only if it collected any, it bumps the single revision row and writes its changes under
//! that revision, as its last statements: the row lock serializes those writers across nodes,
//! so revisions commit in order and a reader that asks for "everything after r" never skips
//! one. The directory methods of `OrgStoreTx` record their changes themselves, so no caller can
//! forget to; a new method that changes those tables must call `SqlTx::note_directory`.
//!
//! The store records what changed; it does not decide who may do what.

use crate::StoreError;
use async_trait::async_trait;
use mamori_core::org::{AppMode, OrgRole};
use mamori_core::{AccountId, AppId, OrgId, TeamId, Timestamp};

/// One stored relationship `resource#relation@subject` of an app in an organization.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelationshipRow {
    pub app_id: String,
    pub org_id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub relation: String,
    pub subject_type: String,
    pub subject_id: String,
    /// `""` for an account.
    pub subject_relation: String,
}

/// A container: one app's object, in one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzObjectRow {
    pub app_id: String,
    pub object_type: String,
    pub object_id: String,
    pub org_id: String,
}

/// A container type an app added, in its text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzTypeRow {
    pub app_id: AppId,
    pub name: String,
    pub definition: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzChange {
    Wrote(RelationshipRow),
    Deleted(RelationshipRow),
    /// A container was registered in an organization.
    Object(AuthzObjectRow),
    /// A container and every relationship on it or naming it were deleted.
    ObjectDeleted {
        app_id: String,
        object_type: String,
        object_id: String,
    },
    /// The organization's state, members, teams or apps changed: reload its directory.
    Directory(OrgId),
    /// The app's types changed: reload them.
    Schema(AppId),
}

impl AuthzChange {
    /// One line of tab-separated fields; fields never hold tabs or line breaks (IDs and names
    /// are checked before they get here).
    pub(crate) fn encode(&self, out: &mut String) {
        let mut line = |fields: &[&str]| {
            out.push_str(&fields.join("\t"));
            out.push('\n');
        };
        match self {
            AuthzChange::Wrote(row) | AuthzChange::Deleted(row) => {
                let tag = if matches!(self, AuthzChange::Wrote(_)) {
                    "W"
                } else {
                    "D"
                };
                line(&[
                    tag,
                    &row.app_id,
                    &row.org_id,
                    &row.resource_type,
                    &row.resource_id,
                    &row.relation,
                    &row.subject_type,
                    &row.subject_id,
                    &row.subject_relation,
                ]);
            }
            AuthzChange::Object(row) => line(&[
                "O",
                &row.app_id,
                &row.object_type,
                &row.object_id,
                &row.org_id,
            ]),
            AuthzChange::ObjectDeleted {
                app_id,
                object_type,
                object_id,
            } => line(&["X", app_id, object_type, object_id]),
            AuthzChange::Directory(org) => line(&["G", org.as_str()]),
            AuthzChange::Schema(app) => line(&["S", app.as_str()]),
        }
    }

    pub(crate) fn decode(text: &str) -> Result<Vec<AuthzChange>, StoreError> {
        let corrupt = || StoreError::Corrupt(String::from("authz change log entry"));
        let mut changes = Vec::new();
        for line in text.lines().filter(|line| !line.is_empty()) {
            let fields: Vec<&str> = line.split('\t').collect();
            let owned = |i: usize| fields.get(i).map(|f| (*f).to_owned()).ok_or_else(corrupt);
            let change = match fields[0] {
                "W" | "D" => {
                    let row = RelationshipRow {
                        app_id: owned(1)?,
                        org_id: owned(2)?,
                        resource_type: owned(3)?,
                        resource_id: owned(4)?,
                        relation: owned(5)?,
                        subject_type: owned(6)?,
                        subject_id: owned(7)?,
                        subject_relation: owned(8)?,
                    };
                    if fields[0] == "W" {
                        AuthzChange::Wrote(row)
                    } else {
                        AuthzChange::Deleted(row)
                    }
                }
                "O" => AuthzChange::Object(AuthzObjectRow {
                    app_id: owned(1)?,
                    object_type: owned(2)?,
                    object_id: owned(3)?,
                    org_id: owned(4)?,
                }),
                "X" => AuthzChange::ObjectDeleted {
                    app_id: owned(1)?,
                    object_type: owned(2)?,
                    object_id: owned(3)?,
                },
                "G" => AuthzChange::Directory(OrgId::from_stored(owned(1)?)),
                "S" => AuthzChange::Schema(AppId::from_stored(owned(1)?)),
                _ => return Err(corrupt()),
            };
            changes.push(change);
        }
        Ok(changes)
    }
}

/// The directory facts checks depend on, for one organization or all of them.
#[derive(Debug, Clone, Default)]
pub struct DirectoryRows {
    /// Organizations with their status (`active`, ...).
    pub orgs: Vec<(OrgId, String)>,
    pub members: Vec<(OrgId, AccountId, OrgRole)>,
    pub teams: Vec<(OrgId, TeamId)>,
    pub team_members: Vec<(TeamId, AccountId)>,
    pub apps: Vec<(OrgId, AppId, AppMode)>,
    pub app_members: Vec<(OrgId, AppId, AccountId)>,
}

/// A page of the change log: each revision with its changes, oldest first.
pub type ChangePage = Vec<(i64, Vec<AuthzChange>)>;

#[async_trait]
pub trait AuthzStore: Send + Sync {
    /// The revision of the last committed change, from the database.
    async fn authz_revision(&self) -> Result<i64, StoreError>;
    /// The highest revision this process committed (no query): a local write made after the
    /// index last caught up shows here first.
    fn authz_local_revision(&self) -> i64;
    /// The revisions after `after`, oldest first. `None` when `after` is older than the
    /// oldest kept revision: the caller must reload everything.
    async fn authz_changes(&self, after: i64, limit: u32)
    -> Result<Option<ChangePage>, StoreError>;
    /// Relationships in primary-key order after `after`.
    async fn relationships_page(
        &self,
        after: Option<&RelationshipRow>,
        limit: u32,
    ) -> Result<Vec<RelationshipRow>, StoreError>;
    /// Containers in primary-key order after `after` (app, type, id).
    async fn authz_objects_page(
        &self,
        after: Option<&AuthzObjectRow>,
        limit: u32,
    ) -> Result<Vec<AuthzObjectRow>, StoreError>;
    async fn authz_object(
        &self,
        app: &AppId,
        object_type: &str,
        object_id: &str,
    ) -> Result<Option<AuthzObjectRow>, StoreError>;
    /// The types apps added; with `app`, only that app's.
    async fn authz_types(&self, app: Option<&AppId>) -> Result<Vec<AuthzTypeRow>, StoreError>;
    /// The directory of one organization, or of all.
    async fn authz_directory(&self, org: Option<&OrgId>) -> Result<DirectoryRows, StoreError>;
}

#[async_trait]
pub trait AuthzStoreTx: Send {
    /// The organization of a container, read inside the transaction.
    async fn authz_object_org_in_tx(
        &mut self,
        app: &AppId,
        object_type: &str,
        object_id: &str,
    ) -> Result<Option<OrgId>, StoreError>;
    /// Registers a container; false when it existed.
    async fn insert_authz_object(
        &mut self,
        row: &AuthzObjectRow,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Adds a relationship; false when it existed (writing twice is harmless).
    async fn insert_relationship(
        &mut self,
        row: &RelationshipRow,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Deletes a relationship of the row's organization; false when there was none.
    async fn delete_relationship(&mut self, row: &RelationshipRow) -> Result<bool, StoreError>;
    /// Deletes a container, its relationships and those naming it as a set; returns how many
    /// relationships went. `None` when there was no such container.
    async fn delete_authz_object(
        &mut self,
        app: &AppId,
        object_type: &str,
        object_id: &str,
    ) -> Result<Option<u64>, StoreError>;
    /// Adds or replaces an app's type; returns whether it existed.
    async fn upsert_authz_type(&mut self, row: &AuthzTypeRow) -> Result<bool, StoreError>;
    /// Deletes every container and relationship of an organization (its purge); returns how
    /// many relationships went.
    async fn delete_org_authz(&mut self, org: &OrgId) -> Result<u64, StoreError>;
    /// The organization of a team, read inside the transaction.
    async fn team_org_in_tx(&mut self, team: &TeamId) -> Result<Option<OrgId>, StoreError>;
}
