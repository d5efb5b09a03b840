//! OPEN message (RFC 4271 §4.2) with capabilities (RFC 5492) and extended
//! optional parameters length (RFC 9072).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+
//! |    Version    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     My Autonomous System      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Hold Time           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         BGP Identifier                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Opt Parm Len  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Optional Parameters (variable)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Optional parameter:          Capability (inside parameter type 2):
//! +-------------+------------+ +-----------------+-------------------+
//! | Type (1)    | Length (1) | | Code (1)        | Length (1)        |
//! +-------------+------------+ +-----------------+-------------------+
//! | Value (variable)         | | Value (variable)                    |
//! +--------------------------+ +-------------------------------------+
//!
//! RFC 9072: Opt Parm Len = 255 and first parameter type = 255 introduce a
//! 2-octet total length, and each parameter then has a 2-octet length.
//! ```
//!
//! Validated on decode: version is 4 (else 2/1), the optional parameters fit
//! (else 2/0), every parameter is Capabilities (else 2/4). Capabilities are
//! never an error: unknown codes, and known codes whose value has the wrong
//! shape, are kept as [`Capability::Unknown`]. Hold time, AS and BGP
//! identifier are checked by [`mod@super::negotiate`], which knows the
//! configuration. `asn` is taken from the 4-octet AS capability when present.

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};
use nom::number::complete::{be_u16, be_u32, be_u8};

use super::error::{DecodeError, EncodeError};
use super::types::{take_bytes, Family};

/// The AS number 2-octet speakers see in place of a 4-octet one (RFC 6793).
pub const AS_TRANS: u32 = 23456;

/// BGP version spoken.
pub const BGP_VERSION: u8 = 4;

const PARAM_CAPABILITIES: u8 = 2;
const PARAM_EXTENDED: u8 = 255;

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Open {
    /// Protocol version; 4.
    pub version: u8,
    /// The sender's AS: from the 4-octet AS capability when present, else
    /// the 2-octet My AS field. Encoded as AS_TRANS when above 65535.
    pub asn: u32,
    /// Proposed hold time in seconds.
    pub hold_time: u16,
    /// BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// Capabilities in the order received / to send.
    pub capabilities: Vec<Capability>,
}

/// ADD-PATH direction for one family (RFC 7911 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddPathMode {
    /// 1: able to receive multiple paths.
    Receive,
    /// 2: able to send multiple paths.
    Send,
    /// 3: both.
    Both,
}

impl AddPathMode {
    /// Whether the mode includes receiving.
    pub fn receives(self) -> bool {
        matches!(self, AddPathMode::Receive | AddPathMode::Both)
    }
    /// Whether the mode includes sending.
    pub fn sends(self) -> bool {
        matches!(self, AddPathMode::Send | AddPathMode::Both)
    }
    fn from_wire(value: u8) -> Option<AddPathMode> {
        match value {
            1 => Some(AddPathMode::Receive),
            2 => Some(AddPathMode::Send),
            3 => Some(AddPathMode::Both),
            _ => None,
        }
    }
    fn to_wire(self) -> u8 {
        match self {
            AddPathMode::Receive => 1,
            AddPathMode::Send => 2,
            AddPathMode::Both => 3,
        }
    }
}

/// One family of the ADD-PATH capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddPathFamily {
    /// Family.
    pub family: Family,
    /// Direction.
    pub mode: AddPathMode,
}

/// One family of the graceful restart capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestartFamily {
    /// Family.
    pub family: Family,
    /// F bit: forwarding state was preserved across the restart.
    pub forwarding_preserved: bool,
}

/// Graceful restart capability (RFC 4724 §3, N bit from RFC 8538).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GracefulRestart {
    /// R bit: the sender has restarted.
    pub restart_state: bool,
    /// N bit: the sender supports graceful restart for NOTIFICATIONs.
    pub notification: bool,
    /// Restart time in seconds (12 bits; larger values are cut to 4095).
    pub restart_time: u16,
    /// Families for which forwarding state is retained.
    pub families: Vec<GracefulRestartFamily>,
}

/// One family of the long-lived graceful restart capability (RFC 9494 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LongLivedFamily {
    /// Family.
    pub family: Family,
    /// F bit: forwarding state was preserved.
    pub forwarding_preserved: bool,
    /// Long-lived stale time in seconds (24 bits; larger values are cut to
    /// 16,777,215).
    pub stale_time: u32,
}

