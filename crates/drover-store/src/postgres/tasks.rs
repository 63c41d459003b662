//! Tasks and their attempts: the commit's writes (one statement per kind of write, whatever
//! the batch's size: the rows travel as arrays and `UNNEST` turns them back into rows) and the
//! API's reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Transaction};
use drover_core::{AttemptRecord, TaskDef, TaskId, TaskRecord, TaskSpec, TaskState};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::codec::{
    attempt_from_row, get, lease_to_sql, task_from_row, text, u64_to_sql, uuid, ATTEMPT_COLS,
    TASK_COLS,
};
use super::{db_err, db_err_in};
use crate::batch::RowOp;
use crate::sqlite::codec::{placement_to_json, spec_to_json};
use crate::{StoreError, TaskQuery};

const INSERT_TASKS: &str = "INSERT INTO tasks (id, seq, queue, kind, priority, spec, \
     max_attempts, backoff_ms, timeout_ms, idempotency_key, placement, state, attempt, lost, \
     not_before, worker, lease, created_at, updated_at, started_at, finished_at, exit_code, \
     error, namespace, concurrency_key, max_concurrent, result) SELECT * FROM UNNEST($1::uuid[], \
     $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[], \
     $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::bigint[], \
     $14::bigint[], $15::bigint[], $16::text[], $17::text[], $18::bigint[], $19::bigint[], \
     $20::bigint[], $21::bigint[], $22::bigint[], $23::text[], $24::text[], $25::text[], \
     $26::bigint[], $27::text[])";

/// Only the mutable state: the definition is written once, by the insert. Placement changes
/// only when a broadcast fans out (its shard); NULL keeps it.
const UPDATE_TASKS: &str = "UPDATE tasks t SET state = u.state, attempt = u.attempt, \
     lost = u.lost, not_before = u.not_before, worker = u.worker, lease = u.lease, \
     updated_at = u.updated_at, started_at = u.started_at, finished_at = u.finished_at, \
     exit_code = u.exit_code, error = u.error, placement = COALESCE(u.placement, t.placement), \
     result = COALESCE(u.result, t.result) \
     FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
     $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], \
     $12::text[], $13::text[], $14::text[]) AS u(id, state, attempt, lost, not_before, worker, \
     lease, updated_at, started_at, finished_at, exit_code, error, placement, result) \
     WHERE t.id = u.id";

const BUMP_TASK_SEQ: &str =
    "UPDATE meta SET value = GREATEST(value, $1) WHERE key = 'next_task_seq'";

const UPSERT_ATTEMPTS: &str = "INSERT INTO attempts (task_id, attempt, worker, assigned_at, \
     started_at, finished_at, outcome, exit_code, error) SELECT * FROM UNNEST($1::uuid[], \
     $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[], \
     $8::bigint[], $9::text[]) ON CONFLICT (task_id, attempt) DO UPDATE SET \
     worker = excluded.worker, assigned_at = excluded.assigned_at, \
     started_at = excluded.started_at, finished_at = excluded.finished_at, \
     outcome = excluded.outcome, exit_code = excluded.exit_code, error = excluded.error";

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
/// new ones: at most three statements.
pub(super) async fn write(
    tx: &Transaction<'_>,
    tasks: &[(TaskRecord, RowOp)],
) -> Result<(), StoreError> {
    let (new, changed): (Vec<_>, Vec<_>) = tasks.iter().partition(|(_, op)| *op == RowOp::Insert);
    if !new.is_empty() {
        insert(tx, new.iter().map(|(t, _)| t)).await?;
        let next = new.iter().map(|(t, _)| t.seq.saturating_add(1)).max();
        let next = next.map(u64_to_sql);
        let st = tx.prepare_cached(BUMP_TASK_SEQ).await.map_err(db_err)?;
        tx.execute(&st, &[&next]).await.map_err(db_err)?;
    }
    if !changed.is_empty() {
        update(tx, changed.iter().map(|(t, _)| t)).await?;
    }
    Ok(())
}

