//! Task retention (`Store::prune_tasks`): terminal tasks finished before a cutoff go with
//! everything that hangs off them; a workflow's tasks go only with the whole workflow. The
//! same walk as SQLite's (`sqlite/retention.rs`), deleting with one statement per table.

use deadpool_postgres::Transaction;
use drover_core::{Micros, Scoped, TaskId, TaskState};
use uuid::Uuid;

use super::codec::{get, task_id, uuid};
use super::db_err;
use super::tasks::states_sql;
use crate::{PrunedTasks, StoreError};

/// A due task: its id, idempotency key and namespace.
type DueTask = (Uuid, Option<String>, String);

/// Rows of the workflow walk fetched at a time: the walk stops once `limit` tasks are due,
/// so the due check runs only for the workflows looked at.
const WALK_CHUNK: i32 = 64;

/// `Store::prune_tasks` in one transaction: first the due workflows, whole
/// (`due_workflows`), then, with what is left of `limit`, the due tasks of no workflow
/// (`PRUNE_TASKS_SQL`); every task with everything that hangs off it.
pub(super) async fn prune_tasks(
    tx: &Transaction<'_>,
    before: Micros,
    limit: i64,
) -> Result<PrunedTasks, StoreError> {
    let mut due: Vec<DueTask> = Vec::new();
    let workflows = due_workflows(tx, before, limit, &mut due).await?;
    due_tasks(tx, before, limit, &mut due).await?;
    let keys = delete_tasks(tx, &due).await?;
    if !workflows.is_empty() {
        for sql in [
            "DELETE FROM task_flow WHERE workflow_id = ANY($1::text[])",
            "DELETE FROM workflows WHERE id = ANY($1::text[])",
        ] {
            tx.execute(sql, &[&workflows]).await.map_err(db_err)?;
        }
    }
    Ok(PrunedTasks {
        tasks: due.len() as u64,
        keys,
    })
}

/// The due tasks of one terminal state that are no workflow's, oldest created first (`$1`
/// state, `$2` newest id, `$3` finished before, `$4` limit): see SQLite's `PRUNE_TASKS_SQL`.
pub(super) const PRUNE_TASKS_SQL: &str = "SELECT id, idempotency_key, namespace FROM tasks \
     WHERE state = $1 AND id <= $2 AND finished_at < $3 \
     AND NOT EXISTS (SELECT 1 FROM task_flow f JOIN workflows w ON w.id = f.workflow_id \
     WHERE f.task_id = tasks.id) \
     ORDER BY id LIMIT $4";

/// Appends the due tasks of no workflow to `due` until it holds `limit`, terminal state by
/// terminal state.
async fn due_tasks(
    tx: &Transaction<'_>,
    before: Micros,
    limit: i64,
    due: &mut Vec<DueTask>,
) -> Result<(), StoreError> {
    let Some(newest) = crate::newest_id_created_by(before) else {
        return Ok(());
    };
    let newest = uuid(newest);
    let st = tx.prepare_cached(PRUNE_TASKS_SQL).await.map_err(db_err)?;
    for state in TaskState::ALL.iter().filter(|s| s.is_terminal()) {
        let left = limit.saturating_sub(due.len() as i64);
        if left <= 0 {
            break;
        }
        let rows = tx
            .query(&st, &[&state.as_str(), &newest, &before, &left])
            .await
            .map_err(db_err)?;
        for r in &rows {
            due.push((get(r, 0)?, get(r, 1)?, get(r, 2)?));
        }
    }
    Ok(())
}

/// Deletes the tasks with their attempts, logs and flow records (one statement per table);
/// returns their idempotency keys, for the core to forget.
async fn delete_tasks(
    tx: &Transaction<'_>,
    due: &[DueTask],
) -> Result<Vec<(Scoped, TaskId)>, StoreError> {
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = due.iter().map(|(id, _, _)| *id).collect();
    for sql in [
        "DELETE FROM attempts WHERE task_id = ANY($1::uuid[])",
        "DELETE FROM logs WHERE task_id = ANY($1::uuid[])",
        "DELETE FROM task_flow WHERE task_id = ANY($1::uuid[])",
        "DELETE FROM tasks WHERE id = ANY($1::uuid[])",
    ] {
        let st = tx.prepare_cached(sql).await.map_err(db_err)?;
        tx.execute(&st, &[&ids]).await.map_err(db_err)?;
    }
    Ok(due
        .iter()
        .filter_map(|(id, key, ns)| key.as_ref().map(|k| (Scoped::new(ns, k), task_id(*id))))
        .collect())
}

/// Task retention's walk of the workflows (`$1` finished before, `$2` most workflows): those
/// created before the cutoff, oldest first, each with whether it is due (see SQLite's
/// `due_workflows_sql`).
pub(super) fn due_workflows_sql() -> String {
    let terminal = states_sql(true);
    let not_due =
        format!("(t.state NOT IN ({terminal}) OR t.finished_at IS NULL OR t.finished_at >= $1)");
    format!(
        "SELECT w.id, \
         NOT EXISTS (SELECT 1 FROM jsonb_array_elements(w.doc::jsonb) n \
             JOIN tasks t ON t.id = (n.value ->> 'task_id')::uuid WHERE {not_due}) \
         AND NOT EXISTS (SELECT 1 FROM task_flow f JOIN tasks t ON t.id = f.task_id \
             WHERE f.workflow_id = w.id AND {not_due}) \
         FROM workflows w WHERE w.created_at < $1 ORDER BY w.created_at, w.id LIMIT $2"
    )
}

/// The stored tasks of a workflow (`$1`), earlier runs included, by id.
const WORKFLOW_TASKS_SQL: &str = "SELECT t.id, t.idempotency_key, t.namespace FROM task_flow f \
    JOIN tasks t ON t.id = f.task_id WHERE f.workflow_id = $1 ORDER BY f.task_id";

/// Task retention, the workflows: walks at most `PRUNE_WORKFLOW_SCAN` of those created before
/// `before`, oldest first, and takes each due one whole until `due` holds `limit` tasks; the
/// last one taken may take it past `limit`. Appends the workflows' stored tasks to `due` and
/// returns the workflows.
async fn due_workflows(
    tx: &Transaction<'_>,
    before: Micros,
    limit: i64,
    due: &mut Vec<DueTask>,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let walk = tx
        .prepare_cached(&due_workflows_sql())
        .await
        .map_err(db_err)?;
    let tasks_of = tx
        .prepare_cached(WORKFLOW_TASKS_SQL)
        .await
        .map_err(db_err)?;
    let scan = i64::try_from(crate::PRUNE_WORKFLOW_SCAN).unwrap_or(i64::MAX);
    let portal = tx.bind(&walk, &[&before, &scan]).await.map_err(db_err)?;
    while (due.len() as i64) < limit {
        let rows = tx.query_portal(&portal, WALK_CHUNK).await.map_err(db_err)?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            if (due.len() as i64) >= limit {
                break;
            }
            if !get::<bool>(row, 1)? {
                continue;
            }
            let id: String = get(row, 0)?;
            let tasks = tx.query(&tasks_of, &[&id]).await.map_err(db_err)?;
            for t in &tasks {
                due.push((get(t, 0)?, get(t, 1)?, get(t, 2)?));
            }
            out.push(id);
        }
    }
    Ok(out)
}
