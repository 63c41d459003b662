//! Backpressure instead of unbounded growth: full backlogs answer 429 with `Retry-After` and
//! store nothing, the CLI retries them and says so, and readers that stop reading (a worker's
//! gRPC stream, an SSE subscriber, a webhook receiver) leave the server's memory flat.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn noops(n: usize, queue: &str) -> Vec<Value> {
    (0..n)
        .map(|_| json!({"kind": "noop", "queue": queue}))
        .collect()
}

/// `POST /v1/tasks:batch`: the status, `Retry-After` and body.
fn post_batch(url: &str, tasks: Vec<Value>) -> (u16, Option<String>, Value) {
    let r = http()
        .post(format!("{url}/v1/tasks:batch"))
        .json(&json!({ "tasks": tasks }))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, r.json().unwrap_or(Value::Null))
}

fn total_tasks(url: &str) -> u64 {
    let s = stats(url);
    s["tasks_by_state"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

fn queue_depth(url: &str, queue: &str) -> u64 {
    let list = cli_json(url, &["queue", "list"]);
    list["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == queue)
        .map_or(0, |q| q["depth"].as_u64().unwrap())
}

#[test]
fn full_backlogs_answer_429_store_nothing_and_take_tasks_again_once_drained() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(dir.path(), "127.0.0.1:0", &["--max-queued", "8"]);
    let url = server.url.clone();
    let q = cli_json(&url, &["queue", "set", "q", "--max-queued", "3"]);
    assert_eq!(q["max_queued"], 3);

    // No worker: tasks wait. Three fit the queue.
    assert_eq!(batch(&url, noops(3, "q")).len(), 3);
    // A batch of two would make five: refused whole, nothing stored.
    let (status, retry, body) = post_batch(&url, noops(2, "q"));
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(body["code"], "resource_exhausted");
    assert_eq!(body["field"], "queue");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("queue q") && msg.contains("nothing was stored"),
        "{msg}"
    );
    assert_eq!(total_tasks(&url), 3);
    // One task alone, and a workflow with a node in q, are refused as well.
    let one = http()
        .post(format!("{url}/v1/tasks"))
        .json(&json!({"kind": "noop", "queue": "q"}))
        .send()
        .unwrap();
    assert_eq!(one.status().as_u16(), 429);
    assert!(one.headers().get("retry-after").is_some());
    let wf = json!({"name": "w", "tasks": [
        {"name": "a", "kind": "noop", "queue": "other"},
        {"name": "b", "kind": "noop", "queue": "q", "after": ["a"]}]});
    let r = http()
        .post(format!("{url}/v1/workflows"))
        .json(&wf)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(total_tasks(&url), 3);

    // The server-wide limit: 3 + 5 = 8 waiting, one more anywhere is refused.
    assert_eq!(batch(&url, noops(5, "other")).len(), 5);
    let (status, _, body) = post_batch(&url, noops(1, "third"));
    assert_eq!(status, 429);
    assert!(
        body["message"].as_str().unwrap().contains("--max-queued"),
        "{body}"
    );
    assert_eq!(body["field"], Value::Null);
    assert_eq!(total_tasks(&url), 8);
    let m = metrics_text(&url);
    assert_eq!(metric(&m, "drover_queue_depth{queue=\"q\"}"), 3.0);

    // A worker drains the backlog; then the same submits are taken.
    let _w = start_worker(&url, "drain-w", 4, &[]);
    wait_for(Duration::from_secs(30), "the backlog to drain", || {
        (count(&stats(&url), "succeeded") == 8).then_some(())
    });
    assert_eq!(queue_depth(&url, "q"), 0);
    wait_for(Duration::from_secs(30), "submits to be taken again", || {
        (post_batch(&url, noops(2, "q")).0 == 201).then_some(())
    });
    assert_eq!(post_batch(&url, noops(1, "third")).0, 201);
    // Lifting the limit: 0.
    let q = cli_json(&url, &["queue", "set", "q", "--max-queued", "0"]);
    assert_eq!(q["max_queued"], Value::Null);
}

#[test]
fn the_cli_retries_a_full_queue_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let url = server.url.clone();
    cli_json(&url, &["queue", "set", "q", "--max-queued", "1"]);
    let first = submit(&url, &["--queue", "q", "--kind", "noop"]);

    // The queue is full: the CLI waits and retries, saying so on stderr.
    let mut child = drover()
        .args(["submit", "--queue", "q", "--kind", "noop"])
        .env("DROVER_SERVER", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Still waiting after its first refusal: one task stored.
    wait_for(Duration::from_secs(10), "the CLI to be refused", || {
        let audit = cli_json(&url, &["audit", "--limit", "20"]);
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["status"] == 429)
            .then_some(())
    });
    assert_eq!(total_tasks(&url), 1);
    assert!(child.try_wait().unwrap().is_none(), "still retrying");

    // A worker takes the first task: the retried submit goes in and the CLI succeeds.
    let _w = start_worker(&url, "retry-w", 1, &[]);
    let out = wait_for(Duration::from_secs(30), "the CLI to finish", || {
        child.try_wait().unwrap()
    });
    assert!(out.success());
    let mut id = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut id)
        .unwrap();
    let said = said.join().unwrap();
    assert!(
        said.contains("refused for now (429")
            && said.contains("retrying in")
            && said.contains("queue q"),
        "{said}"
    );
    assert_ne!(id.trim(), first);
    wait_state(&url, id.trim(), &["succeeded"], Duration::from_secs(30));
}

