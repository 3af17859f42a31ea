//! `tlog-monitor`: watches transparency logs and alerts when the log itself
//! misbehaves (forks, split views, rollbacks, entries that do not produce
//! the signed root, bad signatures, staleness, outages) or when what it
//! records about models is unexpected (two digests for one version, deploys
//! of unregistered, unapproved or retired versions, versions going
//! backwards, bad version strings, submitters or attestations not allowed,
//! unusual access).
//!
//! - [`config`]: the TOML configuration.
//! - [`audit`]: auditing one log (RFC 9162 consistency, full recomputation
//!   of the root from the entries, vantage points, gossip).
//! - [`rules`]: the artifact rules.
//! - [`state`]: the persisted trusted state per log.
//! - [`sink`], [`alert`]: alerts and their delivery, each finding once.
//! - [`http`], [`metrics`]: `/metrics`, `POST /gossip`, webhooks.
//! - [`witness`]: the monitor as a C2SP witness (`add-checkpoint`).

pub mod alert;
pub mod audit;
pub mod config;
pub mod http;
pub mod metrics;
pub mod rules;
pub mod sink;
pub mod slots;
pub mod state;
pub mod witness;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alert::{Alert, Finding};
use audit::{Auditor, GossipQueue};
use config::Config;
use metrics::Metrics;
use sink::Alerter;
use tlog_core::note::Verifiers;

/// The monitor: one auditor per log, one alerter.
pub struct Monitor {
    cfg: Config,
    auditors: Vec<Auditor>,
    alerter: Alerter,
    metrics: Arc<Metrics>,
    routes: Arc<Vec<(String, Verifiers, String, GossipQueue)>>,
    witness: Option<Arc<witness::Witness>>,
}

/// What one pass found.
#[derive(Debug, Default)]
pub struct PassReport {
    /// Every finding of the pass, as alerts (sent or sent before).
    pub alerts: Vec<Alert>,
    /// How many of them were new (sent now).
    pub new: usize,
}

