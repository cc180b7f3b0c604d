//! The `mamori` binary as a process: crashes (`kill -9`), graceful shutdown, restarts, the data
//! commands of the command line, TLS and the master key file.

// The helpers below are test code too, outside any `#[test]` function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mamori_testkit::process::{ServerProcess, data_args, data_env, run};
use mamori_testkit::{GOOD_PASSWORD, TestDatabase, TestEngine};
use serde_json::{Value, json};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mamori_testkit::engine_tests!(
    kill_hard_keeps_every_answered_sign_up,
    sigterm_finishes_the_login_in_flight,
    abandoned_logins_never_run_more_hashes_than_max_concurrent,
    version_is_printed,
    migrate_runs_twice,
    operator_token_from_the_command_line_works_over_http,
    app_create_prints_its_id_and_secret_as_json,
    bad_database_url_is_refused_clearly,
    unknown_environment_variable_is_refused_clearly,
    unknown_config_file_key_is_refused_clearly,
    jobs_run_once_prints_a_summary,
    jobs_run_once_removes_expired_sessions,
    restart_keeps_sessions,
    tls_serves_https_with_hsts_and_secure_cookies,
    master_key_file_is_private_and_a_readable_one_is_refused,
);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mamori"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

async fn sign_up(
    client: &reqwest::Client,
    base_url: &str,
    email: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base_url}/api/v1/accounts"))
        .json(&json!({ "email": email, "password": GOOD_PASSWORD, "display_name": "Process Test" }))
        .send()
        .await
}

async fn sign_up_ok(client: &reqwest::Client, base_url: &str, email: &str) -> Value {
    let response = sign_up(client, base_url, email)
        .await
        .expect("sign up sent");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "sign up {email}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn log_in(
    client: &reqwest::Client,
    base_url: &str,
    email: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base_url}/api/v1/sessions"))
        .json(&json!({ "email": email, "password": GOOD_PASSWORD }))
        .send()
        .await
}

/// Logs in and returns the token.
async fn log_in_ok(client: &reqwest::Client, base_url: &str, email: &str) -> String {
    let response = log_in(client, base_url, email).await.expect("log in sent");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "log in {email}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    body["token"].as_str().expect("token").to_owned()
}

