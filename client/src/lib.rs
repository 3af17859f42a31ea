//! `tlog-client`: a client of the transparency log that trusts nothing it
//! is told.
//!
//! Every checkpoint it returns has had its C2SP signature verified with the
//! pinned verifier key, and every entry comes with an RFC 9162 inclusion
//! proof that was verified against such a checkpoint. Errors tell a
//! verification failure (the log misbehaved or was tampered with) apart from
//! a transport failure or a refusal by the server.
//!
//! One naming rule: a `fetch_*` call returns what the log said without the
//! checks this client makes for itself (proofs, the trusted state), for a
//! caller that makes them itself, as the monitor does (`fetch_checkpoint`
//! still checks the signature); every other call returns only what it
//! verified.
//!
//! - [`connect`](ConnectOptions): addresses, TLS, credentials, timeouts
//!   and retries;
//! - [`trust`]: the one trust step between two checkpoints;
//! - queries: checkpoints, entries, proofs and artifact queries;
//! - [`ClientError`]: what went wrong, and [`Misbehavior`], the evidence.
//!
//! The `tlog` command-line tool is built on this library.

mod connect;
pub mod convert;
mod error;
mod queries;
pub mod state;
pub mod tiles;
pub mod trust;

pub use connect::{ConnectOptions, Credentials, DEFAULT_RETRIES, DEFAULT_TIMEOUT};
pub use error::{ClientError, Misbehavior};
pub use queries::{ArtifactQuery, EntryStream};

use error::{retryable, timed, verification};

use std::sync::Arc;
use std::time::Duration;

use state::StateFile;
use tokio::sync::Mutex;

use tlog_core::Hash;
use tlog_core::checkpoint::{self, SignedCheckpoint};
use tlog_core::event::ArtifactEvent;
use tlog_core::merkle::verify::{InclusionVerifier, parse_proof};
use tlog_core::note::Verifiers;
use tlog_proto::v1 as pb;
use tonic::transport::Channel;

/// An entry whose inclusion in a verified checkpoint was proven.
#[derive(Debug, Clone)]
pub struct VerifiedEntry {
    /// Index in the log.
    pub index: u64,
    /// The exact leaf bytes.
    pub leaf: Vec<u8>,
    /// `SHA-256(0x00 || leaf)`.
    pub leaf_hash: Hash,
    /// The inclusion proof.
    pub proof: Vec<Hash>,
    /// The verified checkpoint the proof is against.
    pub checkpoint: SignedCheckpoint,
    /// True when the log returned an existing entry for a retry.
    pub duplicate: bool,
}

type Rpc = pb::log_client::LogClient<
    tonic::service::interceptor::InterceptedService<Channel, Credentials>,
>;

/// A connection to one log, pinned to its verifier key, remembering the
/// newest checkpoint it verified.
#[derive(Debug, Clone)]
pub struct Client {
    rpc: Rpc,
    origin: String,
    vkey: String,
    verifiers: Verifiers,
    /// With [`Client::connect_tiles`]: the tiles, read directly for entry
    /// streams.
    tiles: Option<tiles::TilesLog>,
    /// The witness policy checkpoints must satisfy, if any.
    policy: Option<Arc<tlog_core::policy::Policy>>,
    trust: Arc<Mutex<Trust>>,
    timeout: Duration,
    retries: u32,
    /// True once a checkpoint of the log verified with the pinned key:
    /// nothing is appended before (a wrong key would append and then fail
    /// to verify the answer).
    key_checked: bool,
}

/// The newest verified checkpoint, and where it is kept.
#[derive(Debug, Default)]
struct Trust {
    latest: Option<SignedCheckpoint>,
    file: Option<StateFile>,
}

impl Client {
    /// The pinned verifier key.
    pub fn verifier_key(&self) -> &str {
        &self.vkey
    }

    /// The newest checkpoint this client has verified and trusts.
    pub async fn trusted(&self) -> Option<SignedCheckpoint> {
        self.trust.lock().await.latest.clone()
    }

