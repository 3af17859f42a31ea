//! RFC 9162 section 2.1.1 hashing: SHA-256 with domain separation between
//! leaves and interior nodes.
//!
//! <https://www.rfc-editor.org/rfc/rfc9162#section-2.1.1>

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

/// Length in bytes of every hash in the tree (SHA-256).
pub const HASH_LEN: usize = 32;

/// A 32-byte SHA-256 value: a leaf hash, a node hash or a tree root.
///
/// Hashes that come from outside the process are parsed with
/// [`Hash::from_slice`], [`Hash::from_base64`] or [`Hash::from_hex`], which
/// reject anything that is not exactly 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; HASH_LEN]);

/// A byte string that should have been a 32-byte hash but was not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The value did not have exactly 32 bytes.
    #[error("a hash must be {HASH_LEN} bytes, got {got}")]
    Length {
        /// The length that was given.
        got: usize,
    },
    /// The text was not valid standard (padded) base64.
    #[error("hash is not valid base64")]
    Base64,
    /// The text was not valid hexadecimal.
    #[error("hash is not valid hex")]
    Hex,
}

impl Hash {
    /// Parses a hash from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, HashError> {
        let arr: [u8; HASH_LEN] = bytes
            .try_into()
            .map_err(|_| HashError::Length { got: bytes.len() })?;
        Ok(Hash(arr))
    }

    /// Parses a hash from standard base64 (RFC 4648 section 4, padded), the
    /// encoding used in C2SP checkpoints.
    pub fn from_base64(text: &str) -> Result<Self, HashError> {
        let bytes = B64.decode(text).map_err(|_| HashError::Base64)?;
        Self::from_slice(&bytes)
    }

    /// Parses a hash from 64 hexadecimal digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, HashError> {
        if text.len() != 2 * HASH_LEN {
            return Err(HashError::Length {
                got: text.len() / 2,
            });
        }
        let mut out = [0u8; HASH_LEN];
        for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(HashError::Hex)?;
            let lo = hex_val(pair[1]).ok_or(HashError::Hex)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Hash(out))
    }

    /// Standard padded base64 of the 32 bytes.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Lower-case hexadecimal of the 32 bytes.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(2 * HASH_LEN);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<[u8; HASH_LEN]> for Hash {
    fn from(value: [u8; HASH_LEN]) -> Self {
        Hash(value)
    }
}

/// The root of the empty tree: `MTH({}) = SHA-256()` (RFC 9162 section 2.1.1).
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The hash of a leaf: `MTH({d(0)}) = SHA-256(0x00 || d(0))`
/// (RFC 9162 section 2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    // SHA-256(0x00 || d(0))
    h.update([0x00]);
    h.update(data);
    Hash(h.finalize().into())
}

/// The hash of an interior node:
/// `SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))` (RFC 9162 section 2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_LEN];
    // SHA-256(0x01 || left || right)
    buf[0] = 0x01;
    buf[1..1 + HASH_LEN].copy_from_slice(&left.0);
    buf[1 + HASH_LEN..].copy_from_slice(&right.0);
    Hash(Sha256::digest(buf).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn leaf_hash_of_empty_leaf() {
        // RFC 6962 / transparency-dev test vector: leaf hash of the empty string.
        assert_eq!(
            leaf_hash(b"").to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn node_hash_domain_separated_from_leaf_hash() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut concat = vec![0x01];
        concat.extend_from_slice(&a.0);
        concat.extend_from_slice(&b.0);
        assert_eq!(node_hash(&a, &b), Hash(Sha256::digest(&concat).into()));
        assert_ne!(node_hash(&a, &b), leaf_hash(&concat[1..]));
    }

    #[test]
    fn parse_rejects_wrong_lengths_and_bad_text() {
        assert_eq!(
            Hash::from_slice(&[0; 31]),
            Err(HashError::Length { got: 31 })
        );
        assert_eq!(
            Hash::from_base64("ZG9uJ3QgY2FyZSAx"),
            Err(HashError::Length { got: 12 })
        );
        assert_eq!(Hash::from_base64("!!!"), Err(HashError::Base64));
        assert_eq!(Hash::from_hex(&"g".repeat(64)), Err(HashError::Hex));
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), Ok(h));
        assert_eq!(Hash::from_base64(&h.to_base64()), Ok(h));
    }
}
