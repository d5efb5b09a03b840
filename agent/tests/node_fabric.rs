//! End to end: real `brindle-node` daemons in network namespaces sharing one
//! embedded store file, real kernel routes, real BGP (the nodes' speakers
//! and a BIRD ToR), workloads made by running the `brindle-cni` binary as a
//! container runtime does (IPAM address, veth + /32 route, WorkloadEndpoint).
//!
//! Needs root. Every namespace, process and temp file is owned by a handle
//! and removed on drop, also when a test panics.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brindle_agent::netns::named_netns_path;
use brindle_agent::node::status::StatusReport;
use brindle_datastore::Datastore;
use brindle_model::{parse_one, Resource};
use brindle_testbed::{poll_until, BgpConfig, Bird, Host, Netns, Process};

const NODE_BIN: &str = env!("CARGO_BIN_EXE_brindle-node");
const CNI_BIN: &str = env!("CARGO_BIN_EXE_brindle-cni");
const WAIT: Duration = Duration::from_secs(60);

fn can_run() -> bool {
    let ok = nix::unistd::Uid::effective().is_root();
    if !ok {
        eprintln!("skipping: needs root");
    }
    ok
}

/// The shared store and a runtime to talk to it from the test.
struct Store {
    dir: tempfile::TempDir,
    url: String,
    rt: tokio::runtime::Runtime,
    ds: Datastore,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::Builder::new()
            .prefix("brindle-node-e2e")
            .tempdir()
            .unwrap();
        let url = format!("file://{}/store.db", dir.path().display());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ds = rt.block_on(Datastore::open(Some(&url))).unwrap();
        Store { dir, url, rt, ds }
    }

    fn apply(&self, yaml: &str) {
        let resource = parse_one(yaml).unwrap();
        self.put(&resource);
    }

    fn put(&self, resource: &Resource) {
        let value = serde_json::to_vec(resource).unwrap();
        self.rt
            .block_on(self.ds.put(resource.key(), value))
            .unwrap();
    }

    fn delete(&self, key: &str) {
        self.rt.block_on(self.ds.delete(key)).unwrap();
    }
}

/// A running `brindle-node`.
struct NodeDaemon {
    name: String,
    socket: PathBuf,
    args: Vec<String>,
    process: Option<Process>,
    log: PathBuf,
}

impl NodeDaemon {
    fn start(store: &Store, host: &Host, name: &str) -> NodeDaemon {
        Self::start_with(store, host, name, true, &[])
    }

