//! A scripted peer (a plain TCP socket in its own namespace, speaking BGP
//! through the codec) misbehaves in the ways that matter; the speaker
//! answers each with the right NOTIFICATION, records it as the peer's last
//! error, accepts the next connection, and keeps serving its API:
//!
//! * a header with a broken marker → 1/1;
//! * an UPDATE whose attribute length overruns the message → 3/1;
//! * an UPDATE with a bad ORIGIN → treat-as-withdraw, session stays up;
//! * silence past the hold time → 4/0;
//! * a wrong AS in OPEN → 2/2.
//!
//! It also drives connection collisions (RFC 4271 §6.8) deterministically:
//! the scripted peer accepts the speaker's connection and opens its own, and
//! the speaker must keep the one opened by the side with the higher BGP
//! identifier, closing the other with Cease/7. And it asks for a
//! ROUTE-REFRESH, which the speaker answers by resending its Adj-RIB-Out.
//!
//! Needs root.

#[path = "speaker_support.rs"]
mod support;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use brindle_bgp::packet::{
    decode_message, AsPath, Capability, DecodeContext, EncodeContext, Family, Message, Nlri,
    Notification, Open, Origin, PathAttributes, RouteRefresh, Update,
};
use brindle_bgp::speaker::{BestRouteChange, PeerConfig, PeerState, SpeakerConfig};
use brindle_testbed::{veth, Netns};
use nix::sched::{setns, CloneFlags};
use support::{block_on, net, wait_change, wait_peer, NsSpeaker, STEP};

const SPEAKER_AS: u32 = 64512;
const PEER_AS: u32 = 65002;
const SPEAKER_IP: Ipv4Addr = Ipv4Addr::new(10, 68, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 68, 0, 2);

/// A TCP connection to the speaker, made from inside `ns`.
fn connect_from(ns: &Netns) -> TcpStream {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        let start = Instant::now();
        loop {
            match TcpStream::connect(SocketAddr::new(IpAddr::V4(SPEAKER_IP), 179)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    return s;
                }
                Err(e) if start.elapsed() < STEP => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connect: {e}"),
            }
        }
    })
    .join()
    .expect("connect thread")
}

/// Accepts one connection on `PEER_IP:179` inside `ns`, on a thread; the
/// listening socket is bound before this returns.
fn accept_in(ns: &Netns) -> std::thread::JoinHandle<TcpStream> {
    let path = format!("/run/netns/{}", ns.name());
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        let listener =
            std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(PEER_IP), 179)).expect("bind");
        bound_tx.send(()).unwrap();
        let (stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        stream
    });
    bound_rx.recv().expect("listener thread");
    handle
}

struct Scripted {
    stream: TcpStream,
    buf: Vec<u8>,
    ctx: DecodeContext,
}

impl Scripted {
    fn new(stream: TcpStream) -> Self {
        Scripted {
            stream,
            buf: Vec::new(),
            ctx: DecodeContext {
                four_octet_as: true,
                ..Default::default()
            },
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    fn send_message(&mut self, message: Message) {
        let ctx = EncodeContext {
            four_octet_as: true,
            ..Default::default()
        };
        let bytes = message.to_bytes(&ctx).expect("encode");
        self.send(&bytes);
    }

    /// The next message, or `None` at EOF.
    fn next(&mut self) -> Option<Message> {
        let start = Instant::now();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(d) = decode_message(&self.buf, &self.ctx).expect("speaker sent garbage") {
                self.buf.drain(..d.len);
                return Some(d.message);
            }
            assert!(start.elapsed() < STEP, "nothing from the speaker");
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    /// Reads until a NOTIFICATION arrives (skipping OPEN/KEEPALIVE/UPDATE).
    fn expect_notification(&mut self) -> Notification {
        loop {
            match self.next() {
                Some(Message::Notification(n)) => return n,
                Some(_) => {}
                None => panic!("connection closed without a NOTIFICATION"),
            }
        }
    }

    fn send_open(&mut self, asn: u32, hold_time: u16) {
        self.send_message(Message::Open(Open {
            version: 4,
            asn,
            hold_time,
            bgp_id: PEER_IP,
            capabilities: vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
                Capability::FourOctetAs(asn),
            ],
        }));
    }

    /// OPEN/KEEPALIVE exchange; returns once the speaker's KEEPALIVE came.
    fn establish(&mut self, asn: u32, hold_time: u16) {
        self.send_open(asn, hold_time);
        match self.next() {
            Some(Message::Open(open)) => assert_eq!(open.asn, SPEAKER_AS),
            other => panic!("expected OPEN, got {other:?}"),
        }
        self.send_message(Message::Keepalive);
        match self.next() {
            Some(Message::Keepalive) => {}
            other => panic!("expected KEEPALIVE, got {other:?}"),
        }
    }
}

fn update_bytes(origin_value: u8, prefix: &str) -> Vec<u8> {
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence([PEER_AS])),
            next_hop: Some(PEER_IP),
            ..Default::default()
        },
        nlri: vec![Nlri::new(net(prefix))],
        ..Default::default()
    };
    let ctx = EncodeContext {
        four_octet_as: true,
        ..Default::default()
    };
    let mut bytes = Message::Update(update).to_bytes(&ctx).unwrap().to_vec();
    // ORIGIN is the first attribute: flags, type 1, length 1, value.
    let attrs_at = 19 + 2 + 2;
    assert_eq!(&bytes[attrs_at..attrs_at + 3], &[0x40, 1, 1]);
    bytes[attrs_at + 3] = origin_value;
    bytes
}

