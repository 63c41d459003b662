//! exec tasks end to end through real server, worker and CLI processes: argv, env, cwd, output,
//! exit codes, timeouts, retries, cancellation, and the CLI's errors.

mod common;

use std::time::Duration;

use common::*;

struct Cluster {
    server: Server,
    _workers: Vec<Proc>,
    _dir: tempfile::TempDir,
}

fn cluster(workers: usize) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let workers = (0..workers)
        .map(|i| start_worker(&server.url, &format!("w{i}"), 2, &[]))
        .collect();
    Cluster {
        server,
        _workers: workers,
        _dir: dir,
    }
}

#[test]
fn argv_env_cwd_and_output_are_exact() {
    let c = cluster(1);
    let url = &c.server.url;
    let cwd = tempfile::tempdir().unwrap();
    let cwd_s = cwd.path().to_str().unwrap();
    let tricky = [
        "two words",
        "",
        "quote'\"s",
        "new\nline",
        "$HOME `id` $(id)",
        "ünïcødé ✓",
        "-- --flag",
        "*",
    ];
    let script = "import json,os,sys; print(json.dumps({'argv': sys.argv[1:], 'id': os.environ['DROVER_TASK_ID'], 'attempt': os.environ['DROVER_ATTEMPT'], 'x': os.environ.get('X'), 'cwd': os.getcwd()}))";
    let mut args = vec![
        "--env", "X=a b=c", "--cwd", cwd_s, "--", "python3", "-c", script,
    ];
    args.extend_from_slice(&tricky);
    let id = submit(url, &args);
    let t = wait_state(url, &id, &["succeeded", "failed"], Duration::from_secs(30));
    assert_eq!(t["state"], "succeeded", "{t}");
    assert_eq!(t["exit_code"], 0);
    let out = cli(url, &["logs", &id]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("task printed JSON");
    assert_eq!(v["argv"], serde_json::json!(tricky));
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["attempt"], "1");
    assert_eq!(v["x"], "a b=c");
    assert_eq!(
        std::fs::canonicalize(v["cwd"].as_str().unwrap()).unwrap(),
        std::fs::canonicalize(cwd.path()).unwrap()
    );
    for key in [
        "id",
        "state",
        "queue",
        "kind",
        "attempt",
        "exit_code",
        "worker",
        "created_at",
        "finished_at",
    ] {
        assert!(t.get(key).is_some(), "task JSON lacks {key}: {t}");
    }
    assert_eq!(t["worker"], "w0");
}

#[test]
fn wait_prints_output_and_exits_with_the_task_code() {
    let c = cluster(1);
    let url = &c.server.url;
    let ok = cli(
        url,
        &[
            "submit",
            "--wait",
            "--",
            "sh",
            "-c",
            "echo hello; echo oops >&2",
        ],
    );
    assert!(ok.status.success());
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&ok.stderr), "oops\n");
    let bad = cli(url, &["submit", "--wait", "--", "sh", "-c", "exit 7"]);
    assert_eq!(bad.status.code(), Some(7));
    let missing = cli(url, &["submit", "--wait", "--", "/no/such/program"]);
    assert!(!missing.status.success());
}

#[test]
fn output_is_bounded_and_the_cut_is_marked() {
    let c = cluster(1);
    let url = &c.server.url;
    // 3 MiB of output against a 1 MiB cap per stream.
    let id = submit(
        url,
        &["--", "sh", "-c", "head -c 3145728 /dev/zero | tr '\\0' x"],
    );
    wait_state(url, &id, &["succeeded"], Duration::from_secs(60));
    let out = cli(url, &["logs", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.len() < 1_200_000, "kept {} bytes", text.len());
    assert!(text.len() >= 1_000_000, "kept {} bytes", text.len());
    assert!(text.contains("truncated"), "truncation is marked");
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let c = cluster(1);
    let url = &c.server.url;
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "sleep 60 & echo $! >> {p}; sleep 60 & echo $! >> {p}; wait",
        p = pids.display()
    );
    let id = submit(url, &["--timeout", "1s", "--", "sh", "-c", &script]);
    let t = wait_state(
        url,
        &id,
        &["timed_out", "failed", "succeeded"],
        Duration::from_secs(30),
    );
    assert_eq!(t["state"], "timed_out", "{t}");
    let pids: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    wait_for(
        Duration::from_secs(5),
        "the group's processes to die",
        || pids.iter().all(|&p| !pid_alive(p)).then_some(()),
    );
    let code = cli(
        url,
        &[
            "submit",
            "--wait",
            "--timeout",
            "500ms",
            "--",
            "sleep",
            "30",
        ],
    );
    assert!(!code.status.success(), "--wait exits non-zero on timed_out");
}

