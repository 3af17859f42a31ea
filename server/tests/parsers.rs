//! Hostile input to the server's file parsers: the configuration file and
//! the Cedar policy, as arbitrary text and as the shipped examples with
//! random bytes changed. Every input gets an answer (a value or an error
//! naming the problem), never a panic. `PROPTEST_CASES` makes the run
//! longer (`scripts/fuzz.sh` does).

use std::path::{Path, PathBuf};

use proptest::prelude::*;

fn example(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `text` with each `(position, byte)` written over it (positions wrap).
fn mutate(text: &str, edits: &[(usize, u8)]) -> String {
    let mut b = text.as_bytes().to_vec();
    for (pos, byte) in edits {
        if !b.is_empty() {
            let n = b.len();
            b[pos % n] = *byte;
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn parse_config(dir: &Path, text: &str) {
    let path: PathBuf = dir.join("server.toml");
    std::fs::write(&path, text).expect("write");
    match tlog_server::ops::config::Config::from_file(&path) {
        Ok(c) => {
            let _ = c.validate();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn parse_policy(text: &str) {
    if let Err(e) = tlog_server::access::authz::Policy::parse(Path::new("policy.cedar"), text) {
        assert!(!e.to_string().is_empty());
    }
}

proptest! {
    #[test]
    fn config_parser_never_panics(text in "\\PC{0,400}") {
        let dir = tempfile::tempdir().expect("tmp");
        parse_config(dir.path(), &text);
    }

    #[test]
    fn config_parser_never_panics_on_a_mutated_example(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)
    ) {
        let dir = tempfile::tempdir().expect("tmp");
        parse_config(dir.path(), &mutate(&example("deploy/config/server.toml"), &edits));
    }

    #[test]
    fn policy_parser_never_panics(text in "\\PC{0,400}") {
        parse_policy(&text);
    }

    #[test]
    fn policy_parser_never_panics_on_a_mutated_example(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)
    ) {
        parse_policy(&mutate(&example("deploy/policy/policy.cedar"), &edits));
    }
}

#[test]
fn the_examples_parse() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("server.toml");
    std::fs::write(&path, example("deploy/config/server.toml")).expect("write");
    tlog_server::ops::config::Config::from_file(&path).expect("example config parses");
    tlog_server::access::authz::Policy::parse(
        Path::new("policy.cedar"),
        &example("deploy/policy/policy.cedar"),
    )
    .expect("example policy parses");
}
