//! Building and running the server: open the databases, assemble the router with its layers,
//! bind, serve until a shutdown signal, and run the background jobs beside it.

use crate::access_log::{self, AccessLogFlush, AccessLogWriter};
use crate::clock::Clock;
use crate::config::{AuditSettings, MasterKeySource, Settings, redact_url};
use crate::error::{ApiError, problem_response};
use crate::rate_limit::{RateLimiter, RateLimits};
use crate::routes;
use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use mamori_keyring::{Keyring, MasterKey};
use mamori_service::retention::RetentionSettings;
use mamori_service::{MailSettings, MailTransport, PasswordHashing, Services, SmtpMailer};
use mamori_store::{SqlStore, Store};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub services: Arc<Services>,
    pub clock: Arc<dyn Clock>,
    pub trusted_proxies: Arc<[IpNet]>,
    pub tls: bool,
    /// Events per second each app may send to the audit trail, on this node.
    pub app_event_limiter: Arc<RateLimiter>,
    /// Per-client limits of the credential endpoints (`rate_limit::PerIp`).
    pub rate_limits: Arc<RateLimits>,
}

/// The stores and services, opened and migrated, without a listener: what the command line's
/// data commands use.
pub struct Backend {
    pub services: Arc<Services>,
    pub store: Arc<SqlStore>,
    pub keyring: Arc<Keyring>,
}

impl Backend {
    pub async fn open(settings: &Settings) -> anyhow::Result<Backend> {
        ensure_data_dir(settings)?;
        let master = match &settings.master_key {
            MasterKeySource::File(path) => MasterKey::load_or_create(path)?,
            MasterKeySource::Inline(text) => MasterKey::parse(text)?,
        };
        if settings.database_url.starts_with("postgres") {
            mamori_store::db::ensure_postgres_database(&settings.database_url)
                .await
                .with_context(|| {
                    format!(
                        "cannot create the database {}; create it or grant CREATEDB",
                        redact_url(&settings.database_url)
                    )
                })?;
        }
        let store = SqlStore::open(&settings.database_url, settings.database_max_connections)
            .await
            .with_context(|| {
                format!(
                    "cannot open the data store at {}",
                    redact_url(&settings.database_url)
                )
            })?;
        if store.engine() == mamori_store::Engine::Postgres
            && settings.keyring_url.starts_with("postgres")
        {
            mamori_store::db::ensure_postgres_database(&settings.keyring_url)
                .await
                .with_context(|| {
                    format!(
                        "cannot create the keyring database {}; create it or set keyring.url",
                        redact_url(&settings.keyring_url)
                    )
                })?;
        }
        let keyring = Keyring::open(&settings.keyring_url, master)
            .await
            .with_context(|| {
                format!(
                    "cannot open the keyring at {}",
                    redact_url(&settings.keyring_url)
                )
            })?;
        let passwords = PasswordHashing::new(settings.passwords)?;
        let store = Arc::new(store);
        let keyring = Arc::new(keyring);
        mamori_service::mail::check_sender(&settings.mail_from)?;
        let transport: Option<Arc<dyn MailTransport>> = match &settings.smtp_url {
            Some(url) => Some(Arc::new(SmtpMailer::from_url(url)?)),
            None => None,
        };
        let mail_settings = MailSettings {
            from: settings.mail_from.clone(),
            public_url: settings.public_url.clone(),
        };
        let services = Arc::new(
            Services::new(
                store.clone() as Arc<dyn Store>,
                keyring.clone(),
                passwords,
                settings.sessions,
            )
            .with_mail(mail_settings, transport)
            .with_lifecycle_policy(settings.lifecycle_policy.clone())
            .with_retention(RetentionSettings {
                audit_days: settings.audit.retention_days,
                access_log_days: settings.access_log_retention_days,
            })
            .with_lockout(settings.lockout),
        );
        Ok(Backend {
            services,
            store,
            keyring,
        })
    }

    pub async fn close(&self) {
        self.store.close().await;
        self.keyring.close().await;
    }
}

fn rate_limits(settings: &Settings) -> RateLimits {
    let limits = settings.rate_limits;
    let table = |limit| RateLimiter::with_limit(limit, limits.max_clients);
    RateLimits {
        login: table(limits.login),
        second_factor: table(limits.second_factor),
        sign_up: table(limits.sign_up),
        password_reset: table(limits.password_reset),
    }
}