async fn get_me(client: &reqwest::Client, base_url: &str, token: &str) -> (u16, Value) {
    let response = client
        .get(format!("{base_url}/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /api/v1/me sent");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Like `ServerProcess::start`, with extra environment applied after the test defaults.
fn start_serve_with_env(
    database: &TestDatabase,
    extra_args: &[&str],
    extra_env: &[(&str, &str)],
) -> ServerProcess {
    let mut command = Command::new(binary());
    command
        .args(data_args(database))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(extra_args)
        .envs(data_env(database))
        .envs(extra_env.iter().copied());
    ServerProcess::spawn(command)
}

/// What a finished command printed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a command with stdout and stderr captured, waiting at most 120 s for it to exit.
fn run_bounded(mut command: Command) -> Finished {
    let mut child: Child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mamori");
    let mut stdout = child.stdout.take().expect("child stdout");
    let mut stderr = child.stderr.take().expect("child stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll mamori") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mamori did not exit within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The binary with the test environment (keyring URL, cheap hashing) but no data arguments.
fn bare_command(database: &TestDatabase) -> Command {
    let mut command = Command::new(binary());
    command.envs(data_env(database));
    command
}

fn assert_refused(finished: &Finished, needles: &[&str]) {
    assert!(
        !finished.status.success(),
        "expected a failure; stdout: {}; stderr: {}",
        finished.stdout,
        finished.stderr
    );
    assert!(
        !finished.stderr.contains("panicked"),
        "the binary panicked: {}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("error:"),
        "stderr says what is wrong: {}",
        finished.stderr
    );
    for needle in needles {
        assert!(
            finished.stderr.contains(needle),
            "stderr mentions {needle}: {}",
            finished.stderr
        );
    }
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rfind(|line| !line.trim().is_empty())
        .unwrap_or("")
        .trim()
}

// 1. kill -9 durability --------------------------------------------------------------------

async fn kill_hard_keeps_every_answered_sign_up(engine: TestEngine) {
    const TOTAL: usize = 200;
    const WORKERS: usize = 16;
    const KILL_AFTER: usize = 40;
    let database = TestDatabase::create(engine).await;
    let mut server = ServerProcess::start(binary(), &database, &[]);
    let base_url = Arc::new(server.base_url.clone());
    let http = client();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let unexpected = Arc::new(Mutex::new(Vec::<String>::new()));
    let enough = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (next, answered, errors, created, unexpected, enough, http, base_url, run_id) = (
            next.clone(),
            answered.clone(),
            errors.clone(),
            created.clone(),
            unexpected.clone(),
            enough.clone(),
            http.clone(),
            base_url.clone(),
            run_id.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= TOTAL {
                    break;
                }
                let email = format!("burst-{run_id}-{index}@example.com");
                match sign_up(&http, &base_url, &email).await {
                    Ok(response) if response.status() == 201 => {
                        created.lock().unwrap().push(email);
                        if answered.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                            enough.notify_one();
                        }
                    }
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        unexpected
                            .lock()
                            .unwrap()
                            .push(format!("{email}: {status} {text}"));
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(120), enough.notified())
        .await
        .expect("40 sign-ups answered within 120 s");
    server.kill_hard();
    for worker in workers {
        worker.await.unwrap();
    }
    let unexpected = unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "sign-ups answered other than 201: {unexpected:?}"
    );
    let created = created.lock().unwrap().clone();
    eprintln!(
        "kill -9 after {} answered sign-ups of {TOTAL}; {} errored",
        created.len(),
        errors.load(Ordering::SeqCst)
    );
    assert!(created.len() >= KILL_AFTER, "{} created", created.len());
    assert!(
        created.len() < TOTAL && errors.load(Ordering::SeqCst) > 0,
        "the kill landed in the middle of the burst ({} created, {} errors)",
        created.len(),
        errors.load(Ordering::SeqCst)
    );

    let mut server = ServerProcess::start(binary(), &database, &[]);
    let http = client();
    for email in &created {
        let response = log_in(&http, &server.base_url, email)
            .await
            .expect("log in sent");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(
            status, 201,
            "{email} was answered 201 before the crash; log in: {text}"
        );
    }
    let status = server.terminate();
    assert!(status.success(), "mamori exited with {status}");
}

// 2. graceful shutdown --------------------------------------------------------------------

async fn sigterm_finishes_the_login_in_flight(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let server = start_serve_with_env(
        &database,
        &[],
        &[
            ("MAMORI_PASSWORDS__MEMORY_KIB", "65536"),
            ("MAMORI_PASSWORDS__ITERATIONS", "4"),
        ],
    );
    let base_url = server.base_url.clone();
    let http = client();
    let email = "graceful@example.com";
    sign_up_ok(&http, &base_url, email).await;
    let pid = server.child.id();
    let cpu_before = cpu_ticks(pid);

    let login = {
        let http = http.clone();
        let base_url = base_url.clone();
        tokio::spawn(async move {
            let response = log_in(&http, &base_url, email).await;
            let answered_at = Instant::now();
            match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    (Ok(status), text, answered_at)
                }
                Err(error) => (Err(error.to_string()), String::new(), answered_at),
            }
        })
    };
    // SIGTERM once the server is hashing for this login (30 ms of CPU): the request is then
    // surely in its hands. The hash takes several times that.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cpu_ticks(pid) < cpu_before + 3 {
        assert!(
            Instant::now() < deadline,
            "the server never started on the login"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let terminated_at = Instant::now();
    let mut server = server;
    let exit = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    let (status, text, answered_at) = login.await.unwrap();
    eprintln!(
        "login answered {:?} after SIGTERM",
        answered_at.saturating_duration_since(terminated_at)
    );
    assert_eq!(
        status,
        Ok(201),
        "the login in flight at SIGTERM is answered: {text}"
    );
    assert!(
        answered_at > terminated_at,
        "the login was still in flight when SIGTERM was sent (hashing too fast to test)"
    );
    assert!(exit.success(), "mamori exited with {exit}");
}

/// User plus system CPU time of a process, in clock ticks (10 ms).
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let fields: Vec<&str> = text[text.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// How many of the process's threads belong to tokio (its workers and its blocking pool, where
/// passwords are hashed); the database drivers' own threads are left out.
fn tokio_thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "tokio-rt-worker")
        })
        .count()
}

