//! Long-running child processes that cannot outlive their handle.
//!
//! [`Process`] starts a program in its own process group with stdin closed and
//! stdout+stderr appended to a log file. Dropping the handle sends SIGTERM to
//! the whole group, waits a bounded time, then SIGKILLs the group and reaps
//! the child, so daemons that fork helpers are cleaned up too. Nothing here
//! panics; failures to kill are logged with `tracing` and ignored (the process
//! is already gone in practice).
//!
//! Why a process group of its own and no `PR_SET_PDEATHSIG`: the death signal
//! fires when the spawning *thread* exits, which would kill daemons started
//! from short-lived helper threads (tokio's blocking pool, for one). The
//! price is that a test killed without unwinding (SIGKILL, a nextest
//! timeout) leaves its daemons running; [`crate::sweep_stale`] removes them,
//! and runs by itself before the next process builds anything.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// How long a process gets between SIGTERM and SIGKILL on drop.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// A running child process (and its process group); killed on drop.
#[derive(Debug)]
pub struct Process {
    what: String,
    child: Child,
    log_path: PathBuf,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` in a new process group, appending its output to
    /// `log_path`. `what` names it in errors and logs (e.g. "bird in bt12_0_a").
    pub fn spawn(what: impl Into<String>, mut command: Command, log_path: &Path) -> Result<Self> {
        let what = what.into();
        let log = open_log(log_path)?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io(format!("cloning log handle {}", log_path.display()), e))?;
        command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        let line = render_command(&command);
        tracing::debug!(%what, command = %line, log = %log_path.display(), "spawning");
        let child = command.spawn().map_err(|source| Error::Spawn {
            command: line,
            source,
        })?;
        Ok(Process {
            what,
            child,
            log_path: log_path.to_path_buf(),
            exited: None,
        })
    }

    /// Pid of the child (also its process-group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Human-readable name given at spawn time.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Path of the file receiving the child's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whole log so far (lossy UTF-8; empty if unreadable).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Last `max_bytes` of the log, for error messages.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        tail(&self.log(), max_bytes)
    }

    /// `Some(status)` once the child has exited, `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
            }
        }
        self.exited
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Errors with [`Error::DaemonExited`] (including the log tail) if the
    /// child has already exited; used by readiness polls to fail fast.
    pub fn check_running(&mut self) -> Result<()> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => Err(Error::DaemonExited {
                what: self.what.clone(),
                status,
                log_path: Some(self.log_path.clone()),
                log_tail: self.log_tail(4096),
            }),
        }
    }

    /// Builds an [`Error::NotReady`] for this process with its log tail.
    pub fn not_ready(&self, timeout: Duration, detail: impl Into<String>) -> Error {
        Error::NotReady {
            what: self.what.clone(),
            timeout,
            detail: detail.into(),
            log_path: Some(self.log_path.clone()),
            log_tail: self.log_tail(4096),
        }
    }

    /// SIGKILLs the process group at once (a crash: no clean-up of its own)
    /// and reaps the child.
    pub fn kill(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        self.stop();
    }

    /// Sends SIGTERM to the leader only, as systemd's `KillMode=process`
    /// does, and waits up to `grace` for it to exit by itself (a daemon that
    /// stops its own helpers in order, as dockerd stops containerd after its
    /// containers); then [`Process::stop`] for whatever is left.
    pub fn terminate_leader(&mut self, grace: Duration) {
        if self.exit_status().is_none() {
            let _ = nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.exit_status().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.stop();
    }

    /// Stops the process group (SIGTERM, then SIGKILL after a grace period)
    /// and reaps the child. Idempotent; also done on drop.
    pub fn stop(&mut self) {
        let pgid = Pid::from_raw(self.child.id() as i32);
        if self.exit_status().is_none() {
            let _ = killpg(pgid, Signal::SIGTERM);
            let deadline = Instant::now() + TERM_GRACE;
            while self.exit_status().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Also reaches helpers the leader forked, even if the leader is gone.
        let _ = killpg(pgid, Signal::SIGKILL);
        if self.exited.is_none() {
            match self.child.wait() {
                Ok(status) => self.exited = Some(status),
                Err(e) => tracing::warn!(what = %self.what, error = %e, "cannot reap"),
            }
        }
        tracing::debug!(what = %self.what, status = ?self.exited, "stopped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening log {}", path.display()), e))
}

/// Renders a command line for messages (program and arguments, space-joined).
pub(crate) fn render_command(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Last `max_bytes` of `text`, cut at a char boundary.
pub(crate) fn tail(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Polls `probe` every `interval` until it returns `Ok(Some(_))`, it returns
/// an error, or `timeout` elapses (then returns `Ok(None)`). The probe always
/// runs at least once. Callers turn `None` into a descriptive error.
pub fn poll_until<T>(
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe()? {
            return Ok(Some(value));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(interval);
    }
}
