//! What happens to a connection and a request before the service sees
//! them: the TLS handshake, and the bound on what a request may cost to
//! decode. Both record what they refuse (peer, reason, time) in the server
//! log and the access log, so no refusal goes unrecorded.
//!
//! - [`TlsIncoming`]: accepts TCP connections and runs each TLS handshake
//!   (rustls, ALPN `h2`, client certificates verified against the
//!   configured roots) in its own task with a deadline; a failed handshake
//!   (an untrusted CA, an expired certificate, garbage) is recorded.
//! - [`Bounded`]: wraps the `tlog.v1.Log` service. A request body is read
//!   with a byte cap (small for callers that present no credentials), its
//!   bytes are taken from a shared budget as they arrive, and the message
//!   is checked against the protobuf schema before prost decodes it: wire
//!   types, UTF-8, nesting, and an estimate of what its decoded form takes
//!   in memory ([`Schema::cost`]). A message of 2 MB of empty events
//!   (prost makes a few hundred bytes of each two) is refused before it is
//!   built, and concurrent large messages wait for the budget instead of
//!   exhausting the host.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tonic::Status;

use crate::access::audit::{AuditSink, Decided, Ended, Identity, Refusal};

/// Most TLS handshakes in progress at once; further connections wait to
/// be accepted.
const MAX_HANDSHAKES: usize = 1024;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read.
    #[error("tls.{setting} {path}: {source}")]
    Read {
        /// The setting naming it.
        setting: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable certificate or key.
    #[error("tls.{setting} {path}: {reason}")]
    Pem {
        /// The setting naming it.
        setting: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("tls.client_ca_file: {0}")]
    Verifier(String),
}

/// The TLS acceptor for `t`: the server's chain and key, ALPN `h2`, and,
/// with `client_ca_file`, client certificates verified against those
/// roots (required unless `client_auth_optional`).
pub fn tls_acceptor(t: &crate::ops::config::TlsSection) -> Result<TlsAcceptor, TlsSetupError> {
    tls_acceptor_for(t, &[b"h2"])
}

/// The TLS acceptor of `t` offering the ALPN protocols `alpn` (gRPC:
/// `h2`; the tiles listener: `http/1.1`).
pub fn tls_acceptor_for(
    t: &crate::ops::config::TlsSection,
    alpn: &[&[u8]],
) -> Result<TlsAcceptor, TlsSetupError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read = |setting: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| TlsSetupError::Read {
            setting,
            path: path.to_owned(),
            source,
        })
    };
    let pem = |setting: &'static str, path: &std::path::Path, reason: String| TlsSetupError::Pem {
        setting,
        path: path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read("cert_file", &t.cert_file)?)
            .collect::<Result<_, _>>()
            .map_err(|e| pem("cert_file", &t.cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem("cert_file", &t.cert_file, "no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("key_file", &t.key_file)?)
        .map_err(|e| pem("key_file", &t.key_file, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &t.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read("client_ca_file", ca)?) {
                let c = c.map_err(|e| pem("client_ca_file", ca, e.to_string()))?;
                roots
                    .add(c)
                    .map_err(|e| pem("client_ca_file", ca, e.to_string()))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let v = if t.client_auth_optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| TlsSetupError::Verifier(e.to_string()))?,
            )
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Records one refusal that happened before any RPC: in the server log
/// always, in the access log (and as a count in the ledger) if configured.
pub fn record_refusal(
    audit: Option<&AuditSink>,
    peer: Option<std::net::SocketAddr>,
    method: &str,
    status: tonic::Code,
    refusal: Refusal,
    reason: &str,
    started: Instant,
) {
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    tracing::warn!(%peer, method, reason, refusal = refusal.as_str(), "refused");
    if let Some(a) = audit {
        a.record(
            Ended {
                method,
                time: std::time::SystemTime::now(),
                start: started,
                peer,
                who: Identity::UNAUTHENTICATED,
                justification: "",
                decided: Decided::refused(),
                code: status,
                reason: reason.into(),
                refusal: Some(refusal),
            }
            .into_record(),
        );
    }
}

/// TLS connections, handshaken in their own tasks; failed handshakes are
/// recorded and dropped.
pub struct TlsIncoming {
    rx: tokio::sync::mpsc::Receiver<tokio_rustls::server::TlsStream<TcpStream>>,
}

impl TlsIncoming {
    /// Starts accepting on `listener`. Stops when the stream is dropped.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor, audit: Option<AuditSink>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = tx.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, say: wait a little.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx, audit) = (acceptor.clone(), tx.clone(), audit.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let why =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => {
                                let _ = tx.send(tls).await;
                                drop(slot);
                                return;
                            }
                            Ok(Err(e)) => format!("TLS handshake failed: {e}"),
                            Err(_) => format!("TLS handshake not done in {HANDSHAKE_TIMEOUT:?}"),
                        };
                    drop(slot);
                    record_refusal(
                        audit.as_ref(),
                        Some(peer),
                        "tls-handshake",
                        tonic::Code::Unauthenticated,
                        Refusal::TlsHandshake,
                        &why,
                        started,
                    );
                });
            }
        });
        TlsIncoming { rx }
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|o| o.map(Ok))
    }
}

