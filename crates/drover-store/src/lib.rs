//! Drover's storage: the `Store` trait and its backends.
//!
//! Invariants: only this crate knows SQL. A commit applies a whole batch of `Write`s in one
//! transaction or none of it, and only while its store's epoch leads (`Leadership`). No
//! scheduling logic and no clock in SQL: every time is a value the core decided; the one
//! exception is the leader's lease and the members' heartbeats (`leadership`), which are on the
//! database's clock, the one every member of a cluster shares. Backends: SQLite (embedded, default), PostgreSQL (`PgStore`) and in-memory
//! (tests, simulation); the same conformance suite (`tests/conformance.rs`) runs against each.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use drover_core::dag::WorkflowRecord;
use drover_core::{
    AttemptRecord, Event, FlowRecord, LogChunk, Micros, QueueConfig, Scoped, Snapshot, TaskDef,
    TaskId, TaskRecord, TaskState, Write,
};

pub mod audit;
mod batch;
pub mod leadership;
pub mod mem;
pub mod postgres;
mod solo;
pub mod sqlite;
mod tokens;

pub use audit::{AuditQuery, AuditRecord};
pub use leadership::{ClusterView, Epoch, Leadership, Member, MemberView, Notices, Role};
pub use mem::MemStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use tokens::TokenRecord;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Retry later: the database is busy or unreachable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back; do not continue on it.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Backend(String),
    /// A write of an epoch that no longer leads (`Leadership`): it changed nothing. The
    /// server must step down. `current` is the epoch in the lease now (equal to `ours` after
    /// `resign`); `ours` is 0 for a store that was never elected.
    #[error("fenced: epoch {ours} no longer leads (the lease is at epoch {current})")]
    Fenced { ours: Epoch, current: Epoch },
}

/// Filters and paging for task listings. Newest first; `before` is the cursor (an id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskQuery {
    pub state: Option<TaskState>,
    pub queue: Option<String>,
    /// Only tasks of these namespaces (`None`: every namespace).
    pub namespaces: Option<Vec<String>>,
    /// Only tasks with an id lower than this (the previous page's last id).
    pub before: Option<TaskId>,
    pub limit: usize,
}

/// A webhook subscription (server side of `drover webhook add`). Not scheduling state: the
/// core never sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    /// Event patterns (`task.succeeded`, `task.*`, `*`).
    pub events: Vec<String>,
    /// The HMAC key; stored as given, since signing needs it.
    pub secret: String,
    pub created_at: Micros,
    /// Every event up to this sequence number has been delivered or given up on.
    pub cursor: u64,
    /// Whose events it receives: one namespace, or `*` for every namespace's and the
    /// cluster's (workers).
    pub namespace: String,
}

/// What one `Store::prune_tasks` call deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrunedTasks {
    pub tasks: u64,
    /// (idempotency key in its namespace, task) of the deleted tasks that had one.
    pub keys: Vec<(Scoped, TaskId)>,
}

/// One delivery attempt of one event to one webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub webhook_id: String,
    pub seq: u64,
    /// `task.succeeded`, ...
    pub event: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub ok: bool,
    /// No more attempts follow.
    pub last: bool,
    pub at: Micros,
    pub duration_ms: u64,
}

