//! Checkpoints (C2SP tlog-checkpoint): parse arbitrary text; what parses
//! must print back to text that parses to the same checkpoint.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tlog_core::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cp) = Checkpoint::parse(text)
    {
        let again = Checkpoint::parse(&cp.to_text()).expect("printed checkpoint parses");
        assert_eq!(again, cp);
    }
});
