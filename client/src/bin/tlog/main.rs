//! `tlog`: submit artifact events to a transparency log and verify what it
//! says.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tlog_client::{Client, VerifiedEntry};
use tlog_core::event::{Action, Artifact, ArtifactEvent, Digest, Interface, Timestamp};

#[derive(Parser)]
#[command(
    name = "tlog",
    version,
    about = "Client of the model-artifact transparency log"
)]
struct Cli {
    /// The log server.
    #[arg(
        long,
        global = true,
        env = "TLOG_SERVER",
        default_value = "http://127.0.0.1:7400"
    )]
    server: String,
    /// The log's verifier key (name+hexid+base64key); pins whom to trust.
    #[arg(long, global = true, env = "TLOG_VKEY")]
    vkey: Option<String>,
    /// A file holding the verifier key.
    #[arg(long, global = true, env = "TLOG_VKEY_FILE")]
    vkey_file: Option<PathBuf>,
    /// CA certificate (PEM) for a TLS server (use an https:// address).
    #[arg(long, global = true, env = "TLOG_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the address's host).
    #[arg(long, global = true, env = "TLOG_TLS_DOMAIN")]
    tls_domain: Option<String>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, global = true, env = "TLOG_CERT_FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long, global = true, env = "TLOG_KEY_FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// Bearer token (e.g. from `tlog-server token mint`).
    #[arg(long, global = true, env = "TLOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Why you are asking (sent as x-tlog-justification; recorded).
    #[arg(long, global = true, env = "TLOG_JUSTIFICATION")]
    justification: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Submit one event and verify its inclusion proof.
    Submit(Box<SubmitArgs>),
    /// Print the latest checkpoint after verifying its signature.
    Checkpoint,
    /// Fetch entry INDEX and verify its inclusion in the latest checkpoint.
    Prove {
        /// The entry's index.
        index: u64,
    },
}

#[derive(clap::Args)]
struct SubmitArgs {
    /// The system reporting the event (idempotency key part).
    #[arg(long)]
    source: String,
    /// Unique id within the source (idempotency key part); retries with the
    /// same id return the original entry. Default: generated.
    #[arg(long)]
    event_id: Option<String>,
    /// register, upload, download, modify, approve, promote, deploy,
    /// rollback, retire, access-granted, access-revoked.
    #[arg(long)]
    action: String,
    /// Artifact name, e.g. team-a/fraud-model.
    #[arg(long)]
    artifact: String,
    /// Artifact version.
    #[arg(long)]
    version: String,
    /// Digest as ALGORITHM:HEX (repeatable), e.g. sha256:ab12...
    #[arg(long = "digest", required = true)]
    digests: Vec<String>,
    /// Who did it (default: $USER).
    #[arg(long)]
    actor: Option<String>,
    /// api, cli, ci-pipeline, registry-ui, sdk, other.
    #[arg(long, default_value = "cli")]
    interface: String,
    /// Environment or stage (required for promote, deploy, rollback).
    #[arg(long, default_value = "")]
    environment: String,
    /// Media type of the artifact.
    #[arg(long, default_value = "")]
    media_type: String,
    /// Where the artifact's bytes are.
    #[arg(long, default_value = "")]
    uri: String,
    /// Why.
    #[arg(long, default_value = "")]
    justification: String,
    /// Change or incident ticket.
    #[arg(long, default_value = "")]
    ticket: String,
    /// When it happened, RFC 3339 (e.g. 2026-11-30T18:00:00Z). Default:
    /// now, unless --event-id is given, so that repeating the same command
    /// is an idempotent retry.
    #[arg(long)]
    client_time: Option<String>,
}

