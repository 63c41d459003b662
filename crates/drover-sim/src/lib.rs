//! `drover sim`: the real [`Coordinator`] against simulated workers and workloads, on a
//! simulated clock, deterministically from a seed.
//!
//! A discrete-event loop: task arrivals (Poisson or all at once), assignments (the core's
//! dispatch, exactly as the server runs it), starts, and finishes after `duration / speed`,
//! each fed back to the core as the `Started` / `Finished` inputs a real worker would send.
//! Every strategy sees the same workload (arrival times, durations, routing keys and failure
//! draws come from the seed, not from the order of events).
//!
//! ```no_run
//! let opts = drover_sim::SimOptions { tasks: 1000, ..Default::default() };
//! let reports = drover_sim::run(&opts);
//! print!("{}", drover_sim::render_text(&opts, &reports));
//! ```

mod options;
mod oracle;
mod queues;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use drover_core::{
    Assignment, AttemptOutcome, AttemptRef, Coordinator, CoreConfig, Effects, Input, Micros,
    NewTask, Outcome, PlacementSpec, RequestId, Snapshot, TaskDef, TaskId, TaskSpec, ToWorker,
    WorkerInfo, Write,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use options::{
    DurationDist, OptionError, SimOptions, SimStrategy, WorkerGroup, DEFAULT_PREFETCH,
};
pub use oracle::Oracle;
pub use queues::{QueueReport, QueueWeight};

/// How one worker was used.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerReport {
    pub name: String,
    pub speed: f64,
    pub slots: u32,
    pub fail_rate: f64,
    /// Busy slot-time over slots × makespan.
    pub utilisation: f64,
    /// Attempts it ran.
    pub attempts: u64,
    /// What the adaptive model learned of its mean run time, seconds (adaptive runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_mean: Option<f64>,
}

/// The result of one strategy. Times are simulated seconds; completion is submit → finish.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimReport {
    pub strategy: String,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    /// First arrival to last finish.
    pub makespan: f64,
    /// Tasks that ended (copies of a broadcast count one each).
    pub tasks: usize,
    pub failed: usize,
    pub attempts: u64,
    /// Arrival rate over capacity, when arrivals were given.
    pub offered_load: Option<f64>,
    pub workers: Vec<WorkerReport>,
    /// Per queue, with `--queues`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<QueueReport>,
}

/// Runs every strategy of `opts` on the same workload, in order.
pub fn run(opts: &SimOptions) -> Vec<SimReport> {
    opts.strategies.iter().map(|s| run_one(opts, *s)).collect()
}

/// The workload, drawn once from the seed: the same for every strategy.
struct Workload {
    arrivals: Vec<Micros>,
    /// Run time at speed 1, µs.
    base: Vec<Micros>,
    keys: Vec<u32>,
}

fn secs_to_us(s: f64) -> Micros {
    ((s * 1e6).round() as Micros).max(1)
}

fn workload(opts: &SimOptions) -> Workload {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut t = 0.0f64;
    let mut w = Workload {
        arrivals: Vec::with_capacity(opts.tasks),
        base: Vec::with_capacity(opts.tasks),
        keys: Vec::with_capacity(opts.tasks),
    };
    for _ in 0..opts.tasks {
        if let Some(rate) = opts.arrival {
            let u: f64 = rng.random();
            t += -(1.0 - u).ln() / rate;
        }
        w.arrivals.push((t * 1e6).round() as Micros);
        w.base.push(secs_to_us(opts.duration.sample(rng.random())));
        w.keys.push(rng.random_range(0..opts.keys.max(1)));
    }
    w
}

/// SplitMix64: independent draws per (task, attempt), so failures do not depend on the
/// order in which a strategy runs things.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(z: u64) -> f64 {
    (z >> 11) as f64 / (1u64 << 53) as f64
}

struct SimWorker {
    info: WorkerInfo,
    speed: f64,
    fail: f64,
    session: u64,
    queue: VecDeque<Assignment>,
    running: u32,
    busy_us: i64,
    attempts: u64,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// Task index.
    Arrive(usize),
    Finish {
        worker: usize,
        task: TaskId,
        attempt: u32,
        lease: u128,
        ok: bool,
    },
}

