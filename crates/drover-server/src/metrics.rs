//! Prometheus metrics of the scheduler, named `drover_<component>_<what>_<unit>`.
//!
//! Three sources: the driver (commits and failed ones, the store's health, reclaimed leases), the `Tracker` (a task fed by the
//! committed event stream: queue depth, running per queue, latencies, attempts, retries), and
//! reads at scrape time (tasks by state from the store, workers by state).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use drover_core::{Effects, Event, EventKind, Micros, TaskId, TaskRecord, TaskState};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::clock::now_micros;
use crate::feed::{EventFeed, FeedError};
use crate::http::{AppState, Caller, HttpError};

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// `GET /metrics`: the task and worker counts are read now; a failed read leaves the
/// previous values. Metrics describe every namespace: a limited token gets 403.
async fn scrape(
    State(s): State<AppState>,
    Caller(scope): Caller,
) -> Result<impl IntoResponse, HttpError> {
    scope.require_all("/metrics (it describes every namespace)")?;
    match s.store.count_by_state(None).await {
        Ok(counts) => s.metrics.set_task_counts(&counts),
        Err(e) => tracing::warn!(error = %e, "metrics: counting tasks failed"),
    }
    if let Ok(list) = s.driver.workers().await {
        s.metrics
            .set_worker_counts(&s.workers.counts(list, now_micros()));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    ))
}

pub struct Metrics {
    registry: Registry,
    commits: IntCounter,
    commit_seconds: Histogram,
    commit_writes: Histogram,
    commit_failures: IntCounter,
    store_degraded: IntGauge,
    reclaimed: IntCounter,
    stale_rejected: IntCounter,
    tasks: IntGaugeVec,
    queue_depth: IntGaugeVec,
    queue_running: IntGaugeVec,
    submit_to_start: Histogram,
    run_seconds: Histogram,
    attempts: IntCounter,
    retries: IntCounter,
    finished: IntCounterVec,
    workers: IntGaugeVec,
    workers_cut: IntCounter,
    subscribers: IntGaugeVec,
    webhook_deliveries: IntCounterVec,
    webhook_failures: IntCounter,
    events_pruned: IntCounter,
    tasks_pruned: IntCounter,
    /// Queue names with a configuration: their series stay while they have no tasks.
    configured: Mutex<HashSet<String>>,
}

/// A metric's name and help text.
struct Family {
    name: &'static str,
    help: &'static str,
}

const fn family(name: &'static str, help: &'static str) -> Family {
    Family { name, help }
}

// The driver's: commits, leases and results.
const COMMITS: Family = family("drover_store_commits_total", "Group commits to the store");
const COMMIT_SECONDS: Family = family("drover_store_commit_seconds", "Latency of one group commit");
const COMMIT_WRITES: Family = family(
    "drover_store_commit_batch_writes",
    "Writes per group commit",
);
const COMMIT_FAILURES: Family = family(
    "drover_store_commit_failures_total",
    "Failed commit attempts (each is retried for --store-retry)",
);
const STORE_DEGRADED: Family = family(
    "drover_store_degraded",
    "1 while a commit is being retried (state-changing requests get 503), else 0",
);
const RECLAIMED: Family = family(
    "drover_leases_reclaimed_total",
    "Attempts reclaimed because their lease expired",
);
const STALE_REJECTED: Family = family(
    "drover_stale_results_rejected_total",
    "Results or starts refused because they carried a stale lease",
);

// Tasks and queues: read at scrape time or kept by the tracker.
const TASKS: Family = family(
    "drover_tasks",
    "Tasks in the store by state (read at scrape time)",
);
const QUEUE_DEPTH: Family = family(
    "drover_queue_depth",
    "Tasks queued (ready, waiting for a worker) per queue",
);
const QUEUE_RUNNING: Family = family(
    "drover_queue_running",
    "Tasks assigned to or running on a worker per queue",
);
const SUBMIT_TO_START: Family = family(
    "drover_task_submit_to_start_seconds",
    "From submission to the start of the first attempt",
);
const RUN_SECONDS: Family = family(
    "drover_task_run_seconds",
    "Run time of an attempt, from its start to its end",
);
const ATTEMPTS: Family = family("drover_task_attempts_total", "Attempts assigned to workers");
const RETRIES: Family = family(
    "drover_task_retries_total",
    "Attempts after a task's first (retries and reassignments)",
);
const FINISHED: Family = family(
    "drover_tasks_finished_total",
    "Tasks that reached a terminal state",
);

// Workers and event streams.
const WORKERS: Family = family(
    "drover_workers",
    "Workers by state (alive, suspect, lost, draining, drained)",
);
const WORKERS_CUT: Family = family(
    "drover_worker_streams_cut_total",
    "Worker sessions disconnected because the worker stopped reading its stream",
);
const SUBSCRIBERS: Family = family(
    "drover_event_subscribers",
    "Open event streams by protocol (sse, grpc)",
);

