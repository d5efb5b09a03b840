use super::*;
use crate::route::NextHop;
use std::net::IpAddr;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn kr(dst: &str, target: RouteTarget) -> KernelRoute {
    let dst = net(dst);
    KernelRoute {
        dst,
        metric: default_metric(&dst),
        target,
    }
}
fn dev(name: &str) -> RouteTarget {
    RouteTarget::Device(name.into())
}

/// Table-driven: (name, want, have, expected ops).
#[test]
fn diff_table() {
    let p = "10.65.0.3/32";
    let block = "10.65.1.0/26";
    let via_eth0 = RouteTarget::nexthops(vec![NextHop::via_dev(ip("192.168.0.2"), "eth0")]);
    let via_any = RouteTarget::nexthops(vec![NextHop::via(ip("192.168.0.2"))]);
    let tunl = RouteTarget::nexthops(vec![NextHop::onlink(ip("192.168.9.2"), "tunl0")]);
    let ecmp_ab = RouteTarget::nexthops(vec![
        NextHop::via_dev(ip("192.168.0.2"), "eth0"),
        NextHop::via_dev(ip("192.168.0.3"), "eth0"),
    ]);
    let ecmp_ba = RouteTarget::nexthops(vec![
        NextHop::via_dev(ip("192.168.0.3"), "eth0"),
        NextHop::via_dev(ip("192.168.0.2"), "eth0"),
    ]);
    let mut other_metric = kr(p, dev("caliA"));
    other_metric.metric = 100;

    type Case<'a> = (
        &'a str,
        &'a str,
        Option<RouteTarget>,
        Vec<KernelRoute>,
        Vec<RouteOp>,
    );
    let cases: Vec<Case<'_>> = vec![
        ("nothing wanted nothing there", p, None, vec![], vec![]),
        (
            "missing route is added",
            p,
            Some(dev("caliA")),
            vec![],
            vec![RouteOp::Add(Route::workload(net(p), "caliA"))],
        ),
        (
            "correct route is left alone",
            p,
            Some(dev("caliA")),
            vec![kr(p, dev("caliA"))],
            vec![],
        ),
        (
            "stale route to a dead veth is replaced (calico#3940)",
            p,
            Some(dev("caliNEW")),
            vec![kr(p, dev("caliOLD"))],
            vec![RouteOp::Replace(Route::workload(net(p), "caliNEW"))],
        ),
        (
            "unwanted route is deleted",
            p,
            None,
            vec![kr(p, dev("caliA"))],
            vec![RouteOp::Delete(kr(p, dev("caliA")))],
        ),
        (
            "route at a foreign metric is deleted and ours added",
            p,
            Some(dev("caliA")),
            vec![other_metric.clone()],
            vec![
                RouteOp::Delete(other_metric.clone()),
                RouteOp::Add(Route::workload(net(p), "caliA")),
            ],
        ),
        (
            "blackhole block kept",
            block,
            Some(RouteTarget::Blackhole),
            vec![kr(block, RouteTarget::Blackhole)],
            vec![],
        ),
        (
            "blackhole replaced by gateway when block moves",
            block,
            Some(via_any.clone()),
            vec![kr(block, RouteTarget::Blackhole)],
            vec![RouteOp::Replace(Route {
                dst: net(block),
                target: via_any.clone(),
            })],
        ),
        (
            "gateway without device matches resolved device",
            block,
            Some(via_any.clone()),
            vec![kr(block, via_eth0.clone())],
            vec![],
        ),
        (
            "direct route switched to ipip tunnel",
            block,
            Some(tunl.clone()),
            vec![kr(block, via_eth0.clone())],
            vec![RouteOp::Replace(Route {
                dst: net(block),
                target: tunl.clone(),
            })],
        ),
        (
            "ecmp in any order is equal",
            block,
            Some(ecmp_ab.clone()),
            vec![kr(block, ecmp_ba.clone())],
            vec![],
        ),
        (
            "ecmp losing a member is replaced",
            block,
            Some(via_eth0.clone()),
            vec![kr(block, ecmp_ab.clone())],
            vec![RouteOp::Replace(Route {
                dst: net(block),
                target: via_eth0.clone(),
            })],
        ),
        (
            "unsupported kernel route is replaced",
            block,
            Some(RouteTarget::Blackhole),
            vec![kr(block, RouteTarget::Unsupported("unreachable".into()))],
            vec![RouteOp::Replace(Route::blackhole(net(block)))],
        ),
        (
            "ipv6 workload added",
            "fd00:65::3/128",
            Some(dev("caliA")),
            vec![],
            vec![RouteOp::Add(Route::workload(
                net("fd00:65::3/128"),
                "caliA",
            ))],
        ),
    ];
    for (name, dst, want, have, expected) in cases {
        let got = diff_prefix(net(dst), want.as_ref(), &have);
        assert_eq!(got, expected, "case: {name}");
    }
}

