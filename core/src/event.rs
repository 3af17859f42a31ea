//! The artifact event: what one leaf of the log records about a model
//! artifact, modeled on CloudEvents (`id` + `source` unique) and in-toto
//! subjects (`name` + digest set), with its validation rules.
//!
//! Validation errors name the offending field with its path (for example
//! `artifact.digests[1].hex`) so a caller knows exactly what to fix.

use std::fmt;

/// What happened to an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// The artifact (name, version) was registered.
    Register,
    /// Artifact bytes were uploaded.
    Upload,
    /// Artifact bytes were read or downloaded.
    Download,
    /// Artifact metadata or bytes were modified.
    Modify,
    /// The version was approved.
    Approve,
    /// The version was promoted to an environment or stage.
    Promote,
    /// The version was deployed to an environment.
    Deploy,
    /// An environment was rolled back to this version.
    Rollback,
    /// The version was retired.
    Retire,
    /// Access was granted.
    AccessGranted,
    /// Access was revoked.
    AccessRevoked,
}

impl Action {
    /// Every action, in wire-code order.
    pub const ALL: [Action; 11] = [
        Action::Register,
        Action::Upload,
        Action::Download,
        Action::Modify,
        Action::Approve,
        Action::Promote,
        Action::Deploy,
        Action::Rollback,
        Action::Retire,
        Action::AccessGranted,
        Action::AccessRevoked,
    ];

    /// The stable numeric code (the same as the `tlog.v1.Action` enum and
    /// the leaf encoding).
    pub fn code(self) -> u8 {
        match self {
            Action::Register => 1,
            Action::Upload => 2,
            Action::Download => 3,
            Action::Modify => 4,
            Action::Approve => 5,
            Action::Promote => 6,
            Action::Deploy => 7,
            Action::Rollback => 8,
            Action::Retire => 9,
            Action::AccessGranted => 10,
            Action::AccessRevoked => 11,
        }
    }

    /// The action with this code, if any.
    pub fn from_code(code: i64) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| i64::from(a.code()) == code)
    }

    /// The lower-case name used in policies, CLIs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::Upload => "upload",
            Action::Download => "download",
            Action::Modify => "modify",
            Action::Approve => "approve",
            Action::Promote => "promote",
            Action::Deploy => "deploy",
            Action::Rollback => "rollback",
            Action::Retire => "retire",
            Action::AccessGranted => "access-granted",
            Action::AccessRevoked => "access-revoked",
        }
    }

    /// Parses a name as printed by [`Action::as_str`] (also `read` for
    /// download and `_` for `-`).
    pub fn parse(s: &str) -> Option<Action> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        if s == "read" {
            return Some(Action::Download);
        }
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Through which interface an event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Interface {
    /// Not stated.
    #[default]
    Unspecified,
    /// A programmatic API.
    Api,
    /// A command-line tool.
    Cli,
    /// A CI/CD pipeline.
    CiPipeline,
    /// A registry's web UI.
    RegistryUi,
    /// An SDK inside an application.
    Sdk,
    /// Anything else.
    Other,
}

impl Interface {
    const ALL: [Interface; 7] = [
        Interface::Unspecified,
        Interface::Api,
        Interface::Cli,
        Interface::CiPipeline,
        Interface::RegistryUi,
        Interface::Sdk,
        Interface::Other,
    ];

    /// The stable numeric code (as `tlog.v1.Interface`).
    pub fn code(self) -> u8 {
        match self {
            Interface::Unspecified => 0,
            Interface::Api => 1,
            Interface::Cli => 2,
            Interface::CiPipeline => 3,
            Interface::RegistryUi => 4,
            Interface::Sdk => 5,
            Interface::Other => 6,
        }
    }

    /// The interface with this code, if any.
    pub fn from_code(code: i64) -> Option<Interface> {
        Interface::ALL
            .into_iter()
            .find(|i| i64::from(i.code()) == code)
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Unspecified => "unspecified",
            Interface::Api => "api",
            Interface::Cli => "cli",
            Interface::CiPipeline => "ci-pipeline",
            Interface::RegistryUi => "registry-ui",
            Interface::Sdk => "sdk",
            Interface::Other => "other",
        }
    }

    /// Parses a name as printed by [`Interface::as_str`].
    pub fn parse(s: &str) -> Option<Interface> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        Interface::ALL.into_iter().find(|i| i.as_str() == s)
    }
}

/// A point in time: seconds and nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

impl Timestamp {
    /// Nanoseconds since the epoch (saturating), for ordering and indexes.
    pub fn as_nanos(&self) -> i128 {
        i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// The current time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: d.subsec_nanos(),
        }
    }
}

/// A content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    /// `sha256`, `sha384`, `sha512` or `blake3`.
    pub algorithm: String,
    /// Lower-case hex.
    pub hex: String,
}

