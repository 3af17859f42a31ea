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

/// Every rule the monitor has: the name each alert carries (`rule`), in
/// README.md's table (`the_readme_lists_every_rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A checkpoint of the trusted size with another root, or one not
    /// consistent with the trusted one.
    Fork,
    /// A vantage point or gossiped checkpoint that cannot be consistent
    /// with the audited view.
    SplitView,
    /// A latest checkpoint smaller than the trusted one.
    Rollback,
    /// The served entries do not produce the signed root.
    RootMismatch,
    /// A checkpoint that does not verify with the log's key.
    BadSignature,
    /// No growth for `max_checkpoint_age`.
    Stale,
    /// No endpoint answered for `unreachable_after` polls.
    Unreachable,
    /// The log refused the monitor's credentials.
    CredentialsExpired,
    /// A served leaf that does not decode.
    UndecodableEntry,
    /// One name and version seen with two digests.
    DigestConflict,
    /// A deploy or promote of a version never registered.
    Unregistered,
    /// A deploy or promote without a required approval.
    Unapproved,
    /// A lower version deployed after a higher one.
    VersionRegression,
    /// A version that does not match its namespace's pattern.
    VersionPattern,
    /// An action by a principal not allowed for it.
    SubmitterNotAllowed,
    /// An action without a required signer's attestation.
    MissingAttestation,
    /// A deploy or promote of a retired version.
    DeployRetired,
    /// A principal's reads and downloads far above its own mean.
    AccessRate,
}

impl Rule {
    /// Every rule, in README.md's order.
    pub const ALL: [Rule; 18] = [
        Rule::Fork,
        Rule::SplitView,
        Rule::Rollback,
        Rule::RootMismatch,
        Rule::BadSignature,
        Rule::Stale,
        Rule::Unreachable,
        Rule::CredentialsExpired,
        Rule::UndecodableEntry,
        Rule::DigestConflict,
        Rule::Unregistered,
        Rule::Unapproved,
        Rule::VersionRegression,
        Rule::VersionPattern,
        Rule::SubmitterNotAllowed,
        Rule::MissingAttestation,
        Rule::DeployRetired,
        Rule::AccessRate,
    ];

    /// The name alerts, metrics and hooks carry.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Fork => "fork",
            Rule::SplitView => "split-view",
            Rule::Rollback => "rollback",
            Rule::RootMismatch => "root-mismatch",
            Rule::BadSignature => "bad-signature",
            Rule::Stale => "stale",
            Rule::Unreachable => "unreachable",
            Rule::CredentialsExpired => "credentials-expired",
            Rule::UndecodableEntry => "undecodable-entry",
            Rule::DigestConflict => "digest-conflict",
            Rule::Unregistered => "unregistered",
            Rule::Unapproved => "unapproved",
            Rule::VersionRegression => "version-regression",
            Rule::VersionPattern => "version-pattern",
            Rule::SubmitterNotAllowed => "submitter-not-allowed",
            Rule::MissingAttestation => "missing-attestation",
            Rule::DeployRetired => "deploy-retired",
            Rule::AccessRate => "access-rate",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A finding before it becomes an alert (the log and time are added by
/// the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The rule.
    pub rule: Rule,
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
    /// A finding of `rule` about `entries`, unique within its rule by
    /// `key`, without an evidence file.
    pub fn new(
        rule: Rule,
        severity: Severity,
        message: String,
        entries: Vec<EntryRef>,
        key: String,
    ) -> Self {
        Finding {
            rule,
            severity,
            message,
            entries,
            key,
            evidence: None,
        }
    }

    /// The same finding with an evidence file's contents.
    pub fn with_evidence(mut self, evidence: serde_json::Value) -> Self {
        self.evidence = Some(evidence);
        self
    }

    /// The stable alert id: SHA-256 over log, rule and key, 32 hex digits.
    pub fn id(&self, log: &str) -> String {
        let mut h = Sha256::new();
        h.update(log.as_bytes());
        h.update(b"\n");
        h.update(self.rule.name().as_bytes());
        h.update(b"\n");
        h.update(self.key.as_bytes());
        hex::encode(&h.finalize()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule table in README.md names every rule, each once, and no
    /// other: a rule added here and not documented fails this test.
    #[test]
    fn the_readme_lists_every_rule() {
        let readme = include_str!("../../README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| rule | fires when | severity |"))
            .skip(2)
            .take_while(|l| l.starts_with("| `"))
            .filter_map(|l| l.split('`').nth(1))
            .collect();
        let names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(table, names, "README.md's rule table and Rule::ALL differ");
    }
}
