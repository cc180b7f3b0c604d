//! Verifying audit chains: in the store (`mamori audit verify`) and in an exported JSON Lines
//! file, offline, with only the public key (`mamori audit verify-export`).
//!
//! A chain is good when its events run from its anchor (or genesis) with `seq` rising by one,
//! each `prev_hash` is the previous event's `hash`, each `hash` recomputes from the event, the
//! last event is the chain's head, and every checkpoint's signature holds and names the hash
//! the chain has at its `seq`. The first place where any of this fails is reported by `seq`.

use crate::audit::{ACTOR_NAME_FIELD, EventFields, digest_hex};
use crate::audit_trail::{anchor_message, checkpoint_message, write_checkpoint_fields};
use crate::{ServiceError, Services, jcs};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use ed25519_dalek::{Signature, VerifyingKey};
use mamori_core::Timestamp;
use mamori_core::audit::GENESIS_HASH;
use mamori_keyring::DataKey;
use mamori_store::{AuditScanPage, ChainHeadRow, CheckpointRow};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::BufRead;
use std::ops::Range;
use std::sync::Arc;

/// Threads recomputing one page's hashes at most.
const MAX_HASHING_THREADS: usize = 8;
/// Hashes kept for checkpoints that come after the events they name (in an export, right
/// after; in the store, they are walked in `seq` order).
const RECENT_HASHES: usize = 4_096;

/// What went wrong first in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub seq: i64,
    pub reason: String,
}

/// The verdict on one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerdict {
    pub chain: String,
    /// Events checked.
    pub events: u64,
    /// Checkpoints whose signature and hash were checked.
    pub checkpoints: u64,
    /// The first event after the anchor, and the last.
    pub first_seq: i64,
    pub last_seq: i64,
    pub first_break: Option<Break>,
}

