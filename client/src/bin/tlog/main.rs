//! `tlog`: submit artifact events to a transparency log, verify what it
//! says, investigate an artifact's history and export evidence.
//!
//! Exit codes: 0 ok; 1 a verification failure or log misbehavior; 2 a
//! usage or input error; 3 a server or network error.

mod config;
mod output;
mod plan;
mod report;

use plan::{Offline, Online, Plan, QueryOutput};

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tlog_client::{ArtifactQuery, Client, ClientError};
use tlog_core::Hash;
use tlog_core::bundle::Bundle;
use tlog_core::event::{Action, Artifact, ArtifactEvent, Interface, Timestamp};
use tlog_core::json::{JsonEventError, format_time, parse_digest, parse_time};
use tlog_core::note::Signer;

#[derive(Parser)]
#[command(
    name = "tlog",
    version,
    about = "Client of the model-artifact transparency log: every answer is verified",
    after_help = "Examples:\n  \
                  export TLOG_SERVER=https://log.example.com:7400 TLOG_VKEY=\"$(cat verifier.key)\"\n  \
                  tlog submit --action upload --artifact team-a/fraud --version 1.4.2 --digest sha256:<hex>\n  \
                  tlog submit --jsonl events.jsonl --sign-key release.key\n  \
                  tlog --justification INC-42 query --artifact team-a/fraud --since 7d\n  \
                  tlog export --artifact team-a/fraud -o fraud.bundle.json\n  \
                  tlog verify-bundle fraud.bundle.json --vkey \"$TLOG_VKEY\"\n  \
                  tlog prove 42 --format tlog-proof -o entry42.tlog-proof\n  \
                  tlog verify-proof entry42.tlog-proof --vkey \"$TLOG_VKEY\"\n  \
                  tlog completions bash > ~/.local/share/bash-completion/completions/tlog\n\n\
                  Exit codes: 0 ok, 1 verification failure or log misbehavior, 2 usage or input error, \
                  3 server or network error, 4 refused by the log's access control.\n\
                  Settings come from flags, then TLOG_* environment variables, then the config file \
                  (--config, TLOG_CONFIG, or ~/.config/tlog/config.toml)."
)]
struct Cli {
    #[command(flatten)]
    g: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(clap::Args, Default)]
