//! The recursive definitions of RFC 9162 section 2.1, transcribed literally.
//!
//! These are slow (they hash every leaf every time) and exist to state the
//! specification in code: the storage-backed [`super::prove`] and the
//! compact-range [`super::tree`] are property-tested against them. They are
//! also the simplest way to compute the root of a small list of leaves.

use super::split_point;
use crate::hash::{Hash, empty_root, node_hash};

/// `MTH(D[n])`: the Merkle Tree Hash of a list of leaf hashes
/// (RFC 9162 section 2.1.1). The empty list hashes to `SHA-256()`.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// `PATH(m, D[n])`: the inclusion proof for leaf `m` (RFC 9162 section
/// 2.1.3.1). Returns `None` when `m >= n`.
pub fn inclusion_path(m: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    let n = leaves.len();
    if m >= n {
        return None;
    }
    if n == 1 {
        return Some(Vec::new());
    }
    let k = split_point(n as u64) as usize;
    let mut path = if m < k {
        // PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
        let mut p = inclusion_path(m, &leaves[..k])?;
        p.push(root(&leaves[k..]));
        p
    } else {
        // PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
        let mut p = inclusion_path(m - k, &leaves[k..])?;
        p.push(root(&leaves[..k]));
        p
    };
    path.shrink_to_fit();
    Some(path)
}

/// `PROOF(m, D[n]) = SUBPROOF(m, D[n], true)`: the consistency proof between
/// the first `m` leaves and all `n` (RFC 9162 section 2.1.4.1). Defined for
/// `0 < m < n`; returns `None` otherwise.
pub fn consistency_proof(m: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    if m == 0 || m >= leaves.len() {
        return None;
    }
    Some(subproof(m, leaves, true))
}

/// `SUBPROOF(m, D[n], b)` (RFC 9162 section 2.1.4.1).
fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        // SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
        return if b { Vec::new() } else { vec![root(leaves)] };
    }
    let k = split_point(n as u64) as usize;
    if m <= k {
        // SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
        let mut p = subproof(m, &leaves[..k], b);
        p.push(root(&leaves[k..]));
        p
    } else {
        // SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(root(&leaves[..k]));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&[i as u8])).collect()
    }

    #[test]
    fn rfc_example_shapes() {
        // RFC 9162 section 2.1.5: the tree of 7 leaves d0..d6.
        let d = leaves(7);
        let (a, b, c) = (d[0], d[1], d[2]);
        let g = node_hash(&a, &b);
        let h = node_hash(&c, &d[3]);
        let i = node_hash(&d[4], &d[5]);
        let j = d[6];
        let k = node_hash(&g, &h);
        let l = node_hash(&i, &j);
        assert_eq!(root(&d), node_hash(&k, &l));
        // The inclusion proof for b is [a, h, l].
        assert_eq!(inclusion_path(1, &d), Some(vec![a, h, l]));
        // For d3 it is [c, g, l]; for d4 [d5 = f, j, k].
        assert_eq!(inclusion_path(3, &d), Some(vec![c, g, l]));
        assert_eq!(inclusion_path(4, &d), Some(vec![d[5], j, k]));
        // Consistency between hash0 (size 3) and hash (size 7): [c, d, g, l].
        assert_eq!(consistency_proof(3, &d), Some(vec![c, d[3], g, l]));
        // Size 4 to 7: [l].
        assert_eq!(consistency_proof(4, &d), Some(vec![l]));
        // Size 6 to 7: [i, j, k].
        assert_eq!(consistency_proof(6, &d), Some(vec![i, j, k]));
    }

    #[test]
    fn out_of_range_is_none() {
        let d = leaves(3);
        assert_eq!(inclusion_path(3, &d), None);
        assert_eq!(consistency_proof(0, &d), None);
        assert_eq!(consistency_proof(3, &d), None);
    }
}
