#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Access-control checks with about 1,000,000 relationships (issue 7):
//!
//! - 10,000 accounts in one organization, 2,000 teams of 5 random members, an app enabled
//!   for everyone;
//! - 1,000 projects (an administrator and two member teams each), 20 folders per project
//!   (an owner, and the project's members as viewers: `project:P#member`), 50 topics per
//!   folder (the folder's viewers as participants: `folder:F#view`). A topic check that is
//!   granted walks topic -> folder -> project -> team: depth 3.
//!
//! Figures printed (never asserted: the machine is small and shared):
//!
//! 1. in process, on `mamori_core::authz::index::Index`: build time, resident memory of the
//!    index (growth of the process's RSS while building it), and check latency p50/p99 for
//!    granted (depth 3) and denied checks. Target (issue): p99 under 50 us.
//! 2. through the server (`mamori_testkit::spawn_app`): the same rows inserted with SQL, the
//!    time a restart takes with them against a restart with the directory only (the
//!    difference is loading the index), the in-process service call
//!    (`Services::check_permission`), and checks per second over HTTP on loopback: the
//!    release `mamori serve` started as its own process on those databases (its start-up,
//!    which loads the index, is timed too), driven by the small keep-alive client of
//!    `mamori_testkit::load`, per second of the server's CPU time. Target (issue): at least
//!    20,000 per second per core.
//!
//! Environment: `MAMORI_BENCH_ENGINES` = `sqlite` (default), `postgres` or both;
//! `MAMORI_BENCH_TOPICS_PER_FOLDER` (default 50); `MAMORI_BENCH_HTTP_SECONDS` (default 5);
//! `MAMORI_BENCH_CLIENTS` (default 8).
//!
//! Run: `cargo bench -p mamori --bench authz`.

use mamori_core::authz::index::{Index, OrgDirectory};
use mamori_core::authz::schema::{ObjectRef, SubjectRef};
use mamori_core::org::{AppMode, OrgRole};
use mamori_service::{AppPrincipal, CheckInput, RequestContext};
use mamori_testkit::load::{address_of, cpu_time, hammer, raw_request, settled_access_logs};
use mamori_testkit::process::ServerProcess;
use mamori_testkit::{ClockExt, TestApp, TestEngine, spawn_app};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const N_ACCOUNTS: usize = 10_000;
const N_TEAMS: usize = 2_000;
const TEAM_SIZE: usize = 5;
const N_PROJECTS: usize = 1_000;
const FOLDERS_PER_PROJECT: usize = 20;
const SAMPLES: usize = 200_000;

/// A small deterministic generator (xorshift), so every run builds the same world.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The world, as strings, independent of the index and the store.
struct World {
    org: String,
    app: String,
    accounts: Vec<String>,
    teams: Vec<(String, Vec<usize>)>,
    /// (resource, relation, subject)
    tuples: Vec<(ObjectRef, String, SubjectRef)>,
    /// For each project, its two teams.
    project_teams: Vec<[usize; 2]>,
    topics_per_folder: usize,
}

/// A valid ID body (26 characters of the ID alphabet) made from a number.
fn id_body(mut i: usize) -> String {
    let mut body = vec![b'a'; 26];
    for at in (0..26).rev() {
        body[at] = b'a' + (i % 26) as u8;
        i /= 26;
    }
    String::from_utf8(body).unwrap()
}

fn account_id(i: usize) -> String {
    format!("acc_{}", id_body(i))
}

