//! REST adapter for serial and parallel execution: queues and workflows (submits with
//! dependencies, serial keys, times and deadlines go through `submit`). Decode, read the
//! store, ask the driver, encode: every scheduling decision is the core's.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_api::flow::*;
use drover_api::namespace::{self, NamespaceFilter, NamespaceQuery, Scope};
use drover_api::rest::rfc3339;
use drover_api::{ApiError, ErrorCode};
use drover_core::dag::{self, Rerun, WorkflowNode, WorkflowRecord};
use drover_core::{
    FlowSpec, FlowTask, Input, Micros, NewTask, QueueConfig, QueueStats, Rate, Reply, Scoped,
    Snapshot, Strategy, TaskId, TaskRecord, TaskState, WorkflowState, DEFAULT_NAMESPACE,
    MAX_WEIGHT,
};
use drover_store::{Store, StoreError};

use crate::clock::now_micros;
use crate::http::{
    after_commit, unexpected, ApiJson, ApiQuery, ApiResult, AppState, Caller, HttpError,
};
use crate::ids::{task_id_at, uuid_at};
use crate::submit::{new_flow_task, submit_flow};

/// The OpenAPI part of these endpoints, merged into `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_queues,
        get_queue,
        set_queue,
        pause_queue,
        resume_queue,
        submit_workflow,
        list_workflows,
        get_workflow,
        rerun_workflow
    ),
    components(schemas(
        QueueView,
        QueueList,
        QueueSetRequest,
        WorkflowRequest,
        WorkflowTaskRequest,
        WorkflowView,
        WorkflowNodeView,
        WorkflowList,
        RerunRequest
    ))
)]
pub struct FlowApi;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/queues", get(list_queues))
        .route("/v1/queues/{name}", get(get_queue).put(set_queue))
        .route("/v1/queues/{name}/pause", post(pause_queue))
        .route("/v1/queues/{name}/resume", post(resume_queue))
        .route("/v1/workflows", post(submit_workflow).get(list_workflows))
        .route("/v1/workflows/{id}", get(get_workflow))
        .route("/v1/workflows/{id}/rerun", post(rerun_workflow))
}

// ---- queues ----

fn queue_view(q: &QueueStats) -> QueueView {
    QueueView {
        namespace: q.namespace.clone(),
        name: q.name.clone(),
        depth: q.depth,
        running: q.running,
        concurrency: q.config.concurrency,
        paused: q.config.paused,
        strategy: q.config.strategy.map(|s| s.as_str().to_string()),
        weight: q.config.weight,
        rate: q.config.rate.map(|r| r.to_string()),
        max_queued: q.config.max_queued,
    }
}

fn check_queue_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= drover_api::limits::MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid("name", format!("'{name}' is not a valid queue name")).into())
    }
}

async fn stats(s: &AppState) -> ApiResult<Vec<QueueStats>> {
    Ok(s.driver.query(|c| c.queue_stats()).await?)
}

#[utoipa::path(get, path = "/v1/queues", params(NamespaceFilter),
    responses((status = 200, body = QueueList), (status = 400, body = ApiError)))]
async fn list_queues(
    State(s): State<AppState>,
    Caller(scope): Caller,
    ApiQuery(q): ApiQuery<NamespaceFilter>,
) -> ApiResult<Json<QueueList>> {
    let scope = scope.narrowed(q.namespace.as_deref(), "namespace")?;
    Ok(Json(QueueList {
        queues: stats(&s)
            .await?
            .iter()
            .filter(|q| scope.allows(&q.namespace))
            .map(queue_view)
            .collect(),
    }))
}

/// The namespace of the queue a route names; 404 for one the caller may not see.
fn queue_namespace(scope: &Scope, q: &NamespaceQuery, name: &str) -> ApiResult<String> {
    scope.named(q)?.ok_or_else(|| {
        HttpError(ApiError::not_found(format!(
            "no queue {name} in namespace {}",
            q.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
        )))
    })
}

async fn one_queue(s: &AppState, ns: &str, name: &str) -> ApiResult<QueueView> {
    Ok(stats(s)
        .await?
        .iter()
        .find(|q| q.namespace == ns && q.name == name)
        .map(queue_view)
        .unwrap_or(QueueView {
            namespace: ns.to_string(),
            name: name.to_string(),
            depth: 0,
            running: 0,
            concurrency: None,
            paused: false,
            strategy: None,
            weight: 1,
            rate: None,
            max_queued: None,
        }))
}

#[utoipa::path(get, path = "/v1/queues/{name}", params(("name" = String, Path, description = "queue", pattern = r"^[A-Za-z0-9_.:/-]{1,200}$"), NamespaceQuery),
    responses((status = 200, body = QueueView)))]
