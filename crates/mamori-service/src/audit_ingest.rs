//! Events sent by apps (`POST /api/v1/app/audit-events`), made durable by group commit.
//!
//! Each request puts its event in a shared queue and waits. Whichever waiter finds no commit
//! running becomes the leader: it takes everything queued (up to [`MAX_BATCH`]), appends it to
//! the chains in one transaction, commits once and answers every waiter of the batch. While it
//! commits, new events queue for the next batch, so one fsync serves many events under load
//! and a lone event is committed at once. A request is answered only after its event's commit
//! succeeded; if the commit fails, every event of the batch is refused and none was stored.
//! The commit runs in its own task, so a client that goes away does not abort it.

use crate::audit::{PendingEvent, RequestContext, SealedNames, chained_row};
use crate::audit_trail::AuditEventView;
use crate::jcs;
use crate::sessions::AppPrincipal;
use crate::{ServiceError, Services};
use mamori_core::audit::{ActorKind, Outcome};
use mamori_core::{OrgId, Timestamp};
use mamori_keyring::Keyring;
use mamori_store::Store;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Events committed together at most.
pub const MAX_BATCH: usize = 2_000;
/// The canonical details text of one app event is at most this long.
pub const MAX_DETAILS_BYTES: usize = 8 * 1024;
const MAX_DETAILS_DEPTH: usize = 8;
/// First segments of actions that only Mamori records.
const RESERVED_NAMESPACES: [&str; 10] = [
    "account",
    "session",
    "org",
    "operator",
    "app",
    "mail",
    "audit",
    "lifecycle",
    "authz",
    "platform",
];

/// An event as an app sends it.
#[derive(Debug, Clone)]
pub struct NewAppEvent {
    pub org_id: String,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: Option<String>,
    pub details: Option<Value>,
}

struct Waiting {
    event: PendingEvent,
    app_id: String,
    now: Timestamp,
    answer: oneshot::Sender<Result<AuditEventView, Unanswered>>,
}

/// Why a waiter's event was not stored.
#[derive(Debug, Clone)]
enum Unanswered {
    /// The organization is not active or did not enable the app.
    NotFound,
    /// The batch's commit failed; none of it was stored.
    Failed,
}

/// The queue and the leader's baton.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Waiting>>,
    leader: tokio::sync::Mutex<()>,
}

impl Services {
    /// Validates an app's event and records it in the organization's chain; answers once the
    /// event is durable. An organization that did not enable the app is `NotFound`.
    pub async fn record_app_event(
        &self,
        app: &AppPrincipal,
        input: NewAppEvent,
        context: &RequestContext,
        now: Timestamp,
    ) -> Result<AuditEventView, ServiceError> {
        let event = validate_app_event(app, &input, context)?;
        // Whether the organization is active and enabled the app is decided inside the
        // batch's transaction, once per organization and app: no read per request.
        OrgId::parse(&input.org_id).ok_or(ServiceError::NotFound)?;
        let (answer, answered) = oneshot::channel();
        if let Ok(mut queue) = self.ingest.queue.lock() {
            queue.push(Waiting {
                event,
                app_id: app.app_id.as_str().to_owned(),
                now,
                answer,
            });
        }
        let mut answered = answered;
        loop {
            let baton = self.ingest.leader.lock().await;
            // The batch before ours may have carried our event.
            if let Some(result) = answer_of(&mut answered) {
                return result;
            }
            let batch: Vec<Waiting> = match self.ingest.queue.lock() {
                Ok(mut queue) => {
                    let take = queue.len().min(MAX_BATCH);
                    queue.drain(..take).collect()
                }
                Err(_) => Vec::new(),
            };
            if !batch.is_empty() {
                let store = self.store.clone();
                let keyring = self.keyring.clone();
                // Its own task: a leader whose client goes away still finishes the commit.
                let _ = tokio::spawn(commit_batch(store, keyring, batch)).await;
            }
            drop(baton);
            if let Some(result) = answer_of(&mut answered) {
                return result;
            }
        }
    }
}

/// The answer to a waiter, once there is one. A batch whose commit task died without
/// answering (its sender dropped) is an error too, never a wait forever.
fn answer_of(
    answered: &mut oneshot::Receiver<Result<AuditEventView, Unanswered>>,
) -> Option<Result<AuditEventView, ServiceError>> {
    match answered.try_recv() {
        Ok(Ok(view)) => Some(Ok(view)),
        Ok(Err(Unanswered::NotFound)) => Some(Err(ServiceError::NotFound)),
        Ok(Err(Unanswered::Failed)) => Some(Err(ServiceError::Unexpected(anyhow::anyhow!(
            "audit group commit failed"
        )))),
        Err(oneshot::error::TryRecvError::Empty) => None,
        Err(oneshot::error::TryRecvError::Closed) => Some(Err(ServiceError::Unexpected(
            anyhow::anyhow!("audit group commit ended without an answer"),
        ))),
    }
}

