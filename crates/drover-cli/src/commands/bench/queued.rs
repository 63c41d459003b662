//! `drover bench --queued N`: what a large backlog costs the server. Each run, on a fresh
//! SQLite store and a server process of its own (`server_proc.rs`):
//!
//! 1. the idle server's RSS; then N tasks of a realistic definition (an argv of about 100
//!    bytes, three environment entries) submitted with no worker connected, and the RSS with
//!    all of them queued: the bytes per queued task above idle;
//! 2. a crash and a restart on the same store: the time from starting the new process until
//!    it serves the core's live state with all N tasks loaded, and its RSS then;
//! 3. one simulated worker connects: the time from the start of its connection until its
//!    first assignment arrives (whose body the server reads back from the store).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use drover_api::rest::SubmitRequest;
use drover_client::Client;
use serde::Serialize;
use tokio::task::JoinSet;

use super::server_proc::{rss_kib, DataDir, ServerProc};
use super::sim::SimWorker;
use super::REQUEST_TIMEOUT;
use crate::cli::BenchArgs;
use crate::stats::{median, round};

/// Quiet time before reading an RSS, so that it is not caught mid-batch.
const SETTLE: Duration = Duration::from_secs(2);
/// The longest a restart may take before the run fails.
const RESTART_LIMIT: Duration = Duration::from_secs(120);
/// The queue the backlog waits in.
const QUEUE: &str = "reports";

/// One run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct QueuedRun {
    pub run: u32,
    pub submit_secs: f64,
    pub rss_idle_mib: f64,
    pub rss_queued_mib: f64,
    /// (queued − idle) / N.
    pub bytes_per_queued_task: f64,
    /// From starting the new process until its live state answered with all N queued.
    pub restart_secs: f64,
    pub rss_restarted_mib: f64,
    /// From the start of a worker's connection until its first assignment arrived.
    pub first_dispatch_ms: f64,
}

/// The medians over the runs.
#[derive(Clone, Debug, Serialize)]
pub struct QueuedReport {
    pub queued: usize,
    pub bytes_per_queued_task: f64,
    pub rss_queued_mib: f64,
    pub rss_restarted_mib: f64,
    pub restart_secs: f64,
    pub first_dispatch_ms: f64,
    pub runs: Vec<QueuedRun>,
}

impl QueuedReport {
    pub fn new(queued: usize, runs: Vec<QueuedRun>) -> Self {
        let pick = |f: fn(&QueuedRun) -> f64, d: i32| {
            round(
                median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0),
                d,
            )
        };
        QueuedReport {
            queued,
            bytes_per_queued_task: pick(|r| r.bytes_per_queued_task, 0),
            rss_queued_mib: pick(|r| r.rss_queued_mib, 1),
            rss_restarted_mib: pick(|r| r.rss_restarted_mib, 1),
            restart_secs: pick(|r| r.restart_secs, 2),
            first_dispatch_ms: pick(|r| r.first_dispatch_ms, 1),
            runs,
        }
    }

    pub fn text(&self) -> String {
        format!(
            "queued backlog, median of {n} run(s): {q} queued tasks (argv of ~100 bytes, 3 env entries)\n  \
             memory     {rss} MiB of server RSS, {b} bytes per queued task above idle (target: < 1,024; RSS ≤ 1,024 MiB)\n  \
             restart    {rs} s until the live state answers with every task loaded (target ≤ 5 s); then {rr} MiB\n  \
             dispatch   {fd} ms from a worker's connection to its first assignment (target ≤ 100 ms)\n",
            n = self.runs.len(),
            q = super::thousands(self.queued as f64),
            rss = self.rss_queued_mib,
            b = self.bytes_per_queued_task,
            rs = self.restart_secs,
            rr = self.rss_restarted_mib,
            fd = self.first_dispatch_ms,
        )
    }
}

