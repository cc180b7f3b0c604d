#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! An organization with 10,000 members and 1,000 teams, over HTTP on loopback, on both engines:
//!
//! - a page of 50 members (`GET /api/v1/orgs/{org}/members?limit=50`, the administrator's
//!   session), first walking the cursors across the whole list, then pages at random cursors;
//! - an app's membership check (`GET /api/v1/app/orgs/{org}/members/{account}`, the app's
//!   secret) for random members.
//!
//! Targets (from the issue): p99 under 20 ms for the page and under 2 ms for the check, judged
//! on the sequential single-client runs. A second run with 8 concurrent clients reports
//! throughput and p99. The machine these run on is small and shared, so the figures are
//! printed, never asserted: the exit status is 0 whatever they are.
//!
//! The real server runs in this process (`mamori_testkit::spawn_app`: a fresh database, the
//! test settings, whose only differences from the defaults that matter here are cheap
//! Argon2id parameters and a pool of 4 connections). Seeding goes around HTTP to keep it
//! short: accounts sign up through the service layer (8 at a time), teams are created through
//! the service layer, and the rows that have no use case of their own at this scale
//! (memberships, which only invitations create; team members; the app's selected members) are
//! inserted with portable SQL in batched transactions. On PostgreSQL the database is then
//! analyzed (`VACUUM ANALYZE`), as autovacuum would do within a minute or so, so that queries
//! are planned from statistics as in production. Seeding time is reported separately.
//!
//! Then, for where the time goes: random pages split by their position in the list (a keyset
//! page should cost the same anywhere), the same calls in-process (the service methods the handlers
//! call, no HTTP), a first walk of the list after a restart (cold keyring cache: every member's
//! data key is read from the keyring database and unwrapped), and on PostgreSQL the number of
//! SQL statements per request, read from `pg_stat_database`.
//!
//! Environment: `MAMORI_BENCH_ENGINES` = `sqlite`, `postgres` or both (default);
//! `MAMORI_BENCH_MEMBERS` (default 10000; teams are a tenth of it); `MAMORI_BENCH_POOL` (the
//! server's database pool; default 4, as in the test settings);
//! `MAMORI_BENCH_PAGE_REQUESTS` (default 2000) and `MAMORI_BENCH_CHECK_REQUESTS` (default
//! 20000) per run. PostgreSQL is found as the tests find it (`MAMORI_TEST_POSTGRES_URL`).
//!
//! Run: `cargo bench -p mamori --bench orgs`.

use mamori_api_types::{AppMembership, MemberPage};
use mamori_core::{AccountId, AppId, OrgId, Timestamp};
use mamori_server::ManualClock;
use mamori_service::{
    AccountSession, AppPrincipal, Authenticated, OrgAccess, RequestContext, Services, SignUp,
};
use mamori_testkit::{
    ClockExt, GOOD_PASSWORD, TEST_EPOCH, TestApp, TestDatabase, TestEngine, spawn_app, spawn_with,
    test_settings,
};
use sqlx::AnyPool;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PAGE_LIMIT: u32 = 50;
const PAGE_P99_TARGET: Duration = Duration::from_millis(20);
const CHECK_P99_TARGET: Duration = Duration::from_millis(2);
const CLIENTS: usize = 8;
const SEED_CONCURRENCY: usize = 8;
const TEAMS_PER_MEMBER: usize = 5;
/// Rows per multi-row INSERT, and rows per transaction, when seeding with SQL.
const ROWS_PER_STATEMENT: usize = 100;
const ROWS_PER_TRANSACTION: usize = 1000;

struct Plan {
    members: usize,
    teams: usize,
    page_requests: usize,
    check_requests: usize,
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {text:?}")),
        Err(_) => default,
    }
}

fn main() {
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
    let members = env_number("MAMORI_BENCH_MEMBERS", 10_000).max(2);
    let plan = Plan {
        members,
        teams: (members / 10).max(1),
        page_requests: env_number("MAMORI_BENCH_PAGE_REQUESTS", 2_000).max(CLIENTS),
        check_requests: env_number("MAMORI_BENCH_CHECK_REQUESTS", 20_000).max(CLIENTS),
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "mamori organization benchmark: {} members, {} teams ({} per member), pages of {}, \
         {} page requests and {} membership checks per run; {cores} cores; load average {}",
        plan.members,
        plan.teams,
        TEAMS_PER_MEMBER.min(plan.teams),
        PAGE_LIMIT,
        plan.page_requests,
        plan.check_requests,
        load_average()
    );
    let mut reports = Vec::new();
    for engine in engines {
        println!();
        println!("== {} ==", engine_name(engine));
        let report = runtime.block_on(run_engine(engine, &plan));
        report.print();
        reports.push(report);
    }
    drop(runtime);
    println!();
    println!("== summary (targets judged on the sequential single-client runs) ==");
    for report in &reports {
        report.print_summary();
    }
    println!(
        "load average at the end {}; the figures are printed, not asserted (a shared 2-core \
         machine is noisy)",
        load_average()
    );
}

