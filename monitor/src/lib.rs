//! `tlog-monitor`: the process that watches logs for forks, split views,
//! rollbacks and unexpected artifact versions.
//!
//! Not built yet (issue [5/8]).
