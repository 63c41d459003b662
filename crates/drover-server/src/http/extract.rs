//! Request decoding: the body limit, and the JSON body and query string extractors. Every
//! rejection becomes an `ApiError` here, once.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use drover_api::namespace::Scope;
use drover_api::{limits, ApiError, ErrorCode};
use serde::de::DeserializeOwned;
use serde_json::{Number, Value};

use super::error::{too_large, HttpError};

/// A JSON body, always an object: 413 when over the limit, else 400 naming what is wrong. A
/// number with a zero fraction (`2.0`) is an integer, as JSON Schema counts it.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, HttpError> {
        let bad = |m: String| HttpError(ApiError::new(ErrorCode::InvalidArgument, m));
        let mut value = match Json::<Value>::from_request(req, state).await {
            Ok(Json(v)) => v,
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                return Err(too_large().into())
            }
            Err(e) => return Err(bad(format!("bad JSON body: {}", e.body_text()))),
        };
        if !value.is_object() {
            return Err(bad("bad JSON body: expected a JSON object".into()));
        }
        whole_numbers(&mut value);
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|e| match e.path().to_string().as_str() {
                "." => bad(format!("bad JSON body: {}", e.inner())),
                path => bad(format!("bad JSON body: {path}: {}", e.inner())),
            })
    }
}

/// Turns the floats of `v` that are whole numbers in range into integers.
fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                *n = Number::from(f as u64);
            } else if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                *n = Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// A query string: 400 naming what is wrong.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| HttpError(ApiError::new(ErrorCode::InvalidArgument, e.body_text())))
    }
}

/// The caller's namespaces (its token's), from the identity the guard put in the request.
pub struct Caller(pub Scope);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        parts
            .extensions
            .get::<crate::auth::Identity>()
            .map(|who| Caller(who.scope()))
            // Every /v1 route is behind the guard, which always names the caller.
            .ok_or_else(|| HttpError(ApiError::internal("request without a caller identity")))
    }
}

/// Refuses a body whose declared length is over the limit before reading any of it, so the
/// client gets its 413 instead of a connection closed mid-upload.
pub async fn refuse_declared_oversize(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits::MAX_BODY_BYTES as u64) {
        return HttpError(too_large()).into_response();
    }
    next.run(req).await
}
