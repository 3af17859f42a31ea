//! The RocksDB store, the embedded default.
//!
//! Column families (all keys big-endian so iteration follows index order):
//!
//! | family        | key                                   | value                              |
//! |---------------|---------------------------------------|------------------------------------|
//! | `entries`     | index (u64)                           | leaf bytes, verbatim               |
//! | `hashes`      | row level (u8) ‖ index (u64)          | 32-byte hash (tile rows 1 and up, see core) |
//! | `hashes`      | 0xF0 ‖ group (u64)                    | leaf hashes `16·group ..`, 32 bytes each (row 0) |
//! | `checkpoints` | tree size (u64)                       | signed checkpoint note             |
//! | `leaf_index`  | leaf hash's first 8 bytes ‖ index (u64) | (empty)                          |
//! | `leaf_hashes` | leaf hash (32)                        | index (u64): stores written before the compact leaf-hash index |
//! | `idempotency` | len(source) (u32) ‖ source ‖ event id | index (u64); in stores written before the compact indexes also the content digest (32) |
//! | `artifacts`   | name ‖ 0x00 ‖ index (u64)             | action (u8) ‖ time (i64 s, u32 ns) ‖ version |
//! | `meta`        | `origin`, `vkey`, `size`              | text / u64                         |
//!
//! One append batch is one synced `WriteBatch`: entries, hashes, indexes,
//! the new checkpoint and the new size land together or not at all.
//!
//! Row 0, the leaf hashes, is kept in groups of 16 (one value per 16
//! leaves; the last group grows with each commit until it is full): a
//! proof whose bottom tile's summary is cached reads exactly one group, a
//! point read instead of a 16-step iterator, and a group costs one key
//! instead of 16. Stores written before (row 0 as one key per hash, level
//! byte 0) keep that layout: [`RocksStore::open`] looks at which keys the
//! store holds.
//!
//! Space per entry: the leaf-hash index keeps only 8 bytes of the hash (a
//! lookup checks candidates against the full leaf hash in `hashes`), and an
//! idempotency record only the index (a retry recomputes the stored
//! event's digest from its leaf). Stores written before keep working: their
//! `leaf_hashes` rows are still read, and 40-byte idempotency values still
//! carry their digest.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions,
};
use tlog_core::Hash;
use tlog_core::merkle::store::{HashReader, StoreError, StoredHash};

use super::{ArtifactMeta, CommitBatch, LogMeta, LogStore, StorageError};

const CF_ENTRIES: &str = "entries";
const CF_HASHES: &str = "hashes";
const CF_CHECKPOINTS: &str = "checkpoints";
const CF_LEAF_HASHES: &str = "leaf_hashes";
const CF_LEAF_INDEX: &str = "leaf_index";
const CF_IDEMPOTENCY: &str = "idempotency";
const CF_ARTIFACTS: &str = "artifacts";
const CF_META: &str = "meta";
const ALL_CFS: [&str; 8] = [
    CF_ENTRIES,
    CF_HASHES,
    CF_CHECKPOINTS,
    CF_LEAF_INDEX,
    CF_LEAF_HASHES,
    CF_IDEMPOTENCY,
    CF_ARTIFACTS,
    CF_META,
];

/// The size of one column family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfSize {
    /// Its name.
    pub name: &'static str,
    /// Bytes in its table files.
    pub sst_bytes: u64,
    /// Estimated number of keys.
    pub keys: u64,
}

/// The names of the files in `dir` that `pick` accepts, sorted and
/// comma-separated (for error messages).
fn files_named(dir: &Path, pick: impl Fn(&str) -> bool) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| pick(n))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The open error for `e`: corruption becomes [`StorageError::CorruptAtOpen`]
/// naming the files; anything else is what [`From`] makes of it.
fn open_error(path: &Path, e: rocksdb::Error) -> StorageError {
    if e.kind() == rocksdb::ErrorKind::Corruption {
        StorageError::CorruptAtOpen {
            dir: path.to_owned(),
            detail: e.into_string(),
            wals: files_named(path, |n| n.ends_with(".log")),
            manifests: files_named(path, |n| n.starts_with("MANIFEST-")),
        }
    } else {
        StorageError::from(e)
    }
}

