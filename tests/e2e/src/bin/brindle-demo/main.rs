//! `brindle-demo`: brings up a small Brindle fabric in network namespaces
//! and reports, from real measurements only, what reaches what.
//!
//! Topology: three nodes on two subnets joined by a router (node-0 and
//! node-1 on 10.0.1.0/24, node-2 on 10.0.2.0/24), one embedded store file
//! shared by all nodes, an IPPool with `vxlanMode: CrossSubnet` (this kernel
//! has no ipip module), a `brindle-node` daemon per node namespace, and two
//! workloads per node made by running `brindle-cni` exactly as a container
//! runtime does: one in network `blue`, one in network `red`.
//!
//! The demo finds `brindle-node`, `brindle-cni` and `brindlectl` next to its
//! own executable (`scripts/demo` builds them all). It prints the BGP
//! sessions, two nodes' routing tables and a workload × workload matrix of
//! ICMP and TCP results checked against the expectation "same network
//! passes, different networks are blocked". When docker.io is installed a
//! Docker part follows (see `docker`): dockerd with `brindle-docker` on two
//! nodes, two Docker networks, the same kind of matrix. Exit status: 0 only if every
//! expectation held and teardown left nothing behind, 1 if some did not, 2
//! on error or interruption. Everything (daemons, namespaces, temp files) is
//! removed at the end and on Ctrl-C / SIGTERM / SIGHUP. Needs root.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use brindle_testbed::{hosts_on_two_subnets, Host, Netns, Process, RoutedFabric};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

mod docker;

/// How long the demo waits for the fabric to converge at each step.
const CONVERGE: Duration = Duration::from_secs(90);
const POOL_CIDR: &str = "10.244.0.0/16";
const NETWORKS: [&str; 2] = ["blue", "red"];
const TCP_PORT: &str = "5201";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

#[allow(non_camel_case_types)]
type libc_int = std::os::raw::c_int;

