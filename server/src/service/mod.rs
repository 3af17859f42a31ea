//! The `tlog.v1.Log` gRPC service.

pub mod access;
mod append;
pub mod convert;
pub mod error;
mod proofs;
mod query;
mod reads;
pub mod tiles;

pub use access::{Access, JUSTIFICATION_HEADER};

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tlog_core::Hash;
use tlog_core::merkle::cache::TileCache;
use tlog_proto::v1 as pb;
use tlog_proto::v1::log_server::Log;
use tokio::sync::{Semaphore, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use tlog_core::leaf::Rpc;

use crate::access::audit::{AuditSink, Decided, Ended, Identity, Refusal};
use crate::access::auth::{Authenticator, Caller, RequestFacts};
use crate::access::authz::{PolicyHandle, Who};
use crate::ops::config::Limits;
use crate::ops::metrics::Metrics;
use crate::sequencer::Sequencer;
use crate::service::error::ServiceError;
use crate::storage::LogStore;

type Result<T> = std::result::Result<T, ServiceError>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

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
    /// Full tiles and entry bundles already read: they never change.
    served_tiles: tiles::ServedTiles,
    /// Witnesses cosigning the checkpoints, if configured.
    witnessing: Option<Arc<crate::witnessing::Witnessing>>,
}

/// What the service is built from ([`LogService::new`]).
pub struct Parts<S> {
    /// The store.
    pub store: Arc<S>,
    /// The sequencer's handle.
    pub seq: Sequencer,
    /// Witnesses cosigning the checkpoints, if configured.
    pub witnessing: Option<Arc<crate::witnessing::Witnessing>>,
    /// The log's origin line.
    pub origin: String,
    /// The log's verifier key.
    pub vkey: String,
    /// Request limits.
    pub limits: Limits,
    /// Bytes of events that may be in flight at once.
    pub max_inflight_bytes: usize,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The authenticator.
    pub auth: Arc<dyn Authenticator>,
    /// Turns true on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// The tile cache shared with the start-up warm-up.
    pub tiles: Arc<TileCache>,
    /// The Cedar policy, if access control is configured.
    pub policy: Option<PolicyHandle>,
    /// The access log and ledger, if configured.
    pub audit: Option<AuditSink>,
    /// Request rates per principal.
    pub limiter: crate::access::ratelimit::RateLimiter,
    /// Trusted attestation signers.
    pub signers: Vec<tlog_core::note::Verifier>,
    /// Refused credentials allowed per peer address.
    pub refusals_per_peer: crate::access::ratelimit::Limit,
    /// Longest justification header accepted.
    pub max_justification: usize,
    /// Sources bound to their principals (`auth.sources`).
    pub sources: std::collections::HashMap<String, Vec<String>>,
}

impl<S: LogStore> LogService<S> {
    /// Builds the service.
    pub fn new(p: Parts<S>) -> Self {
        let log_key =
            tlog_core::note::Verifiers::new(tlog_core::note::Verifier::from_vkey(&p.vkey).ok());
        LogService {
            log_key,
            refusal_limiter: crate::access::ratelimit::RateLimiter::new(
                crate::access::ratelimit::RateLimits {
                    default: Some(p.refusals_per_peer),
                    principals: Default::default(),
                },
            ),
            max_justification: p.max_justification,
            sources: p.sources,
            store: p.store,
            seq: p.seq,
            origin: p.origin,
            vkey: p.vkey,
            limits: p.limits,
            metrics: p.metrics,
            auth: p.auth,
            // One permit per KiB, so the semaphore's range suffices.
            inflight: Arc::new(Semaphore::new((p.max_inflight_bytes / 1024).max(1))),
            shutdown: p.shutdown,
            tiles: p.tiles,
            policy: p.policy,
            audit: p.audit,
            limiter: p.limiter,
            signers: p.signers,
            served_tiles: tiles::ServedTiles::default(),
            witnessing: p.witnessing,
        }
    }

    /// The checkpoint served as the latest: with witnesses, the newest
    /// that satisfies the quorum (c2sp.org/tlog-witness), or until there is
    /// one the newest with the cosignatures gathered so far; without, the
    /// sequencer's latest.
    fn served_latest(&self) -> Arc<crate::sequencer::Signed> {
        let latest = self.seq.latest();
        match &self.witnessing {
            None => latest,
            Some(w) => w
                .published()
                .or_else(|| w.at(latest.size))
                .unwrap_or(latest),
        }
    }

