//! `tlog-bench`: drive a running log (`run`), fill a stopped one (`load`),
//! or measure what this machine allows (`limits`).

use clap::{Parser, Subcommand};

/// mimalloc, as in `tlog-server`: `load` and `limits` run the server's own
/// storage and sequencer code, and should allocate as it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tlog-bench",
    version,
    about = "Benchmarks and loaders for tlog (not part of the server binary)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive a running log with concurrent clients and report throughput
    /// and latency.
    Run(tlog_bench::run::BenchArgs),
    /// Fill a stopped log with synthetic events through the sequencer and
    /// storage code (for benchmarks at millions of entries).
    Load(tlog_bench::load::LoadArgs),
    /// What this machine allows at most: synced RocksDB write batches
    /// shaped like the server's commits, SHA-256, Ed25519.
    Limits(tlog_bench::load::LimitsArgs),
    /// Fetch hot tiles over HTTP from a tiles listener with concurrent
    /// keep-alive clients, every answer checked; report requests/s.
    Tiles(tlog_bench::tiles::TilesArgs),
    /// Verified inclusion proofs as a client makes them, over gRPC or from
    /// tiles; report proofs/s and latency.
    Proofs(tlog_bench::proofs::ProofsArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
    };
    let result = match cli.command {
        Command::Run(a) => runtime().and_then(|rt| rt.block_on(tlog_bench::run::run(a))),
        Command::Load(a) => runtime().and_then(|rt| rt.block_on(tlog_bench::load::load(a))),
        Command::Limits(a) => tlog_bench::load::limits(a),
        Command::Tiles(a) => runtime().and_then(|rt| rt.block_on(tlog_bench::tiles::tiles(a))),
        Command::Proofs(a) => runtime().and_then(|rt| rt.block_on(tlog_bench::proofs::proofs(a))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "tlog-bench: {}",
                tlog_core::text::join_causes(e.chain().map(|c| c.to_string()))
            );
            std::process::ExitCode::FAILURE
        }
    }
}