/// A capability advertisement (RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// 1: multiprotocol extensions (RFC 4760).
    Multiprotocol(Family),
    /// 2: route refresh (RFC 2918).
    RouteRefresh,
    /// 6: extended message (RFC 8654).
    ExtendedMessage,
    /// 64: graceful restart (RFC 4724).
    GracefulRestart(GracefulRestart),
    /// 65: 4-octet AS number (RFC 6793).
    FourOctetAs(u32),
    /// 69: ADD-PATH (RFC 7911).
    AddPath(Vec<AddPathFamily>),
    /// 70: enhanced route refresh (RFC 7313).
    EnhancedRouteRefresh,
    /// 71: long-lived graceful restart (RFC 9494).
    LongLivedGracefulRestart(Vec<LongLivedFamily>),
    /// Any other capability, or a known one with a malformed value: kept
    /// verbatim and ignored.
    Unknown {
        /// Capability code.
        code: u8,
        /// Capability value.
        value: Vec<u8>,
    },
}

/// Capability codes.
pub mod capability_code {
    /// Multiprotocol extensions.
    pub const MULTIPROTOCOL: u8 = 1;
    /// Route refresh.
    pub const ROUTE_REFRESH: u8 = 2;
    /// Extended message.
    pub const EXTENDED_MESSAGE: u8 = 6;
    /// Graceful restart.
    pub const GRACEFUL_RESTART: u8 = 64;
    /// 4-octet AS.
    pub const FOUR_OCTET_AS: u8 = 65;
    /// ADD-PATH.
    pub const ADD_PATH: u8 = 69;
    /// Enhanced route refresh.
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
    /// Long-lived graceful restart.
    pub const LONG_LIVED_GRACEFUL_RESTART: u8 = 71;
}

impl Capability {
    /// Capability code on the wire.
    pub fn code(&self) -> u8 {
        use capability_code::*;
        match self {
            Capability::Multiprotocol(_) => MULTIPROTOCOL,
            Capability::RouteRefresh => ROUTE_REFRESH,
            Capability::ExtendedMessage => EXTENDED_MESSAGE,
            Capability::GracefulRestart(_) => GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => FOUR_OCTET_AS,
            Capability::AddPath(_) => ADD_PATH,
            Capability::EnhancedRouteRefresh => ENHANCED_ROUTE_REFRESH,
            Capability::LongLivedGracefulRestart(_) => LONG_LIVED_GRACEFUL_RESTART,
            Capability::Unknown { code, .. } => *code,
        }
    }

    fn encode_value(&self, buf: &mut Vec<u8>) {
        match self {
            Capability::Multiprotocol(family) => {
                buf.extend_from_slice(&u16::from(family.afi).to_be_bytes());
                buf.push(0);
                buf.push(family.safi.into());
            }
            Capability::RouteRefresh
            | Capability::ExtendedMessage
            | Capability::EnhancedRouteRefresh => {}
            Capability::GracefulRestart(gr) => {
                let mut head = gr.restart_time.min(0x0fff);
                if gr.restart_state {
                    head |= 0x8000;
                }
                if gr.notification {
                    head |= 0x4000;
                }
                buf.extend_from_slice(&head.to_be_bytes());
                for f in &gr.families {
                    buf.extend_from_slice(&u16::from(f.family.afi).to_be_bytes());
                    buf.push(f.family.safi.into());
                    buf.push(if f.forwarding_preserved { 0x80 } else { 0 });
                }
            }
            Capability::FourOctetAs(asn) => buf.extend_from_slice(&asn.to_be_bytes()),
            Capability::AddPath(families) => {
                for f in families {
                    buf.extend_from_slice(&u16::from(f.family.afi).to_be_bytes());
                    buf.push(f.family.safi.into());
                    buf.push(f.mode.to_wire());
                }
            }
            Capability::LongLivedGracefulRestart(families) => {
                for f in families {
                    buf.extend_from_slice(&u16::from(f.family.afi).to_be_bytes());
                    buf.push(f.family.safi.into());
                    buf.push(if f.forwarding_preserved { 0x80 } else { 0 });
                    buf.extend_from_slice(&f.stale_time.min(0x00ff_ffff).to_be_bytes()[1..]);
                }
            }
            Capability::Unknown { value, .. } => buf.extend_from_slice(value),
        }
    }

