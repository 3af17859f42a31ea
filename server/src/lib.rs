//! `tlog-server`: the transparency log server, one folder per concern
//! (ARCHITECTURE.md, "Parts").
//!
//! - [`service`]: the `tlog.v1.Log` gRPC service, its handlers by family,
//!   the one access recorder, the wire conversions and the one error map.
//! - [`sequencer`]: the single owner of the tree; batches appends into one
//!   synced write and signed checkpoint each, guarded by the checkpoint
//!   lock ([`sequencer::lock`]).
//! - [`storage`]: the [`storage::LogStore`] trait and its backends.
//! - [`access`]: authentication, tokens, the Cedar policy, the access log
//!   and ledger, rate limits, and the ingress layer before the service.
//! - [`http`]: the HTTP listener serving the log as C2SP tiles.
//! - [`publish`]: the same tiles written to a static target.
//! - [`witnessing`]: witnesses asked to cosign every checkpoint.
//! - [`ops`]: configuration, keys and `init`, metrics, recovery.
//!
//! Tests start a server in-process with [`run`] on a listener they bound
//! (`127.0.0.1:0`) and stop it through the shutdown future they own.

/// Most concurrent gRPC streams one client connection may have open.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Largest request message of a caller that presents no credentials (no
/// `authorization` header, no client certificate): what any read takes,
/// far less than a batch.
pub const ANONYMOUS_MAX_MESSAGE: usize = 64 * 1024;

/// Largest estimated decoded size of such a request ([`access::ingress`]).
pub const ANONYMOUS_MAX_COST: u64 = 1 << 20;

pub mod access;
pub mod http;
pub mod ops;
pub mod publish;
pub mod sequencer;
pub mod service;
pub mod storage;
pub mod witnessing;

use access::{audit, auth, authz, ingress, ratelimit, tokens};
use ops::{config, keys, metrics};
use sequencer::lock;
use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::ops::config::Config;
use crate::ops::metrics::Metrics;
use crate::sequencer::BatchConfig;
use crate::service::LogService;
use crate::storage::{LogStore, RocksStore};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The signing key could not be used.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// The store could not be opened.
    #[error("cannot open the data directory's store: {0}")]
    Storage(#[from] storage::StorageError),
    /// The log failed its start checks.
    #[error(transparent)]
    Start(#[from] sequencer::StartError),
    /// The policy could not be loaded.
    #[error(transparent)]
    Policy(#[from] authz::PolicyError),
    /// Token issuer keys could not be loaded.
    #[error("token issuers: {0}")]
    Tokens(#[from] tokens::TokenError),
    /// A file the configuration names could not be used.
    #[error("{0}")]
    Files(String),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] ingress::TlsSetupError),
    /// The witness policy cannot be used.
    #[error(transparent)]
    Witnessing(#[from] witnessing::WitnessingError),
    /// The gRPC transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Reloads the policy on SIGHUP; a policy that fails to load is reported
/// and the one in force stays.
/// Publishes the tiles to `target` every `interval` until shutdown; a
/// failed round is logged and tried again.
// Each argument is a distinct part the task owns; a struct for one call
// site would only rename them.
#[allow(clippy::too_many_arguments)]
fn spawn_publisher<S: storage::LogStore>(
    store: Arc<S>,
    target: Arc<dyn publish::Target>,
    known: tlog_core::note::Verifiers,
    origin: String,
    metrics: Arc<Metrics>,
    interval: std::time::Duration,
    witnessing: Option<Arc<witnessing::Witnessing>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let known = Arc::new(known);
    tokio::spawn(async move {
        let mut last_error = String::new();
        loop {
            let (s, t, k, o, m) = (
                store.clone(),
                target.clone(),
                known.clone(),
                origin.clone(),
                metrics.clone(),
            );
            // A witnessed log publishes only what its quorum cosigned.
            let at = witnessing
                .as_ref()
                .map(|w| w.published().map(|c| (c.size, c.note.clone())));
            let round = match at {
                Some(None) => Ok(Ok(publish::Published {
                    from: 0,
                    to: 0,
                    files: 0,
                })),
                at => {
                    tokio::task::spawn_blocking(move || {
                        publish::publish_at(s.as_ref(), t.as_ref(), &k, &o, &m, at.flatten())
                    })
                    .await
                }
            };
            match round {
                Ok(Ok(p)) => {
                    last_error.clear();
                    if p.files > 0 {
                        tracing::info!(
                            from = p.from,
                            to = p.to,
                            files = p.files,
                            "published tiles"
                        );
                    }
                }
                Ok(Err(e)) => {
                    let text = e.to_string();
                    // Said once per distinct failure, not every interval.
                    if text != last_error {
                        tracing::warn!(error = %text, "publishing failed; retrying");
                        last_error = text;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "publish task failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
        }
    })
}

fn spawn_policy_reloader(
    policy: authz::PolicyHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; policy reload disabled");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                _ = stop.changed() => return,
            }
            match policy.reload() {
                Ok(()) => tracing::info!("policy reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "policy reload failed; the previous policy stays in force")
                }
            }
        }
    });
}

/// On SIGUSR1, writes an online backup of the log to a new folder under
/// `dir`: `db/` (a RocksDB checkpoint) and `verifier.key`. Not the signing
/// key: it is backed up separately (deploy/KEYS.md).
fn spawn_backup_on_usr1(
    store: Arc<RocksStore>,
    data_dir: std::path::PathBuf,
    dir: Option<std::path::PathBuf>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        tracing::warn!("cannot listen for SIGUSR1; online backups disabled");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = usr1.recv() => if r.is_none() { return },
                _ = stop.changed() => return,
            }
            let Some(dir) = dir.clone() else {
                tracing::warn!("SIGUSR1: no backup_dir configured; no backup written");
                continue;
            };
            let (store, data_dir) = (store.clone(), data_dir.clone());
            let done = tokio::task::spawn_blocking(move || backup(&store, &data_dir, &dir)).await;
            match done {
                Ok(Ok((path, size))) => {
                    tracing::info!(path = %path.display(), size, "backup written")
                }
                Ok(Err(e)) => tracing::error!(error = %e, "backup failed"),
                Err(e) => tracing::error!(error = %e, "backup task failed"),
            }
        }
    });
}

