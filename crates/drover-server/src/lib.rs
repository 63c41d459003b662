//! Drover's scheduler service: the driver actor around the pure core, the commit pipeline, and
//! thin adapters for the worker protocol (gRPC) and the REST API, served on one port.
//!
//! Boundary: no scheduling decision is made here; every decision is the core's. This crate
//! moves inputs to the core and carries out its effects (commit first, then send).

pub mod auth;
pub mod clock;
mod dashboard;
pub mod driver;
mod events;
mod feed;
mod flows;
mod grpc;
pub mod http;
mod ids;
mod metrics;
mod retention;
mod schedules;
mod submit;
mod tasks;
pub mod web_states;
pub mod webhooks;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use drover_api::proto::event_service_server::EventServiceServer;
use drover_api::proto::worker_service_server::WorkerServiceServer;
use drover_core::{Coordinator, CoreConfig};
use drover_store::{SqliteStore, Store};
use rand::TryRngCore;

pub use http::openapi;

/// Committed events kept in memory for live subscribers before they must re-read the store.
const EVENT_BUFFER: usize = 65_536;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// `sqlite://PATH` (relative) or `sqlite:///abs/path`.
    pub store: String,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub restart_grace_ms: u64,
    pub max_lost: u32,
    /// How long committed events (and webhook delivery attempts) are kept.
    pub event_retention: std::time::Duration,
    /// How long terminal tasks (with their attempts and logs) are kept after they finished.
    pub task_retention: std::time::Duration,
    /// How often the retention windows are applied.
    pub prune_every: std::time::Duration,
    pub webhooks: webhooks::WebhookConfig,
    pub auth: auth::AuthConfig,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, store: String) -> Self {
        ServerConfig {
            listen,
            store,
            lease_ms: 15_000,
            heartbeat_ms: 1_000,
            restart_grace_ms: 20_000,
            max_lost: 3,
            event_retention: std::time::Duration::from_secs(7 * 24 * 3600),
            task_retention: std::time::Duration::from_secs(7 * 24 * 3600),
            prune_every: std::time::Duration::from_secs(60),
            webhooks: webhooks::WebhookConfig::default(),
            auth: auth::AuthConfig::default(),
        }
    }
}

/// Where a `sqlite://` URL points.
pub fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        anyhow::ensure!(
            !path.is_empty(),
            "--store sqlite:// needs a path, e.g. sqlite://drover-data/drover.db"
        );
        return Ok(PathBuf::from(path));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        anyhow::bail!("the PostgreSQL store is not available in this build yet; use sqlite://PATH");
    }
    anyhow::bail!("unknown store URL '{url}'; use sqlite://PATH")
}

pub struct ServerHandle {
    pub addr: SocketAddr,
    /// Tokens: `drover up` mints its workers' token here and reads where the admin token is.
    pub auth: Arc<auth::Auth>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    serve: tokio::task::JoinHandle<anyhow::Result<()>>,
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
    let path = sqlite_path(&cfg.store)?;
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&path)
            .with_context(|| format!("opening the store at {}", path.display()))?,
    );
    let token_file = path.parent().map(|d| d.join("admin.token"));
    let auth = auth::Auth::start(store.clone(), &cfg.auth, token_file, cfg.listen)
        .await
        .context("loading the API tokens")?;
    let mut snapshot = store
        .load_snapshot()
        .await
        .context("loading the active tasks")?;
    snapshot.workflows_ended = flows::ended_nodes(store.as_ref(), &snapshot)
        .await
        .context("loading the workflows in progress")?;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .context("reading OS randomness")?;
    let core_cfg = CoreConfig {
        lease_ms: cfg.lease_ms,
        restart_grace_ms: cfg.restart_grace_ms,
        max_lost: cfg.max_lost,
        // A missed heartbeat makes a worker suspect: two and a half intervals of silence, so
        // one heartbeat delayed by a slow commit does not; never longer than half a lease.
        suspect_after_ms: (cfg.heartbeat_ms * 5 / 2).min(cfg.lease_ms / 2).max(1),
        ..CoreConfig::default()
    };
    let active = snapshot.tasks.len();
    let metrics = Arc::new(metrics::Metrics::new());
    // Everything committed before the driver starts is in the snapshot; the tracker follows
    // the events after it.
    let tracker = metrics::Tracker::new(metrics.clone(), &snapshot.tasks);
    let last_seq = snapshot.next_event_seq.saturating_sub(1);
    let core = Coordinator::new(core_cfg, seed, clock::now_micros(), snapshot);
    // Committed events, for live subscribers; a slow one lags and re-reads from the store.
    let (events, _) = tokio::sync::broadcast::channel(EVENT_BUFFER);
    let tracker_feed = feed::EventFeed::subscribe(store.clone(), &events, Some(last_seq)).await?;
    let (driver, handle) =
        driver::Driver::new(core, store.clone(), metrics.clone(), events.clone());
    let driver_task = tokio::spawn(driver.run());
    // Background tasks; stopped when serving ends (the monitor holds a driver handle, which
    // would otherwise keep the driver running).
    let mut background = vec![tokio::spawn(tracker.run(tracker_feed)).abort_handle()];
    let worker_monitor = Arc::new(workers::WorkerMonitor::new(cfg.heartbeat_ms));
    background.push(
        tokio::spawn(worker_monitor.clone().run(handle.clone(), metrics.clone())).abort_handle(),
    );
    background.push(
        tokio::spawn(retention::prune_loop(
            store.clone(),
            handle.clone(),
            cfg.event_retention,
            cfg.task_retention,
            cfg.prune_every,
            metrics.clone(),
        ))
        .abort_handle(),
    );
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

    let grpc = WorkerServiceServer::new(grpc::WorkerGrpc {
        auth: auth.clone(),
        driver: handle.clone(),
        heartbeat_ms: cfg.heartbeat_ms,
        lease_ms: cfg.lease_ms,
    });
    let watch = EventServiceServer::new(events::EventGrpc {
        auth: auth.clone(),
        store: store.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
    });
    // gRPC and REST share one port: the gRPC services' paths go to tonic.
    let app = http::router(http::AppState {
        auth: auth.clone(),
        driver: handle,
        store,
        metrics,
        events,
        webhooks: hooks.clone(),
        workers: worker_monitor,
    })
    .route_service("/drover.v1.WorkerService/{*method}", grpc)
    .route_service("/drover.v1.EventService/{*method}", watch)
    // Every route, REST and gRPC, behind the one guard (auth/layer.rs).
    .layer(axum::middleware::from_fn_with_state(
        auth.clone(),
        auth::guard,
    ));

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, active_tasks = active, "drover server listening");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
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
    Ok(ServerHandle {
        addr,
        auth,
        shutdown: tx,
        serve,
    })
}
