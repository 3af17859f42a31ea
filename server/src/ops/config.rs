//! Server configuration: a TOML file, overridden by flags and environment
//! variables (in the binary), validated at start with messages that name
//! the setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A setting that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is out of range.
    #[error("setting `{setting}`: {reason}")]
    Invalid {
        /// The setting's name as written in the file.
        setting: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

/// Output format of the server's log.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Batching of appends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSection {
    /// Most events in one commit.
    pub max_events: usize,
    /// How long a batch that is not full waits for more appends when the
    /// writer is free. Zero (the default): it is written at once; batches
    /// still grow while the previous one is being written (group commit).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for BatchSection {
    fn default() -> Self {
        BatchSection {
            max_events: 1024,
            max_wait: Duration::ZERO,
        }
    }
}

/// The append queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// Append jobs that may wait for the sequencer.
    pub depth: usize,
    /// Bytes of events that may be in flight (queued or being written).
    pub max_inflight_bytes: usize,
    /// How long a caller waits for room before `RESOURCE_EXHAUSTED`.
    #[serde(with = "humantime_serde")]
    pub enqueue_timeout: Duration,
    /// Bytes that requests being read and decoded may take at once: their
    /// wire bytes and an estimate of their decoded size
    /// ([`crate::access::ingress`]). Requests beyond it wait, then get
    /// `RESOURCE_EXHAUSTED`.
    pub max_decoding_bytes: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            depth: 1024,
            max_inflight_bytes: 128 << 20,
            enqueue_timeout: Duration::from_secs(5),
            max_decoding_bytes: 64 << 20,
        }
    }
}

/// Request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest event, in bytes of its protobuf encoding.
    pub max_event_bytes: u32,
    /// Most events in one `AppendBatch`.
    pub max_batch_events: u32,
    /// Most entries in one page of `GetEntries` or `QueryArtifact`.
    pub max_page_size: u32,
    /// Longest a request may take from its first byte to its answer's
    /// headers, reading its body included; a request still arriving or
    /// unanswered then is ended with `CANCELLED` ("Timeout expired"). Bounds
    /// how long a slow or stalled client holds a stream. Streams of entries
    /// and checkpoints are not cut: their answer starts at once. A client's
    /// own `grpc-timeout` applies when shorter.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 64 * 1024,
            max_batch_events: 256,
            max_page_size: 1000,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// TLS on the gRPC port, and mutual TLS when client CA roots are given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The server's certificate chain (PEM).
    pub cert_file: PathBuf,
    /// The server's private key (PEM).
    pub key_file: PathBuf,
    /// CA roots that client certificates must chain to (PEM). Set: mutual
    /// TLS; a certificate the server does not trust fails the handshake.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Accept connections without a client certificate (they are
    /// anonymous, or use bearer tokens). Default: a certificate is required.
    #[serde(default)]
    pub client_auth_optional: bool,
}

/// The HTTP listener that serves the log as C2SP tiles
/// (<https://c2sp.org/tlog-tiles>): `<prefix>/checkpoint`,
/// `<prefix>/tile/...`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Listen address, e.g. `0.0.0.0:7402`.
    pub listen: SocketAddr,
    /// The URL path the tiles are under: "" (the default) serves
    /// `/checkpoint`; "/models" serves `/models/checkpoint`.
    #[serde(default)]
    pub prefix: String,
    /// Serve HTTPS with the `[tls]` certificate (client certificates are
    /// not asked for on this listener; bearer tokens authenticate).
    #[serde(default)]
    pub tls: bool,
}

/// Publishing the tiles to a static target while serving
/// ([`crate::publish`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSection {
    /// The target: a directory (served by any web server).
    pub to: PathBuf,
    /// How often to publish what the log has grown.
    #[serde(default = "default_publish_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// For `to = "s3://..."`: the object store (credentials may also come
    /// from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`).
    #[serde(default)]
    pub s3: S3Section,
}

/// `[publish.s3]`: an S3-compatible object store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// The store's endpoint, e.g. `http://127.0.0.1:3900` (default: AWS).
    pub endpoint: Option<String>,
    /// The region (Garage's default is `garage`).
    pub region: Option<String>,
    /// A file holding the access key ID.
    pub access_key_id_file: Option<PathBuf>,
    /// A file holding the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
}

