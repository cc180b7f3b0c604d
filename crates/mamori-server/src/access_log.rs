//! The access log (LOG-1, LOG-2, LOG-3): a middleware that records every HTTP request, and the
//! writer task that stores the records in batches.
//!
//! For each request the middleware notes the time (from the app's [`Clock`], UTC), method,
//! path, query string with secret values removed ([`redact_query`]), client IP (behind
//! trusted proxies, as [`client_ip`] finds it), user agent, the organization named in the path,
//! and the request ID; the authentication extractors note the principal into a
//! [`PrincipalSlot`] the middleware put in the request's extensions. When the response is
//! ready, status and latency complete the record, which goes to a bounded channel.
//!
//! **A request never waits for the database.** The writer task takes records from the channel
//! and writes them through [`Services::record_access_logs`] when a batch is full or when the
//! flush interval has passed, and writes what is left when the server stops. When the channel
//! is full (the database is slower than the traffic for longer than the channel can absorb),
//! the record is dropped and counted, and the writer logs one warning per interval with the
//! count. The trade-off is deliberate: losing some access log lines under overload is better
//! than making every request wait on, or fail with, the log's own write. A write that fails is
//! logged and its batch is lost for the same reason.
//!
//! A request whose client goes away before the answer is logged with status 499 (the
//! convention for "client closed request"). Requests that never reach the router (a malformed
//! HTTP request refused by the connection itself, or a TLS handshake that fails) are not
//! logged.
//!
//! Must never: block a request on the database, or store a query value whose name marks it as
//! a secret.

use crate::clock::Clock;
use crate::extract::client_ip;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use mamori_core::OrgId;
use mamori_service::{AccessLogEntry, Authenticated, LoggedPrincipal, Services};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Records waiting for the writer; beyond this, records are dropped rather than wait.
const CHANNEL_CAPACITY: usize = 10_000;
/// A batch this large is written at once, without waiting for the interval.
const BATCH_SIZE: usize = 500;
/// At most this many records are taken from the channel at a time: under a backlog one
/// transaction writes them all, rather than one transaction per `BATCH_SIZE`.
const MAX_TAKE: usize = 4_096;
/// What replaces a secret value, or a whole query string that cannot be parsed.
pub const REDACTED: &str = "REDACTED";
/// A query parameter whose name contains one of these (in any case) has its value replaced.
const SECRET_NAME_PARTS: [&str; 10] = [
    "token",
    "code",
    "password",
    "secret",
    "key",
    "signature",
    "auth",
    "session",
    "challenge",
    "credential",
];
/// Mamori's own secrets (session, operator, app and invitation tokens) are removed wherever
/// they appear in a query, whatever the parameter is called.
const SECRET_VALUE_PREFIXES: [&str; 4] = ["mms_", "mmo_", "mma_", "mmi_"];
/// Status logged for a request whose client went away before the answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Where authentication notes who made the request, for the log. The middleware puts one in
/// every request's extensions; the first principal noted wins.
#[derive(Debug, Clone, Default)]
pub struct PrincipalSlot(Arc<OnceLock<LoggedPrincipal>>);

impl PrincipalSlot {
    pub fn note(&self, authenticated: &Authenticated) {
        let _ = self.0.set(LoggedPrincipal::of(authenticated));
    }

    fn principal(&self) -> Option<LoggedPrincipal> {
        self.0.get().cloned()
    }
}

enum Message {
    Record(Box<AccessLogEntry>),
    /// Write everything received so far, then answer.
    Flush(oneshot::Sender<()>),
}

/// The middleware's state: where records go and how requests are read.
#[derive(Clone)]
pub struct AccessLogger {
    sender: mpsc::Sender<Message>,
    clock: Arc<dyn Clock>,
    trusted_proxies: Arc<[IpNet]>,
    dropped: Arc<AtomicU64>,
}

/// The task that stores records; [`AccessLogWriter::run`] it beside the server.
pub struct AccessLogWriter {
    receiver: mpsc::Receiver<Message>,
    dropped: Arc<AtomicU64>,
    flush_interval: Duration,
    batch_size: usize,
}

