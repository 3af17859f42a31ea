//! `tlog-core`: the transport-free truth of the transparency log.
//!
//! - [`hash`]: RFC 9162 leaf and node hashes.
//! - [`merkle`]: the RFC 9162 Merkle tree: the RFC's definitions, an
//!   append-only tree over a tile-shaped storage trait, proofs over that
//!   trait, and proof verification.
//! - [`note`], [`checkpoint`], [`cosignature`]: C2SP signed notes, signed
//!   tree heads (checkpoints) and witness cosignatures.
//! - [`event`], [`leaf`]: the artifact-event domain types, their
//!   validation, and the versioned, deterministic leaf encoding.
//! - [`json`]: the JSON form of events and leaves (input and display only;
//!   the committed form is the binary leaf).
//! - [`bundle`]: evidence bundles, verified with no network.
//! - [`text`]: characters that spoof displays, refused and escaped.
//! - [`tiles`]: C2SP tiled-log paths, the tiles of a tree, entry bundles.
//! - [`tlog_proof`]: C2SP offline proofs (`.tlog-proof` files).
//! - [`policy`]: C2SP trust policies (logs, witnesses, the quorum).
//! - [`witness`]: the C2SP witness protocol's formats and checks.
//!
//! What this crate is not: no networking, no async runtime, no database. It
//! has no tokio, tonic or RocksDB dependency, so clients, monitors and
//! auditors can verify with it anywhere.

pub mod bundle;
pub mod checkpoint;
pub mod cosignature;
pub mod event;
pub mod hash;
pub mod json;
pub mod leaf;
pub mod merkle;
pub mod note;
pub mod policy;
pub mod text;
pub mod tiles;
pub mod tlog_proof;
pub mod witness;

pub use hash::{Hash, empty_root, leaf_hash, node_hash};