    /// `with_ip: false` leaves the address to autodetection (the interface
    /// of the default route).
    fn start_with(
        store: &Store,
        host: &Host,
        name: &str,
        with_ip: bool,
        extra: &[&str],
    ) -> NodeDaemon {
        let socket = store.dir.path().join(format!("{name}.sock"));
        let log = store.dir.path().join(format!("{name}.log"));
        let mut args: Vec<String> = vec![
            NODE_BIN.to_owned(),
            "--datastore".into(),
            store.url.clone(),
            "--node-name".into(),
            name.into(),
            "--status-socket".into(),
            socket.display().to_string(),
            "--startup-grace-seconds".into(),
            "20".into(),
        ];
        if with_ip {
            args.extend(["--ip".into(), format!("{}/24", host.ipv4)]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = NodeDaemon {
            name: name.into(),
            socket,
            args,
            process: None,
            log,
        };
        d.restart(host);
        d
    }

    fn restart(&mut self, host: &Host) {
        let mut command = host.ns.command(&self.args[0]);
        command.args(&self.args[1..]);
        command.env("RUST_LOG", "info,brindle_agent=debug");
        self.process = Some(
            Process::spawn(format!("brindle-node {}", self.name), command, &self.log).unwrap(),
        );
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    fn status(&self) -> Option<StatusReport> {
        let mut stream = UnixStream::connect(&self.socket).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the status socket shows `count` peers, all Established.
    fn wait_established(&self, count: usize) -> StatusReport {
        let report = poll_until(WAIT, Duration::from_millis(250), || {
            Ok(self
                .status()
                .filter(|r| r.peers.len() == count && r.peers.iter().all(|p| p.established)))
        })
        .unwrap();
        report.unwrap_or_else(|| {
            panic!(
                "{}: peers not established: {:?}\n{}",
                self.name,
                self.status(),
                tail(&self.log())
            )
        })
    }
}

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(6000);
    let mut start = start;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// A workload: its namespace and address.
struct Workload {
    id: String,
    ns: Netns,
    ip: Ipv4Addr,
    node: String,
    host_ifname: String,
}

/// The CNI plugin directory: `brindle-cni` and its IPAM name `brindle-ipam`.
fn plugin_dir(store: &Store) -> PathBuf {
    let bin = store.dir.path().join("bin");
    if !bin.exists() {
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy(CNI_BIN, bin.join("brindle-cni")).unwrap();
        std::os::unix::fs::symlink(bin.join("brindle-cni"), bin.join("brindle-ipam")).unwrap();
    }
    bin
}

/// Runs `brindle-cni` in `host`'s namespace exactly as a runtime does (env,
/// netconf on stdin, `CNI_PATH`); returns the result JSON.
fn cni(
    store: &Store,
    host: &Host,
    node: &str,
    command: &str,
    container: &str,
    netns: &Path,
) -> serde_json::Value {
    let bin = plugin_dir(store);
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "brindle-e2e",
        "type": "brindle-cni",
        "datastore": store.url,
        "nodename": node,
        // The profile every endpoint of this network gets.
        "network": "allow-all",
        "mtu": 1400,
        "ipam": {"type": "brindle-ipam"}
    });
    let mut child = host
        .ns
        .command(&bin.join("brindle-cni").display().to_string())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_PATH", bin.display().to_string())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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
        "brindle-cni {command}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// A workload made by `brindle-cni ADD` (address from IPAM, veth, /32
/// route, WorkloadEndpoint).
fn add_workload(store: &Store, host: &Host, node: &str, id: &str) -> Workload {
    let ns = Netns::new("w").unwrap();
    let container = format!("{id}-{}", std::process::id());
    let result = cni(
        store,
        host,
        node,
        "ADD",
        &container,
        &named_netns_path(ns.name()),
    );
    let address = result["ips"][0]["address"].as_str().expect("an address");
    let ip: Ipv4Addr = address.split('/').next().unwrap().parse().unwrap();
    let host_ifname = result["interfaces"]
        .as_array()
        .and_then(|list| list.iter().find(|i| i.get("sandbox").is_none()))
        .and_then(|i| i["name"].as_str())
        .expect("a host interface")
        .to_owned();
    Workload {
        id: container,
        ns,
        ip,
        node: node.into(),
        host_ifname,
    }
}

/// `brindle-cni DEL`: veth gone, endpoint deleted, address released.
fn delete_workload(store: &Store, host: &Host, w: &Workload) {
    cni(
        store,
        host,
        &w.node,
        "DEL",
        &w.id,
        &named_netns_path(w.ns.name()),
    );
}

fn route_of(ns: &Netns, prefix: &str) -> String {
    ns.ip(&["-4", "route", "show", "exact", prefix])
        .unwrap_or_default()
}

fn wait_route(ns: &Netns, prefix: &str, want: impl Fn(&str) -> bool, what: &str) -> String {
    let got = poll_until(WAIT, Duration::from_millis(200), || {
        let r = route_of(ns, prefix);
        Ok(want(&r).then_some(r))
    })
    .unwrap();
    got.unwrap_or_else(|| {
        panic!(
            "{what}: route {prefix} in {} is {:?}; table:\n{}",
            ns.name(),
            route_of(ns, prefix),
            ns.ip(&["route"]).unwrap_or_default()
        )
    })
}

fn block_of(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}/26", o[0], o[1], o[2], o[3] & 0xc0)
}

fn tcp_works(from: &Netns, to: &Netns, ip: Ipv4Addr) -> bool {
    let server = to
        .command("iperf3")
        .args(["-s", "-1", "-B", &ip.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut server) = server else { return false };
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let out = from
            .exec(&["iperf3", "-c", &ip.to_string(), "-n", "64K", "-4"])
            .unwrap();
        Ok(out.status.success().then_some(()))
    })
    .unwrap()
    .is_some();
    let _ = server.kill();
    let _ = server.wait();
    ok
}

fn ping_or_dump(from: &Netns, ip: Ipv4Addr, nodes: &[&NodeDaemon], hosts: &[&Host]) {
    if from.wait_ping(IpAddr::V4(ip), WAIT).is_ok() {
        return;
    }
    let mut dump = String::new();
    for h in hosts {
        dump += &format!(
            "--- {} routes:\n{}",
            h.ns.name(),
            h.ns.ip(&["route"]).unwrap_or_default()
        );
    }
    for n in nodes {
        dump += &format!("--- {} log:\n{}", n.name, tail(&n.log()));
    }
    panic!("ping {ip} from {} failed\n{dump}", from.name());
}

/// What a namespace's profile is for Calico's CNI: allow everything.
const ALLOW_ALL_PROFILE: &str = "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: allow-all\nspec:\n  ingress:\n  - action: Allow\n  egress:\n  - action: Allow\n";

fn pool_yaml(cidr: &str, vxlan: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool\nspec:\n  cidr: {cidr}\n  vxlanMode: {vxlan}\n  ipipMode: Never\n  natOutgoing: true\n"
    )
}

