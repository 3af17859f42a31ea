//! `tlog-server`: the log server.
