//! The hardened edge: the accept loop that serves REST and gRPC on one port, with bounds on
//! what a client can hold. A cap on open connections (a semaphore taken before `accept`, so
//! extra connections wait in the kernel's backlog); a deadline for a request's head (HTTP/1's
//! header-read timeout, and the protocol sniff before it); a connection with no request in
//! flight for the idle timeout is closed (this also ends an HTTP/2 connection whose request
//! headers never complete); HTTP/2 keep-alive pings end connections to vanished peers (a
//! worker's session then ends and its name frees up); and a per-client token bucket answers
//! 429 (`RESOURCE_EXHAUSTED` for gRPC) with `Retry-After`. Event-stream subscribers are capped
//! by `subscribers`, taken by the SSE and gRPC watch handlers. Each request carries a `Closer`
//! for its connection: the worker session closes the connection of a worker that stopped
//! reading, whose buffered frames nothing else would free.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response};
use axum::response::IntoResponse;
use axum::Router;
use drover_api::{ApiError, ErrorCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::http::HttpError;
use crate::tls::PeerCert;

/// HTTP/2 keep-alive: a ping this often, the connection closed when one goes unanswered this
/// long (a worker behind a network cut is noticed within their sum).
const H2_PING_EVERY: Duration = Duration::from_secs(10);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections (streams never end by themselves).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// Buckets kept before idle (full) ones are forgotten.
const MAX_BUCKETS: usize = 100_000;
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The edge's limits; each is a `drover server` flag.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// A request's head must arrive within this (`--header-read-timeout`).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed (`--idle-timeout`).
    pub idle_timeout: Duration,
    /// Open connections at once (`--max-connections`).
    pub max_connections: usize,
    /// Open event streams at once, SSE and gRPC together (`--max-event-streams`).
    pub max_subscribers: usize,
    /// Requests per second per client, sustained (`--rate-limit`; 0: no limit).
    pub rate_per_sec: u32,
    /// Requests a client may send at once above the rate (`--rate-burst`).
    pub rate_burst: u32,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_subscribers: 1024,
            rate_per_sec: 100,
            rate_burst: 200,
        }
    }
}

/// Who a request counts against: a hash of its bearer token, else its remote address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Token([u8; 16]),
    Ip(IpAddr),
}

impl ClientKey {
    // TODO(auth): once sessions exist, a session cookie keys like its token.
    pub fn of<B>(req: &Request<B>, remote: IpAddr) -> ClientKey {
        match req.headers().get(header::AUTHORIZATION) {
            Some(v) => {
                let digest = Sha256::digest(v.as_bytes());
                let mut k = [0u8; 16];
                k.copy_from_slice(&digest[..16]);
                ClientKey::Token(k)
            }
            None => ClientKey::Ip(remote),
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per client: `burst` requests at once, refilled at `rate` per second.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<ClientKey, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate_per_sec),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token; `Err(wait)` until the next one when the bucket is empty.
    pub fn take(&self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

/// What the serving loop and the handlers share.
pub struct Edge {
    pub cfg: EdgeConfig,
    limiter: RateLimiter,
    subscribers: Arc<Semaphore>,
}

impl Edge {
    pub fn new(cfg: EdgeConfig) -> Arc<Edge> {
        Arc::new(Edge {
            limiter: RateLimiter::new(cfg.rate_per_sec, cfg.rate_burst),
            subscribers: Arc::new(Semaphore::new(cfg.max_subscribers)),
            cfg,
        })
    }

    /// A place for one more event stream, held while it is open; `None` when all are taken.
    pub fn subscriber(&self) -> Option<OwnedSemaphorePermit> {
        self.subscribers.clone().try_acquire_owned().ok()
    }

    pub fn too_many_streams(&self) -> ApiError {
        ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "{} event streams are open, the most this server allows (--max-event-streams); \
                 retry later",
                self.cfg.max_subscribers
            ),
        )
    }

    /// 429 (or gRPC `RESOURCE_EXHAUSTED`) with `Retry-After` in whole seconds.
    fn limited<B>(&self, req: &Request<B>, wait: Duration) -> Response<Body> {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = HeaderValue::from(secs.max(1));
        let msg = format!(
            "over {} requests per second (burst {}); retry after {secs:?} s",
            self.cfg.rate_per_sec, self.cfg.rate_burst
        );
        let grpc = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let mut resp = if grpc {
            tonic::Status::resource_exhausted(msg).into_http::<Body>()
        } else {
            HttpError(ApiError::new(ErrorCode::ResourceExhausted, msg)).into_response()
        };
        resp.headers_mut().insert(header::RETRY_AFTER, secs);
        resp
    }
}

/// Closes the connection a request came on (a request extension): a handler uses it to end a
/// peer that misbehaves below the request level, e.g. a worker that stopped reading its
/// stream, whose buffered frames only closing the connection frees.
#[derive(Clone, Debug)]
pub struct Closer(Arc<Notify>);

impl Closer {
    pub fn close(&self) {
        // A stored permit: the connection loop sees it even if it is not waiting right now.
        self.0.notify_one();
    }
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    inflight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// When the connection became idle, or `None` while a request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        (self.inflight.load(Ordering::SeqCst) == 0).then_some(since)
    }
}

