//! OPEN negotiation: hold time, peer AS, BGP identifier, families, ADD-PATH,
//! optional capabilities, and the NOTIFICATION for each refusal.

use std::net::Ipv4Addr;

use brindle_bgp::packet::{
    negotiate, AddPathFamily, AddPathMode, Capability, Family, GracefulRestart, Negotiated,
    NegotiationError, Open,
};

fn open(asn: u32, hold_time: u16, id: [u8; 4], capabilities: Vec<Capability>) -> Open {
    Open {
        version: 4,
        asn,
        hold_time,
        bgp_id: Ipv4Addr::from(id),
        capabilities,
    }
}

fn local(capabilities: Vec<Capability>) -> Open {
    open(65001, 90, [10, 0, 0, 1], capabilities)
}

fn ok(local: &Open, peer: &Open, expected: u32) -> Negotiated {
    negotiate(local, peer, expected).expect("negotiates")
}

fn refused(local: &Open, peer: &Open, expected: u32) -> (u8, u8) {
    let err = negotiate(local, peer, expected).expect_err("refused");
    let n = err.to_notification();
    (n.code, n.subcode)
}

#[test]
fn hold_time_is_the_minimum_and_keepalive_a_third() {
    let l = local(vec![]);
    let n = ok(&l, &open(65002, 180, [10, 0, 0, 2], vec![]), 65002);
    assert_eq!((n.hold_time, n.keepalive_interval), (90, 30));
    let n = ok(&l, &open(65002, 9, [10, 0, 0, 2], vec![]), 65002);
    assert_eq!((n.hold_time, n.keepalive_interval), (9, 3));
    let n = ok(&l, &open(65002, 3, [10, 0, 0, 2], vec![]), 65002);
    assert_eq!((n.hold_time, n.keepalive_interval), (3, 1));
    // 0 disables keepalives.
    let n = ok(&l, &open(65002, 0, [10, 0, 0, 2], vec![]), 65002);
    assert_eq!((n.hold_time, n.keepalive_interval), (0, 0));
}

#[test]
fn hold_time_of_one_or_two_is_refused() {
    let l = local(vec![]);
    for hold in [1, 2] {
        let peer = open(65002, hold, [10, 0, 0, 2], vec![]);
        assert_eq!(refused(&l, &peer, 65002), (2, 6));
        assert_eq!(
            negotiate(&l, &peer, 65002),
            Err(NegotiationError::UnacceptableHoldTime(hold))
        );
    }
}

#[test]
fn peer_as_must_match_the_configuration() {
    let l = local(vec![]);
    assert_eq!(
        refused(&l, &open(65003, 90, [10, 0, 0, 2], vec![]), 65002),
        (2, 2)
    );
    // A 4-octet AS configured but the peer has no 4-octet capability: it
    // shows up as AS_TRANS, which does not match.
    assert_eq!(
        refused(&l, &open(23456, 90, [10, 0, 0, 2], vec![]), 4_200_000_001),
        (2, 2)
    );
    let peer = open(
        4_200_000_001,
        90,
        [10, 0, 0, 2],
        vec![Capability::FourOctetAs(4_200_000_001)],
    );
    let n = ok(
        &local(vec![Capability::FourOctetAs(65001)]),
        &peer,
        4_200_000_001,
    );
    assert!(n.four_octet_as);
    assert!(!n.ibgp);
}

#[test]
fn bgp_identifier_checks() {
    let l = local(vec![]);
    // Zero is never valid.
    assert_eq!(
        refused(&l, &open(65002, 90, [0, 0, 0, 0], vec![]), 65002),
        (2, 3)
    );
    // Equal identifiers: refused on iBGP...
    assert_eq!(
        refused(&l, &open(65001, 90, [10, 0, 0, 1], vec![]), 65001),
        (2, 3)
    );
    // ...allowed on eBGP (RFC 6286).
    let n = ok(&l, &open(65002, 90, [10, 0, 0, 1], vec![]), 65002);
    assert!(!n.ibgp);
    let n = ok(&l, &open(65001, 90, [10, 0, 0, 9], vec![]), 65001);
    assert!(n.ibgp);
}