fn applies(out: &[Output]) -> Vec<RouteOp> {
    out.iter()
        .filter_map(|o| match o {
            Output::Apply(op) => Some(op.clone()),
            _ => None,
        })
        .collect()
}

fn ok(r: &mut RouteReconciler, op: RouteOp) -> Vec<Output> {
    r.process(Input::OpResult { op, result: Ok(()) })
}

#[test]
fn nothing_is_applied_before_the_first_dump() {
    let mut r = RouteReconciler::new(ReconcilerConfig::default());
    assert!(r
        .process(Input::Set(Route::workload(net("10.0.0.1/32"), "caliA")))
        .is_empty());
    assert_eq!(r.process(Input::Start), vec![Output::DumpKernel]);
    // A second trigger while the dump is outstanding does not double it.
    assert!(r.process(Input::ResyncTimer).is_empty());
    let out = r.process(Input::KernelDump(vec![]));
    assert_eq!(
        applies(&out),
        vec![RouteOp::Add(Route::workload(net("10.0.0.1/32"), "caliA"))]
    );
    assert!(out.contains(&Output::StartResyncTimer(Duration::from_secs(90))));
}

#[test]
fn restart_with_correct_kernel_state_emits_no_ops() {
    let mut r = RouteReconciler::new(ReconcilerConfig::default());
    let routes = vec![
        Route::workload(net("10.0.0.1/32"), "caliA"),
        Route::blackhole(net("10.0.0.0/26")),
        Route::onlink(net("10.0.1.0/26"), ip("172.16.0.2"), "vxlan.brindle"),
    ];
    r.process(Input::SetAll(routes.clone()));
    r.process(Input::Start);
    let dump = routes
        .iter()
        .map(|rt| KernelRoute {
            dst: rt.dst,
            target: rt.target.clone(),
            metric: default_metric(&rt.dst),
        })
        .collect();
    let out = r.process(Input::KernelDump(dump));
    assert!(applies(&out).is_empty());
    assert!(r.in_sync());
}

#[test]
fn hand_deleted_route_is_repaired_at_resync() {
    let mut r = RouteReconciler::new(ReconcilerConfig::default());
    let route = Route::workload(net("10.0.0.1/32"), "caliA");
    r.process(Input::Set(route.clone()));
    r.process(Input::Start);
    let out = r.process(Input::KernelDump(vec![]));
    let op = applies(&out).remove(0);
    assert!(ok(&mut r, op).is_empty());
    assert!(r.in_sync());
    // Somebody runs `ip route del`; the resync sees it gone.
    assert_eq!(r.process(Input::ResyncTimer), vec![Output::DumpKernel]);
    let out = r.process(Input::KernelDump(vec![]));
    assert_eq!(applies(&out), vec![RouteOp::Add(route)]);
}

#[test]
fn change_during_in_flight_op_is_folded_into_one_follow_up() {
    let mut r = RouteReconciler::new(ReconcilerConfig::default());
    r.process(Input::Start);
    r.process(Input::KernelDump(vec![]));
    let out = r.process(Input::Set(Route::workload(net("10.0.0.1/32"), "caliA")));
    let first = applies(&out).remove(0);
    // Two more changes before the first op completes: no op yet.
    assert!(r
        .process(Input::Set(Route::workload(net("10.0.0.1/32"), "caliB")))
        .is_empty());
    assert!(r
        .process(Input::Set(Route::workload(net("10.0.0.1/32"), "caliC")))
        .is_empty());
    let out = ok(&mut r, first);
    assert_eq!(
        applies(&out),
        vec![RouteOp::Replace(Route::workload(
            net("10.0.0.1/32"),
            "caliC"
        ))]
    );
}

#[test]
fn missing_link_waits_then_retries_when_it_appears() {
    let mut r = RouteReconciler::new(ReconcilerConfig::default());
    r.process(Input::Start);
    r.process(Input::KernelDump(vec![]));
    let route = Route::workload(net("10.0.0.1/32"), "caliA");
    let op = applies(&r.process(Input::Set(route.clone()))).remove(0);
    let out = r.process(Input::OpResult {
        op,
        result: Err(OpError::LinkMissing("caliA".into())),
    });
    assert!(out.is_empty(), "no hot retry loop");
    assert!(!r.in_sync());
    assert!(r.process(Input::LinkAppeared("caliZ".into())).is_empty());
    let out = r.process(Input::LinkAppeared("caliA".into()));
    assert_eq!(applies(&out), vec![RouteOp::Add(route)]);
}

