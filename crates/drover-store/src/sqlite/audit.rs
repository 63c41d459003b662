//! The audit log (table `audit`, schema 0009).

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, Row};

use super::db_err;
use crate::audit::{AuditQuery, AuditRecord};
use crate::StoreError;

const INSERT: &str = "INSERT INTO audit (at, token, role, remote, operation, object, status) \
                      VALUES (?, ?, ?, ?, ?, ?, ?)";

/// Appends records in one transaction, in order.
pub(super) fn append(c: &mut Connection, records: &[AuditRecord]) -> Result<(), StoreError> {
    let tx = c.transaction().map_err(db_err)?;
    {
        let mut st = tx.prepare_cached(INSERT).map_err(db_err)?;
        for r in records {
            st.execute(params![
                r.at,
                r.token,
                r.role,
                r.remote,
                r.operation,
                r.object,
                r.status
            ])
            .map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get::<_, i64>(0)? as u64,
        at: r.get(1)?,
        token: r.get(2)?,
        role: r.get(3)?,
        remote: r.get(4)?,
        operation: r.get(5)?,
        object: r.get(6)?,
        status: r.get(7)?,
    })
}

/// Records matching `q`, newest first.
pub(super) fn list(c: &Connection, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
    let mut conds = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(s) = q.since {
        conds.push("at >= ?");
        args.push(Value::Integer(s));
    }
    if let Some(t) = &q.token {
        conds.push("token = ?");
        args.push(Value::Text(t.clone()));
    }
    if let Some(b) = q.before {
        conds.push("seq < ?");
        args.push(Value::Integer(i64::try_from(b).unwrap_or(i64::MAX)));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    args.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT seq, at, token, role, remote, operation, object, status FROM audit {filter} \
         ORDER BY seq DESC LIMIT ?"
    );
    let mut st = c.prepare_cached(&sql).map_err(db_err)?;
    let rows = st
        .query_map(params_from_iter(args), from_row)
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

/// Deletes records with `at < before`; returns how many.
pub(super) fn prune(c: &mut Connection, before: i64) -> Result<u64, StoreError> {
    let n = c
        .execute("DELETE FROM audit WHERE at < ?", [before])
        .map_err(db_err)?;
    Ok(n as u64)
}