    /// Decodes one capability value; malformed known capabilities become
    /// `Unknown` rather than an error.
    fn decode(code: u8, value: &[u8]) -> Capability {
        use capability_code::*;
        let parsed = match code {
            MULTIPROTOCOL => match value {
                [a0, a1, _reserved, safi] => Some(Capability::Multiprotocol(Family::from_wire(
                    u16::from_be_bytes([*a0, *a1]),
                    *safi,
                ))),
                _ => None,
            },
            ROUTE_REFRESH if value.is_empty() => Some(Capability::RouteRefresh),
            EXTENDED_MESSAGE if value.is_empty() => Some(Capability::ExtendedMessage),
            ENHANCED_ROUTE_REFRESH if value.is_empty() => Some(Capability::EnhancedRouteRefresh),
            FOUR_OCTET_AS => <[u8; 4]>::try_from(value)
                .ok()
                .map(|v| Capability::FourOctetAs(u32::from_be_bytes(v))),
            GRACEFUL_RESTART if value.len() >= 2 && (value.len() - 2) % 4 == 0 => {
                let head = u16::from_be_bytes([value[0], value[1]]);
                let families = value[2..]
                    .chunks_exact(4)
                    .map(|c| GracefulRestartFamily {
                        family: Family::from_wire(u16::from_be_bytes([c[0], c[1]]), c[2]),
                        forwarding_preserved: c[3] & 0x80 != 0,
                    })
                    .collect();
                Some(Capability::GracefulRestart(GracefulRestart {
                    restart_state: head & 0x8000 != 0,
                    notification: head & 0x4000 != 0,
                    restart_time: head & 0x0fff,
                    families,
                }))
            }
            LONG_LIVED_GRACEFUL_RESTART if value.len() % 7 == 0 => {
                Some(Capability::LongLivedGracefulRestart(
                    value
                        .chunks_exact(7)
                        .map(|c| LongLivedFamily {
                            family: Family::from_wire(u16::from_be_bytes([c[0], c[1]]), c[2]),
                            forwarding_preserved: c[3] & 0x80 != 0,
                            stale_time: u32::from_be_bytes([0, c[4], c[5], c[6]]),
                        })
                        .collect(),
                ))
            }
            ADD_PATH if !value.is_empty() && value.len() % 4 == 0 => value
                .chunks_exact(4)
                .map(|c| {
                    AddPathMode::from_wire(c[3]).map(|mode| AddPathFamily {
                        family: Family::from_wire(u16::from_be_bytes([c[0], c[1]]), c[2]),
                        mode,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .map(Capability::AddPath),
            _ => None,
        };
        parsed.unwrap_or_else(|| Capability::Unknown {
            code,
            value: value.to_vec(),
        })
    }
}

impl Open {
    /// The 4-octet AS from the capability, if the sender advertised one.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// Families from multiprotocol capabilities (possibly empty).
    pub fn multiprotocol_families(&self) -> Vec<Family> {
        self.capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect()
    }

    /// The long-lived graceful restart families, if the sender advertised
    /// the capability (RFC 9494).
    pub fn long_lived_graceful_restart(&self) -> Option<&[LongLivedFamily]> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::LongLivedGracefulRestart(f) => Some(f.as_slice()),
            _ => None,
        })
    }

    /// Whether a capability with this code is present.
    pub fn has_capability(&self, code: u8) -> bool {
        self.capabilities.iter().any(|c| c.code() == code)
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u8(self.version);
        buf.put_u16(u16::try_from(self.asn).unwrap_or(AS_TRANS as u16));
        buf.put_u16(self.hold_time);
        buf.put_slice(&self.bgp_id.octets());

        let mut caps = Vec::new();
        for cap in &self.capabilities {
            let mut value = Vec::new();
            cap.encode_value(&mut value);
            let len = u8::try_from(value.len())
                .map_err(|_| EncodeError::Unrepresentable("capability value over 255 octets"))?;
            caps.push(cap.code());
            caps.push(len);
            caps.extend_from_slice(&value);
        }
        if caps.is_empty() {
            buf.put_u8(0);
            return Ok(());
        }
        // One Capabilities parameter holds up to 255 octets; beyond that the
        // whole parameter block switches to the RFC 9072 extended format.
        if caps.len() + 2 <= 255 {
            buf.put_u8((caps.len() + 2) as u8);
            buf.put_u8(PARAM_CAPABILITIES);
            buf.put_u8(caps.len() as u8);
            buf.put_slice(&caps);
        } else {
            let param_len = u16::try_from(caps.len() + 3)
                .map_err(|_| EncodeError::Unrepresentable("optional parameters too long"))?;
            buf.put_u8(255);
            buf.put_u8(PARAM_EXTENDED);
            buf.put_u16(param_len);
            buf.put_u8(PARAM_CAPABILITIES);
            buf.put_u16(caps.len() as u16);
            buf.put_slice(&caps);
        }
        Ok(())
    }

    pub(crate) fn decode_body(body: &[u8]) -> Result<Open, DecodeError> {
        let malformed = |_| DecodeError::MalformedOpen;
        let (rest, version) = be_u8::<_, ()>(body).map_err(malformed)?;
        if version != BGP_VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let (rest, my_as) = be_u16::<_, ()>(rest).map_err(malformed)?;
        let (rest, hold_time) = be_u16::<_, ()>(rest).map_err(malformed)?;
        let (rest, bgp_id) = be_u32::<_, ()>(rest).map_err(malformed)?;
        let (rest, opt_len) = be_u8::<_, ()>(rest).map_err(malformed)?;

        let extended = opt_len == 255 && rest.first() == Some(&PARAM_EXTENDED);
        let mut params = if extended {
            let (r, _) = be_u8::<_, ()>(rest).map_err(malformed)?;
            let (r, len) = be_u16::<_, ()>(r).map_err(malformed)?;
            let (r, params) = take_bytes(r, usize::from(len)).map_err(malformed)?;
            if !r.is_empty() {
                return Err(DecodeError::MalformedOpen);
            }
            params
        } else {
            let (r, params) = take_bytes(rest, usize::from(opt_len)).map_err(malformed)?;
            if !r.is_empty() {
                return Err(DecodeError::MalformedOpen);
            }
            params
        };

        let mut capabilities = Vec::new();
        while !params.is_empty() {
            let (r, param_type) = be_u8::<_, ()>(params).map_err(malformed)?;
            let (r, len) = if extended {
                be_u16::<_, ()>(r).map_err(malformed)?
            } else {
                let (r, l) = be_u8::<_, ()>(r).map_err(malformed)?;
                (r, u16::from(l))
            };
            let (r, mut value) = take_bytes(r, usize::from(len)).map_err(malformed)?;
            params = r;
            if param_type != PARAM_CAPABILITIES {
                return Err(DecodeError::UnsupportedOptionalParameter { param_type });
            }
            while !value.is_empty() {
                let (r, code) = be_u8::<_, ()>(value).map_err(malformed)?;
                let (r, len) = be_u8::<_, ()>(r).map_err(malformed)?;
                let (r, cap) = take_bytes(r, usize::from(len)).map_err(malformed)?;
                value = r;
                capabilities.push(Capability::decode(code, cap));
            }
        }

        let mut open = Open {
            version,
            asn: u32::from(my_as),
            hold_time,
            bgp_id: Ipv4Addr::from(bgp_id),
            capabilities,
        };
        if let Some(asn) = open.four_octet_as() {
            open.asn = asn;
        }
        Ok(open)
    }
}

#[cfg(test)]
mod vectors {
    //! Byte vectors hand-built from the RFC layouts, both directions.
    use std::net::Ipv4Addr;

