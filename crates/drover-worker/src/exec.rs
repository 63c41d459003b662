//! Runs one `ExecSpec` attempt as a child process: argv without a shell, in its own process
//! group, output streamed in bounded chunks, and the whole group killed on timeout, cancel,
//! shutdown, or once the task's main process has exited.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use drover_api::proto::Outcome;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sys::{self, Launch, Stage};

pub(crate) const STDOUT: u32 = 1;
pub(crate) const STDERR: u32 = 2;

/// Size of one read from a pipe, so the largest log chunk the executor produces.
const READ_CHUNK: usize = 32 << 10;
/// How long output may keep draining once the process group is gone (a descendant that left
/// the group could hold a pipe open forever).
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// What a task's process inherits from the worker's environment, besides `--pass-env`.
pub(crate) const BASE_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// Secret environment variables: their `Debug` shows names only.
#[derive(Clone, Default)]
pub(crate) struct SecretEnv(pub HashMap<String, String>);

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Everything needed to run one attempt, taken out of the assignment.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExecRequest {
    pub argv: Vec<String>,
    pub env: HashMap<String, String>,
    pub secret_env: SecretEnv,
    /// Names of the worker's own environment variables the task also gets (`--pass-env`).
    pub pass_env: Arc<[String]>,
    pub cwd: Option<String>,
    pub timeout: Option<Duration>,
    pub task_id: String,
    pub attempt: u32,
    pub idempotency_key: Option<String>,
    /// Per stream, per attempt.
    pub max_output_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExecEvent {
    /// The process was spawned; `pid` is also its process group id.
    Started { pid: u32 },
    /// A piece of output: `stream` is [`STDOUT`] or [`STDERR`].
    Output { stream: u32, data: Vec<u8> },
}

/// Why the agent stops a running attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// The server cancelled it.
    Cancel,
    /// The worker is shutting down and gives it back.
    Shutdown,
    /// Nobody wants its result any more (the server refused it, or the agent is gone).
    Abandon,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecResult {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// A handler's return value, as JSON text.
    pub result: Option<String>,
}

impl ExecResult {
    pub(crate) fn failed(error: String) -> Self {
        ExecResult {
            outcome: Outcome::Failed,
            exit_code: None,
            error: Some(error),
            result: None,
        }
    }
}

/// Receives the executor's events. Called from several tasks; must not block.
pub(crate) type Sink = Arc<dyn Fn(ExecEvent) + Send + Sync>;

/// Runs the attempt to its end and returns how it ended. Every `Output` event is delivered to
/// `sink` before this returns. If `kill` fires, or its sender is dropped, the process group is
/// killed at once.
pub(crate) async fn execute(
    req: ExecRequest,
    mut kill: oneshot::Receiver<Kill>,
    sink: Sink,
) -> ExecResult {
    let Some(program) = req.argv.first() else {
        return ExecResult::failed("exec spec has an empty argv".into());
    };
    let (mut child, pipes) = match spawn(&req, program) {
        Ok(started) => started,
        Err(e) => return ExecResult::failed(e),
    };
    let pid = child.pid as u32;
    // Kills the group if this future is dropped half-way (runtime shutting down).
    let group = GroupGuard(Pid::from_raw(child.pid));
    sink(ExecEvent::Started { pid });

    let mut pumps: Vec<JoinHandle<()>> = [(pipes.0, STDOUT), (pipes.1, STDERR)]
        .into_iter()
        .map(|(fd, stream)| pump(fd, stream, &req, &sink))
        .collect();

    let timeout = async {
        match req.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        status = child.wait() => from_status(status),
        () = timeout => {
            group.kill();
            let _ = child.wait().await;
            let ms = req.timeout.unwrap_or_default().as_millis();
            ExecResult {
                outcome: Outcome::TimedOut,
                exit_code: None,
                error: Some(format!("timed out after {ms}ms")),
                result: None,
            }
        }
        why = &mut kill => {
            group.kill();
            let _ = child.wait().await;
            killed(why.ok())
        }
    };
    // A task's process group does not outlive the task: background children it left behind go
    // too (and then the pipes they held reach end of file). Dropping the guard kills the group.
    drop(group);

    drain(&mut pumps, &req.task_id).await;
    result
}

/// Starts the attempt's process: its argv, environment and directory, in a process group of
/// its own that dies with the worker (`sys::spawn`), stdin from `/dev/null`, output piped.
///
/// The environment starts clean: `PATH`, `HOME` and `LANG` and the `--pass-env` names from
/// the worker's own, then the task's env and secret env, then the task's identity
/// (`DROVER_TASK_ID`, ...), which the spec cannot override. Nothing else of the worker's
/// (its token, its cloud credentials) reaches a task.
fn spawn(req: &ExecRequest, program: &str) -> Result<(Child, (OwnedFd, OwnedFd)), String> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: &OsStr, v: Option<&OsStr>| {
        env.retain(|(name, _)| name != k);
        if let Some(v) = v {
            env.push((k.to_os_string(), v.to_os_string()));
        }
    };
    for name in BASE_ENV
        .iter()
        .copied()
        .chain(req.pass_env.iter().map(String::as_str))
    {
        if let Some(v) = std::env::var_os(name) {
            set(name.as_ref(), Some(&v));
        }
    }
    for (k, v) in req.env.iter().chain(&req.secret_env.0) {
        set(k.as_ref(), Some(v.as_ref()));
    }
    set("DROVER_TASK_ID".as_ref(), Some(req.task_id.as_ref()));
    set(
        "DROVER_ATTEMPT".as_ref(),
        Some(req.attempt.to_string().as_ref()),
    );
    // Never leak the worker's own value (a worker started from inside a task).
    set(
        "DROVER_IDEMPOTENCY_KEY".as_ref(),
        req.idempotency_key.as_deref().map(OsStr::new),
    );
    let args: Vec<OsString> = req.argv[1..].iter().map(OsString::from).collect();
    let cwd = req.cwd.as_deref().map(OsStr::new);
    let launch = Launch::new(program.as_ref(), &args, &env, cwd)
        .map_err(|e| format!("failed to start {program:?}: {e}"))?;
    let started = sys::spawn(&launch).map_err(|(stage, e)| spawn_error(req, stage, &e))?;
    let pidfd = sys::pidfd(started.pid).ok();
    let child = Child {
        pid: started.pid,
        pidfd,
        waiter: None,
        reaped: false,
    };
    Ok((child, (started.stdout, started.stderr)))
}

