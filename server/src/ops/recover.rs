//! Bringing a rolled-back or restored store back to the log's latest
//! signed state, or adopting a store as that state, explicitly.
//!
//! - [`recover_from`]: re-imports the entries a store lacks from a copy of
//!   the log (another data directory, a backup folder or a replica's
//!   store). Nothing is trusted from the copy: its checkpoints must verify
//!   with this log's key, the local store must be a prefix of it and the
//!   checkpoint lock's checkpoint too (consistency proofs from the copy's
//!   hashes, RFC 9162 section 2.1.4), and after every imported stretch the
//!   local tree must give the root of the copy's signed checkpoint at that
//!   size. The lock is then moved to the copy's latest checkpoint.
//! - [`adopt_store`]: for a log without a lock (an upgrade from a version
//!   without it, or a lock lost with its disk), writes the store's latest
//!   checkpoint as the lock. Refused when a lock exists that the store
//!   does not extend.

use std::path::{Path, PathBuf};

use tlog_core::Hash;
use tlog_core::merkle::prove::Prover;
use tlog_core::merkle::tree::Tree;
use tlog_core::note::{Verifier, Verifiers};

use crate::sequencer::lock::{CheckpointLock, GuardError, LockError};
use crate::storage::{CommitBatch, LogMeta, LogStore, RocksStore, StorageError};

/// Entries per commit of a re-import (each commit is synced).
const IMPORT_CHUNK: usize = 4096;

/// Why a recovery was refused or failed. Nothing already in the local
/// store is changed by a refused recovery.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// A store could not be opened or read.
    #[error("{which} store {path}: {source}")]
    Storage {
        /// "local" or "source".
        which: &'static str,
        /// Its folder.
        path: PathBuf,
        /// The storage error.
        source: Box<StorageError>,
    },
    /// A store holds no log.
    #[error("{which} store {path} holds no log")]
    Empty {
        /// "local" or "source".
        which: &'static str,
        /// Its folder.
        path: PathBuf,
    },
    /// The copy is of another log.
    #[error("the copy at {path} is of log {theirs:?}, this one is {ours:?}")]
    OtherLog {
        /// The copy.
        path: PathBuf,
        /// The copy's origin and key.
        theirs: String,
        /// This log's.
        ours: String,
    },
    /// Something in the copy or the local store does not verify.
    #[error("{0}")]
    Verify(String),
    /// The copy lacks entries the log has signed.
    #[error(
        "the copy holds {have} entries, but the log has signed size {need}: it cannot bring \
         the store back; find a copy with at least {need} entries"
    )]
    TooShort {
        /// The copy's size.
        have: u64,
        /// What is needed.
        need: u64,
    },
    /// The checkpoint lock could not be used.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The store does not extend the lock.
    #[error(transparent)]
    Guard(#[from] GuardError),
}

/// What a recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The local size before.
    pub from: u64,
    /// The local size after.
    pub to: u64,
    /// Its root.
    pub root: Hash,
}

fn storage<'a>(which: &'static str, path: &'a Path) -> impl Fn(StorageError) -> RecoverError + 'a {
    move |source| RecoverError::Storage {
        which,
        path: path.to_owned(),
        source: Box::new(source),
    }
}

fn meta_of(which: &'static str, path: &Path, s: &RocksStore) -> Result<LogMeta, RecoverError> {
    s.meta()
        .map_err(storage(which, path))?
        .ok_or_else(|| RecoverError::Empty {
            which,
            path: path.to_owned(),
        })
}

/// The signed checkpoint `s` holds at `size`, verified; its root.
fn signed_root(
    which: &str,
    s: &RocksStore,
    size: u64,
    key: &Verifiers,
    origin: &str,
) -> Result<(Hash, String), RecoverError> {
    let note = s
        .checkpoint(size)
        .map_err(|e| RecoverError::Verify(format!("{which} checkpoint at {size}: {e}")))?
        .ok_or_else(|| {
            RecoverError::Verify(format!("{which} store has no checkpoint at {size}"))
        })?;
    let opened = tlog_core::checkpoint::open_stored(&note, key, origin, size)
        .map_err(|e| RecoverError::Verify(format!("{which} store: {e}")))?;
    Ok((opened.checkpoint.root, note))
}

