//! The one error type of the testbed.
//!
//! Every variant carries enough context to debug a failed test from the
//! message alone: the command line, its stderr, and for daemons the tail of
//! the daemon's own log.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Result alias used throughout the testbed.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while building a topology or running a daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started at all (missing binary, bad path…).
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },

    /// A command ran but exited unsuccessfully.
    #[error("`{command}` failed ({status}):\nstdout: {stdout}\nstderr: {stderr}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },

    /// A daemon (or any polled condition) did not become ready in time.
    #[error(
        "{what} not ready after {timeout:?}: {detail}{}",
        log_section(log_path, log_tail)
    )]
    NotReady {
        what: String,
        timeout: Duration,
        detail: String,
        log_path: Option<PathBuf>,
        log_tail: String,
    },

    /// A daemon exited while we were waiting for it to become ready.
    #[error("{what} exited early ({status}){}", log_section(log_path, log_tail))]
    DaemonExited {
        what: String,
        status: ExitStatus,
        log_path: Option<PathBuf>,
        log_tail: String,
    },

    /// File-system or other I/O failure outside a spawned command.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// Output of a tool could not be understood.
    #[error("cannot parse output of {what}: {detail}")]
    Parse { what: String, detail: String },
}

fn log_section(path: &Option<PathBuf>, tail: &str) -> String {
    match path {
        Some(p) => format!("\n--- tail of {} ---\n{tail}", p.display()),
        None if tail.is_empty() => String::new(),
        None => format!("\n--- log ---\n{tail}"),
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