#[test]
fn misbehaving_peer_gets_notifications_and_speaker_survives() {
    let speaker_ns = Netns::new("sperrs").unwrap();
    let peer_ns = Netns::new("sperrp").unwrap();
    veth(
        &speaker_ns,
        "eth0",
        &["10.68.0.1/24"],
        &peer_ns,
        "eth0",
        &["10.68.0.2/24"],
    )
    .unwrap();
    let peer_ip = IpAddr::V4(PEER_IP);
    let mut cfg = SpeakerConfig::new(SPEAKER_AS, SPEAKER_IP);
    let mut peer = PeerConfig::new(peer_ip, PEER_AS);
    peer.passive = true;
    peer.hold_time = 3;
    cfg.peers.push(peer);
    let speaker = NsSpeaker::start(&speaker_ns, cfg);
    let mut routes = speaker.speaker.subscribe();

    // 1. Broken marker before anything else.
    let mut s = Scripted::new(connect_from(&peer_ns));
    let mut garbage = vec![0u8; 16];
    garbage.extend_from_slice(&[0, 19, 4]);
    s.send(&garbage);
    let n = s.expect_notification();
    assert_eq!((n.code, n.subcode), (1, 1));
    assert!(s.next().is_none(), "closed after the NOTIFICATION");
    let status = wait_peer(&speaker.speaker, peer_ip, "reporting 1/1", |st| {
        st.last_error.as_deref().is_some_and(|e| e.contains("1/1"))
    });
    assert_ne!(status.state, PeerState::Established);

    // 2. A good session; a bad ORIGIN is treat-as-withdraw, not a reset.
    let mut s = Scripted::new(connect_from(&peer_ns));
    s.establish(PEER_AS, 3);
    wait_peer(&speaker.speaker, peer_ip, "Established", |st| {
        st.state == PeerState::Established
    });
    s.send(&update_bytes(0, "10.69.1.0/24"));
    wait_change(
        &mut routes,
        "the good route",
        |c| matches!(c, BestRouteChange::Best(r) if r.prefix == net("10.69.1.0/24")),
    );
    s.send(&update_bytes(7, "10.69.1.0/24"));
    wait_change(&mut routes, "treat-as-withdraw", |c| {
        *c == BestRouteChange::Withdrawn(net("10.69.1.0/24"))
    });
    s.send_message(Message::Keepalive);
    let status = block_on(speaker.speaker.peers()).unwrap();
    assert_eq!(status[0].state, PeerState::Established);

    // 3. Attribute length overrunning the message: session reset, 3/1.
    let mut bad = vec![0xffu8; 16];
    bad.extend_from_slice(&[0, 27, 2, 0, 0, 0, 10, 0x40, 1, 1, 0]);
    s.send(&bad);
    let n = s.expect_notification();
    assert_eq!((n.code, n.subcode), (3, 1));
    wait_peer(&speaker.speaker, peer_ip, "reporting 3/1", |st| {
        st.last_error.as_deref().is_some_and(|e| e.contains("3/1"))
            && st.state != PeerState::Established
    });

    // 4. Silence: the hold timer (3 s) expires, 4/0.
    let mut s = Scripted::new(connect_from(&peer_ns));
    s.establish(PEER_AS, 3);
    let n = s.expect_notification();
    assert_eq!((n.code, n.subcode), (4, 0));

    // 5. Wrong AS in OPEN: 2/2.
    let mut s = Scripted::new(connect_from(&peer_ns));
    s.send_message(Message::Open(Open {
        version: 4,
        asn: 65099,
        hold_time: 3,
        bgp_id: PEER_IP,
        capabilities: vec![Capability::FourOctetAs(65099)],
    }));
    let n = s.expect_notification();
    assert_eq!((n.code, n.subcode), (2, 2));

    // Still serving.
    block_on(
        speaker
            .speaker
            .originate(net("10.70.0.0/24"), support::local_attrs()),
    )
    .unwrap();
    assert_eq!(block_on(speaker.speaker.routes()).unwrap().len(), 1);
}

