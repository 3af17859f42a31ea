//! `tlog-bench run`: a load generator for a running log.
//!
//! N concurrent clients append for a fixed time (single events or batches),
//! each answer verified as a client would (checkpoint signature and
//! inclusion proof); then N clients fetch inclusion proofs for random
//! indexes. Reports appends/s, latency percentiles and proofs/s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tlog_core::Hash;
use tlog_core::merkle::verify::{InclusionVerifier, parse_proof};
use tlog_core::note::{Verifier, Verifiers};
use tlog_proto::v1 as pb;
use tlog_proto::v1::log_client::LogClient;
use tonic::transport::Channel;

/// The arguments of `tlog-bench run`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Server address, e.g. http://127.0.0.1:7400.
    #[arg(long, default_value = "http://127.0.0.1:7400")]
    addr: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to append, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Events per append call (1: Append; more: AppendBatch).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Target total appends (events) per second; 0 for as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to fetch inclusion proofs afterwards; 0 to skip.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    proof_duration: Duration,
    /// How long to fetch consistency proofs (random old size to the
    /// latest) afterwards; 0 to skip.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    consistency_duration: Duration,
    /// Stream this many entries (GetEntries from a random start) and report
    /// entries/s; 0 to skip.
    #[arg(long, default_value_t = 0)]
    stream_entries: u64,
    /// Run this many artifact queries (one page each, by the clients in
    /// turn) and report their latency; 0 to skip.
    #[arg(long, default_value_t = 0)]
    queries: u64,
    /// HTTP/2 connections shared by the clients.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Versions per client's artifact: 0 makes every event upload a new
    /// version; N uploads N versions, then records downloads of them, as a
    /// registry's traffic looks (a monitor's memory follows the versions).
    #[arg(long, default_value_t = 0)]
    versions: u64,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// CA certificate (PEM) to verify the server's TLS certificate; use
    /// an https:// address with it.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Name to verify the server's certificate against.
    #[arg(long, default_value = "localhost")]
    tls_domain: String,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, requires = "key_file")]
    cert_file: Option<std::path::PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long, requires = "cert_file")]
    key_file: Option<std::path::PathBuf>,
    /// Bearer token sent with every call.
    #[arg(long, env = "TLOG_TOKEN")]
    token: Option<String>,
    /// Instead of the load above, send the costliest messages a client can
    /// build to decode (batches of empty events, up to the message limit
    /// and just under the decode budget) from --clients clients for
    /// --duration, and count the answers. Watch the server's memory
    /// meanwhile (scripts/bench-decode.sh does).
    #[arg(long)]
    worst_messages: bool,
}

/// `AppendBatchRequest` bytes of `n` empty events (2 bytes each on the
/// wire, a few hundred bytes each once decoded).
fn empty_events(n: usize) -> Vec<u8> {
    std::iter::repeat_n([0x0au8, 0x00], n).flatten().collect()
}

/// The worst-message load: each client sends, in turn, the largest batch
/// of empty events the message limit allows, and one whose estimated
/// decoded size is just under the default decode budget.
async fn worst_messages(
    a: &BenchArgs,
    channels: Vec<Channel>,
    bearer: Bearer,
) -> anyhow::Result<()> {
    let kinds = [
        ("16 MiB of empty events", empty_events(8 << 20)),
        ("65,000 empty events (62 MiB decoded)", empty_events(65_000)),
        ("2 MiB of empty events", empty_events(1 << 20)),
    ];
    let kinds = Arc::new(kinds);
    let end = Instant::now() + a.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..a.clients {
        let ch = channels[c % channels.len()].clone();
        let (kinds, bearer) = (kinds.clone(), bearer.clone());
        tasks.spawn(async move {
            let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
            let mut i = c;
            while Instant::now() < end {
                let (what, body) = &kinds[i % kinds.len()];
                i += 1;
                let mut grpc = tonic::client::Grpc::new(ch.clone());
                if grpc.ready().await.is_err() {
                    *counts.entry("not ready".into()).or_default() += 1;
                    continue;
                }
                let mut req = tonic::Request::new(body.clone());
                if let Some(v) = &bearer.0 {
                    req.metadata_mut().insert("authorization", v.clone());
                }
                let path = http::uri::PathAndQuery::from_static("/tlog.v1.Log/AppendBatch");
                let code = match grpc.unary(req, path, tlog_proto::codec::RawCodec).await {
                    Ok(_) => tonic::Code::Ok,
                    Err(s) => s.code(),
                };
                *counts.entry(format!("{what}: {code:?}")).or_default() += 1;
            }
            counts
        });
    }
    let mut total: std::collections::BTreeMap<String, u64> = Default::default();
    while let Some(r) = tasks.join_next().await {
        for (k, v) in r? {
            *total.entry(k).or_default() += v;
        }
    }
    if a.json {
        println!("{}", serde_json::to_string(&total)?);
    } else {
        for (k, v) in &total {
            println!("{v:>8}  {k}");
        }
    }
    Ok(())
}

