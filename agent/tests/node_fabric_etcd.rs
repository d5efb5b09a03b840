//! What only a remote store has: etcd goes away and comes back, and history
//! is compacted while a node cannot see it. Real `brindle-node` daemons on a
//! real etcd (in the router namespace, reached over the underlay), workloads
//! made by the real `brindle-cni`.
//!
//! Needs root. Every namespace, process, iptables rule (inside the router
//! namespace only) and temp file is owned by a handle and removed on drop,
//! also when a test panics.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use brindle_testbed::poll_until;
use common::fabric::*;

fn deny_from_yaml(ip: Ipv4Addr) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: deny-from\nspec:\n  selector: all()\n  order: 10\n  ingress:\n  - action: Deny\n    source:\n      nets: [\"{ip}/32\"]\n  - action: Allow\n  egress:\n  - action: Allow\n"
    )
}

/// Waits until pings from `from` to `to` stop being answered.
fn wait_unreachable(from: &brindle_testbed::Netns, to: Ipv4Addr, what: &str) {
    let cut = poll_until(WAIT, Duration::from_millis(250), || {
        Ok((!from.ping(IpAddr::V4(to))?).then_some(()))
    })
    .unwrap();
    assert!(cut.is_some(), "{what}");
}

/// etcd restarts under running daemons, and one node is cut off from it
/// while a policy is written and the history compacted. The cut-off node
/// keeps forwarding; once it can reach etcd again its watch finds its
/// revision compacted, it re-lists, and it enforces the policy written
/// meanwhile; later changes reach it through the new watch.
#[test]
fn etcd_restart_and_compaction_while_a_node_is_cut_off() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::hosts_on_two_subnets([2, 0]).unwrap();
    let (ha, hb) = (&fabric.hosts[0], &fabric.hosts[1]);
    let gw = Ipv4Addr::new(10, 0, 1, 254);
    let mut store = Store::etcd_in(&fabric.router, gw);
    store.apply(&pool_yaml("10.74.0.0/16", "Never"));
    store.apply(ALLOW_ALL_PROFILE);
    let a = NodeDaemon::start(&store, ha, "node-a");
    let b = NodeDaemon::start(&store, hb, "node-b");
    let wa = add_workload(&store, ha, "node-a", "wa");
    let wb = add_workload(&store, hb, "node-b", "wb");
    a.wait_established(1);
    b.wait_established(1);
    let (nodes, hosts) = ([&a, &b], [ha, hb]);
    ping_or_dump(&wa.ns, wb.ip, &nodes, &hosts);

    // etcd restarts: both daemons' watches resume where they were.
    store.etcd().restart().unwrap();
    let wa2 = add_workload(&store, ha, "node-a", "wa2");
    ping_or_dump(&wb.ns, wa2.ip, &nodes, &hosts);

    // node-b loses etcd (the restart closes its connections, the rule keeps
    // it from reconnecting); meanwhile a policy denying wa into everything
    // is written, more history piles up, and all of it is compacted.
    {
        let _cut = EtcdCut::new(&fabric.router, hb.ipv4);
        store.etcd().restart().unwrap();
        store.apply(&deny_from_yaml(wa.ip));
        for n in 0..5 {
            store.apply(&pool_yaml_named(
                &format!("churn-{n}"),
                &format!("10.{}.0.0/16", 200 + n),
                "Never",
                false,
            ));
        }
        for n in 0..5 {
            store.delete(&format!("/brindle/resources/v3/ippools/churn-{n}"));
        }
        let compacted = store.compact_now();
        eprintln!("compacted at revision {compacted}");
        // node-b keeps forwarding on what it had: wa still reaches wb
        // (wb's ingress is node-b's to enforce, and it has not seen the
        // policy), and node-a enforces it for its own workloads.
        assert!(
            wa.ns.ping(IpAddr::V4(wb.ip)).unwrap(),
            "node-b stopped forwarding without its store"
        );
        wait_unreachable(&wa.ns, wa2.ip, "node-a did not enforce the policy");
    }
    // Back in touch: node-b re-lists and enforces the policy.
    wait_unreachable(&wa.ns, wb.ip, "node-b never applied the policy");
    assert!(
        b.log().contains("history compacted; re-listing"),
        "node-b did not re-list:\n{}",
        tail(&b.log())
    );
    // Later changes reach node-b through its new watch.
    store.delete("/brindle/resources/v3/globalnetworkpolicies/deny-from");
    ping_or_dump(&wa.ns, wb.ip, &nodes, &hosts);
    let wb2 = add_workload(&store, hb, "node-b", "wb2");
    ping_or_dump(&wa2.ns, wb2.ip, &nodes, &hosts);
}
