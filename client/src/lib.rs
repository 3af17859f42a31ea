//! `tlog-client`: a client of the transparency log that trusts nothing it
//! is told.
//!
//! Every checkpoint it returns has had its C2SP signature verified with the
//! pinned verifier key, and every entry comes with an RFC 9162 inclusion
//! proof that was verified against such a checkpoint. Errors tell a
//! verification failure (the log misbehaved or was tampered with) apart from
//! a transport failure or a refusal by the server.
//!
//! The `tlog` command-line tool is built on this library.

pub mod convert;
pub mod state;
pub mod trust;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use state::{StateError, StateFile};
use tokio::sync::Mutex;

use tlog_core::Hash;
use tlog_core::checkpoint::{self, SignedCheckpoint};
use tlog_core::event::{Action, ArtifactEvent, Timestamp};
use tlog_core::leaf::{AnyLeaf, decode_any};
use tlog_core::merkle::verify::{InclusionVerifier, parse_proof};
use tlog_core::note::{Verifier, Verifiers};
use tlog_proto::v1 as pb;
use tonic::transport::Channel;

/// What went wrong talking to a log.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot reach the log at {url}: {source}")]
    Connect {
        /// The address used.
        url: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The server answered with an error status (bad input, policy,
    /// overload, unavailable ...).
    #[error("the log refused: {code:?}: {message}")]
    Refused {
        /// The gRPC status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// The connection broke or could not be re-established during a call
    /// (the server is down, restarting, or unreachable).
    #[error("the connection to the log failed: {0}")]
    Transport(String),
    /// No answer within the configured time.
    #[error("no answer to {what} within {after:?} (raise --timeout if the log is slow)")]
    Timeout {
        /// The call.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
    /// What the server sent does not verify: a bad signature, a proof that
    /// does not lead to the signed root, a leaf that does not hash to its
    /// leaf hash. This is evidence of misbehavior or tampering.
    #[error("verification failed: {0}")]
    Verification(String),
    /// Two validly signed checkpoints that cannot both be true: the log
    /// forked, rolled back, or shows this client a different tree than
    /// before. Carries both checkpoints as evidence.
    #[error("{0}")]
    Misbehavior(Box<Misbehavior>),
    /// The trusted-state file could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A local argument is wrong (for example a verifier key).
    #[error("{0}")]
    Usage(String),
    /// The log's checkpoint does not verify with the pinned key; nothing
    /// was sent.
    #[error(
        "the log's checkpoint does not verify with the pinned key {vkey} ({reason}): the \
         key is wrong or this is not the log you meant; nothing was appended"
    )]
    WrongKey {
        /// The pinned key.
        vkey: String,
        /// What failed.
        reason: String,
    },
    /// The log answered that events were appended, but its answer does not
    /// verify: the entries may be in the log, unproven.
    #[error(
        "the log says it appended the event(s) at index {indexes:?}, but its answer does not \
         verify: {reason}. Check them with `tlog prove` before trusting them; a retry with the \
         same event id returns the same entry, not a new one"
    )]
    AppendedUnverified {
        /// The indexes the log named.
        indexes: Vec<u64>,
        /// What failed.
        reason: String,
    },
}

impl ClientError {
    /// True when the error proves the log (or something between) lied:
    /// a verification failure or misbehavior.
    pub fn is_verification(&self) -> bool {
        matches!(
            self,
            ClientError::Verification(_)
                | ClientError::Misbehavior(_)
                | ClientError::AppendedUnverified { .. }
        )
    }

    /// True when the error is about the caller's input (bad arguments, or
    /// the server refusing the input as invalid).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ClientError::Usage(_)
                | ClientError::WrongKey { .. }
                | ClientError::Refused {
                    code: tonic::Code::InvalidArgument
                        | tonic::Code::OutOfRange
                        | tonic::Code::NotFound
                        | tonic::Code::AlreadyExists,
                    ..
                }
        )
    }
}

/// Evidence that the log misbehaved: two signed checkpoints (each verified
/// with the pinned key) that no honest append-only log can both have
/// signed, and the proof that failed, if one was served.
#[derive(Debug, Clone)]
pub struct Misbehavior {
    /// What is wrong, in a sentence.
    pub what: String,
    /// The checkpoint this client trusted, as signed.
    pub trusted: String,
    /// The conflicting checkpoint, as signed.
    pub seen: String,
    /// The consistency proof the log served, if any.
    pub proof: Vec<Hash>,
}

