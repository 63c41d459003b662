//! Placement with real workers: tasks land where the strategy or selector says.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn finished(url: &str, ids: &[String]) -> Vec<Value> {
    ids.iter()
        .map(|id| wait_state(url, id, &["succeeded", "failed"], Duration::from_secs(60)))
        .collect()
}

fn per_worker(tasks: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in tasks {
        assert_eq!(t["state"], "succeeded", "{t}");
        *m.entry(t["worker"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

struct Cluster {
    server: Server,
    _workers: Vec<Proc>,
    _dir: tempfile::TempDir,
}

fn cluster(workers: &[(&str, u32, &[&str])]) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let workers = workers
        .iter()
        .map(|(name, slots, extra)| start_worker(&server.url, name, *slots, extra))
        .collect();
    Cluster {
        server,
        _workers: workers,
        _dir: dir,
    }
}

#[test]
fn round_robin_and_least_loaded_deal_evenly() {
    let c = cluster(&[("a", 4, &[]), ("b", 4, &[]), ("c", 4, &[])]);
    let url = &c.server.url;
    for strategy in ["round_robin", "least_loaded"] {
        let tasks = (0..12)
            .map(|_| json!({"argv": ["sleep", "0.3"], "strategy": strategy}))
            .collect();
        let ids = batch(url, tasks);
        let counts = per_worker(&finished(url, &ids));
        assert_eq!(
            counts.values().copied().collect::<Vec<_>>(),
            [4, 4, 4],
            "{strategy}: {counts:?}"
        );
    }
}

#[test]
fn consistent_hash_keeps_a_key_on_one_worker() {
    let c = cluster(&[("a", 2, &[]), ("b", 2, &[]), ("c", 2, &[])]);
    let url = &c.server.url;
    let keys = [
        "customer-1",
        "customer-2",
        "customer-3",
        "customer-4",
        "customer-5",
    ];
    let mut by_key: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for round in 0..4 {
        for k in keys {
            let id = submit(
                url,
                &["--strategy", "consistent_hash", "--key", k, "--", "true"],
            );
            by_key.entry(k).or_default().push(id);
        }
        let _ = round;
    }
    let mut used = BTreeSet::new();
    for (k, ids) in by_key {
        let workers: BTreeSet<String> = finished(url, &ids)
            .iter()
            .map(|t| t["worker"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(workers.len(), 1, "key {k} ran on {workers:?}");
        used.extend(workers);
    }
    assert!(
        used.len() >= 2,
        "five keys all hashed to one worker: {used:?}"
    );
}

#[test]
fn broadcast_runs_one_copy_per_worker_with_its_shard() {
    let c = cluster(&[("a", 1, &[]), ("b", 1, &[]), ("c", 1, &[])]);
    let url = &c.server.url;
    let id = submit(
        url,
        &[
            "--queue",
            "bcast",
            "--strategy",
            "broadcast",
            "--",
            "sh",
            "-c",
            "echo $DROVER_SHARD_INDEX/$DROVER_SHARD_COUNT",
        ],
    );
    let copies = wait_for(Duration::from_secs(30), "three broadcast copies", || {
        let l = cli_json(url, &["list", "--queue", "bcast"]);
        let tasks = l["tasks"].as_array()?.clone();
        (tasks.len() == 3).then_some(tasks)
    });
    assert!(copies.iter().any(|t| t["id"] == id.as_str()));
    let ids: Vec<String> = copies
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let done = finished(url, &ids);
    let workers: BTreeSet<&str> = done.iter().map(|t| t["worker"].as_str().unwrap()).collect();
    assert_eq!(workers, BTreeSet::from(["a", "b", "c"]));
    let mut shards: Vec<String> = ids
        .iter()
        .map(|id| {
            let out = cli(url, &["logs", id]);
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    shards.sort();
    assert_eq!(shards, ["0/3", "1/3", "2/3"]);
}

#[test]
fn label_selectors_and_kinds_decide_where_and_why() {
    let c = cluster(&[
        ("zone-a", 2, &["--labels", "zone=a", "--kinds", "default"]),
        (
            "zone-b",
            2,
            &["--labels", "zone=b,gpu=a100", "--kinds", "default"],
        ),
    ]);
    let url = &c.server.url;
    let cases = [
        ("zone=b", "zone-b"),
        ("zone!=b", "zone-a"),
        ("gpu", "zone-b"),
        ("!gpu", "zone-a"),
        ("zone in (b,c)", "zone-b"),
        ("zone notin (b,c)", "zone-a"),
    ];
    for (selector, want) in cases {
        let ids: Vec<String> = (0..3)
            .map(|_| submit(url, &["--label-selector", selector, "--", "true"]))
            .collect();
        for t in finished(url, &ids) {
            assert_eq!(t["worker"], want, "selector {selector}: {t}");
        }
    }

    // No worker could ever take it: the status says why, and it runs once one joins.
    let id = submit(url, &["--kind", "gpu-render", "--", "true"]);
    let t = wait_for(Duration::from_secs(10), "a waiting reason", || {
        let t = task(url, &id);
        t["waiting_reason"].as_str().map(|_| t.clone())
    });
    let why = t["waiting_reason"].as_str().unwrap();
    assert!(why.contains("gpu-render"), "{why}");
    assert_eq!(t["state"], "queued");
    let _renderer = start_worker(url, "renderer", 1, &["--kinds", "gpu-render"]);
    let t = wait_state(url, &id, &["succeeded"], Duration::from_secs(30));
    assert_eq!(t["worker"], "renderer");
}

#[test]
fn a_drained_worker_takes_nothing_new_and_finishes_what_it_runs() {
    let c = cluster(&[("keep", 2, &[]), ("drain-me", 2, &[])]);
    let url = &c.server.url;
    let long = batch(
        url,
        (0..4)
            .map(|_| json!({"argv": ["sleep", "1"], "strategy": "round_robin"}))
            .collect(),
    );
    wait_for(Duration::from_secs(20), "both workers busy", || {
        let ws = cli_json(url, &["workers"]);
        ws["workers"]
            .as_array()?
            .iter()
            .all(|w| w["running"].as_u64() == Some(2))
            .then_some(())
    });
    let out = cli_json(url, &["worker", "drain", "drain-me"]);
    assert_eq!(out["workers"][0]["state"], "draining", "{out}");
    let after = batch(
        url,
        (0..4)
            .map(|_| json!({"argv": ["true"], "strategy": "round_robin"}))
            .collect(),
    );
    for t in finished(url, &after) {
        assert_eq!(t["worker"], "keep", "a draining worker took {t}");
    }
    for t in finished(url, &long) {
        assert_eq!(t["state"], "succeeded");
    }
    wait_for(Duration::from_secs(20), "the worker to be drained", || {
        let ws = cli_json(url, &["workers"]);
        ws["workers"]
            .as_array()?
            .iter()
            .any(|w| w["name"] == "drain-me" && w["state"] == "drained")
            .then_some(())
    });
    assert!(!cli(url, &["worker", "drain", "nobody"]).status.success());
}

#[test]
fn a_drain_survives_a_server_restart_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut server = start_server(dir.path(), &addr);
    let _workers = [
        start_worker(&server.url, "keep", 2, &[]),
        start_worker(&server.url, "drain-me", 2, &[]),
    ];
    let state_of = |url: &str, name: &str| {
        cli_json(url, &["workers"])["workers"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["name"] == name).cloned())
            .and_then(|w| w["state"].as_str().map(str::to_string))
    };
    wait_for(Duration::from_secs(20), "both workers", || {
        state_of(&server.url, "drain-me").filter(|s| s == "alive")
    });
    cli_json(&server.url, &["worker", "drain", "drain-me"]);

    server.proc.kill9();
    let server = start_server(dir.path(), &addr);
    let url = &server.url;
    wait_for(Duration::from_secs(30), "both workers back", || {
        (state_of(url, "keep").as_deref() == Some("alive")).then_some(())?;
        state_of(url, "drain-me").filter(|s| s == "drained")
    });
    let spread = |n| {
        batch(
            url,
            (0..n)
                .map(|_| json!({"argv": ["sleep", "0.2"], "strategy": "round_robin"}))
                .collect(),
        )
    };
    for t in finished(url, &spread(4)) {
        assert_eq!(t["worker"], "keep", "a drained worker took {t}");
    }
    cli_json(url, &["worker", "resume", "drain-me"]);
    let counts = per_worker(&finished(url, &spread(4)));
    assert!(counts.get("drain-me").is_some_and(|n| *n > 0), "{counts:?}");
}

/// Head-of-line blocking is gone: 20,000 queued tasks of a kind no worker serves, in queue
/// `backlog`, do not keep a plain task in queue `other` from running on an idle worker; and
/// queue weights are stored and shown.
#[test]
fn a_stuck_queue_does_not_hold_up_another() {
    let c = cluster(&[("cpu-1", 2, &["--kinds", "default"])]);
    let url = &c.server.url;
    for _ in 0..2 {
        let stuck = (0..10_000)
            .map(|_| json!({"queue": "backlog", "kind": "gpu", "argv": ["true"]}))
            .collect();
        batch(url, stuck);
    }
    let id = submit(url, &["--queue", "other", "--", "true"]);
    wait_state(url, &id, &["succeeded"], Duration::from_secs(30));
    let set = cli_json(url, &["queue", "set", "other", "--weight", "3"]);
    assert_eq!(set["weight"], 3);
    let listed = cli_json(url, &["queue", "list"]);
    let backlog = listed["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "backlog")
        .unwrap();
    assert_eq!(
        (backlog["depth"].as_u64(), backlog["weight"].as_u64()),
        (Some(20_000), Some(1))
    );
    let out = cli(url, &["queue", "set", "other", "--weight", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 to 10000"));
    let limited = cli_json(url, &["queue", "set", "other", "--rate", "100/s"]);
    assert_eq!(limited["rate"], "100/s");
    let out = cli(url, &["queue", "set", "other", "--rate", "lots"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("100/s, 10/m or 5/h"));
}

/// A concurrency key runs at most its limit at once, across queues, and holds up nothing else.
#[test]
fn a_concurrency_key_limits_its_tasks_across_queues() {
    let c = cluster(&[("w", 4, &[])]);
    let url = &c.server.url;
    let keyed: Vec<String> = ["a", "b", "a"]
        .iter()
        .map(|q| {
            submit(
                url,
                &[
                    "--queue",
                    q,
                    "--concurrency-key",
                    "customer-42",
                    "--",
                    "sleep",
                    "0.4",
                ],
            )
        })
        .collect();
    let free = submit(url, &["--queue", "a", "--", "sleep", "0.4"]);
    let done = finished(url, &keyed);
    let free = wait_state(url, &free, &["succeeded"], Duration::from_secs(30));
    let span = |t: &Value| {
        let at = |k: &str| t[k].as_str().unwrap().to_string();
        (at("started_at"), at("finished_at"))
    };
    let mut spans: Vec<(String, String)> = done.iter().map(span).collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "keyed tasks overlapped: {spans:?}");
    }
    assert!(
        span(&free).0 < spans[1].0,
        "the task without a key did not wait for the key"
    );
    assert_eq!(done[0]["concurrency_key"], "customer-42");
    assert_eq!(done[0]["max_concurrent"], 1);
}
