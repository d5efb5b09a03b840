//! RFC 4271 §8.2.2 transitions of the sans-IO FSM, with the exact actions
//! expected for each, plus collision resolution and a no-panic proptest.

use std::net::Ipv4Addr;
use std::time::Duration;

use brindle_bgp::fsm::{
    code, negotiate_hold_time, subcode, Action, DownReason, EstablishedSession, Event, Fsm,
    FsmConfig, Notification, OpenSummary, State, TimerKind, LARGE_HOLD_TIME,
};
use brindle_bgp::session::{resolve_collision, CollisionResolution, ConnectionOrigin};
use proptest::prelude::*;

type TestFsm = Fsm<&'static str, u32>;
type TestEvent = Event<&'static str, u32>;
type TestAction = Action<&'static str, u32>;

const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const CR: Duration = Duration::from_secs(5);

fn config() -> FsmConfig {
    let mut c = FsmConfig::new(64512, LOCAL_ID);
    c.peer_asn = Some(64513);
    c.hold_time = 90;
    c.connect_retry = CR;
    c.idle_hold = Duration::from_secs(1);
    c.max_idle_hold = Duration::from_secs(8);
    c
}

fn open(hold: u16) -> TestEvent {
    Event::OpenReceived(OpenSummary {
        peer_asn: 64513,
        hold_time: hold,
        bgp_id: PEER_ID,
        capabilities: "caps",
    })
}

fn start_timer(kind: TimerKind, secs: u64) -> TestAction {
    Action::StartTimer {
        kind,
        duration: Duration::from_secs(secs),
    }
}

fn stop_timer(kind: TimerKind) -> TestAction {
    Action::StopTimer { kind }
}

fn changed(from: State, to: State) -> TestAction {
    Action::StateChanged { from, to }
}

fn notif(code: u8, subcode: u8) -> TestAction {
    Action::SendNotification(Notification::new(code, subcode))
}

fn fsm_in(state: State, cfg: FsmConfig) -> TestFsm {
    let mut fsm = TestFsm::new(cfg);
    let path: Vec<TestEvent> = match state {
        State::Idle => vec![],
        State::Connect => vec![Event::ManualStart],
        State::Active => vec![Event::ManualStartPassive],
        State::OpenSent => vec![Event::ManualStart, Event::TcpConnectionAcknowledged],
        State::OpenConfirm => vec![
            Event::ManualStart,
            Event::TcpConnectionAcknowledged,
            open(90),
        ],
        State::Established => vec![
            Event::ManualStart,
            Event::TcpConnectionAcknowledged,
            open(90),
            Event::KeepaliveReceived,
        ],
    };
    for e in path {
        fsm.process(e);
    }
    assert_eq!(fsm.state(), state);
    fsm
}

/// The actions every error exit to Idle ends with when a restart is due.
fn idle_tail(from: State) -> Vec<TestAction> {
    vec![
        changed(from, State::Idle),
        start_timer(TimerKind::IdleHold, 1),
    ]
}

// ----- Idle ----------------------------------------------------------------

#[test]
fn idle_manual_start_connects() {
    let mut fsm = TestFsm::new(config());
    assert_eq!(
        fsm.process(Event::ManualStart),
        vec![
            start_timer(TimerKind::ConnectRetry, 5),
            Action::Connect,
            changed(State::Idle, State::Connect),
        ]
    );
}

#[test]
fn idle_manual_start_passive_waits_in_active() {
    let mut fsm = TestFsm::new(config());
    assert_eq!(
        fsm.process(Event::ManualStartPassive),
        vec![
            start_timer(TimerKind::ConnectRetry, 5),
            changed(State::Idle, State::Active),
        ]
    );
}

#[test]
fn idle_automatic_start_honours_passive_config() {
    let mut cfg = config();
    cfg.passive = true;
    let mut fsm = TestFsm::new(cfg);
    fsm.process(Event::AutomaticStart);
    assert_eq!(fsm.state(), State::Active);
}

#[test]
fn idle_ignores_everything_else_and_refuses_connections() {
    for event in [
        Event::ConnectRetryTimerExpired,
        Event::HoldTimerExpired,
        Event::KeepaliveReceived,
        Event::UpdateReceived(1),
        Event::NotificationReceived {
            code: 6,
            subcode: 2,
        },
        open(90),
        Event::ManualStop {
            communication: None,
        },
    ] {
        let mut fsm = TestFsm::new(config());
        assert_eq!(fsm.process(event), vec![]);
        assert_eq!(fsm.state(), State::Idle);
    }
    let mut fsm = TestFsm::new(config());
    assert_eq!(
        fsm.process(Event::TcpConnectionConfirmed),
        vec![Action::Disconnect]
    );
}

// ----- Connect -------------------------------------------------------------

#[test]
fn connect_tcp_up_sends_open_with_large_hold() {
    for event in [
        Event::TcpConnectionAcknowledged,
        Event::TcpConnectionConfirmed,
    ] {
        let mut fsm = fsm_in(State::Connect, config());
        assert_eq!(
            fsm.process(event),
            vec![
                stop_timer(TimerKind::ConnectRetry),
                Action::SendOpen,
                Action::StartTimer {
                    kind: TimerKind::Hold,
                    duration: LARGE_HOLD_TIME
                },
                changed(State::Connect, State::OpenSent),
            ]
        );
    }
}