impl ChainVerdict {
    pub fn is_good(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Walks one chain event by event; shared by the store check and the export check. It
/// allocates nothing per event: the last hash is kept in place, recent ones in a ring.
struct ChainWalk {
    expected_seq: i64,
    prev_hash: String,
    anchor_seq: i64,
    anchor_hash: String,
    /// The hashes of the last events walked, the first at `recent_from`.
    recent: VecDeque<[u8; 64]>,
    recent_from: i64,
    verdict: ChainVerdict,
}

impl ChainWalk {
    fn new(chain: &str, anchor_seq: i64, anchor_hash: &str) -> ChainWalk {
        ChainWalk {
            expected_seq: anchor_seq + 1,
            prev_hash: anchor_hash.to_owned(),
            anchor_seq,
            anchor_hash: anchor_hash.to_owned(),
            recent: VecDeque::with_capacity(RECENT_HASHES),
            recent_from: anchor_seq + 1,
            verdict: ChainVerdict {
                chain: chain.to_owned(),
                events: 0,
                checkpoints: 0,
                first_seq: anchor_seq + 1,
                last_seq: anchor_seq,
                first_break: None,
            },
        }
    }

    fn broken(&self) -> bool {
        self.verdict.first_break.is_some()
    }

    fn fail(&mut self, seq: i64, reason: impl Into<String>) {
        if self.verdict.first_break.is_none() {
            self.verdict.first_break = Some(Break {
                seq,
                reason: reason.into(),
            });
        }
    }

    /// The hash the chain has at `seq`, when still known.
    fn hash_at(&self, seq: i64) -> Option<&[u8]> {
        if seq == self.anchor_seq {
            return Some(self.anchor_hash.as_bytes());
        }
        let index = usize::try_from(seq.checked_sub(self.recent_from)?).ok()?;
        self.recent.get(index).map(|hash| &hash[..])
    }

    /// One event: its stated `seq`, `prev_hash` and `hash`, and the hash recomputed from it.
    fn event(&mut self, seq: i64, prev_hash: &str, hash: &str, recomputed: &[u8; 64]) {
        if self.broken() {
            return;
        }
        if seq != self.expected_seq {
            let expected = self.expected_seq;
            self.fail(
                expected,
                format!("event {expected} is missing or out of order (found {seq})"),
            );
            return;
        }
        if prev_hash != self.prev_hash {
            self.fail(seq, "prev_hash is not the hash of the event before");
            return;
        }
        if hash.as_bytes() != recomputed {
            self.fail(seq, "hash does not match the event's content");
            return;
        }
        self.verdict.events += 1;
        self.verdict.last_seq = seq;
        self.prev_hash.clear();
        self.prev_hash.push_str(hash);
        self.expected_seq += 1;
        if self.recent.len() == RECENT_HASHES {
            self.recent.pop_front();
            self.recent_from += 1;
        }
        self.recent.push_back(*recomputed);
    }

    /// Checks `checkpoint`'s key and signature over `message`, failing at its `seq` if not.
    fn signed(
        &mut self,
        checkpoint: &CheckpointRow,
        message: &str,
        key: &VerifyingKey,
        key_id: &str,
    ) -> bool {
        if checkpoint.key_id != key_id {
            self.fail(
                checkpoint.seq,
                format!("checkpoint signed by unknown key {}", checkpoint.key_id),
            );
            return false;
        }
        let signed = signature_holds(checkpoint, message, key);
        if !signed {
            self.fail(checkpoint.seq, "checkpoint signature does not verify");
        }
        signed
    }

    /// A checkpoint, after the events up to its `seq` were walked.
    fn checkpoint(&mut self, checkpoint: &CheckpointRow, key: &VerifyingKey, key_id: &str) {
        if self.broken() {
            return;
        }
        let seq = checkpoint.seq;
        let message = checkpoint_message(
            &checkpoint.chain,
            seq,
            &checkpoint.hash,
            checkpoint.signed_at,
        );
        if !self.signed(checkpoint, &message, key, key_id) {
            return;
        }
        match self.hash_at(seq) {
            Some(hash) if hash == checkpoint.hash.as_bytes() => self.verdict.checkpoints += 1,
            Some(_) => self.fail(seq, "checkpoint names another hash than the chain has"),
            None if seq > self.verdict.last_seq => {
                self.fail(seq, "checkpoint names an event the chain does not have");
            }
            // Before the anchor (purged) or no longer remembered: nothing to compare.
            None => {}
        }
    }

    /// The anchor of a purged chain (`seq` > 0) must be covered by the signature retention
    /// made when it purged: without it, events were removed by someone else.
    fn anchor_checkpoint(
        &mut self,
        checkpoint: Option<&CheckpointRow>,
        key: &VerifyingKey,
        key_id: &str,
    ) {
        let seq = self.anchor_seq;
        if seq == 0 {
            if self.anchor_hash != GENESIS_HASH {
                self.fail(
                    0,
                    "a chain that starts at seq 0 starts with the genesis hash",
                );
            }
            return;
        }
        let missing = format!(
            "events up to seq {seq} are gone, but no purge by retention was signed for seq              {seq}: the chain was truncated"
        );
        let Some(checkpoint) = checkpoint.filter(|c| c.seq == seq) else {
            self.fail(seq, missing);
            return;
        };
        let message = anchor_message(
            &checkpoint.chain,
            seq,
            &checkpoint.hash,
            checkpoint.signed_at,
        );
        if checkpoint.chain != self.verdict.chain
            || checkpoint.hash != self.anchor_hash
            || checkpoint.key_id != key_id
            || !signature_holds(checkpoint, &message, key)
        {
            self.fail(seq, missing);
            return;
        }
        self.verdict.checkpoints += 1;
    }
}

/// Whether `checkpoint`'s signature is `key`'s over `message`.
fn signature_holds(checkpoint: &CheckpointRow, message: &str, key: &VerifyingKey) -> bool {
    BASE64URL
        .decode(&checkpoint.signature)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .is_some_and(|signature| key.verify_strict(message.as_bytes(), &signature).is_ok())
}

/// Recomputes the hashes of `rows` of `page`, opening each actor name with `data_key`: `None`
/// for an event whose name does not open. Events do not depend on each other for this (each
/// states its own `prev_hash`; the walk checks the links), so parts of a page are recomputed
/// on several threads at once.
fn recompute(
    page: &AuditScanPage,
    rows: Range<usize>,
    data_key: Option<&DataKey>,
) -> Result<Vec<Option<[u8; 64]>>, ServiceError> {
    let mut opener = data_key.and_then(|key| key.opener(ACTOR_NAME_FIELD).ok());
    let mut buffer = String::with_capacity(2048);
    let mut time = String::with_capacity(32);
    // The last sealed name opened and its plaintext: a batch of one actor's events may share
    // it. The plaintext is kept in one buffer, not allocated per event.
    let mut last_sealed: Option<&str> = None;
    let mut last_name = String::with_capacity(256);
    let mut hashes = Vec::with_capacity(rows.len());
    for index in rows {
        let row = page.event(index)?;
        let name = match row.actor_name_sealed {
            None => None,
            Some(sealed) if last_sealed == Some(sealed) => Some(last_name.as_str()),
            Some(sealed) => match opener.as_mut().map(|opener| opener.open_str(sealed)) {
                Some(Ok(name)) => {
                    last_name.clear();
                    last_name.push_str(name);
                    last_sealed = Some(sealed);
                    Some(last_name.as_str())
                }
                _ => {
                    hashes.push(None);
                    continue;
                }
            },
        };
        time.clear();
        row.occurred_at.write_rfc3339(&mut time);
        let fields = EventFields {
            action: row.action,
            actor_id: row.actor_id,
            actor_name: name,
            actor_type: row.actor_type,
            chain: row.chain,
            details: row.details,
            id: row.id,
            ip: row.ip,
            org_id: row.org_id,
            outcome: row.outcome,
            prev_hash: row.prev_hash,
            request_id: row.request_id,
            seq: row.seq,
            target_id: row.target_id,
            target_type: row.target_type,
            time: &time,
            user_agent: row.user_agent,
        };
        hashes.push(Some(fields.hash_hex(&mut buffer)));
    }
    Ok(hashes)
}

/// Threads that recompute one page's hashes together.
fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_HASHING_THREADS))
}

