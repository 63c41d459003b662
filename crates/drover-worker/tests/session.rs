//! The worker against a small fake server implementing `WorkerService` in this file: what it
//! registers, what it sends back for assignments, cancels, rejections, reconnects, failover and
//! shutdown. The fake forwards every worker message to the test and lets the test speak for
//! the server.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_api::proto::worker_service_server::{WorkerService, WorkerServiceServer};
use drover_api::proto::{
    assignment::Spec, server_message::Body, worker_message, Assignment, Assignments, AttemptRef,
    Cancel, ExecSpec, Finished, Heartbeat, LogChunk, NoopSpec, Outcome, Register, Registered,
    Rejected, ServerMessage, WorkerMessage,
};
use drover_worker::WorkerConfig;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

const WAIT: Duration = Duration::from_secs(15);
const HEARTBEAT_MS: u64 = 50;

struct Fake {
    sessions: mpsc::UnboundedSender<Session>,
    accepting: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
}

/// One worker connection, as the test sees it.
struct Session {
    register: Register,
    from_worker: mpsc::UnboundedReceiver<WorkerMessage>,
    to_worker: mpsc::Sender<Result<ServerMessage, Status>>,
    seen: Seen,
}

/// Everything the worker sent on a session after registering.
#[derive(Default)]
struct Seen {
    started: Vec<AttemptRef>,
    logs: Vec<LogChunk>,
    finished: Vec<Finished>,
    updates_messages: usize,
    heartbeats: Vec<Heartbeat>,
    closed: bool,
}

impl Seen {
    fn finished_of(&self, a: &AttemptRef) -> Option<&Finished> {
        self.finished.iter().find(|f| f.attempt.as_ref() == Some(a))
    }

    fn output(&self, a: &AttemptRef, stream: u32) -> String {
        let bytes: Vec<u8> = self
            .logs
            .iter()
            .filter(|l| l.attempt.as_ref() == Some(a) && l.stream == stream)
            .flat_map(|l| l.data.iter().copied())
            .collect();
        String::from_utf8(bytes).unwrap()
    }
}

#[tonic::async_trait]
impl WorkerService for Fake {
    type SessionStream = ReceiverStream<Result<ServerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        if !self.accepting.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unavailable("not now"));
        }
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no register"))?;
        let Some(worker_message::Body::Register(register)) = first.body else {
            return Err(Status::invalid_argument(
                "the first message must be register",
            ));
        };
        let (out, rx) = mpsc::channel(64);
        let registered = Registered {
            worker: register.name.clone(),
            heartbeat_interval_ms: HEARTBEAT_MS,
            lease_ms: 10 * HEARTBEAT_MS,
        };
        out.send(Ok(msg(Body::Registered(registered))))
            .await
            .unwrap();
        let (tx, from_worker) = mpsc::unbounded_channel();
        let (to_worker, mut from_test) = mpsc::channel(64);
        // Like the real server: the session ends when either side ends it.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = inbound.message() => match m {
                        Ok(Some(m)) => {
                            let _ = tx.send(m);
                        }
                        _ => break,
                    },
                    m = from_test.recv() => match m {
                        Some(m) => {
                            if out.send(m).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        });
        let _ = self.sessions.send(Session {
            register,
            from_worker,
            to_worker,
            seen: Seen::default(),
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct Server {
    url: String,
    sessions: mpsc::UnboundedReceiver<Session>,
    accepting: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, sessions) = mpsc::unbounded_channel();
        let accepting = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicUsize::new(0));
        let fake = Fake {
            sessions: tx,
            accepting: accepting.clone(),
            refused: refused.clone(),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(WorkerServiceServer::new(fake))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        Server {
            url,
            sessions,
            accepting,
            refused,
        }
    }

    async fn session(&mut self) -> Session {
        tokio::time::timeout(WAIT, self.sessions.recv())
            .await
            .expect("the worker did not connect")
            .unwrap()
    }
}

impl Session {
    async fn send(&self, body: Body) {
        self.to_worker.send(Ok(msg(body))).await.unwrap();
    }

    async fn assign(&self, list: Vec<Assignment>) {
        self.send(Body::Assignments(Assignments { assignments: list }))
            .await;
    }

