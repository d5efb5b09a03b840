//! The BGP-4 finite state machine of RFC 4271 §8, sans-IO.
//!
//! One [`Fsm`] drives one transport connection to one peer. It owns no socket
//! and reads no clock: the session layer feeds it [`Event`]s (messages that the
//! codec decoded, TCP outcomes, timer expiries) and executes the returned
//! [`Action`]s in order (connect, send, start or stop a timer, hand an UPDATE to
//! the RIB). Timers are requested with [`Action::StartTimer`] and cancelled with
//! [`Action::StopTimer`]; when one fires the session layer sends the matching
//! `*TimerExpired` event back.
//!
//! ```text
//!  Idle        --ManualStart / AutomaticStart---------> Connect     (dial)
//!  Idle        --ManualStartPassive--------------------> Active      (wait for the peer)
//!  Connect     --ConnectRetry expired: dial again------> Connect
//!  Active      --ConnectRetry expired: dial------------> Connect     (unless passive)
//!  Connect,
//!  Active      --TCP up: send OPEN (hold 4 min)--------> OpenSent
//!  OpenSent    --OPEN ok: send KEEPALIVE---------------> OpenConfirm (negotiated timers)
//!  OpenSent    --TCP fails-----------------------------> Active
//!  OpenConfirm --KEEPALIVE-----------------------------> Established
//!  any         --error, NOTIFICATION, hold expiry------> Idle  (NOTIFICATION sent where
//!                                                              due; IdleHold restarts)
//!  any         --ManualStop----------------------------> Idle  (Cease/2 once OPEN sent)
//! ```
//!
//! ```
//! use std::net::Ipv4Addr;
//! use brindle_bgp::fsm::{Action, Event, Fsm, FsmConfig, State, TimerKind};
//!
//! let mut fsm: Fsm = Fsm::new(FsmConfig::new(64512, Ipv4Addr::new(10, 0, 0, 1)));
//! let actions = fsm.process(Event::ManualStart);
//! assert!(actions.contains(&Action::Connect));
//! assert_eq!(fsm.state(), State::Connect);
//! // The socket connected: send OPEN and wait for the peer's.
//! let actions = fsm.process(Event::TcpConnectionAcknowledged);
//! assert!(actions.contains(&Action::SendOpen));
//! // The timer the session layer started fires later:
//! fsm.process(Event::HoldTimerExpired);
//! assert_eq!(fsm.state(), State::Idle);
//! assert!(fsm.is_timer_running(TimerKind::IdleHold)); // damped restart
//! ```
//!
//! Contract:
//! * [`Fsm::process`] never panics, for any event in any state (a proptest in
//!   `bgp/tests/fsm_transitions.rs` drives random sequences). Events that make
//!   no sense in a state are either ignored (the RFC's "ignored" rows) or answered
//!   with the RFC 6608 FSM-error NOTIFICATION.
//! * Timer expiries for timers that this FSM does not believe are running are
//!   ignored, so an expiry racing with a `StopTimer` is harmless. The session
//!   layer keeps at most one timer per [`TimerKind`]: `StartTimer` replaces
//!   (restarts) a running one, so no stale expiry of an older instance can
//!   arrive.
//! * The OPEN summary is validated here only for what the FSM itself owns: hold
//!   time (1 or 2 s is NOTIFICATION 2/6), peer AS against the configured one
//!   (2/2) and BGP identifier (0.0.0.0, or ours on an iBGP session, is 2/3).
//!   Version and capability checks belong to the codec's `packet::negotiate`,
//!   which reports failures as [`Event::OpenMessageError`].
//! * Collision detection (§6.8) spans two connections and therefore lives one
//!   level up: [`crate::session::resolve_collision`] is a pure function that names the connection
//!   to drop; the session layer then feeds [`Event::OpenCollisionDump`] to that
//!   connection's FSM, which answers with Cease/7 and goes Idle.
//! * Automatic restart with damping: after an administrative start, every error
//!   that returns the FSM to Idle schedules [`TimerKind::IdleHold`] with an
//!   exponential backoff (doubled per consecutive failure, capped, reset once a
//!   session reaches Established). Its expiry restarts the FSM. `ManualStop`
//!   cancels it; `AutomaticStart` is ignored while it runs (RFC 4271 §8.1.1,
//!   DampPeerOscillations).

