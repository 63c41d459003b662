//! Rows <-> core records. The core has no serde, so the spec and the placement are encoded to
//! JSON here by hand; everything else is a plain column.

use std::sync::Arc;

use drover_core::{
    AttemptOutcome, AttemptRecord, Event, EventKind, KeyLimit, LeaseToken, LogChunk, LogStream,
    PlacementSpec, ScheduleChange, Sealed, Shard, TaskDef, TaskId, TaskRecord, TaskSpec, TaskState,
    WorkerEventState, WorkflowState,
};
use rusqlite::types::ValueRef;
use rusqlite::Row;
use serde_json::{json, Map, Value};

use super::db_err;
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

/// The columns of `events`, in the order `event_from_row` reads them and `EventRow` binds
/// them. Which ones a row uses depends on its `type` (see `0005_events_and_retention.sql`).
pub(super) const EVENT_COLS: &str = "seq, at, type, task_id, queue, state, attempt, worker, \
     reason, worker_name, worker_state, workflow, schedule, namespace, result_bytes";

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

// ---- scalars ----

pub(super) fn id_bytes(id: TaskId) -> [u8; 16] {
    id.0.to_be_bytes()
}

/// u64 values are stored bit-for-bit: any value round-trips, and every realistic one
/// (below 2^63) also compares correctly in SQL.
pub(super) fn u64_to_sql(v: u64) -> i64 {
    v as i64
}

fn u64_from_sql(v: i64) -> u64 {
    v as u64
}

pub(super) fn lease_to_sql(l: Option<LeaseToken>) -> Option<String> {
    l.map(|l| l.to_string())
}

pub(super) fn outcome_to_sql(o: Option<AttemptOutcome>) -> Option<&'static str> {
    o.map(AttemptOutcome::as_str)
}

pub(super) fn id_from_blob(b: &[u8]) -> Result<TaskId, StoreError> {
    <[u8; 16]>::try_from(b)
        .map(|a| TaskId(u128::from_be_bytes(a)))
        .map_err(|_| corrupt(format!("task id of {} bytes, expected 16", b.len())))
}

fn get_id(row: &Row<'_>, i: usize) -> Result<TaskId, StoreError> {
    match row.get_ref(i).map_err(db_err)? {
        ValueRef::Blob(b) => id_from_blob(b),
        other => Err(corrupt(format!(
            "task id stored as {:?}, expected a blob",
            other.data_type()
        ))),
    }
}

fn get_u32(row: &Row<'_>, i: usize) -> Result<u32, StoreError> {
    let v: i64 = row.get(i).map_err(db_err)?;
    u32::try_from(v).map_err(|_| corrupt(format!("column {i}: {v} is not a u32")))
}

fn get_state(row: &Row<'_>, i: usize) -> Result<TaskState, StoreError> {
    let s: String = row.get(i).map_err(db_err)?;
    s.parse().map_err(corrupt)
}

fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, i: usize) -> Result<T, StoreError> {
    row.get(i).map_err(db_err)
}

// ---- spec and label selector (JSON) ----

pub(crate) fn spec_to_json(spec: &TaskSpec) -> String {
    let v = match spec {
        TaskSpec::Exec {
            argv,
            env,
            cwd,
            secret_env,
        } => {
            let mut v = json!({
                "type": "exec",
                "argv": argv,
                "env": env.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                "cwd": cwd,
            });
            // Only ciphertext is stored (hex); absent when the task has no secret env.
            if !secret_env.is_empty() {
                v["secret_env"] = secret_env
                    .iter()
                    .map(|(k, s)| json!([k, hex::encode(&s.0)]))
                    .collect();
            }
            v
        }
        TaskSpec::Noop => json!({ "type": "noop" }),
        // The payload's JSON text, as a string: stored and read back byte for byte.
        TaskSpec::Handler { payload } => json!({ "type": "handler", "payload": &**payload }),
        // Never written: `Batch` fills or refuses an insert without a body. Reads as corrupt.
        TaskSpec::InStore { .. } => json!({ "type": "in_store" }),
    };
    v.to_string()
}

fn str_list(v: &Value, what: &str) -> Result<Vec<String>, StoreError> {
    v.as_array()
        .ok_or_else(|| corrupt(format!("spec: {what} is not an array")))?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or_else(|| corrupt(format!("spec: {what} holds a non-string")))
        })
        .collect()
}

