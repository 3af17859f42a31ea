//! Every validation rule and every read given bad arguments: the right
//! status code, a message naming the problem, and a server still healthy.

use bytes::BufMut as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use crate::common::{TestServer, event};
use tlog_proto::v1 as pb;

type Mutation = fn(&mut pb::ArtifactEvent);

fn art(e: &mut pb::ArtifactEvent) -> &mut pb::Artifact {
    e.artifact.as_mut().expect("test events have an artifact")
}

fn append_cases() -> Vec<(&'static str, Mutation, &'static str)> {
    vec![
        ("no event id", |e| e.event_id.clear(), "event.event_id"),
        ("no source", |e| e.source.clear(), "event.source"),
        ("no action", |e| e.action = 0, "event.action"),
        ("unknown action", |e| e.action = 99, "event.action"),
        ("no artifact", |e| e.artifact = None, "event.artifact"),
        ("no actor", |e| e.actor.clear(), "event.actor"),
        ("unknown interface", |e| e.interface = 42, "event.interface"),
        (
            "control char in name",
            |e| art(e).name = "team-a/\u{7}model".into(),
            "event.artifact.name",
        ),
        (
            "empty version",
            |e| art(e).version.clear(),
            "event.artifact.version",
        ),
        (
            "no digests",
            |e| art(e).digests.clear(),
            "event.artifact.digests",
        ),
        (
            "short sha256",
            |e| art(e).digests[0].hex = "ab".repeat(31),
            "event.artifact.digests[0].hex",
        ),
        (
            "upper-case hex",
            |e| art(e).digests[0].hex = "AB".repeat(32),
            "event.artifact.digests[0].hex",
        ),
        (
            "sha512 with sha256 length",
            |e| art(e).digests[0].algorithm = "sha512".into(),
            "event.artifact.digests[0].hex",
        ),
        (
            "unknown algorithm",
            |e| art(e).digests[0].algorithm = "md5".into(),
            "event.artifact.digests[0].algorithm",
        ),
        (
            "deploy without environment",
            |e| e.action = pb::Action::Deploy as i32,
            "event.environment",
        ),
        (
            "bad attestation",
            |e| {
                e.attestations.push(pb::Attestation {
                    scheme: tlog_core::event::ED25519.into(),
                    key_id: "k".into(),
                    signature: vec![0; 3],
                })
            },
            "event.attestations[0].signature",
        ),
        (
            "oversize event",
            |e| e.justification = "x".repeat(70 * 1024),
            "the limit is 65536",
        ),
        (
            "bad timestamp",
            |e| {
                e.client_time = Some(tlog_proto::prost_types::Timestamp {
                    seconds: 1,
                    nanos: -5,
                })
            },
            "event.client_time.nanos",
        ),
    ]
}

