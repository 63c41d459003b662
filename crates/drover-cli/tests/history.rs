//! The history checker (issue 11, point 6): three `drover server`s on one PostgreSQL schema
//! and several `drover worker`s, a steady stream of tasks (plain ones, ones that fail before
//! they succeed, long ones, workflows) plus two schedules firing every second, while the
//! leader is killed with `kill -9` at random moments (a seeded RNG) and restarted under its
//! name and port, and workers are killed and restarted under theirs. It records every
//! acknowledged submit, the event stream (followed live across failovers, and as stored),
//! and every attempt's start and end as the task commands themselves log them, then checks
//! the history (`history/check.rs`, whose unit tests show each rule failing) and prints the
//! figures. Any violation fails the test.
//!
//! The defaults are the short CI run; `cargo xtask history` runs the long one with
//! `--nocapture`. Parameters: `DROVER_HISTORY_LEADER_KILLS` (2), `DROVER_HISTORY_WORKER_KILLS`
//! (1), `DROVER_HISTORY_SECONDS` (of load, 50), `DROVER_HISTORY_SEED` (1),
//! `DROVER_HISTORY_WORKERS` (3). Skipped when `DROVER_TEST_POSTGRES_URL` is unset. The task
//! commands are a few lines of Perl (`Time::HiRes`, for CLOCK_MONOTONIC in nanoseconds).

#[path = "history/api.rs"]
mod api;
#[path = "history/check.rs"]
mod check;
mod common;
#[path = "history/stream.rs"]
mod stream;

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use api::{Api, Failure};
use check::{Acked, Attempt, Failover, Final, History, Misfire, Schedule};
use common::*;
use drover_store::postgres::TempSchema;
use reqwest::Method;
use serde_json::{json, Value};
use stream::Follower;

/// `--leader-lease` of the servers: short, so failovers are quick.
const LEADER_LEASE: Duration = Duration::from_secs(2);
const NAMES: [&str; 3] = ["a", "b", "c"];
/// Queues: plain tasks, workflow nodes, and one per schedule.
const QUEUE: &str = "hist";
const WF_QUEUE: &str = "hist-wf";
const SCHEDULES: [(&str, Misfire); 2] =
    [("tick-skip", Misfire::Skip), ("tick-all", Misfire::RunAll)];
/// Submits per second, over all submitting threads.
const RATE: f64 = 6.0;
const SUBMITTERS: usize = 2;

/// Every task runs this: it logs `start TASK ATTEMPT NS`, works `MS` milliseconds, exits 3
/// while its attempt is at most `FAILS` (else 0), and logs `end TASK ATTEMPT NS RC` first.
/// Each line is one append of one write. Arguments: LOG MS FAILS [TAG].
const SCRIPT: &str = r#"use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC sleep);
my ($log, $ms, $fails) = @ARGV;
my ($id, $n) = ($ENV{DROVER_TASK_ID}, $ENV{DROVER_ATTEMPT});
sub note {
    open(my $f, '>>', $log) or die "$log: $!";
    printf $f "%s %s %s %.0f%s\n", $_[0], $id, $n, clock_gettime(CLOCK_MONOTONIC) * 1e9, $_[1];
    close($f) or die "$log: $!";
}
note('start', '');
sleep($ms / 1000);
my $rc = $n <= $fails ? 3 : 0;
note('end', " $rc");
exit $rc;
"#;

struct Params {
    leader_kills: usize,
    worker_kills: usize,
    seconds: u64,
    seed: u64,
    workers: usize,
}

fn params() -> Params {
    fn var(name: &str, default: u64) -> u64 {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => v
                .parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a whole number")),
            _ => default,
        }
    }
    Params {
        leader_kills: var("DROVER_HISTORY_LEADER_KILLS", 2) as usize,
        worker_kills: var("DROVER_HISTORY_WORKER_KILLS", 1) as usize,
        seconds: var("DROVER_HISTORY_SECONDS", 50),
        seed: var("DROVER_HISTORY_SEED", 1),
        workers: var("DROVER_HISTORY_WORKERS", 3).max(1) as usize,
    }
}

/// SplitMix64: the run's choices (kill moments, victims, task mix) from one seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

