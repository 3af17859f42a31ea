//! `tlog-server`: create a log (`init`), run it (`serve`), and the
//! operator's other tasks (tokens, health, backups, stats, recovery).
//! Benchmarks and loaders are in `tlog-bench`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tlog_server::ops::config::{Config, LogFormat};

/// mimalloc instead of glibc's malloc: the server allocates and frees small
/// buffers for every request (HTTP/2 frames, protobuf messages, RocksDB
/// blocks), and glibc's malloc took about a tenth of its CPU serving proofs.
/// Built without transparent huge pages (`no_thp`): where the kernel makes
/// them by default, mimalloc's per-thread memory came in 2 MiB pages, and
/// 256 appending clients (about 200 threads) took the server to 583 MiB
/// instead of 148 with glibc; without them, 256-295 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tlog-server",
    version,
    about = "Transparency log server for model artifacts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory with a new Ed25519 signing key and print the
    /// log's verifier key.
    Init {
        /// Data directory to create.
        #[arg(long, env = "TLOG_DATA_DIR")]
        data_dir: PathBuf,
        /// The log's origin (checkpoint first line and key name), e.g.
        /// `models.example.com/log`. With --adopt, the key's name (and
        /// checked against it if given).
        #[arg(long, env = "TLOG_ORIGIN", required_unless_present = "adopt")]
        origin: Option<String>,
        /// Where to write the signing key (default `<data-dir>/log.key`);
        /// with --adopt, the existing key to use.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Use the existing key at --key-file (made by an earlier `init`,
        /// handed over as a secret) instead of making one, and create the
        /// log only if the data directory holds none: a directory that
        /// already holds this key's log is left alone (exit 0), one with
        /// another log is refused. For a Kubernetes init container.
        #[arg(long, requires = "key_file")]
        adopt: bool,
    },
    /// Run the log.
    Serve(ServeArgs),
    /// Operator keys and short-lived bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Restore an online backup (written on SIGUSR1 under `backup_dir`)
    /// into a new data directory, and check it: the stored tree must give
    /// the root of its last signed checkpoint.
    Restore {
        /// The backup folder (holding db/ and verifier.key).
        #[arg(long)]
        from: PathBuf,
        /// The new data directory (must not hold a log).
        #[arg(long, env = "TLOG_DATA_DIR")]
        data_dir: PathBuf,
        /// The signing key to put beside it (copied as log.key, mode 0600).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Bring a stopped log's store back to the latest state the log
    /// signed: re-import the entries it lacks from a copy of the log
    /// (`--from`, every entry and checkpoint verified, the store and the
    /// checkpoint lock proven prefixes of the copy), or adopt the store as
    /// that state (`--adopt-store`, only without a lock it contradicts).
    #[command(group = clap::ArgGroup::new("how").required(true).args(["from", "adopt_store"]))]
    Recover {
        /// Data directory of the stopped log to bring back.
        #[arg(long, env = "TLOG_DATA_DIR")]
        data_dir: PathBuf,
        /// A copy of the log: another data directory, a backup folder, or
        /// a store folder.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Write the store's latest checkpoint as the checkpoint lock: you
        /// state that the log never handed out a later one.
        #[arg(long)]
        adopt_store: bool,
        /// The server's configuration, for its `checkpoint_lock` setting.
        #[arg(long, env = "TLOG_CONFIG")]
        config: Option<PathBuf>,
        /// The checkpoint lock (default: from --config, else
        /// `<data-dir>/checkpoint.lock`).
        #[arg(long)]
        checkpoint_lock: Option<PathBuf>,
    },
    /// Ask a running log whether it serves (grpc.health.v1): exit 0 if
    /// SERVING, 1 otherwise. For container health checks and probes.
    Health(HealthArgs),
    /// Disk use of a stopped log: bytes per column family, the payload
    /// (leaf bytes), and what is stored per entry beyond the leaves.
    Stats {
        /// Data directory (the server must be stopped: RocksDB locks it).
        #[arg(long, env = "TLOG_DATA_DIR")]
        data_dir: PathBuf,
        /// Compact fully first, as a long-running log would be.
        #[arg(long)]
        compact: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the log as static C2SP tiles (c2sp.org/tlog-tiles) into a
    /// directory any web server can serve, or an S3-compatible bucket
    /// (`--to s3://BUCKET[/PREFIX]`; credentials from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY): every tile and entry bundle the
    /// tree has grown since the directory's checkpoint, then the new
    /// checkpoint last. Reads the store without locking it, so it runs
    /// beside a serving server (or set `[publish]` to have `serve` do it).
    Publish {
        /// Data directory of the log.
        #[arg(long, env = "TLOG_DATA_DIR")]
        data_dir: PathBuf,
        /// The directory to write (created if missing), or
        /// s3://BUCKET[/PREFIX].
        #[arg(long)]
        to: PathBuf,
        /// The S3 endpoint, e.g. http://127.0.0.1:3900 (default: AWS).
        #[arg(long, env = "AWS_ENDPOINT")]
        s3_endpoint: Option<String>,
        /// The S3 region.
        #[arg(long, env = "AWS_REGION")]
        s3_region: Option<String>,
        /// Keep publishing, this often (e.g. 2s); default: once.
        #[arg(long, value_parser = humantime::parse_duration)]
        watch: Option<std::time::Duration>,
    },
}

#[derive(clap::Args)]
struct HealthArgs {
    /// The log's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:7400")]
    addr: String,
    /// The service to ask about; empty for the server as a whole.
    #[arg(long, default_value = "tlog.v1.Log")]
    service: String,
    /// CA certificate (PEM) for an https:// address.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Name the server's certificate must carry.
    #[arg(long, default_value = "localhost")]
    tls_domain: String,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
}

/// Copies a backup into `data_dir` and checks the copy.
fn restore(
    from: &std::path::Path,
    data_dir: &std::path::Path,
    key_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    use tlog_server::storage::LogStore as _;
    let src = from.join("db");
    anyhow::ensure!(
        src.join("CURRENT").is_file(),
        "{} is not a backup: it has no db/CURRENT (backups are the folders SIGUSR1 writes under backup_dir)",
        from.display()
    );
    let db = tlog_server::ops::keys::db_path(data_dir);
    anyhow::ensure!(
        !db.exists(),
        "{} already holds a log; restore into a new data directory",
        data_dir.display()
    );
    std::fs::create_dir_all(&db).with_context(|| format!("create {}", db.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
    for e in std::fs::read_dir(&src).with_context(|| format!("read {}", src.display()))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), db.join(e.file_name()))
                .with_context(|| format!("copy {}", e.path().display()))?;
        }
    }
    std::fs::copy(from.join("verifier.key"), data_dir.join("verifier.key"))
        .context("copy verifier.key")?;
    if let Some(k) = key_file {
        let to = data_dir.join("log.key");
        std::fs::copy(k, &to).with_context(|| format!("copy {}", k.display()))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
    }
    // The copy must be a whole log: its tree gives its signed root.
    let store = tlog_server::storage::RocksStore::open_read_only(&db)?;
    let meta = store.meta()?.context("the backup holds no log")?;
    let note = store
        .checkpoint(meta.size)?
        .with_context(|| format!("the backup has no checkpoint at its size {}", meta.size))?;
    let verifier = tlog_core::note::Verifier::from_vkey(&meta.vkey)
        .map_err(|e| anyhow::anyhow!("stored verifier key: {e}"))?;
    let opened = tlog_core::checkpoint::open_stored(
        &note,
        &tlog_core::note::Verifiers::new([verifier]),
        &meta.origin,
        meta.size,
    )
    .map_err(|e| anyhow::anyhow!("the backup's checkpoint: {e}"))?;
    let tree = tlog_core::merkle::tree::Tree::open(&store, meta.size)
        .map_err(|e| anyhow::anyhow!("the backup's tree cannot be read: {e}"))?;
    anyhow::ensure!(
        tree.root() == opened.checkpoint.root,
        "the backup's tree gives root {} at size {}, its checkpoint says {}",
        tree.root(),
        meta.size,
        opened.checkpoint.root
    );
    println!(
        "restored {} at size {} (root {}); its checkpoint verifies",
        meta.origin, meta.size, opened.checkpoint.root
    );
    eprintln!(
        "Entries appended after this backup are not in it, and the server will not append to \
         it until it is shown to hold the latest checkpoint the log signed: start it with the \
         log's checkpoint lock (the `checkpoint_lock` setting, or copy checkpoint.lock from \
         the old data directory). If the lock is ahead of the backup, the server refuses to \
         start; re-import the missing entries with `tlog-server recover --data-dir {} --from \
         <copy of the log>`. See deploy/KEYS.md, \"Restoring\".",
        data_dir.display()
    );
    Ok(())
}

