//! Several `drover server`s on one PostgreSQL store (issue 11): one leads, the others stand
//! by, serve reads, point writers at the leader, and take over when it dies or freezes.
//! Real processes, each test in a schema of its own in the database named by
//! `DROVER_TEST_POSTGRES_URL`; skipped when it is unset.

mod common;

use std::time::{Duration, Instant};

use common::*;
use drover_store::postgres::TempSchema;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
/// The tests' `--leader-lease`: short, so failovers are quick.
const LEASE: Duration = Duration::from_secs(2);

/// Servers named `names` on one store (their own files in one directory: one admin token,
/// one secret key), started in order, so the first leads.
fn cluster(data: &std::path::Path, store: &str, names: &[&str]) -> Vec<Server> {
    names
        .iter()
        .map(|name| {
            let lease = format!("{}ms", LEASE.as_millis());
            start_server_on(
                data,
                &free_addr(),
                store,
                &["--name", name, "--leader-lease", &lease],
            )
        })
        .collect()
}

fn view(url: &str) -> Option<Value> {
    let r = http().get(format!("{url}/v1/cluster")).send().ok()?;
    r.status().is_success().then(|| r.json().ok()).flatten()
}

/// The leader's name as `url` sees it, once one leads in an epoch above `after`.
fn leader_after(url: &str, after: u64) -> (String, u64) {
    wait_for(WAIT, "a leader in a new epoch", || {
        let v = view(url)?;
        let epoch = v["epoch"].as_u64()?;
        let leader = v["leader"].as_str()?.to_string();
        (epoch > after).then_some((leader, epoch))
    })
}

fn post_task(url: &str, argv: &[&str]) -> reqwest::blocking::Response {
    http()
        .post(format!("{url}/v1/tasks"))
        .json(&json!({ "argv": argv }))
        .send()
        .unwrap()
}

#[test]
fn standbys_serve_reads_point_writes_at_the_leader_and_take_over_after_kill_9() {
    let Some(base) = postgres_url() else { return };
    let schema = runtime().block_on(TempSchema::create(&base)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut servers = cluster(&data, schema.url(), &["a", "b", "c"]);
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let all = urls.join(",");

    // Every member sees the same cluster: a leads, b and c stand by.
    let v = wait_for(WAIT, "three live members", || {
        let v = view(&urls[1])?;
        (v["members"].as_array()?.len() == 3).then_some(v)
    });
    assert_eq!(v["leader"], "a", "{v}");
    assert_eq!(v["this"], "b");
    let roles: Vec<(String, String, String)> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
                m["address"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("a".into(), "leader".into(), urls[0].clone()),
            ("b".into(), "standby".into(), urls[1].clone()),
            ("c".into(), "standby".into(), urls[2].clone()),
        ]
    );
    let epoch = v["epoch"].as_u64().unwrap();

    // A standby refuses writes with the leader's address, and changes nothing.
    let r = post_task(&urls[1], &["true"]);
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-drover-leader"], urls[0].as_str());
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("standby"),
        "{body}"
    );
    assert_eq!(
        http()
            .get(format!("{}/v1/workers", urls[2]))
            .send()
            .unwrap()
            .status(),
        503
    );

    // A live event stream on a standby sees the leader's commits as they happen.
    let mut events = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(format!("{}/v1/events", urls[2]))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    assert_eq!(events.status(), 200);

    // The worker knows every server; it is connected to the leader.
    let _worker = start_worker(&all, "w1", 4, &[]);
    let marker = dir.path().join("long-done");
    let long = submit(
        &urls[0],
        &[
            "--",
            "sh",
            "-c",
            &format!("sleep 4; echo done > {}", marker.display()),
        ],
    );
    let quick = submit(&urls[0], &["--", "true"]);
    wait_state(&urls[0], &long, &["running"], WAIT);
    wait_state(&urls[1], &quick, &["succeeded"], WAIT);
    // Read on a standby, from the store.
    assert_eq!(task(&urls[2], &long)["state"], "running");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(&quick) && Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        let n = std::io::Read::read(&mut events, &mut buf).unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        seen.contains(&quick),
        "the standby's stream did not show {quick}: {seen}"
    );

    // The leader dies; a standby leads within the lease and two seconds.
    let killed = Instant::now();
    servers[0].proc.kill9();
    let (leader, new_epoch) = leader_after(&urls[1], epoch);
    let failover = killed.elapsed();
    assert!(leader == "b" || leader == "c", "{leader}");
    assert!(
        failover <= LEASE + Duration::from_secs(2),
        "failover took {failover:?}"
    );
    let new_url = if leader == "b" { &urls[1] } else { &urls[2] };

    // The running task was re-attached, not restarted: one attempt, finished.
    let done = wait_state(new_url, &long, &["succeeded"], WAIT);
    assert_eq!(done["attempt"], 1, "{done}");
    assert!(marker.is_file());
    // Work goes on under the new leader, with the same worker.
    let after = submit(new_url, &["--", "true"]);
    wait_state(new_url, &after, &["succeeded"], WAIT);
    let other = if leader == "b" { &urls[2] } else { &urls[1] };
    let r = post_task(other, &["true"]);
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-drover-leader"], new_url.as_str());
    let v = view(other).unwrap();
    assert_eq!(v["epoch"], new_epoch);
    drop(events);
    drop(servers);
    runtime().block_on(schema.drop_schema()).unwrap();
}