impl std::fmt::Display for Misbehavior {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "server misbehavior: {}", self.what)?;
        writeln!(f, "trusted checkpoint (verified earlier):")?;
        for l in self.trusted.lines() {
            writeln!(f, "  {l}")?;
        }
        writeln!(f, "conflicting checkpoint (also validly signed):")?;
        for l in self.seen.lines() {
            writeln!(f, "  {l}")?;
        }
        if !self.proof.is_empty() {
            writeln!(f, "consistency proof served:")?;
            for h in &self.proof {
                writeln!(f, "  {h}")?;
            }
        }
        write!(
            f,
            "keep both checkpoints: together they prove the log is not append-only"
        )
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        // A status made on this side from a transport error carries that
        // error as its source; one the server sent does not.
        if let Some(mut src) = std::error::Error::source(&s) {
            let mut text = src.to_string();
            while let Some(next) = src.source() {
                text.push_str(&format!(": {next}"));
                src = next;
            }
            return ClientError::Transport(text);
        }
        ClientError::Refused {
            code: s.code(),
            message: s.message().to_owned(),
        }
    }
}

fn verification(e: impl std::fmt::Display) -> ClientError {
    ClientError::Verification(e.to_string())
}

/// Awaits `fut` for at most `after`.
async fn timed<T>(
    after: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r.map_err(ClientError::from),
        Err(_) => Err(ClientError::Timeout { what, after }),
    }
}

/// Failures after which an append is retried (safe: appends are
/// idempotent by source and event id): transport failures, and the status
/// codes of an overloaded, restarting or briefly unavailable log.
fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Transport(_) | ClientError::Timeout { .. } => true,
        ClientError::Refused { code, .. } => matches!(
            code,
            tonic::Code::Unavailable
                | tonic::Code::ResourceExhausted
                | tonic::Code::Aborted
                | tonic::Code::DeadlineExceeded
        ),
        _ => false,
    }
}

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

/// How to reach a log that requires TLS or credentials.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// CA certificate(s), PEM, that the server's certificate must chain to;
    /// without it an `https://` address is checked against the system's
    /// roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The name the server's certificate must carry (default: the host).
    pub tls_domain: Option<String>,
    /// Client certificate and key, PEM, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Bearer token sent with every call.
    pub token: Option<String>,
    /// Justification sent with every call (`x-tlog-justification`).
    pub justification: Option<String>,
    /// Time limit per call and for connecting (default 30 s).
    pub timeout: Option<Duration>,
    /// How many times a failed append is retried (default 4), with
    /// exponential backoff from 100 ms. Only appends are retried: they are
    /// idempotent by source and event id.
    pub retries: Option<u32>,
    /// The trusted-state file (see [`state`]); without one the client
    /// trusts per process only.
    pub state_file: Option<PathBuf>,
}

/// Default per-call time limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of append retries.
pub const DEFAULT_RETRIES: u32 = 4;

/// The wait before retry `attempt` (0-based): 100 ms doubling up to 5 s,
/// with up to 25% jitter so that many clients do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1u32 << attempt.min(6))
        .min(Duration::from_secs(5));
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 250)
        .unwrap_or(0);
    base + base * jitter / 1000
}

