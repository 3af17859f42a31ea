//! The checkpoint lock: the latest signed checkpoint, kept durable outside
//! the store (the idea of Sunlight's checkpoint lock), so that a store set
//! back to an older state (a backup restored over it, an edited file, a
//! write-ahead log that lost its tail) is noticed instead of extended into
//! a fork.
//!
//! The lock is one file of two fixed slots, each able to hold the signed
//! note of a checkpoint (C2SP tlog-checkpoint in a C2SP signed-note) with
//! a sequence number and a SHA-256 over both. A write fills the slot not
//! holding the latest, in place, and syncs the file's data (one
//! `fdatasync`, no rename, no folder sync: the file never changes size).
//! A write torn by a crash leaves the other slot, the previous checkpoint,
//! intact; reading takes the valid slot with the higher sequence number.
//! The lock is written after the store commit that holds its checkpoint
//! and before anything that depends on it is answered or published, so
//! after any crash the store holds at least what the lock says.
//!
//! At start the sequencer signs only consistent extensions of it
//! ([`Locked::check_store`]): a store smaller than the lock was rolled
//! back, and a store whose tree at the lock's size has another root
//! forked; both refuse to start.

use std::path::{Path, PathBuf};

use tlog_core::Hash;
use tlog_core::note::Verifiers;

/// A checkpoint lock that could not be read, verified or written.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Reading or writing the file failed.
    #[error("checkpoint lock {path}: {what}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no checkpoint of this log signed by its key.
    #[error(
        "checkpoint lock {path} does not hold a checkpoint of this log signed by its key: \
         {reason}; it was damaged or replaced. Restore it from a backup of the lock, or \
         from the latest checkpoint a monitor or client holds"
    )]
    Invalid {
        /// The lock file.
        path: PathBuf,
        /// Why it does not verify.
        reason: String,
    },
}

/// The checkpoint held by the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The signed note, as written.
    pub note: String,
}

/// Bytes per slot: a note of up to `SLOT - HEADER` bytes fits.
const SLOT: usize = 16 * 1024;
/// Magic, sequence number, length, SHA-256.
const HEADER: usize = 8 + 8 + 4 + 32;
const MAGIC: &[u8; 8] = b"tlogLCK1";

/// The lock file.
#[derive(Debug)]
pub struct CheckpointLock {
    path: PathBuf,
    /// The open file and the sequence number of its latest slot, once
    /// read or written.
    open: std::sync::Mutex<Option<(std::fs::File, u64)>>,
}

/// One slot's note and sequence number, if its checksum holds.
fn parse_slot(b: &[u8]) -> Option<(u64, String)> {
    use sha2::Digest as _;
    if b.len() < HEADER || &b[..8] != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(b[8..16].try_into().ok()?);
    let len = u32::from_be_bytes(b[16..20].try_into().ok()?) as usize;
    let note = b.get(HEADER..HEADER + len)?;
    let mut h = sha2::Sha256::new();
    h.update(&b[8..20]);
    h.update(note);
    if h.finalize()[..] != b[20..52] {
        return None;
    }
    Some((seq, String::from_utf8(note.to_vec()).ok()?))
}

fn slot_bytes(seq: u64, note: &str) -> Vec<u8> {
    use sha2::Digest as _;
    let mut b = Vec::with_capacity(SLOT);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&(note.len() as u32).to_be_bytes());
    let mut h = sha2::Sha256::new();
    h.update(&b[8..20]);
    h.update(note.as_bytes());
    b.extend_from_slice(&h.finalize());
    b.extend_from_slice(note.as_bytes());
    b
}

