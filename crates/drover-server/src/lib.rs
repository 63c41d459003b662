//! Drover's scheduler service: the driver actor around the pure core, the commit pipeline, and
//! thin adapters for the worker protocol (gRPC) and the REST API, served on one port.
//!
//! Boundary: no scheduling decision is made here; every decision is the core's. This crate
//! moves inputs to the core and carries out its effects (commit first, then send).

pub mod audit;
pub mod auth;
pub mod clock;
pub mod cluster;
mod dashboard;
pub mod destinations;
pub mod driver;
pub mod edge;
mod events;
mod feed;
mod flows;
mod grpc;
pub mod health;
pub mod http;
mod ids;
mod metrics;
mod retention;
mod schedules;
pub mod secrets;
pub mod store_lock;
mod submit;
mod tasks;
pub mod tls;
pub mod web_states;
pub mod webhooks;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use drover_api::proto::event_service_server::EventServiceServer;
use drover_api::proto::worker_service_server::WorkerServiceServer;
use drover_core::CoreConfig;
use drover_store::{PgStore, SqliteStore, Store};
use rand::TryRngCore;
use tokio::sync::{broadcast, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

pub use http::openapi;

/// Committed events kept in memory for live subscribers before they must re-read the store.
/// The ring is full after this many events whoever listens (a subscriber that stops reading
/// only falls behind it), so it is the most memory live events take: a few MiB.
const EVENT_BUFFER: usize = 16_384;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// `sqlite://PATH` (relative), `sqlite:///abs/path`, or `postgres://USER@HOST/DB`
    /// (`postgresql://` too; see `StoreUrl`).
    pub store: String,
    /// Where the server keeps its own files (the admin token of a fresh store, the secret
    /// key) unless told otherwise; `None`: the SQLite file's directory (a PostgreSQL store
    /// needs one).
    pub data_dir: Option<PathBuf>,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub restart_grace_ms: u64,
    pub max_lost: u32,
    /// At most this many tasks waiting over all queues; a submit past it gets 429.
    pub max_queued: Option<u64>,
    /// How long a failing commit is retried (the server degraded meanwhile) before the
    /// server stops.
    pub store_retry: std::time::Duration,
    /// How long committed events (and webhook delivery attempts) are kept.
    pub event_retention: std::time::Duration,
    /// How long terminal tasks (with their attempts and logs) are kept after they finished.
    pub task_retention: std::time::Duration,
    /// How long audit records are kept.
    pub audit_retention: std::time::Duration,
    /// How often the retention windows are applied.
    pub prune_every: std::time::Duration,
    pub webhooks: webhooks::WebhookConfig,
    /// Serve TLS (REST, gRPC and the dashboard on the same port).
    pub tls: Option<tls::TlsFiles>,
    /// Connection, timeout, rate and event-stream limits.
    pub edge: edge::EdgeConfig,
    /// The key that seals secret env (default: `secret.key` in the data directory, created
    /// on first start, mode 0600).
    pub secret_key_file: Option<PathBuf>,
    /// During a key rotation: the old key, which still opens what it sealed.
    pub previous_secret_key_file: Option<PathBuf>,
    pub auth: auth::AuthConfig,
    /// This server's name in the cluster (default `HOST:PORT`).
    pub name: Option<String>,
    /// The address clients and workers reach it at (default `http[s]://HOST:PORT` of the
    /// listener).
    pub advertise: Option<String>,
    /// The leader's lease (`--leader-lease`): a standby takes over about this long after the
    /// leader dies.
    pub leader_lease: std::time::Duration,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, store: String) -> Self {
        ServerConfig {
            listen,
            store,
            data_dir: None,
            lease_ms: 15_000,
            heartbeat_ms: 1_000,
            restart_grace_ms: 20_000,
            max_lost: 3,
            max_queued: None,
            store_retry: driver::STORE_RETRY,
            event_retention: std::time::Duration::from_secs(7 * 24 * 3600),
            task_retention: std::time::Duration::from_secs(7 * 24 * 3600),
            audit_retention: std::time::Duration::from_secs(90 * 24 * 3600),
            prune_every: std::time::Duration::from_secs(60),
            webhooks: webhooks::WebhookConfig::default(),
            tls: None,
            edge: edge::EdgeConfig::default(),
            secret_key_file: None,
            previous_secret_key_file: None,
            auth: auth::AuthConfig::default(),
            name: None,
            advertise: None,
            leader_lease: cluster::DEFAULT_LEASE,
        }
    }
}

