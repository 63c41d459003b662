//! Tokens, roles and dashboard sessions on the wire: `/v1/tokens` and `/v1/session`.

use std::collections::{BTreeMap, HashMap};

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

/// Most kinds, and most labels, a worker token may list.
pub const MAX_WORKER_LIMITS: usize = 64;

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
    pub name: String,
    pub role: Role,
    /// Lifetime from now, e.g. `30d`, `12h`; absent: never expires.
    #[serde(default)]
    pub expires_in: Option<String>,
    /// What a worker registering with this token may claim (absent: anything).
    #[serde(default)]
    pub worker_limits: WorkerLimits,
    /// The namespaces it may see and act in (absent or empty: every namespace). A token
    /// limited to namespaces can only create tokens limited to some of them.
    #[serde(default)]
    #[schema(max_items = 64, value_type = Vec<String>)]
    pub namespaces: Vec<String>,
}

impl TokenCreate {
    /// The namespaces, checked, without duplicates.
    pub fn namespaces(&self) -> Result<Vec<String>, ApiError> {
        let mut out: Vec<String> = Vec::new();
        for ns in &self.namespaces {
            crate::namespace::check("namespaces", ns)?;
            if !out.contains(ns) {
                out.push(ns.clone());
            }
        }
        if out.len() > MAX_TOKEN_NAMESPACES {
            return Err(ApiError::invalid(
                "namespaces",
                format!("at most {MAX_TOKEN_NAMESPACES} namespaces"),
            ));
        }
        Ok(out)
    }
}

/// Most namespaces one token may be limited to.
pub const MAX_TOKEN_NAMESPACES: usize = 64;

/// What a worker registering with a token may claim: a name matching a pattern (`*` matches any
/// run of characters), and only these kinds and labels. An empty part does not limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerLimits {
    /// e.g. `gpu-*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64, pattern = "^[A-Za-z0-9._*-]{1,64}$")]
    pub names: Option<String>,
    /// The worker must declare kinds, all of them among these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Every label the worker declares must be one of these, with the same value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl WorkerLimits {
    /// Limits that no registration passes (what unreadable stored limits become).
    pub fn deny_all() -> Self {
        WorkerLimits {
            names: Some(String::new()),
            ..WorkerLimits::default()
        }
    }

    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(p) = &self.names {
            let ok = (1..=64).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._*-".contains(&b));
            if !ok {
                let m = "a name pattern is 1 to 64 of A-Z a-z 0-9 . _ - and * (any run)";
                return Err(ApiError::invalid("worker_limits.names", m));
            }
        }
        if self.kinds.len() > MAX_WORKER_LIMITS || self.labels.len() > MAX_WORKER_LIMITS {
            let m = format!("at most {MAX_WORKER_LIMITS} kinds and {MAX_WORKER_LIMITS} labels");
            return Err(ApiError::invalid("worker_limits", m));
        }
        Ok(())
    }

    /// Whether a worker registering with this name, kinds and labels stays within the limits;
    /// otherwise what it overstepped.
    pub fn allows(
        &self,
        name: &str,
        kinds: &[String],
        labels: &HashMap<String, String>,
    ) -> Result<(), String> {
        if let Some(p) = self.names.as_deref().filter(|p| !glob(p, name)) {
            return Err(format!("its token allows worker names '{p}', not '{name}'"));
        }
        if !self.kinds.is_empty() {
            if kinds.is_empty() {
                return Err(format!(
                    "its token allows only the kinds {:?}: declare them with --kinds",
                    self.kinds
                ));
            }
            if let Some(k) = kinds.iter().find(|k| !self.kinds.contains(k)) {
                return Err(format!("its token does not allow the kind '{k}'"));
            }
        }
        if !self.labels.is_empty() {
            for (k, v) in labels {
                if self.labels.get(k) != Some(v) {
                    return Err(format!("its token does not allow the label {k}={v}"));
                }
            }
        }
        Ok(())
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Greedy with backtracking to the last star: linear in practice, no recursion.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod worker_limit_tests {
    use super::*;

    #[test]
    fn globs_names_and_limits_kinds_and_labels() {
        assert!(glob("gpu-*", "gpu-1") && glob("*", "x") && glob("a*b*c", "aXbYc"));
        assert!(!glob("gpu-*", "cpu-1") && !glob("", "w") && !glob("a*c", "ab"));
        let l = WorkerLimits {
            names: Some("gpu-*".into()),
            kinds: vec!["render".into()],
            labels: BTreeMap::from([("zone".into(), "a".into())]),
        };
        let none = HashMap::new();
        let zone = |v: &str| HashMap::from([("zone".to_string(), v.to_string())]);
        let render = vec!["render".to_string()];
        assert_eq!(l.allows("gpu-1", &render, &zone("a")), Ok(()));
        assert_eq!(l.allows("gpu-1", &render, &none), Ok(()));
        assert!(l
            .allows("cpu-1", &render, &none)
            .unwrap_err()
            .contains("names"));
        assert!(l
            .allows("gpu-1", &[], &none)
            .unwrap_err()
            .contains("--kinds"));
        assert!(l
            .allows("gpu-1", &["x".into()], &none)
            .unwrap_err()
            .contains("kind 'x'"));
        assert!(l
            .allows("gpu-1", &render, &zone("b"))
            .unwrap_err()
            .contains("zone=b"));
        assert!(WorkerLimits::default()
            .allows("any", &[], &zone("b"))
            .is_ok());
        assert!(WorkerLimits::deny_all().allows("w", &[], &none).is_err());
    }
}

/// A token as listed: everything but the secret, which is never stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub worker_limits: WorkerLimits,
    /// The namespaces the token is limited to (empty: all).
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
    #[serde(default)]
    pub worker_limits: WorkerLimits,
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
    /// The namespaces it is limited to (empty: every namespace).
    #[serde(default)]
    pub namespaces: Vec<String>,
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
