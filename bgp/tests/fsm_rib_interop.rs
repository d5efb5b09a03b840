//! The FSM and the RIB against real BIRD, FRR and GoBGP, in network namespaces.
//!
//! A minimal blocking, single-threaded session driver (the job
//! `brindle-bgpd`'s tokio speaker does for real) runs one sans-IO [`Fsm`] per
//! peer over real TCP connections from inside one host's namespace: it
//! executes the FSM's actions (connect, send, timers), turns decoded messages
//! into events, feeds UPDATEs into one [`Rib`] and writes the RIB's pending
//! advertisements to the peers they are for.
//!
//! * With BIRD (eBGP): the session reaches Established, routes flow both ways
//!   (BIRD's static route into our Loc-RIB, our originated route into BIRD
//!   with next hop self), keepalives keep the session up past the hold time,
//!   and ManualStop's Cease/2 with a shutdown communication reaches BIRD.
//! * With FRR (eBGP): routes both ways, and FRR sees the shutdown.
//! * With two GoBGP route-reflector clients (iBGP): a route one client
//!   announces reaches the other with ORIGINATOR_ID, our CLUSTER_LIST and its
//!   next hop unchanged, and is not sent back to its source.
//!
//! Needs root (namespaces). Everything created is owned by testbed handles
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
use brindle_testbed::{
    bird_protocol_name, hosts_on_two_subnets, poll_until, two_hosts_one_subnet, BgpConfig, Bird,
    Frr, Gobgp, Neighbor,
};
use bytes::BytesMut;
use ipnet::IpNet;
use nix::sched::{setns, CloneFlags};
use serde_json::Value;

const HOLD_TIME: u16 = 9;
const TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_MESSAGE: &str = "brindle fsm test done";

type SessionEvent = Event<Negotiated, (Update, UpdateOutcome)>;
type SessionAction = Action<Negotiated, (Update, UpdateOutcome)>;

/// What the driver tells the test.
#[derive(Debug)]
enum Report {
    Route {
        prefix: IpNet,
        next_hops: Vec<IpAddr>,
    },
    KeepaliveSent {
        peer: IpAddr,
        count: usize,
    },
}

/// A peer for the driver to open a session with.
#[derive(Debug, Clone)]
struct PeerSpec {
    address: Ipv4Addr,
    asn: u32,
    rr_client: bool,
}

struct Session {
    spec: PeerSpec,
    fsm: Fsm<Negotiated, (Update, UpdateOutcome)>,
    our_open: Open,
    stream: Option<TcpStream>,
    inbox: Vec<u8>,
    timers: HashMap<TimerKind, Instant>,
    events: VecDeque<SessionEvent>,
    decode_ctx: DecodeContext,
    encode_ctx: EncodeContext,
    keepalives_sent: usize,
    states: Vec<State>,
}

