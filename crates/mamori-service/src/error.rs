//! The service layer's error: what a caller can act on, plus one opaque variant for failures
//! that are only reported.

use mamori_core::{CoreError, FieldError};
use mamori_keyring::KeyringError;
use mamori_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Wrong email or password, told apart from nothing else so accounts cannot be enumerated.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("not authenticated")]
    Unauthenticated,
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ServiceError {
    pub fn field(field: &str, message: &str) -> ServiceError {
        ServiceError::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<CoreError> for ServiceError {
    fn from(error: CoreError) -> Self {
        match error {
            CoreError::Validation(errors) => ServiceError::Validation(errors),
        }
    }
}

impl From<FieldError> for ServiceError {
    fn from(error: FieldError) -> Self {
        ServiceError::Validation(vec![error])
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        ServiceError::Unexpected(anyhow::Error::new(error).context("store"))
    }
}

impl From<KeyringError> for ServiceError {
    fn from(error: KeyringError) -> Self {
        ServiceError::Unexpected(anyhow::Error::new(error).context("keyring"))
    }
}