/// ENC-1: "at most `max_concurrent` hashes run at once ... whatever the number of clients".
/// Clients that give up on a login must not let more hashes run than that: each hash that runs
/// at once needs a blocking thread of its own, so the server's tokio thread count shows how many
/// ran together.
async fn abandoned_logins_never_run_more_hashes_than_max_concurrent(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let server = start_serve_with_env(
        &database,
        &[],
        &[
            ("MAMORI_PASSWORDS__MEMORY_KIB", "65536"),
            ("MAMORI_PASSWORDS__ITERATIONS", "8"),
            ("MAMORI_PASSWORDS__MAX_CONCURRENT", "1"),
            // Every abandoned attempt counts for the lock-out; this test is about hashing.
            ("MAMORI_LOCKOUT__AFTER_ATTEMPTS", "1000"),
        ],
    );
    let pid = server.child.id();
    let http = client();
    let email = "impatient@example.com";
    sign_up_ok(&http, &server.base_url, email).await;
    log_in_ok(&http, &server.base_url, email).await;
    let threads_before = tokio_thread_count(pid);

    // Ten clients one after the other, each giving up 60 ms into its login (a hash takes
    // several times that).
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(60))
        .build()
        .unwrap();
    let mut gave_up = 0;
    for _ in 0..10 {
        if log_in(&impatient, &server.base_url, email).await.is_err() {
            gave_up += 1;
        }
    }
    assert!(gave_up >= 8, "the logins were abandoned ({gave_up} of 10)");
    let threads_after = tokio_thread_count(pid);
    assert!(
        threads_after <= threads_before + 3,
        "with passwords.max_concurrent = 1 at most one hash runs at a time, yet the server went \
         from {threads_before} to {threads_after} tokio threads: the hashes of abandoned logins \
         keep running after their permit is released"
    );
    // The server still answers a patient client.
    log_in_ok(&http, &server.base_url, email).await;
}

// 3. the command line --------------------------------------------------------------------

async fn version_is_printed(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let mut command = bare_command(&database);
    command.arg("--version");
    let finished = run_bounded(command);
    assert!(finished.status.success(), "stderr: {}", finished.stderr);
    assert_eq!(
        finished.stdout.trim(),
        format!("mamori {}", env!("CARGO_PKG_VERSION"))
    );
}

