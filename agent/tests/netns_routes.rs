//! The route reconciler against the real kernel, through [`RouteSyncer`] and
//! [`Netlink`], in a namespace of its own.

mod common;

use std::net::IpAddr;

use brindle_agent::netlink::{KernelRoutes, Netlink};
use brindle_agent::netns::block_on_in_netns;
use brindle_agent::reconciler::{Input, OpError, ReconcilerConfig};
use brindle_agent::route::{NextHop, Route, BRINDLE_ROUTE_PROTOCOL};
use brindle_agent::routesync::RouteSyncer;
use common::{can_run, TestNetns};

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A namespace with an "uplink" in 10.0.0.0/24 (peers .2 and .3 are
/// neighbours) and fd00:1::/64, plus two veth ends standing in for
/// workload interfaces.
fn node() -> TestNetns {
    let ns = TestNetns::new("rt");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "eth0"]);
    ns.ip(&["addr", "add", "fd00:1::1/64", "dev", "eth0", "nodad"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    ns.ip(&["link", "set", "eth0p", "up"]);
    for (a, b) in [
        ("caliA", "caliAp"),
        ("caliB", "caliBp"),
        ("caliOLD", "caliOLDp"),
    ] {
        ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        ns.ip(&["link", "set", a, "up"]);
        ns.ip(&["link", "set", b, "up"]);
    }
    ns
}

fn desired() -> Vec<Route> {
    vec![
        Route::blackhole(net("10.65.0.0/26")),
        Route::workload(net("10.65.0.5/32"), "caliA"),
        Route::workload(net("10.65.0.7/32"), "caliB"),
        Route::via(net("10.65.1.0/26"), ip("10.0.0.2")),
        Route::onlink(net("10.65.2.0/26"), ip("172.31.0.9"), "eth0"),
        Route::multipath(
            net("10.65.3.0/26"),
            vec![NextHop::via(ip("10.0.0.2")), NextHop::via(ip("10.0.0.3"))],
        ),
        Route::blackhole(net("fd00:65::/122")),
        Route::workload(net("fd00:65::5/128"), "caliA"),
        Route::via(net("fd00:65::40/122"), ip("fd00:1::2")),
        Route::multipath(
            net("fd00:65::80/122"),
            vec![
                NextHop::via_dev(ip("fd00:1::2"), "eth0"),
                NextHop::via_dev(ip("fd00:1::3"), "eth0"),
            ],
        ),
    ]
}

fn show(ns: &TestNetns) -> String {
    ns.ip(&["route", "show", "proto", "80"]) + &ns.ip(&["-6", "route", "show", "proto", "80"])
}

#[test]
fn converges_restarts_without_churn_and_repairs_hand_edits() {
    if !can_run() {
        return;
    }
    let ns = node();
    // Someone else's routes: one elsewhere, one squatting on a prefix we want.
    ns.ip(&[
        "route",
        "add",
        "10.99.0.0/24",
        "via",
        "10.0.0.9",
        "proto",
        "static",
    ]);
    ns.ip(&[
        "route",
        "add",
        "10.65.9.0/26",
        "via",
        "10.0.0.9",
        "proto",
        "bird",
    ]);
    // A stale route of ours to an old workload interface (calico#3940).
    ns.ip(&[
        "route",
        "add",
        "10.65.0.7/32",
        "dev",
        "caliOLD",
        "proto",
        "80",
        "scope",
        "link",
    ]);
    // A leftover of ours nobody wants any more.
    ns.ip(&[
        "route",
        "add",
        "10.65.8.0/26",
        "via",
        "10.0.0.3",
        "proto",
        "80",
    ]);

    let mut want = desired();
    want.push(Route::via(net("10.65.9.0/26"), ip("10.0.0.2")));
    let path = ns.path();

    let (ops, failures) = block_on_in_netns(&path, move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let mut syncer = RouteSyncer::new(nl, ReconcilerConfig::default());
        syncer.handle(Input::SetAll(want)).await;
        syncer.handle(Input::Start).await;
        (syncer.ops_applied(), syncer.reconciler().failures().clone())
    })
    .unwrap();
    let routes = show(&ns);
    eprintln!("{routes}");
    assert!(routes.contains("blackhole 10.65.0.0/26"), "{routes}");
    assert!(
        routes.contains("10.65.0.5 dev caliA scope link"),
        "{routes}"
    );
    assert!(
        routes.contains("10.65.0.7 dev caliB scope link"),
        "{routes}"
    );
    assert!(
        !routes.contains("caliOLD"),
        "stale route replaced: {routes}"
    );
    assert!(
        routes.contains("10.65.1.0/26 via 10.0.0.2 dev eth0"),
        "{routes}"
    );
    assert!(
        routes.contains("10.65.2.0/26 via 172.31.0.9 dev eth0 onlink"),
        "{routes}"
    );
    assert!(routes.contains("nexthop via 10.0.0.2 dev eth0"), "{routes}");
    assert!(routes.contains("nexthop via 10.0.0.3 dev eth0"), "{routes}");
    assert!(routes.contains("blackhole fd00:65::/122"), "{routes}");
    assert!(routes.contains("fd00:65::5 dev caliA"), "{routes}");
    assert!(
        routes.contains("fd00:65::40/122 via fd00:1::2 dev eth0"),
        "{routes}"
    );
    assert!(
        routes.contains("nexthop via fd00:1::3 dev eth0"),
        "{routes}"
    );
    assert!(
        !routes.contains("10.65.8.0"),
        "unwanted route of ours deleted: {routes}"
    );
    // Other protocols untouched; the squatted prefix is a reported conflict.
    let all = ns.ip(&["route", "show"]);
    assert!(
        all.contains("10.99.0.0/24 via 10.0.0.9 dev eth0 proto static"),
        "{all}"
    );
    assert!(
        all.contains("10.65.9.0/26 via 10.0.0.9 dev eth0 proto bird"),
        "{all}"
    );
    assert_eq!(
        failures.by_prefix.get(&net("10.65.9.0/26")),
        Some(&OpError::Exists)
    );
    assert!(ops >= 11, "ops {ops}");

    // Restart: a fresh reconciler over the converged kernel changes nothing
    // (the squatted prefix is retried once, and refused again).
    let want = desired();
    let (ops, in_sync) = block_on_in_netns(&path, move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let mut syncer = RouteSyncer::new(nl, ReconcilerConfig::default());
        syncer.handle(Input::SetAll(want)).await;
        syncer.handle(Input::Start).await;
        (syncer.ops_applied(), syncer.reconciler().in_sync())
    })
    .unwrap();
    assert_eq!(ops, 0, "restart must not touch correct routes");
    assert!(in_sync);

    // Hand edits: delete one route, point another elsewhere (keeping our
    // protocol), add one at a different metric; a resync repairs all.
    let want = desired();
    let before = show(&ns);
    let name = ns.name.clone();
    let routes = block_on_in_netns(&path, move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let mut syncer = RouteSyncer::new(nl, ReconcilerConfig::default());
        syncer.handle(Input::SetAll(want)).await;
        syncer.handle(Input::Start).await;
        assert_eq!(syncer.ops_applied(), 0);
        common::run(&[
            "ip",
            "netns",
            "exec",
            &name,
            "ip",
            "route",
            "del",
            "10.65.0.5/32",
        ]);
        common::run(&[
            "ip",
            "netns",
            "exec",
            &name,
            "ip",
            "route",
            "replace",
            "10.65.1.0/26",
            "via",
            "10.0.0.3",
            "proto",
            "80",
        ]);
        common::run(&[
            "ip",
            "netns",
            "exec",
            &name,
            "ip",
            "route",
            "add",
            "10.65.0.0/26",
            "via",
            "10.0.0.3",
            "proto",
            "80",
            "metric",
            "50",
        ]);
        syncer.handle(Input::ResyncTimer).await;
        assert_eq!(syncer.ops_applied(), 3, "exactly the three repairs");
        assert!(syncer.reconciler().in_sync());
        syncer.kernel().list_routes().await.unwrap()
    })
    .unwrap();
    assert_eq!(show(&ns), before, "kernel back to the converged state");
    assert_eq!(routes.len(), desired().len());

    // Removing everything removes exactly our routes.
    block_on_in_netns(&path, move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let mut syncer = RouteSyncer::new(nl, ReconcilerConfig::default());
        syncer.handle(Input::Start).await;
        assert!(syncer.reconciler().in_sync());
    })
    .unwrap();
    assert_eq!(show(&ns).trim(), "");
    let all = ns.ip(&["route", "show"]);
    assert!(
        all.contains("proto static") && all.contains("proto bird"),
        "{all}"
    );
}

