//! [`CredentialStore`] and [`CredentialStoreTx`] in portable SQL.

use super::{SqlStore, SqlTx, optional_time_at, sql, time_at};
use crate::StoreError;
use crate::cache::CredentialCache;
use crate::credentials::{
    CredentialStore, CredentialStoreTx, LoginChallengeRow, PersonalTokenRow, TwoStepRow,
};
use async_trait::async_trait;
use mamori_core::{AccountId, PersonalTokenId, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

const TWO_STEP_COLUMNS: &str =
    "account_id, secret_sealed, enabled_at, last_used_step, created_at, updated_at";
const CHALLENGE_COLUMNS: &str = "challenge_hash, account_id, created_at, expires_at, failures";
const TOKEN_COLUMNS: &str =
    "id, account_id, name_sealed, scope, token_hash, created_at, expires_at, last_used_at";

fn two_step_from(row: &AnyRow) -> Result<TwoStepRow, StoreError> {
    Ok(TwoStepRow {
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        secret_sealed: row.try_get("secret_sealed")?,
        enabled_at: optional_time_at(row, "enabled_at")?,
        last_used_step: row.try_get("last_used_step")?,
        created_at: time_at(row, "created_at")?,
        updated_at: time_at(row, "updated_at")?,
    })
}

fn challenge_from(row: &AnyRow) -> Result<LoginChallengeRow, StoreError> {
    Ok(LoginChallengeRow {
        challenge_hash: row.try_get("challenge_hash")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        created_at: time_at(row, "created_at")?,
        expires_at: time_at(row, "expires_at")?,
        failures: row.try_get("failures")?,
    })
}

fn token_from(row: &AnyRow) -> Result<PersonalTokenRow, StoreError> {
    Ok(PersonalTokenRow {
        id: PersonalTokenId::from_stored(row.try_get("id")?),
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        name_sealed: row.try_get("name_sealed")?,
        scope: row.try_get("scope")?,
        token_hash: row.try_get("token_hash")?,
        created_at: time_at(row, "created_at")?,
        expires_at: time_at(row, "expires_at")?,
        last_used_at: optional_time_at(row, "last_used_at")?,
    })
}

#[async_trait]
impl CredentialStore for SqlStore {
    async fn two_step(&self, account: &AccountId) -> Result<Option<TwoStepRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {TWO_STEP_COLUMNS} FROM two_step WHERE account_id = $1"
        )))
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(two_step_from).transpose()
    }

    async fn two_step_enabled(&self, account: &AccountId) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM two_step WHERE account_id = $1 AND enabled_at IS NOT NULL",
        )
        .bind(account.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    async fn unused_recovery_codes(&self, account: &AccountId) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL",
        )
        .bind(account.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    async fn login_challenge(
        &self,
        challenge_hash: &str,
    ) -> Result<Option<LoginChallengeRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {CHALLENGE_COLUMNS} FROM login_challenges WHERE challenge_hash = $1"
        )))
        .bind(challenge_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(challenge_from).transpose()
    }

    async fn delete_expired_login_challenges(&self, now: Timestamp) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM login_challenges WHERE expires_at <= $1")
            .bind(now.as_millis())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn personal_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<PersonalTokenRow>, StoreError> {
        let row = sqlx::query(sql(format!(
            "SELECT {TOKEN_COLUMNS} FROM personal_tokens WHERE token_hash = $1"
        )))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from).transpose()
    }

    async fn cached_personal_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<PersonalTokenRow>, StoreError> {
        self.cache
            .read_through(
                self.cache.personal_token(token_hash),
                self.personal_token_by_hash(token_hash),
                CredentialCache::fill_personal_token,
            )
            .await
    }

    async fn personal_tokens_of(
        &self,
        account: &AccountId,
        after: Option<(Timestamp, &PersonalTokenId)>,
        limit: u32,
    ) -> Result<Vec<PersonalTokenRow>, StoreError> {
        let (after_time, after_id) = match after {
            Some((time, id)) => (time.as_millis(), id.as_str()),
            None => (-1, ""),
        };
        let rows = sqlx::query(sql(format!(
            "SELECT {TOKEN_COLUMNS} FROM personal_tokens WHERE account_id = $1 \
             AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $4"
        )))
        .bind(account.as_str())
        .bind(after_time)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from).collect()
    }

    async fn touch_personal_token(
        &self,
        id: &PersonalTokenId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE personal_tokens SET last_used_at = $1 WHERE id = $2 \
             AND (last_used_at IS NULL OR last_used_at < $1)",
        )
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        self.cache.touch_personal_token(id.as_str(), now);
        Ok(())
    }
}

