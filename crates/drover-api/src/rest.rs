//! REST types: the JSON bodies of `/v1/...`, their validation, and conversions from core records.

use std::collections::BTreeMap;

use drover_core::placement::SelectorError;
use drover_core::{
    AttemptRecord, KeyLimit, Micros, PlacementSpec, ResourceRequest, Selector, Strategy, TaskDef,
    TaskRecord, TaskSpec,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::limits;
use crate::secret::{self, Seal, SecretValues};

pub use crate::duration::parse_duration_ms;

/// A task to submit. Durations are strings such as `"30s"`, `"500ms"` or `"2m"`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The namespace the task belongs to (default `default`); queue names, idempotency keys
    /// and serial keys are unique within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 63, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub namespace: Option<String>,
    /// Queue name (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Task kind; workers accept kinds. `noop` completes in the worker without a process.
    /// With `payload`, the handler to call: only a worker that registered a handler for this
    /// kind takes the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A task without `argv` calls the handler registered for its `kind` (only a worker naming
    /// the kind takes it) with this JSON value (any type; `null` when absent; at most 1 MiB as
    /// compact JSON); the handler's return value becomes the task's `result`. Not with `argv`;
    /// ignored by `noop`.
    #[serde(
        default,
        deserialize_with = "present_payload",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<serde_json::Value>,
    /// Higher runs first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// The command and its arguments, run without a shell. Without it, the task runs in the
    /// worker: `noop`, or a call of the handler of `kind`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secret: they reach the process but are stored
    /// encrypted and shown only as `***` (names: letters, digits, `_`). A name also in `env`
    /// takes its secret value; the plain one is dropped.
    #[serde(default, skip_serializing_if = "SecretValues::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub secret_env: SecretValues,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Retries after a failed or timed-out attempt (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Base of the exponential retry backoff (default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// Per-attempt timeout; the worker kills the process group when it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Hold the task this long before it may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Worker labels required: `k=v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`,
    /// comma separated, all must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// Placement strategy, overriding the queue's default: round_robin, random, least_loaded,
    /// power_of_two, consistent_hash, bin_pack, spread, adaptive, broadcast, failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Routing key (`consistent_hash` keeps a key on one worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Resources the task needs while it runs: `{"cpu": 2, "mem": 1073741824, "gpu": 1}`
    /// (mem in bytes; other names are custom resources).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, u64>,
    /// The label `spread` balances over (default `zone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_label: Option<String>,
    /// Upstream task ids: the task stays pending until they all succeed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// When an upstream fails, is cancelled, skipped, ...: `skip` (default) or `run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_upstream_failure: Option<String>,
    /// At most `max_concurrent` tasks with this key run at once, across queues (keys are
    /// unique within the namespace); the others wait, in priority then submission order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub concurrency_key: Option<String>,
    /// The limit of `concurrency_key` (1 to 100000; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100000)]
    pub max_concurrent: Option<u32>,
    /// With `key`: tasks with the same key run one at a time, in submission order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<bool>,
    /// Hold the task until this RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Expire the task (`expired`) if it has not started by then: a duration from now
    /// (`"10m"`) or an RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

/// A validated submit: the task definition and how long to hold it.
#[derive(Clone, Debug)]
pub struct ValidSubmit {
    pub def: TaskDef,
    pub delay_ms: u64,
}

impl SubmitRequest {
    /// Checks every field and bound; the error names the field and what to do. Secret values
    /// are checked but not sealed: for clients, never for a definition to store (see
    /// [`SubmitRequest::validate_sealed`]).
    pub fn validate(&self) -> Result<ValidSubmit, ApiError> {
        self.validate_sealed(&secret::CheckOnly)
    }

    /// [`SubmitRequest::validate`], with the secret env sealed by `seal`.
    pub fn validate_sealed(&self, seal: &dyn Seal) -> Result<ValidSubmit, ApiError> {
        let namespace = crate::namespace::or_default("namespace", self.namespace.as_deref())?;
        let queue = self.queue.clone().unwrap_or_else(|| "default".into());
        check_name("queue", &queue)?;
        let kind = self.kind.clone().unwrap_or_else(|| "default".into());
        check_name("kind", &kind)?;
        let spec = self.spec(&kind, seal)?;
        let retries = self.retries.unwrap_or(0);
        if retries > limits::MAX_RETRIES {
            return Err(ApiError::invalid(
                "retries",
                format!("at most {} retries", limits::MAX_RETRIES),
            ));
        }
        let backoff_ms = opt_duration("backoff", self.backoff.as_deref())?.unwrap_or(1000);
        let timeout_ms = opt_duration("timeout", self.timeout.as_deref())?;
        if timeout_ms == Some(0) {
            return Err(ApiError::invalid(
                "timeout",
                "timeout must be positive, e.g. \"30s\"",
            ));
        }
        let delay_ms = opt_duration("delay", self.delay.as_deref())?.unwrap_or(0);
        if let Some(k) = &self.idempotency_key {
            // No NUL: PostgreSQL's text cannot hold one.
            if k.is_empty() || k.chars().count() > limits::MAX_NAME || k.contains('\0') {
                return Err(ApiError::invalid(
                    "idempotency_key",
                    format!("1 to {} characters, no NUL", limits::MAX_NAME),
                ));
            }
        }
        let placement = self.placement()?;
        let concurrency = self.key_limit()?;
        Ok(ValidSubmit {
            def: TaskDef {
                namespace,
                queue,
                kind,
                priority: self.priority.unwrap_or(0),
                spec,
                max_attempts: retries + 1,
                backoff_ms,
                timeout_ms,
                idempotency_key: self.idempotency_key.clone(),
                placement,
                concurrency,
            },
            delay_ms,
        })
    }
}

/// A field that is present, `null` too: `Some(Value::Null)` (absent: `None`, by `default`).
pub fn present_payload<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// A payload as compact JSON text, checked against [`limits::MAX_PAYLOAD_BYTES`].
pub fn payload_text(v: &serde_json::Value) -> Result<String, ApiError> {
    let text = v.to_string();
    if text.len() > limits::MAX_PAYLOAD_BYTES {
        return Err(ApiError::invalid(
            "payload",
            format!(
                "the payload is {} bytes as JSON; at most {} (1 MiB): pass a reference (a                  URL, a key) to larger data",
                text.len(),
                limits::MAX_PAYLOAD_BYTES
            ),
        ));
    }
    Ok(text)
}

/// JSON text as a value for a view (text that is not JSON is shown as a string).
pub fn json_value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

impl SubmitRequest {
    /// The spec. With an `argv`, a command (no payload; not `noop`). Without one, the task
    /// runs in the worker: `noop` completes at once (a payload is ignored), any other kind
    /// calls that kind's handler with the payload (`null` when absent); such a task takes no
    /// `env`, `secret_env` or `cwd`.
    fn spec(&self, kind: &str, seal: &dyn Seal) -> Result<TaskSpec, ApiError> {
        if !self.argv.is_empty() {
            if kind == "noop" {
                return Err(ApiError::invalid("argv", "a noop task takes no argv"));
            }
            if self.payload.is_some() {
                return Err(ApiError::invalid(
                    "payload",
                    "a task runs a command (argv) or calls a handler (payload), not both",
                ));
            }
            return self.command(seal);
        }
        if self.kind.is_none() {
            let field = if self.payload.is_some() {
                "kind"
            } else {
                "argv"
            };
            return Err(ApiError::invalid(
                field,
                "argv is required: the command and its arguments, e.g. [\"echo\", \"hi\"] \
                 (or a kind, with a payload, to call that kind's handler)",
            ));
        }
        let what = if kind == "noop" {
            "a noop task"
        } else {
            "a handler task"
        };
        let in_worker = [
            ("secret_env", !self.secret_env.is_empty()),
            ("env", !self.env.is_empty()),
            ("cwd", self.cwd.is_some()),
        ];
        if let Some((field, _)) = in_worker.iter().find(|(_, given)| *given) {
            return Err(ApiError::invalid(
                field,
                format!("{what} runs in the worker and takes no {field}"),
            ));
        }
        if kind == "noop" {
            return Ok(TaskSpec::Noop);
        }
        let payload = self.payload.clone().unwrap_or(serde_json::Value::Null);
        Ok(TaskSpec::Handler {
            payload: payload_text(&payload)?.into(),
        })
    }

    /// A command: argv, env, secret env (sealed), cwd, checked.
    fn command(&self, seal: &dyn Seal) -> Result<TaskSpec, ApiError> {
        self.check_argv()?;
        self.check_env()?;
        secret::check(&self.secret_env)?;
        // A name in both takes its secret value; the plain one is neither stored nor shown.
        let env = self
            .env
            .iter()
            .filter(|(k, _)| !self.secret_env.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()));
        Ok(TaskSpec::Exec {
            argv: self.argv.clone(),
            env: env.collect(),
            cwd: self.cwd.clone(),
            secret_env: secret::seal_all(&self.secret_env, seal)?,
        })
    }

    fn check_argv(&self) -> Result<(), ApiError> {
        if self.argv.is_empty() {
            return Err(ApiError::invalid(
                "argv",
                "argv is required: the command and its arguments, e.g. [\"echo\", \"hi\"] \
                 (or a payload, to call the handler of the task's kind)",
            ));
        }
        if self.argv[0].is_empty() {
            return Err(ApiError::invalid("argv", "argv[0], the program, is empty"));
        }
        if self.argv.len() > limits::MAX_ARGV {
            return Err(ApiError::invalid(
                "argv",
                format!(
                    "argv has {} entries; at most {}",
                    self.argv.len(),
                    limits::MAX_ARGV
                ),
            ));
        }
        let bytes: usize = self.argv.iter().map(|a| a.len()).sum::<usize>()
            + self
                .env
                .iter()
                .chain(self.secret_env.iter())
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if bytes > limits::MAX_SPEC_BYTES {
            return Err(ApiError::invalid(
                "argv",
                format!(
                    "argv, env and secret_env total {bytes} bytes; at most {}",
                    limits::MAX_SPEC_BYTES
                ),
            ));
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(ApiError::invalid("argv", "an argument contains a NUL byte"));
        }
        Ok(())
    }

    fn check_env(&self) -> Result<(), ApiError> {
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(ApiError::invalid(
                    "env",
                    format!("bad environment variable name or value: '{k}'"),
                ));
            }
        }
        if self.env.len() > limits::MAX_ENV {
            return Err(ApiError::invalid(
                "env",
                format!("at most {} variables", limits::MAX_ENV),
            ));
        }
        Ok(())
    }

    fn key_limit(&self) -> Result<Option<KeyLimit>, ApiError> {
        let Some(key) = &self.concurrency_key else {
            if self.max_concurrent.is_some() {
                return Err(ApiError::invalid(
                    "max_concurrent",
                    "max_concurrent limits a concurrency_key; give one",
                ));
            }
            return Ok(None);
        };
        if key.is_empty() || key.len() > limits::MAX_NAME || key.contains('\0') {
            return Err(ApiError::invalid(
                "concurrency_key",
                format!("1 to {} bytes, no NUL", limits::MAX_NAME),
            ));
        }
        let max = self.max_concurrent.unwrap_or(1);
        if !(1..=limits::MAX_KEY_CONCURRENCY).contains(&max) {
            return Err(ApiError::invalid(
                "max_concurrent",
                format!("1 to {}", limits::MAX_KEY_CONCURRENCY),
            ));
        }
        Ok(Some(KeyLimit {
            key: key.clone(),
            max,
        }))
    }

    fn placement(&self) -> Result<PlacementSpec, ApiError> {
        let raw = self.label_selector.as_deref();
        if raw.is_some_and(|s| s.chars().count() > limits::MAX_SPEC_BYTES) {
            return Err(ApiError::invalid("label_selector", "too long"));
        }
        let selector = match raw.map(str::trim) {
            None | Some("") => Selector::default(),
            Some(s) => s
                .parse()
                .map_err(|e: SelectorError| ApiError::invalid("label_selector", e.to_string()))?,
        };
        let strategy = self
            .strategy
            .as_deref()
            .map(|s| s.parse::<Strategy>())
            .transpose()
            .map_err(|e| ApiError::invalid("strategy", e))?;
        if let Some(k) = &self.key {
            if k.is_empty() || k.chars().count() > limits::MAX_NAME || k.contains('\0') {
                return Err(ApiError::invalid(
                    "key",
                    format!("1 to {} characters, no NUL", limits::MAX_NAME),
                ));
            }
        }
        for k in self.resources.keys() {
            check_name("resources", k)?;
        }
        if let Some(l) = &self.spread_label {
            check_name("spread_label", l)?;
        }
        Ok(PlacementSpec {
            strategy,
            key: self.key.clone(),
            resources: ResourceRequest::from_map(&self.resources),
            selector,
            spread_label: self.spread_label.clone(),
            shard: None,
        })
    }
}

