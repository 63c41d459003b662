//! Workers joining, leaving, heartbeating and being drained, and their liveness timers.
//! Attempts are re-attached or renewed by lease, never decided by a worker's identity.

use std::collections::BTreeSet;

use super::io::{Effects, JoinError, SessionId, ToWorker, Write};
use super::workers::{Drain, DrainError};
use super::{ms, Coordinator};
use crate::model::{AttemptRef, EventKind, Micros, WorkerEventState, WorkerInfo, WorkerStatus};

impl Coordinator {
    pub(super) fn worker_join(
        &mut self,
        now: Micros,
        session: SessionId,
        info: WorkerInfo,
        held: Vec<AttemptRef>,
        fx: &mut Effects,
    ) -> Result<(), JoinError> {
        let name = info.name.clone();
        // One live session per name, never a takeover: a second registration is refused while
        // the first is connected and not lost. A session that ended (its stream closed, so
        // `WorkerLeave`) is gone; one silent for a whole lease (`lost`) is presumed dead (a
        // network cut the server has not noticed yet), and the new session replaces it (its
        // timer first). Its attempts live on only if the new session re-attaches them.
        if let Some(old) = self.workers.get(&name) {
            if old.status() != WorkerStatus::Lost {
                return Err(JoinError::NameInUse(name));
            }
            self.liveness.left(&name, &old.watch);
        }
        let watch = self.liveness.joined(&name, now, self.thresholds());
        self.workers.join(session, info, now, watch);
        let lease_until = now + ms(self.cfg.lease_ms);
        for r in held {
            match self.tasks.get_mut(&r.task_id) {
                Some(t) if t.rec.state.is_leased() && super::tasks::same_attempt(&t.rec, &r) => {
                    // Re-attach: the attempt lives on under this worker.
                    t.lease_expires = Some(lease_until);
                    self.leases.arm(lease_until, r.task_id);
                    if t.rec.worker.as_deref() != Some(&name) {
                        t.rec.worker = Some(name.clone());
                        self.write_task(r.task_id, false, fx);
                    }
                    let w = self.workers.get_mut(&name).expect("just joined");
                    w.held.insert(r.task_id, r.attempt);
                }
                _ => fx.sends.push((session, ToWorker::Cancel(r))),
            }
        }
        self.emit(
            now,
            EventKind::Worker {
                name,
                state: WorkerEventState::Joined,
            },
            fx,
        );
        Ok(())
    }

    pub(super) fn worker_leave(&mut self, now: Micros, session: SessionId, fx: &mut Effects) {
        // Its attempts keep their leases: it may reconnect and re-attach before they expire.
        if let Some(w) = self.workers.leave(session) {
            self.liveness.left(&w.info.name, &w.watch);
            self.emit_worker(now, &w.info.name, WorkerEventState::Left, fx);
        }
    }

    pub(super) fn heartbeat(
        &mut self,
        now: Micros,
        session: SessionId,
        held: Vec<AttemptRef>,
        fx: &mut Effects,
    ) {
        let Some(name) = self.workers.name_of(session).cloned() else {
            return;
        };
        self.heard(now, &name, fx);
        let lease_until = now + ms(self.cfg.lease_ms);
        let mut listed = BTreeSet::new();
        let w = self
            .workers
            .get_mut(&name)
            .expect("session maps to a worker");
        for r in &held {
            listed.insert(r.task_id);
            match self.tasks.get_mut(&r.task_id) {
                Some(t) if t.is_leased_to(r, &name) => t.lease_expires = Some(lease_until),
                // A cancelled attempt still dying: it keeps its credit until reported.
                _ if w.held.get(&r.task_id) == Some(&r.attempt) => {}
                _ => fx.sends.push((session, ToWorker::Cancel(*r))),
            }
        }
        // Drop attempts the worker no longer has and that are not live assignments (zombies of
        // cancel/reclaim). Live ones stay: an assignment may be on the wire.
        let tasks = &self.tasks;
        w.held.retain(|id, attempt| {
            listed.contains(id)
                || tasks.get(id).is_some_and(|t| {
                    t.rec.state.is_leased()
                        && t.rec.attempt == *attempt
                        && t.rec.worker.as_deref() == Some(name.as_str())
                })
        });
    }

    /// Any word from a worker: it is seen now.
    pub(super) fn touch(&mut self, now: Micros, session: SessionId, fx: &mut Effects) {
        if let Some(name) = self.workers.name_of(session).cloned() {
            self.heard(now, &name, fx);
        }
    }

    /// The worker spoke: a suspect or lost one is alive again.
    fn heard(&mut self, now: Micros, name: &str, fx: &mut Effects) {
        let t = self.thresholds();
        let Some(w) = self.workers.get_mut(name) else {
            return;
        };
        if let Some(state) = self.liveness.heard(name, &mut w.watch, now, t) {
            self.emit_worker(now, name, state, fx);
        }
    }

    /// Fires due silence timers: suspect, then lost.
    pub(super) fn liveness_due(&mut self, now: Micros, fx: &mut Effects) {
        let t = self.thresholds();
        while let Some(name) = self.liveness.pop_due(now) {
            let Some(w) = self.workers.get_mut(&name) else {
                continue;
            };
            if let Some(state) = self.liveness.examine(&name, &mut w.watch, now, t) {
                self.emit_worker(now, &name, state, fx);
            }
        }
    }

    /// Drains or resumes a worker; a change is durable and a worker event.
    pub(super) fn drain(
        &mut self,
        now: Micros,
        name: &str,
        drain: Drain,
        fx: &mut Effects,
    ) -> Result<(), DrainError> {
        if self.workers.drain(name, drain)? {
            let drained = drain == Drain::Start;
            fx.writes.push(Write::WorkerDrain {
                name: name.to_string(),
                drained,
            });
            let state = match drain {
                Drain::Start => WorkerEventState::Draining,
                Drain::Resume => WorkerEventState::Resumed,
            };
            self.emit_worker(now, name, state, fx);
        }
        Ok(())
    }
}
