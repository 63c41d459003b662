//! `MemStore`: the in-memory backend, for tests and the simulator. Same semantics as SQLite,
//! including the errors that make a batch fail as a whole.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use drover_core::{
    AttemptRecord, Event, LogChunk, Micros, Snapshot, TaskId, TaskRecord, TaskState, Write,
};

use crate::batch::{Batch, RowOp};
use crate::leadership::{ClusterView, Epoch, Leadership, Member};
use crate::solo::Solo;
use crate::{
    AuditQuery, AuditRecord, DeliveryRecord, PrunedTasks, Store, StoreError, TaskQuery,
    WebhookRecord,
};

#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
    solo: Solo,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: BTreeMap<TaskId, TaskRecord>,
    attempts: BTreeMap<(TaskId, u32), AttemptRecord>,
    events: BTreeMap<u64, Event>,
    /// Per attempt, in write order.
    logs: BTreeMap<(TaskId, u32), Vec<LogChunk>>,
    /// In creation order.
    webhooks: Vec<WebhookRecord>,
    /// In write order.
    deliveries: Vec<DeliveryRecord>,
    audit: Vec<AuditRecord>,
    flows: BTreeMap<TaskId, drover_core::FlowRecord>,
    queues: BTreeMap<drover_core::Scoped, drover_core::QueueConfig>,
    workflows: BTreeMap<String, drover_core::dag::WorkflowRecord>,
    schedules: BTreeMap<drover_core::Scoped, drover_core::schedule::ScheduleRecord>,
    drained_workers: std::collections::BTreeSet<String>,
    tokens: BTreeMap<String, crate::TokenRecord>,
    /// max(seq) + 1 over every task ever inserted, pruned ones included (SQLite's
    /// `meta.next_task_seq`), so retention never makes numbering go back.
    next_task_seq: u64,
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
        for (rec, op) in &b.tasks {
            let exists = self.tasks.contains_key(&rec.id);
            let is_new = *op == RowOp::Insert;
            if is_new && exists {
                return Err(StoreError::Backend(format!(
                    "task {} already exists (inserted twice)",
                    rec.id
                )));
            }
            if !is_new && !exists {
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
        for (rec, op) in b.tasks {
            if op == RowOp::Insert {
                self.next_task_seq = self.next_task_seq.max(rec.seq.saturating_add(1));
                self.tasks.insert(rec.id, rec);
            } else if let Some(old) = self.tasks.get_mut(&rec.id) {
                update_state(old, rec);
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
        for f in b.flows {
            self.flows.insert(f.task_id, f);
        }
        for q in b.queues {
            self.queues.insert(q.key(), q);
        }
        for w in b.workflows {
            self.workflows.insert(w.id.clone(), w);
        }
        for (name, s) in b.schedules {
            match s {
                Some(s) => {
                    self.schedules.insert(name, s);
                }
                None => {
                    self.schedules.remove(&name);
                }
            }
        }
        for (name, drained) in b.drains {
            if drained {
                self.drained_workers.insert(name);
            } else {
                self.drained_workers.remove(&name);
            }
        }
    }
}

/// A single node: it always leads (`solo`).
#[async_trait]
impl Leadership for MemStore {
    async fn elect(&self, member: &Member, lease: Duration) -> Result<Option<Epoch>, StoreError> {
        Ok(Some(self.solo.elect(member, lease)))
    }

    async fn renew(&self, epoch: Epoch, lease: Duration) -> Result<bool, StoreError> {
        Ok(self.solo.renew(epoch, lease))
    }

    async fn resign(&self, epoch: Epoch) -> Result<(), StoreError> {
        self.solo.resign(epoch);
        Ok(())
    }

    async fn heartbeat(&self, member: &Member) -> Result<(), StoreError> {
        self.solo.heartbeat(member);
        Ok(())
    }

    async fn cluster(&self) -> Result<ClusterView, StoreError> {
        Ok(self.solo.cluster())
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
            .map(|t| {
                (
                    snapshot_record(t),
                    g.attempts.get(&(t.id, t.attempt)).cloned(),
                )
            })
            .collect();
        Ok(Snapshot {
            tasks,
            next_task_seq: g.next_task_seq,
            next_event_seq: g.events.keys().next_back().map_or(1, |s| s + 1),
            flows: g
                .flows
                .values()
                .filter(|f| {
                    g.tasks
                        .get(&f.task_id)
                        .is_some_and(|t| !t.state.is_terminal())
                })
                .cloned()
                .collect(),
            queues: g.queues.values().cloned().collect(),
            schedules: g.schedules.values().cloned().collect(),
            // Read by the server from the workflows and tasks, not by the store.
            workflows_ended: Vec::new(),
            drained_workers: g.drained_workers.iter().cloned().collect(),
            idempotency_keys: {
                let mut keyed: Vec<&TaskRecord> = g
                    .tasks
                    .values()
                    .filter(|t| t.def.idempotency_key.is_some())
                    .collect();
                keyed.sort_by_key(|t| t.seq);
                keyed
                    .into_iter()
                    .filter_map(|t| {
                        let k = t.def.idempotency_key.as_ref()?;
                        Some((t.def.scoped(k), t.id))
                    })
                    .collect()
            },
        })
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut batch = Batch::new(writes);
        let mut g = self.lock();
        self.solo.check()?;
        let bodies = batch
            .copy_sources()
            .into_iter()
            .filter_map(|id| Some((id, g.tasks.get(&id)?.def.spec.clone())))
            .collect();
        batch.fill_copies(&bodies)?;
        g.check(&batch)?;
        g.apply(batch);
        Ok(())
    }

    async fn task_defs(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, std::sync::Arc<drover_core::TaskDef>)>, StoreError> {
        let g = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| Some((*id, g.tasks.get(id)?.def.clone())))
            .collect())
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
            .filter(|t| in_namespaces(query.namespaces.as_deref(), &t.def.namespace))
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

    async fn count_by_state(
        &self,
        namespaces: Option<&[String]>,
    ) -> Result<BTreeMap<TaskState, u64>, StoreError> {
        let mut out = BTreeMap::new();
        let g = self.lock();
        for t in g
            .tasks
            .values()
            .filter(|t| in_namespaces(namespaces, &t.def.namespace))
        {
            *out.entry(t.state).or_insert(0) += 1;
        }
        Ok(out)
    }

    async fn prune_events(&self, before: Micros) -> Result<u64, StoreError> {
        let mut g = self.lock();
        self.solo.check()?;
        let Some(&newest) = g.events.keys().next_back() else {
            return Ok(0);
        };
        let boundary = g
            .events
            .values()
            .find(|e| e.at >= before)
            .map_or(newest, |e| e.seq)
            .min(newest);
        let keep = g.events.split_off(&boundary);
        let n = g.events.len() as u64;
        g.events = keep;
        Ok(n)
    }

    async fn last_event_seq(&self) -> Result<u64, StoreError> {
        Ok(self.lock().events.keys().next_back().copied().unwrap_or(0))
    }

    async fn insert_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.webhooks.iter().any(|w| w.id == webhook.id) {
            return Err(StoreError::Backend(format!(
                "webhook {} already exists",
                webhook.id
            )));
        }
        g.webhooks.push(webhook.clone());
        Ok(())
    }

    async fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        Ok(self.lock().webhooks.clone())
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let before = g.webhooks.len();
        g.webhooks.retain(|w| w.id != id);
        let found = g.webhooks.len() != before;
        if found {
            g.deliveries.retain(|d| d.webhook_id != id);
        }
        Ok(found)
    }

    async fn record_deliveries(
        &self,
        deliveries: Vec<DeliveryRecord>,
        cursors: Vec<(String, u64)>,
    ) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.deliveries.extend(deliveries);
        for (id, seq) in cursors {
            if let Some(w) = g.webhooks.iter_mut().find(|w| w.id == id) {
                w.cursor = w.cursor.max(seq);
            }
        }
        Ok(())
    }

    async fn deliveries(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        Ok(self
            .lock()
            .deliveries
            .iter()
            .rev()
            .filter(|d| d.webhook_id == webhook_id)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn prune_deliveries(&self, before: Micros) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let n = g.deliveries.len();
        g.deliveries.retain(|d| d.at >= before);
        Ok((n - g.deliveries.len()) as u64)
    }

    async fn prune_tasks(
        &self,
        finished_before: Micros,
        limit: usize,
    ) -> Result<PrunedTasks, StoreError> {
        let mut g = self.lock();
        self.solo.check()?;
        if limit == 0 {
            return Ok(PrunedTasks::default());
        }
        let (mut due, workflows) = g.due_workflows(finished_before, limit);
        let plain = g.due_tasks(finished_before, limit.saturating_sub(due.len()));
        due.extend(plain);
        let keys = g.remove_pruned(&due, workflows);
        Ok(PrunedTasks {
            tasks: due.len() as u64,
            keys,
        })
    }

    async fn flow(&self, id: TaskId) -> Result<Option<drover_core::FlowRecord>, StoreError> {
        Ok(self.lock().flows.get(&id).cloned())
    }

    async fn queue_configs(&self) -> Result<Vec<drover_core::QueueConfig>, StoreError> {
        Ok(self.lock().queues.values().cloned().collect())
    }

    async fn workflow(
        &self,
        id: &str,
    ) -> Result<Option<drover_core::dag::WorkflowRecord>, StoreError> {
        Ok(self.lock().workflows.get(id).cloned())
    }

    async fn workflows(
        &self,
        limit: usize,
        namespaces: Option<&[String]>,
    ) -> Result<Vec<drover_core::dag::WorkflowRecord>, StoreError> {
        let g = self.lock();
        let mut v: Vec<_> = g
            .workflows
            .values()
            .filter(|w| in_namespaces(namespaces, &w.namespace))
            .cloned()
            .collect();
        v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        v.truncate(limit);
        Ok(v)
    }

    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        let mut g = self.lock();
        for mut r in records {
            r.seq = g.audit.last().map_or(1, |l| l.seq + 1);
            g.audit.push(r);
        }
        Ok(())
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let g = self.lock();
        let hits = g.audit.iter().rev().filter(|r| query.matches(r));
        Ok(hits.take(query.limit).cloned().collect())
    }

    async fn prune_audit(&self, before: Micros) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let n = g.audit.len();
        g.audit.retain(|r| r.at >= before);
        Ok((n - g.audit.len()) as u64)
    }

    async fn insert_token(&self, token: &crate::TokenRecord) -> Result<bool, StoreError> {
        let mut g = self.lock();
        if g.tokens.contains_key(&token.name) || g.tokens.values().any(|t| t.hash == token.hash) {
            return Ok(false);
        }
        g.tokens.insert(token.name.clone(), token.clone());
        Ok(true)
    }

    async fn tokens(&self) -> Result<Vec<crate::TokenRecord>, StoreError> {
        Ok(self.lock().tokens.values().cloned().collect())
    }

    async fn delete_token(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.lock().tokens.remove(name).is_some())
    }
}

