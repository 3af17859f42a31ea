//! The `tlog.v1.Log` gRPC service.

pub mod convert;
pub mod error;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tlog_core::Hash;
use tlog_core::merkle::cache::TileCache;
use tlog_core::merkle::prove::Prover;
use tlog_core::merkle::verify::{InclusionVerifier, verify_consistency, verify_inclusion};
use tlog_proto::v1 as pb;
use tlog_proto::v1::log_server::Log;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::access::audit::{AccessRecord, AuditSink, Refusal, now_rfc3339};
use crate::access::auth::{Authenticator, Caller, RequestFacts};
use crate::access::authz::{Ctx, PolicyHandle, Resource, Who};
use crate::ops::config::Limits;
use crate::service::error::ServiceError;
use crate::ops::metrics::Metrics;
use crate::sequencer::{Outcome, Sequencer, Submission};
use crate::storage::LogStore;

type Result<T> = std::result::Result<T, ServiceError>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

/// Default page size of `QueryArtifact`.
const DEFAULT_QUERY_PAGE: u32 = 100;

/// The service state shared by all requests.
pub struct LogService<S> {
    store: Arc<S>,
    seq: Sequencer,
    origin: String,
    vkey: String,
    limits: Limits,
    metrics: Arc<Metrics>,
    auth: Arc<dyn Authenticator>,
    inflight: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    tiles: Arc<TileCache>,
    policy: Option<PolicyHandle>,
    audit: Option<AuditSink>,
    limiter: crate::access::ratelimit::RateLimiter,
    signers: Vec<tlog_core::note::Verifier>,
    /// The log's own key: stored checkpoints are verified with it before
    /// they are served.
    log_key: tlog_core::note::Verifiers,
    /// Refused credentials per peer address.
    refusal_limiter: crate::access::ratelimit::RateLimiter,
    max_justification: usize,
    /// Sources bound to their principals (`auth.sources`).
    sources: std::collections::HashMap<String, Vec<String>>,
}

/// Metadata key carrying the caller's justification.
pub const JUSTIFICATION_HEADER: &str = "x-tlog-justification";

/// One request's access decisions, filled in by [`Access::check`] and
/// written to the access log when the request ends.
pub struct Access {
    caller: Caller,
    rpc: &'static str,
    justification: String,
    policy: Option<Arc<crate::access::authz::Policy>>,
    state: Mutex<AccessState>,
}

#[derive(Default)]
struct AccessState {
    actions: Vec<String>,
    resources: Vec<String>,
    policies: Vec<String>,
    checked: bool,
    denied: Option<String>,
}

impl Access {
    /// Asks the policy whether the caller may do `action` on `resource`.
    /// Called before any storage is read, so a denied caller never learns
    /// whether the resource exists.
    pub fn check(
        &self,
        action: &str,
        resource: Resource,
        environment: &str,
        interface: &str,
        signed_by: &[String],
    ) -> Result<()> {
        let decision = match &self.policy {
            None => crate::access::authz::Decision {
                allowed: true,
                policies: vec!["no-policy-configured".into()],
                errors: vec![],
            },
            Some(p) => p.decide(
                &self.caller.who,
                action,
                &resource,
                &Ctx {
                    rpc: self.rpc.to_owned(),
                    environment: environment.to_owned(),
                    interface: interface.to_owned(),
                    justification: self.justification.clone(),
                    signed_by: signed_by.to_vec(),
                },
            ),
        };
        let resource_text = resource.to_string();
        let mut st = self
            .state
            .lock()
            .map_err(|_| ServiceError::Internal("access state".into()))?;
        st.checked = true;
        st.actions.push(action.to_owned());
        st.resources.push(resource_text.clone());
        for p in decision.policies {
            if !st.policies.contains(&p) {
                st.policies.push(p);
            }
        }
        if decision.allowed {
            return Ok(());
        }
        let who = match &self.caller.who {
            Who::Anonymous => "anonymous callers".to_owned(),
            Who::Principal { name, .. } => name.clone(),
        };
        let reason = if decision.errors.is_empty() {
            format!("{who} may not {action} on {resource_text}")
        } else {
            format!(
                "{who} may not {action} on {resource_text} (policy errors: {})",
                decision.errors.join("; ")
            )
        };
        st.denied = Some(reason.clone());
        // Without credentials the answer is "authenticate", not "forbidden".
        Err(match self.caller.who {
            Who::Anonymous => {
                ServiceError::Unauthenticated(format!("{reason}; present credentials"))
            }
            Who::Principal { .. } => ServiceError::PermissionDenied(reason),
        })
    }

