//! `tlog-bench proofs`: verified inclusion proofs as a client makes them,
//! over gRPC or from tiles (`tlog_client::tiles`), from concurrent
//! clients; reports proofs/s and latency. Each proof is `Client::prove_index`: the checkpoint
//! verified, the entry fetched, the proof fetched (or built from hash
//! tiles) and verified against the signed root.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Arguments of `tlog-bench proofs`.
#[derive(clap::Args, Debug)]
pub struct ProofsArgs {
    /// The log's gRPC address (http://host:port); or give --tiles.
    #[arg(long)]
    addr: Option<String>,
    /// The log's tiles URL (http://host:port[/prefix]).
    #[arg(long)]
    tiles: Option<String>,
    /// The log's verifier key.
    #[arg(long)]
    vkey: String,
    /// Concurrent clients (each its own connection).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark.
pub async fn proofs(a: ProofsArgs) -> anyhow::Result<()> {
    let connect = |a: &ProofsArgs| {
        let (addr, tiles, vkey) = (a.addr.clone(), a.tiles.clone(), a.vkey.clone());
        async move {
            let opts = tlog_client::ConnectOptions::default();
            match (addr, tiles) {
                (_, Some(t)) => tlog_client::Client::connect_tiles(&t, &vkey, &opts).await,
                (Some(g), None) => tlog_client::Client::connect_with(&g, &vkey, &opts).await,
                (None, None) => Err(tlog_client::ClientError::Usage(
                    "give --addr (gRPC) or --tiles (a tiles URL)".into(),
                )),
            }
        }
    };
    let mut first = connect(&a).await?;
    let size = first.checkpoint().await?.checkpoint.size;
    anyhow::ensure!(size > 0, "the log is empty");
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + a.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..a.clients {
        let mut client = connect(&a).await?;
        let done = done.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            // A different spread of indexes per client (xorshift).
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
            while Instant::now() < end {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let t = Instant::now();
                client.prove_index(x % size).await?;
                lat.push(t.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, tlog_client::ClientError>(lat)
        });
    }
    let start = Instant::now();
    let mut lat = Vec::new();
    while let Some(r) = tasks.join_next().await {
        lat.extend(r??);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let n = done.load(Ordering::Relaxed);
    let via = if a.tiles.is_some() { "tiles" } else { "grpc" };
    if a.json {
        println!(
            "{{\"via\":\"{via}\",\"size\":{size},\"proofs\":{n},\"proofs_per_s\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
            n as f64 / secs,
            pct(0.5),
            pct(0.99)
        );
    } else {
        println!(
            "{via}: {:.0} verified proofs/s ({n} in {secs:.1}s, {} clients, tree of {size}); p50 {:.2} ms, p99 {:.2} ms",
            n as f64 / secs,
            a.clients,
            pct(0.5),
            pct(0.99)
        );
    }
    Ok(())
}
