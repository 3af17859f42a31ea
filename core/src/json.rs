//! The JSON form of events and leaves: what `tlog submit --file` and
//! `--jsonl` read, and what `--json` output, reports and evidence bundles
//! show.
//!
//! JSON is a presentation, never the committed form: a leaf's bytes are its
//! canonical binary encoding ([`crate::leaf`]), and everyone verifies by
//! hashing those bytes. Reading JSON is strict (unknown fields are refused)
//! and every error names the field to fix, with the same paths as
//! [`ArtifactEvent::validate`].
//!
//! An event in JSON:
//!
//! ```json
//! {"source": "registry.example", "event_id": "evt-1", "action": "register",
//!  "artifact": {"name": "team-a/fraud", "version": "1.4.2",
//!               "digests": ["sha256:9f86d0..."]},
//!  "actor": "alice@example.com", "interface": "registry-ui",
//!  "client_time": "2026-11-30T18:00:00Z"}
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::event::{
    Action, Artifact, ArtifactEvent, ArtifactRef, Attestation, Digest, EventError, Interface,
    Provenance, Timestamp,
};
use crate::leaf::{AnyLeaf, Leaf};

/// An artifact event in JSON. Digests are `ALGORITHM:HEX` strings; times
/// are RFC 3339; attestation signatures are base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EventJson {
    /// Unique within `source`; empty means "let the submitter pick one".
    #[serde(default)]
    pub event_id: String,
    /// The reporting system.
    pub source: String,
    /// `register`, `upload`, ... (see [`Action`]).
    pub action: String,
    /// The artifact.
    pub artifact: ArtifactJson,
    /// Who did it, as the source claims.
    #[serde(default)]
    pub actor: String,
    /// `api`, `cli`, `ci-pipeline`, `registry-ui`, `sdk`, `other`.
    #[serde(default = "default_interface")]
    pub interface: String,
    /// Environment or stage.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub environment: String,
    /// When it happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_time: Option<String>,
    /// Where the artifact came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ProvenanceJson>,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub justification: String,
    /// Change or incident ticket.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ticket: String,
    /// Signatures over the event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationJson>,
}

fn default_interface() -> String {
    "other".into()
}

/// An artifact in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ArtifactJson {
    /// Name, e.g. `team-a/fraud-model`.
    pub name: String,
    /// Version.
    pub version: String,
    /// `ALGORITHM:HEX` digests.
    pub digests: Vec<String>,
    /// Media type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// Where the bytes are.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
}

/// Provenance in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceJson {
    /// Source repository.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_repo: String,
    /// Source commit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_commit: String,
    /// Training-data digests (`ALGORITHM:HEX`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_digests: Vec<String>,
    /// Configuration digests (`ALGORITHM:HEX`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_digests: Vec<String>,
    /// Parent artifacts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ArtifactRefJson>,
    /// The builder.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub builder: String,
}

/// A reference to another artifact in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRefJson {
    /// Name.
    pub name: String,
    /// Version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// `ALGORITHM:HEX`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// An attestation in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AttestationJson {
    /// `ed25519` or `dsse`.
    pub scheme: String,
    /// The signer's name.
    pub key_id: String,
    /// The signature, base64.
    pub signature: String,
}

/// Formats a timestamp as RFC 3339 UTC (nanoseconds only when non-zero).
pub fn format_time(t: Timestamp) -> String {
    let secs = u64::try_from(t.seconds).unwrap_or(0);
    let st = std::time::UNIX_EPOCH + std::time::Duration::new(secs, t.nanos.min(999_999_999));
    if t.nanos == 0 {
        humantime::format_rfc3339_seconds(st).to_string()
    } else {
        humantime::format_rfc3339_nanos(st).to_string()
    }
}

/// Parses an RFC 3339 time (`2026-11-30T18:00:00Z`, with optional
/// fraction); `field` names it in the error.
pub fn parse_time(field: &str, text: &str) -> Result<Timestamp, EventError> {
    let bad = || {
        EventError::new(
            field,
            format!("{text:?} is not an RFC 3339 time such as 2026-11-30T18:00:00Z"),
        )
    };
    let st = humantime::parse_rfc3339(text).map_err(|_| bad())?;
    let d = st
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad())?;
    Ok(Timestamp {
        seconds: i64::try_from(d.as_secs()).map_err(|_| bad())?,
        nanos: d.subsec_nanos(),
    })
}

