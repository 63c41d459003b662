//! `PgStore`: the PostgreSQL backend, for a server whose state lives in a database server.
//!
//! Driver: tokio-postgres, pooled by deadpool-postgres. One writer connection (a pool of one,
//! so writes queue for it like SQLite's writer mutex, and a broken connection is replaced)
//! applies each batch in one transaction, with one multi-row statement per kind of write:
//! the rows travel as arrays and `UNNEST` makes rows of them again (see `commit`). A pool of
//! read connections serves the API. Every connection runs with `synchronous_commit = on`,
//! so a commit returns only once it is on disk.
//!
//! The URL is libpq's (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB?...`), as tokio-postgres
//! parses it; a schema other than the default is chosen with the search path:
//! `?options=-csearch_path%3DSCHEMA` (the schema must exist). Migrations (`migrate`) run at
//! open, in one transaction under an advisory lock, so servers starting at once migrate once.
//!
//! The schema mirrors SQLite's, table by table (`postgres/migrations`); the JSON documents
//! are encoded by the same functions as SQLite's. One module per kind of thing stored, as in
//! `sqlite/`: `tasks` (and attempts), `events`, `logs`, `deps`, `queues`, `workflows`,
//! `schedules`, `drains`, `webhooks`, `tokens`, `audit`; `commit`, `snapshot`, `retention`,
//! `codec`; `leadership` (the lease, members and the fence every commit runs first); `scratch`
//! makes throwaway schemas for tests and benchmarks.
//!
//! Leadership's statements (elect, renew, resign, heartbeat) run on a connection of their
//! own, so a renewal never queues behind commits or API reads.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Client, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
};
use drover_core::{
    AttemptRecord, Event, LogChunk, Micros, Snapshot, TaskId, TaskRecord, TaskState, Write,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::batch::Batch;
use crate::leadership::{ClusterView, Epoch, Leadership, Member, Notices};
use crate::{
    AuditQuery, AuditRecord, DeliveryRecord, PrunedTasks, Store, StoreError, TaskQuery,
    TokenRecord, WebhookRecord,
};

mod audit;
mod codec;
mod commit;
mod deps;
mod drains;
mod events;
mod leadership;
mod logs;
mod migrate;
mod notices;
mod queues;
mod retention;
mod schedules;
mod scratch;
mod snapshot;
mod tasks;
mod tokens;
mod webhooks;
mod workflows;

pub use scratch::TempSchema;

/// Read connections open at once, by default.
pub const DEFAULT_READERS: usize = 8;
/// How long a request waits for a free connection, or for a new one to be made.
const POOL_WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `db_err`, with what was being done added to a backend error (the others say enough).
fn db_err_in(e: tokio_postgres::Error, doing: impl FnOnce() -> String) -> StoreError {
    match db_err(e) {
        StoreError::Backend(m) => StoreError::Backend(format!("{}: {m}", doing())),
        other => other,
    }
}

/// Maps a PostgreSQL error to the store's error kinds: a lost connection, a server going
/// down, lock or resource trouble is `Unavailable` (retry later); data the server reports
/// corrupt is `Corrupt`; everything else, constraint violations included (an insert of a
/// task that exists, an event seq used twice), is `Backend`, as in SQLite.
pub(crate) fn db_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if code.code() == leadership::FENCED {
            if let Some(fenced) = leadership::fenced(db) {
                return fenced;
            }
        }
        let msg = format!("{db} (SQLSTATE {})", code.code());
        return if code.code().starts_with("08")
            || code.code().starts_with("53")
            || code.code().starts_with("57")
            || [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::LOCK_NOT_AVAILABLE,
            ]
            .contains(code)
        {
            StoreError::Unavailable(msg)
        } else if [SqlState::DATA_CORRUPTED, SqlState::INDEX_CORRUPTED].contains(code) {
            StoreError::Corrupt(msg)
        } else {
            StoreError::Backend(msg)
        };
    }
    let io =
        std::error::Error::source(&e).is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
    if e.is_closed() || io {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db_err(e),
        PoolError::Closed => StoreError::Unavailable("store closed".into()),
        other => StoreError::Unavailable(format!("no database connection: {other}")),
    }
}

