//! The one place in the worker that needs `unsafe`: starting an attempt's process. Everything
//! else in the crate stays safe.
//!
//! On Linux a task's process is started the way `posix_spawn` starts one, with
//! `clone(CLONE_VM | CLONE_VFORK)`: the child borrows the worker's memory until it calls
//! `execve`, so nothing of the worker's address space is copied. A `fork` (what the standard
//! library does as soon as a `pre_exec` hook is set) copies the page tables of the whole worker,
//! and of the server too when both run in one process (`drover up`, `drover bench`); measured
//! there, that copy and its undoing at `execve` were most of the CPU a `true` task cost. Unlike
//! `posix_spawn`, the child also asks the kernel for `SIGKILL` when the worker dies
//! (`PR_SET_PDEATHSIG`), so a killed worker leaves no orphaned task behind.
//!
//! Caveat of that mechanism: the signal fires when the *thread* that started the child exits.
//! The worker spawns from tokio runtime threads, which live as long as the runtime does.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// What to start: candidate paths (the `PATH` search, made before starting), argv, the
/// environment, the working directory.
pub(crate) struct Launch {
    paths: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: Option<CString>,
}

/// A started process: its pid (also its process group id) and the read ends of its stdout
/// and stderr. It is the caller's to reap.
pub(crate) struct Spawned {
    pub pid: i32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Which step failed in the child before `execve` succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Setup,
    Chdir,
    Exec,
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        )
    })
}

impl Launch {
    /// `program` is looked up in `PATH` of `env` (the child's environment, `/bin:/usr/bin`
    /// without one) unless it contains a `/`, as `execvp` would in the child.
    pub(crate) fn new(
        program: &OsStr,
        args: &[OsString],
        env: &[(OsString, OsString)],
        cwd: Option<&OsStr>,
    ) -> io::Result<Launch> {
        let path_var = env
            .iter()
            .rev()
            .find(|(k, _)| k.as_bytes() == b"PATH")
            .map(|(_, v)| v.as_bytes().to_vec());
        let paths = if program.as_bytes().contains(&b'/') {
            vec![cstring(program)?]
        } else {
            let dirs = path_var.unwrap_or_else(|| b"/bin:/usr/bin".to_vec());
            dirs.split(|&b| b == b':')
                .map(|dir| {
                    let mut p = if dir.is_empty() {
                        Vec::new()
                    } else {
                        let mut d = dir.to_vec();
                        d.push(b'/');
                        d
                    };
                    p.extend_from_slice(program.as_bytes());
                    cstring(OsStr::from_bytes(&p))
                })
                .collect::<io::Result<_>>()?
        };
        let argv = std::iter::once(program)
            .chain(args.iter().map(OsString::as_os_str))
            .map(cstring)
            .collect::<io::Result<_>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstring(OsStr::from_bytes(&kv))
            })
            .collect::<io::Result<_>>()?;
        let cwd = cwd.map(cstring).transpose()?;
        Ok(Launch {
            paths,
            argv,
            envp,
            cwd,
        })
    }
}

/// Pointers the child reads, and where it writes why it failed. Shared with the child
/// (`CLONE_VM`); the parent is suspended until the child has called `execve` or exited
/// (`CLONE_VFORK`), so no access overlaps.
struct ChildArgs {
    paths: Vec<*const libc::c_char>,
    argv: Vec<*const libc::c_char>,
    /// `["/bin/sh", <the path>, argv[1..]..]` for a file `execve` cannot run (`ENOEXEC`), as
    /// `execvp` does; the child fills in the path.
    sh_argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: *const libc::c_char,
    stdin: libc::c_int,
    stdout: libc::c_int,
    stderr: libc::c_int,
    worker: libc::pid_t,
    errno: libc::c_int,
    stage: Stage,
}

const SH: &std::ffi::CStr = c"/bin/sh";
const CHILD_STACK: usize = 64 << 10;

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just opened and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts `l` in a process group of its own, stdin from `/dev/null`, stdout and stderr into
/// pipes; the kernel kills it when the worker dies. On failure nothing is left running, and
/// the error says which step failed.
#[cfg(target_os = "linux")]
pub(crate) fn spawn(l: &Launch) -> Result<Spawned, (Stage, io::Error)> {
    use std::os::fd::AsRawFd;
    let setup = |e| (Stage::Setup, e);
    let null = std::fs::File::open("/dev/null").map_err(setup)?;
    let (out_r, out_w) = pipe().map_err(setup)?;
    let (err_r, err_w) = pipe().map_err(setup)?;
    let nul = || std::iter::once(std::ptr::null());
    let mut args = ChildArgs {
        paths: l.paths.iter().map(|p| p.as_ptr()).collect(),
        argv: l.argv.iter().map(|a| a.as_ptr()).chain(nul()).collect(),
        sh_argv: [SH.as_ptr(), std::ptr::null()]
            .into_iter()
            .chain(l.argv.iter().skip(1).map(|a| a.as_ptr()))
            .chain(nul())
            .collect(),
        envp: l.envp.iter().map(|e| e.as_ptr()).chain(nul()).collect(),
        cwd: l.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        stdin: null.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        // SAFETY: getpid has no preconditions.
        worker: unsafe { libc::getpid() },
        errno: 0,
        stage: Stage::Exec,
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: the stack grows down from its end, 16-byte aligned; the buffer outlives the
    // child's use of it (CLONE_VFORK: clone returns once the child has exec'd or exited).
    // Every signal is blocked around the clone so that no handler of the worker runs in the
    // child before it has reset them (see `child`).
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK) as usize & !15;
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut args as *mut ChildArgs).cast(),
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(setup(clone_error));
        }
        pid
    };
    drop(stack);
    if args.errno != 0 {
        // The child exited without exec'ing: reap it.
        let mut status = 0;
        // SAFETY: our own child, already exited.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err((args.stage, io::Error::from_raw_os_error(args.errno)));
    }
    Ok(Spawned {
        pid,
        stdout: out_r,
        stderr: err_r,
    })
}

