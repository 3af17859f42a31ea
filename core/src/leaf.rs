//! The leaf: the exact bytes the log commits for one event.
//!
//! A leaf holds the submitted [`ArtifactEvent`], the identity the server
//! authenticated for the submitter (not a claim of the client) and the
//! server's integration time. Everyone verifies a leaf by hashing the bytes
//! the log served (`SHA-256(0x00 || leaf)`), never by re-encoding; the
//! encoding is still deterministic (one byte string per value) and
//! versioned, so decoders can tell formats apart forever.
//!
//! # Encoding, versions 1 and 2
//!
//! All integers big-endian. `str` and `bytes` are a `u32` length then the
//! bytes (`str` is UTF-8); `list<T>` is a `u32` count then the items;
//! `opt<T>` is `0x00`, or `0x01` then the value; `time` is `i64` seconds then
//! `u32` nanoseconds.
//!
//! ```text
//! leaf      = u8 version || event || str principal || str auth_method
//!             || str peer || time integrated_at
//!             || list<str> verified_signers          (version 2 only)
//! event     = str event_id || str source || u8 action || artifact || str actor
//!             || u8 interface || str environment || opt<time> client_time
//!             || opt<provenance> || str justification || str ticket
//!             || list<attestation>
//! artifact  = str name || str version || list<digest> || str media_type || str uri
//! digest    = str algorithm || str hex
//! provenance= str source_repo || str source_commit || list<digest> data
//!             || list<digest> config || list<ref> parents || str builder
//! ref       = str name || str version || opt<digest>
//! attestation = str scheme || str key_id || bytes signature
//! ```
//!
//! `verified_signers` names the trusted signers whose attestation over the
//! event the server verified at submission (sorted, no duplicates). A
//! version-1 leaf has none and re-encodes as version 1, byte for byte.
//!
//! Action and interface codes are those of [`Action::code`] and
//! [`Interface::code`]. Decoding is strict: unknown version, unknown codes,
//! option bytes other than 0/1, invalid UTF-8 and trailing bytes are errors.

use sha2::{Digest as _, Sha256};

use crate::event::{
    Action, Artifact, ArtifactEvent, ArtifactRef, Attestation, Digest, Interface, Provenance,
    Timestamp,
};

/// The leaf encoding version this code writes.
pub const LEAF_VERSION: u8 = 2;

/// The oldest leaf encoding version this code reads.
pub const OLDEST_LEAF_VERSION: u8 = 1;

/// First byte of an access-record leaf ('A'), distinct from every
/// event-leaf version.
pub const ACCESS_LEAF_VERSION: u8 = 0x41;

/// Domain-separation prefix of the bytes an attestation signs.
pub const ATTESTATION_CONTEXT: &[u8] = b"tlog-event-attestation/v1\n";

/// Who submitted an event, as the server authenticated them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submitter {
    /// The authenticated principal (SPIFFE ID, DNS name, token subject, or
    /// the configured default principal before authentication is set up).
    pub principal: String,
    /// How it was authenticated: `mtls`, `bearer`, `anonymous`, `none`.
    pub auth_method: String,
    /// The network peer, as the server saw it.
    pub peer: String,
}

/// One committed log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The encoding version: [`LEAF_VERSION`] for new leaves.
    pub version: u8,
    /// The submitted event.
    pub event: ArtifactEvent,
    /// Who submitted it.
    pub submitter: Submitter,
    /// When the server integrated it.
    pub integrated_at: Timestamp,
    /// Trusted signers whose attestation verified (version 2; sorted).
    pub verified_signers: Vec<String>,
}