/// The smallest slice: two nodes on one subnet, full mesh, direct routes;
/// status JSON; a restart of one daemon keeps a running ping loss-free;
/// a route deleted by hand is repaired by the periodic resync.
#[test]
fn two_nodes_one_subnet_direct_routes() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::two_hosts_one_subnet().unwrap();
    let [ha, hb] = &fabric.hosts;
    // Proxy ARP answers a workload's ARP for 169.254.1.1 only when the host
    // has a route for it: real hosts have a default route, give these one.
    for h in [ha, hb] {
        h.ns.add_default_route(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 254)))
            .unwrap();
    }
    let store = Store::new();
    store.apply(&pool_yaml("10.71.0.0/16", "Never"));
    store.apply(ALLOW_ALL_PROFILE);
    let a = NodeDaemon::start(&store, ha, "node-a");
    let mut b = NodeDaemon::start(&store, hb, "node-b");
    let wa = add_workload(&store, ha, "node-a", "wa");
    let wb = add_workload(&store, hb, "node-b", "wb");

    let report = a.wait_established(1);
    assert_eq!(report.peers[0].address, IpAddr::V4(hb.ipv4));
    assert_eq!(report.peers[0].peer_type.as_str(), "node-to-node mesh");
    assert_eq!(report.peers[0].state, "up");
    b.wait_established(1);

    // Direct routes between the blocks, blackholes for the own block.
    let r = wait_route(
        &ha.ns,
        &block_of(wb.ip),
        |r| r.contains(&format!("via {}", hb.ipv4)),
        "a→b block",
    );
    assert!(!r.contains("vxlan"), "{r}");
    wait_route(
        &hb.ns,
        &block_of(wa.ip),
        |r| r.contains(&format!("via {}", ha.ipv4)),
        "b→a block",
    );
    wait_route(
        &ha.ns,
        &block_of(wa.ip),
        |r| r.contains("blackhole"),
        "own block",
    );
    ping_or_dump(&wa.ns, wb.ip, &[&a, &b], &[ha, hb]);
    ping_or_dump(&wb.ns, wa.ip, &[&a, &b], &[ha, hb]);
    assert!(tcp_works(&wa.ns, &wb.ns, wb.ip), "TCP a→b");

    // Restart node-b under a running ping: no loss.
    let mut ping = wa
        .ns
        .command("ping")
        .args([
            "-n",
            "-q",
            "-i",
            "0.1",
            "-c",
            "100",
            "-W",
            "1",
            &wb.ip.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    b.stop();
    std::thread::sleep(Duration::from_millis(500));
    b.restart(hb);
    let out = {
        let status = ping.wait().unwrap();
        let mut text = String::new();
        ping.stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        (status, text)
    };
    assert!(
        out.1.contains(" 0% packet loss"),
        "ping across restart: {}",
        out.1
    );
    assert!(out.0.success());
    b.wait_established(1);
}

fn node_yaml(name: &str, subnet: usize) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    subnet: \"s{subnet}\"\nspec: {{}}\n"
    )
}