impl CheckpointLock {
    /// The lock at `path` (which need not exist yet).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        CheckpointLock {
            path: path.into(),
            open: std::sync::Mutex::new(None),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> LockError + '_ {
        move |source| LockError::Io {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> LockError {
        LockError::Invalid {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// The locked checkpoint, verified with the log's key for `origin`;
    /// `None` if there is no lock file.
    pub fn read(&self, key: &Verifiers, origin: &str) -> Result<Option<Locked>, LockError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("read")(e)),
        };
        let best = bytes
            .chunks(SLOT)
            .take(2)
            .filter_map(parse_slot)
            .max_by_key(|(seq, _)| *seq);
        let Some((seq, note)) = best else {
            return Err(self.invalid("neither slot holds an intact checkpoint"));
        };
        let opened = tlog_core::checkpoint::open(note.as_bytes(), key, origin)
            .map_err(|e| self.invalid(e.to_string()))?;
        if let Ok(mut open) = self.open.lock()
            && open.is_none()
            && let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.path)
        {
            *open = Some((f, seq));
        }
        Ok(Some(Locked {
            size: opened.checkpoint.size,
            root: opened.checkpoint.root,
            note,
        }))
    }

    /// Makes `note` the lock's checkpoint, durably: written into the slot
    /// that does not hold the latest, then the file's data synced. A new
    /// lock file is created whole and its folder synced.
    pub fn write(&self, note: &str) -> Result<(), LockError> {
        use std::os::unix::fs::FileExt as _;
        if note.len() > SLOT - HEADER {
            return Err(self.invalid(format!(
                "a checkpoint of {} bytes does not fit a slot of {}",
                note.len(),
                SLOT - HEADER
            )));
        }
        let mut open = self
            .open
            .lock()
            .map_err(|_| self.invalid("lock state poisoned"))?;
        if open.is_none() {
            *open = Some(self.open_or_create()?);
        }
        let Some((file, seq)) = open.as_mut() else {
            return Err(self.invalid("lock file not open"));
        };
        let next = *seq + 1;
        let at = (next % 2) * SLOT as u64;
        // Only the slot's header and note: one page or two to sync.
        let bytes = slot_bytes(next, note);
        file.write_all_at(&bytes[..HEADER + note.len()], at)
            .map_err(self.io("write a slot"))?;
        file.sync_data().map_err(self.io("sync"))?;
        *seq = next;
        Ok(())
    }

    /// Opens the lock file, reading which slot is the latest, or creates
    /// it (two empty slots, synced with its folder).
    fn open_or_create(&self) -> Result<(std::fs::File, u64), LockError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let seq = bytes
                    .chunks(SLOT)
                    .take(2)
                    .filter_map(parse_slot)
                    .map(|(s, _)| s)
                    .max()
                    .unwrap_or(0);
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .map_err(self.io("open"))?;
                if bytes.len() < 2 * SLOT {
                    f.set_len(2 * SLOT as u64).map_err(self.io("size"))?;
                }
                Ok((f, seq))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&self.path)
                    .map_err(self.io("create"))?;
                f.set_len(2 * SLOT as u64).map_err(self.io("size"))?;
                f.sync_all().map_err(self.io("sync"))?;
                let dir = self
                    .path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(self.io("sync its folder"))?;
                Ok((f, 0))
            }
            Err(e) => Err(self.io("read")(e)),
        }
    }
}

/// How the store stands against the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The store is at the lock's checkpoint.
    Same,
    /// The store extends the lock's checkpoint consistently (a crash
    /// between the store's commit and the lock's write): the lock is to be
    /// moved forward.
    Ahead,
}

/// Why the store is not a consistent extension of the lock.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The store is smaller than the checkpoint the log last signed.
    #[error(
        "the store holds {store} entries, but the log signed a checkpoint at size {locked} \
         (checkpoint lock {path}): the store was rolled back (an older backup restored, \
         or files edited or lost). Appending now would sign a fork, so writes are \
         refused. Re-import the missing entries from a copy of the log that has them \
         (`tlog-server recover --data-dir <dir> --from <copy>`), or start a new log \
         (`tlog-server init` with a new origin) if none exists"
    )]
    RolledBack {
        /// The store's size.
        store: u64,
        /// The lock's size.
        locked: u64,
        /// The lock file.
        path: PathBuf,
    },
    /// The store's tree does not extend the lock's checkpoint.
    #[error(
        "the store's tree does not extend the checkpoint the log last signed (size \
         {locked}, checkpoint lock {path}): {reason}. The store holds another history; \
         refusing to sign a fork"
    )]
    Forked {
        /// The lock's size.
        locked: u64,
        /// The lock file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },
}

