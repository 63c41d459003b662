//! Several servers in `--server` / `DROVER_SERVER`: the CLI and the worker move past a server
//! that is down and follow a standby's 503 (or gRPC `UNAVAILABLE`) to the leader it names,
//! saying so on stderr; a worker re-attaches what it runs when its server comes back; and
//! `drover cluster` shows a cluster or says the server has none.
//!
//! DEAD is a loopback port bound then closed (nothing listens), LIVE a real `drover server`,
//! STANDBY a stand-in answering every request as a standby does (until the server side of
//! leader and standby lands, no real server answers that way).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// `http://` and a loopback port nothing listens on.
fn dead() -> String {
    format!("http://{}", free_addr())
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the CLI against `servers`, expecting success; its stdout parsed as JSON and stderr.
fn ok_json(servers: &str, args: &[&str]) -> (Value, String) {
    // Before the first flag, so it never lands in a task's argv after `--`.
    let mut a = args.to_vec();
    let at = a.iter().position(|x| x.starts_with('-')).unwrap_or(a.len());
    a.splice(at..at, ["-o", "json"]);
    let out = cli(servers, &a);
    let err = stderr(&out);
    assert!(out.status.success(), "drover {args:?} failed: {err}");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "drover {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (v, err)
}

/// A worker on `servers` whose log (stderr) goes to `log`; waits until `live` lists it.
fn worker_logged(servers: &str, live: &str, name: &str, log: &std::path::Path) -> Proc {
    let child = drover()
        .args([
            "worker", "--server", servers, "--name", name, "--slots", "2",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn worker");
    let proc = Proc {
        child,
        name: name.into(),
    };
    wait_for(
        Duration::from_secs(30),
        &format!("worker {name} to register"),
        || {
            let ws = cli_json(live, &["workers"]);
            ws["workers"]
                .as_array()
                .is_some_and(|a| a.iter().any(|w| w["name"] == name && w["state"] == "alive"))
                .then_some(())
        },
    );
    proc
}

/// A stand-in HTTP server answering every request with `answer(request line)`: status,
/// extra headers, JSON body. Its URL and the request lines it got.
type Answer = (u16, Vec<(&'static str, String)>, String);

fn fake_http(
    answer: impl Fn(&str) -> Answer + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let (g, answer) = (g.clone(), answer.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).unwrap_or(0) == 0 {
                    return;
                }
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let first = first.trim_end().to_string();
                g.lock().unwrap().push(first.clone());
                let (status, headers, body) = answer(&first);
                let mut resp = format!("HTTP/1.1 {status} X\r\n");
                for (k, v) in headers {
                    resp += &format!("{k}: {v}\r\n");
                }
                resp += &format!(
                    "content-type: application/json\r\nconnection: close\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes());
            });
        }
    });
    (url, got)
}

/// A stand-in standby: 503, `Retry-After: 1` and `x-drover-leader: leader` to everything.
fn fake_standby(leader: &str) -> (String, Arc<Mutex<Vec<String>>>) {
    let leader = leader.to_string();
    fake_http(move |_| {
        (
            503,
            vec![
                ("retry-after", "1".into()),
                (drover_api::cluster::LEADER_HEADER, leader.clone()),
            ],
            json!({"code": "unavailable", "message": "this server is a standby; the leader serves this"})
                .to_string(),
        )
    })
}

#[test]
fn cli_and_worker_move_past_a_dead_server_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &free_addr());
    let live = server.url.clone();
    let dead = dead();
    let both = format!("{dead},{live}");
    let moved = format!("{dead}: cannot connect");
    let to_live = format!("moving to {live}");

    let wlog = dir.path().join("worker.log");
    let _w = worker_logged(&both, &live, "fw1", &wlog);
    let wl = std::fs::read_to_string(&wlog).unwrap();
    assert!(
        wl.contains(&format!("moving to {live}")),
        "the worker says it moved on: {wl}"
    );

    // A plain submit: nothing was sent to DEAD, so it goes to LIVE.
    let (t, err) = ok_json(&both, &["submit", "--", "sh", "-c", "echo from-failover"]);
    assert!(err.contains(&moved) && err.contains(&to_live), "{err}");
    let id = t["id"].as_str().unwrap().to_string();
    let key = t["idempotency_key"].as_str().unwrap_or_default();
    assert!(
        key.starts_with("drover-submit-"),
        "the CLI gave the submit a key of its own: {t}"
    );

    // With one server there is nothing to fail over to: no key is made up.
    let (one, _) = ok_json(&live, &["submit", "--", "true"]);
    assert!(one["idempotency_key"].is_null(), "{one}");

    let done = wait_for(Duration::from_secs(30), "the task to succeed", || {
        let (t, err) = ok_json(&both, &["status", &id]);
        assert!(err.contains(&to_live), "{err}");
        (t["state"] == "succeeded").then_some(t)
    });
    assert_eq!(done["worker"], "fw1");
    assert_eq!(done["attempt"], 1);

    let (list, err) = ok_json(&both, &["list"]);
    assert!(err.contains(&moved), "{err}");
    assert!(
        list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id),
        "{list}"
    );
    let out = cli(&both, &["logs", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-failover\n");

    // Every server down: retried for 30 s (saying so once per server), then an error naming
    // them all, exit 1.
    let started = std::time::Instant::now();
    let out = cli(&format!("{dead},{}", self::dead()), &["list"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        took >= Duration::from_secs(25) && took < Duration::from_secs(45),
        "{took:?}"
    );
    let err = stderr(&out);
    assert!(err.contains("cannot reach the Drover server at"), "{err}");
    assert!(err.contains("tried each of them for 30s"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("cannot connect")).count(),
        2,
        "one line per move, not per try: {err}"
    );
}

#[test]
fn a_standby_sends_the_cli_to_the_leader_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &free_addr());
    let live = server.url.clone();
    let (standby, got) = fake_standby(&live);
    let dead = dead();
    // The leader is listed last: the hint skips DEAD, which is never tried.
    let servers = format!("{standby},{dead},{live}");

    let (t, err) = ok_json(&servers, &["submit", "--queue", "led", "--", "true"]);
    assert!(
        err.contains(&format!(
            "{standby}: unavailable (503; it names the leader {live}); moving to {live}"
        )),
        "{err}"
    );
    assert!(!err.contains(&dead), "DEAD is skipped: {err}");
    assert_eq!(t["queue"], "led");
    assert_eq!(
        *got.lock().unwrap(),
        ["POST /v1/tasks HTTP/1.1"],
        "the standby got the submit once and did nothing"
    );
    let (v, _) = ok_json(&servers, &["status", t["id"].as_str().unwrap()]);
    assert_eq!(v["id"], t["id"]);
}

