//! The one place in the worker that needs `unsafe`: a `pre_exec` hook, which the standard
//! library marks unsafe because it runs in the forked child before `exec`, where only
//! async-signal-safe calls are allowed. Everything else in the crate stays safe.
#![allow(unsafe_code)]

use tokio::process::Command;

/// Makes the kernel SIGKILL the child if the worker dies (Linux `PR_SET_PDEATHSIG`), so a killed
/// worker leaves no orphaned task behind. Its process group is killed by the worker itself in
/// every other case (timeout, cancel, shutdown, normal exit).
///
/// Caveat of the mechanism: the signal fires when the *thread* that forked the child exits. The
/// worker spawns from tokio runtime threads, which live as long as the runtime does.
#[cfg(target_os = "linux")]
pub(crate) fn die_with_worker(cmd: &mut Command) {
    use nix::sys::prctl::set_pdeathsig;
    use nix::sys::signal::Signal;
    use nix::unistd::{getpid, getppid};

    let worker = getpid();
    // SAFETY: the closure runs between fork and exec. It makes two syscalls (prctl, getppid),
    // both async-signal-safe, takes no locks and allocates nothing (errors are raw OS errors).
    unsafe {
        cmd.pre_exec(move || {
            set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The worker may have died between fork and prctl; then no signal would ever come.
            if getppid() != worker {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_worker(_cmd: &mut Command) {}
