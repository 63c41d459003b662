//! The event stream and webhooks on the wire: the JSON of one event (SSE `data:`, webhook
//! bodies, `drover events -o json`), the stream's filters, webhook event patterns, and the
//! webhook REST types with their validation.
//!
//! Four types of event, each named `<type>.<state>` (what webhooks subscribe to):
//!
//! | type | `state` | carries |
//! |---|---|---|
//! | `task` | the task's new state (`queued`, `running`, `succeeded`, ...) | `task_id`, `queue`, `attempt`, `worker`, `reason`, `workflow` (a workflow node's), `result_bytes` (a handler's result's size) |
//! | `worker` | `joined`, `suspect`, `lost`, `alive`, `draining`, `resumed`, `left` | `worker` |
//! | `workflow` | the workflow's aggregate state (`pending`, `running`, `succeeded`, `failed`, `cancelled`) | `workflow` |
//! | `schedule` | what happened to it (`created`, `updated`, `paused`, `resumed`, `deleted`, `fired`, `skipped`) | `schedule`, `task_id` (the task a fire created), `reason` |

use drover_core::{
    Event, EventKind, ScheduleChange, TaskId, TaskState, WorkerEventState, WorkflowState,
};
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
    /// `task`, `worker`, `workflow` or `schedule`.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339 with microseconds, UTC.
    pub at: String,
    /// `<type>.<state>` (`task.succeeded`, `worker.suspect`, `workflow.failed`,
    /// `schedule.fired`): what webhooks subscribe to.
    pub event: String,
    /// The namespace of the task, workflow or schedule; absent for worker events (the
    /// cluster's, seen only by tokens of every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The task's new state, the worker's (`joined`, `suspect`, `lost`, `alive`, `draining`,
    /// `resumed`, `left`), the workflow's, or what happened to the schedule (`created`,
    /// `updated`, `paused`, `resumed`, `deleted`, `fired`, `skipped`).
    pub state: String,
    /// The task of a task event, or the task a schedule's `fired` event created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The task's worker, or the worker itself for worker events.
    #[serde(default)]
    pub worker: Option<String>,
    /// Why: a task's error or skip cause, a schedule's skipped slot.
    #[serde(default)]
    pub reason: Option<String>,
    /// The workflow id: of a workflow event, or of the workflow a task event's task is a
    /// node of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The schedule's name, for schedule events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The size in bytes of a handler task's result, on its `succeeded` event (events carry
    /// the size, never the result: read it with `GET /v1/tasks/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1048576)]
    pub result_bytes: Option<u64>,
}

/// One Server-Sent Event of `GET /v1/events`, as `/openapi.json` describes the stream.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SseFrame {
    /// The event's `seq` (what a reconnect sends back as `Last-Event-ID`).
    pub id: String,
    /// The event's type.
    pub event: String,
    /// The event, as JSON.
    pub data: String,
}

/// The event types, as `type` and the first part of `event` name them.
pub const EVENT_TYPES: [&str; 4] = ["task", "worker", "workflow", "schedule"];

/// Every state (or schedule change) some event announces, each once.
pub fn state_names() -> impl Iterator<Item = &'static str> {
    let mut names: Vec<&'static str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
    names.extend(WorkerEventState::ALL.iter().map(|s| s.as_str()));
    names.extend(WorkflowState::ALL.iter().map(|s| s.as_str()));
    names.extend(ScheduleChange::ALL.iter().map(|s| s.as_str()));
    let mut seen = std::collections::HashSet::new();
    names.into_iter().filter(move |n| seen.insert(*n))
}

/// Every event pattern a webhook may subscribe to: `*`, `TYPE.*`, `TYPE.STATE`.
pub fn event_patterns() -> Vec<String> {
    let mut out = vec!["*".to_string()];
    for ty in EVENT_TYPES {
        out.push(format!("{ty}.*"));
        out.extend(
            state_names()
                .filter(|s| is_state_of(ty, s))
                .map(|s| format!("{ty}.{s}")),
        );
    }
    out
}

/// `task`, `worker`, `workflow` or `schedule`.
pub fn event_type(e: &Event) -> &'static str {
    match e.kind {
        EventKind::Task { .. } => "task",
        EventKind::Worker { .. } => "worker",
        EventKind::Workflow { .. } => "workflow",
        EventKind::Schedule { .. } => "schedule",
    }
}

