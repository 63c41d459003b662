//! Per-task flow records (table `task_flow`): a task's upstreams and the ones it still waits
//! for, its upstream policy, serial key, deadline, workflow membership, and what its upstreams
//! left it. Written by the commit in one upsert per batch.

use deadpool_postgres::{GenericClient, Transaction};
use drover_core::{FlowRecord, FlowSpec, TaskId, UpstreamPolicy};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::codec::{corrupt, get, get_id, uuid};
use super::{db_err, prefixed};
use crate::sqlite::deps::{
    failed_from_json, failed_to_json, ids_from_json, ids_to_json, outputs_from_json,
    outputs_to_json,
};
use crate::StoreError;

const FLOW_COLS: &str = "task_id, after_ids, waiting, on_upstream_failure, serial_key, \
    deadline, workflow_id, node, upstream_failed, upstream_outputs";

const UPSERT_FLOWS: &str = "INSERT INTO task_flow (task_id, after_ids, waiting, \
    on_upstream_failure, serial_key, deadline, workflow_id, node, upstream_failed, \
    upstream_outputs) SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], \
    $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[]) \
    ON CONFLICT (task_id) DO UPDATE SET after_ids = excluded.after_ids, \
    waiting = excluded.waiting, on_upstream_failure = excluded.on_upstream_failure, \
    serial_key = excluded.serial_key, deadline = excluded.deadline, \
    workflow_id = excluded.workflow_id, node = excluded.node, \
    upstream_failed = excluded.upstream_failed, upstream_outputs = excluded.upstream_outputs";

/// Inserts or replaces the batch's flow records (one per task: the batch folded them).
pub(super) async fn write(tx: &Transaction<'_>, flows: &[FlowRecord]) -> Result<(), StoreError> {
    if flows.is_empty() {
        return Ok(());
    }
    let id: Vec<Uuid> = flows.iter().map(|f| uuid(f.task_id)).collect();
    let after: Vec<String> = flows.iter().map(|f| ids_to_json(&f.spec.after)).collect();
    let waiting: Vec<String> = flows.iter().map(|f| ids_to_json(&f.waiting)).collect();
    let policy: Vec<&str> = flows
        .iter()
        .map(|f| f.spec.on_upstream_failure.as_str())
        .collect();
    let key: Vec<Option<&str>> = flows.iter().map(|f| f.spec.serial_key.as_deref()).collect();
    let deadline: Vec<Option<i64>> = flows.iter().map(|f| f.spec.deadline).collect();
    let wf: Vec<Option<&str>> = flows
        .iter()
        .map(|f| f.spec.workflow.as_ref().map(|(w, _)| w.as_str()))
        .collect();
    let node: Vec<Option<&str>> = flows
        .iter()
        .map(|f| f.spec.workflow.as_ref().map(|(_, n)| n.as_str()))
        .collect();
    let failed: Vec<Option<String>> = flows
        .iter()
        .map(|f| failed_to_json(f.upstream_failed))
        .collect();
    let outputs: Vec<Option<String>> = flows
        .iter()
        .map(|f| outputs_to_json(&f.upstream_outputs))
        .collect();
    let p: [&(dyn ToSql + Sync); 10] = [
        &id, &after, &waiting, &policy, &key, &deadline, &wf, &node, &failed, &outputs,
    ];
    let st = tx.prepare_cached(UPSERT_FLOWS).await.map_err(db_err)?;
    tx.execute(&st, &p).await.map_err(db_err)?;
    Ok(())
}

/// The flow record of one task, if it has one.
pub(super) async fn of_task(
    c: &impl GenericClient,
    id: TaskId,
) -> Result<Option<FlowRecord>, StoreError> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {FLOW_COLS} FROM task_flow WHERE task_id = $1"
        ))
        .await
        .map_err(db_err)?;
    let row = c.query_opt(&st, &[&uuid(id)]).await.map_err(db_err)?;
    row.as_ref().map(flow_from_row).transpose()
}

/// The flow records of the tasks in the states `states` (an `IN (…)` list).
pub(super) async fn of_states(
    c: &impl GenericClient,
    states: &str,
) -> Result<Vec<FlowRecord>, StoreError> {
    let sql = format!(
        "SELECT {} FROM task_flow f JOIN tasks t ON t.id = f.task_id \
         WHERE t.state IN ({states})",
        prefixed(FLOW_COLS, "f.")
    );
    let rows = c.query(&sql, &[]).await.map_err(db_err)?;
    rows.iter().map(flow_from_row).collect()
}

fn flow_from_row(row: &Row) -> Result<FlowRecord, StoreError> {
    let policy: &str = get(row, 3)?;
    let wf: Option<String> = get(row, 6)?;
    let node: Option<String> = get(row, 7)?;
    Ok(FlowRecord {
        task_id: get_id(row, 0)?,
        spec: FlowSpec {
            after: ids_from_json(get(row, 1)?)?,
            on_upstream_failure: policy.parse::<UpstreamPolicy>().map_err(corrupt)?,
            serial_key: get(row, 4)?,
            deadline: get(row, 5)?,
            workflow: wf.zip(node),
        },
        waiting: ids_from_json(get(row, 2)?)?,
        upstream_failed: failed_from_json(get(row, 8)?)?,
        upstream_outputs: outputs_from_json(get(row, 9)?)?,
    })
}
