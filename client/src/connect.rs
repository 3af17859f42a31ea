//! Reaching a log: addresses and TLS ([`ConnectOptions`]), credentials on
//! every call ([`Credentials`]), timeouts and retries, and the check that
//! the log signs with the pinned key before anything is sent.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tlog_core::checkpoint;
use tlog_core::note::{Verifier, Verifiers};
use tlog_proto::v1 as pb;
use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::state::StateFile;
use crate::{Client, ClientError, Rpc, Trust, retryable};

/// How to reach a log that requires TLS or credentials.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// CA certificate(s), PEM, that the server's certificate must chain to;
    /// without it an `https://` address is checked against the system's
    /// roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The name the server's certificate must carry (default: the host).
    pub tls_domain: Option<String>,
    /// Client certificate and key, PEM, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Bearer token sent with every call.
    pub token: Option<String>,
    /// Justification sent with every call (`x-tlog-justification`).
    pub justification: Option<String>,
    /// Time limit per call and for connecting (default 30 s).
    pub timeout: Option<Duration>,
    /// How many times a failed append is retried (default 4), with
    /// exponential backoff from 100 ms. Only appends are retried: they are
    /// idempotent by source and event id.
    pub retries: Option<u32>,
    /// The trusted-state file (see [`crate::state`]); without one the client
    /// trusts per process only.
    pub state_file: Option<PathBuf>,
    /// A witness policy (c2sp.org/tlog-policy) every checkpoint must
    /// satisfy before it is trusted.
    pub policy: Option<std::sync::Arc<tlog_core::policy::Policy>>,
}

/// Default per-call time limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default number of append retries.
pub const DEFAULT_RETRIES: u32 = 4;

/// The wait before retry `attempt` (0-based): 100 ms doubling up to 5 s,
/// with up to 25% jitter so that many clients do not retry in step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1u32 << attempt.min(6))
        .min(Duration::from_secs(5));
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 250)
        .unwrap_or(0);
    base + base * jitter / 1000
}

/// Adds the credentials of [`ConnectOptions`] to every call.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    justification: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        if let Some(j) = &self.justification {
            req.metadata_mut().insert("x-tlog-justification", j.clone());
        }
        Ok(req)
    }
}

