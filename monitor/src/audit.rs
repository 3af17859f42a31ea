//! Auditing one log: every new checkpoint is verified (signature), proven
//! consistent with the trusted one (RFC 9162 §2.1.4.2), and then checked in
//! full: the new entries are downloaded and hashed into the tree, and the
//! root they produce must be the signed root. Only then are the rules run on
//! them and the checkpoint trusted. Other vantage points and gossiped
//! checkpoints are compared with that view.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use tlog_client::trust::{self, Conflict, Head, Step};
use tlog_client::{Client, ClientError, ConnectOptions};
use tlog_core::Hash;
use tlog_core::checkpoint::{self, SignedCheckpoint};
use tlog_core::empty_root;
use tlog_core::leaf::decode_any;
use tlog_core::merkle::verify::verify_inclusion;
use tlog_core::note::{Verifier, Verifiers};

use crate::alert::{EntryRef, Finding, Rule, Severity};
use crate::config::{Config, LogConfig};
use crate::metrics::Metrics;
use crate::rules::Rules;
use crate::state::{LogDir, LogState, StateError};

/// Entries whose hashes are kept to find the one that breaks the root;
/// beyond this the alert names the range. It bounds what a round holds
/// beside the tree (32 bytes an entry: 8 MiB), so a monitor that fell
/// behind does not keep a round's worth of hashes in its heap afterwards;
/// locating an entry in a longer range would also take one proof request
/// per entry.
const LOCATE_LIMIT: u64 = 1 << 18;

/// Gossiped checkpoints waiting to be compared, per log.
pub type GossipQueue = Arc<Mutex<VecDeque<(SignedCheckpoint, String)>>>;

/// Why a round could not run at all (state I/O; everything about the log
/// itself is a finding instead).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The state could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

struct Endpoint {
    url: String,
    client: Option<Client>,
}

/// The auditor of one log.
pub struct Auditor {
    /// The configured name.
    pub name: String,
    origin: String,
    vkey: String,
    verifiers: Verifiers,
    endpoints: Vec<Endpoint>,
    opts: ConnectOptions,
    dir: LogDir,
    state: LogState,
    rules: Arc<Rules>,
    metrics: Arc<Metrics>,
    max_age: Option<Duration>,
    unreachable_after: u32,
    failures: u32,
    outage_start: Option<u64>,
    /// The bearer token's file, re-read when it changes, before the token
    /// it holds expires, and on SIGHUP.
    token_file: Option<std::path::PathBuf>,
    /// When the token file was last read (its modification time).
    token_mtime: Option<std::time::SystemTime>,
    /// Why every endpoint refused the credentials in the last round.
    refused_credentials: Option<String>,
    /// The witness policy checkpoints must satisfy before they are
    /// trusted (c2sp.org/tlog-policy), if configured.
    policy: Option<tlog_core::policy::Policy>,
    /// Why the last checkpoint was not trusted: not witnessed enough.
    unwitnessed: Option<String>,
    gossip: GossipQueue,
    save_interval: Duration,
    last_save: std::time::Instant,
    dirty: bool,
}

