//! `tlog-monitor`: `run` watches logs until stopped; `check` makes one pass
//! and exits 1 if anything was found (for CI gates).
//!
//! Alerts go to stdout as JSON lines (and to the configured webhooks and
//! hooks); diagnostics go to stderr. Exit codes: 0 nothing found, 1
//! findings (`check`), 2 configuration error, 3 runtime error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tlog_monitor::Monitor;
use tlog_monitor::config::Config;

#[derive(Parser)]
#[command(
    name = "tlog-monitor",
    version,
    about = "Audits transparency logs and alerts on misbehavior and unexpected artifact versions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch the configured logs until SIGINT or SIGTERM.
    Run {
        /// The configuration file.
        #[arg(long, env = "TLOG_MONITOR_CONFIG")]
        config: PathBuf,
        /// Write the HTTP address (for `listen = "127.0.0.1:0"`) here once
        /// ready.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// One pass over every log; exit 1 if anything was found.
    Check {
        /// The configuration file.
        #[arg(long, env = "TLOG_MONITOR_CONFIG")]
        config: PathBuf,
    },
    /// Witness keys (c2sp.org/tlog-cosignature).
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
}

#[derive(Subcommand)]
enum WitnessCommand {
    /// Make a witness key; print its verifier key (for logs' policies).
    Keygen {
        /// The witness's name, a schema-less URL (witness.example.com/w1).
        #[arg(long)]
        name: String,
        /// Where to write the private key (mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only for a terminal: a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        // A log write that fails (a full disk) is dropped. The default
        // reports it with eprintln!, which panics when stderr itself
        // cannot be written, and took the request down with it.
        .log_internal_errors(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let path = match &cli.command {
        Command::Run { config, .. } | Command::Check { config } => config.clone(),
        Command::Witness {
            command: WitnessCommand::Keygen { name, out },
        } => {
            return match tlog_monitor::witness::keygen(name, out) {
                Ok(vkey) => {
                    println!("{vkey}");
                    eprintln!(
                        "tlog-monitor: wrote the witness key to {}; give the verifier key above to the logs you witness",
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "tlog-monitor: {}",
                        tlog_core::text::join_causes(e.chain().map(|c| c.to_string()))
                    );
                    ExitCode::from(2)
                }
            };
        }
    };
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tlog-monitor: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tlog-monitor: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    rt.block_on(async move {
        let mut monitor = match Monitor::new(cfg) {
            Ok(m) => m,
            Err(e) => {
                eprintln!(
                    "tlog-monitor: {}",
                    tlog_core::text::join_causes(e.chain().map(|c| c.to_string()))
                );
                return ExitCode::from(2);
            }
        };
        match cli.command {
            Command::Check { .. } => match monitor
                .pass()
                .await
                .and_then(|r| monitor.flush().map(|()| r))
            {
                Ok(r) if r.alerts.is_empty() => {
                    eprintln!("tlog-monitor: nothing found");
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    for a in r.alerts.iter().filter(|_| r.new < r.alerts.len()) {
                        eprintln!("finding ({}): {} [{}]", a.rule, a.message, a.id);
                    }
                    eprintln!("tlog-monitor: {} finding(s), {} new", r.alerts.len(), r.new);
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!(
                        "tlog-monitor: {}",
                        tlog_core::text::join_causes(e.chain().map(|c| c.to_string()))
                    );
                    ExitCode::from(3)
                }
            },
            Command::Witness { .. } => ExitCode::SUCCESS,
            Command::Run { ready_file, .. } => {
                let shutdown = async {
                    let mut term = match tokio::signal::unix::signal(
                        tokio::signal::unix::SignalKind::terminate(),
                    ) {
                        Ok(s) => s,
                        Err(_) => return std::future::pending().await,
                    };
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                };
                match monitor.run(shutdown, ready_file.as_deref()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!(
                            "tlog-monitor: {}",
                            tlog_core::text::join_causes(e.chain().map(|c| c.to_string()))
                        );
                        ExitCode::from(3)
                    }
                }
            }
        }
    })
}
