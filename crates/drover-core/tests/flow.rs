//! Serial and parallel execution through the core: dependencies, per-key order, queue gates,
//! deadlines, idempotency, restart, and random DAGs.

mod harness;

use std::collections::{BTreeMap, BTreeSet};

use drover_core::*;
use harness::*;
use proptest::prelude::{
    any, prop_assert, prop_assert_eq, proptest, ProptestConfig, TestCaseError,
};
use proptest::strategy::Strategy as _;

fn after(ids: &[TaskId]) -> FlowSpec {
    FlowSpec {
        after: ids.to_vec(),
        ..FlowSpec::default()
    }
}

fn fail(b: &mut Bench, session: SessionId, id: TaskId) {
    let r = b.attempt_ref(id);
    b.finish(session, r, AttemptOutcome::Failed, Some(1));
}

#[test]
fn a_chain_runs_in_order_and_a_failure_skips_the_rest() {
    let mut b = Bench::new(1);
    b.join(1, worker("w1", 4, 0));
    let a = b.submit_def(exec_def("q"));
    let x = b.submit_flow(exec_def("q"), after(&[a])).unwrap();
    let y = b.submit_flow(exec_def("q"), after(&[x])).unwrap();
    assert_eq!(b.state(a), TaskState::Assigned);
    assert_eq!(b.state(x), TaskState::Pending);
    assert_eq!(b.state(y), TaskState::Pending);
    b.run_ok(1, a);
    assert_eq!(b.state(x), TaskState::Assigned);
    assert_eq!(b.state(y), TaskState::Pending);
    fail(&mut b, 1, x);
    assert_eq!(b.state(x), TaskState::Failed);
    assert_eq!(b.state(y), TaskState::Skipped);
    let err = b.tasks[&y].error.clone().unwrap();
    assert!(err.contains(&x.to_string()), "{err}");
    assert!(b.core.check_invariants().is_ok());
}

#[test]
fn run_policy_runs_after_a_failed_upstream() {
    let mut b = Bench::new(2);
    b.join(1, worker("w1", 4, 0));
    let a = b.submit_def(exec_def("q"));
    let x = b
        .submit_flow(
            exec_def("q"),
            FlowSpec {
                after: vec![a],
                on_upstream_failure: UpstreamPolicy::Run,
                ..FlowSpec::default()
            },
        )
        .unwrap();
    fail(&mut b, 1, a);
    assert_eq!(b.state(x), TaskState::Assigned);
    assert_eq!(
        b.core.flow(x).unwrap().upstream_failed,
        Some((a, TaskState::Failed))
    );
}

#[test]
fn upstreams_terminal_at_submit_and_unknown_upstreams() {
    let mut b = Bench::new(3);
    b.join(1, worker("w1", 4, 0));
    let a = b.submit_def(exec_def("q"));
    b.run_ok(1, a);
    let c = b.submit_def(exec_def("q"));
    b.input(Input::Cancel {
        req: 999,
        task_id: c,
    });
    // The shell read their states from the store.
    let ok = b
        .submit_flow_known(exec_def("q"), after(&[a]), vec![(a, TaskState::Succeeded)])
        .unwrap();
    assert_eq!(b.state(ok), TaskState::Assigned);
    let skipped = b
        .submit_flow_known(
            exec_def("q"),
            after(&[a, c]),
            vec![(a, TaskState::Succeeded), (c, TaskState::Cancelled)],
        )
        .unwrap();
    assert_eq!(b.state(skipped), TaskState::Skipped);
    // Not active and no state given: refused, nothing stored.
    let before = b.tasks.len();
    assert_eq!(b.submit_flow(exec_def("q"), after(&[TaskId(77_777)])), None);
    assert!(matches!(
        b.replies.last().unwrap().1,
        Reply::SubmitRefused(SubmitError::UnknownUpstream(TaskId(77_777)))
    ));
    assert_eq!(b.tasks.len(), before);
}

#[test]
fn a_skip_cascades_through_a_long_chain_without_recursion() {
    let mut b = Bench::new(4);
    let a = b.submit_def(exec_def("q"));
    let mut prev = a;
    let mut chain = vec![];
    for _ in 0..2_000 {
        prev = b.submit_flow(exec_def("q"), after(&[prev])).unwrap();
        chain.push(prev);
    }
    let req = b.fresh_req();
    b.input(Input::Cancel { req, task_id: a });
    for id in chain {
        assert_eq!(b.state(id), TaskState::Skipped);
    }
    assert_eq!(b.core.active_counts().values().sum::<usize>(), 0);
}

