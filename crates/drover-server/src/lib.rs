//! Drover's scheduler service: the driver actor around the pure core, the commit pipeline, and
//! thin adapters for the worker protocol (gRPC) and the REST API, served on one port.
//!
//! Boundary: no scheduling decision is made here; every decision is the core's. This crate
//! moves inputs to the core and carries out its effects (commit first, then send).

pub mod audit;
pub mod auth;
pub mod clock;
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
use drover_core::{Coordinator, CoreConfig, Event, Snapshot};
use drover_store::{PgStore, SqliteStore, Store};
use rand::TryRngCore;
use tokio::sync::{broadcast, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

pub use http::openapi;

/// Committed events kept in memory for live subscribers before they must re-read the store.
const EVENT_BUFFER: usize = 65_536;

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

/// Opens the store, rebuilds the core from it, binds, and serves REST and gRPC on one port.
pub async fn start(cfg: ServerConfig) -> anyhow::Result<ServerHandle> {
    let dir = data_dir(&cfg)?;
    if !dir.as_os_str().is_empty() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let (store, snapshot, lock) = open_store(&cfg.store).await?;
    let secrets = Arc::new(secrets::SecretKeys::for_server(&cfg, &dir)?);
    let token_file = Some(dir.join("admin.token"));
    let auth = auth::Auth::start(store.clone(), &cfg.auth, token_file, cfg.listen)
        .await
        .context("loading the API tokens")?;
    let seed = os_seed()?;
    let active = snapshot.tasks.len();
    let metrics = Arc::new(metrics::Metrics::new());
    // Everything committed before the driver starts is in the snapshot; the tracker follows
    // the events after it.
    let tracker = metrics::Tracker::new(metrics.clone(), &snapshot.tasks);
    let last_seq = snapshot.next_event_seq.saturating_sub(1);
    let core = Coordinator::new(core_config(&cfg), seed, clock::now_micros(), snapshot);
    // Committed events, for live subscribers; a slow one lags and re-reads from the store.
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let tracker_feed = feed::EventFeed::subscribe(store.clone(), &events, Some(last_seq)).await?;
    let health = health::StoreHealth::new();
    let (driver, handle) =
        driver::Driver::new(core, store.clone(), metrics.clone(), events.clone());
    let driver = driver
        .with_secrets(secrets.clone())
        .with_store_retry(health.clone(), cfg.store_retry);
    // The store's lock is held until the driver has committed its last batch.
    let driver_task = tokio::spawn(async move {
        let _lock = lock;
        driver.run().await
    });
    // Background tasks; stopped when serving ends (the monitor holds a driver handle, which
    // would otherwise keep the driver running).
    let mut background = vec![tokio::spawn(tracker.run(tracker_feed)).abort_handle()];
    let worker_monitor = Arc::new(workers::WorkerMonitor::new(cfg.heartbeat_ms));
    background.extend(spawn_upkeep(
        &cfg,
        &store,
        &handle,
        &worker_monitor,
        &metrics,
    ));
    let hooks = start_webhooks(&cfg, &store, &events, &metrics).await?;
    let edge = edge::Edge::new(cfg.edge.clone());
    let app = app(
        &cfg,
        http::AppState {
            auth: auth.clone(),
            driver: handle,
            store,
            metrics,
            events,
            webhooks: hooks.clone(),
            workers: worker_monitor,
            edge: edge.clone(),
            secrets,
            health,
        },
    );

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, active_tasks = active, "drover server listening");
    let tls = cfg.tls.as_ref().map(tls::server_config).transpose()?;
    let (shutdown, serve) = serve(listener, app, (edge, tls), driver_task, hooks, background);
    Ok(ServerHandle {
        addr,
        auth,
        shutdown,
        serve,
    })
}

