//! The one implementation of [`Store`], in portable SQL over sqlx's `Any` driver.
//!
//! Engine differences are kept to how a write transaction begins: SQLite takes the write lock
//! up front (`BEGIN IMMEDIATE`) behind an in-process gate, so writers queue instead of failing
//! with `SQLITE_BUSY`; PostgreSQL uses ordinary transactions and row locks.

mod access_logs;
pub(crate) mod audit;
mod authz;
mod credentials;
mod lifecycle;
mod local_accounts;
mod orgs;
mod purge;
mod recovery;

use crate::cache::{CredentialCache, Evictions};
use crate::db::{DatabaseRole, Engine, connect, data_migrator};
use crate::error::StoreError;
use crate::records::*;
use crate::{Store, StoreTx};
use async_trait::async_trait;
use mamori_core::{AccountId, AppId, MailId, OperatorTokenId, SessionId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct SqlStore {
    pub(crate) pool: AnyPool,
    engine: Engine,
    /// The URL it was opened with, for the engine's own driver (see `scan_pool`).
    url: String,
    /// On PostgreSQL, a small pool on sqlx's own PostgreSQL driver, opened on first use, for
    /// the one read that is bound by row decoding: scanning a whole audit chain to verify it.
    pub(crate) scan_pool: tokio::sync::OnceCell<sqlx::PgPool>,
    /// One writer at a time on SQLite; unlimited on PostgreSQL.
    write_gate: Option<Arc<Semaphore>>,
    /// The highest access-control revision this process committed.
    local_revision: Arc<AtomicI64>,
    /// Sessions, tokens and accounts for authentication (see `crate::cache`).
    cache: Arc<CredentialCache>,
}

impl SqlStore {
    /// Opens the data store at `url` and brings its schema up to date.
    pub async fn open(url: &str, max_connections: u32) -> Result<SqlStore, StoreError> {
        let store = SqlStore::open_without_migrating(url, max_connections).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn open_without_migrating(
        url: &str,
        max_connections: u32,
    ) -> Result<SqlStore, StoreError> {
        let (pool, engine) = connect(url, DatabaseRole::Data, max_connections).await?;
        let write_gate = (engine == Engine::Sqlite).then(|| Arc::new(Semaphore::new(1)));
        Ok(SqlStore {
            pool,
            engine,
            url: url.to_owned(),
            scan_pool: tokio::sync::OnceCell::new(),
            write_gate,
            local_revision: Arc::new(AtomicI64::new(0)),
            cache: Arc::new(CredentialCache::default()),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        data_migrator().run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        if let Some(scan_pool) = self.scan_pool.get() {
            scan_pool.close().await;
        }
        self.pool.close().await;
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

pub(crate) const ACCOUNT_COLUMNS: &str = "id, status, email_index, email_sealed, display_name_sealed, \
    password_hash, email_verified, created_at, updated_at, deleted_at";
const SESSION_COLUMNS: &str =
    "id, token_hash, account_id, created_at, last_seen_at, ip, user_agent";
const MAIL_COLUMNS: &str = "id, key_owner, kind, message_sealed, status, attempts, created_at, \
    next_attempt_at, sent_at, last_error";

pub(crate) fn time_at(row: &AnyRow, column: &str) -> Result<Timestamp, StoreError> {
    Ok(Timestamp::from_millis(row.try_get::<i64, _>(column)?))
}

pub(crate) fn optional_time_at(
    row: &AnyRow,
    column: &str,
) -> Result<Option<Timestamp>, StoreError> {
    Ok(row
        .try_get::<Option<i64>, _>(column)?
        .map(Timestamp::from_millis))
}

pub(crate) fn account_from(row: &AnyRow) -> Result<AccountRow, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(AccountRow {
        id: AccountId::from_stored(row.try_get("id")?),
        status: AccountStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("account status {status}")))?,
        email_index: row.try_get("email_index")?,
        email_sealed: row.try_get("email_sealed")?,
        display_name_sealed: row.try_get("display_name_sealed")?,
        password_hash: row.try_get("password_hash")?,
        email_verified: row.try_get::<i64, _>("email_verified")? != 0,
        created_at: time_at(row, "created_at")?,
        updated_at: time_at(row, "updated_at")?,
        deleted_at: optional_time_at(row, "deleted_at")?,
    })
}

fn session_from(row: &AnyRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: SessionId::from_stored(row.try_get("id")?),
        token_hash: row.try_get("token_hash")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        created_at: time_at(row, "created_at")?,
        last_seen_at: time_at(row, "last_seen_at")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
    })
}

pub(crate) fn app_from(row: &AnyRow) -> Result<AppRow, StoreError> {
    Ok(AppRow {
        id: AppId::from_stored(row.try_get("id")?),
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        created_at: time_at(row, "created_at")?,
    })
}

fn mail_from(row: &AnyRow) -> Result<MailRow, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(MailRow {
        id: MailId::from_stored(row.try_get("id")?),
        key_owner: row.try_get("key_owner")?,
        kind: row.try_get("kind")?,
        message_sealed: row.try_get("message_sealed")?,
        status: MailStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("mail status {status}")))?,
        attempts: row.try_get("attempts")?,
        created_at: time_at(row, "created_at")?,
        next_attempt_at: time_at(row, "next_attempt_at")?,
        sent_at: optional_time_at(row, "sent_at")?,
        last_error: row.try_get("last_error")?,
    })
}

