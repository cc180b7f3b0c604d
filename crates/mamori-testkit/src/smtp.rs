//! A small SMTP receiver on loopback: it speaks enough of RFC 5321 (EHLO/HELO, MAIL, RCPT,
//! DATA, RSET, NOOP, QUIT) for a real client to deliver to it, and keeps every message so a
//! test can read what was really sent. It can be told to refuse mail, to test retries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as transmitted: headers, a blank line, the body (dot-unstuffed).
    pub data: String,
}

impl ReceivedMail {
    /// The value of a header (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(current) = value.as_mut() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    current.push_str(line.trim_start());
                    continue;
                }
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }

    /// The body after the headers.
    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }
}

pub struct SmtpReceiver {
    pub port: u16,
    messages: Arc<Mutex<Vec<ReceivedMail>>>,
    refuse: Arc<AtomicBool>,
}

impl SmtpReceiver {
    pub async fn start() -> SmtpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind smtp receiver");
        let port = listener.local_addr().expect("smtp address").port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(AtomicBool::new(false));
        let (store, refusing) = (messages.clone(), refuse.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (store, refusing) = (store.clone(), refusing.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, store, refusing).await;
                });
            }
        });
        SmtpReceiver {
            port,
            messages,
            refuse,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Refuse (`true`) or accept every message from now on.
    pub fn set_refusing(&self, refusing: bool) {
        self.refuse.store(refusing, Ordering::SeqCst);
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.messages
            .lock()
            .map(|messages| messages.clone())
            .unwrap_or_default()
    }

    /// Messages sent to `address`.
    pub fn messages_to(&self, address: &str) -> Vec<ReceivedMail> {
        self.messages()
            .into_iter()
            .filter(|mail| mail.to.iter().any(|to| to.eq_ignore_ascii_case(address)))
            .collect()
    }
}

async fn serve(
    socket: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<ReceivedMail>>>,
    refuse: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let (reader, mut writer) = socket.into_split();
    let mut lines = BufReader::new(reader);
    writer.write_all(b"220 mamori-test-smtp ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                writer
                    .write_all(b"250-mamori-test-smtp\r\n250 8BITMIME\r\n")
                    .await?
            }
            "HELO" | "NOOP" => writer.write_all(b"250 ok\r\n").await?,
            "RSET" => {
                from.clear();
                to.clear();
                writer.write_all(b"250 ok\r\n").await?;
            }
            "MAIL" => {
                if refuse.load(Ordering::SeqCst) {
                    writer.write_all(b"451 try again later\r\n").await?;
                    continue;
                }
                from = address_in(&command);
                writer.write_all(b"250 ok\r\n").await?;
            }
            "RCPT" => {
                to.push(address_in(&command));
                writer.write_all(b"250 ok\r\n").await?;
            }
            "DATA" => {
                writer.write_all(b"354 end with .\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                if let Ok(mut messages) = store.lock() {
                    messages.push(ReceivedMail {
                        from: from.clone(),
                        to: std::mem::take(&mut to),
                        data,
                    });
                }
                writer.write_all(b"250 queued\r\n").await?;
            }
            "QUIT" => {
                writer.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => writer.write_all(b"502 not implemented\r\n").await?,
        }
    }
}

fn address_in(command: &str) -> String {
    let start = command.find('<').map_or(0, |index| index + 1);
    let end = command.rfind('>').unwrap_or(command.len());
    command.get(start..end).unwrap_or("").to_owned()
}
