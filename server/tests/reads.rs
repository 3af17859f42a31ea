//! Reads: entries (streamed, paged), by leaf hash, proofs for past sizes,
//! queries by artifact with filters and cursors, the checkpoint stream.

use tlog_core::Hash;
use tlog_core::leaf::Leaf;
use tlog_core::merkle::verify::{parse_proof, verify_inclusion};
use tlog_proto::v1 as pb;

use crate::common::{TestServer, check_consistent, event, open_checkpoint, verify_append};

fn versioned(id: &str, version: &str, action: pb::Action) -> pb::ArtifactEvent {
    let mut e = event("registry", id);
    if let Some(a) = e.artifact.as_mut() {
        a.version = version.into();
    }
    e.action = action as i32;
    e.environment = "staging".into();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_proofs_queries_and_watch() {
    let server = TestServer::start_with(|c| {
        c.limits.max_page_size = 3;
        c.default_principal = "registry-svc".into();
    })
    .await;
    let mut c = server.client().await;
    let mut watch = c
        .watch_checkpoints(pb::WatchCheckpointsRequest {})
        .await
        .expect("watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("stream")
        .expect("current checkpoint");
    assert_eq!(first.size, 0);

    let mut answers = Vec::new();
    for (i, (v, a)) in [
        ("1.0.0", pb::Action::Register),
        ("1.0.0", pb::Action::Upload),
        ("1.0.0", pb::Action::Approve),
        ("1.1.0", pb::Action::Register),
        ("1.0.0", pb::Action::Deploy),
        ("1.1.0", pb::Action::Upload),
        ("1.1.0", pb::Action::Promote),
    ]
    .into_iter()
    .enumerate()
    {
        let r = c
            .append(pb::AppendRequest {
                event: Some(versioned(&format!("q{i}"), v, a)),
            })
            .await
            .expect("append")
            .into_inner();
        verify_append(&server, &r);
        answers.push(r);
    }
    // Another artifact, not in queries for the first.
    let mut other = event("registry", "other");
    if let Some(a) = other.artifact.as_mut() {
        a.name = "team-b/other".into();
    }
    c.append(pb::AppendRequest { event: Some(other) })
        .await
        .expect("append");

    // The watch stream saw the growth, and what it saw is consistent.
    let mut seen = vec![open_checkpoint(&server, &first)];
    while seen.last().map(|s| s.checkpoint.size) != Some(8) {
        let cp = watch.message().await.expect("stream").expect("next");
        seen.push(open_checkpoint(&server, &cp));
    }
    for w in seen.windows(2) {
        check_consistent(&mut c, &w[0], &w[1]).await;
    }

    // Entries in pages of 3; leaves decode and carry the server's identity.
    let mut stream = c
        .get_entries(pb::GetEntriesRequest { start: 0, end: 8 })
        .await
        .expect("entries")
        .into_inner();
    let mut pages = Vec::new();
    while let Some(page) = stream.message().await.expect("page") {
        pages.push(page.entries);
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 2]
    );
    let entries: Vec<_> = pages.into_iter().flatten().collect();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
        assert_eq!(
            tlog_core::leaf_hash(&e.leaf).as_bytes()[..],
            e.leaf_hash[..]
        );
        let leaf = Leaf::decode(&e.leaf).expect("leaf decodes");
        assert_eq!(leaf.submitter.principal, "registry-svc");
        assert!(
            leaf.submitter.peer.starts_with("127.0.0.1:"),
            "{}",
            leaf.submitter.peer
        );
        if i < answers.len() {
            assert_eq!(e.leaf, answers[i].leaf, "served verbatim");
        }
    }

    // By leaf hash.
    let by_hash = c
        .get_entry_by_hash(pb::GetEntryByHashRequest {
            leaf_hash: entries[4].leaf_hash.clone(),
        })
        .await
        .expect("by hash")
        .into_inner();
    assert_eq!(by_hash.index, 4);

    // Inclusion at a past size that had a checkpoint, by hash, verifies
    // against the checkpoint for that size.
    let p = c
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            leaf: Some(pb::get_inclusion_proof_request::Leaf::LeafHash(
                entries[2].leaf_hash.clone(),
            )),
            tree_size: 5,
        })
        .await
        .expect("proof")
        .into_inner();
    assert_eq!((p.index, p.tree_size), (2, 5));
    let cp = open_checkpoint(&server, p.checkpoint.as_ref().expect("checkpoint at 5"));
    verify_inclusion(
        2,
        5,
        &Hash::from_slice(&p.leaf_hash).expect("hash"),
        &parse_proof(&p.hashes).expect("proof"),
        &cp.checkpoint.root,
    )
    .expect("verifies");

    // Queries: all of the artifact, then filtered, then paged.
    let q =
        |version: &str, action: pb::Action, page: u32, cursor: String| pb::QueryArtifactRequest {
            name: "team-a/fraud-model".into(),
            version: version.into(),
            action: action as i32,
            page_size: page,
            cursor,
            ..Default::default()
        };
    let all = c
        .query_artifact(q("", pb::Action::Unspecified, 0, String::new()))
        .await
        .expect("q")
        .into_inner();
    // The page is capped at max_page_size (3 here), with a cursor for more.
    assert_eq!(
        all.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(!all.next_cursor.is_empty());
    let v11 = c
        .query_artifact(q("1.1.0", pb::Action::Unspecified, 0, String::new()))
        .await
        .expect("q")
        .into_inner();
    assert_eq!(
        v11.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![3, 5, 6]
    );
    let regs = c
        .query_artifact(q("", pb::Action::Register, 0, String::new()))
        .await
        .expect("q")
        .into_inner();
    assert_eq!(
        regs.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![0, 3]
    );
    let mut cursor = String::new();
    let mut paged = Vec::new();
    loop {
        let r = c
            .query_artifact(q("", pb::Action::Unspecified, 2, cursor))
            .await
            .expect("q")
            .into_inner();
        paged.extend(r.entries.iter().map(|e| e.index));
        if r.next_cursor.is_empty() {
            break;
        }
        cursor = r.next_cursor;
    }
    assert_eq!(paged, vec![0, 1, 2, 3, 4, 5, 6]);
    // A time window after everything: nothing.
    let future = c
        .query_artifact(pb::QueryArtifactRequest {
            name: "team-a/fraud-model".into(),
            since: Some(tlog_proto::prost_types::Timestamp {
                seconds: 4_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("q")
        .into_inner();
    assert!(future.entries.is_empty());
    server.stop().await;
}
