//! A route the node wants that another process of ours installed after the
//! node's last kernel dump (what `brindle-cni` does for every workload): the
//! node's "create, exclusive" Add fails with EEXIST, and the syncer adopts
//! the route when it is exactly the one wanted and carries our protocol. A
//! foreign route at a wanted prefix stays a reported failure.
//!
//! Needs root; the namespace is removed on drop, also on panic.

mod common;

use brindle_agent::netlink::Netlink;
use brindle_agent::netns::block_on_in_netns;
use brindle_agent::reconciler::{Input, OpError, ReconcilerConfig};
use brindle_agent::route::{Route, BRINDLE_ROUTE_PROTOCOL};
use brindle_agent::routesync::RouteSyncer;
use common::{can_run, TestNetns};

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

#[test]
fn a_route_of_ours_added_behind_the_nodes_back_is_adopted_not_failed() {
    if !can_run() {
        return;
    }
    let ns = TestNetns::new("adopt");
    ns.ip(&[
        "link", "add", "caliA", "type", "veth", "peer", "name", "caliAp",
    ]);
    ns.ip(&["link", "set", "caliA", "up"]);
    ns.ip(&["link", "set", "caliAp", "up"]);
    let path = ns.path();
    let name = ns.name.clone();

    let (failures, in_sync, looked_up, foreign) = block_on_in_netns(&path, move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let mut syncer = RouteSyncer::new(nl, ReconcilerConfig::default());
        // The node's view: an empty kernel.
        syncer.handle(Input::Start).await;
        // Meanwhile "brindle-cni" installs the workload's route (ours)
        // and someone else a static route at another wanted prefix.
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(["-n", &name])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        ip(&[
            "route",
            "add",
            "10.66.0.5/32",
            "dev",
            "caliA",
            "scope",
            "link",
            "proto",
            "80",
        ]);
        ip(&[
            "route",
            "add",
            "10.66.0.9/32",
            "dev",
            "caliA",
            "proto",
            "static",
        ]);
        let ours = Route::workload(net("10.66.0.5/32"), "caliA");
        let looked_up = syncer.kernel().route_at(ours.dst).await.unwrap();
        let foreign = syncer.kernel().route_at(net("10.66.0.9/32")).await.unwrap();
        syncer.handle(Input::SetAll(vec![ours.clone()])).await;
        let in_sync = syncer.reconciler().in_sync();
        syncer
            .handle(Input::SetAll(vec![
                ours,
                Route::workload(net("10.66.0.9/32"), "caliA"),
            ]))
            .await;
        (
            syncer.reconciler().failures().clone(),
            in_sync,
            looked_up,
            foreign,
        )
    })
    .unwrap();
    assert!(looked_up.is_some(), "route_at finds our route");
    assert!(foreign.is_none(), "route_at ignores other protocols");
    assert!(in_sync, "adopted, nothing failed");
    assert_eq!(
        failures.by_prefix.get(&net("10.66.0.9/32")),
        Some(&OpError::Exists),
        "a foreign route is still reported, not overwritten"
    );
    assert!(!failures.by_prefix.contains_key(&net("10.66.0.5/32")));
    // The foreign route is untouched.
    let shown = ns.ip(&["-4", "route", "show", "exact", "10.66.0.9/32"]);
    assert!(shown.contains("proto static"), "{shown}");
}
