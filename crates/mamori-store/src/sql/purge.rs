//! [`PurgeStore`] and [`PurgeStoreTx`] in portable SQL.

use super::authz::{RELATIONSHIP_COLUMNS, relationship_from};
use super::{SqlStore, SqlTx, optional_time_at, sql, time_at};
use crate::StoreError;
use crate::authz::AuthzChange;
use crate::purge::*;
use async_trait::async_trait;
use mamori_core::{AccountId, AppId, OrgId, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

const PURGE_COLUMNS: &str =
    "org_id, requested_at, due_by, contact_account_id, lease_owner, lease_until, finished_at";
const WEBHOOK_COLUMNS: &str = "w.org_id, w.app_id, p.due_by, w.created_at, w.attempts, \
    w.next_attempt_at, w.delivered_at, w.gave_up_at, w.confirmed_at";

fn purge_from(row: &AnyRow) -> Result<OrgPurgeRow, StoreError> {
    Ok(OrgPurgeRow {
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        requested_at: time_at(row, "requested_at")?,
        due_by: time_at(row, "due_by")?,
        contact_account_id: row
            .try_get::<Option<String>, _>("contact_account_id")?
            .map(AccountId::from_stored),
        lease_owner: row.try_get("lease_owner")?,
        lease_until: optional_time_at(row, "lease_until")?,
        finished_at: optional_time_at(row, "finished_at")?,
    })
}

fn webhook_from(row: &AnyRow) -> Result<PurgeWebhookRow, StoreError> {
    Ok(PurgeWebhookRow {
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        app_id: AppId::from_stored(row.try_get("app_id")?),
        due_by: time_at(row, "due_by")?,
        created_at: time_at(row, "created_at")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: time_at(row, "next_attempt_at")?,
        delivered_at: optional_time_at(row, "delivered_at")?,
        gave_up_at: optional_time_at(row, "gave_up_at")?,
        confirmed_at: optional_time_at(row, "confirmed_at")?,
    })
}

#[async_trait]
impl PurgeStore for SqlStore {
    async fn org_purge(&self, org: &OrgId) -> Result<Option<OrgPurgeRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {PURGE_COLUMNS} FROM org_purges WHERE org_id = $1"
        )))
        .bind(org.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(purge_from).transpose()
    }

    async fn open_org_purges(&self, limit: u32) -> Result<Vec<OrgPurgeRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {PURGE_COLUMNS} FROM org_purges WHERE finished_at IS NULL \
             ORDER BY requested_at, org_id LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(purge_from).collect()
    }

    async fn claim_org_purge(
        &self,
        org: &OrgId,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE org_purges SET lease_owner = $1, lease_until = $2 WHERE org_id = $3 \
             AND finished_at IS NULL \
             AND (lease_until IS NULL OR lease_until <= $4 OR lease_owner = $1)",
        )
        .bind(owner)
        .bind(lease_until.as_millis())
        .bind(org.as_str())
        .bind(now.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn release_org_purge(&self, org: &OrgId, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE org_purges SET lease_owner = NULL, lease_until = NULL \
             WHERE org_id = $1 AND lease_owner = $2",
        )
        .bind(org.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn purge_steps(&self, org: &OrgId) -> Result<Vec<PurgeStepRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, done_at, row_count FROM purge_steps WHERE org_id = $1 \
             ORDER BY done_at IS NULL, done_at, step",
        )
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PurgeStepRow {
                    step: row.try_get("step")?,
                    done_at: optional_time_at(row, "done_at")?,
                    row_count: row.try_get("row_count")?,
                })
            })
            .collect()
    }

    async fn purge_webhooks(&self, org: &OrgId) -> Result<Vec<PurgeWebhookRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM purge_webhooks w \
             JOIN org_purges p ON p.org_id = w.org_id WHERE w.org_id = $1 ORDER BY w.app_id"
        )))
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook_from).collect()
    }

    async fn due_purge_webhooks(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<PurgeWebhookRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM purge_webhooks w \
             JOIN org_purges p ON p.org_id = w.org_id \
             WHERE w.delivered_at IS NULL AND w.gave_up_at IS NULL AND w.next_attempt_at <= $1 \
             AND (w.lease_until IS NULL OR w.lease_until <= $1) \
             ORDER BY w.next_attempt_at, w.org_id, w.app_id LIMIT $2"
        )))
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook_from).collect()
    }

    async fn claim_purge_webhook(
        &self,
        org: &OrgId,
        app: &AppId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE purge_webhooks SET lease_until = $1 WHERE org_id = $2 AND app_id = $3 \
             AND delivered_at IS NULL AND gave_up_at IS NULL \
             AND (lease_until IS NULL OR lease_until <= $4)",
        )
        .bind(lease_until.as_millis())
        .bind(org.as_str())
        .bind(app.as_str())
        .bind(now.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn app_webhook_url(&self, app: &AppId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT webhook_url FROM apps WHERE id = $1")
            .bind(app.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get("webhook_url")?,
            None => None,
        })
    }
}