// Webhooks and retention.
const WEBHOOK_DELIVERIES: Family = family(
    "drover_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (ok, error)",
);
const WEBHOOK_FAILURES: Family = family(
    "drover_webhook_failures_total",
    "Events a webhook gave up on after its last attempt",
);
const EVENTS_PRUNED: Family = family(
    "drover_events_pruned_total",
    "Events deleted by the retention window",
);
const TASKS_PRUNED: Family = family(
    "drover_tasks_pruned_total",
    "Terminal tasks (with their attempts and logs) deleted by task retention",
);

fn counter(r: &Registry, f: Family) -> IntCounter {
    let c = IntCounter::new(f.name, f.help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, f: Family) -> IntGauge {
    let g = IntGauge::new(f.name, f.help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter_vec(r: &Registry, f: Family, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(f.name, f.help), &[label]).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, f: Family, label: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(f.name, f.help), &[label]).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, f: Family, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(f.name, f.help).buckets(buckets))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    /// Registers every metric, in field order.
    pub fn new() -> Self {
        let r = Registry::new();
        let seconds = prometheus::exponential_buckets(0.0005, 2.0, 14).expect("buckets");
        // 1 ms to ~9 h: tasks run from no-ops to batch jobs.
        let long = prometheus::exponential_buckets(0.001, 4.0, 13).expect("buckets");
        let writes = prometheus::exponential_buckets(1.0, 4.0, 10).expect("buckets");
        Metrics {
            commits: counter(&r, COMMITS),
            commit_seconds: histogram(&r, COMMIT_SECONDS, seconds.clone()),
            commit_writes: histogram(&r, COMMIT_WRITES, writes),
            commit_failures: counter(&r, COMMIT_FAILURES),
            store_degraded: gauge(&r, STORE_DEGRADED),
            reclaimed: counter(&r, RECLAIMED),
            stale_rejected: counter(&r, STALE_REJECTED),
            tasks: gauge_vec(&r, TASKS, "state"),
            queue_depth: gauge_vec(&r, QUEUE_DEPTH, "queue"),
            queue_running: gauge_vec(&r, QUEUE_RUNNING, "queue"),
            submit_to_start: histogram(&r, SUBMIT_TO_START, seconds),
            run_seconds: histogram(&r, RUN_SECONDS, long),
            attempts: counter(&r, ATTEMPTS),
            retries: counter(&r, RETRIES),
            finished: counter_vec(&r, FINISHED, "state"),
            workers: gauge_vec(&r, WORKERS, "state"),
            workers_cut: counter(&r, WORKERS_CUT),
            subscribers: gauge_vec(&r, SUBSCRIBERS, "protocol"),
            webhook_deliveries: counter_vec(&r, WEBHOOK_DELIVERIES, "outcome"),
            webhook_failures: counter(&r, WEBHOOK_FAILURES),
            events_pruned: counter(&r, EVENTS_PRUNED),
            tasks_pruned: counter(&r, TASKS_PRUNED),
            configured: Mutex::new(HashSet::new()),
            registry: r,
        }
    }

    /// This server stopped leading: the gauges of the core's state describe nothing here
    /// now (the next term counts them again from its snapshot).
    pub fn forget_term(&self) {
        self.queue_depth.reset();
        self.queue_running.reset();
        self.workers.reset();
    }

    pub fn record_effects(&self, fx: &Effects) {
        self.reclaimed.inc_by(fx.reclaimed);
        self.stale_rejected.inc_by(fx.stale_rejected);
    }

    pub fn record_commit(&self, writes: usize, took: Duration) {
        self.commits.inc();
        self.commit_seconds.observe(took.as_secs_f64());
        self.commit_writes.observe(writes as f64);
    }

    /// A queue has a configuration: its per-queue series show 0 rather than vanish while it
    /// has no tasks.
    pub fn queue_configured(&self, name: &str) {
        self.configured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        self.queue_depth.with_label_values(&[name]).add(0);
        self.queue_running.with_label_values(&[name]).add(0);
    }

    fn is_configured(&self, name: &str) -> bool {
        self.configured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    pub fn worker_cut(&self) {
        self.workers_cut.inc();
    }

    pub fn commit_failed(&self) {
        self.commit_failures.inc();
    }

    pub fn set_store_degraded(&self, degraded: bool) {
        self.store_degraded.set(i64::from(degraded));
    }

    /// Counts an open event stream until the guard drops.
    pub fn subscriber(self: &Arc<Self>, protocol: &'static str) -> SubscriberGuard {
        self.subscribers.with_label_values(&[protocol]).inc();
        SubscriberGuard {
            metrics: self.clone(),
            protocol,
        }
    }

    pub fn webhook_attempt(&self, ok: bool) {
        self.webhook_deliveries
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    pub fn webhook_gave_up(&self) {
        self.webhook_failures.inc();
    }

    pub fn events_pruned(&self, n: u64) {
        self.events_pruned.inc_by(n);
    }

    pub fn tasks_pruned(&self, n: u64) {
        self.tasks_pruned.inc_by(n);
    }

    /// Sets the task counts read from the store; states with none show 0.
    pub fn set_task_counts(&self, counts: &std::collections::BTreeMap<TaskState, u64>) {
        for s in TaskState::ALL {
            let n = counts.get(&s).copied().unwrap_or(0);
            self.tasks
                .with_label_values(&[s.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Sets the workers per state; states with none show 0.
    pub fn set_worker_counts(&self, counts: &HashMap<&'static str, i64>) {
        for s in drover_core::WorkerStatus::ALL.iter().map(|s| s.as_str()) {
            self.workers
                .with_label_values(&[s])
                .set(counts.get(s).copied().unwrap_or(0));
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements the subscriber gauge when an event stream ends.
pub struct SubscriberGuard {
    metrics: Arc<Metrics>,
    protocol: &'static str,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.metrics
            .subscribers
            .with_label_values(&[self.protocol])
            .dec();
    }
}

/// What the tracker remembers of an active task.
struct Active {
    queue: Arc<str>,
    state: TaskState,
    created_at: Micros,
    running_since: Option<Micros>,
}

/// Follows committed task events to keep the per-queue gauges and the latency histograms.
/// Holds one small entry per active task; seeded from the snapshot the core starts from. A
/// queue's series (and its entry here) go when its last active task ends, unless the queue
/// is configured: names used once do not grow memory or the scrape.
pub struct Tracker {
    metrics: Arc<Metrics>,
    active: HashMap<TaskId, Active>,
    /// Each queue with active tasks, by name, with how many.
    queues: HashMap<String, (Arc<str>, usize)>,
}

impl Tracker {
    pub fn new(
        metrics: Arc<Metrics>,
        active: &[(TaskRecord, Option<drover_core::AttemptRecord>)],
    ) -> Self {
        let mut t = Tracker {
            metrics,
            active: HashMap::with_capacity(active.len()),
            queues: HashMap::new(),
        };
        for (rec, _) in active {
            let queue = t.enter(&rec.def.queue);
            t.gauge(&queue, rec.state, 1);
            t.active.insert(
                rec.id,
                Active {
                    queue,
                    state: rec.state,
                    created_at: rec.created_at,
                    running_since: (rec.state == TaskState::Running)
                        .then_some(rec.started_at)
                        .flatten(),
                },
            );
        }
        t
    }

    /// A task of `name` became active: its interned name.
    fn enter(&mut self, name: &str) -> Arc<str> {
        // No allocation for a known queue: a restart enters every active task.
        if let Some(e) = self.queues.get_mut(name) {
            e.1 += 1;
            return e.0.clone();
        }
        let name: Arc<str> = Arc::from(name);
        self.queues.insert(name.to_string(), (name.clone(), 1));
        name
    }

    /// A task of `name` ended: the queue's series go with its last task, unless configured.
    fn leave(&mut self, name: &str) {
        let Some(e) = self.queues.get_mut(name) else {
            return;
        };
        e.1 -= 1;
        if e.1 > 0 {
            return;
        }
        self.queues.remove(name);
        if !self.metrics.is_configured(name) {
            let _ = self.metrics.queue_depth.remove_label_values(&[name]);
            let _ = self.metrics.queue_running.remove_label_values(&[name]);
        }
    }

    fn gauge(&self, queue: &str, state: TaskState, delta: i64) {
        let g = match state {
            TaskState::Queued => &self.metrics.queue_depth,
            TaskState::Assigned | TaskState::Running => &self.metrics.queue_running,
            _ => return,
        };
        g.with_label_values(&[queue]).add(delta);
    }

    pub fn observe(&mut self, e: &Event) {
        let EventKind::Task {
            task_id,
            queue,
            state,
            attempt,
            ..
        } = &e.kind
        else {
            return;
        };
        let (state, at) = (*state, e.at);
        let prev = self.active.remove(task_id);
        let queue = match &prev {
            Some(p) => p.queue.clone(),
            None => self.enter(queue),
        };
        let (created_at, mut running_since) = match &prev {
            Some(p) => {
                self.gauge(&queue, p.state, -1);
                (p.created_at, p.running_since)
            }
            // The first event of a task is its submission.
            None => (at, None),
        };
        if state == TaskState::Assigned {
            self.metrics.attempts.inc();
            if *attempt > 1 {
                self.metrics.retries.inc();
            }
        }
        let was_running = prev.as_ref().is_some_and(|p| p.state == TaskState::Running);
        if state == TaskState::Running && !was_running {
            if *attempt == 1 {
                self.metrics.submit_to_start.observe(secs(at - created_at));
            }
            running_since = Some(at);
        }
        if was_running && state != TaskState::Running {
            if let Some(since) = running_since.take() {
                self.metrics.run_seconds.observe(secs(at - since));
            }
        }
        if state.is_terminal() {
            self.metrics
                .finished
                .with_label_values(&[state.as_str()])
                .inc();
            // Counted by `enter`, now or when it became active.
            self.leave(&queue);
            return;
        }
        self.gauge(&queue, state, 1);
        self.active.insert(
            *task_id,
            Active {
                queue,
                state,
                created_at,
                running_since,
            },
        );
    }

    /// Runs until the server shuts down.
    pub async fn run(mut self, mut feed: EventFeed) {
        loop {
            match feed.next().await {
                Ok(e) => self.observe(&e),
                Err(FeedError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: reading events failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

fn secs(us: Micros) -> f64 {
    us.max(0) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, at: Micros, id: u128, state: TaskState, attempt: u32) -> Event {
        Event {
            seq,
            at,
            kind: EventKind::Task {
                namespace: "default".into(),
                task_id: TaskId(id),
                queue: "q".into(),
                state,
                attempt,
                worker: None,
                reason: None,
                workflow: None,
                result_bytes: None,
            },
        }
    }

    #[test]
    fn follows_a_task_with_a_retry() {
        let m = Arc::new(Metrics::new());
        let mut t = Tracker::new(m.clone(), &[]);
        use TaskState::*;
        let steps = [
            (Queued, 0, 0),
            (Assigned, 1, 1_000),
            (Running, 1, 2_000),
            (Pending, 1, 502_000),
            (Queued, 1, 600_000),
            (Assigned, 2, 601_000),
            (Running, 2, 602_000),
        ];
        for (i, (s, a, at)) in steps.iter().enumerate() {
            t.observe(&ev(i as u64 + 1, *at, 1, *s, *a));
        }
        assert_eq!(m.queue_running.with_label_values(&["q"]).get(), 1);
        assert_eq!(m.queue_depth.with_label_values(&["q"]).get(), 0);
        t.observe(&ev(9, 3_602_000, 1, Succeeded, 2));
        assert_eq!(m.queue_running.with_label_values(&["q"]).get(), 0);
        assert_eq!(m.attempts.get(), 2);
        assert_eq!(m.retries.get(), 1);
        assert_eq!(m.submit_to_start.get_sample_count(), 1);
        assert!((m.submit_to_start.get_sample_sum() - 0.002).abs() < 1e-9);
        assert_eq!(m.run_seconds.get_sample_count(), 2);
        assert!((m.run_seconds.get_sample_sum() - 3.5).abs() < 1e-9);
        assert_eq!(m.finished.with_label_values(&["succeeded"]).get(), 1);
        assert!(t.active.is_empty());
        let text = m.render();
        assert!(text.contains("drover_task_run_seconds_count 2"), "{text}");
    }

    fn task_ev(seq: u64, id: u128, queue: &str, state: TaskState) -> Event {
        let mut e = ev(seq, seq as Micros, id, state, 1);
        if let EventKind::Task { queue: q, .. } = &mut e.kind {
            *q = queue.into();
        }
        e
    }

    #[test]
    fn a_queue_without_tasks_or_config_leaves_no_series() {
        let m = Arc::new(Metrics::new());
        let mut t = Tracker::new(m.clone(), &[]);
        m.queue_configured("kept");
        use TaskState::*;
        for (i, q) in ["once-1", "once-2", "kept"].iter().enumerate() {
            let id = i as u128 + 1;
            t.observe(&task_ev(10 * id as u64, id, q, Queued));
            t.observe(&task_ev(10 * id as u64 + 1, id, q, Assigned));
        }
        let text = m.render();
        assert!(
            text.contains("drover_queue_running{queue=\"once-1\"} 1"),
            "{text}"
        );
        for (i, _) in ["once-1", "once-2", "kept"].iter().enumerate() {
            let id = i as u128 + 1;
            t.observe(&task_ev(10 * id as u64 + 2, id, "", Succeeded));
        }
        let text = m.render();
        assert!(
            !text.contains("once-1") && !text.contains("once-2"),
            "{text}"
        );
        assert!(
            text.contains("drover_queue_depth{queue=\"kept\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("drover_queue_running{queue=\"kept\"} 0"),
            "{text}"
        );
        assert!(t.queues.is_empty() && t.active.is_empty());
        // A task whose only event seen is terminal leaves nothing behind either.
        t.observe(&task_ev(100, 9, "gone", Skipped));
        assert!(t.queues.is_empty() && !m.render().contains("gone"));
    }
}
