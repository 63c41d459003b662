//! Tasks and their attempts: the commit's writes and the API's reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use drover_core::{AttemptRecord, TaskDef, TaskId, TaskRecord, TaskSpec, TaskState};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, Transaction};

use super::codec::{
    attempt_from_row, id_bytes, lease_to_sql, outcome_to_sql, placement_to_json, spec_to_json,
    task_from_row, u64_to_sql, ATTEMPT_COLS, TASK_COLS,
};
use super::rows::{self, Binder, Shape};
use super::{db_err, db_err_in};
use crate::batch::RowOp;
use crate::{StoreError, TaskQuery};

// `OR FAIL` on the task statements: any error rolls back the whole transaction anyway, so a
// statement need not be undoable on its own. That spares SQLite a statement journal per
// statement (the `state_counts` triggers would otherwise need one), a large share of the cost
// of a commit. Each is a multi-row statement (`rows.rs`): one per chunk of a batch's rows.
const INSERT_TASKS: Shape = Shape {
    head: "INSERT OR FAIL INTO tasks (id, seq, queue, kind, priority, spec, max_attempts, \
           backoff_ms, timeout_ms, idempotency_key, placement, state, attempt, lost, not_before, \
           worker, lease, created_at, updated_at, started_at, finished_at, exit_code, error, \
           namespace, concurrency_key, max_concurrent, result) VALUES ",
    row: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    tail: "",
};

/// Only the mutable state: the definition is written once, by the insert. The rows' columns
/// are `column1` (the id) to `column14`.
const UPDATE_TASKS: Shape = Shape {
    head: "UPDATE OR FAIL tasks SET state = v.column2, attempt = v.column3, lost = v.column4, \
           not_before = v.column5, worker = v.column6, lease = v.column7, updated_at = v.column8, \
           started_at = v.column9, finished_at = v.column10, exit_code = v.column11, \
           error = v.column12, placement = COALESCE(v.column13, tasks.placement), \
           result = COALESCE(v.column14, tasks.result) FROM (VALUES ",
    row: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    tail: ") AS v WHERE tasks.id = v.column1",
};

const BUMP_TASK_SEQ: &str = "UPDATE meta SET value = max(value, ?1) WHERE key = 'next_task_seq'";

const UPSERT_ATTEMPTS: Shape = Shape {
    head: "INSERT OR FAIL INTO attempts (task_id, attempt, worker, assigned_at, started_at, \
           finished_at, outcome, exit_code, error) VALUES ",
    row: "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
    tail: " ON CONFLICT (task_id, attempt) DO UPDATE SET worker = excluded.worker, \
           assigned_at = excluded.assigned_at, started_at = excluded.started_at, \
           finished_at = excluded.finished_at, outcome = excluded.outcome, \
           exit_code = excluded.exit_code, error = excluded.error",
};

