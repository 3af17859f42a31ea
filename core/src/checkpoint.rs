//! C2SP `tlog-checkpoint`: the signed tree head.
//!
//! <https://c2sp.org/tlog-checkpoint>
//!
//! ```text
//! <origin>\n
//! <tree size, decimal, no leading zeros>\n
//! <root hash, standard base64>\n
//! [<extension line>\n]*
//! ```
//!
//! wrapped in a C2SP signed note. Parsing is strict: a checkpoint has one
//! canonical text, so two different texts never mean the same tree head.

use crate::hash::Hash;
use crate::note::{self, Note, NoteError, Signer, Verifiers};

/// Why a checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The text does not follow the checkpoint format.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The note around it failed to open.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The checkpoint is for a different log.
    #[error("checkpoint origin {got:?} is not the expected {want:?}")]
    WrongOrigin {
        /// The origin in the checkpoint.
        got: String,
        /// The origin expected.
        want: String,
    },
}

/// A tree head: the log's origin, its size and its root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's unique identity, a schema-less URL by convention.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// `MTH` of the first `size` leaves.
    pub root: Hash,
    /// Optional extension lines, without their newlines.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint with no extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The checkpoint text (the note body).
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses checkpoint text strictly.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("must end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::Malformed("empty origin line"));
        }
        if origin.chars().any(char::is_control) {
            return Err(CheckpointError::Malformed("control character in origin"));
        }
        let size_line = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing tree size line"))?;
        let size = parse_size(size_line)?;
        let root_line = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing root hash line"))?;
        let root = Hash::from_base64(root_line)
            .map_err(|_| CheckpointError::Malformed("root is not 32 bytes of base64"))?;
        if root.to_base64() != root_line {
            return Err(CheckpointError::Malformed("root base64 is not canonical"));
        }
        let mut extensions = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err(CheckpointError::Malformed("empty extension line"));
            }
            if line.chars().any(char::is_control) {
                return Err(CheckpointError::Malformed("control character in extension"));
            }
            extensions.push(line.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Signs the checkpoint: the full signed-note text.
    pub fn sign(&self, signer: &Signer) -> Result<String, CheckpointError> {
        Ok(note::sign(&self.to_text(), &[signer])?)
    }
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    if line.is_empty() || !line.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CheckpointError::Malformed(
            "tree size must be decimal digits",
        ));
    }
    if line.len() > 1 && line.starts_with('0') {
        return Err(CheckpointError::Malformed("tree size has a leading zero"));
    }
    line.parse()
        .map_err(|_| CheckpointError::Malformed("tree size does not fit in 64 bits"))
}

/// A checkpoint whose note was opened and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The verified note (text and signatures).
    pub note: Note,
    /// The exact note bytes as received, for evidence.
    pub raw: String,
}

/// Opens a signed checkpoint: verifies the note against `known`, parses
/// the checkpoint strictly, and checks its origin is `origin`.
pub fn open(
    signed: &[u8],
    known: &Verifiers,
    origin: &str,
) -> Result<SignedCheckpoint, CheckpointError> {
    let note = note::open(signed, known)?;
    let checkpoint = Checkpoint::parse(&note.text)?;
    if checkpoint.origin != origin {
        return Err(CheckpointError::WrongOrigin {
            got: checkpoint.origin,
            want: origin.to_owned(),
        });
    }
    Ok(SignedCheckpoint {
        checkpoint,
        note,
        // open() succeeded, so the bytes are UTF-8.
        raw: String::from_utf8_lossy(signed).into_owned(),
    })
}

/// Why a checkpoint a log stored for a size cannot be served as it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredCheckpointError {
    /// It does not verify with the log's key, or is not a checkpoint of
    /// the log's origin.
    #[error("the checkpoint stored at size {size} does not verify with the log's key: {error}")]
    Verify {
        /// The size it is stored under.
        size: u64,
        /// What failed.
        error: CheckpointError,
    },
    /// It verifies, but states another size than it is stored under.
    #[error("the checkpoint stored at size {size} says size {says}")]
    WrongSize {
        /// The size it is stored under.
        size: u64,
        /// The size it states.
        says: u64,
    },
}

