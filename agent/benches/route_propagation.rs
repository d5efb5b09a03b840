//! ADD on node A → route / reachability on node B (on demand, not in CI;
//! prints a Markdown table for docs/benchmarks.md):
//!
//! ```text
//! cargo bench -p brindle-agent --bench route_propagation
//! ```
//!
//! Two real `brindle-node` processes in namespaces on one subnet share a
//! store (full mesh, direct routes, policy on). Workloads are added
//! on node A one after the other by running the real `brindle-cni` binary as
//! a runtime does. For each, from the moment the plugin is started:
//!
//! * **route on B**: node B's kernel has the route for A's new block. Seen
//!   by `ip monitor route` in B's namespace, each line timestamped on
//!   arrival (no polling). Only a workload that opens a new block makes a
//!   new route on B, so this runs on a pool with `blockSize: 32` (every
//!   workload its own block, announced over BGP).
//! * **reachable from B**: a workload on B gets an answer from the new
//!   workload (a UDP datagram to a closed port draws ICMP port
//!   unreachable; one probe per millisecond from inside B's workload).
//!   Measured for both pools: in a `/26` block A already announces (no BGP
//!   involved: what remains is A's own work, policy included) and for a new
//!   block.
//!
//! The store is the embedded one, then etcd (in node A's namespace);
//! `BRINDLE_BENCH_STORES=embedded|etcd` picks one.
//! `BRINDLE_BENCH_NODE_LOG` is the daemons' `RUST_LOG` (default `info`) and
//! `BRINDLE_BENCH_KEEP_LOGS=DIR` keeps their logs there.
//! `BRINDLE_BENCH_WORKLOADS=N` sets how many workloads per pool (default
//! 40). `BRINDLE_BENCH_BASELINE_BIN=DIR` (holding `brindle-node` and
//! `brindle-cni` of an older build) measures that build too, first, on its
//! own fabric and store in the same run. Every namespace, process and file
//! is removed on drop, also on panic. Nothing is asserted about time.

#[path = "../tests/common/mod.rs"]
mod common;

use common::probe::Prober;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use brindle_agent::netns::{block_on_in_netns, named_netns_path};
use brindle_datastore::Datastore;
use brindle_model::parse_one;
use brindle_testbed::{poll_until, Etcd, Host, Netns, Process};

const NODE_BIN: &str = env!("CARGO_BIN_EXE_brindle-node");
const CNI_BIN: &str = env!("CARGO_BIN_EXE_brindle-cni");
const WAIT: Duration = Duration::from_secs(60);

const POOL_BLOCKS: &str = "10.72.0.0/16";
const POOL_NEW_BLOCKS: &str = "10.73.0.0/16";

struct Store {
    dir: tempfile::TempDir,
    url: String,
    /// The etcd serving `url`, if the store is etcd (stopped on drop).
    _etcd: Option<Etcd>,
}

/// Which store the fabric shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    /// One SQLite file (both nodes are namespaces of this machine).
    Embedded,
    /// etcd in node A's namespace on its underlay address, as on a node.
    Etcd,
}

/// The binaries under test.
struct Build {
    label: String,
    node: PathBuf,
    cni: PathBuf,
}

impl Store {
    /// A store of `kind` holding `documents`; etcd runs in `host`'s
    /// namespace (and is written from there).
    fn new(kind: StoreKind, host: &Host, documents: &[String], cni: &Path) -> Store {
        let dir = tempfile::Builder::new()
            .prefix("brindle-propagation")
            .tempdir()
            .unwrap();
        let (url, etcd) = match kind {
            StoreKind::Embedded => (format!("file://{}/store.db", dir.path().display()), None),
            StoreKind::Etcd => {
                let etcd = Etcd::start_in(&host.ns, IpAddr::V4(host.ipv4)).unwrap();
                (format!("etcd://{}:2379", host.ipv4), Some(etcd))
            }
        };
        let documents = documents.to_vec();
        let writer_url = url.clone();
        block_on_in_netns(&named_netns_path(host.ns.name()), move || async move {
            let ds = Datastore::open(Some(&writer_url)).await.unwrap();
            for yaml in documents {
                let resource = parse_one(&yaml).unwrap();
                ds.put(
                    brindle_datastore::keys::key_of(&resource),
                    serde_json::to_vec(&resource).unwrap(),
                )
                .await
                .unwrap();
            }
        })
        .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy(cni, bin.join("brindle-cni")).unwrap();
        std::os::unix::fs::symlink(bin.join("brindle-cni"), bin.join("brindle-ipam")).unwrap();
        Store {
            dir,
            url,
            _etcd: etcd,
        }
    }

    fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }
}

