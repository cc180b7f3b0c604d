//! A second, independent verifier of audit exports, written from the specifications rather
//! than from Mamori's code: its own SHA-256 (FIPS 180-4), its own RFC 8785 canonical JSON over
//! `serde_json::Value`, its own base64url, and Ed25519 checking with aws-lc-rs instead of the
//! server's ed25519-dalek. The tests in `audit.rs` verify what the server exports with it, so a
//! bug shared by the server's writer and its own verifier cannot hide.
//!
//! What it checks in a JSON Lines export: the anchor line comes first, and unless it is the
//! genesis it carries retention's signature of the purge that made it; every event carries
//! exactly the hashed fields plus `hash`; every `hash` recomputes as
//! `hex(SHA-256(prev_hash + "\n" + JCS(event without "hash")))`; `seq` rises by one from the
//! anchor and each `prev_hash` is the hash before it; every checkpoint is signed by the
//! published key over `JCS({chain, hash, seq, time})` and names the hash the chain has at its
//! `seq`; the file ends with a checkpoint of its last event.

use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------
// SHA-256, FIPS 180-4 section 6.2.

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// SHA-256 of `message`.
pub(crate) fn sha256(message: &[u8]) -> [u8; 32] {
    // Padding (5.1.1): a 1 bit, zeros to 448 mod 512 bits, then the length in bits as 64 bits.
    let bit_length = (message.len() as u64).wrapping_mul(8);
    let mut padded = message.to_vec();
    padded.push(0x80);
    while padded.len() % 64 != 56 {
        padded.push(0);
    }
    padded.extend_from_slice(&bit_length.to_be_bytes());

    let mut h = H0;
    for block in padded.chunks_exact(64) {
        // Message schedule (6.2.2 step 1).
        let mut w = [0u32; 64];
        for (t, word) in block.chunks_exact(4).enumerate() {
            w[t] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for t in 16..64 {
            let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
            let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16]
                .wrapping_add(s0)
                .wrapping_add(w[t - 7])
                .wrapping_add(s1);
        }
        // Compression (steps 2 to 4).
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for t in 0..64 {
            let big_s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(big_s1)
                .wrapping_add(ch)
                .wrapping_add(K[t])
                .wrapping_add(w[t]);
            let big_s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = big_s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *state = state.wrapping_add(value);
        }
    }
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(h) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// Lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

// ---------------------------------------------------------------------------------------
// RFC 8785 JSON Canonicalization Scheme, for the values an audit event may hold.

/// The canonical text of `value`, or why it has none here (a number that is not an integer
/// an IEEE 754 double holds exactly).
pub(crate) fn jcs(value: &Value) -> Result<String, String> {
    let mut out = String::new();
    write_jcs(&mut out, value)?;
    Ok(out)
}

fn write_jcs(out: &mut String, value: &Value) -> Result<(), String> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => {
            // JCS writes numbers as ECMAScript does; for integers within 2^53 that is the
            // plain decimal digits. Anything else is outside what the audit trail holds.
            const LIMIT: i64 = (1 << 53) - 1;
            match number.as_i64() {
                Some(n) if (-LIMIT..=LIMIT).contains(&n) => out.push_str(&n.to_string()),
                _ => return Err(format!("number {number} is not a safe integer")),
            }
        }
        Value::String(text) => write_jcs_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_jcs(out, item)?;
            }
            out.push(']');
        }
        Value::Object(members) => write_jcs_object(out, members)?,
    }
    Ok(())
}

fn write_jcs_object(out: &mut String, members: &Map<String, Value>) -> Result<(), String> {
    // RFC 8785 3.2.3: members sorted by their names as arrays of UTF-16 code units.
    let mut names: Vec<(Vec<u16>, &String)> = members
        .keys()
        .map(|name| (name.encode_utf16().collect(), name))
        .collect();
    names.sort();
    out.push('{');
    for (i, (_, name)) in names.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_jcs_string(out, name);
        out.push(':');
        write_jcs(out, &members[name.as_str()])?;
    }
    out.push('}');
    Ok(())
}