/// The one way to read back a checkpoint a log stored for `size`: opened
/// as [`open`] does (signature by `known`, strict parse, `origin`), and
/// stating exactly `size`. Every reader of stored checkpoints (serving,
/// start-up, the lock, recovery, restore) goes through it.
pub fn open_stored(
    note: &str,
    known: &Verifiers,
    origin: &str,
    size: u64,
) -> Result<SignedCheckpoint, StoredCheckpointError> {
    let opened = open(note.as_bytes(), known, origin)
        .map_err(|error| StoredCheckpointError::Verify { size, error })?;
    if opened.checkpoint.size != size {
        return Err(StoredCheckpointError::WrongSize {
            size,
            says: opened.checkpoint.size,
        });
    }
    Ok(opened)
}

/// A signer failed to sign a checkpoint.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignError {
    /// The checkpoint cannot be written as a note (its origin).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The signer itself failed (a key held elsewhere: an HSM, a KMS, a
    /// remote signer); its error is the source.
    #[error("the signer failed: {0}")]
    Signer(#[source] std::sync::Arc<dyn std::error::Error + Send + Sync>),
}

/// What signs a log's checkpoints: the log's Ed25519 key ([`Signer`]) in
/// memory, or a key held elsewhere (an HSM, a KMS) that could fail. A log
/// that cannot sign refuses the batch and appends nothing of it.
pub trait CheckpointSigner: Send + Sync + 'static {
    /// The verifier for this signer's signatures (C2SP signed-note key).
    fn verifier(&self) -> note::Verifier;
    /// Signs `checkpoint` as a signed note (C2SP tlog-checkpoint in a
    /// C2SP signed-note).
    fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<String, SignError>;
}

impl CheckpointSigner for Signer {
    fn verifier(&self) -> note::Verifier {
        Signer::verifier(self)
    }

    fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<String, SignError> {
        Ok(checkpoint.sign(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::empty_root;

    #[test]
    fn text_round_trip_with_extensions() {
        let mut c = Checkpoint::new("example.com/log", 0, empty_root());
        assert_eq!(
            c.to_text(),
            "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        );
        c.extensions.push("ext one".into());
        assert_eq!(Checkpoint::parse(&c.to_text()), Ok(c));
    }

    #[test]
    fn strict_parse_rejects_variants() {
        let root = empty_root().to_base64();
        for bad in [
            format!("o\n01\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n1\n{root}"),
            format!("\n1\n{root}\n"),
            format!("o\n1\n{root}\n\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nZG9uJ3QgY2FyZSAx\n".to_owned(),
            "o\n1\n".to_owned(),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn open_checks_signature_and_origin() {
        let s = Signer::from_seed("example.com/log", &[3; 32]).expect("ok");
        let c = Checkpoint::new("example.com/log", 3, empty_root());
        let signed = c.sign(&s).expect("sign");
        let vs = Verifiers::new([s.verifier()]);
        let opened = open(signed.as_bytes(), &vs, "example.com/log").expect("open");
        assert_eq!(opened.checkpoint, c);
        assert!(matches!(
            open(signed.as_bytes(), &vs, "other"),
            Err(CheckpointError::WrongOrigin { .. })
        ));
    }

    #[test]
    fn a_stored_checkpoint_must_verify_and_state_its_size() {
        let s = Signer::from_seed("example.com/log", &[3; 32]).expect("ok");
        let key = Verifiers::new([s.verifier()]);
        let note = Checkpoint::new("example.com/log", 5, Hash([1; 32]))
            .sign(&s)
            .expect("sign");
        let got = open_stored(&note, &key, "example.com/log", 5).expect("opens");
        assert_eq!(got.checkpoint.size, 5);
        assert_eq!(
            open_stored(&note, &key, "example.com/log", 6).expect_err("size"),
            StoredCheckpointError::WrongSize { size: 6, says: 5 }
        );
        let other = Signer::from_seed("example.com/log", &[4; 32]).expect("ok");
        assert!(matches!(
            open_stored(
                &note,
                &Verifiers::new([other.verifier()]),
                "example.com/log",
                5
            ),
            Err(StoredCheckpointError::Verify { size: 5, .. })
        ));
    }
}
