//! The HTTP read side: a listener of its own (`[http]`), plain or TLS,
//! serving the log as C2SP tiles (<https://c2sp.org/tlog-tiles>):
//! `<prefix>/checkpoint`, `<prefix>/tile/<L>/<N>[.p/<W>]` and
//! `<prefix>/tile/entries/<N>[.p/<W>]`.
//!
//! This module is the transport only: it parses the path, turns the HTTP
//! request into the facts authentication needs (the `authorization` and
//! `x-tlog-justification` headers, the peer), hands the read to
//! [`LogService::http_tile`], and maps the answer to HTTP (the one map
//! from service errors to HTTP codes is [`status_code`]). Bearer tokens
//! authenticate here as on gRPC; client certificates are not read on
//! this listener.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use tlog_core::tiles::TilePath;

use crate::service::LogService;
use crate::service::tiles::{TileBody, TileRead};
use crate::storage::LogStore;

/// `Cache-Control` of tiles and entry bundles: their bytes never change
/// (c2sp.org/tlog-tiles: "This endpoint is immutable").
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of the checkpoint: it changes with every batch (the
/// spec: "SHOULD prevent caching beyond a few seconds").
pub const CHECKPOINT_CACHE: &str = "no-cache";

/// The HTTP status for a gRPC status code: the one place service errors
/// become HTTP codes.
pub fn status_code(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            StatusCode::BAD_REQUEST
        }
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable | Code::Aborted => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What a path below the listener asks for, or why it is no tiles path.
pub fn route(prefix: &str, path: &str) -> Result<TileRead, String> {
    let rest = path
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| format!("not below the log's prefix {prefix:?}/"))?;
    if rest == "checkpoint" {
        return Ok(TileRead::Checkpoint);
    }
    TilePath::parse(rest)
        .map(TileRead::Tile)
        .map_err(|e| e.to_string())
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body + "\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Answers one HTTP request.
pub async fn answer<S: LogStore, B>(
    svc: &LogService<S>,
    prefix: &str,
    peer: SocketAddr,
    req: Request<B>,
) -> Response<Full<Bytes>> {
    let (parts, _body) = req.into_parts();
    let head = parts.method == Method::HEAD;
    if parts.method != Method::GET && !head {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served here".into(),
        );
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    let what = match route(prefix, parts.uri.path()) {
        Ok(w) => w,
        Err(why) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("{}: {why}", parts.uri.path()),
            );
        }
    };
    match svc.http_tile(what, peer, parts.headers).await {
        Ok(TileBody { bytes, immutable }) => {
            let (content_type, cache) = match what {
                TileRead::Checkpoint => ("text/plain; charset=utf-8", CHECKPOINT_CACHE),
                TileRead::Tile(_) => ("application/octet-stream", IMMUTABLE),
            };
            debug_assert_eq!(immutable, matches!(what, TileRead::Tile(_)));
            let len = bytes.len();
            let body = if head { Bytes::new() } else { bytes };
            let mut r = Response::new(Full::new(body));
            let h = r.headers_mut();
            h.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(content_type),
            );
            h.insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static(cache),
            );
            h.insert(
                hyper::header::CONTENT_LENGTH,
                hyper::header::HeaderValue::from(len),
            );
            r
        }
        Err(status) => {
            let mut r = text(status_code(status.code()), status.message().to_owned());
            if status.code() == tonic::Code::Unauthenticated {
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Bearer"),
                );
            }
            // Refusals and errors are not cached: the next answer may be
            // different (a token, the tree grown).
            r.headers_mut().insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-store"),
            );
            r
        }
    }
}

/// Serves HTTP/1.1 on `listener` (TLS when `tls` is given) until
/// `shutdown` resolves.
pub async fn serve<S: LogStore>(
    listener: tokio::net::TcpListener,
    svc: Arc<LogService<S>>,
    prefix: String,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let prefix: Arc<str> = Arc::from(prefix.trim_end_matches('/'));
    tokio::pin!(shutdown);
    // Open connections hold the service; at shutdown they are closed (a
    // tiles read is a GET a reader repeats), so that a keep-alive reader
    // cannot hold the server up.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => {
                connections.abort_all();
                while connections.join_next().await.is_some() {}
                return;
            }
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (svc, prefix, tls) = (svc.clone(), prefix.clone(), tls.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (svc, prefix) = (svc.clone(), prefix.clone());
                async move { Ok::<_, std::convert::Infallible>(answer(&svc, &prefix, peer, req).await) }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            let done = match tls {
                Some(acceptor) => match tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(s)) => {
                        builder
                            .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                            .await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %peer, error = %e, "http TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
                None => {
                    builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await
                }
            };
            if let Err(e) = done {
                tracing::debug!(peer = %peer, error = %e, "http connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_prefix() {
        assert_eq!(route("", "/checkpoint"), Ok(TileRead::Checkpoint));
        assert_eq!(route("/log", "/log/checkpoint"), Ok(TileRead::Checkpoint));
        assert!(route("/log", "/checkpoint").is_err());
        assert!(route("/log", "/logcheckpoint").is_err());
        assert_eq!(
            route("", "/tile/0/x001/234.p/5"),
            Ok(TileRead::Tile(TilePath::hashes(0, 1234, 5)))
        );
        assert_eq!(
            route("", "/tile/entries/000"),
            Ok(TileRead::Tile(TilePath::entries(0, 256)))
        );
        assert!(route("", "/tile/0/1").is_err());
    }

    #[test]
    fn every_code_has_an_http_status() {
        assert_eq!(status_code(tonic::Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status_code(tonic::Code::PermissionDenied),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status_code(tonic::Code::Unauthenticated),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_code(tonic::Code::DataLoss),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_code(tonic::Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