// ---------------------------------------------------------------------------------------------
// Seeding

struct Seeded {
    org_id: String,
    admin_token: String,
    app_id: AppId,
    app_secret: String,
    /// Every member, the administrator included, in the order the API lists them.
    sorted_members: Vec<String>,
    /// Members the app is enabled for (mode `selected`).
    selected: HashSet<String>,
    admin_id: String,
    steps: Vec<(String, Duration)>,
}

fn ctx() -> RequestContext {
    RequestContext::default()
}

/// One value bound into a seeding INSERT.
enum Param {
    Text(String),
    Int(i64),
}

/// Inserts `rows` into `table (columns)` with multi-row INSERTs of portable SQL, committing
/// every [`ROWS_PER_TRANSACTION`] rows.
async fn insert_rows(pool: &AnyPool, table: &str, columns: &[&str], rows: Vec<Vec<Param>>) {
    for transaction_rows in rows.chunks(ROWS_PER_TRANSACTION) {
        let mut tx = pool.begin().await.expect("begin seeding transaction");
        for statement_rows in transaction_rows.chunks(ROWS_PER_STATEMENT) {
            let mut text = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
            let mut n = 0;
            for (index, row) in statement_rows.iter().enumerate() {
                if index > 0 {
                    text.push_str(", ");
                }
                text.push('(');
                for column in 0..row.len() {
                    if column > 0 {
                        text.push_str(", ");
                    }
                    n += 1;
                    text.push_str(&format!("${n}"));
                }
                text.push(')');
            }
            let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
            for row in statement_rows {
                for param in row {
                    query = match param {
                        Param::Text(value) => query.bind(value.clone()),
                        Param::Int(value) => query.bind(*value),
                    };
                }
            }
            query
                .execute(&mut *tx)
                .await
                .unwrap_or_else(|error| panic!("seed {table}: {error}"));
        }
        tx.commit().await.expect("commit seeding transaction");
    }
}

async fn count(pool: &AnyPool, sql: &str, bind: &str) -> i64 {
    use sqlx::Row;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(bind.to_owned())
        .fetch_one(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    row.try_get::<i64, _>(0).expect("a count")
}

/// Runs `job(i)` for every `i` in `0..n`, `concurrency` at a time; returns the results in
/// order of `i`.
async fn run_concurrently<T, F, Fut>(n: usize, concurrency: usize, job: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Option<T>>>> = Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let job = job.clone();
        let next = next.clone();
        let results = results.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= n {
                    break;
                }
                let value = job(index).await;
                results.lock().unwrap()[index] = Some(value);
            }
        }));
    }
    for worker in workers {
        worker.await.expect("seeding worker");
    }
    let mut results = results.lock().unwrap();
    results
        .drain(..)
        .map(|value| value.expect("every job ran"))
        .collect()
}

