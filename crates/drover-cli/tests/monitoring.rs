//! Monitoring with real processes: the event stream (SSE and gRPC) in order and resumable
//! across reconnects and a kill -9 of the server, retention, signed and retried webhooks
//! against a local receiver, worker liveness states, metrics that move, and the
//! event-driven CLI (`submit --wait`, `status --watch`, `logs -f`).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::*;
use hmac::{Hmac, Mac};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use sha2::Sha256;

// ---- helpers ----

/// Opens `GET /v1/events?{query}` and parses it in a thread; events arrive on the channel as
/// (id, data). Dropping the receiver closes the connection (at the next event or keep-alive).
fn sse(url: &str, query: &str, last_event_id: Option<u64>) -> Receiver<(u64, Value)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap();
    let mut rb = client
        .get(format!("{url}/v1/events?{query}"))
        .header("authorization", bearer());
    if let Some(id) = last_event_id {
        rb = rb.header("Last-Event-ID", id.to_string());
    }
    let resp = rb.send().expect("open the event stream");
    assert_eq!(resp.status(), 200, "GET /v1/events?{query}");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(resp);
        let (mut id, mut data, mut kind) = (None, String::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if let (Some(i), false) = (id.take(), data.is_empty()) {
                    let v: Value = serde_json::from_str(&data).expect("data is JSON");
                    assert_eq!(v["type"], kind.as_str(), "event: matches data.type");
                    if tx.send((i, v)).is_err() {
                        return;
                    }
                }
                data.clear();
                kind.clear();
            } else if let Some(v) = l.strip_prefix("id: ") {
                id = Some(v.parse::<u64>().expect("numeric id"));
            } else if let Some(v) = l.strip_prefix("data: ") {
                data.push_str(v);
            } else if let Some(v) = l.strip_prefix("event: ") {
                kind = v.to_string();
            }
        }
    });
    rx
}

/// Takes events from `rx` until `done` says so (or panics at the deadline).
fn take_until(
    rx: &Receiver<(u64, Value)>,
    within: Duration,
    what: &str,
    mut done: impl FnMut(&[(u64, Value)]) -> bool,
) -> Vec<(u64, Value)> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) => got.push(e),
            Err(_) => panic!(
                "timed out waiting for {what}; got {} events, last {:?}",
                got.len(),
                got.last().map(|e| e.0)
            ),
        }
    }
    got
}

fn succeeded(events: &[(u64, Value)], ids: &BTreeSet<String>) -> bool {
    let seen: BTreeSet<String> = events
        .iter()
        .filter(|(_, v)| v["state"] == "succeeded")
        .filter_map(|(_, v)| v["task_id"].as_str().map(str::to_string))
        .collect();
    ids.is_subset(&seen)
}

fn submit_noops(url: &str, n: usize) -> BTreeSet<String> {
    batch(url, (0..n).map(|_| json!({"kind": "noop"})).collect())
        .into_iter()
        .collect()
}

fn workers_json(url: &str) -> Vec<Value> {
    cli_json(url, &["workers"])["workers"]
        .as_array()
        .unwrap()
        .clone()
}

fn worker_state(url: &str, name: &str) -> Option<(String, u64)> {
    workers_json(url)
        .into_iter()
        .find(|w| w["name"] == name)
        .map(|w| {
            (
                w["state"].as_str().unwrap().to_string(),
                w["last_heartbeat_age_ms"].as_u64().unwrap(),
            )
        })
}

// ---- the event stream ----