/// Why leaf bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafError {
    /// The version byte is not one this code reads.
    #[error("unsupported leaf version {0}")]
    Version(u8),
    /// The bytes end before the value does.
    #[error("leaf truncated while reading {0}")]
    Truncated(&'static str),
    /// A value is not allowed.
    #[error("invalid leaf: {0}")]
    Invalid(&'static str),
    /// Bytes remain after the leaf.
    #[error("{0} trailing bytes after leaf")]
    Trailing(usize),
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: usize) {
        // Lengths are bounded by validation far below 4 GiB.
        self.0
            .extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len());
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn time(&mut self, t: &Timestamp) {
        self.0.extend_from_slice(&t.seconds.to_be_bytes());
        self.0.extend_from_slice(&t.nanos.to_be_bytes());
    }
    fn digest(&mut self, d: &Digest) {
        self.str(&d.algorithm);
        self.str(&d.hex);
    }
    fn digests(&mut self, ds: &[Digest]) {
        self.u32(ds.len());
        for d in ds {
            self.digest(d);
        }
    }
    fn event(&mut self, e: &ArtifactEvent, with_attestations: bool) {
        self.str(&e.event_id);
        self.str(&e.source);
        self.u8(e.action.code());
        self.str(&e.artifact.name);
        self.str(&e.artifact.version);
        self.digests(&e.artifact.digests);
        self.str(&e.artifact.media_type);
        self.str(&e.artifact.uri);
        self.str(&e.actor);
        self.u8(e.interface.code());
        self.str(&e.environment);
        match &e.client_time {
            None => self.u8(0),
            Some(t) => {
                self.u8(1);
                self.time(t);
            }
        }
        match &e.provenance {
            None => self.u8(0),
            Some(p) => {
                self.u8(1);
                self.str(&p.source_repo);
                self.str(&p.source_commit);
                self.digests(&p.data_digests);
                self.digests(&p.config_digests);
                self.u32(p.parents.len());
                for r in &p.parents {
                    self.str(&r.name);
                    self.str(&r.version);
                    match &r.digest {
                        None => self.u8(0),
                        Some(d) => {
                            self.u8(1);
                            self.digest(d);
                        }
                    }
                }
                self.str(&p.builder);
            }
        }
        self.str(&e.justification);
        self.str(&e.ticket);
        let atts: &[Attestation] = if with_attestations {
            &e.attestations
        } else {
            &[]
        };
        self.u32(atts.len());
        for a in atts {
            self.str(&a.scheme);
            self.str(&a.key_id);
            self.bytes(&a.signature);
        }
    }
}

struct R<'a>(&'a [u8]);

impl<'a> R<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], LeafError> {
        if self.0.len() < n {
            return Err(LeafError::Truncated(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, LeafError> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &'static str) -> Result<usize, LeafError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, LeafError> {
        let n = self.u32(what)?;
        Ok(self.take(n, what)?.to_vec())
    }
    fn str(&mut self, what: &'static str) -> Result<String, LeafError> {
        let n = self.u32(what)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| LeafError::Invalid("string is not UTF-8"))
    }
    fn flag(&mut self, what: &'static str) -> Result<bool, LeafError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(LeafError::Invalid("option byte must be 0 or 1")),
        }
    }
    fn count(&mut self, what: &'static str, min_item: usize) -> Result<usize, LeafError> {
        let n = self.u32(what)?;
        // Every item takes at least `min_item` bytes: refuse counts that
        // cannot fit, before allocating for them.
        if n.saturating_mul(min_item) > self.0.len() {
            return Err(LeafError::Truncated(what));
        }
        Ok(n)
    }
    fn time(&mut self, what: &'static str) -> Result<Timestamp, LeafError> {
        let b = self.take(12, what)?;
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        let nanos = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        if nanos >= 1_000_000_000 {
            return Err(LeafError::Invalid("nanoseconds out of range"));
        }
        Ok(Timestamp {
            seconds: i64::from_be_bytes(s),
            nanos,
        })
    }
    fn digest(&mut self) -> Result<Digest, LeafError> {
        Ok(Digest {
            algorithm: self.str("digest algorithm")?,
            hex: self.str("digest hex")?,
        })
    }
    fn digests(&mut self) -> Result<Vec<Digest>, LeafError> {
        let n = self.count("digest list", 8)?;
        (0..n).map(|_| self.digest()).collect()
    }
    fn event(&mut self) -> Result<ArtifactEvent, LeafError> {
        let event_id = self.str("event_id")?;
        let source = self.str("source")?;
        let action = Action::from_code(i64::from(self.u8("action")?))
            .ok_or(LeafError::Invalid("unknown action code"))?;
        let artifact = Artifact {
            name: self.str("artifact name")?,
            version: self.str("artifact version")?,
            digests: self.digests()?,
            media_type: self.str("media type")?,
            uri: self.str("uri")?,
        };
        let actor = self.str("actor")?;
        let interface = Interface::from_code(i64::from(self.u8("interface")?))
            .ok_or(LeafError::Invalid("unknown interface code"))?;
        let environment = self.str("environment")?;
        let client_time = if self.flag("client time")? {
            Some(self.time("client time")?)
        } else {
            None
        };
        let provenance = if self.flag("provenance")? {
            let source_repo = self.str("source repo")?;
            let source_commit = self.str("source commit")?;
            let data_digests = self.digests()?;
            let config_digests = self.digests()?;
            let n = self.count("parents", 9)?;
            let mut parents = Vec::with_capacity(n);
            for _ in 0..n {
                let name = self.str("parent name")?;
                let version = self.str("parent version")?;
                let digest = if self.flag("parent digest")? {
                    Some(self.digest()?)
                } else {
                    None
                };
                parents.push(ArtifactRef {
                    name,
                    version,
                    digest,
                });
            }
            Some(Provenance {
                source_repo,
                source_commit,
                data_digests,
                config_digests,
                parents,
                builder: self.str("builder")?,
            })
        } else {
            None
        };
        let justification = self.str("justification")?;
        let ticket = self.str("ticket")?;
        let n = self.count("attestations", 12)?;
        let mut attestations = Vec::with_capacity(n);
        for _ in 0..n {
            attestations.push(Attestation {
                scheme: self.str("attestation scheme")?,
                key_id: self.str("attestation key id")?,
                signature: self.bytes("attestation signature")?,
            });
        }
        Ok(ArtifactEvent {
            event_id,
            source,
            action,
            artifact,
            actor,
            interface,
            environment,
            client_time,
            provenance,
            justification,
            ticket,
            attestations,
        })
    }
}

