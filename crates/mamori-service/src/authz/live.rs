//! [`LiveIndex`]: the process's [`Index`], kept in step with the store's change log.
//!
//! Invariants:
//! - **Checks never query the database** while the index is current. The index is current
//!   when its revision is at least the store's `authz_local_revision` (what this process
//!   committed) and at least the caller's consistency token; only then is a catch-up needed,
//!   and it reads the change log once for every revision it is behind.
//! - **One catch-up at a time** (`catch_up`, an async mutex). It reads the store with no
//!   lock on the index, then applies everything under a short write lock, so checks keep
//!   being answered from the previous revision meanwhile.
//! - **Revisions apply in order, each once in effect.** Applying a change twice is harmless
//!   (see `mamori_core::authz::index`), so the full load reads the revision first and then
//!   replays the change log from it.
//! - **Directory changes reload the organization.** A `Directory` change reloads that
//!   organization's members, teams and apps from the store as they are now, which is never
//!   older than the revision being applied.

use mamori_core::authz::index::{Index, OrgDirectory};
use mamori_core::authz::schema::{ObjectRef, SubjectRef, TypeDef};
use mamori_core::{AppId, OrgId};
use mamori_store::{AuthzChange, DirectoryRows, RelationshipRow, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Rows read per page when loading.
const LOAD_PAGE: u32 = 10_000;
/// Revisions read per page when catching up.
const CHANGES_PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub(crate) enum LiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the access-control index lock is poisoned")]
    Poisoned,
}

#[derive(Default)]
pub(crate) struct LiveIndex {
    index: RwLock<Index>,
    revision: AtomicI64,
    loaded: AtomicBool,
    catch_up: tokio::sync::Mutex<()>,
}

impl LiveIndex {
    pub fn read(&self) -> Result<RwLockReadGuard<'_, Index>, LiveError> {
        self.index.read().map_err(|_| LiveError::Poisoned)
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Index>, LiveError> {
        self.index.write().map_err(|_| LiveError::Poisoned)
    }

    /// The revision the index reflects.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::SeqCst)
    }

    fn is_current(&self, wanted: i64) -> bool {
        self.loaded.load(Ordering::SeqCst) && self.revision() >= wanted
    }

    /// Makes the index reflect at least revision `wanted` and what this process committed;
    /// returns its revision (which may still be below `wanted` if no such revision exists).
    pub async fn ensure(&self, store: &dyn Store, wanted: i64) -> Result<i64, LiveError> {
        let wanted = wanted.max(store.authz_local_revision());
        if self.is_current(wanted) {
            return Ok(self.revision());
        }
        let _guard = self.catch_up.lock().await;
        if !self.loaded.load(Ordering::SeqCst) {
            self.load_locked(store).await?;
        }
        if self.revision() < wanted {
            self.catch_up_locked(store).await?;
        }
        Ok(self.revision())
    }

    /// Reads whatever other nodes committed (the periodic step).
    pub async fn refresh(&self, store: &dyn Store) -> Result<i64, LiveError> {
        let _guard = self.catch_up.lock().await;
        if self.loaded.load(Ordering::SeqCst) {
            self.catch_up_locked(store).await?;
        } else {
            self.load_locked(store).await?;
        }
        Ok(self.revision())
    }

    /// Builds a fresh index from the store, then replays the change log from the revision
    /// read first.
    async fn load_locked(&self, store: &dyn Store) -> Result<(), LiveError> {
        let revision = store.authz_revision().await?;
        let mut index = Index::new();
        let mut types: BTreeMap<String, Vec<TypeDef>> = BTreeMap::new();
        for row in store.authz_types(None).await? {
            if let Ok(def) = TypeDef::parse(&row.name, &row.definition) {
                types
                    .entry(row.app_id.as_str().to_owned())
                    .or_default()
                    .push(def);
            }
        }
        for (app, defs) in &types {
            index.set_app_types(app, defs);
        }
        for (org, directory) in directories(store.authz_directory(None).await?) {
            index.set_org(org.as_str(), &directory);
        }
        let mut after = None;
        loop {
            let page = store.authz_objects_page(after.as_ref(), LOAD_PAGE).await?;
            for row in &page {
                index.register_object(
                    &row.app_id,
                    &ObjectRef {
                        kind: row.object_type.clone(),
                        id: row.object_id.clone(),
                    },
                    &row.org_id,
                );
            }
            if page.len() < LOAD_PAGE as usize {
                break;
            }
            after = page.last().cloned();
        }
        let mut after: Option<RelationshipRow> = None;
        loop {
            let page = store.relationships_page(after.as_ref(), LOAD_PAGE).await?;
            for row in &page {
                apply_relationship(&mut index, row, true);
            }
            if page.len() < LOAD_PAGE as usize {
                break;
            }
            after = page.last().cloned();
        }
        *self.write()? = index;
        self.revision.store(revision, Ordering::SeqCst);
        self.loaded.store(true, Ordering::SeqCst);
        self.catch_up_locked(store).await
    }

    async fn catch_up_locked(&self, store: &dyn Store) -> Result<(), LiveError> {
        loop {
            let from = self.revision();
            let Some(page) = store.authz_changes(from, CHANGES_PAGE).await? else {
                tracing::warn!(
                    revision = from,
                    "access-control change log pruned past this node; reloading"
                );
                return Box::pin(self.load_locked(store)).await;
            };
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            let last = *last;
            let mut orgs = BTreeSet::new();
            let mut apps = BTreeSet::new();
            for (_, changes) in &page {
                for change in changes {
                    match change {
                        AuthzChange::Directory(org) => {
                            orgs.insert(org.clone());
                        }
                        AuthzChange::Schema(app) => {
                            apps.insert(app.clone());
                        }
                        _ => {}
                    }
                }
            }
            // Read what the page needs before taking the write lock.
            let mut org_dirs = Vec::new();
            for org in &orgs {
                let rows = store.authz_directory(Some(org)).await?;
                let directory = directories(rows)
                    .into_iter()
                    .find(|(id, _)| id == org)
                    .map(|(_, directory)| directory)
                    .unwrap_or_default();
                org_dirs.push((org.clone(), directory));
            }
            let mut app_types: Vec<(AppId, Vec<TypeDef>)> = Vec::new();
            for app in &apps {
                let defs = store
                    .authz_types(Some(app))
                    .await?
                    .into_iter()
                    .filter_map(|row| TypeDef::parse(&row.name, &row.definition).ok())
                    .collect();
                app_types.push((app.clone(), defs));
            }
            {
                let mut index = self.write()?;
                for (app, defs) in &app_types {
                    index.set_app_types(app.as_str(), defs);
                }
                for (org, directory) in &org_dirs {
                    index.set_org(org.as_str(), directory);
                }
                for (_, changes) in &page {
                    for change in changes {
                        apply_change(&mut index, change);
                    }
                }
            }
            self.revision.store(last, Ordering::SeqCst);
        }
    }
}

