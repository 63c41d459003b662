//! `SqliteStore`: the embedded, default backend.
//!
//! One writer connection (behind a mutex, used from `spawn_blocking`) applies each batch in
//! one `BEGIN IMMEDIATE` transaction; a small pool of read connections serves the API. The
//! database runs in WAL mode, so readers see the last committed state and never wait for a
//! commit in progress; `synchronous=FULL` makes every commit durable before it returns.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use drover_core::{
    AttemptRecord, Event, LogChunk, Micros, Snapshot, TaskId, TaskRecord, TaskState, Write,
};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, ErrorCode, OpenFlags, TransactionBehavior};
use tokio::sync::Semaphore;

use crate::batch::Batch;
use crate::{DeliveryRecord, PrunedTasks, Store, StoreError, TaskQuery, WebhookRecord};

mod codec;
mod flow;

use codec::{
    attempt_from_row, event_from_row, event_to_row, id_bytes, lease_to_sql, log_from_row,
    outcome_to_sql, placement_to_json, spec_to_json, stream_to_sql, task_from_row,
    task_with_attempt_from_row, u64_to_sql, ATTEMPT_COLS, EVENT_COLS, TASK_COLS,
};

/// The schema, one script per version; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    include_str!("sqlite/migrations/0001_init.sql"),
    include_str!("sqlite/migrations/0002_webhooks.sql"),
    include_str!("sqlite/migrations/0003_flow.sql"),
    include_str!("sqlite/migrations/0004_schedules.sql"),
    include_str!("sqlite/migrations/0005_events_and_retention.sql"),
    include_str!("sqlite/migrations/0006_drained_workers.sql"),
    include_str!("sqlite/migrations/0007_workflows_by_created.sql"),
];

/// Events deleted per transaction by `prune_events`, so a large prune never holds the writer
/// (and with it the commits) for long.
const PRUNE_BATCH: i64 = 5_000;

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

// `OR FAIL` on the task statements: any error rolls back the whole transaction anyway, so a
// statement need not be undoable on its own. That spares SQLite a statement journal per
// statement (the `state_counts` triggers would otherwise need one), a large share of the cost
// of a commit.
const INSERT_TASK: &str = "INSERT OR FAIL INTO tasks (id, seq, queue, kind, priority, spec, \
     max_attempts, backoff_ms, timeout_ms, idempotency_key, placement, state, attempt, \
     lost, not_before, worker, lease, created_at, updated_at, started_at, finished_at, \
     exit_code, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
     ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)";

/// Only the mutable state: the definition is written once, by the insert.
const UPDATE_TASK: &str = "UPDATE OR FAIL tasks SET state = ?2, attempt = ?3, lost = ?4, \
     not_before = ?5, worker = ?6, lease = ?7, updated_at = ?8, started_at = ?9, \
     finished_at = ?10, exit_code = ?11, error = ?12, placement = COALESCE(?13, placement) \
     WHERE id = ?1";

const UPSERT_ATTEMPT: &str = "INSERT INTO attempts (task_id, attempt, worker, assigned_at, \
     started_at, finished_at, outcome, exit_code, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
     ?8, ?9) ON CONFLICT (task_id, attempt) DO UPDATE SET worker = excluded.worker, \
     assigned_at = excluded.assigned_at, started_at = excluded.started_at, \
     finished_at = excluded.finished_at, outcome = excluded.outcome, \
     exit_code = excluded.exit_code, error = excluded.error";

const INSERT_EVENT: &str = "INSERT INTO events (seq, at, type, task_id, queue, state, attempt, \
     worker, reason, worker_name, worker_state, workflow, schedule) VALUES (?1, ?2, ?3, ?4, \
     ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

const BUMP_TASK_SEQ: &str = "UPDATE meta SET value = max(value, ?1) WHERE key = 'next_task_seq'";

const INSERT_LOG: &str =
    "INSERT INTO logs (task_id, attempt, stream, data) VALUES (?1, ?2, ?3, ?4)";

