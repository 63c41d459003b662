//! Authentication and roles against a real server: the role matrix derived from
//! `/openapi.json`, gRPC codes, revocation of open streams, dashboard sessions, browser
//! protections, and the `drover token` / `drover login` commands.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The specification the server is held to: every documented operation's least role.
/// "public" needs no token; "any" any valid token. A documented operation missing here fails
/// the test (add its row when you add an operation).
const MATRIX: &[(&str, &str, &str)] = &[
    ("GET", "/healthz", "public"),
    ("GET", "/readyz", "public"),
    ("POST", "/v1/session", "public"),
    ("DELETE", "/v1/session", "public"),
    ("GET", "/v1/session", "any"),
    ("GET", "/v1/events", "viewer"),
    ("GET", "/v1/tasks", "viewer"),
    ("GET", "/v1/tasks/{id}", "viewer"),
    ("GET", "/v1/tasks/{id}/logs", "viewer"),
    ("GET", "/v1/tasks/{id}/result", "viewer"),
    ("GET", "/v1/tasks/{id}/payload", "viewer"),
    ("GET", "/v1/stats", "viewer"),
    ("GET", "/v1/workers", "viewer"),
    ("GET", "/v1/queues", "viewer"),
    ("GET", "/v1/queues/{name}", "viewer"),
    ("GET", "/v1/workflows", "viewer"),
    ("GET", "/v1/workflows/{id}", "viewer"),
    ("GET", "/v1/schedules", "viewer"),
    ("GET", "/v1/schedules/{name}", "viewer"),
    ("GET", "/v1/cluster", "viewer"),
    ("POST", "/v1/tasks", "submitter"),
    ("POST", "/v1/tasks:batch", "submitter"),
    ("POST", "/v1/tasks/{id}/cancel", "submitter"),
    ("POST", "/v1/workflows", "submitter"),
    ("POST", "/v1/workflows/{id}/rerun", "submitter"),
    ("PUT", "/v1/queues/{name}", "operator"),
    ("POST", "/v1/queues/{name}/pause", "operator"),
    ("POST", "/v1/queues/{name}/resume", "operator"),
    ("POST", "/v1/schedules", "operator"),
    ("DELETE", "/v1/schedules/{name}", "operator"),
    ("POST", "/v1/schedules/{name}/pause", "operator"),
    ("POST", "/v1/schedules/{name}/resume", "operator"),
    ("POST", "/v1/schedules/{name}/run", "operator"),
    ("POST", "/v1/schedules/{name}/backfill", "operator"),
    ("POST", "/v1/workers/{name}/drain", "operator"),
    ("POST", "/v1/workers/{name}/resume", "operator"),
    ("GET", "/v1/webhooks", "admin"),
    ("POST", "/v1/webhooks", "admin"),
    ("DELETE", "/v1/webhooks/{id}", "admin"),
    ("GET", "/v1/webhooks/{id}/deliveries", "admin"),
    ("GET", "/v1/audit", "admin"),
    ("GET", "/v1/tokens", "admin"),
    ("POST", "/v1/tokens", "admin"),
    ("DELETE", "/v1/tokens/{name}", "admin"),
];

const ROLES: [&str; 5] = ["viewer", "submitter", "operator", "admin", "worker"];

/// Whether `role` may call an operation whose least role is `least`.
fn may(role: &str, least: &str) -> bool {
    let rank = |r: &str| {
        ["viewer", "submitter", "operator", "admin"]
            .iter()
            .position(|x| *x == r)
    };
    match least {
        "public" | "any" => true,
        _ => match (rank(role), rank(least)) {
            (Some(have), Some(need)) => have >= need,
            _ => false,
        },
    }
}