/// `tlog-server recover`.
fn recover(
    data_dir: &std::path::Path,
    from: Option<&std::path::Path>,
    adopt: bool,
    config: Option<PathBuf>,
    lock: Option<PathBuf>,
) -> anyhow::Result<()> {
    let lock = match (lock, config) {
        (Some(l), _) => l,
        (None, Some(c)) => {
            let mut cfg = Config::from_file(&c)?;
            cfg.data_dir = data_dir.to_owned();
            cfg.lock_path()
        }
        (None, None) => tlog_server::ops::keys::lock_path(data_dir),
    };
    let done = match (from, adopt) {
        (Some(from), false) => tlog_server::ops::recover::recover_from(data_dir, &lock, from)?,
        (None, true) => tlog_server::ops::recover::adopt_store(data_dir, &lock)?,
        _ => anyhow::bail!("give exactly one of --from <copy> and --adopt-store"),
    };
    if done.from == done.to {
        println!(
            "the store is at size {} (root {}); checkpoint lock {} holds it",
            done.to,
            done.root,
            lock.display()
        );
    } else {
        println!(
            "re-imported entries {}..{}; the store is at size {} (root {}), every entry and \
             checkpoint verified; checkpoint lock {} holds it",
            done.from,
            done.to,
            done.to,
            done.root,
            lock.display()
        );
    }
    Ok(())
}

