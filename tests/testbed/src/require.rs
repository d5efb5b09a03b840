//! What a test needs from the machine (root, a kernel feature, an installed
//! program), and what happens when it is missing.
//!
//! A test that cannot run must never look like a test that passed:
//!
//! * under CI (`CI` set to anything but `""`, `0` or `false`, as `.ci/run`
//!   does) a missing requirement **panics**, so the run fails and names what
//!   the machine lacks;
//! * elsewhere the test may skip, but it says so: `SKIPPED <test>: needs
//!   <what>` on stderr, and the same line appended to the file named by
//!   `BRINDLE_SKIP_LOG` (scripts/test sets it and prints the list at the end,
//!   because nextest hides a passing test's stderr).
//!
//! ```no_run
//! if !brindle_testbed::require::root() {
//!     return;
//! }
//! ```

use std::io::Write as _;

/// Whether `CI` asks for a strict run.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !matches!(v.trim(), "" | "0" | "false"))
        .unwrap_or(false)
}

/// Returns `met`; when it is false, fails the test under CI and records a
/// skip elsewhere. `what` completes "needs …" (e.g. "root", "/usr/lib/cni/portmap").
pub fn require(met: bool, what: &str) -> bool {
    if met {
        return true;
    }
    let test = current_test_name();
    if in_ci() {
        panic!("{test} needs {what}, which this machine lacks; under CI a test that cannot run fails instead of passing");
    }
    let line = format!("SKIPPED {test}: needs {what}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("BRINDLE_SKIP_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            // One write of one line: appends from parallel test processes do not interleave.
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }
    false
}

/// Root (effective uid 0): namespaces, veths, iptables, daemons.
pub fn root() -> bool {
    require(nix::unistd::Uid::effective().is_root(), "root")
}

/// Root and iproute2's `ip`.
pub fn root_and_ip() -> bool {
    root() && require(program_exists("ip"), "iproute2 (the `ip` program)")
}

/// An executable file at `path`.
pub fn file(path: &std::path::Path) -> bool {
    require(path.is_file(), &path.display().to_string())
}

fn program_exists(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false)
}

/// libtest names each test's thread after the test (also under nextest).
fn current_test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string()
}