/// A client without any default credentials.
fn bare() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Creates a token with the admin token; returns its secret.
fn create_token(url: &str, name: &str, role: &str, expires_in: Option<&str>) -> String {
    let mut body = json!({"name": name, "role": role});
    if let Some(e) = expires_in {
        body["expires_in"] = json!(e);
    }
    let r = http()
        .post(format!("{url}/v1/tokens"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "create {name}");
    let v: Value = r.json().unwrap();
    assert_eq!(v["role"], role);
    v["secret"].as_str().unwrap().to_string()
}

fn revoke(url: &str, name: &str) {
    let r = http()
        .delete(format!("{url}/v1/tokens/{name}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204, "revoke {name}");
}

/// Sends a request; its status and JSON body (none for a 200 event stream).
fn answer(rb: reqwest::blocking::RequestBuilder, path: &str) -> (u16, Value) {
    let r = rb.send().unwrap();
    let status = r.status().as_u16();
    let body = if path == "/v1/events" && status == 200 {
        Value::Null
    } else {
        r.json().unwrap_or(Value::Null)
    };
    (status, body)
}

/// Every operation `/openapi.json` documents, as (method, path, least role); panics on one
/// without a MATRIX row, and when MATRIX has rows for undocumented operations.
fn operations(url: &str) -> Vec<(String, String, &'static str)> {
    let doc: Value = http()
        .get(format!("{url}/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let m = method.to_uppercase();
            let least = MATRIX
                .iter()
                .find(|(mm, p, _)| *mm == m && p == path)
                .unwrap_or_else(|| panic!("{m} {path} is documented but has no MATRIX row"))
                .2;
            ops.push((m, path.clone(), least));
        }
    }
    assert_eq!(
        ops.len(),
        MATRIX.len(),
        "MATRIX has rows for undocumented operations"
    );
    ops
}

/// One request to a documented operation, with placeholder path parameters and body.
fn call(url: &str, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let concrete = path
        .replace("{id}", "0190c0de-0000-7000-8000-000000000000")
        .replace("{name}", "matrix");
    let mut full = format!("{url}{concrete}");
    if path == "/v1/events" {
        full.push_str("?follow=false");
    }
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = bare().request(m, full);
    if method != "GET" && method != "DELETE" {
        rb = rb.json(&json!({}));
    }
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    answer(rb, path)
}

#[test]
fn every_operation_answers_every_role_as_the_matrix_says() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), "127.0.0.1:0");
    let url = &s.url;
    let mut tokens = BTreeMap::new();
    for role in ROLES {
        tokens.insert(role, create_token(url, &format!("m-{role}"), role, None));
    }
    let revoked = create_token(url, "m-revoked", "admin", None);
    revoke(url, "m-revoked");
    let expired = create_token(url, "m-expired", "admin", Some("1s"));
    wait_for(Duration::from_secs(10), "the token to expire", || {
        (call(url, "GET", "/v1/stats", Some(&expired)).0 == 401).then_some(())
    });

    for (m, path, least) in operations(url) {
        let path = path.as_str();
        let public = least == "public";
        for (cred, token) in [
            ("no token", None),
            ("revoked", Some(&revoked)),
            ("expired", Some(&expired)),
        ] {
            let (status, body) = call(url, &m, path, token.map(|t| t.as_str()));
            if public {
                assert!(
                    status != 401 && status != 403,
                    "{m} {path} {cred}: {status}"
                );
            } else {
                assert_eq!(status, 401, "{m} {path} with {cred}: {body}");
                assert_eq!(body["code"], "unauthenticated", "{m} {path} {cred}");
            }
        }
        for role in ROLES {
            let (status, body) = call(url, &m, path, Some(&tokens[role]));
            if may(role, least) {
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "{m} {path} as {role}: {status} {body}"
                );
            } else {
                assert_eq!(status, 403, "{m} {path} as {role}: {body}");
                assert_eq!(body["code"], "permission_denied");
            }
        }
    }
    // Beyond the document: metrics read like the API; the dashboard's files are public.
    assert_eq!(call(url, "GET", "/metrics", None).0, 401);
    assert_eq!(call(url, "GET", "/metrics", Some(&tokens["worker"])).0, 403);
    assert_eq!(call(url, "GET", "/metrics", Some(&tokens["viewer"])).0, 200);
    for p in ["/", "/login", "/assets/app.js", "/readyz"] {
        assert_eq!(call(url, "GET", p, None).0, 200, "{p}");
    }
    assert_eq!(call(url, "GET", "/openapi.json", None).0, 401);
}

