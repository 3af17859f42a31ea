//! The proof RPCs: inclusion (by index or leaf hash) and consistency,
//! each checked against the signed roots before it is served (RFC 9162
//! sections 2.1.3.2 and 2.1.4.2).

use tlog_core::Hash;
use tlog_core::merkle::prove::Prover;
use tlog_core::merkle::verify::{verify_consistency, verify_inclusion};

use super::parse_hash;
use super::reads::{corrupt, verified_checkpoint};
use std::sync::Arc;

use tlog_proto::v1 as pb;

use super::access::{Access, Ask};
use super::error::ServiceError;
use super::{LogService, Result, convert};
use crate::storage::LogStore;

impl<S: LogStore> LogService<S> {
    /// `GetInclusionProof`: what the RPC answers, once [`LogService::handle`] has
    /// authenticated the caller.
    pub(super) async fn inclusion_proof(
        &self,
        r: pb::GetInclusionProofRequest,
        access: Arc<Access>,
    ) -> Result<pb::InclusionProof> {
        access.check(Ask::log("read-proofs"))?;
        access.describe(match &r.leaf {
            Some(pb::get_inclusion_proof_request::Leaf::Index(i)) => {
                format!("inclusion of index {i} in size {}", r.tree_size)
            }
            Some(pb::get_inclusion_proof_request::Leaf::LeafHash(h)) => {
                format!(
                    "inclusion of leaf hash {} in size {}",
                    hex::encode(h),
                    r.tree_size
                )
            }
            None => "inclusion".to_owned(),
        });
        let latest = self.latest_size();
        let tree_size = if r.tree_size == 0 {
            latest
        } else {
            r.tree_size
        };
        if tree_size > latest {
            return Err(ServiceError::OutOfRange(format!(
                "tree_size {tree_size} is beyond the tree size {latest}"
            )));
        }
        let leaf = r
            .leaf
            .ok_or_else(|| ServiceError::invalid("leaf", "give an index or a leaf_hash"))?;
        let by_hash = match leaf {
            pb::get_inclusion_proof_request::Leaf::Index(i) => Err(i),
            pb::get_inclusion_proof_request::Leaf::LeafHash(h) => Ok(parse_hash("leaf_hash", &h)?),
        };
        let metrics = self.metrics.clone();
        let tiles = self.tiles.clone();
        let latest_cp = self.seq.latest();
        self.inline(|s| {
            let index = match by_hash {
                Err(i) => i,
                Ok(h) => s
                    .index_of(&h)?
                    .filter(|i| *i < latest)
                    .ok_or_else(|| ServiceError::NotFound(format!("no entry has leaf hash {h}")))?,
            };
            if index >= tree_size {
                return Err(ServiceError::OutOfRange(format!(
                    "leaf index {index} is not in a tree of size {tree_size}"
                )));
            }
            // The leaf hash comes from the tree (row 0), read with the
            // proof's own tile: no extra storage read.
            let (leaf_hash, hashes) =
                Prover::with_cache(s, &tiles).leaf_and_inclusion_proof(index, tree_size)?;
            let checkpoint = if tree_size == latest_cp.size {
                Some(convert::checkpoint(&latest_cp))
            } else {
                s.checkpoint(tree_size)?
                    .map(|note| {
                        verified_checkpoint(note, tree_size, &self.log_key, &self.origin, &metrics)
                    })
                    .transpose()?
            };
            // Never serve a proof that does not reach the signed root
            // (RFC 9162 §2.1.3.2): stored hashes may have rotted.
            if let Some(cp) = &checkpoint {
                let root = parse_hash("checkpoint", &cp.root_hash)?;
                verify_inclusion(index, tree_size, &leaf_hash, &hashes, &root).map_err(|e| {
                    corrupt(
                        &metrics,
                        format!("inclusion of {index} in {tree_size}: {e}"),
                    )
                })?;
            }
            metrics.inclusion_proofs.inc();
            Ok(pb::InclusionProof {
                index,
                tree_size,
                leaf_hash: leaf_hash.as_bytes().to_vec(),
                hashes: hashes.iter().map(|h| h.as_bytes().to_vec()).collect(),
                checkpoint,
            })
        })
    }

    /// `GetConsistencyProof`: what the RPC answers, once [`LogService::handle`] has
    /// authenticated the caller.
    pub(super) async fn consistency_proof(
        &self,
        r: pb::GetConsistencyProofRequest,
        access: Arc<Access>,
    ) -> Result<pb::ConsistencyProof> {
        access.check(Ask::log("read-proofs"))?;
        access.describe(format!("consistency {} -> {}", r.size1, r.size2));
        let latest = self.latest_size();
        let size2 = if r.size2 == 0 { latest } else { r.size2 };
        if size2 > latest {
            return Err(ServiceError::OutOfRange(format!(
                "size2 {size2} is beyond the tree size {latest}"
            )));
        }
        if r.size1 > size2 {
            return Err(ServiceError::invalid(
                "size1",
                format!("must not exceed size2 ({} > {size2})", r.size1),
            ));
        }
        let size1 = r.size1;
        let metrics = self.metrics.clone();
        let tiles = self.tiles.clone();
        let latest_cp = self.seq.latest();
        self.inline(|s| {
            let hashes = Prover::with_cache(s, &tiles).consistency_proof(size1, size2)?;
            // Checked against both signed roots when the log signed both
            // sizes (RFC 9162 §2.1.4.2).
            let root = |size: u64| -> Result<Option<Hash>> {
                if size == latest_cp.size {
                    return Ok(Some(latest_cp.root));
                }
                match s.checkpoint(size)? {
                    Some(note) => {
                        let cp =
                            verified_checkpoint(note, size, &self.log_key, &self.origin, &metrics)?;
                        Ok(Some(parse_hash("checkpoint", &cp.root_hash)?))
                    }
                    None => Ok(None),
                }
            };
            if size1 > 0
                && let (Some(r1), Some(r2)) = (root(size1)?, root(size2)?)
            {
                verify_consistency(size1, size2, &hashes, &r1, &r2).map_err(|e| {
                    corrupt(&metrics, format!("consistency {size1} -> {size2}: {e}"))
                })?;
            }
            metrics.consistency_proofs.inc();
            Ok(pb::ConsistencyProof {
                size1,
                size2,
                hashes: hashes.iter().map(|h| h.as_bytes().to_vec()).collect(),
            })
        })
    }
}