/// `Store::prune_tasks`, in the order SQLite takes things (see `sqlite::retention`).
impl Inner {
    /// Whole workflows first, as SQLite walks them: created before the cutoff, oldest first,
    /// at most PRUNE_WORKFLOW_SCAN, until `limit` tasks are due; each with its tasks by id.
    /// Returns the due tasks and workflows.
    fn due_workflows(&self, before: Micros, limit: usize) -> (Vec<TaskId>, Vec<String>) {
        let mut tasks_of: BTreeMap<&str, Vec<TaskId>> = BTreeMap::new();
        for f in self.flows.values() {
            if let Some((w, _)) = &f.spec.workflow {
                tasks_of.entry(w.as_str()).or_default().push(f.task_id);
            }
        }
        let mut candidates: Vec<_> = self
            .workflows
            .values()
            .filter(|w| w.created_at < before)
            .collect();
        candidates.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let mut due: Vec<TaskId> = Vec::new();
        let mut workflows = Vec::new();
        for w in candidates.into_iter().take(crate::PRUNE_WORKFLOW_SCAN) {
            if due.len() >= limit {
                break;
            }
            let tasks = tasks_of.get(w.id.as_str()).map_or(&[][..], Vec::as_slice);
            let whole_due = w
                .nodes
                .iter()
                .map(|n| &n.task_id)
                .chain(tasks)
                .all(|id| self.tasks.get(id).is_none_or(|t| is_due(t, before)));
            if whole_due {
                due.extend(tasks.iter().filter(|id| self.tasks.contains_key(id)));
                workflows.push(w.id.clone());
            }
        }
        (due, workflows)
    }

