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
//!   via [`crate::fsm::resolve_collision`]).
//! * [`incoming_connection`]: what to do with a connection the neighbour
//!   opened, given the state of the connections we have.
//! * [`route_refresh_honoured`]: a ROUTE-REFRESH is answered only on an
//!   Established session, for a family negotiated on it, and only when it is
//!   a request (not the peer's BoRR/EoRR markers).
//! * [`outgoing_updates`]: the RIB's batches encoded for one session: only
//!   negotiated families, the per-peer local AS applied, End-of-RIB last.
//! * [`timer_slot`] / [`expiry_event`]: the FSM's timers as the task's slots
//!   and the event each one's expiry feeds back.

use std::net::Ipv4Addr;

use bytes::Bytes;
use tracing::{debug, warn};

use crate::fsm::{
    self, resolve_collision, CollisionResolution, ConnectionOrigin, Event, State, TimerKind,
};
use crate::packet::{
    self, build_announcements, build_withdrawals, AddPathFamily, AddPathMode, Capability,
    DecodeContext, DecodeError, EncodeContext, Family, GracefulRestart, GracefulRestartFamily,
    Message, Negotiated, NegotiationError, Nlri, Notification, Open, RouteRefresh,
    RouteRefreshSubtype, Update, UpdateOutcome,
};
use crate::rib::UpdateBatch;
use crate::speaker::PeerConfig;
use local_as::apply_local_as;

mod local_as;

/// An UPDATE as the FSM carries it to the RIB.
pub type ReceivedUpdate = (Update, UpdateOutcome);
/// The events of a session's FSM: negotiated capabilities ride on the OPEN,
/// UPDATEs with their RFC 7606 outcome.
pub type SessionEvent = Event<Negotiated, ReceivedUpdate>;

/// Our OPEN for a peer: the families it is configured for, route refresh,
/// 4-octet AS, graceful restart and ADD-PATH as configured, extended
/// messages.
pub fn our_open(config: &PeerConfig, local_asn: u32, router_id: Ipv4Addr) -> Open {
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
    /// The main connection has no transport yet (Connect or Active): give
    /// up our own attempt and carry on over this one.
    TakeOverMain,
    /// The main connection waits out a damped restart (Idle with the idle
    /// hold timer running): a connection from the neighbour is reason
    /// enough to restart now, then carry on over it.
    RestartMainOverIt,
    /// The main connection is past Active: run this one as a second
    /// connection until collision detection picks one.
    Second,
}

