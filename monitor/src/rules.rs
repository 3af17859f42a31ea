//! The artifact rules: what the log says happened to models that should
//! not have. The engine sees every entry once, in log order, and keeps what
//! it must remember (versions, digests, registrations, approvals,
//! retirements, what runs where, access baselines) in a state that is saved
//! with the monitor's trusted checkpoint.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tlog_core::Hash;
use tlog_core::event::{Action, ArtifactEvent, Digest};
use tlog_core::leaf::{AnyLeaf, Leaf};

use crate::alert::{EntryRef, Finding, Rule, Severity};
use crate::config::{RulesConfig, glob};

/// What the engine remembers about one (name, version).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VersionInfo {
    /// The digests first seen, `algorithm:hex`.
    pub digests: Vec<String>,
    /// The entry that first named this version.
    pub first: Option<EntryRef>,
    /// The register event.
    pub registered: Option<EntryRef>,
    /// An approve event.
    pub approved: Option<EntryRef>,
    /// The retire event.
    pub retired: Option<EntryRef>,
}

/// A principal's reads and downloads per window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RateInfo {
    /// The first window it was seen in.
    pub first_window: i64,
    /// The current window.
    pub window: i64,
    /// Events in the current window.
    pub count: u64,
    /// Events in all earlier windows.
    pub earlier: u64,
    /// Whether the current window already alerted.
    pub alerted: bool,
}

/// A map with a fast, randomly seeded hash (the keys come from the log).
pub type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Everything the rules remember; saved with the trusted checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RuleState {
    /// By `name\nversion`.
    pub versions: Map<VersionInfo>,
    /// The version last deployed (or rolled back to), by `name\nenvironment`:
    /// (version, entry).
    pub deployed: Map<(String, EntryRef)>,
    /// By principal.
    pub access: Map<RateInfo>,
}

/// The rules with their compiled patterns.
#[derive(Debug)]
pub struct Rules {
    cfg: RulesConfig,
    patterns: Vec<(String, regex::Regex)>,
    require_registered: Vec<Action>,
}

fn digest_text(d: &Digest) -> String {
    format!("{}:{}", d.algorithm, d.hex)
}

fn short(d: &str) -> String {
    match d.split_once(':') {
        Some((a, h)) => format!("{a}:{}", &h[..h.len().min(12)]),
        None => d.to_owned(),
    }
}

fn actions(list: &[String]) -> Vec<Action> {
    list.iter().filter_map(|a| Action::parse(a)).collect()
}