fn world(org: &str, app: &str, topics_per_folder: usize) -> World {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let accounts: Vec<String> = (0..N_ACCOUNTS).map(account_id).collect();
    let teams: Vec<(String, Vec<usize>)> = (0..N_TEAMS)
        .map(|t| {
            let members = (0..TEAM_SIZE).map(|_| rng.below(N_ACCOUNTS)).collect();
            (format!("team_{}", id_body(t)), members)
        })
        .collect();
    let mut tuples = Vec::new();
    let mut project_teams = Vec::new();
    for p in 0..N_PROJECTS {
        let project = ObjectRef {
            kind: String::from("project"),
            id: format!("p{p}"),
        };
        let pair = [rng.below(N_TEAMS), rng.below(N_TEAMS)];
        project_teams.push(pair);
        tuples.push((
            project.clone(),
            String::from("admin"),
            SubjectRef::Account(accounts[rng.below(N_ACCOUNTS)].clone()),
        ));
        for team in pair {
            tuples.push((
                project.clone(),
                String::from("member"),
                SubjectRef::Team(teams[team].0.clone()),
            ));
        }
        for f in 0..FOLDERS_PER_PROJECT {
            let folder = ObjectRef {
                kind: String::from("folder"),
                id: format!("p{p}f{f}"),
            };
            tuples.push((
                folder.clone(),
                String::from("owner"),
                SubjectRef::Account(accounts[rng.below(N_ACCOUNTS)].clone()),
            ));
            tuples.push((
                folder.clone(),
                String::from("viewer"),
                SubjectRef::Set(project.clone(), String::from("member")),
            ));
            for t in 0..topics_per_folder {
                tuples.push((
                    ObjectRef {
                        kind: String::from("topic"),
                        id: format!("p{p}f{f}t{t}"),
                    },
                    String::from("participant"),
                    SubjectRef::Set(folder.clone(), String::from("view")),
                ));
            }
        }
    }
    World {
        org: org.to_owned(),
        app: app.to_owned(),
        accounts,
        teams,
        tuples,
        project_teams,
        topics_per_folder,
    }
}

impl World {
    fn directory(&self) -> OrgDirectory {
        OrgDirectory {
            active: true,
            members: self
                .accounts
                .iter()
                .map(|a| (a.clone(), OrgRole::Member))
                .collect(),
            teams: self
                .teams
                .iter()
                .map(|(t, m)| {
                    (
                        t.clone(),
                        m.iter().map(|i| self.accounts[*i].clone()).collect(),
                    )
                })
                .collect(),
            apps: vec![(self.app.clone(), AppMode::All, Vec::new())],
        }
    }

    /// A topic and an account: granted (a member of one of the project's teams) or random
    /// (almost always denied).
    fn question(&self, rng: &mut Rng, granted: bool) -> (ObjectRef, String) {
        let p = rng.below(N_PROJECTS);
        let f = rng.below(FOLDERS_PER_PROJECT);
        let t = rng.below(self.topics_per_folder);
        let topic = ObjectRef {
            kind: String::from("topic"),
            id: format!("p{p}f{f}t{t}"),
        };
        let account = if granted {
            let team = self.project_teams[p][rng.below(2)];
            let members = &self.teams[team].1;
            self.accounts[members[rng.below(members.len())]].clone()
        } else {
            self.accounts[rng.below(N_ACCOUNTS)].clone()
        };
        (topic, account)
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "  {label}: p50 {:.2} us, p99 {:.2} us, max {:.1} us ({} checks)",
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
        samples.len()
    );
}

fn in_process(world: &World) {
    println!(
        "in process: {} relationships, {} accounts, {} teams",
        world.tuples.len(),
        N_ACCOUNTS,
        N_TEAMS
    );
    let before = rss_bytes();
    let started = Instant::now();
    let mut index = Index::new();
    index.set_org(&world.org, &world.directory());
    for (resource, relation, subject) in &world.tuples {
        index.insert(&world.app, &world.org, resource, relation, subject);
    }
    let build = started.elapsed();
    let after = rss_bytes();
    println!(
        "  build: {:.2} s; index memory (RSS growth): {:.1} MiB; {} objects",
        build.as_secs_f64(),
        (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0),
        index.n_objects()
    );
    let mut rng = Rng(42);
    for granted in [true, false] {
        let mut samples = Vec::with_capacity(SAMPLES);
        let mut n_allowed = 0;
        for _ in 0..SAMPLES {
            let (topic, account) = world.question(&mut rng, granted);
            let started = Instant::now();
            let allowed = index.check(&world.app, &topic, "view", &account).unwrap();
            samples.push(started.elapsed());
            n_allowed += usize::from(allowed);
        }
        if granted {
            assert_eq!(n_allowed, SAMPLES, "every granted question is allowed");
        }
        report(
            if granted {
                "check, granted (depth 3)"
            } else {
                "check, random account (mostly denied)"
            },
            samples,
        );
    }
}

