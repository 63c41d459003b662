//! Submitting tasks, shared by the task and workflow endpoints: a validated request becomes
//! a new task, and a batch goes to the core with the stored states of its upstreams.

use std::collections::HashMap;

use drover_api::rest::SubmitRequest;
use drover_api::secret::Seal;
use drover_api::{ApiError, ErrorCode};
use drover_core::dag::WorkflowRecord;
use drover_core::{
    FlowSpec, FlowTask, Input, Micros, NewTask, QueueFull, Reply, RequestId, SubmitError, TaskId,
    TaskState,
};

use crate::driver::{Answer, CommittedTask, DriverError};
use crate::http::{unexpected, ApiResult, AppState};
use crate::ids::task_id_at;

/// Attempts at a flow submit whose upstream finished while it was on its way.
const UPSTREAM_RETRIES: usize = 3;

/// A submit request as a new task and its flow fields, validated, its secret env sealed.
pub fn new_flow_task(
    req: &SubmitRequest,
    now: Micros,
    seal: &dyn Seal,
) -> ApiResult<(NewTask, FlowSpec)> {
    let v = req.validate_sealed(seal)?;
    let f = req.flow(now)?;
    let not_before = match f.at {
        Some(at) => Some(at),
        None => (v.delay_ms > 0).then(|| now + v.delay_ms as i64 * 1000),
    };
    let serial_key = if f.serial {
        v.def.placement.key.clone()
    } else {
        None
    };
    Ok((
        NewTask {
            id: task_id_at(now),
            def: v.def,
            not_before,
        },
        FlowSpec {
            after: f.after,
            on_upstream_failure: f.on_upstream_failure,
            serial_key,
            deadline: f.deadline,
            workflow: None,
        },
    ))
}

/// Submits tasks: the plain path when none has flow options, else `SubmitFlow` with the
/// stored states of upstreams outside the batch (an unknown one is 404).
pub async fn submit_all(s: &AppState, tasks: Vec<(NewTask, FlowSpec)>) -> ApiResult<Vec<TaskId>> {
    Ok(submit_tasks(s, tasks, false).await?.0)
}

/// `submit_all`; with `committed`, also the tasks it created as they were committed (those
/// a repeated idempotency key names are not among them).
pub async fn submit_tasks(
    s: &AppState,
    tasks: Vec<(NewTask, FlowSpec)>,
    committed: bool,
) -> ApiResult<(Vec<TaskId>, Vec<CommittedTask>)> {
    let n = tasks.len();
    if tasks.iter().all(|(_, f)| f.is_default()) {
        let plain: Vec<NewTask> = tasks.into_iter().map(|(t, _)| t).collect();
        let answer = ask(s, committed, |req| Input::Submit { req, tasks: plain }).await?;
        return match answer.reply {
            Reply::Submitted(ids) if ids.len() == n => Ok((ids, answer.tasks)),
            Reply::SubmitRefused(SubmitError::QueueFull(full)) => Err(queue_full(&full).into()),
            other => Err(unexpected(other)),
        };
    }
    let flow_tasks: Vec<FlowTask> = tasks
        .into_iter()
        .map(|(task, flow)| FlowTask {
            task,
            flow,
            upstream_states: vec![],
        })
        .collect();
    submit_flow_as(s, flow_tasks, None, committed).await
}

/// Sends a request to the driver; with `committed`, the answer carries the created tasks.
async fn ask(
    s: &AppState,
    committed: bool,
    make: impl FnOnce(RequestId) -> Input,
) -> Result<Answer, DriverError> {
    if committed {
        return s.driver.request_committed(make).await;
    }
    let reply = s.driver.request(make).await?;
    Ok(Answer {
        reply,
        tasks: Vec::new(),
    })
}

