//! Secrets with real processes: a canary secret reaches the task's process (plain submit,
//! batch, workflow node, schedule fire) but never anything Drover shows or keeps in the clear
//! (API responses, the event stream, webhook payloads, the server's log lines, the SQLite
//! file's bytes); a worker's own environment stays out of its tasks unless passed; the key
//! file is created 0600 and can be rotated.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// A value that appears nowhere by chance.
fn canary(tag: &str) -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    format!("{tag}-{}", hex::encode(b))
}

/// A server whose stdout and stderr (at debug level) go to files, so its log lines can be read.
fn server_logged(data: &Path, extra: &[&str]) -> (Proc, String, PathBuf) {
    provide_admin_token(data);
    let store = format!("sqlite://{}", data.join("drover.db").display());
    let log = data.with_extension("log");
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut args = vec![
        "server",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &store,
        "--lease",
        LEASE,
        "--heartbeat",
        HEARTBEAT,
        // The canary's webhook receiver listens on this machine.
        "--allow-private-webhooks",
    ];
    args.extend_from_slice(extra);
    let mut child = common::drover()
        .args(&args)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let copy = log.clone();
    std::thread::spawn(move || {
        let mut out = std::fs::OpenOptions::new().append(true).open(copy).unwrap();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(out, "{line}");
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let proc = Proc {
        child,
        name: "server".into(),
    };
    let url = rx.recv_timeout(WAIT).expect("the server's listening line");
    (proc, url, log)
}

/// Stops the server gracefully (the store is closed and its WAL checkpointed).
fn stop(mut server: Proc) {
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(WAIT).is_some(), "the server stopped");
}

/// A worker with extra environment variables of its own.
fn worker_with_env(url: &str, name: &str, env: &[(&str, &str)], extra: &[&str]) -> Proc {
    let mut args = vec!["worker", "--server", url, "--name", name, "--kinds", name];
    args.extend_from_slice(extra);
    let child = common::drover()
        .args(&args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let proc = Proc {
        child,
        name: name.into(),
    };
    wait_for(WAIT, &format!("worker {name}"), || {
        let ws = cli_json(url, &["workers"]);
        ws["workers"]
            .as_array()
            .is_some_and(|a| a.iter().any(|w| w["name"] == name && w["state"] == "alive"))
            .then_some(())
    });
    proc
}

fn post(url: &str, path: &str, body: Value) -> (u16, String) {
    let r = http()
        .post(format!("{url}{path}"))
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn get(url: &str, path: &str) -> String {
    let r = http().get(format!("{url}{path}")).send().unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.text().unwrap()
}

/// A task that writes `$VAR` (or `unset`) to a file, nothing to its output.
fn writes(var: &str, file: &Path) -> Vec<String> {
    let script = format!("printf %s \"${{{var}-unset}}\" > '{}'", file.display());
    vec!["sh".into(), "-c".into(), script]
}

fn file_is(path: &Path, want: &str) {
    wait_for(WAIT, &format!("{} to be written", path.display()), || {
        std::fs::read_to_string(path).ok().filter(|s| !s.is_empty())
    });
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        want,
        "{}",
        path.display()
    );
}

fn assert_absent(what: &str, text: &str, secret: &str) {
    assert!(!text.contains(secret), "the secret appears in {what}");
}

#[test]
fn a_canary_secret_reaches_tasks_and_nothing_drover_shows_or_stores() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let secret = canary("canary");
    let (server, url, log) = server_logged(&data, &[]);
    let key = data.join("secret.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is created 0600");

    let (hook_url, hooks) = webhook_receiver(0);
    let hook = cli_json(&url, &["webhook", "add", &hook_url]);
    assert!(hook["id"].is_string());
    let (worker_only, passed) = (canary("worker-only"), canary("passed"));
    let worker = worker_with_env(
        &url,
        "canary",
        &[("WORKER_ONLY", &worker_only), ("PASSED", &passed)],
        &["--pass-env", "PASSED"],
    );

    let mut shown = Vec::new();
    // The CLI, with the value on its command line.
    let f_cli = out.join("cli");
    let mut args = vec!["submit", "--kind", "canary", "--wait"];
    let pair = format!("CANARY={secret}");
    args.extend(["--secret-env", &pair, "--"]);
    let argv = writes("CANARY", &f_cli);
    args.extend(argv.iter().map(String::as_str));
    let done = cli_json(&url, &args);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["spec"]["secret_env"], json!({"CANARY": "***"}));
    shown.push(("drover submit --wait -o json".to_string(), done.to_string()));
    file_is(&f_cli, &secret);
    let cli_id = done["id"].as_str().unwrap().to_string();

    // The CLI, with the value from its own environment (never on a command line).
    let f_env = out.join("cli-env");
    let argv = writes("FROM_SHELL", &f_env);
    let mut cmd = common::drover();
    cmd.args([
        "submit",
        "-o",
        "json",
        "--kind",
        "canary",
        "--secret-env",
        "FROM_SHELL",
        "--",
    ])
    .args(&argv)
    .env("DROVER_SERVER", &url)
    .env("FROM_SHELL", &secret);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    shown.push((
        "drover submit (from env)".into(),
        String::from_utf8_lossy(&o.stdout).into(),
    ));
    file_is(&f_env, &secret);

    // The worker's own environment: invisible unless passed.
    let (f_wo, f_pass) = (out.join("worker-only"), out.join("passed"));
    let ids = batch(
        &url,
        vec![
            json!({"kind": "canary", "argv": writes("WORKER_ONLY", &f_wo)}),
            json!({"kind": "canary", "argv": writes("PASSED", &f_pass)}),
        ],
    );
    file_is(&f_wo, "unset");
    file_is(&f_pass, &passed);

    // REST: one task, a batch, a workflow node, a schedule's fire.
    let f_rest = out.join("rest");
    let (st, body) = post(
        &url,
        "/v1/tasks",
        json!({"kind": "canary", "argv": writes("CANARY", &f_rest),
               "env": {"PLAIN": "x"}, "secret_env": {"CANARY": secret}}),
    );
    assert_eq!(st, 201, "{body}");
    let rest: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rest["spec"]["secret_env"], json!({"CANARY": "***"}));
    assert_eq!(rest["spec"]["env"], json!({"PLAIN": "x"}));
    shown.push(("POST /v1/tasks".into(), body));
    file_is(&f_rest, &secret);

    let f_batch = out.join("batch");
    let (st, body) = post(
        &url,
        "/v1/tasks:batch",
        json!({"tasks": [{"kind": "canary", "argv": writes("S", &f_batch), "secret_env": {"S": secret}}]}),
    );
    assert_eq!(st, 201, "{body}");
    shown.push(("POST /v1/tasks:batch".into(), body));
    file_is(&f_batch, &secret);

    let f_wf = out.join("workflow");
    let (st, body) = post(
        &url,
        "/v1/workflows",
        json!({"name": "canary", "tasks": [
            {"name": "a", "kind": "canary", "argv": ["true"]},
            {"name": "b", "after": ["a"], "kind": "canary", "argv": writes("S", &f_wf),
             "secret_env": {"S": secret}}]}),
    );
    assert_eq!(st, 201, "{body}");
    let wf: Value = serde_json::from_str(&body).unwrap();
    shown.push(("POST /v1/workflows".into(), body));
    file_is(&f_wf, &secret);

    let f_cron = out.join("schedule");
    let (st, body) = post(
        &url,
        "/v1/schedules",
        json!({"name": "canary", "every": "1h", "task":
            {"kind": "canary", "argv": writes("S", &f_cron), "secret_env": {"S": secret}}}),
    );
    assert_eq!(st, 201, "{body}");
    shown.push(("POST /v1/schedules".into(), body));
    let (st, body) = post(&url, "/v1/schedules/canary/run", json!({}));
    assert_eq!(st, 200, "{body}");
    shown.push(("POST /v1/schedules/canary/run".into(), body));
    file_is(&f_cron, &secret);

    // Everything Drover shows about them.
    let listed = get(&url, "/v1/tasks?limit=1000");
    let tasks: Value = serde_json::from_str(&listed).unwrap();
    for t in tasks["tasks"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        wait_state(&url, id, &["succeeded"], WAIT);
        shown.push((
            format!("GET /v1/tasks/{id}"),
            get(&url, &format!("/v1/tasks/{id}")),
        ));
        shown.push((
            format!("logs of {id}"),
            get(&url, &format!("/v1/tasks/{id}/logs")),
        ));
    }
    let one: Value = serde_json::from_str(&get(&url, &format!("/v1/tasks/{cli_id}"))).unwrap();
    assert_eq!(one["spec"]["secret_env"], json!({"CANARY": "***"}));
    shown.push(("GET /v1/tasks".into(), listed));
    let wf_id = wf["id"].as_str().unwrap();
    shown.push((
        "GET /v1/workflows/{id}".into(),
        get(&url, &format!("/v1/workflows/{wf_id}")),
    ));
    shown.push(("GET /v1/schedules".into(), get(&url, "/v1/schedules")));
    shown.push(("GET /v1/workers".into(), get(&url, "/v1/workers")));
    shown.push(("GET /metrics".into(), get(&url, "/metrics")));
    let events = get(&url, "/v1/events?after=0&follow=false");
    assert!(
        events.contains(&ids[1]),
        "the replay holds the tasks' events"
    );
    shown.push(("the event stream".into(), events));
    for c in [
        ["list", "--limit", "100"].as_slice(),
        &["status", &cli_id],
        &["events"],
    ] {
        let o = cli(&url, c);
        shown.push((
            format!("drover {c:?}"),
            String::from_utf8_lossy(&o.stdout).into(),
        ));
    }
    let delivered = wait_for(WAIT, "webhook deliveries of every success", || {
        let bodies: Vec<String> = hooks
            .lock()
            .unwrap()
            .iter()
            .map(|d| String::from_utf8_lossy(&d.body).into_owned())
            .collect();
        let n = bodies
            .iter()
            .filter(|b| b.contains("\"succeeded\""))
            .count();
        (n >= 8).then(|| bodies.join("\n"))
    });
    shown.push(("webhook payloads".into(), delivered));
    for (what, text) in &shown {
        assert_absent(what, text, &secret);
    }

    // Open worker streams hold a graceful shutdown; the worker goes first.
    drop(worker);
    stop(server);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("listening"), "the log was captured");
    assert_absent("the server's log lines", &logs, &secret);
    let mut files = 0;
    for e in std::fs::read_dir(&data).unwrap() {
        let path = e.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let hit = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!hit, "the secret is in {} in the clear", path.display());
        files += path.to_string_lossy().contains("drover.db") as usize;
    }
    assert!(files >= 1, "the SQLite file was read");
}

