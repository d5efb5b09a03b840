//! `sweep_stale` removes what a dead test process left, and only that.

mod common;

use std::process::{Command, Stdio};

use brindle_testbed::{sweep_stale, Netns};
use common::{assert_all_gone, namespaces};

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
    std::fs::write(&marker, "").unwrap();
    let mut outside = Command::new("tail")
        .args(["-f", &marker.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (inside_pid, outside_pid) = (inside.id(), outside.id());
    // Wait until the namespaced sleep is really inside (exec is not instant).
    brindle_testbed::poll_until(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(20),
        || {
            let out = Command::new("ip")
                .args(["netns", "pids", &stale_ns])
                .output()
                .unwrap();
            Ok((!out.stdout.is_empty()).then_some(()))
        },
    )
    .unwrap()
    .expect("sleep entered the stale namespace");

    let report = sweep_stale();
    assert!(report.namespaces.contains(&stale_ns), "{report:?}");
    assert!(report.temp_dirs.contains(&stale_dir), "{report:?}");
    assert!(report.processes.contains(&outside_pid), "{report:?}");
    inside.wait().unwrap();
    outside.wait().unwrap();
    assert_all_gone(&[stale_ns], &[inside_pid, outside_pid]);
    assert!(!stale_dir.exists());

    // Our own, live namespace survives the sweep.
    assert!(namespaces().contains(&live.name().to_string()));
    assert!(!report.namespaces.contains(&live.name().to_string()));
}
