//! The access log: one JSON line per RPC, allowed or denied, with who
//! (principal, how authenticated, peer), what (method, action, resource),
//! when, the decision and the policies that made it, the justification
//! given, and the outcome status.
//!
//! Records are handed to a writer thread through a bounded queue (a full
//! queue makes callers wait rather than lose records) and appended to a
//! file that rotates by size, keeping a configured number of old files.
//!
//! With ledger auditing, records also become leaves of the log itself,
//! which nobody can ever remove. So what reaches the ledger is decided
//! here, and kept small:
//! - a decision about an authenticated caller (allowed or denied) is one
//!   leaf, each of its strings cut to [`LEDGER_TEXT_MAX`] bytes and its
//!   lists to [`LEDGER_LIST_MAX`] items (the file keeps them whole);
//! - a refusal before authentication (credentials that did not verify, a
//!   caller without credentials denied by the policy, a rate limit, a TLS
//!   handshake that failed, a request that did not decode) is never a
//!   leaf of its own: the ledger gets, per interval, one summary leaf per
//!   (peer address, principal, reason) with the count, the reason from a
//!   fixed vocabulary ([`Refusal`]). Strangers cannot write their text
//!   into the log, nor one leaf per request they send.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::Serialize;
use tlog_core::leaf::{AccessLeaf, Decision};

/// One access decision and its outcome: what the ledger keeps (core's
/// [`AccessLeaf`], the fixed leaf format), and what only the file access
/// log keeps beside it. Its JSON line is the leaf's fields, then these.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccessRecord {
    /// The decision as the ledger records it (bounded when it is written
    /// there, [`LEDGER_TEXT_MAX`]).
    #[serde(flatten)]
    pub leaf: AccessLeaf,
    /// Time to answer, in milliseconds.
    pub latency_ms: f64,
    /// For a refusal before authentication (or a rate limit), its reason
    /// from a fixed vocabulary; such records reach the ledger only as
    /// counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

/// What a request's policy checks asked and decided.
#[derive(Debug, Clone, Default)]
pub struct Decided {
    /// The actions asked for.
    pub actions: Vec<String>,
    /// The resources asked for, and what exactly was read.
    pub resources: Vec<String>,
    /// The policies that decided.
    pub policies: Vec<String>,
    /// Whether any check was asked.
    pub checked: bool,
    /// Why it was denied, if it was.
    pub denied: Option<String>,
}

impl Decided {
    /// A request refused before it ran: denied, with nothing asked.
    pub fn refused() -> Self {
        Decided {
            checked: true,
            denied: Some(String::new()),
            ..Decided::default()
        }
    }

    /// The decision these checks add up to.
    pub fn decision(&self) -> Decision {
        match (self.checked, &self.denied) {
            (_, Some(_)) => Decision::Deny,
            (true, None) => Decision::Allow,
            (false, None) => Decision::NotEvaluated,
        }
    }
}

/// Who made a request, as far as authentication got.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The principal.
    pub principal: &'a str,
    /// How it was authenticated (`mtls`, `bearer`, `anonymous`, ...).
    pub auth_method: &'a str,
    /// The token issuer or trust domain.
    pub issuer: &'a str,
}

impl Identity<'_> {
    /// A caller whose credentials did not get it authenticated.
    pub const UNAUTHENTICATED: Identity<'static> = Identity {
        principal: "unauthenticated",
        auth_method: "failed",
        issuer: "",
    };
}

/// How a request ended, however it ended (refused at the TLS handshake,
/// undecodable, refused before it ran, or answered): the one input of the
/// one place that makes access records, [`Ended::into_record`].
#[derive(Debug)]
pub struct Ended<'a> {
    /// The gRPC method.
    pub method: &'a str,
    /// When it arrived (written as RFC 3339 only when it is recorded).
    pub time: std::time::SystemTime,
    /// When it arrived, for the latency.
    pub start: std::time::Instant,
    /// The network peer.
    pub peer: String,
    /// Who made it.
    pub who: Identity<'a>,
    /// The justification header.
    pub justification: &'a str,
    /// What the checks decided.
    pub decided: Decided,
    /// The answer's code.
    pub code: tonic::Code,
    /// Why it was refused or failed (empty when it succeeded).
    pub reason: String,
    /// A refusal from the fixed vocabulary, summarized in the ledger.
    pub refusal: Option<Refusal>,
}

impl Ended<'_> {
    /// The access record of this end.
    pub fn into_record(self) -> AccessRecord {
        let decision = self.decided.decision();
        AccessRecord {
            leaf: AccessLeaf {
                time: rfc3339(self.time),
                principal: self.who.principal.to_owned(),
                auth_method: self.who.auth_method.to_owned(),
                issuer: self.who.issuer.to_owned(),
                peer: self.peer,
                method: self.method.to_owned(),
                actions: self.decided.actions,
                resources: self.decided.resources,
                decision: decision.as_str().into(),
                policies: self.decided.policies,
                justification: self.justification.to_owned(),
                status: format!("{:?}", self.code),
                reason: self.reason,
            },
            latency_ms: self.start.elapsed().as_secs_f64() * 1e3,
            refusal: self.refusal,
        }
    }
}