    /// Adds what exactly was asked for (an index range, a proof's sizes,
    /// a query's filters) to the access record.
    pub fn describe(&self, what: String) {
        if let Ok(mut st) = self.state.lock() {
            st.resources.push(what);
        }
    }

    /// Records a refusal decided outside the policy (a source binding).
    pub fn deny(&self, reason: &str) {
        if let Ok(mut st) = self.state.lock() {
            st.checked = true;
            st.denied = Some(reason.to_owned());
        }
    }

    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl<S: LogStore> LogService<S> {
    /// Builds the service.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<S>,
        seq: Sequencer,
        origin: String,
        vkey: String,
        limits: Limits,
        max_inflight_bytes: usize,
        metrics: Arc<Metrics>,
        auth: Arc<dyn Authenticator>,
        shutdown: watch::Receiver<bool>,
        tiles: Arc<TileCache>,
        policy: Option<PolicyHandle>,
        audit: Option<AuditSink>,
        limiter: crate::access::ratelimit::RateLimiter,
        signers: Vec<tlog_core::note::Verifier>,
        refusals_per_peer: crate::access::ratelimit::Limit,
        max_justification: usize,
        sources: std::collections::HashMap<String, Vec<String>>,
    ) -> Self {
        let log_key =
            tlog_core::note::Verifiers::new(tlog_core::note::Verifier::from_vkey(&vkey).ok());
        LogService {
            log_key,
            refusal_limiter: crate::access::ratelimit::RateLimiter::new(crate::access::ratelimit::RateLimits {
                default: Some(refusals_per_peer),
                principals: Default::default(),
            }),
            max_justification,
            sources,
            store,
            seq,
            origin,
            vkey,
            limits,
            metrics,
            auth,
            // One permit per KiB, so the semaphore's range suffices.
            inflight: Arc::new(Semaphore::new((max_inflight_bytes / 1024).max(1))),
            shutdown,
            tiles,
            policy,
            audit,
            limiter,
            signers,
        }
    }

