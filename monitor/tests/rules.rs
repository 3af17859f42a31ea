//! Each artifact rule fires on a crafted sequence, naming the offending
//! entries; none fires on a benign history of 10,000+ events.

use std::time::Duration;

use tlog_core::event::{Action, Timestamp};
use tlog_core::leaf::{AnyLeaf, LEAF_VERSION, Leaf, Submitter};
use tlog_e2e::history::{By, benign, event};
use tlog_monitor::alert::Finding;
use tlog_monitor::config::{
    AccessRateRule, ApprovalRule, AttestationRule, RulesConfig, SubmitterRule, VersionPattern,
};
use tlog_monitor::rules::{RuleState, Rules};

const RELEASE: &str = "spiffe://example.org/release-pipeline";

fn config() -> RulesConfig {
    RulesConfig {
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
            principals: vec![RELEASE.into()],
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
    }
}

/// Feeds events (with who submitted them and when) through the rules.
struct Feed {
    rules: Rules,
    state: RuleState,
    index: u64,
    time: i64,
}

impl Feed {
    fn new() -> Feed {
        Feed {
            rules: Rules::new(&config()).expect("rules"),
            state: RuleState::default(),
            index: 0,
            time: 1_800_000_000_000,
        }
    }

    fn push(&mut self, e: tlog_core::event::ArtifactEvent, by: By, step_ms: i64) -> Vec<Finding> {
        self.time += step_ms;
        let (principal, signers) = match by {
            By::Release => (RELEASE, vec!["release-pipeline".to_owned()]),
            By::Registry => ("spiffe://example.org/registry", vec![]),
        };
        let leaf = Leaf {
            version: LEAF_VERSION,
            event: e,
            submitter: Submitter {
                principal: principal.into(),
                auth_method: "mtls".into(),
                peer: "10.0.0.1:1".into(),
            },
            integrated_at: Timestamp {
                seconds: self.time / 1000,
                nanos: u32::try_from((self.time % 1000) * 1_000_000).expect("nanos"),
            },
            verified_signers: signers,
        };
        let bytes = leaf.encode();
        let h = tlog_core::leaf_hash(&bytes);
        let out = self.rules.evaluate(
            &mut self.state,
            self.index,
            &h,
            &AnyLeaf::Event(Box::new(leaf)),
        );
        self.index += 1;
        out
    }

    fn ev(&mut self, action: Action, name: &str, version: &str, env: &str, by: By) -> Vec<Finding> {
        let id = format!("c-{}", self.index);
        self.push(event(id, action, name, version, env, "someone"), by, 100)
    }

    /// The standard way to production.
    fn release(&mut self, name: &str, version: &str) {
        for (a, env, by) in [
            (Action::Register, "", By::Registry),
            (Action::Approve, "", By::Registry),
            (Action::Deploy, "production", By::Release),
        ] {
            let f = self.ev(a, name, version, env, by);
            assert!(f.is_empty(), "{f:?}");
        }
    }
}

fn rules_of(f: &[Finding]) -> Vec<&str> {
    f.iter().map(|x| x.rule.name()).collect()
}

#[test]
fn digest_conflict_names_both_entries() {
    let mut f = Feed::new();
    f.release("team-a/fraud", "1.0.0");
    let mut e = event(
        "x".into(),
        Action::Upload,
        "team-a/fraud",
        "1.0.0",
        "",
        "mallory",
    );
    e.artifact.digests[0].hex = "ee".repeat(32);
    let out = f.push(e, By::Registry, 100);
    assert_eq!(rules_of(&out), ["digest-conflict"]);
    assert_eq!(
        out[0].entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        [0, 3]
    );
    assert!(out[0].message.contains("two digests"), "{}", out[0].message);
}

#[test]
fn deploys_of_unregistered_unapproved_and_retired_versions() {
    let mut f = Feed::new();
    let out = f.ev(
        Action::Deploy,
        "team-a/m",
        "2.0.0",
        "production",
        By::Release,
    );
    assert_eq!(rules_of(&out), ["unregistered", "unapproved"]);
    f.ev(Action::Register, "team-a/m", "2.1.0", "", By::Registry);
    let out = f.ev(
        Action::Promote,
        "team-a/m",
        "2.1.0",
        "production",
        By::Release,
    );
    assert_eq!(rules_of(&out), ["unapproved"]);
    // Approval is required only where configured.
    let out = f.ev(Action::Promote, "team-a/m", "2.1.0", "staging", By::Release);
    assert!(out.is_empty(), "{out:?}");
    f.release("team-a/r", "1.0.0");
    f.ev(Action::Retire, "team-a/r", "1.0.0", "", By::Registry);
    let out = f.ev(
        Action::Deploy,
        "team-a/r",
        "1.0.0",
        "production",
        By::Release,
    );
    assert_eq!(rules_of(&out), ["deploy-retired"]);
    assert_eq!(out[0].entries.len(), 2, "the retire and the deploy");
}

