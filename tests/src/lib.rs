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
    for b in ["tlog-server", "tlog"] {
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
    child: Option<Child>,
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
            child: Some(child),
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
            if let Some(c) = server.child.as_mut()
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
        let Some(mut child) = self.child.take() else {
            return false;
        };
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
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