/// Where the store is, from `--store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH`: the SQLite file (relative, or absolute with `sqlite:///`).
    Sqlite(PathBuf),
    /// `postgres://` or `postgresql://`: the URL as given (libpq's form, parsed by the store).
    Postgres(String),
}

impl StoreUrl {
    pub fn parse(url: &str) -> anyhow::Result<StoreUrl> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            anyhow::ensure!(
                !path.is_empty(),
                "--store sqlite:// needs a path, e.g. sqlite://drover-data/drover.db"
            );
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_string()));
        }
        anyhow::bail!("unknown store URL '{url}'; use sqlite://PATH or postgres://USER@HOST/DB")
    }

    /// The directory of the server's own files when none is given: the SQLite file's.
    pub fn default_data_dir(&self) -> Option<PathBuf> {
        match self {
            StoreUrl::Sqlite(path) => Some(
                path.parent()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(".")),
            ),
            StoreUrl::Postgres(_) => None,
        }
    }

    /// For messages: the file, or the database without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => path.display().to_string(),
            StoreUrl::Postgres(url) => redact_password(url),
        }
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db` (a `password=` in the
/// query too).
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<&str> = query
                .split('&')
                .map(|p| {
                    if p.starts_with("password=") {
                        "password=***"
                    } else {
                        p
                    }
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Where a `sqlite://` URL points (`drover up` and `drover bench` run on SQLite).
pub fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => Ok(path),
        StoreUrl::Postgres(_) => anyhow::bail!("'{}' is not a SQLite store", redact_password(url)),
    }
}

/// The directory of the server's own files: `cfg.data_dir`, else the SQLite file's.
pub fn data_dir(cfg: &ServerConfig) -> anyhow::Result<PathBuf> {
    if let Some(d) = &cfg.data_dir {
        return Ok(d.clone());
    }
    StoreUrl::parse(&cfg.store)?.default_data_dir().context(
        "a PostgreSQL store needs a data directory for the server's own files (--data-dir)",
    )
}

pub struct ServerHandle {
    pub addr: SocketAddr,
    /// Tokens: `drover up` mints its workers' token here and reads where the admin token is.
    pub auth: Arc<auth::Auth>,
    shutdown: oneshot::Sender<()>,
    serve: JoinHandle<anyhow::Result<()>>,
}

impl ServerHandle {
    /// Stops accepting requests, lets the driver finish its batch, and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.serve.await.context("server task panicked")?
    }

    /// Waits until the server stops by itself (a fatal store error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.serve).await.context("server task panicked")?
    }
}

/// Opens the store, binds, runs the first election (a lone server leads from its first
/// request), and serves REST and gRPC on one port; the cluster loop runs from then on.
pub async fn start(cfg: ServerConfig) -> anyhow::Result<ServerHandle> {
    cluster::check_lease(cfg.leader_lease).map_err(anyhow::Error::msg)?;
    let dir = data_dir(&cfg)?;
    if !dir.as_os_str().is_empty() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let (store, lock) = open_store(&cfg.store).await?;
    let shared = store.notices().is_some();
    let secrets = Arc::new(secrets::SecretKeys::for_server(&cfg, &dir)?);
    let token_file = Some(dir.join("admin.token"));
    let auth = auth::Auth::start(store.clone(), &cfg.auth, token_file, cfg.listen)
        .await
        .context("loading the API tokens")?;
    let metrics = Arc::new(metrics::Metrics::new());
    // Committed events, for live subscribers; a slow one lags and re-reads from the store.
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let hooks = webhooks::Webhooks::new(
        store.clone(),
        events.clone(),
        metrics.clone(),
        cfg.webhooks.clone(),
    )?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let cluster = cluster::Cluster::new(member(&cfg, addr), cfg.leader_lease);
    let parts = cluster::term::Parts {
        cfg: cfg.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        events: events.clone(),
        workers: Arc::new(workers::WorkerMonitor::new(cfg.heartbeat_ms)),
        webhooks: hooks.clone(),
        secrets: secrets.clone(),
        health: health::StoreHealth::new(),
    };
    let elector = cluster::elect::Elector::new(cluster.clone(), parts.clone(), shared);
    let first = first_election(&elector).await?;
    // Tokens created or revoked by other servers on the store.
    let background: Vec<AbortHandle> = store
        .notices()
        .map(|n| tokio::spawn(auth.clone().follow(n.tokens)).abort_handle())
        .into_iter()
        .collect();
    let cluster_loop = run_cluster(elector, first, lock);
    let edge = edge::Edge::new(cfg.edge.clone());
    let app = app(
        &cfg,
        http::AppState {
            auth: auth.clone(),
            driver: cluster.slot.clone(),
            cluster: cluster.clone(),
            store,
            metrics,
            events,
            webhooks: hooks,
            workers: parts.workers.clone(),
            edge: edge.clone(),
            secrets,
            health: parts.health.clone(),
        },
    );
    tracing::info!(%addr, server = %cluster.me.name, leader = cluster.is_leader(), "drover server listening");
    let tls = cfg.tls.as_ref().map(tls::server_config).transpose()?;
    let (shutdown, serve) = serve(listener, app, (edge, tls), cluster_loop, background);
    Ok(ServerHandle {
        addr,
        auth,
        shutdown,
        serve,
    })
}

