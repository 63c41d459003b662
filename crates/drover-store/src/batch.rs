//! The in-batch dedup every backend applies before writing (see `Store::commit`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use drover_core::dag::WorkflowRecord;
use drover_core::{
    AttemptRecord, Event, FlowRecord, LogChunk, QueueConfig, TaskDef, TaskId, TaskRecord, TaskSpec,
    Write,
};

use crate::StoreError;

/// How a task's record reaches the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowOp {
    /// Its first write: a new row.
    Insert,
    /// A change of an existing row.
    Update,
}

/// A batch of writes with later writes of the same task or attempt folded into earlier ones.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The last record per task id, in order of first appearance; an insert if any write of
    /// that task in the batch was its first.
    pub tasks: Vec<(TaskRecord, RowOp)>,
    /// The last record per (task id, attempt), in order of first appearance.
    pub attempts: Vec<AttemptRecord>,
    /// In batch order.
    pub events: Vec<Event>,
    /// In batch order.
    pub logs: Vec<LogChunk>,
    /// The last flow record per task, in order of first appearance.
    pub flows: Vec<FlowRecord>,
    /// In batch order (later ones replace earlier ones when applied).
    pub queues: Vec<QueueConfig>,
    /// In batch order (later ones replace earlier ones when applied).
    pub workflows: Vec<WorkflowRecord>,
    /// Schedule upserts (`Some`) and deletions (`None`), in batch order.
    pub schedules: Vec<(
        drover_core::Scoped,
        Option<drover_core::schedule::ScheduleRecord>,
    )>,
    /// Drains (`true`) and resumes of workers, in batch order.
    pub drains: Vec<(String, bool)>,
}

impl Batch {
    pub fn new(writes: Vec<Write>) -> Batch {
        let mut b = Batch::default();
        let mut task_ix: HashMap<TaskId, usize> = HashMap::new();
        let mut attempt_ix: HashMap<(TaskId, u32), usize> = HashMap::new();
        let mut flow_ix: HashMap<TaskId, usize> = HashMap::new();
        for w in writes {
            match w {
                Write::Task { record, is_new } => {
                    let op = if is_new { RowOp::Insert } else { RowOp::Update };
                    match task_ix.entry(record.id) {
                        Entry::Occupied(e) => {
                            let slot = &mut b.tasks[*e.get()];
                            let inserted = slot.1 == RowOp::Insert || op == RowOp::Insert;
                            slot.0 = with_body_of(&slot.0, record);
                            if inserted {
                                slot.1 = RowOp::Insert;
                            }
                        }
                        Entry::Vacant(e) => {
                            e.insert(b.tasks.len());
                            b.tasks.push((record, op));
                        }
                    }
                }
                Write::Attempt(a) => match attempt_ix.entry((a.task_id, a.attempt)) {
                    Entry::Occupied(e) => b.attempts[*e.get()] = a,
                    Entry::Vacant(e) => {
                        e.insert(b.attempts.len());
                        b.attempts.push(a);
                    }
                },
                Write::Event(e) => b.events.push(e),
                Write::Log(l) => b.logs.push(l),
                Write::Flow(f) => match flow_ix.entry(f.task_id) {
                    Entry::Occupied(e) => b.flows[*e.get()] = f,
                    Entry::Vacant(e) => {
                        e.insert(b.flows.len());
                        b.flows.push(f);
                    }
                },
                Write::Queue(q) => b.queues.push(q),
                Write::Workflow(w) => b.workflows.push(w),
                Write::Schedule(s) => b.schedules.push((s.spec.key(), Some(s))),
                Write::ScheduleDeleted(n) => b.schedules.push((n, None)),
                Write::WorkerDrain { name, drained } => b.drains.push((name, drained)),
            }
        }
        b.fill_copies_from_batch(&task_ix);
        b
    }

    /// Broadcast copies inserted without a body (`TaskSpec::InStore`: the core does not
    /// keep bodies) whose task's insert is in this batch get its body here.
    fn fill_copies_from_batch(&mut self, task_ix: &HashMap<TaskId, usize>) {
        for i in 0..self.tasks.len() {
            let Some(group) = self.missing_body(i) else {
                continue;
            };
            let source = task_ix.get(&group).map(|&j| &self.tasks[j].0.def.spec);
            if let Some(spec) = source.filter(|s| !s.is_in_store()).cloned() {
                Arc::make_mut(&mut self.tasks[i].0.def).spec = spec;
            }
        }
    }

    /// The broadcast task of the `i`th record, if it is an insert still without a body.
    fn missing_body(&self, i: usize) -> Option<TaskId> {
        let (rec, op) = &self.tasks[i];
        if *op != RowOp::Insert || !rec.def.spec.is_in_store() {
            return None;
        }
        Some(rec.def.placement.shard.as_ref().map_or(rec.id, |s| s.group))
    }

    /// The tasks whose stored bodies this batch's inserts copy (broadcast copies made after
    /// their task was committed): the backend reads them and hands them to `fill_copies`.
    pub fn copy_sources(&self) -> Vec<TaskId> {
        let mut ids: Vec<TaskId> = (0..self.tasks.len())
            .filter_map(|i| self.missing_body(i))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Gives every insert without a body the body its source has in the store; refuses the
    /// batch (nothing written) if one is unknown.
    pub fn fill_copies(&mut self, bodies: &HashMap<TaskId, TaskSpec>) -> Result<(), StoreError> {
        for i in 0..self.tasks.len() {
            let Some(group) = self.missing_body(i) else {
                continue;
            };
            let spec = bodies.get(&group).ok_or_else(|| {
                StoreError::Backend(format!(
                    "new task {} has no body: task {group} is not stored",
                    self.tasks[i].0.id
                ))
            })?;
            Arc::make_mut(&mut self.tasks[i].0.def).spec = spec.clone();
        }
        Ok(())
    }
}

/// `later` (a task's last record in the batch) with the body `first` had: the core writes a
/// task's body only with its first record (its insert), every later one without.
fn with_body_of(first: &TaskRecord, mut later: TaskRecord) -> TaskRecord {
    if later.def.spec.is_in_store() && !first.def.spec.is_in_store() {
        later.def = TaskDef::with_body(&later.def, &first.def);
    }
    later
}
