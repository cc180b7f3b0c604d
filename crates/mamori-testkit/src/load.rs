//! Load for benchmarks over HTTP: a minimal keep-alive HTTP/1.1 client of our own, cheap
//! enough that it costs little of the shared cores, and the CPU time a process used, so that a
//! benchmark can report requests per second of the server's CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `host:port` of a base URL such as `http://127.0.0.1:8080/`.
pub fn address_of(base_url: &str) -> String {
    base_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// A raw HTTP/1.1 request with a bearer token, and a JSON body when given.
pub fn raw_request(
    method: &str,
    address: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> Vec<u8> {
    let mut text =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n");
    if let Some(body) = body {
        text.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        text.push_str("\r\n");
    }
    text.into_bytes()
}

/// `connections` keep-alive connections, each sending the requests in turn, back to back,
/// until `duration` has passed; returns (2xx answers, other answers).
pub async fn hammer(
    address: &str,
    requests: &Arc<Vec<Vec<u8>>>,
    connections: usize,
    duration: Duration,
) -> (u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (requests, ok, failed, stop) =
            (requests.clone(), ok.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            let mut next = connection;
            while !stop.load(Ordering::Relaxed) {
                let request = &requests[next % requests.len()];
                next += connections;
                stream.write_all(request).await.expect("write");
                let status = read_response(&mut stream, &mut buffer).await;
                if (200..300).contains(&status) {
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
        assert!(total <= buffer.len(), "response larger than the buffer");
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

/// User and system CPU time of a process (`None`: this one) from its `stat` file.
pub fn cpu_time(pid: Option<u32>) -> Duration {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => String::from("/proc/self/stat"),
    };
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {path}: {error}"));
    let after_name = &text[text.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// The number of access-log rows once it stops growing (or reaches `expected`): the writer
/// stores a batch every second at the latest.
pub async fn settled_access_logs(pool: &sqlx::AnyPool, expected: Option<u64>) -> u64 {
    let count = || async {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_logs")
            .fetch_one(pool)
            .await
            .expect("count access logs");
        u64::try_from(rows).expect("a count")
    };
    let mut last = count().await;
    let mut unchanged_since = Instant::now();
    loop {
        if expected.is_some_and(|expected| last >= expected)
            || unchanged_since.elapsed() > Duration::from_millis(2_500)
        {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count().await;
        if now != last {
            last = now;
            unchanged_since = Instant::now();
        }
    }
}