/// One field of a message, as the schema says: its name and kind.
#[derive(Debug, Clone)]
struct FieldInfo {
    name: String,
    kind: Field,
}

/// The kind of a field.
#[derive(Debug, Clone)]
enum Field {
    /// A message of this (fully qualified) type.
    Message(String),
    /// A string (must be UTF-8).
    Text,
    /// Bytes.
    Bytes,
    /// A varint, fixed32 or fixed64 scalar (or an enum), possibly packed.
    Scalar,
}

/// The protobuf schema of the requests: message types and their fields,
/// from the file descriptor set, and each method's input type.
#[derive(Debug, Default)]
pub struct Schema {
    messages: HashMap<String, HashMap<u32, FieldInfo>>,
    inputs: HashMap<String, String>,
}

/// What one message costs when decoded: prost's struct per message
/// instance is a few words per field, with unset nested messages inline
/// and a `Vec` holding up to twice what it uses (estimated as
/// [`FIELD_COST`] per declared field plus [`MESSAGE_COST`]: 960 bytes for
/// an `ArtifactEvent`, whose struct is about 500), strings and bytes their
/// length plus a header, repeated scalars a word each.
const MESSAGE_COST: u64 = 128;
/// See [`MESSAGE_COST`].
const FIELD_COST: u64 = 64;
/// Deepest nesting accepted (prost's own recursion limit is 100).
const MAX_DEPTH: u32 = 64;

/// Why a message does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end inside a field.
    #[error("truncated")]
    Truncated,
    /// A varint longer than 10 bytes.
    #[error("varint too long")]
    Varint,
    /// A field sent with the wrong wire type.
    #[error("field {field}: wire type {wire_type} does not fit its type")]
    WireType {
        /// Field number.
        field: u32,
        /// Wire type seen.
        wire_type: u8,
    },
    /// A string that is not UTF-8.
    #[error("field {0}: not UTF-8")]
    Utf8(u32),
    /// Field number 0, or an unknown wire type.
    #[error("invalid tag")]
    Tag,
    /// Nested too deep.
    #[error("nested more than {MAX_DEPTH} levels")]
    Depth,
    /// A group without its end.
    #[error("unterminated group")]
    Group,
}

/// A message that does not decode, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{error}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ScanError {
    /// The field path (`event.artifact.name`), empty at the top.
    pub path: String,
    /// What is wrong there.
    pub error: WireError,
}

fn varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or(WireError::Truncated)?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(WireError::Varint)
}

fn take<'a>(buf: &mut &'a [u8], n: u64) -> Result<&'a [u8], WireError> {
    let n = usize::try_from(n).map_err(|_| WireError::Truncated)?;
    if n > buf.len() {
        return Err(WireError::Truncated);
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Ok(a)
}

