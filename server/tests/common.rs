//! Start an in-process server on 127.0.0.1:0 and talk to it.

use std::net::SocketAddr;

use tlog_core::Hash;
use tlog_core::checkpoint::{self, SignedCheckpoint};
use tlog_core::merkle::verify::{parse_proof, verify_consistency, verify_inclusion};
use tlog_core::note::{Verifier, Verifiers};
use tlog_proto::v1 as pb;
use tlog_proto::v1::log_client::LogClient;
use tlog_server::ops::config::Config;
use tonic::transport::Channel;

pub const ORIGIN: &str = "test.example/log";

pub struct TestServer {
    pub addr: SocketAddr,
    pub vkey: String,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), tlog_server::ServerError>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let vkey = tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
        Self::start_in(dir, vkey, tweak).await
    }

    pub async fn start_in(
        dir: tempfile::TempDir,
        vkey: String,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        tweak(&mut config);
        Self::running(spawn(config, "").await, dir, vkey)
    }

    fn running(sp: Spawned, dir: tempfile::TempDir, vkey: String) -> Self {
        TestServer {
            addr: sp.addr,
            vkey,
            dir,
            stop: Some(sp.stop),
            task: Some(sp.task),
        }
    }

    /// A server with the HTTP tiles listener (`[http]`) under `prefix`;
    /// returns it and the listener's address.
    pub async fn start_with_http(
        prefix: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> (Self, SocketAddr) {
        let dir = tempfile::tempdir().expect("tempdir");
        let vkey = tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        tweak(&mut config);
        let sp = spawn(config, prefix).await;
        let http = sp.http_addr;
        (Self::running(sp, dir, vkey), http)
    }

    pub async fn client(&self) -> LogClient<Channel> {
        let url = format!("http://{}", self.addr);
        for _ in 0..100 {
            if let Ok(ch) = Channel::from_shared(url.clone())
                .expect("url")
                .connect()
                .await
            {
                return LogClient::new(ch).max_decoding_message_size(64 << 20);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("server at {url} did not come up");
    }

    pub fn verifiers(&self) -> Verifiers {
        Verifiers::new([Verifier::from_vkey(&self.vkey).expect("vkey")])
    }

    /// Stops the server and returns its data directory.
    pub async fn stop(mut self) -> (tempfile::TempDir, String) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("server exited cleanly");
        }
        (self.dir, self.vkey)
    }
}

/// A server running in this process.
pub struct Spawned {
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// Its HTTP tiles listener.
    pub http_addr: SocketAddr,
    /// Stops it.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// Its task.
    pub task: tokio::task::JoinHandle<Result<(), tlog_server::ServerError>>,
}

/// Runs a server with `config` on listeners bound here (gRPC, and the
/// tiles listener under `prefix`) until `stop` fires.
pub async fn spawn(mut config: Config, prefix: &str) -> Spawned {
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let (grpc, http) = (bind().await.expect("bind"), bind().await.expect("bind"));
    let (addr, http_addr) = (
        grpc.local_addr().expect("addr"),
        http.local_addr().expect("addr"),
    );
    config.http = Some(tlog_server::ops::config::HttpSection {
        listen: http_addr,
        prefix: prefix.to_owned(),
        tls: false,
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(tlog_server::serve_on(
        tlog_server::Listeners {
            grpc,
            metrics: None,
            http: Some(http),
        },
        config,
        async move {
            let _ = stopped.await;
        },
        || Ok(()),
    ));
    Spawned {
        addr,
        http_addr,
        stop,
        task,
    }
}

pub fn event(source: &str, id: &str) -> pb::ArtifactEvent {
    pb::ArtifactEvent {
        event_id: id.into(),
        source: source.into(),
        action: pb::Action::Register as i32,
        artifact: Some(pb::Artifact {
            name: "team-a/fraud-model".into(),
            version: "1.0.0".into(),
            digests: vec![pb::Digest {
                algorithm: "sha256".into(),
                hex: "ab".repeat(32),
            }],
            media_type: "application/vnd.onnx".into(),
            uri: "s3://models/fraud/1.0.0".into(),
        }),
        actor: "alice@example.com".into(),
        interface: pb::Interface::Api as i32,
        environment: String::new(),
        ..Default::default()
    }
}

/// Opens a signed checkpoint with the server's key.
pub fn open_checkpoint(server: &TestServer, cp: &pb::SignedCheckpoint) -> SignedCheckpoint {
    let opened = checkpoint::open(cp.note.as_bytes(), &server.verifiers(), ORIGIN)
        .expect("checkpoint signature verifies with the printed key");
    assert_eq!(opened.checkpoint.size, cp.size);
    assert_eq!(opened.checkpoint.root.as_bytes()[..], cp.root_hash[..]);
    opened
}

/// Verifies an append answer completely: leaf hash, checkpoint signature,
/// inclusion proof. Returns the checkpoint.
pub fn verify_append(server: &TestServer, r: &pb::AppendResponse) -> SignedCheckpoint {
    let leaf = Hash::from_slice(&r.leaf_hash).expect("32 bytes");
    assert_eq!(
        tlog_core::leaf_hash(&r.leaf),
        leaf,
        "served leaf hashes to leaf_hash"
    );
    let cp = open_checkpoint(server, r.checkpoint.as_ref().expect("checkpoint"));
    let proof = parse_proof(&r.inclusion_proof).expect("proof parses");
    verify_inclusion(
        r.index,
        cp.checkpoint.size,
        &leaf,
        &proof,
        &cp.checkpoint.root,
    )
    .expect("inclusion proof verifies");
    cp
}

/// Asks the server for a consistency proof between two checkpoints and
/// verifies it.
pub async fn check_consistent(
    client: &mut LogClient<Channel>,
    a: &SignedCheckpoint,
    b: &SignedCheckpoint,
) {
    let (a, b) = if a.checkpoint.size <= b.checkpoint.size {
        (a, b)
    } else {
        (b, a)
    };
    let p = client
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            size1: a.checkpoint.size,
            size2: b.checkpoint.size,
        })
        .await
        .expect("consistency proof")
        .into_inner();
    let proof = parse_proof(&p.hashes).expect("parses");
    verify_consistency(
        a.checkpoint.size,
        b.checkpoint.size,
        &proof,
        &a.checkpoint.root,
        &b.checkpoint.root,
    )
    .expect("checkpoints are consistent");
}

