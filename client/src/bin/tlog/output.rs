//! What `tlog` prints: text for people by default, one JSON object per
//! result with `--json`.

use std::path::Path;

use serde_json::json;
use tlog_client::VerifiedEntry;
use tlog_core::Hash;
use tlog_core::bundle::VerifiedBundle;
use tlog_core::checkpoint::SignedCheckpoint;
use tlog_core::json::leaf_json;
use tlog_core::leaf::{AnyLeaf, decode_any};

/// How much of an entry to show.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// After submitting: where it landed.
    Submit,
    /// `get`: the entry's content.
    Get,
    /// `prove`: the proof.
    Prove,
}

/// The checkpoint as JSON.
pub fn checkpoint_json(cp: &SignedCheckpoint) -> serde_json::Value {
    json!({
        "origin": cp.checkpoint.origin,
        "size": cp.checkpoint.size,
        "root_hash": cp.checkpoint.root.to_hex(),
        "signed_note": cp.raw,
    })
}

/// One line about a leaf, for people: escaped, since a leaf written before
/// such text was refused may hold characters that display as others
/// (`tlog_core::text::escaped`).
pub fn summary(leaf: &AnyLeaf) -> String {
    escaped(&summary_raw(leaf))
}

fn summary_raw(leaf: &AnyLeaf) -> String {
    match leaf {
        AnyLeaf::Event(l) => {
            let e = &l.event;
            let mut s = format!(
                "{} {}@{} by {} via {}",
                e.action.as_str(),
                e.artifact.name,
                e.artifact.version,
                e.actor,
                e.interface.as_str()
            );
            if !e.environment.is_empty() {
                s.push_str(&format!(" in {}", e.environment));
            }
            s.push_str(&format!(
                " (submitted by {} [{}])",
                l.submitter.principal, l.submitter.auth_method
            ));
            s
        }
        AnyLeaf::Access(a) => format!(
            "access record: {} {} by {} -> {}",
            a.method, a.decision, a.principal, a.status
        ),
    }
}

use tlog_core::text::escaped;

/// Prints a verified entry.
pub fn entry(e: &VerifiedEntry, json: bool, detail: Detail) {
    let decoded = decode_any(&e.leaf);
    if json {
        let mut v = json!({
            "index": e.index,
            "leaf_hash": e.leaf_hash.to_hex(),
            "checkpoint": checkpoint_json(&e.checkpoint),
            "verified": true,
            "duplicate": e.duplicate,
        });
        if detail != Detail::Submit {
            v["entry"] = decoded
                .as_ref()
                .map(leaf_json)
                .unwrap_or_else(|err| json!({"undecodable": err.to_string()}));
            v["inclusion_proof"] = json!(e.proof.iter().map(Hash::to_hex).collect::<Vec<_>>());
        }
        println!("{v}");
        return;
    }
    println!("index:       {}", e.index);
    println!("leaf hash:   {}", e.leaf_hash);
    if detail != Detail::Submit {
        match &decoded {
            Ok(l) => {
                println!("entry:       {}", summary(l));
                if detail == Detail::Get {
                    let pretty = serde_json::to_string_pretty(&leaf_json(l)).unwrap_or_default();
                    for line in pretty.lines() {
                        // Escaped like the summary.
                        println!("  {}", escaped(line));
                    }
                }
            }
            Err(err) => println!("entry:       (does not decode: {err})"),
        }
    }
    println!(
        "checkpoint:  size {} root {}",
        e.checkpoint.checkpoint.size, e.checkpoint.checkpoint.root
    );
    if detail == Detail::Prove {
        println!("proof:");
        for h in &e.proof {
            println!("  {h}");
        }
    }
    println!(
        "verified:    inclusion proof ({} hashes) against the checkpoint signed by {}{}",
        e.proof.len(),
        e.checkpoint.checkpoint.origin,
        if e.duplicate {
            " (existing entry: this event was already in the log)"
        } else {
            ""
        }
    );
}

/// Prints a verified checkpoint.
pub fn checkpoint(cp: &SignedCheckpoint, json: bool) {
    if json {
        let mut v = checkpoint_json(cp);
        v["verified"] = json!(true);
        println!("{v}");
    } else {
        print!("{}", cp.raw);
        eprintln!(
            "verified: signature by {}, consistent with the trusted state",
            cp.checkpoint.origin
        );
    }
}

/// Prints a checkpoint seen by `watch`.
pub fn watched(cp: &SignedCheckpoint, json: bool) {
    if json {
        let mut v = checkpoint_json(cp);
        v["verified"] = json!(true);
        println!("{v}");
    } else {
        println!(
            "size {} root {} verified (signature, consistent with the previous)",
            cp.checkpoint.size, cp.checkpoint.root
        );
    }
}

/// Prints a proven consistency.
pub fn consistency(old: &SignedCheckpoint, new: &SignedCheckpoint, proof: &[Hash], json: bool) {
    if json {
        println!(
            "{}",
            json!({
                "old": checkpoint_json(old),
                "new": checkpoint_json(new),
                "consistency_proof": proof.iter().map(Hash::to_hex).collect::<Vec<_>>(),
                "verified": true,
            })
        );
        return;
    }
    println!(
        "old:       size {} root {}",
        old.checkpoint.size, old.checkpoint.root
    );
    println!(
        "new:       size {} root {}",
        new.checkpoint.size, new.checkpoint.root
    );
    println!("proof:");
    for h in proof {
        println!("  {h}");
    }
    println!(
        "verified:  both signed by {}; the tree at {} extends the tree at {} ({} hashes, RFC 9162 §2.1.4.2)",
        new.checkpoint.origin,
        new.checkpoint.size,
        old.checkpoint.size,
        proof.len()
    );
}

