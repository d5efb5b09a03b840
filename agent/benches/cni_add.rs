//! CNI ADD latency benchmark (on demand, not in CI; prints a Markdown table
//! for docs/benchmarks.md):
//!
//! ```text
//! cargo bench -p brindle-agent --bench cni_add
//! ```
//!
//! Each ADD is the plugin binary run as a runtime runs it (via `nsenter`
//! into a test "host" namespace, so process start-up is included), with
//! `brindle-ipam` delegated to and a temporary embedded store: 200
//! sequential ADDs, then 50 ADDs started at once. Everything is DELeted
//! and every namespace removed afterwards. Nothing is asserted about time.
//!
//! `BRINDLE_BENCH_BASELINE_CNI=/path/to/brindle-cni` (an older build, e.g.
//! from a `git worktree` of an earlier commit) adds the same rows for that
//! binary in the same run, each on its own fresh store, so a change is
//! compared side by side under the same load.

#[path = "../tests/cni_support/mod.rs"]
mod cni_support;
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cni_support::{netns_path, Host};
use common::{can_run, TestNetns};
use serde_json::{json, Value};

const SEQUENTIAL: usize = 200;
const PARALLEL: usize = 50;

/// One plugin invocation; returns how long it took.
fn timed(
    host_ns: &str,
    plugin: &str,
    cni_path: &str,
    vars: &[(&str, &str)],
    conf: &Value,
) -> Duration {
    let started = Instant::now();
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{host_ns}"))
        .arg(plugin)
        .env_clear()
        .env("CNI_PATH", cni_path)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nsenter");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{vars:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn row(name: &str, mut samples: Vec<Duration>, wall: Duration) -> String {
    samples.sort();
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    format!(
        "| {name} | {} | {} | {} | {} | {} |",
        samples.len(),
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 99.0)),
        ms(*samples.last().unwrap()),
        ms(wall)
    )
}

struct Runner {
    host_ns: String,
    plugin: String,
    cni_path: String,
    conf: Value,
}

impl Runner {
    fn run(&self, command: &str, container: &str, netns: &str) -> Duration {
        timed(
            &self.host_ns,
            &self.plugin,
            &self.cni_path,
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", container),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", "eth0"),
            ],
            &self.conf,
        )
    }
}

fn main() {
    if !can_run() {
        return;
    }
    let mut rows = Vec::new();
    if let Ok(baseline) = std::env::var("BRINDLE_BENCH_BASELINE_CNI") {
        rows.extend(measure("baseline", Some(Path::new(&baseline))));
    }
    rows.extend(measure("this build", None));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!("load average at the end: {}", load.trim());
    println!("| CNI ADD (brindle-cni, embedded store) | n | p50 ms | p99 ms | max ms | wall ms |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

/// The sequential and the parallel rows for one plugin binary (`None`: the
/// one built with this test).
fn measure(label: &str, plugin: Option<&Path>) -> Vec<String> {
    let host = Host::new(&["10.90.0.0/16"]);
    if let Some(binary) = plugin {
        // The IPAM name is a symlink to this file, so both change.
        std::fs::copy(binary, host.plugin_dir().join("brindle-cni")).unwrap();
    }
    let runner = Arc::new(Runner {
        host_ns: host.ns.name.clone(),
        plugin: host.plugin_dir().join("brindle-cni").display().to_string(),
        cni_path: host.plugin_dir().display().to_string(),
        conf: host.conf(json!({})),
    });
    let containers: Vec<TestNetns> = (0..PARALLEL).map(|_| TestNetns::new("cnibench")).collect();

    // Sequential: ADD (timed) then DEL, cycling through the namespaces.
    let mut sequential = Vec::with_capacity(SEQUENTIAL);
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        let c = &containers[i % PARALLEL];
        let id = format!("seq-{i}");
        sequential.push(runner.run("ADD", &id, &netns_path(c)));
        runner.run("DEL", &id, &netns_path(c));
    }
    let sequential_wall = started.elapsed();

    // Parallel: every namespace gets an ADD at the same moment.
    let barrier = Arc::new(Barrier::new(PARALLEL));
    let started = Instant::now();
    let threads: Vec<_> = containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (runner, barrier, netns) = (runner.clone(), barrier.clone(), netns_path(c));
            std::thread::spawn(move || {
                barrier.wait();
                runner.run("ADD", &format!("par-{i}"), &netns)
            })
        })
        .collect();
    let parallel: Vec<Duration> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let parallel_wall = started.elapsed();
    for (i, c) in containers.iter().enumerate() {
        runner.run("DEL", &format!("par-{i}"), &netns_path(c));
    }

    vec![
        row(&format!("{label}: sequential"), sequential, sequential_wall),
        row(
            &format!("{label}: {PARALLEL} at once"),
            parallel,
            parallel_wall,
        ),
    ]
}