#[test]
fn connect_retry_expiry_redials() {
    let mut fsm = fsm_in(State::Connect, config());
    assert_eq!(
        fsm.process(Event::ConnectRetryTimerExpired),
        vec![
            Action::Disconnect,
            start_timer(TimerKind::ConnectRetry, 5),
            Action::Connect,
        ]
    );
    assert_eq!(fsm.state(), State::Connect);
}

#[test]
fn connect_tcp_failure_goes_idle_and_schedules_restart() {
    let mut fsm = fsm_in(State::Connect, config());
    let mut expected = vec![Action::Disconnect, stop_timer(TimerKind::ConnectRetry)];
    expected.extend(idle_tail(State::Connect));
    assert_eq!(fsm.process(Event::TcpConnectionFails), expected);
    assert_eq!(fsm.connect_retry_counter(), 1);
    // The idle hold expiry restarts the FSM on its own.
    assert_eq!(
        fsm.process(Event::IdleHoldTimerExpired),
        vec![
            start_timer(TimerKind::ConnectRetry, 5),
            Action::Connect,
            changed(State::Idle, State::Connect),
        ]
    );
}

#[test]
fn connect_manual_stop_goes_idle_without_notification_or_restart() {
    let mut fsm = fsm_in(State::Connect, config());
    assert_eq!(
        fsm.process(Event::ManualStop {
            communication: Some("bye".into())
        }),
        vec![
            Action::Disconnect,
            stop_timer(TimerKind::ConnectRetry),
            changed(State::Connect, State::Idle),
        ]
    );
    assert_eq!(fsm.connect_retry_counter(), 0);
    assert!(!fsm.is_timer_running(TimerKind::IdleHold));
}

#[test]
fn connect_unexpected_message_goes_idle() {
    let mut fsm = fsm_in(State::Connect, config());
    let actions = fsm.process(Event::KeepaliveReceived);
    assert_eq!(fsm.state(), State::Idle);
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::SendNotification(_))));
}

// ----- DelayOpen ------------------------------------------------------------

fn delay_config() -> FsmConfig {
    let mut c = config();
    c.delay_open = Some(Duration::from_secs(3));
    c
}

#[test]
fn delay_open_waits_then_sends_open() {
    let mut fsm = fsm_in(State::Connect, delay_config());
    assert_eq!(
        fsm.process(Event::TcpConnectionAcknowledged),
        vec![
            stop_timer(TimerKind::ConnectRetry),
            start_timer(TimerKind::DelayOpen, 3),
        ]
    );
    assert_eq!(fsm.state(), State::Connect);
    assert_eq!(
        fsm.process(Event::DelayOpenTimerExpired),
        vec![
            Action::SendOpen,
            Action::StartTimer {
                kind: TimerKind::Hold,
                duration: LARGE_HOLD_TIME
            },
            changed(State::Connect, State::OpenSent),
        ]
    );
}

#[test]
fn delay_open_open_received_goes_straight_to_open_confirm() {
    let mut fsm = fsm_in(State::Active, delay_config());
    fsm.process(Event::TcpConnectionConfirmed);
    assert_eq!(
        fsm.process(open(30)),
        vec![
            stop_timer(TimerKind::DelayOpen),
            Action::SendOpen,
            Action::SendKeepalive,
            start_timer(TimerKind::Hold, 30),
            start_timer(TimerKind::Keepalive, 10),
            changed(State::Active, State::OpenConfirm),
        ]
    );
}

#[test]
fn delay_open_tcp_failure_falls_back_to_active() {
    let mut fsm = fsm_in(State::Connect, delay_config());
    fsm.process(Event::TcpConnectionAcknowledged);
    assert_eq!(
        fsm.process(Event::TcpConnectionFails),
        vec![
            stop_timer(TimerKind::DelayOpen),
            start_timer(TimerKind::ConnectRetry, 5),
            Action::Disconnect,
            changed(State::Connect, State::Active),
        ]
    );
}

// ----- Active --------------------------------------------------------------

#[test]
fn active_connect_retry_expiry_dials_when_not_passive() {
    let mut fsm = fsm_in(State::Connect, config());
    fsm.process(Event::TcpConnectionAcknowledged);
    fsm.process(Event::TcpConnectionFails); // OpenSent -> Active
    assert_eq!(fsm.state(), State::Active);
    assert_eq!(
        fsm.process(Event::ConnectRetryTimerExpired),
        vec![
            start_timer(TimerKind::ConnectRetry, 5),
            Action::Connect,
            changed(State::Active, State::Connect),
        ]
    );
}

#[test]
fn active_passive_never_dials() {
    let mut fsm = fsm_in(State::Active, config());
    assert_eq!(
        fsm.process(Event::ConnectRetryTimerExpired),
        vec![start_timer(TimerKind::ConnectRetry, 5)]
    );
    assert_eq!(fsm.state(), State::Active);
}

#[test]
fn active_incoming_connection_sends_open() {
    let mut fsm = fsm_in(State::Active, config());
    assert_eq!(fsm.process(Event::TcpConnectionValid), vec![]);
    let actions = fsm.process(Event::TcpConnectionConfirmed);
    assert_eq!(actions[1], Action::SendOpen);
    assert_eq!(fsm.state(), State::OpenSent);
}

