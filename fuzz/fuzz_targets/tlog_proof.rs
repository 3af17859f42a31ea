//! c2sp.org/tlog-proof files: parse arbitrary text; what parses writes
//! back to the same text, and verifying it never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tlog_core::tlog_proof::TlogProof;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(p) = TlogProof::parse(s)
    {
        assert_eq!(p.to_text(), s);
        let _ = p.verify_carried(&tlog_core::note::Verifiers::new([]), "fuzz.example/log");
    }
});
