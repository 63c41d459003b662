//! The commit hot path: a batch in one transaction, cached statements, no reads (but the
//! bodies of broadcast copies made after their task was committed).

use rusqlite::Connection;

use super::{begin, db_err, deps, drains, events, logs, queues, schedules, tasks, workflows};
use crate::batch::Batch;
use crate::StoreError;

pub(super) fn commit_batch(conn: &mut Connection, mut batch: Batch) -> Result<(), StoreError> {
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
