//! Every `tlog` subcommand against a real server; evidence bundles
//! tampered with; a forked log caught by the client; malformed input
//! refused with exit 2 and nothing sent.

use std::path::Path;
use std::process::Output;

use base64::Engine as _;
use tlog_e2e::{Server, copy_dir, init, run, run_with_stdin};

fn digest(seed: &str) -> String {
    use sha2::Digest as _;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(seed.as_bytes()))
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `tlog` against `s` with its own state file; asserts the exit code.
fn tlog(s: &Server, vkey: &str, state: &Path, args: &[&str], code: i32) -> Output {
    tlog_in(s, vkey, state, args, None, code)
}

fn tlog_in(
    s: &Server,
    vkey: &str,
    state: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    code: i32,
) -> Output {
    let state = state.to_str().expect("utf8");
    let mut all = vec!["--server", &s.url, "--vkey", vkey, "--state", state];
    all.extend(args);
    let out = match stdin {
        Some(input) => run_with_stdin("tlog", &all, input),
        None => run("tlog", &all),
    };
    assert_eq!(
        out.status.code(),
        Some(code),
        "tlog {args:?}\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn size_of(s: &Server, vkey: &str, state: &Path) -> u64 {
    let out = tlog(s, vkey, state, &["--json", "checkpoint"], 0);
    json_lines(&out)[0]["size"].as_u64().expect("size")
}

fn event(id: &str, action: &str, name: &str, version: &str, extra: &str) -> String {
    format!(
        r#"{{"source":"registry.e2e","event_id":"{id}","action":"{action}","artifact":{{"name":"{name}","version":"{version}","digests":["{}"]}},"actor":"alice","interface":"registry-ui"{extra}}}"#,
        digest(&format!("{name}@{version}"))
    )
}

#[test]
fn every_subcommand_against_a_real_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "cli.e2e.example/log");
    let s = Server::start(&data);
    let state = dir.path().join("state");
    let path = |n: &str| dir.path().join(n).to_str().expect("utf8").to_owned();

    // submit from flags
    let out = tlog(
        &s,
        &vkey,
        &state,
        &[
            "submit",
            "--source",
            "registry.e2e",
            "--event-id",
            "f-1",
            "--action",
            "register",
            "--artifact",
            "team-a/fraud",
            "--version",
            "1.0.0",
            "--digest",
            &digest("team-a/fraud@1.0.0"),
            "--actor",
            "alice",
            "--interface",
            "registry-ui",
        ],
        0,
    );
    let o = text(&out.stdout);
    assert!(
        o.contains("index:       0") && o.contains("verified:"),
        "{o}"
    );

    // submit from a JSON file (an array), signed with a local key
    let key = path("release.key");
    let kg = run(
        "tlog",
        &["keygen", "--name", "release-pipeline", "-o", &key],
    );
    assert!(kg.status.success(), "{}", text(&kg.stderr));
    let signer_vkey = text(&kg.stdout).trim().to_owned();
    let kg2 = run(
        "tlog",
        &[
            "--json",
            "keygen",
            "--name",
            "other-signer",
            "-o",
            &path("other.key"),
        ],
    );
    let kj: serde_json::Value = serde_json::from_slice(&kg2.stdout).expect("keygen --json");
    assert!(
        kj["verifier_key"]
            .as_str()
            .expect("vkey")
            .starts_with("other-signer+")
    );
    let again = run("tlog", &["keygen", "--name", "x", "-o", &path("other.key")]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing key file is not overwritten"
    );
    let file = path("events.json");
    std::fs::write(
        &file,
        format!(
            "[{}, {}]",
            event("f-2", "upload", "team-a/fraud", "1.0.0", ""),
            event(
                "f-3",
                "approve",
                "team-a/fraud",
                "1.0.0",
                r#","justification":"eval passed""#
            )
        ),
    )
    .expect("write");
    let out = tlog(
        &s,
        &vkey,
        &state,
        &["--json", "submit", "--file", &file, "--sign-key", &key],
        0,
    );
    let results = json_lines(&out);
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["index"], 1);
    assert_eq!(results[1]["verified"], true);

    // submit a JSONL stream on stdin, in batches of 2
    let jsonl = [
        event(
            "f-4",
            "promote",
            "team-a/fraud",
            "1.0.0",
            r#","environment":"staging""#,
        ),
        event(
            "f-5",
            "deploy",
            "team-a/fraud",
            "1.0.0",
            r#","environment":"production","ticket":"CHG-1""#,
        ),
        event("f-6", "download", "team-a/fraud", "1.0.0", ""),
        event("o-1", "register", "team-b/ranker", "2.0.0", ""),
        event("f-7", "register", "team-a/fraud", "1.1.0", ""),
    ]
    .join("\n");
    let out = tlog_in(
        &s,
        &vkey,
        &state,
        &["--json", "submit", "--jsonl", "--batch", "2"],
        Some(jsonl.as_bytes()),
        0,
    );
    let results = json_lines(&out);
    assert_eq!(
        results
            .iter()
            .map(|r| r["index"].as_u64().expect("index"))
            .collect::<Vec<_>>(),
        vec![3, 4, 5, 6, 7]
    );
    assert_eq!(size_of(&s, &vkey, &state), 8);

    // checkpoint, as text
    let out = tlog(&s, &vkey, &state, &["checkpoint"], 0);
    assert!(text(&out.stdout).starts_with("cli.e2e.example/log\n8\n"));
    assert!(text(&out.stderr).contains("verified"));

    // get by index, then by leaf hash: the event as submitted, and the
    // attestation made with the local key verifies
    let out = tlog(&s, &vkey, &state, &["--json", "get", "2"], 0);
    let got = &json_lines(&out)[0];
    assert_eq!(got["entry"]["event"]["action"], "approve");
    assert_eq!(got["entry"]["event"]["justification"], "eval passed");
    let att = &got["entry"]["event"]["attestations"][0];
    assert_eq!(att["key_id"], "release-pipeline");
    let leaf_hash = got["leaf_hash"].as_str().expect("hash").to_owned();
    let out = tlog(&s, &vkey, &state, &["--json", "get", &leaf_hash], 0);
    let by_hash = &json_lines(&out)[0];
    assert_eq!(by_hash["index"], 2);
    let ev = tlog_core::json::event_from_json(&by_hash["entry"]["event"].to_string())
        .expect("event json");
    let v = tlog_core::note::Verifier::from_vkey(&signer_vkey).expect("vkey");
    let sig = ed25519_dalek::Signature::from_slice(&ev.attestations[0].signature).expect("sig");
    use ed25519_dalek::Verifier as _;
    v.public_key()
        .verify(&ev.attestation_bytes(), &sig)
        .expect("the local signature verifies over the committed event");
    let human = text(&tlog(&s, &vkey, &state, &["get", "2"], 0).stdout);
    assert!(
        human.contains("approve team-a/fraud@1.0.0 by alice"),
        "{human}"
    );

    // prove by index and by hash
    let out = tlog(&s, &vkey, &state, &["prove", "5"], 0);
    assert!(text(&out.stdout).contains("proof:"));
    let out = tlog(&s, &vkey, &state, &["--json", "prove", &leaf_hash], 0);
    assert_eq!(
        json_lines(&out)[0]["inclusion_proof"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    tlog(&s, &vkey, &state, &["prove", "99"], 2);
    tlog(&s, &vkey, &state, &["prove", "xyz"], 2);

    // consistency between two sizes the log signed
    let out = tlog(&s, &vkey, &state, &["--json", "consistency", "1", "8"], 0);
    let c = &json_lines(&out)[0];
    assert_eq!(c["old"]["size"], 1);
    assert_eq!(c["new"]["size"], 8);
    assert_eq!(c["verified"], true);
    tlog(&s, &vkey, &state, &["consistency", "8", "1"], 2);

    // watch: the current checkpoint, then the one a new submit makes
    let watch = tlog_e2e::cmd("tlog")
        .args(["--server", &s.url, "--vkey", &vkey, "--state"])
        .arg(&state)
        .args(["--json", "watch", "--count", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    std::thread::sleep(std::time::Duration::from_millis(500));
    tlog_in(
        &s,
        &vkey,
        &state,
        &["submit", "--jsonl"],
        Some(event("f-8", "download", "team-a/fraud", "1.1.0", "").as_bytes()),
        0,
    );
    let out = watch.wait_with_output().expect("watch output");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sizes: Vec<u64> = json_lines(&out)
        .iter()
        .map(|c| c["size"].as_u64().expect("size"))
        .collect();
    assert_eq!(sizes, vec![8, 9]);

    // query with filters
    let q = |extra: &[&str]| {
        let mut args = vec!["--json", "query", "--artifact", "team-a/fraud"];
        args.extend(extra);
        json_lines(&tlog(&s, &vkey, &state, &args, 0))
    };
    assert_eq!(q(&[]).len(), 8);
    assert_eq!(q(&["--version", "1.1.0"]).len(), 2);
    assert_eq!(q(&["--action", "deploy"]).len(), 1);
    assert_eq!(
        q(&[
            "--since",
            "2000-01-01T00:00:00Z",
            "--until",
            "2001-01-01T00:00:00Z"
        ])
        .len(),
        0
    );
    assert!(q(&[]).iter().all(|e| e["verified"] == true));
    tlog(
        &s,
        &vkey,
        &state,
        &["query", "--artifact", "team-a/fraud", "--action", "explode"],
        2,
    );

    // export, then verify offline (no server address at all)
    let bundle = path("bundle.json");
    tlog(
        &s,
        &vkey,
        &state,
        &["export", "--artifact", "team-a/fraud", "-o", &bundle],
        0,
    );
    let out = run("tlog", &["verify-bundle", &bundle, "--vkey", &vkey]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("8 entries verified"),
        "{}",
        text(&out.stdout)
    );

    // report: markdown, html, json; and from the bundle
    let md = text(
        &tlog(
            &s,
            &vkey,
            &state,
            &["report", "--artifact", "team-a/fraud"],
            0,
        )
        .stdout,
    );
    assert!(
        md.contains("| 4 |") && md.contains("production") && md.contains("CHG-1"),
        "{md}"
    );
    let html_file = path("report.html");
    tlog(
        &s,
        &vkey,
        &state,
        &[
            "report",
            "--artifact",
            "team-a/fraud",
            "--format",
            "html",
            "-o",
            &html_file,
        ],
        0,
    );
    let html = std::fs::read_to_string(&html_file).expect("html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("</html>"));
    assert_eq!(html.matches("<tr><td>").count(), 8);
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "self-contained"
    );
    let rj = tlog(
        &s,
        &vkey,
        &state,
        &["report", "--artifact", "team-a/fraud", "--format", "json"],
        0,
    );
    let rj: serde_json::Value = serde_json::from_slice(&rj.stdout).expect("json report");
    assert_eq!(rj["entries"].as_array().map(Vec::len), Some(8));
    assert_eq!(rj["checkpoint"]["size"], 9);
    let out = run(
        "tlog",
        &[
            "report",
            "--artifact",
            "team-a/fraud",
            "--bundle",
            &bundle,
            "--vkey",
            &vkey,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("evidence bundle"));

    // a config file instead of flags
    let cfg = path("tlog.toml");
    std::fs::write(
        &cfg,
        format!(
            "server = \"{}\"\nvkey = \"{vkey}\"\nstate = \"{}\"\ntimeout = \"10s\"\n",
            s.url,
            state.display()
        ),
    )
    .expect("cfg");
    let out = run("tlog", &["--config", &cfg, "--json", "checkpoint"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out)[0]["size"], 9);
    std::fs::write(&cfg, "colour = \"red\"\n").expect("cfg");
    let out = run("tlog", &["--config", &cfg, "checkpoint"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("colour"),
        "{}",
        text(&out.stderr)
    );

    // the trusted state is the newest verified checkpoint
    let st = std::fs::read_to_string(&state).expect("state file");
    assert!(st.starts_with("cli.e2e.example/log\n9\n"), "{st}");
    assert!(s.stop());

    // a server that is not there: exit 3, with what to do
    let out = run(
        "tlog",
        &[
            "--server",
            "http://127.0.0.1:9",
            "--vkey",
            &vkey,
            "--no-state",
            "--timeout",
            "3s",
            "checkpoint",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is the server running"),
        "{}",
        text(&out.stderr)
    );
    // Said once: the transport's repeated words are not repeated.
    let err = text(&out.stderr);
    assert_eq!(err.matches("tcp connect error").count(), 1, "{err}");
    // An address without a scheme is the caller's mistake, said as such.
    let out = run(
        "tlog",
        &[
            "--server",
            "127.0.0.1:9",
            "--vkey",
            &vkey,
            "--no-state",
            "checkpoint",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("has no scheme: write http://127.0.0.1:9"),
        "{err}"
    );
    assert!(!err.contains("is the server running"), "{err}");
}

#[test]
fn malformed_submissions_exit_2_name_the_field_and_send_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "bad.e2e.example/log");
    let s = Server::start(&data);
    let state = dir.path().join("state");
    let good = event("g-1", "register", "m", "1", "");
    let cases: Vec<(String, &str)> = vec![
        ("{\"source\": ".into(), "malformed JSON"),
        (event("b-1", "explode", "m", "1", ""), "action"),
        (
            good.replace(&digest("m@1"), "sha256:xyz"),
            "artifact.digests[0]",
        ),
        (
            good.replace(&digest("m@1"), "sha256"),
            "artifact.digests[0]",
        ),
        (
            good.replace("\"actor\"", "\"actr\""),
            "unknown field `actr`",
        ),
        (event("b-2", "deploy", "m", "1", ""), "environment"),
        // A bad third line: the first two are not sent either.
        (
            format!(
                "{good}\n{}\n{{\"source\":1}}",
                event("g-2", "upload", "m", "1", "")
            ),
            "stdin line 3",
        ),
    ];
    for (input, want) in &cases {
        let out = tlog_in(
            &s,
            &vkey,
            &state,
            &["submit", "--jsonl"],
            Some(input.as_bytes()),
            2,
        );
        let err = text(&out.stderr);
        assert!(err.contains(want), "{input}: {err}");
    }
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        event("b-3", "register", "m", "1", "").replace("\"1\"", "\"\""),
    )
    .expect("w");
    let out = tlog(
        &s,
        &vkey,
        &state,
        &["submit", "--file", file.to_str().expect("utf8")],
        2,
    );
    assert!(
        text(&out.stderr).contains("artifact.version"),
        "{}",
        text(&out.stderr)
    );
    let out = tlog(
        &s,
        &vkey,
        &state,
        &[
            "submit",
            "--source",
            "s",
            "--action",
            "register",
            "--artifact",
            "m",
            "--version",
            "1",
            "--digest",
            "md5:00",
        ],
        2,
    );
    assert!(
        text(&out.stderr).contains("digest"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(size_of(&s, &vkey, &state), 0, "nothing was sent");
    assert!(s.stop());
}

fn flip_b64(t: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(t).expect("b64");
    let n = raw.len() / 2;
    raw[n] ^= 0x01;
    b64.encode(raw)
}

#[test]
fn tampered_bundles_fail_naming_what_failed() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "bundle.e2e.example/log");
    let s = Server::start(&data);
    let state = dir.path().join("state");
    let lines: Vec<String> = (0..6)
        .map(|i| event(&format!("t-{i}"), "download", "team-c/llm", "3.0.0", ""))
        .collect();
    tlog_in(
        &s,
        &vkey,
        &state,
        &["submit", "--jsonl", "--batch", "1"],
        Some(lines.join("\n").as_bytes()),
        0,
    );
    let bundle = dir.path().join("b.json");
    let b = bundle.to_str().expect("utf8");
    tlog(
        &s,
        &vkey,
        &state,
        &["export", "--artifact", "team-c/llm", "-o", b],
        0,
    );
    assert!(s.stop());
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).expect("read")).expect("json");

    let check = |name: &str, edit: &dyn Fn(&mut serde_json::Value), want: &str, key: &str| {
        let mut v = original.clone();
        edit(&mut v);
        let f = dir.path().join(format!("{name}.json"));
        std::fs::write(&f, serde_json::to_vec(&v).expect("json")).expect("write");
        let out = run(
            "tlog",
            &["verify-bundle", f.to_str().expect("utf8"), "--vkey", key],
        );
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("FAILED") && err.contains(want),
            "{name}: {err}"
        );
    };
    check(
        "leaf",
        &|v| {
            let l = v["entries"][3]["leaf"].as_str().expect("leaf").to_owned();
            v["entries"][3]["leaf"] = flip_b64(&l).into();
        },
        "entry 3 (log index 3)",
        &vkey,
    );
    check(
        "proof",
        &|v| {
            let h = v["entries"][1]["inclusion_proof"][1]
                .as_str()
                .expect("h")
                .to_owned();
            let first = if h.starts_with('0') { '1' } else { '0' };
            let flipped = format!("{first}{}", h.get(1..).unwrap_or_default());
            v["entries"][1]["inclusion_proof"][1] = flipped.into();
        },
        "entry 1 (log index 1): inclusion proof",
        &vkey,
    );
    check(
        "checkpoint-text",
        &|v| {
            let c = v["checkpoint"]
                .as_str()
                .expect("cp")
                .replacen("\n6\n", "\n7\n", 1);
            v["checkpoint"] = c.into();
        },
        "checkpoint:",
        &vkey,
    );
    check(
        "signature",
        &|v| {
            let c = v["checkpoint"].as_str().expect("cp").to_owned();
            let (body, sigline) = c.trim_end().rsplit_once(' ').expect("sig line");
            v["checkpoint"] = format!("{body} {}\n", flip_b64(sigline)).into();
        },
        "checkpoint:",
        &vkey,
    );
    let other = tlog_core::note::Signer::from_seed("bundle.e2e.example/log", &[9; 32])
        .expect("key")
        .verifier()
        .to_vkey();
    check("other-key", &|_| {}, "checkpoint:", &other);
    // And the untouched bundle still verifies.
    let out = run("tlog", &["verify-bundle", b, "--vkey", &vkey]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // TLOG_JSON=1 asks for JSON as --json does.
    let out = tlog_e2e::cmd("tlog")
        .args(["verify-bundle", b, "--vkey", &vkey])
        .env("TLOG_JSON", "1")
        .output()
        .expect("run tlog");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["verified"], true, "{v}");
    // Without a key of its own the CLI refuses: the bundle's own key
    // would let any forged bundle verify.
    let out = run("tlog", &["verify-bundle", b]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("--vkey") && err.contains("agrees with itself"),
        "{err}"
    );
}

#[test]
fn a_forked_log_is_refused_with_both_checkpoints_as_evidence() {
    let dir = tempfile::tempdir().expect("tmp");
    let a_dir = dir.path().join("a");
    let vkey = init(&a_dir, "fork.e2e.example/log");
    // Same key, same origin, same empty history: then they diverge.
    let b_dir = dir.path().join("b");
    copy_dir(&a_dir, &b_dir);
    let a = Server::start(&a_dir);
    let b = Server::start(&b_dir);
    let state = dir.path().join("state");
    let submit = |s: &Server, id: &str, code: i32| {
        tlog_in(
            s,
            &vkey,
            &state,
            &["submit", "--jsonl"],
            Some(event(id, "register", "team-d/m", "1.0.0", "").as_bytes()),
            code,
        )
    };
    submit(&a, "honest-1", 0);
    submit(&a, "honest-2", 0);
    // The second log signs a size-1 tree with other content, then grows
    // to size 2: a client that trusted the first sees a fork.
    let fresh = dir.path().join("fresh-state");
    tlog_in(
        &b,
        &vkey,
        &fresh,
        &["submit", "--jsonl"],
        Some(event("evil-1", "register", "team-d/m", "6.6.6", "").as_bytes()),
        0,
    );
    tlog_in(
        &b,
        &vkey,
        &fresh,
        &["submit", "--jsonl"],
        Some(event("evil-2", "register", "team-d/m", "6.6.7", "").as_bytes()),
        0,
    );
    let out = tlog(&b, &vkey, &state, &["checkpoint"], 1);
    let err = text(&out.stderr);
    assert!(err.contains("server misbehavior"), "{err}");
    assert!(err.contains("different roots"), "{err}");
    assert!(
        err.contains("trusted checkpoint") && err.contains("conflicting checkpoint"),
        "{err}"
    );
    // JSON carries both signed checkpoints, which verify with the key.
    let out = tlog(&b, &vkey, &state, &["--json", "checkpoint"], 1);
    let v = &json_lines(&out)[0];
    assert_eq!(v["error"], "misbehavior");
    let verifiers = tlog_core::note::Verifiers::new([
        tlog_core::note::Verifier::from_vkey(&vkey).expect("vkey")
    ]);
    let t = tlog_core::checkpoint::open(
        v["trusted_checkpoint"].as_str().expect("t").as_bytes(),
        &verifiers,
        "fork.e2e.example/log",
    )
    .expect("trusted verifies");
    let c = tlog_core::checkpoint::open(
        v["conflicting_checkpoint"].as_str().expect("c").as_bytes(),
        &verifiers,
        "fork.e2e.example/log",
    )
    .expect("conflicting verifies");
    assert_eq!(t.checkpoint.size, c.checkpoint.size);
    assert_ne!(t.checkpoint.root, c.checkpoint.root);
    // The trusted state was not replaced by the fork.
    let st = std::fs::read_to_string(&state).expect("state");
    assert_eq!(st, t.raw);
    // A longer fork fails the consistency proof instead.
    tlog_in(
        &b,
        &vkey,
        &fresh,
        &["submit", "--jsonl"],
        Some(event("evil-3", "register", "team-d/m", "6.6.8", "").as_bytes()),
        0,
    );
    let out = tlog(&b, &vkey, &state, &["checkpoint"], 1);
    assert!(
        text(&out.stderr).contains("not consistent"),
        "{}",
        text(&out.stderr)
    );
    // The honest log still verifies; a rollback (a smaller latest) does not.
    tlog(&a, &vkey, &state, &["checkpoint"], 0);
    let ahead = dir.path().join("ahead-state");
    tlog(&b, &vkey, &ahead, &["checkpoint"], 0);
    let out = tlog(&a, &vkey, &ahead, &["checkpoint"], 1);
    assert!(
        text(&out.stderr).contains("rollback"),
        "{}",
        text(&out.stderr)
    );
    assert!(a.stop());
    assert!(b.stop());
}

#[test]
fn appends_are_retried_while_the_log_restarts() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "retry.e2e.example/log");
    let s = Server::start(&data);
    let (url, addr) = (s.url.clone(), s.addr.clone());
    let ev = |id: &str| {
        tlog_core::json::event_from_json(&event(id, "register", "team-r/m", "1.0.0", ""))
            .expect("event")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let restarted = rt.block_on(async {
        let connect = |retries| {
            let opts = tlog_client::ConnectOptions {
                retries: Some(retries),
                timeout: Some(std::time::Duration::from_secs(5)),
                ..Default::default()
            };
            let (url, vkey) = (url.clone(), vkey.clone());
            async move {
                tlog_client::Client::connect_with(&url, &vkey, &opts)
                    .await
                    .expect("connect")
            }
        };
        let mut patient = connect(8).await;
        let mut impatient = connect(0).await;
        assert_eq!(patient.append(&ev("r-0")).await.expect("append").index, 0);
        assert!(s.stop());
        let data2 = data.clone();
        let restart = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(800));
            Server::start_at(&data2, &addr, &[])
        });
        // Without retries the outage is the caller's problem ...
        let e = impatient.append(&ev("r-1")).await.expect_err("log is down");
        assert!(
            matches!(
                e,
                tlog_client::ClientError::Transport(_)
                    | tlog_client::ClientError::Refused {
                        code: tonic_code::Unavailable,
                        ..
                    }
            ),
            "{e}"
        );
        // ... with them, the append lands once the log is back.
        let got = patient
            .append(&ev("r-1"))
            .await
            .expect("retried until the log was back");
        assert_eq!(got.index, 1);
        // A retry of an event already in the log returns the original.
        let again = patient.append(&ev("r-0")).await.expect("duplicate");
        assert!(again.duplicate);
        assert_eq!(again.index, 0);
        restart.join().expect("restart thread")
    });
    assert!(restarted.stop());
}

