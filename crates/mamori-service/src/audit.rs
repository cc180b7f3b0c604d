//! Recording audit events, chained per organization (and one platform chain) with SHA-256:
//! `hash = hex(SHA-256(prev_hash + "\n" + JCS(event without "hash")))`.
//!
//! The event is written in its canonical form (RFC 8785, see [`crate::jcs`]) straight from
//! the stored row: the stored `details` text is already canonical, so hashing, verifying and
//! exporting never build an intermediate JSON tree.

use crate::ServiceError;
use crate::jcs;
use crate::tokens::id_random;
use mamori_core::audit::{ActorKind, Outcome, chain_name};
use mamori_core::{AccountId, AuditEventId, OrgId, Timestamp};
use mamori_keyring::{DataKey, KeyringError};
use mamori_store::{AuditEventRow, ChainPosition, StoreError, StoreTx};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::ops::Range;

/// The keyring owner whose key seals actor names in the platform chain.
pub const PLATFORM_KEY_OWNER: &str = "audit:platform";
/// The field an actor's name is sealed as, under the chain's key.
pub(crate) const ACTOR_NAME_FIELD: &str = "audit_actor_name";
/// The field an account's display name is sealed as, under the account's key.
const ACCOUNT_NAME_FIELD: &str = "display_name";

/// Where a request came from, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// One event to record, before it is placed in its chain.
pub(crate) struct AuditDraft<'a> {
    pub org: Option<&'a OrgId>,
    pub actor_kind: ActorKind,
    pub actor_id: Option<&'a str>,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub outcome: Outcome,
    pub details: Value,
    /// The actor's name as stored, when the caller has read it already (`Some(None)`: it has
    /// none); otherwise `record` reads it inside the transaction.
    pub actor_name_as_stored: Option<Option<&'a str>>,
}

impl<'a> AuditDraft<'a> {
    pub fn new(actor_kind: ActorKind, actor_id: Option<&'a str>, action: &'a str) -> Self {
        AuditDraft {
            org: None,
            actor_kind,
            actor_id,
            action,
            target_type: None,
            target_id: None,
            outcome: Outcome::Success,
            details: Value::Object(Map::new()),
            actor_name_as_stored: None,
        }
    }

    /// The actor's name as stored, read by the caller with the actor's row: `record` need not
    /// read it again.
    pub fn actor_name_as_stored(mut self, stored: Option<&'a str>) -> Self {
        self.actor_name_as_stored = Some(stored);
        self
    }

