//! What the edge enforces, written into `/openapi.json`: the bearer scheme on every operation
//! that needs a token, and the statuses answered before a handler's own: 401 and 403 (the
//! guard), 429 (the rate limit), 400 and 404 for a path parameter that is malformed or
//! names nothing, and 503 for an operation that writes the store while the store is failing
//! (`health::gate`).

use axum::http::Method;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref};

use super::roles::{permission_for, Permission};

const SCHEME: &str = "bearer";

fn error(description: &str) -> utoipa::openapi::Response {
    let json = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ApiError")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", json)
        .build()
}

/// Adds the bearer scheme and the guard's and the edge's statuses to `doc`.
pub fn document(doc: &mut OpenApi) {
    let scheme = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(SCHEME, scheme);
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, op) in ops {
            if let Some(op) = op.as_mut() {
                if crate::health::writes_store(&method, Some(path)) {
                    op.responses
                        .responses
                        .entry("503".into())
                        .or_insert_with(|| {
                            error(
                                "the store is failing commits (the server is degraded): nothing \
                             was changed; retry after Retry-After",
                            )
                            .into()
                        });
                }
                describe(op, permission_for(&method, Some(path)), path);
            }
        }
    }
}

fn describe(op: &mut Operation, perm: Permission, path: &str) {
    let health = matches!(path, "/healthz" | "/readyz");
    let responses = &mut op.responses.responses;
    if path.contains('{') {
        responses
            .entry("400".into())
            .or_insert_with(|| error("a path parameter is not valid").into());
        responses
            .entry("404".into())
            .or_insert_with(|| error("the path names nothing").into());
    }
    if !health {
        responses
            .entry("429".into())
            .or_insert_with(|| error("over the client's request rate; see Retry-After").into());
    }
    if perm == Permission::Public {
        return;
    }
    op.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
    responses
        .entry("401".into())
        .or_insert_with(|| error("no token, or an unknown, revoked or expired one").into());
    responses
        .entry("403".into())
        .or_insert_with(|| error("the token's role may not do this, or a foreign Origin").into());
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_guarded_operation_names_the_scheme_and_its_refusals() {
        let doc = serde_json::to_value(crate::http::openapi()).unwrap();
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let paths = doc["paths"].as_object().unwrap();
        let mut guarded = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let codes = op["responses"].as_object().unwrap();
                // Public operations (login, health) document their own statuses.
                if op.get("security").is_some() {
                    guarded += 1;
                    assert!(
                        codes.contains_key("401") && codes.contains_key("403"),
                        "{method} {path}"
                    );
                }
                let health = path == "/healthz" || path == "/readyz";
                assert_eq!(codes.contains_key("429"), !health, "{method} {path}");
            }
        }
        assert!(paths["/healthz"]["get"].get("security").is_none());
        let cancel = &paths["/v1/tasks/{id}/cancel"]["post"]["responses"];
        assert!(cancel.get("400").is_some() && cancel.get("404").is_some());
        assert!(paths["/v1/tasks"]["post"].get("security").is_some());
        // The store gate's 503: on every state-changing operation that writes the store, on
        // no read and not on logging in.
        assert!(paths["/v1/tasks"]["post"]["responses"].get("503").is_some());
        assert!(paths["/v1/queues/{name}"]["put"]["responses"]
            .get("503")
            .is_some());
        assert!(paths["/v1/tasks"]["get"]["responses"].get("503").is_none());
        assert!(paths["/v1/session"]["post"]["responses"]
            .get("503")
            .is_none());
        assert!(paths["/readyz"]["get"]["responses"].get("503").is_some());
        assert!(guarded > 30, "{guarded}");
    }
}