fn ensure_data_dir(settings: &Settings) -> anyhow::Result<()> {
    let dir = &settings.data_dir;
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict the data dir {}", dir.display()))?;
        }
    }
    Ok(())
}

pub struct Application {
    listener: std::net::TcpListener,
    address: SocketAddr,
    router: Router,
    backend: Backend,
    clock: Arc<dyn Clock>,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    audit: AuditSettings,
    access_log: Option<(AccessLogWriter, AccessLogFlush)>,
}

impl Application {
    /// Opens the stores (running migrations), builds the router and binds the listener.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Application> {
        let backend = Backend::open(&settings).await?;
        // Checks are answered from memory: the access-control index is loaded before listening.
        let revision = backend
            .services
            .load_authz()
            .await
            .context("cannot load the access-control index")?;
        tracing::debug!(revision, "access-control index loaded");
        let tls = match &settings.tls {
            Some((cert, key)) => {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                Some(
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                        .await
                        .with_context(|| {
                            format!(
                                "cannot load TLS certificate {} and key {}",
                                cert.display(),
                                key.display()
                            )
                        })?,
                )
            }
            None => None,
        };
        let state = AppState {
            services: backend.services.clone(),
            clock: clock.clone(),
            trusted_proxies: settings.trusted_proxies.clone().into(),
            tls: tls.is_some(),
            app_event_limiter: Arc::new(RateLimiter::new(
                settings.audit.app_events_per_second,
                settings.audit.app_events_per_second.saturating_mul(2),
            )),
            rate_limits: Arc::new(rate_limits(&settings)),
        };
        let (access_logger, access_log) = if settings.access_log_enabled {
            let (logger, writer) = access_log::access_log(
                clock.clone(),
                state.trusted_proxies.clone(),
                Duration::from_millis(settings.access_log_flush_interval_ms),
            );
            let flush = logger.flush_handle();
            (Some(logger), Some((writer, flush)))
        } else {
            (None, None)
        };
        let router = router(state, &settings, access_logger);
        let listener = std::net::TcpListener::bind(settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        Ok(Application {
            listener,
            address,
            router,
            backend,
            clock,
            tls,
            audit: settings.audit,
            access_log,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn services(&self) -> Arc<Services> {
        self.backend.services.clone()
    }

    /// A handle that makes the access log writer store the records of every request answered
    /// so far, for tests that must not sleep; `None` when the access log is off.
    pub fn access_log_flush(&self) -> Option<AccessLogFlush> {
        self.access_log.as_ref().map(|(_, flush)| flush.clone())
    }

    /// Serves until `shutdown` completes; requests in flight then finish before this returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_jobs, jobs_stopped) = tokio::sync::watch::channel(false);
        // The jobs start `JOB_START_SPACING` apart (see there).
        let started = |order: u32, job| {
            tokio::spawn(start_after(
                JOB_START_SPACING * order,
                jobs_stopped.clone(),
                job,
            ))
        };
        let credentials = {
            let services = self.backend.services.clone();
            started(
                0,
                Box::pin(every(CREDENTIAL_SYNC, jobs_stopped.clone(), move || {
                    let services = services.clone();
                    async move {
                        if let Err(error) = services.sync_credential_cache().await {
                            tracing::error!(error = %error, "credential cache sync failed");
                        }
                    }
                })),
            )
        };
        let authz = started(
            1,
            Box::pin(refresh_authz(
                self.backend.services.clone(),
                jobs_stopped.clone(),
            )),
        );
        let jobs = started(
            2,
            Box::pin(run_jobs(
                self.backend.services.clone(),
                self.clock.clone(),
                jobs_stopped.clone(),
            )),
        );
        let access_log = self.access_log.map(|(writer, _)| {
            tokio::spawn(writer.run(self.backend.services.clone(), jobs_stopped.clone()))
        });
        let mail = started(
            3,
            Box::pin(send_mail(
                self.backend.services.clone(),
                self.clock.clone(),
                jobs_stopped.clone(),
            )),
        );
        let checkpoints = started(
            4,
            Box::pin(sign_checkpoints(
                self.backend.services.clone(),
                self.clock.clone(),
                self.audit,
                jobs_stopped.clone(),
            )),
        );
        let purges = started(
            5,
            Box::pin(run_purges(
                self.backend.services.clone(),
                self.clock.clone(),
                jobs_stopped.clone(),
            )),
        );
        let retention = started(
            6,
            Box::pin(run_retention(
                self.backend.services.clone(),
                self.clock.clone(),
                jobs_stopped.clone(),
            )),
        );
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let result = match self.tls {
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let shutdown_handle = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    shutdown_handle.graceful_shutdown(Some(Duration::from_secs(30)));
                });
                axum_server::from_tcp_rustls(self.listener, tls)
                    .map_err(anyhow::Error::from)?
                    .handle(handle)
                    .serve(service)
                    .await
                    .map_err(anyhow::Error::from)
            }
            None => {
                let listener = tokio::net::TcpListener::from_std(self.listener)?;
                axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .map_err(anyhow::Error::from)
            }
        };
        let _ = stop_jobs.send(true);
        let _ = jobs.await;
        let _ = mail.await;
        let _ = checkpoints.await;
        let _ = retention.await;
        let _ = purges.await;
        let _ = authz.await;
        let _ = credentials.await;
        // After the server: the requests that finished during shutdown are written too.
        if let Some(access_log) = access_log {
            let _ = access_log.await;
        }
        self.backend.close().await;
        result
    }
}