/// Parses `ALGORITHM:HEX`; `field` names it in the error. The digest's
/// length and alphabet are checked later by [`ArtifactEvent::validate`].
pub fn parse_digest(field: &str, text: &str) -> Result<Digest, EventError> {
    let (alg, hex) = text.split_once(':').ok_or_else(|| {
        EventError::new(
            field,
            format!("{text:?} is not ALGORITHM:HEX, e.g. sha256:9f86d081884c7d65..."),
        )
    })?;
    Ok(Digest {
        algorithm: alg.to_ascii_lowercase(),
        hex: hex.to_owned(),
    })
}

fn digest_text(d: &Digest) -> String {
    format!("{}:{}", d.algorithm, d.hex)
}

fn digests(field: &str, list: &[String]) -> Result<Vec<Digest>, EventError> {
    list.iter()
        .enumerate()
        .map(|(i, d)| parse_digest(&format!("{field}[{i}]"), d))
        .collect()
}

impl EventJson {
    /// Converts to a domain event and validates it; errors name the field.
    /// An empty `event_id` stays empty (the caller fills it in).
    pub fn to_event(&self) -> Result<ArtifactEvent, EventError> {
        let action = Action::parse(&self.action).ok_or_else(|| {
            EventError::new(
                "action",
                format!(
                    "{:?} is not an action; use one of: {}",
                    self.action,
                    Action::ALL.map(|a| a.as_str()).join(", ")
                ),
            )
        })?;
        let interface = Interface::parse(&self.interface).ok_or_else(|| {
            EventError::new(
                "interface",
                format!(
                    "{:?}: use api, cli, ci-pipeline, registry-ui, sdk or other",
                    self.interface
                ),
            )
        })?;
        let client_time = self
            .client_time
            .as_deref()
            .map(|t| parse_time("client_time", t))
            .transpose()?;
        let provenance = match &self.provenance {
            None => None,
            Some(p) => Some(Provenance {
                source_repo: p.source_repo.clone(),
                source_commit: p.source_commit.clone(),
                data_digests: digests("provenance.data_digests", &p.data_digests)?,
                config_digests: digests("provenance.config_digests", &p.config_digests)?,
                parents: p
                    .parents
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        Ok(ArtifactRef {
                            name: r.name.clone(),
                            version: r.version.clone(),
                            digest: r
                                .digest
                                .as_deref()
                                .map(|d| {
                                    parse_digest(&format!("provenance.parents[{i}].digest"), d)
                                })
                                .transpose()?,
                        })
                    })
                    .collect::<Result<_, EventError>>()?,
                builder: p.builder.clone(),
            }),
        };
        let attestations = self
            .attestations
            .iter()
            .enumerate()
            .map(|(i, a)| {
                Ok(Attestation {
                    scheme: a.scheme.clone(),
                    key_id: a.key_id.clone(),
                    signature: B64.decode(&a.signature).map_err(|e| {
                        EventError::new(
                            format!("attestations[{i}].signature"),
                            format!("not base64: {e}"),
                        )
                    })?,
                })
            })
            .collect::<Result<_, EventError>>()?;
        Ok(ArtifactEvent {
            event_id: self.event_id.clone(),
            source: self.source.clone(),
            action,
            artifact: Artifact {
                name: self.artifact.name.clone(),
                version: self.artifact.version.clone(),
                digests: digests("artifact.digests", &self.artifact.digests)?,
                media_type: self.artifact.media_type.clone(),
                uri: self.artifact.uri.clone(),
            },
            actor: self.actor.clone(),
            interface,
            environment: self.environment.clone(),
            client_time,
            provenance,
            justification: self.justification.clone(),
            ticket: self.ticket.clone(),
            attestations,
        })
    }

    /// The JSON form of a domain event.
    pub fn from_event(e: &ArtifactEvent) -> Self {
        EventJson {
            event_id: e.event_id.clone(),
            source: e.source.clone(),
            action: e.action.as_str().to_owned(),
            artifact: ArtifactJson {
                name: e.artifact.name.clone(),
                version: e.artifact.version.clone(),
                digests: e.artifact.digests.iter().map(digest_text).collect(),
                media_type: e.artifact.media_type.clone(),
                uri: e.artifact.uri.clone(),
            },
            actor: e.actor.clone(),
            interface: e.interface.as_str().to_owned(),
            environment: e.environment.clone(),
            client_time: e.client_time.map(format_time),
            provenance: e.provenance.as_ref().map(|p| ProvenanceJson {
                source_repo: p.source_repo.clone(),
                source_commit: p.source_commit.clone(),
                data_digests: p.data_digests.iter().map(digest_text).collect(),
                config_digests: p.config_digests.iter().map(digest_text).collect(),
                parents: p
                    .parents
                    .iter()
                    .map(|r| ArtifactRefJson {
                        name: r.name.clone(),
                        version: r.version.clone(),
                        digest: r.digest.as_ref().map(digest_text),
                    })
                    .collect(),
                builder: p.builder.clone(),
            }),
            justification: e.justification.clone(),
            ticket: e.ticket.clone(),
            attestations: e
                .attestations
                .iter()
                .map(|a| AttestationJson {
                    scheme: a.scheme.clone(),
                    key_id: a.key_id.clone(),
                    signature: B64.encode(&a.signature),
                })
                .collect(),
        }
    }
}