fn default_publish_interval() -> Duration {
    Duration::from_secs(1)
}

/// `[witnessing]`: the witnesses asked to cosign every checkpoint
/// ([`crate::witnessing`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessingSection {
    /// A c2sp.org/tlog-policy file: the witnesses (with their submission
    /// URLs) and the quorum.
    pub policy_file: PathBuf,
    /// `async` (appends answer at once; cosignatures follow) or `sync`
    /// (appends answer with a checkpoint that satisfies the quorum).
    #[serde(default)]
    pub mode: WitnessMode,
    /// Deadline of one request to a witness, and how long a `sync` append
    /// waits for the quorum before `UNAVAILABLE`.
    #[serde(default = "default_witness_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// PEM certificates of the authorities that `https://` witnesses'
    /// certificates may chain to, trusted beside the Web PKI roots (for
    /// witnesses with certificates of a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_witness_timeout() -> Duration {
    Duration::from_secs(5)
}

/// When appends are answered relative to witnessing.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WitnessMode {
    /// Appends answer with the log's checkpoint; cosignatures are added to
    /// the served checkpoint as they arrive.
    #[default]
    Async,
    /// Appends answer only with a checkpoint that carries a quorum of
    /// cosignatures.
    Sync,
}

/// Authentication, authorization and the access log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// The Cedar policy file. Without one every authenticated request is
    /// allowed (and recorded as such).
    pub policy_file: Option<PathBuf>,
    /// Trusted bearer-token issuers.
    pub token_issuers: Vec<crate::access::tokens::IssuerConfig>,
    /// Roles of certificate principals: a SPIFFE ID (`spiffe://…`, from a
    /// URI SAN) or `dns:<host name>` (from a DNS SAN) -> roles.
    pub cert_roles: std::collections::HashMap<String, Vec<String>>,
    /// JSON-lines access log; none to disable.
    pub access_log: Option<PathBuf>,
    /// Rotate the access log at this size.
    pub access_log_max_bytes: u64,
    /// Rotated access logs to keep.
    pub access_log_keep: usize,
    /// Per-principal rate limits.
    pub rate_limits: crate::access::ratelimit::RateLimits,
    /// Also append access records to the log itself, in batches: every
    /// decision about an authenticated caller, and summaries (counts by
    /// peer and reason) of refusals before authentication
    /// ([`crate::access::audit`]).
    pub ledger_audit: bool,
    /// Longest wait before a batch of access records is appended.
    #[serde(with = "humantime_serde")]
    pub ledger_flush: Duration,
    /// How often the summary of refusals before authentication is
    /// appended to the ledger.
    #[serde(with = "humantime_serde")]
    pub ledger_refusal_summary: Duration,
    /// Refusals of credentials (tokens or certificates that do not verify)
    /// allowed per peer address; past it, such requests are answered
    /// `RESOURCE_EXHAUSTED`. Default 5 per second, bursts of 20.
    pub refusals_per_peer: crate::access::ratelimit::Limit,
    /// Longest `x-tlog-justification` header, in bytes.
    pub max_justification_bytes: usize,
    /// Sources bound to the principals that may submit for them: source
    /// name -> principals (token subjects, SPIFFE IDs, `dns:` names). An
    /// event of a bound source from any other principal is refused
    /// (`PERMISSION_DENIED`, before anything is looked up), and its
    /// (source, event id) is the idempotency key. An event of a source
    /// bound to nobody is idempotent per submitter: its key is scoped by
    /// the principal, so no submitter can claim, or probe, another's ids.
    pub sources: std::collections::HashMap<String, Vec<String>>,
    /// Keys whose Ed25519 attestations over events the server verifies, as
    /// C2SP verifier keys (`name+hexid+base64key`). An attestation's
    /// `key_id` is the signer's name.
    pub trusted_signers: Vec<String>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            policy_file: None,
            token_issuers: Vec::new(),
            cert_roles: Default::default(),
            access_log: None,
            access_log_max_bytes: 64 << 20,
            access_log_keep: 10,
            rate_limits: Default::default(),
            trusted_signers: Vec::new(),
            sources: Default::default(),
            ledger_audit: false,
            ledger_flush: Duration::from_millis(500),
            ledger_refusal_summary: Duration::from_secs(60),
            refusals_per_peer: crate::access::ratelimit::Limit {
                per_second: 5.0,
                burst: 20,
            },
            max_justification_bytes: 1024,
        }
    }
}

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data directory (created by `tlog-server init`).
    pub data_dir: PathBuf,
    /// Signing key file; default `<data_dir>/log.key`.
    pub key_file: Option<PathBuf>,
    /// The checkpoint lock ([`crate::sequencer::lock`]): the latest signed checkpoint,
    /// kept outside the store; default `<data_dir>/checkpoint.lock`. Put
    /// it on another volume than the store (and back it up apart from
    /// it), so that a store restored or rolled back with its volume is
    /// still caught.
    pub checkpoint_lock: Option<PathBuf>,
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listen address; none to disable.
    pub metrics_listen: Option<SocketAddr>,
    /// Principal recorded for callers until authentication is configured.
    pub default_principal: String,
    /// Log output format.
    pub log_format: LogFormat,
    /// Tiles whose interior hashes are cached for proofs (16 KiB each);
    /// summaries of 32 times as many are kept too (about 1.2 KiB each), so
    /// the default takes up to 64 + 150 MiB: the summaries only fill at
    /// 33M entries (about 45 MiB at 10M).
    pub tile_cache_tiles: usize,
    /// How long a graceful shutdown waits for open connections.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Where SIGUSR1 writes an online backup (a RocksDB checkpoint of the
    /// whole log and its verifier key, in a new `<UTC time>` folder).
    /// None: SIGUSR1 is logged and ignored.
    pub backup_dir: Option<PathBuf>,
    /// Batching.
    pub batch: BatchSection,
    /// Queue.
    pub queue: QueueSection,
    /// Limits.
    pub limits: Limits,
    /// TLS; none for plaintext gRPC.
    pub tls: Option<TlsSection>,
    /// The HTTP tiles listener; none to serve gRPC only.
    pub http: Option<HttpSection>,
    /// Publishing the tiles to a static target; none not to.
    pub publish: Option<PublishSection>,
    /// Witnesses asked to cosign checkpoints; none not to.
    pub witnessing: Option<WitnessingSection>,
    /// Access control.
    pub auth: AuthSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("tlog-data"),
            key_file: None,
            checkpoint_lock: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            metrics_listen: None,
            default_principal: "unauthenticated".into(),
            log_format: LogFormat::Human,
            shutdown_grace: Duration::from_secs(5),
            backup_dir: None,
            tile_cache_tiles: 4096,
            batch: BatchSection::default(),
            queue: QueueSection::default(),
            limits: Limits::default(),
            tls: None,
            http: None,
            publish: None,
            witnessing: None,
            auth: AuthSection::default(),
        }
    }
}

