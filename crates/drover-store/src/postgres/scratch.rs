//! Throwaway schemas, for tests and benchmarks: each gets a schema of its own in a shared
//! database, and a store URL that points its connections there.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_postgres::NoTls;

use super::db_err;
use crate::StoreError;

/// A schema made for one test or run, dropped (with everything in it) by `drop_schema`, or
/// when this is dropped.
#[derive(Debug)]
pub struct TempSchema {
    base: String,
    name: String,
    url: String,
    dropped: bool,
}

impl TempSchema {
    /// Creates a schema with a fresh name in the database at `base_url`, whose URL must not
    /// set `options` of its own.
    pub async fn create(base_url: &str) -> Result<TempSchema, StoreError> {
        if base_url.contains("options=") {
            return Err(StoreError::Backend(format!(
                "{base_url}: a base URL for scratch schemas must not set options"
            )));
        }
        let name = fresh_name();
        execute(base_url, &format!("CREATE SCHEMA {name}")).await?;
        let sep = if base_url.contains('?') { '&' } else { '?' };
        Ok(TempSchema {
            url: format!("{base_url}{sep}options=-csearch_path%3D{name}"),
            base: base_url.to_string(),
            name,
            dropped: false,
        })
    }

    /// The store URL: the base URL with this schema as the search path.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// This schema's URL, its connections named `application`, so that a test can end them
    /// all with `terminate_connections`.
    pub fn url_named(&self, application: &str) -> String {
        format!("{}&application_name={application}", self.url)
    }

    /// Ends every connection named `application` (`pg_terminate_backend`), as a database
    /// restart would; how many it ended.
    pub async fn terminate_connections(&self, application: &str) -> Result<u64, StoreError> {
        let (client, conn) = tokio_postgres::connect(&self.base, NoTls)
            .await
            .map_err(db_err)?;
        let conn = tokio::spawn(conn);
        let r = client
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = $1",
                &[&application],
            )
            .await
            .map_err(db_err)
            .map(|row| row.get::<_, i64>(0) as u64);
        drop(client);
        let _ = conn.await;
        r
    }

    /// Drops the schema and everything in it (close the stores on it first).
    pub async fn drop_schema(mut self) -> Result<(), StoreError> {
        self.dropped = true;
        execute(&self.base, &drop_sql(&self.name)).await
    }
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Not inside the caller's runtime, which may be the one blocked here: a thread with
        // its own. A lock timeout bounds the wait on a connection not yet closed.
        let (base, sql) = (self.base.clone(), drop_sql(&self.name));
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(execute(&base, &sql)).ok()
        })
        .join();
        if !matches!(done, Ok(Some(()))) {
            eprintln!("could not drop the scratch schema {}", self.name);
        }
    }
}

fn drop_sql(name: &str) -> String {
    format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE")
}

/// `drover_scratch_` and 16 hex digits: unique in this process, unlikely to meet another's.
fn fresh_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("drover_scratch_{:016x}", h.finish())
}

/// Runs `sql` on a connection of its own.
async fn execute(url: &str, sql: &str) -> Result<(), StoreError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(db_err)?;
    let conn = tokio::spawn(conn);
    let r = client.batch_execute(sql).await.map_err(db_err);
    drop(client);
    let _ = conn.await;
    r
}
