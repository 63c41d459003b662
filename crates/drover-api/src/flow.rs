//! REST types of serial and parallel execution: dependency and timing fields of a submit,
//! queues, workflows. Validation lives here, next to the types.

use std::collections::BTreeMap;

use drover_core::dag::{self, DagError};
use drover_core::{Micros, TaskId, UpstreamPolicy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::rest::{parse_duration_ms, SubmitRequest};
use crate::secret::SecretValues;

/// Most upstream tasks of one task.
pub const MAX_AFTER: usize = 100;

/// The flow fields of a submit, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidFlow {
    pub after: Vec<TaskId>,
    pub on_upstream_failure: UpstreamPolicy,
    /// Run one at a time per routing key (`key`).
    pub serial: bool,
    /// `at`: not before this time.
    pub at: Option<Micros>,
    /// Expire if not started by then.
    pub deadline: Option<Micros>,
}

impl ValidFlow {
    /// Whether the plain submit path suffices.
    pub fn is_plain(&self) -> bool {
        self.after.is_empty() && !self.serial && self.deadline.is_none()
    }
}

/// Parses an RFC 3339 time into microseconds since the epoch.
pub fn parse_time(s: &str) -> Result<Micros, String> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
        format!("'{s}' is not an RFC 3339 time ({e}); write e.g. 2026-01-31T09:00:00Z")
    })?;
    Ok((t.unix_timestamp_nanos() / 1000) as Micros)
}

/// A deadline: a duration from `now` (`"10m"`) or an RFC 3339 time.
pub fn parse_deadline(s: &str, now: Micros) -> Result<Micros, String> {
    if s.trim().starts_with(|c: char| c.is_ascii_digit()) && s.contains('T') {
        return parse_time(s);
    }
    match parse_duration_ms(s) {
        Ok(ms) => Ok(now + ms as i64 * 1000),
        Err(_) => parse_time(s)
            .map_err(|_| format!("'{s}' is neither a duration (\"10m\") nor an RFC 3339 time")),
    }
}

impl SubmitRequest {
    /// Checks the dependency and timing fields (`after`, `on_upstream_failure`, `serial`,
    /// `at`, `deadline`).
    pub fn flow(&self, now: Micros) -> Result<ValidFlow, ApiError> {
        if self.after.len() > MAX_AFTER {
            return Err(ApiError::invalid(
                "after",
                format!("at most {MAX_AFTER} upstream tasks"),
            ));
        }
        let mut after = Vec::with_capacity(self.after.len());
        for a in &self.after {
            let id: TaskId = a.parse().map_err(|m| ApiError::invalid("after", m))?;
            if !after.contains(&id) {
                after.push(id);
            }
        }
        let on_upstream_failure = self
            .on_upstream_failure
            .as_deref()
            .map(str::parse::<UpstreamPolicy>)
            .transpose()
            .map_err(|m| ApiError::invalid("on_upstream_failure", m))?
            .unwrap_or_default();
        if self.on_upstream_failure.is_some() && after.is_empty() {
            return Err(ApiError::invalid(
                "on_upstream_failure",
                "only applies with `after` (upstream tasks)",
            ));
        }
        let serial = self.serial.unwrap_or(false);
        if serial && self.key.is_none() {
            return Err(ApiError::invalid(
                "serial",
                "serial needs a key: tasks with the same key run one at a time",
            ));
        }
        let at = self
            .at
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|m| ApiError::invalid("at", m))?;
        if at.is_some() && self.delay.is_some() {
            return Err(ApiError::invalid(
                "at",
                "give either `at` or `delay`, not both",
            ));
        }
        let deadline = self
            .deadline
            .as_deref()
            .map(|d| parse_deadline(d, now))
            .transpose()
            .map_err(|m| ApiError::invalid("deadline", m))?;
        Ok(ValidFlow {
            after,
            on_upstream_failure,
            serial,
            at,
            deadline,
        })
    }
}

// ---- queues ----

/// A queue: its configuration and live counts.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct QueueView {
    pub namespace: String,
    pub name: String,
    /// Tasks waiting (pending or queued).
    pub depth: usize,
    /// Tasks assigned or running.
    pub running: usize,
    /// Most tasks running at once; null: no limit.
    pub concurrency: Option<u32>,
    pub paused: bool,
    /// Default placement strategy of the queue; null: the server's.
    pub strategy: Option<String>,
    /// Its share of dispatch among backlogged queues on the same workers.
    #[serde(default = "one")]
    pub weight: u32,
    /// Most starts per period (`100/s`, `10/m`, `5/h`); null: no limit.
    #[serde(default)]
    pub rate: Option<String>,
    /// Most tasks waiting (pending or queued) before submits get 429; null: no limit.
    #[serde(default)]
    pub max_queued: Option<u64>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueView>,
}

/// Changes to a queue; absent fields keep their value.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSetRequest {
    /// Most tasks running at once; 0 removes the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Default placement strategy; "" removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Its share of dispatch among backlogged queues on the same workers (1 to 10000;
    /// default 1): with weights 1 and 3, the second starts three tasks for each of the first's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10000)]
    pub weight: Option<u32>,
    /// Most starts per period, a token bucket holding one period's burst: `100/s`, `10/m`,
    /// `5/h` (1 to 1000000 per period); "" removes the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^([1-9][0-9]{0,6}/[smh])?$")]
    pub rate: Option<String>,
    /// Most tasks waiting (pending or queued) in the queue: a submit that would pass it is
    /// refused whole with 429 and `Retry-After`, nothing stored (1 to 1000000000); 0 removes
    /// the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u64>,
}

// ---- workflows ----

