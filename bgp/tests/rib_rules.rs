//! The RIB: every step of the decision process, ECMP, the import and export
//! rules (eBGP, iBGP, route reflection with its loop checks), Adj-RIB-Out
//! packing, and peer up/down.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use brindle_bgp::packet::{
    AsPath, AsSegment, AsSegmentType, Family, NextHop, Origin, PathAttributes,
};
use brindle_bgp::rib::{
    BestChange, ImportReject, PathAttrs, PeerConfig, Rib, RibConfig, RibError, RouteSource,
    UpdateBatch,
};
use ipnet::IpNet;

const LOCAL_AS: u32 = 64512;
const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SELF_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SELF_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

fn net(s: &str) -> IpNet {
    s.parse().expect("test prefix")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn config() -> RibConfig {
    RibConfig::new(LOCAL_AS, ROUTER_ID)
}

/// A peer at `addr` in `asn` whose BGP identifier is its address.
fn peer(addr: &str, asn: u32) -> PeerConfig {
    let mut p = PeerConfig::new(ip(addr), asn, v4(addr));
    p.local_v4 = Some(SELF_V4);
    p.local_v6 = Some(SELF_V6);
    p
}

fn client(addr: &str) -> PeerConfig {
    let mut p = peer(addr, LOCAL_AS);
    p.rr_client = true;
    p
}

/// Attributes with an AS_SEQUENCE `path` and IPv4 next hop `nh`.
fn route(path: &[u32], nh: &str) -> PathAttrs {
    PathAttrs {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence(path.iter().copied())),
            ..Default::default()
        },
        next_hop: Some(NextHop::V4(v4(nh))),
    }
}

fn with(mut attrs: PathAttrs, f: impl FnOnce(&mut PathAttributes)) -> PathAttrs {
    f(&mut attrs.attributes);
    attrs
}

fn rib_with(config: RibConfig, peers: &[PeerConfig]) -> Rib {
    let mut rib = Rib::new(config);
    for p in peers {
        rib.peer_up(p.clone()).expect("peer up");
    }
    rib
}

fn best_source(rib: &Rib, prefix: &str) -> Option<RouteSource> {
    rib.best(&net(prefix)).map(|s| s.source)
}

fn from(addr: &str) -> Option<RouteSource> {
    Some(RouteSource::Peer(ip(addr)))
}

/// Everything pending for `peer`, as (prefix → attributes or withdrawn).
fn flush(rib: &mut Rib, peer: &str) -> Vec<UpdateBatch> {
    rib.take_updates(ip(peer)).expect("known peer")
}

fn announced(batches: &[UpdateBatch], prefix: &str) -> Option<Arc<PathAttrs>> {
    batches.iter().find_map(|b| match b {
        UpdateBatch::Announce { attrs, prefixes } if prefixes.contains(&net(prefix)) => {
            Some(Arc::clone(attrs))
        }
        _ => None,
    })
}

fn withdrawn(batches: &[UpdateBatch], prefix: &str) -> bool {
    batches
        .iter()
        .any(|b| matches!(b, UpdateBatch::Withdraw(w) if w.contains(&net(prefix))))
}

const P: &str = "10.1.0.0/26";

// ----- decision process ------------------------------------------------------

#[test]
fn step1_highest_local_pref() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", LOCAL_AS), peer("10.0.0.3", LOCAL_AS)],
    );
    let low = with(route(&[], "10.0.0.2"), |a| a.local_pref = Some(100));
    let high = with(route(&[65000, 65001], "10.0.0.3"), |a| {
        a.local_pref = Some(200)
    });
    rib.announce(ip("10.0.0.2"), &[net(P)], low).unwrap();
    rib.announce(ip("10.0.0.3"), &[net(P)], high).unwrap();
    assert_eq!(best_source(&rib, P), from("10.0.0.3"));
}

#[test]
fn step2_local_route_over_learned() {
    let mut rib = rib_with(config(), &[peer("10.0.0.2", 65000)]);
    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[65000], "10.0.0.2"))
        .unwrap();
    let out = rib.originate(&[net(P)], route(&[], "0.0.0.0"));
    assert_eq!(best_source(&rib, P), Some(RouteSource::Local));
    assert_eq!(out.best_changes.len(), 1);
    // Local routes install no next hop: the prefix is ours.
    assert!(out.best_changes[0]
        .best
        .as_ref()
        .is_some_and(|b| b.next_hops.is_empty()));
}

#[test]
fn step3_shortest_as_path_with_set_counting_one() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", 65001), peer("10.0.0.3", 65001)],
    );
    let mut with_set = route(&[65001], "10.0.0.3");
    with_set
        .attributes
        .as_path
        .as_mut()
        .unwrap()
        .segments
        .push(AsSegment {
            kind: AsSegmentType::Set,
            asns: vec![65010, 65011, 65012],
        });
    rib.announce(
        ip("10.0.0.2"),
        &[net(P)],
        route(&[65001, 65002, 65003], "10.0.0.2"),
    )
    .unwrap();
    rib.announce(ip("10.0.0.3"), &[net(P)], with_set).unwrap();
    // [65001 {65010 65011 65012}] has length 2 < 3.
    assert_eq!(best_source(&rib, P), from("10.0.0.3"));
}

#[test]
fn step4_lowest_origin() {
    let mut rib = rib_with(
        config(),
        &[
            peer("10.0.0.2", 65001),
            peer("10.0.0.3", 65001),
            peer("10.0.0.4", 65001),
        ],
    );
    let incomplete = with(route(&[65001], "10.0.0.2"), |a| {
        a.origin = Some(Origin::Incomplete)
    });
    let egp = with(route(&[65001], "10.0.0.3"), |a| {
        a.origin = Some(Origin::Egp)
    });
    let igp = route(&[65001], "10.0.0.4");
    rib.announce(ip("10.0.0.2"), &[net(P)], incomplete).unwrap();
    rib.announce(ip("10.0.0.3"), &[net(P)], egp).unwrap();
    assert_eq!(best_source(&rib, P), from("10.0.0.3"));
    rib.announce(ip("10.0.0.4"), &[net(P)], igp).unwrap();
    assert_eq!(best_source(&rib, P), from("10.0.0.4"));
}

#[test]
fn step5_med_only_within_the_same_neighbour_as() {
    // Same neighbour AS: lower MED wins although its router id is higher.
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", 65001), peer("10.0.0.3", 65001)],
    );
    rib.announce(
        ip("10.0.0.2"),
        &[net(P)],
        with(route(&[65001], "10.0.0.2"), |a| a.med = Some(50)),
    )
    .unwrap();
    rib.announce(
        ip("10.0.0.3"),
        &[net(P)],
        with(route(&[65001], "10.0.0.3"), |a| a.med = Some(10)),
    )
    .unwrap();
    assert_eq!(best_source(&rib, P), from("10.0.0.3"));

    // Different neighbour ASes: MED is not compared, the router id decides.
    let different_as = |cfg: RibConfig| {
        let mut rib = rib_with(cfg, &[peer("10.0.0.2", 65001), peer("10.0.0.3", 65002)]);
        rib.announce(
            ip("10.0.0.2"),
            &[net(P)],
            with(route(&[65001], "10.0.0.2"), |a| a.med = Some(50)),
        )
        .unwrap();
        rib.announce(
            ip("10.0.0.3"),
            &[net(P)],
            with(route(&[65002], "10.0.0.3"), |a| a.med = Some(10)),
        )
        .unwrap();
        best_source(&rib, P)
    };
    assert_eq!(different_as(config()), from("10.0.0.2"));
    let mut always = config();
    always.always_compare_med = true;
    assert_eq!(different_as(always), from("10.0.0.3"));
}