#[test]
fn serial_keys_run_one_at_a_time_in_submission_order() {
    let mut b = Bench::new(5);
    b.join(1, worker("w1", 8, 0));
    let keyed = |k: &str| FlowSpec {
        serial_key: Some(k.into()),
        ..FlowSpec::default()
    };
    let k1: Vec<TaskId> = (0..3)
        .map(|_| b.submit_flow(exec_def("q"), keyed("k1")).unwrap())
        .collect();
    let k2: Vec<TaskId> = (0..2)
        .map(|_| b.submit_flow(exec_def("q"), keyed("k2")).unwrap())
        .collect();
    // One of each key runs; different keys in parallel.
    assert_eq!(b.state(k1[0]), TaskState::Assigned);
    assert_eq!(b.state(k2[0]), TaskState::Assigned);
    assert_eq!(b.state(k1[1]), TaskState::Queued);
    assert_eq!(b.state(k1[2]), TaskState::Queued);
    b.run_ok(1, k1[0]);
    assert_eq!(b.state(k1[1]), TaskState::Assigned);
    assert_eq!(b.state(k1[2]), TaskState::Queued);
    // A failed attempt with retries keeps the key through its backoff.
    let r = b.attempt_ref(k1[1]);
    b.finish(1, r, AttemptOutcome::Succeeded, Some(0));
    b.run_ok(1, k1[2]);
    b.run_ok(1, k2[0]);
    b.run_ok(1, k2[1]);
    let order: Vec<TaskId> = b
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Task {
                task_id,
                state: TaskState::Assigned,
                ..
            } if k1.contains(task_id) => Some(*task_id),
            _ => None,
        })
        .collect();
    assert_eq!(order, k1);
}

#[test]
fn a_serial_key_holds_through_retries() {
    let mut b = Bench::new(6);
    b.join(1, worker("w1", 8, 0));
    let mut def = exec_def("q");
    def.max_attempts = 2;
    let spec = FlowSpec {
        serial_key: Some("k".into()),
        ..FlowSpec::default()
    };
    let first = b.submit_flow(def, spec.clone()).unwrap();
    let second = b.submit_flow(exec_def("q"), spec).unwrap();
    fail(&mut b, 1, first);
    assert_eq!(b.state(first), TaskState::Pending);
    assert_eq!(b.state(second), TaskState::Queued);
    b.advance_ms(1_000);
    assert_eq!(b.state(first), TaskState::Assigned);
    assert_eq!(b.state(second), TaskState::Queued);
    b.run_ok(1, first);
    assert_eq!(b.state(second), TaskState::Assigned);
}

fn configure(b: &mut Bench, config: QueueConfig) {
    let req = b.fresh_req();
    b.input(Input::ConfigureQueue { req, config });
}

#[test]
fn queue_concurrency_and_pause() {
    let mut b = Bench::new(7);
    b.join(1, worker("w1", 8, 0));
    configure(
        &mut b,
        QueueConfig {
            name: "q".into(),
            concurrency: Some(2),
            ..QueueConfig::default()
        },
    );
    let ids = b.submit(5);
    let leased = |b: &Bench| ids.iter().filter(|i| b.state(**i).is_leased()).count();
    assert_eq!(leased(&b), 2);
    b.run_ok(1, ids[0]);
    assert_eq!(leased(&b), 2);
    assert_eq!(b.state(ids[2]), TaskState::Assigned);
    configure(
        &mut b,
        QueueConfig {
            name: "q".into(),
            concurrency: Some(2),
            paused: true,
            ..QueueConfig::default()
        },
    );
    b.run_ok(1, ids[1]);
    b.run_ok(1, ids[2]);
    assert_eq!(leased(&b), 0);
    assert_eq!(b.state(ids[3]), TaskState::Queued);
    let stats = b.core.queue_stats();
    let q = stats.iter().find(|s| s.name == "q").unwrap();
    assert_eq!((q.depth, q.running, q.config.paused), (2, 0, true));
    configure(
        &mut b,
        QueueConfig {
            name: "q".into(),
            concurrency: None,
            ..QueueConfig::default()
        },
    );
    assert_eq!(leased(&b), 2);
    assert_eq!(b.queues[&Scoped::default_ns("q")].concurrency, None);
}