pub struct Global {
    /// Config file (TOML) with defaults for these options.
    #[arg(long, global = true, env = "TLOG_CONFIG")]
    config: Option<PathBuf>,
    /// The log server, e.g. http://127.0.0.1:7400 (https:// for TLS).
    #[arg(long, global = true, env = "TLOG_SERVER")]
    server: Option<String>,
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
    #[arg(long, global = true, env = "TLOG_CERT_FILE")]
    cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long, global = true, env = "TLOG_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Bearer token (e.g. from `tlog-server token mint`).
    #[arg(long, global = true, env = "TLOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the bearer token.
    #[arg(long, global = true, env = "TLOG_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Why you are asking: request metadata (the x-tlog-justification
    /// header) that the server's access log and the policy see; it is not
    /// part of any event. For an event's own reason use `submit --reason`.
    #[arg(long, global = true, env = "TLOG_JUSTIFICATION")]
    justification: Option<String>,
    /// Trusted-state file: the newest verified checkpoint; every newer one
    /// must be proven consistent with it. Default:
    /// `~/.local/state/tlog/<origin>-<keyid>.checkpoint`.
    #[arg(long, global = true, env = "TLOG_STATE")]
    state: Option<PathBuf>,
    /// A witness policy (c2sp.org/tlog-policy): trust a checkpoint only
    /// when the log signed it and the policy's quorum of witnesses
    /// cosigned it, online and in verify-bundle and verify-proof.
    #[arg(long, global = true, env = "TLOG_POLICY")]
    policy: Option<PathBuf>,
    /// Read the log from its C2SP tiles under this URL (the server's
    /// `[http]` listener, or a static mirror behind any web server) instead
    /// of --server: checkpoints, entries and proofs, verified the same way.
    /// Appends and artifact queries need --server.
    #[arg(long, global = true, env = "TLOG_TILES")]
    tiles: Option<String>,
    /// Keep no trusted state between runs.
    #[arg(long, global = true, env = "TLOG_NO_STATE", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    no_state: bool,
    /// Time limit per call, e.g. 30s.
    #[arg(long, global = true, env = "TLOG_TIMEOUT", value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Retries of a failed append (with backoff).
    #[arg(long, global = true, env = "TLOG_RETRIES")]
    retries: Option<u32>,
    /// Machine-readable JSON on stdout instead of text (TLOG_JSON=1,
    /// true, yes or on).
    #[arg(long, global = true, env = "TLOG_JSON", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Submit events (from flags, a JSON file, or JSONL on stdin) and
    /// verify each one's inclusion proof.
    Submit(Box<SubmitArgs>),
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout: `tlog man > tlog.1`.
    Man,
    /// Create an Ed25519 key for signing events (`submit --sign-key`).
    Keygen {
        /// The signer's name (the attestation's key_id), e.g. release-pipeline.
        #[arg(long)]
        name: String,
        /// Where to write the private key (mode 0600).
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// Print the latest checkpoint after verifying its signature and its
    /// consistency with the trusted one.
    Checkpoint,
    /// Fetch an entry by index or leaf hash, verify it, and show it.
    Get {
        /// Index, or leaf hash (64 hex digits).
        entry: String,
    },
    /// Fetch an entry by index or leaf hash and verify its inclusion proof;
    /// shows the proof.
    Prove {
        /// Index, or leaf hash (64 hex digits).
        entry: String,
        /// text (show the proof) or tlog-proof (write a c2sp.org/tlog-proof
        /// file: the entry, its proof and the signed checkpoint, which
        /// `tlog verify-proof` checks with no network).
        #[arg(long, default_value = "text")]
        format: String,
        /// With --format tlog-proof: the file to write (default stdout).
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
    /// Verify a .tlog-proof file (c2sp.org/tlog-proof) with no network:
    /// the checkpoint's signature by the pinned key, and the entry it
    /// carries at its index in that checkpoint's tree.
    VerifyProof {
        /// The proof file.
        file: PathBuf,
    },
    /// Prove the log at SIZE2 (default: latest) extends the log at SIZE1.
    Consistency {
        /// The older size.
        size1: u64,
        /// The newer size (default: the latest).
        size2: Option<u64>,
    },
    /// Follow new checkpoints, verifying each and its consistency with the
    /// one before.
    Watch {
        /// Stop after this many checkpoints.
        #[arg(long)]
        count: Option<u64>,
        /// Poll this often when the log cannot stream checkpoints.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// An artifact's history, each entry verified.
    Query(QueryArgs),
    /// Write an evidence bundle (entries, proofs, signed checkpoint, key)
    /// for an artifact's history, verifiable offline.
    Export {
        #[command(flatten)]
        q: QueryArgs,
        /// The bundle file to write.
        #[arg(long, short = 'o')]
        out: PathBuf,
        /// Also write one c2sp.org/tlog-proof file per entry into this
        /// folder (`<index>.tlog-proof`).
        #[arg(long)]
        proofs: Option<PathBuf>,
    },
    /// Verify an evidence bundle with no network.
    VerifyBundle {
        /// The bundle file.
        file: PathBuf,
    },
    /// An investigator's timeline of an artifact, each line verified.
    Report {
        #[command(flatten)]
        q: QueryArgs,
        /// md, html or json.
        #[arg(long, default_value = "md")]
        format: String,
        /// Write to this file instead of stdout.
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        /// Build the report from an evidence bundle (verified offline)
        /// instead of asking the log.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
}

#[derive(clap::Args, Clone)]
struct QueryArgs {
    /// Artifact name (exact), e.g. team-a/fraud-model.
    #[arg(long)]
    artifact: String,
    /// Only this version.
    #[arg(long)]
    version: Option<String>,
    /// Only this action.
    #[arg(long)]
    action: Option<String>,
    /// Integrated at or after this time: RFC 3339, a day (2026-01-01,
    /// midnight UTC) or a time ago (7d, 12h, 30m).
    #[arg(long)]
    since: Option<String>,
    /// Integrated before this time (the same forms as --since).
    #[arg(long)]
    until: Option<String>,
}

#[derive(clap::Args)]
struct SubmitArgs {
    /// Read events from this JSON file (one object or an array; - for
    /// stdin).
    #[arg(long, conflicts_with_all = ["jsonl", "action"])]
    file: Option<PathBuf>,
    /// Read one JSON event per line from this file or stdin (-), and
    /// submit them in batches. Every line is checked before anything is
    /// sent.
    #[arg(long, num_args = 0..=1, default_missing_value = "-", conflicts_with = "action")]
    jsonl: Option<PathBuf>,
    /// Events per batch for --file and --jsonl.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// With --file or --jsonl: print every event's entry, not only the
    /// closing summary (--json always prints one line per event).
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Sign each event with this Ed25519 key (from `tlog keygen`).
    #[arg(long)]
    sign_key: Option<PathBuf>,
    /// The system reporting the event (idempotency key part).
    #[arg(long, required_unless_present_any = ["file", "jsonl"])]
    source: Option<String>,
    /// Unique id within the source (idempotency key part); retries with the
    /// same id return the original entry. Default: generated.
    #[arg(long)]
    event_id: Option<String>,
    /// register, upload, download, modify, approve, promote, deploy,
    /// rollback, retire, access-granted, access-revoked.
    #[arg(long, required_unless_present_any = ["file", "jsonl"])]
    action: Option<String>,
    /// Artifact name, e.g. team-a/fraud-model.
    #[arg(long, required_unless_present_any = ["file", "jsonl"])]
    artifact: Option<String>,
    /// Artifact version.
    #[arg(long, required_unless_present_any = ["file", "jsonl"])]
    version: Option<String>,
    /// Digest as ALGORITHM:HEX (repeatable), e.g. sha256:ab12...
    #[arg(long = "digest")]
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
    /// The event's own reason (its `justification` field, in the leaf and
    /// in reports), e.g. why a version is approved. Not the request's
    /// `--justification`, which goes to the access log only.
    #[arg(long = "reason", default_value = "")]
    reason: String,
    /// Change or incident ticket.
    #[arg(long, default_value = "")]
    ticket: String,
    /// When it happened, RFC 3339 (e.g. 2026-11-30T18:00:00Z). Default:
    /// now, unless --event-id is given, so that repeating the same command
    /// is an idempotent retry.
    #[arg(long)]
    client_time: Option<String>,
}

/// A failure with its exit code, and the evidence when the log
/// misbehaved (both checkpoints and the proof, for `--json`).
pub struct Failure {
    code: u8,
    error: anyhow::Error,
    evidence: Option<Box<tlog_client::Misbehavior>>,
}

impl Failure {
    /// Exit 2: the caller's input.
    pub fn usage(e: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 2,
            error: e.into(),
            evidence: None,
        }
    }
    /// Exit 1: verification failed.
    pub fn verification(e: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 1,
            error: e.into(),
            evidence: None,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = if e.is_verification() {
            1
        } else if e.is_usage() || matches!(e, ClientError::State(_)) {
            2
        } else if matches!(
            e,
            ClientError::Refused {
                code: tonic::Code::PermissionDenied | tonic::Code::Unauthenticated,
                ..
            }
        ) {
            // Refused by the log's access control: not the network's fault.
            4
        } else {
            3
        };
        let hint = match &e {
            ClientError::Connect { .. } | ClientError::Transport(_) => {
                " (is the server running at that address? set --server or TLOG_SERVER)"
            }
            ClientError::Refused {
                code: tonic::Code::Unauthenticated,
                ..
            } => " (give a token with --token or TLOG_TOKEN, or a client certificate)",
            ClientError::Refused {
                code: tonic::Code::PermissionDenied,
                ..
            } => {
                " (refused by the log's access policy; if the reason does not say what would satisfy it, ask the log's operator)"
            }
            ClientError::Refused {
                code: tonic::Code::Unavailable | tonic::Code::ResourceExhausted,
                ..
            } => " (the log is overloaded or unavailable; try again later)",
            _ => "",
        };
        let evidence = match &e {
            ClientError::Misbehavior(m) => Some(m.clone()),
            _ => None,
        };
        // The transport's own words ("connection refused", "certificate
        // not trusted") are in the error's sources.
        // Each said once (the transport repeats its words down the chain).
        let mut causes = vec![e.to_string()];
        let mut source = std::error::Error::source(&e).and_then(std::error::Error::source);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        let said = tlog_core::text::join_causes(causes);
        Failure {
            code,
            error: anyhow::anyhow!("{said}{hint}"),
            evidence,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::usage(e)
    }
}

/// Result of a command.
pub type Res<T = ()> = Result<T, Failure>;

/// An entry named on the command line.
enum EntryRef {
    Index(u64),
    Hash(Hash),
}

fn entry_ref(text: &str) -> Res<EntryRef> {
    if text.len() == 64 {
        return Hash::from_hex(text)
            .map(EntryRef::Hash)
            .map_err(|e| Failure::usage(anyhow::anyhow!("leaf hash {text:?}: {e}")));
    }
    text.parse::<u64>().map(EntryRef::Index).map_err(|_| {
        Failure::usage(anyhow::anyhow!(
            "{text:?} is neither an index (a number) nor a leaf hash (64 hex digits)"
        ))
    })
}

fn query_of(a: &QueryArgs) -> Res<ArtifactQuery> {
    let action = a
        .action
        .as_deref()
        .map(|s| {
            Action::parse(s).ok_or_else(|| {
                Failure::usage(anyhow::anyhow!(
                    "--action {s:?} is not an action; use one of: {}",
                    Action::ALL.map(|x| x.as_str()).join(", ")
                ))
            })
        })
        .transpose()?;
    let now = std::time::SystemTime::now();
    let time = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| query_time(flag, t, now).map_err(Failure::usage))
            .transpose()
    };
    if a.artifact.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!("--artifact is empty")));
    }
    Ok(ArtifactQuery {
        name: a.artifact.clone(),
        version: a.version.clone(),
        action,
        since: time("since", &a.since)?,
        until: time("until", &a.until)?,
    })
}

