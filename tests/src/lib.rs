//! Helpers for the end-to-end tests in `tests/`: they start the real
//! `tlog-server` and `tlog` binaries on `127.0.0.1` with port 0, talk to
//! them, and stop them (SIGTERM, then SIGKILL if they linger).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The folder holding the workspace's binaries (next to the test
/// executable's `deps/` folder).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_owned();
    for b in ["tlog-server", "tlog", "tlog-monitor"] {
        assert!(
            dir.join(b).is_file(),
            "{} not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
            dir.join(b).display()
        );
    }
    dir
}

/// A command for one of the binaries. The CLI's trusted state and config
/// file are kept out of the user's home: tests pass `--state` when they
/// care, and otherwise share a folder under the system's temporary folder
/// (each test log has its own key, hence its own state file).
pub fn cmd(name: &str) -> Command {
    let home = std::env::temp_dir().join("tlog-e2e-home");
    let mut c = Command::new(bin_dir().join(name));
    c.env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("TLOG_SERVER")
        .env_remove("TLOG_VKEY")
        .env_remove("TLOG_TOKEN")
        .env_remove("TLOG_CONFIG")
        .env_remove("TLOG_STATE");
    c
}

/// Sends SIGTERM and waits up to 20 s (then SIGKILL); returns whether the
/// process exited with status 0. For servers whose master must stop its
/// workers (nginx, Garage) too.
pub fn terminate(child: &mut Child) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is killed if it is still running when dropped.
struct Running(Option<Child>);

impl Running {
    fn get(&mut self) -> Option<&mut Child> {
        self.0.as_mut()
    }

    /// SIGTERM, then wait; whether it exited with status 0.
    fn stop(&mut self) -> bool {
        match self.0.take() {
            Some(mut c) => terminate(&mut c),
            None => false,
        }
    }