    /// Authenticates, runs `f` in a span (it checks access before reading
    /// anything), then logs, counts and audits the outcome.
    async fn handle<T, Req, F, Fut>(
        &self,
        method: &'static str,
        req: Request<Req>,
        f: F,
    ) -> std::result::Result<Response<T>, Status>
    where
        F: FnOnce(Req, Arc<Access>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let time = now_rfc3339();
        let facts = RequestFacts {
            peer: req.remote_addr(),
            metadata: req.metadata(),
            certs: req.peer_certs(),
        };
        let justification = req
            .metadata()
            .get(JUSTIFICATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let refused =
            |status: Status, reason: String, who: Option<&Caller>, why: Option<Refusal>| {
                self.refuse(
                    method,
                    time.clone(),
                    start,
                    &facts,
                    &justification,
                    status,
                    reason,
                    who,
                    why,
                )
            };
        let caller = match self.auth.authenticate(&facts) {
            Ok(c) => c,
            Err(e) => {
                // Refused credentials are limited per peer address, so a
                // stranger cannot make the server verify (and record)
                // forged tokens without end.
                let ip = facts.peer.map(|p| p.ip().to_string()).unwrap_or_default();
                if let Err(wait) = self.refusal_limiter.check(&ip, Instant::now()) {
                    let reason = format!(
                        "too many refused credentials from {ip}; retry in {} ms",
                        wait.as_millis().min(u128::from(u32::MAX))
                    );
                    return Err(refused(
                        Status::resource_exhausted(reason.clone()),
                        reason,
                        None,
                        Some(Refusal::RateLimited),
                    ));
                }
                let status = Status::unauthenticated(format!("credentials refused: {e}"));
                return Err(refused(
                    status,
                    e.to_string(),
                    None,
                    Some(Refusal::Credentials(e.kind)),
                ));
            }
        };
        if let Err(wait) = self
            .limiter
            .check(&caller.submitter.principal, Instant::now())
        {
            let reason = format!(
                "rate limit of {} exceeded; retry in {} ms",
                caller.submitter.principal,
                wait.as_millis().min(u128::from(u32::MAX))
            );
            return Err(refused(
                Status::resource_exhausted(reason.clone()),
                reason,
                Some(&caller),
                Some(Refusal::RateLimited),
            ));
        }
        // Header values arrive only as visible ASCII (`to_str`), so the
        // length is all there is to bound.
        if justification.len() > self.max_justification {
            let reason = format!(
                "{JUSTIFICATION_HEADER} is {} bytes, at most {} allowed",
                justification.len(),
                self.max_justification
            );
            let why = matches!(caller.who, Who::Anonymous).then_some(Refusal::NoCredentials);
            return Err(refused(
                Status::invalid_argument(reason.clone()),
                reason,
                Some(&caller),
                why,
            ));
        }
        let span = tracing::info_span!(
            "rpc",
            method,
            peer = %caller.submitter.peer,
            principal = %caller.submitter.principal,
        );
        let access = Arc::new(Access {
            caller,
            rpc: method,
            justification,
            policy: self.policy.as_ref().and_then(PolicyHandle::get),
            state: Mutex::new(AccessState::default()),
        });
        let result = f(req.into_inner(), access.clone())
            .instrument(span.clone())
            .await;
        let latency_ms = start.elapsed().as_secs_f64() * 1e3;
        let _guard = span.enter();
        let (reply, code, message) = match result {
            Ok(v) => (Ok(Response::new(v)), tonic::Code::Ok, String::new()),
            Err(e) => {
                let status = Status::from(e);
                let (code, message) = (status.code(), status.message().to_owned());
                (Err(status), code, message)
            }
        };
        self.metrics.response(method, code);
        tracing::info!(latency_ms, code = ?code, message, "request");
        if let Some(a) = &self.audit {
            let st = access.state.lock().map(|s| {
                (
                    s.actions.clone(),
                    s.resources.clone(),
                    s.policies.clone(),
                    s.checked,
                    s.denied.clone(),
                )
            });
            let (actions, resources, policies, checked, denied) =
                st.unwrap_or((vec![], vec![], vec![], false, None));
            let decision = match (checked, &denied) {
                (_, Some(_)) => "deny",
                (true, None) => "allow",
                (false, None) => "not-evaluated",
            };
            let c = &access.caller;
            a.record(AccessRecord {
                time,
                principal: c.submitter.principal.clone(),
                auth_method: c.submitter.auth_method.clone(),
                issuer: c.issuer.clone(),
                peer: c.submitter.peer.clone(),
                method: method.into(),
                actions,
                resources,
                decision: decision.into(),
                policies,
                justification: access.justification.clone(),
                status: format!("{code:?}"),
                refusal: (matches!(c.who, Who::Anonymous) && denied.is_some())
                    .then_some(Refusal::NoCredentials),
                reason: denied.unwrap_or(if code == tonic::Code::Ok {
                    String::new()
                } else {
                    message
                }),
                latency_ms,
            });
        }
        reply
    }

    /// Answers a request refused before it ran (bad credentials, rate
    /// limit): counts, logs and records it.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &self,
        method: &'static str,
        time: String,
        start: Instant,
        facts: &RequestFacts<'_>,
        justification: &str,
        status: Status,
        reason: String,
        who: Option<&Caller>,
        refusal: Option<Refusal>,
    ) -> Status {
        self.metrics.response(method, status.code());
        tracing::info!(method, peer = ?facts.peer, reason = %reason, code = ?status.code(), "refused");
        if let Some(a) = &self.audit {
            let (principal, auth_method, issuer) = match who {
                Some(c) => (
                    c.submitter.principal.clone(),
                    c.submitter.auth_method.clone(),
                    c.issuer.clone(),
                ),
                None => ("unauthenticated".into(), "failed".into(), String::new()),
            };
            a.record(AccessRecord {
                time,
                principal,
                auth_method,
                issuer,
                peer: facts.peer.map(|p| p.to_string()).unwrap_or_default(),
                method: method.into(),
                actions: vec![],
                resources: vec![],
                decision: "deny".into(),
                policies: vec![],
                justification: justification.to_owned(),
                status: format!("{:?}", status.code()),
                reason,
                latency_ms: start.elapsed().as_secs_f64() * 1e3,
                refusal,
            });
        }
        status
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
        use ed25519_dalek::Verifier as _;
        let mut verified: Vec<String> = Vec::new();
        if event.attestations.is_empty() || self.signers.is_empty() {
            return Ok(verified);
        }
        let message = event.attestation_bytes();
        for (i, a) in event.attestations.iter().enumerate() {
            let Some(signer) = self.signers.iter().find(|v| v.name() == a.key_id) else {
                continue;
            };
            if a.scheme != "ed25519" {
                continue;
            }
            let ok = ed25519_dalek::Signature::from_slice(&a.signature)
                .is_ok_and(|sig| signer.public_key().verify(&message, &sig).is_ok());
            if !ok {
                return Err(ServiceError::invalid(
                    format!("{prefix}.attestations[{i}].signature"),
                    format!(
                        "does not verify with trusted signer {:?} over the event's attestation bytes",
                        a.key_id
                    ),
                ));
            }
            if !verified.contains(&a.key_id) {
                verified.push(a.key_id.clone());
            }
        }
        verified.sort();
        Ok(verified)
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
        let outcome = self.seq.append(events, who).await?;
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

    /// Runs short storage work (a few point reads from RocksDB's cache and
    /// some hashing: microseconds) on the calling task. Handing it to the
    /// blocking pool cost more in thread wake-ups than the work itself
    /// (measured: a quarter of the server's CPU at 20k proofs/s).
    fn inline<T>(&self, f: impl FnOnce(&S) -> Result<T>) -> Result<T> {
        f(self.store.as_ref())
    }

    /// Runs longer storage work (pages of entries, queries) off the async
    /// threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| ServiceError::Internal(format!("storage task failed: {e}")))?
    }

