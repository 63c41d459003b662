//! `drover server --store postgres://...` with real processes: tasks, logs, a workflow, a
//! paused queue, a schedule, a webhook, a secret, tokens and the audit log all survive a
//! kill -9 of the server. Runs in a schema of its own in the database named by
//! `DROVER_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); skipped
//! when it is unset.

mod common;

use std::time::Duration;

use common::*;
use drover_store::postgres::TempSchema;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn names(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|v| v[field].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_postgres_store_keeps_everything_across_a_kill_9() {
    let Some(base) = postgres_url() else { return };
    let schema = runtime().block_on(TempSchema::create(&base)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addr = free_addr();
    let extra = ["--allow-private-webhooks"];
    let mut server = start_server_on(&data, &addr, schema.url(), &extra);
    let url = server.url.clone();
    let _w = start_worker(&url, "w1", 4, &[]);

    // Tasks, with their logs.
    let ids: Vec<String> = (0..5)
        .map(|i| submit(&url, &["--", "sh", "-c", &format!("echo out-{i}")]))
        .collect();
    let failed = submit(&url, &["--", "sh", "-c", "exit 3"]);
    // A workflow.
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        "name: pair\ntasks:\n  - name: a\n    argv: [sh, -c, 'echo a']\n  \
         - name: b\n    after: [a]\n    argv: [sh, -c, 'echo b']\n",
    )
    .unwrap();
    let w = cli_json(&url, &["submit", "--file", wf.to_str().unwrap()]);
    let wf_id = w["id"].as_str().unwrap().to_string();
    // A paused queue holding a task with a secret.
    cli_json(&url, &["queue", "set", "held", "--concurrency", "2"]);
    cli_json(&url, &["queue", "pause", "held"]);
    let secret_file = dir.path().join("secret-out");
    let held = submit(
        &url,
        &[
            "--queue",
            "held",
            "--secret-env",
            "S=canary-7f3a",
            "--",
            "sh",
            "-c",
            &format!("printf %s \"$S\" > {}", secret_file.display()),
        ],
    );
    // A schedule, a webhook, a token.
    cli_json(
        &url,
        &[
            "cron",
            "add",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--",
            "true",
        ],
    );
    let hook = cli_json(&url, &["webhook", "add", "http://127.0.0.1:9/none"]);
    let hook_id = hook["id"].as_str().unwrap().to_string();
    cli_json(&url, &["token", "create", "ci", "--role", "viewer"]);

    for id in &ids {
        wait_state(&url, id, &["succeeded"], WAIT);
    }
    wait_state(&url, &failed, &["failed"], WAIT);
    wait_for(WAIT, "the workflow to succeed", || {
        (cli_json(&url, &["status", &wf_id])["state"] == "succeeded").then_some(())
    });
    assert_eq!(task(&url, &held)["state"], "queued");
    let audit_before = cli_json(&url, &["audit"]);
    let stats_before = stats(&url);

    // The server's own files went to --data-dir.
    assert!(data.join("admin.token").is_file());
    assert!(data.join("secret.key").is_file());

    server.proc.kill9();
    let server = start_server_on(&data, &addr, schema.url(), &extra);
    let url = server.url.clone();

    assert_eq!(
        stats(&url)["tasks_by_state"],
        stats_before["tasks_by_state"]
    );
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(task(&url, id)["state"], "succeeded");
        let out = cli(&url, &["logs", id]);
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("out-{i}")
        );
    }
    let t = task(&url, &failed);
    assert_eq!(t["state"], "failed");
    assert_eq!(t["exit_code"], 3);
    let w = cli_json(&url, &["status", &wf_id]);
    assert_eq!(w["state"], "succeeded", "{w}");
    assert_eq!(w["nodes"].as_array().unwrap().len(), 2);
    let queues = cli_json(&url, &["queue", "list"]);
    let q = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "held")
        .unwrap_or_else(|| panic!("no held queue in {queues}"))
        .clone();
    assert_eq!(q["paused"], true, "{q}");
    assert_eq!(q["concurrency"], 2, "{q}");
    assert_eq!(
        names(&cli_json(&url, &["cron", "list"]), "schedules", "name"),
        ["nightly"]
    );
    assert_eq!(
        names(&cli_json(&url, &["webhook", "list"]), "webhooks", "id"),
        [hook_id]
    );
    let tokens = names(&cli_json(&url, &["token", "list"]), "tokens", "name");
    assert!(tokens.contains(&"ci".to_string()), "{tokens:?}");
    let audit_after = cli_json(&url, &["audit"]);
    let seqs = |a: &Value| -> Vec<u64> {
        a["records"]
            .as_array()
            .unwrap_or_else(|| panic!("no records in {a}"))
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    };
    let before = seqs(&audit_before);
    assert!(!before.is_empty());
    assert!(before.iter().all(|s| seqs(&audit_after).contains(s)));

    // The held task runs once its queue resumes, its secret opened with the kept key.
    let _w = start_worker(&url, "w2", 2, &[]);
    cli_json(&url, &["queue", "resume", "held"]);
    wait_state(&url, &held, &["succeeded"], WAIT);
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap(),
        "canary-7f3a"
    );
    drop(server);
    runtime().block_on(schema.drop_schema()).unwrap();
}

/// `--store postgres://` without a reachable database fails at start with a clear message.
#[test]
fn an_unreachable_database_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = drover()
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "postgres://drover:s3cret@127.0.0.1:1/nowhere",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("postgres://drover:***@127.0.0.1:1/nowhere"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}
