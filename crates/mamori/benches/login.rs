#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Password logins per second over HTTP on loopback, next to the raw Argon2id hashes per second
//! measured in the same run with the same parameters on the same cores.
//!
//! Starts the real `mamori serve` (default Argon2id parameters: m=19456 KiB, t=2, p=1) on a
//! fresh SQLite database, signs one account up, reads the idle RSS once it has stayed put for
//! 2 s (the allocator's decay gives freed memory back within about a second of the sign-up),
//! then alternates two phases in slices of at most 2 s until each has run
//! `MAMORI_BENCH_SECONDS` (default 10):
//!
//! - a login storm of `2 x cores x 4` concurrent HTTP clients, while the server's RSS is
//!   sampled every 100 ms; at the end of a slice the clients send nothing new and the requests
//!   in flight are answered and counted (none is abandoned);
//! - raw hashing with `hash_blocking` on `cores` threads of this process, the server idle.
//!
//! Interleaving the two keeps them comparable on a machine that has other work to do. With
//! `MAMORI_BENCH_POSTGRES=1` the same runs on PostgreSQL (at `MAMORI_TEST_POSTGRES_URL`, as
//! the tests).
//!
//! Targets: logins/s at least 85% of raw hashes/s; idle RSS at most 30 MB; peak RSS during
//! the storm at most `cores x 19 MiB + 40 MB`. The exit status is non-zero when one is missed.
//!
//! Run: `cargo bench -p mamori --bench login`.

use mamori_service::PasswordParams;
use mamori_service::passwords::hash_blocking;
use mamori_testkit::process::ServerProcess;
use mamori_testkit::{GOOD_PASSWORD, TestDatabase, TestEngine};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MB: f64 = 1_000_000.0;
const MIB: f64 = 1_048_576.0;
const LOGIN_TARGET_RATIO: f64 = 0.85;
const IDLE_RSS_TARGET_MB: f64 = 30.0;
const SLICE: Duration = Duration::from_secs(2);
const EMAIL: &str = "bench@example.com";

struct Measurement {
    engine: TestEngine,
    clients: usize,
    logins: u64,
    failures: u64,
    login_time: Duration,
    hashes: u64,
    hash_time: Duration,
    /// CPU time the server used during the storm slices, and the hashing threads in theirs.
    server_cpu: Duration,
    client_cpu: Duration,
    hash_cpu: Duration,
    idle_rss: u64,
    peak_rss_sampled: u64,
    peak_rss_hwm: u64,
    latencies: Vec<Duration>,
    load_before: String,
    load_after: String,
}

impl Measurement {
    fn login_rate(&self) -> f64 {
        self.logins as f64 / self.login_time.as_secs_f64()
    }

    fn hash_rate(&self) -> f64 {
        self.hashes as f64 / self.hash_time.as_secs_f64()
    }

    fn cpu_per_login(&self) -> Duration {
        self.server_cpu / u32::try_from(self.logins.max(1)).unwrap_or(u32::MAX)
    }

    fn cpu_per_hash(&self) -> Duration {
        self.hash_cpu / u32::try_from(self.hashes.max(1)).unwrap_or(u32::MAX)
    }

    fn client_cpu_per_login(&self) -> Duration {
        self.client_cpu / u32::try_from(self.logins.max(1)).unwrap_or(u32::MAX)
    }

    fn peak_rss(&self) -> u64 {
        self.peak_rss_sampled.max(self.peak_rss_hwm)
    }

    fn latency(&self, quantile: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() - 1) as f64 * quantile).round() as usize;
        self.latencies[index]
    }
}