    use crate::packet::test_vectors::*;
    use crate::packet::{
        decode_message, Capability, DecodeContext, EncodeContext, Family, GracefulRestart,
        GracefulRestartFamily, LongLivedFamily, Message, Open,
    };

    #[test]
    fn open_with_capabilities() {
        // AS 65001, hold 180, id 10.0.0.1; one Capabilities parameter holding
        // MP ipv4-unicast, route refresh, 4-octet AS 65001.
        let wire = message(
            1,
            "04 fde9 00b4 0a000001 10
             02 0e  01 04 0001 00 01  02 00  41 04 0000fde9",
        );
        let open = Message::Open(Open {
            version: 4,
            asn: 65001,
            hold_time: 180,
            bgp_id: Ipv4Addr::new(10, 0, 0, 1),
            capabilities: vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
                Capability::FourOctetAs(65001),
            ],
        });
        assert_both_ways(
            &wire,
            &open,
            &DecodeContext::default(),
            &EncodeContext::default(),
        );
    }

    #[test]
    fn open_four_octet_asn_uses_as_trans_in_my_as() {
        // AS 4200000001 = 0xfa56ea01: My AS carries AS_TRANS (0x5ba0).
        let wire = message(1, "04 5ba0 005a c0000201 08 02 06 41 04 fa56ea01");
        let open = Message::Open(Open {
            version: 4,
            asn: 4_200_000_001,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(192, 0, 2, 1),
            capabilities: vec![Capability::FourOctetAs(4_200_000_001)],
        });
        assert_both_ways(
            &wire,
            &open,
            &DecodeContext::default(),
            &EncodeContext::default(),
        );
    }

