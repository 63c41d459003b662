//! Worker identity: one live session per name. A second registration of a live name is
//! refused and changes nothing (never a takeover, the running task is not started twice); the
//! name frees up when the session ends or falls silent for a whole lease (`lost`).

mod harness;

use drover_core::*;
use harness::*;

/// w1 (session 1) runs one task.
fn running() -> (Bench, TaskId) {
    let cfg = CoreConfig {
        suspect_after_ms: LEASE_MS / 4,
        ..config()
    };
    let mut b = Bench::with_config(21, cfg);
    b.join(1, worker("w1", 1, 0));
    let id = b.submit(1)[0];
    let r = b.attempt_ref(id);
    b.input(Input::Started {
        session: 1,
        attempt: r,
    });
    assert_eq!(b.state(id), TaskState::Running);
    (b, id)
}

fn joins(b: &Bench, name: &str) -> usize {
    b.events
        .iter()
        .filter(|e| {
            matches!(&e.kind, EventKind::Worker { name: n, state: WorkerEventState::Joined } if n == name)
        })
        .count()
}

#[test]
fn a_second_registration_of_a_live_name_is_refused_and_changes_nothing() {
    let (mut b, id) = running();
    let r = b.attempt_ref(id);
    let events = b.events.len();
    // An impostor (or a second process) registers as w1, even claiming the attempt.
    let refused = b.join_with(2, worker("w1", 4, 0), vec![r]);
    assert_eq!(refused, Err(JoinError::NameInUse("w1".into())));
    assert_eq!(b.events.len(), events, "a refused join writes nothing");
    assert!(b.sent.iter().all(|(s, _)| *s != 2), "nothing sent to it");
    // Its reports count for nothing; the first session keeps the task through many leases.
    b.input(Input::Finished {
        session: 2,
        attempt: r,
        outcome: Outcome {
            kind: AttemptOutcome::Failed,
            exit_code: Some(1),
            error: None,
            result: None,
        },
    });
    assert_eq!(b.state(id), TaskState::Running);
    for _ in 0..10 {
        b.advance_ms(LEASE_MS as i64 / 2);
        b.input(Input::Heartbeat {
            session: 1,
            held: vec![r],
        });
    }
    assert_eq!(b.tasks[&id].attempt, 1, "never started twice");
    assert_eq!(b.tasks[&id].worker.as_deref(), Some("w1"));
    b.finish(1, r, AttemptOutcome::Succeeded, Some(0));
    assert_eq!(b.state(id), TaskState::Succeeded);
    assert_eq!(joins(&b, "w1"), 1);
}

#[test]
fn a_suspect_session_still_holds_its_name() {
    let (mut b, _) = running();
    // Silent past suspicion but well within the lease.
    b.advance_ms(LEASE_MS as i64 * 3 / 4);
    let w = &b.core.workers()[0];
    assert_eq!(w.status, WorkerStatus::Suspect);
    assert!(b.join_with(2, worker("w1", 1, 0), vec![]).is_err());
}

#[test]
fn after_the_session_ends_the_name_is_free_and_the_attempt_reattaches() {
    let (mut b, id) = running();
    let r = b.attempt_ref(id);
    b.input(Input::WorkerLeave { session: 1 });
    assert_eq!(b.join_with(2, worker("w1", 1, 0), vec![r]), Ok(()));
    b.finish(2, r, AttemptOutcome::Succeeded, Some(0));
    assert_eq!(b.state(id), TaskState::Succeeded);
    assert_eq!(b.tasks[&id].attempt, 1, "re-attached, not restarted");
}

#[test]
fn a_lost_session_is_presumed_dead_and_replaced() {
    // A network cut the server has not noticed: the old stream is still open but silent.
    let (mut b, id) = running();
    b.advance_ms(LEASE_MS as i64 + 10);
    assert_eq!(b.core.workers()[0].status, WorkerStatus::Lost);
    assert_eq!(b.join_with(2, worker("w1", 1, 0), vec![]), Ok(()));
    assert_eq!(joins(&b, "w1"), 2);
    // The old session's words no longer count, and its end does not remove the new one.
    b.input(Input::WorkerLeave { session: 1 });
    assert_eq!(b.core.workers().len(), 1);
    assert_ne!(b.state(id), TaskState::Succeeded);
}