    /// Authenticates, runs `f` in a span (it checks access before reading
    /// anything), then logs, counts and records the outcome. Every answer,
    /// including a refusal before `f` runs, goes through the one error map
    /// ([`error`]) and the one recorder ([`Ended`]).
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
        let time = std::time::SystemTime::now();
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
        // A refusal before the request runs: answered, counted, logged and
        // recorded like any other end.
        let refused = |e: ServiceError, who: Option<&Caller>, why: Option<Refusal>| {
            // Only a refusal needs the peer as text: not done per request.
            let peer = facts.peer.map(|p| p.to_string()).unwrap_or_default();
            let reason = e.to_string();
            let status = Status::from(e);
            tracing::info!(method, peer = %peer, reason = %reason, code = ?status.code(), "refused");
            let who = who.map_or(Identity::UNAUTHENTICATED, identity);
            self.ended(
                method,
                Ended {
                    method,
                    time,
                    start,
                    peer,
                    who,
                    justification: &justification,
                    decided: Decided::refused(),
                    code: status.code(),
                    reason,
                    refusal: why,
                },
            );
            status
        };
        let caller = match self.auth.authenticate(&facts) {
            Ok(c) => c,
            Err(e) => {
                // Refused credentials are limited per peer address, so a
                // stranger cannot make the server verify (and record)
                // forged tokens without end.
                let ip = facts.peer.map(|p| p.ip().to_string()).unwrap_or_default();
                if let Err(wait) = self.refusal_limiter.check(&ip, Instant::now()) {
                    return Err(refused(
                        ServiceError::ResourceExhausted(format!(
                            "too many refused credentials from {ip}; retry in {} ms",
                            wait.as_millis().min(u128::from(u32::MAX))
                        )),
                        None,
                        Some(Refusal::RateLimited),
                    ));
                }
                let kind = e.kind;
                return Err(refused(
                    ServiceError::CredentialsRefused(e),
                    None,
                    Some(Refusal::Credentials(kind)),
                ));
            }
        };
        if let Err(wait) = self
            .limiter
            .check(&caller.submitter.principal, Instant::now())
        {
            return Err(refused(
                ServiceError::ResourceExhausted(format!(
                    "rate limit of {} exceeded; retry in {} ms",
                    caller.submitter.principal,
                    wait.as_millis().min(u128::from(u32::MAX))
                )),
                Some(&caller),
                Some(Refusal::RateLimited),
            ));
        }
        // Header values arrive only as visible ASCII (`to_str`), so the
        // length is all there is to bound.
        if justification.len() > self.max_justification {
            let why = matches!(caller.who, Who::Anonymous).then_some(Refusal::NoCredentials);
            return Err(refused(
                ServiceError::invalid(
                    JUSTIFICATION_HEADER,
                    format!(
                        "is {} bytes, at most {} allowed",
                        justification.len(),
                        self.max_justification
                    ),
                ),
                Some(&caller),
                why,
            ));
        }
        // Tiles reads are many and static, like a web server's: their span
        // and their line are at debug level (the access log still records
        // each), so that at the default level they cost no formatting.
        let http = method.starts_with("http:");
        let span = if http {
            tracing::debug_span!(
                "rpc",
                method,
                peer = %caller.submitter.peer,
                principal = %caller.submitter.principal,
            )
        } else {
            tracing::info_span!(
                "rpc",
                method,
                peer = %caller.submitter.peer,
                principal = %caller.submitter.principal,
            )
        };
        let policy = self.policy.as_ref().and_then(PolicyHandle::get);
        let access = Arc::new(Access::new(caller, method, justification, policy));
        let result = f(req.into_inner(), access.clone())
            .instrument(span.clone())
            .await;
        let _guard = span.enter();
        let (reply, code, message) = match result {
            Ok(v) => (Ok(Response::new(v)), tonic::Code::Ok, String::new()),
            Err(e) => {
                let status = Status::from(e);
                let (code, message) = (status.code(), status.message().to_owned());
                (Err(status), code, message)
            }
        };
        let latency_ms = start.elapsed().as_secs_f64() * 1e3;
        if http {
            tracing::debug!(latency_ms, code = ?code, message, "request");
        } else {
            tracing::info!(latency_ms, code = ?code, message, "request");
        }
        let decided = access.decided();
        let refusal = (matches!(access.caller().who, Who::Anonymous) && decided.denied.is_some())
            .then_some(Refusal::NoCredentials);
        let reason = match &decided.denied {
            Some(d) => d.clone(),
            None if code == tonic::Code::Ok => String::new(),
            None => message,
        };
        self.ended(
            method,
            Ended {
                method,
                time,
                start,
                peer: access.caller().submitter.peer.clone(),
                who: identity(access.caller()),
                justification: access.justification(),
                decided,
                code,
                reason,
                refusal,
            },
        );
        reply
    }

    /// The log's verifier key, as a set to open notes with.
    pub fn verifiers(&self) -> tlog_core::note::Verifiers {
        self.log_key.clone()
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A tiles read that arrived over HTTP ([`crate::http`]):
    /// authenticated from its headers and peer, checked against the
    /// policy, rate-limited, counted and recorded exactly as an RPC is.
    pub async fn http_tile(
        &self,
        what: tiles::TileRead,
        peer: std::net::SocketAddr,
        headers: hyper::HeaderMap,
    ) -> std::result::Result<tiles::TileBody, Status> {
        let mut req = Request::new(());
        *req.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        req.extensions_mut()
            .insert(tonic::transport::server::TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(peer),
            });
        self.handle(what.method(), req, |(), access| self.tile(what, access))
            .await
            .map(Response::into_inner)
    }

    /// The end of a request, however it ended: counted, and recorded when
    /// an access log or ledger is configured.
    fn ended(&self, method: &'static str, e: Ended<'_>) {
        self.metrics.response(method, e.code);
        if let Some(a) = &self.audit {
            a.record(e.into_record());
        }
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

/// The identity an access record names for `c`.
fn identity(c: &Caller) -> Identity<'_> {
    Identity {
        principal: &c.submitter.principal,
        auth_method: &c.submitter.auth_method,
        issuer: &c.issuer,
    }
}

