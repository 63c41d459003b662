//! `GET /v1/cluster`, and the gate in front of every route: on a standby, what only the
//! leader can do (every write, and the reads of the core's live state: workers, queues,
//! schedules, stats) gets 503 with `Retry-After` and the leader's address in
//! `x-drover-leader`; other reads are served here, from the store.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use drover_api::cluster::{ClusterMember, ClusterView, LEADER_HEADER};
use drover_api::rest::rfc3339;
use drover_api::ApiError;

use super::Cluster;
use crate::clock::now_micros;
use crate::health::writes_store;
use crate::http::{ApiResult, AppState, HttpError};

/// Reads answered from the core's live state, which only the leader has.
const LEADER_READS: &[&str] = &[
    "/v1/workers",
    "/v1/queues",
    "/v1/queues/{name}",
    "/v1/schedules",
    "/v1/schedules/{name}",
    "/v1/stats",
];

#[derive(utoipa::OpenApi)]
#[openapi(paths(cluster), components(schemas(ClusterView, ClusterMember)))]
pub struct ClusterApi;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/cluster", get(cluster))
}

/// The servers sharing this store: each one's role and when it was last seen, the epoch and
/// the lease's age. Any member answers, from the store.
#[utoipa::path(get, path = "/v1/cluster", responses(
    (status = 200, body = ClusterView),
    (status = 503, body = ApiError, description = "the store is unreachable")))]
async fn cluster(State(s): State<AppState>) -> ApiResult<Json<ClusterView>> {
    let view = s.store.cluster().await?;
    let now = now_micros();
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let members = view
        .members
        .iter()
        .map(|m| ClusterMember {
            name: m.name.clone(),
            address: m.address.clone(),
            role: m.role.as_str().to_string(),
            last_seen: rfc3339(now - i64::try_from(m.last_seen.as_micros()).unwrap_or(0)),
            last_seen_ms: ms(m.last_seen),
            stale: m.stale,
        })
        .collect();
    Ok(Json(ClusterView {
        members,
        epoch: view.epoch,
        leader: view.leader,
        lease_age_ms: view.lease_age.map(ms),
        lease_ms: ms(s.cluster.lease),
        this: s.cluster.me.name.clone(),
    }))
}

/// Whether only the leader can answer `method` on the matched route `path`.
pub fn leader_only(method: &Method, path: Option<&str>) -> bool {
    writes_store(method, path)
        || (matches!(*method, Method::GET | Method::HEAD)
            && path.is_some_and(|p| LEADER_READS.contains(&p)))
}

/// The middleware (see the module's doc).
pub async fn gate(State(cluster): State<Arc<Cluster>>, req: Request, next: Next) -> Response {
    if cluster.is_leader() {
        return next.run(req).await;
    }
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    let mut resp = if leader_only(req.method(), path) {
        HttpError(cluster.not_leader()).into_response()
    } else {
        next.run(req).await
    };
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
        if let Some(v) = cluster
            .leader_address()
            .and_then(|a| HeaderValue::from_str(&a).ok())
        {
            resp.headers_mut().insert(LEADER_HEADER, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_live_reads_need_the_leader() {
        assert!(leader_only(&Method::POST, Some("/v1/tasks")));
        assert!(leader_only(&Method::PUT, Some("/v1/queues/{name}")));
        assert!(leader_only(&Method::POST, Some("/v1/tokens")));
        assert!(leader_only(&Method::GET, Some("/v1/workers")));
        assert!(leader_only(&Method::GET, Some("/v1/queues/{name}")));
        assert!(!leader_only(&Method::GET, Some("/v1/tasks/{id}")));
        assert!(!leader_only(&Method::GET, Some("/v1/tasks/{id}/logs")));
        assert!(!leader_only(&Method::GET, Some("/v1/events")));
        assert!(!leader_only(&Method::GET, Some("/v1/cluster")));
        assert!(!leader_only(&Method::POST, Some("/v1/session")));
        // The worker stream answers for itself (UNAVAILABLE with the leader in metadata).
        assert!(!leader_only(
            &Method::POST,
            Some("/drover.v1.WorkerService/{*method}")
        ));
    }
}
