//! Hostile clients on the gRPC surface: bytes that are not protobuf, wrong
//! wire types, deep nesting, huge repeated fields and strings, streams
//! opened and abandoned, thousands of idle connections, a client that
//! never reads. Each gets a clear status (or is simply dropped), memory
//! stays bounded by the server's limits, and the server keeps serving a
//! well-behaved client throughout.

use std::time::Duration;

use bytes::{Buf, BufMut};
use tlog_proto::v1 as pb;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::common::{TestServer, event};

/// Sends and receives raw message bytes, so a test can put anything on
/// the wire.
#[derive(Default, Clone)]
struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

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
        assert!(
            matches!(
                err.code(),
                tonic::Code::Internal | tonic::Code::InvalidArgument
            ),
            "{what}: {err}"
        );
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
    assert!(
        matches!(
            err.code(),
            tonic::Code::Internal | tonic::Code::InvalidArgument
        ),
        "{err}"
    );

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