#[test]
fn retries_back_off_and_record_every_attempt() {
    let c = cluster(2);
    let url = &c.server.url;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("count");
    // Fails on attempts 1 and 2, succeeds on 3.
    let script = format!(
        "n=$(cat {m} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {m}; [ $n -ge 3 ]",
        m = marker.display()
    );
    let id = submit(
        url,
        &[
            "--retries",
            "3",
            "--backoff",
            "100ms",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let t = wait_state(url, &id, &["succeeded", "failed"], Duration::from_secs(30));
    assert_eq!(t["state"], "succeeded");
    assert_eq!(t["attempt"], 3);
    let attempts = t["attempts"].as_array().unwrap();
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"]);
    for a in attempts {
        assert!(a["worker"].as_str().unwrap().starts_with('w'));
        assert!(a["started_at"].is_string() && a["finished_at"].is_string());
    }
    assert_eq!(attempts[0]["exit_code"], 1);

    let id = submit(url, &["--retries", "1", "--backoff", "50ms", "--", "false"]);
    let t = wait_state(url, &id, &["failed"], Duration::from_secs(30));
    assert_eq!(t["attempt"], 2);
}

#[test]
fn cancel_reaches_the_running_process() {
    let c = cluster(1);
    let url = &c.server.url;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let id = submit(url, &["--", "sh", "-c", &script]);
    wait_state(url, &id, &["running"], Duration::from_secs(30));
    let pid: i32 = wait_for(Duration::from_secs(10), "the pid file", || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    assert!(pid_alive(pid));
    let out = cli_json(url, &["cancel", &id]);
    assert_eq!(out["state"], "cancelled");
    wait_for(
        Duration::from_secs(2),
        "the cancelled process to die",
        || (!pid_alive(pid)).then_some(()),
    );
    assert_eq!(task(url, &id)["state"], "cancelled");
    // Cancelling again is a clear error, not a change.
    let again = cli(url, &["cancel", &id]);
    assert!(!again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stderr).lines().count(), 1);
}

#[test]
fn cli_errors_are_one_line_and_non_zero() {
    let c = cluster(0);
    let url = &c.server.url;
    for args in [
        vec!["status", "0190c0de-0000-7000-8000-000000000000"],
        vec!["status", "not-an-id"],
        vec!["logs", "0190c0de-0000-7000-8000-000000000000"],
        vec!["submit", "--timeout", "-3s", "--", "true"],
        vec!["submit", "--priority", "high", "--", "true"],
        vec!["list", "--state", "nonsense"],
        vec!["frobnicate"],
    ] {
        let out = cli(url, &args);
        assert!(!out.status.success(), "drover {args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "drover {args:?}: no message");
        assert!(!err.contains("panicked"), "drover {args:?} panicked: {err}");
    }
    // Nothing was stored by the bad submits.
    assert_eq!(
        cli_json(url, &["list"])["tasks"].as_array().unwrap().len(),
        0
    );
}

#[test]
fn list_filters_and_pages() {
    let c = cluster(0);
    let url = &c.server.url;
    let mut ids: Vec<String> = (0..7)
        .map(|_| submit(url, &["--queue", "pages", "--", "true"]))
        .collect();
    submit(url, &["--queue", "other", "--", "true"]);
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["list", "--queue", "pages", "--limit", "3"];
        if let Some(c) = &cursor {
            args.extend_from_slice(&["--cursor", c]);
        }
        let page = cli_json(url, &args);
        for t in page["tasks"].as_array().unwrap() {
            assert_eq!(t["queue"], "pages");
            assert_eq!(t["state"], "queued", "no workers");
            seen.push(t["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, no gaps or repeats");
    let queued = cli_json(url, &["list", "--state", "queued", "--limit", "100"]);
    assert_eq!(queued["tasks"].as_array().unwrap().len(), 8);
}
