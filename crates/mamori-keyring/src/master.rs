//! The master key-encryption key: 32 random bytes in a file of mode 0600 created on first
//! start, or supplied by path or environment. It only wraps and unwraps data keys.

use crate::{KEY_LEN, KeyringError, NONCE_LEN};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

const FILE_PREFIX: &str = "mamori-master-key-v1:";

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("cannot read master key file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create master key file {path}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "master key file {path} is readable by other users (mode {mode:o}); run chmod 600 on it"
    )]
    Permissions { path: String, mode: u32 },
    #[error("master key is malformed: expected {FILE_PREFIX} followed by 32 bytes in base64")]
    Malformed,
    #[error("random number generator failed")]
    Random,
}

pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Reads the key file at `path`, creating it with a new random key (mode 0600) when it does
    /// not exist. Refuses a file that others can read.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, MasterKeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                check_permissions(path, &shown)?;
                MasterKey::parse(&text)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; KEY_LEN]);
                getrandom::fill(&mut key[..]).map_err(|_| MasterKeyError::Random)?;
                let text = Zeroizing::new(format!("{FILE_PREFIX}{}\n", BASE64.encode(&key[..])));
                write_new_secret_file(path, text.as_bytes()).map_err(|source| {
                    MasterKeyError::Create {
                        path: shown,
                        source,
                    }
                })?;
                Ok(MasterKey(key))
            }
            Err(source) => Err(MasterKeyError::Read {
                path: shown,
                source,
            }),
        }
    }

    /// Parses a key as written in the key file, or as plain base64 (for the environment).
    pub fn parse(text: &str) -> Result<MasterKey, MasterKeyError> {
        let text = text.trim();
        let body = text.strip_prefix(FILE_PREFIX).unwrap_or(text);
        let bytes = Zeroizing::new(BASE64.decode(body).map_err(|_| MasterKeyError::Malformed)?);
        let key: [u8; KEY_LEN] = bytes[..]
            .try_into()
            .map_err(|_| MasterKeyError::Malformed)?;
        Ok(MasterKey(Zeroizing::new(key)))
    }

    /// A subkey for one purpose (HKDF-SHA256), so the master key itself wraps keys only.
    pub(crate) fn derive(&self, purpose: &str) -> Zeroizing<[u8; KEY_LEN]> {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(None, &self.0[..]);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        // Expanding 32 bytes from SHA-256 is always within HKDF's limit.
        if hkdf.expand(purpose.as_bytes(), &mut out[..]).is_err() {
            out.fill(0);
        }
        out
    }

    pub(crate) fn wrap(&self, owner: &str, key: &[u8; KEY_LEN]) -> Result<String, KeyringError> {
        let cipher =
            XChaCha20Poly1305::new_from_slice(&self.0[..]).map_err(|_| KeyringError::Open)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| KeyringError::Random)?;
        let aad = format!("mamori/data-key/v1|{owner}");
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &key[..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KeyringError::Open)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(BASE64.encode(out))
    }

    pub(crate) fn unwrap(
        &self,
        owner: &str,
        wrapped: &str,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyringError> {
        let bytes = BASE64.decode(wrapped).map_err(|_| KeyringError::Open)?;
        if bytes.len() < NONCE_LEN {
            return Err(KeyringError::Open);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyringError::Open)?;
        let cipher =
            XChaCha20Poly1305::new_from_slice(&self.0[..]).map_err(|_| KeyringError::Open)?;
        let aad = format!("mamori/data-key/v1|{owner}");
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: sealed,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| KeyringError::Open)?,
        );
        let key: [u8; KEY_LEN] = plain[..].try_into().map_err(|_| KeyringError::Open)?;
        Ok(Zeroizing::new(key))
    }
}

#[cfg(unix)]
fn write_new_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_new_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(unix)]
fn check_permissions(path: &Path, shown: &str) -> Result<(), MasterKeyError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(|source| MasterKeyError::Read {
        path: shown.to_owned(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(MasterKeyError::Permissions {
            path: shown.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _shown: &str) -> Result<(), MasterKeyError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_key_file_and_reads_it_back() {
        let dir = tempfile_dir();
        let path = dir.join("master.key");
        let first = MasterKey::load_or_create(&path).unwrap();
        let second = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(first.0[..], second.0[..]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                MasterKey::load_or_create(&path),
                Err(MasterKeyError::Permissions { .. })
            ));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn wrapping_binds_the_owner() {
        let master = MasterKey::parse(&BASE64.encode([7u8; 32])).unwrap();
        let key = [9u8; KEY_LEN];
        let wrapped = master.wrap("acc_a", &key).unwrap();
        assert_eq!(master.unwrap("acc_a", &wrapped).unwrap()[..], key[..]);
        assert!(master.unwrap("acc_b", &wrapped).is_err());
        assert!(MasterKey::parse("not base64").is_err());
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).unwrap();
        let dir = std::env::temp_dir().join(format!("mamori-master-{}", hex::encode(random)));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