async fn get_queue(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<NamespaceQuery>,
) -> ApiResult<Json<QueueView>> {
    check_queue_name(&name)?;
    let ns = queue_namespace(&scope, &q, &name)?;
    Ok(Json(one_queue(&s, &ns, &name).await?))
}

async fn update_queue(
    s: &AppState,
    (scope, q): (Scope, NamespaceQuery),
    name: String,
    change: QueueSetRequest,
) -> ApiResult<Json<QueueView>> {
    check_queue_name(&name)?;
    let ns = queue_namespace(&scope, &q, &name)?;
    let strategy = match change.strategy.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(v) => Some(Some(
            v.parse::<Strategy>()
                .map_err(|e| HttpError(ApiError::invalid("strategy", e)))?,
        )),
    };
    let key = Scoped::new(&ns, &name);
    let current = s
        .driver
        .query(move |c| c.queue_config(&key).cloned())
        .await?;
    let mut config = current.unwrap_or(QueueConfig {
        namespace: ns.clone(),
        name: name.clone(),
        ..QueueConfig::default()
    });
    if let Some(c) = change.concurrency {
        config.concurrency = (c > 0).then_some(c);
    }
    if let Some(st) = strategy {
        config.strategy = st;
    }
    if let Some(p) = change.paused {
        config.paused = p;
    }
    match change.rate.as_deref() {
        None => {}
        Some("") => config.rate = None,
        Some(r) => {
            config.rate = Some(
                r.parse::<Rate>()
                    .map_err(|m| ApiError::invalid("rate", m))?,
            )
        }
    }
    if let Some(n) = change.max_queued {
        if n > drover_api::limits::MAX_QUEUED {
            let most = drover_api::limits::MAX_QUEUED;
            return Err(ApiError::invalid("max_queued", format!("0 (none) to {most}")).into());
        }
        config.max_queued = (n > 0).then_some(n);
    }
    if let Some(w) = change.weight {
        if !(1..=MAX_WEIGHT).contains(&w) {
            return Err(ApiError::invalid("weight", format!("1 to {MAX_WEIGHT}")).into());
        }
        config.weight = w;
    }
    match s
        .driver
        .request(|req| Input::ConfigureQueue { req, config })
        .await?
    {
        Reply::Done => {
            s.metrics.queue_configured(&name);
            Ok(Json(one_queue(s, &ns, &name).await?))
        }
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(put, path = "/v1/queues/{name}", params(("name" = String, Path, description = "queue", pattern = r"^[A-Za-z0-9_.:/-]{1,200}$"), NamespaceQuery),
    request_body = QueueSetRequest,
    responses((status = 200, body = QueueView), (status = 400, body = ApiError)))]
async fn set_queue(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<NamespaceQuery>,
    ApiJson(change): ApiJson<QueueSetRequest>,
) -> ApiResult<Json<QueueView>> {
    update_queue(&s, (scope, q), name, change).await
}

#[utoipa::path(post, path = "/v1/queues/{name}/pause", params(("name" = String, Path, description = "queue", pattern = r"^[A-Za-z0-9_.:/-]{1,200}$"), NamespaceQuery),
    responses((status = 200, body = QueueView)))]
async fn pause_queue(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<NamespaceQuery>,
) -> ApiResult<Json<QueueView>> {
    let change = QueueSetRequest {
        paused: Some(true),
        ..QueueSetRequest::default()
    };
    update_queue(&s, (scope, q), name, change).await
}

#[utoipa::path(post, path = "/v1/queues/{name}/resume", params(("name" = String, Path, description = "queue", pattern = r"^[A-Za-z0-9_.:/-]{1,200}$"), NamespaceQuery),
    responses((status = 200, body = QueueView)))]
async fn resume_queue(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<NamespaceQuery>,
) -> ApiResult<Json<QueueView>> {
    let change = QueueSetRequest {
        paused: Some(false),
        ..QueueSetRequest::default()
    };
    update_queue(&s, (scope, q), name, change).await
}

// ---- workflows ----
// ---- workflows ----

/// For the core's snapshot: each workflow with an active node, with the terminal states of
/// its other current nodes (the core keeps no history, so it cannot know them itself).
pub(crate) async fn ended_nodes(
    store: &dyn Store,
    snapshot: &Snapshot,
) -> Result<Vec<(String, Vec<TaskState>)>, StoreError> {
    let active: HashSet<TaskId> = snapshot.tasks.iter().map(|(t, _)| t.id).collect();
    let ids: BTreeSet<&str> = snapshot
        .flows
        .iter()
        .filter(|f| active.contains(&f.task_id))
        .filter_map(|f| f.spec.workflow.as_ref().map(|(w, _)| w.as_str()))
        .collect();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(w) = store.workflow(id).await? else {
            continue;
        };
        let mut ended = Vec::new();
        for n in w.nodes.iter().filter(|n| !active.contains(&n.task_id)) {
            if let Some(t) = store.task(n.task_id).await? {
                ended.push(t.state);
            }
        }
        out.push((id.to_string(), ended));
    }
    Ok(out)
}

