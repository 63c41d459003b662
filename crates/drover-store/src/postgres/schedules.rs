//! Schedules (table `schedules`): each one's spec and progress as a JSON document (the same
//! document as in SQLite).

use deadpool_postgres::{GenericClient, Transaction};
use drover_core::schedule::ScheduleRecord;
use drover_core::Scoped;

use super::codec::{get, last_per_key};
use super::db_err;
use crate::sqlite::schedules::{schedule_from_json, schedule_to_json};
use crate::StoreError;

const UPSERT_SCHEDULES: &str = "INSERT INTO schedules (namespace, name, doc) \
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
    ON CONFLICT (namespace, name) DO UPDATE SET doc = excluded.doc";

const DELETE_SCHEDULES: &str = "DELETE FROM schedules s \
    USING UNNEST($1::text[], $2::text[]) AS d(namespace, name) \
    WHERE s.namespace = d.namespace AND s.name = d.name";

/// Applies schedule upserts (`Some`) and deletions (`None`): the last of each key counts.
pub(super) async fn write(
    tx: &Transaction<'_>,
    schedules: &[(Scoped, Option<ScheduleRecord>)],
) -> Result<(), StoreError> {
    if schedules.is_empty() {
        return Ok(());
    }
    let last = last_per_key(schedules, |(key, _)| key);
    let (gone_ns, gone): (Vec<&str>, Vec<&str>) = last
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|(k, _)| (k.namespace.as_str(), k.name.as_str()))
        .unzip();
    let mut namespaces = Vec::new();
    let mut names = Vec::new();
    let mut docs = Vec::new();
    for (k, r) in &last {
        if let Some(r) = r {
            namespaces.push(k.namespace.as_str());
            names.push(k.name.as_str());
            docs.push(schedule_to_json(r));
        }
    }
    if !gone.is_empty() {
        let st = tx.prepare_cached(DELETE_SCHEDULES).await.map_err(db_err)?;
        tx.execute(&st, &[&gone_ns, &gone]).await.map_err(db_err)?;
    }
    if !names.is_empty() {
        let st = tx.prepare_cached(UPSERT_SCHEDULES).await.map_err(db_err)?;
        tx.execute(&st, &[&namespaces, &names, &docs])
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// Every schedule, by namespace and name.
pub(super) async fn all(c: &impl GenericClient) -> Result<Vec<ScheduleRecord>, StoreError> {
    let st = c
        .prepare_cached("SELECT name, doc FROM schedules ORDER BY namespace, name")
        .await
        .map_err(db_err)?;
    let rows = c.query(&st, &[]).await.map_err(db_err)?;
    rows.iter()
        .map(|r| schedule_from_json(get(r, 0)?, get(r, 1)?))
        .collect()
}
