//! Opening databases: the engine is chosen by the URL scheme at run time, so one binary serves
//! both SQLite (the embedded default) and PostgreSQL (scale-out).

use crate::error::StoreError;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn from_url(url: &str) -> Option<Engine> {
        if url.starts_with("sqlite:") {
            Some(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Engine::Postgres)
        } else {
            None
        }
    }
}

/// How a database is used: the data store wants write-ahead logging for concurrency; the
/// keyring wants deleted key bytes overwritten in place (`secure_delete`) and no WAL copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseRole {
    Data,
    Keyring,
}

/// Opens a pool on `url`. SQLite files are created when missing; every SQLite connection syncs
/// each commit to disk (`synchronous=FULL`), so an answered write survives a crash.
pub async fn connect(
    url: &str,
    role: DatabaseRole,
    max_connections: u32,
) -> Result<(AnyPool, Engine), StoreError> {
    install_default_drivers();
    let engine = Engine::from_url(url).ok_or_else(|| {
        StoreError::Corrupt(String::from(
            "database url must start with sqlite: or postgres://",
        ))
    })?;
    let url = match engine {
        Engine::Sqlite if !url.contains("mode=") => {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}mode=rwc")
        }
        _ => url.to_owned(),
    };
    let options = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10));
    let options = match engine {
        // A SQLite connection is a file handle in this process: it cannot drop the way a
        // network connection can, so the ping the pool would send before every use (a round
        // trip to the connection's worker thread) buys nothing and costs every query.
        Engine::Sqlite => {
            options
                .test_before_acquire(false)
                .after_connect(move |connection, _meta| {
                    Box::pin(async move {
                        let pragmas = match role {
                            DatabaseRole::Data => {
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;"
                            }
                            DatabaseRole::Keyring => {
                                "PRAGMA journal_mode = DELETE; PRAGMA synchronous = FULL; \
                         PRAGMA secure_delete = ON; PRAGMA busy_timeout = 10000;"
                            }
                        };
                        connection.execute(pragmas).await?;
                        Ok(())
                    })
                })
        }
        Engine::Postgres => options,
    };
    let pool = options.connect(&url).await?;
    Ok((pool, engine))
}

/// The data store's migrations, embedded in the binary.
pub fn data_migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// Creates the PostgreSQL database named in `url` when it does not exist, connecting to the
/// server's `postgres` database to do so. Used for the keyring's own database.
pub async fn ensure_postgres_database(url: &str) -> Result<(), StoreError> {
    install_default_drivers();
    let (base, name) = split_database_name(url)
        .ok_or_else(|| StoreError::Corrupt(String::from("postgres url must name a database")))?;
    let admin_url = format!("{base}/postgres{}", query_part(url));
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await?;
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&pool)
        .await?;
    if exists.is_none() {
        let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match pool.execute(sqlx::AssertSqlSafe(create)).await {
            Ok(_) => {}
            // Another node created it at the same moment.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {}
            Err(error) => return Err(error.into()),
        }
    }
    pool.close().await;
    Ok(())
}

fn query_part(url: &str) -> &str {
    url.find('?').map_or("", |index| &url[index..])
}

/// Splits `postgres://host/db?x` into (`postgres://host`, `db`).
pub fn split_database_name(url: &str) -> Option<(String, String)> {
    let without_query = url.split('?').next()?;
    let scheme_end = without_query.find("://")? + 3;
    let slash = without_query[scheme_end..].find('/')? + scheme_end;
    let name = &without_query[slash + 1..];
    (!name.is_empty()).then(|| (without_query[..slash].to_owned(), name.to_owned()))
}

/// The URL of a sibling database on the same server: `postgres://h/mamori` with suffix
/// `_keyring` gives `postgres://h/mamori_keyring`.
pub fn sibling_database_url(url: &str, suffix: &str) -> Option<String> {
    let (base, name) = split_database_name(url)?;
    Some(format!("{base}/{name}{suffix}{}", query_part(url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_urls() {
        assert_eq!(
            sibling_database_url("postgres://u@h:5432/mamori?sslmode=disable", "_keyring")
                .as_deref(),
            Some("postgres://u@h:5432/mamori_keyring?sslmode=disable")
        );
        assert_eq!(sibling_database_url("postgres://h", "_k"), None);
    }
}
