//! The audit log against a real server: state-changing requests are recorded with their
//! operation, object, status, token and remote address; reads are not unless refused;
//! `drover audit` lists them.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn audit(url: &str, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["audit"];
    a.extend_from_slice(args);
    cli_json(url, &a)["records"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn changes_and_bad_requests_are_recorded_reads_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), "127.0.0.1:0");
    let h = http();
    let id = submit(&s.url, &["--", "true"]);
    let cancel = h
        .post(format!("{}/v1/tasks/{id}/cancel", s.url))
        .send()
        .unwrap();
    assert!(cancel.status().is_success() || cancel.status() == 409);
    let bad = h
        .post(format!("{}/v1/tasks", s.url))
        .json(&json!({"argv": []}))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    let _ = task(&s.url, &id);
    // Refused: no token (the harness's client always sends one).
    let anonymous = reqwest::blocking::Client::new()
        .get(format!("{}/v1/tasks", s.url))
        .send()
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Written off the request path: poll until all four are there.
    let mut records = wait_for(Duration::from_secs(10), "four audit records", || {
        let r = audit(&s.url, &[]);
        (r.len() >= 4).then_some(r)
    });
    let refused = records.remove(0);
    assert_eq!(refused["operation"], "GET /v1/tasks");
    assert_eq!(refused["status"], 401);
    assert!(refused["token"].is_null(), "{refused}");
    assert!(records
        .iter()
        .all(|r| r["token"] == "admin" && r["role"] == "admin"));
    let ops: Vec<(&str, u64)> = records
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            ("POST /v1/tasks", 400),
            (
                "POST /v1/tasks/{id}/cancel",
                cancel.status().as_u16() as u64
            ),
            ("POST /v1/tasks", 201),
        ],
        "newest first, no reads but refused ones"
    );
    assert_eq!(records[1]["object"], format!("/v1/tasks/{id}/cancel"));
    assert!(records[0]["remote"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // Filters: a limit, and a time bound in the future finds nothing.
    assert_eq!(audit(&s.url, &["--limit", "1"]).len(), 1);
    assert!(audit(&s.url, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    let out = cli(&s.url, &["audit", "--limit", "0"]);
    assert!(!out.status.success(), "a bad limit is refused");
}
