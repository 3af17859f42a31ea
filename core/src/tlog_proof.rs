//! Offline proofs that an entry is in a log: the `c2sp.org/tlog-proof@v1`
//! text format (<https://c2sp.org/tlog-proof>, the copy in
//! `docs/specs/tlog-proof.md`): an optional `extra` line, the entry's
//! index, its RFC 6962 inclusion proof one base64 hash per line, an empty
//! line, and the signed checkpoint verbatim.
//!
//! This log puts the entry's leaf bytes in `extra`, so that a proof alone
//! says what was logged; the spec calls extra data unauthenticated, and it
//! is: [`TlogProof::verify`] binds it only through the leaf hash it
//! computes from it and the inclusion proof to the signed root.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::Hash;
use crate::checkpoint::{self, CheckpointError, SignedCheckpoint};
use crate::merkle::verify::{VerifyError, verify_inclusion};
use crate::note::Verifiers;

/// The first line of every proof (c2sp.org/tlog-proof, "Format").
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// One proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// The `extra` line's data (here: the entry's leaf bytes), if any.
    pub extra: Option<Vec<u8>>,
    /// The entry's index.
    pub index: u64,
    /// The inclusion proof, from the leaf's sibling up.
    pub proof: Vec<Hash>,
    /// The signed checkpoint (a signed note), verbatim.
    pub checkpoint: String,
}

/// Why a proof does not parse or verify.
#[derive(Debug, thiserror::Error)]
pub enum TlogProofError {
    /// Not in the format; says which line.
    #[error("not a c2sp.org/tlog-proof@v1 proof: line {line}: {what}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong there.
        what: &'static str,
    },
    /// The checkpoint does not open with the known keys for the origin.
    #[error("the proof's checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The inclusion proof does not bind the leaf to the checkpoint.
    #[error("the inclusion proof: {0}")]
    Inclusion(#[from] VerifyError),
    /// There is no leaf to check (no `extra` line, and none given).
    #[error("the proof carries no entry (no extra line) and none was given")]
    NoLeaf,
}

fn malformed(line: usize, what: &'static str) -> TlogProofError {
    TlogProofError::Malformed { line, what }
}

/// The proof's lines, one at a time, counted.
struct Lines<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> Lines<'a> {
    fn next(&mut self) -> Result<&'a str, TlogProofError> {
        self.line += 1;
        let (line, after) = self
            .rest
            .split_once('\n')
            .ok_or(malformed(self.line, "ends before the checkpoint"))?;
        self.rest = after;
        Ok(line)
    }
}

