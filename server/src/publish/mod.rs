//! Publishing the log as static C2SP tiles (<https://c2sp.org/tlog-tiles>)
//! to a target any web server, object store or CDN can serve: the same
//! files the HTTP listener answers with ([`crate::http`]), at the same
//! paths below the target.
//!
//! One round ([`publish`]) reads the target's checkpoint (the size it
//! already shows), writes every tile and entry bundle the log's tree has
//! grown since ([`tlog_core::tiles::new_tiles`]), and writes the new
//! checkpoint **last**, so that a reader never sees a checkpoint whose
//! tiles are missing. Tiles are immutable, so a round interrupted before
//! its checkpoint is simply done again. A target whose checkpoint is not
//! this log's, is ahead of the store, or shows another root at the same
//! size is refused, never overwritten.
//!
//! Targets: a directory ([`DirTarget`]) and an S3-compatible object store
//! ([`s3::S3Target`]).

pub mod s3;

use std::path::{Path, PathBuf};

use tlog_core::checkpoint;
use tlog_core::note::Verifiers;
use tlog_core::tiles::new_tiles;

use crate::ops::metrics::Metrics;
use crate::service::error::ServiceError;
use crate::service::tiles::tile_bytes;
use crate::storage::LogStore;

/// Why a round of publishing failed. Nothing already published is
/// changed by a failed round except tiles, which never change.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The target could not be read or written.
    #[error("publish target {path}: {source}")]
    Target {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The object store refused or failed.
    #[error("publish target object {key}: {source}")]
    Store {
        /// The object's key.
        key: String,
        /// Why.
        source: object_store::Error,
    },
    /// The target is configured wrongly.
    #[error("publish target: {0}")]
    Config(String),
    /// The log could not be read (or its data is damaged).
    #[error("reading the log: {0}")]
    Log(#[from] ServiceError),
    /// The store holds no log.
    #[error("the data directory holds no log")]
    NoLog,
    /// The target holds a checkpoint that is not this log's.
    #[error("the target's checkpoint is not this log's ({0}); publish to an empty target")]
    Foreign(checkpoint::CheckpointError),
    /// The target shows a larger tree than the store holds.
    #[error(
        "the target already shows size {published}, beyond the store's {size}: the store was \
         rolled back or this is another copy of the log; nothing was written"
    )]
    Ahead {
        /// The target's size.
        published: u64,
        /// The store's size.
        size: u64,
    },
    /// The target shows another root at the store's size: a fork.
    #[error(
        "the target shows size {size} with another root than the store: a fork; nothing was written"
    )]
    Fork {
        /// The size.
        size: u64,
    },
}

/// Where published files go: paths are the tiles paths below the log's
/// prefix (`checkpoint`, `tile/0/000`, ...).
pub trait Target: Send + Sync {
    /// Writes `bytes` at `path`, replacing what is there, so that a reader
    /// sees the old file or the new one, never a part.
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), PublishError>;
    /// The file at `path`, or `None` if there is none.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, PublishError>;
}

/// The target a `to` setting names: `s3://BUCKET[/PREFIX]` for an object
/// store, anything else a directory.
pub fn target_for(
    to: &Path,
    s3: &crate::ops::config::S3Section,
) -> Result<std::sync::Arc<dyn Target>, PublishError> {
    let text = to.to_string_lossy();
    if text.starts_with("s3://") {
        Ok(std::sync::Arc::new(s3::S3Target::new(&text, s3)?))
    } else {
        Ok(std::sync::Arc::new(DirTarget::new(to)))
    }
}

/// A directory: each file written beside its place, synced, then renamed
/// into it (and the directory synced), so a crash leaves old or new.
#[derive(Debug, Clone)]
pub struct DirTarget {
    root: PathBuf,
}

impl DirTarget {
    /// The directory `root` (created when first written).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirTarget { root: root.into() }
    }

    fn place(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Target {
        path: path.to_owned(),
        source,
    }
}

impl Target for DirTarget {
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), PublishError> {
        use std::io::Write as _;
        let dest = self.place(path);
        let dir = dest.parent().unwrap_or(&self.root).to_owned();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        // Web servers serve files as their mode allows: world-readable.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
            .map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))?;
        Ok(())
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, PublishError> {
        let p = self.place(path);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p)(e)),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The size the target showed before.
    pub from: u64,
    /// The size it shows now.
    pub to: u64,
    /// Tiles and bundles written (the checkpoint not counted).
    pub files: usize,
}

