//! A full disk: the real server's data directory on a small tmpfs. Appends
//! fill it; then appends fail with `UNAVAILABLE` naming the full disk,
//! reads keep working, and nothing refused is ever served. When space
//! returns (the tmpfs is grown) appends resume without a restart, and
//! after a restart every acknowledged append is still there with valid
//! proofs.
//!
//! Mounting a tmpfs needs root (or CAP_SYS_ADMIN); where that is not
//! allowed the test says so and passes without running.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tlog_client::{Client, ClientError, ConnectOptions};
use tlog_e2e::invariants::{Seen, event, record, verify};
use tlog_e2e::{Rng, Server, init};

/// A tmpfs of `mb` MiB at `dir`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mb: u32) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(dir.to_owned()))
    }

    fn resize(&self, mb: u32) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={mb}m")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "could not grow the tmpfs");
    }
}

impl Tmpfs {
    /// MiB in use, rounded up.
    fn used_mb(&self) -> u32 {
        let out = Command::new("df")
            .args(["--output=used", "-B1M"])
            .arg(&self.0)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<u32>().ok())
            .expect("df prints the used size")
            + 1
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The server's message, if `e` is an `UNAVAILABLE` answer.
fn unavailable(e: &ClientError) -> Option<String> {
    match e {
        ClientError::Refused {
            code: tonic::Code::Unavailable,
            message,
        } => Some(message.clone()),
        _ => None,
    }
}

#[test]
fn a_full_disk_refuses_appends_keeps_reads_and_recovers() {
    let dir = tempfile::tempdir().expect("tmp");
    let mnt = dir.path().join("mnt");
    let fs = match Tmpfs::mount(&mnt, 24) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here ({}); run as root",
                why.trim()
            );
            return;
        }
    };
    let data = mnt.join("data");
    let vkey = init(&data, "full.example/log");
    let server = Server::start(&data);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let seen = Mutex::new(Seen::default());
    let opts = ConnectOptions {
        retries: Some(0),
        ..Default::default()
    };
    rt.block_on(async {
        let mut c = Client::connect_with(&server.url, &vkey, &opts)
            .await
            .expect("connect");
        // Fill the disk.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut n = 0u64;
        let refusal = loop {
            assert!(Instant::now() < deadline, "24 MiB never filled");
            let ids: Vec<String> = (0..64).map(|k| format!("fill-{n}-{k}")).collect();
            let events: Vec<_> = ids.iter().map(|id| event(id.clone(), n)).collect();
            n += 1;
            match c.append_batch(&events).await {
                Ok(entries) => record(&seen, entries, ids),
                Err(e) => match unavailable(&e) {
                    Some(text) => break text,
                    None => panic!("a full disk must answer UNAVAILABLE, not: {e}"),
                },
            }
        };
        assert!(
            refusal.contains("No space left on device"),
            "the refusal does not say the disk is full: {refusal}"
        );
        // Still full: appends keep failing the same way, reads work.
        for i in 0..3 {
            let e = c
                .append(&event(format!("while-full-{i}"), i))
                .await
                .expect_err("the disk is still full");
            assert!(unavailable(&e).is_some(), "{e}");
        }
        let s = std::mem::take(&mut *seen.lock().expect("lock"));
        let mut rng = Rng::new(7);
        verify(&server.url, &vkey, &s, &mut rng).await;
        *seen.lock().expect("lock") = s;
        // Some space returns: what the store says it needs to resume
        // (`RESUME_FREE_SPACE`, about 52 MiB, less than RocksDB's default
        // memtable alone would reserve with its write-ahead log), and
        // appends resume without a restart.
        let used_mb = fs.used_mb();
        let resume_mb = tlog_server::storage::RESUME_FREE_SPACE.div_ceil(1 << 20) as u32;
        fs.resize(used_mb + resume_mb);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c.append(&event(format!("after-{n}"), n)).await {
                Ok(e) => {
                    record(&seen, vec![e], vec![format!("after-{n}")]);
                    break;
                }
                Err(e) => {
                    assert!(unavailable(&e).is_some(), "{e}");
                    if Instant::now() >= deadline {
                        let log = std::fs::read_to_string(data.join("db/LOG")).unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(40).collect();
                        let df = Command::new("df").arg(&mnt).output().map(|o| o.stdout).unwrap_or_default();
                        panic!(
                            "appends did not resume after space returned: {e}\n{}\nRocksDB LOG (last lines, newest first):\n{}",
                            String::from_utf8_lossy(&df),
                            tail.join("\n")
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            n += 1;
        }
        for i in 0..20 {
            let id = format!("resumed-{i}");
            let e = c.append(&event(id.clone(), i)).await.expect("append");
            record(&seen, vec![e], vec![id]);
        }
    });
    assert!(server.stop(), "server stops cleanly");
    // After a restart everything acknowledged is there, proofs verify, and
    // every checkpoint handed out is a prefix of the log.
    let server = Server::start(&data);
    let s = seen.lock().expect("lock");
    let mut rng = Rng::new(11);
    rt.block_on(verify(&server.url, &vkey, &s, &mut rng));
    eprintln!(
        "full disk: {} appends acknowledged, all present after the restart",
        s.acked.len()
    );
    assert!(server.stop());
    drop(fs);
}
