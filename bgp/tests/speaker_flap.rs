//! A BGP peer that flaps a thousand times (its session torn down with a
//! Cease and brought up again, its 100 routes withdrawn and announced each
//! time) against a real `brindle-bgpd` process: the daemon's memory stays
//! flat (what it holds after the 1,000th flap is what it held after the
//! 100th, within allocator noise), and at the end it has exactly the
//! peer's routes and the peer has its. `BRINDLE_FLAPS` changes the count.
//! Needs root.

#[path = "speaker_support.rs"]
mod speaker_support;
#[path = "interop_support.rs"]
mod support;

use std::time::{Duration, Instant};

use brindle_bgp::speaker::{PeerConfig, PeerState, SpeakerConfig};
use speaker_support::{block_on, local_attrs, net, NsSpeaker};
use support::*;

const FLAPPER_AS: u32 = 65002;
const ROUTES: usize = 100;

fn flaps() -> usize {
    std::env::var("BRINDLE_FLAPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn a_thousand_flaps_leave_memory_flat_and_routes_right() {
    if !brindle_testbed::require::root_and_ip() {
        return;
    }
    let fabric = lan("flap", 2);
    let (daemon_ns, flapper_ns) = (&fabric.hosts[0], &fabric.hosts[1]);
    let bgpd = Bgpd::start(
        daemon_ns,
        &format!(
            "asn: 64512\nrouter_id: {}\nlisten: 0.0.0.0:179\noriginate:\n  - 10.80.0.0/24\npeers:\n  - address: {}\n    asn: {FLAPPER_AS}\n    passive: true\n",
            rid(1),
            v4(2)
        ),
    );
    let mut peer = PeerConfig::new(v4(1), 64512);
    peer.connect_retry = Duration::from_secs(1);
    peer.source_address = Some(v4(2));
    let flapper = NsSpeaker::start(flapper_ns, SpeakerConfig::new(FLAPPER_AS, rid(2)));
    let prefixes: Vec<_> = (0..ROUTES)
        .map(|i| net(&format!("10.81.{i}.0/24")))
        .collect();
    block_on(
        flapper
            .speaker
            .originate_many(prefixes.clone(), local_attrs()),
    )
    .unwrap();

    let established = |what: &str| {
        let start = Instant::now();
        loop {
            let peers = block_on(flapper.speaker.peers()).unwrap();
            if peers
                .iter()
                .any(|p| p.config.address == v4(1) && p.state == PeerState::Established)
            {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "{what}: never Established\n{}",
                bgpd.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let total = flaps();
    let warm_up = (total / 10).max(1);
    let mut rss_after_warm_up = None;
    let start = Instant::now();
    for flap in 0..=total {
        if flap > 0 {
            block_on(flapper.speaker.remove_peer(v4(1))).unwrap();
        }
        block_on(flapper.speaker.add_peer(peer.clone())).unwrap();
        established(&format!("flap {flap}"));
        if flap == warm_up {
            // Let the daemon take in the table before measuring.
            bgpd.wait_route("10.81.99.0/24", |_| true);
            rss_after_warm_up = bgpd.rss_kib();
        }
    }
    let took = start.elapsed();

    // The end state is exactly right.
    let view = wait_for(WAIT, || {
        let p = bgpd.peer(v4(2));
        (p.state == "Established" && p.received == ROUTES).then_some(p)
    })
    .unwrap_or_else(|| panic!("{:?}\n{}", bgpd.peer(v4(2)), bgpd.log()));
    assert_eq!(view.established_transitions, total as u64 + 1);
    let routes = bgpd.routes();
    let mine: Vec<_> = routes
        .iter()
        .filter(|r| r.prefix.to_string().starts_with("10.81."))
        .collect();
    assert_eq!(mine.len(), ROUTES);
    let theirs = wait_for(WAIT, || {
        let routes = block_on(flapper.speaker.routes()).unwrap();
        routes
            .iter()
            .any(|r| r.prefix == net("10.80.0.0/24"))
            .then_some(())
    });
    assert!(
        theirs.is_some(),
        "the flapper never got the daemon's route back"
    );

    let before = rss_after_warm_up.expect("daemon RSS");
    let after = bgpd.rss_kib().expect("daemon RSS");
    println!(
        "{total} flaps in {took:?}: brindle-bgpd RSS {before} KiB after {warm_up}, {after} KiB after {total}"
    );
    // Flat: a leak of even 1 KiB per flap would show as 900 KiB.
    assert!(
        after <= before + 512,
        "RSS grew from {before} KiB to {after} KiB over {} flaps",
        total - warm_up
    );
}
