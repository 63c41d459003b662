//! `SqliteStore`: the embedded, default backend.
//!
//! One writer connection (behind a mutex, used from `spawn_blocking`) applies each batch in
//! one `BEGIN IMMEDIATE` transaction; a small pool of read connections serves the API. The
//! database runs in WAL mode, so readers see the last committed state and never wait for a
//! commit in progress; `synchronous=FULL` makes every commit durable before it returns.
//!
//! This file holds the connections, the schema version and the `Store` impl, which delegates
//! to one module per kind of thing stored: `tasks` (and attempts), `events`, `logs`, `deps`
//! (per-task flow records, `task_flow`), `queues`, `workflows`, `schedules`, `drains`,
//! `webhooks`; `commit` writes a batch through them, `snapshot` reads the start state,
//! `retention` prunes tasks and workflows, `codec` maps rows to records.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use drover_core::{
    AttemptRecord, Event, LogChunk, Micros, Snapshot, TaskId, TaskRecord, TaskState, Write,
};
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::Semaphore;

use crate::batch::Batch;
use crate::leadership::{ClusterView, Epoch, Leadership, Member};
use crate::solo::Solo;
use crate::{
    AuditQuery, AuditRecord, DeliveryRecord, PrunedTasks, Store, StoreError, TaskQuery,
    TokenRecord, WebhookRecord,
};

mod audit;
pub(crate) mod codec;
mod commit;
pub(crate) mod deps;
mod drains;
mod events;
mod logs;
pub(crate) mod queues;
mod retention;
mod rows;
pub(crate) mod schedules;
pub(crate) mod snapshot;
mod tasks;
mod tokens;
mod webhooks;
pub(crate) mod workflows;

/// The schema, one script per version; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    include_str!("sqlite/migrations/0001_init.sql"),
    include_str!("sqlite/migrations/0002_webhooks.sql"),
    include_str!("sqlite/migrations/0003_flow.sql"),
    include_str!("sqlite/migrations/0004_schedules.sql"),
    include_str!("sqlite/migrations/0005_events_and_retention.sql"),
    include_str!("sqlite/migrations/0006_drained_workers.sql"),
    include_str!("sqlite/migrations/0007_workflows_by_created.sql"),
    include_str!("sqlite/migrations/0008_api_tokens.sql"),
    include_str!("sqlite/migrations/0009_audit.sql"),
    include_str!("sqlite/migrations/0010_worker_limits.sql"),
    include_str!("sqlite/migrations/0011_namespaces.sql"),
    include_str!("sqlite/migrations/0012_queue_weights.sql"),
    include_str!("sqlite/migrations/0013_concurrency_keys.sql"),
    include_str!("sqlite/migrations/0014_queue_rates.sql"),
    include_str!("sqlite/migrations/0015_queue_max_queued.sql"),
    include_str!("sqlite/migrations/0016_task_results.sql"),
];

/// How long a statement waits on a lock held by another connection before giving up with
/// `StoreError::Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most read connections open at once (and reads running at once).
const MAX_READERS: usize = 4;
/// Page cache per connection, in KiB (SQLite's negative `cache_size`).
const WRITER_CACHE_KIB: i64 = 32 * 1024;
const READER_CACHE_KIB: i64 = 8 * 1024;
const STATEMENT_CACHE: usize = 64;
/// The WAL file is truncated back to this size after a checkpoint (it is reused, not grown,
/// in between; SQLite checkpoints every ~1000 pages by default).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// `db_err`, with what was being done added to a backend error (the others say enough).
fn db_err_in(e: rusqlite::Error, doing: impl FnOnce() -> String) -> StoreError {
    match db_err(e) {
        StoreError::Backend(m) => StoreError::Backend(format!("{}: {m}", doing())),
        other => other,
    }
}

