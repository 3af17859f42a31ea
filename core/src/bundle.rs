//! Evidence bundles: one self-contained file per query result that anyone
//! can verify with no network (ARCHITECTURE.md, "Evidence bundle").
//!
//! A bundle is a JSON document:
//!
//! ```json
//! {
//!   "format": "tlog-evidence-bundle/v1",
//!   "description": "tlog export --artifact team-a/fraud",
//!   "created_at": "2026-11-30T18:00:00Z",
//!   "verifier_key": "models.example/log+1a2b3c4d+AV...",
//!   "checkpoint": "models.example/log\n42\n<base64 root>\n\n— models.example/log ...\n",
//!   "entries": [
//!     {"index": 7, "leaf_hash": "<hex>", "leaf": "<base64 leaf bytes>",
//!      "inclusion_proof": ["<hex>", ...]}
//!   ]
//! }
//! ```
//!
//! What is verified, and how:
//! - `checkpoint` is a C2SP signed note (`signed-note`) over a C2SP
//!   `tlog-checkpoint`; its signature must verify with the verifier key
//!   (the caller's pinned key when given, else the bundle's own, which
//!   only proves internal consistency) and its origin must be the key's name.
//! - Each `leaf` hashes (RFC 9162 §2.1.1, `SHA-256(0x00 || leaf)`) to its
//!   `leaf_hash`, and its `inclusion_proof` leads from that hash at `index`
//!   to the checkpoint's root (RFC 9162 §2.1.3.2).
//! - Each leaf decodes as a leaf of this log.
//!
//! `description` and `created_at` are labels for people: nothing signs them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, SignedCheckpoint};
use crate::hash::Hash;
use crate::leaf::{AnyLeaf, decode_any};
use crate::merkle::verify::verify_inclusion;
use crate::note::{Verifier, Verifiers};

/// The `format` value of this version.
pub const BUNDLE_FORMAT: &str = "tlog-evidence-bundle/v1";

/// Largest bundle file accepted, to bound memory on hostile input.
pub const MAX_BUNDLE_BYTES: usize = 1 << 30;

/// An evidence bundle as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// What produced it (unsigned label).
    #[serde(default)]
    pub description: String,
    /// When it was made (unsigned label, RFC 3339).
    #[serde(default)]
    pub created_at: String,
    /// The log's verifier key (`name+hexid+base64key`).
    pub verifier_key: String,
    /// The signed checkpoint text, exactly as the log served it.
    pub checkpoint: String,
    /// The entries, each with its proof against `checkpoint`.
    pub entries: Vec<BundleEntry>,
}

/// One entry of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    /// The entry's index in the log.
    pub index: u64,
    /// `SHA-256(0x00 || leaf)`, hex.
    pub leaf_hash: String,
    /// The exact leaf bytes, base64.
    pub leaf: String,
    /// The RFC 9162 inclusion proof against the checkpoint, hex hashes.
    pub inclusion_proof: Vec<String>,
}

/// What failed in a bundle. Entry errors carry the entry's position in the
/// file (from 0) and its log index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not a bundle file.
    #[error("not an evidence bundle: {0}")]
    Malformed(String),
    /// The key is not a verifier key.
    #[error("verifier key: {0}")]
    Key(String),
    /// The checkpoint's signature, text or origin does not verify.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// An entry failed.
    #[error("entry {position} (log index {index}): {reason}")]
    Entry {
        /// Position in `entries`.
        position: usize,
        /// The entry's log index.
        index: u64,
        /// What failed.
        reason: String,
    },
}

/// A bundle whose every part verified.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The verified checkpoint.
    pub checkpoint: SignedCheckpoint,
    /// The verifier key used.
    pub verifier_key: String,
    /// True when the key came from the caller rather than the bundle.
    pub pinned: bool,
    /// The entries, in file order: index, leaf hash, decoded leaf.
    pub entries: Vec<(u64, Hash, AnyLeaf)>,
}

