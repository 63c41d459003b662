//! The state the core starts from (`Store::load_snapshot`): the active tasks with their
//! current attempts, the sequence numbers, flows, queues, schedules, drains and keys.

use drover_core::{AttemptRecord, Scoped, Snapshot, TaskId, TaskRecord};
use rusqlite::Connection;

use super::codec::{corrupt, task_with_attempt_from_row, ATTEMPT_COLS, TASK_COLS};
use super::tasks::states_sql;
use super::{db_err, deps, drains, events, prefixed, queues, schedules};
use crate::StoreError;

pub(super) fn load(conn: &Connection) -> Result<Snapshot, StoreError> {
    // One read transaction, so the tasks and the sequence numbers agree.
    let tx = conn.unchecked_transaction().map_err(db_err)?;
    let mut tasks = Vec::new();
    {
        let mut stmt = tx.prepare(&active_tasks_sql()).map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            tasks.push(share_def(&tasks, task_with_attempt_from_row(row)?));
        }
    }
    let next_task: i64 = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'next_task_seq'",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    let max_event = events::last_seq(&tx)?;
    let snap = Snapshot {
        tasks,
        next_task_seq: next_task as u64,
        next_event_seq: max_event.map_or(1, |m| m as u64 + 1),
        flows: deps::of_states(&tx, &states_sql(false))?,
        queues: queues::all(&tx)?,
        schedules: schedules::all(&tx)?,
        drained_workers: drains::all(&tx)?,
        idempotency_keys: idempotency_keys(&tx)?,
        // Read by the server from the workflows and tasks, not by the store.
        workflows_ended: Vec::new(),
    };
    tx.commit().map_err(db_err)?;
    Ok(snap)
}

/// `t` with the previous task's definition if the two are equal: the rows of a backlog
/// mostly are (a lean read has no body and no idempotency key), so a large snapshot holds a
/// few definitions, not one per task, until the core shares them by shape.
pub(crate) fn share_def(
    tasks: &[(TaskRecord, Option<AttemptRecord>)],
    mut t: (TaskRecord, Option<AttemptRecord>),
) -> (TaskRecord, Option<AttemptRecord>) {
    if let Some((prev, _)) = tasks.last() {
        if prev.def == t.0.def {
            t.0.def = prev.def.clone();
        }
    }
    t
}

/// A body's type without parsing its JSON: in a spec's text an unescaped `"type":"…"` can
/// only be its own top-level key (strings inside it are escaped, and it nests no objects).
/// Any other text is read whole, and refused as corrupt.
const LEAN_SPEC: &str = "CASE WHEN instr(t.spec, '\"type\":\"exec\"') > 0 THEN 'exec' \
     WHEN instr(t.spec, '\"type\":\"handler\"') > 0 THEN 'handler' \
     WHEN instr(t.spec, '\"type\":\"noop\"') > 0 THEN 'noop' ELSE t.spec END,";

/// The non-terminal tasks joined with their current attempt (`TASK_COLS`, then
/// `ATTEMPT_COLS`, NULL when there is none). Lean: of a task's body only its type is read
/// (the core keeps no body; `spec_from_column`), and no idempotency key (the snapshot's
/// `idempotency_keys` has them).
pub(super) fn active_tasks_sql() -> String {
    format!(
        "SELECT {}, {} FROM tasks t LEFT JOIN attempts a \
         ON a.task_id = t.id AND a.attempt = t.attempt WHERE t.state IN ({})",
        prefixed(TASK_COLS, "t.")
            .replacen("t.spec,", LEAN_SPEC, 1)
            .replacen("t.idempotency_key,", "NULL,", 1),
        prefixed(ATTEMPT_COLS, "a."),
        states_sql(false),
    )
}

/// Every stored idempotency key with its task, in submission order.
fn idempotency_keys(conn: &Connection) -> Result<Vec<(Scoped, TaskId)>, StoreError> {
    let mut st = conn
        .prepare(
            "SELECT idempotency_key, id, namespace FROM tasks WHERE idempotency_key IS NOT NULL \
             ORDER BY seq",
        )
        .map_err(db_err)?;
    let mut rows = st.query([]).map_err(db_err)?;
    let mut keys = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        let k: String = r.get(0).map_err(db_err)?;
        let id: Vec<u8> = r.get(1).map_err(db_err)?;
        let id = <[u8; 16]>::try_from(id.as_slice())
            .map(|a| TaskId(u128::from_be_bytes(a)))
            .map_err(|_| corrupt("task id is not 16 bytes"))?;
        let namespace: String = r.get(2).map_err(db_err)?;
        keys.push((Scoped { namespace, name: k }, id));
    }
    Ok(keys)
}
