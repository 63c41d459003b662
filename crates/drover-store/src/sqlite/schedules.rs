//! Schedules (table `schedules`, schema 0004): each one's spec and progress as a JSON document.

use drover_core::schedule::{Misfire, Overlap, ScheduleRecord, ScheduleSpec, Trigger};
use drover_core::{Scoped, TaskDef, TaskId, DEFAULT_NAMESPACE};
use rusqlite::{params, Connection, Transaction};
use serde_json::{json, Value};

use super::codec::{
    corrupt, key_limit, placement_from_json, placement_to_json, spec_from_json, spec_to_json,
};
use super::db_err;
use crate::StoreError;

pub(crate) fn schedule_to_json(r: &ScheduleRecord) -> String {
    let s = &r.spec;
    let trigger = match &s.trigger {
        Trigger::Cron { expr, tz } => json!({"type": "cron", "expr": expr, "tz": tz}),
        Trigger::Every { every_ms, anchor } => {
            json!({"type": "every", "every_ms": every_ms, "anchor": anchor})
        }
        Trigger::DelayAfterPrevious { delay_ms } => {
            json!({"type": "delay", "delay_ms": delay_ms})
        }
    };
    let d = &s.template;
    json!({
        "trigger": trigger,
        "overlap": s.overlap.as_str(),
        "misfire": s.misfire.as_str(),
        "max_catch_up": s.max_catch_up,
        "template": {
            "namespace": d.namespace,
            "queue": d.queue,
            "kind": d.kind,
            "priority": d.priority,
            "spec": spec_to_json(&d.spec),
            "max_attempts": d.max_attempts,
            "backoff_ms": d.backoff_ms,
            "timeout_ms": d.timeout_ms,
            "idempotency_key": d.idempotency_key,
            "placement": placement_to_json(&d.placement),
            "concurrency_key": d.concurrency.as_ref().map(|c| c.key.as_str()),
            "max_concurrent": d.concurrency.as_ref().map(|c| c.max),
        },
        "paused": r.paused,
        "created_at": r.created_at,
        "last_slot": r.last_slot,
        "last_task": r.last_task.map(|t| t.to_string()),
        "next_at": r.next_at,
    })
    .to_string()
}

pub(crate) fn schedule_from_json(name: String, doc: &str) -> Result<ScheduleRecord, StoreError> {
    let v: Value = serde_json::from_str(doc).map_err(corrupt)?;
    let label = name.clone();
    let bad = |what: &str| corrupt(format!("schedule {label}: bad {what}"));
    let i64_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64);
    let u64_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let t = v.get("trigger").ok_or_else(|| bad("trigger"))?;
    let trigger = match str_of(t, "type").as_deref() {
        Some("cron") => Trigger::Cron {
            expr: str_of(t, "expr").ok_or_else(|| bad("expr"))?,
            tz: str_of(t, "tz").ok_or_else(|| bad("tz"))?,
        },
        Some("every") => Trigger::Every {
            every_ms: i64_of(t, "every_ms").ok_or_else(|| bad("every_ms"))? as u64,
            anchor: i64_of(t, "anchor").ok_or_else(|| bad("anchor"))?,
        },
        Some("delay") => Trigger::DelayAfterPrevious {
            delay_ms: i64_of(t, "delay_ms").ok_or_else(|| bad("delay_ms"))? as u64,
        },
        _ => return Err(bad("trigger type")),
    };
    let d = v.get("template").ok_or_else(|| bad("template"))?;
    let template = TaskDef {
        namespace: str_of(d, "namespace").unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
        queue: str_of(d, "queue").ok_or_else(|| bad("queue"))?,
        kind: str_of(d, "kind").ok_or_else(|| bad("kind"))?,
        priority: i64_of(d, "priority").ok_or_else(|| bad("priority"))? as i32,
        spec: spec_from_json(&str_of(d, "spec").ok_or_else(|| bad("spec"))?)?,
        max_attempts: i64_of(d, "max_attempts").ok_or_else(|| bad("max_attempts"))? as u32,
        backoff_ms: u64_of(d, "backoff_ms").ok_or_else(|| bad("backoff_ms"))?,
        timeout_ms: u64_of(d, "timeout_ms"),
        idempotency_key: str_of(d, "idempotency_key"),
        placement: placement_from_json(&str_of(d, "placement").ok_or_else(|| bad("placement"))?)?,
        concurrency: key_limit(str_of(d, "concurrency_key"), i64_of(d, "max_concurrent"))?,
    };
    Ok(ScheduleRecord {
        spec: ScheduleSpec {
            name,
            trigger,
            overlap: str_of(&v, "overlap")
                .unwrap_or_default()
                .parse::<Overlap>()
                .map_err(corrupt)?,
            misfire: str_of(&v, "misfire")
                .unwrap_or_default()
                .parse::<Misfire>()
                .map_err(corrupt)?,
            max_catch_up: i64_of(&v, "max_catch_up").unwrap_or(1) as u32,
            template: std::sync::Arc::new(template),
        },
        paused: v.get("paused").and_then(Value::as_bool).unwrap_or(false),
        created_at: i64_of(&v, "created_at").ok_or_else(|| bad("created_at"))?,
        last_slot: i64_of(&v, "last_slot"),
        last_task: str_of(&v, "last_task")
            .map(|s| s.parse::<TaskId>().map_err(corrupt))
            .transpose()?,
        next_at: i64_of(&v, "next_at"),
    })
}

/// Applies schedule upserts (`Some`) and deletions (`None`), in order.
pub(super) fn write(
    tx: &Transaction<'_>,
    schedules: &[(Scoped, Option<ScheduleRecord>)],
) -> Result<(), StoreError> {
    for (key, rec) in schedules {
        match rec {
            Some(r) => tx
                .execute(
                    "INSERT OR REPLACE INTO schedules (namespace, name, doc) VALUES (?, ?, ?)",
                    params![key.namespace, key.name, schedule_to_json(r)],
                )
                .map_err(db_err)?,
            None => tx
                .execute(
                    "DELETE FROM schedules WHERE namespace = ? AND name = ?",
                    [&key.namespace, &key.name],
                )
                .map_err(db_err)?,
        };
    }
    Ok(())
}

/// Every schedule, by namespace and name.
pub(super) fn all(conn: &Connection) -> Result<Vec<ScheduleRecord>, StoreError> {
    let mut st = conn
        .prepare_cached("SELECT name, doc FROM schedules ORDER BY namespace, name")
        .map_err(db_err)?;
    let mut rows = st.query([]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        let name: String = r.get(0).map_err(db_err)?;
        let doc: String = r.get(1).map_err(db_err)?;
        out.push(schedule_from_json(name, &doc)?);
    }
    Ok(out)
}
