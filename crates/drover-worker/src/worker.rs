//! The SDK's face: a worker built from handlers.
//!
//! ```no_run
//! use drover_worker::{Ctx, Worker};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Resize { w: u32, h: u32 }
//! #[derive(Serialize)]
//! struct Resized { pixels: u64 }
//!
//! # async fn demo() -> anyhow::Result<()> {
//! Worker::builder("http://127.0.0.1:7070")
//!     .token("drover_...")
//!     .concurrency(8)
//!     .handler("resize", |ctx: Ctx, p: Resize| async move {
//!         ctx.log(format!("resizing to {}x{}", p.w, p.h));
//!         Ok::<_, String>(Resized { pixels: u64::from(p.w) * u64::from(p.h) })
//!     })
//!     .build()?
//!     .run(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{ClientTls, Ctx, Handlers, WorkerConfig};

/// How long a shutdown waits for running handlers to finish by default.
pub const SDK_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A worker that runs handlers. It speaks the same protocol as `drover worker` (credit flow
/// control, fenced attempts, heartbeats, re-attach after a reconnect) and registers exactly
/// the kinds it has handlers for.
#[derive(Debug)]
pub struct Worker {
    cfg: WorkerConfig,
    handlers: Handlers,
}

/// Builds a [`Worker`]: servers, name, token, concurrency, handlers.
#[derive(Debug)]
pub struct WorkerBuilder {
    cfg: WorkerConfig,
    handlers: Handlers,
}

impl Worker {
    /// A worker of `server` (e.g. `http://127.0.0.1:7070`); more servers with
    /// [`WorkerBuilder::server`].
    pub fn builder(server: impl Into<String>) -> WorkerBuilder {
        let name = format!("sdk-{}-{}", host_name(), std::process::id());
        let mut cfg = WorkerConfig::new(vec![server.into()], name);
        cfg.shutdown_grace = SDK_SHUTDOWN_GRACE;
        WorkerBuilder {
            cfg,
            handlers: Handlers::default(),
        }
    }

    /// The kinds it registers.
    pub fn kinds(&self) -> &[String] {
        &self.cfg.kinds
    }

    /// Runs until `shutdown` resolves; then takes nothing new, lets running handlers finish
    /// (within the shutdown grace), reports them, and returns. Connection failures are
    /// retried forever; a refused registration is an error.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        crate::session::run(self.cfg, self.handlers, shutdown).await
    }
}

impl WorkerBuilder {
    /// Another server to fail over to.
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.cfg.servers.push(url.into());
        self
    }

    /// The worker's name (default `sdk-<host>-<pid>`); unique among connected workers.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.cfg.name = name.into();
        self
    }

    /// A `worker` (or `admin`) token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.cfg.token = Some(token.into());
        self
    }

    /// Handlers run at once (default 4).
    pub fn concurrency(mut self, n: u32) -> Self {
        self.cfg.slots = n;
        self
    }

    /// Assignments held beyond the free slots (default 0; raise it for very short tasks).
    pub fn prefetch(mut self, n: u32) -> Self {
        self.cfg.prefetch = n;
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cfg.labels.insert(key.into(), value.into());
        self
    }

    pub fn labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.cfg.labels.extend(labels);
        self
    }

    /// Only tasks of these namespaces (default: every namespace its token allows).
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.cfg.namespaces.push(ns.into());
        self
    }

    /// How long a shutdown waits for running handlers (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.cfg.shutdown_grace = grace;
        self
    }

    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.cfg.tls = tls;
        self
    }

    /// Registers `f` as the handler of `kind`. Its payload is deserialized as `P`, its `Ok`
    /// serialized to JSON as the task's result; an `Err`'s message fails the attempt (and is
    /// written to its stderr log). A panic fails the attempt too.
    pub fn handler<P, R, E, F, Fut>(mut self, kind: &str, f: F) -> Self
    where
        F: Fn(Ctx, P) -> Fut + Send + Sync + 'static,
        P: DeserializeOwned + Send + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Serialize,
        E: Display,
    {
        self.handlers.add(kind, f);
        self
    }

    /// The worker; fails without a handler or with a bad kind.
    pub fn build(mut self) -> anyhow::Result<Worker> {
        if self.handlers.is_empty() {
            anyhow::bail!(
                "a worker needs at least one handler: .handler(\"kind\", |ctx, payload| ...)"
            );
        }
        for k in self.handlers.kinds() {
            if k.is_empty() || k == "noop" {
                anyhow::bail!("{k:?} cannot name a handler");
            }
        }
        self.cfg.kinds = self.handlers.kinds();
        Ok(Worker {
            cfg: self.cfg,
            handlers: self.handlers,
        })
    }
}

/// This machine's name for the default worker name (letters, digits, `.`, `-`, `_` only).
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(40)
        .collect();
    if name.is_empty() {
        "worker".into()
    } else {
        name
    }
}