fn start_node(store: &Store, host: &Host, name: &str, binary: &Path) -> Process {
    let log = store.dir.path().join(format!("{name}.log"));
    let mut command = host.ns.command(&binary.display().to_string());
    command.args([
        "--datastore",
        &store.url,
        "--node-name",
        name,
        "--status-socket",
        &store
            .dir
            .path()
            .join(format!("{name}.sock"))
            .display()
            .to_string(),
        "--startup-grace-seconds",
        "20",
        "--ip",
        &format!("{}/24", host.ipv4),
    ]);
    command.env(
        "RUST_LOG",
        std::env::var("BRINDLE_BENCH_NODE_LOG").unwrap_or_else(|_| "info".into()),
    );
    Process::spawn(format!("brindle-node {name}"), command, &log).unwrap()
}

/// `brindle-cni ADD` in `host`'s namespace as a runtime runs it; the
/// workload's IPv4 address.
fn cni_add(
    store: &Store,
    host: &Host,
    node: &str,
    pool: &str,
    container: &str,
    netns: &Path,
) -> Ipv4Addr {
    let bin = store.plugin_dir();
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "brindle-bench",
        "type": "brindle-cni",
        "datastore": store.url,
        "nodename": node,
        "network": "allow-all",
        "ipam": {"type": "brindle-ipam", "ipv4_pools": [pool]}
    });
    // `nsenter --net` (a runtime runs the plugin in the host namespace
    // directly; `ip netns exec` would add a mount namespace and a /sys
    // remount to every ADD).
    let mut child = Command::new("nsenter")
        .arg(format!(
            "--net={}",
            named_netns_path(host.ns.name()).display()
        ))
        .arg(bin.join("brindle-cni"))
        .env_clear()
        .env("CNI_PATH", bin.display().to_string())
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "brindle-cni ADD: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let address = result["ips"][0]["address"].as_str().expect("an address");
    address.split('/').next().unwrap().parse().unwrap()
}

/// `ip monitor route` in a namespace; every line with its arrival time.
struct RouteMonitor {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl RouteMonitor {
    fn start(ns: &Netns) -> RouteMonitor {
        let mut child = Command::new("ip")
            .args(["-n", ns.name(), "monitor", "route"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        RouteMonitor { child, lines }
    }

    fn drain(&self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// Arrival time of the first line (already received or coming) that
    /// `matches`.
    fn wait_for(&self, matches: impl Fn(&str) -> bool) -> Option<Instant> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if matches(&line) => return Some(at),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn label_slug(build: &Build, kind: StoreKind) -> String {
    format!("{}-{kind:?}", build.label.replace(' ', "-")).to_lowercase()
}

fn pool_yaml(name: &str, cidr: &str, block_size: u8) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n  blockSize: {block_size}\n  ipipMode: Never\n  vxlanMode: Never\n"
    )
}

const ALLOW_ALL_PROFILE: &str = "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: allow-all\nspec:\n  ingress:\n  - action: Allow\n  egress:\n  - action: Allow\n";
const IPAM_CONFIG: &str = "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata:\n  name: default\nspec:\n  maxBlocksPerHost: 0\n";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn row(name: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    format!(
        "| {name} | {} | {} | {} | {} |",
        samples.len(),
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 99.0)),
        ms(*samples.last().unwrap())
    )
}

fn block_of_26(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}/26", o[0], o[1], o[2], o[3] & 0xc0)
}

/// Whether `ip monitor route` printed the route for `prefix` via `via`
/// being added (a deletion starts with `Deleted`).
fn is_route_to(line: &str, prefix: &str, via: Ipv4Addr) -> bool {
    !line.starts_with("Deleted")
        && line.split_whitespace().next() == Some(prefix)
        && line.contains(&format!("via {via} "))
}

