//! The coordinator's lifecycle, one rule per test.

mod harness;

use drover_core::*;
use harness::*;
use TaskState::*;

#[test]
fn a_task_runs_through_its_states_and_leaves_the_active_set() {
    let mut b = Bench::new(1);
    let id = b.submit(1)[0];
    assert_eq!(b.state(id), Queued);
    b.join(7, worker("w1", 1, 0));
    assert_eq!(b.state(id), Assigned);
    assert_eq!(b.assigned_to(7).len(), 1);
    b.run_ok(7, id);
    assert_eq!(b.state(id), Succeeded);
    assert_eq!(b.history(id), vec![Queued, Assigned, Running, Succeeded]);
    assert!(!b.core.is_active(id));
    let a = &b.attempts[&(id, 1)];
    assert_eq!(a.outcome, Some(AttemptOutcome::Succeeded));
    assert_eq!(a.worker, "w1");
    assert!(a.started_at.is_some() && a.finished_at.is_some());
    assert_eq!(b.tasks[&id].exit_code, Some(0));
}

#[test]
fn credit_bounds_what_a_worker_holds() {
    let mut b = Bench::new(2);
    let ids = b.submit(10);
    b.join(1, worker("w1", 2, 1));
    assert_eq!(b.assigned_to(1).len(), 3, "slots 2 + prefetch 1");
    b.run_ok(1, ids[0]);
    assert_eq!(b.assigned_to(1).len(), 4, "one result frees one credit");
}

#[test]
fn higher_priority_first_then_fifo() {
    let mut b = Bench::new(3);
    let low = b.submit_def(exec_def("q"));
    let mut hi = exec_def("q");
    hi.priority = 5;
    let high1 = b.submit_def(hi.clone());
    let high2 = b.submit_def(hi);
    b.join(1, worker("w1", 1, 0));
    let order: Vec<TaskId> = {
        let mut v = vec![];
        for _ in 0..3 {
            let a = b.assigned_to(1).last().unwrap().task_id;
            v.push(a);
            b.run_ok(1, a);
        }
        v
    };
    assert_eq!(order, vec![high1, high2, low]);
}

#[test]
fn failure_retries_with_backoff_then_fails() {
    let mut b = Bench::new(4);
    let mut def = exec_def("q");
    def.max_attempts = 2;
    let id = b.submit_def(def);
    b.join(1, worker("w1", 1, 0));
    let r = b.attempt_ref(id);
    b.finish(1, r, AttemptOutcome::Failed, Some(3));
    assert_eq!(b.state(id), Pending);
    let nb = b.tasks[&id].not_before.unwrap();
    assert!(
        nb >= b.now + 50_000 && nb <= b.now + 100_000,
        "backoff 100ms with jitter"
    );
    b.advance_ms(101);
    assert_eq!(b.state(id), Assigned);
    let r2 = b.attempt_ref(id);
    assert_eq!(r2.attempt, 2);
    assert_ne!(r2.lease, r.lease);
    b.finish(1, r2, AttemptOutcome::Failed, Some(4));
    assert_eq!(b.state(id), Failed);
    assert_eq!(b.tasks[&id].exit_code, Some(4));
}

#[test]
fn timeout_without_retries_ends_timed_out() {
    let mut b = Bench::new(5);
    let id = b.submit(1)[0];
    b.join(1, worker("w1", 1, 0));
    let r = b.attempt_ref(id);
    b.finish(1, r, AttemptOutcome::TimedOut, None);
    assert_eq!(b.state(id), TimedOut);
}

#[test]
fn an_expired_lease_requeues_and_the_late_result_is_rejected() {
    let mut b = Bench::new(6);
    let id = b.submit(1)[0];
    b.join(1, worker("w1", 1, 0));
    let old = b.attempt_ref(id);
    b.input(Input::Started {
        session: 1,
        attempt: old,
    });
    // w1 stalls; w2 is there to take over.
    b.join(2, worker("w2", 1, 0));
    b.advance_ms(LEASE_MS as i64 + 1);
    assert_eq!(b.state(id), Assigned);
    assert_eq!(b.tasks[&id].worker.as_deref(), Some("w2"));
    assert_eq!(b.attempts[&(id, 1)].outcome, Some(AttemptOutcome::Lost));
    assert!(
        b.sent.contains(&(1, ToWorker::Cancel(old))),
        "the stalled worker is told to stop"
    );
    // The old attempt's result arrives late: refused, nothing changes.
    b.finish(1, old, AttemptOutcome::Succeeded, Some(0));
    assert_eq!(b.stale_rejected, 1);
    assert_eq!(b.state(id), Assigned);
    let new = b.attempt_ref(id);
    assert_eq!(new.attempt, 2);
    b.run_ok(2, id);
    assert_eq!(b.state(id), Succeeded);
}