struct Sim<'a> {
    opts: &'a SimOptions,
    core: Coordinator,
    workers: Vec<SimWorker>,
    /// Per task (and broadcast copy): base run time, submit time, end time.
    base: Vec<Micros>,
    submitted: Vec<Micros>,
    ended: Vec<Option<(Micros, bool)>>,
    /// When each submitted task first started.
    started: Vec<Option<Micros>>,
    /// Ids beyond the dense range `1..=tasks` (broadcast copies) → index.
    extra: BTreeMap<TaskId, usize>,
    events: BinaryHeap<Reverse<(Micros, u64, Ev)>>,
    seq: u64,
    dirty: Vec<usize>,
}

impl Sim<'_> {
    fn index(&self, id: TaskId) -> usize {
        let n = self.opts.tasks as u128;
        if id.0 >= 1 && id.0 <= n {
            (id.0 - 1) as usize
        } else {
            self.extra[&id]
        }
    }

    fn push(&mut self, at: Micros, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, ev)));
    }

    fn apply(&mut self, now: Micros, fx: &mut Effects) {
        for w in fx.writes.drain(..) {
            if let Write::Task { record, is_new } = w {
                if is_new
                    && !self.extra.contains_key(&record.id)
                    && record.id.0 > self.opts.tasks as u128
                {
                    // A broadcast copy: it runs as long as its group's task.
                    let parent = self
                        .core
                        .shard(record.id)
                        .map(|s| self.index(s.group))
                        .unwrap_or(0);
                    self.extra.insert(record.id, self.base.len());
                    self.base.push(self.base[parent]);
                    self.submitted.push(now);
                    self.ended.push(None);
                }
                if record.state.is_terminal() {
                    let i = self.index(record.id);
                    self.ended[i] = Some((now, record.state == drover_core::TaskState::Succeeded));
                }
            }
        }
        for (session, msg) in fx.sends.drain(..) {
            if let ToWorker::Assign(a) = msg {
                let w = (session - 1) as usize;
                self.workers[w].queue.push_back(a);
                self.dirty.push(w);
            }
        }
        fx.replies.clear();
    }

    /// Starts queued assignments on free slots.
    fn start_work(&mut self, now: Micros, fx: &mut Effects) {
        while let Some(w) = self.dirty.pop() {
            loop {
                let sw = &mut self.workers[w];
                if sw.running >= sw.info.slots {
                    break;
                }
                let Some(a) = sw.queue.pop_front() else { break };
                sw.running += 1;
                sw.attempts += 1;
                let session = sw.session;
                let (speed, fail) = (sw.speed, sw.fail);
                let r = AttemptRef {
                    task_id: a.task_id,
                    attempt: a.attempt,
                    lease: a.lease,
                };
                self.core.handle(
                    now,
                    Input::Started {
                        session,
                        attempt: r,
                    },
                    fx,
                );
                let i = self.index(a.task_id);
                if let Some(s) = self.started.get_mut(i).filter(|s| s.is_none()) {
                    *s = Some(now);
                }
                let mut run = self.base[i] as f64 / speed;
                let z = splitmix(self.opts.seed ^ splitmix((i as u64) << 8 | a.attempt as u64));
                let ok = unit(z) >= fail;
                if !ok {
                    // A failure happens somewhere during the run.
                    run *= unit(splitmix(z));
                }
                let run = (run.round() as Micros).max(1);
                self.workers[w].busy_us += run;
                self.push(
                    now + run,
                    Ev::Finish {
                        worker: w,
                        task: a.task_id,
                        attempt: a.attempt,
                        lease: a.lease.0,
                        ok,
                    },
                );
            }
        }
    }
}

/// Runs one strategy; the report's numbers depend only on `opts` and the strategy.
pub fn run_one(opts: &SimOptions, strategy: SimStrategy) -> SimReport {
    let wl = workload(opts);
    let mut sim = Sim::new(opts, strategy, &wl);
    let mut fx = Effects::default();
    sim.join_workers(&mut fx);
    for (i, &at) in wl.arrivals.iter().enumerate() {
        sim.push(at, Ev::Arrive(i));
    }
    let mut submitter = Submitter::new(opts);
    while let Some(now) = sim.next_instant() {
        sim.run_instant(now, &wl, &mut submitter, &mut fx);
    }
    report(opts, strategy, &sim)
}

