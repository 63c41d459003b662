//! REST adapter for tasks (`/v1/tasks`, `/v1/stats`): submit, list, read, cancel, logs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_api::namespace::{self, Scope};
use drover_api::rest::*;
use drover_api::{limits, ApiError, ErrorCode};
use drover_core::{CancelError, Input, LogStream, Reply, TaskId, TaskRecord, TaskState};
use drover_store::TaskQuery;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::clock::now_micros;
use crate::http::{
    after_commit, unexpected, ApiJson, ApiQuery, ApiResult, AppState, Caller, HttpError,
};
use crate::submit::{new_flow_task, submit_all, submit_tasks};

/// The OpenAPI part of these endpoints, merged into `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        submit,
        submit_batch,
        list,
        task,
        task_result,
        task_payload,
        cancel,
        logs,
        stats
    ),
    components(schemas(
        SubmitRequest,
        BatchSubmitRequest,
        BatchSubmitResponse,
        TaskView,
        AttemptView,
        SpecView,
        TaskList,
        LogsView,
        StatsView
    ))
)]
pub struct TaskApi;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tasks", post(submit).get(list))
        .route("/v1/tasks:batch", post(submit_batch))
        .route("/v1/tasks/{id}", get(task))
        .route("/v1/tasks/{id}/result", get(task_result))
        .route("/v1/tasks/{id}/payload", get(task_payload))
        .route("/v1/tasks/{id}/cancel", post(cancel))
        .route("/v1/tasks/{id}/logs", get(logs))
        .route("/v1/stats", get(stats))
}

fn parse_id(id: &str) -> ApiResult<TaskId> {
    id.parse::<TaskId>()
        .map_err(|m| HttpError(ApiError::invalid("id", m)))
}

fn no_task(id: TaskId) -> HttpError {
    HttpError(ApiError::not_found(format!("no task with id {id}")))
}

/// A stored task the caller may see: another namespace's answers 404 like a missing one.
async fn visible_task(s: &AppState, scope: &Scope, id: TaskId) -> ApiResult<TaskRecord> {
    s.store
        .task(id)
        .await?
        .filter(|r| scope.allows(&r.def.namespace))
        .ok_or_else(|| no_task(id))
}

async fn load_view(s: &AppState, id: TaskId) -> ApiResult<TaskView> {
    let rec = s.store.task(id).await?.ok_or_else(|| no_task(id))?;
    let attempts = s.store.attempts(id).await?;
    let mut view = TaskView::detailed(&rec, &attempts);
    if rec.state == TaskState::Queued || rec.state == TaskState::Pending {
        // Only the leader's core knows; a standby shows the task without the reason.
        view.waiting_reason = s
            .driver
            .query(move |c| c.why_waiting(id))
            .await
            .unwrap_or_default();
    }
    Ok(view)
}

#[utoipa::path(post, path = "/v1/tasks", request_body = SubmitRequest,
    responses((status = 201, body = TaskView), (status = 400, body = ApiError),
        (status = 404, body = ApiError, description = "an upstream task (`after`) does not exist"),
        (status = 503, body = ApiError, description = "upstream tasks kept changing state; retry"),
        (status = 429, body = ApiError, description = "a queue's or the server's backlog is at \
            its limit (max_queued), or over the client's request rate: nothing was stored; \
            retry after Retry-After")))]
async fn submit(
    State(s): State<AppState>,
    Caller(scope): Caller,
    ApiJson(req): ApiJson<SubmitRequest>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    // The namespace first: a caller learns nothing about another namespace's rules.
    scope.check(&namespace::or_default(
        "namespace",
        req.namespace.as_deref(),
    )?)?;
    let task = new_flow_task(&req, now_micros(), s.secrets.as_ref())?;
    let (ids, created) = submit_tasks(&s, vec![task], true).await?;
    // The task as its batch committed it; a task named by a repeated idempotency key (not
    // created now) is read from the store.
    let view = match created.into_iter().find(|c| c.record.id == ids[0]) {
        Some(c) => {
            let mut view = TaskView::detailed(&c.record, &c.attempts);
            view.waiting_reason = c.waiting_reason;
            view
        }
        None => load_view(&s, ids[0])
            .await
            .map_err(|e| after_commit(e, &format!("task {}", ids[0])))?,
    };
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(post, path = "/v1/tasks:batch", request_body = BatchSubmitRequest,
    responses((status = 201, body = BatchSubmitResponse), (status = 400, body = ApiError),
        (status = 404, body = ApiError, description = "an upstream task (`after`) does not exist"),
        (status = 503, body = ApiError, description = "upstream tasks kept changing state; retry"),
        (status = 429, body = ApiError, description = "a queue's or the server's backlog is at \
            its limit (max_queued), or over the client's request rate: nothing was stored; \
            retry after Retry-After")))]
