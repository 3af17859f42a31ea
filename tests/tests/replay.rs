//! The deploy recipes replayed on this machine with the users, file modes
//! and mounts they would have in a container engine or on a cluster.
//!
//! There is no container engine or cluster here, so each container is a
//! root of its own (the host's Debian `/usr`, read-only, as the image's
//! `bookworm-slim` base; the image's binaries in `/usr/local/bin`) inside
//! one private mount, network and PID namespace (`unshare`; when the
//! replay's shell ends, every process in it ends too), entered with
//! `chroot` and `setpriv` as the recipe's user, without capabilities. What
//! each container mounts, as whom it runs and what it runs are read from
//! the recipe files themselves (`compose.yaml` and the `Containerfile`;
//! `tlog.yaml`), so a change there is what gets replayed.
//!
//! Needs root (for the namespaces, mounts and `setpriv`). Where the tests
//! do not run as root they say so and pass, except under `CI`, where they
//! fail: the CI machine runs as root.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use serde::Deserialize as _;

use tlog_e2e::{repo, repo_file as read};

/// Whether this process may build namespaces; false (after saying why)
/// only outside CI.
fn can_replay(what: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false);
    if root {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what}: the replay needs root (namespaces, mounts, setpriv); CI runs as root"
    );
    eprintln!("{what}: skipped, not root (CI runs it)");
    false
}

/// Shell-quotes one word.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn words(argv: &[String]) -> String {
    argv.iter().map(|a| q(a)).collect::<Vec<_>>().join(" ")
}

/// What the Containerfile's runtime stage says: the directories it makes
/// (path, owner, mode), its user, entrypoint and command.
struct Image {
    dirs: Vec<(String, String, String)>,
    user: (u32, u32),
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn image() -> Image {
    let text = read("deploy/container/Containerfile");
    let runtime = text
        .rsplit_once("\nFROM ")
        .map(|(_, r)| r)
        .expect("a runtime stage");
    let joined = runtime.replace("\\\n", " ");
    let mut dirs = Vec::new();
    let runs = joined
        .lines()
        .filter_map(|l| l.strip_prefix("RUN "))
        .flat_map(|l| l.split("&&"));
    for cmd in runs {
        let w: Vec<&str> = cmd.split_whitespace().collect();
        let Some(i) = w.iter().position(|x| *x == "install") else {
            continue;
        };
        if w.get(i + 1) != Some(&"-d") {
            continue;
        }
        let (mut owner, mut group, mut mode) = ("0", "0", "0755");
        let mut j = i + 2;
        while j + 1 < w.len() && w[j].starts_with('-') {
            match w[j] {
                "-o" => owner = w[j + 1],
                "-g" => group = w[j + 1],
                "-m" => mode = w[j + 1],
                f => panic!("Containerfile: install flag {f} not understood"),
            }
            j += 2;
        }
        let id = |n: &str| if n == "tlog" { "10001" } else { n }.to_owned();
        for p in &w[j..] {
            dirs.push((
                p.to_string(),
                format!("{}:{}", id(owner), id(group)),
                mode.to_owned(),
            ));
        }
    }
    let line = |k: &str| {
        runtime
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("Containerfile: no {k}"))
            .trim()
            .to_owned()
    };
    let argv = |k: &str| -> Vec<String> {
        serde_json::from_str(&line(k)).unwrap_or_else(|e| panic!("Containerfile {k}: {e}"))
    };
    let user = line("USER ");
    let (u, g) = user.split_once(':').expect("USER uid:gid");
    Image {
        dirs,
        user: (u.parse().expect("uid"), g.parse().expect("gid")),
        entrypoint: argv("ENTRYPOINT "),
        cmd: argv("CMD "),
    }
}

fn yaml(text: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("YAML document"))
        .collect()
}

fn strings(v: &serde_yaml::Value) -> Option<Vec<String>> {
    v.as_sequence().map(|s| {
        s.iter()
            .map(|x| x.as_str().expect("a string").to_owned())
            .collect()
    })
}

