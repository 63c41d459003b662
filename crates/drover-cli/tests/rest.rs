//! The REST API against a real server process: submits, batch, errors as JSON that change
//! nothing, and the OpenAPI document.

mod common;

use common::*;
use serde_json::{json, Value};

fn total(url: &str) -> u64 {
    let s = stats(url);
    s["tasks_by_state"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

#[test]
fn submit_batch_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), "127.0.0.1:0");
    let h = http();
    let r = h
        .post(format!("{}/v1/tasks", s.url))
        .json(&json!({"argv": ["echo", "hi"], "queue": "api", "priority": 3, "retries": 2, "timeout": "30s"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let t: Value = r.json().unwrap();
    assert_eq!(t["state"], "queued");
    assert_eq!(t["queue"], "api");
    assert_eq!(t["max_attempts"], 3);
    assert_eq!(t["timeout_ms"], 30_000);
    let id = t["id"].as_str().unwrap();
    let got: Value = h
        .get(format!("{}/v1/tasks/{id}", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(got["id"], id);

    let tasks: Vec<Value> = (0..500)
        .map(|i| json!({"argv": ["echo", i.to_string()], "queue": "batch"}))
        .collect();
    let r = h
        .post(format!("{}/v1/tasks:batch", s.url))
        .json(&json!({ "tasks": tasks }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let ids: Value = r.json().unwrap();
    assert_eq!(ids["ids"].as_array().unwrap().len(), 500);
    assert_eq!(total(&s.url), 501);
}

#[test]
fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), "127.0.0.1:0");
    let h = http();
    let url = &s.url;
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("/v1/tasks", "{not json".into(), 400, None),
        ("/v1/tasks", json!({}).to_string(), 400, Some("argv")),
        (
            "/v1/tasks",
            json!({"argv": []}).to_string(),
            400,
            Some("argv"),
        ),
        (
            "/v1/tasks",
            json!({"argv": ["x"], "timeout": "-5s"}).to_string(),
            400,
            Some("timeout"),
        ),
        (
            "/v1/tasks",
            json!({"argv": ["x"], "timeout": -5}).to_string(),
            400,
            None,
        ),
        (
            "/v1/tasks",
            json!({"argv": ["x"], "delay": "soon"}).to_string(),
            400,
            Some("delay"),
        ),
        (
            "/v1/tasks",
            json!({"argv": ["x"], "queue": "no spaces"}).to_string(),
            400,
            Some("queue"),
        ),
        (
            "/v1/tasks",
            json!({"argv": ["x"], "unknown_field": 1}).to_string(),
            400,
            None,
        ),
        (
            "/v1/tasks",
            json!({"argv": ["x"], "retries": 100000}).to_string(),
            400,
            Some("retries"),
        ),
        (
            "/v1/tasks",
            json!({"argv": vec!["a"; 5000]}).to_string(),
            400,
            Some("argv"),
        ),
        (
            "/v1/tasks:batch",
            json!({"tasks": []}).to_string(),
            400,
            Some("tasks"),
        ),
        (
            "/v1/tasks:batch",
            json!({"tasks": [{"argv": ["ok"]}, {"argv": []}]}).to_string(),
            400,
            Some("tasks[1].argv"),
        ),
    ];
    for (path, body, status, field) in cases {
        let r = h
            .post(format!("{url}{path}"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .unwrap();
        let short: String = body.chars().take(60).collect();
        assert_eq!(r.status().as_u16(), status, "{path} {short}");
        let e: Value = r
            .json()
            .unwrap_or_else(|_| panic!("{path} {short}: body is not JSON"));
        assert!(e["code"].is_string() && e["message"].is_string(), "{e}");
        if let Some(f) = field {
            assert_eq!(e["field"], f, "{e}");
        }
    }
    // An absurd body is refused by its declared length, before it is read: the server answers
    // 413 at once (a client still writing would see the connection close, so send no body).
    {
        use std::io::{Read, Write};
        let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            sock,
            "POST /v1/tasks HTTP/1.1\r\nhost: {}\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            s.addr,
            bearer(),
            20 << 20
        )
        .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = sock.read(&mut buf).unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]);
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
        assert!(reply.contains("\"code\":\"payload_too_large\""), "{reply}");
    }
    for (path, status) in [
        ("/v1/tasks/not-a-uuid", 400),
        ("/v1/tasks/0190c0de-0000-7000-8000-000000000000", 404),
        ("/v1/tasks?limit=0", 400),
        ("/v1/tasks?state=bogus", 400),
        ("/v1/nope", 404),
    ] {
        let r = h.get(format!("{url}{path}")).send().unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let e: Value = r.json().unwrap();
        assert!(e["message"].is_string());
    }
    assert_eq!(total(url), 0, "nothing was stored");
    assert!(s.proc.child.id() > 0);
    let health: Value = h
        .get(format!("{url}/healthz"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "ok");
}

#[test]
fn openapi_describes_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), "127.0.0.1:0");
    let doc: Value = http()
        .get(format!("{}/openapi.json", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/tasks",
        "/v1/tasks:batch",
        "/v1/tasks/{id}",
        "/v1/tasks/{id}/cancel",
        "/v1/tasks/{id}/logs",
        "/v1/workers",
        "/healthz",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi lacks {path}");
    }
    assert!(doc["components"]["schemas"]["SubmitRequest"].is_object());
}
