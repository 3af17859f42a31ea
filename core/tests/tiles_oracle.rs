//! `tlog_tiles` (cloudflare/azul, BSD-3-Clause; a port of Go's
//! `golang.org/x/mod/sumdb/tlog`) as an independent oracle for the C2SP
//! tiles view (c2sp.org/tlog-tiles): tile paths, which tiles a tree has,
//! and the bytes of every tile, full and partial, for many tree sizes.
//!
//! The oracle writes Go's older path form `tile/<H>/<L>/...` with the
//! height (8) in it and `data` for entry bundles; C2SP drops the height
//! and says `entries`. That is the only translation made.

use proptest::prelude::*;
use tlog_core::merkle::store::{HashReader as _, MemoryStore};
use tlog_core::merkle::tree::Tree;
use tlog_core::tiles::{TileKind, TilePath, new_tiles};
use tlog_core::{Hash, leaf_hash};

/// The oracle's tile for ours.
fn oracle_tile(t: &TilePath) -> tlog_tiles::Tile {
    tlog_tiles::Tile::new(
        8,
        t.level(),
        t.index,
        u32::from(t.width),
        t.kind == TileKind::Entries,
    )
}

/// The oracle's path, in C2SP form.
fn oracle_path(t: &TilePath) -> String {
    let go = oracle_tile(t).path();
    let rest = go.strip_prefix("tile/8/").expect("height 8");
    match rest.strip_prefix("data/") {
        Some(n) => format!("tile/entries/{n}"),
        None => format!("tile/{rest}"),
    }
}

/// The oracle's stored hashes for `n` records, with its hash reader.
struct OracleStore(Vec<tlog_tiles::Hash>);

impl tlog_tiles::HashReader for OracleStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(usize::try_from(i).map_err(|_| tlog_tiles::Error::IndexesNotInTree)?)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

fn record(i: u64) -> Vec<u8> {
    format!("entry {i}").into_bytes()
}

/// Our store and the oracle's, both holding `n` records.
fn both(n: u64) -> (MemoryStore, OracleStore) {
    let mut tree = Tree::new();
    let mut store = MemoryStore::new();
    let mut out = Vec::new();
    let mut oracle = OracleStore(Vec::new());
    for i in 0..n {
        let data = record(i);
        out.clear();
        tree.append(leaf_hash(&data), &mut out);
        store.write(&out).expect("dense");
        let hs = tlog_tiles::stored_hashes(i, &data, &oracle).expect("oracle hashes");
        oracle.0.extend(hs);
    }
    (store, oracle)
}

fn our_bytes(store: &MemoryStore, t: &TilePath) -> Vec<u8> {
    let mut hashes: Vec<Hash> = Vec::new();
    store
        .read_hashes(t.level(), t.index * 256, u64::from(t.width), &mut hashes)
        .expect("stored");
    hashes.iter().flat_map(|h| *h.as_bytes()).collect()
}

#[test]
fn every_tile_of_many_trees_matches_the_oracle_byte_for_byte() {
    let sizes = [
        1u64, 2, 7, 255, 256, 257, 511, 512, 513, 65_535, 65_536, 65_537, 70_000,
    ];
    let (store, oracle) = both(*sizes.iter().max().expect("sizes"));
    for &size in &sizes {
        let ours = new_tiles(0, size);
        let theirs = tlog_tiles::Tile::new_tiles(8, 0, size);
        let hash_tiles: Vec<&TilePath> = ours
            .iter()
            .filter(|t| t.kind != TileKind::Entries)
            .collect();
        assert_eq!(hash_tiles.len(), theirs.len(), "size {size}: tile count");
        for (t, o) in hash_tiles.iter().zip(&theirs) {
            assert_eq!(oracle_tile(t), *o, "size {size}");
            assert_eq!(t.to_path(), oracle_path(t), "size {size}");
            let want = o.read_data(&oracle).expect("oracle tile");
            assert_eq!(our_bytes(&store, t), want, "size {size}: {}", t.to_path());
        }
        // Each tree's root from its own tiles, as a tiles reader rebuilds
        // it, is the oracle's tree hash.
        let root = tlog_tiles::tree_hash(size, &oracle).expect("oracle root");
        let tree = Tree::open(&store, size).expect("open");
        assert_eq!(*tree.root().as_bytes(), root.0, "size {size}");
    }
}

#[test]
fn entry_bundle_paths_are_the_oracles_data_tiles() {
    for t in new_tiles(0, 70_000)
        .into_iter()
        .filter(|t| t.kind == TileKind::Entries)
    {
        assert_eq!(t.to_path(), oracle_path(&t));
        let go = oracle_tile(&t).path();
        let parsed = tlog_tiles::Tile::from_path(&go).expect("oracle parses its path");
        assert!(parsed.is_data());
        assert_eq!(
            (parsed.level_index(), parsed.width()),
            (t.index, u32::from(t.width))
        );
    }
}

proptest! {
    #[test]
    fn the_tiles_a_tree_grows_are_the_oracles(old in 0u64..3_000_000, grow in 0u64..300_000) {
        let new = old + grow;
        let ours: Vec<TilePath> = new_tiles(old, new).into_iter().filter(|t| t.kind != TileKind::Entries).collect();
        let theirs = tlog_tiles::Tile::new_tiles(8, old, new);
        prop_assert_eq!(ours.len(), theirs.len());
        for (t, o) in ours.iter().zip(&theirs) {
            prop_assert_eq!(oracle_tile(t), *o);
        }
    }

    #[test]
    fn paths_parse_as_the_oracle_parses_them(level in 0u8..64, index in any::<u64>(), width in 1u16..=256, entries in any::<bool>()) {
        let t = if entries { TilePath::entries(index, width) } else { TilePath::hashes(level, index, width) };
        let ours = t.to_path();
        prop_assert_eq!(&ours, &oracle_path(&t));
        let go = oracle_tile(&t).path();
        let parsed = tlog_tiles::Tile::from_path(&go);
        prop_assert!(parsed.is_ok(), "oracle refuses {}", go);
        prop_assert_eq!(TilePath::parse(&ours), Ok(t));
    }

    #[test]
    fn what_the_oracle_refuses_we_refuse(s in "[0-9a-z./x]{0,30}") {
        // Go's form with height 8 in it; C2SP form for ours.
        let go = format!("tile/8/{s}");
        let c2sp = match s.strip_prefix("data/") {
            Some(rest) => format!("tile/entries/{rest}"),
            None => format!("tile/{s}"),
        };
        // The oracle accepts width 0 (`.p/0`), which C2SP forbids
        // ("between 1 and 255"): the one case we refuse and it does not.
        let theirs = tlog_tiles::Tile::from_path(&go).ok().filter(|t| t.width() != 0);
        let ours = TilePath::parse(&c2sp).ok();
        prop_assert_eq!(ours.is_some(), theirs.is_some(), "{} / {}", c2sp, go);
        if let (Some(o), Some(t)) = (ours, theirs) {
            prop_assert_eq!(oracle_tile(&o), t);
        }
    }
}
