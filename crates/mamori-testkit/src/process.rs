//! The `mamori` binary as a child process, for tests of the command line and of crashes.

use crate::database::TestDatabase;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Arguments that point the binary at a test database, with cheap password hashing.
pub fn data_args(database: &TestDatabase) -> Vec<String> {
    vec![
        String::from("--data-dir"),
        database.data_dir().display().to_string(),
        String::from("--database-url"),
        database.url().to_owned(),
    ]
}

/// Environment for the child: the keyring URL, fast hashing, and the per-client rate limits
/// out of the way (every test client is 127.0.0.1).
pub fn data_env(database: &TestDatabase) -> Vec<(String, String)> {
    let unlimited = ["login", "second_factor", "sign_up", "password_reset"]
        .into_iter()
        .flat_map(|limit| {
            ["PER_MINUTE", "BURST"].map(|key| {
                (
                    format!("MAMORI_RATE_LIMITS__{}__{key}", limit.to_uppercase()),
                    String::from("100000000"),
                )
            })
        });
    let mut env = vec![
        (
            String::from("MAMORI_KEYRING__URL"),
            database.keyring_url().to_owned(),
        ),
        (
            String::from("MAMORI_PASSWORDS__MEMORY_KIB"),
            String::from("256"),
        ),
        (
            String::from("MAMORI_PASSWORDS__ITERATIONS"),
            String::from("1"),
        ),
        (String::from("MAMORI_LOG__FILTER"), String::from("warn")),
    ];
    env.extend(unlimited);
    env
}

/// Runs a command of the binary to completion; returns (success, stdout, stderr).
pub fn run(binary: &Path, database: &TestDatabase, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary)
        .args(data_args(database))
        .args(args)
        .envs(data_env(database))
        .output()
        .expect("run mamori");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running `mamori serve`.
pub struct ServerProcess {
    pub child: Child,
    pub base_url: String,
}

impl ServerProcess {
    /// Starts `mamori serve` on a free loopback port and waits until it says where it listens.
    pub fn start(binary: &Path, database: &TestDatabase, extra_args: &[&str]) -> ServerProcess {
        ServerProcess::start_within(binary, database, extra_args, Duration::from_secs(60))
    }

    /// [`ServerProcess::start`], waiting at most `limit` for it to listen (a large index
    /// loads first).
    pub fn start_within(
        binary: &Path,
        database: &TestDatabase,
        extra_args: &[&str],
        limit: Duration,
    ) -> ServerProcess {
        let mut command = Command::new(binary);
        command
            .args(data_args(database))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(extra_args)
            .envs(data_env(database));
        ServerProcess::spawn_within(command, limit)
    }

    /// Spawns a prepared `mamori ... serve` command (its standard output is taken over) and
    /// waits, at most 60 s, until it prints where it listens.
    pub fn spawn(command: Command) -> ServerProcess {
        ServerProcess::spawn_within(command, Duration::from_secs(60))
    }

    fn spawn_within(mut command: Command, limit: Duration) -> ServerProcess {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mamori serve");
        let stdout = child.stdout.take().expect("child stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("mamori listening on ") {
                    let _ = sender.send(url.trim().to_owned());
                }
            }
        });
        let deadline = Instant::now() + limit;
        let base_url = loop {
            if let Ok(url) = receiver.recv_timeout(Duration::from_millis(100)) {
                break url;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("mamori serve exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "mamori serve did not start within {limit:?}"
            );
        };
        ServerProcess { child, base_url }
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait for mamori")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
