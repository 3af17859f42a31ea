//! C2SP `signed-note`: text signed by one or more Ed25519 keys, and the
//! verifier / signer key encodings.
//!
//! <https://c2sp.org/signed-note>
//!
//! A note is UTF-8 text ending in a newline, a blank line, then signature
//! lines `— <name> base64(key ID || signature)`. [`open`] verifies a note
//! against a set of known [`Verifier`]s: signatures by unknown keys are kept
//! as unverified and otherwise ignored (so witness cosignatures can be added
//! beside the log's own); a known key whose signature fails rejects the
//! note; a note with no verified signature is rejected.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signature type byte for Ed25519 note signatures (C2SP signed-note).
pub const ALG_ED25519: u8 = 0x01;
/// Signature type byte for C2SP `tlog-cosignature` v1 (Ed25519 over a
/// timestamped checkpoint).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// The most signature lines [`open`] will read (as Go's `note.Open`).
pub const MAX_SIGNATURES: usize = 100;

/// The em dash and space that start every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// What was wrong with a key's text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not `name+hexid+base64`, or its parts are malformed.
    #[error("malformed key: {0}")]
    Malformed(&'static str),
    /// The key ID in the text does not match the name and key.
    #[error("key ID {given:08x} does not match the key (computed {computed:08x})")]
    IdMismatch {
        /// The ID written in the key text.
        given: u32,
        /// The ID computed from name and key.
        computed: u32,
    },
    /// The key's algorithm byte is not one this implementation supports.
    #[error("unsupported key algorithm 0x{0:02x}")]
    Algorithm(u8),
    /// The key's name is empty, contains whitespace or `+`, or is not valid.
    #[error("invalid key name {0:?}: must be non-empty, without spaces or '+'")]
    Name(String),
}

/// Why a note could not be signed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note (or the text to sign) breaks the format.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A known key's signature did not verify.
    #[error("invalid signature by known key {name}+{key_id:08x}")]
    InvalidSignature {
        /// The key's name.
        name: String,
        /// The key's ID.
        key_id: u32,
    },
    /// No signature was by a known key.
    #[error("note has no signature by a known key ({unverified} unverified)")]
    NoKnownSignature {
        /// How many signatures by unknown keys it had.
        unverified: usize,
    },
}

/// A key name is non-empty, has no Unicode whitespace and no `+`
/// (C2SP signed-note, "Signatures").
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// The key ID: the first four bytes of `SHA-256(name || 0x0A || type ||
/// public key)` as a big-endian integer (C2SP signed-note, "Signatures").
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, alg]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A public key that verifies note signatures: an Ed25519 note key (type
/// 0x01) or a `tlog-cosignature` key (type 0x04).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    alg: u8,
    key: VerifyingKey,
}

