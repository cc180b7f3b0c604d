//! The keyring's promises (ENC-1, ENC-3, ACC-4, DEL-3 groundwork): no plaintext personal data
//! reaches the data store, deleting an account destroys its data key so earlier copies of the
//! data store cannot be read, the job finishes destructions left over, and password hashes are
//! upgraded at login when the parameters change.

use mamori_testkit::{
    ClockExt, GOOD_PASSWORD, TestApp, TestEngine, json_of, spawn_app, spawn_with,
};
use serde_json::json;
use sqlx::Row;

mamori_testkit::engine_tests!(
    no_plaintext_personal_data_in_the_data_store,
    deleting_an_account_shreds_its_data_key,
    leftover_key_destructions_are_finished_by_the_job,
    password_hashes_are_upgraded_at_login,
);

const EMAIL: &str = "Zenobia.Quartermaine@Example.org";
const NAME: &str = "Zenobia Quartermaine";

/// Every text value stored in the data store, as one string per row, through SQL.
async fn all_stored_text(app: &TestApp) -> Vec<String> {
    let pool = app.database.pool().await;
    let tables = [
        "accounts",
        "sessions",
        "audit_events",
        "audit_chain_heads",
        "key_destructions",
    ];
    let mut texts = Vec::new();
    for table in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(&pool)
            .await
            .unwrap();
        for row in rows {
            for index in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(index) {
                    texts.push(text);
                }
            }
        }
    }
    pool.close().await;
    texts
}

fn contains_case_insensitive(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.to_lowercase().into_bytes();
    haystack
        .to_ascii_lowercase()
        .windows(needle.len())
        .any(|window| window == needle.as_slice())
}

async fn no_plaintext_personal_data_in_the_data_store(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (_, token) = app.account_with_session_named(EMAIL, NAME).await;
    let renamed = "Zenobia Q. Renamed";
    let response = app
        .request(
            reqwest::Method::PATCH,
            "/api/v1/me",
            Some(&token),
            Some(&json!({ "display_name": renamed })),
        )
        .await;
    json_of(response, 200).await;

    // Through SQL, on either engine: no column of any row holds the email or a name.
    let texts = all_stored_text(&app).await;
    assert!(!texts.is_empty());
    for text in &texts {
        for secret in [EMAIL, NAME, renamed, "zenobia"] {
            assert!(
                !contains_case_insensitive(text.as_bytes(), secret),
                "{secret:?} found in stored value {text:?}"
            );
        }
    }

    // On SQLite, byte for byte in every file of the data store (database, WAL, shared memory).
    if engine == TestEngine::Sqlite {
        let mut n_files = 0;
        for entry in std::fs::read_dir(app.database.data_dir()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("mamori.db") {
                continue;
            }
            n_files += 1;
            let bytes = std::fs::read(&path).unwrap();
            for secret in [EMAIL, NAME, renamed, "zenobia"] {
                assert!(
                    !contains_case_insensitive(&bytes, secret),
                    "{secret:?} found in {name}"
                );
            }
        }
        assert!(n_files >= 2, "expected the database and its WAL");
    }
}