impl TlogProof {
    /// The proof as text, ending with the checkpoint's own final newline.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(128 + self.proof.len() * 45 + self.checkpoint.len());
        s.push_str(HEADER);
        s.push('\n');
        if let Some(extra) = &self.extra {
            s.push_str("extra ");
            s.push_str(&STANDARD.encode(extra));
            s.push('\n');
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&STANDARD.encode(h.as_bytes()));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses a proof strictly (the checkpoint is kept verbatim and
    /// checked by [`TlogProof::verify`]).
    pub fn parse(text: &str) -> Result<TlogProof, TlogProofError> {
        let mut c = Lines {
            rest: text,
            line: 0,
        };
        if c.next()? != HEADER {
            return Err(malformed(
                1,
                "the first line must be c2sp.org/tlog-proof@v1",
            ));
        }
        let mut line = c.next()?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(
                STANDARD
                    .decode(b64)
                    .map_err(|_| malformed(c.line, "extra is not standard base64"))?,
            );
            line = c.next()?;
        }
        let n = line
            .strip_prefix("index ")
            .ok_or(malformed(c.line, "expected `index N`"))?;
        if n.is_empty()
            || !n.bytes().all(|b| b.is_ascii_digit())
            || (n.len() > 1 && n.starts_with('0'))
        {
            return Err(malformed(
                c.line,
                "the index must be a decimal with no leading zeros",
            ));
        }
        let index: u64 = n
            .parse()
            .map_err(|_| malformed(c.line, "the index does not fit 64 bits"))?;
        let mut proof = Vec::new();
        loop {
            let l = c.next()?;
            if l.is_empty() {
                break;
            }
            let h = Hash::from_base64(l).map_err(|_| {
                malformed(c.line, "a proof hash is not 32 bytes of standard base64")
            })?;
            if proof.len() == 64 {
                return Err(malformed(c.line, "more than 64 proof hashes"));
            }
            proof.push(h);
        }
        if c.rest.is_empty() {
            return Err(malformed(c.line + 1, "no checkpoint after the empty line"));
        }
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: c.rest.to_owned(),
        })
    }

    /// Verifies the proof (c2sp.org/tlog-proof, "Verifying a tlog proof"):
    /// the checkpoint is signed by a key in `known` for `origin`, and the
    /// inclusion proof binds `leaf_hash` (computed from the leaf by the
    /// caller) at the proof's index to the checkpoint's root. Returns the
    /// opened checkpoint.
    pub fn verify(
        &self,
        leaf_hash: &Hash,
        known: &Verifiers,
        origin: &str,
    ) -> Result<SignedCheckpoint, TlogProofError> {
        let cp = checkpoint::open(self.checkpoint.as_bytes(), known, origin)?;
        verify_inclusion(
            self.index,
            cp.checkpoint.size,
            leaf_hash,
            &self.proof,
            &cp.checkpoint.root,
        )?;
        Ok(cp)
    }

    /// Verifies a proof that carries its entry in `extra`: the leaf hash is
    /// computed from those bytes (RFC 6962: SHA-256 of 0x00 and the leaf).
    /// Returns the checkpoint and the leaf bytes, now proven.
    pub fn verify_carried(
        &self,
        known: &Verifiers,
        origin: &str,
    ) -> Result<(SignedCheckpoint, &[u8]), TlogProofError> {
        let leaf = self.extra.as_deref().ok_or(TlogProofError::NoLeaf)?;
        let cp = self.verify(&crate::leaf_hash(leaf), known, origin)?;
        Ok((cp, leaf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::merkle::prove::Prover;
    use crate::merkle::store::MemoryStore;
    use crate::merkle::tree::Tree;
    use crate::note::Signer;
    use proptest::prelude::*;

    fn log(n: u64) -> (Vec<Vec<u8>>, MemoryStore, Tree, Signer) {
        let mut tree = Tree::new();
        let mut store = MemoryStore::new();
        let mut out = Vec::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let leaf = format!("leaf {i}").into_bytes();
            out.clear();
            tree.append(crate::leaf_hash(&leaf), &mut out);
            store.write(&out).expect("dense");
            leaves.push(leaf);
        }
        (
            leaves,
            store,
            tree,
            Signer::from_seed("proof.example/log", &[9; 32]).expect("signer"),
        )
    }

    fn proof_for(i: u64, n: u64) -> (TlogProof, Verifiers) {
        let (leaves, store, tree, signer) = log(n);
        let note = Checkpoint::new("proof.example/log", n, tree.root())
            .sign(&signer)
            .expect("sign");
        let proof = Prover::new(&store).inclusion_proof(i, n).expect("prove");
        (
            TlogProof {
                extra: Some(leaves[i as usize].clone()),
                index: i,
                proof,
                checkpoint: note,
            },
            Verifiers::new([signer.verifier()]),
        )
    }

    #[test]
    fn a_proof_round_trips_and_verifies_offline() {
        let (p, keys) = proof_for(5, 13);
        let text = p.to_text();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
        assert!(text.contains("\nindex 5\n"));
        let back = TlogProof::parse(&text).expect("parses");
        assert_eq!(back, p);
        let (cp, leaf) = back
            .verify_carried(&keys, "proof.example/log")
            .expect("verifies");
        assert_eq!(cp.checkpoint.size, 13);
        assert_eq!(leaf, b"leaf 5");
        // Another entry's bytes, another origin, another key: refused.
        let mut other = back.clone();
        other.extra = Some(b"leaf 6".to_vec());
        assert!(matches!(
            other.verify_carried(&keys, "proof.example/log"),
            Err(TlogProofError::Inclusion(_))
        ));
        assert!(matches!(
            back.verify_carried(&keys, "elsewhere/log"),
            Err(TlogProofError::Checkpoint(_))
        ));
        let stranger = Verifiers::new([Signer::from_seed("proof.example/log", &[1; 32])
            .expect("s")
            .verifier()]);
        assert!(back.verify_carried(&stranger, "proof.example/log").is_err());
    }

    #[test]
    fn the_specs_shape_without_extra_and_with_an_empty_proof() {
        let (mut p, keys) = proof_for(0, 1);
        p.extra = None;
        let text = p.to_text();
        assert!(
            text.starts_with("c2sp.org/tlog-proof@v1\nindex 0\n\n"),
            "{text}"
        );
        let back = TlogProof::parse(&text).expect("parses");
        assert!(back.proof.is_empty());
        back.verify(&crate::leaf_hash(b"leaf 0"), &keys, "proof.example/log")
            .expect("verifies");
        assert!(matches!(
            back.verify_carried(&keys, "proof.example/log"),
            Err(TlogProofError::NoLeaf)
        ));
    }

    #[test]
    fn malformed_proofs_name_the_line() {
        let (p, _) = proof_for(3, 9);
        let good = p.to_text();
        for (bad, line) in [
            (good.replacen("tlog-proof@v1", "tlog-proof@v2", 1), 1),
            (good.replacen("index 3", "index 03", 1), 3),
            (good.replacen("index 3", "index x", 1), 3),
            (good.replacen("\nextra ", "\nextra !", 1), 2),
            ("c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\nx\n".to_owned(), 3),
            ("c2sp.org/tlog-proof@v1\nindex 1\n".to_owned(), 3),
            ("c2sp.org/tlog-proof@v1\nindex 1\n\n".to_owned(), 4),
        ] {
            match TlogProof::parse(&bad) {
                Err(TlogProofError::Malformed { line: l, .. }) => assert_eq!(l, line, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = TlogProof::parse(&s);
        }

        #[test]
        fn proofs_for_every_entry_verify(n in 1u64..80, pick in any::<u64>()) {
            let i = pick % n;
            let (p, keys) = proof_for(i, n);
            let back = TlogProof::parse(&p.to_text()).expect("parses");
            prop_assert!(back.verify_carried(&keys, "proof.example/log").is_ok());
        }
    }
}
