//! `/v1/tokens` (admin: create, list, revoke) and `/v1/session` (the dashboard's login: a
//! token or a one-time code in, an HttpOnly SameSite=Strict cookie out; logout; who am I).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use drover_api::auth::{
    Role, SessionCreate, SessionView, TokenCreate, TokenCreated, TokenList, TokenView,
};
use drover_api::namespace::Scope;
use drover_api::rest::{parse_duration_ms, rfc3339};
use drover_api::{ApiError, ErrorCode};
use drover_store::TokenRecord;

use super::layer::session_cookie;
use super::sessions::{COOKIE, SESSION_TTL_US};
use super::Identity;
use crate::clock::now_micros;
use crate::http::{ApiJson, ApiResult, AppState, Caller, HttpError};
use crate::tls::PeerCert;

/// The OpenAPI part of the token and session endpoints.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, list, revoke, login, whoami, logout),
    components(schemas(
        Role,
        TokenCreate,
        TokenCreated,
        TokenView,
        TokenList,
        SessionCreate,
        SessionView
    ))
)]
pub struct AuthApi;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tokens", post(create).get(list))
        .route("/v1/tokens/{name}", axum::routing::delete(revoke))
        .route("/v1/session", post(login).get(whoami).delete(logout))
}

fn view(t: &TokenRecord) -> Result<TokenView, HttpError> {
    let role = Role::parse(&t.role).ok_or_else(|| {
        HttpError(ApiError::internal(format!(
            "token {} has an unknown role '{}'",
            t.name, t.role
        )))
    })?;
    Ok(TokenView {
        name: t.name.clone(),
        role,
        worker_limits: super::worker_limits_of(t),
        namespaces: t.namespaces.clone(),
        created_at: rfc3339(t.created_at),
        expires_at: t.expires_at.map(rfc3339),
    })
}

#[utoipa::path(post, path = "/v1/tokens", request_body = TokenCreate,
    responses((status = 201, body = TokenCreated, description = "the token with its secret (shown only here)"),
        (status = 400, body = ApiError), (status = 409, body = ApiError)))]
async fn create(
    State(s): State<AppState>,
    Caller(scope): Caller,
    ApiJson(req): ApiJson<TokenCreate>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    drover_api::auth::check_token_name(&req.name)?;
    let namespaces = granted_namespaces(&scope, req.namespaces()?)?;
    let expires_at = match req.expires_in.as_deref() {
        None => None,
        Some(d) => {
            let ms = parse_duration_ms(d).map_err(|m| ApiError::invalid("expires_in", m))?;
            if ms == 0 {
                return Err(ApiError::invalid("expires_in", "must be positive, e.g. 30d").into());
            }
            Some(now_micros() + ms as i64 * 1000)
        }
    };
    let (rec, secret) = s
        .auth
        .create(
            &req.name,
            req.role,
            expires_at,
            &req.worker_limits,
            namespaces,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            worker_limits: super::worker_limits_of(&rec),
            name: rec.name,
            role: req.role,
            namespaces: rec.namespaces,
            expires_at: rec.expires_at.map(rfc3339),
            secret,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/tokens", responses((status = 200, body = TokenList)))]
async fn list(State(s): State<AppState>, Caller(scope): Caller) -> ApiResult<Json<TokenList>> {
    let tokens = s.auth.list().await?;
    Ok(Json(TokenList {
        tokens: tokens
            .iter()
            .filter(|t| within(&scope, t))
            .map(view)
            .collect::<Result<_, _>>()?,
    }))
}

/// What a new token may be limited to: a token of every namespace grants anything; a limited
/// one only some of its own namespaces (all of them when none are asked for), so no token
/// makes a stronger one.
fn granted_namespaces(scope: &Scope, asked: Vec<String>) -> Result<Vec<String>, ApiError> {
    match scope {
        Scope::All => Ok(asked),
        Scope::Only(own) if asked.is_empty() => Ok(own.clone()),
        Scope::Only(_) => {
            for ns in &asked {
                scope.check(ns)?;
            }
            Ok(asked)
        }
    }
}

/// Whether a limited caller may see (list, revoke) a token: only tokens limited to some of
/// its own namespaces.
fn within(scope: &Scope, t: &TokenRecord) -> bool {
    scope.is_all() || (!t.namespaces.is_empty() && t.namespaces.iter().all(|n| scope.allows(n)))
}

#[utoipa::path(delete, path = "/v1/tokens/{name}", params(("name" = String, Path, description = "token name", pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")),
    responses((status = 204, description = "revoked: requests and open streams with it are refused from now on"),
        (status = 404, body = ApiError)))]
async fn revoke(
    State(s): State<AppState>,
    Caller(scope): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let visible = s
        .auth
        .list()
        .await?
        .iter()
        .any(|t| t.name == name && within(&scope, t));
    if visible && s.auth.revoke(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no token named '{name}'")).into())
    }
}

#[utoipa::path(post, path = "/v1/session", request_body = SessionCreate,
    responses((status = 200, body = SessionView, description = "logged in: the session cookie is set"),
        (status = 400, body = ApiError), (status = 401, body = ApiError)))]
async fn login(
    State(s): State<AppState>,
    tls: Option<Extension<PeerCert>>,
    ApiJson(req): ApiJson<SessionCreate>,
) -> ApiResult<Response> {
    let who = match (req.token.as_deref(), req.code.as_deref()) {
        (Some(t), None) => s.auth.bearer(t.trim())?,
        (None, Some(c)) => s.auth.redeem_code(c.trim()).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "this login link was used already or has expired; paste a token instead",
            )
        })?,
        _ => return Err(ApiError::invalid("token", "give exactly one of token and code").into()),
    };
    let Some(hash) = who.hash else {
        // --no-auth: nothing to log in to.
        return Ok(Json(session_view(&who)).into_response());
    };
    let id = s.auth.sessions.create(hash)?;
    // Over TLS (every TLS connection carries a `PeerCert`) the cookie never travels in clear.
    let secure = if tls.is_some() { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL_US / 1_000_000
    );
    tracing::info!(token = %who.name, "dashboard login");
    let mut resp = Json(session_view(&who)).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    Ok(resp)
}

fn session_view(who: &Identity) -> SessionView {
    SessionView {
        name: who.name.clone(),
        role: who.role,
        namespaces: who.namespaces.clone(),
    }
}

#[utoipa::path(get, path = "/v1/session",
    responses((status = 200, body = SessionView), (status = 401, body = ApiError)))]
async fn whoami(Extension(who): Extension<Identity>) -> Json<SessionView> {
    Json(session_view(&who))
}

#[utoipa::path(delete, path = "/v1/session",
    responses((status = 204, description = "logged out: the session ends and its cookie is cleared")))]
async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(c) = session_cookie(&headers) {
        s.auth.sessions.end(&c);
    }
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}
