//! Cold start of an N-node fabric (on demand, not in CI; prints what it
//! measured, for docs/benchmarks.md):
//!
//! ```text
//! BRINDLE_SCALE_NODES=40 cargo bench -p brindle-agent --bench fabric_scale
//! ```
//!
//! N real `brindle-node` processes, each in its own namespace on one
//! switched segment, share the embedded store; a pool with `vxlanMode:
//! Always` makes each node claim a block for its tunnel address and
//! announce it; full mesh; `--no-policy`. From the moment the daemons are
//! started until every node's kernel routes every other node's block: the
//! time, and every 5 s how many sessions are Established and how many
//! remote blocks are routed, so a stall shows where it is. Then the CPU
//! time each node used up to then and peak RSS per node.
//!
//! `BRINDLE_SCALE_STORE=etcd` puts the store in a real etcd (in the
//! router's namespace, reached over the underlay) instead of the embedded
//! one. `BRINDLE_SCALE_TOPOLOGY=rr` replaces the mesh with two route reflectors
//! as Calico sets them up: `nodeToNodeMeshEnabled: false`, the first two
//! nodes labelled `rr` with `routeReflectorClusterID`, and BGPPeers by
//! `nodeSelector`/`peerSelector` (clients to reflectors, reflectors to
//! clients and to each other).
//!
//! All the namespaces share the kernel's one neighbour table, and its
//! limits (`net.ipv4.neigh.default.gc_thresh1/2/3`, 128/512/1024 by
//! default) are host-wide: N nodes need about 2·N·(N−1) entries (each
//! node's ARP entry for every other node's underlay address, and the
//! static entry brindle-node programs for every other node's VTEP), which
//! at N = 40 is about 3,100. Past `gc_thresh3` the kernel drops new entries
//! ("neighbor table overflow"), ARP fails, BGP packets are lost and
//! sessions die by hold timer: that, not BGP, is why a 40-node fabric did
//! not converge on one host. So the harness raises the three limits to what
//! N nodes need while it runs and puts the old values back when it ends.
//!
//! `BRINDLE_SCALE_SPEAKER=bird` runs the anchor instead: BIRD 2 as each
//! node's speaker, in the same topology (see `run_bird`).
//!
//! `BRINDLE_SCALE_RESTARTS=1` then restarts one node, and then a tenth of
//! the nodes at once, and times each until every session the restarted
//! nodes had is Established again and they route every remote block.
//!
//! `BRINDLE_SCALE_TIMEOUT` (seconds, default 180) bounds the
//! wait; `BRINDLE_SCALE_WATCH` (seconds, default 0) keeps watching the
//! converged fabric for sessions that drop; `BRINDLE_BENCH_NODE_LOG` is the daemons' `RUST_LOG` (default
//! `info`); `BRINDLE_BENCH_KEEP_LOGS=DIR` keeps their logs. Every
//! namespace, process and file is removed on drop, also on panic. Nothing
//! is asserted about time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use brindle_agent::netlink::{KernelRoutes, Netlink};
use brindle_agent::netns::{named_netns_path, run_in_netns};
use brindle_agent::route::RouteTarget;
use brindle_testbed::{hosts_on_two_subnets, Host};
use common::fabric::{pool_yaml, NodeDaemon, Store};
use common::measure::{cpu_seconds, env_number, load_average, status_kib};

fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// Counts the remote blocks each host's kernel routes, through one netlink
/// socket opened in each host's namespace at the start. The harness reads
/// every host about once a second while the daemons converge; an `ip netns
/// exec … ip route` per host and round (two execs and a mount namespace
/// each) cost a quarter of a core at 250 hosts, CPU taken from the daemons
/// being measured.
struct RouteCounter {
    runtime: tokio::runtime::Runtime,
    sockets: Vec<Netlink>,
}