/// Why a request was refused before it could be attributed to an
/// authenticated caller: the ledger summarizes these by peer and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Credentials that did not verify.
    Credentials(crate::access::auth::AuthFailure),
    /// A caller without credentials, denied by the policy.
    NoCredentials,
    /// Over a rate limit.
    RateLimited,
    /// A TLS handshake that failed.
    TlsHandshake,
    /// A request that did not decode, or was too large or too costly to.
    Undecodable,
}

impl Refusal {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Credentials(k) => k.as_str(),
            Refusal::NoCredentials => "no-credentials",
            Refusal::RateLimited => "rate-limited",
            Refusal::TlsHandshake => "tls-handshake",
            Refusal::Undecodable => "undecodable-request",
        }
    }
}

impl Serialize for Refusal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Longest string of a ledger access record, in bytes.
pub const LEDGER_TEXT_MAX: usize = 256;
/// Most items of a list in a ledger access record.
pub const LEDGER_LIST_MAX: usize = 16;

/// `s` cut to at most `max` bytes at a character boundary, saying how
/// much was cut.
fn bounded(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub(24);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes cut]", &s[..end], s.len() - end)
}

fn bounded_list(v: Vec<String>) -> Vec<String> {
    let n = v.len();
    let mut out: Vec<String> = v
        .into_iter()
        .take(LEDGER_LIST_MAX)
        .map(|x| bounded(x, LEDGER_TEXT_MAX))
        .collect();
    if n > LEDGER_LIST_MAX {
        out.push(format!("…[{} more]", n - LEDGER_LIST_MAX));
    }
    out
}

/// What the ledger writer receives.
#[derive(Debug, Clone)]
pub enum LedgerItem {
    /// A record that becomes a leaf of its own.
    Record(Box<AccessRecord>),
    /// A refusal, to be counted into the interval's summary.
    Refusal(RefusalKey),
}

/// What a refusal summary counts by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefusalKey {
    /// The peer's IP address (without the port).
    pub peer: String,
    /// The principal, when one was authenticated (rate limits), else
    /// `unauthenticated`.
    pub principal: String,
    /// The gRPC method (or `tls-handshake`).
    pub method: String,
    /// Why.
    pub reason: &'static str,
    /// The status answered.
    pub status: String,
}

/// Where records go: the JSON-lines file, the log itself, or both.
#[derive(Debug, Clone, Default)]
pub struct AuditSink {
    file: Option<mpsc::SyncSender<AccessRecord>>,
    ledger: Option<tokio::sync::mpsc::Sender<LedgerItem>>,
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
    pub fn with_ledger(mut self, ledger: tokio::sync::mpsc::Sender<LedgerItem>) -> Self {
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
        if let Some(l) = &self.ledger {
            let item = match r.refusal {
                Some(why) => LedgerItem::Refusal(RefusalKey {
                    peer: peer_ip(&r.leaf.peer),
                    principal: bounded(r.leaf.principal.clone(), LEDGER_TEXT_MAX),
                    method: bounded(r.leaf.method.clone(), LEDGER_TEXT_MAX),
                    reason: why.as_str(),
                    status: r.leaf.status.clone(),
                }),
                None => LedgerItem::Record(Box::new(r.clone())),
            };
            if let Err(e) = l.try_send(item) {
                tracing::error!(error = %e, "ledger audit queue full or closed; record not in the log");
            }
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

/// The address part of `ip:port` (IPv6 in brackets too).
fn peer_ip(peer: &str) -> String {
    match peer.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) => bounded(peer.to_owned(), 64),
    }
}

/// The ledger leaf of a record: every string and list bounded.
/// What the ledger keeps of a record: its leaf, every string bounded
/// ([`LEDGER_TEXT_MAX`], lists [`LEDGER_LIST_MAX`]).
impl From<AccessRecord> for AccessLeaf {
    fn from(r: AccessRecord) -> Self {
        let b = |s: String| bounded(s, LEDGER_TEXT_MAX);
        let l = r.leaf;
        AccessLeaf {
            time: b(l.time),
            principal: b(l.principal),
            auth_method: b(l.auth_method),
            issuer: b(l.issuer),
            peer: b(l.peer),
            method: b(l.method),
            actions: bounded_list(l.actions),
            resources: bounded_list(l.resources),
            decision: b(l.decision),
            policies: bounded_list(l.policies),
            justification: b(l.justification),
            status: b(l.status),
            reason: b(l.reason),
        }
    }
}

/// Most distinct (peer, principal, method, reason) counts kept in one
/// interval; further refusals are counted under the peer `other`.
const SUMMARY_KEYS_MAX: usize = 1024;

/// Refusals counted in the current interval.
#[derive(Debug, Default)]
struct Summary {
    counts: std::collections::HashMap<RefusalKey, u64>,
    since: Option<String>,
}

impl Summary {
    fn add(&mut self, mut k: RefusalKey) {
        if self.since.is_none() {
            self.since = Some(now_rfc3339());
        }
        if self.counts.len() >= SUMMARY_KEYS_MAX && !self.counts.contains_key(&k) {
            k.peer = "other".into();
            k.principal = "other".into();
        }
        *self.counts.entry(k).or_insert(0) += 1;
    }

