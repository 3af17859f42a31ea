//! Evidence bundles: parse and verify arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = tlog_core::bundle::Bundle::parse(data) {
        let _ = b.verify(None);
    }
});
