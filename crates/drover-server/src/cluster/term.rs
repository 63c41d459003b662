//! A term of leadership: the core rebuilt from the store, the driver around it, and what only
//! the leader runs (the worker monitor, retention, the metrics tracker, the webhooks). Begun
//! only after the store is fenced at the term's epoch, so the snapshot holds everything any
//! earlier leader committed; ended by dropping all of it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use drover_core::{Coordinator, Event, Snapshot};
use drover_store::{Epoch, Store};
use tokio::sync::broadcast;
use tokio::task::{AbortHandle, JoinHandle};

use crate::feed::EventFeed;
use crate::health::StoreHealth;
use crate::metrics::{Metrics, Tracker};
use crate::secrets::SecretKeys;
use crate::webhooks::Webhooks;
use crate::workers::WorkerMonitor;
use crate::{clock, driver, flows, retention, ServerConfig};

/// How long a stopping term waits for its driver to commit the last batch.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// The server's parts that outlive terms, which a term plugs into.
#[derive(Clone)]
pub struct Parts {
    pub cfg: ServerConfig,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub events: broadcast::Sender<Arc<Event>>,
    pub workers: Arc<WorkerMonitor>,
    pub webhooks: Arc<Webhooks>,
    pub secrets: Arc<SecretKeys>,
    pub health: Arc<StoreHealth>,
}

pub struct Term {
    pub epoch: Epoch,
    /// Ends with the driver: `Ok` when every handle is gone, an error when the store failed
    /// it (or fenced it off).
    pub driver: JoinHandle<anyhow::Result<()>>,
    /// To stop the driver though worker streams still hold handles.
    handle: driver::DriverHandle,
    upkeep: Vec<AbortHandle>,
}

impl Term {
    /// Loads the snapshot, builds the core, starts the driver and the leader's loops, and puts
    /// the driver in `slot`.
    pub async fn begin(
        parts: &Parts,
        epoch: Epoch,
        slot: &super::DriverSlot,
    ) -> anyhow::Result<Term> {
        let store = &parts.store;
        let started = std::time::Instant::now();
        let snapshot = load(store).await?;
        let active = snapshot.tasks.len();
        let loaded = started.elapsed();
        // Everything committed before the driver starts is in the snapshot; the tracker
        // follows the events after it.
        let tracker = Tracker::new(parts.metrics.clone(), &snapshot.tasks);
        for q in &snapshot.queues {
            parts.metrics.queue_configured(&q.name);
        }
        let last_seq = snapshot.next_event_seq.saturating_sub(1);
        let core = Coordinator::new(
            crate::core_config(&parts.cfg),
            crate::os_seed()?,
            clock::now_micros(),
            snapshot,
        );
        let tracker_feed =
            EventFeed::subscribe(store.clone(), &parts.events, Some(last_seq)).await?;
        let (driver, handle) = driver::Driver::new(
            core,
            store.clone(),
            parts.metrics.clone(),
            parts.events.clone(),
        );
        let driver = driver
            .with_secrets(parts.secrets.clone())
            .with_store_retry(parts.health.clone(), parts.cfg.store_retry);
        let driver = tokio::spawn(driver.run());
        let cfg = &parts.cfg;
        let upkeep = vec![
            tokio::spawn(tracker.run(tracker_feed)).abort_handle(),
            tokio::spawn(
                parts
                    .workers
                    .clone()
                    .run(handle.clone(), parts.metrics.clone()),
            )
            .abort_handle(),
            tokio::spawn(retention::prune_loop(
                store.clone(),
                handle.clone(),
                cfg.event_retention,
                cfg.task_retention,
                cfg.audit_retention,
                cfg.prune_every,
                parts.metrics.clone(),
            ))
            .abort_handle(),
        ];
        match parts.webhooks.start_all().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(webhooks = n, "webhook dispatcher started"),
            Err(e) => {
                tracing::warn!(error = %e, "loading the webhooks failed; they start with the next term")
            }
        }
        slot.set(Some(handle.clone()));
        tracing::info!(
            epoch,
            active_tasks = active,
            snapshot_ms = loaded.as_millis() as u64,
            ready_ms = started.elapsed().as_millis() as u64,
            "leading: the scheduler runs here"
        );
        Ok(Term {
            epoch,
            driver,
            handle,
            upkeep,
        })
    }

    /// Stops the leader's loops and the webhooks, and takes the driver out of `slot`.
    fn stop_upkeep(&mut self, parts: &Parts, slot: &super::DriverSlot) {
        slot.set(None);
        for h in self.upkeep.drain(..) {
            h.abort();
        }
        parts.webhooks.shutdown();
        parts.metrics.forget_term();
        // The term's failing commits are not the standby's: it refuses writes as a standby.
        parts.health.recovered();
        parts.metrics.set_store_degraded(false);
    }

    /// Ends the term at once (the lease is lost): nothing more of this term is delivered.
    /// A commit already under way finishes or is fenced off; either way the next leader's
    /// snapshot decides.
    pub fn abandon(mut self, parts: &Parts, slot: &super::DriverSlot) {
        self.stop_upkeep(parts, slot);
        self.driver.abort();
    }

    /// Ends the term cleanly (shutdown): the driver commits what it has decided and stops;
    /// waits for that, up to `DRAIN_WAIT`.
    pub async fn finish(mut self, parts: &Parts, slot: &super::DriverSlot) -> anyhow::Result<()> {
        self.stop_upkeep(parts, slot);
        let _ = tokio::time::timeout(DRAIN_WAIT, self.handle.send(driver::Command::Stop)).await;
        match tokio::time::timeout(DRAIN_WAIT, &mut self.driver).await {
            Ok(r) => r.context("driver panicked")?,
            Err(_) => {
                tracing::warn!("the driver did not commit its last batch in time; stopping it");
                self.driver.abort();
                Ok(())
            }
        }
    }
}

/// Everything any earlier epoch committed that the core starts from.
async fn load(store: &Arc<dyn Store>) -> anyhow::Result<Snapshot> {
    let mut snapshot = store
        .load_snapshot()
        .await
        .context("loading the active tasks")?;
    snapshot.workflows_ended = flows::ended_nodes(store.as_ref(), &snapshot)
        .await
        .context("loading the workflows in progress")?;
    Ok(snapshot)
}