    fn latest_size(&self) -> u64 {
        self.seq.latest().size
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
        access.check(
            &format!("submit:{}", e.action.as_str()),
            Resource::Artifact(e.artifact.name.clone()),
            &e.environment,
            e.interface.as_str(),
            &s.verified_signers,
        )?;
    }
    Ok(())
}

fn parse_hash(field: &str, bytes: &[u8]) -> Result<Hash> {
    Hash::from_slice(bytes).map_err(|e| ServiceError::invalid(field, e.to_string()))
}

/// A checkpoint note from storage, served only if it verifies: signed by
/// the log's key for its origin (C2SP signed-note, tlog-checkpoint) and
/// stating `size`. A note changed on disk is `DATA_LOSS`, never served.
fn verified_checkpoint(
    note: String,
    size: u64,
    key: &tlog_core::note::Verifiers,
    origin: &str,
    metrics: &Metrics,
) -> Result<pb::SignedCheckpoint> {
    let opened = tlog_core::checkpoint::open(note.as_bytes(), key, origin).map_err(|e| {
        corrupt(
            metrics,
            format!("stored checkpoint at size {size} does not verify with the log's key: {e}"),
        )
    })?;
    if opened.checkpoint.size != size {
        return Err(corrupt(
            metrics,
            format!(
                "stored checkpoint at size {size} says size {}",
                opened.checkpoint.size
            ),
        ));
    }
    Ok(pb::SignedCheckpoint {
        root_hash: opened.checkpoint.root.as_bytes().to_vec(),
        size,
        note,
    })
}

