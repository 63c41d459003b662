//! The in-batch dedup every backend applies before writing (see `Store::commit`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use drover_core::dag::WorkflowRecord;
use drover_core::{
    AttemptRecord, Event, FlowRecord, LogChunk, QueueConfig, TaskId, TaskRecord, Write,
};

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
                            slot.0 = record;
                            if op == RowOp::Insert {
                                slot.1 = op;
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
        b
    }
}
