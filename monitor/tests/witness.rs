//! The monitor as a witness, over real HTTP: every answer of
//! c2sp.org/tlog-witness "add-checkpoint", the state kept across restarts,
//! no rollback under concurrent requests, the monitoring endpoint, and the
//! answers read by an independent note implementation (`signed_note`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tlog_core::checkpoint::Checkpoint;
use tlog_core::hash::Hash;
use tlog_core::merkle::reference;
use tlog_core::note::Signer;
use tlog_core::witness::AddCheckpoint;
use tlog_e2e::http_send;
use tlog_monitor::config::{WitnessConfig, WitnessedLog};
use tlog_monitor::metrics::Metrics;
use tlog_monitor::witness::{Witness, keygen, origin_hash, serve};

const ORIGIN: &str = "log.example/witnessed";

fn log() -> Signer {
    Signer::from_seed(ORIGIN, &[31; 32]).expect("signer")
}

fn leaves(n: usize, fork: bool) -> Vec<Hash> {
    (0..n)
        .map(|i| {
            tlog_core::leaf_hash(format!("{i}{}", if fork && i >= 3 { "x" } else { "" }).as_bytes())
        })
        .collect()
}

fn body(old: usize, new: usize, fork: bool) -> Vec<u8> {
    let all = leaves(new, fork);
    let proof = if old == 0 || old == new {
        Vec::new()
    } else {
        reference::consistency_proof(old, &all).expect("proof")
    };
    let cp = Checkpoint::new(ORIGIN, new as u64, reference::root(&all));
    AddCheckpoint {
        old_size: old as u64,
        proof,
        checkpoint: cp.sign(&log()).expect("sign"),
    }
    .to_bytes()
}

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    vkey: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The witness's configuration: witness.example/w1 of [`log`], its key
/// at `key`.
fn config(key: PathBuf) -> WitnessConfig {
    WitnessConfig {
        name: "witness.example/w1".into(),
        key_file: key,
        listen: "127.0.0.1:0".into(),
        prefix: "/w".into(),
        logs: vec![WitnessedLog {
            vkey: Some(log().verifier().to_vkey()),
            vkey_file: None,
            origin: None,
        }],
    }
}

fn start(dir: &Path) -> Running {
    let key = dir.join("w.key");
    if !key.exists() {
        keygen("witness.example/w1", &key).expect("keygen");
    }
    let cfg = config(key);
    let w = Arc::new(Witness::new(&cfg, dir, Arc::new(Metrics::default())).expect("witness"));
    let vkey = w.vkey();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (atx, arx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            atx.send(l.local_addr().expect("addr")).expect("send");
            serve(l, w, async move {
                let _ = rx.await;
            })
            .await;
        });
    });
    Running {
        addr: arx.recv().expect("addr"),
        stop: Some(tx),
        thread: Some(thread),
        vkey,
    }
}

fn add(r: &Running, b: &[u8]) -> (u16, String, String) {
    let (status, h, body) = http_send(r.addr, "POST", "/w/add-checkpoint", &[], Some(b));
    (
        status,
        h.get("content-type").cloned().unwrap_or_default(),
        String::from_utf8(body).expect("utf-8"),
    )
}

/// A cosignature/v1 verifier written from c2sp.org/tlog-cosignature for
/// the `signed_note` crate, so the cosigned note is parsed and its key ID
/// matched by an implementation that is not ours.
struct OracleCosigVerifier {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl signed_note::Verifier for OracleCosigVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 72 {
            return false;
        }
        let ts = u64::from_be_bytes(sig[..8].try_into().expect("8"));
        let mut m = format!("cosignature/v1\ntime {ts}\n").into_bytes();
        m.extend_from_slice(msg);
        let Ok(s) = ed25519_dalek::Signature::from_slice(&sig[8..]) else {
            return false;
        };
        self.key.verify_strict(&m, &s).is_ok()
    }
}

fn oracle(vkey: &str) -> OracleCosigVerifier {
    use base64::Engine as _;
    // name+id+key: the base64 key may itself hold '+'.
    let parts: Vec<&str> = vkey.splitn(3, '+').collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(parts[2])
        .expect("b64");
    assert_eq!(raw[0], 0x04, "a cosignature/v1 vkey has type 0x04");
    OracleCosigVerifier {
        name: parts[0].to_owned(),
        id: signed_note::key_id(parts[0], &raw),
        key: ed25519_dalek::VerifyingKey::from_bytes(&raw[1..].try_into().expect("32"))
            .expect("key"),
    }
}

