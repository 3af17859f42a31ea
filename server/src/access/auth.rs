//! Who is calling: authentication.
//!
//! Every request passes through an [`Authenticator`], which turns the
//! transport's facts (peer address, client certificate, request metadata)
//! into a [`Caller`]: the [`Submitter`] recorded in leaves and the [`Who`]
//! that policies decide on.
//!
//! - [`Authn`] (authentication configured): a bearer token
//!   (`authorization: Bearer <JWT>`) is verified by [`TokenVerifier`] and
//!   names the caller; otherwise a client certificate (mutual TLS, already
//!   verified against the configured CA roots at the handshake) names it by
//!   its SPIFFE ID (exactly one URI SAN) or else `dns:` and its first DNS
//!   SAN ([`cert_principal`]);
//!   otherwise the caller is anonymous and gets only what the policy grants
//!   to `Tlog::Anonymous`.
//! - [`DefaultPrincipal`] (nothing configured): every caller is recorded
//!   as one configured principal with its peer address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tlog_core::leaf::Submitter;
use tonic::metadata::MetadataMap;
use tonic::transport::CertificateDer;

use crate::access::authz::Who;
use crate::access::tokens::{TokenVerifier, now_secs};

/// Facts about a request that authentication may use.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    /// The TCP peer.
    pub peer: Option<SocketAddr>,
    /// gRPC metadata (headers).
    pub metadata: &'a MetadataMap,
    /// The client's certificate chain, if it presented one over TLS.
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// What leaves record about the submitter.
    pub submitter: Submitter,
    /// What policies decide on.
    pub who: Who,
    /// The token issuer or certificate trust domain, or "".
    pub issuer: String,
}

/// What kind of credential was refused: a fixed vocabulary, so that
/// summaries of refusals (the ledger's) hold no text an attacker chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    /// The `authorization` header is not `Bearer <token>` text.
    BadHeader,
    /// A bearer token where no token issuers are configured.
    NoTokenIssuers,
    /// A bearer token that did not verify.
    TokenRefused,
    /// A client certificate that names no acceptable principal.
    CertificateRefused,
}

impl AuthFailure {
    /// Its name in access records.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::BadHeader => "bad-authorization-header",
            AuthFailure::NoTokenIssuers => "no-token-issuers",
            AuthFailure::TokenRefused => "token-refused",
            AuthFailure::CertificateRefused => "certificate-refused",
        }
    }
}

/// Credentials were presented and are not acceptable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct AuthError {
    /// What kind of credential was refused.
    pub kind: AuthFailure,
    /// What exactly was wrong.
    pub detail: String,
}

impl AuthError {
    fn cert(detail: impl Into<String>) -> Self {
        AuthError {
            kind: AuthFailure::CertificateRefused,
            detail: detail.into(),
        }
    }
}

/// Turns request facts into an authenticated caller.
pub trait Authenticator: Send + Sync + 'static {
    /// The caller, or why its credentials were refused.
    fn authenticate(&self, facts: &RequestFacts<'_>) -> Result<Caller, AuthError>;

    /// True if callers are authenticated for real (so policies apply).
    fn enforcing(&self) -> bool;
}

/// Records every caller as one configured principal (no authentication).
#[derive(Debug, Clone)]
pub struct DefaultPrincipal {
    /// The principal recorded in leaves.
    pub principal: String,
}

fn peer(facts: &RequestFacts<'_>) -> String {
    facts.peer.map(|p| p.to_string()).unwrap_or_default()
}

impl Authenticator for DefaultPrincipal {
    fn authenticate(&self, facts: &RequestFacts<'_>) -> Result<Caller, AuthError> {
        Ok(Caller {
            submitter: Submitter {
                principal: self.principal.clone(),
                auth_method: "none".into(),
                peer: peer(facts),
            },
            who: Who::Principal {
                name: self.principal.clone(),
                method: "none".into(),
                issuer: String::new(),
                roles: vec![],
            },
            issuer: String::new(),
        })
    }