fn main() -> ExitCode {
    let seconds: u64 = std::env::var("MAMORI_BENCH_SECONDS")
        .ok()
        .map(|text| {
            text.parse()
                .expect("MAMORI_BENCH_SECONDS is a whole number of seconds")
        })
        .unwrap_or(10);
    let duration = Duration::from_secs(seconds.max(1));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let params = PasswordParams::default();
    let mut engines = vec![TestEngine::Sqlite];
    if std::env::var("MAMORI_BENCH_POSTGRES").as_deref() == Ok("1") {
        engines.push(TestEngine::Postgres);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    println!(
        "mamori login benchmark: Argon2id m={} KiB, t={}, p={}; {cores} cores; {} s of logins \
         and {} s of raw hashing, interleaved in slices of {} s",
        params.memory_kib,
        params.iterations,
        params.parallelism,
        duration.as_secs(),
        duration.as_secs(),
        SLICE.as_secs()
    );
    let mut measurements = Vec::new();
    for engine in engines {
        println!("measuring on {} ...", engine_name(engine));
        measurements.push(runtime.block_on(measure(engine, params, cores, duration)));
    }
    drop(runtime);

    let budget_bytes = cores as f64 * 19.0 * MIB + 40.0 * MB;
    let mut all_pass = true;
    for m in &measurements {
        let login_rate = m.login_rate();
        let hash_rate = m.hash_rate();
        let ratio = login_rate / hash_rate;
        let idle_mb = m.idle_rss as f64 / MB;
        let peak_mb = m.peak_rss() as f64 / MB;
        let ratio_ok = ratio >= LOGIN_TARGET_RATIO;
        let idle_ok = idle_mb <= IDLE_RSS_TARGET_MB;
        let peak_ok = m.peak_rss() as f64 <= budget_bytes;
        let failures_ok = m.failures == 0;
        all_pass &= ratio_ok && idle_ok && peak_ok && failures_ok;
        println!();
        println!(
            "== {}: {} clients; {} logins in {:.1} s, {} raw hashes in {:.1} s ==",
            engine_name(m.engine),
            m.clients,
            m.logins,
            m.login_time.as_secs_f64(),
            m.hashes,
            m.hash_time.as_secs_f64()
        );
        println!("{:<34} {:>14}   target", "measure", "value");
        println!(
            "{:<34} {:>14.1}",
            "logins/s (HTTP, 201 answers)", login_rate
        );
        println!("{:<34} {:>14.1}", "raw Argon2id hashes/s", hash_rate);
        println!(
            "{:<34} {:>13.1}%   >= {:.0}%  {}",
            "logins / raw hashes",
            ratio * 100.0,
            LOGIN_TARGET_RATIO * 100.0,
            verdict(ratio_ok)
        );
        println!(
            "{:<34} {:>11.2} ms",
            "server CPU per login",
            m.cpu_per_login().as_secs_f64() * 1000.0
        );
        println!(
            "{:<34} {:>11.2} ms",
            "CPU per raw hash",
            m.cpu_per_hash().as_secs_f64() * 1000.0
        );
        println!(
            "{:<34} {:>13.1}%",
            "CPU per raw hash / per login",
            m.cpu_per_hash().as_secs_f64() / m.cpu_per_login().as_secs_f64() * 100.0
        );
        println!(
            "{:<34} {:>11.2} ms",
            "benchmark's client CPU per login",
            m.client_cpu_per_login().as_secs_f64() * 1000.0
        );
        println!(
            "{:<34} {:>14}   0  {}",
            "failed logins",
            m.failures,
            verdict(failures_ok)
        );
        println!(
            "{:<34} {:>11.1} ms",
            "login latency p50",
            m.latency(0.5).as_secs_f64() * 1000.0
        );
        println!(
            "{:<34} {:>11.1} ms",
            "login latency p99",
            m.latency(0.99).as_secs_f64() * 1000.0
        );
        println!(
            "{:<34} {:>11.1} MB   <= {IDLE_RSS_TARGET_MB:.0} MB  {}",
            "idle RSS (after one sign-up)",
            idle_mb,
            verdict(idle_ok)
        );
        println!(
            "{:<34} {:>11.1} MB",
            "peak RSS sampled every 100 ms",
            m.peak_rss_sampled as f64 / MB
        );
        println!(
            "{:<34} {:>11.1} MB",
            "peak RSS (VmHWM)",
            m.peak_rss_hwm as f64 / MB
        );
        println!(
            "{:<34} {:>11.1} MB   <= {:.1} MB ({cores} x 19 MiB + 40 MB)  {}",
            "peak RSS under the storm",
            peak_mb,
            budget_bytes / MB,
            verdict(peak_ok)
        );
        println!(
            "load average before {}, after {}",
            m.load_before, m.load_after
        );
        if first_load(&m.load_before).max(first_load(&m.load_after)) > cores as f64 * 0.5 {
            println!("note: the machine had other work during the run; the rates are noisy");
        }
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

/// The first three fields of `/proc/loadavg`.
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

fn first_load(load: &str) -> f64 {
    load.split_whitespace()
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0.0)
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

/// Starts `mamori serve` with the default password parameters.
fn start_server(database: &TestDatabase) -> ServerProcess {
    let binary = Path::new(env!("CARGO_BIN_EXE_mamori"));
    let mut command = Command::new(binary);
    command
        .arg("--data-dir")
        .arg(database.data_dir())
        .args(["--database-url", database.url()])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("MAMORI_KEYRING__URL", database.keyring_url())
        .env("MAMORI_LOG__FILTER", "warn")
        // Every benchmark client is 127.0.0.1: the per-client log-in limit would measure
        // itself rather than the server.
        .env("MAMORI_RATE_LIMITS__LOGIN__PER_MINUTE", "100000000")
        .env("MAMORI_RATE_LIMITS__LOGIN__BURST", "100000000")
        // All clients log in to one account at once, and the lock-out counts an attempt
        // before its hash (so parallel guesses cannot slip past it): more than five in
        // flight would lock the name, by design. This measures hashing, not the lock-out.
        .env("MAMORI_LOCKOUT__AFTER_ATTEMPTS", "1000000000");
    for (name, _) in std::env::vars() {
        if name.starts_with("MAMORI_PASSWORDS__") || name.starts_with("MAMORI_BENCH_") {
            command.env_remove(name);
        }
    }
    ServerProcess::spawn(command)
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

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> reqwest::Result<u16> {
    let response = client.post(url).json(body).send().await?;
    let status = response.status().as_u16();
    let _ = response.bytes().await?;
    Ok(status)
}

async fn measure(
    engine: TestEngine,
    params: PasswordParams,
    cores: usize,
    duration: Duration,
) -> Measurement {
    let load_before = load_average();
    let database = TestDatabase::create(engine).await;
    let mut server = start_server(&database);
    let pid = server.child.id();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("http client");
    let sign_up = post_json(
        &client,
        &format!("{}/api/v1/accounts", server.base_url),
        &serde_json::json!({ "email": EMAIL, "password": GOOD_PASSWORD, "display_name": "Bench" }),
    )
    .await
    .expect("sign up sent");
    assert_eq!(sign_up, 201, "sign up");

    // Idle: wait until the resident set has stayed put for 2 s (at most 10 s), then read it.
    // The server's allocator hands freed memory back over about a second, in steps (its
    // background thread sleeps between them): two readings 500 ms apart can match in the
    // middle of that and read memory the server has already freed.
    let mut readings = vec![proc_status_bytes(pid, "VmRSS")];
    let settle_deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        readings.push(proc_status_bytes(pid, "VmRSS"));
        let last = &readings[readings.len().saturating_sub(5)..];
        let (low, high) = (
            last.iter().min().copied().unwrap_or(0),
            last.iter().max().copied().unwrap_or(0),
        );
        if last.len() == 5 && high - low < 64 * 1024 {
            break;
        }
    }
    let idle_rss = readings.last().copied().unwrap_or(0);

    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(proc_status_bytes(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak.max(proc_status_bytes(pid, "VmRSS"))
        })
    };

    // One hash here first, so the first allocation of the raw phase is not timed.
    hash_blocking(params, GOOD_PASSWORD.as_bytes(), &mut Vec::new()).expect("hash");
    let clients = 2 * cores * 4;
    let login_url = format!("{}/api/v1/sessions", server.base_url);
    let mut logins = 0;
    let mut failures = 0;
    let mut latencies = Vec::new();
    let mut login_time = Duration::ZERO;
    let mut hashes = 0;
    let mut hash_time = Duration::ZERO;
    let mut server_cpu = Duration::ZERO;
    let mut client_cpu = Duration::ZERO;
    let mut hash_cpu = Duration::ZERO;
    let server_stat = format!("/proc/{pid}/stat");
    let mut round = 0;
    while login_time < duration || hash_time < duration {
        // ABBA order, so neither phase always runs first.
        let storm_first = round % 2 == 1;
        for storm in [storm_first, !storm_first] {
            if storm && login_time < duration {
                let slice = SLICE.min(duration - login_time);
                let server_before = cpu_time(&server_stat);
                let client_before = cpu_time("/proc/self/stat");
                let (ok, failed, mut times, took) =
                    storm_slice(&client, &login_url, clients, slice).await;
                server_cpu += cpu_time(&server_stat).saturating_sub(server_before);
                client_cpu += cpu_time("/proc/self/stat").saturating_sub(client_before);
                logins += ok;
                failures += failed;
                latencies.append(&mut times);
                login_time += took;
            } else if !storm && hash_time < duration {
                let slice = SLICE.min(duration - hash_time);
                let (count, took, cpu) =
                    tokio::task::spawn_blocking(move || raw_slice(params, cores, slice))
                        .await
                        .expect("raw hashing");
                hashes += count;
                hash_time += took;
                hash_cpu += cpu;
            }
        }
        round += 1;
    }

    sampling.store(false, Ordering::Relaxed);
    let peak_rss_sampled = sampler.join().expect("RSS sampler");
    let peak_rss_hwm = proc_status_bytes(pid, "VmHWM");
    let exit = server.terminate();
    assert!(exit.success(), "mamori serve exited with {exit}");
    latencies.sort();
    Measurement {
        engine,
        clients,
        logins,
        failures,
        login_time,
        hashes,
        hash_time,
        server_cpu,
        client_cpu,
        hash_cpu,
        idle_rss,
        peak_rss_sampled,
        peak_rss_hwm,
        latencies,
        load_before,
        load_after: load_average(),
    }
}

/// `clients` clients log in back to back for `slice`; requests in flight then finish. Returns
/// (logins, failures, latencies, time from the start to the last answer).
async fn storm_slice(
    client: &reqwest::Client,
    login_url: &str,
    clients: usize,
    slice: Duration,
) -> (u64, u64, Vec<Duration>, Duration) {
    let body = serde_json::json!({ "email": EMAIL, "password": GOOD_PASSWORD });
    let start = Instant::now();
    let stop_sending = start + slice;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = client.clone();
        let login_url = login_url.to_owned();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            let mut failed = 0u64;
            let mut latencies = Vec::new();
            while Instant::now() < stop_sending {
                let sent = Instant::now();
                match post_json(&client, &login_url, &body).await {
                    Ok(201) => {
                        ok += 1;
                        latencies.push(sent.elapsed());
                    }
                    Ok(status) => {
                        failed += 1;
                        eprintln!("login answered {status}");
                    }
                    Err(error) => {
                        failed += 1;
                        eprintln!("login failed: {error}");
                    }
                }
            }
            (ok, failed, latencies, start.elapsed())
        }));
    }
    let mut ok = 0;
    let mut failed = 0;
    let mut latencies = Vec::new();
    let mut took = Duration::ZERO;
    for task in tasks {
        let (task_ok, task_failed, mut times, task_took) = task.await.expect("client task");
        ok += task_ok;
        failed += task_failed;
        latencies.append(&mut times);
        took = took.max(task_took);
    }
    (ok, failed, latencies, took)
}

