//! Namespaces on the wire: their names, and a caller's scope (the namespaces its token may see).
//!
//! Every task, workflow, schedule, queue, webhook and event belongs to one namespace
//! (`default` unless given). A token limited to namespaces sees and touches only those: other
//! namespaces' objects answer 404, as if they did not exist; naming another namespace to create
//! or list something answers 403. Worker events belong to no namespace (the cluster's) and
//! are seen only by tokens of every namespace.

use drover_core::DEFAULT_NAMESPACE;

use crate::error::{ApiError, ErrorCode};

/// Longest namespace name (a DNS label).
pub const MAX_NAMESPACE: usize = 63;
/// The pattern `check` enforces, for the OpenAPI document.
pub const NAMESPACE_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
/// A webhook's namespace `*`: every namespace's events and the cluster's.
pub const ALL_NAMESPACES: &str = "*";

/// Namespace names are DNS labels: 1 to 63 of `a-z 0-9 -`, starting and ending with a letter
/// or digit, so they are safe in URLs, log lines and metric labels, and never contain the `/`
/// that separates a namespace from a name in messages.
pub fn check(field: &str, ns: &str) -> Result<(), ApiError> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = ns.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_NAMESPACE
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || c == b'-');
    if ok {
        return Ok(());
    }
    Err(ApiError::invalid(
        field,
        format!(
            "'{}' is not a namespace: 1 to {MAX_NAMESPACE} characters of a-z 0-9 -, starting \
             and ending with a letter or digit",
            ns.chars().take(80).collect::<String>()
        ),
    ))
}

/// The namespace a request names, or `default`.
pub fn or_default(field: &str, ns: Option<&str>) -> Result<String, ApiError> {
    match ns {
        None => Ok(DEFAULT_NAMESPACE.into()),
        Some(ns) => check(field, ns).map(|()| ns.to_string()),
    }
}

/// `?namespace=` on the routes that name a queue or schedule (default `default`).
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NamespaceQuery {
    /// The namespace of the named object (default `default`).
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    pub namespace: Option<String>,
}

/// `?namespace=` on listings (default: every namespace the token may see).
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NamespaceFilter {
    /// Only this namespace's objects (default: every namespace the token may see).
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    pub namespace: Option<String>,
}

/// What a caller may see: every namespace, or only some (a token's `namespaces`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Only(Vec<String>),
}

impl Scope {
    /// A token's scope: an empty list is every namespace.
    pub fn of(namespaces: &[String]) -> Scope {
        if namespaces.is_empty() {
            Scope::All
        } else {
            Scope::Only(namespaces.to_vec())
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Scope::All)
    }

    pub fn allows(&self, ns: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(list) => list.iter().any(|n| n == ns),
        }
    }

    /// Whether an object or event of namespace `ns` is visible (`None`: the cluster's).
    pub fn sees(&self, ns: Option<&str>) -> bool {
        match ns {
            Some(ns) => self.allows(ns),
            None => self.is_all(),
        }
    }

    /// A namespace a request names to create, change or list in: 403 outside the scope.
    pub fn check(&self, ns: &str) -> Result<(), ApiError> {
        if self.allows(ns) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "this token may not act in namespace {ns}; it is limited to {}",
                self.names().join(", ")
            ),
        ))
    }

    /// For operations that concern every namespace (the audit log, metrics, tokens without a
    /// namespace): 403 for a limited token.
    pub fn require_all(&self, what: &str) -> Result<(), ApiError> {
        if self.is_all() {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "{what} needs a token of every namespace; this one is limited to {}",
                { self.names().join(", ") }
            ),
        ))
    }

    /// The namespace of a named object (`?namespace=`, default `default`), if the caller may
    /// see it; `None` means the object answers 404, as if it did not exist.
    pub fn named(&self, q: &NamespaceQuery) -> Result<Option<String>, ApiError> {
        let ns = or_default("namespace", q.namespace.as_deref())?;
        Ok(self.allows(&ns).then_some(ns))
    }

    /// The store filter: `None` for every namespace.
    pub fn filter(&self) -> Option<Vec<String>> {
        match self {
            Scope::All => None,
            Scope::Only(list) => Some(list.clone()),
        }
    }

    /// The scope narrowed to one namespace a request asks for (checked: 403 outside).
    pub fn narrowed(&self, ns: Option<&str>, field: &str) -> Result<Scope, ApiError> {
        match ns {
            None => Ok(self.clone()),
            Some(ns) => {
                check(field, ns)?;
                self.check(ns)?;
                Ok(Scope::Only(vec![ns.to_string()]))
            }
        }
    }

    fn names(&self) -> Vec<String> {
        match self {
            Scope::All => vec!["every namespace".into()],
            Scope::Only(list) => list.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for ok in ["default", "a", "team-a", "x1", &"a".repeat(63)] {
            assert!(check("namespace", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Team",
            "a_b",
            "a/b",
            "a.b",
            &"a".repeat(64),
            "*",
        ] {
            assert!(check("namespace", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_limited_scope_sees_its_namespaces_only() {
        let s = Scope::of(&["a".into(), "b".into()]);
        assert!(s.allows("a") && !s.allows("c"));
        assert!(
            !s.sees(None),
            "cluster events are for tokens of every namespace"
        );
        assert!(Scope::All.sees(None));
        assert!(s.check("c").is_err());
        assert_eq!(
            s.narrowed(Some("b"), "namespace").unwrap(),
            Scope::of(&["b".into()])
        );
        assert!(s.narrowed(Some("c"), "namespace").is_err());
        assert!(s.require_all("the audit log").is_err());
        assert_eq!(Scope::of(&[]), Scope::All);
    }
}
