//! The use cases of Mamori. Only this layer changes state, and every use case runs the same
//! steps: decide with the domain core (authorization returns a capability, not a bool), read
//! or write through the store, and record the audit event in the same transaction.
//!
//! Personal data is sealed with the owner's data key here, before it reaches the store. This
//! layer knows nothing of HTTP; the current time always comes in as `now`.

mod accounts;
mod audit;
mod error;
pub mod jobs;
mod operator;
pub mod passwords;
mod sessions;
pub mod tokens;

pub use accounts::{AccountView, SignUp};
pub use audit::{RequestContext, event_hash, event_json};
pub use error::ServiceError;
pub use operator::{NewApp, NewOperatorToken};
pub use passwords::{PasswordHashing, PasswordParams};
pub use sessions::{
    AccountSession, AppPrincipal, Authenticated, NewSession, OperatorPrincipal, SessionView,
    SessionsPage,
};

use mamori_core::session::SessionPolicy;
use mamori_keyring::Keyring;
use mamori_store::Store;
use std::sync::Arc;

/// Everything a use case needs, shared by every request.
pub struct Services {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    passwords: PasswordHashing,
    session_policy: SessionPolicy,
}

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        passwords: PasswordHashing,
        session_policy: SessionPolicy,
    ) -> Services {
        Services {
            store,
            keyring,
            passwords,
            session_policy,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    pub fn passwords(&self) -> &PasswordHashing {
        &self.passwords
    }

    pub fn session_policy(&self) -> SessionPolicy {
        self.session_policy
    }
}
