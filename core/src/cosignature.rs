//! C2SP `tlog-cosignature` v1: a witness's timestamped Ed25519 signature
//! over a checkpoint, carried as one more signature line of the checkpoint's
//! note (key type 0x04).
//!
//! <https://c2sp.org/tlog-cosignature>
//!
//! The signed message is `cosignature/v1\ntime <timestamp>\n` followed by
//! the whole checkpoint text; the signature bytes in the note line are
//! `timestamp (8 bytes, big-endian) || Ed25519 signature`.

use ed25519_dalek::{Signer as _, SigningKey};

use crate::note::{ALG_COSIGNATURE_V1, KeyError, Signature, Verifier, is_valid_name, key_id};

/// The message a cosigner signs for `checkpoint_text` at `timestamp`
/// (seconds since the Unix epoch).
pub fn message(timestamp: u64, checkpoint_text: &str) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}")
}

/// A witness (cosigner) key.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cosigner({}+{:08x})", self.name, self.key_id)
    }
}

impl Cosigner {
    /// A cosigner from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_name(name) {
            return Err(KeyError::Name(name.to_owned()));
        }
        let key = SigningKey::from_bytes(seed);
        Ok(Cosigner {
            name: name.to_owned(),
            key_id: key_id(name, ALG_COSIGNATURE_V1, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Parses a cosigner key `PRIVATE+KEY+name+hexid+base64(0x04 || seed)`
    /// (the signer-key text of c2sp.org/signed-note with the cosignature
    /// type byte).
    pub fn from_skey(text: &str) -> Result<Self, KeyError> {
        let (name, given, alg, seed) = crate::note::parse_skey(text)?;
        if alg != ALG_COSIGNATURE_V1 {
            return Err(KeyError::Algorithm(alg));
        }
        let c = Self::from_seed(name, &seed)?;
        if c.key_id != given {
            return Err(KeyError::IdMismatch {
                given,
                computed: c.key_id,
            });
        }
        Ok(c)
    }

    /// The key text for [`Cosigner::from_skey`]. This is secret.
    pub fn to_skey(&self) -> String {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw)
        )
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier for this cosigner's signatures (type 0x04).
    pub fn verifier(&self) -> Verifier {
        // The name was validated in from_seed, so this cannot fail.
        Verifier::new(&self.name, ALG_COSIGNATURE_V1, self.key.verifying_key())
            .unwrap_or_else(|_| unreachable!("name validated at construction"))
    }

    /// Cosigns `checkpoint_text` at `timestamp`, returning the signature
    /// line to add to the checkpoint's note.
    pub fn cosign(&self, timestamp: u64, checkpoint_text: &str) -> Signature {
        let sig = self
            .key
            .sign(message(timestamp, checkpoint_text).as_bytes());
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&sig.to_bytes());
        Signature::new(&self.name, self.key_id, bytes)
    }
}

/// The timestamp a cosignature carries, if `sig` has the cosignature shape.
pub fn timestamp(sig: &Signature) -> Option<u64> {
    let ts: [u8; 8] = sig.sig.get(..8)?.try_into().ok()?;
    (sig.sig.len() == 72).then(|| u64::from_be_bytes(ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Signer, Verifiers, add_signatures, open, sign};

    #[test]
    fn cosignature_added_beside_log_signature_verifies() {
        let log = Signer::from_seed("example.com/log", &[1; 32]).expect("ok");
        let witness = Cosigner::from_seed("witness.example/w1", &[2; 32]).expect("ok");
        let text = "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let note = sign(text, &[&log]).expect("sign");
        let cosig = witness.cosign(1_679_315_147, text);
        assert_eq!(timestamp(&cosig), Some(1_679_315_147));
        let both = add_signatures(&note, &[cosig]).expect("add");

        // The log's own verifier ignores the unknown witness signature.
        let only_log = open(both.as_bytes(), &Verifiers::new([log.verifier()])).expect("open");
        assert_eq!(only_log.unverified.len(), 1);
        // A client that knows the witness verifies both.
        let vs = Verifiers::new([log.verifier(), witness.verifier()]);
        let opened = open(both.as_bytes(), &vs).expect("open");
        assert_eq!(opened.verified.len(), 2);
        // The witness key text round-trips with its type byte 0x04.
        let vkey = witness.verifier().to_vkey();
        assert_eq!(
            Verifier::from_vkey(&vkey).expect("parse"),
            witness.verifier()
        );

        // A cosignature over a different time does not verify.
        let mut forged = witness.cosign(1_679_315_147, text);
        forged.sig[7] ^= 1;
        let bad = add_signatures(&note, &[forged]).expect("add");
        assert!(open(bad.as_bytes(), &vs).is_err());

        // A timestamp above 2^63 - 1 is refused even when signed.
        let huge = witness.cosign(1 << 63, text);
        let bad = add_signatures(&note, &[huge]).expect("add");
        assert!(open(bad.as_bytes(), &vs).is_err());

        // The key text round-trips, and a note key is not a cosigner key.
        let back = Cosigner::from_skey(&witness.to_skey()).expect("skey");
        assert_eq!(back.verifier(), witness.verifier());
        assert!(matches!(
            Cosigner::from_skey(&log.to_skey()),
            Err(KeyError::Algorithm(1))
        ));
        assert!(Signer::from_skey(&witness.to_skey()).is_err());
    }
}
