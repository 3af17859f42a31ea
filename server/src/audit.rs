//! The access log: one JSON line per RPC, allowed or denied, with who
//! (principal, how authenticated, peer), what (method, action, resource),
//! when, the decision and the policies that made it, the justification
//! given, and the outcome status.
//!
//! Records are handed to a writer thread through a bounded queue (a full
//! queue makes callers wait rather than lose records) and appended to a
//! file that rotates by size, keeping a configured number of old files.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::Serialize;

/// One access decision and its outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccessRecord {
    /// When the request arrived, RFC 3339 UTC.
    pub time: String,
    /// The authenticated principal, or `anonymous`, or `unauthenticated`.
    pub principal: String,
    /// `mtls`, `bearer`, `anonymous`, `none`, or `failed`.
    pub auth_method: String,
    /// The token issuer or certificate trust domain, if any.
    pub issuer: String,
    /// The network peer.
    pub peer: String,
    /// The gRPC method.
    pub method: String,
    /// The policy actions asked for.
    pub actions: Vec<String>,
    /// The resources asked for.
    pub resources: Vec<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// The policies that decided.
    pub policies: Vec<String>,
    /// Why, if the caller said.
    pub justification: String,
    /// The gRPC status code of the answer.
    pub status: String,
    /// Why a request was refused (authentication or policy), if it was.
    pub reason: String,
    /// Time to answer, in milliseconds.
    pub latency_ms: f64,
}

/// Where records go: the JSON-lines file, the log itself, or both.
#[derive(Debug, Clone, Default)]
pub struct AuditSink {
    file: Option<mpsc::SyncSender<AccessRecord>>,
    ledger: Option<tokio::sync::mpsc::Sender<AccessRecord>>,
}

/// Rotation settings.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Rotate when the file reaches this size.
    pub max_bytes: u64,
    /// How many rotated files to keep (`access.log.1` ...).
    pub keep: usize,
}

impl AuditSink {
    /// Also hands every record to `ledger` (to be appended to the log).
    /// A full ledger queue drops the record from the ledger (it is still
    /// in the file) and says so in the server log.
    pub fn with_ledger(mut self, ledger: tokio::sync::mpsc::Sender<AccessRecord>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// True if records go anywhere.
    pub fn is_active(&self) -> bool {
        self.file.is_some() || self.ledger.is_some()
    }

    /// Starts the writer thread appending to `path`.
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let (tx, rx) = mpsc::sync_channel::<AccessRecord>(16_384);
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("tlog-audit".into())
            .spawn(move || writer(rx, path, file, size, rotation))?;
        Ok(AuditSink {
            file: Some(tx),
            ledger: None,
        })
    }

    /// Records one access. The file writer is waited for if it is behind
    /// (never dropped); the ledger queue is not.
    pub fn record(&self, r: AccessRecord) {
        if let Some(l) = &self.ledger
            && let Err(e) = l.try_send(r.clone())
        {
            tracing::error!(error = %e, "ledger audit queue full or closed; record not in the log");
        }
        if let Some(f) = &self.file
            && f.send(r).is_err()
        {
            tracing::error!("access log writer stopped; record lost");
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    let name = |i: usize| PathBuf::from(format!("{}.{i}", path.display()));
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(name(keep));
    for i in (1..keep).rev() {
        let _ = std::fs::rename(name(i), name(i + 1));
    }
    std::fs::rename(path, name(1))
}

fn writer(
    rx: mpsc::Receiver<AccessRecord>,
    path: PathBuf,
    file: File,
    mut size: u64,
    rot: Rotation,
) {
    let mut out = BufWriter::new(file);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(r) = next {
            match serde_json::to_string(&r) {
                Ok(line) => {
                    if out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.write_all(b"\n"))
                        .is_err()
                    {
                        tracing::error!(path = %path.display(), "cannot write the access log");
                    }
                    size += line.len() as u64 + 1;
                }
                Err(e) => tracing::error!(error = %e, "cannot encode an access record"),
            }
            if size >= rot.max_bytes {
                let _ = out.flush();
                match rotate(&path, rot.keep).and_then(|()| open_append(&path)) {
                    Ok(f) => {
                        out = BufWriter::new(f);
                        size = 0;
                    }
                    Err(e) => tracing::error!(error = %e, "cannot rotate the access log"),
                }
            }
            next = rx.try_recv().ok();
        }
        // Flushed whenever the queue is drained: records reach the file
        // within one batch of requests.
        if out.flush().is_err() {
            tracing::error!(path = %path.display(), "cannot flush the access log");
        }
    }
    let _ = out.flush();
}

impl From<AccessRecord> for tlog_core::leaf::AccessLeaf {
    fn from(r: AccessRecord) -> Self {
        tlog_core::leaf::AccessLeaf {
            time: r.time,
            principal: r.principal,
            auth_method: r.auth_method,
            issuer: r.issuer,
            peer: r.peer,
            method: r.method,
            actions: r.actions,
            resources: r.resources,
            decision: r.decision,
            policies: r.policies,
            justification: r.justification,
            status: r.status,
            reason: r.reason,
        }
    }
}

/// Appends access records to the log in batches (ledger auditing): up to
/// 256 records or `flush` after the first, whichever comes first. Stops
/// when `stop` turns true, after appending what it holds.
pub async fn ledger_writer(
    mut rx: tokio::sync::mpsc::Receiver<AccessRecord>,
    seq: crate::sequencer::Sequencer,
    flush: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = stop.changed() => None,
        };
        let Some(first) = first else { return };
        let mut batch = vec![tlog_core::leaf::AccessLeaf::from(first).encode()];
        let deadline = tokio::time::Instant::now() + flush;
        while batch.len() < 256 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(tlog_core::leaf::AccessLeaf::from(r).encode()),
                _ => break,
            }
        }
        let n = batch.len();
        if let Err(e) = seq.append_access(batch).await {
            tracing::error!(error = %e, records = n, "cannot append access records to the log");
        }
    }
}

/// The current time as RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> AccessRecord {
        AccessRecord {
            time: now_rfc3339(),
            principal: format!("p{i}"),
            auth_method: "bearer".into(),
            issuer: String::new(),
            peer: "127.0.0.1:1".into(),
            method: "Append".into(),
            actions: vec!["submit:register".into()],
            resources: vec!["artifact \"a\"".into()],
            decision: "allow".into(),
            policies: vec!["p".into()],
            justification: String::new(),
            status: "OK".into(),
            reason: String::new(),
            latency_ms: 1.0,
        }
    }

    #[test]
    fn writes_json_lines_and_rotates() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("access.log");
        let sink = AuditSink::open(
            &path,
            Rotation {
                max_bytes: 2_000,
                keep: 2,
            },
        )
        .expect("open");
        for i in 0..40 {
            sink.record(rec(i));
        }
        drop(sink);
        // The writer drains and exits once the sender is gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let total: usize = ["access.log", "access.log.1", "access.log.2"]
                .iter()
                .filter_map(|n| std::fs::read_to_string(dir.path().join(n)).ok())
                .map(|t| t.lines().count())
                .sum();
            let rotated = dir.path().join("access.log.2").exists();
            if rotated && !dir.path().join("access.log.3").exists() && total > 0 {
                // Every line is a whole JSON record.
                for n in ["access.log", "access.log.1"] {
                    let t = std::fs::read_to_string(dir.path().join(n)).unwrap_or_default();
                    for line in t.lines() {
                        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
                        assert_eq!(v["method"], "Append");
                    }
                }
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rotation did not happen"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