/// The gRPC status codes, as the client reports them.
use tonic::Code as tonic_code;

/// `tlog submit` keeps its word: with another log's key it appends nothing
/// (the key is checked first); without `--event-id` the event is named by
/// its content, so a rerun is a retry of the same entry.
#[test]
fn submit_checks_the_key_first_and_a_rerun_is_a_retry() {
    let dir = tempfile::tempdir().expect("tmp");
    let vkey = init(&dir.path().join("log"), "submit.e2e.example/log");
    let other = init(&dir.path().join("other"), "submit.e2e.example/log");
    let s = Server::start(&dir.path().join("log"));
    let state = dir.path().join("state");
    let args = [
        "--json",
        "submit",
        "--source",
        "ci",
        "--action",
        "register",
        "--artifact",
        "team-a/model",
        "--version",
        "1.0.0",
        "--digest",
        "sha256:0000000000000000000000000000000000000000000000000000000000000001",
    ];
    let wrong = tlog(&s, &other, &dir.path().join("state-other"), &args, 2);
    assert!(
        text(&wrong.stderr).contains("nothing was appended"),
        "{}",
        text(&wrong.stderr)
    );
    let first = tlog(&s, &vkey, &state, &args, 0);
    let first = &json_lines(&first)[0];
    assert_eq!(first["index"], 0, "the wrong key appended nothing: {first}");
    assert_eq!(first["duplicate"], false);
    let again = tlog(&s, &vkey, &state, &args, 0);
    let again = &json_lines(&again)[0];
    assert_eq!(again["index"], 0, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(size_of(&s, &vkey, &state), 1);
    assert!(s.stop());
}

#[test]
fn server_log_files_are_plain_text() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    init(&data, "plain.e2e.example/log");
    let s = Server::start(&data);
    let log_path = s.log.clone();
    assert!(s.stop(), "graceful stop exits 0");
    let log = std::fs::read_to_string(log_path).expect("server log");
    assert!(log.contains("log opened"), "{log}");
    // A file, not a terminal: no colour codes, and no Rust `Some(...)`.
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file: {log:?}"
    );
    assert!(!log.contains("Some("), "{log}");
}