fn require_perl() {
    let ok = Command::new("perl")
        .args(["-MTime::HiRes=clock_gettime,CLOCK_MONOTONIC", "-e", "1"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the history test's task commands need perl with Time::HiRes (Debian: perl)"
    );
}

/// CLOCK_MONOTONIC in nanoseconds, the task commands' clock (`Instant` does not show it).
fn monotonic_ns() -> u64 {
    let out = Command::new("perl")
        .args([
            "-MTime::HiRes=clock_gettime,CLOCK_MONOTONIC",
            "-e",
            "printf '%.0f', clock_gettime(CLOCK_MONOTONIC) * 1e9",
        ])
        .output()
        .expect("perl");
    String::from_utf8_lossy(&out.stdout)
        .parse()
        .expect("a time")
}

fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// The three servers: each keeps its name, port and log file across restarts.
struct Cluster {
    data: PathBuf,
    logs: PathBuf,
    store: String,
    addrs: Vec<String>,
    urls: Vec<String>,
    servers: Vec<Option<Server>>,
}

impl Cluster {
    fn start(dir: &Path, store: &str) -> Cluster {
        let mut c = Cluster {
            data: dir.join("data"),
            logs: dir.to_path_buf(),
            store: store.to_string(),
            addrs: NAMES.iter().map(|_| free_addr()).collect(),
            urls: vec![],
            servers: NAMES.iter().map(|_| None).collect(),
        };
        for i in 0..NAMES.len() {
            c.start_member(i);
        }
        c.urls = c.servers.iter().flatten().map(|s| s.url.clone()).collect();
        c
    }

    fn start_member(&mut self, i: usize) {
        let lease = format!("{}ms", LEADER_LEASE.as_millis());
        let log = append(&self.logs.join(format!("server-{}.log", NAMES[i])));
        let s = start_server_on_to(
            &self.data,
            &self.addrs[i],
            &self.store,
            &["--name", NAMES[i], "--leader-lease", &lease],
            Stdio::from(log),
        );
        self.servers[i] = Some(s);
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut s) = self.servers[i].take() {
            s.proc.kill9();
        }
    }
}

/// The workers, each restarted under its name after a kill.
struct Workers {
    servers: String,
    logs: PathBuf,
    procs: Vec<Proc>,
}

impl Workers {
    fn name(i: usize) -> String {
        format!("w{}", i + 1)
    }

