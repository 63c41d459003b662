//! The event stream and webhooks on the wire: the JSON of one event (SSE `data:`, webhook
//! bodies, `drover events -o json`), the stream's filters, webhook event patterns, and the
//! webhook REST types with their validation.

use drover_core::{Event, EventKind, TaskId, TaskState, WorkerEventState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::proto;
use crate::rest::rfc3339;

/// One committed state change. `seq` is strictly increasing and gapless as committed (older
/// events may have been pruned by retention).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub seq: u64,
    /// `task` or `worker`.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339 with microseconds, UTC.
    pub at: String,
    /// `task.<state>` or `worker.<state>`: what webhooks subscribe to.
    pub event: String,
    /// The task's new state, or the worker's (`joined`, `left`).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The task's worker, or the worker itself for worker events.
    #[serde(default)]
    pub worker: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `task` or `worker`.
pub fn event_type(e: &Event) -> &'static str {
    match e.kind {
        EventKind::Task { .. } => "task",
        EventKind::Worker { .. } => "worker",
    }
}

/// The new state an event announces.
pub fn event_state(e: &Event) -> &'static str {
    match &e.kind {
        EventKind::Task { state, .. } => state.as_str(),
        EventKind::Worker { state, .. } => state.as_str(),
    }
}

/// `task.succeeded`, `worker.joined`, ...
pub fn event_name(e: &Event) -> String {
    format!("{}.{}", event_type(e), event_state(e))
}

impl EventView {
    pub fn from_event(e: &Event) -> Self {
        let mut v = EventView {
            seq: e.seq,
            kind: event_type(e).into(),
            at: rfc3339(e.at),
            event: event_name(e),
            state: event_state(e).into(),
            task_id: None,
            queue: None,
            attempt: None,
            worker: None,
            reason: None,
        };
        match &e.kind {
            EventKind::Task {
                task_id,
                queue,
                attempt,
                worker,
                reason,
                ..
            } => {
                v.task_id = Some(task_id.to_string());
                v.queue = Some(queue.clone());
                v.attempt = Some(*attempt);
                v.worker = worker.clone();
                v.reason = reason.clone();
            }
            EventKind::Worker { name, .. } => v.worker = Some(name.clone()),
        }
        v
    }

    /// Whether the state it announces is final for a task.
    pub fn is_terminal_task_event(&self) -> bool {
        self.kind == "task"
            && self
                .state
                .parse::<TaskState>()
                .is_ok_and(TaskState::is_terminal)
    }
}

impl From<&Event> for proto::Event {
    fn from(e: &Event) -> Self {
        let v = EventView::from_event(e);
        proto::Event {
            seq: v.seq,
            r#type: v.kind,
            at: v.at,
            at_us: e.at,
            name: v.event,
            state: v.state,
            task_id: v.task_id.unwrap_or_default(),
            queue: v.queue.unwrap_or_default(),
            attempt: v.attempt.unwrap_or_default(),
            worker: v.worker,
            reason: v.reason,
        }
    }
}

/// Which events a stream delivers. Empty fields match everything; a list matches any of its
/// values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub task: Option<TaskId>,
    pub queue: Option<String>,
    pub states: Vec<String>,
    pub types: Vec<String>,
}

const WORKER_STATES: [WorkerEventState; 2] = [WorkerEventState::Joined, WorkerEventState::Left];

