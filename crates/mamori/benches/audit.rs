#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The audit trail's figures (issue 5): durable ingestion of app events, chain verification,
//! and a streamed export of a million events with the server's peak memory.
//!
//! 1. **Ingestion, in process** (`Services::record_app_event`, group commit), on SQLite and on
//!    PostgreSQL: a tokio runtime with ONE worker thread, and the whole process (the worker,
//!    sqlx's SQLite connection threads, everything) pinned to one CPU with `taskset`, over a
//!    fresh database with the production pool size (8 on SQLite, 16 on PostgreSQL). First
//!    the baseline, measured in the same run: one event in flight, so one event per commit,
//!    bound by fsync; then `in flight` tasks each awaiting its acknowledgement before sending
//!    the next. Batch sizes are counted exactly: a trigger added by the benchmark to
//!    `audit_chain_heads` logs every move of a chain's head (one per committed batch per
//!    chain) into a table of its own, inside the batch's own transaction (one small row per
//!    commit, next to the batch's hundreds). A diagnostic row times the two pooled reads
//!    `record_app_event` makes for every event before queueing it (is the app enabled, is the
//!    organization active), alone, at the largest concurrency.
//!
//!    **Ingestion over HTTP**: the real `mamori serve` on the SQLite database of step 1, pinned
//!    to CPU 0, this process (the clients) to CPU 1; `clients` keep-alive connections each
//!    posting `POST /api/v1/app/audit-events` back to back (the app's rate limit is raised so
//!    that it does not interfere).
//! 2. **Verification** of one chain of `MAMORI_BENCH_CHAIN_EVENTS` events (default 1,000,000),
//!    populated with `record_app_event` at 1024 in flight (2 cores; its time is reported):
//!    `Services::verify_audit(Some(chain))` from the SQLite store (the chain read by one query
//!    through the engine's own driver, rusqlite on SQLite and a binary `COPY` on PostgreSQL,
//!    on a thread of its own while the page before is checked; actor names opened and hashes
//!    recomputed on every core, then the links walked), with where its time goes (rows read
//!    alone; names opened and hashes recomputed, each on one core) and two baselines of the
//!    same run: the rows read through sqlx `Any` as verification first read them, and SHA-256
//!    alone over the same canonical bytes. The same on PostgreSQL, on a chain of
//!    `MAMORI_BENCH_PG_CHAIN_EVENTS` events (default: as many), when PostgreSQL is among the
//!    engines. Then the SQLite chain is exported in process to a JSON Lines file and
//!    `mamori_service::verify_export` verifies the file, next to passes that only read its
//!    lines, hash them (the baseline), parse them into `serde_json::Value`, and canonicalize
//!    them (what the former `verify_export` did twice a line).
//! 3. **Export**: the real `mamori serve` (not pinned) on that database streams
//!    `GET /api/v1/orgs/{org}/audit-events/export?format=jsonl` of a second organization of
//!    `MAMORI_BENCH_SMALL_EVENTS` events (default 100,000) twice (the first warms the server
//!    up), then of the million; the body is read to its end, counting bytes and lines. Before each export the server's peak RSS is
//!    reset (`/proc/<pid>/clear_refs` = 5), so VmHWM afterwards is the peak of that export
//!    alone; VmRSS is also sampled every 20 ms. Constant memory means the two peaks match.
//!
//! Environment: `MAMORI_BENCH_EVENTS` (events per group-commit run, default 100000);
//! `MAMORI_BENCH_IN_FLIGHT` (default `256,1024`); `MAMORI_BENCH_SECONDS` (the baseline's length,
//! default 5); `MAMORI_BENCH_HTTP_EVENTS` (default 50000) and `MAMORI_BENCH_HTTP_CLIENTS`
//! (default `64,256`); `MAMORI_BENCH_CHAIN_EVENTS` (default 1000000);
//! `MAMORI_BENCH_PG_CHAIN_EVENTS`; `MAMORI_BENCH_SMALL_EVENTS` (default 100000);
//! `MAMORI_BENCH_ENGINES` (`sqlite`, `postgres` or both, default both; PostgreSQL adds its
//! in-process ingestion and its store verification, at
//! `MAMORI_TEST_POSTGRES_URL` as the tests); `MAMORI_BENCH_PARTS` (any of `ingest`, `http`,
//! `chain`, `export` (the HTTP exports of step 3, with `chain`); default all); `MAMORI_BENCH_PIN=0` runs without pinning; `MAMORI_BENCH_POOL`
//! overrides the pool size. A quick run:
//! `MAMORI_BENCH_EVENTS=20000 MAMORI_BENCH_HTTP_EVENTS=10000 MAMORI_BENCH_CHAIN_EVENTS=100000
//! MAMORI_BENCH_SMALL_EVENTS=10000 MAMORI_BENCH_SECONDS=2`.
//!
//! Targets (issue 5): at least 20,000 events/s ingested on one core, at least 500,000
//! events/s verified. The machine is small and shared: the figures and verdicts are printed,
//! never asserted; the exit status is 0 whatever they are.
//!
//! Run: `cargo bench -p mamori --bench audit`.

use mamori_server::{Clock, ManualClock, SystemClock};
use mamori_service::{
    AccountSession, AppPrincipal, AuditQuery, EventFields, ExportFormat, NewAppEvent,
    RequestContext, Services, SignUp, jcs, parse_public_key, verify_export,
};
use mamori_store::AuditEventRef;
use mamori_testkit::process::{ServerProcess, data_args, data_env};
use mamori_testkit::{GOOD_PASSWORD, TestApp, TestDatabase, TestEngine, spawn_with, test_settings};
use sha2::{Digest as _, Sha256};
use sqlx::{AnyPool, Row as _};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const INGEST_TARGET: f64 = 20_000.0;
const VERIFY_TARGET: f64 = 500_000.0;
const MB: f64 = 1_000_000.0;
/// Events in flight while populating the verification chain.
const POPULATE_IN_FLIGHT: usize = 1024;
/// Rows per page of the old way of reading a chain (`audit_events` through `Any`).
const SCAN_PAGE: u32 = 2_000;
/// The field actor names are sealed as (`ACTOR_NAME_FIELD` in the service), for the
/// breakdown of the verification's time.
const ACTOR_NAME_FIELD: &str = "audit_actor_name";
/// Effectively no rate limit for the HTTP runs.
const APP_EVENTS_PER_SECOND: &str = "100000000";

// ---------------------------------------------------------------------------------------------
// Plan