async fn seed(app: &TestApp, world: &World) {
    let pool = app.database.pool().await;
    let now = app.clock.now_timestamp().as_millis();
    async fn insert(pool: &sqlx::AnyPool, table: &str, columns: &str, rows: Vec<Vec<String>>) {
        for chunk in rows.chunks(400) {
            let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
            for (i, row) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                sql.push_str(&row.join(","));
                sql.push(')');
            }
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await
                .unwrap();
        }
    }
    let q = |text: &str| format!("'{text}'");
    let org = q(&world.org);
    insert(
        &pool,
        "accounts",
        "id, status, created_at, updated_at",
        world
            .accounts
            .iter()
            .map(|a| vec![q(a), q("active"), now.to_string(), now.to_string()])
            .collect(),
    )
    .await;
    insert(
        &pool,
        "memberships",
        "org_id, account_id, role, can_invite, created_at, updated_at",
        world
            .accounts
            .iter()
            .map(|a| {
                vec![
                    org.clone(),
                    q(a),
                    q("member"),
                    String::from("0"),
                    now.to_string(),
                    now.to_string(),
                ]
            })
            .collect(),
    )
    .await;
    insert(
        &pool,
        "teams",
        "id, org_id, name_sealed, created_by, created_at, updated_at",
        world
            .teams
            .iter()
            .map(|(t, _)| {
                vec![
                    q(t),
                    org.clone(),
                    q("x"),
                    q(&world.accounts[0]),
                    now.to_string(),
                    now.to_string(),
                ]
            })
            .collect(),
    )
    .await;
    let mut team_members = Vec::new();
    for (t, members) in &world.teams {
        let mut seen = std::collections::BTreeSet::new();
        for m in members {
            if seen.insert(*m) {
                team_members.push(vec![
                    q(t),
                    org.clone(),
                    q(&world.accounts[*m]),
                    now.to_string(),
                ]);
            }
        }
    }
    insert(
        &pool,
        "team_members",
        "team_id, org_id, account_id, created_at",
        team_members,
    )
    .await;
    let mut objects = std::collections::BTreeSet::new();
    let mut relationships = Vec::with_capacity(world.tuples.len());
    for (resource, relation, subject) in &world.tuples {
        objects.insert((resource.kind.clone(), resource.id.clone()));
        let (st, sid, srel) = subject.to_parts();
        relationships.push(vec![
            q(&world.app),
            org.clone(),
            q(&resource.kind),
            q(&resource.id),
            q(relation),
            q(st),
            q(sid),
            q(srel),
            now.to_string(),
        ]);
    }
    insert(
        &pool,
        "authz_objects",
        "app_id, object_type, object_id, org_id, created_at",
        objects
            .into_iter()
            .map(|(kind, id)| {
                vec![
                    q(&world.app),
                    q(&kind),
                    q(&id),
                    org.clone(),
                    now.to_string(),
                ]
            })
            .collect(),
    )
    .await;
    insert(
        &pool,
        "authz_relationships",
        "app_id, org_id, resource_type, resource_id, relation, subject_type, subject_id, \
         subject_relation, created_at",
        relationships,
    )
    .await;
    if app.database.engine() == TestEngine::Postgres {
        sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();
    }
    pool.close().await;
}

