//! Schedules (table `schedules`): each one's spec and progress as a JSON document (the same
//! document as in SQLite).

use deadpool_postgres::{GenericClient, Transaction};
use drover_core::schedule::ScheduleRecord;

use super::codec::{get, last_per_key};
use super::db_err;
use crate::sqlite::schedules::{schedule_from_json, schedule_to_json};
use crate::StoreError;

const UPSERT_SCHEDULES: &str = "INSERT INTO schedules (name, doc) \
    SELECT * FROM UNNEST($1::text[], $2::text[]) \
    ON CONFLICT (name) DO UPDATE SET doc = excluded.doc";

/// Applies schedule upserts (`Some`) and deletions (`None`): the last of each name counts.
pub(super) async fn write(
    tx: &Transaction<'_>,
    schedules: &[(String, Option<ScheduleRecord>)],
) -> Result<(), StoreError> {
    if schedules.is_empty() {
        return Ok(());
    }
    let last = last_per_key(schedules, |(name, _)| name.as_str());
    let deleted: Vec<&str> = last
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let (names, docs): (Vec<&str>, Vec<String>) = last
        .iter()
        .filter_map(|(n, r)| r.as_ref().map(|r| (n.as_str(), schedule_to_json(r))))
        .unzip();
    if !deleted.is_empty() {
        let st = tx
            .prepare_cached("DELETE FROM schedules WHERE name = ANY($1::text[])")
            .await
            .map_err(db_err)?;
        tx.execute(&st, &[&deleted]).await.map_err(db_err)?;
    }
    if !names.is_empty() {
        let st = tx.prepare_cached(UPSERT_SCHEDULES).await.map_err(db_err)?;
        tx.execute(&st, &[&names, &docs]).await.map_err(db_err)?;
    }
    Ok(())
}

/// Every schedule, by name.
pub(super) async fn all(c: &impl GenericClient) -> Result<Vec<ScheduleRecord>, StoreError> {
    let st = c
        .prepare_cached("SELECT name, doc FROM schedules ORDER BY name")
        .await
        .map_err(db_err)?;
    let rows = c.query(&st, &[]).await.map_err(db_err)?;
    rows.iter()
        .map(|r| schedule_from_json(get(r, 0)?, get(r, 1)?))
        .collect()
}
