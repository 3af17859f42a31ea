//! Every file under `merkle-vectors/` must pass or fail as its `wantErr`
//! says. Source: github.com/transparency-dev/merkle `testdata/` (inclusion
//! and consistency), Apache-2.0, copied into `core/tests/testdata/merkle-vectors` (commit and
//! license in `core/tests/testdata/PROVENANCE.md`).
//!
//! Our verifier takes typed 32-byte hashes, so a vector whose hash is not 32
//! bytes fails at parsing (as `wantErr` expects for all but the cases in
//! [`DEVIATIONS`]).

use std::path::Path;

use serde::Deserialize;
use tlog_core::Hash;
use tlog_core::merkle::verify::{parse_proof, verify_consistency, verify_inclusion};

/// Vectors whose outcome we decided differently, with the reason.
///
/// Size 0: we accept `0 -> n` with an empty proof when root1 is `SHA-256()`
/// (C2SP tlog-witness; unit-tested in `merkle::verify`). The size-0
/// vectors here still fail for us as `wantErr` says, each for another
/// reason: a non-empty proof, a root1 that is not the empty root, or a
/// root2 that is not 32 bytes.
const DEVIATIONS: &[(&str, &str)] = &[(
    "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json",
    "the roots are 12 bytes ('don't care 2'); we reject any root that is not a 32-byte \
     SHA-256 hash before comparing",
)];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inclusion {
    leaf_idx: i128,
    tree_size: i128,
    root: Option<String>,
    leaf_hash: Option<String>,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Consistency {
    size1: i128,
    size2: i128,
    root1: Option<String>,
    root2: Option<String>,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

fn b64(s: &Option<String>) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.as_deref().unwrap_or(""))
        .map_err(|e| e.to_string())
}

fn hash(s: &Option<String>) -> Result<Hash, String> {
    Hash::from_slice(&b64(s)?).map_err(|e| e.to_string())
}

fn proof(p: &Option<Vec<String>>) -> Result<Vec<Hash>, String> {
    let raw: Vec<Vec<u8>> = p
        .iter()
        .flatten()
        .map(|e| b64(&Some(e.clone())))
        .collect::<Result<_, _>>()?;
    parse_proof(&raw).map_err(|e| e.to_string())
}

fn size(v: i128) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("negative size {v}"))
}

fn run_inclusion(v: &Inclusion) -> Result<(), String> {
    let leaf = hash(&v.leaf_hash)?;
    let root = hash(&v.root)?;
    let p = proof(&v.proof)?;
    verify_inclusion(size(v.leaf_idx)?, size(v.tree_size)?, &leaf, &p, &root)
        .map_err(|e| e.to_string())
}

fn run_consistency(v: &Consistency) -> Result<(), String> {
    let r1 = hash(&v.root1)?;
    let r2 = hash(&v.root2)?;
    let p = proof(&v.proof)?;
    verify_consistency(size(v.size1)?, size(v.size2)?, &p, &r1, &r2).map_err(|e| e.to_string())
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

#[test]
fn every_vector_passes_or_fails_as_wanted() {
    let root = super::testdata().join("merkle-vectors");
    let mut all = Vec::new();
    files(&root, &mut all);
    // 196 JSON files plus the LICENSE make the 197 files of the folder.
    assert_eq!(all.len(), 196, "expected the 196 JSON vector files");
    let mut failures = Vec::new();
    let mut deviations_seen = 0;
    for path in &all {
        let rel = path
            .strip_prefix(&root)
            .expect("under root")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(path).expect("read vector");
        let (want_err, got, desc) = if rel.starts_with("inclusion/") {
            let v: Inclusion = serde_json::from_str(&text).expect("inclusion vector");
            (v.want_err, run_inclusion(&v), v.desc)
        } else {
            let v: Consistency = serde_json::from_str(&text).expect("consistency vector");
            (v.want_err, run_consistency(&v), v.desc)
        };
        let deviation = DEVIATIONS.iter().find(|(f, _)| *f == rel);
        let want_err = if deviation.is_some() {
            deviations_seen += 1;
            !want_err
        } else {
            want_err
        };
        if got.is_err() != want_err {
            failures.push(format!("{rel} ({desc}): wantErr={want_err}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} vectors disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        deviations_seen,
        DEVIATIONS.len(),
        "a listed deviation file is missing"
    );
}