impl ArtifactEvent {
    /// The event's canonical encoding (the `event` part of a leaf).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W(Vec::with_capacity(512));
        w.event(self, true);
        w.0
    }

    /// SHA-256 of [`ArtifactEvent::encode`]: two submissions with the same
    /// (source, event id) are the same event exactly when these match.
    pub fn content_digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    /// The bytes an attestation signs: [`ATTESTATION_CONTEXT`] followed by
    /// the event's encoding with its attestation list left empty.
    pub fn attestation_bytes(&self) -> Vec<u8> {
        let mut w = W(ATTESTATION_CONTEXT.to_vec());
        w.event(self, false);
        w.0
    }
}

impl Leaf {
    /// The leaf bytes, in the leaf's version (version 1 cannot carry
    /// verified signers; they are dropped).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W(Vec::with_capacity(640));
        w.u8(self.version);
        w.event(&self.event, true);
        w.str(&self.submitter.principal);
        w.str(&self.submitter.auth_method);
        w.str(&self.submitter.peer);
        w.time(&self.integrated_at);
        if self.version >= 2 {
            w.u32(self.verified_signers.len());
            for s in &self.verified_signers {
                w.str(s);
            }
        }
        w.0
    }

    /// The length of [`Leaf::encode`] of a current-version leaf whose
    /// event encodes ([`ArtifactEvent::encode`]) to `event_len` bytes,
    /// without encoding it: what a log checks before it commits a leaf
    /// that must fit a C2SP entry bundle ([`crate::tiles::MAX_ENTRY`]).
    pub fn encoded_len(
        event_len: usize,
        submitter: &Submitter,
        verified_signers: &[String],
    ) -> usize {
        let s = |x: &str| 4 + x.len();
        1 + event_len
            + s(&submitter.principal)
            + s(&submitter.auth_method)
            + s(&submitter.peer)
            + 12
            + 4
            + verified_signers.iter().map(|v| s(v)).sum::<usize>()
    }

    /// Decodes leaf bytes strictly.
    pub fn decode(bytes: &[u8]) -> Result<Leaf, LeafError> {
        let mut r = R(bytes);
        let version = r.u8("version")?;
        if !(OLDEST_LEAF_VERSION..=LEAF_VERSION).contains(&version) {
            return Err(LeafError::Version(version));
        }
        let event = r.event()?;
        let submitter = Submitter {
            principal: r.str("principal")?,
            auth_method: r.str("auth method")?,
            peer: r.str("peer")?,
        };
        let integrated_at = r.time("integration time")?;
        let mut verified_signers = Vec::new();
        if version >= 2 {
            let n = r.count("verified signers", 4)?;
            for _ in 0..n {
                let s = r.str("verified signer")?;
                // Canonical: strictly increasing.
                if verified_signers
                    .last()
                    .is_some_and(|last: &String| *last >= s)
                {
                    return Err(LeafError::Invalid("verified signers not sorted and unique"));
                }
                verified_signers.push(s);
            }
        }
        if !r.0.is_empty() {
            return Err(LeafError::Trailing(r.0.len()));
        }
        Ok(Leaf {
            version,
            event,
            submitter,
            integrated_at,
            verified_signers,
        })
    }
}

