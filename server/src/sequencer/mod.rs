//! The sequencer: the one owner of the tree.
//!
//! Appends queue to it through a bounded channel. For each batch it checks
//! idempotency keys, builds the leaves, appends them to the tree, signs the
//! new checkpoint, writes it all in one synced write batch, and only then
//! answers every caller in the batch (zero merge delay: no answer before the
//! entry is durable and covered by a signed checkpoint). Proofs are computed
//! by the callers' tasks from storage, off the sequencer's path.
//!
//! Group commit: while one batch is written and synced (the writer), the
//! next is built job by job as jobs arrive (idempotency checks, leaves,
//! tree), on top of it in memory. When the writer is free, the batch built
//! so far is signed and written at once, so the busier the writer, the
//! larger the batch, and a lone append waits for nothing (`max_wait` can
//! hold a batch back for more). Batches are written strictly in order, one
//! at a time, and a batch built on top of one whose write failed is refused
//! without being written, so no answer ever covers an entry that is not on
//! disk.

pub mod lock;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tlog_core::checkpoint::Checkpoint;
use tlog_core::event::{ArtifactEvent, Timestamp};
use tlog_core::leaf::{Leaf, Submitter};
use tlog_core::merkle::tree::Tree;
use tlog_core::{Hash, leaf_hash};
use tokio::sync::{mpsc, oneshot, watch};

use crate::ops::metrics::Metrics;
use crate::sequencer::lock::{CheckpointLock, GuardError, LockError, Standing};
use crate::storage::{ArtifactMeta, CommitBatch, Idempotency, LogStore, NewEntry, StorageError};

/// Set once when the sequencer can no longer write safely (the checkpoint
/// lock could not be written): every append after it is refused.
type Halted = Arc<std::sync::OnceLock<String>>;

/// A signed checkpoint the log has issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The signed note.
    pub note: String,
}

/// One appended (or found, for a retry) entry.
#[derive(Debug, Clone)]
pub struct Appended {
    /// Index in the log.
    pub index: u64,
    /// Leaf bytes.
    pub leaf: Vec<u8>,
    /// `SHA-256(0x00 || leaf)`.
    pub leaf_hash: Hash,
    /// True if this was a retry of an existing entry.
    pub duplicate: bool,
}

/// The answer to one append job.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One per submitted event, in order.
    pub entries: Vec<Appended>,
    /// The checkpoint that covers every entry.
    pub checkpoint: Arc<Signed>,
}

/// Why an append failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The (source, event id) exists with different content.
    #[error(
        "event (source {event_source:?}, event_id {event_id:?}) already exists at index \
         {index} with different content"
    )]
    Conflict {
        /// Index of the original entry.
        index: u64,
        /// The event's source system.
        event_source: String,
        /// The event id.
        event_id: String,
    },
    /// The event's leaf would exceed what a C2SP entry bundle can hold
    /// ([`tlog_core::tiles::MAX_ENTRY`] bytes); nothing of the job was
    /// appended.
    #[error(
        "events[{position}] would make a leaf of {len} bytes; a log entry holds at most 65535 \
         (c2sp.org/tlog-tiles entry bundles): make the event smaller (nothing of the batch was \
         appended)"
    )]
    TooLarge {
        /// Position in the job.
        position: usize,
        /// The leaf's length.
        len: usize,
    },
    /// Two events of one batch share (source, event id) but differ.
    #[error(
        "events[{first}] and events[{second}] share (source {event_source:?}, event_id \
         {event_id:?}) but differ; give each event its own id (nothing of the batch was \
         appended)"
    )]
    SelfConflict {
        /// Position of the first in the batch.
        first: usize,
        /// Position of the second.
        second: usize,
        /// The event's source system.
        event_source: String,
        /// The event id.
        event_id: String,
    },
    /// Storage failed; nothing of this batch was acknowledged. Its kind
    /// (unavailable, or damaged data) decides the answer.
    #[error("{0}")]
    Storage(#[source] Arc<StorageError>),
    /// The checkpoint could not be signed; nothing of this batch was
    /// acknowledged.
    #[error("signing failed: {0}")]
    Sign(#[source] SignError),
    /// The batch was built on an earlier one whose commit failed.
    #[error("an earlier batch failed to commit; retry")]
    EarlierBatchFailed,
    /// The queue stayed full past the enqueue deadline.
    #[error("the log is overloaded: append queue full for {0:?}")]
    Overloaded(Duration),
    /// The server is shutting down.
    #[error("the log is shutting down")]
    ShuttingDown,
    /// Appends stopped: the sequencer cannot write safely until restarted.
    #[error("appends are stopped until the server is restarted: {0}")]
    Halted(String),
}

impl AppendError {
    /// A storage failure, shared by every caller of the batch.
    pub fn storage(e: StorageError) -> Self {
        AppendError::Storage(Arc::new(e))
    }
}

/// An event to append, with the trusted signers whose attestation over it
/// the service verified (recorded in the leaf).
#[derive(Debug, Clone)]
pub struct Submission {
    /// The validated event.
    pub event: ArtifactEvent,
    /// Verified signers, sorted and unique.
    pub verified_signers: Vec<String>,
    /// Whose (source, event id) this is: `None` for the event's source
    /// itself (a source bound to its principals in the policy, or a log
    /// without authentication), or [`scoped_source`] of the submitter, so
    /// that one submitter can never claim another's event ids.
    pub scope: Option<String>,
}

/// The idempotency scope of `source` for a `principal` it is not bound
/// to: `principal NUL source` (neither may hold a NUL, so no two pairs
/// give one scope).
pub fn scoped_source(principal: &str, source: &str) -> String {
    format!("{principal}\u{0}{source}")
}

impl Submission {
    /// The key this submission is idempotent under.
    fn key_source(&self) -> &str {
        self.scope.as_deref().unwrap_or(&self.event.source)
    }
}

struct Job {
    events: Vec<Submission>,
    /// Pre-encoded access-record leaves (ledger auditing); no idempotency.
    access: Vec<Vec<u8>>,
    submitter: Submitter,
    reply: oneshot::Sender<Result<Outcome, AppendError>>,
}

/// Batching settings.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most events in one commit.
    pub max_events: usize,
    /// How long a batch that is not full waits for more jobs when the
    /// writer is free (zero: it is written at once).
    pub max_wait: Duration,
    /// Capacity of the job queue.
    pub queue_depth: usize,
    /// How long a caller waits for room in a full queue.
    pub enqueue_timeout: Duration,
}