/// A task of a realistic definition; `i` makes its argv and env its own.
fn task(i: usize) -> SubmitRequest {
    let customer = format!("customer-{:06}", i % 1_000_000);
    SubmitRequest {
        queue: Some(QUEUE.into()),
        argv: vec![
            "/usr/local/bin/report-builder".into(),
            "--customer".into(),
            customer.clone(),
            "--date".into(),
            "2026-12-08".into(),
            "--format".into(),
            "parquet".into(),
            "--out".into(),
            format!("s3://reports/{customer}"),
        ],
        env: [
            ("REGION", "eu-west-1".to_string()),
            ("TRACE_ID", format!("{i:032x}")),
            ("LOG_LEVEL", "info".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

/// One run on a fresh store.
pub async fn run(args: &BenchArgs, n: usize, run: u32) -> anyhow::Result<QueuedRun> {
    let dir = DataDir::new("drover-bench-queued-")?;
    let s = ServerProc::start_in(&dir, 1, &["--max-queued", "0"]).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_idle = rss_kib(s.pid)?;
    let client = Client::with_timeout(&s.url, s.token.clone(), REQUEST_TIMEOUT)?;
    let t0 = Instant::now();
    submit(&client, args, n).await?;
    let submit_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let rss_queued = rss_kib(s.pid)?;
    s.stop().await;

    let t0 = Instant::now();
    let s = ServerProc::start_in(&dir, 1, &["--max-queued", "0"]).await?;
    let client = Client::with_timeout(&s.url, s.token.clone(), REQUEST_TIMEOUT)?;
    wait_loaded(&client, n).await?;
    let restart_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let rss_restarted = rss_kib(s.pid)?;

    let t0 = Instant::now();
    let worker = SimWorker::start(&s.url, s.token.as_deref(), "first".into(), 1, 1).await?;
    let first = wait_first(&worker).await?;
    let first_dispatch_ms = (first - t0).as_secs_f64() * 1000.0;
    worker.stop().await;
    s.stop().await;
    let mib = |kib: u64| round(kib as f64 / 1024.0, 1);
    Ok(QueuedRun {
        run,
        submit_secs: round(submit_secs, 2),
        rss_idle_mib: mib(rss_idle),
        rss_queued_mib: mib(rss_queued),
        bytes_per_queued_task: round(
            rss_queued.saturating_sub(rss_idle) as f64 * 1024.0 / n.max(1) as f64,
            0,
        ),
        restart_secs: round(restart_secs, 2),
        rss_restarted_mib: mib(rss_restarted),
        first_dispatch_ms: round(first_dispatch_ms, 2),
    })
}

/// Submits `n` tasks in batches of `--batch`, `--concurrency` requests in flight.
async fn submit(client: &Client, args: &BenchArgs, n: usize) -> anyhow::Result<()> {
    let batch = args.batch.max(1);
    let next = Arc::new(AtomicUsize::new(0));
    let mut submitters = JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, next) = (client.clone(), next.clone());
        submitters.spawn(async move {
            loop {
                let start = next.fetch_add(batch, Ordering::Relaxed);
                if start >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let tasks: Vec<SubmitRequest> = (start..(start + batch).min(n)).map(task).collect();
                let r = client.submit_batch(&tasks).await?;
                anyhow::ensure!(
                    r.ids.len() == tasks.len(),
                    "the server returned too few ids"
                );
            }
        });
    }
    while let Some(r) = submitters.join_next().await {
        r.context("a submitter crashed")??;
    }
    Ok(())
}

/// Polls the live state (answered by the leader's driver only once its snapshot is loaded)
/// until it counts `n` queued tasks.
async fn wait_loaded(client: &Client, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + RESTART_LIMIT;
    loop {
        if let Ok(list) = client.queues().await {
            let depth: usize = list
                .queues
                .iter()
                .filter(|q| q.name == QUEUE)
                .map(|q| q.depth)
                .sum();
            if depth >= n {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the restarted server did not load {n} queued tasks within {RESTART_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_first(worker: &SimWorker) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(at) = worker.first_assignment.get() {
            return Ok(*at);
        }
        if Instant::now() > deadline {
            bail!("the worker got no assignment within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
