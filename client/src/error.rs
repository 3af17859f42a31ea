//! What can go wrong talking to a log ([`ClientError`]), the evidence a
//! misbehaving log leaves ([`Misbehavior`]), and which failures an append
//! may retry.

use std::time::Duration;

use tlog_core::Hash;

use crate::state::StateError;

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
    /// The checkpoint is the log's, but the witnesses' cosignatures on it
    /// do not satisfy the trust policy (c2sp.org/tlog-policy): not trusted.
    #[error(
        "the checkpoint does not satisfy the witness policy: {0} (the log may not be witnessed \
         yet, or its witnesses are down; a log in async witnessing mode cosigns shortly after \
         an append)"
    )]
    Unwitnessed(String),
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

pub(crate) fn verification(e: impl std::fmt::Display) -> ClientError {
    ClientError::Verification(e.to_string())
}

/// Awaits `fut` for at most `after`.
pub(crate) async fn timed<T>(
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
pub(crate) fn retryable(e: &ClientError) -> bool {
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
