//! The monitor's per-entry audit work, without the network: hash each
//! leaf, append it to the tree, decode it and run every rule, for 100k
//! realistic leaves (from the benign history). Beside it, the hashing
//! limit: the same leaf hashes plus one node hash per leaf, nothing else.
//!
//! Run: `cargo bench -p tlog-monitor --bench audit`. The whole pipeline
//! (a real server streaming 1M entries to `tlog-monitor check`) is
//! measured by `scripts/bench-monitor.sh`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tlog_core::event::Timestamp;
use tlog_core::leaf::{LEAF_VERSION, Leaf, Submitter, decode_any};
use tlog_core::merkle::tree::Tree;
use tlog_core::{leaf_hash, node_hash};
use tlog_e2e::history::{By, benign};
use tlog_monitor::config::{
    AccessRateRule, ApprovalRule, AttestationRule, RulesConfig, SubmitterRule, VersionPattern,
};
use tlog_monitor::rules::{RuleState, Rules};

const N: usize = 100_000;

fn leaves() -> Vec<Vec<u8>> {
    benign(N, 2_000, 3)
        .into_iter()
        .take(N)
        .enumerate()
        .map(|(i, p)| {
            let (principal, signers) = match p.by {
                By::Release => ("release-pipeline", vec!["release-pipeline".to_owned()]),
                By::Registry => ("registry", vec![]),
            };
            Leaf {
                version: LEAF_VERSION,
                event: p.event,
                submitter: Submitter {
                    principal: principal.into(),
                    auth_method: "bearer".into(),
                    peer: "10.1.2.3:40000".into(),
                },
                integrated_at: Timestamp {
                    seconds: 1_800_000_000 + (i / 1000) as i64,
                    nanos: 0,
                },
                verified_signers: signers,
            }
            .encode()
        })
        .collect()
}

fn rules() -> Rules {
    Rules::new(&RulesConfig {
        require_approval: vec![ApprovalRule {
            namespace: "*".into(),
            environments: vec!["production".into()],
            actions: vec!["deploy".into(), "promote".into()],
        }],
        version_patterns: vec![VersionPattern {
            namespace: "team-*".into(),
            pattern: r"\d+\.\d+\.\d+".into(),
        }],
        allowed_submitters: vec![SubmitterRule {
            namespace: "*".into(),
            action: "deploy".into(),
            environment: Some("production".into()),
            principals: vec!["release-pipeline".into()],
        }],
        required_attestations: vec![AttestationRule {
            namespace: "*".into(),
            action: "deploy".into(),
            environment: Some("production".into()),
            signers: vec!["release-pipeline".into()],
        }],
        access_rate: Some(AccessRateRule {
            window: Duration::from_secs(60),
            factor: 10.0,
            min_count: 50,
            warmup_windows: 5,
        }),
        ..RulesConfig::default()
    })
    .expect("rules")
}

fn audit(c: &mut Criterion) {
    let leaves = leaves();
    let bytes: usize = leaves.iter().map(Vec::len).sum();
    let rules = rules();
    let mut g = c.benchmark_group("monitor audit");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function(
        format!(
            "100k leaves (mean {} bytes): hash, tree, decode, rules",
            bytes / N
        ),
        |b| {
            b.iter(|| {
                let mut tree = Tree::new();
                let mut state = RuleState::default();
                let mut findings = 0usize;
                for (i, l) in leaves.iter().enumerate() {
                    let h = leaf_hash(l);
                    tree.push(h);
                    let leaf = decode_any(l).expect("decodes");
                    findings += rules.evaluate(&mut state, i as u64, &h, &leaf).len();
                }
                assert_eq!(findings, 0);
                tree.root()
            })
        },
    );
    g.bench_function("hashing limit: leaf hash + one node hash per leaf", |b| {
        b.iter(|| {
            let mut acc = leaf_hash(b"");
            for l in &leaves {
                let h = leaf_hash(black_box(l));
                acc = node_hash(&acc, &h);
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, audit);
criterion_main!(benches);
