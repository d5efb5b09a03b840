//! The FSM's vocabulary: its states, timers, input events, output actions
//! and configuration, and the glue from the codec's OPEN negotiation to an
//! event. Types only; what the FSM does with them is in the parent module.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The six states of RFC 4271 §8.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The timers the FSM asks the session layer to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    ConnectRetry,
    Hold,
    Keepalive,
    DelayOpen,
    /// Damping delay before an automatic restart after an error.
    IdleHold,
}

impl TimerKind {
    /// Every timer, in [`TimerKind::index`] order.
    pub const ALL: [TimerKind; 5] = [
        TimerKind::ConnectRetry,
        TimerKind::Hold,
        TimerKind::Keepalive,
        TimerKind::DelayOpen,
        TimerKind::IdleHold,
    ];

    /// A dense index, for per-timer arrays (at most one of each kind runs).
    pub fn index(self) -> usize {
        match self {
            TimerKind::ConnectRetry => 0,
            TimerKind::Hold => 1,
            TimerKind::Keepalive => 2,
            TimerKind::DelayOpen => 3,
            TimerKind::IdleHold => 4,
        }
    }

    /// The event this timer's expiry feeds back to the FSM.
    pub fn expiry<C, U>(self) -> Event<C, U> {
        match self {
            TimerKind::ConnectRetry => Event::ConnectRetryTimerExpired,
            TimerKind::Hold => Event::HoldTimerExpired,
            TimerKind::Keepalive => Event::KeepaliveTimerExpired,
            TimerKind::DelayOpen => Event::DelayOpenTimerExpired,
            TimerKind::IdleHold => Event::IdleHoldTimerExpired,
        }
    }
}

/// The one NOTIFICATION type: the codec's (the FSM sends and receives the
/// same messages the codec encodes and decodes).
pub use crate::packet::Notification;

/// What the FSM needs to know about a received OPEN. `C` is the opaque result
/// of capability negotiation (the codec's `packet::negotiate`); the FSM only
/// carries it into [`Action::SessionEstablished`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSummary<C> {
    /// The peer's AS, already resolved from the 4-octet-AS capability.
    pub peer_asn: u32,
    /// Hold time the peer proposes, seconds.
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: C,
}

/// Inputs to [`Fsm::process`](super::Fsm::process), named after RFC 4271 §8.1 events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<C = (), U = ()> {
    /// Event 1.
    ManualStart,
    /// Event 4: start, but only wait for the peer to connect.
    ManualStartPassive,
    /// Event 2: administrative shutdown, optionally with a shutdown
    /// communication for the peer (RFC 8203/9003).
    ManualStop { communication: Option<String> },
    /// Event 3 (Event 5 when the configuration says passive).
    AutomaticStart,
    /// Event 9.
    ConnectRetryTimerExpired,
    /// Event 10.
    HoldTimerExpired,
    /// Event 11.
    KeepaliveTimerExpired,
    /// Event 12.
    DelayOpenTimerExpired,
    /// Event 13.
    IdleHoldTimerExpired,
    /// Event 14: an incoming connection was accepted for this peer.
    TcpConnectionValid,
    /// Event 16: our outgoing connection completed.
    TcpConnectionAcknowledged,
    /// Event 17: an incoming connection completed.
    TcpConnectionConfirmed,
    /// Event 18.
    TcpConnectionFails,
    /// Event 19/20: a syntactically valid OPEN whose capabilities negotiated.
    OpenReceived(OpenSummary<C>),
    /// Event 21: bad message header.
    HeaderError(Notification),
    /// Event 22: bad OPEN (including failed capability negotiation).
    OpenMessageError(Notification),
    /// Event 23: collision resolution chose to drop this connection.
    OpenCollisionDump,
    /// Event 24: the peer sent NOTIFICATION with an OPEN version error.
    NotificationVersionError,
    /// Event 25.
    NotificationReceived { code: u8, subcode: u8 },
    /// Event 26.
    KeepaliveReceived,
    /// Event 27.
    UpdateReceived(U),
    /// Event 28.
    UpdateMessageError(Notification),
    /// Not in RFC 4271: a failure detector (BFD, RFC 5882 §10.2) says the
    /// peer is unreachable. From OpenSent on: Cease "BFD Down" (RFC 9384)
    /// and Idle, like any error; before that it changes nothing.
    PeerFailureDetected,
    /// Event 8 (AutomaticStop), with the NOTIFICATION the local system
    /// ends the session with (a prefix limit: Cease "Maximum Number of
    /// Prefixes Reached", RFC 4486). From OpenSent on: that NOTIFICATION
    /// and Idle with the damped automatic restart; before, nothing.
    AutomaticStop(Notification),
}

/// Why an Established session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    AdminShutdown,
    HoldTimerExpired,
    /// We sent this NOTIFICATION (other than hold expiry or shutdown).
    NotificationSent {
        code: u8,
        subcode: u8,
    },
    NotificationReceived {
        code: u8,
        subcode: u8,
    },
    TransportFailed,
    CollisionResolution,
}

/// Parameters that were agreed when the session came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstablishedSession<C> {
    pub peer_asn: u32,
    pub peer_id: Ipv4Addr,
    /// Negotiated hold time; zero means no hold timer and no keepalives.
    pub hold_time: Duration,
    pub keepalive_time: Duration,
    pub capabilities: C,
}