    /// Then up to `limit` tasks of no workflow: by terminal state, then oldest created (id)
    /// first, created by the cutoff.
    fn due_tasks(&self, before: Micros, limit: usize) -> Vec<TaskId> {
        let newest = crate::newest_id_created_by(before);
        let state_rank = |s: TaskState| TaskState::ALL.iter().position(|x| *x == s);
        let of_a_workflow = |id: &TaskId| {
            self.flows
                .get(id)
                .and_then(|f| f.spec.workflow.as_ref())
                .is_some_and(|(w, _)| self.workflows.contains_key(w))
        };
        let mut plain: Vec<(Option<usize>, TaskId)> = self
            .tasks
            .values()
            .filter(|t| is_due(t, before))
            .filter(|t| newest.is_some_and(|n| t.id <= n))
            .filter(|t| !of_a_workflow(&t.id))
            .map(|t| (state_rank(t.state), t.id))
            .collect();
        plain.sort_unstable();
        plain.truncate(limit);
        plain.into_iter().map(|(_, id)| id).collect()
    }

    /// Removes the due tasks with what hangs off them, then the workflows; returns the
    /// tasks' idempotency keys.
    fn remove_pruned(
        &mut self,
        due: &[TaskId],
        workflows: Vec<String>,
    ) -> Vec<(drover_core::Scoped, TaskId)> {
        let mut keys = Vec::new();
        for id in due {
            let t = self.tasks.remove(id).expect("listed as due");
            if let Some(k) = &t.def.idempotency_key {
                keys.push((t.def.scoped(k), *id));
            }
            remove_per_attempt(&mut self.attempts, *id);
            remove_per_attempt(&mut self.logs, *id);
            self.flows.remove(id);
        }
        for w in workflows {
            self.flows
                .retain(|_, f| f.spec.workflow.as_ref().is_none_or(|(id, _)| *id != w));
            self.workflows.remove(&w);
        }
        keys
    }
}