async fn workflow_view(s: &AppState, w: &WorkflowRecord) -> ApiResult<WorkflowView> {
    let mut nodes = Vec::with_capacity(w.nodes.len());
    let mut states = Vec::with_capacity(w.nodes.len());
    // Sinks: the nodes no node runs after. The workflow's result is theirs, by name.
    let upstreams: HashSet<&str> = w
        .nodes
        .iter()
        .flat_map(|n| n.after.iter().map(String::as_str))
        .collect();
    let mut result = BTreeMap::new();
    for n in &w.nodes {
        let rec = s.store.task(n.task_id).await?;
        let (state, attempts, started, finished, error) = match rec {
            Some(r) => {
                if !upstreams.contains(n.name.as_str()) {
                    let value = r.result.as_deref().map(drover_api::rest::json_value);
                    result.insert(n.name.clone(), value.unwrap_or(serde_json::Value::Null));
                }
                (r.state, r.attempt, r.started_at, r.finished_at, r.error)
            }
            None => (TaskState::Pending, 0, None, None, None),
        };
        states.push((state, attempts));
        nodes.push(WorkflowNodeView {
            name: n.name.clone(),
            task_id: n.task_id.to_string(),
            state: state.as_str().to_string(),
            after: n.after.clone(),
            started_at: started.map(rfc3339),
            finished_at: finished.map(rfc3339),
            error,
        });
    }
    let state = dag::aggregate_state(&states);
    Ok(WorkflowView {
        id: w.id.clone(),
        namespace: w.namespace.clone(),
        name: w.name.clone(),
        state: state.as_str().to_string(),
        created_at: rfc3339(w.created_at),
        nodes,
        result: (state == WorkflowState::Succeeded).then_some(result),
    })
}

#[utoipa::path(post, path = "/v1/workflows", request_body = WorkflowRequest,
    responses((status = 201, body = WorkflowView), (status = 400, body = ApiError),
        (status = 429, body = ApiError, description = "a queue's or the server's backlog is at \
            its limit (max_queued), or over the client's request rate: nothing was stored; \
            retry after Retry-After")))]
async fn submit_workflow(
    State(s): State<AppState>,
    Caller(scope): Caller,
    ApiJson(doc): ApiJson<WorkflowRequest>,
) -> ApiResult<(StatusCode, Json<WorkflowView>)> {
    let namespace = namespace::or_default("namespace", doc.namespace.as_deref())?;
    scope.check(&namespace)?;
    let order = doc.validate()?;
    let now = now_micros();
    let wf_id = uuid_at(now).to_string();
    // Ids in topological order, so they sort like the run order.
    let mut ids: Vec<TaskId> = vec![TaskId(0); doc.tasks.len()];
    for &i in &order {
        ids[i] = task_id_at(now);
    }
    let by_name: HashMap<&str, usize> = doc
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut tasks = Vec::with_capacity(doc.tasks.len());
    for &i in &order {
        let node = &doc.tasks[i];
        let submit = node.to_submit(Some(&namespace));
        let (mut task, _) = new_flow_task(&submit, now, s.secrets.as_ref())?;
        task.id = ids[i];
        tasks.push(FlowTask {
            task,
            flow: FlowSpec {
                after: node
                    .after
                    .iter()
                    .map(|a| ids[by_name[a.as_str()]])
                    .collect(),
                on_upstream_failure: node
                    .on_upstream_failure
                    .as_deref()
                    .map(|p| p.parse().unwrap_or_default())
                    .unwrap_or_default(),
                serial_key: None,
                deadline: None,
                workflow: Some((wf_id.clone(), node.name.clone())),
            },
            upstream_states: vec![],
        });
    }
    let record = WorkflowRecord {
        id: wf_id,
        namespace,
        name: doc.name.clone(),
        created_at: now,
        nodes: doc
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| WorkflowNode {
                name: t.name.clone(),
                task_id: ids[i],
                after: t.after.clone(),
            })
            .collect(),
    };
    submit_flow(&s, tasks, Some(record.clone())).await?;
    let view = workflow_view(&s, &record)
        .await
        .map_err(|e| after_commit(e, &format!("workflow {}", record.id)))?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A stored workflow the caller may see: another namespace's answers 404 like a missing one.
async fn load_workflow(s: &AppState, scope: &Scope, id: &str) -> ApiResult<WorkflowRecord> {
    s.store
        .workflow(id)
        .await?
        .filter(|w| scope.allows(&w.namespace))
        .ok_or_else(|| HttpError(ApiError::not_found(format!("no workflow with id {id}"))))
}

