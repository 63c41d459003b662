//! `drover bench --workers N` at fleet scale (N ≥ `FLEET_MIN`, or `--fleet`): the server runs
//! as a process of its own (this binary's `drover server`, on a fresh SQLite store), so its
//! CPU time and memory can be read from `/proc/PID`, and N simulated workers (`sim.rs`) connect
//! to it over the real gRPC protocol. Each run measures, on its own fresh server:
//!
//! 1. N workers connected and idle: the server's CPU over `IDLE_WINDOW` (heartbeats, silence
//!    timers, keep-alives: nothing else happens) and its RSS per connected worker (against the
//!    fresh server's);
//! 2. the baseline: `BASELINE_WORKERS` workers × `BASELINE_SLOTS` slots, end to end;
//! 3. the same tasks on the N workers, end to end, and the longest pause between two starts;
//! 4. again while, every `CHURN_EVERY`, one worker leaves and another joins: a join or leave
//!    that stalled dispatch would show as a longer pause and a lower rate. A worker leaves the
//!    graceful way (drained, then disconnected), as an operator or an autoscaler would: one
//!    that vanishes with assignments on the wire has them reclaimed after a lease, by design
//!    (RECLAIM_BY_LEASE), which says nothing about dispatch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use drover_api::rest::parse_rfc3339;
use drover_client::{Client, TaskView};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::server_proc::{cpu_time, rss_kib, ServerProc};
use super::sim::SimWorker;
use super::{one_run, RunResult, REQUEST_TIMEOUT};
use crate::cli::BenchArgs;
use crate::stats::{median, round};

/// From this many workers on, the bench measures the fleet.
pub const FLEET_MIN: u32 = 100;
const BASELINE_WORKERS: u32 = 4;
const BASELINE_SLOTS: u32 = 64;
/// Quiet time after the workers connected, before the idle window.
const SETTLE: Duration = Duration::from_secs(3);
const IDLE_WINDOW: Duration = Duration::from_secs(10);
const CHURN_EVERY: Duration = Duration::from_millis(100);
/// After a drain is committed, how long a leaving worker waits for assignments already on the
/// wire (it completes them as they come).
const DRAIN_GRACE: Duration = Duration::from_millis(50);
/// Workers connecting at once.
const CONNECTING: usize = 64;

/// One run's fleet figures.
#[derive(Clone, Debug, Serialize)]
pub struct FleetRun {
    pub run: u32,
    pub baseline_tasks_per_sec: f64,
    pub fleet_tasks_per_sec: f64,
    /// Fleet over baseline, end to end.
    pub ratio: f64,
    /// Server CPU (user + system) over the idle window with every worker connected, in % of
    /// one core.
    pub heartbeat_cpu_percent: f64,
    pub rss_before_mib: f64,
    pub rss_connected_mib: f64,
    pub rss_per_worker_kib: f64,
    pub calm_longest_pause_ms: f64,
    pub calm_p99_ms: f64,
    pub churn_tasks_per_sec: f64,
    pub churn_longest_pause_ms: f64,
    pub churn_p99_ms: f64,
    /// Workers that left and joined during the churn run (each counted once).
    pub churned: u64,
}

/// The medians over the runs.
#[derive(Clone, Debug, Serialize)]
pub struct FleetReport {
    pub workers: u32,
    pub slots: u32,
    pub baseline: String,
    pub baseline_tasks_per_sec: f64,
    pub fleet_tasks_per_sec: f64,
    pub ratio: f64,
    pub heartbeat_cpu_percent: f64,
    pub rss_per_worker_kib: f64,
    pub calm_longest_pause_ms: f64,
    pub churn_tasks_per_sec: f64,
    pub churn_longest_pause_ms: f64,
    pub runs: Vec<FleetRun>,
}