/// `[[name, hex ciphertext], ...]`.
fn sealed_pairs(list: &Value) -> Result<Vec<(String, Sealed)>, StoreError> {
    list.as_array()
        .ok_or_else(|| corrupt("spec: secret_env is not an array"))?
        .iter()
        .map(
            |pair| match str_list(pair, "secret_env entry")?.as_slice() {
                [k, v] => hex::decode(v)
                    .map(|b| (k.clone(), Sealed(b)))
                    .map_err(|_| corrupt("spec: secret_env value is not hex")),
                _ => Err(corrupt(
                    "spec: secret_env entry is not a [name, value] pair",
                )),
            },
        )
        .collect()
}

/// A spec column as read: the stored JSON, or (a snapshot's lean read, `LEAN_SPEC`) only its
/// type, which becomes the core's stand-in for the body.
pub(crate) fn spec_from_column(s: &str) -> Result<TaskSpec, StoreError> {
    match s {
        "handler" => Ok(TaskSpec::InStore { handler: true }),
        "exec" | "noop" => Ok(TaskSpec::InStore { handler: false }),
        _ => spec_from_json(s),
    }
}

pub(crate) fn spec_from_json(s: &str) -> Result<TaskSpec, StoreError> {
    let v: Value = serde_json::from_str(s).map_err(|e| corrupt(format!("spec JSON: {e}")))?;
    match v.get("type").and_then(Value::as_str) {
        Some("exec") => {
            let argv = str_list(v.get("argv").unwrap_or(&Value::Null), "argv")?;
            let env = v
                .get("env")
                .and_then(Value::as_array)
                .ok_or_else(|| corrupt("spec: env is not an array"))?
                .iter()
                .map(|pair| match str_list(pair, "env entry")?.as_slice() {
                    [k, v] => Ok((k.clone(), v.clone())),
                    _ => Err(corrupt("spec: env entry is not a [key, value] pair")),
                })
                .collect::<Result<_, _>>()?;
            let cwd = match v.get("cwd") {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) => Some(c.clone()),
                Some(_) => return Err(corrupt("spec: cwd is not a string")),
            };
            let secret_env = match v.get("secret_env") {
                None => vec![],
                Some(list) => sealed_pairs(list)?,
            };
            Ok(TaskSpec::Exec {
                argv,
                env,
                cwd,
                secret_env,
            })
        }
        Some("noop") => Ok(TaskSpec::Noop),
        Some("handler") => match v.get("payload") {
            Some(Value::String(p)) => Ok(TaskSpec::Handler {
                payload: Arc::from(p.as_str()),
            }),
            _ => Err(corrupt("spec: a handler's payload is not a string")),
        },
        other => Err(corrupt(format!("spec of unknown type {other:?}"))),
    }
}

/// Encodes a placement spec; the default is `{}`. Selector and resources use their text forms.
pub(crate) fn placement_to_json(p: &PlacementSpec) -> String {
    let mut m = Map::new();
    if let Some(s) = p.strategy {
        m.insert("strategy".into(), Value::String(s.as_str().into()));
    }
    if let Some(k) = &p.key {
        m.insert("key".into(), Value::String(k.clone()));
    }
    if !p.resources.is_empty() {
        m.insert("resources".into(), Value::String(p.resources.to_string()));
    }
    if !p.selector.0.is_empty() {
        m.insert("selector".into(), Value::String(p.selector.to_string()));
    }
    if let Some(l) = &p.spread_label {
        m.insert("spread_label".into(), Value::String(l.clone()));
    }
    if let Some(s) = &p.shard {
        m.insert(
            "shard".into(),
            serde_json::json!({
                "group": s.group.to_string(),
                "index": s.index,
                "count": s.count,
                "worker": s.worker,
            }),
        );
    }
    Value::Object(m).to_string()
}