#[test]
fn step5_missing_med_counts_as_zero() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", 65001), peer("10.0.0.3", 65001)],
    );
    rib.announce(
        ip("10.0.0.2"),
        &[net(P)],
        with(route(&[65001], "10.0.0.2"), |a| a.med = Some(1)),
    )
    .unwrap();
    rib.announce(ip("10.0.0.3"), &[net(P)], route(&[65001], "10.0.0.3"))
        .unwrap();
    assert_eq!(best_source(&rib, P), from("10.0.0.3"));
}

#[test]
fn step6_ebgp_over_ibgp() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", 65001), peer("10.0.0.3", LOCAL_AS)],
    );
    // iBGP route with the lower router id and same path length.
    rib.announce(
        ip("10.0.0.3"),
        &[net(P)],
        with(route(&[65001], "10.9.9.9"), |a| a.local_pref = Some(100)),
    )
    .unwrap();
    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[65001], "10.0.0.2"))
        .unwrap();
    assert_eq!(best_source(&rib, P), from("10.0.0.2"));
}

#[test]
fn step7_lowest_igp_cost_and_unreachable_next_hops() {
    let igp = |nh: IpAddr| match nh {
        IpAddr::V4(a) if a == Ipv4Addr::new(10, 0, 0, 2) => Some(20),
        IpAddr::V4(a) if a == Ipv4Addr::new(10, 0, 0, 3) => Some(10),
        _ => None,
    };
    let mut rib = Rib::new(config()).with_igp_cost(igp);
    for p in [
        peer("10.0.0.2", LOCAL_AS),
        peer("10.0.0.3", LOCAL_AS),
        peer("10.0.0.4", LOCAL_AS),
    ] {
        rib.peer_up(p).unwrap();
    }
    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[], "10.0.0.2"))
        .unwrap();
    rib.announce(ip("10.0.0.3"), &[net(P)], route(&[], "10.0.0.3"))
        .unwrap();
    assert_eq!(best_source(&rib, P), from("10.0.0.3"));
    // Unreachable next hop: never selected, even as the only route.
    rib.announce(
        ip("10.0.0.4"),
        &[net("10.2.0.0/26")],
        route(&[], "10.0.0.4"),
    )
    .unwrap();
    assert_eq!(best_source(&rib, "10.2.0.0/26"), None);
}

#[test]
fn step8_shortest_cluster_list() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", LOCAL_AS), peer("10.0.0.3", LOCAL_AS)],
    );
    let attrs = |cl: Vec<Ipv4Addr>| {
        with(route(&[], "10.5.5.5"), |a| {
            a.originator_id = Some(v4("10.5.5.5"));
            a.cluster_list = cl;
        })
    };
    rib.announce(
        ip("10.0.0.2"),
        &[net(P)],
        attrs(vec![v4("1.1.1.1"), v4("2.2.2.2")]),
    )
    .unwrap();
    rib.announce(ip("10.0.0.3"), &[net(P)], attrs(vec![v4("3.3.3.3")]))
        .unwrap();
    assert_eq!(best_source(&rib, P), from("10.0.0.3"));
}

#[test]
fn step9_lowest_originator_id_or_router_id() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", LOCAL_AS), peer("10.0.0.3", LOCAL_AS)],
    );
    // The peer with the higher router id carries a lower ORIGINATOR_ID.
    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[], "10.0.0.2"))
        .unwrap();
    rib.announce(
        ip("10.0.0.3"),
        &[net(P)],
        with(route(&[], "10.0.0.3"), |a| {
            a.originator_id = Some(v4("1.1.1.1"))
        }),
    )
    .unwrap();
    assert_eq!(best_source(&rib, P), from("10.0.0.3"));
}

#[test]
fn step10_lowest_peer_address() {
    // Two sessions to the same router (same identifier): address decides.
    let mut a = peer("10.0.0.3", 65001);
    a.router_id = v4("9.9.9.9");
    let mut b = peer("10.0.0.2", 65001);
    b.router_id = v4("9.9.9.9");
    let mut rib = rib_with(config(), &[a, b]);
    rib.announce(ip("10.0.0.3"), &[net(P)], route(&[65001], "10.0.0.3"))
        .unwrap();
    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[65001], "10.0.0.2"))
        .unwrap();
    assert_eq!(best_source(&rib, P), from("10.0.0.2"));
}

// ----- ECMP ------------------------------------------------------------------

fn ecmp_rib(max_paths: usize) -> Rib {
    let mut cfg = config();
    cfg.max_paths = max_paths;
    rib_with(
        cfg,
        &[
            peer("10.0.0.4", 65001),
            peer("10.0.0.2", 65002),
            peer("10.0.0.3", 65003),
        ],
    )
}

#[test]
fn ecmp_installs_equal_routes_in_tie_break_order() {
    let mut rib = ecmp_rib(4);
    for (addr, asn) in [
        ("10.0.0.4", 65001),
        ("10.0.0.2", 65002),
        ("10.0.0.3", 65003),
    ] {
        rib.announce(ip(addr), &[net(P)], route(&[asn], addr))
            .unwrap();
    }
    let best = rib.best(&net(P)).unwrap();
    assert_eq!(best.source, RouteSource::Peer(ip("10.0.0.2")));
    assert_eq!(
        best.next_hops,
        vec![ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")]
    );

    for p in ["10.0.0.2", "10.0.0.3", "10.0.0.4"] {
        flush(&mut rib, p);
    }
    // A worse route (longer path) leaves the set; the best did not change,
    // but the Loc-RIB change is still reported for the kernel.
    let out = rib
        .announce(
            ip("10.0.0.4"),
            &[net(P)],
            route(&[65001, 65009], "10.0.0.4"),
        )
        .unwrap();
    assert_eq!(
        out.best_changes
            .iter()
            .map(|c| c.best.as_ref().unwrap().next_hops.clone())
            .collect::<Vec<_>>(),
        vec![vec![ip("10.0.0.2"), ip("10.0.0.3")]]
    );
    // Peers need no update: the best route is unchanged.
    assert!(out.peers_pending.is_empty());
}

#[test]
fn ecmp_respects_max_paths_and_off_by_default() {
    let mut rib = ecmp_rib(2);
    for (addr, asn) in [
        ("10.0.0.4", 65001),
        ("10.0.0.2", 65002),
        ("10.0.0.3", 65003),
    ] {
        rib.announce(ip(addr), &[net(P)], route(&[asn], addr))
            .unwrap();
    }
    assert_eq!(
        rib.best(&net(P)).unwrap().next_hops,
        vec![ip("10.0.0.2"), ip("10.0.0.3")]
    );
    let mut rib = ecmp_rib(1);
    for (addr, asn) in [("10.0.0.4", 65001), ("10.0.0.2", 65002)] {
        rib.announce(ip(addr), &[net(P)], route(&[asn], addr))
            .unwrap();
    }
    assert_eq!(rib.best(&net(P)).unwrap().next_hops, vec![ip("10.0.0.2")]);
}

#[test]
fn ecmp_requires_equal_igp_cost() {
    let mut cfg = config();
    cfg.max_paths = 4;
    let igp = |nh: IpAddr| Some(if nh == ip("10.0.0.3") { 5 } else { 1 });
    let mut rib = Rib::new(cfg).with_igp_cost(igp);
    for p in [peer("10.0.0.2", LOCAL_AS), peer("10.0.0.3", LOCAL_AS)] {
        rib.peer_up(p).unwrap();
    }
    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[], "10.0.0.2"))
        .unwrap();
    rib.announce(ip("10.0.0.3"), &[net(P)], route(&[], "10.0.0.3"))
        .unwrap();
    assert_eq!(rib.best(&net(P)).unwrap().next_hops, vec![ip("10.0.0.2")]);
}