/// ECMAScript `JSON.stringify` of a string (ECMA-262 QuoteJSONString): the two-character
/// escapes for `"`, `\`, backspace, form feed, line feed, carriage return and tab; other code
/// points below U+0020 as `\u` and four lowercase hex digits; everything else as it is.
fn write_jcs_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let code = u32::from(c);
                out.push_str("\\u00");
                out.push(char::from(b"0123456789abcdef"[(code >> 4) as usize]));
                out.push(char::from(b"0123456789abcdef"[(code & 0xf) as usize]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------
// Base64url without padding (RFC 4648 section 5), and Ed25519 through aws-lc-rs.

/// Decodes base64url (RFC 4648 section 5) or standard base64, with or without padding.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    // Leftover bits must be zero padding bits, and a single leftover character is impossible.
    (count < 6 && bits == 0).then_some(out)
}

/// Whether `signature` is a valid Ed25519 signature of `message` by the raw 32-byte `key`.
pub(crate) fn ed25519_verifies(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, key)
        .verify(message, signature)
        .is_ok()
}

// ---------------------------------------------------------------------------------------
// The export.

/// The fields of an exported event, `hash` included; nothing more, nothing less.
const EVENT_FIELDS: [&str; 15] = [
    "action",
    "actor",
    "chain",
    "details",
    "hash",
    "id",
    "ip",
    "org_id",
    "outcome",
    "prev_hash",
    "request_id",
    "seq",
    "target",
    "time",
    "user_agent",
];

/// The first thing wrong with an export, and the `seq` it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Broken {
    pub seq: i64,
    pub reason: String,
}

/// A verified export.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub chain: String,
    pub anchor_seq: i64,
    pub anchor_hash: String,
    /// The events, parsed, in file order (with `hash`).
    pub events: Vec<Value>,
    /// The `seq`s of the checkpoints in the file, in order; the last covers the last event.
    pub checkpoint_seqs: Vec<i64>,
}

impl Verified {
    pub fn last_seq(&self) -> i64 {
        self.events
            .last()
            .and_then(|event| event["seq"].as_i64())
            .unwrap_or(self.anchor_seq)
    }
}

