//! Reading a log: checkpoints, entries and proofs (every answer verified
//! against the pinned key and the trusted state), and the `fetch_*` calls
//! that return what the log said without verifying it, for callers that
//! verify it themselves (the monitor).

use std::time::Duration;
use tlog_core::Hash;
use tlog_core::checkpoint::SignedCheckpoint;
use tlog_core::event::{Action, Timestamp};
use tlog_core::leaf::{AnyLeaf, decode_any};

use tlog_core::merkle::verify::{InclusionVerifier, parse_proof};
use tlog_proto::v1 as pb;

use crate::{Client, ClientError, VerifiedEntry, timed, verification};

impl Client {
    /// The latest checkpoint, verified and proven consistent with the
    /// trusted one.
    pub async fn checkpoint(&mut self) -> Result<SignedCheckpoint, ClientError> {
        let r = self
            .call("GetCheckpoint", false, |mut rpc| async move {
                rpc.get_checkpoint(pb::GetCheckpointRequest { size: 0 })
                    .await
            })
            .await?;
        let cp =
            self.verify_checkpoint(&r.checkpoint.ok_or_else(|| verification("no checkpoint"))?)?;
        self.observe(cp, true).await
    }

    /// The checkpoint the log signed at exactly `size`, verified and
    /// proven consistent with the trusted one.
    pub async fn checkpoint_at(&mut self, size: u64) -> Result<SignedCheckpoint, ClientError> {
        let r = self
            .call("GetCheckpoint", false, |mut rpc| async move {
                rpc.get_checkpoint(pb::GetCheckpointRequest { size }).await
            })
            .await?;
        let cp =
            self.verify_checkpoint(&r.checkpoint.ok_or_else(|| verification("no checkpoint"))?)?;
        if size != 0 && cp.checkpoint.size != size {
            return Err(verification(format!(
                "asked for the checkpoint at size {size}, got size {}",
                cp.checkpoint.size
            )));
        }
        self.observe(cp, size == 0).await
    }

    /// The leaf bytes of entry `index` (not yet proven: use
    /// [`Client::prove_index`] for that).
    async fn leaf_at(&mut self, index: u64) -> Result<Vec<u8>, ClientError> {
        let end = index
            .checked_add(1)
            .ok_or_else(|| ClientError::Usage(format!("index {index} is too large")))?;
        let mut stream = self.fetch_entries(index, end).await?;
        let leaf = stream
            .next_page()
            .await?
            .and_then(|page| page.into_iter().next())
            .map(|(_, leaf)| leaf)
            .ok_or_else(|| verification(format!("entry {index} was not served")))?;
        // Read the stream's end too: a stream dropped before its trailers
        // is reset, and a connection that resets thousands of streams is
        // closed by the server's HTTP/2 layer as abusive.
        stream.finish().await;
        Ok(leaf)
    }

    /// Proves `leaf` is entry `index` of the tree of `checkpoint`
    /// (fetching the inclusion proof for that size).
    pub async fn prove_leaf(
        &mut self,
        index: u64,
        leaf: Vec<u8>,
        checkpoint: &SignedCheckpoint,
    ) -> Result<VerifiedEntry, ClientError> {
        let proof = self
            .fetch_inclusion(index, checkpoint.checkpoint.size)
            .await?;
        let hash = tlog_core::leaf_hash(&leaf);
        let mut verifier =
            InclusionVerifier::new(checkpoint.checkpoint.size, checkpoint.checkpoint.root);
        Self::proven(
            index,
            leaf,
            hash,
            proof,
            checkpoint.clone(),
            false,
            &mut verifier,
        )
    }

    /// Fetches entry `index` and proves it in the latest checkpoint.
    pub async fn prove_index(&mut self, index: u64) -> Result<VerifiedEntry, ClientError> {
        let cp = self.checkpoint().await?;
        if index >= cp.checkpoint.size {
            return Err(ClientError::Refused {
                code: tonic::Code::OutOfRange,
                message: format!(
                    "index {index} is beyond the log's size {}",
                    cp.checkpoint.size
                ),
            });
        }
        let leaf = self.leaf_at(index).await?;
        self.prove_leaf(index, leaf, &cp).await
    }

