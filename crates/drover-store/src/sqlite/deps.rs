//! Per-task flow records (table `task_flow`, schema 0003): a task's upstreams and the ones it
//! still waits for, its upstream policy, serial key, deadline, workflow membership, and what
//! its upstreams left it (the failed one, their outputs).

use drover_core::{FlowRecord, FlowSpec, TaskId, TaskState, UpstreamPolicy};
use rusqlite::{params, Connection, Row, Transaction};
use serde_json::{json, Value};

use super::codec::{corrupt, id_bytes};
use super::{db_err, prefixed};
use crate::StoreError;

const FLOW_COLS: &str = "task_id, after_ids, waiting, on_upstream_failure, serial_key, \
    deadline, workflow_id, node, upstream_failed, upstream_outputs";

pub(super) fn write(tx: &Transaction<'_>, flows: &[FlowRecord]) -> Result<(), StoreError> {
    if flows.is_empty() {
        return Ok(());
    }
    let mut st = tx
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO task_flow ({FLOW_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
        ))
        .map_err(db_err)?;
    for f in flows {
        let (wf, node) = match &f.spec.workflow {
            Some((w, n)) => (Some(w.as_str()), Some(n.as_str())),
            None => (None, None),
        };
        st.execute(params![
            &id_bytes(f.task_id)[..],
            ids_to_json(&f.spec.after),
            ids_to_json(&f.waiting),
            f.spec.on_upstream_failure.as_str(),
            f.spec.serial_key,
            f.spec.deadline,
            wf,
            node,
            failed_to_json(f.upstream_failed),
            outputs_to_json(&f.upstream_outputs),
        ])
        .map_err(db_err)?;
    }
    Ok(())
}

/// The flow record of one task, if it has one.
pub(super) fn of_task(conn: &Connection, id: TaskId) -> Result<Option<FlowRecord>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {FLOW_COLS} FROM task_flow WHERE task_id = ?"
        ))
        .map_err(db_err)?;
    let mut rows = st.query([&id_bytes(id)[..]]).map_err(db_err)?;
    match rows.next().map_err(db_err)? {
        Some(r) => Ok(Some(flow_from_row(r)?)),
        None => Ok(None),
    }
}

/// The flow records of the tasks in the states `states` (an `IN (…)` list).
pub(super) fn of_states(conn: &Connection, states: &str) -> Result<Vec<FlowRecord>, StoreError> {
    let mut st = conn
        .prepare(&format!(
            "SELECT {} FROM task_flow f JOIN tasks t ON t.id = f.task_id \
             WHERE t.state IN ({states})",
            prefixed(FLOW_COLS, "f.")
        ))
        .map_err(db_err)?;
    let mut rows = st.query([]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        out.push(flow_from_row(r)?);
    }
    Ok(out)
}

/// Repairs a database whose schema version 4 was applied from an earlier build of
/// `0004_schedules.sql`, before it added `task_flow.upstream_outputs`.
pub(super) fn ensure_columns(conn: &Connection) -> Result<(), StoreError> {
    let mut st = conn
        .prepare("SELECT 1 FROM pragma_table_info('task_flow') WHERE name = 'upstream_outputs'")
        .map_err(db_err)?;
    if !st.exists([]).map_err(db_err)? {
        conn.execute_batch("ALTER TABLE task_flow ADD COLUMN upstream_outputs TEXT")
            .map_err(db_err)?;
    }
    Ok(())
}

pub(crate) fn ids_to_json(ids: &[TaskId]) -> String {
    Value::from(ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()).to_string()
}

pub(crate) fn ids_from_json(s: &str) -> Result<Vec<TaskId>, StoreError> {
    let v: Vec<String> = serde_json::from_str(s).map_err(corrupt)?;
    v.iter().map(|i| i.parse().map_err(corrupt)).collect()
}

/// `upstream_failed` as stored: JSON `[id, state]`.
pub(crate) fn failed_to_json(failed: Option<(TaskId, TaskState)>) -> Option<String> {
    failed.map(|(u, s)| json!([u.to_string(), s.as_str()]).to_string())
}

pub(crate) fn failed_from_json(s: Option<&str>) -> Result<Option<(TaskId, TaskState)>, StoreError> {
    let Some(s) = s else {
        return Ok(None);
    };
    let (u, st): (String, String) = serde_json::from_str(s).map_err(corrupt)?;
    Ok(Some((
        u.parse::<TaskId>().map_err(corrupt)?,
        st.parse::<TaskState>().map_err(corrupt)?,
    )))
}

/// `upstream_outputs` as stored: JSON `[[node, output], ..]`, NULL when there is none.
pub(crate) fn outputs_to_json(outputs: &[(String, String)]) -> Option<String> {
    (!outputs.is_empty()).then(|| json!(outputs).to_string())
}

pub(crate) fn outputs_from_json(s: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
    match s {
        Some(s) => serde_json::from_str(s).map_err(corrupt),
        None => Ok(Vec::new()),
    }
}

fn flow_from_row(row: &Row<'_>) -> Result<FlowRecord, StoreError> {
    let id: Vec<u8> = row.get(0).map_err(db_err)?;
    let id = <[u8; 16]>::try_from(id.as_slice())
        .map(|a| TaskId(u128::from_be_bytes(a)))
        .map_err(|_| corrupt("flow task id is not 16 bytes"))?;
    let after: String = row.get(1).map_err(db_err)?;
    let waiting: String = row.get(2).map_err(db_err)?;
    let policy: String = row.get(3).map_err(db_err)?;
    let wf: Option<String> = row.get(6).map_err(db_err)?;
    let node: Option<String> = row.get(7).map_err(db_err)?;
    let failed: Option<String> = row.get(8).map_err(db_err)?;
    let outputs: Option<String> = row.get(9).map_err(db_err)?;
    let upstream_outputs = outputs_from_json(outputs.as_deref())?;
    let upstream_failed = failed_from_json(failed.as_deref())?;
    Ok(FlowRecord {
        task_id: id,
        spec: FlowSpec {
            after: ids_from_json(&after)?,
            on_upstream_failure: policy.parse::<UpstreamPolicy>().map_err(corrupt)?,
            serial_key: row.get(4).map_err(db_err)?,
            deadline: row.get(5).map_err(db_err)?,
            workflow: wf.zip(node),
        },
        waiting: ids_from_json(&waiting)?,
        upstream_failed,
        upstream_outputs,
    })
}
