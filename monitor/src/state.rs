//! The monitor's persisted state per log: the newest checkpoint it audited
//! in full, the tree's right edge at that size (so it can go on from there
//! without downloading anything twice), and the rules' memory. One JSON
//! file, replaced atomically, so a restart resumes exactly where the last
//! verified checkpoint left it: never re-trusting from scratch, never
//! skipping a range.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tlog_core::Hash;
use tlog_core::merkle::tree::Tree;

use crate::rules::RuleState;

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a state file of this monitor.
    #[error("{path}: {reason}; move it away to start this log's audit from scratch")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A log's audit state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LogState {
    /// The newest fully audited checkpoint, as signed (empty: none yet).
    pub checkpoint: String,
    /// Its size.
    pub size: u64,
    /// The tree's right edge at `size`, hex.
    pub edge: Vec<String>,
    /// Unix seconds when the size last grew (or the audit started).
    pub last_growth: u64,
    /// The rules' memory.
    pub rules: RuleState,
}

impl LogState {
    /// The tree at `size`.
    pub fn tree(&self) -> Option<Tree> {
        let edge = self
            .edge
            .iter()
            .map(|h| Hash::from_hex(h).ok())
            .collect::<Option<Vec<_>>>()?;
        Tree::from_edge(self.size, edge)
    }

    /// Records the tree.
    pub fn set_tree(&mut self, t: &Tree) {
        self.size = t.size();
        self.edge = t.edge().iter().map(Hash::to_hex).collect();
    }
}

/// Where a log's files are.
#[derive(Debug, Clone)]
pub struct LogDir {
    dir: PathBuf,
}

impl LogDir {
    /// `state_dir/<log name>`.
    pub fn new(state_dir: &Path, log: &str) -> Self {
        LogDir {
            dir: state_dir.join(log),
        }
    }

    /// The state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The evidence folder.
    pub fn evidence_dir(&self) -> PathBuf {
        self.dir.join("evidence")
    }

    /// Loads the state, or a fresh one.
    pub fn load(&self) -> Result<LogState, StateError> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let s: LogState =
                    serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if s.tree().is_none() {
                    return Err(StateError::Corrupt {
                        path,
                        reason: "the tree edge does not match the size".into(),
                    });
                }
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LogState::default()),
            Err(source) => Err(StateError::Io {
                path,
                what: "read",
                source,
            }),
        }
    }

    /// Saves the state atomically (temporary file, fsync, rename, fsync of
    /// the folder).
    pub fn save(&self, s: &LogState) -> Result<(), StateError> {
        let path = self.state_path();
        write_atomic_with(&path, |w| {
            serde_json::to_writer(w, s).map_err(std::io::Error::other)
        })
    }

    /// Writes an evidence file; returns its path.
    pub fn write_evidence(
        &self,
        id: &str,
        evidence: &serde_json::Value,
    ) -> Result<PathBuf, StateError> {
        let path = self.evidence_dir().join(format!("{id}.json"));
        let bytes = serde_json::to_vec_pretty(evidence).unwrap_or_default();
        write_atomic(&path, &bytes)?;
        Ok(path)
    }
}

/// Replaces `path` with `bytes` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Replaces `path` atomically with what `fill` writes (buffered, so a
/// large state is never held twice in memory).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> Result<(), StateError> {
    let io = |what: &'static str| {
        move |source| StateError::Io {
            path: path.to_owned(),
            what,
            source,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create folder"))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io("create temporary file"))?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
        fill(&mut w).map_err(io("write"))?;
        w.flush().map_err(io("write"))?;
    }
    f.sync_all().map_err(io("sync"))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("rename"))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = LogDir::new(dir.path(), "l");
        assert_eq!(d.load().expect("fresh"), LogState::default());
        let mut t = Tree::new();
        for i in 0..7u8 {
            t.push(tlog_core::leaf_hash(&[i]));
        }
        let mut s = LogState::default();
        s.set_tree(&t);
        s.checkpoint = "cp".into();
        d.save(&s).expect("save");
        let back = d.load().expect("load");
        assert_eq!(back, s);
        assert_eq!(back.tree().expect("tree").root(), t.root());
        std::fs::write(d.state_path(), b"{\"size\": 3}").expect("write");
        assert!(matches!(d.load(), Err(StateError::Corrupt { .. })));
    }
}