/// Maps a SQLite error to the store's error kinds.
/// `db_err`, with what was being done added to a backend error (the others say enough).
fn db_err_in(e: rusqlite::Error, doing: impl FnOnce() -> String) -> StoreError {
    match db_err(e) {
        StoreError::Backend(m) => StoreError::Backend(format!("{}: {m}", doing())),
        other => other,
    }
}

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
        flow::ensure_columns(&writer)?;
        // One reader now, so a database readers cannot open fails here rather than later.
        let reader = open_reader(&path)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(vec![reader]),
                read_permits: Arc::new(Semaphore::new(MAX_READERS)),
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
            .map_err(|_| StoreError::Backend("store closed".into()))?;
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

/// The commit hot path: one transaction, cached statements, no reads.
fn commit_batch(conn: &mut Connection, batch: Batch) -> Result<(), StoreError> {
    if !conn.is_autocommit() {
        // A previous failure whose rollback failed too left a transaction open: end it, or
        // every later commit would fail to begin.
        conn.execute_batch("ROLLBACK").map_err(db_err)?;
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let mut next_task_seq: Option<u64> = None;
    {
        let mut insert = tx.prepare_cached(INSERT_TASK).map_err(db_err)?;
        let mut update = tx.prepare_cached(UPDATE_TASK).map_err(db_err)?;
        for (t, is_new) in &batch.tasks {
            let id = id_bytes(t.id);
            let lease = lease_to_sql(t.lease);
            let state = t.state.as_str();
            if *is_new {
                next_task_seq = next_task_seq.max(Some(t.seq.saturating_add(1)));
                let d = &t.def;
                insert
                    .execute(params![
                        &id[..],
                        u64_to_sql(t.seq),
                        d.queue,
                        d.kind,
                        d.priority,
                        spec_to_json(&d.spec),
                        d.max_attempts,
                        u64_to_sql(d.backoff_ms),
                        d.timeout_ms.map(u64_to_sql),
                        d.idempotency_key,
                        placement_to_json(&d.placement),
                        state,
                        t.attempt,
                        t.lost,
                        t.not_before,
                        t.worker,
                        lease,
                        t.created_at,
                        t.updated_at,
                        t.started_at,
                        t.finished_at,
                        t.exit_code,
                        t.error,
                    ])
                    .map_err(|e| db_err_in(e, || format!("inserting task {}", t.id)))?;
            } else {
                let n = update
                    .execute(params![
                        &id[..],
                        state,
                        t.attempt,
                        t.lost,
                        t.not_before,
                        t.worker,
                        lease,
                        t.updated_at,
                        t.started_at,
                        t.finished_at,
                        t.exit_code,
                        t.error,
                        // Placement changes only when a broadcast fans out (its shard).
                        (!t.def.placement.is_default())
                            .then(|| placement_to_json(&t.def.placement)),
                    ])
                    .map_err(db_err)?;
                if n != 1 {
                    return Err(StoreError::Backend(format!(
                        "update of unknown task {}",
                        t.id
                    )));
                }
            }
        }
    }
    if let Some(next) = next_task_seq {
        tx.prepare_cached(BUMP_TASK_SEQ)
            .and_then(|mut st| st.execute([u64_to_sql(next)]))
            .map_err(db_err)?;
    }
    if !batch.attempts.is_empty() {
        let mut upsert = tx.prepare_cached(UPSERT_ATTEMPT).map_err(db_err)?;
        for a in &batch.attempts {
            upsert
                .execute(params![
                    &id_bytes(a.task_id)[..],
                    a.attempt,
                    a.worker,
                    a.assigned_at,
                    a.started_at,
                    a.finished_at,
                    outcome_to_sql(a.outcome),
                    a.exit_code,
                    a.error,
                ])
                .map_err(db_err)?;
        }
    }
    if !batch.events.is_empty() {
        let mut insert = tx.prepare_cached(INSERT_EVENT).map_err(db_err)?;
        for e in &batch.events {
            let r = event_to_row(e);
            insert
                .execute(params![
                    r.seq,
                    r.at,
                    r.kind,
                    r.task_id.as_ref().map(|b| &b[..]),
                    r.queue,
                    r.state,
                    r.attempt,
                    r.worker,
                    r.reason,
                    r.worker_name,
                    r.worker_state,
                    r.workflow,
                    r.schedule,
                ])
                .map_err(|e| db_err_in(e, || format!("inserting event {}", r.seq)))?;
        }
    }
    if !batch.logs.is_empty() {
        let mut insert = tx.prepare_cached(INSERT_LOG).map_err(db_err)?;
        for l in &batch.logs {
            insert
                .execute(params![
                    &id_bytes(l.task_id)[..],
                    l.attempt,
                    stream_to_sql(l.stream),
                    l.data,
                ])
                .map_err(db_err)?;
        }
    }
    flow::commit(&tx, &batch)?;
    tx.commit().map_err(db_err)
}

fn prefixed(cols: &str, prefix: &str) -> String {
    cols.split(',')
        .map(|c| format!("{prefix}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The non-terminal tasks joined with their current attempt (`TASK_COLS`, then
/// `ATTEMPT_COLS`, NULL when there is none).
fn snapshot_sql() -> String {
    let active = TaskState::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {}, {} FROM tasks t LEFT JOIN attempts a \
         ON a.task_id = t.id AND a.attempt = t.attempt WHERE t.state IN ({active})",
        prefixed(TASK_COLS, "t."),
        prefixed(ATTEMPT_COLS, "a."),
    )
}

fn load_snapshot(conn: &Connection) -> Result<Snapshot, StoreError> {
    // One read transaction, so the tasks and the sequence numbers agree.
    let tx = conn.unchecked_transaction().map_err(db_err)?;
    let mut tasks = Vec::new();
    {
        let mut stmt = tx.prepare(&snapshot_sql()).map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            tasks.push(task_with_attempt_from_row(row)?);
        }
    }
    let next_task: i64 = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'next_task_seq'",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    let max_event: Option<i64> = tx
        .query_row("SELECT max(seq) FROM events", [], |r| r.get(0))
        .map_err(db_err)?;
    let active = TaskState::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut snap = Snapshot {
        tasks,
        next_task_seq: next_task as u64,
        next_event_seq: max_event.map_or(1, |m| m as u64 + 1),
        ..Snapshot::default()
    };
    flow::load(&tx, &active, &mut snap)?;
    tx.commit().map_err(db_err)?;
    Ok(snap)
}

/// The listing query for `q` and its parameters.
fn list_sql(q: &TaskQuery) -> (String, Vec<Value>) {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    if let Some(s) = q.state {
        conds.push("state = ?");
        args.push(Value::Text(s.as_str().to_owned()));
    }
    if let Some(queue) = &q.queue {
        // With a state too, walk `tasks_by_state` and filter the queue (`+` keeps the planner
        // off `tasks_by_queue`): a state is usually a far smaller set than a queue's history.
        conds.push(if q.state.is_some() {
            "+queue = ?"
        } else {
            "queue = ?"
        });
        args.push(Value::Text(queue.clone()));
    }
    if let Some(b) = q.before {
        conds.push("id < ?");
        args.push(Value::Blob(id_bytes(b).to_vec()));
    }
    args.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", conds.join(" AND "))
    };
    let sql = format!("SELECT {TASK_COLS} FROM tasks {filter}ORDER BY id DESC LIMIT ?");
    (sql, args)
}

fn list_tasks(conn: &Connection, q: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
    if q.limit == 0 {
        return Ok(Vec::new());
    }
    let (sql, args) = list_sql(q);
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let mut rows = stmt.query(params_from_iter(args)).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(task_from_row(row)?);
    }
    Ok(out)
}

