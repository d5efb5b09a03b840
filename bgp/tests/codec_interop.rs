//! The codec against real speakers: BIRD, FRR and GoBGP run in a network
//! namespace and connect to a listener in a second namespace (joined with a
//! veth pair). The listener decodes their OPEN, answers with an OPEN encoded
//! by this codec, and must then get KEEPALIVEs and an UPDATE for the prefix
//! the speaker originates — never a NOTIFICATION. That proves both decoding
//! real captures and that real speakers accept what we encode.
//!
//! Needs root (namespaces). Everything is created with unique names and torn
//! down on drop, also when a test panics.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use brindle_bgp::packet::{
    decode_message, negotiate, Capability, DecodeContext, EncodeContext, Family, Message,
    Notification, Open, UpdateOutcome,
};
use brindle_testbed::{veth, BgpConfig, Bird, Frr, Gobgp, Netns};
use nix::sched::{setns, CloneFlags};

const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const OUR_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PEER_AS: u32 = 65010;
const OUR_AS: u32 = 65020;
const PREFIX: &str = "10.99.0.0/24";
/// Upper bound for the whole exchange; a bound, not a measurement.
const DEADLINE: Duration = Duration::from_secs(60);

/// What the listener saw.
struct Capture {
    open_wire: Vec<u8>,
    open: Open,
    messages: Vec<(Message, UpdateOutcome)>,
}

/// Binds port 179 inside `ns` on a thread that joined it, accepts one
/// connection and runs the exchange described in the module docs.
fn listen_in(
    ns: &Netns,
    ready: mpsc::Sender<()>,
) -> std::thread::JoinHandle<Result<Capture, String>> {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        // setns only moves this thread; the rest of the test stays put.
        let file = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
        let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(OUR_ADDR), 179))
            .map_err(|e| format!("bind: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let _ = ready.send(());
        let start = Instant::now();
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if start.elapsed() > DEADLINE {
                        return Err("no connection from the speaker".into());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        exchange(stream, start)
    })
}

fn our_open() -> Open {
    Open {
        version: 4,
        asn: OUR_AS,
        hold_time: 30,
        bgp_id: OUR_ADDR,
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(OUR_AS),
        ],
    }
}

