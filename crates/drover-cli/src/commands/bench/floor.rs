//! The floor of `drover bench --exec`: how fast this machine runs `true` with no scheduler at
//! all, at the same concurrency as the run's workers × slots, measured in the same run.

use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Most processes the floor spawns (enough for a stable rate, short beside the run).
const MAX_SPAWNS: usize = 10_000;

/// Processes per second: `n` (at most `MAX_SPAWNS`) runs of `true` from `concurrency` threads,
/// each spawning one, reading its stdout and stderr to the end and waiting for it, then the
/// next.
pub fn spawn_true(n: usize, concurrency: usize) -> io::Result<f64> {
    let n = n.clamp(1, MAX_SPAWNS);
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..concurrency.clamp(1, n))
            .map(|_| {
                s.spawn(|| {
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        let out = Command::new("true")
                            .stdin(Stdio::null())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped())
                            .output()?;
                        if !out.status.success() {
                            return Err(io::Error::other(format!(
                                "`true` ended with {}",
                                out.status
                            )));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        threads.into_iter().try_for_each(|t| {
            t.join()
                .unwrap_or_else(|_| Err(io::Error::other("a spawner panicked")))
        })
    })?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_runs_true() {
        let rate = spawn_true(20, 4).unwrap();
        assert!(rate > 0.0);
    }
}
