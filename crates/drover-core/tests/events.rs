//! Every state change is one event: workflows (aggregate state, across a restart), workers
//! (silence timers: suspect, lost, alive; drain), schedules (operator changes and fires).

mod harness;

use std::sync::Arc;

use drover_core::dag::{WorkflowNode, WorkflowRecord};
use drover_core::schedule::{Misfire, Overlap, ScheduleSpec, Trigger};
use drover_core::*;
use harness::*;

fn workflow_events(b: &Bench, id: &str) -> Vec<WorkflowState> {
    b.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Workflow {
                workflow_id, state, ..
            } if workflow_id == id => Some(*state),
            _ => None,
        })
        .collect()
}

fn worker_events(b: &Bench, worker: &str) -> Vec<WorkerEventState> {
    b.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Worker { name, state } if name == worker => Some(*state),
            _ => None,
        })
        .collect()
}

/// Submits workflow `wf` with nodes (name, upstream names, def); returns the node ids and
/// the reply.
fn submit_workflow(
    b: &mut Bench,
    wf: &str,
    nodes: &[(&str, &[&str], TaskDef)],
) -> (Vec<TaskId>, Reply) {
    let ids: Vec<TaskId> = nodes.iter().map(|_| b.fresh_id()).collect();
    let id_of = |name: &str| ids[nodes.iter().position(|n| n.0 == name).unwrap()];
    let tasks = nodes
        .iter()
        .zip(&ids)
        .map(|((name, ups, def), id)| FlowTask {
            task: NewTask {
                id: *id,
                def: def.clone(),
                not_before: None,
            },
            flow: FlowSpec {
                after: ups.iter().map(|u| id_of(u)).collect(),
                workflow: Some((wf.into(), (*name).into())),
                ..FlowSpec::default()
            },
            upstream_states: vec![],
        })
        .collect();
    let record = WorkflowRecord {
        namespace: DEFAULT_NAMESPACE.into(),
        id: wf.into(),
        name: "test".into(),
        created_at: b.now,
        nodes: nodes
            .iter()
            .zip(&ids)
            .map(|((name, ups, _), id)| WorkflowNode {
                name: (*name).into(),
                task_id: *id,
                after: ups.iter().map(|u| u.to_string()).collect(),
            })
            .collect(),
    };
    let req = b.fresh_req();
    b.input(Input::SubmitFlow {
        req,
        tasks,
        workflow: Some(record),
    });
    let reply = b
        .replies
        .iter()
        .rev()
        .find(|r| r.0 == req)
        .unwrap()
        .1
        .clone();
    (ids, reply)
}

/// Submits the workflow `a -> {b, c}` as "wf1"; returns the node ids (a, b, c).
fn submit_fork(b: &mut Bench) -> [TaskId; 3] {
    let d = exec_def("q");
    let (ids, _) = submit_workflow(
        b,
        "wf1",
        &[
            ("a", &[], d.clone()),
            ("b", &["a"], d.clone()),
            ("c", &["a"], d),
        ],
    );
    [ids[0], ids[1], ids[2]]
}

#[test]
fn a_workflow_is_pending_then_running_then_succeeded_and_its_tasks_name_it() {
    let mut b = Bench::new(1);
    let [a, x, y] = submit_fork(&mut b);
    assert_eq!(workflow_events(&b, "wf1"), vec![WorkflowState::Pending]);
    b.join(1, worker("w1", 4, 0));
    assert_eq!(
        workflow_events(&b, "wf1"),
        vec![WorkflowState::Pending, WorkflowState::Running]
    );
    b.run_ok(1, a);
    b.run_ok(1, x);
    assert_eq!(b.core.workflow_state("wf1"), Some(WorkflowState::Running));
    b.run_ok(1, y);
    assert_eq!(
        workflow_events(&b, "wf1"),
        vec![
            WorkflowState::Pending,
            WorkflowState::Running,
            WorkflowState::Succeeded
        ]
    );
    assert_eq!(
        b.core.workflow_state("wf1"),
        None,
        "ended workflows are forgotten"
    );
    // Every task event of a node carries the workflow id; the last event ends the workflow.
    for e in &b.events {
        if let EventKind::Task { workflow, .. } = &e.kind {
            assert_eq!(workflow.as_deref(), Some("wf1"), "{e:?}");
        }
    }
    assert!(matches!(
        b.events.last().unwrap().kind,
        EventKind::Workflow {
            state: WorkflowState::Succeeded,
            ..
        }
    ));
}

