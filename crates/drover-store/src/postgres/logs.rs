//! Log chunks of attempts: appended by the commit (one statement per batch, in batch order),
//! read per attempt.

use deadpool_postgres::{GenericClient, Transaction};
use drover_core::{LogChunk, TaskId};
use uuid::Uuid;

use super::codec::{log_from_row, uuid};
use super::db_err;
use crate::StoreError;

/// `WITH ORDINALITY ... ORDER BY`: the identity `id` follows the batch order.
const INSERT_LOGS: &str = "INSERT INTO logs (task_id, attempt, stream, data) \
     SELECT task_id, attempt, stream, data FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], \
     $4::bytea[]) WITH ORDINALITY AS l(task_id, attempt, stream, data, ord) ORDER BY ord";

pub(super) async fn write(tx: &Transaction<'_>, logs: &[LogChunk]) -> Result<(), StoreError> {
    if logs.is_empty() {
        return Ok(());
    }
    let id: Vec<Uuid> = logs.iter().map(|l| uuid(l.task_id)).collect();
    let attempt: Vec<i64> = logs.iter().map(|l| i64::from(l.attempt)).collect();
    let stream: Vec<&str> = logs.iter().map(|l| l.stream.as_str()).collect();
    let data: Vec<&[u8]> = logs.iter().map(|l| l.data.as_slice()).collect();
    let st = tx.prepare_cached(INSERT_LOGS).await.map_err(db_err)?;
    tx.execute(&st, &[&id, &attempt, &stream, &data])
        .await
        .map_err(db_err)?;
    Ok(())
}

/// The chunks of one attempt, in the order they were written.
pub(super) async fn of_attempt(
    c: &impl GenericClient,
    id: TaskId,
    attempt: u32,
) -> Result<Vec<LogChunk>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT task_id, attempt, stream, data FROM logs \
             WHERE task_id = $1 AND attempt = $2 ORDER BY id",
        )
        .await
        .map_err(db_err)?;
    let rows = c
        .query(&st, &[&uuid(id), &i64::from(attempt)])
        .await
        .map_err(db_err)?;
    rows.iter().map(log_from_row).collect()
}
