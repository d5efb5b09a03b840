//! Peering a real `brindle-node` with a top-of-rack router (a real BIRD 2
//! or FRR in the router's namespace) as Calico users configure it:
//! `BGPPeer` fields that a ToR in production asks for.
//!
//! TTL security (GTSM, RFC 5082): with `ttlSecurity: 1` on the BGPPeer the
//! session with a ToR that requires it comes up; without it the ToR drops
//! the node's segments (sent with the default TTL).
//!
//! Passwords: `password.secretKeyRef {name, key}` is the file
//! `<secrets dir>/<name>/<key>`. With no file the peer is held back (no
//! session without the password asked for) and `node status` says which
//! file is missing; with a wrong password the ToR drops our segments and
//! the session stays down; with the right one it comes up, and a changed
//! file re-keys the session without restarting the daemon.
//!
//! Needs root. Every namespace, process and temp file is removed on drop,
//! also when a test panics.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use brindle_testbed::{poll_until, BgpConfig, Bird, Frr, Neighbor};
use common::fabric::*;

const PASSWORD: &str = "tor-s3cret";
const TOR_ROUTE: &str = "10.99.0.0/24";

fn write_secret(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir.join("tor-auth")).unwrap();
    std::fs::write(dir.join("tor-auth/password"), text).unwrap();
}

/// The ToR's side: requires our password and GTSM, announces a route.
fn tor_config(node_ip: Ipv4Addr, gw: Ipv4Addr) -> BgpConfig {
    BgpConfig::new(gw, 65100)
        .with_neighbor(Neighbor {
            password: Some(PASSWORD.into()),
            ttl_security: Some(1),
            ..Neighbor::new(IpAddr::V4(node_ip), 64512)
        })
        .originate(TOR_ROUTE)
}

/// One rack: node-a's host on the first subnet (its router at
/// 10.0.1.254), the embedded store with these pools, an allow-all profile
/// and node-a's Node.
fn rack(pools: &[&str]) -> (brindle_testbed::RoutedFabric, Store) {
    let fabric = brindle_testbed::hosts_on_two_subnets([1, 0]).unwrap();
    let store = Store::embedded();
    for pool in pools {
        store.apply(pool);
    }
    store.apply(ALLOW_ALL_PROFILE);
    store.apply(&node_yaml("node-a", 0));
    (fabric, store)
}

/// Another router on the first rack's segment, at `address` (a /24).
fn second_router(
    fabric: &brindle_testbed::RoutedFabric,
    tag: &str,
    address: Ipv4Addr,
) -> brindle_testbed::Netns {
    let ns = brindle_testbed::Netns::new(tag).unwrap();
    fabric.lans[0]
        .attach(&ns, "eth0", &[&format!("{address}/24")])
        .unwrap();
    ns
}

/// A BGPPeer of node-a with the router at `address` in `asn`.
fn node_a_peer(name: &str, address: impl std::fmt::Display, asn: u32) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n  node: node-a\n  peerIP: {address}\n  asNumber: {asn}\n"
    )
}

/// Waits until `node status` shows the ToR's row with `want` true of it.
fn wait_tor_row(
    node: &NodeDaemon,
    tor: &dyn Tor,
    what: &str,
    want: impl Fn(&brindle_model::status::PeerRow) -> bool,
) {
    let seen = poll_until(WAIT, Duration::from_millis(200), || {
        Ok(node
            .status()
            .and_then(|r| r.peers.into_iter().find(|p| p.name == "tor-s0"))
            .filter(|p| want(p)))
    })
    .unwrap();
    assert!(
        seen.is_some(),
        "{what}: node status {:?}\n{}\nThe ToR's view:\n{}",
        node.status(),
        tail(&node.log()),
        tor.view()
    );
}

fn tor_peer(gw: Ipv4Addr, ttl_security: bool) -> String {
    let mut yaml = format!(
        "{}  password:\n    secretKeyRef:\n      name: tor-auth\n      key: password\n",
        tor_peer_yaml(0, gw)
    );
    if ttl_security {
        yaml.push_str("  ttlSecurity: 1\n");
    }
    yaml
}

