//! Signed-note vectors from Go's `golang.org/x/mod/sumdb/note`
//! (`note_test.go`, BSD-3-Clause), copied into
//! `core/tests/testdata/signed-note/go-note-vectors.json` (provenance in
//! `core/tests/testdata/PROVENANCE.md`).

use std::collections::BTreeMap;

use serde::Deserialize;
use tlog_core::note::{NoteError, Signer, Verifier, Verifiers, open, sign};

#[derive(Deserialize)]
struct Vectors {
    keys: BTreeMap<String, Key>,
    bad_vkeys: Vec<String>,
    sign: SignCase,
    open_cases: Vec<OpenCase>,
}

#[derive(Deserialize)]
struct Key {
    vkey: String,
    skey: Option<String>,
}

#[derive(Deserialize)]
struct SignCase {
    skey_of: String,
    text: String,
    want_note: String,
}

#[derive(Deserialize)]
struct OpenCase {
    desc: String,
    note: String,
    verifiers: Vec<String>,
    want_ok: bool,
    want_verified: Option<Vec<String>>,
    want_unverified: Option<Vec<String>>,
}

fn vectors() -> Vectors {
    let path = super::testdata().join("signed-note/go-note-vectors.json");
    let text = std::fs::read_to_string(&path).expect("read note vectors");
    serde_json::from_str(&text).expect("parse note vectors")
}

#[test]
fn keys_parse_and_match() {
    let v = vectors();
    for (name, key) in &v.keys {
        let verifier = Verifier::from_vkey(&key.vkey).expect("vkey parses");
        assert_eq!(verifier.name(), name);
        assert_eq!(verifier.to_vkey(), key.vkey, "vkey re-encodes identically");
        if let Some(skey) = &key.skey {
            let signer = Signer::from_skey(skey).expect("skey parses");
            assert_eq!(signer.to_skey(), *skey);
            assert_eq!(signer.verifier(), verifier);
        }
    }
}

#[test]
fn mangled_verifier_keys_are_rejected() {
    let v = vectors();
    assert!(!v.bad_vkeys.is_empty());
    for bad in &v.bad_vkeys {
        assert!(Verifier::from_vkey(bad).is_err(), "accepted {bad}");
    }
}

#[test]
fn signer_produces_the_exact_note() {
    let v = vectors();
    let skey = v.keys[&v.sign.skey_of].skey.as_ref().expect("signing key");
    let signer = Signer::from_skey(skey).expect("skey");
    assert_eq!(
        sign(&v.sign.text, &[&signer]).expect("sign"),
        v.sign.want_note
    );
}

#[test]
fn open_cases_succeed_or_fail_as_stated() {
    let v = vectors();
    assert!(v.open_cases.len() >= 10);
    for case in &v.open_cases {
        let known = Verifiers::new(
            case.verifiers
                .iter()
                .map(|n| Verifier::from_vkey(&v.keys[n].vkey).expect("vkey")),
        );
        let got = open(case.note.as_bytes(), &known);
        assert_eq!(got.is_ok(), case.want_ok, "{}: {got:?}", case.desc);
        if let Ok(note) = got {
            let names = |s: &[tlog_core::note::Signature]| -> Vec<String> {
                s.iter().map(|s| s.name.clone()).collect()
            };
            assert_eq!(
                Some(names(&note.verified)),
                case.want_verified,
                "{}",
                case.desc
            );
            assert_eq!(
                Some(names(&note.unverified)),
                case.want_unverified,
                "{}",
                case.desc
            );
        } else if case.desc.contains("corrupted") {
            assert!(
                matches!(got, Err(NoteError::InvalidSignature { .. })),
                "{}",
                case.desc
            );
        }
    }
}
