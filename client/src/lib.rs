//! `tlog-client`: the Rust client library and the `tlog` command-line tool.
//!
//! Not built yet (issue [4/8]). It will connect to a log server, verify every
//! checkpoint signature and proof it receives against a pinned verifier key,
//! keep a trusted-state file, and offer `submit`, `prove`, `query`, `export`
//! and `verify-bundle` to registries, CI jobs and investigators.