fn main() {
    if !common::can_run() {
        return;
    }
    let n: usize = std::env::var("BRINDLE_BENCH_WORKLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut builds = Vec::new();
    if let Ok(dir) = std::env::var("BRINDLE_BENCH_BASELINE_BIN") {
        let dir = PathBuf::from(dir);
        builds.push(Build {
            label: "baseline".into(),
            node: dir.join("brindle-node"),
            cni: dir.join("brindle-cni"),
        });
    }
    builds.push(Build {
        label: "this build".into(),
        node: NODE_BIN.into(),
        cni: CNI_BIN.into(),
    });
    let stores = match std::env::var("BRINDLE_BENCH_STORES").as_deref() {
        Ok("embedded") => vec![StoreKind::Embedded],
        Ok("etcd") => vec![StoreKind::Etcd],
        _ => vec![StoreKind::Embedded, StoreKind::Etcd],
    };
    let mut rows = Vec::new();
    for kind in stores {
        for build in &builds {
            rows.extend(measure(build, kind, n));
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!("load average at the end: {}", load.trim());
    println!("| from the start of `brindle-cni ADD` on node A | n | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

/// The rows for one build: its own fabric, store and daemons.
fn measure(build: &Build, kind: StoreKind, n: usize) -> Vec<String> {
    let fabric = brindle_testbed::two_hosts_one_subnet().unwrap();
    let [ha, hb] = &fabric.hosts;
    for h in [ha, hb] {
        h.ns.add_default_route(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 254)))
            .unwrap();
    }
    let store = Store::new(
        kind,
        ha,
        &[
            pool_yaml("blocks", POOL_BLOCKS, 26),
            pool_yaml("new-blocks", POOL_NEW_BLOCKS, 32),
            ALLOW_ALL_PROFILE.to_owned(),
            IPAM_CONFIG.to_owned(),
        ],
        &build.cni,
    );
    let mut node_a = start_node(&store, ha, "node-a", &build.node);
    let mut node_b = start_node(&store, hb, "node-b", &build.node);
    let pid = std::process::id();

    // B's workload (the prober's home) and A's first workload (claims A's
    // /26), then wait until they reach each other: mesh up, routes in.
    let mut namespaces = Vec::new();
    let wb_ns = Netns::new("pb").unwrap();
    cni_add(
        &store,
        hb,
        "node-b",
        POOL_BLOCKS,
        &format!("wb-{pid}"),
        &named_netns_path(wb_ns.name()),
    );
    let warm_ns = Netns::new("pa").unwrap();
    let warm_ip = cni_add(
        &store,
        ha,
        "node-a",
        POOL_BLOCKS,
        &format!("warm-{pid}"),
        &named_netns_path(warm_ns.name()),
    );
    namespaces.push(warm_ns);
    let prober = Prober::start(named_netns_path(wb_ns.name()));
    let ready = poll_until(WAIT * 2, Duration::from_millis(500), || {
        node_a.check_running()?;
        node_b.check_running()?;
        Ok(prober.reachable_at(warm_ip))
    });
    assert!(
        matches!(ready, Ok(Some(_))),
        "warm-up workload {warm_ip} not reachable from B: {ready:?}\n--- a:\n{}\n--- b:\n{}",
        node_a.log_tail(4000),
        node_b.log_tail(4000)
    );
    let monitor = RouteMonitor::start(&hb.ns);

    let mut add_in_block = Vec::new();
    let mut reach_in_block = Vec::new();
    for i in 0..n {
        let ns = Netns::new("pa").unwrap();
        let started = Instant::now();
        let ip = cni_add(
            &store,
            ha,
            "node-a",
            POOL_BLOCKS,
            &format!("blk-{pid}-{i}"),
            &named_netns_path(ns.name()),
        );
        add_in_block.push(started.elapsed());
        assert_eq!(block_of_26(ip), block_of_26(warm_ip), "a second /26 on A");
        let reached = prober
            .reachable_at(ip)
            .unwrap_or_else(|| panic!("{ip} never reachable from B"));
        reach_in_block.push(reached - started);
        namespaces.push(ns);
    }

    let mut add_new = Vec::new();
    let mut route_new = Vec::new();
    let mut reach_new = Vec::new();
    for i in 0..n {
        let ns = Netns::new("pa").unwrap();
        monitor.drain();
        let started = Instant::now();
        let ip = cni_add(
            &store,
            ha,
            "node-a",
            POOL_NEW_BLOCKS,
            &format!("new-{pid}-{i}"),
            &named_netns_path(ns.name()),
        );
        add_new.push(started.elapsed());
        let routed = monitor
            .wait_for(|line| is_route_to(line, &ip.to_string(), ha.ipv4))
            .unwrap_or_else(|| panic!("B never got a route for {ip}:\n{}", node_b.log_tail(4000)));
        route_new.push(routed - started);
        let reached = prober
            .reachable_at(ip)
            .unwrap_or_else(|| panic!("{ip} never reachable from B"));
        reach_new.push(reached.max(routed) - started);
        namespaces.push(ns);
    }

    drop(prober);
    drop(monitor);
    node_a.stop();
    node_b.stop();
    if let Ok(dir) = std::env::var("BRINDLE_BENCH_KEEP_LOGS") {
        for name in ["node-a", "node-b"] {
            let kept = Path::new(&dir).join(format!("{}-{name}.log", label_slug(build, kind)));
            let _ = std::fs::copy(store.dir.path().join(format!("{name}.log")), kept);
        }
    }
    let label = format!(
        "{}, {}",
        build.label,
        match kind {
            StoreKind::Embedded => "embedded",
            StoreKind::Etcd => "etcd",
        }
    );
    vec![
        row(
            &format!("{label}: ADD returns (workload in A's /26)"),
            add_in_block,
        ),
        row(
            &format!("{label}: reachable from B (workload in A's /26)"),
            reach_in_block,
        ),
        row(&format!("{label}: ADD returns (new block)"), add_new),
        row(
            &format!("{label}: B's kernel has the route (new block)"),
            route_new,
        ),
        row(&format!("{label}: reachable from B (new block)"), reach_new),
    ]
}
