//! The API test suite: every test talks to the real server over loopback, on SQLite and on
//! PostgreSQL (see `mamori_testkit::engine_tests!`).

mod accounts;
mod conformance;
