//! Email that is never lost (issue: organizations): a message is written to the outbox in the
//! same transaction as the change that causes it, sealed under the data key of whoever it
//! belongs to, and a sender delivers it over SMTP afterwards with retries and backoff. A crash
//! loses no mail; a rolled-back change sends none.

use crate::tokens::id_random;
use crate::{ServiceError, Services};
use async_trait::async_trait;
use mamori_core::{MailId, Timestamp};
use mamori_keyring::DataKey;
use mamori_store::{MailRow, MailStatus, StoreTx};
use serde_json::json;

/// How long one node holds a message it is sending before another may try.
const LEASE_MS: i64 = 5 * 60_000;
/// Attempts before a message is given up (about three days of backoff).
const MAX_ATTEMPTS: i64 = 20;
const FIRST_RETRY_MS: i64 = 60_000;
const LONGEST_RETRY_MS: i64 = 6 * 3_600_000;
const BATCH: u32 = 50;

/// A message as composed, before sealing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Trying again cannot help (a malformed address, a 5xx answer): the message fails now.
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    fn permanent(message: String) -> SendError {
        SendError {
            permanent: true,
            message,
        }
    }
}

/// Where mail goes out. The one implementation speaks SMTP (`SmtpMailer`); tests run a real
/// SMTP receiver on loopback.
#[async_trait]
pub trait MailTransport: Send + Sync {
    async fn send(&self, from: &str, mail: &Mail) -> Result<(), SendError>;
}

/// Sends over SMTP with lettre: `smtp://host:port` (plain), `?tls=required` (STARTTLS) or
/// `smtps://` (TLS).
pub struct SmtpMailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
}

impl SmtpMailer {
    pub fn from_url(url: &str) -> Result<SmtpMailer, ServiceError> {
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("smtp url: {error}")))?
            .timeout(Some(std::time::Duration::from_secs(30)))
            .build();
        Ok(SmtpMailer { transport })
    }
}

#[async_trait]
impl MailTransport for SmtpMailer {
    async fn send(&self, from: &str, mail: &Mail) -> Result<(), SendError> {
        use lettre::AsyncTransport;
        let message = lettre::Message::builder()
            .from(
                from.parse()
                    .map_err(|error| SendError::permanent(format!("from address: {error}")))?,
            )
            .to(mail
                .to
                .parse()
                .map_err(|error| SendError::permanent(format!("recipient address: {error}")))?)
            .subject(mail.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|error| SendError::permanent(format!("message: {error}")))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| SendError {
                permanent: error.is_permanent(),
                message: format!("smtp: {error}"),
            })
    }
}

/// Checks the configured sender address once at start, so a typo fails the start rather than
/// every message.
pub fn check_sender(from: &str) -> Result<(), ServiceError> {
    from.parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("smtp.from {from:?}: {error}")))
}

/// Settings for composing mail.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// The sender address, e.g. `Mamori <no-reply@example.com>`.
    pub from: String,
    /// The address people use to reach the service, for links in mail.
    pub public_url: String,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            from: String::from("Mamori <no-reply@localhost>"),
            public_url: String::from("http://127.0.0.1:8080"),
        }
    }
}

/// What one delivery round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: u64,
    pub retried: u64,
    pub failed: u64,
}

/// A message in the outbox as the operator sees it (`mamori outbox list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: MailId,
    pub kind: String,
    pub status: &'static str,
    pub attempts: i64,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    /// `None` when the owner's data key is destroyed: the message is unreadable for good.
    pub mail: Option<Mail>,
}

/// Writes `mail` to the outbox inside `tx`, sealed under `key`.
pub(crate) async fn enqueue(
    tx: &mut dyn StoreTx,
    key: &DataKey,
    key_owner: &str,
    kind: &str,
    mail: &Mail,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let plaintext =
        json!({ "to": mail.to, "subject": mail.subject, "body": mail.body }).to_string();
    let row = MailRow {
        id: MailId::from_random(&id_random()?),
        key_owner: key_owner.to_owned(),
        kind: kind.to_owned(),
        message_sealed: key.seal("mail", plaintext.as_bytes())?,
        status: MailStatus::Pending,
        attempts: 0,
        created_at: now,
        next_attempt_at: now,
        sent_at: None,
        last_error: None,
    };
    tx.insert_mail(&row).await?;
    Ok(())
}