pub(crate) fn check_name(field: &str, v: &str) -> Result<(), ApiError> {
    let ok = !v.is_empty()
        && v.len() <= limits::MAX_NAME
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "'{v}' is not a valid {field}: 1 to {} characters of A-Z a-z 0-9 - _ . / :",
                limits::MAX_NAME
            ),
        ))
    }
}

fn opt_duration(field: &str, v: Option<&str>) -> Result<Option<u64>, ApiError> {
    v.map(|s| parse_duration_ms(s).map_err(|m| ApiError::invalid(field, m)))
        .transpose()
}

/// Several tasks in one request and one commit.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSubmitRequest {
    pub tasks: Vec<SubmitRequest>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchSubmitResponse {
    /// The new tasks' ids, in request order.
    pub ids: Vec<String>,
}

/// What a task runs.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SpecView {
    Exec {
        argv: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<String>,
        /// The names of the secret environment variables, each with the value `***`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        secret_env: BTreeMap<String, String>,
    },
    Noop,
    /// A function call: the handler registered for the task's kind, with `payload`.
    Handler,
}

/// A task as the API shows it. Times are RFC 3339 with microseconds.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    pub id: String,
    pub state: String,
    pub namespace: String,
    pub queue: String,
    pub kind: String,
    pub priority: i32,
    /// Current (or last) attempt number; 0 before the first.
    pub attempt: u32,
    pub max_attempts: u32,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// The worker of the current or last attempt.
    pub worker: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// When a pending task may run (delay or retry backoff).
    pub not_before: Option<String>,
    pub spec: SpecView,
    pub timeout_ms: Option<u64>,
    pub idempotency_key: Option<String>,
    /// The label selector in its text form (empty: any worker).
    pub label_selector: String,
    /// The strategy override, if any (else the queue's default).
    pub strategy: Option<String>,
    /// Routing key.
    pub key: Option<String>,
    /// The concurrency key and its limit, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    pub resources: BTreeMap<String, u64>,
    /// For a copy of a broadcast task: its index and the number of copies.
    pub shard_index: Option<u32>,
    pub shard_count: Option<u32>,
    /// Why a queued task is not placed yet (e.g. "no worker has kind gpu").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_reason: Option<String>,
    /// Attempts that lost their worker.
    pub lost: u32,
    /// A handler task's payload (only on `GET /v1/tasks/{id}`; raw:
    /// `GET /v1/tasks/{id}/payload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<serde_json::Value>,
    /// A succeeded handler task's return value (only on `GET /v1/tasks/{id}`; raw:
    /// `GET /v1/tasks/{id}/result`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: Option<serde_json::Value>,
    /// The size in bytes of `result` as stored (compact JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1048576)]
    pub result_bytes: Option<u64>,
    /// Every attempt, oldest first (only on `GET /v1/tasks/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptView>,
}