async fn insert<'a>(
    tx: &Transaction<'_>,
    tasks: impl ExactSizeIterator<Item = &'a TaskRecord>,
) -> Result<(), StoreError> {
    let n = tasks.len();
    let mut c = TaskColumns::with_capacity(n);
    for t in tasks {
        let d = &t.def;
        c.id.push(uuid(t.id));
        c.seq.push(u64_to_sql(t.seq));
        c.namespace.push(d.namespace.clone());
        c.concurrency_key
            .push(d.concurrency.as_ref().map(|k| k.key.clone()));
        c.max_concurrent
            .push(d.concurrency.as_ref().map(|k| i64::from(k.max)));
        c.queue.push(d.queue.clone());
        c.kind.push(d.kind.clone());
        c.priority.push(i64::from(d.priority));
        c.spec.push(spec_to_json(&d.spec));
        c.max_attempts.push(i64::from(d.max_attempts));
        c.backoff_ms.push(u64_to_sql(d.backoff_ms));
        c.timeout_ms.push(d.timeout_ms.map(u64_to_sql));
        c.idempotency_key.push(d.idempotency_key.clone());
        c.placement.push(Some(placement_to_json(&d.placement)));
        c.push_state(t);
    }
    let p: [&(dyn ToSql + Sync); 27] = [
        &c.id,
        &c.seq,
        &c.queue,
        &c.kind,
        &c.priority,
        &c.spec,
        &c.max_attempts,
        &c.backoff_ms,
        &c.timeout_ms,
        &c.idempotency_key,
        &c.placement,
        &c.state,
        &c.attempt,
        &c.lost,
        &c.not_before,
        &c.worker,
        &c.lease,
        &c.created_at,
        &c.updated_at,
        &c.started_at,
        &c.finished_at,
        &c.exit_code,
        &c.error,
        &c.namespace,
        &c.concurrency_key,
        &c.max_concurrent,
        &c.result,
    ];
    let st = tx.prepare_cached(INSERT_TASKS).await.map_err(db_err)?;
    tx.execute(&st, &p)
        .await
        .map_err(|e| db_err_in(e, || format!("inserting {n} tasks")))?;
    Ok(())
}

async fn update<'a>(
    tx: &Transaction<'_>,
    tasks: impl ExactSizeIterator<Item = &'a TaskRecord>,
) -> Result<(), StoreError> {
    let n = tasks.len();
    let mut c = TaskColumns::with_capacity(n);
    for t in tasks {
        c.id.push(uuid(t.id));
        // Placement changes only when a broadcast fans out (its shard).
        c.placement
            .push((!t.def.placement.is_default()).then(|| placement_to_json(&t.def.placement)));
        c.push_state(t);
    }
    let p: [&(dyn ToSql + Sync); 14] = [
        &c.id,
        &c.state,
        &c.attempt,
        &c.lost,
        &c.not_before,
        &c.worker,
        &c.lease,
        &c.updated_at,
        &c.started_at,
        &c.finished_at,
        &c.exit_code,
        &c.error,
        &c.placement,
        &c.result,
    ];
    let st = tx.prepare_cached(UPDATE_TASKS).await.map_err(db_err)?;
    let updated = tx.execute(&st, &p).await.map_err(db_err)?;
    if updated != n as u64 {
        return Err(StoreError::Backend(format!(
            "update of unknown task: {} of {n} updated tasks exist",
            updated
        )));
    }
    Ok(())
}

/// The `tasks` columns of a batch, one array each.
#[derive(Default)]
struct TaskColumns {
    id: Vec<Uuid>,
    seq: Vec<i64>,
    namespace: Vec<String>,
    concurrency_key: Vec<Option<String>>,
    max_concurrent: Vec<Option<i64>>,
    queue: Vec<String>,
    kind: Vec<String>,
    priority: Vec<i64>,
    spec: Vec<String>,
    max_attempts: Vec<i64>,
    backoff_ms: Vec<i64>,
    timeout_ms: Vec<Option<i64>>,
    idempotency_key: Vec<Option<String>>,
    placement: Vec<Option<String>>,
    state: Vec<&'static str>,
    attempt: Vec<i64>,
    lost: Vec<i64>,
    not_before: Vec<Option<i64>>,
    worker: Vec<Option<String>>,
    lease: Vec<Option<String>>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    started_at: Vec<Option<i64>>,
    finished_at: Vec<Option<i64>>,
    exit_code: Vec<Option<i64>>,
    error: Vec<Option<String>>,
    result: Vec<Option<String>>,
}

impl TaskColumns {
    fn with_capacity(n: usize) -> TaskColumns {
        TaskColumns {
            id: Vec::with_capacity(n),
            state: Vec::with_capacity(n),
            ..TaskColumns::default()
        }
    }

    /// The mutable state of `t`.
    fn push_state(&mut self, t: &TaskRecord) {
        self.state.push(t.state.as_str());
        self.attempt.push(i64::from(t.attempt));
        self.lost.push(i64::from(t.lost));
        self.not_before.push(t.not_before);
        self.worker.push(t.worker.clone());
        self.lease.push(lease_to_sql(t.lease));
        self.created_at.push(t.created_at);
        self.updated_at.push(t.updated_at);
        self.started_at.push(t.started_at);
        self.finished_at.push(t.finished_at);
        self.exit_code.push(t.exit_code.map(i64::from));
        self.error.push(text(t.error.as_deref()));
        self.result.push(t.result.as_deref().map(str::to_string));
    }
}