/// A query bound: RFC 3339 (`2026-01-01T12:00:00Z`), a day
/// (`2026-01-01`, midnight UTC), or a time ago (`7d`, `12h`, `1h 30m`:
/// that long before `now`).
fn query_time(
    flag: &str,
    text: &str,
    now: std::time::SystemTime,
) -> anyhow::Result<tlog_core::event::Timestamp> {
    let t = text.trim();
    let is_day = t.len() == 10
        && t.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let rfc3339 = if is_day {
        format!("{t}T00:00:00Z")
    } else if let Ok(ago) = humantime::parse_duration(t) {
        let at = now
            .checked_sub(ago)
            .ok_or_else(|| anyhow::anyhow!("--{flag} {t}: that is before 1970"))?;
        humantime::format_rfc3339_nanos(at).to_string()
    } else {
        t.to_owned()
    };
    parse_time(flag, &rfc3339).map_err(|e| {
        anyhow::anyhow!(
            "--{e}; give an RFC 3339 time (2026-01-01T12:00:00Z), a day (2026-01-01) \
             or a time ago (7d, 12h, 30m)"
        )
    })
}

fn describe_query(a: &QueryArgs) -> String {
    let mut s = format!("--artifact {}", a.artifact);
    for (k, v) in [
        ("version", &a.version),
        ("action", &a.action),
        ("since", &a.since),
        ("until", &a.until),
    ] {
        if let Some(v) = v {
            s.push_str(&format!(" --{k} {v}"));
        }
    }
    s
}