/// RocksDB's error by its kind: corruption (its checksums failed) is
/// [`StorageError::Damaged`]; everything else (I/O, full disk, busy,
/// timed out, ...) is [`StorageError::Unavailable`].
impl From<rocksdb::Error> for StorageError {
    fn from(e: rocksdb::Error) -> Self {
        if e.kind() == rocksdb::ErrorKind::Corruption {
            StorageError::Damaged(Box::new(e))
        } else {
            StorageError::Unavailable(Box::new(e))
        }
    }
}

impl ArtifactMeta {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(13 + self.version.len());
        v.push(self.action);
        v.extend_from_slice(&self.seconds.to_be_bytes());
        v.extend_from_slice(&self.nanos.to_be_bytes());
        v.extend_from_slice(self.version.as_bytes());
        v
    }

    fn decode(b: &[u8]) -> Result<Self, StorageError> {
        if b.len() < 13 {
            return Err(StorageError::Corrupt(
                "artifact index value too short".into(),
            ));
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[1..9]);
        Ok(ArtifactMeta {
            action: b[0],
            seconds: i64::from_be_bytes(s),
            nanos: u32::from_be_bytes([b[9], b[10], b[11], b[12]]),
            version: String::from_utf8(b[13..].to_vec())
                .map_err(|_| StorageError::Corrupt("artifact version not UTF-8".into()))?,
        })
    }
}

/// The largest memtable: 16 MiB (RocksDB's default is 64 MiB). It sizes
/// what a full disk needs before appends resume, [`RESUME_FREE_SPACE`].
pub const WRITE_BUFFER: usize = 16 << 20;

/// Free space on the store's filesystem after which appends resume on
/// their own after a full disk, with no restart: RocksDB waits for the
/// largest memtable's size to be free (its recovery reserve), then flushes
/// the memtable (up to that size again) and starts a new write-ahead log,
/// which it preallocates at 1.1 times that size. About 52 MiB; with
/// RocksDB's default memtables it was over 200 MiB.
pub const RESUME_FREE_SPACE: u64 = (WRITE_BUFFER as u64) * 31 / 10 + (1 << 20);

/// The RocksDB store.
pub struct RocksStore {
    db: DB,
    leaf_row: LeafRow,
}

/// How a store keeps the tree's row 0 (the leaf hashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafRow {
    /// One key per hash, `0 ‖ index`: stores written before the groups.
    PerHash,
    /// One key per [`LEAF_GROUP`] hashes, `0xF0 ‖ group`.
    Groups,
}

/// Leaf hashes per stored group: one block of a tile summary
/// (`2^SUMMARY_FROM`), so a proof through a cached summary reads one value.
pub const LEAF_GROUP: u64 = 1 << tlog_core::merkle::cache::SUMMARY_FROM;

/// One put into `hashes`: key and value.
type HashPut = ([u8; 9], Vec<u8>);

/// The key byte that starts a group of row 0.
const GROUP_PREFIX: u8 = 0xF0;

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RocksStore({})", self.db.path().display())
    }
}

