#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The organization purge's figures (issue 6): the purge of one organization with 10,000
//! members, 1,000 teams (10 members each), 100,000 relationships and 1,000,000 audit events,
//! on SQLite and on PostgreSQL: the time `mamori lifecycle purge-run` takes (a child process
//! of the real binary, which runs every step to the end, the key's destruction included) and
//! that process's peak RSS (VmHWM, read from `/proc/<pid>/status` every 10 ms until it
//! exits).
//!
//! The organization and its administrator are made through the API; the bulk is written
//! straight into the data store with multi-row `INSERT`s in one transaction (accounts and
//! memberships, teams and their members, relationships, and audit events appended to the
//! organization's chain with its head moved to match), which is much faster than the API
//! and does not change what the purge has to delete.
//!
//! Environment: `MAMORI_BENCH_PURGE_SCALE` (a factor on every count, default 1.0; e.g. 0.05
//! for a quick run), `MAMORI_BENCH_ENGINES` (`sqlite`, `postgres` or both, default both;
//! PostgreSQL at `MAMORI_TEST_POSTGRES_URL` as the tests). Figures are printed, never asserted.
//!
//! Run: `cargo bench -p mamori --bench purge`.

use mamori_testkit::process::{data_args, data_env};
use mamori_testkit::{TestApp, TestEngine, json_of, spawn_app};
use serde_json::json;
use sqlx::Row as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MB: f64 = 1_000_000.0;

struct Scale {
    members: usize,
    teams: usize,
    team_size: usize,
    relationships: usize,
    events: usize,
}

fn scale() -> Scale {
    let factor: f64 = std::env::var("MAMORI_BENCH_PURGE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let n = |full: f64| ((full * factor).round() as usize).max(1);
    Scale {
        members: n(10_000.0),
        teams: n(1_000.0),
        team_size: 10,
        relationships: n(100_000.0),
        events: n(1_000_000.0),
    }
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mamori"))
}

/// Runs `sql_rows` as multi-row inserts of `chunk` rows each.
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    head: &str,
    rows: impl Iterator<Item = String>,
    chunk: usize,
) {
    let mut batch = Vec::with_capacity(chunk);
    let flush = |batch: &mut Vec<String>| {
        let sql = format!("{head} VALUES {}", batch.join(","));
        batch.clear();
        sql
    };
    for row in rows {
        batch.push(row);
        if batch.len() == chunk {
            let sql = flush(&mut batch);
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut **tx)
                .await
                .unwrap();
        }
    }
    if !batch.is_empty() {
        let sql = flush(&mut batch);
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut **tx)
            .await
            .unwrap();
    }
}

async fn seed(app: &TestApp, org: &str, app_id: &str, scale: &Scale) -> Duration {
    let started = Instant::now();
    let pool = app.database.pool().await;
    let mut tx = pool.begin().await.unwrap();
    let chunk = 1_000;
    insert_rows(
        &mut tx,
        "INSERT INTO accounts (id, status, created_at, updated_at)",
        (0..scale.members).map(|i| format!("('acc_bench{i:08}', 'active', 0, 0)")),
        chunk,
    )
    .await;
    insert_rows(
        &mut tx,
        "INSERT INTO memberships (org_id, account_id, role, can_invite, created_at, updated_at)",
        (0..scale.members).map(|i| format!("('{org}', 'acc_bench{i:08}', 'member', 0, 1, 1)")),
        chunk,
    )
    .await;
    insert_rows(
        &mut tx,
        "INSERT INTO teams (id, org_id, name_sealed, created_by, created_at, updated_at)",
        (0..scale.teams).map(|i| format!("('team_bench{i:08}', '{org}', 'v1.x', 'acc_x', 0, 0)")),
        chunk,
    )
    .await;
    insert_rows(
        &mut tx,
        "INSERT INTO team_members (team_id, org_id, account_id, created_at)",
        (0..scale.teams).flat_map(|t| {
            let members = scale.members;
            (0..scale.team_size).map(move |k| {
                let account = (t * 10 + k) % members;
                format!("('team_bench{t:08}', '{org}', 'acc_bench{account:08}', 0)")
            })
        }),
        chunk,
    )
    .await;
    insert_rows(
        &mut tx,
        "INSERT INTO authz_relationships (app_id, org_id, resource_type, resource_id, relation, \
         subject_type, subject_id, subject_relation, created_at)",
        (0..scale.relationships).map(|i| {
            let account = i % scale.members;
            format!(
                "('{app_id}', '{org}', 'project', 'p{}', 'member', 'account', 'acc_bench{account:08}', '', 0)",
                i / 10
            )
        }),
        chunk,
    )
    .await;
    let head: i64 = sqlx::query("SELECT last_seq FROM audit_chain_heads WHERE chain = $1")
        .bind(org)
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get("last_seq");
    insert_rows(
        &mut tx,
        "INSERT INTO audit_events (id, chain, seq, org_id, actor_type, actor_id, action, \
         target_type, target_id, outcome, occurred_at, details, prev_hash, hash)",
        (0..scale.events).map(|i| {
            let seq = head + 1 + i as i64;
            format!(
                "('evt_bench{i:010}', '{org}', {seq}, '{org}', 'app', '{app_id}', 'bench.event', \
                 'doc', 'd{i}', 'success', 0, '{{}}', '{:064}', '{seq:064}')",
                seq - 1
            )
        }),
        chunk,
    )
    .await;
    let last = head + scale.events as i64;
    sqlx::query("UPDATE audit_chain_heads SET last_seq = $1, last_hash = $2 WHERE chain = $3")
        .bind(last)
        .bind(format!("{last:064}"))
        .bind(org)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    pool.close().await;
    started.elapsed()
}

fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs `mamori ARGS` on the app's database, sampling its peak RSS; returns (time, peak
/// bytes, standard output).
fn run_measured(app: &TestApp, args: &[&str]) -> (Duration, u64, String) {
    let started = Instant::now();
    let mut child = Command::new(binary())
        .args(data_args(&app.database))
        .args(args)
        .envs(data_env(&app.database))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(hwm) = proc_status_bytes(pid, "VmHWM") {
            peak = peak.max(hwm);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "mamori {args:?} failed");
    (
        elapsed,
        peak,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

async fn bench(engine: TestEngine, scale: &Scale) {
    let mut app = spawn_app(engine).await;
    let (_, admin) = app
        .account_with_session_named("bench.admin@example.org", "Bench Admin")
        .await;
    let org = json_of(
        app.post(
            "/api/v1/orgs",
            Some(&admin),
            &json!({ "name": "Bench Org" }),
        )
        .await,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let operator = app.operator_token().await;
    let created = json_of(
        app.post(
            "/api/v1/operator/apps",
            Some(&operator),
            &json!({ "name": "Bench App" }),
        )
        .await,
        201,
    )
    .await;
    let app_id = created["id"].as_str().unwrap().to_owned();
    let enabled = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/orgs/{org}/apps/{app_id}"),
            Some(&admin),
            Some(&json!({ "mode": "all" })),
        )
        .await;
    assert!(enabled.status().is_success());
    app.stop().await;
    let seeded = seed(&app, &org, &app_id, scale).await;
    println!(
        "{engine:?}: seeded {} members, {} teams, {} team members, {} relationships, {} audit \
         events in {:.1} s",
        scale.members,
        scale.teams,
        scale.teams * scale.team_size,
        scale.relationships,
        scale.events,
        seeded.as_secs_f64()
    );
    let (_, _, requested) = run_measured(&app, &["lifecycle", "purge", &org, "--confirm", &org]);
    assert!(requested.contains("not finished"), "{requested}");
    let (elapsed, peak, output) = run_measured(&app, &["lifecycle", "purge-run"]);
    assert!(!output.contains("not finished"), "{output}");
    println!(
        "{engine:?}: purge-run {:.2} s, peak RSS {:.1} MB",
        elapsed.as_secs_f64(),
        peak as f64 / MB
    );
    for line in output.lines() {
        println!("  {line}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scale = scale();
    let engines =
        std::env::var("MAMORI_BENCH_ENGINES").unwrap_or_else(|_| String::from("sqlite,postgres"));
    println!(
        "purge benchmark, scale: {} members, {} teams x {}, {} relationships, {} audit events",
        scale.members, scale.teams, scale.team_size, scale.relationships, scale.events
    );
    if engines.contains("sqlite") {
        bench(TestEngine::Sqlite, &scale).await;
    }
    if engines.contains("postgres") {
        bench(TestEngine::Postgres, &scale).await;
    }
}