/// How an operation meets a token limited to namespaces, when it targets another namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NsKind {
    /// Not about a namespace (sessions, tokens by name, workers, stats): as for its own.
    Global,
    /// Creates in the namespace its body names: 403.
    Create,
    /// Lists with `?namespace=`: 403.
    List,
    /// Names an object of the namespace (by id, or by name with `?namespace=`): 404, as if
    /// it did not exist.
    Object,
    /// About every namespace (the audit log): 403 for any limited token.
    Every,
}

fn ns_kind(method: &str, path: &str) -> NsKind {
    let namespaced = [
        "/v1/tasks",
        "/v1/workflows",
        "/v1/webhooks",
        "/v1/queues",
        "/v1/schedules",
    ]
    .iter()
    .any(|p| path.starts_with(p));
    match (method, path) {
        ("GET", "/v1/audit") => NsKind::Every,
        ("POST", "/v1/tokens") => NsKind::Create,
        ("GET", "/v1/events") => NsKind::List,
        ("GET", "/v1/webhooks") => NsKind::Global,
        _ if !namespaced => NsKind::Global,
        _ if path.contains('{') => NsKind::Object,
        ("POST", _) => NsKind::Create,
        _ => NsKind::List,
    }
}

/// The objects of one namespace the namespace matrix points at.
struct NsObjects {
    task: String,
    workflow: String,
    webhook: String,
}