/// The calls of the `tlog.v1.Log` service, as access records name them
/// (their `method` field): one list for the server that records them and
/// the monitor that reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    /// `Append`: one event.
    Append,
    /// `AppendBatch`: many events.
    AppendBatch,
    /// `GetCheckpoint`.
    GetCheckpoint,
    /// `GetEntries`.
    GetEntries,
    /// `GetEntryByHash`.
    GetEntryByHash,
    /// `GetInclusionProof`.
    GetInclusionProof,
    /// `GetConsistencyProof`.
    GetConsistencyProof,
    /// `QueryArtifact`.
    QueryArtifact,
    /// `WatchCheckpoints`.
    WatchCheckpoints,
    /// `GetLogInfo`.
    GetLogInfo,
}

impl Rpc {
    /// Every call, in the order of the service definition.
    pub const ALL: [Rpc; 10] = [
        Rpc::Append,
        Rpc::AppendBatch,
        Rpc::GetCheckpoint,
        Rpc::GetEntries,
        Rpc::GetEntryByHash,
        Rpc::GetInclusionProof,
        Rpc::GetConsistencyProof,
        Rpc::QueryArtifact,
        Rpc::WatchCheckpoints,
        Rpc::GetLogInfo,
    ];

    /// The method's name, as in `proto/tlog/v1/tlog.proto`.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::Append => "Append",
            Rpc::AppendBatch => "AppendBatch",
            Rpc::GetCheckpoint => "GetCheckpoint",
            Rpc::GetEntries => "GetEntries",
            Rpc::GetEntryByHash => "GetEntryByHash",
            Rpc::GetInclusionProof => "GetInclusionProof",
            Rpc::GetConsistencyProof => "GetConsistencyProof",
            Rpc::QueryArtifact => "QueryArtifact",
            Rpc::WatchCheckpoints => "WatchCheckpoints",
            Rpc::GetLogInfo => "GetLogInfo",
        }
    }

    /// The call named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|r| r.name() == name)
    }

    /// True for the calls that append (everything else reads).
    pub fn appends(self) -> bool {
        matches!(self, Rpc::Append | Rpc::AppendBatch)
    }
}

/// The reads of the HTTP tiles listener (c2sp.org/tlog-tiles), as access
/// records name them (their `method` field) beside the [`Rpc`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpRead {
    /// `GET <prefix>/checkpoint`.
    Checkpoint,
    /// `GET <prefix>/tile/<L>/<N>[.p/<W>]`.
    Tile,
    /// `GET <prefix>/tile/entries/<N>[.p/<W>]`.
    EntryBundle,
}

impl HttpRead {
    /// Every tiles read.
    pub const ALL: [HttpRead; 3] = [HttpRead::Checkpoint, HttpRead::Tile, HttpRead::EntryBundle];

    /// The name access records give it.
    pub fn name(self) -> &'static str {
        match self {
            HttpRead::Checkpoint => "http:checkpoint",
            HttpRead::Tile => "http:tile",
            HttpRead::EntryBundle => "http:entries",
        }
    }
}

