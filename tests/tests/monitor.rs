//! The real `tlog-monitor` against real servers: a split view between two
//! vantage points, a rollback, a proxy that alters an entry in transit,
//! every artifact rule on crafted events and none on a benign history, a
//! restart mid-stream, and gossip.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use serde_json::Value;
use tlog_e2e::{MonitorProcess, Server, copy_dir, init, run, run_with_stdin};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ev(id: &str, action: &str, name: &str, version: &str, extra: &str) -> String {
    use sha2::Digest as _;
    let d = hex::encode(sha2::Sha256::digest(format!("{name}@{version}").as_bytes()));
    format!(
        r#"{{"source":"e2e","event_id":"{id}","action":"{action}","artifact":{{"name":"{name}","version":"{version}","digests":["sha256:{d}"]}},"actor":"someone","interface":"api"{extra}}}"#
    )
}

/// Submits JSON events with `tlog` (no trusted state: the monitor is what
/// is under test).
fn submit(s: &Server, vkey: &str, lines: &[String]) {
    let out = run_with_stdin(
        "tlog",
        &[
            "--server",
            &s.url,
            "--vkey",
            vkey,
            "--no-state",
            "submit",
            "--jsonl",
        ],
        lines.join("\n").as_bytes(),
    );
    assert!(out.status.success(), "submit: {}", text(&out.stderr));
}

fn config(dir: &Path, logs: &[(&str, &str, Vec<String>)], rest: &str) -> PathBuf {
    let mut s = format!(
        "state_dir = {:?}\npoll_interval = \"200ms\"\n",
        dir.join("monitor-state")
    );
    s.push_str(rest);
    s.push('\n');
    for (name, vkey, endpoints) in logs {
        s.push_str(&format!(
            "[[log]]\nname = {name:?}\nvkey = {vkey:?}\nendpoints = {endpoints:?}\ntimeout = \"5s\"\n"
        ));
    }
    let path = dir.join("monitor.toml");
    std::fs::write(&path, s).expect("config");
    path
}

/// `tlog-monitor check`: exit code and alerts.
fn check(cfg: &Path) -> (i32, Vec<Value>, String) {
    let out = run(
        "tlog-monitor",
        &["check", "--config", cfg.to_str().expect("utf8")],
    );
    let alerts = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (out.status.code().unwrap_or(-1), alerts, text(&out.stderr))
}

