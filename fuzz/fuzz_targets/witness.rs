//! c2sp.org/tlog-witness add-checkpoint bodies: parse arbitrary bytes;
//! what parses writes back to the same bytes, the witness's checks never
//! panic, and a witness's answers are read without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tlog_core::note::Verifiers;
use tlog_core::witness::{AddCheckpoint, Witnessed, check, read_conflict, read_cosignatures};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = AddCheckpoint::parse(data) {
        assert_eq!(r.to_bytes(), data);
        let keys = Verifiers::new([]);
        let _ = check(&r, Some(&keys), None);
        let held = Witnessed {
            size: r.old_size,
            root: tlog_core::Hash([0; 32]),
        };
        let _ = check(&r, Some(&keys), Some(held));
    }
    let _ = read_conflict(data);
    let _ = read_cosignatures("fuzz.example/log\n1\nAAAA\n", data, &Verifiers::new([]));
});
