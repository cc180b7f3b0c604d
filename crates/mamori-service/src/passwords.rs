//! Password hashing (ENC-1): Argon2id on a bounded pool of blocking threads.
//!
//! At most `max_concurrent` hashes run at once (by default one per core); further requests
//! wait their turn. Each hash holds `memory_kib` of memory, so memory under a login storm is
//! bounded by `max_concurrent x memory_kib` whatever the number of clients.

use crate::ServiceError;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use std::sync::Arc;
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
        let dummy_hash = hash_with(&params, &random)?;
        Ok(PasswordHashing {
            params,
            permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            dummy_hash: Arc::from(dummy_hash),
        })
    }

    /// Hashes a password (already normalized) to a PHC string.
    pub async fn hash(&self, password: &str) -> Result<String, ServiceError> {
        let password = Zeroizing::new(password.to_owned());
        let params = self.params.clone();
        self.on_pool(move || hash_with(&params, password.as_bytes()))
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
        self.on_pool(move || {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Verification::Mismatch;
            };
            let matched = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
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

    async fn on_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Unexpected(anyhow::anyhow!("hashing pool closed")))?;
        // The permit moves into the blocking task: if the caller goes away (a client hangs up
        // mid-login), the hash still counts against the limit until it has finished.
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await
        .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("hashing task: {error}")))
    }
}

fn hash_with(params: &Params, password: &[u8]) -> Result<String, ServiceError> {
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon2
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("argon2 hashing: {error}")))
}

/// Hashes with the given parameters on the calling thread: the benchmark's baseline.
pub fn hash_blocking(config: PasswordParams, password: &[u8]) -> Result<String, ServiceError> {
    let params = Params::new(
        config.memory_kib,
        config.iterations,
        config.parallelism,
        None,
    )
    .map_err(|error| ServiceError::Unexpected(anyhow::anyhow!("argon2 parameters: {error}")))?;
    hash_with(&params, password)
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