// ---- readers that stop reading ----

fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A webhook receiver that accepts connections and never answers (nor reads).
fn hanging_receiver(stop: Arc<AtomicBool>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((c, _)) => held.push(c),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    url
}

/// An SSE subscriber that sends its request and never reads the answer.
fn stalled_sse(addr: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    let req = format!(
        "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\n\r\n",
        bearer()
    );
    c.write_all(req.as_bytes()).unwrap();
    c
}

/// A worker that registers over gRPC and never reads its stream, while heartbeating with
/// attempts it does not hold (each answered with a cancel the server must queue for it).
/// Cut off, it connects again. Returns how many sessions it opened.
async fn stalled_worker(url: String, stop: Arc<AtomicBool>, sessions: Arc<AtomicU64>) {
    use drover_api::proto::{
        worker_message::Body, worker_service_client::WorkerServiceClient, AttemptRef, Heartbeat,
        Register, WorkerMessage,
    };
    let fake: Vec<AttemptRef> = (0..20u32)
        .map(|i| AttemptRef {
            task_id: format!("0190c0de-0000-7000-8000-{i:012x}"),
            attempt: 1,
            lease: format!("{i:032x}"),
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        let Ok(channel) = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let register = Register {
            name: "stalled".into(),
            kinds: vec!["nothing-runs-here".into()],
            slots: 1,
            ..Default::default()
        };
        tx.send(WorkerMessage {
            body: Some(Body::Register(register)),
        })
        .await
        .unwrap();
        let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        req.metadata_mut()
            .insert("authorization", bearer().parse().unwrap());
        let Ok(resp) = WorkerServiceClient::new(channel).session(req).await else {
            // The previous session's leave may not be processed yet (name in use).
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        sessions.fetch_add(1, Ordering::Relaxed);
        // Held, never read.
        let _inbound = resp.into_inner();
        while !stop.load(Ordering::Relaxed) {
            let hb = WorkerMessage {
                body: Some(Body::Heartbeat(Heartbeat {
                    held: fake.clone(),
                    running: 0,
                })),
            };
            let sent = tokio::time::timeout(Duration::from_secs(5), tx.send(hb)).await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The three stalls at once, under a steady stream of tasks: after a warm-up, the server's
/// RSS after 60 s is within 10 % of what it was.
#[test]
fn readers_that_stop_reading_leave_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--allow-private-webhooks",
            "--webhook-timeout",
            "2s",
            "--webhook-backoff",
            "100ms",
            // Steady state on disk too: the store's page caches stop growing with it.
            "--event-retention",
            "5s",
            "--task-retention",
            "5s",
            "--audit-retention",
            "5s",
            // A server that falls behind refuses submits rather than queueing them.
            "--max-queued",
            "2000",
        ],
    );
    let url = server.url.clone();
    let pid = server.proc.pid();
    let _w = start_worker(&url, "steady-w", 16, &[]);
    let stop = Arc::new(AtomicBool::new(false));

    let hook = hanging_receiver(stop.clone());
    cli_json(&url, &["webhook", "add", &hook, "--events", "*"]);
    let _sse = stalled_sse(&server.addr);
    let sessions = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(stalled_worker(url.clone(), stop.clone(), sessions.clone()));

    // The steady stream: 10 tasks every 50 ms.
    let submitted = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (url, stop, submitted) = (url.clone(), stop.clone(), submitted.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if post_batch(&url, noops(10, "steady")).0 == 201 {
                    submitted.fetch_add(10, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // Warm-up: the event ring fills, retention runs, the stalled worker is cut off at least
    // once (its queue reached its bound), the webhook and the subscriber fall behind.
    let warm = Instant::now();
    wait_for(Duration::from_secs(120), "the stalls to take hold", || {
        let m = metrics_text(&url);
        let cut = metric(&m, "drover_worker_streams_cut_total");
        let failed = metric(&m, "drover_webhook_deliveries_total{outcome=\"error\"}");
        (warm.elapsed() >= Duration::from_secs(40) && cut >= 1.0 && failed >= 1.0).then_some(())
    });
    let before = rss_kib(pid);
    let ran = |m: &str| metric(m, "drover_tasks_finished_total{state=\"succeeded\"}") as u64;
    let done_before = ran(&metrics_text(&url));
    let cut_before = metric(&metrics_text(&url), "drover_worker_streams_cut_total");
    let start = Instant::now();
    let mut peak = before;
    while start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(rss_kib(pid));
    }
    let after = rss_kib(pid);
    let m = metrics_text(&url);
    let done = ran(&m).saturating_sub(done_before);
    let cut = metric(&m, "drover_worker_streams_cut_total") - cut_before;
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    eprintln!(
        "RSS before {before} KiB, after {after} KiB (peak {peak} KiB); {done} tasks ran in the \
         window, {} submitted in all; stalled worker cut off {cut} more times ({} sessions)",
        submitted.load(Ordering::Relaxed),
        sessions.load(Ordering::Relaxed),
    );
    assert!(
        after as f64 <= before as f64 * 1.10,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // The stalls were real and the server kept working through them.
    assert!(done > 1000, "only {done} tasks ran in 60 s");
    assert!(
        cut >= 1.0,
        "the stalled worker was not cut off in the window"
    );
    rt.shutdown_timeout(Duration::from_secs(1));
}