fn tor_peer_yaml(subnet: usize, peer_ip: Ipv4Addr) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: tor-s{subnet}\nspec:\n  nodeSelector: subnet == 's{subnet}'\n  peerIP: {peer_ip}\n  asNumber: 65100\n"
    )
}

/// Runs `ping` from `from` to `ip` in the background while `during` runs,
/// then asserts no reply was lost.
fn ping_loss_free_during(from: &Netns, ip: Ipv4Addr, during: impl FnOnce()) {
    let mut ping = from
        .command("ping")
        .args([
            "-n",
            "-q",
            "-i",
            "0.1",
            "-c",
            "100",
            "-W",
            "1",
            &ip.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    during();
    let status = ping.wait().unwrap();
    let mut text = String::new();
    ping.stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.contains(" 0% packet loss") && status.success(),
        "ping {ip}: {text}"
    );
}

/// The full picture: three nodes on two subnets joined by a router that
/// also runs BIRD as ToR (peered through `BGPPeer`s selected by node
/// labels), an IPPool with `vxlanMode: CrossSubnet`. Same-subnet traffic is
/// routed directly, cross-subnet traffic through `vxlan.brindle`; deleted
/// and new workloads are (un)routed everywhere; a route deleted by hand is
/// repaired by the resync; a node restart keeps a cross-subnet ping
/// loss-free.
#[test]
fn three_nodes_two_subnets_vxlan_cross_subnet_with_bird_tor() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::hosts_on_two_subnets([2, 1]).unwrap();
    let (ha, hb, hc) = (&fabric.hosts[0], &fabric.hosts[1], &fabric.hosts[2]);
    let gw0 = Ipv4Addr::new(10, 0, 1, 254);
    let gw1 = Ipv4Addr::new(10, 0, 2, 254);
    let store = Store::new();
    store.apply(&pool_yaml("10.72.0.0/16", "CrossSubnet"));
    store.apply(ALLOW_ALL_PROFILE);
    for (name, subnet) in [("node-a", 0), ("node-b", 0), ("node-c", 1)] {
        store.apply(&node_yaml(name, subnet));
    }
    store.apply(&tor_peer_yaml(0, gw0));
    store.apply(&tor_peer_yaml(1, gw1));
    let mut tor_config = BgpConfig::new(gw0, 65100);
    for h in [ha, hb, hc] {
        tor_config = tor_config.neighbor(IpAddr::V4(h.ipv4), 64512);
    }
    let bird = Bird::start(&fabric.router, &tor_config).unwrap();

    let resync = ["--resync-seconds", "3"];
    let a = NodeDaemon::start_with(&store, ha, "node-a", true, &resync);
    let b = NodeDaemon::start_with(&store, hb, "node-b", true, &resync);
    // node-c finds its address itself, from the interface of its default route.
    let mut c = NodeDaemon::start_with(&store, hc, "node-c", false, &resync);
    let wa = add_workload(&store, ha, "node-a", "wa");
    let wb = add_workload(&store, hb, "node-b", "wb");
    let wc = add_workload(&store, hc, "node-c", "wc");

    // Every node: two mesh sessions and its ToR, all Established.
    for (node, tor) in [(&a, gw0), (&b, gw0), (&c, gw1)] {
        let report = node.wait_established(3);
        let kinds: Vec<(IpAddr, &str)> = report
            .peers
            .iter()
            .map(|p| (p.address, p.peer_type.as_str()))
            .collect();
        assert!(
            kinds.contains(&(IpAddr::V4(tor), "node specific")),
            "{kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| k.1 == "node-to-node mesh").count(),
            2,
            "{kinds:?}"
        );
    }
    let node_c = store
        .rt
        .block_on(store.ds.get("/brindle/resources/v3/nodes/node-c"))
        .unwrap()
        .unwrap();
    let node_c = String::from_utf8_lossy(&node_c.value).into_owned();
    assert!(
        node_c.contains("\"ipv4Address\":\"10.0.2.1/24\""),
        "autodetected: {node_c}"
    );
    assert!(node_c.contains("\"s1\""), "labels kept: {node_c}");
    assert!(
        node_c.contains("ipv4VXLANTunnelAddr"),
        "tunnel address: {node_c}"
    );
    for h in [ha, hb, hc] {
        bird.wait_neighbor_established(IpAddr::V4(h.ipv4), WAIT)
            .unwrap();
    }
    for w in [&wa, &wb, &wc] {
        bird.wait_route(&block_of(w.ip), WAIT).unwrap();
    }

    // Same subnet: direct. Across subnets: VXLAN.
    let direct = wait_route(
        &ha.ns,
        &block_of(wb.ip),
        |r| r.contains(&format!("via {} dev eth0", hb.ipv4)),
        "a→b",
    );
    assert!(!direct.contains("vxlan"), "{direct}");
    let tunnelled = wait_route(
        &ha.ns,
        &block_of(wc.ip),
        |r| r.contains("dev vxlan.brindle") && r.contains("onlink"),
        "a→c",
    );
    eprintln!("a→b: {direct}a→c: {tunnelled}");
    wait_route(
        &hc.ns,
        &block_of(wa.ip),
        |r| r.contains("dev vxlan.brindle"),
        "c→a",
    );
    let mtu = ha.ns.ip(&["link", "show", "vxlan.brindle"]).unwrap();
    assert!(mtu.contains("mtu 1450"), "{mtu}");

    let hosts = [ha, hb, hc];
    let nodes = [&a, &b, &c];
    for from in [&wa, &wb, &wc] {
        for to in [&wa, &wb, &wc] {
            if from.ip != to.ip {
                ping_or_dump(&from.ns, to.ip, &nodes, &hosts);
            }
        }
    }
    assert!(tcp_works(&wa.ns, &wc.ns, wc.ip), "TCP a→c over VXLAN");
    assert!(tcp_works(&wc.ns, &wb.ns, wb.ip), "TCP c→b over VXLAN");
    assert!(tcp_works(&wa.ns, &wb.ns, wb.ip), "TCP a→b direct");

    // Policy is programmed: the hook chains and the natOutgoing masquerade.
    let rules = poll_until(WAIT, Duration::from_millis(250), || {
        let text = ha.ns.run(&["iptables-save"])?;
        Ok((text.contains("brindle-FORWARD") && text.contains("MASQUERADE")).then_some(text))
    })
    .unwrap();
    assert!(
        rules.is_some(),
        "{}",
        ha.ns.run(&["iptables-save"]).unwrap_or_default()
    );
    // A GlobalNetworkPolicy denying wa into everything cuts wa→c (and
    // only that), and deleting it restores the flow.
    store.apply(&format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: deny-wa\nspec:\n  selector: all()\n  order: 10\n  ingress:\n  - action: Deny\n    source:\n      nets: [\"{}/32\"]\n  - action: Allow\n  egress:\n  - action: Allow\n",
        wa.ip
    ));
    let denied = poll_until(WAIT, Duration::from_millis(250), || {
        Ok((!wa.ns.ping(IpAddr::V4(wc.ip))?).then_some(()))
    })
    .unwrap();
    assert!(denied.is_some(), "deny policy not enforced");
    ping_or_dump(&wb.ns, wc.ip, &nodes, &hosts);
    store.delete("/brindle/resources/v3/globalnetworkpolicies/deny-wa");
    ping_or_dump(&wa.ns, wc.ip, &nodes, &hosts);

    // A route deleted by hand is put back by the periodic resync.
    ha.ns.ip(&["route", "del", &block_of(wc.ip)]).unwrap();
    wait_route(
        &ha.ns,
        &block_of(wc.ip),
        |r| r.contains("dev vxlan.brindle"),
        "repaired a→c",
    );

    // Delete wb: its /32 leaves node-b, no node routes it specifically.
    let wb_host = format!("{}/32", wb.ip);
    assert!(route_of(&hb.ns, &wb_host).contains(&wb.host_ifname));
    delete_workload(&store, hb, &wb);
    for h in hosts {
        wait_route(&h.ns, &wb_host, str::is_empty, "deleted workload");
    }
    assert!(!wa.ns.ping(IpAddr::V4(wb.ip)).unwrap());

    // A new workload on node-a is reachable from node-b's and node-c's.
    let wa2 = add_workload(&store, ha, "node-a", "wa2");
    ping_or_dump(&wc.ns, wa2.ip, &nodes, &hosts);
    let wb2 = add_workload(&store, hb, "node-b", "wb2");
    ping_or_dump(&wb2.ns, wa2.ip, &nodes, &hosts);

    // Restarting node-c keeps a running a→c ping (over VXLAN) loss-free,
    // even with the daemon down for seconds: its BGP sessions die without a
    // NOTIFICATION, so node-a keeps c's routes as stale (graceful restart)
    // and c's kernel keeps its own.
    ping_loss_free_during(&wa.ns, wc.ip, || {
        c.stop();
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            route_of(&ha.ns, &block_of(wc.ip)).contains("vxlan.brindle"),
            "a dropped c's route while c was down"
        );
        c.restart(hc);
    });
    c.wait_established(3);
    assert_eq!(wa2.node, "node-a");
    drop(bird);
}

