//! `MemStore`: the in-memory backend, for tests and the simulator. Same semantics as SQLite,
//! including the errors that make a batch fail as a whole.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use drover_core::{AttemptRecord, Event, LogChunk, Snapshot, TaskId, TaskRecord, TaskState, Write};

use crate::batch::Batch;
use crate::{Store, StoreError, TaskQuery};

#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: BTreeMap<TaskId, TaskRecord>,
    attempts: BTreeMap<(TaskId, u32), AttemptRecord>,
    events: BTreeMap<u64, Event>,
    /// Per attempt, in write order.
    logs: BTreeMap<(TaskId, u32), Vec<LogChunk>>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied batch: `commit` checks
        // the whole batch before it changes anything.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Refuses the batch if SQLite would: inserting a task that exists, updating one that
    /// does not, or reusing an event sequence number.
    fn check(&self, b: &Batch) -> Result<(), StoreError> {
        for (rec, is_new) in &b.tasks {
            let exists = self.tasks.contains_key(&rec.id);
            if *is_new && exists {
                return Err(StoreError::Backend(format!(
                    "task {} already exists (inserted twice)",
                    rec.id
                )));
            }
            if !*is_new && !exists {
                return Err(StoreError::Backend(format!(
                    "update of unknown task {}",
                    rec.id
                )));
            }
        }
        let mut seqs = std::collections::BTreeSet::new();
        for e in &b.events {
            if self.events.contains_key(&e.seq) || !seqs.insert(e.seq) {
                return Err(StoreError::Backend(format!(
                    "event seq {} already exists",
                    e.seq
                )));
            }
        }
        Ok(())
    }

    fn apply(&mut self, b: Batch) {
        for (rec, is_new) in b.tasks {
            if is_new {
                self.tasks.insert(rec.id, rec);
            } else if let Some(old) = self.tasks.get_mut(&rec.id) {
                // Only the mutable state: the definition, seq and creation time stay as
                // first written.
                let TaskRecord {
                    id: _,
                    seq: _,
                    def: _,
                    state,
                    attempt,
                    lost,
                    not_before,
                    worker,
                    lease,
                    created_at: _,
                    updated_at,
                    started_at,
                    finished_at,
                    exit_code,
                    error,
                } = rec;
                old.state = state;
                old.attempt = attempt;
                old.lost = lost;
                old.not_before = not_before;
                old.worker = worker;
                old.lease = lease;
                old.updated_at = updated_at;
                old.started_at = started_at;
                old.finished_at = finished_at;
                old.exit_code = exit_code;
                old.error = error;
            }
        }
        for a in b.attempts {
            self.attempts.insert((a.task_id, a.attempt), a);
        }
        for e in b.events {
            self.events.insert(e.seq, e);
        }
        for l in b.logs {
            self.logs.entry((l.task_id, l.attempt)).or_default().push(l);
        }
    }
}

#[async_trait]
impl Store for MemStore {
    async fn load_snapshot(&self) -> Result<Snapshot, StoreError> {
        let g = self.lock();
        let tasks = g
            .tasks
            .values()
            .filter(|t| !t.state.is_terminal())
            .map(|t| (t.clone(), g.attempts.get(&(t.id, t.attempt)).cloned()))
            .collect();
        Ok(Snapshot {
            tasks,
            next_task_seq: g.tasks.values().map(|t| t.seq + 1).max().unwrap_or(0),
            next_event_seq: g.events.keys().next_back().map_or(1, |s| s + 1),
        })
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let batch = Batch::new(writes);
        let mut g = self.lock();
        g.check(&batch)?;
        g.apply(batch);
        Ok(())
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.lock().tasks.get(&id).cloned())
    }

    async fn attempts(&self, id: TaskId) -> Result<Vec<AttemptRecord>, StoreError> {
        Ok(self
            .lock()
            .attempts
            .range((id, 0)..=(id, u32::MAX))
            .map(|(_, a)| a.clone())
            .collect())
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
        let g = self.lock();
        let upper = match query.before {
            Some(b) => std::ops::Bound::Excluded(b),
            None => std::ops::Bound::Unbounded,
        };
        Ok(g.tasks
            .range((std::ops::Bound::Unbounded, upper))
            .rev()
            .map(|(_, t)| t)
            .filter(|t| query.state.is_none_or(|s| t.state == s))
            .filter(|t| query.queue.as_ref().is_none_or(|q| &t.def.queue == q))
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn logs(&self, id: TaskId, attempt: u32) -> Result<Vec<LogChunk>, StoreError> {
        Ok(self
            .lock()
            .logs
            .get(&(id, attempt))
            .cloned()
            .unwrap_or_default())
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .lock()
            .events
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn count_by_state(&self) -> Result<BTreeMap<TaskState, u64>, StoreError> {
        let mut out = BTreeMap::new();
        for t in self.lock().tasks.values() {
            *out.entry(t.state).or_insert(0) += 1;
        }
        Ok(out)
    }
}
