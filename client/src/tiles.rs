//! Reading a log from its C2SP tiles alone (c2sp.org/tlog-tiles): a tiles
//! URL (the server's `[http]` listener, or a published mirror behind any
//! web server) stands in for the gRPC API.
//!
//! The tiles are a transport, not a second client: [`TilesLog`] answers
//! the read RPCs of `tlog.v1.Log` (checkpoint, entries, inclusion and
//! consistency proofs, a polled checkpoint stream) from `GET`s of
//! `<url>/checkpoint`, `<url>/tile/<L>/<N>[.p/<W>]` and
//! `<url>/tile/entries/<N>[.p/<W>]`, and [`channel`] connects a client to
//! it in memory. Everything the client verifies over gRPC it verifies the
//! same way over tiles: the checkpoint's signature (and witness quorum),
//! every proof against the signed root; a monitor hashes the entries into
//! its own tree. Proofs are built with the log's own prover
//! ([`tlog_core::merkle::prove::Prover`]) over the fetched hash tiles, so
//! a tile that lies yields a proof that fails.
//!
//! What tiles cannot answer (appends, lookups by leaf hash, artifact
//! queries, checkpoints of earlier sizes) is `UNIMPLEMENTED` with a
//! message that says to use the gRPC address.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use tlog_core::Hash;
use tlog_core::checkpoint::Checkpoint;
use tlog_core::merkle::TILE_WIDTH;
use tlog_core::merkle::prove::Prover;
use tlog_core::merkle::store::{HashReader, StoreError};
use tlog_core::tiles::{TilePath, parse_bundle};
use tlog_proto::v1 as pb;
use tonic::{Request, Response, Status};

/// Largest tile or bundle body accepted (a full bundle of 256 leaves of at
/// most 65,535 bytes each, with length prefixes).
const MAX_BODY: usize = 256 * (65_535 + 2);

/// Entry bundles fetched ahead while streaming entries.
const AHEAD: usize = 16;

/// HTTP/2 flow-control windows of the in-memory connection.
const WINDOW: u32 = 16 << 20;

/// Full hash tiles kept (8 KiB each).
const CACHED_TILES: usize = 4096;

/// How often the checkpoint is polled for `WatchCheckpoints`.
const POLL: Duration = Duration::from_millis(500);

/// Why a tiles URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tiles URL {0:?}: must be http:// or https:// with a host and no query")]
pub struct UrlError(pub String);

#[derive(Debug, Clone)]
struct Base {
    host: String,
    port: u16,
    authority: String,
    prefix: String,
    https: bool,
}

