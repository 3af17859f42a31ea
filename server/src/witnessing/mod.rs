//! The log asks witnesses to cosign its checkpoints (c2sp.org/tlog-witness,
//! "add-checkpoint"), and serves the cosigned checkpoints.
//!
//! The witnesses and the quorum come from a c2sp.org/tlog-policy file
//! whose `witness` lines carry each witness's submission prefix. One task
//! per witness submits checkpoints with a consistency proof from the size
//! that witness last cosigned (a 409 tells it that size). The workers
//! submit in rounds: every worker asks for the same checkpoint, the
//! round's, so that cosignatures meet on one tree; once the quorum is met
//! on it, the next round takes the sequencer's newest checkpoint, which
//! covers every one signed while the round was in flight. A slow witness
//! never holds up a round its quorum does not need: it joins the current
//! round when it is done.
//!
//! A checkpoint whose cosignatures satisfy the quorum becomes the
//! published checkpoint (`/checkpoint`, `GetCheckpoint`). In `sync` mode an
//! append is answered only with such a checkpoint; in `async` mode appends
//! answer as without witnesses and cosignatures are added as they arrive.
//!
//! A witness that cosigned a size the store does not hold (409 with a
//! larger size), or that finds the store's proof inconsistent with what it
//! cosigned (422), proves that the log's key signed a tree the store no
//! longer has: the store was rolled back or replaced. Appends then stop
//! (the sequencer halts), and the reason is logged and returned.

mod client;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tlog_core::merkle::cache::TileCache;
use tlog_core::merkle::prove::Prover;
use tlog_core::note::{Signature, Verifiers};
use tlog_core::policy::{Policy, PolicyError};
use tlog_core::witness::{AddCheckpoint, read_conflict, read_cosignatures};
use tokio::sync::watch;

use crate::ops::config::{WitnessMode, WitnessingSection};
use crate::ops::metrics::Metrics;
use crate::sequencer::{Sequencer, Signed};
use crate::storage::LogStore;

/// How many recent checkpoints keep their cosignatures in memory.
const RECENT: usize = 256;

