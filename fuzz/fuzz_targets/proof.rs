//! Proofs (RFC 9162 §2.1.3, §2.1.4): arbitrary hashes and sizes never make
//! the verifiers panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tlog_core::Hash;
use tlog_core::merkle::verify::{parse_proof, verify_consistency, verify_inclusion};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let a = u64::from_le_bytes(data[..8].try_into().expect("8"));
    let b = u64::from_le_bytes(data[8..16].try_into().expect("8"));
    let rest = &data[16..];
    let elems: Vec<&[u8]> = rest.chunks(32).collect();
    let Ok(proof) = parse_proof(&elems) else { return };
    let h = Hash::from_slice(&[1; 32]).expect("hash");
    let _ = verify_inclusion(a, b, &h, &proof, &h);
    let _ = verify_consistency(a, b, &proof, &h, &h);
});
