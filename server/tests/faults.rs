//! Faults inside the write path: a commit that fails before writing, one
//! that writes but reports failure, while the next batch is already being
//! built on top of it (the sequencer builds while it writes), and a power
//! cut at a random commit (nothing from then on reaches the disk, nobody is
//! answered), and a checkpoint signing that fails or crashes. Afterwards:
//! every acknowledged append is stored at its index, no index is used
//! twice, nothing unacknowledged is served as if written, and the log
//! restarts with its stored tree matching its last checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tlog_core::checkpoint::Checkpoint;
use tlog_core::leaf::Leaf;
use tlog_core::note::{Signer, Verifier};
use tlog_server::sequencer::{AppendError, CheckpointSigner, SignError};
use tlog_server::storage::{LogStore, RocksStore};

use crate::common::{
    Fault, Faulty, ORIGIN, Running, sequencer_over, sequencer_signed_by, submission,
};

/// A fault plan: `fault` at the numbered steps in `steps`, `none` at the
/// others.
fn at<T: Copy + Send + Sync + 'static>(
    steps: &'static [u64],
    fault: T,
    none: T,
) -> impl Fn(u64) -> T + Send + Sync + 'static {
    move |n| if steps.contains(&n) { fault } else { none }
}

/// What the signer does at one signing.
#[derive(Clone, Copy, PartialEq)]
enum SignFault {
    None,
    /// Signing fails (an HSM or KMS that errs).
    Fail,
    /// The sequencer stops right there, as if the process died while
    /// signing (the panic ends the sequencer's task).
    Crash,
}

/// The log's key, with a fault plan by signing number (0, 1, ...).
struct FaultySigner {
    key: Signer,
    signings: AtomicU64,
    plan: Box<dyn Fn(u64) -> SignFault + Send + Sync>,
}

impl FaultySigner {
    fn new(dir: &std::path::Path, plan: impl Fn(u64) -> SignFault + Send + Sync + 'static) -> Self {
        FaultySigner {
            key: tlog_server::ops::keys::load_signer(&dir.join("log.key")).expect("key"),
            signings: AtomicU64::new(0),
            plan: Box::new(plan),
        }
    }
}

impl CheckpointSigner for FaultySigner {
    fn verifier(&self) -> Verifier {
        self.key.verifier()
    }

    fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<String, SignError> {
        match (self.plan)(self.signings.fetch_add(1, Ordering::SeqCst)) {
            SignFault::None => self.key.sign_checkpoint(checkpoint),
            SignFault::Fail => Err(SignError::Signer(std::sync::Arc::new(
                std::io::Error::other("injected signing failure"),
            ))),
            SignFault::Crash => panic!("injected crash while signing"),
        }
    }
}

/// A sequencer over `store` whose batches (of up to 4) overlap: while one
/// is written, the next is built.
fn overlapping(dir: &std::path::Path, store: Arc<Faulty>) -> Running {
    sequencer_over(
        dir,
        store,
        4,
        Duration::from_millis(1),
        64,
        Duration::from_secs(10),
    )
}

/// Runs 40 single appends from 8 tasks against a store with `plan`, each
/// commit delayed so batches overlap; returns the acknowledged (index, event
/// id) and the refused event ids, each with whether it was refused for
/// being built on top of a failed batch.
async fn appends_with(
    dir: &std::path::Path,
    plan: impl Fn(u64) -> Fault + Send + Sync + 'static,
) -> (BTreeMap<u64, String>, Vec<(String, bool)>, Arc<Faulty>) {
    appends_signed(dir, plan, |_| SignFault::None).await
}

/// A sequencer over a store with the commit faults of `plan` (each commit
/// delayed so batches overlap), its checkpoints signed with the signing
/// faults of `sign_plan`; batches of up to 4.
fn faulty(
    dir: &std::path::Path,
    plan: impl Fn(u64) -> Fault + Send + Sync + 'static,
    sign_plan: impl Fn(u64) -> SignFault + Send + Sync + 'static,
) -> (Arc<Faulty>, Running) {
    let store = Arc::new(Faulty::open(dir, Duration::from_millis(15), plan));
    let running = sequencer_signed_by(
        dir,
        store.clone(),
        FaultySigner::new(dir, sign_plan),
        4,
        Duration::from_millis(1),
        64,
        Duration::from_secs(10),
    );
    (store, running)
}

