//! End to end: real `brindle-node` daemons in network namespaces sharing one
//! store (the embedded SQLite file, or a real etcd inside the topology), real
//! kernel routes, real BGP (the nodes' speakers and a BIRD ToR), workloads
//! made by running the `brindle-cni` binary as a container runtime does (IPAM
//! address, veth + /32 route, WorkloadEndpoint).
//!
//! Needs root. Every namespace, process and temp file is owned by a handle
//! and removed on drop, also when a test panics.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use brindle_testbed::{poll_until, BgpConfig, Bird};
use common::fabric::*;

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
    let store = Store::embedded();
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
    assert!(tcp_works(&wa.ns, &wb.ns, wb.ip.into()), "TCP a→b");

    // Restart node-b under a running ping: no loss.
    ping_loss_free_during(&wa.ns, wb.ip, || {
        b.stop();
        std::thread::sleep(Duration::from_millis(500));
        b.restart(hb);
    });
    b.wait_established(1);
}

/// The full picture: three nodes on two subnets joined by a router that
/// also runs BIRD as ToR (peered through `BGPPeer`s selected by node
/// labels), an IPPool with `vxlanMode: CrossSubnet`. Same-subnet traffic is
/// routed directly, cross-subnet traffic through `vxlan.brindle`; deleted
/// and new workloads are (un)routed everywhere; a route deleted by hand is
/// repaired by the resync; a node restart keeps a cross-subnet ping
/// loss-free.
/// A node's own `BGPConfiguration node.<name>`: its listenPort is where it
/// listens and where the other nodes connect; its logSeverityScreen turns
/// the speaker's debug logs on at run time. And BGPPeer reachableBy: a
/// static route to the peer through the gateway.
#[test]
fn node_specific_bgp_configuration_and_reachable_by() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::two_hosts_one_subnet().unwrap();
    let [ha, hb] = &fabric.hosts;
    let store = Store::embedded();
    store.apply(&pool_yaml("10.72.0.0/16", "Never"));
    store.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.node-b}
spec:
  listenPort: 1179
",
    );
    // A ToR that is not there, behind the subnet's gateway.
    store.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: far-tor}
spec:
  node: node-a
  peerIP: 192.0.2.77
  asNumber: 65077
  reachableBy: 10.0.1.254
",
    );
    let a = NodeDaemon::start(&store, ha, "node-a");
    let b = NodeDaemon::start(&store, hb, "node-b");
    b.wait_established(1);
    let listening = hb.ns.run(&["ss", "-Htln"]).unwrap();
    assert!(
        listening.contains(":1179"),
        "node-b listens on 1179:\n{listening}"
    );
    assert!(!listening.contains(":179 "), "and not on 179:\n{listening}");
    wait_route(
        &ha.ns,
        "192.0.2.77",
        |r| r.contains("via 10.0.1.254"),
        "reachableBy route",
    );
    assert!(
        route_of(&hb.ns, "192.0.2.77").is_empty(),
        "only node-a peers with it"
    );

    // logSeverityScreen: Debug for node-b only, applied at run time.
    store.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.node-b}
spec:
  listenPort: 1179
  logSeverityScreen: Debug
",
    );
    let applied = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        Ok(b.log().contains("BGP log level set").then_some(()))
    });
    assert!(
        matches!(applied, Ok(Some(()))),
        "node-b did not apply the level:\n{}",
        tail(&b.log())
    );
    // A connection from an address that is no peer: logged at debug.
    let knock = |host: &brindle_testbed::Host, port: u16| {
        let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port}; sleep 0.5");
        let _ = host.ns.run(&["bash", "-c", &script]);
    };
    knock(hb, 1179);
    knock(ha, 179);
    let debug_seen = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        Ok(b.log()
            .lines()
            .any(|l| l.contains("DEBUG") && l.contains("brindle_bgp"))
            .then_some(()))
    });
    assert!(
        matches!(debug_seen, Ok(Some(()))),
        "no speaker debug lines on node-b:\n{}",
        tail(&b.log())
    );
    assert!(
        !a.log()
            .lines()
            .any(|l| l.contains("DEBUG") && l.contains("brindle_bgp")),
        "node-a keeps the speaker at info"
    );
}

