//! IPv6 workloads under policy, by traffic: two workloads of one network
//! on one node, each with a /128 and a default route via the host side's
//! link-local address (as Calico wires them). They reach each other only if
//! the node's INPUT accepts their neighbour discovery, which comes from
//! link-local addresses the anti-spoofing set does not hold. Both iptables
//! backends. Needs root.

mod common;

use std::net::IpAddr;

use brindle_policy::apply::{Applier, IptablesFlavor, SystemBackend};
use brindle_policy::compile::{compile, Config};
use brindle_policy::ir::{PolicyModel, WorkloadEndpoint};
use brindle_testbed::Netns;
use common::in_netns;

fn workload(node: &Netns, iface: &str, ip: &str) -> Netns {
    let ns = Netns::new("pw6").unwrap();
    node.ip(&[
        "link",
        "add",
        iface,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns.name(),
    ])
    .unwrap();
    node.ip(&["link", "set", iface, "up"]).unwrap();
    node.ip(&["-6", "addr", "add", "fe80::1/64", "dev", iface, "nodad"])
        .unwrap();
    node.ip(&["-6", "route", "add", &format!("{ip}/128"), "dev", iface])
        .unwrap();
    ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{ip}/128"),
        "dev",
        "eth0",
        "nodad",
    ])
    .unwrap();
    ns.ip(&[
        "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
    ])
    .unwrap();
    ns
}

fn ndp_passes(flavor: IptablesFlavor) {
    let node = Netns::new("pnode6").unwrap();
    node.set_sysctl("net.ipv6.conf.all.forwarding", "1")
        .unwrap();
    let a = workload(&node, "calia6", "fd00:70::2");
    let b = workload(&node, "calib6", "fd00:70::3");
    let endpoint = |name: &str, iface: &str, ip: &str| WorkloadEndpoint {
        name: name.into(),
        interface: iface.into(),
        addrs: vec![format!("{ip}/128").parse().unwrap()],
        labels: Default::default(),
        profiles: vec!["blue".into()],
    };
    let model = PolicyModel {
        endpoints: vec![
            endpoint("a", "calia6", "fd00:70::2"),
            endpoint("b", "calib6", "fd00:70::3"),
        ],
        ..PolicyModel::default()
    };
    in_netns(node.name(), || {
        let mut applier = Applier::new(SystemBackend::new(flavor));
        applier.apply(&compile(&model, &Config::default())).unwrap();
    });
    let b_ip: IpAddr = "fd00:70::3".parse().unwrap();
    assert!(
        a.ping(b_ip).unwrap(),
        "{flavor:?}: a -> b over IPv6 (needs neighbour discovery to the node)"
    );
    in_netns(node.name(), || {
        Applier::new(SystemBackend::new(flavor))
            .uninstall()
            .unwrap()
    });
    drop(b);
}

#[test]
fn nft_ipv6_workloads_resolve_their_gateway_under_policy() {
    ndp_passes(IptablesFlavor::Nft);
}

#[test]
fn legacy_ipv6_workloads_resolve_their_gateway_under_policy() {
    ndp_passes(IptablesFlavor::Legacy);
}