/// A stand-in standby on the worker stream: `UNAVAILABLE` with the leader in the metadata.
fn fake_grpc_standby(leader: &str, rt: &tokio::runtime::Runtime) -> String {
    use drover_api::proto::worker_service_server::{WorkerService, WorkerServiceServer};
    use drover_api::proto::{ServerMessage, WorkerMessage};
    use tonic::{Request, Response, Status, Streaming};

    struct Standby(String);
    type Out = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<ServerMessage, Status>> + Send + 'static>,
    >;

    #[tonic::async_trait]
    impl WorkerService for Standby {
        type SessionStream = Out;
        async fn session(
            &self,
            _: Request<Streaming<WorkerMessage>>,
        ) -> Result<Response<Out>, Status> {
            let mut s = Status::unavailable("this server is a standby; connect to the leader");
            s.metadata_mut()
                .insert(drover_api::cluster::LEADER_HEADER, self.0.parse().unwrap());
            Err(s)
        }
    }

    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let svc = WorkerServiceServer::new(Standby(leader.to_string()));
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    url
}

#[test]
fn a_standby_s_unavailable_sends_the_worker_to_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &free_addr());
    let live = server.url.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let standby = fake_grpc_standby(&live, &rt);
    let dead = dead();

    let wlog = dir.path().join("worker.log");
    let _w = worker_logged(&format!("{standby},{dead},{live}"), &live, "fw2", &wlog);
    let wl = std::fs::read_to_string(&wlog).unwrap();
    assert!(wl.contains(&format!("moving to {live}")), "{wl}");
    assert!(wl.contains("standby"), "says why: {wl}");
    assert!(!wl.contains(&dead), "DEAD is skipped: {wl}");

    let id = submit(&live, &["--", "true"]);
    let t = wait_state(&live, &id, &["succeeded"], Duration::from_secs(30));
    assert_eq!(t["worker"], "fw2");
}