#[test]
fn three_nodes_two_subnets_vxlan_cross_subnet_with_bird_tor() {
    if can_run() {
        three_nodes_two_subnets(StoreKind::Embedded);
    }
}

/// The same scenario with every daemon and every `brindle-cni` call on a
/// real etcd (running in the router namespace, reached over the underlay).
#[test]
fn three_nodes_two_subnets_vxlan_cross_subnet_with_bird_tor_on_etcd() {
    if can_run() {
        three_nodes_two_subnets(StoreKind::Etcd);
    }
}

fn three_nodes_two_subnets(kind: StoreKind) {
    let fabric = brindle_testbed::hosts_on_two_subnets([2, 1]).unwrap();
    let (ha, hb, hc) = (&fabric.hosts[0], &fabric.hosts[1], &fabric.hosts[2]);
    let gw0 = Ipv4Addr::new(10, 0, 1, 254);
    let gw1 = Ipv4Addr::new(10, 0, 2, 254);
    let store = Store::new(kind, &fabric.router, gw0);
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
        // A cold start writes its Node once, the VXLAN tunnel address
        // included (allocated before registering): one version from the
        // test's own create, one from registration. (Three before: the
        // tunnel address was a second write that every node re-read.)
        let key = brindle_datastore::keys::resource_key(
            brindle_model::resource::Kind::Node,
            None,
            &node.name,
        );
        let kv = store.get(&key).expect("the Node");
        assert_eq!(
            kv.version, 2,
            "{} written more than once at start",
            node.name
        );
        let text = String::from_utf8_lossy(&kv.value).to_string();
        assert!(text.contains("ipv4VXLANTunnelAddr"), "{text}");
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
    // Each daemon runs on the store under test.
    let expected_store = match kind {
        StoreKind::Embedded => "embedded".to_owned(),
        StoreKind::Etcd => format!("etcd at {gw0}:2379"),
    };
    for node in [&a, &b, &c] {
        assert!(
            node.log().contains(&expected_store),
            "{} is not on {expected_store}",
            node.name
        );
    }
    let node_c = store.get("/brindle/resources/v3/nodes/node-c").unwrap();
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
    assert!(
        tcp_works(&wa.ns, &wc.ns, wc.ip.into()),
        "TCP a→c over VXLAN"
    );
    assert!(
        tcp_works(&wc.ns, &wb.ns, wb.ip.into()),
        "TCP c→b over VXLAN"
    );
    assert!(tcp_works(&wa.ns, &wb.ns, wb.ip.into()), "TCP a→b direct");

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
    let store = Store::embedded();
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

/// BFD toward a ToR (`failureDetectionMode: BFDIfDirectlyConnected`, timers
/// from a `brindle.dev/v1` `BFDConfiguration`): when the ToR goes silent
/// with its link up, its routes leave the node's kernel in well under a
/// second (the BGP hold time is 90 s on both sides); when it speaks again
/// they come back. `node status` shows the BFD state.
#[test]
fn bfd_takes_a_silent_tors_routes_out_of_the_kernel() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::hosts_on_two_subnets([1, 0]).unwrap();
    let host = &fabric.hosts[0];
    let gw0 = Ipv4Addr::new(10, 0, 1, 254);
    let store = Store::embedded();
    store.apply(&pool_yaml("10.74.0.0/16", "Never"));
    store.apply(&node_yaml("node-a", 0));
    store.apply(&format!(
        "{}  failureDetectionMode: BFDIfDirectlyConnected\n",
        tor_peer_yaml(0, gw0)
    ));
    store.apply(
        "apiVersion: brindle.dev/v1\nkind: BFDConfiguration\nmetadata:\n  name: default\nspec:\n  minimumSendInterval: 150ms\n  minimumRecvInterval: 150ms\n  multiplier: 3\n",
    );
    let mut tor = BgpConfig::new(gw0, 65100)
        .with_neighbor(brindle_testbed::Neighbor {
            bfd: true,
            ..brindle_testbed::Neighbor::new(IpAddr::V4(host.ipv4), 64512)
        })
        .originate("10.99.0.0/24");
    tor.hold_time = 90;
    let bird = Bird::start(&fabric.router, &tor).unwrap();
    let node = NodeDaemon::start(&store, host, "node-a");
    node.wait_established(1);
    let route = "10.99.0.0/24";
    wait_route(
        &host.ns,
        route,
        |r| r.contains("via 10.0.1.254"),
        "ToR route",
    );
    let bfd_up = poll_until(WAIT, Duration::from_millis(100), || {
        let report = node.status();
        Ok(report
            .filter(|r| r.peers.iter().any(|p| p.info.contains("BFD Up")))
            .map(|_| ()))
    })
    .unwrap();
    assert!(bfd_up.is_some(), "node status never showed BFD Up");
    // Our timers reached BIRD: it runs the session at our 150 ms.
    let sessions = bird.birdc("show bfd sessions").unwrap();
    assert!(sessions.contains("Up"), "{sessions}");
    assert!(sessions.contains("0.150"), "BIRD's view: {sessions}");

    // The ToR goes silent; the link stays up.
    for chain in ["INPUT", "OUTPUT"] {
        fabric
            .router
            .run(&["iptables", "-w", "-I", chain, "-j", "DROP"])
            .unwrap();
    }
    let start = std::time::Instant::now();
    wait_route(&host.ns, route, str::is_empty, "ToR route gone");
    let took = start.elapsed();
    eprintln!("silent ToR: its route left the kernel after {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}: not BFD");
    for chain in ["INPUT", "OUTPUT"] {
        fabric
            .router
            .run(&["iptables", "-w", "-D", chain, "-j", "DROP"])
            .unwrap();
    }
    wait_route(
        &host.ns,
        route,
        |r| r.contains("via 10.0.1.254"),
        "ToR route back",
    );
    drop(bird);
}