fn two_namespaces(tag: &str) -> (Netns, Netns) {
    let speaker_ns = Netns::new(&format!("{tag}s")).unwrap();
    let peer_ns = Netns::new(&format!("{tag}p")).unwrap();
    veth(
        &speaker_ns,
        "eth0",
        &["10.68.0.1/24"],
        &peer_ns,
        "eth0",
        &["10.68.0.2/24"],
    )
    .unwrap();
    (speaker_ns, peer_ns)
}

/// The speaker dials the scripted peer while the peer dials the speaker.
/// Returns (connection the speaker opened, connection the peer opened),
/// both with OPENs exchanged; the OPEN on the speaker's connection is sent
/// last, so that is where the speaker detects the collision.
fn collide(speaker_id: Ipv4Addr, tag: &str) -> (NsSpeaker, Netns, Netns, Scripted, Scripted) {
    let (speaker_ns, peer_ns) = two_namespaces(tag);
    let accept = accept_in(&peer_ns);
    let mut cfg = SpeakerConfig::new(SPEAKER_AS, speaker_id);
    cfg.listen_addresses = vec![IpAddr::V4(SPEAKER_IP)];
    let mut peer = PeerConfig::new(IpAddr::V4(PEER_IP), PEER_AS);
    peer.connect_retry = Duration::from_secs(1);
    peer.hold_time = 30;
    cfg.peers.push(peer);
    let speaker = NsSpeaker::start(&speaker_ns, cfg);

    let mut theirs = Scripted::new(accept.join().expect("accept thread"));
    assert!(matches!(theirs.next(), Some(Message::Open(_))));
    let mut ours = Scripted::new(connect_from(&peer_ns));
    assert!(matches!(ours.next(), Some(Message::Open(_))));
    ours.send_open(PEER_AS, 30);
    assert_eq!(ours.next(), Some(Message::Keepalive));
    theirs.send_open(PEER_AS, 30);
    (speaker, speaker_ns, peer_ns, theirs, ours)
}

#[test]
fn collision_keeps_the_connection_of_the_higher_identifier_peer() {
    // Our identifier 10.68.0.1 < the peer's 10.68.0.2: keep the peer's.
    let (speaker, _sns, _pns, mut theirs, mut ours) = collide(SPEAKER_IP, "spcoh");
    let n = theirs.expect_notification();
    assert_eq!(
        (n.code, n.subcode),
        (6, 7),
        "Cease/7 on the speaker's connection"
    );
    ours.send_message(Message::Keepalive);
    let status = wait_peer(&speaker.speaker, IpAddr::V4(PEER_IP), "Established", |s| {
        s.state == PeerState::Established
    });
    assert_eq!(status.established_transitions, 1);
}

#[test]
fn collision_keeps_our_connection_when_our_identifier_is_higher() {
    let (speaker, _sns, _pns, mut theirs, mut ours) =
        collide(Ipv4Addr::new(10, 99, 99, 99), "spcol");
    let n = ours.expect_notification();
    assert_eq!(
        (n.code, n.subcode),
        (6, 7),
        "Cease/7 on the peer's connection"
    );
    assert_eq!(theirs.next(), Some(Message::Keepalive));
    theirs.send_message(Message::Keepalive);
    let status = wait_peer(&speaker.speaker, IpAddr::V4(PEER_IP), "Established", |s| {
        s.state == PeerState::Established
    });
    assert_eq!(status.established_transitions, 1);
}

#[test]
fn route_refresh_resends_the_adj_rib_out() {
    let (speaker_ns, peer_ns) = two_namespaces("sprr");
    let mut cfg = SpeakerConfig::new(SPEAKER_AS, SPEAKER_IP);
    let mut peer = PeerConfig::new(IpAddr::V4(PEER_IP), PEER_AS);
    peer.passive = true;
    cfg.peers.push(peer);
    let speaker = NsSpeaker::start(&speaker_ns, cfg);
    let block = net("10.244.3.0/26");
    block_on(speaker.speaker.originate(block, support::local_attrs())).unwrap();

    let mut s = Scripted::new(connect_from(&peer_ns));
    s.establish(PEER_AS, 30);
    let announces = |m: &Message| match m {
        Message::Update(u) => u.nlri.iter().any(|n| n.prefix == block),
        _ => false,
    };
    let mut saw_eor = false;
    let mut saw_block = false;
    while !(saw_eor && saw_block) {
        let m = s.next().expect("message");
        saw_block |= announces(&m);
        if let Message::Update(u) = &m {
            // End-of-RIB comes after the initial table.
            if u.end_of_rib_family() == Some(Family::IPV4_UNICAST) {
                assert!(saw_block, "End-of-RIB before the table");
                saw_eor = true;
            }
        }
    }
    s.send_message(Message::RouteRefresh(RouteRefresh::request(
        Family::IPV4_UNICAST,
    )));
    loop {
        let m = s.next().expect("message");
        if announces(&m) {
            break;
        }
    }
    let status = block_on(speaker.speaker.peers()).unwrap();
    assert_eq!(status[0].prefixes_advertised, 1);
}
