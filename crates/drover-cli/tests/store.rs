//! Store hiccups, with real processes: another process holding SQLite's write lock degrades
//! the server (state-changing requests and `/readyz` answer 503) instead of stopping it, and
//! nothing acknowledged is lost; past `--store-retry` the server stops and a restart recovers
//! every acknowledged task; a second server on the same store refuses to start.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Holds SQLite's write lock on `db` from another process for `secs` (`BEGIN IMMEDIATE`: the
/// lock the server's writer needs in WAL mode; readers are not blocked), then commits.
/// Returns once the lock is held; dropping the `Proc` ends the holder (by its pid).
fn hold_write_lock(db: &Path, secs: u64) -> Proc {
    const SCRIPT: &str = "import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute('BEGIN IMMEDIATE')
print('locked', flush=True)
time.sleep(float(sys.argv[2]))
c.execute('COMMIT')
print('released', flush=True)
";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(db)
        .arg(secs.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // Bounded: python gives up waiting for the lock after 30 s and exits.
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked", "the holder did not get the lock");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Proc {
        child,
        name: "lock holder".into(),
    }
}

fn post_task(url: &str, word: &str) -> reqwest::blocking::Response {
    http()
        .post(format!("{url}/v1/tasks"))
        .json(&json!({"argv": ["echo", word]}))
        .send()
        .unwrap()
}

fn readyz(url: &str) -> reqwest::blocking::Response {
    http().get(format!("{url}/readyz")).send().unwrap()
}

fn total_tasks(url: &str) -> u64 {
    stats(url)["tasks_by_state"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

#[test]
fn a_held_write_lock_degrades_the_server_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_server(dir.path(), &free_addr());
    let url = server.url.clone();
    let _worker = start_worker(&url, "w1", 2, &[]);
    let before = submit(&url, &["--", "true"]);
    wait_state(&url, &before, &["succeeded"], Duration::from_secs(30));

    let holder = hold_write_lock(&dir.path().join("drover.db"), 10);
    let held = Instant::now();
    // Sent at the start of the hold: its commit waits, fails, is retried, and it is answered
    // once the hold ends.
    let early = {
        let url = url.clone();
        std::thread::spawn(move || {
            let r = post_task(&url, "early");
            (
                r.status().as_u16(),
                held.elapsed(),
                r.json::<Value>().unwrap(),
            )
        })
    };

    // The first attempt fails after SQLite's busy timeout (5 s): the server is degraded.
    let why = wait_for(Duration::from_secs(9), "/readyz to answer 503", || {
        let r = readyz(&url);
        (r.status() == 503).then(|| r.json::<Value>().unwrap())
    });
    assert_eq!(why["code"], "unavailable", "{why}");
    assert!(
        why["message"]
            .as_str()
            .unwrap()
            .contains("database is locked"),
        "{why}"
    );

    // State-changing requests: 503 at once, with Retry-After and the usual error body.
    let t = Instant::now();
    let r = post_task(&url, "refused");
    assert_eq!(r.status(), 503);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().unwrap();
    assert_eq!(body["code"], "unavailable", "{body}");
    let t = Instant::now();
    let out = cli(&url, &["cancel", &before]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("store is unavailable"),
        "{err}"
    );
    let out = cli(&url, &["submit", "--", "echo", "refused"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("store is unavailable"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // Reads keep working; the process is alive.
    assert_eq!(task(&url, &before)["state"], "succeeded");
    let health = http().get(format!("{url}/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
    let m = metrics_text(&url);
    assert_eq!(metric(&m, "drover_store_degraded"), 1.0, "{m}");
    assert!(
        metric(&m, "drover_store_commit_failures_total") >= 1.0,
        "{m}"
    );

    // After the hold: the early submit was acknowledged (only then) and its task runs.
    let (status, answered, view) = early.join().unwrap();
    assert_eq!(status, 201, "{view}");
    assert!(
        answered >= Duration::from_secs(9),
        "answered after {answered:?}"
    );
    let early_id = view["id"].as_str().unwrap().to_string();
    wait_state(&url, &early_id, &["succeeded"], Duration::from_secs(30));
    wait_for(Duration::from_secs(10), "/readyz to answer 200", || {
        (readyz(&url).status() == 200).then_some(())
    });
    let after = submit(&url, &["--", "true"]);
    wait_state(&url, &after, &["succeeded"], Duration::from_secs(30));
    assert_eq!(
        metric(&metrics_text(&url), "drover_store_degraded"),
        0.0,
        "recovered"
    );
    // The refused requests changed nothing: the three acknowledged tasks are all there is.
    assert_eq!(total_tasks(&url), 3);
    assert!(
        server.proc.child.try_wait().unwrap().is_none(),
        "the server kept running"
    );
    drop(holder);
}

#[test]
fn a_second_server_on_the_same_store_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_server(dir.path(), &free_addr());
    let store = format!("sqlite://{}", dir.path().join("drover.db").display());
    let data = dir.path().to_str().unwrap();
    for args in [
        vec!["server", "--listen", "127.0.0.1:0", "--store", &store],
        vec![
            "up",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
            "--data-dir",
            data,
        ],
    ] {
        let child = drover()
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut second = Proc {
            child,
            name: "second".into(),
        };
        let status = second
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("drover {args:?} did not exit"));
        let mut err = String::new();
        second
            .child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(!status.success(), "{args:?}: {status:?}");
        let named = format!("another drover server (pid {})", first.proc.pid());
        assert!(
            err.contains(&named) && err.contains("drover.db"),
            "{args:?}: {err}"
        );
    }
    // The first keeps serving.
    assert_eq!(readyz(&first.url).status(), 200);
    let id = submit(&first.url, &["--", "true"]);
    assert_eq!(task(&first.url, &id)["state"], "queued");
}

#[test]
fn past_store_retry_the_server_stops_and_a_restart_recovers_every_acknowledged_task() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let log = dir.path().join("server.log");
    let mut server = start_server_to(
        dir.path(),
        &addr,
        &["--store-retry", "2s"],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let url = server.url.clone();
    let acked: Vec<String> = (0..3)
        .map(|i| submit(&url, &["--", "echo", &i.to_string()]))
        .collect();

    let holder = hold_write_lock(&dir.path().join("drover.db"), 120);
    // Its commit fails (after the busy timeout), is retried for 2 s, fails again: the server
    // stops without acknowledging it.
    let r = http()
        .post(format!("{url}/v1/tasks"))
        .json(&json!({"argv": ["echo", "lost"]}))
        .send();
    assert!(
        r.as_ref().map_or(true, |r| !r.status().is_success()),
        "{r:?}"
    );
    let status = server
        .proc
        .wait_exit(Duration::from_secs(30))
        .expect("the server stops");
    assert!(!status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("--store-retry") && text.contains("stopping the scheduler"),
        "{text}"
    );
    drop(holder);

    let server = start_server(dir.path(), &addr);
    for id in &acked {
        assert_eq!(task(&server.url, id)["state"], "queued", "{id}");
    }
    assert_eq!(
        total_tasks(&server.url),
        3,
        "the unacknowledged submit left nothing"
    );
    assert_eq!(readyz(&server.url).status(), 200);
    submit(&server.url, &["--", "true"]);
}