// ----- import rules ------------------------------------------------------------

#[test]
fn ebgp_as_loop_is_rejected_and_withdraws_the_previous_route() {
    let mut rib = rib_with(config(), &[peer("10.0.0.2", 65001)]);
    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[65001], "10.0.0.2"))
        .unwrap();
    let out = rib
        .announce(
            ip("10.0.0.2"),
            &[net(P)],
            route(&[65001, LOCAL_AS, 65005], "10.0.0.2"),
        )
        .unwrap();
    assert_eq!(out.rejected, vec![(net(P), ImportReject::AsPathLoop)]);
    assert_eq!(
        out.best_changes,
        vec![BestChange {
            prefix: net(P),
            best: None
        }]
    );
    assert!(rib.is_empty());
}

#[test]
fn ebgp_import_strips_ibgp_only_attributes() {
    let mut rib = rib_with(config(), &[peer("10.0.0.2", 65001)]);
    let attrs = with(route(&[65001], "10.0.0.2"), |a| {
        a.local_pref = Some(999);
        a.originator_id = Some(v4("7.7.7.7"));
        a.cluster_list = vec![v4("8.8.8.8")];
    });
    rib.announce(ip("10.0.0.2"), &[net(P)], attrs).unwrap();
    let adj_in = rib.adj_rib_in(ip("10.0.0.2")).unwrap();
    let a = &adj_in[0].1.attributes;
    assert_eq!(a.local_pref, Some(100));
    assert_eq!(a.originator_id, None);
    assert!(a.cluster_list.is_empty());
}

#[test]
fn rr_drops_routes_with_own_originator_id_or_cluster_id() {
    let mut cfg = config();
    cfg.cluster_id = Some(v4("10.255.0.1"));
    let mut rib = rib_with(cfg, &[client("10.0.0.2")]);
    let out = rib
        .announce(
            ip("10.0.0.2"),
            &[net(P)],
            with(route(&[], "10.0.0.2"), |a| {
                a.originator_id = Some(ROUTER_ID)
            }),
        )
        .unwrap();
    assert_eq!(out.rejected, vec![(net(P), ImportReject::OriginatorLoop)]);
    let out = rib
        .announce(
            ip("10.0.0.2"),
            &[net(P)],
            with(route(&[], "10.0.0.2"), |a| {
                a.cluster_list = vec![v4("10.9.0.1"), v4("10.255.0.1")]
            }),
        )
        .unwrap();
    assert_eq!(out.rejected, vec![(net(P), ImportReject::ClusterLoop)]);
    assert!(rib.is_empty());
}

#[test]
fn route_without_next_hop_is_rejected() {
    let mut rib = rib_with(config(), &[peer("10.0.0.2", 65001)]);
    let mut attrs = route(&[65001], "10.0.0.2");
    attrs.next_hop = None;
    let out = rib
        .announce(ip("10.0.0.2"), &[net(P)], attrs.clone())
        .unwrap();
    assert_eq!(out.rejected, vec![(net(P), ImportReject::MissingNextHop)]);
    // A classic NEXT_HOP left inside the codec attributes is accepted and
    // normalised.
    attrs.attributes.next_hop = Some(v4("10.0.0.2"));
    let out = rib.announce(ip("10.0.0.2"), &[net(P)], attrs).unwrap();
    assert!(out.rejected.is_empty());
    let best = rib.best(&net(P)).unwrap();
    assert_eq!(best.attrs.next_hop, Some(NextHop::V4(v4("10.0.0.2"))));
    assert_eq!(best.attrs.attributes.next_hop, None);
}

#[test]
fn unknown_peer_is_an_error() {
    let mut rib = Rib::new(config());
    assert_eq!(
        rib.announce(ip("10.0.0.9"), &[net(P)], route(&[], "10.0.0.9"))
            .unwrap_err(),
        RibError::UnknownPeer(ip("10.0.0.9"))
    );
    rib.peer_up(peer("10.0.0.9", 1)).unwrap();
    assert_eq!(
        rib.peer_up(peer("10.0.0.9", 1)).unwrap_err(),
        RibError::DuplicatePeer(ip("10.0.0.9"))
    );
}

// ----- export rules ------------------------------------------------------------

#[test]
fn ibgp_learned_not_sent_to_ibgp_without_reflection() {
    let mut rib = rib_with(
        config(),
        &[
            peer("10.0.0.2", LOCAL_AS),
            peer("10.0.0.3", LOCAL_AS),
            peer("10.0.0.4", 65001),
        ],
    );
    let out = rib
        .announce(ip("10.0.0.2"), &[net(P)], route(&[], "10.0.0.2"))
        .unwrap();
    assert_eq!(out.peers_pending, vec![ip("10.0.0.4")]);
    assert!(flush(&mut rib, "10.0.0.3").is_empty());
    assert!(
        flush(&mut rib, "10.0.0.2").is_empty(),
        "never back to the source"
    );
    assert!(announced(&flush(&mut rib, "10.0.0.4"), P).is_some());
}

#[test]
fn ebgp_export_prepends_sets_next_hop_self_and_strips() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", LOCAL_AS), peer("10.0.0.4", 65001)],
    );
    let attrs = with(route(&[65010], "10.0.0.2"), |a| {
        a.local_pref = Some(300);
        a.med = Some(7);
        a.originator_id = Some(v4("10.0.0.8"));
        a.cluster_list = vec![v4("10.255.0.9")];
    });
    rib.announce(ip("10.0.0.2"), &[net(P)], attrs).unwrap();
    let batches = flush(&mut rib, "10.0.0.4");
    let sent = announced(&batches, P).expect("exported to eBGP");
    let a = &sent.attributes;
    assert_eq!(a.as_path, Some(AsPath::from_sequence([LOCAL_AS, 65010])));
    assert_eq!(sent.next_hop, Some(NextHop::V4(SELF_V4)));
    assert_eq!(a.local_pref, None);
    assert_eq!(a.med, None, "MED from another AS is not passed on");
    assert_eq!(a.originator_id, None);
    assert!(a.cluster_list.is_empty());
}