/// `grpc.health.v1.Health/Check` against a running log.
async fn health(a: HealthArgs) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut endpoint = tonic::transport::Channel::from_shared(a.addr.clone())
        .context("--addr is not a URL like http://127.0.0.1:7400")?
        .connect_timeout(a.timeout)
        .timeout(a.timeout);
    if let Some(ca) = &a.ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        endpoint = endpoint.tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem))
                .domain_name(a.tls_domain.clone()),
        )?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", a.addr))?;
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: a.service.clone(),
        })
        .await
        .with_context(|| format!("health check of {:?} at {}", a.service, a.addr))?
        .into_inner()
        .status();
    anyhow::ensure!(
        status == ServingStatus::Serving,
        "{:?} at {} is {}",
        a.service,
        a.addr,
        status.as_str_name()
    );
    println!("{} SERVING", a.addr);
    Ok(())
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an Ed25519 token-signing key (PKCS#8 PEM, mode 0600) and the
    /// JWK set to list under `auth.token_issuers[].jwks_file`.
    Keygen {
        /// Key ID written into tokens and the JWK set.
        #[arg(long)]
        kid: String,
        /// Where to write the private key.
        #[arg(long)]
        key_out: PathBuf,
        /// Where to write the JWK set (public).
        #[arg(long)]
        jwks_out: PathBuf,
    },
    /// Issue a short-lived token, for automation and tests.
    Mint {
        /// The signing key (from `token keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Its key ID.
        #[arg(long)]
        kid: String,
        /// `iss`: must match a configured issuer.
        #[arg(long)]
        issuer: String,
        /// `aud`: the server's configured audience.
        #[arg(long)]
        audience: String,
        /// `sub`: the principal.
        #[arg(long)]
        subject: String,
        /// Roles (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime, e.g. 15m.
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
}

fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use tlog_server::access::tokens;
    match cmd {
        TokenCommand::Keygen {
            kid,
            key_out,
            jwks_out,
        } => {
            let (pem, jwks) = tokens::keygen(&kid)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_out)
                .with_context(|| {
                    format!(
                        "cannot create {} (it must not exist yet)",
                        key_out.display()
                    )
                })?;
            f.write_all(pem.as_bytes())?;
            std::fs::write(&jwks_out, jwks)
                .with_context(|| format!("write {}", jwks_out.display()))?;
            eprintln!(
                "key {kid}: private key in {}, JWK set in {}",
                key_out.display(),
                jwks_out.display()
            );
        }
        TokenCommand::Mint {
            key,
            kid,
            issuer,
            audience,
            subject,
            roles,
            ttl,
        } => {
            let pem = std::fs::read(&key)
                .with_context(|| format!("cannot read --key {}", key.display()))?;
            let t = tokens::mint(
                &pem,
                &tokens::MintRequest {
                    issuer,
                    audience,
                    subject,
                    roles,
                    ttl,
                    kid,
                },
                tokens::now_secs(),
            )?;
            println!("{t}");
        }
    }
    Ok(())
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file; flags and environment override it.
    #[arg(long, env = "TLOG_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, env = "TLOG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Signing key file.
    #[arg(long, env = "TLOG_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// gRPC listen address (port 0 picks a free port).
    #[arg(long, env = "TLOG_LISTEN")]
    listen: Option<SocketAddr>,
    /// Prometheus /metrics listen address.
    #[arg(long, env = "TLOG_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Principal recorded for callers until authentication is configured.
    #[arg(long, env = "TLOG_DEFAULT_PRINCIPAL")]
    default_principal: Option<String>,
    /// Log format: human or json.
    #[arg(long, env = "TLOG_LOG_FORMAT")]
    log_format: Option<String>,
    /// Write the bound addresses to this file once listening (for scripts
    /// and tests that use port 0): gRPC on the first line, then metrics if
    /// configured, then `http=<addr>` for the tiles listener.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

