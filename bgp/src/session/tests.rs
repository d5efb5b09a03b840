use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use std::time::Duration;

use crate::fsm::TimerKind;
use crate::packet::open::capability_code;
use crate::packet::{AsPath, AsSegment, AsSegmentType, NextHop, PathAttributes};
use crate::rib::PathAttrs;
use crate::speaker::PeerConfig;

const US: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const THEM: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn config() -> PeerConfig {
    PeerConfig::new(IpAddr::V4(THEM), 65000)
}

/// Our OPEN and the neighbour's, both with the default capabilities.
fn opens(their_id: Ipv4Addr) -> (Open, Open) {
    let ours = our_open(&config().open_offer(65000, US));
    let theirs = our_open(&PeerConfig::new(IpAddr::V4(US), 65000).open_offer(65000, their_id));
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
    let open = our_open(&config().open_offer(4_200_000_000, US));
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
    let open = our_open(&c.open_offer(64512, US));
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
    // (main state, idle hold running, our dial in flight, connections)
    let table = [
        (State::Idle, false, false, 1, "refuse"),
        (State::Idle, true, false, 1, "restart"),
        (State::Connect, false, false, 1, "take over"),
        (State::Active, false, false, 1, "take over"),
        // Both ends dialling at once: keep ours, resolve on the OPENs.
        (State::Connect, false, true, 1, "second"),
        (State::Connect, false, true, 2, "refuse"),
        (State::OpenSent, false, false, 1, "second"),
        (State::OpenConfirm, false, false, 1, "second"),
        (State::Established, false, false, 1, "second"),
        (State::Established, false, false, 2, "refuse"),
    ];
    for (state, idle_hold, dialing, connections, expected) in table {
        let got = match incoming_connection(state, idle_hold, dialing, connections) {
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
    for (slot, kind) in TimerKind::ALL.into_iter().enumerate() {
        assert_eq!(kind.index(), slot);
        assert_eq!(
            crate::fsm::expired_timer(&kind.expiry::<(), ()>()),
            Some(kind)
        );
    }
}

#[test]
fn retry_timers_are_jittered_to_three_quarters_and_the_others_are_exact() {
    let base = Duration::from_secs(4);
    for kind in [TimerKind::ConnectRetry, TimerKind::IdleHold] {
        assert_eq!(jittered(kind, base, 0.0), Duration::from_secs(3));
        assert_eq!(jittered(kind, base, 0.5), Duration::from_millis(3500));
        assert!(jittered(kind, base, 0.999_999) <= base);
        // Out-of-range randomness cannot stretch or shrink it further.
        assert_eq!(jittered(kind, base, 7.0), base);
        assert_eq!(jittered(kind, base, -1.0), Duration::from_secs(3));
    }
    for kind in [TimerKind::Hold, TimerKind::Keepalive, TimerKind::DelayOpen] {
        assert_eq!(jittered(kind, base, 0.0), base);
    }
}
