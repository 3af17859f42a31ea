//! Published tiles behind a real web server: `tlog-server serve` with
//! `[publish]` writes the tiles into a directory, Debian's nginx serves
//! that directory, and what nginx serves is what the server's own HTTP
//! listener serves, byte for byte; an independent tiles reader
//! (`tlog_tiles`) verifies it against the signed checkpoint. The
//! `tlog-server publish` command, run beside the serving server, writes
//! the same files. The same again into an S3 bucket of a real
//! S3-compatible store (Garage), read back from its website endpoint.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tlog_core::tiles::new_tiles;
use tlog_e2e::{
    Server, http_request, init, published_size, ready_http, run, run_with_stdin, submit_jsonl,
    terminate, upload_events,
};

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
        Nginx::with_server(work, |port| {
            format!(
                "listen 127.0.0.1:{port};\n    root {root};\n    \
                 default_type application/octet-stream;\n    \
                 location = /checkpoint {{ default_type \"text/plain; charset=utf-8\"; add_header Cache-Control no-cache; }}\n    \
                 location /tile/ {{ add_header Cache-Control \"public, max-age=31536000, immutable\"; }}",
                root = root.display(),
            )
        })
    }

    /// nginx with one `server` block, `server(port)` its body, on a free
    /// port of 127.0.0.1.
    pub(crate) fn with_server(work: &Path, server: impl FnOnce(u16) -> String) -> Nginx {
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
                 server {{\n    {server}\n  }}\n}}\n",
                w = work.display(),
                server = server(port),
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
    fn drop(&mut self) {
        let _ = terminate(&mut self.child);
    }
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
    let http = ready_http(&data);
    let n = 700u64;
    let events = upload_events("pub", "team-a/m", n);
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

/// Garage (an S3-compatible object store, built from the crate registry by
/// `scripts/setup.sh`), one node on 127.0.0.1 in a temporary folder, with
/// a bucket, a key allowed to write it, and its website endpoint on.
struct Garage {
    child: Child,
    config: std::path::PathBuf,
    s3: SocketAddr,
    web: SocketAddr,
    key_id: String,
    secret: String,
}

fn garage_bin() -> std::path::PathBuf {
    let tools = std::env::var_os("TLOG_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/tlog-tools".into());
    let built = tools.join("bin/garage");
    if built.is_file() {
        return built;
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("garage"))
        .find(|p| p.is_file())
        .expect("garage is installed (scripts/setup.sh --tests builds it into /var/tmp/tlog-tools)")
}

