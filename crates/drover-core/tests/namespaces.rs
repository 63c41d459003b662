//! Namespaces: queue names, idempotency keys and serial keys are unique within a namespace
//! (the same name in two namespaces is two things), and a task runs only on a worker that
//! serves its namespace.

mod harness;

use drover_core::*;
use harness::*;

fn def_in(namespace: &str, queue: &str) -> TaskDef {
    TaskDef {
        namespace: namespace.into(),
        ..exec_def(queue)
    }
}

fn serving(name: &str, namespaces: &[&str]) -> WorkerInfo {
    WorkerInfo {
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        ..worker(name, 4, 0)
    }
}

#[test]
fn a_task_runs_only_on_a_worker_that_serves_its_namespace() {
    let mut b = Bench::new(31);
    b.join(1, serving("only-a", &["a"]));
    let in_b = b.submit_def(def_in("b", "q"));
    let in_a = b.submit_def(def_in("a", "q"));
    assert!(b.state(in_a).is_leased(), "a's task goes to a's worker");
    assert_eq!(b.state(in_b), TaskState::Queued);
    assert_eq!(
        b.core.why_waiting(in_b).as_deref(),
        Some("no worker serves namespace b")
    );
    // A worker with no namespace list serves every namespace.
    b.join(2, worker("any", 4, 0));
    assert!(b.state(in_b).is_leased());
    assert_eq!(b.tasks[&in_b].worker.as_deref(), Some("any"));
}

#[test]
fn the_same_queue_name_in_two_namespaces_is_two_queues() {
    let mut b = Bench::new(32);
    b.join(1, worker("w", 8, 0));
    let req = b.fresh_req();
    let paused = QueueConfig {
        namespace: "a".into(),
        name: "q".into(),
        paused: true,
        ..QueueConfig::default()
    };
    b.input(Input::ConfigureQueue {
        req,
        config: paused,
    });
    let in_a = b.submit_def(def_in("a", "q"));
    let in_b = b.submit_def(def_in("b", "q"));
    assert_eq!(b.state(in_a), TaskState::Queued);
    assert_eq!(
        b.core.why_waiting(in_a).as_deref(),
        Some("queue q is paused")
    );
    assert!(b.state(in_b).is_leased(), "b's queue q is not paused");
    let stats = b.core.queue_stats();
    let a = stats.iter().find(|s| s.namespace == "a").unwrap();
    assert!(a.config.paused && a.depth == 1);
    let other = stats.iter().find(|s| s.namespace == "b").unwrap();
    assert!(!other.config.paused && other.running == 1);
}

#[test]
fn an_idempotency_key_names_one_task_per_namespace() {
    let mut b = Bench::new(33);
    let keyed = |ns: &str| TaskDef {
        idempotency_key: Some("k".into()),
        ..def_in(ns, "q")
    };
    let first_a = b.submit_def(keyed("a"));
    let again_a = {
        let req = b.fresh_req();
        let id = b.fresh_id();
        b.input(Input::Submit {
            req,
            tasks: vec![NewTask {
                id,
                def: keyed("a"),
                not_before: None,
            }],
        });
        match b.replies.last() {
            Some((r, Reply::Submitted(ids))) if *r == req => ids[0],
            other => panic!("unexpected reply {other:?}"),
        }
    };
    assert_eq!(again_a, first_a, "a repeated key in a names its first task");
    let first_b = b.submit_def(keyed("b"));
    assert!(
        b.tasks.contains_key(&first_b),
        "b's key k makes its own task"
    );
    assert_ne!(first_b, first_a);
    assert_eq!(b.core.idempotent(&Scoped::new("b", "k")), Some(first_b));
    assert_eq!(b.core.idempotent(&Scoped::new("c", "k")), None);
}

#[test]
fn serial_keys_are_separate_lines_per_namespace() {
    let mut b = Bench::new(34);
    b.join(1, worker("w", 8, 0));
    let serial = || FlowSpec {
        serial_key: Some("tenant".into()),
        ..FlowSpec::default()
    };
    let a1 = b.submit_flow(def_in("a", "q"), serial()).unwrap();
    let a2 = b.submit_flow(def_in("a", "q"), serial()).unwrap();
    let b1 = b.submit_flow(def_in("b", "q"), serial()).unwrap();
    assert!(b.state(a1).is_leased());
    assert_eq!(b.state(a2), TaskState::Queued, "a2 waits behind a1");
    assert!(b.state(b1).is_leased(), "b's line has its own turn");
    // Restarting from the snapshot rebuilds the same lines.
    let mut r = b.restarted(35);
    r.join(1, worker("w", 8, 0));
    assert_eq!(r.state(a2), TaskState::Queued);
    assert!(r.core.check_invariants().is_ok());
}
