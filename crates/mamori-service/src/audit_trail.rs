//! Reading an organization's audit trail (AUD-1): listing, streamed export, signed
//! checkpoints and the audit-log viewer right.
//!
//! Administrators read the trail; so do members an administrator granted the viewer right,
//! themselves or through a team. Checkpoints are Ed25519 signatures over
//! `JCS({chain, hash, seq, time})`, made with a key derived from a data key in the keyring.

use crate::audit::{ACTOR_NAME_FIELD, RequestContext, write_event};
use crate::orgs::{OrgAccess, Page, org_event};
use crate::{ServiceError, Services, jcs};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use mamori_core::audit::action;
use mamori_core::org::OrgRole;
use mamori_core::{AccountId, TeamId, Timestamp};
use mamori_keyring::DataKey;
use mamori_store::{AuditEventRow, AuditFilter, AuditViewerRow, CheckpointRow, SeqOrder, SeqRange};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The keyring owner of the data key the signing key is derived from.
pub const SIGNING_KEY_OWNER: &str = "audit:signing";
const SIGNING_PURPOSE: &str = "mamori/v1/audit-checkpoint-ed25519";
/// Events per page when exporting or verifying.
pub(crate) const SCAN_BATCH: u32 = 2_000;

/// The Ed25519 key that signs checkpoints, and its short ID.
pub struct AuditSigner {
    key: SigningKey,
    key_id: String,
}

impl AuditSigner {
    pub(crate) fn from_data_key(data_key: &DataKey) -> AuditSigner {
        let seed = data_key.derive_secret(SIGNING_PURPOSE);
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id_of(&key.verifying_key());
        AuditSigner { key, key_id }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs that `chain` had `hash` at `seq` at `time`.
    pub fn sign(&self, chain: &str, seq: i64, hash: &str, time: Timestamp) -> CheckpointRow {
        self.sign_message(
            &checkpoint_message(chain, seq, hash, time),
            chain,
            seq,
            hash,
            time,
        )
    }

    /// Signs that retention purged `chain` up to `seq`, whose hash `hash` becomes the anchor.
    pub fn sign_anchor(&self, chain: &str, seq: i64, hash: &str, time: Timestamp) -> CheckpointRow {
        self.sign_message(
            &anchor_message(chain, seq, hash, time),
            chain,
            seq,
            hash,
            time,
        )
    }

    fn sign_message(
        &self,
        message: &str,
        chain: &str,
        seq: i64,
        hash: &str,
        time: Timestamp,
    ) -> CheckpointRow {
        let signature = self.key.sign(message.as_bytes());
        CheckpointRow {
            chain: chain.to_owned(),
            seq,
            hash: hash.to_owned(),
            signed_at: time,
            key_id: self.key_id.clone(),
            signature: BASE64URL.encode(signature.to_bytes()),
        }
    }
}

/// The first 16 hex digits of the SHA-256 of the raw public key.
pub fn key_id_of(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// What a checkpoint signs: `JCS({"chain", "hash", "seq", "time"})`.
pub fn checkpoint_message(chain: &str, seq: i64, hash: &str, time: Timestamp) -> String {
    signed_message(false, chain, seq, hash, time)
}

/// What retention signs when it purges a chain up to `seq`, whose hash becomes the chain's
/// anchor: `JCS({"anchor": true, "chain", "hash", "seq", "time"})`. It differs from a
/// checkpoint's message, so an ordinary checkpoint cannot pass for an authorised purge.
pub fn anchor_message(chain: &str, seq: i64, hash: &str, time: Timestamp) -> String {
    signed_message(true, chain, seq, hash, time)
}

fn signed_message(anchor: bool, chain: &str, seq: i64, hash: &str, time: Timestamp) -> String {
    let mut out = String::with_capacity(176);
    out.push_str(if anchor {
        "{\"anchor\":true,\"chain\":"
    } else {
        "{\"chain\":"
    });
    jcs::write_string(&mut out, chain);
    out.push_str(",\"hash\":");
    jcs::write_string(&mut out, hash);
    out.push_str(&format!(",\"seq\":{seq},\"time\":"));
    jcs::write_string(&mut out, &time.to_rfc3339());
    out.push('}');
    out
}

/// The public half of the checkpoint key, as served at `/api/v1/audit/public-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyView {
    pub key_id: String,
    /// Base64url (no padding) of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// The same key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub public_key_pem: String,
}

/// SubjectPublicKeyInfo DER prefix of an Ed25519 key (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Reads a public key given as base64url (or standard base64) of the raw 32 bytes, or as PEM.
pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    let text = text.trim();
    let bytes = if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        let body: String = text
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .ok()?;
        der.strip_prefix(&ED25519_SPKI_PREFIX[..])?.to_vec()
    } else {
        BASE64URL
            .decode(text.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(text))
            .ok()?
    };
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// One event as a reader sees it: the stored row with the actor's name opened.
#[derive(Debug, Clone)]
pub struct AuditEventView {
    pub row: AuditEventRow,
    pub actor_name: Option<String>,
}