/// Sends a `SubmitFlow`, filling in upstream states from the store; retries when an
/// upstream finished between the store read and the core's decision.
pub async fn submit_flow(
    s: &AppState,
    tasks: Vec<FlowTask>,
    workflow: Option<WorkflowRecord>,
) -> ApiResult<Vec<TaskId>> {
    Ok(submit_flow_as(s, tasks, workflow, false).await?.0)
}

async fn submit_flow_as(
    s: &AppState,
    mut tasks: Vec<FlowTask>,
    workflow: Option<WorkflowRecord>,
    committed: bool,
) -> ApiResult<(Vec<TaskId>, Vec<CommittedTask>)> {
    let n = tasks.len();
    for attempt in 0..UPSTREAM_RETRIES {
        let states = upstream_states(s, &tasks).await?;
        for t in &mut tasks {
            t.upstream_states = t
                .flow
                .after
                .iter()
                .filter_map(|u| states.get(u).map(|st| (*u, *st)))
                .collect();
        }
        let batch = tasks.clone();
        let wf = workflow.clone();
        let answer = ask(s, committed, |req| Input::SubmitFlow {
            req,
            tasks: batch,
            workflow: wf,
        })
        .await?;
        match answer.reply {
            Reply::Submitted(ids) if ids.len() == n => return Ok((ids, answer.tasks)),
            Reply::SubmitRefused(SubmitError::UnknownUpstream(u)) => {
                tracing::debug!(upstream = %u, attempt, "upstream finished meanwhile; retrying");
            }
            Reply::SubmitRefused(SubmitError::QueueFull(full)) => {
                return Err(queue_full(&full).into())
            }
            Reply::SubmitRefused(SubmitError::WorkflowRunning(id)) => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("workflow {id} is still running; rerun it once it ended"),
                )
                .into())
            }
            other => return Err(unexpected(other)),
        }
    }
    Err(ApiError::new(
        ErrorCode::Unavailable,
        "upstream tasks changed state during the submit; retry",
    )
    .into())
}

/// A backlog at its limit: 429 (the response adds `Retry-After`), nothing stored, so the
/// client may send the same submit again later.
pub fn queue_full(f: &QueueFull) -> ApiError {
    let whose = match &f.queue {
        Some(q) => format!(
            "queue {} (namespace {}) has {} tasks waiting, its limit is {} (max_queued)",
            q.name, q.namespace, f.waiting, f.limit
        ),
        None => format!(
            "the server has {} tasks waiting, its limit is {} (--max-queued)",
            f.waiting, f.limit
        ),
    };
    let mut e = ApiError::new(
        ErrorCode::ResourceExhausted,
        format!(
            "{whose}; this submit adds {}: nothing was stored, retry once tasks have started",
            f.adding
        ),
    );
    e.field = f.queue.as_ref().map(|_| "queue".to_string());
    e
}

/// The stored states of the upstreams outside the batch; an unknown one is refused, and so is
/// one of another namespace (as if it did not exist: a task depends only on its own
/// namespace's tasks).
async fn upstream_states(
    s: &AppState,
    tasks: &[FlowTask],
) -> ApiResult<HashMap<TaskId, TaskState>> {
    let in_batch: HashMap<TaskId, &str> = tasks
        .iter()
        .map(|t| (t.task.id, t.task.def.namespace.as_str()))
        .collect();
    let mut states = HashMap::new();
    for t in tasks {
        let ns = t.task.def.namespace.as_str();
        for u in &t.flow.after {
            let namespace = match in_batch.get(u) {
                Some(n) => Some(n.to_string()),
                None => s.store.task(*u).await?.map(|rec| {
                    states.insert(*u, rec.state);
                    rec.def.namespace.clone()
                }),
            };
            if namespace.as_deref() != Some(ns) {
                return Err(ApiError {
                    code: ErrorCode::NotFound,
                    message: format!("after: no task with id {u}: upstream tasks must exist"),
                    field: Some("after".into()),
                }
                .into());
            }
        }
    }
    Ok(states)
}
