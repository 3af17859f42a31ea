//! The real server under concurrent appends, killed with SIGKILL at random
//! moments and restarted, cycle after cycle. After every restart:
//!
//! - every append that was acknowledged is at its acknowledged index, and
//!   its inclusion proof from the restarted log verifies;
//! - every checkpoint ever handed out is a prefix of the restarted log
//!   (so consistent with every later one), and a sample is proven so by
//!   the log's own consistency proofs;
//! - no index was acknowledged twice;
//!
//! and at the end the monitor, auditing the whole history from scratch
//! with every checkpoint handed out gossiped to it, finds nothing.
//!
//! `TLOG_CRASH_CYCLES` sets the number of cycles (default 5; the long run
//! is `scripts/crash-test.sh`, 50); `TLOG_CRASH_SEED` replays a run.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tlog_client::{Client, ClientError, ConnectOptions};
use tlog_e2e::invariants::{Seen, event, record, verify};
use tlog_e2e::{Rng, Server, init, run};

/// Appends until the connection breaks: singles, or batches of 4 for every
/// third task. Never retries, so an unanswered append stays unknown.
async fn load(url: String, vkey: String, cycle: usize, task: usize, seen: Arc<Mutex<Seen>>) {
    let opts = ConnectOptions {
        retries: Some(0),
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let Ok(mut c) = Client::connect_with(&url, &vkey, &opts).await else {
        return;
    };
    let size = if task.is_multiple_of(3) { 4 } else { 1 };
    for n in 0u64.. {
        let ids: Vec<String> = (0..size)
            .map(|k| format!("c{cycle}-t{task}-n{n}-{k}"))
            .collect();
        let events: Vec<_> = ids.iter().map(|id| event(id.clone(), n)).collect();
        let r = if size == 1 {
            c.append(&events[0]).await.map(|e| vec![e])
        } else {
            c.append_batch(&events).await
        };
        match r {
            Ok(entries) => record(&seen, entries, ids),
            Err(
                e @ (ClientError::Verification(_)
                | ClientError::Misbehavior(_)
                | ClientError::AppendedUnverified { .. }),
            ) => {
                seen.lock().expect("lock").bad.push(e.to_string());
                return;
            }
            // The server died under us: this append's fate is unknown.
            Err(_) => return,
        }
    }
}

fn cycles() -> usize {
    std::env::var("TLOG_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// `tlog-monitor check` over the whole log, with `checkpoints` gossiped:
/// must find nothing.
fn monitor_finds_nothing(dir: &Path, url: &str, vkey: &str, seen: &Seen) {
    let gossip = dir.join("gossip");
    std::fs::create_dir_all(&gossip).expect("gossip dir");
    for (n, raw) in seen.checkpoints.keys().enumerate() {
        std::fs::write(gossip.join(format!("{n}.checkpoint")), raw).expect("write");
    }
    let cfg = dir.join("monitor.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = {:?}\ngossip_dir = {gossip:?}\n[[log]]\nname = \"crash\"\nvkey = {vkey:?}\nendpoints = [{url:?}]\ntimeout = \"60s\"\n",
            dir.join("monitor-state")
        ),
    )
    .expect("config");
    let out = run(
        "tlog-monitor",
        &["check", "--config", cfg.to_str().expect("utf8")],
    );
    let alerts = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && alerts.trim().is_empty(),
        "the monitor found something: {alerts}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = gossip.join("refused");
    assert!(
        !refused.exists() || std::fs::read_dir(&refused).expect("dir").next().is_none(),
        "the monitor refused a gossiped checkpoint"
    );
}

#[test]
fn sigkill_under_concurrent_appends_loses_nothing_acknowledged() {
    let seed = Rng::seed_from_env("TLOG_CRASH_SEED");
    eprintln!("crash test: seed {seed} (TLOG_CRASH_SEED={seed} replays it)");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "crash.example/log");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let cycles = cycles();
    for cycle in 0..cycles {
        let server = Server::start(&data);
        {
            let s = seen.lock().expect("lock");
            rt.block_on(verify(&server.url, &vkey, &s, &mut rng));
        }
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                rt.spawn(load(
                    server.url.clone(),
                    vkey.clone(),
                    cycle,
                    t,
                    seen.clone(),
                ))
            })
            .collect();
        // Kill at a random moment of the load: 20 to 400 ms in.
        std::thread::sleep(Duration::from_millis(20 + rng.below(380)));
        let before = seen.lock().expect("lock").acked.len();
        server.kill();
        rt.block_on(async {
            for t in tasks {
                tokio::time::timeout(Duration::from_secs(30), t)
                    .await
                    .expect("a load task hung after the kill")
                    .expect("load task");
            }
        });
        let s = seen.lock().expect("lock");
        eprintln!(
            "cycle {cycle}: killed with {} acknowledged ({before} when the kill was sent), {} checkpoints",
            s.acked.len(),
            s.checkpoints.len()
        );
    }
    let server = Server::start(&data);
    let s = seen.lock().expect("lock");
    assert!(
        s.acked.len() > cycles * 10,
        "too little load to mean anything: {} acknowledged",
        s.acked.len()
    );
    rt.block_on(verify(&server.url, &vkey, &s, &mut rng));
    monitor_finds_nothing(dir.path(), &server.url, &vkey, &s);
    assert!(server.stop(), "the server did not stop cleanly");
}
