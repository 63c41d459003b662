//! `drover bench`: pushes N tasks through the real path (REST batch submit, the durable store,
//! workers over gRPC) and reports submit throughput, end-to-end throughput and
//! enqueue-to-start latency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use drover_api::rest::parse_rfc3339;
use drover_client::{is_terminal, Client, ListQuery, StatsView, SubmitRequest, TaskView};
use drover_server::clock::now_micros;
use drover_server::{ServerConfig, StoreUrl};
use drover_store::postgres::TempSchema;
use drover_worker::WorkerConfig;
use serde::Serialize;
use tokio::task::JoinSet;

mod fleet;
mod floor;
mod paced;
mod queued;
mod server_proc;
mod sim;

use super::local::{self, LocalCluster};
use crate::cli::BenchArgs;
use crate::exit::usage;
use crate::output::{self, Format};
use crate::stats::{median, percentile, round};

/// A run that makes no progress this long is abandoned.
const STALL: Duration = Duration::from_secs(60);
/// Bound on one request (a batch of 10,000 under load can take a while).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub run: u32,
    pub tasks: usize,
    pub failures: usize,
    pub submit_secs: f64,
    pub submit_tasks_per_sec: f64,
    pub end_to_end_secs: f64,
    pub end_to_end_tasks_per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// `--exec`: `true` processes per second with no scheduler at the same concurrency
    /// (workers × slots), measured just before this run (`floor.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spawn_floor_tasks_per_sec: Option<f64>,
    /// End to end / the spawn floor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_spawn_floor: Option<f64>,
}

/// The report: the median of the runs at the top, every run below.
#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub tasks: usize,
    pub workers: u32,
    pub slots: u32,
    pub prefetch: Option<u32>,
    pub batch: usize,
    pub concurrency: usize,
    pub server: String,
    pub submit_tasks_per_sec: f64,
    pub end_to_end_tasks_per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// `--exec`, in-process: medians of the runs' spawn floors and ratios.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spawn_floor_tasks_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_spawn_floor: Option<f64>,
    pub failures: usize,
    pub runs: Vec<RunResult>,
    /// With `--workers` ≥ 100 (or `--fleet`): the fleet's figures (`runs` are then the fleet's
    /// runs without churn).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<fleet::FleetReport>,
}