/// The artifact an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Artifact {
    /// Name, e.g. `team-a/fraud-model`.
    pub name: String,
    /// Version, e.g. `1.4.2`.
    pub version: String,
    /// Digests of its bytes, at least one, one per algorithm.
    pub digests: Vec<Digest>,
    /// Media type (optional).
    pub media_type: String,
    /// Location (optional).
    pub uri: String,
}

/// A reference to another artifact.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArtifactRef {
    /// Name.
    pub name: String,
    /// Version (optional).
    pub version: String,
    /// Digest (optional).
    pub digest: Option<Digest>,
}

/// How an artifact was made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provenance {
    /// Source repository of the training code.
    pub source_repo: String,
    /// Commit of the training code.
    pub source_commit: String,
    /// Training data digests.
    pub data_digests: Vec<Digest>,
    /// Configuration digests.
    pub config_digests: Vec<Digest>,
    /// Parent artifacts.
    pub parents: Vec<ArtifactRef>,
    /// The builder.
    pub builder: String,
}

/// A signature over the event's attestation bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// [`ED25519`] or [`DSSE`].
    pub scheme: String,
    /// Which key signed.
    pub key_id: String,
    /// The signature.
    pub signature: Vec<u8>,
}

/// The attestation scheme of an Ed25519 signature (RFC 8032) over
/// [`ArtifactEvent::attestation_bytes`], by a key named by its signed-note
/// key name.
pub const ED25519: &str = "ed25519";

/// The attestation scheme of a DSSE envelope signature (kept, not verified
/// by the log).
pub const DSSE: &str = "dsse";

/// A trusted signer's attestation that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("does not verify with trusted signer {key_id:?} over the event's attestation bytes")]
pub struct AttestationError {
    /// Its position in `attestations`.
    pub index: usize,
    /// The signer it names.
    pub key_id: String,
}

/// One lifecycle event of a model artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactEvent {
    /// Unique within `source`.
    pub event_id: String,
    /// The producing system.
    pub source: String,
    /// What happened.
    pub action: Action,
    /// To which artifact.
    pub artifact: Artifact,
    /// Who did it, as the source claims.
    pub actor: String,
    /// Through which interface.
    pub interface: Interface,
    /// Environment or stage.
    pub environment: String,
    /// When, by the source's clock.
    pub client_time: Option<Timestamp>,
    /// How the artifact was made.
    pub provenance: Option<Provenance>,
    /// Why.
    pub justification: String,
    /// Ticket reference.
    pub ticket: String,
    /// Signatures over the event.
    pub attestations: Vec<Attestation>,
}

/// A rule an event broke; `field` is the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EventError {
    /// Path of the field, e.g. `artifact.digests[0].hex`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl EventError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        EventError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Longest artifact name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest version, in bytes.
pub const MAX_VERSION_LEN: usize = 128;
/// Longest identifier (event id, source, actor, environment), in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Longest free text (justification, URIs), in bytes.
pub const MAX_TEXT_LEN: usize = 4096;

/// The hex length a digest algorithm needs, or `None` if unsupported.
pub fn digest_hex_len(algorithm: &str) -> Option<usize> {
    match algorithm {
        "sha256" | "blake3" => Some(64),
        "sha384" => Some(96),
        "sha512" => Some(128),
        _ => None,
    }
}