fn build_event(a: SubmitArgs) -> anyhow::Result<ArtifactEvent> {
    let action = Action::parse(&a.action).with_context(|| {
        format!(
            "--action {:?} is not an action; use one of: {}",
            a.action,
            Action::ALL.map(|x| x.as_str()).join(", ")
        )
    })?;
    let interface = Interface::parse(&a.interface).with_context(|| {
        format!(
            "--interface {:?}: use api, cli, ci-pipeline, registry-ui, sdk or other",
            a.interface
        )
    })?;
    let digests = a
        .digests
        .iter()
        .map(|d| {
            let (alg, hex) = d.split_once(':').with_context(|| {
                format!("--digest {d:?}: write it as ALGORITHM:HEX, e.g. sha256:ab12...")
            })?;
            Ok(Digest {
                algorithm: alg.to_ascii_lowercase(),
                hex: hex.to_owned(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let now = Timestamp::now();
    let client_time = match (&a.client_time, &a.event_id) {
        (Some(t), _) => {
            let st = humantime::parse_rfc3339(t).with_context(|| {
                format!("--client-time {t:?}: use RFC 3339, e.g. 2026-11-30T18:00:00Z")
            })?;
            let d = st
                .duration_since(std::time::UNIX_EPOCH)
                .context("--client-time before 1970")?;
            Some(Timestamp {
                seconds: i64::try_from(d.as_secs()).context("--client-time too far ahead")?,
                nanos: d.subsec_nanos(),
            })
        }
        (None, Some(_)) => None,
        (None, None) => Some(now),
    };
    let event = ArtifactEvent {
        event_id: a.event_id.unwrap_or_else(|| {
            format!(
                "tlog-cli-{}-{}-{}",
                now.seconds,
                now.nanos,
                std::process::id()
            )
        }),
        source: a.source,
        action,
        artifact: Artifact {
            name: a.artifact,
            version: a.version,
            digests,
            media_type: a.media_type,
            uri: a.uri,
        },
        actor: a
            .actor
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into()),
        interface,
        environment: a.environment,
        client_time,
        provenance: None,
        justification: a.justification,
        ticket: a.ticket,
        attestations: Vec::new(),
    };
    if let Err(e) = event.validate() {
        bail!("the event is not valid: {e} (fix the matching flag)");
    }
    Ok(event)
}

/// A command with its local input already checked.
enum Job {
    Submit(Box<ArtifactEvent>),
    Checkpoint,
    Prove(u64),
}

fn print_entry(e: &VerifiedEntry) {
    println!("index:       {}", e.index);
    println!("leaf hash:   {}", e.leaf_hash);
    println!(
        "checkpoint:  size {} root {}",
        e.checkpoint.checkpoint.size, e.checkpoint.checkpoint.root
    );
    println!(
        "verified:    inclusion proof ({} hashes) against the checkpoint signed by {}{}",
        e.proof.len(),
        e.checkpoint.checkpoint.origin,
        if e.duplicate {
            " (existing entry: this event was already in the log)"
        } else {
            ""
        }
    );
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let vkey = match (cli.vkey, cli.vkey_file) {
        (Some(k), _) => k,
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("cannot read --vkey-file {}", f.display()))?,
        (None, None) => bail!("give the log's verifier key with --vkey, --vkey-file or TLOG_VKEY"),
    };
    // Check local input before touching the network.
    let job = match cli.command {
        Command::Submit(a) => Job::Submit(Box::new(build_event(*a)?)),
        Command::Checkpoint => Job::Checkpoint,
        Command::Prove { index } => Job::Prove(index),
    };
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p).with_context(|| format!("cannot read {what} {}", p.display()))
    };
    let opts = tlog_client::ConnectOptions {
        ca_pem: cli
            .ca_file
            .as_ref()
            .map(|p| read(p, "--ca-file"))
            .transpose()?,
        tls_domain: cli.tls_domain,
        identity: match (&cli.cert_file, &cli.key_file) {
            (Some(c), Some(k)) => Some((read(c, "--cert-file")?, read(k, "--key-file")?)),
            _ => None,
        },
        token: cli.token,
        justification: cli.justification,
    };
    let mut client = Client::connect_with(&cli.server, &vkey, &opts).await?;
    match job {
        Job::Submit(event) => print_entry(&client.append(&event).await?),
        Job::Checkpoint => {
            let cp = client.checkpoint().await?;
            print!("{}", cp.raw);
            eprintln!("verified: signature by {}", cp.checkpoint.origin);
        }
        Job::Prove(index) => print_entry(&client.prove_index(index).await?),
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tlog: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tlog: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