/// `threads` threads hash back to back for `slice`; hashes started then finish. Returns
/// (hashes, time from the start to the last hash done, CPU time of the hashing threads).
fn raw_slice(params: PasswordParams, threads: usize, slice: Duration) -> (u64, Duration, Duration) {
    let start = Instant::now();
    let stop = start + slice;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let cpu_before = cpu_time("/proc/thread-self/stat");
                let mut count = 0u64;
                // One working buffer per thread, reused, as the server does per permit.
                let mut buffer = Vec::new();
                while Instant::now() < stop {
                    hash_blocking(params, GOOD_PASSWORD.as_bytes(), &mut buffer).expect("hash");
                    count += 1;
                }
                let cpu = cpu_time("/proc/thread-self/stat").saturating_sub(cpu_before);
                (count, start.elapsed(), cpu)
            })
        })
        .collect();
    let mut total = 0;
    let mut took = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    for worker in workers {
        let (count, elapsed, thread_cpu) = worker.join().expect("hashing thread");
        total += count;
        took = took.max(elapsed);
        cpu += thread_cpu;
    }
    (total, took, cpu)
}

/// User plus system CPU time from a `/proc/.../stat` file (in clock ticks of 10 ms, the
/// `USER_HZ` of Linux on every common architecture).
fn cpu_time(stat_path: &str) -> Duration {
    let text = std::fs::read_to_string(stat_path)
        .unwrap_or_else(|error| panic!("read {stat_path}: {error}"));
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let after_name = &text[text.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are the 12th and 13th after the name.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}