/// Skips one unknown field of wire type `wt` (groups to their end).
fn skip(buf: &mut &[u8], field: u32, wt: u8, depth: u32) -> Result<(), WireError> {
    match wt {
        0 => varint(buf).map(|_| ()),
        1 => take(buf, 8).map(|_| ()),
        5 => take(buf, 4).map(|_| ()),
        2 => {
            let n = varint(buf)?;
            take(buf, n).map(|_| ())
        }
        3 => {
            if depth >= MAX_DEPTH {
                return Err(WireError::Depth);
            }
            loop {
                if buf.is_empty() {
                    return Err(WireError::Group);
                }
                // prost refuses a key above u32::MAX (a field number above
                // 2^29 - 1), so the scanner does too.
                let key = u64::from(u32::try_from(varint(buf)?).map_err(|_| WireError::Tag)?);
                let (f, w) = (
                    u32::try_from(key >> 3).map_err(|_| WireError::Tag)?,
                    (key & 7) as u8,
                );
                if w == 4 {
                    return if f == field {
                        Ok(())
                    } else {
                        Err(WireError::Group)
                    };
                }
                skip(buf, f, w, depth + 1)?;
            }
        }
        _ => Err(WireError::Tag),
    }
}

impl Schema {
    /// The schema of the services in an encoded file descriptor set.
    pub fn from_descriptors(sets: &[&[u8]]) -> Result<Self, prost::DecodeError> {
        use prost_types::field_descriptor_proto::Type;
        let mut s = Schema::default();
        for bytes in sets {
            let set: prost_types::FileDescriptorSet = prost::Message::decode(*bytes)?;
            for file in &set.file {
                let pkg = file.package();
                let mut todo: Vec<(String, &prost_types::DescriptorProto)> = file
                    .message_type
                    .iter()
                    .map(|m| (format!(".{pkg}.{}", m.name()), m))
                    .collect();
                while let Some((name, m)) = todo.pop() {
                    for n in &m.nested_type {
                        todo.push((format!("{name}.{}", n.name()), n));
                    }
                    let fields = m
                        .field
                        .iter()
                        .map(|f| {
                            let kind = match f.r#type() {
                                Type::Message | Type::Group => {
                                    Field::Message(f.type_name().to_owned())
                                }
                                Type::String => Field::Text,
                                Type::Bytes => Field::Bytes,
                                _ => Field::Scalar,
                            };
                            (
                                u32::try_from(f.number()).unwrap_or(0),
                                FieldInfo {
                                    name: f.name().to_owned(),
                                    kind,
                                },
                            )
                        })
                        .collect();
                    s.messages.insert(name, fields);
                }
                for svc in &file.service {
                    for m in &svc.method {
                        s.inputs.insert(
                            format!("/{pkg}.{}/{}", svc.name(), m.name()),
                            m.input_type().to_owned(),
                        );
                    }
                }
            }
        }
        Ok(s)
    }

    /// The input type of the method at `path` (`/pkg.Service/Method`).
    pub fn input_of(&self, path: &str) -> Option<&str> {
        self.inputs.get(path).map(String::as_str)
    }

    /// Checks that `bytes` decode as message `ty` and estimates the
    /// memory its decoded form takes (a few words per declared field of
    /// each message instance, strings their length). An error
    /// names the field path, e.g. `event.artifact.name: not UTF-8`.
    pub fn cost(&self, ty: &str, bytes: &[u8]) -> Result<u64, ScanError> {
        let mut path = Vec::new();
        self.cost_at(ty, bytes, 0, &mut path)
            .map_err(|error| ScanError {
                path: path.join("."),
                error,
            })
    }

    fn cost_at(
        &self,
        ty: &str,
        mut buf: &[u8],
        depth: u32,
        path: &mut Vec<String>,
    ) -> Result<u64, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::Depth);
        }
        let empty = HashMap::new();
        let fields = self.messages.get(ty).unwrap_or(&empty);
        let mut total = MESSAGE_COST + FIELD_COST * fields.len() as u64;
        while !buf.is_empty() {
            // A key above u32::MAX is refused, as prost refuses it.
            let key = u64::from(u32::try_from(varint(&mut buf)?).map_err(|_| WireError::Tag)?);
            let field = u32::try_from(key >> 3).map_err(|_| WireError::Tag)?;
            let wt = (key & 7) as u8;
            if field == 0 {
                return Err(WireError::Tag);
            }
            let wrong = WireError::WireType {
                field,
                wire_type: wt,
            };
            let Some(info) = fields.get(&field) else {
                skip(&mut buf, field, wt, depth)?;
                continue;
            };
            path.push(info.name.clone());
            match (&info.kind, wt) {
                (Field::Message(t), 2) => {
                    let n = varint(&mut buf)?;
                    let sub = take(&mut buf, n)?;
                    total = total.saturating_add(self.cost_at(t, sub, depth + 1, path)?);
                }
                (Field::Text, 2) => {
                    let n = varint(&mut buf)?;
                    let s = take(&mut buf, n)?;
                    std::str::from_utf8(s).map_err(|_| WireError::Utf8(field))?;
                    total = total.saturating_add(n + 24);
                }
                (Field::Bytes, 2) => {
                    let n = varint(&mut buf)?;
                    take(&mut buf, n)?;
                    total = total.saturating_add(n + 24);
                }
                // Packed: at most one element per byte.
                (Field::Scalar, 2) => {
                    let n = varint(&mut buf)?;
                    take(&mut buf, n)?;
                    total = total.saturating_add(8 * n);
                }
                (Field::Scalar, 0 | 1 | 5) => {
                    skip(&mut buf, field, wt, depth)?;
                    total = total.saturating_add(8);
                }
                _ => return Err(wrong),
            }
            path.pop();
        }
        Ok(total)
    }
}

