//! A shared cache of tile interiors.
//!
//! A tile's bottom row, once it has `w` entries, never changes (the log is
//! append-only), and neither do the perfect subtrees above it. The cache
//! keeps, per `(level, tile, width)`, the bottom row and every interior row
//! computed from it, so a proof that touches a cached tile reads nothing
//! and hashes only the imperfect right edge. Full tiles (width 256) stay
//! valid forever; a partial tile at a given width too, it is just replaced
//! by wider ones as the log grows.
//!
//! Eviction is by generations: when the current generation fills half the
//! capacity it becomes the previous one and the one before is dropped;
//! hits in the previous generation move back to the current one. That
//! approximates LRU with no bookkeeping on hits.
//!
//! Beside the full tiles the cache keeps, for 32 times as many bottom
//! tiles (row 0, which has 256 times as many tiles as the rows above), a
//! *summary*: only the rows from [`SUMMARY_FROM`] levels up (31 hashes,
//! about 1.2 KiB with their vectors, instead of 511). A large log has far
//! more bottom tiles than the full cache holds; with a summary, a proof
//! reads the 16 stored hashes of one block of the tile and hashes 15 nodes,
//! instead of reading 256 and hashing 255.
//!
//! Generations keep between half and all of a capacity. The summaries'
//! capacity is 32 times the tiles' so that the default (4,096 tiles) keeps
//! every summary of a log up to 16.7M entries (65,536 bottom tiles) even
//! right after a generation is dropped. At 16 times, a 10M-entry log's
//! 39,063 bottom tiles outgrew the half: dropped summaries were read back as
//! whole tiles, and proofs/s fell by a quarter within a minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::hash::{Hash, node_hash};

/// Every row of one tile: `rows[0]` is the stored bottom row, `rows[h]`
/// the perfect nodes `h` levels up (as many as the width allows).
#[derive(Debug)]
pub struct TileRows {
    rows: Vec<Vec<Hash>>,
}

impl TileRows {
    /// Computes all rows above `bottom`.
    pub fn build(bottom: Vec<Hash>) -> Self {
        let mut rows = vec![bottom];
        loop {
            let below = &rows[rows.len() - 1];
            if below.len() < 2 {
                break;
            }
            let up: Vec<Hash> = below
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            rows.push(up);
        }
        TileRows { rows }
    }

    /// The node `sub` levels above the bottom row at position `index`.
    pub fn node(&self, sub: u32, index: usize) -> Option<Hash> {
        self.rows.get(sub as usize)?.get(index).copied()
    }

    /// The bottom row's width.
    pub fn width(&self) -> usize {
        self.rows[0].len()
    }

    /// The rows from `from` levels up (a summary: `node(sub, i)` of the
    /// result is `node(from + sub, i)` of these rows).
    pub fn upper(&self, from: u32) -> TileRows {
        let rows: Vec<Vec<Hash>> = self.rows.iter().skip(from as usize).cloned().collect();
        TileRows {
            rows: if rows.is_empty() {
                vec![Vec::new()]
            } else {
                rows
            },
        }
    }
}

/// How many levels above a tile's bottom row a summary starts.
pub const SUMMARY_FROM: u32 = 4;

/// Summaries kept per full tile of capacity.
const SUMMARIES_PER_TILE: usize = 32;

type Key = (u8, u64, u16);

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<Key, Arc<TileRows>>,
    previous: HashMap<Key, Arc<TileRows>>,
}

/// A bounded cache of [`TileRows`], shared between threads.
#[derive(Debug)]
pub struct TileCache {
    inner: Mutex<Generations>,
    capacity: usize,
    summaries: Mutex<Generations>,
}

impl TileCache {
    /// A cache holding about `capacity` tiles (each at most 511 hashes,
    /// 16 KiB) and summaries of 32 times as many (about 1.2 KiB each).
    pub fn new(capacity: usize) -> Self {
        TileCache {
            inner: Mutex::new(Generations::default()),
            capacity: capacity.max(2),
            summaries: Mutex::new(Generations::default()),
        }
    }

    /// The summary of tile `(level, tile)` at `width`, if cached: its rows
    /// from [`SUMMARY_FROM`] levels up.
    pub fn get_summary(&self, level: u8, tile: u64, width: u16) -> Option<Arc<TileRows>> {
        let mut g = self.summaries.lock().ok()?;
        let key = (level, tile, width);
        if let Some(t) = g.current.get(&key) {
            return Some(t.clone());
        }
        let t = g.previous.remove(&key)?;
        Self::insert_locked(&mut g, key, t.clone(), self.capacity * SUMMARIES_PER_TILE);
        Some(t)
    }