#[test]
fn local_routes_keep_med_to_ebgp_and_get_next_hop_self_and_local_pref_to_ibgp() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", LOCAL_AS), peer("10.0.0.4", 65001)],
    );
    let mut attrs = with(route(&[], "0.0.0.0"), |a| a.med = Some(42));
    attrs.next_hop = None;
    rib.originate(&[net(P), net("2001:db8:1::/122")], attrs);

    let ebgp = flush(&mut rib, "10.0.0.4");
    let to_ebgp = announced(&ebgp, P).unwrap();
    assert_eq!(to_ebgp.attributes.med, Some(42));
    assert_eq!(
        to_ebgp.attributes.as_path,
        Some(AsPath::from_sequence([LOCAL_AS]))
    );
    // IPv6 routes take the session's IPv6 address, in their own batch.
    let v6 = announced(&ebgp, "2001:db8:1::/122").unwrap();
    assert_eq!(
        v6.next_hop,
        Some(NextHop::V6 {
            global: SELF_V6,
            link_local: None
        })
    );
    assert_eq!(ebgp.len(), 2);

    let ibgp = flush(&mut rib, "10.0.0.2");
    let to_ibgp = announced(&ibgp, P).unwrap();
    assert_eq!(to_ibgp.attributes.local_pref, Some(100));
    assert_eq!(to_ibgp.next_hop, Some(NextHop::V4(SELF_V4)));
    assert_eq!(to_ibgp.attributes.as_path, Some(AsPath::default()));
}

#[test]
fn exports_carry_mandatory_attributes_and_link_local_next_hops() {
    let ll: Ipv6Addr = "fe80::1".parse().unwrap();
    let mut unnumbered = peer("10.0.0.4", 65001);
    unnumbered.local_v6 = None;
    unnumbered.local_v6_link_local = Some(ll);
    let mut dual = peer("10.0.0.5", 65002);
    dual.local_v6_link_local = Some(ll);
    let mut rib = rib_with(config(), &[unnumbered, dual, peer("10.0.0.2", LOCAL_AS)]);
    // A local route with neither ORIGIN nor AS_PATH nor next hop.
    rib.originate(&[net("2001:db8:1::/122")], PathAttrs::default());
    let r = announced(&flush(&mut rib, "10.0.0.4"), "2001:db8:1::/122").unwrap();
    assert_eq!(
        r.next_hop,
        Some(NextHop::V6 {
            global: Ipv6Addr::UNSPECIFIED,
            link_local: Some(ll)
        })
    );
    assert_eq!(r.attributes.origin, Some(Origin::Incomplete));
    let r = announced(&flush(&mut rib, "10.0.0.5"), "2001:db8:1::/122").unwrap();
    assert_eq!(
        r.next_hop,
        Some(NextHop::V6 {
            global: SELF_V6,
            link_local: Some(ll)
        })
    );
    let r = announced(&flush(&mut rib, "10.0.0.2"), "2001:db8:1::/122").unwrap();
    assert_eq!(r.attributes.as_path, Some(AsPath::default()));
    assert_eq!(r.attributes.origin, Some(Origin::Incomplete));
}

#[test]
fn ebgp_learned_to_ibgp_keeps_next_hop_unless_next_hop_self() {
    let mut nhs = peer("10.0.0.3", LOCAL_AS);
    nhs.next_hop_self = true;
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.4", 65001), peer("10.0.0.2", LOCAL_AS), nhs],
    );
    rib.announce(ip("10.0.0.4"), &[net(P)], route(&[65001], "10.0.0.4"))
        .unwrap();
    let plain = announced(&flush(&mut rib, "10.0.0.2"), P).unwrap();
    assert_eq!(plain.next_hop, Some(NextHop::V4(v4("10.0.0.4"))));
    assert_eq!(plain.attributes.local_pref, Some(100));
    let selfed = announced(&flush(&mut rib, "10.0.0.3"), P).unwrap();
    assert_eq!(selfed.next_hop, Some(NextHop::V4(SELF_V4)));
}

fn rr_rib() -> Rib {
    let mut cfg = config();
    cfg.cluster_id = Some(v4("10.255.0.1"));
    rib_with(
        cfg,
        &[
            client("10.0.0.2"),
            client("10.0.0.3"),
            peer("10.0.0.5", LOCAL_AS), // non-client
            peer("10.0.0.6", LOCAL_AS), // non-client
            peer("10.0.0.9", 65001),
        ],
    )
}

#[test]
fn rr_reflects_client_routes_to_everyone() {
    let mut rib = rr_rib();
    let out = rib
        .announce(ip("10.0.0.2"), &[net(P)], route(&[], "10.0.0.2"))
        .unwrap();
    assert_eq!(
        out.peers_pending,
        vec![
            ip("10.0.0.3"),
            ip("10.0.0.5"),
            ip("10.0.0.6"),
            ip("10.0.0.9")
        ]
    );
    for to in ["10.0.0.3", "10.0.0.5"] {
        let r = announced(&flush(&mut rib, to), P).unwrap();
        assert_eq!(r.attributes.originator_id, Some(v4("10.0.0.2")));
        assert_eq!(r.attributes.cluster_list, vec![v4("10.255.0.1")]);
        assert_eq!(r.next_hop, Some(NextHop::V4(v4("10.0.0.2"))), "unchanged");
        assert_eq!(r.attributes.local_pref, Some(100));
    }
    let ebgp = announced(&flush(&mut rib, "10.0.0.9"), P).unwrap();
    assert_eq!(ebgp.attributes.originator_id, None);
    assert!(ebgp.attributes.cluster_list.is_empty());
}

#[test]
fn rr_reflects_non_client_routes_to_clients_only() {
    let mut rib = rr_rib();
    let out = rib
        .announce(ip("10.0.0.5"), &[net(P)], route(&[], "10.0.0.5"))
        .unwrap();
    assert_eq!(
        out.peers_pending,
        vec![ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.9")]
    );
    assert!(flush(&mut rib, "10.0.0.6").is_empty());
}

#[test]
fn rr_keeps_existing_originator_and_prepends_cluster_id() {
    let mut rib = rr_rib();
    let attrs = with(route(&[], "10.0.0.7"), |a| {
        a.originator_id = Some(v4("10.0.0.7"));
        a.cluster_list = vec![v4("10.254.0.1")];
    });
    rib.announce(ip("10.0.0.2"), &[net(P)], attrs).unwrap();
    let r = announced(&flush(&mut rib, "10.0.0.3"), P).unwrap();
    assert_eq!(r.attributes.originator_id, Some(v4("10.0.0.7")));
    assert_eq!(
        r.attributes.cluster_list,
        vec![v4("10.255.0.1"), v4("10.254.0.1")]
    );
}

// ----- Adj-RIB-Out and peers -----------------------------------------------------

#[test]
fn updates_pack_prefixes_by_attribute_set() {
    let mut rib = rib_with(
        config(),
        &[
            peer("10.0.0.2", 65001),
            peer("10.0.0.3", 65002),
            peer("10.0.0.4", 65003),
        ],
    );
    let many: Vec<IpNet> = (0..200u32)
        .map(|i| IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0a64_0000 + (i << 6))), 26).unwrap())
        .collect();
    rib.announce(ip("10.0.0.2"), &many[..150], route(&[65001], "10.0.0.2"))
        .unwrap();
    rib.announce(ip("10.0.0.3"), &many[150..], route(&[65002], "10.0.0.3"))
        .unwrap();
    let batches = flush(&mut rib, "10.0.0.4");
    let sizes: Vec<usize> = batches
        .iter()
        .map(|b| match b {
            UpdateBatch::Announce { prefixes, .. } => prefixes.len(),
            UpdateBatch::Withdraw(w) => w.len(),
        })
        .collect();
    assert_eq!(sizes, vec![150, 50]);
    // Exported sets are interned too: the two batches share no pointer and
    // each batch's prefixes share one.
    assert_eq!(rib.adj_rib_out(ip("10.0.0.4")).unwrap().sent_len(), 200);

    // Withdrawals come first and together.
    rib.withdraw(ip("10.0.0.2"), &many[..10]).unwrap();
    rib.announce(
        ip("10.0.0.3"),
        &many[150..152],
        route(&[65002, 1], "10.0.0.3"),
    )
    .unwrap();
    let batches = flush(&mut rib, "10.0.0.4");
    assert!(matches!(&batches[0], UpdateBatch::Withdraw(w) if w.len() == 10));
    assert!(matches!(&batches[1], UpdateBatch::Announce { prefixes, .. } if prefixes.len() == 2));
}