/// The child, between `clone` and `execve`. It shares the worker's memory, so it only makes
/// system calls (async-signal-safe, no locks, no allocation) and writes into its `ChildArgs`.
#[cfg(target_os = "linux")]
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` of `spawn`, alive and not accessed by the parent, which
    // is suspended until this child execs or exits. Only system calls follow.
    unsafe {
        let a = &mut *(arg as *mut ChildArgs);
        let fail = |a: &mut ChildArgs, stage: Stage| -> ! {
            a.stage = stage;
            a.errno = *libc::__errno_location();
            if a.errno == 0 {
                a.errno = libc::EINVAL;
            }
            libc::_exit(127)
        };
        // Handlers of the worker must not run here: default dispositions for every handled
        // signal, and SIGPIPE (which Rust ignores in the worker) back to its default, as the
        // standard library does; then no signal blocked.
        for sig in 1..libc::SIGRTMAX() {
            let mut sa: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut sa) != 0 {
                continue;
            }
            let handled = sa.sa_sigaction != libc::SIG_DFL && sa.sa_sigaction != libc::SIG_IGN;
            if handled || (sig == libc::SIGPIPE && sa.sa_sigaction == libc::SIG_IGN) {
                sa.sa_sigaction = libc::SIG_DFL;
                sa.sa_flags = 0;
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());

        if libc::setpgid(0, 0) != 0
            || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
        {
            fail(a, Stage::Setup);
        }
        // The worker may have died before the prctl; then no signal would ever come.
        if libc::getppid() != a.worker {
            *libc::__errno_location() = libc::ESRCH;
            fail(a, Stage::Setup);
        }
        if libc::dup2(a.stdin, 0) < 0 || libc::dup2(a.stdout, 1) < 0 || libc::dup2(a.stderr, 2) < 0
        {
            fail(a, Stage::Setup);
        }
        if !a.cwd.is_null() && libc::chdir(a.cwd) != 0 {
            fail(a, Stage::Chdir);
        }
        // execvp's search: on to the next directory past ENOENT, ENOTDIR and EACCES (reported
        // if nothing else ran); a file the kernel cannot run directly goes to /bin/sh.
        let mut denied = false;
        for i in 0..a.paths.len() {
            let path = a.paths[i];
            libc::execve(path, a.argv.as_ptr(), a.envp.as_ptr());
            match *libc::__errno_location() {
                libc::ENOEXEC => {
                    a.sh_argv[1] = path;
                    libc::execve(SH.as_ptr(), a.sh_argv.as_ptr(), a.envp.as_ptr());
                    fail(a, Stage::Exec);
                }
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => fail(a, Stage::Exec),
            }
        }
        if denied {
            *libc::__errno_location() = libc::EACCES;
        }
        fail(a, Stage::Exec)
    }
}

/// Elsewhere: the standard library's spawn (no parent-death signal).
#[cfg(not(target_os = "linux"))]
pub(crate) fn spawn(l: &Launch) -> Result<Spawned, (Stage, io::Error)> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let os = |c: &CString| OsStr::from_bytes(c.as_bytes()).to_os_string();
    let mut cmd = Command::new(os(&l.argv[0]));
    cmd.args(l.argv[1..].iter().map(os)).env_clear();
    for kv in &l.envp {
        if let Some((k, v)) = kv.as_bytes().split_once(|&b| b == b'=') {
            cmd.env(OsStr::from_bytes(k), OsStr::from_bytes(v));
        }
    }
    if let Some(cwd) = &l.cwd {
        cmd.current_dir(os(cwd));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| (Stage::Exec, e))?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err((Stage::Setup, io::Error::other("no pipes")));
    };
    Ok(Spawned {
        pid: child.id() as i32,
        stdout: out.into(),
        stderr: err.into(),
    })
}

/// A descriptor that becomes readable when `pid` exits (Linux 5.3 and later), registered
/// with the runtime.
#[cfg(target_os = "linux")]
pub(crate) fn pidfd(pid: i32) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: a plain system call; on success the descriptor is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the `OwnedFd` keeps the descriptor open, and the same, for as long as the
    // `AsyncFd` owns it.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn pidfd(_pid: i32) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}