    /// Reads what the worker sends until `done` holds.
    async fn until(&mut self, what: &str, done: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.from_worker.recv()).await;
            let Ok(next) = next else {
                panic!("timed out waiting for {what}");
            };
            let Some(m) = next else {
                self.seen.closed = true;
                assert!(done(&self.seen), "stream closed while waiting for {what}");
                return;
            };
            match m.body {
                Some(worker_message::Body::Updates(u)) => {
                    self.seen.updates_messages += 1;
                    self.seen
                        .started
                        .extend(u.started.into_iter().map(|s| s.attempt.unwrap()));
                    self.seen.logs.extend(u.logs);
                    self.seen.finished.extend(u.finished);
                }
                Some(worker_message::Body::Heartbeat(h)) => self.seen.heartbeats.push(h),
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// Waits for a heartbeat that satisfies `ok`, sent after this call.
    async fn heartbeat_where(&mut self, what: &str, ok: impl Fn(&Heartbeat) -> bool) {
        let from = self.seen.heartbeats.len();
        self.until(what, |s| s.heartbeats[from..].iter().any(&ok))
            .await;
    }
}

fn msg(body: Body) -> ServerMessage {
    ServerMessage { body: Some(body) }
}

fn aref(task: &str, attempt: u32) -> AttemptRef {
    AttemptRef {
        task_id: task.into(),
        attempt,
        lease: format!("lease-{task}-{attempt}"),
    }
}

fn noop(a: &AttemptRef) -> Assignment {
    Assignment {
        attempt: Some(a.clone()),
        kind: "default".into(),
        queue: "q".into(),
        spec: Some(Spec::Noop(NoopSpec {})),
        timeout_ms: None,
        idempotency_key: None,
        shard_index: None,
        shard_count: None,
    }
}

fn exec(a: &AttemptRef, argv: &[&str]) -> Assignment {
    Assignment {
        spec: Some(Spec::Exec(ExecSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: Default::default(),
            cwd: None,
            ..Default::default()
        })),
        ..noop(a)
    }
}

/// A task that prints its pid, then sleeps (as that pid) until killed.
fn sleeper(a: &AttemptRef) -> Assignment {
    exec(a, &["sh", "-c", "echo $$; exec sleep 30"])
}

fn outcome(f: &Finished) -> Outcome {
    Outcome::try_from(f.outcome).unwrap()
}

struct Worker {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    fn start(cfg: WorkerConfig) -> Worker {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(drover_worker::run(cfg, async move {
            let _ = stopped.await;
        }));
        Worker {
            stop: Some(stop),
            task,
        }
    }

    /// Triggers shutdown and returns how long `run` took to return.
    async fn shutdown(mut self) -> Duration {
        let t = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("run did not return")
            .unwrap()
            .expect("run failed");
        t.elapsed()
    }
}

fn config(server: &Server) -> WorkerConfig {
    WorkerConfig::new(vec![server.url.clone()], "w1".into())
}