#[test]
fn lowering_a_queue_limit_parks_the_least_urgent_ready_tasks() {
    let mut b = Bench::new(9);
    let limit = |b: &mut Bench, concurrency| {
        let name = "q".into();
        let config = QueueConfig {
            name,
            concurrency,
            ..QueueConfig::default()
        };
        configure(b, config);
    };
    limit(&mut b, Some(3));
    // No worker yet: all three are ready, admitted by the queue.
    let ids = b.submit(4);
    limit(&mut b, Some(1));
    assert_eq!(
        b.core.why_waiting(ids[1]).as_deref(),
        Some("queue q is at its concurrency limit (1)")
    );
    b.join(1, worker("w1", 8, 0));
    let leased = |b: &Bench| ids.iter().filter(|i| b.state(**i).is_leased()).count();
    assert_eq!(leased(&b), 1, "only the first, by submission order");
    assert!(b.state(ids[0]).is_leased());
    b.run_ok(1, ids[0]);
    assert!(b.state(ids[1]).is_leased());
    assert_eq!(leased(&b), 1);
}

#[test]
fn a_deadline_expires_a_task_that_did_not_start() {
    let mut b = Bench::new(8);
    let id = b
        .submit_flow(
            exec_def("q"),
            FlowSpec {
                deadline: Some(b.now + 5_000_000),
                ..FlowSpec::default()
            },
        )
        .unwrap();
    assert_eq!(b.core.poll_timeout(), Some(b.now + 5_000_000));
    b.advance_ms(5_000);
    assert_eq!(b.state(id), TaskState::Expired);
    // A task that started in time is not expired.
    b.join(1, worker("w1", 1, 0));
    let started = b
        .submit_flow(
            exec_def("q"),
            FlowSpec {
                deadline: Some(b.now + 1_000_000),
                ..FlowSpec::default()
            },
        )
        .unwrap();
    assert_eq!(b.state(started), TaskState::Assigned);
    b.advance_ms(500);
    let r = b.attempt_ref(started);
    b.input(Input::Started {
        session: 1,
        attempt: r,
    });
    b.advance_ms(600);
    assert_eq!(b.state(started), TaskState::Running);
}

#[test]
fn idempotency_keys_return_the_original_task_even_after_it_finished() {
    let mut b = Bench::new(9);
    b.join(1, worker("w1", 4, 0));
    let mut def = exec_def("q");
    def.idempotency_key = Some("order-42".into());
    let a = b.submit_def(def.clone());
    let again = b.fresh_id();
    let req = b.fresh_req();
    b.input(Input::Submit {
        req,
        tasks: vec![NewTask {
            id: again,
            def: def.clone(),
            not_before: None,
        }],
    });
    assert_eq!(b.replies.last().unwrap().1, Reply::Submitted(vec![a]));
    b.run_ok(1, a);
    let via_flow = b.submit_flow(def.clone(), FlowSpec::default()).unwrap();
    assert_eq!(via_flow, a);
    // After a restart, from the store's keys.
    let mut r = Bench::from_snapshot(9, b.now, b.snapshot());
    let id = r.fresh_id();
    let req = r.fresh_req();
    r.input(Input::Submit {
        req,
        tasks: vec![NewTask {
            id,
            def,
            not_before: None,
        }],
    });
    assert_eq!(r.replies.last().unwrap().1, Reply::Submitted(vec![a]));
}

