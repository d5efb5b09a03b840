//! One task per neighbour: it owns the FSM of each transport connection to
//! the neighbour (two while a collision is being resolved), their TCP
//! streams and their timers.
//!
//! The FSM is sans-IO; this task executes its actions: `Connect` spawns a
//! connection attempt, `StartTimer` records a deadline that the task's
//! `select!` sleeps until (the expiry goes back in as the FSM event),
//! `Send*` encode with the session's context and queue on the connection's
//! writer. Reading is done by a small task per connection that only frames
//! bytes into whole messages; decoding happens here, with the context the
//! OPEN exchange negotiated.
//!
//! Collision detection (RFC 4271 §6.8): a connection arriving while the main
//! one is past Active gets its own FSM. When either receives an OPEN while
//! the other has one too, [`resolve_collision`] names the loser, which is
//! sent Cease/7 and dropped.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, info_span, warn, Instrument};

use super::config::PeerConfig;
use super::core::Input;
use super::local_as::apply_local_as;
use super::socket;
use crate::fsm::{
    self, resolve_collision, Action, CollisionResolution, ConnectionOrigin, DownReason, Event, Fsm,
    FsmConfig, State, TimerKind,
};
use crate::packet::{
    self, build_announcements, build_withdrawals, AddPathFamily, AddPathMode, Capability,
    DecodeContext, DecodeError, EncodeContext, Family, GracefulRestart, GracefulRestartFamily,
    Message, Negotiated, Nlri, Open, Update, UpdateOutcome, MAX_EXTENDED_MESSAGE_SIZE,
};
use crate::rib::UpdateBatch;

/// An UPDATE as the FSM carries it to the RIB.
pub(crate) type Received = (Update, UpdateOutcome);
type PeerFsm = Fsm<Negotiated, Received>;

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
}

