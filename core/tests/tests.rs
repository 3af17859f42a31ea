//! Integration tests for `tlog-core`, one module per concern.

/// RFC 9162 known-answer vectors from transparency-dev/merkle.
mod known_answer;
/// Signed-note vectors from Go's `sumdb/note`.
mod note_vectors;
/// `rs_merkle` as an independent oracle for roots and inclusion proofs.
mod oracle;
/// Property tests: proofs, parsers, signatures.
mod properties;
/// `tlog_tiles` as an independent oracle for tile paths and bytes.
mod tiles_oracle;

use std::path::PathBuf;

/// The test vectors carried by this repository (`core/tests/testdata`,
/// provenance in its `PROVENANCE.md`), or `TLOG_TESTDATA` if set.
pub fn testdata() -> PathBuf {
    if let Some(p) = std::env::var_os("TLOG_TESTDATA") {
        return PathBuf::from(p);
    }
    // At run time, so that a test binary built from another checkout of
    // the same code (a shared build folder) reads its own checkout's copy.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let p = dir.join("tests/testdata");
    assert!(
        p.is_dir(),
        "test vectors not found at {}: they are part of the repository \
         (core/tests/testdata); or set TLOG_TESTDATA",
        p.display()
    );
    p
}