/// Prints a query's result.
pub fn query(name: &str, cp: &SignedCheckpoint, entries: &[VerifiedEntry], json: bool) {
    if json {
        for e in entries {
            let leaf = decode_any(&e.leaf);
            println!(
                "{}",
                json!({
                    "index": e.index,
                    "leaf_hash": e.leaf_hash.to_hex(),
                    "entry": leaf.as_ref().map(leaf_json).unwrap_or_else(|err| json!({"undecodable": err.to_string()})),
                    "checkpoint_size": cp.checkpoint.size,
                    "verified": true,
                })
            );
        }
        return;
    }
    println!(
        "{} entries for {name}, each proven in the checkpoint at size {} (root {})",
        entries.len(),
        cp.checkpoint.size,
        cp.checkpoint.root
    );
    for e in entries {
        let line = decode_any(&e.leaf)
            .map(|l| {
                let when = match &l {
                    AnyLeaf::Event(x) => tlog_core::json::format_time(x.integrated_at),
                    AnyLeaf::Access(a) => a.time.clone(),
                };
                format!("{when}  {}", summary(&l))
            })
            .unwrap_or_else(|err| format!("(does not decode: {err})"));
        println!("{:>8}  {line}  verified", e.index);
    }
}

/// Prints where a bundle went.
pub fn exported(path: &Path, n: usize, cp: &SignedCheckpoint, vkey: &str, json: bool) {
    if json {
        println!(
            "{}",
            json!({"file": path.display().to_string(), "entries": n, "checkpoint": checkpoint_json(cp)})
        );
    } else {
        println!(
            "wrote {}: {n} entries, each with its inclusion proof against the checkpoint at size {}",
            path.display(),
            cp.checkpoint.size
        );
        println!(
            "check it anywhere, offline: tlog verify-bundle {} --vkey '{vkey}'",
            path.display()
        );
    }
}

/// The witnesses that cosigned a checkpoint, as JSON.
pub fn witnesses_json(c: &[(String, u64)]) -> serde_json::Value {
    c.iter()
        .map(|(n, t)| json!({"name": n, "timestamp": t}))
        .collect()
}

/// The witnesses that cosigned a checkpoint, as a line of text.
pub fn witnesses_line(c: &[(String, u64)]) -> String {
    let names: Vec<&str> = c.iter().map(|(n, _)| n.as_str()).collect();
    format!(
        "the witness policy is satisfied: cosigned by {}",
        if names.is_empty() {
            "no witness (the policy needs none)".to_owned()
        } else {
            names.join(", ")
        }
    )
}

/// Prints a verified bundle (and the witnesses, with a policy).
pub fn bundle_ok(path: &Path, v: &VerifiedBundle, cosigners: Option<&[(String, u64)]>, json: bool) {
    if json {
        println!(
            "{}",
            json!({
                "file": path.display().to_string(),
                "verified": true,
                "key_pinned": v.pinned,
                "witnesses": cosigners.map(witnesses_json),
                "checkpoint": checkpoint_json(&v.checkpoint),
                "entries": v.entries.iter().map(|(i, h, _)| json!({"index": i, "leaf_hash": h.to_hex()})).collect::<Vec<_>>(),
            })
        );
        return;
    }
    println!(
        "{}: {} entries verified against the checkpoint at size {} (root {}) signed by {}",
        path.display(),
        v.entries.len(),
        v.checkpoint.checkpoint.size,
        v.checkpoint.checkpoint.root,
        v.checkpoint.checkpoint.origin
    );
    for (i, _, l) in &v.entries {
        println!("{i:>8}  {}", summary(l));
    }
    if let Some(c) = cosigners {
        println!("{}", witnesses_line(c));
    }
    if !v.pinned {
        eprintln!(
            "warning: checked with the key inside the bundle, which shows the bundle is intact but not who signed it; pin the log's key with --vkey"
        );
    }
}

/// The one line that ends a submission of many events.
pub fn submit_summary(
    new: u64,
    retries: u64,
    secs: f64,
    last: Option<&tlog_core::checkpoint::SignedCheckpoint>,
) -> String {
    let total = new + retries;
    let rate = if secs > 0.0 { total as f64 / secs } else { 0.0 };
    let mut line = format!(
        "submitted {total} events ({new} new, {retries} already in the log) in {secs:.1} s \
         ({rate:.0}/s), each inclusion proof verified"
    );
    if let Some(cp) = last {
        line.push_str(&format!(
            "; the last against the checkpoint at size {}",
            cp.checkpoint.size
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_core::event::{Action, Artifact, ArtifactEvent, Interface};
    use tlog_core::leaf::{Leaf, Submitter};

    #[test]
    fn summaries_show_spoofing_characters_escaped() {
        let leaf = AnyLeaf::Event(Box::new(Leaf {
            version: tlog_core::leaf::LEAF_VERSION,
            event: ArtifactEvent {
                event_id: "e".into(),
                source: "s".into(),
                action: Action::Deploy,
                artifact: Artifact {
                    name: "team-a/evil\u{202E}gpj.exe".into(),
                    version: "1".into(),
                    digests: vec![],
                    media_type: String::new(),
                    uri: String::new(),
                },
                actor: "alice".into(),
                interface: Interface::Api,
                environment: "prod".into(),
                client_time: None,
                provenance: None,
                justification: String::new(),
                ticket: String::new(),
                attestations: vec![],
            },
            submitter: Submitter::default(),
            integrated_at: tlog_core::event::Timestamp {
                seconds: 0,
                nanos: 0,
            },
            verified_signers: vec![],
        }));
        let s = summary(&leaf);
        assert!(s.contains("team-a/evil\\u{202E}gpj.exe"), "{s}");
        assert!(!s.contains('\u{202E}'));
    }
}
