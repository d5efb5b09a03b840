//! Exclusive `flock(2)` locks with a bounded wait: the embedded store's
//! writer queue and the CNI plugin's per-host lock.
//!
//! Contract:
//! * [`lock_exclusive`] returns a guard once this process holds the lock, or
//!   [`LockTimeout`] after `timeout`, naming the lock file and the processes
//!   that hold it (from `/proc/locks`), so a stuck or hostile holder is
//!   found instead of every writer hanging forever.
//! * The uncontended case is one non-blocking `flock`; a contended one
//!   blocks in the kernel (first come, first served as the kernel wakes
//!   waiters) on a helper thread that hands the guard back, and gives it up
//!   at once if the caller stopped waiting.
//! * Lock files are created `0600` by [`open_private_file`]: a lock anybody
//!   can open is a lock anybody can take.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Held until dropped (unlocks, closes the duplicate descriptor).
pub type LockGuard = Flock<File>;

/// A lock that was not had within the bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "timed out after {waited:?} waiting for the lock {path}{holders}",
    path = path.display(),
    holders = describe_holders(holders)
)]
pub struct LockTimeout {
    pub path: PathBuf,
    pub waited: Duration,
    /// Processes `/proc/locks` names as holding a lock on the file.
    pub holders: Vec<Holder>,
}

/// One process holding a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line (`/proc/<pid>/cmdline`), when readable.
    pub command: Option<String>,
}

fn describe_holders(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return String::new();
    }
    let list: Vec<String> = holders
        .iter()
        .map(|h| match &h.command {
            Some(c) => format!("pid {} ({c})", h.pid),
            None => format!("pid {}", h.pid),
        })
        .collect();
    format!(", held by {}", list.join(", "))
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Timeout(#[from] LockTimeout),
    #[error("cannot lock {path}: {errno}", path = path.display())]
    Flock { path: PathBuf, errno: Errno },
    #[error("cannot open the lock {path}: {source}", path = path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Opens (creating with mode `0600`, and its directory `0700` when missing)
/// a file only its owner may use, for reading and writing: a lock file, the
/// embedded store's database.
pub fn open_private_file(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Takes an exclusive lock on `file` (whose path is `path`, for messages),
/// waiting at most `timeout`. `file` itself is not consumed: the guard holds
/// a duplicate of its descriptor (same open file description, which is what
/// `flock` locks).
pub fn lock_exclusive(file: &File, path: &Path, timeout: Duration) -> Result<LockGuard, LockError> {
    let flock_err = |errno| LockError::Flock {
        path: path.to_path_buf(),
        errno,
    };
    let dup = file.try_clone().map_err(|source| LockError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let dup = match Flock::lock(dup, FlockArg::LockExclusiveNonblock) {
        Ok(guard) => return Ok(guard),
        Err((dup, Errno::EWOULDBLOCK)) => dup,
        Err((_, errno)) => return Err(flock_err(errno)),
    };
    // Contended: block in the kernel on a helper thread, so waiters are woken
    // as the holder lets go rather than polling, and the wait is bounded.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("flock-wait".into())
        .spawn(move || {
            // If the caller gave up, `send` fails and hands the guard back,
            // and dropping it releases the lock at once.
            let _ = tx.send(Flock::lock(dup, FlockArg::LockExclusive).map_err(|(_, e)| e));
        })
        .map_err(|source| LockError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(guard)) => Ok(guard),
        Ok(Err(errno)) => Err(flock_err(errno)),
        Err(_) => Err(LockTimeout {
            path: path.to_path_buf(),
            waited: timeout,
            holders: holders_of(file),
        }
        .into()),
    }
}

/// The processes `/proc/locks` lists with a lock on `file`'s inode, other
/// than waiters (`->` lines) and this process.
pub fn holders_of(file: &File) -> Vec<Holder> {
    let Ok(meta) = file.metadata() else {
        return Vec::new();
    };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    let own = std::process::id();
    let mut pids: Vec<u32> = parse_proc_locks(&locks, meta.dev(), meta.ino())
        .into_iter()
        .filter(|pid| *pid != own)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .map(|pid| Holder {
            pid,
            command: std::fs::read(format!("/proc/{pid}/cmdline"))
                .ok()
                .map(|raw| {
                    String::from_utf8_lossy(&raw)
                        .split('\0')
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .filter(|c| !c.is_empty()),
        })
        .collect()
}

/// Pids holding (not waiting for) a lock on device `dev`, inode `ino`.
/// Lines look like `1: FLOCK  ADVISORY  WRITE 1234 fd:01:56789 0 EOF`;
/// waiters have `->` after the number.
fn parse_proc_locks(text: &str, dev: u64, ino: u64) -> Vec<u32> {
    let major = nix::sys::stat::major(dev);
    let minor = nix::sys::stat::minor(dev);
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) == Some(&"->") {
                return None;
            }
            let pid: u32 = fields.get(4)?.parse().ok()?;
            let mut id = fields.get(5)?.split(':');
            let maj = u64::from_str_radix(id.next()?, 16).ok()?;
            let min = u64::from_str_radix(id.next()?, 16).ok()?;
            let inode: u64 = id.next()?.parse().ok()?;
            (maj == major && min == minor && inode == ino).then_some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_name_holders_not_waiters() {
        let dev = nix::sys::stat::makedev(0xfd, 0x01);
        let text = "1: FLOCK  ADVISORY  WRITE 1234 fd:01:56789 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 999 fd:01:56789 0 EOF\n\
                    2: POSIX  ADVISORY  READ 77 fd:01:11 0 EOF\n";
        assert_eq!(parse_proc_locks(text, dev, 56789), vec![1234]);
        assert_eq!(parse_proc_locks(text, dev, 11), vec![77]);
        assert!(parse_proc_locks(text, dev, 5).is_empty());
    }

    #[test]
    fn a_held_lock_times_out_naming_the_file_and_a_free_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("x.lock");
        let file = open_private_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);

        // A second open file description contends like another process would.
        let other = open_private_file(&path).unwrap();
        let held = lock_exclusive(&other, &path, Duration::from_secs(1)).unwrap();
        let err = lock_exclusive(&file, &path, Duration::from_millis(50)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("timed out"), "{text}");
        assert!(text.contains("x.lock"), "{text}");
        drop(held);
        // Released: the next attempt (and a waiter blocked in the kernel) get it.
        let again = lock_exclusive(&file, &path, Duration::from_secs(5)).unwrap();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let f = open_private_file(&path).unwrap();
                lock_exclusive(&f, &path, Duration::from_secs(10)).map(drop)
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(again);
        waiter.join().unwrap().unwrap();
    }
}
