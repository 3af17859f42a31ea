//! `tlog-server init`, `serve`, `tlog submit`, SIGTERM (exit 0), `serve`
//! again: everything from before is still served with valid proofs, and
//! the new checkpoints are consistent with the old.

use tlog_e2e::{Server, run};

fn submit(url: &str, vkey: &str, id: &str) -> String {
    let out = run(
        "tlog",
        &[
            "--server",
            url,
            "--vkey",
            vkey,
            "submit",
            "--source",
            "e2e",
            "--event-id",
            id,
            "--action",
            "register",
            "--artifact",
            "team-a/model",
            "--version",
            "1.0.0",
            "--digest",
            &format!("sha256:{}", "cd".repeat(32)),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tlog submit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verified:"), "{stdout}");
    stdout
}

#[test]
fn restart_serves_old_entries_and_stays_consistent() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let init = run(
        "tlog-server",
        &[
            "init",
            "--data-dir",
            data.to_str().expect("utf8"),
            "--origin",
            "e2e.example/log",
        ],
    );
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let vkey = String::from_utf8(init.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(vkey.starts_with("e2e.example/log+"), "{vkey}");

    let server = Server::start(&data);
    for i in 0..5 {
        let out = submit(&server.url, &vkey, &format!("e{i}"));
        assert!(out.contains(&format!("index:       {i}")), "{out}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let old = rt.block_on(async {
        let mut c = tlog_client::Client::connect(&server.url, &vkey)
            .await
            .expect("connect");
        c.checkpoint().await.expect("verified checkpoint")
    });
    assert_eq!(old.checkpoint.size, 5);
    drop(rt); // closes the client's connection
    assert!(server.stop(), "graceful stop exits 0");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");

    let server = Server::start(&data);
    let out = submit(&server.url, &vkey, "after");
    assert!(out.contains("index:       5"), "{out}");
    // A retry of an old event returns the original entry.
    let out = submit(&server.url, &vkey, "e2");
    assert!(
        out.contains("index:       2") && out.contains("already in the log"),
        "{out}"
    );
    for i in 0..5u64 {
        let p = run(
            "tlog",
            &[
                "--server",
                &server.url,
                "--vkey",
                &vkey,
                "prove",
                &i.to_string(),
            ],
        );
        assert!(
            p.status.success(),
            "prove {i}: {}",
            String::from_utf8_lossy(&p.stderr)
        );
    }
    rt.block_on(async {
        let mut c = tlog_client::Client::connect(&server.url, &vkey)
            .await
            .expect("connect");
        let new = c.checkpoint().await.expect("verified");
        assert_eq!(new.checkpoint.size, 6);
        c.prove_consistency(&old, &new)
            .await
            .expect("the log only grew");
    });
    assert!(
        server.stop(),
        "graceful stop exits 0 even with a client connection open"
    );
}
