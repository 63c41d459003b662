//! Drover's storage: the `Store` trait and its backends.
//!
//! Invariants: only this crate knows SQL. A commit applies a whole batch of `Write`s in one
//! transaction or none of it. No scheduling logic and no clock in SQL: every time is a value the
//! core decided. Backends: SQLite (embedded, default) and in-memory (tests, simulation); the
//! same conformance suite (`tests/conformance.rs`) runs against each.

use std::collections::BTreeMap;

use async_trait::async_trait;
use drover_core::{AttemptRecord, Event, LogChunk, Snapshot, TaskId, TaskRecord, TaskState, Write};

mod batch;
pub mod mem;
pub mod sqlite;

pub use mem::MemStore;
pub use sqlite::SqliteStore;

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
}

/// Filters and paging for task listings. Newest first; `before` is the cursor (an id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskQuery {
    pub state: Option<TaskState>,
    pub queue: Option<String>,
    /// Only tasks with an id lower than this (the previous page's last id).
    pub before: Option<TaskId>,
    pub limit: usize,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Non-terminal tasks with their current attempt, and the next sequence numbers.
    async fn load_snapshot(&self) -> Result<Snapshot, StoreError>;
    /// Applies the whole batch atomically and durably (group commit). Within a batch, later
    /// writes of the same task or attempt replace earlier ones.
    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError>;

    // Read side, for the API; never used by the core.
    async fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError>;
    /// Every attempt of a task, oldest first.
    async fn attempts(&self, id: TaskId) -> Result<Vec<AttemptRecord>, StoreError>;
    async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError>;
    /// Log chunks of one attempt, in the order they were written.
    async fn logs(&self, id: TaskId, attempt: u32) -> Result<Vec<LogChunk>, StoreError>;
    /// Events with `seq > after`, oldest first, at most `limit`.
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
    async fn count_by_state(&self) -> Result<BTreeMap<TaskState, u64>, StoreError>;
}