/// Checks one page of stored events against `walk`, with the checkpoints due before each: the
/// hashes are recomputed on `threads` threads, then the links are walked in `seq` order.
fn check_page(
    walk: &mut ChainWalk,
    page: &AuditScanPage,
    data_key: Option<&DataKey>,
    checkpoints: &mut std::iter::Peekable<std::vec::IntoIter<CheckpointRow>>,
    key: &VerifyingKey,
    key_id: &str,
    threads: usize,
) -> Result<(), ServiceError> {
    let rows = page.len();
    let part = rows.div_ceil(threads.max(1)).max(1);
    let hashes = std::thread::scope(|scope| {
        let others: Vec<_> = (part..rows)
            .step_by(part)
            .map(|from| {
                scope.spawn(move || recompute(page, from..(from + part).min(rows), data_key))
            })
            .collect();
        let mut hashes = recompute(page, 0..part.min(rows), data_key)?;
        for other in others {
            let more = other.join().map_err(|_| {
                ServiceError::Unexpected(anyhow::anyhow!("a hashing thread panicked"))
            })??;
            hashes.extend(more);
        }
        Ok::<_, ServiceError>(hashes)
    })?;
    for (index, hash) in hashes.iter().enumerate() {
        let row = page.event(index)?;
        while let Some(checkpoint) = checkpoints.next_if(|c| c.seq < row.seq) {
            walk.checkpoint(&checkpoint, key, key_id);
        }
        match hash {
            Some(hash) => walk.event(row.seq, row.prev_hash, row.hash, hash),
            None => walk.fail(row.seq, "actor name cannot be opened"),
        }
        if walk.broken() {
            break;
        }
    }
    Ok(())
}

