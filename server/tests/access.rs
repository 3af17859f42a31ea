//! Access control against a real server with mutual TLS and bearer tokens:
//! roles x RPCs x namespaces, token attacks, an untrusted client CA, the
//! access log, and a policy reload on SIGHUP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use tlog_proto::v1 as pb;
use tlog_server::access::tokens::{Claims, IssuerConfig, MintRequest, mint, now_secs};
use tlog_server::ops::config::{Config, TlsSection};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::common::{ORIGIN, event};

const AUD: &str = "tlog-test";
const OPS: &str = "https://ops.example";
const ES: &str = "https://es.example";

struct Pki {
    ca: String,
    server: (String, String),
    ci: (String, String),
    rogue: (String, String),
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).expect("ca");
    (cert.pem(), Issuer::new(p, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    dns: &[&str],
    uri: Option<&str>,
    server: bool,
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    if let Some(u) = uri {
        p.subject_alt_names
            .push(SanType::URI(u.try_into().expect("uri")));
    }
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    let cert = p.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let (ca_pem, issuer) = ca("tlog test CA");
    let (_, rogue_issuer) = ca("rogue CA");
    Pki {
        ca: ca_pem,
        server: leaf(&issuer, &["localhost"], None, true),
        ci: leaf(&issuer, &[], Some("spiffe://example.org/ci"), false),
        rogue: leaf(&rogue_issuer, &[], Some("spiffe://example.org/ci"), false),
    }
}

/// The release pipeline's attestation key.
fn release_pipeline() -> tlog_core::note::Signer {
    tlog_core::note::Signer::from_seed("release-pipeline", &[42; 32]).expect("key")
}

fn attest(e: &mut pb::ArtifactEvent, signer: &tlog_core::note::Signer, corrupt: bool) {
    let core = tlog_server::service::convert::event(e.clone()).expect("event");
    let mut a = core.attest(signer);
    if corrupt {
        a.signature[0] ^= 1;
    }
    e.attestations.push(pb::Attestation {
        scheme: a.scheme,
        key_id: a.key_id,
        signature: a.signature,
    });
}

struct Issuers {
    ops_pem: String,
    es_pem: String,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn issuers(dir: &Path) -> (Issuers, Vec<IssuerConfig>) {
    let (ops_pem, ops_jwks) = tlog_server::access::tokens::keygen("ops-1").expect("keygen");
    // An ES256 issuer with a P-256 key.
    use base64::Engine as _;
    let es = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
    let raw = es.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let es_jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
        "kid": "es-1", "alg": "ES256", "use": "sig"
    }]});
    let cfg = vec![
        IssuerConfig {
            issuer: OPS.into(),
            audience: AUD.into(),
            jwks_file: write(dir, "ops.jwks", &ops_jwks),
            max_lifetime: Duration::from_secs(3600),
            allowed_roles: ["registry", "release-manager", "auditor", "monitor"]
                .map(String::from)
                .to_vec(),
        },
        IssuerConfig {
            issuer: ES.into(),
            audience: AUD.into(),
            jwks_file: write(dir, "es.jwks", &es_jwks.to_string()),
            max_lifetime: Duration::from_secs(3600),
            allowed_roles: vec!["auditor".into()],
        },
    ];
    (
        Issuers {
            ops_pem,
            es_pem: es.serialize_pem(),
        },
        cfg,
    )
}

fn ops_token(i: &Issuers, sub: &str, roles: &[&str]) -> String {
    mint(
        i.ops_pem.as_bytes(),
        &MintRequest {
            issuer: OPS.into(),
            audience: AUD.into(),
            subject: sub.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ttl: Duration::from_secs(900),
            kid: "ops-1".into(),
        },
        now_secs(),
    )
    .expect("mint")
}

fn custom(key: &EncodingKey, alg: Algorithm, kid: &str, c: &Claims) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, c, key).expect("encode")
}

