//! Start-up checks: a restart serves everything with valid proofs; a store
//! whose hashes no longer match the last checkpoint, a wrong key or a key
//! readable by others is refused.

use std::os::unix::fs::PermissionsExt as _;

use tlog_proto::v1 as pb;
use tlog_server::ServerError;
use tlog_server::ops::keys;
use tlog_server::sequencer::StartError;

use crate::common::{ORIGIN, TestServer, check_consistent, event, verify_append};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything_and_stays_consistent() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut before = Vec::new();
    for i in 0..300 {
        before.push(
            c.append(pb::AppendRequest {
                event: Some(event("s", &format!("{i}"))),
            })
            .await
            .expect("append")
            .into_inner(),
        );
    }
    let old = verify_append(&server, before.last().expect("some"));
    let (dir, vkey) = server.stop().await;

    let server = TestServer::start_in(dir, vkey, |_| {}).await;
    let mut c = server.client().await;
    let r = c
        .append(pb::AppendRequest {
            event: Some(event("s", "after")),
        })
        .await
        .expect("append after restart")
        .into_inner();
    assert_eq!(r.index, 300);
    let new = verify_append(&server, &r);
    check_consistent(&mut c, &old, &new).await;
    // Old entries are still there, with proofs against the new checkpoint.
    for b in before.iter().step_by(37) {
        let again = c
            .append(pb::AppendRequest {
                event: Some(event("s", &format!("{}", b.index))),
            })
            .await
            .expect("retry")
            .into_inner();
        assert!(again.duplicate);
        assert_eq!(again.leaf, b.leaf);
        verify_append(&server, &again);
    }
    server.stop().await;
}

async fn start_err(dir: &std::path::Path) -> ServerError {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let config = tlog_server::ops::config::Config {
        data_dir: dir.to_owned(),
        ..Default::default()
    };
    tlog_server::run_with(listener, None, config, std::future::pending())
        .await
        .expect_err("must refuse to start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_hashes_are_refused_at_start() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for i in 0..10 {
        c.append(pb::AppendRequest {
            event: Some(event("s", &format!("{i}"))),
        })
        .await
        .expect("append");
    }
    let (dir, _) = server.stop().await;
    {
        let store =
            tlog_server::storage::RocksStore::open(&keys::db_path(dir.path())).expect("open");
        store
            .corrupt_hash_for_tests(0, 9, &[0u8; 32])
            .expect("corrupt");
    }
    let err = start_err(dir.path()).await;
    assert!(
        matches!(
            err,
            ServerError::Start(StartError::RootMismatch { size: 10, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("refusing to start"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_exposed_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    keys::init(dir.path(), ORIGIN, None).expect("init");
    let key = dir.path().join("log.key");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = start_err(dir.path()).await;
    assert!(err.to_string().contains("chmod 600"), "{err}");

    // A key of another log, correctly protected.
    let other = tempfile::tempdir().expect("tmp");
    keys::init(other.path(), ORIGIN, None).expect("init");
    std::fs::copy(other.path().join("log.key"), &key).expect("copy");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let err = start_err(dir.path()).await;
    assert!(
        matches!(err, ServerError::Start(StartError::WrongKey { .. })),
        "{err}"
    );

    // init refuses to overwrite.
    assert!(keys::init(dir.path(), ORIGIN, None).is_err());
    // A directory that was never initialized.
    let empty = tempfile::tempdir().expect("tmp");
    let err = start_err(empty.path()).await;
    assert!(err.to_string().contains("signing key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_refuses_to_start_naming_the_line() {
    let dir = tempfile::tempdir().expect("tmp");
    keys::init(dir.path(), ORIGIN, None).expect("init");
    let policy = dir.path().join("policy.cedar");
    std::fs::write(
        &policy,
        "permit(principal, action == Tlog::Action::\"read-proofs\", resource);\n\npermit(principal, action == Tlog::Action::\"no-such-action\", resource);\n",
    )
    .expect("write");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = tlog_server::ops::config::Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.auth.policy_file = Some(policy);
    let err = tlog_server::run_with(listener, None, config, std::future::pending())
        .await
        .expect_err("must refuse to start");
    assert!(matches!(err, ServerError::Policy(_)), "{err}");
    assert!(err.to_string().contains("line 3"), "{err}");
}

/// Starts the log in `dir`, which must be refused as corrupt at open;
/// the refusal's text.
async fn refused_as_corrupt(dir: &std::path::Path) -> String {
    let err = start_err(dir).await;
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ServerError::Storage(tlog_server::storage::StorageError::CorruptAtOpen { .. })
        ),
        "{msg}"
    );
    msg
}

/// The files of the store under `dir` whose names `pick` accepts.
fn store_files(dir: &std::path::Path, pick: impl Fn(&str) -> bool) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(keys::db_path(dir))
        .expect("db dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&pick))
        .collect();
    v.sort();
    v
}

/// A log of 600 acknowledged entries, stopped with its last commits still
/// only in the write-ahead log (RocksDB does not flush memtables at close
/// when the WAL is on); its folder.
async fn log_in_wal() -> tempfile::TempDir {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for b in 0..12 {
        c.append_batch(pb::AppendBatchRequest {
            events: (0..50).map(|i| event("s", &format!("{b}-{i}"))).collect(),
        })
        .await
        .expect("append");
    }
    let (dir, _) = server.stop().await;
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_write_ahead_log_is_refused_and_the_file_kept() {
    let dir = log_in_wal().await;
    let wals = store_files(dir.path(), |n| n.ends_with(".log"));
    let wal = wals
        .iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a write-ahead log")
        .clone();
    let mut bytes = std::fs::read(&wal).expect("read wal");
    assert!(
        bytes.len() > 10_000,
        "the WAL holds the 600 entries: {}",
        bytes.len()
    );
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&wal, &bytes).expect("write");

    let msg = refused_as_corrupt(dir.path()).await;
    let name = wal.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(msg.contains(name), "the message names the WAL: {msg}");
    assert!(
        msg.contains("tlog-server recover"),
        "and how to recover: {msg}"
    );
    // RocksDB neither truncated nor deleted it, and a second try fails
    // the same way (nothing was "repaired" by the first).
    assert_eq!(std::fs::read(&wal).expect("still there"), bytes);
    refused_as_corrupt(dir.path()).await;
    assert_eq!(std::fs::read(&wal).expect("still there"), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_manifest_is_refused_and_the_file_kept() {
    let dir = log_in_wal().await;
    let manifest = store_files(dir.path(), |n| n.starts_with("MANIFEST-"))
        .pop()
        .expect("a MANIFEST");
    let mut bytes = std::fs::read(&manifest).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&manifest, &bytes).expect("write");
    refused_as_corrupt(dir.path()).await;
    assert_eq!(std::fs::read(&manifest).expect("still there"), bytes);
}