impl Services {
    /// Verifies one chain in the store, or every chain.
    pub async fn verify_audit(
        &self,
        chain: Option<&str>,
    ) -> Result<Vec<ChainVerdict>, ServiceError> {
        let signer = self.audit_signer().await?;
        let key = signer.verifying_key();
        let key_id = signer.key_id().to_owned();
        let heads: Vec<ChainHeadRow> = match chain {
            Some(chain) => self.store.audit_chain(chain).await?.into_iter().collect(),
            None => {
                let mut heads = Vec::new();
                loop {
                    let after = heads.last().map(|head: &ChainHeadRow| head.chain.clone());
                    let page = self.store.audit_chains(after.as_deref(), 1000).await?;
                    let done = page.len() < 1000;
                    heads.extend(page);
                    if done {
                        break heads;
                    }
                }
            }
        };
        let mut verdicts = Vec::with_capacity(heads.len());
        for head in heads {
            verdicts.push(self.verify_chain(&head, &key, &key_id).await?);
        }
        Ok(verdicts)
    }

    async fn verify_chain(
        &self,
        head: &ChainHeadRow,
        key: &VerifyingKey,
        key_id: &str,
    ) -> Result<ChainVerdict, ServiceError> {
        // A chain with nothing after its anchor (cut by retention, or emptied by its
        // organization's purge, whose key is destroyed) has no actor name to open: its key is
        // not needed, and an event found after such a head fails to open.
        let data_key = if head.last_seq > head.anchor_seq {
            Some(self.chain_key(&head.chain).await?)
        } else {
            self.chain_key(&head.chain).await.ok()
        };
        let mut walk = ChainWalk::new(&head.chain, head.anchor_seq, &head.anchor_hash);
        let all = self
            .store
            .audit_checkpoints(&head.chain, 0, u32::MAX)
            .await?;
        let (anchor, checkpoints): (Vec<CheckpointRow>, Vec<CheckpointRow>) = all
            .into_iter()
            .partition(|checkpoint| head.anchor_seq > 0 && checkpoint.seq == head.anchor_seq);
        walk.anchor_checkpoint(anchor.first(), key, key_id);
        let mut checkpoints = checkpoints.into_iter().peekable();
        // The store reads ahead on a task of its own while a page is checked here.
        let mut scan = self
            .store
            .audit_scan(&head.chain, head.anchor_seq + 1..=head.last_seq)
            .await?;
        let key = *key;
        let key_id = key_id.to_owned();
        let data_key = Arc::new(data_key);
        let threads = hashing_threads();
        while !walk.broken() {
            let Some(page) = scan.next_page().await else {
                break;
            };
            let page = page?;
            let data_key = data_key.clone();
            let key_id = key_id.clone();
            let checked = tokio::task::spawn_blocking(move || {
                let checked = check_page(
                    &mut walk,
                    &page,
                    data_key.as_ref().as_ref(),
                    &mut checkpoints,
                    &key,
                    &key_id,
                    threads,
                );
                (walk, checkpoints, checked)
            })
            .await
            .map_err(|error| ServiceError::Unexpected(error.into()))?;
            (walk, checkpoints) = (checked.0, checked.1);
            checked.2?;
        }
        drop(scan);
        for checkpoint in checkpoints {
            walk.checkpoint(&checkpoint, &key, &key_id);
        }
        if !walk.broken() {
            if walk.verdict.last_seq < head.last_seq {
                let missing = walk.verdict.last_seq + 1;
                walk.fail(missing, format!("event {missing} is missing"));
            } else if walk.prev_hash != head.last_hash {
                walk.fail(head.last_seq, "the chain's head names another hash");
            }
        }
        Ok(walk.verdict)
    }
}

/// What an export file held and whether it verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportVerdict {
    pub chain: Option<ChainVerdict>,
    /// Set when the file itself cannot be read as an export (bad JSON, unknown line).
    pub malformed: Option<String>,
    /// Whether the last event is covered by a signed checkpoint.
    pub complete: bool,
}

impl ExportVerdict {
    pub fn is_good(&self) -> bool {
        self.malformed.is_none()
            && self.complete
            && self.chain.as_ref().is_some_and(ChainVerdict::is_good)
    }
}