impl Garage {
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run garage");
        assert!(
            out.status.success(),
            "garage {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start(work: &Path) -> Garage {
        std::fs::create_dir_all(work).expect("mkdir");
        let (rpc, s3, web) = (free_port(), free_port(), free_port());
        let config = work.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{w}/meta\"\ndata_dir = \"{w}/data\"\ndb_engine = \"lmdb\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\n\
                 [s3_web]\nbind_addr = \"127.0.0.1:{web}\"\nroot_domain = \".web.garage.localhost\"\n\
                 index = \"index.html\"\n",
                w = work.display(),
                secret = "5e".repeat(32),
            ),
        )
        .expect("garage.toml");
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("garage.log")).expect("log"))
            .spawn()
            .expect("start garage");
        let mut g = Garage {
            child,
            config,
            s3: format!("127.0.0.1:{s3}").parse().expect("addr"),
            web: format!("127.0.0.1:{web}").parse().expect("addr"),
            key_id: String::new(),
            secret: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        // `node id` reads the key the server writes before it listens, so
        // the RPC port must accept connections too before the CLI, which
        // connects to it, is used (a `layout assign` refused otherwise).
        let rpc_addr: SocketAddr = format!("127.0.0.1:{rpc}").parse().expect("addr");
        let node = loop {
            if std::net::TcpStream::connect(rpc_addr).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "garage did not listen on {rpc_addr}: {}",
                    std::fs::read_to_string(work.join("garage.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let out = Command::new(garage_bin())
                .arg("-c")
                .arg(&g.config)
                .args(["node", "id", "-q"])
                .env("RUST_LOG", "warn")
                .output()
                .expect("garage node id");
            if out.status.success() {
                break String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .split('@')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "garage did not start: {}",
                std::fs::read_to_string(work.join("garage.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["bucket", "create", "tiles"]);
        let key = g.cli(&["key", "create", "tlog-publisher"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim().trim_start_matches(':').trim().to_owned())
                .unwrap_or_else(|| panic!("no {name} in {key}"))
        };
        g.key_id = field("Key ID");
        g.secret = field("Secret key");
        g.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "tiles",
            "--key",
            "tlog-publisher",
        ]);
        g.cli(&["bucket", "website", "--allow", "tiles"]);
        g
    }

    /// GET from the bucket's website endpoint (anonymous, as a CDN would).
    fn get(&self, path: &str) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
        http_request(
            self.web,
            "GET",
            path,
            &[("Host", "tiles.web.garage.localhost")],
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child);
    }
}

#[test]
fn published_tiles_in_an_s3_bucket_are_the_servers_tiles() {
    let dir = tempfile::tempdir().expect("tmp");
    let g = Garage::start(&dir.path().join("garage"));
    let data = dir.path().join("data");
    let vkey = init(&data, "publish.s3.example/log");
    let (id_file, secret_file) = (dir.path().join("key-id"), dir.path().join("secret"));
    std::fs::write(&id_file, &g.key_id).expect("id");
    std::fs::write(&secret_file, &g.secret).expect("secret");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[publish]\nto = \"s3://tiles/log\"\ninterval = \"50ms\"\n\n\
             [publish.s3]\nendpoint = \"http://{}\"\nregion = \"garage\"\naccess_key_id_file = \"{}\"\n\
             secret_access_key_file = \"{}\"\n",
            g.s3,
            id_file.display(),
            secret_file.display()
        ),
    )
    .expect("config");
    let s = Server::start_with(&data, &["--config", config.to_str().expect("utf8")]);
    let http = ready_http(&data);
    let n = 300u64;
    let events = upload_events("s3", "team-s/m", n);
    submit_jsonl(&s.url, &vkey, &events, 64);
    let size_in_bucket = || -> Option<u64> {
        let (st, _, body) = g.get("/log/checkpoint");
        (st == 200).then_some(())?;
        String::from_utf8(body).ok()?.lines().nth(1)?.parse().ok()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while size_in_bucket() != Some(n) {
        assert!(
            Instant::now() < deadline,
            "not published to the bucket: {}",
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The checkpoint and every tile: the server's bytes, with the spec's
    // content types and cache headers, from the bucket's web endpoint.
    let (st, h, cp) = g.get("/log/checkpoint");
    assert_eq!(st, 200);
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(h.get("cache-control").map(String::as_str), Some("no-cache"));
    assert_eq!(cp, http_request(http, "GET", "/checkpoint", &[]).2);
    for t in new_tiles(0, n) {
        let path = format!("/{}", t.to_path());
        let (st, h, body) = g.get(&format!("/log{path}"));
        assert_eq!(st, 200, "{path}");
        assert_eq!(h["content-type"], "application/octet-stream", "{path}");
        assert_eq!(
            h.get("cache-control").map(String::as_str),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(body, http_request(http, "GET", &path, &[]).2, "{path}");
    }
    drop(s);

    // `tlog-server publish` writes the same to another prefix in one round,
    // with the credentials from the environment.
    let publish_cli = |to: &str, secret: &str| {
        tlog_e2e::cmd("tlog-server")
            .args(["publish", "--data-dir"])
            .arg(&data)
            .args([
                "--to",
                to,
                "--s3-endpoint",
                &format!("http://{}", g.s3),
                "--s3-region",
                "garage",
            ])
            .env("AWS_ACCESS_KEY_ID", &g.key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .stdin(Stdio::null())
            .output()
            .expect("publish")
    };
    let out = publish_cli("s3://tiles/cli", &g.secret);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(g.get("/cli/checkpoint").2, cp);
    assert_eq!(
        g.get("/cli/tile/entries/000").2,
        g.get("/log/tile/entries/000").2
    );
    // Wrong credentials: refused with the store's reason, nothing written.
    let out = publish_cli("s3://tiles/bad", "not-the-secret");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("publish target object"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(g.get("/bad/checkpoint").0, 404);
}
