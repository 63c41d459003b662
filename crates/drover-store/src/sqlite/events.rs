//! The event log: appended by the commit, read from a sequence number, pruned by age.

use drover_core::{Event, Micros};
use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use super::codec::{event_from_row, event_to_row, u64_to_sql, EVENT_COLS};
use super::rows::{self, Shape};
use super::{db_err, db_err_in};
use crate::StoreError;

/// Events deleted per transaction by `prune_events`, so a large prune never holds the writer
/// (and with it the commits) for long.
const PRUNE_BATCH: i64 = 5_000;

const INSERT_EVENTS: Shape = Shape {
    head: "INSERT OR FAIL INTO events (seq, at, type, task_id, queue, state, attempt, worker, \
           reason, worker_name, worker_state, workflow, schedule, namespace, result_bytes) \
           VALUES ",
    row: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    tail: "",
};

/// Appends the events, several per statement (`rows.rs`).
pub(super) fn write(tx: &Transaction<'_>, events: &[Event]) -> Result<(), StoreError> {
    rows::write(tx, &INSERT_EVENTS, events, |b, e| {
        let r = event_to_row(e);
        b.bind(r.seq)?;
        b.bind(r.at)?;
        b.bind(r.kind)?;
        b.bind(r.task_id.as_ref().map(|b| &b[..]))?;
        b.bind(r.queue)?;
        b.bind(r.state)?;
        b.bind(r.attempt)?;
        b.bind(r.worker)?;
        b.bind(r.reason)?;
        b.bind(r.worker_name)?;
        b.bind(r.worker_state)?;
        b.bind(r.workflow)?;
        b.bind(r.schedule)?;
        b.bind(r.namespace)?;
        b.bind(r.result_bytes.map(u64_to_sql))
    })
    .map_err(|e| {
        db_err_in(e, || {
            format!(
                "inserting {} events (from seq {})",
                events.len(),
                events[0].seq
            )
        })
    })?;
    Ok(())
}

/// Up to `limit` events after `after`, in order.
pub(super) fn after(c: &Connection, after: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))
        .map_err(db_err)?;
    let mut rows = stmt.query(params![after, limit]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(event_from_row(row)?);
    }
    Ok(out)
}

/// The newest event's seq, if there is one.
pub(super) fn last_seq(c: &Connection) -> Result<Option<i64>, StoreError> {
    c.query_row("SELECT max(seq) FROM events", [], |r| r.get(0))
        .map_err(db_err)
}

/// One batch of `prune_events`: deletes up to `PRUNE_BATCH` of the oldest events older than
/// `before`, keeping the newest. Returns how many it deleted (0: done).
pub(super) fn prune_batch(conn: &mut Connection, before: Micros) -> Result<u64, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let bounds: (Option<i64>, Option<i64>) = tx
        .query_row("SELECT min(seq), max(seq) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(db_err)?;
    let (Some(oldest), Some(newest)) = bounds else {
        return Ok(0);
    };
    // Walks from the oldest event: as long as what is deleted, and no longer.
    let first_kept: Option<i64> = tx
        .query_row(
            "SELECT seq FROM events WHERE at >= ?1 ORDER BY seq LIMIT 1",
            [before],
            |r| r.get(0),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(db_err)?;
    let end = first_kept
        .unwrap_or(newest)
        .min(newest)
        .min(oldest.saturating_add(PRUNE_BATCH));
    let n = tx
        .execute("DELETE FROM events WHERE seq < ?1", [end])
        .map_err(db_err)?;
    tx.commit().map_err(db_err)?;
    Ok(n as u64)
}
