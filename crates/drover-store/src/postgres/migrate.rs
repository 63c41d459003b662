//! Versioned migrations: `migrations/NNNN_*.sql`, applied in order at open. The versions
//! applied are the rows of `schema_migrations`. The whole run is one transaction holding a
//! transaction-level advisory lock, so of several servers starting at once on the same
//! schema one migrates and the others, once it committed, find nothing left to do.

use deadpool_postgres::Client;

use super::codec::get;
use super::db_err;
use crate::StoreError;

/// The schema, one script per version (version = position + 1).
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_namespaces.sql"),
    include_str!("migrations/0003_concurrency_keys.sql"),
    include_str!("migrations/0004_queue_rates.sql"),
    include_str!("migrations/0005_leadership.sql"),
    include_str!("migrations/0006_queue_max_queued.sql"),
    include_str!("migrations/0007_task_results.sql"),
];

/// The advisory lock's first key ("drov"); the second is a hash of the schema, so servers
/// on different schemas of one database do not wait for each other.
const LOCK_CLASS: i32 = 0x6472_6f76;

pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db_err)?;
    let schema: Option<String> = get(
        &tx.query_one("SELECT current_schema()", &[])
            .await
            .map_err(db_err)?,
        0,
    )?;
    let Some(schema) = schema else {
        return Err(StoreError::Backend(
            "no schema to create the tables in: the search_path names none that exists \
             (create it first: CREATE SCHEMA name)"
                .into(),
        ));
    };
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS, &schema],
    )
    .await
    .map_err(db_err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
        .await
        .map_err(db_err)?;
    let applied: i64 = get(
        &tx.query_one(
            "SELECT coalesce(max(version), 0)::bigint FROM schema_migrations",
            &[],
        )
        .await
        .map_err(db_err)?,
        0,
    )?;
    let known = MIGRATIONS.len();
    let applied = usize::try_from(applied)
        .map_err(|_| StoreError::Corrupt(format!("schema version {applied}")))?;
    if applied > known {
        return Err(StoreError::Backend(format!(
            "the database has schema version {applied} but this build knows only up to \
             {known}: it was written by a newer drover"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = (i + 1) as i64;
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Backend(format!("migration {version}: {}", db_err(e))))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)
}