#[test]
fn version_going_backwards_unless_rollback() {
    let mut g = Feed::new();
    g.release("team-b/m", "1.3.0");
    g.ev(Action::Register, "team-b/m", "1.2.0", "", By::Registry);
    g.ev(Action::Approve, "team-b/m", "1.2.0", "", By::Registry);
    let out = g.ev(
        Action::Deploy,
        "team-b/m",
        "1.2.0",
        "production",
        By::Release,
    );
    assert_eq!(rules_of(&out), ["version-regression"]);
    assert!(
        out[0].message.contains("without a rollback"),
        "{}",
        out[0].message
    );
    // An explicit rollback is fine, and so is going forward again.
    let mut h = Feed::new();
    h.release("team-b/m", "1.2.0");
    h.release("team-b/m", "1.3.0");
    assert!(
        h.ev(
            Action::Rollback,
            "team-b/m",
            "1.2.0",
            "production",
            By::Release
        )
        .is_empty()
    );
    assert!(
        h.ev(
            Action::Deploy,
            "team-b/m",
            "1.3.0",
            "production",
            By::Release
        )
        .is_empty()
    );
    // Another environment has its own history.
    assert!(
        h.ev(Action::Deploy, "team-b/m", "1.2.0", "canary", By::Release)
            .is_empty()
    );
}

#[test]
fn version_pattern_per_namespace() {
    let mut f = Feed::new();
    let out = f.ev(Action::Register, "team-c/m", "latest", "", By::Registry);
    assert_eq!(rules_of(&out), ["version-pattern"]);
    // Outside the namespace, any version string is fine.
    assert!(
        f.ev(Action::Register, "other/m", "latest", "", By::Registry)
            .is_empty()
    );
}

#[test]
fn submitter_and_attestation_rules() {
    let mut f = Feed::new();
    f.ev(Action::Register, "team-d/m", "1.0.0", "", By::Registry);
    f.ev(Action::Approve, "team-d/m", "1.0.0", "", By::Registry);
    let out = f.ev(
        Action::Deploy,
        "team-d/m",
        "1.0.0",
        "production",
        By::Registry,
    );
    assert_eq!(
        rules_of(&out),
        ["submitter-not-allowed", "missing-attestation"]
    );
    assert!(
        out[0].message.contains("spiffe://example.org/registry"),
        "{}",
        out[0].message
    );
}

#[test]
fn access_rate_far_above_baseline() {
    let mut f = Feed::new();
    f.release("team-e/m", "1.0.0");
    // Ten minutes of a steady 10 downloads a minute ...
    for _ in 0..100 {
        let out = f.push(
            event(
                format!("d-{}", f.index),
                Action::Download,
                "team-e/m",
                "1.0.0",
                "",
                "svc-a",
            ),
            By::Registry,
            6_000,
        );
        assert!(out.is_empty(), "{out:?}");
    }
    // ... then 200 in one minute.
    let mut fired = Vec::new();
    for _ in 0..200 {
        fired.extend(f.push(
            event(
                format!("d-{}", f.index),
                Action::Download,
                "team-e/m",
                "1.0.0",
                "",
                "svc-a",
            ),
            By::Registry,
            250,
        ));
    }
    assert_eq!(rules_of(&fired), ["access-rate"], "once per window");
    assert!(
        fired[0].message.contains("svc-a made 100"),
        "{}",
        fired[0].message
    );
    assert!(
        fired[0].message.contains("mean over the previous"),
        "{}",
        fired[0].message
    );
}

#[test]
fn nothing_fires_on_a_benign_history() {
    let history = benign(12_000, 300, 7);
    assert!(history.len() >= 10_000);
    let actions: std::collections::HashSet<_> =
        history.iter().map(|p| p.event.action.as_str()).collect();
    for a in [
        "register", "upload", "approve", "promote", "deploy", "download", "rollback", "retire",
    ] {
        assert!(actions.contains(a), "the history has {a}");
    }
    let mut f = Feed::new();
    for p in history {
        let out = f.push(p.event, p.by, 150);
        assert!(out.is_empty(), "{out:?}");
    }
}