#[async_trait]
impl CredentialStoreTx for SqlTx {
    async fn put_pending_two_step(&mut self, row: &TwoStepRow) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM two_step WHERE account_id = $1 AND enabled_at IS NULL")
            .bind(row.account_id.as_str())
            .execute(&mut *self.tx)
            .await?;
        let result = sqlx::query(sql(format!(
            "INSERT INTO two_step ({TWO_STEP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_id) DO NOTHING"
        )))
        .bind(row.account_id.as_str())
        .bind(row.secret_sealed.as_str())
        .bind(row.enabled_at.map(Timestamp::as_millis))
        .bind(row.last_used_step)
        .bind(row.created_at.as_millis())
        .bind(row.updated_at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn enable_two_step(
        &mut self,
        account: &AccountId,
        step: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE two_step SET enabled_at = $1, updated_at = $1, last_used_step = $2 \
             WHERE account_id = $3 AND enabled_at IS NULL AND last_used_step < $2",
        )
        .bind(now.as_millis())
        .bind(step)
        .bind(account.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn use_totp_step(
        &mut self,
        account: &AccountId,
        step: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE two_step SET last_used_step = $1, updated_at = $2 \
             WHERE account_id = $3 AND enabled_at IS NOT NULL AND last_used_step < $1",
        )
        .bind(step)
        .bind(now.as_millis())
        .bind(account.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn use_recovery_code(
        &mut self,
        account: &AccountId,
        code_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 \
             WHERE account_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(now.as_millis())
        .bind(account.as_str())
        .bind(code_hash)
        .execute(&mut *self.tx)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete_two_step(&mut self, account: &AccountId) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
        let result = sqlx::query("DELETE FROM two_step WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn replace_recovery_codes(
        &mut self,
        account: &AccountId,
        code_hashes: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
        for code_hash in code_hashes {
            sqlx::query(
                "INSERT INTO recovery_codes (account_id, code_hash, created_at, used_at) \
                 VALUES ($1, $2, $3, NULL)",
            )
            .bind(account.as_str())
            .bind(code_hash.as_str())
            .bind(now.as_millis())
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn insert_login_challenge(
        &mut self,
        challenge: &LoginChallengeRow,
    ) -> Result<(), StoreError> {
        sqlx::query(sql(format!(
            "INSERT INTO login_challenges ({CHALLENGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
        )))
        .bind(challenge.challenge_hash.as_str())
        .bind(challenge.account_id.as_str())
        .bind(challenge.created_at.as_millis())
        .bind(challenge.expires_at.as_millis())
        .bind(challenge.failures)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn take_login_challenge(
        &mut self,
        challenge_hash: &str,
        now: Timestamp,
    ) -> Result<Option<AccountId>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM login_challenges WHERE challenge_hash = $1 AND expires_at > $2 \
             RETURNING account_id",
        )
        .bind(challenge_hash)
        .bind(now.as_millis())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|row| Ok(AccountId::from_stored(row.try_get("account_id")?)))
            .transpose()
    }

    async fn fail_login_challenge(
        &mut self,
        challenge_hash: &str,
        max_failures: i64,
    ) -> Result<bool, StoreError> {
        sqlx::query(
            "UPDATE login_challenges SET failures = failures + 1 WHERE challenge_hash = $1",
        )
        .bind(challenge_hash)
        .execute(&mut *self.tx)
        .await?;
        let deleted = sqlx::query(
            "DELETE FROM login_challenges WHERE challenge_hash = $1 AND failures >= $2",
        )
        .bind(challenge_hash)
        .bind(max_failures)
        .execute(&mut *self.tx)
        .await?;
        Ok(deleted.rows_affected() == 0)
    }

    async fn insert_personal_token(&mut self, token: &PersonalTokenRow) -> Result<(), StoreError> {
        sqlx::query(sql(format!(
            "INSERT INTO personal_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(token.id.as_str())
        .bind(token.account_id.as_str())
        .bind(token.name_sealed.as_str())
        .bind(token.scope.as_str())
        .bind(token.token_hash.as_str())
        .bind(token.created_at.as_millis())
        .bind(token.expires_at.as_millis())
        .bind(token.last_used_at.map(Timestamp::as_millis))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_personal_token(
        &mut self,
        account: &AccountId,
        id: &PersonalTokenId,
    ) -> Result<bool, StoreError> {
        self.evictions.account(account);
        let result = sqlx::query("DELETE FROM personal_tokens WHERE id = $1 AND account_id = $2")
            .bind(id.as_str())
            .bind(account.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete_credentials_of(&mut self, account: &AccountId) -> Result<(), StoreError> {
        self.evictions.account(account);
        for table in [
            "recovery_codes",
            "two_step",
            "login_challenges",
            "personal_tokens",
        ] {
            sqlx::query(sql(format!("DELETE FROM {table} WHERE account_id = $1")))
                .bind(account.as_str())
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }
}
