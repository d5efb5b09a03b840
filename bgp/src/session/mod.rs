//! The peer session layer, sans-IO: everything between the codec and the
//! FSM that one neighbour's task decides, as pure functions.
//!
//! `speaker::peer` owns sockets, tasks and clocks; it asks this module what
//! to do and executes the answer. Nothing here reads a socket, spawns a task
//! or looks at the time, so every decision has a table test next to it (in
//! the style of rustybgp's `fsm.rs`: input in, decision out):
//!
//! * [`our_open`]: the OPEN we send a peer, from its configuration.
//! * [`inbound`]: what a received frame means for the session: an event for
//!   the FSM (with decode errors mapped 1:1 to the NOTIFICATION the FSM must
//!   send, by error code), an OPEN to negotiate, a route refresh to honour,
//!   or nothing.
//! * [`decide_open`]: a received OPEN, negotiated against ours and checked
//!   for a collision with the neighbour's other connection (RFC 4271 §6.8,
//!   via [`resolve_collision`]).
//! * [`incoming_connection`]: what to do with a connection the neighbour
//!   opened, given the state of the connections we have (a dial in flight
//!   is kept: the collision is resolved on the OPENs).
//! * [`jittered`]: the ConnectRetry and restart timers jittered (RFC 4271
//!   §10), so peers that failed together do not retry in step.
//! * [`route_refresh_honoured`]: a ROUTE-REFRESH is answered only on an
//!   Established session, for a family negotiated on it, and only when it is
//!   a request (not the peer's BoRR/EoRR markers).
//! * [`outgoing_updates`]: the RIB's batches encoded for one session: only
//!   negotiated families, the per-peer local AS applied, End-of-RIB last.

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, warn};

use crate::fsm::{self, Event, State, TimerKind};
use crate::packet::{
    self, build_announcements, build_withdrawals, AddPathFamily, AddPathMode, Capability,
    DecodeContext, DecodeError, EncodeContext, Family, GracefulRestart, GracefulRestartFamily,
    LongLivedFamily, Message, Negotiated, NegotiationError, Nlri, Notification, Open, RouteRefresh,
    RouteRefreshSubtype, Update, UpdateOutcome,
};
use crate::rib::UpdateBatch;
use local_as::apply_local_as;

mod collision;
mod local_as;
pub use collision::{resolve_collision, CollisionResolution, ConnectionOrigin};

/// An UPDATE as the FSM carries it to the RIB.
pub type ReceivedUpdate = (Update, UpdateOutcome);
/// The events of a session's FSM: negotiated capabilities ride on the OPEN,
/// UPDATEs with their RFC 7606 outcome.
pub type SessionEvent = Event<Negotiated, ReceivedUpdate>;

/// What we offer a peer in our OPEN (from its configuration: the speaker
/// builds it with `PeerConfig::open_offer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOffer {
    /// The AS we present to this peer.
    pub local_asn: u32,
    pub router_id: Ipv4Addr,
    pub hold_time: u16,
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
    /// Graceful restart with this restart time, seconds.
    pub graceful_restart: Option<u16>,
    /// Long-lived graceful restart with this stale time, seconds (only
    /// with `graceful_restart`).
    pub long_lived_stale_time: Option<u32>,
    pub add_path_receive: bool,
    pub add_path_send: bool,
}