/// A string of an export line: borrowed from the line unless it holds escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

fn text<'a>(value: &'a Option<Text<'_>>) -> Option<&'a str> {
    value.as_ref().map(|text| &*text.0)
}

/// One line of an export, any of its three kinds, read without building a tree. Which kind
/// it is, and that it holds nothing else, is settled by writing the kind back in canonical
/// form and comparing bytes with the line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportLine<'a> {
    #[serde(borrow, default)]
    anchor: Option<AnchorLine<'a>>,
    #[serde(borrow, default)]
    checkpoint: Option<CheckpointLine<'a>>,
    #[serde(borrow, default)]
    action: Option<Text<'a>>,
    #[serde(borrow, default)]
    actor: Option<ActorLine<'a>>,
    #[serde(borrow, default)]
    chain: Option<Text<'a>>,
    #[serde(borrow, default)]
    details: Option<&'a RawValue>,
    #[serde(borrow, default)]
    hash: Option<Text<'a>>,
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    ip: Option<Text<'a>>,
    #[serde(borrow, default)]
    org_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    outcome: Option<Text<'a>>,
    #[serde(borrow, default)]
    prev_hash: Option<Text<'a>>,
    #[serde(borrow, default)]
    request_id: Option<Text<'a>>,
    #[serde(default)]
    seq: Option<i64>,
    #[serde(borrow, default)]
    target: Option<TargetLine<'a>>,
    #[serde(borrow, default)]
    time: Option<Text<'a>>,
    #[serde(borrow, default)]
    user_agent: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActorLine<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
    #[serde(borrow, rename = "type")]
    kind: Text<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetLine<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorLine<'a> {
    #[serde(borrow)]
    chain: Text<'a>,
    #[serde(borrow)]
    hash: Text<'a>,
    seq: i64,
    /// The signature retention made when it purged up to the anchor; absent at seq 0.
    #[serde(borrow, default)]
    key_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    signature: Option<Text<'a>>,
    #[serde(borrow, default)]
    time: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine<'a> {
    #[serde(borrow)]
    chain: Text<'a>,
    #[serde(borrow)]
    hash: Text<'a>,
    #[serde(borrow)]
    key_id: Text<'a>,
    seq: i64,
    #[serde(borrow)]
    signature: Text<'a>,
    #[serde(borrow)]
    time: Text<'a>,
}

impl CheckpointLine<'_> {
    fn row(&self) -> Option<CheckpointRow> {
        Some(CheckpointRow {
            chain: self.chain.0.clone().into_owned(),
            seq: self.seq,
            hash: self.hash.0.clone().into_owned(),
            signed_at: Timestamp::parse_rfc3339(&self.time.0)?,
            key_id: self.key_id.0.clone().into_owned(),
            signature: self.signature.0.clone().into_owned(),
        })
    }
}

fn safe(seq: i64) -> bool {
    (-jcs::MAX_SAFE_INTEGER..=jcs::MAX_SAFE_INTEGER).contains(&seq)
}

