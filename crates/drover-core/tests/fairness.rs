//! Fair dispatch across queues: a queue whose tasks cannot be placed never delays another
//! queue's placeable tasks; backlogged queues share starts by weight; and dispatch is work
//! conserving (no placeable task waits while a feasible worker has a free slot).

mod harness;

use std::collections::BTreeMap;

use drover_core::*;
use harness::*;
use proptest::prelude::*;
use proptest::strategy::Strategy as PropStrategy;

fn def(queue: &str, kind: &str) -> TaskDef {
    TaskDef {
        kind: kind.into(),
        ..exec_def(queue)
    }
}

fn kinds(name: &str, slots: u32, kinds: &[&str]) -> WorkerInfo {
    WorkerInfo {
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        ..worker(name, slots, 0)
    }
}

fn weigh(b: &mut Bench, queue: &str, weight: u32) {
    let req = b.fresh_req();
    let config = QueueConfig {
        name: queue.into(),
        weight,
        ..QueueConfig::default()
    };
    b.input(Input::ConfigureQueue { req, config });
}

#[test]
fn a_hundred_thousand_unplaceable_tasks_do_not_delay_another_queue() {
    let mut b = Bench::new(41);
    b.join(1, kinds("cpu-1", 1, &["cpu"]));
    let tasks: Vec<NewTask> = (0..100_000)
        .map(|_| NewTask {
            id: b.fresh_id(),
            def: def("backlog", "gpu"),
            not_before: None,
        })
        .collect();
    let req = b.fresh_req();
    b.input(Input::Submit { req, tasks });
    // The free slot is taken by the other queue's task in the same step it is submitted.
    let other = b.submit_def(def("other", "cpu"));
    assert!(b.state(other).is_leased());
    // And again after it ends: the next one starts when the slot frees up.
    let next = b.submit_def(def("other", "cpu"));
    assert_eq!(b.state(next), TaskState::Queued, "one slot, taken");
    b.run_ok(1, other);
    assert!(b.state(next).is_leased());
    assert_eq!(
        b.core
            .why_waiting(b.tasks.keys().next().copied().unwrap())
            .as_deref(),
        Some("no worker has kind gpu")
    );
}

#[test]
fn backlogged_queues_share_starts_by_weight() {
    let mut b = Bench::new(42);
    let weights = [("a", 1), ("b", 2), ("c", 5)];
    for (q, w) in weights {
        weigh(&mut b, q, w);
    }
    let mut queue_of = BTreeMap::new();
    for (q, _) in weights {
        for _ in 0..600 {
            queue_of.insert(b.submit_def(def(q, "default")), q);
        }
    }
    b.join(1, worker("w", 4, 0));
    let mut started: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..800 {
        let running: Vec<TaskId> = b
            .tasks
            .values()
            .filter(|t| t.state.is_leased())
            .map(|t| t.id)
            .collect();
        let id = running[0];
        *started.entry(queue_of[&id]).or_default() += 1;
        b.run_ok(1, id);
    }
    let total: usize = started.values().sum();
    for (q, w) in weights {
        let share = started[q] as f64 / total as f64;
        let want = w as f64 / 8.0;
        assert!(
            (share - want).abs() <= 0.05 * want.max(0.1),
            "queue {q}: {share:.3} of starts, weight share {want:.3} ({started:?})"
        );
    }
}

#[derive(Clone, Debug)]
enum Op {
    Submit { queue: u8, kind: u8, n: u8 },
    Join { w: u8, slots: u32, kind: Option<u8> },
    Leave { w: u8 },
    Finish { pick: usize },
    Weight { queue: u8, weight: u32 },
}

fn op() -> impl PropStrategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..3u8, 1..6u8).prop_map(|(queue, kind, n)| Op::Submit { queue, kind, n }),
        2 => (0..3u8, 1..4u32, proptest::option::of(0..3u8))
            .prop_map(|(w, slots, kind)| Op::Join { w, slots, kind }),
        1 => (0..3u8).prop_map(|w| Op::Leave { w }),
        4 => any::<usize>().prop_map(|pick| Op::Finish { pick }),
        1 => (0..3u8, 1..5u32).prop_map(|(queue, weight)| Op::Weight { queue, weight }),
    ]
}