/// Sends pre-encoded request bytes (to put invalid UTF-8 on the wire).
#[derive(Clone, Default)]
struct RawCodec;
struct RawEncoder;
struct RespDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = pb::AppendResponse;
    type Encoder = RawEncoder;
    type Decoder = RespDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RespDecoder {
        RespDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RespDecoder {
    type Item = pb::AppendResponse;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<pb::AppendResponse>, Status> {
        prost::Message::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

async fn assert_healthy(server: &TestServer) {
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let r = tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "tlog.v1.Log".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut c = server.client().await;
    c.get_log_info(pb::GetLogInfoRequest {})
        .await
        .expect("still answers");
}

fn expect(r: Result<impl std::fmt::Debug, Status>, code: Code, needle: &str, what: &str) {
    let err = r.expect_err(what);
    assert_eq!(err.code(), code, "{what}: {err:?}");
    assert!(
        err.message().contains(needle),
        "{what}: message {:?} lacks {needle:?}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_are_refused_with_the_field_named() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for (what, mutate, field) in append_cases() {
        let mut e = event("bad", "x");
        mutate(&mut e);
        let r = c.append(pb::AppendRequest { event: Some(e) }).await;
        expect(r, Code::InvalidArgument, field, what);
    }
    expect(
        c.append(pb::AppendRequest { event: None }).await,
        Code::InvalidArgument,
        "event",
        "no event",
    );

    // Batches: empty, too large, one bad event (nothing appended).
    expect(
        c.append_batch(pb::AppendBatchRequest { events: vec![] })
            .await,
        Code::InvalidArgument,
        "events",
        "empty batch",
    );
    let many = (0..257).map(|i| event("b", &format!("{i}"))).collect();
    expect(
        c.append_batch(pb::AppendBatchRequest { events: many })
            .await,
        Code::InvalidArgument,
        "the limit is 256",
        "oversized batch",
    );
    let mut events: Vec<_> = (0..5).map(|i| event("b", &format!("{i}"))).collect();
    art(&mut events[3]).digests[0].hex = "zz".into();
    expect(
        c.append_batch(pb::AppendBatchRequest { events }).await,
        Code::InvalidArgument,
        "events[3].artifact.digests[0].hex",
        "one bad event",
    );
    let info = c
        .get_log_info(pb::GetLogInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.tree_size, 0, "no invalid event was appended");

    // Invalid UTF-8 in a string field, straight on the wire.
    let mut e = event("bad", "UTF8MARK");
    e.source = "src".into();
    let mut bytes = prost::Message::encode_to_vec(&pb::AppendRequest { event: Some(e) });
    let at = bytes
        .windows(8)
        .position(|w| w == b"UTF8MARK")
        .expect("marker");
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xff, 0xfe]);
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.expect("ready");
    let r = grpc
        .unary(
            tonic::Request::new(bytes),
            http::uri::PathAndQuery::from_static("/tlog.v1.Log/Append"),
            RawCodec,
        )
        .await;
    expect(r, Code::InvalidArgument, "event_id", "non-UTF-8 event id");

    assert_healthy(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reads_get_precise_codes() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    // Size 3 in one batch: checkpoints exist at 0 and 3 only.
    let events = (0..3).map(|i| event("r", &format!("{i}"))).collect();
    c.append_batch(pb::AppendBatchRequest { events })
        .await
        .expect("append");

    use pb::get_inclusion_proof_request::Leaf;
    let unknown = vec![7u8; 32];
    let cases: Vec<(&str, Result<(), Status>, Code, &str)> = vec![
        (
            "entries start >= end",
            c.get_entries(pb::GetEntriesRequest { start: 2, end: 2 })
                .await
                .map(|_| ()),
            Code::InvalidArgument,
            "end",
        ),
        (
            "entries beyond the tree",
            c.get_entries(pb::GetEntriesRequest { start: 0, end: 4 })
                .await
                .map(|_| ()),
            Code::OutOfRange,
            "beyond the tree size 3",
        ),
        (
            "unknown leaf hash",
            c.get_entry_by_hash(pb::GetEntryByHashRequest {
                leaf_hash: unknown.clone(),
            })
            .await
            .map(|_| ()),
            Code::NotFound,
            "no entry has leaf hash",
        ),
        (
            "short leaf hash",
            c.get_entry_by_hash(pb::GetEntryByHashRequest {
                leaf_hash: vec![1; 31],
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            "leaf_hash",
        ),
        (
            "inclusion index out of range",
            c.get_inclusion_proof(pb::GetInclusionProofRequest {
                leaf: Some(Leaf::Index(3)),
                tree_size: 0,
            })
            .await
            .map(|_| ()),
            Code::OutOfRange,
            "not in a tree of size 3",
        ),
        (
            "inclusion index beyond a past size",
            c.get_inclusion_proof(pb::GetInclusionProofRequest {
                leaf: Some(Leaf::Index(2)),
                tree_size: 2,
            })
            .await
            .map(|_| ()),
            Code::OutOfRange,
            "not in a tree of size 2",
        ),
        (
            "inclusion tree size beyond the tree",
            c.get_inclusion_proof(pb::GetInclusionProofRequest {
                leaf: Some(Leaf::Index(0)),
                tree_size: 9,
            })
            .await
            .map(|_| ()),
            Code::OutOfRange,
            "tree_size 9",
        ),
        (
            "inclusion unknown hash",
            c.get_inclusion_proof(pb::GetInclusionProofRequest {
                leaf: Some(Leaf::LeafHash(unknown.clone())),
                tree_size: 0,
            })
            .await
            .map(|_| ()),
            Code::NotFound,
            "no entry has leaf hash",
        ),
        (
            "inclusion without leaf",
            c.get_inclusion_proof(pb::GetInclusionProofRequest {
                leaf: None,
                tree_size: 0,
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            "leaf",
        ),
        (
            "consistency size1 > size2",
            c.get_consistency_proof(pb::GetConsistencyProofRequest { size1: 3, size2: 2 })
                .await
                .map(|_| ()),
            Code::InvalidArgument,
            "size1",
        ),
        (
            "consistency beyond the tree",
            c.get_consistency_proof(pb::GetConsistencyProofRequest { size1: 1, size2: 4 })
                .await
                .map(|_| ()),
            Code::OutOfRange,
            "size2 4",
        ),
        (
            "checkpoint beyond the tree",
            c.get_checkpoint(pb::GetCheckpointRequest { size: 5 })
                .await
                .map(|_| ()),
            Code::OutOfRange,
            "beyond the tree size 3",
        ),
        (
            "checkpoint never signed",
            c.get_checkpoint(pb::GetCheckpointRequest { size: 2 })
                .await
                .map(|_| ()),
            Code::NotFound,
            "no checkpoint at size 2",
        ),
        (
            "query without name",
            c.query_artifact(pb::QueryArtifactRequest::default())
                .await
                .map(|_| ()),
            Code::InvalidArgument,
            "name",
        ),
        (
            "query with a forged cursor",
            c.query_artifact(pb::QueryArtifactRequest {
                name: "team-a/fraud-model".into(),
                cursor: "garbage".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            "cursor",
        ),
        (
            "query with unknown action",
            c.query_artifact(pb::QueryArtifactRequest {
                name: "team-a/fraud-model".into(),
                action: 77,
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            "action",
        ),
    ];
    for (what, result, code, needle) in cases {
        expect(result, code, needle, what);
    }
    assert_healthy(&server).await;
    server.stop().await;
}
