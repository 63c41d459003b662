//! Drover's worker agent: connects to a Drover server over gRPC (`WorkerService/Session`, one
//! bidirectional stream), registers, heartbeats, runs the attempts it is assigned and reports
//! what happened, batched.
//!
//! Map of the crate:
//! - `session`: the connection loop (connect, register, reconnect with backoff and failover,
//!   heartbeats, shutdown), the only task that owns the agent state;
//! - `agent`: the state that survives reconnects: held attempts, slots, the queue, the outbox;
//! - `outbox`: pending updates, cut into bounded `Updates` messages;
//! - `exec`: one attempt as a child process (argv, env, cwd, process group, timeout, output);
//! - `handler`, `worker`: tasks as functions, the SDK: [`Worker::builder`] with handlers by
//!   kind (serde payloads and results), their [`Ctx`] (task id, attempt, cancellation, log);
//! - `sys`: the one `unsafe` module: starting a process without copying the worker
//!   (`clone(CLONE_VM | CLONE_VFORK)`), in its own group, with a parent-death signal.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

mod agent;
mod exec;
mod handler;
mod outbox;
mod session;
mod sys;
mod worker;

pub use handler::{Ctx, Handlers, CANCEL_GRACE};

/// The README's examples (its "Tasks as functions" section) compile.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
pub use worker::{Worker, WorkerBuilder};

/// How long a CLI worker's shutdown waits for killed processes to be reported.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Default bound on each output stream of one attempt.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;

/// How a worker presents itself and how much it takes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Server URLs, e.g. `http://127.0.0.1:7070` (`http://` is assumed without a scheme); tried
    /// in turn when a connection fails.
    pub servers: Vec<String>,
    pub name: String,
    /// Attempts run concurrently.
    pub slots: u32,
    /// Extra assignments the worker may hold waiting for a slot.
    pub prefetch: u32,
    pub labels: BTreeMap<String, String>,
    /// Kinds of task accepted; empty accepts every kind.
    pub kinds: Vec<String>,
    /// Namespaces whose tasks it runs; empty: every namespace its token allows.
    pub namespaces: Vec<String>,
    pub resources: BTreeMap<String, u64>,
    /// Output kept per stream per attempt; beyond it the worker sends one marker line
    /// `[drover: stdout truncated after N bytes]` and drops the rest.
    pub max_output_bytes: usize,
    /// Names of the worker's environment variables its tasks also get. A task's environment
    /// is otherwise clean: `PATH`, `HOME`, `LANG`, the `DROVER_*` variables Drover sets, and
    /// the task's own env and secret env.
    pub pass_env: Vec<String>,
    /// The bearer token sent when opening the worker stream (a `worker` or `admin` token).
    pub token: Option<String>,
    /// TLS towards `https://` servers.
    pub tls: ClientTls,
    /// After shutdown begins, how long running attempts get to end (processes are killed at
    /// once; handlers finish) and be reported before the worker stops anyway.
    pub shutdown_grace: Duration,
}

/// TLS towards the server, used for `https://` URLs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM of the CA that signed the server's certificate; the web PKI roots when `None`.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// PEM certificate and key this worker presents (for a server with `--tls-client-ca`).
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl WorkerConfig {
    /// 4 slots, no prefetch, 1 MiB of output per stream, every kind, no labels.
    ///
    /// Prefetch 0 by default: the placement simulations (docs/placement.md) show every
    /// strategy placing best when a worker holds only what it runs; raise it for very short
    /// tasks, where a round trip per task costs more than a slightly worse placement.
    pub fn new(servers: Vec<String>, name: String) -> Self {
        WorkerConfig {
            servers,
            name,
            slots: 4,
            prefetch: 0,
            labels: BTreeMap::new(),
            kinds: Vec::new(),
            namespaces: Vec::new(),
            resources: BTreeMap::new(),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            tls: ClientTls::default(),
            pass_env: Vec::new(),
            token: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Runs the worker until `shutdown` resolves, then gives back what it has not started, kills
/// what is running (reporting both as cancelled), closes the stream and returns, within about
/// two seconds. Connection failures are retried forever; only a bad configuration is an error.
pub async fn run(
    cfg: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    session::run(cfg, Handlers::default(), shutdown).await
}
