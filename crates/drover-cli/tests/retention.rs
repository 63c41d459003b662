//! Task retention with real processes: a finished task, its attempts, its logs and its
//! idempotency key are deleted once it ended longer ago than `--task-retention`; a task still
//! running is never touched.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// The HTTP status and JSON body of a GET.
fn get(url: &str) -> (u16, Value) {
    let resp = http().get(url).send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn stdout_of(url: &str, id: &str) -> Option<String> {
    let (status, body) = get(&format!("{url}/v1/tasks/{id}/logs"));
    (status == 200).then(|| body["stdout"].as_str().unwrap_or_default().to_string())
}

#[test]
fn finished_tasks_and_their_logs_are_pruned_running_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    // The window is applied every second (a quarter of it).
    let server = start_server_with(dir.path(), &addr, &["--task-retention", "4s"]);
    let url = server.url.clone();
    let _w = start_worker(&url, "ret-w", 2, &[]);

    let done = submit(
        &url,
        &[
            "--idempotency-key",
            "order-42",
            "--",
            "sh",
            "-c",
            "echo retention-out; echo retention-err >&2",
        ],
    );
    wait_state(&url, &done, &["succeeded"], Duration::from_secs(30));
    // Its output was stored (well within the window).
    let out = stdout_of(&url, &done).expect("logs of a finished task");
    assert!(out.contains("retention-out"), "{out:?}");

    // Submitted after the first one ended, and running past its pruning.
    let running = submit(&url, &["--", "sh", "-c", "echo still-here; exec sleep 60"]);
    wait_state(&url, &running, &["running"], Duration::from_secs(30));
    wait_for(Duration::from_secs(30), "the running task's output", || {
        stdout_of(&url, &running).filter(|o| o.contains("still-here"))
    });

    wait_for(
        Duration::from_secs(30),
        "the finished task to be pruned",
        || (get(&format!("{url}/v1/tasks/{done}")).0 == 404).then_some(()),
    );
    let (status, body) = get(&format!("{url}/v1/tasks/{done}/logs"));
    assert_eq!(status, 404, "logs of a pruned task: {body}");
    assert!(metric(&metrics_text(&url), "drover_tasks_pruned_total") >= 1.0);
    let listed = cli_json(&url, &["list"]);
    assert!(
        !listed.to_string().contains(&done),
        "a pruned task is still listed: {listed}"
    );

    // Its idempotency key went with it: the same key now makes a new task.
    let again = submit(&url, &["--idempotency-key", "order-42", "--", "true"]);
    assert_ne!(again, done, "a pruned task's key still named it");
    assert_eq!(
        submit(&url, &["--idempotency-key", "order-42", "--", "true"]),
        again,
        "the key names the new task"
    );

    // The running task is untouched: record, state and output.
    let t = task(&url, &running);
    assert_eq!(t["state"], "running", "{t}");
    let out = stdout_of(&url, &running).expect("logs of the running task");
    assert!(out.contains("still-here"), "{out:?}");

    // Ends the sleep (the worker kills its process group).
    let out = cli_json(&url, &["cancel", &running]);
    assert_eq!(out["state"], "cancelled");
}
