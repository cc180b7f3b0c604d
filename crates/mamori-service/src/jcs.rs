//! RFC 8785 JSON Canonicalization Scheme (JCS) for the values the audit trail holds.
//!
//! Object members are sorted by their names as UTF-16 code units, strings are escaped as
//! ECMAScript's `JSON.stringify` does, and there is no white space. Numbers are limited to
//! integers of at most 2^53 - 1 in magnitude, which every JSON implementation reads exactly
//! and JCS writes as plain digits; anything else is refused rather than rounded.

use serde_json::{Map, Value};
use std::fmt::Write as _;

/// The largest integer an IEEE 754 double holds exactly: 2^53 - 1.
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    #[error("numbers must be integers from -(2^53 - 1) to 2^53 - 1")]
    Number,
}

/// The canonical text of `value`.
pub fn canonical(value: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

pub fn write_value(out: &mut String, value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => {
            let integer = number
                .as_i64()
                .filter(|n| (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(n))
                .ok_or(JcsError::Number)?;
            let _ = write!(out, "{integer}");
        }
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(members) => write_object(out, members)?,
    }
    Ok(())
}

fn write_object(out: &mut String, members: &Map<String, Value>) -> Result<(), JcsError> {
    let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push('{');
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        write_value(out, value)?;
    }
    out.push('}');
    Ok(())
}

/// Writes `text` as a JSON string: `"` and `\` escaped, control characters as the short
/// escapes or `\u00xx` in lowercase hex, everything else as it is.
pub fn write_string(out: &mut String, text: &str) {
    out.push('"');
    let mut plain_from = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape: Option<&str> = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&text[plain_from..i]);
        match escape {
            Some(escape) => out.push_str(escape),
            None => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        plain_from = i + 1;
    }
    out.push_str(&text[plain_from..]);
    out.push('"');
}

/// Writes an optional string, `null` when absent.
pub fn write_optional(out: &mut String, text: Option<&str>) {
    match text {
        Some(text) => write_string(out, text),
        None => out.push_str("null"),
    }
}

/// Nesting deeper than this is refused by [`is_canonical`] (as by `serde_json`'s reader).
const MAX_DEPTH: usize = 128;