    pub fn target(mut self, target_type: &'a str, target_id: &'a str) -> Self {
        self.target_type = Some(target_type);
        self.target_id = Some(target_id);
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// The keyring owner whose data key seals the actor names of `chain`: the organization's own
/// key for its chain, so they go with it when the organization is purged.
pub(crate) fn chain_key_owner(chain: &str) -> &str {
    if chain == "platform" {
        PLATFORM_KEY_OWNER
    } else {
        chain
    }
}

impl crate::Services {
    /// The data key of `chain`'s actor names, created the first time for the platform chain.
    pub(crate) async fn chain_key(&self, chain: &str) -> Result<DataKey, ServiceError> {
        let owner = chain_key_owner(chain);
        if owner == PLATFORM_KEY_OWNER {
            return self.ensure_key(owner).await;
        }
        Ok(self.keyring.key(owner).await?)
    }

    /// A data key of the platform's own (not an account's or an organization's), created the
    /// first time it is needed.
    pub(crate) async fn ensure_key(&self, owner: &str) -> Result<DataKey, ServiceError> {
        match self.keyring.key(owner).await {
            Err(KeyringError::NoKey(_)) => {
                match self.keyring.create_key(owner, 0).await {
                    Ok(key) => Ok(key),
                    // Another node created it first.
                    Err(KeyringError::Store(StoreError::Conflict { .. })) => {
                        Ok(self.keyring.key(owner).await?)
                    }
                    Err(error) => Err(error.into()),
                }
            }
            other => Ok(other?),
        }
    }

    /// The actor's name as it is now, in plaintext, read inside `tx`.
    pub(crate) async fn actor_name(
        &self,
        tx: &mut dyn StoreTx,
        kind: ActorKind,
        id: Option<&str>,
    ) -> Result<Option<String>, ServiceError> {
        let Some(id) = id else {
            return Ok(None);
        };
        let stored = tx.actor_name_as_stored(kind.as_str(), id).await?;
        self.open_actor_name(kind, id, stored.as_deref()).await
    }

    /// The actor's name in plaintext from its stored form (an account's is sealed under the
    /// account's key).
    async fn open_actor_name(
        &self,
        kind: ActorKind,
        id: &str,
        stored: Option<&str>,
    ) -> Result<Option<String>, ServiceError> {
        let Some(stored) = stored else {
            return Ok(None);
        };
        if kind != ActorKind::Account {
            return Ok(Some(stored.to_owned()));
        }
        let Some(account) = AccountId::parse(id) else {
            return Ok(None);
        };
        match self.keyring.key(account.as_str()).await {
            Ok(key) => Ok(Some(key.open_string(ACCOUNT_NAME_FIELD, stored)?)),
            // The account's key is gone: its name is no longer known to anyone.
            Err(KeyringError::NoKey(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Appends `draft` to its chain inside `tx`.
    pub(crate) async fn record(
        &self,
        tx: &mut dyn StoreTx,
        context: &RequestContext,
        draft: AuditDraft<'_>,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let chain = chain_name(draft.org);
        let name = match (draft.actor_name_as_stored, draft.actor_id) {
            (Some(stored), Some(id)) => self.open_actor_name(draft.actor_kind, id, stored).await?,
            _ => {
                self.actor_name(tx, draft.actor_kind, draft.actor_id)
                    .await?
            }
        };
        let key = self.chain_key(&chain).await?;
        let details = jcs::canonical(&draft.details)
            .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("audit details: {error}")))?;
        let position = tx.advance_audit_chain(&chain, 1).await?;
        let event = PendingEvent {
            org_id: draft.org.map(|org| org.as_str().to_owned()),
            actor_type: draft.actor_kind.as_str().to_owned(),
            actor_id: draft.actor_id.map(str::to_owned),
            action: draft.action.to_owned(),
            target_type: draft.target_type.map(str::to_owned),
            target_id: draft.target_id.map(str::to_owned),
            outcome: draft.outcome.as_str().to_owned(),
            context: context.clone(),
            details,
        };
        let row = chained_row(
            chain,
            position,
            event,
            name.as_deref(),
            &mut SealedNames::new(&key),
            now,
        )?;
        tx.insert_audit_events(std::slice::from_ref(&row)).await?;
        Ok(())
    }

    /// Records the use case's event and commits its transaction: the common last step.
    pub(crate) async fn record_and_commit(
        &self,
        mut tx: Box<dyn StoreTx>,
        context: &RequestContext,
        draft: AuditDraft<'_>,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        self.record(tx.as_mut(), context, draft, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// An event with everything but its place in the chain.
#[derive(Debug, Clone)]
pub(crate) struct PendingEvent {
    pub org_id: Option<String>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub context: RequestContext,
    /// Canonical JSON text of the details object.
    pub details: String,
}

/// Actor names sealed under one chain's key for the events of one commit. Consecutive events
/// of one actor share the sealed name: the actor's ID is stored in the clear beside it, so
/// the sharing tells nothing new, and a batch of an app's events is sealed once on writing
/// and opened once on verifying (`audit_verify` keeps the last name it opened).
pub(crate) struct SealedNames<'k> {
    key: &'k DataKey,
    /// The last name sealed, and its sealed form.
    last: Option<(String, String)>,
}

impl<'k> SealedNames<'k> {
    pub(crate) fn new(key: &'k DataKey) -> SealedNames<'k> {
        SealedNames { key, last: None }
    }

    fn seal(&mut self, name: &str) -> Result<String, ServiceError> {
        if let Some((plain, sealed)) = &self.last
            && plain == name
        {
            return Ok(sealed.clone());
        }
        let sealed = self.key.seal(ACTOR_NAME_FIELD, name.as_bytes())?;
        self.last = Some((name.to_owned(), sealed.clone()));
        Ok(sealed)
    }
}

/// Places `event` at `position` of `chain`, seals the actor's name and computes the hash.
pub(crate) fn chained_row(
    chain: String,
    position: ChainPosition,
    event: PendingEvent,
    actor_name: Option<&str>,
    names: &mut SealedNames<'_>,
    now: Timestamp,
) -> Result<AuditEventRow, ServiceError> {
    let actor_name_sealed = actor_name.map(|name| names.seal(name)).transpose()?;
    let mut row = AuditEventRow {
        id: AuditEventId::from_random(&id_random()?),
        chain,
        seq: position.seq,
        org_id: event.org_id,
        actor_type: event.actor_type,
        actor_id: event.actor_id,
        actor_name_sealed,
        action: event.action,
        target_type: event.target_type,
        target_id: event.target_id,
        outcome: event.outcome,
        ip: event.context.ip,
        user_agent: event.context.user_agent,
        request_id: event.context.request_id,
        occurred_at: now,
        details: event.details,
        prev_hash: position.prev_hash,
        hash: String::new(),
    };
    let mut buffer = String::with_capacity(512);
    row.hash = event_hash(&row, actor_name, &mut buffer);
    Ok(row)
}

/// An event's hashed fields, borrowed: from a stored row (with its actor's name opened) or
/// from a line of an export. Writing and hashing go through this one view, so the store, the
/// export and both verifiers agree on the canonical form by construction.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    pub action: &'a str,
    pub actor_id: Option<&'a str>,
    /// Present only when known.
    pub actor_name: Option<&'a str>,
    pub actor_type: &'a str,
    pub chain: &'a str,
    /// The canonical JSON text of the details object.
    pub details: &'a str,
    pub id: &'a str,
    pub ip: Option<&'a str>,
    pub org_id: Option<&'a str>,
    pub outcome: &'a str,
    pub prev_hash: &'a str,
    pub request_id: Option<&'a str>,
    pub seq: i64,
    pub target_id: Option<&'a str>,
    pub target_type: Option<&'a str>,
    /// RFC 3339, as exported.
    pub time: &'a str,
    pub user_agent: Option<&'a str>,
}

impl<'a> EventFields<'a> {
    /// The fields of a stored row; `time` is the row's time as RFC 3339.
    pub fn of_row(row: &'a AuditEventRow, actor_name: Option<&'a str>, time: &'a str) -> Self {
        EventFields {
            action: &row.action,
            actor_id: row.actor_id.as_deref(),
            actor_name,
            actor_type: &row.actor_type,
            chain: &row.chain,
            details: &row.details,
            id: row.id.as_str(),
            ip: row.ip.as_deref(),
            org_id: row.org_id.as_deref(),
            outcome: &row.outcome,
            prev_hash: &row.prev_hash,
            request_id: row.request_id.as_deref(),
            seq: row.seq,
            target_id: row.target_id.as_deref(),
            target_type: row.target_type.as_deref(),
            time,
            user_agent: row.user_agent.as_deref(),
        }
    }

    /// Appends the event in its canonical form: with `hash`, the exported object; without,
    /// the text that is hashed. Returns where the `,"hash":...` member went in `out` (empty
    /// without `hash`): cutting it out leaves exactly the hashed text, since `hash` is one
    /// member in the middle of a canonical object.
    pub fn write(&self, out: &mut String, hash: Option<&str>) -> Range<usize> {
        out.push_str("{\"action\":");
        jcs::write_string(out, self.action);
        out.push_str(",\"actor\":{\"id\":");
        jcs::write_optional(out, self.actor_id);
        if let Some(name) = self.actor_name {
            out.push_str(",\"name\":");
            jcs::write_string(out, name);
        }
        out.push_str(",\"type\":");
        jcs::write_string(out, self.actor_type);
        out.push_str("},\"chain\":");
        jcs::write_string(out, self.chain);
        out.push_str(",\"details\":");
        out.push_str(self.details);
        let hash_from = out.len();
        if let Some(hash) = hash {
            out.push_str(",\"hash\":");
            jcs::write_string(out, hash);
        }
        let hash_member = hash_from..out.len();
        out.push_str(",\"id\":");
        jcs::write_string(out, self.id);
        out.push_str(",\"ip\":");
        jcs::write_optional(out, self.ip);
        out.push_str(",\"org_id\":");
        jcs::write_optional(out, self.org_id);
        out.push_str(",\"outcome\":");
        jcs::write_string(out, self.outcome);
        out.push_str(",\"prev_hash\":");
        jcs::write_string(out, self.prev_hash);
        out.push_str(",\"request_id\":");
        jcs::write_optional(out, self.request_id);
        let _ = write!(out, ",\"seq\":{}", self.seq);
        out.push_str(",\"target\":{\"id\":");
        jcs::write_optional(out, self.target_id);
        out.push_str(",\"type\":");
        jcs::write_optional(out, self.target_type);
        out.push_str("},\"time\":");
        jcs::write_string(out, self.time);
        out.push_str(",\"user_agent\":");
        jcs::write_optional(out, self.user_agent);
        out.push('}');
        hash_member
    }

    /// The event's hash as 64 lowercase hex digits, using `buffer` for the canonical text.
    pub fn hash_hex(&self, buffer: &mut String) -> [u8; 64] {
        buffer.clear();
        self.write(buffer, None);
        digest_hex(self.prev_hash, &[buffer.as_bytes()])
    }
}

/// Writes the event in its canonical form: the exported object. With `hash`, the exported
/// line; without, the text that is hashed. The actor's `name` is present only when known.
pub fn write_event(out: &mut String, row: &AuditEventRow, actor_name: Option<&str>, hash: bool) {
    let mut time = String::with_capacity(24);
    row.occurred_at.write_rfc3339(&mut time);
    EventFields::of_row(row, actor_name, &time).write(out, hash.then_some(row.hash.as_str()));
}

/// `hex(SHA-256(prev_hash + "\n" + JCS(event without hash)))`, using `buffer` for the text.
pub fn event_hash(row: &AuditEventRow, actor_name: Option<&str>, buffer: &mut String) -> String {
    let mut time = String::with_capacity(24);
    row.occurred_at.write_rfc3339(&mut time);
    let hex = EventFields::of_row(row, actor_name, &time).hash_hex(buffer);
    // Hex digits are ASCII.
    String::from_utf8_lossy(&hex).into_owned()
}

/// `hex(SHA-256(prev_hash + "\n" + canonical))`.
pub fn hash_of(prev_hash: &str, canonical: &str) -> String {
    String::from_utf8_lossy(&digest_hex(prev_hash, &[canonical.as_bytes()])).into_owned()
}

/// `hex(SHA-256(prev_hash + "\n" + parts...))` on the stack: the canonical text may come in
/// pieces (an export line with its `hash` member cut out).
pub(crate) fn digest_hex(prev_hash: &str, parts: &[&[u8]]) -> [u8; 64] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    for part in parts {
        hasher.update(part);
    }
    let mut hex = [0u8; 64];
    // 32 bytes always fit 64 hex digits.
    let _ = hex::encode_to_slice(hasher.finalize(), &mut hex);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of `docs/audit-events.md`, so the document and the code agree.
    #[test]
    fn hashes_the_documented_example() {
        let account = "acc_dqnkylczb7fgsd7d5r2flcli6a";
        let row = AuditEventRow {
            id: AuditEventId::from_stored(String::from("evt_swtfqt6cjwttmdjb7xk5zc5bah")),
            chain: String::from("platform"),
            seq: 1,
            org_id: None,
            actor_type: String::from("account"),
            actor_id: Some(account.to_owned()),
            actor_name_sealed: None,
            action: String::from("account.created"),
            target_type: Some(String::from("account")),
            target_id: Some(account.to_owned()),
            outcome: String::from("success"),
            ip: Some(String::from("127.0.0.1")),
            user_agent: Some(String::from("curl/8.5.0")),
            request_id: Some(String::from("3f2c8e1a-5b7d-4c9e-8a61-0d4f2b9c7e15")),
            occurred_at: Timestamp::parse_rfc3339("2026-11-22T03:04:05.123Z").unwrap(),
            details: String::from("{}"),
            prev_hash: mamori_core::audit::GENESIS_HASH.to_owned(),
            hash: String::new(),
        };
        let mut buffer = String::new();
        assert_eq!(
            event_hash(&row, Some("Ada Lovelace"), &mut buffer),
            "a2c27a310b386942693e52154747ea2f9d82c562d050c669888a61e1e8224bbb"
        );
        assert!(buffer.starts_with(
            "{\"action\":\"account.created\",\"actor\":{\"id\":\"acc_dqnkylczb7fgsd7d5r2flcli6a\",\"name\":\"Ada Lovelace\",\"type\":\"account\"}"
        ));
    }
}