impl RouteCounter {
    /// `protocol`: the kernel route protocol to count (80 for brindle-node,
    /// 12 for BIRD).
    fn new(hosts: &[Host], protocol: u8) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let sockets = hosts
            .iter()
            .map(|host| {
                let handle = runtime.handle().clone();
                // The socket belongs to the namespace of the thread that
                // opens it; its connection task runs on our runtime.
                run_in_netns(&named_netns_path(host.ns.name()), move || {
                    let _entered = handle.enter();
                    Netlink::connect(protocol)
                })
                .expect("enter the host's namespace")
                .expect("netlink socket")
            })
            .collect();
        Self { runtime, sockets }
    }

    /// Remote blocks host `i` routes (IPv4 routes of the protocol that are
    /// not the blackhole of its own blocks).
    fn routed_blocks(&self, i: usize) -> usize {
        self.runtime
            .block_on(self.sockets[i].list_routes())
            .map(|routes| {
                routes
                    .iter()
                    .filter(|r| r.dst.addr().is_ipv4() && r.target != RouteTarget::Blackhole)
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Sessions `node`'s status socket shows Established (0 when it does not
/// answer).
/// The Established sessions of every node, asked in parallel: one at a time,
/// 250 busy daemons took 10 s to answer, and the route reads waited.
fn established_sessions_all(nodes: &[NodeDaemon]) -> Vec<usize> {
    std::thread::scope(|scope| {
        let asks: Vec<_> = nodes
            .iter()
            .map(|node| scope.spawn(move || established_sessions(node)))
            .collect();
        asks.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    })
}

fn established_sessions(node: &NodeDaemon) -> usize {
    node.status()
        .map(|r| r.peers.iter().filter(|p| p.established).count())
        .unwrap_or(0)
}

/// Stops the daemons of `which` (SIGTERM), starts them again, and returns
/// how long from the new processes' start until each has every session it
/// had before Established and routes every remote block (`None`: not within
/// `timeout`).
fn restart_and_time(
    nodes: &mut [NodeDaemon],
    hosts: &[Host],
    counter: &RouteCounter,
    which: &[usize],
    timeout: Duration,
) -> Option<Duration> {
    let n = nodes.len();
    let sessions_before: Vec<usize> = which
        .iter()
        .map(|&i| established_sessions(&nodes[i]))
        .collect();
    for &i in which {
        nodes[i].stop();
    }
    let start = Instant::now();
    for &i in which {
        nodes[i].restart(&hosts[i]);
    }
    let mut back = vec![false; which.len()];
    while start.elapsed() < timeout {
        for (k, &i) in which.iter().enumerate() {
            if !back[k] {
                back[k] = established_sessions(&nodes[i]) >= sessions_before[k]
                    && counter.routed_blocks(i) >= n - 1;
            }
        }
        if back.iter().all(|b| *b) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The host's neighbour-table limits, raised for the run and restored on
/// drop (also on panic).
struct NeighbourLimits {
    saved: Vec<(String, String)>,
}

impl NeighbourLimits {
    const PATH: &'static str = "/proc/sys/net/ipv4/neigh/default";

    /// Makes room for `entries` neighbour entries host-wide (never lowers a
    /// limit).
    fn raise_for(entries: usize) -> NeighbourLimits {
        let wanted = [
            ("gc_thresh1", entries / 2),
            ("gc_thresh2", entries),
            ("gc_thresh3", entries * 2),
        ];
        let mut saved = Vec::new();
        for (name, value) in wanted {
            let path = format!("{}/{name}", Self::PATH);
            let Ok(old) = std::fs::read_to_string(&path) else {
                continue;
            };
            let old = old.trim().to_owned();
            if old.parse::<usize>().is_ok_and(|o| o < value)
                && std::fs::write(&path, value.to_string()).is_ok()
            {
                eprintln!("{name}: {old} -> {value} for this run");
                saved.push((path, old));
            }
        }
        NeighbourLimits { saved }
    }
}

impl Drop for NeighbourLimits {
    fn drop(&mut self) {
        // gc_thresh1 <= 2 <= 3 must hold at every step: restore from 1 up.
        for (path, old) in &self.saved {
            let _ = std::fs::write(path, old);
        }
    }
}

/// Mesh off, `node-0` and `node-1` reflectors (one cluster id), peerings
/// by selectors.
fn apply_route_reflectors(store: &Store) {
    store.apply(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMeshEnabled: false\n",
    );
    for rr in ["node-0", "node-1"] {
        store.apply(&format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {rr}\n  labels:\n    rr: \"yes\"\nspec:\n  bgp:\n    routeReflectorClusterID: 224.0.0.1\n"
        ));
    }
    for (name, nodes, peers) in [
        ("to-rr", "\"!has(rr)\"", "has(rr)"),
        ("rr-to-clients", "has(rr)", "\"!has(rr)\""),
        ("rr-to-rr", "has(rr)", "has(rr)"),
    ] {
        store.apply(&format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n  nodeSelector: {nodes}\n  peerSelector: {peers}\n"
        ));
    }
}

/// The anchor: BIRD 2 as every node's speaker, configured as Calico
/// configures it (one iBGP session per other node, or sessions to the two
/// reflectors, each node announcing its block, learned routes exported to
/// the kernel), rendered by the testbed's one BIRD config generator with
/// Calico's timers where it has them (hold 240 s, connect retry 5 s). No
/// datastore, no IPAM: each BIRD announces a fixed /26 from the start, so
/// this times BGP and route installation only. Time from starting the
/// BIRDs until every namespace's kernel has every other node's block.
fn run_bird(n: usize, reflectors: bool, fabric: &brindle_testbed::RoutedFabric, timeout: Duration) {
    use brindle_testbed::{BgpConfig, Bird, Neighbor};
    let hosts = &fabric.hosts;
    let block = |i: usize| format!("10.245.{i}.0/26");
    let configs: Vec<BgpConfig> = (0..n)
        .map(|i| {
            let mut config = BgpConfig::new(hosts[i].ipv4, 64512).originate(&block(i));
            config.hold_time = 240;
            config.connect_retry = 5;
            let is_rr = reflectors && i < 2;
            if is_rr {
                config.cluster_id = Some(std::net::Ipv4Addr::new(224, 0, 0, 1));
            }
            for (j, other) in hosts.iter().enumerate().take(n) {
                if j == i || (reflectors && !is_rr && j >= 2) {
                    continue;
                }
                config = config.with_neighbor(Neighbor {
                    rr_client: is_rr && j >= 2,
                    ..Neighbor::new(std::net::IpAddr::V4(other.ipv4), 64512)
                });
            }
            config
        })
        .collect();
    // BIRD's kernel protocol installs with `proto bird` (12).
    let counter = RouteCounter::new(hosts, 12);
    eprintln!("starting {n} BIRDs (load {})", load_average());
    let start = Instant::now();
    let birds: Vec<Bird> = std::thread::scope(|scope| {
        let handles: Vec<_> = hosts
            .iter()
            .zip(&configs)
            .map(|(host, config)| scope.spawn(move || Bird::start(&host.ns, config).expect("BIRD")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("BIRD thread"))
            .collect()
    });
    let spawned = start.elapsed();
    let mut routed = vec![0usize; n];
    let pause = Duration::from_millis(250);
    let converged = loop {
        for (i, count) in routed.iter_mut().enumerate() {
            if *count < n - 1 {
                *count = counter.routed_blocks(i);
            }
        }
        if routed.iter().all(|&r| r >= n - 1) {
            break Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            break None;
        }
        std::thread::sleep(pause);
    };
    let cpu: Vec<f64> = birds.iter().filter_map(|b| cpu_seconds(b.pid())).collect();
    let rss: Vec<u64> = birds.iter().filter_map(|b| peak_rss_kib(b.pid())).collect();
    let topology = if reflectors {
        "two route reflectors"
    } else {
        "full mesh"
    };
    match converged {
        Some(t) => println!(
            "| {n} nodes, {topology}, BIRD 2 as the speaker (anchor: BGP and kernel only) | cold start to every block routed everywhere: {:.1} s (BIRDs started in {:.1} s) | CPU per node: mean {:.2} s, max {:.2} s | peak RSS per node: mean {:.1} MiB, max {:.1} MiB | load {} |",
            t.as_secs_f64(),
            spawned.as_secs_f64(),
            cpu.iter().sum::<f64>() / cpu.len().max(1) as f64,
            cpu.iter().copied().fold(0.0, f64::max),
            rss.iter().sum::<u64>() as f64 / rss.len().max(1) as f64 / 1024.0,
            rss.iter().max().copied().unwrap_or(0) as f64 / 1024.0,
            load_average()
        ),
        None => println!(
            "| {n} nodes, {topology}, BIRD 2 | NOT converged after {timeout:?}; fewest routes {} |",
            routed.iter().min().unwrap_or(&0)
        ),
    }
}

/// Puts the harness's main thread (which reads the hosts' routes) in
/// SCHED_FIFO, so a round of reads runs when it is due instead of taking
/// one share among hundreds of busy daemons: at load 40 a round took
/// 5-12 s, and the cold start was measured that late. The reads are cheap
/// (netlink dumps); the daemons, spawned with SCHED_RESET_ON_FORK, run as
/// ordinary processes.
fn run_ahead_of_the_daemons() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: plain syscall on the calling thread with a valid parameter.
    let rc = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc != 0 {
        eprintln!(
            "cannot run the harness in SCHED_FIFO ({}): its reads of the hosts' routes may lag under load",
            std::io::Error::last_os_error()
        );
    }
}

fn main() {
    if !common::fabric::can_run() {
        return;
    }
    // Dozens of daemons at debug level measure their logging; info unless
    // asked otherwise (read by the fixtures when they spawn a daemon).
    if std::env::var_os("BRINDLE_BENCH_NODE_LOG").is_none() {
        std::env::set_var("BRINDLE_BENCH_NODE_LOG", "info");
    }
    run_ahead_of_the_daemons();
    let n = env_number("BRINDLE_SCALE_NODES", 40) as usize;
    let timeout = Duration::from_secs(env_number("BRINDLE_SCALE_TIMEOUT", 180));
    assert!(
        (2..=250).contains(&n),
        "BRINDLE_SCALE_NODES must be 2..=250"
    );
    let _limits = NeighbourLimits::raise_for((2 * n * (n - 1) + 1024).max(1024));
    let fabric = hosts_on_two_subnets([n, 0]).expect("topology");
    if std::env::var("BRINDLE_SCALE_SPEAKER").is_ok_and(|s| s == "bird") {
        let reflectors = std::env::var("BRINDLE_SCALE_TOPOLOGY").is_ok_and(|t| t == "rr");
        run_bird(n, reflectors, &fabric, timeout);
        return;
    }
    let on_etcd = std::env::var("BRINDLE_SCALE_STORE").is_ok_and(|s| s == "etcd");
    // etcd runs in the router's namespace, reached over the underlay.
    let store = if on_etcd {
        Store::etcd_in(&fabric.router, std::net::Ipv4Addr::new(10, 0, 1, 254))
    } else {
        Store::embedded()
    };
    let store_name = if on_etcd { "etcd" } else { "embedded store" };
    store.apply(&pool_yaml("10.244.0.0/16", "Always"));
    let reflectors = std::env::var("BRINDLE_SCALE_TOPOLOGY").is_ok_and(|t| t == "rr");
    if reflectors {
        apply_route_reflectors(&store);
    }
    let topology = if reflectors {
        "two route reflectors"
    } else {
        "full mesh"
    };

    let counter = RouteCounter::new(&fabric.hosts, 80);
    eprintln!("starting {n} nodes (load {})", load_average());
    let start = Instant::now();
    let mut nodes: Vec<NodeDaemon> = fabric
        .hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            NodeDaemon::start_with(&store, host, &format!("node-{i}"), true, &["--no-policy"])
        })
        .collect();
    let spawned = start.elapsed();

    let mut last_report = Instant::now();
    // A node that has every route is not read again.
    let pause = Duration::from_millis(250);
    let mut routed = vec![0usize; n];
    let converged = loop {
        for (i, count) in routed.iter_mut().enumerate() {
            if *count < n - 1 {
                *count = counter.routed_blocks(i);
            }
        }
        if routed.iter().all(|&r| r >= n - 1) {
            break Some(start.elapsed());
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            // Routes only: asking 250 busy daemons for their sessions takes
            // seconds, and the route reads would wait for it.
            let full_routes = routed.iter().filter(|&&r| r >= n - 1).count();
            eprintln!(
                "{:>6.1}s: nodes with all routes: {full_routes}/{n} (min {}); load {}",
                start.elapsed().as_secs_f64(),
                routed.iter().min().unwrap_or(&0),
                load_average()
            );
        }
        if start.elapsed() >= timeout {
            let sessions = established_sessions_all(&nodes);
            eprintln!(
                "timed out: Established sessions per node: min {}, max {}; nodes with all routes: {}/{n}",
                sessions.iter().min().unwrap_or(&0),
                sessions.iter().max().unwrap_or(&0),
                routed.iter().filter(|&&r| r >= n - 1).count(),
            );
            break None;
        }
        std::thread::sleep(pause);
    };

    // Then watch the converged fabric: sessions that drop after coming up
    // (hold timer, flaps) show here.
    let watch = Duration::from_secs(env_number("BRINDLE_SCALE_WATCH", 0));
    let watch_start = Instant::now();
    while converged.is_some() && watch_start.elapsed() < watch {
        std::thread::sleep(Duration::from_secs(5));
        let sessions = established_sessions_all(&nodes);
        let routed: Vec<usize> = (0..n).map(|i| counter.routed_blocks(i)).collect();
        eprintln!(
            "{:>6.1}s (watching): sessions per node min {}, max {}, routes min {}; load {}",
            start.elapsed().as_secs_f64(),
            sessions.iter().min().unwrap_or(&0),
            sessions.iter().max().unwrap_or(&0),
            routed.iter().min().unwrap_or(&0),
            load_average()
        );
    }

    let cpu: Vec<f64> = nodes
        .iter()
        .filter_map(|d| d.pid().and_then(cpu_seconds))
        .collect();
    let mean_cpu = cpu.iter().sum::<f64>() / cpu.len().max(1) as f64;
    let max_cpu = cpu.iter().copied().fold(0.0, f64::max);
    let rss: Vec<u64> = nodes
        .iter()
        .filter_map(|d| d.pid().and_then(peak_rss_kib))
        .collect();
    let max_rss = rss.iter().max().copied().unwrap_or(0);
    let mean_rss = rss.iter().sum::<u64>() / rss.len().max(1) as u64;
    match converged {
        Some(t) => println!(
            "| {n} nodes, {topology}, {store_name} | cold start to every block routed everywhere: {:.1} s (daemons spawned in {:.1} s) | CPU per node: mean {mean_cpu:.2} s, max {max_cpu:.2} s ({:.0} s in all) | peak RSS per node: mean {:.1} MiB, max {:.1} MiB | load {} |",
            t.as_secs_f64(),
            spawned.as_secs_f64(),
            cpu.iter().sum::<f64>(),
            mean_rss as f64 / 1024.0,
            max_rss as f64 / 1024.0,
            load_average()
        ),
        None => {
            println!(
                "| {n} nodes, {topology}, {store_name} | NOT converged after {timeout:?} | peak RSS per node: mean {:.1} MiB, max {:.1} MiB |",
                mean_rss as f64 / 1024.0,
                max_rss as f64 / 1024.0
            );
            // The node with the fewest sessions, for the log.
            if let Some(worst) = nodes.iter().min_by_key(|d| established_sessions(d)) {
                eprintln!("{}: {:?}", worst.name, worst.status());
            }
        }
    }
    // Restarts of the converged fabric: one node (not a reflector), then a
    // tenth of the nodes at once.
    if converged.is_some() && std::env::var_os("BRINDLE_SCALE_RESTARTS").is_some() {
        let first = if reflectors { 2 } else { 0 };
        let one = [n / 2];
        let tenth: Vec<usize> = (first..n).step_by(10).take((n / 10).max(1)).collect();
        for (what, which) in [("one node", &one[..]), ("10% of the nodes", &tenth[..])] {
            std::thread::sleep(Duration::from_secs(2));
            match restart_and_time(&mut nodes, &fabric.hosts, &counter, which, timeout) {
                Some(t) => println!(
                    "| {n} nodes, {topology}, {store_name} | restart of {what} ({}): every session and route back {:.1} s after the new process started | load {} |",
                    which.len(),
                    t.as_secs_f64(),
                    load_average()
                ),
                None => println!("| {n} nodes, {topology}, {store_name} | restart of {what}: NOT back after {timeout:?} |"),
            }
        }
    }
    if let Ok(dir) = std::env::var("BRINDLE_BENCH_KEEP_LOGS") {
        std::fs::create_dir_all(&dir).ok();
        for d in &nodes {
            std::fs::write(format!("{dir}/{}.log", d.name), d.log()).ok();
        }
    }
}
