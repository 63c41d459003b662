//! `drover bench --rate R` and `drover bench --sequential`: the latency of the dispatch path
//! of a scheduler that is not saturated, one task per request (`POST /v1/tasks`, not batches).
//!
//! - *Paced* (`--rate R`): the clients (`--clients C`, default 1) send task `i` at `t0 + i/R`
//!   between them (client `k` sends `k`, `k + C`, ...), each waiting for its acknowledgement
//!   before its next request (a client that falls behind sends at once; how late it sent is
//!   reported). Latency is *enqueue → start*: enqueue is the client's wall clock just before
//!   the request, start the attempt's start time from the server (its wall clock, µs since the
//!   epoch: the same clock when both run on one machine).
//! - *Sequential* (`--sequential`): each client sends its requests back to back, each waiting for
//!   its acknowledgement; tasks per second and the time of one request. In the same run, the
//!   time of one `fdatasync` of 100 bytes in the server's data directory, the floor of a
//!   durable acknowledgement, and the ratio request / fdatasync.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use drover_api::rest::parse_rfc3339;
use drover_client::{is_terminal, Client, SubmitRequest, TaskView};
use drover_server::clock::now_micros;
use serde::Serialize;
use tokio::task::JoinSet;

use super::{bench_task, list_queue, terminal, thousands, Local, Stall, REQUEST_TIMEOUT};
use crate::cli::BenchArgs;
use crate::output::{self, Format};
use crate::stats::{median, percentile, round};

/// Requests each client sends before the measurement (connections open, code paths warm).
const WARMUP: usize = 5;
/// `fdatasync` calls timed per run.
const FSYNC_SAMPLES: usize = 200;
/// Bytes written before each of them.
const FSYNC_BYTES: usize = 100;
/// Pause before the first scheduled send, so every client is ready for it.
const LEAD_IN: Duration = Duration::from_millis(20);

/// The figures of one paced or sequential run.
#[derive(Clone, Debug, Serialize)]
pub struct PacedRun {
    pub run: u32,
    pub tasks: usize,
    pub failures: usize,
    /// Tasks per second sent: tasks / (first send to last acknowledgement).
    pub tasks_per_sec: f64,
    /// Enqueue (the client's clock just before the request) to the attempt's start (the
    /// server's).
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// The smallest, a check on the clocks (negative: they disagree).
    pub latency_min_ms: f64,
    /// One request, from just before it to its acknowledgement.
    pub request_p50_ms: f64,
    pub request_p99_ms: f64,
    pub request_max_ms: f64,
    /// Paced: how much later than scheduled the sends went (p99 and max).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_late_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_late_max_ms: Option<f64>,
    /// Sequential: one `fdatasync` after rewriting 100 bytes in place, in the data
    /// directory (median of 200), and after appending 100 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fdatasync_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fdatasync_append_ms: Option<f64>,
    /// Sequential: request p50 / fdatasync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_to_fdatasync: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct PacedReport {
    pub mode: &'static str,
    pub task: &'static str,
    pub tasks: usize,
    pub clients: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    pub workers: u32,
    pub slots: u32,
    pub prefetch: Option<u32>,
    pub server: String,
    /// Medians over the runs.
    pub tasks_per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub request_p50_ms: f64,
    pub request_p99_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fdatasync_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_to_fdatasync: Option<f64>,
    pub failures: usize,
    pub runs: Vec<PacedRun>,
}

