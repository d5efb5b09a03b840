//! `natOutgoing`, proven by traffic: a workload's connection to an address
//! outside every pool (an "internet" host behind the router) arrives from
//! the node's address; connections between workloads of pools keep the
//! workload's own address; turning `natOutgoing` off stops the masquerade.
//!
//! Real `brindle-node` daemons, workloads made by the real `brindle-cni`,
//! iptables in the nodes' namespaces. Needs root; everything is torn down on
//! drop, also when a test panics.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use brindle_testbed::{poll_until, veth, Netns};
use common::fabric::*;

/// Polls until a new TCP connection from `client` to `server_ip` arrives
/// from `want`; panics with what was seen last and the NAT state of
/// `node` (the client's).
fn wait_source(
    node: &Netns,
    client: &Netns,
    server: &Netns,
    server_ip: IpAddr,
    want: IpAddr,
    what: &str,
) {
    let mut last = None;
    let seen = poll_until(WAIT, Duration::from_millis(250), || {
        last = tcp_source_seen(client, server, server_ip);
        eprintln!("{what}: the server saw {last:?}");
        Ok((last == Some(want)).then_some(()))
    })
    .unwrap();
    if seen.is_none() {
        // The client's node decides: show its NAT table and pool sets.
        panic!(
            "{what}: the server saw {last:?}, want {want}\n{}\n{}",
            node.run(&["iptables-save", "-t", "nat"])
                .unwrap_or_default(),
            node.run(&["ipset", "list"]).unwrap_or_default()
        );
    }
}

#[test]
fn nat_outgoing_masquerades_only_traffic_leaving_the_pools() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::hosts_on_two_subnets([2, 0]).unwrap();
    let (ha, hb) = (&fabric.hosts[0], &fabric.hosts[1]);
    // The "internet": a host behind the router, outside every pool. The
    // router knows no route to the pools, so a reply can only come back to
    // a workload whose traffic was masqueraded to its node's address.
    let internet = Netns::new("inet").unwrap();
    let outside = Ipv4Addr::new(198, 51, 100, 1);
    veth(
        &fabric.router,
        "eth2",
        &["198.51.100.254/24"],
        &internet,
        "eth0",
        &[&format!("{outside}/24")],
    )
    .unwrap();
    internet
        .add_default_route(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 254)))
        .unwrap();

    let store = Store::embedded();
    store.apply(&pool_yaml_named("nat", "10.75.0.0/16", "Never", true));
    store.apply(&pool_yaml_named("plain", "10.76.0.0/16", "Never", false));
    store.apply(ALLOW_ALL_PROFILE);
    let a = NodeDaemon::start(&store, ha, "node-a");
    let b = NodeDaemon::start(&store, hb, "node-b");
    let from_pool = |cidr: &str| serde_json::json!({ "ipv4_pools": [cidr] });
    let wa = add_workload_with(&store, ha, "node-a", "wa", &from_pool("10.75.0.0/16"));
    let wb = add_workload_with(&store, hb, "node-b", "wb", &from_pool("10.76.0.0/16"));
    assert!(wa.ip.octets()[1] == 75 && wb.ip.octets()[1] == 76);
    a.wait_established(1);
    b.wait_established(1);
    let (nodes, hosts) = ([&a, &b], [ha, hb]);
    ping_or_dump(&wa.ns, wb.ip, &nodes, &hosts);

    // Out of the pools: masqueraded to node-a's address, so it even comes
    // back without the router knowing the pools.
    ping_or_dump(&wa.ns, outside, &nodes, &hosts);
    wait_source(
        &ha.ns,
        &wa.ns,
        &internet,
        outside.into(),
        ha.ipv4.into(),
        "natOutgoing pool to the internet",
    );
    // Between workloads, across nodes and across pools: never masqueraded.
    wait_source(
        &ha.ns,
        &wa.ns,
        &wb.ns,
        wb.ip.into(),
        wa.ip.into(),
        "nat pool to another pool's workload",
    );
    wait_source(
        &hb.ns,
        &wb.ns,
        &wa.ns,
        wa.ip.into(),
        wb.ip.into(),
        "plain pool to a nat pool's workload",
    );
    // A pool without natOutgoing is not masqueraded on the way out: the
    // internet host sees wb's own address once the router can route it back.
    fabric
        .router
        .add_route(&format!("{}/32", wb.ip), IpAddr::V4(hb.ipv4))
        .unwrap();
    wait_source(
        &hb.ns,
        &wb.ns,
        &internet,
        outside.into(),
        wb.ip.into(),
        "plain pool to the internet",
    );

    // natOutgoing off: wa's connections to the internet keep its address.
    fabric
        .router
        .add_route(&format!("{}/32", wa.ip), IpAddr::V4(ha.ipv4))
        .unwrap();
    wait_source(
        &ha.ns,
        &wa.ns,
        &internet,
        outside.into(),
        ha.ipv4.into(),
        "still masqueraded with a route back",
    );
    store.apply(&pool_yaml_named("nat", "10.75.0.0/16", "Never", false));
    wait_source(
        &ha.ns,
        &wa.ns,
        &internet,
        outside.into(),
        wa.ip.into(),
        "natOutgoing turned off",
    );
    // And on again.
    store.apply(&pool_yaml_named("nat", "10.75.0.0/16", "Never", true));
    wait_source(
        &ha.ns,
        &wa.ns,
        &internet,
        outside.into(),
        ha.ipv4.into(),
        "natOutgoing turned on again",
    );
}
