//! The HTTP edge of Mamori: configuration, the axum application, extractors that turn a request
//! into a service call (authentication, CSRF, client IP, JSON), and the one place where service
//! errors become RFC 9457 problems.
//!
//! Handlers hold no business rules: each one parses, calls one use case on
//! `mamori_service::Services`, and converts the answer to a wire type.

pub mod access_log;
pub mod app;
pub mod clock;
pub mod config;
mod error;
mod extract;
mod rate_limit;
mod routes;

pub use app::Application;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, Settings};
pub use error::ApiError;
pub use routes::lifecycle::report_body as lifecycle_report_body;