/// Why witnessing cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WitnessingError {
    /// The policy file cannot be read.
    #[error("witnessing.policy_file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The policy does not parse.
    #[error("witnessing.policy_file {path}: {source}")]
    Policy {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: PolicyError,
    },
    /// The policy cannot be used by this log.
    #[error("witnessing.policy_file {path}: {reason}")]
    Unusable {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The CA file cannot be read.
    #[error("witnessing.ca_file {path}: {source}")]
    ReadCa {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("witnessing.ca_file {path}: {reason} (a PEM file of CA certificates is expected)")]
    Ca {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// One checkpoint and the cosignatures gathered for it.
#[derive(Debug, Clone)]
struct Gathered {
    signed: Arc<Signed>,
    sigs: Vec<Option<Signature>>,
}

/// The witnessing state shared by the workers and the service.
pub struct Witnessing {
    policy: Policy,
    mode: WitnessMode,
    timeout: Duration,
    recent: Mutex<BTreeMap<u64, Gathered>>,
    /// The checkpoint of the current round (see [`Witnessing::round`]).
    target: Mutex<Option<Arc<Signed>>>,
    /// The newest checkpoint that satisfies the quorum, with every
    /// cosignature gathered for it; `None` until one does.
    published: watch::Sender<Option<Arc<Signed>>>,
    /// Per witness: the size it last cosigned (for metrics and tests).
    sizes: Vec<std::sync::atomic::AtomicU64>,
    /// Set when a witness proved the store behind what the log signed.
    stopped: watch::Sender<Option<String>>,
    /// Wakes workers pausing after a failure: a sync append is waiting.
    wanted: tokio::sync::Notify,
    /// The TLS setup of `https://` witnesses: the Web PKI roots and
    /// `ca_file`'s certificates.
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
}

impl Witnessing {
    /// Loads the policy and checks that this log can use it: every witness
    /// has an `http://` or `https://` URL, and a policy that lists logs
    /// lists this one.
    pub fn load(cfg: &WitnessingSection, vkey: &str) -> Result<Witnessing, WitnessingError> {
        let path = cfg.policy_file.clone();
        let bytes = std::fs::read(&path).map_err(|source| WitnessingError::Read {
            path: path.clone(),
            source,
        })?;
        let policy = Policy::parse(&bytes).map_err(|source| WitnessingError::Policy {
            path: path.clone(),
            source,
        })?;
        let unusable = |reason: String| WitnessingError::Unusable {
            path: path.clone(),
            reason,
        };
        if policy.witnesses().is_empty() {
            return Err(unusable(
                "it lists no witness: add `witness NAME VKEY URL` lines".into(),
            ));
        }
        for w in policy.witnesses() {
            let url = w.url.as_deref().unwrap_or_default();
            client::Endpoint::parse(url).map_err(|e| {
                unusable(format!(
                    "witness {}: {e} (the log submits to each witness's URL)",
                    w.display_name()
                ))
            })?;
        }
        if !policy.logs().is_empty() && !policy.logs().iter().any(|l| l.verifier.to_vkey() == vkey)
        {
            return Err(unusable(format!(
                "it lists logs but not this one ({vkey}); add `log {vkey}`"
            )));
        }
        let tls = client::tls_config(cfg.ca_file.as_deref())?;
        let (published, _) = watch::channel(None);
        let (stopped, _) = watch::channel(None);
        Ok(Witnessing {
            tls,
            stopped,
            wanted: tokio::sync::Notify::new(),
            sizes: policy
                .witnesses()
                .iter()
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            policy,
            mode: cfg.mode,
            timeout: cfg.timeout,
            recent: Mutex::new(BTreeMap::new()),
            target: Mutex::new(None),
            published,
        })
    }

    /// How many witnesses the policy lists.
    pub fn witness_count(&self) -> usize {
        self.policy.witnesses().len()
    }

    /// The mode.
    pub fn mode(&self) -> WitnessMode {
        self.mode
    }

    /// The per-request deadline (also how long a sync append waits).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The newest checkpoint that satisfies the quorum.
    pub fn published(&self) -> Option<Arc<Signed>> {
        self.published.borrow().clone()
    }

    /// The checkpoint at `size` with its cosignatures, if still in memory.
    pub fn at(&self, size: u64) -> Option<Arc<Signed>> {
        let recent = lock(&self.recent);
        recent.get(&size).map(|g| Arc::new(cosigned(g)))
    }

    /// Waits until a checkpoint of at least `size` satisfies the quorum,
    /// for at most the configured timeout.
    /// Ends early when witnessing stopped (the store is behind).
    pub async fn wait_cosigned(&self, size: u64) -> Option<Arc<Signed>> {
        let mut rx = self.published.subscribe();
        let mut stopped = self.stopped.subscribe();
        if rx.borrow().as_ref().is_none_or(|s| s.size < size) {
            // A witness that failed may be back: try it now, not after
            // its backoff.
            self.wanted.notify_waiters();
        }
        let wait = async {
            tokio::select! {
                r = rx.wait_for(|p| p.as_ref().is_some_and(|s| s.size >= size)) => r.ok().and_then(|p| p.clone()),
                _ = stopped.wait_for(Option::is_some) => None,
            }
        };
        tokio::time::timeout(self.timeout, wait)
            .await
            .ok()
            .flatten()
    }

    /// Why witnessing stopped, if a witness proved the store behind.
    pub fn stopped(&self) -> Option<String> {
        self.stopped.borrow().clone()
    }

    /// Records witness `i`'s cosignature on `signed`; publishes it if the
    /// quorum is now met and it is newer than what is published.
    fn add(&self, i: usize, signed: &Arc<Signed>, sig: Signature) {
        let mut recent = lock(&self.recent);
        let n = self.policy.witnesses().len();
        let g = recent.entry(signed.size).or_insert_with(|| Gathered {
            signed: signed.clone(),
            sigs: vec![None; n],
        });
        if g.signed.root != signed.root {
            // Cannot happen for one log; never mix cosignatures of two trees.
            return;
        }
        g.sigs[i] = Some(sig);
        let have: Vec<bool> = g.sigs.iter().map(Option::is_some).collect();
        let met = self.policy.quorum_met(&have);
        let note = Arc::new(cosigned(g));
        while recent.len() > RECENT {
            recent.pop_first();
        }
        drop(recent);
        if met {
            self.published.send_if_modified(|p| {
                if p.as_ref().is_none_or(|c| c.size <= note.size) {
                    *p = Some(note);
                    true
                } else {
                    false
                }
            });
        }
    }

    /// The checkpoint every worker submits now: the current round's
    /// while its quorum is not met, else `newest` (the sequencer's
    /// newest), which starts the next round. Witnesses that each took the
    /// newest checkpoint when they were free would cosign different trees
    /// under a steady load, and a quorum would form only when they happened
    /// to agree.
    fn round(&self, newest: &Arc<Signed>) -> Arc<Signed> {
        let mut target = lock(&self.target);
        let done = self.published.borrow().as_ref().map_or(0, |p| p.size);
        match &*target {
            Some(t) if t.size >= newest.size || done < t.size => t.clone(),
            _ => {
                *target = Some(newest.clone());
                newest.clone()
            }
        }
    }

    /// The size witness `i` last cosigned (0 before its first answer).
    pub fn witness_size(&self, i: usize) -> u64 {
        self.sizes
            .get(i)
            .map_or(0, |s| s.load(std::sync::atomic::Ordering::Relaxed))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The checkpoint's note with the gathered cosignature lines appended.
fn cosigned(g: &Gathered) -> Signed {
    let mut note = g.signed.note.clone();
    for s in g.sigs.iter().flatten() {
        note.push_str(&s.to_line());
        note.push('\n');
    }
    Signed {
        size: g.signed.size,
        root: g.signed.root,
        note,
    }
}

/// Starts one task per witness; they stop when `stop` turns true.
pub fn spawn<S: LogStore>(
    w: Arc<Witnessing>,
    seq: Sequencer,
    store: Arc<S>,
    tiles: Arc<TileCache>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..w.policy.witnesses().len())
        .map(|i| {
            tokio::spawn(worker(
                w.clone(),
                i,
                seq.clone(),
                store.clone(),
                tiles.clone(),
                metrics.clone(),
                stop.clone(),
            ))
        })
        .collect()
}

/// What one submission taught the worker.
enum Step {
    /// Cosigned at this size.
    Cosigned(u64),
    /// The witness holds this size: submit again from it.
    Holds(u64),
    /// Try again after a pause.
    Retry,
    /// The store contradicts the witness: stop.
    Halt(String),
}

async fn worker<S: LogStore>(
    w: Arc<Witnessing>,
    i: usize,
    seq: Sequencer,
    store: Arc<S>,
    tiles: Arc<TileCache>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let witness = &w.policy.witnesses()[i];
    let name = witness.display_name();
    let keys = Verifiers::new([witness.verifier.clone()]);
    let Ok(endpoint) = client::Endpoint::parse(witness.url.as_deref().unwrap_or_default()) else {
        return;
    };
    let mut conn = client::Conn::new(endpoint, w.timeout, w.tls.clone());
    let mut latest = seq.subscribe();
    let mut published = w.published.subscribe();
    // The size this witness holds, as far as we know (None: ask it).
    let mut known: Option<u64> = None;
    let mut cosigned_size: Option<u64> = None;
    let mut pause = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let newest = latest.borrow_and_update().clone();
        published.borrow_and_update();
        let round = w.round(&newest);
        // A witness already past the round (it holds a newer tree, from
        // before a restart) is asked for the newest checkpoint instead.
        let signed = match known {
            Some(k) if k > round.size => newest,
            _ => round,
        };
        if cosigned_size.is_some_and(|c| c >= signed.size) {
            // Done with this round: wait for a newer checkpoint, or for
            // the quorum that closes the round.
            tokio::select! {
                r = latest.changed() => if r.is_err() { return },
                r = published.changed() => if r.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            continue;
        }
        let step = tokio::select! {
            s = submit(&w, i, &name, &keys, &mut conn, &signed, known, &store, &tiles) => s,
            _ = stop.wait_for(|s| *s) => return,
        };
        match step {
            Step::Cosigned(size) => {
                metrics.witness_answer(&name, "cosigned");
                known = Some(size);
                cosigned_size = Some(size);
                w.sizes[i].store(size, std::sync::atomic::Ordering::Relaxed);
                pause = Duration::from_millis(100);
            }
            Step::Holds(size) => {
                metrics.witness_answer(&name, "conflict");
                if known == Some(size) {
                    // The same 409 twice: do not spin.
                    tokio::time::sleep(pause).await;
                }
                known = Some(size);
                w.sizes[i].store(size, std::sync::atomic::Ordering::Relaxed);
            }
            Step::Retry => {
                metrics.witness_answer(&name, "failed");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = w.wanted.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Step::Halt(why) => {
                metrics.witness_answer(&name, "rollback");
                tracing::error!(witness = %name, reason = %why, "the store is behind what the log signed: appends stop");
                seq.halt(why.clone());
                w.stopped.send_if_modified(|s| {
                    if s.is_none() {
                        *s = Some(why);
                        true
                    } else {
                        false
                    }
                });
                return;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn submit<S: LogStore>(
    w: &Witnessing,
    i: usize,
    name: &str,
    keys: &Verifiers,
    conn: &mut client::Conn,
    signed: &Arc<Signed>,
    known: Option<u64>,
    store: &Arc<S>,
    tiles: &Arc<TileCache>,
) -> Step {
    let old = known.unwrap_or(0);
    if old > signed.size {
        return Step::Halt(format!(
            "witness {name} cosigned size {old} but the store holds {} entries: the store was \
             rolled back or replaced; restore the data directory that holds size {old}",
            signed.size
        ));
    }
    let proof = if old == 0 || old == signed.size {
        Vec::new()
    } else {
        let (store, tiles, size) = (store.clone(), tiles.clone(), signed.size);
        match tokio::task::spawn_blocking(move || {
            Prover::with_cache(store.as_ref(), &tiles).consistency_proof(old, size)
        })
        .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!(witness = %name, error = %e, "cannot build a consistency proof");
                return Step::Retry;
            }
            Err(_) => return Step::Retry,
        }
    };
    let body = AddCheckpoint {
        old_size: old,
        proof,
        checkpoint: signed.note.clone(),
    }
    .to_bytes();
    let (status, answer) = match conn.post(body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(witness = %name, error = %e, "witness unreachable");
            return Step::Retry;
        }
    };
    let body_text = signed
        .note
        .split_once("\n\n")
        .map(|(t, _)| format!("{t}\n"))
        .unwrap_or_default();
    match status {
        200 => match read_cosignatures(&body_text, &answer, keys) {
            Ok(sigs) => {
                for s in sigs {
                    w.add(i, signed, s);
                }
                tracing::debug!(witness = %name, size = signed.size, "cosigned");
                Step::Cosigned(signed.size)
            }
            Err(e) => {
                tracing::warn!(witness = %name, error = %e, "unusable cosignature");
                Step::Retry
            }
        },
        409 => match read_conflict(&answer) {
            Some(size) if size > signed.size => Step::Halt(format!(
                "witness {name} cosigned size {size} but the store holds {} entries: the store \
                 was rolled back or replaced; restore the data directory that holds size {size}",
                signed.size
            )),
            Some(size) => Step::Holds(size),
            None => {
                tracing::warn!(witness = %name, "409 without a size");
                Step::Retry
            }
        },
        422 if known.is_some() => Step::Halt(format!(
            "witness {name} refused the store's consistency proof from size {old} to {}: it \
             cosigned a different tree at size {old} signed by this log's key, so the store was \
             rolled back or replaced ({})",
            signed.size,
            String::from_utf8_lossy(&answer).trim()
        )),
        code => {
            tracing::warn!(witness = %name, code, answer = %String::from_utf8_lossy(&answer).trim(), "witness refused the checkpoint");
            Step::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_core::checkpoint::Checkpoint;
    use tlog_core::cosignature::Cosigner;
    use tlog_core::note::Signer;

    fn section(dir: &std::path::Path, policy: &str, mode: WitnessMode) -> WitnessingSection {
        let path = dir.join("w.policy");
        std::fs::write(&path, policy).expect("write");
        WitnessingSection {
            policy_file: path,
            mode,
            timeout: Duration::from_millis(200),
            ca_file: None,
        }
    }

    fn w(i: u8) -> Cosigner {
        Cosigner::from_seed(&format!("w{i}.example"), &[i; 32]).expect("w")
    }

    #[test]
    fn unusable_policies_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = Signer::from_seed("log.example/x", &[1; 32]).expect("s");
        let vkey = log.verifier().to_vkey();
        let other = Signer::from_seed("log.example/y", &[2; 32]).expect("s");
        let cases = [
            ("quorum none\n".to_owned(), "lists no witness"),
            (
                format!("witness A {}\nquorum A\n", w(1).verifier().to_vkey()),
                "http:// or https://",
            ),
            (
                format!(
                    "witness A {} ftp://x/\nquorum A\n",
                    w(1).verifier().to_vkey()
                ),
                "http:// or https://",
            ),
            (
                format!(
                    "log {}\nwitness A {} http://127.0.0.1:1\nquorum A\n",
                    other.verifier().to_vkey(),
                    w(1).verifier().to_vkey()
                ),
                "but not this one",
            ),
            ("witness A\n".to_owned(), "policy line 1"),
        ];
        for (text, want) in cases {
            let e = Witnessing::load(&section(dir.path(), &text, WitnessMode::Async), &vkey)
                .err()
                .unwrap_or_else(|| panic!("accepted {text}"));
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
        let ok = format!(
            "log {vkey}\nwitness A {} http://127.0.0.1:1/w\nwitness B {} https://w.example\ngroup G any A B\nquorum G\n",
            w(1).verifier().to_vkey(),
            w(2).verifier().to_vkey()
        );
        let ws = Witnessing::load(&section(dir.path(), &ok, WitnessMode::Sync), &vkey).expect("ok");
        assert_eq!((ws.witness_count(), ws.mode()), (2, WitnessMode::Sync));
    }

    /// The log `log.example/x`, a policy of witnesses w1..w3 with a
    /// 2-of-3 quorum (its text), and sync witnessing by it.
    fn two_of_three(dir: &std::path::Path) -> (Signer, String, Witnessing) {
        let log = Signer::from_seed("log.example/x", &[1; 32]).expect("s");
        let vkey = log.verifier().to_vkey();
        let text = format!(
            "witness A {} http://127.0.0.1:1\nwitness B {} http://127.0.0.1:2\nwitness C {} http://127.0.0.1:3\ngroup G 2 A B C\nquorum G\n",
            w(1).verifier().to_vkey(),
            w(2).verifier().to_vkey(),
            w(3).verifier().to_vkey()
        );
        let ws = Witnessing::load(&section(dir, &text, WitnessMode::Sync), &vkey).expect("ok");
        (log, text, ws)
    }

    /// `log`'s checkpoint of size `n`.
    fn signed(log: &Signer, n: u64) -> Arc<Signed> {
        let cp = Checkpoint::new("log.example/x", n, tlog_core::Hash([n as u8; 32]));
        Arc::new(Signed {
            size: n,
            root: cp.root,
            note: cp.sign(log).expect("sign"),
        })
    }

    /// Witness `i`'s cosignature of `s`.
    fn cosig(i: u8, s: &Signed) -> Signature {
        let body = s
            .note
            .split_once("\n\n")
            .map(|(t, _)| format!("{t}\n"))
            .expect("text");
        w(i).cosign(1_700_000_000, &body)
    }

    #[tokio::test]
    async fn a_checkpoint_is_published_once_the_quorum_cosigned_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let (log, text, ws) = two_of_three(dir.path());
        let five = signed(&log, 5);
        ws.add(0, &five, cosig(1, &five));
        assert!(ws.published().is_none(), "one of three is not a quorum");
        // A sync append waiting for size 5 times out without the quorum.
        assert!(ws.wait_cosigned(5).await.is_none());
        ws.add(2, &five, cosig(3, &five));
        let p = ws.published().expect("two of three");
        assert_eq!(p.size, 5);
        let policy = Policy::parse(text.as_bytes()).expect("policy");
        let sat = policy
            .check(p.note.as_bytes(), Some(&log.verifier()))
            .expect("quorum");
        assert_eq!(sat.cosigners.len(), 2);
        // An older checkpoint reaching its quorum later does not replace it.
        let four = signed(&log, 4);
        ws.add(0, &four, cosig(1, &four));
        ws.add(1, &four, cosig(2, &four));
        assert_eq!(ws.published().expect("p").size, 5);
        // The cosigned note of an exact size is served on request.
        assert!(ws.at(4).expect("kept").note.contains("w2.example"));
        // A waiter for a size already covered returns at once.
        assert_eq!(ws.wait_cosigned(3).await.expect("covered").size, 5);
    }

    #[test]
    fn every_witness_is_asked_for_the_rounds_checkpoint_until_its_quorum() {
        let dir = tempfile::tempdir().expect("tmp");
        let (log, _, ws) = two_of_three(dir.path());
        let (five, six, seven) = (signed(&log, 5), signed(&log, 6), signed(&log, 7));
        assert_eq!(ws.round(&five).size, 5, "the first round takes the newest");
        ws.add(0, &five, cosig(1, &five));
        // The sequencer signed 6 while the round was open: a witness that
        // is free is still asked for 5, so that the quorum meets on it.
        assert_eq!(ws.round(&six).size, 5);
        ws.add(2, &five, cosig(3, &five));
        assert_eq!(ws.published().expect("quorum").size, 5);
        // The quorum closed the round: the next one takes the newest.
        assert_eq!(ws.round(&seven).size, 7);
        assert_eq!(ws.round(&seven).size, 7);
        // A checkpoint older than the round never becomes it.
        assert_eq!(ws.round(&six).size, 7);
    }
}
