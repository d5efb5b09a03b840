//! IPv6 in the fabric: dual-stack pools, workloads with a /32 and a /128
//! from the real `brindle-cni`, the nodes' IPv6 blocks (/122) announced over
//! IPv6 BGP sessions between the nodes' IPv6 addresses and routed directly
//! via the peer's IPv6 address. A node's IPv6 address is its `Node`'s
//! `spec.bgp.ipv6Address`, written by an operator or by `brindle-node
//! --ip6`. Same subnet: routed directly; two subnets: through
//! `vxlan6.brindle`. Policy is on (the default), so the compiler's ICMPv6
//! neighbour-discovery rules are exercised too.
//!
//! Needs root; every namespace, process and temp file is owned by a handle
//! and removed on drop, also when a test panics.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::fabric::*;

fn dual_stack_node_yaml(name: &str, v6: Ipv6Addr) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  bgp:\n    ipv6Address: {v6}/64\n"
    )
}

/// The /122 block (Calico's IPv6 default) holding `ip`.
fn block6_of(ip: Ipv6Addr) -> String {
    let bits = u128::from(ip) & !((1u128 << 6) - 1);
    format!("{}/122", Ipv6Addr::from(bits))
}

#[test]
fn two_nodes_dual_stack_ipv6_blocks_routed_over_ipv6_sessions() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::two_hosts_one_subnet().unwrap();
    let [ha, hb] = &fabric.hosts;
    for h in [ha, hb] {
        h.ns.add_default_route(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 254)))
            .unwrap();
    }
    let store = Store::embedded();
    store.apply(&pool_yaml_named("v4", "10.77.0.0/16", "Never", false));
    store.apply(&pool_yaml_named("v6", "fd00:77::/48", "Never", false));
    store.apply(ALLOW_ALL_PROFILE);
    // node-a's IPv6 address as an operator (or calicoctl) records it;
    // node-b registers its own with --ip6.
    store.apply(&dual_stack_node_yaml("node-a", ha.ipv6));
    let a = NodeDaemon::start_with(&store, ha, "node-a", true, &[]);
    let ip6 = format!("{}/64", hb.ipv6);
    let b = NodeDaemon::start_with(&store, hb, "node-b", true, &["--ip6", &ip6]);
    let dual = serde_json::json!({ "assign_ipv6": "true" });
    let wa = add_workload_with(&store, ha, "node-a", "wa", &dual);
    let wb = add_workload_with(&store, hb, "node-b", "wb", &dual);
    let (wa6, wb6) = (wa.ip6.expect("wa has IPv6"), wb.ip6.expect("wb has IPv6"));

    // An IPv4 and an IPv6 mesh session per pair of nodes.
    for (node, peer) in [(&a, hb), (&b, ha)] {
        let report = node.wait_established(2);
        let mut addresses: Vec<IpAddr> = report.peers.iter().map(|p| p.address).collect();
        addresses.sort();
        assert_eq!(
            addresses,
            vec![IpAddr::V4(peer.ipv4), IpAddr::V6(peer.ipv6)],
            "{report:?}"
        );
    }

    let node_b = store.get("/brindle/resources/v3/nodes/node-b").unwrap();
    let node_b = String::from_utf8_lossy(&node_b.value).into_owned();
    assert!(
        node_b.contains(&format!("\"ipv6Address\":\"{ip6}\"")),
        "--ip6 registered: {node_b}"
    );

    // Each node's /122 is a blackhole at home and routed via the owner's
    // IPv6 address elsewhere; the workload has its /128 on its veth.
    wait_route(
        &ha.ns,
        &block6_of(wa6),
        |r| r.contains("blackhole"),
        "own IPv6 block",
    );
    wait_route(
        &ha.ns,
        &block6_of(wb6),
        |r| r.contains(&format!("via {}", hb.ipv6)),
        "a→b IPv6 block",
    );
    wait_route(
        &hb.ns,
        &block6_of(wa6),
        |r| r.contains(&format!("via {}", ha.ipv6)),
        "b→a IPv6 block",
    );
    let host_route = route_of(&hb.ns, &format!("{wb6}/128"));
    assert!(host_route.contains(&wb.host_ifname), "{host_route}");

    let (nodes, hosts) = ([&a, &b], [ha, hb]);
    ping_or_dump(&wa.ns, wb6, &nodes, &hosts);
    ping_or_dump(&wb.ns, wa6, &nodes, &hosts);
    assert!(tcp_works(&wa.ns, &wb.ns, IpAddr::V6(wb6)), "TCP over IPv6");
    // IPv4 keeps working next to it.
    ping_or_dump(&wa.ns, wb.ip, &nodes, &hosts);

    // A deleted workload's /128 leaves its node.
    delete_workload(&store, hb, &wb);
    wait_route(
        &hb.ns,
        &format!("{wb6}/128"),
        str::is_empty,
        "deleted workload's /128",
    );
}

