//! BOUNDED_BACKLOG: a queue's `max_queued` and the server-wide limit refuse a submit that
//! would take the waiting (pending or queued) tasks past them, whole and with nothing
//! changed; tasks that start, end or were refused make room again.

mod harness;

use drover_core::dag::{WorkflowNode, WorkflowRecord};
use drover_core::*;
use harness::*;

fn limit(b: &mut Bench, queue: &str, max_queued: Option<u64>) {
    let req = b.fresh_req();
    let config = QueueConfig {
        name: queue.into(),
        max_queued,
        ..QueueConfig::default()
    };
    b.input(Input::ConfigureQueue { req, config });
}

fn new_task(b: &mut Bench, queue: &str) -> NewTask {
    NewTask {
        id: b.fresh_id(),
        def: exec_def(queue),
        not_before: None,
    }
}

/// Submits `tasks` as one batch: the ids, or why it was refused.
fn submit(b: &mut Bench, tasks: Vec<NewTask>) -> Result<Vec<TaskId>, QueueFull> {
    let req = b.fresh_req();
    b.input(Input::Submit { req, tasks });
    match b.replies.last() {
        Some((r, Reply::Submitted(ids))) if *r == req => Ok(ids.clone()),
        Some((r, Reply::SubmitRefused(SubmitError::QueueFull(f)))) if *r == req => Err(f.clone()),
        other => panic!("unexpected reply {other:?}"),
    }
}

fn batch(b: &mut Bench, queue: &str, n: usize) -> Result<Vec<TaskId>, QueueFull> {
    let tasks = (0..n).map(|_| new_task(b, queue)).collect();
    submit(b, tasks)
}

fn full(queue: Option<&str>, limit: u64, waiting: u64, adding: u64) -> QueueFull {
    QueueFull {
        queue: queue.map(Scoped::default_ns),
        limit,
        waiting,
        adding,
    }
}

#[test]
fn a_queue_at_its_limit_refuses_the_whole_batch_and_changes_nothing() {
    let mut b = Bench::new(1);
    limit(&mut b, "q", Some(3));
    assert_eq!(batch(&mut b, "q", 2).map(|ids| ids.len()), Ok(2));
    // 2 waiting + 2 > 3: refused whole, though one of them would fit.
    let (events, tasks) = (b.events.len(), b.tasks.len());
    assert_eq!(batch(&mut b, "q", 2), Err(full(Some("q"), 3, 2, 2)));
    assert_eq!(
        (b.events.len(), b.tasks.len()),
        (events, tasks),
        "nothing written"
    );
    // Exactly up to the limit is fine; one more is not.
    assert_eq!(batch(&mut b, "q", 1).map(|ids| ids.len()), Ok(1));
    assert_eq!(batch(&mut b, "q", 1), Err(full(Some("q"), 3, 3, 1)));
    // Another queue has no limit.
    assert!(batch(&mut b, "other", 10).is_ok());
    // A delayed (pending) task waits too.
    let delayed = new_task(&mut b, "q");
    let delayed = NewTask {
        not_before: Some(b.now + 60_000_000),
        ..delayed
    };
    assert_eq!(submit(&mut b, vec![delayed]), Err(full(Some("q"), 3, 3, 1)));
}

#[test]
fn started_and_ended_tasks_make_room() {
    let mut b = Bench::new(2);
    limit(&mut b, "q", Some(2));
    let ids = batch(&mut b, "q", 2).unwrap();
    assert!(batch(&mut b, "q", 1).is_err());
    // A worker takes one: it no longer waits.
    b.join(1, worker("w", 1, 0));
    assert!(b.state(ids[0]).is_leased());
    assert_eq!(b.core.waiting(&Scoped::default_ns("q")), (1, 1));
    let third = batch(&mut b, "q", 1).unwrap()[0];
    assert!(batch(&mut b, "q", 1).is_err());
    // It ends; the next starts; room for one more.
    b.run_ok(1, ids[0]);
    assert!(b.state(ids[1]).is_leased());
    assert_eq!(b.state(third), TaskState::Queued);
    assert!(batch(&mut b, "q", 1).is_ok());
    // Cancelling a waiting task frees its place as well.
    let req = b.fresh_req();
    b.input(Input::Cancel {
        req,
        task_id: third,
    });
    assert!(batch(&mut b, "q", 1).is_ok());
    assert_eq!(b.core.waiting(&Scoped::default_ns("q")), (2, 2));
}