fn rules(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["rule"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn evidence(a: &Value) -> Value {
    let p = a["evidence"].as_str().expect("evidence path");
    serde_json::from_slice(&std::fs::read(p).expect("evidence file")).expect("json")
}

/// The trusted and conflicting checkpoints of an evidence file, each
/// verified with the log's key.
fn evidence_checkpoints(
    vkey: &str,
    e: &Value,
) -> (
    tlog_core::checkpoint::SignedCheckpoint,
    tlog_core::checkpoint::SignedCheckpoint,
) {
    (
        open(vkey, e["trusted_checkpoint"].as_str().expect("trusted")),
        open(
            vkey,
            e["conflicting_checkpoint"].as_str().expect("conflicting"),
        ),
    )
}

fn open(vkey: &str, note: &str) -> tlog_core::checkpoint::SignedCheckpoint {
    let v = tlog_core::note::Verifier::from_vkey(vkey).expect("vkey");
    let origin = v.name().to_owned();
    tlog_core::checkpoint::open(
        note.as_bytes(),
        &tlog_core::note::Verifiers::new([v]),
        &origin,
    )
    .expect("evidence checkpoint verifies")
}

#[test]
fn split_view_between_vantage_points() {
    let dir = tempfile::tempdir().expect("tmp");
    let a_dir = dir.path().join("a");
    let vkey = init(&a_dir, "split.e2e.example/log");
    let b_dir = dir.path().join("b");
    copy_dir(&a_dir, &b_dir);
    let a = Server::start(&a_dir);
    let b = Server::start(&b_dir);
    submit(
        &a,
        &vkey,
        &[
            ev("1", "register", "m", "1.0.0", ""),
            ev("2", "upload", "m", "1.0.0", ""),
        ],
    );
    submit(
        &b,
        &vkey,
        &[
            ev("1", "register", "m", "6.6.6", ""),
            ev("2", "upload", "m", "6.6.6", ""),
        ],
    );
    let cfg = config(
        dir.path(),
        &[("split", &vkey, vec![a.url.clone(), b.url.clone()])],
        "",
    );
    let (code, alerts, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert_eq!(rules(&alerts), ["split-view"], "{alerts:?}");
    let e = evidence(&alerts[0]);
    let (t, c) = evidence_checkpoints(&vkey, &e);
    assert_eq!((t.checkpoint.size, c.checkpoint.size), (2, 2));
    assert_ne!(t.checkpoint.root, c.checkpoint.root);
    assert!(
        alerts[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&b.url)
    );

    // The same finding is not sent again, but check still fails.
    let (code, again, _) = check(&cfg);
    assert_eq!(code, 1);
    assert!(again.is_empty(), "not sent twice: {again:?}");

    // B grows: its larger tree cannot be proven consistent either.
    submit(&b, &vkey, &[ev("3", "approve", "m", "6.6.6", "")]);
    let (code, alerts, _) = check(&cfg);
    assert_eq!(code, 1);
    assert_eq!(rules(&alerts), ["split-view"]);
    let e = evidence(&alerts[0]);
    assert!(e["consistency_proof"].is_array(), "{e}");
    assert!(a.stop() && b.stop());
}

#[test]
fn rollback_to_an_older_copy_of_the_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "rollback.e2e.example/log");
    let s = Server::start(&data);
    let addr = s.addr.clone();
    submit(
        &s,
        &vkey,
        &(0..3)
            .map(|i| ev(&format!("a{i}"), "download", "m", "1", ""))
            .collect::<Vec<_>>(),
    );
    assert!(s.stop());
    let old = dir.path().join("old");
    copy_dir(&data, &old);
    let s = Server::start_at(&data, &addr, &[]);
    submit(
        &s,
        &vkey,
        &(0..3)
            .map(|i| ev(&format!("b{i}"), "download", "m", "1", ""))
            .collect::<Vec<_>>(),
    );
    let cfg = config(dir.path(), &[("rb", &vkey, vec![s.url.clone()])], "");
    let (code, alerts, err) = check(&cfg);
    assert_eq!((code, alerts.len()), (0, 0), "{err} {alerts:?}");
    assert!(s.stop());
    let s = Server::start_at(&old, &addr, &[]);
    let (code, alerts, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert_eq!(rules(&alerts), ["rollback"]);
    let e = evidence(&alerts[0]);
    let (t, c) = evidence_checkpoints(&vkey, &e);
    assert_eq!((t.checkpoint.size, c.checkpoint.size), (6, 3));
    assert!(s.stop());
}

#[test]
fn a_fork_at_the_same_address_is_caught() {
    let dir = tempfile::tempdir().expect("tmp");
    let a_dir = dir.path().join("a");
    let vkey = init(&a_dir, "fork.monitor.e2e.example/log");
    let b_dir = dir.path().join("b");
    copy_dir(&a_dir, &b_dir);
    let a = Server::start(&a_dir);
    let addr = a.addr.clone();
    submit(
        &a,
        &vkey,
        &[
            ev("1", "register", "m", "1.0.0", ""),
            ev("2", "upload", "m", "1.0.0", ""),
        ],
    );
    let cfg = config(dir.path(), &[("fk", &vkey, vec![a.url.clone()])], "");
    let (code, alerts, err) = check(&cfg);
    assert_eq!((code, alerts.len()), (0, 0), "{err} {alerts:?}");
    assert!(a.stop());
    // The same key and address, another history that is longer.
    let b = Server::start_at(&b_dir, &addr, &[]);
    submit(
        &b,
        &vkey,
        &[
            ev("1", "register", "m", "6.6.6", ""),
            ev("2", "upload", "m", "6.6.6", ""),
            ev(
                "3",
                "deploy",
                "m",
                "6.6.6",
                ",\"environment\":\"production\"",
            ),
        ],
    );
    let (code, alerts, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert_eq!(rules(&alerts), ["fork"], "{alerts:?}");
    let e = evidence(&alerts[0]);
    let (t, c) = evidence_checkpoints(&vkey, &e);
    assert_eq!((t.checkpoint.size, c.checkpoint.size), (2, 3));
    assert!(e["consistency_proof"].is_array());
    // Nothing from the fork was trusted: the deploy in it raised no rule.
    assert!(b.stop());
}

mod proxy {
    //! A gRPC proxy that changes one byte of one entry in transit.
    use super::*;
    use tlog_proto::v1 as pb;
    use tonic::{Request, Response, Status};

    type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

    pub struct Proxy {
        pub up: pb::log_client::LogClient<tonic::transport::Channel>,
        /// The entry whose bytes are changed (u64::MAX: none).
        pub index: u64,
        /// Change one byte of the checkpoint's signature.
        pub bad_signature: bool,
    }

    fn nope<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("not through this proxy"))
    }

    #[tonic::async_trait]
    impl pb::log_server::Log for Proxy {
        async fn append(
            &self,
            _: Request<pb::AppendRequest>,
        ) -> Result<Response<pb::AppendResponse>, Status> {
            nope()
        }
        async fn append_batch(
            &self,
            _: Request<pb::AppendBatchRequest>,
        ) -> Result<Response<pb::AppendBatchResponse>, Status> {
            nope()
        }
        async fn get_checkpoint(
            &self,
            r: Request<pb::GetCheckpointRequest>,
        ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
            let mut resp = self.up.clone().get_checkpoint(r.into_inner()).await?;
            if self.bad_signature
                && let Some(cp) = resp.get_mut().checkpoint.as_mut()
            {
                // A base64 character of the signature, after the key id.
                let at = cp.note.rfind(' ').map(|i| i + 6).unwrap_or(0);
                let c = if cp.note.as_bytes().get(at) == Some(&b'A') {
                    "B"
                } else {
                    "A"
                };
                cp.note.replace_range(at..at + 1, c);
            }
            Ok(resp)
        }
        type GetEntriesStream = Stream<pb::GetEntriesResponse>;
        async fn get_entries(
            &self,
            r: Request<pb::GetEntriesRequest>,
        ) -> Result<Response<Self::GetEntriesStream>, Status> {
            let mut s = self
                .up
                .clone()
                .get_entries(r.into_inner())
                .await?
                .into_inner();
            let mut pages = Vec::new();
            while let Some(mut page) = s.message().await? {
                for e in &mut page.entries {
                    if e.index == self.index
                        && let Some(i) = e.leaf.windows(6).position(|w| w == b"target")
                    {
                        e.leaf[i] = b'T';
                    }
                }
                pages.push(Ok(page));
            }
            Ok(Response::new(Box::pin(tokio_stream::iter(pages))))
        }
        async fn get_entry_by_hash(
            &self,
            r: Request<pb::GetEntryByHashRequest>,
        ) -> Result<Response<pb::Entry>, Status> {
            self.up.clone().get_entry_by_hash(r.into_inner()).await
        }
        async fn get_inclusion_proof(
            &self,
            r: Request<pb::GetInclusionProofRequest>,
        ) -> Result<Response<pb::InclusionProof>, Status> {
            self.up.clone().get_inclusion_proof(r.into_inner()).await
        }
        async fn get_consistency_proof(
            &self,
            r: Request<pb::GetConsistencyProofRequest>,
        ) -> Result<Response<pb::ConsistencyProof>, Status> {
            self.up.clone().get_consistency_proof(r.into_inner()).await
        }
        async fn query_artifact(
            &self,
            _: Request<pb::QueryArtifactRequest>,
        ) -> Result<Response<pb::QueryArtifactResponse>, Status> {
            nope()
        }
        type WatchCheckpointsStream = Stream<pb::SignedCheckpoint>;
        async fn watch_checkpoints(
            &self,
            _: Request<pb::WatchCheckpointsRequest>,
        ) -> Result<Response<Self::WatchCheckpointsStream>, Status> {
            nope()
        }
        async fn get_log_info(
            &self,
            _: Request<pb::GetLogInfoRequest>,
        ) -> Result<Response<pb::LogInfo>, Status> {
            nope()
        }
    }
}

#[test]
fn an_entry_altered_in_transit_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "proxy.e2e.example/log");
    let s = Server::start(&data);
    let lines: Vec<String> = (0..40)
        .map(|i| {
            let id = if i == 27 {
                "the-target".to_owned()
            } else {
                format!("e{i}")
            };
            ev(&id, "download", "m", "1", "")
        })
        .collect();
    submit(&s, &vkey, &lines);
    let (rt, proxy_url) = start_proxy(&s.url, 27, false);
    let cfg = config(dir.path(), &[("px", &vkey, vec![proxy_url])], "");
    let (code, alerts, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert_eq!(rules(&alerts), ["root-mismatch"], "{alerts:?}");
    assert_eq!(alerts[0]["entries"][0]["index"], 27);
    assert!(
        alerts[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("entry 27")
    );
    let e = evidence(&alerts[0]);
    assert_eq!(e["index"], 27);
    // Nothing from the altered range was trusted.
    let st: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("monitor-state/px/state.json"))
            .unwrap_or_else(|_| b"{\"size\":0}".to_vec()),
    )
    .expect("state");
    assert_eq!(st["size"], 0);
    rt.shutdown_background();
    assert!(s.stop());
}

