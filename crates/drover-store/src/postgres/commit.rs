//! The commit hot path: a batch in one transaction, one multi-row statement per kind of
//! write (at most a dozen round trips, however many tasks), cached statements, no reads.

use deadpool_postgres::Client;

use super::{db_err, deps, drains, events, logs, queues, schedules, tasks, workflows};
use crate::batch::Batch;
use crate::StoreError;

pub(super) async fn commit_batch(client: &mut Client, batch: Batch) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db_err)?;
    tasks::write(&tx, &batch.tasks).await?;
    tasks::write_attempts(&tx, &batch.attempts).await?;
    events::write(&tx, &batch.events).await?;
    logs::write(&tx, &batch.logs).await?;
    deps::write(&tx, &batch.flows).await?;
    queues::write(&tx, &batch.queues).await?;
    workflows::write(&tx, &batch.workflows).await?;
    schedules::write(&tx, &batch.schedules).await?;
    drains::write(&tx, &batch.drains).await?;
    // With synchronous_commit on (the connection sets it), COMMIT returns once the WAL
    // record is flushed to disk.
    tx.commit().await.map_err(db_err)
}
