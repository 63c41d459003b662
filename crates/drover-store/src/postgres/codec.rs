//! Rows <-> core records for PostgreSQL. The JSON documents (spec, placement, flows,
//! workflows, schedules) are encoded by the SQLite codec's functions, so both stores hold the
//! same text; this module maps the typed columns: UUID task ids, BIGINT numbers.

use std::sync::Arc;

use drover_core::{
    AttemptOutcome, AttemptRecord, Event, EventKind, LeaseToken, LogChunk, LogStream,
    ScheduleChange, TaskDef, TaskId, TaskRecord, TaskState, WorkerEventState, WorkflowState,
};
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;
use uuid::Uuid;

pub(super) use crate::sqlite::codec::corrupt;
use crate::sqlite::codec::{placement_from_json, spec_from_column};
use crate::StoreError;

/// The columns of `tasks`, in the order `task_from_row` reads them.
pub(super) const TASK_COLS: &str = "id, seq, queue, kind, priority, spec, max_attempts, \
     backoff_ms, timeout_ms, idempotency_key, placement, state, attempt, lost, not_before, \
     worker, lease, created_at, updated_at, started_at, finished_at, exit_code, error, \
     namespace, concurrency_key, max_concurrent, result";
pub(super) const TASK_NCOLS: usize = 27;

/// The columns of `attempts`, in the order `attempt_from_row` reads them.
pub(super) const ATTEMPT_COLS: &str =
    "task_id, attempt, worker, assigned_at, started_at, finished_at, outcome, exit_code, error";

/// The columns of `events`, in the order `event_from_row` reads them.
pub(super) const EVENT_COLS: &str = "seq, at, type, task_id, queue, state, attempt, worker, \
     reason, worker_name, worker_state, workflow, schedule, namespace, result_bytes";

// ---- scalars ----

pub(super) fn uuid(id: TaskId) -> Uuid {
    Uuid::from_u128(id.0)
}

pub(super) fn task_id(u: Uuid) -> TaskId {
    TaskId(u.as_u128())
}

/// u64 values are stored bit-for-bit, as in SQLite.
pub(super) fn u64_to_sql(v: u64) -> i64 {
    v as i64
}

pub(super) fn lease_to_sql(l: Option<LeaseToken>) -> Option<String> {
    l.map(|l| l.to_string())
}

/// Free text as PostgreSQL can hold it: its `text` has no NUL, so one becomes U+FFFD rather
/// than failing a commit. (Keys and names with a NUL are refused by the API.)
pub(super) fn text(s: Option<&str>) -> Option<String> {
    s.map(|s| s.replace('\0', "\u{fffd}"))
}

/// Column `i` of `row`; a value of the wrong type is corrupt data.
pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| corrupt(format!("column {i}: {e}")))
}

pub(super) fn get_id(row: &Row, i: usize) -> Result<TaskId, StoreError> {
    get::<Uuid>(row, i).map(task_id)
}

fn get_opt_id(row: &Row, i: usize) -> Result<Option<TaskId>, StoreError> {
    Ok(get::<Option<Uuid>>(row, i)?.map(task_id))
}

pub(super) fn get_u32(row: &Row, i: usize) -> Result<u32, StoreError> {
    let v: i64 = get(row, i)?;
    u32::try_from(v).map_err(|_| corrupt(format!("column {i}: {v} is not a u32")))
}

fn get_opt_u64(row: &Row, i: usize) -> Result<Option<u64>, StoreError> {
    Ok(get::<Option<i64>>(row, i)?.map(|v| v as u64))
}

fn get_opt_i32(row: &Row, i: usize) -> Result<Option<i32>, StoreError> {
    get::<Option<i64>>(row, i)?
        .map(|v| i32::try_from(v).map_err(|_| corrupt(format!("column {i}: {v} is not an i32"))))
        .transpose()
}

fn get_state(row: &Row, i: usize) -> Result<TaskState, StoreError> {
    let s: &str = get(row, i)?;
    s.parse().map_err(corrupt)
}

/// A required text column parsed with `FromStr`; a missing or unknown value is corrupt data.
fn get_parsed<T>(row: &Row, i: usize, what: &str) -> Result<T, StoreError>
where
    T: std::str::FromStr<Err = String>,
{
    let s: Option<&str> = get(row, i)?;
    let s = s.ok_or_else(|| corrupt(format!("{what} is NULL")))?;
    s.parse().map_err(|e| corrupt(format!("{what}: {e}")))
}

fn get_required(row: &Row, i: usize, what: &str) -> Result<String, StoreError> {
    get::<Option<String>>(row, i)?.ok_or_else(|| corrupt(format!("{what} is NULL")))
}

// ---- rows ----

