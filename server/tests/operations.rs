//! Operating the server: metrics, reflection, back-pressure.

use std::sync::Arc;
use std::time::Duration;

use tlog_proto::v1 as pb;
use tlog_server::sequencer::AppendError;
use tlog_server::storage::LogStore;

use crate::common::{
    Fault, Faulty, ORIGIN, Running, TestServer, event, sequencer_over, submission,
};

/// A server run in-process on `dir` with metrics; its gRPC channel, its
/// metrics address, and how to stop it.
async fn start_with_metrics(
    dir: &std::path::Path,
) -> (
    tonic::transport::Channel,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), tlog_server::ServerError>>,
) {
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let maddr = metrics_listener.local_addr().expect("addr");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = tlog_server::ops::config::Config {
        data_dir: dir.to_owned(),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(tlog_server::run_with(
        listener,
        Some(metrics_listener),
        config,
        async {
            let _ = stopped.await;
        },
    ));
    let ch = loop {
        if let Ok(ch) = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect()
            .await
        {
            break ch;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (ch, maddr, stop, task)
}

async fn scrape(maddr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(maddr)
        .await
        .expect("metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).await.expect("read");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proof_cache_is_warmed_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
    let (ch, _, stop, task) = start_with_metrics(dir.path()).await;
    let mut c = pb::log_client::LogClient::new(ch);
    for b in 0..4 {
        let events = (0..200)
            .map(|i| event("warm", &format!("{b}-{i}")))
            .collect();
        c.append_batch(pb::AppendBatchRequest { events })
            .await
            .expect("append");
    }
    let _ = stop.send(());
    task.await.expect("join").expect("clean exit");
    // 800 entries: bottom tiles 0..=3, all warmed at the next start.
    let (_, maddr, stop, task) = start_with_metrics(dir.path()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = scrape(maddr).await;
        if body.contains("tlog_tile_cache_warmed_tiles 4") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not warmed:\n{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    task.await.expect("join").expect("clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_appends_and_responses() {
    let dir = tempfile::tempdir().expect("tmp");
    tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
    let (ch, maddr, stop, task) = start_with_metrics(dir.path()).await;
    let mut c = pb::log_client::LogClient::new(ch);
    for i in 0..3 {
        c.append(pb::AppendRequest {
            event: Some(event("m", &format!("{i}"))),
        })
        .await
        .expect("append");
    }
    let _ = c.append(pb::AppendRequest { event: None }).await;

    let body = scrape(maddr).await;
    for want in [
        "tlog_appends_total 3",
        "tlog_tree_size 3",
        "tlog_inclusion_proofs_total 3",
        "tlog_responses_total{method=\"Append\",code=\"OK\"} 3",
        "tlog_responses_total{method=\"Append\",code=\"INVALID_ARGUMENT\"} 1",
        "tlog_append_seconds_count 3",
        "tlog_batch_events_bucket",
        "tlog_queue_depth",
    ] {
        assert!(body.contains(want), "metrics lack {want:?}:\n{body}");
    }
    let _ = stop.send(());
    task.await.expect("join").expect("clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let _ = server.client().await;
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("reflection")
        .into_inner();
    let msg = stream.message().await.expect("answer").expect("some");
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer {msg:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"tlog.v1.Log"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    drop(stream);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_resource_exhausted_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    tlog_server::ops::keys::init(dir.path(), ORIGIN, None).expect("init");
    let store = Arc::new(Faulty::open(dir.path(), Duration::from_millis(200), |_| {
        Fault::None
    }));
    let Running {
        seq,
        task: _task,
        stop: _stop_tx,
    } = sequencer_over(
        dir.path(),
        store.clone(),
        1,
        Duration::ZERO,
        2,
        Duration::from_millis(20),
    );
    let mut tasks = Vec::new();
    for i in 0..12 {
        let seq = seq.clone();
        tasks.push(tokio::spawn(async move {
            seq.append(vec![submission(&format!("bp-{i}"))], Default::default())
                .await
        }));
    }
    let (mut ok, mut overloaded) = (Vec::new(), 0);
    for t in tasks {
        match t.await.expect("task") {
            Ok(o) => ok.push(o.entries[0].index),
            Err(AppendError::Overloaded(_)) => overloaded += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(overloaded > 0, "the queue of 2 never filled");
    assert!(!ok.is_empty());
    // Every acknowledged append is stored at its index.
    ok.sort_unstable();
    assert_eq!(ok, (0..ok.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        store.meta().expect("meta").expect("some").size,
        ok.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_principal_rate_limits_answer_resource_exhausted() {
    let server = TestServer::start_with(|c| {
        c.default_principal = "batch-job".into();
        c.auth.rate_limits.principals.insert(
            "batch-job".into(),
            tlog_server::access::ratelimit::Limit {
                per_second: 0.5,
                burst: 3,
            },
        );
    })
    .await;
    let mut c = server.client().await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        let r = c.get_log_info(pb::GetLogInfoRequest {}).await;
        codes.push(r.map(|_| tonic::Code::Ok).unwrap_or_else(|s| {
            assert!(
                s.message().contains("rate limit of batch-job"),
                "{}",
                s.message()
            );
            s.code()
        }));
    }
    assert_eq!(
        codes,
        [
            tonic::Code::Ok,
            tonic::Code::Ok,
            tonic::Code::Ok,
            tonic::Code::ResourceExhausted,
            tonic::Code::ResourceExhausted
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_auditing_puts_access_records_in_the_log_with_proofs() {
    use tlog_core::leaf::{AnyLeaf, decode_any};
    let server = TestServer::start_with(|c| {
        c.auth.ledger_audit = true;
        c.auth.ledger_flush = Duration::from_millis(50);
    })
    .await;
    let mut c = server.client().await;
    for _ in 0..3 {
        c.get_log_info(pb::GetLogInfoRequest {})
            .await
            .expect("info");
    }
    c.append(pb::AppendRequest {
        event: Some(event("ledger", "e1")),
    })
    .await
    .expect("append");
    // Wait until the three GetLogInfo records are in the log.
    let mut found = Vec::new();
    for _ in 0..200 {
        let size = c
            .get_checkpoint(pb::GetCheckpointRequest { size: 0 })
            .await
            .expect("checkpoint")
            .into_inner()
            .checkpoint
            .expect("some")
            .size;
        if size > 0 {
            let mut s = c
                .get_entries(pb::GetEntriesRequest {
                    start: 0,
                    end: size,
                })
                .await
                .expect("entries")
                .into_inner();
            found.clear();
            while let Some(page) = s.message().await.expect("page") {
                for e in page.entries {
                    if let Ok(AnyLeaf::Access(a)) = decode_any(&e.leaf)
                        && a.method == "GetLogInfo"
                    {
                        found.push((e.index, a));
                    }
                }
            }
            if found.len() >= 3 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(found.len() >= 3, "access records not in the log: {found:?}");
    let (index, record) = &found[0];
    assert_eq!(record.principal, "unauthenticated");
    assert_eq!(record.decision, "allow");
    assert_eq!(record.status, "Ok");
    // Each one is proven in a signed checkpoint like any entry.
    let p = c
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            leaf: Some(pb::get_inclusion_proof_request::Leaf::Index(*index)),
            tree_size: 0,
        })
        .await
        .expect("proof")
        .into_inner();
    let cp = crate::common::open_checkpoint(&server, p.checkpoint.as_ref().expect("checkpoint"));
    tlog_core::merkle::verify::verify_inclusion(
        *index,
        p.tree_size,
        &tlog_core::Hash::from_slice(&p.leaf_hash).expect("hash"),
        &tlog_core::merkle::verify::parse_proof(&p.hashes).expect("proof"),
        &cp.checkpoint.root,
    )
    .expect("access record proven");
    // Access records are not artifact events: queries do not return them.
    let q = c
        .query_artifact(pb::QueryArtifactRequest {
            name: "team-a/fraud-model".into(),
            ..Default::default()
        })
        .await
        .expect("query")
        .into_inner();
    assert_eq!(q.entries.len(), 1);
    server.stop().await;
}