#[test]
fn a_failed_node_fails_the_workflow_once_its_skips_cascade() {
    let mut b = Bench::new(2);
    b.join(1, worker("w1", 4, 0));
    let [a, _, _] = submit_fork(&mut b);
    let r = b.attempt_ref(a);
    b.finish(1, r, AttemptOutcome::Failed, Some(1));
    assert_eq!(
        workflow_events(&b, "wf1"),
        vec![
            WorkflowState::Pending,
            WorkflowState::Running,
            WorkflowState::Failed
        ]
    );
}

#[test]
fn a_restart_mid_workflow_ends_it_once_with_the_right_state() {
    let mut b = Bench::new(3);
    b.join(1, worker("w1", 4, 0));
    let [a, x, y] = submit_fork(&mut b);
    b.run_ok(1, a);
    let r = b.attempt_ref(x);
    b.finish(1, r, AttemptOutcome::Failed, Some(2));
    // Restart: y is still active; x's failure is known only from the store.
    let mut after = b.restarted(3);
    assert_eq!(
        after.core.workflow_state("wf1"),
        Some(WorkflowState::Running)
    );
    let held = vec![after.attempt_ref(y)];
    after.input(Input::WorkerJoin {
        req: 0,
        session: 7,
        info: worker("w1", 4, 0),
        held,
    });
    let r = after.attempt_ref(y);
    after.input(Input::Started {
        session: 7,
        attempt: r,
    });
    after.finish(7, r, AttemptOutcome::Succeeded, Some(0));
    assert_eq!(
        workflow_events(&after, "wf1"),
        vec![
            WorkflowState::Pending,
            WorkflowState::Running,
            WorkflowState::Failed
        ]
    );
}

#[test]
fn a_retry_or_a_restart_does_not_announce_the_workflow_twice() {
    let mut b = Bench::new(9);
    b.join(1, worker("w1", 4, 0));
    let retried = TaskDef {
        max_attempts: 2,
        ..exec_def("q")
    };
    let (ids, _) = submit_workflow(
        &mut b,
        "wf2",
        &[("a", &[], retried), ("b", &["a"], exec_def("q"))],
    );
    let r = b.attempt_ref(ids[0]);
    b.finish(1, r, AttemptOutcome::Failed, Some(1));
    assert_eq!(b.state(ids[0]), TaskState::Pending, "waiting for its retry");
    assert_eq!(b.core.workflow_state("wf2"), Some(WorkflowState::Running));
    // A restart while the node waits for its retry: still running, nothing announced again.
    let mut after = b.restarted(9);
    assert_eq!(
        after.core.workflow_state("wf2"),
        Some(WorkflowState::Running)
    );
    after.join(1, worker("w1", 4, 0));
    after.advance_ms(10_000);
    after.input(Input::Heartbeat {
        session: 1,
        held: vec![],
    });
    for id in ids {
        after.run_ok(1, id);
    }
    assert_eq!(
        workflow_events(&after, "wf2"),
        vec![
            WorkflowState::Pending,
            WorkflowState::Running,
            WorkflowState::Succeeded
        ]
    );
}

#[test]
fn a_rerun_is_refused_while_running_and_announced_like_the_rest_view() {
    let mut b = Bench::new(10);
    let d = exec_def("q");
    let (ids, _) = submit_workflow(
        &mut b,
        "wf3",
        &[("a", &[], d.clone()), ("b", &["a"], d.clone())],
    );
    // Still running: a rerun of the same workflow is refused, nothing written.
    let writes_before = b.events.len();
    let (_, reply) = submit_workflow(&mut b, "wf3", &[("b", &[], d.clone())]);
    assert_eq!(
        reply,
        Reply::SubmitRefused(SubmitError::WorkflowRunning("wf3".into()))
    );
    assert_eq!(b.events.len(), writes_before);
    b.join(1, worker("w1", 4, 0));
    b.run_ok(1, ids[0]);
    let r = b.attempt_ref(ids[1]);
    b.finish(1, r, AttemptOutcome::Failed, Some(1));
    // The rerun of b alone: a is kept (succeeded), so the workflow is running at once, as
    // `dag::aggregate_state` over its nodes says.
    let mut record = b.workflows["wf3"].clone();
    let new_b = b.fresh_id();
    record.nodes[1].task_id = new_b;
    let req = b.fresh_req();
    b.input(Input::SubmitFlow {
        req,
        tasks: vec![FlowTask {
            task: NewTask {
                id: new_b,
                def: d,
                not_before: None,
            },
            flow: FlowSpec {
                workflow: Some(("wf3".into(), "b".into())),
                ..FlowSpec::default()
            },
            upstream_states: vec![],
        }],
        workflow: Some(record),
    });
    b.run_ok(1, new_b);
    assert_eq!(
        workflow_events(&b, "wf3"),
        vec![
            WorkflowState::Pending,
            WorkflowState::Running,
            WorkflowState::Failed,
            WorkflowState::Running,
            WorkflowState::Succeeded
        ]
    );
}

