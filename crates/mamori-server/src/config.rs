//! Configuration: read once at start from `mamori.toml`, then `MAMORI_*` environment
//! variables, then command-line flags, each overriding the one before; then checked and turned
//! into typed [`Settings`] that are passed down. Unknown keys are errors, so a typo never
//! silently falls back to a default.

use anyhow::{Context, bail};
use ipnet::IpNet;
use mamori_core::lockout::LockoutPolicy;
use mamori_core::rate::RateLimit;
use mamori_core::session::SessionPolicy;
use mamori_service::PasswordParams;
use mamori_service::lifecycle::DEFAULT_POLICY;
use mamori_service::lifecycle::policy::{BUILT_IN, Policy};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The configuration as written: every field optional, defaults filled in by [`Config::resolve`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    pub database: DatabaseConfig,
    pub keyring: KeyringConfig,
    pub server: ServerConfig,
    pub smtp: SmtpConfig,
    pub passwords: PasswordConfig,
    pub sessions: SessionConfig,
    pub audit: AuditConfig,
    pub log: LogConfig,
    pub access_log: AccessLogConfig,
    pub rate_limits: RateLimitConfig,
    pub lockout: LockoutConfig,
    pub lifecycle: LifecycleConfig,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (default: `mamori.db` in the data dir) or `postgres://...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyringConfig {
    /// Default: `keyring.db` in the data dir on SQLite; the database `<name>_keyring` on the
    /// same PostgreSQL server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Default: `master.key` in the data dir, created on first start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
    /// The master key itself (base64), e.g. from a secret manager through the environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` and `X-Forwarded-Proto` are
    /// believed. Empty: the peer address is the client.
    pub trusted_proxies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_limit_bytes: Option<usize>,
    /// The address people reach the service at, for links in mail (default
    /// `http://` + the listen address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The sender of all mail (default `Mamori <no-reply@localhost>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_kib: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Hashes computed at once; default one per core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absolute_lifetime_days: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Days an audit event is kept after it was stored (AUD-2: 400).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i64>,
    /// Sign a chain's head once it moved this many events (default 1000)...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_events: Option<i64>,
    /// ...or once this many minutes passed since its last checkpoint (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_minutes: Option<i64>,
    /// Events one app may send per second, per node (default 1000; bursts up to twice that).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_events_per_second: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// A tracing filter such as `info` or `mamori=debug,info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// The audit trail's retention, checkpoint and ingestion settings, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSettings {
    pub retention_days: i64,
    pub checkpoint_every_events: i64,
    pub checkpoint_every_minutes: i64,
    pub app_events_per_second: u32,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Whether every HTTP request is logged (default `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Days a request's log is kept before retention deletes it (default 545, LOG-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i64>,
    /// Longest wait before logged requests are written to the data store (default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval_ms: Option<u64>,
}

/// Per-client-IP limits of the credential endpoints, on each node (an IPv6 client is its /64).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Clients remembered per limit; beyond it the idle, then the least recent, are forgotten
    /// (default 100000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_clients: Option<usize>,
    /// `POST /api/v1/sessions` (default 20 a minute, bursts of 20).
    pub login: RateConfig,
    /// `POST /api/v1/sessions/second-factor` (default 20 a minute, bursts of 20).
    pub second_factor: RateConfig,
    /// `POST /api/v1/accounts` (default 5 a minute, bursts of 20).
    pub sign_up: RateConfig,
    /// Password resets and email confirmations (default 5 a minute, bursts of 10).
    pub password_reset: RateConfig,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl RateConfig {
    fn resolve(&self, name: &str, per_minute: u32, burst: u32) -> anyhow::Result<RateLimit> {
        let limit = RateLimit::per_minute(
            self.per_minute.unwrap_or(per_minute),
            self.burst.unwrap_or(burst),
        );
        if limit.tokens < 1 || limit.burst < 1 {
            bail!("rate_limits.{name}: per_minute and burst must be at least 1");
        }
        Ok(limit)
    }
}

/// The data lifecycle's deletion policy (issue 6): a built-in one by name, or a TOML file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// A built-in policy: `whitepaper-2025` (default) or `terms-v3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// A policy file (see `docs/design/lifecycle.md`); wins over `policy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<PathBuf>,
}

/// Reads the configured deletion policy.
fn lifecycle_policy(config: &LifecycleConfig) -> anyhow::Result<Policy> {
    if let Some(path) = &config.policy_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read lifecycle policy file {}", path.display()))?;
        return Policy::parse(&text)
            .map_err(|error| anyhow::anyhow!("lifecycle policy file {}: {error}", path.display()));
    }
    let name = config.policy.as_deref().unwrap_or(DEFAULT_POLICY);
    Policy::built_in(name).with_context(|| {
        let names: Vec<&str> = BUILT_IN.iter().map(|(name, _)| *name).collect();
        format!(
            "lifecycle.policy: no built-in policy `{name}` (built in: {})",
            names.join(", ")
        )
    })
}

