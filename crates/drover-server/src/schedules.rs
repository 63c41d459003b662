//! REST adapter for schedules (`/v1/schedules`). Firing is decided in the core from `now`;
//! this only validates, asks the driver and reads.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_api::flow::parse_time;
use drover_api::namespace::{self, NamespaceFilter, NamespaceQuery, Scope};
use drover_api::rest::rfc3339;
use drover_api::schedule::*;
use drover_api::ApiError;
use drover_core::schedule::{fire_id, fire_key, Trigger, MAX_BACKFILL};
use drover_core::{
    Input, Reply, ScheduleError, ScheduleOp, ScheduleSummary, Scoped, TaskId, TaskSpec,
};

use crate::clock::now_micros;
use crate::http::{unexpected, ApiJson, ApiQuery, ApiResult, AppState, Caller, HttpError};

/// The OpenAPI part of these endpoints, merged into `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, add, one, remove, pause, resume, run, backfill),
    components(schemas(
        ScheduleRequest,
        ScheduleView,
        ScheduleList,
        BackfillRequest,
        FiredTasks
    ))
)]
pub struct ScheduleApi;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/schedules", get(list).post(add))
        .route("/v1/schedules/{name}", get(one).delete(remove))
        .route("/v1/schedules/{name}/pause", post(pause))
        .route("/v1/schedules/{name}/resume", post(resume))
        .route("/v1/schedules/{name}/run", post(run))
        .route("/v1/schedules/{name}/backfill", post(backfill))
}

fn view(s: &ScheduleSummary) -> ScheduleView {
    let r = &s.record;
    let (cron, tz, every_ms, delay) = match &r.spec.trigger {
        Trigger::Cron { expr, tz } => (Some(expr.clone()), Some(tz.clone()), None, None),
        Trigger::Every { every_ms, .. } => (None, None, Some(*every_ms), None),
        Trigger::DelayAfterPrevious { delay_ms } => (None, None, None, Some(*delay_ms)),
    };
    ScheduleView {
        namespace: r.spec.namespace().to_string(),
        name: r.spec.name.clone(),
        cron,
        tz,
        every_ms,
        delay_after_previous_ms: delay,
        overlap: r.spec.overlap.as_str().into(),
        misfire: r.spec.misfire.as_str().into(),
        max_catch_up: r.spec.max_catch_up,
        next_fire_at: s.next_fire_at.map(rfc3339),
        paused: r.paused,
        last_fire_at: r.last_slot.map(rfc3339),
        last_task_id: r.last_task.map(|t| t.to_string()),
        running: s.running,
        queue: r.spec.template.queue.clone(),
        argv: match &r.spec.template.spec {
            TaskSpec::Exec { argv, .. } => argv.clone(),
            TaskSpec::Noop | TaskSpec::Handler { .. } | TaskSpec::InStore { .. } => vec![],
        },
        created_at: rfc3339(r.created_at),
    }
}

async fn summaries(s: &AppState) -> ApiResult<Vec<ScheduleSummary>> {
    Ok(s.driver.query(|c| c.schedules()).await?)
}

async fn find(s: &AppState, key: &Scoped) -> ApiResult<ScheduleSummary> {
    summaries(s)
        .await?
        .into_iter()
        .find(|x| x.record.spec.key() == *key)
        .ok_or_else(|| not_found(&key.name))
}

fn not_found(name: &str) -> HttpError {
    HttpError(ApiError::not_found(format!("no schedule named '{name}'")))
}

/// The schedule a route names (`?namespace=`); 404 for one the caller may not see.
fn key(scope: &Scope, q: &NamespaceQuery, name: &str) -> ApiResult<Scoped> {
    let ns = scope.named(q)?.ok_or_else(|| not_found(name))?;
    Ok(Scoped::new(&ns, name))
}

/// Asks the core to carry out a schedule operation; returns the tasks it fired.
async fn ask(s: &AppState, op: ScheduleOp) -> ApiResult<Vec<TaskId>> {
    match s.driver.request(|req| Input::Schedule { req, op }).await? {
        Reply::Scheduled(Ok(ids)) => Ok(ids),
        Reply::Scheduled(Err(ScheduleError::NotFound(n))) => {
            Err(ApiError::not_found(format!("no schedule named '{n}'")).into())
        }
        Reply::Scheduled(Err(ScheduleError::BadTrigger(m))) => {
            Err(ApiError::invalid("cron", m).into())
        }
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/v1/schedules", params(NamespaceFilter),
    responses((status = 200, body = ScheduleList), (status = 400, body = ApiError)))]
async fn list(
    State(s): State<AppState>,
    Caller(scope): Caller,
    ApiQuery(q): ApiQuery<NamespaceFilter>,
) -> ApiResult<Json<ScheduleList>> {
    let scope = scope.narrowed(q.namespace.as_deref(), "namespace")?;
    Ok(Json(ScheduleList {
        schedules: summaries(&s)
            .await?
            .iter()
            .filter(|x| scope.allows(x.record.spec.namespace()))
            .map(view)
            .collect(),
    }))
}

#[utoipa::path(post, path = "/v1/schedules", request_body = ScheduleRequest,
    responses((status = 201, body = ScheduleView), (status = 400, body = ApiError)))]
