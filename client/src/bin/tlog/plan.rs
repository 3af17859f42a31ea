//! One validated plan per invocation: every argument is parsed and checked
//! here, once, before settings are resolved or the network is touched, and
//! `run` then executes the plan with one `match`.

use std::path::PathBuf;
use std::time::Duration;

use tlog_client::ArtifactQuery;
use tlog_core::event::ArtifactEvent;

use crate::{
    Command, EntryRef, Failure, Res, describe_query, entry_ref, events_to_submit, output, query_of,
    report,
};

/// What one invocation will do.
pub enum Plan {
    /// Print a completion script; needs no settings.
    Completions(clap_complete::Shell),
    /// Print the manual page; needs no settings.
    Man,
    /// Work on local files only (settings, no log).
    Offline(Offline),
    /// Ask the log (settings and a verified connection).
    Online(Online),
}

/// Commands that need settings but no log.
pub enum Offline {
    /// Make an Ed25519 signing key.
    Keygen {
        /// The signer's name.
        name: String,
        /// Where the private key goes.
        out: PathBuf,
    },
    /// Verify an evidence bundle.
    VerifyBundle {
        /// The bundle file.
        file: PathBuf,
    },
    /// Verify a c2sp.org/tlog-proof file.
    VerifyProof {
        /// The proof file.
        file: PathBuf,
    },
    /// Render a report from an evidence bundle.
    ReportBundle {
        /// The bundle file.
        bundle: PathBuf,
        /// The query as the user wrote it, for the report's heading.
        description: String,
        /// The report format.
        format: report::Format,
        /// Output file, or stdout.
        out: Option<PathBuf>,
    },
}

/// Commands that ask the log.
pub enum Online {
    /// Submit events, each checked already.
    Submit {
        /// The events, in order.
        events: Vec<ArtifactEvent>,
        /// Events per batch.
        batch: usize,
        /// One line per event.
        verbose: bool,
    },
    /// Print the verified latest checkpoint.
    Checkpoint,
    /// Get or prove one entry.
    Entry {
        /// Which entry.
        entry: EntryRef,
        /// How much to show.
        detail: output::Detail,
    },
    /// Write one entry's c2sp.org/tlog-proof.
    TlogProof {
        /// Which entry.
        entry: EntryRef,
        /// The file, or stdout.
        out: Option<PathBuf>,
    },
    /// Prove consistency between two sizes (0: the latest).
    Consistency {
        /// The older size.
        size1: u64,
        /// The newer size, 0 for the latest.
        size2: u64,
    },
    /// Follow checkpoints.
    Watch {
        /// Stop after this many.
        count: Option<u64>,
        /// Poll interval when the log cannot stream.
        interval: Duration,
    },
    /// Run a verified artifact query and show, export or report it.
    Query {
        /// The parsed query.
        query: ArtifactQuery,
        /// The query as the user wrote it.
        description: String,
        /// What to do with the verified entries.
        output: QueryOutput,
    },
}

/// What happens to a query's verified entries.
pub enum QueryOutput {
    /// Print them.
    Print,
    /// Write an evidence bundle to `out`, and a c2sp.org/tlog-proof per
    /// entry into `proofs` if given.
    Export {
        /// The bundle file.
        out: PathBuf,
        /// The folder for per-entry proofs.
        proofs: Option<PathBuf>,
    },
    /// Render a report.
    Report {
        /// The format.
        format: report::Format,
        /// Output file, or stdout.
        out: Option<PathBuf>,
    },
}

