//! `sweep_stale` removes what a dead test process left, and only that.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use brindle_testbed::{sweep_stale, Netns};
use common::{assert_all_gone, namespaces};

/// Bound on waiting for processes to enter or leave.
const SETTLE: Duration = Duration::from_secs(10);

/// The pid of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn leftovers_of_a_dead_process_are_swept_and_live_ones_kept() {
    let live = Netns::new("live").unwrap();
    let dead = dead_pid();
    let stale_ns = format!("bt{dead}_0_stale");
    let stale_dir = std::env::temp_dir().join(format!("bt{dead}_1_etcd.abc"));
    assert!(Command::new("ip")
        .args(["netns", "add", &stale_ns])
        .status()
        .unwrap()
        .success());
    std::fs::create_dir_all(&stale_dir).unwrap();

    // A daemon inside the stale namespace, and one outside that uses the
    // stale temp dir (as etcd on 127.0.0.1 would).
    let mut inside = Command::new("ip")
        .args(["netns", "exec", &stale_ns, "sleep", "600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = stale_dir.join("etcd.log");
    // May fail if a concurrent sweep already took the dir; then `tail`
    // exits at once, which is the outcome this test wants anyway.
    let _ = std::fs::write(&marker, "");
    let mut outside = Command::new("tail")
        .args(["-f", &marker.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (inside_pid, outside_pid) = (inside.id(), outside.id());
    // Wait until the namespaced sleep is really inside (exec is not
    // instant), unless a concurrent test process already swept the
    // namespace: leftovers of dead pids are fair game for every sweep.
    let entered = brindle_testbed::poll_until(SETTLE, Duration::from_millis(20), || {
        let out = Command::new("ip")
            .args(["netns", "pids", &stale_ns])
            .output()
            .unwrap();
        let settled = !out.stdout.is_empty() || !namespaces().contains(&stale_ns);
        Ok(settled.then_some(()))
    })
    .unwrap();
    assert!(entered.is_some(), "sleep never entered {stale_ns}");

    let report = sweep_stale();
    assert!(!namespaces().contains(&stale_ns), "{report:?}");
    assert!(!stale_dir.exists(), "{report:?}");
    for (name, child) in [("inside", &mut inside), ("outside", &mut outside)] {
        let exited = brindle_testbed::poll_until(SETTLE, Duration::from_millis(20), || {
            Ok(child.try_wait().unwrap())
        })
        .unwrap();
        assert!(exited.is_some(), "{name} process survived: {report:?}");
    }
    assert_all_gone(&[stale_ns], &[inside_pid, outside_pid]);

    // Our own, live namespace survives the sweep.
    assert!(namespaces().contains(&live.name().to_string()));
    assert!(!report.namespaces.contains(&live.name().to_string()));
}