#[test]
fn heartbeats_keep_a_lease_alive() {
    let mut b = Bench::new(7);
    let id = b.submit(1)[0];
    b.join(1, worker("w1", 1, 0));
    let r = b.attempt_ref(id);
    for _ in 0..5 {
        b.advance_ms(LEASE_MS as i64 / 2);
        b.input(Input::Heartbeat {
            session: 1,
            held: vec![r],
        });
    }
    assert_eq!(b.state(id), Assigned);
    assert_eq!(b.tasks[&id].attempt, 1);
}

#[test]
fn a_stall_extends_every_lease_by_its_length() {
    let mut b = Bench::new(17);
    let id = b.submit(1)[0];
    b.join(1, worker("w1", 1, 0));
    assert_eq!(b.state(id), Assigned);
    // The shell's store refuses commits for three leases: it runs no timers and delivers
    // nothing (the assignment never reaches w1); w1's heartbeats still come in.
    for _ in 0..6 {
        b.now += LEASE_MS as i64 * 1000 / 2;
        b.input_only(Input::Heartbeat {
            session: 1,
            held: vec![],
        });
    }
    b.input_only(Input::DeliveryResumed {
        paused: 3 * LEASE_MS as i64 * 1000,
    });
    b.advance_ms(LEASE_MS as i64 - 1);
    assert_eq!(b.state(id), Assigned, "a full lease from the resumption");
    assert_eq!(b.tasks[&id].attempt, 1);
    // Never heard of again: reclaimed once that lease is over.
    b.advance_ms(2);
    assert_eq!(b.attempts[&(id, 1)].outcome, Some(AttemptOutcome::Lost));
}

#[test]
fn losing_the_worker_too_often_makes_a_task_dead() {
    let mut b = Bench::new(8);
    let id = b.submit(1)[0];
    for i in 0..3 {
        b.join(10 + i, worker("w", 1, 0));
        assert_eq!(b.state(id), Assigned);
        b.input(Input::WorkerLeave { session: 10 + i });
        b.advance_ms(LEASE_MS as i64 + 1);
    }
    assert_eq!(b.state(id), Dead);
    assert_eq!(b.tasks[&id].lost, 3);
}

#[test]
fn cancel_queued_and_running() {
    let mut b = Bench::new(9);
    let ids = b.submit(2);
    b.join(1, worker("w1", 1, 0));
    let running = ids[0];
    let r = b.attempt_ref(running);
    b.input(Input::Started {
        session: 1,
        attempt: r,
    });
    b.input(Input::Cancel {
        req: 100,
        task_id: ids[1],
    });
    assert_eq!(b.state(ids[1]), Cancelled);
    b.input(Input::Cancel {
        req: 101,
        task_id: running,
    });
    assert_eq!(b.state(running), Cancelled);
    assert!(b.sent.contains(&(1, ToWorker::Cancel(r))));
    assert_eq!(b.replies.last(), Some(&(101, Reply::Cancelled(Ok(())))));
    // Already finished: the shell turns this into a 409.
    b.input(Input::Cancel {
        req: 102,
        task_id: running,
    });
    assert_eq!(
        b.replies.last(),
        Some(&(102, Reply::Cancelled(Err(CancelError::NotActive))))
    );
    // The worker's slot stays taken until it reports the kill.
    let next = b.submit(1)[0];
    assert_eq!(b.state(next), Queued);
    b.finish(1, r, AttemptOutcome::Cancelled, None);
    assert_eq!(b.state(running), Cancelled, "a late report changes nothing");
    assert_eq!(b.state(next), Assigned);
}

