//! Bad input to the CLI: a non-zero exit and a message that says what was
//! wrong and how to fix it, before anything is sent.

use tlog_e2e::run;

#[test]
fn submit_rejects_bad_flags_with_a_fix() {
    let vkey = tlog_core::note::Signer::from_seed("e2e.example/log", &[1; 32])
        .expect("key")
        .verifier()
        .to_vkey();
    let vkey = vkey.as_str();
    let cases: [(&[&str], &str); 4] = [
        (&["--action", "publish"], "is not an action; use one of"),
        (&["--digest", "sha256-abc"], "is not ALGORITHM:HEX"),
        (&["--digest", "sha256:ABC"], "artifact.digests[0].hex"),
        (
            &["--action", "deploy"],
            "environment: is required for deploy",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec![
            "--server",
            "http://127.0.0.1:9",
            "--vkey",
            vkey,
            "submit",
            "--source",
            "s",
            "--artifact",
            "a",
            "--version",
            "1",
        ];
        if !extra.contains(&"--action") {
            args.extend(["--action", "register"]);
        }
        if !extra.contains(&"--digest") {
            args.extend([
                "--digest",
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ]);
        }
        args.extend(extra);
        let out = run("tlog", &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            !err.contains("cannot reach"),
            "input is checked before connecting: {err}"
        );
    }
    let out = run("tlog", &["--server", "http://127.0.0.1:9", "checkpoint"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vkey"));
}