/// The attempt's process until it is reaped: woken by its pidfd when it exits (without one, a
/// blocking thread waits for it). Dropped unreaped, it is killed and reaped.
struct Child {
    pid: i32,
    pidfd: Option<AsyncFd<OwnedFd>>,
    waiter: Option<JoinHandle<io::Result<ExitStatus>>>,
    reaped: bool,
}

impl Child {
    /// Waits for the process to exit and reaps it. Cancel-safe.
    async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            match &self.pidfd {
                Some(fd) => fd.readable().await?.clear_ready(),
                None => {
                    let pid = self.pid;
                    let waiter = self.waiter.get_or_insert_with(|| {
                        tokio::task::spawn_blocking(move || reap(pid, WaitPidFlag::empty()))
                    });
                    let status = waiter.await.map_err(io::Error::other);
                    self.waiter = None;
                    self.reaped = true;
                    return status?;
                }
            }
        }
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.waiter.is_some() {
            return Ok(None);
        }
        match reap(self.pid, WaitPidFlag::WNOHANG) {
            Ok(status) => {
                self.reaped = true;
                Ok(Some(status))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped || self.waiter.is_some() {
            return;
        }
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        if self.try_wait().ok().flatten().is_none() {
            let pid = self.pid;
            std::thread::spawn(move || reap(pid, WaitPidFlag::empty()));
        }
    }
}

