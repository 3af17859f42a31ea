//! The real server with TLS, a token issuer (`tlog-server token keygen`,
//! `token mint`) and the example policy in `deploy/policy/policy.cedar`;
//! the real `tlog` CLI submitting with and without credentials.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tlog_e2e::{Server, run};

/// A CA (`ca.pem`) and a certificate for `localhost` it signed
/// (`server.pem`, `server.key`), in `dir`.
pub(crate) fn certs(dir: &Path) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "e2e CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("sign");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), leaf.pem()).expect("write");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn cli_with_tls_and_tokens_against_the_example_policy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let data = d.join("data");
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
    assert!(init.status.success(), "{}", text(&init));
    let vkey = String::from_utf8(init.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    certs(d);
    let p = |n: &str| d.join(n).to_str().expect("utf8").to_owned();
    let keygen = run(
        "tlog-server",
        &[
            "token",
            "keygen",
            "--kid",
            "ops-1",
            "--key-out",
            &p("op.key"),
            "--jwks-out",
            &p("op.jwks"),
        ],
    );
    assert!(keygen.status.success(), "{}", text(&keygen));
    let policy = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../deploy/policy/policy.cedar");
    std::fs::write(
        d.join("server.toml"),
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n[auth]\npolicy_file = {:?}\naccess_log = {:?}\n\
             [[auth.token_issuers]]\nissuer = \"https://ops.e2e\"\naudience = \"tlog\"\njwks_file = {:?}\n",
            p("server.pem"),
            p("server.key"),
            policy.to_str().expect("utf8"),
            p("access.log"),
            p("op.jwks"),
        ),
    )
    .expect("config");
    let server = Server::start_with(&data, &["--config", &p("server.toml")]);
    let url = format!("https://{}", server.addr);
    let mint = |roles: &[&str]| {
        let mut args = vec![
            "token",
            "mint",
            "--key",
            &p("op.key"),
            "--kid",
            "ops-1",
            "--issuer",
            "https://ops.e2e",
            "--audience",
            "tlog",
            "--subject",
            "registry-svc",
            "--ttl",
            "10m",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        for r in roles {
            args.push("--role".into());
            args.push((*r).into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run("tlog-server", &refs);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8(o.stdout).expect("utf8").trim().to_owned()
    };
    let token = mint(&["registry"]);
    let submit = |token: Option<&str>, artifact: &str, id: &str| {
        let mut args = vec![
            "--server",
            &url,
            "--vkey",
            &vkey,
            "--ca-file",
            &p("ca.pem"),
            "--tls-domain",
            "localhost",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        if let Some(t) = token {
            args.extend(["--token".into(), t.into()]);
        }
        args.extend(
            [
                "submit",
                "--source",
                "registry",
                "--event-id",
                id,
                "--action",
                "register",
                "--artifact",
                artifact,
                "--version",
                "1.0.0",
                "--digest",
            ]
            .map(String::from),
        );
        args.push(format!("sha256:{}", "ef".repeat(32)));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run("tlog", &refs)
    };

    let ok = submit(Some(&token), "team-a/model", "r1");
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("verified:"), "{}", text(&ok));

    // Refusals by access control exit 4, not 3 (the server is fine), and
    // say what decided.
    let anon = submit(None, "team-a/model", "r2");
    assert_eq!(anon.status.code(), Some(4), "{}", text(&anon));
    assert!(text(&anon).contains("Unauthenticated"), "{}", text(&anon));

    let outside = submit(Some(&token), "team-b/model", "r3");
    assert_eq!(outside.status.code(), Some(4), "{}", text(&outside));
    assert!(
        text(&outside).contains("PermissionDenied"),
        "{}",
        text(&outside)
    );
    assert!(
        text(&outside).contains("no policy permits it (default deny)"),
        "{}",
        text(&outside)
    );

    // An auditor's query needs a justification: without one the refusal
    // says so (exit 4), with one it is answered.
    let auditor = mint(&["auditor"]);
    let p_ca = p("ca.pem");
    let query = |justification: Option<&str>| {
        let mut args = vec![
            "--server",
            &url,
            "--vkey",
            &vkey,
            "--ca-file",
            &p_ca,
            "--tls-domain",
            "localhost",
            "--token",
            &auditor,
        ];
        if let Some(j) = justification {
            args.extend(["--justification", j]);
        }
        args.extend(["query", "--artifact", "team-a/model"]);
        run("tlog", &args)
    };
    let refused = query(None);
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused));
    assert!(
        text(&refused).contains("no policy permits it (default deny)")
            && text(&refused).contains(
                "policy auditor-query-with-justification would, but its conditions are not met"
            )
            && text(&refused).contains("tlog --justification"),
        "{}",
        text(&refused)
    );
    let answered = query(Some("INC-7"));
    assert!(answered.status.success(), "{}", text(&answered));

    // Checkpoints are public in the example policy: no token needed.
    let cp = run(
        "tlog",
        &[
            "--server",
            &url,
            "--vkey",
            &vkey,
            "--ca-file",
            &p("ca.pem"),
            "--tls-domain",
            "localhost",
            "checkpoint",
        ],
    );
    assert!(cp.status.success(), "{}", text(&cp));
    // Without --ca-file an https:// address is checked against the
    // system's roots: a certificate they do not hold is refused, and one
    // they hold (SSL_CERT_FILE, as rustls-native-certs reads it) works.
    let roots = |file: Option<&str>| {
        let mut c = tlog_e2e::cmd("tlog");
        c.args([
            "--server",
            &url,
            "--vkey",
            &vkey,
            "--tls-domain",
            "localhost",
        ])
        .args(["--no-state", "checkpoint"])
        .env_remove("SSL_CERT_DIR");
        match file {
            Some(f) => c.env("SSL_CERT_FILE", f),
            None => c.env("SSL_CERT_FILE", d.join("no-roots.pem")),
        };
        c.output().expect("run tlog")
    };
    std::fs::write(d.join("no-roots.pem"), "").expect("empty roots");
    let untrusted = roots(None);
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    let trusted = roots(Some(&p("ca.pem")));
    assert!(trusted.status.success(), "{}", text(&trusted));

    assert!(server.stop(), "graceful stop exits 0");
    let log = std::fs::read_to_string(d.join("access.log")).expect("access log");
    assert!(log.lines().count() >= 4, "{log}");
    assert!(log.contains("\"principal\":\"registry-svc\""), "{log}");
    assert!(log.contains("\"decision\":\"deny\""), "{log}");
}