/// The core for `strategy`: the oracle runs on least-loaded, with its own ranker (set once
/// the workers are known).
fn coordinator(opts: &SimOptions, strategy: SimStrategy) -> Coordinator {
    let core_strategy = match strategy {
        SimStrategy::Core(s) => s,
        SimStrategy::Oracle => drover_core::Strategy::LeastLoaded,
    };
    let cfg = CoreConfig {
        default_strategy: core_strategy,
        // Simulated workers never stall or vanish: no heartbeats needed.
        lease_ms: 1 << 40,
        suspect_after_ms: 1 << 40,
        adaptive: opts.adaptive.clone(),
        ..CoreConfig::default()
    };
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&opts.seed.to_le_bytes());
    Coordinator::new(cfg, seed, 0, Snapshot::default())
}

/// The simulated workers, named `w00`, `w01`, … and labelled with their group's zone, and
/// the truth the oracle ranks by: each one's mean run time and failure rate.
fn sim_workers(opts: &SimOptions) -> (Vec<SimWorker>, BTreeMap<String, (f64, f64)>) {
    let total: u32 = opts.workers.iter().map(|g| g.count).sum();
    let width = total.to_string().len().max(2);
    let mut workers = Vec::new();
    let mut truth = BTreeMap::new();
    for (gi, g) in opts.workers.iter().enumerate() {
        for _ in 0..g.count {
            let idx = workers.len();
            let mut info = WorkerInfo {
                name: format!("w{idx:0width$}"),
                slots: g.slots,
                prefetch: opts.prefetch,
                ..WorkerInfo::default()
            };
            info.labels.insert("zone".into(), format!("g{gi}"));
            let fail = g.fail_rate.unwrap_or(opts.fail_rate);
            truth.insert(info.name.clone(), (opts.duration.mean() / g.speed, fail));
            workers.push(SimWorker {
                info,
                speed: g.speed,
                fail,
                session: idx as u64 + 1,
                queue: VecDeque::new(),
                running: 0,
                busy_us: 0,
                attempts: 0,
            });
        }
    }
    (workers, truth)
}

/// Submits the arrivals of an instant as one request, as the server's driver folds what
/// arrived together; a finish in between flushes the arrivals before it, so the core sees
/// the inputs in event order.
struct Submitter {
    def: TaskDef,
    req: RequestId,
    batch: Vec<(NewTask, PlacementSpec)>,
}

impl Submitter {
    fn new(opts: &SimOptions) -> Submitter {
        let def = TaskDef {
            namespace: drover_core::DEFAULT_NAMESPACE.into(),
            queue: "sim".into(),
            kind: "sim".into(),
            priority: 0,
            spec: TaskSpec::Noop,
            max_attempts: 1 + opts.retries,
            backoff_ms: 0,
            timeout_ms: None,
            idempotency_key: None,
            placement: Default::default(),
            concurrency: None,
        };
        Submitter {
            def,
            req: 0,
            batch: Vec::new(),
        }
    }

    /// Task `i` (id `i + 1`) arrives with its routing key.
    fn arrive(&mut self, i: usize, key: u32, queues: &[QueueWeight]) {
        let spec = PlacementSpec {
            key: Some(format!("key-{key}")),
            ..PlacementSpec::default()
        };
        let mut def = self.def.clone();
        if let Some(q) = queues::queue_of(queues, i) {
            def.queue = q.name.clone();
        }
        let task = NewTask {
            id: TaskId(i as u128 + 1),
            def,
            not_before: None,
        };
        self.batch.push((task, spec));
    }

    fn flush(&mut self, core: &mut Coordinator, now: Micros, fx: &mut Effects) {
        if !self.batch.is_empty() {
            self.req += 1;
            let tasks = std::mem::take(&mut self.batch);
            core.handle(
                now,
                Input::SubmitPlaced {
                    req: self.req,
                    tasks,
                },
                fx,
            );
        }
    }
}