fn apply_change(index: &mut Index, change: &AuthzChange) {
    match change {
        AuthzChange::Wrote(row) => apply_relationship(index, row, true),
        AuthzChange::Deleted(row) => apply_relationship(index, row, false),
        AuthzChange::Object(row) => {
            index.register_object(
                &row.app_id,
                &ObjectRef {
                    kind: row.object_type.clone(),
                    id: row.object_id.clone(),
                },
                &row.org_id,
            );
        }
        AuthzChange::ObjectDeleted {
            app_id,
            object_type,
            object_id,
        } => {
            index.remove_object(
                app_id,
                &ObjectRef {
                    kind: object_type.clone(),
                    id: object_id.clone(),
                },
            );
        }
        AuthzChange::Directory(_) | AuthzChange::Schema(_) => {}
    }
}

fn apply_relationship(index: &mut Index, row: &RelationshipRow, present: bool) {
    let resource = ObjectRef {
        kind: row.resource_type.clone(),
        id: row.resource_id.clone(),
    };
    let Some(subject) =
        SubjectRef::from_parts(&row.subject_type, &row.subject_id, &row.subject_relation)
    else {
        tracing::warn!(resource = %resource.to_text(), "unreadable relationship subject skipped");
        return;
    };
    if present {
        index.insert(&row.app_id, &row.org_id, &resource, &row.relation, &subject);
    } else {
        index.remove(&row.app_id, &resource, &row.relation, &subject);
    }
}

/// Groups the directory rows by organization.
pub(crate) fn directories(rows: DirectoryRows) -> Vec<(OrgId, OrgDirectory)> {
    let mut by_org: BTreeMap<OrgId, OrgDirectory> = BTreeMap::new();
    for (org, status) in rows.orgs {
        by_org.entry(org).or_default().active = status == crate::orgs::ORG_ACTIVE;
    }
    for (org, account, role) in rows.members {
        by_org
            .entry(org)
            .or_default()
            .members
            .push((account.as_str().to_owned(), role));
    }
    let mut team_members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (team, account) in rows.team_members {
        team_members
            .entry(team.as_str().to_owned())
            .or_default()
            .push(account.as_str().to_owned());
    }
    for (org, team) in rows.teams {
        let members = team_members.remove(team.as_str()).unwrap_or_default();
        by_org
            .entry(org)
            .or_default()
            .teams
            .push((team.as_str().to_owned(), members));
    }
    let mut selected: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (org, app, account) in rows.app_members {
        selected
            .entry((org.as_str().to_owned(), app.as_str().to_owned()))
            .or_default()
            .push(account.as_str().to_owned());
    }
    for (org, app, mode) in rows.apps {
        let members = selected
            .remove(&(org.as_str().to_owned(), app.as_str().to_owned()))
            .unwrap_or_default();
        by_org
            .entry(org)
            .or_default()
            .apps
            .push((app.as_str().to_owned(), mode, members));
    }
    by_org.into_iter().collect()
}
