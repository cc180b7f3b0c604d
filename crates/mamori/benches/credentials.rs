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
//! `MAMORI_BENCH_SECONDS` (default 5) sets each measurement's length. The exit status is
//! non-zero when a target is missed.
//!
//! Run: `cargo bench -p mamori --bench credentials`.

use mamori_core::Timestamp;
use mamori_service::totp::{TotpKey, step_at};
use mamori_testkit::process::ServerProcess;
use mamori_testkit::{GOOD_PASSWORD, TestDatabase, TestEngine};
use std::hint::black_box;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
        let ok = per_core >= ME_TARGET_PER_CORE && m.failures == 0;
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
    failures: u64,
    elapsed: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

async fn me_over_http(engine: TestEngine, duration: Duration) -> HttpMeasurement {
    let database = TestDatabase::create(engine).await;
    let server = start_server(&database);
    let pid = server.child.id();
    let address = server
        .base_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
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
    let request = Arc::new(
        format!(
            "GET /api/v1/me HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .into_bytes(),
    );

    let connections = 16;
    // Warm up: every connection open, caches filled.
    run_clients(&address, &request, connections, Duration::from_millis(500)).await;
    let server_stat = format!("/proc/{pid}/stat");
    let server_before = cpu_time(&server_stat);
    let client_before = cpu_time("/proc/self/stat");
    let started = Instant::now();
    let (requests, failures) = run_clients(&address, &request, connections, duration).await;
    let elapsed = started.elapsed();
    let server_cpu = cpu_time(&server_stat).saturating_sub(server_before);
    let client_cpu = cpu_time("/proc/self/stat").saturating_sub(client_before);
    let mut server = server;
    let exit = server.terminate();
    assert!(exit.success(), "mamori serve exited with {exit}");
    HttpMeasurement {
        connections,
        requests,
        failures,
        elapsed,
        server_cpu,
        client_cpu,
    }
}

/// `connections` keep-alive connections each sending the request back to back until
/// `duration` has passed; returns (200 answers, other answers).
async fn run_clients(
    address: &str,
    request: &Arc<Vec<u8>>,
    connections: usize,
    duration: Duration,
) -> (u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (request, ok, failed, stop) =
            (request.clone(), ok.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut buffer = vec![0u8; 16 * 1024];
            while !stop.load(Ordering::Relaxed) {
                stream.write_all(&request).await.expect("write");
                let status = read_response(&mut stream, &mut buffer).await;
                if status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client task");
    }
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

/// Reads one response (headers and a `Content-Length` body); returns its status.
async fn read_response(stream: &mut TcpStream, buffer: &mut [u8]) -> u16 {
    let mut filled = 0;
    loop {
        let read = stream.read(&mut buffer[filled..]).await.expect("read");
        assert!(read > 0, "connection closed");
        filled += read;
        let Some(head_end) = find(&buffer[..filled], b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buffer[..head_end]).expect("head");
        let status: u16 = head[9..12].parse().expect("status");
        let length: usize = head
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("content-length");
        let total = head_end + 4 + length;
        while filled < total {
            let read = stream.read(&mut buffer[filled..]).await.expect("read");
            assert!(read > 0, "connection closed");
            filled += read;
        }
        return status;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
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

/// User and system CPU time of a process (or thread) from its `stat` file.
fn cpu_time(stat_path: &str) -> Duration {
    let text = std::fs::read_to_string(stat_path)
        .unwrap_or_else(|error| panic!("read {stat_path}: {error}"));
    let after_name = &text[text.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
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