/// Turns Ctrl-C, SIGTERM and SIGHUP into a flag checked between steps, so the
/// demo unwinds normally and every namespace and process is removed.
fn install_signal_handlers() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { sigaction(signal, &action) }
            .with_context(|| format!("installing {signal} handler"))?;
    }
    Ok(())
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Polls `probe` every 250 ms until it yields a value or `timeout` passes
/// (`None`); stops early, with an error, on Ctrl-C.
fn wait_for<T>(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    loop {
        check_interrupted()?;
        if let Some(value) = probe()? {
            return Ok(Some(value));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The other Brindle binaries, found next to this one.
struct Binaries {
    node: PathBuf,
    cni: PathBuf,
    ctl: PathBuf,
    /// Only the Docker part needs it.
    docker: Option<PathBuf>,
}

impl Binaries {
    fn find() -> Result<Binaries> {
        let exe = std::env::current_exe().context("locating brindle-demo")?;
        let dir = exe.parent().context("brindle-demo has no directory")?;
        let find = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            if !path.is_file() {
                bail!(
                    "{} not found next to brindle-demo; build it first \
                     (scripts/demo does: cargo build --release -p brindle-agent -p brindlectl)",
                    path.display()
                );
            }
            Ok(path)
        };
        Ok(Binaries {
            node: find("brindle-node")?,
            cni: find("brindle-cni")?,
            ctl: find("brindlectl")?,
            docker: find("brindle-docker").ok(),
        })
    }
}

/// A running `brindle-node` in a node namespace.
struct NodeDaemon {
    name: String,
    socket: PathBuf,
    process: Process,
}

/// A workload made by `brindle-cni ADD`.
struct Workload {
    ns: Netns,
    node: usize,
    network: &'static str,
    ip: Ipv4Addr,
    host_if: String,
    _tcp_server: Process,
}

impl Workload {
    fn label(&self) -> String {
        format!("n{}-{}", self.node, self.network)
    }
}

fn main() -> ExitCode {
    if let Err(e) = install_signal_handlers() {
        eprintln!("brindle-demo: {e:#}");
        return ExitCode::from(2);
    }
    let mut created = Vec::new();
    let mut temp_dir = None;
    let outcome = run(&mut created, &mut temp_dir);
    // Everything `run` built has been dropped by now; verify, don't assume.
    println!();
    let left = leftover_namespaces(&created);
    let temp_left = temp_dir.as_ref().is_some_and(|d: &PathBuf| d.exists());
    if left.is_empty() && !temp_left {
        println!(
            "== Teardown: all {} namespaces, their daemons and the temp dir removed.",
            created.len()
        );
    } else {
        println!(
            "== Teardown: FAILED, still present: namespaces [{}]{}",
            left.join(", "),
            if temp_left { ", temp dir" } else { "" }
        );
    }
    match outcome {
        Ok(true) if left.is_empty() && !temp_left => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("brindle-demo: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(created: &mut Vec<String>, temp_path: &mut Option<PathBuf>) -> Result<bool> {
    let bins = Binaries::find()?;
    println!("Brindle demo: a BGP-routed container fabric in network namespaces on this machine\n");

    println!("== Underlay: 3 nodes on two subnets joined by a router");
    let fabric = hosts_on_two_subnets([2, 1]).context("building the node underlay")?;
    created.extend(fabric.hosts.iter().map(|h| h.ns.name().to_string()));
    created.push(fabric.router.name().to_string());
    created.extend(fabric.lans.iter().map(|l| l.switch().name().to_string()));
    for (i, host) in fabric.hosts.iter().enumerate() {
        let (net, len) = brindle_testbed::topology::subnet_v4(host.subnet);
        println!("  node-{i}: {} on {net}/{len}", host.ipv4);
    }
    check_interrupted()?;

    let dir = tempfile::Builder::new()
        .prefix("brindle-demo")
        .tempdir()
        .context("creating the temp dir")?;
    *temp_path = Some(dir.path().to_owned());
    let store_url = format!("file://{}/store.db", dir.path().display());

    println!("\n== Store: embedded SQLite at {store_url}");
    let pool = format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: demo-pool\nspec:\n  cidr: {POOL_CIDR}\n  blockSize: 26\n  ipipMode: Never\n  vxlanMode: CrossSubnet\n  natOutgoing: false\n"
    );
    let pool_file = dir.path().join("pool.yaml");
    std::fs::write(&pool_file, &pool)?;
    let applied = brindlectl(
        &bins,
        &store_url,
        &["apply", "-f", &pool_file.display().to_string()],
    )?;
    println!(
        "  brindlectl apply: IPPool {POOL_CIDR}, /26 blocks, vxlanMode CrossSubnet: {}",
        applied.trim()
    );
    println!("  (VXLAN carries cross-subnet traffic here because this kernel has no ipip module;");
    println!("   ipip/tunl0 is exercised by the qemu test.)");

    println!("\n== BGP: brindle-node in each node namespace, full mesh");
    let mut nodes = Vec::new();
    for (i, host) in fabric.hosts.iter().enumerate() {
        // node-2 finds its own address (the interface of its default route).
        nodes.push(start_node(&bins, &store_url, dir.path(), host, i, i != 2)?);
        check_interrupted()?;
    }
    for (node, host) in nodes.iter_mut().zip(&fabric.hosts) {
        let table = wait_established(&bins, node, fabric.hosts.len() - 1)?;
        match table {
            Some(table) => {
                println!("  {} ({}):", node.name, host.ipv4);
                for line in table
                    .lines()
                    .filter(|l| l.starts_with('|') || l.starts_with('+'))
                {
                    println!("    {line}");
                }
            }
            None => {
                println!("  {}: BGP sessions NOT established:", node.name);
                let status = node_status(&bins, node).unwrap_or_default();
                println!("{status}");
                println!("  last log lines:\n{}", node.process.log_tail(3000));
                bail!("{}: BGP mesh did not come up", node.name);
            }
        }
    }

    println!("\n== Workloads: brindle-cni ADD (as a container runtime calls it), two per node");
    let plugins = plugin_dir(&bins, dir.path())?;
    let mut workloads = Vec::new();
    for (i, host) in fabric.hosts.iter().enumerate() {
        for network in NETWORKS {
            let w = add_workload(&plugins, &store_url, host, i, network)?;
            created.push(w.ns.name().to_string());
            println!(
                "  {:<8} {:<15} on node-{i}, host side {} (netns {})",
                w.label(),
                w.ip,
                w.host_if,
                w.ns.name()
            );
            workloads.push(w);
            check_interrupted()?;
        }
    }

    println!("\n== Routes: every node learns the others' /26 blocks over BGP");
    wait_all_routes(&fabric, &workloads, &nodes)?;
    for i in [0, 2] {
        let host = &fabric.hosts[i];
        println!("  node-{i} ({}): ip -4 route", host.ipv4);
        for line in host.ns.ip(&["-4", "route"])?.lines() {
            println!("    {line}");
        }
    }

    let all_ok = reachability(&fabric, &workloads)?;
    let docker_ok = docker::docker_part(&bins, &store_url, dir.path(), &fabric)?;

    drop(workloads);
    for mut node in nodes {
        node.process.stop();
    }
    drop(fabric);
    dir.close().context("removing the temp dir")?;
    Ok(all_ok && docker_ok != Some(false))
}

fn brindlectl(bins: &Binaries, store_url: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(&bins.ctl)
        .arg("--datastore")
        .arg(store_url)
        .args(args)
        .output()
        .context("running brindlectl")?;
    if !out.status.success() {
        bail!(
            "brindlectl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn start_node(
    bins: &Binaries,
    store_url: &str,
    dir: &Path,
    host: &Host,
    index: usize,
    give_ip: bool,
) -> Result<NodeDaemon> {
    let name = format!("node-{index}");
    let socket = dir.join(format!("{name}.sock"));
    let mut command = host.ns.command(&bins.node.display().to_string());
    command.args([
        "--datastore",
        store_url,
        "--node-name",
        &name,
        "--status-socket",
        &socket.display().to_string(),
        "--startup-grace-seconds",
        "10",
    ]);
    if give_ip {
        command.args(["--ip", &format!("{}/24", host.ipv4)]);
    }
    command.env("RUST_LOG", "info");
    let process = Process::spawn(
        format!("brindle-node {name}"),
        command,
        &dir.join(format!("{name}.log")),
    )
    .with_context(|| format!("starting brindle-node {name}"))?;
    println!(
        "  {name}: brindle-node started ({})",
        if give_ip {
            format!("--ip {}/24", host.ipv4)
        } else {
            "address autodetected".to_string()
        }
    );
    Ok(NodeDaemon {
        name,
        socket,
        process,
    })
}

fn node_status(bins: &Binaries, node: &NodeDaemon) -> Result<String> {
    let out = std::process::Command::new(&bins.ctl)
        .args(["node", "status", "--socket"])
        .arg(&node.socket)
        .output()
        .context("running brindlectl node status")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until `brindlectl node status` shows `peers` sessions, all
/// Established; returns that output.
fn wait_established(
    bins: &Binaries,
    node: &mut NodeDaemon,
    peers: usize,
) -> Result<Option<String>> {
    wait_for(CONVERGE, || {
        node.process
            .check_running()
            .with_context(|| format!("{}: {}", node.name, node.process.log_tail(3000)))?;
        let text = node_status(bins, node)?;
        let rows = text
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains("PEER ADDRESS"));
        let (mut total, mut up) = (0, 0);
        for row in rows {
            total += 1;
            up += usize::from(row.contains("Established"));
        }
        Ok((total == peers && up == peers).then_some(text))
    })
}

/// The CNI plugin directory: `brindle-cni` and its IPAM name `brindle-ipam`.
fn plugin_dir(bins: &Binaries, dir: &Path) -> Result<PathBuf> {
    let plugins = dir.join("cni-bin");
    std::fs::create_dir(&plugins)?;
    std::os::unix::fs::symlink(&bins.cni, plugins.join("brindle-cni"))?;
    std::os::unix::fs::symlink(&bins.cni, plugins.join("brindle-ipam"))?;
    Ok(plugins)
}

/// Runs `brindle-cni ADD` in the node's namespace (env, netconf on stdin,
/// `CNI_PATH`), then starts a TCP server in the new workload.
fn add_workload(
    plugins: &Path,
    store_url: &str,
    host: &Host,
    node: usize,
    network: &'static str,
) -> Result<Workload> {
    let ns = Netns::new(&format!("w{node}{}", &network[..1]))?;
    let container = format!("demo-{node}-{network}-{}", std::process::id());
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"brindle-demo","type":"brindle-cni","datastore":"{store_url}","nodename":"node-{node}","network":"{network}","mtu":1400,"ipam":{{"type":"brindle-ipam"}}}}"#
    );
    let mut child = host
        .ns
        .command(&plugins.join("brindle-cni").display().to_string())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_PATH", plugins)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", &container)
        .env("CNI_NETNS", format!("/var/run/netns/{}", ns.name()))
        .env("CNI_IFNAME", "eth0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running brindle-cni")?;
    child
        .stdin
        .take()
        .context("brindle-cni stdin")?
        .write_all(conf.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "brindle-cni ADD for node-{node}/{network}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let result: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("decoding the CNI result")?;
    let ip: Ipv4Addr = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .context("CNI result has no address")?
        .parse()?;
    let host_if = result["interfaces"]
        .as_array()
        .and_then(|list| list.iter().find(|i| i.get("sandbox").is_none()))
        .and_then(|i| i["name"].as_str())
        .context("CNI result has no host interface")?
        .to_owned();
    let log = plugins
        .parent()
        .unwrap_or(plugins)
        .join(format!("{}-iperf3.log", ns.name()));
    let tcp_server = ns.spawn(
        "iperf3 server",
        &["iperf3", "-s", "-B", &ip.to_string(), "-p", TCP_PORT],
        &log,
    )?;
    Ok(Workload {
        ns,
        node,
        network,
        ip,
        host_if,
        _tcp_server: tcp_server,
    })
}

fn block_of(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}/26", o[0], o[1], o[2], o[3] & 0xc0)
}

/// Waits until every node routes every other node's workload block (and
/// holds its own as a blackhole), and has policy rules for its workloads.
fn wait_all_routes(
    fabric: &RoutedFabric,
    workloads: &[Workload],
    nodes: &[NodeDaemon],
) -> Result<()> {
    for (i, host) in fabric.hosts.iter().enumerate() {
        for w in workloads {
            let block = block_of(w.ip);
            let found = wait_for(CONVERGE, || {
                let route = host.ns.ip(&["-4", "route", "show", "exact", &block])?;
                let ok = if w.node == i {
                    route.contains("blackhole")
                } else {
                    route.contains(" via ")
                };
                Ok(ok.then_some(()))
            })?;
            if found.is_none() {
                bail!(
                    "node-{i} has no route for {block} (workload {}):\n{}\n{}",
                    w.label(),
                    host.ns.ip(&["-4", "route"]).unwrap_or_default(),
                    nodes[i].process.log_tail(3000)
                );
            }
        }
        // Policy is programmed once the node's rules name its workloads'
        // interfaces; before that, nothing is isolated yet.
        let local: Vec<&Workload> = workloads.iter().filter(|w| w.node == i).collect();
        let programmed = wait_for(CONVERGE, || {
            let rules = host.ns.run(&["iptables-save"])?;
            // Endpoints are ipset members written `address,interface`.
            let sets = host.ns.run(&["ipset", "list"])?;
            let ready = rules.contains("brindle-FORWARD")
                && local.iter().all(|w| sets.contains(&w.host_if));
            Ok(ready.then_some(()))
        })?;
        if programmed.is_none() {
            bail!(
                "node-{i}: policy rules for its workloads never appeared:\n{}",
                nodes[i].process.log_tail(3000)
            );
        }
    }
    Ok(())
}

/// Pings and TCP-connects every workload from every other; prints the
/// matrix and PASS/FAIL per expectation; returns whether all held.
fn reachability(fabric: &RoutedFabric, workloads: &[Workload]) -> Result<bool> {
    println!("\n== Reachability: workload x workload, measured now (ICMP echo / TCP connect)");
    println!("  expectation: same network (blue-blue, red-red) passes, blue<->red is blocked");
    let same_subnet =
        |a: &Workload, b: &Workload| fabric.hosts[a.node].subnet == fabric.hosts[b.node].subnet;
    print!("  {:>9}", "from\\to");
    for w in workloads {
        print!(" {:>10}", w.label());
    }
    println!();
    let (mut held, mut total) = (0, 0);
    let mut failures = Vec::new();
    for from in workloads {
        print!("  {:>9}", from.label());
        for to in workloads {
            if std::ptr::eq(from, to) {
                print!(" {:>10}", "-");
                continue;
            }
            let expect = from.network == to.network;
            // Routing has converged; a passing pair may still need a moment
            // for the first ARP/neighbour resolution, so it gets retries.
            // A blocked pair is measured once, after policy is in place.
            let ping = if expect {
                wait_for(Duration::from_secs(15), || {
                    Ok(from.ns.ping(IpAddr::V4(to.ip))?.then_some(()))
                })?
                .is_some()
            } else {
                from.ns.ping(IpAddr::V4(to.ip))?
            };
            check_interrupted()?;
            let tcp = if expect {
                wait_for(Duration::from_secs(15), || {
                    Ok(tcp_connects(from, to)?.then_some(()))
                })?
                .is_some()
            } else {
                tcp_connects(from, to)?
            };
            check_interrupted()?;
            let mut cell = String::new();
            for (proto, got) in [("icmp", ping), ("tcp", tcp)] {
                total += 1;
                if got == expect {
                    held += 1;
                } else {
                    failures.push(format!(
                        "{} -> {} {proto}: expected {}, got {}",
                        from.label(),
                        to.label(),
                        if expect { "pass" } else { "blocked" },
                        if got { "pass" } else { "blocked" }
                    ));
                }
                cell.push_str(if got { "ok" } else { "--" });
                cell.push('/');
            }
            cell.pop();
            let verdict = if (ping == expect) && (tcp == expect) {
                " "
            } else {
                "!"
            };
            print!(" {:>10}", format!("{cell}{verdict}"));
        }
        println!();
    }
    println!("  (ok = reached, -- = blocked; cell is icmp/tcp; '!' marks a broken expectation)");
    let cross = workloads
        .iter()
        .flat_map(|a| workloads.iter().map(move |b| (a, b)))
        .filter(|(a, b)| a.network == b.network && !std::ptr::eq(*a, *b) && !same_subnet(a, b))
        .count();
    println!(
        "  {cross} same-network pairs cross the router over VXLAN, the rest are routed directly."
    );
    for f in &failures {
        println!("  FAIL {f}");
    }
    if failures.is_empty() {
        println!("  PASS: all {total} expectations held ({held} of {total}).");
    } else {
        println!(
            "  FAIL: {held} of {total} expectations held, {} did not.",
            failures.len()
        );
    }
    Ok(failures.is_empty())
}

/// A TCP connection (and a tiny iperf3 transfer) from `from` to `to`'s
/// server; false if it cannot connect within 1.5 s.
fn tcp_connects(from: &Workload, to: &Workload) -> Result<bool> {
    let out = from.ns.exec(&[
        "timeout",
        "5",
        "iperf3",
        "-4",
        "-c",
        &to.ip.to_string(),
        "-p",
        TCP_PORT,
        "-n",
        "16K",
        "--connect-timeout",
        "1500",
    ])?;
    Ok(out.status.success())
}

fn leftover_namespaces(names: &[String]) -> Vec<String> {
    let Ok(out) = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
    else {
        return names.to_vec();
    };
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let live: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names
        .iter()
        .filter(|n| live.contains(&n.as_str()))
        .cloned()
        .collect()
}
