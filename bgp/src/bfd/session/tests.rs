//! Two sessions wired back to back, without a clock: what each sends is
//! handed to the other.

use super::*;

fn sent(out: &[Output]) -> Vec<ControlPacket> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn changes(out: &[Output]) -> Vec<(BfdState, BfdState)> {
    out.iter()
        .filter_map(|o| match o {
            Output::StateChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

/// Delivers packets back and forth until neither side has anything to say.
fn exchange(a: &mut Session, b: &mut Session, first_from_a: Vec<ControlPacket>) {
    let mut to_b = first_from_a;
    let mut to_a = Vec::new();
    for _ in 0..20 {
        for p in std::mem::take(&mut to_b) {
            to_a.extend(sent(&b.process(Input::Received(p))));
        }
        for p in std::mem::take(&mut to_a) {
            to_b.extend(sent(&a.process(Input::Received(p))));
        }
        if to_a.is_empty() && to_b.is_empty() {
            return;
        }
    }
    panic!("the sessions never went quiet");
}

fn up_pair() -> (Session, Session) {
    let mut a = Session::new(BfdConfig::default(), 11, 1);
    let mut b = Session::new(BfdConfig::default(), 22, 2);
    let first_a = sent(&a.start());
    let first_b = sent(&b.start());
    exchange(&mut a, &mut b, first_a);
    exchange(&mut b, &mut a, first_b);
    (a, b)
}

#[test]
fn the_three_way_handshake_brings_both_sides_up() {
    let mut a = Session::new(BfdConfig::default(), 11, 1);
    let mut b = Session::new(BfdConfig::default(), 22, 2);
    let first = sent(&a.start());
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].state, BfdState::Down);
    assert_eq!(first[0].your_discriminator, 0);
    // While not Up the interval is at least 1 s (RFC 5880 §6.8.3).
    assert_eq!(first[0].desired_min_tx_us, 1_000_000);
    let out = b.process(Input::Received(first[0]));
    assert_eq!(changes(&out), vec![(BfdState::Down, BfdState::Init)]);
    let init = sent(&out);
    assert_eq!(init[0].your_discriminator, 11);
    let out = a.process(Input::Received(init[0]));
    assert_eq!(changes(&out), vec![(BfdState::Down, BfdState::Up)]);
    let up = sent(&out);
    // Up announces the faster interval with a Poll.
    assert!(up[0].poll);
    assert_eq!(up[0].desired_min_tx_us, 100_000);
    let out = b.process(Input::Received(up[0]));
    assert_eq!(changes(&out), vec![(BfdState::Init, BfdState::Up)]);
    let answers = sent(&out);
    assert!(
        answers.iter().any(|p| p.final_),
        "a Poll is answered with Final"
    );
    exchange(&mut a, &mut b, Vec::new());
    assert_eq!((a.state(), b.state()), (BfdState::Up, BfdState::Up));
    assert_eq!(a.remote_discriminator(), 22);
    assert_eq!(b.remote_discriminator(), 11);
}

#[test]
fn a_poll_ends_when_final_comes_back() {
    let (mut a, _) = up_pair();
    // After the handshake both Polls were answered.
    let out = a.process(Input::TransmitTimer);
    let p = sent(&out)[0];
    assert!(!p.poll && !p.final_);
    assert_eq!(p.state, BfdState::Up);
}

#[test]
fn silence_for_the_detection_time_takes_the_session_down() {
    let (mut a, _) = up_pair();
    let out = a.process(Input::DetectTimer);
    assert_eq!(changes(&out), vec![(BfdState::Up, BfdState::Down)]);
    assert_eq!(a.diagnostic(), Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(a.remote_discriminator(), 0);
    let p = sent(&out)[0];
    assert_eq!(p.state, BfdState::Down);
    assert_eq!(p.diagnostic, Diagnostic::ControlDetectionTimeExpired);
    assert_eq!(p.desired_min_tx_us, 1_000_000);
}

#[test]
fn detection_time_is_the_peers_multiplier_times_the_slower_interval() {
    let mut a = Session::new(BfdConfig::default(), 11, 1);
    let mut p = sent(&Session::new(BfdConfig::default(), 22, 2).start())[0];
    p.detect_mult = 5;
    p.desired_min_tx_us = 300_000;
    let out = a.process(Input::Received(p));
    assert!(out.contains(&Output::ArmDetect(Duration::from_millis(1500))));
}

#[test]
fn a_peer_that_signals_down_or_admin_down_takes_us_down() {
    for (state, diag) in [
        (BfdState::Down, Diagnostic::NeighborSignaledSessionDown),
        (BfdState::AdminDown, Diagnostic::NeighborSignaledSessionDown),
    ] {
        let (mut a, mut b) = up_pair();
        let mut p = sent(&b.process(Input::TransmitTimer))[0];
        p.state = state;
        let out = a.process(Input::Received(p));
        assert_eq!(changes(&out), vec![(BfdState::Up, BfdState::Down)]);
        assert_eq!(a.diagnostic(), diag);
    }
}

#[test]
fn the_transmit_interval_is_jittered_below_the_larger_interval() {
    let (mut a, _) = up_pair();
    for _ in 0..100 {
        let out = a.process(Input::TransmitTimer);
        let Some(Output::ArmTransmit(d)) = out.last() else {
            panic!("no transmit timer in {out:?}");
        };
        assert!(
            *d >= Duration::from_millis(75) && *d <= Duration::from_millis(100),
            "{d:?}"
        );
    }
}

#[test]
fn a_peer_asking_for_no_packets_gets_none() {
    let (mut a, mut b) = up_pair();
    let mut p = sent(&b.process(Input::TransmitTimer))[0];
    p.required_min_rx_us = 0;
    a.process(Input::Received(p));
    assert!(sent(&a.process(Input::TransmitTimer)).is_empty());
}