    /// Checks a verified checkpoint against the trusted one and, when it
    /// is newer and proven consistent, trusts it (and saves it).
    ///
    /// - Same size: the roots must be equal.
    /// - Larger: a consistency proof from the trusted size must verify
    ///   (RFC 9162 §2.1.4.2).
    /// - Smaller: when `claims_latest`, the log went back in time; else (a
    ///   proof against an older tree) a consistency proof up to the
    ///   trusted checkpoint must verify.
    ///
    /// Failures are [`ClientError::Misbehavior`] with both checkpoints.
    pub async fn observe(
        &mut self,
        cp: SignedCheckpoint,
        claims_latest: bool,
    ) -> Result<SignedCheckpoint, ClientError> {
        let shared = self.trust.clone();
        let mut trust = shared.lock().await;
        let Some(old) = trust.latest.clone() else {
            trust.set(&cp)?;
            return Ok(cp);
        };
        let misbehavior = |what: String, proof: Vec<Hash>| {
            ClientError::Misbehavior(Box::new(Misbehavior {
                what,
                trusted: old.raw.clone(),
                seen: cp.raw.clone(),
                proof,
            }))
        };
        let step = trust::step(head(&old), head(&cp), claims_latest)
            .map_err(|c| misbehavior(c.to_string(), Vec::new()))?;
        if let trust::Step::Prove { newer, .. } = step {
            let (small, big) = if newer { (&old, &cp) } else { (&cp, &old) };
            self.consistent(small, big, &old, &cp).await?;
        }
        if matches!(
            step,
            trust::Step::FromEmpty | trust::Step::Prove { newer: true, .. }
        ) {
            trust.set(&cp)?;
        }
        Ok(cp)
    }

    /// The log's origin (from the pinned key).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Verifies a signed checkpoint from the wire: the log's signature,
    /// and with a witness policy, the quorum of cosignatures.
    pub fn verify_checkpoint(
        &self,
        cp: &pb::SignedCheckpoint,
    ) -> Result<SignedCheckpoint, ClientError> {
        let opened = checkpoint::open(cp.note.as_bytes(), &self.verifiers, &self.origin)
            .map_err(|e| verification(format!("checkpoint: {e}")))?;
        if let Some(p) = &self.policy {
            p.check(cp.note.as_bytes(), self.verifiers.iter().next())
                .map_err(|e| ClientError::Unwitnessed(e.to_string()))?;
        }
        if opened.checkpoint.size != cp.size
            || opened.checkpoint.root.as_bytes()[..] != cp.root_hash[..]
        {
            return Err(ClientError::Verification(
                "checkpoint fields differ from the signed note".into(),
            ));
        }
        Ok(opened)
    }

    /// Verifies the answers to one append call. Answers that carry the same
    /// checkpoint (a batch's do) have it verified and checked against the
    /// trusted state once, and their proofs verified by one
    /// [`InclusionVerifier`], which shares the work of neighbouring proofs.
    async fn verify_appends(
        &mut self,
        answers: Vec<pb::AppendResponse>,
    ) -> Result<Vec<VerifiedEntry>, ClientError> {
        let indexes: Vec<u64> = answers.iter().map(|r| r.index).collect();
        self.verify_appends_inner(answers)
            .await
            .map_err(|e| match e {
                ClientError::Verification(reason) => {
                    ClientError::AppendedUnverified { indexes, reason }
                }
                e @ ClientError::Unwitnessed(_) => ClientError::AppendedUnverified {
                    indexes,
                    reason: e.to_string(),
                },
                other => other,
            })
    }

