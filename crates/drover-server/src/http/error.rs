//! Errors as HTTP responses: an `ApiError` with its status, and the one mapping of store and
//! driver failures to it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use drover_api::{limits, ApiError, ErrorCode};
use drover_core::Reply;
use drover_store::StoreError;

use crate::driver::DriverGone;

/// What a 503 tells the client to wait before retrying, in seconds.
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

impl From<DriverGone> for HttpError {
    fn from(_: DriverGone) -> Self {
        HttpError(ApiError::new(
            ErrorCode::Unavailable,
            "the scheduler is shutting down; retry against another server",
        ))
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(self.0)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
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
        assert_eq!(status(DriverGone), (StatusCode::SERVICE_UNAVAILABLE, retry));
        let HttpError(e) = StoreError::Corrupt("row 7: bad state".into()).into();
        assert!(!e.message.contains("retry"), "{}", e.message);
    }
}
