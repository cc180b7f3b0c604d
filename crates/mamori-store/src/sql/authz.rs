//! [`AuthzStore`] and [`AuthzStoreTx`] in portable SQL, and the change log's commit step.

use super::{SqlStore, SqlTx, sql, time_at};
use crate::StoreError;
use crate::authz::*;
use async_trait::async_trait;
use mamori_core::org::{AppMode, OrgRole};
use mamori_core::{AccountId, AppId, OrgId, TeamId, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::sync::atomic::Ordering;

/// How many revisions the change log keeps; a node further behind reloads everything.
pub(crate) const KEPT_REVISIONS: i64 = 100_000;

pub(crate) const RELATIONSHIP_COLUMNS: &str = "app_id, org_id, resource_type, resource_id, relation, \
    subject_type, subject_id, subject_relation";

pub(crate) fn relationship_from(row: &AnyRow) -> Result<RelationshipRow, StoreError> {
    Ok(RelationshipRow {
        app_id: row.try_get("app_id")?,
        org_id: row.try_get("org_id")?,
        resource_type: row.try_get("resource_type")?,
        resource_id: row.try_get("resource_id")?,
        relation: row.try_get("relation")?,
        subject_type: row.try_get("subject_type")?,
        subject_id: row.try_get("subject_id")?,
        subject_relation: row.try_get("subject_relation")?,
    })
}

fn object_from(row: &AnyRow) -> Result<AuthzObjectRow, StoreError> {
    Ok(AuthzObjectRow {
        app_id: row.try_get("app_id")?,
        object_type: row.try_get("object_type")?,
        object_id: row.try_get("object_id")?,
        org_id: row.try_get("org_id")?,
    })
}

impl SqlTx {
    /// Records a change for the change log, written at commit.
    pub(crate) fn note(&mut self, change: AuthzChange) {
        self.authz.push(change);
    }

    /// Records that an organization's directory changed (once per transaction).
    pub(crate) fn note_directory(&mut self, org: &OrgId) {
        let change = AuthzChange::Directory(org.clone());
        if !self.authz.contains(&change) {
            self.authz.push(change);
        }
    }

    /// Deletes relationships matching `condition` (with `$1`, `$2` bound to `first`,
    /// `second`) and records each one in the change log.
    pub(crate) async fn delete_relationships_where(
        &mut self,
        condition: &str,
        first: &str,
        second: &str,
    ) -> Result<u64, StoreError> {
        let rows = sqlx::query(sql(format!(
            "DELETE FROM authz_relationships WHERE {condition} RETURNING {RELATIONSHIP_COLUMNS}"
        )))
        .bind(first)
        .bind(second)
        .fetch_all(&mut *self.tx)
        .await?;
        for row in &rows {
            let row = relationship_from(row)?;
            self.note(AuthzChange::Deleted(row));
        }
        Ok(rows.len() as u64)
    }

    /// Writes the collected changes under the next revision, commits, and returns that
    /// revision (`None` when nothing for the change log happened).
    pub(crate) async fn commit_changes(self: Box<Self>) -> Result<Option<i64>, StoreError> {
        let SqlTx {
            mut tx,
            _permit,
            authz,
            local_revision,
            evictions,
            cache,
            engine: _,
        } = *self;
        // Credentials changed: bump the epoch so other processes' caches forget (see
        // `crate::cache`). The row lock orders these writers like the revision's.
        let epoch = if evictions.is_empty() {
            None
        } else {
            let row = sqlx::query(
                "UPDATE credential_epoch SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch",
            )
            .fetch_one(&mut *tx)
            .await?;
            Some(row.try_get::<i64, _>("epoch")?)
        };
        let revision = if authz.is_empty() {
            None
        } else {
            let row = sqlx::query(
                "UPDATE authz_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
            )
            .fetch_one(&mut *tx)
            .await?;
            let revision: i64 = row.try_get("revision")?;
            let mut text = String::new();
            for change in &authz {
                change.encode(&mut text);
            }
            sqlx::query("INSERT INTO authz_changes (revision, changes) VALUES ($1, $2)")
                .bind(revision)
                .bind(text)
                .execute(&mut *tx)
                .await?;
            if revision % 1000 == 0 {
                sqlx::query("DELETE FROM authz_changes WHERE revision <= $1")
                    .bind(revision - KEPT_REVISIONS)
                    .execute(&mut *tx)
                    .await?;
            }
            Some(revision)
        };
        tx.commit().await?;
        if let Some(revision) = revision {
            local_revision.fetch_max(revision, Ordering::SeqCst);
        }
        if let Some(epoch) = epoch {
            cache.evict(&evictions);
            cache.bumped_here(epoch);
        }
        Ok(revision)
    }
}

#[async_trait]
impl AuthzStore for SqlStore {
    async fn authz_revision(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT revision FROM authz_revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("revision")?)
    }

    fn authz_local_revision(&self) -> i64 {
        self.local_revision.load(Ordering::SeqCst)
    }

    async fn authz_changes(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Option<ChangePage>, StoreError> {
        let rows = sqlx::query(
            "SELECT revision, changes FROM authz_changes WHERE revision > $1 \
             ORDER BY revision LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            let revision: i64 = row.try_get("revision")?;
            let text: String = row.try_get("changes")?;
            page.push((revision, AuthzChange::decode(&text)?));
        }
        // Revisions are dense: a gap after `after` means it was pruned.
        if let Some((first, _)) = page.first()
            && *first != after + 1
        {
            return Ok(None);
        }
        Ok(Some(page))
    }

    async fn relationships_page(
        &self,
        after: Option<&RelationshipRow>,
        limit: u32,
    ) -> Result<Vec<RelationshipRow>, StoreError> {
        let empty = RelationshipRow::default_key();
        let after = after.unwrap_or(&empty);
        let rows = sqlx::query(sql(format!(
            "SELECT {RELATIONSHIP_COLUMNS} FROM authz_relationships WHERE (app_id, resource_type, \
             resource_id, relation, subject_type, subject_id, subject_relation) > \
             ($1, $2, $3, $4, $5, $6, $7) ORDER BY app_id, resource_type, resource_id, relation, \
             subject_type, subject_id, subject_relation LIMIT $8"
        )))
        .bind(after.app_id.as_str())
        .bind(after.resource_type.as_str())
        .bind(after.resource_id.as_str())
        .bind(after.relation.as_str())
        .bind(after.subject_type.as_str())
        .bind(after.subject_id.as_str())
        .bind(after.subject_relation.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(relationship_from).collect()
    }

    async fn authz_objects_page(
        &self,
        after: Option<&AuthzObjectRow>,
        limit: u32,
    ) -> Result<Vec<AuthzObjectRow>, StoreError> {
        let (app, kind, id) = after.map_or(("", "", ""), |row| {
            (
                row.app_id.as_str(),
                row.object_type.as_str(),
                row.object_id.as_str(),
            )
        });
        let rows = sqlx::query(
            "SELECT app_id, object_type, object_id, org_id FROM authz_objects \
             WHERE (app_id, object_type, object_id) > ($1, $2, $3) \
             ORDER BY app_id, object_type, object_id LIMIT $4",
        )
        .bind(app)
        .bind(kind)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(object_from).collect()
    }

    async fn authz_object(
        &self,
        app: &AppId,
        object_type: &str,
        object_id: &str,
    ) -> Result<Option<AuthzObjectRow>, StoreError> {
        let row = sqlx::query(
            "SELECT app_id, object_type, object_id, org_id FROM authz_objects \
             WHERE app_id = $1 AND object_type = $2 AND object_id = $3",
        )
        .bind(app.as_str())
        .bind(object_type)
        .bind(object_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(object_from).transpose()
    }

    async fn authz_types(&self, app: Option<&AppId>) -> Result<Vec<AuthzTypeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT app_id, name, definition, created_at, updated_at FROM authz_types \
             WHERE app_id = $1 OR $1 = '' ORDER BY app_id, name",
        )
        .bind(app.map_or("", AppId::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuthzTypeRow {
                    app_id: AppId::from_stored(row.try_get("app_id")?),
                    name: row.try_get("name")?,
                    definition: row.try_get("definition")?,
                    created_at: time_at(row, "created_at")?,
                    updated_at: time_at(row, "updated_at")?,
                })
            })
            .collect()
    }

    async fn authz_directory(&self, org: Option<&OrgId>) -> Result<DirectoryRows, StoreError> {
        // One organization through its primary key and indexes, or every row for a full load.
        let (filter, filter_id, key) = match org {
            Some(org) => ("WHERE org_id = $1", "WHERE id = $1", org.as_str()),
            None => ("WHERE $1 = ''", "WHERE $1 = ''", ""),
        };
        let fetch = |query: String| {
            let pool = &self.pool;
            async move {
                sqlx::query(sql(query))
                    .bind(key)
                    .fetch_all(pool)
                    .await
                    .map_err(StoreError::from)
            }
        };
        let mut rows = DirectoryRows::default();
        for row in fetch(format!("SELECT id, status FROM organizations {filter_id}")).await? {
            rows.orgs.push((
                OrgId::from_stored(row.try_get("id")?),
                row.try_get("status")?,
            ));
        }
        for row in fetch(format!(
            "SELECT org_id, account_id, role FROM memberships {filter}"
        ))
        .await?
        {
            let role: String = row.try_get("role")?;
            rows.members.push((
                OrgId::from_stored(row.try_get("org_id")?),
                AccountId::from_stored(row.try_get("account_id")?),
                OrgRole::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
            ));
        }
        for row in fetch(format!("SELECT org_id, id FROM teams {filter}")).await? {
            rows.teams.push((
                OrgId::from_stored(row.try_get("org_id")?),
                TeamId::from_stored(row.try_get("id")?),
            ));
        }
        for row in fetch(format!(
            "SELECT team_id, account_id FROM team_members {filter}"
        ))
        .await?
        {
            rows.team_members.push((
                TeamId::from_stored(row.try_get("team_id")?),
                AccountId::from_stored(row.try_get("account_id")?),
            ));
        }
        for row in fetch(format!(
            "SELECT org_id, app_id, mode FROM org_apps {filter}"
        ))
        .await?
        {
            let mode: String = row.try_get("mode")?;
            rows.apps.push((
                OrgId::from_stored(row.try_get("org_id")?),
                AppId::from_stored(row.try_get("app_id")?),
                AppMode::parse(&mode)
                    .ok_or_else(|| StoreError::Corrupt(format!("app mode {mode}")))?,
            ));
        }
        for row in fetch(format!(
            "SELECT org_id, app_id, account_id FROM org_app_members {filter}"
        ))
        .await?
        {
            rows.app_members.push((
                OrgId::from_stored(row.try_get("org_id")?),
                AppId::from_stored(row.try_get("app_id")?),
                AccountId::from_stored(row.try_get("account_id")?),
            ));
        }
        Ok(rows)
    }
}

