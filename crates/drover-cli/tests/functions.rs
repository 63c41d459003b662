//! Tasks as functions (issue 14) with the real server binary and a Rust SDK worker
//! (`drover_worker::Worker`, in this process): payload → handler → result, failures with the
//! handler's message, cancellation reaching the handler, a shutdown that lets a running
//! handler finish, results flowing through a workflow, and bad input refused.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use drover_worker::{Ctx, Worker};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Resize {
    w: u64,
    h: u64,
}

#[derive(Serialize)]
struct Resized {
    pixels: u64,
}

/// An SDK worker in a thread of its own, stopped (gracefully) when `stop` is sent.
struct SdkWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl SdkWorker {
    fn start(url: &str, name: &str, saw_cancel: Arc<AtomicBool>) -> SdkWorker {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::builder(format!("http://{url}"))
            .name(name)
            .token(ADMIN_TOKEN)
            .concurrency(4)
            .shutdown_grace(Duration::from_secs(10))
            .handler("resize", |ctx: Ctx, p: Resize| async move {
                ctx.log(format!("resizing to {}x{}", p.w, p.h));
                Ok::<_, String>(Resized { pixels: p.w * p.h })
            })
            .handler("fail", |_ctx: Ctx, p: Value| async move {
                Err::<Value, _>(format!("no such image: {}", p["path"]))
            })
            .handler("nap", |ctx: Ctx, ms: u64| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ctx.log("woke up");
                Ok::<_, String>(json!({"slept_ms": ms}))
            })
            .handler("wait_cancel", move |ctx: Ctx, _p: Value| {
                let saw = saw_cancel.clone();
                async move {
                    ctx.cancelled().await;
                    saw.store(true, Ordering::SeqCst);
                    Err::<Value, _>("stopped on request")
                }
            })
            .handler("extract", |_ctx: Ctx, p: Value| async move {
                Ok::<_, String>(json!({"rows": p["rows"]}))
            })
            .handler("load", |ctx: Ctx, _p: Value| async move {
                let up: Value = ctx.upstream_as("extract")?;
                Ok::<_, String>(json!({"loaded": up["rows"], "from": ctx.upstream().len()}))
            })
            .build()
            .unwrap();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(worker.run(async move {
                let _ = rx.await;
            }))
        });
        SdkWorker {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Begins a graceful shutdown and waits for the worker to return.
    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

impl Drop for SdkWorker {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn workers_named(url: &str, name: &str) -> usize {
    let w = cli_json(url, &["workers"]);
    w["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["name"] == name && w["state"] == "alive")
        .count()
}

fn post(url: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = http()
        .post(format!("http://{url}{path}"))
        .header("authorization", bearer())
        .json(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn get_text(url: &str, path: &str) -> (u16, String) {
    let r = http()
        .get(format!("http://{url}{path}"))
        .header("authorization", bearer())
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn payload_tasks_run_on_handlers_and_return_results() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let url = server.addr.as_str();
    // A command worker that accepts every kind does not take handler tasks.
    let _cmd = start_worker(url, "cmd", 2, &[]);
    let early = submit(url, &["--kind", "resize", "--payload", r#"{"w":2,"h":3}"#]);
    let t = wait_for(Duration::from_secs(10), "a waiting reason", || {
        let t = task(url, &early);
        t["waiting_reason"].as_str().map(|_| t.clone())
    });
    let why = t["waiting_reason"].as_str().unwrap();
    assert!(why.contains("handler for kind resize"), "{why}");
    assert_eq!(t["state"], "queued");

    let saw_cancel = Arc::new(AtomicBool::new(false));
    let mut sdk = SdkWorker::start(url, "sdk-1", saw_cancel.clone());
    wait_for(Duration::from_secs(10), "the SDK worker", || {
        (workers_named(url, "sdk-1") == 1).then_some(())
    });
    let t = wait_state(url, &early, &["succeeded"], Duration::from_secs(10));
    assert_eq!(t["worker"], "sdk-1");
    assert_eq!(t["result"], json!({"pixels": 6}));

    // submit --wait prints the result; `drover result` prints it again.
    let out = cli(
        url,
        &[
            "submit",
            "--kind",
            "resize",
            "--payload",
            r#"{"w":100,"h":5}"#,
            "--wait",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, json!({"pixels": 500}));
    let id = cli_json(url, &["list", "--limit", "1"])["tasks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = cli(url, &["result", &id]);
    assert!(out.status.success());
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        printed
    );
    let t = task(url, &id);
    assert_eq!(t["payload"], json!({"w": 100, "h": 5}));
    assert_eq!(t["spec"]["type"], "handler");
    assert_eq!(t["result_bytes"], 14);
    let (status, raw) = get_text(url, &format!("/v1/tasks/{id}/result"));
    assert_eq!((status, raw.as_str()), (200, r#"{"pixels":500}"#));
    // The handler's log line reaches `drover logs`.
    let logs = cli(url, &["logs", &id]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("resizing to 100x5"));
    // The succeeded event carries the result's size, not the result.
    let events = cli(url, &["events", "--task", &id, "-o", "json"]);
    let text = String::from_utf8_lossy(&events.stdout);
    let succeeded: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["state"] == "succeeded")
        .collect();
    assert_eq!(succeeded.len(), 1, "{text}");
    assert_eq!(succeeded[0]["result_bytes"], 14);
    assert!(!text.contains("pixels"), "{text}");

    // A handler's error fails the attempt with its message, retried as asked.
    let out = cli(
        url,
        &[
            "submit",
            "--kind",
            "fail",
            "--payload",
            r#"{"path":"a.png"}"#,
            "--retries",
            "1",
            "--backoff",
            "10ms",
            "--wait",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such image: \"a.png\""), "{err}");
    let id = cli_json(url, &["list", "--limit", "1"])["tasks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = task(url, &id);
    assert_eq!(
        (t["state"].as_str(), t["attempt"].as_u64()),
        (Some("failed"), Some(2))
    );
    assert!(t.get("result").is_none());
    let out = cli(url, &["result", &id]);
    assert_eq!(out.status.code(), Some(1));
    let (status, raw) = get_text(url, &format!("/v1/tasks/{id}/result"));
    assert_eq!((status, raw.as_str()), (200, "null"));

    // Cancel reaches the running handler (ctx.cancelled()).
    let id = submit(url, &["--kind", "wait_cancel", "--payload", "{}"]);
    wait_state(url, &id, &["running"], Duration::from_secs(10));
    cli(url, &["cancel", &id]);
    wait_for(
        Duration::from_secs(5),
        "the handler to see the cancel",
        || saw_cancel.load(Ordering::SeqCst).then_some(()),
    );
    assert_eq!(task(url, &id)["state"], "cancelled");

    // A graceful shutdown lets a running handler finish and report.
    let id = submit(url, &["--kind", "nap", "--payload", "800"]);
    wait_state(url, &id, &["running"], Duration::from_secs(10));
    sdk.shutdown();
    let t = wait_state(
        url,
        &id,
        &["succeeded", "failed", "queued"],
        Duration::from_secs(10),
    );
    assert_eq!(t["state"], "succeeded", "{t}");
    assert_eq!(t["result"], json!({"slept_ms": 800}));
}

#[test]
fn results_flow_through_a_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let url = server.addr.as_str();
    let _sdk = SdkWorker::start(url, "sdk-wf", Arc::new(AtomicBool::new(false)));
    let _cmd = start_worker(url, "cmd-wf", 2, &["--kinds", "default"]);
    let doc = json!({
        "name": "etl",
        "tasks": [
            {"name": "extract", "kind": "extract", "payload": {"rows": 3}},
            {"name": "load", "kind": "load", "payload": null, "after": ["extract"]},
            {"name": "report", "after": ["extract"],
             "argv": ["sh", "-c", "echo \"got $DROVER_UPSTREAM_EXTRACT_OUTPUT\""]}
        ]
    });
    let (status, w) = post(url, "/v1/workflows", &doc);
    assert_eq!(status, 201, "{w}");
    let id = w["id"].as_str().unwrap().to_string();
    let w = wait_for(Duration::from_secs(20), "the workflow to end", || {
        let w = cli_json(url, &["workflow", "show", &id]);
        (!matches!(w["state"].as_str(), Some("pending" | "running"))).then_some(w)
    });
    assert_eq!(w["state"], "succeeded", "{w}");
    // The workflow's result: its sinks' results by name (a command's is null).
    assert_eq!(
        w["result"],
        json!({"load": {"loaded": 3, "from": 1}, "report": null})
    );
    let report = w["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "report")
        .unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let logs = cli(url, &["logs", &report]);
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout).trim(),
        r#"got {"rows":3}"#
    );
}

#[test]
fn bad_payloads_are_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let url = server.addr.as_str();
    let big = "x".repeat((1 << 20) + 1);
    for (body, field) in [
        (json!({"kind": "k", "payload": big}), "payload"),
        (json!({"payload": {"a": 1}}), "kind"),
        (
            json!({"kind": "k", "payload": 1, "argv": ["true"]}),
            "payload",
        ),
        (json!({"kind": "k", "cwd": "/tmp"}), "cwd"),
        (json!({"kind": "k", "payload": 1, "env": {"A": "b"}}), "env"),
    ] {
        let (status, e) = post(url, "/v1/tasks", &body);
        assert_eq!(status, 400, "{e}");
        assert_eq!(e["field"], field, "{e}");
    }
    let out = cli(url, &["submit", "--kind", "k", "--payload", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--payload is not JSON"));
    // Nothing was stored.
    assert_eq!(cli_json(url, &["list"])["tasks"], json!([]));
}
