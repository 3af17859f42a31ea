//! The monitor's Prometheus metrics (text exposition format).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Per-log figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogFigures {
    /// Size of the newest fully audited checkpoint.
    pub verified_size: u64,
    /// Size of the newest checkpoint seen.
    pub seen_size: u64,
    /// Entries downloaded and audited.
    pub entries_audited: u64,
    /// Unix seconds of the last successful audit round.
    pub last_success: u64,
    /// Rounds that failed (log unreachable, proof or entries refused).
    pub failed_rounds: u64,
}

/// All metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    alerts: Mutex<BTreeMap<String, u64>>,
    logs: Mutex<BTreeMap<String, LogFigures>>,
    deliveries_failed: Mutex<u64>,
    gossip: Mutex<BTreeMap<&'static str, u64>>,
    witness: Mutex<BTreeMap<u16, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// Counts an alert.
    pub fn alert(&self, rule: &str) {
        *lock(&self.alerts).entry(rule.to_owned()).or_default() += 1;
    }

    /// Counts a failed delivery.
    pub fn delivery_failed(&self) {
        *lock(&self.deliveries_failed) += 1;
    }

    /// Counts a gossiped checkpoint by outcome.
    pub fn gossip(&self, outcome: &'static str) {
        *lock(&self.gossip).entry(outcome).or_default() += 1;
    }

    /// Counts an `add-checkpoint` answer by HTTP status.
    pub fn witness(&self, status: u16) {
        *lock(&self.witness).entry(status).or_default() += 1;
    }

    /// Updates a log's figures.
    pub fn log(&self, name: &str, f: impl FnOnce(&mut LogFigures)) {
        f(lock(&self.logs).entry(name.to_owned()).or_default());
    }

    /// A log's figures.
    pub fn figures(&self, name: &str) -> LogFigures {
        lock(&self.logs).get(name).copied().unwrap_or_default()
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP tlog_monitor_alerts_total Alerts sent, by rule.\n# TYPE tlog_monitor_alerts_total counter"
        );
        for (rule, n) in lock(&self.alerts).iter() {
            let _ = writeln!(s, "tlog_monitor_alerts_total{{rule=\"{rule}\"}} {n}");
        }
        let logs = lock(&self.logs).clone();
        let gauge = |s: &mut String,
                     name: &str,
                     help: &str,
                     kind: &str,
                     get: &dyn Fn(&LogFigures) -> u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (log, f) in &logs {
                let _ = writeln!(s, "{name}{{log=\"{log}\"}} {}", get(f));
            }
        };
        gauge(
            &mut s,
            "tlog_monitor_verified_size",
            "Size of the newest checkpoint audited in full.",
            "gauge",
            &|f| f.verified_size,
        );
        gauge(
            &mut s,
            "tlog_monitor_seen_size",
            "Size of the newest checkpoint seen.",
            "gauge",
            &|f| f.seen_size,
        );
        gauge(
            &mut s,
            "tlog_monitor_lag_entries",
            "Entries seen but not yet audited.",
            "gauge",
            &|f| f.seen_size.saturating_sub(f.verified_size),
        );
        gauge(
            &mut s,
            "tlog_monitor_entries_audited_total",
            "Entries downloaded, hashed and checked by the rules.",
            "counter",
            &|f| f.entries_audited,
        );
        gauge(
            &mut s,
            "tlog_monitor_last_success_seconds",
            "Unix time of the last successful audit round.",
            "gauge",
            &|f| f.last_success,
        );
        gauge(
            &mut s,
            "tlog_monitor_failed_rounds_total",
            "Audit rounds that could not complete.",
            "counter",
            &|f| f.failed_rounds,
        );
        let _ = writeln!(
            s,
            "# HELP tlog_monitor_alert_deliveries_failed_total Webhook or hook deliveries that failed after retries.\n# TYPE tlog_monitor_alert_deliveries_failed_total counter\ntlog_monitor_alert_deliveries_failed_total {}",
            *lock(&self.deliveries_failed)
        );
        let _ = writeln!(
            s,
            "# HELP tlog_monitor_gossip_total Checkpoints received from clients, by outcome.\n# TYPE tlog_monitor_gossip_total counter"
        );
        for (o, n) in lock(&self.gossip).iter() {
            let _ = writeln!(s, "tlog_monitor_gossip_total{{outcome=\"{o}\"}} {n}");
        }
        let _ = writeln!(
            s,
            "# HELP tlog_monitor_witness_requests_total add-checkpoint requests answered by the witness, by HTTP status.\n# TYPE tlog_monitor_witness_requests_total counter"
        );
        for (c, n) in lock(&self.witness).iter() {
            let _ = writeln!(s, "tlog_monitor_witness_requests_total{{code=\"{c}\"}} {n}");
        }
        s
    }
}