/// A generated event id, unique per process and call.
/// The default event id: named by the event's content (SHA-256 of its
/// encoding without an id), so that running the same submission again is
/// a retry the log answers with the original entry, not a second entry.
/// Give `--event-id` (or `event_id`) to record two identical events.
fn content_id(e: &ArtifactEvent) -> String {
    let mut unnamed = e.clone();
    unnamed.event_id.clear();
    unnamed.attestations.clear();
    let d = unnamed.content_digest();
    let mut id = String::with_capacity(7 + 64);
    id.push_str("sha256-");
    for b in d {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

fn event_from_flags(a: &SubmitArgs) -> Res<ArtifactEvent> {
    let want = |v: &Option<String>, flag: &str| {
        v.clone()
            .ok_or_else(|| Failure::usage(anyhow::anyhow!("--{flag} is required")))
    };
    let action_text = want(&a.action, "action")?;
    let action = Action::parse(&action_text).ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "--action {action_text:?} is not an action; use one of: {}",
            Action::ALL.map(|x| x.as_str()).join(", ")
        ))
    })?;
    let interface = Interface::parse(&a.interface).ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "--interface {:?}: use api, cli, ci-pipeline, registry-ui, sdk or other",
            a.interface
        ))
    })?;
    if a.digests.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "give at least one --digest ALGORITHM:HEX, e.g. --digest sha256:$(sha256sum FILE | cut -d' ' -f1)"
        )));
    }
    let digests = a
        .digests
        .iter()
        .map(|d| parse_digest("--digest", d).map_err(|e| Failure::usage(anyhow::anyhow!("{e}"))))
        .collect::<Res<Vec<_>>>()?;
    // No client time unless given: an event without --event-id is named
    // by its content, and a rerun must be the same event.
    let client_time = a
        .client_time
        .as_ref()
        .map(|t| parse_time("--client-time", t).map_err(|e| Failure::usage(anyhow::anyhow!("{e}"))))
        .transpose()?;
    Ok(ArtifactEvent {
        event_id: a.event_id.clone().unwrap_or_default(),
        source: want(&a.source, "source")?,
        action,
        artifact: Artifact {
            name: want(&a.artifact, "artifact")?,
            version: want(&a.version, "version")?,
            digests,
            media_type: a.media_type.clone(),
            uri: a.uri.clone(),
        },
        actor: a
            .actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into()),
        interface,
        environment: a.environment.clone(),
        client_time,
        provenance: None,
        justification: a.reason.clone(),
        ticket: a.ticket.clone(),
        attestations: Vec::new(),
    })
}

fn read_input(path: &Path) -> Res<String> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::usage(anyhow::anyhow!("cannot read stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(anyhow::anyhow!("cannot read {}: {e}", path.display())))?;
    }
    Ok(text)
}

fn json_event(text: &str, place: &str) -> Res<ArtifactEvent> {
    tlog_core::json::event_from_json(text).map_err(|e| {
        Failure::usage(match e {
            JsonEventError::Syntax(m) => anyhow::anyhow!("{place}: malformed JSON: {m}"),
            JsonEventError::Invalid(e) => anyhow::anyhow!("{place}: {e}"),
        })
    })
}

