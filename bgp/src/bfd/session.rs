//! One BFD session in asynchronous mode (RFC 5880 §6.8), sans-IO.
//!
//! [`Session::process`] takes what happened ([`Input`]: a Control packet
//! already matched to this session, or one of its two timers) and returns
//! what to do ([`Output`]): packets to send, timers to arm, state changes to
//! report. Timers are outputs; the driver owns the clock and the jitter's
//! randomness is seeded, so a test replays a session exactly.
//!
//! Choices the RFC leaves open, as BIRD 2 and FRR make them:
//! * The active role: a session sends from the start, at 1 s while not Up
//!   (§6.8.3 forbids less), at the configured interval once Up.
//! * On going Up the faster interval is adopted at once and announced with a
//!   Poll Sequence (P bit until a packet with F comes back).
//! * A state change is sent at once instead of at the next transmit time,
//!   so the three-way handshake takes round trips, not intervals.
//! * No Demand mode and no Echo function (Required Min Echo RX is 0).

use std::time::Duration;

use super::packet::{BfdState, ControlPacket, Diagnostic};

/// Timers and multiplier of a session (RFC 5880 §6.8.1's configurable
/// variables). The default is 100 ms × 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdConfig {
    /// `bfd.DesiredMinTxInterval` once Up.
    pub min_tx: Duration,
    /// `bfd.RequiredMinRxInterval`.
    pub min_rx: Duration,
    /// `bfd.DetectMult`.
    pub multiplier: u8,
    /// Transmit interval while not Up (at least 1 s, §6.8.3).
    pub idle_tx: Duration,
}

impl Default for BfdConfig {
    fn default() -> Self {
        BfdConfig {
            min_tx: Duration::from_millis(100),
            min_rx: Duration::from_millis(100),
            multiplier: 3,
            idle_tx: IDLE_TX,
        }
    }
}

/// §6.8.3: not less than one second while the session is not Up.
pub const IDLE_TX: Duration = Duration::from_secs(1);

/// What a session reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A valid Control packet whose discriminators or source address chose
    /// this session.
    Received(ControlPacket),
    /// The transmit timer armed by [`Output::ArmTransmit`] fired.
    TransmitTimer,
    /// The detection timer armed by [`Output::ArmDetect`] fired.
    DetectTimer,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Send(ControlPacket),
    /// (Re)arm the transmit timer to fire after this long.
    ArmTransmit(Duration),
    /// (Re)arm the detection timer.
    ArmDetect(Duration),
    StateChanged {
        from: BfdState,
        to: BfdState,
        diagnostic: Diagnostic,
    },
}

/// One session's state (RFC 5880 §6.8.1).
#[derive(Debug, Clone)]
pub struct Session {
    config: BfdConfig,
    state: BfdState,
    remote_state: BfdState,
    local_discriminator: u32,
    remote_discriminator: u32,
    diagnostic: Diagnostic,
    /// `bfd.RemoteMinRxInterval`, µs (1 until the peer says otherwise).
    remote_min_rx_us: u32,
    /// The peer's Desired Min TX and Detect Mult from its last packet.
    remote_desired_tx_us: u32,
    remote_multiplier: u8,
    /// A Poll Sequence is running: our packets carry P until one with F.
    polling: bool,
    rng: fastrand::Rng,
}