fn claims(iss: &str, roles: &[&str], iat: u64, exp: u64) -> Claims {
    Claims {
        sub: "mallory".into(),
        iss: iss.into(),
        aud: AUD.into(),
        exp,
        nbf: Some(iat),
        iat: Some(iat),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

#[derive(Clone, Default)]
struct Creds {
    token: Option<String>,
    justification: Option<String>,
}

impl tonic::service::Interceptor for Creds {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.token {
            let v = format!("Bearer {t}")
                .parse()
                .map_err(|_| tonic::Status::internal("token"))?;
            req.metadata_mut().insert("authorization", v);
        }
        if let Some(j) = &self.justification {
            let v = j
                .parse()
                .map_err(|_| tonic::Status::internal("justification"))?;
            req.metadata_mut().insert("x-tlog-justification", v);
        }
        Ok(req)
    }
}

type Client =
    pb::log_client::LogClient<tonic::service::interceptor::InterceptedService<Channel, Creds>>;

async fn connect(
    addr: std::net::SocketAddr,
    pki: &Pki,
    cert: Option<&(String, String)>,
    creds: Creds,
) -> Result<Client, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if let Some((c, k)) = cert {
        tls = tls.identity(Identity::from_pem(c, k));
    }
    let ch = Channel::from_shared(format!("https://{addr}"))
        .expect("url")
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(pb::log_client::LogClient::with_interceptor(ch, creds))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Submit(pb::Action, &'static str, &'static str),
    Checkpoint,
    Proofs,
    Entries,
    Query(&'static str),
    Watch,
}

async fn run(c: &mut Client, op: Op, n: &mut u32) -> Code {
    *n += 1;
    let r = match op {
        Op::Submit(action, name, env) => {
            let mut e = event("access", &format!("a{n}"));
            e.action = action as i32;
            e.environment = env.into();
            if let Some(a) = e.artifact.as_mut() {
                a.name = name.into();
            }
            c.append(pb::AppendRequest { event: Some(e) })
                .await
                .map(|_| ())
        }
        Op::Checkpoint => c
            .get_checkpoint(pb::GetCheckpointRequest { size: 0 })
            .await
            .map(|_| ()),
        Op::Proofs => c
            .get_consistency_proof(pb::GetConsistencyProofRequest { size1: 0, size2: 0 })
            .await
            .map(|_| ()),
        Op::Entries => c
            .get_entry_by_hash(pb::GetEntryByHashRequest {
                leaf_hash: vec![9; 32],
            })
            .await
            .map(|_| ()),
        Op::Query(name) => c
            .query_artifact(pb::QueryArtifactRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        Op::Watch => c
            .watch_checkpoints(pb::WatchCheckpointsRequest {})
            .await
            .map(|_| ()),
    };
    match r {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// What a cell expects: allowed (any code but the two refusals), or one of
/// the refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Allow,
    Deny,
    Unauth,
}

fn outcome(code: Code) -> Want {
    match code {
        Code::PermissionDenied => Want::Deny,
        Code::Unauthenticated => Want::Unauth,
        _ => Want::Allow,
    }
}

struct Env {
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    http_addr: std::net::SocketAddr,
    pki: Pki,
    issuers: Issuers,
    policy: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tlog_server::ServerError>>,
}

async fn start() -> Env {
    start_with(|_| {}).await
}

async fn start_with(tweak: impl FnOnce(&mut Config)) -> Env {
    let dir = tempfile::tempdir().expect("tmp");
    tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
    let pki = pki();
    let (issuers, issuer_cfg) = issuers(dir.path());
    let policy_src = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../deploy/policy/policy.cedar");
    let policy = dir.path().join("policy.cedar");
    std::fs::copy(&policy_src, &policy).expect("copy policy");
    let config = Config {
        data_dir: dir.path().to_owned(),
        tls: Some(TlsSection {
            cert_file: write(dir.path(), "server.pem", &pki.server.0),
            key_file: write(dir.path(), "server.key", &pki.server.1),
            client_ca_file: Some(write(dir.path(), "ca.pem", &pki.ca)),
            client_auth_optional: true,
        }),
        auth: tlog_server::ops::config::AuthSection {
            policy_file: Some(policy.clone()),
            token_issuers: issuer_cfg,
            cert_roles: HashMap::from([(
                "spiffe://example.org/ci".to_owned(),
                vec!["ci".to_owned()],
            )]),
            access_log: Some(dir.path().join("access.log")),
            trusted_signers: vec![release_pipeline().verifier().to_vkey()],
            ..Default::default()
        },
        ..Config::default()
    };
    let mut config = config;
    tweak(&mut config);
    // The tiles listener too, plain HTTP, under the same policy.
    let sp = crate::common::spawn(config, "").await;
    let (addr, http_addr, stop, task) = (sp.addr, sp.http_addr, sp.stop, sp.task);
    Env {
        dir,
        addr,
        http_addr,
        pki,
        issuers,
        policy,
        stop: Some(stop),
        task,
    }
}

async fn client_for(env: &Env, who: &str, justification: Option<&str>) -> Client {
    let j = justification.map(String::from);
    let tok = |roles: &[&str]| Creds {
        token: Some(ops_token(&env.issuers, who, roles)),
        justification: j.clone(),
    };
    let (cert, creds) = match who {
        "registry" => (None, tok(&["registry"])),
        "release" => (None, tok(&["release-manager"])),
        "auditor" => (None, tok(&["auditor"])),
        "monitor" => (None, tok(&["monitor"])),
        "ci" => (
            Some(&env.pki.ci),
            Creds {
                token: None,
                justification: j.clone(),
            },
        ),
        "anonymous" => (
            None,
            Creds {
                token: None,
                justification: j.clone(),
            },
        ),
        other => panic!("unknown principal {other}"),
    };
    for _ in 0..100 {
        if let Ok(c) = connect(env.addr, &env.pki, cert, creds.clone()).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot connect as {who}");
}

async fn access_log(env: &Env, min_lines: usize) -> Vec<serde_json::Value> {
    for _ in 0..250 {
        let text = std::fs::read_to_string(env.dir.path().join("access.log")).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        if lines.len() >= min_lines {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("access log has fewer than {min_lines} records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_rpcs_and_namespaces() {
    use Want::*;
    use pb::Action as A;
    let env = start().await;
    let ops = [
        Op::Submit(A::Register, "team-a/fraud", ""),
        Op::Submit(A::Register, "team-b/churn", ""),
        Op::Submit(A::Upload, "team-a/fraud", ""),
        Op::Submit(A::Promote, "team-a/fraud", "staging"),
        Op::Submit(A::Promote, "team-a/fraud", "production"),
        Op::Submit(A::Deploy, "team-a/fraud", "production"),
        Op::Checkpoint,
        Op::Proofs,
        Op::Entries,
        Op::Query("team-a/fraud"),
        Op::Query("team-b/churn"),
        Op::Watch,
    ];
    // One row per principal, one column per op above.
    let table: [(&str, Option<&str>, [Want; 12]); 7] = [
        (
            "registry",
            None,
            [
                Allow, Deny, Allow, Deny, Deny, Deny, Allow, Allow, Deny, Allow, Deny, Deny,
            ],
        ),
        (
            "ci",
            None,
            [
                Deny, Deny, Allow, Allow, Deny, Deny, Allow, Allow, Deny, Deny, Deny, Deny,
            ],
        ),
        (
            // Deploying to production also needs the release pipeline's
            // signature (see attested_deploys): unsigned, it is denied.
            "release",
            None,
            [
                Deny, Deny, Deny, Allow, Allow, Deny, Allow, Allow, Deny, Deny, Deny, Deny,
            ],
        ),
        (
            "auditor",
            Some("INC-42"),
            [
                Deny, Deny, Deny, Deny, Deny, Deny, Allow, Allow, Allow, Allow, Allow, Allow,
            ],
        ),
        (
            "auditor",
            None,
            [
                Deny, Deny, Deny, Deny, Deny, Deny, Allow, Allow, Allow, Deny, Deny, Allow,
            ],
        ),
        (
            "monitor",
            None,
            [
                Deny, Deny, Deny, Deny, Deny, Deny, Allow, Allow, Allow, Allow, Allow, Allow,
            ],
        ),
        (
            "anonymous",
            None,
            [
                Unauth, Unauth, Unauth, Unauth, Unauth, Unauth, Allow, Allow, Unauth, Unauth,
                Unauth, Unauth,
            ],
        ),
    ];
    let mut n = 0;
    let mut calls = 0;
    let mut failures = Vec::new();
    for (who, justification, wants) in table {
        let mut c = client_for(&env, who, justification).await;
        for (op, want) in ops.iter().zip(wants) {
            let code = run(&mut c, *op, &mut n).await;
            calls += 1;
            if outcome(code) != want {
                failures.push(format!(
                    "{who} (justification {justification:?}) {op:?}: want {want:?}, got {code:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // A scoped principal cannot tell absent from forbidden: an artifact of
    // team-b that exists (release cannot see it either way) and one that
    // does not give the same answer.
    let mut reg = client_for(&env, "registry", None).await;
    let a = reg
        .query_artifact(pb::QueryArtifactRequest {
            name: "team-b/churn".into(),
            ..Default::default()
        })
        .await;
    let b = reg
        .query_artifact(pb::QueryArtifactRequest {
            name: "team-b/never-existed".into(),
            ..Default::default()
        })
        .await;
    let (a, b) = (a.expect_err("denied"), b.expect_err("denied"));
    assert_eq!(
        (a.code(), b.code()),
        (Code::PermissionDenied, Code::PermissionDenied)
    );
    assert_eq!(
        a.message().replace("churn", "X"),
        b.message().replace("never-existed", "X")
    );
    calls += 2;

    // Every decision is in the access log with its fields.
    let log = access_log(&env, calls).await;
    let auditor_query = log
        .iter()
        .find(|r| {
            r["method"] == "QueryArtifact"
                && r["justification"] == "INC-42"
                && r["decision"] == "allow"
        })
        .expect("the justified query is recorded");
    assert_eq!(auditor_query["principal"], "auditor");
    assert_eq!(auditor_query["auth_method"], "bearer");
    assert_eq!(auditor_query["issuer"], OPS);
    assert_eq!(auditor_query["status"], "Ok");
    assert_eq!(
        auditor_query["policies"][0],
        "auditor-query-with-justification"
    );
    assert!(
        auditor_query["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
    );
    let ci_denied = log
        .iter()
        .find(|r| r["principal"] == "spiffe://example.org/ci" && r["decision"] == "deny")
        .expect("a denied mTLS call is recorded");
    assert_eq!(ci_denied["auth_method"], "mtls");
    assert_eq!(ci_denied["issuer"], "example.org");
    assert_eq!(ci_denied["status"], "PermissionDenied");
    assert!(
        ci_denied["reason"]
            .as_str()
            .is_some_and(|r| r.contains("may not"))
    );
    for r in &log {
        for f in [
            "time",
            "principal",
            "auth_method",
            "peer",
            "method",
            "actions",
            "resources",
            "decision",
            "policies",
            "justification",
            "status",
        ] {
            assert!(r.get(f).is_some(), "record lacks {f}: {r}");
        }
    }

    // Submissions record the authenticated identity in the leaf.
    let mut m = client_for(&env, "monitor", None).await;
    let mut entries = m
        .get_entries(pb::GetEntriesRequest { start: 0, end: 1 })
        .await
        .expect("entries")
        .into_inner();
    let e = entries
        .message()
        .await
        .expect("page")
        .expect("some")
        .entries
        .remove(0);
    let leaf = tlog_core::leaf::Leaf::decode(&e.leaf).expect("leaf");
    assert_eq!(leaf.submitter.principal, "registry");
    assert_eq!(leaf.submitter.auth_method, "bearer");

    drop(entries);
    stop(env).await;
}

async fn stop(mut env: Env) {
    if let Some(s) = env.stop.take() {
        let _ = s.send(());
    }
    env.task.await.expect("join").expect("clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_certificate_attacks_are_refused_and_recorded() {
    let env = start().await;
    let now = now_secs();
    let ops_key = EncodingKey::from_ed_pem(env.issuers.ops_pem.as_bytes()).expect("key");
    let es_key = EncodingKey::from_ec_pem(env.issuers.es_pem.as_bytes()).expect("key");
    let (other_pem, _) = tlog_server::access::tokens::keygen("ops-1").expect("keygen");
    let other_key = EncodingKey::from_ed_pem(other_pem.as_bytes()).expect("key");
    let valid = ops_token(&env.issuers, "auditor", &["auditor"]);
    let edited = {
        use base64::Engine as _;
        let parts: Vec<&str> = valid.split('.').collect();
        let mut c = claims(OPS, &["monitor"], now, now + 600);
        c.sub = "auditor".into();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&c).expect("json"));
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let none = {
        use base64::Engine as _;
        let e = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.",
            e(serde_json::json!({"alg": "none", "kid": "ops-1"})),
            e(serde_json::to_value(claims(OPS, &["auditor"], now, now + 600)).expect("json"))
        )
    };
    let attacks: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            custom(
                &ops_key,
                Algorithm::EdDSA,
                "ops-1",
                &claims(OPS, &["auditor"], now - 1000, now - 500),
            ),
            "Expired",
        ),
        (
            "not yet valid",
            {
                let mut c = claims(OPS, &["auditor"], now, now + 900);
                c.nbf = Some(now + 600);
                custom(&ops_key, Algorithm::EdDSA, "ops-1", &c)
            },
            "Immature",
        ),
        (
            "wrong audience",
            {
                let mut c = claims(OPS, &["auditor"], now, now + 600);
                c.aud = "someone-else".into();
                custom(&ops_key, Algorithm::EdDSA, "ops-1", &c)
            },
            "Audience",
        ),
        (
            "wrong issuer",
            custom(
                &ops_key,
                Algorithm::EdDSA,
                "ops-1",
                &claims("https://evil.example", &["auditor"], now, now + 600),
            ),
            "Issuer",
        ),
        (
            "unknown key",
            custom(
                &other_key,
                Algorithm::EdDSA,
                "ops-9",
                &claims(OPS, &["auditor"], now, now + 600),
            ),
            "unknown key",
        ),
        (
            "signed by another key under a known kid",
            custom(
                &other_key,
                Algorithm::EdDSA,
                "ops-1",
                &claims(OPS, &["auditor"], now, now + 600),
            ),
            "Signature",
        ),
        ("alg none", none, "malformed"),
        (
            "algorithm confusion",
            custom(
                &es_key,
                Algorithm::ES256,
                "ops-1",
                &claims(OPS, &["auditor"], now, now + 600),
            ),
            "does not match",
        ),
        ("payload edited after signing", edited, "Signature"),
        (
            "role the issuer may not grant",
            custom(
                &es_key,
                Algorithm::ES256,
                "es-1",
                &claims(ES, &["monitor"], now, now + 600),
            ),
            "may not grant",
        ),
        (
            "lifetime beyond the maximum",
            custom(
                &ops_key,
                Algorithm::EdDSA,
                "ops-1",
                &claims(OPS, &["auditor"], now, now + 7200),
            ),
            "lifetime",
        ),
        (
            "not a bearer header",
            "Basic Zm9vOmJhcg==".into(),
            "malformed",
        ),
    ];
    for (what, token, reason) in &attacks {
        let creds = Creds {
            token: Some(token.clone()),
            justification: None,
        };
        let mut c = connect(env.addr, &env.pki, None, creds)
            .await
            .expect("connect");
        let err = c
            .get_checkpoint(pb::GetCheckpointRequest { size: 0 })
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: {err:?}");
        let _ = reason;
    }
    // A valid ES256 token works.
    let es_ok = custom(
        &es_key,
        Algorithm::ES256,
        "es-1",
        &claims(ES, &["auditor"], now, now + 600),
    );
    let mut c = connect(
        env.addr,
        &env.pki,
        None,
        Creds {
            token: Some(es_ok),
            justification: None,
        },
    )
    .await
    .expect("connect");
    c.get_entry_by_hash(pb::GetEntryByHashRequest {
        leaf_hash: vec![1; 32],
    })
    .await
    .expect_err("not found, but allowed");

    // A client certificate from a CA the server does not trust fails the
    // handshake: no RPC gets through.
    let rogue = connect(env.addr, &env.pki, Some(&env.pki.rogue), Creds::default()).await;
    let refused = match rogue {
        Err(_) => true,
        Ok(mut c) => c
            .get_checkpoint(pb::GetCheckpointRequest { size: 0 })
            .await
            .is_err(),
    };
    assert!(
        refused,
        "a certificate from an untrusted CA must be refused"
    );

    // No credentials where the policy grants nothing anonymous.
    let mut anon = client_for(&env, "anonymous", None).await;
    let err = anon
        .append(pb::AppendRequest {
            event: Some(event("anon", "x")),
        })
        .await
        .expect_err("anonymous submit");
    assert_eq!(err.code(), Code::Unauthenticated);

    // Each refusal is recorded with the reason.
    let log = access_log(&env, attacks.len() + 2).await;
    let refused: Vec<_> = log
        .iter()
        .filter(|r| r["auth_method"] == "failed" && r["method"] != "tls-handshake")
        .collect();
    assert_eq!(refused.len(), attacks.len(), "{log:#?}");
    // The certificate from the untrusted CA never reached an RPC: its
    // failed handshake is recorded too, with the peer and why.
    let handshakes: Vec<_> = log
        .iter()
        .filter(|r| r["method"] == "tls-handshake")
        .collect();
    assert!(
        !handshakes.is_empty(),
        "the failed handshake is not recorded: {log:#?}"
    );
    for h in &handshakes {
        assert_eq!(h["decision"], "deny");
        assert!(
            h["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{h}"
        );
        assert!(
            h["reason"]
                .as_str()
                .is_some_and(|r| r.contains("certificate")),
            "{h}"
        );
    }
    for ((what, _, reason), r) in attacks.iter().zip(&refused) {
        assert_eq!(r["status"], "Unauthenticated", "{what}");
        assert_eq!(r["decision"], "deny");
        let text = r["reason"].as_str().unwrap_or_default();
        assert!(
            text.contains(reason),
            "{what}: reason {text:?} lacks {reason:?}"
        );
    }
    stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reload_on_sighup_keeps_the_old_policy_when_the_new_one_is_bad() {
    let env = start().await;
    let mut reg = client_for(&env, "registry", None).await;
    let mut n = 0;
    assert_eq!(
        outcome(run(&mut reg, Op::Entries, &mut n).await),
        Want::Deny
    );

    let hup = || {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    };
    // A valid change takes effect without a restart.
    let mut text = std::fs::read_to_string(&env.policy).expect("read");
    text.push_str(
        "\n@id(\"registry-read-entries\")\npermit (principal in Tlog::Role::\"registry\", \
         action == Tlog::Action::\"read-entries\", resource is Tlog::Log);\n",
    );
    std::fs::write(&env.policy, &text).expect("write");
    hup();
    let mut allowed = false;
    for _ in 0..250 {
        if outcome(run(&mut reg, Op::Entries, &mut n).await) == Want::Allow {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(allowed, "the reloaded policy did not take effect");

    // An invalid policy is refused; the one in force keeps working.
    std::fs::write(
        &env.policy,
        "permit(principal, action == Tlog::Action::\"nope\", resource);",
    )
    .expect("write");
    hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        outcome(run(&mut reg, Op::Entries, &mut n).await),
        Want::Allow
    );
    assert_eq!(
        outcome(
            run(
                &mut reg,
                Op::Submit(pb::Action::Deploy, "team-a/x", "production"),
                &mut n
            )
            .await
        ),
        Want::Deny
    );
    stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attested_deploys() {
    let env = start().await;
    let mut rel = client_for(&env, "release", None).await;
    let deploy = |id: &str| {
        let mut e = event("release", id);
        e.action = pb::Action::Deploy as i32;
        e.environment = "production".into();
        e
    };
    // Unsigned: the policy forbids it.
    let err = rel
        .append(pb::AppendRequest {
            event: Some(deploy("d1")),
        })
        .await
        .expect_err("unsigned");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // The refusal names the forbid policy that decided it.
    assert!(
        err.message()
            .contains("forbidden by policy production-deploys-must-be-signed"),
        "{err:?}"
    );
    // ... and what would lift it (the policy's @hint).
    assert!(err.message().contains("tlog submit --sign-key"), "{err:?}");

    // Signed by the release pipeline: allowed, and the leaf says so.
    let mut e = deploy("d2");
    attest(&mut e, &release_pipeline(), false);
    let r = rel
        .append(pb::AppendRequest { event: Some(e) })
        .await
        .expect("signed deploy")
        .into_inner();
    let leaf = tlog_core::leaf::Leaf::decode(&r.leaf).expect("leaf");
    assert_eq!(leaf.verified_signers, vec!["release-pipeline".to_owned()]);
    assert_eq!(
        leaf.event.attestations.len(),
        1,
        "the attestation itself is kept"
    );

    // A trusted signer's signature that does not verify refuses the event.
    let mut e = deploy("d3");
    attest(&mut e, &release_pipeline(), true);
    let err = rel
        .append(pb::AppendRequest { event: Some(e) })
        .await
        .expect_err("bad signature");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("event.attestations[0].signature"),
        "{}",
        err.message()
    );

    // A signer the server does not trust counts for nothing.
    let mut e = deploy("d4");
    let stranger = tlog_core::note::Signer::from_seed("release-pipeline-2", &[7; 32]).expect("key");
    attest(&mut e, &stranger, false);
    let err = rel
        .append(pb::AppendRequest { event: Some(e) })
        .await
        .expect_err("unknown signer");
    assert_eq!(err.code(), Code::PermissionDenied);

    // Signed, but by a key with the trusted name and another key: refused.
    let mut e = deploy("d5");
    let impostor = tlog_core::note::Signer::from_seed("release-pipeline", &[8; 32]).expect("key");
    attest(&mut e, &impostor, false);
    let err = rel
        .append(pb::AppendRequest { event: Some(e) })
        .await
        .expect_err("impostor");
    assert_eq!(err.code(), Code::InvalidArgument);
    stop(env).await;
}

/// The ledger is not writable by strangers: 300 calls with a forged token
/// and an 8 KB justification are refused, rate-limited per peer, kept in
/// full in the access log file, and reach the log only as a few bounded
/// summary leaves (counts by peer and reason), not 300 leaves of
/// attacker-chosen text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_the_ledger_only_as_bounded_summaries() {
    use tlog_core::leaf::{AnyLeaf, decode_any};
    let env = start_with(|c| {
        c.auth.ledger_audit = true;
        c.auth.ledger_flush = Duration::from_millis(20);
        c.auth.ledger_refusal_summary = Duration::from_secs(1);
    })
    .await;
    let mut auditor = client_for(&env, "auditor", None).await;
    let size_of = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.get_checkpoint(pb::GetCheckpointRequest { size: 0 })
                .await
                .expect("checkpoint")
                .into_inner()
                .checkpoint
                .expect("some")
                .size
        }
    };
    // Let the auditor's own records settle first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = size_of(&mut auditor).await;
    let forged = format!("{}x", ops_token(&env.issuers, "mallory", &["admin"]));
    let big = "J".repeat(8 * 1024);
    let mut codes = std::collections::BTreeMap::new();
    let mut c = connect(
        env.addr,
        &env.pki,
        None,
        Creds {
            token: Some(forged),
            justification: Some(big.clone()),
        },
    )
    .await
    .expect("connect");
    for _ in 0..300 {
        let code = c
            .get_checkpoint(pb::GetCheckpointRequest { size: 0 })
            .await
            .expect_err("forged token")
            .code();
        *codes.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    // Past the per-peer burst, refusals are rate-limited.
    assert!(
        codes.get("ResourceExhausted").copied().unwrap_or(0) > 200,
        "{codes:?}"
    );
    assert!(
        codes.get("Unauthenticated").copied().unwrap_or(0) >= 20,
        "{codes:?}"
    );
    // All 300 are in the file, in full (the file also holds the other
    // requests' records: wait for the forged ones themselves).
    let forged = |log: &[serde_json::Value]| {
        log.iter()
            .filter(|r| r["justification"].as_str().is_some_and(|j| j == big))
            .count()
    };
    let mut log = access_log(&env, 300).await;
    for _ in 0..250 {
        if forged(&log) >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        log = access_log(&env, 300).await;
    }
    let forged_lines: Vec<_> = log
        .iter()
        .filter(|r| r["justification"].as_str().is_some_and(|j| j == big))
        .collect();
    assert_eq!(forged_lines.len(), 300);
    assert!(forged_lines.iter().all(|r| {
        r["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1"))
    }));
    // The ledger: a summary or two after the interval, nothing more.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = size_of(&mut auditor).await;
    let mut s = auditor
        .get_entries(pb::GetEntriesRequest {
            start: before,
            end: after,
        })
        .await
        .expect("entries")
        .into_inner();
    let (mut summaries, mut bytes, mut leaves) = (Vec::new(), 0usize, 0usize);
    while let Some(page) = s.message().await.expect("page") {
        for e in page.entries {
            leaves += 1;
            bytes += e.leaf.len();
            if let Ok(AnyLeaf::Access(a)) = decode_any(&e.leaf) {
                assert!(
                    !a.justification.contains("JJJJ"),
                    "no attacker text in the ledger"
                );
                if a.auth_method == "summary" {
                    summaries.push(a);
                }
            }
        }
    }
    assert!(leaves < 20, "{leaves} leaves for 300 refusals");
    assert!(bytes < 16 * 1024, "{bytes} bytes in the ledger");
    let counted: u64 = summaries
        .iter()
        .map(|a| {
            a.resources[0]
                .split(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("count")
        })
        .sum();
    assert_eq!(counted, 300, "{summaries:?}");
    assert!(summaries.iter().any(|a| a.reason == "token-refused"));
    assert!(summaries.iter().any(|a| a.reason == "rate-limited"));
    stop(env).await;
}

/// Idempotency keys are bound to submitters: a source bound in
/// `auth.sources` takes events only from its principals (anyone else is
/// refused before anything is looked up); any other source's keys are
/// scoped by the submitter, so nobody can claim another's next event id
/// first, nor learn through `ALREADY_EXISTS` which ids exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_cannot_be_claimed_or_probed_across_submitters() {
    let env = start_with(|c| {
        c.auth.sources = HashMap::from([("registry-a".to_owned(), vec!["registry".to_owned()])]);
    })
    .await;
    let as_registry = |sub: &'static str| {
        let creds = Creds {
            token: Some(ops_token(&env.issuers, sub, &["registry"])),
            justification: None,
        };
        connect(env.addr, &env.pki, None, creds)
    };
    let mut real = as_registry("registry").await.expect("connect");
    let mut other = as_registry("registry-b").await.expect("connect");
    let ev = |source: &str, id: &str, actor: &str| {
        let mut e = event(source, id);
        e.actor = actor.into();
        pb::AppendRequest { event: Some(e) }
    };

    // The bound source: only its principal may submit for it.
    let err = other
        .append(ev("registry-a", "next-1", "mallory"))
        .await
        .expect_err("another principal may not submit for a bound source");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(!err.message().contains("index"), "{err}");
    let first = real
        .append(ev("registry-a", "next-1", "alice"))
        .await
        .expect("the real source's event is not blocked by the claim")
        .into_inner();
    assert!(!first.duplicate);
    // Probing the id from outside reveals nothing: the same refusal.
    let err = other
        .append(ev("registry-a", "next-1", "alice"))
        .await
        .expect_err("probe");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // An unbound source: a claim under another submitter's scope does not
    // block, and a conflicting id in one's own scope names only one's own
    // entry.
    let claim = other
        .append(ev("shared", "id-7", "mallory"))
        .await
        .expect("claim")
        .into_inner();
    let mine = real
        .append(ev("shared", "id-7", "alice"))
        .await
        .expect("the claim in another scope does not block")
        .into_inner();
    assert!(!mine.duplicate);
    assert_ne!(mine.index, claim.index);
    let again = real
        .append(ev("shared", "id-7", "alice"))
        .await
        .expect("retry")
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.index, mine.index);
    // The same content from the other submitter is its own event, not an
    // answer that shows it the first one.
    let theirs = other
        .append(ev("shared", "id-7", "alice"))
        .await
        .expect_err("conflicts only with its own claim");
    assert_eq!(theirs.code(), Code::AlreadyExists);
    assert!(
        theirs.message().contains(&format!("index {}", claim.index)),
        "names its own entry only: {theirs}"
    );
    stop(env).await;
}

/// Tiles over HTTP under the example policy: checkpoints and hash tiles
/// are public, entry bundles need a role that may read entries; a token
/// in the `authorization` header authenticates as on gRPC, a bad one is
/// refused; every read, allowed or not, is in the access log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_over_http_follow_the_policy_and_are_recorded() {
    let env = start().await;
    let mut reg = client_for(&env, "registry", None).await;
    reg.append(pb::AppendRequest {
        event: Some(event("registry", "t1")),
    })
    .await
    .expect("append");
    let http = env.http_addr;
    let auditor = format!(
        "Bearer {}",
        ops_token(&env.issuers, "auditor-1", &["auditor"])
    );
    let registry = format!(
        "Bearer {}",
        ops_token(&env.issuers, "registry-1", &["registry"])
    );
    let got = tokio::task::spawn_blocking(move || {
        let get = |path: &str, auth: Option<&str>| {
            let h: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
            crate::tiles::http(http, "GET", path, &h)
        };
        (
            get("/checkpoint", None).0,
            get("/tile/0/000.p/1", None).0,
            get("/tile/entries/000.p/1", None),
            get("/tile/entries/000.p/1", Some(&auditor)).0,
            get("/tile/entries/000.p/1", Some(&registry)).0,
            get("/checkpoint", Some("Bearer not-a-token")).0,
        )
    })
    .await
    .expect("requests");
    assert_eq!(got.0, 200, "checkpoints are public");
    assert_eq!(got.1, 200, "hash tiles are proofs: public");
    let (status, headers, body) = got.2;
    assert_eq!(status, 401, "entries need credentials");
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert!(
        String::from_utf8_lossy(&body).contains("read-entries"),
        "says what was refused"
    );
    assert_eq!(got.3, 200, "the auditor reads entries");
    assert_eq!(got.4, 403, "the registry role may not read the whole log");
    assert_eq!(got.5, 401, "a bad token is refused, not ignored");
    // Every one of them is in the access log, named as a tiles read.
    let log = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let text =
                std::fs::read_to_string(env.dir.path().join("access.log")).unwrap_or_default();
            if text.lines().filter(|l| l.contains("\"http:")).count() >= 6 {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("six tiles reads recorded");
    let reads: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["method"].as_str().is_some_and(|m| m.starts_with("http:")))
        .collect();
    assert!(reads.iter().any(|r| r["method"] == "http:entries"
        && r["principal"] == "auditor-1"
        && r["decision"] == "allow"
        && r["resources"].to_string().contains("tile/entries/000.p/1")));
    assert!(
        reads
            .iter()
            .any(|r| r["method"] == "http:entries" && r["decision"] == "deny")
    );
    assert!(
        reads
            .iter()
            .any(|r| r["method"] == "http:tile" && r["decision"] == "allow")
    );
    assert!(reads.iter().any(|r| r["method"] == "http:checkpoint"));
}