/// Limits of [`Bounded`].
#[derive(Debug, Clone)]
pub struct Budget {
    /// Largest request message of a caller that presents credentials.
    pub max_message: usize,
    /// Largest request message of a caller that presents none.
    pub max_anonymous_message: usize,
    /// Largest estimated decoded size of one anonymous request.
    pub max_anonymous_cost: u64,
    /// Shared budget, in bytes, of the requests being read and decoded at
    /// once (their bytes and their estimated decoded size).
    pub decode_bytes: usize,
    /// How long a request waits for room in that budget.
    pub wait: Duration,
}

struct Shared {
    budget: Budget,
    schema: Schema,
    permits: Arc<Semaphore>,
    audit: Option<AuditSink>,
}

/// The `tlog.v1.Log` service behind the request bound (module docs).
#[derive(Clone)]
pub struct Bounded<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Bounded<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, budget: Budget, schema: Schema, audit: Option<AuditSink>) -> Self {
        let permits = Arc::new(Semaphore::new((budget.decode_bytes / 1024).max(1)));
        Bounded {
            inner,
            shared: Arc::new(Shared {
                budget,
                schema,
                permits,
                audit,
            }),
        }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Bounded<S> {
    const NAME: &'static str = S::NAME;
}

type Req = http::Request<tonic::body::Body>;
type Resp = http::Response<tonic::body::Body>;

/// A refusal of the bound: its status and the refusal it records.
struct Refused(Status);

fn kib(n: u64) -> u32 {
    u32::try_from(n.div_ceil(1024).max(1)).unwrap_or(u32::MAX)
}

impl Shared {
    async fn take(&self, bytes: u64) -> Result<OwnedSemaphorePermit, Refused> {
        let n = kib(bytes);
        if n as usize > self.budget.decode_bytes / 1024 {
            return Err(Refused(Status::resource_exhausted(format!(
                "the request would take about {} MiB to decode, more than the server's whole \
                 decoding budget ({} MiB); send smaller batches",
                bytes >> 20,
                self.budget.decode_bytes >> 20
            ))));
        }
        match tokio::time::timeout(self.budget.wait, self.permits.clone().acquire_many_owned(n))
            .await
        {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Refused(Status::resource_exhausted(
                "the server is decoding too many large requests; retry with backoff",
            ))),
        }
    }