#[test]
fn bad_secret_env_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let url = &server.url;
    for bad in [
        "1BAD=hunter2",
        "A-B=hunter2",
        "=hunter2",
        "UNSET_IN_THIS_ENV_X",
    ] {
        let o = cli(url, &["submit", "--secret-env", bad, "--", "true"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--secret-env"), "{bad}: {err}");
        assert!(
            !err.contains("hunter2"),
            "{bad}: the value is echoed: {err}"
        );
    }
    let long = "x".repeat(40 << 10);
    let bodies = [
        json!({"argv": ["true"], "secret_env": {"NOT-A-NAME": "hunter2"}}),
        json!({"argv": ["true"], "secret_env": {"T": long}}),
        json!({"kind": "noop", "secret_env": {"T": "hunter2"}}),
    ];
    for b in bodies {
        let (st, body) = post(url, "/v1/tasks", b.clone());
        assert_eq!(st, 400, "{b}: {body}");
        let e: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["field"], "secret_env", "{body}");
        assert!(!body.contains("hunter2"), "{body}");
    }
    let (st, body) = post(
        url,
        "/v1/tasks:batch",
        json!({"tasks": [{"argv": ["true"]}, {"argv": ["true"], "secret_env": {"1": "x"}}]}),
    );
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("tasks[1].secret_env"), "{body}");
    let (st, body) = post(
        url,
        "/v1/schedules",
        json!({"name": "s", "every": "1h", "task": {"argv": ["true"], "secret_env": {"A B": "x"}}}),
    );
    assert_eq!(st, 400, "{body}");
    let tasks: Value = serde_json::from_str(&get(url, "/v1/tasks")).unwrap();
    assert_eq!(tasks["tasks"], json!([]), "nothing was stored");
    let schedules: Value = serde_json::from_str(&get(url, "/v1/schedules")).unwrap();
    assert_eq!(schedules["schedules"], json!([]));

    // A name in both env and secret_env takes the secret; the plain value is dropped.
    let both =
        json!({"argv": ["true"], "env": {"T": "a", "U": "b"}, "secret_env": {"T": "hunter2"}});
    let (st, body) = post(url, "/v1/tasks", both);
    assert_eq!(st, 201, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["spec"]["env"], json!({"U": "b"}), "{body}");
    assert_eq!(view["spec"]["secret_env"], json!({"T": "***"}), "{body}");
    assert!(!body.contains("hunter2"), "{body}");
}