    /// SIGKILL, then wait.
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `tlog-monitor run`; its stdout (the alerts) goes to a file.
pub struct MonitorProcess {
    child: Running,
    /// Alerts, one JSON object per line.
    pub out: PathBuf,
    /// Diagnostics.
    pub err: PathBuf,
    /// The HTTP address (`/metrics`, `POST /gossip`), if configured.
    pub addr: String,
    /// The witness's address, when it runs as one.
    pub witness: Option<String>,
}

impl MonitorProcess {
    /// Starts `tlog-monitor run --config CONFIG`, with output files in
    /// `dir` (named by `tag`), and waits until it is ready.
    pub fn start(config: &Path, dir: &Path, tag: &str) -> MonitorProcess {
        let ready = dir.join(format!("monitor-{tag}.ready"));
        let _ = std::fs::remove_file(&ready);
        let out = dir.join(format!("monitor-{tag}.out"));
        let err = dir.join(format!("monitor-{tag}.err"));
        let child = cmd("tlog-monitor")
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"))
            .spawn()
            .expect("start tlog-monitor");
        let mut m = MonitorProcess {
            child: Running(Some(child)),
            out,
            err,
            addr: String::new(),
            witness: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && text.ends_with('\n')
            {
                let mut lines = text.lines();
                m.addr = lines.next().unwrap_or_default().trim().to_owned();
                m.witness = lines
                    .find_map(|l| l.strip_prefix("witness="))
                    .map(str::to_owned);
                return m;
            }
            if let Some(c) = m.child.get()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "tlog-monitor exited with {status}: {}",
                    std::fs::read_to_string(&m.err).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "monitor did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The alerts printed so far.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `pred` holds for the alerts (or panics after `secs`).
    pub fn wait_for(
        &self,
        secs: u64,
        what: &str,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let a = self.alerts();
            if pred(&a) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "monitor: {what} did not happen; alerts: {a:?}; log: {}",
                std::fs::read_to_string(&self.err).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills it with SIGKILL (no chance to save anything).
    pub fn kill(mut self) {
        self.child.kill();
    }

    /// Stops it with SIGTERM; returns whether it exited 0.
    pub fn stop(mut self) -> bool {
        self.child.stop()
    }

    /// Sends it a signal (`HUP`, `USR1`, ...).
    pub fn signal(&mut self, sig: &str) {
        if let Some(c) = self.child.get() {
            let _ = Command::new("kill")
                .args([format!("-{sig}"), c.id().to_string()])
                .status();
        }
    }

    /// True while it runs.
    pub fn running(&mut self) -> bool {
        self.child
            .get()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// Creates a log in `data_dir` with `tlog-server init`; returns its
/// verifier key.
pub fn init(data_dir: &Path, origin: &str) -> String {
    let out = cmd("tlog-server")
        .arg("init")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--origin", origin])
        .stdin(Stdio::null())
        .output()
        .expect("run tlog-server init");
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

/// Runs `tlog` with `input` on stdin.
pub fn run_with_stdin(name: &str, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = cmd(name)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait")
}

/// Copies a folder recursively (files keep their permissions).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Runs a binary to completion, returning its output.
pub fn run(name: &str, args: &[&str]) -> Output {
    cmd(name)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
}

/// A running `tlog-server serve`.
pub struct Server {
    child: Running,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Where its log goes.
    pub log: PathBuf,
}

impl Server {
    /// Starts `tlog-server serve` on a free port over `data_dir`.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    /// Like [`Server::start`], with more `serve` arguments (e.g. `--config`).
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_at(data_dir, "127.0.0.1:0", extra)
    }

    /// Like [`Server::start_with`], listening on `listen` (e.g. the
    /// address of a server that was stopped, to restart it in place).
    pub fn start_at(data_dir: &Path, listen: &str, extra: &[&str]) -> Server {
        let ready = data_dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = data_dir.join("server.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = cmd("tlog-server")
            .args(["serve", "--listen", listen, "--ready-file"])
            .arg(&ready)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start tlog-server");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut server = Server {
            child: Running(Some(child)),
            url: String::new(),
            addr: String::new(),
            log,
        };
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Some(addr) = text.lines().next()
            {
                server.url = format!("http://{addr}");
                server.addr = addr.to_owned();
                return server;
            }
            if let Some(c) = server.child.get()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("tlog-server exited with {status}: {}", server.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits; returns whether it exited with status 0.
    pub fn stop(mut self) -> bool {
        self.child.stop()
    }

    /// Kills it with SIGKILL (no shutdown, no flush) and waits.
    pub fn kill(mut self) {
        self.child.kill();
    }

    /// Its process id.
    pub fn pid(&mut self) -> Option<u32> {
        self.child.get().map(|c| c.id())
    }
}

/// A small deterministic generator (xorshift) for tests that pick random
/// moments and sizes from a seed they print.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift needs a bit set).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The seed from the variable `var` if set, else from the clock.
    pub fn seed_from_env(var: &str) -> u64 {
        std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Realistic, benign model histories for tests: many artifacts, each going
/// through register, upload, approve, promote, deploy (by the release
/// pipeline, signed), downloads by many readers at a steady rate, newer
/// versions, an occasional explicit rollback, and retirements of versions
/// no longer deployed. A monitor with the example rules must find nothing
/// in it.
pub mod history {
    use tlog_core::event::{Action, Artifact, ArtifactEvent, Digest, Interface, Provenance};

    /// Who submits an event (the principal the log will authenticate).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum By {
        /// The model registry (registers, uploads, approvals, downloads,
        /// retirements).
        Registry,
        /// The release pipeline (promotions, deploys, rollbacks); its
        /// events carry its signature.
        Release,
    }

    /// One planned event.
    #[derive(Debug, Clone)]
    pub struct Planned {
        /// The event.
        pub event: ArtifactEvent,
        /// Who submits it.
        pub by: By,
    }

    use super::Rng;

    fn digest(name: &str, version: &str) -> Digest {
        use sha2::Digest as _;
        Digest {
            algorithm: "sha256".into(),
            hex: hex::encode(sha2::Sha256::digest(format!("{name}@{version}").as_bytes())),
        }
    }

    /// The event for `name@version`.
    pub fn event(
        id: String,
        action: Action,
        name: &str,
        version: &str,
        environment: &str,
        actor: &str,
    ) -> ArtifactEvent {
        ArtifactEvent {
            event_id: id,
            source: "history".into(),
            action,
            artifact: Artifact {
                name: name.into(),
                version: version.into(),
                digests: vec![digest(name, version)],
                media_type: "application/x-onnx".into(),
                uri: format!("s3://models/{name}/{version}"),
            },
            actor: actor.into(),
            interface: match action {
                Action::Download => Interface::Api,
                Action::Approve => Interface::RegistryUi,
                _ => Interface::CiPipeline,
            },
            environment: environment.into(),
            client_time: None,
            provenance: (action == Action::Register).then(|| Provenance {
                source_repo: format!("git@example.com:{name}"),
                source_commit: format!("{:040x}", version.len()),
                data_digests: vec![],
                config_digests: vec![],
                parents: vec![],
                builder: "ci.example/train".into(),
            }),
            justification: String::new(),
            ticket: String::new(),
            attestations: vec![],
        }
    }

    /// At least `n` events over `artifacts` artifacts (namespaces team-0 ..
    /// team-9), deterministic for a seed.
    pub fn benign(n: usize, artifacts: usize, seed: u64) -> Vec<Planned> {
        let mut rng = Rng::new(seed | 1);
        // Per artifact: current minor version, what production runs.
        let names: Vec<String> = (0..artifacts)
            .map(|i| format!("team-{}/model-{i}", i % 10))
            .collect();
        let mut minor = vec![0u32; artifacts];
        let mut out: Vec<Planned> = Vec::with_capacity(n + 16);
        let mut id = 0u64;
        let push = |out: &mut Vec<Planned>, by: By, e: ArtifactEvent| {
            out.push(Planned { event: e, by });
        };
        let mut next_id = || {
            id += 1;
            format!("h-{seed}-{id}")
        };
        while out.len() < n {
            let a = rng.below(artifacts as u64) as usize;
            let name = names[a].clone();
            let roll = rng.below(100);
            if minor[a] == 0 || roll < 8 {
                // A new version's whole way to production.
                let old = minor[a];
                minor[a] += 1;
                let v = format!("1.{}.0", minor[a]);
                push(
                    &mut out,
                    By::Registry,
                    event(next_id(), Action::Register, &name, &v, "", "ci-bot"),
                );
                push(
                    &mut out,
                    By::Registry,
                    event(next_id(), Action::Upload, &name, &v, "", "ci-bot"),
                );
                push(
                    &mut out,
                    By::Registry,
                    event(
                        next_id(),
                        Action::Approve,
                        &name,
                        &v,
                        "",
                        "reviewer@example.com",
                    ),
                );
                push(
                    &mut out,
                    By::Release,
                    event(
                        next_id(),
                        Action::Promote,
                        &name,
                        &v,
                        "staging",
                        "release-bot",
                    ),
                );
                push(
                    &mut out,
                    By::Release,
                    event(
                        next_id(),
                        Action::Deploy,
                        &name,
                        &v,
                        "production",
                        "release-bot",
                    ),
                );
                if old > 1 && rng.below(3) == 0 {
                    // The version before last is no longer needed.
                    let retired = format!("1.{}.0", old - 1);
                    push(
                        &mut out,
                        By::Registry,
                        event(
                            next_id(),
                            Action::Retire,
                            &name,
                            &retired,
                            "",
                            "registry-gc",
                        ),
                    );
                }
            } else if roll < 10 && minor[a] > 1 {
                // An explicit rollback to the previous version, then
                // forward again.
                let prev = format!("1.{}.0", minor[a] - 1);
                let cur = format!("1.{}.0", minor[a]);
                push(
                    &mut out,
                    By::Release,
                    event(
                        next_id(),
                        Action::Rollback,
                        &name,
                        &prev,
                        "production",
                        "release-bot",
                    ),
                );
                push(
                    &mut out,
                    By::Release,
                    event(
                        next_id(),
                        Action::Deploy,
                        &name,
                        &cur,
                        "production",
                        "release-bot",
                    ),
                );
            } else {
                let v = format!("1.{}.0", minor[a]);
                let reader = format!("inference-{}", rng.below(50));
                push(
                    &mut out,
                    By::Registry,
                    event(next_id(), Action::Download, &name, &v, "", &reader),
                );
            }
        }
        out
    }
}

/// What a test saw a log acknowledge, and the checks that the log (after a
/// crash, a full disk, a restart) still holds all of it.
pub mod invariants {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;

    use tlog_client::Client;
    use tlog_core::Hash;
    use tlog_core::checkpoint::SignedCheckpoint;
    use tlog_core::event::{Action, Artifact, ArtifactEvent, Digest, Interface};
    use tlog_core::merkle::prove::Prover;
    use tlog_core::merkle::store::MemoryStore;
    use tlog_core::merkle::tree::Tree;

    use super::Rng;

    /// What the load generators saw acknowledged.
    #[derive(Default)]
    pub struct Seen {
        /// Index to (leaf hash, event id), from acknowledged appends.
        pub acked: BTreeMap<u64, (Hash, String)>,
        /// Every checkpoint handed out, by its note text.
        pub checkpoints: HashMap<String, SignedCheckpoint>,
        /// Verification failures (a proof or checkpoint that did not verify).
        pub bad: Vec<String>,
    }

    /// A small download event with id `id` (artifact chosen by `n`).
    pub fn event(id: String, n: u64) -> ArtifactEvent {
        ArtifactEvent {
            event_id: id,
            source: "crash-test".into(),
            action: Action::Download,
            artifact: Artifact {
                name: format!("crash/model-{}", n % 7),
                version: "1.0.0".into(),
                digests: vec![Digest {
                    algorithm: "sha256".into(),
                    hex: "ab".repeat(32),
                }],
                media_type: String::new(),
                uri: String::new(),
            },
            actor: "loader".into(),
            interface: Interface::Api,
            environment: String::new(),
            client_time: None,
            provenance: None,
            justification: String::new(),
            ticket: String::new(),
            attestations: Vec::new(),
        }
    }

    /// Records acknowledged entries and their checkpoints; an index
    /// acknowledged twice for different events is noted in `bad`.
    pub fn record(seen: &Mutex<Seen>, entries: Vec<tlog_client::VerifiedEntry>, ids: Vec<String>) {
        let mut s = seen.lock().expect("lock");
        for (e, id) in entries.into_iter().zip(ids) {
            let twice = match s.acked.get(&e.index) {
                Some((h, other)) if *h != e.leaf_hash || *other != id => Some(other.clone()),
                _ => None,
            };
            if let Some(other) = twice {
                s.bad.push(format!(
                    "index {} acknowledged for {other} and again for {id}",
                    e.index
                ));
            }
            s.acked.insert(e.index, (e.leaf_hash, id));
            s.checkpoints
                .entry(e.checkpoint.raw.clone())
                .or_insert(e.checkpoint);
        }
    }

    /// Checks the restarted log against everything seen so far.
    pub async fn verify(url: &str, vkey: &str, seen: &Seen, rng: &mut Rng) {
        assert!(seen.bad.is_empty(), "verification failures: {:?}", seen.bad);
        let mut c = Client::connect(url, vkey).await.expect("connect");
        let latest = c.checkpoint().await.expect("verified checkpoint");
        let size = latest.checkpoint.size;
        if let Some((&last, _)) = seen.acked.last_key_value() {
            assert!(
                last < size,
                "acknowledged index {last} but the log has {size} entries"
            );
        }
        // Every leaf, hashed into the tree: the root must be the signed one.
        let mut tree = Tree::new();
        let mut hashes = Vec::new();
        let mut leaf_hashes = Vec::with_capacity(size as usize);
        if size > 0 {
            let mut stream = c.fetch_entries(0, size).await.expect("entries");
            while let Some(page) = stream.next_page().await.expect("page") {
                for (i, leaf) in page {
                    assert_eq!(i, leaf_hashes.len() as u64, "entries out of order");
                    let h = tlog_core::leaf_hash(&leaf);
                    tree.append(h, &mut hashes);
                    leaf_hashes.push(h);
                }
            }
        }
        assert_eq!(leaf_hashes.len() as u64, size, "entries missing");
        assert_eq!(
            tree.root(),
            latest.checkpoint.root,
            "the entries do not give the signed root"
        );
        for (&i, (h, id)) in &seen.acked {
            assert_eq!(
                leaf_hashes[i as usize], *h,
                "acknowledged {id} is not at its index {i}"
            );
        }
        // Every checkpoint handed out is a prefix of this log.
        let mut store = MemoryStore::new();
        store.write(&hashes).expect("dense");
        let prover = Prover::new(&store);
        for cp in seen.checkpoints.values() {
            let (s, root) = (cp.checkpoint.size, cp.checkpoint.root);
            assert!(s <= size, "checkpoint at {s} beyond the log's {size}");
            assert_eq!(
                prover.root_at(s).expect("root"),
                root,
                "a checkpoint handed out at size {s} is not a prefix of the log"
            );
        }
        // And the log's own proofs say so, for a sample.
        let all: Vec<_> = seen.acked.keys().copied().collect();
        for _ in 0..all.len().min(40) {
            let i = all[rng.below(all.len() as u64) as usize];
            let e = c.prove_index(i).await.expect("inclusion proof verifies");
            assert_eq!(e.leaf_hash, seen.acked[&i].0);
        }
        let cps: Vec<_> = seen.checkpoints.values().collect();
        for _ in 0..cps.len().min(20) {
            let old = cps[rng.below(cps.len() as u64) as usize];
            c.prove_consistency(old, &latest)
                .await
                .expect("consistency proof verifies");
        }
    }
}

/// One HTTP/1.1 request to `addr` (`Connection: close`), answered in full:
/// the status, the headers (names in lower case) and the body. For the
/// tiles listener and the web servers that serve published tiles.
pub fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    http_send(addr, method, path, headers, None)
}

/// Like [`http_request`], with a request body (sent with its
/// `Content-Length`), for the witness's `add-checkpoint`.
pub fn http_send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or("tiles", |(_, v)| *v);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    s.write_all(&bytes).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8(raw[..end].to_vec()).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let h = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, h, raw[end + 4..].to_vec())
}

/// The workspace's root folder (the recipes, scripts and specs are read
/// from there at run time).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

/// A file of the workspace, as text (`rel` from its root).
pub fn repo_file(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Tiles read over HTTP for `tlog_tiles` (cloudflare/azul), the
/// independent tiles reader the tests check the log with: its Go paths
/// (`tile/8/<L>/...`, `data` for bundles) become C2SP ones below
/// `prefix`.
pub struct HttpTiles {
    /// The web server (the tiles listener, or one serving published tiles).
    pub addr: std::net::SocketAddr,
    /// The log's prefix ("" or e.g. "/models").
    pub prefix: String,
}

impl tlog_tiles::TileReader for HttpTiles {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| {
                let go = t.path();
                let rest = go
                    .strip_prefix("tile/8/")
                    .ok_or(tlog_tiles::Error::InvalidTile)?;
                let (status, _, body) = http_request(
                    self.addr,
                    "GET",
                    &format!("{}/tile/{rest}", self.prefix),
                    &[],
                );
                if status == 200 {
                    Ok(body)
                } else {
                    Err(tlog_tiles::Error::InvalidTile)
                }
            })
            .collect()
    }

    fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
}

/// `n` upload events of artifact `name` (versions `1.0` .. `1.{n-1}`), one
/// JSON object each, from `source` (for `tlog submit --jsonl`).
pub fn upload_events(source: &str, name: &str, n: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"source":"{source}","event_id":"e{i}","action":"upload","artifact":{{"name":"{name}","version":"1.{i}","digests":["sha256:{}"]}},"actor":"ci","interface":"ci-pipeline"}}"#,
                "ab".repeat(32)
            )
        })
        .collect()
}

/// The tiles listener a server wrote in its ready file (`http=ADDR`).
pub fn ready_http(data_dir: &Path) -> std::net::SocketAddr {
    std::fs::read_to_string(data_dir.join("ready"))
        .expect("ready file")
        .lines()
        .find_map(|l| l.strip_prefix("http="))
        .expect("the ready file names the HTTP listener")
        .parse()
        .expect("addr")
}

/// The size the checkpoint file in a published folder shows, if any.
pub fn published_size(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("checkpoint"))
        .ok()?
        .lines()
        .nth(1)?
        .parse()
        .ok()
}

/// `tlog submit --jsonl --batch BATCH` of `events` to the server at `url`
/// with no trusted state; panics with its stderr unless it succeeds.
pub fn submit_jsonl(url: &str, vkey: &str, events: &[String], batch: usize) {
    let batch = batch.to_string();
    let out = run_with_stdin(
        "tlog",
        &[
            "--server",
            url,
            "--vkey",
            vkey,
            "--no-state",
            "submit",
            "--jsonl",
            "--batch",
            &batch,
        ],
        events.join("\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