/// The new state an event announces (for a schedule: what happened to it).
pub fn event_state(e: &Event) -> &'static str {
    match &e.kind {
        EventKind::Task { state, .. } => state.as_str(),
        EventKind::Worker { state, .. } => state.as_str(),
        EventKind::Workflow { state, .. } => state.as_str(),
        EventKind::Schedule { change, .. } => change.as_str(),
    }
}

/// `task.succeeded`, `worker.joined`, `workflow.failed`, `schedule.fired`, ...
pub fn event_name(e: &Event) -> String {
    format!("{}.{}", event_type(e), event_state(e))
}

/// Whether `state` is a state (or schedule change) that events of type `ty` announce.
fn is_state_of(ty: &str, state: &str) -> bool {
    match ty {
        "task" => state.parse::<TaskState>().is_ok(),
        "worker" => state.parse::<WorkerEventState>().is_ok(),
        "workflow" => state.parse::<WorkflowState>().is_ok(),
        "schedule" => state.parse::<ScheduleChange>().is_ok(),
        _ => false,
    }
}

fn names_of<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> String {
    all.iter().map(|s| name(*s)).collect::<Vec<_>>().join(", ")
}

impl EventView {
    pub fn from_event(e: &Event) -> Self {
        let mut v = EventView {
            seq: e.seq,
            kind: event_type(e).into(),
            at: rfc3339(e.at),
            event: event_name(e),
            namespace: e.namespace().map(str::to_string),
            state: event_state(e).into(),
            task_id: None,
            queue: None,
            attempt: None,
            worker: None,
            reason: None,
            workflow: None,
            schedule: None,
            result_bytes: None,
        };
        match &e.kind {
            EventKind::Task {
                task_id,
                queue,
                attempt,
                worker,
                reason,
                workflow,
                result_bytes,
                ..
            } => {
                v.result_bytes = *result_bytes;
                v.task_id = Some(task_id.to_string());
                v.queue = Some(queue.clone());
                v.attempt = Some(*attempt);
                v.worker = worker.clone();
                v.reason = reason.clone();
                v.workflow = workflow.clone();
            }
            EventKind::Worker { name, .. } => v.worker = Some(name.clone()),
            EventKind::Workflow { workflow_id, .. } => v.workflow = Some(workflow_id.clone()),
            EventKind::Schedule {
                name,
                task_id,
                reason,
                ..
            } => {
                v.schedule = Some(name.clone());
                v.task_id = task_id.map(|t| t.to_string());
                v.reason = reason.clone();
            }
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

    /// Whether the state it announces is final for a workflow.
    pub fn is_terminal_workflow_event(&self) -> bool {
        self.kind == "workflow"
            && self
                .state
                .parse::<WorkflowState>()
                .is_ok_and(WorkflowState::is_terminal)
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
            workflow: v.workflow,
            schedule: v.schedule,
            namespace: v.namespace,
            result_bytes: v.result_bytes,
        }
    }
}

/// Which events a stream delivers. Empty fields match everything; a list matches any of its
/// values; the fields that are set must all match.
///
/// - `task` and `queue` select task events only. A schedule's `fired` event names the task
///   it created in `task_id`, but it is the schedule's event, not one of the task's own
///   (those start with its `pending`/`queued` event), so `?task=` does not deliver it:
///   `submit --wait` and `logs -f` see exactly the task's transitions. Follow
///   `type=schedule` to see fires.
/// - `workflow` selects the workflow's own events and the task events of its nodes.
/// - `types` and `states`: an event matches when its type is listed and its state is listed
///   (a state name shared by several types, like `succeeded` or `resumed`, matches each).
///   A state that none of the listed types announces (`type=task&state=fired`) matches
///   nothing: each value is checked on its own, as `/openapi.json` states them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// The namespaces whose events pass (`None`: every namespace's and the cluster's): the
    /// caller's scope, narrowed by a `namespace` parameter. Set by the server.
    pub namespaces: Option<Vec<String>>,
    pub task: Option<TaskId>,
    pub queue: Option<String>,
    pub workflow: Option<String>,
    pub states: Vec<String>,
    pub types: Vec<String>,
}

