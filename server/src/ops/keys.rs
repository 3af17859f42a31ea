//! Creating a log (`tlog-server init`) and loading its signing key.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use tlog_core::checkpoint::Checkpoint;
use tlog_core::empty_root;
use tlog_core::note::{Signer, is_valid_name};

use crate::storage::{LogStore, RocksStore};

/// Why a key could not be loaded or a log created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file is missing or unreadable.
    #[error("cannot read signing key {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// There is no key file: not a log's data directory (yet).
    #[error(
        "signing key {path} does not exist: this is not a log's data directory yet. Create \
         a log with `tlog-server init --data-dir <dir> --origin <name>`, or set `key_file` \
         to where its key is"
    )]
    Missing {
        /// The file looked for.
        path: PathBuf,
    },
    /// The key file may be read by other users.
    #[error(
        "signing key {path} is readable by others, writable by its group, or readable by a \
         group this server is not in (mode {mode:o}); run `chmod 600 {path}` (or `chmod 640` \
         with the file's group one of the server's own groups)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The file is not a signer key.
    #[error("signing key {path} is not a C2SP signer key: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `init` on a directory that already holds a log.
    #[error("{0} already holds a log; refusing to overwrite it")]
    Exists(PathBuf),
    /// The origin cannot be a key name.
    #[error("origin {0:?} must be non-empty with no spaces or '+', e.g. example.com/models")]
    Origin(String),
    /// Creating files or the store failed.
    #[error("{what}: {message}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        message: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KeyError {
    let what = what.into();
    move |e| KeyError::Io {
        what,
        message: e.to_string(),
    }
}

/// The default checkpoint lock of a data directory ([`crate::sequencer::lock`]).
pub fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoint.lock")
}

/// The RocksDB folder inside a data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("db")
}

