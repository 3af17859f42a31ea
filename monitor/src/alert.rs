//! Alerts: what the monitor found, with what anyone needs to check it.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Needs attention today.
    Medium,
    /// Needs attention now.
    High,
    /// The log itself lied: its promises are broken.
    Critical,
}

/// An entry an alert is about: fetch it and verify its proof by these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRef {
    /// Index in the log.
    pub index: u64,
    /// `SHA-256(0x00 || leaf)`, hex.
    pub leaf_hash: String,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id of the finding: the same finding always has the same id,
    /// so it is sent once, and receivers can deduplicate.
    pub id: String,
    /// The rule that fired (`fork`, `split-view`, `rollback`,
    /// `root-mismatch`, `bad-signature`, `stale`, `unreachable`, `credentials-expired`,
    /// `digest-conflict`, `unregistered`, `unapproved`,
    /// `version-regression`, `version-pattern`, `submitter-not-allowed`,
    /// `missing-attestation`, `deploy-retired`, `access-rate`).
    pub rule: String,
    /// How bad.
    pub severity: Severity,
    /// The log (its configured name).
    pub log: String,
    /// What happened, in a sentence.
    pub message: String,
    /// The entries it is about.
    pub entries: Vec<EntryRef>,
    /// The evidence file, for findings about the log itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// When the monitor found it (RFC 3339).
    pub time: String,
}

/// A finding before it becomes an alert (the log and time are added by
/// the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The rule.
    pub rule: &'static str,
    /// How bad.
    pub severity: Severity,
    /// What happened.
    pub message: String,
    /// The entries.
    pub entries: Vec<EntryRef>,
    /// What makes this finding unique within its rule (e.g. the leaf
    /// hashes, or both checkpoints' roots).
    pub key: String,
    /// Evidence to write to a file (JSON), for log-level findings.
    pub evidence: Option<serde_json::Value>,
}

impl Finding {
    /// The stable alert id: SHA-256 over log, rule and key, 32 hex digits.
    pub fn id(&self, log: &str) -> String {
        let mut h = Sha256::new();
        h.update(log.as_bytes());
        h.update(b"\n");
        h.update(self.rule.as_bytes());
        h.update(b"\n");
        h.update(self.key.as_bytes());
        hex::encode(&h.finalize()[..16])
    }
}