#[test]
fn a_rotated_key_still_opens_old_secrets_and_a_lost_key_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let secret = canary("rotate");
    let (server, url, _) = server_logged(&data, &[]);
    // Queued while no worker takes kind `late`.
    let (f_old, f_lost) = (dir.path().join("old"), dir.path().join("lost"));
    let submit = |url: &str, f: &Path| {
        let (st, body) = post(
            url,
            "/v1/tasks",
            json!({"kind": "late", "argv": writes("S", f), "secret_env": {"S": secret}}),
        );
        assert_eq!(st, 201, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let old = submit(&url, &f_old);
    stop(server);

    // Rotation: a new key seals, the old one still opens.
    let old_key = data.join("secret.key");
    let new_key = dir.path().join("new.key");
    let (server, url, _) = server_logged(
        &data,
        &[
            "--secret-key-file",
            new_key.to_str().unwrap(),
            "--previous-secret-key-file",
            old_key.to_str().unwrap(),
        ],
    );
    assert!(new_key.exists(), "the new key file was created");
    let lost = submit(&url, &f_lost);
    let worker = worker_with_env(&url, "late", &[], &[]);
    wait_state(&url, &old, &["succeeded"], WAIT);
    wait_state(&url, &lost, &["succeeded"], WAIT);
    file_is(&f_old, &secret);
    file_is(&f_lost, &secret);
    drop(worker);
    stop(server);

    // Without the key that sealed it, a task fails with a clear error and runs nothing.
    let (server, url, _) = server_logged(&data, &[]);
    let again = {
        let (st, body) = post(
            &url,
            "/v1/tasks",
            json!({"kind": "late", "argv": ["true"], "secret_env": {"S": secret}}),
        );
        assert_eq!(st, 201, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    stop(server);
    let (_server, url, _) = server_logged(&data, &["--secret-key-file", new_key.to_str().unwrap()]);
    let _worker = worker_with_env(&url, "late", &[], &[]);
    let t = wait_state(&url, &again, &["failed"], WAIT);
    let error = t["error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot decrypt secret_env S"), "{t}");
    assert!(!error.contains(&secret));
}
