//! The retention windows: a background task that deletes, in small batches and off the
//! driver's path, events (and webhook delivery attempts) older than the event retention, and
//! terminal tasks (with their attempts, logs and flow records; a workflow's only with the
//! whole workflow, once all its tasks are due) that finished longer ago than the task
//! retention.

use std::sync::Arc;
use std::time::Duration;

use drover_core::{Input, Micros};
use drover_store::Store;

use crate::clock::now_micros;
use crate::driver::{Command, DriverHandle};
use crate::metrics::Metrics;

/// Tasks deleted per `Store::prune_tasks` call, one transaction each, so a large backlog
/// never holds the writer (and with it the driver's commits) for long.
const TASK_PRUNE_BATCH: usize = 1_000;

/// Runs forever: every `every`, deletes events and delivery attempts older than `keep`, and
/// terminal tasks that finished longer than `keep_tasks` ago.
pub async fn prune_loop(
    store: Arc<dyn Store>,
    driver: DriverHandle,
    keep: Duration,
    keep_tasks: Duration,
    keep_audit: Duration,
    every: Duration,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = now_micros();
        let cutoff: Micros = now.saturating_sub(keep.as_micros() as Micros);
        match store.prune_events(cutoff).await {
            Ok(0) => {}
            Ok(n) => {
                metrics.events_pruned(n);
                tracing::info!(deleted = n, "pruned events older than the retention window");
            }
            Err(e) => tracing::warn!(error = %e, "pruning events failed; will retry"),
        }
        if let Err(e) = store.prune_deliveries(cutoff).await {
            tracing::warn!(error = %e, "pruning webhook deliveries failed; will retry");
        }
        let task_cutoff =
            now.saturating_sub(Micros::try_from(keep_tasks.as_micros()).unwrap_or(Micros::MAX));
        prune_tasks(store.as_ref(), &driver, task_cutoff, &metrics).await;
        let audit_cutoff =
            now.saturating_sub(Micros::try_from(keep_audit.as_micros()).unwrap_or(Micros::MAX));
        if let Err(e) = store.prune_audit(audit_cutoff).await {
            tracing::warn!(error = %e, "pruning the audit log failed; will retry");
        }
    }
}

/// Deletes every terminal task that finished before `cutoff`, a batch per transaction, until
/// a batch comes back short. The core forgets the deleted tasks' idempotency keys.
async fn prune_tasks(store: &dyn Store, driver: &DriverHandle, cutoff: Micros, metrics: &Metrics) {
    let mut total = 0;
    loop {
        match store.prune_tasks(cutoff, TASK_PRUNE_BATCH).await {
            Ok(pruned) => {
                metrics.tasks_pruned(pruned.tasks);
                total += pruned.tasks;
                if !pruned.keys.is_empty() {
                    let forget = Input::ForgetKeys { keys: pruned.keys };
                    if driver.send(Command::Input(forget, None)).await.is_err() {
                        return;
                    }
                }
                if pruned.tasks < TASK_PRUNE_BATCH as u64 {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning tasks failed; will retry");
                break;
            }
        }
        // Let the driver's commits at the writer between two batches.
        tokio::task::yield_now().await;
    }
    if total > 0 {
        tracing::info!(
            deleted = total,
            "pruned tasks that finished before the task retention window"
        );
    }
}
