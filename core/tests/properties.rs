//! Property tests: storage-backed proofs equal the RFC's recursive
//! definitions and verify; any flipped bit fails; parsers never panic;
//! signatures round-trip and detect any change.

use std::sync::OnceLock;

use proptest::option;
use proptest::prelude::*;
use tlog_core::checkpoint::{self, Checkpoint};
use tlog_core::event::{
    Action, Artifact, ArtifactEvent, Attestation, Digest, Interface, Timestamp,
};
use tlog_core::leaf::{Leaf, Submitter};
use tlog_core::merkle::cache::TileCache;
use tlog_core::merkle::prove::Prover;
use tlog_core::merkle::reference;
use tlog_core::merkle::store::MemoryStore;
use tlog_core::merkle::tree::Tree;
use tlog_core::merkle::verify::{
    InclusionVerifier, parse_proof, verify_consistency, verify_inclusion,
};
use tlog_core::note::{self, Signer, Verifier, Verifiers};
use tlog_core::{Hash, leaf_hash};

const MAX: u64 = 4_100;

/// One tree of MAX leaves; proofs for every smaller size come from the same
/// store, as a log serves proofs for past sizes.
fn fixture() -> &'static (MemoryStore, Vec<Hash>) {
    static F: OnceLock<(MemoryStore, Vec<Hash>)> = OnceLock::new();
    F.get_or_init(|| {
        let mut tree = Tree::new();
        let mut store = MemoryStore::new();
        let mut out = Vec::new();
        let leaves: Vec<Hash> = (0..MAX).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        for h in &leaves {
            tree.append(*h, &mut out);
        }
        store.write(&out).expect("dense");
        (store, leaves)
    })
}

/// A small shared cache, so cases hit, miss and evict.
fn cache() -> &'static TileCache {
    static C: OnceLock<TileCache> = OnceLock::new();
    C.get_or_init(|| TileCache::new(8))
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut b = h.0;
    b[bit / 8 % 32] ^= 1 << (bit % 8);
    Hash(b)
}

