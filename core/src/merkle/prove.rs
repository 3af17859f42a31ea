//! Inclusion and consistency proofs computed from stored hashes
//! (RFC 9162 sections 2.1.3.1 and 2.1.4.1), for any tree size the log has
//! had.
//!
//! A proof is a list of subtree hashes `MTH(D[a:b])`. The ranges follow the
//! RFC's recursion (computed iteratively here); each range is split into
//! perfect subtrees, and each perfect subtree is read from one tile of the
//! store. Tiles are read once per proof, so a proof costs `O(log n)` reads.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::cache::{SUMMARY_FROM, TileCache, TileRows};
use super::store::{HashReader, StoreError};
use super::{TILE_HEIGHT, TILE_WIDTH, split_point};
use crate::hash::{Hash, node_hash};

/// Why a proof could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// Inclusion asked for a leaf that is not in a tree of that size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size asked for.
        size: u64,
    },
    /// Consistency asked from a larger size to a smaller one.
    #[error("size1 {size1} is larger than size2 {size2}")]
    SizesReversed {
        /// The first size.
        size1: u64,
        /// The second size.
        size2: u64,
    },
    /// The store failed or lacks a hash the sizes require.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Computes perfect-subtree hashes from stored tiles of the tree of `size`
/// leaves. Each tile is read once, whole (as far as the tree of `size`
/// leaves has filled it), its interior computed once, and kept for the
/// reader's lifetime (one proof) and, if given, in a shared [`TileCache`].
pub(crate) struct NodeReader<'a, R: ?Sized> {
    reader: &'a R,
    size: u64,
    cache: Option<&'a TileCache>,
    /// `(level, tile index)` -> the tile's rows.
    tiles: Vec<((u8, u64), Arc<TileRows>)>,
    /// `(level, first hash)` -> the rows of one 16-hash block of a tile
    /// whose summary was cached.
    blocks: Vec<((u8, u64), Arc<TileRows>)>,
}

impl<'a, R: HashReader + ?Sized> NodeReader<'a, R> {
    pub(crate) fn new(reader: &'a R, size: u64, cache: Option<&'a TileCache>) -> Self {
        NodeReader {
            reader,
            size,
            cache,
            tiles: Vec::new(),
            blocks: Vec::new(),
        }
    }

    /// Hashes of tile `(level, tile)` stored for a tree of `size` leaves.
    fn width(&self, level: u8, tile: u64) -> u64 {
        let row_len = self.size >> (u32::from(level) * TILE_HEIGHT);
        row_len.saturating_sub(tile * TILE_WIDTH).min(TILE_WIDTH)
    }

    /// Reads `count` stored hashes of row `level` from `start` and
    /// computes the rows above them.
    fn read_rows(&self, level: u8, start: u64, count: u64) -> Result<TileRows, StoreError> {
        let mut hashes = Vec::with_capacity(count as usize);
        self.reader.read_hashes(level, start, count, &mut hashes)?;
        if hashes.len() as u64 != count {
            return Err(StoreError::Corrupt(format!(
                "row {level} from {start}: read returned {} hashes, wanted {count}",
                hashes.len()
            )));
        }
        Ok(TileRows::build(hashes))
    }

    /// The node `sub` levels above the bottom of tile `(level, tile)` at
    /// position `pos` (in bottom-row units), from a cached summary when the
    /// full tile is not at hand: levels from [`SUMMARY_FROM`] up come from
    /// the summary, lower ones from one 16-hash block read from the store.
    fn via_summary(
        &mut self,
        level: u8,
        tile: u64,
        sub: u32,
        pos: u64,
    ) -> Result<Option<Hash>, StoreError> {
        // Only bottom tiles: they are 256 times as many as the tiles above,
        // which every proof crosses and which the full cache holds. A tile
        // above served from its summary would never be read whole again,
        // and every proof would read 16 of its hashes from the store.
        if level != 0 || self.tiles.iter().any(|(k, _)| *k == (level, tile)) {
            return Ok(None);
        }
        let Some(cache) = self.cache else {
            return Ok(None);
        };
        let width = self.width(level, tile);
        if cache.get(level, tile, width as u16).is_some() {
            return Ok(None); // the full tile is cached: use it
        }
        let Some(summary) = cache.get_summary(level, tile, width as u16) else {
            return Ok(None);
        };
        if sub >= SUMMARY_FROM {
            return Ok(summary.node(sub - SUMMARY_FROM, (pos >> sub) as usize));
        }
        let block = 1u64 << SUMMARY_FROM;
        let first = tile * TILE_WIDTH + (pos / block) * block;
        let count = (width - (pos / block) * block).min(block);
        let rows = match self.blocks.iter().find(|(k, _)| *k == (level, first)) {
            Some((_, r)) => r.clone(),
            None => {
                let r = Arc::new(self.read_rows(level, first, count)?);
                self.blocks.push(((level, first), r.clone()));
                r
            }
        };
        Ok(rows.node(sub, ((pos % block) >> sub) as usize))
    }

