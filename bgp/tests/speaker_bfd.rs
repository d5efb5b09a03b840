//! BFD for BGP peers (RFC 5880/5881): a peer that goes silent while its
//! link stays up loses its routes in well under a second instead of at the
//! 90 s hold time, in both directions, against another Brindle speaker, BIRD
//! 2 and FRR (bfdd). "Silent" is every packet dropped by iptables in one
//! namespace; the veth stays up, so only BFD can notice. Lifting the drop
//! brings BFD, the session and the routes back. Needs root, `bird`, FRR.
//!
//! The time each detection took is printed (`--nocapture`); the assertion is
//! only that the routes left long before the hold timer could have fired.

#[path = "speaker_support.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use brindle_bgp::bfd::{BfdConfig, BfdState};
use brindle_bgp::speaker::{BestRouteChange, PeerConfig, SpeakerConfig};
use brindle_testbed::{poll_until, veth, BgpConfig, Bird, Frr, Neighbor, Netns};
use support::{block_on, local_attrs, net, wait_change, wait_established, wait_peer, NsSpeaker};

const OUR_AS: u32 = 64512;
const PEER_AS: u32 = 65001;
/// The hold time on both sides: what would detect the failure without BFD.
const HOLD: u16 = 90;
/// Far below `HOLD`: only BFD can explain a detection this fast.
const WELL_BEFORE_HOLD: Duration = Duration::from_secs(10);

/// Drops every packet in and out of `ns` until dropped itself.
struct Silence<'a> {
    ns: &'a Netns,
}

impl<'a> Silence<'a> {
    fn start(ns: &'a Netns) -> Self {
        for chain in ["INPUT", "OUTPUT"] {
            ns.run(&["iptables", "-w", "-I", chain, "-j", "DROP"])
                .unwrap();
        }
        Silence { ns }
    }
}

impl Drop for Silence<'_> {
    fn drop(&mut self) {
        for chain in ["INPUT", "OUTPUT"] {
            let _ = self.ns.run(&["iptables", "-w", "-D", chain, "-j", "DROP"]);
        }
    }
}

struct Pair {
    ours_ns: Netns,
    peer_ns: Netns,
    our_ip: IpAddr,
    peer_ip: IpAddr,
    our_id: Ipv4Addr,
    peer_id: Ipv4Addr,
}

fn pair(tag: &str, subnet: u8) -> Option<Pair> {
    if !brindle_testbed::require::root_and_ip() {
        return None;
    }
    let ours_ns = Netns::new(&format!("{tag}o")).unwrap();
    let peer_ns = Netns::new(&format!("{tag}p")).unwrap();
    let our_id = Ipv4Addr::new(10, subnet, 0, 1);
    let peer_id = Ipv4Addr::new(10, subnet, 0, 2);
    veth(
        &ours_ns,
        "eth0",
        &[&format!("{our_id}/24")],
        &peer_ns,
        "eth0",
        &[&format!("{peer_id}/24")],
    )
    .unwrap();
    Some(Pair {
        ours_ns,
        peer_ns,
        our_ip: IpAddr::V4(our_id),
        peer_ip: IpAddr::V4(peer_id),
        our_id,
        peer_id,
    })
}

fn our_speaker(p: &Pair, peer_asn: u32, prefix: &str) -> NsSpeaker {
    let mut cfg = SpeakerConfig::new(OUR_AS, p.our_id);
    let mut peer = PeerConfig::new(p.peer_ip, peer_asn);
    peer.hold_time = HOLD;
    peer.connect_retry = Duration::from_secs(1);
    peer.source_address = Some(p.our_ip);
    peer.bfd = Some(BfdConfig::default());
    cfg.peers.push(peer);
    let ours = NsSpeaker::start(&p.ours_ns, cfg);
    block_on(ours.speaker.originate(net(prefix), local_attrs())).unwrap();
    ours
}

fn wait_bfd_up(ours: &NsSpeaker, peer: IpAddr) {
    wait_peer(&ours.speaker, peer, "BFD Up", |s| {
        s.bfd == Some(BfdState::Up)
    });
}