use std::fmt;
use std::time::Duration;

use tracing::{debug, debug_span};

/// NOTIFICATION error codes (RFC 4271 §4.5): the codec's, one source.
pub use crate::packet::error::code;

mod vocabulary;
use vocabulary::event_name;
pub use vocabulary::*;

/// NOTIFICATION subcodes used by the FSM.
pub mod subcode {
    use crate::packet::error::subcode::{cease, open};

    /// OPEN 2/2: Bad Peer AS.
    pub const BAD_PEER_AS: u8 = open::BAD_PEER_AS;
    /// OPEN 2/3: Bad BGP Identifier.
    pub const BAD_BGP_IDENTIFIER: u8 = open::BAD_BGP_ID;
    /// OPEN 2/6: Unacceptable Hold Time.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = open::UNACCEPTABLE_HOLD_TIME;
    /// FSM 5/1: unexpected message in OpenSent (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    /// FSM 5/2: unexpected message in OpenConfirm (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    /// FSM 5/3: unexpected message in Established (RFC 6608).
    pub const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    /// OPEN 2/1: Unsupported Version Number (RFC 4271 §8.1.2: event 24).
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = open::UNSUPPORTED_VERSION;
    /// Cease 6/10: BFD Down (RFC 9384).
    pub const BFD_DOWN: u8 = cease::BFD_DOWN;
    /// Cease 6/6: Other Configuration Change (RFC 4486).
    pub const OTHER_CONFIGURATION_CHANGE: u8 = cease::OTHER_CONFIGURATION_CHANGE;
    /// Cease 6/1: Maximum Number of Prefixes Reached (RFC 4486).
    pub const MAX_PREFIXES: u8 = cease::MAX_PREFIXES;
    /// Cease 6/2: Administrative Shutdown (RFC 4486, data per RFC 9003).
    pub const CEASE_ADMIN_SHUTDOWN: u8 = cease::ADMINISTRATIVE_SHUTDOWN;
    /// Cease 6/7: Connection Collision Resolution (RFC 4486).
    pub const CEASE_CONNECTION_COLLISION: u8 = cease::CONNECTION_COLLISION_RESOLUTION;
}

/// RFC 4271 §8.2.2: the hold timer is set to "a large value" in OpenSent;
/// 4 minutes is the suggested one.
pub const LARGE_HOLD_TIME: Duration = Duration::from_secs(240);

/// Result of hold-time negotiation (RFC 4271 §4.2, §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldTimes {
    pub hold: Duration,
    pub keepalive: Duration,
}

/// Negotiate hold and keepalive times: the smaller hold time wins; 1 or 2
/// seconds from the peer is an error (2/6); zero means neither timer runs.
pub fn negotiate_hold_time(
    local_hold: u16,
    local_keepalive: Option<u16>,
    peer_hold: u16,
) -> Result<HoldTimes, Notification> {
    if peer_hold == 1 || peer_hold == 2 {
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            subcode::UNACCEPTABLE_HOLD_TIME,
        ));
    }
    let hold = local_hold.min(peer_hold);
    let keepalive = match local_keepalive {
        Some(ka) if hold == local_hold && ka > 0 && ka < hold.max(1) => ka,
        _ => hold / 3,
    };
    Ok(HoldTimes {
        hold: Duration::from_secs(hold.into()),
        keepalive: Duration::from_secs(keepalive.into()),
    })
}

