//! A task's flow: how it is ordered relative to other tasks, beyond its `TaskDef`. Its
//! upstreams (`--after`) and what happens when one fails, its serial key, its start deadline
//! and its workflow node. Stored per task as a `FlowRecord` (`Write::Flow`).

use super::io::NewTask;
use crate::model::{Micros, TaskId, TaskState};

/// What happens to a task when one of its upstreams does not succeed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UpstreamPolicy {
    /// The task becomes `skipped`, naming the upstream (the default).
    #[default]
    Skip,
    /// The task runs anyway once every upstream is terminal.
    Run,
}

impl UpstreamPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamPolicy::Skip => "skip",
            UpstreamPolicy::Run => "run",
        }
    }
}

impl std::str::FromStr for UpstreamPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(UpstreamPolicy::Skip),
            "run" => Ok(UpstreamPolicy::Run),
            _ => Err(format!("'{s}' is not an upstream policy (skip or run)")),
        }
    }
}

/// Execution options of a task beyond its `TaskDef`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowSpec {
    /// Upstream tasks that must succeed first.
    pub after: Vec<TaskId>,
    pub on_upstream_failure: UpstreamPolicy,
    /// Tasks with the same serial key run one at a time, in submission order.
    pub serial_key: Option<String>,
    /// A task not started (assigned) by then becomes `expired`.
    pub deadline: Option<Micros>,
    /// Workflow membership: (workflow id, node name).
    pub workflow: Option<(String, String)>,
}

impl FlowSpec {
    pub fn is_default(&self) -> bool {
        *self == FlowSpec::default()
    }
}

/// The durable flow state of a task (`Write::Flow`): its options and what it still waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub task_id: TaskId,
    pub spec: FlowSpec,
    /// Upstreams not yet terminal (a subset of `spec.after`).
    pub waiting: Vec<TaskId>,
    /// The first upstream that did not succeed, with its state (`run` policy keeps going).
    pub upstream_failed: Option<(TaskId, TaskState)>,
    /// Outputs of succeeded workflow upstreams: (node name, last non-empty stdout line).
    /// The worker gets them as `DROVER_UPSTREAM_<NODE>_OUTPUT`.
    pub upstream_outputs: Vec<(String, String)>,
}

/// A task to submit with flow options. `upstream_states` carries the state the shell read
/// from the store for each upstream that is not in this submit (the core trusts its own
/// active set first; a terminal state is used for an upstream that is no longer active).
#[derive(Clone, Debug)]
pub struct FlowTask {
    pub task: NewTask,
    pub flow: FlowSpec,
    pub upstream_states: Vec<(TaskId, TaskState)>,
}

impl FlowRecord {
    /// The record of a new task: the upstreams in `terminal` are decided (a failed one is
    /// remembered), the others are waited on. Also returns why the task is skipped at once
    /// (an upstream already failed and the policy is `skip`).
    pub(super) fn new(
        task_id: TaskId,
        spec: FlowSpec,
        terminal: impl Fn(&TaskId) -> Option<TaskState>,
    ) -> (FlowRecord, Option<String>) {
        let mut rec = FlowRecord {
            task_id,
            spec,
            waiting: Vec::new(),
            upstream_failed: None,
            upstream_outputs: Vec::new(),
        };
        let mut skip = None;
        for &u in &rec.spec.after {
            match terminal(&u) {
                Some(TaskState::Succeeded) => {}
                Some(st) => {
                    rec.upstream_failed.get_or_insert((u, st));
                    if rec.spec.on_upstream_failure == UpstreamPolicy::Skip && skip.is_none() {
                        skip = Some(format!("upstream {u} {st}"));
                    }
                }
                None if !rec.waiting.contains(&u) => rec.waiting.push(u),
                None => {}
            }
        }
        (rec, skip)
    }
}
