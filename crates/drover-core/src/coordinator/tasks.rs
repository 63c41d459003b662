//! The active set: every non-terminal task with its current attempt and the in-memory facts
//! about it (lease deadline, log bytes kept). Terminal tasks live only in the store.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use crate::model::{
    AttemptRecord, AttemptRef, EventKind, LogStream, Micros, Scoped, TaskId, TaskRecord, TaskState,
};

/// A queued task's place in the ready index: higher priority first, then submission order.
pub(super) type ReadyKey = (Reverse<i32>, u64, TaskId);

#[derive(Debug)]
pub(super) struct ActiveTask {
    pub(super) rec: TaskRecord,
    /// Boxed: a queued task has none, and should not pay for one.
    pub(super) attempt: Option<Box<AttemptRecord>>,
    /// When the current lease ends (in memory only: after a restart every lease gets
    /// `restart_grace_ms`). `None` unless leased.
    pub(super) lease_expires: Option<Micros>,
    pub(super) log_kept: LogKept,
}

/// Output bytes kept of the current attempt, per stream. Past the limit the count is
/// `limit + 1`: the cut is marked once.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LogKept {
    stdout: usize,
    stderr: usize,
}

impl LogKept {
    pub(super) fn of(&mut self, stream: LogStream) -> &mut usize {
        match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        }
    }
}

impl ActiveTask {
    pub(super) fn new(rec: TaskRecord, attempt: Option<AttemptRecord>) -> Self {
        ActiveTask {
            rec,
            attempt: attempt.map(Box::new),
            lease_expires: None,
            log_kept: LogKept::default(),
        }
    }

    pub(super) fn ready_key(&self) -> ReadyKey {
        ready_key(&self.rec)
    }

    /// Only for a task already out of the set (`finish`): one in it changes state through
    /// `Tasks::set_state`, which keeps the waiting counts.
    pub(super) fn set_state(&mut self, state: TaskState, now: Micros) {
        self.rec.state = state;
        self.rec.updated_at = now;
    }

    /// Pending or queued: counted against its queue's `max_queued`.
    fn is_waiting(&self) -> bool {
        !self.rec.state.is_leased()
    }

    /// Takes the attempt away from its worker (the lease is void from now on).
    pub(super) fn release(&mut self) {
        self.rec.lease = None;
        self.rec.worker = None;
        self.lease_expires = None;
    }

    /// Whether `r` names the current attempt, leased to `worker`.
    pub(super) fn is_leased_to(&self, r: &AttemptRef, worker: &str) -> bool {
        self.rec.state.is_leased()
            && same_attempt(&self.rec, r)
            && self.rec.worker.as_deref() == Some(worker)
    }

    pub(super) fn attempt_ref(&self) -> AttemptRef {
        AttemptRef {
            task_id: self.rec.id,
            attempt: self.rec.attempt,
            lease: self.rec.lease.unwrap_or_default(),
        }
    }

    /// The task event of its current state; `emit` fills in the workflow.
    pub(super) fn event(&self, reason: Option<String>) -> EventKind {
        task_event(&self.rec, reason)
    }
}

pub(super) fn ready_key(r: &TaskRecord) -> ReadyKey {
    (Reverse(r.def.priority), r.seq, r.id)
}

pub(super) fn same_attempt(rec: &TaskRecord, r: &AttemptRef) -> bool {
    rec.attempt == r.attempt && rec.lease == Some(r.lease)
}

pub(super) fn task_event(rec: &TaskRecord, reason: Option<String>) -> EventKind {
    EventKind::Task {
        task_id: rec.id,
        namespace: rec.def.namespace.clone(),
        queue: rec.def.queue.clone(),
        state: rec.state,
        attempt: rec.attempt,
        worker: rec.worker.clone(),
        reason,
        workflow: None,
        result_bytes: rec.result.as_ref().map(|r| r.len() as u64),
    }
}

