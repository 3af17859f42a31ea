//! The `tlog.v1` protocol: the generated prost messages and tonic
//! client/server for `proto/tlog/v1/tlog.proto`, and nothing else.
//!
//! Generated code stays behind this door: the server and client convert
//! to and from `tlog-core`'s domain types at their edges.

pub mod codec;

/// The protobuf well-known types used by `tlog.v1` (for `Timestamp`).
pub use prost_types;

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("tlog.v1");
}

/// The `tlog.v1` messages, client and server.
pub mod v1 {
    pub use super::generated::*;
}

/// The encoded file descriptor set of `tlog.v1`, for gRPC server
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tlog_v1_descriptor.bin"));