#[test]
fn changes_before_a_flush_collapse() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", 65001), peer("10.0.0.4", 65003)],
    );
    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[65001], "10.0.0.2"))
        .unwrap();
    rib.withdraw(ip("10.0.0.2"), &[net(P)]).unwrap();
    assert!(
        flush(&mut rib, "10.0.0.4").is_empty(),
        "never had it, nothing to say"
    );

    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[65001], "10.0.0.2"))
        .unwrap();
    assert_eq!(flush(&mut rib, "10.0.0.4").len(), 1);
    // Changed and changed back: the peer already has it.
    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[65001, 7], "10.0.0.2"))
        .unwrap();
    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[65001], "10.0.0.2"))
        .unwrap();
    assert!(flush(&mut rib, "10.0.0.4").is_empty());
    rib.withdraw(ip("10.0.0.2"), &[net(P)]).unwrap();
    assert!(withdrawn(&flush(&mut rib, "10.0.0.4"), P));
}

#[test]
fn route_refresh_resends_everything_with_pending_changes_applied() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", 65001), peer("10.0.0.4", 65003)],
    );
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.1.0.0/26"), net("10.1.0.64/26")],
        route(&[65001], "10.0.0.2"),
    )
    .unwrap();
    assert_eq!(flush(&mut rib, "10.0.0.4").len(), 1);
    assert!(flush(&mut rib, "10.0.0.4").is_empty());
    rib.withdraw(ip("10.0.0.2"), &[net("10.1.0.64/26")])
        .unwrap();
    let out = rib.refresh(ip("10.0.0.4")).unwrap();
    assert_eq!(out.peers_pending, vec![ip("10.0.0.4")]);
    let batches = flush(&mut rib, "10.0.0.4");
    assert!(withdrawn(&batches, "10.1.0.64/26"));
    assert!(announced(&batches, "10.1.0.0/26").is_some());
    assert_eq!(batches.len(), 2);
    assert!(flush(&mut rib, "10.0.0.4").is_empty());
}

#[test]
fn peer_up_receives_the_whole_table() {
    let mut rib = rib_with(config(), &[peer("10.0.0.2", 65001)]);
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.1.0.0/26"), net("10.1.0.64/26")],
        route(&[65001], "10.0.0.2"),
    )
    .unwrap();
    rib.originate(&[net("10.9.0.0/26")], route(&[], "192.0.2.1"));
    let out = rib.peer_up(peer("10.0.0.4", 65003)).unwrap();
    assert!(out.peers_pending.contains(&ip("10.0.0.4")));
    let batches = flush(&mut rib, "10.0.0.4");
    assert_eq!(batches.len(), 2);
    assert!(announced(&batches, "10.1.0.64/26").is_some());
    assert!(announced(&batches, "10.9.0.0/26").is_some());
}

#[test]
fn peer_down_withdraws_and_falls_back() {
    let mut rib = rib_with(
        config(),
        &[
            peer("10.0.0.2", 65001),
            peer("10.0.0.3", 65002),
            peer("10.0.0.4", 65003),
        ],
    );
    rib.announce(
        ip("10.0.0.2"),
        &[net(P), net("10.7.0.0/26")],
        route(&[65001], "10.0.0.2"),
    )
    .unwrap();
    rib.announce(ip("10.0.0.3"), &[net(P)], route(&[65002, 9], "10.0.0.3"))
        .unwrap();
    flush(&mut rib, "10.0.0.4");
    let out = rib.peer_down(ip("10.0.0.2")).unwrap();
    let mut changes = out.best_changes.clone();
    changes.sort_by_key(|c| c.prefix);
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].prefix, net(P));
    assert_eq!(changes[0].best.as_ref().map(|b| b.source), from("10.0.0.3"));
    assert_eq!(changes[1].best, None);
    let batches = flush(&mut rib, "10.0.0.4");
    assert!(withdrawn(&batches, "10.7.0.0/26"));
    let replacement = announced(&batches, P).unwrap();
    assert_eq!(
        replacement.attributes.as_path,
        Some(AsPath::from_sequence([LOCAL_AS, 65002, 9]))
    );
    assert!(rib.take_updates(ip("10.0.0.2")).is_err());
    // The fallback was learned from 10.0.0.3, which gets nothing back.
    assert!(announced(&flush(&mut rib, "10.0.0.3"), P).is_none());
}

#[test]
fn graceful_restart_stale_marks_counts_and_purge_per_family() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", 65001), peer("10.0.0.4", 65003)],
    );
    let (a, b, v6, looped) = (
        net("10.1.0.0/26"),
        net("10.1.0.64/26"),
        net("fd00:1::/64"),
        net("10.2.0.0/26"),
    );
    rib.announce(ip("10.0.0.2"), &[a, b], route(&[65001], "10.0.0.2"))
        .unwrap();
    let mut over_v6 = route(&[65001], "10.0.0.2");
    over_v6.next_hop = Some(NextHop::V6 {
        global: "fd00::2".parse().unwrap(),
        link_local: None,
    });
    rib.announce(ip("10.0.0.2"), &[v6], over_v6).unwrap();
    // Rejected (AS loop): received, not accepted.
    let out = rib
        .announce(
            ip("10.0.0.2"),
            &[looped],
            route(&[65001, LOCAL_AS], "10.0.0.2"),
        )
        .unwrap();
    assert_eq!(out.rejected, vec![(looped, ImportReject::AsPathLoop)]);
    let counts = rib.peer_counts(ip("10.0.0.2")).unwrap();
    assert_eq!((counts.received, counts.accepted, counts.stale), (4, 3, 0));
    flush(&mut rib, "10.0.0.4");
    let to_listener = rib.peer_counts(ip("10.0.0.4")).unwrap();
    assert_eq!(
        (to_listener.advertised_v4, to_listener.advertised_v6),
        (2, 1)
    );

    assert_eq!(rib.mark_stale(ip("10.0.0.2")).unwrap(), 4);
    assert!(rib.is_stale(&a, ip("10.0.0.2")));
    assert_eq!(rib.peer_counts(ip("10.0.0.2")).unwrap().stale, 4);
    // Announced again unchanged: fresh, and nothing changes downstream.
    let out = rib
        .announce(ip("10.0.0.2"), &[a], route(&[65001], "10.0.0.2"))
        .unwrap();
    assert!(out.best_changes.is_empty());
    assert!(!rib.is_stale(&a, ip("10.0.0.2")));
    assert_eq!(rib.peer_counts(ip("10.0.0.2")).unwrap().stale, 3);

    // IPv4 End-of-RIB: only the IPv4 stale routes go (the rejected one too).
    let (purged, out) = rib
        .take_stale(ip("10.0.0.2"), Some(Family::IPV4_UNICAST))
        .unwrap();
    assert_eq!(purged, vec![b, looped]);
    assert_eq!(out.best_changes.len(), 1);
    assert_eq!(rib.best(&b), None);
    assert!(rib.best(&a).is_some());
    let counts = rib.peer_counts(ip("10.0.0.2")).unwrap();
    assert_eq!((counts.received, counts.accepted, counts.stale), (2, 2, 1));
    assert!(withdrawn(&flush(&mut rib, "10.0.0.4"), "10.1.0.64/26"));
    assert_eq!(rib.peer_counts(ip("10.0.0.4")).unwrap().advertised_v4, 1);

    let (purged, _) = rib.take_stale(ip("10.0.0.2"), None).unwrap();
    assert_eq!(purged, vec![v6]);
    let counts = rib.peer_counts(ip("10.0.0.2")).unwrap();
    assert_eq!((counts.received, counts.accepted, counts.stale), (1, 1, 0));
}