impl EventFilter {
    /// From the raw query values (`state` and `type` may be comma-separated lists). A
    /// `workflow` filter is refused until workflows exist, rather than silently ignored.
    pub fn parse(
        task: Option<&str>,
        queue: Option<&str>,
        state: &[String],
        types: &[String],
        workflow: Option<&str>,
    ) -> Result<EventFilter, ApiError> {
        if workflow.is_some_and(|w| !w.is_empty()) {
            return Err(ApiError::invalid(
                "workflow",
                "filtering events by workflow is not supported by this server yet",
            ));
        }
        let task = task
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<TaskId>()
                    .map_err(|m| ApiError::invalid("task", m))
            })
            .transpose()?;
        let queue = queue.filter(|q| !q.is_empty()).map(str::to_string);
        if queue
            .as_ref()
            .is_some_and(|q| q.len() > crate::limits::MAX_NAME)
        {
            return Err(ApiError::invalid(
                "queue",
                format!("at most {} bytes", crate::limits::MAX_NAME),
            ));
        }
        let states = split_list(state);
        for s in &states {
            let known =
                s.parse::<TaskState>().is_ok() || WORKER_STATES.iter().any(|w| w.as_str() == s);
            if !known {
                let mut names: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
                names.extend(WORKER_STATES.iter().map(|w| w.as_str()));
                return Err(ApiError::invalid(
                    "state",
                    format!("unknown state '{s}' (one of: {})", names.join(", ")),
                ));
            }
        }
        let types = split_list(types);
        for t in &types {
            if t != "task" && t != "worker" {
                return Err(ApiError::invalid(
                    "type",
                    format!("unknown event type '{t}' (one of: task, worker)"),
                ));
            }
        }
        Ok(EventFilter {
            task,
            queue,
            states,
            types,
        })
    }

    pub fn matches(&self, e: &Event) -> bool {
        if !self.types.is_empty() && !self.types.iter().any(|t| t == event_type(e)) {
            return false;
        }
        if !self.states.is_empty() && !self.states.iter().any(|s| s == event_state(e)) {
            return false;
        }
        match &e.kind {
            EventKind::Task { task_id, queue, .. } => {
                self.task.is_none_or(|t| t == *task_id)
                    && self.queue.as_ref().is_none_or(|q| q == queue)
            }
            // Task and queue filters select task events only.
            EventKind::Worker { .. } => self.task.is_none() && self.queue.is_none(),
        }
    }
}

/// `["a,b", "c"]` as `["a", "b", "c"]`, without empty items.
fn split_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether a webhook event pattern is valid: `*`, `task.*`, `worker.*`, `task.<state>` or
/// `worker.<joined|left>`.
pub fn check_event_pattern(p: &str) -> Result<(), String> {
    let ok = match p.split_once('.') {
        None => p == "*",
        Some(("task", s)) => s == "*" || s.parse::<TaskState>().is_ok(),
        Some(("worker", s)) => s == "*" || WORKER_STATES.iter().any(|w| w.as_str() == s),
        Some(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "unknown event pattern '{p}' (use task.<state>, task.*, worker.joined, worker.left, \
             worker.* or *)"
        ))
    }
}

/// Whether `name` (`task.succeeded`) matches a valid `pattern`.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" || pattern == name {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => name.split_once('.').is_some_and(|(kind, _)| kind == prefix),
        None => false,
    }
}

/// Longest webhook URL accepted.
pub const MAX_WEBHOOK_URL: usize = 2048;
/// Bounds of a webhook secret, in bytes.
pub const MIN_SECRET: usize = 8;
pub const MAX_SECRET: usize = 256;
/// Most event patterns on one webhook.
pub const MAX_PATTERNS: usize = 32;

/// `POST /v1/webhooks`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookCreate {
    /// Where events are POSTed: an `http://` or `https://` URL.
    pub url: String,
    /// Event patterns (`task.succeeded`, `task.*`, `worker.*`, `*`); default every event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The HMAC-SHA256 key of the `X-Drover-Signature` header (8 to 256 printable ASCII
    /// characters); the server generates one when absent and shows it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookCreate {
    /// Checks the fields; returns the patterns to store (`*` when none were given). The URL
    /// is checked for shape here; the server also parses it fully.
    pub fn validate(&self) -> Result<Vec<String>, ApiError> {
        let url = self.url.trim();
        if url.is_empty() || url.len() > MAX_WEBHOOK_URL {
            return Err(ApiError::invalid(
                "url",
                format!("1 to {MAX_WEBHOOK_URL} bytes"),
            ));
        }
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(ApiError::invalid(
                "url",
                format!("'{url}' is not an http:// or https:// URL"),
            ));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiError::invalid(
                "url",
                "must not contain spaces or control characters",
            ));
        }
        if let Some(s) = &self.secret {
            if s.len() < MIN_SECRET || s.len() > MAX_SECRET {
                return Err(ApiError::invalid(
                    "secret",
                    format!("{MIN_SECRET} to {MAX_SECRET} characters"),
                ));
            }
            if !s.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ApiError::invalid(
                    "secret",
                    "printable ASCII without spaces only",
                ));
            }
        }
        if self.events.len() > MAX_PATTERNS {
            return Err(ApiError::invalid(
                "events",
                format!("at most {MAX_PATTERNS} patterns"),
            ));
        }
        let mut patterns = Vec::new();
        for p in split_list(&self.events) {
            check_event_pattern(&p).map_err(|m| ApiError::invalid("events", m))?;
            if !patterns.contains(&p) {
                patterns.push(p);
            }
        }
        if patterns.is_empty() {
            patterns.push("*".into());
        }
        Ok(patterns)
    }
}

