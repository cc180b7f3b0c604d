//! Organization-local accounts (ACC-7) in portable SQL.

use super::{SqlStore, SqlTx, account_from, optional_time_at, sql, time_at};
use crate::local_accounts::{LocalAccountRow, LocalAccountStore, LocalAccountStoreTx};
use crate::{AccountRow, StoreError};
use async_trait::async_trait;
use mamori_core::{AccountId, OrgId, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

/// Aliased so that a join with `accounts` keeps the account's own `created_at` and
/// `updated_at`.
const LOCAL_COLUMNS: &str = "l.account_id AS l_account_id, l.org_id AS l_org_id, \
    l.login_index AS l_login_index, l.login_id_sealed AS l_login_id_sealed, \
    l.must_change_password AS l_must_change_password, \
    l.initial_password_expires_at AS l_initial_password_expires_at, \
    l.created_by AS l_created_by, l.created_at AS l_created_at, l.updated_at AS l_updated_at";

fn local_from(row: &AnyRow) -> Result<LocalAccountRow, StoreError> {
    Ok(LocalAccountRow {
        account_id: AccountId::from_stored(row.try_get("l_account_id")?),
        org_id: OrgId::from_stored(row.try_get("l_org_id")?),
        login_index: row.try_get("l_login_index")?,
        login_id_sealed: row.try_get("l_login_id_sealed")?,
        must_change_password: row.try_get::<i64, _>("l_must_change_password")? != 0,
        initial_password_expires_at: optional_time_at(row, "l_initial_password_expires_at")?,
        created_by: row
            .try_get::<Option<String>, _>("l_created_by")?
            .map(AccountId::from_stored),
        created_at: time_at(row, "l_created_at")?,
        updated_at: time_at(row, "l_updated_at")?,
    })
}

fn account_columns() -> String {
    super::ACCOUNT_COLUMNS
        .split(", ")
        .map(|column| format!("a.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn joined_from(row: &AnyRow) -> Result<(LocalAccountRow, AccountRow), StoreError> {
    Ok((local_from(row)?, account_from(row)?))
}

#[async_trait]
impl LocalAccountStore for SqlStore {
    async fn local_account(
        &self,
        account: &AccountId,
    ) -> Result<Option<LocalAccountRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {LOCAL_COLUMNS} FROM local_accounts l WHERE l.account_id = $1"
        )))
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(local_from).transpose()
    }

    async fn local_account_by_login(
        &self,
        login_index: &str,
    ) -> Result<Option<(LocalAccountRow, AccountRow)>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {LOCAL_COLUMNS}, {} FROM local_accounts l \
             JOIN accounts a ON a.id = l.account_id \
             WHERE l.login_index = $1 AND a.status = 'active'",
            account_columns()
        )))
        .bind(login_index)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(joined_from).transpose()
    }

    async fn local_accounts_of_org(
        &self,
        org: &OrgId,
        after: Option<&AccountId>,
        limit: u32,
    ) -> Result<Vec<(LocalAccountRow, AccountRow)>, StoreError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {LOCAL_COLUMNS}, {} FROM local_accounts l \
             JOIN accounts a ON a.id = l.account_id \
             WHERE l.org_id = $1 AND l.account_id > $2 AND a.status = 'active' \
             ORDER BY l.account_id LIMIT $3",
            account_columns()
        )))
        .bind(org.as_str())
        .bind(after.map(AccountId::as_str).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(joined_from).collect()
    }
}

impl SqlTx {
    /// Deletes every session, personal access token and log-in challenge of the account;
    /// returns how many sessions and tokens ended.
    async fn revoke_credentials_of(&mut self, account: &AccountId) -> Result<u64, StoreError> {
        self.evictions.account(account);
        let mut ended = 0;
        for table in ["sessions", "personal_tokens", "login_challenges"] {
            let result = sqlx::query(sql(format!("DELETE FROM {table} WHERE account_id = $1")))
                .bind(account.as_str())
                .execute(&mut *self.tx)
                .await?;
            if table != "login_challenges" {
                ended += result.rows_affected();
            }
        }
        Ok(ended)
    }
}