/// Adds the bearer token to every call.
#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Client = LogClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

fn event(run: u64, client: usize, seq: u64, versions: u64) -> pb::ArtifactEvent {
    // With a bounded set of versions, event seq names version seq % N: its
    // first event uploads it, the later ones download it (same digest).
    let (v, action) = match versions {
        0 => (seq, pb::Action::Upload),
        n if seq <= n => (seq % n, pb::Action::Upload),
        n => (seq % n, pb::Action::Download),
    };
    let hex = format!("{:016x}{:016x}{:032x}", run, v, client as u128);
    pb::ArtifactEvent {
        event_id: format!("bench-{run:x}-{client}-{seq}"),
        source: "bench.tlog".into(),
        action: action as i32,
        artifact: Some(pb::Artifact {
            // One artifact per client: clients never share a version.
            name: format!("bench/model-{client}"),
            // Unique per run, so that repeated runs against one log never
            // give one version two digests (a monitor would rightly alert).
            version: format!("1.0.{v}-r{run:x}"),
            digests: vec![pb::Digest {
                algorithm: "sha256".into(),
                hex,
            }],
            media_type: "application/octet-stream".into(),
            uri: String::new(),
        }),
        actor: "bench".into(),
        interface: pb::Interface::Api as i32,
        environment: "bench".into(),
        ..Default::default()
    }
}

struct Verify {
    verifiers: Verifiers,
    origin: String,
}

/// The last checkpoint a client verified: a client checks each signed
/// note once, not once per entry proven against it.
/// Proofs against it are verified by one [`InclusionVerifier`], which
/// shares the work of proofs of neighbouring entries.
#[derive(Default)]
struct Seen {
    note: String,
    verifier: Option<InclusionVerifier>,
}

impl Verify {
    fn check(&self, r: &pb::AppendResponse, seen: &mut Seen) -> anyhow::Result<()> {
        let cp = r.checkpoint.as_ref().context("answer without checkpoint")?;
        if seen.note != cp.note || seen.verifier.is_none() {
            let opened =
                tlog_core::checkpoint::open(cp.note.as_bytes(), &self.verifiers, &self.origin)?;
            seen.note = cp.note.clone();
            seen.verifier = Some(InclusionVerifier::new(
                opened.checkpoint.size,
                opened.checkpoint.root,
            ));
        }
        let verifier = seen.verifier.as_mut().context("verified above")?;
        let leaf = Hash::from_slice(&r.leaf_hash)?;
        anyhow::ensure!(tlog_core::leaf_hash(&r.leaf) == leaf, "leaf hash mismatch");
        let proof = parse_proof(&r.inclusion_proof)?;
        verifier.verify(r.index, &leaf, &proof)?;
        Ok(())
    }
}

/// Runs one task per client for `d`, each calling `call(client, random)`
/// in a loop; returns calls/s and the number of failed calls.
async fn read_phase<F, Fut>(
    clients: Vec<Client>,
    d: Duration,
    seed: u64,
    call: F,
) -> anyhow::Result<(f64, u64)>
where
    F: Fn(Client, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (Client, bool)> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut client) in clients.into_iter().enumerate() {
        let (stop, call) = (stop.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let (mut n, mut errs) = (0u64, 0u64);
            let mut x = (c as u64 + seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (back, ok) = call(client, x).await;
                client = back;
                if ok {
                    n += 1;
                } else {
                    errs += 1;
                }
            }
            (n, errs)
        }));
    }
    tokio::time::sleep(d).await;
    stop.store(true, Ordering::Relaxed);
    let (mut n, mut errors) = (0u64, 0u64);
    for t in tasks {
        let (k, e) = t.await?;
        n += k;
        errors += e;
    }
    Ok((n as f64 / start.elapsed().as_secs_f64(), errors))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// Drives the log at `--addr` with `--clients` clients, verifying every