#[test]
fn a_silent_worker_turns_suspect_then_lost_and_alive_when_heard_again() {
    let suspect_ms = 300;
    let mut b = Bench::with_config(
        4,
        CoreConfig {
            suspect_after_ms: suspect_ms as u64,
            ..config()
        },
    );
    b.join(1, worker("w1", 1, 0));
    // Heartbeats faster than the suspect window keep it quiet.
    for _ in 0..10 {
        b.advance_ms(suspect_ms / 2);
        b.input(Input::Heartbeat {
            session: 1,
            held: vec![],
        });
    }
    assert_eq!(worker_events(&b, "w1"), vec![WorkerEventState::Joined]);
    // Suspect exactly when the window has passed, not before.
    b.advance_ms(suspect_ms - 1);
    assert_eq!(b.core.workers()[0].status, WorkerStatus::Alive);
    assert!(b.core.poll_timeout().is_some_and(|t| t <= b.now + 1000));
    b.advance_ms(1);
    assert_eq!(b.core.workers()[0].status, WorkerStatus::Suspect);
    b.advance_ms(LEASE_MS as i64);
    assert_eq!(b.core.workers()[0].status, WorkerStatus::Lost);
    b.input(Input::Heartbeat {
        session: 1,
        held: vec![],
    });
    assert_eq!(b.core.workers()[0].status, WorkerStatus::Alive);
    b.input(Input::WorkerLeave { session: 1 });
    assert_eq!(
        worker_events(&b, "w1"),
        vec![
            WorkerEventState::Joined,
            WorkerEventState::Suspect,
            WorkerEventState::Lost,
            WorkerEventState::Alive,
            WorkerEventState::Left
        ]
    );
    // A worker that left has no timer left behind.
    assert_eq!(b.core.poll_timeout(), None);
}

#[test]
fn drain_and_resume_are_worker_events_once_each() {
    let mut b = Bench::new(5);
    b.join(1, worker("w1", 1, 0));
    for (drain, times) in [(true, 2), (false, 2)] {
        for _ in 0..times {
            let req = b.fresh_req();
            let name = "w1".to_string();
            b.input(if drain {
                Input::DrainWorker { req, name }
            } else {
                Input::ResumeWorker { req, name }
            });
        }
    }
    assert_eq!(
        worker_events(&b, "w1"),
        vec![
            WorkerEventState::Joined,
            WorkerEventState::Draining,
            WorkerEventState::Resumed
        ]
    );
}

#[test]
fn a_drain_survives_a_restart_and_a_resume_after_it() {
    let mut b = Bench::new(7);
    b.join(1, worker("w1", 2, 0));
    let req = b.fresh_req();
    b.input(Input::DrainWorker {
        req,
        name: "w1".into(),
    });
    assert!(b.drained.contains("w1"), "the drain is written");
    // Restart: the worker reconnects and is still drained.
    let mut after = b.restarted(7);
    after.join(1, worker("w1", 2, 0));
    let id = after.submit_def(exec_def("q"));
    assert!(
        after.assigned_to(1).is_empty(),
        "a drained worker took {id}"
    );
    assert_eq!(after.core.workers()[0].status.as_str(), "drained");
    let req = after.fresh_req();
    after.input(Input::ResumeWorker {
        req,
        name: "w1".into(),
    });
    assert_eq!(after.assigned_to(1).len(), 1);
    assert!(after.drained.is_empty(), "the resume is written");
}