async fn migrate_runs_twice(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    for round in 1..=2 {
        let (ok, stdout, stderr) = run(binary(), &database, &["migrate"]);
        assert!(ok, "migrate round {round}: {stderr}");
        assert_eq!(last_line(&stdout), "migrations applied", "round {round}");
    }
    let server = ServerProcess::start(binary(), &database, &[]);
    let response = client()
        .get(format!("{}/readyz", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn operator_token_from_the_command_line_works_over_http(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let (ok, stdout, stderr) = run(
        binary(),
        &database,
        &["operator", "token", "create", "--name", "ci"],
    );
    assert!(ok, "operator token create: {stderr}");
    let token = last_line(&stdout).to_owned();
    assert!(
        token.starts_with("mmo_"),
        "token on the last line: {stdout}"
    );
    assert!(
        !token.contains(char::is_whitespace),
        "the last line is the token alone: {token:?}"
    );

    let server = ServerProcess::start(binary(), &database, &[]);
    let http = client();
    let url = format!("{}/api/v1/operator/apps", server.base_url);
    let response = http
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({ "name": "from-ci" }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "create an app with the CLI's token: {text}");
    let app: Value = serde_json::from_str(&text).unwrap();
    assert!(app["id"].as_str().unwrap().starts_with("app_"), "{app}");
    assert_eq!(app["name"], "from-ci");
    assert!(app["secret"].as_str().unwrap().starts_with("mma_"), "{app}");

    let forged = format!("{token}x");
    let response = http
        .post(&url)
        .bearer_auth(&forged)
        .json(&json!({ "name": "forged" }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status() == 401 || response.status() == 403,
        "a wrong operator token is refused, got {}",
        response.status()
    );
}

async fn app_create_prints_its_id_and_secret_as_json(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let (ok, stdout, stderr) = run(binary(), &database, &["app", "create", "--name", "tracker"]);
    assert!(ok, "app create: {stderr}");
    let app: Value = serde_json::from_str(last_line(&stdout))
        .unwrap_or_else(|error| panic!("the last line is JSON ({error}): {stdout}"));
    let fields: Vec<&String> = app.as_object().expect("an object").keys().collect();
    assert_eq!(fields.len(), 3, "exactly id, name and secret: {app}");
    assert!(app["id"].as_str().unwrap().starts_with("app_"), "{app}");
    assert_eq!(app["name"], "tracker");
    assert!(app["secret"].as_str().unwrap().starts_with("mma_"), "{app}");

    let (ok, stdout, stderr) = run(
        binary(),
        &database,
        &["app", "create", "--name", "tracker2"],
    );
    assert!(ok, "second app create: {stderr}");
    let second: Value = serde_json::from_str(last_line(&stdout)).unwrap();
    assert_ne!(second["id"], app["id"], "each app has its own id");
    assert_ne!(
        second["secret"], app["secret"],
        "each app has its own secret"
    );
}

async fn bad_database_url_is_refused_clearly(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let mut command = bare_command(&database);
    command.args([
        "--data-dir",
        &database.data_dir().display().to_string(),
        "--database-url",
        "mysql://x",
        "migrate",
    ]);
    let finished = run_bounded(command);
    assert_refused(&finished, &["sqlite://", "postgres://", "mysql://x"]);
}

async fn unknown_environment_variable_is_refused_clearly(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let mut command = Command::new(binary());
    command
        .args(data_args(&database))
        .arg("migrate")
        .envs(data_env(&database))
        .env("MAMORI_SERVER__LISTN", "127.0.0.1:9999");
    let finished = run_bounded(command);
    assert_refused(&finished, &["MAMORI_", "listn"]);
}

async fn unknown_config_file_key_is_refused_clearly(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let config = database.data_dir().join("mamori.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nlistn = \"x\"\n",
    )
    .unwrap();
    let mut command = bare_command(&database);
    command
        .arg("--config")
        .arg(&config)
        .args(data_args(&database))
        .arg("migrate");
    let finished = run_bounded(command);
    assert_refused(&finished, &["mamori.toml", "listn"]);
}

async fn jobs_run_once_prints_a_summary(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let (ok, stdout, stderr) = run(
        binary(),
        &database,
        &["jobs", "run-once", "--now", "2026-01-01T00:00:00Z"],
    );
    assert!(ok, "jobs run-once: {stderr}");
    assert_eq!(
        last_line(&stdout),
        "at 2026-01-01T00:00:00.000Z: 0 expired sessions removed, 0 data keys destroyed, 0 finished mails deleted"
    );

    let (ok, _stdout, stderr) = run(
        binary(),
        &database,
        &["jobs", "run-once", "--now", "yesterday"],
    );
    assert!(!ok, "a --now that is not a time is refused");
    assert!(
        stderr.contains("RFC 3339") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

async fn jobs_run_once_removes_expired_sessions(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let mut server = ServerProcess::start(binary(), &database, &[]);
    let http = client();
    sign_up_ok(&http, &server.base_url, "expiring@example.com").await;
    let token = log_in_ok(&http, &server.base_url, "expiring@example.com").await;
    assert!(server.terminate().success());

    let (ok, stdout, stderr) = run(
        binary(),
        &database,
        &["jobs", "run-once", "--now", "2200-01-01T00:00:00Z"],
    );
    assert!(ok, "jobs run-once: {stderr}");
    assert_eq!(
        last_line(&stdout),
        "at 2200-01-01T00:00:00.000Z: 1 expired sessions removed, 0 data keys destroyed, 0 finished mails deleted"
    );

    let server = ServerProcess::start(binary(), &database, &[]);
    let (status, body) = get_me(&client(), &server.base_url, &token).await;
    assert_eq!(status, 401, "the removed session no longer works: {body}");
}

// 4. restart keeps sessions ---------------------------------------------------------------

async fn restart_keeps_sessions(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let mut server = ServerProcess::start(binary(), &database, &[]);
    let http = client();
    let account = sign_up_ok(&http, &server.base_url, "restart@example.com").await;
    let token = log_in_ok(&http, &server.base_url, "restart@example.com").await;
    let (status, _) = get_me(&http, &server.base_url, &token).await;
    assert_eq!(status, 200);
    let exit = server.terminate();
    assert!(exit.success(), "mamori exited with {exit}");

    let mut server = ServerProcess::start(binary(), &database, &[]);
    let http = client();
    let (status, me) = get_me(&http, &server.base_url, &token).await;
    assert_eq!(status, 200, "the session survives a restart: {me}");
    assert_eq!(me["id"], account["id"]);
    assert_eq!(me["email"], "restart@example.com");
    let (status, _) = get_me(&http, &server.base_url, &format!("{token}x")).await;
    assert_eq!(status, 401, "a wrong token is still refused");
    assert!(server.terminate().success());
}

// 5. TLS (ENC-2) ----------------------------------------------------------------------------

async fn tls_serves_https_with_hsts_and_secure_cookies(engine: TestEngine) {
    let database = TestDatabase::create(engine).await;
    let certified = rcgen::generate_simple_self_signed(vec![
        String::from("127.0.0.1"),
        String::from("localhost"),
    ])
    .expect("self-signed certificate");
    let cert_pem = certified.cert.pem();
    let certs = tempfile::tempdir().unwrap();
    let cert_path = certs.path().join("cert.pem");
    let key_path = certs.path().join("key.pem");
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();

    let cert_arg = cert_path.display().to_string();
    let key_arg = key_path.display().to_string();
    let mut server = ServerProcess::start(
        binary(),
        &database,
        &["--tls-cert", &cert_arg, "--tls-key", &key_arg],
    );
    assert!(
        server.base_url.starts_with("https://127.0.0.1:"),
        "mamori says it listens on https: {}",
        server.base_url
    );
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    let response = http
        .get(format!("{}/healthz", server.base_url))
        .send()
        .await
        .expect("healthz over https");
    assert_eq!(response.status(), 200);
    let hsts = response
        .headers()
        .get("strict-transport-security")
        .expect("HSTS header over TLS")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(hsts.contains("max-age="), "{hsts}");

    sign_up_ok(&http, &server.base_url, "tls@example.com").await;
    let response = log_in(&http, &server.base_url, "tls@example.com")
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("mamori_session="), "{cookie}");
    assert!(
        cookie.split(';').any(|part| part.trim() == "Secure"),
        "the cookie is Secure over TLS: {cookie}"
    );

    let plain = client()
        .get(format!(
            "{}/healthz",
            server.base_url.replacen("https://", "http://", 1)
        ))
        .send()
        .await;
    assert!(
        plain
            .map(|response| response.status() != 200)
            .unwrap_or(true),
        "plain HTTP is not served on the TLS port"
    );
    let exit = server.terminate();
    assert!(exit.success(), "mamori exited with {exit}");
}

// 6. the master key file --------------------------------------------------------------------

async fn master_key_file_is_private_and_a_readable_one_is_refused(engine: TestEngine) {
    use std::os::unix::fs::PermissionsExt;
    let database = TestDatabase::create(engine).await;
    let key_file = database.data_dir().join("master.key");
    assert!(!key_file.exists());
    let mut server = ServerProcess::start(binary(), &database, &[]);
    let http = client();
    sign_up_ok(&http, &server.base_url, "keyed@example.com").await;
    assert!(server.terminate().success());

    let mode = std::fs::metadata(&key_file)
        .expect("master.key created on first start")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "master.key mode is {mode:o}");
    if engine == TestEngine::Sqlite {
        assert!(
            database.data_dir().join("keyring.db").exists(),
            "the SQLite keyring lives in the data dir"
        );
    }

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut command = Command::new(binary());
    command
        .args(data_args(&database))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .envs(data_env(&database));
    let finished = run_bounded(command);
    assert_refused(&finished, &["master.key", "chmod 600"]);
    assert!(
        !finished.stdout.contains("mamori listening"),
        "it never listened: {}",
        finished.stdout
    );

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut server = ServerProcess::start(binary(), &database, &[]);
    log_in_ok(&client(), &server.base_url, "keyed@example.com").await;
    assert!(server.terminate().success());
}
