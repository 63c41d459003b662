//! Webhooks, their cursors, and their delivery log.

use drover_core::Micros;
use rusqlite::{params, Connection, TransactionBehavior};

use super::codec::u64_to_sql;
use super::db_err;
use crate::{DeliveryRecord, StoreError, WebhookRecord};

pub(super) fn insert(c: &Connection, w: &WebhookRecord) -> Result<(), StoreError> {
    let events = serde_json::to_string(&w.events)
        .map_err(|e| StoreError::Backend(format!("encoding webhook events: {e}")))?;
    c.execute(
        "INSERT INTO webhooks (id, url, events, secret, created_at, cursor, namespace) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            w.id,
            w.url,
            events,
            w.secret,
            w.created_at,
            u64_to_sql(w.cursor),
            w.namespace
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn all(c: &Connection) -> Result<Vec<WebhookRecord>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT id, url, events, secret, created_at, cursor, namespace FROM webhooks \
             ORDER BY created_at, id",
        )
        .map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(webhook_from_row(row)?);
    }
    Ok(out)
}

/// Deletes a webhook with its delivery log; whether it existed.
pub(super) fn delete(c: &mut Connection, id: &str) -> Result<bool, StoreError> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let n = tx
        .execute("DELETE FROM webhooks WHERE id = ?1", [id])
        .map_err(db_err)?;
    tx.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?1", [id])
        .map_err(db_err)?;
    tx.commit().map_err(db_err)?;
    Ok(n > 0)
}

/// Appends deliveries and advances cursors (never backwards), in one transaction.
pub(super) fn record_deliveries(
    c: &mut Connection,
    deliveries: &[DeliveryRecord],
    cursors: &[(String, u64)],
) -> Result<(), StoreError> {
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
        for d in deliveries {
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
        for (id, seq) in cursors {
            cursor
                .execute(params![id, u64_to_sql(*seq)])
                .map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)
}

/// The newest `limit` deliveries of a webhook, newest first.
pub(super) fn deliveries(
    c: &Connection,
    id: &str,
    limit: i64,
) -> Result<Vec<DeliveryRecord>, StoreError> {
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
}

pub(super) fn prune_deliveries(c: &Connection, before: Micros) -> Result<u64, StoreError> {
    let n = c
        .execute("DELETE FROM webhook_deliveries WHERE at < ?1", [before])
        .map_err(db_err)?;
    Ok(n as u64)
}

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
        namespace: row.get(6).map_err(db_err)?,
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
