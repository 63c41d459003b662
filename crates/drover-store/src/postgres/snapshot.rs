//! The state the core starts from (`Store::load_snapshot`): the active tasks with their
//! current attempts, the sequence numbers, flows, queues, schedules, drains and keys.

use deadpool_postgres::{Client, GenericClient};
use drover_core::{Scoped, Snapshot, TaskId};
use tokio_postgres::IsolationLevel;

use super::codec::{get, get_id, task_with_attempt_from_row, ATTEMPT_COLS, TASK_COLS};
use super::tasks::states_sql;
use super::{db_err, deps, drains, events, prefixed, queues, schedules};
use crate::StoreError;

pub(super) async fn load(client: &mut Client) -> Result<Snapshot, StoreError> {
    // One snapshot of the database for every read, so the tasks and the sequence numbers
    // agree.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db_err)?;
    let rows = tx.query(&active_tasks_sql(), &[]).await.map_err(db_err)?;
    let mut tasks = Vec::with_capacity(rows.len());
    for row in &rows {
        let t = task_with_attempt_from_row(row)?;
        tasks.push(crate::sqlite::snapshot::share_def(&tasks, t));
    }
    let next_task: i64 = get(
        &tx.query_one("SELECT value FROM meta WHERE key = 'next_task_seq'", &[])
            .await
            .map_err(db_err)?,
        0,
    )?;
    let max_event = events::last_seq(&tx).await?;
    let snap = Snapshot {
        tasks,
        next_task_seq: next_task as u64,
        next_event_seq: max_event.map_or(1, |m| m as u64 + 1),
        flows: deps::of_states(&tx, &states_sql(false)).await?,
        queues: queues::all(&tx).await?,
        schedules: schedules::all(&tx).await?,
        drained_workers: drains::all(&tx).await?,
        idempotency_keys: idempotency_keys(&tx).await?,
        // Read by the server from the workflows and tasks, not by the store.
        workflows_ended: Vec::new(),
    };
    tx.commit().await.map_err(db_err)?;
    Ok(snap)
}

/// The non-terminal tasks joined with their current attempt (`TASK_COLS`, then
/// `ATTEMPT_COLS`, NULL when there is none). Lean: of a task's body only its type is read
/// (the core keeps no body; `spec_from_column`), and no idempotency key (the snapshot's
/// `idempotency_keys` has them).
pub(super) fn active_tasks_sql() -> String {
    format!(
        "SELECT {}, {} FROM tasks t LEFT JOIN attempts a \
         ON a.task_id = t.id AND a.attempt = t.attempt WHERE t.state IN ({})",
        prefixed(TASK_COLS, "t.")
            .replacen("t.spec,", "(t.spec::json ->> 'type'),", 1)
            .replacen("t.idempotency_key,", "NULL,", 1),
        prefixed(ATTEMPT_COLS, "a."),
        states_sql(false),
    )
}

/// Every stored idempotency key with its task, in submission order.
async fn idempotency_keys(c: &impl GenericClient) -> Result<Vec<(Scoped, TaskId)>, StoreError> {
    let rows = c
        .query(
            "SELECT idempotency_key, id, namespace FROM tasks \
             WHERE idempotency_key IS NOT NULL ORDER BY seq",
            &[],
        )
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let key = Scoped {
                namespace: get(r, 2)?,
                name: get(r, 0)?,
            };
            Ok((key, get_id(r, 1)?))
        })
        .collect()
}
