//! The read RPCs: checkpoints, entries (by range and by leaf hash), the
//! checkpoint stream and the log's description. Everything served is
//! verified first (leaf against tree hash, note against the log key), or
//! answered `DATA_LOSS`.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{BoxStream, parse_hash};
use crate::ops::metrics::Metrics;
use std::sync::Arc;

use tlog_proto::v1 as pb;

use super::access::{Access, Ask};
use super::error::ServiceError;
use super::{LogService, Result, convert};
use crate::storage::LogStore;

impl<S: LogStore> LogService<S> {
    /// `GetCheckpoint`: what the RPC answers, once [`LogService::handle`] has
    /// authenticated the caller.
    pub(super) async fn checkpoint(
        &self,
        r: pb::GetCheckpointRequest,
        access: Arc<Access>,
    ) -> Result<pb::GetCheckpointResponse> {
        access.check(Ask::log("read-checkpoints"))?;
        if r.size == 0 {
            return Ok(pb::GetCheckpointResponse {
                checkpoint: Some(convert::checkpoint(&self.served_latest())),
            });
        }
        if let Some(c) = self.witnessing.as_ref().and_then(|w| w.at(r.size)) {
            return Ok(pb::GetCheckpointResponse {
                checkpoint: Some(convert::checkpoint(&c)),
            });
        }
        let latest = self.seq.latest();
        if r.size == latest.size {
            return Ok(pb::GetCheckpointResponse {
                checkpoint: Some(convert::checkpoint(&latest)),
            });
        }
        if r.size > latest.size {
            return Err(ServiceError::OutOfRange(format!(
                "size {} is beyond the tree size {}",
                r.size, latest.size
            )));
        }
        let size = r.size;
        let note = self
            .blocking(move |s| Ok(s.checkpoint(size)?))
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("the log signed no checkpoint at size {size}"))
            })?;
        Ok(pb::GetCheckpointResponse {
            checkpoint: Some(verified_checkpoint(
                note,
                size,
                &self.log_key,
                &self.origin,
                &self.metrics,
            )?),
        })
    }

    /// `GetEntries`: what the RPC answers, once [`LogService::handle`] has
    /// authenticated the caller.
    pub(super) async fn entries(
        &self,
        r: pb::GetEntriesRequest,
        access: Arc<Access>,
    ) -> Result<BoxStream<pb::GetEntriesResponse>> {
        access.check(Ask::log("read-entries"))?;
        access.describe(format!("entries [{}, {})", r.start, r.end));
        let size = self.latest_size();
        if r.start >= r.end {
            return Err(ServiceError::invalid(
                "end",
                format!("must be greater than start ({} >= {})", r.start, r.end),
            ));
        }
        if r.end > size {
            return Err(ServiceError::OutOfRange(format!(
                "end {} is beyond the tree size {size}",
                r.end
            )));
        }
        let page = u64::from(self.limits.max_page_size);
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let mut shutdown = self.shutdown.clone();
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let mut start = r.start;
            while start < r.end {
                let end = r.end.min(start + page);
                let s = store.clone();
                let m = metrics.clone();
                let read = tokio::task::spawn_blocking(move || {
                    checked_entries(s.as_ref(), &m, start, end)
                })
                .await;
                let msg = match read {
                    Ok(Ok(entries)) => Ok(pb::GetEntriesResponse { entries }),
                    Ok(Err(e)) => Err(Status::from(e)),
                    Err(e) => Err(Status::from(ServiceError::Internal(e.to_string()))),
                };
                let failed = msg.is_err();
                tokio::select! {
                    sent = tx.send(msg) => if sent.is_err() || failed { return },
                    _ = shutdown.changed() => return,
                }
                start = end;
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)) as BoxStream<pb::GetEntriesResponse>)
    }

    /// `GetEntryByHash`: what the RPC answers, once [`LogService::handle`] has
    /// authenticated the caller.
    pub(super) async fn entry_by_hash(
        &self,
        r: pb::GetEntryByHashRequest,
        access: Arc<Access>,
    ) -> Result<pb::Entry> {
        access.check(Ask::log("read-entries"))?;
        access.describe(format!("entry by leaf hash {}", hex::encode(&r.leaf_hash)));
        let h = parse_hash("leaf_hash", &r.leaf_hash)?;
        let size = self.latest_size();
        self.inline(|s| {
            let index = s
                .index_of(&h)?
                .filter(|i| *i < size)
                .ok_or_else(|| ServiceError::NotFound(format!("no entry has leaf hash {h}")))?;
            let e = verified_entry(s, &self.metrics, index)?;
            if e.leaf_hash != h.as_bytes() {
                return Err(corrupt(
                    &self.metrics,
                    format!("the leaf-hash index points {h} at entry {index}, which differs"),
                ));
            }
            Ok(e)
        })
    }

    /// `WatchCheckpoints`: what the RPC answers, once [`LogService::handle`] has
    /// authenticated the caller.
    pub(super) async fn watch(
        &self,
        _r: pb::WatchCheckpointsRequest,
        access: Arc<Access>,
    ) -> Result<BoxStream<pb::SignedCheckpoint>> {
        access.check(Ask::log("watch"))?;
        let mut w = self.seq.subscribe();
        let mut shutdown = self.shutdown.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let cp = convert::checkpoint(&w.borrow_and_update().clone());
                tokio::select! {
                    sent = tx.send(Ok(cp)) => if sent.is_err() { return },
                    _ = shutdown.changed() => return,
                }
                tokio::select! {
                    changed = w.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)) as BoxStream<pb::SignedCheckpoint>)
    }

    /// `GetLogInfo`: what the RPC answers, once [`LogService::handle`] has
    /// authenticated the caller.
    pub(super) async fn log_info(
        &self,
        _r: pb::GetLogInfoRequest,
        access: Arc<Access>,
    ) -> Result<pb::LogInfo> {
        access.check(Ask::log("read-checkpoints"))?;
        Ok(pb::LogInfo {
            origin: self.origin.clone(),
            verifier_key: self.vkey.clone(),
            tree_size: self.latest_size(),
            max_event_bytes: self.limits.max_event_bytes,
            max_batch_events: self.limits.max_batch_events,
            max_page_size: self.limits.max_page_size,
            leaf_version: u32::from(tlog_core::leaf::LEAF_VERSION),
        })
    }
}