/// The signed checkpoint of `s` at its size, verified, with the tree its
/// stored hashes give, which must reach the checkpoint's root.
fn whole_log(
    which: &str,
    s: &RocksStore,
    size: u64,
    key: &Verifiers,
    origin: &str,
) -> Result<(Hash, String, Tree), RecoverError> {
    let (root, note) = signed_root(which, s, size, key, origin)?;
    let tree = Tree::open(s, size)
        .map_err(|e| RecoverError::Verify(format!("the {which} tree cannot be read: {e}")))?;
    if tree.root() != root {
        return Err(RecoverError::Verify(format!(
            "the {which} tree gives root {} at size {size}, its checkpoint says {root}",
            tree.root()
        )));
    }
    Ok((root, note, tree))
}

/// Proves from `s`'s hashes that its tree at `big` (root `big_root`)
/// extends `small` (root `small_root`).
fn prove_extends(
    s: &RocksStore,
    small: u64,
    small_root: &Hash,
    big: u64,
    big_root: &Hash,
    what: &str,
) -> Result<(), RecoverError> {
    if small == 0 {
        return Ok(());
    }
    if small == big {
        return if small_root == big_root {
            Ok(())
        } else {
            Err(RecoverError::Verify(format!(
                "{what}: at size {small} the roots differ ({small_root} and {big_root})"
            )))
        };
    }
    let proof = Prover::new(s)
        .consistency_proof(small, big)
        .map_err(|e| RecoverError::Verify(format!("{what}: {e}")))?;
    tlog_core::merkle::verify::verify_consistency(small, big, &proof, small_root, big_root)
        .map_err(|e| RecoverError::Verify(format!("{what}: consistency {small} -> {big}: {e}")))
}

/// The store folder of `from`: a data directory or backup folder (with
/// `db/`), or a store folder itself.
pub fn source_store_path(from: &Path) -> PathBuf {
    let db = crate::ops::keys::db_path(from);
    if db.join("CURRENT").is_file() {
        db
    } else {
        from.to_owned()
    }
}

