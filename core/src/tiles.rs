//! C2SP tiled transparency logs: tile paths, entry bundles, and which
//! tiles a tree of a given size has (<https://c2sp.org/tlog-tiles>, the
//! copy in `docs/specs/tlog-tiles.md`).
//!
//! Paths are relative to the log's prefix: `checkpoint`,
//! `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`. Parsing accepts
//! only the canonical form (the one [`TilePath::to_path`] writes), so one
//! resource has one name.

use crate::merkle::{TILE_HEIGHT, TILE_WIDTH};

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TileKind {
    /// Merkle tree hashes at row `level` (tree height `8 * level`):
    /// `tile/<L>/...` (c2sp.org/tlog-tiles, "Merkle Tree").
    Hashes {
        /// The level, 0 to 63.
        level: u8,
    },
    /// Log entries, an entry bundle: `tile/entries/...`
    /// (c2sp.org/tlog-tiles, "Log entries").
    Entries,
}

/// One tile or entry bundle: what it holds, its index within its level
/// and its width (1 to 256; 256 is a full tile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TilePath {
    /// Hashes or entries.
    pub kind: TileKind,
    /// `<N>`: the tile's index within its level.
    pub index: u64,
    /// The number of hashes or entries: 256 for a full tile, 1 to 255
    /// for a partial one (`.p/<W>`).
    pub width: u16,
}

/// Why a path is not a tile path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TilePathError {
    /// Not `tile/...`.
    #[error("not a tile path (tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>])")]
    NotATile,
    /// `<L>` is not a decimal from 0 to 63 without leading zeros.
    #[error("tile level must be a decimal from 0 to 63 with no leading zeros")]
    Level,
    /// `<N>` is not in the canonical `x001/x234/067` form.
    #[error(
        "tile index must be 3-digit path elements, all but the last starting with x, with no leading x000"
    )]
    Index,
    /// `<N>` does not fit 64 bits.
    #[error("tile index out of range")]
    IndexRange,
    /// `<W>` is not a decimal from 1 to 255 without leading zeros.
    #[error("partial tile width must be a decimal from 1 to 255 with no leading zeros")]
    Width,
}

/// Digits of a decimal with no sign and no leading zeros ("0" alone is
/// fine), or `None`.
fn plain_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

impl TilePath {
    /// A hash tile.
    pub fn hashes(level: u8, index: u64, width: u16) -> TilePath {
        TilePath {
            kind: TileKind::Hashes { level },
            index,
            width,
        }
    }

    /// An entry bundle.
    pub fn entries(index: u64, width: u16) -> TilePath {
        TilePath {
            kind: TileKind::Entries,
            index,
            width,
        }
    }

    /// True for a full tile (256 wide).
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The tree level whose hashes the tile holds (entries: 0).
    pub fn level(&self) -> u8 {
        match self.kind {
            TileKind::Hashes { level } => level,
            TileKind::Entries => 0,
        }
    }

    /// The position, in the tile's row, of its first hash (or the index
    /// of its first entry): `N * 256`.
    pub fn first(&self) -> Option<u64> {
        self.index.checked_mul(TILE_WIDTH)
    }

    /// The smallest tree size that has this tile: its last hash covers
    /// leaves up to `(N * 256 + W) * 256^L`. `None` when that overflows
    /// (no tree has it).
    pub fn needs_size(&self) -> Option<u64> {
        let shift = TILE_HEIGHT * u32::from(self.level());
        if shift >= 64 {
            return None;
        }
        self.first()?
            .checked_add(u64::from(self.width))?
            .checked_mul(1u64 << shift)
    }

    /// Whether a tree of `size` leaves has this tile: its hashes (or
    /// entries) are all complete. A partial tile of width `W` stays
    /// servable once the full tile exists, as c2sp.org/tlog-tiles
    /// ("Partial Tiles") allows; its bytes never change. Empty tiles
    /// and widths above 256 do not exist.
    pub fn exists_in(&self, size: u64) -> bool {
        (1..=TILE_WIDTH).contains(&u64::from(self.width))
            && self.needs_size().is_some_and(|need| size >= need)
    }

    /// The path below the log's prefix, e.g. `tile/0/x001/x234/067.p/8`.
    pub fn to_path(&self) -> String {
        let mut s = String::from("tile/");
        match self.kind {
            TileKind::Hashes { level } => s.push_str(&level.to_string()),
            TileKind::Entries => s.push_str("entries"),
        }
        s.push('/');
        s.push_str(&encode_index(self.index));
        if !self.is_full() {
            s.push_str(".p/");
            s.push_str(&self.width.to_string());
        }
        s
    }