/// Whether this bench measures a fleet (`fleet.rs`).
fn is_fleet(args: &BenchArgs) -> bool {
    let local_noop = args.server.is_none() && args.store.is_none() && !args.exec;
    local_noop && (args.fleet || args.workers >= fleet::FLEET_MIN)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<u8> {
    check(&args)?;
    if let Some(n) = args.queued {
        return run_queued(args, n).await;
    }
    if args.rate.is_some() || args.sequential {
        paced::check(&args).map_err(|e| usage(e.to_string()))?;
        return paced::run(args).await;
    }
    if is_fleet(&args) {
        return run_fleet(args).await;
    }
    let mode = if args.exec { "exec" } else { "noop" };
    let prefetch = args.prefetch.unwrap_or(args.slots);
    let mut report = Report {
        mode,
        tasks: args.tasks,
        workers: args.workers,
        slots: args.slots,
        prefetch: Some(prefetch),
        batch: args.batch,
        concurrency: args.concurrency,
        server: match &args.store {
            Some(url) => format!("in-process (PostgreSQL at {url}, a fresh schema per run)"),
            None => "in-process (durable SQLite in a temporary directory)".into(),
        },
        submit_tasks_per_sec: 0.0,
        end_to_end_tasks_per_sec: 0.0,
        latency_p50_ms: 0.0,
        latency_p99_ms: 0.0,
        spawn_floor_tasks_per_sec: None,
        ratio_to_spawn_floor: None,
        failures: 0,
        runs: Vec::new(),
        fleet: None,
    };
    if args.output == Format::Text {
        eprintln!(
            "drover bench: {} {mode} tasks × {} run(s), {}",
            args.tasks,
            args.runs,
            match &args.server {
                Some(url) => format!("against {url}"),
                None => format!(
                    "in-process server (durable {}) and {} gRPC workers × {} slots (prefetch {prefetch})",
                    if args.store.is_some() { "PostgreSQL" } else { "SQLite" },
                    args.workers,
                    args.slots
                ),
            }
        );
    }
    for run in 1..=args.runs {
        let r = match &args.server {
            Some(url) => {
                let client = Client::with_timeout(url, args.token.clone(), REQUEST_TIMEOUT)?;
                let ws = client.workers().await?;
                if ws.workers.is_empty() {
                    bail!("the server at {url} has no workers connected; start some with `drover worker`");
                }
                report.server = url.clone();
                report.workers = ws.workers.len() as u32;
                report.slots = ws.workers.iter().map(|w| w.slots).max().unwrap_or(0);
                report.prefetch = None;
                one_run(&client, &args, run).await?.0
            }
            None => in_process(&args, prefetch, run).await?,
        };
        if args.output == Format::Text {
            output::text(&run_text(&r))?;
        }
        report.runs.push(r);
    }
    finish(&args, report)
}

/// Prints the report; exit code 1 if a task did not succeed.
fn finish(args: &BenchArgs, mut report: Report) -> anyhow::Result<u8> {
    report.summarize();
    print_summary(args, &report)?;
    if report.failures > 0 {
        eprintln!(
            "drover bench: {} of {} tasks did not succeed",
            report.failures,
            args.tasks * args.runs as usize
        );
        return Ok(1);
    }
    Ok(0)
}

impl Report {
    /// The medians over the runs, and every run's failures.
    fn summarize(&mut self) {
        let pick = |f: fn(&RunResult) -> f64| {
            median(&self.runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        self.submit_tasks_per_sec = round(pick(|r| r.submit_tasks_per_sec), 1);
        self.end_to_end_tasks_per_sec = round(pick(|r| r.end_to_end_tasks_per_sec), 1);
        self.latency_p50_ms = round(pick(|r| r.latency_p50_ms), 3);
        self.latency_p99_ms = round(pick(|r| r.latency_p99_ms), 3);
        if self
            .runs
            .iter()
            .all(|r| r.spawn_floor_tasks_per_sec.is_some())
            && !self.runs.is_empty()
        {
            self.spawn_floor_tasks_per_sec = Some(round(
                pick(|r| r.spawn_floor_tasks_per_sec.unwrap_or(0.0)),
                1,
            ));
            self.ratio_to_spawn_floor =
                Some(round(pick(|r| r.ratio_to_spawn_floor.unwrap_or(0.0)), 3));
        }
        self.failures = self.runs.iter().map(|r| r.failures).sum();
    }
}

/// The report as JSON, or (text, several runs) the line of medians.
fn print_summary(args: &BenchArgs, report: &Report) -> anyhow::Result<()> {
    match args.output {
        Format::Json => output::json(report)?,
        Format::Text if args.runs > 1 => output::text(&format!(
            "median of {} runs: submit {} tasks/s · end to end {} tasks/s · latency p50 {} ms, p99 {} ms{} · {} failures\n",
            args.runs,
            thousands(report.submit_tasks_per_sec),
            thousands(report.end_to_end_tasks_per_sec),
            report.latency_p50_ms,
            report.latency_p99_ms,
            match (report.spawn_floor_tasks_per_sec, report.ratio_to_spawn_floor) {
                (Some(f), Some(r)) => format!(" · floor {} tasks/s, ratio {r}", thousands(f)),
                _ => String::new(),
            },
            report.failures
        ))?,
        Format::Text => {}
    }
    Ok(())
}

fn check(args: &BenchArgs) -> anyhow::Result<()> {
    let max = drover_api::limits::MAX_BATCH;
    if args.tasks == 0 {
        return Err(usage("--tasks must be at least 1"));
    }
    if !(1..=max).contains(&args.batch) {
        return Err(usage(format!("--batch must be 1 to {max}")));
    }
    if args.concurrency == 0 || args.runs == 0 {
        return Err(usage("--concurrency and --runs must be at least 1"));
    }
    if let Some(url) = &args.store {
        match StoreUrl::parse(url) {
            Ok(StoreUrl::Postgres(_)) => {}
            _ => {
                return Err(usage(
                    "--store takes a postgres:// URL (SQLite is the default)",
                ))
            }
        }
    }
    if args.server.is_none() && (args.workers == 0 || args.slots == 0) {
        return Err(usage("--workers and --slots must be at least 1"));
    }
    Ok(())
}

/// One run on a fresh server and workers in this process, on a fresh temporary store.
async fn in_process(args: &BenchArgs, prefetch: u32, run: u32) -> anyhow::Result<RunResult> {
    // The floor, in the same run: the same concurrency spawning `true` with no scheduler.
    let floor = if args.exec {
        let (n, c) = (args.tasks, (args.workers * args.slots) as usize);
        Some(
            tokio::task::spawn_blocking(move || floor::spawn_true(n, c))
                .await?
                .context("spawning `true` with no scheduler")?,
        )
    } else {
        None
    };
    let local = Local::start(args, prefetch).await?;
    let result = async {
        let client = local.client()?;
        let mut r = one_run(&client, args, run).await?.0;
        if let Some(f) = floor {
            r.spawn_floor_tasks_per_sec = Some(round(f, 1));
            r.ratio_to_spawn_floor = Some(round(r.end_to_end_tasks_per_sec / f, 3));
        }
        Ok(r)
    }
    .await;
    local.stop().await?;
    result
}

/// A fresh in-process server (on a fresh temporary store) with `--workers` workers connected.
pub(super) struct Local {
    cluster: LocalCluster,
    /// The server's data directory (SQLite's file, when it is the store).
    pub dir: tempfile::TempDir,
    schema: Option<TempSchema>,
}

impl Local {
    pub(super) async fn start(args: &BenchArgs, prefetch: u32) -> anyhow::Result<Local> {
        let dir = tempfile::Builder::new()
            .prefix("drover-bench-")
            .tempdir()
            .context("creating a temporary data directory")?;
        let schema = match &args.store {
            Some(url) => Some(
                TempSchema::create(url)
                    .await
                    .with_context(|| format!("creating a schema for the run in {url}"))?,
            ),
            None => None,
        };
        let store = match &schema {
            Some(s) => s.url().to_string(),
            None => local::sqlite_url(&dir.path().join("drover.db"))?,
        };
        let mut cfg = ServerConfig::new(([127, 0, 0, 1], 0).into(), store);
        cfg.data_dir = Some(dir.path().to_path_buf());
        // The bench measures the path, not the per-client limit of requests (100/s by
        // default), which one-task-per-request modes would hit at once.
        cfg.edge.rate_per_sec = 0;
        let workers = (1..=args.workers)
            .map(|i| {
                let mut w = WorkerConfig::new(Vec::new(), format!("bench-{i}"));
                w.slots = args.slots;
                w.prefetch = prefetch;
                w
            })
            .collect();
        let cluster = LocalCluster::start(cfg, workers).await?;
        let local = Local {
            cluster,
            dir,
            schema,
        };
        if let Err(e) = wait_for_workers(&local.client()?, args.workers as usize).await {
            local.stop().await?;
            return Err(e);
        }
        Ok(local)
    }

    /// A client of its own (its own connections) with the admin token.
    pub(super) fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::with_timeout(
            &self.cluster.url,
            self.cluster.admin_token(),
            REQUEST_TIMEOUT,
        )?)
    }

    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.cluster.shutdown().await?;
        if let Some(s) = self.schema {
            s.drop_schema().await?;
        }
        Ok(())
    }
}