/// Our OPEN for a peer: the families offered, route refresh, 4-octet AS,
/// graceful restart and ADD-PATH as offered, extended messages.
pub fn our_open(offer: &OpenOffer) -> Open {
    let mut families = Vec::new();
    if offer.ipv4_unicast {
        families.push(Family::IPV4_UNICAST);
    }
    if offer.ipv6_unicast {
        families.push(Family::IPV6_UNICAST);
    }
    let mut capabilities: Vec<Capability> = families
        .iter()
        .map(|f| Capability::Multiprotocol(*f))
        .collect();
    capabilities.push(Capability::RouteRefresh);
    capabilities.push(Capability::FourOctetAs(offer.local_asn));
    if let Some(restart_time) = offer.graceful_restart {
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
    if let (Some(stale_time), Some(_)) = (offer.long_lived_stale_time, offer.graceful_restart) {
        capabilities.push(Capability::LongLivedGracefulRestart(
            families
                .iter()
                .map(|f| LongLivedFamily {
                    family: *f,
                    forwarding_preserved: true,
                    stale_time,
                })
                .collect(),
        ));
    }
    let mode = match (offer.add_path_receive, offer.add_path_send) {
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
        asn: offer.local_asn,
        hold_time: offer.hold_time,
        bgp_id: offer.router_id,
        capabilities,
    }
}

/// What a received frame means for its session.
#[derive(Debug)]
pub enum Inbound {
    /// Feed this to the connection's FSM.
    Fsm(SessionEvent),
    /// The frame did not decode: log the error, then feed the event (the
    /// FSM answers with the NOTIFICATION the error maps to).
    Malformed(DecodeError, SessionEvent),
    /// The peer sent a NOTIFICATION: report it, then feed the event.
    Notification(Notification, SessionEvent),
    /// The peer's OPEN: see [`decide_open`].
    Open(Open),
    /// Send the peer our routes of this family again.
    RouteRefresh(Family),
    /// Nothing to do (why, for the debug log).
    Ignored(&'static str),
}

/// Decodes `frame` (one whole message, as `packet::split_frame` cut it) with
/// the session's context and says what it means. `state` and `negotiated`
/// are the receiving connection's, for the checks that depend on them.
pub fn inbound(
    frame: &[u8],
    decode: &DecodeContext,
    state: State,
    negotiated: Option<&Negotiated>,
) -> Inbound {
    let decoded = match packet::decode_message(frame, decode) {
        Ok(Some(decoded)) => decoded,
        Ok(None) => {
            // split_frame hands over whole messages only; a short frame is a
            // length the header lied about.
            let error = DecodeError::BadMessageLength {
                length: frame.len().min(usize::from(u16::MAX)) as u16,
            };
            let event = decode_error_event(&error);
            return Inbound::Malformed(error, event);
        }
        Err(error) => {
            let event = decode_error_event(&error);
            return Inbound::Malformed(error, event);
        }
    };
    match decoded.message {
        Message::Open(open) => Inbound::Open(open),
        Message::Update(update) => {
            if !decoded.outcome.reasons().is_empty() {
                warn!(outcome = ?decoded.outcome, "UPDATE with errors handled per RFC 7606");
            }
            Inbound::Fsm(Event::UpdateReceived((update, decoded.outcome)))
        }
        Message::Notification(n) => {
            let event = notification_event(&n);
            Inbound::Notification(n, event)
        }
        Message::Keepalive => Inbound::Fsm(Event::KeepaliveReceived),
        Message::RouteRefresh(rr) => {
            if route_refresh_honoured(state, negotiated, &rr) {
                Inbound::RouteRefresh(rr.family)
            } else {
                Inbound::Ignored(
                    "ROUTE-REFRESH before Established, for a family not negotiated, or not a request",
                )
            }
        }
    }
}

/// The FSM event for a message that failed to decode, by the error code of
/// the NOTIFICATION it maps to (RFC 4271 §6: header, OPEN or UPDATE error).
pub fn decode_error_event(error: &DecodeError) -> SessionEvent {
    let n = error.to_notification();
    match n.code {
        fsm::code::MESSAGE_HEADER => Event::HeaderError(n),
        fsm::code::OPEN_MESSAGE => Event::OpenMessageError(n),
        _ => Event::UpdateMessageError(n),
    }
}

/// The FSM event for a NOTIFICATION from the peer: "unsupported version
/// number" is its own event (RFC 4271 §8.1.2, event 24), every other is
/// event 25.
pub fn notification_event(n: &Notification) -> SessionEvent {
    if n.code == fsm::code::OPEN_MESSAGE && n.subcode == fsm::subcode::UNSUPPORTED_VERSION_NUMBER {
        Event::NotificationVersionError
    } else {
        Event::NotificationReceived {
            code: n.code,
            subcode: n.subcode,
        }
    }
}

/// Whether a ROUTE-REFRESH is answered with our routes of its family:
/// only on an Established session, only for a family negotiated on it
/// (RFC 2918 §4: a family not advertised at session establishment is
/// ignored), and only a request: the peer's own Beginning/End of Route
/// Refresh markers (RFC 7313 subtypes 1 and 2) and unknown subtypes ask
/// nothing of us.
pub fn route_refresh_honoured(
    state: State,
    negotiated: Option<&Negotiated>,
    refresh: &RouteRefresh,
) -> bool {
    state == State::Established
        && refresh.subtype == RouteRefreshSubtype::Normal
        && negotiated.is_some_and(|n| n.has_family(refresh.family))
}

/// The ROUTE-REFRESH requests (RFC 2918) that ask the neighbour for all
/// its routes again, one per negotiated family; none when it did not
/// advertise the capability (it would not understand them).
pub fn refresh_requests(negotiated: &Negotiated) -> Vec<RouteRefresh> {
    if !negotiated.route_refresh {
        return Vec::new();
    }
    negotiated
        .families
        .iter()
        .map(|family| RouteRefresh::request(*family))
        .collect()
}

/// What one connection to the neighbour looks like, for collision checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionView {
    pub state: State,
    /// The peer's OPEN was accepted on it (its BGP identifier is known).
    pub open_accepted: bool,
    pub origin: ConnectionOrigin,
}

/// What to do with an OPEN received on one connection.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenDecision {
    /// Negotiation failed: feed `Event::from_negotiation(Err(..))` (the FSM
    /// sends the OPEN error NOTIFICATION).
    Refuse(NegotiationError),
    /// Go on with this connection.
    Accept(Negotiated),
    /// This connection lost a collision: feed it `OpenCollisionDump`.
    CloseThis,
    /// The other connection lost a collision: feed it `OpenCollisionDump`,
    /// then accept on this one.
    CloseOtherThenAccept(Negotiated),
}

