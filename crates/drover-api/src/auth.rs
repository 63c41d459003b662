//! Tokens, roles and dashboard sessions on the wire: `/v1/tokens` and `/v1/session`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiError;

/// What a token may do. Each role includes the one before it, except `worker`:
/// viewer reads; submitter also submits, cancels and reruns; operator also manages queues,
/// schedules and worker drain/resume; admin may do everything (tokens, webhooks, and opening a
/// worker stream too); worker only opens the worker stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Submitter,
    Operator,
    Admin,
    Worker,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Submitter,
        Role::Operator,
        Role::Admin,
        Role::Worker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Submitter => "submitter",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Worker => "worker",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Longest token name.
pub const MAX_TOKEN_NAME: usize = 64;

/// A token name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
pub fn check_token_name(name: &str) -> Result<(), ApiError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > MAX_TOKEN_NAME
        || !name.chars().all(ok_char)
        || name.starts_with(['.', '-'])
    {
        return Err(ApiError::invalid(
            "name",
            "must be 1 to 64 of A-Z a-z 0-9 . _ - (not starting with . or -)",
        ));
    }
    Ok(())
}

/// `POST /v1/tokens`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    #[schema(max_length = 64, pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    pub role: Role,
    /// Lifetime from now, e.g. `30d`, `12h`; absent: never expires.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// A token as listed: everything but the secret, which is never stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub name: String,
    pub role: Role,
    /// The namespaces the token is limited to (empty: all).
    // TODO(namespaces): set by `--namespace` once namespaces exist.
    pub namespaces: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; null: never expires.
    pub expires_at: Option<String>,
}

/// The answer to `POST /v1/tokens`: the only time the secret is shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub name: String,
    pub role: Role,
    pub namespaces: Vec<String>,
    pub expires_at: Option<String>,
    /// Send as `Authorization: Bearer <secret>`. Shown once; only its hash is stored.
    pub secret: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// `POST /v1/session`: a token, or the one-time code of a login link from `drover up`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionCreate {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

/// Who the caller is (`GET /v1/session`, and the answer to a login).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// The token's name.
    pub name: String,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_names() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(Role::parse("root"), None);
        for ok in ["admin", "ci-bot", "a.b_c", "x"] {
            assert!(check_token_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "-x", ".x", "a b", "a/b", "é", long.as_str()] {
            assert!(check_token_name(bad).is_err(), "{bad}");
        }
    }
}