impl AuditEventView {
    /// The details object.
    pub fn details(&self) -> Value {
        serde_json::from_str(&self.row.details).unwrap_or(Value::Null)
    }

    /// The event as one line of the JSON Lines export: exactly the hashed fields and `hash`.
    pub fn export_line(&self, out: &mut String) {
        write_event(out, &self.row, self.actor_name.as_deref(), true);
        out.push('\n');
    }
}

/// A reader's filters, as given.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub outcome: Option<String>,
}

impl AuditQuery {
    fn filter(&self) -> Result<AuditFilter, ServiceError> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err(ServiceError::field("to", "must be after from"));
        }
        if let Some(action) = &self.action
            && (action.is_empty()
                || action.len() > 128
                || !action
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)))
        {
            return Err(ServiceError::field(
                "action",
                "must be 1 to 128 characters of a-z, 0-9, '.', '_' and '-'",
            ));
        }
        for (field, value) in [("actor", &self.actor), ("target", &self.target)] {
            if let Some(value) = value
                && (value.is_empty() || value.len() > 256)
            {
                return Err(ServiceError::field(field, "must be 1 to 256 characters"));
            }
        }
        if let Some(outcome) = &self.outcome
            && outcome != "success"
            && outcome != "failure"
        {
            return Err(ServiceError::field("outcome", "must be success or failure"));
        }
        Ok(AuditFilter {
            from: self.from,
            to: self.to,
            action_prefix: self.action.clone(),
            actor_id: self.actor.clone(),
            target_id: self.target.clone(),
            outcome: self.outcome.clone(),
        })
    }

    fn is_unfiltered(&self) -> bool {
        self.from.is_none()
            && self.to.is_none()
            && self.action.is_none()
            && self.actor.is_none()
            && self.target.is_none()
            && self.outcome.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    JsonLines,
    Csv,
}

/// An export in progress: the edge pulls chunks from it with [`Services::audit_export_chunk`]
/// until it returns `None`, so memory stays constant whatever the trail's length.
pub struct AuditExport {
    chain: String,
    filter: AuditFilter,
    format: ExportFormat,
    key: DataKey,
    /// The last `seq` written; the export ends at `end_seq`, the head when it began.
    after_seq: i64,
    end_seq: i64,
    end_hash: String,
    /// The anchor, with retention's signature when the chain was purged.
    anchor: Option<(i64, String, Option<CheckpointRow>)>,
    /// Checkpoints go along only with an unfiltered JSON Lines export.
    with_checkpoints: bool,
    began_at: Timestamp,
    started: bool,
    finished: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditViewerView {
    pub subject_type: String,
    pub subject_id: String,
    pub granted_at: Timestamp,
}

/// CSV columns of the export, in order.
pub const CSV_HEADER: &str = "id,chain,seq,org_id,actor_type,actor_id,actor_name,action,\
target_type,target_id,outcome,ip,user_agent,request_id,time,details,prev_hash,hash\n";

impl Services {
    /// The checkpoint signer, made once from its data key (created the first time).
    pub async fn audit_signer(&self) -> Result<&AuditSigner, ServiceError> {
        self.audit_signer
            .get_or_try_init(|| async {
                let data_key = self.ensure_key(SIGNING_KEY_OWNER).await?;
                Ok::<_, ServiceError>(AuditSigner::from_data_key(&data_key))
            })
            .await
    }