#[async_trait]
impl LocalAccountStoreTx for SqlTx {
    async fn insert_local_account(&mut self, row: &LocalAccountRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO local_accounts (account_id, org_id, login_index, login_id_sealed, \
             must_change_password, initial_password_expires_at, created_by, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(row.account_id.as_str())
        .bind(row.org_id.as_str())
        .bind(row.login_index.as_str())
        .bind(row.login_id_sealed.as_str())
        .bind(i64::from(row.must_change_password))
        .bind(row.initial_password_expires_at.map(Timestamp::as_millis))
        .bind(row.created_by.as_ref().map(AccountId::as_str))
        .bind(row.created_at.as_millis())
        .bind(row.updated_at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn local_account_in_tx(
        &mut self,
        org: &OrgId,
        account: &AccountId,
    ) -> Result<Option<LocalAccountRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {LOCAL_COLUMNS} FROM local_accounts l \
             WHERE l.org_id = $1 AND l.account_id = $2"
        )))
        .bind(org.as_str())
        .bind(account.as_str())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(local_from).transpose()
    }

    async fn set_initial_password(
        &mut self,
        account: &AccountId,
        password_hash: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.evictions.account(account);
        let result = sqlx::query(
            "UPDATE accounts SET password_hash = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'active'",
        )
        .bind(password_hash)
        .bind(now.as_millis())
        .bind(account.as_str())
        .execute(&mut *self.tx)
        .await?;
        super::expect_one(result.rows_affected())?;
        let result = sqlx::query(
            "UPDATE local_accounts SET must_change_password = 1, \
             initial_password_expires_at = $1, updated_at = $2 WHERE account_id = $3",
        )
        .bind(expires_at.as_millis())
        .bind(now.as_millis())
        .bind(account.as_str())
        .execute(&mut *self.tx)
        .await?;
        super::expect_one(result.rows_affected())?;
        self.revoke_credentials_of(account).await
    }

    async fn set_own_password(
        &mut self,
        account: &AccountId,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.evictions.account(account);
        let result = sqlx::query(
            "UPDATE local_accounts SET must_change_password = 0, \
             initial_password_expires_at = NULL, updated_at = $1 \
             WHERE account_id = $2 AND must_change_password = 1",
        )
        .bind(now.as_millis())
        .bind(account.as_str())
        .execute(&mut *self.tx)
        .await?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        let result = sqlx::query(
            "UPDATE accounts SET password_hash = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'active'",
        )
        .bind(password_hash)
        .bind(now.as_millis())
        .bind(account.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete_local_account(&mut self, account: &AccountId) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM local_accounts WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete_org_local_accounts(
        &mut self,
        org: &OrgId,
        now: Timestamp,
    ) -> Result<Vec<AccountId>, StoreError> {
        let rows = sqlx::query(
            "SELECT account_id FROM local_accounts WHERE org_id = $1 ORDER BY account_id",
        )
        .bind(org.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        let accounts = rows
            .iter()
            .map(|row| Ok(AccountId::from_stored(row.try_get("account_id")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        for account in &accounts {
            self.evictions.account(account);
            sqlx::query(
                "UPDATE accounts SET status = 'deleted', email_index = NULL, email_sealed = NULL, \
                 display_name_sealed = NULL, password_hash = NULL, email_verified = 0, \
                 updated_at = $1, deleted_at = $1 WHERE id = $2 AND status = 'active'",
            )
            .bind(now.as_millis())
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
            self.revoke_credentials_of(account).await?;
            for table in ["recovery_codes", "two_step", "account_tokens"] {
                sqlx::query(sql(format!("DELETE FROM {table} WHERE account_id = $1")))
                    .bind(account.as_str())
                    .execute(&mut *self.tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO key_destructions (owner, requested_at) VALUES ($1, $2) \
                 ON CONFLICT (owner) DO NOTHING",
            )
            .bind(account.as_str())
            .bind(now.as_millis())
            .execute(&mut *self.tx)
            .await?;
            sqlx::query("DELETE FROM local_accounts WHERE account_id = $1")
                .bind(account.as_str())
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(accounts)
    }
}
