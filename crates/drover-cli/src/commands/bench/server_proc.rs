//! A `drover server` process of this binary for the benchmarks that read the server's own CPU
//! time and memory from `/proc/PID` (`fleet.rs`, `queued.rs`): SQLite in a data directory the
//! bench owns, so that a second process can start on the same store (a restart).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The data directory of a bench's server, removed when dropped.
pub struct DataDir(tempfile::TempDir);

impl DataDir {
    pub fn new(prefix: &str) -> anyhow::Result<DataDir> {
        Ok(DataDir(tempfile::Builder::new().prefix(prefix).tempdir()?))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A running server process.
pub struct ServerProc {
    child: tokio::process::Child,
    pub pid: i32,
    pub url: String,
    pub token: Option<String>,
    /// The fleet's own data directory (a restartable bench keeps its `DataDir` itself).
    _dir: Option<DataDir>,
}

impl ServerProc {
    /// A server on a fresh store of its own, taking `workers` connections.
    pub async fn start(workers: u32) -> anyhow::Result<ServerProc> {
        let dir = DataDir::new("drover-bench-fleet-")?;
        let mut s = Self::start_in(&dir, workers, &[]).await?;
        s._dir = Some(dir);
        Ok(s)
    }

    /// A server on the store in `dir` (created on first use), with `extra` arguments.
    pub async fn start_in(
        dir: &DataDir,
        workers: u32,
        extra: &[&str],
    ) -> anyhow::Result<ServerProc> {
        let dir = dir.path();
        let db = crate::commands::local::sqlite_url(&dir.join("drover.db"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))?;
        let exe = std::env::current_exe().context("locating this drover binary")?;
        let max_conns = (u64::from(workers) * 2 + 256).to_string();
        let mut child = tokio::process::Command::new(exe)
            .args(["server", "--listen", "127.0.0.1:0", "--store", &db])
            .arg("--data-dir")
            .arg(dir)
            .args(["--rate-limit", "0", "--max-connections", &max_conns])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting the server process")?;
        let pid = child.id().context("the server's pid")? as i32;
        let mut lines = BufReader::new(child.stdout.take().context("its stdout")?).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(l) = lines.next_line().await? {
                if let Some(u) = l.split_whitespace().find(|w| w.starts_with("http://")) {
                    return Ok(u.to_string());
                }
            }
            bail!(
                "the server exited; see {}",
                dir.join("server.log").display()
            )
        })
        .await
        .context("the server did not start within 30 s")??;
        // Keep reading its stdout so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let token = std::fs::read_to_string(dir.join("admin.token"))
            .ok()
            .map(|s| s.trim().to_string());
        Ok(ServerProc {
            child,
            pid,
            url,
            token,
            _dir: None,
        })
    }

    /// Kills it (SIGKILL: a crash, which the store is built to survive) and waits.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// RSS of a process, in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: i32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// CPU time of a process so far (user + system), from /proc/PID/stat.
pub fn cpu_time(pid: i32) -> anyhow::Result<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = s.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
        .filter(|t| *t > 0)
        .unwrap_or(100) as u64;
    Ok(Duration::from_secs_f64(ticks as f64 / per_sec as f64))
}