/// Everything the server stores. Its `Leadership` part decides which server may commit.
#[async_trait]
pub trait Store: Leadership + Send + Sync + 'static {
    /// Non-terminal tasks with their current attempt, and the next sequence numbers. A
    /// task's definition is lean (`TaskDef::lean`: the body's stand-in, no idempotency key,
    /// which `Snapshot::idempotency_keys` has): the core keeps no more.
    async fn load_snapshot(&self) -> Result<Snapshot, StoreError>;
    /// Applies the whole batch atomically and durably (group commit). Within a batch, later
    /// writes of the same task or attempt replace earlier ones. Fenced: fails with
    /// `StoreError::Fenced`, changing nothing, unless this store's epoch leads.
    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError>;

    /// The whole definitions of these tasks, bodies included (ids not stored are left
    /// out): the core keeps none of a task's body, so the driver reads it here when it
    /// assigns the task.
    async fn task_defs(&self, ids: &[TaskId]) -> Result<Vec<(TaskId, Arc<TaskDef>)>, StoreError>;

    // Read side, for the API; never used by the core.
    async fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError>;
    /// Every attempt of a task, oldest first.
    async fn attempts(&self, id: TaskId) -> Result<Vec<AttemptRecord>, StoreError>;
    async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError>;
    /// Log chunks of one attempt, in the order they were written.
    async fn logs(&self, id: TaskId, attempt: u32) -> Result<Vec<LogChunk>, StoreError>;
    /// Events with `seq > after`, oldest first, at most `limit`.
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// Task counts by state, over every namespace (`None`) or only these.
    async fn count_by_state(
        &self,
        namespaces: Option<&[String]>,
    ) -> Result<BTreeMap<TaskState, u64>, StoreError>;

    // Event retention and webhooks: written by the server's background tasks, outside the
    // core's commits.
    /// Deletes the oldest events, up to (not including) the first one with `at >= before`,
    /// but never the newest event, so sequence numbers continue after a restart. Returns how
    /// many were deleted. Fenced, like `commit`.
    async fn prune_events(&self, before: Micros) -> Result<u64, StoreError>;
    /// The highest event sequence number stored (0 when there is none).
    async fn last_event_seq(&self) -> Result<u64, StoreError>;
    /// Inserts a webhook; an existing id is an error.
    async fn insert_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError>;
    /// Every webhook, oldest first.
    async fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError>;
    /// Deletes a webhook and its delivery log; false if there was none.
    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError>;
    /// In one transaction: appends delivery attempts and moves webhook cursors forward
    /// (never back; unknown ids are skipped, the webhook may just have been deleted).
    async fn record_deliveries(
        &self,
        deliveries: Vec<DeliveryRecord>,
        cursors: Vec<(String, u64)>,
    ) -> Result<(), StoreError>;
    /// A webhook's delivery attempts, newest first, at most `limit`.
    async fn deliveries(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Deletes delivery attempts with `at < before`; returns how many.
    async fn prune_deliveries(&self, before: Micros) -> Result<u64, StoreError>;
    /// Task retention: in one transaction, deletes terminal tasks with
    /// `finished_at < finished_before`, together with their attempts, log chunks and flow
    /// records, until `limit` tasks are deleted. A workflow is pruned whole, never node by
    /// node. First the workflows created before the cutoff are looked at, the oldest first
    /// (at most `PRUNE_WORKFLOW_SCAN` of them): one is due when every current node's task
    /// (from the workflow record) and every task whose flow record names it (earlier runs a
    /// rerun replaced, too) is gone, or terminal and finished before the cutoff; a due one is
    /// deleted with all those tasks, and the last one may take the count past `limit`. Then,
    /// with what is left of `limit`, the due tasks of no stored workflow, by state, then the
    /// oldest created first (task ids are UUIDv7, so only tasks created before the cutoff are
    /// looked at). Never touches a non-terminal task, the events or the task sequence
    /// numbering. Returns how many tasks were deleted (less than `limit`: no more are due)
    /// and their idempotency keys, which the core then forgets. Fenced, like `commit`.
    async fn prune_tasks(
        &self,
        finished_before: Micros,
        limit: usize,
    ) -> Result<PrunedTasks, StoreError>;

    // Serial and parallel execution (schema 0003): read side for the API.
    /// A task's flow record (dependencies, key, deadline, workflow), if it has one.
    async fn flow(&self, id: TaskId) -> Result<Option<FlowRecord>, StoreError>;
    /// Every configured queue, by namespace and name.
    async fn queue_configs(&self) -> Result<Vec<QueueConfig>, StoreError>;
    async fn workflow(&self, id: &str) -> Result<Option<WorkflowRecord>, StoreError>;
    /// Workflows, newest first, at most `limit`, of every namespace (`None`) or only these.
    async fn workflows(
        &self,
        limit: usize,
        namespaces: Option<&[String]>,
    ) -> Result<Vec<WorkflowRecord>, StoreError>;

    // The audit log (schema 0009).
    /// Appends records in order; each gets the next seq.
    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<(), StoreError>;
    /// Records matching `query`, newest first.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
    /// Deletes records with `at < before`; returns how many.
    async fn prune_audit(&self, before: Micros) -> Result<u64, StoreError>;
    // API tokens (schema 0008): written by the server's token endpoints, outside the core.
    /// Inserts a token; `false` (nothing stored) when its name or its hash is taken.
    async fn insert_token(&self, token: &TokenRecord) -> Result<bool, StoreError>;
    /// Every token, by name.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Deletes a token; false if there was none.
    async fn delete_token(&self, name: &str) -> Result<bool, StoreError>;
}

/// Most workflows one `Store::prune_tasks` call looks at, the oldest first, due or not. A
/// workflow created before the cutoff that is not due (still running, or rerun since) is
/// looked at again by every call: this bounds the time that takes in the writer's
/// transaction (measured: ~130 ms for 10,000 ten-node workflows). The price: due workflows
/// behind more than this many older ones that are not due wait until some of those are.
pub(crate) const PRUNE_WORKFLOW_SCAN: usize = 10_000;

/// The greatest UUIDv7 id whose timestamp is not after `before` (in ms): an upper bound of
/// the ids of tasks created before it. `None` when nothing can be that old.
pub(crate) fn newest_id_created_by(before: Micros) -> Option<TaskId> {
    if before <= 0 {
        return None;
    }
    let next_ms = (before.div_euclid(1000) as u128) + 1;
    let bound = if next_ms >= 1 << 48 {
        u128::MAX
    } else {
        (next_ms << 80) - 1
    };
    Some(TaskId(bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prune_bound_covers_every_id_created_by_the_cutoff() {
        // The largest and the smallest UUIDv7 of a millisecond.
        let last_of = |ms: u128| (ms << 80) | ((1 << 80) - 1);
        let first_of = |ms: u128| ms << 80;
        let bound = |us| newest_id_created_by(us).unwrap().0;
        let t = 1_764_547_200_123u128;
        assert_eq!(last_of(t), bound(t as i64 * 1000));
        assert_eq!(last_of(t), bound(t as i64 * 1000 + 999));
        assert!(first_of(t + 1) > bound(t as i64 * 1000 + 999));
        assert_eq!(bound(i64::MAX), u128::MAX);
        assert_eq!(newest_id_created_by(0), None);
    }
}