/// One online backup: returns its folder and the log size it holds.
fn backup(
    store: &RocksStore,
    data_dir: &std::path::Path,
    dir: &std::path::Path,
) -> Result<(std::path::PathBuf, u64), String> {
    use tlog_core::json::format_time;
    let stamp = format_time(tlog_core::event::Timestamp::now()).replace(':', "");
    let target = dir.join(stamp);
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    store
        .backup_to(&target.join("db"))
        .map_err(|e| e.to_string())?;
    std::fs::copy(data_dir.join("verifier.key"), target.join("verifier.key"))
        .map_err(|e| format!("verifier.key: {e}"))?;
    let size = RocksStore::open_read_only(&target.join("db"))
        .and_then(|s| s.meta())
        .map_err(|e| e.to_string())?
        .map(|m| m.size)
        .unwrap_or(0);
    Ok((target, size))
}

/// Runs the server on `listener` until `shutdown` resolves, with metrics on
/// `config.metrics_listen` if set.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let metrics_listener = match config.metrics_listen {
        Some(addr) => {
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| config::ConfigError::Invalid {
                        setting: "metrics_listen",
                        reason: format!("cannot bind {addr}: {e}"),
                    })?,
            )
        }
        None => None,
    };
    run_with(listener, metrics_listener, config, shutdown).await
}

/// Like [`run`], with the metrics listener bound by the caller.
pub async fn run_with(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    run_until_ready(listener, metrics_listener, config, shutdown, || Ok(())).await
}

/// Like [`run_with`], calling `on_ready` once every start-up check has
/// passed and the server is about to serve (a ready file written there
/// never announces a server that then refuses to start). An error from it
/// stops the server before it serves.
pub async fn run_until_ready(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce() -> Result<(), String>,
) -> Result<(), ServerError> {
    let http =
        match &config.http {
            Some(h) => Some(TcpListener::bind(h.listen).await.map_err(|e| {
                config::ConfigError::Invalid {
                    setting: "http.listen",
                    reason: format!("cannot bind {}: {e}", h.listen),
                }
            })?),
            None => None,
        };
    serve_on(
        Listeners {
            grpc: listener,
            metrics: metrics_listener,
            http,
        },
        config,
        shutdown,
        on_ready,
    )
    .await
}

