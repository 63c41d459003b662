//! The audit log: every state-changing request under `/v1` and every refused request (401,
//! 403, 421, 429) is recorded with its time, token, remote address, operation, object and
//! status. Records are written by one task in batches, off the request's path; a request
//! waits only when that writer is far behind (a bounded queue), so none is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use drover_api::audit::{AuditEntry, AuditList, AuditParams};
use drover_api::rest::rfc3339;
use drover_store::{AuditQuery, AuditRecord, Store};
use tokio::sync::mpsc;

use crate::clock::now_micros;
use crate::http::{ApiQuery, ApiResult, AppState, Caller};

/// Records waiting for the writer before requests wait for it.
const QUEUE: usize = 8192;
/// Most records written in one transaction.
const BATCH: usize = 4096;
/// How long the writer gathers records after the first before it writes them: the audit log
/// costs the store one transaction (one sync to disk, and the writer's lock, which the
/// scheduler's commits wait for) per `LINGER` at most, not one per request. Records are
/// written after their request was answered anyway; this only widens that window.
const LINGER: Duration = Duration::from_millis(50);

/// Who made a request, as the auth guard found it; it puts this in the response's extensions
/// (refusals included) so the log can name the token.
#[derive(Clone, Debug)]
pub struct AuditActor {
    pub token: String,
    pub role: String,
}

/// The sending side of the log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditRecord>,
}

impl AuditLog {
    /// Starts the writer; it ends when every `AuditLog` is dropped, after writing the rest.
    pub fn start(store: Arc<dyn Store>) -> AuditLog {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(store, rx));
        AuditLog { tx }
    }

    async fn record(&self, r: AuditRecord) {
        if self.tx.send(r).await.is_err() {
            tracing::error!("the audit writer is gone; a record was lost");
        }
    }
}

async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::Receiver<AuditRecord>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // Let the records of the next `LINGER` gather without waking this task for each,
        // then take them all.
        if batch.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
        }
        let records = std::mem::take(&mut batch);
        // A store hiccup must not lose the records: retry until they are written.
        let mut delay = Duration::from_millis(50);
        while let Err(e) = store.append_audit(records.clone()).await {
            tracing::warn!(error = %e, "writing the audit log failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

fn is_refusal(s: StatusCode) -> bool {
    matches!(s.as_u16(), 401 | 403 | 421 | 429)
}

/// The middleware: runs the request, then records it if it changed state or was refused.
pub async fn record(State(log): State<AuditLog>, req: Request, next: Next) -> Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let object = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let operation = format!("{} {}", req.method(), route.as_deref().unwrap_or(&object));
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|r| r.0.to_string());
    let resp = next.run(req).await;
    let status = resp.status();
    if (changes && object.starts_with("/v1/")) || is_refusal(status) {
        let actor = resp.extensions().get::<AuditActor>();
        log.record(AuditRecord {
            seq: 0,
            at: now_micros(),
            token: actor.map(|a| a.token.clone()),
            role: actor.map(|a| a.role.clone()),
            remote: remote.unwrap_or_else(|| "unknown".into()),
            operation,
            object,
            status: status.as_u16(),
        })
        .await;
    }
    resp
}

/// The OpenAPI part of the audit endpoint.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list), components(schemas(AuditEntry, AuditList)))]
pub struct AuditApi;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/audit", get(list))
}

#[utoipa::path(get, path = "/v1/audit", params(AuditParams),
    responses((status = 200, body = AuditList), (status = 400, body = drover_api::ApiError)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Caller(scope): Caller,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditList>> {
    scope.require_all("the audit log (it records every namespace)")?;
    let (since, limit) = p.validate(now_micros())?;
    let query = AuditQuery {
        since,
        token: p.token.clone(),
        before: p.before,
        limit,
    };
    let records = s.store.audit(&query).await?;
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    Ok(Json(AuditList {
        records: records.into_iter().map(entry).collect(),
        next,
    }))
}

fn entry(r: AuditRecord) -> AuditEntry {
    AuditEntry {
        seq: r.seq,
        at: rfc3339(r.at),
        token: r.token,
        role: r.role,
        remote: r.remote,
        operation: r.operation,
        object: r.object,
        status: r.status,
    }
}
