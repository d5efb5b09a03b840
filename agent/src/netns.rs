//! Run code inside another network namespace.
//!
//! A netlink socket, a `/proc/sys/net` file and a raw socket all bind to the
//! network namespace of the *thread* that opens them. Switching the calling
//! thread would silently move every other task of a multi-threaded runtime
//! sharing it, so each call here spawns a dedicated OS thread, `setns(2)`s it
//! into the target namespace, runs the work on a current-thread tokio runtime
//! there, and lets the thread die with the namespace membership. The caller's
//! thread never changes namespace.
//!
//! Errors: opening the namespace file or `setns` failing (not root, not a
//! netns file) is a [`NetnsError`]; a panic inside the work is re-raised on
//! the caller's thread.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

/// Failure to enter a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setns into {path} failed: {source}")]
    Setns { path: PathBuf, source: nix::Error },
    #[error("cannot build a tokio runtime in the namespace thread: {0}")]
    Runtime(std::io::Error),
    #[error("namespace thread vanished without a result")]
    ThreadLost,
}

/// Path of a namespace created by `ip netns add <name>`.
pub fn named_netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

fn enter(path: &Path) -> Result<(), NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_owned(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Setns {
        path: path.to_owned(),
        source,
    })
}

/// Run the future built by `make` inside the network namespace at `netns`,
/// blocking the calling thread until it completes.
///
/// `make` runs on the namespace thread, so netlink connections it opens (e.g.
/// [`crate::netlink::Netlink::connect`]) act in `netns`.
pub fn block_on_in_netns<F, Fut, T>(netns: &Path, make: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let path = netns.to_owned();
    let worker = std::thread::Builder::new()
        .name("brindle-netns".into())
        .spawn(move || -> Result<T, NetnsError> {
            enter(&path)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(NetnsError::Runtime)?;
            Ok(runtime.block_on(make()))
        })
        .map_err(NetnsError::Runtime)?;
    match worker.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Async form of [`block_on_in_netns`]: the caller's task awaits while the
/// namespace thread works, without blocking the caller's runtime.
pub async fn in_netns<F, Fut, T>(netns: &Path, make: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let path = netns.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("brindle-netns".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                block_on_in_netns(&path, make)
            }));
            let _ = tx.send(result);
        })
        .map_err(NetnsError::Runtime)?;
    match rx.await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => Err(NetnsError::ThreadLost),
    }
}

/// Run a plain closure (sysctl writes, socket setup) inside `netns`.
pub fn run_in_netns<F, T>(netns: &Path, work: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let path = netns.to_owned();
    let worker = std::thread::Builder::new()
        .name("brindle-netns".into())
        .spawn(move || -> Result<T, NetnsError> {
            enter(&path)?;
            Ok(work())
        })
        .map_err(NetnsError::Runtime)?;
    match worker.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
