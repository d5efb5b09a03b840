//! VXLAN overlay against the real kernel: two "nodes" in different subnets
//! joined by a router namespace, a workload on each; each node gets
//! `vxlan.brindle`, static neighbour + FDB entries for the other, and the
//! reconciler programs `<remote block> via <remote tunnel addr> dev
//! vxlan.brindle onlink`. The workloads ping each other across the overlay.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use brindle_agent::netlink::Netlink;
use brindle_agent::netns::block_on_in_netns;
use brindle_agent::reconciler::{Input, ReconcilerConfig};
use brindle_agent::route::{Route, BRINDLE_ROUTE_PROTOCOL};
use brindle_agent::routesync::RouteSyncer;
use brindle_agent::tunnel::{
    ensure_vxlan, sync_vteps, vtep_mac_for_node, Vtep, VxlanConfig, VXLAN_DEVICE,
};
use brindle_agent::workload::{add_workload, host_veth_name, WorkloadSpec};
use common::{can_run, veth_between, TestNetns};

struct Node {
    ns: TestNetns,
    underlay: Ipv4Addr,
    block: &'static str,
    tunnel: Ipv4Addr,
    workload: TestNetns,
    workload_ip: &'static str,
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

/// Create the node's VXLAN device and its workload; return the device MAC.
fn bring_up(node: &Node) -> Vec<u8> {
    let cfg = VxlanConfig {
        tunnel_address: Some(node.tunnel),
        mac: Some(vtep_mac_for_node(&node.ns.name)),
        ..VxlanConfig::new(node.underlay, 1500)
    };
    let want_mac = vtep_mac_for_node(&node.ns.name).to_vec();
    let spec = WorkloadSpec {
        workload_id: format!("test/{}", node.workload.name),
        netns: node.workload.path(),
        container_ifname: "eth0".into(),
        addresses: vec![net(&format!("{}/32", node.workload_ip))],
        mtu: cfg.mtu(),
        route_protocol: BRINDLE_ROUTE_PROTOCOL,
    };
    block_on_in_netns(&node.ns.path(), move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let link = ensure_vxlan(&nl, &cfg).await.expect("vxlan device");
        // Idempotent: a second ensure keeps the same device.
        let again = ensure_vxlan(&nl, &cfg).await.expect("vxlan device again");
        assert_eq!(link.index, again.index);
        assert_eq!(link.mtu, 1450);
        add_workload(&nl, &spec).await.expect("workload ADD");
        assert_eq!(
            link.mac.as_ref(),
            Some(&want_mac),
            "stable VTEP MAC applied"
        );
        link.mac.expect("vxlan mac")
    })
    .unwrap()
}

/// Program the route to the remote block and the remote VTEP.
fn program(node: &Node, remote: &Node, remote_mac: Vec<u8>) {
    let vtep = Vtep {
        tunnel_ip: IpAddr::V4(remote.tunnel),
        mac: remote_mac,
        node_ip: IpAddr::V4(remote.underlay),
    };
    let routes = vec![
        Route::blackhole(net(node.block)),
        Route::workload(
            net(&format!("{}/32", node.workload_ip)),
            host_veth_name(&format!("test/{}", node.workload.name)),
        ),
        Route::onlink(net(remote.block), IpAddr::V4(remote.tunnel), VXLAN_DEVICE),
    ];
    block_on_in_netns(&node.ns.path(), move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        assert_eq!(
            sync_vteps(&nl, VXLAN_DEVICE, std::slice::from_ref(&vtep))
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            sync_vteps(&nl, VXLAN_DEVICE, &[vtep]).await.unwrap(),
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

#[test]
fn workloads_on_two_nodes_ping_over_vxlan() {
    if !can_run() {
        return;
    }
    let router = TestNetns::new("vxr");
    let a = Node {
        ns: TestNetns::new("vxa"),
        underlay: "10.1.0.2".parse().unwrap(),
        block: "10.65.0.0/26",
        tunnel: "10.65.0.0".parse().unwrap(),
        workload: TestNetns::new("vxwa"),
        workload_ip: "10.65.0.2",
    };
    let b = Node {
        ns: TestNetns::new("vxb"),
        underlay: "10.2.0.2".parse().unwrap(),
        block: "10.65.1.0/26",
        tunnel: "10.65.1.0".parse().unwrap(),
        workload: TestNetns::new("vxwb"),
        workload_ip: "10.65.1.2",
    };
    veth_between(&router, "ra", &a.ns, "eth0");
    veth_between(&router, "rb", &b.ns, "eth0");
    router.ip(&["addr", "add", "10.1.0.1/24", "dev", "ra"]);
    router.ip(&["addr", "add", "10.2.0.1/24", "dev", "rb"]);
    router.sysctl("net.ipv4.ip_forward", "1");
    for (node, gw) in [(&a, "10.1.0.1"), (&b, "10.2.0.1")] {
        node.ns.ip(&[
            "addr",
            "add",
            &format!("{}/24", node.underlay),
            "dev",
            "eth0",
        ]);
        node.ns.ip(&["route", "add", "default", "via", gw]);
        node.ns.sysctl("net.ipv4.ip_forward", "1");
    }
    assert!(a.ns.ping("10.2.0.2"), "underlay works");

    let mac_a = bring_up(&a);
    let mac_b = bring_up(&b);
    program(&a, &b, mac_b.clone());
    program(&b, &a, mac_a);

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

    assert!(a.workload.ping("10.65.1.2"), "workload A -> B over VXLAN");
    assert!(b.workload.ping("10.65.0.2"), "workload B -> A over VXLAN");
    // Nothing between the nodes may be routed natively: the router has no
    // route to the pod blocks, so the replies above were encapsulated.
    assert!(!router.ip(&["route", "show"]).contains("10.65."));
    let _ = mac_b;
}
