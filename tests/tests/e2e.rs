//! End-to-end tests with the real binaries, one module per concern.

/// A server with TLS, tokens and the example policy, driven by the CLI.
mod access;
/// Every `tlog` subcommand, evidence bundles, a forked log.
mod cli;
/// The CLI's answers to bad input.
mod cli_errors;
/// SIGKILL under concurrent appends, cycle after cycle: nothing
/// acknowledged is lost, no checkpoint contradicted.
mod crash;
/// The deployment files: they parse, mount what exists, run real commands.
mod deploy;
/// strace on the real server: every answer follows a synced WAL write.
mod durability;
/// A full disk (a small tmpfs): appends refused, reads served, recovery.
mod full_disk;
/// The real monitor against real servers.
mod monitor;
/// The promise against the disk: a damaged WAL after SIGKILL, a store
/// rolled back, a refused start; each refused, and recovered from a copy.
mod promise;
/// Published tiles behind nginx and in a Garage (S3) bucket, checked against
/// the server and `tlog_tiles`.
mod publish;
/// The deploy recipes replayed with their users, modes and mounts.
mod replay;
/// Restart across a graceful stop: everything still proves, and the log
/// only grew.
mod restart;
/// The CLI and the monitor reading a log from its tiles alone (the
/// server's HTTP listener and an nginx mirror); a tampered mirror caught.
mod tiles_reader;
/// Three real witnesses, a 2-of-3 policy, sync and async modes, a witness
/// stopped and restarted, a fork and a rolled-back store refused.
mod witness;