    #[test]
    fn open_long_lived_graceful_restart() {
        // RFC 9494 §3: GR (restart time 0) and LLGR for ipv4-unicast with
        // the F bit and a stale time of 3600 s (0x000e10), ipv6-unicast
        // with 16,777,215 s; one Capabilities parameter.
        let wire = message(
            1,
            "04 fde9 005a 0a000001 16
             02 14 40 02 0000 47 0e 0001 01 80 000e10 0002 01 00 ffffff",
        );
        let open = Message::Open(Open {
            version: 4,
            asn: 65001,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(10, 0, 0, 1),
            capabilities: vec![
                Capability::GracefulRestart(GracefulRestart {
                    restart_state: false,
                    notification: false,
                    restart_time: 0,
                    families: Vec::new(),
                }),
                Capability::LongLivedGracefulRestart(vec![
                    LongLivedFamily {
                        family: Family::IPV4_UNICAST,
                        forwarding_preserved: true,
                        stale_time: 3600,
                    },
                    LongLivedFamily {
                        family: Family::IPV6_UNICAST,
                        forwarding_preserved: false,
                        stale_time: 0x00ff_ffff,
                    },
                ]),
            ],
        });
        assert_both_ways(
            &wire,
            &open,
            &DecodeContext::default(),
            &EncodeContext::default(),
        );
    }

    #[test]
    fn open_graceful_restart_add_path_and_unknown_capabilities() {
        // GR: R bit + N bit, restart time 120, ipv4-unicast with F bit;
        // ADD-PATH ipv6-unicast both; FQDN (73) and dynamic capability (67),
        // which must be kept and ignored; each in its own parameter, as FRR does.
        let wire = message(
            1,
            "04 fde9 00b4 0a000001 1f
             02 08 40 06 c078 0001 01 80
             02 06 45 04 0002 01 03
             02 07 49 05 03 66 72 72 00
             02 02 43 00",
        );
        let (msg, _) = decode_one(&wire, &DecodeContext::default());
        let Message::Open(open) = msg else {
            panic!("expected OPEN")
        };
        assert_eq!(open.asn, 65001);
        assert_eq!(
            open.capabilities,
            vec![
                Capability::GracefulRestart(GracefulRestart {
                    restart_state: true,
                    notification: true,
                    restart_time: 120,
                    families: vec![GracefulRestartFamily {
                        family: Family::IPV4_UNICAST,
                        forwarding_preserved: true,
                    }],
                }),
                Capability::AddPath(vec![crate::packet::AddPathFamily {
                    family: Family::IPV6_UNICAST,
                    mode: crate::packet::AddPathMode::Both,
                }]),
                Capability::Unknown {
                    code: 73,
                    value: bytes("03 66 72 72 00"),
                },
                Capability::Unknown {
                    code: 67,
                    value: vec![],
                },
            ]
        );
        // Re-encoded in a single parameter, it decodes to the same OPEN.
        let again = Message::Open(open.clone())
            .to_bytes(&EncodeContext::default())
            .unwrap();
        let (msg2, _) = decode_one(&again, &DecodeContext::default());
        assert_eq!(msg2, Message::Open(open));
    }

