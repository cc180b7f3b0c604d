//! Password hashing (ENC-1): Argon2id on a bounded pool of blocking threads.
//!
//! At most `max_concurrent` hashes run at once (by default one per core); further requests
//! wait their turn. Each hash holds `memory_kib` of memory, so memory under a login storm is
//! bounded by `max_concurrent x memory_kib` whatever the number of clients.

use crate::ServiceError;
pub use argon2::Block;
use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_concurrent: usize,
}

impl Default for PasswordParams {
    /// The OWASP minimum for Argon2id: m=19456 KiB, t=2, p=1.
    fn default() -> Self {
        PasswordParams {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            max_concurrent: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// The result of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Mismatch,
    Match { needs_rehash: bool },
}

pub struct PasswordHashing {
    params: Params,
    permits: Arc<Semaphore>,
    /// Argon2 working memory, reused while hashes follow one another. At most one buffer per
    /// permit exists, so memory under a login storm stays at `max_concurrent x m`. When a hash
    /// ends and no other is running or waiting, its buffer is freed rather than kept, so an
    /// idle server holds none (the binary's allocator gives freed memory back to the OS).
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    /// Hashes running or waiting for a permit.
    in_flight: Arc<AtomicUsize>,
    /// A hash of a random password with the current parameters. Verifying against it makes a
    /// login for an unknown email cost the same as a real one.
    dummy_hash: Arc<str>,
}

impl PasswordHashing {
    pub fn new(config: PasswordParams) -> Result<PasswordHashing, ServiceError> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("argon2 parameters: {error}")))?;
        let random = crate::tokens::random_bytes::<32>()?;
        let dummy_hash = hash_into(&params, &random, &mut Vec::new())?;
        Ok(PasswordHashing {
            params,
            permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            buffers: Arc::new(Mutex::new(Vec::new())),
            in_flight: Arc::new(AtomicUsize::new(0)),
            dummy_hash: Arc::from(dummy_hash),
        })
    }

    /// Hashes a password (already normalized) to a PHC string.
    pub async fn hash(&self, password: &str) -> Result<String, ServiceError> {
        let password = Zeroizing::new(password.to_owned());
        let params = self.params.clone();
        self.with_buffer(move |buffer| hash_into(&params, password.as_bytes(), buffer))
            .await?
    }

    /// Checks a password against a stored PHC string. With `None` (no such account, or one
    /// without a password) it does the same work against a dummy hash and reports a mismatch.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verification, ServiceError> {
        let password = Zeroizing::new(password.to_owned());
        let real = stored.is_some();
        let stored: Arc<str> = stored.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let current = self.params.clone();
        self.with_buffer(move |buffer| {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Verification::Mismatch;
            };
            let matched = verify_into(&parsed, password.as_bytes(), buffer);
            if !(matched && real) {
                return Verification::Mismatch;
            }
            let needs_rehash = match Params::try_from(&parsed) {
                Ok(stored_params) => {
                    stored_params.m_cost() != current.m_cost()
                        || stored_params.t_cost() != current.t_cost()
                        || stored_params.p_cost() != current.p_cost()
                        || parsed.algorithm.as_str() != "argon2id"
                }
                Err(_) => true,
            };
            Verification::Match { needs_rehash }
        })
        .await
    }

    /// Runs `work` on a blocking thread with a working buffer, at most `max_concurrent` at a
    /// time. The permit and the buffer move into the blocking task: if the caller goes away (a
    /// client hangs up mid-login), the hash still counts against the limit until it ends.
    async fn with_buffer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        // Counted from before the wait, so a finishing hash sees queued ones as well. The
        // guard moves into the blocking task with the permit: a hash whose caller went away
        // still counts until it ends.
        let in_flight = InFlight::enter(&self.in_flight);
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Unexpected(anyhow::anyhow!("hashing pool closed")))?;
        let buffers = self.buffers.clone();
        let block_count = self.params.block_count();
        tokio::task::spawn_blocking(move || {
            let mut buffer = buffers
                .lock()
                .ok()
                .and_then(|mut free| free.pop())
                .unwrap_or_else(|| vec![Block::default(); block_count]);
            let result = work(&mut buffer);
            if in_flight.others() > 0 {
                if let Ok(mut free) = buffers.lock() {
                    free.push(buffer);
                }
            } else {
                // Nothing else to hash: free this buffer and any left in the pool.
                drop(buffer);
                if let Ok(mut free) = buffers.lock() {
                    free.clear();
                }
            }
            drop(permit);
            drop(in_flight);
            result
        })
        .await
        .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("hashing task: {error}")))
    }
}

