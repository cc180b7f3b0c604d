//! The keyring: a master key-encryption key and one data key per account and organization,
//! kept apart from the data they protect (ENC-3, and the ground for DEL-3).
//!
//! Personal fields are sealed with their owner's data key before they reach the data store.
//! Destroying a data key ("crypto-shredding") makes those fields unreadable in every copy of
//! the data store, backups included. See `docs/design/keyring.md`.
//!
//! This crate never logs key material and never hands out the master key.

mod master;

pub use master::{MasterKey, MasterKeyError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as BASE64;
use chacha20poly1305::aead::{Aead, AeadInOut, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hmac::Mac;
use mamori_store::StoreError;
use mamori_store::db::{DatabaseRole, Engine, connect};
use sqlx::{AnyPool, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// Unwrapped data keys kept in memory at most; beyond this the cache starts over.
const CACHE_CAPACITY: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("keyring storage failed")]
    Store(#[from] StoreError),
    #[error("keyring database failed")]
    Database(#[from] sqlx::Error),
    #[error("keyring migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("no data key for {0} (never created or destroyed)")]
    NoKey(String),
    #[error("sealed value could not be opened (wrong key, wrong owner or tampered)")]
    Open,
    #[error("random number generator failed")]
    Random,
}

/// A data key, unwrapped, in memory only.
#[derive(Clone)]
pub struct DataKey {
    owner: Arc<str>,
    key: Arc<Zeroizing<[u8; KEY_LEN]>>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({})", self.owner)
    }
}

impl DataKey {
    /// Seals `plaintext` for the named field. The owner and the field are bound in as
    /// associated data, so a sealed value moved to another row or column does not open.
    pub fn seal(&self, field: &str, plaintext: &[u8]) -> Result<String, KeyringError> {
        let cipher =
            XChaCha20Poly1305::new_from_slice(&self.key[..]).map_err(|_| KeyringError::Open)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| KeyringError::Random)?;
        let aad = format!("mamori/field/v1|{}|{field}", self.owner);
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KeyringError::Open)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(format!("v1.{}", BASE64.encode(out)))
    }

    pub fn open(&self, field: &str, sealed: &str) -> Result<Vec<u8>, KeyringError> {
        let mut opener = self.opener(field)?;
        let plaintext = opener.open_bytes(sealed)?.to_vec();
        Ok(plaintext)
    }

    /// An opener for many values of one `field`: the cipher and the associated data are made
    /// once, and each value is opened in a buffer the opener keeps (reading a whole audit
    /// chain opens one actor name per event).
    pub fn opener(&self, field: &str) -> Result<FieldOpener, KeyringError> {
        Ok(FieldOpener {
            cipher: XChaCha20Poly1305::new_from_slice(&self.key[..])
                .map_err(|_| KeyringError::Open)?,
            aad: format!("mamori/field/v1|{}|{field}", self.owner),
            buffer: Zeroizing::new(Vec::with_capacity(256)),
        })
    }

    /// A 32-byte secret derived from this key for one `purpose` (HKDF-SHA-256), such as the
    /// seed of a signing key. Destroying the data key destroys every secret derived from it.
    pub fn derive_secret(&self, purpose: &str) -> Zeroizing<[u8; KEY_LEN]> {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(self.owner.as_bytes()), &self.key[..]);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        // Expanding 32 bytes from SHA-256 is always within HKDF's limit.
        if hkdf.expand(purpose.as_bytes(), &mut out[..]).is_err() {
            out.fill(0);
        }
        out
    }

    pub fn open_string(&self, field: &str, sealed: &str) -> Result<String, KeyringError> {
        String::from_utf8(self.open(field, sealed)?).map_err(|_| KeyringError::Open)
    }
}

/// Opens sealed values of one field of one owner (see [`DataKey::opener`]). The plaintext it
/// hands out lives in its buffer until the next value is opened; the buffer is wiped on drop.
pub struct FieldOpener {
    cipher: XChaCha20Poly1305,
    aad: String,
    buffer: Zeroizing<Vec<u8>>,
}