/// A workflow: named tasks with `after` edges, submitted as one document.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRequest {
    /// The namespace of the workflow and every node (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 63, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub namespace: Option<String>,
    pub name: String,
    pub tasks: Vec<WorkflowTaskRequest>,
}

/// One node: a task spec (fields named like the submit flags) plus its name and edges.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowTaskRequest {
    pub name: String,
    /// Names of nodes that must succeed first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secret environment variables: stored encrypted, shown as `***`.
    #[serde(default, skip_serializing_if = "SecretValues::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub secret_env: SecretValues,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Task kind; with `payload`, the handler to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Makes the node a function call, as a task's `payload` (any JSON value, at most 1 MiB).
    /// Its handler also gets the results of its succeeded upstream nodes, by node name.
    #[serde(
        default,
        deserialize_with = "crate::rest::present_payload",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `skip` (default) or `run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_upstream_failure: Option<String>,
}

impl WorkflowTaskRequest {
    /// The node as a plain submit request in `namespace` (its `after` is by name, resolved
    /// by the server).
    pub fn to_submit(&self, namespace: Option<&str>) -> SubmitRequest {
        SubmitRequest {
            namespace: namespace.map(str::to_string),
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            priority: self.priority,
            argv: self.argv.clone(),
            env: self.env.clone(),
            secret_env: self.secret_env.clone(),
            cwd: self.cwd.clone(),
            retries: self.retries,
            backoff: self.backoff.clone(),
            timeout: self.timeout.clone(),
            strategy: self.strategy.clone(),
            label_selector: self.label_selector.clone(),
            key: self.key.clone(),
            ..SubmitRequest::default()
        }
    }
}

impl WorkflowRequest {
    /// Complete validation before anything is stored: the name, every node's task spec,
    /// names, references, cycles, size. Returns a topological order of the nodes.
    pub fn validate(&self) -> Result<Vec<usize>, ApiError> {
        crate::rest::check_name("name", &self.name)?;
        crate::namespace::or_default("namespace", self.namespace.as_deref())?;
        let pairs: Vec<(String, Vec<String>)> = self
            .tasks
            .iter()
            .map(|t| (t.name.clone(), t.after.clone()))
            .collect();
        let order = dag::validate(&pairs).map_err(|e| {
            let field = match &e {
                DagError::Cycle(_) | DagError::SelfLoop(_) | DagError::Unknown { .. } => {
                    "tasks.after"
                }
                _ => "tasks",
            };
            ApiError::invalid(field, e.to_string())
        })?;
        for (i, t) in self.tasks.iter().enumerate() {
            crate::rest::check_name(&format!("tasks[{i}].name"), &t.name)?;
            t.to_submit(None).validate().map_err(|mut e| {
                e.message = format!("tasks[{i}] ('{}').{}", t.name, e.message);
                e.field = e.field.map(|f| format!("tasks[{i}].{f}"));
                e
            })?;
            // One node is one task: a broadcast's copies would be outside the workflow.
            if t.strategy.as_deref() == Some("broadcast") {
                return Err(ApiError::invalid(
                    &format!("tasks[{i}].strategy"),
                    format!(
                        "tasks[{i}] ('{}'): broadcast is not supported in a workflow; submit it \
                         as its own task",
                        t.name
                    ),
                ));
            }
            if let Some(p) = &t.on_upstream_failure {
                p.parse::<UpstreamPolicy>().map_err(|m| {
                    ApiError::invalid(&format!("tasks[{i}].on_upstream_failure"), m)
                })?;
            }
        }
        Ok(order)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct WorkflowNodeView {
    pub name: String,
    pub task_id: String,
    pub state: String,
    pub after: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A workflow and each node's state (the dashboard draws this as a graph).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct WorkflowView {
    pub id: String,
    pub namespace: String,
    pub name: String,
    /// pending, running, succeeded, failed or cancelled.
    pub state: String,
    pub created_at: String,
    pub nodes: Vec<WorkflowNodeView>,
    /// A succeeded workflow's result: its sink nodes' (those no node runs after) results by
    /// node name (a command node's: null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowView>,
}

/// `POST /v1/workflows/{id}/rerun`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    /// Rerun only failed, skipped, cancelled, timed-out, dead and expired nodes (and
    /// nothing that succeeded). Required true in this version.
    #[serde(default)]
    pub from_failed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_and_deadlines() {
        let t = parse_time("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(t, 1_767_225_600_000_000);
        assert_eq!(parse_deadline("10s", 5).unwrap(), 10_000_005);
        assert_eq!(parse_deadline("2026-01-01T00:00:00Z", 0).unwrap(), t);
        assert!(parse_deadline("soon", 0).is_err());
    }

    #[test]
    fn a_workflow_cycle_is_named() {
        let w: WorkflowRequest = serde_json::from_value(serde_json::json!({
            "name": "wf",
            "tasks": [
                {"name": "a", "argv": ["true"], "after": ["c"]},
                {"name": "b", "argv": ["true"], "after": ["a"]},
                {"name": "c", "argv": ["true"], "after": ["b"]},
            ]
        }))
        .unwrap();
        let e = w.validate().unwrap_err();
        assert!(e.message.contains("a -> b -> c -> a"), "{}", e.message);
    }

    #[test]
    fn a_broadcast_node_is_refused() {
        let w: WorkflowRequest = serde_json::from_value(serde_json::json!({
            "name": "wf",
            "tasks": [{"name": "a", "argv": ["true"], "strategy": "broadcast"}]
        }))
        .unwrap();
        let e = w.validate().unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tasks[0].strategy"));
        assert!(e.message.contains("broadcast"), "{}", e.message);
    }
}