/// One hash running or waiting, counted in `PasswordHashing::in_flight` until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter.clone())
    }

    /// Hashes running or waiting besides this one.
    fn others(&self) -> usize {
        self.0.load(Ordering::SeqCst).saturating_sub(1)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Argon2id of `password` with a fresh random salt, in `buffer`, as a PHC string.
fn hash_into(
    params: &Params,
    password: &[u8],
    buffer: &mut Vec<Block>,
) -> Result<String, ServiceError> {
    let fail = |error: &dyn std::fmt::Display| {
        ServiceError::Unexpected(anyhow::anyhow!("argon2 hashing: {error}"))
    };
    let salt = crate::tokens::random_bytes::<16>()?;
    let mut output = Zeroizing::new([0u8; 32]);
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    buffer.resize(params.block_count(), Block::default());
    argon2
        .hash_password_into_with_memory(password, &salt, &mut output[..], &mut buffer[..])
        .map_err(|error| fail(&error))?;
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|error| fail(&error))?,
        salt: Some(Salt::new(&salt).map_err(|error| fail(&error))?),
        hash: Some(Output::new(&output[..]).map_err(|error| fail(&error))?),
    };
    Ok(hash.to_string())
}

/// Recomputes a stored hash in `buffer` (grown when the stored parameters need more memory)
/// and compares the outputs in constant time.
fn verify_into(stored: &PasswordHash, password: &[u8], buffer: &mut Vec<Block>) -> bool {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(stored) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm.as_str()) else {
        return false;
    };
    let version = stored
        .version
        .and_then(|version| Version::try_from(version).ok())
        .unwrap_or_default();
    let mut output = Zeroizing::new(vec![0u8; expected.as_bytes().len()]);
    if buffer.len() < params.block_count() {
        buffer.resize(params.block_count(), Block::default());
    }
    let argon2 = Argon2::new(algorithm, version, params.clone());
    if argon2
        .hash_password_into_with_memory(
            password,
            salt,
            &mut output[..],
            &mut buffer[..params.block_count()],
        )
        .is_err()
    {
        return false;
    }
    use subtle::ConstantTimeEq;
    bool::from(output.as_slice().ct_eq(expected.as_bytes()))
}

/// Hashes with the given parameters on the calling thread, reusing `buffer`: the benchmark's
/// baseline, doing exactly the work of one server-side hash.
pub fn hash_blocking(
    config: PasswordParams,
    password: &[u8],
    buffer: &mut Vec<Block>,
) -> Result<String, ServiceError> {
    let params = Params::new(
        config.memory_kib,
        config.iterations,
        config.parallelism,
        None,
    )
    .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("argon2 parameters: {error}")))?;
    hash_into(&params, password, buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordParams {
        PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 2,
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_report_outdated_parameters() {
        let hashing = PasswordHashing::new(fast()).unwrap();
        let hash = hashing.hash("correct horse battery staple").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(
            hashing
                .verify("correct horse battery staple", Some(&hash))
                .await
                .unwrap(),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            hashing.verify("wrong horse", Some(&hash)).await.unwrap(),
            Verification::Mismatch
        );
        assert_eq!(
            hashing.verify("anything", None).await.unwrap(),
            Verification::Mismatch
        );
        let stronger = PasswordHashing::new(PasswordParams {
            memory_kib: 128,
            ..fast()
        })
        .unwrap();
        assert_eq!(
            stronger
                .verify("correct horse battery staple", Some(&hash))
                .await
                .unwrap(),
            Verification::Match { needs_rehash: true }
        );
    }
}