impl Verifier {
    /// Parses a verifier key `name+hexid+base64(type || public key)`,
    /// checking the name, the algorithm and that the ID matches.
    pub fn from_vkey(text: &str) -> Result<Self, KeyError> {
        let (name, rest) = text
            .split_once('+')
            .ok_or(KeyError::Malformed("want name+hexid+base64key"))?;
        let (id_hex, key_b64) = rest
            .split_once('+')
            .ok_or(KeyError::Malformed("want name+hexid+base64key"))?;
        if !is_valid_name(name) {
            return Err(KeyError::Name(name.to_owned()));
        }
        let given = parse_key_id(id_hex)?;
        let raw = B64
            .decode(key_b64)
            .map_err(|_| KeyError::Malformed("key is not valid base64"))?;
        let Some((&alg, public)) = raw.split_first() else {
            return Err(KeyError::Malformed("empty key"));
        };
        let computed = key_id(name, alg, public);
        if computed != given {
            return Err(KeyError::IdMismatch { given, computed });
        }
        if alg != ALG_ED25519 && alg != ALG_COSIGNATURE_V1 {
            return Err(KeyError::Algorithm(alg));
        }
        let bytes: [u8; 32] = public
            .try_into()
            .map_err(|_| KeyError::Malformed("Ed25519 public key must be 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError::Malformed("not an Ed25519 public key"))?;
        Ok(Verifier {
            name: name.to_owned(),
            key_id: given,
            alg,
            key,
        })
    }

    /// A verifier for an Ed25519 public key of the given type.
    pub fn new(name: &str, alg: u8, key: VerifyingKey) -> Result<Self, KeyError> {
        if !is_valid_name(name) {
            return Err(KeyError::Name(name.to_owned()));
        }
        if alg != ALG_ED25519 && alg != ALG_COSIGNATURE_V1 {
            return Err(KeyError::Algorithm(alg));
        }
        Ok(Verifier {
            name: name.to_owned(),
            key_id: key_id(name, alg, key.as_bytes()),
            alg,
            key,
        })
    }

    /// The verifier-key text: `name+hexid+base64(type || public key)`.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![self.alg];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The key's signature type byte.
    pub fn alg(&self) -> u8 {
        self.alg
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks `sig` (the bytes after the key ID) over the note `text`.
    /// For a cosignature key, `sig` is `timestamp (8 bytes, big-endian) ||
    /// Ed25519 signature` over the `tlog-cosignature` message.
    pub fn verify(&self, text: &str, sig: &[u8]) -> bool {
        match self.alg {
            ALG_ED25519 => {
                let Ok(s) = ed25519_dalek::Signature::from_slice(sig) else {
                    return false;
                };
                self.key.verify(text.as_bytes(), &s).is_ok()
            }
            ALG_COSIGNATURE_V1 => {
                if sig.len() != 8 + 64 {
                    return false;
                }
                let (ts, s) = sig.split_at(8);
                let mut ts_bytes = [0u8; 8];
                ts_bytes.copy_from_slice(ts);
                // "It MUST NOT exceed 2^63 - 1" (c2sp.org/tlog-cosignature).
                if ts_bytes[0] & 0x80 != 0 {
                    return false;
                }
                let Ok(s) = ed25519_dalek::Signature::from_slice(s) else {
                    return false;
                };
                let msg = crate::cosignature::message(u64::from_be_bytes(ts_bytes), text);
                self.key.verify(msg.as_bytes(), &s).is_ok()
            }
            _ => false,
        }
    }
}

/// Splits a signer-key text `PRIVATE+KEY+name+hexid+base64(type || seed)`
/// into name, key ID, type and 32-byte seed, checking the name.
pub(crate) fn parse_skey(text: &str) -> Result<(&str, u32, u8, [u8; 32]), KeyError> {
    let rest = text
        .strip_prefix("PRIVATE+KEY+")
        .ok_or(KeyError::Malformed(
            "signer key must start with PRIVATE+KEY+",
        ))?;
    let (name, rest) = rest
        .split_once('+')
        .ok_or(KeyError::Malformed("want PRIVATE+KEY+name+hexid+base64key"))?;
    let (id_hex, key_b64) = rest
        .split_once('+')
        .ok_or(KeyError::Malformed("want PRIVATE+KEY+name+hexid+base64key"))?;
    if !is_valid_name(name) {
        return Err(KeyError::Name(name.to_owned()));
    }
    let given = parse_key_id(id_hex)?;
    let raw = B64
        .decode(key_b64.trim_end())
        .map_err(|_| KeyError::Malformed("key is not valid base64"))?;
    let Some((&alg, seed)) = raw.split_first() else {
        return Err(KeyError::Malformed("empty key"));
    };
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| KeyError::Malformed("Ed25519 seed must be 32 bytes"))?;
    Ok((name, given, alg, seed))
}

fn parse_key_id(id_hex: &str) -> Result<u32, KeyError> {
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::Malformed("key ID must be 8 hex digits"));
    }
    u32::from_str_radix(id_hex, 16).map_err(|_| KeyError::Malformed("key ID must be 8 hex digits"))
}

/// A private key that signs notes (Ed25519, type 0x01).
#[derive(Clone)]
pub struct Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "Signer({}+{:08x})", self.name, self.key_id)
    }
}

