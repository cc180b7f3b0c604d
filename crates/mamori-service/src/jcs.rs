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

#[cfg(test)]
mod tests {
    use super::*;
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
}