/// How often the credential cache learns of other processes' revocations (see the store's
/// `cache` module); the cache stops answering if this falls far behind.
const CREDENTIAL_SYNC: Duration = Duration::from_millis(250);

/// How far apart the background jobs start. Started together, each would take a database
/// connection at the same moment, and the pool keeps every connection it opens (a SQLite
/// connection holds its own parsed schema, prepared statements and page cache, about 0.3 MB
/// with its worker thread): an idle server kept six where one or two do.
const JOB_START_SPACING: Duration = Duration::from_millis(40);

/// A background job's future, boxed so that the jobs share one type.
type Job = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `job` after `delay`, unless told to stop first.
async fn start_after(delay: Duration, mut stop: tokio::sync::watch::Receiver<bool>, job: Job) {
    let stopped = tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = stop.wait_for(|stopped| *stopped) => true,
    };
    if !stopped {
        job.await;
    }
}

/// Runs `tick` every `period` until told to stop.
async fn every<F, Fut>(period: Duration, mut stop: tokio::sync::watch::Receiver<bool>, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => tick().await,
            _ = stop.changed() => break,
        }
    }
}

/// Applies other nodes' access-control changes every second until told to stop; a check
/// that carries a newer consistency token catches up at once instead.
async fn refresh_authz(services: Arc<Services>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if let Err(error) = services.refresh_authz().await {
                    tracing::error!(error = %error, "access-control index refresh failed");
                }
            }
            _ = stop.changed() => break,
        }
    }
}

/// Runs the background jobs and the data lifecycle's scheduler every minute until told to
/// stop.
async fn run_jobs(
    services: Arc<Services>,
    clock: Arc<dyn Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                match services.run_jobs_once(clock.now()).await {
                    Ok(report) if !report.is_idle() => tracing::info!(?report, "background jobs"),
                    Ok(_) => {}
                    Err(error) => tracing::error!(error = %error, "background jobs failed"),
                }
                // The data lifecycle (issue 6): each organization's due step, once across nodes.
                match services.run_lifecycle_once(clock.now(), false).await {
                    Ok(run) if !run.actions.is_empty() => {
                        tracing::info!(actions = ?run.actions, "data lifecycle");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!(error = %error, "data lifecycle failed"),
                }
            }
            _ = stop.changed() => break,
        }
    }
}

/// Advances organization purges and delivers apps' `org.purge_started` webhooks every two
/// seconds until told to stop (see `mamori_service::purge`).
async fn run_purges(
    services: Arc<Services>,
    clock: Arc<dyn Clock>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    every(PURGE_PERIOD, stop, move || {
        let services = services.clone();
        let clock = clock.clone();
        async move {
            match services.run_purges_once(clock.now()).await {
                Ok(report) if !report.is_idle() => tracing::info!(?report, "purges"),
                Ok(_) => {}
                Err(error) => tracing::error!(error = %error, "purge round failed"),
            }
            match services.deliver_webhooks_once(clock.now()).await {
                Ok(report) if !report.is_idle() => tracing::info!(?report, "webhooks"),
                Ok(_) => {}
                Err(error) => tracing::error!(error = %error, "webhook delivery failed"),
            }
        }
    })
    .await;
}

const PURGE_PERIOD: Duration = Duration::from_secs(2);

/// Delivers the outbox every few seconds until told to stop.
async fn send_mail(
    services: Arc<Services>,
    clock: Arc<dyn Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(2));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                match services.deliver_mail_once(clock.now()).await {
                    Ok(report) if report != Default::default() => tracing::info!(?report, "mail delivery"),
                    Ok(_) => {}
                    Err(error) => tracing::error!(error = %error, "mail delivery failed"),
                }
            }
            _ = stop.changed() => break,
        }
    }
}

