//! Task retention (`Store::prune_tasks`): terminal tasks finished before a cutoff go with
//! everything that hangs off them; a workflow's tasks go only with the whole workflow.

use drover_core::{Micros, Scoped, TaskState};
use rusqlite::{params, Connection, Transaction};

use super::codec::id_from_blob;
use super::tasks::states_sql;
use super::{begin, db_err};
use crate::{PrunedTasks, StoreError};

/// A due task: its id (as stored), idempotency key and namespace.
type DueTask = (Vec<u8>, Option<String>, String);

/// `Store::prune_tasks` in one transaction: first the due workflows, whole
/// (`due_workflows`), then, with what is left of `limit`, the due tasks of no workflow
/// (`PRUNE_TASKS_SQL`); every task with everything that hangs off it.
pub(super) fn prune_tasks(
    conn: &mut Connection,
    before: Micros,
    limit: i64,
) -> Result<PrunedTasks, StoreError> {
    let tx = begin(conn)?;
    // Workflows first: while a backlog of them is due, each call spends its budget on them
    // and the task walk below, which steps over every workflow's tasks, does not run.
    let mut due: Vec<DueTask> = Vec::new();
    let workflows = due_workflows(&tx, before, limit, &mut due)?;
    due_tasks(&tx, before, limit, &mut due)?;
    let keys = delete_tasks(&tx, &due)?;
    for w in &workflows {
        delete_workflow(&tx, w)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(PrunedTasks {
        tasks: due.len() as u64,
        keys,
    })
}

/// Appends the due tasks of no workflow to `due` until it holds `limit`, terminal state by
/// terminal state.
fn due_tasks(
    tx: &Transaction<'_>,
    before: Micros,
    limit: i64,
    due: &mut Vec<DueTask>,
) -> Result<(), StoreError> {
    let Some(newest) = crate::newest_id_created_by(before) else {
        return Ok(());
    };
    let mut st = tx.prepare_cached(PRUNE_TASKS_SQL).map_err(db_err)?;
    let newest = newest.0.to_be_bytes();
    for state in TaskState::ALL.iter().filter(|s| s.is_terminal()) {
        let left = limit.saturating_sub(due.len() as i64);
        if left <= 0 {
            break;
        }
        let rows = st
            .query_map(
                params![state.as_str(), newest.as_slice(), before, left],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(db_err)?;
        for row in rows {
            due.push(row.map_err(db_err)?);
        }
    }
    Ok(())
}

/// Deletes the tasks with their attempts, logs and flow records; returns their idempotency
/// keys, for the core to forget.
fn delete_tasks(
    tx: &Transaction<'_>,
    due: &[DueTask],
) -> Result<Vec<(Scoped, drover_core::TaskId)>, StoreError> {
    let mut deletes = [
        "DELETE FROM attempts WHERE task_id = ?1",
        "DELETE FROM logs WHERE task_id = ?1",
        "DELETE FROM task_flow WHERE task_id = ?1",
        "DELETE FROM tasks WHERE id = ?1",
    ]
    .map(|sql| tx.prepare_cached(sql).map_err(db_err))
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    let mut keys = Vec::new();
    for (id, key, namespace) in due {
        if let Some(k) = key {
            keys.push((Scoped::new(namespace, k), id_from_blob(id)?));
        }
        for st in &mut deletes {
            st.execute([id]).map_err(db_err)?;
        }
    }
    Ok(keys)
}

/// The due tasks of one terminal state that are no workflow's, oldest created first (`?1`
/// state, `?2` newest id, `?3` finished before, `?4` limit). A workflow's tasks go only with
/// the workflow, as a whole (`due_workflows`); a task whose flow record names a
/// workflow that is not stored is no workflow's. Task ids are UUIDv7, so a task that finished
/// before the cutoff was created before it too: the walk of `tasks_by_state` stops at the
/// cutoff's id and never visits newer tasks; each task it visits costs a primary-key lookup
/// of its flow record (and of the workflow, for a node). No index of its own: one more index
/// on `tasks` would cost every terminal transition a b-tree write (measured: a quarter of
/// end-to-end throughput).
pub(super) const PRUNE_TASKS_SQL: &str = "SELECT id, idempotency_key, namespace FROM tasks \
     WHERE state = ?1 AND id <= ?2 AND finished_at < ?3 \
     AND NOT EXISTS (SELECT 1 FROM task_flow f JOIN workflows w ON w.id = f.workflow_id \
     WHERE f.task_id = tasks.id) \
     ORDER BY id LIMIT ?4";

/// Task retention's walk of the workflows (`?1` finished before, `?2` most workflows): those
/// created before the cutoff, oldest first (`workflows_by_created`), each with whether it is
/// due: every current node's task (from the doc) and every task of the workflow (by
/// `task_flow.workflow_id`: earlier runs a rerun replaced, too) is gone, or terminal and
/// finished before the cutoff. Each check stops at the first task that is not due.
pub(super) fn due_workflows_sql() -> String {
    let terminal = states_sql(true);
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
pub(super) const WORKFLOW_TASKS_SQL: &str =
    "SELECT t.id, t.idempotency_key, t.namespace FROM task_flow f \
    JOIN tasks t ON t.id = f.task_id WHERE f.workflow_id = ?1 ORDER BY f.task_id";

/// Task retention, the workflows: walks at most `PRUNE_WORKFLOW_SCAN` of those created before
/// `before`, oldest first, and takes each due one whole (see `due_workflows_sql`) until `due`
/// holds `limit` tasks; the last one taken may take it past `limit`. Appends the workflows'
/// stored tasks (id, idempotency key, namespace) to `due` and returns the workflows, which
/// `delete_workflow` deletes once their tasks are.
fn due_workflows(
    tx: &Transaction<'_>,
    before: Micros,
    limit: i64,
    due: &mut Vec<DueTask>,
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
            .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err)?;
        for t in tasks {
            due.push(t.map_err(db_err)?);
        }
        out.push(id);
    }
    Ok(out)
}

/// Deletes a workflow and whatever flow records still name it (its tasks are deleted).
fn delete_workflow(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
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
