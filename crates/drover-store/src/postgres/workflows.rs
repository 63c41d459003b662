//! Workflows (table `workflows`): a name, a creation time, and the current nodes (name, task,
//! upstream names) as a JSON document.

use deadpool_postgres::{GenericClient, Transaction};
use drover_core::dag::WorkflowRecord;
use tokio_postgres::Row;

use super::codec::{get, last_per_key};
use super::db_err;
use crate::sqlite::workflows::{nodes_from_doc, workflow_doc};
use crate::StoreError;

const UPSERT_WORKFLOWS: &str = "INSERT INTO workflows (id, name, created_at, doc, namespace) \
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[]) \
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, created_at = excluded.created_at, \
    doc = excluded.doc, namespace = excluded.namespace";

/// Stores workflows, a later record of one replacing an earlier one.
pub(super) async fn write(
    tx: &Transaction<'_>,
    workflows: &[WorkflowRecord],
) -> Result<(), StoreError> {
    if workflows.is_empty() {
        return Ok(());
    }
    let workflows = last_per_key(workflows, |w| w.id.as_str());
    let id: Vec<&str> = workflows.iter().map(|w| w.id.as_str()).collect();
    let name: Vec<&str> = workflows.iter().map(|w| w.name.as_str()).collect();
    let created: Vec<i64> = workflows.iter().map(|w| w.created_at).collect();
    let doc: Vec<String> = workflows.iter().map(|w| workflow_doc(w)).collect();
    let namespace: Vec<&str> = workflows.iter().map(|w| w.namespace.as_str()).collect();
    let st = tx.prepare_cached(UPSERT_WORKFLOWS).await.map_err(db_err)?;
    tx.execute(&st, &[&id, &name, &created, &doc, &namespace])
        .await
        .map_err(db_err)?;
    Ok(())
}

pub(super) async fn get_one(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<WorkflowRecord>, StoreError> {
    let st = c
        .prepare_cached("SELECT id, name, created_at, doc, namespace FROM workflows WHERE id = $1")
        .await
        .map_err(db_err)?;
    let row = c.query_opt(&st, &[&id]).await.map_err(db_err)?;
    row.as_ref().map(workflow_from_row).transpose()
}

/// The newest `limit` workflows, newest first, of every namespace or only `namespaces`.
pub(super) async fn newest(
    c: &impl GenericClient,
    limit: usize,
    namespaces: Option<&[String]>,
) -> Result<Vec<WorkflowRecord>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT id, name, created_at, doc, namespace FROM workflows \
             WHERE ($2::text[] IS NULL OR namespace = ANY($2)) \
             ORDER BY created_at DESC, id DESC LIMIT $1",
        )
        .await
        .map_err(db_err)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = c.query(&st, &[&limit, &namespaces]).await.map_err(db_err)?;
    rows.iter().map(workflow_from_row).collect()
}

fn workflow_from_row(row: &Row) -> Result<WorkflowRecord, StoreError> {
    Ok(WorkflowRecord {
        id: get(row, 0)?,
        namespace: get(row, 4)?,
        name: get(row, 1)?,
        created_at: get(row, 2)?,
        nodes: nodes_from_doc(get(row, 3)?)?,
    })
}
