//! Who is calling: the authentication slot of the server.
//!
//! Every request passes through an [`Authenticator`], which turns the
//! transport's facts (peer address, request metadata) into the
//! [`Submitter`] recorded in leaves and used for authorization. Until mutual
//! TLS and bearer tokens are configured (issue [3/8]), the
//! [`DefaultPrincipal`] authenticator records the configured default
//! principal and the peer address.

use std::net::SocketAddr;

use tlog_core::leaf::Submitter;
use tonic::metadata::MetadataMap;

/// Facts about a request that authentication may use.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    /// The TCP peer.
    pub peer: Option<SocketAddr>,
    /// gRPC metadata (headers).
    pub metadata: &'a MetadataMap,
}

/// Turns request facts into an authenticated identity.
pub trait Authenticator: Send + Sync + 'static {
    /// The identity of the caller, or `UNAUTHENTICATED`.
    fn authenticate(&self, facts: &RequestFacts<'_>) -> Result<Submitter, tonic::Status>;
}

/// Records every caller as one configured principal (no authentication).
#[derive(Debug, Clone)]
pub struct DefaultPrincipal {
    /// The principal recorded in leaves.
    pub principal: String,
}

impl Authenticator for DefaultPrincipal {
    fn authenticate(&self, facts: &RequestFacts<'_>) -> Result<Submitter, tonic::Status> {
        Ok(Submitter {
            principal: self.principal.clone(),
            auth_method: "none".into(),
            peer: facts.peer.map(|p| p.to_string()).unwrap_or_default(),
        })
    }
}
