//! `tlog-bench`: load generators, bulk loaders and limits probes for tlog.
//! They live here, not in `tlog-server`, so the binary operators run holds
//! only what they run (ARCHITECTURE.md, "Parts").
//!
//! - [`workload`]: synthetic events and commits shaped like the
//!   sequencer's, shared by the loader, the limits probe and the storage
//!   micro-benchmarks (`cargo bench -p tlog-bench --bench storage`).
//! - [`run`]: `tlog-bench run`, concurrent clients against a running log.
//! - [`load`]: `tlog-bench load` and `tlog-bench limits`.
//! - [`tiles`]: `tlog-bench tiles`, HTTP clients fetching hot tiles.
//! - [`proofs`]: `tlog-bench proofs`, verified proofs over gRPC or tiles.

pub mod load;
pub mod proofs;
pub mod run;
pub mod tiles;
pub mod workload;
