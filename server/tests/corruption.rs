//! Corruption after start: stored hashes or leaves that change on disk
//! where the start-up root check does not look (inside a completed tile,
//! whose root is stored separately). The server must never serve a proof
//! that does not verify, nor a leaf that does not match its tree hash: it
//! answers `DATA_LOSS` instead, and keeps serving what is intact.

use tlog_core::Hash;
use tlog_core::merkle::verify::{parse_proof, verify_inclusion};
use tlog_proto::v1 as pb;
use tlog_server::ops::keys;

use crate::common::{TestServer, event, open_checkpoint};

/// A log of `batches` × 50 entries (a checkpoint after each batch), stopped;
/// its data folder and key.
async fn stopped_log(batches: usize) -> (tempfile::TempDir, String) {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for b in 0..batches {
        c.append_batch(pb::AppendBatchRequest {
            events: (0..50).map(|i| event("s", &format!("{b}-{i}"))).collect(),
        })
        .await
        .expect("append");
    }
    let vkey = server.vkey.clone();
    let (dir, _) = server.stop().await;
    (dir, vkey)
}

/// A log of 300 entries (checkpoints every 50) with the tree hash of leaf 5
/// and the leaf of entry 290 changed on disk, restarted.
async fn corrupted_log() -> TestServer {
    let (dir, vkey) = stopped_log(6).await;
    {
        let store =
            tlog_server::storage::RocksStore::open(&keys::db_path(dir.path())).expect("open");
        store
            .corrupt_hash_for_tests(0, 5, &[7u8; 32])
            .expect("corrupt hash");
        let mut leaf = tlog_server::storage::LogStore::entry(&store, 290)
            .expect("read")
            .expect("leaf");
        let last = leaf.len() - 1;
        leaf[last] ^= 1;
        store
            .corrupt_entry_for_tests(290, &leaf)
            .expect("corrupt leaf");
    }
    TestServer::start_in(dir, vkey, |_| {}).await
}

async fn inclusion(
    c: &mut pb::log_client::LogClient<tonic::transport::Channel>,
    index: u64,
    tree_size: u64,
) -> Result<pb::InclusionProof, tonic::Status> {
    c.get_inclusion_proof(pb::GetInclusionProofRequest {
        tree_size,
        leaf: Some(pb::get_inclusion_proof_request::Leaf::Index(index)),
    })
    .await
    .map(|r| r.into_inner())
}

/// A served inclusion proof verifies against its signed checkpoint.
fn assert_verifies(server: &TestServer, index: u64, p: &pb::InclusionProof) {
    let cp = open_checkpoint(server, p.checkpoint.as_ref().expect("checkpoint"));
    verify_inclusion(
        index,
        p.tree_size,
        &Hash::from_slice(&p.leaf_hash).expect("hash"),
        &parse_proof(&p.hashes).expect("proof"),
        &cp.checkpoint.root,
    )
    .expect("every proof served verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_hashes_and_leaves_are_never_served() {
    let server = corrupted_log().await;
    let mut c = server.client().await;

    // Proofs whose path crosses the rotten hash are refused, at the latest
    // size and at an older signed size.
    for (index, size) in [(5, 0), (4, 0), (100, 0), (5, 150), (200, 250)] {
        let err = inclusion(&mut c, index, size)
            .await
            .expect_err("a proof over a rotten hash must not be served");
        assert_eq!(err.code(), tonic::Code::DataLoss, "{index}@{size}: {err}");
        assert!(
            err.message().contains("failed verification"),
            "{}",
            err.message()
        );
    }
    // Proofs that do not touch it are served and verify.
    for index in [256, 280, 299] {
        let p = inclusion(&mut c, index, 0).await.expect("intact proof");
        assert_verifies(&server, index, &p);
    }

    // A consistency proof through the rotten tile, between signed sizes.
    let err = c
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            size1: 50,
            size2: 300,
        })
        .await
        .expect_err("must not be served");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err}");
    // One that does not cross it.
    c.get_consistency_proof(pb::GetConsistencyProofRequest {
        size1: 256,
        size2: 300,
    })
    .await
    .map(|_| ())
    .or_else(|e| {
        // 256 is not a signed size: served unverified only if the proof
        // does not touch the rot; either way it is not DATA_LOSS.
        assert_ne!(e.code(), tonic::Code::DataLoss, "{e}");
        Ok::<_, ()>(())
    })
    .expect("consistency");

    // Entries: a page holding the changed leaf, or the leaf whose tree hash
    // changed, is refused; a clean page is served.
    for (start, end) in [(280, 300), (0, 10)] {
        let mut stream = c
            .get_entries(pb::GetEntriesRequest { start, end })
            .await
            .expect("stream opens")
            .into_inner();
        let err = stream
            .message()
            .await
            .expect_err("a rotten page must not be streamed");
        assert_eq!(err.code(), tonic::Code::DataLoss, "[{start},{end}): {err}");
    }
    let mut stream = c
        .get_entries(pb::GetEntriesRequest {
            start: 100,
            end: 200,
        })
        .await
        .expect("stream")
        .into_inner();
    let page = stream.message().await.expect("page").expect("some");
    assert_eq!(page.entries.len(), 100);
    server.stop().await;
}