/// Outputs of [`Fsm::process`](super::Fsm::process); execute them in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<C = (), U = ()> {
    /// Open a TCP connection to the peer.
    Connect,
    /// Close (or abort) this FSM's connection, or connection attempt.
    Disconnect,
    SendOpen,
    SendKeepalive,
    SendNotification(Notification),
    StartTimer {
        kind: TimerKind,
        duration: Duration,
    },
    StopTimer {
        kind: TimerKind,
    },
    StateChanged {
        from: State,
        to: State,
    },
    SessionEstablished(EstablishedSession<C>),
    /// The Established session ended: the RIB must flush this peer's routes.
    SessionDown {
        reason: DownReason,
    },
    /// Hand this UPDATE to the RIB.
    DeliverUpdate(U),
}

/// Per-peer FSM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmConfig {
    pub local_asn: u32,
    pub local_id: Ipv4Addr,
    /// The AS we expect the peer to announce; `None` accepts any.
    pub peer_asn: Option<u32>,
    /// Hold time we propose, seconds (0 disables keepalives and hold timer).
    pub hold_time: u16,
    /// Keepalive interval when the negotiated hold time equals ours; otherwise
    /// a third of the negotiated hold time. `None`: a third of `hold_time`.
    pub keepalive_time: Option<u16>,
    /// RFC 4271 suggests 120 s; Calico's BIRD uses 5 s.
    pub connect_retry: Duration,
    /// Never initiate the connection, only accept.
    pub passive: bool,
    /// Wait this long after the connection is up before sending OPEN
    /// (RFC 4271 DelayOpen); `None` disables.
    pub delay_open: Option<Duration>,
    /// NOTIFICATION for errors seen before we sent OPEN (only possible with
    /// DelayOpen).
    pub send_notification_without_open: bool,
    /// First automatic-restart delay after an error.
    pub idle_hold: Duration,
    /// Upper bound of the exponential restart backoff.
    pub max_idle_hold: Duration,
}

impl FsmConfig {
    pub fn new(local_asn: u32, local_id: Ipv4Addr) -> Self {
        Self {
            local_asn,
            local_id,
            peer_asn: None,
            hold_time: 90,
            keepalive_time: None,
            connect_retry: Duration::from_secs(120),
            passive: false,
            delay_open: None,
            send_notification_without_open: false,
            idle_hold: Duration::from_secs(1),
            max_idle_hold: Duration::from_secs(120),
        }
    }
}

// ----- from the codec's negotiation ----------------------------------------
//
// The FSM is generic over what negotiation produced (`C`) and what an
// UPDATE is (`U`), so its tests need no codec; this is the glue for the
// session layer, which uses the codec's types.

impl OpenSummary<crate::packet::Negotiated> {
    /// The summary of a peer OPEN that `packet::negotiate` accepted; the
    /// negotiated parameters ride along as the capabilities.
    pub fn from_negotiated(negotiated: crate::packet::Negotiated) -> Self {
        Self {
            peer_asn: negotiated.peer_asn,
            // Already min(ours, peer's); negotiating again is idempotent.
            hold_time: negotiated.hold_time,
            bgp_id: negotiated.peer_bgp_id,
            capabilities: negotiated,
        }
    }
}

impl<U> Event<crate::packet::Negotiated, U> {
    /// The event for a received OPEN, from the outcome of
    /// `packet::negotiate(our_open, peer_open, expected_asn)`.
    pub fn from_negotiation(
        outcome: Result<crate::packet::Negotiated, crate::packet::NegotiationError>,
    ) -> Self {
        match outcome {
            Ok(negotiated) => Event::OpenReceived(OpenSummary::from_negotiated(negotiated)),
            Err(error) => Event::OpenMessageError(error.to_notification()),
        }
    }
}

/// The timer whose expiry `event` is, if it is one.
pub(crate) fn expired_timer<C, U>(event: &Event<C, U>) -> Option<TimerKind> {
    Some(match event {
        Event::ConnectRetryTimerExpired => TimerKind::ConnectRetry,
        Event::HoldTimerExpired => TimerKind::Hold,
        Event::KeepaliveTimerExpired => TimerKind::Keepalive,
        Event::DelayOpenTimerExpired => TimerKind::DelayOpen,
        Event::IdleHoldTimerExpired => TimerKind::IdleHold,
        _ => return None,
    })
}

pub(super) fn event_name<C, U>(event: &Event<C, U>) -> &'static str {
    match event {
        Event::ManualStart => "ManualStart",
        Event::ManualStartPassive => "ManualStartPassive",
        Event::ManualStop { .. } => "ManualStop",
        Event::AutomaticStart => "AutomaticStart",
        Event::ConnectRetryTimerExpired => "ConnectRetryTimerExpired",
        Event::HoldTimerExpired => "HoldTimerExpired",
        Event::KeepaliveTimerExpired => "KeepaliveTimerExpired",
        Event::DelayOpenTimerExpired => "DelayOpenTimerExpired",
        Event::IdleHoldTimerExpired => "IdleHoldTimerExpired",
        Event::TcpConnectionValid => "TcpConnectionValid",
        Event::TcpConnectionAcknowledged => "TcpConnectionAcknowledged",
        Event::TcpConnectionConfirmed => "TcpConnectionConfirmed",
        Event::TcpConnectionFails => "TcpConnectionFails",
        Event::OpenReceived(_) => "OpenReceived",
        Event::HeaderError(_) => "HeaderError",
        Event::OpenMessageError(_) => "OpenMessageError",
        Event::OpenCollisionDump => "OpenCollisionDump",
        Event::NotificationVersionError => "NotificationVersionError",
        Event::NotificationReceived { .. } => "NotificationReceived",
        Event::KeepaliveReceived => "KeepaliveReceived",
        Event::UpdateReceived(_) => "UpdateReceived",
        Event::UpdateMessageError(_) => "UpdateMessageError",
        Event::PeerFailureDetected => "PeerFailureDetected",
        Event::AutomaticStop(_) => "AutomaticStop",
    }
}