/// Every event to submit, read and checked before anything is sent.
fn events_to_submit(a: &SubmitArgs) -> Res<Vec<ArtifactEvent>> {
    let mut events: Vec<(String, ArtifactEvent)> = Vec::new();
    if let Some(path) = &a.file {
        let text = read_input(path)?;
        let place = path.display().to_string();
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Failure::usage(anyhow::anyhow!("{place}: malformed JSON: {e}")))?;
        match value {
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{place}: event [{i}]");
                    events.push((p.clone(), json_event(&item.to_string(), &p)?));
                }
            }
            _ => events.push((place.clone(), json_event(&text, &place)?)),
        }
    } else if let Some(path) = &a.jsonl {
        let text = read_input(path)?;
        let name = if path == Path::new("-") {
            "stdin".to_owned()
        } else {
            path.display().to_string()
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let p = format!("{name} line {}", i + 1);
            events.push((p.clone(), json_event(line, &p)?));
        }
        if events.is_empty() {
            return Err(Failure::usage(anyhow::anyhow!(
                "{name} holds no events (one JSON object per line)"
            )));
        }
    } else {
        events.push(("the event".into(), event_from_flags(a)?));
    }
    let signer = a.sign_key.as_deref().map(load_sign_key).transpose()?;
    let mut out = Vec::with_capacity(events.len());
    for (place, mut e) in events.into_iter() {
        if e.event_id.is_empty() {
            e.event_id = content_id(&e);
        }
        if let Some(s) = &signer {
            let attestation = e.attest(s);
            e.attestations.push(attestation);
        }
        e.validate().map_err(|err| {
            Failure::usage(anyhow::anyhow!(
                "{place} is not valid: {err} (nothing was sent)"
            ))
        })?;
        out.push(e);
    }
    Ok(out)
}

fn load_sign_key(path: &Path) -> Res<Signer> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "cannot read --sign-key {}: {e}",
            path.display()
        ))
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Failure::usage(anyhow::anyhow!(
            "--sign-key {} is readable by others; run chmod 600 on it",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "cannot read --sign-key {}: {e}",
            path.display()
        ))
    })?;
    Signer::from_skey(text.trim()).map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "--sign-key {} is not a signing key from `tlog keygen`: {e}",
            path.display()
        ))
    })
}

fn keygen(name: &str, out: &Path, json: bool) -> Res {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut seed = [0u8; 32];
    getrandom(&mut seed)?;
    let signer = Signer::from_seed(name, &seed).map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "--name {name:?}: {e} (use letters, digits, dots, slashes, dashes)"
        ))
    })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot create {}: {e}", out.display())))?;
    writeln!(f, "{}", signer.to_skey())
        .and_then(|()| f.sync_all())
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot write {}: {e}", out.display())))?;
    let vkey = signer.verifier().to_vkey();
    if json {
        println!(
            "{}",
            serde_json::json!({"verifier_key": vkey, "key_file": out.display().to_string(), "name": name})
        );
    } else {
        println!("{vkey}");
        eprintln!(
            "wrote the signing key to {} (mode 0600); the verifier key above goes into the server's auth.trusted_signers",
            out.display()
        );
    }
    Ok(())
}

/// Random bytes from the operating system (`getrandom`, the system call:
/// no device file to open, nothing to fail when /dev is not mounted).
fn getrandom(buf: &mut [u8; 32]) -> Res {
    getrandom::fill(buf).map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "the operating system gave no random bytes: {e}"
        ))
    })
}

/// A progress bar on stderr when it is a terminal (redrawn four times a
/// second at most, with the rate and the time left); hidden otherwise.
pub fn progress(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => indicatif::ProgressBar::with_draw_target(
            Some(n),
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        ),
        None => indicatif::ProgressBar::with_draw_target(
            None,
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        ),
    };
    let template = if len.is_some() {
        "{msg} {wide_bar} {pos}/{len} {per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {pos} {per_sec}"
    };
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