/// The `VALUES` of a multi-row `INSERT`: `rows` groups of `columns` parameters, bound in
/// order. SQLite gets anonymous `?` parameters: binding a numbered one makes SQLite look its
/// name up in the statement's parameter list, so a statement's binding cost grows with the
/// square of its parameters (at 256 rows of 13, 39% of a busy server's CPU went there).
/// PostgreSQL gets `$1`, `$2`, ...
pub(crate) fn row_placeholders(engine: Engine, rows: usize, columns: usize) -> String {
    let mut text = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        text.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                text.push_str(", ");
            }
            match engine {
                Engine::Sqlite => text.push('?'),
                Engine::Postgres => {
                    text.push('$');
                    text.push_str(&(row * columns + column + 1).to_string());
                }
            }
        }
        text.push(')');
    }
    text
}

pub(crate) fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

#[async_trait]
impl Store for SqlStore {
    fn engine(&self) -> Engine {
        self.engine
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError> {
        let permit = match &self.write_gate {
            Some(gate) => Some(
                gate.clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::Corrupt(String::from("write gate closed")))?,
            ),
            None => None,
        };
        let tx = match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.pool.begin().await?,
        };
        Ok(Box::new(SqlTx {
            tx,
            _permit: permit,
            authz: Vec::new(),
            local_revision: self.local_revision.clone(),
            evictions: Evictions::default(),
            cache: self.cache.clone(),
            engine: self.engine,
        }))
    }

    async fn account(&self, id: &AccountId) -> Result<Option<AccountRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_from).transpose()
    }

    async fn account_by_email_index(
        &self,
        email_index: &str,
    ) -> Result<Option<AccountRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email_index = $1"
        )))
        .bind(email_index)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_from).transpose()
    }

    async fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1"
        )))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from).transpose()
    }

    async fn cached_session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<SessionRow>, StoreError> {
        self.cache
            .read_through(
                self.cache.session(token_hash),
                self.session_by_token_hash(token_hash),
                CredentialCache::fill_session,
            )
            .await
    }

    async fn cached_account(&self, id: &AccountId) -> Result<Option<AccountRow>, StoreError> {
        self.cache
            .read_through(
                self.cache.account(id),
                self.account(id),
                CredentialCache::fill_account,
            )
            .await
    }

    async fn cached_operator_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<OperatorTokenRow>, StoreError> {
        self.cache
            .read_through(
                self.cache.operator_token(token_hash),
                self.operator_token_by_hash(token_hash),
                CredentialCache::fill_operator_token,
            )
            .await
    }

    async fn cached_app_by_secret_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<AppRow>, StoreError> {
        self.cache
            .read_through(
                self.cache.app(secret_hash),
                self.app_by_secret_hash(secret_hash),
                CredentialCache::fill_app,
            )
            .await
    }

    async fn sync_credential_cache(&self) -> Result<(), StoreError> {
        let epoch = sqlx::query("SELECT epoch FROM credential_epoch WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get::<i64, _>("epoch"));
        match epoch {
            Ok(epoch) => {
                self.cache.synced(epoch);
                Ok(())
            }
            Err(error) => {
                self.cache.sync_failed();
                Err(error.into())
            }
        }
    }

    async fn touch_session(&self, id: &SessionId, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
            .bind(now.as_millis())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        self.cache.touch_session(id.as_str(), now);
        Ok(())
    }

    async fn sessions_of(
        &self,
        account: &AccountId,
        created_after: Timestamp,
        seen_after: Timestamp,
        after: Option<(Timestamp, &SessionId)>,
        limit: u32,
    ) -> Result<Vec<SessionRow>, StoreError> {
        // Keyset pagination on (created_at, id), so pages stay stable while sessions come and
        // go. Without a position, (-1, '') sorts before every session.
        let (after_time, after_id) = match after {
            Some((time, id)) => (time.as_millis(), id.as_str()),
            None => (-1, ""),
        };
        let rows = sqlx::query(sql(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE account_id = $1 AND created_at > $2 \
             AND last_seen_at > $3 AND (created_at, id) > ($4, $5) ORDER BY created_at, id LIMIT $6"
        )))
        .bind(account.as_str())
        .bind(created_after.as_millis())
        .bind(seen_after.as_millis())
        .bind(after_time)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_from).collect()
    }

    async fn delete_expired_sessions(
        &self,
        created_before: Timestamp,
        seen_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let result =
            sqlx::query("DELETE FROM sessions WHERE created_at <= $1 OR last_seen_at <= $2")
                .bind(created_before.as_millis())
                .bind(seen_before.as_millis())
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected())
    }

    async fn operator_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<OperatorTokenRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, token_hash, created_at, revoked_at FROM operator_tokens \
             WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(OperatorTokenRow {
                id: OperatorTokenId::from_stored(row.try_get("id")?),
                name: row.try_get("name")?,
                token_hash: row.try_get("token_hash")?,
                created_at: time_at(&row, "created_at")?,
                revoked_at: optional_time_at(&row, "revoked_at")?,
            })
        })
        .transpose()
    }

    async fn app_by_secret_hash(&self, secret_hash: &str) -> Result<Option<AppRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, secret_hash, created_at FROM apps WHERE secret_hash = $1",
        )
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app_from).transpose()
    }

    async fn pending_key_destructions(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT owner FROM key_destructions ORDER BY requested_at LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| row.try_get::<String, _>("owner").map_err(StoreError::from))
            .collect()
    }

    async fn complete_key_destruction(&self, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM key_destructions WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn due_mail(&self, now: Timestamp, limit: u32) -> Result<Vec<MailRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {MAIL_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at, id LIMIT $2"
        )))
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(mail_from).collect()
    }

    async fn claim_mail(
        &self,
        id: &MailId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE outbox SET lease_until = $1 WHERE id = $2 AND status = 'pending' \
             AND (lease_until IS NULL OR lease_until <= $3)",
        )
        .bind(lease_until.as_millis())
        .bind(id.as_str())
        .bind(now.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn mark_mail_sent(&self, id: &MailId, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1, \
             lease_until = NULL, last_error = NULL WHERE id = $2",
        )
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_mail_retry(
        &self,
        id: &MailId,
        attempts: i64,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, \
             lease_until = NULL WHERE id = $4",
        )
        .bind(attempts)
        .bind(next_attempt_at.as_millis())
        .bind(error)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_mail_failed(
        &self,
        id: &MailId,
        attempts: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'failed', attempts = $1, last_error = $2, lease_until = NULL \
             WHERE id = $3",
        )
        .bind(attempts)
        .bind(error)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_finished_mail(&self, before: Timestamp) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "DELETE FROM outbox WHERE status IN ('sent', 'failed') AND created_at < $1",
        )
        .bind(before.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn mail(&self, limit: u32) -> Result<Vec<MailRow>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {MAIL_COLUMNS} FROM outbox ORDER BY created_at DESC, id DESC LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(mail_from).collect()
    }
}

