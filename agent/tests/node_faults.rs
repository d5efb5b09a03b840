//! Faults that must lose nothing, with real `brindle-node` daemons, the real
//! `brindle-cni`, a real etcd and real kernels in namespaces:
//! * etcd unreachable from every node for a minute: a running ping loses
//!   no packet, the routes stay as they were, and what was written meanwhile
//!   is enforced once etcd is back;
//! * `kill -9` of brindle-node in the middle of a ping and of a storm of
//!   CNI ADDs: no packet lost, every ADD done, every address once, `ipam
//!   check` clean, the new workloads reachable after the restart.
//!
//! Needs root. Every namespace, process and iptables rule (inside the router
//! namespace only) is owned by a handle and removed on drop.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use brindle_testbed::poll_until;
use common::fabric::*;

/// The routes brindle-node owns in `ns` (protocol brindle), sorted.
fn brindle_routes(ns: &brindle_testbed::Netns) -> Vec<String> {
    let text = ns.ip(&["-4", "route", "show", "proto", "brindle"]).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn etcd_unreachable_for_a_minute_loses_no_packet_and_catches_up() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::hosts_on_two_subnets([2, 0]).unwrap();
    let (ha, hb) = (&fabric.hosts[0], &fabric.hosts[1]);
    let gw = Ipv4Addr::new(10, 0, 1, 254);
    let store = Store::etcd_in(&fabric.router, gw);
    store.apply(&pool_yaml("10.76.0.0/16", "Never"));
    store.apply(ALLOW_ALL_PROFILE);
    let a = NodeDaemon::start(&store, ha, "node-a");
    let b = NodeDaemon::start(&store, hb, "node-b");
    let wa = add_workload(&store, ha, "node-a", "wa");
    let wb = add_workload(&store, hb, "node-b", "wb");
    let wb2 = add_workload(&store, hb, "node-b", "wb2");
    a.wait_established(1);
    b.wait_established(1);
    let (nodes, hosts) = ([&a, &b], [ha, hb]);
    ping_or_dump(&wa.ns, wb.ip, &nodes, &hosts);
    ping_or_dump(&wb2.ns, wa.ip, &nodes, &hosts);

    let before = [brindle_routes(&ha.ns), brindle_routes(&hb.ns)];
    let mut during = None;
    // 70 s of pings (0.1 s apart) around a 60 s outage.
    ping_loss_free_for(&wa.ns, wb.ip, 700, || {
        let cuts = [
            EtcdCut::new(&fabric.router, ha.ipv4),
            EtcdCut::new(&fabric.router, hb.ipv4),
        ];
        let start = Instant::now();
        // Written while no node can see it: wb2 may no longer reach wa.
        store.apply(&format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: deny-wb2\nspec:\n  selector: all()\n  order: 10\n  ingress:\n  - action: Deny\n    source:\n      nets: [\"{}/32\"]\n  - action: Allow\n  egress:\n  - action: Allow\n",
            wb2.ip
        ));
        std::thread::sleep(Duration::from_secs(60).saturating_sub(start.elapsed()));
        during = Some([brindle_routes(&ha.ns), brindle_routes(&hb.ns)]);
        assert!(
            wb2.ns.ping(IpAddr::V4(wa.ip)).unwrap(),
            "wb2 lost wa while no node could read a change\n{}\n{}\n{}",
            fabric
                .router
                .run(&["iptables", "-w", "-L", "INPUT", "-v", "-n"])
                .unwrap_or_default(),
            tail(&a.log()),
            tail(&b.log())
        );
        drop(cuts);
    });
    assert_eq!(
        during.as_ref(),
        Some(&before),
        "routes changed while etcd was away"
    );
    // Back in touch: node-a reads the policy and enforces it.
    let enforced = poll_until(WAIT, Duration::from_millis(250), || {
        Ok((!wb2.ns.ping(IpAddr::V4(wa.ip))?).then_some(()))
    })
    .unwrap();
    assert!(
        enforced.is_some(),
        "the policy written during the outage never took effect\n{}",
        tail(&a.log())
    );
    ping_or_dump(&wa.ns, wb.ip, &nodes, &hosts);
    // And new work goes through again.
    let wa2 = add_workload(&store, ha, "node-a", "wa2");
    ping_or_dump(&wb.ns, wa2.ip, &nodes, &hosts);
}