    /// One leaf per counted key, oldest interval first; the counts reset.
    fn leaves(&mut self) -> Vec<Vec<u8>> {
        let since = self.since.take().unwrap_or_default();
        let until = now_rfc3339();
        let mut rows: Vec<(RefusalKey, u64)> = self.counts.drain().collect();
        rows.sort_by(|a, b| {
            (&a.0.peer, &a.0.method, a.0.reason).cmp(&(&b.0.peer, &b.0.method, b.0.reason))
        });
        rows.into_iter()
            .map(|(k, n)| {
                tlog_core::leaf::AccessLeaf {
                    time: until.clone(),
                    principal: k.principal,
                    auth_method: "summary".into(),
                    issuer: String::new(),
                    peer: k.peer,
                    method: k.method,
                    actions: vec![],
                    resources: vec![format!("{n} refused requests from {since} to {until}")],
                    decision: Decision::Deny.as_str().into(),
                    policies: vec![],
                    justification: String::new(),
                    status: k.status,
                    reason: k.reason.into(),
                }
                .encode()
            })
            .collect()
    }
}

/// Appends access records to the log in batches (ledger auditing): up to
/// 256 records or `flush` after the first, whichever comes first; and every
/// `summarize`, the summary of the refusals counted since (one leaf per
/// peer, principal, method and reason, with the count).
/// Stops when `stop` turns true, after appending what it holds.
pub async fn ledger_writer(
    mut rx: tokio::sync::mpsc::Receiver<LedgerItem>,
    seq: crate::sequencer::Sequencer,
    flush: std::time::Duration,
    summarize: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut summary = Summary::default();
    let mut tick = tokio::time::interval(summarize);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let append = |batch: Vec<Vec<u8>>| {
        let seq = seq.clone();
        async move {
            let n = batch.len();
            if n > 0
                && let Err(e) = seq.append_access(batch).await
            {
                tracing::error!(error = %e, records = n, "cannot append access records to the log");
            }
        }
    };
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = tick.tick() => {
                append(summary.leaves()).await;
                continue;
            }
            _ = stop.changed() => None,
        };
        let Some(first) = first else {
            append(summary.leaves()).await;
            return;
        };
        let mut batch = Vec::new();
        let mut take = |item: LedgerItem, batch: &mut Vec<Vec<u8>>| match item {
            LedgerItem::Record(r) => batch.push(AccessLeaf::from(*r).encode()),
            LedgerItem::Refusal(k) => summary.add(k),
        };
        take(first, &mut batch);
        let deadline = tokio::time::Instant::now() + flush;
        while batch.len() < 256 && !batch.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => take(item, &mut batch),
                _ => break,
            }
        }
        append(batch).await;
    }
}

/// The current time as RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `t` as RFC 3339 with microseconds, as access records carry it.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> AccessRecord {
        AccessRecord {
            leaf: AccessLeaf {
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
            },
            latency_ms: 1.0,
            refusal: None,
        }
    }

    #[test]
    fn ledger_leaves_are_bounded_and_refusals_only_counted() {
        let mut r = rec(1);
        r.leaf.justification = "x".repeat(8192);
        r.leaf.resources = (0..100).map(|i| format!("r{i}")).collect();
        let leaf = AccessLeaf::from(r);
        assert!(
            leaf.justification.len() <= LEDGER_TEXT_MAX,
            "{}",
            leaf.justification.len()
        );
        assert!(leaf.justification.contains("bytes cut"));
        assert_eq!(leaf.resources.len(), LEDGER_LIST_MAX + 1);
        assert!(leaf.encode().len() < 2048);

        let mut s = Summary::default();
        for i in 0..300 {
            s.add(RefusalKey {
                peer: format!("10.0.0.{}", i % 3),
                principal: "unauthenticated".into(),
                method: "GetCheckpoint".into(),
                reason: Refusal::NoCredentials.as_str(),
                status: "Unauthenticated".into(),
            });
        }
        let leaves = s.leaves();
        assert_eq!(
            leaves.len(),
            3,
            "one summary per peer, not one leaf per refusal"
        );
        for l in &leaves {
            let a = AccessLeaf::decode(l).expect("decodes");
            assert!(
                a.resources[0].starts_with("100 refused requests"),
                "{:?}",
                a.resources
            );
        }
        assert!(s.leaves().is_empty(), "counts reset");
        // Past the key limit, new peers are counted under one key.
        for i in 0..(SUMMARY_KEYS_MAX + 50) {
            s.add(RefusalKey {
                peer: format!("p{i}"),
                principal: "unauthenticated".into(),
                method: "m".into(),
                reason: "r",
                status: "s".into(),
            });
        }
        assert_eq!(s.leaves().len(), SUMMARY_KEYS_MAX + 1);
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