#[async_trait]
impl Store for SqliteStore {
    async fn load_snapshot(&self) -> Result<Snapshot, StoreError> {
        self.read(load_snapshot).await
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.write(move |c| commit_batch(c, Batch::new(writes)))
            .await
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1"))
                .map_err(db_err)?;
            let mut rows = stmt.query([&id_bytes(id)[..]]).map_err(db_err)?;
            match rows.next().map_err(db_err)? {
                Some(row) => task_from_row(row).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn attempts(&self, id: TaskId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {ATTEMPT_COLS} FROM attempts WHERE task_id = ?1 ORDER BY attempt"
                ))
                .map_err(db_err)?;
            let mut rows = stmt.query([&id_bytes(id)[..]]).map_err(db_err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db_err)? {
                out.push(attempt_from_row(row, 0)?);
            }
            Ok(out)
        })
        .await
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
        let q = query.clone();
        self.read(move |c| list_tasks(c, &q)).await
    }

    async fn logs(&self, id: TaskId, attempt: u32) -> Result<Vec<LogChunk>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT task_id, attempt, stream, data FROM logs \
                     WHERE task_id = ?1 AND attempt = ?2 ORDER BY id",
                )
                .map_err(db_err)?;
            let mut rows = stmt
                .query(params![&id_bytes(id)[..], attempt])
                .map_err(db_err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db_err)? {
                out.push(log_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ))
                .map_err(db_err)?;
            let mut rows = stmt.query(params![after, limit]).map_err(db_err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db_err)? {
                out.push(event_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn count_by_state(&self) -> Result<BTreeMap<TaskState, u64>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT state, n FROM state_counts WHERE n > 0")
                .map_err(db_err)?;
            let mut rows = stmt.query([]).map_err(db_err)?;
            let mut out = BTreeMap::new();
            while let Some(row) = rows.next().map_err(db_err)? {
                let state: String = row.get(0).map_err(db_err)?;
                let n: i64 = row.get(1).map_err(db_err)?;
                let state = state.parse::<TaskState>().map_err(StoreError::Corrupt)?;
                let n = u64::try_from(n)
                    .map_err(|_| StoreError::Corrupt(format!("{n} tasks {state}")))?;
                out.insert(state, n);
            }
            Ok(out)
        })
        .await
    }

    async fn prune_events(&self, before: Micros) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = self.write(move |c| prune_events_batch(c, before)).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    async fn last_event_seq(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            let max: Option<i64> = c
                .query_row("SELECT max(seq) FROM events", [], |r| r.get(0))
                .map_err(db_err)?;
            Ok(max.map_or(0, |m| m as u64))
        })
        .await
    }

    async fn insert_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        let w = webhook.clone();
        let events = serde_json::to_string(&w.events)
            .map_err(|e| StoreError::Backend(format!("encoding webhook events: {e}")))?;
        self.write(move |c| {
            c.execute(
                "INSERT INTO webhooks (id, url, events, secret, created_at, cursor) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    w.id,
                    w.url,
                    events,
                    w.secret,
                    w.created_at,
                    u64_to_sql(w.cursor)
                ],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, url, events, secret, created_at, cursor FROM webhooks \
                     ORDER BY created_at, id",
                )
                .map_err(db_err)?;
            let mut rows = stmt.query([]).map_err(db_err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db_err)? {
                out.push(webhook_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let n = tx
                .execute("DELETE FROM webhooks WHERE id = ?1", [&id])
                .map_err(db_err)?;
            tx.execute(
                "DELETE FROM webhook_deliveries WHERE webhook_id = ?1",
                [&id],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn record_deliveries(
        &self,
        deliveries: Vec<DeliveryRecord>,
        cursors: Vec<(String, u64)>,
    ) -> Result<(), StoreError> {
        if deliveries.is_empty() && cursors.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO webhook_deliveries (webhook_id, seq, event, attempt, \
                         status, error, ok, last, at, duration_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )
                    .map_err(db_err)?;
                for d in &deliveries {
                    insert
                        .execute(params![
                            d.webhook_id,
                            u64_to_sql(d.seq),
                            d.event,
                            d.attempt,
                            d.status,
                            d.error,
                            d.ok,
                            d.last,
                            d.at,
                            u64_to_sql(d.duration_ms),
                        ])
                        .map_err(db_err)?;
                }
                let mut cursor = tx
                    .prepare_cached("UPDATE webhooks SET cursor = max(cursor, ?2) WHERE id = ?1")
                    .map_err(db_err)?;
                for (id, seq) in &cursors {
                    cursor
                        .execute(params![id, u64_to_sql(*seq)])
                        .map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn deliveries(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let id = webhook_id.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT webhook_id, seq, event, attempt, error, status, ok, last, at, id, \
                     duration_ms FROM webhook_deliveries WHERE webhook_id = ?1 \
                     ORDER BY id DESC LIMIT ?2",
                )
                .map_err(db_err)?;
            let mut rows = stmt.query(params![id, limit]).map_err(db_err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db_err)? {
                out.push(delivery_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn prune_deliveries(&self, before: Micros) -> Result<u64, StoreError> {
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM webhook_deliveries WHERE at < ?1", [before])
                .map_err(db_err)?;
            Ok(n as u64)
        })
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
        self.write(move |c| prune_tasks(c, finished_before, limit))
            .await
    }

    async fn flow(&self, id: TaskId) -> Result<Option<drover_core::FlowRecord>, StoreError> {
        self.read(move |c| flow::flow(c, id)).await
    }

    async fn queue_configs(&self) -> Result<Vec<drover_core::QueueConfig>, StoreError> {
        self.read(flow::queue_configs).await
    }

    async fn workflow(
        &self,
        id: &str,
    ) -> Result<Option<drover_core::dag::WorkflowRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| flow::workflow(c, &id)).await
    }

    async fn workflows(
        &self,
        limit: usize,
    ) -> Result<Vec<drover_core::dag::WorkflowRecord>, StoreError> {
        self.read(move |c| flow::workflows(c, limit)).await
    }
}

/// One batch of `prune_events`: deletes up to `PRUNE_BATCH` of the oldest events older than
/// `before`, keeping the newest. Returns how many it deleted (0: done).
fn prune_events_batch(conn: &mut Connection, before: Micros) -> Result<u64, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let bounds: (Option<i64>, Option<i64>) = tx
        .query_row("SELECT min(seq), max(seq) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(db_err)?;
    let (Some(oldest), Some(newest)) = bounds else {
        return Ok(0);
    };
    // Walks from the oldest event: as long as what is deleted, and no longer.
    let first_kept: Option<i64> = tx
        .query_row(
            "SELECT seq FROM events WHERE at >= ?1 ORDER BY seq LIMIT 1",
            [before],
            |r| r.get(0),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(db_err)?;
    let end = first_kept
        .unwrap_or(newest)
        .min(newest)
        .min(oldest.saturating_add(PRUNE_BATCH));
    let n = tx
        .execute("DELETE FROM events WHERE seq < ?1", [end])
        .map_err(db_err)?;
    tx.commit().map_err(db_err)?;
    Ok(n as u64)
}

/// `Store::prune_tasks` in one transaction: first the due workflows, whole
/// (`flow::due_workflows`), then, with what is left of `limit`, the due tasks of no workflow
/// (`PRUNE_TASKS_SQL`); every task with everything that hangs off it.
fn prune_tasks(
    conn: &mut Connection,
    before: Micros,
    limit: i64,
) -> Result<PrunedTasks, StoreError> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK").map_err(db_err)?;
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    // Workflows first: while a backlog of them is due, each call spends its budget on them
    // and the task walk below, which steps over every workflow's tasks, does not run.
    let mut due: Vec<(Vec<u8>, Option<String>)> = Vec::new();
    let workflows = flow::due_workflows(&tx, before, limit, &mut due)?;
    if let Some(newest) = crate::newest_id_created_by(before) {
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
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)?;
            for row in rows {
                due.push(row.map_err(db_err)?);
            }
        }
    }
    let mut keys = Vec::new();
    {
        let mut deletes = [
            "DELETE FROM attempts WHERE task_id = ?1",
            "DELETE FROM logs WHERE task_id = ?1",
            "DELETE FROM task_flow WHERE task_id = ?1",
            "DELETE FROM tasks WHERE id = ?1",
        ]
        .map(|sql| tx.prepare_cached(sql).map_err(db_err))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        for (id, key) in &due {
            if let Some(k) = key {
                keys.push((k.clone(), codec::id_from_blob(id)?));
            }
            for st in &mut deletes {
                st.execute([id]).map_err(db_err)?;
            }
        }
    }
    for w in &workflows {
        flow::delete_workflow(&tx, w)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(PrunedTasks {
        tasks: due.len() as u64,
        keys,
    })
}

/// The due tasks of one terminal state that are no workflow's, oldest created first (`?1`
/// state, `?2` newest id, `?3` finished before, `?4` limit). A workflow's tasks go only with
/// the workflow, as a whole (`flow::due_workflows`); a task whose flow record names a
/// workflow that is not stored is no workflow's. Task ids are UUIDv7, so a task that finished
/// before the cutoff was created before it too: the walk of `tasks_by_state` stops at the
/// cutoff's id and never visits newer tasks; each task it visits costs a primary-key lookup
/// of its flow record (and of the workflow, for a node). No index of its own: one more index
/// on `tasks` would cost every terminal transition a b-tree write (measured: a quarter of
/// end-to-end throughput).
const PRUNE_TASKS_SQL: &str = "SELECT id, idempotency_key FROM tasks \
     WHERE state = ?1 AND id <= ?2 AND finished_at < ?3 \
     AND NOT EXISTS (SELECT 1 FROM task_flow f JOIN workflows w ON w.id = f.workflow_id \
     WHERE f.task_id = tasks.id) \
     ORDER BY id LIMIT ?4";

fn webhook_from_row(row: &rusqlite::Row<'_>) -> Result<WebhookRecord, StoreError> {
    let events: String = row.get(2).map_err(db_err)?;
    let events: Vec<String> = serde_json::from_str(&events)
        .map_err(|e| StoreError::Corrupt(format!("webhook events '{events}': {e}")))?;
    let cursor: i64 = row.get(5).map_err(db_err)?;
    Ok(WebhookRecord {
        id: row.get(0).map_err(db_err)?,
        url: row.get(1).map_err(db_err)?,
        events,
        secret: row.get(3).map_err(db_err)?,
        created_at: row.get(4).map_err(db_err)?,
        cursor: cursor as u64,
    })
}

/// Reads `webhook_id, seq, event, attempt, error, status, ok, last, at, id, duration_ms`.
fn delivery_from_row(row: &rusqlite::Row<'_>) -> Result<DeliveryRecord, StoreError> {
    let seq: i64 = row.get(1).map_err(db_err)?;
    let status: Option<i64> = row.get(5).map_err(db_err)?;
    let duration: i64 = row.get(10).map_err(db_err)?;
    Ok(DeliveryRecord {
        webhook_id: row.get(0).map_err(db_err)?,
        seq: seq as u64,
        event: row.get(2).map_err(db_err)?,
        attempt: row.get(3).map_err(db_err)?,
        status: status
            .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt(format!("HTTP status {s}"))))
            .transpose()?,
        error: row.get(4).map_err(db_err)?,
        ok: row.get(6).map_err(db_err)?,
        last: row.get(7).map_err(db_err)?,
        at: row.get(8).map_err(db_err)?,
        duration_ms: duration.max(0) as u64,
    })
}

#[cfg(test)]
mod tests {
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
            };
            let (sql, args) = list_sql(&q);
            let p = plan(&conn, &sql, args);
            assert!(!p.contains("TEMP B-TREE"), "{q:?}: {p}");
            if q.state.is_some() {
                assert!(p.contains("USING INDEX tasks_by_state"), "{q:?}: {p}");
            } else if q.queue.is_some() {
                assert!(p.contains("USING INDEX tasks_by_queue"), "{q:?}: {p}");
            }
        }
        let p = plan(&conn, &snapshot_sql(), vec![]);
        assert!(p.contains("USING INDEX tasks_by_state"), "{p}");
        assert!(p.contains("USING PRIMARY KEY"), "{p}");
        let p = plan(
            &conn,
            PRUNE_TASKS_SQL,
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
            &flow::due_workflows_sql(),
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
            flow::WORKFLOW_TASKS_SQL,
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