impl FleetReport {
    pub fn new(workers: u32, slots: u32, runs: Vec<FleetRun>) -> Self {
        let pick = |f: fn(&FleetRun) -> f64, d: i32| {
            round(
                median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0),
                d,
            )
        };
        FleetReport {
            workers,
            slots,
            baseline: format!("{BASELINE_WORKERS} workers × {BASELINE_SLOTS} slots"),
            baseline_tasks_per_sec: pick(|r| r.baseline_tasks_per_sec, 1),
            fleet_tasks_per_sec: pick(|r| r.fleet_tasks_per_sec, 1),
            ratio: pick(|r| r.ratio, 3),
            heartbeat_cpu_percent: pick(|r| r.heartbeat_cpu_percent, 2),
            rss_per_worker_kib: pick(|r| r.rss_per_worker_kib, 1),
            calm_longest_pause_ms: pick(|r| r.calm_longest_pause_ms, 2),
            churn_tasks_per_sec: pick(|r| r.churn_tasks_per_sec, 1),
            churn_longest_pause_ms: pick(|r| r.churn_longest_pause_ms, 2),
            runs,
        }
    }

    pub fn text(&self) -> String {
        format!(
            "fleet, median of {n} run(s): {w} workers × {s} slot(s)\n  \
             end to end   {ft} tasks/s against {bt} tasks/s with {b}: ratio {ratio} (target ≥ 0.5)\n  \
             heartbeats   {cpu} % of one core, server CPU idle with {w} workers connected (target < 10 %)\n  \
             memory       {kib} KiB of server RSS per connected worker\n  \
             churn        {ct} tasks/s while a worker leaves and one joins every {every} ms; \
             longest pause between starts {cp} ms (without churn {lp} ms)\n",
            n = self.runs.len(),
            w = self.workers,
            s = self.slots,
            ft = super::thousands(self.fleet_tasks_per_sec),
            bt = super::thousands(self.baseline_tasks_per_sec),
            b = self.baseline,
            ratio = self.ratio,
            cpu = self.heartbeat_cpu_percent,
            kib = self.rss_per_worker_kib,
            ct = super::thousands(self.churn_tasks_per_sec),
            every = CHURN_EVERY.as_millis(),
            cp = self.churn_longest_pause_ms,
            lp = self.calm_longest_pause_ms,
        )
    }
}

/// Raises the soft limit of open files to the hard one: each worker is a connection, two
/// descriptors in this process and one in the server's (which inherits the limit).
pub fn raise_open_files(need: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    if hard < need {
        bail!(
            "{need} open files are needed and the hard limit is {hard}: raise it (ulimit -Hn) \
             or run fewer workers"
        );
    }
    Ok(())
}

/// Connects `n` simulated workers named `prefix-1..n`, `CONNECTING` at a time.
async fn connect(
    s: &ServerProc,
    prefix: &str,
    n: u32,
    slots: u32,
    prefetch: u32,
) -> anyhow::Result<Vec<SimWorker>> {
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut set = tokio::task::JoinSet::new();
    for i in 1..=n {
        let (url, token, gate) = (s.url.clone(), s.token.clone(), gate.clone());
        let name = format!("{prefix}-{i}");
        set.spawn(async move {
            let _p = gate.acquire().await;
            SimWorker::start(&url, token.as_deref(), name, slots, prefetch).await
        });
    }
    let mut out = Vec::with_capacity(n as usize);
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    Ok(out)
}

async fn stop_all(workers: Vec<SimWorker>) {
    let mut set = tokio::task::JoinSet::new();
    for w in workers {
        set.spawn(w.stop());
    }
    while set.join_next().await.is_some() {}
}