#[test]
fn events_resume_without_gap_or_duplicate_across_reconnect_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut server = start_server(dir.path(), &addr);
    let url = server.url.clone();
    let _w = start_worker(&url, "ev-w", 4, &[]);
    let mut all: Vec<(u64, Value)> = Vec::new();

    // 1. From the beginning, live.
    let rx = sse(&url, "after=0", None);
    let first = submit_noops(&url, 30);
    all.extend(take_until(
        &rx,
        Duration::from_secs(30),
        "the first batch",
        |e| succeeded(e, &first),
    ));
    drop(rx);
    let last = all.last().unwrap().0;

    // 2. Events committed while disconnected, then a reconnect with Last-Event-ID.
    let second = submit_noops(&url, 30);
    for id in &second {
        wait_state(&url, id, &["succeeded"], Duration::from_secs(30));
    }
    let rx = sse(&url, "after=0", Some(last));
    all.extend(take_until(
        &rx,
        Duration::from_secs(30),
        "the second batch",
        |e| succeeded(e, &second),
    ));
    drop(rx);
    let last = all.last().unwrap().0;

    // 3. kill -9 of the server; it comes back on the same store and port; numbering goes on.
    server.proc.kill9();
    let server = start_server(dir.path(), &addr);
    let rx = sse(&url, "", Some(last));
    wait_for(Duration::from_secs(30), "the worker to re-register", || {
        worker_state(&url, "ev-w")
            .is_some_and(|(s, _)| s == "alive")
            .then_some(())
    });
    let third = submit_noops(&url, 10);
    all.extend(take_until(
        &rx,
        Duration::from_secs(30),
        "the third batch",
        |e| succeeded(e, &third),
    ));

    // Strictly increasing and gapless from 1, over three connections and a crash.
    let seqs: Vec<u64> = all.iter().map(|e| e.0).collect();
    let want: Vec<u64> = (1..=*seqs.last().unwrap()).collect();
    assert_eq!(seqs, want, "no gap, no duplicate");
    for (seq, v) in &all {
        assert_eq!(v["seq"].as_u64(), Some(*seq));
        assert!(v["at"].as_str().unwrap().ends_with('Z'));
        match v["type"].as_str().unwrap() {
            "task" => {
                for f in ["task_id", "state", "queue", "attempt"] {
                    assert!(!v[f].is_null(), "{f} in {v}");
                }
                assert!(
                    v.get("worker").is_some() && v.get("reason").is_some(),
                    "{v}"
                );
            }
            "worker" => assert!(v["worker"].is_string() && v["state"].is_string(), "{v}"),
            other => panic!("unknown type {other}"),
        }
    }
    // The worker left with the old server and joined the new one.
    assert!(all
        .iter()
        .any(|(_, v)| v["type"] == "worker" && v["state"] == "joined"));

    // The CLI shows the same history, filtered.
    let out = cli(
        &server.url,
        &["events", "-o", "json", "--after", "0", "--type", "worker"],
    );
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|v| v["type"] == "worker"));
    let task = first.iter().next().unwrap();
    let out = cli(&server.url, &["events", "--after", "0", "--task", task]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("task.queued") && text.contains("task.succeeded"),
        "{text}"
    );

    // Bad filters are refused clearly.
    for q in ["state=bogus", "type=job", "task=nope"] {
        let r = http().get(format!("{url}/v1/events?{q}")).send().unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let e: Value = r.json().unwrap();
        assert_eq!(e["code"], "invalid_argument", "{q}");
    }
}

#[test]
fn events_follow_filters_and_grpc_watch() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &free_addr());
    let url = server.url.clone();
    let _w = start_worker(&url, "grpc-w", 2, &[]);

    let done = submit_noops(&url, 3);
    for id in &done {
        wait_state(&url, id, &["succeeded"], Duration::from_secs(30));
    }
    // `drover events --follow` with filters, as a live process.
    let mut follow = drover()
        .args([
            "events",
            "--follow",
            "--state",
            "succeeded",
            "--queue",
            "live",
            // From the start: a follower that subscribes only after the live task succeeded
            // (a slow start on a loaded machine) still prints it; the filters keep the rest out.
            "--after",
            "0",
        ])
        .env("DROVER_SERVER", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (ltx, lrx) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = ltx.send(l);
        }
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use drover_api::proto::event_service_client::EventServiceClient;
        use drover_api::proto::WatchRequest;
        let mut c = EventServiceClient::connect(url.clone()).await.unwrap();
        let mut watch = tonic::Request::new(WatchRequest {
            after: Some(0),
            types: vec!["task".into()],
            ..Default::default()
        });
        watch
            .metadata_mut()
            .insert("authorization", bearer().parse().unwrap());
        let mut stream = c.watch(watch).await.unwrap().into_inner();
        let mut seen = BTreeSet::new();
        let mut last = 0;
        while !done.iter().all(|id| seen.contains(id)) {
            let e = tokio::time::timeout(Duration::from_secs(20), stream.message())
                .await
                .expect("replay in time")
                .unwrap()
                .expect("stream open");
            assert!(e.seq > last, "in order");
            last = e.seq;
            assert_eq!(e.r#type, "task");
            if e.state == "succeeded" {
                seen.insert(e.task_id.clone());
            }
        }
        // Now live: a new task's events arrive on the same stream.
        let live: Vec<String> = {
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                vec![submit(&url, &["--kind", "noop", "--queue", "live"])]
            })
            .await
            .unwrap()
        };
        loop {
            let e = tokio::time::timeout(Duration::from_secs(20), stream.message())
                .await
                .expect("live event in time")
                .unwrap()
                .unwrap();
            assert!(e.seq > last);
            last = e.seq;
            if e.task_id == live[0] && e.state == "succeeded" {
                assert_eq!(e.queue, "live");
                break;
            }
        }
        let mut bad = tonic::Request::new(WatchRequest {
            types: vec!["job".into()],
            ..Default::default()
        });
        bad.metadata_mut()
            .insert("authorization", bearer().parse().unwrap());
        let err = c.watch(bad).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    });

    let line = lrx
        .recv_timeout(Duration::from_secs(20))
        .expect("drover events --follow printed the live task");
    assert!(
        line.contains("task.succeeded") && line.contains("queue=live"),
        "{line}"
    );
    let _ = follow.kill();
    let _ = follow.wait();
}

