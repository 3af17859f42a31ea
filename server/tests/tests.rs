//! Integration tests for `tlog-server`, with servers started in-process on
//! `127.0.0.1:0`. One module per concern.

/// Access control: mTLS, tokens, Cedar policies, the access log, reload.
mod access;
/// Every validation rule and bad read gets the right status code.
mod bad_input;
/// Shared helpers: start a server, build events, verify answers.
mod common;
/// 64 concurrent clients, 5,000 events, everything verified.
mod concurrent;
/// Corruption after start: never a false proof, DATA_LOSS instead.
mod corruption;
/// Faults in the write path: failed commits, commits that land but fail.
mod faults;
/// Hostile clients: malformed protobuf, huge fields, idle connections.
mod hostile;
/// Retries return the original; conflicts are refused.
mod idempotency;
/// Metrics, reflection, back-pressure.
mod operations;
/// Hostile input to the configuration and policy parsers.
mod parsers;
/// Reads: entries, by hash, proofs at past sizes, queries, watch.
mod reads;
/// Storage: restart checks, corruption refused at start.
mod startup;
/// Storage: the compact indexes, and stores written before them.
mod storage;
/// The HTTP tiles listener, checked against `tlog_tiles`.
mod tiles;