impl SqlTx {
    async fn delete_of_org(&mut self, statement: &str, org: &OrgId) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql(statement.to_owned()))
            .bind(org.as_str())
            .execute(&mut *self.tx)
            .await?
            .rows_affected())
    }
}

#[async_trait]
impl PurgeStoreTx for SqlTx {
    async fn begin_org_purge(
        &mut self,
        org: &OrgId,
        requested_at: Timestamp,
        due_by: Timestamp,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO org_purges (org_id, requested_at, due_by, contact_account_id) \
             VALUES ($1, $2, $3, (SELECT account_id FROM memberships \
                 WHERE org_id = $1 AND role = 'admin' ORDER BY created_at, account_id LIMIT 1)) \
             ON CONFLICT (org_id) DO NOTHING",
        )
        .bind(org.as_str())
        .bind(requested_at.as_millis())
        .bind(due_by.as_millis())
        .execute(&mut *self.tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO purge_webhooks (org_id, app_id, created_at, attempts, next_attempt_at) \
             SELECT org_id, app_id, $2, 0, $2 FROM org_apps WHERE org_id = $1 \
             ON CONFLICT (org_id, app_id) DO NOTHING",
        )
        .bind(org.as_str())
        .bind(requested_at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("UPDATE organizations SET status = 'purging', updated_at = $2 WHERE id = $1")
            .bind(org.as_str())
            .bind(requested_at.as_millis())
            .execute(&mut *self.tx)
            .await?;
        // Checks in the organization stop at this commit, on every node.
        self.note_directory(org);
        Ok(true)
    }