fn exchange(mut stream: TcpStream, start: Instant) -> Result<Capture, String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let mut ctx = DecodeContext::default();
    let mut ectx = EncodeContext::default();
    let mut open: Option<(Vec<u8>, Open)> = None;
    let mut messages = Vec::new();
    let prefix: ipnet::IpNet = PREFIX.parse().unwrap();

    loop {
        if start.elapsed() > DEADLINE {
            return Err(format!("deadline passed; got {messages:?}"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("peer closed; got {messages:?}")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        while let Some(decoded) = decode_message(&buf, &ctx).map_err(|e| format!("decode: {e}"))? {
            let wire: Vec<u8> = buf.drain(..decoded.len).collect();
            match decoded.message {
                Message::Open(peer_open) if open.is_none() => {
                    let local = our_open();
                    let negotiated = negotiate(&local, &peer_open, PEER_AS)
                        .map_err(|e| format!("negotiate: {e}"))?;
                    ctx = negotiated.decode_context();
                    ectx = negotiated.encode_context();
                    let mut reply = Message::Open(local).to_bytes(&ectx).unwrap().to_vec();
                    reply.extend_from_slice(&Message::Keepalive.to_bytes(&ectx).unwrap());
                    stream
                        .write_all(&reply)
                        .map_err(|e| format!("write: {e}"))?;
                    open = Some((wire, peer_open));
                }
                Message::Keepalive => {
                    stream
                        .write_all(&Message::Keepalive.to_bytes(&ectx).unwrap())
                        .map_err(|e| format!("write: {e}"))?;
                    messages.push((Message::Keepalive, decoded.outcome));
                }
                other => messages.push((other, decoded.outcome)),
            }
        }
        let got_route = messages.iter().any(|(m, _)| match m {
            Message::Update(u) => {
                u.nlri.iter().any(|n| n.prefix == prefix)
                    || u.mp_reach
                        .as_ref()
                        .is_some_and(|r| r.nlri.iter().any(|n| n.prefix == prefix))
            }
            _ => false,
        });
        let refused = messages
            .iter()
            .any(|(m, _)| matches!(m, Message::Notification(_)));
        if got_route || refused {
            let bye = Message::Notification(Notification::administrative_shutdown(Some(
                "brindle codec test done",
            )));
            let _ = stream.write_all(&bye.to_bytes(&ectx).unwrap());
            let (open_wire, open) = open.ok_or("no OPEN")?;
            return Ok(Capture {
                open_wire,
                open,
                messages,
            });
        }
    }
}

/// Runs one speaker against the listener and checks the exchange.
fn run_against<S>(tag: &str, start_speaker: impl FnOnce(&Netns, &BgpConfig) -> S) {
    let peer_ns = Netns::new(&format!("cp{tag}")).expect("peer netns");
    let our_ns = Netns::new(&format!("cu{tag}")).expect("listener netns");
    veth(
        &peer_ns,
        "eth0",
        &[&format!("{PEER_ADDR}/30")],
        &our_ns,
        "eth0",
        &[&format!("{OUR_ADDR}/30")],
    )
    .expect("veth");
    let (ready_tx, ready_rx) = mpsc::channel();
    let listener = listen_in(&our_ns, ready_tx);
    ready_rx.recv_timeout(DEADLINE).expect("listener ready");
    let config = BgpConfig::new(PEER_ADDR, PEER_AS)
        .neighbor(IpAddr::V4(OUR_ADDR), OUR_AS)
        .originate(PREFIX);
    let speaker = start_speaker(&peer_ns, &config);
    let capture = listener
        .join()
        .expect("listener thread")
        .unwrap_or_else(|e| panic!("{tag}: {e}"));
    drop(speaker);

    eprintln!("{tag} OPEN: {}", hex::encode(&capture.open_wire));
    let open = &capture.open;
    assert_eq!(open.version, 4);
    assert_eq!(open.asn, PEER_AS);
    assert_eq!(open.bgp_id, PEER_ADDR);
    assert_eq!(open.four_octet_as(), Some(PEER_AS));
    // The decoded OPEN survives our encoder.
    let again = Message::Open(open.clone())
        .to_bytes(&EncodeContext::default())
        .unwrap();
    let decoded = decode_message(&again, &DecodeContext::default())
        .unwrap()
        .unwrap();
    assert_eq!(decoded.message, Message::Open(open.clone()));

    for (message, outcome) in &capture.messages {
        assert!(
            !matches!(message, Message::Notification(_)),
            "{tag} refused our OPEN: {message:?}"
        );
        assert_eq!(outcome, &UpdateOutcome::Ok, "{tag}: {message:?}");
    }
    let update = capture
        .messages
        .iter()
        .find_map(|(m, _)| match m {
            Message::Update(u) if u.announces() => Some(u),
            _ => None,
        })
        .expect("an announcing UPDATE");
    let attrs = &update.attributes;
    assert_eq!(
        attrs.as_path.as_ref().and_then(|p| p.first_asn()),
        Some(PEER_AS),
        "{tag}: {attrs:?}"
    );
    assert!(attrs.origin.is_some());
}

#[test]
fn bird_open_and_update() {
    run_against("bird", |ns, config| Bird::start(ns, config).expect("bird"));
}

#[test]
fn gobgp_open_and_update() {
    run_against("gobgp", |ns, config| {
        Gobgp::start(ns, config).expect("gobgpd")
    });
}

#[test]
fn frr_open_and_update() {
    run_against("frr", |ns, config| Frr::start(ns, config).expect("frr"));
}