/// The per-connection BGP FSM. See the module documentation for the contract.
#[derive(Debug, Clone)]
pub struct Fsm<C = (), U = ()> {
    config: FsmConfig,
    state: State,
    connect_retry_counter: u32,
    running: [bool; TimerKind::ALL.len()],
    /// Set by a start, cleared by ManualStop: errors then restart on their own.
    admin_up: bool,
    /// Passive mode chosen by the last start event.
    passive: bool,
    /// Consecutive failures since the last Established, for the backoff.
    consecutive_failures: u32,
    /// Agreed in OpenSent/Connect/Active, announced on reaching Established.
    pending: Option<EstablishedSession<C>>,
    established: Option<EstablishedSession<C>>,
    _update: std::marker::PhantomData<fn(U)>,
}

/// Outputs collected while handling one event.
type Out<C, U> = Vec<Action<C, U>>;

impl<C: Clone + fmt::Debug, U: fmt::Debug> Fsm<C, U> {
    pub fn new(config: FsmConfig) -> Self {
        let passive = config.passive;
        Self {
            config,
            state: State::Idle,
            connect_retry_counter: 0,
            running: [false; TimerKind::ALL.len()],
            admin_up: false,
            passive,
            consecutive_failures: 0,
            pending: None,
            established: None,
            _update: std::marker::PhantomData,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &FsmConfig {
        &self.config
    }

    /// RFC 4271 ConnectRetryCounter.
    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    pub fn is_timer_running(&self, kind: TimerKind) -> bool {
        self.running[kind.index()]
    }

    /// The session parameters while Established.
    pub fn session(&self) -> Option<&EstablishedSession<C>> {
        self.established.as_ref()
    }

    /// Feed one event; returns the actions to execute, in order.
    pub fn process(&mut self, event: Event<C, U>) -> Vec<Action<C, U>> {
        let span = debug_span!("bgp_fsm", peer_asn = ?self.config.peer_asn, state = %self.state);
        let _guard = span.enter();
        debug!(event = event_name(&event), "fsm event");
        let mut out = Vec::new();
        if let Some(kind) = expired_timer(&event) {
            if !self.is_timer_running(kind) {
                debug!("ignoring expiry of a timer that is not running");
                return out;
            }
            // The session layer's timer has fired: it no longer runs, whatever
            // the handler below decides.
            self.running[kind.index()] = false;
        }
        match self.state {
            State::Idle => self.idle(event, &mut out),
            State::Connect => self.connect(event, &mut out),
            State::Active => self.active(event, &mut out),
            State::OpenSent => self.open_sent(event, &mut out),
            State::OpenConfirm => self.open_confirm(event, &mut out),
            State::Established => self.established(event, &mut out),
        }
        out
    }

    // ----- state handlers -------------------------------------------------

    fn idle(&mut self, event: Event<C, U>, out: &mut Out<C, U>) {
        match event {
            Event::ManualStart => {
                self.consecutive_failures = 0;
                self.start(self.config.passive, out);
            }
            Event::ManualStartPassive => {
                self.consecutive_failures = 0;
                self.start(true, out);
            }
            // Damped: automatic starts wait for the idle hold timer.
            Event::AutomaticStart if !self.is_timer_running(TimerKind::IdleHold) => {
                self.start(self.config.passive, out);
            }
            Event::IdleHoldTimerExpired if self.admin_up => self.start(self.passive, out),
            Event::ManualStop { .. } => {
                self.admin_up = false;
                self.consecutive_failures = 0;
                self.stop_timer(TimerKind::IdleHold, out);
            }
            // Idle refuses connections.
            Event::TcpConnectionValid
            | Event::TcpConnectionConfirmed
            | Event::TcpConnectionAcknowledged => out.push(Action::Disconnect),
            _ => {}
        }
    }

    fn connect(&mut self, event: Event<C, U>, out: &mut Out<C, U>) {
        match event {
            Event::ManualStart
            | Event::ManualStartPassive
            | Event::AutomaticStart
            | Event::TcpConnectionValid
            | Event::PeerFailureDetected
            | Event::AutomaticStop(_) => {}
            Event::ManualStop { .. } => self.manual_stop(None, out),
            Event::ConnectRetryTimerExpired => {
                out.push(Action::Disconnect);
                self.stop_timer(TimerKind::DelayOpen, out);
                self.start_timer(TimerKind::ConnectRetry, self.config.connect_retry, out);
                out.push(Action::Connect);
            }
            Event::DelayOpenTimerExpired => {
                self.send_open(out);
            }
            Event::TcpConnectionAcknowledged | Event::TcpConnectionConfirmed => {
                self.stop_timer(TimerKind::ConnectRetry, out);
                self.connection_up(out);
            }
            Event::TcpConnectionFails => {
                if self.is_timer_running(TimerKind::DelayOpen) {
                    self.stop_timer(TimerKind::DelayOpen, out);
                    self.start_timer(TimerKind::ConnectRetry, self.config.connect_retry, out);
                    out.push(Action::Disconnect);
                    self.transition(State::Active, out);
                } else {
                    self.fail(None, DownReason::TransportFailed, out);
                }
            }
            other => self.pre_open_event(other, out),
        }
    }

    fn active(&mut self, event: Event<C, U>, out: &mut Out<C, U>) {
        match event {
            Event::ManualStart
            | Event::ManualStartPassive
            | Event::AutomaticStart
            | Event::TcpConnectionValid
            | Event::PeerFailureDetected
            | Event::AutomaticStop(_) => {}
            Event::ManualStop { communication } => {
                let notification = (self.is_timer_running(TimerKind::DelayOpen)
                    && self.config.send_notification_without_open)
                    .then(|| Notification::administrative_shutdown(communication.as_deref()));
                self.manual_stop(notification, out);
            }
            Event::ConnectRetryTimerExpired => {
                if self.passive {
                    // A passive peer never dials; keep waiting.
                    self.start_timer(TimerKind::ConnectRetry, self.config.connect_retry, out);
                } else {
                    self.start_timer(TimerKind::ConnectRetry, self.config.connect_retry, out);
                    out.push(Action::Connect);
                    self.transition(State::Connect, out);
                }
            }
            Event::DelayOpenTimerExpired => {
                self.stop_timer(TimerKind::ConnectRetry, out);
                self.send_open(out);
            }
            Event::TcpConnectionAcknowledged | Event::TcpConnectionConfirmed => {
                self.stop_timer(TimerKind::ConnectRetry, out);
                self.connection_up(out);
            }
            Event::TcpConnectionFails => {
                self.fail(None, DownReason::TransportFailed, out);
            }
            other => self.pre_open_event(other, out),
        }
    }

    /// Connect/Active: messages can only arrive here while DelayOpen runs.
    fn pre_open_event(&mut self, event: Event<C, U>, out: &mut Out<C, U>) {
        match event {
            Event::OpenReceived(open) if self.is_timer_running(TimerKind::DelayOpen) => {
                self.stop_timer(TimerKind::ConnectRetry, out);
                self.stop_timer(TimerKind::DelayOpen, out);
                match self.accept_open(open) {
                    Ok(()) => {
                        out.push(Action::SendOpen);
                        out.push(Action::SendKeepalive);
                        self.arm_session_timers(out);
                        self.transition(State::OpenConfirm, out);
                    }
                    Err(notification) => {
                        // We have not sent our OPEN yet: RFC 4271 §6.2 still
                        // answers an unacceptable OPEN with NOTIFICATION.
                        let reason = sent_reason(&notification);
                        self.fail(Some(notification), reason, out);
                    }
                }
            }
            Event::HeaderError(n) | Event::OpenMessageError(n) => {
                let n = self.config.send_notification_without_open.then_some(n);
                let reason = n.as_ref().map_or(DownReason::TransportFailed, sent_reason);
                self.fail(n, reason, out);
            }
            Event::NotificationVersionError => {
                let counts = !self.is_timer_running(TimerKind::DelayOpen);
                self.go_idle(None, counts, DownReason::TransportFailed, out);
            }
            _ => self.fail(None, DownReason::TransportFailed, out),
        }
    }

    fn open_sent(&mut self, event: Event<C, U>, out: &mut Out<C, U>) {
        match event {
            Event::ManualStart
            | Event::ManualStartPassive
            | Event::AutomaticStart
            // A second connection is the peer level's business (collision).
            | Event::TcpConnectionValid
            | Event::TcpConnectionAcknowledged
            | Event::TcpConnectionConfirmed => {}
            Event::ManualStop { communication } => {
                self.manual_stop(
                    Some(Notification::administrative_shutdown(communication.as_deref())),
                    out,
                );
            }
            Event::PeerFailureDetected => self.failure_detected(out),
            Event::AutomaticStop(n) => {
                let reason = sent_reason(&n);
                self.fail(Some(n), reason, out);
            }
            Event::HoldTimerExpired => self.hold_expired(out),
            Event::TcpConnectionFails => {
                out.push(Action::Disconnect);
                self.stop_timer(TimerKind::Hold, out);
                self.start_timer(TimerKind::ConnectRetry, self.config.connect_retry, out);
                self.pending = None;
                self.transition(State::Active, out);
            }
            Event::OpenReceived(open) => {
                self.stop_timer(TimerKind::ConnectRetry, out);
                match self.accept_open(open) {
                    Ok(()) => {
                        out.push(Action::SendKeepalive);
                        self.arm_session_timers(out);
                        self.transition(State::OpenConfirm, out);
                    }
                    Err(n) => {
                        let reason = sent_reason(&n);
                        self.fail(Some(n), reason, out);
                    }
                }
            }
            other => self.common_open_event(other, subcode::FSM_UNEXPECTED_IN_OPEN_SENT, out),
        }
    }

    fn open_confirm(&mut self, event: Event<C, U>, out: &mut Out<C, U>) {
        match event {
            Event::ManualStart
            | Event::ManualStartPassive
            | Event::AutomaticStart
            | Event::TcpConnectionValid
            | Event::TcpConnectionAcknowledged
            | Event::TcpConnectionConfirmed => {}
            Event::ManualStop { communication } => {
                self.manual_stop(
                    Some(Notification::administrative_shutdown(
                        communication.as_deref(),
                    )),
                    out,
                );
            }
            Event::PeerFailureDetected => self.failure_detected(out),
            Event::AutomaticStop(n) => {
                let reason = sent_reason(&n);
                self.fail(Some(n), reason, out);
            }
            Event::HoldTimerExpired => self.hold_expired(out),
            Event::KeepaliveTimerExpired => {
                out.push(Action::SendKeepalive);
                self.restart_keepalive(out);
            }
            Event::TcpConnectionFails => self.fail(None, DownReason::TransportFailed, out),
            Event::KeepaliveReceived => {
                self.restart_hold(out);
                self.consecutive_failures = 0;
                self.established = self.pending.take();
                self.transition(State::Established, out);
                if let Some(session) = &self.established {
                    out.push(Action::SessionEstablished(session.clone()));
                }
            }
            other => self.common_open_event(other, subcode::FSM_UNEXPECTED_IN_OPEN_CONFIRM, out),
        }
    }

    fn established(&mut self, event: Event<C, U>, out: &mut Out<C, U>) {
        match event {
            Event::ManualStart
            | Event::ManualStartPassive
            | Event::AutomaticStart
            | Event::TcpConnectionValid
            | Event::TcpConnectionAcknowledged
            | Event::TcpConnectionConfirmed => {}
            Event::ManualStop { communication } => {
                self.manual_stop(
                    Some(Notification::administrative_shutdown(
                        communication.as_deref(),
                    )),
                    out,
                );
            }
            Event::PeerFailureDetected => self.failure_detected(out),
            Event::AutomaticStop(n) => {
                let reason = sent_reason(&n);
                self.fail(Some(n), reason, out);
            }
            Event::HoldTimerExpired => self.hold_expired(out),
            Event::KeepaliveTimerExpired => {
                out.push(Action::SendKeepalive);
                self.restart_keepalive(out);
            }
            Event::KeepaliveReceived => self.restart_hold(out),
            Event::UpdateReceived(update) => {
                self.restart_hold(out);
                out.push(Action::DeliverUpdate(update));
            }
            Event::TcpConnectionFails => self.fail(None, DownReason::TransportFailed, out),
            other => self.common_open_event(other, subcode::FSM_UNEXPECTED_IN_ESTABLISHED, out),
        }
    }

    /// Events handled alike in OpenSent, OpenConfirm and Established: errors
    /// from the codec, NOTIFICATIONs from the peer, collision dumps, and
    /// anything unexpected (answered with FSM error `fsm_subcode`).
    fn common_open_event(&mut self, event: Event<C, U>, fsm_subcode: u8, out: &mut Out<C, U>) {
        match event {
            Event::HeaderError(n) | Event::OpenMessageError(n) | Event::UpdateMessageError(n) => {
                let reason = sent_reason(&n);
                self.fail(Some(n), reason, out);
            }
            Event::OpenCollisionDump => {
                let n = Notification::new(code::CEASE, subcode::CEASE_CONNECTION_COLLISION);
                self.fail(Some(n), DownReason::CollisionResolution, out);
            }
            Event::NotificationVersionError => {
                let reason = DownReason::NotificationReceived {
                    code: code::OPEN_MESSAGE,
                    subcode: 1,
                };
                self.go_idle(None, false, reason, out);
            }
            Event::NotificationReceived { code, subcode } => {
                self.fail(
                    None,
                    DownReason::NotificationReceived { code, subcode },
                    out,
                );
            }
            _ => {
                let n = Notification::new(code::FSM, fsm_subcode);
                let reason = sent_reason(&n);
                self.fail(Some(n), reason, out);
            }
        }
    }

    // ----- building blocks ------------------------------------------------

    fn start(&mut self, passive: bool, out: &mut Out<C, U>) {
        self.admin_up = true;
        self.passive = passive;
        self.connect_retry_counter = 0;
        self.stop_timer(TimerKind::IdleHold, out);
        self.start_timer(TimerKind::ConnectRetry, self.config.connect_retry, out);
        if passive {
            self.transition(State::Active, out);
        } else {
            out.push(Action::Connect);
            self.transition(State::Connect, out);
        }
    }

    /// TCP is up in Connect or Active: send OPEN now or after DelayOpen.
    fn connection_up(&mut self, out: &mut Out<C, U>) {
        match self.config.delay_open {
            Some(delay) => self.start_timer(TimerKind::DelayOpen, delay, out),
            None => self.send_open(out),
        }
    }

    fn send_open(&mut self, out: &mut Out<C, U>) {
        out.push(Action::SendOpen);
        self.start_timer(TimerKind::Hold, LARGE_HOLD_TIME, out);
        self.transition(State::OpenSent, out);
    }

    /// Validate what the FSM owns of an OPEN and remember the agreed session.
    fn accept_open(&mut self, open: OpenSummary<C>) -> Result<(), Notification> {
        if let Some(expected) = self.config.peer_asn {
            if expected != open.peer_asn {
                return Err(Notification::new(code::OPEN_MESSAGE, subcode::BAD_PEER_AS));
            }
        }
        let ibgp = open.peer_asn == self.config.local_asn;
        if open.bgp_id.is_unspecified() || (ibgp && open.bgp_id == self.config.local_id) {
            return Err(Notification::new(
                code::OPEN_MESSAGE,
                subcode::BAD_BGP_IDENTIFIER,
            ));
        }
        let times = negotiate_hold_time(
            self.config.hold_time,
            self.config.keepalive_time,
            open.hold_time,
        )?;
        self.pending = Some(EstablishedSession {
            peer_asn: open.peer_asn,
            peer_id: open.bgp_id,
            hold_time: times.hold,
            keepalive_time: times.keepalive,
            capabilities: open.capabilities,
        });
        Ok(())
    }

    /// After a good OPEN: the negotiated hold timer replaces the large one and
    /// keepalives start, unless the hold time is zero.
    fn arm_session_timers(&mut self, out: &mut Out<C, U>) {
        let Some(session) = &self.pending else { return };
        let (hold, keepalive) = (session.hold_time, session.keepalive_time);
        if hold.is_zero() {
            self.stop_timer(TimerKind::Hold, out);
            self.stop_timer(TimerKind::Keepalive, out);
        } else {
            self.start_timer(TimerKind::Hold, hold, out);
            self.start_timer(TimerKind::Keepalive, keepalive, out);
        }
    }

    fn negotiated(&self) -> Option<&EstablishedSession<C>> {
        self.established.as_ref().or(self.pending.as_ref())
    }

    fn restart_hold(&mut self, out: &mut Out<C, U>) {
        if let Some(hold) = self.negotiated().map(|s| s.hold_time) {
            if !hold.is_zero() {
                self.start_timer(TimerKind::Hold, hold, out);
            }
        }
    }

    fn restart_keepalive(&mut self, out: &mut Out<C, U>) {
        if let Some(keepalive) = self.negotiated().map(|s| s.keepalive_time) {
            if !keepalive.is_zero() {
                self.start_timer(TimerKind::Keepalive, keepalive, out);
            }
        }
    }

    fn hold_expired(&mut self, out: &mut Out<C, U>) {
        let n = Notification::new(code::HOLD_TIMER_EXPIRED, 0);
        self.fail(Some(n), DownReason::HoldTimerExpired, out);
    }

    fn failure_detected(&mut self, out: &mut Out<C, U>) {
        let n = Notification::new(code::CEASE, subcode::BFD_DOWN);
        let reason = sent_reason(&n);
        self.fail(Some(n), reason, out);
    }

    /// ManualStop in any non-Idle state: no automatic restart afterwards.
    fn manual_stop(&mut self, notification: Option<Notification>, out: &mut Out<C, U>) {
        self.admin_up = false;
        self.go_idle(notification, false, DownReason::AdminShutdown, out);
        self.connect_retry_counter = 0;
        self.consecutive_failures = 0;
    }

    /// An error: count it and go Idle (with damped automatic restart).
    fn fail(
        &mut self,
        notification: Option<Notification>,
        reason: DownReason,
        out: &mut Out<C, U>,
    ) {
        self.go_idle(notification, true, reason, out);
    }

    fn go_idle(
        &mut self,
        notification: Option<Notification>,
        count_retry: bool,
        reason: DownReason,
        out: &mut Out<C, U>,
    ) {
        if let Some(n) = notification {
            out.push(Action::SendNotification(n));
        }
        out.push(Action::Disconnect);
        for kind in TimerKind::ALL {
            self.stop_timer(kind, out);
        }
        if count_retry {
            self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
        }
        self.pending = None;
        let was_established = self.established.take().is_some();
        self.transition(State::Idle, out);
        if was_established {
            out.push(Action::SessionDown { reason });
        }
        if self.admin_up {
            let delay = self.backoff();
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.start_timer(TimerKind::IdleHold, delay, out);
        }
    }

    /// `idle_hold * 2^failures`, capped at `max_idle_hold`.
    fn backoff(&self) -> Duration {
        let factor = 1u32
            .checked_shl(self.consecutive_failures.min(31))
            .unwrap_or(u32::MAX);
        self.config
            .idle_hold
            .checked_mul(factor)
            .unwrap_or(self.config.max_idle_hold)
            .min(self.config.max_idle_hold.max(self.config.idle_hold))
    }

    fn start_timer(&mut self, kind: TimerKind, duration: Duration, out: &mut Out<C, U>) {
        self.running[kind.index()] = true;
        out.push(Action::StartTimer { kind, duration });
    }

    fn stop_timer(&mut self, kind: TimerKind, out: &mut Out<C, U>) {
        if std::mem::take(&mut self.running[kind.index()]) {
            out.push(Action::StopTimer { kind });
        }
    }

    fn transition(&mut self, to: State, out: &mut Out<C, U>) {
        let from = self.state;
        if from != to {
            debug!(%from, %to, "fsm state change");
            self.state = to;
            out.push(Action::StateChanged { from, to });
        }
    }
}

fn sent_reason(n: &Notification) -> DownReason {
    DownReason::NotificationSent {
        code: n.code,
        subcode: n.subcode,
    }
}
