//! The log's promise against its own disk, with the real binaries: a
//! damaged write-ahead log after SIGKILL, a store set back to an older
//! copy, a start that is refused. Each must be refused loudly, lose
//! nothing, and leave a way back (`tlog-server recover`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tlog_client::Client;
use tlog_e2e::invariants::event;
use tlog_e2e::{Server, cmd, copy_dir, init, run};

/// Runs `tlog-server serve` over `data_dir`, which must refuse to start:
/// returns its standard error, and checks it wrote no ready file.
fn refused_start(data_dir: &Path) -> String {
    let ready = data_dir.join("refused.ready");
    let mut child = cmd("tlog-server")
        .args(["serve", "--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tlog-server");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(!status.success(), "the server must refuse to start");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started (or hung) instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        !ready.exists(),
        "a server that refused to start wrote its ready file"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Appends `n` events (batches of 50) with ids `tag-0..`; returns the
/// checkpoint of the last answer (as handed out to the client).
fn append(url: &str, vkey: &str, tag: &str, n: usize) -> tlog_core::checkpoint::SignedCheckpoint {
    rt().block_on(async {
        let mut c = Client::connect(url, vkey).await.expect("connect");
        let mut last = None;
        for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
            let events: Vec<_> = chunk
                .iter()
                .map(|i| event(format!("{tag}-{i}"), *i as u64))
                .collect();
            let got = c.append_batch(&events).await.expect("append");
            last = got.last().map(|e| e.checkpoint.clone());
        }
        last.expect("appended something")
    })
}

#[test]
fn a_refused_start_writes_no_ready_file_and_says_why_once() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), "promise.test/log");
    std::fs::remove_file(dir.path().join("log.key")).expect("remove key");
    let err = refused_start(dir.path());
    assert!(err.contains("log.key"), "{err}");
    // A missing key says what to do, once.
    assert_eq!(err.matches("does not exist").count(), 1, "said once: {err}");
    assert!(err.contains("tlog-server init --data-dir"), "{err}");
    // A data directory that holds no log.
    let empty = tempfile::tempdir().expect("tmp");
    std::fs::write(empty.path().join("log.key"), "x").expect("write");
    let err = refused_start(empty.path());
    assert!(!err.is_empty());
}

#[test]
fn a_flipped_byte_in_the_wal_after_sigkill_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let vkey = init(dir.path(), "promise.test/log");
    let server = Server::start(dir.path());
    let cp = append(&server.url, &vkey, "wal", 600);
    assert_eq!(cp.checkpoint.size, 600);
    server.kill();
    let db = dir.path().join("db");
    let wal = std::fs::read_dir(&db)
        .expect("db")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a write-ahead log");
    let mut bytes = std::fs::read(&wal).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&wal, &bytes).expect("write");
    let err = refused_start(dir.path());
    let name = wal.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(err.contains("corruption"), "{err}");
    assert!(err.contains(name), "names the file: {err}");
    assert!(
        err.contains("tlog-server recover"),
        "says how to recover: {err}"
    );
    assert_eq!(
        std::fs::read(&wal).expect("kept"),
        bytes,
        "the WAL is untouched"
    );
}

#[test]
fn a_rolled_back_store_is_refused_until_recovered_from_a_copy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("log");
    let vkey = init(&dir, "promise.test/log");
    let server = Server::start(&dir);
    append(&server.url, &vkey, "a", 100);
    assert!(server.stop());
    // An older copy of the store (a backup taken at 100).
    let old = tmp.path().join("old");
    copy_dir(&dir.join("db"), &old.join("db"));

    let server = Server::start(&dir);
    let handed_out = append(&server.url, &vkey, "b", 100);
    assert_eq!(handed_out.checkpoint.size, 200);
    assert!(server.stop());
    // A copy of the whole log, as a replica or a later backup would have.
    let copy = tmp.path().join("copy");
    copy_dir(&dir.join("db"), &copy.join("db"));

    // The older store put back in place, valid checksums and all.
    std::fs::remove_dir_all(dir.join("db")).expect("rm");
    copy_dir(&old.join("db"), &dir.join("db"));
    let err = refused_start(&dir);
    assert!(err.contains("rolled back"), "{err}");
    assert!(err.contains("holds 100 entries"), "{err}");
    assert!(err.contains("size 200"), "{err}");

    let d = dir.to_str().expect("utf8");
    let recover = |how: &[&str]| {
        let mut args = vec!["recover", "--data-dir", d];
        args.extend(how);
        run("tlog-server", &args)
    };
    let err = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    // Adopting the old store as the latest state is refused: the lock knows better.
    let out = recover(&["--adopt-store"]);
    assert!(!out.status.success());
    assert!(err(&out).contains("rolled back"), "{}", err(&out));
    // A copy that is itself too old cannot bring it back.
    let out = recover(&["--from", old.to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(err(&out).contains("has signed size 200"), "{}", err(&out));
    // The full copy does; every entry is checked on the way in.
    let out = recover(&["--from", copy.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", err(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-imported entries 100..200"));

    let server = Server::start(&dir);
    rt().block_on(async {
        let mut c = Client::connect(&server.url, &vkey).await.expect("connect");
        // Entry 150 came back with its proof; the log appends on top of
        // 200, consistently with what it had handed out.
        c.prove_index(150).await.expect("re-imported entry proves");
        let e = c.append(&event("after".into(), 1)).await.expect("append");
        assert_eq!(e.index, 200);
        c.prove_consistency(&handed_out, &e.checkpoint)
            .await
            .expect("consistent with the checkpoint handed out before the rollback");
        // Retries of re-imported events are still retries.
        let again = c.append(&event("b-60".into(), 60)).await.expect("retry");
        assert!(again.duplicate);
        assert_eq!(again.index, 160);
    });
    assert!(server.stop());
}