fn backoff_ms(attempts: i64) -> i64 {
    let doublings = u32::try_from((attempts - 1).clamp(0, 20)).unwrap_or(20);
    FIRST_RETRY_MS
        .saturating_mul(1i64 << doublings)
        .min(LONGEST_RETRY_MS)
}

impl Services {
    async fn open_mail(&self, row: &MailRow) -> Result<Option<Mail>, ServiceError> {
        let key = match self.keyring.key(&row.key_owner).await {
            Ok(key) => key,
            Err(mamori_keyring::KeyringError::NoKey(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let text = key.open_string("mail", &row.message_sealed)?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|error| {
            ServiceError::Unexpected(anyhow::anyhow!("outbox message: {error}"))
        })?;
        let field = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
        Ok(Some(Mail {
            to: field("to"),
            subject: field("subject"),
            body: field("body"),
        }))
    }

    /// One round of delivery at `now`: sends what is due, reschedules failures with
    /// exponential backoff, gives up after about three days. Without a transport (no
    /// `--smtp-url`) mail stays in the outbox.
    pub async fn deliver_mail_once(&self, now: Timestamp) -> Result<DeliveryReport, ServiceError> {
        let mut report = DeliveryReport::default();
        let Some(transport) = self.mail_transport.as_ref() else {
            return Ok(report);
        };
        for row in self.store.due_mail(now, BATCH).await? {
            if !self
                .store
                .claim_mail(&row.id, now, now.plus_millis(LEASE_MS))
                .await?
            {
                continue;
            }
            let attempts = row.attempts + 1;
            let Some(mail) = self.open_mail(&row).await? else {
                // The owner's key is destroyed: the message can never be read or sent.
                self.store
                    .mark_mail_failed(&row.id, attempts, "data key destroyed")
                    .await?;
                report.failed += 1;
                continue;
            };
            match transport.send(&self.mail_settings.from, &mail).await {
                Ok(()) => {
                    self.store.mark_mail_sent(&row.id, now).await?;
                    report.sent += 1;
                }
                Err(error) if error.permanent || attempts >= MAX_ATTEMPTS => {
                    tracing::warn!(mail = %row.id, error = %error.message, attempts, "giving up on mail");
                    self.store
                        .mark_mail_failed(&row.id, attempts, &error.message)
                        .await?;
                    report.failed += 1;
                }
                Err(error) => {
                    tracing::info!(mail = %row.id, error = %error.message, attempts, "mail delivery failed; will retry");
                    self.store
                        .mark_mail_retry(
                            &row.id,
                            attempts,
                            now.plus_millis(backoff_ms(attempts)),
                            &error.message,
                        )
                        .await?;
                    report.retried += 1;
                }
            }
        }
        Ok(report)
    }

    /// The outbox, newest first, opened for the operator.
    pub async fn outbox(&self, limit: u32) -> Result<Vec<OutboxEntry>, ServiceError> {
        let mut entries = Vec::new();
        for row in self.store.mail(limit).await? {
            let mail = self.open_mail(&row).await?;
            entries.push(OutboxEntry {
                id: row.id,
                kind: row.kind,
                status: row.status.as_str(),
                attempts: row.attempts,
                created_at: row.created_at,
                next_attempt_at: row.next_attempt_at,
                last_error: row.last_error,
                mail,
            });
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_six_hours() {
        assert_eq!(backoff_ms(1), 60_000);
        assert_eq!(backoff_ms(2), 120_000);
        assert_eq!(backoff_ms(5), 16 * 60_000);
        assert_eq!(backoff_ms(12), LONGEST_RETRY_MS);
        assert_eq!(backoff_ms(40), LONGEST_RETRY_MS);
    }
}