impl Session {
    fn new(local_asn: u32, our_ip: Ipv4Addr, spec: PeerSpec) -> Self {
        let mut config = FsmConfig::new(local_asn, our_ip);
        config.peer_asn = Some(spec.asn);
        config.hold_time = HOLD_TIME;
        config.connect_retry = Duration::from_secs(2);
        let our_open = Open {
            version: 4,
            asn: local_asn,
            hold_time: HOLD_TIME,
            bgp_id: our_ip,
            capabilities: vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
                Capability::FourOctetAs(local_asn),
            ],
        };
        let mut events = VecDeque::new();
        events.push_back(Event::ManualStart);
        Self {
            spec,
            fsm: Fsm::new(config),
            our_open,
            stream: None,
            inbox: Vec::new(),
            timers: HashMap::new(),
            events,
            decode_ctx: DecodeContext::default(),
            encode_ctx: EncodeContext::default(),
            keepalives_sent: 0,
            states: Vec::new(),
        }
    }

    fn peer_ip(&self) -> IpAddr {
        IpAddr::V4(self.spec.address)
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
                            Event::from_negotiation(negotiate(&self.our_open, &open, self.spec.asn))
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
                        2 => Event::OpenMessageError(n),
                        3 => Event::UpdateMessageError(n),
                        _ => Event::HeaderError(n),
                    });
                    break;
                }
            }
        }
    }

    fn expire_timers(&mut self) {
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

struct Driver {
    sessions: Vec<Session>,
    rib: Rib,
    our_ip: Ipv4Addr,
    reports: mpsc::Sender<Report>,
}

impl Driver {
    /// Run every session until told to stop (or the test goes away), then
    /// shut them down administratively. Returns each session's states.
    fn run(mut self, control: mpsc::Receiver<()>) -> Vec<Vec<State>> {
        let give_up = Instant::now() + Duration::from_secs(180);
        let mut stopping = false;
        loop {
            for i in 0..self.sessions.len() {
                while let Some(event) = self.sessions[i].events.pop_front() {
                    for action in self.sessions[i].fsm.process(event) {
                        self.execute(i, action);
                    }
                }
            }
            if stopping && self.sessions.iter().all(|s| s.fsm.state() == State::Idle) {
                return self.sessions.into_iter().map(|s| s.states).collect();
            }
            if !stopping
                && (Instant::now() > give_up
                    || !matches!(control.try_recv(), Err(mpsc::TryRecvError::Empty)))
            {
                stopping = true;
                for s in &mut self.sessions {
                    s.events.push_back(Event::ManualStop {
                        communication: Some(SHUTDOWN_MESSAGE.into()),
                    });
                }
                continue;
            }
            let slice = Duration::from_millis(20);
            if self.sessions.iter().all(|s| s.stream.is_none()) {
                thread::sleep(slice);
            }
            for s in &mut self.sessions {
                s.read_for(slice);
                s.expire_timers();
            }
        }
    }

    fn execute(&mut self, i: usize, action: SessionAction) {
        let session = &mut self.sessions[i];
        match action {
            Action::Connect => {
                let peer = SocketAddr::new(session.peer_ip(), 179);
                match TcpStream::connect_timeout(&peer, Duration::from_secs(3)) {
                    Ok(stream) => {
                        stream.set_nodelay(true).expect("nodelay");
                        session.stream = Some(stream);
                        session.inbox.clear();
                        session.events.push_back(Event::TcpConnectionAcknowledged);
                    }
                    Err(_) => session.events.push_back(Event::TcpConnectionFails),
                }
            }
            Action::Disconnect => {
                if let Some(s) = session.stream.take() {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
            Action::SendOpen => session.send(&Message::Open(session.our_open.clone())),
            Action::SendKeepalive => {
                session.send(&Message::Keepalive);
                session.keepalives_sent += 1;
                let _ = self.reports.send(Report::KeepaliveSent {
                    peer: session.peer_ip(),
                    count: session.keepalives_sent,
                });
            }
            Action::SendNotification(n) => session.send(&Message::Notification(n)),
            Action::StartTimer { kind, duration } => {
                session.timers.insert(kind, Instant::now() + duration);
            }
            Action::StopTimer { kind } => {
                session.timers.remove(&kind);
            }
            Action::StateChanged { to, .. } => session.states.push(to),
            Action::SessionEstablished(established) => {
                session.decode_ctx = established.capabilities.decode_context();
                session.encode_ctx = established.capabilities.encode_context();
                let mut peer =
                    PeerConfig::new(session.peer_ip(), established.peer_asn, established.peer_id);
                peer.rr_client = session.spec.rr_client;
                peer.local_v4 = Some(self.our_ip);
                let out = self.rib.peer_up(peer).expect("peer up");
                self.flush(&out.peers_pending);
            }
            Action::SessionDown { .. } => {
                let peer = session.peer_ip();
                let out = self.rib.peer_down(peer).expect("peer known");
                self.flush(&out.peers_pending);
            }
            Action::DeliverUpdate((update, outcome)) => {
                let peer = session.peer_ip();
                let out = self
                    .rib
                    .apply_update(peer, update, &outcome)
                    .expect("peer known");
                for change in out.best_changes {
                    let next_hops = change.best.map(|b| b.next_hops).unwrap_or_default();
                    let _ = self.reports.send(Report::Route {
                        prefix: change.prefix,
                        next_hops,
                    });
                }
                self.flush(&out.peers_pending);
            }
        }
    }

    /// Write the RIB's pending advertisements to the peers they are for.
    fn flush(&mut self, peers: &[IpAddr]) {
        for peer in peers {
            let batches = self.rib.take_updates(*peer).expect("peer known");
            let Some(session) = self.sessions.iter_mut().find(|s| s.peer_ip() == *peer) else {
                continue;
            };
            for batch in batches {
                for message in batch.encode(&session.encode_ctx).expect("encodable") {
                    session.write(&message);
                }
            }
        }
    }
}

/// Start the driver in the namespace at `netns_path`, originating
/// `originate` with next hop self.
fn spawn_driver(
    netns_path: String,
    rib_config: RibConfig,
    our_ip: Ipv4Addr,
    peers: Vec<PeerSpec>,
    originate: Vec<IpNet>,
) -> (
    mpsc::Sender<()>,
    mpsc::Receiver<Report>,
    thread::JoinHandle<Vec<Vec<State>>>,
) {
    let (control_tx, control_rx) = mpsc::channel::<()>();
    let (report_tx, report_rx) = mpsc::channel::<Report>();
    let handle = thread::spawn(move || {
        let netns = File::open(&netns_path).expect("open netns");
        setns(&netns, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
        let local_asn = rib_config.local_asn;
        let mut rib = Rib::new(rib_config);
        rib.originate(&originate, PathAttrs::default());
        let driver = Driver {
            sessions: peers
                .into_iter()
                .map(|spec| Session::new(local_asn, our_ip, spec))
                .collect(),
            rib,
            our_ip,
            reports: report_tx,
        };
        driver.run(control_rx)
    });
    (control_tx, report_rx, handle)
}

#[test]
fn fsm_and_rib_peer_with_bird() {
    const BIRD_AS: u32 = 65001;
    const OUR_AS: u32 = 65002;
    let net = two_hosts_one_subnet().expect("topology");
    let [h0, h1] = &net.hosts;
    let bird = Bird::start(
        &h0.ns,
        &BgpConfig::new(h0.ipv4, BIRD_AS)
            .neighbor(IpAddr::V4(h1.ipv4), OUR_AS)
            .originate("10.10.1.0/24"),
    )
    .expect("bird");
    let (control, reports, driver) = spawn_driver(
        format!("/var/run/netns/{}", h1.ns.name()),
        RibConfig::new(OUR_AS, h1.ipv4),
        h1.ipv4,
        vec![PeerSpec {
            address: h0.ipv4,
            asn: BIRD_AS,
            rr_client: false,
        }],
        vec!["10.10.2.0/24".parse().expect("prefix")],
    );

    bird.wait_neighbor_established(IpAddr::V4(h1.ipv4), TIMEOUT)
        .expect("BIRD sees the session established");
    // Our originated route reached BIRD…
    bird.wait_route("10.10.2.0/24", TIMEOUT)
        .expect("BIRD learned our route");
    // …and BIRD's reached our Loc-RIB with BIRD as next hop; then keepalives
    // keep the session up for longer than the hold time.
    let mut learned = None;
    let mut keepalives = 0;
    let deadline = Instant::now() + TIMEOUT;
    while learned.is_none() || keepalives < 5 {
        let left = deadline.saturating_duration_since(Instant::now());
        match reports.recv_timeout(left).expect("driver reports") {
            Report::Route { prefix, next_hops } if prefix.to_string() == "10.10.1.0/24" => {
                learned = Some(next_hops)
            }
            Report::Route { .. } => {}
            Report::KeepaliveSent { peer, count } => {
                assert_eq!(peer, IpAddr::V4(h0.ipv4));
                keepalives = count
            }
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
    control.send(()).expect("driver alive");
    let states = driver.join().expect("driver finished");
    assert_eq!(
        states,
        vec![vec![
            State::Connect,
            State::OpenSent,
            State::OpenConfirm,
            State::Established,
            State::Idle
        ]]
    );
    let shown = poll_until(TIMEOUT, Duration::from_millis(200), || {
        let text = bird.birdc(&format!("show protocols all {protocol}"))?;
        Ok(text.contains("Administrative shutdown").then_some(text))
    })
    .expect("birdc")
    .unwrap_or_else(|| panic!("BIRD never reported our shutdown:\n{}", bird.log()));
    assert!(shown.contains(SHUTDOWN_MESSAGE), "{shown}");
}

/// The attributes GoBGP holds for `prefix` in its global RIB, as
/// `(next hop, ORIGINATOR_ID, CLUSTER_LIST)` per path.
fn gobgp_paths(gobgp: &Gobgp, prefix: &str) -> Vec<(String, Option<String>, Vec<String>)> {
    let text = gobgp
        .gobgp(&["global", "rib", "-a", "ipv4", "-j"])
        .expect("gobgp rib");
    let rib: Value = serde_json::from_str(&text).expect("gobgp json");
    rib[prefix]
        .as_array()
        .into_iter()
        .flatten()
        .map(|path| {
            let attrs = path["attrs"].as_array().cloned().unwrap_or_default();
            let find = |t: u64| {
                attrs
                    .iter()
                    .find(|a| a["type"].as_u64() == Some(t))
                    .cloned()
            };
            let next_hop = find(3)
                .map(|a| a["nexthop"].as_str().unwrap_or_default().to_string())
                .unwrap_or_default();
            let originator = find(9).and_then(|a| a["value"].as_str().map(str::to_string));
            let clusters = find(10)
                .and_then(|a| a["value"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect();
            (next_hop, originator, clusters)
        })
        .collect()
}

#[test]
fn rib_reflects_between_gobgp_clients() {
    const AS: u32 = 65000;
    let cluster_id = Ipv4Addr::new(10, 255, 255, 1);
    let fabric = hosts_on_two_subnets([2, 1]).expect("topology");
    let [reflector, a, b] = [&fabric.hosts[0], &fabric.hosts[1], &fabric.hosts[2]];
    let client = |host: &brindle_testbed::Host| {
        let mut neighbor = Neighbor::new(IpAddr::V4(reflector.ipv4), AS);
        neighbor.passive = true;
        Gobgp::start(
            &host.ns,
            &BgpConfig::new(host.ipv4, AS).with_neighbor(neighbor),
        )
        .expect("gobgp")
    };
    let (gobgp_a, gobgp_b) = (client(a), client(b));
    let mut rib_config = RibConfig::new(AS, reflector.ipv4);
    rib_config.cluster_id = Some(cluster_id);
    let (control, _reports, driver) = spawn_driver(
        format!("/var/run/netns/{}", reflector.ns.name()),
        rib_config,
        reflector.ipv4,
        [a, b]
            .iter()
            .map(|h| PeerSpec {
                address: h.ipv4,
                asn: AS,
                rr_client: true,
            })
            .collect(),
        vec!["10.30.0.0/24".parse().expect("prefix")],
    );
    for gobgp in [&gobgp_a, &gobgp_b] {
        gobgp
            .wait_neighbor_established(IpAddr::V4(reflector.ipv4), TIMEOUT)
            .expect("client session up");
    }

    gobgp_a.announce("10.20.1.0/24").expect("announce");
    gobgp_b
        .wait_route("10.20.1.0/24", TIMEOUT)
        .expect("reflected to the other client");
    let reflected = gobgp_paths(&gobgp_b, "10.20.1.0/24");
    assert_eq!(
        reflected,
        vec![(
            a.ipv4.to_string(),
            Some(a.ipv4.to_string()),
            vec![cluster_id.to_string()]
        )],
        "next hop unchanged, ORIGINATOR_ID = client A, CLUSTER_LIST = ours"
    );
    // Our own route reaches both clients with next hop self and no
    // reflection attributes.
    for gobgp in [&gobgp_a, &gobgp_b] {
        gobgp
            .wait_route("10.30.0.0/24", TIMEOUT)
            .expect("originated route");
        assert_eq!(
            gobgp_paths(gobgp, "10.30.0.0/24"),
            vec![(reflector.ipv4.to_string(), None, vec![])]
        );
    }
    // A's own route never comes back to it: only its local path exists.
    assert_eq!(gobgp_paths(&gobgp_a, "10.20.1.0/24").len(), 1);

    control.send(()).expect("driver alive");
    let states = driver.join().expect("driver finished");
    for s in states {
        assert_eq!(s.last(), Some(&State::Idle));
        assert!(s.contains(&State::Established));
    }
}

#[test]
fn fsm_and_rib_peer_with_frr() {
    const FRR_AS: u32 = 65003;
    const OUR_AS: u32 = 65002;
    let net = two_hosts_one_subnet().expect("topology");
    let [h0, h1] = &net.hosts;
    let frr = Frr::start(
        &h0.ns,
        &BgpConfig::new(h0.ipv4, FRR_AS)
            .neighbor(IpAddr::V4(h1.ipv4), OUR_AS)
            .originate("10.10.3.0/24"),
    )
    .expect("frr");
    let (control, reports, driver) = spawn_driver(
        format!("/var/run/netns/{}", h1.ns.name()),
        RibConfig::new(OUR_AS, h1.ipv4),
        h1.ipv4,
        vec![PeerSpec {
            address: h0.ipv4,
            asn: FRR_AS,
            rr_client: false,
        }],
        vec!["10.10.4.0/24".parse().expect("prefix")],
    );
    frr.wait_neighbor_established(IpAddr::V4(h1.ipv4), TIMEOUT)
        .expect("FRR sees the session established");
    frr.wait_route("10.10.4.0/24", TIMEOUT)
        .expect("FRR learned our route");
    let deadline = Instant::now() + TIMEOUT;
    let learned = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match reports.recv_timeout(left).expect("driver reports") {
            Report::Route { prefix, next_hops } if prefix.to_string() == "10.10.3.0/24" => {
                break next_hops
            }
            _ => {}
        }
    };
    assert_eq!(learned, vec![IpAddr::V4(h0.ipv4)]);
    control.send(()).expect("driver alive");
    let states = driver.join().expect("driver finished");
    assert_eq!(states[0].last(), Some(&State::Idle));
    // FRR saw the session go down.
    let down = poll_until(TIMEOUT, Duration::from_millis(200), || {
        let state = frr.neighbor_state(IpAddr::V4(h1.ipv4))?;
        Ok((state.as_deref() != Some("Established")).then_some(()))
    })
    .expect("vtysh");
    assert!(down.is_some(), "FRR still thinks the session is up");
}
