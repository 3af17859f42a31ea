//! The write RPCs, `Append` and `AppendBatch`: validation, attestations,
//! the source bindings, the policy's `submit:<action>` checks, the
//! sequencer, and the inclusion proofs every answer carries.

use std::time::Instant;

use tlog_core::merkle::prove::Prover;
use tlog_core::merkle::verify::InclusionVerifier;

use super::reads::corrupt;
use crate::access::authz::Resource;
use crate::sequencer::{Outcome, Submission};
use std::sync::Arc;

use tlog_proto::v1 as pb;

use super::access::{Access, Ask};
use super::error::ServiceError;
use super::{LogService, Result, convert};
use crate::storage::LogStore;

impl<S: LogStore> LogService<S> {
    /// `Append`: what the RPC answers, once [`LogService::handle`] has
    /// authenticated the caller.
    pub(super) async fn append_one(
        &self,
        r: pb::AppendRequest,
        access: Arc<Access>,
    ) -> Result<pb::AppendResponse> {
        let e = r
            .event
            .ok_or_else(|| ServiceError::invalid("event", "is required"))?;
        let (mut events, bytes) = self.validate_events(vec![e], false)?;
        authorize_events(&access, &events)?;
        self.scope_sources(&access, &mut events)?;
        let who = access.caller().submitter.clone();
        let mut answers = self.append_events(events, bytes, who).await?;
        answers
            .pop()
            .ok_or_else(|| ServiceError::Internal("append returned no entry".into()))
    }

    /// `AppendBatch`: what the RPC answers, once [`LogService::handle`] has
    /// authenticated the caller.
    pub(super) async fn append_many(
        &self,
        r: pb::AppendBatchRequest,
        access: Arc<Access>,
    ) -> Result<pb::AppendBatchResponse> {
        if r.events.is_empty() {
            return Err(ServiceError::invalid(
                "events",
                "must hold at least one event",
            ));
        }
        if r.events.len() > self.limits.max_batch_events as usize {
            return Err(ServiceError::invalid(
                "events",
                format!(
                    "holds {} events, the limit is {}",
                    r.events.len(),
                    self.limits.max_batch_events
                ),
            ));
        }
        let (mut events, bytes) = self.validate_events(r.events, true)?;
        authorize_events(&access, &events)?;
        self.scope_sources(&access, &mut events)?;
        let who = access.caller().submitter.clone();
        let results = self.append_events(events, bytes, who).await?;
        Ok(pb::AppendBatchResponse { results })
    }