impl Config {
    /// True when callers are authenticated (tokens or mutual TLS).
    pub fn authenticates(&self) -> bool {
        !self.auth.token_issuers.is_empty()
            || self
                .tls
                .as_ref()
                .is_some_and(|t| t.client_ca_file.is_some())
    }

    /// Reads a TOML file (unknown settings are errors).
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The signing key file.
    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("log.key"))
    }

    /// The largest request message: a full batch of the largest events.
    pub fn max_message_bytes(&self) -> usize {
        self.limits.max_event_bytes as usize * self.limits.max_batch_events as usize + 64 * 1024
    }

    /// The checkpoint lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.checkpoint_lock
            .clone()
            .unwrap_or_else(|| crate::ops::keys::lock_path(&self.data_dir))
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |setting, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "must not be empty");
        }
        if let Some(w) = &self.witnessing
            && (w.timeout < Duration::from_millis(10) || w.timeout > Duration::from_secs(600))
        {
            return bad("witnessing.timeout", "must be between 10ms and 10m");
        }
        if let Some(p) = &self.publish {
            if p.to.as_os_str().is_empty() {
                return bad("publish.to", "must name a directory");
            }
            let to = p.to.to_string_lossy();
            if to.contains("://") && !to.starts_with("s3://") {
                return bad(
                    "publish.to",
                    "must be a directory or an s3://BUCKET[/PREFIX] URL",
                );
            }
            if to.starts_with("s3://")
                && to.trim_start_matches("s3://").split('/').next() == Some("")
            {
                return bad("publish.to", "s3:// needs a bucket: s3://BUCKET[/PREFIX]");
            }
            if let Some(e) = &p.s3.endpoint
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                return bad("publish.s3.endpoint", "must start with http:// or https://");
            }
            if p.interval < Duration::from_millis(10) {
                return bad("publish.interval", "must be at least 10ms");
            }
        }
        if let Some(h) = &self.http {
            let p = &h.prefix;
            if !(p.is_empty() || (p.starts_with('/') && !p.ends_with('/')))
                || p.contains("//")
                || p.contains(['?', '#', ' '])
            {
                return bad(
                    "http.prefix",
                    "must be empty or a path such as /models (a leading slash, no trailing one)",
                );
            }
            if h.tls && self.tls.is_none() {
                return bad(
                    "http.tls",
                    "needs a [tls] section (its certificate and key are used)",
                );
            }
        }
        if self.default_principal.trim().is_empty() {
            return bad("default_principal", "must not be empty");
        }
        if !(1..=65_536).contains(&self.batch.max_events) {
            return bad("batch.max_events", "must be between 1 and 65536");
        }
        if self.batch.max_wait > Duration::from_secs(1) {
            return bad(
                "batch.max_wait",
                "must be at most 1s (it delays every append)",
            );
        }
        if self.queue.depth == 0 {
            return bad("queue.depth", "must be at least 1");
        }
        if self.queue.enqueue_timeout.is_zero() {
            return bad("queue.enqueue_timeout", "must be more than 0");
        }
        if self.limits.request_timeout <= self.queue.enqueue_timeout {
            return bad(
                "limits.request_timeout",
                "must be longer than queue.enqueue_timeout (an append may wait that long for the queue)",
            );
        }
        if !(1024..=16 << 20).contains(&self.limits.max_event_bytes) {
            return bad(
                "limits.max_event_bytes",
                "must be between 1024 and 16777216",
            );
        }
        if (self.queue.max_decoding_bytes as u64) < 2 * self.max_message_bytes() as u64 {
            return bad(
                "queue.max_decoding_bytes",
                "must be at least twice the largest request (limits.max_event_bytes × \
                 limits.max_batch_events + 64 KiB), or the largest batches could never be decoded",
            );
        }
        if (self.queue.max_inflight_bytes as u64) < u64::from(self.limits.max_event_bytes) {
            return bad(
                "queue.max_inflight_bytes",
                "must be at least limits.max_event_bytes",
            );
        }
        if !(1..=10_000).contains(&self.limits.max_batch_events) {
            return bad("limits.max_batch_events", "must be between 1 and 10000");
        }
        let mtls = self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
        if self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_auth_optional && t.client_ca_file.is_none())
        {
            return bad("tls.client_auth_optional", "needs tls.client_ca_file");
        }
        if self.authenticates() && self.auth.policy_file.is_none() {
            return bad(
                "auth.policy_file",
                "authentication is configured (token issuers or a client CA) but no policy: \
                 every caller, anonymous ones too, could do everything; give a Cedar policy",
            );
        }
        if !self.auth.cert_roles.is_empty() && !mtls {
            return bad("auth.cert_roles", "needs mutual TLS (tls.client_ca_file)");
        }
        for name in self.auth.cert_roles.keys() {
            let ok = match name.strip_prefix(crate::access::auth::DNS_PREFIX) {
                Some(host) => crate::access::auth::is_dns_name(host),
                None => name.starts_with("spiffe://") && name.len() > "spiffe://".len(),
            };
            if !ok {
                return Err(ConfigError::Invalid {
                    setting: "auth.cert_roles",
                    reason: format!(
                        "{} names no certificate principal: write a SPIFFE ID \
                         (\"spiffe://domain/path\", matched against a URI SAN) or \
                         \"dns:<host name>\" (matched against a DNS SAN)",
                        tlog_core::text::escaped(name)
                    ),
                });
            }
        }
        let limits = self
            .auth
            .rate_limits
            .default
            .iter()
            .chain(self.auth.rate_limits.principals.values());
        for l in limits {
            if !(l.per_second.is_finite() && l.per_second > 0.0) || l.burst == 0 {
                return bad(
                    "auth.rate_limits",
                    "each limit needs per_second > 0 and burst >= 1",
                );
            }
        }
        for k in &self.auth.trusted_signers {
            match tlog_core::note::Verifier::from_vkey(k) {
                Ok(v) if v.alg() == tlog_core::note::ALG_ED25519 => {}
                Ok(_) => return bad("auth.trusted_signers", "only Ed25519 (type 0x01) keys"),
                Err(e) => {
                    return Err(ConfigError::Invalid {
                        setting: "auth.trusted_signers",
                        reason: format!("{k:?}: {e}"),
                    });
                }
            }
        }
        for (source, principals) in &self.auth.sources {
            if source.is_empty() || principals.is_empty() {
                return bad(
                    "auth.sources",
                    "each source needs a name and at least one principal",
                );
            }
        }
        if self.auth.ledger_refusal_summary < Duration::from_secs(1) {
            return bad("auth.ledger_refusal_summary", "must be at least 1s");
        }
        if !(self.auth.refusals_per_peer.per_second.is_finite()
            && self.auth.refusals_per_peer.per_second > 0.0)
            || self.auth.refusals_per_peer.burst == 0
        {
            return bad(
                "auth.refusals_per_peer",
                "per_second must be a positive number and burst at least 1",
            );
        }
        if !(64..=8192).contains(&self.auth.max_justification_bytes) {
            return bad(
                "auth.max_justification_bytes",
                "must be between 64 and 8192",
            );
        }
        if self.auth.access_log_max_bytes < 4096 {
            return bad("auth.access_log_max_bytes", "must be at least 4096");
        }
        if !(1..=100_000).contains(&self.limits.max_page_size) {
            return bad("limits.max_page_size", "must be between 1 and 100000");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_files_parse() {
        Config::default().validate().expect("defaults valid");
        let c: Config = toml::from_str(
            "data_dir = \"/d\"\nlisten = \"127.0.0.1:0\"\n[batch]\nmax_wait = \"2ms\"\n",
        )
        .expect("parses");
        assert_eq!(c.batch.max_wait, Duration::from_millis(2));
        c.validate().expect("valid");
    }

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let path = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../deploy/config/server.toml");
        let c = Config::from_file(&path).expect("example parses");
        c.validate().expect("example is valid");
        assert_eq!(
            c.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 7401)))
        );
        assert_eq!(c.batch.max_wait, Duration::ZERO);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = toml::from_str::<Config>("nope = 1").expect_err("unknown key");
        assert!(e.to_string().contains("nope"), "{e}");
        let c = Config {
            tls: Some(TlsSection {
                cert_file: "s.pem".into(),
                key_file: "s.key".into(),
                client_ca_file: Some("ca.pem".into()),
                client_auth_optional: false,
            }),
            ..Config::default()
        };
        let e = c.validate().expect_err("mTLS without a policy");
        assert!(e.to_string().contains("auth.policy_file"), "{e}");
        // Certificate roles name SPIFFE IDs or dns: principals, nothing else.
        let mut m = c.clone();
        m.auth.policy_file = Some("p.cedar".into());
        for (name, ok) in [
            ("spiffe://example.org/ci", true),
            ("dns:registry.example.org", true),
            ("registry.example.org", false),
            ("dns:spiffe://example.org/ci", false),
        ] {
            m.auth.cert_roles = [(name.to_owned(), vec!["ci".to_owned()])].into();
            assert_eq!(m.validate().is_ok(), ok, "{name}: {:?}", m.validate());
        }
        let mut c = Config::default();
        c.limits.max_batch_events = 0;
        let e = c.validate().expect_err("invalid");
        assert!(e.to_string().contains("limits.max_batch_events"), "{e}");
        let mut c = Config::default();
        c.limits.request_timeout = c.queue.enqueue_timeout;
        let e = c
            .validate()
            .expect_err("a request timeout no longer than the queue's");
        assert!(e.to_string().contains("limits.request_timeout"), "{e}");
        let c: Config = toml::from_str("[limits]\nrequest_timeout = \"45s\"").expect("parses");
        assert_eq!(c.limits.request_timeout, Duration::from_secs(45));
    }
}