fn idem_key(source: &str, event_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + source.len() + event_id.len());
    k.extend_from_slice(
        &u32::try_from(source.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    k.extend_from_slice(source.as_bytes());
    k.extend_from_slice(event_id.as_bytes());
    k
}

fn leaf_index_key(leaf_hash: &Hash, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&leaf_hash.as_bytes()[..8]);
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

fn hash_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn group_key(group: u64) -> [u8; 9] {
    hash_key(GROUP_PREFIX, group)
}

/// Appends to `out` the hashes `[from, to)` (offsets within the group) of
/// group value `v`, or names the first one `v` does not hold.
fn hashes_of_group(
    group: u64,
    v: &[u8],
    from: u64,
    to: u64,
    out: &mut Vec<Hash>,
) -> Result<(), StoreError> {
    if !v.len().is_multiple_of(32) || v.len() as u64 > LEAF_GROUP * 32 {
        return Err(StoreError::Corrupt(format!(
            "stored leaf-hash group {group} is {} bytes",
            v.len()
        )));
    }
    let held = v.len() as u64 / 32;
    if held < to {
        return Err(StoreError::Missing {
            level: 0,
            index: group * LEAF_GROUP + held.max(from),
        });
    }
    for c in v[(from * 32) as usize..(to * 32) as usize].chunks_exact(32) {
        out.push(Hash::from_slice(c).map_err(|_| StoreError::Corrupt("hash slice".into()))?);
    }
    Ok(())
}

fn artifact_prefix(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k
}

fn u64_value(b: &[u8], what: &str) -> Result<u64, StorageError> {
    let arr: [u8; 8] = b
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| StorageError::Corrupt(format!("{what}: not 8 bytes")))?;
    Ok(u64::from_be_bytes(arr))
}