#[test]
fn unused_attribute_sets_are_collected() {
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", 65001), peer("10.0.0.4", 65003)],
    );
    let prefixes: Vec<IpNet> = (0..50u32)
        .map(|i| IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap())
        .collect();
    for (i, p) in prefixes.iter().enumerate() {
        let i = u32::try_from(i).unwrap();
        rib.announce(ip("10.0.0.2"), &[*p], route(&[65001, i], "10.0.0.2"))
            .unwrap();
    }
    // 50 received sets and 50 exported ones.
    assert_eq!(rib.attribute_sets(), 100);
    rib.withdraw(ip("10.0.0.2"), &prefixes).unwrap();
    flush(&mut rib, "10.0.0.4");
    rib.collect_garbage();
    assert_eq!(rib.attribute_sets(), 0);
}

#[test]
fn decoded_updates_apply_with_mp_reach_and_treat_as_withdraw() {
    use brindle_bgp::packet::{Family, MpReach, MpUnreach, Nlri, Update, UpdateOutcome};
    let mut rib = rib_with(config(), &[peer("10.0.0.2", 65001)]);
    let v6 = net("2001:db8:7::/48");
    let update = Update {
        withdrawn: vec![],
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence([65001])),
            next_hop: Some(v4("10.0.0.2")),
            ..Default::default()
        },
        nlri: vec![Nlri::new(net(P))],
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: NextHop::V6 {
                global: "2001:db8::2".parse().unwrap(),
                link_local: None,
            },
            nlri: vec![Nlri::new(v6)],
        }),
        mp_unreach: None,
    };
    let out = rib
        .apply_update(ip("10.0.0.2"), update.clone(), &UpdateOutcome::Ok)
        .unwrap();
    assert_eq!(out.best_changes.len(), 2);
    assert_eq!(rib.best(&net(P)).unwrap().next_hops, vec![ip("10.0.0.2")]);
    assert_eq!(rib.best(&v6).unwrap().next_hops, vec![ip("2001:db8::2")]);
    // The stored attributes are normalised: the next hop lives outside.
    assert_eq!(rib.best(&net(P)).unwrap().attrs.attributes.next_hop, None);

    // The same UPDATE under treat-as-withdraw removes both.
    let out = rib
        .apply_update(
            ip("10.0.0.2"),
            update,
            &UpdateOutcome::TreatAsWithdraw(vec![]),
        )
        .unwrap();
    assert_eq!(out.best_changes.len(), 2);
    assert!(rib.is_empty());

    // MP_UNREACH withdraws; End-of-RIB is a no-op.
    rib.announce(ip("10.0.0.2"), &[v6], route(&[65001], "10.0.0.2"))
        .unwrap();
    let unreach = Update {
        withdrawn: vec![],
        attributes: PathAttributes::default(),
        nlri: vec![],
        mp_reach: None,
        mp_unreach: Some(MpUnreach {
            family: Family::IPV6_UNICAST,
            withdrawn: vec![Nlri::new(v6)],
        }),
    };
    rib.apply_update(ip("10.0.0.2"), unreach, &UpdateOutcome::Ok)
        .unwrap();
    assert!(rib.is_empty());
    let eor = Update::end_of_rib(Family::IPV4_UNICAST);
    let out = rib
        .apply_update(ip("10.0.0.2"), eor, &UpdateOutcome::Ok)
        .unwrap();
    assert_eq!(out, Default::default());
}

#[test]
fn batches_encode_into_updates_that_decode_back() {
    use brindle_bgp::packet::{decode_message, EncodeContext, Message};
    let mut rib = rib_with(
        config(),
        &[peer("10.0.0.2", 65001), peer("10.0.0.4", 65003)],
    );
    let many: Vec<IpNet> = (0..1000u32)
        .map(|i| IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0a64_0000 + (i << 6))), 26).unwrap())
        .collect();
    rib.announce(ip("10.0.0.2"), &many, route(&[65001], "10.0.0.2"))
        .unwrap();
    let batches = flush(&mut rib, "10.0.0.4");
    assert_eq!(batches.len(), 1);
    let ctx = EncodeContext::default();
    let messages = batches[0].encode(&ctx).unwrap();
    // 1000 /26 prefixes of 4 octets each need two 4096-octet UPDATEs.
    assert_eq!(messages.len(), 2);
    let mut decoded = Vec::new();
    for m in &messages {
        let decoded_message = decode_message(m, &ctx.mirror()).unwrap().unwrap();
        assert_eq!(decoded_message.len, m.len());
        let Message::Update(update) = decoded_message.message else {
            panic!("not an UPDATE")
        };
        assert_eq!(update.attributes.next_hop, Some(SELF_V4));
        decoded.extend(update.nlri.into_iter().map(|n| n.prefix));
    }
    assert_eq!(decoded, many);
}

#[test]
fn codec_attributes_adapt_with_either_next_hop() {
    let classic = PathAttributes {
        origin: Some(Origin::Igp),
        next_hop: Some(v4("10.0.0.2")),
        ..Default::default()
    };
    let a = PathAttrs::from_update(classic.clone(), None);
    assert_eq!(a.next_hop, Some(NextHop::V4(v4("10.0.0.2"))));
    assert_eq!(a.attributes.next_hop, None);
    let ll: Ipv6Addr = "fe80::1".parse().unwrap();
    let b = PathAttrs::from_update(
        classic,
        Some(NextHop::V6 {
            global: Ipv6Addr::UNSPECIFIED,
            link_local: Some(ll),
        }),
    );
    assert_eq!(b.next_hop_addr(), Some(IpAddr::V6(ll)));
}

#[test]
fn rib_and_fsm_can_move_into_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Rib>();
    assert_send_sync::<brindle_bgp::fsm::Fsm<brindle_bgp::packet::Negotiated, UpdateBatch>>();
}