/// Re-imports into the store of `data_dir` the entries it lacks from the
/// copy of the log at `from`, checking everything (module docs), then
/// moves the checkpoint lock at `lock_path` to the copy's latest
/// checkpoint. The server must be stopped.
pub fn recover_from(
    data_dir: &Path,
    lock_path: &Path,
    from: &Path,
) -> Result<Recovered, RecoverError> {
    let local_path = crate::ops::keys::db_path(data_dir);
    let local = RocksStore::open(&local_path).map_err(storage("local", &local_path))?;
    let src_path = source_store_path(from);
    let src = RocksStore::open_read_only(&src_path).map_err(storage("source", &src_path))?;
    let ours = meta_of("local", &local_path, &local)?;
    let theirs = meta_of("source", &src_path, &src)?;
    if (ours.origin.as_str(), ours.vkey.as_str()) != (theirs.origin.as_str(), theirs.vkey.as_str())
    {
        return Err(RecoverError::OtherLog {
            path: src_path,
            theirs: theirs.vkey,
            ours: ours.vkey,
        });
    }
    let verifier = Verifier::from_vkey(&ours.vkey)
        .map_err(|e| RecoverError::Verify(format!("the stored verifier key: {e}")))?;
    let key = Verifiers::new([verifier]);
    let origin = ours.origin.as_str();

    // The copy is whole and signed.
    let (src_root, src_note, _) = whole_log("source", &src, theirs.size, &key, origin)?;
    // It has everything the log signed, and extends the lock.
    let lock = CheckpointLock::at(lock_path);
    let locked = lock.read(&key, origin)?;
    let need = locked.as_ref().map_or(0, |l| l.size).max(ours.size);
    if theirs.size < need {
        return Err(RecoverError::TooShort {
            have: theirs.size,
            need,
        });
    }
    if let Some(l) = &locked {
        prove_extends(
            &src,
            l.size,
            &l.root,
            theirs.size,
            &src_root,
            "the copy does not extend the checkpoint lock",
        )?;
    }
    // The local store is a prefix of it.
    let (local_root, _, local_tree) = whole_log("local", &local, ours.size, &key, origin)?;
    prove_extends(
        &src,
        ours.size,
        &local_root,
        theirs.size,
        &src_root,
        "the local store is not a prefix of the copy",
    )?;

    // Import, one stretch per run of signed sizes, each checked against
    // the copy's signature at its end.
    let mut tree = local_tree;
    let sizes = src
        .checkpoint_sizes(ours.size, theirs.size)
        .map_err(storage("source", &src_path))?;
    let mut batch = CommitBatch::default();
    for size in sizes {
        let (root, note) = signed_root("source", &src, size, &key, origin)?;
        let rows = src
            .entries(tree.size(), size)
            .map_err(storage("source", &src_path))?;
        if rows.len() as u64 != size - tree.size() {
            return Err(RecoverError::Verify(format!(
                "the copy lacks leaves in [{}, {size})",
                tree.size()
            )));
        }
        for (index, leaf) in rows {
            let e = crate::sequencer::entry_for_leaf(index, leaf)
                .map_err(|err| RecoverError::Verify(format!("the copy's leaf {index}: {err}")))?;
            tree.append(e.leaf_hash, &mut batch.hashes);
            batch.entries.push(e);
        }
        if tree.root() != root {
            return Err(RecoverError::Verify(format!(
                "the copy's leaves give root {} at size {size}, its signed checkpoint says {root}",
                tree.root()
            )));
        }
        if !batch.checkpoint.is_empty() {
            let prev = std::mem::take(&mut batch.checkpoint);
            batch.earlier_checkpoints.push((batch.size, prev));
        }
        batch.size = size;
        batch.checkpoint = note;
        if batch.entries.len() >= IMPORT_CHUNK {
            local
                .commit(&batch)
                .map_err(storage("local", &local_path))?;
            batch = CommitBatch::default();
        }
    }
    if !batch.checkpoint.is_empty() {
        local
            .commit(&batch)
            .map_err(storage("local", &local_path))?;
    }
    debug_assert_eq!(tree.size(), theirs.size);
    lock.write(&src_note)?;
    Ok(Recovered {
        from: ours.size,
        to: theirs.size,
        root: src_root,
    })
}

/// Writes the latest checkpoint of the store in `data_dir` as the lock at
/// `lock_path`: the operator's explicit statement that no later checkpoint
/// was handed out. Refused if a lock exists that the store does not
/// extend (that store was rolled back; use [`recover_from`]).
pub fn adopt_store(data_dir: &Path, lock_path: &Path) -> Result<Recovered, RecoverError> {
    let path = crate::ops::keys::db_path(data_dir);
    let store = RocksStore::open(&path).map_err(storage("local", &path))?;
    let meta = meta_of("local", &path, &store)?;
    let verifier = Verifier::from_vkey(&meta.vkey)
        .map_err(|e| RecoverError::Verify(format!("the stored verifier key: {e}")))?;
    let key = Verifiers::new([verifier]);
    let (root, note, _) = whole_log("local", &store, meta.size, &key, &meta.origin)?;
    let lock = CheckpointLock::at(lock_path);
    if let Some(l) = lock.read(&key, &meta.origin)? {
        let prover = Prover::new(&store);
        l.check_store(lock.path(), meta.size, &root, |a, b| {
            prover.consistency_proof(a, b).map_err(|e| e.to_string())
        })?;
    }
    lock.write(&note)?;
    Ok(Recovered {
        from: meta.size,
        to: meta.size,
        root,
    })
}
