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
    /// Authenticated, but this caller may not do this; the message says why.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such thing, or one the caller may not know exists.
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    /// A refusal with its own stable code, e.g. `invitation_expired` or `last_admin`.
    #[error("{code}: {message}")]
    Refused {
        kind: Refusal,
        code: &'static str,
        message: String,
    },
    /// Too many log-in attempts for this login name (known or not): try again after this
    /// many seconds, or reset the password.
    #[error("locked for {retry_after_seconds} s")]
    Locked { retry_after_seconds: u64 },
    /// The password was right and two-step verification is on: finish with the second factor
    /// and this challenge.
    #[error("second factor required")]
    SecondFactorRequired { challenge: String },
    /// The password was right but is an initial one (an organization-local account, ACC-7):
    /// set a new password with this challenge before anything else.
    #[error("password change required")]
    PasswordChangeRequired { challenge: String },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The kind of a coded refusal, which the edge maps to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The caller may not (403).
    Forbidden,
    /// The current state does not allow it (409).
    Conflict,
    /// It existed but is no longer usable (410).
    Gone,
    /// The caller did not prove who it is (401), e.g. a wrong second factor.
    Unauthenticated,
}

impl ServiceError {
    pub fn field(field: &str, message: &str) -> ServiceError {
        ServiceError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn forbidden(message: impl Into<String>) -> ServiceError {
        ServiceError::Forbidden(message.into())
    }

    pub fn refused(kind: Refusal, code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::Refused {
            kind,
            code,
            message: message.into(),
        }
    }
}

impl From<mamori_core::org::Denied> for ServiceError {
    fn from(denied: mamori_core::org::Denied) -> Self {
        ServiceError::Forbidden(denied.0.to_owned())
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
