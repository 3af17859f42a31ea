//! Witnessing with the real binaries (c2sp.org/tlog-witness): three
//! `tlog-monitor` witnesses, a `tlog-server` that asks them with a 2-of-3
//! policy (c2sp.org/tlog-policy), and the `tlog` CLI enforcing the policy
//! online and offline. A witness stopped, restarted, a forked log refused,
//! and a rolled-back store detected through the witnesses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tlog_core::policy::Policy;
use tlog_e2e::{
    MonitorProcess, Server, copy_dir, http_request, init, ready_http, run, run_with_stdin,
};

struct Witness {
    proc: Option<MonitorProcess>,
    dir: PathBuf,
    config: PathBuf,
    vkey: String,
    addr: String,
    name: String,
}

impl Witness {
    /// A witness of `log_vkey` named `w<i>.example`, in `dir/w<i>`.
    fn start(dir: &Path, i: u32, log_vkey: &str) -> Witness {
        let dir = dir.join(format!("w{i}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let name = format!("w{i}.witness.example");
        let key = dir.join("witness.key");
        let out = run(
            "tlog-monitor",
            &[
                "witness",
                "keygen",
                "--name",
                &name,
                "--out",
                key.to_str().expect("utf8"),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vkey = String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_owned();
        let mut w = Witness {
            proc: None,
            config: dir.join("monitor.toml"),
            dir,
            vkey,
            addr: "127.0.0.1:0".into(),
            name,
        };
        w.write_config(log_vkey);
        w.restart();
        w
    }

    fn write_config(&self, log_vkey: &str) {
        std::fs::write(
            &self.config,
            format!(
                "state_dir = \"{}\"\n\n[witness]\nname = \"{}\"\nkey_file = \"witness.key\"\nlisten = \"{}\"\n\n[[witness.log]]\nvkey = \"{log_vkey}\"\n",
                self.dir.join("state").display(),
                self.name,
                self.addr,
            ),
        )
        .expect("config");
    }

    /// Starts it again at the same address (its state is on disk).
    fn restart(&mut self) {
        let m = MonitorProcess::start(&self.config, &self.dir, "witness");
        self.addr = m.witness.clone().expect("the ready file names the witness");
        self.proc = Some(m);
        let text = std::fs::read_to_string(&self.config).expect("config");
        let fixed = text
            .lines()
            .map(|l| {
                if l.starts_with("listen") {
                    format!("listen = \"{}\"", self.addr)
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&self.config, fixed + "\n").expect("config");
    }

    fn stop(&mut self) {
        if let Some(m) = self.proc.take() {
            assert!(m.stop(), "the witness stops cleanly");
        }
    }

    /// The checkpoint it last cosigned (its monitoring endpoint).
    fn held(&self, origin: &str) -> Option<String> {
        use sha2::Digest as _;
        let hash = hex::encode(sha2::Sha256::digest(origin.as_bytes()));
        let addr: SocketAddr = self.addr.parse().expect("addr");
        let (st, _, body) = http_request(addr, "GET", &format!("/{hash}/checkpoint"), &[]);
        (st == 200).then(|| String::from_utf8(body).expect("utf8"))
    }
}

fn policy_text(log_vkey: &str, ws: &[&Witness]) -> String {
    let mut p = format!("log {log_vkey}\n");
    for (i, w) in ws.iter().enumerate() {
        p += &format!("witness W{} {} http://{}\n", i + 1, w.vkey, w.addr);
    }
    p += "group G 2 W1 W2 W3\nquorum G\n";
    p
}

fn server_config(dir: &Path, policy: &Path, mode: &str) -> PathBuf {
    let config = dir.join(format!("server-{mode}.toml"));
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[witnessing]\npolicy_file = \"{}\"\nmode = \"{mode}\"\ntimeout = \"2s\"\n\n[publish]\nto = \"{}\"\ninterval = \"50ms\"\n",
            policy.display(),
            dir.join(format!("site-{mode}")).display()
        ),
    )
    .expect("config");
    config
}

/// A new log in `dir/data`, three witnesses of it, their 2-of-3 policy
/// file, and the log's server asking them in `mode`.
struct Witnessed {
    vkey: String,
    ws: Vec<Witness>,
    policy: PathBuf,
    parsed: Policy,
    server: Server,
    http: SocketAddr,
}

fn witnessed_log(dir: &Path, origin: &str, mode: &str) -> Witnessed {
    let data = dir.join("data");
    let vkey = init(&data, origin);
    let ws: Vec<Witness> = (1..=3).map(|i| Witness::start(dir, i, &vkey)).collect();
    let policy = dir.join("witnesses.policy");
    std::fs::write(&policy, policy_text(&vkey, &ws.iter().collect::<Vec<_>>())).expect("policy");
    let parsed = Policy::parse(&std::fs::read(&policy).expect("read")).expect("policy parses");
    let config = server_config(dir, &policy, mode);
    let server = Server::start_with(&data, &["--config", config.to_str().expect("utf8")]);
    let http = ready_http(&data);
    Witnessed {
        vkey,
        ws,
        policy,
        parsed,
        server,
        http,
    }
}

fn event(id: &str) -> String {
    format!(
        r#"{{"source":"wit","event_id":"{id}","action":"upload","artifact":{{"name":"team-w/m","version":"1.0.{}","digests":["sha256:{}"]}},"actor":"ci","interface":"ci-pipeline"}}"#,
        id.len(),
        "cd".repeat(32)
    )
}

/// `tlog submit` of one event; the output.
fn submit(s: &Server, vkey: &str, policy: Option<&Path>, id: &str) -> std::process::Output {
    let mut args = vec![
        "--server",
        &s.url,
        "--vkey",
        vkey,
        "--no-state",
        "--timeout",
        "10s",
    ];
    let p;
    if let Some(pol) = policy {
        p = pol.to_str().expect("utf8").to_owned();
        args.extend(["--policy", &p]);
    }
    args.extend(["submit", "--jsonl"]);
    run_with_stdin("tlog", &args, event(id).as_bytes())
}

fn wait(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sync_witnessing_with_two_of_three() {
    let dir = tempfile::tempdir().expect("tmp");
    let origin = "witnessed.e2e.example/log";
    let Witnessed {
        vkey,
        mut ws,
        policy,
        parsed,
        server: s,
        http,
    } = witnessed_log(dir.path(), origin, "sync");

    // A sync append answers with a checkpoint that satisfies the quorum:
    // the CLI with --policy accepts it.
    ok(&submit(&s, &vkey, Some(&policy), "a1"));
    let (st, _, cp) = http_request(http, "GET", "/checkpoint", &[]);
    assert_eq!(st, 200);
    let sat = parsed
        .check(&cp, None)
        .expect("the served checkpoint satisfies 2 of 3");
    assert!(sat.cosigners.len() >= 2, "{:?}", sat.cosigners);
    assert_eq!(sat.checkpoint.checkpoint.size, 1);

    // An offline proof carries the cosigned checkpoint; verify-proof with
    // the policy and no server.
    let proof = dir.path().join("0.tlog-proof");
    let p = policy.to_str().expect("utf8");
    ok(&run(
        "tlog",
        &[
            "--server",
            &s.url,
            "--vkey",
            &vkey,
            "--no-state",
            "--policy",
            p,
            "prove",
            "0",
            "--format",
            "tlog-proof",
            "-o",
            proof.to_str().expect("utf8"),
        ],
    ));
    let out = ok(&run(
        "tlog",
        &[
            "--vkey",
            &vkey,
            "--policy",
            p,
            "verify-proof",
            proof.to_str().expect("utf8"),
        ],
    ));
    assert!(
        out.contains("the witness policy is satisfied: cosigned by"),
        "{out}"
    );
    // The same file against a policy that needs all three and a witness
    // the log never asked fails offline.
    let stranger =
        tlog_core::cosignature::Cosigner::from_seed("stranger.example", &[9; 32]).expect("c");
    let strict = dir.path().join("strict.policy");
    std::fs::write(
        &strict,
        format!("witness S {}\nquorum S\n", stranger.verifier().to_vkey()),
    )
    .expect("strict");
    let out = run(
        "tlog",
        &[
            "--vkey",
            &vkey,
            "--policy",
            strict.to_str().expect("utf8"),
            "verify-proof",
            proof.to_str().expect("utf8"),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not satisfy the witness policy"));

    // An evidence bundle carries it too: verify-bundle --policy.
    let bundle = dir.path().join("b.json");
    ok(&run(
        "tlog",
        &[
            "--server",
            &s.url,
            "--vkey",
            &vkey,
            "--no-state",
            "export",
            "--artifact",
            "team-w/m",
            "-o",
            bundle.to_str().expect("utf8"),
        ],
    ));
    let out = ok(&run(
        "tlog",
        &[
            "--vkey",
            &vkey,
            "--policy",
            p,
            "verify-bundle",
            bundle.to_str().expect("utf8"),
        ],
    ));
    assert!(out.contains("cosigned by"), "{out}");

    // One witness stopped: two of three still cosign.
    ws[2].stop();
    ok(&submit(&s, &vkey, Some(&policy), "a2"));
    // Two stopped: a sync append waits for its deadline, then UNAVAILABLE,
    // saying the event is logged.
    ws[1].stop();
    let started = Instant::now();
    let out = submit(&s, &vkey, Some(&policy), "a3");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("witnesses did not cosign"), "{err}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited for the deadline"
    );

    // The second witness restarted mid-stream, at its address with its
    // state: the retried event is cosigned, and the witness caught up from
    // the size it held.
    ws[1].restart();
    ok(&submit(&s, &vkey, Some(&policy), "a3"));
    let held = ws[1].held(origin).expect("w2 holds a checkpoint");
    assert_eq!(held.lines().nth(1), Some("3"), "{held}");
    // The first witness saw everything.
    assert_eq!(ws[0].held(origin).expect("w1").lines().nth(1), Some("3"));
    drop(s);
    for w in &mut ws {
        w.stop();
    }
}

#[test]
fn async_witnessing_continues_without_witnesses() {
    let dir = tempfile::tempdir().expect("tmp");
    let origin = "async.e2e.example/log";
    let Witnessed {
        vkey,
        mut ws,
        policy: _,
        parsed,
        server: s,
        http,
    } = witnessed_log(dir.path(), origin, "async");
    // A monitor that trusts only checkpoints the policy's quorum cosigned.
    let mon_dir = dir.path().join("monitor");
    std::fs::create_dir_all(&mon_dir).expect("mkdir");
    let mon_cfg = mon_dir.join("monitor.toml");
    let all_three = mon_dir.join("all-three.policy");
    std::fs::write(
        &all_three,
        policy_text(&vkey, &ws.iter().collect::<Vec<_>>()).replace("group G 2 ", "group G all "),
    )
    .expect("policy");
    std::fs::write(
        &mon_cfg,
        format!(
            "state_dir = \"state\"\nlisten = \"127.0.0.1:0\"\npoll_interval = \"100ms\"\n\n[[log]]\nname = \"l\"\nvkey = \"{vkey}\"\nendpoints = [\"{}\"]\npolicy_file = \"{}\"\n",
            s.url,
            all_three.display()
        ),
    )
    .expect("monitor config");
    let monitor = MonitorProcess::start(&mon_cfg, &mon_dir, "policy");
    let verified = || -> Option<u64> {
        let addr: SocketAddr = monitor.addr.parse().ok()?;
        let (_, _, body) = http_request(addr, "GET", "/metrics", &[]);
        String::from_utf8(body)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("tlog_monitor_verified_size{log=\"l\"} "))?
            .parse()
            .ok()
    };
    ok(&submit(&s, &vkey, None, "b1"));
    // Cosignatures arrive after the answer.
    wait(20, "a cosigned checkpoint of size 1", || {
        let (_, _, cp) = http_request(http, "GET", "/checkpoint", &[]);
        parsed
            .check(&cp, None)
            .is_ok_and(|s| s.checkpoint.checkpoint.size == 1)
    });
    wait(20, "the monitor audits size 1", || verified() == Some(1));
    // One witness down: the log's 2-of-3 quorum still cosigns size 2, but
    // the monitor's policy wants all three and does not trust it.
    ws[2].stop();
    ok(&submit(&s, &vkey, None, "b2"));
    wait(20, "a cosigned checkpoint of size 2", || {
        let (_, _, cp) = http_request(http, "GET", "/checkpoint", &[]);
        parsed
            .check(&cp, None)
            .is_ok_and(|s| s.checkpoint.checkpoint.size == 2)
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        verified(),
        Some(1),
        "the monitor trusts only what all three cosigned"
    );
    // Every witness down: appends still answer at once.
    for w in &mut ws {
        w.stop();
    }
    ok(&submit(&s, &vkey, None, "b3"));
    // The served checkpoint stays the newest cosigned one (size 2).
    let (_, _, cp) = http_request(http, "GET", "/checkpoint", &[]);
    assert_eq!(
        parsed
            .check(&cp, None)
            .expect("cosigned")
            .checkpoint
            .checkpoint
            .size,
        2
    );
    // Witnesses back: the log catches them up to size 3.
    for w in &mut ws {
        w.restart();
    }
    wait(20, "a cosigned checkpoint of size 3", || {
        let (_, _, cp) = http_request(http, "GET", "/checkpoint", &[]);
        parsed
            .check(&cp, None)
            .is_ok_and(|s| s.checkpoint.checkpoint.size == 3)
    });
    wait(20, "the monitor audits size 3", || verified() == Some(3));
    // The published mirror shows only what the quorum cosigned, with the
    // cosignatures.
    let site = dir.path().join("site-async").join("checkpoint");
    wait(20, "the mirror shows the cosigned size 3", || {
        std::fs::read(&site).is_ok_and(|cp| {
            parsed
                .check(&cp, None)
                .is_ok_and(|s| s.checkpoint.checkpoint.size == 3)
        })
    });
    assert!(monitor.alerts().is_empty(), "{:?}", monitor.alerts());
    drop(monitor);
    drop(s);
    for w in &mut ws {
        w.stop();
    }
}

#[test]
fn a_forked_log_and_a_rolled_back_store_are_refused_by_the_witnesses() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let origin = "fork.e2e.example/log";
    let vkey = init(&data, origin);
    // The fork: a copy of the new log, same key, that will grow
    // differently.
    let fork = dir.path().join("fork");
    copy_dir(&data, &fork);
    let mut ws: Vec<Witness> = (1..=3)
        .map(|i| Witness::start(dir.path(), i, &vkey))
        .collect();
    let policy = dir.path().join("witnesses.policy");
    std::fs::write(&policy, policy_text(&vkey, &ws.iter().collect::<Vec<_>>())).expect("policy");
    let config = server_config(dir.path(), &policy, "sync");
    let cfg = ["--config", config.to_str().expect("utf8")];

    let a = Server::start_with(&data, &cfg);
    for id in ["c1", "c2", "c3"] {
        ok(&submit(&a, &vkey, Some(&policy), id));
    }
    let honest = ws[0].held(origin).expect("cosigned");
    assert_eq!(honest.lines().nth(1), Some("3"));

    // The fork appends other events with the same key: the witnesses
    // refuse it (409, then 422 on its proof), and it stops appending.
    let b = Server::start_with(&fork, &cfg);
    for id in ["x1", "x2", "x3", "x4"] {
        let _ = submit(&b, &vkey, None, id);
    }
    wait(20, "the fork halts", || {
        b.log_text().contains("rolled back or replaced")
    });
    let out = submit(&b, &vkey, None, "x5");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("appends are stopped"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for w in &ws {
        let held = w.held(origin).expect("held");
        assert_eq!(
            held.lines().take(3).collect::<Vec<_>>(),
            honest.lines().take(3).collect::<Vec<_>>(),
            "no witness cosigned the fork"
        );
    }
    drop(b);

    // A rolled-back store: stop the honest log, keep a copy at size 3,
    // grow it to 5, then put the old copy back. The checkpoint lock moves
    // with the copy, so only the witnesses can tell.
    assert!(a.stop());
    let old = dir.path().join("old");
    copy_dir(&data, &old);
    let a = Server::start_with(&data, &cfg);
    for id in ["c4", "c5"] {
        ok(&submit(&a, &vkey, Some(&policy), id));
    }
    assert!(a.stop());
    std::fs::remove_dir_all(&data).expect("rm");
    copy_dir(&old, &data);
    let a = Server::start_with(&data, &cfg);
    wait(20, "the rollback is detected", || {
        a.log_text()
            .contains("cosigned size 5 but the store holds 3 entries")
    });
    let out = submit(&a, &vkey, None, "c6");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rolled back or replaced"), "{err}");
    drop(a);
    for w in &mut ws {
        w.stop();
    }
}

/// An `https://` witness whose certificate a private CA signed, behind
/// Debian's nginx terminating TLS: with `ca_file` the log reaches it and
/// sync appends are cosigned; without, the TLS handshake fails and a sync
/// append is refused at its deadline; a CA file with no certificate stops
/// the server from starting.
#[test]
fn an_https_witness_with_a_private_ca_cosigns_through_nginx() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let origin = "e2e.https.example/log";
    let data = dir.join("data");
    let vkey = init(&data, origin);
    let w = Witness::start(dir, 1, &vkey);
    crate::access::certs(dir);
    let work = dir.join("nginx");
    std::fs::create_dir_all(&work).expect("mkdir");
    let nginx = crate::publish::Nginx::with_server(&work, |port| {
        format!(
            "listen 127.0.0.1:{port} ssl;\n    ssl_certificate {d}/server.pem;\n    \
             ssl_certificate_key {d}/server.key;\n    \
             location / {{ proxy_pass http://{addr}; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}",
            d = dir.display(),
            addr = w.addr,
        )
    });
    let policy = dir.join("https.policy");
    std::fs::write(
        &policy,
        format!(
            "log {vkey}\nwitness W1 {} https://localhost:{}\nquorum W1\n",
            w.vkey,
            nginx.addr.port()
        ),
    )
    .expect("policy");
    let config = |ca: bool| {
        let path = dir.join(format!("server-ca-{ca}.toml"));
        let ca_line = if ca {
            format!("ca_file = \"{}\"\n", dir.join("ca.pem").display())
        } else {
            String::new()
        };
        std::fs::write(
            &path,
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n\n[witnessing]\npolicy_file = \"{}\"\nmode = \"sync\"\ntimeout = \"2s\"\n{ca_line}",
                policy.display()
            ),
        )
        .expect("config");
        path
    };

    // Trusting the private CA: cosigned through nginx.
    let with_ca = config(true);
    let server = Server::start_with(&data, &["--config", with_ca.to_str().expect("utf8")]);
    // With --policy the CLI accepts only a checkpoint W1 cosigned.
    ok(&submit(&server, &vkey, Some(&policy), "https-1"));
    assert_eq!(
        w.held(origin).expect("the witness cosigned").lines().nth(1),
        Some("1")
    );
    let http = ready_http(&data);
    let (st, _, body) = http_request(http, "GET", "/checkpoint", &[]);
    assert_eq!(st, 200);
    let note = String::from_utf8(body).expect("utf8");
    assert!(note.contains(&format!("\u{2014} {} ", w.name)), "{note}");
    assert!(server.stop(), "the server stops cleanly");

    // Web PKI roots only: the handshake fails and nothing is cosigned.
    let without = config(false);
    let server = Server::start_with(&data, &["--config", without.to_str().expect("utf8")]);
    let out = submit(&server, &vkey, None, "https-2");
    assert!(!out.status.success(), "an append with no quorum must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("witnesses did not cosign"), "{err}");
    assert_eq!(
        w.held(origin).expect("held").lines().nth(1),
        Some("1"),
        "the witness was not reached"
    );
    assert!(server.stop(), "the server stops cleanly");

    // A CA file with no certificate is refused at start, with the reason.
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let bad = dir.join("server-bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[witnessing]\npolicy_file = \"{}\"\nca_file = \"{}\"\n",
            policy.display(),
            empty.display()
        ),
    )
    .expect("config");
    let out = run(
        "tlog-server",
        &[
            "serve",
            "--data-dir",
            data.to_str().expect("utf8"),
            "--config",
            bad.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("witnessing.ca_file") && err.contains("no PEM certificate"),
        "{err}"
    );
}