async fn wait_for_workers(client: &Client, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = client.workers().await?.workers.len();
        if have >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {have} of {n} workers connected within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One run's figures, and its tasks as read back.
/// One of the run's tasks: `true` with `--exec`, else a no-op.
pub(super) fn bench_task(args: &BenchArgs, queue: &str) -> SubmitRequest {
    if args.exec {
        SubmitRequest {
            queue: Some(queue.to_string()),
            argv: vec!["true".into()],
            ..Default::default()
        }
    } else {
        SubmitRequest {
            queue: Some(queue.to_string()),
            kind: Some("noop".into()),
            ..Default::default()
        }
    }
}

async fn one_run(
    client: &Client,
    args: &BenchArgs,
    run: u32,
) -> anyhow::Result<(RunResult, Vec<TaskView>)> {
    let n = args.tasks;
    // A queue of its own, so that the listing sees only this run's tasks.
    let queue = format!("bench-{}-{}-{run}", std::process::id(), now_micros());
    let task = bench_task(args, &queue);
    let batches: Arc<Vec<Vec<SubmitRequest>>> = Arc::new(
        (0..n)
            .step_by(args.batch)
            .map(|start| vec![task.clone(); args.batch.min(n - start)])
            .collect(),
    );
    let baseline = terminal(&client.stats().await?);

    // Submit: several requests in flight, each submitter taking the next batch.
    let t0 = Instant::now();
    let t0_wall = now_micros();
    let next = Arc::new(AtomicUsize::new(0));
    let mut submitters = JoinSet::new();
    for _ in 0..args.concurrency.min(batches.len()) {
        let (client, batches, next) = (client.clone(), batches.clone(), next.clone());
        submitters.spawn(async move {
            let mut last = Instant::now();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(i) else {
                    return Ok::<_, anyhow::Error>(last);
                };
                let r = client.submit_batch(batch).await?;
                anyhow::ensure!(
                    r.ids.len() == batch.len(),
                    "the server returned too few ids"
                );
                last = Instant::now();
            }
        });
    }
    let mut last_ack = t0;
    while let Some(r) = submitters.join_next().await {
        last_ack = last_ack.max(r.context("a submitter crashed")??);
    }
    let submit_secs = (last_ack - t0).as_secs_f64();

    // Wait until every task is terminal (by the counts), then read them all back.
    let mut progress = Stall::new();
    loop {
        let s = client.stats().await?;
        let done = terminal(&s).saturating_sub(baseline);
        if done >= n as u64 {
            break;
        }
        progress.check(done, n, s.workers)?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let observed = t0.elapsed().as_secs_f64();
    let tasks = loop {
        let tasks = list_queue(client, &queue).await?;
        let done = tasks.iter().filter(|t| is_terminal(&t.state)).count();
        if tasks.len() >= n && done == tasks.len() {
            break tasks;
        }
        progress.check(done as u64, n, 0)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Ok((figures(run, &tasks, t0_wall, submit_secs, observed), tasks))
}

/// Submit and end-to-end throughput, latencies and failures from the tasks read back.
pub fn figures(
    run: u32,
    tasks: &[TaskView],
    t0_wall: i64,
    submit_secs: f64,
    observed_secs: f64,
) -> RunResult {
    let n = tasks.len();
    let mut latencies: Vec<f64> = Vec::with_capacity(n);
    let mut last_finish = None::<i64>;
    for t in tasks {
        let created = parse_rfc3339(&t.created_at).ok();
        let started = t.started_at.as_deref().and_then(|s| parse_rfc3339(s).ok());
        if let (Some(c), Some(s)) = (created, started) {
            latencies.push((s - c).max(0) as f64 / 1000.0);
        }
        if let Some(f) = t.finished_at.as_deref().and_then(|s| parse_rfc3339(s).ok()) {
            last_finish = Some(last_finish.map_or(f, |l| l.max(f)));
        }
    }
    latencies.sort_by(f64::total_cmp);
    // From the server's timestamps when they fit what was observed here (same clock when the
    // server runs in-process); otherwise from this side's observation.
    let e2e = last_finish
        .map(|f| (f - t0_wall) as f64 / 1e6)
        .filter(|&s| s > 0.0 && s <= observed_secs + 1.0)
        .unwrap_or(observed_secs);
    let rate = |secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    RunResult {
        run,
        tasks: n,
        failures: tasks.iter().filter(|t| t.state != "succeeded").count(),
        submit_secs: round(submit_secs, 4),
        submit_tasks_per_sec: round(rate(submit_secs), 1),
        end_to_end_secs: round(e2e, 4),
        end_to_end_tasks_per_sec: round(rate(e2e), 1),
        latency_p50_ms: round(percentile(&latencies, 50.0).unwrap_or(0.0), 3),
        latency_p99_ms: round(percentile(&latencies, 99.0).unwrap_or(0.0), 3),
        latency_max_ms: round(latencies.last().copied().unwrap_or(0.0), 3),
        spawn_floor_tasks_per_sec: None,
        ratio_to_spawn_floor: None,
    }
}

fn run_text(r: &RunResult) -> String {
    let floor = match (r.spawn_floor_tasks_per_sec, r.ratio_to_spawn_floor) {
        (Some(f), Some(ratio)) => format!(
            "  floor        {:>10} tasks/s   (`true` spawned with no scheduler, same concurrency) \
             · ratio end to end / floor {ratio}\n",
            thousands(f)
        ),
        _ => String::new(),
    };
    floor
        + &format!(
            "run {run}: {tasks} tasks\n  \
         submit       {st:>10} tasks/s   ({ss:.3} s until the last submit was acknowledged)\n  \
         end to end   {et:>10} tasks/s   ({es:.3} s from the first submit to the last finish)\n  \
         latency      p50 {p50} ms · p99 {p99} ms · max {max} ms   (enqueue to start)\n  \
         failures     {f}\n",
            run = r.run,
            tasks = r.tasks,
            st = thousands(r.submit_tasks_per_sec),
            ss = r.submit_secs,
            et = thousands(r.end_to_end_tasks_per_sec),
            es = r.end_to_end_secs,
            p50 = r.latency_p50_ms,
            p99 = r.latency_p99_ms,
            max = r.latency_max_ms,
            f = r.failures,
        )
}

/// `--workers N` at fleet scale: a server process and N simulated workers per run.
async fn run_fleet(args: BenchArgs) -> anyhow::Result<u8> {
    let prefetch = args.prefetch.unwrap_or(args.slots);
    fleet::raise_open_files(u64::from(args.workers) * 3 + 512)?;
    if args.output == Format::Text {
        eprintln!(
            "drover bench: fleet of {} simulated gRPC workers × {} slot(s) (prefetch {prefetch}), \
             {} noop tasks per phase × {} run(s), a server process on a fresh SQLite store per run",
            args.workers, args.slots, args.tasks, args.runs
        );
    }
    let mut report = Report {
        mode: "noop",
        tasks: args.tasks,
        workers: args.workers,
        slots: args.slots,
        prefetch: Some(prefetch),
        batch: args.batch,
        concurrency: args.concurrency,
        server: "a separate server process (durable SQLite in a temporary directory)".into(),
        submit_tasks_per_sec: 0.0,
        end_to_end_tasks_per_sec: 0.0,
        latency_p50_ms: 0.0,
        latency_p99_ms: 0.0,
        spawn_floor_tasks_per_sec: None,
        ratio_to_spawn_floor: None,
        failures: 0,
        runs: Vec::new(),
        fleet: None,
    };
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let (f, calm) = fleet::run(&args, prefetch, run).await?;
        if args.output == Format::Text {
            output::text(&run_text(&calm))?;
            output::text(&format!(
                "  fleet        baseline {} tasks/s, ratio {}, heartbeats {} % of a core, \
                 {} KiB RSS per worker ({} → {} MiB), churn {} tasks/s ({} left and joined), \
                 longest pause {} ms (calm {} ms), p99 {} ms (calm {} ms)\n",
                thousands(f.baseline_tasks_per_sec),
                f.ratio,
                f.heartbeat_cpu_percent,
                f.rss_per_worker_kib,
                f.rss_before_mib,
                f.rss_connected_mib,
                thousands(f.churn_tasks_per_sec),
                f.churned,
                f.churn_longest_pause_ms,
                f.calm_longest_pause_ms,
                f.churn_p99_ms,
                f.calm_p99_ms,
            ))?;
        }
        runs.push(f);
        report.runs.push(calm);
    }
    let fr = fleet::FleetReport::new(args.workers, args.slots, runs);
    if args.output == Format::Text {
        output::text(&fr.text())?;
    }
    report.fleet = Some(fr);
    finish(&args, report)
}

/// `--queued N` (`queued.rs`): memory, restart and first dispatch with a large backlog.
async fn run_queued(args: BenchArgs, n: usize) -> anyhow::Result<u8> {
    if args.output == Format::Text {
        eprintln!(
            "drover bench: {n} queued tasks × {} run(s), a server process on a fresh SQLite store per run",
            args.runs
        );
    }
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let r = queued::run(&args, n, run).await?;
        if args.output == Format::Text {
            output::text(&format!(
                "run {run}: submitted in {} s; RSS {} MiB idle, {} MiB queued ({} B/task); \
                 restart {} s, then {} MiB; first dispatch {} ms\n",
                r.submit_secs,
                r.rss_idle_mib,
                r.rss_queued_mib,
                r.bytes_per_queued_task,
                r.restart_secs,
                r.rss_restarted_mib,
                r.first_dispatch_ms,
            ))?;
        }
        runs.push(r);
    }
    let report = queued::QueuedReport::new(n, runs);
    match args.output {
        Format::Text => output::text(&report.text())?,
        _ => output::json(&report)?,
    }
    Ok(0)
}