/// Spawns the cluster loop; the sender stops it. The store's lock is held until the last term
/// has committed its last batch.
fn run_cluster(
    elector: cluster::elect::Elector,
    first: Option<cluster::term::Term>,
    lock: Option<store_lock::StoreLock>,
) -> (
    JoinHandle<anyhow::Result<()>>,
    tokio::sync::watch::Sender<bool>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let _lock = lock;
        elector.run(first, stopped).await
    });
    (task, stop)
}

/// Registers this server and tries once to lead, before it serves: a lone server (SQLite)
/// leads from its first request.
async fn first_election(
    elector: &cluster::elect::Elector,
) -> anyhow::Result<Option<cluster::term::Term>> {
    let me = &elector.cluster.me;
    elector
        .parts
        .store
        .heartbeat(me)
        .await
        .context("registering this server with the store")?;
    let first = elector.try_lead().await?;
    if first.is_none() {
        tracing::info!(server = %me.name, "standing by: another server leads");
    }
    Ok(first)
}

/// This server as the cluster knows it: `--name` (default `HOST:PORT`) and `--advertise`
/// (default the listener's address, with the host's name when it listens on every interface).
fn member(cfg: &ServerConfig, addr: SocketAddr) -> drover_store::Member {
    let host = if addr.ip().is_unspecified() {
        host_name()
    } else {
        addr.ip().to_string()
    };
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let authority = match addr {
        SocketAddr::V6(a) if !a.ip().is_unspecified() => format!("[{host}]:{}", a.port()),
        _ => format!("{host}:{}", addr.port()),
    };
    drover_store::Member {
        name: cfg.name.clone().unwrap_or_else(|| authority.clone()),
        address: cfg
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{authority}")),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Takes the store's lock (one server per SQLite file) and opens the store at `url`.
async fn open_store(url: &str) -> anyhow::Result<(Arc<dyn Store>, Option<store_lock::StoreLock>)> {
    Ok(match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => {
            let lock = store_lock::StoreLock::acquire(&path)?;
            let store = SqliteStore::open(&path)
                .with_context(|| format!("opening the store at {}", path.display()))?;
            (Arc::new(store), Some(lock))
        }
        StoreUrl::Postgres(url) => (
            Arc::new(
                PgStore::connect(&url)
                    .await
                    .with_context(|| format!("opening the store at {}", redact_password(&url)))?,
            ),
            None,
        ),
    })
}

/// The core's random seed, from the OS.
pub(crate) fn os_seed() -> anyhow::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .context("reading OS randomness")?;
    Ok(seed)
}

/// The core's settings, from the server's.
pub(crate) fn core_config(cfg: &ServerConfig) -> CoreConfig {
    CoreConfig {
        lease_ms: cfg.lease_ms,
        restart_grace_ms: cfg.restart_grace_ms,
        max_lost: cfg.max_lost,
        max_queued: cfg.max_queued,
        // A missed heartbeat makes a worker suspect: two and a half intervals of silence, so
        // one heartbeat delayed by a slow commit does not; never longer than half a lease.
        suspect_after_ms: (cfg.heartbeat_ms * 5 / 2).min(cfg.lease_ms / 2).max(1),
        ..CoreConfig::default()
    }
}

/// The largest message a worker may send: its batches stay near 1 MiB, plus one result.
const MAX_WORKER_MESSAGE: usize = 16 << 20;