/// The handle callers append through.
#[derive(Clone)]
pub struct Sequencer {
    tx: mpsc::Sender<Job>,
    enqueue_timeout: Duration,
    latest: watch::Receiver<Arc<Signed>>,
    halted: Halted,
}

impl Sequencer {
    /// Queues `events` (already validated) and waits for the durable answer.
    pub async fn append(
        &self,
        events: Vec<Submission>,
        submitter: Submitter,
    ) -> Result<Outcome, AppendError> {
        self.enqueue(events, Vec::new(), submitter).await
    }

    /// Appends access-record leaves (already encoded) to the log.
    pub async fn append_access(&self, leaves: Vec<Vec<u8>>) -> Result<Outcome, AppendError> {
        self.enqueue(Vec::new(), leaves, Submitter::default()).await
    }

    async fn enqueue(
        &self,
        events: Vec<Submission>,
        access: Vec<Vec<u8>>,
        submitter: Submitter,
    ) -> Result<Outcome, AppendError> {
        if let Some(why) = self.halted.get() {
            return Err(AppendError::Halted(why.clone()));
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            events,
            access,
            submitter,
            reply,
        };
        match tokio::time::timeout(self.enqueue_timeout, self.tx.send(job)).await {
            Err(_) => return Err(AppendError::Overloaded(self.enqueue_timeout)),
            Ok(Err(_)) => return Err(AppendError::ShuttingDown),
            Ok(Ok(())) => {}
        }
        rx.await.unwrap_or(Err(AppendError::ShuttingDown))
    }

    /// Stops appends for good (until restart): the store cannot be
    /// trusted to extend what the log signed. The first reason stays.
    pub fn halt(&self, why: String) {
        let _ = self.halted.set(why);
    }

    /// Why appends stopped, if they did.
    pub fn halted(&self) -> Option<String> {
        self.halted.get().cloned()
    }

    /// How long callers wait for room in the queue.
    pub fn enqueue_timeout(&self) -> Duration {
        self.enqueue_timeout
    }

    /// The latest checkpoint.
    pub fn latest(&self) -> Arc<Signed> {
        self.latest.borrow().clone()
    }

