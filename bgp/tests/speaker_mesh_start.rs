//! A full mesh of speakers that all start at the same moment, as the nodes
//! of a fabric do after a power cut or a cluster-wide upgrade: both ends of
//! every session dial at once, so sessions start as connection collisions,
//! resolved on the OPENs (RFC 4271 §6.8) as BIRD does: a connection from
//! the neighbour that arrives while our own dial is in flight runs beside
//! it instead of replacing it (`session::incoming_connection`), and retries
//! are jittered so pairs that failed together do not retry in step. Every
//! session must come up. Needs root.
//!
//! (This passes on the code before that change too: in one process the
//! race that change closes is too narrow to hit. It stays as the
//! regression test of a mesh started at once.)

#[path = "speaker_support.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use brindle_bgp::speaker::{PeerConfig, PeerState, SpeakerConfig};
use brindle_testbed::{Lan, Netns};
use support::{block_on, NsSpeaker};

/// Speakers in the mesh: enough pairs that a race lost by one pair in a
/// hundred shows.
const SPEAKERS: u8 = 24;

/// Upper bound for the whole mesh to come up; a bound, not a measurement.
const MESH_UP: Duration = Duration::from_secs(90);

fn address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 71, 0, n)
}

#[test]
fn a_mesh_started_at_once_brings_up_every_session() {
    let lan = Lan::new("msh").unwrap();
    let namespaces: Vec<Netns> = (1..=SPEAKERS)
        .map(|n| {
            let ns = Netns::new(&format!("msh{n}")).unwrap();
            lan.attach(&ns, "eth0", &[&format!("{}/24", address(n))])
                .unwrap();
            ns
        })
        .collect();
    // Calico's defaults for the node mesh: both ends active, connect retry
    // 5 s, hold time 90 s.
    let configs: Vec<SpeakerConfig> = (1..=SPEAKERS)
        .map(|n| {
            let mut config = SpeakerConfig::new(64512, address(n));
            config.peers = (1..=SPEAKERS)
                .filter(|&m| m != n)
                .map(|m| PeerConfig::new(IpAddr::V4(address(m)), 64512))
                .collect();
            config
        })
        .collect();
    // Start them all together, each on its own thread.
    let speakers: Vec<NsSpeaker> = std::thread::scope(|scope| {
        let handles: Vec<_> = namespaces
            .iter()
            .zip(configs)
            .map(|(ns, config)| scope.spawn(move || NsSpeaker::start(ns, config)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let start = Instant::now();
    loop {
        let mut missing = Vec::new();
        for (i, s) in speakers.iter().enumerate() {
            for peer in block_on(s.speaker.peers()).unwrap() {
                if peer.state != PeerState::Established {
                    missing.push(format!(
                        "{} -> {} {:?}",
                        address(i as u8 + 1),
                        peer.config.address,
                        peer.state
                    ));
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < MESH_UP,
            "{} of {} session ends not Established after {MESH_UP:?}:\n{}",
            missing.len(),
            usize::from(SPEAKERS) * usize::from(SPEAKERS - 1),
            missing.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
