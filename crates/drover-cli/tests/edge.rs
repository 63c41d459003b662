//! The hardened edge through a real server: webhook destinations (no private addresses in any
//! spelling, checked at creation and at every connection; errors by class), timeouts on
//! half-sent requests, the rate limit and the event-stream subscriber cap.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A TCP listener on loopback that counts the connections it accepts (and answers 200).
fn counting_receiver() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        }
    });
    (port, n)
}

fn add_hook(url: &str, hook: &str) -> reqwest::blocking::Response {
    http()
        .post(format!("{url}/v1/webhooks"))
        .json(&json!({ "url": hook }))
        .send()
        .unwrap()
}

#[test]
fn webhooks_to_private_addresses_are_refused_in_any_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    for hook in [
        "http://127.0.0.1:1/",
        "http://0x7f000001:1/",
        "http://2130706433/",
        "http://017700000001/",
        "http://127.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/",
        "http://[fd12::1]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://localhost:1/",
    ] {
        let r = add_hook(&server.url, hook);
        assert_eq!(r.status(), 400, "{hook}");
        let e: Value = r.json().unwrap();
        assert_eq!(e["field"], "url", "{hook}: {e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("--allow-private-webhooks"),
            "{hook}: {e}"
        );
    }
    let l = cli_json(&server.url, &["webhook", "list"]);
    assert_eq!(l["webhooks"], json!([]));
}

#[test]
fn a_stored_private_destination_is_blocked_at_connect_time() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let (port, connections) = counting_receiver();
    let mut server = start_server_with(dir.path(), &addr, &["--allow-private-webhooks"]);
    // Allowed while the flag is on: by name (resolved at each connection) and as a literal.
    let mut ids = Vec::new();
    for hook in [
        format!("http://localhost:{port}/hook"),
        format!("http://127.0.0.1:{port}/hook"),
    ] {
        let r = add_hook(&server.url, &hook);
        assert_eq!(r.status(), 201, "{hook}");
        let v: Value = r.json().unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    server.proc.kill9();
    // Without the flag, the same stored webhooks never connect.
    let server = start_server_with(
        dir.path(),
        &addr,
        &["--webhook-backoff", "50ms", "--webhook-attempts", "2"],
    );
    submit(&server.url, &["--kind", "noop"]);
    for id in &ids {
        let d = wait_for(Duration::from_secs(30), "a failed delivery", || {
            let l = cli_json(&server.url, &["webhook", "deliveries", id]);
            let list = l["deliveries"].as_array().unwrap().clone();
            list.iter().any(|d| d["last"] == true).then_some(list)
        });
        for a in &d {
            assert_eq!(a["error"], "blocked destination", "{a}");
            assert_eq!(a["ok"], false);
            assert!(a["status"].is_null());
        }
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing reached it");
}

#[test]
fn delivery_errors_are_recorded_by_class() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--allow-private-webhooks",
            "--webhook-backoff",
            "50ms",
            "--webhook-attempts",
            "1",
        ],
    );
    // A closed port: refused, not the OS's message.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let r = add_hook(&server.url, &format!("http://127.0.0.1:{port}/"));
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    submit(&server.url, &["--kind", "noop"]);
    let d = wait_for(Duration::from_secs(30), "a delivery attempt", || {
        let l = cli_json(&server.url, &["webhook", "deliveries", &id]);
        l["deliveries"].as_array().unwrap().first().cloned()
    });
    assert_eq!(d["error"], "refused", "{d}");
}