impl Plan {
    /// Parses and checks every argument of `command`; the first problem is
    /// a usage error (exit 2) and nothing has been sent.
    pub fn of(command: Command) -> Res<Plan> {
        Ok(match command {
            Command::Completions { shell } => Plan::Completions(shell),
            Command::Man => Plan::Man,
            Command::Keygen { name, out } => Plan::Offline(Offline::Keygen { name, out }),
            Command::VerifyBundle { file } => Plan::Offline(Offline::VerifyBundle { file }),
            Command::VerifyProof { file } => Plan::Offline(Offline::VerifyProof { file }),
            Command::Report {
                q,
                format,
                out,
                bundle: Some(bundle),
            } => Plan::Offline(Offline::ReportBundle {
                bundle,
                description: describe_query(&q),
                format: report::Format::parse(&format)?,
                out,
            }),
            Command::Submit(a) => Plan::Online(Online::Submit {
                events: events_to_submit(&a)?,
                batch: a.batch,
                verbose: a.verbose,
            }),
            Command::Checkpoint => Plan::Online(Online::Checkpoint),
            Command::Get { entry } => Plan::Online(Online::Entry {
                entry: entry_ref(&entry)?,
                detail: output::Detail::Get,
            }),
            Command::Prove { entry, format, out } => match format.as_str() {
                "text" => {
                    if out.is_some() {
                        return Err(Failure::usage(anyhow::anyhow!(
                            "-o goes with --format tlog-proof; text goes to stdout"
                        )));
                    }
                    Plan::Online(Online::Entry {
                        entry: entry_ref(&entry)?,
                        detail: output::Detail::Prove,
                    })
                }
                "tlog-proof" => Plan::Online(Online::TlogProof {
                    entry: entry_ref(&entry)?,
                    out,
                }),
                other => {
                    return Err(Failure::usage(anyhow::anyhow!(
                        "--format {other:?}: use text or tlog-proof"
                    )));
                }
            },
            Command::Consistency { size1, size2 } => Plan::Online(Online::Consistency {
                size1,
                size2: size2.unwrap_or(0),
            }),
            Command::Watch { count, interval } => Plan::Online(Online::Watch { count, interval }),
            Command::Query(q) => Plan::Online(Online::Query {
                query: query_of(&q)?,
                description: describe_query(&q),
                output: QueryOutput::Print,
            }),
            Command::Export { q, out, proofs } => Plan::Online(Online::Query {
                query: query_of(&q)?,
                description: describe_query(&q),
                output: QueryOutput::Export { out, proofs },
            }),
            Command::Report {
                q,
                format,
                out,
                bundle: None,
            } => Plan::Online(Online::Query {
                query: query_of(&q)?,
                description: describe_query(&q),
                output: QueryOutput::Report {
                    format: report::Format::parse(&format)?,
                    out,
                },
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::Cli;

    fn plan(args: &[&str]) -> Res<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("tlog").chain(args.iter().copied()))
            .expect("clap accepts the arguments");
        Plan::of(cli.command)
    }

    #[test]
    fn bad_arguments_are_refused_before_anything_runs() {
        for args in [
            &["get", "twelve"][..],
            &["prove", "zz"],
            &["prove", "3", "--format", "pdf"],
            &["prove", "3", "-o", "x.proof"],
            &["query", "--artifact", "a", "--since", "last tuesday"],
            &["query", "--artifact", "a", "--action", "frobnicate"],
            &["export", "--artifact", "", "-o", "x.json"],
            &["report", "--artifact", "a", "--format", "pdf"],
            &[
                "report",
                "--artifact",
                "a",
                "--format",
                "pdf",
                "--bundle",
                "b.json",
            ],
            &[
                "submit",
                "--source",
                "s",
                "--action",
                "upload",
                "--artifact",
                "a",
                "--version",
                "1",
            ],
        ] {
            let Err(f) = plan(args) else {
                panic!("{args:?} was accepted");
            };
            assert_eq!(f.code, 2, "{args:?}: {}", f.error);
        }
    }

    #[test]
    fn each_command_becomes_its_plan() {
        assert!(matches!(
            plan(&["get", "7"]),
            Ok(Plan::Online(Online::Entry {
                entry: EntryRef::Index(7),
                detail: output::Detail::Get
            }))
        ));
        assert!(matches!(
            plan(&["prove", &"ab".repeat(32)]),
            Ok(Plan::Online(Online::Entry {
                entry: EntryRef::Hash(_),
                detail: output::Detail::Prove
            }))
        ));
        assert!(matches!(
            plan(&["consistency", "3"]),
            Ok(Plan::Online(Online::Consistency { size1: 3, size2: 0 }))
        ));
        assert!(matches!(
            plan(&["report", "--artifact", "a", "--bundle", "b.json"]),
            Ok(Plan::Offline(Offline::ReportBundle { .. }))
        ));
        assert!(matches!(
            plan(&["report", "--artifact", "a", "--format", "html"]),
            Ok(Plan::Online(Online::Query {
                output: QueryOutput::Report {
                    format: report::Format::Html,
                    ..
                },
                ..
            }))
        ));
        match plan(&[
            "export",
            "--artifact",
            "a",
            "--version",
            "2",
            "-o",
            "x.json",
        ]) {
            Ok(Plan::Online(Online::Query {
                query,
                description,
                output: QueryOutput::Export { out, .. },
            })) => {
                assert_eq!(query.version.as_deref(), Some("2"));
                assert_eq!(description, "--artifact a --version 2");
                assert_eq!(out, PathBuf::from("x.json"));
            }
            _ => panic!("export is a query with an export"),
        }
        assert!(matches!(plan(&["man"]), Ok(Plan::Man)));
    }
}
