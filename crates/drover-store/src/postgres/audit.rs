//! The audit log (table `audit`).

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::codec::{corrupt, get};
use super::db_err;
use crate::audit::{AuditQuery, AuditRecord};
use crate::StoreError;

/// One statement; `WITH ORDINALITY ... ORDER BY` gives the records their seqs in order.
const INSERT: &str = "INSERT INTO audit (at, token, role, remote, operation, object, status) \
    SELECT at, token, role, remote, operation, object, status FROM UNNEST($1::bigint[], \
    $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[]) WITH ORDINALITY \
    AS a(at, token, role, remote, operation, object, status, ord) ORDER BY ord";

/// Appends records in one statement, in order.
pub(super) async fn append(
    c: &impl GenericClient,
    records: &[AuditRecord],
) -> Result<(), StoreError> {
    let r = records;
    let at: Vec<i64> = r.iter().map(|r| r.at).collect();
    let token: Vec<Option<&str>> = r.iter().map(|r| r.token.as_deref()).collect();
    let role: Vec<Option<&str>> = r.iter().map(|r| r.role.as_deref()).collect();
    let remote: Vec<&str> = r.iter().map(|r| r.remote.as_str()).collect();
    let op: Vec<&str> = r.iter().map(|r| r.operation.as_str()).collect();
    let object: Vec<&str> = r.iter().map(|r| r.object.as_str()).collect();
    let status: Vec<i64> = r.iter().map(|r| i64::from(r.status)).collect();
    let st = c.prepare_cached(INSERT).await.map_err(db_err)?;
    c.execute(&st, &[&at, &token, &role, &remote, &op, &object, &status])
        .await
        .map_err(db_err)?;
    Ok(())
}

fn from_row(r: &Row) -> Result<AuditRecord, StoreError> {
    let status: i64 = get(r, 7)?;
    Ok(AuditRecord {
        seq: get::<i64>(r, 0)? as u64,
        at: get(r, 1)?,
        token: get(r, 2)?,
        role: get(r, 3)?,
        remote: get(r, 4)?,
        operation: get(r, 5)?,
        object: get(r, 6)?,
        status: u16::try_from(status).map_err(|_| corrupt(format!("HTTP status {status}")))?,
    })
}

/// Records matching `q`, newest first.
pub(super) async fn list(
    c: &impl GenericClient,
    q: &AuditQuery,
) -> Result<Vec<AuditRecord>, StoreError> {
    let before = q.before.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let mut conds = Vec::new();
    let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(s) = &q.since {
        args.push(s);
        conds.push(format!("at >= ${}", args.len()));
    }
    if let Some(t) = &q.token {
        args.push(t);
        conds.push(format!("token = ${}", args.len()));
    }
    if let Some(b) = &before {
        args.push(b);
        conds.push(format!("seq < ${}", args.len()));
    }
    args.push(&limit);
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT seq, at, token, role, remote, operation, object, status FROM audit {filter} \
         ORDER BY seq DESC LIMIT ${}",
        args.len()
    );
    let st = c.prepare_cached(&sql).await.map_err(db_err)?;
    let rows = c.query(&st, &args).await.map_err(db_err)?;
    rows.iter().map(from_row).collect()
}

/// Deletes records with `at < before`; returns how many.
pub(super) async fn prune(c: &impl GenericClient, before: i64) -> Result<u64, StoreError> {
    c.execute("DELETE FROM audit WHERE at < $1", &[&before])
        .await
        .map_err(db_err)
}