#[test]
fn a_long_submission_ends_with_one_summary_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "summary.e2e.example/log");
    let s = Server::start(&data);
    let state = dir.path().join("state");
    let lines: Vec<String> = (0..150)
        .map(|i| event(&format!("s-{i}"), "download", "team-s/model", "1.0.0", ""))
        .collect();
    let input = lines.join("\n");
    // Text: one line for the whole run, not one (or four) per event.
    let out = tlog_in(
        &s,
        &vkey,
        &state,
        &["submit", "--jsonl", "--batch", "32"],
        Some(input.as_bytes()),
        0,
    );
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("submitted 150 events (150 new, 0 already in the log)"),
        "{stdout}"
    );
    // A rerun is all retries; --verbose adds each entry.
    let out = tlog_in(
        &s,
        &vkey,
        &state,
        &["submit", "--jsonl", "--verbose"],
        Some(input.as_bytes()),
        0,
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("submitted 150 events (0 new, 150 already in the log)"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("index:").count(), 150, "{stdout}");
    // --json: one JSON line per event, nothing else on stdout.
    let out = tlog_in(
        &s,
        &vkey,
        &state,
        &["--json", "submit", "--jsonl"],
        Some(input.as_bytes()),
        0,
    );
    assert_eq!(json_lines(&out).len(), 150);
}

