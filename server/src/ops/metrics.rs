//! Prometheus metrics, rendered in the text exposition format on their own
//! port (`/metrics`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add((v * 1e6).max(0.0) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {n}");
    }
}

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const SIZES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// All of the server's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Entries appended (durably).
    pub appends: Counter,
    /// Failed commits.
    pub commit_failures: Counter,
    /// Events per committed batch.
    pub batch_events: Histogram,
    /// Time to process one batch (hash, sign, synced write).
    pub batch_seconds: Histogram,
    /// Time from receiving an append to answering it.
    pub append_seconds: Histogram,
    /// Jobs waiting for the sequencer.
    pub queue_depth: Gauge,
    /// Current tree size.
    pub tree_size: Gauge,
    /// Inclusion proofs served.
    pub inclusion_proofs: Counter,
    /// Consistency proofs served.
    pub consistency_proofs: Counter,
    /// Bottom tiles whose summaries were cached at start-up.
    pub tile_cache_warmed: Gauge,
    /// Reads refused because stored data failed verification.
    pub corruption_detected: Counter,
    /// Responses by gRPC method and status code.
    responses: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Witness answers by witness (policy name) and outcome.
    witness_answers: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            appends: Counter::default(),
            commit_failures: Counter::default(),
            batch_events: Histogram::new(SIZES),
            batch_seconds: Histogram::new(SECONDS),
            append_seconds: Histogram::new(SECONDS),
            queue_depth: Gauge::default(),
            tree_size: Gauge::default(),
            inclusion_proofs: Counter::default(),
            consistency_proofs: Counter::default(),
            corruption_detected: Counter::default(),
            tile_cache_warmed: Gauge::default(),
            responses: Mutex::new(BTreeMap::new()),
            witness_answers: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// Counts one response of `method` with gRPC status `code`.
    pub fn response(&self, method: &'static str, code: tonic::Code) {
        let code = code_name(code);
        if let Ok(mut m) = self.responses.lock() {
            *m.entry((method, code)).or_insert(0) += 1;
        }
    }

    /// Counts one witness answer: `cosigned`, `conflict` (409, resent
    /// from its size), `failed` (unreachable or refused) or `rollback`.
    pub fn witness_answer(&self, witness: &str, outcome: &'static str) {
        if let Ok(mut m) = self.witness_answers.lock() {
            *m.entry((witness.to_owned(), outcome)).or_insert(0) += 1;
        }
    }

    /// How many answers of this outcome a witness gave (for tests).
    pub fn witness_answers(&self, witness: &str, outcome: &'static str) -> u64 {
        self.witness_answers
            .lock()
            .ok()
            .and_then(|m| m.get(&(witness.to_owned(), outcome)).copied())
            .unwrap_or(0)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, v: u64, kind: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        counter(
            "tlog_appends_total",
            "Entries durably appended.",
            self.appends.get(),
            "counter",
        );
        counter(
            "tlog_commit_failures_total",
            "Batch commits that failed.",
            self.commit_failures.get(),
            "counter",
        );
        counter(
            "tlog_queue_depth",
            "Append jobs waiting for the sequencer.",
            self.queue_depth.get(),
            "gauge",
        );
        counter(
            "tlog_tile_cache_warmed_tiles",
            "Bottom tiles whose summaries were cached at start-up.",
            self.tile_cache_warmed.get(),
            "gauge",
        );
        counter(
            "tlog_tree_size",
            "Current tree size.",
            self.tree_size.get(),
            "gauge",
        );
        counter(
            "tlog_inclusion_proofs_total",
            "Inclusion proofs served (including those in append answers).",
            self.inclusion_proofs.get(),
            "counter",
        );
        counter(
            "tlog_consistency_proofs_total",
            "Consistency proofs served.",
            self.consistency_proofs.get(),
            "counter",
        );
        counter(
            "tlog_corruption_detected_total",
            "Reads refused because stored data failed verification.",
            self.corruption_detected.get(),
            "counter",
        );
        self.batch_events
            .render(&mut s, "tlog_batch_events", "Events per committed batch.");
        self.batch_seconds.render(
            &mut s,
            "tlog_batch_seconds",
            "Time to sequence, sign and sync one batch.",
        );
        self.append_seconds.render(
            &mut s,
            "tlog_append_seconds",
            "Append latency, request to durable answer.",
        );
        let _ = writeln!(
            s,
            "# HELP tlog_responses_total gRPC responses by method and code.\n\
             # TYPE tlog_responses_total counter"
        );
        if let Ok(m) = self.responses.lock() {
            for ((method, code), n) in m.iter() {
                let _ = writeln!(
                    s,
                    "tlog_responses_total{{method=\"{method}\",code=\"{code}\"}} {n}"
                );
            }
        }
        if let Ok(m) = self.witness_answers.lock()
            && !m.is_empty()
        {
            let _ = writeln!(
                s,
                "# HELP tlog_witness_answers_total Witness answers to add-checkpoint by witness and outcome.\n\
                 # TYPE tlog_witness_answers_total counter"
            );
            for ((w, outcome), n) in m.iter() {
                let w = w
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = writeln!(
                    s,
                    "tlog_witness_answers_total{{witness=\"{w}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        s
    }
}

fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};

    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        if req.uri().path() == "/metrics" {
                            Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(metrics.render())))
                        } else {
                            Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from_static(b"not found; try /metrics\n")))
                        }
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}