fn parse_hash(field: &str, bytes: &[u8]) -> Result<Hash> {
    Hash::from_slice(bytes).map_err(|e| ServiceError::invalid(field, e.to_string()))
}

#[tonic::async_trait]
impl<S: LogStore> Log for LogService<S> {
    async fn append(
        &self,
        req: Request<pb::AppendRequest>,
    ) -> std::result::Result<Response<pb::AppendResponse>, Status> {
        self.handle(Rpc::Append.name(), req, |r, access| {
            self.append_one(r, access)
        })
        .await
    }

    async fn append_batch(
        &self,
        req: Request<pb::AppendBatchRequest>,
    ) -> std::result::Result<Response<pb::AppendBatchResponse>, Status> {
        self.handle(Rpc::AppendBatch.name(), req, |r, access| {
            self.append_many(r, access)
        })
        .await
    }

    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> std::result::Result<Response<pb::GetCheckpointResponse>, Status> {
        self.handle(Rpc::GetCheckpoint.name(), req, |r, access| {
            self.checkpoint(r, access)
        })
        .await
    }

    type GetEntriesStream = BoxStream<pb::GetEntriesResponse>;

    async fn get_entries(
        &self,
        req: Request<pb::GetEntriesRequest>,
    ) -> std::result::Result<Response<Self::GetEntriesStream>, Status> {
        self.handle(Rpc::GetEntries.name(), req, |r, access| {
            self.entries(r, access)
        })
        .await
    }

    async fn get_entry_by_hash(
        &self,
        req: Request<pb::GetEntryByHashRequest>,
    ) -> std::result::Result<Response<pb::Entry>, Status> {
        self.handle(Rpc::GetEntryByHash.name(), req, |r, access| {
            self.entry_by_hash(r, access)
        })
        .await
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> std::result::Result<Response<pb::InclusionProof>, Status> {
        self.handle(Rpc::GetInclusionProof.name(), req, |r, access| {
            self.inclusion_proof(r, access)
        })
        .await
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> std::result::Result<Response<pb::ConsistencyProof>, Status> {
        self.handle(Rpc::GetConsistencyProof.name(), req, |r, access| {
            self.consistency_proof(r, access)
        })
        .await
    }

    async fn query_artifact(
        &self,
        req: Request<pb::QueryArtifactRequest>,
    ) -> std::result::Result<Response<pb::QueryArtifactResponse>, Status> {
        self.handle(Rpc::QueryArtifact.name(), req, |r, access| {
            self.query(r, access)
        })
        .await
    }

    type WatchCheckpointsStream = BoxStream<pb::SignedCheckpoint>;

    async fn watch_checkpoints(
        &self,
        req: Request<pb::WatchCheckpointsRequest>,
    ) -> std::result::Result<Response<Self::WatchCheckpointsStream>, Status> {
        self.handle(Rpc::WatchCheckpoints.name(), req, |r, access| {
            self.watch(r, access)
        })
        .await
    }

    async fn get_log_info(
        &self,
        req: Request<pb::GetLogInfoRequest>,
    ) -> std::result::Result<Response<pb::LogInfo>, Status> {
        self.handle(Rpc::GetLogInfo.name(), req, |r, access| {
            self.log_info(r, access)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calls core names (`leaf::Rpc`, what access records and the
    /// monitor use) are exactly the service's methods in the protocol.
    #[test]
    fn core_names_every_method_of_the_service() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(tlog_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let methods: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| f.service.iter())
            .filter(|s| s.name() == "Log")
            .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
            .collect();
        let names: Vec<String> = Rpc::ALL.iter().map(|r| r.name().to_owned()).collect();
        assert_eq!(methods, names);
        for r in Rpc::ALL {
            assert_eq!(Rpc::parse(r.name()), Some(r));
        }
    }
}