/// True if an access record's `method` names a read: a call of the
/// service that does not append, or a tiles read.
pub fn is_read_method(method: &str) -> bool {
    Rpc::parse(method).is_some_and(|r| !r.appends())
        || HttpRead::ALL.iter().any(|h| h.name() == method)
}

/// The decisions an access record can state (its `decision` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Every policy check asked passed.
    Allow,
    /// A check, or a refusal before the request ran, said no.
    Deny,
    /// The request asked nothing of the policy (it failed before).
    NotEvaluated,
}

impl Decision {
    /// Every decision, in the order above.
    pub const ALL: [Decision; 3] = [Decision::Allow, Decision::Deny, Decision::NotEvaluated];

    /// As written in access records: `allow`, `deny`, `not-evaluated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::NotEvaluated => "not-evaluated",
        }
    }

    /// The decision written as `s`, if it is one.
    pub fn parse(s: &str) -> Option<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// An access decision recorded in the log itself (ledger auditing), so
/// that reading the ledger is tamper-evident too.
///
/// ```text
/// access = u8 0x41 || str time || str principal || str auth_method
///          || str issuer || str peer || str method || list<str> actions
///          || list<str> resources || str decision || list<str> policies
///          || str justification || str status || str reason
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct AccessLeaf {
    /// When the request arrived, RFC 3339 UTC.
    pub time: String,
    /// The principal.
    pub principal: String,
    /// How it was authenticated.
    pub auth_method: String,
    /// Token issuer or trust domain.
    pub issuer: String,
    /// The network peer.
    pub peer: String,
    /// The RPC.
    pub method: String,
    /// Policy actions asked for.
    pub actions: Vec<String>,
    /// Resources asked for.
    pub resources: Vec<String>,
    /// `allow`, `deny` or `not-evaluated`.
    pub decision: String,
    /// Deciding policies.
    pub policies: Vec<String>,
    /// The caller's justification.
    pub justification: String,
    /// The gRPC status of the answer.
    pub status: String,
    /// Why it was refused, if it was.
    pub reason: String,
}

impl AccessLeaf {
    /// The leaf bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W(Vec::with_capacity(256));
        w.u8(ACCESS_LEAF_VERSION);
        for s in [
            &self.time,
            &self.principal,
            &self.auth_method,
            &self.issuer,
            &self.peer,
            &self.method,
        ] {
            w.str(s);
        }
        for list in [&self.actions, &self.resources] {
            w.u32(list.len());
            for s in list {
                w.str(s);
            }
        }
        w.str(&self.decision);
        w.u32(self.policies.len());
        for s in &self.policies {
            w.str(s);
        }
        for s in [&self.justification, &self.status, &self.reason] {
            w.str(s);
        }
        w.0
    }

    /// Decodes an access-record leaf strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, LeafError> {
        let mut r = R(bytes);
        let v = r.u8("version")?;
        if v != ACCESS_LEAF_VERSION {
            return Err(LeafError::Version(v));
        }
        let list = |r: &mut R<'_>, what: &'static str| -> Result<Vec<String>, LeafError> {
            let n = r.count(what, 4)?;
            (0..n).map(|_| r.str(what)).collect()
        };
        let time = r.str("time")?;
        let principal = r.str("principal")?;
        let auth_method = r.str("auth method")?;
        let issuer = r.str("issuer")?;
        let peer = r.str("peer")?;
        let method = r.str("method")?;
        let actions = list(&mut r, "actions")?;
        let resources = list(&mut r, "resources")?;
        let decision = r.str("decision")?;
        let policies = list(&mut r, "policies")?;
        let leaf = AccessLeaf {
            time,
            principal,
            auth_method,
            issuer,
            peer,
            method,
            actions,
            resources,
            decision,
            policies,
            justification: r.str("justification")?,
            status: r.str("status")?,
            reason: r.str("reason")?,
        };
        if !r.0.is_empty() {
            return Err(LeafError::Trailing(r.0.len()));
        }
        Ok(leaf)
    }
}

/// Any leaf the log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyLeaf {
    /// An artifact event.
    Event(Box<Leaf>),
    /// An access record.
    Access(Box<AccessLeaf>),
}

