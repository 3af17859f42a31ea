//! C2SP `tlog-witness`: the `add-checkpoint` request and answers, and the
//! checks a witness makes before it cosigns.
//!
//! <https://c2sp.org/tlog-witness>, "add-checkpoint". The HTTP exchange
//! lives in the binaries; this module is the byte formats and the decision,
//! so the log (the client) and the witness (the server) share one reading
//! of the specification.

use crate::checkpoint::Checkpoint;
use crate::hash::{Hash, empty_root};
use crate::merkle::verify::verify_consistency;
use crate::note::{self, NoteError, Signature, Verifiers};

/// Most consistency proof lines a request may carry ("The client MUST NOT
/// send more than 63 consistency proof lines").
pub const MAX_PROOF_LINES: usize = 63;

/// Largest request body a witness reads (a checkpoint with many signatures
/// and 63 proof lines is a few kilobytes).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The `Content-Type` of a 409 answer.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// An `add-checkpoint` request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the client believes the witness holds.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub checkpoint: String,
}

/// Why a request body is malformed (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not UTF-8.
    #[error("the body is not UTF-8")]
    NotUtf8,
    /// The first line is not `old <decimal>`.
    #[error("the first line must be `old <size>` in decimal without leading zeroes")]
    OldLine,
    /// A proof line is not a base64 hash.
    #[error("proof line {0} is not a base64 SHA-256 hash")]
    ProofLine(usize),
    /// More than 63 proof lines.
    #[error("more than {MAX_PROOF_LINES} consistency proof lines")]
    TooManyProofLines,
    /// No empty line before the checkpoint.
    #[error("no empty line between the proof and the checkpoint")]
    NoCheckpoint,
}

/// A decimal with no leading zeroes (`0` for zero), as the old size line
/// and a 409 body encode sizes.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl AddCheckpoint {
    /// Parses a request body (c2sp.org/tlog-witness, "add-checkpoint").
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, RequestError> {
        let body = std::str::from_utf8(body).map_err(|_| RequestError::NotUtf8)?;
        let (first, mut rest) = body.split_once('\n').ok_or(RequestError::OldLine)?;
        let old_size = first
            .strip_prefix("old ")
            .and_then(parse_decimal)
            .ok_or(RequestError::OldLine)?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = rest.split_once('\n').ok_or(RequestError::NoCheckpoint)?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(RequestError::TooManyProofLines);
            }
            let h =
                Hash::from_base64(line).map_err(|_| RequestError::ProofLine(proof.len() + 1))?;
            proof.push(h);
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            checkpoint: rest.to_owned(),
        })
    }

    /// The request body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size);
        for h in &self.proof {
            out.push_str(&h.to_base64());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out.into_bytes()
    }
}

/// A witness's refusal, each with the HTTP status the specification
/// assigns to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the body or the checkpoint is malformed, or the old size is
    /// above the checkpoint's size.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: no valid signature by a trusted key for the origin, or a
    /// trusted key's signature fails.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: the origin is not a log this witness knows.
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    /// 409: the old size is not the size this witness last cosigned.
    #[error("the witness last cosigned size {size}")]
    Conflict {
        /// The size of the latest checkpoint the witness cosigned.
        size: u64,
    },
    /// 422: the checkpoint is not consistent with what the witness holds.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
}

impl Refusal {
    /// The HTTP status code for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownLog(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Unprocessable(_) => 422,
        }
    }
}

/// What a witness holds for one log: the latest checkpoint it cosigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Witnessed {
    /// Its size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
}

/// A request that passed every check: cosign `text` (the checkpoint body)
/// and record `checkpoint` as the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The checkpoint to record.
    pub checkpoint: Checkpoint,
    /// The note text to cosign (the checkpoint body with its final newline).
    pub text: String,
    /// The log's signatures the witness verified, to keep beside its own.
    pub log_signatures: Vec<Signature>,
}

/// The origin (first line) of a checkpoint note, to find the log's keys.
pub fn origin_of(note: &str) -> &str {
    note.split('\n').next().unwrap_or("")
}