fn check_text(field: &str, value: &str, required: bool, max: usize) -> Result<(), EventError> {
    if value.is_empty() {
        return if required {
            Err(EventError::new(field, "is required"))
        } else {
            Ok(())
        };
    }
    if value.len() > max {
        return Err(EventError::new(
            field,
            format!("is {} bytes, at most {max} allowed", value.len()),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(EventError::new(
            field,
            format!("contains control character U+{:04X}", c as u32),
        ));
    }
    if let Some(c) = value.chars().find(|c| crate::text::is_spoofing(*c)) {
        return Err(EventError::new(
            field,
            format!(
                "contains U+{:04X}, a bidirectional, zero-width or separator character that \
                 makes the text display as something other than what is recorded; remove it",
                c as u32
            ),
        ));
    }
    if value.trim() != value {
        return Err(EventError::new(field, "has leading or trailing whitespace"));
    }
    Ok(())
}

fn check_digest(field: &str, d: &Digest) -> Result<(), EventError> {
    let want = digest_hex_len(&d.algorithm).ok_or_else(|| {
        EventError::new(
            format!("{field}.algorithm"),
            format!(
                "unsupported digest algorithm {:?}; use sha256, sha384, sha512 or blake3",
                d.algorithm
            ),
        )
    })?;
    if d.hex.len() != want
        || !d
            .hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(EventError::new(
            format!("{field}.hex"),
            format!(
                "{} needs {want} lower-case hex digits, got {:?}",
                d.algorithm,
                truncate(&d.hex, 80)
            ),
        ));
    }
    Ok(())
}

fn check_digests(field: &str, ds: &[Digest], required: bool) -> Result<(), EventError> {
    if required && ds.is_empty() {
        return Err(EventError::new(field, "at least one digest is required"));
    }
    if ds.len() > 16 {
        return Err(EventError::new(field, "at most 16 digests"));
    }
    for (i, d) in ds.iter().enumerate() {
        check_digest(&format!("{field}[{i}]"), d)?;
        if ds[..i].iter().any(|o| o.algorithm == d.algorithm) {
            return Err(EventError::new(
                format!("{field}[{i}].algorithm"),
                format!("{} appears twice", d.algorithm),
            ));
        }
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl ArtifactEvent {
    /// Checks every rule; the first broken one is returned.
    pub fn validate(&self) -> Result<(), EventError> {
        check_text("event_id", &self.event_id, true, MAX_ID_LEN)?;
        check_text("source", &self.source, true, MAX_ID_LEN)?;
        check_text("artifact.name", &self.artifact.name, true, MAX_NAME_LEN)?;
        check_text(
            "artifact.version",
            &self.artifact.version,
            true,
            MAX_VERSION_LEN,
        )?;
        check_digests("artifact.digests", &self.artifact.digests, true)?;
        check_text(
            "artifact.media_type",
            &self.artifact.media_type,
            false,
            MAX_ID_LEN,
        )?;
        check_text("artifact.uri", &self.artifact.uri, false, MAX_TEXT_LEN)?;
        check_text("actor", &self.actor, true, MAX_ID_LEN)?;
        let needs_env = matches!(
            self.action,
            Action::Promote | Action::Deploy | Action::Rollback
        );
        check_text("environment", &self.environment, needs_env, MAX_ID_LEN).map_err(|e| {
            if needs_env && self.environment.is_empty() {
                EventError::new("environment", format!("is required for {}", self.action))
            } else {
                e
            }
        })?;
        if let Some(t) = &self.client_time
            && t.nanos >= 1_000_000_000
        {
            return Err(EventError::new("client_time.nanos", "must be below 1e9"));
        }
        if let Some(p) = &self.provenance {
            check_text(
                "provenance.source_repo",
                &p.source_repo,
                false,
                MAX_TEXT_LEN,
            )?;
            check_text(
                "provenance.source_commit",
                &p.source_commit,
                false,
                MAX_ID_LEN,
            )?;
            check_digests("provenance.data_digests", &p.data_digests, false)?;
            check_digests("provenance.config_digests", &p.config_digests, false)?;
            check_text("provenance.builder", &p.builder, false, MAX_TEXT_LEN)?;
            if p.parents.len() > 64 {
                return Err(EventError::new("provenance.parents", "at most 64 parents"));
            }
            for (i, r) in p.parents.iter().enumerate() {
                let f = format!("provenance.parents[{i}]");
                check_text(&format!("{f}.name"), &r.name, true, MAX_NAME_LEN)?;
                check_text(&format!("{f}.version"), &r.version, false, MAX_VERSION_LEN)?;
                if let Some(d) = &r.digest {
                    check_digest(&format!("{f}.digest"), d)?;
                }
            }
        }
        check_text("justification", &self.justification, false, MAX_TEXT_LEN)?;
        check_text("ticket", &self.ticket, false, MAX_ID_LEN)?;
        if self.attestations.len() > 16 {
            return Err(EventError::new("attestations", "at most 16 attestations"));
        }
        for (i, a) in self.attestations.iter().enumerate() {
            let f = format!("attestations[{i}]");
            match a.scheme.as_str() {
                ED25519 => {
                    if a.signature.len() != 64 {
                        return Err(EventError::new(
                            format!("{f}.signature"),
                            format!(
                                "an ed25519 signature is 64 bytes, got {}",
                                a.signature.len()
                            ),
                        ));
                    }
                }
                DSSE => {
                    if a.signature.is_empty() || a.signature.len() > 1024 {
                        return Err(EventError::new(
                            format!("{f}.signature"),
                            "a dsse signature must be 1..=1024 bytes",
                        ));
                    }
                }
                other => {
                    return Err(EventError::new(
                        format!("{f}.scheme"),
                        format!("unsupported scheme {other:?}; use ed25519 or dsse"),
                    ));
                }
            }
            check_text(&format!("{f}.key_id"), &a.key_id, true, MAX_TEXT_LEN)?;
        }
        Ok(())
    }
}

/// Attestations (ARCHITECTURE.md, "The artifact event"): signing and
/// verifying, in one place for the CLI, the server and the tests.
impl ArtifactEvent {
    /// An Ed25519 attestation of this event by `signer` (scheme
    /// [`ED25519`], key id the signer's name), over
    /// [`ArtifactEvent::attestation_bytes`].
    pub fn attest(&self, signer: &crate::note::Signer) -> Attestation {
        use ed25519_dalek::Signer as _;
        Attestation {
            scheme: ED25519.into(),
            key_id: signer.name().to_owned(),
            signature: signer
                .signing_key()
                .sign(&self.attestation_bytes())
                .to_bytes()
                .to_vec(),
        }
    }

    /// The names of the `trusted` signers whose Ed25519 attestations of
    /// this event verify, sorted and unique. An attestation by a trusted
    /// signer that does not verify is an error; attestations by signers
    /// not in `trusted`, and other schemes, are kept but not counted.
    pub fn verified_signers(
        &self,
        trusted: &[crate::note::Verifier],
    ) -> Result<Vec<String>, AttestationError> {
        use ed25519_dalek::Verifier as _;
        let mut verified: Vec<String> = Vec::new();
        if self.attestations.is_empty() || trusted.is_empty() {
            return Ok(verified);
        }
        let message = self.attestation_bytes();
        for (index, a) in self.attestations.iter().enumerate() {
            let Some(signer) = trusted.iter().find(|v| v.name() == a.key_id) else {
                continue;
            };
            if a.scheme != ED25519 {
                continue;
            }
            let ok = ed25519_dalek::Signature::from_slice(&a.signature)
                .is_ok_and(|sig| signer.public_key().verify(&message, &sig).is_ok());
            if !ok {
                return Err(AttestationError {
                    index,
                    key_id: a.key_id.clone(),
                });
            }
            if !verified.contains(&a.key_id) {
                verified.push(a.key_id.clone());
            }
        }
        verified.sort();
        Ok(verified)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid event for tests.
    pub(crate) fn sample() -> ArtifactEvent {
        ArtifactEvent {
            event_id: "evt-1".into(),
            source: "registry.example.com".into(),
            action: Action::Register,
            artifact: Artifact {
                name: "team-a/fraud-model".into(),
                version: "1.4.2".into(),
                digests: vec![Digest {
                    algorithm: "sha256".into(),
                    hex: "ab".repeat(32),
                }],
                media_type: "application/vnd.onnx".into(),
                uri: "s3://models/fraud/1.4.2".into(),
            },
            actor: "alice@example.com".into(),
            interface: Interface::Api,
            environment: String::new(),
            client_time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            provenance: None,
            justification: String::new(),
            ticket: String::new(),
            attestations: vec![],
        }
    }

    #[test]
    fn sample_is_valid() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn each_rule_names_its_field() {
        type Mutation = Box<dyn Fn(&mut ArtifactEvent)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("event_id", Box::new(|e| e.event_id.clear())),
            ("source", Box::new(|e| e.source = "a\u{0}b".into())),
            (
                "artifact.name",
                Box::new(|e| e.artifact.name = "x\ny".into()),
            ),
            (
                "artifact.name",
                Box::new(|e| e.artifact.name = "n".repeat(300)),
            ),
            (
                "artifact.name",
                Box::new(|e| e.artifact.name = "team-a/evil\u{202E}gpj.exe".into()),
            ),
            ("actor", Box::new(|e| e.actor = "alice\u{2066}".into())),
            (
                "justification",
                Box::new(|e| e.justification = "ok\u{200B}".into()),
            ),
            ("artifact.version", Box::new(|e| e.artifact.version.clear())),
            ("artifact.digests", Box::new(|e| e.artifact.digests.clear())),
            (
                "artifact.digests[0].hex",
                Box::new(|e| e.artifact.digests[0].hex = "AB".repeat(32)),
            ),
            (
                "artifact.digests[0].hex",
                Box::new(|e| e.artifact.digests[0].hex = "ab".repeat(31)),
            ),
            (
                "artifact.digests[0].algorithm",
                Box::new(|e| e.artifact.digests[0].algorithm = "md5".into()),
            ),
            ("actor", Box::new(|e| e.actor.clear())),
            (
                "environment",
                Box::new(|e| {
                    e.action = Action::Deploy;
                    e.environment.clear();
                }),
            ),
            (
                "attestations[0].signature",
                Box::new(|e| {
                    e.attestations.push(Attestation {
                        scheme: ED25519.into(),
                        key_id: "k".into(),
                        signature: vec![0; 10],
                    })
                }),
            ),
        ];
        for (field, mutate) in cases {
            let mut e = sample();
            mutate(&mut e);
            let err = e.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
            assert_eq!(Action::from_code(i64::from(a.code())), Some(a));
        }
        assert_eq!(Action::parse("read"), Some(Action::Download));
        assert_eq!(Action::from_code(0), None);
        assert_eq!(Action::from_code(99), None);
    }
}
