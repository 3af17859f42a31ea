//! The append-only tree: a compact range (the right edge) plus a store.
//!
//! The state kept in memory is one hash per set bit of the tree size: the
//! roots of the perfect subtrees that make up the tree, largest first. The
//! current root folds them right to left (RFC 9162 section 2.1.1 splits
//! `D[n]` at the largest power of two below `n`, so the left part is always
//! the largest perfect subtree). Appending a leaf merges equal-height
//! subtrees like a binary counter: `O(1)` amortized node hashes, at most
//! `O(log n)` for one leaf.

use super::TILE_HEIGHT;
use super::prove::NodeReader;
use super::store::{HashReader, StoreError, StoredHash};
use crate::hash::{Hash, empty_root, node_hash};

/// The right edge of an append-only Merkle tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    size: u64,
    /// Roots of the perfect subtrees, one per set bit of `size`, from the
    /// highest bit (leftmost subtree) to the lowest.
    edge: Vec<Hash>,
}

impl Tree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the right edge of the tree of `size` leaves from stored
    /// hashes: one perfect-subtree hash per set bit of `size`, each from one
    /// tile read.
    pub fn open<R: HashReader>(reader: &R, size: u64) -> Result<Self, StoreError> {
        let mut nodes = NodeReader::new(reader, size, None);
        let mut edge = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for height in (0..64u32).rev() {
            if size & (1 << height) != 0 {
                edge.push(nodes.node(height, start >> height)?);
                start += 1 << height;
            }
        }
        Ok(Tree { size, edge })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The right edge: the roots of the perfect subtrees that make up the
    /// tree, largest (leftmost) first, one per set bit of the size. With
    /// [`Tree::from_edge`] this is all a monitor must keep to go on
    /// appending leaves it downloads and recomputing the root.
    pub fn edge(&self) -> &[Hash] {
        &self.edge
    }

    /// Rebuilds a tree from its size and right edge; `None` when the edge
    /// does not have one hash per set bit of `size`.
    pub fn from_edge(size: u64, edge: Vec<Hash>) -> Option<Tree> {
        (edge.len() == size.count_ones() as usize).then_some(Tree { size, edge })
    }

    /// Appends a leaf hash without reporting what to store (for callers
    /// that only need the root, like a monitor).
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut acc = leaf_hash;
        let mut bits = self.size;
        while bits & 1 == 1 {
            let Some(left) = self.edge.pop() else {
                break; // unreachable: one edge node per set bit
            };
            acc = node_hash(&left, &acc);
            bits >>= 1;
        }
        self.edge.push(acc);
        self.size += 1;
    }

    /// `MTH(D[size])`, folded from the right edge in `O(log n)` hashes.
    pub fn root(&self) -> Hash {
        let mut iter = self.edge.iter().rev();
        let Some(mut acc) = iter.next().copied() else {
            return empty_root();
        };
        for left in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }

    /// Appends a leaf (given as its leaf hash, `SHA-256(0x00 || data)`) and
    /// pushes onto `out` the hashes that must now be stored: the leaf hash
    /// itself and, when this leaf completes a tile, the tile's root one row
    /// up (and so on while tiles complete).
    ///
    /// # Panics
    /// Never in practice: a tree would need `2^64` leaves to overflow.
    pub fn append(&mut self, leaf_hash: Hash, out: &mut Vec<StoredHash>) {
        let index = self.size;
        out.push(StoredHash {
            level: 0,
            index,
            hash: leaf_hash,
        });
        let mut acc = leaf_hash;
        let mut height = 0u32;
        // Each trailing 1 bit of the old size is a perfect subtree of the
        // same height as `acc` to its left: merge them, like a carry.
        let mut bits = index;
        while bits & 1 == 1 {
            let Some(left) = self.edge.pop() else {
                break; // unreachable: one edge node per set bit
            };
            acc = node_hash(&left, &acc);
            height += 1;
            bits >>= 1;
            if height.is_multiple_of(TILE_HEIGHT) {
                out.push(StoredHash {
                    level: (height / TILE_HEIGHT) as u8,
                    index: index >> height,
                    hash: acc,
                });
            }
        }
        self.edge.push(acc);
        self.size = index + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::merkle::reference;
    use crate::merkle::store::MemoryStore;

    #[test]
    fn push_and_from_edge_match_append() {
        let mut a = Tree::new();
        let mut b = Tree::new();
        let mut out = Vec::new();
        for i in 0..300u64 {
            let h = leaf_hash(&i.to_le_bytes());
            a.append(h, &mut out);
            b.push(h);
            assert_eq!(a.root(), b.root());
            let c = Tree::from_edge(b.size(), b.edge().to_vec()).expect("edge");
            assert_eq!(c, b);
        }
        assert!(Tree::from_edge(3, vec![leaf_hash(b"x")]).is_none());
    }

    #[test]
    fn append_matches_reference_root_and_reopens() {
        let mut tree = Tree::new();
        let mut store = MemoryStore::new();
        let mut leaves = Vec::new();
        let mut out = Vec::new();
        assert_eq!(tree.root(), empty_root());
        for i in 0..1100u64 {
            let h = leaf_hash(&i.to_le_bytes());
            leaves.push(h);
            out.clear();
            tree.append(h, &mut out);
            store.write(&out).expect("dense");
            assert_eq!(tree.root(), reference::root(&leaves), "size {}", i + 1);
            if i % 97 == 0 || i == 255 || i == 256 || i == 1023 {
                let reopened = Tree::open(&store, tree.size()).expect("open");
                assert_eq!(reopened, tree);
            }
        }
        // 1100 leaves: 1100 row-0 hashes, 4 full tiles -> 4 row-1 hashes.
        assert_eq!(store.row_len(0), 1100);
        assert_eq!(store.row_len(1), 4);
        assert_eq!(store.row_len(2), 0);
    }

    #[test]
    fn stored_tile_roots_are_subtree_roots() {
        let mut tree = Tree::new();
        let mut store = MemoryStore::new();
        let leaves: Vec<Hash> = (0..512u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut out = Vec::new();
        for h in &leaves {
            tree.append(*h, &mut out);
        }
        store.write(&out).expect("dense");
        let mut row1 = Vec::new();
        store.read_hashes(1, 0, 2, &mut row1).expect("stored");
        assert_eq!(row1[0], reference::root(&leaves[..256]));
        assert_eq!(row1[1], reference::root(&leaves[256..]));
    }

    #[test]
    fn open_fails_cleanly_when_hashes_are_missing() {
        let store = MemoryStore::new();
        assert!(matches!(
            Tree::open(&store, 3),
            Err(StoreError::Missing { .. })
        ));
        assert_eq!(Tree::open(&store, 0).expect("empty").root(), empty_root());
    }
}