    async fn verify_appends_inner(
        &mut self,
        answers: Vec<pb::AppendResponse>,
    ) -> Result<Vec<VerifiedEntry>, ClientError> {
        let mut out = Vec::with_capacity(answers.len());
        let mut current: Option<(pb::SignedCheckpoint, SignedCheckpoint, InclusionVerifier)> = None;
        for r in answers {
            let wire = r
                .checkpoint
                .ok_or_else(|| verification("append answer without a checkpoint"))?;
            let (_, checkpoint, verifier) = match current.take() {
                Some(same) if same.0 == wire => current.insert(same),
                _ => {
                    let cp = self.verify_checkpoint(&wire)?;
                    let cp = self.observe(cp, false).await?;
                    let v = InclusionVerifier::new(cp.checkpoint.size, cp.checkpoint.root);
                    current.insert((wire, cp, v))
                }
            };
            out.push(Self::verify_entry(
                r.index,
                Vec::from(r.leaf),
                &r.leaf_hash,
                &r.inclusion_proof,
                checkpoint.clone(),
                r.duplicate,
                verifier,
            )?);
        }
        Ok(out)
    }

    fn verify_entry(
        index: u64,
        leaf: Vec<u8>,
        claimed_hash: &[u8],
        proof: &[impl AsRef<[u8]>],
        checkpoint: SignedCheckpoint,
        duplicate: bool,
        verifier: &mut InclusionVerifier,
    ) -> Result<VerifiedEntry, ClientError> {
        let leaf_hash = tlog_core::leaf_hash(&leaf);
        if leaf_hash.as_bytes()[..] != claimed_hash[..] {
            return Err(verification(format!(
                "entry {index}: the served leaf hashes to {leaf_hash}, not to the leaf hash given"
            )));
        }
        let proof = parse_proof(proof)
            .map_err(|e| verification(format!("entry {index}: inclusion proof: {e}")))?;
        Self::proven(
            index, leaf, leaf_hash, proof, checkpoint, duplicate, verifier,
        )
    }

    /// Checks `proof` leads from `leaf_hash` at `index` to the
    /// checkpoint's root (RFC 9162 §2.1.3.2); `verifier` must be for that
    /// checkpoint's size and root.
    fn proven(
        index: u64,
        leaf: Vec<u8>,
        leaf_hash: Hash,
        proof: Vec<Hash>,
        checkpoint: SignedCheckpoint,
        duplicate: bool,
        verifier: &mut InclusionVerifier,
    ) -> Result<VerifiedEntry, ClientError> {
        if verifier.size() != checkpoint.checkpoint.size
            || *verifier.root() != checkpoint.checkpoint.root
        {
            return Err(verification(format!(
                "entry {index}: the proof verifier is for another checkpoint"
            )));
        }
        verifier
            .verify(index, &leaf_hash, &proof)
            .map_err(|e| verification(format!("entry {index}: inclusion proof: {e}")))?;
        Ok(VerifiedEntry {
            index,
            leaf,
            leaf_hash,
            proof,
            checkpoint,
            duplicate,
        })
    }

    /// Appends one event (retrying transient failures; safe because the
    /// log deduplicates by source and event id); returns it with its
    /// verified proof.
    pub async fn append(&mut self, event: &ArtifactEvent) -> Result<VerifiedEntry, ClientError> {
        self.check_key().await?;
        let wire = convert::event(event);
        let r = self
            .call("Append", true, |mut rpc| {
                let event = Some(wire.clone());
                async move { rpc.append(pb::AppendRequest { event }).await }
            })
            .await?;
        self.verify_appends(vec![r])
            .await?
            .pop()
            .ok_or_else(|| verification("append answer missing"))
    }

    /// Appends events in one all-or-nothing call (retried like
    /// [`Client::append`]); each comes back verified.
    pub async fn append_batch(
        &mut self,
        events: &[ArtifactEvent],
    ) -> Result<Vec<VerifiedEntry>, ClientError> {
        self.check_key().await?;
        let wire: Vec<pb::ArtifactEvent> = events.iter().map(convert::event).collect();
        let r = self
            .call("AppendBatch", true, |mut rpc| {
                let events = wire.clone();
                async move { rpc.append_batch(pb::AppendBatchRequest { events }).await }
            })
            .await?;
        if r.results.len() != events.len() {
            return Err(verification("batch answer has the wrong number of results"));
        }
        self.verify_appends(r.results).await
    }

