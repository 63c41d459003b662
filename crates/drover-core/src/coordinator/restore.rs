//! Rebuilding the coordinator from the store's snapshot at start.

use super::flow::FlowRecord;
use super::io::Snapshot;
use super::ready::QueueConfig;
use super::tasks::ActiveTask;
use super::{ms, Coordinator};
use crate::model::{Micros, TaskId, TaskState};

impl Coordinator {
    pub(super) fn restore(&mut self, now: Micros, snap: Snapshot) {
        let grace = now + ms(self.cfg.restart_grace_ms);
        for (mut rec, attempt) in snap.tasks {
            debug_assert!(!rec.state.is_terminal());
            // Shared by shape, without a body (the SQL stores load only its stand-in).
            rec.def = self.defs.share(&rec.def);
            let mut t = ActiveTask::new(rec, attempt);
            match t.rec.state {
                // Enqueued below, in submission order, once the gates are known.
                TaskState::Queued => {}
                TaskState::Pending => self.delayed.arm(t.rec.not_before.unwrap_or(now), t.rec.id),
                // Every lease gets a grace period for its worker to re-attach.
                _ => {
                    t.lease_expires = Some(grace);
                    self.leases.arm(grace, t.rec.id);
                }
            }
            self.tasks.insert(t);
        }
        self.workers.restore_drained(snap.drained_workers);
        for (k, id) in snap.idempotency_keys {
            self.idempotency.restore(k, id);
        }
        for r in snap.flows {
            self.restore_flow(r);
        }
        for q in snap.queues {
            self.restore_queue(now, q);
        }
        // Leased tasks hold their concurrency keys' slots before any queued task is let in.
        for t in self.tasks.values().filter(|t| t.rec.state.is_leased()) {
            if let Some((k, _)) = t.rec.def.key_limit() {
                self.ready.hold_key(t.ready_key(), &k);
            }
        }
        let mut queued: Vec<(u64, TaskId)> = self
            .tasks
            .values()
            .filter(|t| t.rec.state == TaskState::Queued)
            .map(|t| (t.rec.seq, t.rec.id))
            .collect();
        queued.sort();
        for (_, id) in queued {
            self.enqueue(id);
        }
        let tasks = &self.tasks;
        self.schedules
            .restore(now, snap.schedules, |id| tasks.contains(id));
        let nodes = self
            .tasks
            .ids()
            .filter_map(|id| Some((self.deps.workflow_of(id)?, *id)));
        self.workflows
            .restore(nodes, snap.workflows_ended, &self.tasks);
    }

    fn restore_flow(&mut self, mut r: FlowRecord) {
        let Some(t) = self.tasks.get(&r.task_id) else {
            return;
        };
        let (seq, state, id) = (t.rec.seq, t.rec.state, r.task_id);
        let serial = r.spec.serial_key.as_ref().map(|k| t.rec.def.scoped(k));
        // Upstreams resolve in the same transaction as their terminal write, so every
        // upstream still waited on is active; anything else is dropped defensively.
        r.waiting.retain(|u| self.tasks.contains(u));
        if let Some(k) = &serial {
            self.ready.join_line(k, seq, id);
        }
        if let Some(d) = r.spec.deadline {
            if matches!(state, TaskState::Pending | TaskState::Queued) {
                self.deadlines.arm(d, id);
            }
        }
        self.deps.add(r, true);
    }

    /// A configured queue admits its leased tasks; queued ones pass its gate afterwards.
    fn restore_queue(&mut self, now: Micros, q: QueueConfig) {
        if let Some(s) = q.strategy {
            self.cfg.queue_strategies.insert(q.key(), s);
        }
        let leased: Vec<_> = self
            .tasks
            .values()
            .filter(|t| t.rec.state.is_leased() && t.rec.def.queue_key() == q.key())
            .map(|t| t.ready_key())
            .collect();
        self.ready
            .configure(q, leased.into_iter(), std::iter::empty(), (now, true));
    }
}
