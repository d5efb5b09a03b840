//! A test process that dies without unwinding (SIGKILL, as nextest does to
//! a hung test) leaves its namespace and daemons behind; the next
//! `sweep_stale` removes all of it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use brindle_testbed::{sweep_stale, BgpConfig, Bird, Etcd, Netns};
use common::namespaces;

const HELPER_ENV: &str = "BRINDLE_TESTBED_CRASH_HELPER";

/// Run only as a child of `killed_test_leftovers_are_swept`: builds a
/// namespace with BIRD and an etcd on loopback, reports them, and hangs
/// until killed.
#[test]
#[ignore = "helper process for killed_test_leftovers_are_swept"]
fn crash_helper_builds_and_hangs() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let ns = Netns::new("crash").unwrap();
    let bird = Bird::start(&ns, &BgpConfig::new("10.0.0.1".parse().unwrap(), 65001)).unwrap();
    let etcd = Etcd::start().unwrap();
    println!(
        "LEFTOVERS {} {} {} {} {}",
        ns.name(),
        bird.pid(),
        bird.dir().display(),
        etcd.pid(),
        etcd.dir().display()
    );
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// Gone, or a zombie nobody reaps (PID 1 in a container may not).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn killed_test_leftovers_are_swept() {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_helper_builds_and_hangs",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(helper.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("LEFTOVERS "));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helper.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    helper.wait().unwrap();
    let line = line.expect("helper reported what it built");
    let fields: Vec<&str> = line.split_whitespace().skip(1).collect();
    let [ns, bird_pid, bird_dir, etcd_pid, etcd_dir] = fields[..] else {
        panic!("bad helper line {line}");
    };
    let pids: Vec<u32> = [bird_pid, etcd_pid]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let dirs = [PathBuf::from(bird_dir), PathBuf::from(etcd_dir)];

    // Killed without unwinding, the helper cleaned up nothing. Another test
    // process starting right now may run its own startup sweep first, so
    // what matters is that after a sweep everything is gone, whoever ran it.
    let report = sweep_stale();
    assert!(
        !namespaces().contains(&ns.to_string()),
        "{ns} survived: {report:?}"
    );
    // Killing is asynchronous; wait (bounded) for the signals to land.
    let gone = brindle_testbed::poll_until(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(20),
        || Ok(pids.iter().all(|&p| process_gone(p)).then_some(())),
    )
    .unwrap();
    assert!(gone.is_some(), "daemons {pids:?} survived the sweep");
    assert!(dirs.iter().all(|d: &PathBuf| !Path::exists(d)), "{dirs:?}");
}