/// Every task of a queue, following the pages.
pub(super) async fn list_queue(client: &Client, queue: &str) -> anyhow::Result<Vec<TaskView>> {
    let mut q = ListQuery {
        queue: Some(queue.into()),
        limit: Some(drover_api::limits::MAX_PAGE),
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = client.list(&q).await?;
        out.extend(page.tasks);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return Ok(out),
        }
    }
}

pub(super) fn terminal(s: &StatsView) -> u64 {
    s.tasks_by_state
        .iter()
        .filter(|(state, _)| is_terminal(state))
        .map(|(_, n)| n)
        .sum()
}

/// Fails a run whose count of finished tasks has not moved for [`STALL`].
pub(super) struct Stall {
    done: u64,
    since: Instant,
}

impl Stall {
    pub(super) fn new() -> Self {
        Stall {
            done: 0,
            since: Instant::now(),
        }
    }

    pub(super) fn check(&mut self, done: u64, n: usize, workers: u32) -> anyhow::Result<()> {
        if done != self.done {
            self.done = done;
            self.since = Instant::now();
        } else if self.since.elapsed() > STALL {
            bail!(
                "no progress for {} s: {done} of {n} tasks finished ({workers} workers connected)",
                STALL.as_secs()
            );
        }
        Ok(())
    }
}