    /// A receiver that sees every new checkpoint.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Signed>> {
        self.latest.clone()
    }

    /// Jobs waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Why the sequencer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store has no log in it.
    #[error("the data directory holds no log: run `tlog-server init` first")]
    NotInitialized,
    /// The signing key does not belong to this log.
    #[error("the signing key {key} does not match this log's verifier key {stored}")]
    WrongKey {
        /// The key's verifier key.
        key: String,
        /// The log's stored verifier key.
        stored: String,
    },
    /// The stored tree does not match the last checkpoint.
    #[error(
        "stored tree hashes give root {computed} at size {size}, but the last checkpoint \
         says {signed}: refusing to start (possible corruption)"
    )]
    RootMismatch {
        /// Tree size.
        size: u64,
        /// Root computed from stored hashes.
        computed: Hash,
        /// Root in the last checkpoint.
        signed: Hash,
    },
    /// The last checkpoint is missing or does not verify.
    #[error("last checkpoint at size {size}: {reason}")]
    BadCheckpoint {
        /// Tree size.
        size: u64,
        /// What is wrong.
        reason: String,
    },
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The checkpoint lock could not be read or written.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The store is not a consistent extension of the checkpoint lock.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// A log with entries but no checkpoint lock.
    #[error(
        "the log holds {size} entries but there is no checkpoint lock at {path}: the latest \
         checkpoint the log signed is unknown, so the store cannot be checked for a rollback. \
         Put the lock back (copy it from the server's previous data directory or its backup), \
         or re-import from a copy of the log (`tlog-server recover --from <copy>`), or, only if \
         this store is certainly the log's latest state (an upgrade from a version without \
         the lock), adopt it: `tlog-server recover --data-dir <dir> --adopt-store`"
    )]
    NoLock {
        /// The store's size.
        size: u64,
        /// Where the lock was looked for.
        path: std::path::PathBuf,
    },
}

pub use tlog_core::checkpoint::{CheckpointSigner, SignError};

/// Idempotency records of a batch not yet known to be in storage:
/// (source, event id) to (index, content digest).
type Pending = HashMap<(String, String), (u64, [u8; 32])>;

/// The preparing stage: owns the tree as it will be once every prepared
/// batch is written.
struct State<S> {
    store: Arc<S>,
    tree: Tree,
    signer: Box<dyn CheckpointSigner>,
    origin: String,
    /// The new idempotency records of the batch handed to the writer last,
    /// which may not be in storage yet.
    in_flight: Pending,
    metrics: Arc<Metrics>,
    halted: Halted,
}

/// The writing stage: commits prepared batches in order and answers.
struct Writer<S> {
    store: Arc<S>,
    /// Written after each commit, before its checkpoint is published or
    /// answered.
    lock: CheckpointLock,
    halted: Halted,
    /// Batches being answered.
    answering: tokio::task::JoinSet<()>,
    latest: Arc<Signed>,
    watch: watch::Sender<Arc<Signed>>,
    metrics: Arc<Metrics>,
}

/// One batch, ready to write.
struct Prepared {
    batch: CommitBatch,
    /// The tree size before this batch.
    base: u64,
    /// The tree before this batch, to roll back to if the write fails.
    saved: Tree,
    /// The signed checkpoint over the batch; `None` when it adds nothing.
    signed: Option<Signed>,
    answers: Vec<Answer>,
    events: usize,
    started: Instant,
}

/// A job's reply channel and what the preparing stage decided for it.
type Answer = (
    oneshot::Sender<Result<Outcome, AppendError>>,
    Result<Vec<Slot>, AppendError>,
);

/// Refuses every job in `answers` with `e`.
fn refuse(answers: Vec<Answer>, e: &AppendError) {
    for (reply, _) in answers {
        let _ = reply.send(Err(e.clone()));
    }
}

/// A batch whose write failed: nothing of it was acknowledged.
struct Failed {
    /// The tree before the batch.
    saved: Tree,
    /// Its jobs, answered only once the sequencer has recovered, so that a
    /// caller's retry is prepared on the recovered tree.
    answers: Vec<Answer>,
    error: AppendError,
}

/// The writer at work on one batch.
type Writing<S> = tokio::task::JoinHandle<(Writer<S>, Result<(), Failed>)>;

/// What ended the writer's task.
type Joined<S> = Result<(Writer<S>, Result<(), Failed>), tokio::task::JoinError>;

/// Takes the writer back from its finished task. After a failed write the
/// tree is recovered first and then the batch's jobs are refused; the
/// error is returned. `None` if the writer panicked.
fn settle<S: LogStore>(
    joined: Joined<S>,
    state: &mut State<S>,
) -> Option<(Writer<S>, Option<AppendError>)> {
    let Ok((mut w, written)) = joined else {
        tracing::error!("sequencer write panicked; appends stop");
        return None;
    };
    match written {
        Ok(()) => Some((w, None)),
        Err(failed) => {
            state.recover_after_failed_commit(failed.saved, &mut w);
            refuse(failed.answers, &failed.error);
            Some((w, Some(failed.error)))
        }
    }
}