#[test]
fn families_are_the_intersection_and_ipv4_is_implied_only_without_mp() {
    let v4 = Capability::Multiprotocol(Family::IPV4_UNICAST);
    let v6 = Capability::Multiprotocol(Family::IPV6_UNICAST);
    let l = local(vec![v4.clone(), v6.clone()]);

    // Peer sent no multiprotocol capability at all: IPv4 unicast only.
    let n = ok(&l, &open(65002, 90, [10, 0, 0, 2], vec![]), 65002);
    assert_eq!(n.families, vec![Family::IPV4_UNICAST]);
    assert!(n.encode_context().ipv4_unicast_classic);

    // Peer sent only IPv6: no IPv4 unicast, not even implied.
    let n = ok(&l, &open(65002, 90, [10, 0, 0, 2], vec![v6.clone()]), 65002);
    assert_eq!(n.families, vec![Family::IPV6_UNICAST]);
    assert!(!n.encode_context().ipv4_unicast_classic);
    assert!(!n.has_family(Family::IPV4_UNICAST));

    // Both, plus a family we do not speak (L2VPN EVPN).
    let evpn = Capability::Multiprotocol(Family::from_wire(25, 70));
    let n = ok(
        &l,
        &open(65002, 90, [10, 0, 0, 2], vec![v6, evpn, v4]),
        65002,
    );
    assert_eq!(n.families, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);

    // We sent none (IPv4 implied), peer sent IPv6 only: nothing in common.
    let n = ok(
        &local(vec![]),
        &open(
            65002,
            90,
            [10, 0, 0, 2],
            vec![Capability::Multiprotocol(Family::IPV6_UNICAST)],
        ),
        65002,
    );
    assert!(n.families.is_empty());
}

#[test]
fn add_path_per_family_and_direction() {
    let ap = |family, mode| AddPathFamily { family, mode };
    let l = local(vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::Multiprotocol(Family::IPV6_UNICAST),
        Capability::AddPath(vec![
            ap(Family::IPV4_UNICAST, AddPathMode::Both),
            ap(Family::IPV6_UNICAST, AddPathMode::Receive),
        ]),
    ]);
    let peer = open(
        65002,
        90,
        [10, 0, 0, 2],
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::AddPath(vec![
                ap(Family::IPV4_UNICAST, AddPathMode::Send),
                ap(Family::IPV6_UNICAST, AddPathMode::Both),
            ]),
        ],
    );
    let n = ok(&l, &peer, 65002);
    assert_eq!(
        n.add_path_receive,
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert!(n.add_path_send.is_empty());
    assert_eq!(
        n.decode_context().add_path,
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert!(n.encode_context().add_path.is_empty());

    // Peer receives IPv4: we may send.
    let peer = open(
        65002,
        90,
        [10, 0, 0, 2],
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::AddPath(vec![ap(Family::IPV4_UNICAST, AddPathMode::Receive)]),
        ],
    );
    let n = ok(&l, &peer, 65002);
    assert_eq!(n.add_path_send, vec![Family::IPV4_UNICAST]);
    assert!(n.add_path_receive.is_empty());
}

#[test]
fn optional_capabilities_need_both_sides() {
    let caps = vec![
        Capability::RouteRefresh,
        Capability::EnhancedRouteRefresh,
        Capability::ExtendedMessage,
        Capability::FourOctetAs(65001),
    ];
    let l = local(caps.clone());
    let gr = GracefulRestart {
        restart_state: false,
        notification: true,
        restart_time: 120,
        families: vec![],
    };
    let mut peer_caps = caps.clone();
    peer_caps[3] = Capability::FourOctetAs(65002);
    peer_caps.push(Capability::GracefulRestart(gr.clone()));
    // FRR 10 advertises these by default; they must not disturb anything.
    peer_caps.push(Capability::Unknown {
        code: 73,
        value: b"\x03frr\x00".to_vec(),
    });
    peer_caps.push(Capability::Unknown {
        code: 67,
        value: vec![],
    });
    let n = ok(&l, &open(65002, 90, [10, 0, 0, 2], peer_caps), 65002);
    assert!(n.route_refresh && n.enhanced_route_refresh && n.extended_message && n.four_octet_as);
    assert_eq!(n.peer_graceful_restart, Some(gr));
    assert_eq!(n.encode_context().max_message_size, 65535);
    assert_eq!(n.decode_context().max_message_size, 65535);

    // Peer without them.
    let n = ok(&l, &open(65002, 90, [10, 0, 0, 2], vec![]), 65002);
    assert!(!n.route_refresh && !n.enhanced_route_refresh && !n.extended_message);
    assert!(!n.four_octet_as);
    assert_eq!(n.peer_graceful_restart, None);
    assert_eq!(n.encode_context().max_message_size, 4096);
}