impl RocksStore {
    /// Opens (creating if needed) the store under `path`.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(4);
        // The log's promise rests on these two. Any corruption of a
        // write-ahead log record, a torn tail included, fails the open
        // instead of being dropped: RocksDB's default (point-in-time
        // recovery) stops replay at the first bad record, deletes the
        // damaged log, and opens at an older size, from which the log
        // would sign a fork. Every acknowledged commit was synced whole,
        // so a bad record is damage, never a write in progress that was
        // answered. Paranoid checks make any corruption found in the
        // MANIFEST or a table file at open an error too.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::AbsoluteConsistency);
        opts.set_paranoid_checks(true);
        // Memtables: RocksDB resumes writes after a full disk only once
        // the largest memtable's size is free (its flush needs that
        // room), so their size is the log's disk reserve: WRITE_BUFFER,
        // not RocksDB's default of 64 MiB.
        opts.set_write_buffer_size(WRITE_BUFFER);
        let mut entries_opts = Options::default();
        entries_opts.set_write_buffer_size(WRITE_BUFFER);
        entries_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let mut point = BlockBasedOptions::default();
        point.set_bloom_filter(10.0, false);
        let mut lookup_opts = Options::default();
        lookup_opts.set_write_buffer_size(WRITE_BUFFER / 2);
        lookup_opts.set_block_based_table_factory(&point);
        // RocksDB's own "default" family (unused) must be small too: it
        // would otherwise be opened with a 64 MiB memtable, and the
        // largest one sets the reserve.
        let mut default_opts = Options::default();
        default_opts.set_write_buffer_size(WRITE_BUFFER / 2);
        let default_cf =
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, default_opts);
        let cfs = std::iter::once(default_cf).chain(ALL_CFS.iter().map(|name| {
            let o = match *name {
                CF_ENTRIES => entries_opts.clone(),
                CF_LEAF_HASHES | CF_LEAF_INDEX | CF_IDEMPOTENCY => lookup_opts.clone(),
                _ => {
                    let mut o = Options::default();
                    o.set_write_buffer_size(WRITE_BUFFER / 2);
                    o
                }
            };
            ColumnFamilyDescriptor::new(*name, o)
        }));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| open_error(path, e))?;
        Self::with_layout(db)
    }

    /// Row 0's layout is read from the keys: a store holding any row-0 key
    /// of one hash (`0 ‖ index`) was written before the groups and keeps
    /// that layout; any other store (a new one too) uses groups.
    fn with_layout(db: DB) -> Result<Self, StorageError> {
        let cf = db
            .cf_handle(CF_HASHES)
            .ok_or_else(|| StorageError::Corrupt(format!("column family {CF_HASHES} missing")))?;
        let mut it = db.raw_iterator_cf(cf);
        it.seek([0u8]);
        let per_hash = it.valid() && it.key().is_some_and(|k| k.first() == Some(&0));
        it.status()?;
        drop(it);
        let leaf_row = if per_hash {
            LeafRow::PerHash
        } else {
            LeafRow::Groups
        };
        Ok(RocksStore { db, leaf_row })
    }

    /// How this store keeps row 0.
    pub fn leaf_row(&self) -> LeafRow {
        self.leaf_row
    }

    #[cfg(feature = "test-hooks")]
    /// Opens the store under `path` as stores were written before leaf
    /// hashes were grouped: row 0 one key per hash (compatibility tests).
    #[doc(hidden)]
    pub fn open_per_hash_for_tests(path: &Path) -> Result<Self, StorageError> {
        let mut s = Self::open(path)?;
        s.leaf_row = LeafRow::PerHash;
        Ok(s)
    }

    /// Opens the store under `path` for reading only (a backup, or a log
    /// another process is writing): nothing in `path` is changed.
    pub fn open_read_only(path: &Path) -> Result<Self, StorageError> {
        let mut opts = Options::default();
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::AbsoluteConsistency);
        opts.set_paranoid_checks(true);
        let db = DB::open_cf_for_read_only(&opts, path, ALL_CFS.iter(), false)
            .map_err(|e| open_error(path, e))?;
        Self::with_layout(db)
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError::Corrupt(format!("column family {name} missing")))
    }

    fn synced() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }

    /// Bytes in each column family's table files (after flushing the
    /// memtables), and its estimated number of keys.
    pub fn column_family_sizes(&self) -> Result<Vec<CfSize>, StorageError> {
        self.db.flush()?;
        let mut out = Vec::with_capacity(ALL_CFS.len());
        for name in ALL_CFS {
            let cf = self.cf(name)?;
            self.db.flush_cf(cf)?;
            let prop = |p: &str| -> Result<u64, StorageError> {
                Ok(self.db.property_int_value_cf(cf, p)?.unwrap_or(0))
            };
            out.push(CfSize {
                name,
                sst_bytes: prop("rocksdb.total-sst-files-size")?,
                keys: prop("rocksdb.estimate-num-keys")?,
            });
        }
        Ok(out)
    }

    /// Compacts every column family fully (what a long-running log reaches
    /// over time), so sizes are not inflated by overwritten or L0 data.
    pub fn compact_all(&self) -> Result<(), StorageError> {
        for name in ALL_CFS {
            self.db
                .compact_range_cf(self.cf(name)?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// The total size of all leaves (the payload), by reading them.
    pub fn payload_bytes(&self) -> Result<u64, StorageError> {
        let mut total = 0u64;
        for item in self
            .db
            .iterator_cf(self.cf(CF_ENTRIES)?, IteratorMode::Start)
        {
            let (_, v) = item?;
            total += v.len() as u64;
        }
        Ok(total)
    }

    /// Writes a consistent copy of the whole store to `dir` (which must not
    /// exist) while it stays open for writes: a RocksDB checkpoint, hard
    /// links where `dir` is on the same filesystem, copies otherwise. Every
    /// commit is one atomic write batch, so the copy holds a whole log at
    /// some size, with its checkpoint.
    pub fn backup_to(&self, dir: &Path) -> Result<(), StorageError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }

    /// The sizes in `(after, upto]` at which the store holds a signed
    /// checkpoint, in order.
    pub fn checkpoint_sizes(&self, after: u64, upto: u64) -> Result<Vec<u64>, StorageError> {
        let first = after.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_CHECKPOINTS)?,
            IteratorMode::From(&first, Direction::Forward),
        ) {
            let (k, _) = item?;
            let size = u64_value(&k, "checkpoint key")?;
            if size > upto {
                break;
            }
            out.push(size);
        }
        Ok(out)
    }

    #[cfg(feature = "test-hooks")]
    /// Overwrites one stored leaf (test hook for corruption tests).
    #[doc(hidden)]
    pub fn corrupt_entry_for_tests(&self, index: u64, leaf: &[u8]) -> Result<(), StorageError> {
        self.db.put_cf_opt(
            self.cf(CF_ENTRIES)?,
            index.to_be_bytes(),
            leaf,
            &Self::synced(),
        )?;
        Ok(())
    }

    #[cfg(feature = "test-hooks")]
    /// Overwrites the stored checkpoint note at `size` (test hook for
    /// corruption tests).
    #[doc(hidden)]
    pub fn corrupt_checkpoint_for_tests(&self, size: u64, note: &str) -> Result<(), StorageError> {
        self.db.put_cf_opt(
            self.cf(CF_CHECKPOINTS)?,
            size.to_be_bytes(),
            note.as_bytes(),
            &Self::synced(),
        )?;
        Ok(())
    }

    #[cfg(feature = "test-hooks")]
    /// Overwrites one stored value (test hook for corruption tests).
    #[doc(hidden)]
    pub fn corrupt_hash_for_tests(
        &self,
        level: u8,
        index: u64,
        value: &[u8],
    ) -> Result<(), StorageError> {
        let cf = self.cf(CF_HASHES)?;
        if level == 0 && self.leaf_row == LeafRow::Groups {
            let key = group_key(index / LEAF_GROUP);
            let mut v = self.db.get_cf(cf, key)?.unwrap_or_default();
            let at = ((index % LEAF_GROUP) * 32) as usize;
            let end = (at + 32).min(v.len());
            if at > v.len() {
                return Err(StorageError::Corrupt(format!(
                    "leaf hash {index} not stored"
                )));
            }
            v.splice(at..end, value.iter().copied());
            self.db.put_cf_opt(cf, key, v, &Self::synced())?;
            return Ok(());
        }
        self.db
            .put_cf_opt(cf, hash_key(level, index), value, &Self::synced())?;
        Ok(())
    }

    /// Row 0 in groups: the puts of this commit's leaf hashes, the first
    /// group continued from what is stored. `hashes` are row-0 hashes in
    /// index order; a hash at an index already stored replaces it, as a
    /// put of its own key would.
    fn group_puts(
        &self,
        cf: &rocksdb::ColumnFamily,
        hashes: &[&StoredHash],
    ) -> Result<Vec<HashPut>, StorageError> {
        let mut puts: Vec<HashPut> = Vec::new();
        let mut current: Option<(u64, Vec<u8>)> = None;
        for h in hashes {
            let (group, at) = (h.index / LEAF_GROUP, (h.index % LEAF_GROUP) as usize * 32);
            if current.as_ref().is_none_or(|(g, _)| *g != group) {
                if let Some((g, v)) = current.take() {
                    puts.push((group_key(g), v));
                }
                let stored = if at == 0 {
                    Vec::new()
                } else {
                    self.db.get_cf(cf, group_key(group))?.unwrap_or_default()
                };
                current = Some((group, stored));
            }
            let Some((_, v)) = current.as_mut() else {
                continue;
            };
            if v.len() < at {
                return Err(StorageError::Corrupt(format!(
                    "leaf hash {} written with {} of its group stored before it",
                    h.index,
                    v.len() / 32
                )));
            }
            let end = (at + 32).min(v.len());
            v.splice(at..end, h.hash.as_bytes().iter().copied());
        }
        if let Some((g, v)) = current {
            puts.push((group_key(g), v));
        }
        Ok(puts)
    }

    fn read_groups(
        &self,
        cf: &rocksdb::ColumnFamily,
        start: u64,
        end: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), StoreError> {
        let (first, last) = (start / LEAF_GROUP, (end - 1) / LEAF_GROUP);
        let span = |g: u64| {
            let base = g * LEAF_GROUP;
            (start.max(base) - base, end.min(base + LEAF_GROUP) - base)
        };
        if first == last {
            // One group (a proof through a tile summary): a point read
            // instead of an iterator.
            let v = self
                .db
                .get_pinned_cf(cf, group_key(first))
                .map_err(StorageError::from)?
                .ok_or(StoreError::Missing {
                    level: 0,
                    index: start,
                })?;
            let (from, to) = span(first);
            return hashes_of_group(first, &v, from, to, out);
        }
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(group_key(last + 1).to_vec());
        let mut iter = self.db.raw_iterator_cf_opt(cf, opts);
        iter.seek(group_key(first));
        for g in first..=last {
            let missing = StoreError::Missing {
                level: 0,
                index: start.max(g * LEAF_GROUP),
            };
            let (Some(k), Some(v)) = (iter.key(), iter.value()) else {
                iter.status().map_err(StorageError::from)?;
                return Err(missing);
            };
            if k != group_key(g) {
                return Err(missing);
            }
            let (from, to) = span(g);
            hashes_of_group(g, v, from, to, out)?;
            iter.next();
        }
        iter.status().map_err(StorageError::from)?;
        Ok(())
    }

    /// The leaf hash at `index` (row 0), if stored.
    fn leaf_hash_at(&self, index: u64) -> Result<Option<Hash>, StorageError> {
        let mut out = Vec::with_capacity(1);
        match self.read_hashes(0, index, 1, &mut out) {
            Ok(()) => Ok(out.pop()),
            Err(StoreError::Missing { .. }) => Ok(None),
            Err(e) => Err(StorageError::from(e)),
        }
    }
}