#[test]
fn dependencies_keys_and_gates_survive_a_restart() {
    let mut b = Bench::new(10);
    b.join(1, worker("w1", 4, 0));
    configure(
        &mut b,
        QueueConfig {
            name: "q".into(),
            concurrency: Some(1),
            ..QueueConfig::default()
        },
    );
    let a = b.submit_def(exec_def("q"));
    let x = b.submit_flow(exec_def("q"), after(&[a])).unwrap();
    let k = FlowSpec {
        serial_key: Some("k".into()),
        ..FlowSpec::default()
    };
    let k1 = b.submit_flow(exec_def("k"), k.clone()).unwrap();
    let k2 = b.submit_flow(exec_def("k"), k).unwrap();
    let other = b.submit_def(exec_def("q"));
    assert_eq!(b.state(other), TaskState::Queued);
    // Re-attach by joining with what it holds.
    let mut r2 = Bench::from_snapshot(10, b.now, b.snapshot());
    r2.tasks = b.tasks.clone();
    r2.flows = b.flows.clone();
    r2.queues = b.queues.clone();
    r2.events = b.events.clone();
    let held = vec![r2.attempt_ref(a), r2.attempt_ref(k1)];
    r2.input(Input::WorkerJoin {
        req: 0,
        session: 1,
        info: worker("w1", 4, 0),
        held,
    });
    assert_eq!(r2.state(x), TaskState::Pending);
    assert_eq!(r2.state(k2), TaskState::Queued);
    assert_eq!(r2.state(other), TaskState::Queued, "queue q is full");
    r2.run_ok(1, a);
    // `other` was waiting in the full queue before x became ready: it takes the slot.
    assert_eq!(r2.state(other), TaskState::Assigned);
    assert_eq!(r2.state(x), TaskState::Queued, "queue q is full again");
    r2.run_ok(1, other);
    assert_eq!(r2.state(x), TaskState::Assigned);
    r2.run_ok(1, k1);
    assert_eq!(r2.state(k2), TaskState::Assigned);
}

// ---- random DAGs ----

#[derive(Debug, Clone)]
struct Dag {
    /// Upstreams of each node: indexes of earlier nodes.
    ups: Vec<Vec<usize>>,
    /// Per node: attempts that fail before one succeeds (>= attempts allowed means failed).
    fails: Vec<u32>,
    retries: Vec<u32>,
    workers: u32,
}

fn dag(max: usize) -> impl proptest::strategy::Strategy<Value = Dag> {
    (1..=max, any::<u64>(), 1u32..4).prop_map(|(n, seed, workers)| {
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut ups = Vec::with_capacity(n);
        let mut fails = Vec::with_capacity(n);
        let mut retries = Vec::with_capacity(n);
        for i in 0..n {
            let k = if i == 0 { 0 } else { (next() % 4) as usize };
            let mut u: BTreeSet<usize> = BTreeSet::new();
            for _ in 0..k {
                // Mostly near neighbours, so chains get long.
                let back = 1 + (next() % (i as u64).min(20)) as usize;
                u.insert(i - back.min(i));
            }
            ups.push(u.into_iter().collect());
            fails.push(match next() % 20 {
                0 => 5,
                1 | 2 => 1,
                _ => 0,
            });
            retries.push((next() % 2) as u32);
        }
        Dag {
            ups,
            fails,
            retries,
            workers,
        }
    })
}