/// A received OPEN, negotiated against `ours` (capabilities, version, the
/// expected AS) and, if it is acceptable and the neighbour has a second
/// connection `other`, checked for a collision (RFC 4271 §6.8; collisions
/// against Established keep the established session).
pub fn decide_open(
    ours: &Open,
    theirs: &Open,
    remote_asn: u32,
    local_id: Ipv4Addr,
    this: ConnectionView,
    other: Option<ConnectionView>,
) -> OpenDecision {
    let negotiated = match packet::negotiate(ours, theirs, remote_asn) {
        Ok(negotiated) => negotiated,
        Err(error) => {
            warn!(%error, "OPEN rejected");
            return OpenDecision::Refuse(error);
        }
    };
    let Some(other) = other else {
        return OpenDecision::Accept(negotiated);
    };
    let resolution = resolve_collision(
        local_id,
        negotiated.peer_bgp_id,
        other.state,
        other.open_accepted,
        other.origin,
        this.origin,
        false,
    );
    debug!(?resolution, "collision check");
    match resolution {
        CollisionResolution::NoCollision => OpenDecision::Accept(negotiated),
        CollisionResolution::CloseNew => OpenDecision::CloseThis,
        CollisionResolution::CloseExisting => OpenDecision::CloseOtherThenAccept(negotiated),
    }
}

/// What to do with a connection the neighbour opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncomingDecision {
    /// Close it: the peer is administratively down (Idle with no restart
    /// pending), or a collision between two connections is already being
    /// resolved.
    Refuse(&'static str),
    /// The main connection has no transport and no dial in flight (Active,
    /// or Connect waiting to retry): carry on over this one.
    TakeOverMain,
    /// The main connection waits out a damped restart (Idle with the idle
    /// hold timer running): a connection from the neighbour is reason
    /// enough to restart now, then carry on over it.
    RestartMainOverIt,
    /// The main connection is dialling or past Active: run this one as a
    /// second connection until collision detection picks one (RFC 4271
    /// §6.8). Giving up our dial instead is what the neighbour may be doing
    /// with ours at the same moment: both would keep a connection the other
    /// side just closed.
    Second,
}