/// `'a', 'b', …`: the task states that are terminal (or not), for an `IN (…)`.
pub(super) fn states_sql(terminal: bool) -> String {
    TaskState::ALL
        .iter()
        .filter(|s| s.is_terminal() == terminal)
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts the batch's new tasks, updates the others, and moves the task sequence past the
/// new ones.
pub(super) fn write(tx: &Transaction<'_>, tasks: &[(TaskRecord, RowOp)]) -> Result<(), StoreError> {
    let mut inserts = Vec::new();
    let mut updates = Vec::new();
    for (t, op) in tasks {
        match op {
            RowOp::Insert => inserts.push(t),
            RowOp::Update => updates.push(t),
        }
    }
    if !inserts.is_empty() {
        rows::write(tx, &INSERT_TASKS, &inserts, |b, t| bind_insert(b, t)).map_err(|e| {
            db_err_in(e, || {
                format!(
                    "inserting {} tasks (the first {})",
                    inserts.len(),
                    inserts[0].id
                )
            })
        })?;
        let next = inserts.iter().map(|t| t.seq.saturating_add(1)).max();
        tx.prepare_cached(BUMP_TASK_SEQ)
            .and_then(|mut st| st.execute([next.map(u64_to_sql)]))
            .map_err(db_err)?;
    }
    if !updates.is_empty() {
        let n =
            rows::write(tx, &UPDATE_TASKS, &updates, |b, t| bind_update(b, t)).map_err(db_err)?;
        if n != updates.len() {
            let ids: Vec<String> = updates.iter().map(|t| t.id.to_string()).collect();
            return Err(StoreError::Backend(format!(
                "update of unknown task: {} of {} rows updated (tasks {})",
                n,
                updates.len(),
                ids.join(", ")
            )));
        }
    }
    Ok(())
}

fn bind_insert(b: &mut Binder<'_, '_>, t: &TaskRecord) -> rusqlite::Result<()> {
    let d = &t.def;
    b.bind(&id_bytes(t.id)[..])?;
    b.bind(u64_to_sql(t.seq))?;
    b.bind(&d.queue)?;
    b.bind(&d.kind)?;
    b.bind(d.priority)?;
    b.bind(spec_to_json(&d.spec))?;
    b.bind(d.max_attempts)?;
    b.bind(u64_to_sql(d.backoff_ms))?;
    b.bind(d.timeout_ms.map(u64_to_sql))?;
    b.bind(&d.idempotency_key)?;
    b.bind(placement_to_json(&d.placement))?;
    b.bind(t.state.as_str())?;
    b.bind(t.attempt)?;
    b.bind(t.lost)?;
    b.bind(t.not_before)?;
    b.bind(&t.worker)?;
    b.bind(lease_to_sql(t.lease))?;
    b.bind(t.created_at)?;
    b.bind(t.updated_at)?;
    b.bind(t.started_at)?;
    b.bind(t.finished_at)?;
    b.bind(t.exit_code)?;
    b.bind(&t.error)?;
    b.bind(&d.namespace)?;
    b.bind(d.concurrency.as_ref().map(|c| c.key.as_str()))?;
    b.bind(d.concurrency.as_ref().map(|c| i64::from(c.max)))?;
    b.bind(t.result.as_deref())
}

fn bind_update(b: &mut Binder<'_, '_>, t: &TaskRecord) -> rusqlite::Result<()> {
    b.bind(&id_bytes(t.id)[..])?;
    b.bind(t.state.as_str())?;
    b.bind(t.attempt)?;
    b.bind(t.lost)?;
    b.bind(t.not_before)?;
    b.bind(&t.worker)?;
    b.bind(lease_to_sql(t.lease))?;
    b.bind(t.updated_at)?;
    b.bind(t.started_at)?;
    b.bind(t.finished_at)?;
    b.bind(t.exit_code)?;
    b.bind(&t.error)?;
    // Placement changes only when a broadcast fans out (its shard).
    b.bind((!t.def.placement.is_default()).then(|| placement_to_json(&t.def.placement)))?;
    b.bind(t.result.as_deref())
}

pub(super) fn write_attempts(
    tx: &Transaction<'_>,
    attempts: &[AttemptRecord],
) -> Result<(), StoreError> {
    rows::write(tx, &UPSERT_ATTEMPTS, attempts, |b, a| {
        b.bind(&id_bytes(a.task_id)[..])?;
        b.bind(a.attempt)?;
        b.bind(&a.worker)?;
        b.bind(a.assigned_at)?;
        b.bind(a.started_at)?;
        b.bind(a.finished_at)?;
        b.bind(outcome_to_sql(a.outcome))?;
        b.bind(a.exit_code)?;
        b.bind(&a.error)
    })
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn task(c: &Connection, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1"))
        .map_err(db_err)?;
    let mut rows = stmt.query([&id_bytes(id)[..]]).map_err(db_err)?;
    match rows.next().map_err(db_err)? {
        Some(row) => task_from_row(row).map(Some),
        None => Ok(None),
    }
}

/// Ids per `IN (…)` read: far below SQLite's limit of bound parameters.
const IDS_PER_READ: usize = 500;

/// The whole definitions of those of `ids` that are stored.
pub(super) fn defs(
    c: &Connection,
    ids: &[TaskId],
) -> Result<Vec<(TaskId, Arc<TaskDef>)>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_READ) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut stmt = c
            .prepare_cached(&format!(
                "SELECT {TASK_COLS} FROM tasks WHERE id IN ({marks})"
            ))
            .map_err(db_err)?;
        let keys = chunk.iter().map(|id| id_bytes(*id).to_vec());
        let mut rows = stmt.query(params_from_iter(keys)).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            let rec = task_from_row(row)?;
            out.push((rec.id, rec.def));
        }
    }
    Ok(out)
}

