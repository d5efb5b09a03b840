//! Removal of what dead test processes left behind.
//!
//! Everything the testbed creates carries its creator's pid in its name
//! (see [`crate::unique_name`]): namespaces, and temp dirs whose paths appear
//! on the command lines of the daemons using them. A creator that is no
//! longer running cannot clean up, so [`sweep_stale`] does it: it kills the
//! processes inside stale namespaces and deletes them, kills processes whose
//! command line mentions a stale temp dir, and removes those dirs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::cmd;
use crate::names::owner_pid;
use crate::netns::delete_namespace;

/// What one sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
    /// Temp dirs removed.
    pub temp_dirs: Vec<PathBuf>,
    /// Processes killed because they used a stale temp dir.
    pub processes: Vec<u32>,
}

/// Deletes namespaces, temp dirs and processes created by testbed users that
/// are no longer running. Safe to call at any time from any process: live
/// owners' resources are never touched.
pub fn sweep_stale() -> SweepReport {
    sweep(false)
}

/// Runs the sweep once per process, before its first namespace or daemon.
/// At that moment nothing named with our own pid can be ours yet, so such
/// names (left by an earlier process that had the same pid) count as stale.
pub(crate) fn sweep_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let report = sweep(true);
        if report != SweepReport::default() {
            tracing::info!(?report, "swept leftovers of dead test processes");
        }
    });
}

fn is_stale(pid: u32, own_pid_is_stale: bool) -> bool {
    if pid == std::process::id() {
        return own_pid_is_stale;
    }
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn sweep(own_pid_is_stale: bool) -> SweepReport {
    let mut report = SweepReport::default();

    let mut list = Command::new("ip");
    list.args(["netns", "list"]);
    let namespaces = cmd::checked(list).unwrap_or_default();
    for line in namespaces.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if owner_pid(name).is_some_and(|pid| is_stale(pid, own_pid_is_stale)) {
            delete_namespace(name);
            report.namespaces.push(name.to_string());
        }
    }

    let temp = std::env::temp_dir();
    let stale_dirs: Vec<PathBuf> = std::fs::read_dir(&temp)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(owner_pid)
                .is_some_and(|pid| is_stale(pid, own_pid_is_stale))
        })
        .map(|entry| entry.path())
        .collect();
    if !stale_dirs.is_empty() {
        report.processes = kill_processes_mentioning(&stale_dirs);
    }
    for dir in stale_dirs {
        // Container engines' dirs hold mounts (root file systems, netns).
        crate::docker::unmount_under(&dir);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => report.temp_dirs.push(dir),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove"),
        }
    }
    report
}

/// SIGKILLs every process whose command line contains one of `dirs`.
fn kill_processes_mentioning(dirs: &[PathBuf]) -> Vec<u32> {
    let needles: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let mut killed = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if needles.iter().any(|n| cmdline.contains(n.as_str())) {
            // Testbed daemons lead their own process group: take helpers
            // they forked down with them.
            if process_group(pid) == Some(pid) {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            killed.push(pid);
        }
    }
    killed
}

/// Process-group id of `pid` from `/proc/<pid>/stat` (the field after state,
/// which follows the parenthesised command name).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
}
