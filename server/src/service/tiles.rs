//! The C2SP tiled read side (<https://c2sp.org/tlog-tiles>): the
//! checkpoint, hash tiles and entry bundles, answered by the same service
//! as the gRPC reads, so that authentication, the policy, rate limits,
//! metrics and the access record apply to them unchanged. The HTTP
//! transport is in [`crate::http`].
//!
//! Tiles are a view of the store: row `L` of the stored hashes is level
//! `L` of the tiles ([`tlog_core::merkle::store`]), so a tile is one read
//! of at most 256 hashes. Entry bundles are the committed leaf bytes, each
//! checked against its leaf hash before it is served.

use std::sync::Arc;

use tlog_core::tiles::{TileKind, TilePath};

use super::access::{Access, Ask};
use super::error::ServiceError;
use super::{LogService, Result};
use crate::storage::LogStore;

/// What a tiles reader asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileRead {
    /// `<prefix>/checkpoint`.
    Checkpoint,
    /// `<prefix>/tile/...`: a hash tile or an entry bundle.
    Tile(TilePath),
}

impl TileRead {
    /// The name access records and metrics give the read (one per kind,
    /// beside the gRPC method names).
    pub fn method(self) -> &'static str {
        match self {
            TileRead::Checkpoint => tlog_core::leaf::HttpRead::Checkpoint.name(),
            TileRead::Tile(t) => match t.kind {
                TileKind::Hashes { .. } => tlog_core::leaf::HttpRead::Tile.name(),
                TileKind::Entries => tlog_core::leaf::HttpRead::EntryBundle.name(),
            },
        }
    }
}

/// A tiles answer: the bytes, and whether they never change (full and
/// partial tiles, entry bundles) or are the mutable checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileBody {
    /// The response body.
    pub bytes: bytes::Bytes,
    /// True for tiles and bundles (cache for long), false for the
    /// checkpoint (cache for seconds at most).
    pub immutable: bool,
}

/// Full tiles and entry bundles already served, kept for the next reader:
/// their bytes never change, so a hot tile costs a map lookup. Bounded by
/// bytes; emptied when full (the hot set fills it again).
#[derive(Debug, Default)]
pub struct ServedTiles {
    map: std::sync::RwLock<(std::collections::HashMap<TilePath, bytes::Bytes>, usize)>,
}

/// Bytes of tiles kept at most (256 MiB would hold every level-0 tile of
/// 8M entries; the hot set of a log is far smaller).
const SERVED_TILES_BYTES: usize = 64 << 20;

impl ServedTiles {
    fn get(&self, t: &TilePath) -> Option<bytes::Bytes> {
        self.map.read().ok()?.0.get(t).cloned()
    }

    fn put(&self, t: TilePath, bytes: bytes::Bytes) {
        if let Ok(mut m) = self.map.write() {
            if m.1 + bytes.len() > SERVED_TILES_BYTES {
                m.0.clear();
                m.1 = 0;
            }
            m.1 += bytes.len();
            m.0.insert(t, bytes);
        }
    }
}

impl<S: LogStore> LogService<S> {
    /// Answers one tiles read, once [`LogService::handle`] has
    /// authenticated the caller. The policy actions are those of the gRPC
    /// reads that carry the same data: `read-checkpoints` for the
    /// checkpoint, `read-proofs` for hash tiles, `read-entries` for entry
    /// bundles.
    pub(super) async fn tile(&self, what: TileRead, access: Arc<Access>) -> Result<TileBody> {
        match what {
            TileRead::Checkpoint => {
                access.check(Ask::log("read-checkpoints"))?;
                Ok(TileBody {
                    bytes: bytes::Bytes::from(self.served_latest().note.clone()),
                    immutable: false,
                })
            }
            TileRead::Tile(t) => {
                let action = match t.kind {
                    TileKind::Hashes { .. } => "read-proofs",
                    TileKind::Entries => "read-entries",
                };
                access.check(Ask::log(action))?;
                access.describe(t.to_path());
                let size = self.latest_size();
                if !t.exists_in(size) {
                    return Err(ServiceError::NotFound(format!(
                        "{} is not in the tree of size {size}",
                        t.to_path()
                    )));
                }
                if let Some(bytes) = self.served_tiles.get(&t) {
                    return Ok(TileBody {
                        bytes,
                        immutable: true,
                    });
                }
                let bytes = bytes::Bytes::from(match t.kind {
                    TileKind::Hashes { .. } => self.inline(|s| tile_bytes(s, &self.metrics, t))?,
                    TileKind::Entries => {
                        let metrics = self.metrics.clone();
                        self.blocking(move |s| tile_bytes(s, &metrics, t)).await?
                    }
                });
                if t.is_full() {
                    self.served_tiles.put(t, bytes.clone());
                }
                Ok(TileBody {
                    bytes,
                    immutable: true,
                })
            }
        }
    }
}

/// The bytes of tile `t` of a tree that has it ([`TilePath::exists_in`]):
/// for a hash tile, its hashes from the stored row; for an entry bundle,
/// the committed leaves with their uint16 length prefixes, each checked
/// against its leaf hash (a leaf that does not match is `DATA_LOSS`).
/// What the HTTP listener serves and what `publish` writes.
pub fn tile_bytes<S: LogStore>(
    s: &S,
    metrics: &crate::ops::metrics::Metrics,
    t: TilePath,
) -> Result<Vec<u8>> {
    let first = t
        .first()
        .ok_or_else(|| ServiceError::NotFound(format!("{} is beyond any tree", t.to_path())))?;
    let width = u64::from(t.width);
    match t.kind {
        TileKind::Hashes { level } => {
            let mut hashes = Vec::with_capacity(t.width.into());
            s.read_hashes(level, first, width, &mut hashes)?;
            Ok(hashes.iter().flat_map(|h| *h.as_bytes()).collect())
        }
        TileKind::Entries => {
            let entries = super::reads::checked_entries(s, metrics, first, first + width)?;
            let mut out = Vec::with_capacity(entries.iter().map(|e| e.leaf.len() + 2).sum());
            for (i, e) in entries.iter().enumerate() {
                tlog_core::tiles::push_entry(&mut out, i, &e.leaf).map_err(|e| {
                    ServiceError::Internal(format!("entry bundle {}: {e}", t.to_path()))
                })?;
            }
            Ok(out)
        }
    }
}