/// No session for `for_at_least`: the ToR never Established, no ToR route
/// in the node's kernel. (Our own side may look Established for a moment
/// when GTSM is off on our side: BIRD sets the minimum TTL on a connection
/// only once it accepts it, so the OPEN we sent before that is read, and
/// our later segments are dropped until its hold timer ends the attempt.)
fn stays_down(
    node: &NodeDaemon,
    tor: &dyn Tor,
    host: &brindle_testbed::Host,
    for_at_least: Duration,
    what: &str,
) {
    let until = std::time::Instant::now() + for_at_least;
    while std::time::Instant::now() < until {
        assert!(
            !tor.established(host.ipv4),
            "{what}: the ToR has a session: {}\n{}",
            tor.view(),
            tail(&node.log())
        );
        assert!(
            route_of(&host.ns, TOR_ROUTE).is_empty(),
            "{what}: ToR route installed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ToR under test, and what it says about its side of the session
/// (printed when a step fails).
trait Tor {
    fn view(&self) -> String;
    /// The ToR's side of the session with `node` is Established.
    fn established(&self, node: Ipv4Addr) -> bool;
}

impl Tor for Bird {
    fn established(&self, node: Ipv4Addr) -> bool {
        let name = brindle_testbed::bird_protocol_name(IpAddr::V4(node));
        self.protocols()
            .unwrap_or_default()
            .iter()
            .any(|p| p.name == name && p.info.starts_with("Established"))
    }

    fn view(&self) -> String {
        self.birdc("show protocols all")
            .unwrap_or_else(|e| e.to_string())
    }
}

impl Tor for Frr {
    fn established(&self, node: Ipv4Addr) -> bool {
        self.neighbor_state(IpAddr::V4(node))
            .ok()
            .flatten()
            .is_some_and(|s| s == "Established")
    }

    fn view(&self) -> String {
        let neighbors = self
            .vtysh("show bgp neighbors")
            .unwrap_or_else(|e| e.to_string());
        format!("{neighbors}\n{}", tail(&self.bgpd_log()))
    }
}

fn ttl_and_password_scenario(
    start_tor: impl FnOnce(&brindle_testbed::Netns, &BgpConfig) -> Box<dyn Tor>,
) {
    let (fabric, store) = rack(&[&pool_yaml("10.76.0.0/16", "Never")]);
    let host = &fabric.hosts[0];
    let gw0 = Ipv4Addr::new(10, 0, 1, 254);
    let secrets = tempfile::tempdir().unwrap();
    // The right password and GTSM: the session comes up.
    write_secret(secrets.path(), &format!("{PASSWORD}\n"));
    store.apply(&tor_peer(gw0, true));
    let tor = start_tor(&fabric.router, &tor_config(host.ipv4, gw0));
    let secrets_dir = secrets.path().display().to_string();
    let node = NodeDaemon::start_with(
        &store,
        host,
        "node-a",
        true,
        &["--secrets-dir", &secrets_dir],
    );

    wait_tor_row(&node, &*tor, "GTSM on both sides", |p| p.established);

    // No file: the peer is held back, and status says which file.
    std::fs::remove_file(secrets.path().join("tor-auth/password")).unwrap();
    wait_tor_row(&node, &*tor, "missing secret", |p| {
        !p.established && p.info.contains("tor-auth/password") && p.info.contains("No such file")
    });

    // A wrong password: the ToR drops our segments; no session.
    write_secret(secrets.path(), "not-the-password\n");
    wait_tor_row(&node, &*tor, "wrong password configured", |p| {
        !p.established && !p.info.contains("tor-auth/password")
    });
    stays_down(&node, &*tor, host, Duration::from_secs(3), "wrong password");
    let report = node.status().unwrap();
    assert!(
        !report.peers[0].established && report.peers[0].info.contains("TCP-MD5: no answer yet"),
        "status does not say why: {report:?}"
    );

    // The file fixed: the session comes up without a restart of the node.
    write_secret(secrets.path(), &format!("{PASSWORD}\n"));
    wait_tor_row(&node, &*tor, "password fixed", |p| p.established);
    wait_route(
        &host.ns,
        TOR_ROUTE,
        |r| r.contains(&format!("via {gw0}")),
        "ToR route",
    );

    // Last (BIRD keeps a connection it could not finish for its 240 s
    // OpenSent hold time and refuses new ones meanwhile): without TTL
    // security on our side, the ToR drops our segments.
    store.apply(&tor_peer(gw0, false));
    wait_route(&host.ns, TOR_ROUTE, str::is_empty, "ToR route gone");
    stays_down(
        &node,
        &*tor,
        host,
        Duration::from_secs(3),
        "no GTSM toward a GTSM ToR",
    );
}

#[test]
fn tor_ttl_security_and_password_with_bird() {
    if !can_run() {
        return;
    }
    ttl_and_password_scenario(|ns, config| Box::new(Bird::start(ns, config).unwrap()));
}

#[test]
fn tor_ttl_security_and_password_with_frr() {
    if !can_run() {
        return;
    }
    ttl_and_password_scenario(|ns, config| Box::new(Frr::start(ns, config).unwrap()));
}

/// ECMP: two ToRs on the node's subnet announce one prefix with equal
/// preference; the node installs one route with both next hops (Calico's
/// BIRD: `merge paths`). When one ToR goes away the route is replaced by
/// the remaining path in one step: the prefix never leaves the kernel
/// (`ip monitor` sees no deletion) and a ping to an address both ToRs own
/// is measured across the change.
#[test]
fn two_tors_give_one_multipath_route_and_one_stays() {
    if !can_run() {
        return;
    }
    let (fabric, store) = rack(&[&pool_yaml("10.77.0.0/16", "Never")]);
    let host = &fabric.hosts[0];
    let (gw_a, gw_b) = (Ipv4Addr::new(10, 0, 1, 254), Ipv4Addr::new(10, 0, 1, 253));
    // The second ToR: another router on the node's segment.
    let tor_b_ns = second_router(&fabric, "tor-b", gw_b);
    // Both own 10.99.0.1 (an anycast service address behind the ToRs).
    for ns in [&fabric.router, &tor_b_ns] {
        ns.add_address("lo", "10.99.0.1/32").unwrap();
    }
    for (name, gw) in [("tor-a", gw_a), ("tor-b", gw_b)] {
        store.apply(&node_a_peer(name, gw, 65100));
    }
    let tor = |gw: Ipv4Addr| {
        BgpConfig::new(gw, 65100)
            .with_neighbor(Neighbor::new(IpAddr::V4(host.ipv4), 64512))
            .originate(TOR_ROUTE)
    };
    let _bird_a = Bird::start(&fabric.router, &tor(gw_a)).unwrap();
    let mut bird_b = Some(Bird::start(&tor_b_ns, &tor(gw_b)).unwrap());
    let node = NodeDaemon::start(&store, host, "node-a");
    node.wait_established(2);
    let both = wait_route(
        &host.ns,
        TOR_ROUTE,
        |r| r.contains(&format!("via {gw_a}")) && r.contains(&format!("via {gw_b}")),
        "one route through both ToRs",
    );
    assert!(both.contains("nexthop"), "not a multipath route: {both}");

    // ToR b goes away: its BGP speaker stops (withdrawing) and it no
    // longer answers for the service address.
    let mut monitor = host
        .ns
        .command("ip")
        .args(["-4", "monitor", "route"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ping = host
        .ns
        .command("ping")
        .args([
            "-n",
            "-q",
            "-i",
            "0.01",
            "-c",
            "300",
            "-W",
            "1",
            "10.99.0.1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(bird_b.take());
    tor_b_ns
        .run(&["ip", "addr", "del", "10.99.0.1/32", "dev", "lo"])
        .unwrap();
    let one = wait_route(
        &host.ns,
        TOR_ROUTE,
        |r| r.contains(&format!("via {gw_a}")) && !r.contains(&format!("{gw_b}")),
        "the remaining ToR's path",
    );
    assert!(!one.contains("nexthop"), "{one}");
    let ping = ping.wait_with_output().unwrap();
    let _ = monitor.kill();
    let monitored = monitor.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&monitored.stdout);
    assert!(
        !events
            .lines()
            .any(|l| l.starts_with("Deleted") && l.contains(TOR_ROUTE)),
        "the prefix left the kernel during the change:\n{events}"
    );
    let summary = String::from_utf8_lossy(&ping.stdout);
    eprintln!(
        "ToR b went away under a ping every 10 ms to the address both ToRs had: {}",
        summary
            .lines()
            .find(|l| l.contains("packet loss"))
            .unwrap_or("?")
    );
}

/// Communities: BGPConfiguration `communities` (named values) and
/// `prefixAdvertisements` put standard and large communities on the
/// node's announced block, as BIRD, FRR and GoBGP each see it; a changed
/// BGPConfiguration re-announces the block with the new set. The same
/// BGPConfiguration's `serviceClusterIPs` range is announced too, and
/// `bindMode: NodeIP` keeps the node's BGP listener on its own address.
#[test]
fn communities_and_service_ranges_seen_by_bird_frr_and_gobgp() {
    use brindle_testbed::daemons::{Kind, Other};
    if !can_run() {
        return;
    }
    let (fabric, store) = rack(&[&pool_yaml("10.78.0.0/16", "Never")]);
    let host = &fabric.hosts[0];
    let frr_ns = second_router(&fabric, "tor-frr", Ipv4Addr::new(10, 0, 1, 253));
    let gobgp_ns = second_router(&fabric, "tor-gobgp", Ipv4Addr::new(10, 0, 1, 252));
    let tors = [
        (Kind::Bird, &fabric.router, Ipv4Addr::new(10, 0, 1, 254)),
        (Kind::Frr, &frr_ns, Ipv4Addr::new(10, 0, 1, 253)),
        (Kind::Gobgp, &gobgp_ns, Ipv4Addr::new(10, 0, 1, 252)),
    ];
    let config = |large: bool| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  \
             communities:\n  - name: rack-a\n    value: \"65100:42\"\n  \
             prefixAdvertisements:\n  - cidr: 10.78.0.0/16\n    communities: [rack-a{}]\n  \
             - cidr: 10.0.0.0/8\n    communities: [\"64512:8\"]\n  \
             serviceClusterIPs:\n  - cidr: 10.96.0.0/12\n  bindMode: NodeIP\n",
            if large { ", \"65100:7:9\"" } else { "" }
        )
    };
    store.apply(&config(true));
    for (i, (_, _, ip)) in tors.iter().enumerate() {
        store.apply(&node_a_peer(&format!("tor-{i}"), ip, 65100));
    }
    let daemons: Vec<Other> = tors
        .iter()
        .map(|(kind, ns, ip)| {
            Other::start(
                *kind,
                ns,
                &BgpConfig::new(*ip, 65100)
                    .with_neighbor(Neighbor::new(IpAddr::V4(host.ipv4), 64512)),
            )
        })
        .collect();
    let node = NodeDaemon::start(&store, host, "node-a");
    node.wait_established(3);
    let workload = add_workload(&store, host, "node-a", "w1");
    let block = block_of(workload.ip);
    for daemon in &daemons {
        let seen = daemon.wait_route(&block, |r| !r.large_communities.is_empty());
        let mut communities = seen.communities.clone();
        communities.sort();
        assert_eq!(
            communities,
            ["64512:8", "65100:42"],
            "{}: {seen:?}",
            daemon.name()
        );
        assert_eq!(
            seen.large_communities,
            ["65100:7:9"],
            "{}: {seen:?}",
            daemon.name()
        );
    }
    for daemon in &daemons {
        let seen = daemon.wait_route("10.96.0.0/12", |_| true);
        assert_eq!(seen.communities, ["64512:8"], "{}: {seen:?}", daemon.name());
    }
    let listening = host.ns.run(&["ss", "-ltnH", "sport", "= :179"]).unwrap();
    assert!(
        listening.contains(&format!("{}:179", host.ipv4)) && !listening.contains("0.0.0.0:179"),
        "bindMode NodeIP: {listening}"
    );
    // A changed BGPConfiguration: the block goes out again without the
    // large community.
    store.apply(&config(false));
    for daemon in &daemons {
        let seen = daemon.wait_route(&block, |r| r.large_communities.is_empty());
        assert_eq!(seen.communities.len(), 2, "{}: {seen:?}", daemon.name());
    }
}

/// `maxPrefixes` (a `brindle.dev/v1` extension, BIRD's `import limit`):
/// a ToR that sends more than the limit is cut off with Cease "Maximum
/// Number of Prefixes Reached" and, with `Disable`, stays down (node
/// status says why) until the BGPPeer changes; with `Warn` the session
/// stays and node status says it is past the limit.
#[test]
fn a_tor_past_its_prefix_limit() {
    if !can_run() {
        return;
    }
    let (fabric, store) = rack(&[&pool_yaml("10.79.0.0/16", "Never")]);
    let host = &fabric.hosts[0];
    let gw0 = Ipv4Addr::new(10, 0, 1, 254);
    let peer = |action: &str| {
        format!(
            "apiVersion: brindle.dev/v1\nkind: BGPPeer\nmetadata:\n  name: tor-s0\nspec:\n  node: node-a\n  peerIP: {gw0}\n  asNumber: 65100\n  maxPrefixes:\n    limit: 3\n    action: {action}\n"
        )
    };
    store.apply(&peer("Disable"));
    let mut tor =
        BgpConfig::new(gw0, 65100).with_neighbor(Neighbor::new(IpAddr::V4(host.ipv4), 64512));
    for i in 0..5 {
        tor = tor.originate(&format!("10.99.{i}.0/24"));
    }
    let bird = Bird::start(&fabric.router, &tor).unwrap();
    let node = NodeDaemon::start(&store, host, "node-a");
    wait_tor_row(&node, &bird, "disabled past the limit", |p| {
        !p.established && p.info.contains("more than the limit of 3: disabled")
    });
    stays_down(&node, &bird, host, Duration::from_secs(3), "disabled");
    // BIRD was told why (its later attempts are refused: Idle, disabled).
    let log = bird.log();
    assert!(
        log.contains("Received: Maximum number of prefixes reached"),
        "{log}"
    );

    store.apply(&peer("Warn"));
    wait_tor_row(&node, &bird, "warned past the limit", |p| {
        p.established && p.info.contains("past the prefix limit: 5 received")
    });
    wait_route(
        &host.ns,
        "10.99.4.0/24",
        |r| !r.is_empty(),
        "routes kept under Warn",
    );
}

/// A node is not a transit between its routers: as Calico's BIRD, it
/// announces to every peer only routes inside its IP pools (and service
/// ranges), so a route from one ToR never reaches another ToR (here in
/// another AS, so AS-path loop detection would not stop it).
#[test]
fn a_route_from_one_tor_is_not_passed_to_another() {
    use brindle_testbed::daemons::{Kind, Other};
    if !can_run() {
        return;
    }
    let (fabric, store) = rack(&[&pool_yaml("10.80.0.0/16", "Never")]);
    let host = &fabric.hosts[0];
    let (gw_a, gw_b) = (Ipv4Addr::new(10, 0, 1, 254), Ipv4Addr::new(10, 0, 1, 253));
    let tor_b_ns = second_router(&fabric, "tor-b", gw_b);
    for (name, gw, asn) in [("tor-a", gw_a, 65100), ("tor-b", gw_b, 65200)] {
        store.apply(&node_a_peer(name, gw, asn));
    }
    let neighbor = Neighbor::new(IpAddr::V4(host.ipv4), 64512);
    let tor_a = Other::start(
        Kind::Bird,
        &fabric.router,
        &BgpConfig::new(gw_a, 65100)
            .with_neighbor(neighbor.clone())
            .originate("10.98.0.0/24"),
    );
    let tor_b = Other::start(
        Kind::Bird,
        &tor_b_ns,
        &BgpConfig::new(gw_b, 65200).with_neighbor(neighbor),
    );
    let node = NodeDaemon::start(&store, host, "node-a");
    node.wait_established(2);
    let workload = add_workload(&store, host, "node-a", "w1");
    // The node has ToR a's route and gives its block to both ToRs.
    wait_route(
        &host.ns,
        "10.98.0.0/24",
        |r| r.contains("via 10.0.1.254"),
        "ToR a's route",
    );
    let block = block_of(workload.ip);
    tor_a.wait_route(&block, |_| true);
    tor_b.wait_route(&block, |_| true);
    assert!(
        tor_b.route("10.98.0.0/24").is_none(),
        "ToR b got ToR a's route through the node"
    );
}

/// BGPFilter on a ToR's BGPPeer, import and export, checked on what the
/// node's kernel and the ToR hold; then the filters change while the
/// routes are in, and the change applies without resetting the session
/// (the import side through a ROUTE-REFRESH to the ToR).
#[test]
fn bgp_filters_import_and_export_change_without_a_reset() {
    use brindle_testbed::daemons::{Kind, Other};
    if !can_run() {
        return;
    }
    let (fabric, store) = rack(&[&pool_yaml("10.81.0.0/24", "Never")]);
    let host = &fabric.hosts[0];
    let gw0 = Ipv4Addr::new(10, 0, 1, 254);
    // The ToR's BGPFilter, as YAML lines: with `first` (import) and
    // `export` (export rules) at the places they go.
    let filter = |first: bool, export: bool| {
        let mut lines = vec![
            "apiVersion: projectcalico.org/v3",
            "kind: BGPFilter",
            "metadata:",
            "  name: tor",
            "spec:",
            "  importV4:",
        ];
        if first {
            lines.extend([
                "  - action: Reject",
                "    matchOperator: Equal",
                "    cidr: 10.99.2.0/24",
            ]);
        }
        lines.extend([
            "  - action: Accept",
            "    matchOperator: In",
            "    cidr: 10.99.0.0/16",
            "    prefixLength: {min: 24, max: 24}",
            "  - action: Reject",
            "    matchOperator: In",
            "    cidr: 10.99.0.0/16",
        ]);
        if export {
            lines.extend([
                "  exportV4:",
                "  - action: Reject",
                "    matchOperator: In",
                "    cidr: 10.81.0.0/24",
            ]);
        }
        lines.join("\n") + "\n"
    };
    store.apply(&filter(true, true));
    store.apply(&format!("{}  filters: [tor]\n", tor_peer_yaml(0, gw0)));
    let mut tor =
        BgpConfig::new(gw0, 65100).with_neighbor(Neighbor::new(IpAddr::V4(host.ipv4), 64512));
    for prefix in ["10.99.1.0/24", "10.99.2.0/24", "10.99.3.128/25"] {
        tor = tor.originate(prefix);
    }
    let bird = Other::start(Kind::Bird, &fabric.router, &tor);
    let node = NodeDaemon::start(&store, host, "node-a");
    let up = node.wait_established(1);
    let since = up.peers[0].since.clone();
    let workload = add_workload(&store, host, "node-a", "w1");
    let block = block_of(workload.ip);

    // Import: 10.99.1.0/24 in; 10.99.2.0/24 rejected by Equal; the /25 is
    // outside the Accept rule's lengths and rejected by the In rule.
    wait_route(
        &host.ns,
        "10.99.1.0/24",
        |r| r.contains("via 10.0.1.254"),
        "accepted",
    );
    assert!(route_of(&host.ns, "10.99.2.0/24").is_empty());
    assert!(route_of(&host.ns, "10.99.3.128/25").is_empty());
    // Export: the node's block held back from the ToR.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        bird.route(&block).is_none(),
        "export filter let the block out"
    );

    // Both filters change while the routes are in.
    store.apply(&filter(false, false));
    wait_route(
        &host.ns,
        "10.99.2.0/24",
        |r| r.contains("via 10.0.1.254"),
        "refreshed in",
    );
    bird.wait_route(&block, |_| true);
    assert!(route_of(&host.ns, "10.99.3.128/25").is_empty());
    let after = node.status().unwrap();
    assert_eq!(
        after.peers[0].since, since,
        "the session was reset: {after:?}"
    );
}

/// The same over an IPv6 session with the ToR, with the other operators:
/// `NotIn` and `NotEqual` on import, a catch-all Reject, and an export
/// rule that keeps the node's IPv6 block from the ToR.
#[test]
fn bgp_filters_over_ipv6_not_in_and_not_equal() {
    use brindle_testbed::daemons::{Kind, Other};
    if !can_run() {
        return;
    }
    let (fabric, store) = rack(&[
        &pool_yaml_named("v4", "10.82.0.0/24", "Never", false),
        &pool_yaml_named("v6", "fd00:82::/48", "Never", false),
    ]);
    let host = &fabric.hosts[0];
    let gw6 = brindle_testbed::topology::gateway_v6(0);
    store.apply(
        &[
            "apiVersion: projectcalico.org/v3",
            "kind: BGPFilter",
            "metadata:",
            "  name: tor6",
            "spec:",
            "  importV6:",
            "  - action: Reject",
            "    matchOperator: NotIn",
            "    cidr: fd99::/16",
            "  - action: Accept",
            "    matchOperator: NotEqual",
            "    cidr: fd99:2::/64",
            "  - action: Reject",
            "  exportV6:",
            "  - action: Reject",
            "    matchOperator: In",
            "    cidr: fd00:82::/48",
            "",
        ]
        .join("\n"),
    );
    store.apply(&format!(
        "{}  filters: [tor6]\n",
        node_a_peer("tor6", gw6, 65100)
    ));
    let mut tor = BgpConfig::new(Ipv4Addr::new(10, 0, 1, 254), 65100)
        .with_neighbor(Neighbor::new(IpAddr::V6(host.ipv6), 64512));
    for prefix in ["fd99:1::/64", "fd99:2::/64", "fd98:1::/64"] {
        tor = tor.originate(prefix);
    }
    let bird = Other::start(Kind::Bird, &fabric.router, &tor);
    let ip6 = format!("{}/64", host.ipv6);
    let node = NodeDaemon::start_with(&store, host, "node-a", true, &["--ip6", &ip6]);
    node.wait_established(1);
    let dual = serde_json::json!({ "assign_ipv6": "true" });
    let workload = add_workload_with(&store, host, "node-a", "w1", &dual);
    let w6 = workload.ip6.expect("an IPv6 address");

    let route6 = |prefix: &str| {
        host.ns
            .run(&["ip", "-6", "route", "show", prefix])
            .unwrap_or_default()
    };
    let seen = poll_until(WAIT, Duration::from_millis(200), || {
        Ok((!route6("fd99:1::/64").is_empty()).then_some(()))
    })
    .unwrap();
    assert!(
        seen.is_some(),
        "fd99:1::/64 (NotEqual: Accept) never installed: {:?}\n{}\n{}",
        node.status(),
        tail(&node.log()),
        bird.log()
    );
    assert!(
        route6("fd99:2::/64").is_empty(),
        "the catch-all Reject let it in"
    );
    assert!(route6("fd98:1::/64").is_empty(), "NotIn let it in");
    // The node's IPv6 block is held back; its IPv4 one is not affected
    // (IPv4 goes over no session here: only the IPv6 rules apply).
    std::thread::sleep(Duration::from_secs(1));
    let block6 = {
        let bits = u128::from(w6) & !0x3f;
        format!("{}/122", std::net::Ipv6Addr::from(bits))
    };
    assert!(
        bird.route(&block6).is_none(),
        "export Reject In let {block6} out"
    );
}

/// BGPFilter `communities` (standard and large) and `asPathPrefix` on
/// import, against what a BIRD ToR sends: first match wins, so the tagged
/// routes are rejected, and the untagged one is let in by its AS path
/// (the catch-all Reject after it would keep it out). On export, an
/// accepting rule's `operations` (two `addCommunity`, a `prependASPath`)
/// change the block the ToR gets.
#[test]
fn bgp_filters_match_communities_and_as_path_prefix_and_change_routes() {
    use brindle_testbed::daemons::{Kind, Other};
    use brindle_testbed::Route;
    if !can_run() {
        return;
    }
    let (fabric, store) = rack(&[&pool_yaml_named("v4", "10.83.0.0/24", "Never", false)]);
    let host = &fabric.hosts[0];
    store.apply(
        &[
            "apiVersion: projectcalico.org/v3",
            "kind: BGPFilter",
            "metadata:",
            "  name: tagged",
            "spec:",
            "  importV4:",
            "  - action: Reject",
            "    communities: {values: ['65100:666']}",
            "  - action: Reject",
            "    communities: {values: ['65100:1:2']}",
            "  - action: Accept",
            "    asPathPrefix: [65100]",
            "  - action: Reject",
            "  exportV4:",
            "  - action: Accept",
            "    cidr: 10.83.0.0/24",
            "    matchOperator: In",
            "    operations:",
            "    - addCommunity: {value: '65000:77'}",
            "    - addCommunity: {value: '65000:1:2'}",
            "    - prependASPath: {prefix: [65300, 65301]}",
            "",
        ]
        .join("\n"),
    );
    let gw = Ipv4Addr::new(10, 0, 1, 254);
    store.apply(&format!(
        "{}  filters: [tagged]\n",
        node_a_peer("tor-tagged", gw, 65100)
    ));
    let tor = BgpConfig::new(gw, 65100)
        .with_neighbor(Neighbor::new(IpAddr::V4(host.ipv4), 64512))
        .route(Route {
            communities: vec![(65100, 666)],
            ..Route::plain("10.99.1.0/24")
        })
        .route(Route {
            large_communities: vec![(65100, 1, 2)],
            ..Route::plain("10.99.2.0/24")
        })
        .route(Route::plain("10.99.3.0/24"));
    let bird = Other::start(Kind::Bird, &fabric.router, &tor);
    let node = NodeDaemon::start(&store, host, "node-a");
    node.wait_established(1);
    let route = |prefix: &str| route_of(&host.ns, prefix);
    let seen = poll_until(WAIT, Duration::from_millis(200), || {
        Ok((!route("10.99.3.0/24").is_empty()).then_some(()))
    })
    .unwrap();
    assert!(
        seen.is_some(),
        "10.99.3.0/24 (asPathPrefix: Accept) never installed: {:?}\n{}\n{}",
        node.status(),
        tail(&node.log()),
        bird.log()
    );
    // The tagged ones came in the same UPDATE stream: give them a moment.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        route("10.99.1.0/24").is_empty(),
        "standard community let in"
    );
    assert!(route("10.99.2.0/24").is_empty(), "large community let in");

    // Export operations: communities added, then the AS numbers, after
    // which our own AS goes first (eBGP).
    let workload = add_workload(&store, host, "node-a", "w1");
    let block = block_of(workload.ip);
    let seen = bird.wait_route(&block, |_| true);
    assert_eq!(seen.as_path, [64512, 65300, 65301], "{seen:?}");
    assert_eq!(seen.communities, ["65000:77"], "{seen:?}");
    assert_eq!(seen.large_communities, ["65000:1:2"], "{seen:?}");
}

/// Calico's local workload peering: a BGPPeer with `localWorkloadSelector`
/// makes the node a passive peer of each selected workload on it, and
/// `localWorkloadPeeringIPV4` goes on the workload's host-side interface
/// (scope link) for the workload's speaker (BIRD, in the workload's
/// namespace) to dial. The workload's route (inside a pool) reaches the
/// node's kernel through the workload and the ToR through the node; a
/// workload no longer selected loses its session and the address.
#[test]
fn a_selected_local_workload_peers_with_its_node() {
    use brindle_testbed::daemons::{Kind, Other};
    if !can_run() {
        return;
    }
    let (fabric, store) = rack(&[&pool_yaml_named("v4", "10.84.0.0/24", "Never", false)]);
    let host = &fabric.hosts[0];
    store.apply(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  localWorkloadPeeringIPV4: 169.254.0.179\n",
    );
    store.apply(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: speakers\nspec:\n  localWorkloadSelector: role == 'bgp-speaker'\n  asNumber: 65010\n",
    );
    let gw = Ipv4Addr::new(10, 0, 1, 254);
    store.apply(&node_a_peer("tor", gw, 65100));
    let tor = Other::start(
        Kind::Bird,
        &fabric.router,
        &BgpConfig::new(gw, 65100).with_neighbor(Neighbor::new(IpAddr::V4(host.ipv4), 64512)),
    );
    // As Calico's manifests do: a workload may reach its host (its BGP
    // session with the node does).
    let node = NodeDaemon::start_env(
        &store,
        host,
        "node-a",
        &[("FELIX_DEFAULTENDPOINTTOHOSTACTION", "ACCEPT")],
    );
    node.wait_established(1);
    let w = add_workload(&store, host, "node-a", "spk");
    let ctl = common::policy::Ctl::new(&store);
    ctl.set_role(&w.host_ifname, "bgp-speaker");

    let addr_on_iface = || {
        host.ns
            .ip(&["-4", "addr", "show", "dev", &w.host_ifname])
            .unwrap_or_default()
    };
    let seen = poll_until(WAIT, Duration::from_millis(200), || {
        Ok(addr_on_iface()
            .contains("inet 169.254.0.179/32 scope link")
            .then_some(()))
    })
    .unwrap();
    assert!(
        seen.is_some(),
        "no peering address on {}: {}\n{}",
        w.host_ifname,
        addr_on_iface(),
        tail(&node.log())
    );

    let vip = "10.84.0.200/32";
    let mut neighbor = Neighbor::new("169.254.0.179".parse().unwrap(), 64512);
    neighbor.multihop = true;
    let speaker = Other::start(
        Kind::Bird,
        &w.ns,
        &BgpConfig::new(w.ip, 65010)
            .with_neighbor(neighbor)
            .originate(vip),
    );
    let up = poll_until(WAIT, Duration::from_millis(200), || {
        Ok(node.status().and_then(|r| {
            r.peers.into_iter().find(|p| {
                p.address == IpAddr::V4(w.ip)
                    && p.established
                    && p.peer_type.as_str() == "local workload"
            })
        }))
    })
    .unwrap();
    assert!(
        up.is_some(),
        "the workload's session: {:?}\n{}\n{}\n{}",
        node.status(),
        tail(&node.log()),
        speaker.log(),
        match &speaker {
            Other::Bird(b) => b.birdc("show protocols all").unwrap_or_default(),
            _ => String::new(),
        }
    );
    wait_route(
        &host.ns,
        vip,
        |r| r.contains(&format!("via {}", w.ip)),
        "the workload's route",
    );
    let at_tor = tor.wait_route(vip, |_| true);
    assert_eq!(at_tor.as_path, [64512, 65010], "{at_tor:?}");

    // No longer selected: the session and the address go.
    ctl.set_role(&w.host_ifname, "web");
    let gone = poll_until(WAIT, Duration::from_millis(200), || {
        let status = node.status();
        let session = status
            .as_ref()
            .is_some_and(|r| r.peers.iter().any(|p| p.address == IpAddr::V4(w.ip)));
        Ok((!session && !addr_on_iface().contains("169.254.0.179")).then_some(()))
    })
    .unwrap();
    assert!(
        gone.is_some(),
        "still peering: {:?} / {}",
        node.status(),
        addr_on_iface()
    );
    tor.wait_no_route(vip);
}

/// BGPFilter `interface` against a BIRD ToR: a rule matches the routes
/// whose next hop is on a network of a matching interface (the ToR's
/// routes leave by the node's eth0), and never on a name the node does
/// not have.
#[test]
fn bgp_filter_interface_rules_match_the_outgoing_interface() {
    use brindle_testbed::daemons::{Kind, Other};
    if !can_run() {
        return;
    }
    let (fabric, store) = rack(&[&pool_yaml_named("v4", "10.85.0.0/24", "Never", false)]);
    let host = &fabric.hosts[0];
    store.apply(
        &[
            "apiVersion: projectcalico.org/v3",
            "kind: BGPFilter",
            "metadata:",
            "  name: by-interface",
            "spec:",
            "  importV4:",
            "  - {action: Reject, interface: 'eth*', cidr: 10.99.4.0/24, matchOperator: Equal}",
            "  - {action: Reject, interface: 'ens*'}",
            "",
        ]
        .join("\n"),
    );
    let gw = Ipv4Addr::new(10, 0, 1, 254);
    store.apply(&format!(
        "{}  filters: [by-interface]\n",
        node_a_peer("tor-if", gw, 65100)
    ));
    let tor = BgpConfig::new(gw, 65100)
        .with_neighbor(Neighbor::new(IpAddr::V4(host.ipv4), 64512))
        .originate("10.99.4.0/24")
        .originate("10.99.5.0/24");
    let _bird = Other::start(Kind::Bird, &fabric.router, &tor);
    let node = NodeDaemon::start(&store, host, "node-a");
    node.wait_established(1);
    wait_route(
        &host.ns,
        "10.99.5.0/24",
        |r| r.contains("via 10.0.1.254"),
        "no interface named ens*: let in",
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        route_of(&host.ns, "10.99.4.0/24").is_empty(),
        "eth* rule let 10.99.4.0/24 in:\n{}",
        tail(&node.log())
    );
}

/// `restartMode: LongLivedGracefulRestart` through brindle-node: a BIRD ToR
/// with a 1 s graceful restart time and long-lived graceful restart
/// crashes; its route stays in the node's kernel well past the restart
/// time (long-lived stale, `maxRestartTime` 30 s), and when BIRD is back
/// the route is fresh. Without LLGR the route would leave after 1 s.
#[test]
fn long_lived_graceful_restart_keeps_a_crashed_tors_routes() {
    use brindle_testbed::daemons::{Kind, Other};
    if !can_run() {
        return;
    }
    let (fabric, store) = rack(&[&pool_yaml_named("v4", "10.86.0.0/24", "Never", false)]);
    let host = &fabric.hosts[0];
    let gw = Ipv4Addr::new(10, 0, 1, 254);
    store.apply(&format!(
        "{}  restartMode: LongLivedGracefulRestart\n  maxRestartTime: 30s\n",
        node_a_peer("tor-llgr", gw, 65100)
    ));
    let mut tor = BgpConfig::new(gw, 65100)
        .with_neighbor(Neighbor::new(IpAddr::V4(host.ipv4), 64512))
        .originate("10.99.7.0/24");
    tor.graceful_restart = Some(1);
    tor.long_lived_stale_time = Some(30);
    let bird = Other::start(Kind::Bird, &fabric.router, &tor);
    let node = NodeDaemon::start(&store, host, "node-a");
    node.wait_established(1);
    wait_route(
        &host.ns,
        "10.99.7.0/24",
        |r| r.contains("via 10.0.1.254"),
        "the ToR's route",
    );
    bird.kill();
    // Well past the 1 s restart time: still routed (long-lived stale).
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        route_of(&host.ns, "10.99.7.0/24").contains("via 10.0.1.254"),
        "the route left with the session:\n{}",
        tail(&node.log())
    );
    assert!(
        node.log()
            .contains("long-lived graceful restart: keeping routes as LLGR_STALE"),
        "{}",
        tail(&node.log())
    );
    let _bird = Other::start(Kind::Bird, &fabric.router, &tor);
    node.wait_established(1);
    wait_route(
        &host.ns,
        "10.99.7.0/24",
        |r| r.contains("via 10.0.1.254"),
        "fresh again",
    );
}