/// Opens the log in `store` with `signer`, checks that the stored tree
/// matches the last signed checkpoint, and starts the sequencer task.
///
/// When `stop` turns true the queue closes: jobs already queued are still
/// committed and answered, new ones get [`AppendError::ShuttingDown`].
pub fn start<S: LogStore>(
    store: Arc<S>,
    signer: impl CheckpointSigner,
    lock: CheckpointLock,
    cfg: BatchConfig,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<(Sequencer, tokio::task::JoinHandle<()>), StartError> {
    let meta = store
        .meta()
        .map_err(StartError::Storage)?
        .ok_or(StartError::NotInitialized)?;
    let key = signer.verifier().to_vkey();
    if key != meta.vkey {
        return Err(StartError::WrongKey {
            key,
            stored: meta.vkey,
        });
    }
    let latest = load_latest(store.as_ref(), &signer, &meta.origin, meta.size)?;
    let tree = Tree::open(store.as_ref(), meta.size).map_err(|e| StartError::Storage(e.into()))?;
    if tree.root() != latest.root {
        return Err(StartError::RootMismatch {
            size: meta.size,
            computed: tree.root(),
            signed: latest.root,
        });
    }
    guard_start(store.as_ref(), &signer, &lock, &meta.origin, &latest)?;
    metrics.tree_size.set(meta.size);
    let latest = Arc::new(latest);
    let halted = Halted::default();
    let (watch_tx, watch_rx) = watch::channel(latest.clone());
    let (tx, rx) = mpsc::channel(cfg.queue_depth.max(1));
    let state = State {
        store: store.clone(),
        tree,
        signer: Box::new(signer),
        origin: meta.origin,
        in_flight: Pending::new(),
        metrics: metrics.clone(),
        halted: halted.clone(),
    };
    let writer = Writer {
        store,
        lock,
        halted: halted.clone(),
        answering: tokio::task::JoinSet::new(),
        latest,
        watch: watch_tx,
        metrics,
    };
    let handle = tokio::spawn(run(rx, state, writer, cfg.clone(), stop));
    Ok((
        Sequencer {
            tx,
            enqueue_timeout: cfg.enqueue_timeout,
            latest: watch_rx,
            halted,
        },
        handle,
    ))
}

/// The checkpoint-lock guard at start ([`crate::sequencer::lock`]): the store's
/// latest checkpoint must be the lock's or a consistent extension of it
/// (proven from the store's hashes, RFC 9162 section 2.1.4); the lock is
/// then moved up to it. A new log (size 0) without a lock gets one.
fn guard_start<S: LogStore>(
    store: &S,
    signer: &dyn CheckpointSigner,
    lock: &CheckpointLock,
    origin: &str,
    latest: &Signed,
) -> Result<(), StartError> {
    let key = tlog_core::note::Verifiers::new([signer.verifier()]);
    match lock.read(&key, origin)? {
        None if latest.size == 0 => lock.write(&latest.note)?,
        None => {
            return Err(StartError::NoLock {
                size: latest.size,
                path: lock.path().to_owned(),
            });
        }
        Some(locked) => {
            let prover = tlog_core::merkle::prove::Prover::new(store);
            let standing = locked.check_store(lock.path(), latest.size, &latest.root, |a, b| {
                prover.consistency_proof(a, b).map_err(|e| e.to_string())
            })?;
            if standing == Standing::Ahead {
                tracing::info!(
                    locked = locked.size,
                    store = latest.size,
                    "the store extends the checkpoint lock consistently; moving the lock up"
                );
                lock.write(&latest.note)?;
            }
        }
    }
    Ok(())
}

fn load_latest<S: LogStore>(
    store: &S,
    signer: &dyn CheckpointSigner,
    origin: &str,
    size: u64,
) -> Result<Signed, StartError> {
    let bad = |reason: String| StartError::BadCheckpoint { size, reason };
    let note = store
        .checkpoint(size)
        .map_err(StartError::Storage)?
        .ok_or_else(|| bad("missing".into()))?;
    let verifiers = tlog_core::note::Verifiers::new([signer.verifier()]);
    let opened = tlog_core::checkpoint::open_stored(&note, &verifiers, origin, size)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Signed {
        size,
        root: opened.checkpoint.root,
        note,
    })
}

