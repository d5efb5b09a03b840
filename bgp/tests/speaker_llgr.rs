//! Long-lived graceful restart (RFC 9494), helper side, against real BIRD
//! 2 peers. BIRD A negotiates LLGR (graceful restart time 1 s, long-lived
//! stale time 6 s); BIRD B does not. When A is killed (no NOTIFICATION),
//! its routes stay stale for the restart time, then carry `LLGR_STALE`,
//! the one marked `NO_LLGR` is withdrawn, and B (no LLGR) no longer gets
//! them; A back within the stale time makes them fresh again; A gone for
//! longer, they are withdrawn when the stale time runs out. Needs root and
//! `bird`.

#[path = "speaker_support.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use brindle_bgp::packet::Community;
use brindle_bgp::speaker::{BestRouteChange, PeerConfig, SpeakerConfig};
use brindle_testbed::{poll_until, veth, BgpConfig, Bird, Neighbor, Netns, Route};
use support::{net, wait_change, wait_established, NsSpeaker};

const OURS: u32 = 64512;

fn kill_hard(bird: Bird) {
    // SIGKILL: no NOTIFICATION, the kernel closes the connection.
    let _ = std::process::Command::new("kill")
        .args(["-9", &bird.pid().to_string()])
        .status();
    drop(bird);
}

#[test]
fn long_lived_stale_routes_from_bird() {
    let ours_ns = Netns::new("llgo").unwrap();
    let a_ns = Netns::new("llga").unwrap();
    let b_ns = Netns::new("llgb").unwrap();
    veth(
        &ours_ns,
        "eth0",
        &["10.82.1.1/24"],
        &a_ns,
        "eth0",
        &["10.82.1.2/24"],
    )
    .unwrap();
    veth(
        &ours_ns,
        "eth1",
        &["10.82.2.1/24"],
        &b_ns,
        "eth0",
        &["10.82.2.2/24"],
    )
    .unwrap();
    let a_ip = Ipv4Addr::new(10, 82, 1, 2);
    let b_ip = Ipv4Addr::new(10, 82, 2, 2);
    let kept = "10.83.1.0/24";
    let no_llgr = "10.83.2.0/24";
    let mut a_cfg = BgpConfig::new(a_ip, 65001)
        .with_neighbor(Neighbor::new(IpAddr::V4(Ipv4Addr::new(10, 82, 1, 1)), OURS))
        .originate(kept)
        .route(Route {
            communities: vec![(65535, 7)],
            ..Route::plain(no_llgr)
        });
    a_cfg.graceful_restart = Some(1);
    a_cfg.long_lived_stale_time = Some(6);
    let b_cfg = BgpConfig::new(b_ip, 65002)
        .with_neighbor(Neighbor::new(IpAddr::V4(Ipv4Addr::new(10, 82, 2, 1)), OURS));
    let a = Bird::start(&a_ns, &a_cfg).unwrap();
    let b = Bird::start(&b_ns, &b_cfg).unwrap();

    let mut cfg = SpeakerConfig::new(OURS, Ipv4Addr::new(10, 82, 1, 1));
    let mut to_a = PeerConfig::new(IpAddr::V4(a_ip), 65001);
    to_a.connect_retry = Duration::from_secs(1);
    to_a.hold_time = 9;
    to_a.long_lived_stale_time = Some(60);
    let mut to_b = PeerConfig::new(IpAddr::V4(b_ip), 65002);
    to_b.connect_retry = Duration::from_secs(1);
    to_b.hold_time = 9;
    cfg.peers = vec![to_a, to_b];
    let ours = NsSpeaker::start(&ours_ns, cfg);
    let mut routes = ours.speaker.subscribe();
    wait_established(&ours.speaker, IpAddr::V4(a_ip));
    wait_established(&ours.speaker, IpAddr::V4(b_ip));
    let step = Duration::from_secs(20);
    b.wait_route(kept, step)
        .unwrap_or_else(|e| panic!("B never got {kept}: {e}\n{}", b.log()));
    b.wait_route(no_llgr, step).unwrap();

    let is_llgr_stale = |c: &BestRouteChange| match c {
        BestRouteChange::Best(r) => {
            r.prefix == net(kept)
                && r.attrs
                    .attributes
                    .communities
                    .contains(&Community::LLGR_STALE)
        }
        BestRouteChange::Withdrawn(_) => false,
    };
    let gone_from_b = |prefix: &str| {
        poll_until(step, Duration::from_millis(100), || {
            Ok((!b.routes()?.iter().any(|r| r == prefix)).then_some(()))
        })
        .unwrap()
        .is_some()
    };

    // A crashes: stale for 1 s, then long-lived stale.
    kill_hard(a);
    let change = wait_change(&mut routes, "the route marked LLGR_STALE", is_llgr_stale);
    let BestRouteChange::Best(route) = change else {
        unreachable!()
    };
    assert!(route.stale, "still stale: {route:?}");
    assert!(gone_from_b(kept), "B (no LLGR) still has {kept}");
    assert!(gone_from_b(no_llgr), "NO_LLGR route kept");

    // A back within the stale time: fresh again, and B gets it again.
    let a = Bird::start(&a_ns, &a_cfg).unwrap();
    wait_change(&mut routes, "the route fresh again", |c| match c {
        BestRouteChange::Best(r) => {
            r.prefix == net(kept)
                && !r.stale
                && !r
                    .attrs
                    .attributes
                    .communities
                    .contains(&Community::LLGR_STALE)
        }
        BestRouteChange::Withdrawn(_) => false,
    });
    b.wait_route(kept, step)
        .unwrap_or_else(|e| panic!("B never got {kept} back: {e}\n{}", b.log()));

    // A gone for good: withdrawn once the long-lived stale time (6 s, the
    // smaller of ours and BIRD's) is over, not before.
    wait_established(&ours.speaker, IpAddr::V4(a_ip));
    kill_hard(a);
    wait_change(
        &mut routes,
        "the route marked LLGR_STALE again",
        is_llgr_stale,
    );
    let marked = Instant::now();
    wait_change(
        &mut routes,
        "the route withdrawn",
        |c| matches!(c, BestRouteChange::Withdrawn(p) if *p == net(kept)),
    );
    let kept_for = marked.elapsed();
    println!("long-lived stale for {kept_for:?} (stale time 6 s)");
    assert!(
        kept_for >= Duration::from_secs(5),
        "withdrawn after {kept_for:?}, before the stale time"
    );
}

