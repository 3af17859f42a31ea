//! The trusted-state store: the newest checkpoint this client has verified,
//! kept in a small file so that every later run proves the log only grew
//! since (as Go's `sumdb` client keeps its latest tree).
//!
//! The file holds the signed checkpoint note exactly as the log served it.
//! It is replaced atomically: written to a temporary file in the same
//! folder, synced, renamed over the old one, and the folder synced, so a
//! crash leaves either the old or the new checkpoint, never a mix.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("trusted-state file {path}: {what}: {source}")]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// What was being done.
    pub what: &'static str,
    /// The I/O error.
    pub source: std::io::Error,
}

/// A trusted-state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// A store at `path` (created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateFile { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> StateError + '_ {
        move |source| StateError {
            path: self.path.clone(),
            what,
            source,
        }
    }

    /// The stored signed checkpoint, or `None` when there is none yet.
    pub fn load(&self) -> Result<Option<String>, StateError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("read")(e)),
        }
    }

    /// Replaces the stored checkpoint atomically.
    pub fn save(&self, note: &str) -> Result<(), StateError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(self.err("create folder"))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(self.err("create temporary file"))?;
        f.write_all(note.as_bytes())
            .map_err(self.err("write temporary file"))?;
        f.sync_all().map_err(self.err("sync temporary file"))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(self.err("replace"))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            // Best effort: some filesystems refuse to sync a folder.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_replaces_and_load_reads() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = StateFile::new(dir.path().join("sub/state"));
        assert_eq!(s.load().expect("load"), None);
        s.save("one\n").expect("save");
        s.save("two\n").expect("save");
        assert_eq!(s.load().expect("load").as_deref(), Some("two\n"));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}
