//! Drained workers (table `drained_workers`): the names, kept across restarts.

use deadpool_postgres::{GenericClient, Transaction};

use super::codec::{get, last_per_key};
use super::db_err;
use crate::StoreError;

/// Applies drains (`true`) and resumes: the last of each worker counts.
pub(super) async fn write(
    tx: &Transaction<'_>,
    drains: &[(String, bool)],
) -> Result<(), StoreError> {
    if drains.is_empty() {
        return Ok(());
    }
    let last = last_per_key(drains, |(name, _)| name.as_str());
    let names = |drained: bool| -> Vec<&str> {
        last.iter()
            .filter(|(_, d)| *d == drained)
            .map(|(n, _)| n.as_str())
            .collect()
    };
    let (drained, resumed) = (names(true), names(false));
    if !drained.is_empty() {
        let st = tx
            .prepare_cached(
                "INSERT INTO drained_workers (name) SELECT * FROM UNNEST($1::text[]) \
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(db_err)?;
        tx.execute(&st, &[&drained]).await.map_err(db_err)?;
    }
    if !resumed.is_empty() {
        let st = tx
            .prepare_cached("DELETE FROM drained_workers WHERE name = ANY($1::text[])")
            .await
            .map_err(db_err)?;
        tx.execute(&st, &[&resumed]).await.map_err(db_err)?;
    }
    Ok(())
}

/// The drained workers' names, sorted.
pub(super) async fn all(c: &impl GenericClient) -> Result<Vec<String>, StoreError> {
    let rows = c
        .query("SELECT name FROM drained_workers ORDER BY name", &[])
        .await
        .map_err(db_err)?;
    rows.iter().map(|r| get(r, 0)).collect()
}
