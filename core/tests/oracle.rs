//! `rs_merkle` as an independent oracle: with an RFC 6962 hasher (0x01
//! node prefix, leaves given as `SHA-256(0x00 || d)`), its roots and
//! inclusion proofs must equal ours for every size 1..=1000. It keeps the
//! whole tree in memory and has no consistency proofs, so it is only the
//! oracle, never the engine.

use rs_merkle::{Hasher, MerkleTree};
use sha2::{Digest, Sha256};
use tlog_core::merkle::cache::TileCache;
use tlog_core::merkle::prove::Prover;
use tlog_core::merkle::store::MemoryStore;
use tlog_core::merkle::tree::Tree;
use tlog_core::{Hash, leaf_hash};

#[derive(Clone)]
struct Rfc6962;

impl Hasher for Rfc6962 {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            // SHA-256(0x01 || left || right)
            Some(r) => {
                let mut h = Sha256::new();
                h.update([0x01]);
                h.update(left);
                h.update(r);
                h.finalize().into()
            }
            // An unpaired node is promoted unchanged, which gives the
            // RFC's left-balanced shape.
            None => *left,
        }
    }
}

#[test]
fn roots_and_inclusion_proofs_equal_rs_merkle_for_sizes_1_to_1000() {
    let leaves: Vec<Hash> = (0..1000u32)
        .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
        .collect();
    let mut tree = Tree::new();
    let mut store = MemoryStore::new();
    let mut out = Vec::new();
    // Every index of every size: 500,500 proofs, through a tile cache.
    let cache = TileCache::new(64);
    for size in 1..=1000usize {
        out.clear();
        tree.append(leaves[size - 1], &mut out);
        store.write(&out).expect("dense");
        let raw: Vec<[u8; 32]> = leaves[..size].iter().map(|h| h.0).collect();
        let oracle = MerkleTree::<Rfc6962>::from_leaves(&raw);
        assert_eq!(Some(tree.root().0), oracle.root(), "root at size {size}");
        let prover = Prover::with_cache(&store, &cache);
        for i in 0..size {
            let ours: Vec<[u8; 32]> = prover
                .inclusion_proof(i as u64, size as u64)
                .expect("proof")
                .iter()
                .map(|h| h.0)
                .collect();
            let theirs = oracle.proof(&[i]);
            assert_eq!(ours, theirs.proof_hashes(), "proof of {i} in {size}");
        }
    }
}