#[test]
fn kill_9_of_a_node_during_a_ping_and_a_cni_add_storm_loses_nothing() {
    if !can_run() {
        return;
    }
    const STORM: usize = 12;
    let fabric = brindle_testbed::hosts_on_two_subnets([2, 0]).unwrap();
    let (ha, hb) = (&fabric.hosts[0], &fabric.hosts[1]);
    let store = Store::embedded();
    store.apply(&pool_yaml("10.77.0.0/16", "Never"));
    store.apply(ALLOW_ALL_PROFILE);
    let a = NodeDaemon::start(&store, ha, "node-a");
    let mut b = NodeDaemon::start(&store, hb, "node-b");
    let wa = add_workload(&store, ha, "node-a", "wa");
    let wb = add_workload(&store, hb, "node-b", "wb");
    a.wait_established(1);
    b.wait_established(1);
    ping_or_dump(&wa.ns, wb.ip, &[&a, &b], &[ha, hb]);

    let mut storm = Vec::new();
    ping_loss_free_for(&wa.ns, wb.ip, 200, || {
        std::thread::scope(|scope| {
            let adds: Vec<_> = (0..STORM)
                .map(|i| {
                    let store = &store;
                    scope.spawn(move || add_workload(store, hb, "node-b", &format!("storm{i}")))
                })
                .collect();
            std::thread::sleep(Duration::from_millis(300));
            let pid = b.pid().expect("node-b runs");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            std::thread::sleep(Duration::from_secs(1));
            b.restart(hb);
            for add in adds {
                storm.push(add.join().expect("a CNI ADD failed"));
            }
        });
    });
    b.wait_established(1);

    // Every address once.
    let mut seen = BTreeSet::new();
    for ip in [wa.ip, wb.ip].into_iter().chain(storm.iter().map(|w| w.ip)) {
        assert!(seen.insert(ip), "{ip} handed out twice");
    }
    // IPAM agrees with what runs.
    let report = store.ipam_check();
    assert!(
        report.leaks.is_empty() && report.conflicts.is_empty(),
        "ipam check: {report:?}"
    );
    assert_eq!(report.allocated, 2 + STORM, "{report:?}");
    // The storm's workloads are reachable from the other node.
    for w in &storm {
        ping_or_dump(&wa.ns, w.ip, &[&a, &b], &[ha, hb]);
    }
}

/// Two nodes on a 3-member etcd cluster (every member in their URL): the
/// leader is SIGKILLed while a running ping goes on; both daemons follow
/// the new leader: a workload added afterwards (its address from IPAM on
/// the survivors) is reachable from the other node, nothing is lost, and
/// `ipam check` is clean.
#[test]
fn nodes_follow_a_new_etcd_leader() {
    if !can_run() {
        return;
    }
    let fabric = brindle_testbed::hosts_on_two_subnets([2, 0]).unwrap();
    let (ha, hb) = (&fabric.hosts[0], &fabric.hosts[1]);
    let gw = Ipv4Addr::new(10, 0, 1, 254);
    let mut store = Store::etcd_cluster_in(&fabric.router, gw, 3);
    store.apply(&pool_yaml("10.79.0.0/16", "Never"));
    store.apply(ALLOW_ALL_PROFILE);
    let a = NodeDaemon::start(&store, ha, "node-a");
    let b = NodeDaemon::start(&store, hb, "node-b");
    let wa = add_workload(&store, ha, "node-a", "wa");
    let wb = add_workload(&store, hb, "node-b", "wb");
    a.wait_established(1);
    b.wait_established(1);
    let (nodes, hosts) = ([&a, &b], [ha, hb]);
    ping_or_dump(&wa.ns, wb.ip, &nodes, &hosts);

    ping_loss_free_for(&wa.ns, wb.ip, 150, || {
        let leader = store.etcd_cluster().leader().unwrap();
        store.etcd_cluster().kill(leader);
        eprintln!("killed etcd member{leader}");
    });
    let new_leader = poll_until(WAIT, Duration::from_millis(200), || {
        Ok(store.etcd_cluster().leader().ok())
    })
    .unwrap();
    assert!(new_leader.is_some(), "no new leader\n{}", store.log());
    // Both daemons go on with the survivors: a new workload on node-b is
    // routed and allowed on node-a's side, and one on node-a on node-b's.
    let wb2 = add_workload(&store, hb, "node-b", "wb2");
    ping_or_dump(&wa.ns, wb2.ip, &nodes, &hosts);
    let wa2 = add_workload(&store, ha, "node-a", "wa2");
    ping_or_dump(&wb.ns, wa2.ip, &nodes, &hosts);
    let report = store.ipam_check();
    assert!(
        report.leaks.is_empty() && report.conflicts.is_empty(),
        "ipam check: {report:?}"
    );
    assert_eq!(report.allocated, 4, "{report:?}");
}