impl Signer {
    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_name(name) {
            return Err(KeyError::Name(name.to_owned()));
        }
        let key = SigningKey::from_bytes(seed);
        Ok(Signer {
            name: name.to_owned(),
            key_id: key_id(name, ALG_ED25519, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Parses a signer key `PRIVATE+KEY+name+hexid+base64(0x01 || seed)`.
    pub fn from_skey(text: &str) -> Result<Self, KeyError> {
        let (name, given, alg, seed) = parse_skey(text)?;
        if alg != ALG_ED25519 {
            return Err(KeyError::Algorithm(alg));
        }
        let signer = Self::from_seed(name, &seed)?;
        if signer.key_id != given {
            return Err(KeyError::IdMismatch {
                given,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The signer-key text `PRIVATE+KEY+name+hexid+base64(0x01 || seed)`.
    /// This is secret: store it with restrictive permissions.
    pub fn to_skey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(raw)
        )
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            alg: ALG_ED25519,
            key: self.key.verifying_key(),
        }
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 signing key (for cosignatures and attestations).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// A signature line for `text` (which must already be valid note text).
    pub fn sign_line(&self, text: &str) -> Signature {
        let sig = self.key.sign(text.as_bytes());
        Signature::new(&self.name, self.key_id, sig.to_bytes().to_vec())
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The key name.
    pub name: String,
    /// The key ID.
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub sig: Vec<u8>,
}

impl Signature {
    /// A signature by `name`/`key_id`.
    pub fn new(name: &str, key_id: u32, sig: Vec<u8>) -> Self {
        Signature {
            name: name.to_owned(),
            key_id,
            sig,
        }
    }

    /// The line, without the trailing newline:
    /// `— name base64(key ID || signature)`.
    pub fn to_line(&self) -> String {
        let mut raw = self.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.sig);
        format!("{SIG_PREFIX}{} {}", self.name, B64.encode(raw))
    }
}

/// A set of trusted verifiers, looked up by name and key ID.
#[derive(Debug, Clone, Default)]
pub struct Verifiers(Vec<Verifier>);

impl Verifiers {
    /// A set from a list.
    pub fn new(list: impl IntoIterator<Item = Verifier>) -> Self {
        Verifiers(list.into_iter().collect())
    }

    /// Every verifier in the set.
    pub fn iter(&self) -> impl Iterator<Item = &Verifier> {
        self.0.iter()
    }

    /// The verifier with this name and ID, if trusted.
    pub fn get(&self, name: &str, key_id: u32) -> Option<&Verifier> {
        self.0.iter().find(|v| v.key_id == key_id && v.name == name)
    }
}

/// A note that [`open`] verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, ending in a newline.
    pub text: String,
    /// Signatures by known keys, all verified.
    pub verified: Vec<Signature>,
    /// Signatures by unknown keys, not verified, kept so they can be passed
    /// on (for example witness cosignatures).
    pub unverified: Vec<Signature>,
}

/// Checks that `text` may be the text of a note: non-empty, ends in a
/// newline, no control characters but newline (C2SP signed-note).
pub fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() {
        return Err(NoteError::Malformed("empty text"));
    }
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end in a newline"));
    }
    if text.chars().any(|c| (c as u32) < 0x20 && c != '\n') {
        return Err(NoteError::Malformed("text has a control character"));
    }
    Ok(())
}

/// Signs `text` with every signer and returns the note: text, a blank
/// line, one signature line per signer.
pub fn sign(text: &str, signers: &[&Signer]) -> Result<String, NoteError> {
    check_text(text)?;
    if signers.is_empty() {
        return Err(NoteError::Malformed("no signers"));
    }
    let mut out = String::with_capacity(text.len() + 1 + signers.len() * 110);
    out.push_str(text);
    out.push('\n');
    for s in signers {
        out.push_str(&s.sign_line(text).to_line());
        out.push('\n');
    }
    Ok(out)
}

/// Appends signature lines (for example a witness cosignature) to a note
/// that already has a signature block.
pub fn add_signatures(note: &str, sigs: &[Signature]) -> Result<String, NoteError> {
    if !note.ends_with('\n') || !note.contains("\n\n") {
        return Err(NoteError::Malformed("not a signed note"));
    }
    let mut out = note.to_owned();
    for s in sigs {
        out.push_str(&s.to_line());
        out.push('\n');
    }
    Ok(out)
}

/// Parses and verifies a signed note (C2SP signed-note; the same rules as
/// Go's `golang.org/x/mod/sumdb/note.Open`).
pub fn open(msg: &[u8], known: &Verifiers) -> Result<Note, NoteError> {
    let msg = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed("not UTF-8"))?;
    if msg.chars().any(|c| (c as u32) < 0x20 && c != '\n') {
        return Err(NoteError::Malformed("control character"));
    }
    // The signature block follows the last blank line.
    let split = msg
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before signatures"))?;
    let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Malformed(
            "signature block must end in a newline",
        ));
    }
    let mut note = Note {
        text: text.to_owned(),
        verified: Vec::new(),
        unverified: Vec::new(),
    };
    let mut seen_lines: Vec<&str> = Vec::new();
    for (n, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
        if n >= MAX_SIGNATURES {
            return Err(NoteError::Malformed("more than 100 signatures"));
        }
        let body = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "signature line must start with an em dash",
        ))?;
        let (name, b64) = body.split_once(' ').ok_or(NoteError::Malformed(
            "signature line must be name and base64",
        ))?;
        if !is_valid_name(name) || b64.is_empty() {
            return Err(NoteError::Malformed("bad signature name"));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        let key_id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let sig = Signature::new(name, key_id, raw[4..].to_vec());
        // Repeated identical lines count once.
        if seen_lines.contains(&line) {
            continue;
        }
        seen_lines.push(line);
        match known.get(name, key_id) {
            None => note.unverified.push(sig),
            Some(v) => {
                if note
                    .verified
                    .iter()
                    .any(|s| s.name == name && s.key_id == key_id)
                {
                    continue;
                }
                if !v.verify(text, &sig.sig) {
                    return Err(NoteError::InvalidSignature {
                        name: name.to_owned(),
                        key_id,
                    });
                }
                note.verified.push(sig);
            }
        }
    }
    if note.verified.is_empty() {
        return Err(NoteError::NoKnownSignature {
            unverified: note.unverified.len(),
        });
    }
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_open_round_trip_and_tamper() {
        let s = Signer::from_seed("example.com/log", &[7; 32]).expect("name ok");
        let v = s.verifier();
        let text = "hello\nworld\n";
        let note = sign(text, &[&s]).expect("sign");
        let opened = open(note.as_bytes(), &Verifiers::new([v.clone()])).expect("open");
        assert_eq!(opened.text, text);
        assert_eq!(opened.verified.len(), 1);
        let tampered = note.replacen("world", "w0rld", 1);
        assert!(matches!(
            open(tampered.as_bytes(), &Verifiers::new([v])),
            Err(NoteError::InvalidSignature { .. })
        ));
    }

    #[test]
    fn keys_round_trip_and_never_debug_print_secrets() {
        let s = Signer::from_seed("k", &[9; 32]).expect("name ok");
        let again = Signer::from_skey(&s.to_skey()).expect("parse");
        assert_eq!(again.to_skey(), s.to_skey());
        let v = Verifier::from_vkey(&s.verifier().to_vkey()).expect("parse");
        assert_eq!(v, s.verifier());
        assert!(!format!("{s:?}").contains(&s.to_skey()[12..]));
    }

    #[test]
    fn bad_names_and_texts_are_refused() {
        assert!(matches!(
            Signer::from_seed("a b", &[1; 32]),
            Err(KeyError::Name(_))
        ));
        assert!(matches!(
            Signer::from_seed("a+b", &[1; 32]),
            Err(KeyError::Name(_))
        ));
        let s = Signer::from_seed("k", &[1; 32]).expect("ok");
        assert!(sign("no newline", &[&s]).is_err());
        assert!(sign("", &[&s]).is_err());
        assert!(sign("bell\u{7}\n", &[&s]).is_err());
    }
}
