//! Verifying audit chains: in the store (`mamori audit verify`) and in an exported JSON Lines
//! file, offline, with only the public key (`mamori audit verify-export`).
//!
//! A chain is good when its events run from its anchor (or genesis) with `seq` rising by one,
//! each `prev_hash` is the previous event's `hash`, each `hash` recomputes from the event, the
//! last event is the chain's head, and every checkpoint's signature holds and names the hash
//! the chain has at its `seq`. The first place where any of this fails is reported by `seq`.

use crate::audit::{ACTOR_NAME_FIELD, event_hash, hash_of};
use crate::audit_trail::{SCAN_BATCH, checkpoint_message};
use crate::{ServiceError, Services, jcs};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use ed25519_dalek::{Signature, VerifyingKey};
use mamori_core::Timestamp;
use mamori_core::audit::GENESIS_HASH;
use mamori_store::{ChainHeadRow, CheckpointRow};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::BufRead;

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

/// Walks one chain event by event; shared by the store check and the export check.
struct ChainWalk {
    expected_seq: i64,
    prev_hash: String,
    /// Hashes at the `seq`s that checkpoints name, to compare when both are known.
    hashes_at: BTreeMap<i64, String>,
    verdict: ChainVerdict,
}

impl ChainWalk {
    fn new(chain: &str, anchor_seq: i64, anchor_hash: &str) -> ChainWalk {
        let mut hashes_at = BTreeMap::new();
        hashes_at.insert(anchor_seq, anchor_hash.to_owned());
        ChainWalk {
            expected_seq: anchor_seq + 1,
            prev_hash: anchor_hash.to_owned(),
            hashes_at,
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

    /// One event: its stated `seq`, `prev_hash` and `hash`, and the hash recomputed from it.
    fn event(&mut self, seq: i64, prev_hash: &str, hash: &str, recomputed: &str) {
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
        if hash != recomputed {
            self.fail(seq, "hash does not match the event's content");
            return;
        }
        self.verdict.events += 1;
        self.verdict.last_seq = seq;
        self.prev_hash = hash.to_owned();
        self.expected_seq += 1;
        self.hashes_at.insert(seq, hash.to_owned());
        // Keep only what a later checkpoint can still ask about: the recent hashes.
        if self.hashes_at.len() > 4 * SCAN_BATCH as usize {
            let keep_from = seq - 2 * i64::from(SCAN_BATCH);
            self.hashes_at = self.hashes_at.split_off(&keep_from);
        }
    }

    /// A checkpoint, after the events up to its `seq` were walked.
    fn checkpoint(&mut self, checkpoint: &CheckpointRow, key: &VerifyingKey, key_id: &str) {
        if self.broken() {
            return;
        }
        let seq = checkpoint.seq;
        if checkpoint.key_id != key_id {
            self.fail(
                seq,
                format!("checkpoint signed by unknown key {}", checkpoint.key_id),
            );
            return;
        }
        let message = checkpoint_message(
            &checkpoint.chain,
            seq,
            &checkpoint.hash,
            checkpoint.signed_at,
        );
        let signature = BASE64URL
            .decode(&checkpoint.signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok());
        let signed = signature
            .is_some_and(|signature| key.verify_strict(message.as_bytes(), &signature).is_ok());
        if !signed {
            self.fail(seq, "checkpoint signature does not verify");
            return;
        }
        match self.hashes_at.get(&seq) {
            Some(hash) if *hash == checkpoint.hash => self.verdict.checkpoints += 1,
            Some(_) => self.fail(seq, "checkpoint names another hash than the chain has"),
            None if seq > self.verdict.last_seq => {
                self.fail(seq, "checkpoint names an event the chain does not have");
            }
            // Before the anchor (purged) or no longer remembered: nothing to compare.
            None => {}
        }
    }
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
        let data_key = self.chain_key(&head.chain).await?;
        let mut walk = ChainWalk::new(&head.chain, head.anchor_seq, &head.anchor_hash);
        let mut checkpoints = self
            .store
            .audit_checkpoints(&head.chain, 0, u32::MAX)
            .await?
            .into_iter()
            .peekable();
        let mut buffer = String::with_capacity(1024);
        let mut from_seq = head.anchor_seq + 1;
        loop {
            let rows = self
                .store
                .audit_events(&head.chain, from_seq, SCAN_BATCH)
                .await?;
            let Some(last) = rows.last() else { break };
            from_seq = last.seq + 1;
            for row in &rows {
                while let Some(checkpoint) = checkpoints.next_if(|c| c.seq < row.seq) {
                    walk.checkpoint(&checkpoint, key, key_id);
                }
                let name = match row.actor_name_sealed.as_deref() {
                    Some(sealed) => match data_key.open_string(ACTOR_NAME_FIELD, sealed) {
                        Ok(name) => Some(name),
                        Err(_) => {
                            walk.fail(row.seq, "actor name cannot be opened");
                            None
                        }
                    },
                    None => None,
                };
                let recomputed = event_hash(row, name.as_deref(), &mut buffer);
                walk.event(row.seq, &row.prev_hash, &row.hash, &recomputed);
            }
            if walk.broken() {
                break;
            }
        }
        for checkpoint in checkpoints {
            walk.checkpoint(&checkpoint, key, key_id);
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

/// Verifies a JSON Lines export with the checkpoint key alone: every line must be in canonical
/// form (so no member can be given twice), every event's hash is recomputed from its own
/// fields, then the links and every checkpoint are checked. The
/// export is complete when its last event is covered by a checkpoint.
pub fn verify_export(
    reader: impl BufRead,
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
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(&line) else {
            return Ok(malformed(number, "not a JSON object"));
        };
        // Every line is written in canonical form; anything else (a member given twice, which
        // a JSON reader may resolve either way, or a reformatted line) is refused.
        if jcs::canonical(&value).ok().as_deref() != Some(line.trim_end()) {
            return Ok(malformed(number, "not in canonical form (RFC 8785)"));
        }
        let Value::Object(mut object) = value else {
            return Ok(malformed(number, "not a JSON object"));
        };
        if let Some(anchor) = object.get("anchor") {
            let (Some(chain), Some(seq), Some(hash)) = (
                anchor.get("chain").and_then(Value::as_str),
                anchor.get("seq").and_then(Value::as_i64),
                anchor.get("hash").and_then(Value::as_str),
            ) else {
                return Ok(malformed(number, "anchor needs chain, seq and hash"));
            };
            if walk.is_some() {
                return Ok(malformed(number, "anchor after the first event"));
            }
            walk = Some(ChainWalk::new(chain, seq, hash));
            continue;
        }
        if let Some(checkpoint) = object.get("checkpoint") {
            let parsed = (|| {
                Some(CheckpointRow {
                    chain: checkpoint.get("chain")?.as_str()?.to_owned(),
                    seq: checkpoint.get("seq")?.as_i64()?,
                    hash: checkpoint.get("hash")?.as_str()?.to_owned(),
                    signed_at: Timestamp::parse_rfc3339(checkpoint.get("time")?.as_str()?)?,
                    key_id: checkpoint.get("key_id")?.as_str()?.to_owned(),
                    signature: checkpoint.get("signature")?.as_str()?.to_owned(),
                })
            })();
            let Some(checkpoint) = parsed else {
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
        let Some(hash) = object
            .remove("hash")
            .and_then(|v| v.as_str().map(str::to_owned))
        else {
            return Ok(malformed(number, "event without hash"));
        };
        let (Some(seq), Some(prev_hash), Some(chain)) = (
            object.get("seq").and_then(Value::as_i64),
            object
                .get("prev_hash")
                .and_then(Value::as_str)
                .map(str::to_owned),
            object
                .get("chain")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ) else {
            return Ok(malformed(number, "event needs seq, prev_hash and chain"));
        };
        let walk = walk.get_or_insert_with(|| ChainWalk::new(&chain, 0, GENESIS_HASH));
        if chain != walk.verdict.chain {
            walk.fail(seq, "event of another chain");
            continue;
        }
        let recomputed = match jcs::canonical(&Value::Object(object)) {
            Ok(text) => hash_of(&prev_hash, &text),
            Err(_) => String::new(),
        };
        walk.event(seq, &prev_hash, &hash, &recomputed);
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