#[test]
fn every_answer_of_add_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(dir.path());

    // 409 on first contact with a guessed size: the witness holds 0.
    let (s, ct, b) = add(&w, &body(4, 6, false));
    assert_eq!(
        (s, ct.as_str(), b.as_str()),
        (409, "text/x.tlog.size", "0\n")
    );

    // 200: the first checkpoint, then growth with a consistency proof.
    let (s, _, b) = add(&w, &body(0, 4, false));
    assert_eq!(s, 200, "{b}");
    assert!(
        b.starts_with("\u{2014} witness.example/w1 ") && b.ends_with('\n'),
        "{b}"
    );
    let (s, _, b) = add(&w, &body(4, 9, false));
    assert_eq!(s, 200, "{b}");

    // The answer verifies under an independent implementation.
    let cp = Checkpoint::new(ORIGIN, 9, reference::root(&leaves(9, false)));
    let note = format!("{}\n{b}", cp.to_text());
    let n = signed_note::Note::from_bytes(note.as_bytes()).expect("oracle parses");
    let (verified, _) = n
        .verify(&signed_note::VerifierList::new(vec![Box::new(oracle(
            &w.vkey,
        ))]))
        .expect("oracle verifies the cosignature");
    assert_eq!(verified.len(), 1);

    // 409 with the held size for a stale old size.
    let (s, ct, b) = add(&w, &body(4, 12, false));
    assert_eq!(
        (s, ct.as_str(), b.as_str()),
        (409, "text/x.tlog.size", "9\n")
    );
    // 400: malformed, and old above the checkpoint.
    assert_eq!(add(&w, b"old 09\n\n").0, 400);
    let mut bad = body(9, 9, false);
    bad.splice(0..5, b"old 10".iter().copied());
    assert_eq!(add(&w, &bad).0, 400);
    // 403: a signature by another key of the same name, or a broken one.
    let other = Signer::from_seed(ORIGIN, &[32; 32]).expect("signer");
    let forged = AddCheckpoint {
        old_size: 9,
        proof: vec![],
        checkpoint: cp.sign(&other).expect("sign"),
    };
    assert_eq!(add(&w, &forged.to_bytes()).0, 403);
    // 404: a log the witness does not know.
    let stranger = Signer::from_seed("other.example/log", &[33; 32]).expect("signer");
    let unknown = AddCheckpoint {
        old_size: 0,
        proof: vec![],
        checkpoint: Checkpoint::new("other.example/log", 1, Hash([1; 32]))
            .sign(&stranger)
            .expect("sign"),
    };
    assert_eq!(add(&w, &unknown.to_bytes()).0, 404);
    // 422: a fork (same log key, a different history from index 3).
    let (s, _, _) = add(&w, &body(9, 12, true));
    assert_eq!(s, 422);
    // 422: the same size with another root.
    let (s, _, _) = add(&w, &body(9, 9, true));
    assert_eq!(s, 422);
    // Wrong method and unknown paths.
    assert_eq!(
        http_send(w.addr, "GET", "/w/add-checkpoint", &[], None).0,
        405
    );
    assert_eq!(
        http_send(w.addr, "POST", "/add-checkpoint", &[], Some(b"x")).0,
        404
    );

    // The monitoring endpoint serves the cosigned checkpoint, with the
    // log's signature and the witness's.
    let path = format!("/w/{}/checkpoint", origin_hash(ORIGIN));
    let (s, _, b) = http_send(w.addr, "GET", &path, &[], None);
    assert_eq!(s, 200);
    let text = String::from_utf8(b).expect("utf-8");
    assert!(text.starts_with(&cp.to_text()), "{text}");
    let opened = tlog_core::checkpoint::open(
        text.as_bytes(),
        &tlog_core::note::Verifiers::new([
            log().verifier(),
            tlog_core::note::Verifier::from_vkey(&w.vkey).expect("vkey"),
        ]),
        ORIGIN,
    )
    .expect("cosigned checkpoint");
    assert_eq!(opened.note.verified.len(), 2);
    let unknown = format!("/w/{}/checkpoint", origin_hash("other.example/log"));
    assert_eq!(http_send(w.addr, "GET", &unknown, &[], None).0, 404);
}

