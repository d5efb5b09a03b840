//! Soak (on demand, not in CI; prints a Markdown table for
//! docs/benchmarks.md):
//!
//! ```text
//! BRINDLE_SOAK_MINUTES=60 cargo bench -p brindle-agent --bench soak
//! ```
//!
//! Three real `brindle-node` daemons in namespaces on one subnet share the
//! embedded store (full mesh, direct routes, policy on). Workloads churn at
//! a steady rate: every `BRINDLE_SOAK_INTERVAL_MS` (default 1,000) one is
//! added by the real `brindle-cni` on node 1 or node 2 in turn, and the
//! oldest is deleted once `BRINDLE_SOAK_LIVE` (default 12) are running. For
//! each ADD, the time from starting the plugin until a workload on node 0
//! reaches the new one (a UDP probe per millisecond until the ICMP port
//! unreachable comes back: route, policy and all). Every minute one row:
//! ADD-to-reachable p50 / p99 / max over that minute, and each daemon's
//! RSS and open file descriptors, so a leak or a slowdown shows as a trend.
//! Every namespace, process and file is removed on drop, also on panic.
//! Nothing is asserted.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use brindle_agent::netns::named_netns_path;
use brindle_testbed::hosts_on_two_subnets;
use common::fabric::*;
use common::measure::{env_number, load_average, open_fds, status_kib};
use common::probe::Prober;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    if !can_run() {
        return;
    }
    if std::env::var_os("BRINDLE_BENCH_NODE_LOG").is_none() {
        std::env::set_var("BRINDLE_BENCH_NODE_LOG", "info");
    }
    let minutes = env_number("BRINDLE_SOAK_MINUTES", 60);
    let interval = Duration::from_millis(env_number("BRINDLE_SOAK_INTERVAL_MS", 1000));
    let live = env_number("BRINDLE_SOAK_LIVE", 12) as usize;

    let fabric = hosts_on_two_subnets([3, 0]).expect("topology");
    let hosts = &fabric.hosts;
    let store = Store::embedded();
    store.apply(&pool_yaml("10.78.0.0/16", "Never"));
    store.apply(ALLOW_ALL_PROFILE);
    let nodes: Vec<NodeDaemon> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| NodeDaemon::start(&store, h, &format!("node-{i}")))
        .collect();
    for node in &nodes {
        node.wait_established(2);
    }
    let anchor = add_workload(&store, &hosts[0], "node-0", "anchor");
    let prober = Prober::start(named_netns_path(anchor.ns.name()));

    println!(
        "| minute | ADDs | ADD-to-reachable p50 / p99 / max (ms) | RSS per node (KiB) | open fds per node | load |"
    );
    println!("|---|---|---|---|---|---|");
    let start = Instant::now();
    let end = start + Duration::from_secs(60 * minutes);
    let mut running: VecDeque<(usize, Workload)> = VecDeque::new();
    let mut minute_samples: Vec<f64> = Vec::new();
    let mut minute = 1;
    let mut next_add = Instant::now();
    let mut count = 0usize;
    while Instant::now() < end {
        std::thread::sleep(next_add.saturating_duration_since(Instant::now()));
        next_add += interval;
        let on = 1 + count % 2;
        count += 1;
        let began = Instant::now();
        let w = add_workload(
            &store,
            &hosts[on],
            &format!("node-{on}"),
            &format!("soak{count}"),
        );
        match prober.reachable_at(w.ip) {
            Some(at) => minute_samples.push((at - began).as_secs_f64() * 1000.0),
            None => eprintln!("workload {} never became reachable", w.ip),
        }
        running.push_back((on, w));
        while running.len() > live {
            if let Some((on, old)) = running.pop_front() {
                delete_workload(&store, &hosts[on], &old);
            }
        }
        if start.elapsed() >= Duration::from_secs(60 * minute) {
            minute_samples.sort_by(f64::total_cmp);
            let pids: Vec<u32> = nodes.iter().filter_map(NodeDaemon::pid).collect();
            let rss: Vec<String> = pids
                .iter()
                .map(|p| status_kib(*p, "VmRSS").unwrap_or(0).to_string())
                .collect();
            let fds: Vec<String> = pids.iter().map(|p| open_fds(*p).to_string()).collect();
            let load = load_average();
            println!(
                "| {minute} | {} | {:.0} / {:.0} / {:.0} | {} | {} | {load} |",
                minute_samples.len(),
                percentile(&minute_samples, 0.5),
                percentile(&minute_samples, 0.99),
                minute_samples.last().copied().unwrap_or(0.0),
                rss.join(", "),
                fds.join(", ")
            );
            minute_samples.clear();
            minute += 1;
        }
    }
    for (on, w) in running {
        delete_workload(&store, &hosts[on], &w);
    }
    let report = store.ipam_check();
    println!(
        "after the soak: ipam check: {} allocated, {} leaks, {} conflicts",
        report.allocated,
        report.leaks.len(),
        report.conflicts.len()
    );
}