/// Waits (a minute at most) until the peer holds our prefix; panics with
/// `failure` and the peer's diagnostics otherwise.
fn wait_until_peer_has_ours(
    peer_has_ours: &mut impl FnMut() -> bool,
    failure: &str,
    diagnostics: &impl Fn() -> String,
) {
    let arrived = poll_until(Duration::from_secs(60), Duration::from_millis(100), || {
        Ok(peer_has_ours().then_some(()))
    })
    .unwrap();
    assert!(arrived.is_some(), "{failure}\n{}", diagnostics());
}

/// Phase 1: the peer goes silent; our speaker must drop its route fast.
/// Phase 2: the silence ends; BFD, BGP and the route come back.
/// Phase 3: we go silent; `peer_lost_ours` must become true fast.
fn both_directions(
    p: &Pair,
    ours: &NsSpeaker,
    peer_prefix: &str,
    who: &str,
    mut peer_has_ours: impl FnMut() -> bool,
    diagnostics: impl Fn() -> String,
) {
    let mut routes = ours.speaker.subscribe();
    let peer_net = net(peer_prefix);
    wait_change(
        &mut routes,
        "the peer's prefix",
        |c| matches!(c, BestRouteChange::Best(r) if r.prefix == peer_net),
    );
    wait_bfd_up(ours, p.peer_ip);
    wait_until_peer_has_ours(
        &mut peer_has_ours,
        &format!("{who} never got our prefix"),
        &diagnostics,
    );

    // 1. The peer goes silent.
    let silent = Silence::start(&p.peer_ns);
    let start = Instant::now();
    wait_change(
        &mut routes,
        "the silent peer's prefix to go",
        |c| matches!(c, BestRouteChange::Withdrawn(n) if *n == peer_net),
    );
    let took = start.elapsed();
    println!("{who} silent: its routes left ours after {took:?}");
    assert!(took < WELL_BEFORE_HOLD, "took {took:?}: not BFD");
    let status = block_on(ours.speaker.peers()).unwrap();
    let status = status
        .iter()
        .find(|s| s.config.address == p.peer_ip)
        .unwrap();
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("BFD")),
        "status should say BFD: {:?}",
        status.last_error
    );

    // 2. It speaks again.
    drop(silent);
    wait_established(&ours.speaker, p.peer_ip);
    wait_change(
        &mut routes,
        "the peer's prefix to come back",
        |c| matches!(c, BestRouteChange::Best(r) if r.prefix == peer_net),
    );
    wait_bfd_up(ours, p.peer_ip);
    wait_until_peer_has_ours(
        &mut peer_has_ours,
        &format!("{who} never got our prefix back"),
        &diagnostics,
    );

    // 3. We go silent.
    let silent = Silence::start(&p.ours_ns);
    let start = Instant::now();
    let gone = poll_until(Duration::from_secs(60), Duration::from_millis(20), || {
        Ok((!peer_has_ours()).then_some(()))
    })
    .unwrap();
    let took = start.elapsed();
    assert!(gone.is_some(), "{who} kept our prefix\n{}", diagnostics());
    println!("we silent: {who} dropped our routes after {took:?}");
    assert!(
        took < WELL_BEFORE_HOLD,
        "took {took:?}: not BFD\n{}",
        diagnostics()
    );
    drop(silent);
}

#[test]
fn bfd_between_two_brindle_speakers() {
    let Some(p) = pair("bfdbb", 91) else {
        return;
    };
    let ours = our_speaker(&p, OUR_AS, "10.91.244.0/26");
    let mut cfg = SpeakerConfig::new(OUR_AS, p.peer_id);
    let mut peer = PeerConfig::new(p.our_ip, OUR_AS);
    peer.hold_time = HOLD;
    peer.connect_retry = Duration::from_secs(1);
    peer.source_address = Some(p.peer_ip);
    peer.bfd = Some(BfdConfig::default());
    cfg.peers.push(peer);
    let theirs = NsSpeaker::start(&p.peer_ns, cfg);
    block_on(
        theirs
            .speaker
            .originate(net("10.91.100.0/24"), local_attrs()),
    )
    .unwrap();
    let ours_net = net("10.91.244.0/26");
    both_directions(
        &p,
        &ours,
        "10.91.100.0/24",
        "brindle",
        || {
            block_on(theirs.speaker.routes())
                .unwrap()
                .iter()
                .any(|r| r.prefix == ours_net)
        },
        String::new,
    );
}