impl FieldOpener {
    /// Opens `sealed` (`v1.` + base64 of nonce, ciphertext and tag).
    pub fn open_bytes(&mut self, sealed: &str) -> Result<&[u8], KeyringError> {
        const TAG_LEN: usize = 16;
        let body = sealed.strip_prefix("v1.").ok_or(KeyringError::Open)?;
        self.buffer.clear();
        BASE64
            .decode_vec(body, &mut self.buffer)
            .map_err(|_| KeyringError::Open)?;
        let length = self.buffer.len();
        if length < NONCE_LEN + TAG_LEN {
            return Err(KeyringError::Open);
        }
        let (nonce, rest) = self.buffer.split_at_mut(NONCE_LEN);
        let (message, tag) = rest.split_at_mut(length - NONCE_LEN - TAG_LEN);
        let nonce = XNonce::try_from(&*nonce).map_err(|_| KeyringError::Open)?;
        let tag = chacha20poly1305::Tag::try_from(&*tag).map_err(|_| KeyringError::Open)?;
        self.cipher
            .decrypt_inout_detached(&nonce, self.aad.as_bytes(), message.into(), &tag)
            .map_err(|_| KeyringError::Open)?;
        Ok(&self.buffer[NONCE_LEN..length - TAG_LEN])
    }

    /// [`FieldOpener::open_bytes`] for text.
    pub fn open_str(&mut self, sealed: &str) -> Result<&str, KeyringError> {
        std::str::from_utf8(self.open_bytes(sealed)?).map_err(|_| KeyringError::Open)
    }
}

pub struct Keyring {
    pool: AnyPool,
    engine: Engine,
    master: MasterKey,
    blind_index_key: Zeroizing<[u8; KEY_LEN]>,
    cache: Mutex<HashMap<String, DataKey>>,
}

