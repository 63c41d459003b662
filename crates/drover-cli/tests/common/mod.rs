//! Test harness: real `drover` processes on ephemeral loopback ports, polled with deadlines.
//! Each test ends only the processes it started, by pid.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_drover");

/// The admin token of every server the harness starts: written to the data dir's
/// `admin.token` before the first start, which the server adopts (authentication stays on).
pub const ADMIN_TOKEN: &str =
    "drover_7e577e577e577e577e577e577e577e577e577e577e577e577e577e577e577e57";

/// `Bearer ADMIN_TOKEN`.
pub fn bearer() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

/// Puts the harness's admin token where a server on `data` finds it at its first start.
pub fn provide_admin_token(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let file = data.join("admin.token");
    if !file.exists() {
        std::fs::write(&file, format!("{ADMIN_TOKEN}\n")).unwrap();
    }
}

/// A credentials file of the test run, so no test touches the user's own.
pub fn credentials_file() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("drover-test-credentials.json")
}

/// A `drover` command with the harness's token and credentials file.
pub fn drover() -> Command {
    let mut c = Command::new(BIN);
    c.env("DROVER_TOKEN", ADMIN_TOKEN)
        .env("DROVER_CREDENTIALS", credentials_file());
    c
}

/// A child process killed (by its pid) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    pub fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free loopback port (bound then released) for a server that must come back on the same one.
pub fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Starts a process and waits for a stdout line containing `marker`; returns the line.
pub fn spawn_until(name: &str, args: &[&str], marker: &str) -> (Proc, String) {
    spawn_until_to(name, args, marker, Stdio::inherit())
}

/// `spawn_until` with the process's stderr sent to `stderr` (e.g. a file).
pub fn spawn_until_to(name: &str, args: &[&str], marker: &str, stderr: Stdio) -> (Proc, String) {
    let mut child = drover()
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn drover");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_string();
    std::thread::spawn(move || {
        let mut found = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !found && line.contains(&wanted) {
                found = true;
                let _ = tx.send(line.clone());
            }
        }
    });
    let proc = Proc {
        child,
        name: name.into(),
    };
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{name} did not print '{marker}' within 30s"));
    (proc, line)
}

pub struct Server {
    pub proc: Proc,
    pub url: String,
    pub addr: String,
    pub data: PathBuf,
}

/// Short lease settings so expiry-driven tests finish quickly.
pub const LEASE: &str = "2s";
pub const HEARTBEAT: &str = "200ms";
pub const GRACE: &str = "4s";

pub fn start_server(data: &Path, addr: &str) -> Server {
    start_server_with(data, addr, &[])
}

/// `start_server` with extra `drover server` flags.
pub fn start_server_with(data: &Path, addr: &str, extra: &[&str]) -> Server {
    start_server_to(data, addr, extra, Stdio::inherit())
}

/// `start_server_with`, the server's log (stderr) going to `stderr`.
pub fn start_server_to(data: &Path, addr: &str, extra: &[&str], stderr: Stdio) -> Server {
    let store = format!("sqlite://{}", data.join("drover.db").display());
    start_server_on_to(data, addr, &store, extra, stderr)
}

/// A server on the store at `store` (a URL), with its own files in `data`.
pub fn start_server_on(data: &Path, addr: &str, store: &str, extra: &[&str]) -> Server {
    start_server_on_to(data, addr, store, extra, Stdio::inherit())
}

/// `start_server_on`, the server's log (stderr) going to `stderr`.
pub fn start_server_on_to(
    data: &Path,
    addr: &str,
    store: &str,
    extra: &[&str],
    stderr: Stdio,
) -> Server {
    provide_admin_token(data);
    let data_dir = data.display().to_string();
    let mut args = vec![
        "server",
        "--listen",
        addr,
        "--store",
        store,
        "--data-dir",
        &data_dir,
        "--lease",
        LEASE,
        "--heartbeat",
        HEARTBEAT,
        "--restart-grace",
        GRACE,
    ];
    args.extend_from_slice(extra);
    let (proc, line) = spawn_until_to("server", &args, "listening on", stderr);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("url in the listening line")
        .to_string();
    Server {
        addr: url.trim_start_matches("http://").to_string(),
        proc,
        url,
        data: data.to_path_buf(),
    }
}