    /// Parses a path below the log's prefix, in canonical form only.
    pub fn parse(path: &str) -> Result<TilePath, TilePathError> {
        let rest = path.strip_prefix("tile/").ok_or(TilePathError::NotATile)?;
        let (level, rest) = rest.split_once('/').ok_or(TilePathError::NotATile)?;
        let kind = if level == "entries" {
            TileKind::Entries
        } else {
            let l = plain_decimal(level).ok_or(TilePathError::Level)?;
            if l > 63 {
                return Err(TilePathError::Level);
            }
            TileKind::Hashes { level: l as u8 }
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let w = plain_decimal(w).ok_or(TilePathError::Width)?;
                if !(1..TILE_WIDTH).contains(&w) {
                    return Err(TilePathError::Width);
                }
                (i, w as u16)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let index = parse_index(index_part)?;
        Ok(TilePath { kind, index, width })
    }
}

/// `<N>` as zero-padded 3-digit path elements, all but the last starting
/// with `x`: 1234067 is `x001/x234/067` (c2sp.org/tlog-tiles, "Merkle
/// Tree").
pub fn encode_index(mut n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        parts.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

fn parse_index(s: &str) -> Result<u64, TilePathError> {
    let parts: Vec<&str> = s.split('/').collect();
    let (last, firsts) = parts.split_last().ok_or(TilePathError::Index)?;
    let digits = |p: &str| p.len() == 3 && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(last) {
        return Err(TilePathError::Index);
    }
    let mut n: u64 = 0;
    for (i, p) in firsts.iter().enumerate() {
        let d = p
            .strip_prefix('x')
            .filter(|d| digits(d))
            .ok_or(TilePathError::Index)?;
        if i == 0 && d == "000" {
            return Err(TilePathError::Index);
        }
        let v: u64 = d.parse().map_err(|_| TilePathError::Index)?;
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(v))
            .ok_or(TilePathError::IndexRange)?;
    }
    let v: u64 = last.parse().map_err(|_| TilePathError::Index)?;
    n.checked_mul(1000)
        .and_then(|n| n.checked_add(v))
        .ok_or(TilePathError::IndexRange)
}

/// The tiles a tree of `new` leaves has that a tree of `old` leaves did
/// not, levels bottom up, entry bundles beside level 0: what a publisher
/// writes when the tree grows from `old` to `new` (every full tile
/// completed and the partial tile at the right edge of each level).
pub fn new_tiles(old: u64, new: u64) -> Vec<TilePath> {
    let mut out = Vec::new();
    if new <= old {
        return out;
    }
    let mut level: u32 = 0;
    while level * TILE_HEIGHT < 64 && new >> (level * TILE_HEIGHT) > 0 {
        let (old_n, new_n) = (old >> (level * TILE_HEIGHT), new >> (level * TILE_HEIGHT));
        if old_n != new_n {
            let mut push = |t: TilePath| {
                out.push(t);
                if level == 0 {
                    out.push(TilePath::entries(t.index, t.width));
                }
            };
            for n in (old_n / TILE_WIDTH)..(new_n / TILE_WIDTH) {
                push(TilePath::hashes(level as u8, n, TILE_WIDTH as u16));
            }
            let w = new_n % TILE_WIDTH;
            if w > 0 {
                push(TilePath::hashes(level as u8, new_n / TILE_WIDTH, w as u16));
            }
        }
        level += 1;
    }
    out
}

/// Why bytes are not an entry bundle, or entries cannot make one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// An entry longer than a uint16 length prefix can say.
    #[error("entry {index} is {len} bytes; an entry bundle holds at most 65535 bytes per entry")]
    TooLong {
        /// The entry's position in the bundle.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The bytes end inside a length prefix or an entry.
    #[error("entry bundle truncated in entry {0}")]
    Truncated(usize),
    /// More than 256 entries.
    #[error("entry bundle holds more than 256 entries")]
    TooMany,
}

/// Longest entry an entry bundle can hold.
pub const MAX_ENTRY: usize = u16::MAX as usize;

/// Appends one entry (big-endian uint16 length, then the bytes) to a
/// bundle being built (c2sp.org/tlog-tiles, "Log entries").
pub fn push_entry(out: &mut Vec<u8>, index: usize, entry: &[u8]) -> Result<(), BundleError> {
    let len = u16::try_from(entry.len()).map_err(|_| BundleError::TooLong {
        index,
        len: entry.len(),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(entry);
    Ok(())
}

/// The entries of an entry bundle, in order.
pub fn parse_bundle(mut bytes: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if out.len() as u64 == TILE_WIDTH {
            return Err(BundleError::TooMany);
        }
        let i = out.len();
        let (len, rest) = bytes
            .split_first_chunk::<2>()
            .ok_or(BundleError::Truncated(i))?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return Err(BundleError::Truncated(i));
        }
        let (entry, rest) = rest.split_at(len);
        out.push(entry);
        bytes = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_are_as_the_spec_writes_them() {
        assert_eq!(
            TilePath::hashes(0, 1234067, 256).to_path(),
            "tile/0/x001/x234/067"
        );
        assert_eq!(TilePath::hashes(1, 5, 17).to_path(), "tile/1/005.p/17");
        assert_eq!(TilePath::entries(0, 256).to_path(), "tile/entries/000");
        assert_eq!(
            TilePath::entries(1000, 1).to_path(),
            "tile/entries/x001/000.p/1"
        );
        for bad in [
            "tile/00/000",
            "tile/64/000",
            "tile/0/0",
            "tile/0/x000/005",
            "tile/0/001/005",
            "tile/0/x1/005",
            "tile/0/005.p/0",
            "tile/0/005.p/256",
            "tile/0/005.p/08",
            "tile/0/005.p/",
            "tile/entries",
            "tile/data/000",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "checkpoint",
            "tile/+1/000",
        ] {
            assert!(TilePath::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_specs_example_tree_of_70000() {
        // c2sp.org/tlog-tiles, "Partial Tiles": 273 full level-0 tiles,
        // one partial of width 112, one full level-1 tile, one partial
        // level-1 tile of width 17, one partial level-2 tile of width 1.
        let t = new_tiles(0, 70_000);
        let hashes: Vec<_> = t.iter().filter(|t| t.kind != TileKind::Entries).collect();
        let full0 = hashes
            .iter()
            .filter(|t| t.level() == 0 && t.is_full())
            .count();
        assert_eq!(full0, 273);
        assert!(hashes.contains(&&TilePath::hashes(0, 273, 112)));
        assert!(hashes.contains(&&TilePath::hashes(1, 0, 256)));
        assert!(hashes.contains(&&TilePath::hashes(1, 1, 17)));
        assert!(hashes.contains(&&TilePath::hashes(2, 0, 1)));
        assert_eq!(hashes.len(), 273 + 1 + 1 + 1 + 1);
        assert_eq!(t.len() - hashes.len(), 274, "one bundle per level-0 tile");
        // A tree of 256: one full level-0 tile and a level-1 tile of width 1.
        assert_eq!(
            new_tiles(0, 256)
                .into_iter()
                .filter(|t| t.kind != TileKind::Entries)
                .collect::<Vec<_>>(),
            vec![TilePath::hashes(0, 0, 256), TilePath::hashes(1, 0, 1)]
        );
        for t in new_tiles(0, 70_000) {
            assert!(t.exists_in(70_000), "{t:?}");
        }
        assert!(!TilePath::hashes(0, 273, 113).exists_in(70_000));
        assert!(!TilePath::hashes(0, 274, 256).exists_in(70_000));
        assert!(!TilePath::hashes(3, 0, 1).exists_in(70_000));
    }

    #[test]
    fn bundles_round_trip_and_refuse_damage() {
        let mut b = Vec::new();
        for (i, e) in [&b"a"[..], b"", &[7u8; 300]].iter().enumerate() {
            push_entry(&mut b, i, e).expect("fits");
        }
        assert_eq!(&b[..3], &[0, 1, b'a']);
        let got = parse_bundle(&b).expect("parses");
        assert_eq!(got, vec![&b"a"[..], b"", &[7u8; 300]]);
        assert_eq!(
            parse_bundle(&b[..b.len() - 1]),
            Err(BundleError::Truncated(2))
        );
        assert_eq!(parse_bundle(&[0]), Err(BundleError::Truncated(0)));
        assert!(matches!(
            push_entry(&mut Vec::new(), 3, &vec![0; 65_536]),
            Err(BundleError::TooLong {
                index: 3,
                len: 65_536
            })
        ));
    }

    proptest! {
        #[test]
        fn paths_round_trip(level in 0u8..64, index in any::<u64>(), width in 1u16..=256, entries in any::<bool>()) {
            let t = if entries { TilePath::entries(index, width) } else { TilePath::hashes(level, index, width) };
            prop_assert_eq!(TilePath::parse(&t.to_path()), Ok(t));
        }

        #[test]
        fn parse_never_panics_and_accepts_only_canonical(s in "tile/[0-9a-z./x]{0,40}") {
            if let Ok(t) = TilePath::parse(&s) {
                prop_assert_eq!(t.to_path(), s);
            }
        }

        #[test]
        fn new_tiles_cover_exactly_what_grew(old in 0u64..200_000, grow in 0u64..100_000) {
            let new = old + grow;
            let before = new_tiles(0, old);
            for t in new_tiles(old, new) {
                prop_assert!(t.exists_in(new));
                prop_assert!(!before.contains(&t), "{:?} was there at {}", t, old);
            }
        }

        #[test]
        fn bundles_parse_what_they_hold(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..40)) {
            let mut b = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                push_entry(&mut b, i, e).expect("fits");
            }
            let got = parse_bundle(&b).expect("parses");
            prop_assert_eq!(got, entries.iter().map(Vec::as_slice).collect::<Vec<_>>());
        }

        #[test]
        fn bundle_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = parse_bundle(&bytes);
        }
    }
}