impl HashReader for RocksStore {
    fn read_hashes(
        &self,
        level: u8,
        start: u64,
        count: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), StoreError> {
        if count == 0 {
            return Ok(());
        }
        let cf = self.cf(CF_HASHES)?;
        let end = start.saturating_add(count);
        if level == 0 && self.leaf_row == LeafRow::Groups {
            return self.read_groups(cf, start, end, out);
        }
        // A raw iterator bounded to the range: no allocation per hash, and
        // RocksDB stops at the bound instead of looking past it.
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(hash_key(level, end).to_vec());
        let mut iter = self.db.raw_iterator_cf_opt(cf, opts);
        iter.seek(hash_key(level, start));
        let mut want = start;
        while want < end && iter.valid() {
            let (Some(k), Some(v)) = (iter.key(), iter.value()) else {
                break;
            };
            if k != hash_key(level, want) {
                return Err(StoreError::Missing { level, index: want });
            }
            let h = Hash::from_slice(v).map_err(|_| {
                StoreError::Corrupt(format!("stored hash {level}/{want} is {} bytes", v.len()))
            })?;
            out.push(h);
            want += 1;
            iter.next();
        }
        iter.status().map_err(StorageError::from)?;
        if want != end {
            return Err(StoreError::Missing { level, index: want });
        }
        Ok(())
    }
}

