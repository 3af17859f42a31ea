//! Proof verification, RFC 9162 sections 2.1.3.2 and 2.1.4.2.
//!
//! Hashes are typed [`Hash`](struct@crate::Hash) values, so a proof element, leaf hash or root
//! that is not 32 bytes is rejected where it is parsed
//! ([`Hash::from_slice`]); [`parse_proof`] does that for a whole proof.
//!
//! # Size-0 decisions
//!
//! - Inclusion in a tree of size 0 is impossible: `index >= size` is an error.
//! - Consistency from size 0 is accepted with an empty proof, for any
//!   `size2`, as C2SP `tlog-witness` requires ("old size 0, empty proof"):
//!   every tree extends the empty tree. The old root must then be the empty
//!   tree's root, `SHA-256()`, the only root a tree of size 0 has; a
//!   non-empty proof is rejected. (transparency-dev's vectors reject size1=0
//!   outright; our tests name the cases where we differ.)
//! - `size1 == size2` needs an empty proof and equal roots.

use crate::hash::{Hash, HashError, empty_root, node_hash};

/// The longest proof any tree of at most `2^64 - 1` leaves has.
pub const MAX_PROOF_LEN: usize = 64;

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index given.
        index: u64,
        /// The size of the tree.
        size: u64,
    },
    /// The first size is larger than the second.
    #[error("size1 {size1} is larger than size2 {size2}")]
    SizesReversed {
        /// The older size.
        size1: u64,
        /// The newer size.
        size2: u64,
    },
    /// The proof has more elements than any proof for these sizes can have.
    #[error("proof has {len} hashes, more than the {max} that this tree can need")]
    ProofTooLong {
        /// The number of hashes in the proof.
        len: usize,
        /// The most this proof may have.
        max: usize,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has {len} hashes, but this proof needs {want}")]
    WrongProofLength {
        /// The number of hashes in the proof.
        len: usize,
        /// The number it needs.
        want: usize,
    },
    /// The proof's hashes did not combine into the expected root.
    #[error("calculated root {calculated} does not match expected root {expected}")]
    RootMismatch {
        /// What the proof produced.
        calculated: Hash,
        /// What was expected.
        expected: Hash,
    },
    /// For size 0, the root must be `SHA-256()`.
    #[error("a tree of size 0 has root {empty}, not {got}", empty = empty_root())]
    NotEmptyRoot {
        /// The root given for the empty tree.
        got: Hash,
    },
    /// A hash in the proof was not 32 bytes.
    #[error("proof element {position}: {source}")]
    BadElement {
        /// Position of the element in the proof.
        position: usize,
        /// What was wrong with it.
        source: HashError,
    },
}

/// Parses a proof given as raw byte strings, rejecting more than
/// [`MAX_PROOF_LEN`] elements and any element that is not 32 bytes.
pub fn parse_proof<B: AsRef<[u8]>>(elements: &[B]) -> Result<Vec<Hash>, VerifyError> {
    if elements.len() > MAX_PROOF_LEN {
        return Err(VerifyError::ProofTooLong {
            len: elements.len(),
            max: MAX_PROOF_LEN,
        });
    }
    elements
        .iter()
        .enumerate()
        .map(|(position, e)| {
            Hash::from_slice(e.as_ref())
                .map_err(|source| VerifyError::BadElement { position, source })
        })
        .collect()
}

/// Number of hashes in the inclusion proof of `index` in a tree of `size`.
fn inclusion_len(index: u64, size: u64) -> usize {
    // The inner part (below the point where the paths to `index` and to the
    // last leaf diverge) has one hash per level; the border part one hash
    // per set bit of `index` above that level.
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    // `inner` is 64 when the paths diverge at the top bit; a shift by 64
    // would overflow (fuzzing found it), and the border is then empty.
    let border = index.checked_shr(inner as u32).unwrap_or(0).count_ones() as usize;
    inner + border
}

