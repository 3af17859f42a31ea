//! The `tlog.v1` protocol.