#[derive(Clone)]
struct Plan {
    events: usize,
    in_flight: Vec<usize>,
    baseline: Duration,
    http_events: usize,
    http_clients: Vec<usize>,
    chain_events: usize,
    pg_chain_events: usize,
    small_events: usize,
    engines: Vec<TestEngine>,
    ingest: bool,
    http: bool,
    chain: bool,
    /// The streamed exports over HTTP, after the chain part (`chain,export`).
    export: bool,
    pin: bool,
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {text:?}")),
        Err(_) => default,
    }
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(text) => text
            .split(',')
            .map(|part| {
                part.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} must be numbers separated by commas"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

impl Plan {
    fn from_env() -> Plan {
        let engines = match std::env::var("MAMORI_BENCH_ENGINES")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "both" | "all" | "sqlite,postgres" | "postgres,sqlite" => {
                vec![TestEngine::Sqlite, TestEngine::Postgres]
            }
            "sqlite" => vec![TestEngine::Sqlite],
            "postgres" | "postgresql" => vec![TestEngine::Postgres],
            other => panic!("MAMORI_BENCH_ENGINES must be sqlite, postgres or both, got {other:?}"),
        };
        let parts = std::env::var("MAMORI_BENCH_PARTS")
            .unwrap_or_else(|_| String::from("ingest,http,chain,export"))
            .to_ascii_lowercase();
        let has = |part: &str| parts.split(',').any(|p| p.trim() == part);
        Plan {
            events: env_number("MAMORI_BENCH_EVENTS", 100_000).max(1),
            in_flight: env_list("MAMORI_BENCH_IN_FLIGHT", &[256, 1024]),
            baseline: Duration::from_secs(env_number("MAMORI_BENCH_SECONDS", 5).max(1) as u64),
            http_events: env_number("MAMORI_BENCH_HTTP_EVENTS", 50_000).max(1),
            http_clients: env_list("MAMORI_BENCH_HTTP_CLIENTS", &[64, 256]),
            chain_events: env_number("MAMORI_BENCH_CHAIN_EVENTS", 1_000_000).max(1),
            pg_chain_events: env_number(
                "MAMORI_BENCH_PG_CHAIN_EVENTS",
                env_number("MAMORI_BENCH_CHAIN_EVENTS", 1_000_000),
            )
            .max(1),
            small_events: env_number("MAMORI_BENCH_SMALL_EVENTS", 100_000).max(1),
            engines,
            ingest: has("ingest"),
            http: has("http"),
            chain: has("chain"),
            export: has("export") && has("chain"),
            pin: std::env::var("MAMORI_BENCH_PIN").as_deref() != Ok("0"),
        }
    }
}

fn engine_name(engine: TestEngine) -> &'static str {
    match engine {
        TestEngine::Sqlite => "sqlite",
        TestEngine::Postgres => "postgres",
    }
}