    /// Proves that `new` extends `old` (fetching the proof from the log).
    /// A failure here is [`ClientError::Misbehavior`] with both.
    pub async fn prove_consistency(
        &mut self,
        old: &SignedCheckpoint,
        new: &SignedCheckpoint,
    ) -> Result<Vec<Hash>, ClientError> {
        let (s1, s2) = (old.checkpoint.size, new.checkpoint.size);
        let evidence = |what: String, proof: Vec<Hash>| {
            ClientError::Misbehavior(Box::new(Misbehavior {
                what,
                trusted: old.raw.clone(),
                seen: new.raw.clone(),
                proof,
            }))
        };
        if s1 > s2 {
            return Err(evidence(
                format!("the log shows size {s2} after size {s1}: it went backwards"),
                Vec::new(),
            ));
        }
        self.consistent(old, new, old, new).await
    }

    /// Fetches the consistency proof from `small` to `big` and verifies it
    /// (RFC 9162 §2.1.4.2); a proof that is malformed or does not verify is
    /// [`ClientError::Misbehavior`] with `trusted` and `seen` as evidence.
    async fn consistent(
        &mut self,
        small: &SignedCheckpoint,
        big: &SignedCheckpoint,
        trusted: &SignedCheckpoint,
        seen: &SignedCheckpoint,
    ) -> Result<Vec<Hash>, ClientError> {
        let (s1, s2) = (small.checkpoint.size, big.checkpoint.size);
        let evidence = |what: String, proof: Vec<Hash>| {
            ClientError::Misbehavior(Box::new(Misbehavior {
                what,
                trusted: trusted.raw.clone(),
                seen: seen.raw.clone(),
                proof,
            }))
        };
        let p = self
            .call("GetConsistencyProof", false, |mut rpc| async move {
                rpc.get_consistency_proof(pb::GetConsistencyProofRequest {
                    size1: s1,
                    size2: s2,
                })
                .await
            })
            .await?;
        let proof = parse_proof(&p.hashes).map_err(|e| {
            evidence(
                format!("the consistency proof from {s1} to {s2} is malformed: {e}"),
                Vec::new(),
            )
        })?;
        let step = trust::Step::Prove {
            size1: s1,
            size2: s2,
            newer: true,
        };
        match trust::check(step, head(small), head(big), &proof) {
            Ok(()) => Ok(proof),
            Err(c) => Err(evidence(c.to_string(), proof)),
        }
    }

    /// Fetches the signed checkpoints at `size1` and at `size2` (0: the
    /// latest) and proves the second extends the first. Returns both and
    /// the proof.
    pub async fn consistency(
        &mut self,
        size1: u64,
        size2: u64,
    ) -> Result<(SignedCheckpoint, SignedCheckpoint, Vec<Hash>), ClientError> {
        if size2 != 0 && size1 > size2 {
            return Err(ClientError::Usage(format!(
                "the first size ({size1}) must not be larger than the second ({size2})"
            )));
        }
        let new = self.checkpoint_at(size2).await?;
        let old = if size1 == new.checkpoint.size {
            new.clone()
        } else {
            self.checkpoint_at(size1).await?
        };
        let proof = self.prove_consistency(&old, &new).await?;
        Ok((old, new, proof))
    }
}

impl Trust {
    fn set(&mut self, cp: &SignedCheckpoint) -> Result<(), ClientError> {
        if let Some(f) = &self.file {
            f.save(&cp.raw)?;
        }
        self.latest = Some(cp.clone());
        Ok(())
    }
}

/// A verified checkpoint's tree head, for [`trust`].
fn head(cp: &SignedCheckpoint) -> trust::Head {
    trust::Head {
        size: cp.checkpoint.size,
        root: cp.checkpoint.root,
    }
}
