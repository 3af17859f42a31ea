//! c2sp.org/tlog-policy files: parse arbitrary bytes; a policy that parses
//! evaluates any set of cosigners without panicking, and checking a note
//! against it never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tlog_core::policy::Policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Policy::parse(data) {
        let n = p.witnesses().len();
        let _ = p.quorum_met(&vec![true; n]);
        let _ = p.quorum_met(&[]);
        let _ = p.check(data, None);
    }
});