/// Makes the writer write everything logged so far; for tests, which must not sleep.
#[derive(Clone)]
pub struct AccessLogFlush(mpsc::Sender<Message>);

impl AccessLogFlush {
    /// Returns once every request answered before the call is stored (or the writer stopped).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.0.send(Message::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// The middleware's state and its writer, joined by a bounded channel.
pub fn access_log(
    clock: Arc<dyn Clock>,
    trusted_proxies: Arc<[IpNet]>,
    flush_interval: Duration,
) -> (AccessLogger, AccessLogWriter) {
    with_capacity(
        clock,
        trusted_proxies,
        flush_interval,
        CHANNEL_CAPACITY,
        BATCH_SIZE,
    )
}

fn with_capacity(
    clock: Arc<dyn Clock>,
    trusted_proxies: Arc<[IpNet]>,
    flush_interval: Duration,
    capacity: usize,
    batch_size: usize,
) -> (AccessLogger, AccessLogWriter) {
    let (sender, receiver) = mpsc::channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    (
        AccessLogger {
            sender,
            clock,
            trusted_proxies,
            dropped: dropped.clone(),
        },
        AccessLogWriter {
            receiver,
            dropped,
            flush_interval,
            batch_size,
        },
    )
}

impl AccessLogger {
    pub fn flush_handle(&self) -> AccessLogFlush {
        AccessLogFlush(self.sender.clone())
    }

    /// Queues a record without waiting; a full queue drops it and counts the loss.
    fn submit(&self, entry: AccessLogEntry) {
        if self
            .sender
            .try_send(Message::Record(Box::new(entry)))
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The middleware. Without a logger (`access_log.enabled = false`) it only passes through.
pub async fn record(
    State(logger): State<Option<AccessLogger>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(logger) = logger else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let slot = PrincipalSlot::default();
    request.extensions_mut().insert(slot.clone());
    let entry = entry_of(&logger, &request);
    let mut pending = Pending {
        logger,
        slot,
        started,
        entry: Some(entry),
    };
    let response = next.run(request).await;
    pending.finish(response.status().as_u16());
    response
}

/// A record waiting for its status. Dropped unfinished (the client went away and the request's
/// future with it), it is logged with status 499.
struct Pending {
    logger: AccessLogger,
    slot: PrincipalSlot,
    started: Instant,
    entry: Option<AccessLogEntry>,
}

impl Pending {
    fn finish(&mut self, status: u16) {
        let Some(mut entry) = self.entry.take() else {
            return;
        };
        entry.status = status;
        entry.latency_us = i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX);
        entry.principal = self.slot.principal();
        self.logger.submit(entry);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.finish(CLIENT_CLOSED_REQUEST);
    }
}

/// What is known of a request before it is handled.
fn entry_of(logger: &AccessLogger, request: &Request) -> AccessLogEntry {
    let headers = request.headers();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| client_ip(info.0.ip(), headers, &logger.trusted_proxies).to_string());
    let text_header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let path = request.uri().path();
    AccessLogEntry {
        logged_at: logger.clock.now(),
        method: request.method().as_str().to_owned(),
        path: path.to_owned(),
        query: request
            .uri()
            .query()
            .filter(|query| !query.is_empty())
            .map(redact_query),
        status: 0,
        latency_us: 0,
        client_ip: client,
        user_agent: text_header(header::USER_AGENT.as_str()),
        principal: None,
        org_id: org_in_path(path),
        request_id: text_header("x-request-id"),
    }
}

/// The organization a path is about: `/api/v1/orgs/{org}...`, or an app's
/// `/api/v1/app/orgs/{org}...`, when the segment is an organization ID.
fn org_in_path(path: &str) -> Option<OrgId> {
    let rest = path
        .strip_prefix("/api/v1/orgs/")
        .or_else(|| path.strip_prefix("/api/v1/app/orgs/"))?;
    OrgId::parse(rest.split('/').next()?)
}

/// The query string with every secret value replaced by [`REDACTED`]: the value of a parameter
/// whose name contains (in any case) token, code, password, secret, key, signature, auth,
/// session, challenge or credential, and any parameter holding one of Mamori's own secrets.
/// Other parameters stay exactly as sent. A query that cannot be decoded (a bad `%` escape, or
/// bytes that are not UTF-8) is replaced as a whole, since its secrets cannot be found.
pub fn redact_query(query: &str) -> String {
    let mut pairs = Vec::new();
    for pair in query.split('&') {
        let (raw_name, raw_value) = match pair.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (pair, None),
        };
        let Some(name) = form_decode(raw_name) else {
            return String::from(REDACTED);
        };
        let value = match raw_value.map(form_decode) {
            Some(None) => return String::from(REDACTED),
            Some(Some(value)) => Some(value),
            None => None,
        };
        let holds_own_secret = |text: &str| {
            SECRET_VALUE_PREFIXES
                .iter()
                .any(|prefix| text.contains(prefix))
        };
        if holds_own_secret(&name) {
            pairs.push(String::from(REDACTED));
            continue;
        }
        let lower_name = name.to_lowercase();
        let secret_name = SECRET_NAME_PARTS
            .iter()
            .any(|part| lower_name.contains(part));
        match value {
            Some(value) if secret_name || holds_own_secret(&value) => {
                pairs.push(format!("{raw_name}={REDACTED}"));
            }
            _ => pairs.push(pair.to_owned()),
        }
    }
    pairs.join("&")
}