/// Whether `text` is exactly the canonical form of one JSON value, as [`write_value`] writes
/// it: no white space, members sorted by UTF-16 code units and each name once, strings with
/// only the escapes JCS makes, integers of at most 2^53 - 1 in magnitude. Checks the text in
/// place, without building a tree, so an export's `details` are checked at the speed of a scan.
pub fn is_canonical(text: &str) -> bool {
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        at: 0,
    };
    scanner.value(0) && scanner.at == scanner.bytes.len()
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn eat(&mut self, byte: u8) -> bool {
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        match self.bytes.get(self.at) {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    /// `-?(0|[1-9][0-9]*)` within the safe range, and not `-0` (JCS writes `0`).
    fn number(&mut self) -> bool {
        let negative = self.eat(b'-');
        let start = self.at;
        let mut magnitude: i64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.bytes.get(self.at) {
            magnitude = match magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(digit - b'0')))
            {
                Some(m) if m <= MAX_SAFE_INTEGER => m,
                _ => return false,
            };
            self.at += 1;
        }
        let digits = self.at - start;
        let leading_zero = digits > 1 && self.bytes[start] == b'0';
        digits > 0 && !leading_zero && !(negative && magnitude == 0)
    }

    /// A string in canonical form; returns the text between the quotes and whether it holds
    /// escapes.
    fn string(&mut self) -> Option<(&[u8], bool)> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        let mut escaped = false;
        loop {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            match byte {
                b'"' => return Some((&self.bytes[start..self.at - 1], escaped)),
                0x00..=0x1f => return None,
                b'\\' => {
                    escaped = true;
                    let next = *self.bytes.get(self.at)?;
                    self.at += 1;
                    match next {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        // Only control characters without a short escape, in lowercase hex.
                        b'u' => {
                            let hex = self.bytes.get(self.at..self.at + 4)?;
                            self.at += 4;
                            let short = [b'0', b'8'] == hex[2..]
                                || [b'0', b'9'] == hex[2..]
                                || [b'0', b'a'] == hex[2..]
                                || [b'0', b'c'] == hex[2..]
                                || [b'0', b'd'] == hex[2..];
                            let control = hex[0] == b'0'
                                && hex[1] == b'0'
                                && matches!(hex[2], b'0' | b'1')
                                && matches!(hex[3], b'0'..=b'9' | b'a'..=b'f');
                            if !control || short {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                }
                _ => {}
            }
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        self.at += 1;
        if self.eat(b']') {
            return true;
        }
        loop {
            if !self.value(depth) {
                return false;
            }
            if !self.eat(b',') {
                return self.eat(b']');
            }
        }
    }

    fn object(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        self.at += 1;
        if self.eat(b'}') {
            return true;
        }
        let mut previous: Option<String> = None;
        loop {
            let Some((raw, escaped)) = self.string() else {
                return false;
            };
            // The bytes are valid UTF-8 (they come from a `str`, cut at ASCII quotes).
            let Ok(raw) = std::str::from_utf8(raw) else {
                return false;
            };
            let name = if escaped {
                unescape(raw)
            } else {
                raw.to_owned()
            };
            // Strictly ascending: sorted, and no name twice.
            if let Some(previous) = &previous
                && previous.encode_utf16().cmp(name.encode_utf16()) != std::cmp::Ordering::Less
            {
                return false;
            }
            previous = Some(name);
            if !self.eat(b':') || !self.value(depth) {
                return false;
            }
            if !self.eat(b',') {
                return self.eat(b'}');
            }
        }
    }
}

/// The text of a string already checked to be canonical.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(c);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use serde_json::json;

    #[test]
    fn sorts_members_by_utf16_and_escapes_like_ecmascript() {
        // U+1F600 (UTF-16 0xD83D 0xDE00) sorts before U+E000 in UTF-16, though after it in
        // UTF-8 (0xF0... > 0xEE...): JCS wants the UTF-16 order.
        let value =
            json!({"b": 1, "a": [true, null, "x\u{1}\n\"\\"], "\u{1F600}": 0, "\u{E000}": -2});
        assert_eq!(
            canonical(&value).unwrap(),
            "{\"a\":[true,null,\"x\\u0001\\n\\\"\\\\\"],\"b\":1,\"\u{1F600}\":0,\"\u{E000}\":-2}"
        );
    }

    #[test]
    fn refuses_numbers_it_cannot_write_exactly() {
        assert_eq!(canonical(&json!(1.5)), Err(JcsError::Number));
        assert_eq!(
            canonical(&json!(9_007_199_254_740_992_i64)),
            Err(JcsError::Number)
        );
        assert_eq!(
            canonical(&json!(-9_007_199_254_740_991_i64)).unwrap(),
            "-9007199254740991"
        );
    }

    #[test]
    fn recognises_exactly_the_canonical_texts() {
        let values = [
            json!({}),
            json!([]),
            json!({"b": 1, "a": [true, false, null, "x\u{1}\n\"\\\u{7f}/"], "\u{1F600}": 0, "\u{E000}": -2}),
            json!({"path": "/projects/alpha/1.pdf", "bytes": 9_007_199_254_740_991_i64, "client": "c"}),
            json!({"\n": {"\t": [[], {}, 0, -1, "\u{8}\u{c}\r\u{1f}\u{0}"]}, "a\"": "é"}),
        ];
        for value in &values {
            let text = canonical(value).unwrap();
            assert!(is_canonical(&text), "{text}");
        }
        let refused = [
            "",
            " {}",
            "{} ",
            "{ }",
            "{\"a\": 1}",
            "{\"b\":1,\"a\":2}",
            "{\"a\":1,\"a\":1}",
            // U+E000 sorts after U+1F600 in UTF-16.
            "{\"\u{E000}\":0,\"\u{1F600}\":0}",
            "\"\\/\"",
            "\"\\u0041\"",
            "\"\\u000A\"",
            "\"\\u000a\"",
            "\"\\u0020\"",
            "\"\u{1}\"",
            "1.0",
            "1e2",
            "-0",
            "01",
            "+1",
            "9007199254740992",
            "-9007199254740992",
            "[1,]",
            "[1 ]",
            "{\"a\":1,}",
            "tru",
            "nul",
            "\"open",
            "{\"a\"}",
        ];
        for text in refused {
            assert!(!is_canonical(text), "{text:?} is not canonical");
        }
        // Its verdict agrees with parsing and writing again.
        for text in [
            "{\"a\":-0}",
            "{\"a\":[1,2,{\"c\":\"d\",\"b\":1}]}",
            "[\"\\u001f\"]",
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            let agrees = canonical(&value).ok().as_deref() == Some(text);
            assert_eq!(is_canonical(text), agrees, "{text}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(!is_canonical(&deep));
        let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(is_canonical(&fine));
    }
}