impl LogStore for RocksStore {
    fn meta(&self) -> Result<Option<LogMeta>, StorageError> {
        let cf = self.cf(CF_META)?;
        let Some(origin) = self.db.get_cf(cf, b"origin")? else {
            return Ok(None);
        };
        let vkey = self
            .db
            .get_cf(cf, b"vkey")?
            .ok_or_else(|| StorageError::Corrupt("meta: vkey missing".into()))?;
        let size = self
            .db
            .get_cf(cf, b"size")?
            .ok_or_else(|| StorageError::Corrupt("meta: size missing".into()))?;
        let text = |b: Vec<u8>, what: &str| {
            String::from_utf8(b)
                .map_err(|_| StorageError::Corrupt(format!("meta: {what} not UTF-8")))
        };
        Ok(Some(LogMeta {
            origin: text(origin, "origin")?,
            vkey: text(vkey, "vkey")?,
            size: u64_value(&size, "meta size")?,
        }))
    }

    fn init(&self, origin: &str, vkey: &str, checkpoint: &str) -> Result<(), StorageError> {
        let mut b = WriteBatch::default();
        let meta = self.cf(CF_META)?;
        b.put_cf(meta, b"origin", origin.as_bytes());
        b.put_cf(meta, b"vkey", vkey.as_bytes());
        b.put_cf(meta, b"size", 0u64.to_be_bytes());
        b.put_cf(
            self.cf(CF_CHECKPOINTS)?,
            0u64.to_be_bytes(),
            checkpoint.as_bytes(),
        );
        self.db.write_opt(b, &Self::synced())?;
        Ok(())
    }