/// Terminal and finished before the cutoff.
fn is_due(t: &TaskRecord, before: Micros) -> bool {
    t.state.is_terminal() && t.finished_at.is_some_and(|f| f < before)
}

/// Removes every entry of one task from a map keyed by (task, attempt).
fn remove_per_attempt<V>(m: &mut BTreeMap<(TaskId, u32), V>, id: TaskId) {
    // `m` keeps what sorts before the task, `of_task` what sorts from it on (then dropped).
    let mut of_task = m.split_off(&(id, 0));
    if let Some(next) = id.0.checked_add(1) {
        m.append(&mut of_task.split_off(&(TaskId(next), 0)));
    }
}

/// Whether `namespace` passes a filter (`None`: every namespace).
fn in_namespaces(filter: Option<&[String]>, namespace: &str) -> bool {
    filter.is_none_or(|ns| ns.iter().any(|n| n == namespace))
}

/// An update of a stored task: only the mutable state; the definition, seq and creation time
/// stay as first written, except a placement that changed (a broadcast's shard), and a result
/// stays once written.
fn update_state(old: &mut TaskRecord, rec: TaskRecord) {
    let TaskRecord {
        id: _,
        seq: _,
        def,
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
        result,
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
    if result.is_some() {
        old.result = result;
    }
    if !def.placement.is_default() && def.placement != old.def.placement {
        let mut d = (*old.def).clone();
        d.placement = def.placement.clone();
        old.def = Arc::new(d);
    }
}

/// A task as the snapshot has it: its definition lean (`TaskDef::lean`), as the SQL stores
/// read it.
fn snapshot_record(t: &TaskRecord) -> TaskRecord {
    let mut t = t.clone();
    t.def = std::sync::Arc::new(t.def.lean());
    t
}