/// A webhook as the API shows it. The secret appears only in the answer to its creation.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: String,
    /// Events up to this sequence number have been delivered (or given up on).
    pub delivered_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// One delivery attempt of one event to one webhook.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    pub webhook_id: String,
    pub seq: u64,
    /// `task.succeeded`, ...
    pub event: String,
    /// 1 for the first try.
    pub attempt: u32,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why the attempt failed (timeout, connection refused, non-2xx status).
    pub error: Option<String>,
    /// A 2xx answer.
    pub ok: bool,
    /// No more attempts follow (it succeeded, or this was the last try).
    pub last: bool,
    pub at: String,
    pub duration_ms: u64,
}

/// Newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_event(state: TaskState) -> Event {
        Event {
            seq: 7,
            at: 1_790_000_000_000_000,
            kind: EventKind::Task {
                task_id: TaskId(5),
                queue: "q".into(),
                state,
                attempt: 1,
                worker: Some("w".into()),
                reason: None,
            },
        }
    }

    fn worker_event() -> Event {
        Event {
            seq: 8,
            at: 1,
            kind: EventKind::Worker {
                name: "w".into(),
                state: WorkerEventState::Left,
            },
        }
    }

    #[test]
    fn views_carry_the_contract_fields() {
        let v =
            serde_json::to_value(EventView::from_event(&task_event(TaskState::Running))).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["type"], "task");
        assert_eq!(v["state"], "running");
        assert_eq!(v["event"], "task.running");
        assert_eq!(v["queue"], "q");
        assert_eq!(v["attempt"], 1);
        assert!(v["reason"].is_null());
        assert!(v["at"].as_str().unwrap().ends_with('Z'));
        let w = serde_json::to_value(EventView::from_event(&worker_event())).unwrap();
        assert_eq!(w["type"], "worker");
        assert_eq!(w["worker"], "w");
        assert_eq!(w["state"], "left");
        assert!(w.get("task_id").is_none());
    }

    #[test]
    fn filters() {
        let none: &[String] = &[];
        let f =
            EventFilter::parse(None, Some("q"), &["succeeded,failed".into()], none, None).unwrap();
        assert!(!f.matches(&task_event(TaskState::Running)));
        assert!(f.matches(&task_event(TaskState::Failed)));
        assert!(!f.matches(&worker_event()));
        let f = EventFilter::parse(None, None, none, &["worker".into()], None).unwrap();
        assert!(f.matches(&worker_event()));
        assert!(!f.matches(&task_event(TaskState::Failed)));
        assert!(EventFilter::parse(None, None, &["nope".into()], none, None).is_err());
        assert!(EventFilter::parse(None, None, none, &["job".into()], None).is_err());
        assert!(EventFilter::parse(Some("x"), None, none, none, None).is_err());
        let e = EventFilter::parse(None, None, none, none, Some("wf")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("workflow"));
    }

    #[test]
    fn patterns() {
        for p in ["*", "task.*", "task.succeeded", "worker.*", "worker.left"] {
            assert!(check_event_pattern(p).is_ok(), "{p}");
        }
        for p in ["task", "task.done", "job.*", "worker.suspect", ""] {
            assert!(check_event_pattern(p).is_err(), "{p}");
        }
        assert!(pattern_matches("task.*", "task.failed"));
        assert!(!pattern_matches("task.*", "worker.left"));
        assert!(pattern_matches("*", "worker.left"));
        assert!(pattern_matches("task.failed", "task.failed"));
        assert!(!pattern_matches("task.failed", "task.succeeded"));
    }

    #[test]
    fn webhook_validation() {
        let ok = WebhookCreate {
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["task.succeeded,task.failed".into()],
            secret: Some("s3cret-value".into()),
        };
        assert_eq!(ok.validate().unwrap(), ["task.succeeded", "task.failed"]);
        let mut bad = ok.clone();
        bad.url = "ftp://x".into();
        assert_eq!(bad.validate().unwrap_err().field.as_deref(), Some("url"));
        let mut bad = ok.clone();
        bad.secret = Some("short".into());
        assert_eq!(bad.validate().unwrap_err().field.as_deref(), Some("secret"));
        let mut bad = ok.clone();
        bad.events = vec!["task.done".into()];
        assert_eq!(bad.validate().unwrap_err().field.as_deref(), Some("events"));
        let mut all = ok;
        all.events.clear();
        assert_eq!(all.validate().unwrap(), ["*"]);
    }
}