pub(crate) fn placement_from_json(s: &str) -> Result<PlacementSpec, StoreError> {
    // Most tasks have the default: no parse (a restart reads a million of them).
    if s == "{}" {
        return Ok(PlacementSpec::default());
    }
    let v: Value = serde_json::from_str(s).map_err(|e| corrupt(format!("placement JSON: {e}")))?;
    let str_of = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let bad = |what: &str, e: String| corrupt(format!("placement {what}: {e}"));
    let shard = match v.get("shard") {
        None | Some(Value::Null) => None,
        Some(sh) => {
            let num = |k: &str| {
                sh.get(k)
                    .and_then(Value::as_u64)
                    .map(|n| n as u32)
                    .ok_or_else(|| corrupt(format!("placement shard lacks {k}")))
            };
            Some(Shard {
                group: sh
                    .get("group")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| bad("shard group", e))?,
                index: num("index")?,
                count: num("count")?,
                worker: sh
                    .get("worker")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
        }
    };
    Ok(PlacementSpec {
        strategy: str_of("strategy")
            .map(|s| s.parse().map_err(|e| bad("strategy", e)))
            .transpose()?,
        key: str_of("key"),
        resources: str_of("resources")
            .map(|s| s.parse().map_err(|e| bad("resources", e)))
            .transpose()?
            .unwrap_or_default(),
        selector: str_of("selector")
            .map(|s| {
                s.parse()
                    .map_err(|e: drover_core::placement::SelectorError| {
                        bad("selector", e.to_string())
                    })
            })
            .transpose()?
            .unwrap_or_default(),
        spread_label: str_of("spread_label"),
        shard,
    })
}

// ---- rows ----

/// A concurrency key and its limit, as stored (both or neither).
pub(crate) fn key_limit(
    key: Option<String>,
    max: Option<i64>,
) -> Result<Option<KeyLimit>, StoreError> {
    match (key, max) {
        (None, None) => Ok(None),
        (Some(key), Some(max)) => {
            let max = u32::try_from(max).map_err(|_| corrupt(format!("max_concurrent {max}")))?;
            Ok(Some(KeyLimit { key, max }))
        }
        _ => Err(corrupt(
            "a concurrency key without its limit, or the other way round",
        )),
    }
}

/// Reads a task from `TASK_COLS` starting at column 0.
pub(super) fn task_from_row(row: &Row<'_>) -> Result<TaskRecord, StoreError> {
    let spec: String = get(row, 5)?;
    let placement: String = get(row, 10)?;
    let lease: Option<String> = get(row, 16)?;
    let def = TaskDef {
        namespace: get(row, 23)?,
        queue: get(row, 2)?,
        kind: get(row, 3)?,
        priority: get(row, 4)?,
        spec: spec_from_column(&spec)?,
        max_attempts: get_u32(row, 6)?,
        backoff_ms: u64_from_sql(get(row, 7)?),
        timeout_ms: get::<Option<i64>>(row, 8)?.map(u64_from_sql),
        idempotency_key: get(row, 9)?,
        placement: placement_from_json(&placement)?,
        concurrency: key_limit(get(row, 24)?, get(row, 25)?)?,
    };
    Ok(TaskRecord {
        id: get_id(row, 0)?,
        seq: u64_from_sql(get(row, 1)?),
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
        exit_code: get(row, 21)?,
        error: get(row, 22)?,
        result: get::<Option<String>>(row, 26)?.map(Arc::from),
    })
}

/// Reads an attempt from `ATTEMPT_COLS` starting at column `at`.
pub(super) fn attempt_from_row(row: &Row<'_>, at: usize) -> Result<AttemptRecord, StoreError> {
    let outcome: Option<String> = get(row, at + 6)?;
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
        exit_code: get(row, at + 7)?,
        error: get(row, at + 8)?,
    })
}

/// Reads a task and, if the joined attempt columns are not NULL, its attempt.
pub(super) fn task_with_attempt_from_row(
    row: &Row<'_>,
) -> Result<(TaskRecord, Option<AttemptRecord>), StoreError> {
    let task = task_from_row(row)?;
    let attempt = match row.get_ref(TASK_NCOLS).map_err(db_err)? {
        ValueRef::Null => None,
        _ => Some(attempt_from_row(row, TASK_NCOLS)?),
    };
    Ok((task, attempt))
}

/// The columns of one event row, for binding (`EVENT_COLS` order).
pub(crate) struct EventRow<'a> {
    pub seq: i64,
    pub at: i64,
    pub kind: &'static str,
    pub task_id: Option<[u8; 16]>,
    pub queue: Option<&'a str>,
    /// A task's state, a workflow's aggregate state, or a schedule's change.
    pub state: Option<&'static str>,
    pub attempt: Option<u32>,
    pub worker: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub worker_name: Option<&'a str>,
    pub worker_state: Option<&'static str>,
    /// A task's workflow, or the workflow of a workflow event.
    pub workflow: Option<&'a str>,
    pub schedule: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub result_bytes: Option<u64>,
}

