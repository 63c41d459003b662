//! Queue configurations (table `queues`): concurrency, pause, strategy.

use deadpool_postgres::{GenericClient, Transaction};
use drover_core::QueueConfig;
use tokio_postgres::Row;

use super::codec::{corrupt, get, last_per_key};
use super::db_err;
use crate::StoreError;

const UPSERT_QUEUES: &str = "INSERT INTO queues (name, concurrency, paused, strategy) \
    SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::boolean[], $4::text[]) \
    ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency, \
    paused = excluded.paused, strategy = excluded.strategy";

/// Stores the batch's queue configurations, a later one of a queue replacing an earlier one.
pub(super) async fn write(tx: &Transaction<'_>, queues: &[QueueConfig]) -> Result<(), StoreError> {
    if queues.is_empty() {
        return Ok(());
    }
    let queues = last_per_key(queues, |q| q.name.as_str());
    let name: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    let conc: Vec<Option<i64>> = queues
        .iter()
        .map(|q| q.concurrency.map(i64::from))
        .collect();
    let paused: Vec<bool> = queues.iter().map(|q| q.paused).collect();
    let strategy: Vec<Option<&str>> = queues
        .iter()
        .map(|q| q.strategy.map(|s| s.as_str()))
        .collect();
    let st = tx.prepare_cached(UPSERT_QUEUES).await.map_err(db_err)?;
    tx.execute(&st, &[&name, &conc, &paused, &strategy])
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Every configured queue, by name.
pub(super) async fn all(c: &impl GenericClient) -> Result<Vec<QueueConfig>, StoreError> {
    let st = c
        .prepare_cached("SELECT name, concurrency, paused, strategy FROM queues ORDER BY name")
        .await
        .map_err(db_err)?;
    let rows = c.query(&st, &[]).await.map_err(db_err)?;
    rows.iter().map(queue_from_row).collect()
}

fn queue_from_row(row: &Row) -> Result<QueueConfig, StoreError> {
    let strategy: Option<&str> = get(row, 3)?;
    let conc: Option<i64> = get(row, 1)?;
    Ok(QueueConfig {
        name: get(row, 0)?,
        concurrency: conc.map(|c| c as u32),
        paused: get(row, 2)?,
        strategy: strategy.map(|s| s.parse().map_err(corrupt)).transpose()?,
    })
}