/// An export filter (the node's: only pool and service prefixes go out)
/// holds routes back from a peer, and a changed filter applies in place:
/// the next flush withdraws what it now holds back and announces what it
/// lets through, and nothing else.
#[test]
fn export_filter_holds_routes_back_and_changes_in_place() {
    use brindle_bgp::rib::ExportPrefixes;
    let mut filtered = peer("10.0.0.3", 65003);
    filtered.export_only = Some(ExportPrefixes::new(vec![net("10.1.0.0/16")]));
    let mut rib = rib_with(config(), &[peer("10.0.0.2", 65002), filtered]);
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.1.0.0/24")],
        route(&[65002], "10.0.0.2"),
    )
    .unwrap();
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.2.0.0/24")],
        route(&[65002], "10.0.0.2"),
    )
    .unwrap();
    let out = flush(&mut rib, "10.0.0.3");
    assert!(announced(&out, "10.1.0.0/24").is_some());
    assert!(announced(&out, "10.2.0.0/24").is_none(), "{out:?}");

    // Widened: the held-back route goes out, the other is not resent.
    rib.set_export_filter(ip("10.0.0.3"), None).unwrap();
    let out = flush(&mut rib, "10.0.0.3");
    assert!(announced(&out, "10.2.0.0/24").is_some(), "{out:?}");
    assert!(announced(&out, "10.1.0.0/24").is_none(), "{out:?}");

    // Narrowed to the other prefix: one withdrawal.
    rib.set_export_filter(
        ip("10.0.0.3"),
        Some(ExportPrefixes::new(vec![net("10.2.0.0/16")])),
    )
    .unwrap();
    let out = flush(&mut rib, "10.0.0.3");
    assert!(withdrawn(&out, "10.1.0.0/24"), "{out:?}");
    assert!(!withdrawn(&out, "10.2.0.0/24") && announced(&out, "10.2.0.0/24").is_none());
    assert_eq!(rib.adj_rib_out(ip("10.0.0.3")).unwrap().sent_len(), 1);
}

/// `allow local as N` (Calico's numAllowedLocalASNumbers): our AS may
/// appear up to N times in a path from an eBGP peer.
#[test]
fn own_as_in_the_path_up_to_the_allowed_count() {
    let mut lenient = peer("10.0.0.3", 65003);
    lenient.allow_local_as = 1;
    let mut rib = rib_with(config(), &[peer("10.0.0.2", 65002), lenient]);
    let once = route(&[65002, LOCAL_AS, 65010], "10.0.0.2");
    let out = rib
        .announce(ip("10.0.0.2"), &[net("10.1.0.0/24")], once.clone())
        .unwrap();
    assert_eq!(out.rejected.len(), 1, "RFC 4271: a loop");
    let once_from_lenient = route(&[65003, LOCAL_AS, 65010], "10.0.0.3");
    let out = rib
        .announce(ip("10.0.0.3"), &[net("10.1.0.0/24")], once_from_lenient)
        .unwrap();
    assert!(out.rejected.is_empty());
    assert_eq!(
        best_source(&rib, "10.1.0.0/24"),
        Some(RouteSource::Peer(ip("10.0.0.3")))
    );
    let twice = route(&[65003, LOCAL_AS, LOCAL_AS], "10.0.0.3");
    let out = rib
        .announce(ip("10.0.0.3"), &[net("10.2.0.0/24")], twice)
        .unwrap();
    assert_eq!(out.rejected.len(), 1, "more than allowed");
}

/// nextHopMode: `Keep` sends an eBGP peer the route's own next hop;
/// `Self` puts ours even on a reflected route.
#[test]
fn next_hop_keep_and_self_always() {
    let mut cfg = config();
    cfg.cluster_id = Some(v4("10.0.0.100"));
    let mut keep = peer("10.0.0.4", 65004);
    keep.next_hop_keep = true;
    let mut self_always = client("10.0.0.5");
    self_always.next_hop_self_always = true;
    let mut rib = rib_with(
        cfg,
        &[
            client("10.0.0.2"),
            peer("10.0.0.3", 65003),
            keep,
            self_always,
        ],
    );
    rib.announce(ip("10.0.0.2"), &[net(P)], route(&[], "10.0.0.9"))
        .unwrap();
    let to_ebgp = flush(&mut rib, "10.0.0.3");
    assert_eq!(
        announced(&to_ebgp, P).unwrap().next_hop,
        Some(NextHop::V4(SELF_V4)),
        "eBGP default: ours"
    );
    let kept = flush(&mut rib, "10.0.0.4");
    assert_eq!(
        announced(&kept, P).unwrap().next_hop,
        Some(NextHop::V4(v4("10.0.0.9"))),
        "Keep: the route's own"
    );
    let reflected = flush(&mut rib, "10.0.0.5");
    assert_eq!(
        announced(&reflected, P).unwrap().next_hop,
        Some(NextHop::V4(SELF_V4)),
        "Self: ours even when reflecting"
    );
}

/// Calico's BGPFilter `operations` (`addCommunity`, `prependASPath`): on
/// import they change the stored route (only for the prefixes their rule
/// accepts), on export the route sent, before our own AS is prepended
/// toward an eBGP peer; and a changed import filter with operations asks
/// for the routes again (they are stored as the old rules made them).
#[test]
fn filter_operations_change_imported_and_exported_routes() {
    use brindle_bgp::packet::{Community, LargeCommunity};
    use brindle_bgp::rib::{
        CommunityMatch, FilterRule, FilterVerdict, PrefixMatch, PrefixOp, RouteFilter,
        RouteOperation,
    };
    let tag = |ops: Vec<RouteOperation>, cidr: &str| RouteFilter {
        v4: vec![FilterRule {
            operations: ops,
            ..FilterRule::on_prefix(
                FilterVerdict::Accept,
                Some(PrefixMatch::new(net(cidr), PrefixOp::In)),
            )
        }],
        v6: Vec::new(),
    };
    let mut tor = peer("10.0.0.2", 65002);
    tor.import_filter = Some(Arc::new(tag(
        vec![
            RouteOperation::AddCommunity(CommunityMatch::Standard(Community::new(65000, 7))),
            RouteOperation::PrependAsPath(vec![65100, 65101]),
        ],
        "10.1.0.0/16",
    )));
    let mut other = peer("10.0.0.3", 65003);
    other.export_filter = Some(Arc::new(tag(
        vec![RouteOperation::AddCommunity(CommunityMatch::Large(
            LargeCommunity {
                global_admin: 65000,
                local_data1: 1,
                local_data2: 2,
            },
        ))],
        "10.2.0.0/16",
    )));
    let mut rib = rib_with(config(), &[tor, other]);
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.1.0.0/24"), net("10.2.0.0/24")],
        route(&[65002], "10.0.0.2"),
    )
    .unwrap();
    let stored = rib.adj_rib_in(ip("10.0.0.2")).unwrap();
    let of = |p: &str| stored.iter().find(|(n, _)| *n == net(p)).unwrap().1.clone();
    let changed = of("10.1.0.0/24");
    assert_eq!(changed.attributes.communities, [Community::new(65000, 7)]);
    assert_eq!(
        changed.attributes.as_path,
        Some(AsPath::from_sequence([65100, 65101, 65002])),
        "the first AS of prependASPath first"
    );
    let untouched = of("10.2.0.0/24");
    assert!(untouched.attributes.communities.is_empty());
    assert_eq!(
        untouched.attributes.as_path,
        Some(AsPath::from_sequence([65002]))
    );

    // Export: the large community on what the rule accepts, then our AS.
    let out = flush(&mut rib, "10.0.0.3");
    let sent = announced(&out, "10.2.0.0/24").unwrap();
    assert_eq!(sent.attributes.large_communities.len(), 1);
    assert_eq!(
        sent.attributes.as_path,
        Some(AsPath::from_sequence([LOCAL_AS, 65002]))
    );
    let sent = announced(&out, "10.1.0.0/24").unwrap();
    assert!(sent.attributes.large_communities.is_empty());
    assert_eq!(sent.attributes.communities, [Community::new(65000, 7)]);
    assert_eq!(
        sent.attributes.as_path,
        Some(AsPath::from_sequence([LOCAL_AS, 65100, 65101, 65002]))
    );

    // A new import filter without operations: the routes are asked for again.
    let (_, refresh) = rib
        .set_import_filter(
            ip("10.0.0.2"),
            Some(Arc::new(tag(Vec::new(), "10.1.0.0/16"))),
        )
        .unwrap();
    assert!(refresh, "the stored routes carry the old operations");
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.1.0.0/24")],
        route(&[65002], "10.0.0.2"),
    )
    .unwrap();
    let stored = rib.adj_rib_in(ip("10.0.0.2")).unwrap();
    let again = stored
        .iter()
        .find(|(n, _)| *n == net("10.1.0.0/24"))
        .unwrap();
    assert!(again.1.attributes.communities.is_empty());
}

