//! Worker identity through real processes: a second `drover worker` with the name of a live one
//! is refused and exits non-zero, the first keeps its task (started once); names outside the
//! safe character set are refused by the CLI and by the server.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn a_second_worker_with_a_live_name_is_refused_and_the_task_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let _w1 = start_worker(&server.url, "w1", 1, &[]);
    let marker = dir.path().join("starts");
    // Runs past two leases (2 s each): a takeover would have started it again.
    let script = format!("echo $DROVER_ATTEMPT >> {}; sleep 5", marker.display());
    let id = submit(&server.url, &["--", "sh", "-c", &script]);
    wait_state(&server.url, &id, &["running"], Duration::from_secs(30));

    let (st, err) = refused_worker(&server.url, ADMIN_TOKEN, &["--name", "w1"]);
    assert!(!st.success(), "exit status {st:?}");
    assert!(
        err.contains("the worker name is already in use") && err.contains("w1"),
        "stderr: {err}"
    );

    let t = wait_state(&server.url, &id, &["succeeded"], Duration::from_secs(30));
    assert_eq!(t["attempt"], 1);
    assert_eq!(t["worker"], "w1");
    let starts = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(starts, "1\n", "started exactly once");
    let ws = cli_json(&server.url, &["workers"]);
    let w1: Vec<_> = ws["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["name"] == "w1")
        .collect();
    assert_eq!(w1.len(), 1);
    assert_eq!(w1[0]["state"], "alive");
}

#[test]
fn unsafe_worker_names_are_refused_by_the_cli_and_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    for bad in ["w 1", "w\nforged log line", "-w", &"x".repeat(64)] {
        let out = common::drover()
            .args(["worker", "--server", &server.url, &format!("--name={bad}")])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains("--name: worker name"), "{bad:?}: {err}");
    }
    // A client that skips the CLI's check: the server refuses the registration.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        use drover_api::proto::{worker_message, worker_service_client::WorkerServiceClient};
        use drover_api::proto::{Register, WorkerMessage};
        let mut c = WorkerServiceClient::connect(server.url.clone())
            .await
            .unwrap();
        let reg = WorkerMessage {
            body: Some(worker_message::Body::Register(Register {
                name: "w1\nINFO forged".into(),
                slots: 1,
                ..Register::default()
            })),
        };
        let mut req = tonic::Request::new(tokio_stream::iter(vec![reg]));
        req.metadata_mut()
            .insert("authorization", bearer().parse().unwrap());
        c.session(req).await.expect_err("refused")
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("worker name"), "{status:?}");
}

/// A worker started with `token`, run until it exits by itself (it must); its status and
/// stderr.
fn refused_worker(url: &str, token: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = common::drover()
        .args(["worker", "--server", url])
        .args(args)
        .env("DROVER_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let mut p = Proc {
        child,
        name: "limited".into(),
    };
    let st = p
        .wait_exit(Duration::from_secs(30))
        .expect("a refused worker exits by itself");
    (st, reader.join().unwrap())
}

#[test]
fn a_worker_token_limits_names_kinds_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let created = cli_json(
        &server.url,
        &[
            "token",
            "create",
            "gpus",
            "--role",
            "worker",
            "--worker-names",
            "gpu-*",
            "--worker-kinds",
            "render",
            "--worker-labels",
            "zone=a",
        ],
    );
    assert_eq!(created["worker_limits"]["names"], "gpu-*");
    let token = created["secret"].as_str().unwrap().to_string();
    for (args, why) in [
        (
            vec!["--name", "cpu-1", "--kinds", "render"],
            "names 'gpu-*'",
        ),
        (vec!["--name", "gpu-1"], "--kinds"),
        (
            vec!["--name", "gpu-1", "--kinds", "render,train"],
            "kind 'train'",
        ),
        (
            vec!["--name", "gpu-1", "--kinds", "render", "--labels", "zone=b"],
            "zone=b",
        ),
    ] {
        let (st, err) = refused_worker(&server.url, &token, &args);
        assert!(!st.success(), "{args:?}: {st:?}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    // Within the limits it registers and runs the kind it may.
    let child = common::drover()
        .args(["worker", "--server", &server.url, "--name", "gpu-1"])
        .args(["--kinds", "render", "--labels", "zone=a"])
        .env("DROVER_TOKEN", &token)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Ended by its pid when dropped.
    let _worker = Proc {
        child,
        name: "gpu-1".into(),
    };
    let id = submit(&server.url, &["--kind", "render", "--", "true"]);
    wait_state(&server.url, &id, &["succeeded"], Duration::from_secs(30));
}

/// Workers serve namespaces: `--namespace` narrows what a worker runs; a worker token limited
/// to namespaces keeps its workers in them (by default, and refused outside them).
#[test]
fn workers_serve_the_namespaces_their_token_allows() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "127.0.0.1:0");
    let url = &server.url;
    let created = cli_json(
        url,
        &[
            "token",
            "create",
            "team-a-workers",
            "--role",
            "worker",
            "--namespace",
            "team-a",
        ],
    );
    assert_eq!(created["namespaces"], serde_json::json!(["team-a"]));
    let token = created["secret"].as_str().unwrap().to_string();
    let (st, err) = refused_worker(url, &token, &["--name", "wb", "--namespace", "team-b"]);
    assert!(!st.success());
    assert!(err.contains("namespace team-b"), "{err}");
    // No --namespace: it serves its token's namespaces, so team-b's task waits.
    let child = common::drover()
        .args(["worker", "--server", url, "--name", "wa"])
        .env("DROVER_TOKEN", &token)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _wa = Proc {
        child,
        name: "wa".into(),
    };
    let in_a = submit(url, &["--namespace", "team-a", "--", "true"]);
    let in_b = submit(url, &["--namespace", "team-b", "--", "true"]);
    wait_state(url, &in_a, &["succeeded"], Duration::from_secs(30));
    let b = wait_for(Duration::from_secs(10), "a waiting reason", || {
        let t = task(url, &in_b);
        t["waiting_reason"]
            .as_str()
            .map(|r| (t["state"].clone(), r.to_string()))
    });
    assert_eq!(b.0, "queued");
    assert_eq!(b.1, "no worker serves namespace team-b");
    let workers = cli_json(url, &["workers"]);
    assert_eq!(
        workers["workers"][0]["namespaces"],
        serde_json::json!(["team-a"])
    );
    // A worker of every namespace, narrowed to team-b, takes it.
    let _wb = start_worker(url, "wb", 1, &["--namespace", "team-b"]);
    wait_state(url, &in_b, &["succeeded"], Duration::from_secs(30));
    let listed = cli_json(url, &["list", "--namespace", "team-b"]);
    let ids: Vec<&str> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [in_b.as_str()]);
}
