//! HTTP: the monitor's own endpoint (`GET /metrics`, `POST /gossip`) and
//! the webhook client.

use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};

use crate::metrics::Metrics;

/// Largest gossip body accepted (a signed note is far smaller).
const MAX_GOSSIP_BYTES: usize = 64 * 1024;

/// Where gossiped checkpoints go: a function that routes a signed note to
/// the log whose key verifies it, answering whether one did.
pub type GossipRoute = Arc<dyn Fn(String, String) -> Result<String, String> + Send + Sync>;

/// Serves `/metrics` and `POST /gossip` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    gossip: GossipRoute,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let gossip = gossip.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                let gossip = gossip.clone();
                async move { handle(req, &metrics, &gossip, peer.to_string()).await }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "http connection ended");
            }
        });
    }
}

fn reply(status: StatusCode, body: String) -> Result<Response<Full<Bytes>>, hyper::http::Error> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    metrics: &Metrics,
    gossip: &GossipRoute,
    peer: String,
) -> Result<Response<Full<Bytes>>, hyper::http::Error> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(metrics.render()))),
        (&Method::POST, "/gossip") => {
            let body = match http_body_util::Limited::new(req.into_body(), MAX_GOSSIP_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("a checkpoint is at most {MAX_GOSSIP_BYTES} bytes\n"),
                    );
                }
            };
            let Ok(text) = String::from_utf8(body.to_vec()) else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "send the signed checkpoint note as UTF-8 text\n".into(),
                );
            };
            match gossip(text, format!("POST /gossip from {peer}")) {
                Ok(msg) => reply(StatusCode::ACCEPTED, format!("{msg}\n")),
                Err(msg) => reply(StatusCode::BAD_REQUEST, format!("{msg}\n")),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "GET /metrics, or POST /gossip with a signed checkpoint\n".into(),
        ),
    }
}

/// POSTs JSON to `url` (http or https), returning the status code.
pub async fn post_json(
    url: &str,
    body: &[u8],
    signature: Option<&str>,
    ca_pem: Option<&[u8]>,
) -> anyhow::Result<u16> {
    use anyhow::Context as _;
    let uri: hyper::Uri = url.parse().context("webhook URL")?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => anyhow::bail!("webhook URL must be http:// or https://"),
    };
    let host = uri.host().context("webhook URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("host", uri.authority().map(|a| a.as_str()).unwrap_or(&host))
        .header("content-type", "application/json")
        .header("user-agent", "tlog-monitor");
    if let Some(s) = signature {
        req = req.header("x-tlog-signature", s);
    }
    let req = req.body(Full::new(Bytes::copy_from_slice(body)))?;
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .context("connect timed out")??;
    let fut = async {
        if https {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            match ca_pem {
                Some(pem) => {
                    use rustls_pki_types::pem::PemObject as _;
                    for c in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                        roots.add(c.context("webhook ca_file")?)?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let cfg = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls_pki_types::ServerName::try_from(host.clone())?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await?;
            send(hyper_util::rt::TokioIo::new(tls), req).await
        } else {
            send(hyper_util::rt::TokioIo::new(tcp), req).await
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), fut)
        .await
        .context("webhook timed out")?
}

async fn send<IO>(io: IO, req: Request<Full<Bytes>>) -> anyhow::Result<u16>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Ok(status)
}