impl Base {
    fn parse(url: &str) -> Result<Base, UrlError> {
        let bad = || UrlError(url.to_owned());
        let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        if uri.query().is_some() {
            return Err(bad());
        }
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        Ok(Base {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: uri.authority().ok_or_else(bad)?.as_str().to_owned(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            https,
        })
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// Keep-alive HTTP/1.1 connections to one tiles URL.
struct Http {
    base: Base,
    token: Option<String>,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    timeout: Duration,
    idle: Mutex<Vec<Sender>>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("tiles: {what}: {e}"))
}

impl Http {
    async fn connect(&self) -> Result<Sender, Status> {
        let b = &self.base;
        let tcp = tokio::net::TcpStream::connect((b.host.as_str(), b.port))
            .await
            .map_err(|e| unavailable(&format!("connect to {}", b.authority), e))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(cfg) => {
                let name = rustls_pki_types::ServerName::try_from(b.host.clone())
                    .map_err(|e| Status::invalid_argument(format!("tiles host: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| unavailable("TLS", e))?;
                handshake(hyper_util::rt::TokioIo::new(tls)).await
            }
            None => handshake(hyper_util::rt::TokioIo::new(tcp)).await,
        }
    }

    /// `GET <url><path>`: the status and body.
    async fn get(&self, path: &str) -> Result<(u16, Bytes), Status> {
        let fut = async {
            let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
            let mut sender = match idle {
                Some(mut s) => match s.ready().await {
                    Ok(()) => s,
                    Err(_) => self.connect().await?,
                },
                None => self.connect().await?,
            };
            let mut req = hyper::Request::get(format!("{}{path}", self.base.prefix))
                .header("host", self.base.authority.as_str())
                .header("user-agent", "tlog-client");
            if let Some(t) = &self.token {
                req = req.header("authorization", format!("Bearer {}", t.trim()));
            }
            let req = req
                .body(Empty::new())
                .map_err(|e| Status::internal(format!("tiles request: {e}")))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| unavailable(path, e))?;
            let status = resp.status().as_u16();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| unavailable(path, e))?
                .to_bytes();
            if let Ok(mut v) = self.idle.lock() {
                v.push(sender);
            }
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| {
            Status::deadline_exceeded(format!(
                "tiles: no answer to {path} within {:?}",
                self.timeout
            ))
        })?
    }

    /// `GET` that must answer 200.
    async fn get_ok(&self, path: &str) -> Result<Bytes, Status> {
        let (status, body) = self.get(path).await?;
        if status == 200 {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .to_owned();
        let msg = format!("tiles: GET {path}: HTTP {status}: {text}");
        Err(match status {
            404 => Status::not_found(msg),
            401 => Status::unauthenticated(msg),
            403 => Status::permission_denied(msg),
            429 => Status::resource_exhausted(msg),
            500..=599 => Status::unavailable(msg),
            _ => Status::unknown(msg),
        })
    }
}

async fn handshake<IO>(io: IO) -> Result<Sender, Status>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| unavailable("HTTP handshake", e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Hash tiles by (level, index).
type TileMap = HashMap<(u8, u64), Arc<Vec<Hash>>>;

/// The read side of `tlog.v1.Log`, answered from tiles.
#[derive(Clone)]
pub struct TilesLog {
    http: Arc<Http>,
    hashes: Arc<Mutex<TileMap>>,
}

impl std::fmt::Debug for TilesLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is never printed.
        write!(
            f,
            "TilesLog({}{})",
            self.http.base.authority, self.http.base.prefix
        )
    }
}

/// How to reach a tiles URL.
#[derive(Debug, Clone, Default)]
pub struct TilesOptions {
    /// Bearer token sent with every request.
    pub token: Option<String>,
    /// CA certificate(s), PEM, for an `https://` URL (default: the Web PKI
    /// roots).
    pub ca_pem: Option<Vec<u8>>,
    /// Time limit per request (default 30 s).
    pub timeout: Option<Duration>,
}

impl TilesLog {
    /// A reader of the tiles under `url` (`http://host:port[/prefix]`).
    pub fn new(url: &str, opts: &TilesOptions) -> Result<TilesLog, crate::ClientError> {
        let base = Base::parse(url).map_err(|e| crate::ClientError::Usage(e.to_string()))?;
        let tls = if base.https {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            match &opts.ca_pem {
                Some(pem) => {
                    use rustls_pki_types::pem::PemObject as _;
                    for c in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                        let c =
                            c.map_err(|e| crate::ClientError::Usage(format!("CA file: {e}")))?;
                        roots
                            .add(c)
                            .map_err(|e| crate::ClientError::Usage(format!("CA file: {e}")))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let mut cfg = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| crate::ClientError::Usage(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(cfg))
        } else {
            None
        };
        Ok(TilesLog {
            http: Arc::new(Http {
                base,
                token: opts.token.clone(),
                tls,
                timeout: opts.timeout.unwrap_or(crate::DEFAULT_TIMEOUT),
                idle: Mutex::new(Vec::new()),
            }),
            hashes: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The latest checkpoint as served, with the size and root its text
    /// claims (not verified here: the client verifies the note).
    async fn checkpoint(&self) -> Result<pb::SignedCheckpoint, Status> {
        let body = self.http.get_ok("/checkpoint").await?;
        let note = String::from_utf8(body.to_vec())
            .map_err(|_| Status::data_loss("tiles: the checkpoint is not UTF-8"))?;
        let text = note.split_once("\n\n").map(|(t, _)| format!("{t}\n"));
        let (size, root) = match text.as_deref().map(Checkpoint::parse) {
            Some(Ok(c)) => (c.size, c.root.as_bytes().to_vec()),
            // Returned anyway: the client's verification says what is wrong.
            _ => (0, Vec::new()),
        };
        Ok(pb::SignedCheckpoint {
            note,
            size,
            root_hash: root,
        })
    }

    async fn latest_size(&self) -> Result<u64, Status> {
        Ok(self.checkpoint().await?.size)
    }

    /// The hashes of hash tile (`level`, `index`) in the tree of `size`.
    async fn hash_tile(&self, level: u8, index: u64, size: u64) -> Result<Arc<Vec<Hash>>, Status> {
        let row = size >> (8 * u32::from(level));
        let width = (row.saturating_sub(index * TILE_WIDTH)).min(TILE_WIDTH);
        if width == 0 {
            return Err(Status::out_of_range(format!(
                "tiles: tile {level}/{index} is beyond the tree of size {size}"
            )));
        }
        if let Some(t) = self
            .hashes
            .lock()
            .ok()
            .and_then(|m| m.get(&(level, index)).cloned())
            && t.len() as u64 >= width
        {
            return Ok(t);
        }
        let path = TilePath::hashes(level, index, width as u16);
        let body = match self.http.get_ok(&format!("/{}", path.to_path())).await {
            // A partial tile may be gone once the full one exists.
            Err(s) if s.code() == tonic::Code::NotFound && width < TILE_WIDTH => {
                let full = TilePath::hashes(level, index, TILE_WIDTH as u16);
                self.http.get_ok(&format!("/{}", full.to_path())).await?
            }
            r => r?,
        };
        let have = body.len() / 32;
        if body.len() % 32 != 0 || (have as u64) < width {
            return Err(Status::data_loss(format!(
                "tiles: {} has {} bytes, want {}",
                path.to_path(),
                body.len(),
                width * 32
            )));
        }
        let hashes: Vec<Hash> = body
            .chunks_exact(32)
            .take(width as usize)
            .filter_map(|c| Hash::from_slice(c).ok())
            .collect();
        let t = Arc::new(hashes);
        if width == TILE_WIDTH
            && let Ok(mut m) = self.hashes.lock()
        {
            if m.len() >= CACHED_TILES {
                m.clear();
            }
            m.insert((level, index), t.clone());
        }
        Ok(t)
    }

    /// Runs `f` (a proof built by the prover) over the hash tiles of the
    /// tree of `size`: a first pass over placeholder hashes learns which
    /// tiles it reads, they are fetched together, and a second pass makes
    /// the proof from them.
    async fn with_tiles<T>(
        &self,
        size: u64,
        f: impl Fn(&Prover<&Fetched>) -> Result<T, tlog_core::merkle::prove::ProofError>,
    ) -> Result<(T, Fetched), Status> {
        let mut fetched = Fetched::default();
        for _ in 0..2 {
            let wanted = {
                let dry = Fetched {
                    tiles: fetched.tiles.clone(),
                    missing: Mutex::new(Vec::new()),
                    dry: true,
                };
                let _ = f(&Prover::new(&dry));
                dry.missing.into_inner().unwrap_or_default()
            };
            if wanted.is_empty() {
                break;
            }
            let mut set = tokio::task::JoinSet::new();
            for (level, index) in wanted {
                let me = self.clone();
                set.spawn(async move { (level, index, me.hash_tile(level, index, size).await) });
            }
            while let Some(r) = set.join_next().await {
                let (level, index, t) = r.map_err(|e| Status::internal(format!("tiles: {e}")))?;
                fetched.tiles.insert((level, index), t?);
            }
        }
        let made =
            f(&Prover::new(&fetched)).map_err(|e| Status::data_loss(format!("tiles: {e}")))?;
        Ok((made, fetched))
    }

    /// Pages of entries `[start, end)` (one per bundle, fetched ahead
    /// concurrently), for the `GetEntries` stream and for a client reading
    /// tiles directly ([`crate::EntryStream`]).
    pub async fn pages(
        &self,
        start: u64,
        end: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<pb::GetEntriesResponse, Status>>, Status> {
        let size = self.latest_size().await?;
        if start > end || end > size {
            return Err(Status::out_of_range(format!(
                "entries [{start}, {end}) are not in the tree of size {size}"
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
        let me = self.clone();
        tokio::spawn(async move {
            let first = start / TILE_WIDTH;
            let last = end.div_ceil(TILE_WIDTH);
            let mut next = first;
            let mut ahead = VecDeque::new();
            for n in first..last {
                while ahead.len() < AHEAD && next < last {
                    let me = me.clone();
                    let i = next;
                    ahead.push_back(tokio::spawn(async move { me.bundle(i, size).await }));
                    next += 1;
                }
                let Some(job) = ahead.pop_front() else { break };
                let leaves = match job.await {
                    Ok(r) => r,
                    Err(e) => Err(Status::internal(format!("tiles: {e}"))),
                };
                let page = leaves.map(|leaves| {
                    let base = n * TILE_WIDTH;
                    pb::GetEntriesResponse {
                        entries: leaves
                            .into_iter()
                            .enumerate()
                            .map(|(k, leaf)| (base + k as u64, leaf))
                            .filter(|(i, _)| *i >= start && *i < end)
                            // The leaf hash is left empty: every reader
                            // hashes the leaf itself (a monitor into its
                            // tree, the CLI before its proof).
                            .map(|(index, leaf)| pb::Entry {
                                index,
                                leaf_hash: Vec::new(),
                                leaf,
                            })
                            .collect(),
                    }
                });
                let failed = page.is_err();
                if tx.send(page).await.is_err() || failed {
                    for j in ahead {
                        j.abort();
                    }
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// The leaves of entry bundle `index` in the tree of `size`.
    async fn bundle(&self, index: u64, size: u64) -> Result<Vec<Vec<u8>>, Status> {
        let width = (size.saturating_sub(index * TILE_WIDTH)).min(TILE_WIDTH);
        let path = TilePath::entries(index, width as u16);
        let body = match self.http.get_ok(&format!("/{}", path.to_path())).await {
            Err(s) if s.code() == tonic::Code::NotFound && width < TILE_WIDTH => {
                let full = TilePath::entries(index, TILE_WIDTH as u16);
                self.http.get_ok(&format!("/{}", full.to_path())).await?
            }
            r => r?,
        };
        let leaves = parse_bundle(&body)
            .map_err(|e| Status::data_loss(format!("tiles: {}: {e}", path.to_path())))?;
        if (leaves.len() as u64) < width {
            return Err(Status::data_loss(format!(
                "tiles: {} holds {} entries, want {width}",
                path.to_path(),
                leaves.len()
            )));
        }
        Ok(leaves
            .into_iter()
            .take(width as usize)
            .map(<[u8]>::to_vec)
            .collect())
    }
}

/// Hash tiles fetched for one proof, read by the prover.
#[derive(Default)]
struct Fetched {
    tiles: TileMap,
    missing: Mutex<Vec<(u8, u64)>>,
    dry: bool,
}

impl HashReader for Fetched {
    fn read_hashes(
        &self,
        level: u8,
        start: u64,
        count: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), StoreError> {
        let tile = start / TILE_WIDTH;
        let from = (start % TILE_WIDTH) as usize;
        match self.tiles.get(&(level, tile)) {
            Some(t) if t.len() >= from + count as usize => {
                out.extend_from_slice(&t[from..from + count as usize]);
                Ok(())
            }
            _ if self.dry => {
                if let Ok(mut m) = self.missing.lock()
                    && !m.contains(&(level, tile))
                {
                    m.push((level, tile));
                }
                out.extend(std::iter::repeat_n(Hash::default(), count as usize));
                Ok(())
            }
            _ => Err(StoreError::Missing {
                level,
                index: start,
            }),
        }
    }
}

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

fn tiles_cannot(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not available from tiles (they hold checkpoints, entries and hashes only); \
         use the log's gRPC address (--server) for it"
    ))
}

#[tonic::async_trait]
impl pb::log_server::Log for TilesLog {
    async fn append(
        &self,
        _: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        Err(tiles_cannot("appending"))
    }

    async fn append_batch(
        &self,
        _: Request<pb::AppendBatchRequest>,
    ) -> Result<Response<pb::AppendBatchResponse>, Status> {
        Err(tiles_cannot("appending"))
    }

    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        let cp = self.checkpoint().await?;
        let want = req.into_inner().size;
        if want != 0 && want != cp.size {
            return Err(Status::not_found(format!(
                "tiles serve only the latest checkpoint (size {}), not the one at size {want}",
                cp.size
            )));
        }
        Ok(Response::new(pb::GetCheckpointResponse {
            checkpoint: Some(cp),
        }))
    }

    type GetEntriesStream = BoxStream<pb::GetEntriesResponse>;

    async fn get_entries(
        &self,
        req: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        let pb::GetEntriesRequest { start, end } = req.into_inner();
        let rx = self.pages(start, end).await?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_entry_by_hash(
        &self,
        _: Request<pb::GetEntryByHashRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        Err(tiles_cannot("finding an entry by its hash"))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let r = req.into_inner();
        let index = match r.leaf {
            Some(pb::get_inclusion_proof_request::Leaf::Index(i)) => i,
            Some(pb::get_inclusion_proof_request::Leaf::LeafHash(_)) => {
                return Err(tiles_cannot("a proof by leaf hash"));
            }
            None => return Err(Status::invalid_argument("give the leaf's index")),
        };
        let latest = self.checkpoint().await?;
        let size = if r.tree_size == 0 {
            latest.size
        } else {
            r.tree_size
        };
        if size > latest.size || index >= size {
            return Err(Status::out_of_range(format!(
                "entry {index} in the tree of size {size} (the tiles' checkpoint has size {})",
                latest.size
            )));
        }
        let (hashes, fetched) = self
            .with_tiles(size, |p| p.inclusion_proof(index, size))
            .await?;
        // The leaf hash from its level-0 tile, which the proof has read
        // unless the tree is that one leaf (the proof verified against the
        // signed root authenticates it).
        let mut leaf = Vec::new();
        if fetched.read_hashes(0, index, 1, &mut leaf).is_err() {
            let tile = self.hash_tile(0, index / TILE_WIDTH, size).await?;
            leaf.extend(tile.get((index % TILE_WIDTH) as usize));
        }
        let leaf_hash = leaf
            .first()
            .copied()
            .ok_or_else(|| Status::data_loss("tiles: the leaf's tile is short"))?;
        Ok(Response::new(pb::InclusionProof {
            index,
            tree_size: size,
            leaf_hash: leaf_hash.as_bytes().to_vec(),
            hashes: hashes.iter().map(|h| h.as_bytes().to_vec()).collect(),
            checkpoint: (size == latest.size).then_some(latest),
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let pb::GetConsistencyProofRequest { size1, size2 } = req.into_inner();
        let latest = self.latest_size().await?;
        let size2 = if size2 == 0 { latest } else { size2 };
        if size1 > size2 || size2 > latest {
            return Err(Status::out_of_range(format!(
                "sizes {size1} -> {size2} (the tiles' checkpoint has size {latest})"
            )));
        }
        let (hashes, _) = self
            .with_tiles(size2, |p| p.consistency_proof(size1, size2))
            .await?;
        Ok(Response::new(pb::ConsistencyProof {
            size1,
            size2,
            hashes: hashes.iter().map(|h| h.as_bytes().to_vec()).collect(),
        }))
    }

    async fn query_artifact(
        &self,
        _: Request<pb::QueryArtifactRequest>,
    ) -> Result<Response<pb::QueryArtifactResponse>, Status> {
        Err(tiles_cannot("an artifact query (the log's index)"))
    }

    type WatchCheckpointsStream = BoxStream<pb::SignedCheckpoint>;

    async fn watch_checkpoints(
        &self,
        _: Request<pb::WatchCheckpointsRequest>,
    ) -> Result<Response<Self::WatchCheckpointsStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let me = self.clone();
        tokio::spawn(async move {
            let mut last = String::new();
            loop {
                match me.checkpoint().await {
                    Ok(cp) if cp.note != last => {
                        last = cp.note.clone();
                        if tx.send(Ok(cp)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_log_info(
        &self,
        _: Request<pb::GetLogInfoRequest>,
    ) -> Result<Response<pb::LogInfo>, Status> {
        let cp = self.checkpoint().await?;
        Ok(Response::new(pb::LogInfo {
            origin: cp.note.split('\n').next().unwrap_or_default().to_owned(),
            tree_size: cp.size,
            max_page_size: TILE_WIDTH as u32,
            ..Default::default()
        }))
    }
}

/// A channel whose calls [`TilesLog`] answers in this process (over an
/// in-memory HTTP/2 connection, so the client's code path is the one it
/// uses against a server).
pub async fn channel(log: TilesLog) -> Result<tonic::transport::Channel, crate::ClientError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<tokio::io::DuplexStream, std::io::Error>>(4);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            // In memory: windows large enough that flow control never
            // waits for a page of entries.
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .add_service(pb::log_server::LogServer::new(log).max_encoding_message_size(64 << 20))
            .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
    });
    tonic::transport::Endpoint::from_static("http://tiles.invalid")
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .connect_with_connector(Connector(tx))
        .await
        .map_err(|e| crate::ClientError::Transport(e.to_string()))
}

#[derive(Clone)]
struct Connector(tokio::sync::mpsc::Sender<Result<tokio::io::DuplexStream, std::io::Error>>);

impl tower_service::Service<tonic::codegen::http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<tokio::io::DuplexStream>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: tonic::codegen::http::Uri) -> Self::Future {
        let tx = self.0.clone();
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(4 << 20);
            tx.send(Ok(server))
                .await
                .map_err(|_| std::io::Error::other("the tiles reader stopped"))?;
            Ok(hyper_util::rt::TokioIo::new(client))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_urls() {
        let b = Base::parse("http://127.0.0.1:7402/log/").expect("ok");
        assert_eq!((b.prefix.as_str(), b.port, b.https), ("/log", 7402, false));
        let b = Base::parse("https://mirror.example.com").expect("ok");
        assert_eq!((b.prefix.as_str(), b.port), ("", 443));
        for bad in ["", "mirror.example.com", "ftp://x", "http://x/?q=1"] {
            assert!(Base::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_dry_pass_names_every_tile_a_proof_reads() {
        use tlog_core::merkle::store::MemoryStore;
        use tlog_core::merkle::tree::Tree;
        let mut tree = Tree::new();
        let mut store = MemoryStore::new();
        let mut out = Vec::new();
        for i in 0..70_000u64 {
            out.clear();
            tree.append(tlog_core::leaf_hash(&i.to_be_bytes()), &mut out);
            store.write(&out).expect("write");
        }
        type Make =
            dyn Fn(&Prover<&Fetched>) -> Result<Vec<Hash>, tlog_core::merkle::prove::ProofError>;
        // One dry pass, then exactly the tiles it named (the tree of
        // `size`'s widths, from the store): the proof is the store's.
        let check = |size: u64, f: &Make, want: Vec<Hash>| {
            let dry = Fetched {
                dry: true,
                ..Fetched::default()
            };
            let _ = f(&Prover::new(&dry));
            let mut real = Fetched::default();
            for (level, index) in dry.missing.into_inner().expect("lock") {
                let row = size >> (8 * u32::from(level));
                let width = (row - index * TILE_WIDTH).min(TILE_WIDTH);
                let mut t = Vec::new();
                store
                    .read_hashes(level, index * TILE_WIDTH, width, &mut t)
                    .expect("tile");
                real.tiles.insert((level, index), Arc::new(t));
            }
            assert_eq!(f(&Prover::new(&real)).expect("proof"), want);
        };
        for (index, size) in [(12_345, 70_000), (0, 1), (69_999, 70_000), (300, 65_537)] {
            let want = Prover::new(&store)
                .inclusion_proof(index, size)
                .expect("proof");
            check(size, &move |p| p.inclusion_proof(index, size), want);
        }
        for (a, b) in [(1_000, 70_000), (1, 2), (65_536, 65_537), (256, 70_000)] {
            let want = Prover::new(&store).consistency_proof(a, b).expect("proof");
            check(b, &move |p| p.consistency_proof(a, b), want);
        }
    }
}