impl Keyring {
    /// Opens the keyring database at `url` and brings its schema up to date.
    pub async fn open(url: &str, master: MasterKey) -> Result<Keyring, KeyringError> {
        let (pool, engine) = connect(url, DatabaseRole::Keyring, 4).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let blind_index_key = master.derive("mamori/v1/blind-index");
        Ok(Keyring {
            pool,
            engine,
            master,
            blind_index_key,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks that the keyring database answers.
    pub async fn ping(&self) -> Result<(), KeyringError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A keyed HMAC-SHA256 of `value` for `purpose`, hex: lets the data store find a row by an
    /// encrypted field without holding the plaintext.
    pub fn blind_index(&self, purpose: &str, value: &str) -> String {
        let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.blind_index_key[..]) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this arm cannot be reached.
            Err(_) => return String::new(),
        };
        mac.update(purpose.as_bytes());
        mac.update(b"\n");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Creates the data key of `owner` (an account or organization ID). Creating a key for an
    /// owner that already has one, or whose key was destroyed, fails with a conflict.
    pub async fn create_key(&self, owner: &str, now_ms: i64) -> Result<DataKey, KeyringError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut key[..]).map_err(|_| KeyringError::Random)?;
        let wrapped = self.master.wrap(owner, &key)?;
        let destroyed: Option<(String,)> =
            sqlx::query_as("SELECT owner FROM destroyed_keys WHERE owner = $1")
                .bind(owner)
                .fetch_optional(&self.pool)
                .await?;
        if destroyed.is_some() {
            return Err(StoreError::Conflict {
                constraint: String::from("destroyed_keys.owner"),
            }
            .into());
        }
        sqlx::query("INSERT INTO data_keys (owner, wrapped, created_at) VALUES ($1, $2, $3)")
            .bind(owner)
            .bind(wrapped)
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from)?;
        let data_key = DataKey {
            owner: Arc::from(owner),
            key: Arc::new(key),
        };
        self.remember(owner, &data_key);
        Ok(data_key)
    }

    /// The data key of `owner`; [`KeyringError::NoKey`] once it is destroyed.
    pub async fn key(&self, owner: &str) -> Result<DataKey, KeyringError> {
        if let Some(key) = self.cached(owner) {
            return Ok(key);
        }
        let row = sqlx::query("SELECT wrapped FROM data_keys WHERE owner = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Err(KeyringError::NoKey(owner.to_owned()));
        };
        let wrapped: String = row.try_get("wrapped")?;
        let key = self.master.unwrap(owner, &wrapped)?;
        let data_key = DataKey {
            owner: Arc::from(owner),
            key: Arc::new(key),
        };
        self.remember(owner, &data_key);
        Ok(data_key)
    }

    /// Destroys the data key of `owner` for good. Idempotent: destroying twice, or a key that
    /// never existed, succeeds. Returns whether a key was destroyed by this call.
    pub async fn destroy(&self, owner: &str, now_ms: i64) -> Result<bool, KeyringError> {
        self.forget(owner);
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM data_keys WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "INSERT INTO destroyed_keys (owner, destroyed_at) VALUES ($1, $2) \
             ON CONFLICT (owner) DO NOTHING",
        )
        .bind(owner)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if deleted > 0 && self.engine == Engine::Postgres {
            // PostgreSQL keeps a deleted row's bytes until VACUUM reclaims them; do it now so
            // the wrapped key leaves the table's files.
            sqlx::query("VACUUM data_keys").execute(&self.pool).await?;
        }
        Ok(deleted > 0)
    }

    /// Whether a destruction of `owner`'s key is on record.
    pub async fn is_destroyed(&self, owner: &str) -> Result<bool, KeyringError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT owner FROM destroyed_keys WHERE owner = $1")
                .bind(owner)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    fn cached(&self, owner: &str) -> Option<DataKey> {
        self.cache.lock().ok()?.get(owner).cloned()
    }

    fn remember(&self, owner: &str, key: &DataKey) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(owner.to_owned(), key.clone());
        }
    }

    fn forget(&self, owner: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(owner);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(owner: &str, byte: u8) -> DataKey {
        DataKey {
            owner: Arc::from(owner),
            key: Arc::new(Zeroizing::new([byte; KEY_LEN])),
        }
    }

    #[test]
    fn an_opener_opens_what_seal_sealed_and_nothing_else() {
        let alice = key("acc_alice", 1);
        let names = ["Alice", "", "Ålice \u{1F600}", &"x".repeat(300)];
        let sealed: Vec<String> = names
            .iter()
            .map(|name| alice.seal("name", name.as_bytes()).unwrap())
            .collect();
        let mut opener = alice.opener("name").unwrap();
        for (name, sealed) in names.iter().zip(&sealed) {
            assert_eq!(opener.open_str(sealed).unwrap(), *name);
            assert_eq!(alice.open_string("name", sealed).unwrap(), *name);
        }
        // Another field, another owner, another key: the associated data or the key differs.
        assert!(alice.opener("email").unwrap().open_str(&sealed[0]).is_err());
        let mut other_owner = DataKey {
            owner: Arc::from("acc_bob"),
            key: alice.key.clone(),
        }
        .opener("name")
        .unwrap();
        assert!(other_owner.open_str(&sealed[0]).is_err());
        assert!(
            key("acc_alice", 2)
                .opener("name")
                .unwrap()
                .open_str(&sealed[0])
                .is_err()
        );
        // Any changed character, a cut or a missing prefix fails, and the opener still works.
        let body = sealed[0].strip_prefix("v1.").unwrap();
        for index in 0..body.len() {
            let mut changed = body.as_bytes().to_vec();
            changed[index] = if changed[index] == b'A' { b'B' } else { b'A' };
            let changed = format!("v1.{}", String::from_utf8(changed).unwrap());
            assert!(opener.open_bytes(&changed).is_err(), "changed at {index}");
        }
        for bad in [
            &sealed[0][..sealed[0].len() - 4],
            body,
            "v1.",
            "v1.!!",
            "v2.AAAA",
        ] {
            assert!(opener.open_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(opener.open_str(&sealed[0]).unwrap(), "Alice");
    }
}
