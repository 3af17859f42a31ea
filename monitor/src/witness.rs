//! The monitor as a witness (c2sp.org/tlog-witness): `POST
//! <prefix>/add-checkpoint` cosigns checkpoints of the logs it knows, after
//! checking them against the latest checkpoint it cosigned for each, and
//! `GET <prefix>/<origin hash>/checkpoint` serves that checkpoint
//! ("Monitor Retrieval Mechanism").
//!
//! The per-log state is one file per origin (the cosigned checkpoint note,
//! the log's verified signatures and the witness's own), kept in a
//! [`crate::slots`] file and synced before the answer leaves: one data
//! flush per cosignature. The check against the held size and the write
//! happen under one lock, so two requests cannot roll the state back (the
//! race the specification describes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use tlog_core::checkpoint::Checkpoint;
use tlog_core::cosignature::Cosigner;
use tlog_core::note::{Verifier, Verifiers};
use tlog_core::witness::{
    AddCheckpoint, MAX_REQUEST_BYTES, Refusal, SIZE_CONTENT_TYPE, Witnessed, check,
};

use crate::config::WitnessConfig;
use crate::metrics::Metrics;
use crate::slots::{Opened, SlotFile};
use crate::state::StateError;

/// One witnessed log: its keys and what was last cosigned.
struct Held {
    keys: Verifiers,
    latest: Option<(Witnessed, String)>,
    /// The state file, once it is a slot file (`None` before the first
    /// cosignature, or while it still holds an older plain note).
    file: Option<SlotFile>,
}

/// A running witness's state.
pub struct Witness {
    cosigner: Cosigner,
    dir: PathBuf,
    prefix: String,
    logs: Mutex<HashMap<String, Held>>,
    metrics: Arc<Metrics>,
}

/// Why the witness cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The key file cannot be read or parsed.
    #[error("witness key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The configured name is not the key's.
    #[error("witness.name is {configured:?} but the key in key_file is named {key:?}")]
    Name {
        /// From the configuration.
        configured: String,
        /// From the key.
        key: String,
    },
    /// A log's key cannot be read or parsed.
    #[error("witness.log[{index}]: {reason}")]
    Log {
        /// Which log.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A state file is unreadable or not ours.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The file name of an origin's state: the lowercase hex SHA-256 of the
/// origin, as in the monitoring URL.
pub fn origin_hash(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

/// Reads a cosigner key file (`PRIVATE+KEY+name+id+base64(0x04 || seed)`).
pub fn load_key(path: &Path) -> Result<Cosigner, WitnessError> {
    let key = |reason: String| WitnessError::Key {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| key(e.to_string()))?;
    Cosigner::from_skey(text.trim()).map_err(|e| {
        key(format!(
            "{e} (make one with `tlog-monitor witness keygen --name NAME --out FILE`)"
        ))
    })
}

/// Makes a new witness key: writes it to `out` (mode 0600, never over an
/// existing file) and returns the verifier key to give to logs and
/// policies.
pub fn keygen(name: &str, out: &Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let c = Cosigner::from_seed(name, &seed).map_err(|e| {
        anyhow::anyhow!("{e}: a witness name is a schema-less URL such as witness.example.com/w1")
    })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            format!(
                "create {} (an existing key is never overwritten)",
                out.display()
            )
        })?;
    writeln!(f, "{}", c.to_skey()).with_context(|| format!("write {}", out.display()))?;
    f.sync_all()
        .with_context(|| format!("sync {}", out.display()))?;
    Ok(c.verifier().to_vkey())
}