/// Starts a proxy in front of `up_url`; returns its runtime and address.
fn start_proxy(up_url: &str, index: u64, bad_signature: bool) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let proxy_url = format!("http://{}", listener.local_addr().expect("addr"));
    let up_url = up_url.to_owned();
    rt.spawn(async move {
        let up = pb_client(&up_url).await;
        let svc = tlog_proto::v1::log_server::LogServer::new(proxy::Proxy {
            up,
            index,
            bad_signature,
        });
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (rt, proxy_url)
}

#[test]
fn bad_signatures_outages_and_staleness() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "faults.e2e.example/log");
    let s = Server::start(&data);
    submit(&s, &vkey, &[ev("1", "register", "m", "1.0.0", "")]);
    // A checkpoint whose signature was changed on the way.
    let (rt, proxy_url) = start_proxy(&s.url, u64::MAX, true);
    let cfg = config(
        dir.path(),
        &[("bs", &vkey, vec![proxy_url])],
        "unreachable_after = 5\n",
    );
    let (code, alerts, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert_eq!(rules(&alerts), ["bad-signature"], "{alerts:?}");
    let e = evidence(&alerts[0]);
    assert!(
        e["served_checkpoint"]
            .as_str()
            .expect("note")
            .starts_with("faults.e2e.example/log\n1\n")
    );
    rt.shutdown_background();
    // Nobody answers.
    let cfg = config(
        dir.path(),
        &[("down", &vkey, vec!["http://127.0.0.1:9".into()])],
        "unreachable_after = 1\n",
    );
    let (code, alerts, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert_eq!(rules(&alerts), ["unreachable"], "{alerts:?}");
    // No growth for longer than the maximum age.
    let cfg = config(
        dir.path(),
        &[("st", &vkey, vec![s.url.clone()])],
        "max_checkpoint_age = \"1s\"\n",
    );
    let (code, alerts, _) = check(&cfg);
    assert_eq!((code, alerts.len()), (0, 0), "{alerts:?}");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (code, alerts, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert_eq!(rules(&alerts), ["stale"], "{alerts:?}");
    assert!(s.stop());
}

async fn pb_client(url: &str) -> tlog_proto::v1::log_client::LogClient<tonic::transport::Channel> {
    tlog_proto::v1::log_client::LogClient::connect(url.to_owned())
        .await
        .expect("upstream")
}

/// A token from the operator key `AuthedLog::start` made in `dir`.
fn mint_token(dir: &Path, sub: &str, role: &str, ttl: &str) -> String {
    let key = dir.join("op.key");
    let o = run(
        "tlog-server",
        &[
            "token",
            "mint",
            "--key",
            key.to_str().expect("utf8"),
            "--kid",
            "k1",
            "--issuer",
            "https://ops.e2e",
            "--audience",
            "tlog",
            "--subject",
            sub,
            "--role",
            role,
            "--ttl",
            ttl,
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout).trim().to_owned()
}

/// A log with authentication: two token principals (the registry and the
/// release pipeline) and the release pipeline's signing key trusted for
/// attestations. Submits through the client library.
struct AuthedLog {
    server: Server,
    vkey: String,
    registry: String,
    release: String,
    signer: tlog_core::note::Signer,
    rt: tokio::runtime::Runtime,
}

impl AuthedLog {
    fn start(dir: &Path) -> AuthedLog {
        let p = |n: &str| dir.join(n).to_str().expect("utf8").to_owned();
        let data = dir.join("data");
        let vkey = init(&data, "rules.e2e.example/log");
        let kg = run(
            "tlog-server",
            &[
                "token",
                "keygen",
                "--kid",
                "k1",
                "--key-out",
                &p("op.key"),
                "--jwks-out",
                &p("op.jwks"),
            ],
        );
        assert!(kg.status.success(), "{}", text(&kg.stderr));
        let signer =
            tlog_core::note::Signer::from_seed("release-pipeline", &[5; 32]).expect("signer");
        std::fs::write(
            dir.join("policy.cedar"),
            "permit(principal, action, resource);\n",
        )
        .expect("policy");
        std::fs::write(
            dir.join("server.toml"),
            format!(
                "[auth]\npolicy_file = {:?}\ntrusted_signers = [{:?}]\n\
                 [[auth.token_issuers]]\nissuer = \"https://ops.e2e\"\naudience = \"tlog\"\njwks_file = {:?}\n",
                p("policy.cedar"),
                signer.verifier().to_vkey(),
                p("op.jwks")
            ),
        )
        .expect("config");
        let server = Server::start_with(&data, &["--config", &p("server.toml")]);
        let mint = |sub: &str| mint_token(dir, sub, "ci", "30m");
        AuthedLog {
            vkey,
            registry: mint("registry"),
            release: mint("release-pipeline"),
            signer,
            server,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    }

    /// Appends planned events in order, in batches that keep one
    /// submitter; the release pipeline's events are signed.
    fn submit(&self, plan: &[tlog_e2e::history::Planned]) {
        use tlog_e2e::history::By;
        self.rt.block_on(async {
            let connect = |token: &str| {
                let opts = tlog_client::ConnectOptions {
                    token: Some(token.to_owned()),
                    ..Default::default()
                };
                let (url, vkey) = (self.server.url.clone(), self.vkey.clone());
                async move {
                    tlog_client::Client::connect_with(&url, &vkey, &opts)
                        .await
                        .expect("connect")
                }
            };
            let mut registry = connect(&self.registry).await;
            let mut release = connect(&self.release).await;
            let mut i = 0;
            while i < plan.len() {
                let by = plan[i].by;
                let mut batch = Vec::new();
                while i < plan.len() && plan[i].by == by && batch.len() < 200 {
                    let mut e = plan[i].event.clone();
                    if by == By::Release {
                        let a = e.attest(&self.signer);
                        e.attestations.push(a);
                    }
                    batch.push(e);
                    i += 1;
                }
                let c = if by == By::Release {
                    &mut release
                } else {
                    &mut registry
                };
                c.append_batch(&batch).await.expect("append");
            }
        });
    }
}

const RULES: &str = r#"
[[rules.require_approval]]
environments = ["production"]
[[rules.version_patterns]]
namespace = "team-*"
pattern = '\d+\.\d+\.\d+'
[[rules.allowed_submitters]]
action = "deploy"
environment = "production"
principals = ["release-pipeline"]
[[rules.required_attestations]]
action = "deploy"
environment = "production"
signers = ["release-pipeline"]
"#;

#[test]
fn every_artifact_rule_fires_on_crafted_events() {
    use tlog_core::event::Action::*;
    use tlog_e2e::history::{By, Planned, event};
    let dir = tempfile::tempdir().expect("tmp");
    let log = AuthedLog::start(dir.path());
    let mut n = 0;
    let mut p = |action, name: &str, version: &str, env: &str, by| {
        n += 1;
        Planned {
            event: event(format!("c{n}"), action, name, version, env, "someone"),
            by,
        }
    };
    let mut plan = vec![
        // A normal release.
        p(Register, "team-a/m", "1.0.0", "", By::Registry),
        p(Approve, "team-a/m", "1.0.0", "", By::Registry),
        p(Deploy, "team-a/m", "1.0.0", "production", By::Release),
    ];
    // digest-conflict: the same version with another digest.
    let mut other = p(Upload, "team-a/m", "1.0.0", "", By::Registry);
    other.event.artifact.digests[0].hex = "ab".repeat(32);
    plan.push(other);
    plan.extend([
        // unregistered + unapproved
        p(Deploy, "team-a/u", "1.0.0", "production", By::Release),
        // version-regression
        p(Register, "team-a/n", "2.0.0", "", By::Registry),
        p(Approve, "team-a/n", "2.0.0", "", By::Registry),
        p(Deploy, "team-a/n", "2.0.0", "production", By::Release),
        p(Register, "team-a/n", "1.9.0", "", By::Registry),
        p(Approve, "team-a/n", "1.9.0", "", By::Registry),
        p(Deploy, "team-a/n", "1.9.0", "production", By::Release),
        // version-pattern
        p(Register, "team-a/v", "latest", "", By::Registry),
        // submitter-not-allowed + missing-attestation
        p(Register, "team-a/s", "1.0.0", "", By::Registry),
        p(Approve, "team-a/s", "1.0.0", "", By::Registry),
        p(Deploy, "team-a/s", "1.0.0", "production", By::Registry),
        // deploy-retired
        p(Register, "team-a/r", "1.0.0", "", By::Registry),
        p(Approve, "team-a/r", "1.0.0", "", By::Registry),
        p(Retire, "team-a/r", "1.0.0", "", By::Registry),
        p(Deploy, "team-a/r", "1.0.0", "production", By::Release),
    ]);
    log.submit(&plan);
    // access-rate: a steady 4 downloads a second for 4 seconds, then 80 at once.
    for s in 0..4 {
        let steady: Vec<Planned> = (0..4)
            .map(|i| Planned {
                event: event(
                    format!("d{s}-{i}"),
                    Download,
                    "team-a/m",
                    "1.0.0",
                    "",
                    "svc-x",
                ),
                by: By::Registry,
            })
            .collect();
        log.submit(&steady);
        std::thread::sleep(std::time::Duration::from_millis(1000));
    }
    let burst: Vec<Planned> = (0..80)
        .map(|i| Planned {
            event: event(format!("b{i}"), Download, "team-a/m", "1.0.0", "", "svc-x"),
            by: By::Registry,
        })
        .collect();
    log.submit(&burst);

    let rest = format!(
        "{RULES}[rules.access_rate]\nwindow = \"1s\"\nfactor = 5.0\nmin_count = 30\nwarmup_windows = 3\n"
    );
    let cfg = config(
        dir.path(),
        &[("rules", &log.vkey, vec![log.server.url.clone()])],
        &rest,
    );
    let (code, alerts, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    let mut got = rules(&alerts);
    got.sort();
    assert_eq!(
        got,
        [
            "access-rate",
            "deploy-retired",
            "digest-conflict",
            "missing-attestation",
            "submitter-not-allowed",
            "unapproved",
            "unregistered",
            "version-pattern",
            "version-regression",
        ],
        "{alerts:#?}"
    );
    for a in &alerts {
        assert!(!a["entries"].as_array().expect("entries").is_empty(), "{a}");
        assert!(a["entries"][0]["leaf_hash"].as_str().expect("hash").len() == 64);
    }
    let conflict = alerts
        .iter()
        .find(|a| a["rule"] == "digest-conflict")
        .expect("conflict");
    let idx: Vec<u64> = conflict["entries"]
        .as_array()
        .expect("e")
        .iter()
        .map(|e| e["index"].as_u64().expect("i"))
        .collect();
    assert_eq!(idx, [0, 3]);
    // The alert's leaf hash is the log's: the entry proves with it.
    let out = run(
        "tlog",
        &[
            "--server",
            &log.server.url,
            "--vkey",
            &log.vkey,
            "--no-state",
            "--token",
            &log.registry,
            "--json",
            "prove",
            conflict["entries"][1]["leaf_hash"].as_str().expect("h"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn nothing_fires_on_a_benign_history_of_ten_thousand_events() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = AuthedLog::start(dir.path());
    let plan = tlog_e2e::history::benign(10_000, 250, 11);
    log.submit(&plan);
    let rest = format!("{RULES}[rules.access_rate]\n");
    let cfg = config(
        dir.path(),
        &[("benign", &log.vkey, vec![log.server.url.clone()])],
        &rest,
    );
    let (code, alerts, err) = check(&cfg);
    assert_eq!((code, alerts.len()), (0, 0), "{err} {alerts:#?}");
    let st: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("monitor-state/benign/state.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(st["size"].as_u64(), Some(plan.len() as u64));
}

fn version_pattern_violation(id: &str) -> String {
    ev(id, "register", "team-z/model", &format!("bad-{id}"), "")
}

fn log_size(s: &Server, vkey: &str) -> u64 {
    let out = run(
        "tlog",
        &[
            "--server",
            &s.url,
            "--vkey",
            vkey,
            "--no-state",
            "--json",
            "checkpoint",
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("checkpoint json");
    v["size"].as_u64().expect("size")
}

/// The monitor's audited size for a log, from its /metrics.
fn metric_size(addr: &str, log: &str) -> u64 {
    let (_, body) = http(addr, "GET", "/metrics", "");
    let prefix = format!("tlog_monitor_verified_size{{log=\"{log}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

fn verified_size(dir: &Path, log: &str) -> u64 {
    std::fs::read(dir.join(format!("monitor-state/{log}/state.json")))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["size"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_restarted_monitor_skips_no_range_and_repeats_no_alert() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "restart.e2e.example/log");
    let s = Server::start(&data);
    // The state is saved only at shutdown: the restarted monitor must
    // re-audit everything the killed one saw, and send nothing twice.
    let rest = "listen = \"127.0.0.1:0\"\nsave_interval = \"1h\"\n\
                [[rules.version_patterns]]\nnamespace = \"team-z/*\"\npattern = '\\d+\\.\\d+'\n";
    let cfg = config(dir.path(), &[("rs", &vkey, vec![s.url.clone()])], rest);
    let filler = |tag: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| ev(&format!("{tag}-{i}"), "download", "team-y/m", "1.0", ""))
            .collect()
    };
    let m = MonitorProcess::start(&cfg, dir.path(), "1");
    let mut first = filler("a", 30);
    first.insert(10, version_pattern_violation("v1"));
    submit(&s, &vkey, &first);
    m.wait_for(20, "the first alert", |a| a.len() == 1);
    // A large range with a violation in the middle; the monitor is killed
    // while it may be auditing it.
    let mut second = filler("b", 3000);
    second.insert(1500, version_pattern_violation("v2"));
    submit(&s, &vkey, &second);
    std::thread::sleep(std::time::Duration::from_millis(150));
    let before = m.alerts();
    m.kill();
    submit(&s, &vkey, &[version_pattern_violation("v3")]);
    let m2 = MonitorProcess::start(&cfg, dir.path(), "2");
    let size = log_size(&s, &vkey);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric_size(&m2.addr, "rs") < size {
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor did not catch up"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let after = m2.wait_for(10, "the remaining alerts", |a| before.len() + a.len() >= 3);
    assert!(m2.stop(), "SIGTERM stops it cleanly");
    assert_eq!(verified_size(dir.path(), "rs"), size, "saved at shutdown");
    let all: Vec<&Value> = before.iter().chain(after.iter()).collect();
    let mut ids: Vec<&str> = all.iter().map(|a| a["id"].as_str().expect("id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "no alert repeated: {all:#?}");
    let mut versions: Vec<String> = all
        .iter()
        .map(|a| a["message"].as_str().unwrap_or_default().to_owned())
        .filter_map(|m| {
            ["bad-v1", "bad-v2", "bad-v3"]
                .into_iter()
                .find(|v| m.contains(v))
                .map(str::to_owned)
        })
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        ["bad-v1", "bad-v2", "bad-v3"],
        "no range skipped: {all:#?}"
    );
    let journal =
        std::fs::read_to_string(dir.path().join("monitor-state/alerts.jsonl")).expect("journal");
    assert_eq!(journal.lines().count(), 3);
    assert!(s.stop());
}

/// A tiny HTTP server that records requests and answers 500 to the first.
/// Requests a webhook receiver saw: headers and body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

fn webhook_receiver() -> (String, Received) {
    use std::io::{BufRead as _, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { continue };
            let mut r = std::io::BufReader::new(conn);
            let mut headers = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            seen2.lock().expect("lock").push((headers, body));
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = r.get_mut().write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, seen)
}

fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[test]
fn gossip_webhooks_hooks_and_metrics() {
    let dir = tempfile::tempdir().expect("tmp");
    let a_dir = dir.path().join("a");
    let vkey = init(&a_dir, "gossip.e2e.example/log");
    let b_dir = dir.path().join("b");
    copy_dir(&a_dir, &b_dir);
    let a = Server::start(&a_dir);
    let b = Server::start(&b_dir);
    submit(&a, &vkey, &[ev("1", "register", "m", "1.0.0", "")]);
    submit(&b, &vkey, &[ev("1", "register", "m", "6.6.6", "")]);
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").expect("secret");
    let (hook_url, received) = webhook_receiver();
    let hook_out = dir.path().join("hook.out");
    let gossip_dir = dir.path().join("gossip");
    std::fs::create_dir_all(&gossip_dir).expect("gossip dir");
    let rest = format!(
        "listen = \"127.0.0.1:0\"\ngossip_dir = {gossip_dir:?}\n\
         [[alerts.webhook]]\nurl = {hook_url:?}\nsecret_file = {secret:?}\nattempts = 3\n\
         [[alerts.hook]]\ncommand = [\"sh\", \"-c\", \"echo \\\"$TLOG_ALERT_RULE $TLOG_ALERT_ENTRIES\\\" >> {}\"]\n",
        hook_out.display()
    );
    // Only the honest server is configured; the other is seen through gossip.
    let cfg = config(dir.path(), &[("g", &vkey, vec![a.url.clone()])], &rest);
    let m = MonitorProcess::start(&cfg, dir.path(), "g");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while metric_size(&m.addr, "g") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "monitor did not audit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A client of B posts the checkpoint it saw.
    let b_note = {
        let out = run(
            "tlog",
            &[
                "--server",
                &b.url,
                "--vkey",
                &vkey,
                "--no-state",
                "--json",
                "checkpoint",
            ],
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        v["signed_note"].as_str().expect("note").to_owned()
    };
    let (status, body) = http(&m.addr, "POST", "/gossip", "not a checkpoint");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(&m.addr, "POST", "/gossip", &b_note);
    assert_eq!(status, 202, "{body}");
    let alerts = m.wait_for(20, "a split-view alert from gossip", |a| !a.is_empty());
    assert_eq!(rules(&alerts), ["split-view"]);
    assert!(
        alerts[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("POST /gossip")
    );
    // The same checkpoint dropped in the gossip folder: checked, moved to
    // done/, and not alerted twice.
    std::fs::write(gossip_dir.join("seen-by-client.checkpoint"), &b_note).expect("write");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !gossip_dir.join("done/seen-by-client.checkpoint").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "gossip file not taken"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(m.alerts().len(), 1, "not alerted twice");
    // The webhook got it on the second attempt, signed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while received.lock().expect("lock").len() < 2 {
        assert!(std::time::Instant::now() < deadline, "webhook not retried");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (headers, body) = received.lock().expect("lock")[1].clone();
    let sig = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-tlog-signature:")
                .map(|v| v.trim().to_owned())
        })
        .expect("signature header");
    let want = format!(
        "sha256={}",
        hex::encode(tlog_monitor::sink::hmac_sha256(b"s3cret", &body))
    );
    assert_eq!(sig, want);
    let posted: Value = serde_json::from_slice(&body).expect("json body");
    assert_eq!(posted["id"], alerts[0]["id"]);
    // The hook ran with the alert in its environment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&hook_out)
        .unwrap_or_default()
        .contains("split-view")
    {
        assert!(std::time::Instant::now() < deadline, "hook did not run");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, metrics) = http(&m.addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tlog_monitor_alerts_total{rule=\"split-view\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tlog_monitor_verified_size{log=\"g\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tlog_monitor_gossip_total{outcome=\"accepted\"} 2"),
        "{metrics}"
    );
    assert!(m.stop());
    assert!(a.stop() && b.stop());
}

#[test]
fn a_monitor_rides_out_an_outage_and_skips_no_range() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "outage.e2e.example/log");
    let s = Server::start(&data);
    let addr = s.addr.clone();
    let rest = "listen = \"127.0.0.1:0\"\nunreachable_after = 3\n\
                [[rules.version_patterns]]\nnamespace = \"team-z/*\"\npattern = '\\d+\\.\\d+'\n";
    let cfg = config(dir.path(), &[("out", &vkey, vec![s.url.clone()])], rest);
    let m = MonitorProcess::start(&cfg, dir.path(), "1");
    let filler = |tag: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| ev(&format!("{tag}-{i}"), "download", "team-y/m", "1.0", ""))
            .collect()
    };
    submit(&s, &vkey, &filler("a", 40));
    let wait_size = |size: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while metric_size(&m.addr, "out") < size {
            assert!(
                std::time::Instant::now() < deadline,
                "the monitor did not reach {size}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_size(40);
    // The log goes away for a while: the monitor reports it unreachable.
    assert!(s.stop());
    m.wait_for(20, "an unreachable alert", |a| {
        rules(a).iter().any(|r| r == "unreachable")
    });
    // It comes back at the same address, having grown while away of the
    // monitor's sight (and with a violation inside the growth).
    let s = Server::start_at(&data, &addr, &[]);
    let mut more = filler("b", 500);
    more.insert(250, version_pattern_violation("during-outage"));
    submit(&s, &vkey, &more);
    let size = log_size(&s, &vkey);
    wait_size(size);
    let alerts = m.wait_for(20, "the violation inside the outage's range", |a| {
        rules(a).iter().any(|r| r == "version-pattern")
    });
    let kinds = rules(&alerts);
    assert!(
        kinds
            .iter()
            .all(|r| r == "unreachable" || r == "version-pattern"),
        "only the outage and the planted violation: {alerts:#?}"
    );
    assert!(m.stop());
    assert_eq!(verified_size(dir.path(), "out"), size, "everything audited");
    assert!(s.stop());
}

/// The monitor's credentials expire: it says `credentials-expired`, not
/// `unreachable`; a new token in its `token_file` is picked up (on change,
/// and on SIGHUP, which no longer stops it), and auditing resumes.
#[test]
fn expired_credentials_are_named_and_a_new_token_is_picked_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = AuthedLog::start(dir.path());
    let mint = |ttl: &str| mint_token(dir.path(), "monitor", "monitor", ttl);
    log.submit(&tlog_e2e::history::benign(20, 2, 1));
    let token_file = dir.path().join("monitor.token");
    std::fs::write(&token_file, mint("4s")).expect("token");
    let cfg = config(
        dir.path(),
        &[("authed", &log.vkey, vec![log.server.url.clone()])],
        "listen = \"127.0.0.1:0\"\nunreachable_after = 1",
    );
    let mut text_cfg = std::fs::read_to_string(&cfg).expect("cfg");
    text_cfg.push_str(&format!("token_file = {:?}\n", token_file));
    std::fs::write(&cfg, text_cfg).expect("cfg");
    let mut m = MonitorProcess::start(&cfg, dir.path(), "creds");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while metric_size(&m.addr, "authed") < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor never audited"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The token expires (plus the server's 30 s skew would hide it: the
    // log refuses from exp + 30 s).
    let alerts = m.wait_for(60, "credentials-expired", |a| {
        rules(a).iter().any(|r| r == "credentials-expired")
    });
    assert!(
        !rules(&alerts).iter().any(|r| r == "unreachable"),
        "a refused token is not an outage: {alerts:?}"
    );
    // SIGHUP does not stop it; a new token in the file is used.
    m.signal("HUP");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(m.running(), "SIGHUP stopped the monitor");
    std::fs::write(&token_file, mint("30m")).expect("token");
    m.signal("HUP");
    log.submit(&tlog_e2e::history::benign(10, 2, 2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric_size(&m.addr, "authed") < 30 {
        assert!(
            std::time::Instant::now() < deadline,
            "auditing did not resume with the new token: {:?}",
            rules(&m.alerts())
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(m.running());
    assert!(m.stop());
}
