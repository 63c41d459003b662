//! Whether the store takes commits. The driver marks the server *degraded* when a commit
//! fails (it retries the batch for `--store-retry`) and clears the mark when one succeeds;
//! meanwhile `/readyz` answers 503 and the edge refuses state-changing requests at once
//! (`gate`) instead of letting them wait behind the failing batch. Reads keep working.
//! Generic over the store: it knows only that a commit failed, and why.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use drover_api::{ApiError, ErrorCode};
use drover_store::StoreError;

use crate::auth::roles::{permission_for, Permission};
use crate::http::HttpError;

/// The driver's view of the store, shared with the edge.
#[derive(Debug, Default)]
pub struct StoreHealth {
    degraded: AtomicBool,
    failure: Mutex<Option<Failure>>,
}

#[derive(Debug)]
struct Failure {
    since: Instant,
    attempts: u32,
    error: String,
}

impl StoreHealth {
    pub fn new() -> Arc<StoreHealth> {
        Arc::new(StoreHealth::default())
    }

    /// A commit failed: degraded since `since` (the batch's first failure), `attempts` tries.
    pub fn failing(&self, since: Instant, attempts: u32, error: &StoreError) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(Failure {
            since,
            attempts,
            error: error.to_string(),
        });
        self.degraded.store(true, Ordering::Release);
    }

    /// A commit succeeded.
    pub fn recovered(&self) {
        self.degraded.store(false, Ordering::Release);
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// Why the server is degraded (`None` when it is not): for how long commits have failed,
    /// how often, and the last error.
    pub fn why(&self) -> Option<String> {
        if !self.is_degraded() {
            return None;
        }
        let f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        let f = f.as_ref()?;
        Some(format!(
            "commits have failed for {:.1}s ({} attempts; last: {})",
            f.since.elapsed().as_secs_f64(),
            f.attempts,
            f.error
        ))
    }

    /// The 503 of a state-changing request while degraded.
    fn refusal(&self) -> Option<ApiError> {
        let why = self.why()?;
        Some(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "the server's store is unavailable, so nothing was changed; retry later \
                 (see Retry-After): {why}"
            ),
        ))
    }
}

/// Whether a request (method, matched route) needs a store write to succeed: a
/// state-changing method on an operation that needs `Submit`, `Operate` or `Admin` (submits,
/// cancels, workflows, queues, schedules, drains, webhooks, tokens). Logging in and out, the
/// worker and event streams and every read do not.
pub fn writes_store(method: &Method, path: Option<&str>) -> bool {
    let unsafe_method = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    unsafe_method
        && path.is_some()
        && matches!(
            permission_for(method, path),
            Permission::Submit | Permission::Operate | Permission::Admin
        )
}

/// The middleware: while degraded, a request that needs a store write gets 503 with
/// `Retry-After` at once, and changes nothing. Requests already in the driver wait for the
/// retried commit and are answered after it.
pub async fn gate(State(health): State<Arc<StoreHealth>>, req: Request, next: Next) -> Response {
    if health.is_degraded() {
        let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
        if writes_store(req.method(), path) {
            if let Some(e) = health.refusal() {
                return HttpError(e).into_response();
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_state_changing_operations_need_the_store() {
        let post = Method::POST;
        for p in [
            "/v1/tasks",
            "/v1/tasks:batch",
            "/v1/tasks/{id}/cancel",
            "/v1/workflows",
            "/v1/schedules/{name}/run",
            "/v1/workers/{name}/drain",
            "/v1/tokens",
            "/v1/webhooks",
        ] {
            assert!(writes_store(&post, Some(p)), "{p}");
        }
        assert!(writes_store(&Method::PUT, Some("/v1/queues/{name}")));
        assert!(writes_store(&Method::DELETE, Some("/v1/tokens/{name}")));
        assert!(!writes_store(&Method::GET, Some("/v1/tasks")));
        assert!(!writes_store(&post, Some("/v1/session")));
        assert!(!writes_store(
            &post,
            Some("/drover.v1.WorkerService/{*method}")
        ));
        assert!(!writes_store(&post, None));
    }

    #[test]
    fn degraded_until_a_commit_succeeds() {
        let h = StoreHealth::new();
        assert!(h.why().is_none() && h.refusal().is_none());
        h.failing(
            Instant::now(),
            2,
            &StoreError::Unavailable("database is locked".into()),
        );
        assert!(h.is_degraded());
        let e = h.refusal().unwrap();
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(e.message.contains("database is locked"), "{}", e.message);
        assert!(e.message.contains("nothing was changed"), "{}", e.message);
        h.recovered();
        assert!(!h.is_degraded() && h.why().is_none());
    }
}