impl Witness {
    /// Loads the key, the logs and every log's state from
    /// `state_dir/witness/`.
    pub fn new(
        cfg: &WitnessConfig,
        state_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Witness, WitnessError> {
        let cosigner = load_key(&cfg.key_file)?;
        if cosigner.name() != cfg.name {
            return Err(WitnessError::Name {
                configured: cfg.name.clone(),
                key: cosigner.name().to_owned(),
            });
        }
        let dir = state_dir.join("witness");
        let mut keys: Vec<(String, Vec<Verifier>)> = Vec::new();
        for (index, l) in cfg.logs.iter().enumerate() {
            let bad = |reason: String| WitnessError::Log { index, reason };
            let text = match (&l.vkey, &l.vkey_file) {
                (Some(k), None) => k.clone(),
                (None, Some(p)) => std::fs::read_to_string(p)
                    .map_err(|e| bad(format!("read {}: {e}", p.display())))?,
                _ => return Err(bad("give exactly one of vkey and vkey_file".into())),
            };
            let v = Verifier::from_vkey(text.trim()).map_err(|e| bad(e.to_string()))?;
            let origin = l.origin.clone().unwrap_or_else(|| v.name().to_owned());
            // Several keys may sign one origin (key rotation).
            match keys.iter_mut().find(|(o, _)| *o == origin) {
                Some((_, all)) => all.push(v),
                None => keys.push((origin, vec![v])),
            }
        }
        let mut logs: HashMap<String, Held> = HashMap::new();
        for (origin, all) in keys {
            let keys = Verifiers::new(all);
            let (latest, file) = load_state(&dir, &origin, &keys)?;
            logs.insert(origin, Held { keys, latest, file });
        }
        Ok(Witness {
            cosigner,
            dir,
            prefix: cfg.prefix.trim_end_matches('/').to_owned(),
            logs: Mutex::new(logs),
            metrics,
        })
    }

    /// The witness's verifier key.
    pub fn vkey(&self) -> String {
        self.cosigner.verifier().to_vkey()
    }

    /// Handles one `add-checkpoint` body: the answer's status, content
    /// type and body. Blocking (it syncs a file); call it off the runtime.
    pub fn add_checkpoint(&self, body: &[u8]) -> (u16, &'static str, String) {
        let (status, ct, text) = self.add_checkpoint_inner(body);
        self.metrics.witness(status);
        (status, ct, text)
    }

    fn add_checkpoint_inner(&self, body: &[u8]) -> (u16, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        let req = match AddCheckpoint::parse(body) {
            Ok(r) => r,
            Err(e) => return (400, TEXT, format!("{e}\n")),
        };
        let origin = tlog_core::witness::origin_of(&req.checkpoint).to_owned();
        // Check and persist under one lock: no other request can change
        // this log's state in between.
        let mut logs = match self.logs.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let held = logs.get_mut(&origin);
        let (keys, latest) = match &held {
            Some(h) => (Some(&h.keys), h.latest.as_ref().map(|(w, _)| *w)),
            None => (None, None),
        };
        let accepted = match check(&req, keys, latest) {
            Ok(a) => a,
            Err(Refusal::Conflict { size }) => {
                tracing::info!(%origin, old = req.old_size, held = size, "add-checkpoint: old size does not match");
                return (409, SIZE_CONTENT_TYPE, format!("{size}\n"));
            }
            Err(r) => {
                // The log signed it but it is not consistent with what was
                // cosigned: evidence of misbehaviour, kept in the log.
                if r.status() == 422 {
                    tracing::warn!(%origin, refusal = %r, checkpoint = %req.checkpoint, "refused an inconsistent checkpoint");
                } else {
                    tracing::info!(%origin, refusal = %r, "add-checkpoint refused");
                }
                return (r.status(), TEXT, format!("{r}\n"));
            }
        };
        let Some(held) = held else {
            return (404, TEXT, format!("unknown log origin {origin:?}\n"));
        };
        // "The timestamp MUST NOT be zero".
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs().max(1));
        let cosig = self.cosigner.cosign(now, &accepted.text);
        let mut note = format!("{}\n", accepted.text);
        for s in accepted.log_signatures.iter().chain([&cosig]) {
            note.push_str(&s.to_line());
            note.push('\n');
        }
        let written = match &mut held.file {
            Some(f) => f.write(note.as_bytes()),
            None => {
                let path = self.dir.join(origin_hash(&origin));
                SlotFile::create(&path, note.as_bytes(), 0).map(|f| held.file = Some(f))
            }
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot persist the witness state; not cosigning");
            return (503, TEXT, "the witness cannot persist its state\n".into());
        }
        let Checkpoint { size, root, .. } = accepted.checkpoint;
        held.latest = Some((Witnessed { size, root }, note));
        tracing::info!(%origin, size, "cosigned");
        (200, TEXT, format!("{}\n", cosig.to_line()))
    }

