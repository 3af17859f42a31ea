//! Conversions between `tlog.v1` wire types and `tlog-core` domain types.
//! Protocol types stop here.

use tlog_core::event::{
    Action, Artifact, ArtifactEvent, ArtifactRef, Attestation, Digest, EventError, Interface,
    Provenance, Timestamp,
};
use tlog_proto::v1 as pb;

use crate::sequencer::Signed;

fn digest(d: pb::Digest) -> Digest {
    Digest {
        algorithm: d.algorithm,
        hex: d.hex,
    }
}

/// A wire timestamp as a domain timestamp, checking its range.
pub fn timestamp(
    field: &str,
    t: tlog_proto::prost_types::Timestamp,
) -> Result<Timestamp, EventError> {
    let nanos = u32::try_from(t.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| EventError::new(format!("{field}.nanos"), "must be in 0..1e9"))?;
    Ok(Timestamp {
        seconds: t.seconds,
        nanos,
    })
}

/// A wire event as a domain event (not yet validated beyond its enums).
pub fn event(p: pb::ArtifactEvent) -> Result<ArtifactEvent, EventError> {
    let action = Action::from_code(i64::from(p.action)).ok_or_else(|| {
        EventError::new(
            "action",
            if p.action == 0 {
                "is required (register, upload, download, modify, approve, promote, deploy, \
                 rollback, retire, access-granted, access-revoked)"
                    .to_owned()
            } else {
                format!("unknown action code {}", p.action)
            },
        )
    })?;
    let interface = Interface::from_code(i64::from(p.interface)).ok_or_else(|| {
        EventError::new(
            "interface",
            format!("unknown interface code {}", p.interface),
        )
    })?;
    let a = p
        .artifact
        .ok_or_else(|| EventError::new("artifact", "is required"))?;
    let client_time = p
        .client_time
        .map(|t| timestamp("client_time", t))
        .transpose()?;
    Ok(ArtifactEvent {
        event_id: p.event_id,
        source: p.source,
        action,
        artifact: Artifact {
            name: a.name,
            version: a.version,
            digests: a.digests.into_iter().map(digest).collect(),
            media_type: a.media_type,
            uri: a.uri,
        },
        actor: p.actor,
        interface,
        environment: p.environment,
        client_time,
        provenance: p.provenance.map(|v| Provenance {
            source_repo: v.source_repo,
            source_commit: v.source_commit,
            data_digests: v.data_digests.into_iter().map(digest).collect(),
            config_digests: v.config_digests.into_iter().map(digest).collect(),
            parents: v
                .parents
                .into_iter()
                .map(|r| ArtifactRef {
                    name: r.name,
                    version: r.version,
                    digest: r.digest.map(digest),
                })
                .collect(),
            builder: v.builder,
        }),
        justification: p.justification,
        ticket: p.ticket,
        attestations: p
            .attestations
            .into_iter()
            .map(|a| Attestation {
                scheme: a.scheme,
                key_id: a.key_id,
                signature: a.signature,
            })
            .collect(),
    })
}

/// A signed checkpoint on the wire.
pub fn checkpoint(s: &Signed) -> pb::SignedCheckpoint {
    pb::SignedCheckpoint {
        note: s.note.clone(),
        size: s.size,
        root_hash: s.root.as_bytes().to_vec(),
    }
}
