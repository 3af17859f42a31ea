//! The deployment files in `deploy/`, checked without a container engine
//! or a cluster (neither exists on the build machines): every file parses,
//! every file it mounts or references exists, the configurations and the
//! policy they carry pass the real parsers, the commands they run exist
//! in the real binaries, and the hardening and probes are in place.

use std::collections::BTreeMap;
use std::path::Path;

use tlog_e2e::{cmd, run};

use tlog_e2e::{repo, repo_file as read};

/// The server configuration `text` passes the server's own parser and
/// checks.
fn server_config_ok(what: &str, text: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("server.toml");
    std::fs::write(&p, text).expect("write");
    let c = tlog_server::ops::config::Config::from_file(&p)
        .unwrap_or_else(|e| panic!("{what}: server config: {e}"));
    c.validate()
        .unwrap_or_else(|e| panic!("{what}: server config: {e}"));
}

fn monitor_config_ok(what: &str, text: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("monitor.toml");
    std::fs::write(&p, text).expect("write");
    tlog_monitor::config::Config::load(&p)
        .unwrap_or_else(|e| panic!("{what}: monitor config: {e}"));
}

fn policy_ok(what: &str, text: &str) {
    tlog_server::access::authz::Policy::parse(Path::new(what), text)
        .unwrap_or_else(|e| panic!("{what}: policy: {e}"));
}

/// `binary subcommand... --help` succeeds: the command a file runs exists.
fn command_exists(what: &str, argv: &[&str]) {
    let (bin, sub) = argv.split_first().expect("a command");
    let bin = Path::new(bin)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    let mut args: Vec<&str> = sub
        .iter()
        .copied()
        .take_while(|a| !a.starts_with('-'))
        .collect();
    args.push("--help");
    let out = run(bin, &args);
    assert!(
        out.status.success(),
        "{what}: `{bin} {}` is not a command: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `key = value` lines of an INI-style systemd unit, by section.
fn unit(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a key=value line: {line}"));
        assert!(!section.is_empty(), "key outside a section: {line}");
        out.entry(section.clone())
            .or_default()
            .push((k.trim().to_owned(), v.trim().to_owned()));
    }
    out
}

fn get<'a>(u: &'a BTreeMap<String, Vec<(String, String)>>, s: &str, k: &str) -> Vec<&'a str> {
    u.get(s)
        .map(|kv| {
            kv.iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn systemd_units_are_hardened_and_run_real_commands() {
    let users = read("deploy/systemd/tlog.sysusers");
    for (file, data_dir) in [
        ("deploy/systemd/tlog-server.service", "/var/lib/tlog"),
        (
            "deploy/systemd/tlog-monitor.service",
            "/var/lib/tlog-monitor",
        ),
    ] {
        let u = unit(&read(file));
        for s in ["Unit", "Service", "Install"] {
            assert!(u.contains_key(s), "{file}: no [{s}]");
        }
        for (k, v) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("ProtectHome", "yes"),
            ("StateDirectoryMode", "0700"),
            ("UMask", "0077"),
        ] {
            assert_eq!(get(&u, "Service", k), [v], "{file}: {k}");
        }
        assert_eq!(get(&u, "Service", "CapabilityBoundingSet"), [""], "{file}");
        let user = get(&u, "Service", "User");
        assert_eq!(user.len(), 1, "{file}: a dedicated User=");
        assert_ne!(user[0], "root", "{file}");
        assert!(
            users
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(user[0])),
            "{file}: user {} is not created by tlog.sysusers",
            user[0]
        );
        assert!(
            get(&u, "Service", "ReadWritePaths")
                .iter()
                .any(|p| p.split_whitespace().any(|p| p == data_dir)),
            "{file}: its state directory must be writable under ProtectSystem=strict"
        );
        let exec = get(&u, "Service", "ExecStart");
        let argv: Vec<&str> = exec[0].split_whitespace().collect();
        command_exists(file, &argv);
    }
}

