//! Two Brindle speakers in two namespaces over a veth: sessions come up
//! (iBGP over IPv4; eBGP over IPv6 with a per-peer local AS and ADD-PATH), originated prefixes reach the other
//! side's subscription with the right next hop and AS path, withdrawals
//! follow, and the peer counters agree. Then a route reflector with two
//! clients on a LAN reflects between them, and a node with two equal eBGP
//! paths installs both next hops (ECMP). Needs root.

#[path = "speaker_support.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use brindle_bgp::packet::AsPath;
use brindle_bgp::speaker::{BestRouteChange, PeerConfig, PeerState, RouteSource, SpeakerConfig};
use brindle_testbed::{veth, Lan, Netns};
use support::{block_on, local_attrs, net, wait_change, wait_established, wait_peer, NsSpeaker};

fn peer(address: IpAddr, asn: u32) -> PeerConfig {
    let mut p = PeerConfig::new(address, asn);
    p.connect_retry = Duration::from_secs(1);
    p.hold_time = 9;
    p
}

#[test]
fn ibgp_over_ipv4_originate_and_withdraw() {
    let a_ns = Netns::new("spka").unwrap();
    let b_ns = Netns::new("spkb").unwrap();
    veth(
        &a_ns,
        "eth0",
        &["10.61.0.1/24"],
        &b_ns,
        "eth0",
        &["10.61.0.2/24"],
    )
    .unwrap();
    let a_ip = IpAddr::V4(Ipv4Addr::new(10, 61, 0, 1));
    let b_ip = IpAddr::V4(Ipv4Addr::new(10, 61, 0, 2));

    let mut a_cfg = SpeakerConfig::new(64512, Ipv4Addr::new(10, 61, 0, 1));
    a_cfg.peers.push(peer(b_ip, 64512));
    let mut b_cfg = SpeakerConfig::new(64512, Ipv4Addr::new(10, 61, 0, 2));
    b_cfg.peers.push(peer(a_ip, 64512));
    let a = NsSpeaker::start(&a_ns, a_cfg);
    let b = NsSpeaker::start(&b_ns, b_cfg);
    let mut b_routes = b.speaker.subscribe();

    let status = wait_established(&a.speaker, b_ip);
    assert_eq!(status.router_id, Some(Ipv4Addr::new(10, 61, 0, 2)));
    wait_established(&b.speaker, a_ip);

    let block = net("10.244.1.0/26");
    block_on(a.speaker.originate(block, local_attrs())).unwrap();
    let change = wait_change(&mut b_routes, "the block at b", |c| c.prefix() == block);
    let BestRouteChange::Best(route) = change else {
        panic!("expected a best route, got {change:?}");
    };
    assert_eq!(
        route.next_hops,
        vec![a_ip],
        "iBGP: next hop self for our own route"
    );
    assert_eq!(route.source, RouteSource::Peer(a_ip));
    assert_eq!(route.attrs.attributes.local_pref, Some(100));
    assert_eq!(route.attrs.as_path().path_len(), 0, "iBGP does not prepend");

    let a_view = wait_peer(&a.speaker, b_ip, "advertising 1", |s| {
        s.prefixes_advertised == 1
    });
    assert!(a_view.uptime.is_some());
    let b_view = wait_peer(&b.speaker, a_ip, "receiving 1", |s| {
        s.prefixes_received == 1 && s.prefixes_accepted == 1
    });
    assert_eq!(b_view.state, PeerState::Established);
    let routes = block_on(b.speaker.routes()).unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].prefix, block);

    // Many prefixes at once: packed into few UPDATEs, all arrive.
    let many: Vec<_> = (0..300u32)
        .map(|i| net(&format!("10.{}.{}.0/24", 100 + i / 256, i % 256)))
        .collect();
    block_on(a.speaker.originate_many(many.clone(), local_attrs())).unwrap();
    wait_peer(&b.speaker, a_ip, "receiving 301", |s| {
        s.prefixes_received == 301
    });

    block_on(a.speaker.withdraw(block)).unwrap();
    wait_change(&mut b_routes, "the block withdrawn at b", |c| {
        *c == BestRouteChange::Withdrawn(block)
    });
    wait_peer(&b.speaker, a_ip, "receiving 300", |s| {
        s.prefixes_received == 300
    });

    // A subscriber that joins late first gets the current Loc-RIB.
    let mut late = b.speaker.subscribe();
    let replayed = block_on(async {
        let mut n = 0;
        while n < 300 {
            match tokio::time::timeout(support::STEP, late.recv()).await {
                Ok(Some(BestRouteChange::Best(_))) => n += 1,
                other => panic!("replay ended early: {other:?}"),
            }
        }
        n
    });
    assert_eq!(replayed, 300);

    // A configuration change resets the session, which comes back.
    let mut changed = peer(a_ip, 64512);
    changed.hold_time = 12;
    block_on(b.speaker.update_peer(changed.clone())).unwrap();
    let status = wait_peer(&b.speaker, a_ip, "back with 300 routes", |s| {
        s.state == PeerState::Established && s.prefixes_received == 300
    });
    assert_eq!(status.config, changed);
    assert_eq!(status.hold_time, Some(9), "min(12, a's 9)");

    // Removing the peer withdraws what it taught us.
    block_on(b.speaker.remove_peer(a_ip)).unwrap();
    assert!(block_on(b.speaker.routes()).unwrap().is_empty());
    let a_view = wait_peer(&a.speaker, b_ip, "not Established", |s| {
        s.state != PeerState::Established
    });
    let error = a_view.last_error.unwrap_or_default();
    assert!(
        error.contains("6/2") && error.contains("peer removed"),
        "a saw the Cease/2 with the shutdown message: {error}"
    );
}

