//! The compact storage indexes: a leaf-hash index of 8-byte prefixes
//! (collisions resolved against the full hash), idempotency records of the
//! index only (the digest recomputed from the leaf), and stores written by
//! earlier versions still read; row 0 of the tree stored in groups of 16
//! leaf hashes, and stores of one key per leaf hash still read and
//! written.

use tlog_core::Hash;
use tlog_core::event::Timestamp;
use tlog_core::leaf::{LEAF_VERSION, Leaf, Submitter};
use tlog_core::merkle::store::{HashReader, StoreError, StoredHash};
use tlog_server::storage::{CommitBatch, Idempotency, LeafRow, LogStore, NewEntry, RocksStore};

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

/// The leaf hash the row-0 tests store at `i`.
fn nth(i: u64) -> Hash {
    tlog_core::hash::leaf_hash(&i.to_be_bytes())
}

/// Commits only row-0 hashes `nth(start..start + n)`.
fn commit_hashes(store: &RocksStore, start: u64, n: u64) {
    let batch = CommitBatch {
        size: start + n,
        checkpoint: "unused".into(),
        hashes: (start..start + n)
            .map(|index| StoredHash {
                level: 0,
                index,
                hash: nth(index),
            })
            .collect(),
        ..CommitBatch::default()
    };
    store.commit(&batch).expect("commit");
}

fn read(store: &RocksStore, start: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
    let mut out = Vec::new();
    store.read_hashes(0, start, count, &mut out).map(|()| out)
}

/// Every range of `0..size` reads back what was committed; the first hash
/// past the end is named as missing.
fn check_every_range(store: &RocksStore, size: u64) {
    for a in 0..size {
        for b in a + 1..=size.min(a + 70) {
            let want: Vec<Hash> = (a..b).map(nth).collect();
            assert_eq!(read(store, a, b - a).expect("read"), want, "[{a}, {b})");
        }
    }
    match read(store, size.saturating_sub(3), 4) {
        Err(StoreError::Missing { level: 0, index }) => assert_eq!(index, size),
        other => panic!("reading past {size}: {other:?}"),
    }
}

#[test]
fn new_stores_group_leaf_hashes_and_commits_continue_a_group() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = RocksStore::open(dir.path()).expect("open");
    assert_eq!(store.leaf_row(), LeafRow::Groups);
    // Commits that start and end inside groups, fill one exactly, and span
    // several.
    let mut size = 0;
    for n in [1, 4, 11, 16, 3, 45, 1, 15, 33] {
        commit_hashes(&store, size, n);
        size += n;
        check_every_range(&store, size);
    }
    assert_eq!(size, 129);
    drop(store);
    let store = RocksStore::open(dir.path()).expect("reopen");
    assert_eq!(store.leaf_row(), LeafRow::Groups, "still grouped");
    check_every_range(&store, size);
    // One key per 16 hashes: 9 groups for 129 hashes.
    let keys = store
        .column_family_sizes()
        .expect("sizes")
        .into_iter()
        .find(|c| c.name == "hashes")
        .expect("hashes")
        .keys;
    assert!(keys <= 9, "{keys} keys for 129 leaf hashes");
}

#[test]
fn a_hash_written_again_replaces_only_itself_and_gaps_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = RocksStore::open(dir.path()).expect("open");
    commit_hashes(&store, 0, 10);
    let other = with_prefix(5, 5);
    store
        .commit(&CommitBatch {
            size: 10,
            checkpoint: "unused".into(),
            hashes: vec![StoredHash {
                level: 0,
                index: 4,
                hash: other,
            }],
            ..CommitBatch::default()
        })
        .expect("rewrite");
    let got = read(&store, 0, 10).expect("read");
    assert_eq!(got[4], other);
    assert_eq!(got[..4], (0..4).map(nth).collect::<Vec<_>>()[..]);
    assert_eq!(got[5..], (5..10).map(nth).collect::<Vec<_>>()[..]);
    // A commit that would leave a hole inside a group writes nothing.
    let err = store
        .commit(&CommitBatch {
            size: 13,
            checkpoint: "unused".into(),
            hashes: vec![StoredHash {
                level: 0,
                index: 12,
                hash: other,
            }],
            ..CommitBatch::default()
        })
        .expect_err("a gap");
    assert!(err.to_string().contains("leaf hash 12"), "{err}");
    assert!(read(&store, 10, 1).is_err(), "nothing written");
}

#[test]
fn a_group_of_the_wrong_length_is_reported_not_sliced() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = RocksStore::open(dir.path()).expect("open");
    commit_hashes(&store, 0, 20);
    // Replace leaf hash 3 by 5 bytes: group 0 is now 485 bytes long.
    store
        .corrupt_hash_for_tests(0, 3, &[1; 5])
        .expect("corrupt");
    let err = read(&store, 0, 16).expect_err("bad group");
    assert!(err.to_string().contains("group 0 is 485 bytes"), "{err}");
    assert_eq!(
        read(&store, 16, 4).expect("group 1"),
        (16..20).map(nth).collect::<Vec<_>>()
    );
    // A 32-byte replacement is read back in place.
    store
        .corrupt_hash_for_tests(0, 17, &[9; 32])
        .expect("corrupt");
    assert_eq!(read(&store, 17, 1).expect("read"), vec![Hash([9; 32])]);
}

#[test]
fn stores_with_one_key_per_leaf_hash_keep_that_layout() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let store = RocksStore::open_per_hash_for_tests(dir.path()).expect("open");
        commit_hashes(&store, 0, 20);
        let digests = commit(&store, 20, &[with_prefix(3, 3)]);
        assert_eq!(digests.len(), 1);
    }
    let store = RocksStore::open(dir.path()).expect("reopen");
    assert_eq!(store.leaf_row(), LeafRow::PerHash, "found from the keys");
    let want: Vec<Hash> = (0..20).map(nth).collect();
    assert_eq!(read(&store, 0, 20).expect("read"), want);
    assert_eq!(store.index_of(&with_prefix(3, 3)).expect("index"), Some(20));
    // It goes on writing one key per hash.
    commit_hashes(&store, 21, 40);
    drop(store);
    let store = RocksStore::open_read_only(dir.path()).expect("read-only");
    assert_eq!(store.leaf_row(), LeafRow::PerHash);
    let want: Vec<Hash> = (21..61).map(nth).collect();
    assert_eq!(read(&store, 21, 40).expect("read"), want);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Any sequence of commit sizes, any range read: the grouped row 0
    /// answers as one key per hash would.
    #[test]
    fn grouped_leaf_hashes_read_back_for_any_commits(
        sizes in proptest::collection::vec(1u64..40, 1..8),
        reads in proptest::collection::vec((0u64..400, 1u64..300), 1..20),
    ) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = RocksStore::open(dir.path()).expect("open");
        let mut size = 0;
        for n in sizes {
            commit_hashes(&store, size, n);
            size += n;
        }
        for (start, count) in reads {
            let got = read(&store, start, count);
            if start + count <= size {
                let want: Vec<Hash> = (start..start + count).map(nth).collect();
                proptest::prop_assert_eq!(got.expect("in range"), want);
            } else {
                let missing = matches!(
                    got,
                    Err(StoreError::Missing { level: 0, index }) if index == size.max(start)
                );
                proptest::prop_assert!(missing, "[{}, +{}) of {}", start, count, size);
            }
        }
    }
}