/// Adds the credentials of [`ConnectOptions`] to every call.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    justification: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        if let Some(j) = &self.justification {
            req.metadata_mut().insert("x-tlog-justification", j.clone());
        }
        Ok(req)
    }
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
    /// Connects to `url` (e.g. `http://127.0.0.1:7400`) and pins `vkey`
    /// (`name+hexid+base64key`); the key's name is the log's origin.
    pub async fn connect(url: &str, vkey: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, vkey, &ConnectOptions::default()).await
    }

    /// Like [`Client::connect`], with TLS, credentials, timeouts, retries
    /// and a trusted-state file.
    pub async fn connect_with(
        url: &str,
        vkey: &str,
        opts: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        let verifier = Verifier::from_vkey(vkey.trim())
            .map_err(|e| ClientError::Usage(format!("verifier key: {e}")))?;
        let timeout = opts.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let mut endpoint = Channel::from_shared(url.to_owned())
            .map_err(|e| ClientError::Usage(format!("server address {url:?}: {e}")))?
            .connect_timeout(timeout)
            .tcp_nodelay(true);
        // TLS for an https:// address or a given CA: the CA if given, else
        // the system's roots (SSL_CERT_FILE and SSL_CERT_DIR are honoured).
        if opts.ca_pem.is_some() || url.starts_with("https://") {
            let mut tls = tonic::transport::ClientTlsConfig::new();
            tls = match &opts.ca_pem {
                Some(ca) => tls.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
                None => tls.with_native_roots(),
            };
            if let Some(d) = &opts.tls_domain {
                tls = tls.domain_name(d.clone());
            }
            if let Some((cert, key)) = &opts.identity {
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| ClientError::Usage(format!("TLS settings: {e}")))?;
        } else if opts.identity.is_some() {
            return Err(ClientError::Usage(
                "a client certificate needs TLS: use an https:// address".into(),
            ));
        }
        let header = |what: &str, v: String| {
            v.parse()
                .map_err(|_| ClientError::Usage(format!("{what} is not valid header text")))
        };
        let creds = Credentials {
            token: opts
                .token
                .as_ref()
                .map(|t| header("token", format!("Bearer {}", t.trim())))
                .transpose()?,
            justification: opts
                .justification
                .clone()
                .map(|j| header("justification", j))
                .transpose()?,
        };
        let origin = verifier.name().to_owned();
        let verifiers = Verifiers::new([verifier]);
        let mut trust = Trust::default();
        if let Some(path) = &opts.state_file {
            let file = StateFile::new(path);
            if let Some(note) = file.load()? {
                let cp = checkpoint::open(note.as_bytes(), &verifiers, &origin).map_err(|e| {
                    ClientError::Usage(format!(
                        "the trusted-state file {} does not hold a checkpoint of this log signed by this key ({e}); \
                         if you changed logs on purpose, use another --state file",
                        path.display()
                    ))
                })?;
                trust.latest = Some(cp);
            }
            trust.file = Some(file);
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                url: url.to_owned(),
                source,
            })?;
        Ok(Client {
            rpc: pb::log_client::LogClient::with_interceptor(channel, creds)
                .max_decoding_message_size(64 << 20),
            origin,
            vkey: vkey.trim().to_owned(),
            verifiers,
            trust: Arc::new(Mutex::new(trust)),
            timeout,
            retries: opts.retries.unwrap_or(DEFAULT_RETRIES),
            key_checked: false,
        })
    }

    /// Before the first append: the log's latest checkpoint must verify
    /// with the pinned key, so that a wrong key appends nothing.
    async fn check_key(&mut self) -> Result<(), ClientError> {
        if self.key_checked {
            return Ok(());
        }
        match self.checkpoint().await {
            Ok(_) => {
                self.key_checked = true;
                Ok(())
            }
            Err(ClientError::Verification(why)) => Err(ClientError::WrongKey {
                vkey: self.vkey.clone(),
                reason: why,
            }),
            Err(e) => Err(e),
        }
    }

    /// The pinned verifier key.
    pub fn verifier_key(&self) -> &str {
        &self.vkey
    }

    /// The newest checkpoint this client has verified and trusts.
    pub async fn trusted(&self) -> Option<SignedCheckpoint> {
        self.trust.lock().await.latest.clone()
    }

    /// Runs one unary call with the timeout; with `retry`, retries
    /// transient failures with exponential backoff.
    async fn call<T, F, Fut>(
        &self,
        what: &'static str,
        retry: bool,
        mut f: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Rpc) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut attempt = 0u32;
        loop {
            let err = match tokio::time::timeout(self.timeout, f(self.rpc.clone())).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(status)) => ClientError::from(status),
                Err(_) => ClientError::Timeout {
                    what,
                    after: self.timeout,
                },
            };
            if !retry || !retryable(&err) || attempt >= self.retries {
                return Err(err);
            }
            let delay = backoff(attempt);
            tracing::debug!(call = what, attempt, ?delay, error = %err, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
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

    /// Verifies a signed checkpoint from the wire.
    pub fn verify_checkpoint(
        &self,
        cp: &pb::SignedCheckpoint,
    ) -> Result<SignedCheckpoint, ClientError> {
        let opened = checkpoint::open(cp.note.as_bytes(), &self.verifiers, &self.origin)
            .map_err(|e| verification(format!("checkpoint: {e}")))?;
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
        let mut stream = self.entries(index, end).await?;
        stream
            .next_page()
            .await?
            .and_then(|page| page.into_iter().next())
            .map(|(_, leaf)| leaf)
            .ok_or_else(|| verification(format!("entry {index} was not served")))
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
    pub async fn entries(&mut self, start: u64, end: u64) -> Result<EntryStream, ClientError> {
        let s = timed(
            self.timeout,
            "GetEntries",
            self.rpc.get_entries(pb::GetEntriesRequest { start, end }),
        )
        .await?;
        Ok(EntryStream {
            inner: s.into_inner(),
            next: start,
            end,
            timeout: self.timeout,
        })
    }

    /// Opens the log's stream of new checkpoints. Pass each message to
    /// [`Client::watched`].
    pub async fn watch(&mut self) -> Result<tonic::Streaming<pb::SignedCheckpoint>, ClientError> {
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

/// Pages of entries from [`Client::entries`], checked to arrive in order
/// with no gap.
#[derive(Debug)]
pub struct EntryStream {
    inner: tonic::Streaming<pb::GetEntriesResponse>,
    next: u64,
    end: u64,
    timeout: Duration,
}

impl EntryStream {
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

impl Trust {
    fn set(&mut self, cp: &SignedCheckpoint) -> Result<(), ClientError> {
        if let Some(f) = &self.file {
            f.save(&cp.raw)?;
        }
        self.latest = Some(cp.clone());
        Ok(())
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

/// A verified checkpoint's tree head, for [`trust`].
fn head(cp: &SignedCheckpoint) -> trust::Head {
    trust::Head {
        size: cp.checkpoint.size,
        root: cp.checkpoint.root,
    }
}
