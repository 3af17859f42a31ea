//! Merkle trees exactly as RFC 9162 section 2.1 defines them.
//!
//! - [`reference`](mod@reference): the RFC's recursive definitions (`MTH`, `PATH`, `PROOF`,
//!   `SUBPROOF`) over a slice of leaf hashes, kept as the executable
//!   specification that the fast code is tested against.
//! - [`store`]: the storage trait for tile-shaped hashes and an in-memory
//!   implementation.
//! - [`tree`]: the append-only tree state (a compact range, the right edge).
//! - [`prove`]: inclusion and consistency proofs read from a store.
//! - [`cache`]: a shared cache of tile interiors for fast proofs.
//! - [`verify`]: proof verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2).

pub mod cache;
pub mod prove;
pub mod reference;
pub mod store;
pub mod tree;
pub mod verify;

/// The number of tree levels one tile spans, as in C2SP `tlog-tiles`: a
/// full tile holds `2^TILE_HEIGHT = 256` hashes.
///
/// <https://c2sp.org/tlog-tiles>
pub const TILE_HEIGHT: u32 = 8;

/// The number of hashes in a full tile (256).
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// The largest power of two strictly smaller than `n` (the RFC's `k`), for
/// `n >= 2`.
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::split_point;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }
}
