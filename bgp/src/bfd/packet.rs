//! The BFD Control packet (RFC 5880 §4.1), without I/O.
//!
//! Contract: [`ControlPacket::decode`] accepts exactly what RFC 5880
//! §6.8.6 lets a receiver process before it looks for a session (version 1,
//! a length that fits the buffer and is at least 24 bytes, a non-zero
//! detect multiplier and My Discriminator, no multipoint bit) and rejects
//! the rest with a typed [`DecodeError`] naming the rule. Packets with the
//! Authentication bit are rejected: Brindle's sessions run without
//! authentication (as Calico's BIRD does), and §6.8.6 discards a packet
//! whose A bit does not match the session. [`ControlPacket::encode`] always
//! writes the 24-byte mandatory section.

use thiserror::Error;

/// Length of the mandatory section; the only length Brindle sends.
pub const CONTROL_LEN: usize = 24;

/// `Sta` (RFC 5880 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BfdState {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl BfdState {
    fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => BfdState::AdminDown,
            1 => BfdState::Down,
            2 => BfdState::Init,
            _ => BfdState::Up,
        }
    }
}

impl std::fmt::Display for BfdState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BfdState::AdminDown => "AdminDown",
            BfdState::Down => "Down",
            BfdState::Init => "Init",
            BfdState::Up => "Up",
        })
    }
}

/// `Diag` (RFC 5880 §4.1): why the sender's session last left Up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    None,
    ControlDetectionTimeExpired,
    EchoFunctionFailed,
    NeighborSignaledSessionDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    /// 9–31, reserved.
    Other(u8),
}

impl Diagnostic {
    fn from_bits(bits: u8) -> Self {
        match bits & 0x1f {
            0 => Diagnostic::None,
            1 => Diagnostic::ControlDetectionTimeExpired,
            2 => Diagnostic::EchoFunctionFailed,
            3 => Diagnostic::NeighborSignaledSessionDown,
            4 => Diagnostic::ForwardingPlaneReset,
            5 => Diagnostic::PathDown,
            6 => Diagnostic::ConcatenatedPathDown,
            7 => Diagnostic::AdministrativelyDown,
            8 => Diagnostic::ReverseConcatenatedPathDown,
            other => Diagnostic::Other(other),
        }
    }

    fn bits(self) -> u8 {
        match self {
            Diagnostic::None => 0,
            Diagnostic::ControlDetectionTimeExpired => 1,
            Diagnostic::EchoFunctionFailed => 2,
            Diagnostic::NeighborSignaledSessionDown => 3,
            Diagnostic::ForwardingPlaneReset => 4,
            Diagnostic::PathDown => 5,
            Diagnostic::ConcatenatedPathDown => 6,
            Diagnostic::AdministrativelyDown => 7,
            Diagnostic::ReverseConcatenatedPathDown => 8,
            Diagnostic::Other(b) => b & 0x1f,
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Diagnostic::None => f.write_str("no diagnostic"),
            Diagnostic::ControlDetectionTimeExpired => {
                f.write_str("control detection time expired")
            }
            Diagnostic::EchoFunctionFailed => f.write_str("echo function failed"),
            Diagnostic::NeighborSignaledSessionDown => {
                f.write_str("neighbor signaled session down")
            }
            Diagnostic::ForwardingPlaneReset => f.write_str("forwarding plane reset"),
            Diagnostic::PathDown => f.write_str("path down"),
            Diagnostic::ConcatenatedPathDown => f.write_str("concatenated path down"),
            Diagnostic::AdministrativelyDown => f.write_str("administratively down"),
            Diagnostic::ReverseConcatenatedPathDown => {
                f.write_str("reverse concatenated path down")
            }
            Diagnostic::Other(b) => write!(f, "diagnostic {b}"),
        }
    }
}

/// One Control packet (mandatory section; intervals in microseconds as on
/// the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    pub diagnostic: Diagnostic,
    pub state: BfdState,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a received datagram is not a Control packet to process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("datagram of {0} bytes is shorter than a BFD Control packet")]
    Short(usize),
    #[error("BFD version {0} (only version 1 is spoken)")]
    Version(u8),
    #[error("length field {length} is below 24 or beyond the {datagram}-byte datagram")]
    Length { length: u8, datagram: usize },
    #[error("authentication present (sessions run without it)")]
    Authentication,
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("My Discriminator is zero")]
    ZeroMyDiscriminator,
    #[error("Your Discriminator is zero in state {0}")]
    ZeroYourDiscriminator(BfdState),
}

const VERSION: u8 = 1;
const POLL: u8 = 0x20;
const FINAL: u8 = 0x10;
const CPI: u8 = 0x08;
const AUTH: u8 = 0x04;
const DEMAND: u8 = 0x02;
const MULTIPOINT: u8 = 0x01;

