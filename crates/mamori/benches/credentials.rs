#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Credential checks per second:
//!
//! - **TOTP verifications in process**: `TotpKey::verify` (three HMAC-SHA-1 codes, the
//!   current step and one either side, compared in constant time) on one thread, for a right
//!   code and a wrong one. Target: at least 200,000 per second per core.
//! - **Authenticated `GET /api/v1/me` over HTTP on loopback** with a session token: the real
//!   `mamori serve` on a fresh SQLite database (and PostgreSQL with `MAMORI_BENCH_POSTGRES=1`),
//!   driven by a minimal keep-alive HTTP/1.1 client of our own on `connections` connections,
//!   so that the client costs little of the shared cores. Requests per second of wall time,
//!   and per core: requests per second of CPU time the server process used. Target: at least
//!   20,000 per second per core.
//!
//! The server's CPU is read after its access-log writer has stored a row for every measured
//! request; a request whose row was dropped fails the target.
//!
//! `MAMORI_BENCH_SECONDS` (default 5) sets each measurement's length. The exit status is
//! non-zero when a target is missed.
//!
//! Run: `cargo bench -p mamori --bench credentials`.

use mamori_core::Timestamp;
use mamori_service::totp::{TotpKey, step_at};
use mamori_testkit::load::{address_of, cpu_time, hammer, raw_request, settled_access_logs};
use mamori_testkit::process::ServerProcess;
use mamori_testkit::{GOOD_PASSWORD, TestDatabase, TestEngine};
use std::hint::black_box;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOTP_TARGET: f64 = 200_000.0;
const ME_TARGET_PER_CORE: f64 = 20_000.0;
const EMAIL: &str = "bench@example.com";

fn main() -> ExitCode {
    let seconds: u64 = std::env::var("MAMORI_BENCH_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds.max(1));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "mamori credentials benchmark: {cores} cores, {} s per measurement",
        duration.as_secs()
    );
    let mut all_pass = true;

    let (right, wrong) = totp_rates(duration);
    let totp_ok = right >= TOTP_TARGET && wrong >= TOTP_TARGET;
    all_pass &= totp_ok;
    println!(
        "{:<44} {:>12.0} /s  (wrong code: {:.0} /s)  >= {TOTP_TARGET:.0}  {}",
        "TOTP verifications, one thread",
        right,
        wrong,
        verdict(totp_ok)
    );

    let mut engines = vec![TestEngine::Sqlite];
    if std::env::var("MAMORI_BENCH_POSTGRES").as_deref() == Ok("1") {
        engines.push(TestEngine::Postgres);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    for engine in engines {
        let m = runtime.block_on(me_over_http(engine, duration));
        let per_core = m.requests as f64 / m.server_cpu.as_secs_f64().max(1e-9);
        let ok = per_core >= ME_TARGET_PER_CORE && m.failures == 0 && m.logged == m.requests;
        all_pass &= ok;
        println!(
            "GET /api/v1/me on {} with {} connections:",
            engine_name(engine),
            m.connections
        );
        println!(
            "  {:<42} {:>12.0} /s  ({} requests, {} failed, {:.1} s)",
            "requests per second (wall)",
            m.requests as f64 / m.elapsed.as_secs_f64(),
            m.requests,
            m.failures,
            m.elapsed.as_secs_f64()
        );
        println!(
            "  {:<42} {:>12} of {} ({} dropped)",
            "access-log rows stored",
            m.logged,
            m.requests,
            m.requests.saturating_sub(m.logged)
        );
        println!(
            "  {:<42} {:>12.0} /s  >= {ME_TARGET_PER_CORE:.0}  {}",
            "requests per core (per server CPU second)",
            per_core,
            verdict(ok)
        );
        println!(
            "  {:<42} {:>12.1} us   (client: {:.1} us)",
            "server CPU per request",
            m.server_cpu.as_secs_f64() * 1e6 / m.requests.max(1) as f64,
            m.client_cpu.as_secs_f64() * 1e6 / m.requests.max(1) as f64
        );
    }
    println!();
    if all_pass {
        println!("all targets met");
        ExitCode::SUCCESS
    } else {
        println!("some targets missed");
        ExitCode::FAILURE
    }
}

/// Verifications per second on this thread: (right code, wrong code).
fn totp_rates(duration: Duration) -> (f64, f64) {
    let key = TotpKey::new(&[0x5a; 20]).expect("totp key");
    let now = Timestamp::from_millis(1_795_305_600_000);
    let right = key.code_at_step(step_at(now));
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    }
    .to_owned();
    let mut rates = [0.0; 2];
    for (index, code) in [right, wrong].iter().enumerate() {
        let started = Instant::now();
        let mut count: u64 = 0;
        while started.elapsed() < duration {
            for _ in 0..1000 {
                black_box(key.verify(black_box(code), now, -1));
            }
            count += 1000;
        }
        rates[index] = count as f64 / started.elapsed().as_secs_f64();
    }
    (rates[0], rates[1])
}

