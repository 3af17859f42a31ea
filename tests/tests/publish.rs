//! Published tiles behind a real web server: `tlog-server serve` with
//! `[publish]` writes the tiles into a directory, Debian's nginx serves
//! that directory, and what nginx serves is what the server's own HTTP
//! listener serves, byte for byte; an independent tiles reader
//! (`tlog_tiles`) verifies it against the signed checkpoint. The
//! `tlog-server publish` command, run beside the serving server, writes
//! the same files.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tlog_core::tiles::new_tiles;
use tlog_e2e::{Server, http_request, init, run, run_with_stdin};

fn get(addr: SocketAddr, path: &str) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    http_request(addr, "GET", path, &[])
}

/// A free port on 127.0.0.1 (nginx takes no port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// nginx serving `root` on 127.0.0.1, stopped when dropped.
pub(crate) struct Nginx {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Nginx {
    pub(crate) fn start(root: &Path, work: &Path) -> Nginx {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("nginx is installed (scripts/setup.sh installs Debian's nginx-light)");
        let port = free_port();
        let conf = work.join("nginx.conf");
        // As root, nginx's workers run as `user`; the tiles are world-readable.
        let user = if std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        {
            "user root root;"
        } else {
            ""
        };
        std::fs::write(
            &conf,
            format!(
                "{user}\ndaemon off;\nworker_processes 1;\npid {w}/nginx.pid;\nerror_log {w}/error.log;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {w}/body;\n  proxy_temp_path {w}/proxy;\n  \
                 fastcgi_temp_path {w}/fastcgi;\n  uwsgi_temp_path {w}/uwsgi;\n  scgi_temp_path {w}/scgi;\n  \
                 server {{\n    listen 127.0.0.1:{port};\n    root {root};\n    \
                 default_type application/octet-stream;\n    \
                 location = /checkpoint {{ default_type \"text/plain; charset=utf-8\"; add_header Cache-Control no-cache; }}\n    \
                 location /tile/ {{ add_header Cache-Control \"public, max-age=31536000, immutable\"; }}\n  }}\n}}\n",
                w = work.display(),
                root = root.display(),
            ),
        )
        .expect("nginx.conf");
        let child = Command::new(nginx)
            .args(["-e", "stderr", "-p"])
            .arg(work)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(work.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, addr }
    }
}

impl Drop for Nginx {
    /// SIGTERM: nginx's master stops its workers, then itself (SIGKILL
    /// would leave the workers running, holding the port).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The size the checkpoint file in `dir` shows, if any.
fn published_size(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("checkpoint"))
        .ok()?
        .lines()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn published_tiles_behind_nginx_are_the_servers_tiles_and_verify() {
    let dir = tempfile::tempdir().expect("tmp");
    // Readable by nginx's workers.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = dir.path().join("data");
    let vkey = init(&data, "publish.e2e.example/log");
    let site = dir.path().join("site");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[publish]\nto = \"{}\"\ninterval = \"50ms\"\n",
            site.display()
        ),
    )
    .expect("config");
    let s = Server::start_with(&data, &["--config", config.to_str().expect("utf8")]);
    let http: SocketAddr = std::fs::read_to_string(data.join("ready"))
        .expect("ready file")
        .lines()
        .find_map(|l| l.strip_prefix("http="))
        .expect("the ready file names the HTTP listener")
        .parse()
        .expect("addr");
    let n = 700u64;
    let events: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"source":"pub","event_id":"e{i}","action":"upload","artifact":{{"name":"team-a/m","version":"1.{i}","digests":["sha256:{}"]}},"actor":"ci","interface":"ci-pipeline"}}"#,
                "ab".repeat(32)
            )
        })
        .collect();
    let state = dir.path().join("state");
    let out = run_with_stdin(
        "tlog",
        &[
            "--server",
            &s.url,
            "--vkey",
            &vkey,
            "--state",
            state.to_str().expect("utf8"),
            "submit",
            "--jsonl",
            "--batch",
            "64",
        ],
        events.join("\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while published_size(&site) != Some(n) {
        assert!(
            Instant::now() < deadline,
            "not published: {:?}\n{}",
            published_size(&site),
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let web = Nginx::start(&site, dir.path());
    // The checkpoint, then every tile and bundle: nginx serves exactly the
    // server's bytes, with the spec's content types.
    let (st, h, cp) = get(web.addr, "/checkpoint");
    assert_eq!(st, 200);
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(cp, get(http, "/checkpoint").2, "the same signed checkpoint");
    for t in new_tiles(0, n) {
        let path = format!("/{}", t.to_path());
        let (st, h, body) = get(web.addr, &path);
        assert_eq!(st, 200, "{path}");
        assert_eq!(h["content-type"], "application/octet-stream");
        let (st2, _, direct) = get(http, &path);
        assert_eq!(st2, 200, "{path}");
        assert_eq!(body, direct, "{path}");
    }
    // An independent reader, from nginx alone: every tile it needs checks
    // out against the checkpoint's root, and proofs verify.
    let text = String::from_utf8(cp).expect("utf-8");
    let (body, _) = text.split_once("\n\n").expect("note");
    let parsed =
        tlog_tiles::Checkpoint::from_bytes(format!("{body}\n").as_bytes()).expect("checkpoint");
    assert_eq!(parsed.size(), n);
    let root = *parsed.hash();
    let reader = tlog_e2e::HttpTiles {
        addr: web.addr,
        prefix: String::new(),
    };
    let thr = tlog_tiles::TileHashReader::new(n, root, &reader);
    assert_eq!(tlog_tiles::tree_hash(n, &thr).expect("root"), root);
    let bundle = get(web.addr, "/tile/entries/001").2;
    let leaves = tlog_core::tiles::parse_bundle(&bundle).expect("bundle");
    for (k, leaf) in leaves.iter().enumerate().step_by(37) {
        let i = 256 + k as u64;
        let proof = tlog_tiles::prove_record(n, i, &thr).expect("proof");
        tlog_tiles::check_record(&proof, n, root, i, tlog_tiles::record_hash(leaf))
            .expect("verifies");
    }
    // `tlog-server publish` beside the serving server writes the same files.
    let again = dir.path().join("again");
    let publish_again = || {
        let out = run(
            "tlog-server",
            &[
                "publish",
                "--data-dir",
                data.to_str().expect("utf8"),
                "--to",
                again.to_str().expect("utf8"),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    publish_again();
    for t in new_tiles(0, n) {
        assert_eq!(
            std::fs::read(again.join(t.to_path())).expect("published by the command"),
            std::fs::read(site.join(t.to_path())).expect("published by serve"),
        );
    }
    assert_eq!(published_size(&again), Some(n));
    // A second run has nothing to do.
    let said = publish_again();
    assert!(said.contains("published 0 files"), "{said}");
    drop(web);
    assert!(s.stop());
}
