//! Where the tree's hashes live: a narrow, tile-shaped storage trait.
//!
//! # Layout
//!
//! Only hashes at heights that are multiples of [`TILE_HEIGHT`] (8) are
//! stored, and only once the subtree under them is complete. The hashes at
//! height `8 * level` form row `level`; 256 consecutive entries of a row form
//! a tile, exactly the bottom row of a C2SP `tlog-tiles` tile, so a server
//! can serve tiles from this storage directly. A node at any other height is
//! recomputed from at most 128 stored hashes of one tile, so a proof needs
//! one storage read per tile it touches: `O(log n)` reads, never the whole
//! tree.
//!
//! Appending a leaf stores the leaf hash (row 0) and, every 256th leaf, one
//! hash per completed tile above: `1 + 1/256 + ...` stored hashes per leaf.
//!
//! <https://c2sp.org/tlog-tiles>
//!
//! [`TILE_HEIGHT`]: super::TILE_HEIGHT

use crate::hash::Hash;

/// One stored hash: row `level` (tree height `8 * level`), position `index`
/// within the row (the node covering leaves
/// `[index * 256^level, (index + 1) * 256^level)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredHash {
    /// The row: tree height divided by [`super::TILE_HEIGHT`].
    pub level: u8,
    /// Position within the row.
    pub index: u64,
    /// The hash.
    pub hash: Hash,
}

/// A failure of the storage behind the tree.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A hash that the tree's size says must exist was not stored.
    #[error("stored hash missing: level {level}, index {index}")]
    Missing {
        /// Row of the missing hash.
        level: u8,
        /// Position of the missing hash.
        index: u64,
    },
    /// The backend cannot read now (I/O, full disk, ...); a retry may
    /// succeed. Its own error is the source.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A write that would leave a gap in a row ([`MemoryStore::write`]).
    #[error("write of level {level} index {index} leaves a gap after {len}")]
    Gap {
        /// The row.
        level: u8,
        /// The index written.
        index: u64,
        /// The row's length.
        len: u64,
    },
    /// The backend found its stored bytes damaged (a checksum mismatch, a
    /// value of the wrong shape): retrying will not help.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Reads stored hashes. Implemented by the server's RocksDB storage and by
/// [`MemoryStore`].
pub trait HashReader {
    /// Appends to `out` the `count` stored hashes of row `level` starting at
    /// `start`, in order. Every requested hash must exist; a missing one is
    /// [`StoreError::Missing`]. Callers ask for at most one tile (256
    /// hashes) at a time, aligned so the range stays inside one tile.
    fn read_hashes(
        &self,
        level: u8,
        start: u64,
        count: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), StoreError>;
}

impl<T: HashReader + ?Sized> HashReader for &T {
    fn read_hashes(
        &self,
        level: u8,
        start: u64,
        count: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), StoreError> {
        (**self).read_hashes(level, start, count, out)
    }
}

/// An in-memory hash store, for tests and for the monitor's own copy of a
/// log's tree.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    rows: Vec<Vec<Hash>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores hashes produced by [`super::tree::Tree::append`]. Rows are
    /// dense: a hash may replace one already stored or extend its row by
    /// one; a hash that would leave a gap is refused.
    pub fn write(&mut self, hashes: &[StoredHash]) -> Result<(), StoreError> {
        for h in hashes {
            let level = usize::from(h.level);
            if self.rows.len() <= level {
                self.rows.resize_with(level + 1, Vec::new);
            }
            let row = &mut self.rows[level];
            match usize::try_from(h.index) {
                Ok(i) if i < row.len() => row[i] = h.hash,
                Ok(i) if i == row.len() => row.push(h.hash),
                _ => {
                    return Err(StoreError::Gap {
                        level: h.level,
                        index: h.index,
                        len: row.len() as u64,
                    });
                }
            }
        }
        Ok(())
    }

    /// Number of hashes stored in row `level`.
    pub fn row_len(&self, level: u8) -> u64 {
        self.rows
            .get(usize::from(level))
            .map_or(0, |r| r.len() as u64)
    }
}

impl HashReader for MemoryStore {
    fn read_hashes(
        &self,
        level: u8,
        start: u64,
        count: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), StoreError> {
        let row = self.rows.get(usize::from(level));
        for index in start..start.saturating_add(count) {
            let h = row
                .and_then(|r| usize::try_from(index).ok().and_then(|i| r.get(i)))
                .copied()
                .ok_or(StoreError::Missing { level, index })?;
            out.push(h);
        }
        Ok(())
    }
}
