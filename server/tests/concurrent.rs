//! 64 concurrent tasks append 5,000 events. Every answer's proof verifies
//! against its checkpoint, whose signature verifies with the verifier key
//! `init` printed; indexes are unique and dense; checkpoints are consistent.

use std::collections::BTreeMap;

use crate::common::{TestServer, check_consistent, event, verify_append};
use tlog_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_five_thousand_events() {
    let server = TestServer::start().await;
    const TASKS: usize = 64;
    const EVENTS: usize = 5_000;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let mut client = server.client().await;
        handles.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in (t..EVENTS).step_by(TASKS) {
                let r = client
                    .append(pb::AppendRequest {
                        event: Some(event("concurrent", &format!("e{i}"))),
                    })
                    .await
                    .expect("append")
                    .into_inner();
                answers.push(r);
            }
            answers
        }));
    }
    let mut indexes = Vec::new();
    let mut checkpoints = BTreeMap::new();
    for h in handles {
        for r in h.await.expect("task") {
            assert!(!r.duplicate);
            let cp = verify_append(&server, &r);
            indexes.push(r.index);
            checkpoints.insert(cp.checkpoint.size, cp);
        }
    }
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        (0..EVENTS as u64).collect::<Vec<_>>(),
        "unique and dense"
    );
    // Batching happened: far fewer checkpoints than events.
    assert!(
        checkpoints.len() < EVENTS,
        "{} checkpoints",
        checkpoints.len()
    );

    // Consistency: each checkpoint with the next and with the last; by
    // transitivity of append-only extension that covers every pair.
    let mut client = server.client().await;
    let list: Vec<_> = checkpoints.values().cloned().collect();
    let last = list.last().expect("some").clone();
    assert_eq!(last.checkpoint.size, EVENTS as u64);
    for w in list.windows(2) {
        check_consistent(&mut client, &w[0], &w[1]).await;
    }
    for cp in &list {
        check_consistent(&mut client, cp, &last).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_append_gives_each_event_its_own_index_and_proof() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let events = (0..50).map(|i| event("batch", &format!("b{i}"))).collect();
    let r = client
        .append_batch(pb::AppendBatchRequest { events })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(r.results.len(), 50);
    let first = r.results[0].checkpoint.clone();
    for (i, res) in r.results.iter().enumerate() {
        assert_eq!(res.index, i as u64);
        assert_eq!(res.checkpoint, first, "one checkpoint for the batch");
        verify_append(&server, res);
    }
    server.stop().await;
}