/// With the admin token: a task, a workflow, a webhook, a queue and a schedule (both named
/// `matrix`) in `ns`.
fn ns_objects(url: &str, ns: &str) -> NsObjects {
    let post = |path: &str, body: Value| -> Value {
        let r = http()
            .post(format!("{url}{path}"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{path} in {ns}");
        r.json().unwrap()
    };
    let task = post("/v1/tasks", json!({"namespace": ns, "kind": "noop"}));
    let wf = post(
        "/v1/workflows",
        json!({"namespace": ns, "name": "m", "tasks": [{"name": "a", "kind": "noop"}]}),
    );
    let hook = post(
        "/v1/webhooks",
        json!({"namespace": ns, "url": "http://127.0.0.1:9/"}),
    );
    post(
        "/v1/schedules",
        json!({"namespace": ns, "name": "matrix", "every": "1h", "task": {"kind": "noop"}}),
    );
    let r = http()
        .put(format!("{url}/v1/queues/matrix?namespace={ns}"))
        .json(&json!({"concurrency": 3}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    NsObjects {
        task: task["id"].as_str().unwrap().into(),
        workflow: wf["id"].as_str().unwrap().into(),
        webhook: hook["id"].as_str().unwrap().into(),
    }
}

/// One request to a documented operation aimed at namespace `ns` and its objects.
fn call_in(url: &str, m: &str, path: &str, token: &str, ns: &str, o: &NsObjects) -> (u16, Value) {
    let id = if path.starts_with("/v1/workflows") {
        &o.workflow
    } else if path.starts_with("/v1/webhooks") {
        &o.webhook
    } else {
        &o.task
    };
    let mut full = format!(
        "{url}{}",
        path.replace("{id}", id).replace("{name}", "matrix")
    );
    let kind = ns_kind(m, path);
    let takes_ns = path.starts_with("/v1/queues") || path.starts_with("/v1/schedules");
    if kind == NsKind::List || (takes_ns && kind == NsKind::Object) {
        full.push_str(&format!("?namespace={ns}"));
    }
    if path == "/v1/events" {
        full.push_str("&follow=false");
    }
    let body = match (m, path) {
        ("POST", "/v1/tasks") => json!({"namespace": ns, "kind": "noop"}),
        ("POST", "/v1/tasks:batch") => json!({"tasks": [{"namespace": ns, "kind": "noop"}]}),
        ("POST", "/v1/workflows") => {
            json!({"namespace": ns, "name": "n", "tasks": [{"name": "a", "kind": "noop"}]})
        }
        ("POST", "/v1/schedules") => {
            json!({"namespace": ns, "name": "new", "every": "1h", "task": {"kind": "noop"}})
        }
        ("POST", "/v1/webhooks") => json!({"namespace": ns, "url": "http://127.0.0.1:9/"}),
        ("POST", "/v1/tokens") => {
            json!({"name": format!("t-{}", rand_suffix()), "role": "viewer", "namespaces": [ns]})
        }
        ("POST", "/v1/schedules/{name}/backfill") => {
            json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T03:00:00Z"})
        }
        ("POST", "/v1/workflows/{id}/rerun") => json!({"from_failed": true}),
        _ => json!({}),
    };
    let mut rb = bare()
        .request(reqwest::Method::from_bytes(m.as_bytes()).unwrap(), full)
        .bearer_auth(token);
    if m != "GET" && m != "DELETE" {
        rb = rb.json(&body);
    }
    answer(rb, path)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The namespace columns of the matrix: every operation × every role, with a token limited to
/// `team-a`, against `team-a`'s objects (as the role allows) and `team-b`'s (404 for an
/// object, 403 to create or list there); then what such a token sees without naming one.
#[test]
fn every_operation_keeps_a_limited_token_in_its_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server_with(dir.path(), "127.0.0.1:0", &["--allow-private-webhooks"]);
    let url = &s.url;
    let own = ns_objects(url, "team-a");
    let other = ns_objects(url, "team-b");
    let mut tokens = BTreeMap::new();
    for role in ROLES {
        let r = http()
            .post(format!("{url}/v1/tokens"))
            .json(&json!({"name": format!("a-{role}"), "role": role, "namespaces": ["team-a"]}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().unwrap();
        assert_eq!(v["namespaces"], json!(["team-a"]));
        tokens.insert(role, v["secret"].as_str().unwrap().to_string());
    }
    for (m, path, least) in operations(url) {
        let path = path.as_str();
        let kind = ns_kind(&m, path);
        for role in ROLES {
            let t = &tokens[role];
            // Other namespace first: a limited token must change nothing there.
            let (theirs, body) = call_in(url, &m, path, t, "team-b", &other);
            let (mine, mbody) = call_in(url, &m, path, t, "team-a", &own);
            let what = format!("{m} {path} as a team-a {role}");
            if !may(role, least) || kind == NsKind::Every {
                assert_eq!(theirs, 403, "{what}, team-b: {body}");
                assert_eq!(mine, 403, "{what}, team-a: {mbody}");
                continue;
            }
            assert!(
                ![401, 403].contains(&mine) && mine < 500,
                "{what}: {mine} {mbody}"
            );
            let expected = match kind {
                NsKind::Create | NsKind::List => Some(403),
                NsKind::Object => Some(404),
                NsKind::Global | NsKind::Every => None,
            };
            match expected {
                Some(e) => assert_eq!(theirs, e, "{what}, team-b: {body}"),
                None => assert!(theirs < 500 && theirs != 401, "{what}: {theirs} {body}"),
            }
        }
    }
    // What a limited viewer sees without naming a namespace: its own objects only.
    let viewer = &tokens["viewer"];
    let get = |path: &str| -> Value {
        let r = bare()
            .get(format!("{url}{path}"))
            .bearer_auth(viewer)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().unwrap()
    };
    let namespaces_of = |v: &Value, key: &str| -> Vec<String> {
        let mut ns: Vec<String> = v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["namespace"].as_str().unwrap().to_string())
            .collect();
        ns.dedup();
        ns
    };
    for (path, key) in [
        ("/v1/tasks", "tasks"),
        ("/v1/workflows", "workflows"),
        ("/v1/schedules", "schedules"),
        ("/v1/queues", "queues"),
    ] {
        assert_eq!(namespaces_of(&get(path), key), ["team-a"], "{path}");
    }
    let admin = &tokens["admin"];
    let hooks: Value = bare()
        .get(format!("{url}/v1/webhooks"))
        .bearer_auth(admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(namespaces_of(&hooks, "webhooks"), ["team-a"]);
    // Its event stream carries its namespace's events, and no worker's.
    let text = bare()
        .get(format!("{url}/v1/events?follow=false&after=0"))
        .bearer_auth(viewer)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e["namespace"] == "team-a"),
        "{events:?}"
    );
    // Counts are of its namespaces only.
    let total = |stats: Value| -> u64 {
        let counts = stats["tasks_by_state"].as_object().unwrap().clone();
        counts.values().map(|v| v.as_u64().unwrap()).sum()
    };
    let listed = get("/v1/tasks?limit=1000")["tasks"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert_eq!(total(get("/v1/stats")), listed);
    assert!(
        total(common::stats(url)) > listed,
        "team-b's tasks are counted for the admin"
    );
    // A limited token cannot mint a wider one, nor see the audit log or metrics.
    let r = bare()
        .post(format!("{url}/v1/tokens"))
        .bearer_auth(admin)
        .json(&json!({"name": "wider", "role": "admin"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().unwrap();
    assert_eq!(
        v["namespaces"],
        json!(["team-a"]),
        "limited to the creator's"
    );
    assert_eq!(call(url, "GET", "/metrics", Some(admin)).0, 403);
}

/// gRPC: UNAUTHENTICATED without a valid token, PERMISSION_DENIED for the wrong role.
#[test]
fn grpc_streams_check_token_and_role() {
    use drover_api::proto::event_service_client::EventServiceClient;
    use drover_api::proto::worker_service_client::WorkerServiceClient;
    use drover_api::proto::{worker_message, Register, WatchRequest, WorkerMessage};
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), "127.0.0.1:0");
    let mut tokens = BTreeMap::new();
    for role in ROLES {
        tokens.insert(role, create_token(&s.url, &format!("g-{role}"), role, None));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let watch = |token: Option<String>| {
            let url = s.url.clone();
            async move {
                let mut c = EventServiceClient::connect(url).await.unwrap();
                let mut req = tonic::Request::new(WatchRequest::default());
                if let Some(t) = token {
                    req.metadata_mut()
                        .insert("authorization", format!("Bearer {t}").parse().unwrap());
                }
                c.watch(req).await.map(|_| ()).map_err(|e| e.code())
            }
        };
        let session = |token: Option<String>, name: &'static str| {
            let url = s.url.clone();
            async move {
                let mut c = WorkerServiceClient::connect(url).await.unwrap();
                let register = WorkerMessage {
                    body: Some(worker_message::Body::Register(Register {
                        name: name.into(),
                        slots: 1,
                        ..Default::default()
                    })),
                };
                let mut req = tonic::Request::new(futures::stream::iter(vec![register]));
                if let Some(t) = token {
                    req.metadata_mut()
                        .insert("authorization", format!("Bearer {t}").parse().unwrap());
                }
                c.session(req).await.map(|_| ()).map_err(|e| e.code())
            }
        };
        use tonic::Code;
        assert_eq!(watch(None).await, Err(Code::Unauthenticated));
        assert_eq!(session(None, "g-none").await, Err(Code::Unauthenticated));
        let bogus = format!("drover_{}", "0".repeat(64));
        assert_eq!(watch(Some(bogus.clone())).await, Err(Code::Unauthenticated));
        for role in ROLES {
            let t = Some(tokens[role].clone());
            let may_watch = role != "worker";
            let may_work = role == "worker" || role == "admin";
            assert_eq!(watch(t.clone()).await.is_ok(), may_watch, "watch as {role}");
            if !may_watch {
                assert_eq!(watch(t.clone()).await, Err(Code::PermissionDenied));
            }
            let name: &'static str = Box::leak(format!("g-w-{role}").into_boxed_str());
            let r = session(t, name).await;
            assert_eq!(r.is_ok(), may_work, "session as {role}: {r:?}");
            if !may_work {
                assert_eq!(r, Err(Code::PermissionDenied));
            }
        }
    });
}

/// Reads an SSE response until it ends; false if it is still open at the deadline.
fn ends_within(mut resp: reqwest::blocking::Response, within: Duration) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(resp.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    rx.recv_timeout(within).is_ok()
}

#[test]
fn revoking_a_token_ends_its_streams_and_sessions_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), "127.0.0.1:0");
    let url = &s.url;
    let viewer = create_token(url, "r-viewer", "viewer", None);
    let wt = create_token(url, "r-worker", "worker", None);
    let mut worker = drover()
        .args(["worker", "--server", url, "--name", "rw", "--token", &wt])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let alive = |state: &str| {
        let ws = cli_json(url, &["workers"]);
        ws["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "rw" && w["state"] == state)
    };
    wait_for(Duration::from_secs(20), "worker rw to register", || {
        alive("alive").then_some(())
    });

    // An SSE stream and a dashboard session of the viewer.
    let sse = bare()
        .get(format!("{url}/v1/events"))
        .bearer_auth(&viewer)
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap();
    assert_eq!(sse.status(), 200);
    let login = bare()
        .post(format!("{url}/v1/session"))
        .json(&json!({"token": viewer}))
        .send()
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let with_cookie = |path: &str| {
        bare()
            .get(format!("{url}{path}"))
            .header("cookie", &session)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(with_cookie("/v1/tasks"), 200);
    let me: Value = bare()
        .get(format!("{url}/v1/session"))
        .header("cookie", &session)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("r-viewer"), Some("viewer"))
    );
    // The cookie may not cancel: the viewer's role, not the cookie, decides.
    let cancel = bare()
        .post(format!(
            "{url}/v1/tasks/0190c0de-0000-7000-8000-000000000000/cancel"
        ))
        .header("cookie", &session)
        .header("origin", url.as_str())
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(cancel.status(), 403);

    let t = Instant::now();
    revoke(url, "r-viewer");
    assert!(
        ends_within(sse, Duration::from_secs(2)),
        "the SSE stream stayed open"
    );
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        with_cookie("/v1/tasks"),
        401,
        "the session outlived its token"
    );
    assert_eq!(call(url, "GET", "/v1/tasks", Some(&viewer)).0, 401);

    revoke(url, "r-worker");
    wait_for(
        Duration::from_secs(5),
        "the revoked worker's session to end",
        || (!alive("alive")).then_some(()),
    );
    let _ = worker.kill();
    let _ = worker.wait();
}

