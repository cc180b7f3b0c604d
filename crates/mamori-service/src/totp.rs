//! TOTP as RFC 6238 sets it out for authenticator apps: HMAC-SHA-1, 6 digits, 30-second steps,
//! one step of clock drift accepted either side. The arithmetic is `totp-rs`; which steps may
//! still be used (RFC 6238 section 5.2: a code is accepted once) is decided here, by the
//! caller's last used step, and the time always comes in as a parameter.

use crate::ServiceError;
use mamori_core::Timestamp;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Totp};

pub const DIGITS: usize = 6;
pub const STEP_SECONDS: i64 = 30;
/// Steps of drift accepted on either side of the current one.
pub const SKEW_STEPS: i64 = 1;
/// 160 bits, as RFC 4226 section 4 recommends.
pub const SECRET_BYTES: usize = 20;
const ISSUER: &str = "Mamori";

/// The time step `now` falls in.
pub fn step_at(now: Timestamp) -> i64 {
    now.as_millis().div_euclid(1000 * STEP_SECONDS)
}

/// A TOTP generator over one shared secret.
pub struct TotpKey {
    totp: Totp,
}

impl TotpKey {
    pub fn new(secret: &[u8]) -> Result<TotpKey, ServiceError> {
        let totp = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(30)
            .with_secret(secret.to_vec())
            .build()
            .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("totp: {error}")))?;
        Ok(TotpKey { totp })
    }

    /// The code of one step.
    pub fn code_at_step(&self, step: i64) -> String {
        let seconds = u64::try_from(step.max(0)).unwrap_or(0) * STEP_SECONDS as u64;
        self.totp.generate(seconds).to_string()
    }

    /// The step whose code `code` is, among the current step and its neighbours, and later
    /// than `last_used_step`; `None` for a wrong, malformed, stale or replayed code. Every
    /// candidate step is compared in constant time.
    pub fn verify(&self, code: &str, now: Timestamp, last_used_step: i64) -> Option<i64> {
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let current = step_at(now);
        let mut matched = None;
        for step in (current - SKEW_STEPS)..=(current + SKEW_STEPS) {
            let expected = self.code_at_step(step);
            let equal = bool::from(expected.as_bytes().ct_eq(code.as_bytes()));
            if equal && step > last_used_step && matched.is_none() {
                matched = Some(step);
            }
        }
        matched
    }

    /// The `otpauth://` URI an authenticator app reads from the QR code.
    pub fn otpauth_uri(secret: &[u8], account_name: &str) -> Result<String, ServiceError> {
        let totp = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(30)
            .with_secret(secret.to_vec())
            .with_issuer(Some(ISSUER))
            .with_account_name(account_name)
            .build()
            .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("totp: {error}")))?;
        totp.to_url()
            .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("totp url: {error}")))
    }
}

/// The secret in base32 (RFC 4648, no padding), as people type it into an app.
pub fn secret_base32(secret: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(secret.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in secret {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The QR code of `text` as a standalone SVG document (one path of dark modules, a quiet zone
/// of four modules).
pub fn qr_svg(text: &str) -> Result<String, ServiceError> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium)
        .map_err(|_| ServiceError::Unexpected(anyhow::anyhow!("qr: text too long")))?;
    let border = 4;
    let size = qr.size();
    let dimension = size + border * 2;
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" viewBox=\"0 0 {dimension} {dimension}\" \
         shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\
         <path d=\"{path}\" fill=\"#000000\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors_in_six_digits() {
        // RFC 6238 appendix B gives 8 digits; the last 6 are the 6-digit codes.
        let key = TotpKey::new(b"12345678901234567890").unwrap();
        for (seconds, eight) in [
            (59_i64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(key.code_at_step(seconds / 30), eight[2..]);
        }
    }

    #[test]
    fn drift_and_replay() {
        let key = TotpKey::new(&[7u8; 20]).unwrap();
        let now = Timestamp::from_millis(1_795_305_600_000);
        let step = step_at(now);
        assert_eq!(key.verify(&key.code_at_step(step), now, -1), Some(step));
        assert_eq!(
            key.verify(&key.code_at_step(step - 1), now, -1),
            Some(step - 1)
        );
        assert_eq!(
            key.verify(&key.code_at_step(step + 1), now, -1),
            Some(step + 1)
        );
        assert_eq!(key.verify(&key.code_at_step(step - 2), now, -1), None);
        assert_eq!(key.verify(&key.code_at_step(step), now, step), None);
        assert_eq!(key.verify("12345", now, -1), None);
        assert_eq!(key.verify("abcdef", now, -1), None);
    }

    #[test]
    fn base32_of_the_rfc_secret() {
        assert_eq!(
            secret_base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }
}
