//! Delivering alerts: JSON lines on stdout, webhooks (HTTP POST, retried
//! with backoff, HMAC-SHA256 signed), hook commands, and metrics.
//!
//! Each alert id is written to a journal (`alerts.jsonl` in the state
//! folder, synced) before it is delivered, and the journal is read at start,
//! so a finding is never sent twice, across restarts too. A crash between
//! the journal write and the delivery loses that one delivery rather than
//! repeating it; the journal keeps the alert.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::alert::Alert;
use crate::config::{AlertsConfig, HookConfig};
use crate::metrics::Metrics;

/// Why the alert journal failed.
#[derive(Debug, thiserror::Error)]
#[error("alert journal {path}: {source}")]
pub struct JournalError {
    path: PathBuf,
    source: std::io::Error,
}

/// A webhook ready to use.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The URL.
    pub url: String,
    secret: Option<Vec<u8>>,
    ca_pem: Option<Vec<u8>>,
    attempts: u32,
}

/// Sends alerts, each once.
#[derive(Debug)]
pub struct Alerter {
    journal: PathBuf,
    sent: HashSet<String>,
    stdout: bool,
    webhooks: Vec<Webhook>,
    hooks: Vec<HookConfig>,
    metrics: Arc<Metrics>,
}

impl Alerter {
    /// Opens the journal in `state_dir` and reads the secrets of `cfg`.
    pub fn new(
        state_dir: &Path,
        cfg: &AlertsConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Alerter> {
        use anyhow::Context as _;
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("create state folder {}", state_dir.display()))?;
        let journal = state_dir.join("alerts.jsonl");
        let mut sent = HashSet::new();
        if let Ok(text) = std::fs::read_to_string(&journal) {
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                    && let Some(id) = v.get("id").and_then(|i| i.as_str())
                {
                    sent.insert(id.to_owned());
                }
            }
        }
        let webhooks = cfg
            .webhooks
            .iter()
            .map(|w| {
                let read = |p: &Option<PathBuf>, what: &str| {
                    p.as_ref()
                        .map(|p| {
                            std::fs::read(p)
                                .with_context(|| format!("read webhook {what} {}", p.display()))
                        })
                        .transpose()
                };
                Ok(Webhook {
                    url: w.url.clone(),
                    secret: read(&w.secret_file, "secret_file")?.map(|s| s.trim_ascii().to_vec()),
                    ca_pem: read(&w.ca_file, "ca_file")?,
                    attempts: w.attempts.max(1),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Alerter {
            journal,
            sent,
            stdout: cfg.stdout,
            webhooks,
            hooks: cfg.hooks.clone(),
            metrics,
        })
    }

    /// Whether this id was already sent.
    pub fn was_sent(&self, id: &str) -> bool {
        self.sent.contains(id)
    }

    /// Records and delivers an alert, unless it was sent before.
    pub async fn send(&mut self, alert: &Alert) -> Result<bool, JournalError> {
        Ok(self.send_all(std::slice::from_ref(alert)).await? == 1)
    }

    /// Records the alerts not sent before in the journal with one sync,
    /// then delivers each; returns how many were new.
    pub async fn send_all(&mut self, alerts: &[Alert]) -> Result<usize, JournalError> {
        let mut fresh: Vec<(&Alert, String)> = Vec::new();
        let mut ids = HashSet::new();
        for a in alerts {
            if !self.sent.contains(&a.id) && ids.insert(a.id.clone()) {
                fresh.push((a, serde_json::to_string(a).unwrap_or_default()));
            }
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let journal_err = |source| JournalError {
            path: self.journal.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.journal)
            .map_err(journal_err)?;
        let mut buf = String::new();
        for (_, line) in &fresh {
            buf.push_str(line);
            buf.push('\n');
        }
        f.write_all(buf.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|source| JournalError {
                path: self.journal.clone(),
                source,
            })?;
        for (a, line) in &fresh {
            self.sent.insert(a.id.clone());
            self.deliver(a, line).await;
        }
        Ok(fresh.len())
    }

    async fn deliver(&mut self, alert: &Alert, line: &str) {
        self.metrics.alert(&alert.rule);
        tracing::warn!(rule = %alert.rule, severity = ?alert.severity, log = %alert.log, id = %alert.id, "{}", alert.message);
        if self.stdout {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        for w in &self.webhooks {
            if let Err(e) = post(w, line.as_bytes()).await {
                self.metrics.delivery_failed();
                tracing::error!(url = %w.url, error = %e, id = %alert.id, "webhook delivery failed");
            }
        }
        for h in &self.hooks {
            if let Err(e) = run_hook(h, alert, line).await {
                self.metrics.delivery_failed();
                tracing::error!(command = ?h.command, error = %e, id = %alert.id, "alert hook failed");
            }
        }
    }
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for i in 0..BLOCK {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// POSTs `body` to the webhook, retrying with backoff (0.5 s doubling).
async fn post(w: &Webhook, body: &[u8]) -> anyhow::Result<()> {
    let signature = w
        .secret
        .as_ref()
        .map(|k| format!("sha256={}", hex::encode(hmac_sha256(k, body))));
    let mut delay = Duration::from_millis(500);
    let mut last = anyhow::anyhow!("no attempt made");
    for attempt in 1..=w.attempts {
        match crate::http::post_json(&w.url, body, signature.as_deref(), w.ca_pem.as_deref()).await
        {
            Ok(status) if (200..300).contains(&status) => return Ok(()),
            Ok(status) => last = anyhow::anyhow!("HTTP status {status}"),
            Err(e) => last = e,
        }
        if attempt < w.attempts {
            tracing::debug!(url = %w.url, attempt, error = %last, "webhook attempt failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
    Err(last.context(format!("after {} attempts", w.attempts)))
}

/// Runs a hook with the alert in its environment: `TLOG_ALERT_JSON`,
/// `TLOG_ALERT_ID`, `TLOG_ALERT_RULE`, `TLOG_ALERT_SEVERITY`,
/// `TLOG_ALERT_LOG`, `TLOG_ALERT_MESSAGE`, `TLOG_ALERT_ENTRIES` (indexes,
/// comma separated), `TLOG_ALERT_EVIDENCE`.
async fn run_hook(h: &HookConfig, a: &Alert, json: &str) -> anyhow::Result<()> {
    let (prog, args) = h
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("empty command"))?;
    let status = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(prog)
            .args(args)
            .env("TLOG_ALERT_JSON", json)
            .env("TLOG_ALERT_ID", &a.id)
            .env("TLOG_ALERT_RULE", &a.rule)
            .env(
                "TLOG_ALERT_SEVERITY",
                serde_json::to_value(a.severity)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            )
            .env("TLOG_ALERT_LOG", &a.log)
            .env("TLOG_ALERT_MESSAGE", &a.message)
            .env(
                "TLOG_ALERT_ENTRIES",
                a.entries
                    .iter()
                    .map(|e| e.index.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .env(
                "TLOG_ALERT_EVIDENCE",
                a.evidence.clone().unwrap_or_default(),
            )
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("did not finish within 60 s"))??;
    if !status.success() {
        anyhow::bail!("exited with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