/// Decodes one `application/x-www-form-urlencoded` component; `None` when it is not valid.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let hex = bytes.get(index + 1..index + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                index += 2;
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8(decoded).ok()
}

impl AccessLogWriter {
    /// Writes records until `stop` changes; then writes everything still queued and returns.
    pub async fn run(mut self, services: Arc<Services>, mut stop: watch::Receiver<bool>) {
        let mut batch: Vec<AccessLogEntry> = Vec::with_capacity(self.batch_size);
        let mut messages: Vec<Message> = Vec::with_capacity(MAX_TAKE);
        // The first tick one interval from now: a tick at once would only find nothing.
        let mut interval = tokio::time::interval_at(
            tokio::time::Instant::now() + self.flush_interval,
            self.flush_interval,
        );
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = self.receiver.recv_many(&mut messages, MAX_TAKE) => {
                    if received == 0 {
                        break;
                    }
                    for message in messages.drain(..) {
                        self.take(&services, &mut batch, message).await;
                    }
                    if batch.len() >= self.batch_size {
                        write(&services, &mut batch).await;
                    }
                }
                _ = interval.tick() => {
                    write(&services, &mut batch).await;
                    self.warn_dropped();
                }
                _ = stop.changed() => break,
            }
        }
        // Shutdown: nothing new is accepted; what is queued is still written.
        self.receiver.close();
        while let Some(message) = self.receiver.recv().await {
            self.take(&services, &mut batch, message).await;
        }
        write(&services, &mut batch).await;
        self.warn_dropped();
    }

    async fn take(&self, services: &Services, batch: &mut Vec<AccessLogEntry>, message: Message) {
        match message {
            Message::Record(entry) => batch.push(*entry),
            Message::Flush(ack) => {
                write(services, batch).await;
                let _ = ack.send(());
            }
        }
    }

    fn warn_dropped(&self) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "access log queue full: records dropped rather than delay requests"
            );
        }
    }
}