    fn enforcing(&self) -> bool {
        false
    }
}

/// Authentication by bearer token and client certificate.
#[derive(Debug)]
pub struct Authn {
    /// Token verification, if issuers are configured.
    pub tokens: Option<TokenVerifier>,
    /// Roles of certificate principals (SPIFFE ID or `dns:<name>` -> roles).
    pub cert_roles: HashMap<String, Vec<String>>,
}

/// The prefix of principals named by a certificate's DNS SAN: DNS
/// principals live in their own namespace, so no DNS SAN, whatever it
/// holds, can name a SPIFFE ID (`spiffe://…`), a token subject without the
/// prefix, or `anonymous`.
pub const DNS_PREFIX: &str = "dns:";

/// True if `name` is a DNS host name (RFC 1123 labels of letters, digits
/// and hyphens, not starting or ending with a hyphen, joined by dots, at
/// most 253 bytes; one leading `*.` wildcard label allowed): what a DNS
/// SAN may hold (RFC 5280 section 4.2.1.6).
pub fn is_dns_name(name: &str) -> bool {
    let body = name.strip_prefix("*.").unwrap_or(name);
    !body.is_empty()
        && name.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The principal a client certificate names, and its trust domain:
/// - a SPIFFE ID, from the one URI SAN of the form `spiffe://domain/path`
///   (the SPIFFE X.509-SVID rule: exactly one URI SAN); its trust domain
///   is `domain`. A SPIFFE ID comes only from a URI SAN.
/// - otherwise `dns:<name>` from its first DNS SAN, which must be a host
///   name ([`is_dns_name`]); its trust domain is "".
///
/// A certificate with URI SANs that are not exactly one SPIFFE ID, or
/// whose DNS SAN is not a host name (say `spiffe://example.org/ci`), is
/// refused.
pub fn cert_principal(der: &[u8]) -> Result<(String, String), AuthError> {
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| AuthError::cert(format!("client certificate does not parse: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| AuthError::cert(format!("client certificate SAN: {e}")))?;
    let names = san
        .map(|s| s.value.general_names.clone())
        .unwrap_or_default();
    let uris: Vec<&str> = names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [one] if one.starts_with("spiffe://") => {
            let domain = one["spiffe://".len()..]
                .split('/')
                .next()
                .unwrap_or_default();
            if domain.is_empty() {
                return Err(AuthError::cert(
                    "client certificate's SPIFFE ID has no trust domain",
                ));
            }
            return Ok(((*one).to_owned(), domain.to_owned()));
        }
        [] => {}
        _ => {
            return Err(AuthError::cert(
                "client certificate must carry exactly one URI SAN, a SPIFFE ID",
            ));
        }
    }
    let dns = names
        .iter()
        .find_map(|n| match n {
            GeneralName::DNSName(d) => Some(*d),
            _ => None,
        })
        .ok_or_else(|| AuthError::cert("client certificate names no SPIFFE ID and no DNS name"))?;
    if !is_dns_name(dns) {
        return Err(AuthError::cert(format!(
            "client certificate's DNS SAN {} is not a host name (a SPIFFE ID belongs in a \
             URI SAN)",
            tlog_core::text::escaped(dns)
        )));
    }
    Ok((
        format!("{DNS_PREFIX}{}", dns.to_ascii_lowercase()),
        String::new(),
    ))
}

impl Authenticator for Authn {
    fn authenticate(&self, facts: &RequestFacts<'_>) -> Result<Caller, AuthError> {
        if let Some(value) = facts.metadata.get("authorization") {
            let text = value.to_str().map_err(|_| AuthError {
                kind: AuthFailure::BadHeader,
                detail: "authorization header is not text".into(),
            })?;
            let token = text.strip_prefix("Bearer ").ok_or_else(|| AuthError {
                kind: AuthFailure::BadHeader,
                detail: "authorization must be `Bearer <token>`".into(),
            })?;
            let verifier = self.tokens.as_ref().ok_or_else(|| AuthError {
                kind: AuthFailure::NoTokenIssuers,
                detail: "this server accepts no bearer tokens".into(),
            })?;
            let id = verifier
                .verify(token.trim(), now_secs())
                .map_err(|e| AuthError {
                    kind: AuthFailure::TokenRefused,
                    detail: e.to_string(),
                })?;
            return Ok(Caller {
                submitter: Submitter {
                    principal: id.subject.clone(),
                    auth_method: "bearer".into(),
                    peer: peer(facts),
                },
                who: Who::Principal {
                    name: id.subject,
                    method: "bearer".into(),
                    issuer: id.issuer.clone(),
                    roles: id.roles,
                },
                issuer: id.issuer,
            });
        }
        if let Some(leaf) = facts.certs.as_ref().and_then(|c| c.first()) {
            let (name, domain) = cert_principal(leaf.as_ref())?;
            let roles = self.cert_roles.get(&name).cloned().unwrap_or_default();
            return Ok(Caller {
                submitter: Submitter {
                    principal: name.clone(),
                    auth_method: "mtls".into(),
                    peer: peer(facts),
                },
                who: Who::Principal {
                    name,
                    method: "mtls".into(),
                    issuer: domain.clone(),
                    roles,
                },
                issuer: domain,
            });
        }
        Ok(Caller {
            submitter: Submitter {
                principal: "anonymous".into(),
                auth_method: "anonymous".into(),
                peer: peer(facts),
            },
            who: Who::Anonymous,
            issuer: String::new(),
        })
    }

    fn enforcing(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dns: &[&str], uri: Option<&str>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p =
            rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        if let Some(u) = uri {
            p.subject_alt_names
                .push(rcgen::SanType::URI(u.try_into().expect("uri")));
        }
        p.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn a_spiffe_id_comes_only_from_a_uri_san() {
        // A DNS SAN that spells a SPIFFE ID names nobody.
        let spoof = cert(&["spiffe://example.org/registry-a"], None);
        let err = cert_principal(&spoof).expect_err("refused");
        assert!(err.detail.contains("not a host name"), "{err}");
        assert_eq!(err.kind, AuthFailure::CertificateRefused);
        // A DNS SAN names a principal in its own namespace.
        let host = cert(&["Registry.Example.org"], None);
        assert_eq!(
            cert_principal(&host).expect("dns"),
            ("dns:registry.example.org".to_owned(), String::new())
        );
        // A URI SAN names the SPIFFE ID and its trust domain.
        let svid = cert(&[], Some("spiffe://example.org/registry-a"));
        assert_eq!(
            cert_principal(&svid).expect("spiffe"),
            (
                "spiffe://example.org/registry-a".to_owned(),
                "example.org".to_owned()
            )
        );
        // So the two can never be equal, whatever the DNS SAN holds.
        for name in ["spiffe:x", "a/b", "x y", "", "-a.b", "a..b"] {
            assert!(!is_dns_name(name), "{name:?}");
        }
        for name in [
            "a",
            "a.b-c.example",
            "*.example.org",
            "xn--nxasmq6b.example",
        ] {
            assert!(is_dns_name(name), "{name:?}");
        }
    }

    #[test]
    fn configured_certificate_roles_reach_only_their_namespace() {
        let a = Authn {
            tokens: None,
            cert_roles: HashMap::from([(
                "spiffe://example.org/registry-a".to_owned(),
                vec!["registry".to_owned()],
            )]),
        };
        let md = MetadataMap::new();
        let spoof = cert(&["spiffe://example.org/registry-a"], None);
        let facts = RequestFacts {
            peer: None,
            metadata: &md,
            certs: Some(Arc::new(vec![CertificateDer::from(spoof)])),
        };
        assert!(a.authenticate(&facts).is_err());
    }
}