/// A whole message read from connection `conn`; `None` at EOF or error.
#[derive(Debug)]
struct Frame {
    conn: u64,
    frame: Option<Bytes>,
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

struct Conn {
    id: u64,
    /// The largest message the reader accepts (4096 until extended messages
    /// are negotiated); shared with the reader task.
    max_message: Arc<AtomicUsize>,
    writer: mpsc::UnboundedSender<Bytes>,
    writer_task: JoinHandle<()>,
    reader_task: JoinHandle<()>,
    local: SocketAddr,
}

impl Conn {
    /// Flush what is queued, then close. The writer ends on its own once
    /// the queue is drained.
    fn close(self) -> JoinHandle<()> {
        self.reader_task.abort();
        self.writer_task
    }
}

struct Session {
    id: u64,
    origin: ConnectionOrigin,
    fsm: PeerFsm,
    conn: Option<Conn>,
    /// Outgoing attempt in flight.
    connecting: Option<(u64, JoinHandle<()>)>,
    deadlines: [Option<Instant>; 5],
    decode: DecodeContext,
    encode: EncodeContext,
    /// The peer's OPEN was accepted on this connection.
    peer_id: Option<Ipv4Addr>,
}

fn timer_slot(kind: TimerKind) -> usize {
    match kind {
        TimerKind::ConnectRetry => 0,
        TimerKind::Hold => 1,
        TimerKind::Keepalive => 2,
        TimerKind::DelayOpen => 3,
        TimerKind::IdleHold => 4,
    }
}

const TIMERS: [TimerKind; 5] = [
    TimerKind::ConnectRetry,
    TimerKind::Hold,
    TimerKind::Keepalive,
    TimerKind::DelayOpen,
    TimerKind::IdleHold,
];

fn expiry_event(kind: TimerKind) -> Event<Negotiated, Received> {
    match kind {
        TimerKind::ConnectRetry => Event::ConnectRetryTimerExpired,
        TimerKind::Hold => Event::HoldTimerExpired,
        TimerKind::Keepalive => Event::KeepaliveTimerExpired,
        TimerKind::DelayOpen => Event::DelayOpenTimerExpired,
        TimerKind::IdleHold => Event::IdleHoldTimerExpired,
    }
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

/// Our OPEN for a peer.
fn build_open(config: &PeerConfig, local_asn: u32, router_id: Ipv4Addr) -> Open {
    let mut families = Vec::new();
    if config.ipv4_unicast {
        families.push(Family::IPV4_UNICAST);
    }
    if config.ipv6_unicast {
        families.push(Family::IPV6_UNICAST);
    }
    let mut capabilities: Vec<Capability> = families
        .iter()
        .map(|f| Capability::Multiprotocol(*f))
        .collect();
    capabilities.push(Capability::RouteRefresh);
    capabilities.push(Capability::FourOctetAs(local_asn));
    if let Some(restart_time) = config.graceful_restart {
        capabilities.push(Capability::GracefulRestart(GracefulRestart {
            restart_state: false,
            notification: false,
            restart_time,
            families: families
                .iter()
                .map(|f| GracefulRestartFamily {
                    family: *f,
                    // Routes we installed stay in the kernel across our restart.
                    forwarding_preserved: true,
                })
                .collect(),
        }));
    }
    let mode = match (config.add_path.receive, config.add_path.send) {
        (true, true) => Some(AddPathMode::Both),
        (true, false) => Some(AddPathMode::Receive),
        (false, true) => Some(AddPathMode::Send),
        (false, false) => None,
    };
    if let Some(mode) = mode {
        capabilities.push(Capability::AddPath(
            families
                .iter()
                .map(|f| AddPathFamily { family: *f, mode })
                .collect(),
        ));
    }
    capabilities.push(Capability::ExtendedMessage);
    Open {
        version: 4,
        asn: local_asn,
        hold_time: config.hold_time,
        bgp_id: router_id,
        capabilities,
    }
}

/// The FSM event for a message that failed to decode.
fn decode_error_event(error: &DecodeError) -> Event<Negotiated, Received> {
    let n = error.to_notification();
    match n.code {
        fsm::code::MESSAGE_HEADER => Event::HeaderError(n),
        fsm::code::OPEN_MESSAGE => Event::OpenMessageError(n),
        _ => Event::UpdateMessageError(n),
    }
}

fn describe(n: &packet::Notification) -> String {
    let mut text = format!("{}/{} ({})", n.code, n.subcode, n.description());
    if let Some(Ok(message)) = n.shutdown_communication() {
        text.push_str(&format!(": \"{message}\""));
    } else if !n.data.is_empty() {
        text.push_str(&format!(" data {}", hex_string(&n.data)));
    }
    text
}

fn hex_string(data: &[u8]) -> String {
    data.iter().take(32).map(|b| format!("{b:02x}")).collect()
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
        let our_open = build_open(&config, local_asn, router_id);
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
            deadlines: [None; 5],
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
            for kind in TIMERS {
                let slot = &mut s.deadlines[timer_slot(kind)];
                if slot.is_some_and(|d| d <= now) {
                    *slot = None;
                    due.push((s.id, kind));
                }
            }
        }
        for (id, kind) in due {
            if let Some(i) = self.index_of(id) {
                self.process(i, expiry_event(kind));
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
        let main_state = self.sessions[0].fsm.state();
        match main_state {
            State::Idle | State::Connect | State::Active => {
                let s = &mut self.sessions[0];
                if let Some((_, task)) = s.connecting.take() {
                    task.abort();
                }
                if main_state == State::Idle {
                    // Damped restart pending: a connection from the
                    // neighbour is reason enough to start now (the FSM
                    // would otherwise refuse it until the idle hold ends).
                    if !s.fsm.is_timer_running(TimerKind::IdleHold) {
                        return; // administratively down
                    }
                    s.deadlines[timer_slot(TimerKind::IdleHold)] = None;
                    self.process(0, Event::IdleHoldTimerExpired);
                    let s = &mut self.sessions[0];
                    if let Some((_, task)) = s.connecting.take() {
                        task.abort();
                    }
                }
                self.sessions[0].origin = ConnectionOrigin::Remote;
                if let Some(old) = self.sessions[0].conn.take() {
                    drop(old.close());
                }
                self.attach(0, stream);
                self.process(0, Event::TcpConnectionConfirmed);
            }
            _ => {
                if self.sessions.len() > 1 {
                    debug!("third connection while a collision is pending; refusing");
                    return;
                }
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
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        let id = self.next_id;
        self.next_id += 1;
        let (read, write) = stream.into_split();
        let (wtx, wrx) = mpsc::unbounded_channel();
        let writer_task = tokio::spawn(writer(write, wrx).in_current_span());
        let max_message = Arc::new(AtomicUsize::new(packet::MAX_MESSAGE_SIZE));
        let reader_task = tokio::spawn(
            reader(read, id, self.frames.clone(), max_message.clone()).in_current_span(),
        );
        let s = &mut self.sessions[i];
        s.decode = DecodeContext::default();
        s.encode = EncodeContext::default();
        s.peer_id = None;
        s.conn = Some(Conn {
            id,
            max_message,
            writer: wtx,
            writer_task,
            reader_task,
            local,
        });
    }

    fn message(&mut self, i: usize, frame: &[u8]) {
        let decoded = match packet::decode_message(frame, &self.sessions[i].decode) {
            Ok(Some(d)) => d,
            Ok(None) => {
                let e = DecodeError::BadMessageLength {
                    length: frame.len().min(usize::from(u16::MAX)) as u16,
                };
                self.process(i, decode_error_event(&e));
                return;
            }
            Err(error) => {
                warn!(%error, "malformed message from peer");
                self.process(i, decode_error_event(&error));
                return;
            }
        };
        match decoded.message {
            Message::Open(open) => self.open(i, open),
            Message::Update(update) => {
                if !decoded.outcome.reasons().is_empty() {
                    warn!(outcome = ?decoded.outcome, "UPDATE with errors handled per RFC 7606");
                }
                self.process(i, Event::UpdateReceived((update, decoded.outcome)));
            }
            Message::Notification(n) => {
                let text = format!("received NOTIFICATION {}", describe(&n));
                warn!("{text}");
                self.report(PeerEvent::Error(text));
                let event = if n.code == fsm::code::OPEN_MESSAGE
                    && n.subcode == fsm::subcode::UNSUPPORTED_VERSION_NUMBER
                {
                    Event::NotificationVersionError
                } else {
                    Event::NotificationReceived {
                        code: n.code,
                        subcode: n.subcode,
                    }
                };
                self.process(i, event);
            }
            Message::Keepalive => self.process(i, Event::KeepaliveReceived),
            Message::RouteRefresh(rr) => {
                let s = &self.sessions[i];
                if s.fsm.state() == State::Established {
                    debug!(family = %rr.family, "ROUTE-REFRESH received");
                    self.report(PeerEvent::RouteRefresh {
                        session: s.id,
                        family: rr.family,
                    });
                }
            }
        }
    }

    fn open(&mut self, i: usize, open: Open) {
        let outcome = packet::negotiate(&self.our_open, &open, self.config.remote_asn);
        let Ok(negotiated) = &outcome else {
            if let Err(error) = &outcome {
                warn!(%error, "OPEN rejected");
            }
            self.process(i, Event::from_negotiation(outcome));
            return;
        };
        // Collision with the other connection, if there is one.
        if self.sessions.len() > 1 {
            let other = 1 - i;
            let resolution = resolve_collision(
                self.fsm_config.local_id,
                negotiated.peer_bgp_id,
                self.sessions[other].fsm.state(),
                self.sessions[other].peer_id.is_some(),
                self.sessions[other].origin,
                self.sessions[i].origin,
                false,
            );
            debug!(?resolution, "collision check");
            match resolution {
                CollisionResolution::NoCollision => {}
                CollisionResolution::CloseNew => {
                    self.process(i, Event::OpenCollisionDump);
                    return;
                }
                CollisionResolution::CloseExisting => {
                    let id = self.sessions[i].id;
                    self.process(other, Event::OpenCollisionDump);
                    let Some(survivor) = self.index_of(id) else {
                        return;
                    };
                    return self.accept_open(survivor, outcome);
                }
            }
        }
        self.accept_open(i, outcome);
    }

    fn accept_open(&mut self, i: usize, outcome: Result<Negotiated, packet::NegotiationError>) {
        if let Ok(negotiated) = &outcome {
            let s = &mut self.sessions[i];
            s.decode = negotiated.decode_context();
            s.encode = negotiated.encode_context();
            if let Some(conn) = &s.conn {
                conn.max_message
                    .store(s.decode.max_message_size, Ordering::Relaxed);
            }
            s.peer_id = Some(negotiated.peer_bgp_id);
        }
        self.process(i, Event::from_negotiation(outcome));
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

    fn process(&mut self, i: usize, event: Event<Negotiated, Received>) {
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

    fn execute(&mut self, i: usize, actions: Vec<Action<Negotiated, Received>>) {
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
                    self.sessions[i].deadlines[timer_slot(kind)] = Some(Instant::now() + duration);
                }
                Action::StopTimer { kind } => {
                    self.sessions[i].deadlines[timer_slot(kind)] = None;
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
        let me = self.me.clone();
        debug!(%target, "connecting");
        let task = tokio::spawn(
            async move {
                let result = socket::connect(target, source, password.as_deref()).await;
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
        let mut messages: Vec<Bytes> = Vec::new();
        for batch in batches {
            let result = match batch {
                UpdateBatch::Withdraw(prefixes) => {
                    let Some(family) = prefixes.first().map(family_of) else {
                        continue;
                    };
                    if !negotiated.has_family(family) {
                        continue;
                    }
                    let nlri: Vec<Nlri> = prefixes.iter().map(|p| Nlri::new(*p)).collect();
                    build_withdrawals(family, &nlri, &s.encode)
                }
                UpdateBatch::Announce { attrs, prefixes } => {
                    let Some(family) = prefixes.first().map(family_of) else {
                        continue;
                    };
                    if !negotiated.has_family(family) {
                        continue;
                    }
                    let nlri: Vec<Nlri> = prefixes.iter().map(|p| Nlri::new(*p)).collect();
                    let rewritten = self.config.local_asn.and_then(|local| {
                        apply_local_as(
                            &attrs.attributes,
                            self.speaker_asn,
                            local,
                            self.config.remote_asn,
                        )
                    });
                    let attributes = rewritten.as_ref().unwrap_or(&attrs.attributes);
                    build_announcements(family, attributes, attrs.next_hop, &nlri, &s.encode)
                }
            };
            match result {
                Ok(m) => messages.extend(m),
                Err(error) => warn!(%error, "cannot encode UPDATE; routes not advertised"),
            }
        }
        for family in end_of_rib {
            match Message::Update(Update::end_of_rib(family)).to_bytes(&s.encode) {
                Ok(m) => messages.push(m),
                Err(error) => warn!(%error, "cannot encode End-of-RIB"),
            }
        }
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

pub(crate) fn family_of(prefix: &ipnet::IpNet) -> Family {
    match prefix {
        ipnet::IpNet::V4(_) => Family::IPV4_UNICAST,
        ipnet::IpNet::V6(_) => Family::IPV6_UNICAST,
    }
}

/// A permit of `semaphore`, which is never closed (if it were, this would
/// wait forever rather than panic).
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

/// Splits the byte stream into whole messages by the header's length field;
/// `None` at EOF or on error. The header is checked (marker, length within
/// 19..=`max_message`, type and per-type bounds: [`packet::decode_header`])
/// as soon as its 19 octets are in, never after waiting for a length the
/// header may have made up (RFC 4271 §6.1): a bad header is passed on
/// alone and the reader stops, and the session's decoder turns it into the
/// right NOTIFICATION at once.
async fn reader(
    mut read: OwnedReadHalf,
    conn: u64,
    peer: mpsc::Sender<Frame>,
    max_message: Arc<AtomicUsize>,
) {
    let mut buf = BytesMut::with_capacity(MAX_EXTENDED_MESSAGE_SIZE + 1);
    loop {
        loop {
            let ctx = DecodeContext {
                max_message_size: max_message.load(Ordering::Relaxed),
                ..DecodeContext::default()
            };
            let (frame, last) = match packet::split_frame(&mut buf, &ctx) {
                None => break,
                Some(packet::Frame::Message(frame)) => (frame, false),
                Some(packet::Frame::BadHeader(header)) => (header, true),
            };
            let sent = peer
                .send(Frame {
                    conn,
                    frame: Some(frame),
                })
                .await;
            if sent.is_err() || last {
                return;
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = peer.send(Frame { conn, frame: None }).await;
                return;
            }
            Ok(_) => {}
        }
    }
}

/// Writes queued messages until the queue is closed and drained, then shuts
/// the connection down.
async fn writer(mut write: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Bytes>) {
    while let Some(message) = queue.recv().await {
        if let Err(error) = write.write_all(&message).await {
            debug!(%error, "write failed");
            return;
        }
    }
    let _ = write.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::open::capability_code;

    fn config() -> PeerConfig {
        PeerConfig::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 65000)
    }

    #[test]
    fn open_offers_the_configured_capabilities() {
        let open = build_open(&config(), 4_200_000_000, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(open.asn, 4_200_000_000);
        assert_eq!(open.hold_time, 90);
        assert_eq!(
            open.multiprotocol_families(),
            vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
        );
        assert_eq!(open.four_octet_as(), Some(4_200_000_000));
        for code in [
            capability_code::ROUTE_REFRESH,
            capability_code::GRACEFUL_RESTART,
            capability_code::EXTENDED_MESSAGE,
        ] {
            assert!(open.has_capability(code), "capability {code}");
        }
        assert!(!open.has_capability(capability_code::ADD_PATH));
        let gr = open
            .capabilities
            .iter()
            .find_map(|c| match c {
                Capability::GracefulRestart(gr) => Some(gr.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(gr.restart_time, 120);
        assert!(gr.families.iter().all(|f| f.forwarding_preserved));
        // It encodes (AS_TRANS in the 2-octet field).
        assert!(Message::Open(open)
            .to_bytes(&EncodeContext::default())
            .is_ok());
    }

    #[test]
    fn open_without_gr_with_add_path_and_v4_only() {
        let mut c = config();
        c.graceful_restart = None;
        c.ipv6_unicast = false;
        c.add_path.receive = true;
        let open = build_open(&c, 64512, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(open.multiprotocol_families(), vec![Family::IPV4_UNICAST]);
        assert!(!open.has_capability(capability_code::GRACEFUL_RESTART));
        assert!(open
            .capabilities
            .contains(&Capability::AddPath(vec![AddPathFamily {
                family: Family::IPV4_UNICAST,
                mode: AddPathMode::Receive,
            }])));
    }

    #[test]
    fn decode_errors_map_to_fsm_events_by_code() {
        let header = decode_error_event(&DecodeError::ConnectionNotSynchronized);
        assert!(matches!(header, Event::HeaderError(n) if (n.code, n.subcode) == (1, 1)));
        let open = decode_error_event(&DecodeError::UnsupportedVersion { version: 3 });
        assert!(matches!(open, Event::OpenMessageError(n) if (n.code, n.subcode) == (2, 1)));
        let update = decode_error_event(&DecodeError::MalformedAttributeList);
        assert!(matches!(update, Event::UpdateMessageError(n) if (n.code, n.subcode) == (3, 1)));
    }

    #[test]
    fn notifications_are_described_for_humans() {
        let shutdown = packet::Notification::administrative_shutdown(Some("maintenance"));
        let text = describe(&shutdown);
        assert!(text.starts_with("6/2 ("), "{text}");
        assert!(text.ends_with(": \"maintenance\""), "{text}");
        let hold = describe(&packet::Notification::new(4, 0));
        assert_eq!(hold, "4/0 (hold timer expired)");
    }
}
