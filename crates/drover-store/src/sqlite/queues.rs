//! Queue configurations (table `queues`, schema 0003, 0011, 0012): concurrency, pause,
//! strategy, weight.

use drover_core::QueueConfig;
use rusqlite::{params, Connection, Row, Transaction};

use super::codec::corrupt;
use super::db_err;
use crate::StoreError;

pub(super) fn write(tx: &Transaction<'_>, queues: &[QueueConfig]) -> Result<(), StoreError> {
    for q in queues {
        tx.execute(
            "INSERT OR REPLACE INTO queues (namespace, name, concurrency, paused, strategy, \
             weight) VALUES (?,?,?,?,?,?)",
            params![
                q.namespace,
                q.name,
                q.concurrency.map(i64::from),
                q.paused as i64,
                q.strategy.map(|s| s.as_str()),
                q.weight
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
            "SELECT name, concurrency, paused, strategy, namespace, weight FROM queues \
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
    })
}