    fn validate_events(
        &self,
        events: Vec<pb::ArtifactEvent>,
        batch: bool,
    ) -> Result<(Vec<Submission>, usize)> {
        let mut out = Vec::with_capacity(events.len());
        let mut bytes = 0usize;
        for (i, e) in events.into_iter().enumerate() {
            let prefix = if batch {
                format!("events[{i}]")
            } else {
                "event".to_owned()
            };
            let len = prost::Message::encoded_len(&e);
            if len > self.limits.max_event_bytes as usize {
                return Err(ServiceError::invalid(
                    prefix,
                    format!(
                        "is {len} bytes, the limit is {}",
                        self.limits.max_event_bytes
                    ),
                ));
            }
            bytes += len;
            let event = convert::event(e)
                .and_then(|ev| ev.validate().map(|()| ev))
                .map_err(|err| {
                    ServiceError::invalid(format!("{prefix}.{}", err.field), err.reason)
                })?;
            let verified_signers = self.verify_attestations(&event, &prefix)?;
            out.push(Submission {
                event,
                verified_signers,
                scope: None,
            });
        }
        Ok((out, bytes))
    }
    /// Verifies the event's Ed25519 attestations by trusted signers (named
    /// by `key_id`) over [`ArtifactEvent::attestation_bytes`]. A trusted
    /// signer's signature that does not verify refuses the event; signers
    /// the server does not know are kept in the event but not counted.
    ///
    /// [`ArtifactEvent::attestation_bytes`]: tlog_core::event::ArtifactEvent::attestation_bytes
    fn verify_attestations(
        &self,
        event: &tlog_core::event::ArtifactEvent,
        prefix: &str,
    ) -> Result<Vec<String>> {
        event.verified_signers(&self.signers).map_err(|e| {
            ServiceError::invalid(
                format!("{prefix}.attestations[{}].signature", e.index),
                e.to_string(),
            )
        })
    }
    async fn append_events(
        &self,
        events: Vec<Submission>,
        bytes: usize,
        who: tlog_core::leaf::Submitter,
    ) -> Result<Vec<pb::AppendResponse>> {
        let start = Instant::now();
        let permits = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let _permit = tokio::time::timeout(
            self.queue_timeout(),
            self.inflight.clone().acquire_many_owned(permits),
        )
        .await
        .map_err(|_| {
            ServiceError::ResourceExhausted(
                "the log is overloaded: too many bytes of events in flight; retry with backoff"
                    .into(),
            )
        })?
        .map_err(|_| ServiceError::Unavailable("shutting down".into()))?;
        let mut outcome = self.seq.append(events, who).await?;
        if let Some(w) = &self.witnessing
            && w.mode() == crate::ops::config::WitnessMode::Sync
        {
            // Cosigned zero merge delay: answer only with a checkpoint that
            // carries the quorum (it may be a later one that covers these
            // entries too).
            let size = outcome.checkpoint.size;
            match w.wait_cosigned(size).await {
                Some(c) => outcome.checkpoint = c,
                None => {
                    let first = outcome.entries.first().map_or(0, |e| e.index);
                    return Err(ServiceError::Unavailable(format!(
                        "the events are logged (from index {first}) but the witnesses did not cosign a \
                         checkpoint covering them within {:?}{}; retry the same events (an append \
                         is idempotent) to get the cosigned checkpoint",
                        w.timeout(),
                        self.seq
                            .halted()
                            .map(|h| format!(" (appends stopped: {h})"))
                            .unwrap_or_default()
                    )));
                }
            }
        }
        let answers = self.with_proofs(outcome).await?;
        self.metrics
            .append_seconds
            .observe(start.elapsed().as_secs_f64());
        Ok(answers)
    }
    fn queue_timeout(&self) -> std::time::Duration {
        self.seq.enqueue_timeout()
    }
    /// Adds an inclusion proof against the outcome's checkpoint to each
    /// entry (computed from storage, off the sequencer).
    async fn with_proofs(&self, outcome: Outcome) -> Result<Vec<pb::AppendResponse>> {
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let tiles = self.tiles.clone();
        tokio::task::spawn_blocking(move || {
            let cp = convert::checkpoint(&outcome.checkpoint);
            let prover = Prover::with_cache(store.as_ref(), &tiles);
            let (size, root) = (outcome.checkpoint.size, outcome.checkpoint.root);
            // The batch's proofs share their upper levels: made and verified
            // together, each costs a few hashes instead of log2(size).
            let mut verifier = InclusionVerifier::new(size, root);
            let indexes: Vec<u64> = outcome.entries.iter().map(|e| e.index).collect();
            let proofs = prover.inclusion_proofs(&indexes, size)?;
            // Every hash of the answers in one buffer, each field a slice
            // of it: no allocation per hash.
            const LEN: usize = tlog_core::hash::HASH_LEN;
            let mut hashes =
                Vec::with_capacity(proofs.iter().map(|p| (p.len() + 1) * LEN).sum::<usize>());
            for (e, proof) in outcome.entries.iter().zip(&proofs) {
                verifier
                    .verify(e.index, &e.leaf_hash, proof)
                    .map_err(|err| {
                        corrupt(
                            &metrics,
                            format!("inclusion of {} in {size}: {err}", e.index),
                        )
                    })?;
                hashes.extend_from_slice(e.leaf_hash.as_bytes());
                for h in proof {
                    hashes.extend_from_slice(h.as_bytes());
                }
            }
            metrics.inclusion_proofs.add(proofs.len() as u64);
            let hashes = bytes::Bytes::from(hashes);
            let mut at = 0;
            let mut next = || {
                at += LEN;
                hashes.slice(at - LEN..at)
            };
            Ok(outcome
                .entries
                .into_iter()
                .zip(proofs)
                .map(|(e, proof)| pb::AppendResponse {
                    index: e.index,
                    leaf_hash: next(),
                    leaf: e.leaf.into(),
                    checkpoint: Some(cp.clone()),
                    inclusion_proof: proof.iter().map(|_| next()).collect(),
                    duplicate: e.duplicate,
                })
                .collect())
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("proof task failed: {e}")))?
    }
}

impl<S: LogStore> LogService<S> {
    /// Binds each event's idempotency key to who may use it: a source
    /// bound in `auth.sources` only to its principals (anyone else is
    /// refused before anything is looked up), any other source to the
    /// submitter itself when callers are authenticated.
    fn scope_sources(&self, access: &Access, subs: &mut [Submission]) -> Result<()> {
        let principal = &access.caller().submitter.principal;
        for (i, s) in subs.iter_mut().enumerate() {
            match self.sources.get(&s.event.source) {
                Some(allowed) if allowed.iter().any(|p| p == principal) => {}
                Some(_) => {
                    let reason = format!(
                        "{principal} may not submit events of source {:?} (auth.sources binds it \
                         to other principals)",
                        s.event.source
                    );
                    access.deny(&reason);
                    return Err(ServiceError::PermissionDenied(format!(
                        "events[{i}]: {reason}"
                    )));
                }
                None if self.auth.enforcing() => {
                    s.scope = Some(crate::sequencer::scoped_source(principal, &s.event.source));
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// Checks `submit:<action>` on each event's artifact (all must pass). A
/// batch asks once per distinct (action, artifact, environment, interface,
/// signers): the answer depends on nothing else.
fn authorize_events(access: &Access, subs: &[Submission]) -> Result<()> {
    let mut asked: Vec<(&str, &str, &str, &str, &[String])> = Vec::new();
    for s in subs {
        let e = &s.event;
        let key = (
            e.action.as_str(),
            e.artifact.name.as_str(),
            e.environment.as_str(),
            e.interface.as_str(),
            s.verified_signers.as_slice(),
        );
        if asked.contains(&key) {
            continue;
        }
        asked.push(key);
        access.check(Ask {
            action: &format!("submit:{}", e.action.as_str()),
            resource: Resource::Artifact(e.artifact.name.clone()),
            environment: &e.environment,
            interface: e.interface.as_str(),
            signed_by: &s.verified_signers,
        })?;
    }
    Ok(())
}
