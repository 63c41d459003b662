//! Serial and parallel execution with real processes: dependencies, a diamond workflow on two
//! workers, per-key serial order, queue limits, idempotency, and kill -9 of the server
//! mid-workflow.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A task script that logs "start NAME T" and "end NAME T" (T in ns) around a sleep.
fn logged(log: &Path, name: &str, sleep: &str) -> String {
    format!(
        "echo \"start {name} $(date +%s%N)\" >> {l}; sleep {sleep}; echo \"end {name} $(date +%s%N)\" >> {l}",
        l = log.display()
    )
}

/// (start, end) in ns per name, from the log.
fn spans(log: &Path) -> std::collections::BTreeMap<String, (u128, u128)> {
    let mut m = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let p: Vec<&str> = line.split_whitespace().collect();
        if p.len() != 3 {
            continue;
        }
        let t: u128 = p[2].parse().unwrap();
        let e = m.entry(p[1].to_string()).or_insert((0, 0));
        if p[0] == "start" {
            e.0 = t;
        } else {
            e.1 = t;
        }
    }
    m
}

fn order_in_log(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.to_string())
        .collect()
}

fn wait_workflow(url: &str, id: &str, within: Duration) -> Value {
    wait_for(within, &format!("workflow {id} to end"), || {
        let w = cli_json(url, &["status", id]);
        (!matches!(w["state"].as_str(), Some("pending" | "running"))).then_some(w)
    })
}

fn node<'a>(w: &'a Value, name: &str) -> &'a Value {
    w["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {w}"))
}

#[test]
fn after_runs_on_success_and_skips_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let _w = start_worker(&server.url, "w1", 4, &[]);
    let url = &server.url;
    let a = submit(url, &["--", "sh", "-c", "sleep 0.3"]);
    let b = submit(url, &["--after", &a, "--", "true"]);
    let t = task(url, &b);
    assert_eq!(t["state"], "pending");
    assert!(
        t["waiting_reason"]
            .as_str()
            .unwrap_or("")
            .contains("waiting for upstream tasks"),
        "{t}"
    );
    wait_state(url, &b, &["succeeded"], Duration::from_secs(30));
    let bad = submit(url, &["--", "false"]);
    let skipped = submit(url, &["--after", &format!("{a},{bad}"), "--", "true"]);
    let ran = submit(
        url,
        &[
            "--after",
            &bad,
            "--on-upstream-failure",
            "run",
            "--",
            "true",
        ],
    );
    let t = wait_state(url, &skipped, &["skipped"], Duration::from_secs(30));
    assert!(
        t["error"].as_str().unwrap().contains(&bad),
        "the reason names the upstream: {t}"
    );
    wait_state(url, &ran, &["succeeded"], Duration::from_secs(30));
    // An upstream that does not exist is refused, nothing is stored.
    let out = cli(
        url,
        &[
            "submit",
            "--after",
            "0190b8a0-0000-7000-8000-000000000000",
            "--",
            "true",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no task with id"));
}

#[test]
fn a_diamond_runs_b_and_c_concurrently_on_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let server = start_server(dir.path(), "127.0.0.1:0");
    let _w1 = start_worker(&server.url, "w1", 1, &[]);
    let _w2 = start_worker(&server.url, "w2", 1, &[]);
    let wf = dir.path().join("wf.yaml");
    let a_script = format!("{}; echo noise; echo result-42", logged(&log, "a", "0.2"));
    let b_script = format!(
        "echo \"$DROVER_UPSTREAM_A_OUTPUT\" > {}; {}",
        dir.path().join("b-input").display(),
        logged(&log, "b", "1")
    );
    let yaml = format!(
        r#"name: diamond
tasks:
  - name: a
    argv: [sh, -c, '{a}']
  - name: b
    after: [a]
    argv: [sh, -c, '{b}']
  - name: c
    after: [a]
    argv: [sh, -c, '{c}']
  - name: d
    after: [b, c]
    argv: [sh, -c, '{d}']
"#,
        a = a_script,
        b = b_script,
        c = logged(&log, "c", "1"),
        d = logged(&log, "d", "0.1"),
    );
    std::fs::write(&wf, yaml).unwrap();
    let w = cli_json(&server.url, &["submit", "--file", wf.to_str().unwrap()]);
    let id = w["id"].as_str().unwrap().to_string();
    assert_eq!(w["nodes"].as_array().unwrap().len(), 4);
    let done = wait_workflow(&server.url, &id, Duration::from_secs(60));
    assert_eq!(done["state"], "succeeded", "{done}");
    for n in ["a", "b", "c", "d"] {
        assert_eq!(node(&done, n)["state"], "succeeded");
    }
    assert_eq!(node(&done, "d")["after"], serde_json::json!(["b", "c"]));
    // a's output (its last stdout line) reached b's environment.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("b-input"))
            .unwrap()
            .trim(),
        "result-42"
    );
    let s = spans(&log);
    let (a, b, c, d) = (s["a"], s["b"], s["c"], s["d"]);
    assert!(a.1 <= b.0 && a.1 <= c.0, "b and c start after a ended");
    assert!(b.0 < c.1 && c.0 < b.1, "b and c overlap: {b:?} {c:?}");
    assert!(d.0 >= b.1 && d.0 >= c.1, "d starts after b and c ended");
    // The REST shape the dashboard draws.
    let v: Value = http()
        .get(format!("{}/v1/workflows/{id}", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["name"], "diamond");
    assert!(v["nodes"][0]["task_id"].is_string());
}