#[test]
fn the_server_wide_limit_counts_every_queue() {
    let cfg = CoreConfig {
        max_queued: Some(5),
        ..config()
    };
    let mut b = Bench::with_config(3, cfg);
    assert!(batch(&mut b, "a", 3).is_ok());
    assert!(batch(&mut b, "b", 2).is_ok());
    assert_eq!(batch(&mut b, "c", 1), Err(full(None, 5, 5, 1)));
    // Two start: room for two. A queue's own limit is checked too, after the server's.
    b.join(1, worker("w", 2, 0));
    let (in_a, total) = b.core.waiting(&Scoped::default_ns("a"));
    assert_eq!(total, 3);
    limit(&mut b, "a", Some(in_a));
    assert_eq!(batch(&mut b, "a", 1), Err(full(Some("a"), in_a, in_a, 1)));
    assert_eq!(batch(&mut b, "c", 3), Err(full(None, 5, 3, 3)));
    assert!(batch(&mut b, "c", 2).is_ok());
}

#[test]
fn repeated_idempotency_keys_add_nothing() {
    let mut b = Bench::new(4);
    limit(&mut b, "q", Some(2));
    let keyed = |b: &mut Bench, key: &str| NewTask {
        def: TaskDef {
            idempotency_key: Some(key.into()),
            ..exec_def("q")
        },
        ..new_task(b, "q")
    };
    // Twice the same key in one batch: one new task.
    let (k1, k1_again) = (keyed(&mut b, "k1"), keyed(&mut b, "k1"));
    let ids = submit(&mut b, vec![k1, k1_again]).unwrap();
    assert_eq!(ids[0], ids[1]);
    let k2 = keyed(&mut b, "k2");
    assert!(submit(&mut b, vec![k2]).is_ok());
    // Full: a new key is refused, a known one still answers with its task.
    let k3 = keyed(&mut b, "k3");
    assert_eq!(submit(&mut b, vec![k3]), Err(full(Some("q"), 2, 2, 1)));
    let again = keyed(&mut b, "k1");
    assert_eq!(submit(&mut b, vec![again]), Ok(vec![ids[0]]));
}

#[test]
fn a_workflow_past_the_limit_is_refused_whole_and_not_begun() {
    let mut b = Bench::new(5);
    limit(&mut b, "q", Some(2));
    let (x, y, z) = (b.fresh_id(), b.fresh_id(), b.fresh_id());
    let node = |id, name: &str, after: Vec<TaskId>| FlowTask {
        task: NewTask {
            id,
            def: exec_def("q"),
            not_before: None,
        },
        flow: FlowSpec {
            after,
            workflow: Some(("wf".into(), name.into())),
            ..FlowSpec::default()
        },
        upstream_states: vec![],
    };
    let tasks = vec![
        node(x, "x", vec![]),
        node(y, "y", vec![x]),
        node(z, "z", vec![y]),
    ];
    let record = WorkflowRecord {
        id: "wf".into(),
        namespace: DEFAULT_NAMESPACE.into(),
        name: "pipeline".into(),
        created_at: b.now,
        nodes: ["x", "y", "z"]
            .iter()
            .zip([x, y, z])
            .map(|(n, id)| WorkflowNode {
                name: n.to_string(),
                task_id: id,
                after: vec![],
            })
            .collect(),
    };
    let req = b.fresh_req();
    b.input(Input::SubmitFlow {
        req,
        tasks: tasks.clone(),
        workflow: Some(record.clone()),
    });
    assert_eq!(
        b.replies.last().map(|r| &r.1),
        Some(&Reply::SubmitRefused(SubmitError::QueueFull(full(
            Some("q"),
            2,
            0,
            3
        ))))
    );
    assert!(b.tasks.is_empty() && b.workflows.is_empty() && b.events.is_empty());
    // With room, the same workflow goes in (it was never begun).
    limit(&mut b, "q", Some(3));
    let req = b.fresh_req();
    b.input(Input::SubmitFlow {
        req,
        tasks,
        workflow: Some(record),
    });
    assert!(matches!(b.replies.last(), Some((_, Reply::Submitted(ids))) if ids.len() == 3));
}

#[test]
fn retries_and_reclaims_may_pass_the_limit_and_a_restart_counts_again() {
    let mut b = Bench::new(6);
    limit(&mut b, "q", Some(1));
    b.join(1, worker("w", 1, 0));
    let running = batch(&mut b, "q", 1).unwrap()[0];
    let waiting = batch(&mut b, "q", 1).unwrap()[0];
    assert!(b.state(running).is_leased());
    assert_eq!(b.state(waiting), TaskState::Queued);
    // Its worker goes and the lease runs out: the task queues again, past the limit (it was
    // accepted before).
    b.input(Input::WorkerLeave { session: 1 });
    b.advance_ms(LEASE_MS as i64 + 1);
    assert_eq!(b.core.waiting(&Scoped::default_ns("q")).0, 2);
    assert!(batch(&mut b, "q", 1).is_err());
    // After a restart the counts come from the snapshot.
    let mut r = b.restarted(7);
    assert_eq!(r.core.waiting(&Scoped::default_ns("q")), (2, 2));
    assert_eq!(batch(&mut r, "q", 1), Err(full(Some("q"), 1, 2, 1)));
    // Lifting the limit admits again.
    limit(&mut r, "q", None);
    assert!(batch(&mut r, "q", 1).is_ok());
}