/// Makes the checks of "add-checkpoint" in the order the specification
/// lists them. `log_keys` are the keys trusted for the checkpoint's origin
/// (`None`: the origin is unknown); `held` is what the witness last
/// cosigned for it (`None`: never). Storing the result atomically with this
/// check is the caller's job.
pub fn check(
    req: &AddCheckpoint,
    log_keys: Option<&Verifiers>,
    held: Option<Witnessed>,
) -> Result<Accepted, Refusal> {
    let origin = origin_of(&req.checkpoint);
    let keys = log_keys.ok_or_else(|| Refusal::UnknownLog(origin.to_owned()))?;
    let note = note::open(req.checkpoint.as_bytes(), keys).map_err(|e| match e {
        NoteError::Malformed(m) => Refusal::BadRequest(format!("malformed note: {m}")),
        e => Refusal::Forbidden(e.to_string()),
    })?;
    let cp = Checkpoint::parse(&note.text)
        .map_err(|e| Refusal::BadRequest(format!("malformed checkpoint: {e}")))?;
    if cp.origin != origin {
        return Err(Refusal::BadRequest("malformed checkpoint origin".into()));
    }
    if req.old_size > cp.size {
        return Err(Refusal::BadRequest(format!(
            "old size {} is above the checkpoint size {}",
            req.old_size, cp.size
        )));
    }
    let held_size = held.map_or(0, |h| h.size);
    if req.old_size != held_size {
        return Err(Refusal::Conflict { size: held_size });
    }
    if cp.size == 0 && cp.root != empty_root() {
        return Err(Refusal::Unprocessable(
            "a checkpoint of size 0 must have the empty tree's root".into(),
        ));
    }
    match held {
        None => {
            if !req.proof.is_empty() {
                return Err(Refusal::Unprocessable(
                    "the proof must be empty when the old size is 0".into(),
                ));
            }
        }
        Some(h) if h.size == 0 => {
            if !req.proof.is_empty() {
                return Err(Refusal::Unprocessable(
                    "the proof must be empty when the old size is 0".into(),
                ));
            }
        }
        Some(h) if h.size == cp.size => {
            if h.root != cp.root {
                return Err(Refusal::Unprocessable(format!(
                    "size {} was cosigned with a different root hash",
                    h.size
                )));
            }
            if !req.proof.is_empty() {
                return Err(Refusal::Unprocessable(
                    "the consistency proof between equal sizes must be empty".into(),
                ));
            }
        }
        Some(h) => {
            verify_consistency(h.size, cp.size, &req.proof, &h.root, &cp.root).map_err(|e| {
                Refusal::Unprocessable(format!(
                    "the consistency proof from {} to {} does not verify: {e}",
                    h.size, cp.size
                ))
            })?
        }
    }
    Ok(Accepted {
        checkpoint: cp,
        text: note.text,
        log_signatures: note.verified,
    })
}

/// Why a witness's 200 answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not signature lines.
    #[error("the answer is not note signature lines")]
    Malformed,
    /// No cosignature by the witness's key verifies over the checkpoint.
    #[error("the answer has no valid cosignature by the witness's key")]
    NoCosignature,
    /// A cosignature with timestamp zero ("MUST NOT omit the timestamp").
    #[error("the cosignature has timestamp 0")]
    ZeroTimestamp,
}

/// Reads a 200 answer: the signature lines are appended to the checkpoint
/// and the note is opened with the witness's keys only, as the
/// specification suggests; returns the witness's verified cosignatures.
pub fn read_cosignatures(
    checkpoint_text: &str,
    answer: &[u8],
    witness: &Verifiers,
) -> Result<Vec<Signature>, ResponseError> {
    let answer = std::str::from_utf8(answer).map_err(|_| ResponseError::Malformed)?;
    if answer.is_empty() || !answer.ends_with('\n') || answer.contains("\n\n") {
        return Err(ResponseError::Malformed);
    }
    let joined = format!("{checkpoint_text}\n{answer}");
    let note = note::open(joined.as_bytes(), witness).map_err(|e| match e {
        NoteError::NoKnownSignature { .. } => ResponseError::NoCosignature,
        _ => ResponseError::Malformed,
    })?;
    if note
        .verified
        .iter()
        .any(|s| crate::cosignature::timestamp(s) == Some(0))
    {
        return Err(ResponseError::ZeroTimestamp);
    }
    Ok(note.verified)
}