/// Why a JSON event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonEventError {
    /// Not JSON, or not the shape of an event (names the field and position).
    #[error("malformed JSON: {0}")]
    Syntax(String),
    /// Well-formed, but a field is wrong.
    #[error("{0}")]
    Invalid(#[from] EventError),
}

/// Reads one event from JSON text and converts it (not yet validated as a
/// whole: call [`ArtifactEvent::validate`] once `event_id` is settled).
pub fn event_from_json(text: &str) -> Result<ArtifactEvent, JsonEventError> {
    let j: EventJson =
        serde_json::from_str(text).map_err(|e| JsonEventError::Syntax(e.to_string()))?;
    Ok(j.to_event()?)
}

/// Who submitted a leaf, in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitterJson {
    /// The authenticated principal.
    pub principal: String,
    /// `mtls`, `bearer`, `anonymous`, `none`.
    pub auth_method: String,
    /// The network peer.
    pub peer: String,
}

/// An event leaf in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLeafJson {
    /// Always `"event"`.
    pub kind: String,
    /// Encoding version.
    pub leaf_version: u8,
    /// The event as submitted.
    pub event: EventJson,
    /// Who submitted it, as the server authenticated them.
    pub submitter: SubmitterJson,
    /// When the server integrated it (RFC 3339).
    pub integrated_at: String,
    /// Trusted signers whose attestations the server verified.
    pub verified_signers: Vec<String>,
}

impl EventLeafJson {
    /// The JSON form of an event leaf.
    pub fn from_leaf(l: &Leaf) -> Self {
        EventLeafJson {
            kind: "event".into(),
            leaf_version: l.version,
            event: EventJson::from_event(&l.event),
            submitter: SubmitterJson {
                principal: l.submitter.principal.clone(),
                auth_method: l.submitter.auth_method.clone(),
                peer: l.submitter.peer.clone(),
            },
            integrated_at: format_time(l.integrated_at),
            verified_signers: l.verified_signers.clone(),
        }
    }
}