fn pool_size(engine: TestEngine) -> u32 {
    match std::env::var("MAMORI_BENCH_POOL") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("MAMORI_BENCH_POOL must be a number, got {text:?}")),
        // The production defaults.
        Err(_) => match engine {
            TestEngine::Sqlite => 8,
            TestEngine::Postgres => 16,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Main

fn main() {
    let plan = Plan::from_env();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pin = plan.pin && cores >= 2 && taskset_works();
    println!(
        "mamori audit benchmark; {cores} cores; load average {}; pinning {}",
        load_average(),
        if pin { "on" } else { "off" }
    );
    println!(
        "plan: {} events per group-commit run at {:?} in flight, baseline {} s; HTTP {} events \
         at {:?} clients; chain of {} events (and {} for the export comparison); engines {:?}",
        plan.events,
        plan.in_flight,
        plan.baseline.as_secs(),
        plan.http_events,
        plan.http_clients,
        plan.chain_events,
        plan.small_events,
        plan.engines
            .iter()
            .map(|engine| engine_name(*engine))
            .collect::<Vec<_>>()
    );

    let mut ingest_rows = Vec::new();
    let mut diagnostics = Vec::new();
    let mut http_rows = Vec::new();
    let mut kept: Option<(Arc<TestDatabase>, Fixture)> = None;
    if plan.ingest || plan.http {
        for &engine in &plan.engines {
            if !plan.ingest && engine != TestEngine::Sqlite {
                continue;
            }
            eprintln!("ingestion in process on {} ...", engine_name(engine));
            let (rows, diagnostic, database, fixture) = ingest_in_process(engine, &plan, pin);
            ingest_rows.extend(rows);
            diagnostics.extend(diagnostic);
            if engine == TestEngine::Sqlite {
                kept = Some((database, fixture));
            }
        }
        if !ingest_rows.is_empty() {
            print_ingest(&ingest_rows, &diagnostics, pin);
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if plan.http {
        let (database, fixture) = match kept.take() {
            Some(kept) => kept,
            None => panic!("the HTTP part runs on SQLite: include sqlite in MAMORI_BENCH_ENGINES"),
        };
        eprintln!("ingestion over HTTP ...");
        http_rows = runtime.block_on(ingest_over_http(database, &fixture, &plan, pin));
        print_http(&http_rows, pin);
    }
    drop(kept);

    let chain_report = plan.chain.then(|| {
        eprintln!("chain of {} events ...", plan.chain_events);
        let report = runtime.block_on(chain_part(&plan));
        report.print();
        report
    });
    drop(runtime);

    println!();
    println!("== summary ==");
    for row in ingest_rows.iter().filter(|row| row.in_flight > 1) {
        let rate = row.stats.per_second();
        println!(
            "ingestion, {:<8} in process, 1 core, {:>5} in flight: {:>9.0} events/s (>= {:.0}) \
             {}; mean batch {:>6.1}; ack p99 {:>7} ms",
            engine_name(row.engine),
            row.in_flight,
            rate,
            INGEST_TARGET,
            verdict(rate >= INGEST_TARGET),
            row.mean_batch(),
            ms(row.stats.quantile(0.99)),
        );
    }
    for row in &http_rows {
        println!(
            "ingestion, sqlite   over HTTP, server on 1 core, {:>4} clients: {:>9.0} events/s; \
             ack p99 {:>7} ms",
            row.clients,
            row.stats.per_second(),
            ms(row.stats.quantile(0.99)),
        );
    }
    if let Some(report) = &chain_report {
        report.print_summary();
    }
    println!(
        "load average at the end {}; the figures are printed, not asserted (a shared 2-core \
         machine is noisy)",
        load_average()
    );
}

// ---------------------------------------------------------------------------------------------
// Measuring helpers

#[derive(Clone, Default)]
struct Stats {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Stats {
    fn new(mut latencies: Vec<Duration>, wall: Duration) -> Stats {
        latencies.sort();
        Stats { latencies, wall }
    }

    fn count(&self) -> usize {
        self.latencies.len()
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        // Nearest rank.
        let rank = (q * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn now() -> mamori_core::Timestamp {
    SystemClock.now()
}

fn ctx() -> RequestContext {
    RequestContext::default()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| String::from("unknown"))
}

/// User plus system CPU time from a `/proc/.../stat` file (clock ticks of 10 ms).
fn cpu_time(stat_path: &str) -> Duration {
    let text = std::fs::read_to_string(stat_path)
        .unwrap_or_else(|error| panic!("read {stat_path}: {error}"));
    let after_name = &text[text.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// A field of `/proc/<pid>/status` in bytes (the file says kB, meaning KiB).
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|error| panic!("read /proc/{pid}/status: {error}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|number| number.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn taskset_works() -> bool {
    Command::new("taskset")
        .args(["-p", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The CPUs this process may run on now, as `taskset -c` writes them.
fn allowed_cpus() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
                .map(|list| list.trim().to_owned())
        })
        .unwrap_or_else(|| String::from("0-1023"))
}

/// Pins every thread of this process (and, by inheritance, the threads they start) to `cpus`.
fn pin_process(cpus: &str) {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("run taskset");
    assert!(status.success(), "taskset -a -p -c {cpus} failed");
}

// ---------------------------------------------------------------------------------------------
// Fixture: an app enabled in organizations, through the service layer

#[derive(Clone)]
struct OrgFixture {
    id: String,
    email: String,
    session: AccountSession,
}

#[derive(Clone)]
struct Fixture {
    app: AppPrincipal,
    app_secret: String,
    orgs: Vec<OrgFixture>,
}

/// Starts the server in this process on `database` with the test settings (cheap password
/// hashing) and the production pool size.
async fn start_in_process(database: Arc<TestDatabase>) -> TestApp {
    let mut settings = test_settings(&database);
    settings.database_max_connections = pool_size(database.engine());
    spawn_with(database, settings, Arc::new(ManualClock::new(now()))).await
}

async fn setup(services: &Services, orgs: usize) -> Fixture {
    let at = now();
    let registration = services
        .create_app(None, &ctx(), "Bench App", at)
        .await
        .unwrap_or_else(|error| panic!("create app: {error:?}"));
    let mut fixtures = Vec::new();
    for index in 0..orgs {
        let email = format!("admin{index}@bench.example");
        let (_, org) = services
            .sign_up(
                &ctx(),
                SignUp {
                    email: email.clone(),
                    password: GOOD_PASSWORD.to_owned(),
                    display_name: format!("Bench Admin {index}"),
                    organization_name: Some(format!("Bench Org {index}")),
                    invitation_token: None,
                },
                at,
            )
            .await
            .unwrap_or_else(|error| panic!("sign-up: {error:?}"));
        let org = org.expect("an organization").to_string();
        let session = services
            .log_in(&ctx(), &email, GOOD_PASSWORD, at)
            .await
            .unwrap_or_else(|error| panic!("log-in: {error:?}"))
            .session;
        let access = services
            .org_access(&session, &org)
            .await
            .unwrap_or_else(|error| panic!("org access: {error:?}"));
        services
            .enable_app(&access, &ctx(), registration.id.as_str(), "all", at)
            .await
            .unwrap_or_else(|error| panic!("enable app: {error:?}"));
        fixtures.push(OrgFixture {
            id: org,
            email,
            session,
        });
    }
    Fixture {
        app: AppPrincipal {
            app_id: registration.id,
        },
        app_secret: registration.secret,
        orgs: fixtures,
    }
}

/// An event as a typical app would send it (about 600 bytes once exported).
fn app_event(org: &str, index: usize) -> NewAppEvent {
    NewAppEvent {
        org_id: org.to_owned(),
        action: String::from("bench.document.viewed"),
        target_type: Some(String::from("document")),
        target_id: Some(format!("doc-{index}")),
        outcome: None,
        details: Some(serde_json::json!({
            "path": format!("/projects/alpha/documents/{index}.pdf"),
            "bytes": index % 1_000_000,
            "client": "mamori-bench",
        })),
    }
}

fn app_event_body(org: &str, index: usize) -> serde_json::Value {
    serde_json::json!({
        "org_id": org,
        "action": "bench.document.viewed",
        "target": { "type": "document", "id": format!("doc-{index}") },
        "details": {
            "path": format!("/projects/alpha/documents/{index}.pdf"),
            "bytes": index % 1_000_000,
            "client": "mamori-bench",
        },
    })
}

fn event_context(index: usize) -> RequestContext {
    RequestContext {
        ip: Some(String::from("203.0.113.7")),
        user_agent: Some(String::from("mamori-bench/1.0")),
        request_id: Some(format!("req-{index:08}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Counting committed batches

/// A trigger on `audit_chain_heads` logs the size of every move of a chain's head into
/// `bench_batches`: one row per batch per chain, written in the batch's own transaction.
struct BatchCounter {
    pool: AnyPool,
    seen: i64,
}

impl BatchCounter {
    async fn install(database: &TestDatabase) -> BatchCounter {
        let pool = database.pool().await;
        let statements: &[&'static str] = match database.engine() {
            TestEngine::Sqlite => &[
                "CREATE TABLE bench_batches (id INTEGER PRIMARY KEY AUTOINCREMENT, \
                 size INTEGER NOT NULL)",
                "CREATE TRIGGER bench_count_batches AFTER UPDATE OF last_seq ON \
                 audit_chain_heads WHEN NEW.last_seq > OLD.last_seq BEGIN \
                 INSERT INTO bench_batches (size) VALUES (NEW.last_seq - OLD.last_seq); END",
            ],
            TestEngine::Postgres => &[
                "CREATE TABLE bench_batches (id BIGSERIAL PRIMARY KEY, size BIGINT NOT NULL)",
                "CREATE FUNCTION bench_count_batch() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.last_seq > OLD.last_seq THEN \
                 INSERT INTO bench_batches (size) VALUES (NEW.last_seq - OLD.last_seq); \
                 END IF; RETURN NEW; END $$",
                "CREATE TRIGGER bench_count_batches AFTER UPDATE OF last_seq ON \
                 audit_chain_heads FOR EACH ROW EXECUTE FUNCTION bench_count_batch()",
            ],
        };
        for statement in statements {
            sqlx::raw_sql(*statement)
                .execute(&pool)
                .await
                .unwrap_or_else(|error| panic!("{statement}: {error}"));
        }
        BatchCounter { pool, seen: 0 }
    }

    /// Sizes of the batches committed since the last call.
    async fn take(&mut self) -> Vec<i64> {
        let rows = sqlx::query("SELECT id, size FROM bench_batches WHERE id > $1 ORDER BY id")
            .bind(self.seen)
            .fetch_all(&self.pool)
            .await
            .expect("read bench_batches");
        let mut sizes = Vec::with_capacity(rows.len());
        for row in rows {
            self.seen = row.try_get::<i64, _>(0).expect("id");
            sizes.push(row.try_get::<i64, _>(1).expect("size"));
        }
        sizes
    }
}

fn batch_summary(batches: &[i64]) -> (usize, f64, i64, i64) {
    let mut sorted = batches.to_vec();
    sorted.sort_unstable();
    let total: i64 = sorted.iter().sum();
    let mean = total as f64 / sorted.len().max(1) as f64;
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let max = sorted.last().copied().unwrap_or(0);
    (sorted.len(), mean, median, max)
}

// ---------------------------------------------------------------------------------------------
// 1. Ingestion in process

#[derive(Clone, Copy)]
enum Limit {
    Events(usize),
    For(Duration),
}

struct IngestRow {
    engine: TestEngine,
    in_flight: usize,
    stats: Stats,
    cpu: Duration,
    batches: Vec<i64>,
}

impl IngestRow {
    fn mean_batch(&self) -> f64 {
        batch_summary(&self.batches).1
    }
}

/// `in_flight` tasks record events back to back, each awaiting its acknowledgement; returns
/// every event's time to acknowledgement and the time from the start to the last one.
async fn ingest_run(
    services: &Arc<Services>,
    app: &AppPrincipal,
    org: &str,
    in_flight: usize,
    limit: Limit,
) -> Stats {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let (total, deadline) = match limit {
        Limit::Events(n) => (n, None),
        Limit::For(duration) => (usize::MAX, Some(started + duration)),
    };
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let services = services.clone();
        let app = app.clone();
        let org = org.to_owned();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    break;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                let sent = Instant::now();
                services
                    .record_app_event(&app, app_event(&org, index), &event_context(index), now())
                    .await
                    .unwrap_or_else(|error| panic!("record_app_event: {error:?}"));
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("ingesting task"));
    }
    Stats::new(latencies, started.elapsed())
}

/// The two pooled reads `record_app_event` makes per event before queueing it, alone.
async fn pre_reads(
    services: &Arc<Services>,
    app: &AppPrincipal,
    org: &str,
    in_flight: usize,
    n: usize,
) -> Stats {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let org = mamori_core::OrgId::parse(org).expect("an org ID");
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let services = services.clone();
        let app = app.clone();
        let org = org.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let sent = Instant::now();
                let store = services.store();
                let enabled = store.org_app(&org, &app.app_id).await.expect("org_app");
                let org_row = store.org(&org).await.expect("org");
                assert!(enabled.is_some() && org_row.is_some());
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("reading task"));
    }
    Stats::new(latencies, started.elapsed())
}

struct Diagnostic {
    engine: TestEngine,
    label: String,
    stats: Stats,
    cpu: Duration,
}

/// Step 1 on `engine`, on a runtime with one worker thread, the process pinned to one CPU.
/// Returns the rows, the diagnostic, and the database with its fixture (for the HTTP part).
fn ingest_in_process(
    engine: TestEngine,
    plan: &Plan,
    pin: bool,
) -> (Vec<IngestRow>, Vec<Diagnostic>, Arc<TestDatabase>, Fixture) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime with one worker");
    let original_cpus = allowed_cpus();
    let result = runtime.block_on(async {
        let database = Arc::new(TestDatabase::create(engine).await);
        let mut app = start_in_process(database.clone()).await;
        let services = app.services.clone();
        let fixture = setup(&services, 1).await;
        let org = fixture.orgs[0].id.clone();
        let mut counter = BatchCounter::install(&database).await;
        if pin {
            pin_process("0");
        }
        // Warm-up: connections opened, statements prepared, keys cached.
        ingest_run(&services, &fixture.app, &org, 16, Limit::Events(2_000)).await;
        counter.take().await;

        let mut rows = Vec::new();
        let runs = std::iter::once((1, Limit::For(plan.baseline))).chain(
            plan.in_flight
                .iter()
                .map(|&in_flight| (in_flight, Limit::Events(plan.events))),
        );
        for (in_flight, limit) in runs {
            eprintln!("  {} in flight ...", in_flight);
            let cpu_before = cpu_time("/proc/self/stat");
            let stats = ingest_run(&services, &fixture.app, &org, in_flight, limit).await;
            let cpu = cpu_time("/proc/self/stat").saturating_sub(cpu_before);
            let batches = counter.take().await;
            let stored: i64 = batches.iter().sum();
            assert_eq!(
                stored as usize,
                stats.count(),
                "every acknowledged event is in a counted batch"
            );
            rows.push(IngestRow {
                engine,
                in_flight,
                stats,
                cpu,
                batches,
            });
        }

        let mut diagnostics = Vec::new();
        let widest = plan.in_flight.iter().copied().max().unwrap_or(1);
        let cpu_before = cpu_time("/proc/self/stat");
        let stats = pre_reads(&services, &fixture.app, &org, widest, plan.events).await;
        diagnostics.push(Diagnostic {
            engine,
            label: format!("the 2 pooled reads per event, alone ({widest} in flight)"),
            stats,
            cpu: cpu_time("/proc/self/stat").saturating_sub(cpu_before),
        });
        if pin {
            pin_process(&original_cpus);
        }
        counter.pool.close().await;
        app.stop().await;
        drop(app);
        (rows, diagnostics, database, fixture)
    });
    drop(runtime);
    result
}

fn print_ingest(rows: &[IngestRow], diagnostics: &[Diagnostic], pin: bool) {
    println!();
    println!(
        "== 1a. durable ingestion of app events in process (Services::record_app_event, group \
         commit) =="
    );
    println!(
        "tokio runtime with 1 worker thread; {}; production pool size; times to \
         acknowledgement in ms; batch = events per commit, counted by a trigger",
        if pin {
            "whole process pinned to CPU 0 (sqlx's SQLite threads included)"
        } else {
            "NOT pinned"
        }
    );
    println!(
        "  {:<8} {:>9} {:>8} {:>7} {:>9} {:>7} {:>8} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>6}   target",
        "engine",
        "in flight",
        "events",
        "wall s",
        "events/s",
        "commits",
        "mean bat",
        "med bat",
        "max",
        "ack p50",
        "ack p99",
        "ack max",
        "CPU us/ev",
        "CPU %"
    );
    for row in rows {
        let (commits, mean, median, max) = batch_summary(&row.batches);
        let rate = row.stats.per_second();
        let target = if row.in_flight > 1 {
            format!(">= {INGEST_TARGET:.0}/s {}", verdict(rate >= INGEST_TARGET))
        } else {
            String::from("(baseline: 1 event per commit)")
        };
        println!(
            "  {:<8} {:>9} {:>8} {:>7.2} {:>9.0} {:>7} {:>8.1} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8.1} {:>6.0}   {}",
            engine_name(row.engine),
            row.in_flight,
            row.stats.count(),
            row.stats.wall.as_secs_f64(),
            rate,
            commits,
            mean,
            median,
            max,
            ms(row.stats.quantile(0.5)),
            ms(row.stats.quantile(0.99)),
            ms(row.stats.max()),
            row.cpu.as_secs_f64() * 1e6 / row.stats.count().max(1) as f64,
            row.cpu.as_secs_f64() / row.stats.wall.as_secs_f64().max(1e-9) * 100.0,
            target
        );
    }
    println!("  diagnostic, same runtime and pinning:");
    for diagnostic in diagnostics {
        println!(
            "  {:<8} {:<58} {:>9.0}/s  p50 {:>6} ms  p99 {:>6} ms  CPU {:>5.1} us each",
            engine_name(diagnostic.engine),
            diagnostic.label,
            diagnostic.stats.per_second(),
            ms(diagnostic.stats.quantile(0.5)),
            ms(diagnostic.stats.quantile(0.99)),
            diagnostic.cpu.as_secs_f64() * 1e6 / diagnostic.stats.count().max(1) as f64,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1b. Ingestion over HTTP

struct HttpRow {
    clients: usize,
    stats: Stats,
    failures: usize,
    server_cpu: Duration,
    batches: Vec<i64>,
}

fn server_command(database: &TestDatabase, pin_cpu: Option<&str>) -> Command {
    let binary = Path::new(env!("CARGO_BIN_EXE_mamori"));
    let mut command = match pin_cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpu]).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    command
        .args(data_args(database))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .envs(data_env(database))
        .env("MAMORI_AUDIT__APP_EVENTS_PER_SECOND", APP_EVENTS_PER_SECOND);
    command
}

async fn http_run(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    org: &str,
    clients: usize,
    total: usize,
) -> (Stats, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = client.clone();
        let url = url.to_owned();
        let secret = secret.to_owned();
        let org = org.to_owned();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                let body = app_event_body(&org, index);
                let sent = Instant::now();
                let answer = match client
                    .post(&url)
                    .bearer_auth(&secret)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        response.bytes().await.map(|body| (status, body))
                    }
                    Err(error) => Err(error),
                };
                match answer {
                    Ok((201, _)) => latencies.push(sent.elapsed()),
                    Ok((status, body)) => {
                        failures += 1;
                        if failures <= 3 {
                            eprintln!("POST answered {status}: {}", String::from_utf8_lossy(&body));
                        }
                    }
                    Err(error) => {
                        failures += 1;
                        if failures <= 3 {
                            eprintln!("POST failed: {error}");
                        }
                    }
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (task_latencies, task_failures) = task.await.expect("client task");
        latencies.extend(task_latencies);
        failures += task_failures;
    }
    (Stats::new(latencies, started.elapsed()), failures)
}

async fn ingest_over_http(
    database: Arc<TestDatabase>,
    fixture: &Fixture,
    plan: &Plan,
    pin: bool,
) -> Vec<HttpRow> {
    let mut counter = BatchCounter {
        pool: database.pool().await,
        seen: 0,
    };
    counter.take().await;
    let original_cpus = allowed_cpus();
    let mut server = ServerProcess::spawn(server_command(&database, pin.then_some("0")));
    let pid = server.child.id();
    if pin {
        pin_process("1");
    }
    let widest = plan.http_clients.iter().copied().max().unwrap_or(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(widest)
        .tcp_nodelay(true)
        .build()
        .expect("http client");
    let url = format!("{}/api/v1/app/audit-events", server.base_url);
    let org = fixture.orgs[0].id.clone();
    // Warm-up: connections, statements, the chain's key.
    let (_, failures) = http_run(&client, &url, &fixture.app_secret, &org, 16, 2_000).await;
    assert_eq!(failures, 0, "warm-up failures");
    counter.take().await;
    let stat = format!("/proc/{pid}/stat");
    let mut rows = Vec::new();
    for &clients in &plan.http_clients {
        eprintln!("  {clients} clients ...");
        let cpu_before = cpu_time(&stat);
        let (stats, failures) = http_run(
            &client,
            &url,
            &fixture.app_secret,
            &org,
            clients,
            plan.http_events,
        )
        .await;
        let server_cpu = cpu_time(&stat).saturating_sub(cpu_before);
        let batches = counter.take().await;
        rows.push(HttpRow {
            clients,
            stats,
            failures,
            server_cpu,
            batches,
        });
    }
    if pin {
        pin_process(&original_cpus);
    }
    counter.pool.close().await;
    let exit = server.terminate();
    assert!(exit.success(), "mamori serve exited with {exit}");
    rows
}

fn print_http(rows: &[HttpRow], pin: bool) {
    println!();
    println!(
        "== 1b. durable ingestion over HTTP on loopback (POST /api/v1/app/audit-events, \
         mamori serve, SQLite) =="
    );
    println!(
        "{}; keep-alive reqwest clients each posting back to back; times in ms",
        if pin {
            "server pinned to CPU 0, the clients (this process) to CPU 1"
        } else {
            "NOT pinned: server and clients share the cores"
        }
    );
    println!(
        "  {:>7} {:>8} {:>7} {:>9} {:>7} {:>8} {:>6} {:>8} {:>8} {:>8} {:>14} {:>8}",
        "clients",
        "events",
        "wall s",
        "events/s",
        "commits",
        "mean bat",
        "max",
        "p50",
        "p99",
        "max",
        "server CPU us/ev",
        "failures"
    );
    for row in rows {
        let (commits, mean, _, max) = batch_summary(&row.batches);
        println!(
            "  {:>7} {:>8} {:>7.2} {:>9.0} {:>7} {:>8.1} {:>6} {:>8} {:>8} {:>8} {:>16.1} {:>8}",
            row.clients,
            row.stats.count(),
            row.stats.wall.as_secs_f64(),
            row.stats.per_second(),
            commits,
            mean,
            max,
            ms(row.stats.quantile(0.5)),
            ms(row.stats.quantile(0.99)),
            ms(row.stats.max()),
            row.server_cpu.as_secs_f64() * 1e6 / row.stats.count().max(1) as f64,
            row.failures
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. A chain of a million events: verification and export

struct Timed {
    label: String,
    events: u64,
    took: Duration,
    target: Option<f64>,
    note: String,
}

struct ExportRun {
    label: String,
    events: usize,
    lines: u64,
    bytes: u64,
    first_byte: Duration,
    took: Duration,
    rss_before: u64,
    peak_hwm: u64,
    peak_sampled: u64,
    hwm_reset: bool,
}

struct ChainReport {
    chain_events: usize,
    db_bytes: u64,
    populate: Vec<Timed>,
    verify: Vec<Timed>,
    idle_rss: u64,
    exports: Vec<ExportRun>,
}

fn rate(events: u64, took: Duration) -> f64 {
    events as f64 / took.as_secs_f64().max(1e-9)
}

impl ChainReport {
    fn print(&self) {
        println!();
        println!(
            "== 2. chain verification: one organization's chain of {} app events (SQLite) ==",
            self.chain_events
        );
        println!(
            "populating (not a target; record_app_event, {POPULATE_IN_FLIGHT} in flight, 2 cores, not pinned):"
        );
        for row in &self.populate {
            println!(
                "  {:<62} {:>9} events {:>8.1} s {:>10.0} events/s  {}",
                row.label,
                row.events,
                row.took.as_secs_f64(),
                rate(row.events, row.took),
                row.note
            );
        }
        println!(
            "  SQLite database file after populating: {:.0} MB",
            self.db_bytes as f64 / MB
        );
        println!("verifying:");
        for row in &self.verify {
            let events_per_second = rate(row.events, row.took);
            let target = match row.target {
                Some(target) => {
                    format!(">= {target:.0}/s {}", verdict(events_per_second >= target))
                }
                None => String::new(),
            };
            println!(
                "  {:<62} {:>9} events {:>8.2} s {:>10.0} events/s  {}{}",
                row.label,
                row.events,
                row.took.as_secs_f64(),
                events_per_second,
                target,
                if row.note.is_empty() {
                    String::new()
                } else {
                    format!("  {}", row.note)
                }
            );
        }
        if self.exports.is_empty() {
            return;
        }
        println!();
        println!(
            "== 3. streamed export over HTTP (GET .../audit-events/export?format=jsonl, mamori \
             serve, SQLite, not pinned) =="
        );
        println!(
            "server RSS when idle, after logging in: {:.1} MB; before each export the peak is \
             reset (clear_refs 5), so VmHWM is that export's own peak",
            self.idle_rss as f64 / MB
        );
        println!(
            "  {:<14} {:>9} {:>9} {:>9} {:>8} {:>8} {:>10} {:>8} {:>10} {:>10} {:>10} {:>9}",
            "export",
            "events",
            "lines",
            "MB",
            "seconds",
            "1st byte",
            "events/s",
            "MB/s",
            "RSS before",
            "peak HWM",
            "peak 20ms",
            "growth"
        );
        for run in &self.exports {
            println!(
                "  {:<14} {:>9} {:>9} {:>9.1} {:>8.2} {:>6} ms {:>10.0} {:>8.1} {:>7.1} MB {:>7.1} MB {:>7.1} MB {:>6.1} MB{}",
                run.label,
                run.events,
                run.lines,
                run.bytes as f64 / MB,
                run.took.as_secs_f64(),
                ms(run.first_byte),
                rate(run.events as u64, run.took),
                run.bytes as f64 / MB / run.took.as_secs_f64().max(1e-9),
                run.rss_before as f64 / MB,
                run.peak_hwm as f64 / MB,
                run.peak_sampled as f64 / MB,
                run.peak_hwm.saturating_sub(run.rss_before) as f64 / MB,
                if run.hwm_reset {
                    ""
                } else {
                    "  (HWM not reset: peak since start)"
                }
            );
        }
        if let [_, small, large] = &self.exports[..] {
            println!(
                "  peak RSS, {} events vs {} events: {:.1} MB vs {:.1} MB ({:+.1} MB for {:.0}x \
                 the events)",
                small.events,
                large.events,
                small.peak_hwm as f64 / MB,
                large.peak_hwm as f64 / MB,
                (large.peak_hwm as f64 - small.peak_hwm as f64) / MB,
                large.events as f64 / small.events.max(1) as f64
            );
        }
    }

    fn print_summary(&self) {
        for row in self.verify.iter().filter(|row| row.target.is_some()) {
            let events_per_second = rate(row.events, row.took);
            println!(
                "verification, {:<52} {:>9.0} events/s (>= {:.0}) {}",
                row.label,
                events_per_second,
                VERIFY_TARGET,
                verdict(events_per_second >= VERIFY_TARGET)
            );
        }
        for run in self.exports.iter().skip(1) {
            println!(
                "export over HTTP, {:>9} events: {:>7.2} s, {:>7.1} MB, server peak RSS {:>6.1} \
                 MB (before {:.1} MB)",
                run.events,
                run.took.as_secs_f64(),
                run.bytes as f64 / MB,
                run.peak_hwm as f64 / MB,
                run.rss_before as f64 / MB
            );
        }
    }
}

/// Reads the chain as `verify_audit` does, timing its steps apart: rows read through the
/// engine's own driver (`audit_scan`, one query streamed in pages), then, on one core, actor
/// names opened and canonical text and hash (`verify_audit` spreads these two over every
/// core); next to them, in the same run, the baselines: the rows read through sqlx `Any` (as
/// verification did at first) and SHA-256 alone over the same canonical bytes.
async fn verify_breakdown(services: &Services, chain: &str, engine: &str) -> Vec<Timed> {
    let key = services.keyring().key(chain).await.expect("chain key");
    let store = services.store();

    // Before: rows through sqlx Any, 2000 a page.
    let started = Instant::now();
    let mut any_rows = 0u64;
    let mut from_seq = 1;
    loop {
        let rows = store
            .audit_events(chain, from_seq, SCAN_PAGE)
            .await
            .expect("audit events");
        let Some(last) = rows.last() else { break };
        from_seq = last.seq + 1;
        any_rows += rows.len() as u64;
    }
    let any_took = started.elapsed();

    // Rows alone: the scan drained with nothing else to do (its reader runs on a thread of
    // its own, as in `verify_audit`).
    let started = Instant::now();
    let mut scanned = 0u64;
    let mut scan = store.audit_scan(chain, 1..=i64::MAX).await.expect("scan");
    while let Some(page) = scan.next_page().await {
        let page = page.expect("scan page");
        // Reading every field in place is part of reading the rows.
        for index in 0..page.len() {
            std::hint::black_box(page.event(index).expect("row"));
        }
        scanned += page.len() as u64;
    }
    let fetch = started.elapsed();

    let mut buffer = String::with_capacity(2048);
    let mut time = String::with_capacity(32);
    let mut texts: Vec<String> = Vec::new();
    let mut events = 0u64;
    let (mut open, mut hash, mut sha_only) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut opener = key.opener(ACTOR_NAME_FIELD).expect("opener");
    let mut sealed_runs = 0u64;
    let mut last_sealed: Option<String> = None;
    let mut scan = store.audit_scan(chain, 1..=i64::MAX).await.expect("scan");
    while let Some(page) = scan.next_page().await {
        let page = page.expect("scan page");
        let rows: Vec<_> = (0..page.len())
            .map(|index| page.event(index).expect("row"))
            .collect();
        // Runs of one sealed name: what `verify_audit` opens (it keeps the last one opened).
        for row in &rows {
            if row.actor_name_sealed != last_sealed.as_deref() {
                sealed_runs += 1;
                last_sealed = row.actor_name_sealed.map(str::to_owned);
            }
        }
        let started = Instant::now();
        let names: Vec<Option<String>> = rows
            .iter()
            .map(|row| {
                row.actor_name_sealed.map(|sealed| {
                    opener
                        .open_str(sealed)
                        .expect("actor name opens")
                        .to_owned()
                })
            })
            .collect();
        open += started.elapsed();
        let started = Instant::now();
        for (row, name) in rows.iter().zip(&names) {
            time.clear();
            row.occurred_at.write_rfc3339(&mut time);
            let recomputed = fields_of(row, name.as_deref(), &time).hash_hex(&mut buffer);
            assert_eq!(
                &recomputed[..],
                row.hash.as_bytes(),
                "hash of seq {}",
                row.seq
            );
        }
        hash += started.elapsed();
        // The baseline: SHA-256 alone over the same bytes (prev_hash, newline, canonical text).
        texts.clear();
        for (row, name) in rows.iter().zip(&names) {
            time.clear();
            row.occurred_at.write_rfc3339(&mut time);
            let mut text = String::with_capacity(1024);
            text.push_str(row.prev_hash);
            text.push('\n');
            fields_of(row, name.as_deref(), &time).write(&mut text, None);
            texts.push(text);
        }
        let started = Instant::now();
        for text in &texts {
            std::hint::black_box(Sha256::digest(text.as_bytes()));
        }
        sha_only += started.elapsed();
        events += rows.len() as u64;
    }
    assert_eq!(scanned, events, "both scans read the whole chain");
    let note = String::from("(timed apart, same rows)");
    vec![
        Timed {
            label: format!("  before: rows read through sqlx Any ({engine}, 2000/page)"),
            events: any_rows,
            took: any_took,
            target: None,
            note: String::from("(how verify_audit read rows before)"),
        },
        Timed {
            label: format!("  of which: rows read, {engine}'s own driver, one query"),
            events,
            took: fetch,
            target: None,
            note: note.clone(),
        },
        Timed {
            label: String::from("  of which: actor names opened (XChaCha20-Poly1305, one core)"),
            events,
            took: open,
            target: None,
            note: format!(
                "(every row's; verify_audit opens {sealed_runs}: names are sealed once per \
                 batch per actor)"
            ),
        },
        Timed {
            label: String::from("  of which: canonical text + SHA-256 (EventFields, one core)"),
            events,
            took: hash,
            target: None,
            note,
        },
        Timed {
            label: String::from("  baseline: SHA-256 alone over the same bytes"),
            events,
            took: sha_only,
            target: None,
            note: String::from("(sha2, one core)"),
        },
    ]
}

fn fields_of<'a>(
    row: &'a AuditEventRef<'a>,
    actor_name: Option<&'a str>,
    time: &'a str,
) -> EventFields<'a> {
    EventFields {
        action: row.action,
        actor_id: row.actor_id,
        actor_name,
        actor_type: row.actor_type,
        chain: row.chain,
        details: row.details,
        id: row.id,
        ip: row.ip,
        org_id: row.org_id,
        outcome: row.outcome,
        prev_hash: row.prev_hash,
        request_id: row.request_id,
        seq: row.seq,
        target_id: row.target_id,
        target_type: row.target_type,
        time,
        user_agent: row.user_agent,
    }
}

/// `verify_audit` twice on `chain` (the first run opens the scan pool and warms the caches),
/// then the breakdown of where its time goes.
async fn verify_store(services: &Services, chain: &str, engine: &str) -> Vec<Timed> {
    let mut verify = Vec::new();
    for run in ["1st", "2nd"] {
        let started = Instant::now();
        let verdicts = services
            .verify_audit(Some(chain))
            .await
            .expect("verify_audit");
        let took = started.elapsed();
        let verdict = verdicts.first().expect("a verdict");
        assert!(verdict.is_good(), "the chain verifies: {verdict:?}");
        verify.push(Timed {
            label: format!("verify_audit(Some(chain)) from {engine}, {run} run"),
            events: verdict.events,
            took,
            target: Some(VERIFY_TARGET),
            note: format!("{} checkpoints checked", verdict.checkpoints),
        });
    }
    verify.extend(verify_breakdown(services, chain, engine).await);
    verify
}

/// Passes over the exported file: lines only; lines parsed; parsed and canonicalized; then
/// `verify_export` itself.
fn verify_file(path: &Path, key_text: &str) -> Vec<Timed> {
    let open = || BufReader::with_capacity(1 << 20, std::fs::File::open(path).expect("export"));
    let mut rows = Vec::new();

    let started = Instant::now();
    let mut lines = 0u64;
    for line in open().lines() {
        line.expect("line");
        lines += 1;
    }
    rows.push(Timed {
        label: String::from("  file pass: read lines only (BufRead::lines)"),
        events: lines,
        took: started.elapsed(),
        target: None,
        note: String::from("(lines, not only events)"),
    });

    let started = Instant::now();
    for line in open().lines() {
        let line = line.expect("line");
        std::hint::black_box(Sha256::digest(line.as_bytes()));
    }
    rows.push(Timed {
        label: String::from("  baseline: read lines + SHA-256 of each line"),
        events: lines,
        took: started.elapsed(),
        target: None,
        note: String::from("(lines; the bytes verify_export hashes, about)"),
    });

    let started = Instant::now();
    for line in open().lines() {
        let line = line.expect("line");
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        std::hint::black_box(value);
    }
    rows.push(Timed {
        label: String::from("  file pass: lines + serde_json::Value parse"),
        events: lines,
        took: started.elapsed(),
        target: None,
        note: String::from("(lines)"),
    });

    let started = Instant::now();
    for line in open().lines() {
        let line = line.expect("line");
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        std::hint::black_box(jcs::canonical(&value).expect("canonical"));
    }
    rows.push(Timed {
        label: String::from("  file pass: lines + parse + JCS canonical text"),
        events: lines,
        took: started.elapsed(),
        target: None,
        note: String::from("(lines; verify_export did this twice a line before)"),
    });

    let key = parse_public_key(key_text).expect("the public key");
    let started = Instant::now();
    let verdict = verify_export(open(), &key).expect("read the export");
    let took = started.elapsed();
    assert!(verdict.is_good(), "the export verifies: {verdict:?}");
    let chain = verdict.chain.expect("a chain");
    rows.push(Timed {
        label: String::from("verify_export(file) (mamori audit verify-export)"),
        events: chain.events,
        took,
        target: Some(VERIFY_TARGET),
        note: format!("{} checkpoints checked, complete", chain.checkpoints),
    });
    rows
}

async fn log_in_over_http(client: &reqwest::Client, base_url: &str, email: &str) -> String {
    let response = client
        .post(format!("{base_url}/api/v1/sessions"))
        .json(&serde_json::json!({ "email": email, "password": GOOD_PASSWORD }))
        .send()
        .await
        .expect("log-in sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("log-in body");
    assert_eq!(status, 201, "log in {email}: {text}");
    let created: mamori_api_types::SessionCreated = serde_json::from_str(&text).expect("session");
    created.token
}

/// Streams one export, reading the body to its end, while the server's RSS is sampled.
async fn export_over_http(
    client: &reqwest::Client,
    base_url: &str,
    pid: u32,
    label: &str,
    org: &str,
    token: &str,
    events: usize,
) -> ExportRun {
    let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let rss_before = proc_status_bytes(pid, "VmRSS");
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(proc_status_bytes(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak.max(proc_status_bytes(pid, "VmRSS"))
        })
    };
    let started = Instant::now();
    let mut response = client
        .get(format!(
            "{base_url}/api/v1/orgs/{org}/audit-events/export?format=jsonl"
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("export sent");
    assert_eq!(response.status().as_u16(), 200, "export status");
    let mut first_byte = None;
    let mut bytes = 0u64;
    let mut lines = 0u64;
    while let Some(chunk) = response.chunk().await.expect("export body") {
        first_byte.get_or_insert_with(|| started.elapsed());
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|byte| **byte == b'\n').count() as u64;
    }
    let took = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let peak_sampled = sampler.join().expect("RSS sampler");
    let peak_hwm = proc_status_bytes(pid, "VmHWM");
    assert!(
        lines >= events as u64,
        "the export of {label} has {lines} lines for {events} events"
    );
    ExportRun {
        label: label.to_owned(),
        events,
        lines,
        bytes,
        first_byte: first_byte.unwrap_or(took),
        took,
        rss_before,
        peak_hwm,
        peak_sampled,
        hwm_reset,
    }
}

async fn chain_part(plan: &Plan) -> ChainReport {
    let database = Arc::new(TestDatabase::create(TestEngine::Sqlite).await);
    let mut app = start_in_process(database.clone()).await;
    let services = app.services.clone();
    let fixture = setup(&services, 2).await;
    let big = fixture.orgs[0].clone();
    let small = fixture.orgs[1].clone();

    let mut populate = Vec::new();
    let small_events = if plan.export { plan.small_events } else { 0 };
    for (org, n) in [(&big, plan.chain_events), (&small, small_events)] {
        if n == 0 {
            continue;
        }
        eprintln!("  populating {} with {n} events ...", org.id);
        let stats = ingest_run(
            &services,
            &fixture.app,
            &org.id,
            POPULATE_IN_FLIGHT,
            Limit::Events(n),
        )
        .await;
        populate.push(Timed {
            label: format!("{n} events into one organization's chain"),
            events: stats.count() as u64,
            took: stats.wall,
            target: None,
            note: format!("ack p99 {} ms", ms(stats.quantile(0.99))),
        });
    }
    let db_bytes = std::fs::metadata(database.data_dir().join("mamori.db")).map_or(0, |m| m.len());

    // From the store.
    eprintln!("  verifying from the store ...");
    let mut verify = verify_store(&services, &big.id, "SQLite").await;

    // Export in process to a file, then verify the file offline.
    eprintln!("  exporting in process ...");
    let access = services
        .org_access(&big.session, &big.id)
        .await
        .expect("org access");
    let path: PathBuf = database.data_dir().join("export.jsonl");
    let started = Instant::now();
    let mut export = services
        .begin_audit_export(
            &access,
            &AuditQuery::default(),
            ExportFormat::JsonLines,
            &ctx(),
            now(),
        )
        .await
        .expect("begin export");
    let mut file = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&path).expect("export file"),
    );
    let mut bytes = 0u64;
    while let Some(chunk) = services
        .audit_export_chunk(&mut export)
        .await
        .expect("export chunk")
    {
        bytes += chunk.len() as u64;
        file.write_all(chunk.as_bytes()).expect("write export");
    }
    file.flush().expect("flush export");
    drop(file);
    let exported = plan.chain_events as u64;
    verify.push(Timed {
        label: String::from("(export in process to a file, audit_export_chunk)"),
        events: exported,
        took: started.elapsed(),
        target: None,
        note: format!("{:.0} MB", bytes as f64 / MB),
    });
    let key_text = services
        .audit_public_key()
        .await
        .expect("public key")
        .public_key;
    eprintln!("  verifying the file ...");
    let file_rows = tokio::task::spawn_blocking({
        let path = path.clone();
        move || verify_file(&path, &key_text)
    })
    .await
    .expect("verify the file");
    verify.extend(file_rows);
    let _ = std::fs::remove_file(&path);

    app.stop().await;
    drop(app);
    drop(services);

    // The same verification from PostgreSQL, on a chain of its own.
    if plan.engines.contains(&TestEngine::Postgres) {
        let n = plan.pg_chain_events;
        eprintln!("  PostgreSQL: populating a chain of {n} events ...");
        let pg_database = Arc::new(TestDatabase::create(TestEngine::Postgres).await);
        let mut pg_app = start_in_process(pg_database.clone()).await;
        let pg_services = pg_app.services.clone();
        let pg_fixture = setup(&pg_services, 1).await;
        let org = pg_fixture.orgs[0].clone();
        let stats = ingest_run(
            &pg_services,
            &pg_fixture.app,
            &org.id,
            POPULATE_IN_FLIGHT,
            Limit::Events(n),
        )
        .await;
        populate.push(Timed {
            label: format!("{n} events into one organization's chain (PostgreSQL)"),
            events: stats.count() as u64,
            took: stats.wall,
            target: None,
            note: format!("ack p99 {} ms", ms(stats.quantile(0.99))),
        });
        eprintln!("  PostgreSQL: verifying from the store ...");
        verify.extend(verify_store(&pg_services, &org.id, "PostgreSQL").await);
        pg_app.stop().await;
        drop(pg_app);
        drop(pg_services);
    }

    if !plan.export {
        return ChainReport {
            chain_events: plan.chain_events,
            db_bytes,
            populate,
            verify,
            idle_rss: 0,
            exports: Vec::new(),
        };
    }
    // The real server streams the exports.
    eprintln!("  exporting over HTTP ...");
    let mut server = ServerProcess::spawn(server_command(&database, None));
    let pid = server.child.id();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("http client");
    let big_token = log_in_over_http(&client, &server.base_url, &big.email).await;
    let small_token = log_in_over_http(&client, &server.base_url, &small.email).await;
    let mut idle_rss = proc_status_bytes(pid, "VmRSS");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = proc_status_bytes(pid, "VmRSS");
        let stable = rss.abs_diff(idle_rss) < 64 * 1024;
        idle_rss = rss;
        if stable || Instant::now() > deadline {
            break;
        }
    }
    // The first export warms the server up (SQLite's page cache on each pooled connection,
    // the allocator's arenas); the two measured after it start from the same state.
    let mut exports = Vec::new();
    for (label, org, token, events) in [
        ("small, warm-up", &small, &small_token, plan.small_events),
        ("small", &small, &small_token, plan.small_events),
        ("large", &big, &big_token, plan.chain_events),
    ] {
        exports.push(
            export_over_http(
                &client,
                &server.base_url,
                pid,
                label,
                &org.id,
                token,
                events,
            )
            .await,
        );
    }
    let exit = server.terminate();
    assert!(exit.success(), "mamori serve exited with {exit}");
    ChainReport {
        chain_events: plan.chain_events,
        db_bytes,
        populate,
        verify,
        idle_rss,
        exports,
    }
}
