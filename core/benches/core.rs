//! Core micro-benchmarks: tree appends, proofs at 1M leaves, verification
//! (one proof, and a batch of 1024 neighbours one by one and together),
//! and the raw SHA-256 rate for the same input sizes (the hashing limit).
//!
//! Run: `cargo bench -p tlog-core --bench core`.
//!
//! An append of a 64-byte leaf needs at least one SHA-256 over 65 bytes
//! (the leaf hash) plus, amortized, one over 65 bytes (one node hash per
//! leaf), so the hashing limit for appends is `1 / (2 * t(sha256, 65 B))`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use tlog_core::merkle::cache::TileCache;
use tlog_core::merkle::prove::Prover;
use tlog_core::merkle::store::MemoryStore;
use tlog_core::merkle::tree::Tree;
use tlog_core::merkle::verify::{InclusionVerifier, verify_consistency, verify_inclusion};
use tlog_core::{Hash, leaf_hash};

const LEAVES: u64 = 1 << 20;

fn leaf(i: u64) -> [u8; 64] {
    let mut l = [0u8; 64];
    l[..8].copy_from_slice(&i.to_le_bytes());
    l
}

fn sha256(c: &mut Criterion) {
    let mut g = c.benchmark_group("sha256");
    g.throughput(Throughput::Elements(1));
    let input = [7u8; 65];
    g.bench_function("65 bytes (leaf or node hash input)", |b| {
        b.iter(|| Sha256::digest(black_box(&input)))
    });
    g.finish();
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("tree");
    const N: u64 = 100_000;
    g.throughput(Throughput::Elements(N));
    g.sample_size(20);
    g.bench_function("append 100k 64-byte leaves (memory store)", |b| {
        b.iter_batched(
            || {
                (
                    Tree::new(),
                    MemoryStore::new(),
                    Vec::with_capacity(2 * N as usize),
                )
            },
            |(mut tree, mut store, mut out)| {
                for i in 0..N {
                    tree.append(leaf_hash(&leaf(i)), &mut out);
                }
                store.write(&out).expect("dense");
                (tree.root(), store)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let mut tree = Tree::new();
    let mut store = MemoryStore::new();
    let mut out = Vec::new();
    for i in 0..LEAVES {
        tree.append(leaf_hash(&leaf(i)), &mut out);
    }
    store.write(&out).expect("dense");
    let root = tree.root();
    let prover = Prover::new(&store);
    let mut g = c.benchmark_group("proofs at 1M leaves");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("inclusion proof", |b| {
        b.iter(|| {
            i = (i + 7_919) % LEAVES;
            prover.inclusion_proof(i, LEAVES).expect("proof")
        })
    });
    let cache = TileCache::new(8192);
    let cached = Prover::with_cache(&store, &cache);
    let mut j = 0u64;
    g.bench_function("inclusion proof (tile cache)", |b| {
        b.iter(|| {
            j = (j + 7_919) % LEAVES;
            cached.inclusion_proof(j, LEAVES).expect("proof")
        })
    });
    let mut s = 1u64;
    g.bench_function("consistency proof", |b| {
        b.iter(|| {
            s = (s + 7_919) % (LEAVES - 1) + 1;
            prover.consistency_proof(s, LEAVES).expect("proof")
        })
    });
    let index = 123_456u64;
    let p = prover.inclusion_proof(index, LEAVES).expect("proof");
    let lh = leaf_hash(&leaf(index));
    g.bench_function("verify inclusion", |b| {
        b.iter(|| verify_inclusion(index, LEAVES, black_box(&lh), &p, &root).expect("ok"))
    });
    let size1 = 654_321u64;
    let old_root: Hash = prover.root_at(size1).expect("root");
    let cp = prover.consistency_proof(size1, LEAVES).expect("proof");
    g.bench_function("verify consistency", |b| {
        b.iter(|| verify_consistency(size1, LEAVES, &cp, black_box(&old_root), &root).expect("ok"))
    });
    g.finish();

    // A batch of appends: the proofs of the last 1024 leaves, made and
    // verified one by one, and together.
    const BATCH: u64 = 1024;
    let indexes: Vec<u64> = (LEAVES - BATCH..LEAVES).collect();
    let leaves: Vec<Hash> = indexes.iter().map(|&i| leaf_hash(&leaf(i))).collect();
    let batch = cached.inclusion_proofs(&indexes, LEAVES).expect("proofs");
    let mut g = c.benchmark_group("1024 neighbouring proofs at 1M leaves");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("make one by one (tile cache)", |b| {
        b.iter(|| {
            for &i in &indexes {
                black_box(cached.inclusion_proof(i, LEAVES).expect("proof"));
            }
        })
    });
    g.bench_function("make together (tile cache)", |b| {
        b.iter(|| {
            cached
                .inclusion_proofs(black_box(&indexes), LEAVES)
                .expect("proofs")
        })
    });
    g.bench_function("verify one by one", |b| {
        b.iter(|| {
            for ((&i, lh), p) in indexes.iter().zip(&leaves).zip(&batch) {
                verify_inclusion(i, LEAVES, black_box(lh), p, &root).expect("ok");
            }
        })
    });
    g.bench_function("verify together (InclusionVerifier)", |b| {
        b.iter(|| {
            let mut v = InclusionVerifier::new(LEAVES, root);
            for ((&i, lh), p) in indexes.iter().zip(&leaves).zip(&batch) {
                v.verify(i, black_box(lh), p).expect("ok");
            }
        })
    });
    g.finish();
}

criterion_group!(benches, sha256, append, proofs);
criterion_main!(benches);
