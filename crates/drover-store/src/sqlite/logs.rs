//! Log chunks of attempts: appended by the commit, read per attempt.

use drover_core::{LogChunk, TaskId};
use rusqlite::{params, Connection, Transaction};

use super::codec::{id_bytes, log_from_row, stream_to_sql};
use super::db_err;
use crate::StoreError;

const INSERT_LOG: &str =
    "INSERT INTO logs (task_id, attempt, stream, data) VALUES (?1, ?2, ?3, ?4)";

pub(super) fn write(tx: &Transaction<'_>, logs: &[LogChunk]) -> Result<(), StoreError> {
    if logs.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(INSERT_LOG).map_err(db_err)?;
    for l in logs {
        insert
            .execute(params![
                &id_bytes(l.task_id)[..],
                l.attempt,
                stream_to_sql(l.stream),
                l.data,
            ])
            .map_err(db_err)?;
    }
    Ok(())
}

/// The chunks of one attempt, in the order they were written.
pub(super) fn of_attempt(
    c: &Connection,
    id: TaskId,
    attempt: u32,
) -> Result<Vec<LogChunk>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT task_id, attempt, stream, data FROM logs \
             WHERE task_id = ?1 AND attempt = ?2 ORDER BY id",
        )
        .map_err(db_err)?;
    let mut rows = stmt
        .query(params![&id_bytes(id)[..], attempt])
        .map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(log_from_row(row)?);
    }
    Ok(out)
}