/// `waitpid` for `pid`: its exit status, or `WouldBlock` while it runs (with `WNOHANG`).
fn reap(pid: i32, flags: WaitPidFlag) -> io::Result<ExitStatus> {
    match waitpid(Pid::from_raw(pid), Some(flags)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(ExitStatus::from_raw((code & 0xff) << 8)),
        Ok(WaitStatus::Signaled(_, sig, core)) => Ok(ExitStatus::from_raw(
            sig as i32 | if core { 0x80 } else { 0 },
        )),
        Ok(_) => Err(io::ErrorKind::WouldBlock.into()),
        Err(e) => Err(e.into()),
    }
}

/// The result of an attempt killed on request (`None`: the kill sender was dropped).
pub(crate) fn killed(why: Option<Kill>) -> ExecResult {
    let error = match why {
        Some(Kill::Cancel) => "cancelled",
        Some(Kill::Shutdown) => "worker shutting down",
        Some(Kill::Abandon) | None => "abandoned by the worker",
    };
    ExecResult {
        outcome: Outcome::Cancelled,
        exit_code: None,
        error: Some(error.into()),
        result: None,
    }
}

/// Waits up to `DRAIN_GRACE` for the output pumps to reach end of file, then stops them.
async fn drain(pumps: &mut [JoinHandle<()>], task_id: &str) {
    let all = futures::future::join_all(pumps.iter_mut());
    if tokio::time::timeout(DRAIN_GRACE, all).await.is_err() {
        tracing::debug!(%task_id, "output still open after the process group ended");
        for p in pumps.iter() {
            p.abort();
        }
    }
}

/// Kills a process group with SIGKILL: on `kill` (any number of times) and when dropped.
struct GroupGuard(Pid);