#[test]
fn active_tcp_failure_goes_idle() {
    let mut fsm = fsm_in(State::Active, config());
    fsm.process(Event::TcpConnectionFails);
    assert_eq!(fsm.state(), State::Idle);
    assert_eq!(fsm.connect_retry_counter(), 1);
}

// ----- OpenSent ------------------------------------------------------------

#[test]
fn open_sent_good_open_negotiates_hold_and_keepalives() {
    let mut fsm = fsm_in(State::OpenSent, config());
    assert_eq!(
        fsm.process(open(30)),
        vec![
            Action::SendKeepalive,
            start_timer(TimerKind::Hold, 30),
            start_timer(TimerKind::Keepalive, 10),
            changed(State::OpenSent, State::OpenConfirm),
        ]
    );
}

#[test]
fn open_sent_zero_hold_time_runs_no_timers() {
    let mut fsm = fsm_in(State::OpenSent, config());
    assert_eq!(
        fsm.process(open(0)),
        vec![
            Action::SendKeepalive,
            stop_timer(TimerKind::Hold),
            changed(State::OpenSent, State::OpenConfirm),
        ]
    );
    let actions = fsm.process(Event::KeepaliveReceived);
    assert_eq!(
        actions,
        vec![
            changed(State::OpenConfirm, State::Established),
            Action::SessionEstablished(EstablishedSession {
                peer_asn: 64513,
                peer_id: PEER_ID,
                hold_time: Duration::ZERO,
                keepalive_time: Duration::ZERO,
                capabilities: "caps",
            }),
        ]
    );
    // No hold timer to refresh.
    assert_eq!(fsm.process(Event::KeepaliveReceived), vec![]);
}

#[test]
fn open_sent_unacceptable_hold_time_is_2_6() {
    for hold in [1, 2] {
        let mut fsm = fsm_in(State::OpenSent, config());
        let mut expected = vec![
            notif(code::OPEN_MESSAGE, subcode::UNACCEPTABLE_HOLD_TIME),
            Action::Disconnect,
            stop_timer(TimerKind::Hold),
        ];
        expected.extend(idle_tail(State::OpenSent));
        assert_eq!(fsm.process(open(hold)), expected);
    }
}

#[test]
fn open_sent_wrong_peer_as_is_2_2_and_bad_id_is_2_3() {
    let mut fsm = fsm_in(State::OpenSent, config());
    let actions = fsm.process(Event::OpenReceived(OpenSummary {
        peer_asn: 65000,
        hold_time: 90,
        bgp_id: PEER_ID,
        capabilities: "caps",
    }));
    assert_eq!(actions[0], notif(code::OPEN_MESSAGE, subcode::BAD_PEER_AS));

    let mut fsm = fsm_in(State::OpenSent, config());
    let actions = fsm.process(Event::OpenReceived(OpenSummary {
        peer_asn: 64513,
        hold_time: 90,
        bgp_id: Ipv4Addr::UNSPECIFIED,
        capabilities: "caps",
    }));
    assert_eq!(
        actions[0],
        notif(code::OPEN_MESSAGE, subcode::BAD_BGP_IDENTIFIER)
    );

    // iBGP peer claiming our own identifier.
    let mut cfg = config();
    cfg.peer_asn = Some(64512);
    let mut fsm = fsm_in(State::OpenSent, cfg);
    let actions = fsm.process(Event::OpenReceived(OpenSummary {
        peer_asn: 64512,
        hold_time: 90,
        bgp_id: LOCAL_ID,
        capabilities: "caps",
    }));
    assert_eq!(
        actions[0],
        notif(code::OPEN_MESSAGE, subcode::BAD_BGP_IDENTIFIER)
    );
}

#[test]
fn open_sent_hold_expiry_sends_4_0() {
    let mut fsm = fsm_in(State::OpenSent, config());
    let mut expected = vec![notif(code::HOLD_TIMER_EXPIRED, 0), Action::Disconnect];
    expected.extend(idle_tail(State::OpenSent));
    assert_eq!(fsm.process(Event::HoldTimerExpired), expected);
}

#[test]
fn open_sent_tcp_failure_returns_to_active() {
    let mut fsm = fsm_in(State::OpenSent, config());
    assert_eq!(
        fsm.process(Event::TcpConnectionFails),
        vec![
            Action::Disconnect,
            stop_timer(TimerKind::Hold),
            start_timer(TimerKind::ConnectRetry, 5),
            changed(State::OpenSent, State::Active),
        ]
    );
}

