//! Reading a log from its C2SP tiles alone: `tlog --tiles URL` and a
//! monitor with a `tiles` endpoint, against the server's HTTP listener and
//! against a published mirror behind nginx; a tampered mirror is caught by
//! both.

use std::time::{Duration, Instant};

use super::publish::Nginx;
use tlog_e2e::{
    Server, init, published_size, ready_http, run, run_with_stdin, submit_jsonl, upload_events,
};

fn tlog(args: &[&str]) -> (bool, String, String) {
    let out = run("tlog", args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_and_the_monitor_read_a_log_from_tiles_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = dir.path().join("data");
    let vkey = init(&data, "tiles.reader.example/log");
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
    let n = 600u64;
    let events = upload_events("tr", "team-t/m", n);
    submit_jsonl(&s.url, &vkey, &events, 50);
    let deadline = Instant::now() + Duration::from_secs(30);
    while published_size(&site) != Some(n) {
        assert!(Instant::now() < deadline, "not published");
        std::thread::sleep(Duration::from_millis(20));
    }
    let web = Nginx::start(&site, dir.path());
    let mirror = format!("http://{}", web.addr);
    let direct = format!("http://{http}");

    for url in [&direct, &mirror] {
        let base = [
            "--tiles",
            url.as_str(),
            "--vkey",
            &vkey,
            "--no-state",
            "--json",
        ];
        let with = |more: &[&str]| -> (bool, String, String) {
            let all: Vec<&str> = base.iter().chain(more).copied().collect();
            tlog(&all)
        };
        let (ok, out, err) = with(&["checkpoint"]);
        assert!(ok, "{url}: {err}");
        let cp: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        assert_eq!(cp["size"], n, "{out}");
        // Entries with their inclusion proofs, from tiles, across bundles
        // and into the partial last one.
        for i in [0u64, 255, 256, 599] {
            let (ok, out, err) = with(&["prove", &i.to_string()]);
            assert!(ok, "{url} prove {i}: {err}");
            assert!(out.contains(&format!("\"index\":{i}")), "{out}");
        }
        // The same offline proof as from gRPC.
        let from_tiles = dir.path().join("t.tlog-proof");
        let (ok, _, err) = with(&[
            "prove",
            "300",
            "--format",
            "tlog-proof",
            "-o",
            from_tiles.to_str().expect("utf8"),
        ]);
        assert!(ok, "{err}");
        let from_grpc = dir.path().join("g.tlog-proof");
        let (ok, _, err) = tlog(&[
            "--server",
            &s.url,
            "--vkey",
            &vkey,
            "--no-state",
            "prove",
            "300",
            "--format",
            "tlog-proof",
            "-o",
            from_grpc.to_str().expect("utf8"),
        ]);
        assert!(ok, "{err}");
        assert_eq!(
            std::fs::read(&from_tiles).expect("t"),
            std::fs::read(&from_grpc).expect("g"),
            "the proof from tiles is the server's"
        );
        // What tiles cannot do is refused, saying what to use instead.
        let out = run_with_stdin(
            "tlog",
            &base
                .iter()
                .copied()
                .chain(["submit", "--jsonl"])
                .collect::<Vec<_>>(),
            events[0].as_bytes(),
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not available from tiles") && err.contains("--server"),
            "{err}"
        );
    }

    // A monitor whose only endpoint is the mirror audits the whole log.
    let mon = dir.path().join("mon");
    std::fs::create_dir_all(&mon).expect("mkdir");
    let mcfg = mon.join("monitor.toml");
    std::fs::write(
        &mcfg,
        format!("state_dir = \"state\"\n\n[[log]]\nname = \"t\"\nvkey = \"{vkey}\"\ntiles = \"{mirror}\"\n"),
    )
    .expect("monitor config");
    let out = run(
        "tlog-monitor",
        &["check", "--config", mcfg.to_str().expect("utf8")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = std::fs::read_to_string(mon.join("state/t/state.json")).unwrap_or_default();
    assert!(
        state.contains(&format!("\"size\":{n}")) || state.contains(&format!("\"size\": {n}")),
        "{state}"
    );

    // A tampered mirror: one byte of entry 255's leaf in the first bundle.
    let bundle = site.join("tile/entries/000");
    let mut bytes = std::fs::read(&bundle).expect("bundle");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&bundle, &bytes).expect("tamper");
    let (ok, _, err) = tlog(&[
        "--tiles",
        &mirror,
        "--vkey",
        &vkey,
        "--no-state",
        "get",
        "255",
    ]);
    assert!(!ok, "a tampered entry must not verify");
    assert!(err.contains("verif"), "{err}");
    // The monitor, auditing from scratch, finds the root does not match.
    let fresh = mon.join("fresh.toml");
    std::fs::write(
        &fresh,
        format!("state_dir = \"fresh\"\n\n[[log]]\nname = \"t\"\nvkey = \"{vkey}\"\ntiles = \"{mirror}\"\n"),
    )
    .expect("config");
    let out = run(
        "tlog-monitor",
        &["check", "--config", fresh.to_str().expect("utf8")],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(web);
    drop(s);
}