impl GroupGuard {
    fn kill(&self) {
        // ESRCH (group already empty) is the common, harmless case.
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_error(req: &ExecRequest, stage: Stage, e: &io::Error) -> String {
    if let Some(cwd) = &req.cwd {
        if let Err(ce) = std::fs::metadata(cwd).and_then(|m| {
            if m.is_dir() {
                Ok(())
            } else {
                Err(io::Error::other("not a directory"))
            }
        }) {
            return format!("cannot use working directory {cwd:?}: {ce}");
        }
        if stage == Stage::Chdir {
            return format!("cannot use working directory {cwd:?}: {e}");
        }
    }
    format!("failed to start {:?}: {e}", req.argv[0])
}

fn from_status(status: io::Result<ExitStatus>) -> ExecResult {
    let status = match status {
        Ok(s) => s,
        Err(e) => return ExecResult::failed(format!("waiting for the process failed: {e}")),
    };
    if let Some(code) = status.code() {
        ExecResult {
            outcome: if code == 0 {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            },
            exit_code: Some(code),
            error: None,
            result: None,
        }
    } else if let Some(sig) = status.signal() {
        ExecResult {
            outcome: Outcome::Failed,
            exit_code: Some(128 + sig),
            error: Some(format!("killed by signal {sig}")),
            result: None,
        }
    } else {
        ExecResult::failed(format!("process ended with {status}"))
    }
}

/// Forwards one pipe to the sink until end of file: at most `max_output_bytes`, then one marker
/// line, then it keeps reading (and discarding) so the process never blocks on a full pipe.
fn pump(fd: OwnedFd, stream: u32, req: &ExecRequest, sink: &Sink) -> JoinHandle<()> {
    let limit = req.max_output_bytes;
    let sink = sink.clone();
    tokio::spawn(async move {
        let Ok(mut pipe) = pipe::Receiver::from_owned_fd(fd) else {
            return;
        };
        let mut buf = vec![0u8; READ_CHUNK];
        let mut sent = 0usize;
        let mut truncated = false;
        let mut at_line_start = true;
        loop {
            let n = match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if truncated {
                continue;
            }
            let room = limit - sent;
            let take = n.min(room);
            if take > 0 {
                sink(ExecEvent::Output {
                    stream,
                    data: buf[..take].to_vec(),
                });
                sent += take;
                at_line_start = buf[take - 1] == b'\n';
            }
            if n > room {
                truncated = true;
                let name = if stream == STDERR { "stderr" } else { "stdout" };
                let sep = if at_line_start { "" } else { "\n" };
                let marker = format!("{sep}[drover: {name} truncated after {limit} bytes]\n");
                sink(ExecEvent::Output {
                    stream,
                    data: marker.into_bytes(),
                });
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::sync::mpsc;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(20);

    fn req(argv: &[&str]) -> ExecRequest {
        ExecRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            task_id: "0190a1b2-task".into(),
            attempt: 3,
            max_output_bytes: 1 << 20,
            ..Default::default()
        }
    }

    fn sink() -> (Sink, mpsc::UnboundedReceiver<ExecEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(move |e| {
                let _ = tx.send(e);
            }),
            rx,
        )
    }

    /// Runs to the end (the kill sender stays alive) and returns the result and every event.
    async fn run(req: ExecRequest) -> (ExecResult, Vec<ExecEvent>) {
        let (sink, mut rx) = sink();
        let (_keep, kill) = oneshot::channel();
        let result = tokio::time::timeout(LIMIT, execute(req, kill, sink))
            .await
            .expect("the process did not end");
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (result, events)
    }

    fn output(events: &[ExecEvent], which: u32) -> Vec<u8> {
        events
            .iter()
            .filter_map(|e| match e {
                ExecEvent::Output { stream, data } if *stream == which => Some(data.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }

    fn stdout(events: &[ExecEvent]) -> String {
        String::from_utf8(output(events, STDOUT)).unwrap()
    }

    fn succeeded() -> ExecResult {
        ExecResult {
            outcome: Outcome::Succeeded,
            exit_code: Some(0),
            error: None,
            result: None,
        }
    }

    /// Whether a process is gone: no such pid, or a zombie nobody has reaped yet.
    fn gone(pid: i32) -> bool {
        if nix::sys::signal::kill(Pid::from_raw(pid), None).is_err() {
            return true;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    async fn wait_gone(pids: &[i32]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pids.iter().all(|&p| gone(p)) {
            assert!(Instant::now() < deadline, "still alive: {pids:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn started_pid(events: &[ExecEvent]) -> i32 {
        events
            .iter()
            .find_map(|e| match e {
                ExecEvent::Started { pid } => Some(*pid as i32),
                _ => None,
            })
            .expect("no started event")
    }

    #[tokio::test]
    async fn argv_reaches_the_program_byte_for_byte() {
        let args = [
            "two words",
            "it's \"quoted\"",
            "line one\nline two",
            "$HOME",
            "",
            "ünïcødé ✓ 日本語",
            "*",
            "a;b|c && d > /dev/null",
            "back\\slash \\n",
            "%d %s",
            "-n",
            "  padded  ",
        ];
        let mut argv = vec!["printf", "[%s]\\n"];
        argv.extend(args);
        let (result, events) = run(req(&argv)).await;
        assert_eq!(result, succeeded());
        let want: String = args.iter().map(|a| format!("[{a}]\n")).collect();
        assert_eq!(stdout(&events), want);
        assert!(matches!(events[0], ExecEvent::Started { .. }));
    }

    #[tokio::test]
    async fn environment_has_the_task_identity_and_the_spec_env() {
        let script = r#"printf '%s|%s|%s|%s|%s' "$DROVER_TASK_ID" "$DROVER_ATTEMPT" "${DROVER_IDEMPOTENCY_KEY-unset}" "$GREETING" "${PATH:+inherited}""#;
        let mut r = req(&["sh", "-c", script]);
        r.env.insert("GREETING".into(), "hello $HOME 'x'".into());
        // The task's identity cannot be overridden by the spec.
        r.env.insert("DROVER_TASK_ID".into(), "forged".into());
        r.idempotency_key = Some("order-42".into());
        let (result, events) = run(r.clone()).await;
        assert_eq!(result, succeeded());
        assert_eq!(
            stdout(&events),
            "0190a1b2-task|3|order-42|hello $HOME 'x'|inherited"
        );

        r.idempotency_key = None;
        let (_, events) = run(r).await;
        assert_eq!(
            stdout(&events),
            "0190a1b2-task|3|unset|hello $HOME 'x'|inherited"
        );
    }

    #[tokio::test]
    async fn environment_is_clean_but_for_the_base_the_passed_and_the_secret() {
        // Cargo sets CARGO_MANIFEST_DIR in the test process: the worker's own environment.
        let ours = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let script = r#"printf '%s|%s|%s|%s' "${CARGO_MANIFEST_DIR-unset}" "$TOKEN" "${PATH:+path}" "$(env | grep -c '^CARGO_')""#;
        let mut r = req(&["sh", "-c", script]);
        r.secret_env.0.insert("TOKEN".into(), "s3cr3t".into());
        assert!(
            !format!("{r:?}").contains("s3cr3t"),
            "Debug shows no secret"
        );
        let (result, events) = run(r.clone()).await;
        assert_eq!(result, succeeded());
        assert_eq!(stdout(&events), "unset|s3cr3t|path|0");

        r.pass_env = vec!["CARGO_MANIFEST_DIR".to_string()].into();
        let (_, events) = run(r).await;
        assert_eq!(stdout(&events), format!("{ours}|s3cr3t|path|1"));
    }

    #[tokio::test]
    async fn cwd_is_used_and_a_missing_one_is_a_clear_failure() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = req(&["pwd"]);
        r.cwd = Some(dir.path().to_str().unwrap().into());
        let (result, events) = run(r).await;
        assert_eq!(result, succeeded());
        let want = dir.path().canonicalize().unwrap();
        assert_eq!(stdout(&events).trim_end(), want.to_str().unwrap());

        let mut r = req(&["pwd"]);
        r.cwd = Some("/nonexistent/drover-cwd".into());
        let (result, events) = run(r).await;
        assert_eq!(result.outcome, Outcome::Failed);
        assert_eq!(result.exit_code, None);
        let error = result.error.unwrap();
        assert!(
            error.contains("working directory") && error.contains("/nonexistent/drover-cwd"),
            "{error}"
        );
        assert!(events.is_empty());
    }

    #[tokio::test]
    async fn exit_codes_and_signals_map_to_outcomes() {
        assert_eq!(run(req(&["true"])).await.0, succeeded());
        assert_eq!(
            run(req(&["sh", "-c", "exit 3"])).await.0,
            ExecResult {
                outcome: Outcome::Failed,
                exit_code: Some(3),
                error: None,
                result: None,
            }
        );
        assert_eq!(
            run(req(&["sh", "-c", "kill -TERM $$"])).await.0,
            ExecResult {
                outcome: Outcome::Failed,
                exit_code: Some(143),
                error: Some("killed by signal 15".into()),
                result: None,
            }
        );
        assert_eq!(
            run(req(&["sh", "-c", "kill -KILL $$"])).await.0.exit_code,
            Some(137)
        );
    }

    #[tokio::test]
    async fn spawn_failures_say_what_failed() {
        let (result, events) = run(req(&["/nonexistent/drover-no-such-program", "x"])).await;
        assert_eq!(result.outcome, Outcome::Failed);
        assert_eq!(result.exit_code, None);
        let error = result.error.unwrap();
        assert!(
            error.contains("/nonexistent/drover-no-such-program") && error.contains("No such file"),
            "{error}"
        );
        assert!(events.is_empty(), "no started event for a failed spawn");

        let (result, _) = run(req(&[])).await;
        assert_eq!(result.outcome, Outcome::Failed);
        assert!(result.error.unwrap().contains("empty argv"));

        let file = tempfile::NamedTempFile::new().unwrap();
        let (result, _) = run(req(&[file.path().to_str().unwrap()])).await;
        assert_eq!(result.outcome, Outcome::Failed);
        assert!(result.error.unwrap().contains("Permission denied"));
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let started = Instant::now();
        let mut r = req(&["sh", "-c", "sleep 30 & echo $!; sleep 30 & echo $!; wait"]);
        r.timeout = Some(Duration::from_millis(300));
        let (result, events) = run(r).await;
        assert_eq!(
            result,
            ExecResult {
                outcome: Outcome::TimedOut,
                exit_code: None,
                error: Some("timed out after 300ms".into()),
                result: None,
            }
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let mut pids: Vec<i32> = stdout(&events)
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2, "{events:?}");
        pids.push(started_pid(&events));
        wait_gone(&pids).await;
    }

    #[tokio::test]
    async fn background_children_do_not_outlive_the_task() {
        let started = Instant::now();
        let (result, events) = run(req(&["sh", "-c", "sleep 30 & echo $!"])).await;
        assert_eq!(result, succeeded());
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = stdout(&events).trim().parse().unwrap();
        wait_gone(&[pid]).await;
    }

    #[tokio::test]
    async fn output_streams_while_running_and_cancel_kills_at_once() {
        let (sink, mut rx) = sink();
        let (kill_tx, kill) = oneshot::channel();
        let task = tokio::spawn(execute(
            req(&["sh", "-c", "echo early; echo err >&2; sleep 30 & wait"]),
            kill,
            sink,
        ));
        let mut events = Vec::new();
        let deadline = Instant::now() + LIMIT;
        while output(&events, STDOUT) != b"early\n" || output(&events, STDERR) != b"err\n" {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = tokio::time::timeout(left, rx.recv())
                .await
                .expect("no output");
            events.push(e.unwrap());
        }
        let pid = started_pid(&events);
        let cancelled = Instant::now();
        kill_tx.send(Kill::Cancel).unwrap();
        let result = tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
        assert!(cancelled.elapsed() < Duration::from_secs(1));
        assert_eq!(
            result,
            ExecResult {
                outcome: Outcome::Cancelled,
                exit_code: None,
                error: Some("cancelled".into()),
                result: None,
            }
        );
        wait_gone(&[pid]).await;
    }

    #[tokio::test]
    async fn a_dropped_kill_sender_abandons_the_attempt() {
        let (sink, _rx) = sink();
        let (kill_tx, kill) = oneshot::channel::<Kill>();
        drop(kill_tx);
        let result = tokio::time::timeout(LIMIT, execute(req(&["sleep", "30"]), kill, sink))
            .await
            .unwrap();
        assert_eq!(result.outcome, Outcome::Cancelled);
        assert_eq!(result.error.as_deref(), Some("abandoned by the worker"));
    }

    #[tokio::test]
    async fn output_is_truncated_per_stream_with_one_marker() {
        let mut r = req(&[
            "sh",
            "-c",
            "head -c 5000 /dev/zero | tr '\\0' a; head -c 3000 /dev/zero | tr '\\0' b >&2; \
             head -c 20000000 /dev/zero",
        ]);
        r.max_output_bytes = 1000;
        let (result, events) = run(r).await;
        assert_eq!(result, succeeded());
        let want_out = format!(
            "{}\n[drover: stdout truncated after 1000 bytes]\n",
            "a".repeat(1000)
        );
        let want_err = format!(
            "{}\n[drover: stderr truncated after 1000 bytes]\n",
            "b".repeat(1000)
        );
        assert_eq!(stdout(&events), want_out);
        assert_eq!(
            String::from_utf8(output(&events, STDERR)).unwrap(),
            want_err
        );
    }

    #[tokio::test]
    async fn the_last_output_before_exit_is_never_lost() {
        // The process exits right after writing; its output must all arrive, every time,
        // including a last line without a newline, on both streams.
        for i in 0..50 {
            let script = format!(
                "i=0; while [ $i -lt 20 ]; do echo line$i; i=$((i+1)); done; \
                 printf 'err{i}' >&2; printf 'last{i}'"
            );
            let (result, events) = run(req(&["sh", "-c", &script])).await;
            assert_eq!(result, succeeded());
            let want: String = (0..20).map(|n| format!("line{n}\n")).collect();
            assert_eq!(stdout(&events), format!("{want}last{i}"));
            assert_eq!(output(&events, STDERR), format!("err{i}").into_bytes());
        }
    }

    #[tokio::test]
    async fn a_descendant_that_left_the_group_is_read_until_the_grace_ends() {
        // A grandchild in a session of its own outlives the task's group kill and keeps the
        // pipes open: what it writes within the drain grace is captured; the attempt ends at
        // most a grace after its main process, with its exit code.
        let started = Instant::now();
        let (result, events) = run(req(&[
            "sh",
            "-c",
            "setsid sh -c 'echo $$; sleep 0.3; echo from-grandchild; exec sleep 30' & \
             sleep 0.1; echo parent; exit 3",
        ]))
        .await;
        let out = stdout(&events);
        let lines: Vec<&str> = out.lines().collect();
        let _ = kill(Pid::from_raw(lines[0].parse().unwrap()), Signal::SIGKILL);
        assert_eq!(result.exit_code, Some(3));
        assert_eq!(lines[1..], ["parent", "from-grandchild"]);
        assert!(started.elapsed() < DRAIN_GRACE + Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_grandchild_in_the_group_goes_with_the_task() {
        // The main process exits first; its background child (same group) is killed with the
        // group, so its later output never comes, and the attempt does not wait for it.
        let started = Instant::now();
        let (result, events) =
            run(req(&["sh", "-c", "(sleep 2; echo too-late) & echo parent"])).await;
        assert_eq!(result, succeeded());
        assert_eq!(stdout(&events), "parent\n");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_process_dies_with_the_thread_that_started_it() {
        // PR_SET_PDEATHSIG: the worker never reaps or kills this one; the kernel does when
        // the starting thread ends.
        let launch = Launch::new("sleep".as_ref(), &["30".into()], &[path_env()], None).unwrap();
        let pid = std::thread::spawn(move || {
            let s = sys::spawn(&launch).map_err(|(_, e)| e).unwrap();
            s.pid
        })
        .join()
        .unwrap();
        let status = reap(pid, WaitPidFlag::empty()).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    fn path_env() -> (OsString, OsString) {
        ("PATH".into(), std::env::var_os("PATH").unwrap())
    }

    #[test]
    fn programs_are_found_as_execvp_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("no-shebang");
        std::fs::write(&script, "echo ran by sh\n").unwrap();
        let mut perms = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&script, perms).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // In PATH (an empty entry is the working directory), without a `#!` line: run by sh.
        let mut r = req(&["no-shebang"]);
        r.env.insert("PATH".into(), "/nonexistent:".into());
        r.cwd = Some(dir.path().to_str().unwrap().into());
        let (result, events) = rt.block_on(run(r));
        assert_eq!(result, succeeded());
        assert_eq!(stdout(&events), "ran by sh\n");
        // Not in PATH at all.
        let mut r = req(&["no-shebang"]);
        r.env.insert("PATH".into(), "/nonexistent".into());
        let (result, _) = rt.block_on(run(r));
        assert!(result.error.unwrap().contains("No such file"));
    }

    #[tokio::test]
    async fn output_of_exactly_the_limit_is_not_marked() {
        let mut r = req(&["printf", "abcd\n"]);
        r.max_output_bytes = 5;
        let (_, events) = run(r).await;
        assert_eq!(stdout(&events), "abcd\n");
    }
}
