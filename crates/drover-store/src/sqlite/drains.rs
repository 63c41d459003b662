//! Drained workers (table `drained_workers`, schema 0006): the names, kept across restarts.

use rusqlite::{Connection, Transaction};

use super::db_err;
use crate::StoreError;

/// Applies drains (`true`) and resumes, in order.
pub(super) fn write(tx: &Transaction<'_>, drains: &[(String, bool)]) -> Result<(), StoreError> {
    for (name, drained) in drains {
        let sql = if *drained {
            "INSERT OR IGNORE INTO drained_workers (name) VALUES (?)"
        } else {
            "DELETE FROM drained_workers WHERE name = ?"
        };
        tx.prepare_cached(sql)
            .and_then(|mut st| st.execute([name]))
            .map_err(db_err)?;
    }
    Ok(())
}

/// The drained workers' names, sorted.
pub(super) fn all(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = conn
        .prepare("SELECT name FROM drained_workers ORDER BY name")
        .map_err(db_err)?;
    let rows = st.query_map([], |r| r.get(0)).map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}