/// Reads a 409 body: the witness's size in decimal and a newline.
pub fn read_conflict(body: &[u8]) -> Option<u64> {
    std::str::from_utf8(body)
        .ok()?
        .strip_suffix('\n')
        .and_then(parse_decimal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosignature::Cosigner;
    use crate::merkle::reference;
    use crate::note::Signer;
    use proptest::prelude::*;

    fn log() -> Signer {
        Signer::from_seed("example.com/log", &[4; 32]).expect("signer")
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| crate::leaf_hash(format!("{i}").as_bytes()))
            .collect()
    }

    fn signed(n: usize) -> (Checkpoint, String) {
        let cp = Checkpoint::new("example.com/log", n as u64, reference::root(&leaves(n)));
        let note = cp.sign(&log()).expect("sign");
        (cp, note)
    }

    fn req(old: usize, new: usize) -> AddCheckpoint {
        let all = leaves(new);
        let proof = if old == 0 || old == new {
            Vec::new()
        } else {
            reference::consistency_proof(old, &all).expect("proof")
        };
        AddCheckpoint {
            old_size: old as u64,
            proof,
            checkpoint: signed(new).1,
        }
    }

    fn keys() -> Verifiers {
        Verifiers::new([log().verifier()])
    }

    fn held(n: usize) -> Option<Witnessed> {
        let (cp, _) = signed(n);
        Some(Witnessed {
            size: cp.size,
            root: cp.root,
        })
    }

    #[test]
    fn the_spec_example_body_round_trips() {
        let body = "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let r = AddCheckpoint::parse(body.as_bytes()).expect("parse");
        assert_eq!(r.old_size, 20_852_014);
        assert_eq!(r.proof.len(), 2);
        assert!(
            r.checkpoint
                .starts_with("example.com/behind-the-sofa\n20852163\n")
        );
        assert_eq!(r.to_bytes(), body.as_bytes());
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        for (body, want) in [
            ("old 01\n\nx\n", RequestError::OldLine),
            ("old -1\n\nx\n", RequestError::OldLine),
            ("old  1\n\nx\n", RequestError::OldLine),
            ("new 1\n\nx\n", RequestError::OldLine),
            ("old 1", RequestError::OldLine),
            ("old 1\nnot-base64\n\nx\n", RequestError::ProofLine(1)),
            ("old 1\nAAAA\n\nx\n", RequestError::ProofLine(1)),
            ("old 1\n", RequestError::NoCheckpoint),
        ] {
            assert_eq!(AddCheckpoint::parse(body.as_bytes()), Err(want), "{body:?}");
        }
        let many = format!(
            "old 1\n{}\nx\n",
            format!("{}\n", Hash([1; 32]).to_base64()).repeat(64)
        );
        assert_eq!(
            AddCheckpoint::parse(many.as_bytes()),
            Err(RequestError::TooManyProofLines)
        );
    }

    #[test]
    fn each_answer_of_the_specification() {
        let k = keys();
        // 200: first contact, then growth with a proof, then the same size.
        let a = check(&req(0, 5), Some(&k), None).expect("first");
        assert_eq!(a.checkpoint.size, 5);
        assert_eq!(a.log_signatures.len(), 1);
        check(&req(5, 9), Some(&k), held(5)).expect("grow");
        check(&req(9, 9), Some(&k), held(9)).expect("same");
        // 404: unknown origin.
        assert!(matches!(
            check(&req(0, 5), None, None),
            Err(Refusal::UnknownLog(o)) if o == "example.com/log"
        ));
        // 403: signed by someone else, or a trusted signature that fails.
        let other = Signer::from_seed("example.com/log", &[5; 32]).expect("signer");
        let mut r = req(0, 5);
        r.checkpoint = signed(5).0.sign(&other).expect("sign");
        assert_eq!(check(&r, Some(&k), None).map_err(|e| e.status()), Err(403));
        let mut r = req(0, 5);
        let at = r.checkpoint.len() - 10;
        let c = if r.checkpoint.as_bytes()[at] == b'A' {
            "B"
        } else {
            "A"
        };
        r.checkpoint.replace_range(at..=at, c);
        assert_eq!(check(&r, Some(&k), None).map_err(|e| e.status()), Err(403));
        // 400: old above the checkpoint.
        let mut r = req(0, 5);
        r.old_size = 6;
        assert_eq!(
            check(&r, Some(&k), held(6)).map_err(|e| e.status()),
            Err(400)
        );
        // 409 with the held size.
        assert_eq!(
            check(&req(3, 9), Some(&k), held(5)),
            Err(Refusal::Conflict { size: 5 })
        );
        assert_eq!(
            check(&req(3, 9), Some(&k), None),
            Err(Refusal::Conflict { size: 0 })
        );
        // 422: a proof with old size 0; a bad proof; a different root at
        // the same size; size 0 with a non-empty root.
        let mut r = req(0, 5);
        r.proof = vec![Hash([1; 32])];
        assert_eq!(check(&r, Some(&k), None).map_err(|e| e.status()), Err(422));
        let mut r = req(5, 9);
        r.proof[0] = Hash([1; 32]);
        assert_eq!(
            check(&r, Some(&k), held(5)).map_err(|e| e.status()),
            Err(422)
        );
        let forked = Some(Witnessed {
            size: 9,
            root: Hash([3; 32]),
        });
        assert_eq!(
            check(&req(9, 9), Some(&k), forked).map_err(|e| e.status()),
            Err(422)
        );
        let zero = Checkpoint::new("example.com/log", 0, Hash([3; 32]));
        let r = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: zero.sign(&log()).expect("sign"),
        };
        assert_eq!(check(&r, Some(&k), None).map_err(|e| e.status()), Err(422));
        // A fork at a smaller size fails the proof from the held root.
        let fork_root = Some(Witnessed {
            size: 5,
            root: Hash([3; 32]),
        });
        assert_eq!(
            check(&req(5, 9), Some(&k), fork_root).map_err(|e| e.status()),
            Err(422)
        );
    }

    #[test]
    fn cosignature_answers_are_read_and_checked() {
        let (cp, _) = signed(5);
        let text = cp.to_text();
        let w = Cosigner::from_seed("witness.example/w1", &[8; 32]).expect("w");
        let vs = Verifiers::new([w.verifier()]);
        let line = format!("{}\n", w.cosign(1_700_000_000, &text).to_line());
        let sigs = read_cosignatures(&text, line.as_bytes(), &vs).expect("read");
        assert_eq!(sigs.len(), 1);
        // Someone else's cosignature only: refused.
        let x = Cosigner::from_seed("witness.example/w1", &[9; 32]).expect("x");
        let other = format!("{}\n", x.cosign(1_700_000_000, &text).to_line());
        assert_eq!(
            read_cosignatures(&text, other.as_bytes(), &vs),
            Err(ResponseError::NoCosignature)
        );
        let zero = format!("{}\n", w.cosign(0, &text).to_line());
        assert_eq!(
            read_cosignatures(&text, zero.as_bytes(), &vs),
            Err(ResponseError::ZeroTimestamp)
        );
        assert_eq!(
            read_cosignatures(&text, b"hello\n", &vs),
            Err(ResponseError::Malformed)
        );
        assert_eq!(read_conflict(b"17\n"), Some(17));
        assert_eq!(read_conflict(b"017\n"), None);
        assert_eq!(read_conflict(b"17"), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = AddCheckpoint::parse(&body);
        }

        #[test]
        fn requests_round_trip(old in 0u64..u64::MAX, n in 0usize..63, cp in "[a-z.]{1,20}\n[0-9]{1,5}\n") {
            let r = AddCheckpoint {
                old_size: old,
                proof: (0..n).map(|i| Hash([i as u8; 32])).collect(),
                checkpoint: cp,
            };
            prop_assert_eq!(AddCheckpoint::parse(&r.to_bytes()), Ok(r));
        }

        #[test]
        fn honest_growth_is_always_cosigned(old in 0usize..40, extra in 0usize..40) {
            let new = old + extra;
            let h = if old == 0 { None } else { held(old) };
            prop_assert!(check(&req(old, new), Some(&keys()), h).is_ok());
        }
    }
}