async fn add(
    State(s): State<AppState>,
    Caller(scope): Caller,
    ApiJson(req): ApiJson<ScheduleRequest>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    scope.check(&namespace::or_default(
        "namespace",
        req.namespace.as_deref(),
    )?)?;
    let spec = req.validate_sealed(now_micros(), s.secrets.as_ref())?;
    let key = spec.key();
    ask(&s, ScheduleOp::Put(spec)).await?;
    Ok((StatusCode::CREATED, Json(view(&find(&s, &key).await?))))
}

#[utoipa::path(get, path = "/v1/schedules/{name}", params(("name" = String, Path, description = "schedule", pattern = r"^[A-Za-z0-9_.:/-]{1,200}$"), NamespaceQuery),
    responses((status = 200, body = ScheduleView), (status = 404, body = ApiError)))]
async fn one(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<NamespaceQuery>,
) -> ApiResult<Json<ScheduleView>> {
    Ok(Json(view(&find(&s, &key(&scope, &q, &name)?).await?)))
}

#[utoipa::path(delete, path = "/v1/schedules/{name}", params(("name" = String, Path, description = "schedule", pattern = r"^[A-Za-z0-9_.:/-]{1,200}$"), NamespaceQuery),
    responses((status = 204), (status = 404, body = ApiError)))]
async fn remove(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<NamespaceQuery>,
) -> ApiResult<StatusCode> {
    ask(&s, ScheduleOp::Delete(key(&scope, &q, &name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/schedules/{name}/pause", params(("name" = String, Path, description = "schedule", pattern = r"^[A-Za-z0-9_.:/-]{1,200}$"), NamespaceQuery),
    responses((status = 200, body = ScheduleView), (status = 404, body = ApiError)))]
async fn pause(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<NamespaceQuery>,
) -> ApiResult<Json<ScheduleView>> {
    let key = key(&scope, &q, &name)?;
    ask(&s, ScheduleOp::Pause(key.clone())).await?;
    Ok(Json(view(&find(&s, &key).await?)))
}

#[utoipa::path(post, path = "/v1/schedules/{name}/resume", params(("name" = String, Path, description = "schedule", pattern = r"^[A-Za-z0-9_.:/-]{1,200}$"), NamespaceQuery),
    responses((status = 200, body = ScheduleView), (status = 404, body = ApiError)))]
async fn resume(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<NamespaceQuery>,
) -> ApiResult<Json<ScheduleView>> {
    let key = key(&scope, &q, &name)?;
    ask(&s, ScheduleOp::Resume(key.clone())).await?;
    Ok(Json(view(&find(&s, &key).await?)))
}

fn fired(ids: Vec<TaskId>) -> ApiResult<Json<FiredTasks>> {
    Ok(Json(FiredTasks {
        ids: ids.iter().map(|i| i.to_string()).collect(),
        next: None,
    }))
}

#[utoipa::path(post, path = "/v1/schedules/{name}/run", params(("name" = String, Path, description = "schedule", pattern = r"^[A-Za-z0-9_.:/-]{1,200}$"), NamespaceQuery),
    responses((status = 200, body = FiredTasks), (status = 404, body = ApiError)))]
async fn run(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<NamespaceQuery>,
) -> ApiResult<Json<FiredTasks>> {
    fired(ask(&s, ScheduleOp::Run(key(&scope, &q, &name)?)).await?)
}

#[utoipa::path(post, path = "/v1/schedules/{name}/backfill", params(("name" = String, Path, description = "schedule", pattern = r"^[A-Za-z0-9_.:/-]{1,200}$"), NamespaceQuery),
    request_body = BackfillRequest,
    responses((status = 200, body = FiredTasks), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
async fn backfill(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<NamespaceQuery>,
    ApiJson(req): ApiJson<BackfillRequest>,
) -> ApiResult<Json<FiredTasks>> {
    let name = key(&scope, &q, &name)?;
    let from = parse_time(&req.from).map_err(|m| HttpError(ApiError::invalid("from", m)))?;
    let to = parse_time(&req.to).map_err(|m| HttpError(ApiError::invalid("to", m)))?;
    let sched = find(&s, &name).await?;
    let compiled = sched
        .record
        .spec
        .trigger
        .compile()
        .map_err(|m| HttpError(ApiError::internal(m)))?;
    // Past slots only; at most MAX_BACKFILL of them, and where to go on from.
    let to = to.min(now_micros());
    let (slots, more) = compiled.slots(from.saturating_sub(1), to, MAX_BACKFILL);
    let (to, next) = match slots.last() {
        Some(&last) if more => (last, compiled.next_after(last).map(rfc3339)),
        _ => (to, None),
    };
    // Slots whose fire already happened (its task is stored) are not fired again.
    let mut skip = Vec::new();
    for slot in slots {
        if s.store
            .task(fire_id(&fire_key(&name), slot, 0))
            .await?
            .is_some()
        {
            skip.push(slot);
        }
    }
    let op = ScheduleOp::Backfill {
        name,
        from,
        to,
        skip,
    };
    let Json(mut tasks) = fired(ask(&s, op).await?)?;
    tasks.next = next;
    Ok(Json(tasks))
}
