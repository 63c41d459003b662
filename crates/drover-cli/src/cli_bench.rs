//! The command line of `drover bench`: its modes (throughput, `--exec`, a fleet, `--queued`,
//! `--rate`/`--sequential`) and their parameters.

use clap::Args;

use crate::output::Format;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Tasks per run.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub tasks: usize,
    /// In-process workers (ignored with --server).
    #[arg(long, default_value_t = 4, value_name = "W")]
    pub workers: u32,
    /// Slots of each worker.
    #[arg(long, default_value_t = 64, value_name = "S")]
    pub slots: u32,
    /// Prefetch of each worker [default: equal to --slots].
    #[arg(long, value_name = "P")]
    pub prefetch: Option<u32>,
    /// Run `true` processes instead of no-op tasks.
    #[arg(long)]
    pub exec: bool,
    /// Target this running server (and its workers) instead of starting one in-process.
    #[arg(long, value_name = "URL", conflicts_with = "store")]
    pub server: Option<String>,
    /// The in-process server's store: a PostgreSQL database, postgres://USER@HOST/DB, where
    /// each run gets a fresh schema of its own (dropped after the run) [default: a fresh
    /// SQLite file in a temporary directory].
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// API token for --server.
    #[arg(
        long,
        env = "DROVER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Tasks per submit request.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub batch: usize,
    /// Submit requests in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Repeat the run K times (a fresh in-process server each time) and report the median.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub runs: u32,
    /// Measure a fleet (implied from 100 workers on): the server as a process of its own,
    /// --workers simulated gRPC workers; reports throughput against 4 workers × 64 slots,
    /// the server's CPU for heartbeats, its RSS per connected worker, and dispatch while
    /// workers join and leave.
    #[arg(long, conflicts_with_all = ["server", "store", "exec"])]
    pub fleet: bool,
    /// Measure a backlog of N queued tasks instead: the server's RSS per queued task, the
    /// time a restart takes to load them, and the first dispatch after a worker connects
    /// (a server process of its own on a fresh SQLite store per run).
    #[arg(long, value_name = "N", conflicts_with_all = ["server", "store", "exec", "fleet", "rate", "sequential"])]
    pub queued: Option<usize>,
    /// Paced latency: submit one task per request (`POST /v1/tasks`) at R tasks per second
    /// and report enqueue (the client's clock before the request) to start (the server's)
    /// p50/p99/max.
    #[arg(long, value_name = "R", conflicts_with_all = ["fleet", "sequential"])]
    pub rate: Option<f64>,
    /// One task per request, back to back, each waiting for its acknowledgement: tasks/s and
    /// request latency, against the time of one fdatasync in the data directory.
    #[arg(long, conflicts_with = "fleet")]
    pub sequential: bool,
    /// Concurrent submitting clients of --rate (sharing the rate) or --sequential.
    #[arg(long, default_value_t = 1, value_name = "C")]
    pub clients: usize,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub output: Format,
}
