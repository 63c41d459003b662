//! One server per SQLite file: an exclusive advisory lock (`flock`) on `<database>.lock`,
//! which holds the holder's pid, taken before the store is opened and held for the server's
//! lifetime (the kernel releases it when the process ends, however it ends). A second server
//! on the same file refuses to start, naming the first, instead of writing beside it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: Flock<File>,
}

/// `<database>.lock`, next to the database.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl StoreLock {
    /// Takes the lock of the database at `db`, or says which process holds it.
    pub fn acquire(db: &Path) -> anyhow::Result<StoreLock> {
        let path = lock_path(db);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let pid = std::process::id();
                let written = lock
                    .set_len(0)
                    .and_then(|()| lock.rewind())
                    .and_then(|()| writeln!(lock, "{pid}"));
                written.with_context(|| format!("writing {}", path.display()))?;
                Ok(StoreLock { _file: lock })
            }
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "pid unknown".to_string(),
                    pid => format!("pid {pid}"),
                };
                anyhow::bail!(
                    "another drover server ({holder}) is using {}; stop it first or use another \
                     store (drover server --store, drover up --data-dir); the lock is {}",
                    db.display(),
                    path.display()
                )
            }
            Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("drover.db");
        let first = StoreLock::acquire(&db).unwrap();
        let lock = std::fs::read_to_string(dir.path().join("drover.db.lock")).unwrap();
        assert_eq!(lock.trim(), std::process::id().to_string());
        // flock locks belong to the open file, so a second open in this process conflicts too.
        let err = StoreLock::acquire(&db).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("drover.db"),
            "{err}"
        );
        drop(first);
        let _again = StoreLock::acquire(&db).unwrap();
    }
}
