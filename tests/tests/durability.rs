//! An acknowledged append is on disk before it is acknowledged, shown on
//! the real binary: `strace` follows every thread of a running
//! `tlog-server` and records each `fsync`/`fdatasync` with the file it
//! synced (`-y`), when it started and how long it took (`-ttt -T`). A
//! client sends appends one at a time and notes when it sent each and when
//! the answer came. Every answer must be preceded, inside its own
//! request's window, by a completed sync of RocksDB's write-ahead log.
//! SIGKILL cannot show this (the page cache survives a killed process); a
//! log that answered before syncing would fail here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tlog_client::{Client, ConnectOptions};
use tlog_e2e::invariants::event;
use tlog_e2e::{Server, init};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A completed sync: (start, end) in seconds since the epoch, and the file.
#[derive(Debug)]
struct Sync {
    start: f64,
    end: f64,
    file: String,
}

/// Parses `strace -f -ttt -T -y` output. A call split by another thread
/// (`<unfinished ...>` / `<... resumed>`) ends when it resumes.
fn syncs(trace: &str) -> Vec<Sync> {
    let mut open: std::collections::HashMap<String, (f64, String)> = Default::default();
    let mut out = Vec::new();
    for line in trace.lines() {
        let Some((pid, r)) = line.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let Some((ts, rest)) = r.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim_start();
        let Ok(ts) = ts.parse::<f64>() else { continue };
        let dur = rest
            .rsplit_once('<')
            .and_then(|(_, d)| d.trim_end_matches('>').parse::<f64>().ok());
        let file = rest
            .split_once('<')
            .and_then(|(_, f)| f.split_once('>'))
            .map(|(f, _)| f.to_owned());
        if (rest.starts_with("fsync(") || rest.starts_with("fdatasync(")) && rest.contains("= 0") {
            out.push(Sync {
                start: ts,
                end: ts + dur.unwrap_or(0.0),
                file: file.unwrap_or_default(),
            });
        } else if (rest.starts_with("fsync(") || rest.starts_with("fdatasync("))
            && rest.contains("<unfinished")
        {
            open.insert(pid.to_owned(), (ts, file.unwrap_or_default()));
        } else if (rest.starts_with("<... fsync resumed>")
            || rest.starts_with("<... fdatasync resumed>"))
            && let Some((start, file)) = open.remove(pid)
            && rest.contains("= 0")
        {
            out.push(Sync {
                start,
                end: ts.max(start + dur.unwrap_or(0.0)),
                file,
            });
        }
    }
    out
}

#[test]
fn every_acknowledged_append_follows_a_synced_wal_write() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "durable.example/log");
    let mut server = Server::start(&data);
    let pid = server.pid().expect("pid");
    let trace = dir.path().join("trace.txt");
    let mut strace = std::process::Command::new("strace")
        .args([
            "-f",
            "-ttt",
            "-T",
            "-y",
            "-e",
            "trace=fsync,fdatasync",
            "-o",
        ])
        .arg(&trace)
        .args(["-p", &pid.to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("strace is needed (scripts/setup.sh installs it)");
    // Wait until strace says it has attached (it attaches to every
    // thread at once), then a little longer.
    let stderr = strace.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("attached") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("strace did not attach (is ptrace allowed?)");
    std::thread::sleep(Duration::from_millis(300));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let windows: Vec<(u64, f64, f64)> = rt.block_on(async {
        let opts = ConnectOptions {
            retries: Some(0),
            ..Default::default()
        };
        let mut c = Client::connect_with(&server.url, &vkey, &opts)
            .await
            .expect("connect");
        let mut w = Vec::new();
        for i in 0..40 {
            let sent = now();
            let e = c.append(&event(format!("d-{i}"), i)).await.expect("append");
            let answered = now();
            w.push((e.index, sent, answered));
        }
        for b in 0..5 {
            let events: Vec<_> = (0..8).map(|k| event(format!("b-{b}-{k}"), k)).collect();
            let sent = now();
            let es = c.append_batch(&events).await.expect("batch");
            let answered = now();
            for e in es {
                w.push((e.index, sent, answered));
            }
        }
        w
    });
    assert!(server.stop(), "server stops cleanly");
    let _ = strace.wait();
    let text = std::fs::read_to_string(&trace).expect("trace");
    let all = syncs(&text);
    let wal: Vec<&Sync> = all.iter().filter(|s| s.file.ends_with(".log")).collect();
    assert!(
        !wal.is_empty(),
        "no sync of a write-ahead log seen; trace:\n{text}"
    );
    for (index, sent, answered) in &windows {
        assert!(
            wal.iter().any(|s| s.start >= *sent && s.end <= *answered),
            "entry {index} was acknowledged without a completed WAL sync between its \
             request ({sent:.6}) and its answer ({answered:.6})"
        );
    }
    eprintln!(
        "{} acknowledged appends, each after a WAL sync; {} syncs traced ({} of the WAL)",
        windows.len(),
        all.len(),
        wal.len()
    );
}

#[test]
fn the_trace_parser_reads_split_and_whole_calls() {
    let t = "12  1700000000.100000 fdatasync(9</d/000004.log>) = 0 <0.000500>\n\
             13 1700000000.200000 fsync(10</d/MANIFEST-000005> <unfinished ...>\n\
             12 1700000000.200100 fdatasync(9</d/000004.log>) = -1 EIO (Input/output error) <0.000010>\n\
             13 1700000000.300000 <... fsync resumed>) = 0 <0.100000>\n";
    let s = syncs(t);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0].file, "/d/000004.log");
    assert!((s[0].end - 1_700_000_000.100_5).abs() < 1e-6);
    assert_eq!(s[1].file, "/d/MANIFEST-000005");
    assert!((s[1].end - 1_700_000_000.3).abs() < 1e-6);
}