#[test]
fn ebgp_over_ipv6_with_local_as_and_add_path() {
    let a_ns = Netns::new("spk6a").unwrap();
    let b_ns = Netns::new("spk6b").unwrap();
    veth(
        &a_ns,
        "eth0",
        &["fd61::1/64"],
        &b_ns,
        "eth0",
        &["fd61::2/64"],
    )
    .unwrap();
    let a_ip = IpAddr::V6("fd61::1".parse::<Ipv6Addr>().unwrap());
    let b_ip = IpAddr::V6("fd61::2".parse::<Ipv6Addr>().unwrap());

    // a presents AS 64600 to b (per-peer local AS); both offer ADD-PATH.
    let mut a_cfg = SpeakerConfig::new(64512, Ipv4Addr::new(10, 62, 0, 1));
    let mut to_b = peer(b_ip, 65001);
    to_b.local_asn = Some(64600);
    to_b.add_path.send = true;
    to_b.add_path.receive = true;
    a_cfg.peers.push(to_b);
    let mut b_cfg = SpeakerConfig::new(65001, Ipv4Addr::new(10, 62, 0, 2));
    let mut to_a = peer(a_ip, 64600);
    to_a.passive = true;
    to_a.add_path.send = true;
    to_a.add_path.receive = true;
    b_cfg.peers.push(to_a);
    let a = NsSpeaker::start(&a_ns, a_cfg);
    let b = NsSpeaker::start(&b_ns, b_cfg);
    let mut b_routes = b.speaker.subscribe();
    let mut a_routes = a.speaker.subscribe();

    wait_established(&a.speaker, b_ip);
    let block = net("fd00:10:244:1::/64");
    block_on(a.speaker.originate(block, local_attrs())).unwrap();
    let change = wait_change(&mut b_routes, "the v6 block at b", |c| c.prefix() == block);
    let BestRouteChange::Best(route) = change else {
        panic!("expected a best route, got {change:?}");
    };
    assert_eq!(route.next_hops, vec![a_ip]);
    assert_eq!(
        route.attrs.attributes.as_path,
        Some(AsPath::from_sequence([64600])),
        "the per-peer local AS is what b sees"
    );

    // And the other way round.
    let other = net("fd00:10:245::/64");
    block_on(b.speaker.originate(other, local_attrs())).unwrap();
    let change = wait_change(&mut a_routes, "b's block at a", |c| c.prefix() == other);
    let BestRouteChange::Best(route) = change else {
        panic!("expected a best route, got {change:?}");
    };
    assert_eq!(route.next_hops, vec![b_ip]);
    assert_eq!(
        route.attrs.attributes.as_path,
        Some(AsPath::from_sequence([65001]))
    );

    block_on(b.speaker.withdraw(other)).unwrap();
    wait_change(&mut a_routes, "b's block withdrawn", |c| {
        *c == BestRouteChange::Withdrawn(other)
    });
}