#[test]
fn the_state_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let w = start(dir.path());
        assert_eq!(add(&w, &body(0, 5, false)).0, 200);
        assert_eq!(add(&w, &body(5, 7, false)).0, 200);
    }
    let w = start(dir.path());
    // It remembers 7: an old size of 5 conflicts, and a fork is refused.
    let (s, _, b) = add(&w, &body(5, 8, false));
    assert_eq!((s, b.as_str()), (409, "7\n"));
    assert_eq!(add(&w, &body(7, 8, true)).0, 422);
    assert_eq!(add(&w, &body(7, 8, false)).0, 200);
}

#[test]
fn a_state_written_before_slot_files_is_read_and_replaced() {
    let dir = tempfile::tempdir().expect("tmp");
    // The earlier format: the cosigned note is the whole file.
    let state = dir.path().join("witness").join(origin_hash(ORIGIN));
    std::fs::create_dir_all(state.parent().expect("parent")).expect("mkdir");
    let cp = Checkpoint::new(ORIGIN, 5, reference::root(&leaves(5, false)));
    std::fs::write(&state, cp.sign(&log()).expect("sign")).expect("write");
    {
        let w = start(dir.path());
        let (s, _, b) = add(&w, &body(0, 6, false));
        assert_eq!((s, b.as_str()), (409, "5\n"), "the plain note was not read");
        assert_eq!(add(&w, &body(5, 6, true)).0, 422);
        assert_eq!(add(&w, &body(5, 6, false)).0, 200);
    }
    let bytes = std::fs::read(&state).expect("read");
    assert!(
        bytes.starts_with(tlog_monitor::slots::MAGIC),
        "the first cosignature did not make a slot file"
    );
    let w = start(dir.path());
    let (s, _, b) = add(&w, &body(5, 7, false));
    assert_eq!((s, b.as_str()), (409, "6\n"));
    drop(w);
    // A state file that is neither a note of this log nor a whole slot
    // record stops the witness from starting, rather than forgetting what
    // it cosigned.
    let mut broken = bytes.clone();
    for b in &mut broken[4096..] {
        *b ^= 0x5a;
    }
    std::fs::write(&state, &broken).expect("write");
    let cfg = config(dir.path().join("w.key"));
    let e = Witness::new(&cfg, dir.path(), Arc::new(Metrics::default()))
        .err()
        .expect("a broken state file must be refused");
    assert!(e.to_string().contains("checksum"), "{e}");
    // So does a note of this origin signed by a key no longer configured.
    let other = Signer::from_seed(ORIGIN, &[32; 32]).expect("signer");
    std::fs::write(&state, cp.sign(&other).expect("sign")).expect("write");
    assert!(Witness::new(&cfg, dir.path(), Arc::new(Metrics::default())).is_err());
}

#[test]
fn concurrent_requests_cannot_roll_the_state_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(dir.path());
    assert_eq!(add(&w, &body(0, 10, false)).0, 200);
    // Many requests from the same old size race: exactly one wins, the
    // others see 409 with the winner's size; the state never goes back.
    let sizes: Vec<usize> = (11..27).collect();
    let results: Vec<(usize, u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = sizes
            .iter()
            .map(|&n| {
                let w = &w;
                s.spawn(move || {
                    let (st, _, b) = add(w, &body(10, n, false));
                    (n, st, b)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).collect()
    });
    let winners: Vec<_> = results.iter().filter(|r| r.1 == 200).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let won = winners[0].0;
    for (_, st, b) in results.iter().filter(|r| r.1 != 200) {
        assert_eq!((*st, b.as_str()), (409, format!("{won}\n").as_str()));
    }
    let (s, _, b) = add(&w, &body(10, 30, false));
    assert_eq!((s, b), (409, format!("{won}\n")));
}

#[test]
fn keygen_never_overwrites_and_makes_a_cosigner_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("k");
    let vkey = keygen("witness.example/k", &out).expect("keygen");
    let v = tlog_core::note::Verifier::from_vkey(&vkey).expect("vkey");
    assert_eq!(v.alg(), tlog_core::note::ALG_COSIGNATURE_V1);
    let e = keygen("witness.example/k", &out).expect_err("exists");
    assert!(format!("{e:#}").contains("never overwritten"), "{e:#}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&out).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(keygen("bad name", &dir.path().join("k2")).is_err());
}