async fn write(services: &Services, batch: &mut Vec<AccessLogEntry>) {
    if batch.is_empty() {
        return;
    }
    if let Err(error) = services.record_access_logs(batch).await {
        tracing::error!(
            error = format!("{error:#}"),
            records = batch.len(),
            "access log write failed; records lost"
        );
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use axum::Router;
    use axum::body::Body;
    use axum::middleware;
    use axum::routing::get;
    use mamori_core::Timestamp;
    use tower::ServiceExt;

    #[test]
    fn secrets_leave_the_query_and_the_rest_stays() {
        let cases = [
            ("token=abc&limit=5", "token=REDACTED&limit=5"),
            ("limit=5&cursor=x", "limit=5&cursor=x"),
            (
                "Access_Token=a&X-API-KEY=b&PassWord=c&state=s",
                "Access_Token=REDACTED&X-API-KEY=REDACTED&PassWord=REDACTED&state=s",
            ),
            (
                "code=1&client_secret=2&sig=3&signature=4&authorization=5",
                "code=REDACTED&client_secret=REDACTED&sig=3&signature=REDACTED&authorization=REDACTED",
            ),
            (
                "session_id=1&code_challenge=2&credentials=3",
                "session_id=REDACTED&code_challenge=REDACTED&credentials=REDACTED",
            ),
            // Names are compared after decoding.
            ("%74oken=abc&q=a+b", "%74oken=REDACTED&q=a+b"),
            // Mamori's own secrets go whatever the parameter is called.
            ("t=mms_abcdef&x=Bearer%20mmo_abc", "t=REDACTED&x=REDACTED"),
            ("mma_abc", "REDACTED"),
            ("token", "token"),
            ("token=", "token=REDACTED"),
            ("a=1&&b=2", "a=1&&b=2"),
            // Not decodable: gone as a whole.
            ("token=abc&bad=%zz", "REDACTED"),
            ("x=%", "REDACTED"),
            ("x=%ff%fe", "REDACTED"),
        ];
        for (query, expected) in cases {
            assert_eq!(redact_query(query), expected, "{query}");
        }
    }

    #[test]
    fn the_organization_comes_from_the_path() {
        let org = "org_vs7xzy2eez34x3vtwasx6ewpd2";
        assert_eq!(
            org_in_path(&format!("/api/v1/orgs/{org}/members")).map(|id| id.to_string()),
            Some(org.to_owned())
        );
        assert!(org_in_path(&format!("/api/v1/orgs/{org}")).is_some());
        assert!(org_in_path(&format!("/api/v1/app/orgs/{org}/members/x")).is_some());
        assert_eq!(org_in_path("/api/v1/orgs/not-an-org/members"), None);
        assert_eq!(org_in_path("/api/v1/orgs"), None);
        assert_eq!(org_in_path(&format!("/api/v2/orgs/{org}")), None);
    }

    /// The middleware never waits: with the queue full and no writer, requests still get their
    /// answers, and each record that did not fit is counted.
    #[tokio::test]
    async fn a_full_queue_drops_records_instead_of_waiting() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let (logger, writer) = with_capacity(
            clock,
            Arc::from(Vec::new()),
            Duration::from_secs(3600),
            2,
            10,
        );
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(middleware::from_fn_with_state(Some(logger), record));
        for _ in 0..5 {
            let response = router
                .clone()
                .oneshot(
                    axum::http::Request::builder()
                        .uri("/?token=abc")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
        assert_eq!(writer.dropped.load(Ordering::Relaxed), 3);
        let mut receiver = writer.receiver;
        let Some(Message::Record(entry)) = receiver.recv().await else {
            panic!("a record");
        };
        assert_eq!(entry.status, 200);
        assert_eq!(entry.query.as_deref(), Some("token=REDACTED"));
        assert_eq!(entry.path, "/");
        assert_eq!(entry.client_ip, None);
    }

    /// A request abandoned before its answer (its future dropped, as when the client goes away)
    /// is still logged, with status 499.
    #[tokio::test]
    async fn an_abandoned_request_is_logged_as_499() {
        use futures_util::FutureExt;
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let (logger, mut writer) = with_capacity(
            clock,
            Arc::from(Vec::new()),
            Duration::from_secs(3600),
            10,
            10,
        );
        let router = Router::new()
            .route(
                "/hang",
                axum::routing::post(std::future::pending::<&'static str>),
            )
            .layer(middleware::from_fn_with_state(Some(logger), record));
        let request = axum::http::Request::builder()
            .method("POST")
            .uri("/hang")
            .body(Body::empty())
            .unwrap();
        // Polled once, then dropped unanswered.
        assert!(router.oneshot(request).now_or_never().is_none());
        let Some(Message::Record(entry)) = writer.receiver.recv().await else {
            panic!("a record");
        };
        assert_eq!(entry.status, 499);
        assert_eq!(
            (entry.method.as_str(), entry.path.as_str()),
            ("POST", "/hang")
        );
    }
}