async fn submit_batch(
    State(s): State<AppState>,
    Caller(scope): Caller,
    ApiJson(req): ApiJson<BatchSubmitRequest>,
) -> ApiResult<(StatusCode, Json<BatchSubmitResponse>)> {
    if req.tasks.is_empty() || req.tasks.len() > limits::MAX_BATCH {
        return Err(ApiError::invalid(
            "tasks",
            format!(
                "a batch holds 1 to {} tasks, not {}",
                limits::MAX_BATCH,
                req.tasks.len()
            ),
        )
        .into());
    }
    let now = now_micros();
    let mut tasks = Vec::with_capacity(req.tasks.len());
    for (i, t) in req.tasks.iter().enumerate() {
        // Validate everything before anything is stored: one bad task (or one in a
        // namespace the caller may not submit to) refuses the batch.
        let in_item = |HttpError(mut e): HttpError| {
            e.message = format!("tasks[{i}].{}", e.message);
            e.field = e.field.map(|f| format!("tasks[{i}].{f}"));
            HttpError(e)
        };
        namespace::or_default("namespace", t.namespace.as_deref())
            .and_then(|ns| scope.check(&ns))
            .map_err(|e| in_item(HttpError(e)))?;
        tasks.push(new_flow_task(t, now, s.secrets.as_ref()).map_err(in_item)?);
    }
    let ids = submit_all(&s, tasks).await?;
    Ok((
        StatusCode::CREATED,
        Json(BatchSubmitResponse {
            ids: ids.iter().map(|i| i.to_string()).collect(),
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only tasks of this namespace (default: every namespace the token may see).
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    namespace: Option<String>,
    /// Only tasks in this state.
    #[param(schema_with = drover_api::schema::task_state)]
    state: Option<String>,
    /// Only tasks of this queue.
    queue: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(schema_with = drover_api::schema::page)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(schema_with = drover_api::schema::task_id)]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/tasks", params(ListParams),
    responses((status = 200, body = TaskList), (status = 400, body = ApiError)))]
async fn list(
    State(s): State<AppState>,
    Caller(scope): Caller,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<TaskList>> {
    let scope = scope.narrowed(p.namespace.as_deref(), "namespace")?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > limits::MAX_PAGE {
        return Err(ApiError::invalid("limit", format!("1 to {}", limits::MAX_PAGE)).into());
    }
    let state = p
        .state
        .as_deref()
        .map(|st| {
            st.parse::<TaskState>()
                .map_err(|m| HttpError(ApiError::invalid("state", m)))
        })
        .transpose()?;
    let before = p
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<TaskId>()
                .map_err(|m| HttpError(ApiError::invalid("cursor", m)))
        })
        .transpose()?;
    let query = TaskQuery {
        namespaces: scope.filter(),
        state,
        queue: p.queue,
        before,
        limit,
    };
    let recs = s.store.list_tasks(&query).await?;
    let next_cursor = (recs.len() == limit)
        .then(|| recs.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(TaskList {
        tasks: recs.iter().map(|r| TaskView::from_record(r, &[])).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/tasks/{id}", params(("id" = String, Path, description = "task id (a UUID)", pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses((status = 200, body = TaskView), (status = 404, body = ApiError)))]
async fn task(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let id = parse_id(&id)?;
    visible_task(&s, &scope, id).await?;
    Ok(Json(load_view(&s, id).await?))
}

/// A stored JSON text as the body of a 200 answer.
fn raw_json(text: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text.to_string(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/v1/tasks/{id}/result", params(("id" = String, Path, description = "task id (a UUID)", pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses((status = 200, description = "the handler's return value, as stored (compact JSON, any type); `null` while the task has none (not succeeded yet, or a command)", body = serde_json::Value),
        (status = 404, body = ApiError, description = "no such task")))]
async fn task_result(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    let id = parse_id(&id)?;
    let rec = visible_task(&s, &scope, id).await?;
    Ok(raw_json(rec.result.as_deref().unwrap_or("null")))
}

#[utoipa::path(get, path = "/v1/tasks/{id}/payload", params(("id" = String, Path, description = "task id (a UUID)", pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses((status = 200, description = "the handler task's payload, as stored (compact JSON, any type); `null` for a command or noop task", body = serde_json::Value),
        (status = 404, body = ApiError, description = "no such task")))]
async fn task_payload(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    let id = parse_id(&id)?;
    let rec = visible_task(&s, &scope, id).await?;
    match &rec.def.spec {
        drover_core::TaskSpec::Handler { payload } => Ok(raw_json(payload)),
        _ => Ok(raw_json("null")),
    }
}

#[utoipa::path(post, path = "/v1/tasks/{id}/cancel", params(("id" = String, Path, description = "task id (a UUID)", pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
    responses((status = 200, body = TaskView), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn cancel(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let id = parse_id(&id)?;
    visible_task(&s, &scope, id).await?;
    match s
        .driver
        .request(|req| Input::Cancel { req, task_id: id })
        .await?
    {
        Reply::Cancelled(Ok(())) => Ok(Json(load_view(&s, id).await?)),
        Reply::Cancelled(Err(CancelError::NotActive)) => {
            let view = load_view(&s, id).await?;
            Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "task {id} already ended ({}); nothing to cancel",
                    view.state
                ),
            )
            .into())
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// Attempt number (default: the latest).
    #[param(schema_with = drover_api::schema::u32_any)]
    attempt: Option<u32>,
    /// Only stdout after this many bytes (the previous answer's `stdout_next`).
    #[param(schema_with = drover_api::schema::u64_any)]
    stdout_from: Option<u64>,
    /// Only stderr after this many bytes (the previous answer's `stderr_next`).
    #[param(schema_with = drover_api::schema::u64_any)]
    stderr_from: Option<u64>,
}

/// The bytes of `all` from `from` on, without a trailing incomplete UTF-8 character (it is
/// sent once complete), as text; and the offset that follows what was sent.
fn log_slice(all: &[u8], from: Option<u64>) -> (String, u64) {
    let start = from
        .map_or(0, |f| usize::try_from(f).unwrap_or(usize::MAX))
        .min(all.len());
    let mut part = &all[start..];
    if let Err(e) = std::str::from_utf8(part) {
        if e.error_len().is_none() {
            part = &part[..e.valid_up_to()];
        }
    }
    (
        String::from_utf8_lossy(part).into_owned(),
        (start + part.len()) as u64,
    )
}

#[utoipa::path(get, path = "/v1/tasks/{id}/logs", params(("id" = String, Path, description = "task id (a UUID)", pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"), LogParams),
    responses((status = 200, body = LogsView), (status = 400, body = ApiError),
        (status = 404, body = ApiError, description = "no such task, or no such attempt of it")))]