#[test]
fn retention_prunes_old_events_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut server = start_server_with(dir.path(), &addr, &["--event-retention", "3s"]);
    let url = server.url.clone();
    let _w = start_worker(&url, "ret-w", 2, &[]);
    let ids = submit_noops(&url, 5);
    for id in &ids {
        wait_state(&url, id, &["succeeded"], Duration::from_secs(30));
    }
    let history = |url: &str| -> Vec<u64> {
        let out = cli(url, &["events", "-o", "json", "--after", "0"]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let before = history(&url);
    assert!(before.len() > 10, "{before:?}");
    let newest = *before.last().unwrap();
    // Only the newest event is kept once everything is older than the window.
    wait_for(Duration::from_secs(30), "old events to be pruned", || {
        (history(&url) == [newest]).then_some(())
    });
    let m = metrics_text(&url);
    assert!(metric(&m, "drover_events_pruned_total") >= (before.len() - 1) as f64);
    // After a restart, numbering goes on from the kept event.
    server.proc.kill9();
    let server = start_server_with(dir.path(), &addr, &["--event-retention", "3s"]);
    let rx = sse(&server.url, "", None);
    let more = submit_noops(&server.url, 1);
    let got = take_until(&rx, Duration::from_secs(30), "the new task", |e| {
        succeeded(e, &more)
    });
    assert!(got[0].0 > newest, "{} after {newest}", got[0].0);
}

// ---- webhooks ----

#[test]
fn webhooks_are_signed_retried_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(
        dir.path(),
        &free_addr(),
        // The receiver is on 127.0.0.1.
        &[
            "--webhook-backoff",
            "200ms",
            "--webhook-timeout",
            "5s",
            "--allow-private-webhooks",
        ],
    );
    let url = server.url.clone();
    let _w = start_worker(&url, "hook-w", 2, &[]);
    let (hook_url, got) = webhook_receiver(2);
    const SECRET: &str = "test-secret-0123";

    let hook = cli_json(
        &url,
        &[
            "webhook",
            "add",
            &hook_url,
            "--events",
            "task.succeeded",
            "--secret",
            SECRET,
        ],
    );
    let hook_id = hook["id"].as_str().unwrap().to_string();
    assert_eq!(hook["events"], json!(["task.succeeded"]));
    let id = submit(&url, &["--kind", "noop"]);

    // Two failures, then success: three POSTs of the same event.
    wait_for(Duration::from_secs(30), "three deliveries", || {
        (got.lock().unwrap().len() >= 3).then_some(())
    });
    let deliveries = got.lock().unwrap();
    let mut seqs = BTreeSet::new();
    for d in deliveries.iter().take(3) {
        let ts = d.header("X-Drover-Timestamp").expect("timestamp header");
        let sig = d.header("X-Drover-Signature").expect("signature header");
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(&d.body);
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sig, want, "signature over <timestamp>.<body>");
        let age = ts.parse::<i64>().unwrap() - drover_server::clock::now_micros() / 1_000_000;
        assert!(age.abs() < 60, "a current timestamp");
        let v: Value = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(v["task_id"], id.as_str());
        assert_eq!(v["state"], "succeeded");
        assert_eq!(d.header("X-Drover-Event"), Some("task.succeeded"));
        seqs.insert(v["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs.len(), 1, "the same event, retried");
    drop(deliveries);

    // The delivery log, newest first; the cursor moves past the event.
    let log = wait_for(Duration::from_secs(10), "the delivery log", || {
        let l = cli_json(&url, &["webhook", "deliveries", &hook_id]);
        (l["deliveries"].as_array().unwrap().len() >= 3).then_some(l)
    });
    let attempts: Vec<(u64, u64, bool, bool)> = log["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["attempt"].as_u64().unwrap(),
                d["status"].as_u64().unwrap(),
                d["ok"].as_bool().unwrap(),
                d["last"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (3, 200, true, true),
            (2, 500, false, false),
            (1, 500, false, false)
        ]
    );
    let text = String::from_utf8_lossy(&cli(&url, &["webhook", "deliveries", &hook_id]).stdout)
        .to_string();
    assert!(text.contains("retrying: HTTP 500"), "{text}");
    wait_for(Duration::from_secs(10), "the cursor to move", || {
        let l = cli_json(&url, &["webhook", "list"]);
        let w = &l["webhooks"][0];
        assert!(w.get("secret").is_none(), "the secret is shown only once");
        (w["delivered_seq"].as_u64().unwrap() >= *seqs.first().unwrap()).then_some(())
    });
    let m = metrics_text(&url);
    assert_eq!(
        metric(&m, "drover_webhook_deliveries_total{outcome=\"error\"}"),
        2.0
    );
    assert_eq!(
        metric(&m, "drover_webhook_deliveries_total{outcome=\"ok\"}"),
        1.0
    );

    // Bad input: a 4xx JSON error, and a usage error from the CLI before sending.
    for body in [
        json!({"url": "ftp://127.0.0.1/x"}),
        json!({"url": "http://127.0.0.1/x", "secret": "short"}),
        json!({"url": "http://127.0.0.1/x", "events": ["task.done"]}),
        json!({"url": "http://user:pw@127.0.0.1/x"}),
        json!({"url": "http://127.0.0.1/x", "extra": 1}),
    ] {
        let r = http()
            .post(format!("{url}/v1/webhooks"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().unwrap();
        assert_eq!(e["code"], "invalid_argument", "{body}");
    }
    let out = cli(&url, &["webhook", "add", "file:///etc/passwd"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&url, &["webhook", "rm", "no-such-hook"]);
    assert_eq!(out.status.code(), Some(1));

    // A generated secret is shown once; removal works.
    let other = cli_json(&url, &["webhook", "add", "http://127.0.0.1:9/none"]);
    assert!(other["secret"].as_str().unwrap().len() >= 32);
    assert_eq!(other["events"], json!(["*"]));
    assert!(cli(&url, &["webhook", "rm", other["id"].as_str().unwrap()])
        .status
        .success());
    let l = cli_json(&url, &["webhook", "list"]);
    assert_eq!(l["webhooks"].as_array().unwrap().len(), 1);
}

// ---- workers ----

#[test]
fn worker_states_alive_suspect_lost_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &free_addr());
    let url = server.url.clone();
    let worker_events = sse(&url, "type=worker", None);
    let mut w = start_worker(&url, "sleepy", 1, &[]);
    let (state, age) = worker_state(&url, "sleepy").unwrap();
    assert_eq!(state, "alive");
    assert!(age < 2000, "{age}");

    // Stopped: heartbeats stop. Suspect after two missed intervals, lost after a lease.
    w.signal(Signal::SIGSTOP);
    wait_for(Duration::from_secs(10), "suspect", || {
        worker_state(&url, "sleepy")
            .filter(|(s, _)| s == "suspect")
            .map(|(_, age)| assert!(age > 400, "{age}"))
    });
    wait_for(Duration::from_secs(10), "lost", || {
        worker_state(&url, "sleepy")
            .filter(|(s, _)| s == "lost")
            .map(|(_, age)| assert!(age > 2000, "{age}"))
    });
    let m = metrics_text(&url);
    assert_eq!(metric(&m, "drover_workers{state=\"lost\"}"), 1.0);
    w.signal(Signal::SIGCONT);
    wait_for(Duration::from_secs(20), "alive again", || {
        worker_state(&url, "sleepy")
            .is_some_and(|(s, _)| s == "alive")
            .then_some(())
    });

    // Gone for good: still listed, as lost.
    w.kill9();
    wait_for(Duration::from_secs(10), "listed as lost", || {
        worker_state(&url, "sleepy")
            .is_some_and(|(s, _)| s == "lost")
            .then_some(())
    });
    let text = String::from_utf8_lossy(&cli(&url, &["workers"]).stdout).to_string();
    assert!(text.contains("lost") && text.contains("AGE"), "{text}");
    let m = metrics_text(&url);
    assert_eq!(metric(&m, "drover_workers{state=\"alive\"}"), 0.0);

    // Each transition was also an event, in order, ending with the session.
    let got = take_until(&worker_events, Duration::from_secs(20), "left", |evs| {
        evs.iter().any(|(_, v)| v["state"] == "left")
    });
    let states: Vec<&str> = got
        .iter()
        .inspect(|(_, v)| assert_eq!(v["worker"], "sleepy", "{v}"))
        .map(|(_, v)| v["state"].as_str().unwrap())
        .collect();
    let mut expected = ["joined", "suspect", "lost", "alive", "left"].into_iter();
    let mut next = expected.next();
    for s in &states {
        if Some(*s) == next {
            next = expected.next();
        }
    }
    assert_eq!(next, None, "worker events out of order: {states:?}");
}

// ---- workflow and schedule events ----

#[test]
fn workflow_and_schedule_changes_are_events_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &free_addr());
    let url = server.url.clone();
    let _w = start_worker(&url, "w1", 2, &[]);
    let r = http()
        .post(format!("{url}/v1/workflows"))
        .json(&json!({"name": "fork", "tasks": [
            {"name": "a", "argv": ["true"]},
            {"name": "b", "argv": ["true"], "after": ["a"]},
            {"name": "c", "argv": ["false"], "after": ["a"]}]}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let wf: Value = r.json().unwrap();
    let id = wf["id"].as_str().unwrap().to_string();
    // From the start of the log, only this workflow: its own events and its nodes' tasks.
    let rx = sse(&url, &format!("workflow={id}"), Some(0));
    let got = take_until(&rx, Duration::from_secs(30), "the workflow to end", |evs| {
        evs.iter()
            .any(|(_, v)| v["type"] == "workflow" && v["state"] == "failed")
    });
    for (_, v) in &got {
        assert_eq!(v["workflow"], id.as_str(), "{v}");
        assert!(v["type"] == "task" || v["type"] == "workflow", "{v}");
    }
    let states: Vec<&str> = got
        .iter()
        .filter(|(_, v)| v["type"] == "workflow")
        .map(|(_, v)| v["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["pending", "running", "failed"]);
    let nodes: BTreeSet<&str> = got
        .iter()
        .filter_map(|(_, v)| v["task_id"].as_str())
        .collect();
    assert_eq!(nodes.len(), 3, "every node's task events are in the stream");
    // The workflow's last event comes after its nodes' last task event.
    let last_task = got.iter().rposition(|(_, v)| v["type"] == "task").unwrap();
    let end = got
        .iter()
        .rposition(|(_, v)| v["type"] == "workflow")
        .unwrap();
    assert!(end > last_task);

    // Schedules: operator changes and fires.
    let rx = sse(&url, "type=schedule", None);
    cli_json(
        &url,
        &["cron", "add", "tick", "--every", "1s", "--", "true"],
    );
    let fired = take_until(&rx, Duration::from_secs(20), "a fire", |evs| {
        evs.iter().any(|(_, v)| v["state"] == "fired")
    });
    assert_eq!(fired[0].1["state"], "created", "{:?}", fired[0]);
    let fire = &fired.last().unwrap().1;
    assert_eq!(fire["schedule"], "tick");
    let task = fire["task_id"].as_str().expect("a fire names its task");
    wait_state(&url, task, &["succeeded"], Duration::from_secs(30));
    cli_json(&url, &["cron", "pause", "tick"]);
    assert!(cli(&url, &["cron", "rm", "tick"]).status.success());
    let rest = take_until(&rx, Duration::from_secs(20), "deleted", |evs| {
        evs.iter().any(|(_, v)| v["state"] == "deleted")
    });
    let tail: Vec<&str> = rest
        .iter()
        .map(|(_, v)| v["state"].as_str().unwrap())
        .filter(|s| *s != "fired")
        .collect();
    assert_eq!(tail, ["paused", "deleted"]);
    for (_, v) in fired.iter().chain(&rest) {
        assert_eq!(v["type"], "schedule", "{v}");
    }
}

// ---- metrics ----

#[test]
fn metrics_are_present_and_move() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &free_addr());
    let url = server.url.clone();
    let before = metrics_text(&url);
    for name in [
        "drover_tasks{state=\"queued\"}",
        "drover_workers{state=\"alive\"}",
        "drover_store_commits_total",
        "drover_leases_reclaimed_total",
    ] {
        assert!(before.contains(name), "{name} missing:\n{before}");
    }
    assert_eq!(metric(&before, "drover_task_attempts_total"), 0.0);

    // Queued with no worker: the queue's depth shows.
    let ids = batch(
        &url,
        (0..4)
            .map(|_| json!({"kind": "noop", "queue": "mq"}))
            .collect(),
    );
    wait_for(Duration::from_secs(10), "queue depth 4", || {
        (metric(&metrics_text(&url), "drover_queue_depth{queue=\"mq\"}") == 4.0).then_some(())
    });
    let failing = submit(
        &url,
        &[
            "--retries",
            "1",
            "--backoff",
            "10ms",
            "--",
            "sh",
            "-c",
            "exit 1",
        ],
    );
    let rx = sse(&url, "", None);
    let _w = start_worker(&url, "m-w", 2, &[]);
    for id in &ids {
        wait_state(&url, id, &["succeeded"], Duration::from_secs(30));
    }
    wait_state(&url, &failing, &["failed"], Duration::from_secs(30));
    let after = wait_for(Duration::from_secs(10), "the tracker to catch up", || {
        let m = metrics_text(&url);
        (metric(&m, "drover_task_attempts_total") >= 6.0).then_some(m)
    });
    assert_eq!(metric(&after, "drover_tasks{state=\"succeeded\"}"), 4.0);
    assert_eq!(metric(&after, "drover_tasks{state=\"failed\"}"), 1.0);
    assert_eq!(metric(&after, "drover_queue_depth{queue=\"mq\"}"), 0.0);
    assert_eq!(metric(&after, "drover_task_retries_total"), 1.0);
    assert!(metric(&after, "drover_task_submit_to_start_seconds_count") >= 5.0);
    assert!(metric(&after, "drover_task_run_seconds_count") >= 2.0);
    assert_eq!(
        metric(&after, "drover_tasks_finished_total{state=\"succeeded\"}"),
        4.0
    );
    assert_eq!(metric(&after, "drover_workers{state=\"alive\"}"), 1.0);
    assert_eq!(
        metric(&after, "drover_event_subscribers{protocol=\"sse\"}"),
        1.0
    );
    assert!(
        metric(&after, "drover_store_commits_total")
            > metric(&before, "drover_store_commits_total")
    );
    drop(rx);
}

// ---- the event-driven CLI ----

#[test]
fn submit_wait_status_watch_and_logs_follow() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &free_addr());
    let url = server.url.clone();
    let _w = start_worker(&url, "cli-w", 4, &[]);

    let out = cli(
        &url,
        &["submit", "--wait", "--", "sh", "-c", "echo hi; exit 3"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    // A task that prints, then waits for a flag file before its last line.
    let flag = dir.path().join("go");
    let script = format!(
        "echo one; echo two; echo err >&2; while [ ! -f {f} ]; do sleep 0.05; done; echo three",
        f = flag.display()
    );
    let id = submit(&url, &["--", "sh", "-c", &script]);
    let mut watch = drover()
        .args(["status", &id, "--watch", "-o", "json"])
        .env("DROVER_SERVER", &url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut logs = drover()
        .args(["logs", &id, "-f"])
        .env("DROVER_SERVER", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = logs.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // Lines arrive while the task still runs.
    let mut lines = Vec::new();
    while lines.len() < 2 {
        lines.push(
            rx.recv_timeout(Duration::from_secs(20))
                .expect("logs -f streams output"),
        );
    }
    assert_eq!(lines, ["one", "two"]);
    assert_eq!(task(&url, &id)["state"], "running");
    assert!(
        logs.try_wait().unwrap().is_none(),
        "logs -f still following"
    );
    assert!(
        watch.try_wait().unwrap().is_none(),
        "status --watch still waiting"
    );
    std::fs::write(&flag, b"").unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the last line"),
        "three"
    );
    // Both end by themselves when the task ends.
    let mut logs = Proc {
        child: logs,
        name: "logs".into(),
    };
    let st = logs
        .wait_exit(Duration::from_secs(20))
        .expect("logs -f ends with the task");
    assert!(st.success());
    let mut err = String::new();
    logs.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(err, "err\n");
    let out = watch.wait_with_output().unwrap();
    assert!(out.status.success());
    let changes: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(changes.last().unwrap()["state"], "succeeded");
    assert!(
        changes.iter().any(|c| c["state"] == "running"),
        "{changes:?}"
    );
}