/// A leader frozen past its lease (SIGSTOP) and then resumed commits nothing: another server
/// leads meanwhile, and the old one finds itself fenced and stands by. A schedule firing every
/// second, due on both while the old one was frozen, fires once per slot.
#[test]
fn a_paused_leader_is_fenced_and_stands_by() {
    let Some(base) = postgres_url() else { return };
    let schema = runtime().block_on(TempSchema::create(&base)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let servers = cluster(&data, schema.url(), &["a", "b"]);
    let (a, b) = (&servers[0].url, &servers[1].url);
    let epoch = leader_after(b, 0).1;
    cli_json(
        a,
        &[
            "cron",
            "add",
            "tick",
            "--cron",
            "* * * * * *",
            "--queue",
            "ticks",
            "--",
            "true",
        ],
    );
    wait_for(WAIT, "a first fire", || {
        let l = cli_json(b, &["list", "--queue", "ticks"]);
        (!l["tasks"].as_array()?.is_empty()).then_some(())
    });

    servers[0].proc.signal(Signal::SIGSTOP);
    let (leader, _) = leader_after(b, epoch);
    assert_eq!(leader, "b");
    // Once b has fired two slots of its own, wake a: its core finds the same slots due.
    let fires = |url: &str| {
        cli_json(url, &["list", "--queue", "ticks", "--limit", "1000"])["tasks"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let at_takeover = fires(b);
    wait_for(WAIT, "two fires by the new leader", || {
        (fires(b) >= at_takeover + 2).then_some(())
    });
    servers[0].proc.signal(Signal::SIGCONT);
    wait_for(WAIT, "the old leader to stand by", || {
        let r = post_task(a, &["true"]);
        (r.status() == 503
            && r.headers()
                .get("x-drover-leader")
                .is_some_and(|h| h == b.as_str()))
        .then_some(())
    });
    // a stood down (a renewal or a commit was refused); every fire is in the store.
    let tasks = cli_json(b, &["list", "--queue", "ticks", "--limit", "1000"]);
    let mut slots: Vec<String> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap()[..13].to_string())
        .collect();
    let n = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), n, "a slot fired twice: {tasks}");
    assert!(n >= 3, "{tasks}");
    let v = view(a).unwrap();
    assert_eq!(v["leader"], "b");
    assert_eq!(v["this"], "a");
    drop(servers);
    runtime().block_on(schema.drop_schema()).unwrap();
}

/// The database ends every connection of the cluster (`pg_terminate_backend`) during a load:
/// the leader retries its commit on new connections, and every acknowledged task finishes.
#[test]
fn terminated_database_connections_lose_nothing() {
    let Some(base) = postgres_url() else { return };
    let schema = runtime().block_on(TempSchema::create(&base)).unwrap();
    // An application name of this test's own, so only its connections are ended.
    let app = format!("drover-ha-{}", std::process::id());
    let store = schema.url_named(&app);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let servers = cluster(&data, &store, &["a", "b"]);
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let all = urls.join(",");
    let _worker = start_worker(&all, "w1", 8, &[]);
    let terminate = || {
        runtime()
            .block_on(schema.terminate_connections(&app))
            .unwrap()
    };
    let mut ids = Vec::new();
    for round in 0..4 {
        for i in 0..25 {
            let out = cli(
                &all,
                &["submit", "--", "sh", "-c", &format!("echo {round}-{i}")],
            );
            assert!(out.status.success(), "{out:?}");
            ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        assert!(terminate() > 0, "no connection of the cluster was ended");
    }
    for id in &ids {
        let t = wait_state(&all, id, &["succeeded", "failed", "dead"], WAIT);
        assert_eq!(t["state"], "succeeded", "{t}");
    }
    drop(servers);
    runtime().block_on(schema.drop_schema()).unwrap();
}