async fn logs(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<LogParams>,
) -> ApiResult<Json<LogsView>> {
    let id = parse_id(&id)?;
    let rec = visible_task(&s, &scope, id).await?;
    let attempt = p.attempt.unwrap_or(rec.attempt);
    if attempt > rec.attempt {
        let m = format!("task {id} has no attempt {attempt}: {} so far", rec.attempt);
        return Err(ApiError::not_found(m).into());
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for c in s.store.logs(id, attempt).await? {
        match c.stream {
            LogStream::Stdout => out.extend_from_slice(&c.data),
            LogStream::Stderr => err.extend_from_slice(&c.data),
        }
    }
    let (stdout, stdout_next) = log_slice(&out, p.stdout_from);
    let (stderr, stderr_next) = log_slice(&err, p.stderr_from);
    Ok(Json(LogsView {
        task_id: id.to_string(),
        attempt,
        stdout,
        stderr,
        stdout_next,
        stderr_next,
    }))
}

#[utoipa::path(get, path = "/v1/stats", responses((status = 200, body = StatsView)))]
async fn stats(State(s): State<AppState>, Caller(scope): Caller) -> ApiResult<Json<StatsView>> {
    let counts = s.store.count_by_state(scope.filter().as_deref()).await?;
    let workers = s.driver.workers().await?;
    let workers = workers
        .iter()
        .filter(|w| crate::workers::serves_any(&w.info, &scope))
        .count() as u32;
    Ok(Json(StatsView {
        tasks_by_state: counts
            .into_iter()
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect(),
        workers,
    }))
}
