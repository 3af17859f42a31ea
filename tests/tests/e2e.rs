//! End-to-end tests with the real binaries, one module per concern.

/// A server with TLS, tokens and the example policy, driven by the CLI.
mod access;
/// Every `tlog` subcommand, evidence bundles, a forked log.
mod cli;
/// The CLI's answers to bad input.
mod cli_errors;
/// The real monitor against real servers.
mod monitor;
/// Restart across a graceful stop: everything still proves, and the log
/// only grew.
mod restart;
