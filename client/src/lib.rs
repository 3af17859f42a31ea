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

use tlog_core::Hash;
use tlog_core::checkpoint::{self, SignedCheckpoint};
use tlog_core::event::ArtifactEvent;
use tlog_core::merkle::verify::{parse_proof, verify_consistency, verify_inclusion};
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
    /// What the server sent does not verify: a bad signature, a proof that
    /// does not lead to the signed root, a leaf that does not hash to its
    /// leaf hash. This is evidence of misbehavior or tampering.
    #[error("verification failed: {0}")]
    Verification(String),
    /// A local argument is wrong (for example a verifier key).
    #[error("{0}")]
    Usage(String),
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Refused {
            code: s.code(),
            message: s.message().to_owned(),
        }
    }
}

fn verification(e: impl std::fmt::Display) -> ClientError {
    ClientError::Verification(e.to_string())
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
    /// CA certificate(s), PEM, that the server's certificate must chain to
    /// (use an `https://` address).
    pub ca_pem: Option<Vec<u8>>,
    /// The name the server's certificate must carry (default: the host).
    pub tls_domain: Option<String>,
    /// Client certificate and key, PEM, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Bearer token sent with every call.
    pub token: Option<String>,
    /// Justification sent with every call (`x-tlog-justification`).
    pub justification: Option<String>,
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

/// A connection to one log, pinned to its verifier key.
#[derive(Debug, Clone)]
pub struct Client {
    rpc: Rpc,
    origin: String,
    verifiers: Verifiers,
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:7400`) and pins `vkey`
    /// (`name+hexid+base64key`); the key's name is the log's origin.
    pub async fn connect(url: &str, vkey: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, vkey, &ConnectOptions::default()).await
    }

    /// Like [`Client::connect`], with TLS and credentials.
    pub async fn connect_with(
        url: &str,
        vkey: &str,
        opts: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        let verifier = Verifier::from_vkey(vkey.trim())
            .map_err(|e| ClientError::Usage(format!("verifier key: {e}")))?;
        let mut endpoint = Channel::from_shared(url.to_owned())
            .map_err(|e| ClientError::Usage(format!("server address {url:?}: {e}")))?;
        if let Some(ca) = &opts.ca_pem {
            let mut tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca));
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
                "a client certificate needs TLS: give the server's CA certificate too".into(),
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
            origin: verifier.name().to_owned(),
            verifiers: Verifiers::new([verifier]),
        })
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
            .map_err(verification)?;
        if opened.checkpoint.size != cp.size
            || opened.checkpoint.root.as_bytes()[..] != cp.root_hash[..]
        {
            return Err(ClientError::Verification(
                "checkpoint fields differ from the signed note".into(),
            ));
        }
        Ok(opened)
    }

    fn verify_append(&self, r: pb::AppendResponse) -> Result<VerifiedEntry, ClientError> {
        let cp = self.verify_checkpoint(
            r.checkpoint
                .as_ref()
                .ok_or_else(|| verification("append answer without a checkpoint"))?,
        )?;
        self.verify_entry(
            r.index,
            r.leaf,
            &r.leaf_hash,
            &r.inclusion_proof,
            cp,
            r.duplicate,
        )
    }

    fn verify_entry(
        &self,
        index: u64,
        leaf: Vec<u8>,
        claimed_hash: &[u8],
        proof: &[Vec<u8>],
        checkpoint: SignedCheckpoint,
        duplicate: bool,
    ) -> Result<VerifiedEntry, ClientError> {
        let leaf_hash = tlog_core::leaf_hash(&leaf);
        if leaf_hash.as_bytes()[..] != claimed_hash[..] {
            return Err(verification(format!(
                "entry {index}: the served leaf hashes to {leaf_hash}, not to the leaf hash given"
            )));
        }
        let proof = parse_proof(proof).map_err(verification)?;
        verify_inclusion(
            index,
            checkpoint.checkpoint.size,
            &leaf_hash,
            &proof,
            &checkpoint.checkpoint.root,
        )
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

    /// Appends one event; returns it with its verified proof.
    pub async fn append(&mut self, event: &ArtifactEvent) -> Result<VerifiedEntry, ClientError> {
        let r = self
            .rpc
            .append(pb::AppendRequest {
                event: Some(convert::event(event)),
            })
            .await?
            .into_inner();
        self.verify_append(r)
    }

    /// Appends events in one call; each comes back verified.
    pub async fn append_batch(
        &mut self,
        events: &[ArtifactEvent],
    ) -> Result<Vec<VerifiedEntry>, ClientError> {
        let r = self
            .rpc
            .append_batch(pb::AppendBatchRequest {
                events: events.iter().map(convert::event).collect(),
            })
            .await?
            .into_inner();
        if r.results.len() != events.len() {
            return Err(verification("batch answer has the wrong number of results"));
        }
        r.results
            .into_iter()
            .map(|x| self.verify_append(x))
            .collect()
    }

    /// The latest checkpoint, verified.
    pub async fn checkpoint(&mut self) -> Result<SignedCheckpoint, ClientError> {
        let r = self
            .rpc
            .get_checkpoint(pb::GetCheckpointRequest { size: 0 })
            .await?
            .into_inner();
        self.verify_checkpoint(&r.checkpoint.ok_or_else(|| verification("no checkpoint"))?)
    }

    /// Fetches entry `index` and proves it in the latest checkpoint.
    pub async fn prove_index(&mut self, index: u64) -> Result<VerifiedEntry, ClientError> {
        let cp = self.checkpoint().await?;
        let p = self
            .rpc
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                leaf: Some(pb::get_inclusion_proof_request::Leaf::Index(index)),
                tree_size: cp.checkpoint.size,
            })
            .await?
            .into_inner();
        let mut entries = self
            .rpc
            .get_entries(pb::GetEntriesRequest {
                start: index,
                end: index + 1,
            })
            .await?
            .into_inner();
        let entry = entries
            .message()
            .await?
            .and_then(|page| page.entries.into_iter().next())
            .ok_or_else(|| verification(format!("entry {index} was not served")))?;
        if p.index != index || entry.index != index {
            return Err(verification("the server answered for another index"));
        }
        self.verify_entry(index, entry.leaf, &p.leaf_hash, &p.hashes, cp, false)
    }

    /// Proves that `new` extends `old` (fetching the proof from the log).
    pub async fn prove_consistency(
        &mut self,
        old: &SignedCheckpoint,
        new: &SignedCheckpoint,
    ) -> Result<(), ClientError> {
        let (s1, s2) = (old.checkpoint.size, new.checkpoint.size);
        if s1 > s2 {
            return Err(verification(format!(
                "the log shows size {s2} after size {s1}: it went backwards"
            )));
        }
        let p = self
            .rpc
            .get_consistency_proof(pb::GetConsistencyProofRequest {
                size1: s1,
                size2: s2,
            })
            .await?
            .into_inner();
        let proof = parse_proof(&p.hashes).map_err(verification)?;
        verify_consistency(s1, s2, &proof, &old.checkpoint.root, &new.checkpoint.root)
            .map_err(|e| verification(format!("checkpoints {s1} and {s2} are not consistent: {e}")))
    }
}