impl RelationshipRow {
    /// The key that sorts before every relationship.
    fn default_key() -> RelationshipRow {
        RelationshipRow {
            app_id: String::new(),
            org_id: String::new(),
            resource_type: String::new(),
            resource_id: String::new(),
            relation: String::new(),
            subject_type: String::new(),
            subject_id: String::new(),
            subject_relation: String::new(),
        }
    }
}

#[async_trait]
impl AuthzStoreTx for SqlTx {
    async fn authz_object_org_in_tx(
        &mut self,
        app: &AppId,
        object_type: &str,
        object_id: &str,
    ) -> Result<Option<OrgId>, StoreError> {
        let row = sqlx::query(
            "SELECT org_id FROM authz_objects WHERE app_id = $1 AND object_type = $2 \
             AND object_id = $3",
        )
        .bind(app.as_str())
        .bind(object_type)
        .bind(object_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|row| Ok(OrgId::from_stored(row.try_get("org_id")?)))
            .transpose()
    }

    async fn insert_authz_object(
        &mut self,
        row: &AuthzObjectRow,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO authz_objects (app_id, object_type, object_id, org_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(row.app_id.as_str())
        .bind(row.object_type.as_str())
        .bind(row.object_id.as_str())
        .bind(row.org_id.as_str())
        .bind(now.as_millis())
        .execute(&mut *self.tx)
        .await?;
        let inserted = result.rows_affected() == 1;
        if inserted {
            self.note(AuthzChange::Object(row.clone()));
        }
        Ok(inserted)
    }

    async fn insert_relationship(
        &mut self,
        row: &RelationshipRow,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(sql(format!(
            "INSERT INTO authz_relationships ({RELATIONSHIP_COLUMNS}, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
        )))
        .bind(row.app_id.as_str())
        .bind(row.org_id.as_str())
        .bind(row.resource_type.as_str())
        .bind(row.resource_id.as_str())
        .bind(row.relation.as_str())
        .bind(row.subject_type.as_str())
        .bind(row.subject_id.as_str())
        .bind(row.subject_relation.as_str())
        .bind(now.as_millis())
        .execute(&mut *self.tx)
        .await?;
        let inserted = result.rows_affected() == 1;
        if inserted {
            self.note(AuthzChange::Wrote(row.clone()));
        }
        Ok(inserted)
    }

    async fn delete_relationship(&mut self, row: &RelationshipRow) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "DELETE FROM authz_relationships WHERE app_id = $1 AND resource_type = $2 \
             AND resource_id = $3 AND relation = $4 AND subject_type = $5 AND subject_id = $6 \
             AND subject_relation = $7 AND org_id = $8",
        )
        .bind(row.app_id.as_str())
        .bind(row.resource_type.as_str())
        .bind(row.resource_id.as_str())
        .bind(row.relation.as_str())
        .bind(row.subject_type.as_str())
        .bind(row.subject_id.as_str())
        .bind(row.subject_relation.as_str())
        .bind(row.org_id.as_str())
        .execute(&mut *self.tx)
        .await?;
        let deleted = result.rows_affected() == 1;
        if deleted {
            self.note(AuthzChange::Deleted(row.clone()));
        }
        Ok(deleted)
    }

    async fn delete_authz_object(
        &mut self,
        app: &AppId,
        object_type: &str,
        object_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        let result = sqlx::query(
            "DELETE FROM authz_objects WHERE app_id = $1 AND object_type = $2 AND object_id = $3",
        )
        .bind(app.as_str())
        .bind(object_type)
        .bind(object_id)
        .execute(&mut *self.tx)
        .await?;
        if result.rows_affected() == 0 {
            return Ok(None);
        }
        let mut removed = 0;
        for statement in [
            "DELETE FROM authz_relationships WHERE app_id = $1 AND resource_type = $2 \
             AND resource_id = $3",
            "DELETE FROM authz_relationships WHERE app_id = $1 AND subject_type = $2 \
             AND subject_id = $3 AND subject_relation <> ''",
        ] {
            removed += sqlx::query(statement)
                .bind(app.as_str())
                .bind(object_type)
                .bind(object_id)
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
        }
        self.note(AuthzChange::ObjectDeleted {
            app_id: app.as_str().to_owned(),
            object_type: object_type.to_owned(),
            object_id: object_id.to_owned(),
        });
        Ok(Some(removed))
    }

    async fn upsert_authz_type(&mut self, row: &AuthzTypeRow) -> Result<bool, StoreError> {
        let existed =
            sqlx::query("SELECT 1 AS one FROM authz_types WHERE app_id = $1 AND name = $2")
                .bind(row.app_id.as_str())
                .bind(row.name.as_str())
                .fetch_optional(&mut *self.tx)
                .await?
                .is_some();
        sqlx::query(
            "INSERT INTO authz_types (app_id, name, definition, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id, name) DO UPDATE \
             SET definition = excluded.definition, updated_at = excluded.updated_at",
        )
        .bind(row.app_id.as_str())
        .bind(row.name.as_str())
        .bind(row.definition.as_str())
        .bind(row.created_at.as_millis())
        .bind(row.updated_at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        self.note(AuthzChange::Schema(row.app_id.clone()));
        Ok(existed)
    }

    async fn delete_org_authz(&mut self, org: &OrgId) -> Result<u64, StoreError> {
        let removed = self
            .delete_relationships_where("org_id = $1 AND $2 = ''", org.as_str(), "")
            .await?;
        let objects = sqlx::query(
            "DELETE FROM authz_objects WHERE org_id = $1 RETURNING app_id, object_type, object_id",
        )
        .bind(org.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        for row in &objects {
            self.note(AuthzChange::ObjectDeleted {
                app_id: row.try_get("app_id")?,
                object_type: row.try_get("object_type")?,
                object_id: row.try_get("object_id")?,
            });
        }
        Ok(removed)
    }

    async fn team_org_in_tx(&mut self, team: &TeamId) -> Result<Option<OrgId>, StoreError> {
        let row = sqlx::query("SELECT org_id FROM teams WHERE id = $1")
            .bind(team.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|row| Ok(OrgId::from_stored(row.try_get("org_id")?)))
            .transpose()
    }
}