#[test]
fn a_worker_with_several_servers_reattaches_its_attempt_when_its_server_returns() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut server = start_server(dir.path(), &addr);
    let live = server.url.clone();
    let wlog = dir.path().join("worker.log");
    let _w = worker_logged(&format!("{},{live}", dead()), &live, "fw3", &wlog);
    let runs = dir.path().join("runs.log");
    let script = format!(
        "echo \"$DROVER_ATTEMPT\" >> {}; sleep 4; echo finished",
        runs.display()
    );
    let id = submit(&live, &["--", "sh", "-c", &script]);
    wait_state(&live, &id, &["running"], Duration::from_secs(30));

    // The server dies mid-attempt and comes back on its port: the worker, cycling through
    // DEAD and LIVE, reconnects and re-attaches the attempt it still runs.
    server.proc.kill9();
    let server = start_server(dir.path(), &addr);
    let t = wait_state(&server.url, &id, &["succeeded"], Duration::from_secs(60));
    assert_eq!(t["attempt"], 1, "not restarted: {t}");
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "1\n", "ran once");
    let out = cli(&server.url, &["logs", &id]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "finished\n");
}

fn cluster_fixture() -> Value {
    json!({
        "members": [
            {"name": "s1", "address": "http://127.0.0.1:7071", "role": "leader",
             "last_seen": "2026-01-01T00:00:00.000000Z", "last_seen_ms": 400, "stale": false},
            {"name": "s2", "address": "http://127.0.0.1:7072", "role": "standby",
             "last_seen": "2026-01-01T00:00:00.000000Z", "last_seen_ms": 1200, "stale": false},
            {"name": "s3", "address": "http://127.0.0.1:7073", "role": "standby",
             "last_seen": "2025-12-31T23:59:40.000000Z", "last_seen_ms": 20000, "stale": true}
        ],
        "epoch": 7,
        "leader": "s1",
        "lease_age_ms": 1500,
        "lease_ms": 5000,
        "this": "s2"
    })
}

#[test]
fn drover_cluster_shows_the_members_and_the_lease() {
    let (url, got) = fake_http(|line| {
        if line.starts_with("GET /v1/cluster ") {
            (200, vec![], cluster_fixture().to_string())
        } else {
            (
                404,
                vec![],
                json!({"code": "not_found", "message": "no"}).to_string(),
            )
        }
    });
    let (v, _) = ok_json(&url, &["cluster"]);
    assert_eq!(
        v,
        cluster_fixture(),
        "-o json is the view as the server gave it"
    );

    let out = cli(&url, &["cluster"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let cells = |l: &str| {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(cells(lines[0]), ["NAME", "ADDRESS", "ROLE", "LAST SEEN"]);
    assert_eq!(
        cells(lines[1]),
        ["s1", "http://127.0.0.1:7071", "leader", "0.4s ago"]
    );
    assert_eq!(
        cells(lines[2]),
        ["s2 *", "http://127.0.0.1:7072", "standby", "1.2s ago"]
    );
    assert_eq!(
        cells(lines[3]),
        ["s3", "http://127.0.0.1:7073", "standby", "20s ago (stale)"]
    );
    assert_eq!(
        lines[4],
        "epoch 7, leader s1, lease age 1.5s of 5.0s; * answered (s2)"
    );
    assert!(got
        .lock()
        .unwrap()
        .iter()
        .all(|l| l == "GET /v1/cluster HTTP/1.1"));
}

#[test]
fn drover_cluster_says_when_the_server_has_no_cluster_view() {
    // An older server: its fallback's 404 for an endpoint it does not have.
    let (url, _) = fake_http(|line| {
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        (
            404,
            vec![],
            json!({"code": "not_found", "message": format!("no such endpoint {path}; see /openapi.json")})
                .to_string(),
        )
    });
    let out = cli(&url, &["cluster"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the server at {url} does not report a cluster (no GET /v1/cluster)"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // Bad input: a clear error, exit 2.
    for bad in ["ftp://h:1", " , "] {
        let out = cli(bad, &["cluster"]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid server URL"),
            "{}",
            stderr(&out)
        );
    }
}
