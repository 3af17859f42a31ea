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
//!   its SPIFFE ID (exactly one URI SAN) or else its first DNS SAN;
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

use crate::authz::Who;
use crate::tokens::{TokenVerifier, now_secs};

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

/// Credentials were presented and are not acceptable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

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
    /// Roles of certificate principals (SPIFFE ID or DNS name -> roles).
    pub cert_roles: HashMap<String, Vec<String>>,
}

/// The principal a client certificate names: its SPIFFE ID if it has
/// exactly one URI SAN of that form, else its first DNS SAN. Returns the
/// principal and its trust domain (for SPIFFE) or "".
pub fn cert_principal(der: &[u8]) -> Result<(String, String), AuthError> {
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| AuthError(format!("client certificate does not parse: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| AuthError(format!("client certificate SAN: {e}")))?;
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
            return Ok(((*one).to_owned(), domain.to_owned()));
        }
        [] => {}
        _ => {
            return Err(AuthError(
                "client certificate must carry exactly one URI SAN, a SPIFFE ID".into(),
            ));
        }
    }
    names
        .iter()
        .find_map(|n| match n {
            GeneralName::DNSName(d) => Some(((*d).to_owned(), String::new())),
            _ => None,
        })
        .ok_or_else(|| AuthError("client certificate names no SPIFFE ID and no DNS name".into()))
}

impl Authenticator for Authn {
    fn authenticate(&self, facts: &RequestFacts<'_>) -> Result<Caller, AuthError> {
        if let Some(value) = facts.metadata.get("authorization") {
            let text = value
                .to_str()
                .map_err(|_| AuthError("authorization header is not text".into()))?;
            let token = text
                .strip_prefix("Bearer ")
                .ok_or_else(|| AuthError("authorization must be `Bearer <token>`".into()))?;
            let verifier = self
                .tokens
                .as_ref()
                .ok_or_else(|| AuthError("this server accepts no bearer tokens".into()))?;
            let id = verifier
                .verify(token.trim(), now_secs())
                .map_err(|e| AuthError(e.to_string()))?;
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