    pub async fn audit_public_key(&self) -> Result<PublicKeyView, ServiceError> {
        let signer = self.audit_signer().await?;
        let public = signer.verifying_key();
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(public.as_bytes());
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        Ok(PublicKeyView {
            key_id: signer.key_id().to_owned(),
            public_key: BASE64URL.encode(public.as_bytes()),
            public_key_pem: format!(
                "-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"
            ),
        })
    }

    /// Administrators, and holders of the viewer right, may read; others get `Forbidden`.
    async fn check_audit_reader(&self, access: &OrgAccess) -> Result<(), ServiceError> {
        if access.membership.role == OrgRole::Admin
            || self
                .store
                .is_audit_viewer(&access.org_id, &access.account_id)
                .await?
        {
            Ok(())
        } else {
            Err(ServiceError::forbidden(
                "reading the audit log needs an administrator or the audit-log viewer right",
            ))
        }
    }

    pub(crate) fn view_event(
        &self,
        key: &DataKey,
        row: AuditEventRow,
    ) -> Result<AuditEventView, ServiceError> {
        let actor_name = row
            .actor_name_sealed
            .as_deref()
            .map(|sealed| key.open_string(ACTOR_NAME_FIELD, sealed))
            .transpose()?;
        Ok(AuditEventView { row, actor_name })
    }