/// Checks what RFC 9162 section 2.1.3.2 requires of an inclusion proof
/// before hashing: the index is inside the tree, and the proof has exactly
/// the length the index and size call for. Returns that length.
fn check_inclusion_shape(index: u64, size: u64, proof: &[Hash]) -> Result<usize, VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(VerifyError::ProofTooLong {
            len: proof.len(),
            max: MAX_PROOF_LEN,
        });
    }
    let want = inclusion_len(index, size);
    if proof.len() != want {
        return Err(VerifyError::WrongProofLength {
            len: proof.len(),
            want,
        });
    }
    Ok(want)
}

/// Computes the root that an inclusion proof leads to
/// (RFC 9162 section 2.1.3.2, steps 1-5, without the final comparison).
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
) -> Result<Hash, VerifyError> {
    let want = check_inclusion_shape(index, size, proof)?;
    // 2. Set fn to leaf_index and sn to tree_size - 1.
    let mut fnode = index;
    let mut snode = size - 1;
    // 3. Set r to hash.
    let mut r = *leaf_hash;
    // 4. For each value p in the inclusion_path array:
    for p in proof {
        // a. If sn is 0, stop the iteration and fail the proof verification.
        if snode == 0 {
            return Err(VerifyError::WrongProofLength {
                len: proof.len(),
                want,
            });
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fnode & 1 == 1 || fnode == snode {
            // i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, &r);
            // ii. If LSB(fn) is not set, then right-shift both fn and sn
            //     equally until either LSB(fn) is set or fn is 0.
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            // Otherwise: set r to HASH(0x01 || r || p).
            r = node_hash(&r, p);
        }
        // c. Finally, right-shift both fn and sn one time.
        fnode >>= 1;
        snode >>= 1;
    }
    // 5. Compare sn to 0.
    if snode != 0 {
        return Err(VerifyError::WrongProofLength {
            len: proof.len(),
            want,
        });
    }
    Ok(r)
}

/// Verifies that `leaf_hash` is the leaf at `index` in the tree of `size`
/// leaves whose root is `root` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    let calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)?;
    if calculated != *root {
        return Err(VerifyError::RootMismatch {
            calculated,
            expected: *root,
        });
    }
    Ok(())
}

/// One state of the RFC 9162 section 2.1.3.2 loop: `fn`, `sn` and `r`
/// after `used` proof elements.
#[derive(Debug, Clone, Copy)]
struct Step {
    fnode: u64,
    snode: u64,
    r: Hash,
    used: usize,
}

/// Verifies many inclusion proofs against one tree head, sharing the work
/// that proofs of nearby leaves have in common.
///
/// RFC 9162 section 2.1.3.2 is a deterministic loop over the state
/// (`fn`, `sn`, `r`) and the proof elements not yet used. The verifier
/// keeps every state of the last proof that verified. When a new proof
/// reaches a state equal to one of those, with the same elements left,
/// the rest of its loop is the same computation, so it verifies too: the
/// rest is compared (bytes), not hashed again. Proofs of neighbouring
/// leaves meet a few levels up, so a run of proofs over consecutive indexes
/// (a batch of appends, a page of entries) costs about two node hashes each
/// instead of `log2(size)`. The answer is always exactly what
/// [`verify_inclusion`] gives for the same proof.
#[derive(Debug, Clone)]
pub struct InclusionVerifier {
    size: u64,
    root: Hash,
    /// The states of the last proof that verified, in loop order.
    trace: Vec<Step>,
    /// That proof.
    proof: Vec<Hash>,
    /// Node hashes computed so far.
    hashes: u64,
}

impl InclusionVerifier {
    /// A verifier for proofs into the tree of `size` leaves with `root`.
    pub fn new(size: u64, root: Hash) -> Self {
        InclusionVerifier {
            size,
            root,
            trace: Vec::new(),
            proof: Vec::new(),
            hashes: 0,
        }
    }

    /// How many node hashes the verifier has computed so far: what the
    /// sharing saves shows here (a lone proof costs one per element).
    pub fn node_hashes(&self) -> u64 {
        self.hashes
    }

