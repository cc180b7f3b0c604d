//! A fresh database per test: a SQLite file in a temporary folder, or a PostgreSQL database
//! (plus its keyring database) created on the loopback server and dropped afterwards.

use std::path::Path;
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestEngine {
    Sqlite,
    Postgres,
}

pub struct TestDatabase {
    engine: TestEngine,
    data_dir: TempDir,
    url: String,
    keyring_url: String,
    postgres: Option<PostgresNames>,
}

struct PostgresNames {
    admin_url: String,
    databases: Vec<String>,
}

/// The PostgreSQL server the tests use.
pub fn postgres_admin_url() -> String {
    std::env::var("MAMORI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| String::from("postgres://postgres@127.0.0.1:5432/postgres"))
}

fn server_base(admin_url: &str) -> String {
    let without_query = admin_url.split('?').next().unwrap_or(admin_url);
    match without_query.rfind('/') {
        Some(index) if index > "postgres://".len() => without_query[..index].to_owned(),
        _ => without_query.to_owned(),
    }
}

impl TestDatabase {
    pub async fn create(engine: TestEngine) -> TestDatabase {
        let data_dir = tempfile::Builder::new()
            .prefix("mamori-test-")
            .tempdir()
            .expect("temporary data dir");
        match engine {
            TestEngine::Sqlite => {
                let url = format!("sqlite://{}", data_dir.path().join("mamori.db").display());
                let keyring_url =
                    format!("sqlite://{}", data_dir.path().join("keyring.db").display());
                TestDatabase {
                    engine,
                    data_dir,
                    url,
                    keyring_url,
                    postgres: None,
                }
            }
            TestEngine::Postgres => {
                sqlx::any::install_default_drivers();
                let admin_url = postgres_admin_url();
                let name = format!("mamori_t_{}", uuid::Uuid::new_v4().simple());
                let keyring_name = format!("{name}_keyring");
                let pool = sqlx::AnyPool::connect(&admin_url).await.unwrap_or_else(|error| {
                    panic!(
                        "PostgreSQL is needed for the postgres half of the tests; none answered at \
                         {admin_url} ({error}). Start one or set MAMORI_TEST_POSTGRES_URL."
                    )
                });
                for database in [&name, &keyring_name] {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "CREATE DATABASE \"{database}\""
                    )))
                    .execute(&pool)
                    .await
                    .expect("create test database");
                }
                pool.close().await;
                let base = server_base(&admin_url);
                TestDatabase {
                    engine,
                    data_dir,
                    url: format!("{base}/{name}"),
                    keyring_url: format!("{base}/{keyring_name}"),
                    postgres: Some(PostgresNames {
                        admin_url,
                        databases: vec![name, keyring_name],
                    }),
                }
            }
        }
    }

    pub fn engine(&self) -> TestEngine {
        self.engine
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn keyring_url(&self) -> &str {
        &self.keyring_url
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Opens a pool on the data store, for tests that look at what is stored.
    pub async fn pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(postgres) = self.postgres.take() else {
            return;
        };
        // Drop runs outside any async context we may block; a thread of its own does the work.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(pool) = sqlx::AnyPool::connect(&postgres.admin_url).await else {
                    return;
                };
                for database in &postgres.databases {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    )))
                    .execute(&pool)
                    .await;
                }
                pool.close().await;
            });
        });
        let _ = cleanup.join();
    }
}
