//! The event log: appended by the commit (one statement per batch), read from a sequence
//! number, pruned by age.

use deadpool_postgres::{GenericClient, Transaction};
use drover_core::{Event, Micros};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::codec::{event_from_row, get, text, EVENT_COLS};
use super::{db_err, db_err_in};
use crate::sqlite::codec::event_to_row;
use crate::StoreError;

/// Events deleted per transaction by `prune_events`, so a large prune never holds the writer
/// (and with it the commits) for long.
pub(super) const PRUNE_BATCH: i64 = 5_000;

const INSERT_EVENTS: &str = "INSERT INTO events (seq, at, type, task_id, queue, state, \
     attempt, worker, reason, worker_name, worker_state, workflow, schedule, namespace, \
     result_bytes) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::uuid[], \
     $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], \
     $12::text[], $13::text[], $14::text[], $15::bigint[])";

pub(super) async fn write(tx: &Transaction<'_>, events: &[Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = events.iter().map(event_to_row).collect();
    let seq: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let at: Vec<i64> = rows.iter().map(|r| r.at).collect();
    let kind: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    let task_id: Vec<Option<Uuid>> = rows
        .iter()
        .map(|r| r.task_id.map(Uuid::from_bytes))
        .collect();
    let queue: Vec<Option<&str>> = rows.iter().map(|r| r.queue).collect();
    let state: Vec<Option<&str>> = rows.iter().map(|r| r.state).collect();
    let attempt: Vec<Option<i64>> = rows.iter().map(|r| r.attempt.map(i64::from)).collect();
    let worker: Vec<Option<&str>> = rows.iter().map(|r| r.worker).collect();
    let reason: Vec<Option<String>> = rows.iter().map(|r| text(r.reason)).collect();
    let worker_name: Vec<Option<&str>> = rows.iter().map(|r| r.worker_name).collect();
    let worker_state: Vec<Option<&str>> = rows.iter().map(|r| r.worker_state).collect();
    let workflow: Vec<Option<&str>> = rows.iter().map(|r| r.workflow).collect();
    let schedule: Vec<Option<&str>> = rows.iter().map(|r| r.schedule).collect();
    let namespace: Vec<Option<&str>> = rows.iter().map(|r| r.namespace).collect();
    let result_bytes: Vec<Option<i64>> = rows
        .iter()
        .map(|r| r.result_bytes.map(|b| b as i64))
        .collect();
    let p: [&(dyn ToSql + Sync); 15] = [
        &seq,
        &at,
        &kind,
        &task_id,
        &queue,
        &state,
        &attempt,
        &worker,
        &reason,
        &worker_name,
        &worker_state,
        &workflow,
        &schedule,
        &namespace,
        &result_bytes,
    ];
    let st = tx.prepare_cached(INSERT_EVENTS).await.map_err(db_err)?;
    tx.execute(&st, &p).await.map_err(|e| {
        db_err_in(e, || {
            format!("inserting events {}..={}", seq[0], seq[seq.len() - 1])
        })
    })?;
    Ok(())
}

/// Up to `limit` events after `after`, in order.
pub(super) async fn after(
    c: &impl GenericClient,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .await
        .map_err(db_err)?;
    let rows = c.query(&st, &[&after, &limit]).await.map_err(db_err)?;
    rows.iter().map(event_from_row).collect()
}

/// The newest event's seq, if there is one.
pub(super) async fn last_seq(c: &impl GenericClient) -> Result<Option<i64>, StoreError> {
    let st = c
        .prepare_cached("SELECT max(seq) FROM events")
        .await
        .map_err(db_err)?;
    let row = c.query_one(&st, &[]).await.map_err(db_err)?;
    get(&row, 0)
}

/// One batch of `prune_events`: deletes up to `PRUNE_BATCH` of the oldest events older than
/// `before`, keeping the newest. Returns how many it deleted (0: done).
pub(super) async fn prune_batch(tx: &Transaction<'_>, before: Micros) -> Result<u64, StoreError> {
    let row = tx
        .query_one("SELECT min(seq), max(seq) FROM events", &[])
        .await
        .map_err(db_err)?;
    let (Some(oldest), Some(newest)) = (get::<Option<i64>>(&row, 0)?, get::<Option<i64>>(&row, 1)?)
    else {
        return Ok(0);
    };
    // Walks from the oldest event: as long as what is deleted, and no longer.
    let first_kept = tx
        .query_opt(
            "SELECT seq FROM events WHERE at >= $1 ORDER BY seq LIMIT 1",
            &[&before],
        )
        .await
        .map_err(db_err)?
        .map(|r| get::<i64>(&r, 0))
        .transpose()?;
    let end = first_kept
        .unwrap_or(newest)
        .min(newest)
        .min(oldest.saturating_add(PRUNE_BATCH));
    tx.execute("DELETE FROM events WHERE seq < $1", &[&end])
        .await
        .map_err(db_err)
}
