//! Short-lived bearer tokens: signed JWTs (RFC 7519) verified against
//! configured issuer keys (RFC 7517 JWK sets), Ed25519 (`EdDSA`) and P-256
//! (`ES256`).
//!
//! Refused, each with its own reason: a token without `kid`; a key ID no
//! issuer has; a header `alg` that is not the one the key is configured for
//! (so no algorithm confusion, and `alg: none` never parses); a bad
//! signature or edited payload; a missing `iss`, `aud`, `sub` or `exp`; an
//! expired token or one not yet valid (`nbf`); a wrong issuer or audience; a
//! token that outlives the issuer's maximum from now (`exp - now`), or
//! from its issue (`exp - iat`), or that was issued in the future (`iat`
//! beyond the skew); a role the issuer may not grant. The clock skew
//! tolerated everywhere is [`LEEWAY_SECS`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Clock skew tolerated on `exp`, `nbf`, `iat` and the lifetime, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// One trusted token issuer, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` claim this issuer puts in its tokens.
    pub issuer: String,
    /// The `aud` claim tokens for this server must carry.
    pub audience: String,
    /// A JWK set (JSON) with the issuer's public keys; each key needs
    /// `kid` and `alg` (`EdDSA` or `ES256`).
    pub jwks_file: PathBuf,
    /// Longest allowed token lifetime, counted from now (`exp - now`) and
    /// from `iat` when present.
    #[serde(with = "humantime_serde", default = "default_lifetime")]
    pub max_lifetime: Duration,
    /// Roles this issuer may grant; empty means any.
    #[serde(default)]
    pub allowed_roles: Vec<String>,
}

fn default_lifetime() -> Duration {
    Duration::from_secs(3600)
}

/// Why a token was refused (or a key could not be loaded).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or its header or claims do not parse (this includes
    /// `alg: none`, which is no algorithm this server knows).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header has no key ID.
    #[error("token header has no kid")]
    NoKeyId,
    /// No configured issuer has this key.
    #[error("token signed by unknown key {0:?}")]
    UnknownKey(String),
    /// The header's algorithm is not the key's.
    #[error("token alg {got:?} does not match key {kid:?} ({want:?})")]
    AlgorithmMismatch {
        /// The key ID.
        kid: String,
        /// The algorithm in the header.
        got: Algorithm,
        /// The key's algorithm.
        want: Algorithm,
    },
    /// Signature, expiry, not-before, issuer or audience check failed.
    #[error("token rejected: {0}")]
    Invalid(String),
    /// The token lives longer than the issuer allows.
    #[error("token lifetime {got:?} exceeds the maximum {max:?}")]
    TooLong {
        /// Its lifetime.
        got: Duration,
        /// The maximum.
        max: Duration,
    },
    /// The token says it was issued after now (beyond the clock skew).
    #[error("token issued at {iat}, after the server's time {now} (skew {skew} s allowed)")]
    IssuedInFuture {
        /// Its `iat`.
        iat: u64,
        /// The server's time.
        now: u64,
        /// The tolerated skew, seconds.
        skew: u64,
    },
    /// A role the issuer may not grant.
    #[error("issuer {issuer:?} may not grant role {role:?}")]
    RoleNotAllowed {
        /// The issuer.
        issuer: String,
        /// The role.
        role: String,
    },
    /// A key set or key file could not be loaded.
    #[error("{path}: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The claims this server reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the principal.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Roles granted to the subject.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// The subject.
    pub subject: String,
    /// The issuer.
    pub issuer: String,
    /// The roles.
    pub roles: Vec<String>,
    /// When the token expires (seconds since the epoch).
    pub expires_at: u64,
}

struct IssuerKey {
    kid: String,
    alg: Algorithm,
    key: DecodingKey,
}

struct Issuer {
    cfg: IssuerConfig,
    keys: Vec<IssuerKey>,
}

/// Verifies bearer tokens against the configured issuers.
pub struct TokenVerifier {
    issuers: Vec<Issuer>,
    /// Tokens already verified, by their exact text, until they expire: a
    /// client sends the same token on every call, and an Ed25519 or ECDSA
    /// verification per call costs more than the call. Cleared when full.
    verified: std::sync::Mutex<std::collections::HashMap<String, TokenIdentity>>,
}

