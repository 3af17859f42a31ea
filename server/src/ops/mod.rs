//! What operators run and set: configuration, signing keys and `init`,
//! Prometheus metrics, and re-import of a log from a copy.
//!
//! - [`config`]: `server.toml` and its checks.
//! - [`keys`]: `init` and signing-key loading.
//! - [`metrics`]: the Prometheus registry.
//! - [`recover`]: re-import from a copy of the log, or adopt a store.

pub mod config;
pub mod keys;
pub mod metrics;
pub mod recover;