impl Rules {
    /// Compiles the rules (the config was checked by
    /// [`crate::config::Config::check`]; a pattern that does not compile is
    /// an error here too).
    pub fn new(cfg: &RulesConfig) -> Result<Self, regex::Error> {
        let patterns = cfg
            .version_patterns
            .iter()
            .map(|p| {
                regex::Regex::new(&format!("^(?:{})$", p.pattern)).map(|r| (p.namespace.clone(), r))
            })
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            require_registered: actions(&cfg.require_registered),
            cfg: cfg.clone(),
            patterns,
        })
    }

    /// Evaluates one entry, updating `state`; returns what it found.
    pub fn evaluate(
        &self,
        state: &mut RuleState,
        index: u64,
        leaf_hash: &Hash,
        leaf: &AnyLeaf,
    ) -> Vec<Finding> {
        let me = EntryRef {
            index,
            leaf_hash: leaf_hash.to_hex(),
        };
        let mut out = Vec::new();
        match leaf {
            AnyLeaf::Event(l) => {
                self.event(state, &me, l, &mut out);
                if l.event.action == Action::Download {
                    let t = l.integrated_at.as_nanos();
                    self.access(state, &l.event.actor, t, "download", &me, &mut out);
                }
            }
            AnyLeaf::Access(a) => {
                // A read: any call of the service that does not append.
                let read = tlog_core::leaf::is_read_method(&a.method)
                    && a.decision == tlog_core::leaf::Decision::Allow.as_str();
                if read
                    && let Ok(t) = humantime::parse_rfc3339_weak(a.time.trim_end_matches('Z'))
                        .or_else(|_| humantime::parse_rfc3339(&a.time))
                    && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
                {
                    let t = i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
                    self.access(state, &a.principal, t, "read", &me, &mut out);
                }
            }
        }
        out
    }

    fn event(&self, state: &mut RuleState, me: &EntryRef, l: &Leaf, out: &mut Vec<Finding>) {
        let e: &ArtifactEvent = &l.event;
        let name = &e.artifact.name;
        let version = &e.artifact.version;
        let digests = || -> Vec<String> { e.artifact.digests.iter().map(digest_text).collect() };
        let key = format!("{name}\n{version}");
        // Formatted only when a finding needs it.
        let what = || {
            format!(
                "{} of {name}@{version}{}",
                e.action.as_str(),
                if e.environment.is_empty() {
                    String::new()
                } else {
                    format!(" to {}", e.environment)
                }
            )
        };
        let (is_new, info) = match state.versions.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => (false, o.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                (true, v.insert(VersionInfo::default()))
            }
        };
        if is_new {
            info.first = Some(me.clone());
            info.digests = digests();
            for (ns, re) in &self.patterns {
                if glob(ns, name) && !re.is_match(version) {
                    out.push(Finding::new(Rule::VersionPattern, Severity::Medium, format!(
                            "{name} has version {version:?}, which does not match the pattern {:?} required for {ns}",
                            re.as_str()
                        ), vec![me.clone()], me.leaf_hash.clone()));
                }
            }
        } else if self.cfg.digest_conflict {
            // Same algorithm, another value: two different artifacts
            // carry the same name and version.
            let conflict = e.artifact.digests.iter().find_map(|d| {
                info.digests
                    .iter()
                    .find(|o| {
                        o.split_once(':')
                            .is_some_and(|(a, h)| a == d.algorithm && h != d.hex)
                    })
                    .map(|o| (o.clone(), digest_text(d)))
            });
            if let Some((old, new)) = conflict {
                let first = info.first.clone();
                out.push(Finding::new(Rule::DigestConflict, Severity::Critical, format!(
                        "{name}@{version} appears with two digests: {} (entry {}) and {} (entry {}, {})",
                        short(&old),
                        first.as_ref().map(|f| f.index).unwrap_or_default(),
                        short(&new),
                        me.index,
                        e.action.as_str()
                    ), first.into_iter().chain([me.clone()]).collect(), me.leaf_hash.clone()));
            } else {
                for d in &e.artifact.digests {
                    let known = info.digests.iter().any(|o| {
                        o.split_once(':')
                            .is_some_and(|(a, h)| a == d.algorithm && h == d.hex)
                    });
                    if !known {
                        info.digests.push(digest_text(d));
                    }
                }
            }
        }
        let gated = matches!(e.action, Action::Deploy | Action::Promote);
        if self.require_registered.contains(&e.action) && info.registered.is_none() {
            out.push(Finding::new(
                Rule::Unregistered,
                Severity::High,
                format!(
                    "{} by {} ({}), but that version was never registered",
                    what(),
                    l.submitter.principal,
                    digests().first().map(|d| short(d)).unwrap_or_default()
                ),
                vec![me.clone()],
                me.leaf_hash.clone(),
            ));
        }
        for r in &self.cfg.require_approval {
            let applies = glob(&r.namespace, name)
                && actions(&r.actions).contains(&e.action)
                && (r.environments.is_empty() || r.environments.contains(&e.environment));
            if applies && info.approved.is_none() {
                out.push(Finding::new(
                    Rule::Unapproved,
                    Severity::High,
                    format!(
                        "{} by {}, but that version was never approved (required for {} in {})",
                        what(),
                        l.submitter.principal,
                        r.namespace,
                        if r.environments.is_empty() {
                            "every environment".to_owned()
                        } else {
                            r.environments.join(", ")
                        }
                    ),
                    vec![me.clone()],
                    me.leaf_hash.clone(),
                ));
                break;
            }
        }
        if gated
            && self.cfg.deploy_retired
            && let Some(ret) = &info.retired
        {
            {
                out.push(Finding::new(
                    Rule::DeployRetired,
                    Severity::High,
                    format!(
                        "{} by {}, but that version was retired at entry {}",
                        what(),
                        l.submitter.principal,
                        ret.index
                    ),
                    vec![ret.clone(), me.clone()],
                    me.leaf_hash.clone(),
                ));
            }
        }
        match e.action {
            Action::Register if info.registered.is_none() => info.registered = Some(me.clone()),
            Action::Approve if info.approved.is_none() => info.approved = Some(me.clone()),
            Action::Retire if info.retired.is_none() => info.retired = Some(me.clone()),
            _ => {}
        }
        for r in &self.cfg.allowed_submitters {
            if Action::parse(&r.action) == Some(e.action)
                && glob(&r.namespace, name)
                && r.environment
                    .as_ref()
                    .is_none_or(|env| *env == e.environment)
                && !r.principals.contains(&l.submitter.principal)
            {
                out.push(Finding::new(
                    Rule::SubmitterNotAllowed,
                    Severity::High,
                    format!(
                        "{} was submitted by {} ({}), who is not allowed to; allowed: {}",
                        what(),
                        l.submitter.principal,
                        l.submitter.auth_method,
                        r.principals.join(", ")
                    ),
                    vec![me.clone()],
                    me.leaf_hash.clone(),
                ));
                break;
            }
        }
        for r in &self.cfg.required_attestations {
            if Action::parse(&r.action) == Some(e.action)
                && glob(&r.namespace, name)
                && r.environment
                    .as_ref()
                    .is_none_or(|env| *env == e.environment)
            {
                let missing: Vec<&String> = r
                    .signers
                    .iter()
                    .filter(|s| !l.verified_signers.contains(s))
                    .collect();
                if !missing.is_empty() {
                    out.push(Finding::new(
                        Rule::MissingAttestation,
                        Severity::High,
                        format!(
                            "{} by {} lacks a verified attestation by {}",
                            what(),
                            l.submitter.principal,
                            missing
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        vec![me.clone()],
                        me.leaf_hash.clone(),
                    ));
                    break;
                }
            }
        }
        if self.cfg.version_regression
            && matches!(e.action, Action::Deploy | Action::Rollback)
            && !e.environment.is_empty()
        {
            let dkey = format!("{name}\n{}", e.environment);
            if e.action == Action::Deploy
                && let Some((prev, prev_ref)) = state.deployed.get(&dkey)
                && let (Some(new_v), Some(old_v)) = (semver_of(version), semver_of(prev))
                && new_v < old_v
            {
                out.push(Finding::new(Rule::VersionRegression, Severity::High, format!(
                        "{name} {version} was deployed to {} after {prev} (entry {}) without a rollback event",
                        e.environment, prev_ref.index
                    ), vec![prev_ref.clone(), me.clone()], me.leaf_hash.clone()));
            }
            state.deployed.insert(dkey, (version.clone(), me.clone()));
        }
    }

    fn access(
        &self,
        state: &mut RuleState,
        principal: &str,
        time_nanos: i128,
        kind: &str,
        me: &EntryRef,
        out: &mut Vec<Finding>,
    ) {
        let Some(r) = &self.cfg.access_rate else {
            return;
        };
        let w = i128::try_from(r.window.as_nanos())
            .unwrap_or(i128::MAX)
            .max(1);
        let window = i64::try_from(time_nanos.div_euclid(w)).unwrap_or(i64::MAX);
        let info = state
            .access
            .entry(principal.to_owned())
            .or_insert_with(|| RateInfo {
                first_window: window,
                window,
                ..RateInfo::default()
            });
        if window > info.window {
            info.earlier += info.count;
            info.count = 0;
            info.window = window;
            info.alerted = false;
        }
        // Entries arrive in log order; an out-of-order time (clock step)
        // counts in the current window.
        info.count += 1;
        let past = u64::try_from(info.window - info.first_window).unwrap_or(0);
        if past < r.warmup_windows || info.alerted {
            return;
        }
        let mean = info.earlier as f64 / past as f64;
        let threshold = (r.factor * mean).max(r.min_count as f64);
        if info.count as f64 > threshold {
            info.alerted = true;
            let start = i128::from(info.window) * w;
            let start = tlog_core::json::format_time(tlog_core::event::Timestamp {
                seconds: i64::try_from(start.div_euclid(1_000_000_000)).unwrap_or(0),
                nanos: u32::try_from(start.rem_euclid(1_000_000_000)).unwrap_or(0),
            });
            out.push(Finding::new(Rule::AccessRate, Severity::Medium, format!(
                    "{principal} made {} reads and downloads in the {} window starting {start} (this {kind} is the one that crossed the line); \
                     its mean over the previous {past} windows is {mean:.1}; the threshold is {}x the mean and at least {}",
                    info.count,
                    humantime::format_duration(r.window),
                    r.factor,
                    r.min_count
                ), vec![me.clone()], format!("{principal}\n{}", info.window)));
        }
    }
}

/// A version as semantic version, tolerating a leading `v`.
fn semver_of(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v.strip_prefix('v').unwrap_or(v)).ok()
}