/// Runs `script` as root inside a new mount and network namespace, with
/// `pod.sh` sourced; returns (success, stdout and stderr).
fn replay(work: &Path, script: &str) -> (bool, String) {
    let bin = tlog_e2e::bin_dir();
    let full = format!(
        "set -eu\nip link set lo up\nWORK={}\nBIN={}\n. {}\n{script}",
        q(&work.display().to_string()),
        q(&bin.display().to_string()),
        q(&repo().join("tests/deploy/pod.sh").display().to_string()),
    );
    std::fs::write(work.join("replay.sh"), &full).expect("write script");
    let out = Command::new("timeout")
        .args([
            "300",
            "unshare",
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--propagation",
            "private",
        ])
        .arg("sh")
        .arg(work.join("replay.sh"))
        .output()
        .expect("unshare");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    for f in ["server.log", "monitor.log"] {
        if let Ok(t) = std::fs::read_to_string(work.join(f)) {
            let _ = write!(
                text,
                "\n--- {f}:\n{}",
                t.lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    (out.status.success(), text)
}

fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    // Other users (the host user, the image's) pass through it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// One compose service: how its container is built and run.
struct Service {
    name: String,
    script: String,
    run: String,
}

fn compose_service(
    name: &str,
    svc: &serde_yaml::Value,
    img: &Image,
    compose_dir: &Path,
    work: &Path,
    hosts: &str,
) -> Service {
    let mut s = format!("root_new {} {hosts}\n", q(name));
    for (path, owner, mode) in &img.dirs {
        let _ = writeln!(
            s,
            "root_dir {} {} {} {}",
            q(name),
            q(path),
            q(owner),
            q(mode)
        );
    }
    for v in svc["volumes"].as_sequence().into_iter().flatten() {
        let v = v.as_str().expect("short volume syntax");
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dest, ro) = match parts.as_slice() {
            [s, d] => (*s, *d, "rw"),
            [s, d, "ro"] => (*s, *d, "ro"),
            _ => panic!("{name}: volume {v:?} not understood"),
        };
        let src = if src.starts_with('.') {
            compose_dir.join(src)
        } else {
            // A named volume: first mounted, it holds what the image has
            // at that path (owner and mode included).
            let dir = work.join("volumes").join(src);
            let _ = writeln!(
                s,
                "[ -d {d} ] || {{ mkdir -p {d}; chown --reference={r}{p} {d}; chmod --reference={r}{p} {d}; }}",
                d = q(&dir.display().to_string()),
                r = format!("\"$(root_of {})\"", q(name)),
                p = q(dest),
            );
            dir
        };
        let _ = writeln!(
            s,
            "root_mount {} {} {} {ro}",
            q(name),
            q(&src.display().to_string()),
            q(dest)
        );
    }
    let (uid, gid) = match svc["user"].as_str() {
        Some(u) => {
            let (a, b) = u.split_once(':').expect("user uid:gid");
            (
                a.parse::<u32>().expect("uid"),
                b.parse::<u32>().expect("gid"),
            )
        }
        None => img.user,
    };
    let entrypoint = strings(&svc["entrypoint"]);
    let command = strings(&svc["command"]);
    let argv: Vec<String> = match (entrypoint, command) {
        (Some(e), c) => e.into_iter().chain(c.unwrap_or_default()).collect(),
        (None, c) => img
            .entrypoint
            .iter()
            .cloned()
            .chain(c.unwrap_or_else(|| img.cmd.clone()))
            .collect(),
    };
    Service {
        name: name.to_owned(),
        script: s,
        run: format!("as {} {uid} {gid} {gid} {}", q(name), words(&argv)),
    }
}

/// `deploy/compose` as a new user would run it: `make-certs.sh` as the host
/// user, then `docker compose up`: setup as root, the server, monitor and
/// submitter as the image's user, each with its own mounts; the server
/// must pass its health check, the submitter's lifecycle must succeed
/// (signed production deploy included) and the monitor must raise the
/// digest-conflict alert the demo plants.
#[test]
fn the_compose_recipe_runs_as_its_users_and_raises_its_alert() {
    if !can_replay("compose replay") {
        return;
    }
    let work = scratch();
    let w = work.path();
    let compose_dir = w.join("compose");
    // The recipe's folder as a user's clone has it, with certs/ made by
    // the host user (uid 1000 here), keys 0600 for that user only.
    std::fs::create_dir(&compose_dir).expect("mkdir");
    for f in std::fs::read_dir(repo().join("deploy/compose")).expect("deploy/compose") {
        let f = f.expect("entry").path();
        if f.is_file() {
            std::fs::copy(&f, compose_dir.join(f.file_name().expect("name"))).expect("copy");
        }
    }
    let policy_dir = w.join("policy");
    std::fs::create_dir(&policy_dir).expect("mkdir");
    std::fs::copy(
        repo().join("deploy/policy/policy.cedar"),
        policy_dir.join("policy.cedar"),
    )
    .expect("copy policy");
    let text = std::fs::read_to_string(compose_dir.join("compose.yaml")).expect("compose.yaml");
    let docs = yaml(&text);
    let services = docs[0]["services"].as_mapping().expect("services");
    let img = image();
    let hosts = services
        .keys()
        .map(|k| k.as_str().expect("name"))
        .collect::<Vec<_>>()
        .join(" ");
    let svc = |n: &str| compose_service(n, &services[n], &img, &compose_dir, w, &hosts);
    let (setup, server, monitor, submitter) = (
        svc("setup"),
        svc("server"),
        svc("monitor"),
        svc("submitter"),
    );
    let health = strings(&services["server"]["healthcheck"]["test"]).expect("healthcheck");
    assert_eq!(health[0], "CMD", "healthcheck form");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "chown 1000:1000 {c}\nsetpriv --reuid=1000 --regid=1000 --clear-groups sh {c}/make-certs.sh >/dev/null",
        c = q(&compose_dir.display().to_string())
    );
    for svc in [&setup, &server, &monitor, &submitter] {
        let _ = writeln!(s, "# {}\n{}", svc.name, svc.script);
    }
    let _ = writeln!(s, "{}", setup.run);
    let _ = writeln!(s, "{} >\"$WORK/server.log\" 2>&1 &", server.run);
    let _ = writeln!(
        s,
        "until_ok 120 as server {uid} {gid} {gid} {}",
        words(&health[1..]),
        uid = img.user.0,
        gid = img.user.1
    );
    let _ = writeln!(
        s,
        "{} >\"$WORK/monitor.out\" 2>\"$WORK/monitor.log\" &",
        monitor.run
    );
    let _ = writeln!(s, "{}", submitter.run);
    let _ = writeln!(
        s,
        "until_ok 60 grep -q digest-conflict \"$WORK/monitor.out\"\n\
         echo ALERT: $(grep digest-conflict \"$WORK/monitor.out\" | head -1)\n\
"
    );
    let (ok, out) = replay(w, &s);
    assert!(ok, "the compose recipe failed:\n{out}");
    assert!(out.contains("setup: log "), "{out}");
    assert!(
        out.contains("ALERT:") && out.contains("digest-conflict"),
        "{out}"
    );
    // The server never ran as root: its data belongs to the image's user.
    let data = w.join("volumes/data/log.key");
    let meta = std::fs::metadata(&data).expect("log.key");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!((meta.uid(), meta.mode() & 0o777), (img.user.0, 0o600));
}

/// The files of a ConfigMap or Secret: `(kind, name)` to `(key, text)`.
type Objects<'a> = dyn Fn(&str, &str) -> Vec<(String, String)> + 'a;

/// A pod's volumes made real, as the kubelet makes them: ConfigMaps 0644
/// and Secrets at their `defaultMode`, group-owned by the pod's `fsGroup`;
/// claims as directories of group `fsGroup`, group-writable and setgid.
/// Returns the `root_mount` lines for `container`.
fn k8s_mounts(
    pod_name: &str,
    pod_id: &str,
    pod: &serde_yaml::Value,
    container: &serde_yaml::Value,
    objects: &Objects<'_>,
    work: &Path,
) -> String {
    use std::os::unix::fs::chown;
    let fs_group = pod["securityContext"]["fsGroup"].as_u64().map(|g| g as u32);
    let mut s = String::new();
    for m in container["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
    {
        let vname = m["name"].as_str().expect("mount name");
        let dest = m["mountPath"].as_str().expect("mountPath");
        let ro = if m["readOnly"].as_bool() == Some(true) {
            "ro"
        } else {
            "rw"
        };
        let vol = pod["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|v| v["name"].as_str() == Some(vname));
        let dir = work.join("k8s").join(pod_name).join(vname);
        let fill = |kind: &str, name: &str, mode: u32, items: &serde_yaml::Value| {
            std::fs::create_dir_all(&dir).expect("mkdir");
            let mut data = objects(kind, name);
            if let Some(items) = items.as_sequence() {
                data = items
                    .iter()
                    .map(|i| {
                        let key = i["key"].as_str().expect("item key");
                        let body = data
                            .iter()
                            .find(|(k, _)| k == key)
                            .unwrap_or_else(|| panic!("{kind} {name} has no {key}"))
                            .1
                            .clone();
                        (i["path"].as_str().expect("item path").to_owned(), body)
                    })
                    .collect();
            }
            for (file, body) in data {
                let p = dir.join(file);
                std::fs::write(&p, body).expect("write");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
                chown(&p, Some(0), fs_group).expect("chown");
            }
        };
        // `0440` is octal to Kubernetes (YAML 1.1); serde_yaml keeps it
        // as a string.
        let mode = |v: &serde_yaml::Value| match &v["defaultMode"] {
            serde_yaml::Value::Null => 0o644,
            serde_yaml::Value::String(t) => u32::from_str_radix(t.trim_start_matches("0o"), 8)
                .unwrap_or_else(|e| panic!("defaultMode {t}: {e}")),
            n => n.as_u64().expect("defaultMode") as u32,
        };
        let src = match vol {
            Some(v) if v["configMap"].is_mapping() => {
                let c = &v["configMap"];
                fill(
                    "ConfigMap",
                    c["name"].as_str().expect("name"),
                    mode(c),
                    &c["items"],
                );
                dir.clone()
            }
            Some(v) if v["secret"].is_mapping() => {
                let c = &v["secret"];
                fill(
                    "Secret",
                    c["secretName"].as_str().expect("name"),
                    mode(c),
                    &c["items"],
                );
                dir.clone()
            }
            // A claim (a persistentVolumeClaim or a volumeClaimTemplate):
            // an empty volume the pod's fsGroup may write, shared by the
            // pod's containers.
            _ => {
                let dir = work.join("k8s").join("claims").join(pod_id).join(vname);
                std::fs::create_dir_all(&dir).expect("mkdir");
                chown(&dir, Some(0), fs_group).expect("chown");
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2775))
                    .expect("chmod");
                dir
            }
        };
        let src = match m["subPath"].as_str() {
            Some(sub) => src.join(sub),
            None => src,
        };
        let _ = writeln!(
            s,
            "root_mount {} {} {} {ro}",
            q(pod_name),
            q(&src.display().to_string()),
            q(dest)
        );
    }
    s
}

/// The pod's user, group and supplementary groups (fsGroup), and its
/// container's argv (`command`, else the image's entrypoint; `args`, else
/// the image's command).
fn k8s_run(
    pod_name: &str,
    pod: &serde_yaml::Value,
    c: &serde_yaml::Value,
    img: &Image,
) -> (String, String) {
    let sc = &pod["securityContext"];
    let uid = sc["runAsUser"].as_u64().expect("runAsUser");
    let gid = sc["runAsGroup"].as_u64().expect("runAsGroup");
    let groups = sc["fsGroup"]
        .as_u64()
        .map_or("-".to_owned(), |g| g.to_string());
    let argv: Vec<String> = strings(&c["command"])
        .unwrap_or_else(|| img.entrypoint.clone())
        .into_iter()
        .chain(strings(&c["args"]).unwrap_or_else(|| img.cmd.clone()))
        .collect();
    let user = format!("{uid} {gid} {groups}");
    (format!("as {} {user} {}", q(pod_name), words(&argv)), user)
}

/// `deploy/k8s/tlog.yaml` as its header says to apply it: the log key from
/// `tlog-server init` run offline, a generic TLS secret with `ca.crt`, the
/// issuer's JWK set, a monitor token and the verifier key in place of the
/// placeholders. The server pod runs as 10001 with fsGroup 10001, Secrets
/// 0440, a read-only root; its startup, liveness and readiness probes must
/// pass; the monitor pod must come up, answer its HTTP probe and verify the
/// log.
#[test]
fn the_kubernetes_recipe_runs_with_its_security_context_and_secret_modes() {
    if !can_replay("kubernetes replay") {
        return;
    }
    let work = scratch();
    let w = work.path();
    let text = read("deploy/k8s/tlog.yaml");
    let docs = yaml(&text);
    let img = image();
    // What the header's commands put in place of the placeholders.
    let offline = w.join("offline");
    let vkey = tlog_e2e::init(&offline, "models.example.com/log");
    let p = |f: &str| w.join(f).display().to_string();
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    ok(tlog_e2e::run(
        "tlog-server",
        &[
            "token",
            "keygen",
            "--kid",
            "k8s-1",
            "--key-out",
            &p("issuer.key"),
            "--jwks-out",
            &p("issuer.jwks"),
        ],
    ));
    let token = ok(tlog_e2e::run(
        "tlog-server",
        &[
            "token",
            "mint",
            "--key",
            &p("issuer.key"),
            "--kid",
            "k8s-1",
            "--issuer",
            "https://ops.example.org",
            "--audience",
            "tlog",
            "--subject",
            "tlog-monitor",
            "--role",
            "monitor",
            "--ttl",
            "1h",
        ],
    ));
    let sh = |script: &str| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(w)
            .output()
            .expect("sh");
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=ca -keyout ca.key -out ca.pem 2>/dev/null && \
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=tlog-server \
        -keyout server-key.pem -out server.csr 2>/dev/null && \
        printf 'subjectAltName=DNS:tlog-server.tlog.svc\\nextendedKeyUsage=serverAuth\\n' >ext && \
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext -out server.pem 2>/dev/null",
    );
    let file = |f: &str| std::fs::read_to_string(w.join(f)).expect(f);
    let log_key = std::fs::read_to_string(offline.join("log.key")).expect("log.key");
    let filled: Vec<(&str, &str, String)> = vec![
        ("Secret", "tlog-log-key/log.key", log_key),
        ("Secret", "tlog-tls/tls.crt", file("server.pem")),
        ("Secret", "tlog-tls/tls.key", file("server-key.pem")),
        ("Secret", "tlog-tls/ca.crt", file("ca.pem")),
        ("Secret", "tlog-monitor-token/token", token),
        (
            "ConfigMap",
            "tlog-token-issuer/issuer.jwks",
            file("issuer.jwks"),
        ),
        ("ConfigMap", "tlog-verifier-key/verifier.key", vkey.clone()),
    ];
    let objects = |kind: &str, name: &str| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = docs
            .iter()
            .filter(|d| {
                d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
            })
            .flat_map(|d| {
                let data = if kind == "Secret" {
                    &d["stringData"]
                } else {
                    &d["data"]
                };
                data.as_mapping()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        (
                            k.as_str().expect("key").to_owned(),
                            v.as_str().expect("value").to_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for (k, path, body) in &filled {
            let (n, key) = path.split_once('/').expect("name/key");
            if *k == kind && n == name {
                out.retain(|(x, _)| x != key);
                out.push((key.to_owned(), body.clone()));
            }
        }
        for (key, body) in &out {
            assert!(
                !body.contains("replace-me") && body.trim() != r#"{"keys": []}"#,
                "{kind} {name}/{key} is a placeholder the recipe does not say how to fill"
            );
        }
        out
    };
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("a {kind}"))
    };
    let hosts = "tlog-server.tlog.svc";
    let mut s = String::new();
    let mut pods = Vec::new();
    // The server pod's init containers, in order, before its container.
    let sts_pod = &find("StatefulSet")["spec"]["template"]["spec"];
    let inits: Vec<&serde_yaml::Value> = sts_pod["initContainers"]
        .as_sequence()
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    for (i, c) in inits.iter().enumerate() {
        let name = format!("init{i}");
        let _ = writeln!(s, "# {name}\nroot_new {name} {hosts}");
        for (path, owner, mode) in &img.dirs {
            let _ = writeln!(s, "root_dir {name} {} {} {}", q(path), q(owner), q(mode));
        }
        s.push_str(&k8s_mounts(&name, "server", sts_pod, c, &objects, w));
        if c["securityContext"]["readOnlyRootFilesystem"].as_bool() == Some(true) {
            let _ = writeln!(s, "root_seal {name}");
        }
        let (run, _) = k8s_run(&name, sts_pod, c, &img);
        let _ = writeln!(s, "{run}\necho init container {i}: ok");
    }
    for (name, kind) in [("server", "StatefulSet"), ("monitor", "Deployment")] {
        let pod = &find(kind)["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let _ = writeln!(s, "# {name}\nroot_new {name} {hosts}");
        for (path, owner, mode) in &img.dirs {
            let _ = writeln!(s, "root_dir {name} {} {} {}", q(path), q(owner), q(mode));
        }
        s.push_str(&k8s_mounts(name, name, pod, c, &objects, w));
        if c["securityContext"]["readOnlyRootFilesystem"].as_bool() == Some(true) {
            let _ = writeln!(s, "root_seal {name}");
        }
        pods.push((name, pod, c, k8s_run(name, pod, c, &img)));
    }
    let (_, _, server, (run, user)) = &pods[0];
    let _ = writeln!(s, "{run} >\"$WORK/server.log\" 2>&1 &");
    for (i, probe) in ["startupProbe", "livenessProbe", "readinessProbe"]
        .iter()
        .enumerate()
    {
        let argv = strings(&server[probe]["exec"]["command"]).unwrap_or_else(|| panic!("{probe}"));
        let wait = if i == 0 { "until_ok 120 " } else { "" };
        let _ = writeln!(
            s,
            "{wait}as server {user} {}\necho {probe}: ok",
            words(&argv)
        );
    }
    let (_, _, monitor, (run, _)) = &pods[1];
    let _ = writeln!(s, "{run} >\"$WORK/monitor.out\" 2>\"$WORK/monitor.log\" &");
    let port = monitor["ports"][0]["containerPort"].as_u64().expect("port");
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = monitor[probe]["httpGet"]["path"]
            .as_str()
            .expect("httpGet path");
        let _ = writeln!(
            s,
            "until_ok 60 curl -fsS http://127.0.0.1:{port}{path}\necho {probe}: ok"
        );
    }
    let _ = writeln!(
        s,
        "until_ok 60 sh -c 'curl -fsS http://127.0.0.1:{port}/metrics | grep -q \"^tlog_monitor_last_success_seconds{{log=\\\"models\\\"}} [1-9]\"'\n\
         curl -fsS http://127.0.0.1:{port}/metrics | grep '^tlog_monitor_'"
    );
    let (ok, out) = replay(w, &s);
    assert!(ok, "the kubernetes recipe failed:\n{out}");
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert!(out.contains(&format!("{probe}: ok")), "{probe}: {out}");
    }
    assert!(
        out.contains("tlog_monitor_failed_rounds_total{log=\"models\"} 0"),
        "the monitor verified the log: {out}"
    );
}
