//! Storage-layer micro-benchmarks: the RocksDB store as the server uses it.
//!
//! Run: `cargo bench -p tlog-bench --bench storage`.
//!
//! - synced commits of 1, 64 and 1024 entries shaped like the sequencer's
//!   (the storage limit `tlog-bench limits` reports, per entry);
//! - point reads at 1M entries: a leaf, a leaf-hash lookup, an idempotency
//!   lookup (hit and miss), a row of 16 tree hashes;
//! - inclusion proofs read straight from the store, without the tile
//!   cache, at tree sizes 2^10 .. 2^20 in the same store: the number of
//!   hashes read grows as log n, and so should the time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tlog_bench::workload::commit_batch;
use tlog_core::merkle::prove::Prover;
use tlog_core::merkle::store::HashReader as _;
use tlog_core::merkle::tree::Tree;
use tlog_server::storage::{LogStore as _, RocksStore};

const CHECKPOINT: &str = "bench.example/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} bench.example/log AAAA\n";

fn commits(c: &mut Criterion) {
    let mut g = c.benchmark_group("synced commit");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(4));
    for n in [1usize, 64, 1024] {
        let dir = tempfile::tempdir().expect("tmp");
        let store = RocksStore::open(dir.path()).expect("open");
        let mut tree = Tree::new();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("entries", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let batch = commit_batch(&mut tree, n, CHECKPOINT);
                    let t = Instant::now();
                    store.commit(&batch).expect("commit");
                    spent += t.elapsed();
                }
                spent
            })
        });
    }
    g.finish();
}

/// A store holding `n` entries (a power of two times 1024).
fn filled(n: u64) -> (tempfile::TempDir, RocksStore) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = RocksStore::open(dir.path()).expect("open");
    let mut tree = Tree::new();
    while tree.size() < n {
        store
            .commit(&commit_batch(&mut tree, 1024, CHECKPOINT))
            .expect("commit");
    }
    (dir, store)
}

const FILLED: u64 = 1 << 20;

/// A cheap spread of indexes over `[0, n)`.
fn next(i: &mut u64, n: u64) -> u64 {
    *i = (*i + 7_919) % n;
    *i
}

fn reads(c: &mut Criterion) {
    let (_dir, store) = filled(FILLED);
    let mut g = c.benchmark_group("reads at 1M entries");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    let mut i = 0u64;
    g.bench_function("leaf by index", |b| {
        b.iter(|| store.entry(next(&mut i, FILLED)).expect("read"))
    });
    let hashes: Vec<_> = (0..4096u64)
        .map(|k| tlog_core::leaf_hash(&store.entry(k * 251).expect("read").expect("leaf")))
        .collect();
    let mut k = 0usize;
    g.bench_function("index of a leaf hash", |b| {
        b.iter(|| {
            k = (k + 1) % hashes.len();
            store.index_of(&hashes[k]).expect("read")
        })
    });
    g.bench_function("idempotency record, present", |b| {
        b.iter(|| {
            store
                .idempotency("bulk-loader", &format!("load-0-{}", next(&mut i, FILLED)))
                .expect("read")
        })
    });
    g.bench_function("idempotency record, absent", |b| {
        b.iter(|| {
            store
                .idempotency("bulk-loader", &format!("absent-{}", next(&mut i, FILLED)))
                .expect("read")
        })
    });
    let mut out = Vec::with_capacity(16);
    g.bench_function("16 level-0 hashes (one proof row)", |b| {
        b.iter(|| {
            out.clear();
            let start = next(&mut i, FILLED - 16) & !15;
            store.read_hashes(0, start, 16, &mut out).expect("read");
            black_box(out.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("inclusion proof from the store, no cache");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    let prover = Prover::new(&store);
    for bits in [10u32, 12, 14, 16, 18, 20] {
        let size = 1u64 << bits;
        g.bench_with_input(BenchmarkId::new("log2 n", bits), &size, |b, &size| {
            b.iter(|| {
                prover
                    .inclusion_proof(next(&mut i, size), size)
                    .expect("proof")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, commits, reads);
criterion_main!(benches);
