//! The commit hot path: a batch in one transaction, cached statements, no reads (but the
//! bodies of broadcast copies made after their task was committed).

use rusqlite::Connection;

use super::{begin, db_err, deps, drains, events, logs, queues, rows, schedules, tasks, workflows};
use crate::batch::Batch;
use crate::StoreError;

pub(super) fn commit_batch(conn: &mut Connection, mut batch: Batch) -> Result<(), StoreError> {
    trace_counts(&batch);
    let tx = begin(conn)?;
    let sources = batch.copy_sources();
    if !sources.is_empty() {
        batch.fill_copies(&tasks::bodies(&tx, &sources)?)?;
    }
    tasks::write(&tx, &batch.tasks)?;
    tasks::write_attempts(&tx, &batch.attempts)?;
    events::write(&tx, &batch.events)?;
    logs::write(&tx, &batch.logs)?;
    deps::write(&tx, &batch.flows)?;
    queues::write(&tx, &batch.queues)?;
    workflows::write(&tx, &batch.workflows)?;
    schedules::write(&tx, &batch.schedules)?;
    drains::write(&tx, &batch.drains)?;
    tx.commit().map_err(db_err)
}

/// Rows and statements of a commit's hot kinds of write, at `trace` level (`RUST_LOG=
/// drover_store::sqlite::commit=trace`): what docs/benchmarks.md counts per task.
fn trace_counts(batch: &Batch) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    let inserts = batch
        .tasks
        .iter()
        .filter(|(_, op)| *op == crate::batch::RowOp::Insert)
        .count();
    let updates = batch.tasks.len() - inserts;
    let (a, e) = (batch.attempts.len(), batch.events.len());
    let statements = [inserts, updates, a, e]
        .iter()
        .map(|n| rows::statements(*n))
        .sum::<usize>()
        + usize::from(inserts > 0);
    tracing::trace!(
        inserts,
        updates,
        attempts = a,
        events = e,
        rows = inserts + updates + a + e,
        statements,
        "commit"
    );
}