fn run_dag(d: &Dag) -> Result<(), TestCaseError> {
    let n = d.ups.len();
    let mut now: Micros = 1_000_000;
    let mut core = Coordinator::new(config(), [7; 32], now, Snapshot::default());
    let mut fx = Effects::default();
    for w in 0..d.workers {
        core.handle(
            now,
            Input::WorkerJoin {
                req: 0,
                session: w as u64 + 1,
                info: worker(&format!("w{w}"), 3, 0),
                held: vec![],
            },
            &mut fx,
        );
    }
    let ids: Vec<TaskId> = (0..n).map(|i| TaskId(1000 + i as u128)).collect();
    let index: BTreeMap<TaskId, usize> = ids.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let tasks = (0..n)
        .map(|i| {
            let mut def = exec_def("q");
            def.max_attempts = 1 + d.retries[i];
            def.backoff_ms = 10;
            FlowTask {
                task: NewTask {
                    id: ids[i],
                    def,
                    not_before: None,
                },
                flow: after(&d.ups[i].iter().map(|&u| ids[u]).collect::<Vec<_>>()),
                upstream_states: vec![],
            }
        })
        .collect();
    core.handle(
        now,
        Input::SubmitFlow {
            req: 1,
            tasks,
            workflow: None,
        },
        &mut fx,
    );
    core.dispatch_now(now, &mut fx);
    let mut state: Vec<TaskState> = vec![TaskState::Pending; n];
    let mut attempts = vec![0u32; n];
    let mut started_after: Vec<bool> = vec![true; n];
    let mut inflight: Vec<(SessionId, AttemptRef)> = vec![];
    let mut steps = 0;
    loop {
        for w in std::mem::take(&mut fx.writes) {
            if let Write::Task { record, .. } = w {
                let i = index[&record.id];
                if record.state == TaskState::Assigned && state[i] != TaskState::Assigned {
                    // No node starts before all its upstreams succeeded.
                    for &u in &d.ups[i] {
                        if state[u] != TaskState::Succeeded {
                            started_after[i] = false;
                        }
                    }
                }
                state[i] = record.state;
            }
        }
        for (s, m) in std::mem::take(&mut fx.sends) {
            if let ToWorker::Assign(a) = m {
                inflight.push((
                    s,
                    AttemptRef {
                        task_id: a.task_id,
                        attempt: a.attempt,
                        lease: a.lease,
                    },
                ));
            }
        }
        fx = Effects::default();
        steps += 1;
        if steps % 97 == 0 {
            core.check_invariants()
                .map_err(|v| TestCaseError::fail(v.to_string()))?;
        }
        if let Some((s, r)) = inflight.pop() {
            let i = index[&r.task_id];
            attempts[i] += 1;
            let kind = if attempts[i] > d.fails[i] {
                AttemptOutcome::Succeeded
            } else {
                AttemptOutcome::Failed
            };
            core.handle(
                now,
                Input::Finished {
                    session: s,
                    attempt: r,
                    outcome: Outcome {
                        kind,
                        exit_code: Some(0),
                        error: None,
                        result: None,
                    },
                },
                &mut fx,
            );
            core.dispatch_now(now, &mut fx);
            continue;
        }
        match core.poll_timeout() {
            Some(at) => {
                now = now.max(at);
                core.handle_timeout(now, &mut fx);
            }
            None => break,
        }
        prop_assert!(steps < 100_000, "no progress");
    }
    core.check_invariants()
        .map_err(|v| TestCaseError::fail(v.to_string()))?;
    prop_assert_eq!(core.active_counts().values().sum::<usize>(), 0);
    for i in 0..n {
        prop_assert!(state[i].is_terminal(), "node {} is {}", i, state[i]);
        prop_assert!(started_after[i], "node {} started before its upstreams", i);
        let upstream_bad = d.ups[i].iter().any(|&u| state[u] != TaskState::Succeeded);
        prop_assert_eq!(
            state[i] == TaskState::Skipped,
            upstream_bad,
            "node {} is {} with upstreams {:?}",
            i,
            state[i],
            d.ups[i]
        );
        if !upstream_bad {
            let ok = d.fails[i] < 1 + d.retries[i];
            prop_assert_eq!(state[i] == TaskState::Succeeded, ok);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_dags_finish_in_dependency_order(d in dag(300)) {
        run_dag(&d)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3))]
    #[test]
    fn random_dags_of_up_to_a_thousand_nodes(d in dag(1000).prop_filter("big", |d| d.ups.len() > 600)) {
        run_dag(&d)?;
    }
}

// ---- outputs and restarts through the model store ----

#[test]
fn a_node_output_reaches_its_downstream_as_env() {
    let mut b = Bench::new(11);
    b.join(1, worker("w1", 4, 0));
    let (a, c) = (b.fresh_id(), b.fresh_id());
    let wf = |node: &str| Some(("wf".to_string(), node.to_string()));
    let req = b.fresh_req();
    b.input(Input::SubmitFlow {
        req,
        tasks: vec![
            FlowTask {
                task: NewTask {
                    id: a,
                    def: exec_def("q"),
                    not_before: None,
                },
                flow: FlowSpec {
                    workflow: wf("build-app"),
                    ..FlowSpec::default()
                },
                upstream_states: vec![],
            },
            FlowTask {
                task: NewTask {
                    id: c,
                    def: exec_def("q"),
                    not_before: None,
                },
                flow: FlowSpec {
                    after: vec![a],
                    workflow: wf("deploy"),
                    ..FlowSpec::default()
                },
                upstream_states: vec![],
            },
        ],
        workflow: None,
    });
    let r = b.attempt_ref(a);
    b.input(Input::Log {
        session: 1,
        attempt: r,
        stream: LogStream::Stdout,
        data: b"building\nversion=1.2".to_vec(),
    });
    b.input(Input::Log {
        session: 1,
        attempt: r,
        stream: LogStream::Stdout,
        data: b".3\n\n".to_vec(),
    });
    b.run_ok(1, a);
    let sent = b.assigned_to(1);
    let down = sent.iter().find(|x| x.task_id == c).expect("c assigned");
    assert!(down.upstream.env.contains(&(
        "DROVER_UPSTREAM_BUILD_APP_OUTPUT".to_string(),
        "version=1.2.3".to_string()
    )));
    assert_eq!(
        b.flows[&c].upstream_outputs,
        vec![("build-app".to_string(), "version=1.2.3".to_string())]
    );
}