/// A speaker whose runtime is dropped (as brindle-node restarts: no
/// NOTIFICATION, so its peers keep its routes through graceful restart)
/// says AdminDown on its BFD sessions, and the peer keeps the routes as
/// stale instead of flushing them. (Between two Brindle speakers the closed
/// TCP connection arrives first and already makes the end graceful; the
/// AdminDown is for peers that act on BFD alone.)
#[test]
fn a_restarting_speaker_says_admin_down_and_keeps_its_routes_at_the_peer() {
    let Some(p) = pair("bfdgr", 94) else {
        return;
    };
    let ours = our_speaker(&p, OUR_AS, "10.94.244.0/26");
    let mut cfg = SpeakerConfig::new(OUR_AS, p.peer_id);
    let mut peer = PeerConfig::new(p.our_ip, OUR_AS);
    peer.hold_time = HOLD;
    peer.source_address = Some(p.peer_ip);
    peer.bfd = Some(BfdConfig::default());
    cfg.peers.push(peer);
    let theirs = NsSpeaker::start(&p.peer_ns, cfg);
    block_on(
        theirs
            .speaker
            .originate(net("10.94.100.0/24"), local_attrs()),
    )
    .unwrap();
    let mut routes = ours.speaker.subscribe();
    let theirs_net = net("10.94.100.0/24");
    wait_change(
        &mut routes,
        "their prefix",
        |c| matches!(c, BestRouteChange::Best(r) if r.prefix == theirs_net),
    );
    wait_bfd_up(&ours, p.peer_ip);
    theirs.crash();
    // Their BFD session would time out in 300 ms; give it ten times that.
    std::thread::sleep(Duration::from_secs(3));
    let status = block_on(ours.speaker.peers()).unwrap();
    let status = status
        .iter()
        .find(|s| s.config.address == p.peer_ip)
        .unwrap();
    assert_ne!(status.bfd, Some(BfdState::Up));
    let kept = block_on(ours.speaker.routes()).unwrap();
    assert!(
        kept.iter().any(|r| r.prefix == theirs_net && r.stale),
        "their route should be kept as stale (graceful restart), not flushed: {:?}; {:?}",
        kept.iter().map(|r| r.prefix).collect::<Vec<_>>(),
        status.last_error
    );
}

#[test]
fn bfd_with_bird() {
    let Some(p) = pair("bfdbi", 92) else {
        return;
    };
    let ours = our_speaker(&p, PEER_AS, "10.92.244.0/26");
    let mut config = BgpConfig::new(p.peer_id, PEER_AS)
        .with_neighbor(Neighbor {
            bfd: true,
            ..Neighbor::new(p.our_ip, OUR_AS)
        })
        .originate("10.92.100.0/24");
    config.hold_time = HOLD;
    let bird = Bird::start(&p.peer_ns, &config).unwrap();
    both_directions(
        &p,
        &ours,
        "10.92.100.0/24",
        "BIRD",
        || bird.routes().unwrap().iter().any(|r| r == "10.92.244.0/26"),
        || {
            format!(
                "{}\n{}",
                bird.birdc("show bfd sessions").unwrap_or_default(),
                bird.log()
            )
        },
    );
}

#[test]
fn bfd_with_frr() {
    let Some(p) = pair("bfdfr", 93) else {
        return;
    };
    let ours = our_speaker(&p, PEER_AS, "10.93.244.0/26");
    let mut config = BgpConfig::new(p.peer_id, PEER_AS)
        .with_neighbor(Neighbor {
            bfd: true,
            ..Neighbor::new(p.our_ip, OUR_AS)
        })
        .originate("10.93.100.0/24");
    config.hold_time = HOLD;
    let frr = Frr::start(&p.peer_ns, &config).unwrap();
    both_directions(
        &p,
        &ours,
        "10.93.100.0/24",
        "FRR",
        || frr.routes().unwrap().iter().any(|r| r == "10.93.244.0/26"),
        || frr.vtysh("show bfd peers").unwrap_or_default(),
    );
}
