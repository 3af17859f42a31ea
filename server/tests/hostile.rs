//! Hostile clients on the gRPC surface: bytes that are not protobuf, wrong
//! wire types, deep nesting, huge repeated fields and strings, streams
//! opened and abandoned, thousands of idle connections, a client that
//! never reads. Each gets a clear status (or is simply dropped), memory
//! stays bounded by the server's limits, and the server keeps serving a
//! well-behaved client throughout.

use std::time::Duration;

use tlog_proto::codec::RawCodec as Raw;
use tlog_proto::v1 as pb;

use crate::common::{TestServer, event};

async fn raw_call(
    server: &TestServer,
    method: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::try_from(format!("/tlog.v1.Log/{method}")).expect("path");
    grpc.unary(tonic::Request::new(body), path, Raw)
        .await
        .map(|r| r.into_inner())
}

/// The well-behaved client still gets its answer.
async fn still_serving(server: &TestServer, tag: &str) {
    let mut c = server.client().await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        c.append(pb::AppendRequest {
            event: Some(event("hostile", tag)),
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{tag}: the server stopped answering"))
    .unwrap_or_else(|e| panic!("{tag}: {e}"));
    assert!(r.into_inner().checkpoint.is_some());
}

/// A protobuf varint.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_clear_errors() {
    let server = TestServer::start().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "random bytes",
            b"\xff\xfe\xfd not protobuf at all \x00\x01".to_vec(),
        ),
        ("truncated length", vec![0x0a, 0xff, 0xff, 0x03, 0x01]),
        // Field 1 (the event, a message) sent as a varint.
        ("wrong wire type", vec![0x08, 0x96, 0x01]),
        // A group start with no end.
        ("unterminated group", vec![0x0b]),
        // An overlong varint.
        (
            "11-byte varint",
            vec![
                0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ),
    ];
    for (what, body) in cases {
        let err = raw_call(&server, "Append", body).await.expect_err(what);
        // The caller's bytes are at fault: INVALID_ARGUMENT (our codec),
        // not tonic-prost's default INTERNAL.
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{what}: {err}");
        assert!(
            err.message().contains("decode") || err.message().contains("event"),
            "{what}: unclear message {:?}",
            err.message()
        );
    }
    // An empty message decodes to an append without an event.
    let err = raw_call(&server, "Append", Vec::new())
        .await
        .expect_err("empty");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    still_serving(&server, "after-malformed").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_and_huge_fields_are_refused() {
    let server = TestServer::start().await;
    // 200 levels of nested unknown groups: prost's recursion limit.
    // Field 15 as a group: 200 starts (0x7b), then 200 ends (0x7c).
    let mut nested = vec![0x7b; 200];
    nested.extend(std::iter::repeat_n(0x7c, 200));
    let err = raw_call(&server, "Append", nested)
        .await
        .expect_err("nested");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    // A message larger than the decoding limit: refused before decoding.
    let mut huge = Vec::new();
    huge.push(0x0a);
    varint(40 << 20, &mut huge);
    huge.resize(huge.len() + (40 << 20), b'a');
    let err = raw_call(&server, "Append", huge).await.expect_err("huge");
    assert!(
        matches!(
            err.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{err}"
    );

    let mut c = server.client().await;
    // An enormous string inside an event that fits the message limit.
    let mut e = event("hostile", "big-name");
    e.artifact.as_mut().expect("artifact").name = "n".repeat(3 << 20);
    let err = c
        .append(pb::AppendRequest { event: Some(e) })
        .await
        .expect_err("enormous string");
    assert!(
        matches!(
            err.code(),
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{err}"
    );
    // A huge repeated field: more events than one batch may hold.
    let events = (0..5000)
        .map(|i| event("hostile", &format!("many-{i}")))
        .collect();
    let err = c
        .append_batch(pb::AppendBatchRequest { events })
        .await
        .expect_err("huge batch");
    assert!(
        matches!(
            err.code(),
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{err}"
    );
    // Thousands of digests on one event.
    let mut e = event("hostile", "digests");
    e.artifact.as_mut().expect("artifact").digests = (0..5000)
        .map(|_| pb::Digest {
            algorithm: "sha256".into(),
            hex: "ab".repeat(32),
        })
        .collect();
    let err = c
        .append(pb::AppendRequest { event: Some(e) })
        .await
        .expect_err("many digests");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    still_serving(&server, "after-huge").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_streams_and_idle_connections_do_not_stop_service() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.append_batch(pb::AppendBatchRequest {
        events: (0..200)
            .map(|i| event("hostile", &format!("s-{i}")))
            .collect(),
    })
    .await
    .expect("fill");
    // Streams opened and dropped unread, many times over.
    for _ in 0..300 {
        let entries = c
            .get_entries(pb::GetEntriesRequest { start: 0, end: 200 })
            .await
            .expect("stream");
        drop(entries);
        let watch = c
            .watch_checkpoints(pb::WatchCheckpointsRequest {})
            .await
            .expect("watch");
        drop(watch);
    }
    still_serving(&server, "after-abandoned-streams").await;

    // A client that opens a stream and never reads it: the server's
    // buffer for it is bounded, and others are served meanwhile.
    let mut slow = server.client().await;
    let never_read = slow
        .get_entries(pb::GetEntriesRequest { start: 0, end: 200 })
        .await
        .expect("stream");
    still_serving(&server, "beside-a-slow-reader").await;

    // Two thousand idle TCP connections (no HTTP/2 preface), and two
    // thousand that send the preface and then nothing.
    let mut idle = Vec::new();
    for i in 0..4000 {
        let mut s = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        if i % 2 == 1 {
            use tokio::io::AsyncWriteExt as _;
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .expect("preface");
        }
        idle.push(s);
    }
    still_serving(&server, "beside-4000-idle-connections").await;
    drop(idle);
    drop(never_read);
    still_serving(&server, "after-idle-connections").await;
    server.stop().await;
}

/// A request body fed by the test through a channel, one frame at a time.
type Fed = http_body_util::StreamBody<tokio_stream::wrappers::ReceiverStream<Feed>>;
/// One piece of a fed body.
type Feed = Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>;

/// One gRPC `Append` sent over `sender` as a body that the caller feeds
/// (`feed`), so a test decides how slowly its bytes arrive. Returns the
/// answer's `grpc-status` (from the trailers, or the headers of an
/// immediate error), or the transport error.
async fn fed_append(
    sender: &mut hyper::client::conn::http2::SendRequest<Fed>,
    addr: std::net::SocketAddr,
    feed: tokio::sync::mpsc::Receiver<Feed>,
) -> Result<String, hyper::Error> {
    use http_body_util::BodyExt as _;
    let req = http::Request::post(format!("http://{addr}/tlog.v1.Log/Append"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(feed),
        ))
        .expect("request");
    let resp = sender.send_request(req).await?;
    let status = |h: &http::HeaderMap| {
        h.get("grpc-status")
            .map(|v| v.to_str().unwrap_or("?").to_owned())
    };
    if let Some(s) = status(resp.headers()) {
        return Ok(s);
    }
    let body = resp.into_body().collect().await?;
    Ok(body
        .trailers()
        .and_then(status)
        .unwrap_or_else(|| "no grpc-status".into()))
}

/// The `grpc-status` of a [`fed_append`] call, which must come within 30 s
/// (else panics with `late`).
async fn answered(
    call: tokio::task::JoinHandle<Result<String, hyper::Error>>,
    late: &str,
) -> String {
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect(late)
        .expect("call")
        .expect("transport")
}

/// Slow-loris on the gRPC surface: 60 `Append`s on one connection whose
/// request bytes arrive 8 at a time, 10 ms apart, and 40 that send half of their
/// message and then nothing while the connection stays alive (it answers
/// the server's pings, so keepalive does not drop it). A normal client is
/// served while they trickle and stall; every trickled append is answered
/// OK once its last byte arrives; the stalled ones are ended with
/// `CANCELLED` when `limits.request_timeout` runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_that_trickle_or_stall_do_not_stop_service() {
    use hyper::body::Frame;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let server = TestServer::start_with(|c| {
        c.limits.request_timeout = Duration::from_secs(5);
        c.queue.enqueue_timeout = Duration::from_secs(1);
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("handshake");
    let conn = tokio::spawn(conn);
    // A gRPC frame: not compressed, big-endian length, the message.
    let framed = |tag: &str| {
        let msg = prost::Message::encode_to_vec(&pb::AppendRequest {
            event: Some(event("hostile", tag)),
        });
        let mut f = vec![0u8];
        f.extend(u32::try_from(msg.len()).expect("small").to_be_bytes());
        f.extend(msg);
        f
    };
    let (gap, chunk) = (Duration::from_millis(10), 8);
    let mut calls = Vec::new();
    for i in 0..100 {
        let bytes = framed(&format!("slow-{i}"));
        let stall = i >= 60;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut s = sender.clone();
        let addr = server.addr;
        let call = tokio::spawn(async move { fed_append(&mut s, addr, rx).await });
        let feed = tokio::spawn(async move {
            let n = if stall { bytes.len() / 2 } else { bytes.len() };
            for piece in bytes[..n].chunks(chunk) {
                tokio::time::sleep(gap).await;
                let frame = Frame::data(bytes::Bytes::copy_from_slice(piece));
                if tx.send(Ok(frame)).await.is_err() {
                    return None;
                }
            }
            // A stalled stream keeps its sender: the body never ends.
            if stall { Some(tx) } else { None }
        });
        calls.push((stall, call, feed));
    }
    // While they trickle (each request takes about 0.4 s to arrive).
    for round in 0..3 {
        still_serving(&server, &format!("beside-slow-clients-{round}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut held = Vec::new();
    let mut stalled = Vec::new();
    for (stall, call, feed) in calls {
        held.push(feed.await.expect("feed"));
        if stall {
            stalled.push(call);
            continue;
        }
        let status = answered(call, "a trickled append was never answered").await;
        assert_eq!(status, "0", "a trickled append was refused");
    }
    // The stalled ones are still waiting, and others are served.
    still_serving(&server, "beside-stalled-streams").await;
    // The request timeout ends them.
    for c in stalled {
        let status = answered(c, "a stalled request outlived the request timeout").await;
        assert_eq!(status, "1", "a stalled request was not cancelled");
    }
    drop(held);
    drop(sender);
    conn.abort();
    still_serving(&server, "after-slow-clients").await;
    server.stop().await;
}

/// Requests refused before the service sees them are recorded: one that
/// does not decode reaches the access log with peer, method and reason; a
/// justification over the limit is refused with `INVALID_ARGUMENT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_service_are_recorded() {
    let server = TestServer::start_with(|c| {
        c.auth.access_log = Some(c.data_dir.join("access.log"));
    })
    .await;
    let err = raw_call(&server, "Append", vec![0x0a, 0xff, 0xff, 0x03, 0x01])
        .await
        .expect_err("undecodable");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let log = server.dir.path().join("access.log");
    let mut found = None;
    for _ in 0..250 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["refusal"] == "undecodable-request");
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = found.expect("the undecodable request is in the access log");
    assert_eq!(r["method"], "Append");
    assert!(
        r["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{r}"
    );
    assert!(
        r["reason"]
            .as_str()
            .is_some_and(|m| m.contains("malformed")),
        "{r}"
    );

    let mut c = server.client().await;
    let mut req = tonic::Request::new(pb::GetLogInfoRequest {});
    req.metadata_mut().insert(
        "x-tlog-justification",
        "j".repeat(2000).parse().expect("header"),
    );
    let err = c.get_log_info(req).await.expect_err("too long");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("at most 1024"), "{err}");
    server.stop().await;
}
