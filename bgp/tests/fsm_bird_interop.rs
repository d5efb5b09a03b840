//! The FSM and the RIB against a real BIRD, in network namespaces.
//!
//! A minimal blocking session driver (the job `brindle-bgpd`'s tokio speaker
//! does for real) runs the sans-IO [`Fsm`] over a real TCP connection from
//! inside host h1's namespace: it executes the FSM's actions (connect, send,
//! timers), turns decoded messages into events, and feeds UPDATEs into a
//! [`Rib`]. BIRD runs in h0. The test proves that the session reaches
//! Established, that routes flow both ways (BIRD's static route into our
//! Loc-RIB, our originated route into BIRD with next hop self), that
//! keepalives keep the session up past the hold time, and that ManualStop's
//! Cease/2 with a shutdown communication reaches BIRD.
//!
//! Needs root (namespaces). Everything it creates is owned by testbed handles
//! that clean up on drop, also on panic; the driver thread stops when the
//! test's control channel goes away.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use brindle_bgp::fsm::{Action, Event, Fsm, FsmConfig, State, TimerKind};
use brindle_bgp::packet::{
    decode_message, negotiate, Capability, DecodeContext, EncodeContext, Family, Message,
    Negotiated, Open, Update, UpdateOutcome,
};
use brindle_bgp::rib::{PathAttrs, PeerConfig, Rib, RibConfig};
use brindle_testbed::{bird_protocol_name, poll_until, two_hosts_one_subnet, BgpConfig, Bird};
use bytes::BytesMut;
use ipnet::IpNet;
use nix::sched::{setns, CloneFlags};

const BIRD_AS: u32 = 65001;
const OUR_AS: u32 = 65002;
const HOLD_TIME: u16 = 9;
const TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_MESSAGE: &str = "brindle fsm test done";

type SessionFsm = Fsm<Negotiated, (Update, UpdateOutcome)>;

/// What the driver tells the test.
#[derive(Debug)]
enum Report {
    Route {
        prefix: IpNet,
        next_hops: Vec<IpAddr>,
    },
    KeepaliveSent(usize),
}

struct Driver {
    fsm: SessionFsm,
    our_ip: Ipv4Addr,
    peer: SocketAddr,
    our_open: Open,
    stream: Option<TcpStream>,
    inbox: Vec<u8>,
    timers: HashMap<TimerKind, Instant>,
    events: VecDeque<Event<Negotiated, (Update, UpdateOutcome)>>,
    decode_ctx: DecodeContext,
    encode_ctx: EncodeContext,
    rib: Rib,
    keepalives_sent: usize,
    states: Vec<State>,
    reports: mpsc::Sender<Report>,
}