/// Submits `events`: one is printed in full; many go in batches under a
/// progress bar and end with one summary line (every entry with
/// `verbose`, one JSON line each with `json`).
async fn submit(
    client: &mut Client,
    events: Vec<ArtifactEvent>,
    batch: usize,
    json: bool,
    verbose: bool,
) -> Res {
    if events.len() == 1 {
        let e = client.append(&events[0]).await?;
        output::entry(&e, json, output::Detail::Submit);
        return Ok(());
    }
    let started = std::time::Instant::now();
    let bar = progress(Some(events.len() as u64), "submitting");
    let (mut new, mut retries) = (0u64, 0u64);
    let mut last = None;
    for chunk in events.chunks(batch.max(1)) {
        for e in client.append_batch(chunk).await? {
            if json || verbose {
                bar.suspend(|| output::entry(&e, json, output::Detail::Submit));
            }
            if e.duplicate {
                retries += 1;
            } else {
                new += 1;
            }
            last = Some(e.checkpoint.clone());
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if !json {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{}",
            output::submit_summary(new, retries, secs, last.as_ref())
        );
    }
    Ok(())
}

async fn watch(client: &mut Client, count: Option<u64>, interval: Duration, json: bool) -> Res {
    let mut seen = 0u64;
    let mut last = 0u64;
    let mut failures = 0u32;
    let done = |seen: u64| count.is_some_and(|c| seen >= c);
    loop {
        match client.fetch_checkpoint_stream().await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(msg)) => {
                        failures = 0;
                        let cp = client.watched(msg).await?;
                        if seen > 0 && cp.checkpoint.size == last {
                            continue;
                        }
                        last = cp.checkpoint.size;
                        output::watched(&cp, json);
                        seen += 1;
                        if done(seen) {
                            return Ok(());
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        eprintln!("tlog: the checkpoint stream ended: {}", status.message());
                        break;
                    }
                }
            },
            Err(ClientError::Refused {
                code: tonic::Code::Unimplemented | tonic::Code::PermissionDenied,
                ..
            }) => {
                // No stream: poll.
                let cp = client.checkpoint().await?;
                if seen == 0 || cp.checkpoint.size != last {
                    last = cp.checkpoint.size;
                    output::watched(&cp, json);
                    seen += 1;
                    if done(seen) {
                        return Ok(());
                    }
                }
                tokio::time::sleep(interval).await;
                continue;
            }
            Err(e) if e.is_verification() => return Err(e.into()),
            Err(e) => {
                failures += 1;
                if failures > 30 {
                    return Err(e.into());
                }
                eprintln!("tlog: {e}; retrying");
            }
        }
        tokio::time::sleep(interval.min(Duration::from_secs(1) * failures.max(1))).await;
    }
}

async fn run(cli: Cli) -> Res {
    let Cli { g, command } = cli;
    let settings = move || config::resolve(g);
    let online = match Plan::of(command)? {
        Plan::Completions(shell) => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "tlog", &mut std::io::stdout());
            return Ok(());
        }
        Plan::Man => {
            use clap::CommandFactory as _;
            return clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| Failure::usage(anyhow::anyhow!("cannot write the manual page: {e}")));
        }
        Plan::Offline(work) => return offline(work, &settings()?),
        Plan::Online(work) => work,
    };
    let g = settings()?;
    let vkey = g.vkey.clone().ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "give the log's verifier key with --vkey, --vkey-file, TLOG_VKEY or the config file"
        ))
    })?;
    let opts = g.connect_options(&vkey)?;
    if let Some(tiles) = &g.tiles {
        // Read the log from its C2SP tiles alone (the server's [http]
        // listener or a published mirror): verified the same way.
        let mut client = Client::connect_tiles(tiles, &vkey, &opts).await?;
        return online_with(&mut client, online, g.json).await;
    }
    if !g.server.contains("://") {
        return Err(Failure::usage(anyhow::anyhow!(
            "--server {:?} has no scheme: write http://{} (or https://{} for TLS)",
            g.server,
            g.server,
            g.server
        )));
    }
    let mut client = Client::connect_with(&g.server, &vkey, &opts).await?;
    online_with(&mut client, online, g.json).await
}