/// Brute-force protection per login name, kept in the database (all nodes share it).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// The attempt without success that first locks (default 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_attempts: Option<u32>,
    /// The first lock (default 60); each later one doubles...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_lock_seconds: Option<i64>,
    /// ...up to this (default 3600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lock_seconds: Option<i64>,
    /// Attempts are forgotten this long after the last one (default 24).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forget_after_hours: Option<i64>,
}

/// The per-client limits, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub max_clients: usize,
    pub login: RateLimit,
    pub second_factor: RateLimit,
    pub sign_up: RateLimit,
    pub password_reset: RateLimit,
}

/// Values given on the command line; each overrides file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub smtp_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    File(PathBuf),
    Inline(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The checked configuration the application runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub database_max_connections: u32,
    pub keyring_url: String,
    pub master_key: MasterKeySource,
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub trusted_proxies: Vec<IpNet>,
    pub request_timeout_seconds: u64,
    pub body_limit_bytes: usize,
    pub smtp_url: Option<String>,
    pub mail_from: String,
    pub public_url: String,
    pub passwords: PasswordParams,
    pub sessions: SessionPolicy,
    pub audit: AuditSettings,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// Whether the server logs every request to the access log.
    pub access_log_enabled: bool,
    /// Access logs older than this are deleted by retention (LOG-2).
    pub access_log_retention_days: i64,
    pub access_log_flush_interval_ms: u64,
    pub rate_limits: RateLimitSettings,
    pub lockout: LockoutPolicy,
    /// The deletion policy the lifecycle scheduler follows.
    pub lifecycle_policy: Policy,
}

const ENV_PREFIX: &str = "MAMORI_";

impl Config {
    /// Reads `path`, or `./mamori.toml` when it exists and no path is given.
    pub fn from_file(path: Option<&Path>) -> anyhow::Result<Config> {
        let (path, required) = match path {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from("mamori.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::from_toml(&text)
                .with_context(|| format!("in configuration file {}", path.display())),
            Err(error) if !required && error.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(error) => Err(error)
                .with_context(|| format!("cannot read configuration file {}", path.display())),
        }
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(text)?)
    }

    /// Applies `MAMORI_*` variables: `MAMORI_DATA_DIR`, `MAMORI_DATABASE__URL`,
    /// `MAMORI_SERVER__LISTEN`, ... (`__` separates a section from its key). Variables starting
    /// with `MAMORI_TEST_` or `MAMORI_BENCH_` belong to the test suite and the benchmarks and are
    /// passed over.
    pub fn with_env(
        self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table = toml::Table::try_from(&self)?;
        let mut any = false;
        for (name, value) in vars {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if key.starts_with("TEST_") || key.starts_with("BENCH_") || key.is_empty() {
                continue;
            }
            any = true;
            let path: Vec<String> = key.split("__").map(str::to_lowercase).collect();
            let parsed = env_value(&value);
            insert_path(&mut table, &path, parsed)
                .with_context(|| format!("environment variable {name}"))?;
        }
        if !any {
            return Ok(self);
        }
        toml::Value::Table(table)
            .try_into()
            .context("in MAMORI_* environment variables")
    }

