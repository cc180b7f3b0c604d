//! The API test suite: every test talks to the real server over loopback, on SQLite and on
//! PostgreSQL (see `mamori_testkit::engine_tests!`).

// Test helpers outside `#[test]` functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access_logs;
mod accounts;
mod audit;
mod audit_verifier;
mod authz;
mod bad_input;
mod cli;
mod conformance;
mod http;
mod keyring;
mod lifecycle;
mod lifecycle_cli;
mod lifecycle_purge;
mod local_accounts;
mod mail;
mod operator;
mod org_access;
mod orgs;
mod purge;
mod recovery;
mod sessions;
mod tokens;
mod two_step;