#[test]
fn open_sent_codec_errors_send_their_notification() {
    let n = Notification {
        code: 2,
        subcode: 7,
        data: vec![1, 2],
    };
    let mut fsm = fsm_in(State::OpenSent, config());
    let actions = fsm.process(Event::OpenMessageError(n.clone()));
    assert_eq!(actions[0], Action::SendNotification(n));
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn open_sent_unexpected_message_is_fsm_error_5_1() {
    for event in [
        Event::KeepaliveReceived,
        Event::UpdateReceived(7),
        Event::ConnectRetryTimerExpired, // not running: ignored instead
    ] {
        let mut fsm = fsm_in(State::OpenSent, config());
        let ignored = matches!(event, Event::ConnectRetryTimerExpired);
        let actions = fsm.process(event);
        if ignored {
            assert_eq!(actions, vec![]);
            assert_eq!(fsm.state(), State::OpenSent);
        } else {
            assert_eq!(
                actions[0],
                notif(code::FSM, subcode::FSM_UNEXPECTED_IN_OPEN_SENT)
            );
            assert_eq!(fsm.state(), State::Idle);
        }
    }
}

#[test]
fn open_sent_notification_received_goes_idle_silently() {
    let mut fsm = fsm_in(State::OpenSent, config());
    let actions = fsm.process(Event::NotificationReceived {
        code: 2,
        subcode: 2,
    });
    assert_eq!(actions[0], Action::Disconnect);
    assert_eq!(fsm.state(), State::Idle);
    assert_eq!(fsm.connect_retry_counter(), 1);
}

#[test]
fn open_sent_version_error_does_not_count_a_retry() {
    let mut fsm = fsm_in(State::OpenSent, config());
    fsm.process(Event::NotificationVersionError);
    assert_eq!(fsm.state(), State::Idle);
    assert_eq!(fsm.connect_retry_counter(), 0);
}

#[test]
fn open_sent_admin_shutdown_sends_cease_2_with_communication() {
    let mut fsm = fsm_in(State::OpenSent, config());
    let actions = fsm.process(Event::ManualStop {
        communication: Some("maintenance".into()),
    });
    let mut data = vec![11];
    data.extend_from_slice(b"maintenance");
    assert_eq!(
        actions,
        vec![
            Action::SendNotification(Notification {
                code: code::CEASE,
                subcode: subcode::CEASE_ADMIN_SHUTDOWN,
                data,
            }),
            Action::Disconnect,
            stop_timer(TimerKind::Hold),
            changed(State::OpenSent, State::Idle),
        ]
    );
}

#[test]
fn open_sent_collision_dump_sends_cease_7() {
    let mut fsm = fsm_in(State::OpenSent, config());
    let actions = fsm.process(Event::OpenCollisionDump);
    assert_eq!(
        actions[0],
        notif(code::CEASE, subcode::CEASE_CONNECTION_COLLISION)
    );
    assert_eq!(fsm.state(), State::Idle);
}

// ----- OpenConfirm ---------------------------------------------------------

#[test]
fn open_confirm_keepalive_establishes() {
    let mut fsm = fsm_in(State::OpenConfirm, config());
    assert_eq!(
        fsm.process(Event::KeepaliveReceived),
        vec![
            start_timer(TimerKind::Hold, 90),
            changed(State::OpenConfirm, State::Established),
            Action::SessionEstablished(EstablishedSession {
                peer_asn: 64513,
                peer_id: PEER_ID,
                hold_time: Duration::from_secs(90),
                keepalive_time: Duration::from_secs(30),
                capabilities: "caps",
            }),
        ]
    );
    assert_eq!(fsm.session().map(|s| s.peer_id), Some(PEER_ID));
}

#[test]
fn open_confirm_keepalive_timer_sends_keepalive() {
    let mut fsm = fsm_in(State::OpenConfirm, config());
    assert_eq!(
        fsm.process(Event::KeepaliveTimerExpired),
        vec![Action::SendKeepalive, start_timer(TimerKind::Keepalive, 30)]
    );
}

#[test]
fn open_confirm_hold_expiry_and_unexpected_messages() {
    let mut fsm = fsm_in(State::OpenConfirm, config());
    let actions = fsm.process(Event::HoldTimerExpired);
    assert_eq!(actions[0], notif(code::HOLD_TIMER_EXPIRED, 0));
    assert_eq!(fsm.state(), State::Idle);

    let mut fsm = fsm_in(State::OpenConfirm, config());
    let actions = fsm.process(Event::UpdateReceived(3));
    assert_eq!(
        actions[0],
        notif(code::FSM, subcode::FSM_UNEXPECTED_IN_OPEN_CONFIRM)
    );
    let mut fsm = fsm_in(State::OpenConfirm, config());
    let actions = fsm.process(open(90));
    assert_eq!(
        actions[0],
        notif(code::FSM, subcode::FSM_UNEXPECTED_IN_OPEN_CONFIRM)
    );
}

#[test]
fn open_confirm_tcp_failure_and_notification_go_idle() {
    for event in [
        Event::TcpConnectionFails,
        Event::NotificationReceived {
            code: 6,
            subcode: 4,
        },
    ] {
        let mut fsm = fsm_in(State::OpenConfirm, config());
        let actions = fsm.process(event);
        assert_eq!(actions[0], Action::Disconnect);
        assert_eq!(fsm.state(), State::Idle);
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::SessionDown { .. })));
    }
}

// ----- Established ---------------------------------------------------------

#[test]
fn established_update_restarts_hold_and_is_delivered() {
    let mut fsm = fsm_in(State::Established, config());
    assert_eq!(
        fsm.process(Event::UpdateReceived(42)),
        vec![start_timer(TimerKind::Hold, 90), Action::DeliverUpdate(42)]
    );
    assert_eq!(
        fsm.process(Event::KeepaliveReceived),
        vec![start_timer(TimerKind::Hold, 90)]
    );
    assert_eq!(
        fsm.process(Event::KeepaliveTimerExpired),
        vec![Action::SendKeepalive, start_timer(TimerKind::Keepalive, 30)]
    );
}

