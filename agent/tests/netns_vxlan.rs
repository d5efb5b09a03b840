//! VXLAN overlay against the real kernel: two "nodes" in different subnets
//! joined by a router namespace, a workload on each; each node gets its
//! VXLAN device (`vxlan.brindle` over IPv4, `vxlan6.brindle` over IPv6),
//! static neighbour + FDB entries for the other, and the reconciler programs
//! `<remote block> via <remote tunnel addr> dev <device> onlink`. The
//! workloads ping each other across the overlay; the router knows nothing
//! of the workload blocks, so every packet between them was encapsulated.

mod common;

use std::net::IpAddr;

use brindle_agent::netlink::Netlink;
use brindle_agent::netns::{block_on_in_netns, run_in_netns};
use brindle_agent::reconciler::{Input, ReconcilerConfig};
use brindle_agent::route::{Route, BRINDLE_ROUTE_PROTOCOL};
use brindle_agent::routesync::RouteSyncer;
use brindle_agent::tunnel::{ensure_vxlan, sync_vteps, vtep_mac_for_node, Vtep, VxlanConfig};
use brindle_agent::workload::{add_workload, enable_host_forwarding, host_veth_name, WorkloadSpec};
use common::{can_run, veth_between, TestNetns};

struct Node {
    ns: TestNetns,
    /// Underlay address and prefix length.
    underlay: IpAddr,
    underlay_prefix: u8,
    router_side: &'static str,
    block: &'static str,
    tunnel: IpAddr,
    workload: TestNetns,
    workload_ip: IpAddr,
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

fn host_net(ip: IpAddr) -> ipnet::IpNet {
    ipnet::IpNet::from(ip)
}

fn config(node: &Node) -> VxlanConfig {
    VxlanConfig {
        tunnel_address: Some(node.tunnel),
        mac: Some(vtep_mac_for_node(&node.ns.name)),
        ..VxlanConfig::new(node.underlay, 1500)
    }
}

/// Create the node's VXLAN device and its workload; return the device MAC.
fn bring_up(node: &Node) -> Vec<u8> {
    let cfg = config(node);
    let want_mac = vtep_mac_for_node(&node.ns.name).to_vec();
    let expected_mtu = if node.underlay.is_ipv4() { 1450 } else { 1430 };
    let spec = WorkloadSpec {
        workload_id: format!("test/{}", node.workload.name),
        netns: node.workload.path(),
        container_ifname: "eth0".into(),
        addresses: vec![host_net(node.workload_ip)],
        mtu: cfg.mtu(),
        route_protocol: BRINDLE_ROUTE_PROTOCOL,
    };
    block_on_in_netns(&node.ns.path(), move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let link = ensure_vxlan(&nl, &cfg).await.expect("vxlan device");
        // Idempotent: a second ensure keeps the same device.
        let again = ensure_vxlan(&nl, &cfg).await.expect("vxlan device again");
        assert_eq!(link.index, again.index);
        assert_eq!(link.mtu, expected_mtu);
        assert_eq!(
            link.mac.as_ref(),
            Some(&want_mac),
            "stable VTEP MAC applied"
        );
        add_workload(&nl, &spec).await.expect("workload ADD");
        link.mac.expect("vxlan mac")
    })
    .unwrap()
}

/// Program the route to the remote block and the remote VTEP.
fn program(node: &Node, remote: &Node, remote_mac: Vec<u8>) {
    let device = config(node).name;
    let vtep = Vtep {
        tunnel_ip: remote.tunnel,
        mac: remote_mac,
        node_ip: remote.underlay,
    };
    let routes = vec![
        Route::blackhole(net(node.block)),
        Route::workload(
            host_net(node.workload_ip),
            host_veth_name(&format!("test/{}", node.workload.name)),
        ),
        Route::onlink(net(remote.block), remote.tunnel, device.clone()),
    ];
    block_on_in_netns(&node.ns.path(), move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let vteps = std::slice::from_ref(&vtep);
        assert_eq!(sync_vteps(&nl, &device, vteps).await.unwrap(), 2);
        assert_eq!(
            sync_vteps(&nl, &device, vteps).await.unwrap(),
            0,
            "converged"
        );
        let mut syncer = RouteSyncer::new(nl, ReconcilerConfig::default());
        syncer.handle(Input::SetAll(routes)).await;
        syncer.handle(Input::Start).await;
        assert!(
            syncer.reconciler().in_sync(),
            "{:?}",
            syncer.reconciler().failures()
        );
        // The workload route the CNI added was already right.
        assert_eq!(syncer.ops_applied(), 2);
    })
    .unwrap();
}