/// Decides for a connection arriving while the main connection is in
/// `main_state` (with `idle_hold_running` telling a damped restart from an
/// administrative stop) and `connections` exist.
pub fn incoming_connection(
    main_state: State,
    idle_hold_running: bool,
    connections: usize,
) -> IncomingDecision {
    match main_state {
        State::Idle if !idle_hold_running => IncomingDecision::Refuse("administratively down"),
        State::Idle => IncomingDecision::RestartMainOverIt,
        State::Connect | State::Active => IncomingDecision::TakeOverMain,
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

/// How many timers a connection has: one slot per [`TimerKind`].
pub const TIMER_SLOTS: usize = 5;

/// Every timer kind, in slot order.
pub const TIMERS: [TimerKind; TIMER_SLOTS] = [
    TimerKind::ConnectRetry,
    TimerKind::Hold,
    TimerKind::Keepalive,
    TimerKind::DelayOpen,
    TimerKind::IdleHold,
];

/// The slot a connection keeps `kind`'s deadline in (at most one per kind:
/// starting a timer replaces the running one).
pub fn timer_slot(kind: TimerKind) -> usize {
    match kind {
        TimerKind::ConnectRetry => 0,
        TimerKind::Hold => 1,
        TimerKind::Keepalive => 2,
        TimerKind::DelayOpen => 3,
        TimerKind::IdleHold => 4,
    }
}

/// The event a timer's expiry feeds back to the FSM.
pub fn expiry_event(kind: TimerKind) -> SessionEvent {
    match kind {
        TimerKind::ConnectRetry => Event::ConnectRetryTimerExpired,
        TimerKind::Hold => Event::HoldTimerExpired,
        TimerKind::Keepalive => Event::KeepaliveTimerExpired,
        TimerKind::DelayOpen => Event::DelayOpenTimerExpired,
        TimerKind::IdleHold => Event::IdleHoldTimerExpired,
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
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use super::*;
    use crate::packet::open::capability_code;
    use crate::packet::{AsPath, AsSegment, AsSegmentType, NextHop, PathAttributes};
    use crate::rib::PathAttrs;

    const US: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const THEM: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn config() -> PeerConfig {
        PeerConfig::new(IpAddr::V4(THEM), 65000)
    }

    /// Our OPEN and the neighbour's, both with the default capabilities.
    fn opens(their_id: Ipv4Addr) -> (Open, Open) {
        let ours = our_open(&config(), 65000, US);
        let theirs = our_open(&PeerConfig::new(IpAddr::V4(US), 65000), 65000, their_id);
        (ours, theirs)
    }

    fn negotiated() -> Negotiated {
        let (ours, theirs) = opens(THEM);
        packet::negotiate(&ours, &theirs, 65000).unwrap()
    }

    fn v4_only() -> Negotiated {
        let mut n = negotiated();
        n.families = vec![Family::IPV4_UNICAST];
        n
    }

    fn bytes(message: Message) -> Vec<u8> {
        message
            .to_bytes(&EncodeContext::default())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn open_offers_the_configured_capabilities() {
        let open = our_open(&config(), 4_200_000_000, US);
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
        let open = our_open(&c, 64512, US);
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
        let shutdown = Notification::administrative_shutdown(Some("maintenance"));
        let text = describe(&shutdown);
        assert!(text.starts_with("6/2 ("), "{text}");
        assert!(text.ends_with(": \"maintenance\""), "{text}");
        assert_eq!(
            describe(&Notification::new(4, 0)),
            "4/0 (hold timer expired)"
        );
        let mut with_data = Notification::new(3, 1);
        with_data.data = vec![0xde, 0xad];
        assert!(describe(&with_data).ends_with(" data dead"));
    }

    #[test]
    fn inbound_frames_become_session_decisions() {
        let established = negotiated();
        let ctx = DecodeContext::default();
        let refresh = |family| {
            bytes(Message::RouteRefresh(RouteRefresh {
                family,
                subtype: packet::RouteRefreshSubtype::Normal,
            }))
        };
        let mut bad_marker = bytes(Message::Keepalive);
        bad_marker[0] = 0;
        // (frame, state, expected decision)
        let table: Vec<(Vec<u8>, State, &str)> = vec![
            (
                bytes(Message::Keepalive),
                State::OpenConfirm,
                "fsm KeepaliveReceived",
            ),
            (bad_marker, State::Established, "malformed HeaderError 1/1"),
            (
                bytes(Message::Notification(Notification::new(2, 1))),
                State::OpenSent,
                "notification NotificationVersionError",
            ),
            (
                bytes(Message::Notification(Notification::new(6, 2))),
                State::Established,
                "notification NotificationReceived 6/2",
            ),
            (bytes(Message::Open(opens(THEM).1)), State::OpenSent, "open"),
            (
                bytes(Message::Update(Update::end_of_rib(Family::IPV4_UNICAST))),
                State::Established,
                "fsm UpdateReceived",
            ),
            (refresh(Family::IPV4_UNICAST), State::Established, "refresh"),
            (refresh(Family::IPV4_UNICAST), State::OpenConfirm, "ignored"),
        ];
        for (frame, state, expected) in table {
            let negotiated = (state == State::Established).then_some(&established);
            let got = match inbound(&frame, &ctx, state, negotiated) {
                Inbound::Fsm(Event::KeepaliveReceived) => "fsm KeepaliveReceived".to_string(),
                Inbound::Fsm(Event::UpdateReceived(_)) => "fsm UpdateReceived".to_string(),
                Inbound::Malformed(_, Event::HeaderError(n)) => {
                    format!("malformed HeaderError {}/{}", n.code, n.subcode)
                }
                Inbound::Notification(_, Event::NotificationVersionError) => {
                    "notification NotificationVersionError".to_string()
                }
                Inbound::Notification(_, Event::NotificationReceived { code, subcode }) => {
                    format!("notification NotificationReceived {code}/{subcode}")
                }
                Inbound::Open(_) => "open".to_string(),
                Inbound::RouteRefresh(_) => "refresh".to_string(),
                Inbound::Ignored(_) => "ignored".to_string(),
                other => format!("{other:?}"),
            };
            assert_eq!(got, expected, "in {state}");
        }
    }

    #[test]
    fn route_refresh_is_honoured_only_for_requests_of_negotiated_families() {
        use RouteRefreshSubtype::*;
        let v4 = v4_only();
        let request = |family, subtype| RouteRefresh { family, subtype };
        let table = [
            (
                State::Established,
                Some(&v4),
                request(Family::IPV4_UNICAST, Normal),
                true,
            ),
            (
                State::OpenConfirm,
                Some(&v4),
                request(Family::IPV4_UNICAST, Normal),
                false,
            ),
            (
                State::Established,
                None,
                request(Family::IPV4_UNICAST, Normal),
                false,
            ),
            // RFC 2918 §4: not negotiated on this session.
            (
                State::Established,
                Some(&v4),
                request(Family::IPV6_UNICAST, Normal),
                false,
            ),
            // RFC 7313: the peer's markers around its own re-advertisement.
            (
                State::Established,
                Some(&v4),
                request(Family::IPV4_UNICAST, BeginOfRefresh),
                false,
            ),
            (
                State::Established,
                Some(&v4),
                request(Family::IPV4_UNICAST, EndOfRefresh),
                false,
            ),
            (
                State::Established,
                Some(&v4),
                request(Family::IPV4_UNICAST, Other(9)),
                false,
            ),
        ];
        for (state, negotiated, refresh, expected) in table {
            assert_eq!(
                route_refresh_honoured(state, negotiated, &refresh),
                expected,
                "{state} {refresh:?}"
            );
        }
    }

    #[test]
    fn a_frame_shorter_than_its_header_says_is_a_length_error() {
        let mut frame = bytes(Message::Keepalive);
        frame[17] = 40; // the length field claims 40 octets
        match inbound(&frame, &DecodeContext::default(), State::Established, None) {
            Inbound::Malformed(_, Event::HeaderError(n)) => {
                assert_eq!((n.code, n.subcode), (1, 2));
            }
            other => panic!("{other:?}"),
        }
    }

    fn view(state: State, open_accepted: bool, origin: ConnectionOrigin) -> ConnectionView {
        ConnectionView {
            state,
            open_accepted,
            origin,
        }
    }

    #[test]
    fn open_decisions_negotiate_then_resolve_collisions() {
        use ConnectionOrigin::{Local, Remote};
        let lower = Ipv4Addr::new(192, 0, 2, 0); // below US
        let higher = THEM; // above US
                           // (peer's id, this connection, the other one, expected)
        let table = [
            // No second connection: accepted.
            (higher, view(State::OpenSent, false, Local), None, "accept"),
            // The other is still dialling: no collision.
            (
                higher,
                view(State::OpenSent, false, Remote),
                Some(view(State::Connect, false, Local)),
                "accept",
            ),
            // The other sent OPEN but has not heard one: no collision yet.
            (
                higher,
                view(State::OpenSent, false, Remote),
                Some(view(State::OpenSent, false, Local)),
                "accept",
            ),
            // Their id is higher: keep the connection they opened.
            (
                higher,
                view(State::OpenSent, false, Remote),
                Some(view(State::OpenConfirm, true, Local)),
                "close other",
            ),
            (
                higher,
                view(State::OpenSent, false, Local),
                Some(view(State::OpenConfirm, true, Remote)),
                "close this",
            ),
            // Our id is higher: keep the connection we opened.
            (
                lower,
                view(State::OpenSent, false, Remote),
                Some(view(State::OpenConfirm, true, Local)),
                "close this",
            ),
            (
                lower,
                view(State::OpenSent, false, Local),
                Some(view(State::OpenConfirm, true, Remote)),
                "close other",
            ),
            // An established session is never given up for a new one.
            (
                higher,
                view(State::OpenSent, false, Remote),
                Some(view(State::Established, true, Local)),
                "close this",
            ),
        ];
        for (their_id, this, other, expected) in table {
            let (ours, theirs) = opens(their_id);
            let got = match decide_open(&ours, &theirs, 65000, US, this, other) {
                OpenDecision::Accept(n) => {
                    assert_eq!(n.peer_bgp_id, their_id);
                    "accept"
                }
                OpenDecision::CloseThis => "close this",
                OpenDecision::CloseOtherThenAccept(_) => "close other",
                OpenDecision::Refuse(e) => panic!("refused: {e}"),
            };
            assert_eq!(got, expected, "{their_id} {this:?} {other:?}");
        }
    }

    #[test]
    fn an_unacceptable_open_is_refused_before_any_collision_check() {
        let (ours, theirs) = opens(THEM);
        let decision = decide_open(
            &ours,
            &theirs,
            65001, // we expect another AS
            US,
            view(State::OpenSent, false, ConnectionOrigin::Remote),
            Some(view(State::OpenConfirm, true, ConnectionOrigin::Local)),
        );
        let OpenDecision::Refuse(error) = decision else {
            panic!("{decision:?}");
        };
        let n = error.to_notification();
        assert_eq!((n.code, n.subcode), (2, 2), "bad peer AS");
    }

    #[test]
    fn incoming_connections_by_the_main_connections_state() {
        use IncomingDecision::*;
        let table = [
            (State::Idle, false, 1, "refuse"),
            (State::Idle, true, 1, "restart"),
            (State::Connect, false, 1, "take over"),
            (State::Active, false, 1, "take over"),
            (State::OpenSent, false, 1, "second"),
            (State::OpenConfirm, false, 1, "second"),
            (State::Established, false, 1, "second"),
            (State::Established, false, 2, "refuse"),
        ];
        for (state, idle_hold, connections, expected) in table {
            let got = match incoming_connection(state, idle_hold, connections) {
                Refuse(_) => "refuse",
                RestartMainOverIt => "restart",
                TakeOverMain => "take over",
                Second => "second",
            };
            assert_eq!(
                got, expected,
                "{state} idle hold {idle_hold} x{connections}"
            );
        }
    }

    fn announce(prefix: &str) -> UpdateBatch {
        UpdateBatch::Announce {
            attrs: Arc::new(PathAttrs {
                attributes: PathAttributes {
                    origin: Some(packet::Origin::Igp),
                    as_path: Some(AsPath {
                        segments: vec![AsSegment {
                            kind: AsSegmentType::Sequence,
                            asns: vec![65000],
                        }],
                    }),
                    ..Default::default()
                },
                next_hop: Some(NextHop::V4(US)),
            }),
            prefixes: vec![prefix.parse().unwrap()],
        }
    }

    fn decode_all(messages: &[Bytes]) -> Vec<Update> {
        messages
            .iter()
            .map(|m| {
                match packet::decode_message(m, &DecodeContext::default())
                    .unwrap()
                    .unwrap()
                    .message
                {
                    Message::Update(u) => u,
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn outgoing_updates_skip_families_not_negotiated_and_end_with_end_of_rib() {
        let peer = Outgoing {
            speaker_asn: 65000,
            local_asn: None,
            remote_asn: 65001,
        };
        let messages = outgoing_updates(
            vec![
                announce("10.0.0.0/26"),
                announce("fd00::/122"),
                UpdateBatch::Withdraw(vec!["fd00:1::/122".parse().unwrap()]),
                UpdateBatch::Withdraw(vec!["10.0.1.0/26".parse().unwrap()]),
            ],
            vec![Family::IPV4_UNICAST],
            &v4_only(),
            &EncodeContext::default(),
            peer,
        );
        let updates = decode_all(&messages);
        assert_eq!(updates.len(), 3, "{updates:?}");
        assert!(updates[0].announces());
        let withdrawn = updates[1].clone().into_withdrawals();
        assert_eq!(withdrawn.len(), 1);
        assert_eq!(withdrawn[0].0, Family::IPV4_UNICAST);
        assert_eq!(updates[2].end_of_rib_family(), Some(Family::IPV4_UNICAST));
    }

    #[test]
    fn outgoing_updates_present_the_per_peer_local_as() {
        let peer = Outgoing {
            speaker_asn: 65000,
            local_asn: Some(64999),
            remote_asn: 65001,
        };
        let messages = outgoing_updates(
            vec![announce("10.0.0.0/26")],
            Vec::new(),
            &negotiated(),
            &EncodeContext::default(),
            peer,
        );
        let updates = decode_all(&messages);
        let path = updates[0].attributes.as_path.as_ref().unwrap();
        assert_eq!(path.segments[0].asns, vec![64999]);
    }

    #[test]
    fn every_timer_has_its_own_slot_and_expiry() {
        for (slot, kind) in TIMERS.into_iter().enumerate() {
            assert_eq!(timer_slot(kind), slot);
            assert_eq!(crate::fsm::expired_timer(&expiry_event(kind)), Some(kind));
        }
    }
}