/// The active tasks by id, with how many of them wait (pending or queued) per queue and in
/// all: what `backlog.rs` decides a submit's admission by, in O(1).
#[derive(Debug, Default)]
pub(super) struct Tasks {
    /// Boxed: a B-tree node then moves small entries (a million queued tasks fill its nodes
    /// about half), not whole records.
    by_id: BTreeMap<TaskId, Box<ActiveTask>>,
    /// Waiting tasks per queue; a queue with none has no entry (unique names leave nothing).
    waiting: HashMap<Scoped, u64>,
    waiting_total: u64,
}

impl Tasks {
    pub(super) fn get(&self, id: &TaskId) -> Option<&ActiveTask> {
        self.by_id.get(id).map(|t| &**t)
    }

    pub(super) fn get_mut(&mut self, id: &TaskId) -> Option<&mut ActiveTask> {
        self.by_id.get_mut(id).map(|t| &mut **t)
    }

    /// A task the caller knows is active.
    pub(super) fn expect(&self, id: &TaskId) -> &ActiveTask {
        self.get(id).expect("an active task")
    }

    pub(super) fn expect_mut(&mut self, id: &TaskId) -> &mut ActiveTask {
        self.get_mut(id).expect("an active task")
    }

    pub(super) fn contains(&self, id: &TaskId) -> bool {
        self.by_id.contains_key(id)
    }

    pub(super) fn insert(&mut self, t: ActiveTask) {
        if t.is_waiting() {
            self.count(t.rec.def.queue_key(), true);
        }
        if let Some(old) = self.by_id.insert(t.rec.id, Box::new(t)) {
            if old.is_waiting() {
                self.count(old.rec.def.queue_key(), false);
            }
        }
    }

    pub(super) fn remove(&mut self, id: &TaskId) -> Option<ActiveTask> {
        let t = self.by_id.remove(id)?;
        if t.is_waiting() {
            self.count(t.rec.def.queue_key(), false);
        }
        Some(*t)
    }

    /// Moves an active task to `state` (not terminal: `finish` takes it out first), keeping
    /// the waiting counts; returns it for the caller's next changes.
    pub(super) fn set_state(
        &mut self,
        id: &TaskId,
        state: TaskState,
        now: Micros,
    ) -> &mut ActiveTask {
        let t = self.by_id.get_mut(id).expect("an active task");
        let was = t.is_waiting();
        t.set_state(state, now);
        let is = t.is_waiting();
        if was != is {
            let queue = t.rec.def.queue_key();
            self.count(queue, is);
        }
        self.expect_mut(id)
    }

    fn count(&mut self, queue: Scoped, up: bool) {
        if up {
            *self.waiting.entry(queue).or_default() += 1;
            self.waiting_total += 1;
            return;
        }
        self.waiting_total -= 1;
        if let Some(n) = self.waiting.get_mut(&queue) {
            *n -= 1;
            if *n == 0 {
                self.waiting.remove(&queue);
            }
        }
    }

    /// Tasks pending or queued in `queue`.
    pub(super) fn waiting_in(&self, queue: &Scoped) -> u64 {
        self.waiting.get(queue).copied().unwrap_or(0)
    }

    /// Tasks pending or queued in every queue.
    pub(super) fn waiting_total(&self) -> u64 {
        self.waiting_total
    }

    /// The waiting counts recounted from the records differ from the kept ones: which.
    pub(super) fn check_waiting(&self) -> Result<(), String> {
        let mut recount: HashMap<Scoped, u64> = HashMap::new();
        for t in self.by_id.values().filter(|t| t.is_waiting()) {
            *recount.entry(t.rec.def.queue_key()).or_default() += 1;
        }
        let total: u64 = recount.values().sum();
        if recount != self.waiting || total != self.waiting_total {
            return Err(format!(
                "waiting counts {:?} (total {}), recounted {recount:?} (total {total})",
                self.waiting, self.waiting_total
            ));
        }
        Ok(())
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &ActiveTask> {
        self.by_id.values().map(|t| &**t)
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut ActiveTask> {
        self.by_id.values_mut().map(|t| &mut **t)
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = &TaskId> {
        self.by_id.keys()
    }

    /// Whether a task is in `state` (false if not active).
    pub(super) fn is_in(&self, id: &TaskId, state: TaskState) -> bool {
        self.by_id.get(id).is_some_and(|t| t.rec.state == state)
    }
}