    fn commit(&self, batch: &CommitBatch) -> Result<(), StorageError> {
        let (entries, hashes, leaf_index, idem, artifacts) = (
            self.cf(CF_ENTRIES)?,
            self.cf(CF_HASHES)?,
            self.cf(CF_LEAF_INDEX)?,
            self.cf(CF_IDEMPOTENCY)?,
            self.cf(CF_ARTIFACTS)?,
        );
        // Keys go into the batch sorted within each column family: RocksDB
        // inserts a write batch into the memtable's skip list in order and
        // reuses the previous insert's position, so sorted keys are found
        // in a few steps instead of a search from the top for each one.
        // The sorts are stable, so a key written twice keeps its last value.
        let mut b = WriteBatch::default();
        let mut index_keys = Vec::with_capacity(batch.entries.len());
        let mut idem_keys = Vec::with_capacity(batch.entries.len());
        let mut artifact_keys = Vec::with_capacity(batch.entries.len());
        for e in &batch.entries {
            let idx = e.index.to_be_bytes();
            b.put_cf(entries, idx, &e.leaf);
            index_keys.push(leaf_index_key(&e.leaf_hash, e.index));
            if let Some(i) = &e.idempotency {
                idem_keys.push((idem_key(&i.source, &i.event_id), idx));
            }
            if let Some((name, meta)) = &e.artifact {
                let mut k = artifact_prefix(name);
                k.extend_from_slice(&idx);
                artifact_keys.push((k, meta.encode()));
            }
        }
        index_keys.sort_unstable();
        for k in &index_keys {
            b.put_cf(leaf_index, k, []);
        }
        idem_keys.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in &idem_keys {
            b.put_cf(idem, k, v);
        }
        artifact_keys.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in &artifact_keys {
            b.put_cf(artifacts, k, v);
        }
        let grouped = self.leaf_row == LeafRow::Groups;
        let mut leaves: Vec<&StoredHash> = Vec::new();
        let mut hash_puts: Vec<HashPut> = Vec::with_capacity(batch.hashes.len());
        for h in &batch.hashes {
            if grouped && h.level == 0 {
                leaves.push(h);
            } else {
                hash_puts.push((hash_key(h.level, h.index), h.hash.as_bytes().to_vec()));
            }
        }
        leaves.sort_by_key(|h| h.index);
        hash_puts.extend(self.group_puts(hashes, &leaves)?);
        hash_puts.sort_by_key(|(k, _)| *k);
        for (k, v) in &hash_puts {
            b.put_cf(hashes, k, v);
        }
        let checkpoints = self.cf(CF_CHECKPOINTS)?;
        for (size, note) in &batch.earlier_checkpoints {
            b.put_cf(checkpoints, size.to_be_bytes(), note.as_bytes());
        }
        b.put_cf(
            checkpoints,
            batch.size.to_be_bytes(),
            batch.checkpoint.as_bytes(),
        );
        b.put_cf(self.cf(CF_META)?, b"size", batch.size.to_be_bytes());
        self.db.write_opt(b, &Self::synced())?;
        Ok(())
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(CF_ENTRIES)?, index.to_be_bytes())?)
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let cf = self.cf(CF_ENTRIES)?;
        let first = start.to_be_bytes();
        let mut out = Vec::with_capacity(end.saturating_sub(start).min(4096) as usize);
        let iter = self
            .db
            .iterator_cf(cf, IteratorMode::From(&first, Direction::Forward));
        let mut want = start;
        for item in iter {
            if want >= end {
                break;
            }
            let (k, v) = item?;
            let idx = u64_value(&k, "entry key")?;
            if idx != want {
                return Err(StorageError::Corrupt(format!("entry {want} missing")));
            }
            out.push((idx, v.into_vec()));
            want += 1;
        }
        if want < end {
            return Err(StorageError::Corrupt(format!("entry {want} missing")));
        }
        Ok(out)
    }

    fn index_of(&self, leaf_hash: &Hash) -> Result<Option<u64>, StorageError> {
        // Candidates share the hash's first 8 bytes; the full leaf hash in
        // the tree's bottom row decides.
        let prefix = &leaf_hash.as_bytes()[..8];
        let iter = self.db.iterator_cf(
            self.cf(CF_LEAF_INDEX)?,
            IteratorMode::From(prefix, Direction::Forward),
        );
        for item in iter {
            let (k, _) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            let index = u64_value(k.get(8..).unwrap_or_default(), "leaf index key")?;
            let stored = self
                .leaf_hash_at(index)?
                .ok_or_else(|| StorageError::Corrupt(format!("leaf hash {index} missing")))?;
            if stored == *leaf_hash {
                return Ok(Some(index));
            }
        }
        // Stores written before the compact index.
        self.db
            .get_cf(self.cf(CF_LEAF_HASHES)?, leaf_hash.as_bytes())?
            .map(|v| u64_value(&v, "leaf hash index"))
            .transpose()
    }

    fn idempotency(
        &self,
        source: &str,
        event_id: &str,
    ) -> Result<Option<(u64, [u8; 32])>, StorageError> {
        let Some(v) = self
            .db
            .get_cf(self.cf(CF_IDEMPOTENCY)?, idem_key(source, event_id))?
        else {
            return Ok(None);
        };
        let index = u64_value(&v, "idempotency index")?;
        let digest: [u8; 32] = match v.len() {
            40 => v
                .get(8..40)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| StorageError::Corrupt("idempotency value length".into()))?,
            8 => {
                // Only a retry gets here: recompute the stored event's
                // digest from its leaf.
                let leaf = self.entry(index)?.ok_or_else(|| {
                    StorageError::Corrupt(format!(
                        "idempotency names entry {index}, which is missing"
                    ))
                })?;
                tlog_core::leaf::Leaf::decode(&leaf)
                    .map_err(|e| StorageError::Corrupt(format!("entry {index}: {e}")))?
                    .event
                    .content_digest()
            }
            n => {
                return Err(StorageError::Corrupt(format!(
                    "idempotency value of {n} bytes"
                )));
            }
        };
        Ok(Some((index, digest)))
    }

    fn checkpoint(&self, size: u64) -> Result<Option<String>, StorageError> {
        self.db
            .get_cf(self.cf(CF_CHECKPOINTS)?, size.to_be_bytes())?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| StorageError::Corrupt(format!("checkpoint {size} not UTF-8")))
            })
            .transpose()
    }

    fn artifact_entries(
        &self,
        name: &str,
        after: Option<u64>,
        limit: usize,
        filter: &dyn Fn(&ArtifactMeta) -> bool,
    ) -> Result<Vec<(u64, ArtifactMeta)>, StorageError> {
        let cf = self.cf(CF_ARTIFACTS)?;
        let prefix = artifact_prefix(name);
        let mut from = prefix.clone();
        match after {
            Some(i) => match i.checked_add(1) {
                Some(next) => from.extend_from_slice(&next.to_be_bytes()),
                None => return Ok(Vec::new()),
            },
            None => from.extend_from_slice(&0u64.to_be_bytes()),
        }
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || k.len() != prefix.len() + 8 {
                break;
            }
            let idx = u64_value(&k[prefix.len()..], "artifact key")?;
            let meta = ArtifactMeta::decode(&v)?;
            if filter(&meta) {
                out.push((idx, meta));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}
