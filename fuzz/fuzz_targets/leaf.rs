//! Leaves (the log's binary leaf format): decode arbitrary bytes; a leaf
//! that decodes encodes back to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(leaf) = tlog_core::leaf::Leaf::decode(data) {
        assert_eq!(leaf.encode(), data, "decode then encode changed the leaf");
    }
    let _ = tlog_core::leaf::decode_any(data);
});