/// Most verified tokens kept.
const VERIFIED_CACHE: usize = 10_000;

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.issuers.iter().map(|i| i.cfg.issuer.as_str()).collect();
        write!(f, "TokenVerifier({names:?})")
    }
}

fn load_jwks(path: &Path) -> Result<Vec<IssuerKey>, TokenError> {
    let err = |reason: String| TokenError::Load {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let set: JwkSet =
        serde_json::from_str(&text).map_err(|e| err(format!("not a JWK set: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| err("every key needs a kid".into()))?;
        let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(a), AlgorithmParameters::OctetKeyPair(_)) if format!("{a:?}") == "EdDSA" => {
                Algorithm::EdDSA
            }
            (Some(a), AlgorithmParameters::EllipticCurve(_)) if format!("{a:?}") == "ES256" => {
                Algorithm::ES256
            }
            _ => {
                return Err(err(format!(
                    "key {kid}: only EdDSA (OKP Ed25519) and ES256 (EC P-256) keys with a \
                     matching alg are accepted"
                )));
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| err(format!("key {kid}: {e}")))?;
        keys.push(IssuerKey { kid, alg, key });
    }
    if keys.is_empty() {
        return Err(err("the key set is empty".into()));
    }
    Ok(keys)
}

impl TokenVerifier {
    /// Loads every issuer's keys. Key IDs must be unique across issuers.
    pub fn load(issuers: &[IssuerConfig]) -> Result<Self, TokenError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for cfg in issuers {
            let keys = load_jwks(&cfg.jwks_file)?;
            for k in &keys {
                if !seen.insert(k.kid.clone()) {
                    return Err(TokenError::Load {
                        path: cfg.jwks_file.clone(),
                        reason: format!("kid {:?} is used by two keys", k.kid),
                    });
                }
            }
            out.push(Issuer {
                cfg: cfg.clone(),
                keys,
            });
        }
        Ok(TokenVerifier {
            issuers: out,
            verified: Default::default(),
        })
    }

    /// Verifies `token` at time `now` (seconds since the epoch). A token
    /// verified before is answered from the cache while it has not expired
    /// (the exact same text carries the same signature and claims).
    pub fn verify(&self, token: &str, now: u64) -> Result<TokenIdentity, TokenError> {
        if let Ok(cache) = self.verified.lock()
            && let Some(id) = cache.get(token)
            && now <= id.expires_at + LEEWAY_SECS
        {
            return Ok(id.clone());
        }
        let id = self.verify_uncached(token, now)?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
            cache.insert(token.to_owned(), id.clone());
        }
        Ok(id)
    }

    fn verify_uncached(&self, token: &str, now: u64) -> Result<TokenIdentity, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let kid = header.kid.ok_or(TokenError::NoKeyId)?;
        let (issuer, key) = self
            .issuers
            .iter()
            .find_map(|i| i.keys.iter().find(|k| k.kid == kid).map(|k| (i, k)))
            .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
        if header.alg != key.alg {
            return Err(TokenError::AlgorithmMismatch {
                kid,
                got: header.alg,
                want: key.alg,
            });
        }
        let mut v = Validation::new(key.alg);
        v.set_issuer(&[&issuer.cfg.issuer]);
        v.set_audience(&[&issuer.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &v)
            .map_err(|e| TokenError::Invalid(format!("{:?}", e.kind())))?;
        let c = data.claims;
        // The library checks exp against its own clock; check against ours
        // too, so tests and callers can pass the time.
        if c.exp + LEEWAY_SECS < now {
            return Err(TokenError::Invalid("ExpiredSignature".into()));
        }
        if c.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
            return Err(TokenError::Invalid("ImmatureSignature".into()));
        }
        check_lifetime(&c, now, issuer.cfg.max_lifetime)?;
        // The subject and roles are recorded in leaves and access records:
        // bounded, and nothing that displays as something else.
        for (what, v) in std::iter::once(("sub", &c.sub)).chain(c.roles.iter().map(|r| ("role", r)))
        {
            if v.is_empty() || v.len() > tlog_core::event::MAX_ID_LEN {
                return Err(TokenError::Malformed(format!(
                    "{what} must be 1 to {} bytes",
                    tlog_core::event::MAX_ID_LEN
                )));
            }
            if let Some(ch) = tlog_core::text::spoofing_char(v) {
                return Err(TokenError::Malformed(format!(
                    "{what} contains U+{:04X}, a control, bidirectional or zero-width character",
                    ch as u32
                )));
            }
        }
        if c.roles.len() > 32 {
            return Err(TokenError::Malformed("more than 32 roles".into()));
        }
        if !issuer.cfg.allowed_roles.is_empty()
            && let Some(role) = c
                .roles
                .iter()
                .find(|r| !issuer.cfg.allowed_roles.contains(r))
        {
            return Err(TokenError::RoleNotAllowed {
                issuer: issuer.cfg.issuer.clone(),
                role: role.clone(),
            });
        }
        Ok(TokenIdentity {
            subject: c.sub,
            issuer: c.iss,
            roles: c.roles,
            expires_at: c.exp,
        })
    }
}

