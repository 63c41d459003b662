//! The one table of who may do what: every operation's permission, and each role's
//! permissions. The edge (`layer.rs`) asks only this; a test derives the full matrix from
//! `/openapi.json` and fails on an operation without a row here.

use axum::http::Method;
use drover_api::auth::Role;

/// What an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// No token: health, the dashboard's static files, logging in and out.
    Public,
    /// Any valid token (`GET /v1/session`: who am I).
    Authenticated,
    /// Reading tasks, workers, queues, workflows, schedules, events, stats, metrics.
    Read,
    /// Submitting, cancelling, rerunning.
    Submit,
    /// Queues, schedules, worker drain and resume.
    Operate,
    /// Tokens, webhooks and the audit log.
    Admin,
    /// Opening the worker stream (gRPC `WorkerService/Session`).
    WorkerStream,
}

/// Each role's permissions; every role has `Public` and `Authenticated`. A token's namespaces
/// are the second check, in the handlers (`drover_api::namespace::Scope`): within them this
/// table decides; another namespace's objects answer 404, acting in it 403.
pub fn allows(role: Role, p: Permission) -> bool {
    use Permission as P;
    let granted: &[Permission] = match role {
        Role::Viewer => &[P::Read],
        Role::Submitter => &[P::Read, P::Submit],
        Role::Operator => &[P::Read, P::Submit, P::Operate],
        Role::Admin => &[P::Read, P::Submit, P::Operate, P::Admin, P::WorkerStream],
        Role::Worker => &[P::WorkerStream],
    };
    matches!(p, P::Public | P::Authenticated) || granted.contains(&p)
}

use Permission::*;

/// Every route as the router matches it (method, path): its permission. Routes the OpenAPI
/// document lists must all be here (a test checks); so are the others (dashboard, gRPC).
pub const OPERATIONS: &[(&str, &str, Permission)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/", Public),
    ("GET", "/index.html", Public),
    ("GET", "/login", Public),
    ("GET", "/favicon.ico", Public),
    ("GET", "/assets/{*path}", Public),
    ("POST", "/v1/session", Public),
    ("DELETE", "/v1/session", Public),
    ("GET", "/v1/session", Authenticated),
    ("GET", "/openapi.json", Read),
    ("GET", "/metrics", Read),
    ("GET", "/v1/events", Read),
    ("POST", "/drover.v1.EventService/{*method}", Read),
    ("POST", "/drover.v1.WorkerService/{*method}", WorkerStream),
    ("GET", "/v1/tasks", Read),
    ("GET", "/v1/tasks/{id}", Read),
    ("GET", "/v1/tasks/{id}/logs", Read),
    ("GET", "/v1/tasks/{id}/result", Read),
    ("GET", "/v1/tasks/{id}/payload", Read),
    ("GET", "/v1/stats", Read),
    ("GET", "/v1/workers", Read),
    ("GET", "/v1/queues", Read),
    ("GET", "/v1/queues/{name}", Read),
    ("GET", "/v1/workflows", Read),
    ("GET", "/v1/workflows/{id}", Read),
    ("GET", "/v1/schedules", Read),
    ("GET", "/v1/schedules/{name}", Read),
    ("GET", "/v1/cluster", Read),
    ("POST", "/v1/tasks", Submit),
    ("POST", "/v1/tasks:batch", Submit),
    ("POST", "/v1/tasks/{id}/cancel", Submit),
    ("POST", "/v1/workflows", Submit),
    ("POST", "/v1/workflows/{id}/rerun", Submit),
    ("PUT", "/v1/queues/{name}", Operate),
    ("POST", "/v1/queues/{name}/pause", Operate),
    ("POST", "/v1/queues/{name}/resume", Operate),
    ("POST", "/v1/schedules", Operate),
    ("DELETE", "/v1/schedules/{name}", Operate),
    ("POST", "/v1/schedules/{name}/pause", Operate),
    ("POST", "/v1/schedules/{name}/resume", Operate),
    ("POST", "/v1/schedules/{name}/run", Operate),
    ("POST", "/v1/schedules/{name}/backfill", Operate),
    ("POST", "/v1/workers/{name}/drain", Operate),
    ("POST", "/v1/workers/{name}/resume", Operate),
    ("GET", "/v1/webhooks", Admin),
    ("POST", "/v1/webhooks", Admin),
    ("DELETE", "/v1/webhooks/{id}", Admin),
    ("GET", "/v1/webhooks/{id}/deliveries", Admin),
    ("GET", "/v1/audit", Admin),
    ("GET", "/v1/tokens", Admin),
    ("POST", "/v1/tokens", Admin),
    ("DELETE", "/v1/tokens/{name}", Admin),
];

/// The permission of a request to `path` (the router's matched path, `None` when no route
/// matched: any valid token, then a 404). A route or method missing from the table fails
/// closed: admin only (a test keeps the table complete).
pub fn permission_for(method: &Method, path: Option<&str>) -> Permission {
    let Some(path) = path else {
        return Authenticated;
    };
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    OPERATIONS
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map_or(Admin, |(_, _, perm)| *perm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_except_worker() {
        let all = [
            Public,
            Authenticated,
            Read,
            Submit,
            Operate,
            Admin,
            WorkerStream,
        ];
        let count = |r| all.iter().filter(|p| allows(r, **p)).count();
        assert_eq!(
            Role::ALL.map(count),
            [3, 4, 5, 7, 3],
            "viewer, submitter, operator, admin, worker"
        );
        for p in all {
            for (lo, hi) in [
                (Role::Viewer, Role::Submitter),
                (Role::Submitter, Role::Operator),
                (Role::Operator, Role::Admin),
                (Role::Worker, Role::Admin),
            ] {
                assert!(!allows(lo, p) || allows(hi, p), "{lo} has {p:?}, {hi} not");
            }
        }
        assert!(!allows(Role::Worker, Read) && !allows(Role::Operator, WorkerStream));
    }

    /// Every operation of the OpenAPI document has its row.
    #[test]
    fn every_documented_operation_has_a_row() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let mut n = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let m = method.to_uppercase();
                let row = OPERATIONS.iter().find(|(om, op, _)| *om == m && op == path);
                assert!(row.is_some(), "{m} {path} has no row in roles::OPERATIONS");
                n += 1;
            }
        }
        assert!(n >= 39, "only {n} operations");
    }

    #[test]
    fn unknown_routes_need_a_token_and_unlisted_ones_admin() {
        assert_eq!(permission_for(&Method::GET, None), Authenticated);
        // A route without a row fails closed.
        assert_eq!(permission_for(&Method::PATCH, Some("/v1/tasks")), Admin);
        assert_eq!(permission_for(&Method::HEAD, Some("/healthz")), Public);
        let mut seen = std::collections::HashSet::new();
        for (m, p, _) in OPERATIONS {
            assert!(seen.insert((m, p)), "{m} {p} twice");
        }
    }
}
