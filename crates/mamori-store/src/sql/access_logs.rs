//! [`AccessLogStore`] in portable SQL.
//!
//! Writes take the same in-process writer gate as [`crate::Store::begin`] on SQLite, so a
//! batch of log rows queues behind a request's transaction instead of spinning on
//! `SQLITE_BUSY`.

use super::{SqlStore, row_placeholders, sql, time_at};
use crate::db::Engine;
use crate::{AccessLogFilter, AccessLogRow, AccessLogStore, StoreError};
use async_trait::async_trait;
use mamori_core::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use tokio::sync::OwnedSemaphorePermit;

const ACCESS_LOG_COLUMNS: &str = "id, logged_at, method, path, query, status, latency_us, \
    client_ip, user_agent, principal_type, principal_id, org_id, request_id";
const ACCESS_LOG_COLUMN_COUNT: usize = 13;
/// Rows per `INSERT`: 128 x 13 = 1,664 bound parameters, under either engine's limit (32,766
/// in the bundled SQLite, 3.32 or later; 65,535 in PostgreSQL).
const INSERT_CHUNK_ROWS: usize = 128;

fn access_log_from(row: &AnyRow) -> Result<AccessLogRow, StoreError> {
    let status: i64 = row.try_get("status")?;
    Ok(AccessLogRow {
        id: row.try_get("id")?,
        logged_at: time_at(row, "logged_at")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        query: row.try_get("query")?,
        status: u16::try_from(status)
            .map_err(|_| StoreError::Corrupt(format!("access log status {status}")))?,
        latency_us: row.try_get("latency_us")?,
        client_ip: row.try_get("client_ip")?,
        user_agent: row.try_get("user_agent")?,
        principal_type: row.try_get("principal_type")?,
        principal_id: row.try_get("principal_id")?,
        org_id: row.try_get("org_id")?,
        request_id: row.try_get("request_id")?,
    })
}

/// A value bound to a filter's placeholder.
enum Bound {
    Int(i64),
    Text(String),
}

impl SqlStore {
    /// The writer gate (SQLite only), held until the returned permit is dropped.
    async fn write_permit(&self) -> Result<Option<OwnedSemaphorePermit>, StoreError> {
        match &self.write_gate {
            Some(gate) => {
                Ok(Some(gate.clone().acquire_owned().await.map_err(|_| {
                    StoreError::Corrupt(String::from("write gate closed"))
                })?))
            }
            None => Ok(None),
        }
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.pool.begin().await?,
        })
    }
}

#[async_trait]
impl AccessLogStore for SqlStore {
    async fn insert_access_logs(&self, rows: &[AccessLogRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let _permit = self.write_permit().await?;
        let mut tx = self.begin_write().await?;
        for chunk in rows.chunks(INSERT_CHUNK_ROWS) {
            let values = row_placeholders(self.engine, chunk.len(), ACCESS_LOG_COLUMN_COUNT);
            let statement =
                format!("INSERT INTO access_logs ({ACCESS_LOG_COLUMNS}) VALUES {values}");
            let mut query = sqlx::query(sql(statement));
            for row in chunk {
                query = query
                    .bind(row.id.as_str())
                    .bind(row.logged_at.as_millis())
                    .bind(row.method.as_str())
                    .bind(row.path.as_str())
                    .bind(row.query.as_deref())
                    .bind(i64::from(row.status))
                    .bind(row.latency_us)
                    .bind(row.client_ip.as_deref())
                    .bind(row.user_agent.as_deref())
                    .bind(row.principal_type.as_deref())
                    .bind(row.principal_id.as_deref())
                    .bind(row.org_id.as_deref())
                    .bind(row.request_id.as_deref());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn access_logs(
        &self,
        filter: &AccessLogFilter,
        after: Option<(Timestamp, &str)>,
        limit: u32,
    ) -> Result<Vec<AccessLogRow>, StoreError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut bound: Vec<Bound> = Vec::new();
        let mut condition = |text: &str, values: Vec<Bound>| {
            // Each `?` in `text` becomes the next numbered placeholder.
            let mut numbered = String::new();
            for piece in text.split('?').enumerate() {
                let (index, piece) = piece;
                if index > 0 {
                    numbered.push_str(&format!("${}", bound.len() + index));
                }
                numbered.push_str(piece);
            }
            bound.extend(values);
            conditions.push(numbered);
        };
        if let Some(from) = filter.from {
            condition("logged_at >= ?", vec![Bound::Int(from.as_millis())]);
        }
        if let Some(to) = filter.to {
            condition("logged_at < ?", vec![Bound::Int(to.as_millis())]);
        }
        if let Some(method) = &filter.method {
            condition("method = ?", vec![Bound::Text(method.clone())]);
        }
        if let Some(status) = filter.status {
            condition("status = ?", vec![Bound::Int(i64::from(status))]);
        }
        if let Some(prefix) = &filter.path_prefix {
            // Not LIKE: SQLite's LIKE ignores case and both treat `%` and `_` as wildcards.
            // Paths are ASCII (percent-encoded), so characters and bytes count alike.
            let length = i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX);
            condition(
                "substr(path, 1, CAST(? AS INTEGER)) = ?",
                vec![Bound::Int(length), Bound::Text(prefix.clone())],
            );
        }
        if let Some(principal) = &filter.principal_id {
            condition("principal_id = ?", vec![Bound::Text(principal.clone())]);
        }
        if let Some(org) = &filter.org_id {
            condition("org_id = ?", vec![Bound::Text(org.clone())]);
        }
        if let Some((time, id)) = after {
            condition(
                "(logged_at, id) < (?, ?)",
                vec![Bound::Int(time.as_millis()), Bound::Text(id.to_owned())],
            );
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let limit_placeholder = bound.len() + 1;
        let statement = format!(
            "SELECT {ACCESS_LOG_COLUMNS} FROM access_logs {where_clause} \
             ORDER BY logged_at DESC, id DESC LIMIT ${limit_placeholder}"
        );
        let mut query = sqlx::query(sql(statement));
        for value in bound {
            query = match value {
                Bound::Int(number) => query.bind(number),
                Bound::Text(text) => query.bind(text),
            };
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(access_log_from).collect()
    }

    async fn delete_access_logs_before(
        &self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let _permit = self.write_permit().await?;
        // The oldest first, through the (logged_at, id) index; both engines accept a
        // subquery with LIMIT under IN, unlike DELETE ... LIMIT.
        let result = sqlx::query(
            "DELETE FROM access_logs WHERE id IN (SELECT id FROM access_logs \
             WHERE logged_at < $1 ORDER BY logged_at, id LIMIT $2)",
        )
        .bind(cutoff.as_millis())
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}