/// The lifetime bound, on the server's clock: what is left of the token
/// (`exp - now`) may not exceed `max` (plus [`LEEWAY_SECS`]), whatever its
/// `iat` says; an `iat` in the future (beyond the skew) is refused; and
/// with `iat`, `exp - iat` may not exceed `max` either. A token that
/// claims to have been issued a minute before a 10-year expiry is refused
/// by the first rule.
fn check_lifetime(c: &Claims, now: u64, max: Duration) -> Result<(), TokenError> {
    let left = Duration::from_secs(c.exp.saturating_sub(now));
    if left > max + Duration::from_secs(LEEWAY_SECS) {
        return Err(TokenError::TooLong { got: left, max });
    }
    if let Some(iat) = c.iat {
        if iat > now + LEEWAY_SECS {
            return Err(TokenError::IssuedInFuture {
                iat,
                now,
                skew: LEEWAY_SECS,
            });
        }
        let lifetime = Duration::from_secs(c.exp.saturating_sub(iat));
        if lifetime > max {
            return Err(TokenError::TooLong { got: lifetime, max });
        }
    }
    Ok(())
}

/// What to put in a minted token.
#[derive(Debug, Clone)]
pub struct MintRequest {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// `sub`.
    pub subject: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Lifetime.
    pub ttl: Duration,
    /// Key ID of the signing key.
    pub kid: String,
}

/// Signs a token with an Ed25519 operator key (PKCS#8 PEM).
pub fn mint(key_pem: &[u8], req: &MintRequest, now: u64) -> Result<String, TokenError> {
    let key = EncodingKey::from_ed_pem(key_pem).map_err(|e| TokenError::Load {
        path: PathBuf::from("<signing key>"),
        reason: format!("not an Ed25519 PKCS#8 PEM key: {e}"),
    })?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(req.kid.clone());
    let claims = Claims {
        sub: req.subject.clone(),
        iss: req.issuer.clone(),
        aud: req.audience.clone(),
        exp: now + req.ttl.as_secs(),
        nbf: Some(now),
        iat: Some(now),
        roles: req.roles.clone(),
    };
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| TokenError::Malformed(e.to_string()))
}