impl Bundle {
    /// Builds a bundle from verified parts.
    pub fn new(
        description: String,
        created_at: String,
        verifier_key: String,
        checkpoint: &SignedCheckpoint,
        entries: impl IntoIterator<Item = (u64, Vec<u8>, Vec<Hash>)>,
    ) -> Self {
        Bundle {
            format: BUNDLE_FORMAT.into(),
            description,
            created_at,
            verifier_key,
            checkpoint: checkpoint.raw.clone(),
            entries: entries
                .into_iter()
                .map(|(index, leaf, proof)| BundleEntry {
                    index,
                    leaf_hash: crate::leaf_hash(&leaf).to_hex(),
                    leaf: B64.encode(&leaf),
                    inclusion_proof: proof.iter().map(Hash::to_hex).collect(),
                })
                .collect(),
        }
    }

    /// Parses a bundle file.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::Malformed(format!(
                "{} bytes is more than the {MAX_BUNDLE_BYTES} accepted",
                bytes.len()
            )));
        }
        let b: Bundle =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Malformed(e.to_string()))?;
        if b.format != BUNDLE_FORMAT {
            return Err(BundleError::Malformed(format!(
                "format {:?}; this tool reads {BUNDLE_FORMAT:?}",
                b.format
            )));
        }
        Ok(b)
    }

    /// The bundle as pretty JSON.
    pub fn to_json(&self) -> String {
        // Plain structs of strings and numbers always serialize.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Verifies everything in the bundle. With `pinned`, the checkpoint
    /// must be signed by that key, whatever key the bundle names; without
    /// it, by the bundle's own key (which proves only that the bundle is
    /// internally consistent, not who signed it).
    pub fn verify(&self, pinned: Option<&str>) -> Result<VerifiedBundle, BundleError> {
        let key_text = pinned.unwrap_or(&self.verifier_key).trim();
        let verifier =
            Verifier::from_vkey(key_text).map_err(|e| BundleError::Key(e.to_string()))?;
        let origin = verifier.name().to_owned();
        let checkpoint = checkpoint::open(
            self.checkpoint.as_bytes(),
            &Verifiers::new([verifier]),
            &origin,
        )
        .map_err(|e| {
            BundleError::Checkpoint(format!(
                "{e} (the signed checkpoint does not verify with key {key_text})"
            ))
        })?;
        let (size, root) = (checkpoint.checkpoint.size, checkpoint.checkpoint.root);
        let mut entries = Vec::with_capacity(self.entries.len());
        let mut seen = std::collections::HashSet::new();
        for (position, e) in self.entries.iter().enumerate() {
            let fail = |reason: String| BundleError::Entry {
                position,
                index: e.index,
                reason,
            };
            if !seen.insert(e.index) {
                return Err(fail("the index appears twice in the bundle".into()));
            }
            let leaf = B64
                .decode(&e.leaf)
                .map_err(|err| fail(format!("leaf is not base64: {err}")))?;
            let claimed =
                Hash::from_hex(&e.leaf_hash).map_err(|err| fail(format!("leaf_hash: {err}")))?;
            let hash = crate::leaf_hash(&leaf);
            if hash != claimed {
                return Err(fail(format!(
                    "the leaf bytes hash to {hash}, not to the recorded leaf_hash {claimed}: the leaf or its hash was altered"
                )));
            }
            let proof = e
                .inclusion_proof
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    Hash::from_hex(h).map_err(|err| fail(format!("inclusion_proof[{i}]: {err}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            verify_inclusion(e.index, size, &hash, &proof, &root).map_err(|err| {
                fail(format!(
                    "inclusion proof ({} hashes) does not lead to the root of the checkpoint at size {size}: {err}",
                    proof.len()
                ))
            })?;
            let decoded = decode_any(&leaf)
                .map_err(|err| fail(format!("the leaf does not decode: {err}")))?;
            entries.push((e.index, hash, decoded));
        }
        Ok(VerifiedBundle {
            checkpoint,
            verifier_key: key_text.to_owned(),
            pinned: pinned.is_some(),
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::event::{Action, Artifact, ArtifactEvent, Digest, Interface, Timestamp};
    use crate::leaf::{Leaf, Submitter};
    use crate::merkle::reference;
    use crate::note::Signer;

    fn leaf(i: u64) -> Vec<u8> {
        Leaf {
            version: crate::leaf::LEAF_VERSION,
            event: ArtifactEvent {
                event_id: format!("e{i}"),
                source: "s".into(),
                action: Action::Register,
                artifact: Artifact {
                    name: "team/m".into(),
                    version: format!("1.0.{i}"),
                    digests: vec![Digest {
                        algorithm: "sha256".into(),
                        hex: format!("{:064x}", i),
                    }],
                    media_type: String::new(),
                    uri: String::new(),
                },
                actor: "a".into(),
                interface: Interface::Cli,
                environment: String::new(),
                client_time: None,
                provenance: None,
                justification: String::new(),
                ticket: String::new(),
                attestations: vec![],
            },
            submitter: Submitter {
                principal: "p".into(),
                auth_method: "none".into(),
                peer: "127.0.0.1:1".into(),
            },
            integrated_at: Timestamp {
                seconds: 1,
                nanos: 0,
            },
            verified_signers: vec![],
        }
        .encode()
    }

    /// A 7-leaf log, a signed checkpoint, and a bundle of entries 1, 4, 6.
    fn sample() -> (Bundle, Signer) {
        let signer = Signer::from_seed("example.com/log", &[7; 32]).expect("signer");
        let leaves: Vec<Vec<u8>> = (0..7).map(leaf).collect();
        let hashes: Vec<Hash> = leaves.iter().map(|l| crate::leaf_hash(l)).collect();
        let root = reference::root(&hashes);
        let note = Checkpoint::new("example.com/log", 7, root)
            .sign(&signer)
            .expect("sign");
        let vkey = signer.verifier().to_vkey();
        let cp = checkpoint::open(
            note.as_bytes(),
            &Verifiers::new([signer.verifier()]),
            "example.com/log",
        )
        .expect("open");
        let entries = [1u64, 4, 6].map(|i| {
            (
                i,
                leaves[i as usize].clone(),
                reference::inclusion_path(i as usize, &hashes).expect("in range"),
            )
        });
        (
            Bundle::new("test".into(), String::new(), vkey, &cp, entries),
            signer,
        )
    }

    #[test]
    fn a_good_bundle_verifies_and_round_trips() {
        let (b, signer) = sample();
        let v = b
            .verify(Some(&signer.verifier().to_vkey()))
            .expect("verifies");
        assert_eq!(v.entries.len(), 3);
        assert_eq!(v.checkpoint.checkpoint.size, 7);
        let again = Bundle::parse(b.to_json().as_bytes()).expect("parse");
        assert_eq!(again, b);
        assert!(again.verify(None).is_ok());
    }

    #[test]
    fn another_key_fails() {
        let (b, _) = sample();
        let other = Signer::from_seed("example.com/log", &[8; 32]).expect("signer");
        let e = b
            .verify(Some(&other.verifier().to_vkey()))
            .expect_err("wrong key");
        assert!(matches!(e, BundleError::Checkpoint(_)), "{e}");
    }

    fn flip_b64(text: &str, byte: usize) -> String {
        let mut raw = B64.decode(text).expect("b64");
        let n = raw.len();
        raw[byte % n] ^= 0x01;
        B64.encode(raw)
    }

    fn flip_hex(text: &str, byte: usize) -> String {
        let mut h = Hash::from_hex(text).expect("hex");
        h.0[byte % 32] ^= 0x80;
        h.to_hex()
    }

    #[test]
    fn every_leaf_byte_is_protected() {
        let (b, signer) = sample();
        let vkey = signer.verifier().to_vkey();
        for pos in 0..b.entries.len() {
            let len = B64.decode(&b.entries[pos].leaf).expect("b64").len();
            for byte in 0..len {
                let mut t = b.clone();
                t.entries[pos].leaf = flip_b64(&t.entries[pos].leaf, byte);
                match t.verify(Some(&vkey)) {
                    Err(BundleError::Entry { position, .. }) => assert_eq!(position, pos),
                    other => panic!("leaf {pos} byte {byte}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn every_proof_hash_and_leaf_hash_is_protected() {
        let (b, signer) = sample();
        let vkey = signer.verifier().to_vkey();
        for pos in 0..b.entries.len() {
            for i in 0..b.entries[pos].inclusion_proof.len() {
                for byte in [0, 13, 31] {
                    let mut t = b.clone();
                    t.entries[pos].inclusion_proof[i] =
                        flip_hex(&t.entries[pos].inclusion_proof[i], byte);
                    let e = t.verify(Some(&vkey)).expect_err("tampered proof");
                    assert!(
                        matches!(&e, BundleError::Entry { position, reason, .. }
                            if *position == pos && reason.contains("inclusion proof")),
                        "{e}"
                    );
                }
            }
            let mut t = b.clone();
            t.entries[pos].leaf_hash = flip_hex(&t.entries[pos].leaf_hash, 5);
            assert!(matches!(
                t.verify(Some(&vkey)),
                Err(BundleError::Entry { .. })
            ));
            let mut t = b.clone();
            t.entries[pos].index += 1;
            assert!(t.verify(Some(&vkey)).is_err(), "moved index");
        }
    }

    #[test]
    fn every_checkpoint_byte_is_protected() {
        let (b, signer) = sample();
        let vkey = signer.verifier().to_vkey();
        let bytes = b.checkpoint.as_bytes().to_vec();
        for i in 0..bytes.len() {
            let mut t = b.clone();
            let mut raw = bytes.clone();
            raw[i] ^= 0x01;
            match String::from_utf8(raw) {
                Ok(s) => t.checkpoint = s,
                Err(_) => continue,
            }
            let e = t.verify(Some(&vkey)).expect_err("tampered checkpoint");
            assert!(matches!(e, BundleError::Checkpoint(_)), "byte {i}: {e}");
        }
    }

    #[test]
    fn malformed_files_are_refused() {
        assert!(matches!(
            Bundle::parse(b"{}"),
            Err(BundleError::Malformed(_))
        ));
        let (b, _) = sample();
        let mut t = b.clone();
        t.format = "other/v9".into();
        assert!(Bundle::parse(t.to_json().as_bytes()).is_err());
        let mut t = b;
        t.entries[1].inclusion_proof[0] = "zz".into();
        let e = t.verify(None).expect_err("bad hex");
        assert!(e.to_string().contains("inclusion_proof[0]"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(b) = Bundle::parse(&bytes) {
                let _ = b.verify(None);
            }
        }

        #[test]
        fn any_flipped_byte_in_the_file_fails_or_changes_nothing_signed(pos in 0usize..4000, bit in 0u8..8) {
            let (b, signer) = sample();
            let vkey = signer.verifier().to_vkey();
            let mut raw = b.to_json().into_bytes();
            let pos = pos % raw.len();
            raw[pos] ^= 1 << bit;
            if let Ok(t) = Bundle::parse(&raw) {
                // Only the unsigned labels, and the bundle's own key (we
                // pin ours), may change without failing verification.
                let same_signed = t.checkpoint == b.checkpoint
                    && t.entries.iter().zip(&b.entries).all(|(x, y)| {
                        x.index == y.index
                            && B64.decode(&x.leaf).ok() == B64.decode(&y.leaf).ok()
                            && Hash::from_hex(&x.leaf_hash).ok() == Hash::from_hex(&y.leaf_hash).ok()
                            && x.inclusion_proof.iter().map(|h| Hash::from_hex(h).ok()).eq(y.inclusion_proof.iter().map(|h| Hash::from_hex(h).ok()))
                    })
                    && t.entries.len() == b.entries.len();
                if !same_signed {
                    proptest::prop_assert!(t.verify(Some(&vkey)).is_err());
                }
            }
        }
    }
}