/// The other way: we advertise LLGR, BIRD is the helper. Our speaker
/// crashes; BIRD keeps our route past our graceful restart time (1 s) as
/// long-lived stale (its `LLGR_STALE` community) until we are back.
#[test]
fn bird_keeps_our_routes_long_lived_stale() {
    use support::{block_on, local_attrs};
    let ours_ns = Netns::new("llgp").unwrap();
    let bird_ns = Netns::new("llgq").unwrap();
    veth(
        &ours_ns,
        "eth0",
        &["10.84.1.1/24"],
        &bird_ns,
        "eth0",
        &["10.84.1.2/24"],
    )
    .unwrap();
    let (our_ip, bird_ip) = (Ipv4Addr::new(10, 84, 1, 1), Ipv4Addr::new(10, 84, 1, 2));
    let mut bird_cfg =
        BgpConfig::new(bird_ip, 65001).with_neighbor(Neighbor::new(IpAddr::V4(our_ip), OURS));
    bird_cfg.graceful_restart = Some(120);
    bird_cfg.long_lived_stale_time = Some(60);
    let bird = Bird::start(&bird_ns, &bird_cfg).unwrap();
    let start = || {
        let mut cfg = SpeakerConfig::new(OURS, our_ip);
        let mut peer = PeerConfig::new(IpAddr::V4(bird_ip), 65001);
        peer.connect_retry = Duration::from_secs(1);
        peer.hold_time = 9;
        peer.graceful_restart = Some(1);
        peer.long_lived_stale_time = Some(30);
        cfg.peers.push(peer);
        let ours = NsSpeaker::start(&ours_ns, cfg);
        block_on(ours.speaker.originate(net("10.84.244.0/26"), local_attrs())).unwrap();
        wait_established(&ours.speaker, IpAddr::V4(bird_ip));
        ours
    };
    let ours = start();
    let step = Duration::from_secs(20);
    bird.wait_route("10.84.244.0/26", step)
        .unwrap_or_else(|e| panic!("BIRD never got the block: {e}\n{}", bird.log()));
    ours.crash();
    let marked = poll_until(step, Duration::from_millis(200), || {
        let detail = bird.birdc("show route 10.84.244.0/26 all")?;
        Ok(detail.contains("(65535,6)").then_some(detail))
    })
    .unwrap()
    .unwrap_or_else(|| {
        panic!(
            "BIRD never marked our route LLGR_STALE: {}\n{}",
            bird.birdc("show route 10.84.244.0/26 all")
                .unwrap_or_default(),
            bird.log()
        )
    });
    assert!(marked.contains("10.84.244.0/26"), "{marked}");
    // Back: BIRD has it fresh (no LLGR_STALE) after our End-of-RIB.
    let _ours = start();
    let fresh = poll_until(step, Duration::from_millis(200), || {
        let detail = bird.birdc("show route 10.84.244.0/26 all")?;
        Ok((detail.contains("10.84.244.0/26") && !detail.contains("(65535,6)")).then_some(()))
    })
    .unwrap();
    assert!(
        fresh.is_some(),
        "{}",
        bird.birdc("show route 10.84.244.0/26 all")
            .unwrap_or_default()
    );
}
