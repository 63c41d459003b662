//! Queue configurations (table `queues`): concurrency, pause, strategy, weight, rate,
//! backlog limit.

use deadpool_postgres::{GenericClient, Transaction};
use drover_core::QueueConfig;
use tokio_postgres::Row;

use super::codec::{corrupt, get, last_per_key};
use super::db_err;
use crate::StoreError;

const UPSERT_QUEUES: &str = "INSERT INTO queues (name, concurrency, paused, strategy, \
    namespace, weight, rate_count, rate_per_ms, max_queued) SELECT * FROM UNNEST($1::text[], \
    $2::bigint[], $3::boolean[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], \
    $8::bigint[], $9::bigint[]) ON CONFLICT (namespace, name) DO UPDATE SET \
    concurrency = excluded.concurrency, paused = excluded.paused, \
    strategy = excluded.strategy, weight = excluded.weight, \
    rate_count = excluded.rate_count, rate_per_ms = excluded.rate_per_ms, \
    max_queued = excluded.max_queued";

/// Stores the batch's queue configurations, a later one of a queue replacing an earlier one.
pub(super) async fn write(tx: &Transaction<'_>, queues: &[QueueConfig]) -> Result<(), StoreError> {
    if queues.is_empty() {
        return Ok(());
    }
    let queues = last_per_key(queues, |q| (q.namespace.as_str(), q.name.as_str()));
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
    let namespace: Vec<&str> = queues.iter().map(|q| q.namespace.as_str()).collect();
    let weight: Vec<i64> = queues.iter().map(|q| i64::from(q.weight)).collect();
    let rate_count: Vec<Option<i64>> = queues
        .iter()
        .map(|q| q.rate.map(|r| i64::from(r.count)))
        .collect();
    let rate_per_ms: Vec<Option<i64>> = queues
        .iter()
        .map(|q| q.rate.map(|r| r.per_ms as i64))
        .collect();
    let max_queued: Vec<Option<i64>> = queues
        .iter()
        .map(|q| q.max_queued.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
        .collect();
    let st = tx.prepare_cached(UPSERT_QUEUES).await.map_err(db_err)?;
    let p: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
        &name,
        &conc,
        &paused,
        &strategy,
        &namespace,
        &weight,
        &rate_count,
        &rate_per_ms,
        &max_queued,
    ];
    tx.execute(&st, &p).await.map_err(db_err)?;
    Ok(())
}

/// Every configured queue, by namespace and name.
pub(super) async fn all(c: &impl GenericClient) -> Result<Vec<QueueConfig>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT name, concurrency, paused, strategy, namespace, weight, rate_count, \
             rate_per_ms, max_queued FROM queues \
             ORDER BY namespace, name",
        )
        .await
        .map_err(db_err)?;
    let rows = c.query(&st, &[]).await.map_err(db_err)?;
    rows.iter().map(queue_from_row).collect()
}

fn queue_from_row(row: &Row) -> Result<QueueConfig, StoreError> {
    let strategy: Option<&str> = get(row, 3)?;
    let conc: Option<i64> = get(row, 1)?;
    let weight: i64 = get(row, 5)?;
    Ok(QueueConfig {
        namespace: get(row, 4)?,
        name: get(row, 0)?,
        concurrency: conc.map(|c| c as u32),
        paused: get(row, 2)?,
        strategy: strategy.map(|s| s.parse().map_err(corrupt)).transpose()?,
        weight: u32::try_from(weight).map_err(|_| corrupt(format!("queue weight {weight}")))?,
        rate: crate::sqlite::queues::rate_from(get(row, 6)?, get(row, 7)?)?,
        max_queued: crate::sqlite::queues::max_queued_from(get(row, 8)?)?,
    })
}