#[test]
fn established_hold_expiry_tears_down() {
    let mut fsm = fsm_in(State::Established, config());
    assert_eq!(
        fsm.process(Event::HoldTimerExpired),
        vec![
            notif(code::HOLD_TIMER_EXPIRED, 0),
            Action::Disconnect,
            stop_timer(TimerKind::Keepalive),
            changed(State::Established, State::Idle),
            Action::SessionDown {
                reason: DownReason::HoldTimerExpired
            },
            start_timer(TimerKind::IdleHold, 1),
        ]
    );
    assert!(fsm.session().is_none());
}

#[test]
fn established_admin_shutdown_sends_cease_2_and_stays_down() {
    let mut fsm = fsm_in(State::Established, config());
    let actions = fsm.process(Event::ManualStop {
        communication: None,
    });
    assert_eq!(
        actions,
        vec![
            notif(code::CEASE, subcode::CEASE_ADMIN_SHUTDOWN),
            Action::Disconnect,
            stop_timer(TimerKind::Hold),
            stop_timer(TimerKind::Keepalive),
            changed(State::Established, State::Idle),
            Action::SessionDown {
                reason: DownReason::AdminShutdown
            },
        ]
    );
    // Automatic start is not an administrative start: still allowed, but no
    // restart timer was scheduled.
    assert!(!fsm.is_timer_running(TimerKind::IdleHold));
}

#[test]
fn established_errors() {
    let mut fsm = fsm_in(State::Established, config());
    let n = Notification::new(3, 1);
    let actions = fsm.process(Event::UpdateMessageError(n.clone()));
    assert_eq!(actions[0], Action::SendNotification(n));
    assert!(actions.contains(&Action::SessionDown {
        reason: DownReason::NotificationSent {
            code: 3,
            subcode: 1
        }
    }));

    let mut fsm = fsm_in(State::Established, config());
    let actions = fsm.process(open(90));
    assert_eq!(
        actions[0],
        notif(code::FSM, subcode::FSM_UNEXPECTED_IN_ESTABLISHED)
    );

    let mut fsm = fsm_in(State::Established, config());
    let actions = fsm.process(Event::NotificationReceived {
        code: 6,
        subcode: 2,
    });
    assert!(actions.contains(&Action::SessionDown {
        reason: DownReason::NotificationReceived {
            code: 6,
            subcode: 2
        }
    }));

    let mut fsm = fsm_in(State::Established, config());
    let actions = fsm.process(Event::TcpConnectionFails);
    assert!(actions.contains(&Action::SessionDown {
        reason: DownReason::TransportFailed
    }));

    let mut fsm = fsm_in(State::Established, config());
    let actions = fsm.process(Event::OpenCollisionDump);
    assert_eq!(
        actions[0],
        notif(code::CEASE, subcode::CEASE_CONNECTION_COLLISION)
    );
}

#[test]
fn established_ignores_new_connections() {
    let mut fsm = fsm_in(State::Established, config());
    assert_eq!(fsm.process(Event::TcpConnectionConfirmed), vec![]);
    assert_eq!(fsm.process(Event::ManualStart), vec![]);
    assert_eq!(fsm.state(), State::Established);
}

// ----- timers, damping -----------------------------------------------------

#[test]
fn stale_timer_expiry_is_ignored() {
    let mut fsm = fsm_in(State::OpenSent, config());
    assert_eq!(fsm.process(Event::KeepaliveTimerExpired), vec![]);
    assert_eq!(fsm.process(Event::IdleHoldTimerExpired), vec![]);
    assert_eq!(fsm.state(), State::OpenSent);
}

#[test]
fn restart_backoff_doubles_caps_and_resets_on_established() {
    let mut fsm = TestFsm::new(config());
    fsm.process(Event::ManualStart);
    let mut delays = Vec::new();
    for _ in 0..6 {
        let actions = fsm.process(Event::TcpConnectionFails);
        let delay = actions.iter().find_map(|a| match a {
            Action::StartTimer {
                kind: TimerKind::IdleHold,
                duration,
            } => Some(duration.as_secs()),
            _ => None,
        });
        delays.push(delay.expect("restart scheduled"));
        // Automatic start is damped while the idle hold timer runs.
        assert_eq!(fsm.process(Event::AutomaticStart), vec![]);
        fsm.process(Event::IdleHoldTimerExpired);
        assert_eq!(fsm.state(), State::Connect);
    }
    assert_eq!(delays, vec![1, 2, 4, 8, 8, 8]);

    for e in [
        Event::TcpConnectionAcknowledged,
        open(90),
        Event::KeepaliveReceived,
    ] {
        fsm.process(e);
    }
    assert_eq!(fsm.state(), State::Established);
    let actions = fsm.process(Event::TcpConnectionFails);
    assert_eq!(actions.last(), Some(&start_timer(TimerKind::IdleHold, 1)));
}

