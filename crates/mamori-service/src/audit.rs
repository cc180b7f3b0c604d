//! Recording audit events, chained per organization (and one platform chain) with SHA-256:
//! `hash = hex(SHA-256(prev_hash + "\n" + canonical JSON of the event without "hash"))`.
//!
//! The canonical form is RFC 8785 (JCS) for the values used here: objects with keys sorted,
//! strings, integers and null, no insignificant white space.

use crate::ServiceError;
use crate::tokens::id_random;
use mamori_core::audit::{ActorKind, Outcome, chain_name};
use mamori_core::{AuditEventId, OrgId, Timestamp};
use mamori_store::{AuditEventRow, StoreTx};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

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
        }
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

/// Appends `draft` to its chain inside `tx`.
pub(crate) async fn record(
    tx: &mut dyn StoreTx,
    context: &RequestContext,
    draft: AuditDraft<'_>,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let chain = chain_name(draft.org);
    let position = tx.advance_audit_chain(&chain).await?;
    let mut row = AuditEventRow {
        id: AuditEventId::from_random(&id_random()?),
        chain,
        seq: position.seq,
        org_id: draft.org.map(|org| org.as_str().to_owned()),
        actor_type: draft.actor_kind.as_str().to_owned(),
        actor_id: draft.actor_id.map(str::to_owned),
        action: draft.action.to_owned(),
        target_type: draft.target_type.map(str::to_owned),
        target_id: draft.target_id.map(str::to_owned),
        outcome: draft.outcome.as_str().to_owned(),
        ip: context.ip.clone(),
        user_agent: context.user_agent.clone(),
        request_id: context.request_id.clone(),
        occurred_at: now,
        details: draft.details.to_string(),
        prev_hash: position.prev_hash,
        hash: String::new(),
    };
    row.hash = event_hash(&row)?;
    tx.insert_audit_event(&row).await?;
    Ok(())
}

/// Records the use case's event and commits its transaction: the common last step.
pub(crate) async fn record_and_commit(
    mut tx: Box<dyn StoreTx>,
    context: &RequestContext,
    draft: AuditDraft<'_>,
    now: Timestamp,
) -> Result<(), ServiceError> {
    record(tx.as_mut(), context, draft, now).await?;
    tx.commit().await?;
    Ok(())
}

/// The event as hashed and exported: every stored field but `hash`.
pub fn event_json(row: &AuditEventRow) -> Result<Value, ServiceError> {
    let details: Value = serde_json::from_str(&row.details)
        .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("audit details: {error}")))?;
    Ok(json!({
        "id": row.id.as_str(),
        "chain": row.chain,
        "seq": row.seq,
        "org_id": row.org_id,
        "actor": { "type": row.actor_type, "id": row.actor_id },
        "action": row.action,
        "target": { "type": row.target_type, "id": row.target_id },
        "outcome": row.outcome,
        "ip": row.ip,
        "user_agent": row.user_agent,
        "request_id": row.request_id,
        "time": row.occurred_at.to_rfc3339(),
        "details": details,
        "prev_hash": row.prev_hash,
    }))
}

/// `hex(SHA-256(prev_hash + "\n" + JCS(event without hash)))`.
pub fn event_hash(row: &AuditEventRow) -> Result<String, ServiceError> {
    // serde_json's map keeps keys sorted (no `preserve_order`), writes no white space, and
    // the values here are strings, integers and null: that output is the JCS form.
    let canonical = event_json(row)?.to_string();
    let mut hasher = Sha256::new();
    hasher.update(row.prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    Ok(hex::encode(hasher.finalize()))
}