    fn spawn(&self, i: usize) -> Proc {
        let name = Self::name(i);
        let log = append(&self.logs.join(format!("worker-{name}.log")));
        let child = drover()
            .args(["worker", "--server", &self.servers, "--name", &name])
            .args(["--slots", "4"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn worker");
        Proc { child, name }
    }

    fn start(api: &Api, servers: String, logs: &Path, n: usize) -> Workers {
        let mut w = Workers {
            servers,
            logs: logs.to_path_buf(),
            procs: vec![],
        };
        for i in 0..n {
            let p = w.spawn(i);
            w.procs.push(p);
            w.wait_registered(api, i);
        }
        w
    }

    /// Until the leader lists worker `i` live; a process refused (its name still held by
    /// the session it replaces) is started again.
    fn wait_registered(&mut self, api: &Api, i: usize) {
        let name = Self::name(i);
        wait_for(
            Duration::from_secs(60),
            &format!("{name} to register"),
            || {
                if let Ok(Some(_)) = self.procs[i].child.try_wait() {
                    self.procs[i] = self.spawn(i);
                }
                let ws = api.get_leader("/v1/workers");
                ws["workers"]
                    .as_array()?
                    .iter()
                    .any(|w| w["name"] == name.as_str() && w["state"] != "lost")
                    .then_some(())
            },
        );
    }

    /// Kills worker `i` and starts it again under its name; when it died (monotonic ns).
    fn kill_and_restart(&mut self, api: &Api, i: usize) -> u64 {
        self.procs[i].kill9();
        let at = monotonic_ns();
        self.procs[i] = self.spawn(i);
        self.wait_registered(api, i);
        at
    }
}

/// What the submitters recorded.
#[derive(Default)]
struct Record {
    acked: Mutex<Vec<Acked>>,
    answers: Mutex<Vec<(String, String)>>,
    /// Workflows whose answer was lost with the connection: found in the store later, or not.
    unknown_workflows: Mutex<Vec<String>>,
    /// Submits nobody answered for a minute, or refused.
    failed: Mutex<Vec<String>>,
}

fn argv(log: &Path, ms: u64, fails: u64, tag: &str) -> Vec<String> {
    [
        "perl",
        "-e",
        SCRIPT,
        &log.display().to_string(),
        &ms.to_string(),
        &fails.to_string(),
        tag,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One submitter: a task (or workflow) every `1/rate` seconds until `until`.
fn submitter(api: &Api, log: &Path, me: usize, seed: u64, until: Instant, rec: &Record) {
    let mut rng = Rng(seed ^ (me as u64 + 1).wrapping_mul(0x5851_f42d_4c95_7f2d));
    let every = Duration::from_secs_f64(SUBMITTERS as f64 / RATE);
    let mut next = Instant::now();
    let mut n = 0;
    while next < until {
        n += 1;
        let roll = rng.below(100);
        if roll < 12 {
            submit_workflow(api, log, &format!("wf-{me}-{n}"), &mut rng, rec);
        } else {
            let (what, ms, fails) = match roll {
                12..=39 => ("retry", rng.range(50, 300), rng.range(1, 2)),
                40..=47 => ("long", rng.range(2500, 3500), 0),
                _ => ("plain", rng.range(50, 400), 0),
            };
            submit_task(api, log, &format!("t-{me}-{n}"), (what, ms, fails), rec);
        }
        // Pacing the load (not a synchronisation): the next tick, skipping missed ones.
        next += every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

fn submit_task(api: &Api, log: &Path, key: &str, kind: (&str, u64, u64), rec: &Record) {
    let (what, ms, fails) = kind;
    let body = json!({
        "queue": QUEUE,
        "argv": argv(log, ms, fails, key),
        "retries": fails + 1,
        "backoff": "200ms",
        "idempotency_key": key,
    });
    match api.send(Method::POST, "/v1/tasks", Some(&body), true) {
        Ok((200 | 201, v)) => {
            let id = v["id"].as_str().expect("a task id").to_string();
            rec.answers.lock().unwrap().push((key.into(), id.clone()));
            rec.acked.lock().unwrap().push(Acked {
                id,
                what: what.into(),
            });
        }
        other => rec
            .failed
            .lock()
            .unwrap()
            .push(format!("task {key}: {}", api::describe(&other))),
    }
}

/// A workflow: `a`, then `b` (fails once, retried) and `c`. Workflows take no idempotency
/// key, so a broken exchange is not repeated: the store says later whether it was created.
fn submit_workflow(api: &Api, log: &Path, name: &str, rng: &mut Rng, rec: &Record) {
    let node = |n: &str, after: &[&str], fails: u64, rng: &mut Rng| {
        json!({
            "name": n,
            "after": after,
            "queue": WF_QUEUE,
            "argv": argv(log, rng.range(50, 300), fails, &format!("{name}/{n}")),
            "retries": fails + 1,
            "backoff": "200ms",
        })
    };
    let body = json!({
        "name": name,
        "tasks": [node("a", &[], 0, rng), node("b", &["a"], 1, rng), node("c", &["a"], 0, rng)],
    });
    match api.send(Method::POST, "/v1/workflows", Some(&body), false) {
        Ok((201, v)) => {
            for n in v["nodes"].as_array().expect("nodes") {
                let id = n["task_id"].as_str().unwrap().to_string();
                let tag = format!("{name}/{}", n["name"].as_str().unwrap());
                rec.answers.lock().unwrap().push((tag, id.clone()));
                rec.acked.lock().unwrap().push(Acked {
                    id,
                    what: "workflow".into(),
                });
            }
        }
        Err(Failure::Unknown(_)) => rec.unknown_workflows.lock().unwrap().push(name.into()),
        other => rec
            .failed
            .lock()
            .unwrap()
            .push(format!("workflow {name}: {}", api::describe(&other))),
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    KillLeader,
    KillWorker(usize),
}

/// When to do what: each kind of kill spread over the load, one at a random moment in each
/// equal window (the first 5 s and the last 3 s spared).
fn timeline(p: &Params, rng: &mut Rng) -> Vec<(Duration, Action)> {
    let from = 5_000;
    let to = (p.seconds * 1000).saturating_sub(3_000).max(from + 1_000);
    let mut plan = Vec::new();
    let mut spread = |n: usize, rng: &mut Rng, act: &mut dyn FnMut(&mut Rng) -> Action| {
        let window = (to - from) / n.max(1) as u64;
        for k in 0..n as u64 {
            let at = from + k * window + rng.below(window * 7 / 10);
            plan.push((Duration::from_millis(at), act(rng)));
        }
    };
    spread(p.leader_kills, rng, &mut |_| Action::KillLeader);
    // The workers in turn, from a random one.
    let workers = p.workers as u64;
    let mut victim = rng.below(workers);
    spread(p.worker_kills, rng, &mut |_| {
        victim = (victim + 1) % workers;
        Action::KillWorker(victim as usize)
    });
    plan.sort_by_key(|(at, _)| *at);
    plan
}

/// The leader's name and epoch, as some member sees them, once someone leads.
fn current_leader(api: &Api) -> (String, u64) {
    wait_for(Duration::from_secs(60), "a leader", || {
        let v = api.get_any("/v1/cluster")?;
        Some((v["leader"].as_str()?.to_string(), v["epoch"].as_u64()?))
    })
}

/// Kills the leader, times the failover, and restarts the dead server under its name.
fn kill_leader(cluster: &mut Cluster, api: &Api, started: Instant) -> Failover {
    let (leader, epoch) = current_leader(api);
    let i = NAMES.iter().position(|n| *n == leader).expect("a member");
    let at_ms = (drover_server::clock::now_micros() / 1000) as u64;
    let killed = Instant::now();
    cluster.kill9(i);
    let others: Vec<&String> = (0..NAMES.len())
        .filter(|j| *j != i)
        .map(|j| &cluster.urls[j])
        .collect();
    let deadline = killed + Duration::from_secs(30);
    let mut took = None;
    while took.is_none() && Instant::now() < deadline {
        let new = others.iter().find_map(|url| {
            let v = api.get_from(url, "/v1/cluster")?;
            let l = v["leader"].as_str()?;
            (v["epoch"].as_u64()? > epoch && l != leader).then(|| l.to_string())
        });
        match new {
            Some(_) => took = Some(killed.elapsed()),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    println!(
        "history: +{:.1}s kill -9 leader {leader} (epoch {epoch}); a new leader after {took:?}",
        (killed - started).as_secs_f64()
    );
    cluster.start_member(i);
    let url = cluster.urls[i].clone();
    wait_for(
        Duration::from_secs(30),
        "the restarted server to rejoin",
        || {
            let v = api.get_from(&url, "/v1/cluster")?;
            v["leader"].as_str().map(|_| ())
        },
    );
    Failover {
        killed: leader,
        at_ms,
        took,
    }
}

fn create_schedules(api: &Api, log: &Path) {
    for (name, misfire) in SCHEDULES {
        let mut body = json!({
            "name": name,
            "cron": "* * * * * *",
            "task": { "queue": name, "argv": argv(log, 20, 0, name), "retries": 1 },
        });
        if misfire == Misfire::RunAll {
            body["misfire"] = json!("run_all");
            body["max_catch_up"] = json!(100);
        }
        let (status, v) = api.post("/v1/schedules", &body);
        assert!(
            status == 201 || status == 200,
            "schedule {name}: {status} {v}"
        );
    }
}

/// Every task of a queue: (id, idempotency key, argv tag).
fn list_queue(api: &Api, queue: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/tasks?queue={queue}&limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.get_any(&path).expect("a task listing");
        for t in page["tasks"].as_array().unwrap() {
            out.push((
                t["id"].as_str().unwrap().to_string(),
                t["idempotency_key"].as_str().map(str::to_string),
                t["spec"]["argv"][6].as_str().map(str::to_string),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn final_of(v: &Value) -> Final {
    Final {
        state: v["state"].as_str().unwrap_or("").to_string(),
        attempt: v["attempt"].as_u64().unwrap_or(0) as u32,
        attempts: v["attempts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| Attempt {
                attempt: a["attempt"].as_u64().unwrap_or(0) as u32,
                worker: a["worker"].as_str().unwrap_or("").to_string(),
                outcome: a["outcome"].as_str().map(str::to_string),
            })
            .collect(),
    }
}

/// Polls the tasks until each is terminal or `within` passes; returns their final records.
fn finals(api: &Api, ids: &BTreeSet<String>, within: Duration) -> HashMap<String, Final> {
    let deadline = Instant::now() + within;
    let mut done: HashMap<String, Final> = HashMap::new();
    let mut last: HashMap<String, Final> = HashMap::new();
    let mut pause = Duration::from_millis(100);
    loop {
        let pending: Vec<&String> = ids.iter().filter(|id| !done.contains_key(*id)).collect();
        for id in pending {
            if let Some(v) = api.get_any(&format!("/v1/tasks/{id}")) {
                let f = final_of(&v);
                if check::TERMINAL_STATES.contains(&f.state.as_str()) {
                    done.insert(id.clone(), f);
                } else {
                    last.insert(id.clone(), f);
                }
            }
        }
        if done.len() == ids.len() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    for (id, f) in last {
        done.entry(id).or_insert(f);
    }
    done
}

/// Reads the task commands' log once every start has its end, or after `within` (a killed
/// attempt never logs its end).
fn runs(log: &Path, within: Duration) -> (Vec<check::Run>, Vec<String>) {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let (runs, bad) = check::parse_runs(&text);
        if runs.iter().all(|r| r.end.is_some()) || Instant::now() > deadline {
            return (runs, bad);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn history_of_a_cluster_under_failovers() {
    let Some(base) = postgres_url() else { return };
    require_perl();
    let p = params();
    println!(
        "history: {} leader kill(s), {} worker kill(s), {} s of load, seed {}, {} workers",
        p.leader_kills, p.worker_kills, p.seconds, p.seed, p.workers
    );
    let schema = runtime().block_on(TempSchema::create(&base)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts.log");
    // The servers' connections carry a name of this run's, so they can all be ended.
    let app = format!("drover-history-{}", std::process::id());
    let mut cluster = Cluster::start(dir.path(), &schema.url_named(&app));
    let api = Api::new(cluster.urls.clone());
    let (first, _) = current_leader(&api);
    assert_eq!(first, "a");
    // Follow the leader first: it dies first, and the stream goes on on a standby (the
    // store's events, woken by the leader's commits).
    let follower = Follower::start(cluster.urls.clone(), 0);
    create_schedules(&api, &log);
    let mut workers = Workers::start(&api, cluster.urls.join(","), dir.path(), p.workers);

    let mut rng = Rng(p.seed);
    let plan = timeline(&p, &mut rng);
    let rec = Record::default();
    let started = Instant::now();
    let until = started + Duration::from_secs(p.seconds);
    let mut failovers = Vec::new();
    let mut worker_kills = Vec::new();
    std::thread::scope(|s| {
        for me in 0..SUBMITTERS {
            let (api, log, rec) = (&api, &log, &rec);
            s.spawn(move || submitter(api, log, me, p.seed, until, rec));
        }
        for (at, action) in &plan {
            let now = started.elapsed();
            if *at > now {
                // The kill's moment (the plan), not a synchronisation.
                std::thread::sleep(*at - now);
            }
            match action {
                Action::KillLeader => failovers.push(kill_leader(&mut cluster, &api, started)),
                Action::KillWorker(i) => {
                    let name = Workers::name(*i);
                    println!(
                        "history: +{:.1}s kill -9 worker {name}",
                        started.elapsed().as_secs_f64()
                    );
                    worker_kills.push((name, workers.kill_and_restart(&api, *i)));
                }
            }
        }
    });
    println!("history: load ended after {:?}", started.elapsed());
    for (name, _) in SCHEDULES {
        api.post(&format!("/v1/schedules/{name}/pause"), &json!({}));
    }

    let mut history = collect(&api, &cluster, &follower, &rec, &log, failovers);
    history.worker_kills = worker_kills;
    keep_record(dir.path(), &history);
    let report = check::check(&history);
    print_report(&p, &api, &follower, &rec, &report, started.elapsed());

    drop(workers);
    cluster.servers.iter_mut().for_each(|s| drop(s.take()));
    follower.join();
    drop_schema(schema, &app);
    if !report.violations.is_empty() {
        let kept = dir.keep();
        panic!(
            "{} violation(s); the run's logs are in {}:\n{}",
            report.violations.len(),
            kept.display(),
            report
                .violations
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Drops the run's schema once no connection of the servers is left: a killed server's
/// backend may still be finishing a statement, and `DROP SCHEMA` would wait on it (or
/// deadlock with it).
fn drop_schema(schema: TempSchema, app: &str) {
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.block_on(schema.terminate_connections(app)).unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "the servers' connections would not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(schema.drop_schema()).unwrap();
}

/// Waits for the run to settle and gathers the history.
fn collect(
    api: &Api,
    cluster: &Cluster,
    follower: &Follower,
    rec: &Record,
    log: &Path,
    failovers: Vec<Failover>,
) -> History {
    let mut acked = rec.acked.lock().unwrap().clone();
    let mut stored_keys = Vec::new();
    for (id, key, _) in list_queue(api, QUEUE) {
        stored_keys.push((key.unwrap_or_default(), id));
    }
    let unknown = rec.unknown_workflows.lock().unwrap().clone();
    for (id, _, tag) in list_queue(api, WF_QUEUE) {
        let tag = tag.unwrap_or_default();
        if unknown.iter().any(|w| tag.starts_with(&format!("{w}/"))) {
            acked.push(Acked {
                id: id.clone(),
                what: "workflow (answer lost)".into(),
            });
        }
        stored_keys.push((tag, id));
    }
    let mut schedules = Vec::new();
    for (name, misfire) in SCHEDULES {
        let task_ids: Vec<String> = list_queue(api, name).into_iter().map(|t| t.0).collect();
        acked.extend(task_ids.iter().map(|id| Acked {
            id: id.clone(),
            what: "cron".into(),
        }));
        schedules.push(Schedule {
            name: name.into(),
            misfire,
            task_ids,
        });
    }
    let ids: BTreeSet<String> = acked.iter().map(|a| a.id.clone()).collect();
    let finals = finals(api, &ids, Duration::from_secs(120));
    let (runs, bad) = runs(log, Duration::from_secs(10));
    assert!(
        bad.is_empty(),
        "lines of the attempts log that make no sense: {bad:?}"
    );
    let stored = stream::stored(&cluster.urls[0], 0).expect("the stored events");
    let last = stored.last().map_or(0, |e| e.seq);
    let deadline = Instant::now() + Duration::from_secs(20);
    while follower.last_seq() < last && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut live = follower.events();
    let cut = live.iter().position(|e| e.seq > last).unwrap_or(live.len());
    live.truncate(cut);
    History {
        acked,
        answers: rec.answers.lock().unwrap().clone(),
        stored_keys,
        live,
        stored,
        runs,
        finals,
        schedules,
        failovers,
        worker_kills: vec![],
        leader_lease: LEADER_LEASE,
    }
}

/// Leaves the events seen live and the tasks' final records beside the logs, for a look
/// after a failed run.
fn keep_record(dir: &Path, h: &History) {
    let events: String = h.live.iter().map(|e| format!("{}\n", e.raw)).collect();
    std::fs::write(dir.join("events.jsonl"), events).unwrap();
    let mut tasks: Vec<String> = h
        .finals
        .iter()
        .map(|(id, f)| format!("{id} {f:?}\n"))
        .collect();
    tasks.sort();
    std::fs::write(dir.join("tasks.txt"), tasks.concat()).unwrap();
}

fn print_report(
    p: &Params,
    api: &Api,
    follower: &Follower,
    rec: &Record,
    report: &check::Report,
    took: Duration,
) {
    println!(
        "\n==== history: {} s of load, seed {} ====",
        p.seconds, p.seed
    );
    for f in &report.figures {
        println!("  {f}");
    }
    println!("  submits' client: {}", api.stats.summary());
    let unknown = rec.unknown_workflows.lock().unwrap();
    let failed = rec.failed.lock().unwrap();
    println!(
        "  submits never answered: {} workflow(s) whose answer was lost (looked up in the \
         store), {} given up or refused{}",
        unknown.len(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {failed:?}")
        }
    );
    println!(
        "  event stream: {} reconnect(s){}",
        follower.reconnects(),
        match follower.problems() {
            v if v.is_empty() => String::new(),
            v => format!(", unreadable events: {v:?}"),
        }
    );
    println!(
        "  kills: {} of the leader, {} of a worker; the run took {took:?}",
        p.leader_kills, p.worker_kills
    );
    if report.violations.is_empty() {
        println!("  violations: none");
    } else {
        println!("  violations: {}", report.violations.len());
        for v in &report.violations {
            println!("    {v}");
        }
    }
}