#[test]
fn link_down_re_adds_v4_routes_through_it_and_link_up_retries() {
    let mut r = RouteReconciler::new(ReconcilerConfig::default());
    r.process(Input::Start);
    let v4 = kr("10.0.0.1/32", dev("caliA"));
    let v6 = kr("fd00::1/128", dev("caliA"));
    let other = kr("10.0.0.2/32", dev("caliB"));
    r.process(Input::SetAll(vec![
        Route::workload(net("10.0.0.1/32"), "caliA"),
        Route::workload(net("fd00::1/128"), "caliA"),
        Route::workload(net("10.0.0.2/32"), "caliB"),
    ]));
    assert!(applies(&r.process(Input::KernelDump(vec![v4, v6, other]))).is_empty());
    // Down: only the IPv4 route through caliA is gone from the kernel.
    let out = r.process(Input::LinkDown("caliA".into()));
    let add = applies(&out);
    assert_eq!(
        add,
        vec![RouteOp::Add(Route::workload(net("10.0.0.1/32"), "caliA"))]
    );
    // The kernel refuses while the link is down…
    let out = r.process(Input::OpResult {
        op: add[0].clone(),
        result: Err(OpError::Other("Network is down".into())),
    });
    assert!(out.is_empty());
    // …and the route comes back as soon as it is up again.
    let out = r.process(Input::LinkAppeared("caliA".into()));
    assert_eq!(applies(&out), add);
    ok(&mut r, add[0].clone());
    assert!(r.in_sync());
    // Deleted: both families go.
    let out = r.process(Input::LinkDeleted("caliA".into()));
    assert_eq!(applies(&out).len(), 2);
}

#[test]
fn foreign_route_conflict_is_reported_not_overwritten() {
    let mut r = RouteReconciler::new(ReconcilerConfig::default());
    r.process(Input::Start);
    r.process(Input::KernelDump(vec![]));
    let op = applies(&r.process(Input::Set(Route::blackhole(net("10.0.0.0/26"))))).remove(0);
    assert!(
        matches!(op, RouteOp::Add(_)),
        "never replace what is not ours"
    );
    let out = r.process(Input::OpResult {
        op,
        result: Err(OpError::Exists),
    });
    assert!(out.is_empty());
    assert_eq!(
        r.failures().by_prefix.get(&net("10.0.0.0/26")),
        Some(&OpError::Exists)
    );
}

#[test]
fn delete_of_already_gone_route_counts_as_done() {
    let mut r = RouteReconciler::new(ReconcilerConfig::default());
    r.process(Input::Start);
    let stale = kr("10.0.0.9/32", dev("caliX"));
    let out = r.process(Input::KernelDump(vec![stale.clone()]));
    assert_eq!(applies(&out), vec![RouteOp::Delete(stale.clone())]);
    let out = r.process(Input::OpResult {
        op: RouteOp::Delete(stale),
        result: Err(OpError::NotFound),
    });
    assert!(out.is_empty());
    assert!(r.in_sync());
}

#[test]
fn set_all_removes_prefixes_not_listed() {
    let mut r = RouteReconciler::new(ReconcilerConfig::default());
    r.process(Input::Start);
    let a = kr("10.0.0.1/32", dev("caliA"));
    let b = kr("10.0.0.2/32", dev("caliB"));
    r.process(Input::SetAll(vec![
        Route::workload(net("10.0.0.1/32"), "caliA"),
        Route::workload(net("10.0.0.2/32"), "caliB"),
    ]));
    assert!(applies(&r.process(Input::KernelDump(vec![a, b.clone()]))).is_empty());
    let out = r.process(Input::SetAll(vec![Route::workload(
        net("10.0.0.1/32"),
        "caliA",
    )]));
    assert_eq!(applies(&out), vec![RouteOp::Delete(b)]);
}

#[test]
fn multi_step_prefix_converges_one_op_at_a_time() {
    let mut r = RouteReconciler::new(ReconcilerConfig::default());
    r.process(Input::Start);
    let mut odd = kr("10.0.0.1/32", dev("caliA"));
    odd.metric = 7;
    r.process(Input::Set(Route::workload(net("10.0.0.1/32"), "caliA")));
    let out = r.process(Input::KernelDump(vec![odd.clone()]));
    assert_eq!(applies(&out), vec![RouteOp::Delete(odd.clone())]);
    let out = ok(&mut r, RouteOp::Delete(odd));
    let add = applies(&out);
    assert_eq!(
        add,
        vec![RouteOp::Add(Route::workload(net("10.0.0.1/32"), "caliA"))]
    );
    assert!(ok(&mut r, add[0].clone()).is_empty());
    assert!(r.in_sync());
}