#[utoipa::path(get, path = "/v1/workflows/{id}", params(("id" = String, Path, description = "workflow id")),
    responses((status = 200, body = WorkflowView), (status = 404, body = ApiError)))]
async fn get_workflow(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkflowView>> {
    let w = load_workflow(&s, &scope, &id).await?;
    Ok(Json(workflow_view(&s, &w).await?))
}

#[utoipa::path(get, path = "/v1/workflows", params(NamespaceFilter),
    responses((status = 200, body = WorkflowList), (status = 400, body = ApiError)))]
async fn list_workflows(
    State(s): State<AppState>,
    Caller(scope): Caller,
    ApiQuery(q): ApiQuery<NamespaceFilter>,
) -> ApiResult<Json<WorkflowList>> {
    let scope = scope.narrowed(q.namespace.as_deref(), "namespace")?;
    let list = s.store.workflows(100, scope.filter().as_deref()).await?;
    let mut out = Vec::with_capacity(list.len());
    for w in &list {
        out.push(workflow_view(&s, w).await?);
    }
    Ok(Json(WorkflowList { workflows: out }))
}

#[utoipa::path(post, path = "/v1/workflows/{id}/rerun", params(("id" = String, Path, description = "workflow id")),
    request_body = RerunRequest,
    responses((status = 200, body = WorkflowView), (status = 409, body = ApiError),
        (status = 429, body = ApiError, description = "a queue's or the server's backlog is at \
            its limit (max_queued), or over the client's request rate: nothing was stored; \
            retry after Retry-After")))]
async fn rerun_workflow(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RerunRequest>,
) -> ApiResult<Json<WorkflowView>> {
    if !req.from_failed {
        return Err(ApiError::invalid(
            "from_failed",
            "only `from_failed: true` is supported: rerun the nodes that did not succeed",
        )
        .into());
    }
    let mut w = load_workflow(&s, &scope, &id).await?;
    let recs = node_tasks(&s, &w).await?;
    let states: Vec<TaskState> = recs.iter().map(|r| r.state).collect();
    let replace =
        match dag::rerun(&w.nodes, &states).map_err(|e| ApiError::internal(e.to_string()))? {
            Rerun::Running(i) => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "workflow {id} is still running (node '{}' is {}); rerun it once it ended",
                        w.nodes[i].name, states[i]
                    ),
                )
                .into())
            }
            Rerun::Nothing => return Ok(Json(workflow_view(&s, &w).await?)),
            Rerun::Replace(nodes) => nodes,
        };
    let tasks = rerun_tasks(&s, &mut w, &recs, &replace, now_micros()).await?;
    submit_flow(&s, tasks, Some(w.clone())).await?;
    let view = workflow_view(&s, &w)
        .await
        .map_err(|e| after_commit(e, &format!("the rerun of workflow {}", w.id)))?;
    Ok(Json(view))
}

/// The current task of each node, in node order.
async fn node_tasks(s: &AppState, w: &WorkflowRecord) -> ApiResult<Vec<TaskRecord>> {
    let mut recs = Vec::with_capacity(w.nodes.len());
    for n in &w.nodes {
        let rec =
            s.store.task(n.task_id).await?.ok_or_else(|| {
                HttpError(ApiError::internal(format!("node {} has no task", n.name)))
            })?;
        recs.push(rec);
    }
    Ok(recs)
}

/// New tasks for the `replace`d nodes (ids minted in that order: the run order), with the
/// workflow's nodes pointed at them; edges to the other nodes keep their tasks.
async fn rerun_tasks(
    s: &AppState,
    w: &mut WorkflowRecord,
    recs: &[TaskRecord],
    replace: &[usize],
    now: Micros,
) -> ApiResult<Vec<FlowTask>> {
    for &i in replace {
        w.nodes[i].task_id = task_id_at(now);
    }
    let ix = dag::index(&w.nodes);
    let mut tasks = Vec::with_capacity(replace.len());
    for &i in replace {
        let old = &recs[i];
        let policy = s
            .store
            .flow(old.id)
            .await?
            .map(|f| f.spec.on_upstream_failure)
            .unwrap_or_default();
        // A rerun is a new task, not a repeat of the old submit.
        let mut def = (*old.def).clone();
        def.idempotency_key = None;
        let node = &w.nodes[i];
        tasks.push(FlowTask {
            task: NewTask {
                id: node.task_id,
                def,
                not_before: None,
            },
            flow: FlowSpec {
                after: node
                    .after
                    .iter()
                    .map(|a| w.nodes[ix[a.as_str()]].task_id)
                    .collect(),
                on_upstream_failure: policy,
                serial_key: None,
                deadline: None,
                workflow: Some((w.id.clone(), node.name.clone())),
            },
            upstream_states: vec![],
        });
    }
    Ok(tasks)
}