#[test]
fn workflow_validation_names_the_cycle_and_rerun_from_failed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let _w = start_worker(&server.url, "w1", 2, &[]);
    let bad = dir.path().join("cycle.json");
    std::fs::write(
        &bad,
        r#"{"name": "loop", "tasks": [
            {"name": "a", "argv": ["true"], "after": ["c"]},
            {"name": "b", "argv": ["true"], "after": ["a"]},
            {"name": "c", "argv": ["true"], "after": ["b"]}]}"#,
    )
    .unwrap();
    let out = cli(&server.url, &["submit", "--file", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a -> b -> c -> a"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server checks it too.
    let r = http()
        .post(format!("{}/v1/workflows", server.url))
        .body(std::fs::read_to_string(&bad).unwrap())
        .header("content-type", "application/json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // A node that fails once: a flag file makes the second run succeed.
    let flag = dir.path().join("flag");
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        format!(
            "name: flaky\ntasks:\n  - name: a\n    argv: [\"true\"]\n  - name: b\n    after: [a]\n    argv: [sh, -c, 'test -e {f} || {{ touch {f}; exit 1; }}']\n  - name: c\n    after: [b]\n    argv: [\"true\"]\n",
            f = flag.display()
        ),
    )
    .unwrap();
    // `--wait` follows the workflow's events to its end; a failed workflow exits 1.
    let out = cli(
        &server.url,
        &[
            "submit",
            "-o",
            "json",
            "--file",
            wf.to_str().unwrap(),
            "--wait",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let done: Value = serde_json::from_slice(&out.stdout).expect("the workflow as JSON");
    let id = done["id"].as_str().unwrap().to_string();
    assert_eq!(done["state"], "failed");
    assert_eq!(node(&done, "a")["state"], "succeeded");
    assert_eq!(node(&done, "b")["state"], "failed");
    assert_eq!(node(&done, "c")["state"], "skipped");
    let a_task = node(&done, "a")["task_id"].clone();
    cli_json(&server.url, &["workflow", "rerun", &id, "--from-failed"]);
    let again = wait_workflow(&server.url, &id, Duration::from_secs(60));
    assert_eq!(again["state"], "succeeded", "{again}");
    assert_eq!(node(&again, "a")["task_id"], a_task, "a was not rerun");
}

#[test]
fn per_key_serial_order_and_queue_limits() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let server = start_server(dir.path(), "127.0.0.1:0");
    let _w = start_worker(&server.url, "w1", 8, &[]);
    let url = &server.url;
    let mut k1 = vec![];
    for i in 0..4 {
        let name = format!("k1-{i}");
        k1.push(submit(
            url,
            &[
                "--key",
                "k1",
                "--serial",
                "--",
                "sh",
                "-c",
                &logged(&log, &name, "0.2"),
            ],
        ));
    }
    let k2 = submit(
        url,
        &[
            "--key",
            "k2",
            "--serial",
            "--",
            "sh",
            "-c",
            &logged(&log, "k2-0", "0.5"),
        ],
    );
    for id in k1.iter().chain([&k2]) {
        wait_state(url, id, &["succeeded"], Duration::from_secs(60));
    }
    let lines = order_in_log(&log);
    let k1_lines: Vec<String> = lines
        .iter()
        .filter(|l| l.contains(" k1-"))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let expected: Vec<String> = (0..4)
        .flat_map(|i| [format!("start k1-{i}"), format!("end k1-{i}")])
        .collect();
    assert_eq!(k1_lines, expected, "one at a time, in submission order");
    let s = spans(&log);
    assert!(
        s["k2-0"].0 < s["k1-0"].1 || s["k2-0"].0 < s["k1-1"].1,
        "another key runs in parallel"
    );

    // A queue limited to one: its tasks never overlap; pause holds them.
    let qlog = dir.path().join("qlog");
    cli_json(url, &["queue", "set", "one", "--concurrency", "1"]);
    cli_json(url, &["queue", "pause", "one"]);
    let ids: Vec<String> = (0..3)
        .map(|i| {
            submit(
                url,
                &[
                    "--queue",
                    "one",
                    "--",
                    "sh",
                    "-c",
                    &logged(&qlog, &format!("q{i}"), "0.2"),
                ],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let list = cli_json(url, &["queue", "list"]);
    let one = list["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "one")
        .unwrap()
        .clone();
    assert_eq!(one["depth"], 3, "{one}");
    assert_eq!(one["running"], 0);
    assert_eq!(one["paused"], true);
    assert_eq!(one["concurrency"], 1);
    cli_json(url, &["queue", "resume", "one"]);
    for id in &ids {
        wait_state(url, id, &["succeeded"], Duration::from_secs(60));
    }
    let s = spans(&qlog);
    let mut v: Vec<(u128, u128)> = s.values().copied().collect();
    v.sort();
    for w in v.windows(2) {
        assert!(w[0].1 <= w[1].0, "queue tasks overlapped: {v:?}");
    }
}

#[test]
fn idempotency_key_returns_the_original_task() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let _w = start_worker(&server.url, "w1", 2, &[]);
    let url = &server.url;
    let a = submit(url, &["--idempotency-key", "order-1", "--", "true"]);
    let b = submit(url, &["--idempotency-key", "order-1", "--", "true"]);
    assert_eq!(a, b);
    wait_state(url, &a, &["succeeded"], Duration::from_secs(30));
    let c = submit(url, &["--idempotency-key", "order-1", "--", "true"]);
    assert_eq!(a, c, "also after it finished");
}

#[test]
fn kill_9_mid_workflow_finishes_with_the_right_states() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let addr = free_addr();
    let mut server = start_server(dir.path(), &addr);
    let url = server.url.clone();
    let _w1 = start_worker(&url, "w1", 2, &[]);
    let wf = dir.path().join("wf.yaml");
    let yaml = format!(
        r#"name: restart
tasks:
  - name: a
    argv: [sh, -c, '{a}']
  - name: b
    after: [a]
    argv: [sh, -c, '{b}']
  - name: c
    after: [a]
    argv: [sh, -c, 'exit 3']
  - name: d
    after: [b]
    argv: [sh, -c, '{d}']
  - name: e
    after: [c]
    argv: [sh, -c, '{e}']
"#,
        a = logged(&log, "a", "0.3"),
        b = logged(&log, "b", "2"),
        d = logged(&log, "d", "0.2"),
        e = logged(&log, "e", "0.1"),
    );
    std::fs::write(&wf, yaml).unwrap();
    let w = cli_json(&url, &["submit", "--file", wf.to_str().unwrap()]);
    let id = w["id"].as_str().unwrap().to_string();
    // Mid-workflow: b is running.
    wait_for(Duration::from_secs(30), "b to start", || {
        spans(&log).contains_key("b").then_some(())
    });
    server.proc.kill9();
    // The worker keeps running b and re-attaches it to the restarted server.
    let server = start_server(dir.path(), &addr);
    let done = wait_workflow(&server.url, &id, Duration::from_secs(90));
    assert_eq!(done["state"], "failed");
    assert_eq!(node(&done, "a")["state"], "succeeded");
    assert_eq!(node(&done, "b")["state"], "succeeded");
    assert_eq!(node(&done, "c")["state"], "failed");
    assert_eq!(node(&done, "d")["state"], "succeeded");
    assert_eq!(node(&done, "e")["state"], "skipped");
    let s = spans(&log);
    assert!(!s.contains_key("e"), "e never ran");
    assert!(s["d"].0 >= s["b"].1, "d started after b ended");
    assert!(s["b"].0 >= s["a"].1, "b started after a ended");
}

/// The UUIDv7 timestamp (ms) of a task id: a fire's slot.
fn id_ms(id: &str) -> u64 {
    u64::from_str_radix(&id.replace('-', "")[..12], 16).unwrap()
}

fn cron_tasks(url: &str, queue: &str) -> Vec<Value> {
    let v: Value = http()
        .get(format!("{url}/v1/tasks?queue={queue}&limit=1000"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["tasks"].as_array().unwrap().clone()
}

#[test]
fn cron_fires_each_slot_once_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut server = start_server(dir.path(), &addr);
    let url = server.url.clone();
    let _w = start_worker(&url, "w1", 4, &[]);
    let out = cli_json(
        &url,
        &[
            "cron",
            "add",
            "tick",
            "--cron",
            "* * * * * *",
            "--tz",
            "Europe/Paris",
            "--queue",
            "ticks",
            "--",
            "true",
        ],
    );
    assert_eq!(out["name"], "tick");
    assert!(out["next_fire_at"].is_string());
    let list: Value = http()
        .get(format!("{url}/v1/schedules"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let s = &list["schedules"][0];
    assert_eq!(s["name"], "tick");
    assert_eq!(s["cron"], "* * * * * *");
    assert_eq!(s["tz"], "Europe/Paris");
    assert_eq!(s["paused"], false);
    wait_for(Duration::from_secs(30), "three fires", || {
        (cron_tasks(&url, "ticks").len() >= 3).then_some(())
    });
    server.proc.kill9();
    let killed_at = drover_server::clock::now_micros() / 1000;
    std::thread::sleep(Duration::from_millis(2500));
    let server = start_server(dir.path(), &addr);
    let url = server.url.clone();
    let before = cron_tasks(&url, "ticks").len();
    wait_for(Duration::from_secs(30), "fires after the restart", || {
        (cron_tasks(&url, "ticks").len() >= before + 3).then_some(())
    });
    cli_json(&url, &["cron", "pause", "tick"]);
    let tasks = cron_tasks(&url, "ticks");
    let mut slots: Vec<u64> = tasks
        .iter()
        .map(|t| id_ms(t["id"].as_str().unwrap()))
        .collect();
    let n = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), n, "a slot fired twice");
    // Misfire `skip`: the slots of the downtime were not fired (a gap of > 1 s).
    assert!(
        slots.windows(2).any(|w| w[1] - w[0] > 1000),
        "killed at {killed_at}: {slots:?}"
    );
    for t in &tasks {
        if t["state"] != "succeeded" {
            wait_state(
                &url,
                t["id"].as_str().unwrap(),
                &["succeeded"],
                Duration::from_secs(30),
            );
        }
    }
    // Manual run and removal.
    let r = cli_json(&url, &["cron", "run", "tick"]);
    assert_eq!(r["ids"].as_array().unwrap().len(), 1);
    let out = cli(&url, &["cron", "rm", "tick"]);
    assert!(out.status.success());
    let list: Value = http()
        .get(format!("{url}/v1/schedules"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["schedules"].as_array().unwrap().len(), 0);
}

#[test]
fn at_holds_and_deadline_expires() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let _w = start_worker(&server.url, "w1", 2, &[]);
    let url = &server.url;
    // No worker matches the selector: it never starts, so its deadline expires it.
    let late = submit(
        url,
        &[
            "--label-selector",
            "zone=nowhere",
            "--deadline",
            "1s",
            "--",
            "true",
        ],
    );
    let t = wait_state(url, &late, &["expired"], Duration::from_secs(30));
    assert!(t["error"].as_str().unwrap().contains("deadline"), "{t}");
    let at = time_in(2);
    let held = submit(url, &["--at", &at, "--", "true"]);
    let t = task(url, &held);
    assert_eq!(t["state"], "pending");
    assert!(t["not_before"].is_string());
    wait_state(url, &held, &["succeeded"], Duration::from_secs(30));
    let bad = cli(url, &["submit", "--at", "tomorrow", "--", "true"]);
    assert!(!bad.status.success());
}

/// An RFC 3339 time `secs` from now.
fn time_in(secs: u64) -> String {
    let s = drover_server::clock::now_micros() as u64 / 1_000_000 + secs;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let (days, rem) = ((s / 86_400) as i64, s % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
