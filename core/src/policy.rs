//! C2SP `tlog-policy`: which logs and witnesses a verifier trusts, and the
//! quorum of witness cosignatures a checkpoint needs.
//!
//! <https://c2sp.org/tlog-policy>
//!
//! The file is line based ("Structure"): items are separated by spaces and
//! tabs only, blank lines and `#` comments are ignored, and a `group` or
//! `quorum` line may name only witnesses and groups defined before it. The
//! only control characters allowed are tab and newline ("Character set");
//! octets with the high bit set are opaque, so names are compared as bytes.
//!
//! [`Policy::check`] applies a policy to a signed checkpoint: signed by one
//! of the policy's logs (or a log the caller knows from context), and
//! cosigned (c2sp.org/tlog-cosignature) by witnesses satisfying the quorum.

use std::collections::HashSet;

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::note::{ALG_COSIGNATURE_V1, ALG_ED25519, KeyError, Verifier, Verifiers};

/// Most lines of each kind a policy may define. The specification
/// recommends supporting at least 32 logs, witnesses and groups
/// ("Implementation limits"); this allows far more.
pub const MAX_ITEMS: usize = 1024;

/// A log a policy trusts (`log <vkey> [<url>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLog {
    /// The log's key; its name is the log's origin.
    pub verifier: Verifier,
    /// Where to reach the log, if given.
    pub url: Option<String>,
}

/// A witness a policy trusts (`witness <name> <vkey> [<url>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWitness {
    /// The name the policy's groups and quorum use (opaque bytes).
    pub name: Vec<u8>,
    /// The witness's cosignature key (type 0x04).
    pub verifier: Verifier,
    /// The witness's submission prefix (c2sp.org/tlog-witness), if given.
    pub url: Option<String>,
}

impl PolicyWitness {
    /// The policy name for messages (lossy for non-UTF-8 names).
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: Vec<u8>,
    threshold: usize,
    members: Vec<Member>,
}

/// What a checkpoint must carry to be valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quorum {
    None,
    One(Member),
}

/// A parsed, checked policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    quorum: Quorum,
}

/// What is wrong with a policy file, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy line {line}: {kind}")]
pub struct PolicyError {
    /// The line, counting from 1 (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub kind: PolicyErrorKind,
}

/// The ways a policy file can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyErrorKind {
    /// A control character other than tab and newline (a CR too).
    #[error("control character 0x{0:02x} (only tab and newline are allowed)")]
    ControlCharacter(u8),
    /// The line starts with a word that is not a keyword.
    #[error("unknown keyword {0:?} (want log, witness, group or quorum)")]
    UnknownKeyword(String),
    /// Too few or too many items for the keyword.
    #[error("{keyword} takes {want}")]
    Arity {
        /// The keyword.
        keyword: &'static str,
        /// What it takes.
        want: &'static str,
    },
    /// A key that does not parse.
    #[error("bad key: {0}")]
    Key(#[from] KeyError),
    /// A log key that is not an Ed25519 note key, or a witness key that is
    /// not a cosignature/v1 key.
    #[error("a {role} key must have signature type 0x{want:02x}, this one has 0x{got:02x}")]
    KeyType {
        /// `log` or `witness`.
        role: &'static str,
        /// The type it must have.
        want: u8,
        /// The type it has.
        got: u8,
    },
    /// A second log or witness with the same public key.
    #[error("a {0} with this public key is already defined")]
    DuplicateKey(&'static str),
    /// A name defined twice (witnesses and groups share one namespace).
    #[error("the name {0:?} is already defined")]
    DuplicateName(String),
    /// `none` may be used only as the quorum.
    #[error("the name none is predefined: it cannot be defined or be a group member")]
    ReservedName,
    /// A name used before it is defined.
    #[error("{0:?} is not a witness or group defined on an earlier line")]
    UnknownName(String),
    /// A name listed twice in one group.
    #[error("{0:?} is listed twice in this group")]
    DuplicateMember(String),
    /// The threshold is not `all`, `any` or a decimal in `1..=n`.
    #[error("threshold {got:?} must be all, any, or a decimal from 1 to {members}")]
    Threshold {
        /// What the line says.
        got: String,
        /// How many members the group has.
        members: usize,
    },
    /// A second `quorum` line.
    #[error("a policy has exactly one quorum line; this is the second")]
    QuorumTwice,
    /// No `quorum` line.
    #[error("the policy has no quorum line (write `quorum none` to require no cosignatures)")]
    NoQuorum,
    /// More than [`MAX_ITEMS`] of something.
    #[error("more than {MAX_ITEMS} {0} lines")]
    TooMany(&'static str),
    /// A URL that is not UTF-8.
    #[error("the URL is not UTF-8")]
    Url,
}

/// Why a checkpoint does not satisfy a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// The note or checkpoint is malformed, a known key's signature fails,
    /// or no trusted log signed it for its origin.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The origin is not one of the policy's logs.
    #[error("the policy does not list a log with origin {0:?}")]
    UnknownLog(String),
    /// Only witnesses signed: no signature by the log's key.
    #[error("the checkpoint carries no valid signature by the log's key {0:?}")]
    NoLogSignature(String),
    /// Valid, but too few witnesses cosigned.
    #[error(
        "the checkpoint is cosigned by {} but the policy's quorum needs more",
        if cosigners.is_empty() { "no trusted witness".to_owned() } else { cosigners.join(", ") }
    )]
    NotEnough {
        /// The policy names of the witnesses whose cosignatures verified.
        cosigners: Vec<String>,
    },
}