impl EventFilter {
    /// From the raw query values (`state` and `type` may be comma-separated lists).
    pub fn parse(
        task: Option<&str>,
        queue: Option<&str>,
        state: &[String],
        types: &[String],
        workflow: Option<&str>,
    ) -> Result<EventFilter, ApiError> {
        let task = task
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<TaskId>()
                    .map_err(|m| ApiError::invalid("task", m))
            })
            .transpose()?;
        let name = |field: &str, v: Option<&str>| -> Result<Option<String>, ApiError> {
            if v.is_some_and(|v| v.chars().count() > crate::limits::MAX_NAME) {
                return Err(ApiError::invalid(
                    field,
                    format!("at most {} characters", crate::limits::MAX_NAME),
                ));
            }
            Ok(v.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string))
        };
        let queue = name("queue", queue)?;
        let workflow = name("workflow", workflow)?;
        let types = split_list(types);
        for t in &types {
            if !EVENT_TYPES.contains(&t.as_str()) {
                return Err(ApiError::invalid(
                    "type",
                    format!(
                        "unknown event type '{t}' (one of: {})",
                        EVENT_TYPES.join(", ")
                    ),
                ));
            }
        }
        let states = split_list(state);
        for s in &states {
            if !EVENT_TYPES.iter().any(|ty| is_state_of(ty, s)) {
                return Err(ApiError::invalid(
                    "state",
                    format!(
                        "unknown state '{s}' (task: {}; worker: {}; workflow: {}; schedule: {})",
                        names_of(&TaskState::ALL, TaskState::as_str),
                        names_of(WorkerEventState::ALL, WorkerEventState::as_str),
                        names_of(WorkflowState::ALL, WorkflowState::as_str),
                        names_of(ScheduleChange::ALL, ScheduleChange::as_str),
                    ),
                ));
            }
        }
        // A state no listed type can announce would silently match nothing.
        Ok(EventFilter {
            namespaces: None,
            task,
            queue,
            workflow,
            states,
            types,
        })
    }

    pub fn matches(&self, e: &Event) -> bool {
        if let Some(list) = &self.namespaces {
            if !e.namespace().is_some_and(|ns| list.iter().any(|n| n == ns)) {
                return false;
            }
        }
        if !self.types.is_empty() && !self.types.iter().any(|t| t == event_type(e)) {
            return false;
        }
        if !self.states.is_empty() && !self.states.iter().any(|s| s == event_state(e)) {
            return false;
        }
        let wf_ok = |wf: Option<&String>| self.workflow.as_ref().is_none_or(|w| Some(w) == wf);
        match &e.kind {
            EventKind::Task {
                task_id,
                queue,
                workflow,
                ..
            } => {
                self.task.is_none_or(|t| t == *task_id)
                    && self.queue.as_ref().is_none_or(|q| q == queue)
                    && wf_ok(workflow.as_ref())
            }
            EventKind::Workflow { workflow_id, .. } => {
                self.task.is_none() && self.queue.is_none() && wf_ok(Some(workflow_id))
            }
            // Task, queue and workflow filters select task (and workflow) events only.
            EventKind::Worker { .. } | EventKind::Schedule { .. } => {
                self.task.is_none() && self.queue.is_none() && self.workflow.is_none()
            }
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

/// Whether a webhook event pattern is valid: `*`, `<type>.*` or `<type>.<state>`, where the
/// type is `task`, `worker`, `workflow` or `schedule` and the state one that type announces
/// (`task.failed`, `worker.lost`, `workflow.succeeded`, `schedule.fired`).
pub fn check_event_pattern(p: &str) -> Result<(), String> {
    let ok = match p.split_once('.') {
        None => p == "*",
        Some((ty, s)) => EVENT_TYPES.contains(&ty) && (s == "*" || is_state_of(ty, s)),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "unknown event pattern '{p}' (use *, or TYPE.* or TYPE.STATE with: task.<{}>; \
             worker.<{}>; workflow.<{}>; schedule.<{}>)",
            names_of(&TaskState::ALL, TaskState::as_str).replace(", ", "|"),
            names_of(WorkerEventState::ALL, WorkerEventState::as_str).replace(", ", "|"),
            names_of(WorkflowState::ALL, WorkflowState::as_str).replace(", ", "|"),
            names_of(ScheduleChange::ALL, ScheduleChange::as_str).replace(", ", "|"),
        ))
    }
}