/// The leaf at `index`, served only if it hashes to the leaf hash stored
/// in the tree (row 0) at `index`; a leaf rewritten on disk, or missing
/// where the tree has one, is `DATA_LOSS`.
fn verified_entry<S: LogStore>(s: &S, metrics: &Metrics, index: u64) -> Result<pb::Entry> {
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
fn corrupt(metrics: &Metrics, what: String) -> ServiceError {
    metrics.corruption_detected.inc();
    ServiceError::DataLoss(what)
}

/// Entries `[start, end)`, each leaf checked against the leaf hash stored
/// in the tree (row 0, one range read): a leaf that changed on disk is
/// refused rather than streamed.
fn checked_entries<S: LogStore>(
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

fn entry(index: u64, leaf: Vec<u8>) -> pb::Entry {
    pb::Entry {
        index,
        leaf_hash: tlog_core::leaf_hash(&leaf).as_bytes().to_vec(),
        leaf,
    }
}

fn check_query_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(ServiceError::invalid("name", "is required"));
    }
    if name.len() > tlog_core::event::MAX_NAME_LEN {
        return Err(ServiceError::invalid(
            "name",
            "is longer than any artifact name",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "name",
            "contains a control character",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl<S: LogStore> Log for LogService<S> {
    async fn append(
        &self,
        req: Request<pb::AppendRequest>,
    ) -> std::result::Result<Response<pb::AppendResponse>, Status> {
        self.handle("Append", req, |r, access| async move {
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
        })
        .await
    }

    async fn append_batch(
        &self,
        req: Request<pb::AppendBatchRequest>,
    ) -> std::result::Result<Response<pb::AppendBatchResponse>, Status> {
        self.handle("AppendBatch", req, |r, access| async move {
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
        })
        .await
    }

    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> std::result::Result<Response<pb::GetCheckpointResponse>, Status> {
        self.handle("GetCheckpoint", req, |r, access| async move {
            access.check("read-checkpoints", Resource::Log, "", "", &[])?;
            let latest = self.seq.latest();
            if r.size == 0 || r.size == latest.size {
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
        })
        .await
    }

    type GetEntriesStream = BoxStream<pb::GetEntriesResponse>;

    async fn get_entries(
        &self,
        req: Request<pb::GetEntriesRequest>,
    ) -> std::result::Result<Response<Self::GetEntriesStream>, Status> {
        self.handle("GetEntries", req, |r, access| async move {
            access.check("read-entries", Resource::Log, "", "", &[])?;
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
            Ok(Box::pin(ReceiverStream::new(rx)) as Self::GetEntriesStream)
        })
        .await
    }

    async fn get_entry_by_hash(
        &self,
        req: Request<pb::GetEntryByHashRequest>,
    ) -> std::result::Result<Response<pb::Entry>, Status> {
        self.handle("GetEntryByHash", req, |r, access| async move {
            access.check("read-entries", Resource::Log, "", "", &[])?;
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
        })
        .await
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> std::result::Result<Response<pb::InclusionProof>, Status> {
        self.handle("GetInclusionProof", req, |r, access| async move {
            access.check("read-proofs", Resource::Log, "", "", &[])?;
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
                pb::get_inclusion_proof_request::Leaf::LeafHash(h) => {
                    Ok(parse_hash("leaf_hash", &h)?)
                }
            };
            let metrics = self.metrics.clone();
            let tiles = self.tiles.clone();
            let latest_cp = self.seq.latest();
            self.inline(|s| {
                let index = match by_hash {
                    Err(i) => i,
                    Ok(h) => s.index_of(&h)?.filter(|i| *i < latest).ok_or_else(|| {
                        ServiceError::NotFound(format!("no entry has leaf hash {h}"))
                    })?,
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
                            verified_checkpoint(
                                note,
                                tree_size,
                                &self.log_key,
                                &self.origin,
                                &metrics,
                            )
                        })
                        .transpose()?
                };
                // Never serve a proof that does not reach the signed root
                // (RFC 9162 §2.1.3.2): stored hashes may have rotted.
                if let Some(cp) = &checkpoint {
                    let root = parse_hash("checkpoint", &cp.root_hash)?;
                    verify_inclusion(index, tree_size, &leaf_hash, &hashes, &root).map_err(
                        |e| {
                            corrupt(
                                &metrics,
                                format!("inclusion of {index} in {tree_size}: {e}"),
                            )
                        },
                    )?;
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
        })
        .await
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> std::result::Result<Response<pb::ConsistencyProof>, Status> {
        self.handle("GetConsistencyProof", req, |r, access| async move {
            access.check("read-proofs", Resource::Log, "", "", &[])?;
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
                            let cp = verified_checkpoint(
                                note,
                                size,
                                &self.log_key,
                                &self.origin,
                                &metrics,
                            )?;
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
        })
        .await
    }

    async fn query_artifact(
        &self,
        req: Request<pb::QueryArtifactRequest>,
    ) -> std::result::Result<Response<pb::QueryArtifactResponse>, Status> {
        self.handle("QueryArtifact", req, |r, access| async move {
            check_query_name(&r.name)?;
            access.check("query", Resource::Artifact(r.name.clone()), "", "", &[])?;
            access.describe(format!(
                "query version={:?} action={} since={:?} until={:?} page_size={} cursor={:?}",
                r.version,
                r.action,
                r.since.as_ref().map(|t| t.seconds),
                r.until.as_ref().map(|t| t.seconds),
                r.page_size,
                r.cursor
            ));
            let action = match r.action {
                0 => None,
                c => Some(
                    tlog_core::event::Action::from_code(i64::from(c))
                        .ok_or_else(|| {
                            ServiceError::invalid("action", format!("unknown action code {c}"))
                        })?
                        .code(),
                ),
            };
            let since = r
                .since
                .map(|t| convert::timestamp("since", t))
                .transpose()?
                .map(|t| t.as_nanos());
            let until = r
                .until
                .map(|t| convert::timestamp("until", t))
                .transpose()?
                .map(|t| t.as_nanos());
            let after = if r.cursor.is_empty() {
                None
            } else {
                Some(
                    r.cursor
                        .strip_prefix("i:")
                        .and_then(|c| c.parse::<u64>().ok())
                        .ok_or_else(|| {
                            ServiceError::invalid("cursor", "not a cursor this server returned")
                        })?,
                )
            };
            let limit = match r.page_size {
                0 => DEFAULT_QUERY_PAGE.min(self.limits.max_page_size),
                n => n.min(self.limits.max_page_size),
            } as usize;
            let size = self.latest_size();
            let (name, version) = (r.name, r.version);
            let metrics = self.metrics.clone();
            self.blocking(move |s| {
                let filter = |m: &crate::storage::ArtifactMeta| {
                    (version.is_empty() || m.version == version)
                        && action.is_none_or(|a| a == m.action)
                        && since.is_none_or(|t| m.time_nanos() >= t)
                        && until.is_none_or(|t| m.time_nanos() < t)
                };
                let rows = s.artifact_entries(&name, after, limit, &filter)?;
                let full = rows.len() == limit;
                let mut entries = Vec::with_capacity(rows.len());
                for (index, _) in rows.into_iter().filter(|(i, _)| *i < size) {
                    entries.push(verified_entry(s, &metrics, index)?);
                }
                let next_cursor = match entries.last() {
                    Some(e) if full => format!("i:{}", e.index),
                    _ => String::new(),
                };
                Ok(pb::QueryArtifactResponse {
                    entries,
                    next_cursor,
                })
            })
            .await
        })
        .await
    }

    type WatchCheckpointsStream = BoxStream<pb::SignedCheckpoint>;

    async fn watch_checkpoints(
        &self,
        req: Request<pb::WatchCheckpointsRequest>,
    ) -> std::result::Result<Response<Self::WatchCheckpointsStream>, Status> {
        self.handle("WatchCheckpoints", req, |_, access| async move {
            access.check("watch", Resource::Log, "", "", &[])?;
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
            Ok(Box::pin(ReceiverStream::new(rx)) as Self::WatchCheckpointsStream)
        })
        .await
    }

    async fn get_log_info(
        &self,
        req: Request<pb::GetLogInfoRequest>,
    ) -> std::result::Result<Response<pb::LogInfo>, Status> {
        self.handle("GetLogInfo", req, |_, access| async move {
            access.check("read-checkpoints", Resource::Log, "", "", &[])?;
            Ok(pb::LogInfo {
                origin: self.origin.clone(),
                verifier_key: self.vkey.clone(),
                tree_size: self.latest_size(),
                max_event_bytes: self.limits.max_event_bytes,
                max_batch_events: self.limits.max_batch_events,
                max_page_size: self.limits.max_page_size,
                leaf_version: u32::from(tlog_core::leaf::LEAF_VERSION),
            })
        })
        .await
    }
}