/// Long-lived graceful restart (RFC 9494) in the RIB: stale routes of a
/// peer that negotiated it get `LLGR_STALE`, lose to any other path, go on
/// to peers with LLGR (with the community) and are withdrawn from peers
/// without; routes marked `NO_LLGR` are dropped; the paths stay stale.
#[test]
fn long_lived_stale_routes_are_least_preferred_and_kept_from_peers_without_llgr() {
    use brindle_bgp::packet::Community;
    let mut a = peer("10.0.0.2", 65002);
    a.long_lived = true;
    let b = peer("10.0.0.3", 65003);
    let mut with_llgr = peer("10.0.0.4", 65004);
    with_llgr.long_lived = true;
    let without = peer("10.0.0.5", 65005);
    let mut rib = rib_with(config(), &[a, b, with_llgr, without]);
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.1.0.0/24"), net("10.2.0.0/24")],
        route(&[65002], "10.0.0.2"),
    )
    .unwrap();
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.3.0.0/24")],
        with(route(&[65002], "10.0.0.2"), |a| {
            a.communities.push(Community::NO_LLGR)
        }),
    )
    .unwrap();
    // A worse path for 10.2.0.0/24 from b.
    rib.announce(
        ip("10.0.0.3"),
        &[net("10.2.0.0/24")],
        route(&[65003, 65010, 65011], "10.0.0.3"),
    )
    .unwrap();
    assert_eq!(best_source(&rib, "10.2.0.0/24"), from("10.0.0.2"));
    flush(&mut rib, "10.0.0.4");
    flush(&mut rib, "10.0.0.5");

    rib.mark_stale(ip("10.0.0.2")).unwrap();
    let (kept, _) = rib
        .enter_long_lived_stale(ip("10.0.0.2"), &[Family::IPV4_UNICAST])
        .unwrap();
    assert_eq!(kept, 2, "10.3.0.0/24 carries NO_LLGR");
    assert!(best_source(&rib, "10.3.0.0/24").is_none());
    assert_eq!(
        best_source(&rib, "10.2.0.0/24"),
        from("10.0.0.3"),
        "an LLGR_STALE path loses even to a longer AS path"
    );
    assert_eq!(best_source(&rib, "10.1.0.0/24"), from("10.0.0.2"));
    assert!(rib.is_stale(&net("10.1.0.0/24"), ip("10.0.0.2")));

    let to_llgr = flush(&mut rib, "10.0.0.4");
    let sent = announced(&to_llgr, "10.1.0.0/24").expect("re-announced with the community");
    assert!(sent.attributes.communities.contains(&Community::LLGR_STALE));
    assert!(withdrawn(&to_llgr, "10.3.0.0/24"));
    let to_plain = flush(&mut rib, "10.0.0.5");
    assert!(withdrawn(&to_plain, "10.1.0.0/24"), "{to_plain:?}");
    assert!(
        announced(&to_plain, "10.2.0.0/24").is_some(),
        "b's path now"
    );

    // The peer is back and announces the route again: fresh, no community.
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.1.0.0/24")],
        route(&[65002], "10.0.0.2"),
    )
    .unwrap();
    assert!(!rib.is_stale(&net("10.1.0.0/24"), ip("10.0.0.2")));
    assert!(announced(&flush(&mut rib, "10.0.0.5"), "10.1.0.0/24").is_some());
}

/// BIRD's `gateway direct` (Calico's `birdGatewayMode:
/// DirectIfDirectlyConnected`): a next hop outside the connected networks
/// is replaced by the peer's address; one inside them is kept; a peer
/// without it keeps every next hop as received.
#[test]
fn gateway_direct_installs_off_link_next_hops_through_the_peer() {
    let mut direct = peer("10.0.0.2", 65002);
    direct.direct_gateway = Some(Arc::new(vec![net("10.0.0.0/24")]));
    let mut rib = rib_with(config(), &[direct, peer("10.0.0.3", 65003)]);
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.1.0.0/24")],
        route(&[65002], "192.0.2.9"),
    )
    .unwrap();
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.2.0.0/24")],
        route(&[65002], "10.0.0.7"),
    )
    .unwrap();
    rib.announce(
        ip("10.0.0.3"),
        &[net("10.3.0.0/24")],
        route(&[65003], "192.0.2.10"),
    )
    .unwrap();
    let hops = |p: &str| rib.best(&net(p)).unwrap().next_hops;
    assert_eq!(hops("10.1.0.0/24"), [ip("10.0.0.2")]);
    assert_eq!(
        hops("10.2.0.0/24"),
        [ip("10.0.0.7")],
        "on a connected network"
    );
    assert_eq!(hops("10.3.0.0/24"), [ip("192.0.2.10")], "no gateway direct");
}

/// BGPFilter `interface`: a route's interface is the one of the connected
/// network its next hop is on (the longest); none off every network or
/// for our own routes. Import and export rules both see it.
#[test]
fn interface_rules_see_the_next_hops_connected_interface() {
    use brindle_bgp::rib::{FilterRule, FilterVerdict, RouteFilter};
    let reject_on = |pattern: &str| {
        Some(Arc::new(RouteFilter {
            v4: vec![FilterRule {
                interface: Some(pattern.into()),
                ..FilterRule::on_prefix(FilterVerdict::Reject, None)
            }],
            v6: Vec::new(),
        }))
    };
    let mut a = peer("10.0.0.2", 65002);
    a.import_filter = reject_on("eth1");
    let mut to = peer("10.0.0.3", 65003);
    to.export_filter = reject_on("eth0");
    let mut rib = rib_with(config(), &[a, to]);
    rib.set_connected(vec![
        (net("10.0.0.0/16"), "eth0".into()),
        (net("10.0.1.0/24"), "eth1".into()),
    ]);
    // Next hop on eth1 (the /24 is longer than eth0's /16): rejected.
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.1.0.0/24")],
        route(&[65002], "10.0.1.7"),
    )
    .unwrap();
    // On eth0: imported, but the export rule keeps it from 10.0.0.3.
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.2.0.0/24")],
        route(&[65002], "10.0.0.9"),
    )
    .unwrap();
    // Off every network: no interface, no rule matches.
    rib.announce(
        ip("10.0.0.2"),
        &[net("10.3.0.0/24")],
        route(&[65002], "192.0.2.1"),
    )
    .unwrap();
    assert!(best_source(&rib, "10.1.0.0/24").is_none());
    assert_eq!(best_source(&rib, "10.2.0.0/24"), from("10.0.0.2"));
    let out = flush(&mut rib, "10.0.0.3");
    assert!(announced(&out, "10.2.0.0/24").is_none(), "{out:?}");
    assert!(announced(&out, "10.3.0.0/24").is_some(), "{out:?}");
}