    /// The tree size proofs are checked against.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root proofs are checked against.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// Verifies that `leaf_hash` is the leaf at `index`
    /// (RFC 9162 section 2.1.3.2); the same answer as [`verify_inclusion`].
    pub fn verify(
        &mut self,
        index: u64,
        leaf_hash: &Hash,
        proof: &[Hash],
    ) -> Result<(), VerifyError> {
        let size = self.size;
        let want = check_inclusion_shape(index, size, proof)?;
        let wrong_length = VerifyError::WrongProofLength {
            len: proof.len(),
            want,
        };
        let mut trace = Vec::with_capacity(proof.len() + 1);
        let mut step = Step {
            fnode: index,
            snode: size - 1,
            r: *leaf_hash,
            used: 0,
        };
        // `sn` falls at every iteration, in both traces: one cursor walks
        // the last trace to the state with the current `sn`.
        let mut cursor = 0;
        loop {
            trace.push(step);
            while self.trace.get(cursor).is_some_and(|s| s.snode > step.snode) {
                cursor += 1;
            }
            if let Some(seen) = self.trace.get(cursor)
                && seen.snode == step.snode
                && seen.fnode == step.fnode
                && seen.r == step.r
                && self.proof.get(seen.used..) == proof.get(step.used..)
            {
                // The rest of this loop is the rest of one that verified.
                let shift = step.used;
                trace.extend(self.trace[cursor + 1..].iter().map(|s| Step {
                    used: s.used - seen.used + shift,
                    ..*s
                }));
                self.trace = trace;
                self.proof.clear();
                self.proof.extend_from_slice(proof);
                return Ok(());
            }
            let Some(p) = proof.get(step.used) else { break };
            if step.snode == 0 {
                return Err(wrong_length);
            }
            let (mut fnode, mut snode) = (step.fnode, step.snode);
            self.hashes += 1;
            let r = if fnode & 1 == 1 || fnode == snode {
                if fnode & 1 == 0 {
                    while fnode & 1 == 0 && fnode != 0 {
                        fnode >>= 1;
                        snode >>= 1;
                    }
                }
                node_hash(p, &step.r)
            } else {
                node_hash(&step.r, p)
            };
            step = Step {
                fnode: fnode >> 1,
                snode: snode >> 1,
                r,
                used: step.used + 1,
            };
        }
        if step.snode != 0 {
            return Err(wrong_length);
        }
        if step.r != self.root {
            return Err(VerifyError::RootMismatch {
                calculated: step.r,
                expected: self.root,
            });
        }
        self.trace = trace;
        self.proof.clear();
        self.proof.extend_from_slice(proof);
        Ok(())
    }
}

/// Verifies that the tree of `size2` leaves with root `root2` extends the
/// tree of `size1` leaves with root `root1` (RFC 9162 section 2.1.4.2).
/// See the module documentation for the size-0 rules.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), VerifyError> {
    if size1 > size2 {
        return Err(VerifyError::SizesReversed { size1, size2 });
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(VerifyError::ProofTooLong {
            len: proof.len(),
            max: MAX_PROOF_LEN,
        });
    }
    if size1 == 0 {
        if *root1 != empty_root() {
            return Err(VerifyError::NotEmptyRoot { got: *root1 });
        }
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofLength {
                len: proof.len(),
                want: 0,
            });
        }
        if size2 == 0 && *root2 != empty_root() {
            return Err(VerifyError::NotEmptyRoot { got: *root2 });
        }
        return Ok(());
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofLength {
                len: proof.len(),
                want: 0,
            });
        }
        if root1 != root2 {
            return Err(VerifyError::RootMismatch {
                calculated: *root1,
                expected: *root2,
            });
        }
        return Ok(());
    }
    // 1. If consistency_path is an empty array, stop and fail.
    if proof.is_empty() {
        return Err(VerifyError::WrongProofLength { len: 0, want: 1 });
    }
    let bad_len = || VerifyError::WrongProofLength {
        len: proof.len(),
        want: consistency_len(size1, size2),
    };
    // 2. If first is an exact power of 2, prepend first_hash to the path.
    let (mut fr, mut sr, rest) = if size1.is_power_of_two() {
        (*root1, *root1, proof)
    } else {
        (proof[0], proof[0], &proof[1..])
    };
    // 3. Set fn to first - 1 and sn to second - 1.
    let mut fnode = size1 - 1;
    let mut snode = size2 - 1;
    // 4. If LSB(fn) is set, right-shift both fn and sn until LSB(fn) is
    //    not set.
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // 5. Set both fr and sr to the first value in the consistency_path
    //    (done above). 6. For each subsequent value c in the path:
    for c in rest {
        // a. If sn is 0, stop the iteration and fail.
        if snode == 0 {
            return Err(bad_len());
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fnode & 1 == 1 || fnode == snode {
            // i. Set fr to HASH(0x01 || c || fr); set sr to HASH(0x01 || c || sr).
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            // ii. If LSB(fn) is not set, right-shift both fn and sn equally
            //     until either LSB(fn) is set or fn is 0.
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            // Otherwise: set sr to HASH(0x01 || sr || c).
            sr = node_hash(&sr, c);
        }
        // c. Finally, right-shift both fn and sn one time.
        fnode >>= 1;
        snode >>= 1;
    }
    // 7. Verify that fr equals first_hash, sr equals second_hash and sn is 0.
    if snode != 0 {
        return Err(bad_len());
    }
    if fr != *root1 {
        return Err(VerifyError::RootMismatch {
            calculated: fr,
            expected: *root1,
        });
    }
    if sr != *root2 {
        return Err(VerifyError::RootMismatch {
            calculated: sr,
            expected: *root2,
        });
    }
    Ok(())
}