/// Logs to standard error through a background thread: a request formats
/// its line and queues it; the thread writes queued lines together and
/// flushes whenever the queue is empty. A request no longer waits for a
/// `write` of its own line (one system call per request, a few percent of
/// the server's CPU when serving proofs). The queue is not lossy: when it
/// is full, requests wait for it. The returned guard flushes what is queued
/// when dropped, at exit.
/// `tlog-server init`: a new log with a new key, or (`--adopt`) a log
/// for an existing key.
fn init(
    data_dir: &std::path::Path,
    origin: Option<&str>,
    key_file: Option<&std::path::Path>,
    adopt: bool,
) -> anyhow::Result<()> {
    use tlog_server::ops::keys::{self, Adopted};
    let (vkey, created) = match (adopt, key_file, origin) {
        (true, Some(key), _) => {
            let signer = keys::load_signer(key)?;
            if let Some(o) = origin
                && o != signer.name()
            {
                anyhow::bail!(
                    "--origin {o:?} is not the name of the key in {} ({:?}): an adopted key's \
                     name is the log's origin; leave --origin out",
                    key.display(),
                    signer.name()
                );
            }
            match keys::adopt(data_dir, key)? {
                Adopted::Created(v) => (v, true),
                Adopted::AlreadyThere(v) => (v, false),
            }
        }
        (false, _, Some(origin)) => (keys::init(data_dir, origin, key_file)?, true),
        _ => anyhow::bail!("give --origin (or --adopt with --key-file)"),
    };
    let name = vkey.split('+').next().unwrap_or_default();
    println!("{vkey}");
    if created {
        eprintln!(
            "created log {name} in {}; its verifier key (above) is also in {}",
            data_dir.display(),
            data_dir.join("verifier.key").display()
        );
    } else {
        eprintln!(
            "{} already holds log {name} for this key; nothing changed",
            data_dir.display()
        );
    }
    Ok(())
}