/// A log of 1,000 entries, compacted, with one byte flipped in the middle
/// of the table file `pick` chooses among all of them (by size, largest
/// first); returns the data folder and the log's key.
async fn flipped(
    pick: impl Fn(&[std::path::PathBuf]) -> Vec<std::path::PathBuf>,
) -> (tempfile::TempDir, String) {
    let (dir, vkey) = stopped_log(20).await;
    let db = keys::db_path(dir.path());
    {
        let store = tlog_server::storage::RocksStore::open(&db).expect("open");
        store.compact_all().expect("compact");
    }
    let mut tables: Vec<_> = std::fs::read_dir(&db)
        .expect("db dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .collect();
    tables.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    let chosen = pick(&tables);
    assert!(!chosen.is_empty(), "no table files to corrupt");
    for p in chosen {
        let mut bytes = std::fs::read(&p).expect("read");
        let mid = bytes.len() / 3;
        bytes[mid] ^= 0x40;
        std::fs::write(&p, bytes).expect("write");
    }
    (dir, vkey)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_every_rocksdb_file_is_refused_at_start() {
    let (dir, _) = flipped(|all| all.to_vec()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let config = tlog_server::ops::config::Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let err = tlog_server::run_with(listener, None, config, std::future::pending())
        .await
        .expect_err("a store whose tree cannot be read must not start");
    let msg = err.to_string().to_lowercase();
    assert!(msg.contains("corrupt") || msg.contains("checksum"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_one_rocksdb_file_is_detected_and_never_served() {
    // One table (the largest) rots; the log still starts (its edge of the
    // tree is read from elsewhere or from intact blocks). Every read either
    // returns data that verifies or answers DATA_LOSS.
    let (dir, vkey) = flipped(|all| all[..1].to_vec()).await;
    let server = TestServer::start_in(dir, vkey, |_| {}).await;
    let mut c = server.client().await;
    let (mut served, mut refused) = (0u64, 0u64);
    for start in (0..1000).step_by(100) {
        let mut stream = c
            .get_entries(pb::GetEntriesRequest {
                start,
                end: start + 100,
            })
            .await
            .expect("stream opens")
            .into_inner();
        match stream.message().await {
            Ok(Some(page)) => {
                assert_eq!(page.entries.len(), 100);
                served += 1;
            }
            Ok(None) => panic!("empty stream"),
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::DataLoss, "{e}");
                refused += 1;
            }
        }
    }
    for index in (0..1000).step_by(7) {
        match inclusion(&mut c, index, 0).await {
            Ok(p) => {
                assert_verifies(&server, index, &p);
                served += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::DataLoss, "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the flipped byte went unnoticed");
    assert!(served > 0, "nothing intact was served");
    eprintln!(
        "after one flipped byte: {served} reads served (all verify), {refused} refused as DATA_LOSS"
    );
    server.stop().await;
}

/// Reads that serve a leaf or a stored checkpoint check it first: a leaf
/// rewritten on disk is not served by `GetEntryByHash` nor by
/// `QueryArtifact`, and a stored checkpoint whose root was changed (its
/// signature no longer verifies) is not served by `GetCheckpoint(size)`
/// nor used for a proof: each answers `DATA_LOSS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_path_verifies_what_it_serves() {
    let (dir, vkey) = stopped_log(6).await;
    let original_290;
    {
        let store =
            tlog_server::storage::RocksStore::open(&keys::db_path(dir.path())).expect("open");
        let mut leaf = tlog_server::storage::LogStore::entry(&store, 290)
            .expect("read")
            .expect("leaf");
        original_290 = tlog_core::leaf_hash(&leaf);
        let last = leaf.len() - 1;
        leaf[last] ^= 1;
        store
            .corrupt_entry_for_tests(290, &leaf)
            .expect("corrupt leaf");
        // The note at size 150 with another root, its signature kept.
        let note = tlog_server::storage::LogStore::checkpoint(&store, 150)
            .expect("read")
            .expect("note");
        let mut lines: Vec<String> = note.lines().map(str::to_owned).collect();
        lines[2] = tlog_core::Hash([9; 32]).to_base64();
        let mut changed = lines.join("\n");
        changed.push('\n');
        store
            .corrupt_checkpoint_for_tests(150, &changed)
            .expect("corrupt checkpoint");
    }
    let server = TestServer::start_in(dir, vkey, |_| {}).await;
    let mut c = server.client().await;

    let err = c
        .get_entry_by_hash(pb::GetEntryByHashRequest {
            leaf_hash: original_290.as_bytes().to_vec(),
        })
        .await
        .expect_err("a rewritten leaf must not be served by hash");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err}");
    // An intact entry is served by hash.
    let mut stream = c
        .get_entries(pb::GetEntriesRequest { start: 7, end: 8 })
        .await
        .expect("entries")
        .into_inner();
    let e7 = stream.message().await.expect("page").expect("some").entries[0].clone();
    let got = c
        .get_entry_by_hash(pb::GetEntryByHashRequest {
            leaf_hash: e7.leaf_hash.clone(),
        })
        .await
        .expect("intact entry by hash")
        .into_inner();
    assert_eq!(got.leaf, e7.leaf);

    // Every entry is about one artifact: the page holding 290 is refused;
    // the first page (0..100) is served.
    let q = |cursor: String| pb::QueryArtifactRequest {
        name: "team-a/fraud-model".into(),
        page_size: 100,
        cursor,
        ..Default::default()
    };
    let first = c
        .query_artifact(q(String::new()))
        .await
        .expect("first page")
        .into_inner();
    assert_eq!(first.entries.len(), 100);
    let err = c
        .query_artifact(q("i:249".into()))
        .await
        .expect_err("a page with a rewritten leaf must not be served");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err}");

    let err = c
        .get_checkpoint(pb::GetCheckpointRequest { size: 150 })
        .await
        .expect_err("a stored checkpoint that does not verify must not be served");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err}");
    assert!(err.message().contains("does not verify"), "{err}");
    let err = inclusion(&mut c, 3, 150)
        .await
        .expect_err("nor used for a proof");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err}");
    // Intact checkpoints are served and verify.
    let cp = c
        .get_checkpoint(pb::GetCheckpointRequest { size: 100 })
        .await
        .expect("intact checkpoint")
        .into_inner()
        .checkpoint
        .expect("checkpoint");
    assert_eq!(open_checkpoint(&server, &cp).checkpoint.size, 100);
    server.stop().await;
}