    /// Reads and checks the request body; returns it whole with the
    /// permits it holds.
    async fn admit(
        &self,
        path: &str,
        credentialed: bool,
        mut body: tonic::body::Body,
    ) -> Result<(Bytes, Vec<OwnedSemaphorePermit>), Refused> {
        let cap = if credentialed {
            self.budget.max_message
        } else {
            self.budget.max_anonymous_message
        } + 5;
        let mut held = Vec::new();
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| Refused(Status::cancelled(format!("request body: {e}"))))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if buf.len() + data.len() > cap {
                return Err(Refused(Status::resource_exhausted(if credentialed {
                    format!("the request exceeds {} bytes", cap - 5)
                } else {
                    format!(
                        "the request exceeds {} bytes, the limit for callers without \
                         credentials; authenticate to send more",
                        cap - 5
                    )
                })));
            }
            // Permits for the KiB the body now spans (not per chunk: a
            // client sending tiny frames is charged for its bytes only).
            let need = kib((buf.len() + data.len()) as u64);
            let have: u32 = held
                .iter()
                .map(|p: &OwnedSemaphorePermit| p.num_permits() as u32)
                .sum();
            if need > have {
                held.push(self.take(u64::from(need - have) * 1024).await?);
            }
            buf.extend_from_slice(&data);
        }
        let bytes = buf.freeze();
        // gRPC framing: flag, length, message; one message for unary calls.
        let mut rest = &bytes[..];
        let Some(ty) = self.schema.input_of(path) else {
            return Ok((bytes, held));
        };
        let mut cost = 0u64;
        while !rest.is_empty() {
            if rest.len() < 5 {
                return Err(Refused(Status::invalid_argument(
                    "malformed message: a gRPC frame header is cut short",
                )));
            }
            let (head, tail) = rest.split_at(5);
            if head[0] != 0 {
                return Err(Refused(Status::unimplemented(
                    "compressed requests are not accepted",
                )));
            }
            let n = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if n > tail.len() {
                return Err(Refused(Status::invalid_argument(
                    "malformed message: a gRPC frame is cut short",
                )));
            }
            let (msg, after) = tail.split_at(n);
            cost = cost.saturating_add(self.schema.cost(ty, msg).map_err(|e| {
                Refused(Status::invalid_argument(format!(
                    "malformed message: does not decode as {}: {e}",
                    ty.trim_start_matches('.')
                )))
            })?);
            rest = after;
        }
        if !credentialed && cost > self.budget.max_anonymous_cost {
            return Err(Refused(Status::resource_exhausted(format!(
                "the request would take about {cost} bytes to decode, more than callers \
                 without credentials may send ({}); authenticate",
                self.budget.max_anonymous_cost
            ))));
        }
        held.push(self.take(cost).await?);
        Ok((bytes, held))
    }
}

fn credentialed(req: &Req) -> bool {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    req.headers().contains_key("authorization")
        || req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs())
            .is_some_and(|c| !c.is_empty())
}

fn peer_of(req: &Req) -> Option<std::net::SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    req.extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            req.extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}

