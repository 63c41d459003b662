//! The edge's one guard, in front of every route (REST, dashboard, gRPC): the `Host` check
//! (421), the `Origin` check of state-changing requests (403), then who is calling (bearer
//! token or dashboard session; 401) and whether their role may (`roles.rs`; 403). gRPC
//! callers get the matching gRPC status instead of a JSON body.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use drover_api::{ApiError, ErrorCode};

use super::hosts::host_part;
use super::roles::{allows, permission_for, Permission};
use super::sessions::COOKIE;
use super::{Auth, Identity};
use crate::audit::AuditActor;
use crate::http::HttpError;

pub async fn guard(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let grpc = is_grpc(req.headers());
    let who = match check(&auth, &req) {
        Ok(who) => who,
        Err(r) => {
            let Refusal { error, who } = *r;
            let mut resp = refuse(error, grpc);
            if let Some(w) = who {
                resp.extensions_mut().insert(actor(&w));
            }
            return resp;
        }
    };
    if let Some(w) = &who {
        req.extensions_mut().insert(w.clone());
    }
    let mut resp = next.run(req).await;
    if let Some(w) = &who {
        resp.extensions_mut().insert(actor(w));
    }
    resp
}

/// A refused request: why, and who asked when that was known (for the audit log).
struct Refusal {
    error: ApiError,
    who: Option<Identity>,
}

fn refusal(error: ApiError, who: Option<Identity>) -> Box<Refusal> {
    Box::new(Refusal { error, who })
}

/// Who made the request, for the audit log (which wraps this guard).
fn actor(who: &Identity) -> AuditActor {
    AuditActor {
        token: who.name.clone(),
        role: who.role.to_string(),
    }
}

/// The caller, `None` for a public route, or why the request is refused (with the caller, when
/// it was known).
fn check(auth: &Auth, req: &Request) -> Result<Option<Identity>, Box<Refusal>> {
    let headers = req.headers();
    let authority = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if let Some(a) = &authority {
        if !auth.hosts.allows(a) {
            let msg = format!(
                "this server does not serve the host '{}'; add it with --allowed-host",
                host_part(a)
            );
            return Err(refusal(ApiError::new(ErrorCode::Misdirected, msg), None));
        }
    }
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method {
        check_origin(headers, authority.as_deref()).map_err(|e| refusal(e, None))?;
    }
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    let perm = permission_for(req.method(), path);
    if perm == Permission::Public {
        return Ok(None);
    }
    let who = identify(auth, headers, unsafe_method).map_err(|e| refusal(e, None))?;
    if !allows(who.role, perm) {
        let msg = format!(
            "the token '{}' (role {}) may not do this; it needs a role with the {perm:?} \
             permission",
            who.name, who.role
        );
        return Err(refusal(
            ApiError::new(ErrorCode::PermissionDenied, msg),
            Some(who),
        ));
    }
    Ok(Some(who))
}

/// A state-changing request from a browser page must come from this server's own origin.
fn check_origin(headers: &HeaderMap, authority: Option<&str>) -> Result<(), ApiError> {
    let foreign = || {
        ApiError::new(
            ErrorCode::PermissionDenied,
            "cross-origin request refused: state-changing requests must come from this \
             server's own pages",
        )
    };
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site")
    {
        return Err(foreign());
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| foreign())?;
    let origin_authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(foreign)?;
    match authority {
        Some(a) if a.eq_ignore_ascii_case(origin_authority) => Ok(()),
        _ => Err(foreign()),
    }
}

/// The bearer token, else the session cookie. A state-changing request authenticated by the
/// cookie must carry an `Origin` (browsers send one; its value was checked above).
fn identify(auth: &Auth, headers: &HeaderMap, unsafe_method: bool) -> Result<Identity, ApiError> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().unwrap_or("");
        let secret = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "the Authorization header must be 'Bearer <token>'",
                )
            })?;
        return auth.bearer(secret.trim());
    }
    if let Some(cookie) = session_cookie(headers) {
        if unsafe_method && !headers.contains_key(header::ORIGIN) {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "a state-changing request with a session cookie must carry an Origin header",
            ));
        }
        return auth.session(&cookie).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "the session ended (logged out, expired, or its token was revoked); log in again",
            )
        });
    }
    if !auth.enabled() {
        return Ok(super::anonymous());
    }
    Err(ApiError::new(
        ErrorCode::Unauthenticated,
        "a token is required: send 'Authorization: Bearer <token>' (drover: --token, \
         DROVER_TOKEN or `drover login`)",
    ))
}

/// The value of the session cookie, if the request has one.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn refuse(e: ApiError, grpc: bool) -> Response {
    if grpc {
        return e.to_status().into_http();
    }
    let mut resp = HttpError(e.clone()).into_response();
    if e.code == ErrorCode::Unauthenticated {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"drover\""),
        );
    }
    resp
}