/// One request as the client saw it.
struct Sample {
    id: String,
    /// Wall clock just before the request, µs since the epoch.
    enqueued: i64,
    request: Duration,
    /// How much later than its scheduled time it was sent (paced).
    late: Duration,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<u8> {
    let prefetch = args.prefetch.unwrap_or(args.slots);
    let mut report = PacedReport {
        mode: if args.sequential {
            "sequential"
        } else {
            "paced"
        },
        task: if args.exec { "exec" } else { "noop" },
        tasks: args.tasks,
        clients: args.clients,
        rate: args.rate,
        workers: args.workers,
        slots: args.slots,
        prefetch: Some(prefetch),
        server: "in-process (durable SQLite in a temporary directory)".into(),
        tasks_per_sec: 0.0,
        latency_p50_ms: 0.0,
        latency_p99_ms: 0.0,
        latency_max_ms: 0.0,
        request_p50_ms: 0.0,
        request_p99_ms: 0.0,
        fdatasync_ms: None,
        request_to_fdatasync: None,
        failures: 0,
        runs: Vec::new(),
    };
    if args.output == Format::Text {
        eprintln!("drover bench: {}", report.describe(args.runs));
    }
    for run in 1..=args.runs {
        let r = match &args.server {
            Some(url) => {
                report.server = url.clone();
                report.prefetch = None;
                let clients = (0..args.clients)
                    .map(|_| Client::with_timeout(url, args.token.clone(), REQUEST_TIMEOUT))
                    .collect::<Result<Vec<_>, _>>()?;
                // Not the server's directory: the machine's temporary one.
                measure(clients, &args, run, &std::env::temp_dir()).await?
            }
            None => {
                let local = Local::start(&args, prefetch).await?;
                let r = match (0..args.clients).map(|_| local.client()).collect() {
                    Ok(clients) => measure(clients, &args, run, local.dir.path()).await,
                    Err(e) => Err(e),
                };
                local.stop().await?;
                r?
            }
        };
        if args.output == Format::Text {
            output::text(&r.text())?;
        }
        report.runs.push(r);
    }
    report.summarize();
    match args.output {
        Format::Json => output::json(&report)?,
        Format::Text if args.runs > 1 => output::text(&report.text())?,
        Format::Text => {}
    }
    if report.failures > 0 {
        eprintln!("drover bench: {} tasks did not succeed", report.failures);
        return Ok(1);
    }
    Ok(0)
}

/// One run: the floor (sequential), a warm-up, the requests, then every task read back.
async fn measure(
    clients: Vec<Client>,
    args: &BenchArgs,
    run: u32,
    data_dir: &Path,
) -> anyhow::Result<PacedRun> {
    let probe = clients[0].clone();
    let fsync = if args.sequential {
        let dir = data_dir.to_path_buf();
        Some(
            tokio::task::spawn_blocking(move || fdatasync_times(&dir))
                .await?
                .context("timing fdatasync in the data directory")?,
        )
    } else {
        None
    };
    let queue = format!("bench-{}-{}-{run}", std::process::id(), now_micros());
    warm_up(&clients, args, &format!("{queue}-warmup")).await?;
    let baseline = terminal(&probe.stats().await?);

    let task = bench_task(args, &queue);
    let (samples, secs) = send_all(clients, args, task).await?;
    let tasks = wait_for(&probe, &queue, args.tasks, Some(baseline)).await?;
    Ok(figures(
        run,
        &samples,
        &tasks,
        secs,
        args.rate.is_some(),
        fsync,
    ))
}

/// Each client sends `WARMUP` tasks (to a queue of their own) and waits until they ended.
async fn warm_up(clients: &[Client], args: &BenchArgs, queue: &str) -> anyhow::Result<()> {
    let task = bench_task(args, queue);
    for c in clients {
        for _ in 0..WARMUP {
            c.submit(&task).await?;
        }
    }
    let n = WARMUP * clients.len();
    wait_for(&clients[0], queue, n, None).await.map(drop)
}

/// Sends the run's requests from every client; the samples and the seconds from the first
/// send to the last acknowledgement.
async fn send_all(
    clients: Vec<Client>,
    args: &BenchArgs,
    task: SubmitRequest,
) -> anyhow::Result<(Vec<Sample>, f64)> {
    let n = args.tasks;
    let count = clients.len();
    // Paced: the gap between two scheduled sends; sequential: none, each takes the next.
    let gap = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = tokio::time::Instant::now() + LEAD_IN;
    let started = Instant::now() + LEAD_IN;
    let mut set = JoinSet::new();
    for (k, client) in clients.into_iter().enumerate() {
        let (task, next) = (task.clone(), next.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            let mut i = k;
            tokio::time::sleep_until(t0).await;
            loop {
                let (index, at) = match gap {
                    Some(gap) => (i, Some(t0 + gap * i as u32)),
                    None => (next.fetch_add(1, Ordering::Relaxed), None),
                };
                if index >= n {
                    return Ok::<_, anyhow::Error>(out);
                }
                if let Some(at) = at {
                    tokio::time::sleep_until(at).await;
                }
                let late = at.map_or(Duration::ZERO, |at| at.elapsed());
                let enqueued = now_micros();
                let sent = Instant::now();
                let view = client.submit(&task).await?;
                out.push(Sample {
                    id: view.id,
                    enqueued,
                    request: sent.elapsed(),
                    late,
                });
                i += count;
            }
        });
    }
    let mut samples = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        samples.extend(r.context("a client crashed")??);
    }
    Ok((samples, started.elapsed().as_secs_f64()))
}