fn init_tracing(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("tlog-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colours only for a terminal: a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        // A log write that fails (a full disk) is dropped. The default
        // reports it with eprintln!, which panics when stderr itself
        // cannot be written, and took the request down with it.
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
    guard
}

fn load_config(a: &ServeArgs) -> anyhow::Result<Config> {
    let mut c = match &a.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if let Some(v) = &a.data_dir {
        c.data_dir = v.clone();
    }
    if let Some(v) = &a.key_file {
        c.key_file = Some(v.clone());
    }
    if let Some(v) = a.listen {
        c.listen = v;
    }
    if let Some(v) = a.metrics_listen {
        c.metrics_listen = Some(v);
    }
    if let Some(v) = &a.default_principal {
        c.default_principal = v.clone();
    }
    if let Some(v) = &a.log_format {
        c.log_format = match v.as_str() {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => anyhow::bail!("--log-format: {other:?} is not human or json"),
        };
    }
    c.validate()?;
    Ok(c)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on SIGKILL.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&a)?;
    let _log = init_tracing(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics = match config.metrics_listen {
        Some(m) => Some(
            tokio::net::TcpListener::bind(m)
                .await
                .with_context(|| format!("cannot listen for metrics on {m}"))?,
        ),
        None => None,
    };
    let http = match &config.http {
        Some(h) => Some(
            tokio::net::TcpListener::bind(h.listen)
                .await
                .with_context(|| format!("cannot listen for HTTP (tiles) on {}", h.listen))?,
        ),
        None => None,
    };
    let mut text = format!("{addr}\n");
    if let Some(m) = &metrics {
        text.push_str(&format!("{}\n", m.local_addr()?));
    }
    if let Some(h) = &http {
        text.push_str(&format!("http={}\n", h.local_addr()?));
    }
    let ready_file = a.ready_file.clone();
    // Written only once every start-up check has passed: a server that
    // refuses to start never looks ready to a script.
    let ready = move || -> Result<(), String> {
        tracing::info!(%addr, "listening");
        let Some(path) = ready_file else {
            return Ok(());
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("--ready-file {}: {e}", path.display()))
    };
    tlog_server::serve_on(
        tlog_server::Listeners {
            grpc: listener,
            metrics,
            http,
        },
        config,
        shutdown_signal(),
        ready,
    )
    .await?;
    Ok(())
}

/// `tlog-server publish`: one round, or one per `watch` interval.
fn publish(
    data_dir: &std::path::Path,
    to: &std::path::Path,
    watch: Option<std::time::Duration>,
    s3: tlog_server::ops::config::S3Section,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use tlog_server::storage::LogStore as _;
    // An object store is written through the async runtime; this thread
    // blocks on each write.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let target = {
        let _guard = rt.enter();
        tlog_server::publish::target_for(to, &s3)?
    };
    let metrics = tlog_server::ops::metrics::Metrics::default();
    let path = tlog_server::ops::keys::db_path(data_dir);
    loop {
        // Opened afresh each round: a read-only view sees what the serving
        // process had written when it was opened.
        let store = tlog_server::storage::RocksStore::open_read_only(&path)
            .with_context(|| format!("open {}", path.display()))?;
        let meta = store
            .meta()?
            .context("the data directory holds no log: run `tlog-server init` first")?;
        let verifier = tlog_core::note::Verifier::from_vkey(&meta.vkey)
            .map_err(|e| anyhow::anyhow!("the store's verifier key: {e}"))?;
        let known = tlog_core::note::Verifiers::new([verifier]);
        let p =
            tlog_server::publish::publish(&store, target.as_ref(), &known, &meta.origin, &metrics)?;
        if p.files > 0 || watch.is_none() {
            eprintln!(
                "published {} files to {}: size {} -> {}",
                p.files,
                to.display(),
                p.from,
                p.to
            );
        }
        match watch {
            Some(d) => std::thread::sleep(d),
            None => return Ok(()),
        }
    }
}