impl Locked {
    /// Checks that a store at `size` with root `root` is the lock's
    /// checkpoint or a consistent extension of it, with `proof` the
    /// store's consistency proof from the lock's size to `size` (RFC 9162
    /// section 2.1.4; ignored when the sizes are equal).
    pub fn check_store(
        &self,
        path: &Path,
        size: u64,
        root: &Hash,
        proof: impl FnOnce(u64, u64) -> Result<Vec<Hash>, String>,
    ) -> Result<Standing, GuardError> {
        let forked = |reason: String| GuardError::Forked {
            locked: self.size,
            path: path.to_owned(),
            reason,
        };
        if size < self.size {
            return Err(GuardError::RolledBack {
                store: size,
                locked: self.size,
                path: path.to_owned(),
            });
        }
        if size == self.size {
            return if *root == self.root {
                Ok(Standing::Same)
            } else {
                Err(forked(format!(
                    "at size {size} the store's root is {root}, the lock's {}",
                    self.root
                )))
            };
        }
        if self.size == 0 {
            return Ok(Standing::Ahead);
        }
        let hashes = proof(self.size, size).map_err(&forked)?;
        tlog_core::merkle::verify::verify_consistency(self.size, size, &hashes, &self.root, root)
            .map_err(|e| {
            forked(format!(
                "the store's consistency proof {} -> {size} does not verify: {e}",
                self.size
            ))
        })?;
        Ok(Standing::Ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_core::checkpoint::Checkpoint;
    use tlog_core::note::Signer;

    fn signer() -> Signer {
        Signer::from_seed("lock.test/log", &[3; 32]).expect("signer")
    }

    #[test]
    fn written_notes_read_back_verified_and_damage_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let lock = CheckpointLock::at(dir.path().join("checkpoint.lock"));
        let key = Verifiers::new([signer().verifier()]);
        assert_eq!(lock.read(&key, "lock.test/log").expect("read"), None);
        let note = Checkpoint::new("lock.test/log", 7, Hash([1; 32]))
            .sign(&signer())
            .expect("sign");
        lock.write(&note).expect("write");
        let got = lock
            .read(&key, "lock.test/log")
            .expect("read")
            .expect("some");
        assert_eq!((got.size, got.root), (7, Hash([1; 32])));
        let eight = Checkpoint::new("lock.test/log", 8, Hash([2; 32]))
            .sign(&signer())
            .expect("sign");
        lock.write(&eight).expect("write");
        // A fresh reader (a restart) sees the latest.
        let again = CheckpointLock::at(lock.path());
        assert_eq!(
            again
                .read(&key, "lock.test/log")
                .expect("read")
                .expect("some")
                .size,
            8
        );
        // A write torn in its slot leaves the previous checkpoint.
        let mut bytes = std::fs::read(lock.path()).expect("read");
        let latest_slot = 0; // seq 2 is in slot 0 (slot = seq % 2)
        bytes[latest_slot + HEADER + 3] ^= 1;
        std::fs::write(lock.path(), &bytes).expect("tear");
        let torn = CheckpointLock::at(lock.path());
        assert_eq!(
            torn.read(&key, "lock.test/log")
                .expect("read")
                .expect("some")
                .size,
            7
        );
        // Another log's origin is refused; so is a file with no intact slot.
        assert!(matches!(
            torn.read(&key, "other/log"),
            Err(LockError::Invalid { .. })
        ));
        std::fs::write(lock.path(), vec![0u8; 2 * SLOT]).expect("wipe");
        assert!(matches!(
            CheckpointLock::at(lock.path()).read(&key, "lock.test/log"),
            Err(LockError::Invalid { .. })
        ));
    }

    proptest::proptest! {
        /// A slot parser for any bytes answers (never panics), and accepts
        /// only what a write produced: any one flipped byte of a written
        /// slot's header or note is refused.
        #[test]
        fn slots_parse_only_what_was_written(
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            note in "[ -~\n]{0,300}",
            seq in 0u64..1_000_000,
            flip in 0usize..400,
        ) {
            let _ = parse_slot(&junk);
            let slot = slot_bytes(seq, &note);
            proptest::prop_assert_eq!(parse_slot(&slot), Some((seq, note.clone())));
            let at = flip % slot.len();
            let mut bad = slot.clone();
            bad[at] ^= 0x20;
            proptest::prop_assert_ne!(parse_slot(&bad), Some((seq, note)));
        }
    }

    #[test]
    fn the_store_must_extend_the_lock() {
        let locked = Locked {
            size: 10,
            root: Hash([1; 32]),
            note: String::new(),
        };
        let p = Path::new("l");
        let no_proof = |_: u64, _: u64| -> Result<Vec<Hash>, String> { Ok(vec![]) };
        assert!(matches!(
            locked.check_store(p, 9, &Hash([1; 32]), no_proof),
            Err(GuardError::RolledBack {
                store: 9,
                locked: 10,
                ..
            })
        ));
        assert!(matches!(
            locked.check_store(p, 10, &Hash([1; 32]), no_proof),
            Ok(Standing::Same)
        ));
        assert!(matches!(
            locked.check_store(p, 10, &Hash([2; 32]), no_proof),
            Err(GuardError::Forked { .. })
        ));
        // A proof that does not verify is a fork.
        assert!(matches!(
            locked.check_store(p, 12, &Hash([2; 32]), no_proof),
            Err(GuardError::Forked { .. })
        ));
    }
}