impl ControlPacket {
    /// Parses and validates one datagram (see the module docs).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < CONTROL_LEN {
            return Err(DecodeError::Short(bytes.len()));
        }
        let version = bytes[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = bytes[1];
        let length = bytes[3];
        if usize::from(length) < CONTROL_LEN || usize::from(length) > bytes.len() {
            return Err(DecodeError::Length {
                length,
                datagram: bytes.len(),
            });
        }
        if flags & AUTH != 0 {
            return Err(DecodeError::Authentication);
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let packet = ControlPacket {
            diagnostic: Diagnostic::from_bits(bytes[0]),
            state: BfdState::from_bits(flags >> 6),
            poll: flags & POLL != 0,
            final_: flags & FINAL != 0,
            control_plane_independent: flags & CPI != 0,
            demand: flags & DEMAND != 0,
            detect_mult: bytes[2],
            my_discriminator: word(4),
            your_discriminator: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        };
        if packet.detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        if flags & MULTIPOINT != 0 {
            return Err(DecodeError::Multipoint);
        }
        if packet.my_discriminator == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        if packet.your_discriminator == 0
            && !matches!(packet.state, BfdState::Down | BfdState::AdminDown)
        {
            return Err(DecodeError::ZeroYourDiscriminator(packet.state));
        }
        Ok(packet)
    }

    /// The 24-byte wire form.
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        let mut out = [0u8; CONTROL_LEN];
        out[0] = (VERSION << 5) | self.diagnostic.bits();
        let mut flags = (self.state as u8) << 6;
        for (set, bit) in [
            (self.poll, POLL),
            (self.final_, FINAL),
            (self.control_plane_independent, CPI),
            (self.demand, DEMAND),
        ] {
            if set {
                flags |= bit;
            }
        }
        out[1] = flags;
        out[2] = self.detect_mult;
        out[3] = CONTROL_LEN as u8;
        out[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        out[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        out[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        out[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        out[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod vectors {
    use super::*;

    /// A session's first packet (RFC 5880 §6.8.3): Down, Your
    /// Discriminator 0, 1 s intervals while not Up, multiplier 5.
    const BIRD_DOWN: [u8; 24] = [
        0x20, 0x40, 0x05, 0x18, 0x3c, 0x1a, 0x8e, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x42,
        0x40, 0x00, 0x0f, 0x42, 0x40, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn decodes_a_down_packet_and_encodes_it_back() {
        let p = ControlPacket::decode(&BIRD_DOWN).unwrap();
        assert_eq!(p.state, BfdState::Down);
        assert_eq!(p.diagnostic, Diagnostic::None);
        assert_eq!(p.detect_mult, 5);
        assert_eq!(p.my_discriminator, 0x3c1a_8e01);
        assert_eq!(p.your_discriminator, 0);
        assert_eq!(p.desired_min_tx_us, 1_000_000);
        assert_eq!(p.required_min_rx_us, 1_000_000);
        assert!(!p.poll && !p.final_ && !p.demand);
        assert_eq!(p.encode(), BIRD_DOWN);
    }

    #[test]
    fn flags_and_diagnostic_round_trip() {
        let p = ControlPacket {
            diagnostic: Diagnostic::ControlDetectionTimeExpired,
            state: BfdState::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 7,
            your_discriminator: 9,
            desired_min_tx_us: 100_000,
            required_min_rx_us: 100_000,
            required_min_echo_rx_us: 0,
        };
        let bytes = p.encode();
        assert_eq!(&bytes[..4], &[0x21, 0xe0, 0x03, 0x18]);
        assert_eq!(ControlPacket::decode(&bytes).unwrap(), p);
        let f = ControlPacket {
            poll: false,
            final_: true,
            ..p
        };
        assert_eq!(f.encode()[1], 0xd0);
    }

    #[test]
    fn rejects_what_rfc_5880_discards() {
        let mut v = BIRD_DOWN;
        assert_eq!(ControlPacket::decode(&v[..23]), Err(DecodeError::Short(23)));
        v[0] = 0x40;
        assert_eq!(ControlPacket::decode(&v), Err(DecodeError::Version(2)));
        v = BIRD_DOWN;
        v[3] = 23;
        assert!(matches!(
            ControlPacket::decode(&v),
            Err(DecodeError::Length { .. })
        ));
        v[3] = 25;
        assert!(matches!(
            ControlPacket::decode(&v),
            Err(DecodeError::Length { .. })
        ));
        v = BIRD_DOWN;
        v[1] |= AUTH;
        assert_eq!(ControlPacket::decode(&v), Err(DecodeError::Authentication));
        v = BIRD_DOWN;
        v[2] = 0;
        assert_eq!(ControlPacket::decode(&v), Err(DecodeError::ZeroDetectMult));
        v = BIRD_DOWN;
        v[1] |= MULTIPOINT;
        assert_eq!(ControlPacket::decode(&v), Err(DecodeError::Multipoint));
        v = BIRD_DOWN;
        v[4..8].fill(0);
        assert_eq!(
            ControlPacket::decode(&v),
            Err(DecodeError::ZeroMyDiscriminator)
        );
        v = BIRD_DOWN;
        v[1] = 0xc0; // Up with Your Discriminator 0
        assert_eq!(
            ControlPacket::decode(&v),
            Err(DecodeError::ZeroYourDiscriminator(BfdState::Up))
        );
    }
}