async fn run<S: LogStore>(
    mut rx: mpsc::Receiver<Job>,
    mut state: State<S>,
    writer: Writer<S>,
    cfg: BatchConfig,
    mut stop: watch::Receiver<bool>,
) {
    // The writer is either here (idle) or in the task writing a batch.
    let mut idle = Some(writer);
    let mut writing: Option<Writing<S>> = None;
    // The next batch, built job by job as they arrive while the writer
    // is busy (group commit: the busier the writer, the larger the batch).
    let mut building: Option<Building> = None;
    let mut open = true;
    loop {
        // The writer is free: the batch built so far goes now (after
        // `max_wait`, if set, for a batch that is not yet full).
        if idle.is_some()
            && let Some(b) =
                building.take_if(|b| !open || b.events >= cfg.max_events || b.waited(&cfg))
        {
            let prepared = state.seal(b);
            let Some(mut w) = idle.take() else { return };
            writing = Some(tokio::task::spawn_blocking(move || {
                let written = w.write(prepared);
                (w, written)
            }));
        }
        if !open && building.is_none() {
            break;
        }
        // A stop that came while a job was being handled (the branch
        // below was not armed then) still closes the queue: otherwise a
        // handle kept elsewhere would hold the loop open for good.
        if open && *stop.borrow() {
            rx.close();
        }
        let room = building.as_ref().is_none_or(|b| b.events < cfg.max_events);
        let linger = building
            .as_ref()
            .filter(|_| idle.is_some())
            .map(|b| tokio::time::Instant::from_std(b.started + cfg.max_wait));
        enum Next<S> {
            Job(Option<Job>),
            Written(Joined<S>),
            Linger,
            Stop,
        }
        let next = tokio::select! {
            // A finished write comes first: the writer must not wait.
            biased;
            // A finished write is settled at once: a failed one's callers
            // are answered only after the recovery.
            joined = async {
                match writing.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            }, if writing.is_some() => Next::Written(joined),
            job = rx.recv(), if open && room => Next::Job(job),
            () = async {
                match linger {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            }, if linger.is_some() => Next::Linger,
            changed = stop.changed(), if !*stop.borrow() => {
                if changed.is_err() || *stop.borrow() {
                    // Refuse new jobs; the loop drains the queued ones.
                    rx.close();
                }
                Next::Stop
            }
        };
        match next {
            Next::Job(None) => open = false,
            Next::Job(Some(first)) => {
                // Jobs are added one at a time, here: a job of 64 events
                // takes about 0.3 ms, and between two jobs a finished write
                // is noticed, so the next batch goes to the writer at once
                // (handing jobs to the blocking pool cost more in wake-ups,
                // and held finished writes back).
                let mut b = building.take().unwrap_or_else(|| state.begin());
                state.add(&mut b, first);
                while b.events < cfg.max_events
                    && !writing.as_ref().is_some_and(|t| t.is_finished())
                {
                    let Ok(j) = rx.try_recv() else { break };
                    state.add(&mut b, j);
                }
                state.metrics.queue_depth.set(rx.len() as u64);
                building = Some(b);
            }
            Next::Written(joined) => {
                writing = None;
                let Some((w, failed)) = settle(joined, &mut state) else {
                    return;
                };
                idle = Some(w);
                if failed.is_some()
                    && let Some(b) = building.take()
                {
                    // Built on a batch that is not on disk (the tree has
                    // been recovered without it).
                    refuse(b.answers, &AppendError::EarlierBatchFailed);
                }
            }
            Next::Linger | Next::Stop => {}
        }
    }
    if let Some(task) = writing.take() {
        idle = settle(task.await, &mut state).map(|(w, _)| w);
    }
    if let Some(mut w) = idle {
        // Every answer is sent before the sequencer reports stopped.
        while w.answering.join_next().await.is_some() {}
    }
    tracing::info!("sequencer stopped: queue closed and drained");
}

enum Slot {
    /// A new entry at this index, with the event's content digest.
    New(u64, [u8; 32]),
    /// A retry of the entry at this index.
    Dup(u64),
}

/// The batch being built on top of the one being written.
struct Building {
    batch: CommitBatch,
    /// The tree size before this batch.
    base: u64,
    /// The tree before this batch, to roll back to if its write fails.
    saved: Tree,
    /// The new idempotency records of this batch.
    pending: Pending,
    answers: Vec<Answer>,
    events: usize,
    /// When its first job arrived.
    started: Instant,
}

impl Building {
    /// True once the batch has waited `max_wait` for more jobs.
    fn waited(&self, cfg: &BatchConfig) -> bool {
        cfg.max_wait.is_zero() || self.started.elapsed() >= cfg.max_wait
    }
}

impl<S: LogStore> State<S> {
    /// Starts a batch on top of the tree as it is.
    fn begin(&self) -> Building {
        Building {
            batch: CommitBatch::default(),
            base: self.tree.size(),
            saved: self.tree.clone(),
            pending: Pending::new(),
            answers: Vec::new(),
            events: 0,
            started: Instant::now(),
        }
    }

    /// Adds `job` to the batch `b` (and its leaves to the tree); nothing
    /// is written or answered here.
    fn add(&mut self, b: &mut Building, job: Job) {
        let now = Timestamp::now();
        let Job {
            events,
            access,
            submitter,
            reply,
        } = job;
        b.events += events.len() + access.len();
        if let Some(why) = self.halted.get() {
            let _ = reply.send(Err(AppendError::Halted(why.clone())));
            return;
        }
        if !access.is_empty() {
            let slots = access
                .into_iter()
                .map(|leaf| {
                    let index = self.tree.size();
                    let lh = leaf_hash(&leaf);
                    self.tree.append(lh, &mut b.batch.hashes);
                    b.batch.entries.push(NewEntry {
                        index,
                        leaf,
                        leaf_hash: lh,
                        idempotency: None,
                        artifact: None,
                    });
                    Slot::New(index, [0; 32])
                })
                .collect();
            b.answers.push((reply, Ok(slots)));
            return;
        }
        match self.plan(
            &events,
            &submitter,
            &b.pending,
            b.base + b.batch.entries.len() as u64,
        ) {
            Err(e) => b.answers.push((reply, Err(e))),
            Ok((slots, local)) => {
                for (event, slot) in events.into_iter().zip(&slots) {
                    if let Slot::New(index, digest) = slot {
                        self.add_event(&mut b.batch, *index, *digest, event, &submitter, now);
                    }
                }
                b.pending.extend(local);
                b.answers.push((reply, Ok(slots)));
            }
        }
    }

    /// Signs the checkpoint over the tree with batch `b` in it; the batch
    /// is then ready to write. Only while no other batch is being written:
    /// its idempotency records become the ones in flight.
    fn seal(&mut self, b: Building) -> Prepared {
        let Building {
            batch,
            base,
            saved,
            pending,
            answers,
            events,
            started,
        } = b;
        let mut prepared = Prepared {
            batch,
            base,
            saved,
            signed: None,
            answers,
            events,
            started,
        };
        if prepared.batch.entries.is_empty() {
            // Only retries and refusals: the writer answers them with the
            // latest checkpoint.
            self.in_flight = Pending::new();
            return prepared;
        }
        match self.sign(&mut prepared.batch) {
            Ok(signed) => {
                prepared.signed = Some(signed);
                self.in_flight = pending;
            }
            Err(e) => {
                self.tree = prepared.saved.clone();
                for (_, result) in &mut prepared.answers {
                    if result.is_ok() {
                        *result = Err(e.clone());
                    }
                }
                prepared.batch.entries.clear();
                prepared.batch.hashes.clear();
                self.in_flight = Pending::new();
            }
        }
        prepared
    }

    /// Decides, for one job, which events are new and which are retries;
    /// all-or-nothing: one conflict fails the whole job.
    #[allow(clippy::type_complexity)]
    fn plan(
        &self,
        events: &[Submission],
        submitter: &Submitter,
        pending: &Pending,
        next: u64,
    ) -> Result<(Vec<Slot>, Pending), AppendError> {
        let mut local = Pending::new();
        let mut slots = Vec::with_capacity(events.len());
        let mut new_count = 0u64;
        for (position, sub) in events.iter().enumerate() {
            let e = &sub.event;
            let key = (sub.key_source().to_owned(), e.event_id.clone());
            // One encoding gives the content digest and the leaf's length,
            // which must fit a C2SP entry bundle (c2sp.org/tlog-tiles: a
            // uint16 length prefix per entry).
            let encoded = e.encode();
            let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&encoded).into();
            let leaf_len = Leaf::encoded_len(encoded.len(), submitter, &sub.verified_signers);
            if leaf_len > tlog_core::tiles::MAX_ENTRY {
                return Err(AppendError::TooLarge {
                    position,
                    len: leaf_len,
                });
            }
            // Two events of this one job under one key: the second is a
            // retry of the first only if it is the same event; otherwise
            // the job contradicts itself (and the first has no index yet
            // to name: the whole job is refused).
            if let Some((first_index, d)) = local.get(&key)
                && *d != digest
            {
                let first = slots
                    .iter()
                    .position(|s| matches!(s, Slot::New(i, _) if *i == *first_index))
                    .unwrap_or_default();
                return Err(AppendError::SelfConflict {
                    first,
                    second: position,
                    event_source: e.source.clone(),
                    event_id: e.event_id.clone(),
                });
            }
            let found = match local
                .get(&key)
                .or_else(|| pending.get(&key))
                .or_else(|| self.in_flight.get(&key))
            {
                Some(v) => Some(*v),
                None => {
                    let unavailable = AppendError::storage;
                    match self
                        .store
                        .idempotency(&key.0, &e.event_id)
                        .map_err(unavailable)?
                    {
                        Some(found) => Some(found),
                        // Entries written before keys were scoped (or
                        // re-imported) are under the source alone: theirs
                        // only if this submitter wrote them.
                        None if sub.scope.is_some() => {
                            match self
                                .store
                                .idempotency(&e.source, &e.event_id)
                                .map_err(unavailable)?
                            {
                                Some((index, d))
                                    if self.submitted_by(index, &submitter.principal)? =>
                                {
                                    Some((index, d))
                                }
                                _ => None,
                            }
                        }
                        None => None,
                    }
                }
            };
            match found {
                Some((index, d)) if d == digest => slots.push(Slot::Dup(index)),
                Some((index, _)) => {
                    return Err(AppendError::Conflict {
                        index,
                        event_source: e.source.clone(),
                        event_id: e.event_id.clone(),
                    });
                }
                None => {
                    let index = next + new_count;
                    new_count += 1;
                    local.insert(key, (index, digest));
                    slots.push(Slot::New(index, digest));
                }
            }
        }
        Ok((slots, local))
    }

    /// True if the event leaf at `index` was submitted by `principal`.
    fn submitted_by(&self, index: u64, principal: &str) -> Result<bool, AppendError> {
        let leaf = self.store.entry(index).map_err(AppendError::storage)?;
        Ok(leaf
            .and_then(|l| Leaf::decode(&l).ok())
            .is_some_and(|l| l.submitter.principal == principal))
    }

    fn add_event(
        &mut self,
        batch: &mut CommitBatch,
        index: u64,
        content_digest: [u8; 32],
        submission: Submission,
        submitter: &Submitter,
        now: Timestamp,
    ) {
        debug_assert_eq!(index, self.tree.size());
        let Submission {
            event,
            verified_signers,
            scope,
        } = submission;
        let leaf = Leaf {
            version: tlog_core::leaf::LEAF_VERSION,
            event,
            submitter: submitter.clone(),
            integrated_at: now,
            verified_signers,
        };
        let bytes = leaf.encode();
        let mut e = event_entry(index, bytes, &leaf, content_digest);
        if let (Some(scope), Some(i)) = (scope, e.idempotency.as_mut()) {
            i.source = scope;
        }
        self.tree.append(e.leaf_hash, &mut batch.hashes);
        batch.entries.push(e);
    }

    /// Signs the checkpoint over the tree as it now is, into `batch`.
    fn sign(&self, batch: &mut CommitBatch) -> Result<Signed, AppendError> {
        let size = self.tree.size();
        let root = self.tree.root();
        let note = self
            .signer
            .sign_checkpoint(&Checkpoint::new(&self.origin, size, root))
            .map_err(AppendError::Sign)?;
        batch.size = size;
        batch.checkpoint = note.clone();
        Ok(Signed { size, root, note })
    }

    /// After a failed write, trust only what storage says: if the write
    /// did land despite the error, continue from it (its checkpoint is the
    /// one we signed for it); otherwise roll the tree back to `saved`, the
    /// tree before the failed batch.
    fn recover_after_failed_commit(&mut self, saved: Tree, writer: &mut Writer<S>) {
        self.in_flight = Pending::new();
        match self.store.meta() {
            Ok(Some(meta)) if meta.size == saved.size() => self.tree = saved,
            Ok(Some(meta)) => {
                match (
                    Tree::open(self.store.as_ref(), meta.size),
                    load_latest(
                        self.store.as_ref(),
                        self.signer.as_ref(),
                        &self.origin,
                        meta.size,
                    ),
                ) {
                    (Ok(tree), Ok(latest)) if tree.root() == latest.root => {
                        tracing::warn!(
                            size = meta.size,
                            "the failed commit landed; continuing from it"
                        );
                        self.tree = tree;
                        if writer.advance_lock(&latest.note) {
                            writer.publish(Arc::new(latest));
                        }
                    }
                    _ => {
                        tracing::error!("storage state unreadable after failed commit");
                        self.tree = saved;
                    }
                }
            }
            _ => self.tree = saved,
        }
    }
}