/// Whether `name` (`task.succeeded`, `schedule.fired`) matches a valid `pattern`.
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
    /// Where events are POSTed: an `http://` or `https://` URL naming its host (letters,
    /// digits and hyphens; the last label starts with a letter) or a public IP address; no
    /// credentials, no fragment.
    pub url: String,
    /// Whose events it receives: one namespace (default `default`), or `*` for every
    /// namespace's and the cluster's (worker events; only with a token of every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        max_length = 63,
        pattern = "^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?|\\*)$"
    )]
    pub namespace: Option<String>,
    /// Event patterns, default every event: `*`, `<type>.*` or `<type>.<state>` with the
    /// types `task` (`task.succeeded`, `task.failed`, ...), `worker` (`worker.joined`,
    /// `worker.suspect`, `worker.lost`, `worker.alive`, `worker.draining`, `worker.resumed`,
    /// `worker.left`), `workflow` (`workflow.succeeded`, `workflow.failed`, ...) and
    /// `schedule` (`schedule.fired`, `schedule.skipped`, `schedule.paused`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The HMAC-SHA256 key of the `X-Drover-Signature` header (8 to 256 printable ASCII
    /// characters); the server generates one when absent and shows it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookCreate {
    /// The namespace whose events it receives: `default` unless given, or `*`.
    pub fn target_namespace(&self) -> Result<String, ApiError> {
        match self.namespace.as_deref() {
            Some(crate::namespace::ALL_NAMESPACES) => Ok(crate::namespace::ALL_NAMESPACES.into()),
            other => crate::namespace::or_default("namespace", other),
        }
    }

    /// Checks the fields; returns the patterns to store (`*` when none were given). The URL
    /// is checked for shape here; the server also parses it fully.
    pub fn validate(&self) -> Result<Vec<String>, ApiError> {
        let url = self.url.as_str();
        if url.is_empty() || url.chars().count() > MAX_WEBHOOK_URL {
            return Err(ApiError::invalid(
                "url",
                format!("1 to {MAX_WEBHOOK_URL} characters"),
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
    /// A namespace, or `*` for every namespace's events and the cluster's.
    pub namespace: String,
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
                namespace: "default".into(),
                queue: "q".into(),
                state,
                attempt: 1,
                worker: Some("w".into()),
                reason: None,
                workflow: None,
                result_bytes: None,
            },
        }
    }

    fn node_event(state: TaskState, workflow: &str) -> Event {
        let mut e = task_event(state);
        if let EventKind::Task { workflow: w, .. } = &mut e.kind {
            *w = Some(workflow.into());
        }
        e
    }

    fn worker_event() -> Event {
        worker_state_event(WorkerEventState::Left)
    }

    fn worker_state_event(state: WorkerEventState) -> Event {
        Event {
            seq: 8,
            at: 1,
            kind: EventKind::Worker {
                name: "w".into(),
                state,
            },
        }
    }

    fn workflow_event(id: &str, state: WorkflowState) -> Event {
        Event {
            seq: 9,
            at: 2,
            kind: EventKind::Workflow {
                workflow_id: id.into(),
                namespace: "default".into(),
                state,
            },
        }
    }

    fn schedule_event(change: ScheduleChange, task: Option<TaskId>) -> Event {
        Event {
            seq: 10,
            at: 3,
            kind: EventKind::Schedule {
                namespace: "team-a".into(),
                name: "nightly".into(),
                change,
                task_id: task,
                reason: (change == ScheduleChange::Skipped).then(|| "overlap skip".into()),
            },
        }
    }

    fn json(e: &Event) -> serde_json::Value {
        serde_json::to_value(EventView::from_event(e)).unwrap()
    }

    #[test]
    fn views_carry_the_contract_fields() {
        let v = json(&task_event(TaskState::Running));
        assert_eq!(v["seq"], 7);
        assert_eq!(v["type"], "task");
        assert_eq!(v["state"], "running");
        assert_eq!(v["event"], "task.running");
        assert_eq!(v["queue"], "q");
        assert_eq!(v["attempt"], 1);
        assert!(v["reason"].is_null());
        assert!(v.get("workflow").is_none());
        assert!(v.get("schedule").is_none());
        assert!(v["at"].as_str().unwrap().ends_with('Z'));
        let w = json(&worker_event());
        assert_eq!(w["type"], "worker");
        assert_eq!(w["worker"], "w");
        assert_eq!(w["state"], "left");
        assert!(w.get("task_id").is_none());
    }

    #[test]
    fn views_of_the_new_kinds() {
        let n = json(&node_event(TaskState::Succeeded, "wf-1"));
        assert_eq!(n["type"], "task");
        assert_eq!(n["event"], "task.succeeded");
        assert_eq!(n["workflow"], "wf-1");

        let wf = json(&workflow_event("wf-1", WorkflowState::Succeeded));
        assert_eq!(wf["type"], "workflow");
        assert_eq!(wf["event"], "workflow.succeeded");
        assert_eq!(wf["state"], "succeeded");
        assert_eq!(wf["workflow"], "wf-1");
        assert!(wf.get("task_id").is_none() && wf.get("queue").is_none());
        assert!(
            EventView::from_event(&workflow_event("x", WorkflowState::Failed))
                .is_terminal_workflow_event()
        );
        assert!(
            !EventView::from_event(&workflow_event("x", WorkflowState::Running))
                .is_terminal_workflow_event()
        );
        assert!(
            !EventView::from_event(&workflow_event("x", WorkflowState::Failed))
                .is_terminal_task_event()
        );

        let fired = json(&schedule_event(ScheduleChange::Fired, Some(TaskId(5))));
        assert_eq!(fired["type"], "schedule");
        assert_eq!(fired["event"], "schedule.fired");
        assert_eq!(fired["state"], "fired");
        assert_eq!(fired["schedule"], "nightly");
        assert_eq!(fired["task_id"], TaskId(5).to_string());
        assert!(fired.get("queue").is_none() && fired.get("attempt").is_none());
        let fired = EventView::from_event(&schedule_event(ScheduleChange::Fired, Some(TaskId(5))));
        assert!(!fired.is_terminal_task_event());

        let skipped = json(&schedule_event(ScheduleChange::Skipped, None));
        assert_eq!(skipped["event"], "schedule.skipped");
        assert_eq!(skipped["reason"], "overlap skip");
        assert!(skipped.get("task_id").is_none());

        for &state in WorkerEventState::ALL {
            let w = json(&worker_state_event(state));
            assert_eq!(w["event"], format!("worker.{}", state.as_str()));
        }

        // The JSON reads back (the client parses it).
        let back: EventView =
            serde_json::from_value(json(&workflow_event("wf-1", WorkflowState::Cancelled)))
                .unwrap();
        assert_eq!(back.workflow.as_deref(), Some("wf-1"));
    }

    #[test]
    fn proto_events_carry_workflow_and_schedule() {
        let p = proto::Event::from(&node_event(TaskState::Queued, "wf-1"));
        assert_eq!(
            (p.r#type.as_str(), p.workflow.as_deref()),
            ("task", Some("wf-1"))
        );
        let p = proto::Event::from(&workflow_event("wf-1", WorkflowState::Failed));
        assert_eq!(p.name, "workflow.failed");
        assert_eq!(p.workflow.as_deref(), Some("wf-1"));
        assert!(p.task_id.is_empty() && p.schedule.is_none());
        let p = proto::Event::from(&schedule_event(ScheduleChange::Fired, Some(TaskId(5))));
        assert_eq!(p.name, "schedule.fired");
        assert_eq!(p.schedule.as_deref(), Some("nightly"));
        assert_eq!(p.task_id, TaskId(5).to_string());
    }

    #[test]
    fn filters() {
        let none: &[String] = &[];
        let f =
            EventFilter::parse(None, Some("q"), &["succeeded,failed".into()], none, None).unwrap();
        assert!(!f.matches(&task_event(TaskState::Running)));
        assert!(f.matches(&task_event(TaskState::Failed)));
        assert!(!f.matches(&worker_event()));
        assert!(!f.matches(&workflow_event("wf", WorkflowState::Failed)));
        let f = EventFilter::parse(None, None, none, &["worker".into()], None).unwrap();
        assert!(f.matches(&worker_event()));
        assert!(!f.matches(&task_event(TaskState::Failed)));
        assert!(EventFilter::parse(None, None, &["nope".into()], none, None).is_err());
        assert!(EventFilter::parse(None, None, none, &["job".into()], None).is_err());
        assert!(EventFilter::parse(Some("x"), None, none, none, None).is_err());
    }

    #[test]
    fn workflow_filter_selects_the_workflow_and_its_nodes() {
        let none: &[String] = &[];
        let f = EventFilter::parse(None, None, none, none, Some("wf-1")).unwrap();
        assert!(f.matches(&node_event(TaskState::Running, "wf-1")));
        assert!(f.matches(&workflow_event("wf-1", WorkflowState::Running)));
        assert!(!f.matches(&node_event(TaskState::Running, "wf-2")));
        assert!(!f.matches(&workflow_event("wf-2", WorkflowState::Running)));
        assert!(!f.matches(&task_event(TaskState::Running)));
        assert!(!f.matches(&worker_event()));
        assert!(!f.matches(&schedule_event(ScheduleChange::Fired, Some(TaskId(5)))));

        // With a type: only the workflow's own events.
        let f = EventFilter::parse(None, None, none, &["workflow".into()], Some("wf-1")).unwrap();
        assert!(f.matches(&workflow_event("wf-1", WorkflowState::Succeeded)));
        assert!(!f.matches(&node_event(TaskState::Succeeded, "wf-1")));

        // A state shared by tasks and workflows matches both.
        let f = EventFilter::parse(None, None, &["succeeded".into()], none, Some("wf-1")).unwrap();
        assert!(f.matches(&workflow_event("wf-1", WorkflowState::Succeeded)));
        assert!(f.matches(&node_event(TaskState::Succeeded, "wf-1")));
        assert!(!f.matches(&node_event(TaskState::Running, "wf-1")));

        // Together with task or queue filters only node events can match.
        let f = EventFilter::parse(None, Some("q"), none, none, Some("wf-1")).unwrap();
        assert!(f.matches(&node_event(TaskState::Running, "wf-1")));
        assert!(!f.matches(&workflow_event("wf-1", WorkflowState::Running)));

        // Empty is no filter; too long is refused like a queue name.
        let f = EventFilter::parse(None, None, none, none, Some("")).unwrap();
        assert!(f.workflow.is_none());
        let long = "w".repeat(crate::limits::MAX_NAME + 1);
        let e = EventFilter::parse(None, None, none, none, Some(&long)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("workflow"));
        let e = EventFilter::parse(None, Some(&long), none, none, None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("queue"));
    }

    #[test]
    fn task_and_queue_filters_select_task_events_only() {
        let none: &[String] = &[];
        let id = TaskId(5).to_string();
        let f = EventFilter::parse(Some(&id), None, none, none, None).unwrap();
        assert!(f.matches(&task_event(TaskState::Queued)));
        // The fire that created the task is the schedule's event.
        assert!(!f.matches(&schedule_event(ScheduleChange::Fired, Some(TaskId(5)))));
        assert!(!f.matches(&workflow_event("wf", WorkflowState::Running)));
        let f = EventFilter::parse(None, Some("q"), none, none, None).unwrap();
        assert!(!f.matches(&schedule_event(ScheduleChange::Fired, Some(TaskId(5)))));
    }

    #[test]
    fn types_and_states_of_the_new_kinds() {
        let none: &[String] = &[];
        let f = EventFilter::parse(None, None, none, &["workflow,schedule".into()], None).unwrap();
        assert!(f.matches(&workflow_event("wf", WorkflowState::Pending)));
        assert!(f.matches(&schedule_event(ScheduleChange::Created, None)));
        assert!(!f.matches(&task_event(TaskState::Pending)));
        assert!(!f.matches(&worker_event()));

        let f = EventFilter::parse(None, None, &["fired".into()], none, None).unwrap();
        assert!(f.matches(&schedule_event(ScheduleChange::Fired, Some(TaskId(1)))));
        assert!(!f.matches(&schedule_event(ScheduleChange::Skipped, None)));

        let f = EventFilter::parse(None, None, &["suspect,lost".into()], none, None).unwrap();
        assert!(f.matches(&worker_state_event(WorkerEventState::Suspect)));
        assert!(f.matches(&worker_state_event(WorkerEventState::Lost)));
        assert!(!f.matches(&worker_state_event(WorkerEventState::Alive)));

        // `resumed` is both a worker state and a schedule change.
        let f = EventFilter::parse(None, None, &["resumed".into()], &["schedule".into()], None)
            .unwrap();
        assert!(f.matches(&schedule_event(ScheduleChange::Resumed, None)));
        assert!(!f.matches(&worker_state_event(WorkerEventState::Resumed)));

        // Every state of every type is accepted.
        for s in TaskState::ALL.iter().map(|s| s.as_str()).chain(
            WorkerEventState::ALL
                .iter()
                .map(|s| s.as_str())
                .chain(WorkflowState::ALL.iter().map(|s| s.as_str()))
                .chain(ScheduleChange::ALL.iter().map(|s| s.as_str())),
        ) {
            assert!(
                EventFilter::parse(None, None, &[s.into()], none, None).is_ok(),
                "{s}"
            );
        }

        // The error names the states of every type.
        let e = EventFilter::parse(None, None, &["bogus".into()], none, None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("state"));
        for word in [
            "timed_out",
            "suspect",
            "draining",
            "cancelled",
            "fired",
            "skipped",
        ] {
            assert!(e.message.contains(word), "{}", e.message);
        }
        let e = EventFilter::parse(None, None, none, &["job".into()], None).unwrap_err();
        assert!(
            e.message.contains("task, worker, workflow, schedule"),
            "{}",
            e.message
        );
        // A state the listed types never announce matches nothing.
        let f = EventFilter::parse(None, None, &["fired".into()], &["task".into()], None).unwrap();
        let fired = schedule_event(ScheduleChange::Fired, Some(TaskId(5)));
        assert!(!f.matches(&fired) && !f.matches(&task_event(TaskState::Queued)));
    }

    #[test]
    fn patterns() {
        for p in [
            "*",
            "task.*",
            "task.succeeded",
            "worker.*",
            "worker.left",
            "worker.suspect",
            "worker.lost",
            "worker.alive",
            "worker.draining",
            "worker.resumed",
            "workflow.*",
            "workflow.succeeded",
            "workflow.cancelled",
            "schedule.*",
            "schedule.fired",
            "schedule.skipped",
            "schedule.deleted",
        ] {
            assert!(check_event_pattern(p).is_ok(), "{p}");
        }
        for p in [
            "task",
            "task.done",
            "job.*",
            "worker.gone",
            "workflow.queued",
            "schedule.succeeded",
            "schedule",
            "",
        ] {
            assert!(check_event_pattern(p).is_err(), "{p}");
        }
        let e = check_event_pattern("workflow.done").unwrap_err();
        assert!(e.contains("workflow.<") && e.contains("schedule.<"), "{e}");
        assert!(pattern_matches("task.*", "task.failed"));
        assert!(!pattern_matches("task.*", "worker.left"));
        assert!(pattern_matches("*", "worker.left"));
        assert!(pattern_matches("task.failed", "task.failed"));
        assert!(!pattern_matches("task.failed", "task.succeeded"));
        assert!(pattern_matches("workflow.*", "workflow.failed"));
        assert!(!pattern_matches("workflow.*", "task.failed"));
        assert!(pattern_matches("schedule.fired", "schedule.fired"));
        assert!(!pattern_matches("schedule.*", "worker.suspect"));
        assert!(pattern_matches(
            "schedule.*",
            &event_name(&schedule_event(ScheduleChange::Skipped, None))
        ));
    }

    #[test]
    fn a_namespace_filter_passes_its_events_only() {
        let only = |ns: &str| EventFilter {
            namespaces: Some(vec![ns.into()]),
            ..EventFilter::default()
        };
        assert!(only("default").matches(&task_event(TaskState::Queued)));
        assert!(!only("team-a").matches(&task_event(TaskState::Queued)));
        assert!(only("team-a").matches(&schedule_event(ScheduleChange::Fired, None)));
        assert!(
            !only("default").matches(&worker_event()),
            "worker events are the cluster's"
        );
        assert!(EventFilter::default().matches(&worker_event()));
        assert_eq!(json(&task_event(TaskState::Queued))["namespace"], "default");
        assert!(json(&worker_event()).get("namespace").is_none());
    }

    #[test]
    fn webhook_validation() {
        let ok = WebhookCreate {
            namespace: None,
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
        let mut new_kinds = ok.clone();
        new_kinds.events = vec!["workflow.*,schedule.fired".into(), "worker.lost".into()];
        assert_eq!(
            new_kinds.validate().unwrap(),
            ["workflow.*", "schedule.fired", "worker.lost"]
        );
        let mut all = ok;
        all.events.clear();
        assert_eq!(all.validate().unwrap(), ["*"]);
    }
}