impl TaskView {
    pub fn from_record(r: &TaskRecord, attempts: &[AttemptRecord]) -> Self {
        let d = &r.def;
        TaskView {
            id: r.id.to_string(),
            state: r.state.as_str().into(),
            namespace: d.namespace.clone(),
            queue: d.queue.clone(),
            kind: d.kind.clone(),
            priority: d.priority,
            attempt: r.attempt,
            max_attempts: d.max_attempts,
            exit_code: r.exit_code,
            error: r.error.clone(),
            worker: r.worker.clone(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            started_at: r.started_at.map(rfc3339),
            finished_at: r.finished_at.map(rfc3339),
            not_before: r.not_before.map(rfc3339),
            spec: match &d.spec {
                TaskSpec::Exec {
                    argv,
                    env,
                    cwd,
                    secret_env,
                } => SpecView::Exec {
                    argv: argv.clone(),
                    env: env.iter().cloned().collect(),
                    cwd: cwd.clone(),
                    secret_env: secret::masked(secret_env),
                },
                TaskSpec::Noop => SpecView::Noop,
                TaskSpec::Handler { .. } | TaskSpec::InStore { handler: true } => SpecView::Handler,
                // Only the core's records lack a body; the store's reads never do.
                TaskSpec::InStore { handler: false } => SpecView::Noop,
            },
            timeout_ms: d.timeout_ms,
            idempotency_key: d.idempotency_key.clone(),
            label_selector: d.placement.selector.to_string(),
            strategy: d.placement.strategy.map(|s| s.as_str().to_string()),
            key: d.placement.key.clone(),
            concurrency_key: d.concurrency.as_ref().map(|c| c.key.clone()),
            max_concurrent: d.concurrency.as_ref().map(|c| c.max),
            resources: d.placement.resources.to_map(),
            shard_index: d.placement.shard.as_ref().map(|s| s.index),
            shard_count: d.placement.shard.as_ref().map(|s| s.count),
            waiting_reason: None,
            lost: r.lost,
            payload: None,
            result: None,
            result_bytes: r.result.as_ref().map(|t| t.len() as u64),
            attempts: attempts.iter().map(AttemptView::from_record).collect(),
        }
    }

    /// The view of one task (`GET /v1/tasks/{id}`): with its payload and result.
    pub fn detailed(r: &TaskRecord, attempts: &[AttemptRecord]) -> Self {
        let mut v = TaskView::from_record(r, attempts);
        if let TaskSpec::Handler { payload } = &r.def.spec {
            v.payload = Some(json_value(payload));
        }
        v.result = r.result.as_deref().map(json_value);
        v
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub attempt: u32,
    pub worker: String,
    pub assigned_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// succeeded, failed, timed_out, cancelled or lost; null while it runs.
    pub outcome: Option<String>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

impl AttemptView {
    pub fn from_record(a: &AttemptRecord) -> Self {
        AttemptView {
            attempt: a.attempt,
            worker: a.worker.clone(),
            assigned_at: rfc3339(a.assigned_at),
            started_at: a.started_at.map(rfc3339),
            finished_at: a.finished_at.map(rfc3339),
            outcome: a.outcome.map(|o| o.as_str().into()),
            exit_code: a.exit_code,
            error: a.error.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Output of one attempt. Bytes that are not UTF-8 are shown as U+FFFD.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LogsView {
    pub task_id: String,
    pub attempt: u32,
    pub stdout: String,
    pub stderr: String,
    /// Byte offsets to pass as `stdout_from` / `stderr_from` to get only what follows (`drover
    /// logs -f`). A trailing partial UTF-8 character is held back until it is complete.
    #[serde(default)]
    pub stdout_next: u64,
    #[serde(default)]
    pub stderr_next: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    pub name: String,
    /// `alive`; `suspect` (a missed heartbeat); `lost` (disconnected, or silent for longer
    /// than a lease; listed for a while after); `draining` or `drained`.
    pub state: String,
    /// Drained by an operator (takes nothing new), whatever its liveness `state` says.
    #[serde(default)]
    pub draining: bool,
    /// Milliseconds since its last heartbeat (or message).
    #[serde(default)]
    pub last_heartbeat_age_ms: u64,
    pub slots: u32,
    pub prefetch: u32,
    /// Assignments it holds (running plus prefetched).
    pub held: u32,
    pub running: u32,
    pub labels: BTreeMap<String, String>,
    pub kinds: Vec<String>,
    /// The namespaces whose tasks it runs; empty: every namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
    pub resources: BTreeMap<String, u64>,
    /// Resources not taken by the attempts it holds.
    pub resources_free: BTreeMap<String, u64>,
    pub joined_at: String,
    pub last_heartbeat: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    pub workers: Vec<WorkerView>,
}

/// Task counts by state.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    pub tasks_by_state: BTreeMap<String, u64>,
    pub workers: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Formats microseconds since the epoch as RFC 3339 (UTC, microsecond precision).
pub fn rfc3339(us: Micros) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&f).unwrap_or_default()
}

/// Parses an RFC 3339 time back to microseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<Micros, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("'{s}' is not an RFC 3339 time: {e}"))?;
    Ok((t.unix_timestamp_nanos() / 1000) as Micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(argv: &[&str]) -> SubmitRequest {
        SubmitRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn validates_and_names_the_field() {
        assert!(exec(&["true"]).validate().is_ok());
        let e = exec(&[]).validate().unwrap_err();
        assert_eq!(e.field.as_deref(), Some("argv"));
        let mut r = exec(&["true"]);
        r.timeout = Some("-5s".into());
        assert_eq!(r.validate().unwrap_err().field.as_deref(), Some("timeout"));
        r.timeout = Some("0s".into());
        assert_eq!(r.validate().unwrap_err().field.as_deref(), Some("timeout"));
        let mut r = exec(&["true"]);
        r.queue = Some("bad queue".into());
        assert_eq!(r.validate().unwrap_err().field.as_deref(), Some("queue"));
        let r = SubmitRequest {
            kind: Some("noop".into()),
            ..Default::default()
        };
        assert_eq!(r.validate().unwrap().def.spec, TaskSpec::Noop);
    }

    #[test]
    fn a_payload_makes_a_handler_task() {
        let r: SubmitRequest =
            serde_json::from_str(r#"{"kind":"resize","payload":{"w": 100, "h": [1, 2]}}"#).unwrap();
        let TaskSpec::Handler { payload } = r.validate().unwrap().def.spec else {
            panic!("handler")
        };
        assert_eq!(&*payload, r#"{"h":[1,2],"w":100}"#);
        // A kind without a command calls its handler, with a null payload when none is given.
        let r: SubmitRequest = serde_json::from_str(r#"{"kind":"ping"}"#).unwrap();
        let TaskSpec::Handler { payload } = r.validate().unwrap().def.spec else {
            panic!("handler")
        };
        assert_eq!(&*payload, "null");
        let r: SubmitRequest = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(r.validate().unwrap_err().field.as_deref(), Some("argv"));
        // A payload needs a kind, and no command; noop ignores it.
        let r: SubmitRequest = serde_json::from_str(r#"{"payload":1}"#).unwrap();
        assert_eq!(r.validate().unwrap_err().field.as_deref(), Some("kind"));
        let r: SubmitRequest = serde_json::from_str(r#"{"kind":"noop","payload":1}"#).unwrap();
        assert_eq!(r.validate().unwrap().def.spec, TaskSpec::Noop);
        let r: SubmitRequest =
            serde_json::from_str(r#"{"kind":"k","payload":1,"argv":["true"]}"#).unwrap();
        assert_eq!(r.validate().unwrap_err().field.as_deref(), Some("payload"));
        let r: SubmitRequest = serde_json::from_str(r#"{"kind":"k","cwd":"/"}"#).unwrap();
        assert_eq!(r.validate().unwrap_err().field.as_deref(), Some("cwd"));
        // At most 1 MiB as compact JSON.
        let big = "x".repeat(limits::MAX_PAYLOAD_BYTES);
        let r = SubmitRequest {
            kind: Some("k".into()),
            payload: Some(serde_json::Value::String(big)),
            ..Default::default()
        };
        let e = r.validate().unwrap_err();
        assert_eq!(e.field.as_deref(), Some("payload"));
        assert!(e.message.contains("1 MiB"), "{}", e.message);
    }

    #[test]
    fn times_round_trip_with_microseconds() {
        let us = 1_790_000_000_123_456;
        assert_eq!(parse_rfc3339(&rfc3339(us)).unwrap(), us);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90s").unwrap(), 90_000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert!(parse_duration_ms("-1s").is_err());
        assert!(parse_duration_ms("soon").is_err());
    }
}