fn arb_event() -> impl Strategy<Value = ArtifactEvent> {
    (
        (
            "\\PC{0,20}",
            "\\PC{0,20}",
            0usize..11,
            "\\PC{0,30}",
            "\\PC{0,10}",
        ),
        (
            proptest::collection::vec(("[a-z0-9]{0,8}", "[0-9a-f]{0,64}"), 0..3),
            any::<bool>(),
        ),
        (
            option::of((any::<i64>(), 0u32..1_000_000_000)),
            0usize..7,
            "\\PC{0,10}",
        ),
        proptest::collection::vec(
            (
                "[a-z]{0,6}",
                "\\PC{0,8}",
                proptest::collection::vec(any::<u8>(), 0..70),
            ),
            0..2,
        ),
    )
        .prop_map(
            |((id, source, action, name, version), (digests, _), (t, iface, env), atts)| {
                ArtifactEvent {
                    event_id: id,
                    source,
                    action: Action::ALL[action],
                    artifact: Artifact {
                        name,
                        version,
                        digests: digests
                            .into_iter()
                            .map(|(algorithm, hex)| Digest { algorithm, hex })
                            .collect(),
                        media_type: String::new(),
                        uri: String::new(),
                    },
                    actor: "a".into(),
                    interface: Interface::from_code(iface as i64).expect("code"),
                    environment: env,
                    client_time: t.map(|(seconds, nanos)| Timestamp { seconds, nanos }),
                    provenance: None,
                    justification: String::new(),
                    ticket: String::new(),
                    attestations: atts
                        .into_iter()
                        .map(|(scheme, key_id, signature)| Attestation {
                            scheme,
                            key_id,
                            signature,
                        })
                        .collect(),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn leaf_encoding_round_trips(event in arb_event(), principal in "\\PC{0,20}", secs in any::<i64>()) {
        let leaf = Leaf {
            version: if secs % 2 == 0 { 1 } else { tlog_core::leaf::LEAF_VERSION },
            event,
            submitter: Submitter { principal, auth_method: "mtls".into(), peer: "p".into() },
            integrated_at: Timestamp { seconds: secs, nanos: 7 },
            verified_signers: if secs % 2 == 0 { vec![] } else { vec!["a".into(), "b".into()] },
        };
        let bytes = leaf.encode();
        if leaf.version == tlog_core::leaf::LEAF_VERSION {
            prop_assert_eq!(
                Leaf::encoded_len(leaf.event.encode().len(), &leaf.submitter, &leaf.verified_signers),
                bytes.len()
            );
        }
        let back = Leaf::decode(&bytes).expect("decodes");
        prop_assert_eq!(back.encode(), bytes);
        prop_assert_eq!(back, leaf);
    }

    #[test]
    fn leaf_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(l) = Leaf::decode(&bytes) {
            prop_assert_eq!(l.encode(), bytes.clone());
        }
        match tlog_core::leaf::decode_any(&bytes) {
            Ok(tlog_core::leaf::AnyLeaf::Access(a)) => prop_assert_eq!(a.encode(), bytes),
            Ok(tlog_core::leaf::AnyLeaf::Event(l)) => prop_assert_eq!(l.encode(), bytes),
            Err(_) => {}
        }
    }

    #[test]
    fn access_leaves_round_trip(
        fields in proptest::collection::vec("\\PC{0,12}", 10),
        lists in proptest::collection::vec(proptest::collection::vec("\\PC{0,8}", 0..3), 3),
    ) {
        let a = tlog_core::leaf::AccessLeaf {
            time: fields[0].clone(), principal: fields[1].clone(), auth_method: fields[2].clone(),
            issuer: fields[3].clone(), peer: fields[4].clone(), method: fields[5].clone(),
            actions: lists[0].clone(), resources: lists[1].clone(), decision: fields[6].clone(),
            policies: lists[2].clone(), justification: fields[7].clone(), status: fields[8].clone(),
            reason: fields[9].clone(),
        };
        let bytes = a.encode();
        prop_assert_eq!(tlog_core::leaf::AccessLeaf::decode(&bytes).expect("decodes"), a);
    }

    #[test]
    fn leaf_decoder_never_panics_on_mutated_leaves(
        event in arb_event(), pos in any::<usize>(), byte in any::<u8>(),
    ) {
        let leaf = Leaf {
            version: tlog_core::leaf::LEAF_VERSION,
            event,
            submitter: Submitter::default(),
            integrated_at: Timestamp::default(),
            verified_signers: vec!["s".into()],
        };
        let mut bytes = leaf.encode();
        let i = pos % bytes.len();
        bytes[i] = byte;
        if let Ok(l) = Leaf::decode(&bytes) {
            prop_assert_eq!(l.encode(), bytes);
        }
    }

    #[test]
    fn inclusion_proofs_match_rfc_and_detect_flips(
        size in 1..=MAX, index_seed in any::<u64>(), bit in any::<usize>(), target in 0usize..3,
    ) {
        let (store, leaves) = fixture();
        let index = index_seed % size;
        let d = &leaves[..size as usize];
        let proof = Prover::new(store).inclusion_proof(index, size).expect("proof");
        prop_assert_eq!(&proof, &reference::inclusion_path(index as usize, d).expect("in range"));
        // Through the shared tile cache (warm from earlier cases): the same.
        let cached = Prover::with_cache(store, cache()).inclusion_proof(index, size).expect("proof");
        prop_assert_eq!(&cached, &proof);
        let root = reference::root(d);
        prop_assert_eq!(Prover::new(store).root_at(size).expect("root"), root);
        let leaf = leaves[index as usize];
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_ok());

        // Flip one bit of the leaf, of one proof element, or of the root.
        let mut p = proof.clone();
        let (l, r) = match target {
            0 => (flip(&leaf, bit), root),
            1 if !p.is_empty() => {
                let i = bit / 256 % p.len();
                p[i] = flip(&p[i], bit);
                (leaf, root)
            }
            _ => (leaf, flip(&root, bit)),
        };
        prop_assert!(verify_inclusion(index, size, &l, &p, &r).is_err());
        // A wrong index or size fails too.
        if size > 1 {
            prop_assert!(verify_inclusion((index + 1) % size, size, &leaf, &proof, &root).is_err());
        }
    }

    /// Proofs for many leaves at once (a run of neighbours, as a batch of
    /// appends, and scattered ones) equal the proofs made one by one.
    #[test]
    fn proofs_made_together_equal_proofs_made_alone(
        size in 1..=MAX, start in any::<u64>(), run in 1u64..64,
        scattered in proptest::collection::vec(any::<u64>(), 0..6),
    ) {
        let (store, _) = fixture();
        let first = start % size;
        let mut indexes: Vec<u64> = (first..size.min(first + run)).collect();
        indexes.extend(scattered.iter().map(|x| x % size));
        for prover in [Prover::new(store), Prover::with_cache(store, cache())] {
            let together = prover.inclusion_proofs(&indexes, size).expect("proofs");
            prop_assert_eq!(together.len(), indexes.len());
            for (i, proof) in indexes.iter().zip(&together) {
                prop_assert_eq!(proof, &prover.inclusion_proof(*i, size).expect("proof"));
            }
        }
        let mut beyond = indexes.clone();
        beyond.push(size);
        prop_assert!(Prover::new(store).inclusion_proofs(&beyond, size).is_err());
    }

    /// One sharing verifier over a run of proofs (near and far indexes,
    /// some with a flipped bit, a wrong leaf or a wrong index): every
    /// answer equals `verify_inclusion`'s, so the sharing never lets a
    /// wrong proof through nor refuses a right one.
    #[test]
    fn the_sharing_verifier_answers_like_verify_inclusion(
        size in 1..=MAX,
        calls in proptest::collection::vec((any::<u64>(), 0usize..6, any::<usize>()), 1..40),
    ) {
        let (store, leaves) = fixture();
        let root = reference::root(&leaves[..size as usize]);
        let prover = Prover::with_cache(store, cache());
        let mut v = InclusionVerifier::new(size, root);
        let mut index = 0u64;
        for (seed, what, bit) in calls {
            // Mostly the next leaf (as a batch of appends), sometimes a jump.
            index = if seed % 3 == 0 { seed % size } else { (index + 1) % size };
            let proof = prover.inclusion_proof(index, size).expect("proof");
            let mut leaf = leaves[index as usize];
            let mut p = proof.clone();
            let mut at = index;
            match what {
                0 => leaf = flip(&leaf, bit),
                1 if !p.is_empty() => {
                    let i = bit / 256 % p.len();
                    p[i] = flip(&p[i], bit);
                }
                2 if size > 1 => at = (index + 1 + bit as u64 % (size - 1)) % size,
                3 => at = index + size,
                _ => {}
            }
            let want = verify_inclusion(at, size, &leaf, &p, &root);
            prop_assert_eq!(v.verify(at, &leaf, &p), want.clone());
            if what < 4 && !(what == 1 && p.is_empty()) && !(what == 2 && size == 1) {
                prop_assert!(want.is_err());
            }
        }
    }

    #[test]
    fn consistency_proofs_match_rfc_and_detect_flips(
        size2 in 1..=MAX, seed in any::<u64>(), bit in any::<usize>(), target in 0usize..3,
    ) {
        let (store, leaves) = fixture();
        let size1 = 1 + seed % size2;
        let prover = Prover::new(store);
        let proof = prover.consistency_proof(size1, size2).expect("proof");
        let cached = Prover::with_cache(store, cache()).consistency_proof(size1, size2).expect("proof");
        prop_assert_eq!(&cached, &proof);
        let root1 = reference::root(&leaves[..size1 as usize]);
        let root2 = reference::root(&leaves[..size2 as usize]);
        if size1 < size2 {
            let want = reference::consistency_proof(size1 as usize, &leaves[..size2 as usize]);
            prop_assert_eq!(&proof, &want.expect("in range"));
        } else {
            prop_assert!(proof.is_empty());
        }
        prop_assert!(verify_consistency(size1, size2, &proof, &root1, &root2).is_ok());
        let mut p = proof.clone();
        let (a, b) = match target {
            0 => (flip(&root1, bit), root2),
            1 if !p.is_empty() => {
                let i = bit / 256 % p.len();
                p[i] = flip(&p[i], bit);
                (root1, root2)
            }
            _ => (root1, flip(&root2, bit)),
        };
        prop_assert!(verify_consistency(size1, size2, &p, &a, &b).is_err());
    }

    #[test]
    fn note_open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let s = Signer::from_seed("k", &[5; 32]).expect("ok");
        let _ = note::open(&bytes, &Verifiers::new([s.verifier()]));
    }

    #[test]
    fn note_open_never_panics_on_note_like_text(
        text in "[a-z\n]{0,40}", sig in "(\u{2014} [a-zA-Z+ ]{0,8} [A-Za-z0-9+/=]{0,100}\n){0,3}",
    ) {
        let s = Signer::from_seed("k", &[5; 32]).expect("ok");
        let msg = format!("{text}\n{sig}");
        let _ = note::open(msg.as_bytes(), &Verifiers::new([s.verifier()]));
    }

    #[test]
    fn key_and_checkpoint_parsers_never_panic(text in "\\PC{0,120}") {
        let _ = Verifier::from_vkey(&text);
        let _ = Signer::from_skey(&text);
        let _ = Checkpoint::parse(&text);
        let _ = Hash::from_base64(&text);
        let _ = Hash::from_hex(&text);
    }

    #[test]
    fn checkpoint_parser_never_panics_on_checkpoint_like_text(
        text in "[a-z./]{0,12}\n[0-9]{0,22}\n[A-Za-z0-9+/=]{0,48}\n([ -~]{0,10}\n){0,2}",
    ) {
        if let Ok(c) = Checkpoint::parse(&text) {
            // Whatever parses re-encodes to exactly the same text.
            prop_assert_eq!(c.to_text(), text);
        }
    }

    #[test]
    fn proof_parser_never_panics(elems in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..40), 0..70)) {
        if let Ok(p) = parse_proof(&elems) {
            prop_assert!(p.len() <= 64);
        }
    }

    /// Any sizes, indexes and proof lengths (a hostile log controls all
    /// three): the verifiers answer, never panic. Sizes beyond 2^63 once
    /// overflowed a shift (found by cargo-fuzz).
    #[test]
    fn verifiers_never_panic(a in any::<u64>(), b in any::<u64>(), len in 0usize..70) {
        let h = tlog_core::leaf_hash(b"x");
        let proof = vec![h; len];
        let _ = tlog_core::merkle::verify::verify_inclusion(a, b, &h, &proof, &h);
        let _ = tlog_core::merkle::verify::verify_consistency(a, b, &proof, &h, &h);
    }

    #[test]
    fn sign_then_open_round_trips(text in "([ -~]{1,30}\n){1,5}", seed in any::<[u8; 32]>()) {
        let s = Signer::from_seed("example.com/log", &seed).expect("ok");
        let signed = note::sign(&text, &[&s]).expect("sign");
        let opened = note::open(signed.as_bytes(), &Verifiers::new([s.verifier()])).expect("open");
        prop_assert_eq!(opened.text, text);
    }

    #[test]
    fn any_change_to_a_signed_checkpoint_fails(
        size in any::<u64>(), root in any::<[u8; 32]>(), pos in any::<usize>(), byte in 0x20u8..0x7f,
    ) {
        let s = Signer::from_seed("example.com/log", &[11; 32]).expect("ok");
        let vs = Verifiers::new([s.verifier()]);
        let c = Checkpoint::new("example.com/log", size, Hash(root));
        let signed = c.sign(&s).expect("sign");
        let opened = checkpoint::open(signed.as_bytes(), &vs, "example.com/log").expect("open");
        prop_assert_eq!(&opened.checkpoint, &c);
        // Change one byte of the checkpoint text (never its final newline).
        let text = c.to_text();
        let i = pos % (text.len() - 1);
        let mut bytes = text.into_bytes();
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let mut changed = bytes;
        changed.extend_from_slice(&signed.as_bytes()[c.to_text().len()..]);
        prop_assert!(checkpoint::open(&changed, &vs, "example.com/log").is_err());
    }
}

#[test]
fn every_single_bit_flip_fails_for_a_sample_proof() {
    let (store, leaves) = fixture();
    let (index, size) = (1234u64, 3001u64);
    let proof = Prover::new(store)
        .inclusion_proof(index, size)
        .expect("proof");
    let root = reference::root(&leaves[..size as usize]);
    let leaf = leaves[index as usize];
    for bit in 0..256 {
        assert!(verify_inclusion(index, size, &flip(&leaf, bit), &proof, &root).is_err());
        assert!(verify_inclusion(index, size, &leaf, &proof, &flip(&root, bit)).is_err());
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i] = flip(&p[i], bit);
            assert!(verify_inclusion(index, size, &leaf, &p, &root).is_err());
        }
    }
}
