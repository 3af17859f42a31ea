//! The one trust step: how a checkpoint seen now stands against the one
//! already trusted (RFC 9162 section 2.1.4; C2SP tlog-checkpoint). The
//! CLI's trusted state ([`crate::Client::observe`]) and the monitor's
//! audit and vantage-point comparisons all decide with it, so the same
//! two checkpoints always get the same verdict.
//!
//! A step needs at most one consistency proof, which the caller fetches
//! from wherever it trusts to ask ([`Step::Prove`]) and hands back to
//! [`check`].

use tlog_core::Hash;
use tlog_core::merkle::verify::{VerifyError, verify_consistency};

/// A tree head: size and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

impl From<&tlog_core::checkpoint::Checkpoint> for Head {
    fn from(c: &tlog_core::checkpoint::Checkpoint) -> Head {
        Head {
            size: c.size,
            root: c.root,
        }
    }
}

/// What it takes to accept `seen` beside `trusted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The same tree head: nothing to prove.
    Same,
    /// A larger tree over an empty trusted one: nothing to prove (every
    /// tree extends the empty tree); `seen` is newer.
    FromEmpty,
    /// A consistency proof from `size1` to `size2` must verify; `newer`
    /// says whether `seen` is the larger (and so becomes trusted).
    Prove {
        /// The smaller size.
        size1: u64,
        /// The larger size.
        size2: u64,
        /// True if `seen` is the larger.
        newer: bool,
    },
}

/// Why two tree heads cannot both be honest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// Two heads of one size with different roots.
    #[error("two signed checkpoints of size {size} have different roots (a fork)")]
    Fork {
        /// The size.
        size: u64,
    },
    /// The log's latest head is smaller than one it signed before.
    #[error(
        "the log's latest checkpoint has size {latest}, smaller than the {trusted} it signed \
         before (a rollback)"
    )]
    Rollback {
        /// The size it claims as latest.
        latest: u64,
        /// The size trusted.
        trusted: u64,
    },
    /// The consistency proof between them does not verify.
    #[error(
        "the checkpoints of sizes {size1} and {size2} are not consistent ({reason}): the log \
         forked or rewrote history"
    )]
    Inconsistent {
        /// The smaller size.
        size1: u64,
        /// The larger size.
        size2: u64,
        /// What the verifier found.
        reason: VerifyError,
    },
}

/// The step from `trusted` to `seen`. With `claims_latest` (`seen` is the
/// log's answer to "what is your latest?"), a smaller `seen` is a
/// rollback; without it (a proof against an older tree), the older tree
/// must be shown to be a prefix of the trusted one.
pub fn step(trusted: Head, seen: Head, claims_latest: bool) -> Result<Step, Conflict> {
    if seen.size == trusted.size {
        return if seen.root == trusted.root {
            Ok(Step::Same)
        } else {
            Err(Conflict::Fork { size: seen.size })
        };
    }
    if seen.size < trusted.size {
        if claims_latest {
            return Err(Conflict::Rollback {
                latest: seen.size,
                trusted: trusted.size,
            });
        }
        return Ok(Step::Prove {
            size1: seen.size,
            size2: trusted.size,
            newer: false,
        });
    }
    if trusted.size == 0 {
        return Ok(Step::FromEmpty);
    }
    Ok(Step::Prove {
        size1: trusted.size,
        size2: seen.size,
        newer: true,
    })
}

/// Checks `proof` for a [`Step::Prove`] between `trusted` and `seen`
/// (RFC 9162 section 2.1.4.2); the other steps need none.
pub fn check(step: Step, trusted: Head, seen: Head, proof: &[Hash]) -> Result<(), Conflict> {
    let Step::Prove {
        size1,
        size2,
        newer,
    } = step
    else {
        return Ok(());
    };
    let (small, big) = if newer {
        (trusted, seen)
    } else {
        (seen, trusted)
    };
    verify_consistency(size1, size2, proof, &small.root, &big.root).map_err(|reason| {
        Conflict::Inconsistent {
            size1,
            size2,
            reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_core::merkle::tree::Tree;

    fn heads(n: u64) -> Vec<Head> {
        let mut t = Tree::new();
        let mut out = vec![Head {
            size: 0,
            root: t.root(),
        }];
        for i in 0..n {
            t.push(tlog_core::leaf_hash(&i.to_be_bytes()));
            out.push(Head {
                size: t.size(),
                root: t.root(),
            });
        }
        out
    }

    #[test]
    fn each_standing_gets_its_verdict() {
        let h = heads(8);
        let other = Head {
            size: 5,
            root: Hash([9; 32]),
        };
        assert_eq!(step(h[5], h[5], true), Ok(Step::Same));
        assert_eq!(step(h[5], other, true), Err(Conflict::Fork { size: 5 }));
        assert_eq!(
            step(h[5], h[3], true),
            Err(Conflict::Rollback {
                latest: 3,
                trusted: 5
            })
        );
        assert_eq!(
            step(h[5], h[3], false),
            Ok(Step::Prove {
                size1: 3,
                size2: 5,
                newer: false
            })
        );
        assert_eq!(step(h[0], h[4], true), Ok(Step::FromEmpty));
        let s = step(h[3], h[7], true).expect("step");
        assert_eq!(
            s,
            Step::Prove {
                size1: 3,
                size2: 7,
                newer: true
            }
        );
        // A proof of the wrong shape does not verify: inconsistent.
        assert!(matches!(
            check(s, h[3], h[7], &[]),
            Err(Conflict::Inconsistent { .. })
        ));
        // The log's own proof verifies, both ways round; against another
        // root it does not.
        let mut t = Tree::new();
        let mut store = tlog_core::merkle::store::MemoryStore::new();
        for i in 0..8u64 {
            let mut out = Vec::new();
            t.append(tlog_core::leaf_hash(&i.to_be_bytes()), &mut out);
            store.write(&out).expect("write");
        }
        let proof = tlog_core::merkle::prove::Prover::new(&store)
            .consistency_proof(3, 7)
            .expect("proof");
        check(s, h[3], h[7], &proof).expect("consistent");
        let back = step(h[7], h[3], false).expect("step");
        check(back, h[7], h[3], &proof).expect("consistent, older seen");
        let forged = Head {
            size: 7,
            root: Hash([7; 32]),
        };
        assert!(matches!(
            check(s, h[3], forged, &proof),
            Err(Conflict::Inconsistent { .. })
        ));
    }
}