fn validate_app_event(
    app: &AppPrincipal,
    input: &NewAppEvent,
    context: &RequestContext,
) -> Result<PendingEvent, ServiceError> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, message: &str| {
        errors.push(mamori_core::FieldError::new(field, message));
    };
    if !valid_action(&input.action) {
        fail(
            "action",
            "must be 2 to 8 dot-separated segments of a-z, 0-9 and '_', each starting with a letter, at most 128 characters",
        );
    } else if input
        .action
        .split('.')
        .next()
        .is_some_and(|first| RESERVED_NAMESPACES.contains(&first))
    {
        fail(
            "action",
            "this namespace is reserved for Mamori's own events",
        );
    }
    match (&input.target_type, &input.target_id) {
        (None, None) => {}
        (Some(kind), Some(id)) => {
            if !valid_token(kind, 64) {
                fail(
                    "target.type",
                    "must be 1 to 64 characters of a-z, 0-9 and '_'",
                );
            }
            if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
                fail(
                    "target.id",
                    "must be 1 to 256 characters without control characters",
                );
            }
        }
        _ => fail("target", "needs both type and id"),
    }
    let outcome = match input.outcome.as_deref() {
        None | Some("success") => Outcome::Success,
        Some("failure") => Outcome::Failure,
        Some(_) => {
            fail("outcome", "must be success or failure");
            Outcome::Success
        }
    };
    let details = match &input.details {
        None => String::from("{}"),
        Some(value @ Value::Object(_)) => {
            if depth(value) > MAX_DETAILS_DEPTH {
                fail("details", "must be nested at most 8 levels deep");
                String::new()
            } else {
                match jcs::canonical(value) {
                    Ok(text) if text.len() <= MAX_DETAILS_BYTES => text,
                    Ok(_) => {
                        fail("details", "must be at most 8192 bytes as canonical JSON");
                        String::new()
                    }
                    Err(error) => {
                        fail("details", &error.to_string());
                        String::new()
                    }
                }
            }
        }
        Some(_) => {
            fail("details", "must be an object");
            String::new()
        }
    };
    if !errors.is_empty() {
        return Err(ServiceError::Validation(errors));
    }
    Ok(PendingEvent {
        org_id: Some(input.org_id.clone()),
        actor_type: ActorKind::App.as_str().to_owned(),
        actor_id: Some(app.app_id.as_str().to_owned()),
        action: input.action.clone(),
        target_type: input.target_type.clone(),
        target_id: input.target_id.clone(),
        outcome: outcome.as_str().to_owned(),
        context: context.clone(),
        details,
    })
}

fn valid_token(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_action(action: &str) -> bool {
    let segments: Vec<&str> = action.split('.').collect();
    action.len() <= 128
        && (2..=8).contains(&segments.len())
        && segments.iter().all(|segment| {
            valid_token(segment, 64) && segment.starts_with(|c: char| c.is_ascii_lowercase())
        })
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Appends a batch to its chains in one transaction and answers each waiter.
async fn commit_batch(store: Arc<dyn Store>, keyring: Arc<Keyring>, batch: Vec<Waiting>) {
    let mut by_chain: HashMap<String, Vec<Waiting>> = HashMap::new();
    for waiting in batch {
        let chain = waiting.event.org_id.clone().unwrap_or_default();
        by_chain.entry(chain).or_default().push(waiting);
    }
    match append_all(&store, &keyring, &by_chain).await {
        Ok(mut views) => {
            for (chain, waiting) in by_chain {
                let rows = views.remove(&chain).unwrap_or_default();
                for (waiting, view) in waiting.into_iter().zip(rows) {
                    let _ = waiting.answer.send(view.ok_or(Unanswered::NotFound));
                }
            }
        }
        Err(error) => {
            tracing::error!(error = %error, "audit group commit failed");
            for waiting in by_chain.into_values().flatten() {
                let _ = waiting.answer.send(Err(Unanswered::Failed));
            }
        }
    }
}

async fn append_all(
    store: &Arc<dyn Store>,
    keyring: &Keyring,
    by_chain: &HashMap<String, Vec<Waiting>>,
) -> Result<HashMap<String, Vec<Option<AuditEventView>>>, ServiceError> {
    let mut tx = store.begin().await?;
    let mut names: HashMap<String, Option<String>> = HashMap::new();
    let mut views = HashMap::new();
    for (chain, waiting) in by_chain {
        let mut allowed: HashMap<&str, bool> = HashMap::new();
        for item in waiting {
            if !names.contains_key(&item.app_id) {
                let name = tx.actor_name_as_stored("app", &item.app_id).await?;
                names.insert(item.app_id.clone(), name);
            }
            if !allowed.contains_key(item.app_id.as_str()) {
                let may = tx.app_may_write(chain, &item.app_id).await?;
                allowed.insert(item.app_id.as_str(), may);
            }
        }
        let admitted = |item: &Waiting| allowed.get(item.app_id.as_str()) == Some(&true);
        let count = waiting.iter().filter(|item| admitted(item)).count();
        let mut chain_views = Vec::with_capacity(waiting.len());
        if count == 0 {
            chain_views.resize(waiting.len(), None);
            views.insert(chain.clone(), chain_views);
            continue;
        }
        let key = keyring.key(chain).await?;
        let mut position = tx
            .advance_audit_chain(chain, u32::try_from(count).unwrap_or(u32::MAX))
            .await?;
        let mut rows = Vec::with_capacity(count);
        let mut sealed_names = SealedNames::new(&key);
        for item in waiting {
            if !admitted(item) {
                chain_views.push(None);
                continue;
            }
            let name = names.get(&item.app_id).cloned().flatten();
            let row = chained_row(
                chain.clone(),
                position.clone(),
                item.event.clone(),
                name.as_deref(),
                &mut sealed_names,
                item.now,
            )?;
            position.seq += 1;
            position.prev_hash.clone_from(&row.hash);
            chain_views.push(Some(AuditEventView {
                row: row.clone(),
                actor_name: name,
            }));
            rows.push(row);
        }
        tx.insert_audit_events(&rows).await?;
        views.insert(chain.clone(), chain_views);
    }
    tx.commit().await?;
    Ok(views)
}