impl<S: LogStore> Writer<S> {
    /// Writes `note` to the checkpoint lock; if that fails, appends stop
    /// (nothing may be answered with a checkpoint the lock does not
    /// hold) and false is returned.
    fn advance_lock(&mut self, note: &str) -> bool {
        match self.lock.write(note) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "checkpoint lock not written; appends stop until restart");
                self.metrics.commit_failures.inc();
                let _ = self
                    .halted
                    .set(format!("the checkpoint lock could not be written: {e}"));
                false
            }
        }
    }

    /// Makes `signed` the latest checkpoint.
    fn publish(&mut self, signed: Arc<Signed>) {
        self.metrics.tree_size.set(signed.size);
        self.latest = signed.clone();
        self.watch.send_replace(signed);
    }

    /// Writes the batch durably, then answers its jobs. On failure nothing
    /// is answered: the batch comes back to the sequencer.
    fn write(&mut self, prepared: Prepared) -> Result<(), Failed> {
        let Prepared {
            batch,
            base,
            saved,
            signed,
            answers,
            events,
            started,
        } = prepared;
        let checkpoint = match signed {
            None => self.latest.clone(),
            Some(signed) => {
                if let Err(e) = self.store.commit(&batch) {
                    tracing::error!(error = %e, size = signed.size, "commit failed; batch not acknowledged");
                    self.metrics.commit_failures.inc();
                    return Err(Failed {
                        saved,
                        answers,
                        error: AppendError::storage(e),
                    });
                }
                // The lock before anything that depends on it: no answer,
                // no published checkpoint, that it does not hold.
                if !self.advance_lock(&signed.note) {
                    let why = self.halted.get().cloned().unwrap_or_default();
                    refuse(answers, &AppendError::Halted(why));
                    return Ok(());
                }
                self.metrics.appends.add(batch.entries.len() as u64);
                let signed = Arc::new(signed);
                self.publish(signed.clone());
                signed
            }
        };
        // The batch is durable: the answers are built and sent off the
        // writer's path, so the next write can start at once.
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        while self.answering.try_join_next().is_some() {}
        self.answering.spawn_blocking(move || {
            for (reply, result) in answers {
                let outcome = result.and_then(|slots| {
                    answer(store.as_ref(), slots, &batch, base, checkpoint.clone())
                });
                // A caller that gave up is not an error.
                let _ = reply.send(outcome);
            }
            metrics
                .batch_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.batch_events.observe(events as f64);
        });
        Ok(())
    }
}

