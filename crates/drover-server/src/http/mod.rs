//! The REST edge: every feature's `routes()` (handlers live with their feature), the
//! dashboard, health, the OpenAPI document (each feature's part, the rules joining fields from
//! `drover_api::schema::refine`, the edge's statuses), the fallback, the body limit and the gate
//! that refuses state-changing requests while the store is failing (`health::gate`).

mod error;
mod extract;
mod state;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::get;
use axum::{Json, Router};
use drover_api::rest::Health;
use drover_api::{limits, ApiError, ErrorCode};
use utoipa::OpenApi;

pub use error::{after_commit, unexpected, ApiResult, HttpError};
pub use extract::{ApiJson, ApiQuery, Caller};
pub use state::AppState;

pub fn router(state: AppState) -> Router {
    let health = state.health.clone();
    let cluster = state.cluster.clone();
    Router::new()
        .merge(crate::tasks::routes())
        .merge(crate::workers::routes())
        .merge(crate::events::routes())
        .merge(crate::webhooks::routes())
        .merge(crate::flows::routes())
        .merge(crate::schedules::routes())
        .merge(crate::metrics::routes())
        .merge(crate::audit::routes())
        .merge(crate::auth::routes())
        .merge(crate::cluster::http::routes())
        .merge(crate::dashboard::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(extract::refuse_declared_oversize))
        .layer(axum::middleware::from_fn_with_state(
            health,
            crate::health::gate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            cluster,
            crate::cluster::http::gate,
        ))
        .with_state(state)
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Ready to serve: 503 (with why) while the store refuses commits (`/healthz` stays 200: the
/// process is alive and reads work).
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, body = Health),
    (status = 503, body = ApiError,
        description = "the store is failing commits; state-changing requests get 503 until it recovers")))]
async fn readyz(State(s): State<AppState>) -> ApiResult<Json<Health>> {
    if let Some(why) = s.health.why() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("not ready: the store is unavailable and the server retries it: {why}"),
        )
        .into());
    }
    Ok(Json(Health {
        status: "ok".into(),
    }))
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
    paths(healthz, readyz),
    components(schemas(ApiError, ErrorCode, Health))
)]
struct ApiDoc;

/// The whole REST API: the parts each feature describes, merged.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        crate::tasks::TaskApi::openapi(),
        crate::workers::WorkerApi::openapi(),
        crate::events::EventApi::openapi(),
        crate::webhooks::WebhookApi::openapi(),
        crate::flows::FlowApi::openapi(),
        crate::schedules::ScheduleApi::openapi(),
        crate::audit::AuditApi::openapi(),
        crate::auth::AuthApi::openapi(),
        crate::cluster::http::ClusterApi::openapi(),
    ] {
        doc.merge(part);
    }
    if let Some(components) = doc.components.as_mut() {
        drover_api::schema::refine(components);
    }
    crate::auth::openapi::document(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_states_what_the_validators_check() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let submit = &schemas["SubmitRequest"];
        let queue = &submit["properties"]["queue"];
        assert_eq!(queue["pattern"], drover_api::patterns::name());
        assert_eq!(queue["description"], "Queue name (default `default`).");
        assert_eq!(submit["properties"]["retries"]["maximum"], 100);
        assert!(submit["allOf"].is_array(), "the rules joining fields");
        assert_eq!(
            schemas["ScheduleRequest"]["oneOf"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(schemas["RerunRequest"]["required"][0], "from_failed");
        let params = doc["paths"]["/v1/tasks"]["get"]["parameters"]
            .as_array()
            .unwrap();
        assert!(params.iter().all(|p| p["in"] == "query"), "{params:?}");
        let sse = &doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"];
        assert!(sse.get("text/event-stream").is_some(), "{sse}");
    }
}