    /// One page of the organization's trail, newest first.
    pub async fn audit_events(
        &self,
        access: &OrgAccess,
        query: &AuditQuery,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<AuditEventView>, ServiceError> {
        self.check_audit_reader(access).await?;
        let filter = query.filter()?;
        let before = cursor
            .map(|text| {
                text.parse::<i64>()
                    .ok()
                    .filter(|seq| *seq > 0)
                    .ok_or_else(|| ServiceError::field("cursor", "is not a valid cursor"))
            })
            .transpose()?;
        let chain = access.org_id.as_str();
        let rows = self
            .store
            .audit_events_page(
                chain,
                &filter,
                SeqRange {
                    after: None,
                    before,
                },
                SeqOrder::NewestFirst,
                limit + 1,
            )
            .await?;
        let key = self.chain_key(chain).await?;
        Page::from_rows(
            rows,
            limit,
            |row| row.seq.to_string(),
            |row| self.view_event(&key, row),
        )
    }

    /// Starts an export: records who exported, then fixes its end at the chain's head.
    pub async fn begin_audit_export(
        &self,
        access: &OrgAccess,
        query: &AuditQuery,
        format: ExportFormat,
        context: &RequestContext,
        now: Timestamp,
    ) -> Result<AuditExport, ServiceError> {
        self.check_audit_reader(access).await?;
        let filter = query.filter()?;
        let format_name = match format {
            ExportFormat::JsonLines => "jsonl",
            ExportFormat::Csv => "csv",
        };
        let tx = self.store.begin().await?;
        self.record_and_commit(
            tx,
            context,
            org_event(access, action::ORG_AUDIT_EXPORTED)
                .target("org", access.org_id.as_str())
                .details(serde_json::json!({ "format": format_name })),
            now,
        )
        .await?;
        let chain = access.org_id.as_str().to_owned();
        let head = self
            .store
            .audit_chain(&chain)
            .await?
            .ok_or_else(|| ServiceError::Unexpected(anyhow::anyhow!("audit chain missing")))?;
        let key = self.chain_key(&chain).await?;
        let anchor_checkpoint = if head.anchor_seq > 0 {
            self.store
                .audit_checkpoints(&chain, head.anchor_seq, 1)
                .await?
                .into_iter()
                .find(|checkpoint| checkpoint.seq == head.anchor_seq)
        } else {
            None
        };
        Ok(AuditExport {
            chain,
            filter,
            format,
            key,
            after_seq: head.anchor_seq,
            end_seq: head.last_seq,
            end_hash: head.last_hash,
            anchor: Some((head.anchor_seq, head.anchor_hash, anchor_checkpoint)),
            with_checkpoints: format == ExportFormat::JsonLines && query.is_unfiltered(),
            began_at: now,
            started: false,
            finished: false,
        })
    }

    /// The next piece of an export's text, or `None` when it is complete.
    pub async fn audit_export_chunk(
        &self,
        export: &mut AuditExport,
    ) -> Result<Option<String>, ServiceError> {
        if export.finished {
            return Ok(None);
        }
        let mut out = String::with_capacity(256 * 1024);
        if !export.started {
            export.started = true;
            match export.format {
                ExportFormat::Csv => out.push_str(CSV_HEADER),
                ExportFormat::JsonLines if export.with_checkpoints => {
                    if let Some((seq, hash, signed)) = export.anchor.take() {
                        let time = signed.as_ref().map(|c| c.signed_at.to_rfc3339());
                        let signed = signed
                            .as_ref()
                            .zip(time.as_deref())
                            .map(|(c, time)| (c.key_id.as_str(), c.signature.as_str(), time));
                        write_anchor_line(&mut out, &export.chain, &hash, seq, signed);
                    }
                }
                ExportFormat::JsonLines => {}
            }
        }
        let rows = self
            .store
            .audit_events_page(
                &export.chain,
                &export.filter,
                SeqRange {
                    after: Some(export.after_seq),
                    before: Some(export.end_seq + 1),
                },
                SeqOrder::OldestFirst,
                SCAN_BATCH,
            )
            .await?;
        let Some(last) = rows.last() else {
            export.finished = true;
            if export.with_checkpoints && export.end_seq > 0 {
                // A checkpoint of the head as it was when the export began, signed now: the
                // proof that nothing after the last stored checkpoint was left out.
                let signer = self.audit_signer().await?;
                let checkpoint = signer.sign(
                    &export.chain,
                    export.end_seq,
                    &export.end_hash,
                    export.began_at,
                );
                write_checkpoint_line(&mut out, &checkpoint);
            }
            return Ok((!out.is_empty()).then_some(out));
        };
        let first_seq = rows.first().map_or(last.seq, |row| row.seq);
        let last_seq = last.seq;
        let checkpoints = if export.with_checkpoints {
            self.store
                .audit_checkpoints(&export.chain, first_seq, SCAN_BATCH)
                .await?
                .into_iter()
                .filter(|checkpoint| checkpoint.seq <= last_seq)
                .collect()
        } else {
            Vec::new()
        };
        let mut checkpoints = checkpoints.into_iter().peekable();
        for row in rows {
            export.after_seq = row.seq;
            let view = self.view_event(&export.key, row)?;
            match export.format {
                ExportFormat::JsonLines => view.export_line(&mut out),
                ExportFormat::Csv => write_csv_row(&mut out, &view),
            }
            while let Some(checkpoint) = checkpoints.next_if(|c| c.seq <= view.row.seq) {
                write_checkpoint_line(&mut out, &checkpoint);
            }
        }
        Ok(Some(out))
    }

    /// The organization's checkpoints, oldest first.
    pub async fn audit_checkpoints(
        &self,
        access: &OrgAccess,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<CheckpointRow>, ServiceError> {
        self.check_audit_reader(access).await?;
        let after = cursor
            .map(|text| {
                text.parse::<i64>()
                    .ok()
                    .filter(|seq| *seq >= 0)
                    .ok_or_else(|| ServiceError::field("cursor", "is not a valid cursor"))
            })
            .transpose()?
            .unwrap_or(-1);
        // Retention's signature of the anchor is not a checkpoint of the chain as it stands
        // (it signs another message): it goes out as the export's anchor line, not here.
        let anchor_seq = self
            .store
            .audit_chain(access.org_id.as_str())
            .await?
            .map_or(0, |head| head.anchor_seq);
        let after = if anchor_seq > 0 {
            after.max(anchor_seq)
        } else {
            after
        };
        let rows = self
            .store
            .audit_checkpoints(access.org_id.as_str(), after + 1, limit + 1)
            .await?;
        Page::from_rows(rows, limit, |row| row.seq.to_string(), Ok)
    }

    /// Signs the head of every chain that moved `every_events` events, or that moved at all
    /// and was last signed before `stale_before`. Idempotent and safe on several nodes: a
    /// checkpoint already stored for the same head is kept. Returns how many it signed.
    pub async fn run_audit_checkpoints_once(
        &self,
        every_events: i64,
        stale_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64, ServiceError> {
        let signer = self.audit_signer().await?;
        let mut signed = 0;
        loop {
            let due = self
                .store
                .chains_due_for_checkpoint(every_events, stale_before, 500)
                .await?;
            if due.is_empty() {
                return Ok(signed);
            }
            // One transaction per chain: each holds one chain head's row lock at a time, so
            // signing can never close a cycle with a use case that appends to two chains
            // (an organization's and the platform's) in its own order.
            for head in &due {
                let mut tx = self.store.begin().await?;
                tx.insert_audit_checkpoint(&signer.sign(
                    &head.chain,
                    head.last_seq,
                    &head.last_hash,
                    now,
                ))
                .await?;
                tx.commit().await?;
                signed += 1;
            }
            if due.len() < 500 {
                return Ok(signed);
            }
        }
    }

    pub async fn audit_viewers(
        &self,
        access: &OrgAccess,
    ) -> Result<Vec<AuditViewerView>, ServiceError> {
        require_admin(access)?;
        Ok(self
            .store
            .audit_viewers(&access.org_id)
            .await?
            .into_iter()
            .map(|row| AuditViewerView {
                subject_type: row.subject_type,
                subject_id: row.subject_id,
                granted_at: row.granted_at,
            })
            .collect())
    }

    /// Grants the viewer right to a member (`acc_...`) or a team (`team_...`) of the
    /// organization; returns whether it was new.
    pub async fn grant_audit_viewer(
        &self,
        access: &OrgAccess,
        subject: &str,
        context: &RequestContext,
        now: Timestamp,
    ) -> Result<bool, ServiceError> {
        let (subject_type, subject_id) = viewer_subject(subject)?;
        // A team is looked up before the transaction (no pooled read inside one); deleting a
        // team removes its grants under the same organization lock.
        let team = match TeamId::parse(&subject_id) {
            Some(team) => self.store.team(&access.org_id, &team).await?.is_some(),
            None => false,
        };
        let (mut tx, actor) = self.begin_in_org(access).await?;
        require_admin(&actor)?;
        let exists = match (AccountId::parse(&subject_id), team) {
            (Some(account), _) => tx
                .membership_in_tx(&access.org_id, &account)
                .await?
                .is_some(),
            (None, team) => team,
        };
        if !exists {
            return Err(ServiceError::NotFound);
        }
        let granted = tx
            .grant_audit_viewer(&AuditViewerRow {
                org_id: access.org_id.clone(),
                subject_type: subject_type.to_owned(),
                subject_id: subject_id.clone(),
                granted_at: now,
            })
            .await?;
        if !granted {
            return Ok(false);
        }
        self.record_and_commit(
            tx,
            context,
            org_event(&actor, action::ORG_AUDIT_VIEWER_GRANTED).target(subject_type, &subject_id),
            now,
        )
        .await?;
        Ok(true)
    }

    pub async fn revoke_audit_viewer(
        &self,
        access: &OrgAccess,
        subject: &str,
        context: &RequestContext,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let (subject_type, subject_id) = viewer_subject(subject)?;
        let (mut tx, actor) = self.begin_in_org(access).await?;
        require_admin(&actor)?;
        if !tx
            .revoke_audit_viewer(&access.org_id, subject_type, &subject_id)
            .await?
        {
            return Err(ServiceError::NotFound);
        }
        self.record_and_commit(
            tx,
            context,
            org_event(&actor, action::ORG_AUDIT_VIEWER_REVOKED).target(subject_type, &subject_id),
            now,
        )
        .await
    }
}

fn require_admin(access: &OrgAccess) -> Result<(), ServiceError> {
    if access.membership.role == OrgRole::Admin {
        Ok(())
    } else {
        Err(ServiceError::forbidden(
            "only administrators manage the audit-log viewer right",
        ))
    }
}

/// `acc_...` is an account, `team_...` a team.
fn viewer_subject(subject: &str) -> Result<(&'static str, String), ServiceError> {
    if AccountId::parse(subject).is_some() {
        Ok(("account", subject.to_owned()))
    } else if TeamId::parse(subject).is_some() {
        Ok(("team", subject.to_owned()))
    } else {
        Err(ServiceError::NotFound)
    }
}

pub(crate) fn write_checkpoint_line(out: &mut String, checkpoint: &CheckpointRow) {
    write_checkpoint_fields(
        out,
        &checkpoint.chain,
        &checkpoint.hash,
        &checkpoint.key_id,
        checkpoint.seq,
        &checkpoint.signature,
        &checkpoint.signed_at.to_rfc3339(),
    );
}

/// `{"checkpoint":{"chain","hash","key_id","seq","signature","time"}}` and a newline.
pub(crate) fn write_checkpoint_fields(
    out: &mut String,
    chain: &str,
    hash: &str,
    key_id: &str,
    seq: i64,
    signature: &str,
    time: &str,
) {
    out.push_str("{\"checkpoint\":{\"chain\":");
    jcs::write_string(out, chain);
    out.push_str(",\"hash\":");
    jcs::write_string(out, hash);
    out.push_str(",\"key_id\":");
    jcs::write_string(out, key_id);
    out.push_str(&format!(",\"seq\":{seq},\"signature\":"));
    jcs::write_string(out, signature);
    out.push_str(",\"time\":");
    jcs::write_string(out, time);
    out.push_str("}}\n");
}

/// The export's first line: `{"anchor":{"chain","hash","seq"}}`, and for a purged chain
/// retention's signature of its anchor as well (`key_id`, `signature`, `time`).
pub(crate) fn write_anchor_line(
    out: &mut String,
    chain: &str,
    hash: &str,
    seq: i64,
    signed: Option<(&str, &str, &str)>,
) {
    out.push_str("{\"anchor\":{\"chain\":");
    jcs::write_string(out, chain);
    out.push_str(",\"hash\":");
    jcs::write_string(out, hash);
    if let Some((key_id, _, _)) = signed {
        out.push_str(",\"key_id\":");
        jcs::write_string(out, key_id);
    }
    out.push_str(&format!(",\"seq\":{seq}"));
    if let Some((_, signature, time)) = signed {
        out.push_str(",\"signature\":");
        jcs::write_string(out, signature);
        out.push_str(",\"time\":");
        jcs::write_string(out, time);
    }
    out.push_str("}}\n");
}

/// One CSV cell, quoted when needed; a cell a spreadsheet would read as a formula gets a
/// leading `'`.
fn write_csv_cell(out: &mut String, value: Option<&str>) {
    let value = value.unwrap_or("");
    let guarded = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if guarded || value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if guarded {
            out.push('\'');
        }
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn write_csv_row(out: &mut String, view: &AuditEventView) {
    let row = &view.row;
    let seq = row.seq.to_string();
    let time = row.occurred_at.to_rfc3339();
    let cells: [Option<&str>; 18] = [
        Some(row.id.as_str()),
        Some(&row.chain),
        Some(&seq),
        row.org_id.as_deref(),
        Some(&row.actor_type),
        row.actor_id.as_deref(),
        view.actor_name.as_deref(),
        Some(&row.action),
        row.target_type.as_deref(),
        row.target_id.as_deref(),
        Some(&row.outcome),
        row.ip.as_deref(),
        row.user_agent.as_deref(),
        row.request_id.as_deref(),
        Some(&time),
        Some(&row.details),
        Some(&row.prev_hash),
        Some(&row.hash),
    ];
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_csv_cell(out, cell);
    }
    out.push('\n');
}
