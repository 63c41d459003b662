//! Measures the commit hot path: steady-state batches of ~10,000 writes shaped like the
//! coordinator's (per task: 1 insert, 3 updates, 3 attempt writes, 4 events, spread over four
//! consecutive batches). Prints the figures; asserts nothing about time.
//!
//! For meaningful numbers run it optimized:
//! `cargo test -p drover-store --release --test commit_perf -- --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_core::{
    AttemptOutcome, AttemptRecord, Event, EventKind, LeaseToken, TaskDef, TaskId, TaskRecord,
    TaskSpec, TaskState, Write,
};
use drover_store::{SqliteStore, Store};

/// Tasks per lifecycle stage per batch: 11 writes each, so ~10,000 writes per batch.
const GROUP: u64 = 910;
const BATCHES: u64 = 24;
/// The first batches do not hold all four stages yet.
const WARMUP: u64 = 4;

fn def() -> Arc<TaskDef> {
    Arc::new(TaskDef {
        namespace: drover_core::DEFAULT_NAMESPACE.into(),
        queue: "bench".into(),
        kind: "noop".into(),
        priority: 0,
        spec: TaskSpec::Noop,
        max_attempts: 3,
        backoff_ms: 1_000,
        timeout_ms: Some(60_000),
        idempotency_key: None,
        placement: Default::default(),
        concurrency: None,
    })
}

struct Gen {
    def: Arc<TaskDef>,
    event_seq: u64,
    now: i64,
}

impl Gen {
    fn id(i: u64) -> TaskId {
        // UUIDv7-like: millisecond-ish prefix, then a counter.
        TaskId(((1_700_000_000_000u128 + i as u128) << 80) | 0x7000_8000_0000_0000_0000 | i as u128)
    }

    fn record(&self, i: u64, state: TaskState) -> TaskRecord {
        let leased = state.is_leased();
        TaskRecord {
            id: Gen::id(i),
            seq: i,
            def: self.def.clone(),
            state,
            attempt: u32::from(state != TaskState::Queued),
            lost: 0,
            not_before: None,
            worker: (state != TaskState::Queued).then(|| format!("worker-{}", i % 8)),
            lease: leased.then_some(LeaseToken(0x5eed_0000_0000_0000_0000_0000_0000 | i as u128)),
            created_at: 1_000,
            updated_at: self.now,
            started_at: matches!(state, TaskState::Running | TaskState::Succeeded)
                .then_some(self.now),
            finished_at: (state == TaskState::Succeeded).then_some(self.now),
            exit_code: (state == TaskState::Succeeded).then_some(0),
            error: None,
            result: None,
        }
    }

    fn event(&mut self, t: &TaskRecord) -> Write {
        self.event_seq += 1;
        Write::Event(Event {
            seq: self.event_seq,
            at: self.now,
            kind: EventKind::Task {
                task_id: t.id,
                namespace: t.def.namespace.clone(),
                queue: t.def.queue.clone(),
                state: t.state,
                attempt: t.attempt,
                worker: t.worker.clone(),
                reason: None,
                workflow: None,
                result_bytes: None,
            },
        })
    }

    fn attempt(&self, t: &TaskRecord) -> Write {
        Write::Attempt(AttemptRecord {
            task_id: t.id,
            attempt: 1,
            worker: t.worker.clone().unwrap_or_default(),
            assigned_at: 1_000,
            started_at: t.started_at,
            finished_at: t.finished_at,
            outcome: (t.state == TaskState::Succeeded).then_some(AttemptOutcome::Succeeded),
            exit_code: t.exit_code,
            error: None,
        })
    }

    /// Batch `k`: submits group k, assigns k-1, starts k-2, finishes k-3.
    fn batch(&mut self, k: u64) -> Vec<Write> {
        self.now += 1_000;
        let mut w = Vec::with_capacity(11 * GROUP as usize);
        let stages = [
            (0, TaskState::Queued),
            (1, TaskState::Assigned),
            (2, TaskState::Running),
            (3, TaskState::Succeeded),
        ];
        for (lag, state) in stages {
            let Some(group) = k.checked_sub(lag) else {
                continue;
            };
            for i in group * GROUP..(group + 1) * GROUP {
                let t = self.record(i, state);
                let ev = self.event(&t);
                if state == TaskState::Queued {
                    w.push(Write::Task {
                        record: t,
                        is_new: true,
                    });
                } else {
                    w.push(self.attempt(&t));
                    w.push(Write::Task {
                        record: t,
                        is_new: false,
                    });
                }
                w.push(ev);
            }
        }
        w
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("perf.db")).unwrap();
    let mut g = Gen {
        def: def(),
        event_seq: 0,
        now: 1_000_000,
    };
    let mut times: Vec<(usize, Duration)> = Vec::new();
    let mut cpu = Duration::ZERO;
    for k in 0..BATCHES {
        let batch = g.batch(k);
        let n = batch.len();
        let cpu_before = process_cpu();
        let started = Instant::now();
        store.commit(batch).await.unwrap();
        let took = started.elapsed();
        if k >= WARMUP {
            times.push((n, took));
            cpu += process_cpu().saturating_sub(cpu_before);
        }
    }
    times.sort_by_key(|&(_, d)| d);
    let (n, median) = times[times.len() / 2];
    let per_sec = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "commit of a {n}-write batch ({GROUP} tasks per stage): median {:.1} ms = {:.0} writes/s \
         (~{:.0} task lifecycles/s); min {:.1} ms, max {:.1} ms over {} batches{}",
        median.as_secs_f64() * 1e3,
        per_sec(n, median),
        per_sec(GROUP as usize, median),
        times[0].1.as_secs_f64() * 1e3,
        times[times.len() - 1].1.as_secs_f64() * 1e3,
        times.len(),
        if cfg!(debug_assertions) {
            " [debug build: run with --release for real figures]"
        } else {
            ""
        }
    );

    if cpu > Duration::ZERO {
        // Wall time on a busy machine includes waiting for a core; CPU time does not.
        println!(
            "  CPU time per commit (whole process, mean): {:.1} ms",
            cpu.as_secs_f64() * 1e3 / times.len() as f64
        );
    }

    // Sanity: everything landed.
    let counts = store.count_by_state(None).await.unwrap();
    assert_eq!(counts[&TaskState::Queued], GROUP);
    assert_eq!(counts[&TaskState::Succeeded], (BATCHES - 3) * GROUP);
}

/// User + system CPU time of this process so far (Linux; zero elsewhere). Clock-tick
/// resolution (10 ms), so only a sum over many commits means anything.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}