async fn seed(app: &TestApp, plan: &Plan) -> Seeded {
    let services = app.services.clone();
    let now = app.clock.now_timestamp();
    let mut steps = Vec::new();

    // The administrator, who creates the organization at sign-up, and a session of theirs.
    let started = Instant::now();
    let admin_email = String::from("admin@bench.example");
    let (admin, org_id) = services
        .sign_up(
            &ctx(),
            SignUp {
                email: admin_email.clone(),
                password: GOOD_PASSWORD.to_owned(),
                display_name: String::from("Bench Admin"),
                organization_name: Some(String::from("Bench Org")),
                invitation_token: None,
            },
            now,
        )
        .await
        .unwrap_or_else(|error| panic!("admin sign-up: {error:?}"));
    let org_id = org_id.expect("sign-up with an organization").to_string();
    let admin_session = services
        .log_in(&ctx(), &admin_email, GOOD_PASSWORD, now)
        .await
        .unwrap_or_else(|error| panic!("admin log-in: {error:?}"));
    let access = services
        .org_access(&admin_session.session, &org_id)
        .await
        .unwrap_or_else(|error| panic!("admin org access: {error:?}"));
    let app_registration = services
        .create_app(None, &ctx(), "Bench App", now)
        .await
        .unwrap_or_else(|error| panic!("create app: {error:?}"));
    services
        .enable_app(
            &access,
            &ctx(),
            app_registration.id.as_str(),
            "selected",
            now,
        )
        .await
        .unwrap_or_else(|error| panic!("enable app: {error:?}"));
    steps.push((
        String::from("administrator + organization + session + app (services)"),
        started.elapsed(),
    ));

    // The other members sign up through the service layer, SEED_CONCURRENCY at a time.
    let others = plan.members - 1;
    let started = Instant::now();
    let progress = Arc::new(AtomicUsize::new(0));
    let member_ids: Vec<String> = {
        let services = services.clone();
        let progress = progress.clone();
        run_concurrently(others, SEED_CONCURRENCY, move |index| {
            let services = services.clone();
            let progress = progress.clone();
            async move {
                let (view, _) = services
                    .sign_up(
                        &ctx(),
                        SignUp {
                            email: format!("member{index:05}@bench.example"),
                            password: GOOD_PASSWORD.to_owned(),
                            display_name: format!("Bench Member {index}"),
                            organization_name: None,
                            invitation_token: None,
                        },
                        now,
                    )
                    .await
                    .unwrap_or_else(|error| panic!("sign-up {index}: {error:?}"));
                let done = progress.fetch_add(1, Ordering::Relaxed) + 1;
                if done.is_multiple_of(2_000) {
                    eprintln!("  ... {done} sign-ups");
                }
                view.id.to_string()
            }
        })
        .await
    };
    steps.push((
        format!("{others} sign-ups (services, {SEED_CONCURRENCY} at a time)"),
        started.elapsed(),
    ));

    // Teams through the service layer.
    let started = Instant::now();
    let team_ids: Vec<String> = {
        let services = services.clone();
        let access = access.clone();
        run_concurrently(plan.teams, SEED_CONCURRENCY, move |index| {
            let services = services.clone();
            let access = access.clone();
            async move {
                services
                    .create_team(&access, &ctx(), &format!("Team {index:04}"), now)
                    .await
                    .unwrap_or_else(|error| panic!("create team {index}: {error:?}"))
                    .id
                    .to_string()
            }
        })
        .await
    };
    steps.push((
        format!(
            "{} teams (services, {SEED_CONCURRENCY} at a time)",
            plan.teams
        ),
        started.elapsed(),
    ));

    // Memberships, team members and the app's selected members, with SQL.
    let pool = app.database.pool().await;
    let millis = now.as_millis();
    let started = Instant::now();
    let membership_rows = member_ids
        .iter()
        .map(|account| {
            vec![
                Param::Text(org_id.clone()),
                Param::Text(account.clone()),
                Param::Text(String::from("member")),
                Param::Int(0),
                Param::Int(millis),
                Param::Int(millis),
            ]
        })
        .collect();
    insert_rows(
        &pool,
        "memberships",
        &[
            "org_id",
            "account_id",
            "role",
            "can_invite",
            "created_at",
            "updated_at",
        ],
        membership_rows,
    )
    .await;
    steps.push((format!("{others} memberships (SQL)"), started.elapsed()));

    let started = Instant::now();
    let per_member = TEAMS_PER_MEMBER.min(team_ids.len());
    let mut team_rows = Vec::with_capacity(others * per_member);
    for (index, account) in member_ids.iter().enumerate() {
        for k in 0..per_member {
            let team = &team_ids[(index * per_member + k) % team_ids.len()];
            team_rows.push(vec![
                Param::Text(team.clone()),
                Param::Text(org_id.clone()),
                Param::Text(account.clone()),
                Param::Int(millis),
            ]);
        }
    }
    let team_member_count = team_rows.len();
    insert_rows(
        &pool,
        "team_members",
        &["team_id", "org_id", "account_id", "created_at"],
        team_rows,
    )
    .await;
    steps.push((
        format!("{team_member_count} team members (SQL)"),
        started.elapsed(),
    ));

    let started = Instant::now();
    let selected: HashSet<String> = member_ids.iter().step_by(2).cloned().collect();
    let selected_rows = member_ids
        .iter()
        .step_by(2)
        .map(|account| {
            vec![
                Param::Text(org_id.clone()),
                Param::Text(app_registration.id.to_string()),
                Param::Text(account.clone()),
                Param::Int(millis),
            ]
        })
        .collect();
    insert_rows(
        &pool,
        "org_app_members",
        &["org_id", "app_id", "account_id", "created_at"],
        selected_rows,
    )
    .await;
    steps.push((
        format!("{} selected app members (SQL)", selected.len()),
        started.elapsed(),
    ));

    // PostgreSQL's autovacuum would analyze the freshly loaded tables within a minute or so,
    // in the middle of the measurements; do it now, as a database in steady state would have.
    if app.database.engine() == TestEngine::Postgres {
        let started = Instant::now();
        sqlx::query("VACUUM ANALYZE")
            .execute(&pool)
            .await
            .expect("VACUUM ANALYZE");
        steps.push((
            String::from("VACUUM ANALYZE (PostgreSQL, as autovacuum would)"),
            started.elapsed(),
        ));
    }

    // What was stored is what was meant.
    let n_members = count(
        &pool,
        "SELECT COUNT(*) FROM memberships WHERE org_id = $1",
        &org_id,
    )
    .await;
    let n_teams = count(
        &pool,
        "SELECT COUNT(*) FROM teams WHERE org_id = $1",
        &org_id,
    )
    .await;
    let n_team_members = count(
        &pool,
        "SELECT COUNT(*) FROM team_members WHERE org_id = $1",
        &org_id,
    )
    .await;
    let n_selected = count(
        &pool,
        "SELECT COUNT(*) FROM org_app_members WHERE org_id = $1",
        &org_id,
    )
    .await;
    assert_eq!(n_members as usize, plan.members, "memberships stored");
    assert_eq!(n_teams as usize, plan.teams, "teams stored");
    assert_eq!(n_team_members as usize, team_member_count, "team members");
    assert_eq!(n_selected as usize, selected.len(), "selected members");
    pool.close().await;

    let mut sorted_members = member_ids;
    sorted_members.push(admin.id.to_string());
    sorted_members.sort();
    Seeded {
        org_id,
        admin_token: admin_session.token,
        app_id: app_registration.id,
        app_secret: app_registration.secret,
        sorted_members,
        selected,
        admin_id: admin.id.to_string(),
        steps,
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// A small deterministic generator (SplitMix64), so every run asks for the same things.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

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

struct Row {
    label: String,
    stats: Stats,
    target: Option<Duration>,
}

struct EngineReport {
    engine: TestEngine,
    plan_members: usize,
    plan_teams: usize,
    pool_size: u32,
    steps: Vec<(String, Duration)>,
    http: Vec<Row>,
    in_process: Vec<Row>,
    statements: Vec<String>,
    by_position: String,
    page_verdict: (Duration, bool),
    check_verdict: (Duration, bool),
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

impl EngineReport {
    fn print(&self) {
        println!();
        println!(
            "-- {}: {} members, {} teams; the server's pool has {} connections --",
            engine_name(self.engine),
            self.plan_members,
            self.plan_teams,
            self.pool_size
        );
        println!("seeding (not part of the measurements):");
        let mut total = Duration::ZERO;
        for (step, took) in &self.steps {
            total += *took;
            println!("  {step:<62} {:>8.1} s", took.as_secs_f64());
        }
        println!("  {:<62} {:>8.1} s", "total", total.as_secs_f64());
        println!(
            "  (memberships, team members and app selections were inserted with SQL: at this \
             scale\n   there is no use case for them but invitations, 2 calls per member)"
        );
        println!();
        println!("over HTTP on loopback (keep-alive reqwest client; times in ms):");
        print_table(&self.http);
        println!("{}", self.by_position);
        println!();
        println!("in-process, the service calls the handlers make (no HTTP; times in ms):");
        print_table(&self.in_process);
        if !self.statements.is_empty() {
            println!();
            println!("SQL statements per request (PostgreSQL, from pg_stat_database.xact_commit):");
            for line in &self.statements {
                println!("  {line}");
            }
        }
    }

    fn print_summary(&self) {
        let (page_p99, page_ok) = self.page_verdict;
        let (check_p99, check_ok) = self.check_verdict;
        println!(
            "{:<9} members page p99 {:>7} ms (< {} ms) {}   membership check p99 {:>6} ms \
             (< {} ms) {}",
            engine_name(self.engine),
            ms(page_p99),
            PAGE_P99_TARGET.as_millis(),
            verdict(page_ok),
            ms(check_p99),
            CHECK_P99_TARGET.as_millis(),
            verdict(check_ok)
        );
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "  {:<46} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}   target",
        "measure", "n", "p50", "p90", "p99", "max", "mean", "req/s"
    );
    for row in rows {
        let s = &row.stats;
        let mean = if s.latencies.is_empty() {
            Duration::ZERO
        } else {
            s.latencies.iter().sum::<Duration>() / s.latencies.len() as u32
        };
        let target = match row.target {
            Some(target) => format!(
                "p99 < {} ms  {}",
                target.as_millis(),
                verdict(s.quantile(0.99) < target)
            ),
            None => String::new(),
        };
        println!(
            "  {:<46} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9.0}   {}",
            row.label,
            s.latencies.len(),
            ms(s.quantile(0.5)),
            ms(s.quantile(0.9)),
            ms(s.quantile(0.99)),
            ms(s.max()),
            ms(mean),
            s.per_second(),
            target
        );
    }
}

fn engine_name(engine: TestEngine) -> &'static str {
    match engine {
        TestEngine::Sqlite => "sqlite",
        TestEngine::Postgres => "postgres",
    }
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

/// What the measuring clients need; cheap to clone into tasks.
#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    base_url: String,
    org_id: String,
    admin_token: String,
    app_secret: String,
    admin_id: String,
    sorted_members: Arc<Vec<String>>,
    selected: Arc<HashSet<String>>,
}

impl Target {
    fn page_url(&self, cursor: Option<&str>) -> String {
        let mut url = format!(
            "{}/api/v1/orgs/{}/members?limit={PAGE_LIMIT}",
            self.base_url, self.org_id
        );
        if let Some(cursor) = cursor {
            url.push_str("&cursor=");
            url.push_str(cursor);
        }
        url
    }

    /// One page; returns its latency (request sent to body read) and the page.
    async fn page(&self, cursor: Option<&str>) -> (Duration, MemberPage) {
        let url = self.page_url(cursor);
        let started = Instant::now();
        let response = self
            .client
            .get(&url)
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("members page sent");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("members page body");
        let took = started.elapsed();
        assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
        (took, serde_json::from_slice(&body).expect("a member page"))
    }

    /// A page at a random cursor, checked against the list; returns its latency.
    /// Returns the latency and the position in the list of the page's first member.
    async fn random_page(&self, random: &mut Random) -> (Duration, usize) {
        let members = &self.sorted_members;
        // `None` is the first page; otherwise the page after a random member.
        let start = random.below(members.len() + 1);
        let cursor = start.checked_sub(1).map(|index| members[index].as_str());
        let (took, page) = self.page(cursor).await;
        let expected = &members[start..(start + PAGE_LIMIT as usize).min(members.len())];
        assert_eq!(page.items.len(), expected.len(), "page length");
        for (item, id) in page.items.iter().zip(expected) {
            assert_eq!(&item.account_id, id, "page contents");
        }
        (took, start)
    }

    /// The membership check for one member, checked; returns its latency.
    async fn check(&self, random: &mut Random) -> Duration {
        let account = &self.sorted_members[random.below(self.sorted_members.len())];
        let url = format!(
            "{}/api/v1/app/orgs/{}/members/{account}",
            self.base_url, self.org_id
        );
        let started = Instant::now();
        let response = self
            .client
            .get(&url)
            .bearer_auth(&self.app_secret)
            .send()
            .await
            .expect("membership check sent");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("membership check body");
        let took = started.elapsed();
        assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
        let answer: AppMembership = serde_json::from_slice(&body).expect("an app membership");
        assert_eq!(&answer.account_id, account);
        assert_eq!(answer.active, self.selected.contains(account), "active");
        let role = if *account == self.admin_id {
            "admin"
        } else {
            "member"
        };
        assert_eq!(answer.role, role);
        took
    }

    /// Walks the whole list by its cursors; checks it is exactly the members, in order.
    async fn walk(&self) -> Stats {
        let started = Instant::now();
        let mut latencies = Vec::new();
        let mut seen = Vec::with_capacity(self.sorted_members.len());
        let mut cursor: Option<String> = None;
        loop {
            let (took, page) = self.page(cursor.as_deref()).await;
            latencies.push(took);
            seen.extend(page.items.into_iter().map(|item| item.account_id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert!(
            seen == *self.sorted_members,
            "the walk listed {} members, not exactly the {} seeded",
            seen.len(),
            self.sorted_members.len()
        );
        Stats::new(latencies, started.elapsed())
    }
}

/// `total` requests (random pages, or membership checks) from `clients` concurrent clients,
/// each with its own random stream.
async fn concurrent(target: &Target, clients: usize, total: usize, pages: bool) -> Stats {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let target = target.clone();
        let n = total / clients + usize::from(client < total % clients);
        tasks.push(tokio::spawn(async move {
            let mut random = Random(0xC11E_0000 + client as u64);
            let mut latencies = Vec::with_capacity(n);
            for _ in 0..n {
                latencies.push(if pages {
                    target.random_page(&mut random).await.0
                } else {
                    target.check(&mut random).await
                });
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    Stats::new(latencies, started.elapsed())
}

async fn sequential(target: &Target, n: usize, pages: bool, seed: u64) -> Stats {
    let mut random = Random(seed);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        latencies.push(if pages {
            target.random_page(&mut random).await.0
        } else {
            target.check(&mut random).await
        });
    }
    Stats::new(latencies, started.elapsed())
}

/// The random-cursor pages' p50 and p90 by where their cursor falls in the list, in tenths: a
/// keyset page should cost the same wherever it starts.
fn position_line(pages: &[(Duration, usize)], members: usize) -> String {
    let mut p50 = Vec::new();
    let mut p90 = Vec::new();
    for tenth in 0..10 {
        let latencies: Vec<Duration> = pages
            .iter()
            .filter(|(_, start)| (start * 10 / members.max(1)).min(9) == tenth)
            .map(|(took, _)| *took)
            .collect();
        let stats = Stats::new(latencies, Duration::ZERO);
        p50.push(ms(stats.quantile(0.5)));
        p90.push(ms(stats.quantile(0.9)));
    }
    format!(
        "  random-cursor pages (1 client) by where the cursor falls in the list, first tenth to \
         last:\n    p50 {}\n    p90 {}",
        p50.join(" "),
        p90.join(" ")
    )
}

/// `n` pages at random cursors from one client; returns the stats and each page's (latency,
/// position in the list).
async fn sequential_pages(target: &Target, n: usize, seed: u64) -> (Stats, Vec<(Duration, usize)>) {
    let mut random = Random(seed);
    let started = Instant::now();
    let mut pages = Vec::with_capacity(n);
    for _ in 0..n {
        pages.push(target.random_page(&mut random).await);
    }
    let latencies = pages.iter().map(|(took, _)| *took).collect();
    (Stats::new(latencies, started.elapsed()), pages)
}

/// Times `n` runs of `call`.
async fn time_calls<F, Fut>(n: usize, mut call: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    for index in 0..n {
        let call_started = Instant::now();
        call(index).await;
        latencies.push(call_started.elapsed());
    }
    Stats::new(latencies, started.elapsed())
}

/// The service calls each handler makes, in-process, split by step.
async fn in_process(
    services: &Services,
    seeded: &Seeded,
    now: Timestamp,
    pages: usize,
    checks: usize,
) -> Vec<Row> {
    let members: &[String] = &seeded.sorted_members;
    let token: &str = &seeded.admin_token;
    let secret: &str = &seeded.app_secret;
    let org: &str = &seeded.org_id;
    let session = match services.authenticate(token, now).await {
        Ok(Authenticated::Account(session)) => session,
        other => panic!("admin token: {other:?}"),
    };
    let session: &AccountSession = &session;
    let access: OrgAccess = services.org_access(session, org).await.expect("org access");
    let access = &access;
    let principal = AppPrincipal {
        app_id: seeded.app_id.clone(),
    };
    let principal = &principal;
    let row = |label: &str, stats: Stats| Row {
        label: label.to_owned(),
        stats,
        target: None,
    };
    let mut random = Random(0x5E41_11CE);
    let cursors: Vec<Option<String>> = (0..pages)
        .map(|_| {
            let start = random.below(members.len() + 1);
            start.checked_sub(1).map(|index| members[index].clone())
        })
        .collect();
    let cursors = &cursors;
    let accounts: Vec<String> = (0..checks)
        .map(|_| members[random.below(members.len())].clone())
        .collect();
    let accounts = &accounts;

    let mut rows = Vec::new();
    let stats = time_calls(pages, move |_| async move {
        match services.authenticate(token, now).await {
            Ok(Authenticated::Account(_)) => {}
            other => panic!("admin token: {other:?}"),
        }
    })
    .await;
    rows.push(row("page: authenticate (session token)", stats));
    let stats = time_calls(pages, move |_| async move {
        services.org_access(session, org).await.expect("org access");
    })
    .await;
    rows.push(row("page: org_access", stats));
    let stats = time_calls(pages, move |index| async move {
        let page = services
            .list_members(access, cursors[index].as_deref(), PAGE_LIMIT)
            .await
            .expect("list members");
        let start = cursors[index]
            .as_ref()
            .map_or(0, |cursor| members.partition_point(|id| id <= cursor));
        assert_eq!(
            page.items.len(),
            (members.len() - start).min(PAGE_LIMIT as usize),
            "page length"
        );
    })
    .await;
    rows.push(row("page: list_members(limit 50)", stats));
    // The one SQL query of list_members, alone: the rest of list_members is opening the
    // sealed fields (and, with a cold cache, reading the data keys).
    let store = services.store();
    let org_id = &OrgId::parse(org).expect("an org ID");
    let stats = time_calls(pages, move |index| async move {
        let after = cursors[index]
            .as_deref()
            .map(|cursor| AccountId::parse(cursor).expect("an account ID"));
        store
            .members(org_id, after.as_ref(), PAGE_LIMIT + 1)
            .await
            .expect("store members");
    })
    .await;
    rows.push(row("page: its SQL alone (store.members, 51 rows)", stats));
    let stats = time_calls(pages, move |index| async move {
        let session = match services.authenticate(token, now).await {
            Ok(Authenticated::Account(session)) => session,
            other => panic!("admin token: {other:?}"),
        };
        let access = services
            .org_access(&session, org)
            .await
            .expect("org access");
        services
            .list_members(&access, cursors[index].as_deref(), PAGE_LIMIT)
            .await
            .expect("list members");
    })
    .await;
    rows.push(row("page: all three, as the handler", stats));

    let stats = time_calls(checks, move |_| async move {
        match services.authenticate(secret, now).await {
            Ok(Authenticated::App(_)) => {}
            other => panic!("app secret: {other:?}"),
        }
    })
    .await;
    rows.push(row("check: authenticate (app secret)", stats));
    let stats = time_calls(checks, move |index| async move {
        services
            .app_membership(principal, org, &accounts[index])
            .await
            .expect("app membership");
    })
    .await;
    rows.push(row("check: app_membership", stats));
    let stats = time_calls(checks, move |index| async move {
        let principal = match services.authenticate(secret, now).await {
            Ok(Authenticated::App(principal)) => principal,
            other => panic!("app secret: {other:?}"),
        };
        services
            .app_membership(&principal, org, &accounts[index])
            .await
            .expect("app membership");
    })
    .await;
    rows.push(row("check: both, as the handler", stats));
    let stats = time_calls(pages, move |_| async move {
        store.ping().await.expect("ping");
    })
    .await;
    rows.push(row("one round trip to the database (SELECT 1)", stats));
    rows
}

/// Counts SQL statements on PostgreSQL through `pg_stat_database.xact_commit` (every
/// statement outside a transaction commits one), in the data store and in the keyring.
/// Backends flush their statistics at the latest ~10 s after they go idle, so each reading
/// waits that long first. It connects to the server's `postgres` database, so its own queries
/// are not counted.
struct StatementCounter {
    admin: AnyPool,
    data: String,
    keyring: String,
}

impl StatementCounter {
    const FLUSH_WAIT: Duration = Duration::from_secs(11);

    async fn open(app: &TestApp) -> StatementCounter {
        sqlx::any::install_default_drivers();
        let admin = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&mamori_testkit::database::postgres_admin_url())
            .await
            .expect("connect to the postgres database for statistics");
        StatementCounter {
            admin,
            data: database_name(app.database.url()),
            keyring: database_name(app.database.keyring_url()),
        }
    }

    async fn commits(&self, database: &str) -> i64 {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT CAST(xact_commit AS BIGINT) AS n FROM pg_stat_database WHERE datname = $1",
        )
        .bind(database.to_owned())
        .fetch_one(&self.admin)
        .await
        .expect("pg_stat_database");
        row.try_get::<i64, _>("n").expect("xact_commit")
    }

    /// (data store, keyring) statements so far, once the statistics have settled.
    async fn settled(&self) -> (i64, i64) {
        tokio::time::sleep(Self::FLUSH_WAIT).await;
        (
            self.commits(&self.data).await,
            self.commits(&self.keyring).await,
        )
    }
}

fn statements_line(label: &str, before: (i64, i64), after: (i64, i64), n: usize) -> String {
    format!(
        "{label:<54} {:>6.1} in the data store, {:>5.1} in the keyring (over {n} requests)",
        (after.0 - before.0) as f64 / n as f64,
        (after.1 - before.1) as f64 / n as f64,
    )
}

fn database_name(url: &str) -> String {
    let without_query = url.split('?').next().unwrap_or(url);
    without_query
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn run_engine(engine: TestEngine, plan: &Plan) -> EngineReport {
    let app = match std::env::var("MAMORI_BENCH_POOL") {
        // The test settings with another pool size (the defaults are 8 on SQLite and 16 on
        // PostgreSQL; the test settings have 4).
        Ok(text) => {
            let database = Arc::new(TestDatabase::create(engine).await);
            let mut settings = test_settings(&database);
            settings.database_max_connections = text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("MAMORI_BENCH_POOL must be a number, got {text:?}"));
            spawn_with(database, settings, Arc::new(ManualClock::new(TEST_EPOCH))).await
        }
        Err(_) => spawn_app(engine).await,
    };
    let pool_size = app.settings.database_max_connections;
    eprintln!("seeding {} ...", engine_name(engine));
    let seeded = seed(&app, plan).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .expect("http client");
    let mut target = Target {
        client,
        base_url: app.base_url.clone(),
        org_id: seeded.org_id.clone(),
        admin_token: seeded.admin_token.clone(),
        app_secret: seeded.app_secret.clone(),
        admin_id: seeded.admin_id.clone(),
        sorted_members: Arc::new(seeded.sorted_members.clone()),
        selected: Arc::new(seeded.selected.clone()),
    };

    eprintln!("warming up ...");
    sequential(&target, 100.min(plan.page_requests), true, 1).await;
    sequential(&target, 1_000.min(plan.check_requests), false, 2).await;
    concurrent(&target, CLIENTS, 10 * CLIENTS, true).await;
    concurrent(&target, CLIENTS, 100 * CLIENTS, false).await;

    eprintln!("measuring pages ...");
    let walk = target.walk().await;
    let random_n = plan
        .page_requests
        .saturating_sub(walk.latencies.len())
        .max(1);
    let (random_pages, positions) = sequential_pages(&target, random_n, 3).await;
    let by_position = position_line(&positions, seeded.sorted_members.len());
    let mut all_pages = walk.latencies.clone();
    all_pages.extend(random_pages.latencies.iter().copied());
    let all_pages = Stats::new(all_pages, walk.wall + random_pages.wall);
    let pages_concurrent = concurrent(&target, CLIENTS, plan.page_requests, true).await;

    eprintln!("measuring checks ...");
    let checks = sequential(&target, plan.check_requests, false, 4).await;
    let checks_concurrent = concurrent(&target, CLIENTS, plan.check_requests, false).await;

    eprintln!("in-process ...");
    let now = app.clock.now_timestamp();
    let in_process_rows = in_process(
        &app.services,
        &seeded,
        now,
        plan.page_requests.min(1_000),
        plan.check_requests.min(10_000),
    )
    .await;

    let mut statements = Vec::new();
    let counter = if engine == TestEngine::Postgres {
        eprintln!("counting statements (waits for PostgreSQL's statistics) ...");
        let counter = StatementCounter::open(&app).await;
        for (label, n, pages) in [
            ("members page, random cursor (warm key cache)", 100, true),
            ("membership check", 1000, false),
        ] {
            let before = counter.settled().await;
            sequential(&target, n, pages, 0x57A7).await;
            let after = counter.settled().await;
            statements.push(statements_line(label, before, after, n));
        }
        Some(counter)
    } else {
        None
    };

    // A restart empties the keyring's in-memory cache of unwrapped data keys: the first walk
    // then reads every member's key from the keyring database.
    eprintln!("restarting for a cold keyring cache ...");
    let mut app = app.restart().await;
    target.base_url = app.base_url.clone();
    let before = match &counter {
        Some(counter) => counter.settled().await,
        None => (0, 0),
    };
    let cold_walk = target.walk().await;
    if let Some(counter) = &counter {
        let after = counter.settled().await;
        statements.push(statements_line(
            "members page, walk after restart (cold key cache)",
            before,
            after,
            cold_walk.latencies.len(),
        ));
        statements.push(String::from(
            "(the server's background jobs may add a statement now and then to these counts)",
        ));
        counter.admin.close().await;
    }
    let warm_walk = target.walk().await;

    let page_verdict = (
        all_pages.quantile(0.99),
        all_pages.quantile(0.99) < PAGE_P99_TARGET,
    );
    let check_verdict = (
        checks.quantile(0.99),
        checks.quantile(0.99) < CHECK_P99_TARGET,
    );
    let pages_n = all_pages.latencies.len();
    let http = vec![
        Row {
            label: String::from("page: walk the whole list by cursor (1 client)"),
            stats: walk,
            target: None,
        },
        Row {
            label: String::from("page: random cursors (1 client)"),
            stats: random_pages,
            target: None,
        },
        Row {
            label: format!("PAGE: all {pages_n} above (1 client)"),
            stats: all_pages,
            target: Some(PAGE_P99_TARGET),
        },
        Row {
            label: format!("page: random cursors ({CLIENTS} clients)"),
            stats: pages_concurrent,
            target: Some(PAGE_P99_TARGET),
        },
        Row {
            label: String::from("page: walk after restart, cold key cache"),
            stats: cold_walk,
            target: Some(PAGE_P99_TARGET),
        },
        Row {
            label: String::from("page: walk after restart, second walk"),
            stats: warm_walk,
            target: None,
        },
        Row {
            label: String::from("CHECK: random members (1 client)"),
            stats: checks,
            target: Some(CHECK_P99_TARGET),
        },
        Row {
            label: format!("check: random members ({CLIENTS} clients)"),
            stats: checks_concurrent,
            target: Some(CHECK_P99_TARGET),
        },
    ];
    app.stop().await;
    EngineReport {
        engine,
        plan_members: plan.members,
        plan_teams: plan.teams,
        pool_size,
        steps: seeded.steps,
        http,
        in_process: in_process_rows,
        statements,
        by_position,
        page_verdict,
        check_verdict,
    }
}