impl<S> tower_service::Service<Req> for Bounded<S>
where
    S: tower_service::Service<Req, Response = Resp> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Resp;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The inner service that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let started = Instant::now();
            let path = req.uri().path().to_owned();
            let cred = credentialed(&req);
            let peer = peer_of(&req);
            let (parts, body) = req.into_parts();
            match shared.admit(&path, cred, body).await {
                Ok((bytes, held)) => {
                    let req = http::Request::from_parts(
                        parts,
                        tonic::body::Body::new(http_body_util::Full::new(bytes)),
                    );
                    let resp = inner.call(req).await;
                    drop(held);
                    resp
                }
                Err(Refused(status)) => {
                    let method = path.rsplit('/').next().unwrap_or_default().to_owned();
                    record_refusal(
                        shared.audit.as_ref(),
                        peer,
                        &method,
                        status.code(),
                        Refusal::Undecodable,
                        status.message(),
                        started,
                    );
                    Ok(status.into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::from_descriptors(&[tlog_proto::FILE_DESCRIPTOR_SET]).expect("schema")
    }

    #[test]
    fn empty_events_cost_far_more_than_their_bytes() {
        let s = schema();
        let ty = s
            .input_of("/tlog.v1.Log/AppendBatch")
            .expect("method")
            .to_owned();
        // 1,000 empty events: 2 bytes each on the wire.
        let wire: Vec<u8> = std::iter::repeat_n([0x0a, 0x00], 1000).flatten().collect();
        let cost = s.cost(&ty, &wire).expect("decodes");
        assert!(
            cost > 100 * wire.len() as u64,
            "{cost} for {} bytes",
            wire.len()
        );
        // A real event costs a few times its bytes.
        let e = tlog_proto::v1::AppendBatchRequest {
            events: vec![tlog_proto::v1::ArtifactEvent {
                event_id: "e".repeat(40),
                source: "registry".into(),
                actor: "alice@example.com".into(),
                justification: "j".repeat(2000),
                ..Default::default()
            }],
        };
        let wire = prost::Message::encode_to_vec(&e);
        let cost = s.cost(&ty, &wire).expect("decodes");
        assert!(cost < 4 * wire.len() as u64, "{cost} for {}", wire.len());
    }

    #[test]
    fn malformed_messages_are_told_apart() {
        let s = schema();
        let ty = s
            .input_of("/tlog.v1.Log/Append")
            .expect("method")
            .to_owned();
        let err = |b: &[u8]| s.cost(&ty, b).expect_err("malformed").error;
        assert_eq!(err(&[0x0a, 0xff, 0xff, 0x03, 0x01]), WireError::Truncated);
        assert!(matches!(
            err(&[0x08, 0x96, 0x01]),
            WireError::WireType { field: 1, .. }
        ));
        // A group start (field 15, unknown) with no end.
        assert_eq!(err(&[0x7b]), WireError::Group);
        let mut deep = vec![0x7b; 200];
        deep.extend(std::iter::repeat_n(0x7c, 200));
        assert_eq!(err(&deep), WireError::Depth);
        // event { event_id: invalid UTF-8 }: named by its path.
        let e = s
            .cost(&ty, &[0x0a, 0x03, 0x0a, 0x01, 0xff])
            .expect_err("utf8");
        assert!(matches!(e.error, WireError::Utf8(_)));
        assert_eq!(e.path, "event.event_id");
        assert!(s.cost(&ty, &[]).is_ok());
        // A key above u32::MAX inside a group (found by the property
        // test below): prost refuses it, so the scanner must.
        let big_key = [88, 0, 205, 128, 128, 128, 16, 0, 0, 0, 0];
        assert_eq!(err(&big_key), WireError::Tag);
    }

    proptest::proptest! {
        /// Whatever the bytes, the scanner answers (never panics), and
        /// whatever it accepts, prost decodes.
        #[test]
        fn the_scanner_never_accepts_what_prost_refuses(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let s = schema();
            let ty = s.input_of("/tlog.v1.Log/AppendBatch").expect("method").to_owned();
            if s.cost(&ty, &bytes).is_ok() {
                let decoded: Result<tlog_proto::v1::AppendBatchRequest, _> =
                    prost::Message::decode(&bytes[..]);
                proptest::prop_assert!(decoded.is_ok(), "{:?}", decoded);
            }
        }
    }
}