/// Route reflection: mesh off, node-c (with `routeReflectorClusterID`)
/// reflects between node-a and node-b, peerings come from `BGPPeer`s with
/// node and peer selectors; the clients still route to each other directly
/// (the reflector keeps the next hop).
#[test]
fn route_reflector_replaces_the_mesh() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::hosts_on_two_subnets([3, 0]).unwrap();
    let (ha, hb, hc) = (&fabric.hosts[0], &fabric.hosts[1], &fabric.hosts[2]);
    let store = Store::new();
    store.apply(&pool_yaml("10.73.0.0/16", "Never"));
    store.apply(ALLOW_ALL_PROFILE);
    store.apply(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMeshEnabled: false\n",
    );
    store.apply(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: node-c\n  labels:\n    rr: \"yes\"\nspec:\n  bgp:\n    routeReflectorClusterID: 224.0.0.1\n",
    );
    store.apply(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: to-rr\nspec:\n  nodeSelector: \"!has(rr)\"\n  peerSelector: has(rr)\n",
    );
    store.apply(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: rr-to-clients\nspec:\n  nodeSelector: has(rr)\n  peerSelector: \"!has(rr)\"\n",
    );
    let a = NodeDaemon::start(&store, ha, "node-a");
    let b = NodeDaemon::start(&store, hb, "node-b");
    let c = NodeDaemon::start(&store, hc, "node-c");
    let wa = add_workload(&store, ha, "node-a", "wa");
    let wb = add_workload(&store, hb, "node-b", "wb");

    for (node, count) in [(&a, 1), (&b, 1), (&c, 2)] {
        let report = node.wait_established(count);
        assert!(
            report
                .peers
                .iter()
                .all(|p| p.peer_type.as_str() == "node specific"),
            "{report:?}"
        );
    }
    // a learns b's block only through the reflector, next hop unchanged.
    wait_route(
        &ha.ns,
        &block_of(wb.ip),
        |r| r.contains(&format!("via {}", hb.ipv4)),
        "a→b via RR",
    );
    wait_route(
        &hb.ns,
        &block_of(wa.ip),
        |r| r.contains(&format!("via {}", ha.ipv4)),
        "b→a via RR",
    );
    ping_or_dump(&wa.ns, wb.ip, &[&a, &b, &c], &[ha, hb, hc]);
}
