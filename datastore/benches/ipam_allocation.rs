//! IPAM benchmark (on demand, not in CI; not a pass/fail test): allocations
//! per second and latency percentiles of `auto_assign` (one IPv4 workload
//! address, the CNI ADD path), on the embedded store and on a real etcd,
//! for one allocator and for 16 concurrent allocator processes.
//!
//! ```text
//! cargo bench -p brindle-datastore --bench ipam_allocation
//! ```
//!
//! Prints a Markdown table (the one in docs/benchmarks.md).

#[path = "../tests/ipam_common.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use brindle_datastore::ipam::{AutoAssignArgs, Ipam};
use common::{pool, TestStore};

// Within one node's 20 default blocks of 64 (no borrowing on the measured path).
const SINGLE: usize = 1000;
const WORKERS: usize = 16;
const PER_WORKER: usize = 300;

struct Row {
    store: &'static str,
    allocators: usize,
    allocations: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    /// Single allocator only: the allocations that did not claim a block
    /// (every 64th claims one: a listing and three more writes).
    steady: Vec<Duration>,
}

fn percentile(latencies: &[Duration], p: f64) -> Duration {
    let mut l = latencies.to_vec();
    l.sort();
    let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
    l[i]
}

impl Row {
    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.2} ms |",
            self.store,
            self.allocators,
            self.allocations,
            self.allocations as f64 / self.wall.as_secs_f64(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            if self.steady.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "{:.2} ms",
                    percentile(&self.steady, 0.99).as_secs_f64() * 1e3
                )
            },
            self.percentile(1.0).as_secs_f64() * 1e3,
        )
    }
}

async fn single(store: TestStore, name: &'static str) -> Row {
    pool(&store.ds, "bench", "10.128.0.0/16", 26, "").await;
    let ipam = Ipam::new(store.ds.clone());
    let mut latencies = Vec::with_capacity(SINGLE);
    let started = Instant::now();
    for i in 0..SINGLE {
        let t = Instant::now();
        ipam.auto_assign(&AutoAssignArgs::workload_v4(format!("bench.{i}"), "b0"))
            .await
            .unwrap();
        latencies.push(t.elapsed());
    }
    let steady = latencies
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 64 != 0)
        .map(|(_, l)| *l)
        .collect();
    Row {
        store: name,
        allocators: 1,
        allocations: SINGLE,
        wall: started.elapsed(),
        latencies,
        steady,
    }
}

async fn concurrent(store: TestStore, name: &'static str) -> Row {
    pool(&store.ds, "bench", "10.128.0.0/16", 26, "").await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut children: Vec<_> = (0..WORKERS)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_ipam-stress"))
                .args([
                    store.url.as_str(),
                    &format!("b{i}"),
                    &PER_WORKER.to_string(),
                    dir.path().join(format!("{i}.log")).to_str().unwrap(),
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        assert!(tokio::task::block_in_place(|| c.wait()).unwrap().success());
    }
    let wall = started.elapsed();
    let mut latencies = Vec::new();
    for i in 0..WORKERS {
        latencies.extend(micros(&dir.path().join(format!("{i}.log"))));
    }
    assert_eq!(latencies.len(), WORKERS * PER_WORKER);
    Row {
        store: name,
        allocators: WORKERS,
        allocations: latencies.len(),
        wall,
        latencies,
        steady: Vec::new(),
    }
}

fn micros(log: &Path) -> Vec<Duration> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("A "))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .map(Duration::from_micros)
        .collect()
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(benchmark());
}

async fn benchmark() {
    let rows = vec![
        single(common::embedded().await, "embedded").await,
        concurrent(common::embedded().await, "embedded").await,
        single(common::etcd().await, "etcd").await,
        concurrent(common::etcd().await, "etcd").await,
    ];
    println!(
        "| store | allocators | allocations | allocations/s | p50 | p99 | p99 without a block claim | max |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{}", r.markdown());
    }
}
