//! The commit hot path: a batch in one transaction, the fence, then one multi-row statement
//! per kind of write, cached statements, no reads. The statements are pipelined: sent one
//! after the other without waiting for each answer, so a commit costs three round trips
//! (BEGIN, the statements, COMMIT) however many tasks and kinds of write it holds.

use deadpool_postgres::{Client, Transaction};

use super::leadership::Fence;
use super::{db_err, deps, drains, events, logs, queues, schedules, tasks, workflows};
use crate::batch::Batch;
use crate::StoreError;

pub(super) async fn commit_batch(
    client: &mut Client,
    fence: &Fence,
    batch: Batch,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db_err)?;
    // Polled in this order, so sent in this order; each table is written by one of them.
    // The fence first: if this store's epoch no longer leads, it fails the transaction and
    // every write after it fails unapplied (SQLSTATE 25P02).
    let (fenced, t, a, e, l, f, q, w, s, d, n) = futures::join!(
        fence.check(&tx),
        tasks::write(&tx, &batch.tasks),
        tasks::write_attempts(&tx, &batch.attempts),
        events::write(&tx, &batch.events),
        logs::write(&tx, &batch.logs),
        deps::write(&tx, &batch.flows),
        queues::write(&tx, &batch.queues),
        workflows::write(&tx, &batch.workflows),
        schedules::write(&tx, &batch.schedules),
        drains::write(&tx, &batch.drains),
        notify_events(&tx, !batch.events.is_empty()),
    );
    first_error([fenced, t, a, e, l, f, q, w, s, d, n])?;
    // With synchronous_commit on (every connection sets it), COMMIT returns once the WAL
    // record is flushed to disk. Dropped without it (an error above), the transaction rolls
    // back.
    tx.commit().await.map_err(db_err)
}

/// Standbys follow the events: PostgreSQL delivers the notice only if the transaction commits.
async fn notify_events(tx: &Transaction<'_>, any: bool) -> Result<(), StoreError> {
    if !any {
        return Ok(());
    }
    tx.batch_execute(&format!("NOTIFY {}", super::notices::EVENTS))
        .await
        .map_err(db_err)
}

/// The error that failed the transaction: after it, every statement of the pipeline fails
/// only because the transaction is aborted (SQLSTATE 25P02), which says nothing.
fn first_error<const N: usize>(results: [Result<(), StoreError>; N]) -> Result<(), StoreError> {
    let mut errors: Vec<StoreError> = results.into_iter().filter_map(Result::err).collect();
    let cause = errors
        .iter()
        .position(|e| !e.to_string().contains("SQLSTATE 25P02"))
        .unwrap_or(0);
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.swap_remove(cause)),
    }
}