#[test]
fn browser_protections_host_origin_and_logout() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), "127.0.0.1:0");
    let url = &s.url;
    let h = |host: &str| {
        bare()
            .get(format!("{url}/healthz"))
            .header("host", host)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(h("rebind.evil.example"), 421);
    assert_eq!(
        h(&format!("localhost:{}", s.addr.rsplit(':').next().unwrap())),
        200
    );
    assert_eq!(h(&s.addr), 200);
    // A foreign page may not pause a queue, even with the admin token, nor log in.
    let paused = http()
        .post(format!("{url}/v1/queues/q/pause"))
        .header("origin", "http://evil.example")
        .send()
        .unwrap();
    assert_eq!(paused.status(), 403);
    let paused = http()
        .post(format!("{url}/v1/queues/q/pause"))
        .header("origin", url.as_str())
        .send()
        .unwrap();
    assert_eq!(paused.status(), 200);
    let foreign_login = bare()
        .post(format!("{url}/v1/session"))
        .header("origin", "http://evil.example")
        .json(&json!({"token": ADMIN_TOKEN}))
        .send()
        .unwrap();
    assert_eq!(foreign_login.status(), 403);
    // No CORS headers, ever.
    let r = http()
        .get(format!("{url}/v1/tasks"))
        .header("origin", "http://evil.example")
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // Login, a cookie-authenticated POST without Origin is refused, logout ends the session.
    let login = bare()
        .post(format!("{url}/v1/session"))
        .json(&json!({"token": ADMIN_TOKEN}))
        .send()
        .unwrap();
    let session = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let no_origin = bare()
        .post(format!("{url}/v1/queues/q/resume"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(no_origin.status(), 403);
    let out = bare()
        .delete(format!("{url}/v1/session"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let after = bare()
        .get(format!("{url}/v1/tasks"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(after.status(), 401);
    // Bad input to the token endpoints: 4xx JSON, nothing stored.
    for body in [
        json!({"name": "a b", "role": "viewer"}),
        json!({"name": "x", "role": "root"}),
        json!({"name": "x", "role": "viewer", "expires_in": "soon"}),
    ] {
        let r = http()
            .post(format!("{url}/v1/tokens"))
            .json(&body)
            .send()
            .unwrap();
        assert!(r.status().is_client_error(), "{body}");
        let e: Value = r.json().unwrap();
        assert!(e["code"].is_string(), "{e}");
    }
    let list: Value = http()
        .get(format!("{url}/v1/tokens"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn token_commands_and_login() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), "127.0.0.1:0");
    let url = &s.url;
    let created = cli_json(
        url,
        &[
            "token",
            "create",
            "ci",
            "--role",
            "submitter",
            "--expires",
            "30d",
        ],
    );
    assert_eq!(created["name"], "ci");
    assert_eq!(created["role"], "submitter");
    assert_eq!(created["namespaces"], json!([]));
    assert!(created["expires_at"].is_string());
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("drover_") && secret.len() == 71);
    let list = cli_json(url, &["token", "list"]);
    let names: Vec<_> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "ci"]);
    assert!(!list.to_string().contains(&secret), "list shows no secret");
    // The store keeps only the hash.
    let db = std::fs::read(dir.path().join("drover.db")).unwrap();
    let wal = std::fs::read(dir.path().join("drover.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
    // `drover login` saves a token for a server; later commands use it without flags.
    let creds = dir.path().join("creds.json");
    let file = dir.path().join("ci.token");
    std::fs::write(&file, &secret).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .env("DROVER_CREDENTIALS", &creds)
            .env("DROVER_SERVER", url)
            .env_remove("DROVER_TOKEN")
            .output()
            .unwrap()
    };
    assert!(!run(&["list"]).status.success(), "no token: refused");
    let out = run(&["login", url, "--token-file", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(run(&["list"]).status.success());
    let denied = run(&["token", "list"]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("may not"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let out = cli(url, &["token", "revoke", "ci"]);
    assert!(out.status.success());
    let refused = run(&["list"]);
    assert!(!refused.status.success());
    let bad = cli(url, &["token", "create", "x", "--role", "root"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn off_loopback_listening_needs_tls_or_an_explicit_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("drover.db").display());
    let run = |extra: &[&str]| {
        let mut args = vec!["server", "--listen", "0.0.0.0:0", "--store", &store];
        args.extend_from_slice(extra);
        drover().args(&args).output().unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without TLS") && err.contains("--insecure-no-tls"),
        "{err}"
    );
    let out = run(&["--insecure-no-tls", "--no-auth"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--no-auth is only allowed on a loopback"),
        "{err}"
    );
    assert!(
        !dir.path().join("drover.db").exists(),
        "a refused start touches nothing"
    );
    // With the explicit opt-out it serves (and still asks for a token).
    let s = start_server_with(dir.path(), "0.0.0.0:0", &["--insecure-no-tls"]);
    assert_eq!(call(&s.url, "GET", "/v1/tasks", None).0, 401);
    assert_eq!(call(&s.url, "GET", "/v1/tasks", Some(ADMIN_TOKEN)).0, 200);
}

#[test]
fn no_auth_on_loopback_keeps_the_browser_protections() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server_with(dir.path(), "127.0.0.1:0", &["--no-auth"]);
    assert_eq!(call(&s.url, "GET", "/v1/tasks", None).0, 200);
    let foreign = bare()
        .post(format!("{}/v1/queues/q/pause", s.url))
        .header("origin", "http://evil.example")
        .send()
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let rebind = bare()
        .get(format!("{}/v1/tasks", s.url))
        .header("host", "rebind.evil.example")
        .send()
        .unwrap();
    assert_eq!(rebind.status(), 421);
}
