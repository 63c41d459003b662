//! Replies that carry what their request committed: a submit answered with the records of the
//! tasks it created as the batch's writes hold them (the last write of each in the batch, and
//! its attempts), so the REST reply needs no read of the store after the commit and no second
//! trip through the driver for the waiting reason.
//!
//! Only tasks created in the batch are carried (their first write is in it, so every attempt
//! of theirs is too); a task named by a repeated idempotency key is not, and its caller reads
//! it from the store as before.

use std::collections::HashMap;

use drover_core::Write;
use drover_core::{AttemptRecord, Coordinator, Reply, RequestId, TaskId, TaskRecord, TaskState};
use tokio::sync::oneshot;

/// A reply, and the tasks the request created as they were committed.
#[derive(Debug)]
pub struct Answer {
    pub reply: Reply,
    pub tasks: Vec<CommittedTask>,
}

/// A task as its creating batch committed it.
#[derive(Debug)]
pub struct CommittedTask {
    pub record: TaskRecord,
    /// Its attempts, oldest first (an assignment in the same batch made one).
    pub attempts: Vec<AttemptRecord>,
    /// Why it waits, if it is pending or queued, as the core says once the batch committed.
    pub waiting_reason: Option<String>,
}

/// Who waits for a request's reply.
pub(super) enum Waiter {
    Reply(oneshot::Sender<Reply>),
    Committed(oneshot::Sender<Answer>),
}

/// The new tasks of a batch that a `Committed` waiter will be told about.
pub(super) type Created = HashMap<TaskId, (TaskRecord, Vec<AttemptRecord>)>;

/// The records of the tasks that `Committed` waiters' replies name, from the batch's writes:
/// the last record of each task whose first write is in the batch, with its attempts.
pub(super) fn collect(
    waiting: &HashMap<RequestId, Waiter>,
    replies: &[(RequestId, Reply)],
    writes: &[Write],
) -> Created {
    let mut wanted: HashMap<TaskId, (Option<TaskRecord>, bool, Vec<AttemptRecord>)> =
        HashMap::new();
    for (req, reply) in replies {
        if let (Some(Waiter::Committed(_)), Reply::Submitted(ids)) = (waiting.get(req), reply) {
            for id in ids {
                wanted.insert(*id, (None, false, Vec::new()));
            }
        }
    }
    if wanted.is_empty() {
        return Created::new();
    }
    for w in writes {
        match w {
            Write::Task { record, is_new } => {
                if let Some((last, new, _)) = wanted.get_mut(&record.id) {
                    *last = Some(with_body_of(last.take(), record));
                    *new |= *is_new;
                }
            }
            Write::Attempt(a) => {
                if let Some((_, _, attempts)) = wanted.get_mut(&a.task_id) {
                    match attempts.iter_mut().find(|x| x.attempt == a.attempt) {
                        Some(x) => *x = a.clone(),
                        None => attempts.push(a.clone()),
                    }
                }
            }
            _ => {}
        }
    }
    wanted
        .into_iter()
        .filter_map(|(id, (record, new, mut attempts))| {
            let record = record.filter(|_| new)?;
            attempts.sort_by_key(|a| a.attempt);
            Some((id, (record, attempts)))
        })
        .collect()
}

/// `record` with the body of `earlier` (its insert): the core's later writes of a task carry
/// only the body's stand-in.
fn with_body_of(earlier: Option<TaskRecord>, record: &TaskRecord) -> TaskRecord {
    match earlier {
        Some(e) if record.def.spec.is_in_store() && !e.def.spec.is_in_store() => TaskRecord {
            def: drover_core::TaskDef::with_body(&record.def, &e.def),
            ..record.clone()
        },
        _ => record.clone(),
    }
}

impl Waiter {
    /// Hands over the reply (with the created tasks it names, for a `Committed` waiter).
    pub(super) fn answer(self, reply: Reply, created: &mut Created, core: &Coordinator) {
        match self {
            Waiter::Reply(tx) => {
                let _ = tx.send(reply);
            }
            Waiter::Committed(tx) => {
                let ids: &[TaskId] = match &reply {
                    Reply::Submitted(ids) => ids,
                    _ => &[],
                };
                let tasks = ids
                    .iter()
                    .filter_map(|id| created.remove(id))
                    .map(|(record, attempts)| {
                        let waits = matches!(record.state, TaskState::Queued | TaskState::Pending);
                        CommittedTask {
                            waiting_reason: waits.then(|| core.why_waiting(record.id)).flatten(),
                            record,
                            attempts,
                        }
                    })
                    .collect();
                let _ = tx.send(Answer { reply, tasks });
            }
        }
    }
}