/// `12345.6` as `12,346`.
pub(super) fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::rest::rfc3339;
    use drover_client::SpecView;
    use std::collections::BTreeMap;

    fn task(state: &str, created: i64, started: Option<i64>, finished: Option<i64>) -> TaskView {
        TaskView {
            id: "x".into(),
            state: state.into(),
            namespace: "default".into(),
            queue: "q".into(),
            kind: "noop".into(),
            priority: 0,
            attempt: 1,
            max_attempts: 1,
            exit_code: None,
            error: None,
            worker: None,
            created_at: rfc3339(created),
            updated_at: rfc3339(created),
            started_at: started.map(rfc3339),
            finished_at: finished.map(rfc3339),
            not_before: None,
            spec: SpecView::Noop,
            timeout_ms: None,
            idempotency_key: None,
            concurrency_key: None,
            max_concurrent: None,
            label_selector: String::new(),
            strategy: None,
            key: None,
            resources: BTreeMap::new(),
            shard_index: None,
            shard_count: None,
            waiting_reason: None,
            lost: 0,
            payload: None,
            result: None,
            result_bytes: None,
            attempts: Vec::new(),
        }
    }

    #[test]
    fn figures_from_timestamps() {
        let t0 = 1_700_000_000_000_000;
        let tasks = vec![
            task("succeeded", t0, Some(t0 + 400), Some(t0 + 500)),
            task("succeeded", t0 + 100, Some(t0 + 1100), Some(t0 + 1_000_000)),
            task("failed", t0 + 100, Some(t0 + 200), Some(t0 + 300)),
            task("cancelled", t0 + 100, None, Some(t0 + 300)),
        ];
        let r = figures(1, &tasks, t0, 0.5, 1.2);
        assert_eq!(r.tasks, 4);
        assert_eq!(r.failures, 2);
        assert_eq!(r.submit_tasks_per_sec, 8.0);
        assert_eq!(r.end_to_end_secs, 1.0);
        assert_eq!(r.end_to_end_tasks_per_sec, 4.0);
        // latencies 0.1, 0.4, 1.0 ms
        assert_eq!(r.latency_p50_ms, 0.4);
        assert_eq!(r.latency_p99_ms, 1.0);
        // A server clock far from ours: fall back to what was observed.
        let r = figures(1, &tasks, t0 - 3_600_000_000, 0.5, 2.0);
        assert_eq!(r.end_to_end_secs, 2.0);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(12345.6), "12,346");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