/// The REST API with the gRPC services mounted on it.
fn app(cfg: &ServerConfig, state: http::AppState) -> axum::Router {
    let grpc = WorkerServiceServer::new(grpc::WorkerGrpc {
        auth: state.auth.clone(),
        cluster: state.cluster.clone(),
        heartbeat_ms: cfg.heartbeat_ms,
        lease_ms: cfg.lease_ms,
        require_client_cert: cfg.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
    })
    // A worker's `Updates` may carry handler results of up to 1 MiB each.
    .max_decoding_message_size(MAX_WORKER_MESSAGE);
    let watch = EventServiceServer::new(events::EventGrpc {
        auth: state.auth.clone(),
        store: state.store.clone(),
        events: state.events.clone(),
        metrics: state.metrics.clone(),
        edge: state.edge.clone(),
    });
    let audit = audit::AuditLog::start(state.store.clone());
    // gRPC and REST share one port: the gRPC services' paths go to tonic.
    let guard = state.auth.clone();
    // gRPC and REST share one port: the gRPC services' paths go to tonic. Every route is
    // behind the one guard (auth/layer.rs); the audit log wraps it, so it sees refusals too.
    http::router(state)
        .route_service("/drover.v1.WorkerService/{*method}", grpc)
        .route_service("/drover.v1.EventService/{*method}", watch)
        .layer(axum::middleware::from_fn_with_state(guard, auth::guard))
        .layer(axum::middleware::from_fn_with_state(audit, audit::record))
}

/// Serves `app` until shutdown is sent (then stops the cluster loop, which commits the last
/// batch and resigns) or the cluster loop ends by itself (a lone server's store failed).
fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    (edge, tls): (Arc<edge::Edge>, Option<Arc<rustls::ServerConfig>>),
    (mut cluster_task, stop_cluster): (
        JoinHandle<anyhow::Result<()>>,
        tokio::sync::watch::Sender<bool>,
    ),
    background: Vec<AbortHandle>,
) -> (oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>) {
    let (tx, rx) = oneshot::channel::<()>();
    let serve = tokio::spawn(async move {
        let server = edge::serve(listener, app, edge, tls, async move {
            let _ = rx.await;
        });
        let r = tokio::select! {
            r = server => {
                let _ = stop_cluster.send(true);
                let stopped = (&mut cluster_task).await.context("cluster loop panicked");
                r.context("serving").and(stopped.and_then(|r| r))
            }
            r = &mut cluster_task => match r.context("cluster loop panicked") {
                Ok(r) => r,
                Err(e) => Err(e),
            },
        };
        for b in background {
            b.abort();
        }
        r
    });
    (tx, serve)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn store_urls_and_where_the_servers_files_go() {
        let sqlite = StoreUrl::parse("sqlite://drover-data/drover.db").unwrap();
        assert_eq!(sqlite, StoreUrl::Sqlite("drover-data/drover.db".into()));
        assert_eq!(
            sqlite.default_data_dir(),
            Some(PathBuf::from("drover-data"))
        );
        let abs = StoreUrl::parse("sqlite:///var/lib/drover/d.db").unwrap();
        assert_eq!(
            abs.default_data_dir(),
            Some(PathBuf::from("/var/lib/drover"))
        );
        for url in [
            "postgres://u@h/db",
            "postgresql://u:pw@h:5433/db?options=-csearch_path%3Dx",
        ] {
            let pg = StoreUrl::parse(url).unwrap();
            assert_eq!(pg, StoreUrl::Postgres(url.into()));
            assert_eq!(pg.default_data_dir(), None);
        }
        assert!(StoreUrl::parse("sqlite://").is_err());
        assert!(StoreUrl::parse("mysql://h/db").is_err());
        assert!(sqlite_path("postgres://u@h/db").is_err());

        let mut cfg = ServerConfig::new(([127, 0, 0, 1], 0).into(), "postgres://u@h/db".into());
        assert!(data_dir(&cfg)
            .unwrap_err()
            .to_string()
            .contains("--data-dir"));
        cfg.data_dir = Some("/srv/drover".into());
        assert_eq!(data_dir(&cfg).unwrap(), PathBuf::from("/srv/drover"));
        cfg.store = "sqlite://a/b.db".into();
        assert_eq!(data_dir(&cfg).unwrap(), PathBuf::from("/srv/drover"));
        cfg.data_dir = None;
        assert_eq!(data_dir(&cfg).unwrap(), PathBuf::from("a"));
    }

    #[test]
    fn passwords_are_not_shown() {
        let d = |u: &str| StoreUrl::parse(u).unwrap().describe();
        assert_eq!(d("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(d("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(d("postgres://h/db?user=u"), "postgres://h/db?user=u");
        assert_eq!(d("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            d("postgres://h/db?user=u&password=pw"),
            "postgres://h/db?user=u&password=***"
        );
        assert_eq!(d("postgres://u:pw@h"), "postgres://u:***@h");
    }
}
