//! Running short commands to completion with errors that explain themselves.

use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};
use crate::process::render_command;

/// Runs `command` with stdin closed and returns its output whatever the exit
/// status; errors only if it cannot be started.
pub(crate) fn output(mut command: Command) -> Result<Output> {
    command.stdin(Stdio::null());
    let line = render_command(&command);
    tracing::trace!(command = %line, "running");
    command.output().map_err(|source| Error::Spawn {
        command: line,
        source,
    })
}

/// Runs `command` and returns its stdout, or [`Error::CommandFailed`] with
/// stdout and stderr if it exits unsuccessfully.
pub(crate) fn checked(command: Command) -> Result<String> {
    let line = render_command(&command);
    let out = output(command)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::CommandFailed {
            command: line,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Builds a [`Command`] from an argv slice (`argv[0]` is the program).
///
/// # Panics
/// If `argv` is empty: that is a bug in the calling test, not a runtime
/// condition.
pub(crate) fn from_argv<S: AsRef<str>>(argv: &[S]) -> Command {
    let (program, args) = argv.split_first().expect("argv must name a program");
    let mut command = Command::new(program.as_ref());
    command.args(args.iter().map(AsRef::as_ref));
    command
}
