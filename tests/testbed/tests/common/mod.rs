//! Checks shared by the testbed's own tests: after a handle is dropped,
//! nothing it made may remain.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Namespaces currently listed by `ip netns list`.
pub fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Panics if any of `names` is still a namespace or any of `pids` still runs.
pub fn assert_all_gone(names: &[String], pids: &[u32]) {
    let live = namespaces();
    for name in names {
        assert!(!live.contains(name), "namespace {name} still exists");
    }
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still running"
        );
    }
}

/// Panics unless `path` was removed.
pub fn assert_removed(path: &Path) {
    assert!(!path.exists(), "{} still exists", path.display());
}