    /// Finds the entry with this leaf hash and proves it in the latest
    /// checkpoint.
    pub async fn prove_hash(&mut self, leaf_hash: &Hash) -> Result<VerifiedEntry, ClientError> {
        let cp = self.checkpoint().await?;
        let want = leaf_hash.as_bytes().to_vec();
        let e = self
            .call("GetEntryByHash", false, |mut rpc| {
                let leaf_hash = want.clone();
                async move {
                    rpc.get_entry_by_hash(pb::GetEntryByHashRequest { leaf_hash })
                        .await
                }
            })
            .await?;
        if tlog_core::leaf_hash(&e.leaf) != *leaf_hash {
            return Err(verification(format!(
                "the server sent entry {} for leaf hash {leaf_hash}, but its bytes hash to something else",
                e.index
            )));
        }
        if e.index >= cp.checkpoint.size {
            return Err(verification(format!(
                "the server places leaf {leaf_hash} at index {}, beyond its own checkpoint size {}",
                e.index, cp.checkpoint.size
            )));
        }
        self.prove_leaf(e.index, e.leaf, &cp).await
    }

    /// The latest checkpoint with its signature verified, without checking
    /// it against the trusted state (for monitors, which keep their own).
    pub async fn fetch_checkpoint(&mut self) -> Result<SignedCheckpoint, ClientError> {
        let note = self.fetch_checkpoint_unverified().await?;
        self.verify_checkpoint(&note)
    }

    /// The latest checkpoint as the server sent it, not verified: a monitor
    /// keeps a checkpoint whose signature fails as evidence. Verify it with
    /// [`Client::verify_checkpoint`].
    pub async fn fetch_checkpoint_unverified(
        &mut self,
    ) -> Result<pb::SignedCheckpoint, ClientError> {
        let r = self
            .call("GetCheckpoint", false, |mut rpc| async move {
                rpc.get_checkpoint(pb::GetCheckpointRequest { size: 0 })
                    .await
            })
            .await?;
        r.checkpoint.ok_or_else(|| verification("no checkpoint"))
    }

    /// The log's consistency proof from `size1` to `size2`, parsed but not
    /// verified (the caller holds the roots).
    pub async fn fetch_consistency(
        &mut self,
        size1: u64,
        size2: u64,
    ) -> Result<Vec<Hash>, ClientError> {
        let p = self
            .call("GetConsistencyProof", false, |mut rpc| async move {
                rpc.get_consistency_proof(pb::GetConsistencyProofRequest { size1, size2 })
                    .await
            })
            .await?;
        parse_proof(&p.hashes)
            .map_err(|e| verification(format!("consistency proof {size1} -> {size2}: {e}")))
    }

