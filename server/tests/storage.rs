//! The compact storage indexes: a leaf-hash index of 8-byte prefixes
//! (collisions resolved against the full hash), idempotency records of the
//! index only (the digest recomputed from the leaf), and stores written by
//! earlier versions still read.

use tlog_core::Hash;
use tlog_core::event::Timestamp;
use tlog_core::leaf::{LEAF_VERSION, Leaf, Submitter};
use tlog_core::merkle::store::StoredHash;
use tlog_server::storage::{CommitBatch, Idempotency, LogStore, NewEntry, RocksStore};

fn leaf(i: u64) -> (Vec<u8>, [u8; 32]) {
    let event = tlog_core::event::ArtifactEvent {
        event_id: format!("id-{i}"),
        source: "src".into(),
        action: tlog_core::event::Action::Register,
        artifact: tlog_core::event::Artifact {
            name: "team/m".into(),
            version: format!("1.0.{i}"),
            digests: vec![tlog_core::event::Digest {
                algorithm: "sha256".into(),
                hex: format!("{i:064x}"),
            }],
            media_type: String::new(),
            uri: String::new(),
        },
        actor: "a".into(),
        interface: tlog_core::event::Interface::Cli,
        environment: String::new(),
        client_time: None,
        provenance: None,
        justification: String::new(),
        ticket: String::new(),
        attestations: vec![],
    };
    let digest = event.content_digest();
    let l = Leaf {
        version: LEAF_VERSION,
        event,
        submitter: Submitter::default(),
        integrated_at: Timestamp::default(),
        verified_signers: vec![],
    };
    (l.encode(), digest)
}

/// Commits entries with the given (claimed) leaf hashes.
fn commit(store: &RocksStore, start: u64, hashes: &[Hash]) -> Vec<[u8; 32]> {
    let mut batch = CommitBatch {
        size: start + hashes.len() as u64,
        checkpoint: "unused".into(),
        ..CommitBatch::default()
    };
    let mut digests = Vec::new();
    for (k, h) in hashes.iter().enumerate() {
        let index = start + k as u64;
        let (bytes, digest) = leaf(index);
        digests.push(digest);
        batch.entries.push(NewEntry {
            index,
            leaf: bytes,
            leaf_hash: *h,
            idempotency: Some(Idempotency {
                source: "src".into(),
                event_id: format!("id-{index}"),
                content_digest: digest,
            }),
            artifact: None,
        });
        batch.hashes.push(StoredHash {
            level: 0,
            index,
            hash: *h,
        });
    }
    store.commit(&batch).expect("commit");
    digests
}

fn with_prefix(prefix: u8, rest: u8) -> Hash {
    let mut h = [prefix; 32];
    h[31] = rest;
    Hash(h)
}

#[test]
fn leaf_hashes_sharing_a_prefix_are_told_apart() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = RocksStore::open(dir.path()).expect("open");
    let (a, b, c) = (with_prefix(7, 1), with_prefix(7, 2), with_prefix(7, 3));
    let digests = commit(&store, 0, &[a, b]);
    assert_eq!(store.index_of(&a).expect("a"), Some(0));
    assert_eq!(store.index_of(&b).expect("b"), Some(1));
    assert_eq!(
        store.index_of(&c).expect("c"),
        None,
        "same prefix, not stored"
    );
    assert_eq!(store.index_of(&with_prefix(8, 1)).expect("d"), None);
    // Idempotency records hold the index; the digest comes from the leaf.
    assert_eq!(
        store.idempotency("src", "id-1").expect("idem"),
        Some((1, digests[1]))
    );
    assert_eq!(store.idempotency("src", "id-9").expect("idem"), None);
}

#[test]
fn stores_written_before_the_compact_indexes_still_answer() {
    let dir = tempfile::tempdir().expect("tmp");
    let old_hash = with_prefix(9, 9);
    {
        let store = RocksStore::open(dir.path()).expect("open");
        commit(&store, 0, &[with_prefix(1, 1)]);
    }
    {
        // Write what an earlier version wrote: a full-hash index row and a
        // 40-byte idempotency value with the digest.
        let mut opts = rocksdb::Options::default();
        opts.create_missing_column_families(true);
        let cfs = rocksdb::DB::list_cf(&opts, dir.path()).expect("list");
        let db = rocksdb::DB::open_cf(&opts, dir.path(), &cfs).expect("raw open");
        let legacy = db.cf_handle("leaf_hashes").expect("cf");
        db.put_cf(legacy, old_hash.as_bytes(), 0u64.to_be_bytes())
            .expect("put");
        let idem = db.cf_handle("idempotency").expect("cf");
        let mut v = 0u64.to_be_bytes().to_vec();
        v.extend_from_slice(&[0xAB; 32]);
        let mut key = 3u32.to_be_bytes().to_vec();
        key.extend_from_slice(b"oldold-id");
        db.put_cf(idem, key, v).expect("put");
    }
    let store = RocksStore::open(dir.path()).expect("reopen");
    assert_eq!(store.index_of(&old_hash).expect("legacy"), Some(0));
    assert_eq!(
        store.idempotency("old", "old-id").expect("legacy idem"),
        Some((0, [0xAB; 32]))
    );
    assert_eq!(store.index_of(&with_prefix(1, 1)).expect("new"), Some(0));
}
