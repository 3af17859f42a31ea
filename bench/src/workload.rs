//! Synthetic load shaped like real use: the events the bulk loader
//! appends, and commits built exactly as the sequencer builds them, for
//! measuring the storage layer's limit (`tlog-bench limits`) and its
//! micro-benchmarks (`cargo bench -p tlog-bench --bench storage`).

use tlog_core::event::{Action, Artifact, ArtifactEvent, Digest, Interface, Timestamp};
use tlog_core::leaf::{LEAF_VERSION, Leaf, Submitter};
use tlog_core::merkle::tree::Tree;

use tlog_server::storage::{ArtifactMeta, CommitBatch, Idempotency, NewEntry};

/// A synthetic but realistic event for entry `i` of a load: 997 artifacts;
/// every 20th event of an artifact registers a new version, the others are
/// downloads of the current version by one of 64 readers.
pub fn event(run: u64, i: u64) -> ArtifactEvent {
    let artifact = i % 997;
    let step = i / 997;
    let version = format!("1.{}.0", step / 20);
    let name = format!("load/model-{artifact}");
    let register = step.is_multiple_of(20);
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(format!("{name}@{version}").as_bytes()))
    };
    ArtifactEvent {
        event_id: format!("load-{run:x}-{i}"),
        source: "bulk-loader".into(),
        action: if register {
            Action::Register
        } else {
            Action::Download
        },
        artifact: Artifact {
            name,
            version,
            digests: vec![Digest {
                algorithm: "sha256".into(),
                hex: digest,
            }],
            media_type: "application/x-onnx".into(),
            uri: String::new(),
        },
        actor: if register {
            "ci-bot".into()
        } else {
            format!("reader-{}", i % 64)
        },
        interface: if register {
            Interface::CiPipeline
        } else {
            Interface::Api
        },
        environment: String::new(),
        client_time: None,
        provenance: None,
        justification: String::new(),
        ticket: String::new(),
        attestations: Vec::new(),
    }
}

/// The next `n` entries appended to `tree` as one commit, as the
/// sequencer writes them: for each, the encoded leaf of [`event`]`(0,
/// index)`, its leaf-hash index, idempotency and artifact records, and
/// every tree hash the append stores; then `checkpoint` at the new size.
pub fn commit_batch(tree: &mut Tree, n: usize, checkpoint: &str) -> CommitBatch {
    let mut batch = CommitBatch::default();
    let now = Timestamp::now();
    for _ in 0..n {
        let index = tree.size();
        let event = event(0, index);
        let content_digest = event.content_digest();
        let idempotency = Idempotency {
            source: event.source.clone(),
            event_id: event.event_id.clone(),
            content_digest,
        };
        let artifact = (
            event.artifact.name.clone(),
            ArtifactMeta {
                action: event.action.code(),
                seconds: now.seconds,
                nanos: now.nanos,
                version: event.artifact.version.clone(),
            },
        );
        let leaf = Leaf {
            version: LEAF_VERSION,
            event,
            submitter: Submitter {
                principal: "bulk-loader".into(),
                auth_method: "none".into(),
                peer: String::new(),
            },
            integrated_at: now,
            verified_signers: Vec::new(),
        }
        .encode();
        let h = tlog_core::leaf_hash(&leaf);
        tree.append(h, &mut batch.hashes);
        batch.entries.push(NewEntry {
            index,
            leaf,
            leaf_hash: h,
            idempotency: Some(idempotency),
            artifact: Some(artifact),
        });
    }
    batch.size = tree.size();
    batch.checkpoint = checkpoint.to_owned();
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_holds_every_entry_and_every_stored_hash() {
        let mut tree = Tree::new();
        let b = commit_batch(&mut tree, 8, "cp");
        assert_eq!(b.size, 8);
        assert_eq!(b.entries.len(), 8);
        assert_eq!(b.hashes.len(), 8, "a leaf hash each");
        let b = commit_batch(&mut tree, 300, "cp");
        assert_eq!((b.size, b.entries[0].index), (308, 8));
        // The 256th leaf completes a tile: its root is stored a row up.
        assert_eq!(b.hashes.len(), 301);
        assert!(b.hashes.iter().any(|h| h.level > 0));
        let leaf = Leaf::decode(&b.entries[0].leaf).expect("a real leaf");
        assert_eq!(leaf.event.event_id, "load-0-8");
    }

    #[test]
    fn events_register_every_twentieth_version_step() {
        assert_eq!(event(1, 0).action, Action::Register);
        assert_eq!(event(1, 997).action, Action::Download);
        assert_eq!(event(1, 997 * 20).artifact.version, "1.1.0");
    }
}