#[test]
fn route_waits_for_its_interface() {
    if !can_run() {
        return;
    }
    let ns = node();
    let path = ns.path();
    let name = ns.name.clone();
    block_on_in_netns(&path, move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let mut syncer = RouteSyncer::new(nl, ReconcilerConfig::default());
        syncer.handle(Input::Start).await;
        syncer
            .handle(Input::Set(Route::workload(net("10.65.0.9/32"), "caliNEW")))
            .await;
        assert_eq!(
            syncer
                .reconciler()
                .failures()
                .by_prefix
                .get(&net("10.65.0.9/32")),
            Some(&OpError::LinkMissing("caliNEW".into()))
        );
        common::run(&[
            "ip", "-n", &name, "link", "add", "caliNEW", "type", "veth", "peer", "name", "caliNEWp",
        ]);
        common::run(&["ip", "-n", &name, "link", "set", "caliNEW", "up"]);
        syncer.handle(Input::LinkAppeared("caliNEW".into())).await;
        assert!(syncer.reconciler().in_sync());
    })
    .unwrap();
    assert!(ns
        .ip(&["route", "show", "proto", "80"])
        .contains("10.65.0.9 dev caliNEW"));
}

#[test]
fn running_syncer_repairs_hand_deleted_route_on_its_own() {
    if !can_run() {
        return;
    }
    let ns = node();
    let path = ns.path();
    let name = ns.name.clone();
    block_on_in_netns(&path, move || async move {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let config = ReconcilerConfig {
            resync_interval: std::time::Duration::from_millis(100),
            ..ReconcilerConfig::default()
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let task = tokio::spawn(RouteSyncer::new(nl, config).run(rx));
        tx.send(Input::Set(Route::workload(net("10.65.0.5/32"), "caliA")))
            .await
            .unwrap();
        let probe = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let present = |routes: &[brindle_agent::route::KernelRoute]| {
            routes.iter().any(|r| r.dst == net("10.65.0.5/32"))
        };
        // Wait for the state, not for a time: poll until the route shows up
        // (bounded only so a broken build fails instead of hanging).
        let mut rounds = 0;
        while !present(&probe.list_routes().await.unwrap()) {
            rounds += 1;
            assert!(rounds < 500, "route never installed");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        common::run(&["ip", "-n", &name, "route", "del", "10.65.0.5/32"]);
        let mut rounds = 0;
        loop {
            if present(&probe.list_routes().await.unwrap()) {
                break;
            }
            rounds += 1;
            assert!(rounds < 500, "route never repaired");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        drop(tx);
        let syncer = task.await.unwrap();
        assert!(syncer.ops_applied() >= 2, "installed, then repaired");
    })
    .unwrap();
}

#[test]
fn netns_helpers_act_in_the_target_namespace_only() {
    if !can_run() {
        return;
    }
    let ns = node();
    let path = ns.path();
    // A link that exists only in the target namespace is visible through a
    // connection opened by the helper, and the caller's thread is unchanged.
    let own_before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let names = runtime
        .block_on(brindle_agent::netns::in_netns(&path, || async {
            let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
            nl.links()
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.name)
                .collect::<Vec<_>>()
        }))
        .unwrap();
    assert!(names.contains(&"caliOLD".to_string()), "{names:?}");
    let inside = brindle_agent::netns::run_in_netns(&path, || {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    })
    .unwrap();
    assert_ne!(inside, own_before);
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        own_before
    );
    let err = brindle_agent::netns::run_in_netns(std::path::Path::new("/nonexistent/ns"), || ())
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ns"), "{err}");
}

#[test]
fn link_watcher_unblocks_route_waiting_for_its_veth() {
    if !can_run() {
        return;
    }
    let ns = node();
    let path = ns.path();
    let name = ns.name.clone();
    block_on_in_netns(&path, move || async move {
        let mut watcher = brindle_agent::linkwatch::LinkWatcher::start().unwrap();
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        // Resync far away: only the link event can unblock the route.
        let config = ReconcilerConfig {
            resync_interval: std::time::Duration::from_secs(3600),
            ..ReconcilerConfig::default()
        };
        let mut syncer = RouteSyncer::new(nl, config);
        syncer.handle(Input::Start).await;
        syncer
            .handle(Input::Set(Route::workload(net("10.65.0.9/32"), "caliW")))
            .await;
        assert!(!syncer.reconciler().in_sync());
        common::run(&[
            "ip", "-n", &name, "link", "add", "caliW", "type", "veth", "peer", "name", "caliWp",
        ]);
        common::run(&["ip", "-n", &name, "link", "set", "caliW", "up"]);
        while !syncer.reconciler().in_sync() {
            let event = watcher.next().await.expect("link events");
            if let Some(input) = event.reconciler_input() {
                syncer.handle(input).await;
            }
        }

        // Down flushes the kernel's IPv4 routes through the link; the
        // events alone (no resync) bring the route back once it is up.
        let probe = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let present = |routes: Vec<brindle_agent::route::KernelRoute>| {
            routes.iter().any(|r| r.dst == net("10.65.0.9/32"))
        };
        assert!(present(probe.list_routes().await.unwrap()));
        common::run(&["ip", "-n", &name, "link", "set", "caliW", "down"]);
        assert!(
            !present(probe.list_routes().await.unwrap()),
            "kernel flushed it"
        );
        common::run(&["ip", "-n", &name, "link", "set", "caliW", "up"]);
        loop {
            if present(probe.list_routes().await.unwrap()) && syncer.reconciler().in_sync() {
                break;
            }
            // Hang guard only: each awaited event is already queued.
            let event = tokio::time::timeout(std::time::Duration::from_secs(30), watcher.next())
                .await
                .expect("a link event")
                .expect("link events");
            if let Some(input) = event.reconciler_input() {
                syncer.handle(input).await;
            }
        }
    })
    .unwrap();
    assert!(ns
        .ip(&["route", "show", "proto", "80"])
        .contains("10.65.0.9 dev caliW"));
}