/// The JSON form of any leaf.
pub fn leaf_json(leaf: &AnyLeaf) -> serde_json::Value {
    let v = match leaf {
        AnyLeaf::Event(l) => serde_json::to_value(EventLeafJson::from_leaf(l)),
        AnyLeaf::Access(a) => serde_json::to_value(a.as_ref()).map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.insert("kind".into(), "access".into());
            }
            v
        }),
    };
    // Serializing these plain structs cannot fail.
    v.unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ArtifactEvent {
        ArtifactEvent {
            event_id: "evt-1".into(),
            source: "registry".into(),
            action: Action::Deploy,
            artifact: Artifact {
                name: "team-a/fraud".into(),
                version: "1.2.3".into(),
                digests: vec![Digest {
                    algorithm: "sha256".into(),
                    hex: "ab".repeat(32),
                }],
                media_type: "application/onnx".into(),
                uri: "s3://m/f".into(),
            },
            actor: "alice".into(),
            interface: Interface::CiPipeline,
            environment: "production".into(),
            client_time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            provenance: Some(Provenance {
                source_repo: "git@x:y".into(),
                source_commit: "abc".into(),
                data_digests: vec![Digest {
                    algorithm: "sha256".into(),
                    hex: "cd".repeat(32),
                }],
                config_digests: vec![],
                parents: vec![ArtifactRef {
                    name: "base".into(),
                    version: "1".into(),
                    digest: None,
                }],
                builder: "ci".into(),
            }),
            justification: "why".into(),
            ticket: "CHG-1".into(),
            attestations: vec![Attestation {
                scheme: crate::event::ED25519.into(),
                key_id: "release".into(),
                signature: vec![1; 64],
            }],
        }
    }

    #[test]
    fn round_trip_through_json_text() {
        let e = sample();
        let text = serde_json::to_string(&EventJson::from_event(&e)).expect("json");
        assert_eq!(event_from_json(&text), Ok(e));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"source":"s","action":"explode","artifact":{"name":"a","version":"1","digests":[]}}"#,
                "action",
            ),
            (
                r#"{"source":"s","action":"register","artifact":{"name":"a","version":"1","digests":["sha256"]}}"#,
                "artifact.digests[0]",
            ),
            (
                r#"{"source":"s","action":"register","interface":"fax","artifact":{"name":"a","version":"1","digests":[]}}"#,
                "interface",
            ),
            (
                r#"{"source":"s","action":"register","client_time":"yesterday","artifact":{"name":"a","version":"1","digests":[]}}"#,
                "client_time",
            ),
        ];
        for (text, field) in cases {
            match event_from_json(text) {
                Err(JsonEventError::Invalid(e)) => assert_eq!(e.field, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let e = event_from_json(r#"{"source":"s","colour":"red"}"#).expect_err("unknown field");
        assert!(e.to_string().contains("colour"), "{e}");
        assert!(matches!(
            event_from_json("{not json"),
            Err(JsonEventError::Syntax(_))
        ));
    }

    #[test]
    fn times_round_trip() {
        for t in [
            Timestamp {
                seconds: 0,
                nanos: 0,
            },
            Timestamp {
                seconds: 1_764_525_600,
                nanos: 123_456_789,
            },
        ] {
            assert_eq!(parse_time("t", &format_time(t)), Ok(t));
        }
        assert_eq!(
            format_time(Timestamp {
                seconds: 1_764_525_600,
                nanos: 0
            }),
            "2025-11-30T18:00:00Z"
        );
    }

    #[test]
    fn leaves_render_with_their_kind() {
        let access = crate::leaf::AccessLeaf {
            principal: "auditor@example.com".into(),
            method: "QueryArtifact".into(),
            actions: vec!["query".into()],
            ..Default::default()
        };
        let v = leaf_json(&AnyLeaf::Access(Box::new(access)));
        assert_eq!(v["kind"], "access");
        assert_eq!(v["principal"], "auditor@example.com");
        assert_eq!(v["actions"][0], "query");
        let l = Leaf {
            version: crate::leaf::LEAF_VERSION,
            event: sample(),
            submitter: crate::leaf::Submitter::default(),
            integrated_at: Timestamp::default(),
            verified_signers: vec!["release".into()],
        };
        let v = leaf_json(&AnyLeaf::Event(Box::new(l)));
        assert_eq!(v["kind"], "event");
        assert_eq!(v["event"]["action"], "deploy");
        assert_eq!(v["verified_signers"][0], "release");
    }

    proptest::proptest! {
        #[test]
        fn json_reader_never_panics(text in ".{0,300}") {
            let _ = event_from_json(&text);
        }
    }
}