/// Inserts or replaces attempts: one statement.
pub(super) async fn write_attempts(
    tx: &Transaction<'_>,
    attempts: &[AttemptRecord],
) -> Result<(), StoreError> {
    if attempts.is_empty() {
        return Ok(());
    }
    let id: Vec<Uuid> = attempts.iter().map(|a| uuid(a.task_id)).collect();
    let attempt: Vec<i64> = attempts.iter().map(|a| i64::from(a.attempt)).collect();
    let worker: Vec<&str> = attempts.iter().map(|a| a.worker.as_str()).collect();
    let assigned: Vec<i64> = attempts.iter().map(|a| a.assigned_at).collect();
    let started: Vec<Option<i64>> = attempts.iter().map(|a| a.started_at).collect();
    let finished: Vec<Option<i64>> = attempts.iter().map(|a| a.finished_at).collect();
    let outcome: Vec<Option<&str>> = attempts
        .iter()
        .map(|a| a.outcome.map(|o| o.as_str()))
        .collect();
    let exit: Vec<Option<i64>> = attempts
        .iter()
        .map(|a| a.exit_code.map(i64::from))
        .collect();
    let error: Vec<Option<String>> = attempts.iter().map(|a| text(a.error.as_deref())).collect();
    let st = tx.prepare_cached(UPSERT_ATTEMPTS).await.map_err(db_err)?;
    tx.execute(
        &st,
        &[
            &id, &attempt, &worker, &assigned, &started, &finished, &outcome, &exit, &error,
        ],
    )
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(super) async fn task(
    c: &impl GenericClient,
    id: TaskId,
) -> Result<Option<TaskRecord>, StoreError> {
    let st = c
        .prepare_cached(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = $1"))
        .await
        .map_err(db_err)?;
    let row = c.query_opt(&st, &[&uuid(id)]).await.map_err(db_err)?;
    row.as_ref().map(task_from_row).transpose()
}

/// The whole definitions of those of `ids` that are stored.
pub(super) async fn defs(
    c: &impl GenericClient,
    ids: &[TaskId],
) -> Result<Vec<(TaskId, Arc<TaskDef>)>, StoreError> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {TASK_COLS} FROM tasks WHERE id = ANY($1::uuid[])"
        ))
        .await
        .map_err(db_err)?;
    let keys: Vec<Uuid> = ids.iter().map(|id| uuid(*id)).collect();
    let rows = c.query(&st, &[&keys]).await.map_err(db_err)?;
    rows.iter()
        .map(|row| task_from_row(row).map(|rec| (rec.id, rec.def)))
        .collect()
}

/// The stored bodies of `ids` (for broadcast copies, `Batch::fill_copies`).
pub(super) async fn bodies(
    c: &impl GenericClient,
    ids: &[TaskId],
) -> Result<HashMap<TaskId, TaskSpec>, StoreError> {
    Ok(defs(c, ids)
        .await?
        .into_iter()
        .map(|(id, def)| (id, def.spec.clone()))
        .collect())
}

pub(super) async fn attempts(
    c: &impl GenericClient,
    id: TaskId,
) -> Result<Vec<AttemptRecord>, StoreError> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {ATTEMPT_COLS} FROM attempts WHERE task_id = $1 ORDER BY attempt"
        ))
        .await
        .map_err(db_err)?;
    let rows = c.query(&st, &[&uuid(id)]).await.map_err(db_err)?;
    rows.iter().map(|r| attempt_from_row(r, 0)).collect()
}

/// The listing: newest first, filtered by state, queue and cursor.
pub(super) async fn list(
    c: &impl GenericClient,
    q: &TaskQuery,
) -> Result<Vec<TaskRecord>, StoreError> {
    if q.limit == 0 {
        return Ok(Vec::new());
    }
    let state = q.state.map(|s| s.as_str());
    let before = q.before.map(uuid);
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let mut conds = Vec::new();
    let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(s) = &state {
        args.push(s);
        conds.push(format!("state = ${}", args.len()));
    }
    if let Some(queue) = &q.queue {
        args.push(queue);
        conds.push(format!("queue = ${}", args.len()));
    }
    if let Some(ns) = &q.namespaces {
        args.push(ns);
        conds.push(format!("namespace = ANY(${})", args.len()));
    }
    if let Some(b) = &before {
        args.push(b);
        conds.push(format!("id < ${}", args.len()));
    }
    args.push(&limit);
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT {TASK_COLS} FROM tasks {filter}ORDER BY id DESC LIMIT ${}",
        args.len()
    );
    let st = c.prepare_cached(&sql).await.map_err(db_err)?;
    let rows = c.query(&st, &args).await.map_err(db_err)?;
    rows.iter().map(task_from_row).collect()
}

pub(super) async fn count_by_state(
    c: &impl GenericClient,
    namespaces: Option<&[String]>,
) -> Result<BTreeMap<TaskState, u64>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT state, sum(n)::bigint FROM state_counts \
             WHERE n > 0 AND ($1::text[] IS NULL OR namespace = ANY($1)) GROUP BY state",
        )
        .await
        .map_err(db_err)?;
    let rows = c.query(&st, &[&namespaces]).await.map_err(db_err)?;
    let mut out = BTreeMap::new();
    for row in &rows {
        let state: &str = get(row, 0)?;
        let n: i64 = get(row, 1)?;
        let state = state.parse::<TaskState>().map_err(StoreError::Corrupt)?;
        let n = u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} tasks {state}")))?;
        out.insert(state, n);
    }
    Ok(out)
}