    /// The rows of tile `(level, tile)` at `width`, if cached.
    pub fn get(&self, level: u8, tile: u64, width: u16) -> Option<Arc<TileRows>> {
        let mut g = self.inner.lock().ok()?;
        let key = (level, tile, width);
        if let Some(t) = g.current.get(&key) {
            return Some(t.clone());
        }
        let t = g.previous.remove(&key)?;
        Self::insert_locked(&mut g, key, t.clone(), self.capacity);
        Some(t)
    }

    /// Caches the rows of tile `(level, tile)`.
    pub fn insert(&self, level: u8, tile: u64, rows: Arc<TileRows>) {
        let Ok(width) = u16::try_from(rows.width()) else {
            return;
        };
        // Summaries serve bottom tiles only (see `NodeReader::via_summary`).
        if level == 0
            && let Ok(mut g) = self.summaries.lock()
        {
            let summary = Arc::new(rows.upper(SUMMARY_FROM));
            Self::insert_locked(
                &mut g,
                (level, tile, width),
                summary,
                self.capacity * SUMMARIES_PER_TILE,
            );
        }
        if let Ok(mut g) = self.inner.lock() {
            Self::insert_locked(&mut g, (level, tile, width), rows, self.capacity);
        }
    }

    fn insert_locked(g: &mut Generations, key: Key, rows: Arc<TileRows>, capacity: usize) {
        if g.current.len() >= capacity / 2 {
            g.previous = std::mem::take(&mut g.current);
        }
        g.current.insert(key, rows);
    }

    /// How many tile summaries the cache holds at most.
    pub fn summary_capacity(&self) -> usize {
        self.capacity * SUMMARIES_PER_TILE
    }

    /// Number of cached tiles.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|g| g.current.len() + g.previous.len())
            .unwrap_or(0)
    }

    /// True if nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::merkle::reference;

    #[test]
    fn rows_hold_every_perfect_subtree() {
        let bottom: Vec<Hash> = (0..256u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let t = TileRows::build(bottom.clone());
        assert_eq!(t.node(8, 0), Some(reference::root(&bottom)));
        assert_eq!(t.node(3, 5), Some(reference::root(&bottom[40..48])));
        let partial = TileRows::build(bottom[..13].to_vec());
        assert_eq!(partial.node(2, 2), Some(reference::root(&bottom[8..12])));
        assert_eq!(
            partial.node(2, 3),
            None,
            "no perfect node over 12..16 at width 13"
        );
    }

    #[test]
    fn summaries_hold_the_upper_rows() {
        let bottom: Vec<Hash> = (0..256u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let t = TileRows::build(bottom.clone());
        let s = t.upper(SUMMARY_FROM);
        assert_eq!(s.width(), 16);
        for sub in 0..=4 {
            for i in 0..(16 >> sub) {
                assert_eq!(s.node(sub, i), t.node(SUMMARY_FROM + sub, i));
            }
        }
        let c = TileCache::new(2);
        for i in 0..80 {
            c.insert(0, i, Arc::new(TileRows::build(bottom.clone())));
        }
        assert!(c.get(0, 1, 256).is_none(), "full tiles: 2");
        assert!(c.get_summary(0, 70, 256).is_some(), "summaries: 64");
        assert!(c.get_summary(0, 1, 256).is_none());
        // Tiles above the bottom row get no summary.
        c.insert(1, 0, Arc::new(TileRows::build(bottom.clone())));
        assert!(c.get(1, 0, 256).is_some());
        assert!(c.get_summary(1, 0, 256).is_none());
        // A narrow tile has an empty summary, not a panic.
        let narrow = TileRows::build(bottom[..3].to_vec());
        assert_eq!(narrow.upper(SUMMARY_FROM).width(), 0);
    }

    #[test]
    fn bounded_with_generations() {
        let c = TileCache::new(4);
        let rows = Arc::new(TileRows::build(vec![leaf_hash(b"x")]));
        for i in 0..10 {
            c.insert(0, i, rows.clone());
        }
        assert!(c.len() <= 4);
        assert!(c.get(0, 9, 1).is_some());
        assert!(c.get(0, 0, 1).is_none());
    }
}