impl Monitor {
    /// Sets up the monitor: loads every log's state and the alert journal.
    pub fn new(cfg: Config) -> anyhow::Result<Monitor> {
        let metrics = Arc::new(Metrics::default());
        let rules =
            Arc::new(rules::Rules::new(&cfg.rules).map_err(|e| anyhow::anyhow!("rules: {e}"))?);
        let auditors = cfg
            .logs
            .iter()
            .map(|l| Auditor::new(l, &cfg, rules.clone(), metrics.clone()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let alerter = Alerter::new(&cfg.state_dir, &cfg.alerts, metrics.clone())?;
        let witness = cfg
            .witness
            .as_ref()
            .map(|w| witness::Witness::new(w, &cfg.state_dir, metrics.clone()).map(Arc::new))
            .transpose()?;
        let routes = Arc::new(
            auditors
                .iter()
                .map(|a| {
                    let (v, o) = a.verifiers();
                    (a.name.clone(), v.clone(), o.to_owned(), a.gossip_queue())
                })
                .collect(),
        );
        Ok(Monitor {
            cfg,
            auditors,
            alerter,
            metrics,
            routes,
            witness,
        })
    }

    /// The metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The auditors (for tests).
    pub fn auditors(&self) -> &[Auditor] {
        &self.auditors
    }

    /// Routes a gossiped checkpoint to its log's auditor.
    pub fn gossip(&self, note: &str, source: String) -> Result<String, String> {
        let r = audit::route_gossip(&self.routes, note, source);
        self.metrics
            .gossip(if r.is_ok() { "accepted" } else { "refused" });
        r
    }

    /// Takes the checkpoint files in the gossip folder: each that verifies
    /// goes to its log and the file to `done/`; others to `refused/`.
    fn scan_gossip_dir(&self) {
        let Some(dir) = &self.cfg.gossip_dir else {
            return;
        };
        let Ok(list) = std::fs::read_dir(dir) else {
            return;
        };
        for e in list.flatten() {
            let path = e.path();
            if !path.is_file() {
                continue;
            }
            let outcome = match std::fs::read(&path) {
                Ok(bytes) if bytes.len() <= 64 * 1024 => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    self.gossip(&text, format!("gossip file {}", path.display()))
                }
                Ok(_) => Err("larger than 64 KiB".into()),
                Err(e) => Err(e.to_string()),
            };
            let sub = match &outcome {
                Ok(_) => "done",
                Err(why) => {
                    tracing::warn!(file = %path.display(), reason = %why, "gossip file refused");
                    "refused"
                }
            };
            let target = dir.join(sub);
            let _ = std::fs::create_dir_all(&target);
            if let Some(name) = path.file_name() {
                let _ = std::fs::rename(&path, target.join(name));
            }
        }
    }

    /// One pass over every log: audit, compare, evaluate, alert.
    pub async fn pass(&mut self) -> anyhow::Result<PassReport> {
        self.scan_gossip_dir();
        let mut report = PassReport::default();
        for i in 0..self.auditors.len() {
            let findings = self.auditors[i].round().await?;
            let log = self.auditors[i].name.clone();
            let alerts = findings
                .into_iter()
                .map(|f| self.alert(&log, f))
                .collect::<anyhow::Result<Vec<_>>>()?;
            report.new += self.alerter.send_all(&alerts).await?;
            report.alerts.extend(alerts);
        }
        Ok(report)
    }

    /// Saves every log's state that changed (call at the end of `check`
    /// and at shutdown).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        for a in &mut self.auditors {
            a.flush()?;
        }
        Ok(())
    }

    fn alert(&self, log: &str, f: Finding) -> anyhow::Result<Alert> {
        let id = f.id(log);
        let evidence = match &f.evidence {
            Some(ev) if !self.alerter.was_sent(&id) => Some(
                state::LogDir::new(&self.cfg.state_dir, log)
                    .write_evidence(&id, ev)?
                    .display()
                    .to_string(),
            ),
            Some(_) => Some(
                state::LogDir::new(&self.cfg.state_dir, log)
                    .evidence_dir()
                    .join(format!("{id}.json"))
                    .display()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Alert {
            id,
            rule: f.rule.name().to_owned(),
            severity: f.severity,
            log: log.to_owned(),
            message: f.message,
            entries: f.entries,
            evidence,
            time: tlog_core::json::format_time(tlog_core::event::Timestamp::now()),
        })
    }

    /// Runs until `shutdown`: a pass every `poll_interval`, or sooner when
    /// a log's checkpoint stream says it grew or a checkpoint is gossiped.
    /// Serves `/metrics` and `POST /gossip` on `listen`; writes the bound
    /// address to `ready_file`.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        ready_file: Option<&Path>,
    ) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let wake = Arc::new(tokio::sync::Notify::new());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut bound = None;
        if let Some(addr) = &self.cfg.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen on {addr}"))?;
            bound = Some(listener.local_addr()?);
            let routes = self.routes.clone();
            let metrics = self.metrics.clone();
            let wake2 = wake.clone();
            let route: http::GossipRoute = Arc::new(move |note: String, source: String| {
                let r = audit::route_gossip(&routes, &note, source);
                metrics.gossip(if r.is_ok() { "accepted" } else { "refused" });
                if r.is_ok() {
                    wake2.notify_one();
                }
                r
            });
            let mut stop = stop_rx.clone();
            tokio::spawn(http::serve(
                listener,
                self.metrics.clone(),
                route,
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            ));
            tracing::info!(%addr, "serving /metrics and POST /gossip");
        }
        let mut witness_addr = None;
        if let (Some(w), Some(cfg)) = (&self.witness, &self.cfg.witness) {
            let listener = tokio::net::TcpListener::bind(&cfg.listen)
                .await
                .with_context(|| format!("witness: listen on {}", cfg.listen))?;
            let addr = listener.local_addr()?;
            witness_addr = Some(addr);
            let mut stop = stop_rx.clone();
            tokio::spawn(witness::serve(listener, w.clone(), async move {
                let _ = stop.wait_for(|s| *s).await;
            }));
            tracing::info!(%addr, name = %cfg.name, vkey = %w.vkey(), "witnessing: POST {}/add-checkpoint", cfg.prefix);
        }
        for a in &self.auditors {
            let (vkey, opts) = a.connect_options();
            tokio::spawn(follow(
                a.primary_url().to_owned(),
                vkey,
                opts,
                wake.clone(),
                stop_rx.clone(),
            ));
        }
        if let Some(path) = ready_file {
            // First line: the /metrics address (empty if none); then
            // `witness=ADDR` when witnessing.
            let mut text = format!("{}\n", bound.map(|a| a.to_string()).unwrap_or_default());
            if let Some(a) = witness_addr {
                text.push_str(&format!("witness={a}\n"));
            }
            state::write_atomic(path, text.as_bytes())?;
        }
        // SIGHUP re-reads credential files (it used to end the monitor).
        let hup = Arc::new(std::sync::atomic::AtomicBool::new(false));
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut sig) => {
                let (hup, wake, mut stop) = (hup.clone(), wake.clone(), stop_rx.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            r = sig.recv() => if r.is_none() { return },
                            _ = stop.wait_for(|s| *s) => return,
                        }
                        tracing::info!("SIGHUP: re-reading credentials");
                        hup.store(true, std::sync::atomic::Ordering::SeqCst);
                        wake.notify_one();
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; credentials are re-read only when they change")
            }
        }
        let mut stop = stop_rx;
        loop {
            if *stop.borrow() {
                return self.flush();
            }
            if hup.swap(false, std::sync::atomic::Ordering::SeqCst) {
                for a in &mut self.auditors {
                    a.refresh_credentials(true);
                }
            }
            match self.pass().await {
                Ok(r) if r.new > 0 => tracing::info!(new = r.new, "alerts sent"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %format!("{e:#}"), "monitor pass failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                _ = wake.notified() => {}
                _ = stop.wait_for(|s| *s) => return self.flush(),
            }
        }
    }
}

/// Follows a log's checkpoint stream and wakes the monitor on each new
/// checkpoint; reconnects with backoff. Polling covers logs without one.
async fn follow(
    url: String,
    vkey: String,
    opts: tlog_client::ConnectOptions,
    wake: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        let attempt = async {
            let mut c = audit::connect(&url, &vkey, &opts).await?;
            let mut s = c.fetch_checkpoint_stream().await?;
            while let Some(_cp) = s.message().await? {
                wake.notify_one();
            }
            Ok::<_, tlog_client::ClientError>(())
        };
        tokio::select! {
            r = attempt => {
                if let Err(e) = r {
                    tracing::debug!(endpoint = %url, error = %e, "checkpoint stream unavailable; polling");
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
