//! The core's decision path in memory: submit → assign → started → finished for every task,
//! through `Coordinator::handle` as the driver feeds it (a batch of inputs, then
//! `handle_timeout`, which dispatches). No store, no I/O: what the core itself costs per task.
//!
//! `cargo bench -p drover-core --bench decide`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use drover_core::*;

const START: Micros = 1_700_000_000_000_000;

fn def() -> TaskDef {
    TaskDef {
        namespace: DEFAULT_NAMESPACE.into(),
        queue: "q".into(),
        kind: "default".into(),
        priority: 0,
        spec: TaskSpec::Exec {
            argv: vec!["true".into()],
            env: vec![],
            cwd: None,
            secret_env: vec![],
        },
        max_attempts: 1,
        backoff_ms: 100,
        timeout_ms: None,
        idempotency_key: None,
        placement: Default::default(),
        concurrency: None,
    }
}

/// A coordinator with `workers` joined workers of `slots` slots (prefetch = slots), as the
/// driver would have it: each input handled, then the timers and dispatch once per batch.
struct Core {
    core: Coordinator,
    now: Micros,
    next_id: u128,
    next_req: u64,
}

impl Core {
    fn new(workers: u64, slots: u32) -> Core {
        let mut c = Core {
            core: Coordinator::new(CoreConfig::default(), [7; 32], START, Snapshot::default()),
            now: START,
            next_id: 1,
            next_req: 1,
        };
        let joins = (1..=workers)
            .map(|session| Input::WorkerJoin {
                req: session,
                session,
                info: WorkerInfo {
                    name: format!("w{session}"),
                    slots,
                    prefetch: slots,
                    ..WorkerInfo::default()
                },
                held: vec![],
            })
            .collect();
        c.next_req = workers + 1;
        c.batch(joins);
        c
    }

    /// One batch of the driver: every input, then the timers (which dispatch); the effects
    /// as the driver would commit and send them.
    fn batch(&mut self, inputs: Vec<Input>) -> Effects {
        self.now += 100;
        let mut fx = Effects::default();
        for input in inputs {
            self.core.handle(self.now, input, &mut fx);
        }
        self.core.handle_timeout(self.now, &mut fx);
        fx
    }

    /// Submits `n` tasks in one request and runs every one to its end: the workers report
    /// each assignment's start and finish in one batch per round, as they do over the wire.
    fn run(&mut self, n: usize) -> usize {
        let tasks = (0..n)
            .map(|_| {
                self.next_id += 1;
                NewTask {
                    id: TaskId(self.next_id),
                    def: def(),
                    not_before: None,
                }
            })
            .collect();
        let req = self.next_req;
        self.next_req += 1;
        let mut fx = self.batch(vec![Input::Submit { req, tasks }]);
        let mut finished = 0;
        while finished < n {
            let mut reports = Vec::new();
            for (session, msg) in fx.sends.drain(..) {
                if let ToWorker::Assign(a) = msg {
                    let attempt = AttemptRef {
                        task_id: a.task_id,
                        attempt: a.attempt,
                        lease: a.lease,
                    };
                    reports.push(Input::Started { session, attempt });
                    reports.push(Input::Finished {
                        session,
                        attempt,
                        outcome: Outcome {
                            kind: AttemptOutcome::Succeeded,
                            exit_code: Some(0),
                            error: None,
                            result: None,
                        },
                    });
                    finished += 1;
                }
            }
            assert!(!reports.is_empty(), "no assignment: {finished} of {n}");
            black_box(&fx.writes);
            fx = self.batch(reports);
        }
        black_box(&fx.writes);
        finished
    }
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("submit_assign_start_finish");
    for (tasks, workers, slots) in [(1, 4, 64), (1_000, 4, 64), (1_000, 16, 8)] {
        group.throughput(Throughput::Elements(tasks as u64));
        let id = BenchmarkId::from_parameter(format!("{tasks}_tasks_{workers}x{slots}"));
        group.bench_function(id, |b| {
            b.iter_batched_ref(
                || Core::new(workers, slots),
                |core| core.run(tasks),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();

    // The steady state: one long-lived coordinator whose workers keep taking batches.
    let mut group = c.benchmark_group("steady_state");
    for tasks in [1usize, 1_000] {
        group.throughput(Throughput::Elements(tasks as u64));
        let mut core = Core::new(4, 64);
        group.bench_function(BenchmarkId::from_parameter(tasks), |b| {
            b.iter(|| core.run(tasks));
        });
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
