//! The retention window of the event log (and of the webhook delivery log): a background task
//! that deletes what is older, in small batches, off the driver's path.

use std::sync::Arc;
use std::time::Duration;

use drover_core::Micros;
use drover_store::Store;

use crate::clock::now_micros;
use crate::metrics::Metrics;

/// Runs forever: every `every`, deletes events and delivery attempts older than `keep`.
pub async fn prune_loop(
    store: Arc<dyn Store>,
    keep: Duration,
    every: Duration,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cutoff: Micros = now_micros().saturating_sub(keep.as_micros() as Micros);
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
    }
}
