//! Events as JSON (what `tlog submit` reads): parse arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tlog_core::json::event_from_json(text);
    }
});