#[test]
fn the_container_image_is_multi_stage_non_root_with_a_health_check() {
    let f = read("deploy/container/Containerfile");
    let froms: Vec<&str> = f.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    let runtime = &f[f.rfind("FROM ").expect("from")..];
    assert!(
        !runtime.contains("cargo") && !runtime.contains("g++"),
        "no toolchain in the runtime image"
    );
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "non-root: {user}"
    );
    assert!(
        runtime.contains("VOLUME [\"/var/lib/tlog\""),
        "data on a volume"
    );
    let hc = runtime
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .nth(1)
        .expect("HEALTHCHECK command");
    let argv: Vec<String> = serde_json::from_str(
        hc.trim()
            .strip_prefix("CMD ")
            .expect("CMD [...] on the line after HEALTHCHECK"),
    )
    .expect("exec form");
    assert_eq!(&argv[..2], ["tlog-server", "health"]);
    command_exists(
        "HEALTHCHECK",
        &argv.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for bin in ["tlog-server", "tlog", "tlog-monitor"] {
        assert!(
            f.contains(&format!("target/release/{bin}")),
            "{bin} is built and copied"
        );
    }
}

fn yaml_docs(text: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn s<'a>(v: &'a serde_yaml::Value, path: &[&str]) -> &'a serde_yaml::Value {
    path.iter().fold(v, |v, k| &v[*k])
}

