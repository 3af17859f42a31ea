//! Verifier keys (C2SP signed-note): parse arbitrary text; a parsed key
//! prints back to the same text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tlog_core::note::Verifier;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(v) = Verifier::from_vkey(text)
    {
        let again = Verifier::from_vkey(&v.to_vkey()).expect("printed key parses");
        assert_eq!(again.to_vkey(), v.to_vkey());
    }
});