/// One round: brings `target` from the size its checkpoint shows to the
/// store's latest signed checkpoint, checkpoint last (see the module
/// documentation).
pub fn publish<S: LogStore>(
    store: &S,
    target: &dyn Target,
    known: &Verifiers,
    origin: &str,
    metrics: &Metrics,
) -> Result<Published, PublishError> {
    publish_at(store, target, known, origin, metrics, None)
}

/// Like [`publish`], to the checkpoint `at` (size and signed note) instead
/// of the store's latest: a witnessed log publishes the newest checkpoint
/// its witnesses' quorum cosigned, with their cosignatures. The same size
/// with a different note (more cosignatures) rewrites only the checkpoint.
pub fn publish_at<S: LogStore>(
    store: &S,
    target: &dyn Target,
    known: &Verifiers,
    origin: &str,
    metrics: &Metrics,
    at: Option<(u64, String)>,
) -> Result<Published, PublishError> {
    let (size, note) = match at {
        Some(a) => a,
        None => {
            let size = store
                .meta()
                .map_err(|e| PublishError::Log(e.into()))?
                .ok_or(PublishError::NoLog)?
                .size;
            let note = store
                .checkpoint(size)
                .map_err(|e| PublishError::Log(e.into()))?
                .ok_or_else(|| {
                    PublishError::Log(ServiceError::DataLoss(format!(
                        "no checkpoint stored at the log's size {size}"
                    )))
                })?;
            (size, note)
        }
    };
    let latest = checkpoint::open_stored(&note, known, origin, size)
        .map_err(|e| PublishError::Log(ServiceError::DataLoss(e.to_string())))?;
    let from = match target.read("checkpoint")? {
        None => 0,
        Some(bytes) => {
            let shown = checkpoint::open(&bytes, known, origin).map_err(PublishError::Foreign)?;
            let published = shown.checkpoint.size;
            if published > size {
                return Err(PublishError::Ahead { published, size });
            }
            // The target must show a prefix of this store's tree: the
            // same root at its size, or it is another history (a fork).
            let root = if published == size {
                latest.checkpoint.root
            } else {
                tlog_core::merkle::prove::Prover::new(store)
                    .root_at(published)
                    .map_err(|e| PublishError::Log(ServiceError::DataLoss(e.to_string())))?
            };
            if shown.checkpoint.root != root {
                return Err(PublishError::Fork { size: published });
            }
            if published == size {
                if bytes != note.as_bytes() {
                    target.write("checkpoint", note.as_bytes())?;
                }
                return Ok(Published {
                    from: size,
                    to: size,
                    files: 0,
                });
            }
            published
        }
    };
    let tiles = new_tiles(from, size);
    for t in &tiles {
        let bytes = tile_bytes(store, metrics, *t)?;
        target.write(&t.to_path(), &bytes)?;
    }
    target.write("checkpoint", note.as_bytes())?;
    Ok(Published {
        from,
        to: size,
        files: tiles.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A target in memory that can be told to fail the n-th write.
    #[derive(Default)]
    struct Flaky {
        files: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
        fail_at: Mutex<Option<usize>>,
        writes: Mutex<usize>,
    }

    impl Target for Flaky {
        fn write(&self, path: &str, bytes: &[u8]) -> Result<(), PublishError> {
            let mut n = self.writes.lock().expect("lock");
            *n += 1;
            if *self.fail_at.lock().expect("lock") == Some(*n) {
                return Err(PublishError::Target {
                    path: path.into(),
                    source: std::io::Error::other("injected"),
                });
            }
            self.files
                .lock()
                .expect("lock")
                .insert(path.into(), bytes.to_vec());
            Ok(())
        }
        fn read(&self, path: &str) -> Result<Option<Vec<u8>>, PublishError> {
            Ok(self.files.lock().expect("lock").get(path).cloned())
        }
    }

    #[test]
    fn the_checkpoint_is_written_last_and_an_interrupted_round_is_redone() {
        let dir = tempfile::tempdir().expect("tmp");
        let (store, known, origin) = crate::publish::tests_support::log_of(dir.path(), 600);
        let m = Metrics::default();
        let t = Flaky::default();
        // Fail the write just before the checkpoint's: no checkpoint.
        let n = new_tiles(0, 600).len();
        *t.fail_at.lock().expect("lock") = Some(n);
        assert!(publish(&store, &t, &known, &origin, &m).is_err());
        assert!(
            t.read("checkpoint").expect("read").is_none(),
            "no checkpoint before its tiles"
        );
        *t.fail_at.lock().expect("lock") = None;
        let p = publish(&store, &t, &known, &origin, &m).expect("again");
        assert_eq!((p.from, p.to, p.files), (0, 600, n));
        let files = t.files.lock().expect("lock").clone();
        assert!(files.contains_key("tile/0/002.p/88") && files.contains_key("tile/entries/001"));
        // Nothing new: nothing written.
        assert_eq!(
            publish(&store, &t, &known, &origin, &m)
                .expect("idle")
                .files,
            0
        );
        // Another log's checkpoint on the target: refused, not replaced.
        let other = tempfile::tempdir().expect("tmp");
        let (other_store, other_known, _) =
            crate::publish::tests_support::log_of_with(other.path(), 3, 0, 7);
        let o = Flaky::default();
        publish(&other_store, &o, &other_known, &origin, &m).expect("other log");
        let before = o.read("checkpoint").expect("read");
        assert!(matches!(
            publish(&store, &o, &known, &origin, &m),
            Err(PublishError::Foreign(_))
        ));
        assert_eq!(o.read("checkpoint").expect("read"), before);
        // The same key, another history: smaller (a fork at its size),
        // equal (another root) or larger (ahead): refused, not replaced.
        for (n, want) in [(300u64, "fork"), (600, "fork"), (700, "ahead")] {
            let d = tempfile::tempdir().expect("tmp");
            let (fork, _, _) = crate::publish::tests_support::log_of_with(d.path(), n, 1, 3);
            let f = Flaky::default();
            publish(&fork, &f, &known, &origin, &m).expect("the other history");
            let before = f.read("checkpoint").expect("read");
            let got = publish(&store, &f, &known, &origin, &m);
            match want {
                "fork" => assert!(
                    matches!(got, Err(PublishError::Fork { .. })),
                    "{n}: {got:?}"
                ),
                _ => assert!(
                    matches!(
                        got,
                        Err(PublishError::Ahead {
                            published: 700,
                            size: 600
                        })
                    ),
                    "{got:?}"
                ),
            }
            assert_eq!(f.read("checkpoint").expect("read"), before, "{n}");
        }
        // A prefix of this log published earlier is continued.
        let d = tempfile::tempdir().expect("tmp");
        let (prefix, _, _) = crate::publish::tests_support::log_of_with(d.path(), 300, 0, 3);
        let f = Flaky::default();
        publish(&prefix, &f, &known, &origin, &m).expect("prefix");
        let p = publish(&store, &f, &known, &origin, &m).expect("continued");
        assert_eq!(
            (p.from, p.to, p.files),
            (300, 600, new_tiles(300, 600).len())
        );
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use crate::storage::{CommitBatch, NewEntry, RocksStore};
    use tlog_core::checkpoint::Checkpoint;
    use tlog_core::merkle::tree::Tree;
    use tlog_core::note::Signer;

    pub fn log_of(dir: &Path, n: u64) -> (RocksStore, Verifiers, String) {
        log_of_with(dir, n, 0, 3)
    }

    /// A store of `n` leaves signed by the key from `key_seed`; `seed`
    /// varies the leaves (the same key: another history of the same log).
    pub fn log_of_with(
        dir: &Path,
        n: u64,
        seed: u8,
        key_seed: u8,
    ) -> (RocksStore, Verifiers, String) {
        let origin = "publish.test/log".to_owned();
        let signer = Signer::from_seed(&origin, &[key_seed; 32]).expect("signer");
        let vkey = signer.verifier().to_vkey();
        let store = RocksStore::open(&dir.join("db")).expect("open");
        let sign = |size, root| {
            Checkpoint::new(&origin, size, root)
                .sign(&signer)
                .expect("sign")
        };
        store
            .init(&origin, &vkey, &sign(0, tlog_core::empty_root()))
            .expect("init");
        let mut tree = Tree::new();
        let mut batch = CommitBatch::default();
        for i in 0..n {
            let leaf = format!("leaf {seed} {i}").into_bytes();
            let h = tlog_core::leaf_hash(&leaf);
            tree.append(h, &mut batch.hashes);
            batch.entries.push(NewEntry {
                index: i,
                leaf,
                leaf_hash: h,
                idempotency: None,
                artifact: None,
            });
        }
        batch.size = n;
        batch.checkpoint = sign(n, tree.root());
        store.commit(&batch).expect("commit");
        (store, Verifiers::new([signer.verifier()]), origin)
    }
}
