//! Random secrets and identifiers. Secrets are shown once and stored only as SHA-256 hashes:
//! they carry 256 bits of entropy, so a fast hash is enough and look-up by hash is safe.

use crate::ServiceError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mamori_core::id::ID_RANDOM_BYTES;
use sha2::{Digest, Sha256};

/// Prefixes tell the kind of a bearer secret without a database look-up.
pub const SESSION_PREFIX: &str = "mms_";
pub const OPERATOR_PREFIX: &str = "mmo_";
pub const APP_PREFIX: &str = "mma_";
/// Personal access tokens: recognisable in logs and by secret scanners.
pub const PERSONAL_TOKEN_PREFIX: &str = "mmp_";
/// The challenge between the password and the second factor of a log-in.
pub const CHALLENGE_PREFIX: &str = "mmc_";
/// The challenge between an initial password and the new one an organization-local account
/// must set (ACC-7). Stored, hashed, beside the `mmc_` challenges; the prefix is part of what
/// is hashed, so one kind can never be used as the other.
pub const PASSWORD_CHANGE_PREFIX: &str = "mmf_";

pub fn random_bytes<const N: usize>() -> Result<[u8; N], ServiceError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|_| ServiceError::Unexpected(anyhow::anyhow!("random number generator failed")))?;
    Ok(bytes)
}

pub fn id_random() -> Result<[u8; ID_RANDOM_BYTES], ServiceError> {
    random_bytes::<ID_RANDOM_BYTES>()
}

/// A new secret: `prefix` and 32 random bytes in URL-safe base64.
pub fn new_secret(prefix: &str) -> Result<String, ServiceError> {
    let bytes = random_bytes::<32>()?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a secret.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` has the shape of one of ours, checked before any database look-up.
pub fn looks_like(secret: &str, prefix: &str) -> bool {
    secret.len() == prefix.len() + 43
        && secret.starts_with(prefix)
        && secret[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Compares two stored hashes in constant time.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
