//! The accept loop of the one listening port: TCP, then TLS when configured, then HTTP/1.1 or
//! HTTP/2 (gRPC) by what the client speaks. Stops accepting at shutdown and lets open
//! connections finish their requests.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::audit::RemoteAddr;
use crate::tls::PeerCert;

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                // Out of descriptors or a connection reset before accept: keep serving.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let served = match acceptor {
                None => {
                    let conn = builder.serve_connection_with_upgrades(
                        TokioIo::new(tcp),
                        service(app, peer, None),
                    );
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => match handshake(&acceptor, tcp).await {
                    Ok((stream, cert)) => {
                        let conn = builder.serve_connection_with_upgrades(
                            TokioIo::new(stream),
                            service(app, peer, Some(cert)),
                        );
                        watcher.watch(conn.into_owned()).await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> std::io::Result<(tokio_rustls::server::TlsStream<TcpStream>, PeerCert)> {
    let stream = acceptor.accept(tcp).await?;
    // The verifier accepts a connection without a certificate, and only verified ones with.
    let verified = stream
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    Ok((stream, PeerCert(verified)))
}

/// The app as a hyper service; every request carries its peer's address and, on TLS
/// connections, the connection's `PeerCert`.
fn service(
    app: Router,
    peer: std::net::SocketAddr,
    cert: Option<PeerCert>,
) -> TowerToHyperService<
    impl tower::Service<
            hyper::Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future = impl Send,
        > + Clone,
> {
    TowerToHyperService::new(app.map_request(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(RemoteAddr(peer));
        if let Some(c) = cert {
            req.extensions_mut().insert(c);
        }
        req
    }))
}