#[test]
fn the_compose_file_mounts_files_that_exist_and_configs_that_parse() {
    let dir = repo().join("deploy/compose");
    let text = read("deploy/compose/compose.yaml");
    let docs = yaml_docs(&text);
    assert_eq!(docs.len(), 1);
    let c = &docs[0];
    let services = c["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for want in ["server", "monitor", "submitter"] {
        assert!(names.contains(&want), "service {want}: {names:?}");
    }
    // TLS material comes from make-certs.sh: run it into a scratch folder
    // and check what it writes.
    let certs = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new("sh")
        .arg(dir.join("make-certs.sh"))
        .arg(certs.path())
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "make-certs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["ca.pem", "server.pem", "server.key"] {
        let pem = std::fs::read_to_string(certs.path().join(f)).expect(f);
        assert!(pem.starts_with("-----BEGIN "), "{f}");
    }
    for (name, svc) in services {
        let name = name.as_str().expect("name");
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let spec = v.as_str().expect("short volume syntax");
            let src = spec.split(':').next().expect("source");
            if !(src.starts_with("./") || src.starts_with("../")) {
                assert!(
                    c["volumes"].get(src).is_some(),
                    "{name}: named volume {src} is declared"
                );
                continue;
            }
            if src == "./certs" {
                continue; // written by make-certs.sh, checked above
            }
            let p = dir.join(src);
            assert!(p.exists(), "{name}: mounts {src}, which does not exist");
            let target = spec.split(':').nth(1).expect("target");
            let body = std::fs::read_to_string(&p).unwrap_or_default();
            if target.ends_with("server.toml.in") {
                // The setup service's template: valid as it is, and with
                // the trusted signer setup.sh adds after [auth].
                server_config_ok("compose server.toml template", &body);
                let signer = tlog_core::note::Signer::from_seed("release-pipeline", &[1; 32])
                    .expect("signer")
                    .verifier()
                    .to_vkey();
                let filled = body.replacen(
                    "[auth]\n",
                    &format!("[auth]\ntrusted_signers = [\"{signer}\"]\n"),
                    1,
                );
                assert!(filled.contains("trusted_signers"), "{filled}");
                server_config_ok("compose server.toml as setup.sh writes it", &filled);
            } else if target.ends_with("server.toml") {
                server_config_ok("compose server.toml", &body);
            } else if target.ends_with("monitor.toml") {
                monitor_config_ok("compose monitor.toml", &body);
            } else if target.ends_with(".cedar") {
                policy_ok("compose policy", &body);
            } else if target.ends_with(".sh") {
                let ok = std::process::Command::new("sh")
                    .args(["-n"])
                    .arg(&p)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "{src} has shell syntax errors");
                // Every tlog command the script runs exists.
                for line in body.lines().map(str::trim) {
                    for bin in ["tlog-server ", "tlog "] {
                        if let Some(rest) = line.strip_prefix(bin) {
                            // The subcommand words: after any $VARIABLE,
                            // up to the first option.
                            let words = rest
                                .split_whitespace()
                                .filter(|w| !w.starts_with('$'))
                                .take_while(|w| !w.starts_with('-'))
                                .take_while(|w| {
                                    w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                                })
                                .take(2);
                            let mut argv = vec![bin.trim()];
                            argv.extend(words);
                            command_exists(src, &argv);
                        }
                    }
                }
            }
        }
        if let Some(cmd) = svc["command"].as_sequence() {
            let entry = svc["entrypoint"]
                .as_sequence()
                .and_then(|e| e.first())
                .and_then(|e| e.as_str())
                .unwrap_or("tlog-server");
            let mut argv = vec![entry];
            argv.extend(cmd.iter().filter_map(|a| a.as_str()));
            command_exists(name, &argv);
        }
    }
    assert_eq!(
        s(c, &["services", "server", "healthcheck", "test"])[1].as_str(),
        Some("tlog-server")
    );
    // The paths a newcomer walks (issue [10/16]): setup runs as root to
    // hand the host's 0600 TLS key to the image's user; the server reads
    // the configuration setup writes; the key make-certs.sh writes is the
    // host user's alone.
    assert_eq!(s(c, &["services", "setup", "user"]).as_str(), Some("0:0"));
    assert!(
        text.contains("\"--config\", \"/shared/server.toml\""),
        "the server reads setup's configuration"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(certs.path().join("server.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "server.key is {mode:o}");
    }
    let setup = read("deploy/compose/setup.sh");
    assert!(
        setup.contains("tlog keygen --name release-pipeline"),
        "{setup}"
    );
    assert!(setup.contains("trusted_signers"), "{setup}");
    // The demo submitter signs its production deploy (the example policy
    // forbids an unsigned one) and queries with --artifact.
    let submit = read("deploy/compose/submit.sh");
    let deploy = submit
        .lines()
        .find(|l| l.starts_with("sub deploy"))
        .expect("a deploy");
    assert!(
        deploy.contains("--sign-key /shared/release-pipeline.key"),
        "{deploy}"
    );
    assert!(
        submit.contains("query --artifact team-a/fraud-model"),
        "{submit}"
    );
    // The image has a /shared the image's user may write.
    let image = read("deploy/container/Containerfile");
    assert!(image.contains("-o tlog -g tlog") && image.contains("/shared"));
    assert!(repo().join(".dockerignore").exists(), "no .dockerignore");
    assert!(
        read(".dockerignore").lines().any(|l| l.trim() == "target/"),
        ".dockerignore keeps target/ out of the build context"
    );
}

#[test]
fn the_kubernetes_manifests_hold_one_sequencer_with_probes_and_valid_configs() {
    let text = read("deploy/k8s/tlog.yaml");
    // `kubectl create secret tls` stores no ca.crt, which the probes and
    // the monitor mount: the recipe must make a generic secret with it.
    assert!(
        !text.contains("create secret tls"),
        "the recipe stores no ca.crt"
    );
    assert!(
        text.contains("--from-file=ca.crt="),
        "the recipe stores ca.crt"
    );
    for (i, l) in text.lines().enumerate() {
        if let Some(image) = l.trim().strip_prefix("image: ") {
            assert!(!image.ends_with(":latest"), "line {}: {image}", i + 1);
            let next = text.lines().nth(i + 1).unwrap_or_default().trim();
            assert_eq!(next, "imagePullPolicy: IfNotPresent", "line {}", i + 2);
        }
    }
    let docs = yaml_docs(&text);
    let kind = |k: &str| -> Vec<&serde_yaml::Value> {
        docs.iter()
            .filter(|d| d["kind"].as_str() == Some(k))
            .collect()
    };
    for d in &docs {
        assert!(d["apiVersion"].is_string(), "apiVersion: {d:?}");
        assert!(d["metadata"]["name"].is_string(), "metadata.name: {d:?}");
    }
    let sts = kind("StatefulSet");
    assert_eq!(sts.len(), 1);
    let sts = sts[0];
    assert_eq!(sts["spec"]["replicas"].as_u64(), Some(1), "one sequencer");
    assert!(sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"].is_mapping());
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let server = &pod["containers"][0];
    for probe in ["livenessProbe", "readinessProbe"] {
        let argv: Vec<&str> = server[probe]["exec"]["command"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{probe}"))
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        command_exists(probe, &argv);
    }
    assert!(server["resources"]["requests"]["cpu"].is_string());
    assert!(server["resources"]["requests"]["memory"].is_string());
    let dep = kind("Deployment");
    assert_eq!(dep.len(), 1, "the monitor");
    let monitor = &dep[0]["spec"]["template"]["spec"]["containers"][0];
    assert!(monitor["livenessProbe"].is_mapping() && monitor["readinessProbe"].is_mapping());
    assert!(monitor["resources"]["requests"]["memory"].is_string());
    assert!(!kind("NetworkPolicy").is_empty(), "a NetworkPolicy");
    assert!(!kind("Secret").is_empty(), "keys as Secrets");
    // Every volume the pods mount comes from a ConfigMap, Secret or claim
    // defined here (or created by the documented kubectl commands).
    let defined = |k: &str, n: &str| {
        kind(k)
            .iter()
            .any(|d| d["metadata"]["name"].as_str() == Some(n))
    };
    for spec in [pod, &dep[0]["spec"]["template"]["spec"]] {
        for v in spec["volumes"].as_sequence().expect("volumes") {
            if let Some(n) = v["configMap"]["name"].as_str() {
                assert!(defined("ConfigMap", n), "ConfigMap {n}");
            }
            if let Some(n) = v["secret"]["secretName"].as_str() {
                assert!(
                    defined("Secret", n) || n == "tlog-tls",
                    "Secret {n} (tlog-tls is made by the kubectl command in the header)"
                );
            }
            if let Some(n) = v["persistentVolumeClaim"]["claimName"].as_str() {
                assert!(defined("PersistentVolumeClaim", n), "claim {n}");
            }
        }
    }
    // The configurations and policy in the ConfigMaps pass the parsers.
    for cm in kind("ConfigMap") {
        for (file, body) in cm["data"].as_mapping().expect("data") {
            let (file, body) = (file.as_str().expect("key"), body.as_str().expect("text"));
            match file {
                "server.toml" => server_config_ok("k8s server.toml", body),
                "monitor.toml" => monitor_config_ok("k8s monitor.toml", body),
                "policy.cedar" => policy_ok("k8s policy", body),
                _ => {}
            }
        }
    }
}

#[test]
fn the_example_configs_parse() {
    server_config_ok(
        "deploy/config/server.toml",
        &read("deploy/config/server.toml"),
    );
    monitor_config_ok(
        "deploy/config/monitor.toml",
        &read("deploy/config/monitor.toml"),
    );
    policy_ok(
        "deploy/policy/policy.cedar",
        &read("deploy/policy/policy.cedar"),
    );
    // cmd() is used so the binaries are found the same way as elsewhere.
    assert!(
        cmd("tlog-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    );
}

/// The keys `make-certs.sh` issues work with a gRPC client that is not
/// rustls: gRPC C-core (Python's grpcio, as behind the C++ and Ruby
/// clients) completes the TLS handshake and gets SERVING from the health
/// service. C-core cannot use an Ed25519 server key; this fails with one.
#[test]
fn make_certs_keys_work_with_grpc_c_core() {
    let certs = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new("sh")
        .arg(repo().join("deploy/compose/make-certs.sh"))
        .arg(certs.path())
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = tempfile::tempdir().expect("tmp");
    tlog_e2e::init(data.path(), "tls.e2e/log");
    let c = |n: &str| certs.path().join(n);
    let config = data.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            c("server.pem"),
            c("server.key")
        ),
    )
    .expect("config");
    let server =
        tlog_e2e::Server::start_with(data.path(), &["--config", config.to_str().expect("utf8")]);
    let port = server.addr.rsplit(':').next().expect("port").to_owned();
    let script = r#"
import sys, grpc
ca, target = sys.argv[1], sys.argv[2]
creds = grpc.ssl_channel_credentials(open(ca, "rb").read())
ch = grpc.secure_channel(target, creds)
check = ch.unary_unary("/grpc.health.v1.Health/Check")
answer = check(b"", timeout=20)
# HealthCheckResponse { status: SERVING (1) }
sys.exit(0 if answer == b"\x08\x01" else 3)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(c("ca.pem"))
        .arg(format!("localhost:{port}"))
        .output()
        .expect("python3 (scripts/setup.sh installs it and grpcio)");
    assert!(
        out.status.success(),
        "gRPC C-core could not talk to the server: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.stop());
}