impl Session {
    /// A session in state Down with `local_discriminator` (non-zero, unique
    /// on this system). Call [`Session::start`] for its first outputs.
    pub fn new(config: BfdConfig, local_discriminator: u32, seed: u64) -> Self {
        assert_ne!(local_discriminator, 0, "a BFD discriminator is never 0");
        Session {
            config,
            state: BfdState::Down,
            remote_state: BfdState::Down,
            local_discriminator,
            remote_discriminator: 0,
            diagnostic: Diagnostic::None,
            remote_min_rx_us: 1,
            remote_desired_tx_us: 0,
            remote_multiplier: 0,
            polling: false,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The first packet and the transmit timer.
    pub fn start(&mut self) -> Vec<Output> {
        let mut out = vec![Output::Send(self.packet(false))];
        self.arm_transmit(&mut out);
        out
    }

    pub fn state(&self) -> BfdState {
        self.state
    }

    pub fn remote_state(&self) -> BfdState {
        self.remote_state
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discriminator
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discriminator
    }

    /// Why the session last left Up (or `None`).
    pub fn diagnostic(&self) -> Diagnostic {
        self.diagnostic
    }

    pub fn config(&self) -> BfdConfig {
        self.config
    }

    /// Changes the intervals; a running Up session announces them with a
    /// Poll Sequence.
    pub fn reconfigure(&mut self, config: BfdConfig) -> Vec<Output> {
        let mut out = Vec::new();
        if config == self.config {
            return out;
        }
        self.config = config;
        if self.state == BfdState::Up {
            self.polling = true;
            out.push(Output::Send(self.packet(false)));
        }
        self.arm_transmit(&mut out);
        out
    }

    pub fn process(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Received(packet) => self.received(packet, &mut out),
            Input::TransmitTimer => {
                // §6.8.7: nothing periodic while the peer asks for nothing.
                if self.remote_min_rx_us != 0 {
                    out.push(Output::Send(self.packet(false)));
                }
                self.arm_transmit(&mut out);
            }
            Input::DetectTimer => {
                // §6.8.1: a detection time without packets forgets the peer.
                self.remote_discriminator = 0;
                self.remote_min_rx_us = 1;
                self.remote_state = BfdState::Down;
                if matches!(self.state, BfdState::Init | BfdState::Up) {
                    self.transition(
                        BfdState::Down,
                        Diagnostic::ControlDetectionTimeExpired,
                        &mut out,
                    );
                }
            }
        }
        out
    }

    /// RFC 5880 §6.8.6, from "If bfd.SessionState is AdminDown" on (the
    /// packet checks are [`ControlPacket::decode`]'s, the session lookup
    /// the driver's).
    fn received(&mut self, p: ControlPacket, out: &mut Vec<Output>) {
        self.remote_discriminator = p.my_discriminator;
        self.remote_state = p.state;
        self.remote_min_rx_us = p.required_min_rx_us;
        self.remote_desired_tx_us = p.desired_min_tx_us;
        self.remote_multiplier = p.detect_mult;
        if p.final_ {
            self.polling = false;
        }
        if self.state == BfdState::AdminDown {
            return;
        }
        if p.state == BfdState::AdminDown {
            if self.state != BfdState::Down {
                self.transition(BfdState::Down, Diagnostic::NeighborSignaledSessionDown, out);
            }
        } else {
            match (self.state, p.state) {
                (BfdState::Down, BfdState::Down) => {
                    self.transition(BfdState::Init, Diagnostic::None, out)
                }
                (BfdState::Down, BfdState::Init) => {
                    self.transition(BfdState::Up, Diagnostic::None, out)
                }
                (BfdState::Init, BfdState::Init | BfdState::Up) => {
                    self.transition(BfdState::Up, Diagnostic::None, out)
                }
                (BfdState::Up, BfdState::Down) => {
                    self.transition(BfdState::Down, Diagnostic::NeighborSignaledSessionDown, out)
                }
                _ => {}
            }
        }
        if p.poll {
            // §6.8.6: answer a Poll at once, outside the transmit schedule.
            out.push(Output::Send(self.packet(true)));
        }
        // In Init and Up its expiry takes the session Down; in Down it only
        // forgets the peer (see `Input::DetectTimer`).
        out.push(Output::ArmDetect(self.detection_time()));
    }

    fn transition(&mut self, to: BfdState, diagnostic: Diagnostic, out: &mut Vec<Output>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        if to == BfdState::Up {
            self.diagnostic = Diagnostic::None;
            // The interval drops from idle to configured: announce it.
            self.polling = true;
        } else {
            if from == BfdState::Up {
                self.diagnostic = diagnostic;
            }
            self.polling = false;
        }
        out.push(Output::StateChanged {
            from,
            to,
            diagnostic: self.diagnostic,
        });
        out.push(Output::Send(self.packet(false)));
        self.arm_transmit(out);
    }

    /// §6.8.4: the peer's multiplier times the slower of what we accept and
    /// what it sends at.
    fn detection_time(&self) -> Duration {
        let interval = u64::from(self.remote_desired_tx_us)
            .max(micros(self.config.min_rx))
            .max(1);
        Duration::from_micros(interval * u64::from(self.remote_multiplier.max(1)))
    }

    /// §6.8.7: the larger of our Desired Min TX and the peer's Required Min
    /// RX, less 0–25 % jitter (10–25 % with a multiplier of 1).
    fn arm_transmit(&mut self, out: &mut Vec<Output>) {
        let base = micros(self.desired_tx()).max(u64::from(self.remote_min_rx_us));
        let low = 75;
        let high = if self.config.multiplier == 1 { 90 } else { 100 };
        let percent = self.rng.u64(low..=high);
        out.push(Output::ArmTransmit(Duration::from_micros(
            base * percent / 100,
        )));
    }

    fn desired_tx(&self) -> Duration {
        if self.state == BfdState::Up {
            self.config.min_tx
        } else {
            self.config.idle_tx.max(IDLE_TX).max(self.config.min_tx)
        }
    }

    /// The packet we send now (`final_` answers a Poll).
    fn packet(&self, final_: bool) -> ControlPacket {
        ControlPacket {
            diagnostic: self.diagnostic,
            state: self.state,
            poll: self.polling && !final_,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.multiplier,
            my_discriminator: self.local_discriminator,
            your_discriminator: self.remote_discriminator,
            desired_min_tx_us: clamp_micros(self.desired_tx()),
            required_min_rx_us: clamp_micros(self.config.min_rx),
            required_min_echo_rx_us: 0,
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn clamp_micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