/// Reads a task from `TASK_COLS` starting at column 0.
pub(super) fn task_from_row(row: &Row) -> Result<TaskRecord, StoreError> {
    let priority: i64 = get(row, 4)?;
    let def = TaskDef {
        namespace: get(row, 23)?,
        queue: get(row, 2)?,
        kind: get(row, 3)?,
        priority: i32::try_from(priority)
            .map_err(|_| corrupt(format!("priority {priority} is not an i32")))?,
        spec: spec_from_column(get(row, 5)?)?,
        max_attempts: get_u32(row, 6)?,
        backoff_ms: get::<i64>(row, 7)? as u64,
        timeout_ms: get_opt_u64(row, 8)?,
        idempotency_key: get(row, 9)?,
        placement: placement_from_json(get(row, 10)?)?,
        concurrency: crate::sqlite::codec::key_limit(get(row, 24)?, get(row, 25)?)?,
    };
    let lease: Option<&str> = get(row, 16)?;
    Ok(TaskRecord {
        id: get_id(row, 0)?,
        seq: get::<i64>(row, 1)? as u64,
        def: Arc::new(def),
        state: get_state(row, 11)?,
        attempt: get_u32(row, 12)?,
        lost: get_u32(row, 13)?,
        not_before: get(row, 14)?,
        worker: get(row, 15)?,
        lease: lease
            .map(|l| l.parse::<LeaseToken>().map_err(corrupt))
            .transpose()?,
        created_at: get(row, 17)?,
        updated_at: get(row, 18)?,
        started_at: get(row, 19)?,
        finished_at: get(row, 20)?,
        exit_code: get_opt_i32(row, 21)?,
        error: get(row, 22)?,
        result: get::<Option<&str>>(row, 26)?.map(Arc::from),
    })
}

/// Reads an attempt from `ATTEMPT_COLS` starting at column `at`.
pub(super) fn attempt_from_row(row: &Row, at: usize) -> Result<AttemptRecord, StoreError> {
    let outcome: Option<&str> = get(row, at + 6)?;
    Ok(AttemptRecord {
        task_id: get_id(row, at)?,
        attempt: get_u32(row, at + 1)?,
        worker: get(row, at + 2)?,
        assigned_at: get(row, at + 3)?,
        started_at: get(row, at + 4)?,
        finished_at: get(row, at + 5)?,
        outcome: outcome
            .map(|o| o.parse::<AttemptOutcome>().map_err(corrupt))
            .transpose()?,
        exit_code: get_opt_i32(row, at + 7)?,
        error: get(row, at + 8)?,
    })
}

/// Reads a task and, if the joined attempt columns are not NULL, its attempt.
pub(super) fn task_with_attempt_from_row(
    row: &Row,
) -> Result<(TaskRecord, Option<AttemptRecord>), StoreError> {
    let task = task_from_row(row)?;
    let attempt = match get::<Option<Uuid>>(row, TASK_NCOLS)? {
        None => None,
        Some(_) => Some(attempt_from_row(row, TASK_NCOLS)?),
    };
    Ok((task, attempt))
}

pub(super) fn event_from_row(row: &Row) -> Result<Event, StoreError> {
    let kind: &str = get(row, 2)?;
    let namespace = || get_required(row, 13, "event namespace");
    let kind = match kind {
        "task" => EventKind::Task {
            task_id: get_id(row, 3)?,
            namespace: namespace()?,
            queue: get(row, 4)?,
            state: get_state(row, 5)?,
            attempt: get_u32(row, 6)?,
            worker: get(row, 7)?,
            reason: get(row, 8)?,
            workflow: get(row, 11)?,
            result_bytes: get::<Option<i64>>(row, 14)?.map(|b| b as u64),
        },
        "worker" => EventKind::Worker {
            name: get(row, 9)?,
            state: get_parsed::<WorkerEventState>(row, 10, "worker event state")?,
        },
        "workflow" => EventKind::Workflow {
            workflow_id: get_required(row, 11, "workflow event id")?,
            namespace: namespace()?,
            state: get_parsed::<WorkflowState>(row, 5, "workflow event state")?,
        },
        "schedule" => EventKind::Schedule {
            namespace: namespace()?,
            name: get_required(row, 12, "schedule event name")?,
            change: get_parsed::<ScheduleChange>(row, 5, "schedule event change")?,
            task_id: get_opt_id(row, 3)?,
            reason: get(row, 8)?,
        },
        other => return Err(corrupt(format!("unknown event type '{other}'"))),
    };
    Ok(Event {
        seq: get::<i64>(row, 0)? as u64,
        at: get(row, 1)?,
        kind,
    })
}

/// Reads `task_id, attempt, stream, data`.
pub(super) fn log_from_row(row: &Row) -> Result<LogChunk, StoreError> {
    let stream: &str = get(row, 2)?;
    Ok(LogChunk {
        task_id: get_id(row, 0)?,
        attempt: get_u32(row, 1)?,
        stream: match stream {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            other => return Err(corrupt(format!("unknown log stream '{other}'"))),
        },
        data: get(row, 3)?,
    })
}

/// The last item per key, in order of first appearance: a multi-row upsert may not touch a
/// row twice, and a later write of a key replaces an earlier one.
pub(super) fn last_per_key<'a, T, K>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T>
where
    K: std::hash::Hash + Eq,
{
    let mut at: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    let mut out: Vec<&T> = Vec::new();
    for item in items {
        match at.entry(key(item)) {
            std::collections::hash_map::Entry::Occupied(e) => out[*e.get()] = item,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(item);
            }
        }
    }
    out
}
