//! Workflows (table `workflows`, schema 0003): a name, a creation time, and the current nodes
//! (name, task, upstream names) as a JSON document.

use drover_core::dag::{WorkflowNode, WorkflowRecord};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction};
use serde_json::{json, Value};

use super::codec::corrupt;
use super::db_err;
use crate::StoreError;

/// Stores workflows, a later record of one replacing an earlier one.
pub(super) fn write(tx: &Transaction<'_>, workflows: &[WorkflowRecord]) -> Result<(), StoreError> {
    for w in workflows {
        tx.execute(
            "INSERT OR REPLACE INTO workflows (id, name, created_at, doc, namespace) \
             VALUES (?,?,?,?,?)",
            params![w.id, w.name, w.created_at, workflow_doc(w), w.namespace],
        )
        .map_err(db_err)?;
    }
    Ok(())
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
    let mut st = conn
        .prepare_cached("SELECT id, name, created_at, doc, namespace FROM workflows WHERE id = ?")
        .map_err(db_err)?;
    let row = st
        .query_row([id], |r| Ok(workflow_from_row(r)))
        .optional()
        .map_err(db_err)?;
    row.transpose()
}

/// The newest `limit` workflows, newest first, of every namespace or only `namespaces`.
pub(super) fn newest(
    conn: &Connection,
    limit: usize,
    namespaces: Option<&[String]>,
) -> Result<Vec<WorkflowRecord>, StoreError> {
    let mut args: Vec<SqlValue> = Vec::new();
    let filter = match namespaces {
        None => String::new(),
        Some(ns) => {
            args.extend(ns.iter().map(|n| SqlValue::Text(n.clone())));
            format!("WHERE namespace IN ({}) ", vec!["?"; ns.len()].join(", "))
        }
    };
    args.push(SqlValue::Integer(limit as i64));
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT id, name, created_at, doc, namespace FROM workflows {filter}\
             ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .map_err(db_err)?;
    let mut rows = st.query(params_from_iter(args)).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        out.push(workflow_from_row(r)?);
    }
    Ok(out)
}

fn workflow_from_row(row: &Row<'_>) -> Result<WorkflowRecord, StoreError> {
    let doc: String = row.get(3).map_err(db_err)?;
    Ok(WorkflowRecord {
        id: row.get(0).map_err(db_err)?,
        namespace: row.get(4).map_err(db_err)?,
        name: row.get(1).map_err(db_err)?,
        created_at: row.get(2).map_err(db_err)?,
        nodes: nodes_from_doc(&doc)?,
    })
}

/// The nodes of a workflow's stored document (`workflow_doc`).
pub(crate) fn nodes_from_doc(doc: &str) -> Result<Vec<WorkflowNode>, StoreError> {
    let v: Value = serde_json::from_str(doc).map_err(corrupt)?;
    let mut nodes = Vec::new();
    for n in v
        .as_array()
        .ok_or_else(|| corrupt("workflow doc is not a list"))?
    {
        let s = |k: &str| {
            n.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| corrupt(format!("workflow node without {k}")))
        };
        let after = n
            .get("after")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        nodes.push(WorkflowNode {
            name: s("name")?,
            task_id: s("task_id")?.parse().map_err(corrupt)?,
            after,
        });
    }
    Ok(nodes)
}

pub(crate) fn workflow_doc(w: &WorkflowRecord) -> String {
    Value::from(
        w.nodes
            .iter()
            .map(|n| json!({"name": n.name, "task_id": n.task_id.to_string(), "after": n.after}))
            .collect::<Vec<_>>(),
    )
    .to_string()
}