/// One request in flight, until its response body ends or is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted as in flight.
struct Tracked {
    inner: Body,
    _inflight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listener` until `shutdown`, then closes connections gracefully (waiting
/// at most `SHUTDOWN_WAIT` for them).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    edge: Arc<Edge>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let conns = Arc::new(Semaphore::new(edge.cfg.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            remote,
            app: app.clone(),
            edge: edge.clone(),
            stop: stop_rx.clone(),
        };
        let conn = connection(stream, acceptor.clone(), peer);
        tokio::spawn(async move {
            conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(edge.cfg.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_WAIT, conns.acquire_many(all)).await;
    Ok(())
}

/// What serving one connection needs besides its stream.
struct Peer {
    remote: SocketAddr,
    app: Router,
    edge: Arc<Edge>,
    stop: watch::Receiver<bool>,
}

/// Serves one connection: within the header timeout, sniffs the protocol (or, with TLS, does
/// the handshake and reads the protocol from ALPN), then serves it.
async fn connection(stream: TcpStream, tls: Option<TlsAcceptor>, peer: Peer) {
    let within = peer.edge.cfg.header_read_timeout;
    let Some(acceptor) = tls else {
        if let Some(h2) = sniff(&stream, within).await {
            serve_connection(stream, h2, None, peer).await;
        }
        return;
    };
    let stream = match tokio::time::timeout(within, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(remote = %peer.remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let session = stream.get_ref().1;
    let h2 = session.alpn_protocol() == Some(b"h2");
    // The verifier lets a client without a certificate in, and only verified ones with.
    let cert = PeerCert(session.peer_certificates().is_some_and(|c| !c.is_empty()));
    serve_connection(stream, h2, Some(cert), peer).await;
}

/// Serves an established connection until it ends, is idle too long, or the server stops.
async fn serve_connection<I>(io: I, h2: bool, cert: Option<PeerCert>, peer: Peer)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Peer {
        remote,
        app,
        edge,
        mut stop,
    } = peer;
    let activity = Arc::new(Activity {
        inflight: AtomicUsize::new(0),
        idle_since: Mutex::new(Instant::now()),
    });
    let closer = Closer(Arc::new(Notify::new()));
    let svc = {
        let (edge, activity, closer) = (edge.clone(), activity.clone(), closer.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            handle(
                req,
                (remote, cert, closer.clone()),
                app.clone(),
                edge.clone(),
                activity.clone(),
            )
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.cfg.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_EVERY)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%remote, error = %e, "connection ended");
                }
                return;
            }
            () = idle(&activity, edge.cfg.idle_timeout), if !closing => {
                tracing::debug!(%remote, "closing an idle connection");
                return;
            }
            () = closer.0.notified() => {
                tracing::debug!(%remote, "closing a connection its handler cut off");
                return;
            }
            r = stop.changed(), if !closing => {
                if r.is_ok() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// One request: counted against its client's bucket (health checks exempt), then served.
async fn handle(
    mut req: Request<Incoming>,
    (remote, cert, closer): (SocketAddr, Option<PeerCert>, Closer),
    app: Router,
    edge: Arc<Edge>,
    activity: Arc<Activity>,
) -> Result<Response<Body>, Infallible> {
    let exempt = matches!(req.uri().path(), "/healthz" | "/readyz");
    if !exempt {
        if let Err(wait) = edge
            .limiter
            .take(ClientKey::of(&req, remote.ip()), Instant::now())
        {
            return Ok(edge.limited(&req, wait));
        }
    }
    req.extensions_mut().insert(ConnectInfo(remote));
    req.extensions_mut().insert(closer);
    if let Some(c) = cert {
        req.extensions_mut().insert(c);
    }
    let inflight = activity.begin();
    let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
    Ok(resp.map(|b| {
        Body::new(Tracked {
            inner: b,
            _inflight: inflight,
        })
    }))
}

/// Resolves once the connection has had no request in flight for `limit`.
async fn idle(activity: &Activity, limit: Duration) {
    loop {
        match activity.idle_since() {
            Some(since) if since.elapsed() >= limit => return,
            Some(since) => tokio::time::sleep_until((since + limit).into()).await,
            None => tokio::time::sleep(limit).await,
        }
    }
}

/// Whether the client speaks HTTP/2 with prior knowledge (gRPC) or HTTP/1: peeks at its first
/// bytes, waiting at most `within`. `None`: it closed or sent nothing in time.
async fn sniff(stream: &TcpStream, within: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 24];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // Part of the preface: wait for the rest (peek returns at once while data waits).
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let l = RateLimiter::new(10, 3);
        let k = ClientKey::Ip([127, 0, 0, 1].into());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take(k.clone(), t0), Ok(()));
        }
        let wait = l.take(k.clone(), t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Another client has its own bucket.
        assert_eq!(l.take(ClientKey::Ip([127, 0, 0, 2].into()), t0), Ok(()));
        // A tenth of a second later, one more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(l.take(k.clone(), t1), Ok(()));
        assert!(l.take(k, t1).is_err());
    }

    #[test]
    fn tokens_key_by_their_hash_and_others_by_address() {
        let ip: IpAddr = [10, 0, 0, 1].into();
        let with = |v: &str| {
            let r = Request::builder()
                .header(header::AUTHORIZATION, v)
                .body(())
                .unwrap();
            ClientKey::of(&r, ip)
        };
        assert_eq!(with("Bearer a"), with("Bearer a"));
        assert_ne!(with("Bearer a"), with("Bearer b"));
        let anon = Request::builder().body(()).unwrap();
        assert_eq!(ClientKey::of(&anon, ip), ClientKey::Ip(ip));
    }

    #[test]
    fn no_limit_at_rate_zero() {
        let l = RateLimiter::new(0, 1);
        let k = ClientKey::Ip([127, 0, 0, 1].into());
        for _ in 0..1000 {
            assert!(l.take(k.clone(), Instant::now()).is_ok());
        }
    }
}
