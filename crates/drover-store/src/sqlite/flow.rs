//! SQLite side of serial and parallel execution: task flow records, queue configurations,
//! workflows, and the idempotency keys the core indexes at start (schema 0003).

use drover_core::dag::{WorkflowNode, WorkflowRecord};
use drover_core::schedule::{Misfire, Overlap, ScheduleRecord, ScheduleSpec, Trigger};
use drover_core::{
    FlowRecord, FlowSpec, Micros, QueueConfig, Snapshot, TaskDef, TaskId, TaskState, UpstreamPolicy,
};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde_json::{json, Value};

use super::codec::{
    id_bytes, placement_from_json, placement_to_json, spec_from_json, spec_to_json,
};
use super::db_err;
use crate::batch::Batch;
use crate::StoreError;

const FLOW_COLS: &str = "task_id, after_ids, waiting, on_upstream_failure, serial_key, \
    deadline, workflow_id, node, upstream_failed, upstream_outputs";

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn ids_to_json(ids: &[TaskId]) -> String {
    Value::from(ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()).to_string()
}

fn ids_from_json(s: &str) -> Result<Vec<TaskId>, StoreError> {
    let v: Vec<String> = serde_json::from_str(s).map_err(corrupt)?;
    v.iter().map(|i| i.parse().map_err(corrupt)).collect()
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
    let upstream_outputs: Vec<(String, String)> = match outputs {
        Some(s) => serde_json::from_str(&s).map_err(corrupt)?,
        None => Vec::new(),
    };
    let upstream_failed = match failed {
        Some(s) => {
            let (u, st): (String, String) = serde_json::from_str(&s).map_err(corrupt)?;
            Some((
                u.parse::<TaskId>().map_err(corrupt)?,
                st.parse::<TaskState>().map_err(corrupt)?,
            ))
        }
        None => None,
    };
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

fn queue_from_row(row: &Row<'_>) -> Result<QueueConfig, StoreError> {
    let strategy: Option<String> = row.get(3).map_err(db_err)?;
    let conc: Option<i64> = row.get(1).map_err(db_err)?;
    Ok(QueueConfig {
        name: row.get(0).map_err(db_err)?,
        concurrency: conc.map(|c| c as u32),
        paused: row.get::<_, i64>(2).map_err(db_err)? != 0,
        strategy: strategy.map(|s| s.parse().map_err(corrupt)).transpose()?,
    })
}

fn workflow_from_row(row: &Row<'_>) -> Result<WorkflowRecord, StoreError> {
    let doc: String = row.get(3).map_err(db_err)?;
    let v: Value = serde_json::from_str(&doc).map_err(corrupt)?;
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
    Ok(WorkflowRecord {
        id: row.get(0).map_err(db_err)?,
        name: row.get(1).map_err(db_err)?,
        created_at: row.get(2).map_err(db_err)?,
        nodes,
    })
}

fn workflow_doc(w: &WorkflowRecord) -> String {
    Value::from(
        w.nodes
            .iter()
            .map(|n| json!({"name": n.name, "task_id": n.task_id.to_string(), "after": n.after}))
            .collect::<Vec<_>>(),
    )
    .to_string()
}

/// Writes the batch's flow records, queue configs and workflows (inside the commit's
/// transaction).
pub(super) fn commit(tx: &Transaction<'_>, batch: &Batch) -> Result<(), StoreError> {
    if !batch.flows.is_empty() {
        let mut st = tx
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO task_flow ({FLOW_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
            ))
            .map_err(db_err)?;
        for f in &batch.flows {
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
                f.upstream_failed
                    .map(|(u, s)| json!([u.to_string(), s.as_str()]).to_string()),
                (!f.upstream_outputs.is_empty()).then(|| json!(f.upstream_outputs).to_string()),
            ])
            .map_err(db_err)?;
        }
    }
    for q in &batch.queues {
        tx.execute(
            "INSERT OR REPLACE INTO queues (name, concurrency, paused, strategy) \
             VALUES (?,?,?,?)",
            params![
                q.name,
                q.concurrency.map(i64::from),
                q.paused as i64,
                q.strategy.map(|s| s.as_str())
            ],
        )
        .map_err(db_err)?;
    }
    for w in &batch.workflows {
        tx.execute(
            "INSERT OR REPLACE INTO workflows (id, name, created_at, doc) VALUES (?,?,?,?)",
            params![w.id, w.name, w.created_at, workflow_doc(w)],
        )
        .map_err(db_err)?;
    }
    commit_schedules(tx, batch)?;
    for (name, drained) in &batch.drains {
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

/// Flow state for the snapshot: flow records of non-terminal tasks, queue configs, keys.
/// Fills in the snapshot's flows of active tasks, queues, schedules, drained workers and
/// idempotency keys.
pub(super) fn load(conn: &Connection, active: &str, snap: &mut Snapshot) -> Result<(), StoreError> {
    {
        let cols = FLOW_COLS
            .split(',')
            .map(|c| format!("f.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut st = conn
            .prepare(&format!(
                "SELECT {cols} FROM task_flow f JOIN tasks t ON t.id = f.task_id \
                 WHERE t.state IN ({active})"
            ))
            .map_err(db_err)?;
        let mut rows = st.query([]).map_err(db_err)?;
        while let Some(r) = rows.next().map_err(db_err)? {
            snap.flows.push(flow_from_row(r)?);
        }
    }
    snap.queues = queue_configs(conn)?;
    snap.schedules = schedules(conn)?;
    snap.drained_workers = {
        let mut st = conn
            .prepare("SELECT name FROM drained_workers ORDER BY name")
            .map_err(db_err)?;
        let rows = st.query_map([], |r| r.get(0)).map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    let mut st = conn
        .prepare(
            "SELECT idempotency_key, id FROM tasks WHERE idempotency_key IS NOT NULL \
             ORDER BY seq",
        )
        .map_err(db_err)?;
    let mut rows = st.query([]).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        let k: String = r.get(0).map_err(db_err)?;
        let id: Vec<u8> = r.get(1).map_err(db_err)?;
        let id = <[u8; 16]>::try_from(id.as_slice())
            .map(|a| TaskId(u128::from_be_bytes(a)))
            .map_err(|_| corrupt("task id is not 16 bytes"))?;
        snap.idempotency_keys.push((k, id));
    }
    Ok(())
}

pub(super) fn queue_configs(conn: &Connection) -> Result<Vec<QueueConfig>, StoreError> {
    let mut st = conn
        .prepare_cached("SELECT name, concurrency, paused, strategy FROM queues ORDER BY name")
        .map_err(db_err)?;
    let mut rows = st.query([]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        out.push(queue_from_row(r)?);
    }
    Ok(out)
}

pub(super) fn flow(conn: &Connection, id: TaskId) -> Result<Option<FlowRecord>, StoreError> {
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

pub(super) fn workflow(conn: &Connection, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
    let mut st = conn
        .prepare_cached("SELECT id, name, created_at, doc FROM workflows WHERE id = ?")
        .map_err(db_err)?;
    let row = st
        .query_row([id], |r| Ok(workflow_from_row(r)))
        .optional()
        .map_err(db_err)?;
    row.transpose()
}

pub(super) fn workflows(
    conn: &Connection,
    limit: usize,
) -> Result<Vec<WorkflowRecord>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT id, name, created_at, doc FROM workflows ORDER BY created_at DESC, id DESC \
             LIMIT ?",
        )
        .map_err(db_err)?;
    let mut rows = st.query([limit as i64]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        out.push(workflow_from_row(r)?);
    }
    Ok(out)
}

/// Task retention's walk of the workflows (`?1` finished before, `?2` most workflows): those
/// created before the cutoff, oldest first (`workflows_by_created`), each with whether it is
/// due: every current node's task (from the doc) and every task of the workflow (by
/// `task_flow.workflow_id`: earlier runs a rerun replaced, too) is gone, or terminal and
/// finished before the cutoff. Each check stops at the first task that is not due.
pub(super) fn due_workflows_sql() -> String {
    let terminal = TaskState::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let not_due =
        format!("(t.state NOT IN ({terminal}) OR t.finished_at IS NULL OR t.finished_at >= ?1)");
    format!(
        "SELECT w.id, \
         NOT EXISTS (SELECT 1 FROM json_each(w.doc) n \
             JOIN tasks t ON t.id = unhex(n.value ->> 'task_id', '-') WHERE {not_due}) \
         AND NOT EXISTS (SELECT 1 FROM task_flow f JOIN tasks t ON t.id = f.task_id \
             WHERE f.workflow_id = w.id AND {not_due}) \
         FROM workflows w WHERE w.created_at < ?1 ORDER BY w.created_at, w.id LIMIT ?2"
    )
}

/// The stored tasks of a workflow (`?1`), earlier runs included, by id.
pub(super) const WORKFLOW_TASKS_SQL: &str = "SELECT t.id, t.idempotency_key FROM task_flow f \
    JOIN tasks t ON t.id = f.task_id WHERE f.workflow_id = ?1 ORDER BY f.task_id";

/// Task retention, the workflows: walks at most `PRUNE_WORKFLOW_SCAN` of those created before
/// `before`, oldest first, and takes each due one whole (see `due_workflows_sql`) until `due`
/// holds `limit` tasks; the last one taken may take it past `limit`. Appends the workflows'
/// stored tasks (id, idempotency key) to `due` and returns the workflows, which
/// `delete_workflow` deletes once their tasks are.
pub(super) fn due_workflows(
    tx: &Transaction<'_>,
    before: Micros,
    limit: i64,
    due: &mut Vec<(Vec<u8>, Option<String>)>,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut walk = tx.prepare_cached(&due_workflows_sql()).map_err(db_err)?;
    let mut tasks_of = tx.prepare_cached(WORKFLOW_TASKS_SQL).map_err(db_err)?;
    let scan = i64::try_from(crate::PRUNE_WORKFLOW_SCAN).unwrap_or(i64::MAX);
    let mut rows = walk.query(params![before, scan]).map_err(db_err)?;
    while (due.len() as i64) < limit {
        let Some(row) = rows.next().map_err(db_err)? else {
            break;
        };
        if !row.get::<_, bool>(1).map_err(db_err)? {
            continue;
        }
        let id: String = row.get(0).map_err(db_err)?;
        let tasks = tasks_of
            .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?;
        for t in tasks {
            due.push(t.map_err(db_err)?);
        }
        out.push(id);
    }
    Ok(out)
}

/// Deletes a workflow and whatever flow records still name it (its tasks are deleted).
pub(super) fn delete_workflow(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM task_flow WHERE workflow_id = ?1",
        "DELETE FROM workflows WHERE id = ?1",
    ] {
        tx.prepare_cached(sql)
            .and_then(|mut st| st.execute([id]))
            .map_err(db_err)?;
    }
    Ok(())
}

// ---- schedules (schema 0004) ----

fn schedule_to_json(r: &ScheduleRecord) -> String {
    let s = &r.spec;
    let trigger = match &s.trigger {
        Trigger::Cron { expr, tz } => json!({"type": "cron", "expr": expr, "tz": tz}),
        Trigger::Every { every_ms, anchor } => {
            json!({"type": "every", "every_ms": every_ms, "anchor": anchor})
        }
        Trigger::DelayAfterPrevious { delay_ms } => {
            json!({"type": "delay", "delay_ms": delay_ms})
        }
    };
    let d = &s.template;
    json!({
        "trigger": trigger,
        "overlap": s.overlap.as_str(),
        "misfire": s.misfire.as_str(),
        "max_catch_up": s.max_catch_up,
        "template": {
            "queue": d.queue,
            "kind": d.kind,
            "priority": d.priority,
            "spec": spec_to_json(&d.spec),
            "max_attempts": d.max_attempts,
            "backoff_ms": d.backoff_ms,
            "timeout_ms": d.timeout_ms,
            "idempotency_key": d.idempotency_key,
            "placement": placement_to_json(&d.placement),
        },
        "paused": r.paused,
        "created_at": r.created_at,
        "last_slot": r.last_slot,
        "last_task": r.last_task.map(|t| t.to_string()),
        "next_at": r.next_at,
    })
    .to_string()
}

fn schedule_from_json(name: String, doc: &str) -> Result<ScheduleRecord, StoreError> {
    let v: Value = serde_json::from_str(doc).map_err(corrupt)?;
    let label = name.clone();
    let bad = |what: &str| corrupt(format!("schedule {label}: bad {what}"));
    let i64_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64);
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let t = v.get("trigger").ok_or_else(|| bad("trigger"))?;
    let trigger = match str_of(t, "type").as_deref() {
        Some("cron") => Trigger::Cron {
            expr: str_of(t, "expr").ok_or_else(|| bad("expr"))?,
            tz: str_of(t, "tz").ok_or_else(|| bad("tz"))?,
        },
        Some("every") => Trigger::Every {
            every_ms: i64_of(t, "every_ms").ok_or_else(|| bad("every_ms"))? as u64,
            anchor: i64_of(t, "anchor").ok_or_else(|| bad("anchor"))?,
        },
        Some("delay") => Trigger::DelayAfterPrevious {
            delay_ms: i64_of(t, "delay_ms").ok_or_else(|| bad("delay_ms"))? as u64,
        },
        _ => return Err(bad("trigger type")),
    };
    let d = v.get("template").ok_or_else(|| bad("template"))?;
    let template = TaskDef {
        queue: str_of(d, "queue").ok_or_else(|| bad("queue"))?,
        kind: str_of(d, "kind").ok_or_else(|| bad("kind"))?,
        priority: i64_of(d, "priority").ok_or_else(|| bad("priority"))? as i32,
        spec: spec_from_json(&str_of(d, "spec").ok_or_else(|| bad("spec"))?)?,
        max_attempts: i64_of(d, "max_attempts").ok_or_else(|| bad("max_attempts"))? as u32,
        backoff_ms: i64_of(d, "backoff_ms").ok_or_else(|| bad("backoff_ms"))? as u64,
        timeout_ms: i64_of(d, "timeout_ms").map(|t| t as u64),
        idempotency_key: str_of(d, "idempotency_key"),
        placement: placement_from_json(&str_of(d, "placement").ok_or_else(|| bad("placement"))?)?,
    };
    Ok(ScheduleRecord {
        spec: ScheduleSpec {
            name,
            trigger,
            overlap: str_of(&v, "overlap")
                .unwrap_or_default()
                .parse::<Overlap>()
                .map_err(corrupt)?,
            misfire: str_of(&v, "misfire")
                .unwrap_or_default()
                .parse::<Misfire>()
                .map_err(corrupt)?,
            max_catch_up: i64_of(&v, "max_catch_up").unwrap_or(1) as u32,
            template: std::sync::Arc::new(template),
        },
        paused: v.get("paused").and_then(Value::as_bool).unwrap_or(false),
        created_at: i64_of(&v, "created_at").ok_or_else(|| bad("created_at"))?,
        last_slot: i64_of(&v, "last_slot"),
        last_task: str_of(&v, "last_task")
            .map(|s| s.parse::<TaskId>().map_err(corrupt))
            .transpose()?,
        next_at: i64_of(&v, "next_at"),
    })
}

pub(super) fn commit_schedules(tx: &Transaction<'_>, batch: &Batch) -> Result<(), StoreError> {
    for (name, rec) in &batch.schedules {
        match rec {
            Some(r) => tx
                .execute(
                    "INSERT OR REPLACE INTO schedules (name, doc) VALUES (?, ?)",
                    params![name, schedule_to_json(r)],
                )
                .map_err(db_err)?,
            None => tx
                .execute("DELETE FROM schedules WHERE name = ?", [name])
                .map_err(db_err)?,
        };
    }
    Ok(())
}

pub(super) fn schedules(conn: &Connection) -> Result<Vec<ScheduleRecord>, StoreError> {
    let mut st = conn
        .prepare_cached("SELECT name, doc FROM schedules ORDER BY name")
        .map_err(db_err)?;
    let mut rows = st.query([]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        let name: String = r.get(0).map_err(db_err)?;
        let doc: String = r.get(1).map_err(db_err)?;
        out.push(schedule_from_json(name, &doc)?);
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