pub(crate) fn event_to_row(e: &Event) -> EventRow<'_> {
    let mut r = EventRow {
        seq: u64_to_sql(e.seq),
        at: e.at,
        kind: "task",
        task_id: None,
        queue: None,
        state: None,
        attempt: None,
        worker: None,
        reason: None,
        worker_name: None,
        worker_state: None,
        workflow: None,
        schedule: None,
        namespace: e.namespace(),
        result_bytes: None,
    };
    match &e.kind {
        EventKind::Task {
            task_id,
            queue,
            state,
            attempt,
            worker,
            reason,
            workflow,
            result_bytes,
            ..
        } => {
            r.result_bytes = *result_bytes;
            r.task_id = Some(id_bytes(*task_id));
            r.queue = Some(queue);
            r.state = Some(state.as_str());
            r.attempt = Some(*attempt);
            r.worker = worker.as_deref();
            r.reason = reason.as_deref();
            r.workflow = workflow.as_deref();
        }
        EventKind::Worker { name, state } => {
            r.kind = "worker";
            r.worker_name = Some(name);
            r.worker_state = Some(state.as_str());
        }
        EventKind::Workflow {
            workflow_id, state, ..
        } => {
            r.kind = "workflow";
            r.workflow = Some(workflow_id);
            r.state = Some(state.as_str());
        }
        EventKind::Schedule {
            name,
            change,
            task_id,
            reason,
            ..
        } => {
            r.kind = "schedule";
            r.schedule = Some(name);
            r.state = Some(change.as_str());
            r.task_id = task_id.map(id_bytes);
            r.reason = reason.as_deref();
        }
    }
    r
}

/// A required text column parsed with `FromStr`; a missing or unknown value is corrupt data.
fn get_parsed<T>(row: &Row<'_>, i: usize, what: &str) -> Result<T, StoreError>
where
    T: std::str::FromStr<Err = String>,
{
    let s: Option<String> = get(row, i)?;
    let s = s.ok_or_else(|| corrupt(format!("{what} is NULL")))?;
    s.parse().map_err(|e| corrupt(format!("{what}: {e}")))
}

fn get_required(row: &Row<'_>, i: usize, what: &str) -> Result<String, StoreError> {
    get::<Option<String>>(row, i)?.ok_or_else(|| corrupt(format!("{what} is NULL")))
}

pub(super) fn event_from_row(row: &Row<'_>) -> Result<Event, StoreError> {
    let kind: String = get(row, 2)?;
    let namespace = || get_required(row, 13, "event namespace");
    let kind = match kind.as_str() {
        "task" => EventKind::Task {
            task_id: get_id(row, 3)?,
            namespace: namespace()?,
            queue: get(row, 4)?,
            state: get_state(row, 5)?,
            attempt: get_u32(row, 6)?,
            worker: get(row, 7)?,
            reason: get(row, 8)?,
            workflow: get(row, 11)?,
            result_bytes: get::<Option<i64>>(row, 14)?.map(u64_from_sql),
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
            task_id: match row.get_ref(3).map_err(db_err)? {
                ValueRef::Null => None,
                _ => Some(get_id(row, 3)?),
            },
            reason: get(row, 8)?,
        },
        other => return Err(corrupt(format!("unknown event type '{other}'"))),
    };
    Ok(Event {
        seq: u64_from_sql(get(row, 0)?),
        at: get(row, 1)?,
        kind,
    })
}

pub(super) fn stream_to_sql(s: LogStream) -> &'static str {
    s.as_str()
}

/// Reads `task_id, attempt, stream, data`.
pub(super) fn log_from_row(row: &Row<'_>) -> Result<LogChunk, StoreError> {
    let stream: String = get(row, 2)?;
    Ok(LogChunk {
        task_id: get_id(row, 0)?,
        attempt: get_u32(row, 1)?,
        stream: match stream.as_str() {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            other => return Err(corrupt(format!("unknown log stream '{other}'"))),
        },
        data: get(row, 3)?,
    })
}
