//! The hardened edge through a real server: webhook destinations (no private addresses in any
//! spelling, checked at creation and at every connection; errors by class), timeouts on
//! half-sent requests, the rate limit and the event-stream subscriber cap.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Sends `bytes` and waits (at most `within`) for the server to close the connection;
/// returns how long that took.
fn closed_after(addr: &str, bytes: &[u8], within: Duration) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {} // e.g. a 408; keep reading until the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return started.elapsed(), // reset
        }
        assert!(
            started.elapsed() < within,
            "still open after {within:?}: {bytes:?}"
        );
    }
}

#[test]
fn half_sent_requests_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(
        dir.path(),
        "127.0.0.1:0",
        &["--header-read-timeout", "1s", "--idle-timeout", "2s"],
    );
    let within = Duration::from_secs(15);
    for bytes in [
        &b"GET /v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n"[..],
        b"GET /v1/st",
        b"PRI * HTTP/2.0",
        b"",
    ] {
        let took = closed_after(&server.addr, bytes, within);
        assert!(
            took >= Duration::from_millis(900),
            "{bytes:?} closed at once ({took:?})"
        );
    }
    // HTTP/2 whose frames never come: no request in flight, closed as idle.
    let took = closed_after(&server.addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", within);
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    // A whole request is served as usual.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[test]
fn a_client_over_its_rate_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(
        dir.path(),
        "127.0.0.1:0",
        &["--rate-limit", "1", "--rate-burst", "3"],
    );
    let get = |path: &str, auth: Option<&str>| {
        let mut r = http().get(format!("{}{path}", server.url));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send().unwrap()
    };
    let statuses: Vec<u16> = (0..3)
        .map(|_| get("/v1/stats", None).status().as_u16())
        .collect();
    assert_eq!(statuses, [200, 200, 200], "the burst");
    // Past the burst, refilled at one a second: a 429 comes well within 20 requests.
    let r = (0..20)
        .map(|_| get("/v1/stats", None))
        .find(|r| r.status() == 429)
        .expect("a 429");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let e: Value = r.json().unwrap();
    assert_eq!(e["code"], "resource_exhausted", "{e}");
    // Health checks are exempt; another client (its own token) has its own bucket.
    assert_eq!(get("/healthz", None).status(), 200);
    assert_eq!(get("/readyz", None).status(), 200);
    assert_ne!(get("/v1/stats", Some("Bearer other")).status(), 429);
    // gRPC: RESOURCE_EXHAUSTED.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        use drover_api::proto::{event_service_client::EventServiceClient, WatchRequest};
        let mut c = EventServiceClient::connect(server.url.clone())
            .await
            .unwrap();
        for _ in 0..20 {
            if let Err(e) = c.watch(authorized(WatchRequest::default())).await {
                return e;
            }
        }
        panic!("never limited");
    });
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    // The bucket refills.
    wait_for(Duration::from_secs(10), "the bucket to refill", || {
        (get("/v1/stats", None).status() == 200).then_some(())
    });
}

#[test]
fn event_streams_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(dir.path(), "127.0.0.1:0", &["--max-event-streams", "2"]);
    let open = || {
        http()
            .get(format!("{}/v1/events", server.url))
            .send()
            .unwrap()
    };
    let a = open();
    let b = open();
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let r = open();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let e: Value = r.json().unwrap();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("--max-event-streams"),
        "{e}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        use drover_api::proto::{event_service_client::EventServiceClient, WatchRequest};
        let mut c = EventServiceClient::connect(server.url.clone())
            .await
            .unwrap();
        c.watch(authorized(WatchRequest::default()))
            .await
            .expect_err("capped")
    });
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    // A closed stream frees its place.
    drop(a);
    let c = wait_for(Duration::from_secs(10), "a free place", || {
        let r = open();
        (r.status() == 200).then_some(r)
    });
    drop((b, c));
}

/// A gRPC request with the harness's admin token.
fn authorized<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", bearer().parse().unwrap());
    r
}