    #[test]
    fn open_malformed_known_capability_is_kept_raw() {
        // 4-octet AS capability with 2 octets: kept as unknown, My AS used.
        let wire = message(1, "04 fde9 00b4 0a000001 06 02 04 41 02 0001");
        let (msg, _) = decode_one(&wire, &DecodeContext::default());
        let Message::Open(open) = msg else {
            panic!("expected OPEN")
        };
        assert_eq!(open.asn, 65001);
        assert_eq!(
            open.capabilities,
            vec![Capability::Unknown {
                code: 65,
                value: vec![0, 1]
            }]
        );
    }

    #[test]
    fn open_rfc9072_extended_parameters() {
        // Opt Parm Len 255, Non-Ext OP Type 255, Extended Opt. Parm. Length 9,
        // then a Capabilities parameter with a 2-octet length of 6.
        let wire = message(1, "04 fde9 00b4 0a000001 ff ff 0009 02 0006 41 04 0000fde9");
        let (msg, _) = decode_one(&wire, &DecodeContext::default());
        let Message::Open(open) = msg else {
            panic!("expected OPEN")
        };
        assert_eq!(open.capabilities, vec![Capability::FourOctetAs(65001)]);
    }

    #[test]
    fn open_errors_map_to_notifications() {
        let cases: Vec<ErrorCase> = vec![
            // Version 3 → 2/1 with our version (4) as 2 octets.
            (message(1, "03 fde9 00b4 0a000001 00"), (2, 1), vec![0, 4]),
            // Authentication parameter (type 1) → 2/4.
            (
                message(1, "04 fde9 00b4 0a000001 03 01 01 00"),
                (2, 4),
                vec![],
            ),
            // Optional parameters overrun the message → 2/0.
            (
                message(1, "04 fde9 00b4 0a000001 08 02 06 41 04"),
                (2, 0),
                vec![],
            ),
        ];
        for (wire, (code, subcode), data) in cases {
            let err = decode_message(&wire, &DecodeContext::default()).unwrap_err();
            let n = err.to_notification();
            assert_eq!((n.code, n.subcode), (code, subcode), "{err}");
            assert_eq!(n.data, data, "{err}");
        }
    }

    /// OPENs captured from real speakers by `codec_interop` (AS 65010, router
    /// id 10.77.0.1, hold 9): BIRD 2, FRR 10 (with FQDN, software version and
    /// other capabilities we do not know) and GoBGP (with extended next hop).
    #[test]
    fn real_captured_opens() {
        let captures = [
            (
                "bird",
                "ffffffffffffffffffffffffffffffff00350104fdf200090a4d000118021601040001000102004002\
                 007841040000fdf246004700",
            ),
            (
                "frr",
                "ffffffffffffffffffffffffffffffff00630104fdf200090a4d00014602060104000100010202800002\
                 02020002024600020641040000fdf2020206000206450400010101020b4909077465737462656400020440\
                 02c0780209470700010180000000",
            ),
            (
                "gobgp",
                "ffffffffffffffffffffffffffffffff003b0104fdf200090a4d00011e021c0200490402766d00010400\
                 01000141040000fdf20506000100010002",
            ),
        ];
        for (name, wire) in captures {
            let wire = bytes(wire);
            let (msg, _) = decode_one(&wire, &DecodeContext::default());
            let Message::Open(open) = msg else {
                panic!("{name}: expected OPEN")
            };
            assert_eq!(open.asn, 65010, "{name}");
            assert_eq!(open.hold_time, 9, "{name}");
            assert_eq!(open.bgp_id, Ipv4Addr::new(10, 77, 0, 1), "{name}");
            assert_eq!(open.four_octet_as(), Some(65010), "{name}");
            assert_eq!(
                open.multiprotocol_families(),
                vec![Family::IPV4_UNICAST],
                "{name}"
            );
            assert!(
                open.capabilities.contains(&Capability::RouteRefresh),
                "{name}"
            );
            let again = Message::Open(open.clone())
                .to_bytes(&EncodeContext::default())
                .unwrap();
            let (msg, _) = decode_one(&again, &DecodeContext::default());
            assert_eq!(msg, Message::Open(open), "{name}");
        }
    }
}