/// Runs a random DAG on the bench, restarting the core from the model store every
/// `restart_every` finished attempts; checks dependency order from the committed events.
fn run_dag_with_restarts(d: &Dag, restart_every: usize) -> Result<(), TestCaseError> {
    let n = d.ups.len();
    let mut b = Bench::new(5);
    b.join(1, worker("w1", 4, 0));
    let ids: Vec<TaskId> = (0..n).map(|_| b.fresh_id()).collect();
    let index: BTreeMap<TaskId, usize> = ids.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let tasks = (0..n)
        .map(|i| {
            let mut def = exec_def("q");
            def.max_attempts = 1 + d.retries[i];
            def.backoff_ms = 10;
            FlowTask {
                task: NewTask {
                    id: ids[i],
                    def,
                    not_before: None,
                },
                flow: after(&d.ups[i].iter().map(|&u| ids[u]).collect::<Vec<_>>()),
                upstream_states: vec![],
            }
        })
        .collect();
    let req = b.fresh_req();
    b.input(Input::SubmitFlow {
        req,
        tasks,
        workflow: None,
    });
    let mut attempts = vec![0u32; n];
    let mut finished = 0;
    let mut session = 1;
    for _ in 0..200_000 {
        let leased: Vec<TaskId> = b
            .tasks
            .values()
            .filter(|t| t.state.is_leased())
            .map(|t| t.id)
            .collect();
        if let Some(&id) = leased.first() {
            let i = index[&id];
            attempts[i] += 1;
            let kind = if attempts[i] > d.fails[i] {
                AttemptOutcome::Succeeded
            } else {
                AttemptOutcome::Failed
            };
            let r = b.attempt_ref(id);
            b.finish(session, r, kind, Some(0));
            finished += 1;
            if finished % restart_every == 0 {
                // kill -9 and restart: only what was committed survives.
                let mut r = Bench::from_snapshot(5, b.now, b.snapshot());
                r.tasks = std::mem::take(&mut b.tasks);
                r.attempts = std::mem::take(&mut b.attempts);
                r.events = std::mem::take(&mut b.events);
                r.flows = std::mem::take(&mut b.flows);
                r.queues = std::mem::take(&mut b.queues);
                r.schedules = std::mem::take(&mut b.schedules);
                let held: Vec<AttemptRef> = r
                    .tasks
                    .values()
                    .filter(|t| t.state.is_leased())
                    .map(|t| r.attempt_ref(t.id))
                    .collect();
                session += 1;
                r.input(Input::WorkerJoin {
                    req: 0,
                    session,
                    info: worker("w1", 4, 0),
                    held,
                });
                b = r;
            }
            continue;
        }
        if b.core.active_counts().values().sum::<usize>() == 0 {
            break;
        }
        // Retry backoffs: keep the worker fresh while time passes.
        b.advance_ms(50);
        b.input(Input::Heartbeat {
            session,
            held: vec![],
        });
    }
    prop_assert_eq!(b.core.active_counts().values().sum::<usize>(), 0);
    let mut succeeded_at: BTreeMap<TaskId, usize> = BTreeMap::new();
    for (k, e) in b.events.iter().enumerate() {
        if let EventKind::Task {
            task_id,
            state: TaskState::Succeeded,
            ..
        } = &e.kind
        {
            succeeded_at.insert(*task_id, k);
        }
    }
    for (k, e) in b.events.iter().enumerate() {
        if let EventKind::Task {
            task_id,
            state: TaskState::Assigned,
            ..
        } = &e.kind
        {
            let i = index[task_id];
            for &u in &d.ups[i] {
                prop_assert!(
                    succeeded_at.get(&ids[u]).is_some_and(|&s| s < k),
                    "node {} assigned before upstream {} succeeded",
                    i,
                    u
                );
            }
        }
    }
    for i in 0..n {
        let st = b.tasks[&ids[i]].state;
        prop_assert!(st.is_terminal());
        let bad = d.ups[i]
            .iter()
            .any(|&u| b.tasks[&ids[u]].state != TaskState::Succeeded);
        prop_assert_eq!(st == TaskState::Skipped, bad, "node {} is {}", i, st);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn random_dags_survive_restarts(d in dag(120), every in 1usize..15) {
        run_dag_with_restarts(&d, every)?;
    }
}

fn handler_def(kind: &str, payload: &str) -> TaskDef {
    TaskDef {
        kind: kind.into(),
        spec: TaskSpec::Handler {
            payload: payload.into(),
        },
        ..exec_def("q")
    }
}

fn finish_with_result(b: &mut Bench, session: SessionId, id: TaskId, result: &str) {
    let r = b.attempt_ref(id);
    b.input(Input::Started {
        session,
        attempt: r,
    });
    b.input(Input::Finished {
        session,
        attempt: r,
        outcome: Outcome {
            kind: AttemptOutcome::Succeeded,
            exit_code: None,
            error: None,
            result: Some(result.into()),
        },
    });
}

#[test]
fn handler_tasks_go_only_to_workers_that_named_their_kind() {
    let mut b = Bench::new(11);
    // Accepts every kind of command, but names no handler.
    b.join(1, worker("any", 4, 0));
    let t = b.submit_def(handler_def("resize", r#"{"w":100}"#));
    assert_eq!(b.state(t), TaskState::Queued);
    let why = b.core.why_waiting(t).unwrap_or_default();
    assert!(why.contains("handler for kind resize"), "{why}");
    b.join(
        2,
        WorkerInfo {
            kinds: vec!["resize".into()],
            ..worker("sdk", 4, 0)
        },
    );
    assert_eq!(b.state(t), TaskState::Assigned);
    assert_eq!(b.tasks[&t].worker.as_deref(), Some("sdk"));
    finish_with_result(&mut b, 2, t, r#"{"ok":true}"#);
    assert_eq!(b.state(t), TaskState::Succeeded);
    assert_eq!(b.tasks[&t].result.as_deref(), Some(r#"{"ok":true}"#));
    // The event names the result's size, not the result.
    let sizes: Vec<Option<u64>> = b
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Task {
                task_id,
                state: TaskState::Succeeded,
                result_bytes,
                ..
            } if *task_id == t => Some(*result_bytes),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![Some(11)]);
    assert!(b.core.check_invariants().is_ok());
}

#[test]
fn a_handler_result_reaches_downstream_handlers_and_commands() {
    let mut b = Bench::new(12);
    b.join(
        1,
        WorkerInfo {
            kinds: vec!["extract".into(), "load".into(), "default".into()],
            ..worker("w1", 4, 0)
        },
    );
    let (x, l, c) = (b.fresh_id(), b.fresh_id(), b.fresh_id());
    let node = |id, def, after: Vec<TaskId>, name: &str| FlowTask {
        task: NewTask {
            id,
            def,
            not_before: None,
        },
        flow: FlowSpec {
            after,
            workflow: Some(("wf".to_string(), name.to_string())),
            ..FlowSpec::default()
        },
        upstream_states: vec![],
    };
    let req = b.fresh_req();
    b.input(Input::SubmitFlow {
        req,
        tasks: vec![
            node(x, handler_def("extract", "{}"), vec![], "extract"),
            node(l, handler_def("load", "null"), vec![x], "load"),
            node(c, exec_def("q"), vec![x], "report"),
        ],
        workflow: None,
    });
    finish_with_result(&mut b, 1, x, r#"{"rows":3}"#);
    let sent = b.assigned_to(1);
    let load = sent.iter().find(|a| a.task_id == l).expect("load assigned");
    assert_eq!(
        load.upstream.results,
        vec![("extract".to_string(), r#"{"rows":3}"#.to_string())]
    );
    assert!(load.upstream.env.is_empty());
    let report = sent
        .iter()
        .find(|a| a.task_id == c)
        .expect("report assigned");
    // The core sends a command's body as a stand-in; the driver reads the body back.
    assert!(report.def.spec.is_in_store());
    assert!(report.upstream.env.contains(&(
        "DROVER_UPSTREAM_EXTRACT_OUTPUT".to_string(),
        r#"{"rows":3}"#.to_string()
    )));
    assert!(report.upstream.results.is_empty());
    assert!(b.core.check_invariants().is_ok());
}