/// Loads the signing key, refusing a file that others can read.
///
/// The key must be readable by no one else: mode 0600 or 0400, or 0640 or
/// 0440 when the file's group is one of this process's own groups (the
/// way Kubernetes mounts a Secret with `defaultMode: 0440` and the pod's
/// `fsGroup`: only the server's group may read it). Others must have no
/// access and the group no write access.
pub fn load_signer(path: &Path) -> Result<Signer, KeyError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => KeyError::Missing {
            path: path.to_owned(),
        },
        _ => KeyError::Read {
            path: path.to_owned(),
            source,
        },
    })?;
    let mode = meta.permissions().mode() & 0o777;
    let group_read_only_by_us = mode & 0o070 == 0o040 && own_groups().contains(&meta.gid());
    if mode & 0o007 != 0 || (mode & 0o070 != 0 && !group_read_only_by_us) {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    Signer::from_skey(text.trim()).map_err(|e| KeyError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// This process's effective group and supplementary groups (Linux:
/// `/proc/self/status`); empty where that cannot be read, so that a
/// group-readable key is then refused.
fn own_groups() -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Gid:") {
            // real, effective, saved, filesystem: the effective one.
            out.extend(
                rest.split_whitespace()
                    .nth(1)
                    .and_then(|g| g.parse::<u32>().ok()),
            );
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            out.extend(
                rest.split_whitespace()
                    .filter_map(|g| g.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Creates a new log: the data directory, a fresh Ed25519 key (mode 0600)
/// named after the origin, and the store with the signed size-0
/// checkpoint. Returns the verifier key to publish.
pub fn init(data_dir: &Path, origin: &str, key_file: Option<&Path>) -> Result<String, KeyError> {
    if !is_valid_name(origin) {
        return Err(KeyError::Origin(origin.to_owned()));
    }
    std::fs::create_dir_all(data_dir).map_err(io(format!("create {}", data_dir.display())))?;
    let key_path = key_file
        .map(Path::to_owned)
        .unwrap_or_else(|| data_dir.join("log.key"));
    let db = db_path(data_dir);
    if db.exists() || key_path.exists() {
        return Err(KeyError::Exists(data_dir.to_owned()));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Io {
        what: "generate key".into(),
        message: e.to_string(),
    })?;
    let signer = Signer::from_seed(origin, &seed).map_err(|_| KeyError::Origin(origin.into()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(io(format!("create {}", key_path.display())))?;
    writeln!(f, "{}", signer.to_skey()).map_err(io("write key"))?;
    f.sync_all().map_err(io("sync key"))?;
    create_store(data_dir, &signer)
}

/// Writes a new log's store (identity and the signed size-0 checkpoint)
/// and `verifier.key` into `data_dir`; returns the verifier key.
fn create_store(data_dir: &Path, signer: &Signer) -> Result<String, KeyError> {
    let origin = signer.name();
    let db = db_path(data_dir);
    let vkey = signer.verifier().to_vkey();
    let store = RocksStore::open(&db).map_err(|e| KeyError::Io {
        what: format!("create store {}", db.display()),
        message: e.to_string(),
    })?;
    let note = Checkpoint::new(origin, 0, empty_root())
        .sign(signer)
        .map_err(|e| KeyError::Io {
            what: "sign first checkpoint".into(),
            message: e.to_string(),
        })?;
    store.init(origin, &vkey, &note).map_err(|e| KeyError::Io {
        what: "write first checkpoint".into(),
        message: e.to_string(),
    })?;
    std::fs::write(data_dir.join("verifier.key"), format!("{vkey}\n"))
        .map_err(io("write verifier.key"))?;
    Ok(vkey)
}

/// What [`adopt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopted {
    /// The data directory held no log: a new one was created for the key.
    Created(String),
    /// The data directory already holds this key's log: nothing changed.
    AlreadyThere(String),
}

/// Creates a log for an existing signing key (`tlog-server init --adopt`:
/// a key made offline and handed over as a secret, for example a
/// Kubernetes Secret, with an empty volume for the data). The origin is
/// the key's name. Idempotent, so that it can run before every start: a
/// data directory that already holds this key's log is left alone, and
/// one that holds another log is refused ([`KeyError::Exists`]).
///
/// A volume that was lost and comes back empty gets a new log at size 0
/// under the same key, which every client and monitor that saw the old
/// log reports as a fork: restore lost data from a backup instead
/// (`tlog-server restore`).
pub fn adopt(data_dir: &Path, key_file: &Path) -> Result<Adopted, KeyError> {
    let signer = load_signer(key_file)?;
    let vkey = signer.verifier().to_vkey();
    let db = db_path(data_dir);
    if db.exists() {
        let store = RocksStore::open(&db).map_err(|e| KeyError::Io {
            what: format!("open store {}", db.display()),
            message: e.to_string(),
        })?;
        let meta = store.meta().map_err(|e| KeyError::Io {
            what: format!("read store {}", db.display()),
            message: e.to_string(),
        })?;
        return match meta {
            Some(m) if m.vkey == vkey => Ok(Adopted::AlreadyThere(vkey)),
            Some(_) => Err(KeyError::Exists(data_dir.to_owned())),
            None => Err(KeyError::Io {
                what: format!("adopt {}", data_dir.display()),
                message: "its store exists but holds no log; move it aside".into(),
            }),
        };
    }
    std::fs::create_dir_all(data_dir).map_err(io(format!("create {}", data_dir.display())))?;
    create_store(data_dir, &signer).map(Adopted::Created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn key_file(dir: &Path, mode: u32) -> PathBuf {
        let p = dir.join("log.key");
        let s = Signer::from_seed("keys.test/log", &[4; 32]).expect("signer");
        std::fs::write(&p, format!("{}\n", s.to_skey())).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    #[test]
    fn a_missing_key_says_to_run_init() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = load_signer(&dir.path().join("log.key")).expect_err("no key");
        assert!(matches!(e, KeyError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("tlog-server init --data-dir"), "{e}");
    }

    #[test]
    fn only_the_servers_own_group_may_read_the_key() {
        let dir = tempfile::tempdir().expect("tmp");
        for ok in [0o600, 0o400] {
            load_signer(&key_file(dir.path(), ok)).unwrap_or_else(|e| panic!("{ok:o}: {e}"));
        }
        // The file's group is this process's (it created the file).
        let p = key_file(dir.path(), 0o440);
        assert!(own_groups().contains(&std::fs::metadata(&p).expect("meta").gid()));
        load_signer(&p).expect("0440, own group");
        load_signer(&key_file(dir.path(), 0o640)).expect("0640, own group");
        for bad in [0o644, 0o604, 0o660, 0o670, 0o666] {
            let e = load_signer(&key_file(dir.path(), bad)).expect_err("refused");
            assert!(matches!(e, KeyError::Permissions { .. }), "{bad:o}: {e}");
        }
        // A group the server is not in may not read it: where this test
        // may give the file away (as root), it checks that too.
        let p = key_file(dir.path(), 0o640);
        let foreign = (60_000..60_100)
            .find(|g| !own_groups().contains(g))
            .expect("gid");
        if std::os::unix::fs::chown(&p, None, Some(foreign)).is_ok() {
            let e = load_signer(&p).expect_err("foreign group refused");
            assert!(matches!(e, KeyError::Permissions { .. }), "{e}");
        }
    }

    #[test]
    fn adopting_a_key_creates_the_log_once_and_refuses_another_log() {
        let keys = tempfile::tempdir().expect("tmp");
        let key = key_file(keys.path(), 0o600);
        let data = tempfile::tempdir().expect("tmp");
        let dir = data.path().join("data");
        let vkey = match adopt(&dir, &key).expect("adopt") {
            Adopted::Created(v) => v,
            other => panic!("{other:?}"),
        };
        assert!(vkey.starts_with("keys.test/log+"), "{vkey}");
        let store = RocksStore::open(&db_path(&dir)).expect("open");
        let meta = store.meta().expect("meta").expect("a log");
        assert_eq!(
            (meta.origin.as_str(), meta.vkey.as_str(), meta.size),
            ("keys.test/log", vkey.as_str(), 0)
        );
        drop(store);
        // Again (the next pod start): nothing changes.
        assert_eq!(
            adopt(&dir, &key).expect("again"),
            Adopted::AlreadyThere(vkey)
        );
        // Another key's log is not adopted.
        let other = tempfile::tempdir().expect("tmp");
        let p = other.path().join("log.key");
        let s = Signer::from_seed("keys.test/log", &[5; 32]).expect("signer");
        std::fs::write(&p, format!("{}\n", s.to_skey())).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(adopt(&dir, &p), Err(KeyError::Exists(_))));
        // The key's permissions are checked as at start.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let fresh = data.path().join("fresh");
        assert!(matches!(
            adopt(&fresh, &key),
            Err(KeyError::Permissions { .. })
        ));
        assert!(!fresh.exists(), "nothing created for a refused key");
    }
}
