//! Graceful restart, helper side (RFC 4724): when a GR-capable peer
//! crashes (no NOTIFICATION, the kernel just closes the connection), its
//! routes stay in our Loc-RIB marked stale, so the kernel route does not
//! flap; when it comes back and sends End-of-RIB they are fresh again. If it
//! does not come back within its restart time, they are withdrawn. Needs
//! root.

#[path = "speaker_support.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use brindle_bgp::speaker::{BestRouteChange, PeerConfig, PeerState, SpeakerConfig};
use brindle_testbed::{veth, Netns};
use support::{block_on, local_attrs, net, wait_change, wait_established, wait_peer, NsSpeaker};

const ASN: u32 = 64512;

#[test]
fn restarting_peer_keeps_routes_until_end_of_rib_or_restart_time() {
    let a_ns = Netns::new("spgra").unwrap();
    let b_ns = Netns::new("spgrb").unwrap();
    veth(
        &a_ns,
        "eth0",
        &["10.71.0.1/24"],
        &b_ns,
        "eth0",
        &["10.71.0.2/24"],
    )
    .unwrap();
    let a_ip = IpAddr::V4(Ipv4Addr::new(10, 71, 0, 1));
    let b_ip = IpAddr::V4(Ipv4Addr::new(10, 71, 0, 2));
    let block = net("10.244.9.0/26");

    // A restarting node originates its blocks before it peers, so its
    // first End-of-RIB already covers them.
    let start_a = || {
        let a = NsSpeaker::start(&a_ns, SpeakerConfig::new(ASN, Ipv4Addr::new(10, 71, 0, 1)));
        block_on(a.speaker.originate(block, local_attrs())).unwrap();
        let mut to_b = PeerConfig::new(b_ip, ASN);
        to_b.connect_retry = Duration::from_secs(1);
        to_b.hold_time = 9;
        to_b.graceful_restart = Some(3);
        block_on(a.speaker.add_peer(to_b)).unwrap();
        a
    };
    let mut b_cfg = SpeakerConfig::new(ASN, Ipv4Addr::new(10, 71, 0, 2));
    let mut to_a = PeerConfig::new(a_ip, ASN);
    to_a.connect_retry = Duration::from_secs(1);
    to_a.hold_time = 9;
    b_cfg.peers.push(to_a);
    let b = NsSpeaker::start(&b_ns, b_cfg);
    let mut b_routes = b.speaker.subscribe();

    let a = start_a();
    wait_established(&b.speaker, a_ip);
    wait_change(&mut b_routes, "the block", |c| c.prefix() == block);

    // Crash: the route stays, marked stale.
    a.crash();
    let status = wait_peer(&b.speaker, a_ip, "down with stale routes", |s| {
        s.state != PeerState::Established && s.prefixes_stale == 1
    });
    assert_eq!(status.prefixes_received, 1);
    let routes = block_on(b.speaker.routes()).unwrap();
    assert_eq!(routes.len(), 1);
    assert!(routes[0].stale);

    // Back within the restart time: End-of-RIB refreshes it, no flap.
    let a = start_a();
    wait_established(&b.speaker, a_ip);
    wait_peer(&b.speaker, a_ip, "no stale routes", |s| {
        s.prefixes_stale == 0
    });
    let routes = block_on(b.speaker.routes()).unwrap();
    assert_eq!(routes.len(), 1);
    assert!(!routes[0].stale);
    assert_eq!(routes[0].next_hops, vec![a_ip]);
    while let Some(change) = b_routes.try_recv() {
        assert!(
            !matches!(change, BestRouteChange::Withdrawn(_)),
            "the route flapped across the restart: {change:?}"
        );
    }

    // Crash and stay away: after the restart time (3 s) it is withdrawn.
    a.crash();
    wait_change(&mut b_routes, "the stale route withdrawn", |c| {
        *c == BestRouteChange::Withdrawn(block)
    });
    let status = wait_peer(&b.speaker, a_ip, "no stale routes", |s| {
        s.prefixes_stale == 0
    });
    assert_eq!(status.prefixes_received, 0);
}
