//! One task per neighbour: it owns the FSM of each transport connection to
//! the neighbour (two while a collision is being resolved), their TCP
//! streams and their timers.
//!
//! Only I/O lives here. The FSM ([`crate::fsm`]) and the session layer
//! ([`crate::session`]) are sans-IO and decide; this task executes:
//! `Connect` spawns a connection attempt, `StartTimer` records a deadline
//! that the task's `select!` sleeps until (the expiry goes back in as the
//! FSM event), `Send*` encode with the session's context and queue on the
//! connection's writer. Reading is done by a small task per connection that
//! only frames bytes into whole messages (`conn.rs`); [`session::inbound`]
//! decodes them with the context the OPEN exchange negotiated.
//!
//! Collision detection (RFC 4271 §6.8): a connection arriving while the main
//! one is past Active gets its own FSM ([`session::incoming_connection`]).
//! When either receives an OPEN while the other has one too,
//! [`session::decide_open`] names the loser, which is sent Cease/7 and
//! dropped.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, info_span, warn, Instrument};

use super::config::PeerConfig;
use super::conn::{Conn, Frame};
use super::core::Input;
use super::socket;
use crate::fsm::{Action, DownReason, Event, Fsm, FsmConfig, State, TimerKind};
use crate::packet::{
    DecodeContext, EncodeContext, Family, Message, Negotiated, Open, Update, UpdateOutcome,
};
use crate::rib::UpdateBatch;
use crate::session::{
    self, decide_open, describe, our_open, ConnectionOrigin, ConnectionView, Inbound,
    IncomingDecision, OpenDecision, Outgoing, ReceivedUpdate, SessionEvent,
};

type PeerFsm = Fsm<Negotiated, ReceivedUpdate>;

/// What the peer task tells the core.
#[derive(Debug)]
pub(crate) enum PeerEvent {
    State(State),
    Established {
        session: u64,
        negotiated: Negotiated,
        local: SocketAddr,
    },
    Update {
        session: u64,
        update: Box<Update>,
        outcome: UpdateOutcome,
        /// Held until the core has applied the UPDATE (see [`UPDATES_IN_FLIGHT`]).
        permit: Option<OwnedSemaphorePermit>,
    },
    RouteRefresh {
        session: u64,
        family: Family,
    },
    Down {
        session: u64,
        reason: DownReason,
    },
    Error(String),
}

/// What the peer task is told.
#[derive(Debug)]
pub(crate) enum PeerInput {
    /// A connection from the neighbour, accepted by the listener.
    Incoming(TcpStream),
    /// Advertise these changes on session `session` (if still up), then
    /// End-of-RIB for `end_of_rib`.
    Send {
        session: u64,
        batches: Vec<UpdateBatch>,
        end_of_rib: Vec<Family>,
    },
    /// Administrative shutdown: Cease/2 with this communication, then the
    /// task ends.
    Stop { communication: String },
    Connected {
        attempt: u64,
        result: io::Result<TcpStream>,
    },
    /// BFD says the neighbour is unreachable.
    FailureDetected,
    /// The import filter changed and routes it kept out may now be
    /// wanted: ask for everything again (ROUTE-REFRESH), or restart the
    /// session when the neighbour cannot refresh.
    AskRefresh,
    /// The neighbour went past its prefix limit: Cease "Maximum Number of
    /// Prefixes Reached"; with `disable`, no automatic restart after it.
    PrefixLimit { disable: bool },
}

/// Messages read but not yet handled, per peer. Bounded so that a peer
/// sending faster than we process waits in TCP flow control instead of
/// growing our memory.
const FRAME_QUEUE: usize = 256;

/// Decoded UPDATEs a peer task may have handed to the core and not yet seen
/// applied. The peer task reads no further frame until one is applied, so a
/// peer sending faster than the RIB applies waits in TCP flow control
/// instead of a table's worth of decoded UPDATEs (28 bytes a prefix) piling
/// up in the core's queue, which set the peak memory of a full-table load.
const UPDATES_IN_FLIGHT: usize = 4;

/// The running task of one peer.
#[derive(Debug)]
pub(crate) struct PeerHandle {
    pub(crate) input: mpsc::UnboundedSender<PeerInput>,
    pub(crate) task: JoinHandle<()>,
}

