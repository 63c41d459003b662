//! The commit hot path: a batch in one transaction, cached statements, no reads.

use rusqlite::Connection;

use super::{begin, db_err, deps, drains, events, logs, queues, schedules, tasks, workflows};
use crate::batch::Batch;
use crate::StoreError;

pub(super) fn commit_batch(conn: &mut Connection, batch: Batch) -> Result<(), StoreError> {
    let tx = begin(conn)?;
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