/// A checkpoint that satisfied a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Satisfied {
    /// The opened checkpoint.
    pub checkpoint: checkpoint::SignedCheckpoint,
    /// The policy names of the witnesses whose cosignatures verified, with
    /// each cosignature's timestamp.
    pub cosigners: Vec<(String, u64)>,
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Policy {
    /// Parses a policy file (c2sp.org/tlog-policy, "Policy file syntax and
    /// structure"). A last line without its newline is accepted.
    pub fn parse(file: &[u8]) -> Result<Policy, PolicyError> {
        let mut p = Policy {
            logs: Vec::new(),
            witnesses: Vec::new(),
            groups: Vec::new(),
            quorum: Quorum::None,
        };
        let mut have_quorum = false;
        let mut names: HashSet<Vec<u8>> = HashSet::new();
        let body = file.strip_suffix(b"\n").unwrap_or(file);
        for (n, line) in body.split(|b| *b == b'\n').enumerate() {
            let err = |kind| PolicyError { line: n + 1, kind };
            if let Some(&c) = line
                .iter()
                .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
            {
                return Err(err(PolicyErrorKind::ControlCharacter(c)));
            }
            let words: Vec<&[u8]> = line
                .split(|b| is_space(*b))
                .filter(|w| !w.is_empty())
                .collect();
            let Some((&keyword, args)) = words.split_first() else {
                continue;
            };
            if keyword.first() == Some(&b'#') {
                continue;
            }
            match keyword {
                b"log" => {
                    let (vkey, url) = match args {
                        [k] => (*k, None),
                        [k, u] => (*k, Some(*u)),
                        _ => {
                            return Err(err(PolicyErrorKind::Arity {
                                keyword: "log",
                                want: "a vkey and an optional URL",
                            }));
                        }
                    };
                    let verifier = key(vkey, "log", ALG_ED25519).map_err(err)?;
                    if p.logs
                        .iter()
                        .any(|l| l.verifier.public_key() == verifier.public_key())
                    {
                        return Err(err(PolicyErrorKind::DuplicateKey("log")));
                    }
                    if p.logs.len() == MAX_ITEMS {
                        return Err(err(PolicyErrorKind::TooMany("log")));
                    }
                    p.logs.push(PolicyLog {
                        verifier,
                        url: url.map(utf8_url).transpose().map_err(err)?,
                    });
                }
                b"witness" => {
                    let (name, vkey, url) = match args {
                        [n, k] => (*n, *k, None),
                        [n, k, u] => (*n, *k, Some(*u)),
                        _ => {
                            return Err(err(PolicyErrorKind::Arity {
                                keyword: "witness",
                                want: "a name, a vkey and an optional URL",
                            }));
                        }
                    };
                    define(&mut names, name).map_err(err)?;
                    let verifier = key(vkey, "witness", ALG_COSIGNATURE_V1).map_err(err)?;
                    if p.witnesses
                        .iter()
                        .any(|w| w.verifier.public_key() == verifier.public_key())
                    {
                        return Err(err(PolicyErrorKind::DuplicateKey("witness")));
                    }
                    if p.witnesses.len() == MAX_ITEMS {
                        return Err(err(PolicyErrorKind::TooMany("witness")));
                    }
                    p.witnesses.push(PolicyWitness {
                        name: name.to_vec(),
                        verifier,
                        url: url.map(utf8_url).transpose().map_err(err)?,
                    });
                }
                b"group" => {
                    let [name, threshold, members @ ..] = args else {
                        return Err(err(PolicyErrorKind::Arity {
                            keyword: "group",
                            want: "a name, a threshold and at least one member",
                        }));
                    };
                    if members.is_empty() {
                        return Err(err(PolicyErrorKind::Arity {
                            keyword: "group",
                            want: "a name, a threshold and at least one member",
                        }));
                    }
                    let mut list = Vec::with_capacity(members.len());
                    for m in members {
                        let member = p.lookup(m).map_err(err)?;
                        if list.contains(&member) {
                            return Err(err(PolicyErrorKind::DuplicateMember(text(m))));
                        }
                        list.push(member);
                    }
                    let k = match *threshold {
                        b"all" => list.len(),
                        b"any" => 1,
                        t => parse_threshold(t)
                            .filter(|k| (1..=list.len()).contains(k))
                            .ok_or_else(|| {
                                err(PolicyErrorKind::Threshold {
                                    got: text(t),
                                    members: list.len(),
                                })
                            })?,
                    };
                    // Defined after its members are resolved: a group
                    // cannot list itself.
                    define(&mut names, name).map_err(err)?;
                    if p.groups.len() == MAX_ITEMS {
                        return Err(err(PolicyErrorKind::TooMany("group")));
                    }
                    p.groups.push(Group {
                        name: name.to_vec(),
                        threshold: k,
                        members: list,
                    });
                }
                b"quorum" => {
                    let [name] = args else {
                        return Err(err(PolicyErrorKind::Arity {
                            keyword: "quorum",
                            want: "exactly one name",
                        }));
                    };
                    if have_quorum {
                        return Err(err(PolicyErrorKind::QuorumTwice));
                    }
                    have_quorum = true;
                    p.quorum = if *name == b"none" {
                        Quorum::None
                    } else {
                        Quorum::One(p.lookup(name).map_err(err)?)
                    };
                }
                other => return Err(err(PolicyErrorKind::UnknownKeyword(text(other)))),
            }
        }
        if !have_quorum {
            return Err(PolicyError {
                line: 0,
                kind: PolicyErrorKind::NoQuorum,
            });
        }
        Ok(p)
    }

    fn lookup(&self, name: &[u8]) -> Result<Member, PolicyErrorKind> {
        if name == b"none" {
            return Err(PolicyErrorKind::ReservedName);
        }
        if let Some(i) = self.witnesses.iter().position(|w| w.name == name) {
            return Ok(Member::Witness(i));
        }
        if let Some(i) = self.groups.iter().position(|g| g.name == name) {
            return Ok(Member::Group(i));
        }
        Err(PolicyErrorKind::UnknownName(text(name)))
    }

    /// The logs the policy lists.
    pub fn logs(&self) -> &[PolicyLog] {
        &self.logs
    }

    /// The witnesses the policy lists.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// True for `quorum none`: no cosignature is needed.
    pub fn needs_no_cosignatures(&self) -> bool {
        self.quorum == Quorum::None
    }

    /// Whether witnesses `cosigned` (indexes into [`Policy::witnesses`])
    /// satisfy the quorum. Groups are evaluated once each, in definition
    /// order, so the cost is linear in the policy's size.
    pub fn quorum_met(&self, cosigned: &[bool]) -> bool {
        let witness = |i: usize| cosigned.get(i).copied().unwrap_or(false);
        let mut met = Vec::with_capacity(self.groups.len());
        for g in &self.groups {
            let count = g
                .members
                .iter()
                .filter(|m| match **m {
                    Member::Witness(i) => witness(i),
                    Member::Group(j) => met.get(j).copied().unwrap_or(false),
                })
                .count();
            met.push(count >= g.threshold);
        }
        match self.quorum {
            Quorum::None => true,
            Quorum::One(Member::Witness(i)) => witness(i),
            Quorum::One(Member::Group(j)) => met.get(j).copied().unwrap_or(false),
        }
    }

    /// Checks a signed checkpoint against the policy: it verifies under a
    /// log of the policy whose name is its origin (or under `context_log`,
    /// a log known from elsewhere), and the witnesses whose cosignatures
    /// verify satisfy the quorum. A signature by a known key that does not
    /// verify fails the whole note (c2sp.org/signed-note).
    pub fn check(
        &self,
        note: &[u8],
        context_log: Option<&Verifier>,
    ) -> Result<Satisfied, QuorumError> {
        let origin = note
            .split(|b| *b == b'\n')
            .next()
            .map(text)
            .unwrap_or_default();
        let log = self
            .logs
            .iter()
            .map(|l| &l.verifier)
            .chain(context_log)
            .find(|v| v.name() == origin)
            .ok_or_else(|| QuorumError::UnknownLog(origin.clone()))?;
        let known = Verifiers::new(
            std::iter::once(log.clone()).chain(self.witnesses.iter().map(|w| w.verifier.clone())),
        );
        let cp = checkpoint::open(note, &known, &origin)?;
        if !cp
            .note
            .verified
            .iter()
            .any(|s| s.name == log.name() && s.key_id == log.key_id())
        {
            return Err(QuorumError::NoLogSignature(log.name().to_owned()));
        }
        let mut cosigned = vec![false; self.witnesses.len()];
        let mut cosigners = Vec::new();
        for s in &cp.note.verified {
            if let Some(i) = self
                .witnesses
                .iter()
                .position(|w| w.verifier.name() == s.name && w.verifier.key_id() == s.key_id)
                && !cosigned[i]
            {
                cosigned[i] = true;
                let ts = crate::cosignature::timestamp(s).unwrap_or(0);
                cosigners.push((self.witnesses[i].display_name(), ts));
            }
        }
        if !self.quorum_met(&cosigned) {
            return Err(QuorumError::NotEnough {
                cosigners: cosigners.into_iter().map(|(n, _)| n).collect(),
            });
        }
        Ok(Satisfied {
            checkpoint: cp,
            cosigners,
        })
    }

    /// The parsed checkpoint of a note that satisfies the policy.
    pub fn checkpoint(
        &self,
        note: &[u8],
        context_log: Option<&Verifier>,
    ) -> Result<Checkpoint, QuorumError> {
        Ok(self.check(note, context_log)?.checkpoint.checkpoint)
    }
}