/// Waits until `n` more tasks than `baseline` are terminal (by the counts, cheap for the
/// server), then reads the queue's tasks back until all `n` are terminal.
async fn wait_for(
    client: &Client,
    queue: &str,
    n: usize,
    baseline: Option<u64>,
) -> anyhow::Result<Vec<TaskView>> {
    let mut progress = Stall::new();
    if let Some(baseline) = baseline {
        loop {
            let s = client.stats().await?;
            let done = terminal(&s).saturating_sub(baseline);
            if done >= n as u64 {
                break;
            }
            progress.check(done, n, s.workers)?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    loop {
        let tasks = list_queue(client, queue).await?;
        let done = tasks.iter().filter(|t| is_terminal(&t.state)).count();
        if tasks.len() >= n && done == tasks.len() {
            return Ok(tasks);
        }
        progress.check(done as u64, n, 0)?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Median times, in ms, of `FSYNC_SAMPLES` `fdatasync` calls after rewriting `FSYNC_BYTES`
/// in place, and after appending them, on a file in `dir`.
fn fdatasync_times(dir: &Path) -> std::io::Result<(f64, f64)> {
    let path = dir.join("drover-bench-fdatasync");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let bytes = [b'x'; FSYNC_BYTES];
    file.write_all(&bytes)?;
    file.sync_all()?;
    let (mut rewrite, mut append) = (Vec::new(), Vec::new());
    for _ in 0..FSYNC_SAMPLES {
        let t = Instant::now();
        file.write_all_at(&bytes, 0)?;
        file.sync_data()?;
        rewrite.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        file.write_all(&bytes)?;
        file.sync_data()?;
        append.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok((
        median(&rewrite).unwrap_or(0.0),
        median(&append).unwrap_or(0.0),
    ))
}

/// A run's figures from what the clients saw and the tasks read back.
fn figures(
    run: u32,
    samples: &[Sample],
    tasks: &[TaskView],
    secs: f64,
    paced: bool,
    fsync: Option<(f64, f64)>,
) -> PacedRun {
    let enqueued: std::collections::HashMap<&str, i64> = samples
        .iter()
        .map(|s| (s.id.as_str(), s.enqueued))
        .collect();
    let mut latency: Vec<f64> = tasks
        .iter()
        .filter_map(|t| {
            let started = parse_rfc3339(t.started_at.as_deref()?).ok()?;
            let enq = enqueued.get(t.id.as_str())?;
            Some((started - enq) as f64 / 1e3)
        })
        .collect();
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let mut request: Vec<f64> = samples.iter().map(|s| ms(&s.request)).collect();
    let mut late: Vec<f64> = samples.iter().map(|s| ms(&s.late)).collect();
    for v in [&mut latency, &mut request, &mut late] {
        v.sort_by(f64::total_cmp);
    }
    let p = |v: &[f64], q: f64| round(percentile(v, q).unwrap_or(0.0), 3);
    let last = |v: &[f64]| round(v.last().copied().unwrap_or(0.0), 3);
    let request_p50 = p(&request, 50.0);
    PacedRun {
        run,
        tasks: samples.len(),
        failures: tasks.iter().filter(|t| t.state != "succeeded").count()
            + samples.len().saturating_sub(latency.len()),
        tasks_per_sec: round(samples.len() as f64 / secs.max(1e-9), 1),
        latency_p50_ms: p(&latency, 50.0),
        latency_p99_ms: p(&latency, 99.0),
        latency_max_ms: last(&latency),
        latency_min_ms: round(latency.first().copied().unwrap_or(0.0), 3),
        request_p50_ms: request_p50,
        request_p99_ms: p(&request, 99.0),
        request_max_ms: last(&request),
        send_late_p99_ms: paced.then(|| p(&late, 99.0)),
        send_late_max_ms: paced.then(|| last(&late)),
        fdatasync_ms: fsync.map(|f| round(f.0, 4)),
        fdatasync_append_ms: fsync.map(|f| round(f.1, 4)),
        request_to_fdatasync: fsync
            .filter(|f| f.0 > 0.0)
            .map(|f| round(request_p50 / f.0, 2)),
    }
}

impl PacedRun {
    fn text(&self) -> String {
        let mut s = format!(
            "run {}: {} tasks, one per request\n  \
             sent         {:>10} tasks/s\n  \
             latency      p50 {} ms · p99 {} ms · max {} ms · min {} ms   (enqueue to start)\n  \
             request      p50 {} ms · p99 {} ms · max {} ms   (sent to acknowledged)\n",
            self.run,
            self.tasks,
            thousands(self.tasks_per_sec),
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
            self.latency_min_ms,
            self.request_p50_ms,
            self.request_p99_ms,
            self.request_max_ms,
        );
        if let (Some(p99), Some(max)) = (self.send_late_p99_ms, self.send_late_max_ms) {
            s += &format!("  sends late   p99 {p99} ms · max {max} ms   (behind the schedule)\n");
        }
        if let (Some(f), Some(a), Some(r)) = (
            self.fdatasync_ms,
            self.fdatasync_append_ms,
            self.request_to_fdatasync,
        ) {
            s += &format!(
                "  fdatasync    {f} ms (100 bytes rewritten; appended: {a} ms), median of \
                 {FSYNC_SAMPLES} in the data directory · request p50 / fdatasync = {r}\n"
            );
        }
        s + &format!("  failures     {}\n", self.failures)
    }
}

impl PacedReport {
    fn describe(&self, runs: u32) -> String {
        let what = match self.rate {
            Some(r) => format!("{} tasks paced at {r}/s", self.tasks),
            None => format!("{} tasks back to back", self.tasks),
        };
        format!(
            "{what}, one {} task per request, from {} client(s), {} run(s), workers {} × {} slots",
            self.task, self.clients, runs, self.workers, self.slots
        )
    }

    fn summarize(&mut self) {
        let pick = |f: fn(&PacedRun) -> f64| {
            median(&self.runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        self.tasks_per_sec = round(pick(|r| r.tasks_per_sec), 1);
        self.latency_p50_ms = round(pick(|r| r.latency_p50_ms), 3);
        self.latency_p99_ms = round(pick(|r| r.latency_p99_ms), 3);
        self.latency_max_ms = round(pick(|r| r.latency_max_ms), 3);
        self.request_p50_ms = round(pick(|r| r.request_p50_ms), 3);
        self.request_p99_ms = round(pick(|r| r.request_p99_ms), 3);
        if self.runs.iter().all(|r| r.fdatasync_ms.is_some()) && !self.runs.is_empty() {
            self.fdatasync_ms = Some(round(pick(|r| r.fdatasync_ms.unwrap_or(0.0)), 4));
            self.request_to_fdatasync =
                Some(round(pick(|r| r.request_to_fdatasync.unwrap_or(0.0)), 2));
        }
        self.failures = self.runs.iter().map(|r| r.failures).sum();
    }

    fn text(&self) -> String {
        let mut s = format!(
            "median of {} runs: {} tasks/s · latency p50 {} ms, p99 {} ms, max {} ms · \
             request p50 {} ms, p99 {} ms",
            self.runs.len(),
            thousands(self.tasks_per_sec),
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
            self.request_p50_ms,
            self.request_p99_ms,
        );
        if let (Some(f), Some(r)) = (self.fdatasync_ms, self.request_to_fdatasync) {
            s += &format!(" · fdatasync {f} ms, ratio {r}");
        }
        s + &format!(" · {} failures\n", self.failures)
    }
}

/// Checks the paced options.
pub fn check(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("--rate must be a positive number of tasks per second");
        }
    }
    if args.clients == 0 || args.clients > args.tasks {
        bail!("--clients must be from 1 to --tasks");
    }
    Ok(())
}