    /// The log's inclusion proof for `index` in the tree of `size`, parsed
    /// but not verified.
    pub async fn fetch_inclusion(
        &mut self,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, ClientError> {
        let p = self
            .call("GetInclusionProof", false, |mut rpc| async move {
                rpc.get_inclusion_proof(pb::GetInclusionProofRequest {
                    leaf: Some(pb::get_inclusion_proof_request::Leaf::Index(index)),
                    tree_size: size,
                })
                .await
            })
            .await?;
        if p.index != index {
            return Err(verification(format!(
                "asked for the proof of entry {index}, the server answered for entry {}",
                p.index
            )));
        }
        parse_proof(&p.hashes).map_err(|e| verification(format!("inclusion proof {index}: {e}")))
    }

    /// Streams the leaves of entries `[start, end)`, in pages. The leaves
    /// are not verified: a monitor hashes them into the tree and compares
    /// the root with a signed checkpoint.
    pub async fn fetch_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<EntryStream, ClientError> {
        let inner = match &self.tiles {
            // From tiles, pages go straight to the reader.
            Some(t) => Pages::Tiles(timed(self.timeout, "GetEntries", t.pages(start, end)).await?),
            None => Pages::Grpc(Box::new(
                timed(
                    self.timeout,
                    "GetEntries",
                    self.rpc.get_entries(pb::GetEntriesRequest { start, end }),
                )
                .await?
                .into_inner(),
            )),
        };
        Ok(EntryStream {
            inner,
            next: start,
            end,
            timeout: self.timeout,
        })
    }

    /// Opens the log's stream of new checkpoints. Pass each message to
    /// [`Client::watched`].
    pub async fn fetch_checkpoint_stream(
        &mut self,
    ) -> Result<tonic::Streaming<pb::SignedCheckpoint>, ClientError> {
        let s = timed(
            self.timeout,
            "WatchCheckpoints",
            self.rpc.watch_checkpoints(pb::WatchCheckpointsRequest {}),
        )
        .await?;
        Ok(s.into_inner())
    }

    /// Verifies a checkpoint from the watch stream and proves it consistent
    /// with the trusted one.
    pub async fn watched(
        &mut self,
        cp: pb::SignedCheckpoint,
    ) -> Result<SignedCheckpoint, ClientError> {
        let cp = self.verify_checkpoint(&cp)?;
        self.observe(cp, true).await
    }

    /// An artifact's history as of the latest checkpoint: every entry the
    /// log returns for the query, each proven included in that checkpoint
    /// and checked to really match the query (name, version, action, time
    /// window). The log could still leave entries out; a monitor that
    /// reads every entry catches that.
    ///
    /// `progress` is called with the number of entries verified so far.
    pub async fn query(
        &mut self,
        q: &ArtifactQuery,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(SignedCheckpoint, Vec<VerifiedEntry>), ClientError> {
        let cp = self.checkpoint().await?;
        let size = cp.checkpoint.size;
        let mut cursor = String::new();
        let mut out: Vec<VerifiedEntry> = Vec::new();
        loop {
            let req = pb::QueryArtifactRequest {
                name: q.name.clone(),
                version: q.version.clone().unwrap_or_default(),
                action: q.action.map(|a| i32::from(a.code())).unwrap_or(0),
                since: q.since.map(|t| tlog_proto::prost_types::Timestamp {
                    seconds: t.seconds,
                    nanos: i32::try_from(t.nanos).unwrap_or(0),
                }),
                until: q.until.map(|t| tlog_proto::prost_types::Timestamp {
                    seconds: t.seconds,
                    nanos: i32::try_from(t.nanos).unwrap_or(0),
                }),
                page_size: 0,
                cursor: std::mem::take(&mut cursor),
            };
            let page = self
                .call("QueryArtifact", false, |mut rpc| {
                    let req = req.clone();
                    async move { rpc.query_artifact(req).await }
                })
                .await?;
            // Prove the page's entries concurrently.
            let mut tasks = tokio::task::JoinSet::new();
            for e in page.entries {
                if e.index >= size {
                    continue; // appended after the checkpoint we prove against
                }
                let mut c = self.clone();
                let cp = cp.clone();
                tasks.spawn(async move { c.prove_leaf(e.index, e.leaf, &cp).await });
            }
            let mut verified = Vec::new();
            while let Some(r) = tasks.join_next().await {
                let v =
                    r.map_err(|e| ClientError::Usage(format!("internal task failed: {e}")))??;
                q.check(&v)?;
                verified.push(v);
                progress(out.len() as u64 + verified.len() as u64);
            }
            verified.sort_by_key(|v| v.index);
            if let (Some(first), Some(last)) = (verified.first(), out.last())
                && first.index <= last.index
            {
                return Err(verification("the query's pages overlap or go backwards"));
            }
            out.extend(verified);
            if page.next_cursor.is_empty() {
                break;
            }
            cursor = page.next_cursor;
        }
        Ok((cp, out))
    }
}

/// Pages of entries from [`Client::fetch_entries`], checked to arrive in order
/// with no gap.
#[derive(Debug)]
pub struct EntryStream {
    inner: Pages,
    next: u64,
    end: u64,
    timeout: Duration,
}

/// Where pages come from: the gRPC stream, or straight from tiles (no
/// encoding in between).
#[derive(Debug)]
enum Pages {
    Grpc(Box<tonic::Streaming<pb::GetEntriesResponse>>),
    Tiles(tokio::sync::mpsc::Receiver<Result<pb::GetEntriesResponse, tonic::Status>>),
}

impl Pages {
    async fn message(&mut self) -> Result<Option<pb::GetEntriesResponse>, tonic::Status> {
        match self {
            Pages::Grpc(s) => s.message().await,
            Pages::Tiles(rx) => rx.recv().await.transpose(),
        }
    }
}

impl EntryStream {
    /// Reads what is left of the stream after the last page (its end and
    /// trailers), so that it ends cleanly instead of being reset.
    pub async fn finish(&mut self) {
        while let Ok(Ok(Some(_))) = tokio::time::timeout(self.timeout, self.inner.message()).await {
        }
    }

    /// The next page of `(index, leaf)`, or `None` when the range is done.
    pub async fn next_page(&mut self) -> Result<Option<Vec<(u64, Vec<u8>)>>, ClientError> {
        if self.next >= self.end {
            return Ok(None);
        }
        let page = timed(self.timeout, "GetEntries", self.inner.message()).await?;
        let Some(page) = page else {
            return Err(verification(format!(
                "the entry stream ended at {} before {}",
                self.next, self.end
            )));
        };
        let mut out = Vec::with_capacity(page.entries.len());
        for e in page.entries {
            if e.index != self.next || e.index >= self.end {
                return Err(verification(format!(
                    "expected entry {}, the server sent entry {}",
                    self.next, e.index
                )));
            }
            self.next += 1;
            out.push((e.index, e.leaf));
        }
        if out.is_empty() {
            return Err(verification("the server sent an empty page of entries"));
        }
        Ok(Some(out))
    }
}

/// What [`Client::query`] asks for.
#[derive(Debug, Clone, Default)]
pub struct ArtifactQuery {
    /// The artifact name (exact).
    pub name: String,
    /// Only this version.
    pub version: Option<String>,
    /// Only this action.
    pub action: Option<Action>,
    /// Integrated at or after.
    pub since: Option<Timestamp>,
    /// Integrated before.
    pub until: Option<Timestamp>,
}

impl ArtifactQuery {
    /// Checks that a returned entry really matches the query.
    fn check(&self, e: &VerifiedEntry) -> Result<(), ClientError> {
        let bad = |why: &str| {
            verification(format!(
                "the log answered the query with entry {} {why}",
                e.index
            ))
        };
        let leaf = match decode_any(&e.leaf) {
            Ok(AnyLeaf::Event(l)) => l,
            Ok(AnyLeaf::Access(_)) => return Err(bad("which is an access record")),
            Err(err) => return Err(bad(&format!("which does not decode: {err}"))),
        };
        if leaf.event.artifact.name != self.name {
            return Err(bad(&format!(
                "about artifact {:?}",
                leaf.event.artifact.name
            )));
        }
        if self
            .version
            .as_ref()
            .is_some_and(|v| *v != leaf.event.artifact.version)
        {
            return Err(bad(&format!(
                "of version {:?}",
                leaf.event.artifact.version
            )));
        }
        if self.action.is_some_and(|a| a != leaf.event.action) {
            return Err(bad(&format!("with action {}", leaf.event.action.as_str())));
        }
        let t = leaf.integrated_at.as_nanos();
        if self.since.is_some_and(|s| t < s.as_nanos())
            || self.until.is_some_and(|u| t >= u.as_nanos())
        {
            return Err(bad("integrated outside the asked time window"));
        }
        Ok(())
    }
}
