//! The commit retry against a store that refuses commits: nothing is answered before its
//! batch commits, the server is degraded meanwhile, and past `store_retry` the driver stops.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use drover_core::dag::WorkflowRecord;
use drover_core::{
    AttemptRecord, CoreConfig, FlowRecord, LogChunk, Micros, QueueConfig, Snapshot, TaskId,
    TaskRecord, TaskState,
};
use drover_store::{
    AuditQuery, AuditRecord, ClusterView, DeliveryRecord, Epoch, Leadership, MemStore, Member,
    PrunedTasks, TaskQuery, TokenRecord, WebhookRecord,
};
use tokio::task::JoinHandle;

use super::*;

/// A `MemStore` whose next `failures` commits fail as a busy SQLite's would.
struct Flaky {
    inner: MemStore,
    failures: AtomicU32,
}

#[async_trait]
impl Leadership for Flaky {
    async fn elect(&self, member: &Member, lease: Duration) -> Result<Option<Epoch>, StoreError> {
        self.inner.elect(member, lease).await
    }

    async fn renew(&self, epoch: Epoch, lease: Duration) -> Result<bool, StoreError> {
        self.inner.renew(epoch, lease).await
    }

    async fn resign(&self, epoch: Epoch) -> Result<(), StoreError> {
        self.inner.resign(epoch).await
    }

    async fn heartbeat(&self, member: &Member) -> Result<(), StoreError> {
        self.inner.heartbeat(member).await
    }

    async fn cluster(&self) -> Result<ClusterView, StoreError> {
        self.inner.cluster().await
    }
}

#[async_trait]
impl Store for Flaky {
    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(StoreError::Unavailable("database is locked".into()));
        }
        self.inner.commit(writes).await
    }
    async fn load_snapshot(&self) -> Result<Snapshot, StoreError> {
        self.inner.load_snapshot().await
    }
    async fn task_defs(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, std::sync::Arc<drover_core::TaskDef>)>, StoreError> {
        self.inner.task_defs(ids).await
    }
    async fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.task(id).await
    }
    async fn attempts(&self, id: TaskId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.inner.attempts(id).await
    }
    async fn list_tasks(&self, q: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.list_tasks(q).await
    }
    async fn logs(&self, id: TaskId, attempt: u32) -> Result<Vec<LogChunk>, StoreError> {
        self.inner.logs(id, attempt).await
    }
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.inner.events_after(after, limit).await
    }
    async fn count_by_state(
        &self,
        namespaces: Option<&[String]>,
    ) -> Result<BTreeMap<TaskState, u64>, StoreError> {
        self.inner.count_by_state(namespaces).await
    }
    async fn prune_events(&self, before: Micros) -> Result<u64, StoreError> {
        self.inner.prune_events(before).await
    }
    async fn last_event_seq(&self) -> Result<u64, StoreError> {
        self.inner.last_event_seq().await
    }
    async fn insert_webhook(&self, w: &WebhookRecord) -> Result<(), StoreError> {
        self.inner.insert_webhook(w).await
    }
    async fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        self.inner.webhooks().await
    }
    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_webhook(id).await
    }
    async fn record_deliveries(
        &self,
        deliveries: Vec<DeliveryRecord>,
        cursors: Vec<(String, u64)>,
    ) -> Result<(), StoreError> {
        self.inner.record_deliveries(deliveries, cursors).await
    }
    async fn deliveries(&self, id: &str, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner.deliveries(id, limit).await
    }
    async fn prune_deliveries(&self, before: Micros) -> Result<u64, StoreError> {
        self.inner.prune_deliveries(before).await
    }
    async fn prune_tasks(&self, before: Micros, limit: usize) -> Result<PrunedTasks, StoreError> {
        self.inner.prune_tasks(before, limit).await
    }
    async fn flow(&self, id: TaskId) -> Result<Option<FlowRecord>, StoreError> {
        self.inner.flow(id).await
    }
    async fn queue_configs(&self) -> Result<Vec<QueueConfig>, StoreError> {
        self.inner.queue_configs().await
    }
    async fn workflow(&self, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        self.inner.workflow(id).await
    }
    async fn workflows(
        &self,
        limit: usize,
        namespaces: Option<&[String]>,
    ) -> Result<Vec<WorkflowRecord>, StoreError> {
        self.inner.workflows(limit, namespaces).await
    }
    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        self.inner.append_audit(records).await
    }
    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.audit(q).await
    }
    async fn prune_audit(&self, before: Micros) -> Result<u64, StoreError> {
        self.inner.prune_audit(before).await
    }
    async fn insert_token(&self, t: &TokenRecord) -> Result<bool, StoreError> {
        self.inner.insert_token(t).await
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.tokens().await
    }
    async fn delete_token(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_token(name).await
    }
}

struct Setup {
    store: Arc<Flaky>,
    handle: DriverHandle,
    health: Arc<StoreHealth>,
    metrics: Arc<Metrics>,
    run: JoinHandle<anyhow::Result<()>>,
}

fn start(failures: u32, retry: Duration) -> Setup {
    let store = Arc::new(Flaky {
        inner: MemStore::new(),
        failures: AtomicU32::new(failures),
    });
    let core = Coordinator::new(
        CoreConfig::default(),
        [7; 32],
        now_micros(),
        Snapshot::default(),
    );
    let metrics = Arc::new(Metrics::new());
    let health = StoreHealth::new();
    let (events, _) = broadcast::channel(16);
    let (driver, handle) = Driver::new(core, store.clone(), metrics.clone(), events);
    let driver = driver.with_store_retry(health.clone(), retry);
    Setup {
        store,
        handle,
        health,
        metrics,
        run: tokio::spawn(driver.run()),
    }
}

/// A request whose only effect is one write and a reply.
async fn configure_queue(handle: &DriverHandle, name: &str) -> Result<Reply, DriverError> {
    let config = QueueConfig {
        name: name.into(),
        concurrency: Some(2),
        ..QueueConfig::default()
    };
    handle
        .request(|req| Input::ConfigureQueue { req, config })
        .await
}

#[tokio::test]
async fn a_failed_commit_is_retried_and_answered_only_once_committed() {
    let s = start(3, Duration::from_secs(30));
    let watch = {
        let health = s.health.clone();
        tokio::spawn(async move {
            while !health.is_degraded() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let reply = configure_queue(&s.handle, "q").await.unwrap();
    assert!(matches!(reply, Reply::Done), "{reply:?}");
    tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("degraded while retrying")
        .unwrap();
    // Answered only after the fourth attempt committed it; no longer degraded.
    assert_eq!(s.store.failures.load(Ordering::SeqCst), 0);
    let stored = s.store.queue_configs().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!s.health.is_degraded());
    let text = s.metrics.render();
    assert!(
        text.contains("drover_store_commit_failures_total 3"),
        "{text}"
    );
    assert!(text.contains("drover_store_degraded 0"), "{text}");
    assert!(text.contains("drover_store_commits_total 1"), "{text}");
    drop(s.handle);
    s.run.await.unwrap().unwrap();
}

#[tokio::test]
async fn past_store_retry_the_driver_stops_without_answering() {
    let s = start(u32::MAX, Duration::from_millis(300));
    let started = Instant::now();
    let reply = configure_queue(&s.handle, "q").await;
    assert!(reply.is_err(), "never committed, never answered: {reply:?}");
    let err = s.run.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("--store-retry"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(s.health.is_degraded());
    assert!(s.store.queue_configs().await.unwrap().is_empty());
}