/// Verifies a JSON Lines export with the checkpoint key alone: every line must be in canonical
/// form (so no member can be given twice), every event's hash is recomputed from its own
/// fields, then the links and every checkpoint are checked. A purged chain's anchor must carry
/// retention's signature. The export is complete when its last event is covered by a
/// checkpoint.
///
/// Each line is read once into typed fields borrowed from it, written back once in canonical
/// form into a reused buffer and compared byte for byte with the line; the hash is taken over
/// that buffer with the `hash` member cut out. Nothing is allocated per event.
pub fn verify_export(
    mut reader: impl BufRead,
    key: &VerifyingKey,
) -> Result<ExportVerdict, std::io::Error> {
    let key_id = crate::audit_trail::key_id_of(key);
    let mut walk: Option<ChainWalk> = None;
    let mut covered_to = i64::MIN;
    let malformed = |line: usize, why: &str| ExportVerdict {
        chain: None,
        malformed: Some(format!("line {line}: {why}")),
        complete: false,
    };
    let mut raw = String::with_capacity(4096);
    let mut canonical = String::with_capacity(4096);
    let mut number = 0;
    loop {
        raw.clear();
        if reader.read_line(&mut raw)? == 0 {
            break;
        }
        number += 1;
        let line = raw.trim_end();
        if line.is_empty() {
            continue;
        }
        let parsed: ExportLine<'_> = match serde_json::from_str(line) {
            Ok(parsed) => parsed,
            Err(_) => {
                let object = matches!(
                    serde_json::from_str::<&RawValue>(line),
                    Ok(value) if value.get().starts_with('{')
                );
                return Ok(malformed(
                    number,
                    if object {
                        "not in canonical form (RFC 8785), or not an export line"
                    } else {
                        "not a JSON object"
                    },
                ));
            }
        };
        canonical.clear();
        if let Some(anchor) = &parsed.anchor {
            let signed = match (&anchor.key_id, &anchor.signature, &anchor.time) {
                (Some(key_id), Some(signature), Some(time)) => {
                    Some((&*key_id.0, &*signature.0, &*time.0))
                }
                (None, None, None) => None,
                _ => return Ok(malformed(number, "anchor with part of a signature")),
            };
            crate::audit_trail::write_anchor_line(
                &mut canonical,
                &anchor.chain.0,
                &anchor.hash.0,
                anchor.seq,
                signed,
            );
            if canonical.trim_end() != line || !safe(anchor.seq) {
                return Ok(malformed(number, "not in canonical form (RFC 8785)"));
            }
            if walk.is_some() {
                return Ok(malformed(number, "anchor after the first event"));
            }
            let mut anchored = ChainWalk::new(&anchor.chain.0, anchor.seq, &anchor.hash.0);
            let checkpoint = match signed {
                Some((key_id, signature, time)) => match Timestamp::parse_rfc3339(time) {
                    Some(signed_at) => Some(CheckpointRow {
                        chain: anchor.chain.0.clone().into_owned(),
                        seq: anchor.seq,
                        hash: anchor.hash.0.clone().into_owned(),
                        signed_at,
                        key_id: key_id.to_owned(),
                        signature: signature.to_owned(),
                    }),
                    None => return Ok(malformed(number, "anchor time is not RFC 3339")),
                },
                None => None,
            };
            anchored.anchor_checkpoint(checkpoint.as_ref(), key, &key_id);
            walk = Some(anchored);
            continue;
        }
        if let Some(checkpoint) = &parsed.checkpoint {
            write_checkpoint_fields(
                &mut canonical,
                &checkpoint.chain.0,
                &checkpoint.hash.0,
                &checkpoint.key_id.0,
                checkpoint.seq,
                &checkpoint.signature.0,
                &checkpoint.time.0,
            );
            if canonical.trim_end() != line || !safe(checkpoint.seq) {
                return Ok(malformed(number, "not in canonical form (RFC 8785)"));
            }
            let Some(checkpoint) = checkpoint.row() else {
                return Ok(malformed(
                    number,
                    "checkpoint needs chain, seq, hash, time, key_id and signature",
                ));
            };
            let Some(walk) = walk.as_mut() else {
                return Ok(malformed(number, "checkpoint before the anchor"));
            };
            if checkpoint.chain != walk.verdict.chain {
                walk.fail(checkpoint.seq, "checkpoint of another chain");
            }
            walk.checkpoint(&checkpoint, key, &key_id);
            if !walk.broken() {
                covered_to = covered_to.max(checkpoint.seq);
            }
            continue;
        }
        let (
            Some(action),
            Some(actor),
            Some(chain),
            Some(details),
            Some(hash),
            Some(id),
            Some(outcome),
            Some(prev_hash),
            Some(seq),
            Some(target),
            Some(time),
        ) = (
            text(&parsed.action),
            &parsed.actor,
            text(&parsed.chain),
            parsed.details,
            text(&parsed.hash),
            text(&parsed.id),
            text(&parsed.outcome),
            text(&parsed.prev_hash),
            parsed.seq,
            &parsed.target,
            text(&parsed.time),
        )
        else {
            return Ok(malformed(
                number,
                "event needs action, actor, chain, details, hash, id, outcome, prev_hash, \
                 seq, target and time",
            ));
        };
        let fields = EventFields {
            action,
            actor_id: text(&actor.id),
            actor_name: text(&actor.name),
            actor_type: &actor.kind.0,
            chain,
            details: details.get(),
            id,
            ip: text(&parsed.ip),
            org_id: text(&parsed.org_id),
            outcome,
            prev_hash,
            request_id: text(&parsed.request_id),
            seq,
            target_id: text(&target.id),
            target_type: text(&target.kind),
            time,
            user_agent: text(&parsed.user_agent),
        };
        let hash_member = fields.write(&mut canonical, Some(hash));
        if canonical != line
            || !safe(seq)
            || !fields.details.starts_with('{')
            || !jcs::is_canonical(fields.details)
        {
            return Ok(malformed(number, "not in canonical form (RFC 8785)"));
        }
        let walk = walk.get_or_insert_with(|| ChainWalk::new(chain, 0, GENESIS_HASH));
        if chain != walk.verdict.chain {
            walk.fail(seq, "event of another chain");
            continue;
        }
        let bytes = canonical.as_bytes();
        let recomputed = digest_hex(
            prev_hash,
            &[&bytes[..hash_member.start], &bytes[hash_member.end..]],
        );
        walk.event(seq, prev_hash, hash, &recomputed);
    }
    Ok(match walk {
        Some(walk) => ExportVerdict {
            complete: walk.verdict.last_seq <= covered_to,
            chain: Some(walk.verdict),
            malformed: None,
        },
        None => malformed(0, "no events"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{event_hash, write_event};
    use crate::audit_trail::write_checkpoint_line;
    use ed25519_dalek::{Signer as _, SigningKey};
    use mamori_core::AuditEventId;
    use mamori_store::AuditEventRow;

    const CHAIN: &str = "org_test";

    fn signing_key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn signed(message: &str, seq: i64, hash: &str, time: Timestamp) -> CheckpointRow {
        let key = signing_key();
        CheckpointRow {
            chain: CHAIN.to_owned(),
            seq,
            hash: hash.to_owned(),
            signed_at: time,
            key_id: crate::audit_trail::key_id_of(&key.verifying_key()),
            signature: BASE64URL.encode(key.sign(message.as_bytes()).to_bytes()),
        }
    }

    fn event(seq: i64, prev_hash: &str, details: &str) -> AuditEventRow {
        let mut row = AuditEventRow {
            id: AuditEventId::from_stored(format!("evt_{seq}")),
            chain: CHAIN.to_owned(),
            seq,
            org_id: Some(CHAIN.to_owned()),
            actor_type: String::from("app"),
            actor_id: Some(String::from("app_1")),
            actor_name_sealed: None,
            action: String::from("docs.viewed"),
            target_type: Some(String::from("doc")),
            target_id: Some(format!("doc \"{seq}\"\n")),
            outcome: String::from("success"),
            ip: None,
            user_agent: Some(String::from("agent/1.0")),
            request_id: None,
            occurred_at: Timestamp::from_millis(1_700_000_000_000 + seq),
            details: details.to_owned(),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        row.hash = event_hash(&row, Some("Docs \u{1F600}"), &mut String::new());
        row
    }

    /// An export of events `anchor_seq + 1 ..= last` with a checkpoint of the last, after an
    /// anchor line that `anchor` writes.
    fn export(anchor_seq: i64, anchor_hash: &str, last: i64, details: &str) -> (String, String) {
        let mut lines = String::new();
        let mut prev = anchor_hash.to_owned();
        for seq in anchor_seq + 1..=last {
            let row = event(seq, &prev, details);
            write_event(&mut lines, &row, Some("Docs \u{1F600}"), true);
            lines.push('\n');
            prev = row.hash;
        }
        let time = Timestamp::from_millis(1_800_000_000_000);
        let message = checkpoint_message(CHAIN, last, &prev, time);
        write_checkpoint_line(&mut lines, &signed(&message, last, &prev, time));
        (lines, prev)
    }

    fn verify(text: &str) -> ExportVerdict {
        verify_export(text.as_bytes(), &signing_key().verifying_key()).unwrap()
    }

    #[test]
    fn a_canonical_export_verifies_and_any_other_spelling_is_refused() {
        let (events, _) = export(0, GENESIS_HASH, 3, "{\"a\":[1,\"\\u0001\"],\"b\":{}}");
        let verdict = verify(&events);
        assert!(verdict.is_good(), "{verdict:?}");
        assert_eq!(verdict.chain.as_ref().map(|c| c.events), Some(3));

        let first = events.lines().next().unwrap();
        let respelled = [
            first.replacen("\"seq\":1", "\"seq\": 1", 1),
            first.replacen("{\"action\"", "{\"seq\":1,\"action\"", 1),
            first.replacen("\"ip\":null,", "", 1),
            first.replacen("\"seq\":1", "\"seq\":1.0", 1),
            first.replacen("\"details\":{", "\"details\":{\"z\":0,", 1),
            first.replacen("}", "},\"extra\":1", 1),
            first.replacen("\"agent/1.0\"", "\"agent\\/1.0\"", 1),
        ];
        for line in respelled {
            let text = events.replacen(first, &line, 1);
            let verdict = verify(&text);
            assert!(!verdict.is_good(), "{line}");
            assert!(verdict.malformed.is_some(), "{line}: {verdict:?}");
        }
        // A changed value in canonical form is found by its hash, at its seq.
        let text = events.replacen("docs.viewed", "docs.deleted", 1);
        let verdict = verify(&text);
        let broken = verdict.chain.and_then(|c| c.first_break).unwrap();
        assert_eq!(broken.seq, 1);
    }

    #[test]
    fn details_hashed_as_written_must_still_be_canonical() {
        // The hash matches these details as they are, but they are not in canonical form.
        let (events, _) = export(0, GENESIS_HASH, 2, "{\"b\":1,\"a\":2}");
        let verdict = verify(&events);
        assert!(verdict.malformed.is_some(), "{verdict:?}");
    }

    #[test]
    fn an_anchor_after_seq_0_needs_the_purge_signature() {
        let anchor_hash = "ab".repeat(32);
        let time = Timestamp::from_millis(1_750_000_000_000);
        let (events, _) = export(5, &anchor_hash, 8, "{}");
        let line = |checkpoint: Option<&CheckpointRow>| {
            let mut out = String::new();
            let time = time.to_rfc3339();
            crate::audit_trail::write_anchor_line(
                &mut out,
                CHAIN,
                &anchor_hash,
                5,
                checkpoint.map(|c| (c.key_id.as_str(), c.signature.as_str(), time.as_str())),
            );
            out
        };
        let purge = signed(
            &anchor_message(CHAIN, 5, &anchor_hash, time),
            5,
            &anchor_hash,
            time,
        );
        let verdict = verify(&format!("{}{events}", line(Some(&purge))));
        assert!(verdict.is_good(), "{verdict:?}");

        let ordinary = signed(
            &checkpoint_message(CHAIN, 5, &anchor_hash, time),
            5,
            &anchor_hash,
            time,
        );
        for anchor in [line(None), line(Some(&ordinary))] {
            let verdict = verify(&format!("{anchor}{events}"));
            let broken = verdict.chain.and_then(|c| c.first_break).unwrap();
            assert_eq!(broken.seq, 5, "{anchor}");
        }
        // The genesis anchor is unsigned, but must be the genesis hash.
        let (events, _) = export(0, &anchor_hash, 1, "{}");
        let mut anchor = String::new();
        crate::audit_trail::write_anchor_line(&mut anchor, CHAIN, &anchor_hash, 0, None);
        let verdict = verify(&format!("{anchor}{events}"));
        assert!(!verdict.is_good(), "{verdict:?}");
    }
}