/// `a, b` as `p.a, p.b`.
fn prefixed(cols: &str, prefix: &str) -> String {
    cols.split(',')
        .map(|c| format!("{prefix}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The PostgreSQL store. Cheap to share: wrap it in an `Arc`.
pub struct PgStore {
    /// One connection: writes wait for it in turn.
    writer: Pool,
    readers: Pool,
    /// One connection for leadership's statements.
    lease: Pool,
    /// The epoch and lease this store commits with.
    fence: leadership::Fence,
    registered: leadership::Registered,
    /// Where it is, without the password, for messages.
    target: String,
    /// For the notification listener, started on first use.
    config: tokio_postgres::Config,
    notices: std::sync::OnceLock<Notices>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`) and brings its
    /// schema up to date, with `DEFAULT_READERS` read connections.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        PgStore::connect_with(url, DEFAULT_READERS).await
    }

    /// `connect`, with at most `readers` read connections (at least one).
    pub async fn connect_with(url: &str, readers: usize) -> Result<PgStore, StoreError> {
        let config = config(url)?;
        let target = describe(&config);
        let writer = pool(config.clone(), 1)?;
        let lease = pool(config.clone(), 1)?;
        let readers = pool(config.clone(), readers.max(1))?;
        let mut c = writer
            .get()
            .await
            .map_err(pool_err)
            .map_err(|e| at(&target, e))?;
        migrate::migrate(&mut c).await.map_err(|e| at(&target, e))?;
        drop(c);
        Ok(PgStore {
            writer,
            readers,
            lease,
            fence: leadership::Fence::default(),
            registered: leadership::Registered::default(),
            target,
            config,
            notices: std::sync::OnceLock::new(),
        })
    }

    /// The database, as `USER@HOST:PORT/DB` (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn write_client(&self) -> Result<Client, StoreError> {
        self.writer.get().await.map_err(pool_err)
    }

    async fn read_client(&self) -> Result<Client, StoreError> {
        self.readers.get().await.map_err(pool_err)
    }

    async fn lease_client(&self) -> Result<Client, StoreError> {
        self.lease.get().await.map_err(pool_err)
    }
}

/// Tells the other servers' listeners (best effort: they also look at the store after every
/// reconnect).
async fn notify(c: &Client, channel: &str) {
    if let Err(e) = c.batch_execute(&format!("NOTIFY {channel}")).await {
        tracing::debug!(error = %e, channel, "NOTIFY failed");
    }
}

/// Says which database an error is about.
fn at(target: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{target}: {m}")),
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{target}: {m}")),
        StoreError::Backend(m) => StoreError::Backend(format!("{target}: {m}")),
        fenced @ StoreError::Fenced { .. } => fenced,
    }
}

/// Parses the URL and adds what every connection needs: durable commits, a name.
fn config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Backend(format!(
            "not a PostgreSQL URL (postgres://USER@HOST/DB): '{url}'"
        )));
    }
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Backend(format!("PostgreSQL URL: {e}")))?;
    // Appended last, so it wins over the URL's own options: a reply only after the commit
    // reached the disk.
    let options = match config.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c synchronous_commit=on"),
        _ => "-c synchronous_commit=on".to_string(),
    };
    config.options(&options);
    if config.get_application_name().is_none() {
        config.application_name("drover");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

fn pool(config: tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .build()
        .map_err(|e| StoreError::Backend(format!("PostgreSQL pool: {e}")))
}

fn describe(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        c.get_user().unwrap_or(""),
        c.get_dbname().unwrap_or("")
    )
}

#[async_trait]
impl Leadership for PgStore {
    async fn elect(&self, member: &Member, lease: Duration) -> Result<Option<Epoch>, StoreError> {
        let mut c = self.lease_client().await?;
        leadership::elect(&mut c, &self.fence, member, lease).await
    }

    async fn renew(&self, epoch: Epoch, lease: Duration) -> Result<bool, StoreError> {
        let mut c = self.lease_client().await?;
        leadership::renew(&mut c, &self.fence, epoch, lease).await
    }

    async fn resign(&self, epoch: Epoch) -> Result<(), StoreError> {
        leadership::resign(&self.lease_client().await?, epoch).await
    }

    async fn heartbeat(&self, member: &Member) -> Result<(), StoreError> {
        leadership::heartbeat(&self.lease_client().await?, &self.registered, member).await
    }

    async fn cluster(&self) -> Result<ClusterView, StoreError> {
        leadership::cluster(&self.read_client().await?).await
    }

    fn notices(&self) -> Option<Notices> {
        Some(
            self.notices
                .get_or_init(|| notices::start(self.config.clone()))
                .clone(),
        )
    }
}

#[async_trait]
impl Store for PgStore {
    async fn load_snapshot(&self) -> Result<Snapshot, StoreError> {
        snapshot::load(&mut self.read_client().await?).await
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new(writes);
        let mut client = self.write_client().await?;
        let sources = batch.copy_sources();
        if !sources.is_empty() {
            batch.fill_copies(&tasks::bodies(&client, &sources).await?)?;
        }
        commit::commit_batch(&mut client, &self.fence, batch).await
    }

    async fn task_defs(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<(TaskId, std::sync::Arc<drover_core::TaskDef>)>, StoreError> {
        tasks::defs(&self.read_client().await?, ids).await
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        tasks::task(&self.read_client().await?, id).await
    }

    async fn attempts(&self, id: TaskId) -> Result<Vec<AttemptRecord>, StoreError> {
        tasks::attempts(&self.read_client().await?, id).await
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
        tasks::list(&self.read_client().await?, query).await
    }

    async fn logs(&self, id: TaskId, attempt: u32) -> Result<Vec<LogChunk>, StoreError> {
        logs::of_attempt(&self.read_client().await?, id, attempt).await
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        events::after(&self.read_client().await?, after, limit).await
    }

    async fn count_by_state(
        &self,
        namespaces: Option<&[String]>,
    ) -> Result<BTreeMap<TaskState, u64>, StoreError> {
        tasks::count_by_state(&self.read_client().await?, namespaces).await
    }

    async fn prune_events(&self, before: Micros) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let mut c = self.write_client().await?;
            let tx = c.transaction().await.map_err(db_err)?;
            self.fence.check(&tx).await?;
            let n = events::prune_batch(&tx, before).await?;
            tx.commit().await.map_err(db_err)?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    async fn last_event_seq(&self) -> Result<u64, StoreError> {
        let max = events::last_seq(&self.read_client().await?).await?;
        Ok(max.map_or(0, |m| m as u64))
    }

    async fn insert_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        webhooks::insert(&self.write_client().await?, webhook).await
    }

    async fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        webhooks::all(&self.read_client().await?).await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let mut c = self.write_client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let existed = webhooks::delete(&tx, id).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(existed)
    }

    async fn record_deliveries(
        &self,
        deliveries: Vec<DeliveryRecord>,
        cursors: Vec<(String, u64)>,
    ) -> Result<(), StoreError> {
        if deliveries.is_empty() && cursors.is_empty() {
            return Ok(());
        }
        let mut c = self.write_client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        webhooks::record_deliveries(&tx, &deliveries, &cursors).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn deliveries(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        webhooks::deliveries(&self.read_client().await?, webhook_id, limit).await
    }

    async fn prune_deliveries(&self, before: Micros) -> Result<u64, StoreError> {
        webhooks::prune_deliveries(&self.write_client().await?, before).await
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
        let mut c = self.write_client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        self.fence.check(&tx).await?;
        let pruned = retention::prune_tasks(&tx, finished_before, limit).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(pruned)
    }

    async fn flow(&self, id: TaskId) -> Result<Option<drover_core::FlowRecord>, StoreError> {
        deps::of_task(&self.read_client().await?, id).await
    }

    async fn queue_configs(&self) -> Result<Vec<drover_core::QueueConfig>, StoreError> {
        queues::all(&self.read_client().await?).await
    }

    async fn workflow(
        &self,
        id: &str,
    ) -> Result<Option<drover_core::dag::WorkflowRecord>, StoreError> {
        workflows::get_one(&self.read_client().await?, id).await
    }

    async fn workflows(
        &self,
        limit: usize,
        namespaces: Option<&[String]>,
    ) -> Result<Vec<drover_core::dag::WorkflowRecord>, StoreError> {
        workflows::newest(&self.read_client().await?, limit, namespaces).await
    }

    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        audit::append(&self.write_client().await?, &records).await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        audit::list(&self.read_client().await?, query).await
    }

    async fn prune_audit(&self, before: Micros) -> Result<u64, StoreError> {
        audit::prune(&self.write_client().await?, before).await
    }

    async fn insert_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        let c = self.write_client().await?;
        let stored = tokens::insert(&c, token).await?;
        notify(&c, notices::TOKENS).await;
        Ok(stored)
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        tokens::all(&self.read_client().await?).await
    }

    async fn delete_token(&self, name: &str) -> Result<bool, StoreError> {
        let c = self.write_client().await?;
        let found = tokens::delete(&c, name).await?;
        notify(&c, notices::TOKENS).await;
        Ok(found)
    }
}
