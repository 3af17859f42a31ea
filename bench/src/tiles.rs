//! `tlog-bench tiles`: concurrent HTTP/1.1 keep-alive clients fetching
//! hot tiles from a tiles listener (or any web server serving published
//! tiles), each answer checked for its status and length; reports
//! requests per second and latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Arguments of `tlog-bench tiles`.
#[derive(clap::Args, Debug)]
pub struct TilesArgs {
    /// The tiles listener, e.g. 127.0.0.1:7402 (host:port, plain HTTP).
    #[arg(long)]
    addr: String,
    /// The log's prefix ("" or e.g. /models).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Fetch this many distinct full level-0 tiles (the hot set), round
    /// robin; with their level-1 tile and the checkpoint among them.
    #[arg(long, default_value_t = 256)]
    hot: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Reads one HTTP/1.1 response (status and `Content-Length` body) from a
/// keep-alive connection; returns the status and the body length.
async fn response(
    s: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<(u16, usize)> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line"))?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| anyhow::anyhow!("no Content-Length"))?;
    let mut have = buf.len() - head_end - 4;
    while have < len {
        let n = s.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the server closed the connection mid-body");
        have += n;
    }
    anyhow::ensure!(
        have == len,
        "more bytes than Content-Length (no pipelining here)"
    );
    Ok((status, len))
}

/// Runs the clients and prints the rate.
pub async fn tiles(a: TilesArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.clients > 0 && a.hot > 0,
        "--clients and --hot must be at least 1"
    );
    let mut paths: Vec<(String, usize)> = (0..a.hot)
        .map(|n| {
            (
                format!(
                    "{}/{}",
                    a.prefix,
                    tlog_core::tiles::TilePath::hashes(0, n, 256).to_path()
                ),
                8192,
            )
        })
        .collect();
    paths.push((format!("{}/checkpoint", a.prefix), 0));
    let paths = Arc::new(paths);
    let done = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + a.duration;
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let (addr, paths, done) = (a.addr.clone(), paths.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await?;
            s.set_nodelay(true)?;
            let mut buf = Vec::with_capacity(16 * 1024);
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < stop_at {
                let (path, want) = &paths[i % paths.len()];
                i += 1;
                let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
                let t = Instant::now();
                s.write_all(req.as_bytes()).await?;
                let (status, len) = response(&mut s, &mut buf).await?;
                lat.push(t.elapsed());
                anyhow::ensure!(status == 200, "{path}: HTTP {status}");
                anyhow::ensure!(
                    *want == 0 || len == *want,
                    "{path}: {len} bytes, not {want}"
                );
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let start = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let n = done.load(Ordering::Relaxed);
    let rate = n as f64 / secs;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"requests": n, "seconds": secs, "per_second": rate, "p50_ms": q(0.5), "p99_ms": q(0.99), "clients": a.clients, "hot_tiles": a.hot})
        );
    } else {
        println!(
            "{n} tile requests in {secs:.1} s: {rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms ({} clients, {} hot tiles)",
            q(0.5),
            q(0.99),
            a.clients,
            a.hot
        );
    }
    Ok(())
}