    /// The latest cosigned checkpoint for the origin with this hash.
    pub fn checkpoint(&self, origin_hex: &str) -> Option<String> {
        let logs = match self.logs.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        logs.iter()
            .find(|(o, _)| origin_hash(o) == origin_hex)
            .and_then(|(_, h)| h.latest.as_ref().map(|(_, n)| n.clone()))
    }
}

/// Reads what was cosigned for `origin`, checking it is a checkpoint of
/// that log (signed by one of `keys`), and the slot file it is kept in.
#[allow(clippy::type_complexity)]
fn load_state(
    dir: &Path,
    origin: &str,
    keys: &Verifiers,
) -> Result<(Option<(Witnessed, String)>, Option<SlotFile>), StateError> {
    let path = dir.join(origin_hash(origin));
    let (bytes, file) = match SlotFile::open(&path)? {
        Opened::Absent => return Ok((None, None)),
        Opened::Plain(b) => (b, None),
        Opened::Slots(f, b) => (b, Some(f)),
    };
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.clone(),
        reason,
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| corrupt(format!("not a checkpoint of {origin}: not UTF-8")))?;
    match tlog_core::checkpoint::open(text.as_bytes(), keys, origin) {
        Ok(cp) => Ok((
            Some((
                Witnessed {
                    size: cp.checkpoint.size,
                    root: cp.checkpoint.root,
                },
                text,
            )),
            file,
        )),
        Err(e) => Err(corrupt(format!("not a checkpoint of {origin}: {e}"))),
    }
}

fn reply(
    status: u16,
    content_type: &str,
    body: String,
) -> Result<Response<Full<Bytes>>, hyper::http::Error> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
}

/// Serves the witness on `listener` until `shutdown` resolves. Connections
/// are kept alive (the specification asks clients to reuse them) and are
/// closed at shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "witness accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let witness = witness.clone();
        while conns.try_join_next().is_some() {}
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let witness = witness.clone();
                async move { handle(req, witness).await }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "witness connection ended");
            }
        });
    }
    conns.abort_all();
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    witness: Arc<Witness>,
) -> Result<Response<Full<Bytes>>, hyper::http::Error> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(witness.prefix.as_str()) else {
        return reply(404, TEXT, "not found\n".into());
    };
    if rest == "/add-checkpoint" {
        if req.method() != Method::POST {
            return Response::builder()
                .status(StatusCode::METHOD_NOT_ALLOWED)
                .header("allow", "POST")
                .body(Full::new(Bytes::from_static(
                    b"add-checkpoint takes POST\n",
                )));
        }
        let body = match http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return reply(
                    413,
                    TEXT,
                    format!("the body is over {MAX_REQUEST_BYTES} bytes\n"),
                );
            }
        };
        let w = witness.clone();
        return match tokio::task::spawn_blocking(move || w.add_checkpoint(&body)).await {
            Ok((status, ct, text)) => reply(status, ct, text),
            Err(_) => reply(500, TEXT, "internal error\n".into()),
        };
    }
    if let Some(hash) = rest
        .strip_prefix('/')
        .and_then(|r| r.strip_suffix("/checkpoint"))
        && hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Response::builder()
                .status(StatusCode::METHOD_NOT_ALLOWED)
                .header("allow", "GET, HEAD")
                .body(Full::new(Bytes::from_static(b"use GET\n")));
        }
        return match witness.checkpoint(hash) {
            Some(note) => reply(200, TEXT, note),
            None => reply(
                404,
                TEXT,
                "this witness has cosigned no checkpoint of that log\n".into(),
            ),
        };
    }
    reply(404, TEXT, "not found\n".into())
}
