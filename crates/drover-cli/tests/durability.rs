//! kill -9 of the server and of workers, with real processes: no accepted task is lost, none
//! runs twice unless its lease expired, and a late result of a reclaimed attempt is refused.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// Submits `n` exec tasks that append "ID ATTEMPT" to `log`, in batches over REST.
fn submit_logging_tasks(url: &str, n: usize, log: &std::path::Path, sleep: &str) -> Vec<String> {
    let script = format!(
        "echo \"$DROVER_TASK_ID $DROVER_ATTEMPT\" >> {}; sleep {sleep}",
        log.display()
    );
    let mut ids = Vec::new();
    for chunk in 0..n.div_ceil(1000) {
        let size = (n - chunk * 1000).min(1000);
        ids.extend(batch(
            url,
            (0..size)
                .map(|_| json!({"argv": ["sh", "-c", script], "queue": "durable"}))
                .collect(),
        ));
    }
    assert_eq!(ids.len(), n);
    ids
}

fn runs_per_task(log: &std::path::Path) -> BTreeMap<String, Vec<u32>> {
    let mut m: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let mut it = line.split_whitespace();
        if let (Some(id), Some(a)) = (it.next(), it.next()) {
            m.entry(id.to_string())
                .or_default()
                .push(a.parse().unwrap());
        }
    }
    m
}

fn terminal(stats: &Value) -> u64 {
    [
        "succeeded",
        "failed",
        "cancelled",
        "timed_out",
        "skipped",
        "expired",
        "dead",
    ]
    .iter()
    .map(|s| count(stats, s))
    .sum()
}

#[test]
fn kill_9_of_the_server_loses_nothing_and_runs_nothing_twice() {
    const N: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut server = start_server(dir.path(), &addr);
    let url = server.url.clone();
    let _w: Vec<Proc> = (0..2)
        .map(|i| start_worker(&url, &format!("w{i}"), 6, &[]))
        .collect();
    let log = dir.path().join("runs.log");
    let ids = submit_logging_tasks(&url, N, &log, "0.05");

    // Kill it while thousands are queued and some are running.
    wait_for(Duration::from_secs(60), "some tasks to finish", || {
        (count(&stats(&url), "succeeded") >= 200).then_some(())
    });
    let before = stats(&url);
    assert!(
        count(&before, "queued") > 1000,
        "still queued at the kill: {before}"
    );
    server.proc.kill9();

    let server = start_server(dir.path(), &addr);
    let after_restart = stats(&server.url);
    let total: u64 = after_restart["tasks_by_state"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, N as u64, "every accepted task is still there");

    wait_for(Duration::from_secs(240), "every task to finish", || {
        (terminal(&stats(&server.url)) == N as u64).then_some(())
    });
    let end = stats(&server.url);
    assert_eq!(count(&end, "succeeded"), N as u64, "{end}");

    let runs = runs_per_task(&log);
    assert_eq!(runs.len(), N, "every task ran");
    for id in &ids {
        let r = &runs[id];
        if r.len() > 1 {
            // Allowed only when an earlier attempt's lease expired.
            let t = task(&server.url, id);
            let lost = t["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["outcome"] == "lost")
                .count();
            assert!(
                lost >= r.len() - 1,
                "{id} ran {} times without an expired lease: {t}",
                r.len()
            );
        }
    }
}

#[test]
fn kill_9_of_a_worker_moves_its_task_after_the_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let url = &server.url;
    let mut doomed = start_worker(url, "doomed", 1, &[]);
    let marker = dir.path().join("attempts");
    let script = format!("echo $DROVER_ATTEMPT >> {}; sleep 2", marker.display());
    let id = submit(url, &["--", "sh", "-c", &script]);
    let t = wait_state(url, &id, &["running"], Duration::from_secs(30));
    assert_eq!(t["worker"], "doomed");
    let _survivor = start_worker(url, "survivor", 1, &[]);
    doomed.kill9();

    let t = wait_state(
        url,
        &id,
        &["succeeded", "failed", "dead"],
        Duration::from_secs(30),
    );
    assert_eq!(t["state"], "succeeded", "{t}");
    assert_eq!(t["worker"], "survivor");
    assert_eq!(t["attempt"], 2);
    let attempts = t["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["worker"], "doomed");
    assert_eq!(attempts[0]["outcome"], "lost");
    assert_eq!(attempts[1]["outcome"], "succeeded");
}

#[test]
fn a_late_result_from_a_reclaimed_attempt_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let url = &server.url;
    let stalled = start_worker(url, "stalled", 1, &[]);
    let id = submit(url, &["--", "sh", "-c", "sleep 1; echo first"]);
    wait_state(url, &id, &["running"], Duration::from_secs(30));
    // Freeze the worker (not its task): no heartbeats, so the lease expires.
    stalled.signal(Signal::SIGSTOP);
    let _other = start_worker(url, "other", 1, &[]);
    let t = wait_for(
        Duration::from_secs(30),
        "the task to move to the other worker",
        || {
            let t = task(url, &id);
            (t["worker"] == "other").then_some(t)
        },
    );
    assert_eq!(t["attempt"], 2);
    // The stalled worker wakes up with a result for attempt 1 (its process has finished).
    stalled.signal(Signal::SIGCONT);
    wait_for(
        Duration::from_secs(30),
        "the stale result to be rejected",
        || {
            let m = metrics_text(url);
            (metric(&m, "drover_stale_results_rejected_total") >= 1.0).then_some(())
        },
    );
    let t = wait_state(url, &id, &["succeeded"], Duration::from_secs(30));
    assert_eq!(t["attempt"], 2);
    assert_eq!(t["worker"], "other");
    let a = t["attempts"].as_array().unwrap();
    assert_eq!(
        a[0]["outcome"], "lost",
        "attempt 1 keeps its lost outcome: {t}"
    );
}
