//! (source, event_id) makes retries idempotent.

use crate::common::{TestServer, event, verify_append};
use tlog_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_return_the_original_and_conflicts_are_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let e = event("registry", "evt-1");
    let first = c
        .append(pb::AppendRequest {
            event: Some(e.clone()),
        })
        .await
        .expect("append")
        .into_inner();
    assert!(!first.duplicate);
    c.append(pb::AppendRequest {
        event: Some(event("registry", "evt-2")),
    })
    .await
    .expect("append");

    // The same event again: the original entry, with a proof against the
    // current checkpoint.
    let again = c
        .append(pb::AppendRequest {
            event: Some(e.clone()),
        })
        .await
        .expect("retry")
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.index, first.index);
    assert_eq!(again.leaf, first.leaf, "the original leaf bytes, verbatim");
    let cp = verify_append(&server, &again);
    assert_eq!(cp.checkpoint.size, 2, "no new entry was appended");

    // Same key, different content: ALREADY_EXISTS naming the index.
    let mut changed = e.clone();
    changed.actor = "mallory@example.com".into();
    let err = c
        .append(pb::AppendRequest {
            event: Some(changed.clone()),
        })
        .await
        .expect_err("conflict");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("index 0"), "{}", err.message());

    // A batch holding a conflicting event appends nothing (all-or-nothing).
    let err = c
        .append_batch(pb::AppendBatchRequest {
            events: vec![event("registry", "evt-3"), changed],
        })
        .await
        .expect_err("conflict in batch");
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    let info = c
        .get_log_info(pb::GetLogInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(
        info.tree_size, 2,
        "nothing of the failed batch was appended"
    );

    // Duplicates inside one batch resolve to one entry.
    let r = c
        .append_batch(pb::AppendBatchRequest {
            events: vec![event("registry", "evt-4"), event("registry", "evt-4"), e],
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(r.results[0].index, 2);
    assert_eq!(r.results[1].index, 2);
    assert!(r.results[1].duplicate);
    assert_eq!(r.results[2].index, first.index);
    for res in &r.results {
        verify_append(&server, res);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_event_get_one_index() {
    let server = TestServer::start().await;
    let mut handles = Vec::new();
    for _ in 0..16 {
        let mut c = server.client().await;
        handles.push(tokio::spawn(async move {
            c.append(pb::AppendRequest {
                event: Some(event("ci", "same")),
            })
            .await
            .expect("append")
            .into_inner()
            .index
        }));
    }
    for h in handles {
        assert_eq!(h.await.expect("task"), 0);
    }
    server.stop().await;
}

/// A batch holding two different events under one key contradicts itself:
/// it is refused as a whole with `INVALID_ARGUMENT` naming both positions,
/// never with an `ALREADY_EXISTS` naming an index the log does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_contradicts_itself_names_its_events_not_an_index() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for i in 0..3 {
        c.append(pb::AppendRequest {
            event: Some(event("registry", &format!("before-{i}"))),
        })
        .await
        .expect("append");
    }
    let a = event("registry", "twice");
    let mut b = a.clone();
    b.actor = "mallory@example.com".into();
    let err = c
        .append_batch(pb::AppendBatchRequest {
            events: vec![event("registry", "other"), a.clone(), b],
        })
        .await
        .expect_err("a self-contradicting batch is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(
        err.message().contains("events[1]") && err.message().contains("events[2]"),
        "{err}"
    );
    assert!(!err.message().contains("index"), "{err}");
    // Nothing of it was appended; the same event twice is one entry.
    let r = c
        .append_batch(pb::AppendBatchRequest {
            events: vec![a.clone(), a],
        })
        .await
        .expect("the same event twice is a retry of itself")
        .into_inner();
    assert_eq!(r.results[0].index, 3);
    assert_eq!(r.results[1].index, 3);
    assert!(r.results[1].duplicate);
    verify_append(&server, &r.results[1]);
}