/// Maps a SQLite error to the store's error kinds.
pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &e {
        E::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                StoreError::Unavailable(e.to_string())
            }
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        },
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::InvalidColumnType(..)
        | E::Utf8Error(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Backend(format!("store task failed: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a transaction rolls it back when the transaction is dropped, so the
    // connection behind a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The SQLite store. Cheap to share: wrap it in an `Arc`.
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    /// Idle read connections; at most `MAX_READERS` exist, one per read permit.
    readers: Mutex<Vec<Connection>>,
    read_permits: Arc<Semaphore>,
    /// A single node: it always leads.
    solo: Solo,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database at `path` and
    /// brings its schema up to date. Synchronous: call it before serving.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Backend(format!("creating {}: {e}", parent.display())))?;
        }
        let mut writer = Connection::open(&path).map_err(db_err)?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{}: could not enable WAL (journal_mode is {mode})",
                path.display()
            )));
        }
        writer
            .execute_batch(&format!(
                "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; \
                 PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{WRITER_CACHE_KIB}; \
                 PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
            ))
            .map_err(db_err)?;
        writer.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate(&mut writer)?;
        deps::ensure_columns(&writer)?;
        // One reader now, so a database readers cannot open fails here rather than later.
        let reader = open_reader(&path)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(vec![reader]),
                read_permits: Arc::new(Semaphore::new(MAX_READERS)),
                solo: Solo::default(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the writer connection, off the async threads.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&inner.writer)))
            .await
            .map_err(join_err)?
    }

    /// `write`, fenced: runs `f` only while this store's epoch leads (checked under the
    /// writer's lock).
    async fn fenced_write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = lock(&inner.writer);
            inner.solo.check()?;
            f(&mut c)
        })
        .await
        .map_err(join_err)?
    }

    /// Runs `f` on a read connection, off the async threads. Waits (asynchronously) while
    /// `MAX_READERS` reads are running.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let permit = inner
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| {
                StoreError::Unavailable("store closed: the server is shutting down".into())
            })?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = lock(&inner.readers).pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_reader(&inner.path)?,
            };
            let out = f(&conn);
            // A connection left inside a transaction (an error midway) is dropped, not reused.
            if conn.is_autocommit() {
                lock(&inner.readers).push(conn);
            }
            out
        })
        .await
        .map_err(join_err)?
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
    conn.execute_batch(&format!(
        "PRAGMA query_only = ON; PRAGMA cache_size = -{READER_CACHE_KIB};"
    ))
    .map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Applies the migrations this database has not seen, all in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db_err)?;
    let known = MIGRATIONS.len();
    let applied = usize::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("schema version {version}")))?;
    if applied > known {
        return Err(StoreError::Backend(format!(
            "the database has schema version {applied} but this build knows only up to \
             {known}: it was written by a newer drover"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("migration {}: {}", i + 1, db_err(e))))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

/// Begins the writer's `IMMEDIATE` transaction. A previous failure whose rollback failed too
/// may have left a transaction open: end it, or every later write would fail to begin.
fn begin(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK").map_err(db_err)?;
    }
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)
}

