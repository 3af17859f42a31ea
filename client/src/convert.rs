//! Domain events to `tlog.v1` wire messages (the client's edge).

use tlog_core::event::{ArtifactEvent, Digest};
use tlog_proto::v1 as pb;

fn digest(d: &Digest) -> pb::Digest {
    pb::Digest {
        algorithm: d.algorithm.clone(),
        hex: d.hex.clone(),
    }
}

/// A domain event as a wire event.
pub fn event(e: &ArtifactEvent) -> pb::ArtifactEvent {
    pb::ArtifactEvent {
        event_id: e.event_id.clone(),
        source: e.source.clone(),
        action: i32::from(e.action.code()),
        artifact: Some(pb::Artifact {
            name: e.artifact.name.clone(),
            version: e.artifact.version.clone(),
            digests: e.artifact.digests.iter().map(digest).collect(),
            media_type: e.artifact.media_type.clone(),
            uri: e.artifact.uri.clone(),
        }),
        actor: e.actor.clone(),
        interface: i32::from(e.interface.code()),
        environment: e.environment.clone(),
        client_time: e.client_time.map(|t| tlog_proto::prost_types::Timestamp {
            seconds: t.seconds,
            nanos: i32::try_from(t.nanos).unwrap_or(i32::MAX),
        }),
        provenance: e.provenance.as_ref().map(|p| pb::Provenance {
            source_repo: p.source_repo.clone(),
            source_commit: p.source_commit.clone(),
            data_digests: p.data_digests.iter().map(digest).collect(),
            config_digests: p.config_digests.iter().map(digest).collect(),
            parents: p
                .parents
                .iter()
                .map(|r| pb::ArtifactRef {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    digest: r.digest.as_ref().map(digest),
                })
                .collect(),
            builder: p.builder.clone(),
        }),
        justification: e.justification.clone(),
        ticket: e.ticket.clone(),
        attestations: e
            .attestations
            .iter()
            .map(|a| pb::Attestation {
                scheme: a.scheme.clone(),
                key_id: a.key_id.clone(),
                signature: a.signature.clone(),
            })
            .collect(),
    }
}