async fn through_the_server(engine: TestEngine, topics_per_folder: usize) {
    println!("server on {engine:?}:");
    let app = spawn_app(engine).await;
    let services = app.services.clone();
    let context = RequestContext::default();
    let (_, admin) = {
        let account = app
            .sign_up("admin@example.com", mamori_testkit::GOOD_PASSWORD, "A")
            .await;
        let session = app
            .log_in("admin@example.com", mamori_testkit::GOOD_PASSWORD)
            .await;
        (account.id, session.token)
    };
    let org = app
        .post("/api/v1/orgs", Some(&admin), &json!({ "name": "Bench" }))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = services
        .create_app(None, &context, "Bench", app.clock.now_timestamp())
        .await
        .unwrap();
    let response = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/orgs/{org}/apps/{}", created.id),
            Some(&admin),
            Some(&json!({ "mode": "all" })),
        )
        .await;
    assert_eq!(response.status(), 200);
    // A restart before seeding is the baseline; the restart after it also loads the index.
    let started = Instant::now();
    let app = app.restart().await;
    let baseline = started.elapsed();
    let world = world(&org, created.id.as_str(), topics_per_folder);
    let started = Instant::now();
    seed(&app, &world).await;
    println!(
        "  seeded {} relationships with SQL in {:.1} s",
        world.tuples.len(),
        started.elapsed().as_secs_f64()
    );
    let before = rss_bytes();
    let started = Instant::now();
    let app = app.restart().await;
    let with_index = started.elapsed();
    let (relationships, objects, _) = app.services.authz_stats().unwrap();
    println!(
        "  restart: {:.2} s with {relationships} relationships and {objects} containers, \
         {:.2} s before seeding: loading the index takes about {:.2} s \
         (RSS growth {:.0} MiB)",
        with_index.as_secs_f64(),
        baseline.as_secs_f64(),
        with_index.saturating_sub(baseline).as_secs_f64(),
        rss_bytes().saturating_sub(before) as f64 / (1024.0 * 1024.0)
    );
    let principal = AppPrincipal {
        app_id: created.id.clone(),
    };
    let mut rng = Rng(7);
    let mut samples = Vec::with_capacity(SAMPLES / 4);
    for i in 0..SAMPLES / 4 {
        let (topic, account) = world.question(&mut rng, i % 2 == 0);
        let input = CheckInput {
            resource: topic.to_text(),
            permission: String::from("view"),
            subject: format!("account:{account}"),
            explain: false,
        };
        let started = Instant::now();
        let (view, _) = app
            .services
            .check_permission(&principal, &input, None)
            .await
            .unwrap();
        samples.push(started.elapsed());
        if i % 2 == 0 {
            assert!(view.allowed);
        }
    }
    report("Services::check_permission (half granted)", samples);

    // Over HTTP: the release `mamori serve` as its own process on the same databases, so that
    // its CPU time can be told apart from the client's.
    let database = app.database.clone();
    let mut app = app;
    app.stop().await;
    let clients = env_usize("MAMORI_BENCH_CLIENTS", 8);
    let seconds = env_usize("MAMORI_BENCH_HTTP_SECONDS", 5) as u64;
    let started = Instant::now();
    let mut server = ServerProcess::start_within(
        Path::new(env!("CARGO_BIN_EXE_mamori")),
        &database,
        &[],
        Duration::from_secs(600),
    );
    println!(
        "  mamori serve (release) started with the index in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let address = address_of(&server.base_url);
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..4096)
            .map(|i| {
                let (topic, account) = world.question(&mut rng, i % 2 == 0);
                let body = json!({ "resource": topic.to_text(), "permission": "view",
                                   "subject": format!("account:{account}") })
                .to_string();
                raw_request(
                    "POST",
                    &address,
                    "/api/v1/authz/check",
                    &created.secret,
                    Some(&body),
                )
            })
            .collect(),
    );
    let pid = server.child.id();
    hammer(&address, &requests, clients, Duration::from_millis(500)).await;
    let log_pool = database.pool().await;
    let logged_before = settled_access_logs(&log_pool, None).await;
    let server_before = cpu_time(Some(pid));
    let client_before = cpu_time(None);
    let started = Instant::now();
    let (answered, failed) = hammer(
        &address,
        &requests,
        clients,
        Duration::from_secs(seconds.max(1)),
    )
    .await;
    let elapsed = started.elapsed();
    let client_cpu = cpu_time(None).saturating_sub(client_before);
    // The server's CPU once its access-log writer stored a row for every check (LOG-1), so
    // the figure includes logging.
    let logged =
        settled_access_logs(&log_pool, Some(logged_before + answered)).await - logged_before;
    let server_cpu = cpu_time(Some(pid)).saturating_sub(server_before);
    log_pool.close().await;
    let exit = server.terminate();
    assert!(exit.success(), "mamori serve exited with {exit}");
    assert_eq!(failed, 0, "every check answered 200");
    let per_core = answered as f64 / server_cpu.as_secs_f64().max(1e-9);
    let pass = per_core >= 20_000.0 && logged == answered;
    println!(
        "  HTTP on loopback, {clients} keep-alive connections: {:.0} checks/s (wall), \
         {per_core:.0} per core (per server CPU second; target >= 20,000: {}), \
         server CPU {:.1} us per check (client {:.1} us)",
        answered as f64 / elapsed.as_secs_f64(),
        if pass { "PASS" } else { "FAIL" },
        server_cpu.as_secs_f64() * 1e6 / answered.max(1) as f64,
        client_cpu.as_secs_f64() * 1e6 / answered.max(1) as f64,
    );
    println!(
        "  access-log rows stored: {logged} of {answered} ({} dropped)",
        answered.saturating_sub(logged)
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let topics_per_folder = env_usize("MAMORI_BENCH_TOPICS_PER_FOLDER", 50);
    {
        let world = world("org_bench", "app_bench", topics_per_folder);
        in_process(&world);
    }
    let engines = std::env::var("MAMORI_BENCH_ENGINES").unwrap_or_else(|_| String::from("sqlite"));
    for engine in engines.split(',') {
        let engine = match engine.trim() {
            "postgres" => TestEngine::Postgres,
            _ => TestEngine::Sqlite,
        };
        through_the_server(engine, topics_per_folder).await;
    }
}