/// The verifier key a client pins.
fn pinned(vkey: &str) -> Result<Verifier, ClientError> {
    Verifier::from_vkey(vkey.trim()).map_err(|e| ClientError::Usage(format!("verifier key: {e}")))
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:7400`) and pins `vkey`
    /// (`name+hexid+base64key`); the key's name is the log's origin.
    pub async fn connect(url: &str, vkey: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, vkey, &ConnectOptions::default()).await
    }

    /// Like [`Client::connect`], with TLS, credentials, timeouts, retries
    /// and a trusted-state file.
    pub async fn connect_with(
        url: &str,
        vkey: &str,
        opts: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        let verifier = pinned(vkey)?;
        let timeout = opts.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let mut endpoint = Channel::from_shared(url.to_owned())
            .map_err(|e| ClientError::Usage(format!("server address {url:?}: {e}")))?
            .connect_timeout(timeout)
            .tcp_nodelay(true);
        // TLS for an https:// address or a given CA: the CA if given, else
        // the system's roots (SSL_CERT_FILE and SSL_CERT_DIR are honoured).
        if opts.ca_pem.is_some() || url.starts_with("https://") {
            let mut tls = tonic::transport::ClientTlsConfig::new();
            tls = match &opts.ca_pem {
                Some(ca) => tls.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
                None => tls.with_native_roots(),
            };
            if let Some(d) = &opts.tls_domain {
                tls = tls.domain_name(d.clone());
            }
            if let Some((cert, key)) = &opts.identity {
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| ClientError::Usage(format!("TLS settings: {e}")))?;
        } else if opts.identity.is_some() {
            return Err(ClientError::Usage(
                "a client certificate needs TLS: use an https:// address".into(),
            ));
        }
        let (creds, trust) = Self::prepare(&verifier, opts)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                url: url.to_owned(),
                source,
            })?;
        Ok(Self::assemble(channel, creds, trust, verifier, vkey, opts))
    }

    /// Reads the log from its C2SP tiles under `url` (the server's
    /// `[http]` listener or a published mirror, see [`crate::tiles`])
    /// instead of the gRPC API; verifies exactly as [`Client::connect_with`].
    /// Appends and artifact queries are refused: tiles cannot answer them.
    pub async fn connect_tiles(
        url: &str,
        vkey: &str,
        opts: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        let verifier = pinned(vkey)?;
        let log = crate::tiles::TilesLog::new(
            url,
            &crate::tiles::TilesOptions {
                token: opts.token.clone(),
                ca_pem: opts.ca_pem.clone(),
                timeout: opts.timeout,
            },
        )?;
        let (creds, trust) = Self::prepare(&verifier, opts)?;
        let channel = crate::tiles::channel(log.clone()).await?;
        let mut c = Self::assemble(channel, creds, trust, verifier, vkey, opts);
        c.tiles = Some(log);
        Ok(c)
    }

    /// The credentials and the trusted state of a new client.
    fn prepare(
        verifier: &Verifier,
        opts: &ConnectOptions,
    ) -> Result<(Credentials, Trust), ClientError> {
        let header = |what: &str, v: String| {
            v.parse()
                .map_err(|_| ClientError::Usage(format!("{what} is not valid header text")))
        };
        let creds = Credentials {
            token: opts
                .token
                .as_ref()
                .map(|t| header("token", format!("Bearer {}", t.trim())))
                .transpose()?,
            justification: opts
                .justification
                .clone()
                .map(|j| header("justification", j))
                .transpose()?,
        };
        let origin = verifier.name().to_owned();
        let verifiers = Verifiers::new([verifier.clone()]);
        let mut trust = Trust::default();
        if let Some(path) = &opts.state_file {
            let file = StateFile::new(path);
            if let Some(note) = file.load()? {
                let cp = checkpoint::open(note.as_bytes(), &verifiers, &origin).map_err(|e| {
                    ClientError::Usage(format!(
                        "the trusted-state file {} does not hold a checkpoint of this log signed by this key ({e}); \
                         if you changed logs on purpose, use another --state file",
                        path.display()
                    ))
                })?;
                trust.latest = Some(cp);
            }
            trust.file = Some(file);
        }
        Ok((creds, trust))
    }

    fn assemble(
        channel: Channel,
        creds: Credentials,
        trust: Trust,
        verifier: Verifier,
        vkey: &str,
        opts: &ConnectOptions,
    ) -> Client {
        Client {
            rpc: pb::log_client::LogClient::with_interceptor(channel, creds)
                .max_decoding_message_size(64 << 20),
            origin: verifier.name().to_owned(),
            vkey: vkey.trim().to_owned(),
            verifiers: Verifiers::new([verifier]),
            tiles: None,
            policy: opts.policy.clone(),
            trust: Arc::new(Mutex::new(trust)),
            timeout: opts.timeout.unwrap_or(DEFAULT_TIMEOUT),
            retries: opts.retries.unwrap_or(DEFAULT_RETRIES),
            key_checked: false,
        }
    }

    /// Before the first append: the log's latest checkpoint must verify
    /// with the pinned key, so that a wrong key appends nothing.
    pub(crate) async fn check_key(&mut self) -> Result<(), ClientError> {
        if self.key_checked {
            return Ok(());
        }
        match self.checkpoint().await {
            Ok(_) => {
                self.key_checked = true;
                Ok(())
            }
            // The log's signature verified; only the witnesses have not
            // cosigned yet. The key is right: the append's answer is
            // checked against the policy.
            Err(ClientError::Unwitnessed(_)) => {
                self.key_checked = true;
                Ok(())
            }
            Err(ClientError::Verification(why)) => Err(ClientError::WrongKey {
                vkey: self.vkey.clone(),
                reason: why,
            }),
            Err(e) => Err(e),
        }
    }

    /// Runs one unary call with the timeout; with `retry`, retries
    /// transient failures with exponential backoff.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        what: &'static str,
        retry: bool,
        mut f: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Rpc) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut attempt = 0u32;
        loop {
            let err = match tokio::time::timeout(self.timeout, f(self.rpc.clone())).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(status)) => ClientError::from(status),
                Err(_) => ClientError::Timeout {
                    what,
                    after: self.timeout,
                },
            };
            if !retry || !retryable(&err) || attempt >= self.retries {
                return Err(err);
            }
            let delay = backoff(attempt);
            tracing::debug!(call = what, attempt, ?delay, error = %err, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}