    fn tile(&mut self, level: u8, tile: u64) -> Result<Arc<TileRows>, StoreError> {
        if let Some((_, t)) = self.tiles.iter().find(|(k, _)| *k == (level, tile)) {
            return Ok(t.clone());
        }
        let width = self.width(level, tile);
        let cached = self.cache.and_then(|c| c.get(level, tile, width as u16));
        let rows = match cached {
            Some(rows) => rows,
            None => {
                let rows = Arc::new(self.read_rows(level, tile * TILE_WIDTH, width)?);
                if let Some(c) = self.cache {
                    c.insert(level, tile, rows.clone());
                }
                rows
            }
        };
        self.tiles.push(((level, tile), rows.clone()));
        Ok(rows)
    }

    /// The root of the perfect subtree of height `height` whose leftmost
    /// leaf is `index << height`; it must lie inside the first `size` leaves.
    pub(crate) fn node(&mut self, height: u32, index: u64) -> Result<Hash, StoreError> {
        let level = (height / TILE_HEIGHT) as u8;
        let sub = height % TILE_HEIGHT;
        let first = index << sub;
        let tile = first / TILE_WIDTH;
        let missing = StoreError::Missing {
            level,
            index: first,
        };
        if let Some(h) = self.via_summary(level, tile, sub, first % TILE_WIDTH)? {
            return Ok(h);
        }
        let rows = self.tile(level, tile)?;
        rows.node(sub, ((first % TILE_WIDTH) >> sub) as usize)
            .ok_or(missing)
    }

    /// `MTH(D[a:b])` for `a < b`, split as the RFC splits it.
    fn range(&mut self, a: u64, b: u64) -> Result<Hash, StoreError> {
        let n = b - a;
        if n.is_power_of_two() && a.is_multiple_of(n) {
            return self.node(n.trailing_zeros(), a / n);
        }
        let k = split_point(n);
        let left = self.range(a, a + k)?;
        let right = self.range(a + k, b)?;
        Ok(node_hash(&left, &right))
    }
}

/// The ranges `[a, b)` whose hashes form `PATH(index, D[size])`, in proof
/// order (deepest first). RFC 9162 section 2.1.3.1.
fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let (mut lo, mut hi, mut m) = (0u64, size, index);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if m < k {
            // PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            // PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            ranges.push((lo, lo + k));
            lo += k;
            m -= k;
        }
    }
    ranges.reverse();
    ranges
}

/// The ranges whose hashes form `PROOF(size1, D[size2])` for
/// `0 < size1 < size2`, in proof order. RFC 9162 section 2.1.4.1.
fn consistency_ranges(size1: u64, size2: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let (mut lo, mut hi, mut m, mut b) = (0u64, size2, size1, true);
    loop {
        let n = hi - lo;
        if m == n {
            // SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if !b {
                ranges.push((lo, hi));
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            // SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            // SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.push((lo, lo + k));
            lo += k;
            m -= k;
            b = false;
        }
    }
    ranges.reverse();
    ranges
}

/// A hasher for `(start, end)` leaf ranges, which need no protection from
/// chosen keys (they come from the tree's own shape): a multiply and a
/// rotate per word instead of SipHash.
#[derive(Default)]
struct RangeHasher(u64);