/// Starts the task of `config`; its events go to `core` tagged with
/// `instance`.
pub(crate) fn spawn(
    config: PeerConfig,
    local_asn: u32,
    router_id: Ipv4Addr,
    instance: u64,
    core: mpsc::UnboundedSender<Input>,
) -> PeerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let span = info_span!("bgp_peer", peer = %config.address);
    let (frames_tx, frames_rx) = mpsc::channel(FRAME_QUEUE);
    let peer = PeerTask::new(
        config,
        local_asn,
        router_id,
        instance,
        core,
        tx.clone(),
        frames_tx,
    );
    let task = tokio::spawn(peer.run(rx, frames_rx).instrument(span));
    PeerHandle { input: tx, task }
}

struct Session {
    id: u64,
    origin: ConnectionOrigin,
    fsm: PeerFsm,
    conn: Option<Conn>,
    /// Outgoing attempt in flight.
    connecting: Option<(u64, JoinHandle<()>)>,
    deadlines: [Option<Instant>; TimerKind::ALL.len()],
    decode: DecodeContext,
    encode: EncodeContext,
    /// The peer's OPEN was accepted on this connection.
    peer_id: Option<Ipv4Addr>,
}

struct PeerTask {
    config: PeerConfig,
    speaker_asn: u32,
    fsm_config: FsmConfig,
    our_open: Open,
    instance: u64,
    core: mpsc::UnboundedSender<Input>,
    me: mpsc::UnboundedSender<PeerInput>,
    frames: mpsc::Sender<Frame>,
    /// `sessions[0]` is the main one; a second exists during a collision.
    sessions: Vec<Session>,
    next_id: u64,
    /// The id of the session last reported Established to the core.
    established: Option<u64>,
    reported_state: State,
    /// UPDATEs in flight to the core, and the permit for the next one.
    in_flight: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl PeerTask {
    fn new(
        config: PeerConfig,
        speaker_asn: u32,
        router_id: Ipv4Addr,
        instance: u64,
        core: mpsc::UnboundedSender<Input>,
        me: mpsc::UnboundedSender<PeerInput>,
        frames: mpsc::Sender<Frame>,
    ) -> Self {
        let local_asn = config.local_asn.unwrap_or(speaker_asn);
        let mut fsm_config = FsmConfig::new(local_asn, router_id);
        fsm_config.peer_asn = Some(config.remote_asn);
        fsm_config.hold_time = config.hold_time;
        fsm_config.keepalive_time = config.keepalive;
        fsm_config.connect_retry = config.connect_retry;
        fsm_config.passive = config.passive;
        fsm_config.idle_hold = Duration::from_secs(1);
        // Restart at least as often as the configured connect retry, so a
        // peer that was down for a while is picked up promptly.
        fsm_config.max_idle_hold = config.connect_retry.max(Duration::from_secs(1));
        let our_open = our_open(&config.open_offer(local_asn, router_id));
        Self {
            config,
            speaker_asn,
            fsm_config,
            our_open,
            instance,
            core,
            me,
            frames,
            sessions: Vec::new(),
            next_id: 1,
            established: None,
            reported_state: State::Idle,
            in_flight: Arc::new(Semaphore::new(UPDATES_IN_FLIGHT)),
            permit: None,
        }
    }

    fn report(&self, event: PeerEvent) {
        let _ = self.core.send(Input::Peer {
            address: self.config.address,
            instance: self.instance,
            event,
        });
    }

    fn new_session(&mut self, origin: ConnectionOrigin) -> Session {
        let id = self.next_id;
        self.next_id += 1;
        Session {
            id,
            origin,
            fsm: Fsm::new(self.fsm_config.clone()),
            conn: None,
            connecting: None,
            deadlines: [None; TimerKind::ALL.len()],
            decode: DecodeContext::default(),
            encode: EncodeContext::default(),
            peer_id: None,
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<PeerInput>,
        mut frames: mpsc::Receiver<Frame>,
    ) {
        let session = self.new_session(ConnectionOrigin::Local);
        self.sessions.push(session);
        self.process(0, Event::ManualStart);
        loop {
            let deadline = self
                .sessions
                .iter()
                .flat_map(|s| s.deadlines.iter().flatten())
                .min()
                .copied();
            let input = tokio::select! {
                input = rx.recv() => input,
                // A frame may be an UPDATE for the core: read one only with
                // a permit in hand.
                permit = acquire(&self.in_flight), if self.permit.is_none() => {
                    self.permit = Some(permit);
                    continue;
                }
                Some(Frame { conn, frame }) = frames.recv(), if self.permit.is_some() => {
                    self.frame(conn, frame);
                    continue;
                }
                () = sleep_until(deadline) => {
                    self.fire_timers();
                    continue;
                }
            };
            let Some(input) = input else { break };
            match input {
                PeerInput::Stop { communication } => {
                    self.stop(communication).await;
                    break;
                }
                other => self.handle(other),
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        for s in &mut self.sessions {
            for kind in TimerKind::ALL {
                let slot = &mut s.deadlines[kind.index()];
                if slot.is_some_and(|d| d <= now) {
                    *slot = None;
                    due.push((s.id, kind));
                }
            }
        }
        for (id, kind) in due {
            if let Some(i) = self.index_of(id) {
                self.process(i, kind.expiry());
            }
        }
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.sessions.iter().position(|s| s.id == id)
    }

    fn conn_index(&self, conn: u64) -> Option<usize> {
        self.sessions
            .iter()
            .position(|s| s.conn.as_ref().is_some_and(|c| c.id == conn))
    }

    fn handle(&mut self, input: PeerInput) {
        match input {
            PeerInput::Incoming(stream) => self.incoming(stream),
            PeerInput::Connected { attempt, result } => {
                let Some(i) = self
                    .sessions
                    .iter()
                    .position(|s| s.connecting.as_ref().is_some_and(|(a, _)| *a == attempt))
                else {
                    // A late result of an attempt that was given up.
                    return;
                };
                self.sessions[i].connecting = None;
                match result {
                    Ok(stream) => {
                        self.attach(i, stream);
                        self.process(i, Event::TcpConnectionAcknowledged);
                    }
                    Err(error) => {
                        let text = format!(
                            "connect to {}:{}: {error}",
                            self.config.address, self.config.port
                        );
                        debug!(%error, "connection attempt failed");
                        self.report(PeerEvent::Error(text));
                        self.process(i, Event::TcpConnectionFails);
                    }
                }
            }
            PeerInput::Send {
                session,
                batches,
                end_of_rib,
            } => self.send_batches(session, batches, end_of_rib),
            PeerInput::Stop { .. } => {}
            PeerInput::FailureDetected => {
                for i in (0..self.sessions.len()).rev() {
                    if i < self.sessions.len() {
                        self.process(i, Event::PeerFailureDetected);
                    }
                }
            }
            PeerInput::AskRefresh => {
                let Some(i) = (0..self.sessions.len())
                    .find(|i| self.sessions[*i].fsm.state() == State::Established)
                else {
                    return;
                };
                let Some(negotiated) = self.sessions[i]
                    .fsm
                    .session()
                    .map(|e| e.capabilities.clone())
                else {
                    return;
                };
                let requests = session::refresh_requests(&negotiated);
                if requests.is_empty() {
                    info!("import filter changed and the peer has no route refresh: restarting the session");
                    let cease = crate::packet::Notification::new(
                        crate::fsm::code::CEASE,
                        crate::fsm::subcode::OTHER_CONFIGURATION_CHANGE,
                    );
                    self.process(i, Event::AutomaticStop(cease));
                } else {
                    debug!("import filter changed: asking the peer for its routes again");
                    for request in requests {
                        self.send_message(i, &crate::packet::Message::RouteRefresh(request));
                    }
                }
            }
            PeerInput::PrefixLimit { disable } => {
                let cease = crate::packet::Notification::new(
                    crate::fsm::code::CEASE,
                    crate::fsm::subcode::MAX_PREFIXES,
                );
                for i in (0..self.sessions.len()).rev() {
                    if i < self.sessions.len() {
                        self.process(i, Event::AutomaticStop(cease.clone()));
                    }
                }
                if disable {
                    // Idle now: a stop there only cancels the restart.
                    self.process(
                        0,
                        Event::ManualStop {
                            communication: None,
                        },
                    );
                }
            }
        }
    }

    fn frame(&mut self, conn: u64, frame: Option<Bytes>) {
        let Some(i) = self.conn_index(conn) else {
            return;
        };
        match frame {
            Some(frame) => self.message(i, &frame),
            None => {
                debug!("connection closed by the peer");
                if let Some(c) = self.sessions[i].conn.take() {
                    drop(c.close());
                }
                self.process(i, Event::TcpConnectionFails);
            }
        }
    }

    /// A connection the neighbour opened.
    fn incoming(&mut self, stream: TcpStream) {
        // GTSM on an accepted connection: the handshake is behind us, but
        // every segment from here on is checked. Without it, the default
        // TTL again (the listener's 255 is for GTSM neighbours' SYN-ACKs).
        {
            use std::os::fd::AsRawFd;
            let ipv6 = self.config.address.is_ipv6();
            let set = match self.config.ttl_security {
                Some(hops) => socket::set_gtsm(stream.as_raw_fd(), ipv6, hops),
                None => socket::reset_ttl(stream.as_raw_fd(), ipv6),
            };
            if let Err(error) = set {
                warn!(%error, "cannot set the TTL of an incoming connection; closed");
                return;
            }
        }
        let main = &self.sessions[0];
        let decision = session::incoming_connection(
            main.fsm.state(),
            main.fsm.is_timer_running(TimerKind::IdleHold),
            main.connecting.is_some(),
            self.sessions.len(),
        );
        match decision {
            IncomingDecision::Refuse(why) => debug!(why, "incoming connection refused"),
            IncomingDecision::TakeOverMain | IncomingDecision::RestartMainOverIt => {
                if decision == IncomingDecision::RestartMainOverIt {
                    self.sessions[0].deadlines[TimerKind::IdleHold.index()] = None;
                    self.process(0, Event::IdleHoldTimerExpired);
                }
                let s = &mut self.sessions[0];
                // Our own attempt is no longer needed.
                if let Some((_, task)) = s.connecting.take() {
                    task.abort();
                }
                s.origin = ConnectionOrigin::Remote;
                if let Some(old) = s.conn.take() {
                    drop(old.close());
                }
                self.attach(0, stream);
                self.process(0, Event::TcpConnectionConfirmed);
            }
            IncomingDecision::Second => {
                let mut session = self.new_session(ConnectionOrigin::Remote);
                // Started actively so that, should it win, later restarts
                // dial out as the configuration says; the connection is
                // already here, so its Connect request is dropped.
                let actions = session.fsm.process(Event::ManualStart);
                self.sessions.push(session);
                let i = self.sessions.len() - 1;
                let actions = actions
                    .into_iter()
                    .filter(|a| !matches!(a, Action::Connect))
                    .collect();
                self.execute(i, actions);
                self.attach(i, stream);
                self.process(i, Event::TcpConnectionConfirmed);
            }
        }
    }

    fn attach(&mut self, i: usize, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let id = self.next_id;
        self.next_id += 1;
        let conn = Conn::open(stream, id, self.frames.clone());
        let s = &mut self.sessions[i];
        s.decode = DecodeContext::default();
        s.encode = EncodeContext::default();
        s.peer_id = None;
        s.conn = Some(conn);
    }

    fn message(&mut self, i: usize, frame: &[u8]) {
        let s = &self.sessions[i];
        let negotiated = s.fsm.session().map(|e| &e.capabilities);
        match session::inbound(frame, &s.decode, s.fsm.state(), negotiated) {
            Inbound::Fsm(event) => self.process(i, event),
            Inbound::Malformed(error, event) => {
                warn!(%error, "malformed message from peer");
                self.process(i, event);
            }
            Inbound::Notification(n, event) => {
                let text = format!("received NOTIFICATION {}", describe(&n));
                warn!("{text}");
                self.report(PeerEvent::Error(text));
                self.process(i, event);
            }
            Inbound::Open(open) => self.open(i, open),
            Inbound::RouteRefresh(family) => {
                debug!(%family, "ROUTE-REFRESH received");
                self.report(PeerEvent::RouteRefresh {
                    session: self.sessions[i].id,
                    family,
                });
            }
            Inbound::Ignored(why) => debug!(why, "message ignored"),
        }
    }

    fn view(&self, i: usize) -> ConnectionView {
        let s = &self.sessions[i];
        ConnectionView {
            state: s.fsm.state(),
            open_accepted: s.peer_id.is_some(),
            origin: s.origin,
        }
    }

    fn open(&mut self, i: usize, open: Open) {
        let other = (self.sessions.len() > 1).then(|| self.view(1 - i));
        let decision = decide_open(
            &self.our_open,
            &open,
            self.config.remote_asn,
            self.fsm_config.local_id,
            self.view(i),
            other,
        );
        match decision {
            OpenDecision::Refuse(error) => self.process(i, Event::from_negotiation(Err(error))),
            OpenDecision::Accept(negotiated) => self.accept_open(i, negotiated),
            OpenDecision::CloseThis => self.process(i, Event::OpenCollisionDump),
            OpenDecision::CloseOtherThenAccept(negotiated) => {
                let id = self.sessions[i].id;
                self.process(1 - i, Event::OpenCollisionDump);
                if let Some(survivor) = self.index_of(id) {
                    self.accept_open(survivor, negotiated);
                }
            }
        }
    }

    fn accept_open(&mut self, i: usize, negotiated: Negotiated) {
        let s = &mut self.sessions[i];
        s.decode = negotiated.decode_context();
        s.encode = negotiated.encode_context();
        if let Some(conn) = &s.conn {
            conn.max_message
                .store(s.decode.max_message_size, Ordering::Relaxed);
        }
        s.peer_id = Some(negotiated.peer_bgp_id);
        self.process(i, Event::from_negotiation(Ok(negotiated)));
    }

    /// Forget a session that lost a collision (its connection is closing).
    fn drop_session(&mut self, i: usize) {
        let mut s = self.sessions.remove(i);
        if let Some((_, task)) = s.connecting.take() {
            task.abort();
        }
        if let Some(c) = s.conn.take() {
            drop(c.close());
        }
        if self.sessions.is_empty() {
            // Cannot happen (only called with two), but keep an FSM around.
            let fresh = self.new_session(ConnectionOrigin::Local);
            self.sessions.push(fresh);
        }
    }

    fn process(&mut self, i: usize, event: SessionEvent) {
        let actions = self.sessions[i].fsm.process(event);
        self.execute(i, actions);
        // With two connections, one that went Idle (lost the collision or
        // failed) is forgotten and the other carries on as the main one.
        if self.sessions.len() > 1 {
            if let Some(idle) = self
                .sessions
                .iter()
                .position(|s| s.fsm.state() == State::Idle)
            {
                self.drop_session(idle);
            }
        }
        self.report_state();
    }

    fn report_state(&mut self) {
        let state = self.sessions[0].fsm.state();
        if state != self.reported_state {
            self.reported_state = state;
            self.report(PeerEvent::State(state));
        }
    }

    fn send_message(&mut self, i: usize, message: &Message) {
        let s = &self.sessions[i];
        let Some(conn) = &s.conn else { return };
        match message.to_bytes(&s.encode) {
            Ok(bytes) => {
                let _ = conn.writer.send(bytes);
            }
            Err(error) => warn!(%error, "cannot encode message"),
        }
    }

    fn execute(&mut self, i: usize, actions: Vec<Action<Negotiated, ReceivedUpdate>>) {
        for action in actions {
            match action {
                Action::Connect => self.connect(i),
                Action::Disconnect => {
                    let s = &mut self.sessions[i];
                    if let Some((_, task)) = s.connecting.take() {
                        task.abort();
                    }
                    if let Some(c) = s.conn.take() {
                        drop(c.close());
                    }
                }
                Action::SendOpen => {
                    let open = Message::Open(self.our_open.clone());
                    self.send_message(i, &open);
                }
                Action::SendKeepalive => self.send_message(i, &Message::Keepalive),
                Action::SendNotification(n) => {
                    let text = format!("sent NOTIFICATION {}", describe(&n));
                    warn!("{text}");
                    self.report(PeerEvent::Error(text));
                    self.send_message(i, &Message::Notification(n));
                }
                Action::StartTimer { kind, duration } => {
                    let duration = session::jittered(kind, duration, fastrand::f64());
                    self.sessions[i].deadlines[kind.index()] = Some(Instant::now() + duration);
                }
                Action::StopTimer { kind } => {
                    self.sessions[i].deadlines[kind.index()] = None;
                }
                Action::StateChanged { from, to } => {
                    debug!(%from, %to, session = self.sessions[i].id, "state change");
                }
                Action::SessionEstablished(established) => {
                    let s = &self.sessions[i];
                    let local =
                        s.conn.as_ref().map(|c| c.local).unwrap_or_else(|| {
                            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
                        });
                    info!(
                        peer_id = %established.peer_id,
                        hold = established.hold_time.as_secs(),
                        families = ?established.capabilities.families,
                        "session established"
                    );
                    self.established = Some(s.id);
                    self.report(PeerEvent::Established {
                        session: s.id,
                        negotiated: established.capabilities,
                        local,
                    });
                }
                Action::SessionDown { reason } => {
                    info!(?reason, "session down");
                    let id = self.sessions[i].id;
                    if self.established == Some(id) {
                        self.established = None;
                    }
                    self.report(PeerEvent::Down {
                        session: id,
                        reason,
                    });
                }
                Action::DeliverUpdate((update, outcome)) => {
                    let session = self.sessions[i].id;
                    let permit = self.permit.take();
                    self.report(PeerEvent::Update {
                        session,
                        update: Box::new(update),
                        outcome,
                        permit,
                    });
                }
            }
        }
    }

    fn connect(&mut self, i: usize) {
        let attempt = self.next_id;
        self.next_id += 1;
        let target = SocketAddr::new(self.config.address, self.config.port);
        let source = self.config.source_address;
        let password = self.config.md5_password.clone();
        let gtsm = self.config.ttl_security;
        let me = self.me.clone();
        debug!(%target, "connecting");
        let task = tokio::spawn(
            async move {
                let result = socket::connect(target, source, password.as_deref(), gtsm).await;
                let _ = me.send(PeerInput::Connected { attempt, result });
            }
            .in_current_span(),
        );
        let s = &mut self.sessions[i];
        if let Some((_, old)) = s.connecting.replace((attempt, task)) {
            old.abort();
        }
        s.origin = ConnectionOrigin::Local;
    }

    fn send_batches(&mut self, session: u64, batches: Vec<UpdateBatch>, end_of_rib: Vec<Family>) {
        let Some(i) = self.index_of(session) else {
            return;
        };
        let s = &self.sessions[i];
        if s.fsm.state() != State::Established {
            return;
        }
        let Some(conn) = &s.conn else { return };
        let Some(negotiated) = s.fsm.session().map(|e| &e.capabilities) else {
            return;
        };
        let messages = session::outgoing_updates(
            batches,
            end_of_rib,
            negotiated,
            &s.encode,
            Outgoing {
                speaker_asn: self.speaker_asn,
                local_asn: self.config.local_asn,
                remote_asn: self.config.remote_asn,
            },
        );
        if !messages.is_empty() {
            debug!(messages = messages.len(), "sending UPDATEs");
        }
        for m in messages {
            let _ = conn.writer.send(m);
        }
    }

    async fn stop(&mut self, communication: String) {
        let mut writers = Vec::new();
        for i in 0..self.sessions.len() {
            let actions = self.sessions[i].fsm.process(Event::ManualStop {
                communication: Some(communication.clone()),
            });
            // Execute everything but the disconnect, whose writer we await.
            for action in actions {
                match action {
                    Action::Disconnect => {}
                    other => self.execute(i, vec![other]),
                }
            }
            let s = &mut self.sessions[i];
            if let Some((_, task)) = s.connecting.take() {
                task.abort();
            }
            if let Some(c) = s.conn.take() {
                writers.push(c.close());
            }
        }
        self.report_state();
        for w in writers {
            // Give the NOTIFICATION a moment to reach the wire.
            let _ = tokio::time::timeout(Duration::from_secs(2), w).await;
        }
    }
}

async fn acquire(semaphore: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    match Arc::clone(semaphore).acquire_owned().await {
        Ok(permit) => permit,
        Err(_) => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