/// `a, b` as `p.a, p.b`.
fn prefixed(cols: &str, prefix: &str) -> String {
    cols.split(',')
        .map(|c| format!("{prefix}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A single node: it always leads (`solo`). Another process on the same file is not a
/// member: the file lock refuses it.
#[async_trait]
impl Leadership for SqliteStore {
    async fn elect(&self, member: &Member, lease: Duration) -> Result<Option<Epoch>, StoreError> {
        Ok(Some(self.inner.solo.elect(member, lease)))
    }

    async fn renew(&self, epoch: Epoch, lease: Duration) -> Result<bool, StoreError> {
        Ok(self.inner.solo.renew(epoch, lease))
    }

    async fn resign(&self, epoch: Epoch) -> Result<(), StoreError> {
        self.inner.solo.resign(epoch);
        Ok(())
    }

    async fn heartbeat(&self, member: &Member) -> Result<(), StoreError> {
        self.inner.solo.heartbeat(member);
        Ok(())
    }

    async fn cluster(&self) -> Result<ClusterView, StoreError> {
        Ok(self.inner.solo.cluster())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn load_snapshot(&self) -> Result<Snapshot, StoreError> {
        self.read(snapshot::load).await
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.fenced_write(move |c| commit::commit_batch(c, Batch::new(writes)))
            .await
    }

    async fn task_defs(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, std::sync::Arc<drover_core::TaskDef>)>, StoreError> {
        let ids = ids.to_vec();
        self.read(move |c| tasks::defs(c, &ids)).await
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.read(move |c| tasks::task(c, id)).await
    }

    async fn attempts(&self, id: TaskId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.read(move |c| tasks::attempts(c, id)).await
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
        let q = query.clone();
        self.read(move |c| tasks::list(c, &q)).await
    }

    async fn logs(&self, id: TaskId, attempt: u32) -> Result<Vec<LogChunk>, StoreError> {
        self.read(move |c| logs::of_attempt(c, id, attempt)).await
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| events::after(c, after, limit)).await
    }

    async fn count_by_state(
        &self,
        namespaces: Option<&[String]>,
    ) -> Result<BTreeMap<TaskState, u64>, StoreError> {
        let namespaces = namespaces.map(<[String]>::to_vec);
        self.read(move |c| tasks::count_by_state(c, namespaces.as_deref()))
            .await
    }

    async fn prune_events(&self, before: Micros) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = self
                .fenced_write(move |c| events::prune_batch(c, before))
                .await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    async fn last_event_seq(&self) -> Result<u64, StoreError> {
        let max = self.read(events::last_seq).await?;
        Ok(max.map_or(0, |m| m as u64))
    }

    async fn insert_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        let w = webhook.clone();
        self.write(move |c| webhooks::insert(c, &w)).await
    }

    async fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        self.read(webhooks::all).await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| webhooks::delete(c, &id)).await
    }

    async fn record_deliveries(
        &self,
        deliveries: Vec<DeliveryRecord>,
        cursors: Vec<(String, u64)>,
    ) -> Result<(), StoreError> {
        if deliveries.is_empty() && cursors.is_empty() {
            return Ok(());
        }
        self.write(move |c| webhooks::record_deliveries(c, &deliveries, &cursors))
            .await
    }

    async fn deliveries(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let id = webhook_id.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| webhooks::deliveries(c, &id, limit))
            .await
    }

    async fn prune_deliveries(&self, before: Micros) -> Result<u64, StoreError> {
        self.write(move |c| webhooks::prune_deliveries(c, before))
            .await
    }

    async fn prune_tasks(
        &self,
        finished_before: Micros,
        limit: usize,
    ) -> Result<PrunedTasks, StoreError> {
        if limit == 0 {
            return Ok(PrunedTasks::default());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.fenced_write(move |c| retention::prune_tasks(c, finished_before, limit))
            .await
    }

    async fn flow(&self, id: TaskId) -> Result<Option<drover_core::FlowRecord>, StoreError> {
        self.read(move |c| deps::of_task(c, id)).await
    }

    async fn queue_configs(&self) -> Result<Vec<drover_core::QueueConfig>, StoreError> {
        self.read(queues::all).await
    }

    async fn workflow(
        &self,
        id: &str,
    ) -> Result<Option<drover_core::dag::WorkflowRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| workflows::get(c, &id)).await
    }

    async fn workflows(
        &self,
        limit: usize,
        namespaces: Option<&[String]>,
    ) -> Result<Vec<drover_core::dag::WorkflowRecord>, StoreError> {
        let namespaces = namespaces.map(<[String]>::to_vec);
        self.read(move |c| workflows::newest(c, limit, namespaces.as_deref()))
            .await
    }

    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.write(move |c| audit::append(c, &records)).await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let q = query.clone();
        self.read(move |c| audit::list(c, &q)).await
    }

    async fn prune_audit(&self, before: Micros) -> Result<u64, StoreError> {
        self.write(move |c| audit::prune(c, before)).await
    }

    async fn insert_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        let t = token.clone();
        self.write(move |c| tokens::insert(c, &t)).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(tokens::all).await
    }

    async fn delete_token(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.write(move |c| tokens::delete(c, &name)).await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params_from_iter;
    use rusqlite::types::Value;

    use super::*;

    fn plan(conn: &Connection, sql: &str, args: Vec<Value>) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    /// Every read the API makes is served by an index: no full scan, no sort.
    #[test]
    fn reads_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("plan.db")).unwrap();
        let conn = lock(&store.inner.writer);
        let id = Some(TaskId(1));
        for (state, queue, before) in [
            (None, None, None),
            (None, None, id),
            (Some(TaskState::Failed), None, None),
            (Some(TaskState::Failed), None, id),
            (None, Some("q".to_string()), id),
            (Some(TaskState::Queued), Some("q".to_string()), id),
        ] {
            let q = TaskQuery {
                state,
                queue,
                before,
                limit: 10,
                namespaces: None,
            };
            let (sql, args) = tasks::list_sql(&q);
            let p = plan(&conn, &sql, args);
            assert!(!p.contains("TEMP B-TREE"), "{q:?}: {p}");
            if q.state.is_some() {
                assert!(p.contains("USING INDEX tasks_by_state"), "{q:?}: {p}");
            } else if q.queue.is_some() {
                assert!(p.contains("USING INDEX tasks_by_queue"), "{q:?}: {p}");
            }
        }
        let p = plan(&conn, &snapshot::active_tasks_sql(), vec![]);
        assert!(p.contains("USING INDEX tasks_by_state"), "{p}");
        assert!(p.contains("USING PRIMARY KEY"), "{p}");
        let p = plan(
            &conn,
            retention::PRUNE_TASKS_SQL,
            vec![
                Value::Text("succeeded".into()),
                Value::Blob(vec![0; 16]),
                Value::Integer(0),
                Value::Integer(10),
            ],
        );
        // Task retention: index walks, no scan, no sort; each task or workflow walked costs
        // primary-key lookups.
        assert!(
            p.contains("USING INDEX tasks_by_state (state=? AND id<?)")
                && p.contains("SEARCH f USING PRIMARY KEY (task_id=?)")
                && p.contains("SEARCH w USING PRIMARY KEY (id=?)")
                && !p.contains("SCAN")
                && !p.contains("TEMP B-TREE"),
            "{p}"
        );
        let p = plan(
            &conn,
            &retention::due_workflows_sql(),
            vec![Value::Integer(0), Value::Integer(10)],
        );
        assert!(
            p.starts_with("SEARCH w USING INDEX workflows_by_created (created_at<?)")
                && p.contains("SEARCH f USING COVERING INDEX task_flow_by_workflow")
                && p.matches("SEARCH t USING PRIMARY KEY (id=?)").count() == 2
                && !p.contains("TEMP B-TREE")
                && !p.replace("SCAN n VIRTUAL TABLE", "").contains("SCAN"),
            "{p}"
        );
        let p = plan(
            &conn,
            retention::WORKFLOW_TASKS_SQL,
            vec![Value::Text("w".into())],
        );
        assert!(
            p.contains("USING COVERING INDEX task_flow_by_workflow (workflow_id=?)")
                && p.contains("SEARCH t USING PRIMARY KEY (id=?)")
                && !p.contains("TEMP B-TREE"),
            "{p}"
        );
        for sql in [
            "DELETE FROM attempts WHERE task_id = x'00'",
            "DELETE FROM logs WHERE task_id = x'00'",
            "DELETE FROM task_flow WHERE task_id = x'00'",
            "DELETE FROM task_flow WHERE workflow_id = 'w'",
            "DELETE FROM workflows WHERE id = 'w'",
            "SELECT * FROM attempts WHERE task_id = x'00' ORDER BY attempt",
            "SELECT * FROM logs WHERE task_id = x'00' AND attempt = 1 ORDER BY id",
            "SELECT * FROM events WHERE seq > 5 ORDER BY seq LIMIT 10",
            "SELECT max(seq) FROM events",
        ] {
            let p = plan(&conn, sql, vec![]);
            assert!(
                !p.contains("TEMP B-TREE") && !p.starts_with("SCAN"),
                "{sql}: {p}"
            );
        }
    }
}