/// A new Ed25519 operator key: its PKCS#8 PEM and a JWK set with its
/// public key under `kid`.
pub fn keygen(kid: &str) -> Result<(String, String), TokenError> {
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| TokenError::Malformed(e.to_string()))?;
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    let pem = sk
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| TokenError::Malformed(e.to_string()))?;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk.verifying_key().as_bytes());
    let jwks = serde_json::json!({
        "keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}]
    });
    Ok((pem.to_string(), format!("{jwks:#}\n")))
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_mint_verify_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let (pem, jwks) = keygen("k1").expect("keygen");
        let jwks_file = dir.path().join("jwks.json");
        std::fs::write(&jwks_file, jwks).expect("write");
        let v = TokenVerifier::load(&[IssuerConfig {
            issuer: "iss".into(),
            audience: "aud".into(),
            jwks_file,
            max_lifetime: Duration::from_secs(3600),
            allowed_roles: vec!["ci".into()],
        }])
        .expect("load");
        let now = now_secs();
        let req = MintRequest {
            issuer: "iss".into(),
            audience: "aud".into(),
            subject: "pipeline".into(),
            roles: vec!["ci".into()],
            ttl: Duration::from_secs(900),
            kid: "k1".into(),
        };
        let t = mint(pem.as_bytes(), &req, now).expect("mint");
        let id = v.verify(&t, now).expect("verifies");
        assert_eq!(id.subject, "pipeline");
        assert_eq!(id.roles, vec!["ci".to_owned()]);
        // Our own clock decides expiry too.
        assert!(matches!(
            v.verify(&t, now + 2000),
            Err(TokenError::Invalid(_))
        ));
        let bad_role = MintRequest {
            roles: vec!["admin".into()],
            ..req
        };
        let t = mint(pem.as_bytes(), &bad_role, now).expect("mint");
        assert!(matches!(
            v.verify(&t, now),
            Err(TokenError::RoleNotAllowed { .. })
        ));
    }

    /// Signs arbitrary claims with the operator key, as an attacker with
    /// a stolen issuer key, or a careless issuer, would.
    fn sign_claims(pem: &str, claims: &Claims) -> String {
        let key = EncodingKey::from_ed_pem(pem.as_bytes()).expect("key");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, claims, &key).expect("encode")
    }

    #[test]
    fn lifetime_is_bounded_from_now_not_only_from_iat() {
        let dir = tempfile::tempdir().expect("tmp");
        let (pem, jwks) = keygen("k1").expect("keygen");
        let jwks_file = dir.path().join("jwks.json");
        std::fs::write(&jwks_file, jwks).expect("write");
        let max = Duration::from_secs(3600);
        let v = TokenVerifier::load(&[IssuerConfig {
            issuer: "iss".into(),
            audience: "aud".into(),
            jwks_file,
            max_lifetime: max,
            allowed_roles: vec![],
        }])
        .expect("load");
        let now = now_secs();
        let ten_years = 10 * 365 * 24 * 3600;
        let c = |iat: Option<u64>, exp: u64| Claims {
            sub: "s".into(),
            iss: "iss".into(),
            aud: "aud".into(),
            exp,
            nbf: None,
            iat,
            roles: vec![],
        };
        // A 10-year expiry with iat a minute before it.
        let t = sign_claims(&pem, &c(Some(now + ten_years - 60), now + ten_years));
        assert!(
            matches!(v.verify(&t, now), Err(TokenError::TooLong { .. })),
            "{:?}",
            v.verify(&t, now)
        );
        // The same without iat.
        let t = sign_claims(&pem, &c(None, now + ten_years));
        assert!(matches!(v.verify(&t, now), Err(TokenError::TooLong { .. })));
        // iat in the future but a short life left: the iat is refused.
        let t = sign_claims(&pem, &c(Some(now + 600), now + 900));
        assert!(matches!(
            v.verify(&t, now),
            Err(TokenError::IssuedInFuture { .. })
        ));
        // iat within the skew is fine; the maximum itself is fine.
        let t = sign_claims(&pem, &c(Some(now + LEEWAY_SECS), now + 3600));
        assert!(v.verify(&t, now).is_ok());
        let t = sign_claims(&pem, &c(Some(now), now + 3600));
        assert!(v.verify(&t, now).is_ok());
        // A subject that displays as something else is refused.
        let mut spoof = c(Some(now), now + 600);
        spoof.sub = "alice\u{202E}nimda".into();
        let t = sign_claims(&pem, &spoof);
        assert!(matches!(v.verify(&t, now), Err(TokenError::Malformed(_))));
        // Issued long ago, expiring within the maximum from now, but with a
        // total life beyond it: refused.
        let t = sign_claims(&pem, &c(Some(now - 7200), now + 600));
        assert!(matches!(v.verify(&t, now), Err(TokenError::TooLong { .. })));
    }
}