impl<'a> Sim<'a> {
    fn new(opts: &'a SimOptions, strategy: SimStrategy, wl: &Workload) -> Sim<'a> {
        let mut core = coordinator(opts, strategy);
        let (workers, truth) = sim_workers(opts);
        if strategy == SimStrategy::Oracle {
            core.set_ranker(Some(Box::new(Oracle::new(truth, opts.adaptive.clone()))));
        }
        Sim {
            opts,
            core,
            workers,
            base: wl.base.clone(),
            submitted: wl.arrivals.clone(),
            ended: vec![None; opts.tasks],
            started: vec![None; opts.tasks],
            extra: BTreeMap::new(),
            events: BinaryHeap::new(),
            seq: 0,
            dirty: Vec::new(),
        }
    }
}

impl Sim<'_> {
    /// Every worker joins at time 0.
    fn join_workers(&mut self, fx: &mut Effects) {
        for q in &self.opts.queues {
            let config = drover_core::QueueConfig {
                name: q.name.clone(),
                weight: q.weight,
                ..drover_core::QueueConfig::default()
            };
            self.core
                .handle(0, Input::ConfigureQueue { req: 0, config }, fx);
        }
        for i in 0..self.workers.len() {
            let (session, info) = (self.workers[i].session, self.workers[i].info.clone());
            let join = Input::WorkerJoin {
                req: 0,
                session,
                info,
                held: vec![],
            };
            self.core.handle(0, join, fx);
        }
        self.apply(0, fx);
    }

    /// The next event or core timer; `None` once neither is left (timers far beyond any
    /// simulated run, such as the leases, do not count).
    fn next_instant(&self) -> Option<Micros> {
        let next_ev = self.events.peek().map(|Reverse((t, _, _))| *t);
        match (next_ev, self.core.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (Some(a), None) => Some(a),
            (None, Some(b)) if b < (1 << 50) => Some(b),
            _ => None,
        }
    }

    /// The next event at `now`, if any is left.
    fn pop_due(&mut self, now: Micros) -> Option<Ev> {
        match self.events.peek() {
            Some(Reverse((t, _, _))) if *t == now => self.events.pop().map(|Reverse(e)| e.2),
            _ => None,
        }
    }

    /// Everything that happens at `now`: its events, then timers and dispatch, as the
    /// server's driver does after a batch.
    fn run_instant(&mut self, now: Micros, wl: &Workload, sub: &mut Submitter, fx: &mut Effects) {
        while let Some(ev) = self.pop_due(now) {
            match ev {
                Ev::Arrive(i) => sub.arrive(i, wl.keys[i], &self.opts.queues),
                Ev::Finish {
                    worker,
                    task,
                    attempt,
                    lease,
                    ok,
                } => {
                    sub.flush(&mut self.core, now, fx);
                    let attempt = AttemptRef {
                        task_id: task,
                        attempt,
                        lease: drover_core::LeaseToken(lease),
                    };
                    self.finish(now, worker, attempt, ok, fx);
                }
            }
        }
        sub.flush(&mut self.core, now, fx);
        // Timers (retry backoff) and dispatch.
        self.core.handle_timeout(now, fx);
        self.apply(now, fx);
        self.start_work(now, fx);
        self.apply(now, fx);
        if self.opts.check_invariants {
            if let Err(e) = self.core.check_invariants() {
                panic!("invariant broken at {now}: {e}");
            }
        }
    }

