//! Synthetic commits shaped exactly like the sequencer's, for measuring the
//! storage layer's limit (`tlog-server limits`) and its micro-benchmarks
//! (`cargo bench -p tlog-server --bench storage`).

use tlog_core::merkle::tree::Tree;

use crate::storage::{ArtifactMeta, CommitBatch, Idempotency, NewEntry};

/// The next `n` entries appended to `tree` as one commit: for each, the
/// leaf (`leaf` followed by the index, so leaves differ), its leaf-hash
/// index and idempotency and artifact records, and every tree hash the
/// append stores, as the sequencer writes them; then `checkpoint` at the
/// new size.
pub fn commit_batch(tree: &mut Tree, n: usize, leaf: &[u8], checkpoint: &str) -> CommitBatch {
    let mut batch = CommitBatch::default();
    for _ in 0..n {
        let index = tree.size();
        let mut bytes = leaf.to_vec();
        bytes.extend_from_slice(&index.to_be_bytes());
        let h = tlog_core::leaf_hash(&bytes);
        tree.append(h, &mut batch.hashes);
        batch.entries.push(NewEntry {
            index,
            leaf: bytes,
            leaf_hash: h,
            idempotency: Some(Idempotency {
                source: "bulk-loader".into(),
                event_id: format!("limits-{index}"),
                content_digest: [0; 32],
            }),
            artifact: Some((
                format!("load/model-{}", index % 997),
                ArtifactMeta {
                    action: 3,
                    seconds: 1,
                    nanos: 0,
                    version: "1.0.0".into(),
                },
            )),
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
        let b = commit_batch(&mut tree, 8, b"leaf", "cp");
        assert_eq!(b.size, 8);
        assert_eq!(b.entries.len(), 8);
        assert_eq!(b.hashes.len(), 8, "a leaf hash each");
        let b = commit_batch(&mut tree, 300, b"leaf", "cp");
        assert_eq!((b.size, b.entries[0].index), (308, 8));
        // The 256th leaf completes a tile: its root is stored a row up.
        assert_eq!(b.hashes.len(), 301);
        assert!(b.hashes.iter().any(|h| h.level > 0));
    }
}
