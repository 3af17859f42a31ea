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
    /// The key file may be read by other users.
    #[error(
        "signing key {path} is readable by group or others (mode {mode:o}); \
         run `chmod 600 {path}`"
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
pub fn load_signer(path: &Path) -> Result<Signer, KeyError> {
    let meta = std::fs::metadata(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
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
    let vkey = signer.verifier().to_vkey();
    let store = RocksStore::open(&db).map_err(|e| KeyError::Io {
        what: format!("create store {}", db.display()),
        message: e.to_string(),
    })?;
    let note = Checkpoint::new(origin, 0, empty_root())
        .sign(&signer)
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
