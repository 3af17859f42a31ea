//! Signed notes (C2SP signed-note): open arbitrary bytes against a known
//! key. An opened note's text ends in a newline and every verified
//! signature checks again over it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tlog_core::note::{Signer, Verifiers};

fuzz_target!(|data: &[u8]| {
    let signer = Signer::from_seed("fuzz.example/log", &[9; 32]).expect("signer");
    let v = signer.verifier();
    let known = Verifiers::new([v.clone()]);
    if let Ok(note) = tlog_core::note::open(data, &known) {
        assert!(note.text.ends_with('\n'));
        for s in &note.verified {
            assert!(v.verify(&note.text, &s.sig));
        }
    }
});