/// The `exp` claim of a JWT, read without verifying it (the server
/// verifies; the monitor only wants to know when to look for a new one).
fn token_expiry(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How a tiles endpoint is named among a log's endpoints.
pub const TILES_SCHEME: &str = "tiles+";

/// Connects to an endpoint: the gRPC API, or for `tiles+URL` the log's
/// C2SP tiles under URL ([`tlog_client::tiles`]).
pub async fn connect(url: &str, vkey: &str, opts: &ConnectOptions) -> Result<Client, ClientError> {
    match url.strip_prefix(TILES_SCHEME) {
        Some(tiles) => Client::connect_tiles(tiles, vkey, opts).await,
        None => Client::connect_with(url, vkey, opts).await,
    }
}

impl Auditor {
    /// Sets up the auditor of `log` and loads its state.
    pub fn new(
        log: &LogConfig,
        cfg: &Config,
        rules: Arc<Rules>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Auditor> {
        use anyhow::Context as _;
        let vkey = match (&log.vkey, &log.vkey_file) {
            (Some(k), _) => k.trim().to_owned(),
            (None, Some(p)) => std::fs::read_to_string(p)
                .with_context(|| format!("log {}: read vkey_file {}", log.name, p.display()))?
                .trim()
                .to_owned(),
            (None, None) => anyhow::bail!("log {}: give vkey or vkey_file", log.name),
        };
        let verifier = Verifier::from_vkey(&vkey)
            .map_err(|e| anyhow::anyhow!("log {}: verifier key: {e}", log.name))?;
        let origin = verifier.name().to_owned();
        if let Some(o) = &log.origin
            && *o != origin
        {
            anyhow::bail!(
                "log {}: origin {o:?} differs from the verifier key's name {origin:?}",
                log.name
            );
        }
        let opts = ConnectOptions {
            ca_pem: log
                .ca_file
                .as_ref()
                .map(|p| std::fs::read(p).with_context(|| format!("read {}", p.display())))
                .transpose()?,
            token: log
                .token_file
                .as_ref()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map(|t| t.trim().to_owned())
                        .with_context(|| format!("read {}", p.display()))
                })
                .transpose()?,
            timeout: Some(log.timeout),
            retries: Some(0),
            ..ConnectOptions::default()
        };
        let policy = log
            .policy_file
            .as_ref()
            .map(|p| {
                let bytes = std::fs::read(p).with_context(|| {
                    format!("log {}: read policy_file {}", log.name, p.display())
                })?;
                tlog_core::policy::Policy::parse(&bytes).map_err(|e| {
                    anyhow::anyhow!("log {}: policy_file {}: {e}", log.name, p.display())
                })
            })
            .transpose()?;
        let dir = LogDir::new(&cfg.state_dir, &log.name);
        let mut state = dir.load()?;
        if state.checkpoint.is_empty() {
            state.last_growth = now_secs();
        } else {
            // The saved checkpoint must still verify with the configured key.
            checkpoint::open(
                state.checkpoint.as_bytes(),
                &Verifiers::new([verifier.clone()]),
                &origin,
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "log {}: the saved checkpoint in {} does not verify with the configured key ({e}); \
                     if the key changed on purpose, move the state away",
                    log.name,
                    dir.state_path().display()
                )
            })?;
        }
        metrics.log(&log.name, |f| {
            f.verified_size = state.size;
            f.seen_size = f.seen_size.max(state.size);
        });
        Ok(Auditor {
            name: log.name.clone(),
            origin,
            vkey,
            verifiers: Verifiers::new([verifier]),
            endpoints: log
                .endpoints
                .iter()
                .cloned()
                .chain(log.tiles.iter().map(|t| format!("{TILES_SCHEME}{t}")))
                .map(|url| Endpoint { url, client: None })
                .collect(),
            opts,
            dir,
            state,
            rules,
            metrics,
            max_age: log.max_checkpoint_age.or(cfg.max_checkpoint_age),
            unreachable_after: cfg.unreachable_after.max(1),
            failures: 0,
            outage_start: None,
            token_mtime: log
                .token_file
                .as_ref()
                .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()),
            token_file: log.token_file.clone(),
            refused_credentials: None,
            policy,
            unwitnessed: None,
            gossip: Arc::new(Mutex::new(VecDeque::new())),
            save_interval: cfg.save_interval,
            last_save: std::time::Instant::now(),
            dirty: false,
        })
    }

    /// Saves the state if it changed since the last save.
    pub fn flush(&mut self) -> Result<(), AuditError> {
        if self.dirty {
            self.dir.save(&self.state)?;
            self.dirty = false;
            self.last_save = std::time::Instant::now();
        }
        Ok(())
    }

    /// Goes back to the saved state: a consistent, older audited point
    /// (used when a round fails half-way, so that nothing half-audited is
    /// kept; the next round re-audits from there).
    fn revert(&mut self) -> Result<(), AuditError> {
        let last_growth = self.state.last_growth;
        self.state = self.dir.load()?;
        self.state.last_growth = self.state.last_growth.max(last_growth);
        self.dirty = false;
        Ok(())
    }

    /// The queue gossiped checkpoints of this log go to.
    pub fn gossip_queue(&self) -> GossipQueue {
        self.gossip.clone()
    }

    /// The log's verifiers and origin, to route gossip.
    pub fn verifiers(&self) -> (&Verifiers, &str) {
        (&self.verifiers, &self.origin)
    }

    /// The state (for tests and `check`).
    pub fn state(&self) -> &LogState {
        &self.state
    }

    /// The first endpoint's address (for the checkpoint stream).
    pub fn primary_url(&self) -> &str {
        self.endpoints.first().map(|e| e.url.as_str()).unwrap_or("")
    }

    /// Connection options for a client of this log.
    pub fn connect_options(&self) -> (String, ConnectOptions) {
        (self.vkey.clone(), self.opts.clone())
    }

    /// Re-reads the token file if it changed, if the token it holds
    /// expires within a minute (a rotated token may already be there), or
    /// if `force` (SIGHUP). A new token drops the open clients, so the
    /// next call uses it.
    pub fn refresh_credentials(&mut self, force: bool) {
        let Some(path) = self.token_file.clone() else {
            return;
        };
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let expiring = self
            .opts
            .token
            .as_deref()
            .and_then(token_expiry)
            .is_some_and(|exp| exp <= now_secs() + 60);
        if !(force || expiring || mtime != self.token_mtime) {
            return;
        }
        match std::fs::read_to_string(&path) {
            Ok(t) => {
                let t = t.trim().to_owned();
                self.token_mtime = mtime;
                if self.opts.token.as_deref() != Some(t.as_str()) {
                    tracing::info!(log = %self.name, file = %path.display(), "token file re-read: new token");
                    self.opts.token = Some(t);
                    for e in &mut self.endpoints {
                        e.client = None;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(log = %self.name, file = %path.display(), error = %e, "cannot re-read the token file; keeping the token in use");
            }
        }
    }

    async fn client(&mut self, i: usize) -> Result<&mut Client, ClientError> {
        let ep = &mut self.endpoints[i];
        if ep.client.is_none() {
            ep.client = Some(connect(&ep.url, &self.vkey, &self.opts).await?);
        }
        ep.client
            .as_mut()
            .ok_or_else(|| ClientError::Usage("no client".into()))
    }

    fn trusted_root(&self) -> Hash {
        self.state
            .tree()
            .map(|t| t.root())
            .unwrap_or_else(empty_root)
    }

    /// The audited view as a tree head.
    fn trusted_head(&self) -> Head {
        Head {
            size: self.state.size,
            root: self.trusted_root(),
        }
    }

    fn evidence(&self, rule: Rule, extra: serde_json::Value) -> serde_json::Value {
        let mut v = json!({
            "rule": rule.name(),
            "log": self.name,
            "origin": self.origin,
            "verifier_key": self.vkey,
            "found_at": tlog_core::json::format_time(tlog_core::event::Timestamp::now()),
        });
        if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    }

    /// Fetches and verifies an endpoint's latest checkpoint. A checkpoint
    /// whose signature fails is a finding; an unreachable endpoint is `None`.
    async fn fetch(&mut self, i: usize, findings: &mut Vec<Finding>) -> Option<SignedCheckpoint> {
        let url = self.endpoints[i].url.clone();
        let note = match self.client(i).await {
            Ok(c) => c.fetch_checkpoint_unverified().await,
            Err(e) => Err(e),
        };
        let note = match note {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(log = %self.name, endpoint = %url, error = %e, "cannot get a checkpoint");
                if let ClientError::Refused {
                    code: tonic::Code::Unauthenticated | tonic::Code::PermissionDenied,
                    message,
                } = &e
                {
                    self.refused_credentials = Some(format!("{url}: {message}"));
                }
                if matches!(e, ClientError::Transport(_) | ClientError::Connect { .. }) {
                    self.endpoints[i].client = None;
                }
                return None;
            }
        };
        match checkpoint::open(note.note.as_bytes(), &self.verifiers, &self.origin) {
            Ok(cp)
                if cp.checkpoint.size == note.size
                    && cp.checkpoint.root.as_bytes()[..] == note.root_hash[..] =>
            {
                // With a witness policy, a checkpoint the witnesses have
                // not cosigned enough is not trusted (not audited from)
                // yet: not a finding, and not an outage.
                if let Some(p) = &self.policy
                    && let Err(e) = p.check(note.note.as_bytes(), self.verifiers.iter().next())
                {
                    tracing::info!(log = %self.name, endpoint = %url, size = note.size, reason = %e, "checkpoint not witnessed by the policy's quorum; not trusted yet");
                    self.unwitnessed = Some(e.to_string());
                    return None;
                }
                Some(cp)
            }
            result => {
                let why = match result {
                    Err(e) => e.to_string(),
                    Ok(_) => "the size or root beside the note differ from the signed note".into(),
                };
                findings.push(Finding::new(Rule::BadSignature, Severity::Critical, format!(
                        "{url} served a checkpoint for {} that does not verify with the log's key: {why}",
                        self.origin
                    ), vec![], hex::encode(tlog_core::leaf_hash(note.note.as_bytes()).as_bytes())).with_evidence(self.evidence(
                        Rule::BadSignature,
                        json!({"endpoint": url, "served_checkpoint": note.note, "error": why}),
                    )));
                None
            }
        }
    }

    /// One audit round: the newest checkpoint in full, then the vantage
    /// points and gossip. Returns every finding (the caller sends each
    /// once).
    pub async fn round(&mut self) -> Result<Vec<Finding>, AuditError> {
        let now = now_secs();
        let mut findings = Vec::new();
        let mut primary = None;
        self.refresh_credentials(false);
        self.refused_credentials = None;
        self.unwitnessed = None;
        for i in 0..self.endpoints.len() {
            if let Some(cp) = self.fetch(i, &mut findings).await {
                primary = Some((i, cp));
                break;
            }
        }
        let Some((p, cp)) = primary else {
            // The log answered, and refused the credentials: not an
            // outage, and not for the log's operator to fix.
            if let Some(why) = self.refused_credentials.take() {
                let expiry = self.opts.token.as_deref().and_then(token_expiry);
                let expired = match expiry {
                    Some(exp) if exp <= now => format!("the token expired at {exp} (now {now}); "),
                    _ => String::new(),
                };
                let file = self
                    .token_file
                    .as_ref()
                    .map(|p| {
                        format!(
                            " (token_file {}, re-read on change and on SIGHUP)",
                            p.display()
                        )
                    })
                    .unwrap_or_default();
                findings.push(Finding::new(
                    Rule::CredentialsExpired,
                    Severity::High,
                    format!(
                        "{} refuses the monitor's credentials: {expired}{why}; auditing is paused \
                         until valid credentials are in place{file}",
                        self.origin
                    ),
                    vec![],
                    format!("token {}", expiry.unwrap_or(0)),
                ));
                self.metrics.log(&self.name, |f| f.failed_rounds += 1);
                return Ok(findings);
            }
            if self.unwitnessed.take().is_some() {
                // The log answered with its own checkpoint; the witnesses
                // have not caught up. Try again next round.
                self.stale(now, &mut findings);
                return Ok(findings);
            }
            self.failures += 1;
            self.metrics.log(&self.name, |f| f.failed_rounds += 1);
            if self.failures >= self.unreachable_after {
                let start = *self.outage_start.get_or_insert(now);
                findings.push(Finding::new(Rule::Unreachable, Severity::High, format!(
                        "no endpoint of {} ({}) has served a valid checkpoint for {} polls in a row",
                        self.origin,
                        self.endpoints.iter().map(|e| e.url.as_str()).collect::<Vec<_>>().join(", "),
                        self.failures
                    ), vec![], format!("since {start}")));
            }
            self.stale(now, &mut findings);
            return Ok(findings);
        };
        self.failures = 0;
        self.outage_start = None;
        self.metrics.log(&self.name, |f| {
            f.seen_size = f.seen_size.max(cp.checkpoint.size)
        });
        self.advance(p, &cp, &mut findings).await?;
        for j in 0..self.endpoints.len() {
            if j == p {
                continue;
            }
            if let Some(other) = self.fetch(j, &mut findings).await {
                let source = format!("vantage point {}", self.endpoints[j].url);
                self.compare(p, j, &other, &source, &mut findings).await;
            }
        }
        let pending: Vec<_> = self
            .gossip
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default();
        for (g, source) in pending {
            if !self.compare(p, p, &g, &source, &mut findings).await {
                // The log has not shown us that size yet: try again later.
                if let Ok(mut q) = self.gossip.lock() {
                    q.push_back((g, source));
                }
            }
        }
        self.metrics.log(&self.name, |f| f.last_success = now);
        self.stale(now, &mut findings);
        Ok(findings)
    }

    fn stale(&self, now: u64, findings: &mut Vec<Finding>) {
        if let Some(age) = self.max_age
            && now.saturating_sub(self.state.last_growth) > age.as_secs()
        {
            findings.push(Finding::new(
                Rule::Stale,
                Severity::Medium,
                format!(
                    "{} has not grown past size {} for {} (maximum checkpoint age {})",
                    self.origin,
                    self.state.size,
                    humantime::format_duration(Duration::from_secs(
                        now.saturating_sub(self.state.last_growth)
                    )),
                    humantime::format_duration(age)
                ),
                vec![],
                format!("size {} since {}", self.state.size, self.state.last_growth),
            ));
        }
    }

    fn conflict(
        &self,
        rule: Rule,
        message: String,
        seen: &SignedCheckpoint,
        source: &str,
        proof: Option<&[Hash]>,
    ) -> Finding {
        let t = (self.state.size, self.trusted_root());
        let key = format!(
            "{}:{}/{}:{}",
            t.0, t.1, seen.checkpoint.size, seen.checkpoint.root
        );
        let evidence = self.evidence(
            rule,
            json!({
                "trusted_checkpoint": self.state.checkpoint,
                "conflicting_checkpoint": seen.raw,
                "conflicting_source": source,
                "consistency_proof": proof.map(|p| p.iter().map(Hash::to_hex).collect::<Vec<_>>()),
            }),
        );
        Finding::new(rule, Severity::Critical, message, vec![], key).with_evidence(evidence)
    }

    /// Moves the trusted checkpoint to `cp` after proving and auditing.
    async fn advance(
        &mut self,
        p: usize,
        cp: &SignedCheckpoint,
        findings: &mut Vec<Finding>,
    ) -> Result<(), AuditError> {
        let (size, root) = (cp.checkpoint.size, cp.checkpoint.root);
        let trusted = self.trusted_head();
        let (t_size, t_root) = (trusted.size, trusted.root);
        let url = self.endpoints[p].url.clone();
        let seen = Head::from(&cp.checkpoint);
        // The one trust step (tlog_client::trust); the log's own answer
        // claims to be its latest.
        let step = match trust::step(trusted, seen, true) {
            Ok(s) => s,
            Err(c @ Conflict::Rollback { .. }) => {
                findings.push(self.conflict(
                    Rule::Rollback,
                    format!("{url} serves {} at size {size}: {c}", self.origin),
                    cp,
                    &url,
                    None,
                ));
                return Ok(());
            }
            Err(c) => {
                findings.push(self.conflict(
                    Rule::Fork,
                    format!("{url} serves a checkpoint whose root {root} differs from the audited {t_root}: {c}"),
                    cp,
                    &url,
                    None,
                ));
                return Ok(());
            }
        };
        if step == Step::Same {
            return Ok(());
        }
        let proof = if let Step::Prove { size1, size2, .. } = step {
            let r = match self.client(p).await {
                Ok(c) => c.fetch_consistency(size1, size2).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(proof) => proof,
                Err(ClientError::Verification(why)) => {
                    findings.push(self.conflict(
                        Rule::Fork,
                        format!("{url} served a malformed consistency proof from {t_size} to {size}: {why}"),
                        cp,
                        &url,
                        None,
                    ));
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(log = %self.name, error = %e, "cannot get a consistency proof");
                    self.metrics.log(&self.name, |f| f.failed_rounds += 1);
                    return Ok(());
                }
            }
        } else {
            Vec::new()
        };
        if let Err(c) = trust::check(step, trusted, seen, &proof) {
            findings.push(self.conflict(
                Rule::Fork,
                format!(
                    "the checkpoint of size {size} from {url} does not extend the audited one: {c}"
                ),
                cp,
                &url,
                Some(&proof),
            ));
            return Ok(());
        }
        self.audit_entries(p, cp, findings).await
    }

    /// Downloads `[trusted size, cp size)`, hashes it into the tree, runs
    /// the rules, and trusts `cp` only if the root matches.
    async fn audit_entries(
        &mut self,
        p: usize,
        cp: &SignedCheckpoint,
        findings: &mut Vec<Finding>,
    ) -> Result<(), AuditError> {
        let (size, root) = (cp.checkpoint.size, cp.checkpoint.root);
        let start = self.state.size;
        let Some(mut tree) = self.state.tree() else {
            return Err(StateError::Corrupt {
                path: self.dir.state_path(),
                reason: "the tree edge does not match the size".into(),
            }
            .into());
        };
        let keep = size - start <= LOCATE_LIMIT;
        let mut hashes: Vec<Hash> = Vec::new();
        let mut rule_findings = Vec::new();
        let rules = self.rules.clone();
        let mut rule_state = std::mem::take(&mut self.state.rules);
        let result: Result<(), ClientError> = async {
            let client = self.client(p).await?;
            let mut stream = client.fetch_entries(start, size).await?;
            // Receiving and decoding pages runs beside the hashing and the
            // rules (a pipeline over both cores).
            let (tx, mut rx) = tokio::sync::mpsc::channel(8);
            let reader = tokio::spawn(async move {
                loop {
                    let next = stream.next_page().await;
                    let done = !matches!(next, Ok(Some(_)));
                    if let Ok(None) = next {
                        return;
                    }
                    if tx.send(next).await.is_err() || done {
                        return;
                    }
                }
            });
            let _abort = AbortOnDrop(reader);
            while let Some(page) = rx.recv().await {
                let Some(page) = page? else { break };
                for (index, leaf) in page {
                    let h = tlog_core::leaf_hash(&leaf);
                    tree.push(h);
                    if keep {
                        hashes.push(h);
                    }
                    match decode_any(&leaf) {
                        Ok(l) => {
                            rule_findings.extend(rules.evaluate(&mut rule_state, index, &h, &l))
                        }
                        Err(e) => rule_findings.push(Finding::new(
                            Rule::UndecodableEntry,
                            Severity::Medium,
                            format!("entry {index} is not a leaf this monitor can read: {e}"),
                            vec![EntryRef {
                                index,
                                leaf_hash: h.to_hex(),
                            }],
                            h.to_hex(),
                        )),
                    }
                }
            }
            Ok(())
        }
        .await;
        let n = tree.size() - start;
        self.metrics.log(&self.name, |f| f.entries_audited += n);
        if let Err(e) = result {
            // Nothing is trusted from a partial download; the rules' memory
            // goes back to the last audited checkpoint.
            tracing::warn!(log = %self.name, error = %e, "entry download failed; retrying next round");
            self.revert()?;
            self.metrics.log(&self.name, |f| f.failed_rounds += 1);
            return Ok(());
        }
        if tree.root() != root {
            self.revert()?;
            let finding = self.locate_mismatch(p, cp, start, &hashes, keep).await;
            findings.push(finding);
            return Ok(());
        }
        self.state.rules = rule_state;
        self.state.checkpoint = cp.raw.clone();
        self.state.set_tree(&tree);
        self.state.last_growth = now_secs();
        self.dirty = true;
        if self.last_save.elapsed() >= self.save_interval {
            self.flush()?;
        }
        self.metrics.log(&self.name, |f| f.verified_size = size);
        findings.extend(rule_findings);
        Ok(())
    }

    /// The entries did not produce the signed root: find the first entry
    /// whose served bytes do not verify with the log's own inclusion proof.
    async fn locate_mismatch(
        &mut self,
        p: usize,
        cp: &SignedCheckpoint,
        start: u64,
        hashes: &[Hash],
        kept: bool,
    ) -> Finding {
        let (size, root) = (cp.checkpoint.size, cp.checkpoint.root);
        let url = self.endpoints[p].url.clone();
        let mut bad: Option<(u64, Hash, Vec<Hash>)> = None;
        if kept {
            for (k, h) in hashes.iter().enumerate() {
                let index = start + k as u64;
                let proof = match self.client(p).await {
                    Ok(c) => c.fetch_inclusion(index, size).await,
                    Err(e) => Err(e),
                };
                match proof {
                    Ok(proof) if verify_inclusion(index, size, h, &proof, &root).is_ok() => {}
                    Ok(proof) => {
                        bad = Some((index, *h, proof));
                        break;
                    }
                    Err(_) => {
                        bad = Some((index, *h, Vec::new()));
                        break;
                    }
                }
            }
        }
        let served = match &bad {
            Some((i, ..)) => match self.client(p).await {
                Ok(c) => match c.fetch_entries(*i, i + 1).await {
                    Ok(mut s) => s
                        .next_page()
                        .await
                        .ok()
                        .flatten()
                        .and_then(|pg| pg.into_iter().next()),
                    Err(_) => None,
                },
                Err(_) => None,
            },
            None => None,
        };
        let (message, entries, extra) = match &bad {
            Some((index, h, proof)) => (
                format!(
                    "the entries {url} served for [{start}, {size}) do not hash to the signed root {root}: entry {index} (served leaf hash {h}) does not verify with the log's inclusion proof"
                ),
                vec![EntryRef {
                    index: *index,
                    leaf_hash: h.to_hex(),
                }],
                json!({
                    "index": index,
                    "served_leaf_hash": h.to_hex(),
                    "served_leaf": served.map(|(_, l)| base64::engine::general_purpose::STANDARD.encode(l)),
                    "inclusion_proof": proof.iter().map(Hash::to_hex).collect::<Vec<_>>(),
                }),
            ),
            None => (
                format!(
                    "the entries {url} served for [{start}, {size}) do not hash to the signed root {root}"
                ),
                vec![],
                json!({}),
            ),
        };
        let mut extra = extra;
        if let Some(o) = extra.as_object_mut() {
            o.insert("checkpoint".into(), json!(cp.raw));
            o.insert("range".into(), json!([start, size]));
            o.insert("endpoint".into(), json!(url));
        }
        let key = format!(
            "{size}:{root}:{}",
            bad.as_ref().map(|b| b.0.to_string()).unwrap_or_default()
        );
        let evidence = self.evidence(Rule::RootMismatch, extra);
        Finding::new(
            Rule::RootMismatch,
            Severity::Critical,
            message,
            entries,
            key,
        )
        .with_evidence(evidence)
    }

    /// Compares a checkpoint seen elsewhere with the audited view. A
    /// larger one is proven consistent with a proof from endpoint
    /// `ahead`; returns false when that endpoint cannot prove it yet.
    async fn compare(
        &mut self,
        p: usize,
        ahead: usize,
        seen: &SignedCheckpoint,
        source: &str,
        findings: &mut Vec<Finding>,
    ) -> bool {
        let (size, root) = (seen.checkpoint.size, seen.checkpoint.root);
        let (t_size, t_root) = (self.state.size, self.trusted_root());
        if self.state.checkpoint.is_empty() && t_size == 0 {
            return false; // nothing audited yet to compare with
        }
        let split = |me: &Self, why: String, proof: Option<&[Hash]>| {
            me.conflict(
                Rule::SplitView,
                format!(
                    "{source} shows {} a checkpoint of size {size} (root {root}) that {why} with the audited checkpoint of size {t_size} (root {t_root}): the log shows different views",
                    me.origin
                ),
                seen,
                source,
                proof,
            )
        };
        let (trusted, seen_head) = (self.trusted_head(), Head::from(&seen.checkpoint));
        // A vantage point's or gossiped checkpoint may be older than the
        // audited one: it must then be a prefix of it.
        let step = match trust::step(trusted, seen_head, false) {
            Ok(Step::Same) => return true,
            Ok(s) => s,
            Err(c) => {
                findings.push(split(self, format!("is inconsistent ({c})"), None));
                return true;
            }
        };
        let Step::Prove {
            size1,
            size2,
            newer,
        } = step
        else {
            return true;
        };
        let i = if newer { ahead } else { p };
        let r = match self.client(i).await {
            Ok(c) => c.fetch_consistency(size1, size2).await,
            Err(e) => Err(e),
        };
        let proof = match r {
            Ok(proof) => proof,
            Err(ClientError::Refused {
                code: tonic::Code::OutOfRange,
                ..
            }) => return false,
            Err(ClientError::Verification(why)) => {
                findings.push(split(
                    self,
                    format!("comes with a malformed proof ({why}), so cannot be shown consistent"),
                    None,
                ));
                return true;
            }
            Err(e) => {
                tracing::warn!(log = %self.name, error = %e, "cannot get a consistency proof for a vantage point");
                return false;
            }
        };
        if let Err(c) = trust::check(step, trusted, seen_head, &proof) {
            findings.push(split(
                self,
                format!("is not consistent ({c})"),
                Some(&proof),
            ));
        }
        true
    }
}

/// Aborts a task when dropped (so an abandoned download stops).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Queues a gossiped signed note for the log whose key verifies it.
pub fn route_gossip(
    logs: &[(String, Verifiers, String, GossipQueue)],
    note: &str,
    source: String,
) -> Result<String, String> {
    for (name, verifiers, origin, queue) in logs {
        if let Ok(cp) = checkpoint::open(note.as_bytes(), verifiers, origin) {
            let size = cp.checkpoint.size;
            queue
                .lock()
                .map_err(|_| "internal error".to_owned())?
                .push_back((cp, source));
            return Ok(format!(
                "accepted: a checkpoint of size {size} of log {name}; it will be compared with the audited view"
            ));
        }
    }
    Err("not a signed checkpoint of any watched log (checked origin and signature)".into())
}