/// After every step: no queued task waits while a worker that could take it has a free slot.
fn work_conserving(b: &Bench) -> Result<(), String> {
    let workers = b.core.workers();
    for t in b.tasks.values().filter(|t| t.state == TaskState::Queued) {
        for w in &workers {
            let free = w.held < w.info.credit_limit();
            if free && w.status == WorkerStatus::Alive && w.info.accepts_kind(&t.def.kind) {
                return Err(format!(
                    "{} ({} in {}) waits while {} has a free slot",
                    t.id, t.def.kind, t.def.queue, w.info.name
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dispatch_is_work_conserving(ops in proptest::collection::vec(op(), 1..60)) {
        let mut b = Bench::new(43);
        // A slot's current session and worker name (a name is never reused: a rejoin would
        // inherit the attempts of the session it replaces).
        let mut sessions: [Option<(SessionId, String)>; 3] = [None, None, None];
        let mut next_session = 1;
        for op in ops {
            match op {
                Op::Submit { queue, kind, n } => {
                    for _ in 0..n {
                        b.submit_def(def(&format!("q{queue}"), &format!("k{kind}")));
                    }
                }
                Op::Join { w, slots, kind } => {
                    if sessions[w as usize].is_none() {
                        let k = kind.map(|k| format!("k{k}"));
                        let name = format!("w{next_session}");
                        let info = WorkerInfo {
                            kinds: k.into_iter().collect(),
                            ..worker(&name, slots, 0)
                        };
                        b.join(next_session, info);
                        sessions[w as usize] = Some((next_session, name));
                        next_session += 1;
                    }
                }
                Op::Leave { w } => {
                    if let Some((session, _)) = sessions[w as usize].take() {
                        b.input(Input::WorkerLeave { session });
                    }
                }
                Op::Finish { pick } => {
                    let leased: Vec<(TaskId, String)> = b
                        .tasks
                        .values()
                        .filter(|t| t.state.is_leased())
                        .map(|t| (t.id, t.worker.clone().unwrap()))
                        .collect();
                    if leased.is_empty() {
                        continue;
                    }
                    let (id, name) = &leased[pick % leased.len()];
                    let live = sessions.iter().flatten().find(|(_, n)| n == name);
                    if let Some((session, _)) = live {
                        b.run_ok(*session, *id);
                    }
                }
                Op::Weight { queue, weight } => weigh(&mut b, &format!("q{queue}"), weight),
            }
            prop_assert!(b.core.check_invariants().is_ok());
            if let Err(e) = work_conserving(&b) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

fn keyed(queue: &str, key: &str, max: u32) -> TaskDef {
    TaskDef {
        concurrency: Some(KeyLimit {
            key: key.into(),
            max,
        }),
        ..exec_def(queue)
    }
}

#[test]
fn a_concurrency_key_runs_at_most_its_limit_and_never_blocks_others() {
    let mut b = Bench::new(44);
    b.join(1, worker("w", 8, 0));
    // Customer 42's tasks in two queues share its limit of 2.
    let c42: Vec<TaskId> = (0..5)
        .map(|i| b.submit_def(keyed(if i % 2 == 0 { "a" } else { "b" }, "customer-42", 2)))
        .collect();
    let others: Vec<TaskId> = (0..3).map(|_| b.submit_def(def("a", "default"))).collect();
    let running =
        |b: &Bench, ids: &[TaskId]| ids.iter().filter(|id| b.state(**id).is_leased()).count();
    assert_eq!(running(&b, &c42), 2);
    assert_eq!(
        running(&b, &others),
        3,
        "a limited key holds up nobody else"
    );
    let parked = c42[2];
    assert_eq!(
        b.core.why_waiting(parked).as_deref(),
        Some("waiting for concurrency key customer-42: 2 of at most 2 already running")
    );
    // One ends: the next of the key, in submission order, starts.
    b.run_ok(1, c42[0]);
    assert!(b.state(parked).is_leased());
    assert_eq!(running(&b, &c42), 2);
    // The same key in another namespace is another key.
    let elsewhere = b.submit_def(TaskDef {
        namespace: "team-b".into(),
        ..keyed("a", "customer-42", 2)
    });
    assert!(b.state(elsewhere).is_leased());
    // After a restart the limit still holds.
    let mut r = b.restarted(45);
    r.join(1, worker("w", 8, 0));
    assert!(r.core.check_invariants().is_ok());
    assert_eq!(r.state(c42[3]), TaskState::Queued);
}

#[test]
fn a_rate_limited_queue_starts_no_more_than_its_rate_and_others_go_on() {
    let mut b = Bench::new(46);
    let req = b.fresh_req();
    let config = QueueConfig {
        name: "api".into(),
        rate: Some("10/s".parse().unwrap()),
        ..QueueConfig::default()
    };
    b.input(Input::ConfigureQueue { req, config });
    b.join(1, worker("w", 100, 0));
    let limited: Vec<TaskId> = (0..30)
        .map(|_| b.submit_def(def("api", "default")))
        .collect();
    let other: Vec<TaskId> = (0..5)
        .map(|_| b.submit_def(def("other", "default")))
        .collect();
    // Starts: assignments sent for the limited queue's tasks (a reclaimed lease's retry counts).
    let started = |b: &Bench| {
        b.sent
            .iter()
            .filter(|(_, m)| matches!(m, ToWorker::Assign(a) if limited.contains(&a.task_id)))
            .count()
    };
    assert_eq!(
        started(&b),
        10,
        "a new limit starts with one period's burst"
    );
    assert!(
        other.iter().all(|id| b.state(*id).is_leased()),
        "other queues are not held up"
    );
    // The next token is a timer: the core wakes up for it.
    assert_eq!(b.core.poll_timeout(), Some(b.now + 100_000));
    b.advance_ms(100);
    assert_eq!(started(&b), 11);
    b.advance_ms(900);
    assert_eq!(started(&b), 20, "10 per second");
    // A restart starts the bucket empty: the rate holds across it.
    let mut r = b.restarted(47);
    let before = started(&r);
    r.join(1, worker("w", 100, 0));
    assert_eq!(started(&r), before, "no burst after a restart");
    r.advance_ms(100);
    assert_eq!(started(&r), before + 1);
}