/// The hash an event object (without `hash`) must have after `prev_hash`.
pub(crate) fn event_hash(prev_hash: &str, event_without_hash: &Value) -> Result<String, String> {
    let canonical = jcs(event_without_hash)?;
    let mut input = Vec::with_capacity(prev_hash.len() + 1 + canonical.len());
    input.extend_from_slice(prev_hash.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(canonical.as_bytes());
    Ok(hex(&sha256(&input)))
}

/// What a checkpoint signs: `JCS({chain, hash, seq, time})`.
pub(crate) fn checkpoint_message(checkpoint: &Value) -> Result<String, String> {
    let mut signed = Map::new();
    for field in ["chain", "hash", "seq", "time"] {
        let value = checkpoint
            .get(field)
            .ok_or_else(|| format!("checkpoint without {field}"))?;
        signed.insert(field.to_owned(), value.clone());
    }
    jcs(&Value::Object(signed))
}

/// The key ID the server gives its public key: the first 16 hex digits of its SHA-256.
pub(crate) fn key_id_of(public_key: &[u8]) -> String {
    hex(&sha256(public_key))[..16].to_owned()
}

/// Checks a checkpoint object (`{chain, hash, key_id, seq, signature, time}`) against the
/// raw public key; returns its `seq` and `hash`.
pub(crate) fn check_checkpoint(
    checkpoint: &Value,
    public_key: &[u8],
) -> Result<(i64, String), String> {
    let object = checkpoint
        .as_object()
        .ok_or("checkpoint is not an object")?;
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    if fields != ["chain", "hash", "key_id", "seq", "signature", "time"] {
        return Err(format!("checkpoint has fields {fields:?}"));
    }
    let seq = checkpoint["seq"].as_i64().ok_or("checkpoint seq")?;
    let hash = checkpoint["hash"]
        .as_str()
        .ok_or("checkpoint hash")?
        .to_owned();
    if checkpoint["key_id"] != key_id_of(public_key) {
        return Err(format!(
            "checkpoint {seq} names key {}",
            checkpoint["key_id"]
        ));
    }
    let signature = checkpoint["signature"]
        .as_str()
        .and_then(|text| (!text.contains('=')).then_some(text))
        .and_then(base64_decode)
        .ok_or("checkpoint signature is not unpadded base64url")?;
    let message = checkpoint_message(checkpoint)?;
    if !ed25519_verifies(public_key, message.as_bytes(), &signature) {
        return Err(format!("checkpoint {seq}: signature does not verify"));
    }
    Ok((seq, hash))
}

/// The anchor a chain starts from: the genesis (seq 0, 64 zeros, unsigned), or, after
/// retention purged events up to `seq`, the purge signed by the published key over
/// `JCS({anchor: true, chain, hash, seq, time})`.
pub(crate) fn check_anchor(
    anchor: &Value,
    seq: i64,
    hash: &str,
    public_key: &[u8],
) -> Result<(), String> {
    let object = anchor.as_object().ok_or("anchor is not an object")?;
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    if seq == 0 {
        if fields != ["chain", "hash", "seq"] || hash != "0".repeat(64) {
            return Err(format!(
                "an anchor at seq 0 is the genesis, unsigned: {anchor}"
            ));
        }
        return Ok(());
    }
    if fields != ["chain", "hash", "key_id", "seq", "signature", "time"] {
        return Err(format!(
            "events up to seq {seq} are gone and no signed purge covers the anchor: {anchor}"
        ));
    }
    if anchor["key_id"] != key_id_of(public_key) {
        return Err(format!("anchor names key {}", anchor["key_id"]));
    }
    let signature = anchor["signature"]
        .as_str()
        .and_then(|text| (!text.contains('=')).then_some(text))
        .and_then(base64_decode)
        .ok_or("anchor signature is not unpadded base64url")?;
    let mut signed = Map::new();
    signed.insert(String::from("anchor"), Value::Bool(true));
    for field in ["chain", "hash", "seq", "time"] {
        signed.insert(field.to_owned(), anchor[field].clone());
    }
    let message = jcs(&Value::Object(signed))?;
    if !ed25519_verifies(public_key, message.as_bytes(), &signature) {
        return Err(format!(
            "the purge up to seq {seq}: signature does not verify"
        ));
    }
    Ok(())
}

fn is_hash(value: &Value) -> bool {
    value.as_str().is_some_and(|text| {
        text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

fn nullable_str(value: &Value) -> bool {
    value.is_null() || value.is_string()
}

/// Checks the shape of one event: exactly the exported fields, with the right types.
fn check_shape(event: &Map<String, Value>) -> Result<(), String> {
    let mut fields: Vec<&str> = event.keys().map(String::as_str).collect();
    fields.sort_unstable();
    if fields != EVENT_FIELDS {
        return Err(format!("fields {fields:?}"));
    }
    let actor = event["actor"].as_object().ok_or("actor is not an object")?;
    let mut actor_fields: Vec<&str> = actor.keys().map(String::as_str).collect();
    actor_fields.sort_unstable();
    if actor_fields != ["id", "name", "type"] && actor_fields != ["id", "type"] {
        return Err(format!("actor has fields {actor_fields:?}"));
    }
    let target = event["target"]
        .as_object()
        .ok_or("target is not an object")?;
    let mut target_fields: Vec<&str> = target.keys().map(String::as_str).collect();
    target_fields.sort_unstable();
    if target_fields != ["id", "type"] {
        return Err(format!("target has fields {target_fields:?}"));
    }
    let time = event["time"].as_str().unwrap_or("");
    let time_ok = time.len() == 24
        && time.ends_with('Z')
        && time.as_bytes()[10] == b'T'
        && time.as_bytes()[19] == b'.';
    let strings_ok = event["action"].is_string()
        && event["chain"].is_string()
        && event["id"].is_string()
        && event["outcome"].is_string()
        && actor["type"].is_string()
        && nullable_str(&actor["id"])
        && actor.get("name").is_none_or(Value::is_string)
        && nullable_str(&target["id"])
        && nullable_str(&target["type"])
        && nullable_str(&event["ip"])
        && nullable_str(&event["org_id"])
        && nullable_str(&event["request_id"])
        && nullable_str(&event["user_agent"]);
    if !time_ok || !strings_ok || !event["details"].is_object() || !event["seq"].is_i64() {
        return Err(String::from("a field has the wrong type"));
    }
    if !is_hash(&event["hash"]) || !is_hash(&event["prev_hash"]) {
        return Err(String::from("hashes are not 64 lowercase hex digits"));
    }
    Ok(())
}

/// Parses one line, which must be written in its canonical form (as the server writes every
/// line): so a line cannot carry, say, a second `details` member that one JSON reader would
/// show and another would hash.
fn parse_canonical(line: &str, expected_seq: i64) -> Result<Value, Broken> {
    let value: Value = serde_json::from_str(line).map_err(|error| Broken {
        seq: expected_seq,
        reason: format!("not JSON ({error}): {line}"),
    })?;
    let seq = value
        .get("seq")
        .or_else(|| value.get("checkpoint").and_then(|c| c.get("seq")))
        .and_then(Value::as_i64)
        .unwrap_or(expected_seq);
    match jcs(&value) {
        Ok(canonical) if canonical == line => Ok(value),
        Ok(canonical) => Err(Broken {
            seq,
            reason: format!("not in canonical form: {line}\ncanonical: {canonical}"),
        }),
        Err(why) => Err(Broken { seq, reason: why }),
    }
}

/// Verifies a JSON Lines export with the raw 32-byte public key.
pub(crate) fn verify_export(text: &str, public_key: &[u8]) -> Result<Verified, Broken> {
    let broken = |seq: i64, reason: String| Broken { seq, reason };
    let mut lines = text.lines().filter(|line| !line.is_empty());
    let first_line = lines
        .next()
        .ok_or_else(|| broken(0, String::from("no anchor line")))?;
    let first = parse_canonical(first_line, 0)?;
    let anchor = first
        .get("anchor")
        .filter(|_| first.as_object().is_some_and(|o| o.len() == 1))
        .ok_or_else(|| broken(0, format!("the first line is not an anchor: {first}")))?;
    let (Some(chain), Some(anchor_seq), true) = (
        anchor["chain"].as_str(),
        anchor["seq"].as_i64(),
        is_hash(&anchor["hash"]),
    ) else {
        return Err(broken(0, format!("bad anchor {anchor}")));
    };
    let anchor_hash = anchor["hash"].as_str().unwrap_or_default().to_owned();
    check_anchor(anchor, anchor_seq, &anchor_hash, public_key)
        .map_err(|why| broken(anchor_seq, why))?;
    let mut verified = Verified {
        chain: chain.to_owned(),
        anchor_seq,
        anchor_hash: anchor_hash.clone(),
        events: Vec::new(),
        checkpoint_seqs: Vec::new(),
    };
    // Hashes by seq, to compare checkpoints with; the anchor counts.
    let mut hashes = std::collections::BTreeMap::new();
    hashes.insert(anchor_seq, anchor_hash.clone());
    let mut expected_seq = anchor_seq + 1;
    let mut prev_hash = anchor_hash;
    let mut last_line_covers = false;
    for line in lines {
        let value = parse_canonical(line, expected_seq)?;
        let object = value
            .as_object()
            .ok_or_else(|| broken(expected_seq, format!("not an object: {line}")))?;
        if let Some(checkpoint) = object.get("checkpoint") {
            let seq = checkpoint["seq"].as_i64().unwrap_or(expected_seq);
            if object.len() != 1 || checkpoint["chain"] != chain {
                return Err(broken(seq, format!("checkpoint line {line}")));
            }
            let (seq, hash) =
                check_checkpoint(checkpoint, public_key).map_err(|why| broken(seq, why))?;
            match hashes.get(&seq) {
                Some(known) if *known == hash => {}
                Some(_) => return Err(broken(seq, String::from("checkpoint names another hash"))),
                None => {
                    return Err(broken(
                        seq,
                        String::from("checkpoint of an event not (yet) in the file"),
                    ));
                }
            }
            verified.checkpoint_seqs.push(seq);
            last_line_covers = seq == expected_seq - 1;
            continue;
        }
        last_line_covers = false;
        let seq = object
            .get("seq")
            .and_then(Value::as_i64)
            .unwrap_or(expected_seq);
        check_shape(object).map_err(|why| broken(seq, format!("event {seq}: {why}")))?;
        if seq != expected_seq {
            return Err(broken(
                expected_seq,
                format!("expected seq {expected_seq}, found {seq}"),
            ));
        }
        if object["chain"] != chain {
            return Err(broken(seq, String::from("event of another chain")));
        }
        if object["prev_hash"] != prev_hash.as_str() {
            return Err(broken(
                seq,
                String::from("prev_hash is not the hash before"),
            ));
        }
        let mut without_hash = object.clone();
        let stated = without_hash
            .remove("hash")
            .and_then(|hash| hash.as_str().map(str::to_owned))
            .unwrap_or_default();
        let recomputed =
            event_hash(&prev_hash, &Value::Object(without_hash)).map_err(|why| broken(seq, why))?;
        if recomputed != stated {
            return Err(broken(seq, String::from("hash does not match the event")));
        }
        hashes.insert(seq, stated.clone());
        prev_hash = stated;
        expected_seq += 1;
        verified.events.push(value);
    }
    if !last_line_covers {
        return Err(broken(
            expected_seq - 1,
            String::from("the export does not end with a checkpoint of its last event"),
        ));
    }
    Ok(verified)
}

// ---------------------------------------------------------------------------------------
// The verifier's own tests: published vectors, not Mamori's output.

#[test]
fn sha256_matches_the_fips_180_test_vectors() {
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(&sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Two blocks (the 448-bit example), and one million times 'a'.
    assert_eq!(
        hex(&sha256(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        hex(&sha256(&vec![b'a'; 1_000_000])),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
}

#[test]
fn jcs_sorts_by_utf16_and_escapes_like_ecmascript() {
    // RFC 8785 3.2.3's sorting example (numbers left out: integers only here).
    let value = serde_json::json!({
        "\u{20ac}": "Euro Sign",
        "\r": "Carriage Return",
        "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\u{1f600}": "Emoji: Grinning Face",
        "\u{80}": "Control",
        "\u{f6}": "Latin Small Letter O With Diaeresis",
    });
    assert_eq!(
        jcs(&value).unwrap(),
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
         \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
         \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
    );
    let escapes = serde_json::json!([
        "\u{0}\u{1f}\u{8}\u{c}\n\r\t\"\\/\u{7f}",
        -9_007_199_254_740_991_i64,
        true,
        null,
        {}
    ]);
    assert_eq!(
        jcs(&escapes).unwrap(),
        "[\"\\u0000\\u001f\\b\\f\\n\\r\\t\\\"\\\\/\u{7f}\",-9007199254740991,true,null,{}]"
    );
    assert!(jcs(&serde_json::json!(1.5)).is_err());
    assert!(jcs(&serde_json::json!(9_007_199_254_740_992_i64)).is_err());
}

#[test]
fn base64url_and_aws_lc_ed25519_check_rfc_8032_test_1() {
    // RFC 8032 section 7.1, TEST 1: the empty message.
    let key = [
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
        0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
        0x51, 0x1a,
    ];
    let signature_hex = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                         5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    let signature: Vec<u8> = (0..64)
        .map(|i| u8::from_str_radix(&signature_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(ed25519_verifies(&key, b"", &signature));
    assert!(!ed25519_verifies(&key, b"x", &signature));
    // base64url of the key, unpadded, round-trips through the decoder.
    assert_eq!(
        base64_decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap(),
        key
    );
    assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
    assert_eq!(base64_decode("TWE").unwrap(), b"Ma");
    assert_eq!(base64_decode("TQ==").unwrap(), b"M");
    assert!(base64_decode("T").is_none());
    assert!(base64_decode("TW!u").is_none());
}

#[test]
fn the_documented_example_event_hashes_as_documented() {
    // docs/audit-events.md: the example event and its hash.
    let event = serde_json::json!({
        "id": "evt_swtfqt6cjwttmdjb7xk5zc5bah",
        "chain": "platform",
        "seq": 1,
        "org_id": null,
        "actor": { "type": "account", "id": "acc_dqnkylczb7fgsd7d5r2flcli6a" },
        "action": "account.created",
        "target": { "type": "account", "id": "acc_dqnkylczb7fgsd7d5r2flcli6a" },
        "outcome": "success",
        "ip": "127.0.0.1",
        "user_agent": "curl/8.5.0",
        "request_id": "3f2c8e1a-5b7d-4c9e-8a61-0d4f2b9c7e15",
        "time": "2026-11-22T03:04:05.123Z",
        "details": {},
        "prev_hash": "0000000000000000000000000000000000000000000000000000000000000000"
    });
    assert_eq!(
        event_hash(&"0".repeat(64), &event).unwrap(),
        "4a47ed077f80f1e9ea6f1d6ba2c158042d1a7a4a6bc97007bc13391ec5c74a7c"
    );
}