    /// A worker reports an attempt finished; its slot is free for queued work.
    fn finish(
        &mut self,
        now: Micros,
        worker: usize,
        attempt: AttemptRef,
        ok: bool,
        fx: &mut Effects,
    ) {
        let w = &mut self.workers[worker];
        w.running -= 1;
        let session = w.session;
        self.dirty.push(worker);
        let outcome = Outcome {
            kind: if ok {
                AttemptOutcome::Succeeded
            } else {
                AttemptOutcome::Failed
            },
            exit_code: Some(if ok { 0 } else { 1 }),
            error: None,
            result: None,
        };
        let finished = Input::Finished {
            session,
            attempt,
            outcome,
        };
        self.core.handle(now, finished, fx);
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn report(opts: &SimOptions, strategy: SimStrategy, sim: &Sim<'_>) -> SimReport {
    let mut times: Vec<f64> = Vec::with_capacity(sim.ended.len());
    let mut failed = 0;
    let mut last: Micros = 0;
    for (i, e) in sim.ended.iter().enumerate() {
        if let Some((at, ok)) = e {
            times.push((at - sim.submitted[i]) as f64 / 1e6);
            if !ok {
                failed += 1;
            }
            last = last.max(*at);
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if times.is_empty() {
            return 0.0;
        }
        let rank = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len());
        times[rank - 1]
    };
    let mean = if times.is_empty() {
        0.0
    } else {
        times.iter().sum::<f64>() / times.len() as f64
    };
    let first = sim.submitted.iter().copied().min().unwrap_or(0);
    let makespan_us = (last - first).max(1);
    SimReport {
        strategy: strategy.to_string(),
        mean: round6(mean),
        p50: round6(pct(0.50)),
        p99: round6(pct(0.99)),
        makespan: round6(makespan_us as f64 / 1e6),
        tasks: times.len(),
        failed,
        attempts: sim.workers.iter().map(|w| w.attempts).sum(),
        offered_load: opts.load().map(round6),
        queues: queues::report(&opts.queues, &sim.submitted, &sim.started, &sim.ended),
        workers: sim
            .workers
            .iter()
            .map(|w| WorkerReport {
                name: w.info.name.clone(),
                speed: w.speed,
                slots: w.info.slots,
                fail_rate: w.fail,
                utilisation: round6(
                    w.busy_us as f64 / (w.info.slots.max(1) as f64 * makespan_us as f64),
                ),
                attempts: w.attempts,
                learned_mean: (strategy == SimStrategy::Core(drover_core::Strategy::Adaptive))
                    .then(|| {
                        sim.core
                            .placement_state()
                            .adaptive
                            .stats(&w.info.name, "sim")
                    })
                    .flatten()
                    .map(|s| round6(s.mean_us / 1e6)),
            })
            .collect(),
    }
}

/// The reports as a JSON array (`-o json`): one object per strategy with at least
/// `strategy`, `mean`, `p50`, `p99` and `makespan`.
pub fn render_json(reports: &[SimReport]) -> String {
    let mut s = serde_json::to_string_pretty(reports).expect("plain data serializes");
    s.push('\n');
    s
}

/// A table for people: one row per strategy, then each strategy's utilisation per worker.
pub fn render_text(opts: &SimOptions, reports: &[SimReport]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "drover sim: workers {} ({} workers), {} tasks, arrival {}, duration {}, fail rate {}, prefetch {}, seed {}",
        WorkerGroup::list_to_string(&opts.workers),
        opts.workers.iter().map(|g| g.count).sum::<u32>(),
        opts.tasks,
        match (opts.arrival, opts.load()) {
            (Some(r), Some(l)) => format!("{r}/s (offered load {:.0}%)", l * 100.0),
            _ => "all at once".into(),
        },
        opts.duration,
        opts.fail_rate,
        opts.prefetch,
        opts.seed,
    );
    let _ = writeln!(
        out,
        "{:<16} {:>10} {:>10} {:>10} {:>11} {:>7}  utilisation min/mean/max",
        "strategy", "mean", "p50", "p99", "makespan", "failed"
    );
    for r in reports {
        let u: Vec<f64> = r.workers.iter().map(|w| w.utilisation).collect();
        let (lo, hi) = u
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        let avg = u.iter().sum::<f64>() / u.len().max(1) as f64;
        let _ = writeln!(
            out,
            "{:<16} {:>10.3} {:>10.3} {:>10.3} {:>11.1} {:>7}  {:.2}/{:.2}/{:.2}",
            r.strategy, r.mean, r.p50, r.p99, r.makespan, r.failed, lo, avg, hi
        );
    }
    if !opts.queues.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<16} {:<10} {:>6} {:>12} {:>12} {:>10}",
            "strategy", "queue", "weight", "weight share", "start share", "mean"
        );
        for r in reports {
            queues::render(&mut out, &r.strategy, &r.queues);
        }
    }
    let _ = writeln!(out, "\nutilisation per worker (speed×slots: busy fraction)");
    for r in reports {
        let cells: Vec<String> = r
            .workers
            .iter()
            .map(|w| format!("{}({}x{}) {:.2}", w.name, w.speed, w.slots, w.utilisation))
            .collect();
        let _ = writeln!(out, "{:<16} {}", r.strategy, cells.join("  "));
    }
    out
}
