//! Namespace fixtures for the agent's kernel tests.
//!
//! Every namespace is named `bra-<tag>-<pid>-<n>` so tests of this and other
//! crates can run in parallel on one machine, and is deleted on drop (also
//! when the test panics), taking its interfaces, routes and neighbours with
//! it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether this process can create namespaces (root and `ip` present).
pub fn can_run() -> bool {
    brindle_testbed::require::root_and_ip()
}

/// A network namespace created with `ip netns add`, deleted on drop.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "bra-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        brindle_agent::netns::named_netns_path(&self.name)
    }

    /// `ip -n <ns> <args>`, panicking on failure; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Run a command inside the namespace without checking its status.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .expect("spawn ip netns exec")
    }

    /// Write a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let out = self.exec(&["sysctl", "-qw", &format!("{key}={value}")]);
        assert!(
            out.status.success(),
            "sysctl {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Ping `target` from inside the namespace; true if any reply came back.
    /// Several probes because the first may be spent on neighbour resolution.
    pub fn ping(&self, target: &str) -> bool {
        let out = self.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", target]);
        if !out.status.success() {
            eprintln!(
                "ping {target} from {} failed:\n{}{}",
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Connect two namespaces with a veth pair `a_if` (in `a`) ↔ `b_if` (in `b`).
pub fn veth_between(a: &TestNetns, a_if: &str, b: &TestNetns, b_if: &str) {
    run(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

pub fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub mod docker;
pub mod fabric;
pub mod measure;
pub mod policy;
pub mod probe;
