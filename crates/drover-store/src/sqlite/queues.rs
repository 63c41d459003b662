//! Queue configurations (table `queues`, schema 0003, 0011, 0012, 0014, 0015): concurrency,
//! pause, strategy, weight, rate, backlog limit.

use drover_core::{QueueConfig, Rate};
use rusqlite::{params, Connection, Row, Transaction};

use super::codec::{corrupt, u64_to_sql};
use super::db_err;
use crate::StoreError;

pub(super) fn write(tx: &Transaction<'_>, queues: &[QueueConfig]) -> Result<(), StoreError> {
    for q in queues {
        tx.execute(
            "INSERT OR REPLACE INTO queues (namespace, name, concurrency, paused, strategy, \
             weight, rate_count, rate_per_ms, max_queued) VALUES (?,?,?,?,?,?,?,?,?)",
            params![
                q.namespace,
                q.name,
                q.concurrency.map(i64::from),
                q.paused as i64,
                q.strategy.map(|s| s.as_str()),
                q.weight,
                q.rate.map(|r| r.count),
                q.rate.map(|r| u64_to_sql(r.per_ms)),
                q.max_queued.map(u64_to_sql)
            ],
        )
        .map_err(db_err)?;
    }
    Ok(())
}

/// Every configured queue, by namespace and name.
pub(super) fn all(conn: &Connection) -> Result<Vec<QueueConfig>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT name, concurrency, paused, strategy, namespace, weight, rate_count, \
             rate_per_ms, max_queued FROM queues \
             ORDER BY namespace, name",
        )
        .map_err(db_err)?;
    let mut rows = st.query([]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        out.push(queue_from_row(r)?);
    }
    Ok(out)
}

fn queue_from_row(row: &Row<'_>) -> Result<QueueConfig, StoreError> {
    let strategy: Option<String> = row.get(3).map_err(db_err)?;
    let conc: Option<i64> = row.get(1).map_err(db_err)?;
    Ok(QueueConfig {
        namespace: row.get(4).map_err(db_err)?,
        name: row.get(0).map_err(db_err)?,
        concurrency: conc.map(|c| c as u32),
        paused: row.get::<_, i64>(2).map_err(db_err)? != 0,
        strategy: strategy.map(|s| s.parse().map_err(corrupt)).transpose()?,
        weight: row.get(5).map_err(db_err)?,
        rate: rate_from(row.get(6).map_err(db_err)?, row.get(7).map_err(db_err)?)?,
        max_queued: max_queued_from(row.get(8).map_err(db_err)?)?,
    })
}

/// A stored backlog limit (positive, or none).
pub(crate) fn max_queued_from(v: Option<i64>) -> Result<Option<u64>, StoreError> {
    match v {
        None => Ok(None),
        Some(n) if n > 0 => Ok(Some(n as u64)),
        Some(n) => Err(corrupt(format!("queue max_queued {n}"))),
    }
}

/// A stored rate limit (both columns or neither).
pub(crate) fn rate_from(
    count: Option<i64>,
    per_ms: Option<i64>,
) -> Result<Option<Rate>, StoreError> {
    match (count, per_ms) {
        (None, None) => Ok(None),
        (Some(c), Some(p)) if c > 0 && p > 0 => Ok(Some(Rate {
            count: u32::try_from(c).map_err(corrupt)?,
            per_ms: p as u64,
        })),
        _ => Err(corrupt(format!("queue rate {count:?}/{per_ms:?}ms"))),
    }
}
