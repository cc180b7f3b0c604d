//! Test support: [`spawn_app`] starts the real server on `127.0.0.1:0` over a fresh database
//! (a new SQLite file, or a new PostgreSQL database on the loopback server) and returns a
//! [`TestApp`] to talk to it over HTTP. [`engine_tests!`] runs each test on both engines.
//!
//! PostgreSQL is found at `MAMORI_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); a test fails, never skips, when it is not
//! there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod database;
pub mod load;
pub mod process;
pub mod smtp;

pub use database::{TestDatabase, TestEngine};
pub use smtp::{ReceivedMail, SmtpReceiver};

use mamori_api_types::{Account, SessionCreated};
use mamori_core::Timestamp;
use mamori_server::config::{Config, DatabaseConfig, KeyringConfig, PasswordConfig, ServerConfig};
use mamori_server::{Application, ManualClock, Settings};
use mamori_service::Services;
use reqwest::{Method, Response};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Runs each named `async fn name(engine: TestEngine)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! engine_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestEngine::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestEngine::Postgres).await
                }
            )*
        }
    };
}

/// 2026-11-22T00:00:00Z: where every test clock starts.
pub const TEST_EPOCH: Timestamp = Timestamp::from_millis(1_795_305_600_000);

/// A password the policy accepts.
pub const GOOD_PASSWORD: &str = "violet tangerine harbor 1987";

pub struct TestApp {
    pub address: SocketAddr,
    pub base_url: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub services: Arc<Services>,
    pub settings: Settings,
    pub database: Arc<TestDatabase>,
    access_log: Option<mamori_server::access_log::AccessLogFlush>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test: cheap password hashing so tests run fast, and per-client rate limits
/// out of the way (every test client is 127.0.0.1; the rate-limit tests set their own);
/// everything else default.
pub fn test_settings(database: &TestDatabase) -> Settings {
    let mut settings = Config {
        data_dir: Some(database.data_dir().to_path_buf()),
        database: DatabaseConfig {
            url: Some(database.url().to_owned()),
            max_connections: Some(4),
        },
        keyring: KeyringConfig {
            url: Some(database.keyring_url().to_owned()),
            ..KeyringConfig::default()
        },
        server: ServerConfig {
            listen: Some(String::from("127.0.0.1:0")),
            ..ServerConfig::default()
        },
        passwords: PasswordConfig {
            memory_kib: Some(256),
            iterations: Some(1),
            parallelism: Some(1),
            max_concurrent: Some(4),
        },
        ..Config::default()
    }
    .resolve()
    .expect("test settings");
    let unlimited = mamori_core::rate::RateLimit::per_second(100_000, 100_000);
    settings.rate_limits.login = unlimited;
    settings.rate_limits.second_factor = unlimited;
    settings.rate_limits.sign_up = unlimited;
    settings.rate_limits.password_reset = unlimited;
    settings
}

/// Starts the server on a fresh database of `engine`.
pub async fn spawn_app(engine: TestEngine) -> TestApp {
    let database = Arc::new(TestDatabase::create(engine).await);
    let settings = test_settings(&database);
    spawn_with(database, settings, Arc::new(ManualClock::new(TEST_EPOCH))).await
}

/// Starts the server with the given settings (tests that change one setting use this).
pub async fn spawn_with(
    database: Arc<TestDatabase>,
    settings: Settings,
    clock: Arc<ManualClock>,
) -> TestApp {
    // The server's errors (a 500's cause) go to the test's captured output, shown when it fails.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_test_writer()
        .try_init();
    let application = Application::build(settings.clone(), clock.clone())
        .await
        .expect("build the application");
    let address = application.address();
    let services = application.services();
    let access_log = application.access_log_flush();
    let (shutdown, shutdown_received) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run(async move {
        let _ = shutdown_received.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    TestApp {
        address,
        base_url: format!("http://{address}"),
        client,
        clock,
        services,
        settings,
        database,
        access_log,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    /// Stops the server gracefully and starts a new one on the same databases and clock.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let mut settings = self.settings.clone();
        settings.listen = "127.0.0.1:0".parse().unwrap();
        spawn_with(self.database.clone(), settings, self.clock.clone()).await
    }

    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// Waits until the access log of every request answered so far is stored (nothing to wait
    /// for when the access log is off).
    pub async fn flush_access_logs(&self) {
        if let Some(access_log) = &self.access_log {
            access_log.flush().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request with an optional JSON body and bearer token.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.request(Method::POST, path, token, Some(body)).await
    }

    /// Signs up and asserts success.
    pub async fn sign_up(&self, email: &str, password: &str, name: &str) -> Account {
        let response = self
            .post(
                "/api/v1/accounts",
                None,
                &serde_json::json!({ "email": email, "password": password, "display_name": name }),
            )
            .await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 201, "sign up {email}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Logs in and asserts success.
    pub async fn log_in(&self, email: &str, password: &str) -> SessionCreated {
        let response = self
            .post(
                "/api/v1/sessions",
                None,
                &serde_json::json!({ "email": email, "password": password }),
            )
            .await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 201, "log in {email}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Signs up a fresh account and logs it in; returns (account, token).
    pub async fn account_with_session(&self, email: &str) -> (Account, String) {
        self.account_with_session_named(email, "Test Person").await
    }

    /// As [`TestApp::account_with_session`], with a chosen display name.
    pub async fn account_with_session_named(&self, email: &str, name: &str) -> (Account, String) {
        let account = self.sign_up(email, GOOD_PASSWORD, name).await;
        let session = self.log_in(email, GOOD_PASSWORD).await;
        (account, session.token)
    }

    /// Creates an operator token through the service, as `mamori operator token create` does.
    pub async fn operator_token(&self) -> String {
        self.services
            .create_operator_token("tests", self.clock.now_timestamp())
            .await
            .unwrap()
            .token
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Reads the clock without importing the trait.
pub trait ClockExt {
    fn now_timestamp(&self) -> Timestamp;
}

impl ClockExt for ManualClock {
    fn now_timestamp(&self) -> Timestamp {
        mamori_server::Clock::now(self)
    }
}

/// Reads a response as JSON, asserting its status first.
pub async fn json_of(response: Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    if status >= 400 {
        assert_eq!(
            content_type, "application/problem+json",
            "errors are problems: {text}"
        );
    }
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts a problem response with the given status and code; returns the problem.
pub async fn expect_problem(response: Response, status: u16, code: &str) -> Value {
    let problem = json_of(response, status).await;
    assert_eq!(problem["code"], code, "problem: {problem}");
    assert_eq!(problem["status"], status, "problem: {problem}");
    problem
}