/// Waits until exactly `n` workers are connected (the recently disconnected are listed as
/// `lost` for a while: not counted).
async fn wait_for_workers(client: &Client, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = client.workers().await?.workers;
        let have = list.iter().filter(|w| w.state != "lost").count();
        if have == n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{have} workers listed instead of {n} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The longest time between two consecutive starts, in ms.
fn longest_pause(tasks: &[TaskView]) -> f64 {
    let mut starts: Vec<i64> = tasks
        .iter()
        .filter_map(|t| t.started_at.as_deref())
        .filter_map(|s| parse_rfc3339(s).ok())
        .collect();
    starts.sort_unstable();
    let gap = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    round(gap as f64 / 1000.0, 2)
}

/// One fleet run on a fresh server: its figures, and the fleet's run without churn.
pub async fn run(
    args: &BenchArgs,
    prefetch: u32,
    run: u32,
) -> anyhow::Result<(FleetRun, RunResult)> {
    let s = ServerProc::start(args.workers).await?;
    let r = measure(&s, args, prefetch, run).await;
    s.stop().await;
    r
}

async fn measure(
    s: &ServerProc,
    args: &BenchArgs,
    prefetch: u32,
    run: u32,
) -> anyhow::Result<(FleetRun, RunResult)> {
    let client = Client::with_timeout(&s.url, s.token.clone(), REQUEST_TIMEOUT)?;
    // 1. The fleet, connected and idle, on the fresh server.
    tokio::time::sleep(SETTLE).await;
    let rss_before = rss_kib(s.pid)?;
    let fleet = connect(s, "idle", args.workers, args.slots, prefetch).await?;
    wait_for_workers(&client, args.workers as usize).await?;
    tokio::time::sleep(SETTLE).await;
    let (cpu0, t0) = (cpu_time(s.pid)?, Instant::now());
    tokio::time::sleep(IDLE_WINDOW).await;
    let cpu = (cpu_time(s.pid)? - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let rss_connected = rss_kib(s.pid)?;
    stop_all(fleet).await;
    wait_for_workers(&client, 0).await?;
    // 2. The baseline.
    let base = connect(s, "base", BASELINE_WORKERS, BASELINE_SLOTS, BASELINE_SLOTS).await?;
    wait_for_workers(&client, BASELINE_WORKERS as usize).await?;
    let (baseline, _) = one_run(&client, args, run).await?;
    stop_all(base).await;
    wait_for_workers(&client, 0).await?;
    // 3. The tasks on the fleet.
    let mut fleet = connect(s, "fleet", args.workers, args.slots, prefetch).await?;
    wait_for_workers(&client, args.workers as usize).await?;
    let (calm, calm_tasks) = one_run(&client, args, run).await?;
    // 4. Again, with churn.
    let churned = Arc::new(AtomicU64::new(0));
    let (stop_churn, stopped) = tokio::sync::watch::channel(false);
    let leaving = std::mem::take(&mut fleet);
    let churner = tokio::spawn(churn(
        client.clone(),
        (s.url.clone(), s.token.clone()),
        leaving,
        (args.slots, prefetch),
        churned.clone(),
        stopped,
    ));
    let churn_result = one_run(&client, args, run).await;
    let _ = stop_churn.send(true);
    let remaining = churner.await.context("the churner crashed")??;
    stop_all(remaining).await;
    let (churn, churn_tasks) = churn_result?;
    let ratio = |a: &RunResult, b: &RunResult| {
        if b.end_to_end_tasks_per_sec > 0.0 {
            round(a.end_to_end_tasks_per_sec / b.end_to_end_tasks_per_sec, 3)
        } else {
            0.0
        }
    };
    let n = f64::from(args.workers.max(1));
    let f = FleetRun {
        run,
        baseline_tasks_per_sec: baseline.end_to_end_tasks_per_sec,
        fleet_tasks_per_sec: calm.end_to_end_tasks_per_sec,
        ratio: ratio(&calm, &baseline),
        heartbeat_cpu_percent: round(cpu * 100.0, 2),
        rss_before_mib: round(rss_before as f64 / 1024.0, 1),
        rss_connected_mib: round(rss_connected as f64 / 1024.0, 1),
        rss_per_worker_kib: round(rss_connected.saturating_sub(rss_before) as f64 / n, 1),
        calm_longest_pause_ms: longest_pause(&calm_tasks),
        calm_p99_ms: calm.latency_p99_ms,
        churn_tasks_per_sec: churn.end_to_end_tasks_per_sec,
        churn_longest_pause_ms: longest_pause(&churn_tasks),
        churn_p99_ms: churn.latency_p99_ms,
        churned: churned.load(Ordering::Relaxed),
    };
    Ok((f, calm))
}

/// Every `CHURN_EVERY` until stopped: the oldest worker leaves (drained, then disconnected)
/// and a new one joins, each swap on its own task so that the pace holds whatever a swap
/// takes. Returns the workers connected at the end.
async fn churn(
    client: Client,
    (url, token): (String, Option<String>),
    workers: Vec<SimWorker>,
    (slots, prefetch): (u32, u32),
    churned: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<SimWorker>> {
    let mut workers = std::collections::VecDeque::from(workers);
    let mut swaps = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(CHURN_EVERY);
    let mut next = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
            Some(joined) = swaps.join_next() => {
                workers.push_back(joined.context("a swap crashed")??);
                churned.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        let Some(old) = workers.pop_front() else {
            continue;
        };
        next += 1;
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        swaps.spawn(async move {
            client.drain(&old.name, true).await?;
            tokio::time::sleep(DRAIN_GRACE).await;
            old.stop().await;
            let name = format!("churn-{next}");
            SimWorker::start(&url, token.as_deref(), name, slots, prefetch).await
        });
    }
    while let Some(joined) = swaps.join_next().await {
        workers.push_back(joined.context("a swap crashed")??);
        churned.fetch_add(1, Ordering::Relaxed);
    }
    Ok(workers.into())
}