/// answer, and reports throughput and latency.
pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(a.batch > 0, "--batch must be at least 1");
    let bearer = Bearer(
        a.token
            .as_ref()
            .map(|t| format!("Bearer {}", t.trim()).parse())
            .transpose()
            .context("--token is not valid header text")?,
    );
    let mut endpoint = Channel::from_shared(a.addr.clone())
        .context("--addr is not a URL like http://127.0.0.1:7400")?;
    if let Some(ca) = &a.ca_file {
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
        };
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?))
            .domain_name(a.tls_domain.clone());
        if let (Some(c), Some(k)) = (&a.cert_file, &a.key_file) {
            tls = tls.identity(tonic::transport::Identity::from_pem(read(c)?, read(k)?));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    let mut channels = Vec::new();
    for _ in 0..a.connections.max(1) {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot connect to {}", a.addr))?,
        );
    }
    if a.worst_messages {
        return worst_messages(&a, channels, bearer).await;
    }
    let client = |ch: &Channel| -> Client {
        LogClient::with_interceptor(ch.clone(), bearer.clone()).max_decoding_message_size(64 << 20)
    };
    let info = client(&channels[0])
        .get_log_info(pb::GetLogInfoRequest {})
        .await?
        .into_inner();
    let verify = Arc::new(Verify {
        verifiers: Verifiers::new([Verifier::from_vkey(&info.verifier_key)?]),
        origin: info.origin.clone(),
    });
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;

    // Append phase.
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let per_client_interval = (a.rate > 0)
        .then(|| Duration::from_secs_f64(a.clients as f64 * a.batch as f64 / a.rate as f64));
    let mut tasks = Vec::new();
    // --duration 0s: no append phase at all (reads only).
    let appenders = if a.duration.is_zero() { 0 } else { a.clients };
    for c in 0..appenders {
        let mut client = client(&channels[c % channels.len()]);
        let (stop, verify, batch, versions) = (stop.clone(), verify.clone(), a.batch, a.versions);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut seen = Seen::default();
            let mut errors = 0u64;
            let mut seq = 0u64;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Some(iv) = per_client_interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += iv;
                }
                let t = Instant::now();
                let ok = if batch == 1 {
                    seq += 1;
                    match client
                        .append(pb::AppendRequest {
                            event: Some(event(run_id, c, seq, versions)),
                        })
                        .await
                    {
                        Ok(r) => verify.check(&r.into_inner(), &mut seen).is_ok(),
                        Err(_) => false,
                    }
                } else {
                    let events = (0..batch)
                        .map(|_| {
                            seq += 1;
                            event(run_id, c, seq, versions)
                        })
                        .collect();
                    match client.append_batch(pb::AppendBatchRequest { events }).await {
                        Ok(r) => r
                            .into_inner()
                            .results
                            .iter()
                            .all(|x| verify.check(x, &mut seen).is_ok()),
                        Err(_) => false,
                    }
                };
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    if !a.duration.is_zero() {
        tokio::time::sleep(a.duration).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let calls = lat.len() as f64;
    let appends_per_s = calls * a.batch as f64 / elapsed;

    // The tree size the reads run against.
    let size = client(&channels[0])
        .get_checkpoint(pb::GetCheckpointRequest { size: 0 })
        .await?
        .into_inner()
        .checkpoint
        .context("no checkpoint")?
        .size;
    let readers = || {
        (0..a.clients)
            .map(|c| client(&channels[c % channels.len()]))
            .collect::<Vec<_>>()
    };

    // Inclusion proofs for random indexes.
    let (mut proofs_per_s, mut proof_errors) = (0.0, 0u64);
    if !a.proof_duration.is_zero() {
        anyhow::ensure!(size > 0, "the log is empty; nothing to prove");
        (proofs_per_s, proof_errors) =
            read_phase(readers(), a.proof_duration, 1, move |mut c, x| async move {
                let req = pb::GetInclusionProofRequest {
                    leaf: Some(pb::get_inclusion_proof_request::Leaf::Index(x % size)),
                    tree_size: size,
                };
                let ok = c.get_inclusion_proof(req).await.is_ok();
                (c, ok)
            })
            .await?;
    }

    // Consistency proofs: a random older size to the latest.
    let (mut consistency_per_s, mut consistency_errors) = (0.0, 0u64);
    if !a.consistency_duration.is_zero() && size > 1 {
        (consistency_per_s, consistency_errors) = read_phase(
            readers(),
            a.consistency_duration,
            7,
            move |mut c, x| async move {
                let req = pb::GetConsistencyProofRequest {
                    size1: 1 + x % (size - 1),
                    size2: size,
                };
                let ok = c.get_consistency_proof(req).await.is_ok();
                (c, ok)
            },
        )
        .await?;
    }

    // Streaming entries.
    let mut stream_per_s = 0.0;
    if a.stream_entries > 0 && size > 0 {
        let count = a.stream_entries.min(size);
        let first = (run_id % (size - count + 1)).min(size - count);
        let start = Instant::now();
        let mut s = client(&channels[0])
            .get_entries(pb::GetEntriesRequest {
                start: first,
                end: first + count,
            })
            .await?
            .into_inner();
        let mut got = 0u64;
        while let Some(page) = s.message().await? {
            got += page.entries.len() as u64;
        }
        anyhow::ensure!(got == count, "streamed {got} of {count} entries");
        stream_per_s = count as f64 / start.elapsed().as_secs_f64();
    }

    // Artifact queries: one page of one artifact's history each.
    let mut query_lat = Vec::new();
    for q in 0..a.queries {
        let mut c = client(&channels[q as usize % channels.len()]);
        let t = Instant::now();
        c.query_artifact(pb::QueryArtifactRequest {
            name: format!("bench/model-{}", q % 16),
            page_size: 100,
            ..Default::default()
        })
        .await?;
        query_lat.push(t.elapsed());
    }
    query_lat.sort();
    let (q50, q99) = (percentile(&query_lat, 0.50), percentile(&query_lat, 0.99));

    let (p50, p99, p999) = (
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
    );
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) ends the report quietly.
    let _ = if a.json {
        writeln!(
            out,
            "{{\"clients\":{},\"batch\":{},\"rate\":{},\"seconds\":{elapsed:.3},\
             \"appends_per_s\":{appends_per_s:.1},\"calls\":{calls},\"errors\":{errors},\
             \"p50_ms\":{p50:.3},\"p99_ms\":{p99:.3},\"p999_ms\":{p999:.3},\
             \"proofs_per_s\":{proofs_per_s:.1},\"proof_errors\":{proof_errors},\
             \"consistency_per_s\":{consistency_per_s:.1},\"consistency_errors\":{consistency_errors},\
             \"stream_entries_per_s\":{stream_per_s:.1},\"query_p50_ms\":{q50:.3},\"query_p99_ms\":{q99:.3},\
             \"tree_size\":{size}}}",
            a.clients, a.batch, a.rate
        )
    } else {
        writeln!(
            out,
            "appends: {appends_per_s:.0}/s ({} calls of {} event(s), {} clients, {elapsed:.1}s, \
             {errors} errors)\nlatency to verified proof: p50 {p50:.2} ms, p99 {p99:.2} ms, \
             p999 {p999:.2} ms\ninclusion proofs: {proofs_per_s:.0}/s ({proof_errors} errors)\n\
             consistency proofs: {consistency_per_s:.0}/s ({consistency_errors} errors)\n\
             entries streamed: {stream_per_s:.0}/s\nartifact query (one page): p50 {q50:.2} ms, p99 {q99:.2} ms\n\
             tree size: {size}",
            calls, a.batch, a.clients
        )
    };
    Ok(())
}