fn key(vkey: &[u8], role: &'static str, want: u8) -> Result<Verifier, PolicyErrorKind> {
    let s = std::str::from_utf8(vkey).map_err(|_| KeyError::Malformed("key is not UTF-8"))?;
    let v = Verifier::from_vkey(s)?;
    if v.alg() != want {
        return Err(PolicyErrorKind::KeyType {
            role,
            want,
            got: v.alg(),
        });
    }
    Ok(v)
}

fn define(names: &mut HashSet<Vec<u8>>, name: &[u8]) -> Result<(), PolicyErrorKind> {
    if name == b"none" {
        return Err(PolicyErrorKind::ReservedName);
    }
    if !names.insert(name.to_vec()) {
        return Err(PolicyErrorKind::DuplicateName(text(name)));
    }
    Ok(())
}

fn utf8_url(u: &[u8]) -> Result<String, PolicyErrorKind> {
    String::from_utf8(u.to_vec()).map_err(|_| PolicyErrorKind::Url)
}

/// A decimal threshold: digits only (no sign), no leading zero.
fn parse_threshold(t: &[u8]) -> Option<usize> {
    if t.is_empty() || !t.iter().all(u8::is_ascii_digit) || (t.len() > 1 && t[0] == b'0') {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosignature::Cosigner;
    use crate::hash::Hash;
    use crate::note::{Signer, add_signatures};
    use proptest::prelude::*;

    fn witness(i: u8) -> Cosigner {
        Cosigner::from_seed(&format!("w{i}.example"), &[i; 32]).expect("cosigner")
    }

    fn log() -> Signer {
        Signer::from_seed("log.example/a", &[200; 32]).expect("signer")
    }

    fn two_of_three() -> String {
        format!(
            "# a comment\n\nlog {}\n\twitness X1 {} http://127.0.0.1:1/\nwitness X2 {}\nwitness X3 {}\ngroup X 2 X1 X2 X3  \nquorum X\n",
            log().verifier().to_vkey(),
            witness(1).verifier().to_vkey(),
            witness(2).verifier().to_vkey(),
            witness(3).verifier().to_vkey(),
        )
    }

    fn note(cosigners: &[u8]) -> String {
        let cp = Checkpoint::new("log.example/a", 3, Hash([7; 32]));
        let text = cp.to_text();
        let signed = cp.sign(&log()).expect("sign");
        let sigs: Vec<_> = cosigners
            .iter()
            .map(|i| witness(*i).cosign(1_700_000_000 + u64::from(*i), &text))
            .collect();
        add_signatures(&signed, &sigs).expect("add")
    }

    #[test]
    fn parses_the_example_shape() {
        let p = Policy::parse(two_of_three().as_bytes()).expect("parse");
        assert_eq!(p.logs().len(), 1);
        assert_eq!(p.witnesses().len(), 3);
        assert_eq!(p.witnesses()[0].url.as_deref(), Some("http://127.0.0.1:1/"));
        assert!(!p.quorum_met(&[true, false, false]));
        assert!(p.quorum_met(&[true, false, true]));
        assert!(p.quorum_met(&[true, true, true]));
    }

    #[test]
    fn two_levels_of_groups() {
        let mut text = String::new();
        for i in 1..=6u8 {
            text += &format!("witness W{i} {}\n", witness(i).verifier().to_vkey());
        }
        text += "group X 2 W1 W2 W3\ngroup Y any W4 W5 W6\ngroup XY all X Y\nquorum XY\n";
        let p = Policy::parse(text.as_bytes()).expect("parse");
        assert!(p.quorum_met(&[true, true, false, false, false, true]));
        assert!(!p.quorum_met(&[true, true, true, false, false, false]));
        assert!(!p.quorum_met(&[true, false, false, true, true, true]));
    }

    #[test]
    fn checks_checkpoints_against_the_quorum() {
        let p = Policy::parse(two_of_three().as_bytes()).expect("parse");
        let ok = p.check(note(&[1, 3]).as_bytes(), None).expect("2 of 3");
        assert_eq!(
            ok.cosigners,
            vec![
                ("X1".to_owned(), 1_700_000_001),
                ("X3".to_owned(), 1_700_000_003)
            ]
        );
        assert_eq!(
            p.check(note(&[2]).as_bytes(), None),
            Err(QuorumError::NotEnough {
                cosigners: vec!["X2".into()]
            })
        );
        // A cosignature repeated does not count twice.
        let twice = add_signatures(
            &note(&[2]),
            &[witness(2).cosign(
                5,
                &Checkpoint::new("log.example/a", 3, Hash([7; 32])).to_text(),
            )],
        )
        .expect("add");
        assert!(matches!(
            p.check(twice.as_bytes(), None),
            Err(QuorumError::NotEnough { .. })
        ));
        // An untrusted witness is ignored.
        let stranger = add_signatures(
            &note(&[1]),
            &[witness(9).cosign(
                5,
                &Checkpoint::new("log.example/a", 3, Hash([7; 32])).to_text(),
            )],
        )
        .expect("add");
        assert!(matches!(
            p.check(stranger.as_bytes(), None),
            Err(QuorumError::NotEnough { .. })
        ));
        // A trusted witness's cosignature that fails spoils the note.
        let mut bad = note(&[1, 2, 3]);
        let at = bad.rfind("— w3.example ").expect("line") + "— w3.example ".len() + 20;
        let c = if bad.as_bytes()[at] == b'A' { "B" } else { "A" };
        bad.replace_range(at..=at, c);
        assert!(matches!(
            p.check(bad.as_bytes(), None),
            Err(QuorumError::Checkpoint(_))
        ));
    }

    #[test]
    fn a_witness_cannot_stand_in_for_the_log() {
        let p = Policy::parse(two_of_three().as_bytes()).expect("parse");
        let cp = Checkpoint::new("log.example/a", 3, Hash([7; 32]));
        let text = cp.to_text();
        // A note signed only by witnesses (the log signature stripped).
        let w1 = witness(1).cosign(1, &text).to_line();
        let w2 = witness(2).cosign(2, &text).to_line();
        let forged = format!("{text}\n{w1}\n{w2}\n");
        assert_eq!(
            p.check(forged.as_bytes(), None),
            Err(QuorumError::NoLogSignature("log.example/a".into()))
        );
    }

    #[test]
    fn a_log_known_from_context() {
        let text = format!(
            "witness X1 {}\nquorum X1\n",
            witness(1).verifier().to_vkey()
        );
        let p = Policy::parse(text.as_bytes()).expect("parse");
        assert!(matches!(
            p.check(note(&[1]).as_bytes(), None),
            Err(QuorumError::UnknownLog(_))
        ));
        p.check(note(&[1]).as_bytes(), Some(&log().verifier()))
            .expect("context log");
    }

    #[test]
    fn quorum_none_needs_only_the_log() {
        let text = format!("log {}\nquorum none\n", log().verifier().to_vkey());
        let p = Policy::parse(text.as_bytes()).expect("parse");
        assert!(p.needs_no_cosignatures());
        p.check(note(&[]).as_bytes(), None).expect("no quorum");
    }

    #[test]
    fn refuses_each_malformation() {
        let w1 = witness(1).verifier().to_vkey();
        let w1b = Verifier::new(
            "other.name",
            ALG_COSIGNATURE_V1,
            *witness(1).verifier().public_key(),
        )
        .expect("v")
        .to_vkey();
        let l = log().verifier().to_vkey();
        let cases: Vec<(String, PolicyErrorKind)> = vec![
            (
                "quorum none\r\n".into(),
                PolicyErrorKind::ControlCharacter(b'\r'),
            ),
            (
                "frob x\nquorum none\n".into(),
                PolicyErrorKind::UnknownKeyword("frob".into()),
            ),
            (
                format!("witness A {w1}\nwitness B {w1b}\nquorum A\n"),
                PolicyErrorKind::DuplicateKey("witness"),
            ),
            (
                format!("log {l}\nlog {l}\nquorum none\n"),
                PolicyErrorKind::DuplicateKey("log"),
            ),
            (
                format!("witness A {w1}\ngroup A any A\nquorum A\n"),
                PolicyErrorKind::DuplicateName("A".into()),
            ),
            (
                format!("witness none {w1}\nquorum none\n"),
                PolicyErrorKind::ReservedName,
            ),
            (
                format!("witness A {w1}\ngroup G any A none\nquorum G\n"),
                PolicyErrorKind::ReservedName,
            ),
            (
                format!("witness A {w1}\ngroup G any A B\nquorum G\n"),
                PolicyErrorKind::UnknownName("B".into()),
            ),
            (
                format!("witness A {w1}\ngroup G any A A\nquorum G\n"),
                PolicyErrorKind::DuplicateMember("A".into()),
            ),
            (
                format!("witness A {w1}\ngroup G 2 A\nquorum G\n"),
                PolicyErrorKind::Threshold {
                    got: "2".into(),
                    members: 1,
                },
            ),
            (
                format!("witness A {w1}\ngroup G 0 A\nquorum G\n"),
                PolicyErrorKind::Threshold {
                    got: "0".into(),
                    members: 1,
                },
            ),
            (
                format!("witness A {w1}\ngroup G 01 A\nquorum G\n"),
                PolicyErrorKind::Threshold {
                    got: "01".into(),
                    members: 1,
                },
            ),
            (
                format!("witness A {w1}\ngroup G any\nquorum G\n"),
                PolicyErrorKind::Arity {
                    keyword: "group",
                    want: "a name, a threshold and at least one member",
                },
            ),
            (
                "quorum none\nquorum none\n".into(),
                PolicyErrorKind::QuorumTwice,
            ),
            (
                "quorum X\n".into(),
                PolicyErrorKind::UnknownName("X".into()),
            ),
            (
                format!("witness A {l}\nquorum A\n"),
                PolicyErrorKind::KeyType {
                    role: "witness",
                    want: ALG_COSIGNATURE_V1,
                    got: ALG_ED25519,
                },
            ),
            (
                format!("log {w1}\nquorum none\n"),
                PolicyErrorKind::KeyType {
                    role: "log",
                    want: ALG_ED25519,
                    got: ALG_COSIGNATURE_V1,
                },
            ),
            (
                "group G any\nquorum none\n".into(),
                PolicyErrorKind::Arity {
                    keyword: "group",
                    want: "a name, a threshold and at least one member",
                },
            ),
        ];
        for (text, want) in cases {
            let got = Policy::parse(text.as_bytes()).expect_err(&text);
            assert_eq!(got.kind, want, "{text}");
        }
        assert_eq!(
            Policy::parse(b"# nothing\n").expect_err("no quorum").kind,
            PolicyErrorKind::NoQuorum
        );
        // A group may reference only earlier lines: a group defined later
        // (or itself) is unknown.
        let later = format!("group G any A\nwitness A {w1}\nquorum G\n");
        assert_eq!(
            Policy::parse(later.as_bytes()).expect_err("order").kind,
            PolicyErrorKind::UnknownName("A".into())
        );
        let itself = format!("witness A {w1}\ngroup G any A G\nquorum G\n");
        assert_eq!(
            Policy::parse(itself.as_bytes()).expect_err("self").kind,
            PolicyErrorKind::UnknownName("G".into())
        );
    }

    #[test]
    fn names_are_opaque_bytes() {
        let text = [
            b"witness K ".as_slice(),
            witness(1).verifier().to_vkey().as_bytes(),
            b"\nwitness \xE2\x84\xAA ",
            witness(2).verifier().to_vkey().as_bytes(),
            b"\ngroup G all K \xE2\x84\xAA\nquorum G",
        ]
        .concat();
        let p = Policy::parse(&text).expect("parse");
        assert_eq!(p.witnesses().len(), 2);
        assert!(!p.quorum_met(&[true, false]));
    }

    #[test]
    fn deep_groups_are_linear() {
        // Each group lists the two before it: naive recursion would take
        // 2^n steps.
        let mut text = format!(
            "witness A {}\nwitness B {}\n",
            witness(1).verifier().to_vkey(),
            witness(2).verifier().to_vkey()
        );
        text += "group G0 all A B\ngroup G1 all A G0\n";
        for i in 2..500 {
            text += &format!("group G{i} all G{} G{}\n", i - 1, i - 2);
        }
        text += "quorum G499\n";
        let p = Policy::parse(text.as_bytes()).expect("parse");
        assert!(p.quorum_met(&[true, true]));
        assert!(!p.quorum_met(&[true, false]));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Policy::parse(&bytes);
        }

        #[test]
        fn threshold_groups_count_exactly(k in 1usize..6, set in proptest::collection::vec(any::<bool>(), 5)) {
            let mut text = String::new();
            for i in 1..=5u8 {
                text += &format!("witness W{i} {}\n", witness(i).verifier().to_vkey());
            }
            let k = k.min(5);
            text += &format!("group G {k} W1 W2 W3 W4 W5\nquorum G\n");
            let p = Policy::parse(text.as_bytes()).expect("parse");
            prop_assert_eq!(p.quorum_met(&set), set.iter().filter(|b| **b).count() >= k);
        }

        #[test]
        fn words_may_be_separated_by_any_spaces_and_tabs(seps in proptest::collection::vec(prop_oneof![Just(" "), Just("\t"), Just("  \t ")], 4)) {
            let text = format!(
                "{}witness{}A{}{}\nquorum{}A\n",
                seps[0], seps[1], seps[2], witness(1).verifier().to_vkey(), seps[3]
            );
            prop_assert!(Policy::parse(text.as_bytes()).is_ok());
        }
    }
}