    pub fn with_overrides(mut self, overrides: Overrides) -> Config {
        if overrides.data_dir.is_some() {
            self.data_dir = overrides.data_dir;
        }
        if overrides.database_url.is_some() {
            self.database.url = overrides.database_url;
        }
        if overrides.listen.is_some() {
            self.server.listen = overrides.listen;
        }
        if overrides.smtp_url.is_some() {
            self.smtp.url = overrides.smtp_url;
        }
        if overrides.tls_cert.is_some() {
            self.server.tls_cert = overrides.tls_cert;
        }
        if overrides.tls_key.is_some() {
            self.server.tls_key = overrides.tls_key;
        }
        self
    }

    /// Checks every value and fills in defaults.
    pub fn resolve(self) -> anyhow::Result<Settings> {
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from("mamori-data"));
        let database_url = match self.database.url {
            Some(url) => url,
            None => format!("sqlite://{}", data_dir.join("mamori.db").display()),
        };
        let engine = mamori_store::Engine::from_url(&database_url).with_context(|| {
            format!(
                "database url must start with sqlite:// or postgres://, got {}",
                redact_url(&database_url)
            )
        })?;
        let keyring_url = match (self.keyring.url, engine) {
            (Some(url), _) => url,
            (None, mamori_store::Engine::Sqlite) => {
                format!("sqlite://{}", data_dir.join("keyring.db").display())
            }
            (None, mamori_store::Engine::Postgres) => {
                mamori_store::db::sibling_database_url(&database_url, "_keyring")
                    .context("postgres database url must name a database")?
            }
        };
        if keyring_url == database_url {
            bail!("the keyring must not share the data store's database (keyring.url)");
        }
        let master_key = match (self.keyring.master_key, self.keyring.master_key_file) {
            (Some(_), Some(_)) => {
                bail!("set keyring.master_key or keyring.master_key_file, not both")
            }
            (Some(inline), None) => MasterKeySource::Inline(inline),
            (None, Some(path)) => MasterKeySource::File(path),
            (None, None) => MasterKeySource::File(data_dir.join("master.key")),
        };
        let listen_text = self
            .server
            .listen
            .unwrap_or_else(|| String::from("127.0.0.1:8080"));
        let listen: SocketAddr = listen_text
            .parse()
            .with_context(|| format!("server.listen: {listen_text} is not an address:port"))?;
        let tls = match (self.server.tls_cert, self.server.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        let trusted_proxies = self
            .server
            .trusted_proxies
            .iter()
            .map(|text| parse_net(text))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Some(url) = &self.smtp.url
            && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
        {
            bail!("smtp url must start with smtp:// or smtps://");
        }
        let defaults = PasswordParams::default();
        let passwords = PasswordParams {
            memory_kib: self.passwords.memory_kib.unwrap_or(defaults.memory_kib),
            iterations: self.passwords.iterations.unwrap_or(defaults.iterations),
            parallelism: self.passwords.parallelism.unwrap_or(defaults.parallelism),
            max_concurrent: self
                .passwords
                .max_concurrent
                .unwrap_or(defaults.max_concurrent),
        };
        if passwords.memory_kib < 8 * passwords.parallelism
            || passwords.iterations < 1
            || passwords.parallelism < 1
        {
            bail!(
                "passwords: memory_kib must be at least 8 x parallelism, iterations and parallelism at least 1"
            );
        }
        if passwords.max_concurrent < 1 {
            bail!("passwords.max_concurrent must be at least 1");
        }
        let policy_defaults = SessionPolicy::default();
        let idle_minutes = self
            .sessions
            .idle_timeout_minutes
            .unwrap_or(policy_defaults.idle_timeout_ms / 60_000);
        let lifetime_days = self
            .sessions
            .absolute_lifetime_days
            .unwrap_or(policy_defaults.absolute_lifetime_ms / 86_400_000);
        if idle_minutes < 1 || lifetime_days < 1 {
            bail!("sessions: idle_timeout_minutes and absolute_lifetime_days must be at least 1");
        }
        let sessions = SessionPolicy {
            idle_timeout_ms: idle_minutes * 60_000,
            absolute_lifetime_ms: lifetime_days * 86_400_000,
            touch_interval_ms: policy_defaults.touch_interval_ms,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url = self
            .server
            .public_url
            .unwrap_or_else(|| format!("{scheme}://{listen}"));
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("server.public_url must start with http:// or https://");
        }
        let mail_from = self
            .smtp
            .from
            .unwrap_or_else(|| String::from("Mamori <no-reply@localhost>"));
        let log_format = match self.log.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("log.format must be text or json, got {other}"),
        };
        let audit = AuditSettings {
            retention_days: self.audit.retention_days.unwrap_or(400),
            checkpoint_every_events: self.audit.checkpoint_every_events.unwrap_or(1000),
            checkpoint_every_minutes: self.audit.checkpoint_every_minutes.unwrap_or(10),
            app_events_per_second: self.audit.app_events_per_second.unwrap_or(1000),
        };
        if audit.retention_days < 1
            || audit.checkpoint_every_events < 1
            || audit.checkpoint_every_minutes < 1
            || audit.app_events_per_second < 1
        {
            bail!(
                "audit: retention_days, checkpoint_every_events, checkpoint_every_minutes and \
                 app_events_per_second must be at least 1"
            );
        }
        let access_log_retention_days = self.access_log.retention_days.unwrap_or(545);
        if !(1..=545).contains(&access_log_retention_days) {
            bail!(
                "access_log.retention_days must be from 1 to 545 (logs are kept at most 545 days)"
            );
        }
        let access_log_flush_interval_ms = self.access_log.flush_interval_ms.unwrap_or(1000);
        if access_log_flush_interval_ms < 1 {
            bail!("access_log.flush_interval_ms must be at least 1");
        }
        let rate_limits = RateLimitSettings {
            max_clients: self.rate_limits.max_clients.unwrap_or(100_000),
            login: self.rate_limits.login.resolve("login", 20, 20)?,
            second_factor: self
                .rate_limits
                .second_factor
                .resolve("second_factor", 20, 20)?,
            sign_up: self.rate_limits.sign_up.resolve("sign_up", 5, 20)?,
            password_reset: self
                .rate_limits
                .password_reset
                .resolve("password_reset", 5, 10)?,
        };
        if rate_limits.max_clients < 1 {
            bail!("rate_limits.max_clients must be at least 1");
        }
        let lockout_defaults = LockoutPolicy::default();
        let lockout = LockoutPolicy {
            threshold: self
                .lockout
                .after_attempts
                .unwrap_or(lockout_defaults.threshold),
            first_lock_ms: self
                .lockout
                .first_lock_seconds
                .map_or(lockout_defaults.first_lock_ms, |seconds| seconds * 1000),
            max_lock_ms: self
                .lockout
                .max_lock_seconds
                .map_or(lockout_defaults.max_lock_ms, |seconds| seconds * 1000),
            forget_after_ms: self
                .lockout
                .forget_after_hours
                .map_or(lockout_defaults.forget_after_ms, |hours| hours * 3_600_000),
        };
        if lockout.threshold < 1
            || lockout.first_lock_ms < 1000
            || lockout.max_lock_ms < lockout.first_lock_ms
            || lockout.forget_after_ms < lockout.max_lock_ms
        {
            bail!(
                "lockout: after_attempts must be at least 1, first_lock_seconds at least 1, \
                 max_lock_seconds at least first_lock_seconds, and forget_after_hours at least \
                 max_lock_seconds"
            );
        }
        let lifecycle_policy = lifecycle_policy(&self.lifecycle)?;
        Ok(Settings {
            rate_limits,
            lockout,
            lifecycle_policy,
            data_dir,
            database_url,
            database_max_connections: self.database.max_connections.unwrap_or(match engine {
                mamori_store::Engine::Sqlite => 8,
                mamori_store::Engine::Postgres => 16,
            }),
            keyring_url,
            master_key,
            listen,
            tls,
            trusted_proxies,
            request_timeout_seconds: self.server.request_timeout_seconds.unwrap_or(30),
            body_limit_bytes: self.server.body_limit_bytes.unwrap_or(64 * 1024),
            smtp_url: self.smtp.url,
            mail_from,
            public_url,
            passwords,
            sessions,
            audit,
            log_format,
            log_filter: self.log.filter.unwrap_or_else(|| String::from("info")),
            access_log_enabled: self.access_log.enabled.unwrap_or(true),
            access_log_retention_days,
            access_log_flush_interval_ms,
        })
    }
}