pub(crate) struct SqlTx {
    pub(crate) tx: Transaction<'static, Any>,
    _permit: Option<OwnedSemaphorePermit>,
    /// Changes for the access-control change log, written at commit (see `crate::authz`).
    authz: Vec<crate::authz::AuthzChange>,
    local_revision: Arc<AtomicI64>,
    /// What the credential cache must forget at commit: every method that changes an
    /// account, or deletes a session or token, notes it (see `crate::cache`).
    pub(crate) evictions: Evictions,
    pub(crate) cache: Arc<CredentialCache>,
    pub(crate) engine: Engine,
}

#[async_trait]
impl StoreTx for SqlTx {
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.commit_changes().await?;
        Ok(())
    }

    async fn commit_with_revision(self: Box<Self>) -> Result<Option<i64>, StoreError> {
        self.commit_changes().await
    }

    async fn insert_account(&mut self, account: &AccountRow) -> Result<(), StoreError> {
        sqlx::query(sql(format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(account.id.as_str())
        .bind(account.status.as_str())
        .bind(account.email_index.as_deref())
        .bind(account.email_sealed.as_deref())
        .bind(account.display_name_sealed.as_deref())
        .bind(account.password_hash.as_deref())
        .bind(i64::from(account.email_verified))
        .bind(account.created_at.as_millis())
        .bind(account.updated_at.as_millis())
        .bind(account.deleted_at.map(Timestamp::as_millis))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn update_display_name(
        &mut self,
        id: &AccountId,
        display_name_sealed: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.evictions.account(id);
        let result = sqlx::query(
            "UPDATE accounts SET display_name_sealed = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'active'",
        )
        .bind(display_name_sealed)
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(&mut *self.tx)
        .await?;
        expect_one(result.rows_affected())
    }

    async fn update_password_hash(
        &mut self,
        id: &AccountId,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.evictions.account(id);
        let result = sqlx::query(
            "UPDATE accounts SET password_hash = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'active'",
        )
        .bind(password_hash)
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(&mut *self.tx)
        .await?;
        expect_one(result.rows_affected())
    }

    async fn tombstone_account(
        &mut self,
        id: &AccountId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.evictions.account(id);
        let result = sqlx::query(
            "UPDATE accounts SET status = 'deleted', email_index = NULL, email_sealed = NULL, \
             display_name_sealed = NULL, password_hash = NULL, email_verified = 0, \
             updated_at = $1, deleted_at = $1 WHERE id = $2 AND status = 'active'",
        )
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(&mut *self.tx)
        .await?;
        expect_one(result.rows_affected())
    }

    async fn insert_session(&mut self, session: &SessionRow) -> Result<(), StoreError> {
        sqlx::query(sql(format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(session.id.as_str())
        .bind(session.token_hash.as_str())
        .bind(session.account_id.as_str())
        .bind(session.created_at.as_millis())
        .bind(session.last_seen_at.as_millis())
        .bind(session.ip.as_deref())
        .bind(session.user_agent.as_deref())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_session(
        &mut self,
        account: &AccountId,
        id: &SessionId,
    ) -> Result<bool, StoreError> {
        self.evictions.account(account);
        let result = sqlx::query("DELETE FROM sessions WHERE id = $1 AND account_id = $2")
            .bind(id.as_str())
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete_sessions_of(
        &mut self,
        account: &AccountId,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        self.evictions.account(account);
        let result = sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND id <> $2")
            .bind(account.as_str())
            .bind(keep.map_or("", SessionId::as_str))
            .execute(&mut *self.tx)
            .await?;
        Ok(result.rows_affected())
    }

    async fn insert_operator_token(&mut self, token: &OperatorTokenRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO operator_tokens (id, name, token_hash, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.id.as_str())
        .bind(token.name.as_str())
        .bind(token.token_hash.as_str())
        .bind(token.created_at.as_millis())
        .bind(token.revoked_at.map(Timestamp::as_millis))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_app(&mut self, app: &AppRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO apps (id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(app.id.as_str())
            .bind(app.name.as_str())
            .bind(app.secret_hash.as_str())
            .bind(app.created_at.as_millis())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn mark_email_verified(
        &mut self,
        id: &AccountId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.evictions.account(id);
        sqlx::query(
            "UPDATE accounts SET email_verified = 1, updated_at = $1 WHERE id = $2 AND status = 'active'",
        )
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_mail(&mut self, mail: &MailRow) -> Result<(), StoreError> {
        sqlx::query(sql(format!(
            "INSERT INTO outbox ({MAIL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(mail.id.as_str())
        .bind(mail.key_owner.as_str())
        .bind(mail.kind.as_str())
        .bind(mail.message_sealed.as_str())
        .bind(mail.status.as_str())
        .bind(mail.attempts)
        .bind(mail.created_at.as_millis())
        .bind(mail.next_attempt_at.as_millis())
        .bind(mail.sent_at.map(Timestamp::as_millis))
        .bind(mail.last_error.as_deref())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn request_key_destruction(
        &mut self,
        owner: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO key_destructions (owner, requested_at) VALUES ($1, $2) \
             ON CONFLICT (owner) DO NOTHING",
        )
        .bind(owner)
        .bind(now.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

pub(crate) fn expect_one(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

#[cfg(test)]
mod placeholder_tests {
    use super::*;

    #[test]
    fn multi_row_placeholders_per_engine() {
        assert_eq!(
            row_placeholders(Engine::Sqlite, 2, 3),
            "(?, ?, ?), (?, ?, ?)"
        );
        assert_eq!(
            row_placeholders(Engine::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(row_placeholders(Engine::Sqlite, 0, 3), "");
    }
}
