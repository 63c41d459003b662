//! The REST adapter: decode, ask the driver or read the store, encode. No scheduling logic.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use drover_api::rest::*;
use drover_api::{limits, ApiError, ErrorCode};
use drover_core::{CancelError, Input, Reply, TaskId, TaskState};
use drover_store::{Store, TaskQuery};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use crate::clock::now_micros;
use crate::driver::DriverHandle;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub driver: DriverHandle,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Committed events, in sequence order, as they commit.
    pub events: tokio::sync::broadcast::Sender<Arc<drover_core::Event>>,
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// Worker liveness (alive, suspect, lost) and the recently lost workers.
    pub workers: Arc<crate::workers::WorkerMonitor>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tasks", post(submit).get(list))
        .route("/v1/tasks:batch", post(submit_batch))
        .route("/v1/tasks/{id}", get(task))
        .route("/v1/tasks/{id}/cancel", post(cancel))
        .route("/v1/tasks/{id}/logs", get(logs))
        .route("/v1/workers", get(workers))
        .route("/v1/workers/{name}/drain", post(drain))
        .route("/v1/workers/{name}/resume", post(resume))
        .route("/v1/events", get(crate::events::sse))
        .route(
            "/v1/webhooks",
            post(crate::webhooks::create).get(crate::webhooks::list),
        )
        .route("/v1/webhooks/{id}", delete(crate::webhooks::remove))
        .route(
            "/v1/webhooks/{id}/deliveries",
            get(crate::webhooks::deliveries),
        )
        .route("/v1/stats", get(stats))
        .route("/healthz", get(healthz))
        .route("/readyz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(crate::flows::routes())
        .merge(crate::schedules::routes())
        .merge(crate::dashboard::router())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(limits::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .with_state(state)
}

/// Refuses a body whose declared length is over the limit before reading any of it, so the
/// client gets its 413 instead of a connection closed mid-upload.
async fn refuse_declared_oversize(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits::MAX_BODY_BYTES as u64) {
        return HttpError(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "request body over {} bytes; split it",
                limits::MAX_BODY_BYTES
            ),
        ))
        .into_response();
    }
    next.run(req).await
}

/// An `ApiError` as an HTTP response: its status and the JSON body.
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, HttpError>;

pub(crate) fn store_err(e: drover_store::StoreError) -> HttpError {
    tracing::error!(error = %e, "store read failed");
    HttpError(ApiError::new(
        ErrorCode::Unavailable,
        format!("{e}; retry shortly"),
    ))
}

pub(crate) fn gone() -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::Unavailable,
        "the scheduler is shutting down; retry against another server",
    ))
}

pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    match body {
        Ok(Json(v)) => Ok(v),
        Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "request body over {} bytes; split it",
                    limits::MAX_BODY_BYTES
                ),
            )
            .into())
        }
        Err(e) => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("bad JSON body: {}", e.body_text()),
        )
        .into()),
    }
}

pub(crate) fn parse_id(id: &str) -> ApiResult<TaskId> {
    id.parse::<TaskId>()
        .map_err(|m| HttpError(ApiError::invalid("id", m)))
}

pub(crate) async fn load_view(s: &AppState, id: TaskId) -> ApiResult<TaskView> {
    let rec = s
        .store
        .task(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| HttpError(ApiError::not_found(format!("no task with id {id}"))))?;
    let attempts = s.store.attempts(id).await.map_err(store_err)?;
    let mut view = TaskView::from_record(&rec, &attempts);
    if rec.state == TaskState::Queued || rec.state == TaskState::Pending {
        view.waiting_reason = s
            .driver
            .query(move |c| c.why_waiting(id))
            .await
            .map_err(|_| gone())?;
    }
    Ok(view)
}

#[utoipa::path(post, path = "/v1/tasks", request_body = SubmitRequest,
    responses((status = 201, body = TaskView), (status = 400, body = ApiError)))]
async fn submit(
    State(s): State<AppState>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let req = json_body(body)?;
    let task = crate::flows::new_flow_task(&req, now_micros())?;
    let ids = crate::flows::submit_all(&s, vec![task]).await?;
    Ok((StatusCode::CREATED, Json(load_view(&s, ids[0]).await?)))
}