/// Loads file, environment and flags in that order.
pub fn load(config_file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Settings> {
    Config::from_file(config_file)?
        .with_env(std::env::vars())?
        .with_overrides(overrides)
        .resolve()
}

fn parse_net(text: &str) -> anyhow::Result<IpNet> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    let address: std::net::IpAddr = text.parse().with_context(|| {
        format!("server.trusted_proxies: {text} is not an address or CIDR range")
    })?;
    Ok(IpNet::from(address))
}

/// A database URL with its password hidden, for messages.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// Environment values are strings; numbers, booleans and arrays are read as TOML.
fn env_value(text: &str) -> toml::Value {
    let looks_typed =
        text.parse::<i64>().is_ok() || text == "true" || text == "false" || text.starts_with('[');
    if looks_typed
        && let Ok(table) = toml::from_str::<toml::Table>(&format!("v = {text}"))
        && let Some(value) = table.get("v")
    {
        return value.clone();
    }
    toml::Value::String(text.to_owned())
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    match path {
        [] => bail!("empty name"),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => insert_path(inner, rest, value),
                _ => bail!("{first} is not a section"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_environment_then_flags() {
        let config = Config::from_toml(
            "data_dir = \"/srv/file\"\n[server]\nlisten = \"127.0.0.1:1000\"\n[passwords]\nmemory_kib = 1024\n",
        )
        .unwrap();
        let config = config
            .with_env(env(&[
                ("MAMORI_SERVER__LISTEN", "127.0.0.1:2000"),
                ("MAMORI_PASSWORDS__ITERATIONS", "3"),
                ("MAMORI_TEST_DATABASE_URL", "ignored"),
                ("PATH", "/bin"),
            ]))
            .unwrap();
        let settings = config
            .with_overrides(Overrides {
                data_dir: Some(PathBuf::from("/srv/flag")),
                ..Overrides::default()
            })
            .resolve()
            .unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:2000");
        assert_eq!(settings.passwords.memory_kib, 1024);
        assert_eq!(settings.passwords.iterations, 3);
        assert_eq!(settings.data_dir, PathBuf::from("/srv/flag"));
        assert_eq!(settings.database_url, "sqlite:///srv/flag/mamori.db");
        assert_eq!(settings.keyring_url, "sqlite:///srv/flag/keyring.db");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::from_toml("lisen = 1").is_err());
        assert!(
            Config::default()
                .with_env(env(&[("MAMORI_SERVER__LISTN", "x")]))
                .is_err()
        );
        let bad_listen = Config {
            server: ServerConfig {
                listen: Some(String::from("nowhere")),
                ..ServerConfig::default()
            },
            ..Config::default()
        };
        assert!(bad_listen.resolve().is_err());
        let bad_url = Config {
            database: DatabaseConfig {
                url: Some(String::from("mysql://x")),
                ..DatabaseConfig::default()
            },
            ..Config::default()
        };
        assert!(bad_url.resolve().is_err());
    }

    #[test]
    fn access_log_section() {
        let settings = Config::default().resolve().unwrap();
        assert!(settings.access_log_enabled);
        assert_eq!(settings.access_log_retention_days, 545);
        assert_eq!(settings.access_log_flush_interval_ms, 1000);
        let settings = Config::from_toml("[access_log]\nretention_days = 30\nenabled = false\n")
            .unwrap()
            .with_env(env(&[
                ("MAMORI_ACCESS_LOG__RETENTION_DAYS", "90"),
                ("MAMORI_ACCESS_LOG__FLUSH_INTERVAL_MS", "250"),
            ]))
            .unwrap()
            .resolve()
            .unwrap();
        assert!(!settings.access_log_enabled);
        assert_eq!(settings.access_log_retention_days, 90);
        assert_eq!(settings.access_log_flush_interval_ms, 250);
        for bad in [
            "[access_log]\nretention_days = 0\n",
            "[access_log]\nflush_interval_ms = 0\n",
        ] {
            assert!(Config::from_toml(bad).unwrap().resolve().is_err(), "{bad}");
        }
        assert!(Config::from_toml("[access_log]\nretention = 5\n").is_err());
    }

    #[test]
    fn rate_limit_and_lockout_sections() {
        let settings = Config::default().resolve().unwrap();
        assert_eq!(settings.rate_limits.login, RateLimit::per_minute(20, 20));
        assert_eq!(settings.rate_limits.sign_up, RateLimit::per_minute(5, 20));
        assert_eq!(settings.rate_limits.max_clients, 100_000);
        assert_eq!(settings.lockout, LockoutPolicy::default());
        let settings = Config::from_toml(
            "[rate_limits]\nlogin = { per_minute = 3, burst = 4 }\n\
             [lockout]\nafter_attempts = 3\nmax_lock_seconds = 600\n",
        )
        .unwrap()
        .with_env(env(&[
            ("MAMORI_RATE_LIMITS__PASSWORD_RESET__BURST", "2"),
            ("MAMORI_LOCKOUT__FIRST_LOCK_SECONDS", "30"),
        ]))
        .unwrap()
        .resolve()
        .unwrap();
        assert_eq!(settings.rate_limits.login, RateLimit::per_minute(3, 4));
        assert_eq!(
            settings.rate_limits.password_reset,
            RateLimit::per_minute(5, 2)
        );
        assert_eq!(settings.lockout.threshold, 3);
        assert_eq!(settings.lockout.first_lock_ms, 30_000);
        assert_eq!(settings.lockout.max_lock_ms, 600_000);
        for bad in [
            "[rate_limits]\nlogin = { per_minute = 0 }\n",
            "[rate_limits]\nmax_clients = 0\n",
            "[lockout]\nafter_attempts = 0\n",
            "[lockout]\nfirst_lock_seconds = 120\nmax_lock_seconds = 60\n",
        ] {
            assert!(Config::from_toml(bad).unwrap().resolve().is_err(), "{bad}");
        }
        assert!(Config::from_toml("[lockout]\nattempts = 5\n").is_err());
    }

    #[test]
    fn lifecycle_section() {
        let settings = Config::default().resolve().unwrap();
        assert_eq!(settings.lifecycle_policy.name, "whitepaper-2025");
        let settings = Config::default()
            .with_env(env(&[("MAMORI_LIFECYCLE__POLICY", "terms-v3")]))
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(settings.lifecycle_policy.name, "terms-v3");
        let error = Config::from_toml("[lifecycle]\npolicy = \"nope\"\n")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("built in: whitepaper-2025, terms-v3"),
            "{error:#}"
        );
        let file = std::env::temp_dir().join(format!(
            "mamori-lifecycle-policy-{}.toml",
            std::process::id()
        ));
        std::fs::write(&file, "name = \"x\"\nbackup_retention_days = -1\n").unwrap();
        let config = Config {
            lifecycle: LifecycleConfig {
                policy_file: Some(file.clone()),
                ..LifecycleConfig::default()
            },
            ..Config::default()
        };
        let error = config.resolve().unwrap_err();
        let _ = std::fs::remove_file(&file);
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
        assert!(Config::from_toml("[lifecycle]\nname = \"x\"\n").is_err());
    }

    #[test]
    fn postgres_keyring_is_a_sibling_database() {
        let settings = Config::default()
            .with_overrides(Overrides {
                database_url: Some(String::from("postgres://u:secret@h/mamori")),
                ..Overrides::default()
            })
            .resolve()
            .unwrap();
        assert_eq!(settings.keyring_url, "postgres://u:secret@h/mamori_keyring");
        assert_eq!(
            redact_url(&settings.database_url),
            "postgres://u:***@h/mamori"
        );
    }
}