#[test]
fn completions_and_the_manual_page_are_generated() {
    let out = run("tlog", &["completions", "bash"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(
        script.contains("complete") && script.contains("verify-bundle"),
        "{script}"
    );
    let out = run("tlog", &["man"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains(".TH tlog"), "{page}");
    // --help shows examples and the exit codes, refusals included.
    let out = run("tlog", &["--help"]);
    let help = text(&out.stdout);
    assert!(
        help.contains("Examples:") && help.contains("4 refused"),
        "{help}"
    );
}

/// `tlog prove --format tlog-proof` writes a c2sp.org/tlog-proof file that
/// `tlog verify-proof` checks with no server; `export --proofs` writes one
/// per entry. A changed entry, proof hash or checkpoint fails (exit 1), a
/// missing key is a usage error (exit 2), another log's key fails.
#[test]
fn tlog_proofs_verify_offline_and_tampering_fails() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let vkey = init(&data, "proof.e2e.example/log");
    let s = Server::start(&data);
    let state = dir.path().join("state");
    let lines: Vec<String> = (0..5)
        .map(|i| event(&format!("p-{i}"), "upload", "team-p/model", "1.0.0", ""))
        .collect();
    tlog_in(
        &s,
        &vkey,
        &state,
        &["submit", "--jsonl", "--batch", "2"],
        Some(lines.join("\n").as_bytes()),
        0,
    );
    let proof = dir.path().join("e3.tlog-proof");
    let p = proof.to_str().expect("utf8");
    tlog(
        &s,
        &vkey,
        &state,
        &["prove", "3", "--format", "tlog-proof", "-o", p],
        0,
    );
    let proofs = dir.path().join("proofs");
    tlog(
        &s,
        &vkey,
        &state,
        &[
            "export",
            "--artifact",
            "team-p/model",
            "-o",
            dir.path().join("b.json").to_str().expect("utf8"),
            "--proofs",
            proofs.to_str().expect("utf8"),
        ],
        0,
    );
    assert!(s.stop(), "the server is gone: what follows is offline");
    let text_of = |path: &Path| std::fs::read_to_string(path).expect("proof");
    let original = text_of(&proof);
    assert!(
        original.starts_with("c2sp.org/tlog-proof@v1\nextra "),
        "{original}"
    );
    assert!(original.contains("\nindex 3\n"));
    assert_eq!(
        text_of(&proofs.join("3.tlog-proof")),
        original,
        "export writes the same proof"
    );
    for i in 0..5 {
        assert!(
            proofs.join(format!("{i}.tlog-proof")).is_file(),
            "proof {i}"
        );
    }
    let verify = |f: &Path, key: Option<&str>| {
        let mut args = vec!["verify-proof", f.to_str().expect("utf8")];
        if let Some(k) = key {
            args.extend(["--vkey", k]);
        }
        run("tlog", &args)
    };
    let ok = verify(&proof, Some(&vkey));
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let out = text(&ok.stdout);
    assert!(
        out.contains("entry 3 verified") && out.contains("team-p/model"),
        "{out}"
    );
    assert_eq!(verify(&proof, None).status.code(), Some(2), "no key: usage");
    let other = init(&dir.path().join("other"), "proof.e2e.example/log");
    assert_eq!(
        verify(&proof, Some(&other)).status.code(),
        Some(1),
        "another key"
    );
    // Tampered: the entry (extra), a proof hash, the index, the checkpoint.
    let lines: Vec<&str> = original.lines().collect();
    let edits: Vec<(&str, String)> = vec![
        (
            "extra",
            original.replacen(lines[1], &format!("extra {}", flip_b64(&lines[1][6..])), 1),
        ),
        (
            "proof hash",
            original.replacen(lines[3], &flip_b64(lines[3]), 1),
        ),
        ("index", original.replacen("\nindex 3\n", "\nindex 2\n", 1)),
        ("checkpoint", original.replacen("\n5\n", "\n4\n", 1)),
    ];
    for (what, edited) in edits {
        assert_ne!(edited, original, "{what}: an edit");
        let f = dir.path().join("t.tlog-proof");
        std::fs::write(&f, &edited).expect("write");
        let out = verify(&f, Some(&vkey));
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("verification FAILED"), "{what}");
    }
}