/// Router + two nodes with their underlay and a workload each.
fn topology(router: &TestNetns, a: &Node, b: &Node) {
    veth_between(router, "ra", &a.ns, "eth0");
    veth_between(router, "rb", &b.ns, "eth0");
    run_in_netns(&router.path(), enable_host_forwarding)
        .unwrap()
        .unwrap();
    for (node, router_if) in [(a, "ra"), (b, "rb")] {
        let nodad: &[&str] = if node.underlay.is_ipv6() {
            &["nodad"]
        } else {
            &[]
        };
        let mut args = vec![
            "addr".to_string(),
            "add".into(),
            format!("{}/{}", node.router_side, node.underlay_prefix),
            "dev".into(),
            router_if.into(),
        ];
        args.extend(nodad.iter().map(|s| s.to_string()));
        router.ip(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let mut args = vec![
            "addr".to_string(),
            "add".into(),
            format!("{}/{}", node.underlay, node.underlay_prefix),
            "dev".into(),
            "eth0".into(),
        ];
        args.extend(nodad.iter().map(|s| s.to_string()));
        node.ns
            .ip(&args.iter().map(String::as_str).collect::<Vec<_>>());
        node.ns
            .ip(&["route", "add", "default", "via", node.router_side]);
        run_in_netns(&node.ns.path(), enable_host_forwarding)
            .unwrap()
            .unwrap();
    }
    assert!(a.ns.ping(&b.underlay.to_string()), "underlay works");
}

fn ping_over_overlay(router: &TestNetns, a: &Node, b: &Node) {
    let mac_a = bring_up(a);
    let mac_b = bring_up(b);
    program(a, b, mac_b);
    program(b, a, mac_a);
    assert!(
        a.workload.ping(&b.workload_ip.to_string()),
        "workload A -> B over VXLAN"
    );
    assert!(
        b.workload.ping(&a.workload_ip.to_string()),
        "workload B -> A over VXLAN"
    );
    let family = if a.underlay.is_ipv4() { "-4" } else { "-6" };
    let router_routes = router.ip(&[family, "route", "show"]);
    assert!(
        !router_routes.contains(&b.workload_ip.to_string()) && !router_routes.contains("65"),
        "{router_routes}"
    );
}

#[test]
fn workloads_on_two_nodes_ping_over_vxlan() {
    if !can_run() {
        return;
    }
    let router = TestNetns::new("vxr");
    let a = Node {
        ns: TestNetns::new("vxa"),
        underlay: "10.1.0.2".parse().unwrap(),
        underlay_prefix: 24,
        router_side: "10.1.0.1",
        block: "10.65.0.0/26",
        tunnel: "10.65.0.0".parse().unwrap(),
        workload: TestNetns::new("vxwa"),
        workload_ip: "10.65.0.2".parse().unwrap(),
    };
    let b = Node {
        ns: TestNetns::new("vxb"),
        underlay: "10.2.0.2".parse().unwrap(),
        underlay_prefix: 24,
        router_side: "10.2.0.1",
        block: "10.65.1.0/26",
        tunnel: "10.65.1.0".parse().unwrap(),
        workload: TestNetns::new("vxwb"),
        workload_ip: "10.65.1.2".parse().unwrap(),
    };
    topology(&router, &a, &b);
    ping_over_overlay(&router, &a, &b);

    let routes = a.ns.ip(&["route", "show", "proto", "80"]);
    assert!(
        routes.contains("10.65.1.0/26 via 10.65.1.0 dev vxlan.brindle onlink"),
        "{routes}"
    );
    let details = a.ns.ip(&["-d", "link", "show", "vxlan.brindle"]);
    assert!(details.contains("id 4096"), "{details}");
    assert!(details.contains("dstport 4789"), "{details}");
    assert!(details.contains("nolearning"), "{details}");
    assert!(details.contains("mtu 1450"), "{details}");
    let neigh = a.ns.ip(&["neigh", "show", "dev", "vxlan.brindle"]);
    assert!(
        neigh.contains("10.65.1.0") && neigh.contains("PERMANENT"),
        "{neigh}"
    );
    let fdb = common::run(&[
        "ip",
        "netns",
        "exec",
        &a.ns.name,
        "bridge",
        "fdb",
        "show",
        "dev",
        "vxlan.brindle",
    ]);
    assert!(
        fdb.contains("dst 10.2.0.2") && fdb.contains("permanent"),
        "{fdb}"
    );
}

#[test]
fn workloads_on_two_nodes_ping_over_vxlan_v6() {
    if !can_run() {
        return;
    }
    let router = TestNetns::new("vxr6");
    let a = Node {
        ns: TestNetns::new("vxa6"),
        underlay: "fd00:a::2".parse().unwrap(),
        underlay_prefix: 64,
        router_side: "fd00:a::1",
        block: "fd00:65::/122",
        tunnel: "fd00:65::".parse().unwrap(),
        workload: TestNetns::new("vxwa6"),
        workload_ip: "fd00:65::2".parse().unwrap(),
    };
    let b = Node {
        ns: TestNetns::new("vxb6"),
        underlay: "fd00:b::2".parse().unwrap(),
        underlay_prefix: 64,
        router_side: "fd00:b::1",
        block: "fd00:65::40/122",
        tunnel: "fd00:65::40".parse().unwrap(),
        workload: TestNetns::new("vxwb6"),
        workload_ip: "fd00:65::42".parse().unwrap(),
    };
    topology(&router, &a, &b);
    ping_over_overlay(&router, &a, &b);

    let routes = a.ns.ip(&["-6", "route", "show", "proto", "80"]);
    assert!(
        routes.contains("fd00:65::40/122 via fd00:65::40 dev vxlan6.brindle"),
        "{routes}"
    );
    let details = a.ns.ip(&["-d", "link", "show", "vxlan6.brindle"]);
    assert!(details.contains("mtu 1430"), "{details}");
    assert!(details.contains("local fd00:a::2"), "{details}");
}

#[test]
fn vxlan_device_with_wrong_parameters_is_recreated() {
    if !can_run() {
        return;
    }
    let ns = TestNetns::new("vxfix");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    ns.ip(&["addr", "add", "10.1.0.2/24", "dev", "eth0"]);
    // Left behind by something else: wrong VNI, learning on.
    ns.ip(&[
        "link",
        "add",
        "vxlan.brindle",
        "type",
        "vxlan",
        "id",
        "42",
        "local",
        "10.1.0.2",
        "dstport",
        "4789",
    ]);
    let cfg = VxlanConfig {
        tunnel_address: Some("10.65.0.0".parse().unwrap()),
        ..VxlanConfig::new("10.1.0.2".parse::<IpAddr>().unwrap(), 1500)
    };
    let link = block_on_in_netns(&ns.path(), move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        ensure_vxlan(&nl, &cfg).await.expect("ensure");
        // The node's block moved: the old tunnel address goes.
        let moved = VxlanConfig {
            tunnel_address: Some("10.65.7.0".parse().unwrap()),
            ..cfg
        };
        ensure_vxlan(&nl, &moved).await.expect("ensure moved")
    })
    .unwrap();
    let addrs = ns.ip(&["-4", "addr", "show", "dev", "vxlan.brindle"]);
    assert!(addrs.contains("10.65.7.0/32"), "{addrs}");
    assert!(!addrs.contains("10.65.0.0"), "{addrs}");
    let params = link.vxlan.expect("vxlan params");
    assert_eq!(params.vni, Some(4096));
    assert_eq!(params.learning, Some(false));
    assert!(link.up);
    let details = ns.ip(&["-d", "link", "show", "vxlan.brindle"]);
    assert!(
        details.contains("id 4096") && details.contains("nolearning"),
        "{details}"
    );
}
