//! `tlog-bench load` fills a stopped log quickly through the sequencer and
//! the storage code the server uses (every batch hashed into the tree,
//! signed and written as one synced WriteBatch), without the network, so
//! the benchmark suite can measure at millions of entries.
//!
//! `tlog-bench limits` measures what this machine allows at most for the
//! same work: synced RocksDB write batches shaped like the server's
//! commits, SHA-256 over leaves and nodes, and Ed25519 signing and
//! verification.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tlog_core::event::Timestamp;
use tlog_core::leaf::Submitter;
use tlog_server::sequencer::{BatchConfig, Submission};
use tlog_server::storage::{LogStore as _, RocksStore};

/// The arguments of `tlog-bench load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Data directory of a stopped log (from `tlog-server init`).
    #[arg(long, env = "TLOG_DATA_DIR")]
    data_dir: PathBuf,
    /// Fill the log up to this many entries.
    #[arg(long)]
    entries: u64,
    /// Events per append (the sequencer may join appends into one commit).
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Signing key (default `<data-dir>/log.key`).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Appends `--entries` synthetic events to a stopped log through the
/// sequencer and its store, and reports the rate.
pub async fn load(a: LoadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.batch > 0 && a.writers > 0,
        "--batch and --writers must be at least 1"
    );
    let db = tlog_server::ops::keys::db_path(&a.data_dir);
    let store = Arc::new(
        RocksStore::open(&db)
            .with_context(|| format!("open {} (is the server still running?)", db.display()))?,
    );
    let key = a
        .key_file
        .clone()
        .unwrap_or_else(|| a.data_dir.join("log.key"));
    let signer = tlog_server::ops::keys::load_signer(&key)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (seq, task) = tlog_server::sequencer::start(
        store.clone(),
        signer,
        tlog_server::sequencer::lock::CheckpointLock::at(tlog_server::ops::keys::lock_path(
            &a.data_dir,
        )),
        BatchConfig {
            max_events: a.batch * a.writers,
            max_wait: Duration::from_millis(1),
            queue_depth: a.writers * 2,
            enqueue_timeout: Duration::from_secs(120),
        },
        Arc::new(tlog_server::ops::metrics::Metrics::default()),
        stop_rx,
    )?;
    let from = seq.latest().size;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let next = Arc::new(AtomicU64::new(from));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.writers {
        let (seq, next, target, batch) = (seq.clone(), next.clone(), a.entries, a.batch as u64);
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= target {
                    return Ok::<_, anyhow::Error>(());
                }
                let last = (first + batch).min(target);
                let events = (first..last)
                    .map(|i| Submission {
                        event: crate::workload::event(run, i),
                        verified_signers: Vec::new(),
                        scope: None,
                    })
                    .collect();
                seq.append(
                    events,
                    Submitter {
                        principal: "bulk-loader".into(),
                        auth_method: "none".into(),
                        peer: "local".into(),
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("append: {e}"))?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let size = seq.latest().size;
    let _ = stop_tx.send(true);
    drop(seq);
    task.await?;
    let added = size.saturating_sub(from);
    let rate = added as f64 / secs;
    if a.json {
        println!(
            "{{\"from\":{from},\"size\":{size},\"seconds\":{secs:.3},\"entries_per_s\":{rate:.1}}}"
        );
    } else {
        println!("loaded {added} entries ({from} -> {size}) in {secs:.1} s: {rate:.0} entries/s");
    }
    Ok(())
}

/// The arguments of `tlog-bench limits`.
#[derive(clap::Args, Debug)]
pub struct LimitsArgs {
    /// A scratch folder for the RocksDB measurement (default: a new
    /// folder under the system's temporary folder, removed afterwards).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// How long each measurement runs.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Entries per synced write batch to measure (comma separated).
    #[arg(long, default_value = "1,16,64,256,1024", value_delimiter = ',')]
    batches: Vec<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `f` repeatedly for `d`; returns calls per second.
fn rate(d: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Measures synced write batches shaped like the server's commits,
/// SHA-256 and Ed25519 on this machine, and reports them.
pub fn limits(a: LimitsArgs) -> anyhow::Result<()> {
    use ed25519_dalek::{Signer as _, Verifier as _};
    use std::hint::black_box;
    let leaf = tlog_core::leaf::Leaf {
        version: tlog_core::leaf::LEAF_VERSION,
        event: crate::workload::event(1, 5),
        submitter: Submitter {
            principal: "bench".into(),
            auth_method: "none".into(),
            peer: "127.0.0.1:1".into(),
        },
        integrated_at: Timestamp::now(),
        verified_signers: vec![],
    }
    .encode();
    let leaf_len = leaf.len();
    let sha_leaf = rate(a.duration, || {
        black_box(tlog_core::leaf_hash(black_box(&leaf)));
    });
    let (l, r) = (tlog_core::leaf_hash(b"l"), tlog_core::leaf_hash(b"r"));
    let sha_node = rate(a.duration, || {
        black_box(tlog_core::node_hash(black_box(&l), black_box(&r)));
    });
    let signer = tlog_core::note::Signer::from_seed("limits.example/log", &[3; 32])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let text = "limits.example/log\n123456789\nq6Qm0cXjV8V9w7x0j8hQ0m1r3l6m6fQ6l2bq5K2u4xY=\n";
    let sign = rate(a.duration, || {
        black_box(signer.signing_key().sign(black_box(text.as_bytes())));
    });
    let sig = signer.signing_key().sign(text.as_bytes());
    let vk = signer.signing_key().verifying_key();
    let verify = rate(a.duration, || {
        let _ = black_box(vk.verify(black_box(text.as_bytes()), &sig));
    });

    let scratch = a.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let db_dir = scratch.join(format!("tlog-limits-{}", std::process::id()));
    anyhow::ensure!(!db_dir.exists(), "{} exists", db_dir.display());
    let result = rocks_limits(&db_dir, &a, &signer);
    let _ = std::fs::remove_dir_all(&db_dir);
    let rocks = result?;
    if a.json {
        let list: Vec<String> = rocks
            .iter()
            .map(|(b, c, e)| {
                format!("{{\"batch\":{b},\"commits_per_s\":{c:.1},\"entries_per_s\":{e:.1}}}")
            })
            .collect();
        println!(
            "{{\"leaf_bytes\":{leaf_len},\"sha256_leaf_per_s\":{sha_leaf:.1},\"sha256_node_per_s\":{sha_node:.1},\
             \"ed25519_sign_per_s\":{sign:.1},\"ed25519_verify_per_s\":{verify:.1},\
             \"rocksdb_synced\":[{}]}}",
            list.join(",")
        );
    } else {
        println!("SHA-256 leaf hash ({leaf_len} bytes): {sha_leaf:.0}/s");
        println!("SHA-256 node hash (65 bytes):    {sha_node:.0}/s");
        println!("Ed25519 sign (checkpoint):       {sign:.0}/s");
        println!("Ed25519 verify (checkpoint):     {verify:.0}/s");
        for (b, c, e) in &rocks {
            println!(
                "RocksDB synced commit of {b:>4} entries: {c:.0} commits/s = {e:.0} entries/s"
            );
        }
    }
    Ok(())
}

/// Synced commits of `a.batches` sizes: (batch, commits/s, entries/s).
fn rocks_limits(
    db_dir: &std::path::Path,
    a: &LimitsArgs,
    signer: &tlog_core::note::Signer,
) -> anyhow::Result<Vec<(usize, f64, f64)>> {
    let store = RocksStore::open(db_dir)?;
    let note = signer_note(signer);
    let mut rocks = Vec::new();
    let mut tree = tlog_core::merkle::tree::Tree::new();
    for &b in &a.batches {
        anyhow::ensure!(b > 0, "--batches must be positive");
        // Only the commits are timed; building the batches is not storage.
        let mut spent = Duration::ZERO;
        let mut commits = 0u64;
        while spent < a.duration {
            let batch = crate::workload::commit_batch(&mut tree, b, &note);
            let t = Instant::now();
            store.commit(&batch)?;
            spent += t.elapsed();
            commits += 1;
        }
        let secs = spent.as_secs_f64();
        rocks.push((b, commits as f64 / secs, commits as f64 * b as f64 / secs));
    }
    Ok(rocks)
}

fn signer_note(signer: &tlog_core::note::Signer) -> String {
    tlog_core::checkpoint::Checkpoint::new("limits.example/log", 1, tlog_core::empty_root())
        .sign(signer)
        .unwrap_or_default()
}
