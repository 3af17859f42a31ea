//! A keep-alive HTTP/1.1 client for one witness's `add-checkpoint`
//! (c2sp.org/tlog-witness asks clients to reuse connections). `https://`
//! witnesses are verified against the Web PKI roots and the certificates
//! of `[witnessing] ca_file`.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;

/// Largest answer read from a witness (signature lines or a size).
const MAX_ANSWER: usize = 64 * 1024;

/// Why a witness URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Missing, or not `http://` / `https://` with a host.
    #[error("the URL {0:?} must be http:// or https:// with a host (the submission prefix)")]
    Invalid(String),
}

/// Why one request failed (the worker retries).
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Connecting or TLS failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The exchange failed.
    #[error("request: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("request: {0}")]
    Build(#[from] hyper::http::Error),
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer was too long.
    #[error("the answer is over {MAX_ANSWER} bytes")]
    TooLong,
}

/// Where a witness's `add-checkpoint` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    authority: String,
    path: String,
    https: bool,
}

impl Endpoint {
    /// Parses a submission prefix URL; `add-checkpoint` is appended.
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        let bad = || UrlError::Invalid(url.to_owned());
        let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        if uri.query().is_some() {
            return Err(bad());
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Endpoint {
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .ok_or_else(bad)?,
            path: format!("{}/add-checkpoint", uri.path().trim_end_matches('/')),
            host,
            https,
        })
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One witness's connection, opened on first use and again after a failure.
pub struct Conn {
    endpoint: Endpoint,
    timeout: Duration,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    sender: Option<Sender>,
}

/// The TLS client setup for `https://` witnesses: the Web PKI roots, and
/// the certificates of `ca_file` when one is given.
pub fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, super::WitnessingError> {
    use super::WitnessingError;
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let bad = |reason: String| WitnessingError::Ca {
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|source| WitnessingError::ReadCa {
            path: path.to_owned(),
            source,
        })?;
        let mut added = 0;
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| bad(e.to_string()))?;
            roots.add(c).map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("it holds no PEM certificate".into()));
        }
    }
    let cfg = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| WitnessingError::Ca {
        path: ca_file.map(|p| p.to_owned()).unwrap_or_default(),
        reason: e.to_string(),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

impl Conn {
    /// A connection to `endpoint` (not yet open); `tls` is used when the
    /// endpoint is `https://`.
    pub fn new(
        endpoint: Endpoint,
        timeout: Duration,
        tls: Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Conn {
        Conn {
            endpoint,
            timeout,
            tls,
            sender: None,
        }
    }

    /// POSTs `body`; returns the status and the answer's body.
    pub async fn post(&mut self, body: Vec<u8>) -> Result<(u16, Vec<u8>), PostError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(body)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(PostError::Timeout(timeout))
            }
        }
    }

    async fn exchange(&mut self, body: Vec<u8>) -> Result<(u16, Vec<u8>), PostError> {
        let reuse = match self.sender.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !reuse {
            self.sender = Some(self.connect().await?);
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(PostError::Connect("no connection".into()));
        };
        let req = hyper::Request::post(self.endpoint.path.as_str())
            .header("host", self.endpoint.authority.as_str())
            .header("content-type", "text/plain; charset=utf-8")
            .header("user-agent", "tlog-server")
            .body(Full::new(Bytes::from(body)))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| PostError::TooLong)?
            .to_bytes();
        Ok((status, bytes.to_vec()))
    }

    async fn connect(&self) -> Result<Sender, PostError> {
        let e = &self.endpoint;
        let tcp = tokio::net::TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(|err| PostError::Connect(err.to_string()))?;
        let _ = tcp.set_nodelay(true);
        if e.https {
            let name = rustls_pki_types::ServerName::try_from(e.host.clone())
                .map_err(|err| PostError::Connect(err.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|err| PostError::Connect(err.to_string()))?;
            handshake(hyper_util::rt::TokioIo::new(tls)).await
        } else {
            handshake(hyper_util::rt::TokioIo::new(tcp)).await
        }
    }
}

async fn handshake<IO>(io: IO) -> Result<Sender, PostError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submission_prefixes() {
        let e = Endpoint::parse("http://127.0.0.1:8080/w1/").expect("ok");
        assert_eq!(e.path, "/w1/add-checkpoint");
        assert_eq!(
            (e.host.as_str(), e.port, e.https),
            ("127.0.0.1", 8080, false)
        );
        let e = Endpoint::parse("https://witness.example.com").expect("ok");
        assert_eq!(
            (e.path.as_str(), e.port, e.https),
            ("/add-checkpoint", 443, true)
        );
        for bad in [
            "",
            "ftp://x/",
            "witness.example.com",
            "http:///x",
            "http://x/?a=b",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
