//! Webhooks, their cursors, and their delivery log.

use std::collections::BTreeMap;

use deadpool_postgres::{GenericClient, Transaction};
use drover_core::Micros;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::codec::{corrupt, get, text, u64_to_sql};
use super::db_err;
use crate::{DeliveryRecord, StoreError, WebhookRecord};

const INSERT_DELIVERIES: &str = "INSERT INTO webhook_deliveries (webhook_id, seq, event, \
    attempt, status, error, ok, last, at, duration_ms) \
    SELECT webhook_id, seq, event, attempt, status, error, ok, last, at, duration_ms \
    FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], \
    $7::boolean[], $8::boolean[], $9::bigint[], $10::bigint[]) WITH ORDINALITY \
    AS d(webhook_id, seq, event, attempt, status, error, ok, last, at, duration_ms, ord) \
    ORDER BY ord";

/// Moves cursors forward, never back; unknown ids change nothing.
const ADVANCE_CURSORS: &str = "UPDATE webhooks w SET cursor = GREATEST(w.cursor, c.seq) \
    FROM UNNEST($1::text[], $2::bigint[]) AS c(id, seq) WHERE w.id = c.id";

pub(super) async fn insert(c: &impl GenericClient, w: &WebhookRecord) -> Result<(), StoreError> {
    let events = serde_json::to_string(&w.events)
        .map_err(|e| StoreError::Backend(format!("encoding webhook events: {e}")))?;
    c.execute(
        "INSERT INTO webhooks (id, url, events, secret, created_at, cursor, namespace) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &w.id,
            &w.url,
            &events,
            &w.secret,
            &w.created_at,
            &u64_to_sql(w.cursor),
            &w.namespace,
        ],
    )
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(super) async fn all(c: &impl GenericClient) -> Result<Vec<WebhookRecord>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT id, url, events, secret, created_at, cursor, namespace FROM webhooks \
             ORDER BY created_at, id",
        )
        .await
        .map_err(db_err)?;
    let rows = c.query(&st, &[]).await.map_err(db_err)?;
    rows.iter().map(webhook_from_row).collect()
}

/// Deletes a webhook with its delivery log; whether it existed.
pub(super) async fn delete(tx: &Transaction<'_>, id: &str) -> Result<bool, StoreError> {
    let n = tx
        .execute("DELETE FROM webhooks WHERE id = $1", &[&id])
        .await
        .map_err(db_err)?;
    tx.execute(
        "DELETE FROM webhook_deliveries WHERE webhook_id = $1",
        &[&id],
    )
    .await
    .map_err(db_err)?;
    Ok(n > 0)
}

/// Appends deliveries and advances cursors (never backwards): two statements.
pub(super) async fn record_deliveries(
    tx: &Transaction<'_>,
    deliveries: &[DeliveryRecord],
    cursors: &[(String, u64)],
) -> Result<(), StoreError> {
    if !deliveries.is_empty() {
        let d = deliveries;
        let id: Vec<&str> = d.iter().map(|d| d.webhook_id.as_str()).collect();
        let seq: Vec<i64> = d.iter().map(|d| u64_to_sql(d.seq)).collect();
        let event: Vec<&str> = d.iter().map(|d| d.event.as_str()).collect();
        let attempt: Vec<i64> = d.iter().map(|d| i64::from(d.attempt)).collect();
        let status: Vec<Option<i64>> = d.iter().map(|d| d.status.map(i64::from)).collect();
        let error: Vec<Option<String>> = d.iter().map(|d| text(d.error.as_deref())).collect();
        let ok: Vec<bool> = d.iter().map(|d| d.ok).collect();
        let last: Vec<bool> = d.iter().map(|d| d.last).collect();
        let at: Vec<i64> = d.iter().map(|d| d.at).collect();
        let took: Vec<i64> = d.iter().map(|d| u64_to_sql(d.duration_ms)).collect();
        let p: [&(dyn ToSql + Sync); 10] = [
            &id, &seq, &event, &attempt, &status, &error, &ok, &last, &at, &took,
        ];
        let st = tx.prepare_cached(INSERT_DELIVERIES).await.map_err(db_err)?;
        tx.execute(&st, &p).await.map_err(db_err)?;
    }
    if !cursors.is_empty() {
        // The furthest cursor per webhook: an UPDATE touches each row once.
        let mut furthest: BTreeMap<&str, i64> = BTreeMap::new();
        for (id, seq) in cursors {
            let c = furthest.entry(id.as_str()).or_insert(i64::MIN);
            *c = (*c).max(u64_to_sql(*seq));
        }
        let (ids, seqs): (Vec<&str>, Vec<i64>) = furthest.into_iter().unzip();
        let st = tx.prepare_cached(ADVANCE_CURSORS).await.map_err(db_err)?;
        tx.execute(&st, &[&ids, &seqs]).await.map_err(db_err)?;
    }
    Ok(())
}

/// The newest `limit` deliveries of a webhook, newest first.
pub(super) async fn deliveries(
    c: &impl GenericClient,
    id: &str,
    limit: i64,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT webhook_id, seq, event, attempt, error, status, ok, last, at, id, \
             duration_ms FROM webhook_deliveries WHERE webhook_id = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .await
        .map_err(db_err)?;
    let rows = c.query(&st, &[&id, &limit]).await.map_err(db_err)?;
    rows.iter().map(delivery_from_row).collect()
}

pub(super) async fn prune_deliveries(
    c: &impl GenericClient,
    before: Micros,
) -> Result<u64, StoreError> {
    c.execute("DELETE FROM webhook_deliveries WHERE at < $1", &[&before])
        .await
        .map_err(db_err)
}

fn webhook_from_row(row: &Row) -> Result<WebhookRecord, StoreError> {
    let events: &str = get(row, 2)?;
    let events: Vec<String> = serde_json::from_str(events)
        .map_err(|e| StoreError::Corrupt(format!("webhook events '{events}': {e}")))?;
    Ok(WebhookRecord {
        id: get(row, 0)?,
        url: get(row, 1)?,
        events,
        secret: get(row, 3)?,
        created_at: get(row, 4)?,
        cursor: get::<i64>(row, 5)? as u64,
        namespace: get(row, 6)?,
    })
}

/// Reads `webhook_id, seq, event, attempt, error, status, ok, last, at, id, duration_ms`.
fn delivery_from_row(row: &Row) -> Result<DeliveryRecord, StoreError> {
    let status: Option<i64> = get(row, 5)?;
    let attempt: i64 = get(row, 3)?;
    Ok(DeliveryRecord {
        webhook_id: get(row, 0)?,
        seq: get::<i64>(row, 1)? as u64,
        event: get(row, 2)?,
        attempt: u32::try_from(attempt)
            .map_err(|_| corrupt(format!("delivery attempt {attempt}")))?,
        status: status
            .map(|s| u16::try_from(s).map_err(|_| corrupt(format!("HTTP status {s}"))))
            .transpose()?,
        error: get(row, 4)?,
        ok: get(row, 6)?,
        last: get(row, 7)?,
        at: get(row, 8)?,
        duration_ms: get::<i64>(row, 10)?.max(0) as u64,
    })
}