/// One appending task's (event id, result) pairs.
type Appended = Vec<(String, Result<tlog_server::sequencer::Outcome, AppendError>)>;

/// 40 single appends from 8 tasks, 5 each in turn.
fn forty_appends(
    seq: &tlog_server::sequencer::Sequencer,
) -> Vec<tokio::task::JoinHandle<Appended>> {
    (0..8)
        .map(|t| {
            let seq = seq.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..5 {
                    let id = format!("ev-{t}-{i}");
                    let r = seq.append(vec![submission(&id)], Default::default()).await;
                    out.push((id, r));
                }
                out
            })
        })
        .collect()
}

/// [`appends_with`], the checkpoints signed with the signing faults of
/// `sign_plan`.
async fn appends_signed(
    dir: &std::path::Path,
    plan: impl Fn(u64) -> Fault + Send + Sync + 'static,
    sign_plan: impl Fn(u64) -> SignFault + Send + Sync + 'static,
) -> (BTreeMap<u64, String>, Vec<(String, bool)>, Arc<Faulty>) {
    // `run.stop` lives to the end: dropping it would stop the sequencer.
    let (store, run) = faulty(dir, plan, sign_plan);
    let (mut acked, mut refused) = (BTreeMap::new(), Vec::new());
    for t in forty_appends(&run.seq) {
        for (id, r) in t.await.expect("task") {
            match r {
                Ok(o) => {
                    let e = &o.entries[0];
                    assert!(e.index < o.checkpoint.size, "answer beyond its checkpoint");
                    assert!(
                        acked.insert(e.index, id.clone()).is_none(),
                        "index {} acknowledged twice",
                        e.index
                    );
                }
                // The injected fault itself, typed by where it struck.
                Err(e @ (AppendError::Storage(_) | AppendError::Sign(_))) => {
                    assert!(e.to_string().contains("injected"), "{e}");
                    refused.push((id, false));
                }
                Err(AppendError::EarlierBatchFailed) => refused.push((id, true)),
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    }
    drop(run.seq);
    let _ = run.task.await;
    (acked, refused, store)
}

/// Every acknowledged event is stored at its index; returns the stored
/// event ids by index.
fn stored(store: &RocksStore, acked: &BTreeMap<u64, String>) -> BTreeMap<u64, String> {
    let size = store.meta().expect("meta").expect("log").size;
    let mut all = BTreeMap::new();
    for (i, leaf) in store.entries(0, size).expect("entries") {
        let leaf = Leaf::decode(&leaf).expect("stored leaf decodes");
        all.insert(i, leaf.event.event_id);
    }
    assert_eq!(all.len() as u64, size, "a hole in the stored entries");
    for (i, id) in acked {
        assert_eq!(all.get(i), Some(id), "acknowledged {id} not at index {i}");
    }
    all
}

/// The log opens again: the stored tree gives the last checkpoint's root.
fn reopens(dir: &std::path::Path, store: Arc<Faulty>) -> Arc<RocksStore> {
    drop(Arc::into_inner(store).expect("sole owner"));
    let store = Arc::new(RocksStore::open(&tlog_server::ops::keys::db_path(dir)).expect("open"));
    let rt = tokio::runtime::Handle::current();
    let _guard = rt.enter();
    let Running {
        seq,
        task,
        stop: _tx,
    } = sequencer_over(
        dir,
        store.clone(),
        4,
        Duration::ZERO,
        4,
        Duration::from_secs(1),
    );
    drop(seq);
    task.abort();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_before_writing_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tmp");
    tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
    let (acked, refused, store) =
        appends_with(dir.path(), at(&[2, 5], Fault::FailBefore, Fault::None)).await;
    assert!(store.commits() > 6, "too few batches to reach the faults");
    assert!(
        refused.iter().any(|(_, on_failed)| *on_failed),
        "no batch was built on top of a failing one: {refused:?}"
    );
    assert_eq!(acked.len() + refused.len(), 40);
    let store = reopens(dir.path(), store);
    let all = stored(&store, &acked);
    // Nothing refused was written: the stored entries are exactly the
    // acknowledged ones, at 0..n.
    assert_eq!(all, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_lands_but_reports_failure_is_continued_from() {
    let dir = tempfile::tempdir().expect("tmp");
    tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
    let (acked, refused, store) =
        appends_with(dir.path(), at(&[3], Fault::FailAfter, Fault::None)).await;
    assert!(!refused.is_empty());
    let store = reopens(dir.path(), store);
    let all = stored(&store, &acked);
    // The batch that landed is in the log; later entries follow it, none
    // overwrote it, and every refused event is either stored (it landed)
    // or absent, never twice.
    for (id, _) in &refused {
        assert!(
            all.values().filter(|v| *v == id).count() <= 1,
            "{id} stored twice"
        );
    }
    assert!(
        all.len() > acked.len(),
        "the landed batch is not in the log"
    );
    let mut ids: Vec<_> = all.values().collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "an event stored twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_landed_failure_finds_the_stored_entry() {
    let dir = tempfile::tempdir().expect("tmp");
    tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
    let store = Arc::new(Faulty::open(
        dir.path(),
        Duration::ZERO,
        at(&[0], Fault::FailAfter, Fault::None),
    ));
    let Running {
        seq,
        task: _task,
        stop: _stop_tx,
    } = sequencer_over(
        dir.path(),
        store.clone(),
        1,
        Duration::ZERO,
        4,
        Duration::from_secs(1),
    );
    let first = seq
        .append(vec![submission("r-1")], Default::default())
        .await;
    assert!(matches!(first, Err(AppendError::Storage(_))), "{first:?}");
    // The retry finds the entry the failed commit wrote, at index 0.
    let again = seq
        .append(vec![submission("r-1")], Default::default())
        .await
        .expect("retry");
    assert_eq!(again.entries[0].index, 0);
    assert!(again.entries[0].duplicate);
    let next = seq
        .append(vec![submission("r-2")], Default::default())
        .await
        .expect("next");
    assert_eq!(next.entries[0].index, 1);
    assert_eq!(next.checkpoint.size, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_at_any_commit_keeps_every_acknowledged_append() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    for round in 0..4u64 {
        let at = 1 + (u64::from(seed) + round * 3) % 7;
        let dir = tempfile::tempdir().expect("tmp");
        tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
        let store = Arc::new(Faulty::open(
            dir.path(),
            Duration::from_millis(5),
            move |n| {
                if n == at { Fault::Cut } else { Fault::None }
            },
        ));
        let Running {
            seq,
            task,
            stop: stop_tx,
        } = overlapping(dir.path(), store.clone());
        let mut tasks = Vec::new();
        for t in 0..8 {
            let seq = seq.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..10 {
                    let id = format!("pc-{t}-{i}");
                    // A dead machine answers no one: give up after a while.
                    match tokio::time::timeout(
                        Duration::from_millis(500),
                        seq.append(vec![submission(&id)], Default::default()),
                    )
                    .await
                    {
                        Ok(Ok(o)) => acked.push((o.entries[0].index, id)),
                        Ok(Err(e)) => panic!("no error is expected before the cut: {e}"),
                        Err(_) => break,
                    }
                }
                acked
            }));
        }
        let mut acked = BTreeMap::new();
        for t in tasks {
            for (i, id) in t.await.expect("task") {
                assert!(
                    acked.insert(i, id).is_none(),
                    "index {i} acknowledged twice"
                );
            }
        }
        assert!(
            store.was_cut(),
            "round {round}: the cut at commit {at} never came"
        );
        // The machine is gone: stop the sequencer, let the stuck commit fail,
        // and come back from what reached the disk.
        let _ = stop_tx.send(true);
        drop(seq);
        store.release();
        let _ = task.await;
        let store = reopens(dir.path(), store);
        let all = stored(&store, &acked);
        assert_eq!(
            all, acked,
            "round {round} (cut at commit {at}): the disk holds exactly what was acknowledged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_failure_refuses_its_batch_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
    let (acked, refused, store) = appends_signed(
        dir.path(),
        |_| Fault::None,
        at(&[2, 5], SignFault::Fail, SignFault::None),
    )
    .await;
    assert!(store.commits() > 6, "too few batches to reach the faults");
    // Both failed signings refused their batches (and only them: nothing
    // was written, so nothing after them is refused as built on a failure).
    assert!(refused.len() >= 2, "{refused:?}");
    assert!(
        refused.iter().all(|(_, on_failed)| !on_failed),
        "{refused:?}"
    );
    assert_eq!(acked.len() + refused.len(), 40);
    let store = reopens(dir.path(), store);
    // The stored entries are exactly the acknowledged ones, at 0..n: the
    // tree was rolled back past each refused batch.
    assert_eq!(stored(&store, &acked), acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_signing_keeps_every_acknowledged_append() {
    let dir = tempfile::tempdir().expect("tmp");
    tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
    let (store, run) = faulty(
        dir.path(),
        |_| Fault::None,
        at(&[3], SignFault::Crash, SignFault::None),
    );
    let mut acked = BTreeMap::new();
    let mut failed = 0;
    for t in forty_appends(&run.seq) {
        for (id, r) in t.await.expect("task") {
            match r {
                Ok(o) => {
                    let e = &o.entries[0];
                    assert!(
                        acked.insert(e.index, id).is_none(),
                        "index {} acknowledged twice",
                        e.index
                    );
                }
                Err(_) => failed += 1,
            }
        }
    }
    drop(run.seq);
    assert!(
        run.task.await.is_err(),
        "the sequencer did not stop at the crash"
    );
    assert!(failed > 0, "nothing was refused after the crash");
    assert_eq!(store.commits(), 3, "the crash came at the 4th signing");
    // Answers being proved when the sequencer stopped finish on their
    // blocking threads, holding the store until then.
    for _ in 0..1000 {
        if Arc::strong_count(&store) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let store = reopens(dir.path(), store);
    // Every acknowledged append is at its index; whatever else is stored
    // came from batches written before the crash (answered or not), each
    // event once.
    let all = stored(&store, &acked);
    let mut ids: Vec<&String> = all.values().collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "an event stored twice");
    assert!(all.len() >= acked.len());
    // The log goes on from its last checkpoint.
    let size = all.len() as u64;
    let Running {
        seq,
        task,
        stop: _s,
    } = sequencer_over(
        dir.path(),
        store,
        4,
        Duration::ZERO,
        4,
        Duration::from_secs(1),
    );
    let o = seq
        .append(vec![submission("after-the-crash")], Default::default())
        .await
        .expect("appends after the restart");
    assert_eq!(o.entries[0].index, size);
    drop(seq);
    let _ = task.await;
}

/// A stop that lands while the sequencer is busy with a job or a finished
/// write still ends it, though a handle is held elsewhere (the server's
/// witness workers hold one): the queue is closed on the next turn. The
/// loop used to arm its stop branch only when no stop had been seen, so a
/// stop during a turn left it waiting on a queue that a live handle kept
/// open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_batch_ends_the_sequencer_while_a_handle_lives() {
    for round in 0..12u64 {
        let dir = tempfile::tempdir().expect("tmp");
        tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
        let (_store, run) = faulty(dir.path(), |_| Fault::None, |_| SignFault::None);
        let tasks = forty_appends(&run.seq);
        // Stop at a different point of the stream of batches each round.
        tokio::time::sleep(Duration::from_millis(3 * round)).await;
        let _ = run.stop.send(true);
        let held = run.seq.clone();
        tokio::time::timeout(Duration::from_secs(20), run.task)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the sequencer did not stop"))
            .expect("join");
        for t in tasks {
            let _ = t.await;
        }
        drop(held);
    }
}
