//! Organization lifecycle rows and contract events, in portable SQL.

use super::{SqlStore, SqlTx, expect_one, optional_time_at, sql, time_at};
use crate::StoreError;
use crate::lifecycle::{ContractEventRow, LifecycleStore, LifecycleStoreTx, OrgLifecycleRow};
use async_trait::async_trait;
use mamori_core::{OrgId, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMNS: &str = "org_id, state, plan, trial_started_at, trial_ends_at, period_ends_at, \
    suspended_at, deletion_due_at, deletion_reason, deleted_at, purge_starts_at, purge_due_by, \
    audit_purge_starts_at, purge_started_at, purged_at, notice_sent_for, continue_asked_at, \
    last_confirmed_at, version, updated_at, audit_purged_at";

const EVENT_COLUMNS: &str = "id, org_id, event, at, period_end, recorded_at, recorded_by";

fn lifecycle_from(row: &AnyRow) -> Result<OrgLifecycleRow, StoreError> {
    Ok(OrgLifecycleRow {
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        state: row.try_get("state")?,
        plan: row.try_get("plan")?,
        trial_started_at: optional_time_at(row, "trial_started_at")?,
        trial_ends_at: optional_time_at(row, "trial_ends_at")?,
        period_ends_at: optional_time_at(row, "period_ends_at")?,
        suspended_at: optional_time_at(row, "suspended_at")?,
        deletion_due_at: optional_time_at(row, "deletion_due_at")?,
        deletion_reason: row.try_get("deletion_reason")?,
        deleted_at: optional_time_at(row, "deleted_at")?,
        purge_starts_at: optional_time_at(row, "purge_starts_at")?,
        purge_due_by: optional_time_at(row, "purge_due_by")?,
        audit_purge_starts_at: optional_time_at(row, "audit_purge_starts_at")?,
        purge_started_at: optional_time_at(row, "purge_started_at")?,
        purged_at: optional_time_at(row, "purged_at")?,
        notice_sent_for: row.try_get("notice_sent_for")?,
        continue_asked_at: optional_time_at(row, "continue_asked_at")?,
        last_confirmed_at: optional_time_at(row, "last_confirmed_at")?,
        version: row.try_get("version")?,
        updated_at: time_at(row, "updated_at")?,
        audit_purged_at: optional_time_at(row, "audit_purged_at")?,
    })
}

fn event_from(row: &AnyRow) -> Result<ContractEventRow, StoreError> {
    Ok(ContractEventRow {
        id: row.try_get("id")?,
        org_id: OrgId::from_stored(row.try_get("org_id")?),
        event: row.try_get("event")?,
        at: time_at(row, "at")?,
        period_end: optional_time_at(row, "period_end")?,
        recorded_at: time_at(row, "recorded_at")?,
        recorded_by: row.try_get("recorded_by")?,
    })
}

fn millis(at: Option<Timestamp>) -> Option<i64> {
    at.map(Timestamp::as_millis)
}

#[async_trait]
impl LifecycleStore for SqlStore {
    async fn org_lifecycle(&self, org: &OrgId) -> Result<Option<OrgLifecycleRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {COLUMNS} FROM org_lifecycle WHERE org_id = $1"
        )))
        .bind(org.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(lifecycle_from).transpose()
    }

    async fn org_lifecycles(
        &self,
        after: Option<&OrgId>,
        limit: u32,
        include_purged: bool,
    ) -> Result<Vec<OrgLifecycleRow>, StoreError> {
        let purged = if include_purged {
            ""
        } else {
            "AND state <> 'purged'"
        };
        let rows = sqlx::query(sql(format!(
            "SELECT {COLUMNS} FROM org_lifecycle WHERE org_id > $1 {purged} \
             ORDER BY org_id LIMIT $2"
        )))
        .bind(after.map_or("", OrgId::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lifecycle_from).collect()
    }

    async fn contract_events(&self, org: &OrgId) -> Result<Vec<ContractEventRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {EVENT_COLUMNS} FROM org_contract_events WHERE org_id = $1 \
             ORDER BY recorded_at, id"
        )))
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from).collect()
    }
}

#[async_trait]
impl LifecycleStoreTx for SqlTx {
    async fn org_lifecycle_in_tx(
        &mut self,
        org: &OrgId,
    ) -> Result<Option<OrgLifecycleRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {COLUMNS} FROM org_lifecycle WHERE org_id = $1"
        )))
        .bind(org.as_str())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(lifecycle_from).transpose()
    }

    async fn save_org_lifecycle(
        &mut self,
        row: &OrgLifecycleRow,
        expected: Option<i64>,
    ) -> Result<bool, StoreError> {
        let statement = match expected {
            None => format!(
                "INSERT INTO org_lifecycle ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
                 ON CONFLICT (org_id) DO NOTHING"
            ),
            Some(_) => String::from(
                "UPDATE org_lifecycle SET state = $2, plan = $3, trial_started_at = $4, \
                 trial_ends_at = $5, period_ends_at = $6, suspended_at = $7, \
                 deletion_due_at = $8, deletion_reason = $9, deleted_at = $10, \
                 purge_starts_at = $11, purge_due_by = $12, audit_purge_starts_at = $13, \
                 purge_started_at = $14, purged_at = $15, notice_sent_for = $16, \
                 continue_asked_at = $17, last_confirmed_at = $18, version = $19, \
                 updated_at = $20, audit_purged_at = $21 WHERE org_id = $1 AND version = $22",
            ),
        };
        let result = sqlx::query(sql(statement))
            .bind(row.org_id.as_str())
            .bind(row.state.as_str())
            .bind(row.plan.as_str())
            .bind(millis(row.trial_started_at))
            .bind(millis(row.trial_ends_at))
            .bind(millis(row.period_ends_at))
            .bind(millis(row.suspended_at))
            .bind(millis(row.deletion_due_at))
            .bind(row.deletion_reason.as_deref())
            .bind(millis(row.deleted_at))
            .bind(millis(row.purge_starts_at))
            .bind(millis(row.purge_due_by))
            .bind(millis(row.audit_purge_starts_at))
            .bind(millis(row.purge_started_at))
            .bind(millis(row.purged_at))
            .bind(row.notice_sent_for.as_deref())
            .bind(millis(row.continue_asked_at))
            .bind(millis(row.last_confirmed_at))
            .bind(row.version)
            .bind(row.updated_at.as_millis())
            .bind(millis(row.audit_purged_at));
        let result = match expected {
            Some(version) => result.bind(version),
            None => result,
        }
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn insert_contract_event(&mut self, event: &ContractEventRow) -> Result<(), StoreError> {
        sqlx::query(sql(format!(
            "INSERT INTO org_contract_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(event.id.as_str())
        .bind(event.org_id.as_str())
        .bind(event.event.as_str())
        .bind(event.at.as_millis())
        .bind(millis(event.period_end))
        .bind(event.recorded_at.as_millis())
        .bind(event.recorded_by.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn set_org_status(
        &mut self,
        org: &OrgId,
        status: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let result =
            sqlx::query("UPDATE organizations SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status)
                .bind(now.as_millis())
                .bind(org.as_str())
                .execute(&mut *self.tx)
                .await?;
        expect_one(result.rows_affected())?;
        self.note_directory(org);
        Ok(())
    }
}