/// Number of hashes in the consistency proof between `size1` and `size2`
/// for `0 < size1 < size2`.
fn consistency_len(size1: u64, size2: u64) -> usize {
    if size1 == 0 || size1 >= size2 {
        return 0;
    }
    // The level where the paths to the last leaves of both trees diverge.
    let inner = (64 - ((size1 - 1) ^ (size2 - 1)).leading_zeros()) as usize;
    // Levels at the bottom where size1 - 1 is a right child merge into the
    // first proof element.
    let shift = (size1 - 1).trailing_ones() as usize;
    let border = (size1 - 1)
        .checked_shr(inner as u32)
        .unwrap_or(0)
        .count_ones() as usize;
    // One hash per inner level above `shift`, plus the seed (unless size1 is
    // a power of two, when the old root itself is the seed), plus the border.
    let seed = usize::from(!size1.is_power_of_two());
    inner - shift.min(inner) + seed + border
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::merkle::reference;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn lengths_match_reference_proofs() {
        let d = leaves(70);
        for n in 1..=70usize {
            for m in 0..n {
                let p = reference::inclusion_path(m, &d[..n]).expect("in range");
                assert_eq!(inclusion_len(m as u64, n as u64), p.len(), "incl {m} {n}");
                if m > 0 {
                    let c = reference::consistency_proof(m, &d[..n]).expect("in range");
                    assert_eq!(consistency_len(m as u64, n as u64), c.len(), "cons {m} {n}");
                }
            }
        }
    }

    /// Every proof of every tree up to 70 leaves, in order, in reverse and
    /// with wrong ones between: the same answers as `verify_inclusion`,
    /// and a run over consecutive leaves costs about two hashes each.
    #[test]
    fn the_sharing_verifier_answers_like_verify_inclusion() {
        let d = leaves(70);
        for n in 1..=70usize {
            let root = reference::root(&d[..n]);
            let proofs: Vec<Vec<Hash>> = (0..n)
                .map(|m| reference::inclusion_path(m, &d[..n]).expect("in range"))
                .collect();
            let mut v = InclusionVerifier::new(n as u64, root);
            for m in 0..n {
                assert_eq!(v.verify(m as u64, &d[m], &proofs[m]), Ok(()), "{m} of {n}");
            }
            let logn = u64::from(usize::BITS - (n - 1).leading_zeros());
            assert!(
                v.node_hashes() <= 2 * n as u64 + logn,
                "{} hashes for {n} consecutive proofs",
                v.node_hashes()
            );
            for m in (0..n).rev() {
                let (i, leaf, proof) = (m as u64, &d[m], &proofs[m]);
                assert_eq!(v.verify(i, leaf, proof), Ok(()));
                // A wrong leaf, a changed element, a wrong index, the
                // neighbour's proof: each as verify_inclusion answers.
                let other = d[(m + 1) % n];
                assert_eq!(
                    v.verify(i, &other, proof),
                    verify_inclusion(i, n as u64, &other, proof, &root)
                );
                for k in (0..proof.len()).filter(|&k| proof[k] != other) {
                    let mut bad = proof.clone();
                    bad[k] = other;
                    assert_eq!(
                        v.verify(i, leaf, &bad),
                        verify_inclusion(i, n as u64, leaf, &bad, &root)
                    );
                    assert!(v.verify(i, leaf, &bad).is_err());
                }
                let j = (i + 1) % n as u64;
                assert_eq!(
                    v.verify(j, leaf, proof),
                    verify_inclusion(j, n as u64, leaf, proof, &root)
                );
                assert_eq!(
                    v.verify(i + n as u64, leaf, proof),
                    verify_inclusion(i + n as u64, n as u64, leaf, proof, &root)
                );
            }
        }
    }

    #[test]
    fn size_zero_rules() {
        let e = empty_root();
        let r = reference::root(&leaves(5));
        assert_eq!(verify_consistency(0, 5, &[], &e, &r), Ok(()));
        assert_eq!(verify_consistency(0, 0, &[], &e, &e), Ok(()));
        assert!(verify_consistency(0, 5, &[e], &e, &r).is_err());
        assert!(matches!(
            verify_consistency(0, 5, &[], &r, &r),
            Err(VerifyError::NotEmptyRoot { .. })
        ));
        assert!(matches!(
            verify_inclusion(0, 0, &e, &[], &e),
            Err(VerifyError::IndexOutOfRange { index: 0, size: 0 })
        ));
    }

    /// Found by `cargo fuzz run proof` (kept in fuzz/regressions/proof):
    /// sizes whose last leaf differs from the index in the top bit made the
    /// expected proof length shift a u64 by 64 bits.
    #[test]
    fn sizes_beyond_2_pow_63_do_not_overflow() {
        let top = 1u64 << 63;
        // Leaf 0 of 2^63 + 1 leaves: 63 levels in the left half, then the
        // last leaf.
        assert_eq!(inclusion_len(0, top + 1), 64);
        assert_eq!(inclusion_len(top, top + 1), 1);
        assert_eq!(consistency_len(1, top + 1), 64);
        // The fuzzer's input: no panic, a clear refusal.
        let input: [u8; 16] = [
            0x21, 0xde, 0xde, 0xde, 0xde, 0xde, 0xde, 0x3d, 0xde, 0xde, 0xde, 0xde, 0xde, 0xde,
            0xde, 0xde,
        ];
        let a = u64::from_le_bytes(input[..8].try_into().expect("8"));
        let b = u64::from_le_bytes(input[8..].try_into().expect("8"));
        let h = leaf_hash(b"");
        for len in 0..3 {
            let proof = vec![h; len];
            assert!(verify_inclusion(a, b, &h, &proof, &h).is_err());
            assert!(verify_consistency(a, b, &proof, &h, &h).is_err());
        }
    }

    #[test]
    fn oversize_proofs_are_rejected_before_hashing() {
        let h = leaf_hash(b"");
        let long = vec![h; MAX_PROOF_LEN + 1];
        assert!(matches!(
            verify_inclusion(0, u64::MAX, &h, &long, &h),
            Err(VerifyError::ProofTooLong { .. })
        ));
        assert!(matches!(
            verify_consistency(1, u64::MAX, &long, &h, &h),
            Err(VerifyError::ProofTooLong { .. })
        ));
        let raw: Vec<Vec<u8>> = vec![vec![0; 32]; 65];
        assert!(matches!(
            parse_proof(&raw),
            Err(VerifyError::ProofTooLong { .. })
        ));
        assert!(matches!(
            parse_proof(&[vec![0u8; 31]]),
            Err(VerifyError::BadElement { position: 0, .. })
        ));
    }
}