async fn deleting_an_account_shreds_its_data_key(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let (account, token) = app.account_with_session_named(EMAIL, NAME).await;
    let pool = app.database.pool().await;

    // A "backup" of the data store taken before the deletion.
    let backup =
        sqlx::query("SELECT email_sealed, display_name_sealed FROM accounts WHERE id = $1")
            .bind(&account.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    let sealed_email: String = backup.get("email_sealed");
    let sealed_name: String = backup.get("display_name_sealed");
    let keyring = app.services.keyring().clone();
    let key = keyring.key(&account.id).await.unwrap();
    assert_eq!(key.open_string("email", &sealed_email).unwrap(), EMAIL);
    assert_eq!(key.open_string("display_name", &sealed_name).unwrap(), NAME);
    drop(key);
    let wrapped_before = wrapped_key_text(&app, &account.id)
        .await
        .expect("key stored");

    let response = app
        .request(
            reqwest::Method::DELETE,
            "/api/v1/me",
            Some(&token),
            Some(&json!({ "password": GOOD_PASSWORD })),
        )
        .await;
    assert_eq!(response.status(), 204);

    // The key is gone from the keyring, its destruction is on record, and the backup's sealed
    // fields no longer open with anything the live system holds.
    assert!(keyring.key(&account.id).await.is_err());
    assert!(keyring.is_destroyed(&account.id).await.unwrap());
    assert_eq!(wrapped_key_text(&app, &account.id).await, None);
    let pending: i64 = sqlx::query("SELECT COUNT(*) AS n FROM key_destructions")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
    assert_eq!(pending, 0);

    // Only the ID tombstone is left.
    let tombstone = sqlx::query(
        "SELECT status, email_index, email_sealed, display_name_sealed, password_hash FROM accounts WHERE id = $1",
    )
    .bind(&account.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tombstone.get::<String, _>("status"), "deleted");
    for column in [
        "email_index",
        "email_sealed",
        "display_name_sealed",
        "password_hash",
    ] {
        assert_eq!(tombstone.get::<Option<String>, _>(column), None, "{column}");
    }
    pool.close().await;

    // On SQLite the keyring file itself no longer holds the wrapped key's bytes.
    if engine == TestEngine::Sqlite {
        let bytes = std::fs::read(app.database.data_dir().join("keyring.db")).unwrap();
        assert!(
            !bytes
                .windows(wrapped_before.len())
                .any(|window| window == wrapped_before.as_bytes()),
            "the wrapped key is still in keyring.db"
        );
    }
}

/// The wrapped data key of `owner` as stored in the keyring database.
async fn wrapped_key_text(app: &TestApp, owner: &str) -> Option<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(app.database.keyring_url())
        .await
        .unwrap();
    let row = sqlx::query("SELECT wrapped FROM data_keys WHERE owner = $1")
        .bind(owner)
        .fetch_optional(&pool)
        .await
        .unwrap();
    pool.close().await;
    row.map(|row| row.get("wrapped"))
}

async fn leftover_key_destructions_are_finished_by_the_job(engine: TestEngine) {
    let app = spawn_app(engine).await;
    let keyring = app.services.keyring().clone();
    let owner = "acc_leftoverleftoverleftover2";
    keyring.create_key(owner, 0).await.unwrap();
    // As if the process died between the deletion's commit and the key's destruction.
    let pool = app.database.pool().await;
    sqlx::query("INSERT INTO key_destructions (owner, requested_at) VALUES ($1, $2)")
        .bind(owner)
        .bind(0i64)
        .execute(&pool)
        .await
        .unwrap();
    let now = app.clock.now_timestamp();
    let report = app.services.run_jobs_once(now).await.unwrap();
    assert_eq!(report.keys_destroyed, 1);
    assert!(keyring.key(owner).await.is_err());
    // Idempotent: a second round finds nothing to do.
    let report = app
        .services
        .run_jobs_once(now.plus_millis(1))
        .await
        .unwrap();
    assert_eq!(report.keys_destroyed, 0);
    pool.close().await;
}

async fn password_hashes_are_upgraded_at_login(engine: TestEngine) {
    let mut app = spawn_app(engine).await;
    let account = app.sign_up(EMAIL, GOOD_PASSWORD, NAME).await;
    let stored = stored_hash(&app, &account.id).await;
    assert!(
        stored.starts_with("$argon2id$v=19$m=256,t=1,p=1$"),
        "{stored}"
    );

    // Restart with stronger parameters: the next login upgrades the stored hash.
    app.stop().await;
    let mut settings = app.settings.clone();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.passwords.memory_kib = 512;
    settings.passwords.iterations = 2;
    let app = spawn_with(app.database.clone(), settings, app.clock.clone()).await;
    app.log_in(EMAIL, GOOD_PASSWORD).await;
    let upgraded = stored_hash(&app, &account.id).await;
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=512,t=2,p=1$"),
        "{upgraded}"
    );
    app.log_in(EMAIL, GOOD_PASSWORD).await;
    assert_eq!(
        stored_hash(&app, &account.id).await,
        upgraded,
        "no second rehash"
    );
}

async fn stored_hash(app: &TestApp, account: &str) -> String {
    let pool = app.database.pool().await;
    let hash: String = sqlx::query("SELECT password_hash FROM accounts WHERE id = $1")
        .bind(account)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("password_hash");
    pool.close().await;
    hash
}