#[utoipa::path(post, path = "/v1/tasks:batch", request_body = BatchSubmitRequest,
    responses((status = 201, body = BatchSubmitResponse), (status = 400, body = ApiError)))]
async fn submit_batch(
    State(s): State<AppState>,
    body: Result<Json<BatchSubmitRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<BatchSubmitResponse>)> {
    let req = json_body(body)?;
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
        // Validate everything before anything is stored: one bad task refuses the batch.
        tasks.push(
            crate::flows::new_flow_task(t, now).map_err(|HttpError(mut e)| {
                e.message = format!("tasks[{i}].{}", e.message);
                e.field = e.field.map(|f| format!("tasks[{i}].{f}"));
                HttpError(e)
            })?,
        );
    }
    let ids = crate::flows::submit_all(&s, tasks).await?;
    Ok((
        StatusCode::CREATED,
        Json(BatchSubmitResponse {
            ids: ids.iter().map(|i| i.to_string()).collect(),
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only tasks in this state.
    state: Option<String>,
    /// Only tasks of this queue.
    queue: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/tasks", params(ListParams),
    responses((status = 200, body = TaskList), (status = 400, body = ApiError)))]
async fn list(
    State(s): State<AppState>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<TaskList>> {
    let Query(p) =
        q.map_err(|e| HttpError(ApiError::new(ErrorCode::InvalidArgument, e.body_text())))?;
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
    let recs = s
        .store
        .list_tasks(&TaskQuery {
            state,
            queue: p.queue,
            before,
            limit,
        })
        .await
        .map_err(store_err)?;
    let next_cursor = (recs.len() == limit)
        .then(|| recs.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(TaskList {
        tasks: recs.iter().map(|r| TaskView::from_record(r, &[])).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/tasks/{id}", params(("id" = String, Path, description = "task id")),
    responses((status = 200, body = TaskView), (status = 404, body = ApiError)))]
async fn task(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<TaskView>> {
    Ok(Json(load_view(&s, parse_id(&id)?).await?))
}

#[utoipa::path(post, path = "/v1/tasks/{id}/cancel", params(("id" = String, Path, description = "task id")),
    responses((status = 200, body = TaskView), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn cancel(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<TaskView>> {
    let id = parse_id(&id)?;
    let reply = s
        .driver
        .request(|req| Input::Cancel { req, task_id: id })
        .await
        .map_err(|_| gone())?;
    match reply {
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
        other => Err(ApiError::internal(format!("unexpected reply {other:?}")).into()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// Attempt number (default: the latest).
    attempt: Option<u32>,
    /// Only stdout after this many bytes (the previous answer's `stdout_next`).
    stdout_from: Option<u64>,
    /// Only stderr after this many bytes (the previous answer's `stderr_next`).
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

#[utoipa::path(get, path = "/v1/tasks/{id}/logs", params(("id" = String, Path, description = "task id"), LogParams),
    responses((status = 200, body = LogsView), (status = 404, body = ApiError)))]
async fn logs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<LogParams>, QueryRejection>,
) -> ApiResult<Json<LogsView>> {
    let Query(p) =
        q.map_err(|e| HttpError(ApiError::new(ErrorCode::InvalidArgument, e.body_text())))?;
    let id = parse_id(&id)?;
    let rec = s
        .store
        .task(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| HttpError(ApiError::not_found(format!("no task with id {id}"))))?;
    let attempt = p.attempt.unwrap_or(rec.attempt);
    if attempt > rec.attempt {
        return Err(ApiError::invalid(
            "attempt",
            format!("task {id} has {} attempt(s) so far", rec.attempt),
        )
        .into());
    }
    let chunks = s.store.logs(id, attempt).await.map_err(store_err)?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for c in chunks {
        match c.stream {
            drover_core::LogStream::Stdout => out.extend_from_slice(&c.data),
            drover_core::LogStream::Stderr => err.extend_from_slice(&c.data),
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

#[utoipa::path(get, path = "/v1/workers", responses((status = 200, body = WorkerList)))]
async fn workers(State(s): State<AppState>) -> ApiResult<Json<WorkerList>> {
    let list = s.driver.workers().await.map_err(|_| gone())?;
    Ok(Json(WorkerList {
        workers: s.workers.views(list, now_micros()),
    }))
}

#[utoipa::path(post, path = "/v1/workers/{name}/drain", params(("name" = String, Path, description = "worker name")),
    responses((status = 200, body = WorkerList), (status = 404, body = ApiError)))]
async fn drain(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<WorkerList>> {
    set_draining(s, name, true).await
}

#[utoipa::path(post, path = "/v1/workers/{name}/resume", params(("name" = String, Path, description = "worker name")),
    responses((status = 200, body = WorkerList), (status = 404, body = ApiError)))]
async fn resume(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkerList>> {
    set_draining(s, name, false).await
}

/// Drain: the worker takes nothing new and its running tasks finish. Replies with the worker.
async fn set_draining(s: AppState, name: String, on: bool) -> ApiResult<Json<WorkerList>> {
    let n = name.clone();
    let reply = s
        .driver
        .request(move |req| {
            if on {
                Input::DrainWorker { req, name: n }
            } else {
                Input::ResumeWorker { req, name: n }
            }
        })
        .await
        .map_err(|_| gone())?;
    match reply {
        Reply::Drain(Ok(())) => {
            if !on {
                s.workers.resumed(&name);
            }
            let list = s.driver.workers().await.map_err(|_| gone())?;
            let mut views = s.workers.views(list, now_micros());
            views.retain(|w| w.name == name);
            Ok(Json(WorkerList { workers: views }))
        }
        Reply::Drain(Err(_)) => Err(ApiError::not_found(format!(
            "no connected worker named '{name}'; see drover workers"
        ))
        .into()),
        other => Err(ApiError::internal(format!("unexpected reply {other:?}")).into()),
    }
}

#[utoipa::path(get, path = "/v1/stats", responses((status = 200, body = StatsView)))]
async fn stats(State(s): State<AppState>) -> ApiResult<Json<StatsView>> {
    let counts = s.store.count_by_state().await.map_err(store_err)?;
    let workers = s.driver.workers().await.map_err(|_| gone())?.len() as u32;
    Ok(Json(StatsView {
        tasks_by_state: counts
            .into_iter()
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect(),
        workers,
    }))
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    // Read at scrape time; a failed read leaves the previous values.
    match s.store.count_by_state().await {
        Ok(counts) => s.metrics.set_task_counts(&counts),
        Err(e) => tracing::warn!(error = %e, "metrics: counting tasks failed"),
    }
    if let Ok(list) = s.driver.workers().await {
        s.metrics
            .set_worker_counts(&s.workers.counts(list, now_micros()));
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render(),
    )
}

async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError(ApiError::not_found(format!(
        "no such endpoint {}; see /openapi.json",
        uri.path()
    )))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Drover", description = "Distributed task scheduler REST API"),
    paths(
        submit,
        submit_batch,
        list,
        task,
        cancel,
        logs,
        workers,
        drain,
        resume,
        stats,
        healthz,
        crate::events::sse,
        crate::webhooks::create,
        crate::webhooks::list,
        crate::webhooks::remove,
        crate::webhooks::deliveries
    ),
    components(schemas(
        ApiError,
        ErrorCode,
        SubmitRequest,
        BatchSubmitRequest,
        BatchSubmitResponse,
        TaskView,
        AttemptView,
        SpecView,
        TaskList,
        LogsView,
        WorkerView,
        WorkerList,
        StatsView,
        Health,
        drover_api::events::EventView,
        drover_api::events::WebhookCreate,
        drover_api::events::WebhookView,
        drover_api::events::WebhookList,
        drover_api::events::DeliveryView,
        drover_api::events::DeliveryList
    ))
)]
pub struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::flows::FlowApi::openapi());
    doc.merge(crate::schedules::ScheduleApi::openapi());
    Json(doc)
}