impl Hasher for RangeHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Proves over any [`HashReader`]. It does not know the log's current
/// size: callers check that sizes are within the tree first (a size beyond
/// what is stored surfaces as [`StoreError::Missing`]).
#[derive(Debug, Clone)]
pub struct Prover<'c, R> {
    reader: R,
    cache: Option<&'c TileCache>,
}

impl<R: HashReader> Prover<'static, R> {
    /// A prover reading from `reader`.
    pub fn new(reader: R) -> Self {
        Prover {
            reader,
            cache: None,
        }
    }
}

impl<'c, R: HashReader> Prover<'c, R> {
    /// A prover reading from `reader` through a shared tile cache.
    pub fn with_cache(reader: R, cache: &'c TileCache) -> Self {
        Prover {
            reader,
            cache: Some(cache),
        }
    }

    /// `PATH(index, D[size])`: the inclusion proof for leaf `index` in the
    /// tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut nodes = NodeReader::new(&self.reader, size, self.cache);
        inclusion_ranges(index, size)
            .into_iter()
            .map(|(a, b)| nodes.range(a, b).map_err(ProofError::from))
            .collect()
    }

    /// The inclusion proofs of the leaves at `indexes` in the tree of the
    /// first `size` leaves, in the order given: each equal to
    /// [`Prover::inclusion_proof`]'s, but tiles are read once for all of
    /// them and a subtree hash two proofs share is computed once. The
    /// proofs of a run of neighbouring leaves (a batch of appends) share
    /// all but their lowest levels, and every range that ends at `size`.
    pub fn inclusion_proofs(
        &self,
        indexes: &[u64],
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, ProofError> {
        if let Some(&index) = indexes.iter().find(|&&i| i >= size) {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut nodes = NodeReader::new(&self.reader, size, self.cache);
        // Ranges of 1 or 2 leaves are one lookup in a tile: only larger
        // ones are remembered.
        let mut known: HashMap<(u64, u64), Hash, BuildHasherDefault<RangeHasher>> =
            HashMap::default();
        indexes
            .iter()
            .map(|&index| {
                inclusion_ranges(index, size)
                    .into_iter()
                    .map(|(a, b)| {
                        if b - a <= 2 {
                            return Ok(nodes.range(a, b)?);
                        }
                        match known.get(&(a, b)) {
                            Some(h) => Ok(*h),
                            None => {
                                let h = nodes.range(a, b)?;
                                known.insert((a, b), h);
                                Ok(h)
                            }
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The leaf hash at `index` (stored in row 0, read from the same tile
    /// as the proof's lowest nodes) together with `PATH(index, D[size])`.
    pub fn leaf_and_inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<(Hash, Vec<Hash>), ProofError> {
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut nodes = NodeReader::new(&self.reader, size, self.cache);
        let leaf = nodes.node(0, index)?;
        let proof = inclusion_ranges(index, size)
            .into_iter()
            .map(|(a, b)| nodes.range(a, b).map_err(ProofError::from))
            .collect::<Result<_, _>>()?;
        Ok((leaf, proof))
    }

    /// `PROOF(size1, D[size2])`: the consistency proof between the trees of
    /// the first `size1` and `size2` leaves. Empty when `size1` is 0 or
    /// equals `size2` (see [`super::verify`] for the size-0 rules).
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, ProofError> {
        if size1 > size2 {
            return Err(ProofError::SizesReversed { size1, size2 });
        }
        if size1 == 0 || size1 == size2 {
            return Ok(Vec::new());
        }
        let mut nodes = NodeReader::new(&self.reader, size2, self.cache);
        consistency_ranges(size1, size2)
            .into_iter()
            .map(|(a, b)| nodes.range(a, b).map_err(ProofError::from))
            .collect()
    }

    /// `MTH(D[size])` for any size whose hashes are stored, from
    /// `O(log size)` stored hashes.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        if size == 0 {
            return Ok(crate::hash::empty_root());
        }
        Ok(NodeReader::new(&self.reader, size, self.cache).range(0, size)?)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::hash::leaf_hash;
    use crate::merkle::reference;
    use crate::merkle::store::MemoryStore;
    use crate::merkle::tree::Tree;

    /// A store that counts reads (`.1`), hashes read (`.2`) and hashes read
    /// from row 0 (`.3`), to check the O(log n) read bound and how much
    /// each read fetches.
    struct Counting<'a>(&'a MemoryStore, Cell<u64>, Cell<u64>, Cell<u64>);
    impl HashReader for Counting<'_> {
        fn read_hashes(
            &self,
            level: u8,
            start: u64,
            count: u64,
            out: &mut Vec<Hash>,
        ) -> Result<(), StoreError> {
            self.1.set(self.1.get() + 1);
            self.2.set(self.2.get() + count);
            if level == 0 {
                self.3.set(self.3.get() + count);
            }
            assert!(count <= TILE_WIDTH, "read spans more than a tile");
            assert_eq!(start / TILE_WIDTH, (start + count - 1) / TILE_WIDTH);
            self.0.read_hashes(level, start, count, out)
        }
    }

    fn build(n: u64) -> (MemoryStore, Vec<Hash>) {
        let mut tree = Tree::new();
        let mut store = MemoryStore::new();
        let mut out = Vec::new();
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for h in &leaves {
            tree.append(*h, &mut out);
        }
        store.write(&out).expect("dense");
        (store, leaves)
    }

    #[test]
    fn proofs_match_reference_for_small_trees() {
        let (store, leaves) = build(300);
        let prover = Prover::new(&store);
        for size in 1..=300u64 {
            let d = &leaves[..size as usize];
            assert_eq!(prover.root_at(size).expect("root"), reference::root(d));
            for m in (0..size).step_by(7) {
                assert_eq!(
                    prover.inclusion_proof(m, size).expect("incl"),
                    reference::inclusion_path(m as usize, d).expect("in range"),
                );
                if m > 0 {
                    assert_eq!(
                        prover.consistency_proof(m, size).expect("cons"),
                        reference::consistency_proof(m as usize, d).expect("in range"),
                    );
                }
            }
        }
    }

    #[test]
    fn proof_reads_are_logarithmic() {
        let (store, _) = build(70_000);
        let counting = Counting(&store, Cell::new(0), Cell::new(0), Cell::new(0));
        let prover = Prover::new(&counting);
        for (index, size) in [
            (0u64, 70_000u64),
            (12_345, 70_000),
            (69_999, 70_000),
            (5, 65_537),
        ] {
            counting.1.set(0);
            prover.inclusion_proof(index, size).expect("proof");
            // Three rows of tiles at this size; at most two tiles a row.
            assert!(counting.1.get() <= 6, "{} reads", counting.1.get());
        }
        counting.1.set(0);
        prover.consistency_proof(1_000, 70_000).expect("proof");
        assert!(counting.1.get() <= 6, "{} reads", counting.1.get());
    }

    /// A tile above the bottom row, pushed out of the full cache while its
    /// bottom tiles were warmed, is read whole again and kept: proofs do not
    /// read 16 of its hashes each time through a summary.
    #[test]
    fn tiles_above_the_bottom_are_kept_whole() {
        let n = 70_000u64; // 274 bottom tiles, 2 tiles in row 1
        let (store, _) = build(n);
        // 18 full tiles (generations of 9) and 576 summaries.
        let cache = TileCache::new(18);
        let warm = Prover::with_cache(&store, &cache);
        for t in 0..n.div_ceil(TILE_WIDTH) {
            warm.inclusion_proof(t * TILE_WIDTH, n).expect("warm");
        }
        assert!(
            cache.get(1, 0, TILE_WIDTH as u16).is_none(),
            "warming 274 bottom tiles pushed row 1 out of the full cache"
        );
        let counting = Counting(&store, Cell::new(0), Cell::new(0), Cell::new(0));
        let cached = Prover::with_cache(&counting, &cache);
        let plain = Prover::new(&store);
        for i in 0..200u64 {
            let index = (i * 7_919) % n;
            let proof = cached.inclusion_proof(index, n).expect("proof");
            assert_eq!(proof, plain.inclusion_proof(index, n).expect("plain"));
        }
        // Row 1's two tiles (273 hashes) read whole once; not 16 hashes
        // of it for every proof.
        let above = counting.2.get() - counting.3.get();
        assert!(above <= 273, "{above} hashes of row 1 read for 200 proofs");
    }

    /// With a full-tile cache far smaller than the log, proofs come from
    /// tile summaries and 16-hash blocks: the same proofs as without a
    /// cache, and only small reads.
    #[test]
    fn summaries_give_the_same_proofs_with_small_reads() {
        let n = 70_000u64;
        let (store, _) = build(n);
        let plain = Prover::new(&store);
        let cache = TileCache::new(4);
        // Warm: every bottom tile's summary gets cached (the full tiles do
        // not fit: 4 of 274).
        let warm = Prover::with_cache(&store, &cache);
        for t in 0..n.div_ceil(TILE_WIDTH) {
            warm.inclusion_proof(t * TILE_WIDTH, n).expect("warm");
        }
        let counting = Counting(&store, Cell::new(0), Cell::new(0), Cell::new(0));
        let cached = Prover::with_cache(&counting, &cache);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..400 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let size = 1 + x % n;
            let index = (x >> 20) % size;
            counting.1.set(0);
            let (leaf, proof) = cached.leaf_and_inclusion_proof(index, size).expect("proof");
            assert_eq!(
                proof,
                plain.inclusion_proof(index, size).expect("plain"),
                "{index}/{size}"
            );
            assert_eq!(
                leaf,
                plain
                    .leaf_and_inclusion_proof(index, size)
                    .expect("plain")
                    .0
            );
            let old = 1 + (x >> 40) % size;
            assert_eq!(
                cached.consistency_proof(old, size).expect("proof"),
                plain.consistency_proof(old, size).expect("plain"),
                "{old} -> {size}"
            );
            assert_eq!(
                cached.root_at(size).expect("root"),
                plain.root_at(size).expect("plain")
            );
        }
        // From a summary, a proof reads 16-hash blocks, not whole tiles:
        // far fewer hashes than the 256 a bottom tile holds.
        let cached = Prover::with_cache(&counting, &cache);
        for index in [12_345u64, 40_000, 60_001] {
            // Touch the small upper tiles first so only the bottom one is
            // left to the summary.
            cached.inclusion_proof(index, n).expect("proof");
            // Push its bottom tile out of the 4-tile full cache.
            for other in 1..=8u64 {
                Prover::new(&store).inclusion_proof(0, n).expect("other");
                let o = (index + other * 2 * TILE_WIDTH) % n;
                let mut rows = Vec::new();
                store
                    .read_hashes(0, o / TILE_WIDTH * TILE_WIDTH, TILE_WIDTH, &mut rows)
                    .expect("tile");
                cache.insert(0, o / TILE_WIDTH, Arc::new(TileRows::build(rows)));
            }
            assert!(
                cache
                    .get(0, index / TILE_WIDTH, TILE_WIDTH as u16)
                    .is_none()
            );
            counting.3.set(0);
            let proof = cached.inclusion_proof(index, n).expect("proof");
            assert_eq!(proof, plain.inclusion_proof(index, n).expect("plain"));
            // The tile of row 1 pushed out with them is read whole again
            // (and kept); the bottom tile, one 16-hash block.
            assert!(
                counting.3.get() <= 16,
                "{} hashes read from row 0",
                counting.3.get()
            );
        }
    }

    #[test]
    fn errors_for_bad_arguments_and_missing_hashes() {
        let (store, _) = build(10);
        let prover = Prover::new(&store);
        assert!(matches!(
            prover.inclusion_proof(10, 10),
            Err(ProofError::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            prover.consistency_proof(5, 4),
            Err(ProofError::SizesReversed { .. })
        ));
        assert!(matches!(
            prover.inclusion_proof(0, 11),
            Err(ProofError::Store(StoreError::Missing { .. }))
        ));
        assert!(prover.consistency_proof(0, 10).expect("size 0").is_empty());
        let (leaf, proof) = prover.leaf_and_inclusion_proof(3, 10).expect("proof");
        assert_eq!(proof, prover.inclusion_proof(3, 10).expect("proof"));
        assert_eq!(leaf, leaf_hash(&3u64.to_be_bytes()));
        assert!(prover.consistency_proof(10, 10).expect("equal").is_empty());
    }
}