/// The sockets a server serves on, bound by the caller.
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// `/metrics`, if configured.
    pub metrics: Option<TcpListener>,
    /// The HTTP tiles listener (`[http]`), if configured.
    pub http: Option<TcpListener>,
}

/// Like [`run_until_ready`], on listeners the caller bound (the binary
/// binds them first so that its ready file can name their addresses).
pub async fn serve_on(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce() -> Result<(), String>,
) -> Result<(), ServerError> {
    let Listeners {
        grpc: listener,
        metrics: metrics_listener,
        http: http_listener,
    } = listeners;
    config.validate()?;
    let signer = keys::load_signer(&config.key_path())?;
    let store = Arc::new(RocksStore::open(&keys::db_path(&config.data_dir))?);
    let meta = store.meta()?.ok_or(sequencer::StartError::NotInitialized)?;
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    spawn_backup_on_usr1(
        store.clone(),
        config.data_dir.clone(),
        config.backup_dir.clone(),
        stop_rx.clone(),
    );
    let auth: Arc<dyn auth::Authenticator> = if config.authenticates() {
        let tokens = if config.auth.token_issuers.is_empty() {
            None
        } else {
            Some(tokens::TokenVerifier::load(&config.auth.token_issuers)?)
        };
        Arc::new(auth::Authn {
            tokens,
            cert_roles: config.auth.cert_roles.clone(),
        })
    } else {
        Arc::new(auth::DefaultPrincipal {
            principal: config.default_principal.clone(),
        })
    };
    let policy = config
        .auth
        .policy_file
        .as_deref()
        .map(authz::PolicyHandle::load)
        .transpose()?;
    let mut audit = match config.auth.access_log.as_deref() {
        None => audit::AuditSink::default(),
        Some(p) => audit::AuditSink::open(
            p,
            audit::Rotation {
                max_bytes: config.auth.access_log_max_bytes,
                keep: config.auth.access_log_keep,
            },
        )
        .map_err(|e| ServerError::Files(format!("access log {}: {e}", p.display())))?,
    };
    let tls = config.tls.as_ref().map(ingress::tls_acceptor).transpose()?;
    let witnessing = config
        .witnessing
        .as_ref()
        .map(|w| witnessing::Witnessing::load(w, &meta.vkey).map(Arc::new))
        .transpose()?;
    let publish_target = config
        .publish
        .as_ref()
        .map(|p| publish::target_for(&p.to, &p.s3))
        .transpose()
        .map_err(|e| ServerError::Files(e.to_string()))?;
    // Everything that can fail to load is loaded: start the sequencer.
    let (seq, seq_task) = sequencer::start(
        store.clone(),
        signer,
        lock::CheckpointLock::at(config.lock_path()),
        BatchConfig {
            max_events: config.batch.max_events,
            max_wait: config.batch.max_wait,
            queue_depth: config.queue.depth,
            enqueue_timeout: config.queue.enqueue_timeout,
        },
        metrics.clone(),
        stop_rx.clone(),
    )?;
    tracing::info!(
        origin = %meta.origin,
        size = meta.size,
        addr = %display_addr(listener.local_addr()),
        "log opened; stored tree matches the last checkpoint"
    );

    if config.auth.ledger_audit {
        let (tx, rx) = tokio::sync::mpsc::channel(65_536);
        audit = audit.with_ledger(tx);
        tokio::spawn(audit::ledger_writer(
            rx,
            seq.clone(),
            config.auth.ledger_flush,
            config.auth.ledger_refusal_summary,
            stop_rx.clone(),
        ));
    }
    let audit = audit.is_active().then_some(audit);
    if let Some(p) = &policy {
        spawn_policy_reloader(p.clone(), stop_rx.clone());
    }
    // Validated with the rest of the configuration above.
    let trusted_signers = config
        .auth
        .trusted_signers
        .iter()
        .filter_map(|k| tlog_core::note::Verifier::from_vkey(k).ok())
        .collect();
    let max_message = config.max_message_bytes();
    let tiles = Arc::new(tlog_core::merkle::cache::TileCache::new(
        config.tile_cache_tiles,
    ));
    // Awaited at stop: it holds the store, which must be closed (RocksDB's
    // lock released) when serving returns.
    let warming = {
        let (store, tiles, metrics, stop) = (
            store.clone(),
            tiles.clone(),
            metrics.clone(),
            stop_rx.clone(),
        );
        let size = seq.latest().size;
        tokio::task::spawn_blocking(move || warm_tile_cache(&store, &tiles, size, &metrics, &stop))
    };
    let ingress_audit = audit.clone();
    // Only the witness workers need a handle of their own: a handle kept
    // here would keep the sequencer's queue open.
    let seq_handle = witnessing.as_ref().map(|_| seq.clone());
    let svc = Arc::new(LogService::new(service::Parts {
        store: store.clone(),
        seq,
        witnessing: witnessing.clone(),
        origin: meta.origin,
        vkey: meta.vkey,
        limits: config.limits.clone(),
        max_inflight_bytes: config.queue.max_inflight_bytes,
        metrics: metrics.clone(),
        auth,
        shutdown: stop_rx.clone(),
        tiles: tiles.clone(),
        policy,
        audit,
        limiter: ratelimit::RateLimiter::new(config.auth.rate_limits.clone()),
        signers: trusted_signers,
        refusals_per_peer: config.auth.refusals_per_peer,
        max_justification: config.auth.max_justification_bytes,
        sources: config.auth.sources.clone(),
    }));
    let log = tlog_proto::v1::log_server::LogServer::from_arc(svc.clone())
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(64 << 20);
    let schema =
        ingress::Schema::from_descriptors(&[tlog_proto::FILE_DESCRIPTOR_SET]).map_err(|e| {
            config::ConfigError::Invalid {
                setting: "protocol",
                reason: format!("the built-in file descriptor set does not decode: {e}"),
            }
        })?;
    let log = ingress::Bounded::new(
        log,
        ingress::Budget {
            max_message,
            // Without authentication every caller is the default
            // principal: nobody is "anonymous".
            max_anonymous_message: if config.authenticates() {
                ANONYMOUS_MAX_MESSAGE
            } else {
                max_message
            },
            max_anonymous_cost: if config.authenticates() {
                ANONYMOUS_MAX_COST
            } else {
                u64::MAX
            },
            decode_bytes: config.queue.max_decoding_bytes,
            wait: config.queue.enqueue_timeout,
        },
        schema,
        ingress_audit.clone(),
    );

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<tlog_proto::v1::log_server::LogServer<LogService<RocksStore>>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tlog_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| config::ConfigError::Invalid {
            setting: "reflection",
            reason: e.to_string(),
        })?;

    // Tasks that hold the store or the service and end on the stop
    // signal: awaited before the sequencer, so that the store is closed
    // when this returns.
    let mut side_tasks: Vec<tokio::task::JoinHandle<()>> = vec![warming];
    if let (Some(w), Some(seq_handle)) = (&witnessing, seq_handle) {
        tracing::info!(
            witnesses = w.witness_count(),
            mode = ?w.mode(),
            "asking witnesses to cosign every checkpoint"
        );
        side_tasks.extend(witnessing::spawn(
            w.clone(),
            seq_handle,
            store.clone(),
            tiles.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ));
    }
    if let (Some(l), Some(h)) = (http_listener, &config.http) {
        let http_tls = match (&config.tls, h.tls) {
            (Some(t), true) => {
                // Tokens authenticate tiles readers; no client certificate
                // is asked for on this listener.
                let mut server_only = t.clone();
                server_only.client_ca_file = None;
                Some(ingress::tls_acceptor_for(&server_only, &[b"http/1.1"])?)
            }
            _ => None,
        };
        tracing::info!(
            addr = %display_addr(l.local_addr()),
            prefix = %h.prefix,
            tls = http_tls.is_some(),
            "tiles on HTTP"
        );
        let mut stop = stop_rx.clone();
        side_tasks.push(tokio::spawn(http::serve(
            l,
            svc.clone(),
            h.prefix.clone(),
            http_tls,
            async move {
                let _ = stop.changed().await;
            },
        )));
    }
    if let (Some(p), Some(target)) = (&config.publish, publish_target) {
        side_tasks.push(spawn_publisher(
            store.clone(),
            target,
            svc.verifiers(),
            svc.origin().to_owned(),
            metrics.clone(),
            p.interval,
            witnessing.clone(),
            stop_rx.clone(),
        ));
        tracing::info!(to = %p.to.display(), "publishing tiles");
    }
    if let Some(l) = metrics_listener {
        tracing::info!(addr = %display_addr(l.local_addr()), "metrics on /metrics");
        let mut stop = stop_rx.clone();
        tokio::spawn(metrics::serve(l, metrics.clone(), async move {
            let _ = stop.changed().await;
        }));
    }

    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new requests; finishing the batch in flight");
        // Ends server streams (entries, checkpoint watches) so the
        // transport can finish its in-flight requests and return.
        let _ = stop_tx.send(true);
        let _ = fired_tx.send(());
    };
    let grace = config.shutdown_grace;
    let mut builder = tonic::transport::Server::builder()
        // A peer that stops answering pings is dropped instead of holding
        // its connection (and its streams' buffers) forever.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        // One connection cannot open unbounded concurrent streams.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        // A client that trickles or stalls its request holds a stream for
        // at most this long.
        .timeout(config.limits.request_timeout);
    on_ready().map_err(ServerError::Files)?;
    let router = builder
        .add_service(health)
        .add_service(reflection)
        .add_service(log);
    type Serving =
        std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;
    let serve: Serving = match tls {
        // Handshakes are ours (ingress), so failed ones are recorded.
        Some(acceptor) => Box::pin(router.serve_with_incoming_shutdown(
            ingress::TlsIncoming::new(listener, acceptor, ingress_audit),
            signal,
        )),
        None => Box::pin(router.serve_with_incoming_shutdown(
            // Without TCP_NODELAY, small answers wait for delayed ACKs (40 ms).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            signal,
        )),
    };
    // HTTP/2 graceful shutdown waits for each client to acknowledge a ping;
    // a stuck client must not keep the server up forever.
    let served = tokio::select! {
        r = serve => r,
        () = async {
            if fired_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(?grace, "connections still open after the grace period; closing them");
            Ok(())
        }
    };
    // The service (and with it the sequencer's queue) is dropped: the
    // sequencer finishes what was queued, then stops. The tiles listener
    // and the publisher hold it too; they end on the stop signal.
    drop(svc);
    for t in side_tasks {
        let _ = t.await;
    }
    if let Err(e) = seq_task.await {
        tracing::error!(error = %e, "sequencer task failed");
    }
    served?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Caches the summaries of the newest bottom tiles (as many as the cache
/// holds), in the background at start-up, so that proofs on a large log do
/// not each pay for reading and rehashing a whole tile until the cache has
/// filled by itself. Stops early on shutdown.
fn warm_tile_cache(
    store: &RocksStore,
    tiles: &tlog_core::merkle::cache::TileCache,
    size: u64,
    metrics: &Metrics,
    stop: &tokio::sync::watch::Receiver<bool>,
) {
    let started = std::time::Instant::now();
    let bottom = size.div_ceil(tlog_core::merkle::TILE_WIDTH);
    let n = bottom.min(tiles.summary_capacity() as u64);
    let prover = tlog_core::merkle::prove::Prover::with_cache(store, tiles);
    let mut warmed = 0u64;
    for t in (bottom - n..bottom).rev() {
        if *stop.borrow() {
            break;
        }
        if prover
            .inclusion_proof(t * tlog_core::merkle::TILE_WIDTH, size)
            .is_err()
        {
            break;
        }
        warmed += 1;
        metrics.tile_cache_warmed.set(warmed);
    }
    tracing::info!(
        tiles = warmed,
        seconds = started.elapsed().as_secs_f64(),
        "proof cache warmed"
    );
}

/// A listener's address for the log: the address, or why it is unknown
/// (never `Some(...)` in a log line).
fn display_addr(a: std::io::Result<std::net::SocketAddr>) -> String {
    match a {
        Ok(a) => a.to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}