    async fn renew_org_purge_lease(
        &mut self,
        org: &OrgId,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE org_purges SET lease_until = $1 WHERE org_id = $2 AND lease_owner = $3 \
             AND finished_at IS NULL",
        )
        .bind(lease_until.as_millis())
        .bind(org.as_str())
        .bind(owner)
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn record_purge_step(
        &mut self,
        org: &OrgId,
        step: &str,
        rows: u64,
        done_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO purge_steps (org_id, step, done_at, row_count) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org_id, step) DO UPDATE SET \
             row_count = purge_steps.row_count + excluded.row_count, \
             done_at = COALESCE(purge_steps.done_at, excluded.done_at)",
        )
        .bind(org.as_str())
        .bind(step)
        .bind(done_at.map(Timestamp::as_millis))
        .bind(i64::try_from(rows).unwrap_or(i64::MAX))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn purge_org_memberships(&mut self, org: &OrgId) -> Result<u64, StoreError> {
        for statement in [
            "DELETE FROM team_members WHERE org_id = $1",
            "DELETE FROM org_app_members WHERE org_id = $1",
            "DELETE FROM audit_viewers WHERE org_id = $1",
        ] {
            self.delete_of_org(statement, org).await?;
        }
        let removed = self
            .delete_of_org("DELETE FROM memberships WHERE org_id = $1", org)
            .await?;
        self.note_directory(org);
        Ok(removed)
    }

    async fn purge_org_teams(&mut self, org: &OrgId) -> Result<u64, StoreError> {
        self.delete_of_org("DELETE FROM team_members WHERE org_id = $1", org)
            .await?;
        let removed = self
            .delete_of_org("DELETE FROM teams WHERE org_id = $1", org)
            .await?;
        self.note_directory(org);
        Ok(removed)
    }

    async fn purge_org_invitations(&mut self, org: &OrgId) -> Result<u64, StoreError> {
        self.delete_of_org("DELETE FROM invitations WHERE org_id = $1", org)
            .await
    }

    async fn purge_org_apps(&mut self, org: &OrgId) -> Result<u64, StoreError> {
        self.delete_of_org("DELETE FROM org_app_members WHERE org_id = $1", org)
            .await?;
        let removed = self
            .delete_of_org("DELETE FROM org_apps WHERE org_id = $1", org)
            .await?;
        self.note_directory(org);
        Ok(removed)
    }

    async fn purge_org_authz_batch(&mut self, org: &OrgId, limit: u32) -> Result<u64, StoreError> {
        let rows = sqlx::query(sql(format!(
            "DELETE FROM authz_relationships WHERE ({RELATIONSHIP_COLUMNS}) IN \
             (SELECT {RELATIONSHIP_COLUMNS} FROM authz_relationships WHERE org_id = $1 LIMIT $2) \
             RETURNING {RELATIONSHIP_COLUMNS}"
        )))
        .bind(org.as_str())
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        if !rows.is_empty() {
            for row in &rows {
                let row = relationship_from(row)?;
                self.note(AuthzChange::Deleted(row));
            }
            return Ok(rows.len() as u64);
        }
        let objects = sqlx::query(
            "DELETE FROM authz_objects WHERE (app_id, object_type, object_id) IN \
             (SELECT app_id, object_type, object_id FROM authz_objects WHERE org_id = $1 LIMIT $2) \
             RETURNING app_id, object_type, object_id",
        )
        .bind(org.as_str())
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        for row in &objects {
            self.note(AuthzChange::ObjectDeleted {
                app_id: row.try_get("app_id")?,
                object_type: row.try_get("object_type")?,
                object_id: row.try_get("object_id")?,
            });
        }
        Ok(objects.len() as u64)
    }

    async fn purge_org_mail(&mut self, org: &OrgId) -> Result<u64, StoreError> {
        self.delete_of_org("DELETE FROM outbox WHERE key_owner = $1", org)
            .await
    }

    async fn purge_org_content(&mut self, org: &OrgId) -> Result<u64, StoreError> {
        self.delete_of_org(
            "UPDATE organizations SET name_sealed = '' WHERE id = $1 AND name_sealed <> ''",
            org,
        )
        .await
    }

    async fn finish_org_purge(&mut self, org: &OrgId, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE organizations SET status = 'purged', updated_at = $2 WHERE id = $1")
            .bind(org.as_str())
            .bind(now.as_millis())
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "UPDATE org_purges SET finished_at = $2, lease_owner = NULL, lease_until = NULL \
             WHERE org_id = $1 AND finished_at IS NULL",
        )
        .bind(org.as_str())
        .bind(now.as_millis())
        .execute(&mut *self.tx)
        .await?;
        self.note_directory(org);
        Ok(())
    }

    async fn record_webhook_attempt(
        &mut self,
        attempt: &WebhookAttempt<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO purge_webhook_attempts (org_id, app_id, attempt, attempted_at, outcome) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, app_id, attempt) DO NOTHING",
        )
        .bind(attempt.org_id.as_str())
        .bind(attempt.app_id.as_str())
        .bind(attempt.attempt)
        .bind(attempt.at.as_millis())
        .bind(attempt.outcome)
        .execute(&mut *self.tx)
        .await?;
        let (delivered_at, gave_up_at, next) = match (attempt.delivered, attempt.next_attempt_at) {
            (true, _) => (Some(attempt.at.as_millis()), None, attempt.at.as_millis()),
            (false, Some(next)) => (None, None, next.as_millis()),
            (false, None) => (None, Some(attempt.at.as_millis()), attempt.at.as_millis()),
        };
        sqlx::query(
            "UPDATE purge_webhooks SET attempts = $3, delivered_at = $4, gave_up_at = $5, \
             next_attempt_at = $6, lease_until = NULL WHERE org_id = $1 AND app_id = $2",
        )
        .bind(attempt.org_id.as_str())
        .bind(attempt.app_id.as_str())
        .bind(attempt.attempt)
        .bind(delivered_at)
        .bind(gave_up_at)
        .bind(next)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn confirm_purge(
        &mut self,
        org: &OrgId,
        app: &AppId,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        sqlx::query(
            "UPDATE purge_webhooks SET confirmed_at = $3 \
             WHERE org_id = $1 AND app_id = $2 AND confirmed_at IS NULL",
        )
        .bind(org.as_str())
        .bind(app.as_str())
        .bind(now.as_millis())
        .execute(&mut *self.tx)
        .await?;
        let row = sqlx::query(
            "SELECT confirmed_at FROM purge_webhooks WHERE org_id = $1 AND app_id = $2",
        )
        .bind(org.as_str())
        .bind(app.as_str())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|row| time_at(&row, "confirmed_at")).transpose()
    }

    async fn set_app_webhook_url(
        &mut self,
        app: &AppId,
        url: Option<&str>,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE apps SET webhook_url = $1 WHERE id = $2")
            .bind(url)
            .bind(app.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(result.rows_affected() == 1)
    }
}
