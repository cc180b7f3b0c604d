//! Login throttles, one-time account tokens and the verified-email rule, in portable SQL.

use super::{SqlStore, SqlTx, expect_one, optional_time_at, sql, time_at};
use crate::StoreError;
use crate::recovery::{
    AccountTokenRow, LoginAttempt, RecoveryStore, RecoveryStoreTx, TokenPurpose,
};
use async_trait::async_trait;
use mamori_core::{AccountId, OrgId, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

const TOKEN_COLUMNS: &str = "id, purpose, account_id, token_hash, email_index, email_sealed, \
    created_at, expires_at, used_at";

fn token_from(row: &AnyRow) -> Result<AccountTokenRow, StoreError> {
    let purpose: String = row.try_get("purpose")?;
    Ok(AccountTokenRow {
        id: row.try_get("id")?,
        purpose: TokenPurpose::parse(&purpose)
            .ok_or_else(|| StoreError::Corrupt(format!("token purpose {purpose}")))?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        token_hash: row.try_get("token_hash")?,
        email_index: row.try_get("email_index")?,
        email_sealed: row.try_get("email_sealed")?,
        created_at: time_at(row, "created_at")?,
        expires_at: time_at(row, "expires_at")?,
        used_at: optional_time_at(row, "used_at")?,
    })
}

/// The upsert that counts a log-in attempt ($1 the name's index, $2 now, $3 the time before
/// which earlier attempts are forgotten) and returns the count; a locked name is left as it
/// is, and so is a row failing the extra condition given, which then returns nothing.
macro_rules! count_attempt_sql {
    ($also:literal) => {
        concat!(
            "INSERT INTO login_throttles (email_index, attempts, last_attempt_at, locked_until) \
             VALUES ($1, 1, $2, 0) \
             ON CONFLICT (email_index) DO UPDATE SET \
             attempts = CASE WHEN login_throttles.last_attempt_at < $3 THEN 1 \
             ELSE login_throttles.attempts + 1 END, \
             last_attempt_at = $2 \
             WHERE login_throttles.locked_until <= $2",
            $also,
            " RETURNING attempts"
        )
    };
}

#[async_trait]
impl RecoveryStore for SqlStore {
    async fn account_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<AccountTokenRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {TOKEN_COLUMNS} FROM account_tokens WHERE token_hash = $1"
        )))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from).transpose()
    }

    async fn newest_unused_token_at(
        &self,
        account: &AccountId,
        purpose: TokenPurpose,
    ) -> Result<Option<Timestamp>, StoreError> {
        let row = sqlx::query(
            "SELECT MAX(created_at) AS newest FROM account_tokens \
             WHERE account_id = $1 AND purpose = $2 AND used_at IS NULL",
        )
        .bind(account.as_str())
        .bind(purpose.as_str())
        .fetch_one(&self.pool)
        .await?;
        optional_time_at(&row, "newest")
    }

    async fn count_login_attempt_below(
        &self,
        email_index: &str,
        now: Timestamp,
        forget_before: Timestamp,
        threshold: i64,
    ) -> Result<Option<i64>, StoreError> {
        // A first attempt inserts a count of 1, which must stay below the threshold too.
        if threshold <= 1 {
            return Ok(None);
        }
        // One statement, atomic on both engines: a locked name, or a count that would reach
        // the threshold, leaves the row as it is and returns nothing.
        let row = sqlx::query(count_attempt_sql!(
            " AND CASE WHEN login_throttles.last_attempt_at < $3 THEN 1 \
             ELSE login_throttles.attempts + 1 END < $4"
        ))
        .bind(email_index)
        .bind(now.as_millis())
        .bind(forget_before.as_millis())
        .bind(threshold)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| row.try_get("attempts"))
            .transpose()
            .map_err(Into::into)
    }

    async fn delete_stale_login_throttles(&self, before: Timestamp) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "DELETE FROM login_throttles WHERE last_attempt_at < $1 AND locked_until < $1",
        )
        .bind(before.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn delete_expired_account_tokens(&self, before: Timestamp) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM account_tokens WHERE expires_at < $1")
            .bind(before.as_millis())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}