impl Driver {
    fn run(mut self, control: mpsc::Receiver<()>) -> Vec<State> {
        self.events.push_back(Event::ManualStart);
        let give_up = Instant::now() + Duration::from_secs(180);
        let mut stopping = false;
        loop {
            while let Some(event) = self.events.pop_front() {
                for action in self.fsm.process(event) {
                    self.execute(action);
                }
            }
            if stopping && self.fsm.state() == State::Idle {
                return self.states;
            }
            if !stopping
                && (Instant::now() > give_up
                    || !matches!(control.try_recv(), Err(mpsc::TryRecvError::Empty)))
            {
                // Asked to stop, or the test went away.
                stopping = true;
                self.events.push_back(Event::ManualStop {
                    communication: Some(SHUTDOWN_MESSAGE.into()),
                });
                continue;
            }
            self.read_for(Duration::from_millis(50));
            let now = Instant::now();
            let expired: Vec<TimerKind> = self
                .timers
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(k, _)| *k)
                .collect();
            for kind in expired {
                self.timers.remove(&kind);
                self.events.push_back(match kind {
                    TimerKind::ConnectRetry => Event::ConnectRetryTimerExpired,
                    TimerKind::Hold => Event::HoldTimerExpired,
                    TimerKind::Keepalive => Event::KeepaliveTimerExpired,
                    TimerKind::DelayOpen => Event::DelayOpenTimerExpired,
                    TimerKind::IdleHold => Event::IdleHoldTimerExpired,
                });
            }
        }
    }

    fn execute(&mut self, action: Action<Negotiated, (Update, UpdateOutcome)>) {
        match action {
            Action::Connect => match TcpStream::connect_timeout(&self.peer, Duration::from_secs(3))
            {
                Ok(stream) => {
                    stream.set_nodelay(true).expect("nodelay");
                    self.stream = Some(stream);
                    self.inbox.clear();
                    self.events.push_back(Event::TcpConnectionAcknowledged);
                }
                Err(_) => self.events.push_back(Event::TcpConnectionFails),
            },
            Action::Disconnect => {
                if let Some(s) = self.stream.take() {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
            Action::SendOpen => self.send(&Message::Open(self.our_open.clone())),
            Action::SendKeepalive => {
                self.send(&Message::Keepalive);
                self.keepalives_sent += 1;
                let _ = self
                    .reports
                    .send(Report::KeepaliveSent(self.keepalives_sent));
            }
            Action::SendNotification(n) => self.send(&Message::Notification(n.into())),
            Action::StartTimer { kind, duration } => {
                self.timers.insert(kind, Instant::now() + duration);
            }
            Action::StopTimer { kind } => {
                self.timers.remove(&kind);
            }
            Action::StateChanged { to, .. } => self.states.push(to),
            Action::SessionEstablished(session) => {
                self.decode_ctx = session.capabilities.decode_context();
                self.encode_ctx = session.capabilities.encode_context();
                let mut peer = PeerConfig::new(self.peer.ip(), session.peer_asn, session.peer_id);
                peer.local_v4 = Some(self.our_ip);
                self.rib.peer_up(peer).expect("peer up");
                let local = PathAttrs::default();
                self.rib
                    .originate(&["10.10.2.0/24".parse().expect("prefix")], local);
                self.flush();
            }
            Action::SessionDown { .. } => {
                self.rib.peer_down(self.peer.ip()).expect("peer known");
            }
            Action::DeliverUpdate((update, outcome)) => {
                let out = self
                    .rib
                    .apply_update(self.peer.ip(), update, &outcome)
                    .expect("peer known");
                for change in out.best_changes {
                    let next_hops = change.best.map(|b| b.next_hops).unwrap_or_default();
                    let _ = self.reports.send(Report::Route {
                        prefix: change.prefix,
                        next_hops,
                    });
                }
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        for batch in self.rib.take_updates(self.peer.ip()).expect("peer known") {
            for message in batch.encode(&self.encode_ctx).expect("encodable") {
                self.write(&message);
            }
        }
    }

    fn send(&mut self, message: &Message) {
        let mut buf = BytesMut::new();
        message
            .encode(&self.encode_ctx, &mut buf)
            .expect("encodable");
        self.write(&buf);
    }

    fn write(&mut self, bytes: &[u8]) {
        let failed = match self.stream.as_mut() {
            Some(s) => s.write_all(bytes).is_err(),
            None => false,
        };
        if failed {
            self.events.push_back(Event::TcpConnectionFails);
        }
    }

    /// Wait up to `timeout` for bytes and turn whole messages into events.
    fn read_for(&mut self, timeout: Duration) {
        let Some(stream) = self.stream.as_mut() else {
            thread::sleep(timeout);
            return;
        };
        stream.set_read_timeout(Some(timeout)).expect("timeout");
        let mut chunk = [0u8; 65536];
        match stream.read(&mut chunk) {
            Ok(0) => {
                self.stream = None;
                self.events.push_back(Event::TcpConnectionFails);
                return;
            }
            Ok(n) => self.inbox.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return,
            Err(_) => {
                self.stream = None;
                self.events.push_back(Event::TcpConnectionFails);
                return;
            }
        }
        loop {
            match decode_message(&self.inbox, &self.decode_ctx) {
                Ok(None) => break,
                Ok(Some(decoded)) => {
                    self.inbox.drain(..decoded.len);
                    let event = match decoded.message {
                        Message::Open(open) => {
                            Event::from_negotiation(negotiate(&self.our_open, &open, BIRD_AS))
                        }
                        Message::Keepalive => Event::KeepaliveReceived,
                        Message::Update(update) => Event::UpdateReceived((update, decoded.outcome)),
                        Message::Notification(n) if (n.code, n.subcode) == (2, 1) => {
                            Event::NotificationVersionError
                        }
                        Message::Notification(n) => Event::NotificationReceived {
                            code: n.code,
                            subcode: n.subcode,
                        },
                        Message::RouteRefresh(_) => continue,
                    };
                    self.events.push_back(event);
                }
                Err(e) => {
                    let n = e.to_notification();
                    self.inbox.clear();
                    self.events.push_back(match n.code {
                        2 => Event::OpenMessageError(n.into()),
                        3 => Event::UpdateMessageError(n.into()),
                        _ => Event::HeaderError(n.into()),
                    });
                    break;
                }
            }
        }
    }
}

#[test]
fn fsm_and_rib_peer_with_bird() {
    let net = two_hosts_one_subnet().expect("topology");
    let [h0, h1] = &net.hosts;
    let bird = Bird::start(
        &h0.ns,
        &BgpConfig::new(h0.ipv4, BIRD_AS)
            .neighbor(IpAddr::V4(h1.ipv4), OUR_AS)
            .originate("10.10.1.0/24"),
    )
    .expect("bird");

    let (control_tx, control_rx) = mpsc::channel::<()>();
    let (report_tx, report_rx) = mpsc::channel::<Report>();
    let netns_path = format!("/var/run/netns/{}", h1.ns.name());
    let (our_ip, bird_ip) = (h1.ipv4, h0.ipv4);
    let driver = thread::spawn(move || {
        let netns = File::open(&netns_path).expect("open netns");
        setns(&netns, CloneFlags::CLONE_NEWNET).expect("enter h1's namespace");
        let mut fsm_config = FsmConfig::new(OUR_AS, our_ip);
        fsm_config.peer_asn = Some(BIRD_AS);
        fsm_config.hold_time = HOLD_TIME;
        fsm_config.connect_retry = Duration::from_secs(2);
        let our_open = Open {
            version: 4,
            asn: OUR_AS,
            hold_time: HOLD_TIME,
            bgp_id: our_ip,
            capabilities: vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
                Capability::FourOctetAs(OUR_AS),
            ],
        };
        let driver = Driver {
            fsm: Fsm::new(fsm_config),
            our_ip,
            peer: SocketAddr::new(IpAddr::V4(bird_ip), 179),
            our_open,
            stream: None,
            inbox: Vec::new(),
            timers: HashMap::new(),
            events: VecDeque::new(),
            decode_ctx: DecodeContext::default(),
            encode_ctx: EncodeContext::default(),
            rib: Rib::new(RibConfig::new(OUR_AS, our_ip)),
            keepalives_sent: 0,
            states: Vec::new(),
            reports: report_tx,
        };
        driver.run(control_rx)
    });

    bird.wait_neighbor_established(IpAddr::V4(h1.ipv4), TIMEOUT)
        .expect("BIRD sees the session established");
    // Our originated route reached BIRD…
    bird.wait_route("10.10.2.0/24", TIMEOUT)
        .expect("BIRD learned our route");
    let bird_routes = bird.routes().expect("bird routes");
    assert!(
        bird_routes.iter().any(|r| r.contains("10.10.2.0/24")),
        "{bird_routes:?}"
    );
    // …and BIRD's reached our Loc-RIB with BIRD as next hop; then keepalives
    // keep the session up for longer than the hold time.
    let mut learned = None;
    let mut keepalives = 0;
    let deadline = Instant::now() + TIMEOUT;
    while learned.is_none() || keepalives < 5 {
        let left = deadline.saturating_duration_since(Instant::now());
        match report_rx.recv_timeout(left).expect("driver reports") {
            Report::Route { prefix, next_hops } if prefix.to_string() == "10.10.1.0/24" => {
                learned = Some(next_hops)
            }
            Report::Route { .. } => {}
            Report::KeepaliveSent(n) => keepalives = n,
        }
    }
    assert_eq!(learned, Some(vec![IpAddr::V4(h0.ipv4)]));
    let protocol = bird_protocol_name(IpAddr::V4(h1.ipv4));
    let still_up = bird
        .protocols()
        .expect("protocols")
        .into_iter()
        .any(|p| p.name == protocol && p.info.contains("Established"));
    assert!(still_up, "session dropped although keepalives flowed");

    // Administrative shutdown: Cease/2 with our message reaches BIRD.
    control_tx.send(()).expect("driver alive");
    let states = driver.join().expect("driver finished");
    assert_eq!(
        states,
        vec![
            State::Connect,
            State::OpenSent,
            State::OpenConfirm,
            State::Established,
            State::Idle
        ]
    );
    let shown = poll_until(TIMEOUT, Duration::from_millis(200), || {
        let text = bird.birdc(&format!("show protocols all {protocol}"))?;
        Ok(text.contains("Administrative shutdown").then_some(text))
    })
    .expect("birdc")
    .unwrap_or_else(|| panic!("BIRD never reported our shutdown:\n{}", bird.log()));
    assert!(shown.contains(SHUTDOWN_MESSAGE), "{shown}");
}