/// The stored bodies of `ids` (for broadcast copies, `Batch::fill_copies`).
pub(super) fn bodies(
    c: &Connection,
    ids: &[TaskId],
) -> Result<HashMap<TaskId, TaskSpec>, StoreError> {
    Ok(defs(c, ids)?
        .into_iter()
        .map(|(id, def)| (id, def.spec.clone()))
        .collect())
}

pub(super) fn attempts(c: &Connection, id: TaskId) -> Result<Vec<AttemptRecord>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {ATTEMPT_COLS} FROM attempts WHERE task_id = ?1 ORDER BY attempt"
        ))
        .map_err(db_err)?;
    let mut rows = stmt.query([&id_bytes(id)[..]]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(attempt_from_row(row, 0)?);
    }
    Ok(out)
}

/// The listing query for `q` and its parameters.
pub(super) fn list_sql(q: &TaskQuery) -> (String, Vec<Value>) {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    if let Some(s) = q.state {
        conds.push("state = ?");
        args.push(Value::Text(s.as_str().to_owned()));
    }
    if let Some(queue) = &q.queue {
        // With a state too, walk `tasks_by_state` and filter the queue (`+` keeps the planner
        // off `tasks_by_queue`): a state is usually a far smaller set than a queue's history.
        conds.push(if q.state.is_some() {
            "+queue = ?"
        } else {
            "queue = ?"
        });
        args.push(Value::Text(queue.clone()));
    }
    let in_namespaces;
    if let Some(ns) = &q.namespaces {
        in_namespaces = format!("namespace IN ({})", vec!["?"; ns.len()].join(", "));
        conds.push(&in_namespaces);
        args.extend(ns.iter().map(|n| Value::Text(n.clone())));
    }
    if let Some(b) = q.before {
        conds.push("id < ?");
        args.push(Value::Blob(id_bytes(b).to_vec()));
    }
    args.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conds.join(" AND "))
    };
    let sql = format!("SELECT {TASK_COLS} FROM tasks {filter}ORDER BY id DESC LIMIT ?");
    (sql, args)
}

pub(super) fn list(conn: &Connection, q: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
    if q.limit == 0 {
        return Ok(Vec::new());
    }
    let (sql, args) = list_sql(q);
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let mut rows = stmt.query(params_from_iter(args)).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(task_from_row(row)?);
    }
    Ok(out)
}

/// Task counts by state, over every namespace or only `namespaces`.
pub(super) fn count_by_state(
    c: &Connection,
    namespaces: Option<&[String]>,
) -> Result<BTreeMap<TaskState, u64>, StoreError> {
    let (filter, args): (String, Vec<Value>) = match namespaces {
        None => (String::new(), vec![]),
        Some(ns) => (
            format!("AND namespace IN ({})", vec!["?"; ns.len()].join(", ")),
            ns.iter().map(|n| Value::Text(n.clone())).collect(),
        ),
    };
    let sql = format!("SELECT state, sum(n) FROM state_counts WHERE n > 0 {filter} GROUP BY state");
    let mut stmt = c.prepare_cached(&sql).map_err(db_err)?;
    let mut rows = stmt.query(params_from_iter(args)).map_err(db_err)?;
    let mut out = BTreeMap::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        let state: String = row.get(0).map_err(db_err)?;
        let n: i64 = row.get(1).map_err(db_err)?;
        let state = state.parse::<TaskState>().map_err(StoreError::Corrupt)?;
        let n = u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} tasks {state}")))?;
        out.insert(state, n);
    }
    Ok(out)
}