#[async_trait]
impl RecoveryStoreTx for SqlTx {
    async fn count_login_attempt(
        &mut self,
        email_index: &str,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<LoginAttempt, StoreError> {
        // One statement, so concurrent attempts on any node each get their own count: on
        // PostgreSQL the conflicting row is locked and re-read, on SQLite the write
        // transaction holds the database. A locked name is left as it is (no row returned).
        let row = sqlx::query(count_attempt_sql!(""))
            .bind(email_index)
            .bind(now.as_millis())
            .bind(forget_before.as_millis())
            .fetch_optional(&mut *self.tx)
            .await?;
        if let Some(row) = row {
            return Ok(LoginAttempt::Counted {
                attempts: row.try_get("attempts")?,
            });
        }
        let row = sqlx::query("SELECT locked_until FROM login_throttles WHERE email_index = $1")
            .bind(email_index)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(LoginAttempt::Locked {
            until: time_at(&row, "locked_until")?,
        })
    }

    async fn lock_login(&mut self, email_index: &str, until: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE login_throttles SET locked_until = $1 \
             WHERE email_index = $2 AND locked_until < $1",
        )
        .bind(until.as_millis())
        .bind(email_index)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn clear_login_throttle(&mut self, email_index: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_throttles WHERE email_index = $1")
            .bind(email_index)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn insert_account_token(&mut self, token: &AccountTokenRow) -> Result<(), StoreError> {
        sqlx::query(sql(format!(
            "INSERT INTO account_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )))
        .bind(token.id.as_str())
        .bind(token.purpose.as_str())
        .bind(token.account_id.as_str())
        .bind(token.token_hash.as_str())
        .bind(token.email_index.as_str())
        .bind(token.email_sealed.as_deref())
        .bind(token.created_at.as_millis())
        .bind(token.expires_at.as_millis())
        .bind(token.used_at.map(Timestamp::as_millis))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn use_account_token(&mut self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let result =
            sqlx::query("UPDATE account_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
                .bind(now.as_millis())
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn retire_account_tokens(
        &mut self,
        account: &AccountId,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE account_tokens SET used_at = $1 \
             WHERE account_id = $2 AND purpose = $3 AND used_at IS NULL",
        )
        .bind(now.as_millis())
        .bind(account.as_str())
        .bind(purpose.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected())
    }

    async fn delete_account_tokens(&mut self, account: &AccountId) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM account_tokens WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(result.rows_affected())
    }

    async fn update_email(
        &mut self,
        account: &AccountId,
        email_index: &str,
        email_sealed: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.evictions.account(account);
        let result = sqlx::query(
            "UPDATE accounts SET email_index = $1, email_sealed = $2, email_verified = 1, \
             updated_at = $3 WHERE id = $4 AND status = 'active'",
        )
        .bind(email_index)
        .bind(email_sealed)
        .bind(now.as_millis())
        .bind(account.as_str())
        .execute(&mut *self.tx)
        .await?;
        expect_one(result.rows_affected())
    }

    async fn org_max_members(&mut self, org: &OrgId) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT max_members FROM organizations WHERE id = $1")
            .bind(org.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        match row {
            Some(row) => Ok(row.try_get("max_members")?),
            None => Err(StoreError::NotFound),
        }
    }

    async fn set_org_max_members(
        &mut self,
        org: &OrgId,
        max_members: Option<i64>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let result =
            sqlx::query("UPDATE organizations SET max_members = $1, updated_at = $2 WHERE id = $3")
                .bind(max_members)
                .bind(now.as_millis())
                .bind(org.as_str())
                .execute(&mut *self.tx)
                .await?;
        expect_one(result.rows_affected())
    }

    async fn set_org_require_verified_email(
        &mut self,
        org: &OrgId,
        required: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE organizations SET require_verified_email = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(i64::from(required))
        .bind(now.as_millis())
        .bind(org.as_str())
        .execute(&mut *self.tx)
        .await?;
        expect_one(result.rows_affected())
    }
}