/// Signs audit checkpoints every few seconds: a chain's head is signed once it moved
/// `checkpoint_every_events` events, or moved at all `checkpoint_every_minutes` after its last
/// checkpoint.
async fn sign_checkpoints(
    services: Arc<Services>,
    clock: Arc<dyn Clock>,
    audit: AuditSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let now = clock.now();
                let stale_before = now.plus_millis(-audit.checkpoint_every_minutes * 60_000);
                match services
                    .run_audit_checkpoints_once(audit.checkpoint_every_events, stale_before, now)
                    .await
                {
                    Ok(0) => {}
                    Ok(signed) => tracing::debug!(signed, "audit checkpoints"),
                    Err(error) => tracing::error!(error = %error, "audit checkpoints failed"),
                }
            }
            _ = stop.changed() => break,
        }
    }
}

/// Runs retention at start and then daily: every entry is deleted within a day of falling
/// due, well inside the promised 10 days.
async fn run_retention(
    services: Arc<Services>,
    clock: Arc<dyn Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(24 * 60 * 60));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                match services.run_retention_once(clock.now()).await {
                    Ok(report) => tracing::info!(?report, "retention"),
                    Err(error) => tracing::error!(error = %error, "retention failed"),
                }
            }
            _ = stop.changed() => break,
        }
    }
}

/// The OpenAPI document and the router, built from the same route definitions.
pub fn api_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::<AppState>::new()
        .merge(routes::health::router())
        .merge(routes::accounts::router())
        .merge(routes::sessions::router())
        .merge(routes::me::router())
        .merge(routes::recovery::router())
        .merge(routes::two_step::router())
        .merge(routes::personal_tokens::router())
        .merge(routes::operator::router())
        .merge(routes::access_logs::router())
        .merge(routes::orgs::router())
        .merge(routes::local_accounts::router())
        .merge(routes::teams::router())
        .merge(routes::org_apps::router())
        .merge(routes::app_api::router())
        .merge(routes::audit::router())
        .merge(routes::authz::router())
        .merge(routes::purge::router())
        .merge(routes::lifecycle::router())
        .split_for_parts();
    openapi.info.title = String::from("Mamori");
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    openapi.info.description = Some(String::from(
        "Accounts, access control and data governance for SaaS providers. Errors are RFC 9457 \
         problems with a stable `code`.",
    ));
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    (router, openapi)
}

fn router(
    state: AppState,
    settings: &Settings,
    access_logger: Option<access_log::AccessLogger>,
) -> Router {
    let (api, openapi) = api_router();
    let openapi_json = Arc::new(openapi.to_json().unwrap_or_default());
    let timeout = Duration::from_secs(settings.request_timeout_seconds);
    let tls = state.tls;
    let x_request_id = HeaderName::from_static("x-request-id");
    api.route(
        "/api/openapi.json",
        axum::routing::get(move || {
            let openapi_json = openapi_json.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    openapi_json.as_ref().clone(),
                )
            }
        }),
    )
    .fallback(|| async { ApiError::RouteNotFound })
    .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
    .with_state(state)
    .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
    .layer(middleware::from_fn_with_state(timeout, time_limit))
    .layer(CatchPanicLayer::custom(|_panic| {
        problem_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error",
            String::from("something went wrong on our side"),
            Vec::new(),
        )
    }))
    .layer(middleware::from_fn_with_state(tls, security_headers))
    .layer(
        TraceLayer::new_for_http().make_span_with(|request: &Request| {
            // The request ID is in every log line of the request, so a problem's ID finds it.
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("");
            tracing::info_span!(
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %request_id,
            )
        }),
    )
    // Inside the request-ID layers, so the log has the ID; outside everything else, so it sees
    // every answer, the panic's and the timeout's too.
    .layer(middleware::from_fn_with_state(
        access_logger,
        access_log::record,
    ))
    .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
    .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
    .layer(middleware::from_fn(sanitize_request_id))
}

/// A client may pass its own `X-Request-Id`; one that is too long or not plain text is replaced.
async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let acceptable = request.headers().get("x-request-id").map(|value| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 128
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if acceptable == Some(false) {
        request.headers_mut().remove("x-request-id");
    }
    next.run(request).await
}

async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

async fn security_headers(State(tls): State<bool>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    response
}