/// Two nodes on two subnets joined by a router, IPv4 and IPv6 pools with
/// `vxlanMode: CrossSubnet`: the IPv6 blocks are routed through
/// `vxlan6.brindle` (IPv6 underlay, each node's IPv6 tunnel address from
/// IPAM), and IPv6 ping and TCP cross it.
#[test]
fn ipv6_across_subnets_through_vxlan6() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::hosts_on_two_subnets([1, 1]).unwrap();
    let (ha, hc) = (&fabric.hosts[0], &fabric.hosts[1]);
    let store = Store::embedded();
    store.apply(&pool_yaml_named("v4", "10.78.0.0/16", "CrossSubnet", false));
    store.apply(&pool_yaml_named("v6", "fd00:78::/48", "CrossSubnet", false));
    store.apply(ALLOW_ALL_PROFILE);
    let start = |host: &brindle_testbed::Host, name: &str| {
        let ip6 = format!("{}/64", host.ipv6);
        NodeDaemon::start_with(&store, host, name, true, &["--ip6", &ip6])
    };
    let a = start(ha, "node-a");
    let c = start(hc, "node-c");
    let dual = serde_json::json!({ "assign_ipv6": "true" });
    let wa = add_workload_with(&store, ha, "node-a", "wa", &dual);
    let wc = add_workload_with(&store, hc, "node-c", "wc", &dual);
    let (wa6, wc6) = (wa.ip6.expect("wa has IPv6"), wc.ip6.expect("wc has IPv6"));
    a.wait_established(2);
    c.wait_established(2);

    let node_c = store.get("/brindle/resources/v3/nodes/node-c").unwrap();
    let node_c = String::from_utf8_lossy(&node_c.value).into_owned();
    assert!(
        node_c.contains("ipv6VXLANTunnelAddr") && node_c.contains("vxlanTunnelMACAddrV6"),
        "IPv6 tunnel address: {node_c}"
    );
    let tunnelled = wait_route(
        &ha.ns,
        &block6_of(wc6),
        |r| r.contains("dev vxlan6.brindle") && r.contains("onlink"),
        "a→c IPv6 block",
    );
    eprintln!("a→c: {tunnelled}");
    wait_route(
        &hc.ns,
        &block6_of(wa6),
        |r| r.contains("dev vxlan6.brindle"),
        "c→a IPv6 block",
    );
    let link = ha.ns.ip(&["link", "show", "vxlan6.brindle"]).unwrap();
    assert!(link.contains("mtu 1430"), "{link}");

    let (nodes, hosts) = ([&a, &c], [ha, hc]);
    ping_or_dump(&wa.ns, wc6, &nodes, &hosts);
    ping_or_dump(&wc.ns, wa6, &nodes, &hosts);
    assert!(
        tcp_works(&wa.ns, &wc.ns, IpAddr::V6(wc6)),
        "TCP over vxlan6"
    );
    // IPv4 crosses through its own device next to it.
    ping_or_dump(&wa.ns, wc.ip, &nodes, &hosts);
}