/// Decodes a leaf of either kind, by its first byte.
pub fn decode_any(bytes: &[u8]) -> Result<AnyLeaf, LeafError> {
    match bytes.first() {
        Some(&ACCESS_LEAF_VERSION) => {
            AccessLeaf::decode(bytes).map(|a| AnyLeaf::Access(Box::new(a)))
        }
        _ => Leaf::decode(bytes).map(|l| AnyLeaf::Event(Box::new(l))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::sample;

    #[test]
    fn access_leaves_round_trip_and_are_told_apart() {
        let a = AccessLeaf {
            time: "2026-11-30T20:00:00Z".into(),
            principal: "auditor".into(),
            method: "QueryArtifact".into(),
            actions: vec!["query".into()],
            resources: vec!["artifact \"team-a/m\"".into()],
            decision: "allow".into(),
            policies: vec!["auditor-query".into()],
            justification: "INC-42".into(),
            status: "Ok".into(),
            ..Default::default()
        };
        let bytes = a.encode();
        assert_eq!(AccessLeaf::decode(&bytes), Ok(a.clone()));
        assert_eq!(decode_any(&bytes), Ok(AnyLeaf::Access(Box::new(a))));
        assert!(Leaf::decode(&bytes).is_err(), "not an event leaf");
        let e = leaf().encode();
        assert!(matches!(decode_any(&e), Ok(AnyLeaf::Event(_))));
        for cut in 0..bytes.len() {
            assert!(AccessLeaf::decode(&bytes[..cut]).is_err());
        }
    }

    fn leaf() -> Leaf {
        let mut event = sample();
        event.provenance = Some(Provenance {
            source_repo: "https://git.example.com/fraud".into(),
            source_commit: "0123abc".into(),
            data_digests: vec![Digest {
                algorithm: "sha256".into(),
                hex: "cd".repeat(32),
            }],
            config_digests: vec![],
            parents: vec![ArtifactRef {
                name: "base".into(),
                version: "1".into(),
                digest: None,
            }],
            builder: "ci".into(),
        });
        Leaf {
            version: LEAF_VERSION,
            event,
            submitter: Submitter {
                principal: "spiffe://example.org/registry".into(),
                auth_method: "mtls".into(),
                peer: "127.0.0.1:5000".into(),
            },
            integrated_at: Timestamp {
                seconds: 1_800_000_000,
                nanos: 42,
            },
            verified_signers: vec!["release-pipeline".into()],
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let l = leaf();
        let bytes = l.encode();
        assert_eq!(bytes[0], LEAF_VERSION);
        let back = Leaf::decode(&bytes).expect("decode");
        assert_eq!(back, l);
        assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn strict_decoding() {
        let bytes = leaf().encode();
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(Leaf::decode(&trailing), Err(LeafError::Trailing(1)));
        for cut in 0..bytes.len() {
            assert!(Leaf::decode(&bytes[..cut]).is_err(), "prefix {cut}");
        }
        let mut v3 = bytes.clone();
        v3[0] = 3;
        assert_eq!(Leaf::decode(&v3), Err(LeafError::Version(3)));
    }

    #[test]
    fn version_1_leaves_still_decode_verbatim() {
        let mut l = leaf();
        l.version = 1;
        l.verified_signers.clear();
        let bytes = l.encode();
        assert_eq!(bytes[0], 1);
        let back = Leaf::decode(&bytes).expect("v1 decodes");
        assert_eq!(back, l);
        assert_eq!(back.encode(), bytes);
        // Unsorted signers are not canonical.
        let mut u = leaf();
        u.verified_signers = vec!["b".into(), "a".into()];
        assert!(Leaf::decode(&u.encode()).is_err());
    }

    #[test]
    fn attestation_bytes_exclude_attestations() {
        let mut e = sample();
        let before = e.attestation_bytes();
        e.attestations.push(Attestation {
            scheme: crate::event::ED25519.into(),
            key_id: "k".into(),
            signature: vec![1; 64],
        });
        assert_eq!(e.attestation_bytes(), before);
        assert_ne!(e.content_digest(), sample().content_digest());
    }
}