/// The entry for an event leaf: its bytes, its hash, and what the
/// idempotency and artifact indexes keep of it.
fn event_entry(index: u64, bytes: Vec<u8>, leaf: &Leaf, content_digest: [u8; 32]) -> NewEntry {
    let event = &leaf.event;
    NewEntry {
        index,
        leaf_hash: leaf_hash(&bytes),
        leaf: bytes,
        idempotency: Some(Idempotency {
            source: event.source.clone(),
            event_id: event.event_id.clone(),
            content_digest,
        }),
        artifact: Some((
            event.artifact.name.clone(),
            ArtifactMeta {
                action: event.action.code(),
                seconds: leaf.integrated_at.seconds,
                nanos: leaf.integrated_at.nanos,
                version: event.artifact.version.clone(),
            },
        )),
    }
}

/// The entry the sequencer would have written for the committed leaf
/// `bytes` at `index` (an event with its indexes, or an access record),
/// for re-importing a log from a copy of it.
pub fn entry_for_leaf(index: u64, bytes: Vec<u8>) -> Result<NewEntry, tlog_core::leaf::LeafError> {
    match tlog_core::leaf::decode_any(&bytes)? {
        tlog_core::leaf::AnyLeaf::Event(leaf) => {
            let digest = leaf.event.content_digest();
            Ok(event_entry(index, bytes, &leaf, digest))
        }
        tlog_core::leaf::AnyLeaf::Access(_) => Ok(NewEntry {
            index,
            leaf_hash: leaf_hash(&bytes),
            leaf: bytes,
            idempotency: None,
            artifact: None,
        }),
    }
}

/// The answer to one job of a written batch: each entry, new or found.
fn answer<S: LogStore>(
    store: &S,
    slots: Vec<Slot>,
    batch: &CommitBatch,
    base: u64,
    checkpoint: Arc<Signed>,
) -> Result<Outcome, AppendError> {
    let mut entries = Vec::with_capacity(slots.len());
    for slot in slots {
        let (index, duplicate) = match slot {
            Slot::New(i, _) => (i, false),
            Slot::Dup(i) => (i, true),
        };
        let appended = if index >= base {
            let e = &batch.entries[(index - base) as usize];
            Appended {
                index,
                leaf: e.leaf.clone(),
                leaf_hash: e.leaf_hash,
                duplicate,
            }
        } else {
            let leaf = store
                .entry(index)
                .map_err(AppendError::storage)?
                .ok_or_else(|| {
                    AppendError::storage(StorageError::Corrupt(format!(
                        "entry {index} is in the tree but not stored"
                    )))
                })?;
            Appended {
                index,
                leaf_hash: leaf_hash(&leaf),
                leaf,
                duplicate,
            }
        };
        entries.push(appended);
    }
    Ok(Outcome {
        entries,
        checkpoint,
    })
}