pub fn start_worker(url: &str, name: &str, slots: u32, extra: &[&str]) -> Proc {
    let slots = slots.to_string();
    let mut args = vec!["worker", "--server", url, "--name", name, "--slots", &slots];
    args.extend_from_slice(extra);
    let mut child = drover()
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker");
    let _ = child.stdin.take();
    let proc = Proc {
        child,
        name: name.into(),
    };
    wait_for(
        Duration::from_secs(30),
        &format!("worker {name} to register"),
        || {
            let ws = cli_json(url, &["workers"]);
            ws["workers"]
                .as_array()
                // Listed and not `lost` (a worker of the same name that went away).
                .is_some_and(|a| a.iter().any(|w| w["name"] == name && w["state"] != "lost"))
                .then_some(())
        },
    );
    proc
}

/// Runs the CLI against a server.
pub fn cli(url: &str, args: &[&str]) -> Output {
    drover()
        .args(args)
        .env("DROVER_SERVER", url)
        .stdin(Stdio::null())
        .output()
        .expect("run drover")
}

/// Runs the CLI with `-o json` and parses its stdout; panics with stderr on failure.
pub fn cli_json(url: &str, args: &[&str]) -> Value {
    // Before the first flag (so it never lands in a task's argv after `--`), or at the end.
    let mut a = args.to_vec();
    let at = a.iter().position(|x| x.starts_with('-')).unwrap_or(a.len());
    a.splice(at..at, ["-o", "json"]);
    let out = cli(url, &a);
    assert!(
        out.status.success(),
        "drover {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "drover {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub fn submit(url: &str, args: &[&str]) -> String {
    let mut a = vec!["submit"];
    a.extend_from_slice(args);
    let v = cli_json(url, &a);
    v["id"].as_str().expect("id").to_string()
}

pub fn task(url: &str, id: &str) -> Value {
    cli_json(url, &["status", id])
}

/// Polls `f` until it yields a value or the deadline passes.
pub fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

pub fn wait_state(url: &str, id: &str, states: &[&str], within: Duration) -> Value {
    wait_for(within, &format!("task {id} to reach {states:?}"), || {
        let t = task(url, id);
        states
            .contains(&t["state"].as_str().unwrap_or(""))
            .then_some(t)
    })
}

/// Raw HTTP for the REST tests, with the admin token.
pub fn http() -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, bearer().parse().unwrap());
    reqwest::blocking::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn stats(url: &str) -> Value {
    http()
        .get(format!("{url}/v1/stats"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

pub fn count(stats: &Value, state: &str) -> u64 {
    stats["tasks_by_state"][state].as_u64().unwrap_or(0)
}

pub fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// Submits tasks in one `POST /v1/tasks:batch`; returns their ids in order.
pub fn batch(url: &str, tasks: Vec<Value>) -> Vec<String> {
    let r: Value = http()
        .post(format!("{url}/v1/tasks:batch"))
        .json(&serde_json::json!({ "tasks": tasks }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    r["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("batch refused: {r}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// `GET /metrics` as text.
pub fn metrics_text(url: &str) -> String {
    http()
        .get(format!("{url}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// The value of one sample line (`name{labels} value`), 0 if absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.trim().parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
}

/// One request a webhook receiver got.
pub struct Delivery {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP receiver: answers 500 to the first `fail` requests, then 200.
pub fn webhook_receiver(fail: usize) -> (String, Arc<Mutex<Vec<Delivery>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let g = g.clone();
            std::thread::spawn(move || loop {
                // One request per iteration (keep-alive connections carry several).
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let mut headers = Vec::new();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let (k, v) = l.split_once(':').unwrap();
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let n = {
                    let mut g = g.lock().unwrap();
                    g.push(Delivery { headers, body });
                    g.len()
                };
                let status = if n <= fail {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nok");
                if conn.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            });
        }
    });
    (url, got)
}

/// The PostgreSQL URL of tests that need one (`DROVER_TEST_POSTGRES_URL`), or `None` after
/// saying the test is skipped.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var("DROVER_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        println!(
            "skipped: DROVER_TEST_POSTGRES_URL not set (e.g. \
             postgres://postgres@127.0.0.1:5432/test)"
        );
    }
    url
}

/// A runtime for the store's async test support (scratch schemas) in a plain test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