#[test]
fn delayed_tasks_wait_for_their_time() {
    let mut b = Bench::new(10);
    b.join(1, worker("w1", 1, 0));
    let at = b.now + 500_000;
    let id = b.submit_with(exec_def("q"), Some(at));
    assert_eq!(b.state(id), Pending);
    assert_eq!(b.core.poll_timeout(), Some(at));
    b.advance_ms(499);
    assert_eq!(b.state(id), Pending);
    b.advance_ms(1);
    assert_eq!(b.state(id), Assigned);
}

#[test]
fn kind_and_labels_decide_feasibility() {
    let mut b = Bench::new(11);
    let mut gpu = exec_def("q");
    gpu.kind = "gpu".into();
    let mut zoned = exec_def("q");
    zoned.placement.selector = "zone=b".parse().unwrap();
    let g = b.submit_def(gpu);
    let z = b.submit_def(zoned);
    let mut w1 = worker("w1", 4, 0);
    w1.kinds = vec!["default".into()];
    w1.labels.insert("zone".into(), "a".into());
    b.join(1, w1);
    assert_eq!((b.state(g), b.state(z)), (Queued, Queued));
    let mut w2 = worker("w2", 4, 0);
    w2.kinds = vec!["gpu".into(), "default".into()];
    w2.labels.insert("zone".into(), "b".into());
    b.join(2, w2);
    assert_eq!(b.tasks[&g].worker.as_deref(), Some("w2"));
    assert_eq!(b.tasks[&z].worker.as_deref(), Some("w2"));
}

#[test]
fn after_a_restart_workers_reattach_and_nothing_runs_twice() {
    let mut b = Bench::new(12);
    let ids = b.submit(3);
    b.join(1, worker("w1", 2, 0));
    let held: Vec<AttemptRef> = ids[..2].iter().map(|&i| b.attempt_ref(i)).collect();
    b.input(Input::Started {
        session: 1,
        attempt: held[0],
    });
    // The server dies; a new core is built from what was committed.
    let snap = b.snapshot();
    let mut r = Bench::from_snapshot(13, b.now + 5_000, snap);
    r.tasks = b.tasks.clone();
    r.attempts = b.attempts.clone();
    r.events = b.events.clone();
    r.input(Input::WorkerJoin {
        req: 0,
        session: 2,
        info: worker("w1", 2, 0),
        held: held.clone(),
    });
    assert!(
        r.assigned_to(2).is_empty(),
        "held attempts re-attach, nothing new fits"
    );
    // Re-attached leases were renewed at join; heartbeats keep them past the grace period.
    for _ in 0..5 {
        r.advance_ms(LEASE_MS as i64 / 2);
        r.input(Input::Heartbeat {
            session: 2,
            held: held.clone(),
        });
    }
    assert_eq!(r.tasks[&ids[0]].attempt, 1);
    assert_eq!(r.state(ids[0]), Running);
    r.run_ok(2, ids[0]);
    assert_eq!(r.state(ids[0]), Succeeded);
    assert_eq!(
        r.state(ids[2]),
        Assigned,
        "the freed credit takes the queued task"
    );
}

#[test]
fn after_a_restart_unclaimed_leases_expire_after_the_grace() {
    let mut b = Bench::new(14);
    let id = b.submit(1)[0];
    b.join(1, worker("w1", 1, 0));
    let snap = b.snapshot();
    let mut r = Bench::from_snapshot(15, b.now, snap);
    r.tasks = b.tasks.clone();
    r.events = b.events.clone();
    r.join(2, worker("w2", 1, 0));
    assert_eq!(r.state(id), Assigned);
    assert_eq!(r.tasks[&id].worker.as_deref(), Some("w1"));
    r.advance_ms(GRACE_MS as i64 + 1);
    assert_eq!(r.tasks[&id].worker.as_deref(), Some("w2"));
    assert_eq!(r.tasks[&id].attempt, 2);
}

#[test]
fn the_same_seed_and_inputs_give_the_same_decisions() {
    let run = |seed| {
        let mut b = Bench::new(seed);
        b.submit(20);
        b.join(1, worker("a", 3, 1));
        b.join(2, worker("b", 2, 2));
        b.advance_ms(5_000);
        format!("{:?}{:?}", b.sent, b.events)
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43), "lease tokens come from the seed");
}