#[test]
fn route_reflector_reflects_between_clients() {
    let lan = Lan::new("spkrl").unwrap();
    let rr_ns = Netns::new("spkrr").unwrap();
    let c1_ns = Netns::new("spkc1").unwrap();
    let c2_ns = Netns::new("spkc2").unwrap();
    lan.attach(&rr_ns, "eth0", &["10.63.0.10/24"]).unwrap();
    lan.attach(&c1_ns, "eth0", &["10.63.0.1/24"]).unwrap();
    lan.attach(&c2_ns, "eth0", &["10.63.0.2/24"]).unwrap();
    let rr_ip = IpAddr::V4(Ipv4Addr::new(10, 63, 0, 10));
    let c1_ip = IpAddr::V4(Ipv4Addr::new(10, 63, 0, 1));
    let c2_ip = IpAddr::V4(Ipv4Addr::new(10, 63, 0, 2));
    let cluster = Ipv4Addr::new(10, 63, 0, 10);

    let mut rr_cfg = SpeakerConfig::new(64512, Ipv4Addr::new(10, 63, 0, 10));
    rr_cfg.cluster_id = Some(cluster);
    for client in [c1_ip, c2_ip] {
        let mut p = peer(client, 64512);
        p.route_reflector_client = true;
        p.passive = true;
        rr_cfg.peers.push(p);
    }
    let client_cfg = |id: Ipv4Addr| {
        let mut c = SpeakerConfig::new(64512, id);
        c.peers.push(peer(rr_ip, 64512));
        c
    };
    let rr = NsSpeaker::start(&rr_ns, rr_cfg);
    let c1 = NsSpeaker::start(&c1_ns, client_cfg(Ipv4Addr::new(10, 63, 0, 1)));
    let c2 = NsSpeaker::start(&c2_ns, client_cfg(Ipv4Addr::new(10, 63, 0, 2)));
    let mut c2_routes = c2.speaker.subscribe();
    let mut c1_routes = c1.speaker.subscribe();
    wait_established(&rr.speaker, c1_ip);
    wait_established(&rr.speaker, c2_ip);

    let block = net("10.244.7.0/26");
    block_on(c1.speaker.originate(block, local_attrs())).unwrap();
    let change = wait_change(&mut c2_routes, "c1's block at c2", |c| c.prefix() == block);
    let BestRouteChange::Best(route) = change else {
        panic!("expected a best route, got {change:?}");
    };
    assert_eq!(
        route.next_hops,
        vec![c1_ip],
        "a reflector keeps the next hop"
    );
    assert_eq!(route.source, RouteSource::Peer(rr_ip));
    assert_eq!(
        route.attrs.attributes.originator_id,
        Some(Ipv4Addr::new(10, 63, 0, 1))
    );
    assert_eq!(route.attrs.attributes.cluster_list, vec![cluster]);

    // c1 never gets its own route back (ORIGINATOR_ID loop check), and
    // both clients see the other's block.
    let other = net("10.244.8.0/26");
    block_on(c2.speaker.originate(other, local_attrs())).unwrap();
    let change = wait_change(&mut c1_routes, "c2's block at c1", |c| c.prefix() == other);
    assert!(matches!(change, BestRouteChange::Best(r) if r.next_hops == vec![c2_ip]));
    let c1_routes_now = block_on(c1.speaker.routes()).unwrap();
    let own = c1_routes_now.iter().find(|r| r.prefix == block).unwrap();
    assert_eq!(own.source, RouteSource::Local);

    block_on(c1.speaker.withdraw(block)).unwrap();
    wait_change(&mut c2_routes, "c1's block withdrawn at c2", |c| {
        *c == BestRouteChange::Withdrawn(block)
    });
}

#[test]
fn ecmp_installs_both_next_hops() {
    let lan = Lan::new("spkel").unwrap();
    let x_ns = Netns::new("spkex").unwrap();
    let p1_ns = Netns::new("spke1").unwrap();
    let p2_ns = Netns::new("spke2").unwrap();
    lan.attach(&x_ns, "eth0", &["10.74.0.10/24"]).unwrap();
    lan.attach(&p1_ns, "eth0", &["10.74.0.1/24"]).unwrap();
    lan.attach(&p2_ns, "eth0", &["10.74.0.2/24"]).unwrap();
    let x_ip = IpAddr::V4(Ipv4Addr::new(10, 74, 0, 10));
    let p1_ip = IpAddr::V4(Ipv4Addr::new(10, 74, 0, 1));
    let p2_ip = IpAddr::V4(Ipv4Addr::new(10, 74, 0, 2));

    let mut x_cfg = SpeakerConfig::new(64512, Ipv4Addr::new(10, 74, 0, 10));
    x_cfg.max_paths = 4;
    x_cfg.peers.push(peer(p1_ip, 65001));
    x_cfg.peers.push(peer(p2_ip, 65001));
    let leaf = |id: Ipv4Addr| {
        let mut c = SpeakerConfig::new(65001, id);
        let mut p = peer(x_ip, 64512);
        p.passive = true;
        c.peers.push(p);
        c
    };
    let x = NsSpeaker::start(&x_ns, x_cfg);
    let p1 = NsSpeaker::start(&p1_ns, leaf(Ipv4Addr::new(10, 74, 0, 1)));
    let p2 = NsSpeaker::start(&p2_ns, leaf(Ipv4Addr::new(10, 74, 0, 2)));
    let mut routes = x.speaker.subscribe();
    wait_established(&x.speaker, p1_ip);
    wait_established(&x.speaker, p2_ip);

    let anycast = net("10.250.0.0/24");
    block_on(p1.speaker.originate(anycast, local_attrs())).unwrap();
    block_on(p2.speaker.originate(anycast, local_attrs())).unwrap();
    let change = wait_change(
        &mut routes,
        "both next hops",
        |c| matches!(c, BestRouteChange::Best(r) if r.prefix == anycast && r.next_hops.len() == 2),
    );
    let BestRouteChange::Best(route) = change else {
        unreachable!()
    };
    let mut hops = route.next_hops.clone();
    hops.sort();
    assert_eq!(hops, vec![p1_ip, p2_ip]);

    // One of them goes away: one next hop left, the prefix stays.
    block_on(p2.speaker.withdraw(anycast)).unwrap();
    let change = wait_change(&mut routes, "one next hop", |c| c.prefix() == anycast);
    assert!(
        matches!(&change, BestRouteChange::Best(r) if r.next_hops == vec![p1_ip]),
        "{change:?}"
    );
}