fn gone(pid: i32) -> bool {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    if kill(Pid::from_raw(pid), None).is_err() {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

async fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone(pid) {
        assert!(Instant::now() < deadline, "process {pid} still alive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn registers_and_runs_noops_in_few_messages() {
    let mut server = Server::start().await;
    let mut cfg = config(&server);
    cfg.labels = BTreeMap::from([("zone".into(), "a".into())]);
    cfg.resources = BTreeMap::from([("cpu".into(), 4)]);
    cfg.kinds = vec!["default".into()];
    let worker = Worker::start(cfg);
    let mut s = server.session().await;
    let r = &s.register;
    assert_eq!(
        (r.name.as_str(), r.slots, r.prefetch),
        ("w1", 4, 0),
        "{r:?}"
    );
    assert_eq!(r.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(r.resources.get("cpu"), Some(&4));
    assert_eq!(r.kinds, vec!["default".to_string()]);
    assert!(r.held.is_empty() && !r.version.is_empty());

    let refs: Vec<AttemptRef> = (0..2000).map(|i| aref(&format!("t{i}"), 1)).collect();
    let t = Instant::now();
    s.assign(refs.iter().map(noop).collect()).await;
    s.until("2000 finished", |s| s.finished.len() == 2000).await;
    let took = t.elapsed();
    assert_eq!(s.seen.started, refs);
    let finished: Vec<AttemptRef> = s
        .seen
        .finished
        .iter()
        .map(|f| f.attempt.clone().unwrap())
        .collect();
    assert_eq!(finished, refs);
    assert!(s
        .seen
        .finished
        .iter()
        .all(|f| outcome(f) == Outcome::Succeeded && f.error.is_none()));
    // One assignments message in, one updates message out: no message per task.
    assert!(
        s.seen.updates_messages <= 2,
        "{} updates messages",
        s.seen.updates_messages
    );
    eprintln!("2000 no-ops round trip in {took:?}");

    let took = worker.shutdown().await;
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}

#[tokio::test]
async fn exec_reports_started_output_and_result_with_the_same_ref() {
    let mut server = Server::start().await;
    let worker = Worker::start(config(&server));
    let mut s = server.session().await;
    let a = AttemptRef {
        task_id: "0190f0e2-7c1a-7000-8000-000000000001".into(),
        attempt: 2,
        lease: "9f86d081884c7d659a2feaa0c55ad015".into(),
    };
    let script =
        "echo \"$DROVER_TASK_ID $DROVER_ATTEMPT $DROVER_IDEMPOTENCY_KEY\"; echo oops >&2; exit 2";
    let mut assignment = exec(&a, &["sh", "-c", script]);
    assignment.idempotency_key = Some("idem".into());
    s.assign(vec![assignment]).await;
    s.until("finished", |s| s.finished_of(&a).is_some()).await;
    assert_eq!(s.seen.started, vec![a.clone()]);
    assert_eq!(
        s.seen.output(&a, 1),
        "0190f0e2-7c1a-7000-8000-000000000001 2 idem\n"
    );
    assert_eq!(s.seen.output(&a, 2), "oops\n");
    let f = s.seen.finished_of(&a).unwrap();
    assert_eq!(
        (outcome(f), f.exit_code, f.error.as_deref()),
        (Outcome::Failed, Some(2), None)
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn secret_env_reaches_the_process_and_an_unopened_one_runs_nothing() {
    let mut server = Server::start().await;
    let worker = Worker::start(config(&server));
    let mut s = server.session().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let (a, b) = (aref("t-secret", 1), aref("t-unopened", 1));
    let mut with_secret = exec(&a, &["sh", "-c", "printf %s \"$TOKEN\""]);
    let mut unopened = exec(&b, &["touch", marker.to_str().unwrap()]);
    if let Some(Spec::Exec(e)) = &mut with_secret.spec {
        e.secret_env.insert("TOKEN".into(), "s3cr3t".into());
    }
    if let Some(Spec::Exec(e)) = &mut unopened.spec {
        e.secret_error = Some("cannot decrypt secret_env TOKEN: wrong key".into());
    }
    s.assign(vec![with_secret, unopened]).await;
    s.until("both finished", |s| {
        s.finished_of(&a).is_some() && s.finished_of(&b).is_some()
    })
    .await;
    assert_eq!(s.seen.output(&a, 1), "s3cr3t");
    assert_eq!(outcome(s.seen.finished_of(&a).unwrap()), Outcome::Succeeded);
    let f = s.seen.finished_of(&b).unwrap();
    assert_eq!(outcome(f), Outcome::Failed);
    assert_eq!(
        f.error.as_deref(),
        Some("cannot decrypt secret_env TOKEN: wrong key")
    );
    assert!(
        !marker.exists(),
        "the command of an unopened task never ran"
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn slots_bound_concurrency_and_cancel_reaches_running_and_waiting() {
    let mut server = Server::start().await;
    let mut cfg = config(&server);
    cfg.slots = 1;
    let worker = Worker::start(cfg);
    let mut s = server.session().await;
    let (a, b, c) = (aref("a", 1), aref("b", 1), aref("c", 1));
    s.assign(vec![sleeper(&a), sleeper(&b), noop(&c)]).await;
    s.until("a's pid", |s| s.output(&a, 1).ends_with('\n'))
        .await;
    let pid: i32 = s.seen.output(&a, 1).trim().parse().unwrap();
    let all: HashSet<_> = [&a, &b, &c].into_iter().cloned().collect();
    s.heartbeat_where("a heartbeat holding all three", |h| {
        h.running == 1 && h.held.iter().cloned().collect::<HashSet<_>>() == all
    })
    .await;
    assert_eq!(s.seen.started, vec![a.clone()], "one slot, one started");

    // Waiting: dropped and reported, never started. Unknown: ignored.
    s.send(Body::Cancel(Cancel {
        attempts: vec![b.clone(), aref("unknown", 9)],
    }))
    .await;
    s.until("b cancelled", |s| s.finished_of(&b).is_some())
        .await;
    assert_eq!(outcome(s.seen.finished_of(&b).unwrap()), Outcome::Cancelled);

    // Running: killed at once; the freed slot runs the no-op.
    let t = Instant::now();
    s.send(Body::Cancel(Cancel {
        attempts: vec![a.clone()],
    }))
    .await;
    s.until("a cancelled", |s| s.finished_of(&a).is_some())
        .await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(outcome(s.seen.finished_of(&a).unwrap()), Outcome::Cancelled);
    wait_gone(pid).await;
    s.until("c done", |s| s.finished_of(&c).is_some()).await;
    assert_eq!(outcome(s.seen.finished_of(&c).unwrap()), Outcome::Succeeded);
    assert!(!s.seen.started.contains(&b));
    worker.shutdown().await;
}

#[tokio::test]
async fn odd_input_is_skipped_or_refused_without_harm() {
    let mut server = Server::start().await;
    let mut cfg = config(&server);
    cfg.kinds = vec!["default".into()];
    let worker = Worker::start(cfg);
    let mut s = server.session().await;
    let (wrong_kind, no_spec, ok) = (aref("k", 1), aref("n", 1), aref("ok", 1));
    s.send(Body::Rejected(Rejected {
        attempt: None,
        reason: "nothing".into(),
    }))
    .await;
    s.to_worker
        .send(Ok(ServerMessage { body: None }))
        .await
        .unwrap();
    s.send(Body::Rejected(Rejected {
        attempt: Some(aref("never-held", 1)),
        reason: "stale".into(),
    }))
    .await;
    s.send(Body::Registered(Registered::default())).await;
    s.assign(vec![
        Assignment {
            attempt: None,
            ..noop(&ok)
        },
        Assignment {
            kind: "gpu".into(),
            ..noop(&wrong_kind)
        },
        Assignment {
            spec: None,
            ..noop(&no_spec)
        },
        noop(&ok),
    ])
    .await;
    s.until("three results", |s| s.finished.len() == 3).await;
    let f = s.seen.finished_of(&wrong_kind).unwrap();
    assert_eq!(outcome(f), Outcome::Failed);
    assert!(f.error.as_deref().unwrap().contains("\"gpu\""), "{f:?}");
    let f = s.seen.finished_of(&no_spec).unwrap();
    assert_eq!(outcome(f), Outcome::Failed);
    assert_eq!(
        outcome(s.seen.finished_of(&ok).unwrap()),
        Outcome::Succeeded
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn rejected_running_attempt_is_killed_and_forgotten() {
    let mut server = Server::start().await;
    let worker = Worker::start(config(&server));
    let mut s = server.session().await;
    let a = aref("a", 1);
    s.assign(vec![sleeper(&a)]).await;
    s.until("a's pid", |s| s.output(&a, 1).ends_with('\n'))
        .await;
    let pid: i32 = s.seen.output(&a, 1).trim().parse().unwrap();
    s.send(Body::Rejected(Rejected {
        attempt: Some(a.clone()),
        reason: "lease is stale".into(),
    }))
    .await;
    s.heartbeat_where("nothing held or running", |h| {
        h.held.is_empty() && h.running == 0
    })
    .await;
    wait_gone(pid).await;
    assert!(s.seen.finished.is_empty(), "{:?}", s.seen.finished);
    worker.shutdown().await;
}

#[tokio::test]
async fn reconnects_and_reattaches_what_it_holds() {
    let mut server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let waiter = format!(
        "while [ ! -e '{}' ]; do sleep 0.01; done; echo done",
        go.display()
    );
    let worker = Worker::start(config(&server));
    let mut s1 = server.session().await;
    let (a, b) = (aref("a", 1), aref("b", 4));
    s1.assign(vec![sleeper(&a), exec(&b, &["sh", "-c", &waiter])])
        .await;
    s1.until("both started", |s| s.started.len() == 2).await;

    // The server goes away and refuses connections for a while; b finishes meanwhile.
    server.accepting.store(false, Ordering::SeqCst);
    drop(s1);
    let deadline = Instant::now() + WAIT;
    while server.refused.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the worker did not retry");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::write(&go, b"").unwrap();
    server.accepting.store(true, Ordering::SeqCst);

    let mut s2 = server.session().await;
    let held: HashSet<_> = s2.register.held.iter().cloned().collect();
    assert_eq!(held, HashSet::from([a.clone(), b.clone()]));
    s2.until("b's result", |s| s.finished_of(&b).is_some())
        .await;
    let f = s2.seen.finished_of(&b).unwrap();
    assert_eq!((outcome(f), f.exit_code), (Outcome::Succeeded, Some(0)));
    assert_eq!(s2.seen.output(&b, 1), "done\n");

    // a kept running across the reconnect and is still cancellable.
    s2.heartbeat_where("a heartbeat holding a", |h| h.held == vec![a.clone()])
        .await;
    s2.send(Body::Cancel(Cancel {
        attempts: vec![a.clone()],
    }))
    .await;
    s2.until("a cancelled", |s| s.finished_of(&a).is_some())
        .await;
    worker.shutdown().await;
}

#[tokio::test]
async fn fails_over_to_the_next_server() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut server = Server::start().await;
    let cfg = WorkerConfig::new(vec![dead, server.url.clone()], "w1".into());
    let worker = Worker::start(cfg);
    let mut s = server.session().await;
    let a = aref("a", 1);
    s.assign(vec![noop(&a)]).await;
    s.until("a done", |s| s.finished_of(&a).is_some()).await;
    worker.shutdown().await;
}

#[tokio::test]
async fn shutdown_gives_back_waiting_kills_running_and_closes() {
    let mut server = Server::start().await;
    let mut cfg = config(&server);
    cfg.slots = 1;
    let worker = Worker::start(cfg);
    let mut s = server.session().await;
    let (a, b) = (aref("a", 1), aref("b", 1));
    s.assign(vec![sleeper(&a), sleeper(&b)]).await;
    s.until("a's pid", |s| s.output(&a, 1).ends_with('\n'))
        .await;
    let pid: i32 = s.seen.output(&a, 1).trim().parse().unwrap();

    let took = worker.shutdown().await;
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    s.until("the stream closed", |s| s.closed).await;
    for x in [&a, &b] {
        let f = s.seen.finished_of(x).expect("a result for each attempt");
        assert_eq!(outcome(f), Outcome::Cancelled);
    }
    assert!(!s.seen.started.contains(&b));
    wait_gone(pid).await;
}

/// A measurement, not a check: `cargo test --release -p drover-worker --test session -- --ignored
/// --nocapture noop_throughput`. The fake server keeps `slots + prefetch` attempts outstanding
/// (as the real one does with its credit), so this is the worker's round-trip-bound rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn noop_throughput() {
    let mut server = Server::start().await;
    for (slots, prefetch) in [(4, 2), (64, 64), (1000, 1000)] {
        let mut cfg = config(&server);
        cfg.slots = slots;
        cfg.prefetch = prefetch;
        let worker = Worker::start(cfg);
        let mut s = server.session().await;
        let credit = (slots + prefetch) as usize;
        let total = 200_000;
        let t = Instant::now();
        let mut sent = 0;
        while s.seen.finished.len() < total {
            let want = (s.seen.finished.len() + credit).min(total);
            if sent < want {
                s.assign(
                    (sent..want)
                        .map(|i| noop(&aref(&format!("t{i}"), 1)))
                        .collect(),
                )
                .await;
                sent = want;
            }
            let n = s.seen.finished.len();
            s.until("progress", |s| s.finished.len() > n).await;
        }
        let took = t.elapsed();
        eprintln!(
            "slots {slots} prefetch {prefetch}: {total} no-ops in {took:?} = {:.0}/s, {} updates messages",
            total as f64 / took.as_secs_f64(),
            s.seen.updates_messages
        );
        worker.shutdown().await;
    }
}