#[test]
fn manual_stop_in_idle_cancels_restart() {
    let mut fsm = fsm_in(State::Connect, config());
    fsm.process(Event::TcpConnectionFails);
    assert!(fsm.is_timer_running(TimerKind::IdleHold));
    assert_eq!(
        fsm.process(Event::ManualStop {
            communication: None
        }),
        vec![stop_timer(TimerKind::IdleHold)]
    );
    assert_eq!(fsm.process(Event::IdleHoldTimerExpired), vec![]);
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn hold_time_negotiation() {
    let secs = |h: u16, ka: Option<u16>, p: u16| {
        negotiate_hold_time(h, ka, p).map(|t| (t.hold.as_secs(), t.keepalive.as_secs()))
    };
    assert_eq!(secs(90, None, 180), Ok((90, 30)));
    assert_eq!(secs(240, None, 9), Ok((9, 3)));
    assert_eq!(secs(90, None, 0), Ok((0, 0)));
    assert_eq!(secs(0, None, 90), Ok((0, 0)));
    assert_eq!(secs(90, None, 3), Ok((3, 1)));
    assert_eq!(secs(90, Some(10), 180), Ok((90, 10)));
    // Configured keepalive only applies to our own hold time.
    assert_eq!(secs(90, Some(10), 30), Ok((30, 10)));
    assert_eq!(
        secs(90, None, 2),
        Err(Notification::new(2, 6)).map(|()| (0, 0))
    );
    assert!(secs(90, None, 1).is_err());
}

#[test]
fn shutdown_communication_is_cut_at_a_char_boundary() {
    let long = "é".repeat(200); // 400 octets
    let n = Notification::administrative_shutdown(Some(&long));
    assert_eq!(n.data[0], 254);
    assert_eq!(n.data.len(), 255);
    assert!(std::str::from_utf8(&n.data[1..]).is_ok());
    assert!(Notification::administrative_shutdown(None).data.is_empty());
}

// ----- collision -----------------------------------------------------------

#[test]
fn collision_keeps_connection_of_higher_identifier() {
    use CollisionResolution::*;
    use ConnectionOrigin::*;
    let low = Ipv4Addr::new(1, 1, 1, 1);
    let high = Ipv4Addr::new(2, 2, 2, 2);
    // We are lower: keep the connection the peer opened.
    assert_eq!(
        resolve_collision(low, high, State::OpenConfirm, true, Local, Remote, false),
        CloseExisting
    );
    assert_eq!(
        resolve_collision(low, high, State::OpenConfirm, true, Remote, Local, false),
        CloseNew
    );
    // We are higher: keep ours.
    assert_eq!(
        resolve_collision(high, low, State::OpenConfirm, true, Local, Remote, false),
        CloseNew
    );
    assert_eq!(
        resolve_collision(high, low, State::OpenConfirm, true, Remote, Local, false),
        CloseExisting
    );
    // Identifiers compare as unsigned integers, not signed.
    let top = Ipv4Addr::new(200, 0, 0, 1);
    assert_eq!(
        resolve_collision(top, low, State::OpenConfirm, true, Local, Remote, false),
        CloseNew
    );
}

#[test]
fn collision_only_in_open_confirm_established_or_known_open_sent() {
    use CollisionResolution::*;
    use ConnectionOrigin::*;
    let a = Ipv4Addr::new(1, 1, 1, 1);
    let b = Ipv4Addr::new(2, 2, 2, 2);
    for state in [State::Idle, State::Connect, State::Active] {
        assert_eq!(
            resolve_collision(a, b, state, true, Local, Remote, false),
            NoCollision
        );
    }
    assert_eq!(
        resolve_collision(a, b, State::OpenSent, false, Local, Remote, false),
        NoCollision
    );
    assert_eq!(
        resolve_collision(a, b, State::OpenSent, true, Local, Remote, false),
        CloseExisting
    );
    // Established wins unless CollisionDetectEstablishedState.
    assert_eq!(
        resolve_collision(a, b, State::Established, true, Local, Remote, false),
        CloseNew
    );
    assert_eq!(
        resolve_collision(a, b, State::Established, true, Local, Remote, true),
        CloseExisting
    );
}

#[test]
fn collision_end_to_end_between_two_fsms() {
    // Both sides dialled; our outgoing connection reached OpenConfirm, then the
    // peer's incoming connection delivered an OPEN. The peer has the higher id,
    // so our outgoing connection is dumped with Cease/7.
    let mut outgoing = fsm_in(State::OpenConfirm, config());
    let mut incoming = TestFsm::new(config());
    incoming.process(Event::ManualStartPassive);
    incoming.process(Event::TcpConnectionConfirmed);
    let verdict = resolve_collision(
        LOCAL_ID,
        PEER_ID,
        outgoing.state(),
        true,
        ConnectionOrigin::Local,
        ConnectionOrigin::Remote,
        false,
    );
    assert_eq!(verdict, CollisionResolution::CloseExisting);
    let actions = outgoing.process(Event::OpenCollisionDump);
    assert_eq!(
        actions[0],
        notif(code::CEASE, subcode::CEASE_CONNECTION_COLLISION)
    );
    assert_eq!(outgoing.state(), State::Idle);
    incoming.process(open(90));
    incoming.process(Event::KeepaliveReceived);
    assert_eq!(incoming.state(), State::Established);
}

// ----- the whole state × event matrix ---------------------------------------

fn all_events() -> Vec<TestEvent> {
    vec![
        Event::ManualStart,
        Event::ManualStartPassive,
        Event::ManualStop {
            communication: None,
        },
        Event::AutomaticStart,
        Event::ConnectRetryTimerExpired,
        Event::HoldTimerExpired,
        Event::KeepaliveTimerExpired,
        Event::DelayOpenTimerExpired,
        Event::IdleHoldTimerExpired,
        Event::TcpConnectionValid,
        Event::TcpConnectionAcknowledged,
        Event::TcpConnectionConfirmed,
        Event::TcpConnectionFails,
        open(90),
        Event::HeaderError(Notification::new(1, 2)),
        Event::OpenMessageError(Notification::new(2, 4)),
        Event::OpenCollisionDump,
        Event::NotificationVersionError,
        Event::NotificationReceived {
            code: 6,
            subcode: 4,
        },
        Event::KeepaliveReceived,
        Event::UpdateReceived(0),
        Event::UpdateMessageError(Notification::new(3, 1)),
    ]
}

/// The state after each event of [`all_events`], per starting state (I Idle,
/// C Connect, A Active (passive), S OpenSent, F OpenConfirm, E Established).
/// Expiries of timers that are not running leave the state alone.
#[test]
fn every_state_and_event_lands_where_rfc_4271_says() {
    use State::*;
    #[rustfmt::skip]
    let rows: [(State, &str); 6] = [
        //                MS MP MX AS CR HO KA DO IH TV TA TC TF OP HE OE CD VE NR KR UR UE
        (Idle,           "C  A  I  C  I  I  I  I  I  I  I  I  I  I  I  I  I  I  I  I  I  I"),
        (Connect,        "C  C  I  C  C  C  C  C  C  C  S  S  I  I  I  I  I  I  I  I  I  I"),
        (Active,         "A  A  I  A  A  A  A  A  A  A  S  S  I  I  I  I  I  I  I  I  I  I"),
        (OpenSent,       "S  S  I  S  S  I  S  S  S  S  S  S  A  F  I  I  I  I  I  I  I  I"),
        (OpenConfirm,    "F  F  I  F  F  I  F  F  F  F  F  F  I  I  I  I  I  I  I  E  I  I"),
        (Established,    "E  E  I  E  E  I  E  E  E  E  E  E  I  I  I  I  I  I  I  E  E  I"),
    ];
    let decode = |c: &str| match c {
        "I" => Idle,
        "C" => Connect,
        "A" => Active,
        "S" => OpenSent,
        "F" => OpenConfirm,
        _ => Established,
    };
    for (from, row) in rows {
        let expected: Vec<State> = row.split_whitespace().map(decode).collect();
        let events = all_events();
        assert_eq!(expected.len(), events.len());
        for (event, to) in events.into_iter().zip(expected) {
            let mut fsm = fsm_in(from, config());
            let label = format!("{from:?} + {event:?}");
            fsm.process(event);
            assert_eq!(fsm.state(), to, "{label}");
        }
    }
}

// ----- with the codec's negotiation ------------------------------------------

fn codec_open(asn: u32, hold: u16, id: Ipv4Addr) -> brindle_bgp::packet::Open {
    brindle_bgp::packet::Open {
        version: 4,
        asn,
        hold_time: hold,
        bgp_id: id,
        capabilities: Vec::new(),
    }
}

#[test]
fn negotiated_open_drives_the_fsm_to_established() {
    use brindle_bgp::packet::{negotiate, Negotiated};
    let ours = codec_open(64512, 90, LOCAL_ID);
    let theirs = codec_open(64513, 30, PEER_ID);
    let mut fsm: Fsm<Negotiated, ()> = Fsm::new(config());
    fsm.process(Event::ManualStart);
    fsm.process(Event::TcpConnectionAcknowledged);
    let actions = fsm.process(Event::from_negotiation(negotiate(&ours, &theirs, 64513)));
    assert!(actions.contains(&Action::StartTimer {
        kind: TimerKind::Keepalive,
        duration: Duration::from_secs(10)
    }));
    let actions = fsm.process(Event::KeepaliveReceived);
    let session = actions.iter().find_map(|a| match a {
        Action::SessionEstablished(s) => Some(s.clone()),
        _ => None,
    });
    let session = session.expect("established");
    assert_eq!(session.hold_time, Duration::from_secs(30));
    assert_eq!(session.capabilities.peer_asn, 64513);
}

#[test]
fn failed_negotiation_sends_the_codecs_notification() {
    use brindle_bgp::packet::{negotiate, Negotiated};
    let ours = codec_open(64512, 90, LOCAL_ID);
    let wrong_as = codec_open(65000, 90, PEER_ID);
    let mut fsm: Fsm<Negotiated, ()> = Fsm::new(config());
    fsm.process(Event::ManualStart);
    fsm.process(Event::TcpConnectionAcknowledged);
    let actions = fsm.process(Event::from_negotiation(negotiate(&ours, &wrong_as, 64513)));
    match &actions[0] {
        Action::SendNotification(n) => assert_eq!((n.code, n.subcode), (2, 2)),
        other => panic!("expected NOTIFICATION, got {other:?}"),
    }
    assert_eq!(fsm.state(), State::Idle);
}

// ----- properties ----------------------------------------------------------

fn any_event() -> impl Strategy<Value = TestEvent> {
    prop_oneof![
        Just(Event::ManualStart),
        Just(Event::ManualStartPassive),
        proptest::option::of("[a-zé]{0,300}")
            .prop_map(|communication| Event::ManualStop { communication }),
        Just(Event::AutomaticStart),
        Just(Event::ConnectRetryTimerExpired),
        Just(Event::HoldTimerExpired),
        Just(Event::KeepaliveTimerExpired),
        Just(Event::DelayOpenTimerExpired),
        Just(Event::IdleHoldTimerExpired),
        Just(Event::TcpConnectionValid),
        Just(Event::TcpConnectionAcknowledged),
        Just(Event::TcpConnectionConfirmed),
        Just(Event::TcpConnectionFails),
        (any::<u32>(), any::<u16>(), any::<u32>()).prop_map(|(asn, hold, id)| {
            Event::OpenReceived(OpenSummary {
                peer_asn: asn % 3 + 64512,
                hold_time: hold % 8,
                bgp_id: Ipv4Addr::from(id % 3),
                capabilities: "caps",
            })
        }),
        (any::<u8>(), any::<u8>()).prop_map(|(c, s)| Event::HeaderError(Notification::new(c, s))),
        (any::<u8>(), any::<u8>())
            .prop_map(|(c, s)| Event::OpenMessageError(Notification::new(c, s))),
        Just(Event::OpenCollisionDump),
        Just(Event::NotificationVersionError),
        (any::<u8>(), any::<u8>())
            .prop_map(|(code, subcode)| Event::NotificationReceived { code, subcode }),
        Just(Event::KeepaliveReceived),
        any::<u32>().prop_map(Event::UpdateReceived),
        (any::<u8>(), any::<u8>())
            .prop_map(|(c, s)| Event::UpdateMessageError(Notification::new(c, s))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No event sequence panics, and the timer bookkeeping the actions imply
    /// always matches what the FSM believes; SessionEstablished and
    /// SessionDown alternate.
    #[test]
    fn no_event_sequence_panics(
        delay in any::<bool>(),
        passive in any::<bool>(),
        events in proptest::collection::vec(any_event(), 0..64),
    ) {
        let mut cfg = config();
        cfg.passive = passive;
        cfg.delay_open = delay.then_some(Duration::from_secs(2));
        let mut fsm = TestFsm::new(cfg);
        let mut running = std::collections::HashSet::new();
        let mut up = false;
        for event in events {
            let was = fsm.state();
            for action in fsm.process(event) {
                match action {
                    Action::StartTimer { kind, .. } => { running.insert(kind); }
                    Action::StopTimer { kind } => {
                        prop_assert!(running.remove(&kind), "stopped {kind:?} that was not running");
                    }
                    Action::SessionEstablished(_) => { prop_assert!(!up); up = true; }
                    Action::SessionDown { .. } => { prop_assert!(up); up = false; }
                    Action::StateChanged { from, to } => {
                        prop_assert_eq!(from, was);
                        prop_assert_ne!(from, to);
                    }
                    _ => {}
                }
            }
            // An expiry we deliver consumes the timer.
            for kind in [TimerKind::ConnectRetry, TimerKind::Hold, TimerKind::Keepalive,
                         TimerKind::DelayOpen, TimerKind::IdleHold] {
                if !fsm.is_timer_running(kind) { running.remove(&kind); }
                prop_assert!(!running.contains(&kind) || fsm.is_timer_running(kind));
            }
            prop_assert_eq!(up, fsm.state() == State::Established);
            if fsm.state() == State::Idle {
                for kind in [TimerKind::ConnectRetry, TimerKind::Hold, TimerKind::Keepalive,
                             TimerKind::DelayOpen] {
                    prop_assert!(!fsm.is_timer_running(kind));
                }
            }
        }
    }
}

#[test]
fn a_detected_peer_failure_ends_the_session_with_cease_bfd_down() {
    for state in [State::OpenSent, State::OpenConfirm, State::Established] {
        let mut fsm = fsm_in(state, config());
        let actions = fsm.process(Event::PeerFailureDetected);
        assert_eq!(actions[0], notif(code::CEASE, subcode::BFD_DOWN), "{state}");
        assert_eq!(fsm.state(), State::Idle);
        if state == State::Established {
            assert!(actions.contains(&Action::SessionDown {
                reason: DownReason::NotificationSent {
                    code: 6,
                    subcode: 10
                }
            }));
        }
    }
    // Before OPEN there is no session to end.
    for state in [State::Connect, State::Active] {
        let mut fsm = fsm_in(state, config());
        assert_eq!(fsm.process(Event::PeerFailureDetected), vec![]);
        assert_eq!(fsm.state(), state);
    }
}

/// AutomaticStop (event 8), as a prefix limit uses it: the given
/// NOTIFICATION, Idle, and the damped automatic restart still ahead.
#[test]
fn an_automatic_stop_ends_the_session_with_its_notification() {
    let cease = Notification::new(code::CEASE, subcode::MAX_PREFIXES);
    for state in [State::OpenSent, State::OpenConfirm, State::Established] {
        let mut fsm = fsm_in(state, config());
        let actions = fsm.process(Event::AutomaticStop(cease.clone()));
        assert_eq!(
            actions[0],
            notif(code::CEASE, subcode::MAX_PREFIXES),
            "{state}"
        );
        assert_eq!(fsm.state(), State::Idle);
        assert!(
            fsm.is_timer_running(TimerKind::IdleHold),
            "{state}: no automatic restart ahead"
        );
    }
    for state in [State::Connect, State::Active] {
        let mut fsm = fsm_in(state, config());
        assert_eq!(fsm.process(Event::AutomaticStop(cease.clone())), vec![]);
        assert_eq!(fsm.state(), state);
    }
}
