//! The domain core of Mamori: identifiers, times, validated values and the rules that decide.
//!
//! This crate does no I/O, is not async and knows nothing of HTTP, SQL or JSON. The current
//! time always comes in as a `now` argument so that every deadline can be tested without
//! sleeping. Anything that needs the outside world belongs in `mamori-service` or further out.

pub mod account;
pub mod audit;
pub mod authz;
pub mod error;
pub mod id;
pub mod lockout;
pub mod org;
pub mod rate;
pub mod session;
pub mod time;

pub use error::{CoreError, FieldError};
pub use id::{
    AccountId, AppId, AuditEventId, InvitationId, MailId, OperatorTokenId, OrgId, PersonalTokenId,
    SessionId, TeamId,
};
pub use time::Timestamp;
