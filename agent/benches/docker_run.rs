//! `docker run` to first packet, Brindle's Docker driver against Docker's
//! own bridge driver, on one dockerd in one run (on demand, not in CI;
//! prints a Markdown table for docs/benchmarks.md):
//!
//! ```text
//! cargo bench -p brindle-agent --bench docker_run      # BRINDLE_DOCKER_RUNS=30
//! ```
//!
//! One node namespace runs brindle-node (policy on, with
//! `FELIX_DEFAULTENDPOINTTOHOSTACTION=ACCEPT` as Calico's manifests set
//! it), dockerd (Debian's docker.io) and brindle-docker. Two networks on
//! that dockerd: `-d bridge` (Docker's driver; dockerd runs with
//! `--iptables=false`, so without its NAT rules) and `-d <brindle>
//! --ipam-driver <brindle>`. Runs alternate between them. Each run starts
//! a busybox container whose first act is to connect to a TCP listener of
//! this process in the node namespace (the bridge's gateway address, or the
//! node's address through 169.254.1.1), retrying every 5 ms while the
//! network is not there yet (a connect in flight is not waited for: new
//! attempts start in the background). Measured per run: `docker run -d`
//! until the CLI returns, until the listener accepts the container's first
//! connection, and `docker rm -f`. Nothing is asserted about time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::docker::{DockerNode, IMAGE};
use common::fabric::{pool_yaml, NodeDaemon, Store};
use common::measure::{env_number, load_average};

const PORT: u16 = 7000;
const BRIDGE_SUBNET: &str = "10.201.0.0/24";
const BRIDGE_GATEWAY: &str = "10.201.0.1";

/// First connection seen from each source address.
type Arrivals = Arc<Mutex<HashMap<IpAddr, Instant>>>;

/// Listens on `PORT` inside namespace `ns` (a thread of its own entered
/// into it) and records when each source address first connects.
fn listen_in(ns: &str) -> Arrivals {
    let arrivals: Arrivals = Arc::default();
    let record = arrivals.clone();
    let path = format!("/run/netns/{ns}");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns");
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let listener = TcpListener::bind(("0.0.0.0", PORT)).expect("bind");
        ready_tx.send(()).unwrap();
        for stream in listener.incoming().flatten() {
            let now = Instant::now();
            if let Ok(peer) = stream.peer_addr() {
                record.lock().unwrap().entry(peer.ip()).or_insert(now);
            }
        }
    });
    ready_rx.recv().unwrap();
    arrivals
}

struct Sample {
    cli: Duration,
    first_packet: Duration,
    rm: Duration,
}

/// One `docker run` on `network`, its container connecting to `target`.
fn one_run(d: &DockerNode, arrivals: &Arrivals, network: &str, name: &str, target: &str) -> Sample {
    let script = format!(
        "until [ -e /ok ]; do (echo x | nc -w 1 {target} {PORT} && touch /ok) & usleep 5000; done; exec sleep 600"
    );
    let started = Instant::now();
    d.docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        network,
        IMAGE,
        "sh",
        "-c",
        &script,
    ]);
    let cli = started.elapsed();
    let ip: IpAddr = d
        .address(name, network, "IPAddress")
        .parse()
        .expect("container address");
    let deadline = Instant::now() + Duration::from_secs(60);
    let arrived = loop {
        if let Some(at) = arrivals.lock().unwrap().get(&ip) {
            break *at;
        }
        assert!(Instant::now() < deadline, "{name} ({ip}) never connected");
        std::thread::sleep(Duration::from_millis(1));
    };
    let removing = Instant::now();
    d.docker(&["rm", "-f", name]);
    let rm = removing.elapsed();
    // The next container may get the same address.
    arrivals.lock().unwrap().remove(&ip);
    Sample {
        cli,
        first_packet: arrived - started,
        rm,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn row(driver: &str, what: &str, mut values: Vec<Duration>) -> String {
    values.sort();
    format!(
        "| {driver} | {what} | {} | {} | {} | {} |",
        ms(percentile(&values, 0.5)),
        ms(percentile(&values, 0.9)),
        ms(*values.last().unwrap()),
        ms(values.iter().sum::<Duration>() / values.len() as u32),
    )
}

fn main() {
    if !common::docker::can_run_docker() {
        eprintln!("docker_run: needs root and docker.io; skipped");
        return;
    }
    let runs = env_number("BRINDLE_DOCKER_RUNS", 30) as usize;
    let hosts = brindle_testbed::two_hosts_one_subnet().expect("hosts");
    let host = &hosts.hosts[0];
    // Proxy ARP answers for 169.254.1.1 only with a route to it.
    host.ns
        .add_default_route(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 254)))
        .unwrap();
    let store = Store::embedded();
    store.apply(&pool_yaml("10.77.0.0/16", "Never"));
    // Workload → host accepted, as Calico's manifests configure it (the
    // listener is on the host).
    let _node = NodeDaemon::start_env(
        &store,
        host,
        "node-a",
        &[("FELIX_DEFAULTENDPOINTTOHOSTACTION", "ACCEPT")],
    );
    let d = DockerNode::start(&store, &host.ns, "node-a");
    d.docker(&[
        "network",
        "create",
        "-d",
        "bridge",
        "--subnet",
        BRIDGE_SUBNET,
        "--gateway",
        BRIDGE_GATEWAY,
        "bench-bridge",
    ]);
    d.network("bench-brindle", &[]);
    let arrivals = listen_in(host.ns.name());
    let node_ip = host.ipv4.to_string();

    // One unmeasured run each: image and first-use caches warm.
    let load_before = load_average();
    one_run(&d, &arrivals, "bench-bridge", "warm-bridge", BRIDGE_GATEWAY);
    one_run(&d, &arrivals, "bench-brindle", "warm-brindle", &node_ip);
    let mut bridge = Vec::new();
    let mut brindle = Vec::new();
    for i in 0..runs {
        bridge.push(one_run(
            &d,
            &arrivals,
            "bench-bridge",
            &format!("bridge-{i}"),
            BRIDGE_GATEWAY,
        ));
        brindle.push(one_run(
            &d,
            &arrivals,
            "bench-brindle",
            &format!("brindle-{i}"),
            &node_ip,
        ));
    }
    let load_after = load_average();
    let version = d.docker(&["version", "--format", "{{.Server.Version}}"]);
    println!(
        "\n`docker run` to first packet, {runs} runs per driver, alternating; dockerd {version}; \
         load average before {load_before}, after {load_after}\n"
    );
    println!("| driver | measured | p50 ms | p90 ms | max ms | mean ms |");
    println!("|---|---|---|---|---|---|");
    for (driver, samples) in [("bridge (Docker)", &bridge), ("brindle", &brindle)] {
        println!(
            "{}",
            row(
                driver,
                "`docker run -d` returns",
                samples.iter().map(|s| s.cli).collect()
            )
        );
        println!(
            "{}",
            row(
                driver,
                "first packet at the node",
                samples.iter().map(|s| s.first_packet).collect()
            )
        );
        println!(
            "{}",
            row(
                driver,
                "`docker rm -f`",
                samples.iter().map(|s| s.rm).collect()
            )
        );
    }
    let report = store.ipam_check();
    println!(
        "\nafter the runs: ipam check leaks {} conflicts {} allocated {}",
        report.leaks.len(),
        report.conflicts.len(),
        report.allocated
    );
}