/// Total bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|list| {
            list.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn stats(data_dir: &std::path::Path, compact: bool, json: bool) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use tlog_server::storage::LogStore as _;
    let path = tlog_server::ops::keys::db_path(data_dir);
    let store = tlog_server::storage::RocksStore::open(&path)
        .with_context(|| format!("open {} (is the server still running?)", path.display()))?;
    let size = store
        .meta()?
        .map(|m| m.size)
        .context("not a log: run tlog-server init")?;
    if compact {
        store.compact_all()?;
    }
    let cfs = store.column_family_sizes()?;
    let payload = store.payload_bytes()?;
    drop(store);
    let on_disk = dir_bytes(&path);
    let sst: u64 = cfs.iter().map(|c| c.sst_bytes).sum();
    // What the log keeps besides the leaves themselves: tree hashes,
    // indexes, checkpoints (the leaves are stored compressed, so the
    // folder can be smaller than the payload).
    let leaves = cfs
        .iter()
        .filter(|c| c.name == "entries")
        .map(|c| c.sst_bytes)
        .sum::<u64>();
    let overhead = sst.saturating_sub(leaves);
    let per = |b: u64| {
        if size == 0 {
            0.0
        } else {
            b as f64 / size as f64
        }
    };
    if json {
        let v = serde_json::json!({
            "entries": size,
            "payload_bytes": payload,
            "sst_bytes": sst,
            "on_disk_bytes": on_disk,
            "leaf_bytes_stored": leaves,
            "overhead_bytes_per_entry": per(overhead),
            "column_families": cfs.iter().map(|c| serde_json::json!({
                "name": c.name, "sst_bytes": c.sst_bytes, "keys": c.keys,
                "bytes_per_entry": per(c.sst_bytes),
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("entries:                 {size}");
    println!(
        "payload (leaf bytes):    {payload} ({:.1} per entry)",
        per(payload)
    );
    println!(
        "on disk (db folder):     {on_disk} ({:.1} per entry; table files {sst})",
        per(on_disk)
    );
    println!(
        "leaves as stored:        {leaves} ({:.1} per entry, compressed)",
        per(leaves)
    );
    println!(
        "beyond the leaves:       {:.1} bytes per entry (tree hashes, indexes, checkpoints)",
        per(overhead)
    );
    for c in &cfs {
        println!(
            "  {:<12} {:>14} bytes {:>8.1} per entry  ~{} keys",
            c.name,
            c.sst_bytes,
            per(c.sst_bytes),
            c.keys
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init {
            data_dir,
            origin,
            key_file,
            adopt,
        } => init(&data_dir, origin.as_deref(), key_file.as_deref(), adopt),
        Command::Serve(a) => runtime().and_then(|rt| rt.block_on(serve(a))),
        Command::Token(t) => token(t),
        Command::Health(a) => runtime().and_then(|rt| rt.block_on(health(a))),
        Command::Restore {
            from,
            data_dir,
            key_file,
        } => restore(&from, &data_dir, key_file.as_deref()),
        Command::Stats {
            data_dir,
            compact,
            json,
        } => stats(&data_dir, compact, json),
        Command::Publish {
            data_dir,
            to,
            watch,
            s3_endpoint,
            s3_region,
        } => publish(
            &data_dir,
            &to,
            watch,
            tlog_server::ops::config::S3Section {
                endpoint: s3_endpoint,
                region: s3_region,
                ..Default::default()
            },
        ),
        Command::Recover {
            data_dir,
            from,
            adopt_store,
            config,
            checkpoint_lock,
        } => recover(
            &data_dir,
            from.as_deref(),
            adopt_store,
            config,
            checkpoint_lock,
        ),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "tlog-server: {}",
                tlog_core::text::join_causes(e.chain().map(|c| c.to_string()))
            );
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