/// Takes the store's lock (one server per SQLite file), opens the store at `url` and loads
/// what the core starts from: the active tasks and the workflows in progress.
async fn open_store(
    url: &str,
) -> anyhow::Result<(Arc<dyn Store>, Snapshot, Option<store_lock::StoreLock>)> {
    let (store, lock): (Arc<dyn Store>, _) = match StoreUrl::parse(url)? {
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
    };
    let mut snapshot = store
        .load_snapshot()
        .await
        .context("loading the active tasks")?;
    snapshot.workflows_ended = flows::ended_nodes(store.as_ref(), &snapshot)
        .await
        .context("loading the workflows in progress")?;
    Ok((store, snapshot, lock))
}

/// The core's random seed, from the OS.
fn os_seed() -> anyhow::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .context("reading OS randomness")?;
    Ok(seed)
}

/// The core's settings, from the server's.
fn core_config(cfg: &ServerConfig) -> CoreConfig {
    CoreConfig {
        lease_ms: cfg.lease_ms,
        restart_grace_ms: cfg.restart_grace_ms,
        max_lost: cfg.max_lost,
        // A missed heartbeat makes a worker suspect: two and a half intervals of silence, so
        // one heartbeat delayed by a slow commit does not; never longer than half a lease.
        suspect_after_ms: (cfg.heartbeat_ms * 5 / 2).min(cfg.lease_ms / 2).max(1),
        ..CoreConfig::default()
    }
}

/// Spawns the worker monitor and the retention loop.
fn spawn_upkeep(
    cfg: &ServerConfig,
    store: &Arc<dyn Store>,
    handle: &driver::DriverHandle,
    worker_monitor: &Arc<workers::WorkerMonitor>,
    metrics: &Arc<metrics::Metrics>,
) -> [AbortHandle; 2] {
    let monitor = tokio::spawn(worker_monitor.clone().run(handle.clone(), metrics.clone()));
    let retention = tokio::spawn(retention::prune_loop(
        store.clone(),
        handle.clone(),
        cfg.event_retention,
        cfg.task_retention,
        cfg.audit_retention,
        cfg.prune_every,
        metrics.clone(),
    ));
    [monitor.abort_handle(), retention.abort_handle()]
}

/// Starts the webhook recorder and the stored webhooks' tasks.
async fn start_webhooks(
    cfg: &ServerConfig,
    store: &Arc<dyn Store>,
    events: &broadcast::Sender<Arc<Event>>,
    metrics: &Arc<metrics::Metrics>,
) -> anyhow::Result<Arc<webhooks::Webhooks>> {
    let hooks = webhooks::Webhooks::new(
        store.clone(),
        events.clone(),
        metrics.clone(),
        cfg.webhooks.clone(),
    )?;
    let n = hooks.start_all().await.context("loading the webhooks")?;
    if n > 0 {
        tracing::info!(webhooks = n, "webhook dispatcher started");
    }
    Ok(hooks)
}

/// The largest message a worker may send: its batches stay near 1 MiB, plus one result.
const MAX_WORKER_MESSAGE: usize = 16 << 20;

/// The REST API with the gRPC services mounted on it.
fn app(cfg: &ServerConfig, state: http::AppState) -> axum::Router {
    let grpc = WorkerServiceServer::new(grpc::WorkerGrpc {
        auth: state.auth.clone(),
        driver: state.driver.clone(),
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

/// Serves `app` until shutdown is sent or the driver stops (a fatal store error), then
/// stops the webhooks and the background tasks.
fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    (edge, tls): (Arc<edge::Edge>, Option<Arc<rustls::ServerConfig>>),
    driver_task: JoinHandle<anyhow::Result<()>>,
    hooks: Arc<webhooks::Webhooks>,
    background: Vec<AbortHandle>,
) -> (oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>) {
    let (tx, rx) = oneshot::channel::<()>();
    let serve = tokio::spawn(async move {
        let server = edge::serve(listener, app, edge, tls, async move {
            let _ = rx.await;
        });
        let r = tokio::select! {
            r = server => r.context("serving"),
            r = driver_task => match r.context("driver panicked") {
                Ok(r) => r,
                Err(e) => Err(e),
            },
        };
        hooks.shutdown();
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
