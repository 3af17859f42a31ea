//! C2SP tiles: tile paths (parse, and a parsed path writes back to the
//! same text) and entry bundles (parse; what parses re-encodes to the
//! same bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tlog_core::tiles::{TilePath, parse_bundle, push_entry};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(t) = TilePath::parse(s)
    {
        assert_eq!(t.to_path(), s);
        let _ = t.exists_in(u64::MAX);
    }
    if let Ok(entries) = parse_bundle(data) {
        let mut again = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            push_entry(&mut again, i, e).expect("a parsed entry fits");
        }
        assert_eq!(again, data);
    }
});