/// A checkpoint note from storage, served only if it verifies: signed by
/// the log's key for its origin (C2SP signed-note, tlog-checkpoint) and
/// stating `size`. A note changed on disk is `DATA_LOSS`, never served.
pub(super) fn verified_checkpoint(
    note: String,
    size: u64,
    key: &tlog_core::note::Verifiers,
    origin: &str,
    metrics: &Metrics,
) -> Result<pb::SignedCheckpoint> {
    let opened = tlog_core::checkpoint::open_stored(&note, key, origin, size)
        .map_err(|e| corrupt(metrics, e.to_string()))?;
    Ok(pb::SignedCheckpoint {
        root_hash: opened.checkpoint.root.as_bytes().to_vec(),
        size,
        note,
    })
}
/// The leaf at `index`, served only if it hashes to the leaf hash stored
/// in the tree (row 0) at `index`; a leaf rewritten on disk, or missing
/// where the tree has one, is `DATA_LOSS`.
pub(super) fn verified_entry<S: LogStore>(
    s: &S,
    metrics: &Metrics,
    index: u64,
) -> Result<pb::Entry> {
    let leaf = s.entry(index)?.ok_or_else(|| {
        corrupt(
            metrics,
            format!("entry {index} is in the tree but not stored"),
        )
    })?;
    let mut hashes = Vec::with_capacity(1);
    s.read_hashes(0, index, 1, &mut hashes)?;
    let e = entry(index, leaf);
    match hashes.first() {
        Some(h) if e.leaf_hash == h.as_bytes() => Ok(e),
        _ => Err(corrupt(
            metrics,
            format!("entry {index} does not match its leaf hash in the tree"),
        )),
    }
}
/// Counts and describes stored data that failed verification.
pub(super) fn corrupt(metrics: &Metrics, what: String) -> ServiceError {
    metrics.corruption_detected.inc();
    ServiceError::DataLoss(what)
}
/// Entries `[start, end)`, each leaf checked against the leaf hash stored
/// in the tree (row 0, one range read): a leaf that changed on disk is
/// refused rather than streamed.
pub(super) fn checked_entries<S: LogStore>(
    s: &S,
    metrics: &Metrics,
    start: u64,
    end: u64,
) -> Result<Vec<pb::Entry>> {
    let rows = s.entries(start, end)?;
    let mut hashes = Vec::with_capacity(rows.len());
    s.read_hashes(0, start, end - start, &mut hashes)?;
    if rows.len() != hashes.len() {
        return Err(corrupt(
            metrics,
            format!(
                "entries [{start}, {end}): {} leaves for {} tree hashes",
                rows.len(),
                hashes.len()
            ),
        ));
    }
    rows.into_iter()
        .zip(hashes)
        .map(|((i, leaf), h)| {
            let e = entry(i, leaf);
            if e.leaf_hash != h.as_bytes() {
                return Err(corrupt(
                    metrics,
                    format!("entry {i} does not match its leaf hash"),
                ));
            }
            Ok(e)
        })
        .collect()
}
pub(super) fn entry(index: u64, leaf: Vec<u8>) -> pb::Entry {
    pb::Entry {
        index,
        leaf_hash: tlog_core::leaf_hash(&leaf).as_bytes().to_vec(),
        leaf,
    }
}