#[test]
fn a_drained_worker_can_be_resumed_while_away_but_not_drained() {
    let mut b = Bench::new(8);
    b.join(1, worker("w1", 1, 0));
    let drain = |b: &mut Bench, drain: bool| {
        let req = b.fresh_req();
        let name = "w1".to_string();
        b.input(if drain {
            Input::DrainWorker { req, name }
        } else {
            Input::ResumeWorker { req, name }
        });
        b.replies.last().unwrap().1.clone()
    };
    assert_eq!(drain(&mut b, true), Reply::Drain(Ok(())));
    b.input(Input::WorkerLeave { session: 1 });
    assert_eq!(drain(&mut b, false), Reply::Drain(Ok(())));
    assert!(b.drained.is_empty());
    assert_eq!(
        drain(&mut b, true),
        Reply::Drain(Err(DrainError::NotConnected))
    );
    assert_eq!(
        drain(&mut b, false),
        Reply::Drain(Err(DrainError::NotConnected))
    );
    let states = worker_events(&b, "w1");
    assert_eq!(
        states.last(),
        Some(&WorkerEventState::Resumed),
        "{states:?}"
    );
}

fn schedule_changes(b: &Bench) -> Vec<(ScheduleChange, Option<TaskId>)> {
    b.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Schedule {
                change, task_id, ..
            } => Some((*change, *task_id)),
            _ => None,
        })
        .collect()
}

#[test]
fn schedule_changes_and_fires_are_events() {
    let mut b = Bench::new(6);
    let spec = |overlap| ScheduleSpec {
        name: "tick".into(),
        trigger: Trigger::Every {
            every_ms: 60_000,
            anchor: 0,
        },
        overlap,
        misfire: Misfire::Skip,
        max_catch_up: 1,
        template: Arc::new(exec_def("cron")),
    };
    let op = |b: &mut Bench, op| {
        let req = b.fresh_req();
        b.input(Input::Schedule { req, op });
    };
    op(&mut b, ScheduleOp::Put(spec(Overlap::Allow)));
    op(&mut b, ScheduleOp::Put(spec(Overlap::Skip)));
    op(&mut b, ScheduleOp::Pause(Scoped::default_ns("tick")));
    op(&mut b, ScheduleOp::Pause(Scoped::default_ns("tick")));
    op(&mut b, ScheduleOp::Resume(Scoped::default_ns("tick")));
    op(&mut b, ScheduleOp::Run(Scoped::default_ns("tick")));
    // The manual run is still queued (no worker): the next slot is skipped by overlap.
    b.advance_ms(60_000);
    op(&mut b, ScheduleOp::Delete(Scoped::default_ns("tick")));
    let changes = schedule_changes(&b);
    let kinds: Vec<ScheduleChange> = changes.iter().map(|c| c.0).collect();
    assert_eq!(
        kinds,
        vec![
            ScheduleChange::Created,
            ScheduleChange::Updated,
            ScheduleChange::Paused,
            ScheduleChange::Resumed,
            ScheduleChange::Fired,
            ScheduleChange::Skipped,
            ScheduleChange::Deleted
        ]
    );
    let fired = changes[4].1.expect("a fire names its task");
    assert!(b.tasks.contains_key(&fired));
}

#[test]
fn a_fire_of_a_template_with_an_idempotency_key_names_the_task_it_got() {
    let mut b = Bench::new(11);
    let spec = ScheduleSpec {
        name: "once".into(),
        trigger: Trigger::Every {
            every_ms: 3_600_000,
            anchor: 0,
        },
        overlap: Overlap::Allow,
        misfire: Misfire::Skip,
        max_catch_up: 1,
        template: Arc::new(TaskDef {
            idempotency_key: Some("nightly-report".into()),
            ..exec_def("cron")
        }),
    };
    for op in [
        ScheduleOp::Put(spec),
        ScheduleOp::Run(Scoped::default_ns("once")),
        ScheduleOp::Run(Scoped::default_ns("once")),
    ] {
        let req = b.fresh_req();
        b.input(Input::Schedule { req, op });
    }
    let fired: Vec<TaskId> = schedule_changes(&b)
        .into_iter()
        .filter(|(c, _)| *c == ScheduleChange::Fired)
        .map(|(_, t)| t.expect("a fire names its task"))
        .collect();
    assert_eq!(fired.len(), 2);
    assert_eq!(
        fired[0], fired[1],
        "the second fire got the first task back"
    );
    assert_eq!(b.tasks.len(), 1);
}