/// Runs an online command over a connected client (gRPC or tiles).
async fn online_with(client: &mut Client, online: Online, json: bool) -> Res {
    match online {
        Online::Submit {
            events,
            batch,
            verbose,
        } => submit(client, events, batch, json, verbose).await?,
        Online::Checkpoint => {
            let cp = client.checkpoint().await?;
            output::checkpoint(&cp, json);
        }
        Online::Entry { entry, detail } => {
            let e = proven_entry(client, entry).await?;
            output::entry(&e, json, detail);
        }
        Online::TlogProof { entry, out } => {
            let e = proven_entry(client, entry).await?;
            let text = tlog_proof(&e).to_text();
            match out {
                Some(path) => {
                    write_file(&path, text.as_bytes())?;
                    if !json {
                        eprintln!(
                            "wrote {}: entry {} in the checkpoint at size {}",
                            path.display(),
                            e.index,
                            e.checkpoint.checkpoint.size
                        );
                    }
                }
                None => print!("{text}"),
            }
        }
        Online::Consistency { size1, size2 } => {
            let (old, new, proof) = client.consistency(size1, size2).await?;
            output::consistency(&old, &new, &proof, json);
        }
        Online::Watch { count, interval } => watch(client, count, interval, json).await?,
        Online::Query {
            query,
            description,
            output,
        } => {
            let bar = progress(None, "verifying entries");
            let (cp, entries) = client.query(&query, &mut |n| bar.set_position(n)).await?;
            bar.finish_and_clear();
            match output {
                QueryOutput::Print => output::query(&query.name, &cp, &entries, json),
                QueryOutput::Export { out, proofs } => {
                    if let Some(dir) = &proofs {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            Failure::usage(anyhow::anyhow!("cannot create {}: {e}", dir.display()))
                        })?;
                        for e in &entries {
                            let p = dir.join(format!("{}.tlog-proof", e.index));
                            write_file(&p, tlog_proof(e).to_text().as_bytes())?;
                        }
                    }
                    let bundle = Bundle::new(
                        format!("tlog export {description}"),
                        format_time(Timestamp::now()),
                        client.verifier_key().to_owned(),
                        &cp,
                        entries
                            .iter()
                            .map(|e| (e.index, e.leaf.clone(), e.proof.clone())),
                    );
                    write_file(&out, bundle.to_json().as_bytes())?;
                    output::exported(&out, entries.len(), &cp, client.verifier_key(), json);
                }
                QueryOutput::Report { format, out } => {
                    let text =
                        report::render(&description, &cp, client.verifier_key(), &entries, format);
                    report::write(out.as_deref(), &text)?;
                }
            }
        }
    }
    Ok(())
}

/// The entry named on the command line, with its verified inclusion
/// proof.
async fn proven_entry(client: &mut Client, entry: EntryRef) -> Res<tlog_client::VerifiedEntry> {
    Ok(match entry {
        EntryRef::Index(i) => client.prove_index(i).await?,
        EntryRef::Hash(h) => client.prove_hash(&h).await?,
    })
}

/// A c2sp.org/tlog-proof for a verified entry, carrying the leaf bytes in
/// its `extra` line.
fn tlog_proof(e: &tlog_client::VerifiedEntry) -> tlog_core::tlog_proof::TlogProof {
    tlog_core::tlog_proof::TlogProof {
        extra: Some(e.leaf.clone()),
        index: e.index,
        proof: e.proof.clone(),
        checkpoint: e.checkpoint.raw.clone(),
    }
}

/// `tlog verify-proof`: the proof's checkpoint by the pinned key and its
/// entry in that tree, offline.
fn verify_proof(
    path: &Path,
    vkey: Option<&str>,
    policy: Option<&tlog_core::policy::Policy>,
    json: bool,
) -> Res {
    let Some(vkey) = vkey else {
        return Err(Failure::usage(anyhow::anyhow!(
            "verify-proof needs the log's verifier key: give it with --vkey, --vkey-file, \
             TLOG_VKEY or the config file"
        )));
    };
    let verifier = tlog_core::note::Verifier::from_vkey(vkey)
        .map_err(|e| Failure::usage(anyhow::anyhow!("--vkey: {e}")))?;
    let origin = verifier.name().to_owned();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot read {}: {e}", path.display())))?;
    let proof = tlog_core::tlog_proof::TlogProof::parse(&text)
        .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", path.display())))?;
    let known = tlog_core::note::Verifiers::new([verifier.clone()]);
    let failed = |e: String| {
        if json {
            println!(
                "{}",
                serde_json::json!({"file": path.display().to_string(), "verified": false, "error": e})
            );
        }
        Failure::verification(anyhow::anyhow!(
            "{}: verification FAILED: {e}",
            path.display()
        ))
    };
    let (cp, leaf) = proof
        .verify_carried(&known, &origin)
        .map_err(|e| failed(e.to_string()))?;
    let cosigners = witnessed(policy, &proof.checkpoint, &verifier).map_err(failed)?;
    let summary = tlog_core::leaf::decode_any(leaf)
        .map(|l| output::summary(&l))
        .unwrap_or_else(|e| format!("(not a leaf of this log's kinds: {e})"));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "file": path.display().to_string(),
                "verified": true,
                "index": proof.index,
                "leaf_hash": tlog_core::leaf_hash(leaf).to_hex(),
                "checkpoint": {"origin": cp.checkpoint.origin, "size": cp.checkpoint.size, "root": cp.checkpoint.root.to_hex()},
                "entry": summary,
                "witnesses": cosigners.as_deref().map(output::witnesses_json),
            })
        );
    } else {
        println!(
            "{}: entry {} verified in the checkpoint at size {} (root {}) signed by {}",
            path.display(),
            proof.index,
            cp.checkpoint.size,
            cp.checkpoint.root,
            cp.checkpoint.origin
        );
        println!("{:>8}  {summary}", proof.index);
        if let Some(c) = &cosigners {
            println!("{}", output::witnesses_line(c));
        }
    }
    Ok(())
}

