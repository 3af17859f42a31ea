//! Who may do what, and the record of it: authentication (mutual TLS and
//! bearer tokens), authorization (Cedar), the access log and ledger, rate
//! limits, and the ingress layer that bounds and records what arrives
//! before the service sees it.
//!
//! - [`auth`]: the authenticator slot, certificate principals.
//! - [`tokens`]: signed bearer tokens (issuers, lifetimes, claims).
//! - [`authz`]: the Cedar policy and its decisions.
//! - [`audit`]: access records, to the file access log and the ledger.
//! - [`ratelimit`]: token buckets per principal and per peer.
//! - [`ingress`]: the TLS handshake and the decode bound.

pub mod audit;
pub mod auth;
pub mod authz;
pub mod ingress;
pub mod ratelimit;
pub mod tokens;