/// Decides for a connection arriving while the main connection is in
/// `main_state` (with `idle_hold_running` telling a damped restart from an
/// administrative stop, and `dialing` whether our own connection attempt is
/// in flight) and `connections` exist.
pub fn incoming_connection(
    main_state: State,
    idle_hold_running: bool,
    dialing: bool,
    connections: usize,
) -> IncomingDecision {
    match main_state {
        State::Idle if !idle_hold_running => IncomingDecision::Refuse("administratively down"),
        State::Idle => IncomingDecision::RestartMainOverIt,
        State::Connect | State::Active if !dialing => IncomingDecision::TakeOverMain,
        _ if connections > 1 => {
            IncomingDecision::Refuse("third connection while a collision is pending")
        }
        _ => IncomingDecision::Second,
    }
}

/// Per-peer settings [`outgoing_updates`] needs.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing {
    /// The speaker's AS (the one the RIB built the attributes with).
    pub speaker_asn: u32,
    /// The AS presented to this peer, if not the speaker's.
    pub local_asn: Option<u32>,
    pub remote_asn: u32,
}

/// The messages for `batches` then End-of-RIB for `end_of_rib`, encoded
/// for a session that negotiated `negotiated` with `encode`: batches of
/// families not negotiated are skipped; attributes are rewritten for a
/// per-peer local AS. A batch that cannot be encoded is logged and skipped
/// (its routes are not advertised), never sent half.
pub fn outgoing_updates(
    batches: Vec<UpdateBatch>,
    end_of_rib: Vec<Family>,
    negotiated: &Negotiated,
    encode: &EncodeContext,
    peer: Outgoing,
) -> Vec<Bytes> {
    let mut messages: Vec<Bytes> = Vec::new();
    for batch in batches {
        let result = match batch {
            UpdateBatch::Withdraw(prefixes) => {
                let Some(family) = prefixes.first().map(Family::unicast_of) else {
                    continue;
                };
                if !negotiated.has_family(family) {
                    continue;
                }
                let nlri: Vec<Nlri> = prefixes.iter().map(|p| Nlri::new(*p)).collect();
                build_withdrawals(family, &nlri, encode)
            }
            UpdateBatch::Announce { attrs, prefixes } => {
                let Some(family) = prefixes.first().map(Family::unicast_of) else {
                    continue;
                };
                if !negotiated.has_family(family) {
                    continue;
                }
                let nlri: Vec<Nlri> = prefixes.iter().map(|p| Nlri::new(*p)).collect();
                let rewritten = peer.local_asn.and_then(|local| {
                    apply_local_as(&attrs.attributes, peer.speaker_asn, local, peer.remote_asn)
                });
                let attributes = rewritten.as_ref().unwrap_or(&attrs.attributes);
                build_announcements(family, attributes, attrs.next_hop, &nlri, encode)
            }
        };
        match result {
            Ok(m) => messages.extend(m),
            Err(error) => warn!(%error, "cannot encode UPDATE; routes not advertised"),
        }
    }
    for family in end_of_rib {
        match Message::Update(Update::end_of_rib(family)).to_bytes(encode) {
            Ok(m) => messages.push(m),
            Err(error) => warn!(%error, "cannot encode End-of-RIB"),
        }
    }
    messages
}

/// How long a timer the FSM asked for really runs: the ConnectRetry timer
/// and the damped restart are jittered to 75–100 % of their value (RFC 4271
/// §10), so that peers that failed together (a fabric starting at once, a
/// link coming back) do not all retry in the same instant again; the
/// others run exactly. `random` is uniform in `[0, 1)`.
pub fn jittered(kind: TimerKind, duration: Duration, random: f64) -> Duration {
    match kind {
        TimerKind::ConnectRetry | TimerKind::IdleHold => {
            duration.mul_f64(0.75 + 0.25 * random.clamp(0.0, 1.0))
        }
        TimerKind::Hold | TimerKind::Keepalive | TimerKind::DelayOpen => duration,
    }
}

/// A NOTIFICATION for the log and the peer's status: `code/subcode
/// (description)`, then the shutdown communication or the data in hex.
pub fn describe(n: &Notification) -> String {
    let mut text = format!("{}/{} ({})", n.code, n.subcode, n.description());
    if let Some(Ok(message)) = n.shutdown_communication() {
        text.push_str(&format!(": \"{message}\""));
    } else if !n.data.is_empty() {
        let hex: String = n.data.iter().take(32).map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!(" data {hex}"));
    }
    text
}

#[cfg(test)]
mod tests;
