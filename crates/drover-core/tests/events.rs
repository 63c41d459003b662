//! Every state change is one event: workflows (aggregate state, across a restart), workers
//! (silence timers: suspect, lost, alive; drain), schedules (operator changes and fires).

mod harness;

use std::sync::Arc;

use drover_core::cron::{Misfire, Overlap, ScheduleSpec, Trigger};
use drover_core::dag::{WorkflowNode, WorkflowRecord};
use drover_core::*;
use harness::*;

fn workflow_events(b: &Bench, id: &str) -> Vec<WorkflowState> {
    b.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Workflow { workflow_id, state } if workflow_id == id => Some(*state),
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

/// Submits the workflow `a -> {b, c}` as "wf1"; returns the node ids (a, b, c).
fn submit_fork(b: &mut Bench) -> [TaskId; 3] {
    let ids = [b.fresh_id(), b.fresh_id(), b.fresh_id()];
    let names = ["a", "b", "c"];
    let ups: [Vec<TaskId>; 3] = [vec![], vec![ids[0]], vec![ids[0]]];
    let tasks = (0..3)
        .map(|i| FlowTask {
            task: NewTask {
                id: ids[i],
                def: exec_def("q"),
                not_before: None,
            },
            flow: FlowSpec {
                after: ups[i].clone(),
                workflow: Some(("wf1".into(), names[i].into())),
                ..FlowSpec::default()
            },
            upstream_states: vec![],
        })
        .collect();
    let record = WorkflowRecord {
        id: "wf1".into(),
        name: "fork".into(),
        created_at: b.now,
        nodes: (0..3)
            .map(|i| WorkflowNode {
                name: names[i].into(),
                task_id: ids[i],
                after: if i == 0 { vec![] } else { vec!["a".into()] },
            })
            .collect(),
    };
    let req = b.fresh_req();
    b.input(Input::SubmitFlow {
        req,
        tasks,
        workflow: Some(record),
    });
    ids
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
    let mut after = Bench::from_snapshot(3, b.now, b.snapshot());
    after.tasks = b.tasks.clone();
    after.events = b.events.clone();
    after.workflows = b.workflows.clone();
    assert_eq!(
        after.core.workflow_state("wf1"),
        Some(WorkflowState::Running)
    );
    let held = vec![after.attempt_ref(y)];
    after.input(Input::WorkerJoin {
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
    assert_eq!(b.core.workers()[0].silence, Silence::Heard);
    assert!(b.core.poll_timeout().is_some_and(|t| t <= b.now + 1000));
    b.advance_ms(1);
    assert_eq!(b.core.workers()[0].silence, Silence::Suspect);
    b.advance_ms(LEASE_MS as i64);
    assert_eq!(b.core.workers()[0].silence, Silence::Lost);
    b.input(Input::Heartbeat {
        session: 1,
        held: vec![],
    });
    assert_eq!(b.core.workers()[0].silence, Silence::Heard);
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
    let mut after = Bench::from_snapshot(7, b.now, b.snapshot());
    after.drained = b.drained.clone();
    after.join(1, worker("w1", 2, 0));
    let id = after.submit_def(exec_def("q"));
    assert!(
        after.assigned_to(1).is_empty(),
        "a drained worker took {id}"
    );
    assert_eq!(after.core.workers()[0].state(), "drained");
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
    op(&mut b, ScheduleOp::Pause("tick".into(), true));
    op(&mut b, ScheduleOp::Pause("tick".into(), true));
    op(&mut b, ScheduleOp::Pause("tick".into(), false));
    op(&mut b, ScheduleOp::Run("tick".into()));
    // The manual run is still queued (no worker): the next slot is skipped by overlap.
    b.advance_ms(60_000);
    op(&mut b, ScheduleOp::Delete("tick".into()));
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