/// Calico's default gateway mode is BIRD's recursive one: a learned route
/// whose next hop is on none of the node's networks (a mesh across two
/// subnets, no encapsulation) goes through the gateway the kernel reaches
/// that next hop by, here the router. With the router routing the blocks
/// (static routes here; a ToR's BGP in practice), the workloads reach each
/// other.
#[test]
fn off_link_next_hops_resolve_through_the_router() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::hosts_on_two_subnets([1, 1]).unwrap();
    let (ha, hc) = (&fabric.hosts[0], &fabric.hosts[1]);
    let store = Store::embedded();
    store.apply(&pool_yaml("10.69.0.0/16", "Never"));
    store.apply(ALLOW_ALL_PROFILE);
    let a = NodeDaemon::start(&store, ha, "node-a");
    let c = NodeDaemon::start(&store, hc, "node-c");
    let wa = add_workload(&store, ha, "node-a", "wa");
    let wc = add_workload(&store, hc, "node-c", "wc");
    a.wait_established(1);
    let (gw_a, gw_c) = (
        brindle_testbed::gateway_v4(0),
        brindle_testbed::gateway_v4(1),
    );
    wait_route(
        &ha.ns,
        &block_of(wc.ip),
        |r| r.contains(&format!("via {gw_a}")),
        "a→c block through the router",
    );
    wait_route(
        &hc.ns,
        &block_of(wa.ip),
        |r| r.contains(&format!("via {gw_c}")),
        "c→a block through the router",
    );
    for (w, h) in [(&wa, ha), (&wc, hc)] {
        fabric
            .router
            .ip(&["route", "add", &block_of(w.ip), "via", &h.ipv4.to_string()])
            .unwrap();
    }
    ping_or_dump(&wa.ns, wc.ip, &[&a, &c], &[ha, hc]);
}