/// Runs a command that reads local files only.
fn offline(work: Offline, g: &config::Settings) -> Res {
    match work {
        Offline::VerifyProof { file } => {
            verify_proof(&file, g.vkey.as_deref(), g.policy.as_deref(), g.json)
        }
        Offline::Keygen { name, out } => keygen(&name, &out, g.json),
        Offline::VerifyBundle { file } => {
            verify_bundle(&file, g.vkey.as_deref(), g.policy.as_deref(), g.json)
        }
        Offline::ReportBundle {
            bundle,
            description,
            format,
            out,
        } => {
            let bytes = read_bundle(&bundle)?;
            let v = bytes
                .verify(g.vkey.as_deref())
                .map_err(|e| Failure::verification(anyhow::anyhow!("{}: {e}", bundle.display())))?;
            let text = report::render_bundle(&v, &description, format);
            report::write(out.as_deref(), &text)
        }
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Res {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot write {}: {e}", path.display())))
}

fn read_bundle(path: &Path) -> Res<Bundle> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot read {}: {e}", path.display())))?;
    Bundle::parse(&bytes).map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", path.display())))
}

/// With a policy, checks that `note` satisfies it and returns the
/// witnesses whose cosignatures verified; the error says why not.
fn witnessed(
    policy: Option<&tlog_core::policy::Policy>,
    note: &str,
    log: &tlog_core::note::Verifier,
) -> Result<Option<Vec<(String, u64)>>, String> {
    let Some(p) = policy else {
        return Ok(None);
    };
    p.check(note.as_bytes(), Some(log))
        .map(|s| Some(s.cosigners))
        .map_err(|e| format!("the checkpoint does not satisfy the witness policy: {e}"))
}

fn verify_bundle(
    path: &Path,
    vkey: Option<&str>,
    policy: Option<&tlog_core::policy::Policy>,
    json: bool,
) -> Res {
    // The bundle carries a key too, but a bundle that brings its own key
    // proves only that it agrees with itself: anyone can make one.
    let Some(vkey) = vkey else {
        return Err(Failure::usage(anyhow::anyhow!(
            "verify-bundle needs the log's verifier key, from somewhere other than the bundle: \
             give it with --vkey, --vkey-file, TLOG_VKEY or the config file (a bundle's own \
             key proves only that the bundle agrees with itself)"
        )));
    };
    let bundle = read_bundle(path)?;
    let checked = bundle
        .verify(Some(vkey))
        .map_err(|e| e.to_string())
        .and_then(|v| {
            let log = tlog_core::note::Verifier::from_vkey(vkey).map_err(|e| e.to_string())?;
            witnessed(policy, &bundle.checkpoint, &log).map(|c| (v, c))
        });
    match checked {
        Ok((v, cosigners)) => {
            output::bundle_ok(path, &v, cosigners.as_deref(), json);
            Ok(())
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"file": path.display().to_string(), "verified": false, "error": e.to_string()})
                );
            }
            Err(Failure::verification(anyhow::anyhow!(
                "{}: verification FAILED: {e}",
                path.display()
            )))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.g.json;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tlog: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if json {
                let evidence = f.evidence.as_deref();
                println!(
                    "{}",
                    match evidence {
                        Some(m) => serde_json::json!({
                            "error": "misbehavior",
                            "what": m.what,
                            "trusted_checkpoint": m.trusted,
                            "conflicting_checkpoint": m.seen,
                            "consistency_proof": m.proof.iter().map(Hash::to_hex).collect::<Vec<_>>(),
                            "exit_code": f.code,
                        }),
                        None =>
                            serde_json::json!({"error": tlog_core::text::join_causes(f.error.chain().map(|c| c.to_string())), "exit_code": f.code}),
                    }
                );
            }
            eprintln!(
                "tlog: {}",
                tlog_core::text::join_causes(f.error.chain().map(|c| c.to_string()))
            );
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_times_take_days_and_times_ago() {
        let now = humantime::parse_rfc3339("2026-01-08T00:00:00Z").expect("now");
        let at = |t: &str| parse_time("since", t).expect("time");
        assert_eq!(
            query_time("since", "2026-01-01", now).expect("day"),
            at("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            query_time("since", "7d", now).expect("ago"),
            at("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            query_time("since", "1h 30m", now).expect("ago"),
            at("2026-01-07T22:30:00Z")
        );
        assert_eq!(
            query_time("until", "2026-01-02T03:04:05Z", now).expect("rfc3339"),
            at("2026-01-02T03:04:05Z")
        );
        let e = query_time("since", "last tuesday", now).expect_err("refused");
        assert!(e.to_string().contains("a time ago (7d"), "{e}");
    }
}