struct HttpMeasurement {
    connections: usize,
    requests: u64,
    /// Access-log rows stored for the measured requests.
    logged: u64,
    failures: u64,
    elapsed: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

async fn me_over_http(engine: TestEngine, duration: Duration) -> HttpMeasurement {
    let database = TestDatabase::create(engine).await;
    let server = start_server(&database);
    let pid = server.child.id();
    let address = address_of(&server.base_url);
    let client = reqwest::Client::new();
    let sign_up = client
        .post(format!("{}/api/v1/accounts", server.base_url))
        .json(&serde_json::json!({ "email": EMAIL, "password": GOOD_PASSWORD, "display_name": "Bench" }))
        .send()
        .await
        .expect("sign up");
    assert_eq!(sign_up.status(), 201, "sign up");
    let session: serde_json::Value = client
        .post(format!("{}/api/v1/sessions", server.base_url))
        .json(&serde_json::json!({ "email": EMAIL, "password": GOOD_PASSWORD }))
        .send()
        .await
        .expect("log in")
        .json()
        .await
        .expect("session");
    let token = session["token"].as_str().expect("token").to_owned();
    let request = Arc::new(vec![raw_request(
        "GET",
        &address,
        "/api/v1/me",
        &token,
        None,
    )]);

    let connections = 16;
    // Warm up: every connection open, caches filled.
    hammer(&address, &request, connections, Duration::from_millis(500)).await;
    let pool = database.pool().await;
    let logged_before = settled_access_logs(&pool, None).await;
    let server_before = cpu_time(Some(pid));
    let client_before = cpu_time(None);
    let started = Instant::now();
    let (requests, failures) = hammer(&address, &request, connections, duration).await;
    let elapsed = started.elapsed();
    let client_cpu = cpu_time(None).saturating_sub(client_before);
    // Every answered request owes an access-log row (LOG-1): the server's CPU is read once
    // its writer has stored them all (or given up on some: counted as dropped), so the
    // figure includes the cost of logging.
    let logged = settled_access_logs(&pool, Some(logged_before + requests)).await - logged_before;
    let server_cpu = cpu_time(Some(pid)).saturating_sub(server_before);
    let mut server = server;
    let exit = server.terminate();
    assert!(exit.success(), "mamori serve exited with {exit}");
    HttpMeasurement {
        connections,
        requests,
        logged,
        failures,
        elapsed,
        server_cpu,
        client_cpu,
    }
}

fn start_server(database: &TestDatabase) -> ServerProcess {
    let binary = Path::new(env!("CARGO_BIN_EXE_mamori"));
    let mut command = Command::new(binary);
    command
        .arg("--data-dir")
        .arg(database.data_dir())
        .args(["--database-url", database.url()])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("MAMORI_KEYRING__URL", database.keyring_url())
        .env("MAMORI_LOG__FILTER", "warn");
    for (name, _) in std::env::vars() {
        if name.starts_with("MAMORI_BENCH_") {
            command.env_remove(name);
        }
    }
    ServerProcess::spawn(command)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn engine_name(engine: TestEngine) -> &'static str {
    match engine {
        TestEngine::Sqlite => "sqlite",
        TestEngine::Postgres => "postgres",
    }
}