/// What a [`Faulty`] store does at one commit (numbered from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Commit normally.
    None,
    /// Fail without writing anything (an I/O error, a full disk).
    FailBefore,
    /// Write the batch, then report failure (the sync landed but the
    /// answer was lost).
    FailAfter,
    /// Power lost before this write reached the disk: nothing of it, or of
    /// any later commit, is written; the call does not return until
    /// [`Faulty::release`] (a dead machine answers no one), then fails.
    Cut,
}

/// RocksDB with faults and delays injected at chosen commits: the write
/// path's crash points, without a crash.
pub struct Faulty {
    pub inner: tlog_server::storage::RocksStore,
    delay: std::time::Duration,
    plan: Box<dyn Fn(u64) -> Fault + Send + Sync>,
    commits: std::sync::atomic::AtomicU64,
    cut: std::sync::atomic::AtomicBool,
    released: std::sync::atomic::AtomicBool,
}

impl Faulty {
    /// Opens the store of the log in `dir`, delaying every commit by
    /// `delay` and applying `plan` to commit number n.
    pub fn open(
        dir: &std::path::Path,
        delay: std::time::Duration,
        plan: impl Fn(u64) -> Fault + Send + Sync + 'static,
    ) -> Self {
        Faulty {
            inner: tlog_server::storage::RocksStore::open(&tlog_server::ops::keys::db_path(dir))
                .expect("open"),
            delay,
            plan: Box::new(plan),
            commits: std::sync::atomic::AtomicU64::new(0),
            cut: std::sync::atomic::AtomicBool::new(false),
            released: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the power was cut.
    pub fn was_cut(&self) -> bool {
        self.cut.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets the commits stuck behind a [`Fault::Cut`] return (with an
    /// error), so the test can shut down.
    pub fn release(&self) {
        self.released
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Commits attempted so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn injected() -> tlog_server::storage::StorageError {
    tlog_server::storage::StorageError::Corrupt("injected fault: no space left on device".into())
}

impl tlog_core::merkle::store::HashReader for Faulty {
    fn read_hashes(
        &self,
        l: u8,
        s: u64,
        c: u64,
        o: &mut Vec<Hash>,
    ) -> Result<(), tlog_core::merkle::store::StoreError> {
        self.inner.read_hashes(l, s, c, o)
    }
}

impl tlog_server::storage::LogStore for Faulty {
    fn meta(
        &self,
    ) -> Result<Option<tlog_server::storage::LogMeta>, tlog_server::storage::StorageError> {
        self.inner.meta()
    }
    fn init(&self, o: &str, v: &str, c: &str) -> Result<(), tlog_server::storage::StorageError> {
        self.inner.init(o, v, c)
    }
    fn commit(
        &self,
        b: &tlog_server::storage::CommitBatch,
    ) -> Result<(), tlog_server::storage::StorageError> {
        let n = self
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(self.delay);
        let fault = if self.was_cut() {
            Fault::Cut
        } else {
            (self.plan)(n)
        };
        match fault {
            Fault::Cut => {
                self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
                while !self.released.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(injected())
            }
            Fault::None => self.inner.commit(b),
            Fault::FailBefore => Err(injected()),
            Fault::FailAfter => {
                self.inner.commit(b)?;
                Err(injected())
            }
        }
    }
    fn entry(&self, i: u64) -> Result<Option<Vec<u8>>, tlog_server::storage::StorageError> {
        self.inner.entry(i)
    }
    fn entries(
        &self,
        s: u64,
        e: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, tlog_server::storage::StorageError> {
        self.inner.entries(s, e)
    }
    fn index_of(&self, h: &Hash) -> Result<Option<u64>, tlog_server::storage::StorageError> {
        self.inner.index_of(h)
    }
    fn idempotency(
        &self,
        s: &str,
        e: &str,
    ) -> Result<Option<(u64, [u8; 32])>, tlog_server::storage::StorageError> {
        self.inner.idempotency(s, e)
    }
    fn checkpoint(&self, s: u64) -> Result<Option<String>, tlog_server::storage::StorageError> {
        self.inner.checkpoint(s)
    }
    fn artifact_entries(
        &self,
        n: &str,
        a: Option<u64>,
        l: usize,
        f: &dyn Fn(&tlog_server::storage::ArtifactMeta) -> bool,
    ) -> Result<Vec<(u64, tlog_server::storage::ArtifactMeta)>, tlog_server::storage::StorageError>
    {
        self.inner.artifact_entries(n, a, l, f)
    }
}

/// A validated submission for the sequencer: artifact `name`, event `id`.
pub fn submission(id: &str) -> tlog_server::sequencer::Submission {
    let e = tlog_core::event::ArtifactEvent {
        event_id: id.into(),
        source: "faults".into(),
        action: tlog_core::event::Action::Register,
        artifact: tlog_core::event::Artifact {
            name: "a".into(),
            version: "1".into(),
            digests: vec![tlog_core::event::Digest {
                algorithm: "sha256".into(),
                hex: "00".repeat(32),
            }],
            ..Default::default()
        },
        actor: "x".into(),
        interface: Default::default(),
        environment: String::new(),
        client_time: None,
        provenance: None,
        justification: String::new(),
        ticket: String::new(),
        attestations: vec![],
    };
    e.validate().expect("valid");
    tlog_server::sequencer::Submission {
        event: e,
        verified_signers: vec![],
        scope: None,
    }
}

/// A running sequencer over `store` (the log in `dir`), its task, and the
/// sender that stops it.
pub struct Running {
    pub seq: tlog_server::sequencer::Sequencer,
    pub task: tokio::task::JoinHandle<()>,
    pub stop: tokio::sync::watch::Sender<bool>,
}

/// Starts the sequencer of the log in `dir` over `store`: batches of at
/// most `max_events`, waiting `max_wait` for more, a queue of `depth` jobs
/// and `enqueue_timeout` for room in it.
pub fn sequencer_over<S: tlog_server::storage::LogStore>(
    dir: &std::path::Path,
    store: std::sync::Arc<S>,
    max_events: usize,
    max_wait: std::time::Duration,
    depth: usize,
    enqueue_timeout: std::time::Duration,
) -> Running {
    let signer = tlog_server::ops::keys::load_signer(&dir.join("log.key")).expect("key");
    sequencer_signed_by(
        dir,
        store,
        signer,
        max_events,
        max_wait,
        depth,
        enqueue_timeout,
    )
}

/// [`sequencer_over`] with the checkpoints signed by `signer`.
pub fn sequencer_signed_by<S: tlog_server::storage::LogStore>(
    dir: &std::path::Path,
    store: std::sync::Arc<S>,
    signer: impl tlog_server::sequencer::CheckpointSigner,
    max_events: usize,
    max_wait: std::time::Duration,
    depth: usize,
    enqueue_timeout: std::time::Duration,
) -> Running {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (seq, task) = tlog_server::sequencer::start(
        store,
        signer,
        tlog_server::sequencer::lock::CheckpointLock::at(tlog_server::ops::keys::lock_path(dir)),
        tlog_server::sequencer::BatchConfig {
            max_events,
            max_wait,
            queue_depth: depth,
            enqueue_timeout,
        },
        std::sync::Arc::new(tlog_server::ops::metrics::Metrics::default()),
        stop_rx,
    )
    .expect("the sequencer starts");
    Running { seq, task, stop }
}
