//! Errors as HTTP responses: an `ApiError` with its status, and the one mapping of store and
//! driver failures to it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use drover_api::{limits, ApiError, ErrorCode};
use drover_core::Reply;
use drover_store::StoreError;

use crate::driver::DriverError;

/// What a 503 or 429 tells the client to wait before retrying, in seconds (the edge's rate
/// limiter sets its own).
const RETRY_AFTER_SECS: HeaderValue = HeaderValue::from_static("1");

/// An `ApiError` as an HTTP response: its status and the JSON body.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

pub type ApiResult<T> = Result<T, HttpError>;

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

/// By kind: only a busy or unreachable store is worth a retry; the details of the others
/// are in the server log.
impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store access failed");
        HttpError(match e {
            StoreError::Unavailable(_) => {
                ApiError::new(ErrorCode::Unavailable, format!("{e}; retry shortly"))
            }
            StoreError::Corrupt(_) => ApiError::internal("store corrupt; see the server log"),
            StoreError::Backend(_) => ApiError::internal(format!("{e}; see the server log")),
            StoreError::Fenced { .. } => ApiError::new(
                ErrorCode::Unavailable,
                format!("{e}: this server no longer leads; retry against the leader"),
            ),
        })
    }
}

/// 503 only when nothing was changed (a busy driver never got the request, a gone one never
/// took it); a request the driver took but never answered (it stepped down or stopped) may
/// have committed, so it is a 500 that says so: clients must not repeat it blindly.
impl From<DriverError> for HttpError {
    fn from(e: DriverError) -> Self {
        if e == DriverError::Unanswered {
            return HttpError(ApiError::internal(
                "the scheduler stopped before answering (it stepped down or shut down): the                  request may or may not have taken effect; look it up (or repeat it with the                  same idempotency key) before trying again",
            ));
        }
        HttpError(ApiError::new(
            ErrorCode::Unavailable,
            match e {
                DriverError::Gone => "the scheduler is shutting down; retry against another server",
                DriverError::Busy => {
                    "the scheduler is too busy to take the request (its inbox is full): nothing \
                     was changed; retry after Retry-After"
                }
                DriverError::Unanswered => unreachable!("answered above"),
            },
        ))
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(self.0)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, RETRY_AFTER_SECS);
        }
        resp
    }
}

/// A body over `limits::MAX_BODY_BYTES`, however it was noticed.
pub fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "request body over {} bytes; split it",
            limits::MAX_BODY_BYTES
        ),
    )
}

/// A failure after a submit was committed (reading the result back): never a 503 or 429,
/// which promise that nothing was stored and invite the same submit again.
pub fn after_commit(HttpError(e): HttpError, what: &str) -> HttpError {
    if !matches!(
        e.code,
        ErrorCode::Unavailable | ErrorCode::ResourceExhausted
    ) {
        return HttpError(e);
    }
    HttpError(ApiError::internal(format!(
        "{what} was stored, but reading it back failed ({}); do not submit it again",
        e.message
    )))
}

/// The driver answered with a reply of another request kind: a bug, not the client's fault.
pub fn unexpected(reply: Reply) -> HttpError {
    HttpError(ApiError::internal(format!("unexpected reply {reply:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: impl Into<HttpError>) -> (StatusCode, Option<HeaderValue>) {
        let r = e.into().into_response();
        (r.status(), r.headers().get(header::RETRY_AFTER).cloned())
    }

    #[test]
    fn store_errors_map_by_kind() {
        let retry = Some(RETRY_AFTER_SECS);
        let busy = StoreError::Unavailable("database is locked".into());
        assert_eq!(
            status(busy),
            (StatusCode::SERVICE_UNAVAILABLE, retry.clone())
        );
        let corrupt = StoreError::Corrupt("bad row".into());
        assert_eq!(status(corrupt), (StatusCode::INTERNAL_SERVER_ERROR, None));
        let other = StoreError::Backend("disk full".into());
        assert_eq!(status(other), (StatusCode::INTERNAL_SERVER_ERROR, None));
        assert_eq!(
            status(DriverError::Gone),
            (StatusCode::SERVICE_UNAVAILABLE, retry.clone())
        );
        assert_eq!(
            status(DriverError::Busy),
            (StatusCode::SERVICE_UNAVAILABLE, retry)
        );
        let HttpError(e) = StoreError::Corrupt("row 7: bad state".into()).into();
        assert!(!e.message.contains("retry"), "{}", e.message);
    }
}
